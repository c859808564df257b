//! Slice events as sent on `GET /v1/events` (one JSON object per line). The bus that makes
//! them is [`crate::daemon::events`].
use crate::proto::slice::Limits;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increases by one per event for the daemon's lifetime (restarts at 1).
    pub seq: u64,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub time: String,
    /// The slice; empty for `lagged`.
    pub slice: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    Created,
    Started {
        #[serde(default)]
        init_pid: Option<i32>,
    },
    /// The slice's init ended. `reason`: exited, signaled, oom-killed, start-failed (from
    /// the shim's record), or lost (the slice stopped without one: its shim died).
    Exited {
        reason: String,
        #[serde(default)]
        code: Option<i32>,
        #[serde(default)]
        signal: Option<i32>,
    },
    /// The kernel OOM-killed a process of the slice; `oom_kills` is the slice's total.
    Oom {
        oom_kills: u64,
    },
    LimitsChanged {
        limits: Limits,
    },
    Destroyed,
    /// This follower fell behind and `missed` events were dropped for it.
    Lagged {
        missed: u64,
    },
}

impl EventKind {
    /// The `type` tag.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Started { .. } => "started",
            EventKind::Exited { .. } => "exited",
            EventKind::Oom { .. } => "oom",
            EventKind::LimitsChanged { .. } => "limits-changed",
            EventKind::Destroyed => "destroyed",
            EventKind::Lagged { .. } => "lagged",
        }
    }
}
