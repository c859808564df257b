//! vslice: slices — long-lived, vserver-style system containers on one Linux node.
//!
//! Dependency direction (a module may only use the ones below it):
//!
//! ```text
//! cli (src/bin)            the `vslice` command
//!   slice                  spec, policy, uid ranges, state store, lifecycle
//!     sandbox  cgroup  image  net      one kernel concern each
//!       util                         atomic files, small helpers
//! ```
pub mod api;
pub mod audit;
pub mod cgroup;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod image;
pub mod net;
pub mod oci;
pub mod proto;
pub mod sandbox;
pub mod slice;
pub mod util;
