//! The sandbox executor: turns an `oci_spec::runtime::Spec` into a running, isolated process.
//! Slices and the OCI runtime command (`vslice-runc`) both go through [`create`]; there is no
//! second implementation of namespaces, mounts, cgroups or seccomp.
//!
//! Process shape (all forks are plain fork(2) from a single-threaded caller — the shim or the
//! OCI command — never from the multi-threaded daemon):
//!
//! ```text
//! caller (host root)          writes uid/gid maps, joins the cgroup, mounts the idmapped
//!   │                         overlay (needs the new user namespace), then says "go"
//!   └─ intermediate           unshare(user) … wait for "go" … unshare(mnt,pid,uts,ipc,net,cgroup)
//!        └─ init (PID 1)      mounts, pivot_root, hostname, masks, caps, seccomp, exec
//! ```
//! The intermediate exits as soon as init exists; init is re-parented to the caller, which
//! must be a child subreaper (the shim is) or is fine with init going to its own reaper.
pub mod join;
pub mod mounts;
pub mod process;
pub mod pty;
pub mod rootfs;
pub mod seccomp;
pub mod sys;

pub use rootfs::IdmappedOverlay;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use process::ExecPlan;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{op} {target}: {source}")]
    Sys {
        op: &'static str,
        target: String,
        #[source]
        source: nix::Error,
    },
    #[error("invalid spec: {0}")]
    Spec(String),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// An error reported by the sandboxed child before it could exec.
    #[error("{0}")]
    Child(String),
}

fn sys_err(op: &'static str, target: impl Into<String>, e: nix::Error) -> SandboxError {
    SandboxError::Sys { op, target: target.into(), source: e }
}

/// What to run and how to build its root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    pub spec: Spec,
    /// `Some`: a slice's copy-on-write image, mounted by the caller before init starts.
    /// `None`: `spec.root.path` is used as is (an OCI bundle's rootfs).
    pub overlay: Option<IdmappedOverlay>,
}

#[derive(Debug, Default)]
pub struct CreateOptions {
    /// Replace init's stdin/stdout/stderr with the sandbox's own /dev/null (slices: no host
    /// descriptor reaches the slice). OCI callers keep the stdio they were given.
    pub null_stdio: bool,
    /// Block init, fully set up, until this FIFO is opened for reading (OCI create/start).
    pub start_fifo: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Created {
    /// Host PID of the sandbox's init.
    pub pid: i32,
}

/// Namespaces to create (flags) and to join (by path), from the spec.
struct NamespacePlan {
    new_user: bool,
    join_user: Option<OwnedFd>,
    unshare: CloneFlags,
    join: Vec<(CloneFlags, OwnedFd, String)>,
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // The time namespace only applies to children; unshared with the others.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

fn open_ns(path: &std::path::Path) -> Result<OwnedFd, SandboxError> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| sys_err("open namespace", path.display().to_string(), process::io_errno(&e)))
}

fn plan_namespaces(spec: &Spec) -> Result<NamespacePlan, SandboxError> {
    let mut plan =
        NamespacePlan { new_user: false, join_user: None, unshare: CloneFlags::empty(), join: Vec::new() };
    let nss = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    for ns in nss {
        let flag = ns_flag(ns.typ());
        match (ns.typ(), ns.path()) {
            (LinuxNamespaceType::User, None) => plan.new_user = true,
            (LinuxNamespaceType::User, Some(p)) => plan.join_user = Some(open_ns(p)?),
            (_, None) => plan.unshare |= flag,
            (_, Some(p)) => plan.join.push((flag, open_ns(p)?, p.display().to_string())),
        }
    }
    // Mounting anything requires our own mount namespace; never touch the caller's.
    if !plan.unshare.contains(CloneFlags::CLONE_NEWNS) && !plan.join.iter().any(|j| j.0 == CloneFlags::CLONE_NEWNS) {
        plan.unshare |= CloneFlags::CLONE_NEWNS;
    }
    Ok(plan)
}

