//! ext4/XFS project quotas: tag a directory with a project id (FS_IOC_FSSETXATTR with
//! PROJINHERIT, so everything created below it inherits the id) and set the project's limits
//! (quotactl_fd Q_SETQUOTA on PRJQUOTA).
//!
//! Raw ioctls and syscalls through libc: the kernel ABI is three small structs. (The `quota`
//! crates on crates.io wrap the old quotactl(2) on a block-device path, which needs the device
//! node resolved from the mount table; quotactl_fd(2), Linux 5.14, takes any descriptor on the
//! filesystem.) A slice's root cannot undo the tag: the kernel refuses changes of the project
//! id or of PROJINHERIT from any user namespace but the initial one (fileattr_set_prepare),
//! and Q_SETQUOTA needs CAP_SYS_ADMIN in the initial namespace.
use std::os::fd::AsRawFd;
use std::path::Path;

use super::DiskError;

/// struct fsxattr (linux/fs.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f; // _IOR('X', 31, struct fsxattr)
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820; // _IOW('X', 32, struct fsxattr)
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

const PRJQUOTA: i32 = 2;
const Q_GETQUOTA: i32 = 0x80_0007;
const Q_SETQUOTA: i32 = 0x80_0008;
/// XFS-style state query, also answered by ext4 (dquot_get_state).
const Q_XGETQSTATV: i32 = (b'X' as i32) << 8 | 8;
const FS_QUOTA_PDQ_ACCT: u16 = 1 << 4;
const FS_QUOTA_PDQ_ENFD: u16 = 1 << 5;
/// dqb_valid bits: block limits, inode limits.
const QIF_BLIMITS: u32 = 1;
const QIF_ILIMITS: u32 = 4;
/// Quota block limits are in units of 1 KiB (QIF_DQBLKSIZE).
const QIF_DQBLKSIZE: u64 = 1024;

fn qcmd(cmd: i32, typ: i32) -> i32 {
    (cmd << 8) | (typ & 0xff)
}

fn quotactl_fd(fd: i32, cmd: i32, id: u32, addr: *mut libc::c_void) -> std::io::Result<()> {
    // SAFETY: `addr` points to a buffer of the size the command expects (the callers pass a
    // libc::dqblk or a zeroed 256-byte fs_quota_statv buffer).
    let r = unsafe { libc::syscall(libc::SYS_quotactl_fd, fd, cmd as u32, id, addr) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_dir(path: &Path) -> Result<std::fs::File, DiskError> {
    std::fs::File::open(path).map_err(|e| DiskError::io("open", path, e))
}

/// Whether project quotas are accounted and enforced on the filesystem holding `path`.
pub fn enforced(path: &Path) -> bool {
    let Ok(dir) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = [0u8; 256];
    buf[0] = 1; // FS_QSTATV_VERSION1
    let cmd = qcmd(Q_XGETQSTATV, PRJQUOTA);
    if quotactl_fd(dir.as_raw_fd(), cmd, 0, buf.as_mut_ptr().cast()).is_err() {
        return false;
    }
    let flags = u16::from_ne_bytes([buf[2], buf[3]]);
    flags & FS_QUOTA_PDQ_ACCT != 0 && flags & FS_QUOTA_PDQ_ENFD != 0
}

/// Give `dir` project id `projid` and PROJINHERIT (new entries below inherit the id).
pub fn tag(dir: &Path, projid: u32) -> Result<(), DiskError> {
    let f = open_dir(dir)?;
    let mut x = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR fills a struct fsxattr.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) } < 0 {
        return Err(DiskError::io(
            "ioctl FS_IOC_FSGETXATTR",
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    x.projid = projid;
    x.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: FS_IOC_FSSETXATTR reads a struct fsxattr.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSSETXATTR, &x as *const FsXattr) } < 0 {
        return Err(DiskError::io(
            "ioctl FS_IOC_FSSETXATTR",
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Set the project's byte and inode hard limits (0 = none); `on` is any path on the filesystem.
pub fn set_limits(on: &Path, projid: u32, bytes: u64, inodes: u64) -> Result<(), DiskError> {
    let f = open_dir(on)?;
    // SAFETY: dqblk is plain data.
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    q.dqb_bhardlimit = bytes.div_ceil(QIF_DQBLKSIZE);
    q.dqb_bsoftlimit = q.dqb_bhardlimit;
    q.dqb_ihardlimit = inodes;
    q.dqb_isoftlimit = inodes;
    q.dqb_valid = QIF_BLIMITS | QIF_ILIMITS;
    quotactl_fd(
        f.as_raw_fd(),
        qcmd(Q_SETQUOTA, PRJQUOTA),
        projid,
        (&mut q as *mut libc::dqblk).cast(),
    )
    .map_err(|e| DiskError::io("quotactl Q_SETQUOTA (project)", on, e))
}

/// (bytes used, inodes used, byte limit, inode limit) of the project.
pub fn get(on: &Path, projid: u32) -> Result<(u64, u64, u64, u64), DiskError> {
    let f = open_dir(on)?;
    // SAFETY: dqblk is plain data.
    let mut q: libc::dqblk = unsafe { std::mem::zeroed() };
    quotactl_fd(
        f.as_raw_fd(),
        qcmd(Q_GETQUOTA, PRJQUOTA),
        projid,
        (&mut q as *mut libc::dqblk).cast(),
    )
    .map_err(|e| DiskError::io("quotactl Q_GETQUOTA (project)", on, e))?;
    Ok((
        q.dqb_curspace,
        q.dqb_curinodes,
        q.dqb_bhardlimit * QIF_DQBLKSIZE,
        q.dqb_ihardlimit,
    ))
}

/// (project id, PROJINHERIT) of a file or directory.
pub fn project_of(path: &Path) -> Result<(u32, bool), DiskError> {
    let f = open_dir(path)?;
    let mut x = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR fills a struct fsxattr.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) } < 0 {
        return Err(DiskError::io(
            "ioctl FS_IOC_FSGETXATTR",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok((x.projid, x.xflags & FS_XFLAG_PROJINHERIT != 0))
}
