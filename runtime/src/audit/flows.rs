//! The flow log: every connection a slice makes or accepts, collected on the host from
//! conntrack (a slice's root controls its own network namespace, so nothing inside it counts).
//!
//! Attribution: the bridge-family rules mark every frame from a slice's port with the slice's
//! flow mark (after the anti-spoofing rules, so a spoofed frame never gets this far), the
//! inet table copies the mark to the conntrack entry of a new connection, and port forwards
//! set it on the connections they DNAT into a slice (net/nft.rs). The collector maps the mark
//! back to the slice through the node's net state (mark → id → slice, veth, address); the
//! source address is never used to attribute.
//!
//! Events: NEW (a `new` record: original and reply tuple, so NAT and port forwards resolve to
//! the public address and port), DESTROY (`end`: bytes and packets both ways, duration); every
//! `dump_interval` the table is listed and each slice flow written as `seen` (so a week-long
//! connection is on record before it ends). Accounting and timestamps need the host netns's
//! `net.netfilter.nf_conntrack_acct` / `nf_conntrack_timestamp`; the collector turns them on
//! if they are off and turns them back off when it stops (only what it changed).
//!
//! Loss: the event socket gets a large buffer (SO_RCVBUFFORCE); when the kernel still drops
//! events, the socket's next read fails with ENOBUFS, the collector counts it, writes a `loss`
//! record and lists the table again (a resync: every live flow as `seen`). The counter is in
//! /metrics and a `who` query over a window with a `loss` record says it may be incomplete.
//!
//! The collector runs inside the daemon (threads): flows that start and end while the daemon
//! is down are not recorded; those still open when it starts again are (the resync dump at
//! start). The gap is stated, never silent: a collector starting on an existing log first
//! writes a `loss` record with `down_since` (its last record's time), and `who` over a window
//! meeting [down_since, restart] answers `lossy`.
//!
//! Process: after each NEW event the process holding the slice's end of the connection is
//! looked up in the slice's own network namespace (audit/owner.rs), and the `new` record is
//! written once that lookup is done (within a batch of at most ~20 ms, ~120 ms when a process
//! started since the last /proc scan), with `process` when it was found; `who` shows it. (Logs
//! written before this have a separate `proc` record per flow; `who` reads both.)
//!
//! Events and listings come straight from ctnetlink (audit/ctnetlink.rs), in the daemon: no
//! `conntrack` process to fork, format text for and parse (that subprocess was the first
//! collector, and most of its cost per connection), and none a slice could see or kill.
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ctnetlink::{self, CtEntry, CtEvent, Tuple};
use super::records::{Anchor, KindLog};
use super::Members;
use super::{time, AuditError};
use crate::proto::accounting::{FlowEnd, WhoAnswer, WhoFlow};

/// A tuple as the records show it. Fields in key order: serialised as they are, the text is
/// canonical (audit::Members).
#[derive(serde::Serialize)]
struct TupleJson<'a> {
    dport: Option<u16>,
    dst: &'a str,
    sport: Option<u16>,
    src: &'a str,
}

impl<'a> From<&'a Tuple> for TupleJson<'a> {
    fn from(t: &'a Tuple) -> Self {
        TupleJson {
            dport: t.dport,
            dst: &t.dst,
            sport: t.sport,
            src: &t.src,
        }
    }
}

/// What the collector knows about a slice with a given mark.
#[derive(Debug, Clone)]
struct SliceInfo {
    name: String,
    veth: String,
    /// Its address as conntrack tuples show it.
    ip_text: String,
    owners: Vec<String>,
}

/// Mark → slice, reloaded from the node's net state when a mark is unknown or the cache is
/// older than a second.
struct Attribution {
    net_state_dir: PathBuf,
    slices_dir: Option<PathBuf>,
    prefix: u32,
    map: HashMap<u32, Arc<SliceInfo>>,
    loaded: Option<Instant>,
}

impl Attribution {
    fn reload(&mut self) {
        let Ok(state) = crate::net::NetState::load_shared(&self.net_state_dir) else {
            return;
        };
        let mut map = HashMap::new();
        for (name, e) in &state.slices {
            let owners = self
                .slices_dir
                .as_ref()
                .and_then(|d| std::fs::read(d.join(name).join("spec.json")).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("owners").cloned())
                .and_then(|o| serde_json::from_value::<Vec<String>>(o).ok())
                .unwrap_or_default();
            map.insert(
                self.prefix | (e.id & 0xfff),
                Arc::new(SliceInfo {
                    name: name.clone(),
                    veth: e.veth.clone(),
                    ip_text: e.ip.to_string(),
                    owners,
                }),
            );
        }
        self.map = map;
        self.loaded = Some(Instant::now());
    }

    fn lookup(&mut self, mark: u32) -> Option<Arc<SliceInfo>> {
        if mark & crate::net::FLOW_MARK_MASK != self.prefix {
            return None;
        }
        let stale = self
            .loaded
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
        if stale || !self.map.contains_key(&mark) {
            self.reload();
        }
        self.map.get(&mark).cloned()
    }
}

