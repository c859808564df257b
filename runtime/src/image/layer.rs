//! Applying one image layer (an uncompressed tar stream) onto a root directory that is being
//! built, the way the OCI image spec describes changesets: entries add or replace files,
//! `.wh.NAME` removes NAME from the layers below, `.wh..wh..opq` empties its directory of
//! what the layers below put there.
//!
//! A layer is hostile input. Every name is resolved under the root's file descriptor one
//! component at a time with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV),
//! so no lookup can leave the root: not with `..` (refused outright), not through a symlink
//! (planted by this or an earlier layer: refused, real layers never write through one), not
//! across a mount. The final component is created with the `*at` calls relative to its
//! parent's descriptor and O_NOFOLLOW / O_EXCL, so a symlink at that name is replaced, never
//! followed. Device nodes are refused (a slice could use one to reach host hardware), ids must
//! fit the 65536 ids a slice maps, and hardlinks may only point at files already in the root.
//! Extended attributes (e.g. file capabilities) are not applied.
use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Highest uid/gid an image file may have: slices map 65536 ids.
pub const MAX_ID: u64 = 65535;
/// Longest symlink target the kernel accepts (PATH_MAX - 1).
const MAX_LINK_TARGET: usize = 4095;
/// Deepest path accepted in a layer.
const MAX_DEPTH: usize = 256;
/// Prefix marking a whiteout entry.
const WHITEOUT: &str = ".wh.";
/// Name of the opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";

/// Why a layer was refused or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("entry {path:?}: {reason}")]
    Refused { path: String, reason: String },
    #[error("entry {path:?}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("reading the tar stream: {0}")]
    Tar(#[source] io::Error),
}

fn refused(path: &str, reason: impl Into<String>) -> LayerError {
    LayerError::Refused {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// What one layer did, for progress reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct LayerStats {
    pub entries: u64,
    pub bytes: u64,
}

/// The components of a layer path (relative to the image root, also when written with a
/// leading `/`), or why it is refused: `..` anywhere.
/// `.` components and a trailing `/` are dropped; the root itself is the empty list.
pub fn clean_path(raw: &Path) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            // A leading `/` (umoci writes the root as "/") means the image root, as in
            // Docker and containerd: names are never host paths.
            Component::RootDir => {}
            Component::Prefix(_) => return Err("not a Unix path".into()),
            Component::ParentDir => {
                return Err("`..` component (would leave the image root)".into())
            }
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(format!("deeper than {MAX_DEPTH} components"));
    }
    Ok(out)
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// openat2 of one name under `dir`, never leaving it and never following a symlink.
fn open_beneath(dir: &impl AsFd, name: &OsStr, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH
        | libc::RESOLVE_NO_SYMLINKS
        | libc::RESOLVE_NO_MAGICLINKS
        | libc::RESOLVE_NO_XDEV;
    loop {
        // SAFETY: valid fd, NUL-terminated path, correctly sized open_how.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_fd().as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a rename or mount elsewhere raced the lookup; it says nothing about ours.
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            return Err(e);
        }
    }
}

fn lstat_at(dir: &impl AsFd, name: &OsStr) -> io::Result<Option<libc::stat>> {
    let c = cstr(name)?;
    // SAFETY: stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and C string; st is a valid out pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_fd().as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(Some(st));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok(None)
    } else {
        Err(e)
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Remove `name` under `dir`, a whole tree if it is a directory, never following symlinks
/// (each level is opened beneath its parent without following).
pub fn remove_at(dir: &impl AsFd, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    let c = cstr(name)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let sub = open_beneath(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
        for child in list_dir(&sub)? {
            remove_at(&sub, &child)?;
        }
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(dir.as_fd().as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
    } else {
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(dir.as_fd().as_raw_fd(), c.as_ptr(), 0) })
    }
}

/// Names in the directory `dir` (may be an O_PATH descriptor), without `.` and `..`.
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let d = nix::dir::Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let mut names = Vec::new();
    for e in d.into_iter() {
        let e = e.map_err(io::Error::from)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(names)
}

