//! Slice cgroups: cgroup v1 and v2, detected at runtime.
//!
//! A slice's cgroup is addressed by a path below the root of every hierarchy (`vslice/web1`
//! is `/sys/fs/cgroup/<controller>/vslice/web1` on v1 and `/sys/fs/cgroup/vslice/web1` on
//! v2), never relative to the caller's own cgroup: the daemon itself may sit in someone
//! else's cgroup (on the build host its memory cgroup is `/process_api/...`), and nothing
//! may be created or written under that.
//!
//! # Why the cgroupfs files are written directly instead of through cgroups-rs
//!
//! The original design named cgroups-rs, but what vslice needs is a dozen control files, and cgroups-rs
//! 0.5.1 (read at the source) fits badly:
//! * On v1, `Cgroup::new`/`load` create the group in every v1 hierarchy the crate knows and
//!   finds mounted (blkio, devices, net_cls, hugetlb, perf_event, ...), not only the six
//!   controllers vslice uses, unless one goes through `new_with_specified_controllers`.
//! * Its v1 `MemController::apply` always writes the memory limit before the memory+swap
//!   limit, so raising both at once on a live slice fails with EINVAL (the kernel keeps
//!   memory <= memory+swap at every moment). Failures to copy cpuset.cpus/mems from the
//!   parent into a new cpuset group are only logged, not returned.
//! * Its errors often do not name the file: `create` maps `create_dir_all` to a bare
//!   `FsError`, `delete` returns `RemoveFailed` ("unable to remove a control group"). Every
//!   error here names its path and operation, which is what an operator can act on.
//! * Its OCI conversion (`oci` feature, `FsManager`) is built on oci-spec 0.10 while vslice
//!   uses oci-spec 0.7, and the crate depends on nix 0.25 next to our nix 0.29; the API also
//!   moved (the filesystem API now lives under `cgroups_rs::fs`, while its README still shows
//!   the older `cgroups_rs::cgroup_builder` paths).
//!
//! # Structure
//!
//! Like youki's libcgroups and Firecracker's jailer, the version-specific parts sit behind a
//! small trait (`Backend`) with a v1 implementation (`v1::V1`: one directory per mounted
//! hierarchy) and a v2 implementation (`v2::V2`: one unified directory). What is the same
//! for both (moving pids, listing them, killing, removing) is written once here in terms of
//! the directories a backend reports.
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

mod files;
mod mountinfo;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

