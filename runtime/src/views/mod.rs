//! The slice's own view of its resources (lxcfs-like): /proc/meminfo, cpuinfo, stat, uptime,
//! loadavg, swaps, diskstats and /sys/devices/system/cpu/online, served by a FUSE filesystem
//! and bind-mounted read-only over those files in the slice's mount namespace.
//!
//! Who serves: one small process per slice, forked by the slice's shim (`vslice-views`), not
//! a thread of the daemon. The shim already outlives daemon restarts and is the only process
//! that knows the slice's init, so views need no re-injection when vsliced restarts; a server
//! bug or crash touches one slice only; and the shim stays single-threaded (the sandbox code
//! refuses to fork from a threaded process). Cost: one more process (~1 MiB) per slice.
//!
//! Crash safety (lxcfs' known failure is readers hanging on a dead server): only the server
//! process holds the /dev/fuse descriptor, so when it dies the kernel aborts the connection
//! and every read, including one in flight, fails at once with ENOTCONN. The shim reaps the
//! server, mounts a new one and re-injects it: it enters the slice's mount namespace (as
//! host root, from a forked child), detaches the dead mounts over each view and moves fresh
//! read-only binds there. Readers see ENOTCONN for that short window, never a hang.
//! A server that is alive but does not answer (SIGSTOP, a deadlock) is caught by the shim's
//! watchdog (watchdog.rs): it aborts the connection, so waiting readers get ENOTCONN within
//! about a second, and kills the server, which then takes the same restart path.
//!
//! Not locked: the slice's root can unmount a view (revealing its own procfs' file, host-wide
//! numbers, nothing of the host's mount tree). Mounts are only locked when a mount namespace
//! is copied into a less privileged user namespace, or for the submounts of a tree propagated
//! across one; on 6.18 a single mount propagated from the shim's namespace into a slave copy
//! in the slice's was measured to arrive unlocked (umount succeeded). Locking the views would
//! need a second user namespace nested inside the slice's after setup, which takes away the
//! slice root's rights over its own network and pid namespaces.
//!
//! CPUs: a slice with a CPU cap and no cpuset of its own runs on ceil(cap) CPUs (cpus.rs), so
//! sched_getaffinity (nproc, make -j) agrees with the views of /proc/cpuinfo and cpu/online.
pub mod cpus;
pub mod fs;
pub mod render;
pub mod source;
pub mod sysinfo;
pub mod watchdog;

use crate::sandbox::sys;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The server process' name (comm), for ps and for tests that kill it.
pub const SERVER_COMM: &str = "vslice-views";

/// Where each view is mounted inside the slice.
pub const TARGETS: &[(&str, &str)] = &[
    ("meminfo", "/proc/meminfo"),
    ("cpuinfo", "/proc/cpuinfo"),
    ("stat", "/proc/stat"),
    ("uptime", "/proc/uptime"),
    ("loadavg", "/proc/loadavg"),
    ("swaps", "/proc/swaps"),
    ("diskstats", "/proc/diskstats"),
    ("online", "/sys/devices/system/cpu/online"),
];

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error("views: {op} {target}: {source}")]
    Sys {
        op: &'static str,
        target: String,
        source: nix::Error,
    },
    #[error("views: the server did not start: {0}")]
    Start(String),
}

fn sys_err(op: &'static str, target: impl Into<String>, source: nix::Error) -> ViewsError {
    ViewsError::Sys {
        op,
        target: target.into(),
        source,
    }
}

/// What a server needs: the slice's cgroup, when it started, and the mount point (inside the
/// shim's private mount namespace, so the host's mount table never sees it).
#[derive(Debug, Clone)]
pub struct Config {
    pub cgroup: String,
    /// CLOCK_BOOTTIME seconds at the slice's start (kept across server restarts).
    pub started: f64,
    pub dir: PathBuf,
}

impl Config {
    /// The bind mounts to add to the slice's spec: each view read-only over its target.
    /// Targets under /proc or /sys are only added when the spec mounts those.
    pub fn spec_mounts(
        &self,
        existing: &[oci_spec::runtime::Mount],
    ) -> Vec<oci_spec::runtime::Mount> {
        let has = |d: &str| existing.iter().any(|m| m.destination() == Path::new(d));
        TARGETS
            .iter()
            .filter(|(_, t)| {
                (t.starts_with("/proc/") && has("/proc")) || (t.starts_with("/sys/") && has("/sys"))
            })
            .map(|(name, target)| {
                let mut m = oci_spec::runtime::Mount::default();
                m.set_destination(PathBuf::from(target));
                m.set_typ(Some("bind".into()));
                m.set_source(Some(self.dir.join(name)));
                m.set_options(Some(
                    ["bind", "ro", "nosuid", "nodev", "noexec"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                ));
                m
            })
            .collect()
    }
}

/// Fork the server; returns once its filesystem is mounted on `cfg.dir` (or failed). The
/// caller reaps the returned pid. The caller must be single-threaded.
pub fn spawn(cfg: &Config) -> Result<Pid, ViewsError> {
    // A previous (dead) server's mount: detach it so the new one is not stacked on it (and
    // first: stat on it fails with ENOTCONN, which create_dir_all would take for "missing").
    while is_fuse(&cfg.dir) {
        if umount2(&cfg.dir, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    std::fs::create_dir_all(&cfg.dir)
        .map_err(|e| sys_err("mkdir", cfg.dir.display().to_string(), io(&e)))?;
    let (r, w) = nix::unistd::pipe().map_err(|e| sys_err("pipe", "", e))?;
    // SAFETY: the caller is single-threaded; the child only mounts, then serves.
    match unsafe { fork() }.map_err(|e| sys_err("fork", "", e))? {
        ForkResult::Child => {
            drop(r);
            detach_fds(w.as_raw_fd());
            let code = match serve(cfg, w) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{SERVER_COMM}: {e}");
                    1
                }
            };
            // SAFETY: leave the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut b = [0u8; 1];
            let n = nix::unistd::read(r.as_raw_fd(), &mut b).unwrap_or(0);
            if n == 1 {
                Ok(child)
            } else {
                let _ = waitpid(child, None);
                Err(ViewsError::Start(format!(
                    "mounting FUSE on {} failed (see the shim log)",
                    cfg.dir.display()
                )))
            }
        }
    }
}

/// The server must hold nothing of the shim's: stdout is the starter's pipe (it waits for
/// EOF) and fd 3 the slice's lock. Keep stderr (the shim log) and `keep`.
fn detach_fds(keep: i32) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        let _ = nix::unistd::close(fd);
    }
}

