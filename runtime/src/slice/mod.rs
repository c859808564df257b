//! Slices: spec, policy, uid ranges, the on-disk state store and the lifecycle
//! (create, start, stop, exec, update, destroy). Everything here is synchronous and callable
//! from the CLI directly or from the daemon via `spawn_blocking`.
pub mod console;
pub mod files;
pub(crate) mod files_cache;
pub mod manager;
pub mod oci;
pub mod policy;
pub mod spec;
pub mod state;
pub mod volumes;

pub use manager::{Manager, SliceError};
pub use spec::*;
