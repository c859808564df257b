//! cgroup v2: the unified hierarchy at /sys/fs/cgroup.
//!
//! Not exercised against a kernel on the build host (which is v1); the parsing and the value
//! conversions are unit-tested, the file names and formats follow
//! Documentation/admin-guide/cgroup-v2.rst.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::{
    check_memory_swap, cpu_weight_from_shares, files, Backend, CgroupError, Limit, Usage,
    FREEZE_TIMEOUT,
};

pub(super) const ROOT: &str = "/sys/fs/cgroup";

/// Controllers enabled for slices. The freezer and cgroup.kill are core files in v2, not
/// controllers.
/// io carries the slice's block I/O limits (crate::disk::blkio).
const CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "memory", "pids", "io"];

pub(crate) struct V2 {
    root: PathBuf,
}

impl V2 {
    pub(super) fn new() -> V2 {
        V2 {
            root: PathBuf::from(ROOT),
        }
    }

    /// Enable our controllers in `dir`'s cgroup.subtree_control so its children get them.
    /// Only those the kernel offers there (cgroup.controllers) are enabled; a limit for a
    /// missing one then fails on its missing file, naming it. Each controller is written
    /// separately so the error says which one was refused.
    fn enable_controllers(&self, dir: &Path) -> Result<(), CgroupError> {
        let available = files::read(&dir.join("cgroup.controllers"))?;
        let control = dir.join("cgroup.subtree_control");
        let enabled = files::read(&control)?;
        for c in CONTROLLERS {
            let has = |list: &str| list.split_whitespace().any(|x| x == c);
            if has(&available) && !has(&enabled) {
                files::write(&control, &format!("+{c}"))?;
            }
        }
        Ok(())
    }

    fn apply_cpu(&self, dir: &Path, res: &LinuxResources) -> Result<(), CgroupError> {
        let Some(cpu) = res.cpu() else { return Ok(()) };
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            files::write(
                &dir.join("cpu.weight"),
                &cpu_weight_from_shares(shares).to_string(),
            )?;
        }
        let quota = cpu.quota().filter(|q| *q != 0);
        let period = cpu.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            // cpu.max holds both as "$QUOTA $PERIOD" ($QUOTA may be "max"); keep the current
            // value of the one not being changed.
            let path = dir.join("cpu.max");
            let (cur_quota, cur_period) = parse_cpu_max(&path, &files::read(&path)?)?;
            let q = match quota {
                Some(q) if q > 0 => q.to_string(),
                Some(_) => "max".to_string(),
                None => cur_quota,
            };
            let p = period.unwrap_or(cur_period);
            files::write(&path, &format!("{q} {p}"))?;
        }
        if let Some(c) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            files::write(&dir.join("cpuset.cpus"), c)?;
        }
        if let Some(m) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            files::write(&dir.join("cpuset.mems"), m)?;
        }
        Ok(())
    }

    fn apply_memory(
        &self,
        rel: &Path,
        dir: &Path,
        res: &LinuxResources,
    ) -> Result<(), CgroupError> {
        let Some(mem) = res.memory() else {
            return Ok(());
        };
        let limit = Limit::from_oci(mem.limit());
        let swap = Limit::from_oci(mem.swap());
        check_memory_swap(&rel.to_string_lossy(), limit, swap)?;
        // Unlike v1, memory.max and memory.swap.max are independent (swap alone, not the
        // total), so there is no ordering constraint between the two writes.
        let max_file = dir.join("memory.max");
        if let Some(l) = limit {
            files::write(&max_file, &fmt_limit(l))?;
        }
        let swap_file = dir.join("memory.swap.max");
        match swap {
            // Without swap accounting there is no file, and swap is unlimited already.
            Some(Limit::Max) if swap_file.exists() => files::write(&swap_file, "max")?,
            None | Some(Limit::Max) => {}
            Some(Limit::Bytes(total)) => {
                let memory = match limit {
                    Some(Limit::Bytes(m)) => m,
                    Some(Limit::Max) => unreachable_max(rel)?,
                    // Swap given alone: the total is relative to the memory limit in force.
                    None => match files::read(&max_file)?.trim() {
                        "max" => unreachable_max(rel)?,
                        t => files::parse_u64(&max_file, t)?,
                    },
                };
                let swap_only = swap_max(memory, total).ok_or_else(|| CgroupError::Invalid {
                    path: rel.display().to_string(),
                    reason: format!("memory.swap ({total}) is below the memory limit ({memory})"),
                })?;
                if !swap_file.exists() {
                    return Err(CgroupError::Unsupported {
                        path: swap_file,
                        reason: "a memory+swap limit was requested but this kernel has no swap accounting \
                                 (file missing: CONFIG_MEMCG_SWAP off or booted with swapaccount=0)"
                            .into(),
                    });
                }
                files::write(&swap_file, &swap_only.to_string())?;
            }
        }
        Ok(())
    }

    fn apply_unified(
        &self,
        rel: &Path,
        dir: &Path,
        res: &LinuxResources,
    ) -> Result<(), CgroupError> {
        let Some(unified) = res.unified() else {
            return Ok(());
        };
        // Sorted, so that the order of writes does not depend on hash order.
        let mut entries: Vec<_> = unified.iter().collect();
        entries.sort();
        for (key, value) in entries {
            if key.is_empty()
                || key.contains('/')
                || key.starts_with('.')
                || key.starts_with("cgroup.")
            {
                return Err(CgroupError::Invalid {
                    path: rel.display().to_string(),
                    reason: format!("unified key {key:?} is not a controller file name"),
                });
            }
            files::write(&dir.join(key), value)?;
        }
        Ok(())
    }
}

