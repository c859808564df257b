//! Files in and out of a running slice (`vslice cp`, `GET|PUT /v1/slices/{name}/files`), as
//! tar streams (the `tar` crate).
//!
//! The caller is host root and the tree is the slice's: anything in it may be a trap planted
//! by the slice's root (a symlink `/srv/app -> /etc`, a directory swapped for a symlink while
//! we walk it). So no path is ever resolved by the host's path walk:
//!
//! * the slice's root is opened once, as `/proc/<init>/root` (the slice's overlay, in the
//!   shim's mount namespace, after pivot_root);
//! * a path the caller names is resolved from there with openat2 `RESOLVE_IN_ROOT` (symlinks,
//!   also absolute ones and `..`, stay inside the slice's root), `RESOLVE_NO_MAGICLINKS` (no
//!   /proc/<pid>/fd tricks) and `RESOLVE_NO_XDEV`: the walk never leaves the slice's root
//!   filesystem, so /proc, /sys and /dev of the slice (where host root writing a file could
//!   reach the host kernel's settings) are refused with a clear error, and a walk of a tree
//!   skips mount points like `tar --one-file-system`;
//! * below that, every step is one name relative to an open directory, with `O_NOFOLLOW` /
//!   `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: a symlink in the tree is copied as a symlink and
//!   never followed, and a tar entry whose parent is a symlink in the slice is refused.
//!
//! Ownership: files copied in are owned by the slice's root (host uid `uid_base`), or by the
//! slice ids the caller asks for; tar headers of files copied out carry the slice's ids (host
//! ids minus `uid_base`). Modes are kept (setuid bits included: they are the slice's ids).
//! Hard links, device nodes, FIFOs and sockets are not copied in (refused) or out (skipped).
//!
//! The daemon runs these on a blocking thread; direct mode runs them in the CLI (cli/files.rs).
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::spec::UID_COUNT;

/// Longest path accepted from a caller (PATH_MAX).
const MAX_PATH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A request field is wrong (`path`, `uid`, `gid`, a tar entry).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{path}: not found in the slice")]
    NotFound { path: String },
    #[error("{path}: {reason}")]
    Refused { path: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("tar stream: {0}")]
    Tar(String),
}

