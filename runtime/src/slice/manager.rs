//! The slice lifecycle over the on-disk store.
//!
//! Store layout under `<root>/slices/<name>/` (directories 0711 so the slice's init, which runs
//! as an unprivileged host uid, can traverse to its root mount point and nothing else):
//!
//! ```text
//! spec.json     desired state (SliceSpec)          written here, atomically
//! launch.json   OCI spec + rootfs for the shim     written at each start
//! state.json    shim/init PIDs while running       written by the shim
//! exit.json     how init ended                     written by the shim
//! shim.log      the shim's stderr
//! fs/upper fs/work   overlay layers (0700 parent; upper owned by the slice's base uid)
//! lower rootfs  mount points, used only inside the shim's private mount namespace
//! ```
//! A create is built under `.<name>.creating` and renamed into place; a destroy renames to
//! `.<name>.deleting` first. Either leftover after a crash is finished by [`Manager::recover`].
use super::oci;
use super::policy::{self, Policy};
use super::state::{self, RuntimeState};
use super::*;
use crate::cgroup::Cgroup;
use crate::config::Paths;
use crate::sandbox::{IdmappedOverlay, Launch};
use crate::util::fs::{read_json, write_json_atomic, write_json_volatile, IoContext, PathError};
use nix::fcntl::{Flock, FlockArg};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("slice {0:?} not found")]
    NotFound(String),
    #[error("slice {0:?} already exists")]
    AlreadyExists(String),
    /// A request field is wrong; `field` is its JSON path (e.g. "limits.memory_max").
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The slice is not in a state that allows the operation.
    #[error("slice {name:?} is {state}: {reason}")]
    Conflict {
        name: String,
        state: String,
        reason: String,
    },
    #[error("{0}")]
    Io(#[from] PathError),
    #[error("{0}")]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("starting slice {name:?}: {reason}")]
    Start { name: String, reason: String },
    #[error("network: {0}")]
    Net(crate::net::NetError),
    #[error("disk: {0}")]
    Disk(crate::disk::DiskError),
    /// The host cannot run slices (kernel or file system): the message names cause and fix.
    /// Boxed: it is the largest variant, and every Result of the manager carries its size.
    #[error("unsupported host: {0}")]
    Host(Box<crate::hostcheck::HostCheckError>),
}

impl From<crate::hostcheck::HostCheckError> for SliceError {
    fn from(e: crate::hostcheck::HostCheckError) -> SliceError {
        SliceError::Host(Box::new(e))
    }
}

impl From<crate::disk::DiskError> for SliceError {
    fn from(e: crate::disk::DiskError) -> SliceError {
        match e {
            crate::disk::DiskError::Invalid { field, reason } => SliceError::invalid(field, reason),
            other => SliceError::Disk(other),
        }
    }
}

impl From<crate::net::NetError> for SliceError {
    fn from(e: crate::net::NetError) -> SliceError {
        match e {
            // Spec errors name fields of the `net` part of the request.
            crate::net::NetError::Invalid { field, msg } => {
                let field = if field.starts_with("net") {
                    field
                } else {
                    format!("net.{field}")
                };
                SliceError::Invalid { field, reason: msg }
            }
            other => SliceError::Net(other),
        }
    }
}

impl SliceError {
    /// The HTTP status and error code this error is answered with, and recorded with in the
    /// audit log: one table for the daemon's API and for direct mode.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            SliceError::NotFound(_) => (404, "not_found"),
            SliceError::AlreadyExists(_) => (409, "already_exists"),
            SliceError::Conflict { .. } => (409, "conflict"),
            SliceError::Invalid { .. } => (400, "invalid"),
            SliceError::Start { .. } => (500, "start_failed"),
            SliceError::Io(_)
            | SliceError::Cgroup(_)
            | SliceError::Net(_)
            | SliceError::Disk(_) => (500, "internal"),
            SliceError::Host(_) => (500, "host_unsupported"),
        }
    }

    /// The request field an error is about, for API error bodies.
    pub fn field(&self) -> Option<&str> {
        match self {
            SliceError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
    fn invalid(field: &str, reason: impl Into<String>) -> SliceError {
        SliceError::Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// First host uid of the first slice; slice k gets [FIRST_UID_BASE + k*65536, +65536).
/// Far above host ids 0-65535 and the 100000-range /etc/subuid usually hands out.
pub const FIRST_UID_BASE: u32 = 1_000_000_000;
/// How many slices fit below 2^31 (ids above that confuse some tools).
pub const MAX_SLICES: u32 = (i32::MAX as u32 - FIRST_UID_BASE) / UID_COUNT;
pub const DEFAULT_IMAGE: &str = "busybox";
pub const DEFAULT_POLICY: &str = "default";
pub const DEFAULT_INIT: &str = "/sbin/init";
/// Descriptor number on which `vslice-shim start` receives the slice's lock.
pub use super::state::SHIM_LOCK_FD;
/// How long `destroy` waits for a killed slice to go away.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Entry point of the lifecycle. Cheap to construct; holds no open resources.
#[derive(Debug, Clone)]
pub struct Manager {
    pub paths: Paths,
    /// The node's tc/nftables drop counters as last read for an inspect, and when: inspects
    /// within [`DROP_COUNTERS_MAX_AGE`] share one read (4 processes), so that inspect can
    /// answer thousands of requests a second. The veth byte and packet counters are always
    /// read live.
    drop_counters: std::sync::Arc<DropCountersCache>,
    /// Each slice's parsed spec, state and exit record, while their files are unchanged.
    files: std::sync::Arc<super::files_cache::FilesCache>,
}

type DropCountersCache =
    std::sync::Mutex<Option<(Instant, std::sync::Arc<crate::net::DropCounters>)>>;

/// Fewer slices than this per thread are observed on the calling thread alone.
const OBSERVE_CHUNK_MIN: usize = 64;

/// How old the drop counters an inspect shows may be.
const DROP_COUNTERS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// What inspect shows of a slice's network attachment.
fn net_info((net, counters): (crate::net::SliceNet, crate::net::NetCounters)) -> NetInfo {
    NetInfo {
        address: net.address,
        host_veth: net.host_veth.unwrap_or_default(),
        counters,
    }
}

/// DNS label: 1-63 of [a-z0-9-], not starting or ending with '-'.
pub fn validate_name(name: &str) -> Result<(), SliceError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SliceError::invalid(
            "name",
            format!("{name:?} is not a DNS label (1-63 characters a-z, 0-9 and '-', not starting or ending with '-')"),
        ))
    }
}

const MIN_MEMORY: u64 = 4 << 20;