/// How long kill_all keeps killing before it gives up on a cgroup that does not empty.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long destroy retries rmdir while killed tasks are still leaving (EBUSY).
const RMDIR_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for a freeze to complete. A task in uninterruptible sleep can keep a
/// cgroup FREEZING indefinitely; we then kill anyway (the freeze is an optimisation that
/// stops forks and makes the pid list stable, not a precondition of SIGKILL).
const FREEZE_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A file operation on cgroupfs failed (read, list, mkdir, rmdir).
    #[error("{0}")]
    Io(#[from] crate::util::fs::PathError),
    /// Writing a value into a control file failed (the kernel rejected the value, the file
    /// does not exist, the cgroup is busy...).
    #[error("write {path}: {source} (value {value:?})")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    /// The request is invalid: a bad cgroup path, inconsistent limits.
    #[error("cgroup {path}: {reason}")]
    Invalid { path: String, reason: String },
    /// The host cannot honour the request (controller not mounted, swap accounting off).
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    /// A control file held something we could not parse.
    #[error("parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// Sending SIGKILL to a member of the cgroup failed.
    #[error("kill -9 {pid} (member of {path}): {source}")]
    Kill {
        pid: i32,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// The cgroup did not empty within the bound.
    #[error("{op} {path}: gave up after {waited_ms} ms: {detail}")]
    Timeout {
        op: &'static str,
        path: PathBuf,
        waited_ms: u128,
        detail: String,
    },
}

impl CgroupError {
    /// The errno behind this error, if it came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            CgroupError::Io(e) => e.source.raw_os_error(),
            CgroupError::Write { source, .. } => source.raw_os_error(),
            CgroupError::Kill { source, .. } => Some(*source as i32),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    V1,
    V2,
}

/// Per-slice usage read from the kernel; a wire type, see [`crate::proto::slice::Usage`].
pub use crate::proto::slice::Usage;

/// Detect the cgroup layout of this host. A hybrid host (v1 controllers plus an empty v2
/// mount at /sys/fs/cgroup/unified, like the build host) is V1: the controllers vslice
/// needs are on the v1 hierarchies.
pub fn detect() -> Version {
    if Path::new(v2::ROOT).join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// The hierarchy a process's slice is told from by cgroup alone (the exec log's BPF program,
/// audit/exec_bpf.rs): the unified root on v2 (`None` controller), the `pids` hierarchy on v1
/// (every slice has a pids cgroup; `Some("pids")`, whose index in css_set.subsys is its line
/// in /proc/cgroups).
pub fn attribution_hierarchy() -> Result<(PathBuf, Option<&'static str>), CgroupError> {
    match detect() {
        Version::V2 => Ok((PathBuf::from(v2::ROOT), None)),
        Version::V1 => {
            let v1 = v1::V1::load()?;
            let mount = v1.mount("pids").ok_or_else(|| CgroupError::Unsupported {
                path: PathBuf::from("/proc/self/mountinfo"),
                reason: "the cgroup v1 pids controller is not mounted".into(),
            })?;
            Ok((mount.to_path_buf(), Some("pids")))
        }
    }
}

/// cgroup v2 `cpu.weight` for a v1/OCI `cpu.shares` value: linear, so that the defaults
/// line up (shares 1024 ↔ weight 100) and the ratio between two slices is the same under
/// either version: `weight = clamp(shares * 100 / 1024, 1, 10000)`.
///
/// Note: runc and crun use a different formula, `1 + (shares - 2) * 9999 / 262142`, which
/// maps the whole v1 range [2, 262144] onto [1, 10000] but turns the default 1024 into 39.
/// vslice's own spec speaks in weights around a default of 100, so the linear mapping is
/// the one that keeps a slice's weight unchanged through OCI's shares field.
pub fn cpu_weight_from_shares(shares: u64) -> u64 {
    (shares.saturating_mul(100) / 1024).clamp(1, 10000)
}

/// The v1/OCI `cpu.shares` value for a v2-style weight (1..=10000), the inverse of
/// [`cpu_weight_from_shares`]: rounded up, so converting back gives the same weight.
pub fn cpu_shares_from_weight(weight: u64) -> u64 {
    (weight.clamp(1, 10000) * 1024).div_ceil(100)
}

/// What differs between cgroup v1 and v2. Paths passed in are validated, relative, and
/// non-empty (see [`Cgroup::rel`]).
pub(crate) trait Backend: Send + Sync {
    /// The hierarchy roots a slice cgroup lives in: one per distinct v1 mount of the
    /// controllers vslice uses (cpu, cpuacct, cpuset, memory, pids, freezer; co-mounted
    /// controllers share one), or the single v2 root.
    fn roots(&self) -> Vec<PathBuf>;
    /// Make the cgroup (and missing parents) in every hierarchy; idempotent.
    fn create(&self, rel: &Path) -> Result<(), CgroupError>;
    /// Write the limits in `res` (live: the cgroup may have running processes).
    fn apply(&self, rel: &Path, res: &LinuxResources) -> Result<(), CgroupError>;
    fn usage(&self, rel: &Path) -> Result<Usage, CgroupError>;
    /// Kill the whole subtree with one kernel operation (v2 cgroup.kill, Linux 5.14).
    /// `Ok(false)` when the kernel has no such operation.
    fn kill_at_once(&self, rel: &Path) -> Result<bool, CgroupError>;
    /// Freeze (true) or thaw (false) the subtree; a freeze waits (bounded) until it has
    /// taken effect. `Ok(false)` when there is no freezer for this cgroup.
    fn set_frozen(&self, rel: &Path, frozen: bool) -> Result<bool, CgroupError>;

    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        self.roots().into_iter().map(|r| r.join(rel)).collect()
    }
}

fn backend(version: Version) -> Result<Box<dyn Backend>, CgroupError> {
    Ok(match version {
        Version::V1 => Box::new(v1::V1::load()?),
        Version::V2 => Box::new(v2::V2::new()),
    })
}

/// Reads the usage of many cgroups with one look at the hierarchy layout: `list` reads every
/// slice's, and finding the layout (version, v1 mount points checked by statfs) per slice was
/// eight lookups each.
pub struct UsageReader {
    backend: Box<dyn Backend>,
}

impl UsageReader {
    pub fn new() -> Result<UsageReader, CgroupError> {
        Ok(UsageReader {
            backend: backend(detect())?,
        })
    }

    /// The counters of cgroup `path` (relative to the hierarchy roots, as [`Cgroup::new`]).
    pub fn usage(&self, path: &str) -> Result<Usage, CgroupError> {
        self.backend.usage(validate(path.trim_matches('/'))?)
    }
}

/// Check a cgroup path: relative, non-empty, plain names only. An empty path would address
/// the hierarchy root (kill_all there would kill the host) and `..` would escape `vslice/`.
fn validate(path: &str) -> Result<&Path, CgroupError> {
    let invalid = |reason: &str| CgroupError::Invalid {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.is_empty() {
        return Err(invalid("empty path would address the hierarchy root"));
    }
    if path.contains('\0') || path.contains('\n') {
        return Err(invalid("path contains a NUL or newline"));
    }
    if path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(invalid(
            "path must be relative with single slashes (e.g. vslice/web1)",
        ));
    }
    let p = Path::new(path);
    if !p.components().all(|c| matches!(c, Component::Normal(_)))
        || path.split('/').any(|c| c == ".")
    {
        return Err(invalid("path components must be plain names (no . or ..)"));
    }
    Ok(p)
}

/// One cgroup, addressed by an absolute path below the root of every hierarchy
/// (e.g. `vslice/web1`), never relative to the caller's own cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub version: Version,
    /// Path below the hierarchy root, without leading slash.
    pub path: String,
}

