//! Joining a running sandbox: `exec` and `enter`. The joining process enters the cgroup and
//! every namespace of the sandbox's init, then runs under the same capability, rlimit and
//! seccomp policy as init (the [`ExecPlan`] built from the same spec).
//!
//! ```text
//! caller (host)           opens the namespace fds (and a pty from the sandbox's devpts)
//!   └─ joiner             joins cgroup + namespaces; forks the command, then either waits for
//!        │                it and exits with its code ([`spawn`]) or exits as soon as it has
//!        │                exec'd ([`spawn_detached`], runc's `exec --detach`)
//!        └─ command       (inside the PID namespace) setsid, stdio/tty, exec via ExecPlan
//! ```
//! The caller itself stays a host process, outside every sandbox namespace. Both modes are
//! this one implementation: the same namespace order, cgroup join, rlimits, exit-code mapping
//! (127 not found, 126 anything else) and policy; they differ only in who waits for the
//! command and in the parent-death signal (see [`Mode`]).
use super::process::{io_errno, ExecPlan};
use super::{sys, sys_err, SandboxError};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::io::{BufRead, BufReader, Read, Write};
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

/// Who waits for the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The joiner waits and exits with the command's code. The joiner and the command get
    /// PR_SET_PDEATHSIG(SIGKILL): if whoever ran the exec goes away (a client disconnects, a
    /// timeout kills the shim), the command must not linger in the slice holding its pipes.
    Wait,
    /// The joiner exits once the command has exec'd; the command is re-parented to the
    /// caller's nearest child subreaper (containerd's shim), which waits for it. The command
    /// gets NO parent-death signal: its parent, the joiner, exits by design right away (the
    /// kernel would deliver the signal at that moment), and `vslice-runc exec --detach`
    /// itself exits as soon as it printed the PID. runc does the same: a detached exec's
    /// process keeps only the parent-death signal the spec asks for (none), and its lifetime
    /// belongs to the subreaper and to the container (it dies with the PID namespace's
    /// init). The joiner still has SIGKILL as its parent-death signal while it sets up, so a
    /// caller killed mid-exec leaves no half-joined process behind.
    Detach,
}