/// Where the kernel lists the node's online CPUs.
const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// `0-3,6` as inclusive ranges; None if malformed (or a range runs backwards).
fn parse_cpu_list(s: &str) -> Option<Vec<(u32, u32)>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    s.split(',')
        .map(|part| {
            let mut it = part.splitn(2, '-');
            let a = it.next()?.parse::<u32>().ok()?;
            let b = match it.next() {
                None => a,
                Some(b) => b.parse::<u32>().ok()?,
            };
            (b >= a).then_some((a, b))
        })
        .collect()
}

/// The node's online CPUs, or None if the kernel does not say (then only the syntax of a
/// cpuset is checked, and the kernel has the last word at start).
pub fn online_cpus() -> Option<Vec<(u32, u32)>> {
    parse_cpu_list(&fs::read_to_string(ONLINE_CPUS).ok()?)
}

fn check_cpus_online(
    s: &str,
    wanted: &[(u32, u32)],
    online: &[(u32, u32)],
) -> Result<(), SliceError> {
    let list = online
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    for &(a, b) in wanted {
        // Walk the requested range through the online ranges (no expansion: "0-4294967295"
        // must not allocate).
        let mut c = a;
        loop {
            match online.iter().find(|(x, y)| *x <= c && c <= *y) {
                Some(&(_, y)) if y >= b => break,
                Some(&(_, y)) => c = y + 1,
                None => {
                    return Err(SliceError::invalid(
                        "limits.cpuset",
                        format!("{s:?}: CPU {c} is not online on this node (online CPUs: {list})"),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The kernel's limit on one argument or environment string, NUL included (MAX_ARG_STRLEN).
pub const MAX_ARG_BYTES: usize = 128 * 1024 - 1;
/// Bytes of the argument and environment strings of one command together: well below
/// ARG_MAX (a quarter of the default 8 MiB stack), leaving room for what the shim adds.
pub const MAX_ARGS_TOTAL: usize = 512 * 1024;
/// Longest working directory (PATH_MAX, NUL included).
pub const MAX_PATH_BYTES: usize = 4095;

/// Strings that end up in an execve: no NUL (the kernel takes C strings), each within
/// MAX_ARG_STRLEN; adds their size to `total`.
fn check_c_strings(field: &str, items: &[String], total: &mut usize) -> Result<(), SliceError> {
    for (i, s) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if s.contains('\0') {
            return Err(SliceError::invalid(
                &f,
                "contains a NUL byte (programs take C strings)",
            ));
        }
        if s.len() > MAX_ARG_BYTES {
            return Err(SliceError::invalid(
                &f,
                format!(
                    "{} bytes: at most {MAX_ARG_BYTES} per string (the kernel's MAX_ARG_STRLEN)",
                    s.len()
                ),
            ));
        }
        *total += s.len() + 1;
    }
    Ok(())
}

fn check_args_total(field: &str, total: usize) -> Result<(), SliceError> {
    if total > MAX_ARGS_TOTAL {
        return Err(SliceError::invalid(
            field,
            format!("the command's strings are {total} bytes together: at most {MAX_ARGS_TOTAL}"),
        ));
    }
    Ok(())
}

/// An init command: a program name and arguments the kernel will accept.
fn validate_init(init: &[String]) -> Result<(), SliceError> {
    if init.is_empty() || init[0].is_empty() {
        return Err(SliceError::invalid("init", "must name a program"));
    }
    let mut total = 0;
    check_c_strings("init", init, &mut total)?;
    check_args_total("init", total)
}

/// Whether `path` (as seen inside the root, symlinks resolved inside it: openat2
/// RESOLVE_IN_ROOT, so nothing outside `root` is ever looked at) is a regular file with an
/// execute bit.
fn executable_in_root(root: &Path, path: &str) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let Ok(dir) = fs::File::open(root) else {
        return false;
    };
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // With RESOLVE_IN_ROOT the kernel answers EAGAIN when any rename or mount on the node
    // raced with the lookup (concurrent creates, destroys and shims do both all the time):
    // that says nothing about the file, so look again.
    let mut fd = -1;
    for _ in 0..1000 {
        // SAFETY: valid fd, NUL-terminated path, and a correctly sized open_how.
        fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        let errno = std::io::Error::last_os_error().raw_os_error();
        if fd >= 0 || !matches!(errno, Some(libc::EAGAIN) | Some(libc::EINTR)) {
            break;
        }
    }
    if fd < 0 {
        return false;
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    match nix::sys::stat::fstat(fd.as_raw_fd()) {
        Ok(st) => (st.st_mode & libc::S_IFMT) == libc::S_IFREG && st.st_mode & 0o111 != 0,
        Err(_) => false,
    }
}

/// The slice's default PATH (slice/oci.rs), for an init named without a slash.
const INIT_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Check that `init[0]` is an executable in one of `roots` (the slice's upper layer and its
/// image), so that a missing init is the client's 400, not a failed start.
fn check_init_exists(init: &str, roots: &[&Path], image: &str) -> Result<(), SliceError> {
    let candidates: Vec<String> = if init.contains('/') {
        vec![format!("/{}", init.trim_start_matches('/'))]
    } else {
        INIT_PATH.iter().map(|d| format!("{d}/{init}")).collect()
    };
    let found = candidates
        .iter()
        .any(|c| roots.iter().any(|r| executable_in_root(r, c)));
    if found {
        Ok(())
    } else {
        Err(SliceError::invalid(
            "init[0]",
            format!("{init:?} is not an executable file in the slice's root (image {image:?})"),
        ))
    }
}

/// Check limits against their own ranges, the policy's maxima and the node's online CPUs.
pub fn validate_limits(l: &Limits, p: &Policy) -> Result<(), SliceError> {
    validate_limits_on(l, p, online_cpus().as_deref())
}

/// [`validate_limits`] with the online CPUs given (None: do not check them).
pub fn validate_limits_on(
    l: &Limits,
    p: &Policy,
    online: Option<&[(u32, u32)]>,
) -> Result<(), SliceError> {
    let m = &p.maxima;
    if let Some(w) = l.cpu_weight {
        if !(1..=10000).contains(&w) {
            return Err(SliceError::invalid(
                "limits.cpu_weight",
                format!("{w} is outside 1..=10000"),
            ));
        }
    }
    if let Some(c) = l.cpu_max {
        if !(c.is_finite() && c >= 0.01) {
            return Err(SliceError::invalid(
                "limits.cpu_max",
                format!("{c} CPUs: must be at least 0.01"),
            ));
        }
        if let Some(max) = m.cpu_max {
            if c > max {
                return Err(SliceError::invalid(
                    "limits.cpu_max",
                    format!("{c} CPUs exceeds policy {:?} maximum {max}", p.name),
                ));
            }
        }
    }
    if let Some(s) = &l.cpuset {
        let Some(wanted) = parse_cpu_list(s) else {
            return Err(SliceError::invalid(
                "limits.cpuset",
                format!("{s:?} is not a CPU list like \"0-1,3\""),
            ));
        };
        // The kernel refuses CPUs that are not online only when the cgroup is written (at
        // start, as ERANGE/EINVAL): check against the node here, at the API's edge.
        if let Some(online) = online {
            check_cpus_online(s, &wanted, online)?;
        }
    }
    let check_max =
        |field: &str, v: Option<u64>, max: Option<u64>, unit: &str| -> Result<(), SliceError> {
            if let (Some(v), Some(max)) = (v, max) {
                if v > max {
                    return Err(SliceError::invalid(
                        field,
                        format!("{v}{unit} exceeds policy {:?} maximum {max}{unit}", p.name),
                    ));
                }
            }
            Ok(())
        };
    if let Some(mem) = l.memory_max {
        if mem < MIN_MEMORY {
            return Err(SliceError::invalid(
                "limits.memory_max",
                format!("{mem} bytes: must be at least {MIN_MEMORY} (4M)"),
            ));
        }
    }
    check_max("limits.memory_max", l.memory_max, m.memory_max, " bytes")?;
    if l.swap_max.is_some() && l.memory_max.is_none() {
        return Err(SliceError::invalid(
            "limits.swap_max",
            "a swap limit needs a memory limit (memory_max)",
        ));
    }
    check_max("limits.swap_max", l.swap_max, m.swap_max, " bytes")?;
    if let Some(p) = l.pids_max {
        if p < 2 {
            return Err(SliceError::invalid(
                "limits.pids_max",
                format!("{p}: must be at least 2 (init and one process)"),
            ));
        }
    }
    check_max("limits.pids_max", l.pids_max, m.pids_max, "")?;
    crate::disk::validate(l)?;
    Ok(())
}

/// Policy defaults fill what the request left unset, so every slice has a memory and pids cap.
fn with_defaults(mut l: Limits, p: &Policy) -> Limits {
    if l.memory_max.is_none() {
        l.memory_max = p.maxima.memory_max.map(|m| m.min(1 << 30));
    }
    if l.pids_max.is_none() {
        l.pids_max = p.maxima.pids_max.map(|m| m.min(1024));
    }
    l
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> SliceError {
    SliceError::Io(PathError::new(op, path, e))
}

fn lock(path: &Path) -> Result<Flock<fs::File>, SliceError> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ctx("open lock", path)?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err("flock", path, std::io::Error::from_raw_os_error(e as i32)))
}

impl Manager {
    pub fn new(paths: Paths) -> Manager {
        Manager {
            paths,
            drop_counters: Default::default(),
            files: Default::default(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.paths.slice_dir(name)
    }

    /// The node's network, configured from [`crate::config::NetSettings`].
    pub fn node_net(&self) -> Result<crate::net::NodeNet, SliceError> {
        let n = &self.paths.net;
        let mut net = crate::net::NodeNet::new(self.paths.root.join("net"));
        if let Some(b) = &n.bridge {
            net.bridge = b.clone();
        }
        if let Some(sub) = &n.subnet {
            net.subnet = sub
                .parse()
                .map_err(|e| SliceError::invalid("net.subnet", format!("{sub:?}: {e}")))?;
        }
        if let Some(t) = &n.nft_table {
            net.nft_table = t.clone();
        }
        if let Some(p) = &n.veth_prefix {
            net.veth_prefix = p.clone();
        }
        net.node_egress_rate = n.node_egress_rate;
        net.node_ingress_rate = n.node_ingress_rate;
        net.set_global_ip_forward = n.set_global_ip_forward;
        Ok(net)
    }

    /// Apply the daily byte budgets (PlanetLab's net_max_kbyte / net_thresh_kbyte): slices past
    /// their threshold get a rate that makes the rest of the budget last the rest of the day.
    /// The daemon calls this periodically; a node without bridge slices does nothing.
    pub fn enforce_net_budgets(&self) -> Result<Vec<crate::net::BudgetStatus>, SliceError> {
        if !self.paths.root.join("net").exists() {
            return Ok(Vec::new());
        }
        Ok(self.node_net()?.enforce_budgets()?)
    }

    /// Converge the node's network state with the slices (the daemon runs this at start-up,
    /// before serving, after [`Manager::recover`]): release the allocations of slices that no
    /// longer exist or no longer use the bridge, detach stopped slices that are still
    /// recorded as attached, and attach the running bridge-mode slices whose attachment is
    /// missing (a crash between a start and its attach, or after a node reboot of the
    /// bridge). Returns what it did, one line per action.
    pub fn reconcile_network(&self) -> Result<Vec<String>, SliceError> {
        let mut done = Vec::new();
        let infos = self.list()?;
        let bridged_running: Vec<&SliceInfo> = infos
            .iter()
            .filter(|i| {
                i.status == Status::Running && i.spec.net.mode == crate::net::NetMode::Bridge
            })
            .collect();
        if !self.paths.root.join("net").exists() && bridged_running.is_empty() {
            return Ok(done);
        }
        let net = self.node_net()?;
        for a in net.allocations()? {
            let owner = infos
                .iter()
                .find(|i| i.spec.name == a.slice)
                .filter(|i| i.spec.net.mode == crate::net::NetMode::Bridge);
            match owner {
                None => {
                    net.release(&a.slice)?;
                    done.push(format!(
                        "released {} ({}) of a slice that is gone",
                        a.address, a.slice
                    ));
                }
                Some(i) if i.status != Status::Running && a.active => {
                    // Under the slice's lock: a start in flight is not undone.
                    let _guard = lock(&self.dir(&a.slice).join(".lock"))?;
                    if self.running_state(&a.slice).is_none() {
                        net.detach(&a.slice)?;
                        done.push(format!("detached stopped slice {}", a.slice));
                    }
                }
                Some(_) => {}
            }
        }
        if bridged_running.is_empty() {
            return Ok(done);
        }
        net.ensure()?;
        for i in bridged_running {
            let name = &i.spec.name;
            if net.is_attached(name)? {
                continue;
            }
            let _guard = lock(&self.dir(name).join(".lock"))?;
            if let Some(st) = self.running_state(name) {
                self.attach_network(&i.spec, st.init_pid)?;
                done.push(format!("attached running slice {name}"));
            }
        }
        Ok(done)
    }

    /// Give a just-started bridge-mode slice its veth, address, shaping and /etc files.
    fn attach_network(&self, spec: &SliceSpec, init_pid: i32) -> Result<(), SliceError> {
        if spec.net.mode != crate::net::NetMode::Bridge {
            return Ok(());
        }
        let net = self.node_net()?;
        net.ensure_once()?;
        let attached = net.attach(
            &spec.name,
            crate::net::Netns::Pid(init_pid as u32),
            &spec.net,
        )?;
        // Through /proc/<pid>/root: the slice's own view of its root, so nothing on the host
        // is written even if the slice planted symlinks (write_etc refuses to follow them).
        let root = PathBuf::from(format!("/proc/{init_pid}/root/."));
        attached.write_etc(&root, Some((spec.uid_base, spec.uid_base)))?;
        Ok(())
    }

    pub fn cgroup_path(&self, name: &str) -> String {
        format!("{}/{}", self.paths.cgroup_parent, name)
    }

    fn ensure_store(&self) -> Result<(), SliceError> {
        for d in [&self.paths.root, &self.paths.slices_dir()] {
            fs::create_dir_all(d).ctx("mkdir", d)?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o711)).ctx("chmod", d)?;
        }
        Ok(())
    }

    fn load_spec(&self, name: &str) -> Result<SliceSpec, SliceError> {
        validate_name(name).map_err(|_| SliceError::NotFound(name.to_string()))?;
        match self.files.load(name, &self.dir(name))? {
            Some(f) => Ok(f.spec.clone()),
            None => Err(SliceError::NotFound(name.to_string())),
        }
    }

    fn load_policy(&self, name: &str) -> Result<Policy, SliceError> {
        policy::load(&self.paths.policy_dir, name)
            .map_err(|e| SliceError::invalid("policy", e.to_string()))
    }

    /// Validate, allocate a uid range, and persist a new slice; start it if asked. On any
    /// failure nothing of it remains.
    pub fn create(&self, req: &CreateRequest) -> Result<SliceInfo, SliceError> {
        validate_name(&req.name)?;
        let image_name = req
            .image
            .clone()
            .unwrap_or_else(|| DEFAULT_IMAGE.to_string());
        let image = crate::image::resolve(&self.paths.images_dir(), &image_name)
            .map_err(|e| SliceError::invalid("image", e.to_string()))?;
        // Before anything is allocated: can this kernel idmap the image's file system, ...
        crate::hostcheck::check_create(&image.rootfs)?;
        let policy_name = req
            .policy
            .clone()
            .unwrap_or_else(|| DEFAULT_POLICY.to_string());
        let policy = self.load_policy(&policy_name)?;
        let limits = with_defaults(req.limits.clone(), &policy);
        validate_limits(&limits, &policy)?;
        let init = req
            .init
            .clone()
            .unwrap_or_else(|| crate::image::store::default_init(&image, &self.paths.images_dir()));
        validate_init(&init)?;
        // A new slice's root is its image.
        check_init_exists(&init[0], &[&image.rootfs], &image_name)?;
        req.net.validate()?;
        super::volumes::validate(&req.volumes, &self.paths)?;
        for (i, o) in req.owners.iter().enumerate() {
            if nix::unistd::User::from_name(o).ok().flatten().is_none() {
                return Err(SliceError::invalid(
                    &format!("owners[{i}]"),
                    format!("no host user {o:?}"),
                ));
            }
        }
        self.ensure_store()?;
        let spec = {
            let _guard = lock(&self.paths.lock_file())?;
            if self.dir(&req.name).exists() {
                return Err(SliceError::AlreadyExists(req.name.clone()));
            }
            let spec = SliceSpec {
                name: req.name.clone(),
                image: image_name,
                policy: policy_name,
                limits,
                owners: req.owners.clone(),
                autostart: req.autostart,
                init,
                net: req.net.clone(),
                uid_base: self.allocate_uid_base()?,
                created_at: state::now_secs(),
                volumes: req.volumes.clone(),
            };
            self.write_new_slice(&spec)?;
            spec
        };
        if req.start {
            if let Err(e) = self.start(&spec.name) {
                let _ = self.destroy(&spec.name);
                return Err(e);
            }
        }
        self.inspect(&spec.name)
    }

    /// Lowest free range; called with the store lock held.
    fn allocate_uid_base(&self) -> Result<u32, SliceError> {
        let mut used = std::collections::BTreeSet::new();
        let dir = self.paths.slices_dir();
        for entry in fs::read_dir(&dir).ctx("read", &dir)?.flatten() {
            let p = entry.path().join(state::SPEC_FILE);
            if let Ok(s) = read_json::<SliceSpec>(&p) {
                used.insert(s.uid_base);
            }
        }
        (0..MAX_SLICES)
            .map(|k| FIRST_UID_BASE + k * UID_COUNT)
            .find(|b| !used.contains(b))
            .ok_or_else(|| {
                SliceError::invalid(
                    "name",
                    format!("no free uid range: {MAX_SLICES} slices exist"),
                )
            })
    }

    fn write_new_slice(&self, spec: &SliceSpec) -> Result<(), SliceError> {
        let tmp = self
            .paths
            .slices_dir()
            .join(format!(".{}.creating", spec.name));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).ctx("remove stale", &tmp)?;
        }
        let made = (|| -> Result<(), SliceError> {
            fs::create_dir(&tmp).ctx("mkdir", &tmp)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o711)).ctx("chmod", &tmp)?;
            let layers = tmp.join("fs");
            fs::create_dir(&layers).ctx("mkdir", &layers)?;
            fs::set_permissions(&layers, fs::Permissions::from_mode(0o700))
                .ctx("chmod", &layers)?;
            // The disk quota goes on `fs/` before upper and work are made in it.
            crate::disk::provision(&tmp, spec.uid_base, &spec.limits)?;
            for (sub, mode, owned) in [
                ("fs/upper", 0o755, true),
                ("fs/work", 0o700, false),
                ("lower", 0o700, false),
                ("rootfs", 0o755, false),
            ] {
                let d = tmp.join(sub);
                fs::create_dir(&d).ctx("mkdir", &d)?;
                fs::set_permissions(&d, fs::Permissions::from_mode(mode)).ctx("chmod", &d)?;
                if owned {
                    chown(&d, Some(spec.uid_base), Some(spec.uid_base)).ctx("chown", &d)?;
                }
            }
            write_json_atomic(&tmp.join(state::SPEC_FILE), spec)?;
            let dest = self.dir(&spec.name);
            fs::rename(&tmp, &dest).ctx("rename into place", &dest)?;
            crate::util::fs::fsync_dir(&self.paths.slices_dir())?;
            Ok(())
        })();
        if made.is_err() {
            let _ = crate::disk::release(&tmp);
            let _ = fs::remove_dir_all(&tmp);
        }
        made
    }

    fn runtime_state(&self, name: &str) -> Option<RuntimeState> {
        read_json::<RuntimeState>(&self.dir(name).join(state::STATE_FILE)).ok()
    }

    /// Running = the shim that recorded state.json is still that process.
    fn running_state(&self, name: &str) -> Option<RuntimeState> {
        self.runtime_state(name)
            .filter(|s| state::is_alive(s.shim_pid, s.shim_start))
    }

    /// Start a stopped slice: write its launch description and spawn its shim, which reports
    /// once init runs (or why it could not).
    pub fn start(&self, name: &str) -> Result<SliceInfo, SliceError> {
        let spec = self.load_spec(name)?;
        let dir = self.dir(name);
        let _guard = lock(&dir.join(".lock"))?;
        if self.running_state(name).is_some() {
            return Err(SliceError::Conflict {
                name: name.into(),
                state: "running".into(),
                reason: "already started".into(),
            });
        }
        self.clean_stale_run(name, &spec)?;
        let policy = self.load_policy(&spec.policy)?;
        let image = crate::image::resolve(&self.paths.images_dir(), &spec.image)
            .map_err(|e| SliceError::invalid("image", e.to_string()))?;
        validate_init(&spec.init)?;
        // The init may also have been installed into the slice's own layer since its create.
        check_init_exists(
            &spec.init[0],
            &[&dir.join("fs/upper"), &image.rootfs],
            &spec.image,
        )?;
        let rootfs = dir.join("rootfs");
        let mut oci = oci::slice_spec(
            &spec,
            &policy,
            &self.cgroup_path(name),
            &rootfs.to_string_lossy(),
        )
        .map_err(|reason| SliceError::Start {
            name: name.into(),
            reason,
        })?;
        // An imported image's Env and WorkingDir (image/store.rs).
        let image_config = crate::image::store::config(&self.paths.images_dir(), &spec.image);
        crate::image::store::apply_config(&mut oci, &image, &image_config);
        let launch = Launch {
            spec: oci,
            overlay: Some(IdmappedOverlay {
                image: image.rootfs.clone(),
                lower: dir.join("lower"),
                upper: dir.join("fs/upper"),
                work: dir.join("fs/work"),
                merged: rootfs,
                volumes: super::volumes::mounts(&spec),
            }),
        };
        write_json_volatile(&dir.join(state::LAUNCH_FILE), &launch)?;
        let _ = fs::remove_file(dir.join(state::EXIT_FILE));
        self.spawn_shim(name, &_guard)
            .map_err(|e| client_cause(e, &spec))?;
        if let Some(st) = self.running_state(name) {
            // Block I/O limits need the loop device the shim attached: applied once it runs.
            let attached = self.attach_network(&spec, st.init_pid).and_then(|()| {
                let dirs = Cgroup::new(&self.cgroup_path(name)).dirs()?;
                Ok(crate::disk::apply_io(&dir, &dirs, &spec.limits)?)
            });
            if let Err(e) = attached {
                // Roll back: a slice that cannot get its network does not run half-made.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(st.init_pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                wait_gone(st.shim_pid, st.shim_start, KILL_WAIT);
                let _ = self.clean_stale_run(name, &spec);
                return Err(e);
            }
        }
        self.inspect(name)
    }

    /// Remove what a previous run that ended badly may have left: a dead shim's state file,
    /// an orphaned init, a cgroup.
    fn clean_stale_run(&self, name: &str, _spec: &SliceSpec) -> Result<(), SliceError> {
        if let Some(st) = self.runtime_state(name) {
            if state::is_alive(st.init_pid, st.init_start) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(st.init_pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = fs::remove_file(self.dir(name).join(state::STATE_FILE));
        }
        let cg = Cgroup::new(&self.cgroup_path(name));
        if cg.exists() {
            cg.destroy()?;
        }
        if _spec.net.mode == crate::net::NetMode::Bridge {
            // The veth died with the slice's network namespace; this removes the host-side
            // rules and classes (the address stays reserved until destroy).
            self.node_net()?.detach(name)?;
        }
        Ok(())
    }

    /// The shim inherits our lock on the slice (as fd 3) and releases it once `state.json` is
    /// written: if this process dies mid-start, a recovering daemon still cannot mistake the
    /// half-started slice for debris and remove its cgroup under the shim.
    fn spawn_shim(&self, name: &str, lock: &Flock<fs::File>) -> Result<(), SliceError> {
        let dir = self.dir(name);
        let log_path = dir.join(state::SHIM_LOG);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .ctx("open", &log_path)?;
        let shim = &self.paths.shim;
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let lock_fd = lock.as_raw_fd();
        let mut cmd = Command::new(shim);
        // SAFETY: dup2 is async-signal-safe; the new fd 3 is not close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(lock_fd, SHIM_LOCK_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .arg("start")
            .arg("--root")
            .arg(&self.paths.root)
            .arg("--name")
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| io_err("spawn", shim, e))?;
        // The shim forks and its first process exits at once; the survivor reports on stdout
        // and then closes it.
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        let _ = child.wait();
        let line = out.trim();
        if line.starts_with("ok") {
            return Ok(());
        }
        let reason = line.strip_prefix("error ").unwrap_or(line);
        let reason = if reason.is_empty() {
            format!(
                "the shim exited without reporting; see {}",
                log_path.display()
            )
        } else {
            reason.to_string()
        };
        Err(SliceError::Start {
            name: name.into(),
            reason,
        })
    }

    /// SIGTERM to init, then SIGKILL after `timeout`. Stopping a stopped slice succeeds.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<SliceInfo, SliceError> {
        let spec = self.load_spec(name)?;
        let _guard = lock(&self.dir(name).join(".lock"))?;
        if let Some(st) = self.running_state(name) {
            let init = nix::unistd::Pid::from_raw(st.init_pid);
            if !timeout.is_zero() && state::is_alive(st.init_pid, st.init_start) {
                let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGTERM);
                if wait_gone(st.shim_pid, st.shim_start, timeout) {
                    return self.inspect(name);
                }
            }
            if state::is_alive(st.init_pid, st.init_start) {
                let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
            }
            if !wait_gone(st.shim_pid, st.shim_start, KILL_WAIT) {
                return Err(SliceError::Conflict {
                    name: name.into(),
                    state: "running".into(),
                    reason: format!(
                        "shim {} did not exit after its init was killed",
                        st.shim_pid
                    ),
                });
            }
        }
        self.clean_stale_run(name, &spec)?;
        self.inspect(name)
    }

    /// Kill the slice if running, then remove its cgroups, upper dir and state.
    pub fn destroy(&self, name: &str) -> Result<(), SliceError> {
        let spec = self.load_spec(name)?;
        // A destroyed slice's data is discarded: no graceful shutdown needed.
        self.stop(name, Duration::ZERO)?;
        let _guard = lock(&self.paths.lock_file())?;
        let dir = self.dir(name);
        let doomed = self.paths.slices_dir().join(format!(".{name}.deleting"));
        fs::rename(&dir, &doomed).ctx("rename for deletion", &dir)?;
        crate::util::fs::fsync_dir(&self.paths.slices_dir())?;
        crate::disk::release(&doomed)?;
        fs::remove_dir_all(&doomed).ctx("remove", &doomed)?;
        self.files.forget(name);
        if spec.net.mode == crate::net::NetMode::Bridge {
            self.node_net()?.release(name)?;
        }
        Ok(())
    }

    /// Finish what a crash interrupted: half-created or half-deleted slice directories, and
    /// cgroups under our parent whose slice no longer exists or is not running.
    pub fn recover(&self) -> Result<Vec<String>, SliceError> {
        let mut done = Vec::new();
        let dir = self.paths.slices_dir();
        if !dir.exists() {
            return Ok(done);
        }
        for entry in fs::read_dir(&dir).ctx("read", &dir)?.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') && (n.ends_with(".creating") || n.ends_with(".deleting")) {
                let _ = crate::disk::release(&entry.path());
                fs::remove_dir_all(entry.path()).ctx("remove", entry.path())?;
                done.push(n);
            }
        }
        for info in self.list()? {
            // Under the slice's lock: a start in flight (its shim holds the lock until the
            // slice runs) is waited for, not mistaken for debris.
            let _guard = lock(&self.dir(&info.spec.name).join(".lock"))?;
            if self.running_state(&info.spec.name).is_none() {
                self.clean_stale_run(&info.spec.name, &info.spec)?;
            }
        }
        Ok(done)
    }

    pub fn inspect(&self, name: &str) -> Result<SliceInfo, SliceError> {
        let mut info = self.observe(name)?;
        if info.status == Status::Running && info.spec.net.mode == crate::net::NetMode::Bridge {
            if let Ok(n) = self.node_net() {
                let drops = self.recent_drop_counters(&n);
                if let Ok(Some(a)) = n.attachment(name, &drops) {
                    info.net = Some(net_info(a));
                }
            }
        }
        info.disk = crate::disk::usage(&self.dir(name), &info.spec.limits, info.shim_pid);
        Ok(info)
    }

    /// The node's drop counters, read again only when the last read is older than
    /// [`DROP_COUNTERS_MAX_AGE`].
    fn recent_drop_counters(
        &self,
        n: &crate::net::NodeNet,
    ) -> std::sync::Arc<crate::net::DropCounters> {
        let mut cached = self
            .drop_counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cached {
            Some((at, d)) if at.elapsed() < DROP_COUNTERS_MAX_AGE => d.clone(),
            _ => {
                // Shared, not copied: the maps hold a few entries per slice of the node.
                let d = std::sync::Arc::new(n.drop_counters().unwrap_or_default());
                *cached = Some((std::time::Instant::now(), d.clone()));
                d
            }
        }
    }

    /// What the daemon's event poller needs of a slice (status, pids, exit record, usage for
    /// OOM kills, spec): [`Manager::inspect`] without the network counters and disk usage,
    /// which cost processes and quota calls per slice and which no event depends on
    /// (issue 14: an idle daemon with 1000 slices must not pay them every full poll).
    pub fn observe(&self, name: &str) -> Result<SliceInfo, SliceError> {
        self.observe_with(name, crate::cgroup::UsageReader::new().ok().as_ref())
    }

    /// [`Manager::observe`] with the cgroup counters read by `usage` (one reader for all the
    /// slices of a list).
    fn observe_with(
        &self,
        name: &str,
        usage: Option<&crate::cgroup::UsageReader>,
    ) -> Result<SliceInfo, SliceError> {
        validate_name(name).map_err(|_| SliceError::NotFound(name.to_string()))?;
        let files = self
            .files
            .load(name, &self.dir(name))?
            .ok_or_else(|| SliceError::NotFound(name.to_string()))?;
        let spec = files.spec.clone();
        let shim = files
            .state
            .clone()
            .filter(|s| state::is_alive(s.shim_pid, s.shim_start));
        let last_exit = files.exit.clone();
        // The cgroup lives as long as the shim: its counters (an OOM kill that ended init)
        // are still there while the shim winds down.
        let usage = shim
            .as_ref()
            .and_then(|_| usage?.usage(&self.cgroup_path(name)).ok());
        // The shim writes the exit record when init ends (start removes the previous one),
        // then tears down and exits: from the record on, the slice is stopped, so a client
        // told "exited" (the event comes from the record) never inspects it running.
        let running = shim.filter(|_| last_exit.is_none());
        Ok(SliceInfo {
            status: if running.is_some() {
                Status::Running
            } else {
                Status::Stopped
            },
            init_pid: running.as_ref().map(|s| s.init_pid),
            shim_pid: running.as_ref().map(|s| s.shim_pid),
            started_at: running.as_ref().map(|s| s.started_at),
            last_exit,
            usage,
            net: None,
            disk: None,
            spec,
        })
    }

    /// The names of the slices in the store, sorted.
    fn names(&self) -> Result<Vec<String>, SliceError> {
        let dir = self.paths.slices_dir();
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = fs::read_dir(&dir)
            .ctx("read", &dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// [`Manager::observe`] of every slice, sorted by name.
    ///
    /// The slices are read by up to one thread per CPU (at most four): the work is a few
    /// dozen small kernel reads per slice (files, /proc, cgroupfs) and nothing shared, so a
    /// list of 1000 slices takes a fraction of the time on a node with idle cores.
    pub fn observe_all(&self) -> Result<Vec<SliceInfo>, SliceError> {
        let usage = crate::cgroup::UsageReader::new().ok();
        let names = self.names()?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(names.len().div_ceil(OBSERVE_CHUNK_MIN));
        let observe = |part: &[String]| -> Vec<SliceInfo> {
            part.iter()
                .filter_map(|n| self.observe_with(n, usage.as_ref()).ok())
                .collect()
        };
        if threads <= 1 {
            return Ok(observe(&names));
        }
        let chunk = names.len().div_ceil(threads);
        Ok(std::thread::scope(|s| {
            let parts: Vec<_> = names
                .chunks(chunk)
                .map(|part| s.spawn(|| observe(part)))
                .collect();
            // A thread that panicked loses its part of the list, not the daemon.
            parts
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        }))
    }

    /// [`Manager::inspect`] of every slice, sorted by name, with one read of the network
    /// state and of the drop counters for all (the cost of a list does not grow with a
    /// process per slice).
    pub fn list(&self) -> Result<Vec<SliceInfo>, SliceError> {
        let mut all = self.observe_all()?;
        let bridged = |i: &SliceInfo| {
            i.status == Status::Running && i.spec.net.mode == crate::net::NetMode::Bridge
        };
        let mut nets = std::collections::BTreeMap::new();
        if all.iter().any(bridged) {
            if let Ok(n) = self.node_net() {
                let drops = std::sync::Arc::new(n.drop_counters().unwrap_or_default());
                *self
                    .drop_counters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((std::time::Instant::now(), drops.clone()));
                nets = n.attachments(&drops).unwrap_or_default();
            }
        }
        for info in all.iter_mut() {
            if bridged(info) {
                info.net = nets.remove(&info.spec.name).map(net_info);
            }
            let dir = self.dir(&info.spec.name);
            info.disk = crate::disk::usage(&dir, &info.spec.limits, info.shim_pid);
        }
        Ok(all)
    }

    /// Change limits; applied to the running cgroup at once and persisted.
    pub fn update_limits(&self, name: &str, patch: &LimitsPatch) -> Result<SliceInfo, SliceError> {
        let mut spec = self.load_spec(name)?;
        let _guard = lock(&self.dir(name).join(".lock"))?;
        let policy = self.load_policy(&spec.policy)?;
        let mut l = spec.limits.clone();
        macro_rules! merge {
            ($($f:ident),*) => { $( if patch.$f.is_some() { l.$f = patch.$f.clone(); } )* };
        }
        merge!(cpu_weight, cpu_max, cpuset, memory_max, swap_max, pids_max);
        merge!(disk_max, inodes_max, io_weight);
        // An io cap of 0 removes it.
        macro_rules! merge_cap {
            ($($f:ident),*) => { $( if let Some(v) = patch.$f { l.$f = (v > 0).then_some(v); } )* };
        }
        merge_cap!(io_read_bps, io_write_bps, io_read_iops, io_write_iops);
        validate_limits(&l, &policy)?;
        let mut net = spec.net.clone();
        if patch.egress_rate.is_some() {
            net.egress_rate = patch.egress_rate;
        }
        if patch.ingress_rate.is_some() {
            net.ingress_rate = patch.ingress_rate;
        }
        net.validate()?;
        let running = self.running_state(name);
        crate::disk::resize(
            &self.dir(name),
            &spec.limits,
            &l,
            running.as_ref().map(|s| s.shim_pid),
        )
        .map_err(|e| match e {
            crate::disk::DiskError::NeedsStop(reason) => SliceError::Conflict {
                name: name.into(),
                state: "running".into(),
                reason,
            },
            other => other.into(),
        })?;
        if running.is_some() {
            let cg = Cgroup::new(&self.cgroup_path(name));
            cg.apply(&oci::slice_resources(name, &l))?;
            let io_changed = (l.io_weight, l.io_read_bps, l.io_write_bps, l.io_read_iops)
                != (
                    spec.limits.io_weight,
                    spec.limits.io_read_bps,
                    spec.limits.io_write_bps,
                    spec.limits.io_read_iops,
                )
                || l.io_write_iops != spec.limits.io_write_iops;
            if io_changed {
                crate::disk::blkio_update(&self.dir(name), &cg.dirs()?, &l)?;
            }
            if net != spec.net && net.mode == crate::net::NetMode::Bridge {
                self.node_net()?.update(name, &net)?;
            }
        }
        spec.limits = l;
        spec.net = net;
        write_json_atomic(&self.dir(name).join(state::SPEC_FILE), &spec)?;
        self.files.forget(name);
        self.inspect(name)
    }

    /// The `vslice-shim exec …` command that runs `req` inside the running slice. The caller
    /// spawns it with the stdio it wants; its exit code is the command's. With `req.tty` and
    /// `console_socket`, the shim sends the pty master fd over that Unix socket (runc's
    /// console-socket protocol) instead of relaying its own stdio.
    pub fn exec_command(
        &self,
        name: &str,
        req: &ExecRequest,
        console_socket: Option<&Path>,
    ) -> Result<Command, SliceError> {
        self.load_spec(name)?;
        if req.argv.is_empty() || req.argv[0].is_empty() {
            return Err(SliceError::invalid("argv", "must name a program"));
        }
        let mut total = 0;
        check_c_strings("argv", &req.argv, &mut total)?;
        check_c_strings("env", &req.env, &mut total)?;
        check_args_total("argv", total)?;
        for (i, e) in req.env.iter().enumerate() {
            if !e.contains('=') || e.starts_with('=') {
                return Err(SliceError::invalid(
                    &format!("env[{i}]"),
                    format!("{e:?} is not NAME=value"),
                ));
            }
        }
        if let Some(cwd) = &req.cwd {
            if cwd.contains('\0') || cwd.len() > MAX_PATH_BYTES {
                return Err(SliceError::invalid(
                    "cwd",
                    format!("must be a path of at most {MAX_PATH_BYTES} bytes without NUL bytes"),
                ));
            }
            if !cwd.starts_with('/') {
                return Err(SliceError::invalid(
                    "cwd",
                    format!("{cwd:?} is not an absolute path"),
                ));
            }
        }
        if self.running_state(name).is_none() {
            return Err(SliceError::Conflict {
                name: name.into(),
                state: "stopped".into(),
                reason: "start it first".into(),
            });
        }
        let mut cmd = Command::new(&self.paths.shim);
        cmd.arg("exec")
            .arg("--root")
            .arg(&self.paths.root)
            .arg("--name")
            .arg(name);
        if req.tty {
            cmd.arg("--tty");
            if let Some(s) = console_socket {
                cmd.arg("--console-socket").arg(s);
            }
        }
        if let Some(cwd) = &req.cwd {
            cmd.arg("--cwd").arg(cwd);
        }
        for e in &req.env {
            cmd.arg("--env").arg(e);
        }
        cmd.arg("--").args(&req.argv);
        Ok(cmd)
    }
}

/// A failed start the client's input caused, as the 400 naming that input: the kernel refused
/// the cpuset, or the init could not be executed. Everything else stays a server error.
fn client_cause(e: SliceError, spec: &SliceSpec) -> SliceError {
    let SliceError::Start { reason, .. } = &e else {
        return e;
    };
    let r = reason.to_ascii_lowercase();
    let kernel_refused = ["erange", "einval", "numerical result", "invalid argument"]
        .iter()
        .any(|k| r.contains(k));
    if r.contains("cpuset") && kernel_refused {
        return SliceError::invalid(
            "limits.cpuset",
            format!(
                "{:?}: the kernel refused it: {reason}",
                spec.limits.cpuset.as_deref().unwrap_or("")
            ),
        );
    }
    let exec_failed = ["enoent", "eacces", "enoexec", "e2big", "not found"]
        .iter()
        .any(|k| r.contains(k));
    if r.contains("execve") && exec_failed {
        return SliceError::invalid(
            "init[0]",
            format!("{:?} could not be executed: {reason}", spec.init[0]),
        );
    }
    e
}

fn wait_gone(pid: i32, start: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !state::is_alive(pid, start) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            name: "t".into(),
            description: String::new(),
            capabilities: vec![],
            seccomp: Default::default(),
            no_new_privileges: false,
            rlimits: vec![],
            masked_paths: vec![],
            readonly_paths: vec![],
            maxima: policy::Maxima {
                cpu_max: Some(2.0),
                memory_max: Some(1 << 30),
                swap_max: None,
                pids_max: Some(500),
            },
        }
    }

    #[test]
    fn names_follow_dns_label_rules() {
        for ok in ["a", "web-1", "x0", &"a".repeat(63)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", "../x", &"a".repeat(64)] {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.field(), Some("name"), "{bad}");
        }
    }

    #[test]
    fn limits_are_checked_against_policy_maxima_naming_the_field() {
        let p = policy();
        let e = validate_limits(
            &Limits {
                memory_max: Some(2 << 30),
                ..Default::default()
            },
            &p,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("limits.memory_max"));
        assert!(e.to_string().contains("maximum"), "{e}");
        let e = validate_limits(
            &Limits {
                cpu_max: Some(3.0),
                ..Default::default()
            },
            &p,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("limits.cpu_max"));
        let e = validate_limits(
            &Limits {
                cpu_weight: Some(0),
                ..Default::default()
            },
            &p,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("limits.cpu_weight"));
        let e = validate_limits(
            &Limits {
                cpuset: Some("1-0".into()),
                ..Default::default()
            },
            &p,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("limits.cpuset"));
        let e = validate_limits(
            &Limits {
                pids_max: Some(501),
                ..Default::default()
            },
            &p,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("limits.pids_max"));
        assert!(validate_limits_on(
            &Limits {
                cpu_max: Some(0.5),
                memory_max: Some(64 << 20),
                pids_max: Some(100),
                cpuset: Some("0-1,3".into()),
                ..Default::default()
            },
            &p,
            Some(&[(0, 3)])
        )
        .is_ok());
    }

    #[test]
    fn cpusets_must_name_online_cpus() {
        let p = policy();
        let online = [(0, 1), (4, 5)];
        let check = |s: &str| {
            validate_limits_on(
                &Limits {
                    cpuset: Some(s.into()),
                    ..Default::default()
                },
                &p,
                Some(&online),
            )
        };
        for ok in ["0", "0-1", "1,4-5", "0-1,4"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for (bad, cpu) in [
            ("0-99999", "CPU 2 "),
            ("99", "CPU 99 "),
            ("0-4294967295", "CPU 2 "),
            ("4-6", "CPU 6 "),
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.field(), Some("limits.cpuset"), "{bad}");
            assert!(e.to_string().contains(cpu), "{bad}: {e}");
            assert!(e.to_string().contains("0-1,4-5"), "{bad}: {e}");
        }
        for malformed in ["", "a", "1-", "3-1", "1,,2", "4294967296"] {
            assert_eq!(
                check(malformed).unwrap_err().field(),
                Some("limits.cpuset"),
                "{malformed}"
            );
        }
    }

    #[test]
    fn command_strings_are_c_strings_within_kernel_limits() {
        let mut total = 0;
        let e = check_c_strings("argv", &["a".into(), "b\0c".into()], &mut total).unwrap_err();
        assert_eq!(e.field(), Some("argv[1]"));
        let big = "x".repeat(MAX_ARG_BYTES + 1);
        let e = check_c_strings("env", &[big], &mut total).unwrap_err();
        assert_eq!(e.field(), Some("env[0]"));
        assert!(e.to_string().contains("MAX_ARG_STRLEN"), "{e}");
        let many: Vec<String> = (0..8).map(|_| "y".repeat(MAX_ARG_BYTES)).collect();
        let mut total = 0;
        check_c_strings("argv", &many, &mut total).unwrap();
        assert_eq!(
            check_args_total("argv", total).unwrap_err().field(),
            Some("argv")
        );
        assert_eq!(validate_init(&[]).unwrap_err().field(), Some("init"));
        assert!(validate_init(&["/sbin/init".into()]).is_ok());
    }

    #[test]
    fn init_is_resolved_inside_the_root_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let exe = |p: &Path| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        };
        exe(&root.join("bin/real"));
        exe(&outside.join("evil"));
        std::fs::write(root.join("bin/data"), "x").unwrap();
        std::os::unix::fs::symlink("real", root.join("bin/link")).unwrap();
        // An absolute target is taken inside the root; `..` cannot climb out of it.
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../outside/evil", root.join("bin/up")).unwrap();
        let ok = |p: &str| check_init_exists(p, &[&root], "t").is_ok();
        assert!(ok("/bin/real") && ok("/bin/link") && ok("real") && ok("bin/real"));
        assert!(!ok("/bin/data"), "not executable");
        assert!(!ok("/bin/none") && !ok("none"));
        assert!(
            !ok("/escape/evil"),
            "absolute symlink followed out of the root"
        );
        assert!(!ok("/bin/up"), "relative symlink followed out of the root");
        let e = check_init_exists("/bin/none", &[&root], "t").unwrap_err();
        assert_eq!(e.field(), Some("init[0]"));
    }

    #[test]
    fn defaults_fill_memory_and_pids() {
        let l = with_defaults(Limits::default(), &policy());
        assert_eq!(l.memory_max, Some(1 << 30));
        assert_eq!(l.pids_max, Some(500));
    }
}
