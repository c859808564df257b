//! Supported kernels and file systems: what a slice needs from the host, checked at daemon
//! start and at slice create, so that an unsupported host fails at once with an error that
//! names the cause and the fix (instead of an EINVAL from mount_setattr deep in the shim).
//!
//! A slice needs (docs/design.md, "Supported kernels and file systems"):
//! * user namespaces (its root is an unprivileged host uid range);
//! * overlayfs (its copy-on-write root over the shared image);
//! * idmapped mounts on the file system that holds the image store: ext4, xfs and btrfs
//!   since Linux 5.12, tmpfs only since 6.3 (so Linux 6.1, Debian 12, cannot run slices whose
//!   images live on tmpfs); ramfs, 9p, NFS and FUSE never;
//! * cgroup v2 with the memory, pids and cpu controllers, or the same v1 hierarchies.
//!
//! The idmap check is a real probe, not a table: it clones the directory (open_tree) and asks
//! the kernel to idmap the clone (mount_setattr) with a throwaway user namespace. The clone
//! is detached and never attached, so it vanishes when its fd closes. Results are cached per
//! file system (device) for the life of the process: a create pays for the probe once.
// The checks run at start and per create and fail once; a large error (it names path, file
// system, kernel and fix) costs nothing there. SliceError boxes it.
#![allow(clippy::result_large_err)]
use crate::sandbox::sys;
use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum HostCheckError {
    #[error("user namespaces are unavailable ({reason}); slices run as unprivileged uid ranges in user namespaces: enable them (sysctl user.max_user_namespaces > 0; a kernel with CONFIG_USER_NS)")]
    UserNamespaces { reason: String },
    #[error("overlayfs is unavailable on Linux {kernel} (not in /proc/filesystems and no overlay module); slices need it for their copy-on-write root: `modprobe overlay`, or a kernel with CONFIG_OVERLAY_FS")]
    Overlayfs { kernel: String },
    #[error("cgroups: {reason}; vslice needs cgroup v2 at /sys/fs/cgroup with the memory, pids and cpu controllers (or the v1 memory, pids and cpu hierarchies)")]
    Cgroup { reason: String },
    #[error("{what} {path} is on {fs}; Linux {kernel} cannot idmap it ({reason}): {fix}")]
    Idmap {
        what: &'static str,
        path: PathBuf,
        fs: String,
        kernel: String,
        reason: String,
        fix: String,
    },
    #[error("checking {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The running kernel's release (e.g. "6.1.0-57-amd64").
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// (major, minor) of a release string like "6.1.0-57-amd64"; None if it does not parse.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The name of a file system type (statfs f_type), for messages.
pub fn fs_name(magic: u64) -> String {
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x8584_58f6 => "ramfs".into(),
        0x794c_7630 => "overlayfs".into(),
        0x0102_1997 => "9p".into(),
        0x6969 => "nfs".into(),
        0x6573_5546 => "fuse".into(),
        0x2fc1_2fc1 => "zfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        other => format!("file system type {other:#x}"),
    }
}

/// Everything but the file systems: user namespaces, overlayfs, cgroup controllers.
pub fn check_kernel() -> Result<(), HostCheckError> {
    let kernel = kernel_release();
    if !Path::new("/proc/self/ns/user").exists() {
        return Err(HostCheckError::UserNamespaces {
            reason: "no /proc/self/ns/user".into(),
        });
    }
    if let Ok(max) = std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        if max.trim() == "0" {
            return Err(HostCheckError::UserNamespaces {
                reason: "user.max_user_namespaces is 0".into(),
            });
        }
    }
    let builtin = std::fs::read_to_string("/proc/filesystems")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false);
    // Not registered yet: the kernel loads the module on the first overlay mount.
    let module = std::fs::read_to_string(format!("/lib/modules/{kernel}/modules.dep"))
        .map(|t| t.lines().any(|l| l.contains("/overlay.ko")))
        .unwrap_or(false);
    if !builtin && !module {
        return Err(HostCheckError::Overlayfs { kernel });
    }
    check_cgroups()
}

