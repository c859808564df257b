//! `vslice cp SRC DST`: files into and out of a running slice (`NAME:/path` names the slice
//! side), as tar streams through the API (api/files.rs, slice/files.rs).
//!
//! Copy-in: SRC (a file or directory, symlinks in it kept as symlinks) is archived here with
//! its last component as the top entry; the daemon unpacks it inside the slice. Copy-out: the
//! daemon archives the slice's path; it is unpacked here into a temporary directory beside
//! the destination (the tar crate refuses entries that would land outside it; no ownership,
//! no setuid/setgid bits: the files belong to whoever runs the command) and renamed into place.
use super::{exit, Backend, CliError, R};
use crate::proto::FilesQuery;
use crate::slice::files::FilesError;
use std::path::{Path, PathBuf};

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Side {
    Local(PathBuf),
    Slice { name: String, path: String },
}

/// `NAME:/path` is a slice's path (a valid slice name, then an absolute path); anything else
/// is local (write `./a:b` for a local file with a colon).
fn side(s: &str) -> Side {
    if let Some((name, path)) = s.split_once(':') {
        if path.starts_with('/') && crate::slice::manager::validate_name(name).is_ok() {
            return Side::Slice {
                name: name.into(),
                path: path.into(),
            };
        }
    }
    Side::Local(PathBuf::from(s))
}

/// `UID[:GID]` (slice ids).
pub fn parse_owner(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    let id = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|n| *n < crate::slice::UID_COUNT)
            .ok_or_else(|| format!("{v:?}: expected a slice id 0-65535 (UID[:GID])"))
    };
    Ok((id(u)?, id(g)?))
}

pub(super) fn cp(
    b: &Backend,
    src: &str,
    dst: &str,
    owner: Option<(u32, u32)>,
    json: bool,
) -> R<i32> {
    match (side(src), side(dst)) {
        (Side::Local(from), Side::Slice { name, path }) => {
            let meta = std::fs::symlink_metadata(&from)
                .map_err(|e| CliError::usage(format!("{}: {e}", from.display())))?;
            let top = top_name(&from)?;
            let (rd, wr) = std::io::pipe().map_err(|e| CliError::failure(format!("pipe: {e}")))?;
            let from2 = from.clone();
            let writer = std::thread::spawn(move || -> std::io::Result<()> {
                let mut t = tar::Builder::new(wr);
                t.follow_symlinks(false);
                t.mode(tar::HeaderMode::Complete);
                if meta.is_dir() {
                    t.append_dir_all(&top, &from2)?;
                } else {
                    t.append_path_with_name(&from2, &top)?;
                }
                t.into_inner()?;
                Ok(())
            });
            let q = FilesQuery {
                path,
                uid: owner.map(|o| o.0),
                gid: owner.map(|o| o.1),
            };
            let res = match b {
                Backend::Daemon(c) => c.copy_in(&name, &q, rd).map_err(CliError::from),
                Backend::Direct(d) => direct_copy(d, "copy_in", &name, &q, |root| {
                    root.copy_in(&q.path, rd, owner.unwrap_or((0, 0))).map(|s| {
                        crate::proto::CopyResult {
                            entries: s.entries,
                            bytes: s.bytes,
                        }
                    })
                }),
            };
            let built = writer.join();
            let res = res?;
            match built {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(CliError::failure(format!(
                        "reading {}: {e}",
                        from.display()
                    )))
                }
                Err(_) => return Err(CliError::failure("the archiving thread panicked")),
            }
            if json {
                super::out(&serde_json::to_string(&res).unwrap_or_default());
            } else {
                eprintln!(
                    "copied {} entries ({} bytes) to {name}:{}",
                    res.entries, res.bytes, q.path
                );
            }
            Ok(exit::OK)
        }
        (Side::Slice { name, path }, Side::Local(to)) => {
            let (dir, rename) = if to.is_dir() {
                (to.clone(), None)
            } else {
                let parent = match to.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let n = to
                    .file_name()
                    .ok_or_else(|| CliError::usage(format!("{}: names no file", to.display())))?;
                (parent, Some(n.to_os_string()))
            };
            let tmp = dir.join(format!(".vslice-cp.{}", std::process::id()));
            std::fs::create_dir(&tmp)
                .map_err(|e| CliError::failure(format!("{}: {e}", tmp.display())))?;
            let _guard = RemoveOnDrop(tmp.clone());
            let (rd, mut wr) =
                std::io::pipe().map_err(|e| CliError::failure(format!("pipe: {e}")))?;
            let tmp2 = tmp.clone();
            let reader = std::thread::spawn(move || -> std::io::Result<()> {
                let mut a = tar::Archive::new(rd);
                a.set_preserve_permissions(false);
                a.set_preserve_ownerships(false);
                a.set_unpack_xattrs(false);
                a.set_overwrite(true);
                a.unpack(&tmp2)
            });
            let q = FilesQuery {
                path: path.clone(),
                uid: None,
                gid: None,
            };
            let res = match b {
                Backend::Daemon(c) => c.copy_out(&name, &q, &mut wr).map_err(CliError::from),
                Backend::Direct(d) => direct_copy(d, "copy_out", &name, &q, |root| {
                    root.copy_out(&q.path, &mut wr).map(|s| s.bytes)
                }),
            };
            drop(wr);
            let unpacked = reader.join();
            let n = res?;
            match unpacked {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(CliError::failure(format!("unpacking: {e}"))),
                Err(_) => return Err(CliError::failure("the unpacking thread panicked")),
            }
            // The archive's single top entry, renamed into place.
            let mut tops = std::fs::read_dir(&tmp)
                .map_err(|e| CliError::failure(format!("{}: {e}", tmp.display())))?;
            let top = match tops.next() {
                Some(Ok(e)) => e.file_name(),
                _ => return Err(CliError::failure("the slice sent an empty archive")),
            };
            let final_path = dir.join(rename.unwrap_or_else(|| top.clone()));
            std::fs::rename(tmp.join(&top), &final_path).map_err(|e| {
                CliError::failure(format!(
                    "{}: {e} (is it a non-empty directory?)",
                    final_path.display()
                ))
            })?;
            if json {
                super::out(&serde_json::json!({ "bytes": n, "path": final_path }).to_string());
            } else {
                eprintln!("copied {name}:{path} to {}", final_path.display());
            }
            Ok(exit::OK)
        }
        (Side::Local(_), Side::Local(_)) => Err(CliError::usage(
            "one side must be a slice path NAME:/path (e.g. `vslice cp ./app web:/srv/app`)",
        )),
        (Side::Slice { .. }, Side::Slice { .. }) => Err(CliError::usage(
            "copying from one slice to another is not supported: copy out, then in",
        )),
    }
}

