//! `vslice-runc`: a runc-compatible OCI runtime command on top of the sandbox executor.
//!
//! containerd's `io.containerd.runc.v2` shim (and through it Kubernetes, with a RuntimeClass)
//! drives a runtime binary through runc's command line; this module implements that command
//! line with the same executor as slices ([`crate::sandbox::create_with`],
//! [`crate::sandbox::join`]): no second implementation of namespaces, mounts, cgroups or
//! seccomp lives here. What is here is the OCI-specific part:
//!
//! * [`state`]: the container's state under `--root/<id>/` (state.json written atomically,
//!   the resolved config, the start FIFO). Status is derived from the kernel each time it is
//!   asked: init alive (same start time, not a zombie) and the FIFO still present = created;
//!   alive without FIFO = running (or paused if its freezer says so); otherwise stopped.
//! * [`spec`]: reading a bundle's config.json through oci-spec, resolving `root.path` and
//!   `cgroupsPath` (including systemd's `slice:prefix:name` form, mapped to a plain path), and
//!   refusing what vslice cannot honour instead of silently dropping it.
//! * [`hooks`]: the six OCI hook points, state JSON on stdin, timeouts.
//! * [`devices`]: the device cgroup (`linux.resources.devices`) on cgroup v1.
//! * [`commands`]: create, start, state, kill, delete, run, exec, ps, list, pause, resume,
//!   update, features, spec.
//! * [`cli`]: clap definitions and the global flags (`--root`, `--log`, `--log-format`,
//!   `--systemd-cgroup`, `--debug`).
pub mod cli;
pub mod commands;
pub mod cri;
pub mod devices;
pub mod hooks;
pub mod log;
pub mod spec;
pub mod state;

/// Every failure of an OCI command: a message that names what failed (crun style).
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<crate::sandbox::SandboxError> for Error {
    fn from(e: crate::sandbox::SandboxError) -> Self {
        Error(e.to_string())
    }
}

impl From<crate::sandbox::seccomp::SeccompError> for Error {
    fn from(e: crate::sandbox::seccomp::SeccompError) -> Self {
        Error(e.to_string())
    }
}

impl From<crate::cgroup::CgroupError> for Error {
    fn from(e: crate::cgroup::CgroupError) -> Self {
        Error(e.to_string())
    }
}

impl From<crate::util::fs::PathError> for Error {
    fn from(e: crate::util::fs::PathError) -> Self {
        Error(e.to_string())
    }
}

impl From<String> for Error {
    fn from(e: String) -> Self {
        Error(e)
    }
}

impl From<&str> for Error {
    fn from(e: &str) -> Self {
        Error(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Build an [`Error`] with format arguments.
#[macro_export]
#[doc(hidden)]
macro_rules! oci_err {
    ($($arg:tt)*) => { $crate::oci::Error(format!($($arg)*)) };
}
pub(crate) use oci_err as err;

/// Attach context to an io::Result.
pub(crate) fn io_ctx<T>(
    r: std::io::Result<T>,
    op: &str,
    path: impl AsRef<std::path::Path>,
) -> Result<T> {
    r.map_err(|e| Error(format!("{op} {}: {e}", path.as_ref().display())))
}

/// The OCI runtime-spec version this runtime implements (reported by `state` and `features`).
pub const OCI_VERSION: &str = "1.0.2";
