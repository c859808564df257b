//! Records of the audit log, as stored (one canonical JSON object per line) and as returned
//! by `GET /v1/audit`, and the report of `GET /v1/audit/verify`. Writing and verifying the
//! log is [`crate::audit`].
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Who made a request (from SO_PEERCRED on the daemon's socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = AuditCaller)]
pub struct Caller {
    pub uid: u32,
    /// Host user name, when the uid has one.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub pid: Option<i32>,
    /// `direct` for actions taken by the CLI in direct mode (`VSLICE_DIRECT=1`), without the
    /// daemon; absent for requests the daemon served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Outcome {
    pub ok: bool,
    /// HTTP status of the reply.
    pub status: u16,
    /// Error code (`not_found`, `forbidden`, …) when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Exit code of an exec, in `exec_end` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// A request to the daemon's API that changed (or tried to change) something, or an exec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ControlRecord {
    pub caller: Caller,
    /// `create`, `start`, `stop`, `restart`, `update_limits`, `destroy`, `exec`, `exec_end`.
    pub action: String,
    #[serde(default)]
    pub slice: Option<String>,
    /// The request's arguments (body and query), with secrets (env values) left out.
    #[serde(default)]
    pub args: Value,
    pub result: Outcome,
}

/// Something the daemon itself did: `start`, `stop`, `recovery`, `reconcile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DaemonRecord {
    pub event: String,
    pub pid: u32,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The kind-specific part of a record, tagged by `kind`. Future kinds (network flows,
/// in-slice processes) are added here as further variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schema(as = AuditEntry)]
pub enum Entry {
    Control(ControlRecord),
    Daemon(DaemonRecord),
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AuditRecord)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub time: String,
    #[serde(flatten)]
    pub entry: Entry,
    pub prev_hash: String,
    /// sha256(prev_hash + canonical JSON of the record without hash), hex.
    pub hash: String,
}

/// The last record as recorded in the `head` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// What verifying the log found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub segments: u32,
    pub records: u64,
    pub last_seq: u64,
    pub last_hash: String,
    /// What the head file (or the running daemon) says the last record is.
    pub head: Option<Head>,
    /// Problems, in log order (at most 100).
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    pub segment: String,
    /// 1-based line in the segment (0: the segment or log as a whole).
    pub line: u64,
    #[serde(default)]
    pub seq: Option<u64>,
    pub reason: String,
}
