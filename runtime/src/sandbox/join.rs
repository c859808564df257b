//! Joining a running sandbox: `exec` and `enter`. The joining process enters the cgroup and
//! every namespace of the sandbox's init, then runs under the same capability, rlimit and
//! seccomp policy as init (the [`ExecPlan`] built from the same spec).
//!
//! ```text
//! caller (host)           opens the namespace fds (and a pty from the sandbox's devpts)
//!   └─ joiner             joins cgroup + namespaces; waits for the command, exits with its code
//!        └─ command       (inside the PID namespace) setsid, stdio/tty, exec via ExecPlan
//! ```
//! The caller itself stays a host process, outside every sandbox namespace.
use super::process::{io_errno, ExecPlan};
use super::{sys_err, SandboxError};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// Exit code when the sandbox could not be joined or the command could not be started.
pub const EXIT_CANNOT_RUN: i32 = 126;
/// Exit code when the command was not found inside the sandbox.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Where to join.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host PID of the sandbox's init.
    pub init_pid: i32,
    /// Cgroup path (below every hierarchy root) to join first.
    pub cgroup: Option<String>,
}

/// Namespaces in join order: the user namespace first (it grants the capabilities needed for
/// the others), the mount namespace last (it changes our root and working directory).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn same_ns(a: &str, b: &str) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            use std::os::unix::fs::MetadataExt;
            x.ino() == y.ino() && x.dev() == y.dev()
        }
        _ => false,
    }
}

/// Open the namespaces of `pid` that differ from ours.
fn open_namespaces(pid: i32) -> Result<Vec<(CloneFlags, OwnedFd, String)>, SandboxError> {
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{name}");
        if same_ns(&theirs, &format!("/proc/self/ns/{name}")) {
            continue;
        }
        let f = std::fs::File::open(&theirs)
            .map_err(|e| sys_err("open", theirs.clone(), io_errno(&e)))?;
        out.push((*flag, OwnedFd::from(f), theirs));
    }
    Ok(out)
}

/// How the command's terminal is set up.
pub enum Stdio {
    /// Inherit the caller's stdin/stdout/stderr (the command gets its own session, so it has
    /// no controlling terminal and cannot push input into the caller's terminal).
    Inherit,
    /// Run on the slave side of this pty (opened from the sandbox's own devpts).
    Pty(OwnedFd),
}

/// Fork the joiner; returns its PID. The joiner exits with the command's exit code
/// (128+signal if it was killed), or EXIT_CANNOT_RUN / EXIT_NOT_FOUND with a message on stderr.
pub fn spawn(target: &Target, plan: &ExecPlan, stdio: Stdio) -> Result<Pid, SandboxError> {
    let namespaces = open_namespaces(target.init_pid)?;
    let cgroup = target.cgroup.as_deref().map(crate::cgroup::Cgroup::new);
    let caller = nix::unistd::getpid();
    // SAFETY: the callers (shim exec, OCI exec) are single-threaded.
    match unsafe { nix::unistd::fork() }.map_err(|e| sys_err("fork", "joiner", e))? {
        ForkResult::Parent { child } => {
            drop(stdio);
            Ok(child)
        }
        ForkResult::Child => {
            let code = match joiner(caller, &namespaces, cgroup.as_ref(), plan, stdio) {
                Ok(code) => code,
                Err((code, e)) => {
                    let _ = writeln!(std::io::stderr(), "vslice: {e}");
                    code
                }
            };
            // SAFETY: forked child.
            unsafe { libc::_exit(code) }
        }
    }
}

