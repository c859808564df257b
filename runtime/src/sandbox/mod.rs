//! The sandbox executor: turns an `oci_spec::runtime::Spec` into a running, isolated process.
//! Slices and the OCI runtime command (`vslice-runc`) both go through [`create`]; there is no
//! second implementation of namespaces, mounts, cgroups or seccomp.
//!
//! Process shape (all forks are plain fork(2) from a single-threaded caller — the shim or the
//! OCI command — never from the multi-threaded daemon; [`create`], [`join::spawn`] and
//! [`join::spawn_detached`] refuse a caller with more than one thread, see
//! [`sys::ensure_single_threaded`]; every forked child aborts on panic, see
//! [`sys::abort_on_panic`]):
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
pub mod volumes;

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
    /// The caller has more threads than the one calling: forking sandbox children from it
    /// is unsound (see [`sys::ensure_single_threaded`]). Nothing was done.
    #[error("{op}: refused in a multi-threaded process ({threads} threads); the sandbox executor forks and must run in a single-threaded caller such as vslice-shim or vslice-runc")]
    MultiThreaded { op: &'static str, threads: usize },
    /// A joined command could not be started; `code` is what a waiting joiner would have
    /// exited with (127: not found, 126: anything else).
    #[error("{message}")]
    NotRunnable { code: i32, message: String },
}

fn sys_err(op: &'static str, target: impl Into<String>, e: nix::Error) -> SandboxError {
    SandboxError::Sys {
        op,
        target: target.into(),
        source: e,
    }
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
    /// See [`process::ExecPlan::sysinfo_to`] (slices with views; None for OCI containers).
    pub sysinfo_to: Option<std::os::fd::RawFd>,
}

/// What only the OCI runtime command (`vslice-runc`) asks of the executor; slices go through
/// [`create`], which passes `OciExtras::default()` (every step below is then skipped).
#[derive(Default)]
pub struct OciExtras<'a> {
    /// A connected Unix socket (runc's `--console-socket`, or one end of a socketpair): init
    /// opens a pty from the sandbox's own devpts once its mounts are attached, sends the master
    /// here (one SCM_RIGHTS message), makes the slave its controlling terminal and stdio and
    /// binds it over /dev/console.
    pub console: Option<OwnedFd>,
    /// Initial window size (columns, rows) of that pty (`process.consoleSize`).
    pub console_size: Option<(u16, u16)>,
    /// prestart + createRuntime hooks: called in the caller with init's host PID once every
    /// namespace exists and before init pivots; init waits until it returns.
    pub runtime_hooks: Option<&'a dyn Fn(i32) -> Result<(), String>>,
    /// createContainer hooks (in init, before pivot_root, host paths) and startContainer hooks
    /// (in init, after the start FIFO was opened and before exec, paths inside the sandbox).
    /// The second argument is init's host PID.
    pub container_hooks: Option<&'a dyn Fn(ContainerHook, i32) -> Result<(), String>>,
    /// Join a new anonymous session keyring in init (runc's default), so that the sandbox
    /// does not share the caller's session keyring.
    pub new_session_keyring: bool,
    /// More cgroup v1 directories init joins besides the spec's cgroup in the executor's
    /// hierarchies (OCI: the `devices` cgroup).
    pub extra_cgroup_dirs: Vec<PathBuf>,
}

impl std::fmt::Debug for OciExtras<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciExtras")
            .field("console", &self.console)
            .field("console_size", &self.console_size)
            .field("runtime_hooks", &self.runtime_hooks.is_some())
            .field("container_hooks", &self.container_hooks.is_some())
            .field("new_session_keyring", &self.new_session_keyring)
            .field("extra_cgroup_dirs", &self.extra_cgroup_dirs)
            .finish()
    }
}

/// Which in-sandbox hook point [`OciExtras::container_hooks`] is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerHook {
    CreateContainer,
    StartContainer,
}