/// How the collector is set up.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// The control log's directory (`<state root>/audit`); flows go to `<it>/flows/`.
    pub audit_dir: PathBuf,
    /// The node's net state dir (net.json: slice → id, veth, address).
    pub net_state_dir: PathBuf,
    /// `<state root>/slices` (for the owners), if there is one.
    pub slices_dir: Option<PathBuf>,
    /// The node's nftables table (the flow mark prefix derives from it).
    pub nft_table: String,
    /// How often live flows are listed (`seen` records).
    pub dump_interval: Duration,
    /// How often records are fsynced and anchored in the control log.
    pub flush_interval: Duration,
    /// Netlink receive buffer of the event socket, bytes.
    pub rcvbuf: usize,
    pub segment_bytes: u64,
    pub reserve_bytes: u64,
    pub retention_days: u32,
}

impl FlowConfig {
    pub fn new(audit_dir: PathBuf, net_state_dir: PathBuf, nft_table: &str) -> FlowConfig {
        FlowConfig {
            audit_dir,
            net_state_dir,
            slices_dir: None,
            nft_table: nft_table.to_string(),
            dump_interval: Duration::from_secs(300),
            flush_interval: Duration::from_secs(1),
            rcvbuf: 64 << 20,
            segment_bytes: super::records::DEFAULT_KIND_SEGMENT_BYTES,
            reserve_bytes: super::records::DEFAULT_RESERVE_BYTES,
            retention_days: 90,
        }
    }
}

