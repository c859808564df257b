//! Volumes: host directories attached into a slice's root by the shim (host root, in its
//! private mount namespace), right after the slice's overlay is mounted and before init
//! copies the mount table and pivots.
//!
//! * The host directory is cloned detached (open_tree) and made idmapped with the slice's user
//!   namespace (on-disk id N shows as slice id N), `nosuid,nodev`, and read-only when asked.
//!   Because the mount reaches init's mount namespace from a more privileged one, the kernel
//!   locks it: the slice's root can neither unmount it (to see what is below) nor make a
//!   read-only volume writable.
//! * The mount point is resolved inside the slice's root with openat2 `RESOLVE_IN_ROOT |
//!   RESOLVE_NO_XDEV` (the slice's upper layer is the slice's to plant symlinks in: they
//!   resolve inside the slice) and missing directories are made one name at a time; the mount
//!   is attached to that descriptor (move_mount with an empty target path), so no path is
//!   walked again afterwards.
use super::{sys, SandboxError};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

/// One volume as the shim attaches it (built from the slice's spec, validated at create).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub source: PathBuf,
    /// Absolute path inside the slice.
    pub target: String,
    pub read_only: bool,
    /// Host uid of the slice's root: owner of mount points made here.
    pub uid_base: u32,
}

const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

fn err(op: &'static str, target: &str, e: nix::Error) -> SandboxError {
    SandboxError::Sys {
        op,
        target: target.to_string(),
        source: e,
    }
}

fn openat2_in_root(root: RawFd, path: &str) -> nix::Result<OwnedFd> {
    let c =
        CString::new(if path.is_empty() { "." } else { path }).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
    for _ in 0..1000 {
        // SAFETY: valid fd, NUL-terminated path, correctly sized open_how.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = nix::Error::last();
        if e != nix::Error::EAGAIN && e != nix::Error::EINTR {
            return Err(e);
        }
    }
    Err(nix::Error::EAGAIN)
}

/// The directory `target` inside `root`, made (owned by the slice's root) where missing.
fn mount_point(root: &OwnedFd, target: &str, uid_base: u32) -> nix::Result<OwnedFd> {
    let names: Vec<&str> = Path::new(target)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    let mut done = String::new();
    for name in names {
        let parent = openat2_in_root(root.as_raw_fd(), &done)?;
        if !done.is_empty() {
            done.push('/');
        }
        done.push_str(name);
        match openat2_in_root(root.as_raw_fd(), &done) {
            Ok(_) => continue,
            Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(e),
        }
        match nix::sys::stat::mkdirat(
            Some(parent.as_raw_fd()),
            name,
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) => nix::unistd::fchownat(
                Some(parent.as_raw_fd()),
                name,
                Some(nix::unistd::Uid::from_raw(uid_base)),
                Some(nix::unistd::Gid::from_raw(uid_base)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?,
            Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    openat2_in_root(root.as_raw_fd(), &done)
}

/// Attach every volume below `merged` (see the module doc).
pub fn attach(vols: &[VolumeMount], merged: &Path, userns: &OwnedFd) -> Result<(), SandboxError> {
    if vols.is_empty() {
        return Ok(());
    }
    let shown = merged.display().to_string();
    let root: OwnedFd = std::fs::File::open(merged)
        .map_err(|e| {
            err(
                "open",
                &shown,
                nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?
        .into();
    for v in vols {
        let src = v.source.to_string_lossy();
        let clone =
            sys::open_tree_clone(&src, true).map_err(|e| err("open_tree (volume)", &src, e))?;
        let mut attrs = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
        if v.read_only {
            attrs |= sys::MOUNT_ATTR_RDONLY;
        }
        sys::mount_setattr(&clone, attrs, 0, Some(userns.as_raw_fd())).map_err(|e| {
            err(
                "mount_setattr idmap (volume; does its file system support idmapped mounts?)",
                &src,
                e,
            )
        })?;
        let target = mount_point(&root, &v.target, v.uid_base)
            .map_err(|e| err("volume mount point", &v.target, e))?;
        let empty = CString::default();
        // SAFETY: valid descriptors and NUL-terminated (empty) paths.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                clone.as_raw_fd(),
                empty.as_ptr(),
                target.as_raw_fd(),
                empty.as_ptr(),
                sys::MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            )
        };
        if r != 0 {
            return Err(err("move_mount (volume)", &v.target, nix::Error::last()));
        }
    }
    Ok(())
}
