//! Snapshots, clones and moves of a slice's own files (its overlay upper layer; the image
//! below is shared and named in the spec).
//!
//! * `snapshot NAME [SNAP]`: the upper layer as `<slice>/snapshots/<SNAP>.tar.zst` (0700),
//!   ids relative to the slice's range ([`tree`]).
//! * `restore NAME SNAP`: a new upper layer unpacked from the snapshot beside the old one,
//!   then swapped in by rename; a failure leaves the old one.
//! * `clone SRC DST`: a new slice (new uid range, same image, policy, limits, owners, init and
//!   network minus published ports, which would collide) whose upper layer is SRC's with every
//!   owner shifted into the new range. Shifting means writing each inode's owner (a streamed
//!   copy, [`tree`] → [`Applier`]): an idmapped mount cannot do it, because the upper layer
//!   must hold the new range's ids on disk — the overlay's upper is not idmapped, and the
//!   slice's init (running as the new range) would otherwise own none of its files.
//! * `export NAME FILE` / `import FILE [NAME]`: `FILE` is a zstd-compressed tar of `spec.json`
//!   followed by `upper/…` with ids relative to the range; import creates the slice through
//!   [`Manager::create`] (validated like any create: image, policy, owners on this node) and
//!   re-bases the ids on its new range. The archive is hostile input: it is unpacked with the
//!   image-layer applier (no `..`, no absolute names, no writes through symlinks, no devices
//!   except overlay whiteouts).
//!
//! All of them need the slice stopped (a running slice's files change under the copy).
pub mod tree;

