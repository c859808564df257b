//! Cleaning what interrupted operations leave in the kernel, at start-up and periodically.
//!
//! A slice start runs in a detached `vslice-shim start` that outlives the daemon which spawned
//! it; if the daemon is killed meanwhile, the shim goes on (or dies) on its own. So:
//!
//! * at start-up the daemon first waits until no shim of its state root is still setting a
//!   slice up ([`wait_for_starting_shims`]), so that recovery does not race a start in flight;
//! * then, and every few seconds afterwards, it removes leftovers ([`leftovers`], [`clean`]):
//!   cgroups and stray processes of slices that are not running, and cgroups under the cgroup
//!   parent that belong to no slice. Slices being started (by a live shim, or by a request in
//!   this daemon, which holds the slice's lock) are left alone.
use crate::cgroup::Cgroup;
use crate::config::Paths;
use crate::slice::state::{self, RuntimeState};
use crate::slice::{Manager, SliceInfo, Status};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// `vslice-shim start` processes of this state root that have not (yet) recorded their slice
/// as running: name → shim pid.
pub fn starting_shims(paths: &Paths) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    let root = paths.root.to_string_lossy();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
        let is_shim = args.first().is_some_and(|a| a.ends_with(b"vslice-shim"))
            && args.get(1) == Some(&&b"start"[..]);
        // A slice's view server is a fork of its shim (views/mod.rs): same command line, its
        // own comm. It is not a second shim.
        let is_views = std::fs::read(e.path().join("comm"))
            .is_ok_and(|c| c.trim_ascii_end() == crate::views::SERVER_COMM.as_bytes());
        if !is_shim || is_views {
            continue;
        }
        let value = |k: &[u8]| {
            args.iter()
                .position(|a| *a == k)
                .and_then(|i| args.get(i + 1))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if value(b"--root").as_deref() != Some(&*root) {
            continue;
        }
        let Some(name) = value(b"--name") else {
            continue;
        };
        let recorded = crate::util::fs::read_json::<RuntimeState>(
            &paths.slice_dir(&name).join(state::STATE_FILE),
        )
        .is_ok_and(|s| s.shim_pid == pid);
        if !recorded {
            out.insert(name, pid);
        }
    }
    out
}

/// Wait (up to `timeout`) until no shim of this root is setting a slice up. Returns the names
/// still starting when the time ran out. If there were any, waits a little longer: a shim
/// whose starter died may die itself right after recording its state (reporting to a closed
/// pipe), and recovery should see that.
pub fn wait_for_starting_shims(paths: &Paths, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut waited = false;
    loop {
        let starting = starting_shims(paths);
        if starting.is_empty() {
            if waited {
                std::thread::sleep(Duration::from_millis(200));
            }
            return Vec::new();
        }
        if Instant::now() >= deadline {
            return starting.into_keys().collect();
        }
        waited = true;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Something to clean.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Leftover {
    /// A slice that is not running but has a cgroup or runtime state left.
    StoppedSlice(String),
    /// A cgroup under the parent that belongs to no slice.
    OrphanCgroup(String),
}

impl Leftover {
    pub fn name(&self) -> &str {
        match self {
            Leftover::StoppedSlice(n) | Leftover::OrphanCgroup(n) => n,
        }
    }
}

/// Child cgroup names under the parent, in any hierarchy.
fn cgroup_children(paths: &Paths) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(dirs) = Cgroup::new(&paths.cgroup_parent).dirs() {
        for d in dirs {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        out.insert(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    out
}

/// What is left over, given a fresh list of the slices (excluding slices whose shim is
/// starting). Blocking.
pub fn leftovers(m: &Manager, infos: &[SliceInfo]) -> Vec<Leftover> {
    // Candidates first; the shims starting are looked up (a read of every process's command
    // line) only if there is a candidate, which an idle node with 1000 slices has not.
    let mut out = Vec::new();
    let names: BTreeSet<&str> = infos.iter().map(|i| i.spec.name.as_str()).collect();
    for i in infos {
        let n = &i.spec.name;
        if i.status == Status::Stopped {
            let stale_state = m.paths.slice_dir(n).join(state::STATE_FILE).exists();
            if stale_state || Cgroup::new(&m.cgroup_path(n)).exists() {
                out.push(Leftover::StoppedSlice(n.clone()));
            }
        }
    }
    for c in cgroup_children(&m.paths) {
        // Slice directories are created before their cgroup; a name without a directory
        // (not even a hidden one being created) has no slice.
        let creating = m.paths.slices_dir().join(format!(".{c}.creating")).exists();
        if !names.contains(c.as_str()) && !creating {
            out.push(Leftover::OrphanCgroup(c));
        }
    }
    if out.is_empty() {
        return out;
    }
    let starting = starting_shims(&m.paths);
    out.retain(|l| !starting.contains_key(l.name()));
    out
}

/// Clean one leftover, re-checking that it still is one. The caller holds the slice's lock.
pub fn clean(m: &Manager, l: &Leftover) -> Result<bool, String> {
    if starting_shims(&m.paths).contains_key(l.name()) {
        return Ok(false);
    }
    match l {
        Leftover::StoppedSlice(n) => match m.inspect(n) {
            // Stopping a stopped slice kills a stale init and removes its cgroup and state.
            Ok(i) if i.status == Status::Stopped => m
                .stop(n, Duration::ZERO)
                .map(|_| true)
                .map_err(|e| e.to_string()),
            _ => Ok(false),
        },
        Leftover::OrphanCgroup(n) => {
            if m.paths.slice_dir(n).exists() {
                return Ok(false);
            }
            Cgroup::new(&m.cgroup_path(n))
                .destroy()
                .map(|_| true)
                .map_err(|e| e.to_string())
        }
    }
}