impl FilesError {
    /// HTTP status and error code (the API's table; see api/files.rs).
    pub fn status_code(&self) -> (u16, &'static str) {
        match self {
            FilesError::Invalid { .. } | FilesError::Tar(_) => (400, "invalid"),
            FilesError::NotFound { .. } => (404, "not_found"),
            FilesError::Refused { .. } => (409, "conflict"),
            FilesError::Io { .. } => (500, "internal"),
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            FilesError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    fn io(path: &str, e: io::Error) -> FilesError {
        match e.raw_os_error() {
            Some(libc::ENOENT) => FilesError::NotFound { path: path.into() },
            Some(libc::EXDEV) => FilesError::Refused {
                path: path.into(),
                reason: "crosses a mount point of the slice (/proc, /sys, /dev, a volume): \
                         only the slice's root filesystem is copied; copy from inside with exec"
                    .into(),
            },
            Some(libc::ELOOP) => FilesError::Refused {
                path: path.into(),
                reason: "goes through a symlink where none may be followed".into(),
            },
            _ => FilesError::Io {
                path: path.into(),
                source: e,
            },
        }
    }
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub entries: u64,
    pub bytes: u64,
}

/// The root filesystem of a running slice, opened for copies.
pub struct SliceRoot {
    root: OwnedFd,
    uid_base: u32,
}

/// A caller's path inside the slice: absolute, at most PATH_MAX, no NUL.
pub fn validate_path(field: &str, path: &str) -> Result<(), FilesError> {
    let bad = |reason: &str| {
        Err(FilesError::Invalid {
            field: field.into(),
            reason: reason.into(),
        })
    };
    if !path.starts_with('/') {
        return bad("must be an absolute path inside the slice");
    }
    if path.len() > MAX_PATH {
        return bad("longer than 4096 bytes");
    }
    if path.contains('\0') {
        return bad("contains a NUL byte");
    }
    Ok(())
}

/// A slice id for `uid`/`gid`: below the slice's 65536 ids.
pub fn validate_id(field: &str, id: u32) -> Result<(), FilesError> {
    if id >= UID_COUNT {
        return Err(FilesError::Invalid {
            field: field.into(),
            reason: format!("{id} is not an id of the slice (0..{UID_COUNT})"),
        });
    }
    Ok(())
}

fn cstr(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// openat2(2), retried on EAGAIN/EINTR (RESOLVE_IN_ROOT answers EAGAIN when a rename or
/// mount anywhere on the node raced the lookup; see slice/manager.rs).
fn openat2(dir: RawFd, path: &CStr, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & libc::O_CREAT != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = resolve;
    let mut last = io::Error::from_raw_os_error(libc::EAGAIN);
    for _ in 0..1000 {
        // SAFETY: valid fd, NUL-terminated path, correctly sized open_how.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        last = io::Error::last_os_error();
        if !matches!(last.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            break;
        }
    }
    Err(last)
}

/// Resolution inside the slice from its root.
const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
/// One step below an open directory: no symlink, no other mount.
const BENEATH: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS
    | libc::RESOLVE_NO_XDEV;

fn fstat(fd: impl AsFd) -> io::Result<libc::stat> {
    nix::sys::stat::fstat(fd.as_fd().as_raw_fd()).map_err(io::Error::from)
}

fn lstat_at(dir: impl AsFd, name: &CStr) -> io::Result<libc::stat> {
    nix::sys::stat::fstatat(
        Some(dir.as_fd().as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

fn kind(st: &libc::stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// The last component of `path` ("/" has none).
fn base_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
}

impl SliceRoot {
    /// Open the root of the slice whose init is host PID `init_pid`; `uid_base` is its first
    /// host uid. `init_start` (the start time in /proc/<pid>/stat, 0 = do not check) guards
    /// against a recycled PID.
    pub fn open(init_pid: i32, init_start: u64, uid_base: u32) -> Result<SliceRoot, FilesError> {
        let path = format!("/proc/{init_pid}/root");
        let root = File::open(&path).map_err(|e| FilesError::Io {
            path: path.clone(),
            source: e,
        })?;
        if init_start != 0
            && crate::slice::state::process_start_time(init_pid).unwrap_or(0) != init_start
        {
            return Err(FilesError::Refused {
                path,
                reason: "the slice's init changed while opening its root (restarted?)".into(),
            });
        }
        Ok(SliceRoot {
            root: root.into(),
            uid_base,
        })
    }

    /// Open the root of the running slice `info` (its init's PID and start time from
    /// state.json, so that a recycled PID is never taken for the slice's init).
    pub fn open_running(
        paths: &crate::config::Paths,
        info: &super::SliceInfo,
    ) -> Result<SliceRoot, FilesError> {
        let name = &info.spec.name;
        let not_running = || FilesError::Refused {
            path: name.clone(),
            reason: "the slice is not running (files are copied through its running root)".into(),
        };
        if info.status != super::Status::Running {
            return Err(not_running());
        }
        let rs: super::state::RuntimeState =
            crate::util::fs::read_json(&paths.slice_dir(name).join(super::state::STATE_FILE))
                .map_err(|_| not_running())?;
        SliceRoot::open(rs.init_pid, rs.init_start, info.spec.uid_base)
    }

    /// Open the slice's root directly (tests, and trees that are not a running slice's).
    pub fn from_dir(dir: &Path, uid_base: u32) -> io::Result<SliceRoot> {
        Ok(SliceRoot {
            root: File::open(dir)?.into(),
            uid_base,
        })
    }

    fn resolve(&self, path: &str, flags: i32) -> Result<OwnedFd, FilesError> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let c = cstr(rel.as_bytes()).map_err(|e| FilesError::io(path, e))?;
        openat2(self.root.as_raw_fd(), &c, flags, 0, IN_ROOT).map_err(|e| FilesError::io(path, e))
    }

    fn slice_id(&self, host: u32) -> u64 {
        match host.checked_sub(self.uid_base) {
            Some(id) if id < UID_COUNT => id as u64,
            _ => 65534,
        }
    }

    /// Write `path` (a file, or a directory with everything below it on the same file system)
    /// as a tar stream to `out`. The archive's top entry is the last component of `path`
    /// ("rootfs" for "/").
    pub fn copy_out(&self, path: &str, out: impl Write) -> Result<CopyStats, FilesError> {
        validate_path("path", path)?;
        let fd = self.resolve(path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)?;
        let top = base_name(path).unwrap_or("rootfs").to_string();
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Complete);
        let mut stats = CopyStats::default();
        self.walk_out(fd, PathBuf::from(&top), path, &mut b, &mut stats)?;
        b.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| FilesError::io(path, e))?;
        Ok(stats)
    }

    /// Check that `path` can be copied out (it resolves inside the slice to a regular file or
    /// a directory), so that a refusal is an error reply rather than a cut stream.
    pub fn check_out(&self, path: &str) -> Result<(), FilesError> {
        validate_path("path", path)?;
        let fd = self.resolve(path, libc::O_PATH)?;
        match kind(&fstat(&fd).map_err(|e| FilesError::io(path, e))?) {
            libc::S_IFREG | libc::S_IFDIR => Ok(()),
            _ => Err(FilesError::Refused {
                path: path.into(),
                reason: "not a regular file or directory".into(),
            }),
        }
    }

    fn header(&self, st: &libc::stat, typ: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(typ);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(self.slice_id(st.st_uid));
        h.set_gid(self.slice_id(st.st_gid));
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(size);
        h
    }

    fn walk_out<W: Write>(
        &self,
        fd: OwnedFd,
        name: PathBuf,
        shown: &str,
        b: &mut tar::Builder<W>,
        stats: &mut CopyStats,
    ) -> Result<(), FilesError> {
        let st = fstat(&fd).map_err(|e| FilesError::io(shown, e))?;
        let err = |e: io::Error| FilesError::io(shown, e);
        match kind(&st) {
            libc::S_IFREG => {
                let size = st.st_size.max(0) as u64;
                let mut h = self.header(&st, tar::EntryType::Regular, size);
                // A file that shrinks while we read it is padded with zeros (the header's size
                // is already written); one that grows is cut at the size we saw.
                let data = File::from(fd).take(size).chain(io::repeat(0)).take(size);
                b.append_data(&mut h, &name, data).map_err(err)?;
                stats.bytes += size;
            }
            libc::S_IFDIR => {
                let mut h = self.header(&st, tar::EntryType::Directory, 0);
                b.append_data(&mut h, &name, io::empty()).map_err(err)?;
                let mut names: Vec<CString> = Vec::new();
                {
                    let dup = fd.try_clone().map_err(err)?;
                    let mut dir =
                        nix::dir::Dir::from_fd(dup.as_raw_fd()).map_err(|e| err(e.into()))?;
                    // Dir owns the duplicate now.
                    std::mem::forget(dup);
                    for ent in dir.iter() {
                        let ent = ent.map_err(|e| err(e.into()))?;
                        let n = ent.file_name();
                        if n.to_bytes() != b"." && n.to_bytes() != b".." {
                            names.push(n.to_owned());
                        }
                    }
                }
                names.sort();
                for n in names {
                    let child_name = name.join(OsStr::from_bytes(n.to_bytes()));
                    let shown_child =
                        format!("{}/{}", shown.trim_end_matches('/'), n.to_string_lossy());
                    let cst = match lstat_at(&fd, &n) {
                        Ok(s) => s,
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                        Err(e) => return Err(FilesError::io(&shown_child, e)),
                    };
                    match kind(&cst) {
                        libc::S_IFLNK => {
                            let target = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), n.as_c_str())
                                .map_err(|e| FilesError::io(&shown_child, e.into()))?;
                            let mut h = self.header(&cst, tar::EntryType::Symlink, 0);
                            b.append_link(&mut h, &child_name, Path::new(&target))
                                .map_err(|e| FilesError::io(&shown_child, e))?;
                        }
                        libc::S_IFREG | libc::S_IFDIR => {
                            match openat2(
                                fd.as_raw_fd(),
                                &n,
                                libc::O_RDONLY
                                    | libc::O_NONBLOCK
                                    | libc::O_NOCTTY
                                    | libc::O_NOFOLLOW,
                                0,
                                BENEATH,
                            ) {
                                Ok(cfd) => {
                                    self.walk_out(cfd, child_name, &shown_child, b, stats)?
                                }
                                // A mount point (tar --one-file-system) or an entry that
                                // changed or went away since we listed it: skipped.
                                Err(e)
                                    if matches!(
                                        e.raw_os_error(),
                                        Some(libc::EXDEV) | Some(libc::ENOENT) | Some(libc::ELOOP)
                                    ) => {}
                                Err(e) => return Err(FilesError::io(&shown_child, e)),
                            }
                        }
                        // FIFOs, sockets, device nodes: not copied out.
                        _ => {}
                    }
                }
            }
            _ => {
                return Err(FilesError::Refused {
                    path: shown.into(),
                    reason: "not a regular file or directory".into(),
                })
            }
        }
        stats.entries += 1;
        Ok(())
    }

    /// Unpack the tar stream `input` into the slice at `dest`: into `dest` when it is an
    /// existing directory; else as `dest` itself (the archive's top-level name replaced by the
    /// last component of `dest`, whose parent must exist). Everything is owned by the slice
    /// ids `owner` (uid, gid).
    pub fn copy_in(
        &self,
        dest: &str,
        input: impl Read,
        owner: (u32, u32),
    ) -> Result<CopyStats, FilesError> {
        validate_path("path", dest)?;
        validate_id("uid", owner.0)?;
        validate_id("gid", owner.1)?;
        let host = (self.uid_base + owner.0, self.uid_base + owner.1);
        let (base, rename) = match self.resolve(dest, libc::O_PATH) {
            Ok(fd) if kind(&fstat(&fd).map_err(|e| FilesError::io(dest, e))?) == libc::S_IFDIR => {
                (fd, None)
            }
            Ok(_) | Err(FilesError::NotFound { .. }) => {
                let name = base_name(dest).ok_or_else(|| FilesError::Invalid {
                    field: "path".into(),
                    reason: "names no file".into(),
                })?;
                if name == "." || name == ".." {
                    return Err(FilesError::Invalid {
                        field: "path".into(),
                        reason: "must not end in . or ..".into(),
                    });
                }
                let parent = &dest[..dest.trim_end_matches('/').len() - name.len()];
                let fd = self.resolve(parent, libc::O_PATH | libc::O_DIRECTORY)?;
                (fd, Some(name.to_string()))
            }
            Err(e) => return Err(e),
        };
        let mut archive = tar::Archive::new(input);
        let mut stats = CopyStats::default();
        let mut top: Option<std::ffi::OsString> = None;
        for entry in archive
            .entries()
            .map_err(|e| FilesError::Tar(e.to_string()))?
        {
            let mut entry = entry.map_err(|e| FilesError::Tar(e.to_string()))?;
            let raw = entry
                .path()
                .map_err(|e| FilesError::Tar(e.to_string()))?
                .into_owned();
            let mut comps: Vec<std::ffi::OsString> = Vec::new();
            for c in raw.components() {
                match c {
                    Component::Normal(n) => comps.push(n.to_os_string()),
                    Component::CurDir => {}
                    _ => {
                        return Err(FilesError::Invalid {
                            field: "body".into(),
                            reason: format!(
                                "tar entry {:?}: absolute or '..' names are refused",
                                raw.display()
                            ),
                        })
                    }
                }
            }
            if comps.is_empty() {
                continue;
            }
            // One top-level name per archive (what `vslice cp` sends); it is what `rename`
            // replaces.
            match &top {
                None => top = Some(comps[0].clone()),
                Some(t) if *t != comps[0] && rename.is_some() => {
                    return Err(FilesError::Invalid {
                        field: "body".into(),
                        reason: format!(
                            "tar entries under more than one top-level name ({:?}, {:?}) cannot be copied to a path that is not a directory",
                            t, comps[0]
                        ),
                    })
                }
                Some(_) => {}
            }
            if let Some(r) = &rename {
                comps[0] = r.into();
            }
            let shown = format!(
                "{}/{}",
                dest.trim_end_matches('/'),
                comps
                    .iter()
                    .map(|c| c.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let last = comps.pop().unwrap_or_default();
            let parent = if comps.is_empty() {
                base.try_clone().map_err(|e| FilesError::io(&shown, e))?
            } else {
                let rel: PathBuf = comps.iter().collect();
                let c = cstr(rel.as_os_str().as_bytes()).map_err(|e| FilesError::io(&shown, e))?;
                openat2(
                    base.as_raw_fd(),
                    &c,
                    libc::O_PATH | libc::O_DIRECTORY,
                    0,
                    BENEATH,
                )
                .map_err(|e| FilesError::io(&shown, e))?
            };
            let name = cstr(last.as_bytes()).map_err(|e| FilesError::io(&shown, e))?;
            let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
            let typ = entry.header().entry_type();
            let ioe = |e: io::Error| FilesError::io(&shown, e);
            match typ {
                tar::EntryType::Directory => {
                    match nix::sys::stat::mkdirat(
                        Some(parent.as_raw_fd()),
                        name.as_c_str(),
                        nix::sys::stat::Mode::from_bits_truncate(0o700),
                    ) {
                        Ok(()) => {}
                        Err(nix::Error::EEXIST) => {
                            let st = lstat_at(&parent, &name).map_err(ioe)?;
                            if kind(&st) == libc::S_IFLNK {
                                return Err(FilesError::Refused {
                                    path: shown.clone(),
                                    reason: "is a symlink in the slice: not followed".into(),
                                });
                            }
                        }
                        Err(e) => return Err(ioe(e.into())),
                    }
                    let fd = openat2(
                        parent.as_raw_fd(),
                        &name,
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        0,
                        BENEATH,
                    )
                    .map_err(|e| match e.raw_os_error() {
                        Some(libc::ELOOP) => FilesError::Refused {
                            path: shown.clone(),
                            reason: "is a symlink in the slice: not followed".into(),
                        },
                        Some(libc::ENOTDIR) => FilesError::Refused {
                            path: shown.clone(),
                            reason: "exists in the slice and is not a directory".into(),
                        },
                        _ => FilesError::io(&shown, e),
                    })?;
                    set_owner_mode(&fd, host, mode).map_err(ioe)?;
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    remove_non_dir(&parent, &name, &shown)?;
                    let fd = openat2(
                        parent.as_raw_fd(),
                        &name,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                        0o600,
                        BENEATH,
                    )
                    .map_err(ioe)?;
                    let mut f = File::from(fd);
                    let n = io::copy(&mut entry, &mut f).map_err(ioe)?;
                    stats.bytes += n;
                    // chown before chmod: chown clears setuid bits.
                    set_owner_mode(&f, host, mode).map_err(ioe)?;
                    if let Ok(mtime) = entry.header().mtime() {
                        let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
                        let _ = nix::sys::stat::futimens(f.as_raw_fd(), &t, &t);
                    }
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(|e| FilesError::Tar(e.to_string()))?
                        .ok_or_else(|| FilesError::Tar(format!("{shown}: symlink without a target")))?
                        .into_owned();
                    remove_non_dir(&parent, &name, &shown)?;
                    // The target is stored as is: it is resolved by the slice's processes,
                    // inside the slice (and never followed by these copies).
                    nix::unistd::symlinkat(target.as_os_str(), Some(parent.as_raw_fd()), name.as_c_str())
                        .map_err(|e| ioe(e.into()))?;
                    nix::unistd::fchownat(
                        Some(parent.as_raw_fd()),
                        name.as_c_str(),
                        Some(nix::unistd::Uid::from_raw(host.0)),
                        Some(nix::unistd::Gid::from_raw(host.1)),
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| ioe(e.into()))?;
                }
                other => {
                    return Err(FilesError::Invalid {
                        field: "body".into(),
                        reason: format!(
                            "tar entry {shown:?}: type {other:?} is not copied (only files, directories and symlinks)"
                        ),
                    })
                }
            }
            stats.entries += 1;
        }
        if stats.entries == 0 {
            return Err(FilesError::Invalid {
                field: "body".into(),
                reason: "the tar stream has no entries".into(),
            });
        }
        Ok(stats)
    }
}

fn set_owner_mode(fd: impl AsFd, host: (u32, u32), mode: u32) -> io::Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    nix::unistd::fchown(
        raw,
        Some(nix::unistd::Uid::from_raw(host.0)),
        Some(nix::unistd::Gid::from_raw(host.1)),
    )?;
    nix::sys::stat::fchmod(raw, nix::sys::stat::Mode::from_bits_truncate(mode))?;
    Ok(())
}

/// Make room for a file or symlink: an existing non-directory is replaced, a directory is not.
fn remove_non_dir(parent: &OwnedFd, name: &CStr, shown: &str) -> Result<(), FilesError> {
    match lstat_at(parent, name) {
        Ok(st) if kind(&st) == libc::S_IFDIR => Err(FilesError::Refused {
            path: shown.into(),
            reason: "is a directory in the slice".into(),
        }),
        Ok(_) => nix::unistd::unlinkat(
            Some(parent.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(|e| FilesError::io(shown, e.into())),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(FilesError::io(shown, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ids_are_checked() {
        assert!(validate_path("path", "/srv/app").is_ok());
        assert!(validate_path("path", "srv").is_err());
        assert!(validate_path("path", "/a\0b").is_err());
        assert!(validate_id("uid", 65535).is_ok());
        assert!(validate_id("uid", 65536).is_err());
        assert_eq!(base_name("/var/log/x/"), Some("x"));
        assert_eq!(base_name("/"), None);
    }
}
