//! Disk quotas and block I/O limits of a slice (issue #12).
//!
//! What a slice writes lands in its overlay upper and work directories, both under
//! `<slice>/fs/`. A slice created with `limits.disk_max` gets that directory capped, in one of
//! two ways, chosen at creation and recorded in `<slice>/disk.json`:
//!
//! * **project** ([`quota`]): the state root's filesystem has project quotas (ext4 with the
//!   `project` feature mounted `prjquota`, or XFS `pquota`). `fs/` gets the slice's project id
//!   and PROJINHERIT before upper and work are made in it, and the project's byte and inode
//!   limits are set with quotactl. No copy, no extra mount; `df` inside the slice shows the
//!   quota (ext4 and XFS report a PROJINHERIT directory's project limits in statfs, and
//!   overlayfs answers statfs from its upper directory).
//! * **loop** ([`loopdev`]): otherwise, a sparse ext4 image `<slice>/disk.img` that the shim
//!   attaches to a loop device (direct I/O) and mounts on `fs/` in its private mount
//!   namespace at each start; `df` inside shows the image's filesystem.
//!
//! The project id of a slice is its uid base (unique per slice on the node, far from the ids
//! people give projects by hand). Block I/O limits ([`blkio`]) go on the device under `fs/`.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod blkio;
pub mod loopdev;
pub mod quota;

use crate::proto::disk::{DiskBacking, DiskUsage};
use crate::proto::slice::Limits;

/// The record of how a slice's disk is capped, in its directory.
pub const DISK_FILE: &str = "disk.json";
/// The loop-backed slice's image, in its directory.
pub const IMAGE_FILE: &str = "disk.img";
/// The smallest quota: an ext4 image needs room for its metadata and journal.
pub const MIN_DISK: u64 = 32 << 20;
/// The smallest inode limit.
pub const MIN_INODES: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An external tool (mkfs.ext4, e2fsck, resize2fs) failed.
    #[error("{0}")]
    Tool(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("no loop device is attached to {0} (is the slice running?)")]
    NotAttached(PathBuf),
    /// The change needs the slice stopped (the reason says why).
    #[error("{0}")]
    NeedsStop(String),
    /// A request the disk cannot honour (the message names the field).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl DiskError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> DiskError {
        DiskError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// `<slice>/disk.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backing", rename_all = "lowercase")]
pub enum DiskRecord {
    Project { projid: u32 },
    Loop { owner: u32 },
}

/// Check the disk and io fields of `l` (limits of their own; the policy has no say yet).
pub fn validate(l: &Limits) -> Result<(), DiskError> {
    let invalid = |field, reason: String| Err(DiskError::Invalid { field, reason });
    if let Some(d) = l.disk_max {
        if d < MIN_DISK {
            return invalid(
                "limits.disk_max",
                format!("{d} bytes: must be at least {MIN_DISK} (32M)"),
            );
        }
    }
    if let Some(n) = l.inodes_max {
        if l.disk_max.is_none() {
            return invalid(
                "limits.inodes_max",
                "an inode limit needs a disk quota (disk_max)".into(),
            );
        }
        if n < MIN_INODES {
            return invalid(
                "limits.inodes_max",
                format!("{n}: must be at least {MIN_INODES}"),
            );
        }
    }
    if let Some(w) = l.io_weight {
        if !(1..=1000).contains(&w) {
            return invalid("limits.io_weight", format!("{w} is outside 1..=1000"));
        }
    }
    Ok(())
}

/// Which way `slices_dir`'s filesystem can cap a slice.
pub fn detect(slices_dir: &Path) -> DiskBacking {
    if quota::enforced(slices_dir) {
        DiskBacking::Project
    } else {
        DiskBacking::Loop
    }
}

/// Cap `<dir>/fs` (empty, just made, before upper and work are made in it) per `l`; `dir` is
/// the slice's directory under construction. Does nothing without `disk_max`. On failure,
/// what it made is undone by [`release`] (the caller removes the directory).
pub fn provision(dir: &Path, uid_base: u32, l: &Limits) -> Result<(), DiskError> {
    let Some(bytes) = l.disk_max else {
        return Ok(());
    };
    let fs = dir.join("fs");
    let record = match detect(dir) {
        DiskBacking::Project => {
            quota::tag(&fs, uid_base)?;
            quota::set_limits(&fs, uid_base, bytes, l.inodes_max.unwrap_or(0))?;
            DiskRecord::Project { projid: uid_base }
        }
        DiskBacking::Loop => {
            loopdev::make_image(&dir.join(IMAGE_FILE), bytes, l.inodes_max)?;
            DiskRecord::Loop { owner: uid_base }
        }
    };
    crate::util::fs::write_json_atomic(&dir.join(DISK_FILE), &record)
        .map_err(|e| DiskError::io("write", dir.join(DISK_FILE), e.source))
}

