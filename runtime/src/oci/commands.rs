//! The runc commands. Each is a plain function over a [`Global`] and its arguments; the clap
//! layer is in [`super::cli`]. Every command that forks (create, run, exec) is called from
//! the single-threaded `vslice-runc` process.
use super::state::{Container, Saved, Status};
use super::{devices, err, hooks, io_ctx, log, spec, Result};
use crate::cgroup::Cgroup;
use crate::sandbox::{
    self, join, process::ExecPlan, pty, ContainerHook, CreateOptions, Launch, OciExtras,
};
use oci_spec::runtime::{Hook, Process, Spec};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Global flags every command sees.
#[derive(Debug, Clone)]
pub struct Global {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CreateArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// Absolute path without resolving symlinks in the last component.
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| err!("resolve {}: {e}", p.display()))
}

/// Write a file through a temporary and a rename (readers never see it half-written), without
/// fsync: for files that are only meaningful while the machine is up.
fn write_replace(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    io_ctx(r, "write", path)
}

/// Write a pid file atomically (runc: the number, no newline).
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    write_replace(&absolute(path)?, pid.to_string().as_bytes(), 0o644)
}

fn hook_list(spec: &Spec, pick: fn(&oci_spec::runtime::Hooks) -> &Option<Vec<Hook>>) -> Vec<Hook> {
    spec.hooks()
        .as_ref()
        .and_then(|h| pick(h).clone())
        .unwrap_or_default()
}

fn hook_state(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &Path,
    annotations: &BTreeMap<String, String>,
) -> String {
    let mut v = serde_json::json!({
        "ociVersion": super::OCI_VERSION, "id": id, "status": status, "pid": pid,
        "bundle": bundle.to_string_lossy(),
    });
    if !annotations.is_empty() {
        v["annotations"] = serde_json::to_value(annotations).unwrap_or_default();
    }
    v.to_string()
}

/// Connect to runc's console socket.
fn connect_console(path: &Path) -> Result<OwnedFd> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err!("console socket {}: socket: {e}", path.display()))?;
    let addr = UnixAddr::new(path).map_err(|e| err!("console socket {}: {e}", path.display()))?;
    connect(s.as_raw_fd(), &addr)
        .map_err(|e| err!("connect to console socket {}: {e}", path.display()))?;
    Ok(s)
}

/// Receive one descriptor (the pty master) from a Unix socket.
fn recv_fd(sock: &OwnedFd) -> Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| err!("receive the console from init: {e}"))?;
    for c in msg
        .cmsgs()
        .map_err(|e| err!("receive the console from init: {e}"))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(err!(
        "receive the console from init: no descriptor in the message"
    ))
}

/// Host uid/gid that the container's root maps to (for files init must open), or (0, 0).
fn root_host_ids(spec: &Spec) -> (u32, u32) {
    let map = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.and_then(|v| v.iter().find(|m| m.container_id() == 0 && m.size() > 0))
            .map_or(0, |m| m.host_id())
    };
    let l = spec.linux().as_ref();
    (
        map(l.and_then(|l| l.uid_mappings().as_ref())),
        map(l.and_then(|l| l.gid_mappings().as_ref())),
    )
}

/// The home directory of `uid` from `<rootfs>/etc/passwd`, read without following symlinks
/// (the rootfs belongs to the container, which could point them at host files).
fn home_of(rootfs: &Path, uid: u32) -> Option<String> {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = open(rootfs, flags | OFlag::O_DIRECTORY, Mode::empty()).ok()?;
    // SAFETY: descriptors just returned by open(2)/openat(2), owned here.
    let root = unsafe { OwnedFd::from_raw_fd(root) };
    let etc = unsafe {
        OwnedFd::from_raw_fd(
            openat(
                Some(root.as_raw_fd()),
                "etc",
                flags | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .ok()?,
        )
    };
    let passwd = unsafe {
        OwnedFd::from_raw_fd(openat(Some(etc.as_raw_fd()), "passwd", flags, Mode::empty()).ok()?)
    };
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::fs::File::from(passwd), 1 << 20),
        &mut text,
    )
    .ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