/// Applies layers in order onto one root directory.
pub struct Applier {
    root: OwnedFd,
    /// Last parent directory opened, reused by the next entry in the same directory.
    cached: Option<(Vec<OsString>, OwnedFd)>,
    /// Restoring a slice's overlay upper layer (snapshots, clones, imports) instead of an image
    /// layer: ids are shifted up by this base, overlay whiteouts (0/0 character devices) and
    /// overlay/user extended attributes are kept, and `.wh.` names are ordinary files.
    upper: Option<u32>,
}

impl Applier {
    /// `root` must be an empty directory the caller created (and nobody else can write to).
    pub fn new(root: &Path) -> io::Result<Applier> {
        let f = File::open(root)?;
        Ok(Applier {
            root: OwnedFd::from(f),
            cached: None,
            upper: None,
        })
    }

    /// An applier for a slice's upper layer whose ids start at `base` (see `upper`).
    pub fn new_upper(root: &Path, base: u32) -> io::Result<Applier> {
        let mut a = Applier::new(root)?;
        a.upper = Some(base);
        Ok(a)
    }

    /// The directory `comps` (relative to the root), created (0755, root-owned) where missing.
    fn dir(&mut self, comps: &[OsString], shown: &str) -> Result<OwnedFd, LayerError> {
        if let Some((p, fd)) = &self.cached {
            if p.as_slice() == comps {
                return fd.try_clone().map_err(|e| io_err(shown, "dup", e));
            }
        }
        let mut cur = self.root.try_clone().map_err(|e| io_err(shown, "dup", e))?;
        for c in comps {
            let next = match open_beneath(&cur, c, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let name = cstr(c).map_err(|e| io_err(shown, "name", e))?;
                    // SAFETY: valid fd and C string.
                    check(unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) })
                        .map_err(|e| io_err(shown, "mkdir parent", e))?;
                    open_beneath(&cur, c, libc::O_PATH | libc::O_DIRECTORY)
                        .map_err(|e| io_err(shown, "open parent", e))?
                }
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(refused(
                        shown,
                        format!(
                            "goes through the symlink {:?} (layers may not write through symlinks)",
                            c
                        ),
                    ))
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(refused(
                        shown,
                        format!("{c:?} in its path is not a directory"),
                    ))
                }
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    return Err(refused(shown, "its path crosses a mount point"))
                }
                Err(e) => return Err(io_err(shown, "open parent", e)),
            };
            cur = next;
        }
        let keep = cur.try_clone().map_err(|e| io_err(shown, "dup", e))?;
        self.cached = Some((comps.to_vec(), keep));
        Ok(cur)
    }

    /// Apply one uncompressed layer tar read from `r`. The stream is read to its end (the
    /// caller verifies the digest of everything read).
    pub fn apply(&mut self, r: impl Read) -> Result<LayerStats, LayerError> {
        let mut ar = tar::Archive::new(r);
        let entries = ar.entries().map_err(LayerError::Tar)?;
        self.apply_entries(entries, None)
    }

    /// Apply the remaining `entries` of an archive; with `strip`, every entry must lie under
    /// that directory, which is removed from its name.
    pub fn apply_entries<R: Read>(
        &mut self,
        entries: tar::Entries<'_, R>,
        strip: Option<&str>,
    ) -> Result<LayerStats, LayerError> {
        self.cached = None;
        let mut stats = LayerStats::default();
        // Paths this layer created: its whiteouts apply to lower layers only (image spec).
        let mut created: HashSet<PathBuf> = HashSet::new();
        for entry in entries {
            let mut entry = entry.map_err(LayerError::Tar)?;
            let mut raw = entry.path().map_err(LayerError::Tar)?.into_owned();
            let shown = raw.display().to_string();
            if let Some(prefix) = strip {
                raw = raw
                    .strip_prefix(prefix)
                    .map_err(|_| refused(&shown, format!("not under {prefix}/")))?
                    .to_path_buf();
            }
            let comps = clean_path(&raw).map_err(|r| refused(&shown, r))?;
            stats.entries += 1;
            let Some((base, parent)) = comps.split_last() else {
                continue; // the root itself: its owner and mode are the store's
            };
            let base_s = base.to_string_lossy();
            if let Some(target) = base_s
                .strip_prefix(WHITEOUT)
                .filter(|_| self.upper.is_none())
            {
                if *base == *OPAQUE {
                    self.opaque(parent, &created, &shown)?;
                } else if target.starts_with(WHITEOUT) {
                    // other `.wh..wh.` names are aufs bookkeeping, not part of the image
                } else {
                    if target.is_empty() || target == "." || target == ".." {
                        return Err(refused(&shown, "whiteout of an invalid name"));
                    }
                    let path: PathBuf = parent.iter().chain([&OsString::from(target)]).collect();
                    if !created.contains(&path) {
                        let dir = self.dir(parent, &shown)?;
                        remove_at(&dir, OsStr::new(target))
                            .map_err(|e| io_err(&shown, "whiteout", e))?;
                        self.cached = None;
                    }
                }
                continue;
            }
            let h = entry.header();
            let uid = h.uid().map_err(LayerError::Tar)?;
            let gid = h.gid().map_err(LayerError::Tar)?;
            if uid > MAX_ID || gid > MAX_ID {
                return Err(refused(
                    &shown,
                    format!("owner {uid}:{gid} is outside the 65536 ids a slice maps"),
                ));
            }
            let mode = h.mode().map_err(LayerError::Tar)? & 0o7777;
            let mtime = h.mtime().unwrap_or(0);
            let kind = h.entry_type();
            let link = entry
                .link_name()
                .map_err(LayerError::Tar)?
                .map(|l| l.into_owned());
            let dir = self.dir(parent, &shown)?;
            let existing = lstat_at(&dir, base).map_err(|e| io_err(&shown, "lstat", e))?;
            let is_dir = |st: &libc::stat| st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let name = cstr(base).map_err(|e| io_err(&shown, "name", e))?;
            let shift = self.upper.unwrap_or(0);
            let (uid, gid) = (uid as u32 + shift, gid as u32 + shift);
            let xattrs = if self.upper.is_some() {
                upper_xattrs(&mut entry, shift).map_err(LayerError::Tar)?
            } else {
                Vec::new()
            };
            use tar::EntryType as T;
            // Anything at the name goes, except a directory that stays a directory.
            if let Some(st) = existing {
                if !(kind == T::Directory && is_dir(&st)) {
                    remove_at(&dir, base).map_err(|e| io_err(&shown, "replace", e))?;
                    if is_dir(&st) {
                        self.cached = None;
                    }
                }
            }
            match kind {
                T::Regular | T::Continuous => {
                    let flags = libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC;
                    // SAFETY: valid fd and C string.
                    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, 0o600) };
                    check(fd).map_err(|e| io_err(&shown, "create", e))?;
                    // SAFETY: the kernel just returned this descriptor to us.
                    let mut f = unsafe { File::from_raw_fd(fd) };
                    stats.bytes +=
                        io::copy(&mut entry, &mut f).map_err(|e| io_err(&shown, "write", e))?;
                    set_meta(&f, uid, gid, mode, mtime).map_err(|e| io_err(&shown, "chown", e))?;
                    set_xattrs(&f, &xattrs).map_err(|e| io_err(&shown, "setxattr", e))?;
                }
                T::Directory => {
                    if existing.is_none() {
                        // SAFETY: valid fd and C string.
                        check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) })
                            .map_err(|e| io_err(&shown, "mkdir", e))?;
                    }
                    let d = open_beneath(&dir, base, libc::O_RDONLY | libc::O_DIRECTORY)
                        .map_err(|e| io_err(&shown, "open", e))?;
                    let d = File::from(d);
                    set_meta(&d, uid, gid, mode, 0).map_err(|e| io_err(&shown, "chown", e))?;
                    set_xattrs(&d, &xattrs).map_err(|e| io_err(&shown, "setxattr", e))?;
                }
                T::Symlink => {
                    let target = link.ok_or_else(|| refused(&shown, "symlink without a target"))?;
                    let t = target.as_os_str().as_bytes();
                    if t.is_empty() || t.len() > MAX_LINK_TARGET {
                        return Err(refused(&shown, "symlink target empty or too long"));
                    }
                    // The target is stored as it is: it is only ever resolved inside a slice's
                    // root (or by this applier, which refuses to follow it).
                    let t = CString::new(t).map_err(|e| io_err(&shown, "target", e.into()))?;
                    // SAFETY: valid fd and C strings.
                    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
                        .map_err(|e| io_err(&shown, "symlink", e))?;
                    // SAFETY: valid fd and C string.
                    check(unsafe {
                        libc::fchownat(
                            dir.as_raw_fd(),
                            name.as_ptr(),
                            uid,
                            gid,
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    })
                    .map_err(|e| io_err(&shown, "chown", e))?;
                }
                T::Link => {
                    let mut target =
                        link.ok_or_else(|| refused(&shown, "hardlink without a target"))?;
                    if let Some(prefix) = strip {
                        target = target
                            .strip_prefix(prefix)
                            .map_err(|_| {
                                refused(&shown, format!("hardlink target not under {prefix}/"))
                            })?
                            .to_path_buf();
                    }
                    let tcomps = clean_path(&target)
                        .map_err(|r| refused(&shown, format!("hardlink target {target:?}: {r}")))?;
                    let Some((tbase, tparent)) = tcomps.split_last() else {
                        return Err(refused(&shown, "hardlink to the image root"));
                    };
                    let tdir = self.dir(tparent, &shown)?;
                    // O_PATH|O_NOFOLLOW: the target itself, also if it is a symlink.
                    let tb = cstr(tbase).map_err(|e| io_err(&shown, "name", e))?;
                    // SAFETY: valid fd and C string.
                    let tfd = unsafe {
                        libc::openat(
                            tdir.as_raw_fd(),
                            tb.as_ptr(),
                            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                        )
                    };
                    check(tfd).map_err(|e| {
                        refused(
                            &shown,
                            format!("hardlink target {target:?} not in the image: {e}"),
                        )
                    })?;
                    // SAFETY: the kernel just returned this descriptor to us.
                    let tfd = unsafe { OwnedFd::from_raw_fd(tfd) };
                    let st = nix::sys::stat::fstat(tfd.as_raw_fd())
                        .map_err(|e| io_err(&shown, "stat", e.into()))?;
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        return Err(refused(&shown, "hardlink to a directory"));
                    }
                    let empty = c"";
                    // The descriptor names exactly the file found beneath the root: linkat
                    // with AT_EMPTY_PATH cannot be redirected by a symlink.
                    // SAFETY: valid fds and C strings.
                    check(unsafe {
                        libc::linkat(
                            tfd.as_raw_fd(),
                            empty.as_ptr(),
                            dir.as_raw_fd(),
                            name.as_ptr(),
                            libc::AT_EMPTY_PATH,
                        )
                    })
                    .map_err(|e| io_err(&shown, "link", e))?;
                    self.cached = None;
                }
                T::Fifo => {
                    // SAFETY: valid fd and C string.
                    check(unsafe {
                        libc::mknodat(dir.as_raw_fd(), name.as_ptr(), libc::S_IFIFO | 0o600, 0)
                    })
                    .map_err(|e| io_err(&shown, "mkfifo", e))?;
                    let f = open_beneath(&dir, base, libc::O_PATH)
                        .map_err(|e| io_err(&shown, "open", e))?;
                    chown_path_fd(&f, uid, gid, mode).map_err(|e| io_err(&shown, "chown", e))?;
                }
                T::Char
                    if self.upper.is_some()
                        && entry.header().device_major().ok().flatten() == Some(0)
                        && entry.header().device_minor().ok().flatten() == Some(0) =>
                {
                    // An overlay whiteout in a slice's upper layer: 0/0 reaches no device.
                    // SAFETY: valid fd and C string.
                    check(unsafe {
                        libc::mknodat(dir.as_raw_fd(), name.as_ptr(), libc::S_IFCHR | 0o600, 0)
                    })
                    .map_err(|e| io_err(&shown, "mknod whiteout", e))?;
                    let f = open_beneath(&dir, base, libc::O_PATH)
                        .map_err(|e| io_err(&shown, "open", e))?;
                    chown_path_fd(&f, uid, gid, mode).map_err(|e| io_err(&shown, "chown", e))?;
                }
                T::Char | T::Block => {
                    return Err(refused(
                        &shown,
                        "device node (a slice must not get direct access to a device)",
                    ))
                }
                other => {
                    return Err(refused(
                        &shown,
                        format!("unsupported tar entry type {other:?}"),
                    ))
                }
            }
            created.insert(comps.iter().collect());
        }
        Ok(stats)
    }

    /// `.wh..wh..opq` in `parent`: remove what lower layers put in it.
    fn opaque(
        &mut self,
        parent: &[OsString],
        created: &HashSet<PathBuf>,
        shown: &str,
    ) -> Result<(), LayerError> {
        let dir = self.dir(parent, shown)?;
        for child in list_dir(&dir).map_err(|e| io_err(shown, "list", e))? {
            let p: PathBuf = parent.iter().chain([&child]).collect();
            if !created.contains(&p) {
                remove_at(&dir, &child).map_err(|e| io_err(shown, "opaque", e))?;
            }
        }
        self.cached = None;
        Ok(())
    }
}