/// Exit code of a sandbox whose program could not be started after `start` (runc's and the
/// shell's convention: 127 not found, 126 anything else); the reason goes to its stderr.
pub const EXIT_START_FAILED: i32 = 126;
pub const EXIT_START_NOT_FOUND: i32 = 127;

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
    std::fs::File::open(path).map(OwnedFd::from).map_err(|e| {
        sys_err(
            "open namespace",
            path.display().to_string(),
            process::io_errno(&e),
        )
    })
}

fn plan_namespaces(spec: &Spec) -> Result<NamespacePlan, SandboxError> {
    let mut plan = NamespacePlan {
        new_user: false,
        join_user: None,
        unshare: CloneFlags::empty(),
        join: Vec::new(),
    };
    let nss = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
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
    if !plan.unshare.contains(CloneFlags::CLONE_NEWNS)
        && !plan.join.iter().any(|j| j.0 == CloneFlags::CLONE_NEWNS)
    {
        plan.unshare |= CloneFlags::CLONE_NEWNS;
    }
    Ok(plan)
}

/// What init needs besides the exec plan, resolved before fork.
struct InitPlan<'a> {
    rootfs: String,
    readonly_root: bool,
    hostname: Option<String>,
    mounts: Vec<oci_spec::runtime::Mount>,
    masked: Vec<String>,
    readonly: Vec<String>,
    sysctl: Vec<(String, String)>,
    null_stdio: bool,
    domainname: Option<String>,
    /// `linux.devices`: created with mknod, or bound from the host's node of the same path in a
    /// user namespace (which cannot mknod).
    devices: Vec<oci_spec::runtime::LinuxDevice>,
    in_userns: bool,
    /// (mount destination, propagation flags) from mount options, applied after attaching.
    propagation: Vec<(String, nix::mount::MsFlags)>,
    rootfs_propagation: Option<nix::mount::MsFlags>,
    /// The start FIFO's directory (opened O_PATH by the caller, as host root: a
    /// user-namespaced init could not traverse a 0700 state directory) and its name.
    fifo_dir: Option<(std::os::fd::RawFd, std::ffi::OsString)>,
    console: Option<std::os::fd::RawFd>,
    console_size: Option<(u16, u16)>,
    runtime_hooks: bool,
    container_hooks: Option<&'a dyn Fn(ContainerHook, i32) -> Result<(), String>>,
    new_session_keyring: bool,
    /// A fresh network namespace has its loopback down; every program expects it up.
    new_netns: bool,
}

/// The propagation flags an OCI propagation option or `rootfsPropagation` names.
pub fn propagation_flags(opt: &str) -> Option<nix::mount::MsFlags> {
    use nix::mount::MsFlags;
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
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
            return Err(SandboxError::Spec(format!(
                "linux.{file}: a new user namespace needs mappings"
            )));
        }
        let text: String = maps
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| sys_err("write", path, process::io_errno(&e)))?;
    }
    Ok(())
}

/// Create the sandbox and start (or, with `start_fifo`, prepare) its init. On error, nothing
/// the call made is left running; the cgroup it created is removed.
pub fn create(launch: &Launch, opts: &CreateOptions) -> Result<Created, SandboxError> {
    create_with(launch, opts, &OciExtras::default())
}

