//! Small cgroupfs file helpers shared by the v1 and v2 backends. Every error names the file
//! and the operation; nothing here panics on what the kernel returns.
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;
use crate::util::fs::IoContext;

/// Read a control file.
pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    Ok(crate::util::fs::read_kernel_text(path).ctx("read", path)?)
}

/// Read a control file that may legitimately be absent (a feature of a newer kernel, a
/// controller that is not enabled): `None` if it does not exist.
pub(super) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match crate::util::fs::read_kernel_text(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::util::fs::PathError::new("read", path, e).into()),
    }
}

/// Write one value to a control file with a single write(2), as cgroupfs expects. No
/// O_CREAT: a missing file means a missing controller or feature and must be reported, not
/// created. O_TRUNC is ignored by cgroupfs (runc passes it too) and keeps plain files used in
/// tests consistent.
pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let res = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Parse a file that holds a single unsigned number.
pub(super) fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    let t = text.trim();
    t.parse::<u64>().map_err(|e| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("{t:?} is not a number: {e}"),
    })
}

/// Read a single-number file; an absent file reads as 0 (the counter does not exist on this
/// kernel or controller).
pub(super) fn read_u64_or_zero(path: &Path) -> Result<u64, CgroupError> {
    match read_opt(path)? {
        Some(text) => parse_u64(path, &text),
        None => Ok(0),
    }
}

/// Value of `key` in a flat-keyed file (`key value` per line: cpu.stat, memory.events,
/// memory.oom_control). `None` if the key is absent; an unparsable value is an error.
pub(super) fn keyed(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some(key) {
            let v = it.next().unwrap_or("");
            return v.parse::<u64>().map(Some).map_err(|e| CgroupError::Parse {
                path: path.to_path_buf(),
                reason: format!("key {key}: {v:?} is not a number: {e}"),
            });
        }
    }
    Ok(None)
}

/// Parse cgroup.procs: one pid per line.
pub(super) fn parse_procs(path: &Path, text: &str) -> Result<Vec<i32>, CgroupError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse::<i32>().map_err(|e| CgroupError::Parse {
                path: path.to_path_buf(),
                reason: format!("pid {l:?}: {e}"),
            })
        })
        .collect()
}

/// Pids listed in `dir/cgroup.procs`; a cgroup that vanished meanwhile has none.
pub(super) fn procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match read_opt(&path)? {
        Some(text) => parse_procs(&path, &text),
        None => Ok(Vec::new()),
    }
}

/// `dir` and every cgroup below it, deepest first (the order rmdir needs). A missing `dir`
/// yields nothing. Slices may make their own sub-cgroups (systemd inside a slice does), so
/// killing and removing must cover the whole subtree.
pub(super) fn subtree_deepest_first(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, &mut out)?;
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // Removed concurrently: nothing left to walk.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::util::fs::PathError::new("list", dir, e).into()),
    };
    for entry in entries {
        let entry = entry.ctx("list", dir)?;
        // file_type() does not follow symlinks; cgroup directories are real directories.
        if entry.file_type().ctx("stat", entry.path())?.is_dir() {
            walk(&entry.path(), out)?;
        }
    }
    out.push(dir.to_path_buf());
    Ok(())
}

/// Whether `dir` has at least one child cgroup.
pub(super) fn has_children(dir: &Path) -> Result<bool, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(crate::util::fs::PathError::new("list", dir, e).into()),
    };
    for entry in entries {
        let entry = entry.ctx("list", dir)?;
        if entry.file_type().ctx("stat", entry.path())?.is_dir() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// mkdir that treats "already exists" as success. Returns whether it created the directory.
pub(super) fn mkdir(dir: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(crate::util::fs::PathError::new("mkdir", dir, e).into()),
    }
}

/// rmdir a cgroup, treating "already gone" as success. Killed tasks leave the cgroup a little
/// after they receive SIGKILL, and until they have the kernel answers EBUSY: retry with short,
/// growing sleeps until `deadline` (runc and cgroups-rs do the same).
pub(super) fn rmdir_retry(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(crate::util::fs::PathError::new("rmdir", dir, e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_from_cgroup_files() {
        let p = Path::new("/x/memory.oom_control");
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(p, oom, "oom_kill").unwrap(), Some(3));
        assert_eq!(keyed(p, oom, "oom_kill_disable").unwrap(), Some(0));
        // Old kernels have no oom_kill line.
        assert_eq!(
            keyed(p, "oom_kill_disable 0\nunder_oom 0\n", "oom_kill").unwrap(),
            None
        );

        let stat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\n";
        assert_eq!(
            keyed(Path::new("/x/cpu.stat"), stat, "usage_usec").unwrap(),
            Some(123456)
        );

        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        let p = Path::new("/x/memory.events");
        assert_eq!(keyed(p, events, "oom_kill").unwrap(), Some(1));
        assert_eq!(keyed(p, events, "oom").unwrap(), Some(2));
        // A key that is only a prefix of another must not match it.
        assert_eq!(keyed(p, events, "oom_group").unwrap(), None);

        let err = keyed(p, "oom_kill lots\n", "oom_kill").unwrap_err();
        assert!(err.to_string().contains("/x/memory.events"), "{err}");
    }

    #[test]
    fn procs_and_numbers_parse_or_name_the_file() {
        let p = Path::new("/x/cgroup.procs");
        assert_eq!(parse_procs(p, "12\n345\n\n").unwrap(), vec![12, 345]);
        assert_eq!(parse_procs(p, "").unwrap(), Vec::<i32>::new());
        let err = parse_procs(p, "12\nabc\n").unwrap_err();
        assert!(err.to_string().contains("/x/cgroup.procs"), "{err}");

        let p = Path::new("/x/cpuacct.usage");
        assert_eq!(parse_u64(p, "987654321\n").unwrap(), 987654321);
        let err = parse_u64(p, "max\n").unwrap_err();
        assert!(err.to_string().contains("/x/cpuacct.usage"), "{err}");
    }

    #[test]
    fn write_error_names_file_and_value() {
        let err = write(Path::new("/nonexistent-vslice/memory.max"), "1234").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("write /nonexistent-vslice/memory.max: "),
            "{msg}"
        );
        assert!(msg.contains("1234"), "{msg}");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn subtree_is_deepest_first_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("c")).unwrap();
        fs::write(root.join("cgroup.procs"), "").unwrap();
        let order = subtree_deepest_first(&root).unwrap();
        assert_eq!(order.len(), 4, "{order:?}");
        assert_eq!(order.last().unwrap(), &root);
        let pos = |p: &Path| order.iter().position(|x| x == p).unwrap();
        assert!(pos(&root.join("a/b")) < pos(&root.join("a")));
        assert!(has_children(&root).unwrap());
        assert!(!has_children(&root.join("c")).unwrap());
        assert!(subtree_deepest_first(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }
}
