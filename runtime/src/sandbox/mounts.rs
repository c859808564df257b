//! The slice's mount tree, built in two phases so that nothing a slice controls can redirect a
//! mount onto the host:
//!
//! 1. *prepare* (before pivot_root, while host paths are still reachable): every filesystem is
//!    created detached (fsopen/fsmount — procfs and sysfs must be, because the kernel only lets a
//!    user namespace mount them while a fully visible instance is in the mount namespace) and
//!    every bind source is cloned detached (open_tree).
//! 2. *attach* (after pivot_root and detaching the old root): the detached mounts are moved onto
//!    their targets, which now resolve inside the new root only — a symlink planted in the
//!    slice's upper dir can at worst point elsewhere inside the slice.
use super::sys::{self, FsOption};
use super::SandboxError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::Mount;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Device nodes every sandbox gets, bind-mounted from the host (a user namespace cannot mknod).
pub const DEFAULT_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// One mount ready to be attached.
pub struct Prepared {
    target: String,
    fd: OwnedFd,
    /// Whether the target is a directory (else a file is created to mount over).
    dir: bool,
}

/// Flags and data parsed from OCI mount options.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    pub attrs: u64,
    pub bind: bool,
    pub recursive: bool,
    pub data: Vec<String>,
}

/// Split OCI mount options into mount attributes and filesystem data.
pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        match opt.as_str() {
            "ro" => o.attrs |= sys::MOUNT_ATTR_RDONLY,
            "nosuid" => o.attrs |= sys::MOUNT_ATTR_NOSUID,
            "nodev" => o.attrs |= sys::MOUNT_ATTR_NODEV,
            "noexec" => o.attrs |= sys::MOUNT_ATTR_NOEXEC,
            "noatime" => o.attrs |= sys::MOUNT_ATTR_NOATIME,
            "strictatime" => o.attrs |= sys::MOUNT_ATTR_STRICTATIME,
            "nodiratime" => o.attrs |= sys::MOUNT_ATTR_NODIRATIME,
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true
            }
            // Defaults or propagation settings: every mount in the sandbox is private.
            "rw" | "suid" | "dev" | "exec" | "relatime" | "atime" | "diratime" | "private"
            | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable"
            | "runbindable" => {}
            other => o.data.push(other.to_string()),
        }
    }
    o
}

fn err(op: &'static str, target: &str, e: nix::Error) -> SandboxError {
    SandboxError::Sys {
        op,
        target: target.to_string(),
        source: e,
    }
}

/// A bind source cloned by the caller before the user namespace, by index in the mounts.
pub type HostBinds = Vec<Option<OwnedFd>>;

/// The bind sources of `mounts`, cloned detached (with their flags) as the caller: host root
/// in the host's mount namespace, before the sandbox enters its user namespace. [`prepare`]
/// falls back to them when the sandbox's root may not reach a source, e.g. containerd's
/// per-pod /dev/shm under its 0700 state directory (runc opens bind sources on the host for
/// the same reason). A source that cannot be opened here is left to [`prepare`] to report.
pub fn open_bind_sources(mounts: &[Mount]) -> HostBinds {
    mounts
        .iter()
        .map(|m| {
            let opts = parse_options(m.options().as_deref().unwrap_or_default());
            if !(opts.bind || m.typ().as_deref() == Some("bind")) {
                return None;
            }
            let source = m.source().as_ref()?;
            let fd = sys::open_tree_clone(&source.to_string_lossy(), opts.recursive).ok()?;
            if opts.attrs != 0 {
                sys::mount_setattr(&fd, opts.attrs, 0, None).ok()?;
            }
            Some(fd)
        })
        .collect()
}

/// Phase 1: create every mount of `mounts` detached, plus the default device nodes; a bind
/// source the sandbox may not open itself (EACCES) is taken from `host_binds`.
pub fn prepare(mounts: &[Mount], mut host_binds: HostBinds) -> Result<Vec<Prepared>, SandboxError> {
    let mut out = Vec::with_capacity(mounts.len() + DEFAULT_DEVICES.len());
    let mut devices_done = false;
    for (i, m) in mounts.iter().enumerate() {
        let target = m.destination().to_string_lossy().into_owned();
        let opts = parse_options(m.options().as_deref().unwrap_or_default());
        let typ = m.typ().clone().unwrap_or_default();
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if opts.bind || typ == "bind" {
            let host = host_binds.get_mut(i).and_then(Option::take);
            let fd = match (sys::open_tree_clone(&source, opts.recursive), host) {
                (Ok(fd), _) => {
                    if opts.attrs != 0 {
                        sys::mount_setattr(&fd, opts.attrs, 0, None)
                            .map_err(|e| err("mount_setattr (bind flags)", &target, e))?;
                    }
                    fd
                }
                (Err(nix::Error::EACCES), Some(fd)) => fd,
                (Err(e), _) => return Err(err("open_tree (bind source)", &source, e)),
            };
            // From the clone, not the path: the sandbox's root may not be able to stat it.
            let dir = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .unwrap_or(true);
            out.push(Prepared { target, fd, dir });
        } else {
            let fs_opts: Vec<FsOption> = opts
                .data
                .iter()
                .map(|d| match d.split_once('=') {
                    Some((k, v)) => FsOption::Value(k, v),
                    None => FsOption::Flag(d),
                })
                .collect();
            let fd = match sys::fs_mount(&typ, &source, &fs_opts, opts.attrs) {
                Ok(fd) => fd,
                // A user namespace may mount sysfs only with a network namespace of its own;
                // with the host's (a Kubernetes pod with hostNetwork under vslice-runc) the
                // kernel says EPERM. runc's answer, kept: the host's /sys, read-only, with
                // the requested flags on every submount.
                Err(nix::Error::EPERM) if typ == "sysfs" => {
                    let fd = sys::open_tree_clone("/sys", true)
                        .map_err(|e| err("open_tree (sysfs fallback)", "/sys", e))?;
                    sys::mount_setattr(&fd, opts.attrs | sys::MOUNT_ATTR_RDONLY, 0, None)
                        .map_err(|e| err("mount_setattr (sysfs fallback)", &target, e))?;
                    fd
                }
                Err(e) => return Err(err_fs(&typ, &target, &opts.data, e)),
            };
            out.push(Prepared {
                target: target.clone(),
                fd,
                dir: true,
            });
        }
        // Device nodes go right after /dev is mounted, before anything nests deeper.
        if !devices_done && m.destination() == Path::new("/dev") {
            devices_done = true;
            for dev in DEFAULT_DEVICES {
                let host = format!("/dev/{dev}");
                let fd = sys::open_tree_clone(&host, false)
                    .map_err(|e| err("open_tree (device)", &host, e))?;
                out.push(Prepared {
                    target: host,
                    fd,
                    dir: false,
                });
            }
        }
    }
    Ok(out)
}

