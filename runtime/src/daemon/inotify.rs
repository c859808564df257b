//! Event-driven change detection on the slice store (issue 14, "idle is free"): one inotify
//! watch on `slices/` and one per slice directory, so the event poller sleeps until a file
//! that matters changes instead of `stat`ing three files per slice every tick ([`super::watch`]
//! is the fallback when inotify is unavailable).
//!
//! What is watched and why it is enough: the shim writes `state.json` when init runs and
//! `exit.json` when it ends, the Manager writes `spec.json` on limit changes, all through a
//! rename (util/fs.rs write_atomic), and removes `state.json` / `exit.json` with unlink. A
//! create renames `.<name>.creating` to `<name>`, a destroy renames `<name>` away: both are
//! moves in `slices/`. Anything else written in a slice directory (logs, locks) is ignored by
//! name, so a chatty slice does not wake the daemon.
//!
//! A queue overflow (`IN_Q_OVERFLOW`) reports every known slice as changed: the caller
//! re-inspects them all, as the stat scan would.
//!
//! libc directly rather than nix's inotify (needs a nix feature the workspace does not enable)
//! or the notify crate (a thread and a channel per watcher, more than one fd needs).
use crate::config::Paths;
use crate::slice::state;
use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum InotifyError {
    #[error("inotify_init1: {0}")]
    Init(std::io::Error),
    #[error("inotify_add_watch {path}: {source}")]
    Watch {
        path: String,
        source: std::io::Error,
    },
}

const DIR_MASK: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW;
const SLICE_MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW;

/// What one drain of the queue found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Slices to re-inspect (new, or one of their files changed).
    pub changed: BTreeSet<String>,
    /// Slices whose directory left `slices/`.
    pub gone: BTreeSet<String>,
}

#[derive(Debug)]
pub struct SliceWatch {
    fd: OwnedFd,
    slices_dir: std::path::PathBuf,
    root_wd: i32,
    by_wd: HashMap<i32, String>,
    by_name: HashMap<String, i32>,
}

fn watched_file(name: &[u8]) -> bool {
    [state::SPEC_FILE, state::STATE_FILE, state::EXIT_FILE]
        .iter()
        .any(|f| f.as_bytes() == name)
}

fn add_watch(fd: RawFd, path: &Path, mask: u32) -> Result<i32, InotifyError> {
    let err = |source| InotifyError::Watch {
        path: path.display().to_string(),
        source,
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: a valid inotify fd and a NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
    if wd < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(wd)
}

impl SliceWatch {
    /// Watch `slices/` (created if missing) and every slice directory in it. The first
    /// [`SliceWatch::drain`] reports nothing: the caller lists the store itself once after
    /// this returns (events of changes made meanwhile are queued).
    pub fn new(paths: &Paths) -> Result<SliceWatch, InotifyError> {
        // SAFETY: plain syscall; the fd is owned right after.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(InotifyError::Init(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let slices_dir = paths.slices_dir();
        let _ = std::fs::create_dir_all(&slices_dir);
        let root_wd = add_watch(fd.as_raw_fd(), &slices_dir, DIR_MASK)?;
        let mut w = SliceWatch {
            fd,
            slices_dir,
            root_wd,
            by_wd: HashMap::new(),
            by_name: HashMap::new(),
        };
        if let Ok(rd) = std::fs::read_dir(&w.slices_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    w.watch_slice(&name);
                }
            }
        }
        Ok(w)
    }

    /// Number of slice directories watched.
    pub fn watched(&self) -> usize {
        self.by_name.len()
    }

    fn watch_slice(&mut self, name: &str) -> bool {
        match add_watch(self.fd.as_raw_fd(), &self.slices_dir.join(name), SLICE_MASK) {
            Ok(wd) => {
                if let Some(old) = self.by_name.insert(name.to_string(), wd) {
                    if old != wd {
                        self.by_wd.remove(&old);
                    }
                }
                self.by_wd.insert(wd, name.to_string());
                true
            }
            Err(e) => {
                // ENOSPC: fs.inotify.max_user_watches reached. The slice is still seen by
                // the periodic full poll; say so once per slice.
                tracing::warn!(slice = name, error = %e, "cannot watch slice directory");
                false
            }
        }
    }

    fn unwatch(&mut self, name: &str) {
        if let Some(wd) = self.by_name.remove(name) {
            self.by_wd.remove(&wd);
            // SAFETY: removing a watch descriptor of our own inotify fd (EINVAL if the
            // kernel already dropped it: ignored).
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
        }
    }

    /// Read every queued event (non-blocking). Blocking only in the sense of doing file I/O.
    pub fn drain(&mut self) -> Changes {
        let mut out = Changes::default();
        let mut buf = [0u8; 16 * 1024];
        loop {
            // SAFETY: read into an owned buffer of the given length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n <= 0 {
                break;
            }
            let n = n as usize;
            let mut off = 0;
            let head = std::mem::size_of::<libc::inotify_event>();
            while off + head <= n {
                // SAFETY: the kernel writes whole events; read_unaligned copes with the
                // byte buffer's alignment.
                let ev: libc::inotify_event = unsafe {
                    std::ptr::read_unaligned(buf[off..].as_ptr() as *const libc::inotify_event)
                };
                let name_len = ev.len as usize;
                let raw_name = &buf[(off + head).min(n)..(off + head + name_len).min(n)];
                let name_bytes = raw_name.split(|&b| b == 0).next().unwrap_or(&[]);
                off += head + name_len;
                self.handle(ev.wd, ev.mask, name_bytes, &mut out);
            }
        }
        for g in &out.gone {
            out.changed.remove(g);
        }
        out
    }

    fn handle(&mut self, wd: i32, mask: u32, name: &[u8], out: &mut Changes) {
        if mask & libc::IN_Q_OVERFLOW != 0 {
            out.changed.extend(self.by_name.keys().cloned());
            // New directories may have been missed too.
            if let Ok(rd) = std::fs::read_dir(&self.slices_dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if !n.starts_with('.') && !self.by_name.contains_key(&n) {
                        self.watch_slice(&n);
                        out.changed.insert(n);
                    }
                }
            }
            return;
        }
        if wd == self.root_wd {
            let n = String::from_utf8_lossy(name).into_owned();
            if n.is_empty() || n.starts_with('.') {
                return;
            }
            if mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                out.gone.remove(&n);
                // Watch first, then report: the caller inspects after this, so a file
                // written between the rename and the watch is not missed.
                self.watch_slice(&n);
                out.changed.insert(n);
            } else if mask & (libc::IN_MOVED_FROM | libc::IN_DELETE) != 0 {
                self.unwatch(&n);
                out.changed.remove(&n);
                out.gone.insert(n);
            }
            return;
        }
        let Some(slice) = self.by_wd.get(&wd).cloned() else {
            return;
        };
        if mask & libc::IN_IGNORED != 0 {
            // The directory went away (its watch is gone with it).
            self.by_wd.remove(&wd);
            if self.by_name.get(&slice) == Some(&wd) {
                self.by_name.remove(&slice);
            }
            return;
        }
        if mask & libc::IN_DELETE_SELF != 0 || watched_file(name) {
            out.changed.insert(slice);
        }
    }
}

