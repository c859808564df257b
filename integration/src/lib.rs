//! Test harness: a private vslice installation per test (own state root, own cgroup parent,
//! own name prefix) driven through the real `vslice` binary, torn down on drop even when the
//! test fails, so tests can run beside each other and beside a real installation.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Where the built binaries are: $VSLICE_BIN_DIR, else target/release, else target/debug.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VSLICE_BIN_DIR") {
        return PathBuf::from(d);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for profile in ["release", "debug"] {
        let d = target.join(profile);
        if d.join("vslice").is_file() && d.join("vslice-shim").is_file() {
            return d;
        }
    }
    panic!("vslice binaries not built: run `make build` (or set VSLICE_BIN_DIR)");
}

pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo dir")
}

/// The shared busybox image for tests (`$VSLICE_TEST_IMAGES`, default /tmp/vslice-test-images),
/// built once by `make test` or on first use.
pub fn images_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("VSLICE_TEST_IMAGES").unwrap_or_else(|_| "/tmp/vslice-test-images".into()),
    );
    if let Err(e) = vslice::image::ensure_busybox(&dir, &repo_dir().join("images")) {
        panic!("busybox test image: {e}");
    }
    dir
}

pub struct Env {
    pub root: PathBuf,
    pub cgroup_parent: String,
    pub prefix: String,
}

impl Env {
    pub fn new() -> Env {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let root = PathBuf::from(format!("/tmp/vslice-it-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir test root");
        std::os::unix::fs::symlink(images_dir(), root.join("images")).expect("link images");
        Env {
            root,
            cgroup_parent: format!("vslice-it-{pid}-{n}"),
            prefix: format!("t{n}"),
        }
    }

    /// A `vslice` command bound to this installation.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin_dir().join("vslice"));
        c.env("VSLICE_ROOT", &self.root)
            .env("VSLICE_CGROUP_PARENT", &self.cgroup_parent)
            .env("VSLICE_POLICY_DIR", repo_dir().join("policies"))
            .env("VSLICE_SHIM", bin_dir().join("vslice-shim"))
            // Daemon-less mode: these tests exercise the sandbox and lifecycle library directly.
            .env("VSLICE_DIRECT", "1")
            .stdin(Stdio::null());
        c
    }

    /// Run `vslice ARGS`, returning its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run vslice")
    }

    /// Run `vslice ARGS` and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "vslice {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `vslice exec NAME -- sh -c SCRIPT`: (exit code, stdout, stderr).
    pub fn sh(&self, name: &str, script: &str) -> (i32, String, String) {
        let o = self.run(&["exec", name, "--", "/bin/sh", "-c", script]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Name with this env's prefix.
    pub fn name(&self, base: &str) -> String {
        format!("{}-{base}", self.prefix)
    }

    /// Create and start a slice with extra create flags.
    pub fn slice(&self, base: &str, flags: &[&str]) -> String {
        let name = self.name(base);
        let mut args = vec!["create", name.as_str()];
        args.extend_from_slice(flags);
        self.ok(&args);
        name
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect JSON")
    }

    /// Paths of this env's cgroup parent in every hierarchy that has it.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs_named(&self.cgroup_parent)
    }
}

pub fn cgroup_dirs_named(parent: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let v2 = Path::new("/sys/fs/cgroup").join(parent);
    if v2.exists() {
        out.push(v2);
    }
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join(parent);
            if p.exists() && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Destroy every slice through the product itself, then make sure nothing is left even
        // if that failed: kill shims and inits recorded in state files (by PID), remove cgroups.
        if let Ok(rd) = std::fs::read_dir(self.root.join("slices")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    let _ = self.run(&["rm", &name]);
                }
                if let Ok(st) = vslice::util::fs::read_json::<vslice::slice::state::RuntimeState>(
                    &e.path().join("state.json"),
                ) {
                    for (pid, start) in [(st.init_pid, st.init_start), (st.shim_pid, st.shim_start)]
                    {
                        if vslice::slice::state::is_alive(pid, start) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
            }
        }
        for dir in self.cgroup_dirs() {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let cg = vslice::cgroup::Cgroup::new(&format!(
                            "{}/{}",
                            self.cgroup_parent,
                            e.file_name().to_string_lossy()
                        ));
                        let _ = cg.destroy();
                    }
                }
            }
        }
        let _ = vslice::cgroup::remove_parent_if_empty(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