/// Counters shared with /metrics.
#[derive(Debug, Default)]
pub struct FlowStats {
    /// Records written.
    pub records: AtomicU64,
    /// Times the kernel dropped events (ENOBUFS), each followed by a resync.
    pub overruns: AtomicU64,
    /// Records dropped by the writer (full disk).
    pub dropped: AtomicU64,
    /// New flows whose process was found (`proc` records).
    pub procs_found: AtomicU64,
    /// New flows whose process was not looked up (lookup queue full).
    pub procs_skipped: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("flow log: {0}")]
    Audit(#[from] AuditError),
    #[error("flow log: cannot subscribe to conntrack events through ctnetlink ({0}); it needs CAP_NET_ADMIN in the host's network namespace and the nf_conntrack_netlink module")]
    Netlink(std::io::Error),
    #[error("flow log: cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// Sink for anchors (the daemon appends them to the control log).
pub type AnchorSink = Box<dyn FnMut(&str, String) + Send>;

enum Msg {
    Flow(Box<CtEntry>),
    /// The events read in one go.
    Flows(Vec<CtEntry>),
    Loss(String),
    /// stop() wakes the writer, which sleeps without a timeout when nothing is pending.
    Wake,
    /// A new flow's record after its process lookup (with `process` when found), with the
    /// flow's time.
    Looked(i64, Members),
    /// The lookup thread has finished (the collector is stopping).
    OwnersDone,
}

/// A new flow waiting for its process lookup: the socket, the flow's record and time.
type Pending = (super::owner::SocketKey, Members, i64);

/// A running collector; stops (and restores the sysctls it changed) on drop.
pub struct FlowCollector {
    stop: Arc<AtomicBool>,
    /// Dropped by stop(): ends the dump thread's wait at once.
    dump_stop: Option<mpsc::Sender<()>>,
    /// Wakes the writer on stop().
    wake: mpsc::Sender<Msg>,
    /// Dropped by stop(): the event thread's poll sees the other end close.
    events_stop: Option<UnixStream>,
    threads: Vec<JoinHandle<()>>,
    pub stats: Arc<FlowStats>,
    /// The sysctls this collector turned on; dropping it turns them off again.
    restore: Option<Sysctls>,
}

/// Sysctls set by the collector, with the values they had: restored on drop, so a start that
/// fails after setting them (the log cannot be opened, a thread cannot start) leaves the host
/// as it found it.
struct Sysctls(Vec<(&'static str, String)>);

impl Drop for Sysctls {
    fn drop(&mut self) {
        for (path, old) in self.0.drain(..) {
            let _ = std::fs::write(path, old);
        }
    }
}

const SYSCTLS: [&str; 2] = [
    "/proc/sys/net/netfilter/nf_conntrack_acct",
    "/proc/sys/net/netfilter/nf_conntrack_timestamp",
];

impl FlowCollector {
    /// Start collecting. `anchor` receives (`anchor`|`retention`, detail) for the control log.
    pub fn start(cfg: FlowConfig, anchor: AnchorSink) -> Result<FlowCollector, FlowError> {
        // Subscribing first: nothing that happens after this point is missed. The listing
        // proves the kernel answers (and loads nf_conntrack_netlink and nf_conntrack, whose
        // sysctls are set next) before the collector says it runs.
        let events = ctnetlink::Events::subscribe(cfg.rcvbuf).map_err(FlowError::Netlink)?;
        ctnetlink::list(|_| {}).map_err(FlowError::Netlink)?;
        let mut restore = Sysctls(Vec::new());
        for path in SYSCTLS {
            if let Ok(old) = std::fs::read_to_string(path) {
                if old.trim() == "0" && std::fs::write(path, "1").is_ok() {
                    restore.0.push((path, old.trim().to_string()));
                }
            }
        }
        let (mut log, _notes) = KindLog::open(
            &cfg.audit_dir,
            "flows",
            cfg.segment_bytes,
            cfg.reserve_bytes,
        )?;
        // The collector runs in the daemon: flows that began and ended while it was down are
        // not in conntrack any more and cannot be recovered. Say so (a `loss` record spanning
        // the gap, so `who` over it answers `lossy`) rather than leave a silent hole; flows
        // still open are put on record by the listing at start.
        if let Some(since) = log.last_time_ms {
            log.append(
                time::now_millis(),
                json!({
                    "event": "loss",
                    "reason": "flow collector was not running: flows that began and ended in between are not on record",
                    "down_since": time::format_millis(since),
                }),
            )?;
            // On file before start() returns: a query right after must see the gap.
            log.write_out()?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FlowStats::default());
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut threads = Vec::new();

        // The event stream. It blocks in poll() on the socket and on a stop socket (an idle
        // node wakes nothing); stop() closes the other end of the latter.
        let (events_stop, stop_rx) = UnixStream::pair().map_err(FlowError::Thread)?;
        {
            let tx = tx.clone();
            let named = std::thread::Builder::new().name("vsl-flowevents".into());
            threads.push(
                named
                    .spawn(move || read_events(events, stop_rx, tx))
                    .map_err(FlowError::Thread)?,
            );
        }
        // Periodic listing of live flows (and the resync at start).
        let (dump_stop, dump_stop_rx) = mpsc::channel::<()>();
        {
            let tx = tx.clone();
            let every = cfg.dump_interval;
            let named = std::thread::Builder::new().name("vsl-flowdump".into());
            threads.push(
                named
                    .spawn(move || loop {
                        dump(&tx);
                        // Sleeps the whole interval (no polling of the stop flag): stop() drops the
                        // sender, which ends the wait.
                        match dump_stop_rx.recv_timeout(every) {
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                            _ => return,
                        }
                    })
                    .map_err(FlowError::Thread)?,
            );
        }
        // The process lookups (audit/owner.rs), in batches, off the writer's path.
        let (ptx, prx) = mpsc::sync_channel::<Pending>(super::owner::MAX_PENDING);
        {
            let tx = tx.clone();
            let stats = stats.clone();
            let named = std::thread::Builder::new().name("vsl-flowowners".into());
            threads.push(
                named
                    .spawn(move || owners(prx, tx, stats))
                    .map_err(FlowError::Thread)?,
            );
        }
        // The writer.
        {
            let stop = stop.clone();
            let stats = stats.clone();
            let tx = tx.clone();
            let named = std::thread::Builder::new().name("vsl-flowwriter".into());
            threads.push(
                named
                    .spawn(move || writer(cfg, log, rx, tx, ptx, stop, stats, anchor))
                    .map_err(FlowError::Thread)?,
            );
        }
        Ok(FlowCollector {
            stop,
            dump_stop: Some(dump_stop),
            wake: tx,
            events_stop: Some(events_stop),
            threads,
            stats,
            restore: Some(restore),
        })
    }

    /// Stop: end conntrack, write and anchor what is pending, restore the sysctls.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.dump_stop.take();
        let _ = self.wake.send(Msg::Wake);
        self.events_stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.restore.take();
    }
}

impl Drop for FlowCollector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Forward conntrack events to the writer until `stop` is closed. A read that fails with
/// ENOBUFS means the kernel dropped events (the buffer was full): a `Loss`, after which the
/// writer lists the table again. Any other failure re-subscribes, also as a `Loss`.
fn read_events(mut events: ctnetlink::Events, stop: UnixStream, tx: mpsc::Sender<Msg>) {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: events.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds, owned by this frame, for the length given.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(
                "flow log: poll: {}; events stop",
                std::io::Error::last_os_error()
            );
            let _ = tx.send(Msg::Loss("the event reader failed".into()));
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents == 0 {
            continue;
        }
        // Everything queued, one datagram per event, then poll again: one message to the
        // writer per read-out rather than per event.
        let mut batch = Vec::new();
        let read = loop {
            match events.recv(batch.is_empty()) {
                Ok(Some(entries)) if batch.len() < 4096 => {
                    batch.extend(entries.into_iter().map(|e| *e))
                }
                Ok(Some(entries)) => {
                    batch.extend(entries.into_iter().map(|e| *e));
                    break Ok(());
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if !batch.is_empty() {
            if tx.send(Msg::Flows(batch)).is_err() {
                return;
            }
            // Let the next events gather (the socket holds seconds of them) rather than
            // poll and read per event under load; idle, the poll still waits without a timer.
            std::thread::sleep(BATCH_PAUSE);
        }
        match read {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                if tx
                    .send(Msg::Loss(
                        "the kernel dropped conntrack events (ENOBUFS: the socket buffer was full)"
                            .into(),
                    ))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Msg::Loss(format!(
                    "reading conntrack events failed ({e}); subscribed again"
                )));
                std::thread::sleep(Duration::from_millis(200));
                match ctnetlink::Events::subscribe(events.rcvbuf()) {
                    Ok(again) => events = again,
                    Err(e) => {
                        tracing::error!("flow log: cannot subscribe again: {e}");
                        return;
                    }
                }
            }
        }
    }
}

/// List the table again, off the writer's thread.
fn resync(tx: &mpsc::Sender<Msg>) {
    let tx = tx.clone();
    let named = std::thread::Builder::new().name("vsl-flowresync".into());
    if let Err(e) = named.spawn(move || dump(&tx)) {
        tracing::warn!("flow log: cannot start the resync listing: {e}");
    }
}

/// List the table (`seen` records).
fn dump(tx: &mpsc::Sender<Msg>) {
    let mut closed = false;
    let listed = ctnetlink::list(|e| {
        if !closed && tx.send(Msg::Flow(e)).is_err() {
            closed = true;
        }
    });
    // Not a `Loss`: that would ask for another listing, which would fail the same way.
    if let Err(e) = listed {
        tracing::warn!("flow log: listing conntrack failed: {e}");
    }
}

/// The record of a slice's conntrack entry, with its time; `None` for entries not marked as
/// a slice's.
fn attributed(attr: &mut Attribution, ct: &CtEntry) -> Option<(i64, Members, Arc<SliceInfo>)> {
    let s = attr.lookup(ct.mark)?;
    let event = match ct.event {
        CtEvent::New => "new",
        CtEvent::Destroy => "end",
        CtEvent::Listed => "seen",
    };
    let t = ct.time_ms().unwrap_or_else(time::now_millis);
    let rec = flow_record(ct, &s, event);
    Some((t, rec, s))
}

/// Is the flow the slice's own connection (`out`), rather than one into it (`in`)?
fn outbound(ct: &CtEntry, s: &SliceInfo) -> bool {
    ct.orig.src == s.ip_text
}

/// The record of a conntrack entry attributed to `s`.
fn flow_record(ct: &CtEntry, s: &SliceInfo, event: &'static str) -> Members {
    let mut m = Members::new();
    m.put_str("event", event);
    m.put_str("slice", &s.name);
    m.put("owners", &s.owners);
    m.put_str("veth", &s.veth);
    m.put("mark", &ct.mark);
    m.put("ct_id", &ct.id);
    m.put_str("proto", &ct.proto);
    m.put_str("dir", if outbound(ct, s) { "out" } else { "in" });
    m.put("orig", &TupleJson::from(&ct.orig));
    m.put("reply", &TupleJson::from(&ct.reply));
    if ct.orig.bytes.is_some() {
        m.put("packets_orig", &ct.orig.packets);
        m.put("bytes_orig", &ct.orig.bytes);
        m.put("packets_reply", &ct.reply.packets);
        m.put("bytes_reply", &ct.reply.bytes);
    }
    if let Some(d) = ct.duration_secs() {
        m.put("duration_s", &d);
    }
    m
}

/// How long the writer lets events gather after a batch (a record reaches the disk at most
/// this much later).
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// How long a process's description is reused for its further connections.
const DESCRIBED_FOR: Duration = Duration::from_secs(1);

/// How often old segments are pruned (retention).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The socket of a new flow as the slice sees it (outbound: the original tuple; inbound
/// through a port forward: the reply tuple, after the DNAT).
fn socket_key(ct: &CtEntry, s: &SliceInfo) -> Option<super::owner::SocketKey> {
    if !matches!(ct.proto.as_str(), "tcp" | "udp") {
        return None;
    }
    let t = if outbound(ct, s) { &ct.orig } else { &ct.reply };
    Some(super::owner::SocketKey {
        proto: ct.proto.clone(),
        local: (t.src.parse().ok()?, t.sport?),
        remote: (t.dst.parse().ok()?, t.dport?),
        veth: s.veth.clone(),
    })
}

/// The lookup thread: waits a moment after the first new flow (an inbound connection gets
/// accepted), takes every flow queued by then, resolves them in one /proc pass and hands the
/// `proc` records to the writer. At most one pass per 20 ms, so a flood costs a bounded
/// share of a core and the rest is skipped (counted), never queued without bound.
fn owners(rx: mpsc::Receiver<Pending>, tx: mpsc::Sender<Msg>, stats: Arc<FlowStats>) {
    let mut resolver = super::owner::Resolver::new();
    // A process that makes many connections (a server, a crawler) is described once a second,
    // not once per connection: /proc reads were most of this thread's CPU. Its argv can be
    // up to that old (an exec in between shows in the exec log); a pid cannot be reused
    // within a second (that takes pid_max forks).
    let mut described: HashMap<u32, (Instant, Value)> = HashMap::new();
    // Blocks without a timeout (an idle node wakes nothing): the writer holds the only
    // sender and drops it when the collector stops, which ends this loop once the queue is
    // empty; the writer waits for the word that it has.
    loop {
        let Ok(first) = rx.recv() else {
            let _ = tx.send(Msg::OwnersDone);
            return;
        };
        std::thread::sleep(Duration::from_millis(20));
        let mut batch = vec![first];
        while let Ok(p) = rx.try_recv() {
            batch.push(p);
        }
        let keys: Vec<_> = batch.iter().map(|p| p.0.clone()).collect();
        let pids = resolver.resolve(&keys);
        described.retain(|_, (at, _)| at.elapsed() < DESCRIBED_FOR);
        for ((_, mut rec, t), pid) in batch.into_iter().zip(pids) {
            let Some(pid) = pid else {
                if tx.send(Msg::Looked(t, rec)).is_err() {
                    return;
                }
                continue;
            };
            let (_, p) = described.entry(pid).or_insert_with(|| {
                let mut p = super::execs::describe(pid);
                p["pid"] = pid.into();
                p["comm"] = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim_end().to_string())
                    .unwrap_or_default()
                    .into();
                (Instant::now(), p)
            });
            rec.put_value("process", p);
            stats.procs_found.fetch_add(1, Ordering::Relaxed);
            if tx.send(Msg::Looked(t, rec)).is_err() {
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn writer(
    cfg: FlowConfig,
    mut log: KindLog,
    rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    ptx: mpsc::SyncSender<Pending>,
    stop: Arc<AtomicBool>,
    stats: Arc<FlowStats>,
    mut anchor: AnchorSink,
) {
    let mut attr = Attribution {
        net_state_dir: cfg.net_state_dir.clone(),
        slices_dir: cfg.slices_dir.clone(),
        prefix: crate::net::flow_mark_prefix(&cfg.nft_table),
        map: HashMap::new(),
        loaded: None,
    };
    let mut last_flush = Instant::now();
    let mut last_prune: Option<Instant> = None;
    let mut resync_at: Option<Instant> = None;
    let mut batch_open = false;
    let mut ptx = Some(ptx);
    // Flows already recorded as seen in this dump round are not repeated within it.
    let write = |log: &mut KindLog, t: i64, v: Members| match log.append_members(t, v) {
        Ok(Some(_)) => {
            stats.records.fetch_add(1, Ordering::Relaxed);
        }
        Ok(None) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("flow log: {e}");
        }
    };
    // A conntrack entry: a new flow goes to its process lookup first (which writes its `new`
    // record with the process, one record where there were two); without a lookup to wait
    // for (not TCP/UDP, the queue full, stopping) and for the other events, written now.
    let take = |log: &mut KindLog,
                attr: &mut Attribution,
                ptx: Option<&mpsc::SyncSender<Pending>>,
                ct: CtEntry| {
        let Some((t, rec, s)) = attributed(attr, &ct) else {
            return;
        };
        if ct.event == CtEvent::New {
            if let (Some(k), Some(ptx)) = (socket_key(&ct, &s), ptx) {
                match ptx.try_send((k, rec, t)) {
                    Ok(()) => return,
                    Err(
                        mpsc::TrySendError::Full((_, rec, t))
                        | mpsc::TrySendError::Disconnected((_, rec, t)),
                    ) => {
                        stats.procs_skipped.fetch_add(1, Ordering::Relaxed);
                        write(log, t, rec);
                        return;
                    }
                }
            }
        }
        write(log, t, rec);
    };
    let flush = |log: &mut KindLog, anchor: &mut AnchorSink| match log.flush() {
        Ok(Some(Anchor { kind, seq, hash })) => {
            anchor("anchor", Anchor { kind, seq, hash }.detail());
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("flow log: {e}"),
    };
    loop {
        // Sleep until a message, or until the next thing due: a flush of what was written,
        // a resync, the hourly retention pass. Nothing pending: no timer at all but that.
        let now = Instant::now();
        let mut due = last_prune.map_or(now, |t| t + PRUNE_EVERY);
        if log.pending() {
            due = due.min(last_flush + cfg.flush_interval);
        }
        if let Some(r) = resync_at {
            due = due.min(r);
        }
        // Lines are written out in batches: whatever the queue held, once it runs empty.
        // After a batch the writer pauses a moment before it waits again, so that under load
        // it wakes once per pause for many events, not once per event (a wake-up cost about
        // as much as writing the record); an idle node still wakes nothing.
        let next = match rx.try_recv() {
            Ok(m) => Ok(m),
            Err(mpsc::TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(mpsc::TryRecvError::Empty) => {
                if let Err(e) = log.write_out() {
                    tracing::warn!("flow log: {e}");
                }
                if std::mem::take(&mut batch_open) && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(BATCH_PAUSE);
                    continue;
                }
                rx.recv_timeout(due.saturating_duration_since(now))
            }
        };
        batch_open = true;
        match next {
            Ok(Msg::Wake) => {}
            Ok(Msg::Flow(ct)) => take(&mut log, &mut attr, ptx.as_ref(), *ct),
            Ok(Msg::Flows(cts)) => {
                for ct in cts {
                    take(&mut log, &mut attr, ptx.as_ref(), ct);
                }
            }
            Ok(Msg::Looked(t, rec)) => write(&mut log, t, rec),
            Ok(Msg::OwnersDone) => {}
            Ok(Msg::Loss(why)) => {
                stats.overruns.fetch_add(1, Ordering::Relaxed);
                write(
                    &mut log,
                    time::now_millis(),
                    Members::from_value(json!({"event": "loss", "reason": why})),
                );
                // Resync: every live flow on record again, once the burst that overflowed the
                // socket has passed (each further loss pushes it back a little; entries live
                // 30 s or more, so waiting loses nothing) — and right away, too.
                if resync_at.is_none() {
                    resync(&tx);
                }
                resync_at = Some(Instant::now() + Duration::from_millis(500));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if resync_at.is_some_and(|t| Instant::now() >= t) {
            resync_at = None;
            resync(&tx);
        }
        if last_flush.elapsed() >= cfg.flush_interval {
            flush(&mut log, &mut anchor);
            last_flush = Instant::now();
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            match log.prune(cfg.retention_days, time::now_millis()) {
                Ok(Some(detail)) => anchor("retention", detail),
                Ok(None) => {}
                Err(e) => tracing::warn!("flow log retention: {e}"),
            }
        }
        if stop.load(Ordering::Relaxed) {
            // Record what is queued, the new flows still waiting for their lookup included:
            // closing the lookup queue makes that thread finish its batch and say so.
            drop(ptx.take());
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(Msg::Flow(ct)) => take(&mut log, &mut attr, None, *ct),
                    Ok(Msg::Flows(cts)) => {
                        for ct in cts {
                            take(&mut log, &mut attr, None, ct);
                        }
                    }
                    Ok(Msg::Looked(t, rec)) => write(&mut log, t, rec),
                    Ok(Msg::Loss(_) | Msg::Wake) => {}
                    Ok(Msg::OwnersDone) | Err(_) => break,
                }
            }
            flush(&mut log, &mut anchor);
            break;
        }
    }
}

/// A complaint: who talked to `remote` (and `port`) around `at_ms`?
#[derive(Debug, Clone)]
pub struct WhoQuery {
    pub remote: String,
    pub port: Option<u16>,
    pub proto: Option<String>,
    pub at_ms: i64,
    pub window_ms: i64,
    /// How far before the window a long-lived flow's last `seen` may be (the dump interval).
    pub slack_ms: i64,
}

/// Does a flow record concern `q.remote`/`q.port`? Outbound flows: the remote is the original
/// destination (the complainant's address and the port they were contacted on). Inbound
/// flows through a port forward: the remote is the original source and the port is either
/// the public (forwarded) port or the remote's own.
fn concerns(v: &Value, q: &WhoQuery) -> bool {
    let g = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
    let port = |p: &str| v.pointer(p).and_then(Value::as_u64).map(|x| x as u16);
    if let Some(proto) = &q.proto {
        if g("/proto") != proto {
            return false;
        }
    }
    if g("/dir") == "out" {
        g("/orig/dst") == q.remote && q.port.is_none_or(|p| port("/orig/dport") == Some(p))
    } else {
        g("/orig/src") == q.remote
            && q.port
                .is_none_or(|p| port("/orig/dport") == Some(p) || port("/orig/sport") == Some(p))
    }
}

/// Answer a complaint from the flow log.
pub fn who(audit_dir: &Path, q: &WhoQuery) -> Result<WhoAnswer, AuditError> {
    let from = q.at_ms - q.window_ms;
    let to = q.at_ms + q.window_ms;
    let mut lost = 0u64;
    let needle = format!("\"{}\"", q.remote);
    let recs = super::records::query_window(
        audit_dir,
        "flows",
        from - q.slack_ms,
        to + q.slack_ms,
        |line| {
            line.contains(&needle)
                || line.contains("\"event\":\"loss\"")
                || line.contains("lost_before")
        },
        |v| {
            if v.get("event").and_then(Value::as_str) == Some("loss") {
                return true;
            }
            concerns(v, q)
        },
    )?;
    // Group by (slice, conntrack id, original tuple).
    let mut flows: BTreeMap<(String, u64, String), WhoFlow> = BTreeMap::new();
    for v in recs {
        let t = v
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| time::parse(t).ok())
            .unwrap_or(0);
        let event = v.get("event").and_then(Value::as_str).unwrap_or("");
        // On the `new` record since the lookup comes before it; on a `proc` record of its
        // own in logs written before that.
        let process = v
            .get("process")
            .cloned()
            .and_then(|p| serde_json::from_value(p).ok());
        let gap_from = v
            .get("down_since")
            .and_then(Value::as_str)
            .and_then(|d| time::parse(d).ok())
            .unwrap_or(t);
        if event == "loss" || v.get("lost_before").is_some() {
            if t >= from && gap_from <= to {
                lost += v.get("lost_before").and_then(Value::as_u64).unwrap_or(1);
            }
            if event == "loss" {
                continue;
            }
        }
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let n = |p: &str| v.pointer(p).and_then(Value::as_u64);
        let key = (
            s("/slice"),
            n("/ct_id").unwrap_or(0),
            format!("{}:{}", s("/orig/src"), n("/orig/sport").unwrap_or(0)),
        );
        let f = flows.entry(key).or_insert_with(|| WhoFlow {
            slice: s("/slice"),
            owners: v
                .get("owners")
                .and_then(|o| serde_json::from_value(o.clone()).ok())
                .unwrap_or_default(),
            veth: s("/veth"),
            proto: s("/proto"),
            direction: s("/dir"),
            slice_addr: String::new(),
            slice_port: None,
            public_addr: String::new(),
            public_port: None,
            remote_addr: String::new(),
            remote_port: None,
            first_seen: time::format_millis(t),
            last_seen: time::format_millis(t),
            end: None,
            bytes_from_slice: None,
            bytes_to_slice: None,
            process: None,
        });
        if process.is_some() {
            // Only the process is taken here (an old log's `proc` record has nothing else new).
            f.process = process;
        }
        let out = f.direction == "out";
        let port = |p: &str| n(p).map(|x| x as u16);
        if out {
            f.slice_addr = s("/orig/src");
            f.slice_port = port("/orig/sport");
            f.public_addr = s("/reply/dst");
            f.public_port = port("/reply/dport");
            f.remote_addr = s("/orig/dst");
            f.remote_port = port("/orig/dport");
        } else {
            f.slice_addr = s("/reply/src");
            f.slice_port = port("/reply/sport");
            f.public_addr = s("/orig/dst");
            f.public_port = port("/orig/dport");
            f.remote_addr = s("/orig/src");
            f.remote_port = port("/orig/sport");
        }
        let ts = time::format_millis(t);
        if ts < f.first_seen {
            f.first_seen = ts.clone();
        }
        if ts > f.last_seen {
            f.last_seen = ts.clone();
        }
        if let Some(b) = n("/bytes_orig") {
            let (from_slice, to_slice) = if out {
                (b, n("/bytes_reply").unwrap_or(0))
            } else {
                (n("/bytes_reply").unwrap_or(0), b)
            };
            f.bytes_from_slice = Some(from_slice);
            f.bytes_to_slice = Some(to_slice);
        }
        if event == "end" {
            if let Some(d) = n("/duration_s") {
                let start = time::format_millis(t - d as i64 * 1000);
                if start < f.first_seen {
                    f.first_seen = start;
                }
            }
            f.end = Some(FlowEnd {
                time: ts,
                duration_s: n("/duration_s"),
            });
        }
    }
    let (wf, wt) = (time::format_millis(from), time::format_millis(to));
    let flows: Vec<WhoFlow> = flows
        .into_values()
        // The flow's life must meet the window (an open flow's life runs past its last seen).
        .filter(|f| f.first_seen <= wt && (f.end.is_none() || f.last_seen >= wf))
        .collect();
    let mut slices: Vec<String> = flows.iter().map(|f| f.slice.clone()).collect();
    slices.sort();
    slices.dedup();
    Ok(WhoAnswer {
        remote: q.remote.clone(),
        port: q.port,
        from: wf,
        to: wt,
        slices,
        flows,
        lossy: lost > 0,
        lost,
    })
}

/// Start the daemon's collector (config `flow_log`): flows of the node's slices, anchors and
/// retention notes into the daemon's control log. Not started (with a warning) when the node
/// has no network yet or conntrack is missing: the daemon serves without a flow log rather
/// than not at all, and says so in its log and in a `daemon` record.
pub fn start_for_daemon(d: &Arc<crate::daemon::Daemon>) -> Option<FlowCollector> {
    if !d.config.flow_log {
        return None;
    }
    let node = match d.manager.node_net() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("flow log off: {e}");
            return None;
        }
    };
    let mut cfg = FlowConfig::new(
        d.audit_dir().to_path_buf(),
        node.state_dir.clone(),
        &node.nft_table,
    );
    cfg.slices_dir = Some(d.paths.slices_dir());
    cfg.dump_interval = Duration::from_secs(d.config.flow_dump_interval.max(1));
    cfg.retention_days = d.config.audit_retention_days;
    cfg.reserve_bytes = d.config.audit_reserve_bytes;
    let weak = Arc::downgrade(d);
    let sink: AnchorSink = Box::new(move |event, detail| {
        if let Some(d) = weak.upgrade() {
            d.audit_daemon(event, None, Some(detail));
        }
    });
    match FlowCollector::start(cfg, sink) {
        Ok(c) => {
            let _ = STATS.set(c.stats.clone());
            tracing::info!("flow log on");
            Some(c)
        }
        Err(e) => {
            tracing::warn!("flow log off: {e}");
            d.audit_daemon("flow_log_off", None, Some(e.to_string()));
            None
        }
    }
}

/// A bad query parameter: which one and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParamError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> ParamError {
    ParamError {
        field,
        reason: reason.into(),
    }
}

/// `ADDR` or `ADDR:PORT` (IPv4; the slice network is IPv4-only).
pub fn parse_remote(s: &str) -> Result<(String, Option<u16>), ParamError> {
    let (addr, port) = match s.rsplit_once(':') {
        Some((a, p)) => (
            a,
            Some(
                p.parse::<u16>()
                    .map_err(|_| bad("remote", format!("{s:?}: port {p:?} is not 0-65535")))?,
            ),
        ),
        None => (s, None),
    };
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| bad("remote", format!("{s:?}: expected an IPv4 address[:port]")))?;
    Ok((ip.to_string(), port))
}