/// runc sets HOME when the process has none: the user's home from the image's /etc/passwd,
/// or "/".
fn ensure_home(p: &mut Process, rootfs: &Path) {
    let mut env = p.env().clone().unwrap_or_default();
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return;
    }
    let home = home_of(rootfs, p.user().uid())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    env.push(format!("HOME={home}"));
    p.set_env(Some(env));
}

/// Everything `create` made, for cleanup on failure and for `delete`.
struct Made {
    cgroup: String,
    parents: Vec<String>,
    devices: Option<PathBuf>,
}

impl Made {
    fn remove(&self) -> Result<()> {
        let cg = Cgroup::new(&self.cgroup);
        let mut first_err = cg.destroy().err().map(super::Error::from);
        if let Some(d) = &self.devices {
            if let Err(e) = devices::remove(d) {
                first_err.get_or_insert(e);
            }
        }
        let devmount = devices::v1_mount();
        for p in self.parents.iter().rev() {
            let _ = crate::cgroup::remove_parent_if_empty(p);
            if let Some(m) = &devmount {
                let _ = std::fs::remove_dir(m.join(p));
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Ancestors of `cgroup` (shallowest first) that do not exist yet.
fn missing_parents(cgroup: &str) -> Vec<String> {
    let parts: Vec<&str> = cgroup.split('/').collect();
    (1..parts.len())
        .map(|n| parts[..n].join("/"))
        .filter(|p| !Cgroup::new(p).exists())
        .collect()
}

/// `create`: set up the container and leave init waiting on the start FIFO. Returns the
/// locked container. `console` is an already-connected console (used by `run` with a
/// terminal and no --console-socket).
pub fn create(g: &Global, a: &CreateArgs, console: Option<OwnedFd>) -> Result<Container> {
    if a.preserve_fds > 0 {
        return Err(err!("--preserve-fds: not supported by vslice-runc (every inherited descriptor above 2 is closed)"));
    }
    let bundle = absolute(&a.bundle)?;
    let mut spec = spec::load(&bundle)?;
    // A CRI pod's containers get the pod's user namespace (see oci::cri); a failed create
    // frees the range it allocated.
    let pod_userns =
        super::cri::pod_userns(&mut spec, &g.root, Path::new(super::cri::ALLOC_DIR), &a.id)?;
    let pod_root_gid = spec
        .linux()
        .as_ref()
        .and_then(|l| l.gid_mappings().as_ref())
        .and_then(|m| m.iter().find(|m| m.container_id() == 0))
        .map(|m| m.host_id());
    let r = match (&pod_userns, pod_root_gid) {
        (super::cri::PodUserns::Unchanged, _) | (_, None) => Ok(()),
        (_, Some(gid)) => super::cri::open_bundle_to_pod(&bundle, gid),
    }
    .and_then(|()| create_spec(g, a, console, bundle, spec));
    if r.is_err() {
        if let super::cri::PodUserns::New { .. } = pod_userns {
            super::cri::release(Path::new(super::cri::ALLOC_DIR), &a.id);
        }
    }
    r
}

fn create_spec(
    g: &Global,
    a: &CreateArgs,
    console: Option<OwnedFd>,
    bundle: PathBuf,
    mut spec: Spec,
) -> Result<Container> {
    spec::validate(&spec)?;
    let process = spec.process().clone().expect("validated");
    let terminal = process.terminal().unwrap_or(false);
    if terminal && a.console_socket.is_none() && console.is_none() {
        return Err(err!(
            "process.terminal is true: --console-socket is required"
        ));
    }
    if !terminal && a.console_socket.is_some() {
        return Err(err!("--console-socket given but process.terminal is false"));
    }
    // root.path, absolute.
    let mut root = spec.root().clone().ok_or_else(|| err!("root: missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(err!("root.path {}: not a directory", rootfs.display()));
    }
    root.set_path(rootfs.clone());
    spec.set_root(Some(root));
    let mut process = process;
    ensure_home(&mut process, &rootfs);
    spec.set_process(Some(process.clone()));
    // cgroupsPath, mapped.
    let mut linux = spec.linux().clone().expect("validated");
    let cgroup = spec::map_cgroups_path(linux.cgroups_path().as_deref(), &a.id, g.systemd_cgroup)?;
    linux.set_cgroups_path(Some(PathBuf::from(&cgroup)));
    let device_rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    spec.set_linux(Some(linux));
    let extra_ro = spec::rewrite_cgroup_mounts(&mut spec, &cgroup, !device_rules.is_empty())?;
    if !extra_ro.is_empty() {
        let mut linux = spec.linux().clone().expect("validated");
        let mut ro = linux.readonly_paths().clone().unwrap_or_default();
        ro.extend(extra_ro);
        linux.set_readonly_paths(Some(ro));
        spec.set_linux(Some(linux));
    }
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();

    let mut c = Container::create_dir(&g.root, &a.id)?;
    let mut made = Made {
        cgroup: cgroup.clone(),
        parents: Vec::new(),
        devices: None,
    };
    let result = (|| -> Result<i32> {
        let config = serde_json::to_vec(&spec).map_err(|e| err!("serialize config: {e}"))?;
        let cfg_path = c.dir.join(super::state::CONFIG_FILE);
        // Not fsync'ed: state.json (durable) is what commits a container.
        write_replace(&cfg_path, &config, 0o600)?;
        let fifo = c.fifo();
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| err!("mkfifo {}: {e}", fifo.display()))?;
        let (uid, gid) = root_host_ids(&spec);
        if (uid, gid) != (0, 0) {
            nix::unistd::chown(
                &fifo,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| err!("chown {}: {e}", fifo.display()))?;
        }
        made.parents = missing_parents(&cgroup);
        made.devices = devices::setup(&cgroup, &device_rules)?;
        let console = match (console, &a.console_socket) {
            (Some(fd), _) => Some(fd),
            (None, Some(path)) => Some(connect_console(path)?),
            (None, None) => None,
        };
        let console_size = process
            .console_size()
            .as_ref()
            .map(|b| (b.width() as u16, b.height() as u16));
        let prestart = [
            hook_list(&spec, |h| h.prestart()),
            hook_list(&spec, |h| h.create_runtime()),
        ];
        let in_container = [
            hook_list(&spec, |h| h.create_container()),
            hook_list(&spec, |h| h.start_container()),
        ];
        let runtime_hooks = |pid: i32| -> std::result::Result<(), String> {
            let state = hook_state(&a.id, "creating", pid, &bundle, &annotations);
            hooks::run_all("prestart", &prestart[0], &state)?;
            hooks::run_all("createRuntime", &prestart[1], &state)
        };
        let container_hooks = |which: ContainerHook, pid: i32| -> std::result::Result<(), String> {
            match which {
                ContainerHook::CreateContainer => hooks::run_all(
                    "createContainer",
                    &in_container[0],
                    &hook_state(&a.id, "creating", pid, &bundle, &annotations),
                ),
                ContainerHook::StartContainer => hooks::run_all(
                    "startContainer",
                    &in_container[1],
                    &hook_state(&a.id, "created", pid, &bundle, &annotations),
                ),
            }
        };
        let extras = OciExtras {
            console,
            console_size,
            runtime_hooks: if prestart.iter().any(|l| !l.is_empty()) {
                Some(&runtime_hooks)
            } else {
                None
            },
            container_hooks: if in_container.iter().any(|l| !l.is_empty()) {
                Some(&container_hooks)
            } else {
                None
            },
            new_session_keyring: !a.no_new_keyring,
            extra_cgroup_dirs: made.devices.iter().cloned().collect(),
        };
        let launch = Launch {
            spec: spec.clone(),
            overlay: None,
        };
        let opts = CreateOptions {
            null_stdio: false,
            start_fifo: Some(fifo),
            sysinfo_to: None,
        };
        log::debug(&format!(
            "create {}: cgroup {cgroup}, rootfs {}",
            a.id,
            rootfs.display()
        ));
        let created = sandbox::create_with(&launch, &opts, &extras)?;
        let pid = created.pid;
        let finish = (|| -> Result<()> {
            let pid_start = crate::util::process::process_start_time(pid)
                .ok_or_else(|| err!("container init (pid {pid}) exited during create"))?;
            c.save(Saved {
                id: a.id.clone(),
                bundle: bundle.clone(),
                rootfs: rootfs.clone(),
                pid,
                pid_start,
                created: super::state::now_rfc3339(),
                owner: String::new(),
                annotations: annotations.clone(),
                cgroup: cgroup.clone(),
                cgroup_parents_made: made.parents.clone(),
                devices_cgroup: made.devices.clone(),
            })?;
            if let Some(p) = &a.pid_file {
                write_pid_file(p, pid)?;
            }
            Ok(())
        })();
        if let Err(e) = finish {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(e);
        }
        Ok(pid)
    })();
    match result {
        Ok(_) => Ok(c),
        Err(e) => {
            let _ = made.remove();
            let _ = c.remove_dir();
            Err(e)
        }
    }
}

/// `start`: let a created container's init exec its program, then run poststart hooks.
pub fn start(g: &Global, id: &str) -> Result<()> {
    let c = Container::load(&g.root, id)?;
    start_loaded(&c)
}

fn start_loaded(c: &Container) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let status = c.status();
    match status {
        Status::Created => {}
        Status::Stopped => return Err(err!("cannot start a container that has stopped")),
        Status::Running | Status::Paused => {
            return Err(err!("cannot start an already running container"))
        }
        Status::Creating => {
            return Err(err!("cannot start a container that is still being created"))
        }
    }
    let saved = c.saved.as_ref().expect("created has state");
    let fifo_path = c.fifo();
    // Non-blocking, so a dead init cannot hang us; then wait for init's byte.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&fifo_path)
        .map_err(|e| err!("open {}: {e}", fifo_path.display()))?;
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(n) if n > 0 => {
                let mut b = [0u8; 1];
                match nix::unistd::read(fifo.as_raw_fd(), &mut b) {
                    Ok(1) => break,
                    Ok(_) | Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
                    Err(e) => return Err(err!("read {}: {e}", fifo_path.display())),
                }
            }
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(err!("poll {}: {e}", fifo_path.display())),
        }
        if !crate::util::process::is_alive(saved.pid, saved.pid_start) {
            return Err(err!(
                "container init (pid {}) exited before it was started (a failing startContainer hook or exec \
                 error is reported on the container's stderr)",
                saved.pid
            ));
        }
    }
    drop(fifo);
    io_ctx(std::fs::remove_file(&fifo_path), "remove", &fifo_path)?;
    let spec = c.spec()?;
    let post = hook_list(&spec, |h| h.poststart());
    if !post.is_empty() {
        hooks::run_all_logged(
            "poststart",
            &post,
            &hook_state(
                &c.id,
                "running",
                saved.pid,
                &saved.bundle,
                &saved.annotations,
            ),
        );
    }
    Ok(())
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
}

/// `state`: the OCI state JSON.
pub fn state(g: &Global, id: &str) -> Result<serde_json::Value> {
    let c = Container::peek(&g.root, id)?;
    Ok(c.oci_state(c.status()))
}

/// Parse a signal: a name with or without SIG, or a number.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(err!("invalid signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('+')
                .parse()
                .map_err(|_| err!("invalid signal {s:?}"))?
        };
        return Ok(libc::SIGRTMIN() + off);
    }
    if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse::<i32>()
                .map_err(|_| err!("invalid signal {s:?}"))?
        };
        return Ok(libc::SIGRTMAX() + off);
    }
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| err!("invalid signal {s:?}"))
}

