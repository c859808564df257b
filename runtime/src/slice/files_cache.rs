//! The parsed state files of each slice (spec.json, state.json, exit.json), kept while none
//! of them changed, so that `list` and `inspect` stat three files per slice instead of
//! opening, reading and parsing them (issue 14: list of 1000 slices).
//!
//! Why a stat is enough: every writer replaces these files whole through a rename
//! (util/fs.rs write_json_atomic; the shim too) or unlinks them, so a change always brings a
//! new inode, and the (inode, mtime, size) of each file tells whether what was parsed is still
//! there. The one gap, a file replaced twice within one mtime tick by one of the same size
//! whose inode number was just freed, is closed for the writer in this process (the Manager's
//! own spec writes call [`FilesCache::forget`]); the shim writes state.json once per start
//! and exit.json once per exit.
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use super::state::{RuntimeState, EXIT_FILE, SPEC_FILE, STATE_FILE};
use crate::proto::slice::{ExitInfo, SliceSpec};
use crate::util::fs::{read_json, PathError};

/// A file's (inode, mtime seconds, mtime nanoseconds, size); None if it does not exist.
pub(crate) type FileId = Option<(u64, i64, i64, u64)>;
/// Slice name -> the ids of its three files when parsed, and what they said.
type Seen = HashMap<String, ([FileId; 3], Arc<SliceFiles>)>;

fn file_id(p: &Path) -> FileId {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// The ids of the slice directory `dir`'s spec.json, state.json and exit.json: they change
/// exactly when one of the files is replaced or removed (also the daemon's change scan,
/// daemon/watch.rs).
pub(crate) fn state_file_ids(dir: &Path) -> [FileId; 3] {
    [
        file_id(&dir.join(SPEC_FILE)),
        file_id(&dir.join(STATE_FILE)),
        file_id(&dir.join(EXIT_FILE)),
    ]
}

/// What a slice's state files said when last read.
#[derive(Debug)]
pub(crate) struct SliceFiles {
    pub spec: SliceSpec,
    /// state.json: written by the shim once init runs; whether that shim still lives is the
    /// caller's to check (it may have died without a word).
    pub state: Option<RuntimeState>,
    pub exit: Option<ExitInfo>,
}

#[derive(Debug, Default)]
pub(crate) struct FilesCache {
    seen: Mutex<Seen>,
}

impl FilesCache {
    /// The state files of the slice in `dir`, parsed again only if one of them changed.
    /// `Ok(None)`: there is no spec (no such slice).
    pub fn load(&self, name: &str, dir: &Path) -> Result<Option<Arc<SliceFiles>>, PathError> {
        let (spec, state, exit) = (
            dir.join(SPEC_FILE),
            dir.join(STATE_FILE),
            dir.join(EXIT_FILE),
        );
        let ids = state_file_ids(dir);
        if ids[0].is_none() {
            self.forget(name);
            return Ok(None);
        }
        if let Some((seen, files)) = self.lock().get(name) {
            if *seen == ids {
                return Ok(Some(files.clone()));
            }
        }
        // Read after the stat: what is parsed is at least as new as the ids it is kept under,
        // so a change in between costs one more read, never a stale answer.
        let files = Arc::new(SliceFiles {
            spec: read_json(&spec)?,
            state: read_json(&state).ok(),
            exit: read_json(&exit).ok(),
        });
        self.lock().insert(name.to_string(), (ids, files.clone()));
        Ok(Some(files))
    }

    /// Drop what is kept of `name` (its spec was written here, or it is gone).
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fs::write_json_atomic;

    fn spec(name: &str, memory: u64) -> SliceSpec {
        let mut s = SliceSpec {
            name: name.into(),
            image: "busybox".into(),
            policy: "default".into(),
            limits: Default::default(),
            owners: vec![],
            autostart: false,
            init: vec!["/sbin/init".into()],
            net: Default::default(),
            uid_base: 100_000,
            created_at: 1,
            volumes: vec![],
        };
        s.limits.memory_max = Some(memory);
        s
    }

    #[test]
    fn reparses_exactly_when_a_file_changes() {
        let d = tempfile::tempdir().unwrap();
        let c = FilesCache::default();
        assert!(
            c.load("a", d.path()).unwrap().is_none(),
            "no spec, no slice"
        );
        write_json_atomic(&d.path().join(SPEC_FILE), &spec("a", 1 << 20)).unwrap();
        let first = c.load("a", d.path()).unwrap().unwrap();
        assert!(first.state.is_none() && first.exit.is_none());
        let again = c.load("a", d.path()).unwrap().unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "unchanged files are not read again"
        );

        // A same-size rewrite at once (same mtime tick, likely) is still seen: new inode.
        write_json_atomic(&d.path().join(SPEC_FILE), &spec("a", 2 << 20)).unwrap();
        let changed = c.load("a", d.path()).unwrap().unwrap();
        assert_eq!(changed.spec.limits.memory_max, Some(2 << 20));

        let st = RuntimeState {
            shim_pid: 1,
            shim_start: 2,
            init_pid: 3,
            init_start: 4,
            started_at: 5,
            oom_kills_at_start: 0,
        };
        write_json_atomic(&d.path().join(STATE_FILE), &st).unwrap();
        assert_eq!(c.load("a", d.path()).unwrap().unwrap().state, Some(st));
        std::fs::remove_file(d.path().join(STATE_FILE)).unwrap();
        assert_eq!(c.load("a", d.path()).unwrap().unwrap().state, None);

        std::fs::write(d.path().join(SPEC_FILE), "{not json").unwrap();
        assert!(
            c.load("a", d.path()).is_err(),
            "a corrupt spec is an error, not stale"
        );
        std::fs::remove_file(d.path().join(SPEC_FILE)).unwrap();
        assert!(c.load("a", d.path()).unwrap().is_none());
    }
}
