//! The exec log: every execve in every slice (time, slice, host pid, pid and uid inside the
//! slice, path, bounded argv, parent), collected on the host.
//!
//! Two sources, chosen at start (the control log's `exec_log_source` record names the one in
//! use and, for the fallback, why eBPF did not load):
//!
//! * **eBPF** (exec_bpf.rs), the default: a program on the `sched_process_exec` tracepoint
//!   attributes each exec to its slice by cgroup in the kernel and copies path, argv, parent
//!   and the pid inside the slice from the exec itself. Nothing is missed for short-lived
//!   processes; events that find its ring buffer full are counted by the program and
//!   recorded as a `loss`.
//! * **proc connector** (netlink `NETLINK_CONNECTOR`, `CN_IDX_PROC`), where BPF cannot load
//!   (no kernel BTF, no CAP_BPF, Linux < 5.8): FORK, EXEC and EXIT events of every host
//!   process. It attributes by **process ancestry and cgroup**: the slices' processes are
//!   seeded from their cgroups at start, every FORK of a tracked process tracks the child,
//!   and a FORK or EXEC of an untracked process is resolved from `/proc/<pid>/cgroup`. So
//!   every exec of a slice is **counted** and attributed, but path, argv, uid and the pid in
//!   the slice are read from /proc after the event: a process that exits (or execs again)
//!   first is recorded with `gone: true` and without them. Socket overruns (ENOBUFS) are
//!   counted, written as a `loss` record, and the tracked set is re-seeded.
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::exec_bpf::{map_id, parse_id_map, BpfExecs, SliceNames};
use super::records::{Anchor, KindLog};
use super::{time, AuditError};
use crate::audit::flows::AnchorSink;

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// argv is cut after this many bytes (and marked `argv_truncated`).
pub const ARGV_MAX_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExecLogError {
    #[error("exec log: {0}")]
    Audit(#[from] AuditError),
    #[error("exec log: proc connector: {0}")]
    Netlink(std::io::Error),
}

/// How the exec collector is set up.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    pub audit_dir: PathBuf,
    /// The cgroup parent of the slices (`vslice`): a process whose cgroup path starts with
    /// `/<parent>/<slice>` belongs to `<slice>`.
    pub cgroup_parent: String,
    pub flush_interval: Duration,
    pub segment_bytes: u64,
    pub reserve_bytes: u64,
    pub retention_days: u32,
    pub mechanism: Mechanism,
    /// Pin the eBPF program here so that it outlives the collector (see exec_bpf.rs); None:
    /// it is detached when the collector stops.
    pub pin_dir: Option<PathBuf>,
}

/// Which source to collect from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// eBPF where it loads, else the proc connector.
    Auto,
    /// The proc connector only (its tests; hosts where BPF must not be loaded).
    ProcConnector,
}