fn send(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: plain kill(2).
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `kill`: signal init, or with `all` every process of the container's cgroup.
pub fn kill(g: &Global, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = parse_signal(signal)?;
    let c = Container::load(&g.root, id)?;
    let status = c.status();
    if matches!(status, Status::Stopped | Status::Creating) {
        return Err(err!("container not running"));
    }
    let saved = c.saved.as_ref().expect("has state");
    if all {
        let cg = Cgroup::new(&saved.cgroup);
        for pid in cg.pids()? {
            match send(pid, sig) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(err!("kill -{sig} {pid}: {e}")),
            }
        }
        if status == Status::Paused && sig == libc::SIGKILL {
            // A frozen v1 task only dies once thawed.
            set_frozen(&saved.cgroup, false)?;
        }
        return Ok(());
    }
    send(saved.pid, sig).map_err(|e| {
        if e.raw_os_error() == Some(libc::ESRCH) {
            err!("container not running")
        } else {
            err!("kill -{sig} {}: {e}", saved.pid)
        }
    })
}

/// `delete`: remove every kernel object and file the container has (its cgroup in every
/// hierarchy, the device cgroup, the cgroup parents `create` made if now empty, the FIFO and
/// state directory), then run poststop hooks. A running container needs `force` (SIGKILL to
/// everything in its cgroup first); a created one is killed without it (as runc does).
pub fn delete(g: &Global, id: &str, force: bool) -> Result<()> {
    // runc: `delete --force` of an id that does not exist succeeds; containerd relies on it
    // to clean up after a create that never got as far as writing the container's state.
    super::state::validate_id(id)?;
    if force && !g.root.join(id).exists() {
        return Ok(());
    }
    let c = Container::load(&g.root, id)?;
    let status = c.status();
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(err!(
            "cannot delete container {id} that is not stopped: {}",
            status.as_str()
        ));
    }
    let spec = c.spec().ok();
    let made = match &c.saved {
        Some(s) => Made {
            cgroup: s.cgroup.clone(),
            parents: s.cgroup_parents_made.clone(),
            devices: s.devices_cgroup.clone(),
        },
        None => {
            // create never finished (or crashed): find the cgroup from the stored config.
            let cg = spec
                .as_ref()
                .and_then(|s| s.linux().as_ref()?.cgroups_path().clone());
            match cg {
                Some(p) => Made {
                    cgroup: p.to_string_lossy().trim_matches('/').to_string(),
                    parents: Vec::new(),
                    devices: None,
                },
                None => {
                    c.remove_dir()?;
                    return Ok(());
                }
            }
        }
    };
    if let Some(s) = &c.saved {
        if status == Status::Paused {
            let _ = set_frozen(&s.cgroup, false);
        }
        if status != Status::Stopped {
            let _ = send(s.pid, libc::SIGKILL);
        }
    }
    made.remove()?;
    if let Some(s) = &c.saved {
        if s.annotations
            .get(super::cri::CONTAINER_TYPE)
            .map(String::as_str)
            == Some("sandbox")
        {
            super::cri::release(Path::new(super::cri::ALLOC_DIR), id);
        }
    }
    if let (Some(s), Some(spec)) = (&c.saved, &spec) {
        let post = hook_list(spec, |h| h.poststop());
        if !post.is_empty() {
            hooks::run_all_logged(
                "poststop",
                &post,
                &hook_state(id, "stopped", 0, &s.bundle, &s.annotations),
            );
        }
    }
    c.remove_dir()
}