fn io_err(path: &str, op: &'static str, source: io::Error) -> LayerError {
    LayerError::Io {
        path: path.to_string(),
        op,
        source,
    }
}

/// Owner, then mode (chown clears set-id bits), then modification time.
fn set_meta(f: &File, uid: u32, gid: u32, mode: u32, mtime: u64) -> io::Result<()> {
    nix::unistd::fchown(f.as_raw_fd(), Some(uid.into()), Some(gid.into()))
        .map_err(io::Error::from)?;
    // SAFETY: valid fd.
    check(unsafe { libc::fchmod(f.as_raw_fd(), mode) })?;
    if mtime > 0 {
        let t = libc::timespec {
            tv_sec: mtime as libc::time_t,
            tv_nsec: 0,
        };
        let times = [t, t];
        // SAFETY: valid fd; times points to two timespecs.
        check(unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) })?;
    }
    Ok(())
}

/// chown/chmod through an O_PATH descriptor (for FIFOs, which must not be opened).
fn chown_path_fd(fd: &OwnedFd, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid fd and empty C string with AT_EMPTY_PATH.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            empty.as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    let proc = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C string.
    check(unsafe { libc::chmod(proc.as_ptr(), mode) })
}

/// Extended attributes a slice's upper layer keeps: overlayfs' own (opaque directories,
/// redirects), user ones, and file capabilities.
pub fn upper_xattr_kept(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.")
        || name == "security.capability"
}

