//! Wire types of the accountability queries: `GET /v1/who` (which slice talked to a remote
//! address around a time) and the flow records of `GET /v1/audit/flows`. The records
//! themselves are stored by [`crate::audit::records`] and collected by
//! [`crate::audit::flows`].
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Query of `GET /v1/who`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct WhoParams {
    /// The complainant's address, optionally with the port (`203.0.113.7:22`).
    pub remote: String,
    /// `tcp` or `udp` (default: both).
    pub proto: Option<String>,
    /// When (RFC 3339, date or epoch seconds).
    pub at: String,
    /// Half-width of the window around `at` (`10m`, `90s`, `2h`; default 10m).
    pub window: Option<String>,
}

/// How a flow ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowEnd {
    #[schema(format = DateTime)]
    pub time: String,
    /// Seconds the connection lived (conntrack timestamps), when known.
    pub duration_s: Option<u64>,
}

/// One flow that matches a complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoFlow {
    pub slice: String,
    /// The slice's owners when the flow was recorded.
    pub owners: Vec<String>,
    /// Host veth the flow was attributed by.
    pub veth: String,
    pub proto: String,
    /// `out`: the slice connected to the remote; `in`: the remote connected through a port
    /// forward.
    pub direction: String,
    pub slice_addr: String,
    pub slice_port: Option<u16>,
    /// The address and port the remote saw (after NAT / before the port forward).
    pub public_addr: String,
    pub public_port: Option<u16>,
    pub remote_addr: String,
    pub remote_port: Option<u16>,
    #[schema(format = DateTime)]
    pub first_seen: String,
    #[schema(format = DateTime)]
    pub last_seen: String,
    pub end: Option<FlowEnd>,
    pub bytes_from_slice: Option<u64>,
    pub bytes_to_slice: Option<u64>,
    /// The process that held the slice's end of the connection right after it began, when
    /// found (see audit/owner.rs for how and the limits: a socket closed within a few ms is
    /// not found, and the field is null).
    pub process: Option<FlowProcess>,
}

/// A process named by the flow log (host view and the slice's own view).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct FlowProcess {
    /// Host pid.
    pub pid: u32,
    pub pid_in_slice: Option<u32>,
    /// Parent, host pid.
    pub ppid: Option<u32>,
    /// Host uid.
    pub uid: Option<u32>,
    pub uid_in_slice: Option<u64>,
    pub comm: String,
    /// The executable (`/proc/<pid>/exe`, as the host sees its path).
    pub path: Option<String>,
    /// Bounded command line.
    pub argv: Option<Vec<String>>,
}

/// Answer of `GET /v1/who`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAnswer {
    pub remote: String,
    pub port: Option<u16>,
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    /// Slices with a matching flow.
    pub slices: Vec<String>,
    pub flows: Vec<WhoFlow>,
    /// The flow log lost records in (or near) the window: the answer may be incomplete.
    pub lossy: bool,
    pub lost: u64,
}

/// Query of `GET /v1/audit/flows` (and `execs`, `sessions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct KindQuery {
    pub slice: Option<String>,
    /// Start (RFC 3339, date or epoch seconds; default: 24 hours ago).
    pub since: Option<String>,
    /// End (default: now).
    pub until: Option<String>,
    /// At most this many records (default 10000).
    pub limit: Option<usize>,
}

/// One direction of a connection as conntrack saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowTuple {
    pub src: String,
    pub dst: String,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// A stored flow record (one line of `<root>/audit/flows/*.ndjson`, `GET /v1/audit/flows`).
/// `event`: `new` (conntrack NEW, with `process` when the lookup found it), `end` (DESTROY,
/// with counters), `seen` (periodic or resync listing, with counters), `loss` (conntrack lost
/// events; `reason`); logs from before the lookup moved into `new` also have `proc` (the
/// process of a `new` flow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowRecord {
    pub seq: u64,
    #[schema(format = DateTime)]
    pub time: String,
    /// Always `flows`.
    pub kind: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owners: Option<Vec<String>>,
    /// Host veth of the slice (what the flow was attributed by, through its mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub veth: Option<String>,
    /// Conntrack mark (node prefix | slice address id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct_id: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// `out` (the slice connected) or `in` (through a port forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig: Option<FlowTuple>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<FlowTuple>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_orig: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_orig: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_reply: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_reply: Option<Option<u64>>,
    /// Seconds the connection lived (`end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// Why events were lost (`loss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Records dropped (full disk) just before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_before: Option<u64>,
    /// The process holding the slice's socket (on `new`, when found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<FlowProcess>,
    pub prev_hash: String,
    pub hash: String,
}

/// A stored exec record (one line of `<root>/audit/execs/*.ndjson`, `GET /v1/audit/execs`).
/// `event`: `exec`, or `loss` (process events lost; `reason`). Path and argv are read from
/// /proc after the exec: a process gone by then has `gone: true` and no path/argv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecRecord {
    pub seq: u64,
    #[schema(format = DateTime)]
    pub time: String,
    /// Always `execs`.
    pub kind: String,
    pub event: String,
    /// Where the record came from: `bpf` (the eBPF program) or `proc_connector` (the fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// The slice's cgroup id, when its cgroup was gone before its name could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_cgroup_id: Option<u64>,
    /// Host pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_in_slice: Option<Option<u32>>,
    /// Parent's host pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<Option<u32>>,
    /// Host uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Option<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_in_slice: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Option<Vec<String>>>,
    /// argv was longer than 4 KiB and was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv_truncated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_before: Option<u64>,
    /// A `loss` record of the eBPF source: execs the full ring buffer could not take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    pub prev_hash: String,
    pub hash: String,
}