/// `ps`: host PIDs of the container's processes.
pub fn pids(g: &Global, id: &str) -> Result<Vec<i32>> {
    let c = Container::peek(&g.root, id)?;
    match &c.saved {
        Some(s) => Ok(Cgroup::new(&s.cgroup).pids()?),
        None => Ok(Vec::new()),
    }
}

/// `ps --format table`: UID PID PPID STAT CMD for each process.
pub fn ps_table(pids: &[i32]) -> String {
    let mut out = String::from("UID        PID     PPID    STAT  CMD\n");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
        let mut f = after.split_whitespace();
        let st = f.next().unwrap_or("?").to_string();
        let ppid = f.next().unwrap_or("?").to_string();
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(String::from))
            })
            .unwrap_or_else(|| "?".into());
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        out.push_str(&format!("{uid:<10} {pid:<7} {ppid:<7} {st:<5} {cmd}\n"));
    }
    out
}

fn set_frozen(cgroup: &str, frozen: bool) -> Result<()> {
    let v1 = Path::new("/sys/fs/cgroup/freezer")
        .join(cgroup)
        .join("freezer.state");
    if v1.exists() {
        let value = if frozen { "FROZEN" } else { "THAWED" };
        io_ctx(std::fs::write(&v1, value), "write", &v1)?;
        if frozen {
            // Wait (bounded) for FREEZING to become FROZEN.
            for _ in 0..200 {
                if std::fs::read_to_string(&v1)
                    .map(|s| s.trim() == "FROZEN")
                    .unwrap_or(true)
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        return Ok(());
    }
    let v2 = Path::new("/sys/fs/cgroup")
        .join(cgroup)
        .join("cgroup.freeze");
    io_ctx(
        std::fs::write(&v2, if frozen { "1" } else { "0" }),
        "write",
        &v2,
    )
}

/// `pause` / `resume`.
pub fn pause(g: &Global, id: &str, frozen: bool) -> Result<()> {
    let c = Container::load(&g.root, id)?;
    let status = c.status();
    match (frozen, status) {
        (true, Status::Running) | (false, Status::Paused) => {}
        (true, _) => return Err(err!("container {id} is not running ({})", status.as_str())),
        (false, _) => return Err(err!("container {id} is not paused ({})", status.as_str())),
    }
    set_frozen(&c.saved.as_ref().expect("state").cgroup, frozen)
}

/// `update`: apply new resources to a live container.
pub fn update(g: &Global, id: &str, res: &oci_spec::runtime::LinuxResources) -> Result<()> {
    spec::validate_resources(res)?;
    if res.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(err!(
            "update: changing device rules of a live container is not supported"
        ));
    }
    let c = Container::load(&g.root, id)?;
    if c.status() == Status::Stopped {
        return Err(err!("container {id} is stopped"));
    }
    Cgroup::new(&c.saved.as_ref().expect("state").cgroup).apply(res)?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct ExecArgs {
    pub id: String,
    pub process: Option<PathBuf>,
    pub command: Vec<String>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: u32,
}

/// The process to exec: from --process, or the container's own process with the command
/// line's arguments and overrides (runc's rules).
fn exec_process(spec: &Spec, a: &ExecArgs) -> Result<Process> {
    if let Some(path) = &a.process {
        let data = if path == Path::new("-") {
            let mut s = Vec::new();
            io_ctx(
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut s),
                "read",
                "stdin",
            )?;
            s
        } else {
            io_ctx(std::fs::read(path), "read", path)?
        };
        return serde_json::from_slice(&data).map_err(|e| err!("parse {}: {e}", path.display()));
    }
    if a.command.is_empty() {
        return Err(err!("exec: give a command or --process"));
    }
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| err!("container has no process"))?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for e in &a.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse::<u32>().ok(), g.parse::<u32>().ok()),
            None => (u.parse::<u32>().ok(), Some(0)),
        };
        let (Some(uid), Some(gid)) = (uid, gid) else {
            return Err(err!("--user {u:?}: expected UID[:GID] (numbers)"));
        };
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let parsed: Vec<oci_spec::runtime::Capability> = a
            .caps
            .iter()
            .map(|c| {
                let name = if c.to_ascii_uppercase().starts_with("CAP_") {
                    c.to_ascii_uppercase()
                } else {
                    format!("CAP_{}", c.to_ascii_uppercase())
                };
                serde_json::from_value(serde_json::Value::String(name.clone()))
                    .map_err(|_| err!("--cap {c}: unknown capability"))
            })
            .collect::<Result<_>>()?;
        let add = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = set.clone().unwrap_or_default();
            s.extend(parsed.iter().copied());
            Some(s)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        caps.set_inheritable(add(caps.inheritable()));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// What `exec` did: the joiner's exit code (foreground) or the command's host PID (detached).
