//! Volumes: host directories an operator gives a slice (`--volume /srv/data:/data[:ro]`).
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A host directory bind-mounted into the slice, idmapped so that the slice sees its own ids
/// (host uid N shows as slice uid N for N < 65536; see docs/daemon.md for what that means on
/// the host side).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Absolute, canonical host path of an existing directory owned by root and closed to
    /// other host users (mode without group/other bits), outside the state root.
    #[schema(example = "/srv/data")]
    pub host: String,
    /// Absolute path inside the slice (created if missing; not under /proc, /sys or /dev).
    #[schema(example = "/data")]
    pub path: String,
    /// Mount it read-only (the slice's root cannot remount it writable).
    #[serde(default)]
    pub read_only: bool,
}
