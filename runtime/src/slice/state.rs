//! Runtime state files of a slice, written by its shim: `state.json` while it runs,
//! `exit.json` when its init has ended. Both are written atomically.
use serde::{Deserialize, Serialize};

/// Written by the shim once the slice's init is running; removed when the shim exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeState {
    pub shim_pid: i32,
    /// Start time (clock ticks since boot, /proc/<pid>/stat field 22) — guards against PID reuse.
    pub shim_start: u64,
    pub init_pid: i32,
    pub init_start: u64,
    /// Seconds since the epoch.
    pub started_at: u64,
    /// OOM kills counted in the slice's cgroup when it started.
    pub oom_kills_at_start: u64,
}

pub const STATE_FILE: &str = "state.json";
pub const EXIT_FILE: &str = "exit.json";
pub const LAUNCH_FILE: &str = "launch.json";
pub const SPEC_FILE: &str = "spec.json";
pub const SHIM_LOG: &str = "shim.log";
/// Descriptor number on which `vslice-shim start` receives the slice's lock from its starter
/// (the manager dup2s the lock there; the shim closes it once state.json is written).
pub const SHIM_LOCK_FD: i32 = 3;

// The PID-reuse-safe process checks live with their other users (the OCI runtime's state
// too) in util::process; slices keep using them through this module.
pub use crate::util::process::{is_alive, process_start_time};

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
