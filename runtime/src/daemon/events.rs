//! Slice events: created, started, exited (with reason), oom, limits-changed, destroyed.
//!
//! One [`EventBus`] per daemon. It keeps what it last knew about each slice and turns every
//! new observation into events by comparing — so it does not matter whether an observation
//! comes from an API handler right after an operation or from the poller that reads the slice
//! state on disk (the shim writes `state.json` / `exit.json`): each change is reported once.
//! Observations made by handlers are newer than a poll snapshot taken before them; the
//! snapshot is ignored for those slices (see [`EventBus::observe_snapshot`]).
use crate::slice::{Limits, SliceInfo, Status};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The events themselves are wire types, shared with clients: [`crate::proto::events`].
pub use crate::proto::events::{Event, EventKind};

/// An event with the owners of its slice at the time (for filtering what owners may see).
#[derive(Debug, Clone)]
pub struct Published {
    pub event: Event,
    pub owners: Arc<[String]>,
}

#[derive(Debug, Clone)]
struct Known {
    owners: Arc<[String]>,
    limits: Limits,
    running: bool,
    init_pid: Option<i32>,
    started_at: Option<u64>,
    exit_key: Option<(u64, String, Option<i32>, Option<i32>)>,
    oom_kills: u64,
    /// When a handler last reported this slice.
    touched: Instant,
}

impl Known {
    fn from_info(info: &SliceInfo, touched: Instant) -> Known {
        Known {
            owners: info.spec.owners.clone().into(),
            limits: info.spec.limits.clone(),
            running: info.status == Status::Running,
            init_pid: info.init_pid,
            started_at: info.started_at,
            exit_key: exit_key(info),
            oom_kills: info.usage.as_ref().map(|u| u.oom_kills).unwrap_or(0),
            touched,
        }
    }
}

fn exit_key(info: &SliceInfo) -> Option<(u64, String, Option<i32>, Option<i32>)> {
    info.last_exit
        .as_ref()
        .map(|e| (e.at, e.reason.clone(), e.code, e.signal))
}

/// What changed between `old` and `info`, in the order it happened.
fn diff(old: Option<&Known>, info: &SliceInfo) -> Vec<EventKind> {
    let mut out = Vec::new();
    let running = info.status == Status::Running;
    let Some(old) = old else {
        out.push(EventKind::Created);
        if running {
            out.push(EventKind::Started {
                init_pid: info.init_pid,
            });
        }
        return out;
    };
    let new_exit = exit_key(info);
    let mut oom_reported = false;
    if let (Some(e), true) = (&info.last_exit, new_exit != old.exit_key) {
        out.push(EventKind::Exited {
            reason: e.reason.clone(),
            code: e.code,
            signal: e.signal,
        });
        if e.oom_killed {
            let kills = info
                .usage
                .as_ref()
                .map(|u| u.oom_kills)
                .unwrap_or(old.oom_kills + 1);
            out.push(EventKind::Oom {
                oom_kills: kills.max(old.oom_kills + 1),
            });
            oom_reported = true;
        }
    }
    if !oom_reported && old.running && !running && new_exit == old.exit_key {
        // Stopped without a new exit record: the supervisor itself went away.
        let recorded = info
            .last_exit
            .as_ref()
            .is_some_and(|e| old.started_at.is_some_and(|s| e.at >= s));
        if !recorded && out.is_empty() {
            out.push(EventKind::Exited {
                reason: "lost".into(),
                code: None,
                signal: None,
            });
        }
    }
    if running
        && (!old.running || old.started_at != info.started_at || old.init_pid != info.init_pid)
    {
        out.push(EventKind::Started {
            init_pid: info.init_pid,
        });
    }
    if let Some(u) = &info.usage {
        if u.oom_kills > old.oom_kills && !oom_reported {
            out.push(EventKind::Oom {
                oom_kills: u.oom_kills,
            });
        }
    }
    if info.spec.limits != old.limits {
        out.push(EventKind::LimitsChanged {
            limits: info.spec.limits.clone(),
        });
    }
    out
}