fn unreachable_max(rel: &Path) -> Result<u64, CgroupError> {
    Err(CgroupError::Invalid {
        path: rel.display().to_string(),
        reason: "memory.swap is finite but the memory limit is unlimited".into(),
    })
}

fn fmt_limit(l: Limit) -> String {
    match l {
        Limit::Max => "max".into(),
        Limit::Bytes(n) => n.to_string(),
    }
}

/// memory.swap.max for an OCI memory+swap total: the swap part alone, `None` if the total is
/// below the memory limit.
pub(super) fn swap_max(memory: u64, total: u64) -> Option<u64> {
    total.checked_sub(memory)
}

/// Parse cpu.max: "$QUOTA $PERIOD", where $QUOTA is a number or "max".
pub(super) fn parse_cpu_max(path: &Path, text: &str) -> Result<(String, u64), CgroupError> {
    let mut it = text.split_whitespace();
    let bad = || CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("{:?} is not \"QUOTA PERIOD\"", text.trim()),
    };
    let quota = it.next().ok_or_else(bad)?;
    if quota != "max" && quota.parse::<u64>().is_err() {
        return Err(bad());
    }
    let period = it
        .next()
        .and_then(|p| p.parse::<u64>().ok())
        .ok_or_else(bad)?;
    Ok((quota.to_string(), period))
}

impl Backend for V2 {
    fn roots(&self) -> Vec<PathBuf> {
        vec![self.root.clone()]
    }

    fn create(&self, rel: &Path) -> Result<(), CgroupError> {
        // Controllers must be enabled top-down: a cgroup can only enable what its parent
        // enabled for it. The leaf itself enables nothing, since (no-internal-process rule)
        // a cgroup that holds processes cannot delegate domain controllers to children.
        let mut cur = self.root.clone();
        for comp in rel.components() {
            // A cgroup that holds processes cannot give its children domain controllers (the
            // no-internal-process rule), and enabling a threaded one (cpu, pids) would make it
            // a thread root whose children refuse processes (EOPNOTSUPP): a sub-cgroup made
            // under a running slice (as the slice's own systemd would) gets none, and the
            // slice's limits still hold over it.
            let busy = cur != self.root
                && files::read(&cur.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty());
            if !busy {
                self.enable_controllers(&cur)?;
            }
            cur.push(comp);
            files::mkdir(&cur)?;
        }
        Ok(())
    }