/// What init needs besides the exec plan, resolved before fork.
struct InitPlan {
    rootfs: String,
    readonly_root: bool,
    hostname: Option<String>,
    mounts: Vec<oci_spec::runtime::Mount>,
    masked: Vec<String>,
    readonly: Vec<String>,
    sysctl: Vec<(String, String)>,
    null_stdio: bool,
    start_fifo: Option<PathBuf>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys_err("pipe2", "", e))
}

/// Write maps for `pid` from the spec ("container host size" per line).
fn write_id_maps(pid: Pid, spec: &Spec) -> Result<(), SandboxError> {
    let linux = spec.linux().as_ref();
    for (file, maps) in [
        ("uid_map", linux.and_then(|l| l.uid_mappings().clone())),
        ("gid_map", linux.and_then(|l| l.gid_mappings().clone())),
    ] {
        let maps = maps.unwrap_or_default();
        if maps.is_empty() {
            return Err(SandboxError::Spec(format!("linux.{file}: a new user namespace needs mappings")));
        }
        let text: String =
            maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| sys_err("write", path, process::io_errno(&e)))?;
    }
    Ok(())
}

/// Create the sandbox and start (or, with `start_fifo`, prepare) its init. On error, nothing
/// the call made is left running; the cgroup it created is removed.
pub fn create(launch: &Launch, opts: &CreateOptions) -> Result<Created, SandboxError> {
    let spec = &launch.spec;
    let process = spec.process().as_ref().ok_or_else(|| SandboxError::Spec("process: missing".into()))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let seccomp = linux.seccomp().as_ref().map(seccomp::compile).transpose()?;
    let exec = ExecPlan::from_process(process, seccomp)?;
    let ns = plan_namespaces(spec)?;
    let rootfs = match &launch.overlay {
        Some(o) => o.merged.to_string_lossy().into_owned(),
        None => spec
            .root()
            .as_ref()
            .map(|r| r.path().to_string_lossy().into_owned())
            .ok_or_else(|| SandboxError::Spec("root.path: missing".into()))?,
    };
    let init = InitPlan {
        rootfs,
        readonly_root: spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
        hostname: spec.hostname().clone(),
        mounts: spec.mounts().clone().unwrap_or_default(),
        masked: linux.masked_paths().clone().unwrap_or_default(),
        readonly: linux.readonly_paths().clone().unwrap_or_default(),
        sysctl: linux.sysctl().clone().unwrap_or_default().into_iter().collect(),
        null_stdio: opts.null_stdio,
        start_fifo: opts.start_fifo.clone(),
    };
    let cgroup = match linux.cgroups_path() {
        Some(p) => {
            let cg = crate::cgroup::Cgroup::new(&p.to_string_lossy());
            cg.create()?;
            if let Some(res) = linux.resources() {
                if let Err(e) = cg.apply(res) {
                    let _ = cg.destroy();
                    return Err(e.into());
                }
            }
            Some(cg)
        }
        None => None,
    };
    let result = spawn(launch, &ns, &init, &exec, cgroup.as_ref());
    if result.is_err() {
        if let Some(cg) = &cgroup {
            let _ = cg.destroy();
        }
    }
    result
}

