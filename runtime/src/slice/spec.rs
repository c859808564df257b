//! The slice spec (desired state, persisted as `slices/<name>/spec.json`) and the types the
//! lifecycle returns.
use serde::{Deserialize, Serialize};

/// Limits of a slice in human terms; converted to OCI `LinuxResources` for the cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Relative CPU share under contention, 1..=10000, default 100 (like cgroup v2 cpu.weight
    /// and PlanetLab's cpu_share).
    pub cpu_weight: Option<u64>,
    /// Hard cap in CPUs (0.5 = half a core).
    pub cpu_max: Option<f64>,
    /// CPUs the slice may run on, cpuset syntax ("0-1").
    pub cpuset: Option<String>,
    /// Memory limit in bytes.
    pub memory_max: Option<u64>,
    /// Swap limit in bytes (in addition to memory_max).
    pub swap_max: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: Option<u64>,
}

/// What a caller asks for when creating a slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    /// Base image name; default "busybox".
    pub image: Option<String>,
    /// Policy name; default "default".
    pub policy: Option<String>,
    pub limits: Limits,
    /// Host users who may inspect, exec into and enter the slice.
    pub owners: Vec<String>,
    /// Start again when the node (daemon) starts.
    pub autostart: bool,
    /// Init command; default the image's /sbin/init.
    pub init: Option<Vec<String>>,
    pub net: crate::net::NetSpec,
    /// Start immediately after creation.
    pub start: bool,
}

/// The persisted desired state of one slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceSpec {
    pub name: String,
    pub image: String,
    pub policy: String,
    pub limits: Limits,
    pub owners: Vec<String>,
    pub autostart: bool,
    pub init: Vec<String>,
    #[serde(default)]
    pub net: crate::net::NetSpec,
    /// First host uid/gid of the slice's 65536-id range (slice uid 0 = this).
    pub uid_base: u32,
    /// Seconds since the epoch.
    pub created_at: u64,
}

/// Number of ids mapped into every slice.
pub const UID_COUNT: u32 = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Spec exists; never started, or stopped.
    Stopped,
    Running,
}

/// Why a slice's init ended, as recorded by its shim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// "exited", "signaled", "oom-killed" or "start-failed".
    pub reason: String,
    pub at: u64,
}

/// Everything an operator sees about a slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceInfo {
    pub spec: SliceSpec,
    pub status: Status,
    pub init_pid: Option<i32>,
    pub shim_pid: Option<i32>,
    pub started_at: Option<u64>,
    pub last_exit: Option<ExitInfo>,
    pub usage: Option<crate::cgroup::Usage>,
    /// Address and traffic counters of a running bridge-mode slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetInfo>,
}

/// A running slice's network as the node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetInfo {
    pub address: Option<std::net::Ipv4Addr>,
    pub host_veth: String,
    pub counters: crate::net::NetCounters,
}

/// A partial update of limits on a (possibly running) slice; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsPatch {
    pub cpu_weight: Option<u64>,
    pub cpu_max: Option<f64>,
    pub cpuset: Option<String>,
    pub memory_max: Option<u64>,
    pub swap_max: Option<u64>,
    pub pids_max: Option<u64>,
    /// Rate of traffic out of the slice, bits/s (bridge mode).
    pub egress_rate: Option<u64>,
    /// Rate of traffic into the slice, bits/s (bridge mode).
    pub ingress_rate: Option<u64>,
}

/// A command to run inside a running slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub tty: bool,
}
