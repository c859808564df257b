//! What the slice store's files do not tell, made event-driven (issue 14, "idle is free"):
//!
//! * a shim that dies without writing `exit.json` (SIGKILL, a crash): a pidfd of the shim,
//!   readable when it exits;
//! * an OOM kill of a process other than init (init's own shows in `exit.json`): cgroup v1
//!   `memory.oom_control` notification (an eventfd registered in `cgroup.event_control`);
//!   cgroup v2 `memory.events` modification (inotify: kernfs notifies on every change).
//!
//! One small tokio task per running slice waits on both and reports the slice's name on a
//! channel; the poller then re-observes that slice. Without them, the poller would have to
//! read every slice's cgroup and process state on a short timer. The full poll stays as a
//! safety net (a pidfd that could not be opened, an OOM notification a kernel does not send).
use crate::slice::{SliceInfo, Status};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum SignalsError {
    #[error("{op} {what}: {source}")]
    Sys {
        op: &'static str,
        what: String,
        source: std::io::Error,
    },
}

fn sys(
    op: &'static str,
    what: impl std::fmt::Display,
) -> impl FnOnce(std::io::Error) -> SignalsError {
    let what = what.to_string();
    move |source| SignalsError::Sys { op, what, source }
}

fn check(r: libc::c_int) -> std::io::Result<OwnedFd> {
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// A pidfd of `pid` (Linux 5.3+).
fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    check(r as libc::c_int)
}

/// A descriptor readable when the memory cgroup in `dir` OOM-kills (or, v2, when any of its
/// memory events counts up).
fn oom_notifier(dir: &Path) -> Result<OwnedFd, SignalsError> {
    let v1 = dir.join("memory.oom_control");
    if v1.exists() {
        // SAFETY: plain syscall.
        let efd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
            .map_err(sys("eventfd", ""))?;
        let ofd = std::fs::File::open(&v1).map_err(sys("open", v1.display()))?;
        let ctl = dir.join("cgroup.event_control");
        std::fs::write(&ctl, format!("{} {}", efd.as_raw_fd(), ofd.as_raw_fd()))
            .map_err(sys("write", ctl.display()))?;
        // The registration holds its own reference to memory.oom_control.
        return Ok(efd);
    }
    let v2 = dir.join("memory.events");
    // SAFETY: plain syscall.
    let ifd = check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })
        .map_err(sys("inotify_init1", ""))?;
    let c = CString::new(v2.as_os_str().as_bytes()).map_err(|_| SignalsError::Sys {
        op: "watch",
        what: v2.display().to_string(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // SAFETY: a valid inotify fd and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(sys("inotify_add_watch", v2.display())(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(ifd)
}

/// Read whatever is pending on a non-blocking descriptor (an eventfd counter, inotify events).
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    // SAFETY: reads into an owned buffer of the given length; non-blocking descriptor.
    while unsafe {
        libc::read(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    } > 0
    {}
}

/// The memory cgroup directory of `cgroup` (relative path under the hierarchies), v1 or v2.
fn memory_dir(cgroup: &str) -> Option<PathBuf> {
    crate::cgroup::Cgroup::new(cgroup)
        .dirs()
        .ok()?
        .into_iter()
        .find(|d| d.join("memory.oom_control").exists() || d.join("memory.events").exists())
}

async fn watch(name: String, shim_pid: i32, cgroup: String, tx: mpsc::UnboundedSender<String>) {
    let setup = tokio::task::spawn_blocking(move || {
        let shim = pidfd(shim_pid).map_err(sys("pidfd_open", shim_pid));
        let oom = memory_dir(&cgroup).map(|d| oom_notifier(&d));
        (shim, oom)
    })
    .await;
    let Ok((shim, oom)) = setup else { return };
    let shim = match shim.and_then(|fd| {
        // SAFETY: the AsyncFd owns the descriptor for its whole life.
        unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| sys("register", "pidfd")(e.into_parts().1))
    }) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::debug!(slice = %name, error = %e, "no shim pidfd: the full poll covers it");
            None
        }
    };
    let oom = match oom.map(|r| {
        r.and_then(|fd| {
            // SAFETY: the AsyncFd owns the descriptor for its whole life.
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(|e| sys("register", "oom notifier")(e.into_parts().1))
        })
    }) {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            tracing::debug!(slice = %name, error = %e, "no OOM notification: the full poll covers it");
            None
        }
        None => None,
    };
    // An OOM kill between the slice's start and this registration sent nothing: look once.
    if oom.is_some() && tx.send(name.clone()).is_err() {
        return;
    }
    loop {
        tokio::select! {
            r = async { shim.as_ref()?.readable().await.ok().map(|_| ()) }, if shim.is_some() => {
                if r.is_some() {
                    let _ = tx.send(name);
                }
                return;
            }
            r = async { oom.as_ref()?.readable().await.ok() }, if oom.is_some() => {
                match r {
                    Some(mut guard) => {
                        drain(guard.get_inner());
                        guard.clear_ready();
                    }
                    None => return,
                }
                if tx.send(name.clone()).is_err() {
                    return;
                }
                // cgroup v1 notifies when the OOM starts, before the kill is counted in
                // memory.oom_control (the poller diffs that counter): look again shortly.
                tokio::spawn(look_again(name.clone(), tx.clone()));
            }
            else => return,
        }
    }
}

/// Report `name` again after the OOM killer has had time to count its kill.
async fn look_again(name: String, tx: mpsc::UnboundedSender<String>) {
    for ms in [100, 1000] {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        if tx.send(name.clone()).is_err() {
            return;
        }
    }
}

/// The watchers of the running slices.
#[derive(Debug)]
pub struct Signals {
    tx: mpsc::UnboundedSender<String>,
    cgroup_parent: String,
    /// slice → (shim pid watched, its task).
    tasks: HashMap<String, (i32, JoinHandle<()>)>,
}

impl Signals {
    pub fn new(cgroup_parent: &str) -> (Signals, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Signals {
                tx,
                cgroup_parent: cgroup_parent.to_string(),
                tasks: HashMap::new(),
            },
            rx,
        )
    }

    /// Follow fresh observations: a running slice gets watchers for its current shim; a
    /// stopped or gone one loses them. Must run inside the tokio runtime.
    pub fn follow(&mut self, infos: &[SliceInfo], gone: &[String]) {
        for g in gone {
            if let Some((_, t)) = self.tasks.remove(g) {
                t.abort();
            }
        }
        for i in infos {
            let name = &i.spec.name;
            match (i.status, i.shim_pid) {
                (Status::Running, Some(pid)) => {
                    if self
                        .tasks
                        .get(name)
                        .is_some_and(|(p, t)| *p == pid && !t.is_finished())
                    {
                        continue;
                    }
                    let cgroup = format!("{}/{}", self.cgroup_parent, name);
                    let t = tokio::spawn(watch(name.clone(), pid, cgroup, self.tx.clone()));
                    if let Some((_, old)) = self.tasks.insert(name.clone(), (pid, t)) {
                        old.abort();
                    }
                }
                _ => {
                    if let Some((_, t)) = self.tasks.remove(name) {
                        t.abort();
                    }
                }
            }
        }
    }

    /// Slices watched.
    pub fn watched(&self) -> usize {
        self.tasks.len()
    }

    /// Names of the slices watched.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.tasks.keys().cloned()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (_, (_, t)) in self.tasks.drain() {
            t.abort();
        }
    }
}