pub enum Execd {
    Exited(i32),
    Detached(i32),
}

/// `exec`: run a process in a running container.
pub fn exec(g: &Global, a: &ExecArgs) -> Result<Execd> {
    if a.preserve_fds > 0 {
        return Err(err!("--preserve-fds: not supported by vslice-runc"));
    }
    let c = Container::load(&g.root, &a.id)?;
    let status = c.status();
    if matches!(status, Status::Stopped | Status::Creating) {
        return Err(err!("cannot exec in a stopped container"));
    }
    if status == Status::Paused {
        return Err(err!("cannot exec in a paused container"));
    }
    let saved = c.saved.clone().expect("state");
    let spec = c.spec()?;
    let mut process = exec_process(&spec, a)?;
    spec::validate_process(&process, "process")?;
    ensure_home(&mut process, &saved.rootfs);
    let terminal = process.terminal().unwrap_or(false);
    if terminal && a.detach && a.console_socket.is_none() {
        return Err(err!(
            "cannot allocate a tty for a detached exec without --console-socket"
        ));
    }
    if !terminal && a.console_socket.is_some() {
        return Err(err!(
            "--console-socket given but the process has no terminal"
        ));
    }
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(sandbox::seccomp::compile)
        .transpose()?;
    let plan = ExecPlan::from_process(&process, seccomp)?;
    let target = join::Target {
        init_pid: saved.pid,
        cgroup: Some(saved.cgroup.clone()),
    };
    // The device cgroup is not one the executor joins: enter it ourselves, children inherit.
    if let Some(d) = &saved.devices_cgroup {
        devices::join_self(d)?;
    }
    let (stdio, relay_master) = if terminal {
        let p = pty::open_in_sandbox(saved.pid)?;
        if let Some((cols, rows)) = process
            .console_size()
            .as_ref()
            .map(|b| (b.width() as u16, b.height() as u16))
        {
            let _ = pty::set_size(&p.master, cols, rows);
        }
        match &a.console_socket {
            Some(path) => {
                pty::send_to_console_socket(&p.master, path)?;
                (join::Stdio::Pty(p.slave), None)
            }
            None => (join::Stdio::Pty(p.slave), Some(p.master)),
        }
    } else {
        (join::Stdio::Inherit, None)
    };
    drop(c); // release the lock: a long-running exec must not block state/kill/delete
    if a.detach {
        let pid = join::spawn_detached(&target, &plan, stdio)?;
        if let Some(p) = &a.pid_file {
            write_pid_file(p, pid)?;
        }
        return Ok(Execd::Detached(pid));
    }
    let joiner = join::spawn(&target, &plan, stdio)?;
    if let Some(p) = &a.pid_file {
        write_pid_file(p, joiner.as_raw())?;
    }
    if let Some(m) = &relay_master {
        let _ = pty::relay(m);
    }
    Ok(Execd::Exited(join::wait(joiner)))
}

