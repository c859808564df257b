//! Base images: read-only root filesystems under `<state root>/images/<name>/rootfs`, owned by
//! host root and shared by every slice.
//!
//! An image is only a directory tree; nothing here mounts or copies it (the sandbox makes an
//! idmapped, copy-on-write view of it per slice, see docs/design.md). What this module guarantees is
//! that a name handed to the sandbox refers to a tree that is safe to share:
//!
//! * the name is a DNS-label-like single path component (`[a-z0-9][a-z0-9._-]{0,62}`, no `..`);
//! * `<images>/<name>` and `<images>/<name>/rootfs` are real directories (not symlinks), owned
//!   by uid 0 and not group- or world-writable, so no unprivileged user can swap files in;
//! * the rootfs has something to start: an executable `/sbin/init` or `/bin/sh`, where
//!   symlinks are followed *inside* the image (an absolute target like `/bin/busybox` means
//!   `<rootfs>/bin/busybox`, never the host's).
//!
//! Images are built by the recipes in the repository's `images/` directory; [`ensure_busybox`]
//! runs the busybox one when that image is missing.

pub mod import;
pub mod layer;
pub mod store;

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

/// Longest image name (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// The image the project builds itself from the host's busybox-static.
pub const BUSYBOX: &str = "busybox";
/// Directory under `<images>/<name>/` that holds the tree.
const ROOTFS: &str = "rootfs";
/// Candidates for "something to start", in order of preference.
const ENTRY_POINTS: [&str; 2] = ["/sbin/init", "/bin/sh"];
/// Symlink hops allowed while resolving a path inside an image (the kernel's limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// A validated base image; a wire type, see [`crate::proto::image::Image`].
pub use crate::proto::image::Image;

impl Image {
    /// Fill in `size_bytes` by walking the tree (like `du -s`: allocated blocks, hard links
    /// counted once, symlinks not followed, other file systems not entered).
    pub fn with_size(mut self) -> Result<Image, ImageError> {
        self.size_bytes = disk_usage(&self.rootfs).map_err(|(path, source)| ImageError::Io {
            name: self.name.clone(),
            path,
            source,
        })?;
        Ok(self)
    }

    /// The first existing entry point (`/sbin/init`, else `/bin/sh`), as a path inside the image.
    pub fn entry_point(&self) -> Option<&'static str> {
        ENTRY_POINTS
            .into_iter()
            .find(|p| is_executable_in_root(&self.rootfs, Path::new(p)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("image \"{name}\": not found in {} (available: {available})", dir.display())]
    NotFound {
        name: String,
        dir: PathBuf,
        available: String,
    },
    #[error("image \"{name}\": {reason}")]
    Unusable { name: String, reason: String },
    #[error("image \"{name}\": {}: {source}", path.display())]
    Io {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("images directory {}: {source}", dir.display())]
    ListDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image \"{name}\": build script {} failed: {detail}", script.display())]
    Build {
        name: String,
        script: PathBuf,
        detail: String,
    },
}

impl ImageError {
    /// The image name the error is about, if it is about one.
    pub fn image_name(&self) -> Option<&str> {
        match self {
            ImageError::InvalidName { name, .. }
            | ImageError::NotFound { name, .. }
            | ImageError::Unusable { name, .. }
            | ImageError::Io { name, .. }
            | ImageError::Build { name, .. } => Some(name),
            ImageError::ListDir { .. } => None,
        }
    }
}

/// `<images>/<name>/rootfs` (the name is not validated here).
pub fn rootfs_path(images_dir: &Path, name: &str) -> PathBuf {
    images_dir.join(name).join(ROOTFS)
}

