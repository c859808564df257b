//! Slices as the API sees them: the create request, the persisted spec, limits and their
//! patch, status, usage.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Limits of a slice in human terms; converted to OCI `LinuxResources` for the cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Relative CPU share under contention, 1..=10000, default 100 (like cgroup v2 cpu.weight
    /// and PlanetLab's cpu_share).
    #[schema(minimum = 1, maximum = 10000)]
    pub cpu_weight: Option<u64>,
    /// Hard cap in CPUs (0.5 = half a core).
    pub cpu_max: Option<f64>,
    /// CPUs the slice may run on, cpuset syntax ("0-1").
    #[schema(example = "0-1,3")]
    pub cpuset: Option<String>,
    /// Memory limit in bytes.
    pub memory_max: Option<u64>,
    /// Swap limit in bytes (in addition to memory_max).
    pub swap_max: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: Option<u64>,
    /// Disk quota in bytes on what the slice writes (its upper and work directories); set at
    /// creation. Enforced by a project quota where the state root's filesystem has them, else
    /// by a per-slice ext4 image on a loop device.
    pub disk_max: Option<u64>,
    /// Inode limit (files and directories); needs `disk_max`.
    pub inodes_max: Option<u64>,
    /// Relative block I/O weight under contention, 1..=1000 (BFQ), default 100.
    #[schema(minimum = 1, maximum = 1000)]
    pub io_weight: Option<u64>,
    /// Read cap in bytes/s on the device that backs the slice's writes.
    pub io_read_bps: Option<u64>,
    /// Write cap in bytes/s on that device.
    pub io_write_bps: Option<u64>,
    /// Read cap in I/O operations/s.
    pub io_read_iops: Option<u64>,
    /// Write cap in I/O operations/s.
    pub io_write_iops: Option<u64>,
}

/// What a caller asks for when creating a slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CreateRequest {
    /// DNS label: 1-63 of a-z, 0-9, '-', not starting or ending with '-'.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "web")]
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
    pub net: crate::proto::net::NetSpec,
    /// Start immediately after creation.
    pub start: bool,
    /// Host directories mounted into the slice (idmapped).
    pub volumes: Vec<crate::proto::volume::Volume>,
}

/// The persisted desired state of one slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SliceSpec {
    pub name: String,
    pub image: String,
    pub policy: String,
    pub limits: Limits,
    pub owners: Vec<String>,
    pub autostart: bool,
    pub init: Vec<String>,
    #[serde(default)]
    pub net: crate::proto::net::NetSpec,
    /// First host uid/gid of the slice's 65536-id range (slice uid 0 = this).
    pub uid_base: u32,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// Host directories mounted into the slice (idmapped).
    #[serde(default)]
    pub volumes: Vec<crate::proto::volume::Volume>,
}

/// Number of ids mapped into every slice.
pub const UID_COUNT: u32 = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Spec exists; never started, or stopped.
    Stopped,
    Running,
}

/// Why a slice's init ended, as recorded by its shim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// "exited", "signaled", "oom-killed" or "start-failed".
    #[schema(example = "exited")]
    pub reason: String,
    /// Seconds since the epoch.
    pub at: u64,
}

/// Everything an operator sees about a slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SliceInfo {
    pub spec: SliceSpec,
    pub status: Status,
    pub init_pid: Option<i32>,
    pub shim_pid: Option<i32>,
    /// Seconds since the epoch.
    pub started_at: Option<u64>,
    pub last_exit: Option<ExitInfo>,
    /// Null when the slice is not running.
    pub usage: Option<Usage>,
    /// Address and traffic counters of a running bridge-mode slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetInfo>,
    /// Disk usage of a slice with a disk quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<crate::proto::disk::DiskUsage>,
}

/// A running slice's network as the node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetInfo {
    /// The slice's IPv4 address on the bridge.
    #[schema(value_type = Option<String>, format = Ipv4)]
    pub address: Option<std::net::Ipv4Addr>,
    pub host_veth: String,
    /// Byte and packet counters are read live; the drop counters (shaping, spoofing,
    /// policy) come from one read of tc/nftables for the whole node, at most 1 s old.
    pub counters: crate::proto::net::NetCounters,
}

/// A partial update of limits on a (possibly running) slice; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsPatch {
    #[schema(minimum = 1, maximum = 10000)]
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
    /// New disk quota in bytes (resized live; a loop-backed disk only grows while running).
    pub disk_max: Option<u64>,
    /// Inode limit (files and directories); needs `disk_max`.
    pub inodes_max: Option<u64>,
    /// Relative block I/O weight under contention, 1..=1000 (BFQ), default 100.
    #[schema(minimum = 1, maximum = 1000)]
    pub io_weight: Option<u64>,
    /// Read cap in bytes/s on the device that backs the slice's writes.
    pub io_read_bps: Option<u64>,
    /// Write cap in bytes/s on that device.
    pub io_write_bps: Option<u64>,
    /// Read cap in I/O operations/s.
    pub io_read_iops: Option<u64>,
    /// Write cap in I/O operations/s.
    pub io_write_iops: Option<u64>,
}

/// Per-slice usage read from the kernel. All counters cover the cgroup and its descendants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// CPU time consumed (v1 cpuacct.usage; v2 cpu.stat usage_usec * 1000).
    pub cpu_usage_ns: u64,
    /// Memory charged now (v1 memory.usage_in_bytes; v2 memory.current).
    pub memory_current: u64,
    /// Highest memory charge seen (v1 memory.max_usage_in_bytes; v2 memory.peak, 0 on
    /// kernels before 5.19 that lack it).
    pub memory_peak: u64,
    /// Tasks (threads) in the cgroup (pids.current).
    pub pids_current: u64,
    /// Processes killed by the OOM killer because of this cgroup's limit
    /// (v1 memory.oom_control `oom_kill`; v2 memory.events `oom_kill`).
    pub oom_kills: u64,
}