    fn apply(&self, rel: &Path, res: &LinuxResources) -> Result<(), CgroupError> {
        let dir = self.root.join(rel);
        self.apply_cpu(&dir, res)?;
        self.apply_memory(rel, &dir, res)?;
        if let Some(pids) = res.pids() {
            if let Some(v) = super::v1::pids_max(pids.limit()) {
                files::write(&dir.join("pids.max"), &v)?;
            }
        }
        // Last, so that explicit unified entries win over the converted fields.
        self.apply_unified(rel, &dir, res)
    }

    fn usage(&self, rel: &Path) -> Result<Usage, CgroupError> {
        let dir = self.root.join(rel);
        // cpu.stat is a core file present in every cgroup; reading it also checks existence.
        let stat_file = dir.join("cpu.stat");
        let stat = files::read(&stat_file)?;
        let mut u = Usage {
            cpu_usage_ns: files::keyed(&stat_file, &stat, "usage_usec")?
                .unwrap_or(0)
                .saturating_mul(1000),
            memory_current: files::read_u64_or_zero(&dir.join("memory.current"))?,
            memory_peak: files::read_u64_or_zero(&dir.join("memory.peak"))?,
            pids_current: files::read_u64_or_zero(&dir.join("pids.current"))?,
            oom_kills: 0,
        };
        let events = dir.join("memory.events");
        if let Some(text) = files::read_opt(&events)? {
            u.oom_kills = files::keyed(&events, &text, "oom_kill")?.unwrap_or(0);
        }
        Ok(u)
    }

    fn kill_at_once(&self, rel: &Path) -> Result<bool, CgroupError> {
        let kill = self.root.join(rel).join("cgroup.kill");
        if !kill.exists() {
            return Ok(false); // before Linux 5.14
        }
        files::write(&kill, "1")?;
        Ok(true)
    }

