//! Cheap change detection on the slice store for the event poller: a `stat` of each slice's
//! `spec.json`, `state.json` and `exit.json` per tick, so that only slices whose files changed
//! are inspected (reading their cgroups and processes). The shim writes `state.json` when init
//! runs and `exit.json` when it ends; the Manager writes `spec.json` on limit changes.
use crate::config::Paths;
use crate::slice::files_cache::{state_file_ids, FileId};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint([FileId; 3]);

#[derive(Debug, Default)]
pub struct Watcher {
    seen: HashMap<String, Fingerprint>,
}

impl Watcher {
    pub fn new() -> Watcher {
        Watcher::default()
    }

    /// Slices whose files changed since the last scan (all of them the first time), and the
    /// slices that disappeared. Blocking.
    pub fn scan(&mut self, paths: &Paths) -> (Vec<String>, Vec<String>) {
        let mut changed = Vec::new();
        let mut now: HashMap<String, Fingerprint> = HashMap::with_capacity(self.seen.len());
        if let Ok(rd) = std::fs::read_dir(paths.slices_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let dir = e.path();
                let fp = Fingerprint(state_file_ids(&dir));
                if self.seen.get(&name) != Some(&fp) {
                    changed.push(name.clone());
                }
                now.insert(name, fp);
            }
        }
        let gone = self
            .seen
            .keys()
            .filter(|n| !now.contains_key(*n))
            .cloned()
            .collect();
        self.seen = now;
        (changed, gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slice::state;

    #[test]
    fn reports_new_changed_and_gone_slices() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: d.path().into(),
            cgroup_parent: "x".into(),
            policy_dir: d.path().into(),
            shim: d.path().into(),
            net: Default::default(),
        };
        let a = paths.slice_dir("a");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(paths.slices_dir().join(".b.creating")).unwrap();
        std::fs::write(a.join(state::SPEC_FILE), "{}").unwrap();
        let mut w = Watcher::new();
        assert_eq!(w.scan(&paths), (vec!["a".to_string()], vec![]));
        assert_eq!(w.scan(&paths), (vec![], vec![]));
        std::fs::write(a.join(state::EXIT_FILE), "{}").unwrap();
        assert_eq!(w.scan(&paths), (vec!["a".to_string()], vec![]));
        std::fs::remove_dir_all(&a).unwrap();
        assert_eq!(w.scan(&paths), (vec![], vec!["a".to_string()]));
    }
}
