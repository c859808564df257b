//! OCI image import: the request of `POST /v1/images`, what an imported image keeps of
//! its OCI config, and the answer of `DELETE /v1/images/{name}`.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Import an image from a file or directory on the node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ImportRequest {
    /// Path on the node (read by the daemon, as root): an OCI image layout directory, an
    /// oci-archive tar, or a `docker save` tar.
    #[schema(example = "/srv/images/app.tar")]
    pub path: String,
    /// Image name; default: from the image's reference (ref.name annotation or RepoTags),
    /// else from the file name.
    pub name: Option<String>,
}

/// What an imported image keeps of its OCI config (`<images>/<name>/config.json`). `vslice
/// create --image NAME` uses `env` and `working_dir` for the slice's init; `entrypoint` + `cmd`
/// become the init only when the image has no `/sbin/init` and the request names none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ImageConfig {
    /// `NAME=value` strings.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Recorded, not applied: a slice's init runs as the slice's root.
    pub user: Option<String>,
    /// "oci-layout", "oci-archive" or "docker-archive".
    pub format: String,
    /// Digest of the image config blob (`sha256:...`).
    pub config_digest: String,
    /// Layers applied.
    pub layers: usize,
    /// Seconds since the epoch.
    pub imported_at: u64,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    pub name: String,
    pub config: ImageConfig,
    /// Files, directories and links written.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// One image in detail (`GET /v1/images/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageDetails {
    pub image: crate::proto::image::Image,
    /// The stored OCI config; defaults for an image that was built, not imported.
    pub config: ImageConfig,
    /// Slices whose spec names this image (it cannot be removed while there are any).
    pub used_by: Vec<String>,
}