/// Direct mode's copy: the slice library itself, locked and audited like the daemon's route.
fn direct_copy<T>(
    d: &crate::daemon::direct::DirectSession,
    action: &str,
    name: &str,
    q: &FilesQuery,
    op: impl FnOnce(&crate::slice::files::SliceRoot) -> Result<T, FilesError>,
) -> R<T> {
    let args = match action {
        "copy_in" => {
            serde_json::json!({ "path": q.path, "uid": q.uid.unwrap_or(0), "gid": q.gid.unwrap_or(0) })
        }
        _ => serde_json::json!({ "path": q.path }),
    };
    let paths = d.paths.clone();
    let r = d.act(action, Some(name), args, 200, |m| {
        let info = m.inspect(name).map_err(CopyError::Slice)?;
        let root = crate::slice::files::SliceRoot::open_running(&paths, &info)
            .map_err(CopyError::Files)?;
        op(&root).map_err(CopyError::Files)
    })?;
    r.map_err(|e| match e {
        CopyError::Slice(e) => CliError::from(e),
        CopyError::Files(e) => {
            let (status, code) = e.status_code();
            let exit = match status {
                404 => exit::NOT_FOUND,
                409 => exit::CONFLICT,
                400 => exit::INVALID,
                _ => exit::FAILURE,
            };
            CliError {
                field: e.field().map(str::to_string),
                ..CliError::new(exit, code, e.to_string())
            }
        }
    })
}

/// What a direct-mode copy can fail with (recorded in the audit log like the daemon's reply).
#[derive(Debug)]
enum CopyError {
    Slice(crate::slice::SliceError),
    Files(FilesError),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Slice(e) => e.fmt(f),
            CopyError::Files(e) => e.fmt(f),
        }
    }
}

impl crate::daemon::direct::ActionError for CopyError {
    fn status_code(&self) -> (u16, &'static str) {
        match self {
            CopyError::Slice(e) => e.status_code(),
            CopyError::Files(e) => e.status_code(),
        }
    }
}

/// `vslice logs`: through the daemon, or (direct mode) from the log files themselves.
pub(super) fn logs(b: &Backend, name: &str, follow: bool, tail: Option<usize>) -> R<i32> {
    let mut stdout = std::io::stdout().lock();
    match b {
        Backend::Daemon(c) => {
            let q = crate::proto::LogsQuery {
                tail,
                follow: follow.then_some(true),
            };
            c.logs(name, &q, &mut stdout)?;
        }
        Backend::Direct(d) => {
            use std::io::Write;
            d.manager.inspect(name)?;
            let dir = d.paths.slice_dir(name);
            let io = |e: std::io::Error| CliError::failure(format!("{}: {e}", dir.display()));
            let (data, mut cursor) = crate::slice::console::tail(&dir, tail).map_err(io)?;
            stdout
                .write_all(&data)
                .and_then(|_| stdout.flush())
                .map_err(io)?;
            while follow && dir.is_dir() {
                std::thread::sleep(std::time::Duration::from_millis(250));
                let (data, c) = crate::slice::console::follow(&dir, cursor, 1 << 20).map_err(io)?;
                cursor = c;
                stdout
                    .write_all(&data)
                    .and_then(|_| stdout.flush())
                    .map_err(io)?;
            }
        }
    }
    Ok(exit::OK)
}

/// The archive's top entry for a local source: its last component (`.` and `..` resolved).
fn top_name(from: &Path) -> R<PathBuf> {
    let abs = if from.file_name().is_some() {
        from.to_path_buf()
    } else {
        std::fs::canonicalize(from)
            .map_err(|e| CliError::usage(format!("{}: {e}", from.display())))?
    };
    abs.file_name()
        .map(PathBuf::from)
        .ok_or_else(|| CliError::usage(format!("{}: names no file", from.display())))
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_owners() {
        assert_eq!(
            side("web:/srv/app"),
            Side::Slice {
                name: "web".into(),
                path: "/srv/app".into()
            }
        );
        assert_eq!(side("./web:/x"), Side::Local("./web:/x".into()));
        assert_eq!(side("web:rel"), Side::Local("web:rel".into()));
        assert_eq!(parse_owner("1000"), Ok((1000, 1000)));
        assert_eq!(parse_owner("1:2"), Ok((1, 2)));
        assert!(parse_owner("65536").is_err());
    }
}