fn check_cgroups() -> Result<(), HostCheckError> {
    let need = ["memory", "pids", "cpu"];
    match crate::cgroup::detect() {
        crate::cgroup::Version::V2 => {
            let p = Path::new("/sys/fs/cgroup/cgroup.controllers");
            let have = std::fs::read_to_string(p).map_err(|source| HostCheckError::Io {
                what: "the cgroup v2 root",
                path: p.to_path_buf(),
                source,
            })?;
            let missing: Vec<&str> = need
                .iter()
                .copied()
                .filter(|c| !have.split_whitespace().any(|h| h == *c))
                .collect();
            if !missing.is_empty() {
                return Err(HostCheckError::Cgroup {
                    reason: format!(
                        "cgroup v2 without the {} controller(s) (cgroup.controllers: {:?})",
                        missing.join(", "),
                        have.trim()
                    ),
                });
            }
        }
        crate::cgroup::Version::V1 => {
            let missing: Vec<&str> = need
                .iter()
                .copied()
                .filter(|c| !Path::new("/sys/fs/cgroup").join(c).is_dir())
                .collect();
            if !missing.is_empty() {
                return Err(HostCheckError::Cgroup {
                    reason: format!(
                        "no cgroup v2 at /sys/fs/cgroup and no v1 hierarchy for {}",
                        missing.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Probe results per (device, file system type), for the life of the process. The type is
/// in the key because an unmounted file system's anonymous device number is reused.
type ProbeCache = HashMap<(u64, u64), Result<(), String>>;
static IDMAP_CACHE: Mutex<Option<ProbeCache>> = Mutex::new(None);

/// Can the file system holding `path` be idmapped (what a slice's root needs of the image
/// store)? `what` names the path in the error ("image store", "image").
pub fn check_idmap(what: &'static str, path: &Path) -> Result<(), HostCheckError> {
    let meta = std::fs::metadata(path).map_err(|source| HostCheckError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let fstype = nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 as u64)
        .unwrap_or(0);
    let dev = (meta.dev(), fstype);
    let cached = IDMAP_CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(&dev).cloned()));
    let result = match cached {
        Some(r) => r,
        None => {
            let r = probe_idmap(path);
            if let Ok(mut c) = IDMAP_CACHE.lock() {
                c.get_or_insert_with(HashMap::new).insert(dev, r.clone());
            }
            r
        }
    };
    result.map_err(|reason| idmap_error(what, path, reason))
}

fn idmap_error(what: &'static str, path: &Path, reason: String) -> HostCheckError {
    let kernel = kernel_release();
    let fs = nix::sys::statfs::statfs(path)
        .map(|s| fs_name(s.filesystem_type().0 as u64))
        .unwrap_or_else(|_| "an unknown file system".into());
    let old = kernel_version(&kernel).is_some_and(|v| v < (6, 3));
    let fix = if fs == "tmpfs" && old {
        "tmpfs can be idmapped from Linux 6.3 on: put the state root and image store on ext4, xfs or btrfs (or boot Linux >= 6.3)".to_string()
    } else {
        "put the state root and image store on ext4, xfs or btrfs (idmapped mounts since Linux 5.12; tmpfs since 6.3)".to_string()
    };
    HostCheckError::Idmap {
        what,
        path: path.to_path_buf(),
        fs,
        kernel,
        reason,
        fix,
    }
}

/// Clone `path` detached and idmap the clone with a throwaway user namespace. Err(reason) if
/// the kernel refuses.
fn probe_idmap(path: &Path) -> Result<(), String> {
    let userns = ThrowawayUserns::new().map_err(|e| format!("making a user namespace: {e}"))?;
    let clone = sys::open_tree_clone(&path.to_string_lossy(), false)
        .map_err(|e| format!("open_tree: {e}"))?;
    sys::mount_setattr(&clone, 0, 0, Some(userns.fd.as_raw_fd()))
        .map_err(|e| format!("mount_setattr idmap: {e}"))
    // `clone` was never attached: closing it unmounts it.
}

/// A user namespace (root mapped to nobody) held open by a child that waits on its stdin.
/// A process with threads (the daemon) cannot unshare(CLONE_NEWUSER) itself, so the child
/// does it between fork and exec. It runs `cat` only to stay alive until we have the
/// namespace fd; a raw clone(2) of a stack-only child would avoid the exec, but std's
/// spawn is the fork that is safe in a multi-threaded process.
struct ThrowawayUserns {
    fd: OwnedFd,
}

impl ThrowawayUserns {
    fn new() -> std::io::Result<ThrowawayUserns> {
        let mut cmd = Command::new("cat");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: unshare is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let result: std::io::Result<OwnedFd> = (|| {
            for map in ["uid_map", "gid_map"] {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(format!("/proc/{pid}/{map}"))?
                    .write_all(b"0 65534 1\n")?;
            }
            let f = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
            Ok(OwnedFd::from(f))
        })();
        drop(child.stdin.take()); // cat sees EOF and exits
        let _ = child.wait();
        result.map(|fd| ThrowawayUserns { fd })
    }
}

/// The daemon's start check: the kernel, and idmapped mounts on the image store (or, before
/// it exists, the state root that will hold it).
pub fn check_daemon(root: &Path, images_dir: &Path) -> Result<(), HostCheckError> {
    check_kernel()?;
    if !nix::unistd::geteuid().is_root() {
        return Ok(()); // the probe needs root; such a daemon cannot start slices anyway
    }
    if images_dir.exists() {
        return check_idmap("image store", images_dir);
    }
    // Not made yet: the directory that will hold it.
    let mut dir = root;
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p,
            None => return Ok(()),
        }
    }
    check_idmap("state root", dir)
}

/// The create check: the kernel (cached) and idmapped mounts on the image's rootfs.
pub fn check_create(image_rootfs: &Path) -> Result<(), HostCheckError> {
    static KERNEL_OK: Mutex<Option<bool>> = Mutex::new(None);
    let ok = KERNEL_OK
        .lock()
        .map(|mut k| *k.get_or_insert_with(|| check_kernel().is_ok()))
        .unwrap_or(false);
    if !ok {
        check_kernel()?; // cheap file reads; gives the typed error
    }
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    check_idmap("image", image_rootfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.1.0-57-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("6.18.2"), Some((6, 18)));
        assert_eq!(kernel_version("x"), None);
    }

    #[test]
    fn tmpfs_on_old_kernels_names_the_cause_and_the_fix() {
        let e = HostCheckError::Idmap {
            what: "image store",
            path: "/x".into(),
            fs: "tmpfs".into(),
            kernel: "6.1.0-57-amd64".into(),
            reason: "mount_setattr idmap: EINVAL".into(),
            fix: "tmpfs can be idmapped from Linux 6.3 on: put the state root on ext4".into(),
        };
        let m = e.to_string();
        assert!(
            m.starts_with("image store /x is on tmpfs; Linux 6.1.0-57-amd64 cannot idmap it"),
            "{m}"
        );
        assert!(m.contains("6.3"), "{m}");
    }
}