impl Cgroup {
    pub fn new(path: &str) -> Cgroup {
        Cgroup {
            version: detect(),
            path: path.trim_matches('/').to_string(),
        }
    }

    /// The validated relative path. Every operation goes through this, so a `Cgroup` built
    /// from a bad name (or with its pub field changed) fails instead of touching the root.
    fn rel(&self) -> Result<&Path, CgroupError> {
        validate(&self.path)
    }

    /// The directories of this cgroup: one per v1 hierarchy vslice uses, or the v2 one.
    pub fn dirs(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let rel = self.rel()?;
        Ok(backend(self.version)?.dirs(rel))
    }

    /// Create in every controller vslice uses; idempotent. Parents are created as needed
    /// (v1: cpuset.cpus/mems are copied down each new level, or no task could join; v2:
    /// cpu, cpuset, memory and pids are enabled in each ancestor's cgroup.subtree_control).
    pub fn create(&self) -> Result<(), CgroupError> {
        let rel = self.rel()?;
        backend(self.version)?.create(rel)
    }

    /// Apply resources (cpu shares/quota/period/cpus/mems, memory limit/swap, pids limit;
    /// on v2 also the `unified` map). Works on a cgroup with running processes.
    ///
    /// OCI semantics: `None` leaves a value unchanged; a negative limit (-1) means
    /// unlimited; 0 for cpu shares/quota/period, memory limit/swap and pids limit means
    /// "not set" (as runc treats Go's zero value). `memory.swap` is the memory+swap total.
    /// Requesting a finite swap limit on a host without swap accounting is an error naming
    /// the missing file (silently ignoring it would leave the slice able to swap without
    /// bound). Other fields (devices, blockIO, hugepages, network, rdma, kernel memory,
    /// swappiness, reservation, cpu idle/burst/realtime) are not applied by this module.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        let rel = self.rel()?;
        backend(self.version)?.apply(rel, res)
    }

    /// Move a process (all its threads) into this cgroup (all controllers). On v1 this is
    /// one write per hierarchy: if one fails, the process may already have moved in the
    /// hierarchies before it; the error names the file that failed.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let rel = self.rel()?;
        if pid <= 0 {
            // Writing 0 to cgroup.procs moves the writer itself.
            return Err(CgroupError::Invalid {
                path: self.path.clone(),
                reason: format!("invalid pid {pid}"),
            });
        }
        for dir in backend(self.version)?.dirs(rel) {
            files::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Every process in the cgroup and its descendant cgroups (in any of its hierarchies),
    /// sorted. A cgroup that does not exist has none.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let rel = self.rel()?;
        all_pids(&backend(self.version)?.dirs(rel))
    }

    pub fn usage(&self) -> Result<Usage, CgroupError> {
        UsageReader::new()?.usage(&self.path)
    }

    /// True if the cgroup exists in at least one hierarchy vslice uses, i.e. there is
    /// something for `destroy` to remove. A half-made cgroup (an interrupted `create`) counts
    /// as existing, so `if exists() { destroy() }` cleans it up; `create` is idempotent and
    /// completes it. See [`Cgroup::is_complete`] for "exists everywhere".
    pub fn exists(&self) -> bool {
        self.existing().is_some_and(|(n, _)| n > 0)
    }

    /// True if the cgroup exists in every hierarchy vslice uses.
    pub fn is_complete(&self) -> bool {
        self.existing()
            .is_some_and(|(n, total)| n > 0 && n == total)
    }

    /// (directories that exist, directories in total); None for an invalid path or host.
    fn existing(&self) -> Option<(usize, usize)> {
        let rel = self.rel().ok()?;
        let dirs = backend(self.version).ok()?.dirs(rel);
        Some((dirs.iter().filter(|d| d.is_dir()).count(), dirs.len()))
    }

    /// SIGKILL every process in the cgroup and its descendants and wait (bounded, 2 s) until
    /// cgroup.procs is empty everywhere.
    ///
    /// v2 with cgroup.kill: one write. Otherwise: freeze (so that nothing can fork away and
    /// pids in the list cannot exit and be reused while we signal them), SIGKILL every pid,
    /// thaw (a frozen v1 task only dies once thawed), repeat until empty. Killed processes
    /// whose parent is outside the cgroup stay zombies until that parent reaps them: they
    /// are no longer members and do not block `destroy`, but pids.current counts them until
    /// they are reaped. Refuses to run if the calling process is itself a member.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let rel = self.rel()?;
        let b = backend(self.version)?;
        let dirs = b.dirs(rel);
        let Some(first) = dirs.iter().find(|d| d.is_dir()).cloned() else {
            return Ok(()); // nothing to kill
        };
        let start = Instant::now();
        let me = std::process::id() as i32;
        loop {
            let pids = all_pids(&dirs)?;
            if pids.is_empty() {
                return Ok(());
            }
            if pids.contains(&me) {
                return Err(CgroupError::Invalid {
                    path: self.path.clone(),
                    reason: format!(
                        "refusing to kill the calling process ({me}), which is a member"
                    ),
                });
            }
            if start.elapsed() > KILL_TIMEOUT {
                return Err(CgroupError::Timeout {
                    op: "kill all in",
                    path: first,
                    waited_ms: start.elapsed().as_millis(),
                    detail: format!("processes still present: {pids:?}"),
                });
            }
            if !b.kill_at_once(rel)? {
                kill_frozen(b.as_ref(), rel, &dirs, &first, me)?;
            }
            wait_empty(&dirs, Duration::from_millis(100))?;
        }
    }

    /// Remove from every controller, deepest sub-cgroup first; idempotent (a missing cgroup
    /// is success); kills remaining processes first. The parent (`vslice`) is left alone:
    /// other slices live there (see [`remove_parent_if_empty`]).
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let rel = self.rel()?;
        let b = backend(self.version)?;
        self.kill_all()?;
        let deadline = Instant::now() + RMDIR_TIMEOUT;
        for dir in b.dirs(rel) {
            for d in files::subtree_deepest_first(&dir)? {
                files::rmdir_retry(&d, deadline)?;
            }
        }
        Ok(())
    }
}