impl ExecConfig {
    pub fn new(audit_dir: PathBuf, cgroup_parent: &str) -> ExecConfig {
        ExecConfig {
            audit_dir,
            cgroup_parent: cgroup_parent.to_string(),
            flush_interval: Duration::from_secs(1),
            segment_bytes: super::records::DEFAULT_KIND_SEGMENT_BYTES,
            reserve_bytes: super::records::DEFAULT_RESERVE_BYTES,
            retention_days: 90,
            mechanism: Mechanism::Auto,
            pin_dir: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct ExecStats {
    /// The eBPF source is in use (else the proc connector).
    pub bpf: AtomicBool,
    pub records: AtomicU64,
    /// Events lost: receive-buffer overruns (ENOBUFS) of the proc connector, or execs the
    /// eBPF program found its ring buffer full for.
    pub overruns: AtomicU64,
    /// Execs recorded without path/argv (the process was gone before /proc was read).
    pub gone: AtomicU64,
    pub dropped: AtomicU64,
}

/// A running exec collector; stops on drop.
pub struct ExecCollector {
    stop: Arc<AtomicBool>,
    /// Signalled by stop(): the thread sleeps in poll(2) without a timeout when idle.
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<ExecStats>,
}

/// How often old segments are pruned (retention).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned right after.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The eBPF program's wake-up batching interval (`WAKE_EVERY_NS` in audit/bpf/exec.bpf.c).
const EXEC_WAKE_EVERY: Duration = Duration::from_millis(50);

/// Wait until `sock` or `wake` is readable or `timeout` passed (EINTR: returns early, the
/// caller loops).
fn wait_readable(sock: i32, wake: i32, timeout: Duration) {
    let mut fds = [
        libc::pollfd {
            fd: sock,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: poll over a local array of two pollfds.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
}

fn open_connector() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size: libc::c_int = 32 << 20;
    // SAFETY: setsockopt with a c_int option value of the right size.
    unsafe {
        if libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        ) != 0
        {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        // No receive timeout: the thread sleeps in poll(2) on the socket and a wake-up
        // eventfd that stop() signals (see ExecCollector::start).
    }
    // SAFETY: zeroed sockaddr_nl is a valid value; the fields are set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = CN_IDX_PROC;
    // SAFETY: bind with a sockaddr_nl of the right size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // nlmsghdr + cn_msg + op = LISTEN.
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&std::process::id().to_ne_bytes());
    msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
    msg.extend_from_slice(&4u16.to_ne_bytes()); // len
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    // SAFETY: send of an initialised buffer.
    let r = unsafe {
        libc::send(
            fd.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// One process event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    Fork {
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        pid: u32,
        tgid: u32,
    },
    Exit {
        pid: u32,
        tgid: u32,
    },
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parse the proc events of one datagram (one or more netlink messages).
pub fn parse_datagram(buf: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        // proc_event: what, cpu, timestamp_ns (u64), then the union.
        let ev = off + NLMSG_HDRLEN + CN_MSG_LEN;
        let data = ev + 16;
        if let Some(what) = u32_at(buf, ev) {
            let f = |i: usize| u32_at(buf, data + 4 * i);
            match what {
                PROC_EVENT_FORK => {
                    if let (Some(pt), Some(cp), Some(ct)) = (f(1), f(2), f(3)) {
                        out.push(ProcEvent::Fork {
                            parent_tgid: pt,
                            child_pid: cp,
                            child_tgid: ct,
                        });
                    }
                }
                PROC_EVENT_EXEC => {
                    if let (Some(p), Some(t)) = (f(0), f(1)) {
                        out.push(ProcEvent::Exec { pid: p, tgid: t });
                    }
                }
                PROC_EVENT_EXIT => {
                    if let (Some(p), Some(t)) = (f(0), f(1)) {
                        out.push(ProcEvent::Exit { pid: p, tgid: t });
                    }
                }
                _ => {}
            }
        }
        off += (len + 3) & !3;
    }
    out
}

/// The slice of a process from `/proc/<pid>/cgroup` (any hierarchy).
fn slice_of(pid: u32, parent: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let prefix = format!("/{parent}/");
    text.lines().find_map(|l| {
        let path = l.splitn(3, ':').nth(2)?;
        let rest = path.strip_prefix(&prefix)?;
        let name = rest.split('/').next()?;
        (!name.is_empty()).then(|| name.to_string())
    })
}

/// Every process in the slices' cgroups: pid → slice.
fn seed(parent: &str) -> HashMap<u32, String> {
    let mut map = HashMap::new();
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(parent)];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            roots.push(e.path().join(parent));
        }
    }
    fn walk(dir: &Path, slice: &str, map: &mut HashMap<u32, String>) {
        if let Ok(t) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in t.lines().filter_map(|l| l.trim().parse().ok()) {
                map.insert(pid, slice.to_string());
            }
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), slice, map);
                }
            }
        }
    }
    for root in roots {
        let Ok(rd) = std::fs::read_dir(&root) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let slice = e.file_name().to_string_lossy().into_owned();
                walk(&e.path(), &slice, &mut map);
            }
        }
    }
    map
}

/// The uid inside the slice of host uid `uid`, through the uid map of process `pid`
/// (`inside outside count` lines); None when the process is gone or the uid is unmapped.
fn uid_in_slice(pid: u32, uid: u32) -> Option<u64> {
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
    map_id(&parse_id_map(&map), uid)
}

