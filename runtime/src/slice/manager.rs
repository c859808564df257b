//! The slice lifecycle over the on-disk store. OWNED BY THE LEAD — signatures fixed.
use super::*;
use crate::config::Paths;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("slice {0:?} not found")]
    NotFound(String),
    #[error("slice {0:?} already exists")]
    AlreadyExists(String),
    /// A request field is wrong; `field` is its JSON path (e.g. "limits.memory_max").
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The slice is not in a state that allows the operation.
    #[error("slice {name:?} is {state}: {reason}")]
    Conflict { name: String, state: String, reason: String },
    #[error("{0}")]
    Io(#[from] crate::util::fs::PathError),
    #[error("{0}")]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("starting slice {name:?}: {reason}")]
    Start { name: String, reason: String },
}

impl SliceError {
    /// The request field an error is about, for API error bodies.
    pub fn field(&self) -> Option<&str> {
        match self {
            SliceError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Entry point of the lifecycle. Cheap to construct; holds no open resources.
#[derive(Debug, Clone)]
pub struct Manager {
    pub paths: Paths,
}

impl Manager {
    pub fn new(paths: Paths) -> Manager {
        Manager { paths }
    }
    pub fn create(&self, _req: &CreateRequest) -> Result<SliceInfo, SliceError> {
        todo!()
    }
    pub fn start(&self, _name: &str) -> Result<SliceInfo, SliceError> {
        todo!()
    }
    /// SIGTERM to init, then SIGKILL after `timeout`.
    pub fn stop(&self, _name: &str, _timeout: Duration) -> Result<SliceInfo, SliceError> {
        todo!()
    }
    /// Stop if running, then remove cgroups, upper dir and state.
    pub fn destroy(&self, _name: &str) -> Result<(), SliceError> {
        todo!()
    }
    pub fn inspect(&self, _name: &str) -> Result<SliceInfo, SliceError> {
        todo!()
    }
    pub fn list(&self) -> Result<Vec<SliceInfo>, SliceError> {
        todo!()
    }
    /// Change limits; applied to the running cgroup at once and persisted.
    pub fn update_limits(&self, _name: &str, _patch: &LimitsPatch) -> Result<SliceInfo, SliceError> {
        todo!()
    }
    /// The `vslice-shim exec …` command that runs `req` inside the running slice. The caller
    /// spawns it with the stdio it wants; its exit code is the command's. With `req.tty` and
    /// `console_socket`, the shim sends the pty master fd over that Unix socket (runc's
    /// console-socket protocol) instead of relaying its own stdio.
    pub fn exec_command(
        &self,
        _name: &str,
        _req: &ExecRequest,
        _console_socket: Option<&std::path::Path>,
    ) -> Result<std::process::Command, SliceError> {
        todo!()
    }
}