fn spawn(
    launch: &Launch,
    ns: &NamespacePlan,
    init: &InitPlan,
    exec: &ExecPlan,
    cgroup: Option<&crate::cgroup::Cgroup>,
) -> Result<Created, SandboxError> {
    let (go_r, go_w) = pipe()?;
    let (st_r, st_w) = pipe()?;
    // SAFETY: callers are single-threaded (the shim, the OCI command, tests' forked helpers);
    // the child only runs our own code until exec.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| sys_err("fork", "", e))? {
        ForkResult::Child => {
            drop(go_w);
            drop(st_r);
            let mut status = std::fs::File::from(st_w);
            let err = intermediate(ns, init, exec, go_r, &mut status);
            let _ = writeln!(status, "error {}", err.to_string().replace('\n', " "));
            // SAFETY: _exit in a forked child; no destructors or atexit handlers must run.
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(go_r);
    drop(st_w);
    let mut go = std::fs::File::from(go_w);
    let mut status = BufReader::new(std::fs::File::from(st_r));
    let mut init_pid: Option<i32> = None;
    let outcome = (|| -> Result<(), SandboxError> {
        if ns.new_user {
            let line = read_line(&mut status)?;
            if line != "userns" {
                return Err(child_error(&line));
            }
            write_id_maps(child, &launch.spec)?;
        }
        if let Some(cg) = cgroup {
            cg.add_pid(child.as_raw())?;
        }
        if let Some(overlay) = &launch.overlay {
            let userns = open_ns(std::path::Path::new(&format!("/proc/{child}/ns/user")))?;
            overlay.mount(&userns)?;
        }
        go.write_all(b"g").map_err(|e| sys_err("write", "sync pipe", process::io_errno(&e)))?;
        let line = read_line(&mut status)?;
        let pid = line.strip_prefix("pid ").and_then(|p| p.parse::<i32>().ok()).ok_or_else(|| child_error(&line))?;
        init_pid = Some(pid);
        // EOF: init exec'd (the pipe is close-on-exec). "ready": init waits on the start FIFO.
        let mut rest = String::new();
        status.read_to_string(&mut rest).map_err(|e| sys_err("read", "sync pipe", process::io_errno(&e)))?;
        let rest = rest.trim();
        if rest.is_empty() || rest == "ready" {
            Ok(())
        } else {
            Err(child_error(rest))
        }
    })();
    let _ = nix::sys::wait::waitpid(child, None);
    match outcome {
        Ok(()) => Ok(Created { pid: init_pid.unwrap_or_default() }),
        Err(e) => {
            if let Some(pid) = init_pid {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            }
            Err(e)
        }
    }
}

fn child_error(line: &str) -> SandboxError {
    let msg = line.strip_prefix("error ").unwrap_or(line);
    if msg.is_empty() {
        SandboxError::Child("sandbox child exited without reporting".into())
    } else {
        SandboxError::Child(msg.to_string())
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String, SandboxError> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| sys_err("read", "sync pipe", process::io_errno(&e)))?;
    Ok(line.trim_end().to_string())
}

/// Runs in the intermediate child. Returns only on error.
fn intermediate(
    ns: &NamespacePlan,
    init: &InitPlan,
    exec: &ExecPlan,
    go_r: OwnedFd,
    status: &mut std::fs::File,
) -> SandboxError {
    let r = (|| -> Result<std::convert::Infallible, SandboxError> {
        // Nothing of this process may be reached through /proc/<pid>/exe or ptrace by the
        // slice (CVE-2019-5736): non-dumpable until the slice's own program is exec'd.
        nix::sys::prctl::set_dumpable(false).map_err(|e| sys_err("prctl", "PR_SET_DUMPABLE", e))?;
        exec.apply_rlimits()?;
        if let Some(fd) = &ns.join_user {
            nix::sched::setns(fd, CloneFlags::CLONE_NEWUSER).map_err(|e| sys_err("setns", "user", e))?;
        } else if ns.new_user {
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| sys_err("unshare", "user", e))?;
            writeln!(status, "userns").map_err(|e| sys_err("write", "sync pipe", process::io_errno(&e)))?;
        }
        let mut b = [0u8; 1];
        let mut go = std::fs::File::from(go_r);
        if go.read(&mut b).map_err(|e| sys_err("read", "sync pipe", process::io_errno(&e)))? != 1 {
            return Err(SandboxError::Child("caller went away before the sandbox was ready".into()));
        }
        if ns.new_user || ns.join_user.is_some() {
            // Until now our kernel uid was the caller's (host root, unmapped here): become the
            // namespace's root at once so no host-root-owned file is reachable by ownership.
            let root = nix::unistd::Gid::from_raw(0);
            nix::unistd::setresgid(root, root, root).map_err(|e| sys_err("setresgid", "0", e))?;
            let uroot = nix::unistd::Uid::from_raw(0);
            nix::unistd::setresuid(uroot, uroot, uroot).map_err(|e| sys_err("setresuid", "0", e))?;
            nix::unistd::setgroups(&[]).map_err(|e| sys_err("setgroups", "[]", e))?;
        }
        for (flag, fd, path) in &ns.join {
            nix::sched::setns(fd, *flag).map_err(|e| sys_err("setns", path.clone(), e))?;
        }
        nix::sched::unshare(ns.unshare).map_err(|e| sys_err("unshare", format!("{:?}", ns.unshare), e))?;
        // SAFETY: still single-threaded; the child runs only our code until exec.
        match unsafe { nix::unistd::fork() }.map_err(|e| sys_err("fork", "init", e))? {
            ForkResult::Child => {
                let e = run_init(init, exec, status);
                let _ = writeln!(status, "error {}", e.to_string().replace('\n', " "));
                // SAFETY: forked child.
                unsafe { libc::_exit(1) }
            }
            ForkResult::Parent { child } => {
                let _ = writeln!(status, "pid {child}");
                // SAFETY: forked child; init is re-parented to the caller (subreaper).
                unsafe { libc::_exit(0) }
            }
        }
    })();
    match r {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Runs as the sandbox's PID 1 before exec. Returns only on error.
fn run_init(init: &InitPlan, exec: &ExecPlan, status: &mut std::fs::File) -> SandboxError {
    let r = (|| -> Result<(), SandboxError> {
        nix::sys::prctl::set_dumpable(false).map_err(|e| sys_err("prctl", "PR_SET_DUMPABLE", e))?;
        let prepared = mounts::prepare(&init.mounts)?;
        mounts::pivot_into(&init.rootfs)?;
        mounts::attach(prepared)?;
        let has_pts = init.mounts.iter().any(|m| m.destination() == std::path::Path::new("/dev/pts"));
        if init.mounts.iter().any(|m| m.destination() == std::path::Path::new("/dev")) {
            mounts::dev_symlinks(has_pts)?;
        }
        if let Some(h) = &init.hostname {
            nix::unistd::sethostname(h).map_err(|e| sys_err("sethostname", h.clone(), e))?;
        }
        for (key, value) in &init.sysctl {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            std::fs::write(&path, value).map_err(|e| sys_err("write sysctl", path, process::io_errno(&e)))?;
        }
        mounts::mask(&init.masked)?;
        mounts::make_readonly(&init.readonly)?;
        if init.readonly_root {
            mounts::remount_readonly("/")?;
        }
        nix::unistd::setsid().map_err(|e| sys_err("setsid", "", e))?;
        if init.null_stdio {
            let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty())
                .map_err(|e| sys_err("open", "/dev/null (in sandbox)", e))?;
            for target in 0..3 {
                nix::unistd::dup2(null, target).map_err(|e| sys_err("dup2", "/dev/null", e))?;
            }
            if null > 2 {
                let _ = nix::unistd::close(null);
            }
        }
        if let Some(fifo) = &init.start_fifo {
            writeln!(status, "ready").map_err(|e| sys_err("write", "sync pipe", process::io_errno(&e)))?;
            // Blocks until `start` opens the FIFO for reading.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(fifo)
                .map_err(|e| sys_err("open", fifo.display().to_string(), process::io_errno(&e)))?;
            let _ = f.write_all(b"0");
        }
        Ok(())
    })();
    if let Err(e) = r {
        return e;
    }
    let _ = status.as_raw_fd();
    exec.exec()
}