/// Check an image name: `[a-z0-9][a-z0-9._-]{0,62}` and no `..`.
pub fn validate_name(name: &str) -> Result<(), ImageError> {
    let invalid = |reason| {
        Err(ImageError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("longer than 63 characters");
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return invalid("must start with a lowercase letter or a digit");
    }
    if name.contains('/') {
        return invalid("must not contain '/'");
    }
    if name.contains("..") {
        return invalid("must not contain '..'");
    }
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    if !name.bytes().all(ok) {
        return invalid("may contain only a-z, 0-9, '-', '_' and '.'");
    }
    Ok(())
}

/// Look up and validate the image `name` in `images_dir`.
pub fn resolve(images_dir: &Path, name: &str) -> Result<Image, ImageError> {
    resolve_owned_by(images_dir, name, 0)
}

/// All valid images in `images_dir`, sorted by name. A missing directory has none. Entries
/// that are not valid images (bad names, build leftovers, unsafe permissions) are skipped:
/// [`resolve`] on such a name says what is wrong with it.
pub fn list(images_dir: &Path) -> Result<Vec<Image>, ImageError> {
    list_owned_by(images_dir, 0)
}

/// Make sure the `busybox` image exists, building it with
/// `<repo_images_dir>/busybox/build.sh <images_dir>/busybox/rootfs` if it is missing.
///
/// An image that exists but fails validation (e.g. world-writable) is reported, not rebuilt:
/// that is a sign of tampering or of a broken host the operator should look at.
pub fn ensure_busybox(images_dir: &Path, repo_images_dir: &Path) -> Result<Image, ImageError> {
    // The image, or why it is unusable; None when it does not exist yet.
    let existing = || match resolve(images_dir, BUSYBOX) {
        Err(ImageError::NotFound { .. }) => None,
        other => Some(other),
    };
    if let Some(found) = existing() {
        return found;
    }
    // Several processes (parallel test binaries, a daemon and a CLI) may ask at once: build
    // once, under a lock beside the images, and let the others find the finished image.
    let io_err = |path: &Path, source: io::Error| ImageError::Io {
        name: BUSYBOX.to_string(),
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(images_dir).map_err(|e| io_err(images_dir, e))?;
    let lock_path = images_dir.join(".busybox.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, e))?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err(&lock_path, io::Error::from_raw_os_error(e as i32)))?;
    if let Some(found) = existing() {
        return found;
    }
    // Shelling out: the recipe is a shell script on purpose. It is the one `make images` and
    // operators run by hand, it installs busybox-static with apt-get when the host lacks it,
    // and it builds into a temporary directory renamed into place, so a half-built image is
    // never visible. Re-implementing it here would give two recipes that drift apart.
    let script = repo_images_dir.join(BUSYBOX).join("build.sh");
    let dest = rootfs_path(images_dir, BUSYBOX);
    let build_err = |detail: String| ImageError::Build {
        name: BUSYBOX.to_string(),
        script: script.clone(),
        detail,
    };
    if !script.is_file() {
        return Err(build_err("no such file".to_string()));
    }
    let output = Command::new("sh")
        .arg(&script)
        .arg(&dest)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| build_err(format!("cannot run: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(build_err(format!(
            "{}: {}",
            output.status,
            tail.join(" | ")
        )));
    }
    resolve(images_dir, BUSYBOX)
}

fn resolve_owned_by(images_dir: &Path, name: &str, owner: u32) -> Result<Image, ImageError> {
    validate_name(name)?;
    check_image(images_dir, name, owner).map_err(|err| match err {
        ImageError::NotFound { name, dir, .. } => ImageError::NotFound {
            name,
            dir,
            available: available_names(images_dir, owner),
        },
        other => other,
    })
}

/// The checks behind [`resolve`], for a name already validated. Its `NotFound` leaves
/// `available` empty (filled in by the caller: listing calls this, so it must not list).
fn check_image(images_dir: &Path, name: &str, owner: u32) -> Result<Image, ImageError> {
    let image_dir = images_dir.join(name);
    let rootfs = image_dir.join(ROOTFS);
    let unusable = |reason: String| ImageError::Unusable {
        name: name.to_string(),
        reason,
    };

    for dir in [&image_dir, &rootfs] {
        let md = match fs::symlink_metadata(dir) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::NotFound {
                    name: name.to_string(),
                    dir: images_dir.to_path_buf(),
                    available: String::new(),
                })
            }
            Err(source) => {
                return Err(ImageError::Io {
                    name: name.to_string(),
                    path: dir.clone(),
                    source,
                })
            }
        };
        let shown = dir.display();
        if md.file_type().is_symlink() {
            return Err(unusable(format!("{shown} is a symlink, not a directory")));
        }
        if !md.is_dir() {
            return Err(unusable(format!("{shown} is not a directory")));
        }
        if md.uid() != owner {
            return Err(unusable(format!(
                "{shown} is owned by uid {}, not {owner}",
                md.uid()
            )));
        }
        let mode = md.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            let who = if mode & 0o002 != 0 { "world" } else { "group" };
            return Err(unusable(format!(
                "{shown} is {who}-writable (mode {mode:04o})"
            )));
        }
    }

    if !ENTRY_POINTS
        .iter()
        .any(|p| is_executable_in_root(&rootfs, Path::new(p)))
    {
        return Err(unusable(format!(
            "{} has no executable {}",
            rootfs.display(),
            ENTRY_POINTS.join(" or ")
        )));
    }

    let created = fs::metadata(&rootfs)
        .and_then(|md| md.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(Image {
        name: name.to_string(),
        rootfs,
        size_bytes: 0,
        created,
    })
}