/// `90s`, `10m`, `2h`, `1d` or plain seconds, as milliseconds.
pub fn parse_window(s: &str) -> Result<i64, ParamError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| bad("window", format!("{s:?}: expected e.g. 90s, 10m, 2h, 1d")))?;
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad("window", format!("{s:?}: unit must be s, m, h or d"))),
    };
    if n > 31 * 86_400 {
        return Err(bad("window", format!("{s:?}: at most 31 days")));
    }
    Ok(n * mult)
}

/// `GET /v1/who` and `vslice who`: check the parameters and answer.
pub fn who_params(
    audit_dir: &Path,
    p: &crate::proto::accounting::WhoParams,
    slack_ms: i64,
) -> Result<Result<WhoAnswer, AuditError>, ParamError> {
    let (remote, port) = parse_remote(&p.remote)?;
    let proto = match p.proto.as_deref() {
        None | Some("") => None,
        Some(x @ ("tcp" | "udp")) => Some(x.to_string()),
        Some(x) => return Err(bad("proto", format!("{x:?}: expected tcp or udp"))),
    };
    if p.at.is_empty() {
        return Err(bad("at", "required: when the complaint happened"));
    }
    let at_ms = time::parse(&p.at).map_err(|e| bad("at", e))?;
    let window_ms = parse_window(p.window.as_deref().unwrap_or("10m"))?;
    Ok(who(
        audit_dir,
        &WhoQuery {
            remote,
            port,
            proto,
            at_ms,
            window_ms,
            slack_ms,
        },
    ))
}

