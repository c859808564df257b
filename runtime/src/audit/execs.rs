//! The exec log: every execve in every slice (time, slice, host pid, pid and uid inside the
//! slice, path, bounded argv, parent), collected on the host.
//!
//! Mechanism: the kernel's process events connector (netlink `NETLINK_CONNECTOR`, group
//! `CN_IDX_PROC`): FORK, EXEC and EXIT events for every process on the host. eBPF on the
//! `sched_process_exec` tracepoint keyed by cgroup id is the better mechanism (it sees the
//! path and argv in the exec itself); it needs aya or libbpf-rs plus a BPF toolchain at build
//! time, which this tree does not have yet. This fallback:
//!
//! * attributes by **process ancestry and cgroup**, never by anything the slice controls: the
//!   slices' processes are seeded from their cgroups' `cgroup.procs` at start, every FORK of a
//!   tracked process tracks the child, and a FORK or EXEC of an untracked process is resolved
//!   from `/proc/<pid>/cgroup` (a process moved into a slice by `exec`/`enter`; one small read
//!   per untracked fork on the host is the price). So every exec of a slice is **counted**
//!   and attributed, even when the process is gone before it is read;
//! * reads path (`/proc/<pid>/exe`), argv (`cmdline`, bounded), uid and the pid inside the
//!   slice (`status`) after the event. A process that exits (or execs again) before the read
//!   is recorded with `gone: true` and without path/argv — that is what the fallback misses
//!   for short-lived processes (an eBPF program would not);
//! * loses events when its socket buffer overflows (ENOBUFS): counted, a `loss` record is
//!   written, and the tracked set is re-seeded from the cgroups.
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
        }
    }
}

#[derive(Debug, Default)]
pub struct ExecStats {
    pub records: AtomicU64,
    /// Receive-buffer overruns (ENOBUFS): events lost.
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
    // The uid inside the slice: through the process's uid map (inside outside count).
    let ns_uid = uid.and_then(|u| {
        let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
        map.lines().find_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let (inside, outside, count) = (*v.first()?, *v.get(1)?, *v.get(2)?);
            let u = u as u64;
            (u >= outside && u < outside + count).then_some(inside + (u - outside))
        })
    });
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

