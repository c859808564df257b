//! Container state under `--root/<id>/`, surviving the process that created the container:
//!
//! ```text
//! <root>/<id>/            0711, one directory per container, locked (lock) by every command
//!   config.json           the resolved spec (root.path absolute, cgroupsPath mapped), written
//!                         before anything is created so `delete` can always find the cgroup
//!   exec.fifo             the start FIFO: present = created, removed by `start`
//!   state.json            [`Saved`], written atomically once init is ready
//! ```
//!
//! The status is never stored: it is read from the kernel each time (see [`Container::status`]).
use super::{err, io_ctx, Result};
use crate::util::fs::{read_json, write_json_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const FIFO: &str = "exec.fifo";

/// What `create` records about a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host PID of the container's init.
    pub pid: i32,
    /// Its start time (/proc/<pid>/stat field 22), so a reused PID is not mistaken for it.
    pub pid_start: u64,
    /// RFC 3339, UTC, nanoseconds.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Cgroup path below every hierarchy root (the mapped cgroupsPath).
    pub cgroup: String,
    /// Ancestors of `cgroup` that `create` made (deepest last); `delete` removes them when
    /// they are empty.
    #[serde(default)]
    pub cgroup_parents_made: Vec<String>,
    /// The v1 device cgroup directory `create` made, if any.
    #[serde(default)]
    pub devices_cgroup: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// Container ids as runc accepts them: letters, digits, `_ + - .`, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(err!(
            "invalid container id {id:?}: use letters, digits and _ + - . only"
        ))
    }
}

/// An exclusive lock on a container, held for the duration of one command: a POSIX record
/// lock on `<dir>/lock`. Unlike flock(2), a record lock belongs to the process and is not
/// inherited by fork: the container's init (forked while `create` holds the lock, and
/// keeping the descriptor until it execs) must not keep `state` or `delete` waiting.
pub struct Lock {
    _fd: OwnedFd,
}

fn lock_dir(dir: &Path) -> std::io::Result<Lock> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join("lock"))?;
    let fd = OwnedFd::from(f);
    // SAFETY: zeroed flock is valid; we set the fields F_SETLKW reads.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    loop {
        // SAFETY: fcntl with a valid descriptor and flock struct.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLKW, &fl) } == 0 {
            return Ok(Lock { _fd: fd });
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A container directory under the state root.
pub struct Container {
    pub id: String,
    pub dir: PathBuf,
    /// None while `create` has not finished (or after it crashed).
    pub saved: Option<Saved>,
    /// None for a read-only view ([`Container::peek`]).
    _lock: Option<Lock>,
}

/// Make the state root (0700) if needed.
pub fn ensure_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(err!("create state root {}: {e}", root.display())),
    }
}

