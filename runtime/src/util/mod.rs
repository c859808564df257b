//! Small helpers shared by every module: crash-safe files and path-naming errors.
pub mod fs;
pub(crate) mod netlink;
pub mod process;