/// What /proc still tells about a process that just exec'd.
pub(crate) fn describe(pid: u32) -> Value {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    };
    let uid = field("Uid:").and_then(|v| v.first().and_then(|u| u.parse::<u32>().ok()));
    let ppid = field("PPid:").and_then(|v| v.first().and_then(|u| u.parse::<u32>().ok()));
    // NSpid: host pid ... innermost pid.
    let ns_pid = field("NSpid:").and_then(|v| v.last().and_then(|u| u.parse::<u32>().ok()));
    let ns_uid = uid.and_then(|u| uid_in_slice(pid, u));
    let (argv, truncated) = match &cmdline {
        Some(c) => {
            let cut = c.len() > ARGV_MAX_BYTES;
            let c = &c[..c.len().min(ARGV_MAX_BYTES)];
            let args: Vec<String> = c
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            // A zombie (exited before the read) has an empty cmdline.
            ((!args.is_empty()).then_some(args), cut)
        }
        None => (None, false),
    };
    let gone = exe.is_none();
    let mut v = json!({
        "path": exe, "argv": argv, "uid": uid, "uid_in_slice": ns_uid,
        "pid_in_slice": ns_pid, "ppid": ppid,
    });
    if truncated {
        v["argv_truncated"] = true.into();
    }
    if gone {
        v["gone"] = true.into();
    }
    v
}

/// Where the collector's events come from.
enum Source {
    /// The eBPF program: every exec with its argv, attributed in the kernel.
    Bpf {
        bpf: Box<BpfExecs>,
        names: SliceNames,
        /// The program's lost-event count already reported.
        lost_seen: u64,
        /// This collector made the slices' parent cgroup (removed on stop when empty).
        made_parent: bool,
    },
    /// The proc connector: FORK/EXEC/EXIT of every host process, /proc read afterwards.
    Connector {
        fd: OwnedFd,
        tracked: HashMap<u32, String>,
        buf: Vec<u8>,
    },
}

impl Source {
    fn open(cfg: &ExecConfig) -> Result<(Source, String), ExecLogError> {
        let why_not_bpf = match cfg.mechanism {
            Mechanism::ProcConnector => "proc connector requested".to_string(),
            Mechanism::Auto => match BpfExecs::start(&cfg.cgroup_parent, cfg.pin_dir.as_deref()) {
                Ok((bpf, made_parent)) => {
                    let described = if bpf.resumed {
                        "bpf (resumed: the program stayed attached while no collector ran)"
                    } else {
                        "bpf"
                    };
                    let source = Source::Bpf {
                        bpf: Box::new(bpf),
                        names: SliceNames::default(),
                        lost_seen: 0,
                        made_parent,
                    };
                    return Ok((source, described.into()));
                }
                Err(e) => e.to_string(),
            },
        };
        let fd = open_connector().map_err(ExecLogError::Netlink)?;
        let source = Source::Connector {
            fd,
            tracked: seed(&cfg.cgroup_parent),
            buf: vec![0u8; 64 * 1024],
        };
        Ok((source, format!("proc connector ({why_not_bpf})")))
    }

    fn raw_fd(&self) -> i32 {
        match self {
            Source::Bpf { bpf, .. } => bpf.raw_fd(),
            Source::Connector { fd, .. } => fd.as_raw_fd(),
        }
    }

    /// Record what is queued. Returns true when nothing was.
    fn drain(&mut self, out: &mut Writer, cfg: &ExecConfig) -> bool {
        match self {
            Source::Bpf {
                bpf,
                names,
                lost_seen,
                ..
            } => {
                let boot_to_wall_ns = time::boot_to_wall_offset_ns();
                let parent_dir = bpf.parent_dir.clone();
                let n = bpf.drain(|ev| {
                    let info = names.lookup(&parent_dir, ev.slice_cgid);
                    let slice = info.map(|i| i.name.clone());
                    let uid_in_slice = info.and_then(|i| map_id(&i.uid_map, ev.uid));
                    let mut v = json!({
                        "event": "exec", "source": "bpf", "slice": slice, "pid": ev.pid,
                        "ppid": ev.ppid, "pid_in_slice": ev.pid_in_slice, "uid": ev.uid,
                        "uid_in_slice": uid_in_slice, "path": ev.path,
                        "argv": ev.argv,
                    });
                    if ev.argv_truncated {
                        v["argv_truncated"] = true.into();
                    }
                    if slice.is_none() {
                        // The slice's cgroup was gone before its name was read.
                        v["slice_cgroup_id"] = ev.slice_cgid.into();
                    }
                    let ms = (ev.boot_ns as i128 + boot_to_wall_ns) / 1_000_000;
                    out.put(ms as i64, v);
                });
                let lost = bpf.lost();
                if lost > *lost_seen {
                    let count = lost - *lost_seen;
                    *lost_seen = lost;
                    out.stats.overruns.fetch_add(count, Ordering::Relaxed);
                    out.put(
                        time::now_millis(),
                        json!({"event": "loss", "reason": "ring buffer full", "count": count}),
                    );
                }
                n == 0
            }
            Source::Connector { fd, tracked, buf } => {
                drain_connector(fd.as_raw_fd(), buf, tracked, out, cfg)
            }
        }
    }

