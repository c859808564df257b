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

/// Start time of a process, or None if it does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is the same process that had `start` as its start time, and not a zombie.
pub fn is_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let rest = &stat[close + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("");
    if state == "Z" || state == "X" {
        return false;
    }
    fields.nth(18).and_then(|s| s.parse::<u64>().ok()) == Some(start)
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_start_time_guards_reuse() {
        let me = std::process::id() as i32;
        let start = process_start_time(me).expect("start time of self");
        assert!(is_alive(me, start));
        assert!(
            !is_alive(me, start + 1),
            "a different start time must read as another process"
        );
        assert!(!is_alive(-1, start));
    }
}
