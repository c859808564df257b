//! A slice's upper layer as a tar stream, with ids relative to the slice's range (0..65536),
//! so that the stream can be restored under any range ([`crate::image::layer::Applier`] in
//! upper mode adds the new base). Kept: regular files (hard links as links), directories,
//! symlinks, FIFOs, overlay whiteouts (0/0 character devices), modes including set-id bits,
//! modification times, and the extended attributes overlayfs and the slice use
//! (`trusted.overlay.*`, `user.*`, `security.capability` with its root id made relative).
//!
//! The tree is read while the slice is stopped, so nothing changes it meanwhile; files are
//! opened with O_NOFOLLOW all the same, so a symlink the slice planted is recorded as a
//! symlink and never followed.
use crate::image::layer::{shift_capability, upper_xattr_kept, PAX_XATTR};
use crate::proto::slice::UID_COUNT;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{}: {op}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: owned by {what} {id}, outside the slice's ids {base}..{}", path.display(), base + UID_COUNT)]
    ForeignId {
        path: PathBuf,
        what: &'static str,
        id: u32,
        base: u32,
    },
    #[error("{}: {kind} cannot be saved", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
}

/// What was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct TreeStats {
    pub entries: u64,
    pub bytes: u64,
}

fn llistxattr(path: &Path) -> io::Result<Vec<CString>> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: valid C string and buffer.
        let n = unsafe {
            libc::llistxattr(c.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len())
        };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| CString::new(n).ok())
        .collect())
}

fn lgetxattr(path: &Path, name: &CString) -> io::Result<Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

struct Writer<'a, W: Write> {
    b: &'a mut tar::Builder<W>,
    base: u32,
    prefix: PathBuf,
    /// (dev, ino) of files with several links → the name first written.
    links: HashMap<(u64, u64), PathBuf>,
    stats: TreeStats,
}

impl<W: Write> Writer<'_, W> {
    fn rel_id(&self, path: &Path, what: &'static str, id: u32) -> Result<u64, TreeError> {
        if id >= self.base && id - self.base < UID_COUNT {
            Ok((id - self.base) as u64)
        } else {
            Err(TreeError::ForeignId {
                path: path.to_path_buf(),
                what,
                id,
                base: self.base,
            })
        }
    }

    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<(), TreeError> {
        let io = |op, p: &Path| {
            let p = p.to_path_buf();
            move |source| TreeError::Io {
                op,
                path: p,
                source,
            }
        };
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io("read_dir", dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io("read_dir", dir))?;
        names.sort();
        for n in names {
            let path = dir.join(&n);
            let rel = rel.join(&n);
            let md = fs::symlink_metadata(&path).map_err(io("lstat", &path))?;
            let ft = md.file_type();
            let mut h = tar::Header::new_gnu();
            h.set_mode(md.mode() & 0o7777);
            // overlayfs creates whiteouts with its mounter's ids (host root): their owner
            // means nothing, record the slice's root.
            let whiteout = ft.is_char_device() && md.rdev() == 0;
            if whiteout {
                h.set_uid(0);
                h.set_gid(0);
            } else {
                h.set_uid(self.rel_id(&path, "uid", md.uid())?);
                h.set_gid(self.rel_id(&path, "gid", md.gid())?);
            }
            h.set_mtime(md.mtime().max(0) as u64);
            h.set_size(0);
            let name = self.prefix.join(&rel);
            // Extended attributes first (a PAX header applies to the next entry).
            if !ft.is_symlink() {
                let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
                for x in llistxattr(&path).map_err(io("listxattr", &path))? {
                    let xn = x.to_string_lossy().into_owned();
                    if !upper_xattr_kept(&xn) {
                        continue;
                    }
                    let mut v = lgetxattr(&path, &x).map_err(io("getxattr", &path))?;
                    if xn == "security.capability" {
                        v = shift_capability(&v, -(self.base as i64));
                    }
                    pax.push((format!("{PAX_XATTR}{xn}"), v));
                }
                if !pax.is_empty() {
                    self.b
                        .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                        .map_err(io("write", &path))?;
                }
            }
            let werr = io("write", &path);
            if ft.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                self.b
                    .append_data(&mut h, &name, io::empty())
                    .map_err(werr)?;
                self.stats.entries += 1;
                self.walk(&path, &rel)?;
                continue;
            }
            if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(io("readlink", &path))?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.b.append_link(&mut h, &name, &target).map_err(werr)?;
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        self.b.append_link(&mut h, &name, &first).map_err(werr)?;
                        self.stats.entries += 1;
                        continue;
                    }
                    self.links.insert((md.dev(), md.ino()), name.clone());
                }
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io("open", &path))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(md.len());
                self.b.append_data(&mut h, &name, f).map_err(werr)?;
                self.stats.bytes += md.len();
            } else if ft.is_fifo() {
                h.set_entry_type(tar::EntryType::Fifo);
                self.b
                    .append_data(&mut h, &name, io::empty())
                    .map_err(werr)?;
            } else if whiteout {
                // overlayfs whiteout
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(0).map_err(io("header", &path))?;
                h.set_device_minor(0).map_err(io("header", &path))?;
                self.b
                    .append_data(&mut h, &name, io::empty())
                    .map_err(werr)?;
            } else if ft.is_socket() {
                // A socket is recreated by whoever listens on it; nothing to save.
                continue;
            } else {
                return Err(TreeError::Unsupported {
                    path,
                    kind: "a device node",
                });
            }
            self.stats.entries += 1;
        }
        Ok(())
    }
}

/// Append the tree at `root` (owned within `base..base+65536`) to `b`, every name under
/// `prefix` (may be empty), ids relative to `base`.
pub fn write_tree<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    base: u32,
    prefix: &Path,
) -> Result<TreeStats, TreeError> {
    let mut w = Writer {
        b,
        base,
        prefix: prefix.to_path_buf(),
        links: HashMap::new(),
        stats: TreeStats::default(),
    };
    w.walk(root, Path::new(""))?;
    Ok(w.stats)
}
