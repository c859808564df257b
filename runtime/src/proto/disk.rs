//! A slice's disk as the API reports it: how its quota is enforced and how much of it is used.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a slice's disk quota is enforced (chosen at creation from the state root's filesystem).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskBacking {
    /// ext4/XFS project quota on the state root's filesystem (upper and work directories
    /// tagged with the slice's project id).
    Project,
    /// A per-slice ext4 image on a loop device, mounted under the upper and work directories.
    Loop,
}

/// Disk usage of a slice with a disk quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiskUsage {
    pub backing: DiskBacking,
    /// Bytes the slice's files take (its upper and work directories).
    pub used_bytes: u64,
    /// The quota in bytes (`limits.disk_max`).
    pub limit_bytes: u64,
    /// Inodes (files, directories, links) in use.
    pub used_inodes: u64,
    /// Inode limit: `limits.inodes_max` (project quota) or the image's inode count (loop);
    /// null when there is none.
    pub limit_inodes: Option<u64>,
    /// The block device that backs the slice's writes (`major:minor`), where block I/O limits
    /// apply; null when it is not known (a loop-backed slice that is not running).
    pub device: Option<String>,
}
