//! Block I/O limits of a slice's cgroup on one device: the device that really backs the
//! slice's writes (its loop device, or the whole disk under the state root's filesystem), not
//! overlayfs' anonymous device, which no bio ever reaches.
//!
//! cgroup v1: blkio.throttle.{read,write}_{bps,iops}_device and blkio.bfq.weight; v2: io.max
//! and io.bfq.weight / io.weight. The slice cgroup is made in the blkio (v1) hierarchy and
//! gets the io controller (v2) by the cgroup module; this writes the files.
use std::path::{Path, PathBuf};

use super::DiskError;
use crate::proto::slice::Limits;

/// The io limits of `l` as (file suffix, value) pairs; caps of 0 or None mean "no cap".
fn caps(l: &Limits) -> [(&'static str, Option<u64>); 4] {
    [
        ("read_bps", l.io_read_bps.filter(|v| *v > 0)),
        ("write_bps", l.io_write_bps.filter(|v| *v > 0)),
        ("read_iops", l.io_read_iops.filter(|v| *v > 0)),
        ("write_iops", l.io_write_iops.filter(|v| *v > 0)),
    ]
}

fn write(path: &Path, value: &str) -> Result<(), DiskError> {
    std::fs::write(path, value).map_err(|e| {
        DiskError::io(
            "write",
            path,
            std::io::Error::new(e.kind(), format!("{e} (value {value:?})")),
        )
    })
}

/// cgroup v1 only: make the kernel count this cgroup's I/O on `dev` without limiting it (see
/// disk::apply_io). v2's io.stat counts every device without being asked.
pub fn count_io(dirs: &[PathBuf], dev: &str) {
    if let Some(d) = dirs
        .iter()
        .find(|d| d.join("blkio.throttle.read_bps_device").exists())
    {
        let _ = write(
            &d.join("blkio.throttle.read_bps_device"),
            &format!("{dev} 0"),
        );
    }
}

/// Apply `l`'s io limits for device `dev` ("major:minor") to the cgroup whose directories
/// (one per hierarchy) are `dirs`. Caps not set are removed, so this is also the update.
pub fn apply(dirs: &[PathBuf], dev: &str, l: &Limits) -> Result<(), DiskError> {
    if let Some(d) = dirs
        .iter()
        .find(|d| d.join("blkio.throttle.write_bps_device").exists())
    {
        for (what, v) in caps(l) {
            let f = d.join(format!("blkio.throttle.{what}_device"));
            // v1: a value of 0 removes the rule.
            write(&f, &format!("{dev} {}", v.unwrap_or(0)))?;
        }
        if let Some(w) = l.io_weight {
            let f = d.join("blkio.bfq.weight");
            if !f.exists() {
                return Err(DiskError::Unsupported(format!(
                    "limits.io_weight: {} is missing (the BFQ I/O scheduler is not available)",
                    f.display()
                )));
            }
            write(&f, &w.to_string())?;
        }
        return Ok(());
    }
    if let Some(d) = dirs.iter().find(|d| d.join("io.max").exists()) {
        let keys = ["rbps", "wbps", "riops", "wiops"];
        let line = caps(l)
            .iter()
            .zip(keys)
            .map(|((_, v), k)| format!("{k}={}", v.map_or("max".into(), |n| n.to_string())))
            .collect::<Vec<_>>()
            .join(" ");
        write(&d.join("io.max"), &format!("{dev} {line}"))?;
        if let Some(w) = l.io_weight {
            let bfq = d.join("io.bfq.weight");
            let f = if bfq.exists() {
                bfq
            } else {
                d.join("io.weight")
            };
            if !f.exists() {
                return Err(DiskError::Unsupported(format!(
                    "limits.io_weight: {} is missing (no BFQ or io.cost weight)",
                    f.display()
                )));
            }
            write(&f, &w.to_string())?;
        }
        return Ok(());
    }
    if caps(l).iter().any(|(_, v)| v.is_some()) || l.io_weight.is_some() {
        return Err(DiskError::Unsupported(
            "block I/O limits requested but the slice's cgroup has no blkio (v1) or io (v2) \
             controller"
                .into(),
        ));
    }
    Ok(())
}

/// The whole-disk device for `dev` ("major:minor"): blk-throttle takes whole disks only, so a
/// partition is resolved to its parent through sysfs.
pub fn whole_disk(dev: &str) -> String {
    let sys = PathBuf::from(format!("/sys/dev/block/{dev}"));
    if !sys.join("partition").exists() {
        return dev.to_string();
    }
    std::fs::canonicalize(&sys)
        .ok()
        .and_then(|p| p.parent().map(|q| q.join("dev")))
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| dev.to_string())
}
