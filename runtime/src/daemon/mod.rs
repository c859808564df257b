//! The node daemon's core, below the HTTP API: configuration, caller identification,
//! the audit log writer, per-slice operation locks, events, start-up reconciliation and
//! readiness notification. Everything that talks HTTP is in [`crate::api`].
//!
//! Process model (DESIGN.md): the daemon owns desired state (the slice specs on disk, via
//! [`crate::slice::Manager`]) and never holds slice processes as children: every slice's shim
//! is detached, so slices keep running while the daemon is stopped, restarted or upgraded.
//! All lifecycle calls are synchronous and run on blocking threads.
pub mod auth;
pub mod config;
pub mod direct;
pub mod events;
pub mod inotify;
pub mod janitor;
pub mod locks;
pub mod notify;
pub mod signals;
pub mod socket;
pub mod watch;

use crate::audit::{self, AuditError, AuditLog, DaemonRecord, Entry, Record};
use crate::config::Paths;
use crate::slice::{Manager, SliceInfo, Status};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use auth::{Authenticator, Caller, Peer};
pub use config::Config;
pub use events::{Event, EventBus, EventKind};
pub use locks::SliceLocks;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Held by the daemon for its lifetime (and by a direct-mode action for its duration): one
/// writer per state root.
pub const ROOT_LOCK_FILE: &str = "vsliced.lock";

/// How often the poller looks at every slice, not only those it was told about, and cleans
/// leftovers of interrupted operations. A safety net, not the source of events (inotify,
/// pidfds and cgroup OOM notifications are: see [`Daemon::poll_events`]), so it can be long:
/// an idle daemon with 1000 slices wakes for it alone (issue 14). Measured at 1000 busybox
/// slices (2 loaded cores): 11 wake-ups of the daemon's own threads in 60 s, ~0.2 s of CPU
/// per pass; every 60 s keeps that under 0.5% of a core.
pub const FULL_POLL_EVERY: Duration = Duration::from_secs(60);

/// How often network byte budgets are enforced, while at least one slice has one: the
/// budget may be exceeded by what a slice sends in this time.
pub const BUDGET_EVERY: Duration = Duration::from_secs(5);

