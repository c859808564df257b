//! Request and reply bodies of the HTTP API. They are defined in [`crate::proto`] (shared by
//! the daemon and [`crate::client`], and the source of the OpenAPI document); this module
//! re-exports them at the paths the handlers use.
pub use crate::proto::api::*;
pub use crate::proto::audit::{Head, Problem, Record as AuditRecord, VerifyReport};
pub use crate::proto::events::{Event, EventKind};
pub use crate::proto::image::Image;