#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    pub create: CreateArgs,
    pub detach: bool,
    pub keep: bool,
}

/// `run`: create + start, and unless detached wait for the container's init (we are its
/// subreaper), forward signals to it, then delete the container (unless `keep`). Returns the
/// exit code (128+signal if init was killed).
pub fn run(g: &Global, a: &RunArgs) -> Result<i32> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let spec_terminal = spec::load(&absolute(&a.create.bundle)?)?
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if spec_terminal && a.detach && a.create.console_socket.is_none() {
        return Err(err!(
            "cannot allocate a tty for a detached container without --console-socket"
        ));
    }
    if !a.detach {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| err!("prctl PR_SET_CHILD_SUBREAPER: {e}"))?;
    }
    let (ours, theirs) = if spec_terminal && a.create.console_socket.is_none() {
        let (x, y) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| err!("socketpair: {e}"))?;
        (Some(x), Some(y))
    } else {
        (None, None)
    };
    let c = create(g, &a.create, theirs)?;
    let master = ours.as_ref().map(recv_fd).transpose();
    let started = master.and_then(|m| start_loaded(&c).map(|()| m));
    let master = match started {
        Ok(m) => m,
        Err(e) => {
            drop(c);
            let _ = delete(g, &a.create.id, true);
            return Err(e);
        }
    };
    if a.detach {
        return Ok(0);
    }
    let init = nix::unistd::Pid::from_raw(c.saved.as_ref().expect("state").pid);
    drop(c);
    let code_of = |st: WaitStatus| match st {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    };
    let code = if let Some(m) = master {
        let _ = pty::relay(&m);
        loop {
            match waitpid(init, None) {
                Ok(st) => {
                    if let Some(c) = code_of(st) {
                        break c;
                    }
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(err!("wait for container init: {e}")),
            }
        }
    } else {
        let mut set = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
        ] {
            set.add(s);
        }
        set.thread_block().map_err(|e| err!("sigprocmask: {e}"))?;
        'outer: loop {
            // Reap: init, and anything re-parented to us as subreaper.
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => break,
                    Ok(st) => {
                        if st.pid() == Some(init) {
                            if let Some(c) = code_of(st) {
                                break 'outer c;
                            }
                        }
                    }
                    Err(nix::Error::EINTR) => {}
                    Err(e) => return Err(err!("wait for container init: {e}")),
                }
            }
            match set.wait() {
                Ok(Signal::SIGCHLD) => {}
                Ok(sig) => {
                    let _ = send(init.as_raw(), sig as i32);
                }
                Err(_) => {}
            }
        }
    };
    if !a.keep {
        delete(g, &a.create.id, true)?;
    }
    Ok(code)
}