/// PAX prefix of an extended attribute (GNU tar's and libarchive's convention).
pub const PAX_XATTR: &str = "SCHILY.xattr.";

/// Shift the root id recorded in a version-3 file capability (namespaced capabilities carry
/// the host uid of their namespace's root) by `delta`; other values are returned as they are.
pub fn shift_capability(v: &[u8], delta: i64) -> Vec<u8> {
    let mut v = v.to_vec();
    // struct vfs_ns_cap_data: magic_etc (u32, revision in the top byte), 2 x (permitted,
    // inheritable) u32 pairs, rootid u32; all little-endian.
    if v.len() == 24 && v[3] == 0x03 {
        let root = u32::from_le_bytes([v[20], v[21], v[22], v[23]]) as i64;
        let shifted = (root + delta).clamp(0, u32::MAX as i64) as u32;
        v[20..24].copy_from_slice(&shifted.to_le_bytes());
    }
    v
}

/// The kept extended attributes of an upper-layer entry (capability root ids shifted).
fn upper_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    shift: u32,
) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let mut out = Vec::new();
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext?;
        let Ok(key) = ext.key() else { continue };
        let Some(name) = key.strip_prefix(PAX_XATTR) else {
            continue;
        };
        if !upper_xattr_kept(name) {
            continue;
        }
        let value = if name == "security.capability" {
            shift_capability(ext.value_bytes(), shift as i64)
        } else {
            ext.value_bytes().to_vec()
        };
        if let Ok(n) = CString::new(name) {
            out.push((n, value));
        }
    }
    Ok(out)
}

fn set_xattrs(f: &File, xattrs: &[(CString, Vec<u8>)]) -> io::Result<()> {
    for (n, v) in xattrs {
        // SAFETY: valid fd, C string and buffer.
        check(unsafe {
            libc::fsetxattr(
                f.as_raw_fd(),
                n.as_ptr(),
                v.as_ptr() as *const libc::c_void,
                v.len(),
                0,
            )
        })?;
    }
    Ok(())
}