fn joiner(
    caller: Pid,
    namespaces: &[(CloneFlags, OwnedFd, String)],
    cgroup: Option<&crate::cgroup::Cgroup>,
    plan: &ExecPlan,
    stdio: Stdio,
) -> Result<i32, (i32, SandboxError)> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
    let cannot = |e: SandboxError| (EXIT_CANNOT_RUN, e);
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| cannot(sys_err("prctl", "PR_SET_DUMPABLE", e)))?;
    // If whoever ran the exec goes away (a client disconnects, a timeout kills it), the
    // command must not linger in the slice. The command's own parent-death signal does not
    // survive its switch to the slice's credentials (the kernel clears it on a change of
    // euid), so the joiner does it: its parent's death is a SIGTERM, received with sigwait
    // below, and answered by killing the command's session. SIGTERM and SIGCHLD stay blocked
    // (pending until sigwait); the command starts with an empty mask (ExecPlan).
    let mut waited = SigSet::empty();
    waited.add(Signal::SIGTERM);
    waited.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
        .map_err(|e| cannot(sys_err("sigprocmask", "SIGTERM, SIGCHLD", e)))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
        .map_err(|e| cannot(sys_err("prctl", "PR_SET_PDEATHSIG", e)))?;
    if nix::unistd::getppid() != caller {
        // The caller died before the death signal was armed.
        return Err(cannot(SandboxError::Child(
            "the exec's caller went away".into(),
        )));
    }
    if let Some(cg) = cgroup {
        cg.add_pid(std::process::id() as i32)
            .map_err(|e| cannot(e.into()))?;
    }
    plan.apply_rlimits().map_err(cannot)?;
    for (flag, fd, path) in namespaces {
        nix::sched::setns(fd, *flag).map_err(|e| cannot(sys_err("setns", path.clone(), e)))?;
    }
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| cannot(sys_err("pipe2", "", e)))?;
    // SAFETY: single-threaded forked child.
    match unsafe { nix::unistd::fork() }.map_err(|e| cannot(sys_err("fork", "command", e)))? {
        ForkResult::Child => {
            drop(err_r);
            let e = command(plan, stdio);
            let not_found = matches!(
                &e,
                SandboxError::Sys {
                    op: "execve",
                    source: nix::Error::ENOENT,
                    ..
                }
            );
            let mut w = std::fs::File::from(err_w);
            let _ = write!(w, "{}{}", if not_found { "N" } else { "C" }, e);
            // SAFETY: forked child.
            unsafe { libc::_exit(EXIT_CANNOT_RUN) }
        }
        ForkResult::Parent { child } => {
            drop(err_w);
            drop(stdio);
            let mut msg = String::new();
            let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
            let status = loop {
                match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => {}
                    other => break other,
                }
                // SIGCHLD: look again. SIGTERM: the caller is gone; end the command and what
                // it started in its session (setsid made its process group its own PID).
                if let Ok(Signal::SIGTERM) = waited.wait() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(-child.as_raw()), Signal::SIGKILL);
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                }
            };
            if let Some(rest) = msg.strip_prefix('N') {
                return Err((EXIT_NOT_FOUND, SandboxError::Child(rest.to_string())));
            }
            if let Some(rest) = msg.strip_prefix('C') {
                return Err((EXIT_CANNOT_RUN, SandboxError::Child(rest.to_string())));
            }
            Ok(match status {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                _ => EXIT_CANNOT_RUN,
            })
        }
    }
}

fn command(plan: &ExecPlan, stdio: Stdio) -> SandboxError {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        return sys_err("prctl", "PR_SET_PDEATHSIG", e);
    }
    if let Err(e) = nix::unistd::setsid() {
        return sys_err("setsid", "", e);
    }
    if let Stdio::Pty(slave) = &stdio {
        // SAFETY: TIOCSCTTY on a terminal fd we own.
        if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
            return sys_err("ioctl TIOCSCTTY", "pty", nix::Error::last());
        }
        for target in 0..3 {
            if let Err(e) = nix::unistd::dup2(slave.as_raw_fd(), target) {
                return sys_err("dup2", "pty", e);
            }
        }
    }
    drop(stdio);
    plan.exec()
}

/// Wait for a joiner and return its exit code.
pub fn wait(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Err(nix::Error::EINTR) => continue,
            Ok(_) => continue,
            Err(_) => return EXIT_CANNOT_RUN,
        }
    }
}