/// [`create`] with the steps only the OCI runtime command needs (console, hooks, keyring).
pub fn create_with(
    launch: &Launch,
    opts: &CreateOptions,
    extras: &OciExtras,
) -> Result<Created, SandboxError> {
    // First, before anything is created: a refused call must change nothing.
    sys::ensure_single_threaded("sandbox::create")?;
    let spec = &launch.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| SandboxError::Spec("process: missing".into()))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let seccomp = linux.seccomp().as_ref().map(seccomp::compile).transpose()?;
    let mut exec = ExecPlan::from_process(process, seccomp)?;
    exec.sysinfo_to = opts.sysinfo_to;
    let ns = plan_namespaces(spec)?;
    let rootfs = match &launch.overlay {
        Some(o) => o.merged.to_string_lossy().into_owned(),
        None => spec
            .root()
            .as_ref()
            .map(|r| r.path().to_string_lossy().into_owned())
            .ok_or_else(|| SandboxError::Spec("root.path: missing".into()))?,
    };
    let mounts = spec.mounts().clone().unwrap_or_default();
    let mut propagation = Vec::new();
    for m in &mounts {
        for opt in m.options().iter().flatten() {
            if let Some(flags) = propagation_flags(opt) {
                propagation.push((m.destination().to_string_lossy().into_owned(), flags));
            }
        }
    }
    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => None,
        Some(p) => Some(propagation_flags(p).ok_or_else(|| {
            SandboxError::Spec(format!("linux.rootfsPropagation: unknown value {p:?}"))
        })?),
    };
    let fifo_dir = match &opts.start_fifo {
        Some(fifo) => {
            let dir = fifo.parent().unwrap_or(std::path::Path::new("/"));
            let fd = nix::fcntl::open(
                dir,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| sys_err("open", dir.display().to_string(), e))?;
            // SAFETY: fd was just returned by open(2).
            Some((
                unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) },
                fifo.file_name().unwrap_or_default().to_os_string(),
            ))
        }
        None => None,
    };
    let init = InitPlan {
        rootfs,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        hostname: spec.hostname().clone(),
        mounts,
        masked: linux.masked_paths().clone().unwrap_or_default(),
        readonly: linux.readonly_paths().clone().unwrap_or_default(),
        sysctl: linux
            .sysctl()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        null_stdio: opts.null_stdio,
        domainname: spec.domainname().clone().filter(|d| !d.is_empty()),
        devices: linux.devices().clone().unwrap_or_default(),
        in_userns: ns.new_user || ns.join_user.is_some(),
        propagation,
        rootfs_propagation,
        fifo_dir: fifo_dir
            .as_ref()
            .map(|(fd, name)| (fd.as_raw_fd(), name.clone())),
        console: extras.console.as_ref().map(|fd| fd.as_raw_fd()),
        console_size: extras.console_size,
        runtime_hooks: extras.runtime_hooks.is_some(),
        container_hooks: extras.container_hooks,
        new_session_keyring: extras.new_session_keyring,
        new_netns: ns.unshare.contains(CloneFlags::CLONE_NEWNET),
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
    let result = spawn(launch, &ns, &init, &exec, cgroup.as_ref(), extras);
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
    extras: &OciExtras,
) -> Result<Created, SandboxError> {
    let (go_r, go_w) = pipe()?;
    let (st_r, st_w) = pipe()?;
    // cgroup v1: the intermediate joins by writing "0" to each hierarchy's `tasks` (moving
    // itself, one thread); writing a PID to cgroup.procs instead takes the kernel's global
    // threadgroup lock, which costs an RCU grace period (10-20 ms here) per create.
    let mut self_join: Vec<PathBuf> = Vec::new();
    if let Some(cg) = cgroup {
        if cg.version == crate::cgroup::Version::V1 {
            self_join.extend(
                cg.dirs()?
                    .into_iter()
                    .filter(|d| d.is_dir())
                    .map(|d| d.join("tasks")),
            );
        }
    }
    self_join.extend(extras.extra_cgroup_dirs.iter().map(|d| d.join("tasks")));
    // SAFETY: callers are single-threaded (the shim, the OCI command, tests' forked helpers);
    // the child only runs our own code until exec.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| sys_err("fork", "", e))? {
        ForkResult::Child => {
            // Everything below (init included: it is forked from here) aborts on panic.
            sys::abort_on_panic();
            drop(go_w);
            drop(st_r);
            let mut status = std::fs::File::from(st_w);
            for tasks in &self_join {
                if let Err(e) = std::fs::write(tasks, "0") {
                    let _ = report(
                        &mut status,
                        &format!("error join cgroup {}: {e}", tasks.display()),
                    );
                    // SAFETY: _exit in a forked child.
                    unsafe { libc::_exit(1) }
                }
            }
            let err = intermediate(ns, init, exec, go_r, &mut status);
            let _ = report(&mut status, &format!("error {err}").replace('\n', " "));
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
            if cg.version != crate::cgroup::Version::V1 {
                cg.add_pid(child.as_raw())?;
            }
        }
        if let Some(overlay) = &launch.overlay {
            let userns = open_ns(std::path::Path::new(&format!("/proc/{child}/ns/user")))?;
            overlay.mount(&userns)?;
        }
        go.write_all(b"g")
            .map_err(|e| sys_err("write", "sync pipe", process::io_errno(&e)))?;
        // The intermediate reports init's PID; init itself may report "hooks" (it waits for
        // the runtime hooks), "ready" (it waits on the start FIFO) or an error. Both write to
        // the same pipe, so init's lines may come before the PID (a descheduled intermediate
        // loses that race). EOF: init exec'd (the pipe is close-on-exec) or everything exited.
        let mut hooks_pending = false;
        let mut ready = false;
        loop {
            let line = read_line(&mut status)?;
            if let Some(pid) = line.strip_prefix("pid ") {
                init_pid = Some(pid.parse::<i32>().map_err(|_| child_error(&line))?);
            } else if line == "hooks" {
                hooks_pending = true;
            } else if line == "ready" {
                ready = true;
            } else if line.is_empty() {
                // With a start FIFO, init cannot have exec'd: EOF before "ready" means it died.
                if init_pid.is_none() || (init.fifo_dir.is_some() && !ready) {
                    return Err(child_error(""));
                }
                return Ok(());
            } else {
                return Err(child_error(&line));
            }
            if ready && init_pid.is_some() {
                return Ok(());
            }
            if let (true, Some(pid)) = (hooks_pending, init_pid) {
                hooks_pending = false;
                if let Some(run) = extras.runtime_hooks {
                    run(pid).map_err(SandboxError::Child)?;
                }
                go.write_all(b"h")
                    .map_err(|e| sys_err("write", "sync pipe", process::io_errno(&e)))?;
            }
        }
    })();
    // Close our end first: on an early error the intermediate (or init, waiting for its
    // hooks) is still blocked reading it, and must see EOF and exit before we can reap it.
    drop(go);
    let _ = nix::sys::wait::waitpid(child, None);
    match outcome {
        Ok(()) => Ok(Created {
            pid: init_pid.unwrap_or_default(),
        }),
        Err(e) => {
            if let Some(pid) = init_pid {
                let _ =
                    nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            }
            Err(e)
        }
    }
}