    fn close(self) {
        if let Source::Bpf {
            bpf, made_parent, ..
        } = self
        {
            let dir = bpf.parent_dir.clone();
            // A pinned program keeps recording for the next collector while slices live;
            // with none left there is nothing to record.
            if has_subdirs(&dir) {
                tracing::info!(cgroup = %dir.display(), "exec log: the program stays pinned for the next daemon (slices remain)");
                drop(bpf);
            } else {
                tracing::info!("exec log: no slice left, program unpinned");
                bpf.release();
            }
            if made_parent {
                // Only if no slice cgroup is left in it (rmdir refuses otherwise).
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn has_subdirs(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    })
}

/// The exec log file and its counters.
struct Writer {
    log: KindLog,
    stats: Arc<ExecStats>,
    /// Record times never go back (the minute index assumes it), although events from
    /// different CPUs may come a little out of order.
    last_ms: i64,
}

impl Writer {
    fn put(&mut self, time_ms: i64, v: Value) {
        self.last_ms = self.last_ms.max(time_ms);
        match self.log.append(self.last_ms, v) {
            Ok(Some(_)) => self.stats.records.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Read one datagram of process events and record the slices' execs. Returns true when
/// nothing was queued.
fn drain_connector(
    fd: i32,
    buf: &mut [u8],
    tracked: &mut HashMap<u32, String>,
    out: &mut Writer,
    cfg: &ExecConfig,
) -> bool {
    // SAFETY: recv into an owned buffer of the given length.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOBUFS) {
            out.stats.overruns.fetch_add(1, Ordering::Relaxed);
            out.put(
                time::now_millis(),
                json!({"event": "loss", "reason": "ENOBUFS"}),
            );
            // Forks may have been missed: re-seed from the cgroups.
            tracked.extend(seed(&cfg.cgroup_parent));
        }
        return matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR));
    }
    for ev in parse_datagram(&buf[..n as usize]) {
        match ev {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
            } => {
                if child_pid == child_tgid {
                    // An untracked parent may have been moved into a slice's cgroup without
                    // exec'ing since (no event tells): ask /proc (the parent, else the child,
                    // which inherited it).
                    let s = match tracked.get(&parent_tgid) {
                        Some(s) => Some(s.clone()),
                        None => slice_of(parent_tgid, &cfg.cgroup_parent)
                            .or_else(|| slice_of(child_tgid, &cfg.cgroup_parent)),
                    };
                    if let Some(s) = s {
                        tracked.insert(parent_tgid, s.clone());
                        tracked.insert(child_tgid, s);
                    }
                }
            }
            ProcEvent::Exec { tgid, .. } => {
                let slice = match tracked.get(&tgid) {
                    Some(s) => Some(s.clone()),
                    None => slice_of(tgid, &cfg.cgroup_parent),
                };
                let Some(slice) = slice else { continue };
                tracked.insert(tgid, slice.clone());
                let mut v = describe(tgid);
                if v.get("gone").is_some() {
                    out.stats.gone.fetch_add(1, Ordering::Relaxed);
                }
                v["event"] = "exec".into();
                v["source"] = "proc_connector".into();
                v["slice"] = slice.into();
                v["pid"] = tgid.into();
                out.put(time::now_millis(), v);
            }
            ProcEvent::Exit { pid, tgid } => {
                if pid == tgid {
                    tracked.remove(&tgid);
                }
            }
        }
    }
    false
}