#[derive(Debug)]
struct Inner {
    known: HashMap<String, Known>,
    /// Recently destroyed slices (so a stale poll snapshot does not resurrect them).
    tombstones: HashMap<String, Instant>,
    /// Slices being destroyed through the API: what the watchers see meanwhile (init killed,
    /// files going) is the destroy, which `destroyed` reports, not events of their own.
    destroying: std::collections::HashSet<String>,
    history: VecDeque<Arc<Published>>,
    seq: u64,
}

#[derive(Debug)]
pub struct EventBus {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Published>>,
    history_len: usize,
}

/// A follower: the buffered events it asked for, then live ones.
pub struct Subscription {
    pub backlog: Vec<Arc<Published>>,
    pub rx: broadcast::Receiver<Arc<Published>>,
}

impl EventBus {
    pub fn new(history_len: usize) -> EventBus {
        let (tx, _) = broadcast::channel(1024);
        EventBus {
            inner: Mutex::new(Inner {
                known: HashMap::new(),
                tombstones: HashMap::new(),
                destroying: Default::default(),
                history: VecDeque::new(),
                seq: 0,
            }),
            tx,
            history_len,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, inner: &mut Inner, slice: &str, owners: Arc<[String]>, kind: EventKind) {
        inner.seq += 1;
        let p = Arc::new(Published {
            event: Event {
                seq: inner.seq,
                time: crate::audit::time::now_rfc3339(),
                slice: slice.to_string(),
                kind,
            },
            owners,
        });
        tracing::debug!(slice, seq = inner.seq, event = p.event.kind.name(), "event");
        inner.history.push_back(p.clone());
        while inner.history.len() > self.history_len {
            inner.history.pop_front();
        }
        let _ = self.tx.send(p);
    }

    /// Learn the current state without reporting events (daemon start-up).
    pub fn prime(&self, infos: &[SliceInfo]) {
        let mut inner = self.lock();
        let now = Instant::now();
        for info in infos {
            inner
                .known
                .insert(info.spec.name.clone(), Known::from_info(info, now));
        }
    }

    /// A handler's fresh observation of one slice.
    pub fn observe(&self, info: &SliceInfo) {
        let mut inner = self.lock();
        let name = info.spec.name.clone();
        inner.tombstones.remove(&name);
        self.apply(&mut inner, info, Instant::now());
    }

    fn apply(&self, inner: &mut Inner, info: &SliceInfo, touched: Instant) {
        let name = &info.spec.name;
        let kinds = diff(inner.known.get(name), info);
        let known = Known::from_info(info, touched);
        let owners = known.owners.clone();
        inner.known.insert(name.clone(), known);
        for k in kinds {
            self.publish(inner, name, owners.clone(), k);
        }
    }

    /// A destroy through the API begins (ends with [`EventBus::forget`] or
    /// [`EventBus::destroy_failed`]).
    pub fn destroying(&self, name: &str) {
        self.lock().destroying.insert(name.to_string());
    }

    /// A destroy through the API failed: the slice is observed again.
    pub fn destroy_failed(&self, name: &str) {
        self.lock().destroying.remove(name);
    }

    /// A slice was destroyed through the API.
    pub fn forget(&self, name: &str) {
        let mut inner = self.lock();
        inner.destroying.remove(name);
        let now = Instant::now();
        inner.tombstones.insert(name.to_string(), now);
        if let Some(k) = inner.known.remove(name) {
            self.publish(&mut inner, name, k.owners, EventKind::Destroyed);
        }
    }

    /// A poll of all slices, taken starting at `taken_at`. Slices that handlers reported (or
    /// destroyed) after `taken_at` are left alone: the snapshot is older than what we know.
    /// Known slices missing from the poll are reported destroyed.
    pub fn observe_snapshot(&self, infos: &[SliceInfo], taken_at: Instant) {
        self.observe_polled(infos, None, taken_at);
    }

    /// A poll of some slices (those whose files changed), and the names found gone.
    pub fn observe_partial(&self, infos: &[SliceInfo], gone: &[String], taken_at: Instant) {
        self.observe_polled(infos, Some(gone), taken_at);
    }

    fn observe_polled(&self, infos: &[SliceInfo], gone: Option<&[String]>, taken_at: Instant) {
        let mut inner = self.lock();
        inner
            .tombstones
            .retain(|_, at| at.elapsed() < Duration::from_secs(60));
        let mut seen = std::collections::HashSet::with_capacity(infos.len());
        for info in infos {
            let name = &info.spec.name;
            seen.insert(name.as_str());
            if inner.destroying.contains(name) {
                continue;
            }
            if inner.tombstones.get(name).is_some_and(|at| *at > taken_at) {
                continue;
            }
            if inner.known.get(name).is_some_and(|k| k.touched > taken_at) {
                continue;
            }
            let touched = inner.known.get(name).map(|k| k.touched).unwrap_or(taken_at);
            self.apply(&mut inner, info, touched);
        }
        let gone: Vec<String> = match gone {
            None => inner
                .known
                .iter()
                .filter(|(name, k)| !seen.contains(name.as_str()) && k.touched <= taken_at)
                .map(|(name, _)| name.clone())
                .collect(),
            Some(names) => names
                .iter()
                .filter(|n| {
                    inner
                        .known
                        .get(n.as_str())
                        .is_some_and(|k| k.touched <= taken_at)
                })
                .cloned()
                .collect(),
        };
        for name in gone {
            if let Some(k) = inner.known.remove(&name) {
                inner.tombstones.insert(name.clone(), Instant::now());
                self.publish(&mut inner, &name, k.owners, EventKind::Destroyed);
            }
        }
    }

    /// Owners of a slice as last seen (None: unknown slice).
    pub fn owners(&self, name: &str) -> Option<Arc<[String]>> {
        self.lock().known.get(name).map(|k| k.owners.clone())
    }

    /// Subscribe; `since`: also return buffered events with a larger seq (`Some(0)`: all kept).
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let backlog = match since {
            Some(s) => inner
                .history
                .iter()
                .filter(|p| p.event.seq > s)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        Subscription { backlog, rx }
    }

    /// Buffered events only.
    pub fn history(&self) -> Vec<Arc<Published>> {
        self.lock().history.iter().cloned().collect()
    }

    /// Number of live followers.
    pub fn followers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Number of slices the bus knows about.
    pub fn known_slices(&self) -> usize {
        self.lock().known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slice::{ExitInfo, SliceSpec};

    fn info(name: &str, running: bool, started_at: Option<u64>) -> SliceInfo {
        SliceInfo {
            spec: SliceSpec {
                name: name.into(),
                image: "busybox".into(),
                policy: "default".into(),
                limits: Limits::default(),
                owners: vec!["alice".into()],
                autostart: false,
                init: vec!["/sbin/init".into()],
                net: Default::default(),
                uid_base: 100_000,
                created_at: 1,
                volumes: Vec::new(),
            },
            status: if running {
                Status::Running
            } else {
                Status::Stopped
            },
            init_pid: running.then_some(42),
            shim_pid: running.then_some(41),
            started_at,
            last_exit: None,
            usage: None,
            net: None,
            disk: None,
        }
    }

    fn kinds(bus: &EventBus) -> Vec<String> {
        bus.history()
            .iter()
            .map(|p| format!("{}:{}", p.event.slice, p.event.kind.name()))
            .collect()
    }

    #[test]
    fn lifecycle_reports_each_change_once() {
        let bus = EventBus::new(100);
        let a = info("a", false, None);
        bus.observe(&a);
        let t0 = Instant::now();
        bus.observe_snapshot(std::slice::from_ref(&a), t0);
        let mut running = info("a", true, Some(10));
        bus.observe(&running);
        bus.observe(&running);
        let mut stopped = info("a", false, Some(10));
        stopped.last_exit = Some(ExitInfo {
            code: None,
            signal: Some(9),
            oom_killed: true,
            reason: "oom-killed".into(),
            at: 20,
        });
        bus.observe_snapshot(&[stopped.clone()], Instant::now());
        bus.observe_snapshot(&[stopped.clone()], Instant::now());
        running.spec.limits.memory_max = Some(1 << 20);
        running.started_at = Some(30);
        running.last_exit = stopped.last_exit.clone();
        bus.observe(&running);
        bus.forget("a");
        assert_eq!(
            kinds(&bus),
            [
                "a:created",
                "a:started",
                "a:exited",
                "a:oom",
                "a:started",
                "a:limits-changed",
                "a:destroyed"
            ]
        );
        let seqs: Vec<u64> = bus.history().iter().map(|p| p.event.seq).collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    }

    #[test]
    fn stale_snapshots_neither_resurrect_nor_destroy() {
        let bus = EventBus::new(100);
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        bus.observe(&info("new", false, None));
        // Snapshot taken before the create: must not report "new" destroyed.
        bus.observe_snapshot(&[], before);
        assert_eq!(kinds(&bus), ["new:created"]);
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        bus.forget("new");
        // Snapshot taken before the destroy still lists it: must not re-create it.
        bus.observe_snapshot(&[info("new", false, None)], before);
        assert_eq!(kinds(&bus), ["new:created", "new:destroyed"]);
        // A later snapshot without it after an external removal reports destroyed once.
        bus.observe(&info("x", false, None));
        bus.observe_snapshot(&[], Instant::now());
        bus.observe_snapshot(&[], Instant::now());
        assert_eq!(
            kinds(&bus),
            ["new:created", "new:destroyed", "x:created", "x:destroyed"]
        );
    }

    #[test]
    fn partial_polls_report_only_what_they_name() {
        let bus = EventBus::new(100);
        bus.prime(&[info("a", true, Some(1)), info("b", true, Some(1))]);
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        // "b" is not in this partial poll and not named gone: nothing happens to it.
        bus.observe_partial(&[info("a", false, Some(1))], &[], t);
        bus.observe_partial(&[], &["b".to_string()], Instant::now());
        bus.observe_partial(&[], &["b".to_string()], Instant::now());
        assert_eq!(kinds(&bus), ["a:exited", "b:destroyed"]);
        assert_eq!(
            bus.history()[0].event.kind,
            EventKind::Exited {
                reason: "lost".into(),
                code: None,
                signal: None
            }
        );
    }

    #[test]
    fn oom_of_a_non_init_process() {
        let bus = EventBus::new(100);
        let mut a = info("a", true, Some(1));
        a.usage = Some(Default::default());
        bus.prime(std::slice::from_ref(&a));
        a.usage.as_mut().unwrap().oom_kills = 2;
        bus.observe_snapshot(std::slice::from_ref(&a), Instant::now());
        assert_eq!(kinds(&bus), ["a:oom"]);
        let json = serde_json::to_string(&bus.history()[0].event).unwrap();
        assert!(json.contains(r#""type":"oom","oom_kills":2"#), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, bus.history()[0].event);
    }

    #[test]
    fn subscribe_gets_backlog_then_live() {
        let bus = EventBus::new(2);
        for n in ["a", "b", "c"] {
            bus.observe(&info(n, false, None));
        }
        let mut sub = bus.subscribe(Some(0));
        assert_eq!(sub.backlog.len(), 2, "history is bounded");
        bus.forget("a");
        let live = sub.rx.try_recv().unwrap();
        assert_eq!(live.event.kind, EventKind::Destroyed);
        assert_eq!(&*live.owners, ["alice".to_string()]);
    }
}
