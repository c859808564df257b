//! The slice spec (desired state, persisted as `slices/<name>/spec.json`) and the types the
//! lifecycle returns. The wire types live in [`crate::proto::slice`] (the API and its clients
//! share them); they are re-exported here so the slice code keeps its paths.
use serde::{Deserialize, Serialize};

pub use crate::proto::slice::{
    CreateRequest, ExitInfo, Limits, LimitsPatch, NetInfo, SliceInfo, SliceSpec, Status, Usage,
    UID_COUNT,
};

/// A command to run inside a running slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub tty: bool,
}