fn io(e: &std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn is_fuse(p: &Path) -> bool {
    match nix::sys::statfs::statfs(p) {
        Ok(s) => s.filesystem_type().0 == FUSE_SUPER_MAGIC,
        Err(e) => e == nix::Error::ENOTCONN,
    }
}

/// The server: mount, tell the parent, serve until the connection ends.
fn serve(cfg: &Config, ready: OwnedFd) -> Result<(), ViewsError> {
    let _ = nix::sys::prctl::set_name(&std::ffi::CString::new(SERVER_COMM).unwrap_or_default());
    // Die with the shim: a server outliving its slice would hold nothing useful.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // fuser's own mount goes through libfuse or fusermount3; as root, mount(2) directly and
    // hand the descriptor to fuser's session.
    let dev = nix::fcntl::open(
        "/dev/fuse",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| sys_err("open", "/dev/fuse", e))?;
    // SAFETY: fd was just returned by open(2).
    let dev = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dev) };
    let data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other",
        dev.as_raw_fd()
    );
    mount(
        Some(SERVER_COMM),
        &cfg.dir,
        Some("fuse.vslice-views"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )
    .map_err(|e| sys_err("mount fuse", cfg.dir.display().to_string(), e))?;
    let _ = nix::unistd::write(&ready, b"1");
    drop(ready);
    let (views, refresher) = fs::ViewsFs::new(source::Source::new(&cfg.cgroup, cfg.started));
    let mut session = fuser::Session::from_fd(views, dev, fuser::SessionACL::All);
    refresher
        .start(session.notifier())
        .map_err(|e| sys_err("spawn", "views refresher", io(&e)))?;
    session
        .run()
        .map_err(|e| sys_err("serve", cfg.dir.display().to_string(), io(&e)))
}

/// Replace the views inside a running slice with binds of the (new) server's files: from a
/// forked child (setns needs a single-threaded process, and the shim must keep its own mount
/// namespace), clone each file, enter the slice's mount namespace, detach any dead FUSE
/// mounts on the target and move the clone there. Returns how many views were placed.
pub fn reinject(cfg: &Config, init_pid: i32) -> Result<usize, ViewsError> {
    let ns = nix::fcntl::open(
        format!("/proc/{init_pid}/ns/mnt").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| sys_err("open", format!("/proc/{init_pid}/ns/mnt"), e))?;
    // SAFETY: fd was just returned by open(2).
    let ns = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ns) };
    let mut clones = Vec::new();
    for (name, target) in TARGETS {
        let src = cfg.dir.join(name);
        let fd = sys::open_tree_clone(&src.to_string_lossy(), false)
            .map_err(|e| sys_err("open_tree", src.display().to_string(), e))?;
        sys::mount_setattr(
            &fd,
            sys::MOUNT_ATTR_RDONLY
                | sys::MOUNT_ATTR_NOSUID
                | sys::MOUNT_ATTR_NODEV
                | sys::MOUNT_ATTR_NOEXEC,
            0,
            None,
        )
        .map_err(|e| sys_err("mount_setattr", src.display().to_string(), e))?;
        clones.push((*target, fd));
    }
    // SAFETY: the caller is single-threaded; the child only makes syscalls and exits.
    match unsafe { fork() }.map_err(|e| sys_err("fork", "", e))? {
        ForkResult::Child => {
            let mut placed = 0;
            if nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS).is_ok() {
                for (target, fd) in &clones {
                    // Only where a view was mounted: a dead one (ENOTCONN) or a live one.
                    let mut had = false;
                    for _ in 0..8 {
                        if !is_fuse(Path::new(target)) {
                            break;
                        }
                        had = true;
                        if umount2(*target, MntFlags::MNT_DETACH).is_err() {
                            break;
                        }
                    }
                    if had && sys::move_mount_to(fd, target).is_ok() {
                        placed += 1;
                    }
                }
            }
            // SAFETY: leave the forked child at once.
            unsafe { libc::_exit(placed) }
        }
        ForkResult::Parent { child } => {
            drop(clones);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, n)) => Ok(n as usize),
                Ok(other) => Err(ViewsError::Start(format!("re-inject: {other:?}"))),
                Err(e) => Err(sys_err("waitpid", "re-inject", e)),
            }
        }
    }
}