/// `features`: what this runtime supports (runtime-spec features.md).
pub fn features() -> serde_json::Value {
    let caps: Vec<String> = caps::all()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                         "noatime", "atime", "relatime", "strictatime", "nodiratime", "diratime",
                         "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                // Only what sandbox::seccomp compiles: TRACE and NOTIFY are refused there.
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                            "SCMP_ACT_LOG", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": [if cfg!(target_arch = "aarch64") { "SCMP_ARCH_AARCH64" } else { "SCMP_ARCH_X86_64" }],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.vslice.runtime": "vslice-runc",
            "io.vslice.cgroup.version": match crate::cgroup::detect() { crate::cgroup::Version::V1 => "v1", crate::cgroup::Version::V2 => "v2" },
            "io.vslice.devices": "v1 devices cgroup; v2 eBPF (BPF_CGROUP_DEVICE)"
        }
    })
}

/// `spec`: write a default config.json into `bundle`.
pub fn write_spec(bundle: &Path) -> Result<PathBuf> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(err!("{} already exists; remove it first", path.display()));
    }
    let text =
        serde_json::to_string_pretty(&spec::default_spec()).map_err(|e| err!("serialize: {e}"))?;
    io_ctx(std::fs::write(&path, text + "\n"), "write", &path)?;
    Ok(path)
}
