//! Files in and out of a slice: `GET|PUT /v1/slices/{name}/files` (tar streams).
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Query of `GET|PUT /v1/slices/{name}/files`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilesQuery {
    /// Absolute path inside the slice (symlinks resolved inside the slice's root). GET: the
    /// file or directory to copy out (the archive's top entry is its last component). PUT: an
    /// existing directory to unpack into, or the new name of the archive's top entry.
    pub path: String,
    /// PUT: slice uid that owns what is copied in (default 0, the slice's root).
    #[param(minimum = 0, maximum = 65535)]
    pub uid: Option<u32>,
    /// PUT: slice gid that owns what is copied in (default 0).
    #[param(minimum = 0, maximum = 65535)]
    pub gid: Option<u32>,
}

/// `PUT /v1/slices/{name}/files` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CopyResult {
    /// Files, directories and symlinks written.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Query of `GET /v1/slices/{name}/logs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only the last N lines (default: everything kept).
    #[param(minimum = 0, maximum = 100000)]
    pub tail: Option<usize>,
    /// Keep the response open and send what the slice writes next.
    pub follow: Option<bool>,
}
