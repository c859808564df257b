//! Snapshots, clones, export and import of slices (`/v1/slices/{name}/snapshots`, `…/restore`,
//! `…/clone`, `…/export`, `…/import`).
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One saved copy of a slice's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotInfo {
    #[schema(example = "before-upgrade")]
    pub name: String,
    /// Size of the compressed snapshot.
    pub size_bytes: u64,
    /// Seconds since the epoch.
    pub created: u64,
}

/// `POST /v1/slices/{name}/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Snapshot name (`[a-z0-9][a-z0-9._-]{0,62}`); default `snap-<epoch seconds>`.
    pub name: Option<String>,
}

/// `POST /v1/slices/{name}/restore`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreRequest {
    pub snapshot: String,
}

/// `POST /v1/slices/{name}/clone`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CloneRequest {
    /// Name of the new slice.
    pub name: String,
}

/// `POST /v1/slices/{name}/export`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExportRequest {
    /// Absolute path on the node of the archive to write (zstd-compressed tar).
    pub path: String,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportResult {
    pub name: String,
    pub path: String,
    /// Files, directories and links saved.
    pub entries: u64,
    /// Bytes of file content saved.
    pub bytes: u64,
    /// Size of the archive.
    pub size_bytes: u64,
}

/// `POST /v1/slices/{name}/import`: create slice `{name}` from an exported archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SliceImportRequest {
    /// Absolute path on the node of an archive written by export.
    pub path: String,
}