impl AsRawFd for SliceWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(d: &Path) -> Paths {
        Paths {
            root: d.into(),
            cgroup_parent: "x".into(),
            policy_dir: d.into(),
            shim: d.into(),
            net: Default::default(),
        }
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reports_new_changed_and_gone_slices_and_ignores_other_files() {
        let d = tempfile::tempdir().unwrap();
        let p = paths(d.path());
        let a = p.slice_dir("a");
        std::fs::create_dir_all(&a).unwrap();
        let mut w = SliceWatch::new(&p).unwrap();
        assert_eq!(w.watched(), 1);
        assert_eq!(w.drain(), Changes::default());
        // A create: built hidden, renamed into place.
        let tmp = p.slices_dir().join(".b.creating");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join(state::SPEC_FILE), "{}").unwrap();
        std::fs::rename(&tmp, p.slice_dir("b")).unwrap();
        assert_eq!(w.drain().changed, set(&["b"]));
        // Written through a rename, as write_atomic does.
        std::fs::write(a.join(".state.json.tmp"), "{}").unwrap();
        std::fs::rename(a.join(".state.json.tmp"), a.join(state::STATE_FILE)).unwrap();
        assert_eq!(w.drain().changed, set(&["a"]));
        // Files the poller does not care about wake nothing.
        std::fs::write(a.join("console.log"), "hello").unwrap();
        std::fs::write(a.join(".lock"), "").unwrap();
        assert_eq!(w.drain(), Changes::default());
        std::fs::remove_file(a.join(state::STATE_FILE)).unwrap();
        assert_eq!(w.drain().changed, set(&["a"]));
        // New directory written after its watch was added.
        std::fs::write(p.slice_dir("b").join(state::EXIT_FILE), "{}").unwrap();
        assert_eq!(w.drain().changed, set(&["b"]));
        // A destroy: renamed away, then removed.
        let doomed = p.slices_dir().join(".a.deleting");
        std::fs::rename(&a, &doomed).unwrap();
        std::fs::remove_dir_all(&doomed).unwrap();
        let c = w.drain();
        assert_eq!(c.gone, set(&["a"]));
        assert!(c.changed.is_empty(), "{c:?}");
        assert_eq!(w.watched(), 1);
    }
}
