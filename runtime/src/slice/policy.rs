//! Operator policies (policies/<name>.toml). OWNED BY THE POLICY HELPER — the struct shape is
//! fixed (other modules use it); parsing/validation and the policy files are theirs.
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {name:?}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("{0}")]
    Io(#[from] crate::util::fs::PathError),
}

/// A process resource limit, OCI names (`RLIMIT_NOFILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlimitEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// Upper bounds an operator allows for a slice's limits under this policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maxima {
    pub cpu_max: Option<f64>,
    pub memory_max: Option<u64>,
    pub swap_max: Option<u64>,
    pub pids_max: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub description: String,
    /// Capabilities kept (bounding, permitted, effective) by slice processes, e.g. "CAP_CHOWN".
    pub capabilities: Vec<String>,
    /// Seccomp profile in OCI/Docker JSON format, already loaded from policies/seccomp/.
    pub seccomp: oci_spec::runtime::LinuxSeccomp,
    pub no_new_privileges: bool,
    pub rlimits: Vec<RlimitEntry>,
    /// Paths masked inside the slice (files: /dev/null bound over; dirs: empty read-only tmpfs).
    pub masked_paths: Vec<String>,
    /// Paths made read-only inside the slice.
    pub readonly_paths: Vec<String>,
    pub maxima: Maxima,
}

/// Load `<dir>/<name>.toml` and the seccomp profile it names.
pub fn load(_dir: &Path, _name: &str) -> Result<Policy, PolicyError> {
    todo!()
}
