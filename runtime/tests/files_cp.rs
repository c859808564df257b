//! `vslice cp` against a real daemon and slice: both directions, directories, symlinks and
//! modes, ownership mapped to the slice's ids; and the attacks: symlinks planted by the
//! slice's root (to /etc, to a host path, into /proc), a symlinked directory in the middle of
//! an archive, `..` and absolute entry names. Everything the slice does runs inside it (exec);
//! host files are only checked, never targeted by host-side code.
mod daemon_support;

use daemon_support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use vslice::proto::{ExecInput, FilesQuery};

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vslice(d: &TestDaemon, args: &[&str], cwd: &Path) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vslice"))
        .args(args)
        .current_dir(cwd)
        .env("VSLICE_SOCKET", &d.socket)
        .env_remove("VSLICE_DIRECT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(d: &TestDaemon, args: &[&str], cwd: &Path) -> String {
    let (code, out, err) = vslice(d, args, cwd);
    assert_eq!(code, 0, "vslice {args:?}:\n{out}\n{err}");
    out
}

/// Run a shell script in the slice as its root; returns stdout, asserting success.
fn sh(d: &TestDaemon, script: &str) -> String {
    let r = d
        .blocking()
        .exec(
            "cp",
            &ExecInput {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        r.exit_code,
        0,
        "{script}: {}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// A raw tar with one regular file named `name` (any bytes, unlike tar::Builder allows).
fn raw_tar(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(512 + data.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn cp_in_and_out_with_ownership_and_no_escape() {
    let pid = std::process::id();
    let scratch = Scratch(PathBuf::from(format!("/tmp/vslice-test-files-cp-{pid}")));
    let _ = std::fs::remove_dir_all(&scratch.0);
    let s = &scratch.0;
    // A local tree: a file, a subdirectory, a symlink, a setuid file.
    std::fs::create_dir_all(s.join("app/sub")).unwrap();
    std::fs::write(s.join("app/hello.txt"), "hello\n").unwrap();
    std::fs::write(s.join("app/sub/data.bin"), vec![7u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("hello.txt", s.join("app/link")).unwrap();
    std::fs::write(s.join("app/suid"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(s.join("app/suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    // Host files that the slice will aim at.
    std::fs::create_dir_all(s.join("host")).unwrap();
    std::fs::write(s.join("host/secret"), "host secret\n").unwrap();
    std::fs::write(s.join("payload"), "payload\n").unwrap();

    let d = TestDaemon::start();
    let info = d.blocking().create(&sleeper("cp")).expect("create");
    let base = info.spec.uid_base;

    // --- in: a directory, to a new name (its parent must exist) ----------------------------
    let (code, _, err) = vslice(&d, &["cp", "./app", "cp:/srv/app"], s);
    assert_ne!(code, 0, "copied into a missing parent");
    assert!(err.contains("not found"), "{err}");
    sh(&d, "mkdir -p /srv");
    ok(&d, &["cp", "./app", "cp:/srv/app"], s);
    let st = sh(
        &d,
        "cd /srv/app && stat -c '%n %u:%g %a' hello.txt sub sub/data.bin suid && readlink link && cat hello.txt && wc -c < sub/data.bin",
    );
    let lines: Vec<&str> = st.lines().collect();
    assert_eq!(lines[0], "hello.txt 0:0 644", "{st}");
    assert_eq!(lines[1], "sub 0:0 755", "{st}");
    assert_eq!(lines[2], "sub/data.bin 0:0 644", "{st}");
    assert_eq!(lines[3], "suid 0:0 4755", "{st}");
    assert_eq!(lines[4], "hello.txt", "{st}");
    assert_eq!(lines[5], "hello", "{st}");
    assert_eq!(lines[6].trim(), "300000", "{st}");
    // On the host, in the slice's upper layer, owned by the slice's root.
    let upper = d.root.join("slices/cp/fs/upper/srv/app/hello.txt");
    assert_eq!(std::fs::metadata(&upper).unwrap().uid(), base);

    // --- in: into an existing directory, owned as asked ------------------------------------
    ok(
        &d,
        &["cp", "--owner", "1000:1001", "payload", "cp:/srv/app/sub"],
        s,
    );
    assert_eq!(
        sh(&d, "stat -c '%u:%g' /srv/app/sub/payload").trim(),
        "1000:1001"
    );

    // --- out: a directory and a file -------------------------------------------------------
    std::fs::create_dir_all(s.join("out")).unwrap();
    ok(&d, &["cp", "cp:/srv/app", "out"], s);
    assert_eq!(
        std::fs::read_to_string(s.join("out/app/hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read(s.join("out/app/sub/data.bin")).unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(
        std::fs::read_link(s.join("out/app/link")).unwrap(),
        Path::new("hello.txt")
    );
    let suid = std::fs::metadata(s.join("out/app/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7000, 0, "setuid bit kept on copy-out");
    ok(&d, &["cp", "cp:/srv/app/hello.txt", "out/renamed.txt"], s);
    assert_eq!(
        std::fs::read_to_string(s.join("out/renamed.txt")).unwrap(),
        "hello\n"
    );

    // --- attacks planted by the slice's root -------------------------------------------------
    let host = s.join("host");
    sh(
        &d,
        &format!(
            "ln -s /etc /x && ln -s {h} /y && ln -s {h}/secret /z && ln -s /proc/sys/kernel /k && \
             mkdir -p /srv/trap && ln -s /etc /srv/trap/sub",
            h = host.display()
        ),
    );
    // Writing through /x lands in the slice's /etc, not the host's.
    ok(&d, &["cp", "payload", "cp:/x/"], s);
    assert!(!Path::new("/etc/payload").exists(), "wrote the host's /etc");
    assert_eq!(sh(&d, "cat /etc/payload"), "payload\n");
    // A symlink to a host path resolves inside the slice: there is nothing there.
    let (code, _, err) = vslice(&d, &["cp", "cp:/z", "out/stolen"], s);
    assert_ne!(code, 0, "copied out through a symlink to a host file");
    assert!(err.contains("not found"), "{err}");
    assert!(!s.join("out/stolen").exists());
    let (code, _, err) = vslice(&d, &["cp", "cp:/y/secret", "out/stolen"], s);
    assert_ne!(code, 0, "{err}");
    assert!(!s.join("out/stolen").exists());
    let (code, _, err) = vslice(&d, &["cp", "payload", "cp:/y/secret"], s);
    assert_ne!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(host.join("secret")).unwrap(),
        "host secret\n"
    );
    // /proc (a mount of the slice) is never entered, directly or through a symlink.
    let core = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    for dst in ["cp:/k/core_pattern", "cp:/proc/sys/kernel/core_pattern"] {
        let (code, _, err) = vslice(&d, &["cp", "payload", dst], s);
        assert_ne!(code, 0, "{dst}: {err}");
        assert!(err.contains("mount point"), "{dst}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core
    );
    // Refused while the client is still sending (a 32 MB archive): the client prints the
    // reason, not a broken pipe (the daemon reads the rest of the archive before answering).
    std::fs::write(s.join("big"), vec![7u8; 32 << 20]).unwrap();
    let (code, _, err) = vslice(&d, &["cp", "big", "cp:/proc/big"], s);
    assert_ne!(code, 0, "copied into /proc");
    assert!(err.contains("mount point"), "{err}");
    std::fs::remove_file(s.join("big")).unwrap();
    // An archive whose directory is a symlink in the slice: refused, nothing written.
    std::fs::create_dir_all(s.join("trap/sub")).unwrap();
    std::fs::write(s.join("trap/sub/planted"), "x\n").unwrap();
    let (code, _, err) = vslice(&d, &["cp", "trap", "cp:/srv"], s);
    assert_ne!(code, 0, "extracted through a symlinked directory");
    assert!(err.contains("symlink"), "{err}");
    assert!(!Path::new("/etc/planted").exists());
    assert_eq!(sh(&d, "test ! -e /etc/planted && echo ok").trim(), "ok");

    // --- hostile archives over the API --------------------------------------------------------
    let c = d.blocking();
    for name in [&b"../../../../tmp/evil"[..], b"/tmp/evil", b"a/../../evil"] {
        let q = FilesQuery {
            path: "/srv".into(),
            uid: None,
            gid: None,
        };
        let e = c
            .copy_in("cp", &q, std::io::Cursor::new(raw_tar(name, b"evil\n")))
            .expect_err("a hostile entry name was accepted");
        assert_eq!(e.status(), Some(400), "{e}");
    }
    assert!(!Path::new("/tmp/evil").exists());
    assert_eq!(
        sh(&d, "test ! -e /tmp/evil && test ! -e /evil && echo ok").trim(),
        "ok"
    );
    // Bad requests name the field.
    let q = FilesQuery {
        path: "relative".into(),
        uid: None,
        gid: None,
    };
    let e = c.copy_in("cp", &q, std::io::empty()).unwrap_err();
    assert_eq!(e.field(), Some("path"), "{e}");
    let mut sink = Vec::new();
    let e = c
        .copy_out(
            "cp",
            &FilesQuery {
                path: "/nonexistent".into(),
                uid: None,
                gid: None,
            },
            &mut sink,
        )
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");

    // Audited.
    let audit = std::fs::read_dir(d.root.join("audit"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(audit.contains("\"copy_in\""), "no copy_in audit record");
    assert!(audit.contains("\"copy_out\""), "no copy_out audit record");
    c.destroy("cp").unwrap();
}

/// Direct mode (no daemon): the same copies and the console log, locked and audited.
#[test]
fn cp_and_logs_in_direct_mode() {
    let pid = std::process::id();
    let scratch = Scratch(PathBuf::from(format!(
        "/tmp/vslice-test-files-direct-{pid}"
    )));
    let _ = std::fs::remove_dir_all(&scratch.0);
    let s = &scratch.0;
    std::fs::create_dir_all(s.join("out")).unwrap();
    std::fs::write(s.join("note"), "direct\n").unwrap();
    let mut d = TestDaemon::start();
    d.stop();
    let direct = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_vslice"))
            .env("VSLICE_DIRECT", "1")
            .env("VSLICE_ROOT", &d.root)
            .env("VSLICE_CGROUP_PARENT", &d.cgroup_parent)
            .env("VSLICE_POLICY_DIR", repo_dir().join("policies"))
            .env("VSLICE_SHIM", shim_bin())
            .env_remove("VSLICE_SOCKET")
            .current_dir(s)
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "vslice {args:?}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    direct(&[
        "create",
        "dcp",
        "--init",
        "/bin/sh",
        "-c",
        "echo hello-direct; trap 'exit 0' TERM; while :; do sleep 1; done",
    ]);
    direct(&["cp", "note", "dcp:/tmp/note"]);
    direct(&["cp", "dcp:/tmp/note", "out/back"]);
    assert_eq!(
        std::fs::read_to_string(s.join("out/back")).unwrap(),
        "direct\n"
    );
    wait_for(
        "the console line",
        std::time::Duration::from_secs(20),
        || direct(&["logs", "dcp"]) == "hello-direct\n",
    );
    let audit = direct(&["audit", "show", "--json", "--kind", "control"]);
    let copies: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"copy_in\"") || l.contains("\"copy_out\""))
        .collect();
    assert_eq!(copies.len(), 2, "{audit}");
    assert!(copies.iter().all(|l| l.contains("\"direct\"")), "{audit}");
    direct(&["rm", "dcp"]);
}
