//! Creating the API sockets with the right owner and mode.
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Who may connect to a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// root:`group` with `mode` if the group exists, else root-only 0600.
    Group { group: String, mode: u32 },
    /// Anyone (0666): for the owners' socket, where SO_PEERCRED decides.
    World,
}

/// What was applied, for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub mode: u32,
    pub gid: Option<u32>,
    pub warning: Option<String>,
}

/// Bind a listening socket at `path`: creates the parent directory (0755), refuses to take
/// over a socket another process is still serving, removes a stale one, and sets owner and
/// mode. The socket is created with the process umask (at most 0755 for the usual 022, which
/// lets nobody but root connect) and narrowed or widened right after.
pub fn bind(path: &Path, access: &Access) -> io::Result<(UnixListener, Applied)> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if path.exists() {
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use: another daemon is listening on it",
                        path.display()
                    ),
                ))
            }
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    let listener = UnixListener::bind(path)?;
    let applied = match access {
        Access::World => Applied { mode: 0o666, gid: None, warning: None },
        Access::Group { group, mode } => match super::auth::admin_gid(group) {
            Some(gid) => {
                nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(0)), Some(nix::unistd::Gid::from_raw(gid)))
                    .or_else(|e| if nix::unistd::geteuid().is_root() { Err(e) } else { Ok(()) })
                    .map_err(io::Error::from)?;
                Applied { mode: *mode, gid: Some(gid), warning: None }
            }
            None => Applied {
                mode: 0o600,
                gid: None,
                warning: Some(format!(
                    "group {group:?} does not exist: {} is root-only (0600); create the group (make install does) to let operators in",
                    path.display()
                )),
            },
        },
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(applied.mode))?;
    Ok((listener, applied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn modes_and_stale_sockets() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/api.sock");
        let (l, applied) = bind(
            &p,
            &Access::Group {
                group: "vslice-no-such-group-xyz".into(),
                mode: 0o660,
            },
        )
        .unwrap();
        assert_eq!(applied.mode, 0o600);
        assert!(applied.warning.is_some());
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        // In use: refused.
        let e = bind(&p, &Access::World).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(l);
        // Stale: replaced.
        let (_l, applied) = bind(
            &p,
            &Access::Group {
                group: "root".into(),
                mode: 0o660,
            },
        )
        .unwrap();
        assert_eq!(applied.gid, Some(0));
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o660);
    }
}