/// The slice's disk record, if it has a quota.
pub fn record(dir: &Path) -> Option<DiskRecord> {
    crate::util::fs::read_json(&dir.join(DISK_FILE)).ok()
}

/// Undo [`provision`] for a slice being removed (its processes are gone): clear the project's
/// limits. A loop device is released with the shim's mount namespace; its image goes with
/// the directory.
pub fn release(dir: &Path) -> Result<(), DiskError> {
    if let Some(DiskRecord::Project { projid }) = record(dir) {
        quota::set_limits(&dir.join("fs"), projid, 0, 0)?;
    }
    Ok(())
}

/// In the shim, in its private mount namespace, before the overlay is mounted: attach and
/// mount a loop-backed slice's image on `<dir>/fs` and make sure the upper and work
/// directories exist in it. Nothing to do for other slices.
pub fn shim_mount(dir: &Path) -> Result<(), DiskError> {
    let Some(DiskRecord::Loop { owner }) = record(dir) else {
        return Ok(());
    };
    let fs = dir.join("fs");
    loopdev::attach_and_mount(&dir.join(IMAGE_FILE), &fs)?;
    use std::os::unix::fs::PermissionsExt;
    // Like the directory it covers: only root traverses to the layers.
    std::fs::set_permissions(&fs, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| DiskError::io("chmod", &fs, e))?;
    for (sub, mode, owned) in [("upper", 0o755, true), ("work", 0o700, false)] {
        let d = fs.join(sub);
        match std::fs::create_dir(&d) {
            Ok(()) => {
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| DiskError::io("chmod", &d, e))?;
                if owned {
                    std::os::unix::fs::chown(&d, Some(owner), Some(owner))
                        .map_err(|e| DiskError::io("chown", &d, e))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(DiskError::io("mkdir", &d, e)),
        }
    }
    Ok(())
}

/// `<dir>/fs` as the running slice's shim sees it (its private mount namespace, where a
/// loop-backed image is mounted).
fn fs_seen_by(dir: &Path, shim_pid: Option<i32>) -> Option<PathBuf> {
    let abs = std::fs::canonicalize(dir).ok()?;
    let pid = shim_pid?;
    Some(PathBuf::from(format!(
        "/proc/{pid}/root{}",
        abs.join("fs").display()
    )))
}

/// The device ("major:minor") that backs the slice's writes: its loop device (while running)
/// or the whole disk under the state root's filesystem.
pub fn device(dir: &Path) -> Option<String> {
    match record(dir) {
        Some(DiskRecord::Loop { .. }) => loopdev::device_of(&dir.join(IMAGE_FILE))
            .ok()
            .flatten()
            .map(|d| d.dev),
        _ => {
            use std::os::unix::fs::MetadataExt;
            let dev = std::fs::metadata(dir.join("fs")).ok()?.dev();
            let s = format!("{}:{}", libc::major(dev), libc::minor(dev));
            Some(blkio::whole_disk(&s))
        }
    }
}

/// Usage of a slice with a disk quota; None without one (or a stopped loop-backed slice,
/// whose image is not mounted anywhere).
pub fn usage(dir: &Path, limits: &Limits, shim_pid: Option<i32>) -> Option<DiskUsage> {
    let limit_bytes = limits.disk_max?;
    match record(dir)? {
        DiskRecord::Project { projid } => {
            let (used, inodes, _, ilimit) = quota::get(&dir.join("fs"), projid).ok()?;
            Some(DiskUsage {
                backing: DiskBacking::Project,
                used_bytes: used,
                limit_bytes,
                used_inodes: inodes,
                limit_inodes: (ilimit > 0).then_some(ilimit),
                device: device(dir),
            })
        }
        DiskRecord::Loop { .. } => {
            let fs = fs_seen_by(dir, shim_pid)?;
            let st = nix::sys::statvfs::statvfs(&fs).ok()?;
            let bs = st.fragment_size();
            Some(DiskUsage {
                backing: DiskBacking::Loop,
                used_bytes: (st.blocks() - st.blocks_free()) * bs,
                limit_bytes,
                used_inodes: st.files() - st.files_free(),
                limit_inodes: Some(st.files()),
                device: device(dir),
            })
        }
    }
}

/// Change the quota of a slice to `new` (its limits after the patch) from `old`. Project
/// quotas change at once; a loop image grows online while the slice runs (`shim_pid`), and
/// is resized offline (grown or shrunk) while it is stopped.
pub fn resize(
    dir: &Path,
    old: &Limits,
    new: &Limits,
    shim_pid: Option<i32>,
) -> Result<(), DiskError> {
    if old.disk_max == new.disk_max && old.inodes_max == new.inodes_max {
        return Ok(());
    }
    let Some(rec) = record(dir) else {
        return Err(DiskError::Invalid {
            field: "limits.disk_max",
            reason: "the slice was created without a disk quota; a quota is set at creation".into(),
        });
    };
    let Some(bytes) = new.disk_max else {
        return Ok(());
    };
    match rec {
        DiskRecord::Project { projid } => {
            quota::set_limits(&dir.join("fs"), projid, bytes, new.inodes_max.unwrap_or(0))
        }
        DiskRecord::Loop { .. } => {
            if old.inodes_max != new.inodes_max {
                return Err(DiskError::Invalid {
                    field: "limits.inodes_max",
                    reason: "a loop-backed disk's inode count is fixed when it is made".into(),
                });
            }
            let image = dir.join(IMAGE_FILE);
            let old_bytes = old.disk_max.unwrap_or(0);
            match fs_seen_by(dir, shim_pid) {
                Some(_) if bytes < old_bytes => Err(DiskError::NeedsStop(
                    "a loop-backed disk only grows while the slice runs; stop it to shrink it"
                        .into(),
                )),
                // ext4 grows online only for a holder of CAP_SYS_RESOURCE (ext4_resize_begin);
                // some hosts' root lacks it in its bounding set. Say so before touching
                // anything.
                Some(_) if !has_sys_resource() => Err(DiskError::NeedsStop(
                    "growing a running loop-backed disk needs CAP_SYS_RESOURCE, which vsliced \
                     lacks on this host; stop the slice to resize it"
                        .into(),
                )),
                Some(mounted) => loopdev::grow_online(&image, bytes, &mounted),
                None => loopdev::resize_offline(&image, bytes),
            }
        }
    }
}

fn has_sys_resource() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false)
}