use crate::config::Paths;
use crate::image::layer::{Applier, LayerError};
use crate::proto::snapshot::{ExportResult, SnapshotInfo};
use crate::slice::{CreateRequest, Manager, SliceError, SliceInfo, SliceSpec, Status};
use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Largest spec.json accepted from an archive.
const MAX_SPEC_BYTES: u64 = 64 << 10;
/// zstd level: fast; snapshots and exports are mostly bound by the disk.
const ZSTD_LEVEL: i32 = 3;
const SNAP_DIR: &str = "snapshots";
const SNAP_EXT: &str = ".tar.zst";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Slice(#[from] SliceError),
    #[error("slice {0:?} is running: stop it first")]
    Running(String),
    #[error("snapshot name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("slice {slice:?} has no snapshot {snap:?} (has: {have})")]
    NoSnapshot {
        slice: String,
        snap: String,
        have: String,
    },
    #[error("slice {slice:?} already has a snapshot {snap:?}")]
    Exists { slice: String, snap: String },
    #[error("{}: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },
    #[error("saving files: {0}")]
    Tree(#[from] tree::TreeError),
    #[error("restoring files: {0}")]
    Restore(#[from] LayerError),
    #[error("{}: {op}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SnapshotError {
    /// HTTP status and code, for the API and direct mode's audit.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            SnapshotError::Slice(e) => e.status_code(),
            SnapshotError::Running(_) | SnapshotError::Exists { .. } => (409, "conflict"),
            SnapshotError::InvalidName { .. } | SnapshotError::Archive { .. } => (400, "invalid"),
            SnapshotError::Restore(_) => (400, "invalid"),
            SnapshotError::NoSnapshot { .. } => (404, "not_found"),
            SnapshotError::Tree(_) | SnapshotError::Io { .. } => (500, "internal"),
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { op, path, source }
}

fn stopped(m: &Manager, name: &str) -> Result<SliceInfo, SnapshotError> {
    let info = m.inspect(name)?;
    if info.status != Status::Stopped {
        return Err(SnapshotError::Running(name.to_string()));
    }
    Ok(info)
}

fn upper(paths: &Paths, name: &str) -> PathBuf {
    paths.slice_dir(name).join("fs/upper")
}

fn snap_dir(paths: &Paths, name: &str) -> PathBuf {
    paths.slice_dir(name).join(SNAP_DIR)
}

fn check_snap_name(snap: &str) -> Result<(), SnapshotError> {
    crate::image::validate_name(snap).map_err(|e| SnapshotError::InvalidName {
        name: snap.to_string(),
        reason: match e {
            crate::image::ImageError::InvalidName { reason, .. } => reason.to_string(),
            other => other.to_string(),
        },
    })
}

/// A temporary name beside `path`, unique to this process.
fn tmp_beside(path: &Path) -> PathBuf {
    let mut n = path.as_os_str().to_os_string();
    n.push(format!(".tmp.{}", std::process::id()));
    PathBuf::from(n)
}

/// Write a zstd-compressed tar to `dest` (atomically: temporary file, fsync, rename).
fn write_archive(
    dest: &Path,
    fill: impl FnOnce(
        &mut tar::Builder<zstd::Encoder<'static, BufWriter<fs::File>>>,
    ) -> Result<tree::TreeStats, SnapshotError>,
) -> Result<tree::TreeStats, SnapshotError> {
    let tmp = tmp_beside(dest);
    let result = (|| {
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        let enc =
            zstd::Encoder::new(BufWriter::new(f), ZSTD_LEVEL).map_err(io_err("zstd", &tmp))?;
        let mut b = tar::Builder::new(enc);
        let stats = fill(&mut b)?;
        let enc = b.into_inner().map_err(io_err("write", &tmp))?;
        let mut w = enc.finish().map_err(io_err("write", &tmp))?;
        w.flush().map_err(io_err("write", &tmp))?;
        let f = w
            .into_inner()
            .map_err(|e| io_err("write", &tmp)(e.into_error()))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, dest).map_err(io_err("rename", dest))?;
        if let Some(parent) = dest.parent() {
            let _ = crate::util::fs::fsync_dir(parent);
        }
        Ok(stats)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `OpenOptions::mode(0o600)` without importing the extension trait everywhere.
trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Snapshot a stopped slice's files as `snap` (default: `snap-<seconds since the epoch>`).
pub fn snapshot(
    m: &Manager,
    paths: &Paths,
    name: &str,
    snap: Option<&str>,
) -> Result<SnapshotInfo, SnapshotError> {
    let info = stopped(m, name)?;
    let snap = snap
        .map(str::to_string)
        .unwrap_or_else(|| format!("snap-{}", crate::slice::state::now_secs()));
    check_snap_name(&snap)?;
    let dir = snap_dir(paths, name);
    fs::create_dir_all(&dir).map_err(io_err("mkdir", &dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", &dir))?;
    let dest = dir.join(format!("{snap}{SNAP_EXT}"));
    if dest.exists() {
        return Err(SnapshotError::Exists {
            slice: name.to_string(),
            snap,
        });
    }
    let base = info.spec.uid_base;
    let src = upper(paths, name);
    write_archive(&dest, |b| {
        Ok(tree::write_tree(b, &src, base, Path::new(""))?)
    })?;
    snapshot_info(&dest, &snap)
}

fn snapshot_info(path: &Path, snap: &str) -> Result<SnapshotInfo, SnapshotError> {
    let md = fs::metadata(path).map_err(io_err("stat", path))?;
    Ok(SnapshotInfo {
        name: snap.to_string(),
        size_bytes: md.len(),
        created: md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs()),
    })
}

/// The slice's snapshots, sorted by name.
pub fn list(m: &Manager, paths: &Paths, name: &str) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    m.inspect(name)?;
    let dir = snap_dir(paths, name);
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(snap) = n.strip_suffix(SNAP_EXT) {
            if check_snap_name(snap).is_ok() {
                out.push(snapshot_info(&e.path(), snap)?);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Unpack a tar stream of upper-layer entries (ids relative) into a fresh directory `dest`
/// owned by `base`.
fn unpack_upper(dest: &Path, base: u32, r: impl Read) -> Result<(), SnapshotError> {
    fs::create_dir(dest).map_err(io_err("mkdir", dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", dest))?;
    std::os::unix::fs::chown(dest, Some(base), Some(base)).map_err(io_err("chown", dest))?;
    let mut a = Applier::new_upper(dest, base).map_err(io_err("open", dest))?;
    a.apply(r)?;
    Ok(())
}

/// Replace the stopped slice's files with snapshot `snap`.
pub fn restore(m: &Manager, paths: &Paths, name: &str, snap: &str) -> Result<(), SnapshotError> {
    let info = stopped(m, name)?;
    check_snap_name(snap)?;
    let file = snap_dir(paths, name).join(format!("{snap}{SNAP_EXT}"));
    let f = match fs::File::open(&file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let have: Vec<String> = list(m, paths, name)?.into_iter().map(|s| s.name).collect();
            return Err(SnapshotError::NoSnapshot {
                slice: name.to_string(),
                snap: snap.to_string(),
                have: if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                },
            });
        }
        Err(e) => return Err(io_err("open", &file)(e)),
    };
    let cur = upper(paths, name);
    let new = tmp_beside(&cur);
    let old = cur.with_extension(format!("old.{}", std::process::id()));
    let _ = fs::remove_dir_all(&new);
    let dec = zstd::Decoder::new(BufReader::new(f)).map_err(io_err("zstd", &file))?;
    if let Err(e) = unpack_upper(&new, info.spec.uid_base, dec) {
        let _ = fs::remove_dir_all(&new);
        return Err(e);
    }
    fs::rename(&cur, &old).map_err(io_err("rename", &cur))?;
    if let Err(e) = fs::rename(&new, &cur) {
        let _ = fs::rename(&old, &cur);
        let _ = fs::remove_dir_all(&new);
        return Err(io_err("rename", &new)(e));
    }
    if let Some(parent) = cur.parent() {
        let _ = crate::util::fs::fsync_dir(parent);
    }
    fs::remove_dir_all(&old).map_err(io_err("remove", &old))
}

/// The create request that makes a slice like `spec` under `name`.
fn recreate(spec: &SliceSpec, name: &str, keep_ports: bool) -> CreateRequest {
    let mut net = spec.net.clone();
    if !keep_ports {
        net.ports.clear();
    }
    CreateRequest {
        name: name.to_string(),
        image: Some(spec.image.clone()),
        policy: Some(spec.policy.clone()),
        limits: spec.limits.clone(),
        owners: spec.owners.clone(),
        autostart: spec.autostart,
        init: Some(spec.init.clone()),
        net,
        // Host directories the operator named for the source; an import on a node without
        // them fails validation naming the volume.
        volumes: spec.volumes.clone(),
        start: false,
    }
}

/// Copy stopped slice `src` to a new (stopped) slice `dst` with its own uid range.
pub fn clone(m: &Manager, paths: &Paths, src: &str, dst: &str) -> Result<SliceInfo, SnapshotError> {
    let info = stopped(m, src)?;
    let created = m.create(&recreate(&info.spec, dst, false))?;
    let result = (|| {
        let dest = upper(paths, dst);
        // create made an empty upper layer; fill a fresh one and swap it in.
        let fresh = tmp_beside(&dest);
        let (r, w) = nix::unistd::pipe().map_err(|e| io_err("pipe", &dest)(e.into()))?;
        let (src_upper, src_base) = (upper(paths, src), info.spec.uid_base);
        let writer = std::thread::spawn(move || -> Result<tree::TreeStats, SnapshotError> {
            let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, fs::File::from(w)));
            let stats = tree::write_tree(&mut b, &src_upper, src_base, Path::new(""))?;
            let mut w = b.into_inner().map_err(io_err("write", &src_upper))?;
            w.flush().map_err(io_err("write", &src_upper))?;
            Ok(stats)
        });
        let unpacked = unpack_upper(
            &fresh,
            created.spec.uid_base,
            BufReader::with_capacity(1 << 20, fs::File::from(r)),
        );
        let written = writer
            .join()
            .map_err(|_| io_err("copy", &dest)(io::Error::other("copy thread panicked")))?;
        // The reader's error explains a writer's broken pipe: report it first.
        unpacked?;
        written?;
        fs::remove_dir(&dest).map_err(io_err("remove", &dest))?;
        fs::rename(&fresh, &dest).map_err(io_err("rename", &fresh))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(tmp_beside(&upper(paths, dst)));
        let _ = m.destroy(dst);
        return Err(e);
    }
    Ok(m.inspect(dst)?)
}

/// Write stopped slice `name` (spec and files) to `file` (zstd-compressed tar).
pub fn export(
    m: &Manager,
    paths: &Paths,
    name: &str,
    file: &Path,
) -> Result<ExportResult, SnapshotError> {
    let info = stopped(m, name)?;
    let spec = serde_json::to_vec_pretty(&info.spec)
        .map_err(|e| io_err("serialize", file)(io::Error::other(e)))?;
    let src = upper(paths, name);
    let stats = write_archive(file, |b| {
        let mut h = tar::Header::new_gnu();
        h.set_size(spec.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(crate::slice::state::now_secs());
        b.append_data(&mut h, "spec.json", spec.as_slice())
            .map_err(io_err("write", file))?;
        Ok(tree::write_tree(
            b,
            &src,
            info.spec.uid_base,
            Path::new("upper"),
        )?)
    })?;
    let size = fs::metadata(file).map_err(io_err("stat", file))?.len();
    Ok(ExportResult {
        name: name.to_string(),
        path: file.display().to_string(),
        entries: stats.entries,
        bytes: stats.bytes,
        size_bytes: size,
    })
}

/// The spec at the head of an export archive (its first member, `spec.json`).
fn read_spec<R: Read>(
    file: &Path,
    entries: &mut tar::Entries<'_, R>,
) -> Result<SliceSpec, SnapshotError> {
    let bad = |reason: String| SnapshotError::Archive {
        path: file.to_path_buf(),
        reason,
    };
    let first = entries
        .next()
        .ok_or_else(|| bad("empty archive".into()))?
        .map_err(|e| bad(format!("not a slice archive: {e}")))?;
    let first_name = first
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if first_name != "spec.json" {
        return Err(bad(format!(
            "first member is {first_name:?}, not spec.json (not written by `vslice export`)"
        )));
    }
    if first.size() > MAX_SPEC_BYTES {
        return Err(bad(format!("spec.json larger than {MAX_SPEC_BYTES} bytes")));
    }
    let mut text = Vec::new();
    first
        .take(MAX_SPEC_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| bad(format!("spec.json: {e}")))?;
    serde_json::from_slice(&text).map_err(|e| bad(format!("spec.json: {e}")))
}

fn open_archive(
    file: &Path,
) -> Result<tar::Archive<zstd::Decoder<'static, BufReader<BufReader<fs::File>>>>, SnapshotError> {
    let f = fs::File::open(file).map_err(|e| SnapshotError::Archive {
        path: file.to_path_buf(),
        reason: format!("cannot open: {e}"),
    })?;
    let dec = zstd::Decoder::new(BufReader::new(f)).map_err(|e| SnapshotError::Archive {
        path: file.to_path_buf(),
        reason: format!("not a zstd stream: {e}"),
    })?;
    Ok(tar::Archive::new(dec))
}

/// The spec recorded in an export archive (e.g. for its name).
pub fn archived_spec(file: &Path) -> Result<SliceSpec, SnapshotError> {
    let mut ar = open_archive(file)?;
    let mut entries = ar.entries().map_err(|e| SnapshotError::Archive {
        path: file.to_path_buf(),
        reason: format!("not a tar archive: {e}"),
    })?;
    read_spec(file, &mut entries)
}

/// Create a slice from an archive written by [`export`] (as `name`, default the archived
/// name), with a new uid range on this node. It is created stopped.
pub fn import(
    m: &Manager,
    paths: &Paths,
    file: &Path,
    name: Option<&str>,
) -> Result<SliceInfo, SnapshotError> {
    let bad = |reason: String| SnapshotError::Archive {
        path: file.to_path_buf(),
        reason,
    };
    let mut ar = open_archive(file)?;
    let mut entries = ar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let spec = read_spec(file, &mut entries)?;
    let target = name.unwrap_or(&spec.name).to_string();
    let created = m.create(&recreate(&spec, &target, true))?;
    let result = (|| {
        let dest = upper(paths, &target);
        let mut a =
            Applier::new_upper(&dest, created.spec.uid_base).map_err(io_err("open", &dest))?;
        a.apply_entries(entries, Some("upper"))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = m.destroy(&target);
        return Err(e);
    }
    Ok(m.inspect(&target)?)
}