/// One line on the status pipe, in a single write(2): the intermediate and init share the
/// pipe, and a line written in pieces could interleave with the other's.
fn report(status: &mut std::fs::File, line: &str) -> std::io::Result<()> {
    status.write_all(format!("{line}\n").as_bytes())
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
    r.read_line(&mut line)
        .map_err(|e| sys_err("read", "sync pipe", process::io_errno(&e)))?;
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
        // As host root, before any user namespace: lowering oom_score_adj (containerd's CRI
        // gives its pause container -998) needs CAP_SYS_RESOURCE in the host's namespace.
        // init inherits the value (and the flag that tells its ExecPlan not to write again).
        if let Some(adj) = exec.oom_score_adj {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
                let errno = process::io_errno(&e);
                if errno == nix::errno::Errno::EACCES {
                    // The kernel's answer to a value below the current one without
                    // CAP_SYS_RESOURCE (some hosts withhold it even from root).
                    SandboxError::Spec(format!(
                        "process.oomScoreAdj {adj}: lowering oom_score_adj needs CAP_SYS_RESOURCE, \
                         which this host's root lacks (EACCES on /proc/self/oom_score_adj); \
                         ask for a value >= the caller's (containerd: restrict_oom_score_adj = true)"
                    ))
                } else {
                    sys_err("write", "/proc/self/oom_score_adj", errno)
                }
            })?;
            process::OOM_SCORE_ADJ_SET.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // Still host root in the host's mount namespace: what the sandbox's root may be
        // unable to reach once in its user namespace (mounts::open_bind_sources).
        let host_binds = if init.in_userns {
            mounts::open_bind_sources(&init.mounts)
        } else {
            Vec::new()
        };
        // Namespaces to join are joined as host root, before the user namespace: some belong
        // to the host's user namespace (a CRI hostNetwork pod's UTS and network are the
        // node's), which the sandbox's root could not join (EPERM); those of a pod's own user
        // namespace host root may join too.
        for (flag, fd, path) in &ns.join {
            nix::sched::setns(fd, *flag).map_err(|e| sys_err("setns", path.clone(), e))?;
        }
        if let Some(fd) = &ns.join_user {
            nix::sched::setns(fd, CloneFlags::CLONE_NEWUSER)
                .map_err(|e| sys_err("setns", "user", e))?;
        } else if ns.new_user {
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
                .map_err(|e| sys_err("unshare", "user", e))?;
            report(status, "userns")
                .map_err(|e| sys_err("write", "sync pipe", process::io_errno(&e)))?;
        }
        let mut b = [0u8; 1];
        let mut go = std::fs::File::from(go_r);
        if go
            .read(&mut b)
            .map_err(|e| sys_err("read", "sync pipe", process::io_errno(&e)))?
            != 1
        {
            return Err(SandboxError::Child(
                "caller went away before the sandbox was ready".into(),
            ));
        }
        if ns.new_user || ns.join_user.is_some() {
            // Until now our kernel uid was the caller's (host root, unmapped here): become the
            // namespace's root at once so no host-root-owned file is reachable by ownership.
            let root = nix::unistd::Gid::from_raw(0);
            nix::unistd::setresgid(root, root, root).map_err(|e| sys_err("setresgid", "0", e))?;
            let uroot = nix::unistd::Uid::from_raw(0);
            nix::unistd::setresuid(uroot, uroot, uroot)
                .map_err(|e| sys_err("setresuid", "0", e))?;
            nix::unistd::setgroups(&[]).map_err(|e| sys_err("setgroups", "[]", e))?;
        }
        nix::sched::unshare(ns.unshare)
            .map_err(|e| sys_err("unshare", format!("{:?}", ns.unshare), e))?;
        // SAFETY: still single-threaded; the child runs only our code until exec.
        match unsafe { nix::unistd::fork() }.map_err(|e| sys_err("fork", "init", e))? {
            ForkResult::Child => {
                let e = run_init(init, exec, status, &mut go, host_binds);
                let _ = report(status, &format!("error {e}").replace('\n', " "));
                // SAFETY: forked child.
                unsafe { libc::_exit(1) }
            }
            ForkResult::Parent { child } => {
                let _ = report(status, &format!("pid {child}"));
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

/// Runs as the sandbox's PID 1 before exec. Returns only on error (before the start FIFO
/// was opened; after it, a failure ends init with EXIT_START_* and a message on its stderr,
/// since nobody reads the status pipe any more).
fn run_init(
    init: &InitPlan,
    exec: &ExecPlan,
    status: &mut std::fs::File,
    go: &mut std::fs::File,
    host_binds: mounts::HostBinds,
) -> SandboxError {
    let mut host_pid = 0;
    let r = (|| -> Result<(), SandboxError> {
        nix::sys::prctl::set_dumpable(false).map_err(|e| sys_err("prctl", "PR_SET_DUMPABLE", e))?;
        if init.runtime_hooks || init.container_hooks.is_some() {
            // Still the host's /proc (our mount namespace is a copy of the caller's): "self"
            // is our PID as the host sees it, which is what hooks are told.
            host_pid = std::fs::read_link("/proc/self")
                .ok()
                .and_then(|p| p.to_string_lossy().parse().ok())
                .unwrap_or(0);
        }
        if init.runtime_hooks {
            report(status, "hooks")
                .map_err(|e| sys_err("write", "sync pipe", process::io_errno(&e)))?;
            let mut b = [0u8; 1];
            if go
                .read(&mut b)
                .map_err(|e| sys_err("read", "sync pipe", process::io_errno(&e)))?
                != 1
            {
                return Err(SandboxError::Child("runtime hooks failed".into()));
            }
        }
        if init.new_session_keyring {
            const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
            // SAFETY: plain syscall; a null name joins a new anonymous session keyring.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_JOIN_SESSION_KEYRING,
                    std::ptr::null::<libc::c_char>(),
                )
            };
            // ENOSYS: a kernel without keys; nothing to isolate.
            if r < 0 && nix::Error::last() != nix::Error::ENOSYS {
                return Err(sys_err(
                    "keyctl",
                    "JOIN_SESSION_KEYRING",
                    nix::Error::last(),
                ));
            }
        }
        let prepared = mounts::prepare(&init.mounts, host_binds)?;
        let mut device_binds = Vec::new();
        if init.in_userns {
            for d in &init.devices {
                let path = d.path().to_string_lossy().into_owned();
                if is_default_device(&init.mounts, &path) {
                    continue;
                }
                let fd = sys::open_tree_clone(&path, false).map_err(|e| {
                    sys_err("open_tree (linux.devices, host node)", path.clone(), e)
                })?;
                device_binds.push((path, fd));
            }
        }
        if let Some(hooks) = init.container_hooks {
            hooks(ContainerHook::CreateContainer, host_pid).map_err(SandboxError::Child)?;
        }
        mounts::pivot_into(&init.rootfs)?;
        mounts::attach(prepared)?;
        let has_pts = init
            .mounts
            .iter()
            .any(|m| m.destination() == std::path::Path::new("/dev/pts"));
        if init
            .mounts
            .iter()
            .any(|m| m.destination() == std::path::Path::new("/dev"))
        {
            mounts::dev_symlinks(has_pts)?;
        }
        create_devices(init, device_binds)?;
        for (target, flags) in &init.propagation {
            nix::mount::mount(
                None::<&str>,
                target.as_str(),
                None::<&str>,
                *flags,
                None::<&str>,
            )
            .map_err(|e| sys_err("set mount propagation", target.clone(), e))?;
        }
        if init.new_netns {
            loopback_up()?;
        }
        if let Some(h) = &init.hostname {
            nix::unistd::sethostname(h).map_err(|e| sys_err("sethostname", h.clone(), e))?;
        }
        if let Some(d) = &init.domainname {
            // SAFETY: valid pointer and length.
            if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
                return Err(sys_err("setdomainname", d.clone(), nix::Error::last()));
            }
        }
        for (key, value) in &init.sysctl {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            std::fs::write(&path, value)
                .map_err(|e| sys_err("write sysctl", path, process::io_errno(&e)))?;
        }
        nix::unistd::setsid().map_err(|e| sys_err("setsid", "", e))?;
        if let Some(sock) = init.console {
            setup_console(sock, init.console_size)?;
        }
        mounts::mask(&init.masked)?;
        mounts::make_readonly(&init.readonly)?;
        if init.readonly_root {
            mounts::remount_readonly("/")?;
        }
        if let Some(flags) = init.rootfs_propagation {
            nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
                .map_err(|e| sys_err("set rootfs propagation", "/", e))?;
        }
        if init.null_stdio {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| sys_err("open", "/dev/null (in sandbox)", e))?;
            for target in 0..3 {
                nix::unistd::dup2(null, target).map_err(|e| sys_err("dup2", "/dev/null", e))?;
            }
            if null > 2 {
                let _ = nix::unistd::close(null);
            }
        }
        Ok(())
    })();
    if let Err(e) = r {
        return e;
    }
    if let Some((dir, name)) = &init.fifo_dir {
        if let Err(e) = report(status, "ready") {
            return sys_err("write", "sync pipe", process::io_errno(&e));
        }
        // Blocks until `start` opens the FIFO for reading. From here on nobody reads the
        // status pipe: report failures on our stderr (the container's) and exit.
        let fifo = nix::fcntl::openat(
            Some(*dir),
            name.as_os_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        );
        let _ = nix::unistd::close(*dir);
        let fifo = match fifo {
            // SAFETY: fd was just returned by openat(2).
            Ok(fd) => unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) },
            Err(e) => start_failed(sys_err("open", "start FIFO", e)),
        };
        // startContainer hooks belong to `start`: it returns once we write the byte.
        if let Some(hooks) = init.container_hooks {
            if let Err(e) = hooks(ContainerHook::StartContainer, host_pid) {
                start_failed(SandboxError::Child(e));
            }
        }
        let _ = nix::unistd::write(&fifo, b"0");
        drop(fifo);
        start_failed(exec.exec())
    }
    let _ = status.as_raw_fd();
    exec.exec()
}