fn list_owned_by(images_dir: &Path, owner: u32) -> Result<Vec<Image>, ImageError> {
    let entries = match fs::read_dir(images_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ImageError::ListDir {
                dir: images_dir.to_path_buf(),
                source,
            })
        }
    };
    let mut images = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ImageError::ListDir {
            dir: images_dir.to_path_buf(),
            source,
        })?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if validate_name(&name).is_err() {
            continue;
        }
        if let Ok(image) = check_image(images_dir, &name, owner) {
            images.push(image);
        }
    }
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

/// Comma-separated names of the valid images, or "none".
fn available_names(images_dir: &Path, owner: u32) -> String {
    let names: Vec<String> = list_owned_by(images_dir, owner)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.name)
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Whether `path` (absolute, as seen inside the image) resolves inside `root` to a regular
/// file with an execute bit.
fn is_executable_in_root(root: &Path, path: &Path) -> bool {
    match resolve_in_root(root, path).and_then(|p| fs::symlink_metadata(&p)) {
        Ok(md) => md.is_file() && md.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Resolve `path` as the kernel would after a chroot into `root`: symlinks are followed with
/// absolute targets taken relative to `root`, and `..` never climbs above `root`. Returns the
/// host path of the final component, which is itself not a symlink. (Like openat2's
/// RESOLVE_IN_ROOT, but a plain lstat walk: the image is owned by root and not writable by
/// anyone else, so it cannot change under us in a way that matters.)
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = normal_components(path);
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        let md = fs::symlink_metadata(&candidate)?;
        if md.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = fs::read_link(&candidate)?;
            if target.is_absolute() {
                resolved.clear();
            }
            for c in normal_components(&target).into_iter().rev() {
                pending.push_front(c);
            }
        } else {
            if !pending.is_empty() && !md.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            resolved.push(part);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

/// The components of `path` that matter for resolution: names and `..` (root and `.` dropped).
fn normal_components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// `du -s` in bytes: allocated blocks, each inode once, symlinks not followed, one device.
fn disk_usage(root: &Path) -> Result<u64, (PathBuf, io::Error)> {
    let top = fs::symlink_metadata(root).map_err(|e| (root.to_path_buf(), e))?;
    let dev = top.dev();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![(root.to_path_buf(), top)];
    while let Some((path, md)) = stack.pop() {
        if md.nlink() > 1 && !md.is_dir() && !seen.insert(md.ino()) {
            continue;
        }
        total += md.blocks() * 512;
        if md.is_dir() && md.dev() == dev {
            for entry in fs::read_dir(&path).map_err(|e| (path.clone(), e))? {
                let entry = entry.map_err(|e| (path.clone(), e))?;
                let child = entry.path();
                let child_md = fs::symlink_metadata(&child).map_err(|e| (child.clone(), e))?;
                stack.push((child, child_md));
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn me() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// A minimal valid image `<dir>/<name>/rootfs` with /bin/busybox and links to it.
    fn make_image(images: &Path, name: &str) -> PathBuf {
        let rootfs = rootfs_path(images, name);
        for d in ["bin", "sbin", "usr/bin", "etc"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        for d in [images.join(name), rootfs.clone()] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let busybox = rootfs.join("bin/busybox");
        fs::write(&busybox, b"#!/bin/false\n").unwrap();
        fs::set_permissions(&busybox, fs::Permissions::from_mode(0o755)).unwrap();
        symlink("busybox", rootfs.join("bin/sh")).unwrap();
        symlink("../bin/busybox", rootfs.join("sbin/init")).unwrap();
        rootfs
    }

    fn images_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn names() {
        for ok in [
            "busybox",
            "debian-12",
            "a",
            "0",
            "my_image.v2",
            &"a".repeat(63),
        ] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let long = "a".repeat(64);
        for bad in [
            "", "Busybox", "-x", ".x", "_x", "a/b", "a..b", "..", ".", "a b", "é", &long, "x\0",
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
        }
        // resolve validates before touching the file system
        let dir = images_dir();
        let err = resolve(dir.path(), "../etc").unwrap_err();
        assert!(matches!(err, ImageError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn resolves_a_valid_image() {
        let dir = images_dir();
        let rootfs = make_image(dir.path(), "busybox");
        let image = resolve_owned_by(dir.path(), "busybox", me()).unwrap();
        assert_eq!(image.name, "busybox");
        assert_eq!(image.rootfs, rootfs);
        assert_eq!(image.size_bytes, 0);
        assert!(image.created > 0);
        assert_eq!(image.entry_point(), Some("/sbin/init"));
        let sized = image.clone().with_size().unwrap();
        assert!(sized.size_bytes > 0);
        // round-trips through JSON
        let json = serde_json::to_string(&sized).unwrap();
        assert_eq!(serde_json::from_str::<Image>(&json).unwrap(), sized);
    }

    #[test]
    fn missing_image_names_the_available_ones() {
        let dir = images_dir();
        make_image(dir.path(), "busybox");
        make_image(dir.path(), "alpine");
        let err = resolve_owned_by(dir.path(), "busyboxx", me()).unwrap_err();
        assert!(matches!(err, ImageError::NotFound { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "image \"busyboxx\": not found in {} (available: alpine, busybox)",
                dir.path().display()
            )
        );
        assert_eq!(err.image_name(), Some("busyboxx"));

        // a name directory without a rootfs is missing too
        fs::create_dir(dir.path().join("half")).unwrap();
        let err = resolve_owned_by(dir.path(), "half", me()).unwrap_err();
        assert!(matches!(err, ImageError::NotFound { .. }), "{err}");

        let empty = images_dir();
        let err = resolve(&empty.path().join("nonexistent"), "busybox").unwrap_err();
        assert!(err.to_string().ends_with("(available: none)"), "{err}");
    }

    #[test]
    fn rejects_writable_rootfs() {
        let dir = images_dir();
        let rootfs = make_image(dir.path(), "busybox");
        for (mode, word) in [(0o777, "world-writable"), (0o775, "group-writable")] {
            fs::set_permissions(&rootfs, fs::Permissions::from_mode(mode)).unwrap();
            let err = resolve_owned_by(dir.path(), "busybox", me()).unwrap_err();
            assert!(matches!(err, ImageError::Unusable { .. }), "{err}");
            assert!(err.to_string().contains(word), "{err}");
        }
        fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755)).unwrap();
        // the image directory above the rootfs counts too
        let image_dir = dir.path().join("busybox");
        fs::set_permissions(&image_dir, fs::Permissions::from_mode(0o757)).unwrap();
        assert!(resolve_owned_by(dir.path(), "busybox", me()).is_err());
        fs::set_permissions(&image_dir, fs::Permissions::from_mode(0o755)).unwrap();
        resolve_owned_by(dir.path(), "busybox", me()).unwrap();
    }

    #[test]
    fn rejects_wrong_owner() {
        let dir = images_dir();
        make_image(dir.path(), "busybox");
        let err = resolve_owned_by(dir.path(), "busybox", me().wrapping_add(1)).unwrap_err();
        assert!(err.to_string().contains("owned by uid"), "{err}");
        if me() != 0 {
            // the public entry point insists on root
            assert!(resolve(dir.path(), "busybox").is_err());
        }
    }

    #[test]
    fn rejects_symlinked_rootfs_and_files() {
        let dir = images_dir();
        let real = make_image(dir.path(), "real");
        fs::create_dir(dir.path().join("linked")).unwrap();
        symlink(&real, rootfs_path(dir.path(), "linked")).unwrap();
        let err = resolve_owned_by(dir.path(), "linked", me()).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");

        fs::write(dir.path().join("file"), b"").unwrap();
        let err = resolve_owned_by(dir.path(), "file", me()).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn needs_an_entry_point() {
        let dir = images_dir();
        let rootfs = make_image(dir.path(), "busybox");
        fs::remove_file(rootfs.join("sbin/init")).unwrap();
        let image = resolve_owned_by(dir.path(), "busybox", me()).unwrap();
        assert_eq!(image.entry_point(), Some("/bin/sh"));

        // not executable
        fs::set_permissions(
            rootfs.join("bin/busybox"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = resolve_owned_by(dir.path(), "busybox", me()).unwrap_err();
        assert!(
            err.to_string()
                .contains("no executable /sbin/init or /bin/sh"),
            "{err}"
        );

        // dangling inside the image
        fs::set_permissions(
            rootfs.join("bin/busybox"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs::remove_file(rootfs.join("bin/sh")).unwrap();
        symlink("missing", rootfs.join("bin/sh")).unwrap();
        assert!(resolve_owned_by(dir.path(), "busybox", me()).is_err());
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_image() {
        let dir = images_dir();
        let rootfs = make_image(dir.path(), "img");
        // /sbin/init -> /bin/busybox must mean <rootfs>/bin/busybox ...
        fs::remove_file(rootfs.join("sbin/init")).unwrap();
        symlink("/bin/busybox", rootfs.join("sbin/init")).unwrap();
        assert_eq!(
            resolve_in_root(&rootfs, Path::new("/sbin/init")).unwrap(),
            rootfs.join("bin/busybox")
        );
        // ... and `..` cannot climb out of it
        assert_eq!(
            resolve_in_root(&rootfs, Path::new("/../../../bin/busybox")).unwrap(),
            rootfs.join("bin/busybox")
        );
        // an absolute target naming a host file that the image lacks does not count
        fs::remove_file(rootfs.join("bin/sh")).unwrap();
        fs::remove_file(rootfs.join("sbin/init")).unwrap();
        let host_only = dir.path().join("host-init");
        fs::write(&host_only, b"").unwrap();
        fs::set_permissions(&host_only, fs::Permissions::from_mode(0o755)).unwrap();
        symlink(&host_only, rootfs.join("sbin/init")).unwrap();
        let err = resolve_owned_by(dir.path(), "img", me()).unwrap_err();
        assert!(matches!(err, ImageError::Unusable { .. }), "{err}");
        // a loop ends with ELOOP
        fs::remove_file(rootfs.join("sbin/init")).unwrap();
        symlink("init", rootfs.join("sbin/init")).unwrap();
        let err = resolve_in_root(&rootfs, Path::new("/sbin/init")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        // a file used as a directory
        let err = resolve_in_root(&rootfs, Path::new("/bin/busybox/x")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
    }

    #[test]
    fn listing() {
        let dir = images_dir();
        assert!(list_owned_by(dir.path(), me()).unwrap().is_empty());
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
        make_image(dir.path(), "busybox");
        make_image(dir.path(), "debian");
        // skipped: bad name, no rootfs, build leftover, unsafe permissions
        make_image(dir.path(), "Upper");
        fs::create_dir(dir.path().join("empty")).unwrap();
        fs::create_dir_all(dir.path().join("busybox/rootfs.tmp.123")).unwrap();
        let open = make_image(dir.path(), "open");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let names: Vec<String> = list_owned_by(dir.path(), me())
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["busybox", "debian"]);
    }

    #[test]
    fn ensure_busybox_reports_a_missing_script() {
        let dir = images_dir();
        let repo = images_dir();
        let err = ensure_busybox(dir.path(), repo.path()).unwrap_err();
        assert!(matches!(err, ImageError::Build { .. }), "{err}");
        assert!(
            err.to_string().contains("build.sh failed: no such file"),
            "{err}"
        );
    }

    /// The real recipe, when it can run without installing anything (root, busybox present).
    #[test]
    fn ensure_busybox_with_the_real_recipe() {
        if me() != 0 || !Path::new("/bin/busybox").is_file() {
            eprintln!("skipped: needs root and /bin/busybox (busybox-static)");
            return;
        }
        let repo_images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
        let dir = images_dir();
        let image = ensure_busybox(dir.path(), &repo_images).unwrap();
        assert_eq!(image.entry_point(), Some("/sbin/init"));
        let md = fs::symlink_metadata(image.rootfs.join("bin/busybox")).unwrap();
        assert_eq!(
            md.permissions().mode() & 0o7777,
            0o755,
            "busybox must not be setuid"
        );
        let tmp = fs::symlink_metadata(image.rootfs.join("tmp")).unwrap();
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
        let inittab = fs::read_to_string(image.rootfs.join("etc/inittab")).unwrap();
        assert!(
            !inittab.contains("getty") && !inittab.contains("askfirst"),
            "{inittab}"
        );
        assert!(!inittab.contains("ctrlaltdel"), "{inittab}");
        let names: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["busybox"]);
        assert!(image.with_size().unwrap().size_bytes > 1_000_000);
    }

    #[test]
    fn ensure_busybox_runs_the_recipe_once() {
        if me() != 0 {
            return; // resolve() insists on root-owned images
        }
        // A stand-in recipe: the real one needs apt and is exercised by the integration tests.
        let dir = images_dir();
        let repo = images_dir();
        fs::create_dir(repo.path().join("busybox")).unwrap();
        let counter = repo.path().join("runs");
        let script = format!(
            "set -e\necho run >> '{}'\nmkdir -p \"$1/bin\"\nprintf '' > \"$1/bin/sh\"\n\
             chmod 755 \"$1/bin/sh\"\n",
            counter.display()
        );
        fs::write(repo.path().join("busybox/build.sh"), script).unwrap();
        let image = ensure_busybox(dir.path(), repo.path()).unwrap();
        assert_eq!(image.rootfs, rootfs_path(dir.path(), "busybox"));
        ensure_busybox(dir.path(), repo.path()).unwrap();
        assert_eq!(fs::read_to_string(&counter).unwrap(), "run\n");

        // a failing recipe's stderr reaches the error
        let dir2 = images_dir();
        fs::write(
            repo.path().join("busybox/build.sh"),
            "echo no apt here >&2; exit 3\n",
        )
        .unwrap();
        let err = ensure_busybox(dir2.path(), repo.path()).unwrap_err();
        assert!(err.to_string().contains("no apt here"), "{err}");
    }
}