/// `GET /v1/audit/flows` and `vslice audit flows`: the stored records of a window.
pub fn kind_params(
    audit_dir: &Path,
    kind: &str,
    q: &crate::proto::accounting::KindQuery,
) -> Result<Result<Vec<Value>, AuditError>, ParamError> {
    let now = time::now_millis();
    let since = match q.since.as_deref() {
        Some(t) => time::parse(t).map_err(|e| bad("since", e))?,
        None => now - 86_400_000,
    };
    let until = match q.until.as_deref() {
        Some(t) => time::parse(t).map_err(|e| bad("until", e))?,
        None => now,
    };
    let limit = q.limit.unwrap_or(10_000);
    let slice = q.slice.clone();
    let mut n = 0usize;
    Ok(super::records::query_window(
        audit_dir,
        kind,
        since,
        until,
        |_| true,
        |v| {
            let ok = n < limit
                && slice
                    .as_deref()
                    .is_none_or(|s| v.get("slice").and_then(Value::as_str) == Some(s));
            if ok {
                n += 1;
            }
            ok
        },
    ))
}

/// Counters of the daemon's collector, for /metrics.
pub static STATS: std::sync::OnceLock<Arc<FlowStats>> = std::sync::OnceLock::new();

/// The flow log's lines of /metrics (nothing when no collector runs).
pub fn render_metrics(out: &mut String) {
    use std::fmt::Write as _;
    let Some(s) = STATS.get() else { return };
    for (name, help, v) in [
        (
            "vslice_flowlog_records_total",
            "Flow records written.",
            &s.records,
        ),
        (
            "vslice_flowlog_overruns_total",
            "Times conntrack events were lost (ENOBUFS or the event stream restarted); each is followed by a resync listing.",
            &s.overruns,
        ),
        (
            "vslice_flowlog_dropped_total",
            "Flow records dropped by the writer (disk under the reserve, or write errors).",
            &s.dropped,
        ),
        (
            "vslice_flowlog_procs_found_total",
            "New flows whose process was found (proc records).",
            &s.procs_found,
        ),
        (
            "vslice_flowlog_procs_skipped_total",
            "New flows whose process was not looked up (lookup queue full).",
            &s.procs_skipped,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parameters() {
        assert_eq!(
            parse_remote("10.1.2.3:22").unwrap(),
            ("10.1.2.3".into(), Some(22))
        );
        assert_eq!(parse_remote("10.1.2.3").unwrap(), ("10.1.2.3".into(), None));
        assert_eq!(parse_remote("x:1").unwrap_err().field, "remote");
        assert_eq!(parse_remote("1.2.3.4:99999").unwrap_err().field, "remote");
        assert_eq!(parse_window("10m").unwrap(), 600_000);
        assert_eq!(parse_window("90").unwrap(), 90_000);
        assert_eq!(parse_window("2w").unwrap_err().field, "window");
    }
}