/// Remember which of `infos` have a network byte budget.
fn note_budgets(budgeted: &mut std::collections::BTreeSet<String>, infos: &[SliceInfo]) {
    for i in infos {
        if i.spec.net.budget.is_some() {
            budgeted.insert(i.spec.name.clone());
        } else {
            budgeted.remove(&i.spec.name);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another vsliced is running on state root {0} (it holds {0}/vsliced.lock)")]
    AlreadyRunning(PathBuf),
    #[error("{0}")]
    Audit(#[from] AuditError),
    #[error("{0}")]
    Slice(#[from] crate::slice::SliceError),
}

/// Everything the API handlers share.
#[derive(Debug)]
pub struct Daemon {
    pub config: Config,
    pub paths: Paths,
    pub manager: Manager,
    pub auth: Authenticator,
    pub events: EventBus,
    pub locks: SliceLocks,
    audit: Mutex<AuditLog>,
    audit_dir: PathBuf,
    pub started: Instant,
    pub started_unix: u64,
    /// Exclusive lock on `<root>/vsliced.lock`: one daemon per state root.
    _root_lock: Flock<File>,
}

/// What start-up reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReconcileReport {
    /// Half-made state the crash left behind and that was removed.
    pub recovered: Vec<String>,
    /// Slices found running (their shims survived): reattached.
    pub running: Vec<String>,
    /// Autostart slices that were not running and were started.
    pub started: Vec<String>,
    /// Slices left stopped.
    pub stopped: Vec<String>,
    /// (slice, error) of autostart slices that failed to start.
    pub failed: Vec<(String, String)>,
    /// What converging the network state with the slices did.
    #[serde(default)]
    pub network: Vec<String>,
}

impl Daemon {
    /// Take the state root (lock), open the audit log and record the daemon start.
    pub fn open(config: Config, paths: Paths) -> Result<Arc<Daemon>, DaemonError> {
        let io = |op, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| DaemonError::Io { op, path, source }
        };
        fs::create_dir_all(&paths.root).map_err(io("create", &paths.root))?;
        let lock_path = paths.root.join(ROOT_LOCK_FILE);
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        let root_lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| DaemonError::AlreadyRunning(paths.root.clone()))?;
        // Console sockets of interactive execs a previous daemon had in progress.
        if let Ok(rd) = fs::read_dir(paths.root.join("run")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("console-") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let audit_dir = paths.root.join("audit");
        let (mut log, notes) = AuditLog::open(&audit_dir, config.audit_segment_bytes)?;
        for n in &notes {
            tracing::warn!(note = %n, "audit log recovery");
        }
        log.append(Entry::Daemon(DaemonRecord {
            event: "start".into(),
            pid: std::process::id(),
            version: VERSION.into(),
            slice: None,
            detail: (!notes.is_empty()).then(|| notes.join("; ")),
        }))?;
        let started_unix = crate::slice::state::now_secs();
        Ok(Arc::new(Daemon {
            manager: Manager::new(paths.clone()),
            auth: Authenticator::new(&config.admin_group),
            events: EventBus::new(config.event_history),
            locks: SliceLocks::new(),
            audit: Mutex::new(log),
            audit_dir,
            started: Instant::now(),
            started_unix,
            _root_lock: root_lock,
            config,
            paths,
        }))
    }

    pub fn audit_dir(&self) -> &std::path::Path {
        &self.audit_dir
    }

    /// Run a lifecycle call on a blocking thread.
    pub async fn blocking<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&Manager) -> T + Send + 'static,
    {
        let m = self.manager.clone();
        match tokio::task::spawn_blocking(move || f(&m)).await {
            Ok(v) => v,
            // A panic on the blocking thread continues in the request's task, where the API's
            // panic guard turns it into a 500 (api/server.rs).
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: only when the runtime shuts down.
            Err(e) => panic!("blocking task cancelled: {e}"),
        }
    }

    /// Append to the audit log (fsynced) on a blocking thread.
    pub async fn audit(self: &Arc<Self>, entry: Entry) -> Result<Record, AuditError> {
        let d = self.clone();
        tokio::task::spawn_blocking(move || d.audit_now(entry))
            .await
            .unwrap_or_else(|e| {
                Err(AuditError::Corrupt {
                    path: PathBuf::new(),
                    reason: format!("audit task: {e}"),
                })
            })
    }

    /// Append to the audit log from a blocking context.
    pub fn audit_now(&self, entry: Entry) -> Result<Record, AuditError> {
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(entry)
    }

    /// The last record written.
    pub fn audit_head(&self) -> audit::Head {
        self.audit.lock().unwrap_or_else(|p| p.into_inner()).head()
    }

    /// Record something the daemon did.
    pub fn audit_daemon(&self, event: &str, slice: Option<&str>, detail: Option<String>) {
        let r = self.audit_now(Entry::Daemon(DaemonRecord {
            event: event.into(),
            pid: std::process::id(),
            version: VERSION.into(),
            slice: slice.map(str::to_string),
            detail,
        }));
        if let Err(e) = r {
            tracing::error!(error = %e, event, "cannot write the audit log");
        }
    }

    /// Start-up reconciliation (before serving): finish what a crash interrupted, reattach to
    /// running slices, start autostart slices that are not running. Blocking.
    pub fn reconcile(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        // Starts that a previous daemon left in flight finish (or fail) first.
        let still = janitor::wait_for_starting_shims(&self.paths, Duration::from_secs(30));
        if !still.is_empty() {
            tracing::warn!(slices = ?still, "shims still starting after 30 s; leaving them alone");
        }
        match self.manager.recover() {
            Ok(done) => report.recovered = done,
            Err(e) => tracing::error!(error = %e, "recovering half-made state"),
        }
        let infos = self.manager.list().unwrap_or_default();
        for l in janitor::leftovers(&self.manager, &infos) {
            match janitor::clean(&self.manager, &l) {
                Ok(true) => report.recovered.push(format!("{l:?}")),
                Ok(false) => {}
                Err(e) => tracing::error!(leftover = ?l, error = %e, "cleaning"),
            }
        }
        // Addresses, veths and rules follow the slices before anyone is served: a crash may
        // have left allocations of slices that are gone, or running slices without network.
        match self.manager.reconcile_network() {
            Ok(done) => {
                for d in &done {
                    tracing::warn!(action = %d, "network reconciled");
                }
                if !done.is_empty() {
                    self.audit_daemon("network_reconcile", None, Some(done.join("; ")));
                }
                report.network = done;
            }
            Err(e) => tracing::error!(error = %e, "reconciling the node network"),
        }
        let infos = match self.manager.list() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "listing slices");
                Vec::new()
            }
        };
        let mut final_infos = Vec::with_capacity(infos.len());
        for info in infos {
            let name = info.spec.name.clone();
            if info.status == Status::Running {
                tracing::info!(slice = %name, init_pid = ?info.init_pid, "reattached to running slice");
                report.running.push(name);
                final_infos.push(info);
            } else if info.spec.autostart && self.config.autostart {
                match self.manager.start(&name) {
                    Ok(i) => {
                        tracing::info!(slice = %name, "autostarted");
                        report.started.push(name.clone());
                        self.audit_daemon("autostart", Some(&name), None);
                        final_infos.push(i);
                    }
                    Err(e) => {
                        tracing::error!(slice = %name, error = %e, "autostart failed");
                        self.audit_daemon("autostart", Some(&name), Some(format!("failed: {e}")));
                        report.failed.push((name, e.to_string()));
                        final_infos.push(info);
                    }
                }
            } else {
                report.stopped.push(name);
                final_infos.push(info);
            }
        }
        if !report.recovered.is_empty() {
            self.audit_daemon(
                "recovery",
                None,
                Some(format!("removed {}", report.recovered.join(", "))),
            );
        }
        self.events.prime(&final_infos);
        report
    }

    /// Watch slice state for events (exits, OOM kills, changes made outside the API) until
    /// `shutdown` fires. Event-driven (issue 14: an idle node costs nothing):
    ///
    /// * an inotify descriptor on the slice store ([`inotify::SliceWatch`]) wakes the task when
    ///   a slice's `spec.json`, `state.json` or `exit.json` changes or a slice comes or goes;
    /// * per running slice, a pidfd of its shim and its memory cgroup's OOM notification
    ///   ([`signals::Signals`]) wake it when a shim dies without a record or a process other
    ///   than init is OOM-killed;
    ///
    /// and only the slices concerned are observed ([`Manager::observe`]: a few small files, no
    /// processes). Timers: every [`BUDGET_EVERY`] the network byte budgets are enforced, only
    /// while a slice has one; every [`FULL_POLL_EVERY`] all slices are observed (a safety net
    /// for a notification a kernel does not send) and leftovers are cleaned (see
    /// [`janitor`]). Without inotify (an exhausted `fs.inotify.max_user_instances`), falls
    /// back to [`Daemon::poll_events_stat`].
    pub async fn poll_events(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let paths = self.paths.clone();
        let made = tokio::task::spawn_blocking(move || inotify::SliceWatch::new(&paths)).await;
        let afd = match made
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .and_then(|w| {
                // SAFETY: the AsyncFd owns the watch (and its descriptor) for its whole life.
                unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        w,
                        tokio::io::Interest::READABLE,
                    )
                }
                .map_err(|e| e.into_parts().1.to_string())
            }) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "no inotify: polling the slice store instead");
                return self.poll_events_stat(shutdown).await;
            }
        };
        let mut afd = afd;
        let (mut signals, mut signalled) = signals::Signals::new(&self.paths.cgroup_parent);
        // Slices with a network byte budget (from the latest observations).
        let mut budgeted: std::collections::BTreeSet<String> = Default::default();
        // A first full poll at once: it sets up the watchers of the running slices.
        let mut next_full = tokio::time::Instant::now();
        let mut next_budget = tokio::time::Instant::now() + BUDGET_EVERY;
        loop {
            let (changed, gone) = tokio::select! {
                r = afd.readable_mut() => {
                    let Ok(mut guard) = r else {
                        tracing::warn!("inotify descriptor failed: polling the slice store instead");
                        return self.poll_events_stat(shutdown).await;
                    };
                    let changes = guard.get_inner_mut().drain();
                    guard.clear_ready();
                    (
                        changes.changed.into_iter().collect::<Vec<_>>(),
                        changes.gone.into_iter().collect::<Vec<_>>(),
                    )
                }
                Some(first) = signalled.recv() => {
                    let mut names = std::collections::BTreeSet::from([first]);
                    while let Ok(n) = signalled.try_recv() {
                        names.insert(n);
                    }
                    (names.into_iter().collect(), Vec::new())
                }
                _ = tokio::time::sleep_until(next_budget), if !budgeted.is_empty() => {
                    next_budget = tokio::time::Instant::now() + BUDGET_EVERY;
                    let r = self.blocking(|m| m.enforce_net_budgets()).await;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "enforcing network byte budgets");
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(next_full) => {
                    next_full = tokio::time::Instant::now() + FULL_POLL_EVERY;
                    if let Some(infos) = self.full_poll().await {
                        let names: std::collections::BTreeSet<&str> =
                            infos.iter().map(|i| i.spec.name.as_str()).collect();
                        budgeted.retain(|n| names.contains(n.as_str()));
                        note_budgets(&mut budgeted, &infos);
                        signals.follow(&infos, &[]);
                        // Watchers of slices no longer listed.
                        let stale: Vec<String> = signals
                            .names()
                            .filter(|n| !names.contains(n.as_str()))
                            .collect();
                        signals.follow(&[], &stale);
                        self.sweep(infos).await;
                    }
                    continue;
                }
                _ = shutdown.changed() => return,
            };
            if changed.is_empty() && gone.is_empty() {
                continue;
            }
            let taken_at = Instant::now();
            let (infos, gone) = self
                .blocking(move |m| {
                    let mut gone = gone;
                    let mut infos = Vec::with_capacity(changed.len());
                    for n in changed {
                        match m.observe(&n) {
                            Ok(i) => infos.push(i),
                            Err(crate::slice::SliceError::NotFound(_)) => gone.push(n),
                            Err(e) => tracing::debug!(slice = %n, error = %e, "observe"),
                        }
                    }
                    (infos, gone)
                })
                .await;
            self.events.observe_partial(&infos, &gone, taken_at);
            for g in &gone {
                budgeted.remove(g);
            }
            note_budgets(&mut budgeted, &infos);
            signals.follow(&infos, &gone);
        }
    }

    /// Look at every slice (light: [`Manager::observe_all`]) and feed the event bus; the
    /// observations, for the caller to clean leftovers and follow the slices.
    async fn full_poll(&self) -> Option<Vec<SliceInfo>> {
        let taken_at = Instant::now();
        match self.blocking(move |m| m.observe_all()).await {
            Ok(infos) => {
                self.events.observe_snapshot(&infos, taken_at);
                Some(infos)
            }
            Err(e) => {
                tracing::warn!(error = %e, "polling slices for events");
                None
            }
        }
    }

    /// The fallback of [`Daemon::poll_events`]: every `events_poll_ms`, `stat` three files
    /// per slice ([`watch::Watcher`]) and inspect those that changed; every [`BUDGET_EVERY`]
    /// observe them all, enforce budgets and clean leftovers (as before issue 14).
    pub async fn poll_events_stat(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let interval = Duration::from_millis(self.config.events_poll_ms);
        let mut last_full = Instant::now();
        let watcher = Arc::new(Mutex::new(watch::Watcher::new()));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            let taken_at = Instant::now();
            let w = watcher.clone();
            if last_full.elapsed() >= BUDGET_EVERY {
                last_full = Instant::now();
                let polled = self
                    .blocking(move |m| {
                        w.lock().unwrap_or_else(|p| p.into_inner()).scan(&m.paths);
                        if let Err(e) = m.enforce_net_budgets() {
                            tracing::warn!(error = %e, "enforcing network byte budgets");
                        }
                        m.observe_all()
                    })
                    .await;
                match polled {
                    Ok(infos) => {
                        self.events.observe_snapshot(&infos, taken_at);
                        self.sweep(infos).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "polling slices for events"),
                }
            } else {
                let (infos, gone) = self
                    .blocking(move |m| {
                        let (changed, mut gone) =
                            w.lock().unwrap_or_else(|p| p.into_inner()).scan(&m.paths);
                        let mut infos = Vec::with_capacity(changed.len());
                        for n in changed {
                            match m.observe(&n) {
                                Ok(i) => infos.push(i),
                                Err(crate::slice::SliceError::NotFound(_)) => gone.push(n),
                                Err(e) => tracing::debug!(slice = %n, error = %e, "observe"),
                            }
                        }
                        (infos, gone)
                    })
                    .await;
                self.events.observe_partial(&infos, &gone, taken_at);
            }
        }
    }

    /// Clean leftovers of slices nobody is operating on right now, given a fresh list.
    pub async fn sweep(&self, infos: Vec<SliceInfo>) -> Vec<janitor::Leftover> {
        let mut cleaned = Vec::new();
        for l in self.blocking(move |m| janitor::leftovers(m, &infos)).await {
            let Some(_guard) = self.locks.try_lock(l.name()) else {
                continue;
            };
            let l2 = l.clone();
            match self.blocking(move |m| janitor::clean(m, &l2)).await {
                Ok(true) => {
                    tracing::warn!(leftover = ?l, "cleaned leftover of an interrupted operation");
                    self.audit_daemon("cleanup", Some(l.name()), Some(format!("{l:?}")));
                    cleaned.push(l);
                }
                Ok(false) => {}
                Err(e) => tracing::error!(leftover = ?l, error = %e, "cleaning leftover"),
            }
        }
        cleaned
    }

    /// Inspect a slice and feed the result to the event bus.
    pub async fn observe(&self, name: &str) -> Option<SliceInfo> {
        let n = name.to_string();
        let info = self.blocking(move |m| m.inspect(&n)).await.ok()?;
        self.events.observe(&info);
        Some(info)
    }
}

/// Resident set size of this process in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * page)
        .unwrap_or(0)
}
