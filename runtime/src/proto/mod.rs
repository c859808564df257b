//! The wire types of the daemon's HTTP API: every request and reply body, the event stream,
//! the audit log's records. Both sides use them — the daemon ([`crate::api`]) and the client
//! ([`crate::client`]) — and the OpenAPI document (`GET /v1/openapi.json`,
//! [`crate::api::openapi`]) is generated from them (`utoipa::ToSchema`), so the document and
//! the types cannot disagree.
//!
//! This module depends on nothing else of the crate: a client needs only `proto` (plus the
//! HTTP transport in [`crate::client`]). The modules that own the behaviour re-export the types
//! at their old paths (`crate::slice::Limits`, `crate::audit::Record`, …) and keep the
//! inherent methods (validation, I/O) next to that behaviour.
pub mod accounting;
pub mod api;
pub mod audit;
pub mod disk;
pub mod events;
pub mod files;
pub mod image;
pub mod image_import;
pub mod net;
pub mod slice;
pub mod snapshot;
pub mod ssh;
pub mod volume;

pub use api::*;
pub use audit::{
    Caller as AuditCaller, ControlRecord, DaemonRecord, Entry as AuditEntry, Head, Outcome,
    Problem, Record as AuditRecord, VerifyReport,
};
pub use disk::{DiskBacking, DiskUsage};
pub use events::{Event, EventKind};
pub use files::{CopyResult, FilesQuery, LogsQuery};
pub use image::Image;
pub use net::*;
pub use slice::*;
pub use ssh::{KeyAdd, SshKey};
pub use volume::Volume;

/// The operators' socket: every route.
pub const DEFAULT_SOCKET: &str = "/run/vslice/vslice.sock";
/// The slice owners' socket: public and owner routes.
pub const DEFAULT_USER_SOCKET: &str = "/run/vslice/user.sock";