impl ExecCollector {
    pub fn start(cfg: ExecConfig, mut anchor: AnchorSink) -> Result<ExecCollector, ExecLogError> {
        let fd = open_connector().map_err(ExecLogError::Netlink)?;
        let (mut log, _) = KindLog::open(
            &cfg.audit_dir,
            "execs",
            cfg.segment_bytes,
            cfg.reserve_bytes,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ExecStats::default());
        let wake = Arc::new(eventfd().map_err(ExecLogError::Netlink)?);
        let (stop2, stats2, wake2) = (stop.clone(), stats.clone(), wake.clone());
        // Named: the idle test (tests/daemon_idle.rs) tells this host-event-driven thread
        // from the daemon's own.
        let thread = std::thread::Builder::new()
            .name("vsl-execlog".into())
            .spawn(move || {
                let mut tracked = seed(&cfg.cgroup_parent);
                let mut buf = vec![0u8; 64 * 1024];
                let mut last_flush = Instant::now();
                let mut last_prune: Option<Instant> = None;
                let mut stop_seen: Option<Instant> = None;
                let write = |log: &mut KindLog, v: Value| match log.append(time::now_millis(), v) {
                    Ok(Some(_)) => {
                        stats2.records.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        stats2.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                };
                loop {
                    // Sleep until an event, stop(), or the next flush of what was written (none
                    // pending: until the hourly retention pass). Idle costs no wake-ups.
                    if !stop2.load(Ordering::Relaxed) {
                        let due = if log.pending() {
                            cfg.flush_interval.saturating_sub(last_flush.elapsed())
                        } else {
                            PRUNE_EVERY
                                .saturating_sub(last_prune.map_or(PRUNE_EVERY, |t| t.elapsed()))
                        };
                        wait_readable(fd.as_raw_fd(), wake2.as_raw_fd(), due);
                    }
                    // SAFETY: recv into an owned buffer of the given length.
                    let n = unsafe {
                        libc::recv(
                            fd.as_raw_fd(),
                            buf.as_mut_ptr() as *mut libc::c_void,
                            buf.len(),
                            libc::MSG_DONTWAIT,
                        )
                    };
                    let mut idle = false;
                    if n < 0 {
                        let e = std::io::Error::last_os_error();
                        idle = matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR));
                        if e.raw_os_error() == Some(libc::ENOBUFS) {
                            stats2.overruns.fetch_add(1, Ordering::Relaxed);
                            write(&mut log, json!({"event": "loss", "reason": "ENOBUFS"}));
                            // Forks may have been missed: re-seed from the cgroups.
                            tracked.extend(seed(&cfg.cgroup_parent));
                        }
                    } else {
                        for ev in parse_datagram(&buf[..n as usize]) {
                            match ev {
                                ProcEvent::Fork {
                                    parent_tgid,
                                    child_pid,
                                    child_tgid,
                                } => {
                                    if child_pid == child_tgid {
                                        // An untracked parent may have been moved into a slice's
                                        // cgroup without exec'ing since (no event tells): ask
                                        // /proc (the parent, else the child, which inherited it).
                                        let s = match tracked.get(&parent_tgid) {
                                            Some(s) => Some(s.clone()),
                                            None => slice_of(parent_tgid, &cfg.cgroup_parent)
                                                .or_else(|| {
                                                    slice_of(child_tgid, &cfg.cgroup_parent)
                                                }),
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
                                        stats2.gone.fetch_add(1, Ordering::Relaxed);
                                    }
                                    v["event"] = "exec".into();
                                    v["slice"] = slice.into();
                                    v["pid"] = tgid.into();
                                    write(&mut log, v);
                                }
                                ProcEvent::Exit { pid, tgid } => {
                                    if pid == tgid {
                                        tracked.remove(&tgid);
                                    }
                                }
                            }
                        }
                    }
                    if last_flush.elapsed() >= cfg.flush_interval {
                        if let Ok(Some(Anchor { kind, seq, hash })) = log.flush() {
                            anchor("anchor", Anchor { kind, seq, hash }.detail());
                        }
                        last_flush = Instant::now();
                    }
                    if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                        last_prune = Some(Instant::now());
                        if let Ok(Some(d)) = log.prune(cfg.retention_days, time::now_millis()) {
                            anchor("retention", d);
                        }
                    }
                    // On stop, what is already queued in the socket is still recorded: stop once
                    // a receive times out (nothing left).
                    let stopping = stop2.load(Ordering::Relaxed);
                    if stopping && stop_seen.is_none() {
                        stop_seen = Some(Instant::now());
                    }
                    // (Bounded: on a busy host the socket is never idle.)
                    if stopping
                        && (idle || stop_seen.is_some_and(|t| t.elapsed() > Duration::from_secs(1)))
                    {
                        if let Ok(Some(a)) = log.flush() {
                            anchor("anchor", a.detail());
                        }
                        break;
                    }
                }
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
    for (name, help, v) in [
        ("vslice_execlog_records_total", "Exec records written.", &s.records),
        (
            "vslice_execlog_overruns_total",
            "Times process events were lost (ENOBUFS); the slices' processes are re-seeded from their cgroups.",
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

/// Start the daemon's exec collector (with the flow log's `flow_log` switch: both are the
/// accountability trail).
pub fn start_for_daemon(d: &Arc<crate::daemon::Daemon>) -> Option<ExecCollector> {
    if !d.config.flow_log {
        return None;
    }
    let mut cfg = ExecConfig::new(d.audit_dir().to_path_buf(), &d.paths.cgroup_parent);
    cfg.retention_days = d.config.audit_retention_days;
    cfg.reserve_bytes = d.config.audit_reserve_bytes;
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