/// Fork the joiner; returns its PID. The joiner exits with the command's exit code
/// (128+signal if it was killed), or EXIT_CANNOT_RUN / EXIT_NOT_FOUND with a message on stderr.
/// The caller must be single-threaded (refused otherwise, before anything is done).
pub fn spawn(target: &Target, plan: &ExecPlan, stdio: Stdio) -> Result<Pid, SandboxError> {
    sys::ensure_single_threaded("join::spawn")?;
    let namespaces = open_namespaces(target.init_pid)?;
    let cgroup = target.cgroup.as_deref().map(crate::cgroup::Cgroup::new);
    let caller = nix::unistd::getpid();
    // SAFETY: the caller is single-threaded (checked above); the child runs only our code
    // and ends in _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| sys_err("fork", "joiner", e))? {
        ForkResult::Parent { child } => {
            drop(stdio);
            Ok(child)
        }
        ForkResult::Child => {
            sys::abort_on_panic();
            let code = match joiner(
                caller,
                &namespaces,
                cgroup.as_ref(),
                plan,
                stdio,
                Mode::Wait,
                None,
            ) {
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

/// runc's `exec --detach`: join like [`spawn`], but return as soon as the command has
/// exec'd, with its host PID. The command is re-parented to the caller's nearest child
/// subreaper, which must wait for it. A command that cannot be started is an error
/// ([`SandboxError::NotRunnable`] with the 126/127 code [`spawn`] would have exited with).
/// The caller must be single-threaded (refused otherwise, before anything is done).
pub fn spawn_detached(target: &Target, plan: &ExecPlan, stdio: Stdio) -> Result<i32, SandboxError> {
    sys::ensure_single_threaded("join::spawn_detached")?;
    let namespaces = open_namespaces(target.init_pid)?;
    let cgroup = target.cgroup.as_deref().map(crate::cgroup::Cgroup::new);
    let (st_r, st_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| sys_err("pipe2", "status", e))?;
    let caller = nix::unistd::getpid();
    // SAFETY: the caller is single-threaded (checked above); the child runs only our code
    // and ends in _exit.
    let joiner_pid =
        match unsafe { nix::unistd::fork() }.map_err(|e| sys_err("fork", "joiner", e))? {
            ForkResult::Parent { child } => child,
            ForkResult::Child => {
                sys::abort_on_panic();
                drop(st_r);
                let mut status = std::fs::File::from(st_w);
                let code = match joiner(
                    caller,
                    &namespaces,
                    cgroup.as_ref(),
                    plan,
                    stdio,
                    Mode::Detach,
                    Some(&mut status),
                ) {
                    Ok(code) => code,
                    Err((code, e)) => {
                        let line = format!("error {code} {e}").replace('\n', " ");
                        let _ = status.write_all(format!("{line}\n").as_bytes());
                        code
                    }
                };
                // SAFETY: forked child; the command is re-parented to the caller's subreaper.
                unsafe { libc::_exit(code) }
            }
        };
    drop(st_w);
    drop(stdio);
    let mut pid = None;
    let mut err = None;
    let mut status = BufReader::new(std::fs::File::from(st_r));
    loop {
        let mut line = String::new();
        match status.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                err = Some(sys_err("read", "joiner status", io_errno(&e)));
                break;
            }
        }
        let line = line.trim_end();
        if let Some(p) = line.strip_prefix("pid ") {
            pid = p.parse::<i32>().ok();
        } else if let Some(rest) = line.strip_prefix("error ") {
            let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
            err = Some(SandboxError::NotRunnable {
                code: code.parse().unwrap_or(EXIT_CANNOT_RUN),
                message: message.to_string(),
            });
        }
    }
    let joiner_status = wait(joiner_pid);
    match (err, pid) {
        (Some(e), _) => Err(e),
        (None, Some(p)) if joiner_status == 0 => Ok(p),
        _ => Err(SandboxError::NotRunnable {
            code: EXIT_CANNOT_RUN,
            message: format!(
                "the joining process ended with status {joiner_status} without reporting"
            ),
        }),
    }
}

/// Move the calling (single-threaded) process into `cg`: on v1 by writing "0" to `tasks` in
/// each hierarchy (it moves just this thread, without the kernel's global threadgroup lock that
/// a PID written to cgroup.procs takes), on v2 through cgroup.procs.
fn join_cgroup_self(cg: &crate::cgroup::Cgroup) -> Result<(), SandboxError> {
    if cg.version == crate::cgroup::Version::V1 {
        for d in cg.dirs()?.into_iter().filter(|d| d.is_dir()) {
            let tasks = d.join("tasks");
            std::fs::write(&tasks, "0")
                .map_err(|e| sys_err("write", tasks.display().to_string(), io_errno(&e)))?;
        }
        Ok(())
    } else {
        Ok(cg.add_pid(std::process::id() as i32)?)
    }
}

/// Runs in the joiner. `Mode::Wait`: returns the command's exit code. `Mode::Detach`: reports
/// "pid N" on `status` once the command is forked and returns 0 once it has exec'd.
fn joiner(
    caller: Pid,
    namespaces: &[(CloneFlags, OwnedFd, String)],
    cgroup: Option<&crate::cgroup::Cgroup>,
    plan: &ExecPlan,
    stdio: Stdio,
    mode: Mode,
    status: Option<&mut std::fs::File>,
) -> Result<i32, (i32, SandboxError)> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
    let cannot = |e: SandboxError| (EXIT_CANNOT_RUN, e);
    // Nothing of this process may be reached through /proc/<pid>/exe or ptrace by the
    // sandbox (CVE-2019-5736): non-dumpable until the command is exec'd.
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| cannot(sys_err("prctl", "PR_SET_DUMPABLE", e)))?;
    // Wait: if whoever ran the exec goes away (a client disconnects, a timeout kills it), the
    // command must not linger in the slice. The command's own parent-death signal does not
    // survive its switch to the slice's credentials (the kernel clears it on a change of
    // euid), so the joiner does it: its parent's death is a SIGTERM, received with sigwait
    // below, and answered by killing the command's session. SIGTERM and SIGCHLD stay blocked
    // (pending until sigwait); the command starts with an empty mask (ExecPlan).
    // Detach: the joiner only sets up; a caller that dies meanwhile must not leave it
    // half-joined, so it is simply killed.
    let mut waited = SigSet::empty();
    waited.add(Signal::SIGTERM);
    waited.add(Signal::SIGCHLD);
    let death_signal = match mode {
        Mode::Wait => {
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
                .map_err(|e| cannot(sys_err("sigprocmask", "SIGTERM, SIGCHLD", e)))?;
            Signal::SIGTERM
        }
        Mode::Detach => Signal::SIGKILL,
    };
    nix::sys::prctl::set_pdeathsig(death_signal)
        .map_err(|e| cannot(sys_err("prctl", "PR_SET_PDEATHSIG", e)))?;
    if nix::unistd::getppid() != caller {
        // The caller died before the death signal was armed.
        return Err(cannot(SandboxError::Child(
            "the exec's caller went away".into(),
        )));
    }
    if let Some(cg) = cgroup {
        join_cgroup_self(cg).map_err(cannot)?;
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
            let e = command(plan, stdio, mode);
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
            if let Some(status) = status {
                // One write(2), so the caller reads the whole line.
                status
                    .write_all(format!("pid {child}\n").as_bytes())
                    .map_err(|e| cannot(sys_err("write", "joiner status", io_errno(&e))))?;
            }
            // EOF: the command exec'd (the pipe is close-on-exec) or died trying.
            let mut msg = String::new();
            let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
            let failed = if let Some(rest) = msg.strip_prefix('N') {
                Some((EXIT_NOT_FOUND, SandboxError::Child(rest.to_string())))
            } else {
                msg.strip_prefix('C')
                    .map(|rest| (EXIT_CANNOT_RUN, SandboxError::Child(rest.to_string())))
            };
            if mode == Mode::Detach {
                if failed.is_none() {
                    // Exec'd: leave the command to the caller's subreaper.
                    return Ok(0);
                }
                wait(child);
            } else {
                let status = loop {
                    match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => {}
                        other => break other,
                    }
                    // SIGCHLD: look again. SIGTERM: the caller is gone; end the command and
                    // what it started in its session (setsid made its process group its PID).
                    if let Ok(Signal::SIGTERM) = waited.wait() {
                        let _ =
                            nix::sys::signal::kill(Pid::from_raw(-child.as_raw()), Signal::SIGKILL);
                        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    }
                };
                if failed.is_none() {
                    return Ok(match status {
                        Ok(WaitStatus::Exited(_, code)) => code,
                        Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                        _ => EXIT_CANNOT_RUN,
                    });
                }
            }
            match failed {
                Some(f) => Err(f),
                None => Ok(EXIT_CANNOT_RUN),
            }
        }
    }
}

fn command(plan: &ExecPlan, stdio: Stdio, mode: Mode) -> SandboxError {
    if mode == Mode::Wait {
        if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
            return sys_err("prctl", "PR_SET_PDEATHSIG", e);
        }
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

/// Wait for a joiner and return its exit code (128+signal if it was killed).
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
