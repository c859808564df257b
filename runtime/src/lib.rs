//! vslice: slices — long-lived, vserver-style system containers on one Linux node.
//!
//! The design (process model, layers, state layout, invariants) is docs/design.md. Dependency
//! direction (a module may only use the ones below it):
//!
//! ```text
//! bin/ (vslice, vsliced, vslice-runc)   shim/ (vslice-shim, its own crate)
//!   cli                  the vslice command (through client, or daemon::direct)
//!   api                  HTTP routes, authorization, OpenAPI, metrics
//!   client               the API client
//!   oci                  the runc-compatible commands
//!   daemon               config, callers, locks, events, reconcile, direct mode
//!   slice                spec, policy, uid ranges, state store, lifecycle
//!   sandbox cgroup net image audit      one kernel concern each
//!   config util          paths and overrides; atomic files, path-naming errors
//! ```
pub mod api;
pub mod audit;
pub mod cgroup;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod disk;
pub mod hostcheck;
pub mod image;
pub mod net;
pub mod oci;
pub mod proto;
pub mod sandbox;
pub mod slice;
pub mod snapshot;
pub mod ssh;
pub mod util;
pub mod views;
