//! Direct mode (`VSLICE_DIRECT=1`): the daemon's guarantees without the daemon.
//!
//! The daemon gives every action two things besides running it: one writer per state root
//! (its lifetime lock on `<root>/vsliced.lock`, per-slice locks) and a record in the audit log
//! before the reply. A CLI that drives [`Manager`] itself must give the same, or direct mode
//! becomes the way to act on a node without a trace. So a direct-mode action:
//!
//! * takes `<root>/direct.lock` (blocking: direct-mode commands on one root queue up), then
//!   `<root>/vsliced.lock` without blocking. Since direct-mode callers are serialized by the
//!   first lock, the second one is busy only when a daemon serves the root: the action is
//!   refused, naming the daemon, instead of racing it (two writers would fork the audit
//!   chain);
//! * runs the same [`Manager`] call the daemon's handler runs (the manager takes the same
//!   per-slice file locks);
//! * appends the same control record the daemon writes (fsynced before the command returns),
//!   with the local user as caller and `mode: "direct"`;
//! * releases both locks, so a daemon can start as soon as the command is done. Long-running
//!   commands (`exec`, `enter`) hold the locks only to write their `exec` / `exec_end` records.
use super::config::Config;
use super::ROOT_LOCK_FILE;
use crate::audit::{AuditError, AuditLog, Caller, ControlRecord, Entry, Outcome};
use crate::config::Paths;
use crate::slice::Manager;
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Beside `vsliced.lock`: serializes direct-mode callers among themselves.
pub const DIRECT_LOCK_FILE: &str = "direct.lock";

/// Value of the audit caller's `mode` for direct-mode actions.
pub const MODE_DIRECT: &str = "direct";

#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("vsliced is serving state root {0}: use the daemon (unset VSLICE_DIRECT), or stop it first for recovery work")]
    DaemonRunning(PathBuf),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
}

/// Both locks of a state root, held while one direct-mode action runs and is recorded.
/// Field order is drop order: the root lock must go first, or the next direct-mode caller
/// (waiting on `direct.lock`) would find it still held and take it for a daemon.
pub struct RootLock {
    _root: Flock<File>,
    _direct: Flock<File>,
}

/// A daemon-less session on one state root: the slice library plus the locking and auditing
/// the daemon would have done.
#[derive(Debug)]
pub struct DirectSession {
    pub manager: Manager,
    pub paths: Paths,
    caller: Caller,
    segment_bytes: u64,
}

fn open_lock(path: &Path) -> Result<File, DirectError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| DirectError::Io {
            op: "open",
            path: path.to_path_buf(),
            source,
        })
}

impl DirectSession {
    /// A session acting as the calling user (real uid: a setuid-less CLI cannot claim more).
    pub fn new(paths: Paths) -> DirectSession {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name);
        // The daemon's config, when there is one, decides the segment size; direct mode must
        // not start a segment layout of its own.
        let segment_bytes = Config::load(Path::new(super::config::DEFAULT_CONFIG_FILE), false)
            .map(|c| c.audit_segment_bytes)
            .unwrap_or(crate::audit::DEFAULT_SEGMENT_BYTES);
        DirectSession {
            manager: Manager::new(paths.clone()),
            paths,
            caller: Caller {
                uid: uid.as_raw(),
                user,
                pid: Some(std::process::id() as i32),
                mode: Some(MODE_DIRECT.to_string()),
            },
            segment_bytes,
        }
    }

    /// Take the state root for one action; refused while a daemon serves it.
    pub fn lock_root(&self) -> Result<RootLock, DirectError> {
        fs::create_dir_all(&self.paths.root).map_err(|source| DirectError::Io {
            op: "create",
            path: self.paths.root.clone(),
            source,
        })?;
        let direct_path = self.paths.root.join(DIRECT_LOCK_FILE);
        let direct =
            Flock::lock(open_lock(&direct_path)?, FlockArg::LockExclusive).map_err(|(_, e)| {
                DirectError::Io {
                    op: "flock",
                    path: direct_path.clone(),
                    source: std::io::Error::from_raw_os_error(e as i32),
                }
            })?;
        let root_path = self.paths.root.join(ROOT_LOCK_FILE);
        let root = Flock::lock(open_lock(&root_path)?, FlockArg::LockExclusiveNonblock)
            .map_err(|_| DirectError::DaemonRunning(self.paths.root.clone()))?;
        Ok(RootLock {
            _direct: direct,
            _root: root,
        })
    }

    /// Append a control record. Only while holding [`RootLock`]: the log has one writer.
    pub fn record(
        &self,
        _held: &RootLock,
        action: &str,
        slice: Option<&str>,
        args: Value,
        result: Outcome,
    ) -> Result<(), DirectError> {
        let (mut log, _notes) = AuditLog::open(&self.paths.root.join("audit"), self.segment_bytes)?;
        log.append(Entry::Control(ControlRecord {
            caller: self.caller.clone(),
            action: action.into(),
            slice: slice.map(str::to_string),
            args,
            result,
        }))?;
        Ok(())
    }

    /// Run one mutating action the way the daemon does: locked, then recorded with its outcome
    /// (the HTTP status the daemon would have answered, so both modes read alike in the log).
    /// An action that succeeded but could not be recorded is reported as failed: the caller
    /// must know the trail has a gap.
    pub fn act<T, E>(
        &self,
        action: &str,
        slice: Option<&str>,
        args: Value,
        ok_status: u16,
        op: impl FnOnce(&Manager) -> Result<T, E>,
    ) -> Result<Result<T, E>, DirectError>
    where
        E: ActionError,
    {
        let held = self.lock_root()?;
        let result = op(&self.manager);
        let outcome = match &result {
            Ok(_) => Outcome::ok(ok_status),
            Err(e) => {
                let (status, code) = e.status_code();
                Outcome::error(status, code, &e.to_string())
            }
        };
        self.record(&held, action, slice, args, outcome)?;
        Ok(result)
    }
}

/// How an action's error reads in an audit record: the daemon's HTTP status and error code.
pub trait ActionError: std::fmt::Display {
    fn status_code(&self) -> (u16, &'static str);
}

impl ActionError for crate::slice::SliceError {
    fn status_code(&self) -> (u16, &'static str) {
        crate::slice::SliceError::status_code(self)
    }
}
