//! Shared helpers for the OCI runtime tests (real kernel, as root): a private `--root` state
//! dir, bundles made from the busybox test image, a unique cgroup parent, and Drop guards that
//! remove every container, cgroup and directory a test made, even when it fails.
#![allow(dead_code)]
pub mod containerd;
pub mod image;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn runc_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vslice-runc"))
}

pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo dir")
}

/// The busybox test image rootfs ($VSLICE_TEST_IMAGES/busybox/rootfs), built on first use.
pub fn busybox_rootfs() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("VSLICE_TEST_IMAGES").unwrap_or_else(|_| "/tmp/vslice-test-images".into()),
    );
    match vslice::image::ensure_busybox(&dir, &repo_dir().join("images")) {
        Ok(image) => image.rootfs,
        Err(e) => panic!("busybox test image: {e}"),
    }
}

/// Every directory named `name` directly under a cgroup hierarchy root.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let p = Path::new(base).join(name);
        if p.is_dir() {
            out.push(p);
        }
    }
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join(name);
            if p.is_dir() && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Remove a cgroup directory tree, deepest first (killing nothing: tests kill their own).
pub fn remove_cgroup_tree(dir: &Path) {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(d.to_path_buf());
    }
    let mut dirs = Vec::new();
    walk(dir, &mut dirs);
    for d in dirs {
        for _ in 0..50 {
            match std::fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
}

/// A private vslice-runc installation: state root, bundle dir, cgroup parent; all removed on
/// drop (containers deleted with `delete --force` first).
pub struct Env {
    pub root: PathBuf,
    pub work: PathBuf,
    /// Unique cgroup parent: every container's cgroupsPath is /<parent>/<id>.
    pub cgroup_parent: String,
    pub tag: String,
}

impl Env {
    pub fn new() -> Env {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("vslice-test-oci-{}-{n}", std::process::id());
        let root = PathBuf::from(format!("/run/{tag}"));
        let work = PathBuf::from(format!("/tmp/{tag}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("mkdir work");
        Env {
            root,
            work,
            cgroup_parent: tag.clone(),
            tag,
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(runc_bin());
        c.arg("--root").arg(&self.root).stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run vslice-runc")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "vslice-runc {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run a command that leaves a container process behind (`create`, `run --detach`): its
    /// stdout/stderr go to files (the container inherits them; a pipe would never reach EOF).
    /// Requires success; returns stderr.
    pub fn ok_detached(&self, args: &[&str]) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out = self.work.join(format!("out-{n}"));
        let err = self.work.join(format!("err-{n}"));
        let st = self
            .cmd()
            .args(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .expect("run vslice-runc");
        let errs = std::fs::read_to_string(&err).unwrap_or_default();
        assert!(
            st.success(),
            "vslice-runc {args:?} failed ({:?}): {errs}",
            st.code()
        );
        errs
    }

    pub fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    /// A bundle (rootfs copy + `vslice-runc spec` config edited by `edit`) for container `id`.
    pub fn bundle(&self, id: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let b = self.work.join(format!("bundle-{id}"));
        std::fs::create_dir_all(&b).unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(busybox_rootfs())
            .arg(b.join("rootfs"))
            .status()
            .unwrap();
        assert!(st.success(), "copy rootfs");
        self.ok(&["spec", "--bundle", b.to_str().unwrap()]);
        let path = b.join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        c["process"]["terminal"] = false.into();
        c["linux"]["cgroupsPath"] = format!("/{}/{id}", self.cgroup_parent).into();
        edit(&mut c);
        std::fs::write(&path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
        b
    }

    /// The container's cgroup directories that exist.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs_named(&self.cgroup_parent)
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self
                    .cmd()
                    .args(["delete", "--force", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        for d in self.cgroup_dirs() {
            remove_cgroup_tree(&d);
        }
        let mounted = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .contains(self.work.to_str().unwrap());
        if !mounted {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

/// Poll until `f` holds (up to `secs`).
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .map(|i| !s[i + 2..].starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// The line of /proc/PID/cgroup that puts a process in the memory cgroup `rel` (relative to
/// the hierarchy root): `N:memory:/rel` on v1, the unified `0::/rel` on v2.
pub fn memory_cgroup_line(rel: &str) -> String {
    match vslice::cgroup::detect() {
        vslice::cgroup::Version::V2 => format!("0::/{rel}\n"),
        vslice::cgroup::Version::V1 => format!(":memory:/{rel}\n"),
    }
}