fn err_fs(typ: &str, target: &str, data: &[String], e: nix::Error) -> SandboxError {
    SandboxError::Spec(format!(
        "mount {typ} on {target} (options {}): {}",
        if data.is_empty() {
            "none".to_string()
        } else {
            data.join(",")
        },
        e.desc()
    ))
}

/// Make every mount private (nothing we do propagates back to the host), then pivot into
/// `rootfs` and detach the old root entirely.
pub fn pivot_into(rootfs: &str) -> Result<(), SandboxError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("make-rprivate", "/", e))?;
    // pivot_root needs a mount point (an OCI bundle's rootfs is usually a plain directory), and
    // refuses a mount that was locked when our user namespace copied the mount table (the
    // slice's overlay is): a fresh bind made here is neither.
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err("bind rootfs", rootfs, e))?;
    nix::unistd::chdir(rootfs).map_err(|e| err("chdir", rootfs, e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
    // removes it without needing a put_old directory inside the slice (runc does the same).
    sys::pivot_root(".", ".").map_err(|e| err("pivot_root", rootfs, e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", rootfs, e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir", "/", e))?;
    Ok(())
}

/// Phase 2: attach the prepared mounts in order (targets resolve inside the new root).
pub fn attach(prepared: Vec<Prepared>) -> Result<(), SandboxError> {
    for p in prepared {
        ensure_target(&p.target, p.dir)?;
        sys::move_mount_to(&p.fd, &p.target).map_err(|e| err("move_mount", &p.target, e))?;
    }
    Ok(())
}

fn ensure_target(target: &str, dir: bool) -> Result<(), SandboxError> {
    let path = Path::new(target);
    if dir {
        std::fs::create_dir_all(path).map_err(|e| {
            err(
                "mkdir",
                target,
                nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
    } else {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                err(
                    "mkdir",
                    target,
                    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                )
            })?;
        }
        match nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => drop(unsafe_owned(fd)),
            Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(err("create mount target", target, e)),
        }
    }
    Ok(())
}

fn unsafe_owned(fd: std::os::fd::RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: fd was just returned by open(2) and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The /dev symlinks every Linux program expects.
pub fn dev_symlinks(with_pts: bool) -> Result<(), SandboxError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    if with_pts {
        links.push(("pts/ptmx", "/dev/ptmx"));
    }
    for (src, dst) in links {
        match std::os::unix::fs::symlink(src, dst) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(err(
                    "symlink",
                    dst,
                    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                ))
            }
        }
    }
    Ok(())
}

/// Hide paths: /dev/null over files, an empty read-only tmpfs over directories.
pub fn mask(paths: &[String]) -> Result<(), SandboxError> {
    for p in paths {
        let md = match std::fs::symlink_metadata(p) {
            Ok(md) => md,
            Err(_) => continue, // nothing to hide
        };
        let r = if md.is_dir() {
            mount(
                Some("tmpfs"),
                p.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=0555"),
            )
        } else {
            mount(
                Some("/dev/null"),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        r.map_err(|e| err("mask", p, e))?;
    }
    Ok(())
}

/// Make paths read-only (bind over themselves, remount read-only keeping their other flags).
pub fn make_readonly(paths: &[String]) -> Result<(), SandboxError> {
    for p in paths {
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(
            Some(p.as_str()),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| err("bind (read-only path)", p, e))?;
        remount_readonly(p)?;
    }
    Ok(())
}

/// Remount a bind mount read-only, keeping nosuid/nodev/noexec: the kernel refuses, in a user
/// namespace, a remount that would clear flags the mount already has.
pub fn remount_readonly(p: &str) -> Result<(), SandboxError> {
    let current = nix::sys::statvfs::statvfs(p).map_err(|e| err("statvfs", p, e))?;
    let f = current.flags();
    use nix::sys::statvfs::FsFlags;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for (have, want) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(have) {
            flags |= want;
        }
    }
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>)
        .map_err(|e| err("remount read-only", p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_attrs_and_data() {
        let o = parse_options(&[
            "nosuid".into(),
            "rbind".into(),
            "mode=755".into(),
            "ro".into(),
            "rprivate".into(),
        ]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.attrs, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_RDONLY);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
    }
}