impl Container {
    /// Make the directory of a new container; fails if the id is taken.
    pub fn create_dir(root: &Path, id: &str) -> Result<Container> {
        use std::os::unix::fs::DirBuilderExt;
        validate_id(id)?;
        ensure_root(root)?;
        let dir = root.join(id);
        // 0711 (as runc): a user-namespaced init, an unprivileged uid on the host, must be
        // able to reach the start FIFO (chowned to it) from the directory; nothing can be
        // listed, and every other file in it is 0600.
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(err!("container with id {id} already exists"))
            }
            Err(e) => return Err(err!("create {}: {e}", dir.display())),
        }
        let lock = io_ctx(lock_dir(&dir), "lock", &dir)?;
        Ok(Container {
            id: id.to_string(),
            dir,
            saved: None,
            _lock: Some(lock),
        })
    }

    /// Open (and lock) an existing container.
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = root.join(id);
        let lock = match lock_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err!("container {id} does not exist"))
            }
            Err(e) => return Err(err!("lock {}: {e}", dir.display())),
        };
        // Deleted while we waited for the lock?
        if !dir.exists() {
            return Err(err!("container {id} does not exist"));
        }
        let state = dir.join(STATE_FILE);
        let saved = if state.exists() {
            Some(read_json::<Saved>(&state)?)
        } else {
            None
        };
        Ok(Container {
            id: id.to_string(),
            dir,
            saved,
            _lock: Some(lock),
        })
    }

    /// A read-only view without the lock, for `state`, `ps` and `list`: state.json is
    /// replaced atomically, so it is always whole; and a hook run by `create` (which holds the
    /// lock) may itself ask for the state.
    pub fn peek(root: &Path, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = root.join(id);
        if !dir.is_dir() {
            return Err(err!("container {id} does not exist"));
        }
        let state = dir.join(STATE_FILE);
        let saved = match read_json::<Saved>(&state) {
            Ok(s) => Some(s),
            Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
                if !dir.is_dir() {
                    return Err(err!("container {id} does not exist"));
                }
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Container {
            id: id.to_string(),
            dir,
            saved,
            _lock: None,
        })
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(FIFO)
    }

    pub fn save(&mut self, saved: Saved) -> Result<()> {
        write_json_atomic(&self.dir.join(STATE_FILE), &saved)?;
        self.saved = Some(saved);
        Ok(())
    }

    /// The resolved spec `create` stored.
    pub fn spec(&self) -> Result<oci_spec::runtime::Spec> {
        let path = self.dir.join(CONFIG_FILE);
        let data = io_ctx(std::fs::read(&path), "read", &path)?;
        serde_json::from_slice(&data).map_err(|e| err!("parse {}: {e}", path.display()))
    }

    /// Derived from the kernel: see the module docs.
    pub fn status(&self) -> Status {
        let Some(s) = &self.saved else {
            return Status::Creating;
        };
        if !crate::util::process::is_alive(s.pid, s.pid_start) {
            return Status::Stopped;
        }
        if self.fifo().exists() {
            return Status::Created;
        }
        if is_frozen(&s.cgroup) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The OCI state JSON (runtime-spec "State", plus runc's rootfs/created/owner fields,
    /// which containerd's go-runc reads).
    pub fn oci_state(&self, status: Status) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": super::OCI_VERSION,
            "id": self.id,
            "status": status.as_str(),
        });
        if let Some(s) = &self.saved {
            let m = v.as_object_mut().expect("object");
            let pid = if status == Status::Stopped { 0 } else { s.pid };
            m.insert("pid".into(), pid.into());
            m.insert("bundle".into(), s.bundle.to_string_lossy().into());
            m.insert("rootfs".into(), s.rootfs.to_string_lossy().into());
            m.insert("created".into(), s.created.clone().into());
            m.insert("owner".into(), s.owner.clone().into());
            if !s.annotations.is_empty() {
                m.insert(
                    "annotations".into(),
                    serde_json::to_value(&s.annotations).unwrap_or_default(),
                );
            }
        }
        v
    }

    /// Remove the directory (the FIFO and state files with it).
    pub fn remove_dir(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err!("remove {}: {e}", self.dir.display())),
        }
    }
}

/// The freezer state of a cgroup (v1 freezer.state FROZEN, v2 cgroup.freeze 1).
pub fn is_frozen(cgroup: &str) -> bool {
    let v1 = Path::new("/sys/fs/cgroup/freezer")
        .join(cgroup)
        .join("freezer.state");
    if let Ok(s) = std::fs::read_to_string(&v1) {
        return s.trim() == "FROZEN";
    }
    let v2 = Path::new("/sys/fs/cgroup")
        .join(cgroup)
        .join("cgroup.freeze");
    std::fs::read_to_string(v2)
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

/// Now as RFC 3339 with nanoseconds, UTC (what runc prints in `created`).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Ids of every container under `root`.
pub fn list(root: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(err!("read {}: {e}", root.display())),
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && validate_id(&name).is_ok() {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_like_runc() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "a\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), "2024-01-01T00:00:00.000000000Z".len(), "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }
}