/// Apply `l`'s block I/O limits to a just-started slice's cgroup (`dirs`: its directories);
/// nothing to do without any.
pub fn apply_io(dir: &Path, dirs: &[PathBuf], l: &Limits) -> Result<(), DiskError> {
    let any = l.io_weight.is_some()
        || [
            l.io_read_bps,
            l.io_write_bps,
            l.io_read_iops,
            l.io_write_iops,
        ]
        .iter()
        .any(|v| v.is_some());
    if !any {
        // cgroup v1 counts a cgroup's I/O on a device (blkio.throttle.io_service_bytes, which
        // the slice's /proc/diskstats view shows) only once the device's queue has the
        // throttle layer, which the first rule written for it switches on; a rule of 0 is "no
        // limit" and switches it on all the same. Best effort: without it the view is empty.
        if let Some(dev) = device(dir) {
            blkio::count_io(dirs, &dev);
        }
        return Ok(());
    }
    blkio_update(dir, dirs, l)
}

/// Write `l`'s block I/O limits to a running slice's cgroup, removing the caps it has not.
pub fn blkio_update(dir: &Path, dirs: &[PathBuf], l: &Limits) -> Result<(), DiskError> {
    let dev = device(dir).ok_or_else(|| {
        DiskError::Unsupported(format!(
            "block I/O limits: the device under {} is unknown",
            dir.join("fs").display()
        ))
    })?;
    blkio::apply(dirs, &dev, l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_naming_the_field() {
        let l = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            validate(&l)
        };
        assert!(l(|_| {}).is_ok());
        assert!(l(|l| l.disk_max = Some(1 << 30)).is_ok());
        let field = |r: Result<(), DiskError>| match r {
            Err(DiskError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(l(|l| l.disk_max = Some(1 << 20))), "limits.disk_max");
        assert_eq!(field(l(|l| l.inodes_max = Some(1000))), "limits.inodes_max");
        assert_eq!(
            field(l(|l| {
                l.disk_max = Some(1 << 30);
                l.inodes_max = Some(3)
            })),
            "limits.inodes_max"
        );
        assert_eq!(field(l(|l| l.io_weight = Some(0))), "limits.io_weight");
        assert_eq!(field(l(|l| l.io_weight = Some(1001))), "limits.io_weight");
    }

    #[test]
    fn the_record_says_how_the_disk_is_capped() {
        let r: DiskRecord = serde_json::from_str(r#"{"backing":"project","projid":7}"#).unwrap();
        assert_eq!(r, DiskRecord::Project { projid: 7 });
        let j = serde_json::to_string(&DiskRecord::Loop { owner: 9 }).unwrap();
        assert_eq!(j, r#"{"backing":"loop","owner":9}"#);
    }
}