impl ExecCollector {
    /// Start collecting: the eBPF source where it loads, else the proc connector (the
    /// control log gets an `exec_log_source` record saying which, and why not eBPF).
    pub fn start(cfg: ExecConfig, mut anchor: AnchorSink) -> Result<ExecCollector, ExecLogError> {
        let wake = Arc::new(eventfd().map_err(ExecLogError::Netlink)?);
        let (mut source, described) = Source::open(&cfg)?;
        let (log, _) = match KindLog::open(
            &cfg.audit_dir,
            "execs",
            cfg.segment_bytes,
            cfg.reserve_bytes,
        ) {
            Ok(l) => l,
            Err(e) => {
                source.close();
                return Err(e.into());
            }
        };
        anchor("exec_log_source", described.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ExecStats {
            bpf: AtomicBool::new(matches!(source, Source::Bpf { .. })),
            ..ExecStats::default()
        });
        let (stop2, stats2, wake2) = (stop.clone(), stats.clone(), wake.clone());
        // Named: the idle test (tests/daemon_idle.rs) tells this host-event-driven thread
        // from the daemon's own.
        let thread = std::thread::Builder::new()
            .name("vsl-execlog".into())
            .spawn(move || {
                let mut out = Writer {
                    log,
                    stats: stats2,
                    last_ms: i64::MIN,
                };
                let mut last_flush = Instant::now();
                let mut last_prune: Option<Instant> = None;
                let mut stop_seen: Option<Instant> = None;
                // The eBPF program wakes this thread at most every EXEC_WAKE_EVERY (see
                // exec.bpf.c): after a batch, look again within twice that before sleeping
                // without a timeout, so records written without a wake-up are found.
                let mut look_again_until: Option<Instant> = None;
                loop {
                    // Sleep until an event, stop(), or the next flush of what was written (none
                    // pending: until the hourly retention pass). Idle costs no wake-ups.
                    if !stop2.load(Ordering::Relaxed) {
                        let mut due = if out.log.pending() {
                            cfg.flush_interval.saturating_sub(last_flush.elapsed())
                        } else {
                            PRUNE_EVERY
                                .saturating_sub(last_prune.map_or(PRUNE_EVERY, |t| t.elapsed()))
                        };
                        if let Some(t) = look_again_until {
                            due = due.min(t.saturating_duration_since(Instant::now()));
                        }
                        wait_readable(source.raw_fd(), wake2.as_raw_fd(), due);
                    }
                    let idle = source.drain(&mut out, &cfg);
                    if let Err(e) = out.log.write_out() {
                        tracing::warn!("exec log: {e}");
                    }
                    if !idle {
                        look_again_until = Some(Instant::now() + 2 * EXEC_WAKE_EVERY);
                    } else if look_again_until.is_some_and(|t| Instant::now() >= t) {
                        look_again_until = None;
                    }
                    if last_flush.elapsed() >= cfg.flush_interval {
                        if let Ok(Some(Anchor { kind, seq, hash })) = out.log.flush() {
                            anchor("anchor", Anchor { kind, seq, hash }.detail());
                        }
                        last_flush = Instant::now();
                    }
                    if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                        last_prune = Some(Instant::now());
                        if let Ok(Some(d)) = out.log.prune(cfg.retention_days, time::now_millis()) {
                            anchor("retention", d);
                        }
                    }
                    // On stop, what is already queued is still recorded: stop once a drain
                    // finds nothing left.
                    let stopping = stop2.load(Ordering::Relaxed);
                    if stopping && stop_seen.is_none() {
                        stop_seen = Some(Instant::now());
                    }
                    // (Bounded: on a busy host the source is never idle.)
                    if stopping
                        && (idle || stop_seen.is_some_and(|t| t.elapsed() > Duration::from_secs(1)))
                    {
                        if let Ok(Some(a)) = out.log.flush() {
                            anchor("anchor", a.detail());
                        }
                        break;
                    }
                }
                source.close();
            })
            .map_err(ExecLogError::Netlink)?;
        Ok(ExecCollector {
            stop,
            wake,
            thread: Some(thread),
            stats,
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write to our own eventfd.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                one.as_ptr() as *const libc::c_void,
                8,
            )
        };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ExecCollector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Counters of the daemon's exec collector, for /metrics.
pub static STATS: std::sync::OnceLock<Arc<ExecStats>> = std::sync::OnceLock::new();

/// The exec log's lines of /metrics.
pub fn render_metrics(out: &mut String) {
    use std::fmt::Write as _;
    let Some(s) = STATS.get() else { return };
    let _ = writeln!(
        out,
        "# HELP vslice_execlog_bpf 1 when the exec log's source is eBPF, 0 for the proc connector.\n# TYPE vslice_execlog_bpf gauge\nvslice_execlog_bpf {}",
        u8::from(s.bpf.load(Ordering::Relaxed))
    );
    for (name, help, v) in [
        ("vslice_execlog_records_total", "Exec records written.", &s.records),
        (
            "vslice_execlog_overruns_total",
            "Exec events lost: the eBPF ring buffer was full, or the proc connector's socket overran (ENOBUFS; its slices' processes are then re-seeded from their cgroups).",
            &s.overruns,
        ),
        (
            "vslice_execlog_gone_total",
            "Execs recorded without path/argv: the process was gone before /proc was read.",
            &s.gone,
        ),
        (
            "vslice_execlog_dropped_total",
            "Exec records dropped by the writer (disk under the reserve).",
            &s.dropped,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
}

/// Where the daemon pins its exec log program: one directory per slices' parent cgroup, so
/// daemons of different parents (tests) keep apart.
pub fn pin_dir_for(cgroup_parent: &str) -> PathBuf {
    PathBuf::from("/sys/fs/bpf/vslice").join(cgroup_parent.trim_matches('/').replace('/', "_"))
}

/// Start the daemon's exec collector (with the flow log's `flow_log` switch: both are the
/// accountability trail).
pub fn start_for_daemon(d: &Arc<crate::daemon::Daemon>) -> Option<ExecCollector> {
    if !d.config.flow_log {
        return None;
    }
    let mut cfg = ExecConfig::new(d.audit_dir().to_path_buf(), &d.paths.cgroup_parent);
    cfg.retention_days = d.config.audit_retention_days;
    cfg.reserve_bytes = d.config.audit_reserve_bytes;
    cfg.pin_dir = Some(pin_dir_for(&d.paths.cgroup_parent));
    let weak = Arc::downgrade(d);
    let sink: AnchorSink = Box::new(move |event, detail| {
        if let Some(d) = weak.upgrade() {
            d.audit_daemon(event, None, Some(detail));
        }
    });
    match ExecCollector::start(cfg, sink) {
        Ok(c) => {
            let _ = STATS.set(c.stats.clone());
            Some(c)
        }
        Err(e) => {
            tracing::warn!("exec log off: {e}");
            d.audit_daemon("exec_log_off", None, Some(e.to_string()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(what: u32, data: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        let len = NLMSG_HDRLEN + CN_MSG_LEN + 16 + 4 * data.len();
        b.extend_from_slice(&(len as u32).to_ne_bytes());
        b.extend_from_slice(&[0u8; 12]);
        b.extend_from_slice(&[0u8; CN_MSG_LEN]);
        b.extend_from_slice(&what.to_ne_bytes());
        b.extend_from_slice(&[0u8; 12]);
        for d in data {
            b.extend_from_slice(&d.to_ne_bytes());
        }
        b
    }

    #[test]
    fn parses_proc_events() {
        let mut d = msg(PROC_EVENT_FORK, &[10, 10, 11, 11]);
        d.extend(msg(PROC_EVENT_EXEC, &[11, 11]));
        d.extend(msg(PROC_EVENT_EXIT, &[11, 11, 0, 17]));
        assert_eq!(
            parse_datagram(&d),
            vec![
                ProcEvent::Fork {
                    parent_tgid: 10,
                    child_pid: 11,
                    child_tgid: 11
                },
                ProcEvent::Exec { pid: 11, tgid: 11 },
                ProcEvent::Exit { pid: 11, tgid: 11 },
            ]
        );
    }
}
