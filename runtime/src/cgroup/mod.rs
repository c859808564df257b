//! Slice cgroups (v1 and v2, detected at runtime). OWNED BY THE CGROUP HELPER — interface fixed:
//! see the doc comments; implementation to be filled in.
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{0}")]
    Io(#[from] crate::util::fs::PathError),
    #[error("cgroup {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    V1,
    V2,
}

/// Per-slice usage read from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_usage_ns: u64,
    pub memory_current: u64,
    pub memory_peak: u64,
    pub pids_current: u64,
    pub oom_kills: u64,
}

/// Detect the cgroup layout of this host.
pub fn detect() -> Version {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// One cgroup, addressed by an absolute path below the root of every hierarchy
/// (e.g. `vslice/web1`), never relative to the caller's own cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub version: Version,
    /// Path below the hierarchy root, without leading slash.
    pub path: String,
}

impl Cgroup {
    pub fn new(path: &str) -> Cgroup {
        Cgroup { version: detect(), path: path.trim_matches('/').to_string() }
    }
    /// Create in every controller vslice uses; idempotent.
    pub fn create(&self) -> Result<(), CgroupError> {
        todo!()
    }
    /// Apply resources (cpu shares/quota/period/cpus, memory limit/swap, pids limit).
    pub fn apply(&self, _res: &LinuxResources) -> Result<(), CgroupError> {
        todo!()
    }
    /// Move a process into this cgroup (all controllers).
    pub fn add_pid(&self, _pid: i32) -> Result<(), CgroupError> {
        todo!()
    }
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        todo!()
    }
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        todo!()
    }
    pub fn exists(&self) -> bool {
        todo!()
    }
    /// SIGKILL every process in the cgroup (freezing first so none can fork away).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        todo!()
    }
    /// Remove from every controller; idempotent; kills remaining processes first.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        todo!()
    }
}