/// After `start`: report on stderr and end init (see [`EXIT_START_FAILED`]).
fn start_failed(e: SandboxError) -> ! {
    let not_found = matches!(
        &e,
        SandboxError::Sys {
            op: "execve",
            source: nix::Error::ENOENT,
            ..
        }
    );
    let _ = writeln!(std::io::stderr(), "vslice: {e}");
    // SAFETY: forked child.
    unsafe {
        libc::_exit(if not_found {
            EXIT_START_NOT_FOUND
        } else {
            EXIT_START_FAILED
        })
    }
}

/// Whether `path` is one of the nodes every sandbox with a /dev mount already gets.
fn is_default_device(mounts: &[oci_spec::runtime::Mount], path: &str) -> bool {
    mounts
        .iter()
        .any(|m| m.destination() == std::path::Path::new("/dev"))
        && path
            .strip_prefix("/dev/")
            .is_some_and(|n| mounts::DEFAULT_DEVICES.contains(&n))
}

/// `linux.devices`, inside the new root: mknod (with the spec's owner and mode) outside a
/// user namespace; in one, bind the host's node prepared before pivot_root.
fn create_devices(init: &InitPlan, binds: Vec<(String, OwnedFd)>) -> Result<(), SandboxError> {
    use nix::sys::stat::{Mode, SFlag};
    use oci_spec::runtime::LinuxDeviceType;
    for (path, fd) in binds {
        if let Some(parent) = std::path::Path::new(&path).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(f) => {
                let _ = nix::unistd::close(f);
            }
            Err(e) => return Err(sys_err("create device mount target", path, e)),
        }
        sys::move_mount_to(&fd, &path)
            .map_err(|e| sys_err("move_mount (linux.devices)", path.clone(), e))?;
    }
    if init.in_userns {
        return Ok(());
    }
    for d in &init.devices {
        let path = d.path().to_string_lossy().into_owned();
        if is_default_device(&init.mounts, &path) {
            continue;
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(SandboxError::Spec(format!(
                    "linux.devices {path}: type \"a\" is not a node type"
                )))
            }
        };
        let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
        let dev = nix::sys::stat::makedev(d.major() as u64, d.minor() as u64);
        if let Some(parent) = std::path::Path::new(&path).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::fs::symlink_metadata(&path).is_ok() {
            // Replace whatever the image has there with the node the spec asks for.
            std::fs::remove_file(&path)
                .map_err(|e| sys_err("replace device node", path.clone(), process::io_errno(&e)))?;
        }
        nix::sys::stat::mknod(path.as_str(), kind, mode, dev)
            .map_err(|e| sys_err("mknod", path.clone(), e))?;
        // mknod applies the umask; the spec's mode is meant literally.
        nix::sys::stat::fchmodat(
            None,
            path.as_str(),
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| sys_err("chmod", path.clone(), e))?;
        let uid = d.uid().map(nix::unistd::Uid::from_raw);
        let gid = d.gid().map(nix::unistd::Gid::from_raw);
        if uid.is_some() || gid.is_some() {
            nix::unistd::chown(path.as_str(), uid, gid)
                .map_err(|e| sys_err("chown", path.clone(), e))?;
        }
    }
    Ok(())
}

