//! A per-slice ext4 image on a loop device, for state roots whose filesystem has no project
//! quotas.
//!
//! The image (`<slice>/disk.img`, sparse) is made at creation with mkfs.ext4. The shim attaches
//! it at each start (LOOP_CONFIGURE with direct I/O, so its pages are not cached twice, and
//! AUTOCLEAR, so the device is freed when the last mount of it goes) and mounts it on the
//! slice's `fs/` directory in its private mount namespace, under the overlay's upper and work
//! directories. When the slice ends, its mount namespace goes, and the device with it: a
//! crashed shim leaks neither mount nor loop device.
//!
//! mkfs.ext4, e2fsck and resize2fs (e2fsprogs) are run as tools: no maintained Rust crate
//! writes an ext4 filesystem or resizes one offline (`ext4-rs` and friends are readers or
//! experimental). Online growth needs no tool: EXT4_IOC_RESIZE_FS on the mounted filesystem.
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::DiskError;

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
/// _IOW('f', 16, __u64)
const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;
/// ext4 block size of slice images (mkfs.ext4 -b) and the loop device's logical block size.
pub const BLOCK: u64 = 4096;

/// struct loop_info64 (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// struct loop_config (linux/loop.h).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn run(cmd: &mut Command) -> Result<(), DiskError> {
    let out = cmd
        .output()
        .map_err(|e| DiskError::Tool(format!("{cmd:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DiskError::Tool(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Make a sparse image of `bytes` with an ext4 filesystem of at least `inodes` inodes.
pub fn make_image(image: &Path, bytes: u64, inodes: Option<u64>) -> Result<(), DiskError> {
    let f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(image)
        .map_err(|e| DiskError::io("create", image, e))?;
    f.set_len(bytes)
        .map_err(|e| DiskError::io("truncate", image, e))?;
    drop(f);
    let mut c = Command::new("mkfs.ext4");
    // -m 0: no blocks reserved for root (the slice's root is the only user); -E nodiscard:
    // the file is sparse already; a small journal keeps small quotas usable.
    c.args(["-q", "-F", "-m", "0", "-b", "4096", "-E", "nodiscard"]);
    c.args(["-L", "vslice-disk"]);
    if let Some(n) = inodes {
        c.arg("-N").arg(n.to_string());
    }
    c.arg(image);
    run(&mut c)
}

/// Grow or shrink the image of a stopped slice (offline: e2fsck, resize2fs).
pub fn resize_offline(image: &Path, bytes: u64) -> Result<(), DiskError> {
    let cur = std::fs::metadata(image)
        .map_err(|e| DiskError::io("stat", image, e))?
        .len();
    let blocks = bytes / BLOCK;
    if bytes > cur {
        set_len(image, bytes)?;
    }
    // e2fsck exits 1 when it fixed something: that is still a usable filesystem.
    let st = Command::new("e2fsck")
        .args(["-f", "-p"])
        .arg(image)
        .output()
        .map_err(|e| DiskError::Tool(format!("e2fsck: {e}")))?;
    if !matches!(st.status.code(), Some(0) | Some(1)) {
        return Err(DiskError::Tool(format!(
            "e2fsck -f -p {}: {}: {}",
            image.display(),
            st.status,
            String::from_utf8_lossy(&st.stderr).trim()
        )));
    }
    run(Command::new("resize2fs")
        .arg(image)
        .arg(format!("{}K", blocks * (BLOCK / 1024))))?;
    if bytes < cur {
        set_len(image, bytes)?;
    }
    Ok(())
}

fn set_len(image: &Path, bytes: u64) -> Result<(), DiskError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| DiskError::io("truncate", image, e))
}

/// Grow the image of a running slice: the file, then the loop device's capacity, then the
/// mounted filesystem (`mounted` is its root, reached through the shim's /proc/<pid>/root).
pub fn grow_online(image: &Path, bytes: u64, mounted: &Path) -> Result<(), DiskError> {
    let dev = device_of(image)?.ok_or_else(|| DiskError::NotAttached(image.to_path_buf()))?;
    set_len(image, bytes)?;
    let node = PathBuf::from(format!("/dev/{}", dev.name));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .open(&node)
        .map_err(|e| DiskError::io("open", &node, e))?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    if unsafe { libc::ioctl(f.as_raw_fd(), LOOP_SET_CAPACITY, 0) } < 0 {
        return Err(DiskError::io(
            "ioctl LOOP_SET_CAPACITY",
            &node,
            std::io::Error::last_os_error(),
        ));
    }
    let root = std::fs::File::open(mounted).map_err(|e| DiskError::io("open", mounted, e))?;
    let blocks: u64 = bytes / BLOCK;
    // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 (the new block count).
    if unsafe { libc::ioctl(root.as_raw_fd(), EXT4_IOC_RESIZE_FS, &blocks as *const u64) } < 0 {
        return Err(DiskError::io(
            "ioctl EXT4_IOC_RESIZE_FS",
            mounted,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A loop device backed by a slice's image.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopDev {
    /// `loop7`
    pub name: String,
    /// `7:7`
    pub dev: String,
}

/// The loop device currently backed by `image`, if any (from /sys/block/loop*/loop).
pub fn device_of(image: &Path) -> Result<Option<LoopDev>, DiskError> {
    let want = std::fs::canonicalize(image).map_err(|e| DiskError::io("resolve", image, e))?;
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Ok(None);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim_end_matches('\n')) == want {
            let dev = std::fs::read_to_string(e.path().join("dev"))
                .map_err(|err| DiskError::io("read", e.path().join("dev"), err))?;
            return Ok(Some(LoopDev {
                name,
                dev: dev.trim().to_string(),
            }));
        }
    }
    Ok(None)
}

/// Attach `image` to a free loop device (direct I/O, autoclear) and mount its ext4 on
/// `target`. Called by the shim in its private mount namespace; the device is released when
/// that namespace's mount goes.
pub fn attach_and_mount(image: &Path, target: &Path) -> Result<LoopDev, DiskError> {
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| DiskError::io("open", image, e))?;
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| DiskError::io("open", "/dev/loop-control", e))?;
    // Another process may take the free device between GET_FREE and CONFIGURE (EBUSY): ask
    // again.
    for _ in 0..64 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(DiskError::io(
                "ioctl LOOP_CTL_GET_FREE",
                "/dev/loop-control",
                std::io::Error::last_os_error(),
            ));
        }
        let node = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&node)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(DiskError::io("open", &node, e)),
        };
        // SAFETY: plain data; zeroed is valid.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.block_size = BLOCK as u32;
        cfg.info.flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
        let name = b"vslice";
        cfg.info.file_name[..name.len()].copy_from_slice(name);
        // SAFETY: LOOP_CONFIGURE reads a struct loop_config.
        if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            return Err(DiskError::io("ioctl LOOP_CONFIGURE", &node, e));
        }
        // Mount while `dev` is still open: with AUTOCLEAR the device is detached at its last
        // close, so the mount must hold it first.
        let mounted = nix::mount::mount(
            Some(node.as_path()),
            target,
            Some("ext4"),
            nix::mount::MsFlags::MS_NOATIME,
            None::<&str>,
        );
        let devno = std::fs::read_to_string(format!("/sys/block/loop{n}/dev"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        drop(dev);
        mounted.map_err(|e| DiskError::io("mount ext4", target, std::io::Error::from(e)))?;
        return Ok(LoopDev {
            name: format!("loop{n}"),
            dev: devno,
        });
    }
    Err(DiskError::Tool(
        "no free loop device after 64 attempts".into(),
    ))
}
