//! The image store's write side: importing an OCI image as `<images>/<name>/{rootfs,config.json}`
//! and removing an image no slice uses.
//!
//! An import is built in `<images>/.import.<name>.<pid>.<nanos>` (mode 0700, root's) and
//! renamed to `<images>/<name>` with RENAME_NOREPLACE once complete and synced, so an image
//! is either all there or not at all, and two imports of one name cannot both win. Any
//! failure removes the temporary tree. The image directory stays 0700: only root (the shim
//! that mounts it for a slice) ever needs to look inside.
use super::import::{self, ImportError, Progress};
use crate::proto::image_import::{ImageConfig, ImportResult};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The OCI config an imported image keeps, beside its rootfs.
pub const CONFIG_FILE: &str = "config.json";
/// Prefix of an import in progress (not a valid image name, so never listed).
const IMPORT_PREFIX: &str = ".import.";
/// Prefix of an image being removed.
const REMOVE_PREFIX: &str = ".removing.";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Image(#[from] super::ImageError),
    #[error("image \"{0}\" already exists (remove it first with `vslice image rm {0}`)")]
    Exists(String),
    #[error("image \"{name}\" is used by slice(s) {}; remove them first", slices.join(", "))]
    InUse { name: String, slices: Vec<String> },
    #[error("import {}: {source}", path.display())]
    Import {
        path: PathBuf,
        #[source]
        source: ImportError,
    },
    #[error("import {}: no image name: {reason}; give one with --name", path.display())]
    NoName { path: PathBuf, reason: String },
    #[error("{}: {op}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// HTTP status and code for the API and direct mode's audit.
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            StoreError::Image(super::ImageError::NotFound { .. }) => (404, "not_found"),
            StoreError::Image(super::ImageError::InvalidName { .. }) => (400, "invalid"),
            StoreError::Exists(_) | StoreError::InUse { .. } => (409, "conflict"),
            StoreError::Import { .. } | StoreError::NoName { .. } => (400, "invalid"),
            StoreError::Image(_) | StoreError::Io { .. } => (500, "internal"),
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// The config stored beside an image's rootfs; default for images without one (built, not
/// imported).
pub fn config(images_dir: &Path, name: &str) -> ImageConfig {
    crate::util::fs::read_json::<ImageConfig>(&images_dir.join(name).join(CONFIG_FILE))
        .unwrap_or_default()
}

/// A valid image name made from an image reference or file name: the last path segment,
/// without tag or digest or archive suffix, lowercased, other characters as '-'.
pub fn name_from(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let last = last.split(['@', ':']).next().unwrap_or(last);
    let last = last
        .trim_end_matches(".tar")
        .trim_end_matches(".oci")
        .trim_end_matches(".tar.gz");
    let mut s: String = last
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    let s = s.trim_start_matches(['-', '_', '.']);
    s.chars().take(super::MAX_NAME_LEN).collect()
}

/// Remove leftovers of imports and removals whose process is gone.
fn clean_leftovers(images_dir: &Path) {
    let Ok(rd) = fs::read_dir(images_dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        let Some(rest) = n
            .strip_prefix(IMPORT_PREFIX)
            .or_else(|| n.strip_prefix(REMOVE_PREFIX))
        else {
            continue;
        };
        // <name>.<pid>.<nanos>
        let pid = rest.rsplit('.').nth(1).and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn unique_suffix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}.{}.{nanos}", std::process::id())
}

/// Import the OCI image at `path` as `name` (default: from the image's reference, else the
/// file name). Reports progress through `progress`.
pub fn import(
    images_dir: &Path,
    path: &Path,
    name: Option<&str>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportResult, StoreError> {
    if let Some(n) = name {
        super::validate_name(n)?;
        if images_dir.join(n).exists() {
            return Err(StoreError::Exists(n.to_string()));
        }
    }
    fs::create_dir_all(images_dir).map_err(io_err("mkdir", images_dir))?;
    clean_leftovers(images_dir);
    let tmp = images_dir.join(format!(
        "{IMPORT_PREFIX}{}",
        unique_suffix(name.unwrap_or("unnamed"))
    ));
    let result = build(images_dir, &tmp, path, name, progress);
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn build(
    images_dir: &Path,
    tmp: &Path,
    path: &Path,
    name: Option<&str>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportResult, StoreError> {
    fs::create_dir(tmp).map_err(io_err("mkdir", tmp))?;
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", tmp))?;
    let rootfs = tmp.join(super::ROOTFS);
    fs::create_dir(&rootfs).map_err(io_err("mkdir", &rootfs))?;
    let u = import::unpack(path, &rootfs, progress).map_err(|source| StoreError::Import {
        path: path.to_path_buf(),
        source,
    })?;
    // The root's owner and mode are the store's, whatever the layers said.
    std::os::unix::fs::chown(&rootfs, Some(0), Some(0)).map_err(io_err("chown", &rootfs))?;
    fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755))
        .map_err(io_err("chmod", &rootfs))?;
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let from = u.reference.clone().unwrap_or_else(|| {
                path.file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default()
            });
            let n = name_from(&from);
            super::validate_name(&n).map_err(|e| StoreError::NoName {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            n
        }
    };
    let config = ImageConfig {
        env: u.env,
        working_dir: u.working_dir,
        entrypoint: u.entrypoint,
        cmd: u.cmd,
        user: u.user,
        format: u.format.to_string(),
        config_digest: u.config_digest,
        layers: u.layers,
        imported_at: crate::slice::state::now_secs(),
    };
    crate::util::fs::write_json_atomic(&tmp.join(CONFIG_FILE), &config).map_err(|e| {
        StoreError::Io {
            op: "write",
            path: tmp.join(CONFIG_FILE),
            source: io::Error::other(e.to_string()),
        }
    })?;
    // Usable as a slice's root? (entry point, owner, modes) — checked on the finished tree
    // under its temporary name, so a refused image never appears.
    let tmp_name = tmp
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    super::check_image(images_dir, &tmp_name, 0).map_err(|e| StoreError::Import {
        path: path.to_path_buf(),
        source: ImportError::Format(
            e.to_string()
                .replace(&format!("image \"{tmp_name}\": "), ""),
        ),
    })?;
    // Everything on disk before the name appears.
    let dir = fs::File::open(images_dir).map_err(io_err("open", images_dir))?;
    // SAFETY: valid fd.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
        return Err(io_err("syncfs", images_dir)(io::Error::last_os_error()));
    }
    let dest = images_dir.join(&name);
    match nix::fcntl::renameat2(
        None,
        tmp,
        None,
        &dest,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => return Err(StoreError::Exists(name)),
        Err(e) => return Err(io_err("rename into place", &dest)(e.into())),
    }
    crate::util::fs::fsync_dir(images_dir).map_err(|e| StoreError::Io {
        op: "fsync",
        path: images_dir.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(ImportResult {
        name,
        config,
        entries: u.entries,
        bytes: u.bytes,
    })
}

/// Slices (by name) whose spec names `image`, from `<slices>/*/spec.json`.
pub fn users(slices_dir: &Path, image: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(slices_dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path().join(crate::slice::state::SPEC_FILE);
        if let Ok(s) = crate::util::fs::read_json::<crate::slice::SliceSpec>(&p) {
            if s.image == image {
                out.push(s.name);
            }
        }
    }
    out.sort();
    out
}

/// Remove image `name` unless a slice uses it. Holds the store lock (`store_lock`, the one
/// slice creation takes) so that no slice can start using it meanwhile.
pub fn remove(
    images_dir: &Path,
    slices_dir: &Path,
    store_lock: &Path,
    name: &str,
) -> Result<(), StoreError> {
    super::validate_name(name)?;
    let dir = images_dir.join(name);
    if fs::symlink_metadata(&dir).is_err() {
        return Err(StoreError::Image(super::ImageError::NotFound {
            name: name.to_string(),
            dir: images_dir.to_path_buf(),
            available: super::available_names(images_dir, 0),
        }));
    }
    if let Some(parent) = store_lock.parent() {
        fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
    }
    let lock = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store_lock)
        .map_err(io_err("open", store_lock))?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err("lock", store_lock)(e.into()))?;
    let slices = users(slices_dir, name);
    if !slices.is_empty() {
        return Err(StoreError::InUse {
            name: name.to_string(),
            slices,
        });
    }
    let gone = images_dir.join(format!("{REMOVE_PREFIX}{}", unique_suffix(name)));
    fs::rename(&dir, &gone).map_err(io_err("rename", &dir))?;
    crate::util::fs::fsync_dir(images_dir).map_err(|e| StoreError::Io {
        op: "fsync",
        path: images_dir.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    fs::remove_dir_all(&gone).map_err(io_err("remove", &gone))
}

/// Names of environment variables the runtime sets itself, which an image cannot override.
const RUNTIME_ENV: [&str; 2] = ["container", "VSLICE_NAME"];

/// The init a slice gets when its create request names none: the image's `/sbin/init`
/// if it has one (a slice is a system container: its init supervises the rest), else the
/// image config's Entrypoint + Cmd (an application image then runs its program as the slice's
/// PID 1), else `/sbin/init` (which the create then refuses as missing, naming the image).
pub fn default_init(image: &super::Image, images_dir: &Path) -> Vec<String> {
    const INIT: &str = "/sbin/init";
    if image.entry_point() == Some(INIT) {
        return vec![INIT.to_string()];
    }
    let c = config(images_dir, &image.name);
    let argv: Vec<String> = c.entrypoint.iter().chain(&c.cmd).cloned().collect();
    if argv.is_empty() {
        vec![INIT.to_string()]
    } else {
        argv
    }
}

/// Apply an imported image's Env and WorkingDir to a slice's init process: the image's
/// variables replace the runtime defaults of the same name (PATH, HOME, …) except the ones the
/// runtime owns; the working directory is used only when it is a directory in the image.
pub fn apply_config(spec: &mut oci_spec::runtime::Spec, image: &super::Image, c: &ImageConfig) {
    let Some(p) = spec.process_mut().as_mut() else {
        return;
    };
    if !c.env.is_empty() {
        let key = |e: &str| e.split('=').next().unwrap_or_default().to_string();
        let mut env = p.env().clone().unwrap_or_default();
        for e in &c.env {
            let k = key(e);
            if !e.contains('=') || e.contains('\0') || RUNTIME_ENV.contains(&k.as_str()) {
                continue;
            }
            env.retain(|d| key(d) != k);
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(w) = &c.working_dir {
        let wp = Path::new(w);
        let is_dir = wp.is_absolute()
            && super::resolve_in_root(&image.rootfs, wp)
                .and_then(fs::symlink_metadata)
                .is_ok_and(|m| m.is_dir());
        if is_dir {
            p.set_cwd(wp.to_path_buf());
        }
    }
}

/// An image with its stored config and the slices that use it.
pub fn details(
    images_dir: &Path,
    slices_dir: &Path,
    name: &str,
) -> Result<crate::proto::image_import::ImageDetails, StoreError> {
    let image = super::resolve(images_dir, name)?;
    Ok(crate::proto::image_import::ImageDetails {
        config: config(images_dir, name),
        used_by: users(slices_dir, name),
        image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_references() {
        for (r, n) in [
            ("docker.io/library/busybox:latest", "busybox"),
            ("localhost/My_App@sha256:abcd", "my_app"),
            ("latest", "latest"),
            ("app.tar", "app"),
            ("..weird..name..", "weird.name."),
            ("---", ""),
        ] {
            assert_eq!(name_from(r), n, "{r}");
        }
        assert!(super::super::validate_name(&name_from(&"x".repeat(100))).is_ok());
    }
}