const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// The OCI console: a pty from the sandbox's own devpts (we are inside the new root), master
/// sent over `sock`, slave made our controlling terminal, stdio and /dev/console. Called
/// after setsid.
fn setup_console(sock: std::os::fd::RawFd, size: Option<(u16, u16)>) -> Result<(), SandboxError> {
    use nix::fcntl::OFlag;
    let master = nix::fcntl::open(
        "/dev/pts/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| {
        sys_err(
            "open",
            "/dev/pts/ptmx (process.terminal needs a devpts mount on /dev/pts)",
            e,
        )
    })?;
    // SAFETY: fd just returned by open(2).
    let master = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(sys_err(
            "ioctl TIOCSPTLCK",
            "/dev/pts/ptmx",
            nix::Error::last(),
        ));
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN fills an unsigned int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        return Err(sys_err(
            "ioctl TIOCGPTN",
            "/dev/pts/ptmx",
            nix::Error::last(),
        ));
    }
    // SAFETY: TIOCGPTPEER returns a new fd for this master's slave, without a path lookup.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(sys_err(
            "ioctl TIOCGPTPEER",
            "/dev/pts/ptmx",
            nix::Error::last(),
        ));
    }
    // SAFETY: the kernel just returned this fd.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    if let Some((cols, rows)) = size {
        pty::set_size(&master, cols, rows)?;
    }
    send_fd(sock, &master, &format!("/dev/pts/{n}"))?;
    drop(master);
    let _ = nix::unistd::close(sock);
    // SAFETY: TIOCSCTTY on a terminal fd we own; we are a session leader without a tty.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(sys_err("ioctl TIOCSCTTY", "pty", nix::Error::last()));
    }
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target).map_err(|e| sys_err("dup2", "pty", e))?;
    }
    // /dev/console is the pty too (runc does the same). Best effort when /dev is read-only.
    let console = "/dev/console";
    let target_ok = match nix::fcntl::open(
        console,
        OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => {
            let _ = nix::unistd::close(fd);
            true
        }
        Err(nix::Error::EROFS) => false,
        Err(e) => return Err(sys_err("create", console, e)),
    };
    if target_ok {
        let pts = format!("/dev/pts/{n}");
        nix::mount::mount(
            Some(pts.as_str()),
            console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| sys_err("bind pty over", console, e))?;
    }
    Ok(())
}

/// Send `fd` over a connected Unix socket (one SCM_RIGHTS message carrying `name`, as runc's
/// console-socket protocol does).
pub fn send_fd(
    sock: std::os::fd::RawFd,
    fd: &impl AsRawFd,
    name: &str,
) -> Result<(), SandboxError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        sock,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| sys_err("sendmsg", "console socket", e))?;
    Ok(())
}

/// Bring `lo` up in the current network namespace (SIOCSIFFLAGS; rtnetlink would be a crate
/// and a socket protocol for one flag).
fn loopback_up() -> Result<(), SandboxError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| sys_err("socket", "loopback", e))?;
    // SAFETY: ifreq is plain data; we fill the name and read/write the flags union member.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(sys_err("ioctl SIOCGIFFLAGS", "lo", nix::Error::last()));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(sys_err("ioctl SIOCSIFFLAGS", "lo", nix::Error::last()));
        }
    }
    Ok(())
}
