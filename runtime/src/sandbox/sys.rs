//! Thin, checked wrappers for the syscalls nix does not cover yet: the new mount API
//! (open_tree, move_mount, mount_setattr, fsopen/fsconfig/fsmount), pivot_root and close_range.
//! Each returns `nix::Result` so callers attach the path they were working on.
use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub const OPEN_TREE_CLONE: u32 = 1;
pub const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
pub const AT_RECURSIVE: u32 = 0x8000;
pub const AT_EMPTY_PATH: u32 = libc::AT_EMPTY_PATH as u32;
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const FSOPEN_CLOEXEC: u32 = 1;
const FSMOUNT_CLOEXEC: u32 = 1;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(s: &str) -> nix::Result<CString> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

fn fd_result(ret: libc::c_long) -> nix::Result<OwnedFd> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

fn unit_result(ret: libc::c_long) -> nix::Result<()> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Clone the mount at `path` (recursively if `recursive`) into a detached mount.
pub fn open_tree_clone(path: &str, recursive: bool) -> nix::Result<OwnedFd> {
    let p = cstr(path)?;
    let mut flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: plain syscall with a valid NUL-terminated path.
    fd_result(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags) })
}

/// Attach a detached mount (or move an attached one) given by `fd` onto `target`.
pub fn move_mount_to(fd: &OwnedFd, target: &str) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let empty = cstr("")?;
    let t = cstr(target)?;
    // SAFETY: valid fd and NUL-terminated strings.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
}

/// Set mount attributes on the mount tree referred to by `fd`; `userns` makes it idmapped.
pub fn mount_setattr(fd: &OwnedFd, set: u64, clear: u64, userns: Option<RawFd>) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let empty = cstr("")?;
    let mut attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        ..Default::default()
    };
    if let Some(ns) = userns {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = ns as u64;
    }
    // SAFETY: attr outlives the call; size matches the struct the kernel expects (v0).
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// A filesystem configuration option for [`fs_mount`].
pub enum FsOption<'a> {
    Flag(&'a str),
    Value(&'a str, &'a str),
}

/// Create a new, detached filesystem mount (fsopen + fsconfig + fsmount). The mount is
/// created now, in the caller's namespaces (procfs takes the caller's PID namespace, sysfs
/// its network namespace), and can be attached later with [`move_mount_to`].
pub fn fs_mount(
    fstype: &str,
    source: &str,
    options: &[FsOption],
    attrs: u64,
) -> nix::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let t = cstr(fstype)?;
    // SAFETY: valid NUL-terminated string.
    let fs = fd_result(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })?;
    let set = |cmd: u32, key: &str, value: Option<&str>| -> nix::Result<()> {
        let k = cstr(key)?;
        let v = value.map(cstr).transpose()?;
        let vp = v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        // SAFETY: valid fd and strings that outlive the call.
        unit_result(unsafe {
            libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, k.as_ptr(), vp, 0)
        })
    };
    if !source.is_empty() {
        set(FSCONFIG_SET_STRING, "source", Some(source))?;
    }
    for opt in options {
        match opt {
            FsOption::Flag(k) => set(FSCONFIG_SET_FLAG, k, None)?,
            FsOption::Value(k, v) => set(FSCONFIG_SET_STRING, k, Some(v))?,
        }
    }
    // SAFETY: valid fd; null key/value are what FSCONFIG_CMD_CREATE takes.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    // SAFETY: valid fs context fd.
    fd_result(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// pivot_root(2); nix's wrapper takes paths too but we want the raw "." form.
pub fn pivot_root(new_root: &str, put_old: &str) -> nix::Result<()> {
    let n = cstr(new_root)?;
    let o = cstr(put_old)?;
    // SAFETY: valid NUL-terminated paths.
    unit_result(unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) })
}

/// Mark every descriptor from `first` up close-on-exec, so nothing of the host leaks into
/// the slice's program (CVE-2024-21626 was a leaked directory fd).
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    // SAFETY: plain syscall.
    unit_result(unsafe {
        libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC)
    })
}

/// How many threads the calling process has (`Threads:` in /proc/self/status).
pub fn thread_count() -> std::io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "/proc/self/status has no Threads: line",
            )
        })
}

/// Refuse to fork a sandbox child from a multi-threaded process. After fork(2) only the
/// forking thread exists in the child; every lock another thread held at that moment (the
/// allocator's, stdio's, the panic hook's, a tokio runtime's) stays locked forever, and the
/// sandbox children allocate, format errors and write files before they exec. So the
/// executor's entry points run only in a single-threaded caller (the shim, `vslice-runc`),
/// never inside the daemon, and this check turns that rule from a comment into an error.
pub fn ensure_single_threaded(op: &'static str) -> Result<(), super::SandboxError> {
    // Nothing to report the failure with but the error itself: if /proc cannot tell us, we
    // cannot prove the fork is sound, so refuse as well.
    let threads = thread_count().map_err(|e| super::SandboxError::Sys {
        op: "read",
        target: format!("/proc/self/status (thread count before {op})"),
        source: super::process::io_errno(&e),
    })?;
    if threads > 1 {
        return Err(super::SandboxError::MultiThreaded { op, threads });
    }
    Ok(())
}

/// Make any panic in this process abort at once, before it can unwind. Installed by the shim
/// at start and by every sandbox/join child right after fork: unwinding through a
/// half-set-up child would run destructors of the caller's objects it inherited (closing the
/// caller's descriptors, removing its temporary files, dropping guards that undo the
/// caller's work) and could return into the caller's code in the child. An abort ends the
/// child with SIGABRT, which its parent sees as a failed child and reports.
pub fn abort_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        std::process::abort();
    }));
}