    fn set_frozen(&self, rel: &Path, frozen: bool) -> Result<bool, CgroupError> {
        let dir = self.root.join(rel);
        let freeze = dir.join("cgroup.freeze");
        if !freeze.exists() {
            return Ok(false); // before Linux 5.2, or the cgroup is gone
        }
        files::write(&freeze, if frozen { "1" } else { "0" })?;
        if frozen {
            // cgroup.events says "frozen 1" once every task in the subtree is frozen.
            let events = dir.join("cgroup.events");
            let start = Instant::now();
            while start.elapsed() < FREEZE_TIMEOUT {
                match files::read_opt(&events)? {
                    Some(t) if files::keyed(&events, &t, "frozen")? == Some(1) => break,
                    None => break,
                    Some(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_parsing() {
        let p = Path::new("/sys/fs/cgroup/vslice/a/cpu.max");
        assert_eq!(
            parse_cpu_max(p, "max 100000\n").unwrap(),
            ("max".to_string(), 100000)
        );
        assert_eq!(
            parse_cpu_max(p, "50000 100000\n").unwrap(),
            ("50000".to_string(), 100000)
        );
        for bad in ["", "max", "lots 100000", "50000 often"] {
            let err = parse_cpu_max(p, bad).unwrap_err();
            assert!(err.to_string().contains("vslice/a/cpu.max"), "{err}");
        }
    }

    #[test]
    fn swap_is_total_minus_memory() {
        assert_eq!(swap_max(64 << 20, 96 << 20), Some(32 << 20));
        assert_eq!(swap_max(64 << 20, 64 << 20), Some(0));
        assert_eq!(swap_max(64 << 20, 32 << 20), None);
    }

    #[test]
    fn v2_dirs_are_under_the_unified_root() {
        assert_eq!(
            V2::new().dirs(Path::new("vslice/web1")),
            vec![PathBuf::from("/sys/fs/cgroup/vslice/web1")]
        );
        assert_eq!(fmt_limit(Limit::Max), "max");
        assert_eq!(fmt_limit(Limit::Bytes(4096)), "4096");
    }

    #[test]
    fn v2_apply_writes_converted_values() {
        // A fake cgroup directory with the v2 files, to check the conversions end to end
        // (the build host has no v2 controllers to test against).
        let tmp = tempfile::tempdir().unwrap();
        let v2 = V2 {
            root: tmp.path().to_path_buf(),
        };
        let dir = tmp.path().join("vslice/a");
        std::fs::create_dir_all(&dir).unwrap();
        for (f, v) in [
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("pids.max", "max"),
            ("cpuset.cpus", ""),
            ("memory.high", "max"),
        ] {
            std::fs::write(dir.join(f), v).unwrap();
        }
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let rel = Path::new("vslice/a");
        let res: LinuxResources = serde_json::from_str(
            r#"{"cpu":{"shares":512,"quota":25000,"cpus":"0"},
                "memory":{"limit":67108864,"swap":100663296},
                "pids":{"limit":64},
                "unified":{"memory.high":"50000000"}}"#,
        )
        .unwrap();
        v2.apply(rel, &res).unwrap();
        assert_eq!(read("cpu.weight"), "50");
        assert_eq!(read("cpu.max"), "25000 100000"); // period kept
        assert_eq!(read("cpuset.cpus"), "0");
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.swap.max"), "33554432");
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("memory.high"), "50000000");

        let res: LinuxResources =
            serde_json::from_str(r#"{"cpu":{"quota":-1,"period":50000},"memory":{"limit":-1,"swap":-1},"pids":{"limit":-1}}"#)
                .unwrap();
        v2.apply(rel, &res).unwrap();
        assert_eq!(read("cpu.max"), "max 50000");
        assert_eq!(read("memory.max"), "max");
        assert_eq!(read("memory.swap.max"), "max");
        assert_eq!(read("pids.max"), "max");

        // Swap alone is relative to the memory limit in force.
        std::fs::write(dir.join("memory.max"), "1000").unwrap();
        let res: LinuxResources = serde_json::from_str(r#"{"memory":{"swap":1500}}"#).unwrap();
        v2.apply(rel, &res).unwrap();
        assert_eq!(read("memory.swap.max"), "500");
        let res: LinuxResources = serde_json::from_str(r#"{"memory":{"swap":500}}"#).unwrap();
        assert!(matches!(
            v2.apply(rel, &res),
            Err(CgroupError::Invalid { .. })
        ));

        // A missing swap file with a finite swap request is an error naming the file.
        std::fs::remove_file(dir.join("memory.swap.max")).unwrap();
        let res: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":1000,"swap":2000}}"#).unwrap();
        let err = v2.apply(rel, &res).unwrap_err();
        assert!(
            err.to_string().contains("vslice/a/memory.swap.max"),
            "{err}"
        );

        let res: LinuxResources = serde_json::from_str(r#"{"unified":{"../x":"1"}}"#).unwrap();
        assert!(matches!(
            v2.apply(rel, &res),
            Err(CgroupError::Invalid { .. })
        ));
    }

    #[test]
    fn v2_create_enables_controllers_top_down() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        // A fake fs cannot emulate the kernel creating files in a new cgroup; pre-create the
        // parent so the walk can read its files, then check what was written where.
        let parent = root.join("vslice");
        std::fs::create_dir(&parent).unwrap();
        std::fs::write(parent.join("cgroup.controllers"), "cpu memory\n").unwrap();
        std::fs::write(parent.join("cgroup.subtree_control"), "memory\n").unwrap();
        let v2 = V2 {
            root: root.to_path_buf(),
        };
        v2.create(Path::new("vslice/web1")).unwrap();
        assert!(root.join("vslice/web1").is_dir());
        // Plain files keep only the last write; the kernel accumulates them.
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+io"
        );
        assert_eq!(
            std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap(),
            "+cpu"
        );
        assert!(!root.join("vslice/web1/cgroup.subtree_control").exists());
    }
}
