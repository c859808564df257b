//! Builds the exec log's BPF program (src/audit/bpf/exec.bpf.c) with clang, the one compiler
//! that targets BPF (Debian package `clang`, in deps/packages.txt). The object is embedded in
//! the binaries (src/audit/exec_bpf.rs) and relocated to the running kernel at load time from
//! its BTF (CO-RE), so one build runs on every kernel vslice supports.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/audit/bpf/exec.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("exec.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", src, "-o",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to build {src} ({s})"),
        Err(e) => panic!(
            "cannot run {clang} to build {src}: {e}. The exec log's BPF program needs clang \
             (Debian package `clang`; `make deps` installs it)"
        ),
    }
}