/// Remove the parent cgroup (e.g. `vslice`) from every hierarchy where it has no child
/// cgroups left. Returns true if it is gone everywhere, false if it is still in use
/// somewhere (children, or tasks placed directly in it); it is never forced.
pub fn remove_parent_if_empty(parent: &str) -> Result<bool, CgroupError> {
    let rel = validate(parent.trim_matches('/'))?;
    let mut gone = true;
    for dir in backend(detect())?.dirs(rel) {
        if !dir.is_dir() {
            continue;
        }
        if files::has_children(&dir)? {
            gone = false;
            continue;
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // A child appeared since we looked, or tasks sit in the parent itself: in use.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOTEMPTY)) => {
                gone = false
            }
            Err(e) => return Err(crate::util::fs::PathError::new("rmdir", &dir, e).into()),
        }
    }
    Ok(gone)
}

/// Union of cgroup.procs over every directory and its descendants.
fn all_pids(dirs: &[PathBuf]) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    for dir in dirs {
        for d in files::subtree_deepest_first(dir)? {
            pids.extend(files::procs(&d)?);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// One round of freeze, SIGKILL everything, thaw. The thaw happens even if killing failed,
/// so an error never leaves a slice frozen.
fn kill_frozen(
    b: &dyn Backend,
    rel: &Path,
    dirs: &[PathBuf],
    first: &Path,
    me: i32,
) -> Result<(), CgroupError> {
    let frozen = b.set_frozen(rel, true)?;
    let killed = (|| {
        for pid in all_pids(dirs)? {
            if pid == me {
                continue; // checked by the caller; never signal ourselves
            }
            match nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            ) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(source) => {
                    return Err(CgroupError::Kill {
                        pid,
                        path: first.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Ok(())
    })();
    let thawed = if frozen {
        b.set_frozen(rel, false).map(|_| ())
    } else {
        Ok(())
    };
    killed.and(thawed)
}

/// Poll until no process is left or `max` has passed.
fn wait_empty(dirs: &[PathBuf], max: Duration) -> Result<(), CgroupError> {
    let start = Instant::now();
    while start.elapsed() < max {
        if all_pids(dirs)?.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A limit as OCI expresses it (i64, -1 = unlimited, 0 = not set), made explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Max,
    Bytes(u64),
}

impl Limit {
    /// `None` for unset (None or 0), `Max` for negative, else the value.
    pub(crate) fn from_oci(v: Option<i64>) -> Option<Limit> {
        match v {
            None | Some(0) => None,
            Some(n) if n < 0 => Some(Limit::Max),
            Some(n) => Some(Limit::Bytes(n as u64)),
        }
    }
}

/// Check memory against memory+swap (OCI `swap` is the total, so it may not be below the
/// memory limit, and a finite total needs a finite memory limit).
pub(crate) fn check_memory_swap(
    path: &str,
    memory: Option<Limit>,
    swap: Option<Limit>,
) -> Result<(), CgroupError> {
    let invalid = |reason: String| CgroupError::Invalid {
        path: path.to_string(),
        reason,
    };
    match (memory, swap) {
        (Some(Limit::Bytes(m)), Some(Limit::Bytes(s))) if s < m => Err(invalid(format!(
            "memory.swap ({s}) is the memory+swap total and must not be below memory.limit ({m})"
        ))),
        (Some(Limit::Max), Some(Limit::Bytes(s))) => Err(invalid(format!(
            "memory.swap ({s}) is finite but memory.limit is unlimited"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn shares_to_weight_is_linear_around_the_defaults() {
        assert_eq!(cpu_weight_from_shares(1024), 100);
        assert_eq!(cpu_weight_from_shares(512), 50);
        assert_eq!(cpu_weight_from_shares(2048), 200);
        assert_eq!(cpu_weight_from_shares(2), 1); // clamped up
        assert_eq!(cpu_weight_from_shares(0), 1);
        assert_eq!(cpu_weight_from_shares(262144), 10000); // v1 max → clamped down
        assert_eq!(cpu_weight_from_shares(u64::MAX), 10000); // no overflow
        assert_eq!(cpu_shares_from_weight(100), 1024);
        for w in 1..=10000 {
            assert_eq!(
                cpu_weight_from_shares(cpu_shares_from_weight(w)),
                w,
                "weight {w}"
            );
        }
    }

    #[test]
    fn bad_paths_are_refused_before_touching_anything() {
        for bad in [
            "",
            "..",
            "vslice/../process_api",
            "vslice/./x",
            "a//b",
            "/abs",
            "x\0y",
        ] {
            let err = validate(bad).unwrap_err();
            assert!(matches!(err, CgroupError::Invalid { .. }), "{bad:?}: {err}");
        }
        assert!(validate("vslice/web1").is_ok());
        // Cgroup::new trims slashes, but an empty result must still be refused everywhere.
        let root = Cgroup::new("/");
        assert!(matches!(root.kill_all(), Err(CgroupError::Invalid { .. })));
        assert!(matches!(root.destroy(), Err(CgroupError::Invalid { .. })));
        assert!(matches!(root.pids(), Err(CgroupError::Invalid { .. })));
        assert!(!root.exists());
        let err = Cgroup::new("vslice/x").add_pid(0).unwrap_err();
        assert!(err.to_string().contains("vslice/x"), "{err}");
    }

    #[test]
    fn oci_limits_and_swap_consistency() {
        assert_eq!(Limit::from_oci(None), None);
        assert_eq!(Limit::from_oci(Some(0)), None);
        assert_eq!(Limit::from_oci(Some(-1)), Some(Limit::Max));
        assert_eq!(Limit::from_oci(Some(4096)), Some(Limit::Bytes(4096)));
        let b = |n| Some(Limit::Bytes(n));
        assert!(check_memory_swap("s", b(100), b(100)).is_ok());
        assert!(check_memory_swap("s", b(100), Some(Limit::Max)).is_ok());
        assert!(check_memory_swap("s", None, b(100)).is_ok());
        let err = check_memory_swap("vslice/s", b(200), b(100)).unwrap_err();
        assert!(err.to_string().contains("vslice/s"), "{err}");
        assert!(check_memory_swap("s", Some(Limit::Max), b(100)).is_err());
    }
}
