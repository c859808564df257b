//! Base images as listed by `GET /v1/images`.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use utoipa::ToSchema;

/// A validated base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    #[schema(example = "busybox")]
    pub name: String,
    /// `<images>/<name>/rootfs`.
    #[schema(value_type = String)]
    pub rootfs: PathBuf,
    /// Disk usage of the tree in bytes; 0 unless asked for (`?size=true`).
    #[serde(default)]
    pub size_bytes: u64,
    /// When the image was built: modification time of the rootfs directory, in seconds since
    /// the Unix epoch (0 if unknown).
    #[serde(default)]
    pub created: u64,
}
