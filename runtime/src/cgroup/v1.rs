//! cgroup v1: one hierarchy per mounted controller (or group of co-mounted controllers).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::{
    check_memory_swap, files, mountinfo, Backend, CgroupError, Limit, Usage, FREEZE_TIMEOUT,
};
use crate::util::fs::IoContext;

/// The v1 controllers a slice cgroup is made in. Others (devices, net_cls, ...) are left
/// alone: vslice does not use them, and every extra hierarchy is one more directory to
/// create, join and remove. blkio carries the slice's block I/O limits (crate::disk::blkio).
pub(super) const CONTROLLERS: [&str; 7] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio",
];

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Is `path` the root of a cgroup v1 file system?
fn is_cgroup_fs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP_SUPER_MAGIC)
}

/// Whether the calling thread's mount table may have changed since the last call. proc(5):
/// a poll of /proc/PID/mountinfo reports POLLPRI|POLLERR after a change to the table, and
/// that poll takes the report. One syscall, where checking each hierarchy's mount point is
/// seven statfs per cgroup operation (inspect makes one). The file is tied to the mount
/// namespace it was opened in: a caller in another (the shim unshares its own) opens it
/// again, and it says "changed" whenever it cannot tell.
fn mounts_may_have_changed() -> bool {
    use std::os::unix::fs::MetadataExt;
    static WATCH: std::sync::Mutex<Option<(u64, std::fs::File)>> = std::sync::Mutex::new(None);
    let Ok(ns) = std::fs::metadata("/proc/thread-self/ns/mnt").map(|m| m.ino()) else {
        return true;
    };
    let mut watch = WATCH.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, file)) = watch.as_ref().filter(|(n, _)| *n == ns) {
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            file.as_fd(),
            nix::poll::PollFlags::POLLPRI,
        )];
        return !matches!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
            Ok(0)
        );
    }
    // The thread's own table, as the namespace is the thread's (/proc/self is the leader's).
    *watch = std::fs::File::open("/proc/thread-self/mountinfo")
        .ok()
        .map(|f| (ns, f));
    true
}

pub(crate) struct V1 {
    /// (controller, mount point) for each controller of CONTROLLERS that is mounted.
    /// Co-mounted controllers (cpu,cpuacct) share a mount point.
    mounts: Vec<(&'static str, PathBuf)>,
}

impl V1 {
    /// Find the hierarchies from /proc/self/mountinfo. The layout found is kept, and used
    /// again while the mount table is unchanged, or else while each of its mount points is
    /// still a cgroup file system (one statfs each):
    /// reading the table on every operation cost O(mounts) per call, and the daemon's table
    /// grows with the slices, so `list` went quadratic (841 ms for 1000 slices). A hierarchy
    /// unmounted or replaced by something else is noticed and the table read again.
    pub(super) fn load() -> Result<V1, CgroupError> {
        static LAYOUT: std::sync::Mutex<Vec<(&'static str, PathBuf)>> =
            std::sync::Mutex::new(Vec::new());
        let mut known = LAYOUT.lock().unwrap_or_else(|e| e.into_inner());
        if !known.is_empty()
            && (!mounts_may_have_changed() || known.iter().all(|(_, p)| is_cgroup_fs(p)))
        {
            return Ok(V1 {
                mounts: known.clone(),
            });
        }
        let text = std::fs::read_to_string(MOUNTINFO).ctx("read", MOUNTINFO)?;
        let v1 = V1::from_mounts(&mountinfo::parse(&text));
        if v1.mounts.is_empty() {
            return Err(CgroupError::Unsupported {
                path: PathBuf::from(MOUNTINFO),
                reason: format!("no cgroup v1 hierarchy with any of {CONTROLLERS:?} is mounted"),
            });
        }
        known.clone_from(&v1.mounts);
        Ok(v1)
    }

    pub(super) fn from_mounts(mounts: &[mountinfo::Mount]) -> V1 {
        let mounts = CONTROLLERS
            .iter()
            .filter_map(|c| mountinfo::v1_mount_point(mounts, c).map(|p| (*c, p)))
            .collect();
        V1 { mounts }
    }

    pub(super) fn mount(&self, controller: &str) -> Option<&Path> {
        self.mounts
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, p)| p.as_path())
    }

    /// The cgroup's directory in the hierarchy of `controller`, or an error naming the
    /// cgroup when a limit for an unmounted controller was requested.
    fn need(&self, controller: &str, rel: &Path, what: &str) -> Result<PathBuf, CgroupError> {
        self.mount(controller)
            .map(|m| m.join(rel))
            .ok_or_else(|| CgroupError::Unsupported {
                path: rel.to_path_buf(),
                reason: format!(
                    "{what} requested but the cgroup v1 {controller} controller is not mounted"
                ),
            })
    }

    fn apply_cpu(&self, rel: &Path, res: &LinuxResources) -> Result<(), CgroupError> {
        let Some(cpu) = res.cpu() else { return Ok(()) };
        let shares = cpu.shares().filter(|s| *s != 0);
        let quota = cpu.quota().filter(|q| *q != 0).map(|q| q.max(-1));
        let period = cpu.period().filter(|p| *p != 0);
        if shares.is_some() || quota.is_some() || period.is_some() {
            let dir = self.need("cpu", rel, "cpu shares/quota/period")?;
            if let Some(s) = shares {
                files::write(&dir.join("cpu.shares"), &s.to_string())?;
            }
            // The kernel checks quota/period against the parent's bandwidth on every write, so
            // a shorter period with the old quota can be rejected (EINVAL) although the final
            // pair is fine. If so, write the quota and then the period again (as runc does).
            let period_file = dir.join("cpu.cfs_period_us");
            let mut retry_period = false;
            if let Some(p) = period {
                match files::write(&period_file, &p.to_string()) {
                    Ok(()) => {}
                    Err(e) if quota.is_some() && e.raw_os_error() == Some(libc::EINVAL) => {
                        retry_period = true
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(q) = quota {
                files::write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
            }
            if let (true, Some(p)) = (retry_period, period) {
                files::write(&period_file, &p.to_string())?;
            }
        }
        let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let dir = self.need("cpuset", rel, "cpuset cpus/mems")?;
            if let Some(c) = cpus {
                files::write(&dir.join("cpuset.cpus"), c)?;
            }
            if let Some(m) = mems {
                files::write(&dir.join("cpuset.mems"), m)?;
            }
        }
        Ok(())
    }

    fn apply_memory(&self, rel: &Path, res: &LinuxResources) -> Result<(), CgroupError> {
        let Some(mem) = res.memory() else {
            return Ok(());
        };
        let limit = Limit::from_oci(mem.limit());
        let mut swap = Limit::from_oci(mem.swap());
        if limit.is_none() && swap.is_none() {
            return Ok(());
        }
        check_memory_swap(&rel.to_string_lossy(), limit, swap)?;
        let dir = self.need("memory", rel, "memory limit")?;
        let mem_file = dir.join("memory.limit_in_bytes");
        let memsw_file = dir.join("memory.memsw.limit_in_bytes");
        let have_memsw = memsw_file.exists();
        if !have_memsw {
            if let Some(Limit::Bytes(_)) = swap {
                return Err(CgroupError::Unsupported {
                    path: memsw_file,
                    reason:
                        "a memory+swap limit was requested but this kernel has no swap accounting \
                             (file missing: CONFIG_MEMCG_SWAP off or booted with swapaccount=0)"
                            .into(),
                });
            }
            // Unlimited swap without swap accounting: nothing to write.
            swap = None;
        } else if limit == Some(Limit::Max) && swap.is_none() {
            // Making memory unlimited while memory+swap keeps a finite value would be
            // rejected (memory <= memory+swap); unlimited memory means unlimited total.
            swap = Some(Limit::Max);
        }
        let fmt = |l: Limit| match l {
            Limit::Max => "-1".to_string(),
            Limit::Bytes(n) => n.to_string(),
        };
        match (limit, swap) {
            (Some(l), Some(s)) => {
                // The kernel keeps memory.limit <= memsw.limit at every moment, so the order
                // matters: if the new total is at least the current memory limit, write the
                // total first (raising); otherwise memory first (lowering). With new memory <=
                // new total (checked above) one of the two orders is always valid.
                let cur = files::parse_u64(&mem_file, &files::read(&mem_file)?)?;
                let total_first = match s {
                    Limit::Max => true,
                    Limit::Bytes(s) => s >= cur,
                };
                if total_first {
                    files::write(&memsw_file, &fmt(s))?;
                    files::write(&mem_file, &fmt(l))?;
                } else {
                    files::write(&mem_file, &fmt(l))?;
                    files::write(&memsw_file, &fmt(s))?;
                }
            }
            (Some(l), None) => files::write(&mem_file, &fmt(l))?,
            (None, Some(s)) => files::write(&memsw_file, &fmt(s))?,
            (None, None) => {}
        }
        Ok(())
    }

    fn apply_pids(&self, rel: &Path, res: &LinuxResources) -> Result<(), CgroupError> {
        let Some(pids) = res.pids() else {
            return Ok(());
        };
        let Some(value) = pids_max(pids.limit()) else {
            return Ok(());
        };
        if value == "max" && self.mount("pids").is_none() {
            return Ok(()); // no pids controller: unlimited already
        }
        let dir = self.need("pids", rel, "pids limit")?;
        files::write(&dir.join("pids.max"), &value)
    }
}

/// pids.max for an OCI pids limit: `None` for 0 (not set), "max" for negative.
pub(super) fn pids_max(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        n if n < 0 => Some("max".into()),
        n => Some(n.to_string()),
    }
}

/// Copy a cpuset file from the parent if the child's is empty. A new v1 cpuset cgroup starts
/// with empty cpus and mems, and the kernel refuses to attach tasks to it ("No space left on
/// device") until both are set.
fn inherit_cpuset(parent: &Path, child: &Path, file: &str) -> Result<(), CgroupError> {
    let child_file = child.join(file);
    if !files::read(&child_file)?.trim().is_empty() {
        return Ok(());
    }
    let value = files::read(&parent.join(file))?;
    let value = value.trim();
    if value.is_empty() {
        return Err(CgroupError::Invalid {
            path: parent.display().to_string(),
            reason: format!("{file} is empty in the parent, nothing to inherit"),
        });
    }
    files::write(&child_file, value)
}

impl Backend for V1 {
    fn roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = Vec::new();
        for (_, p) in &self.mounts {
            if !roots.contains(p) {
                roots.push(p.clone());
            }
        }
        roots
    }

    fn create(&self, rel: &Path) -> Result<(), CgroupError> {
        let cpuset = self.mount("cpuset");
        let memory = self.mount("memory");
        for root in self.roots() {
            let mut cur = root.clone();
            for comp in rel.components() {
                let parent = cur.clone();
                cur.push(comp);
                let created = files::mkdir(&cur)?;
                if Some(root.as_path()) == cpuset {
                    // Also for existing levels: repairs a create that was interrupted.
                    inherit_cpuset(&parent, &cur, "cpuset.cpus")?;
                    inherit_cpuset(&parent, &cur, "cpuset.mems")?;
                }
                if created && Some(root.as_path()) == memory {
                    // Hierarchical accounting, so a parent's limit covers its slices. Always on
                    // (and the file read-only in effect) since Linux 5.16; only settable before
                    // the group has children, so best effort on new groups.
                    let _ = files::write(&cur.join("memory.use_hierarchy"), "1");
                }
            }
        }
        Ok(())
    }

    fn apply(&self, rel: &Path, res: &LinuxResources) -> Result<(), CgroupError> {
        if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::Invalid {
                path: rel.display().to_string(),
                reason: "linux.resources.unified needs cgroup v2; this host uses cgroup v1".into(),
            });
        }
        self.apply_cpu(rel, res)?;
        self.apply_memory(rel, res)?;
        self.apply_pids(rel, res)
    }

    fn usage(&self, rel: &Path) -> Result<Usage, CgroupError> {
        // The first counter read also tells whether the cgroup exists (as v2's cpu.stat
        // does): a stat of each hierarchy's directory first cost seven lookups per slice in
        // `list`. The hierarchies are made and removed together (create, destroy).
        let mut u = Usage::default();
        match self.mount("cpuacct") {
            Some(m) => {
                let f = m.join(rel).join("cpuacct.usage");
                u.cpu_usage_ns = files::parse_u64(&f, &files::read(&f)?)?;
            }
            None => {
                if let Some(dir) = self.dirs(rel).into_iter().find(|d| !d.is_dir()) {
                    return Err(crate::util::fs::PathError::new(
                        "read usage of",
                        &dir,
                        std::io::Error::from_raw_os_error(libc::ENOENT),
                    )
                    .into());
                }
            }
        }
        if let Some(m) = self.mount("memory") {
            let dir = m.join(rel);
            u.memory_current = files::read_u64_or_zero(&dir.join("memory.usage_in_bytes"))?;
            u.memory_peak = files::read_u64_or_zero(&dir.join("memory.max_usage_in_bytes"))?;
            let oom = dir.join("memory.oom_control");
            if let Some(text) = files::read_opt(&oom)? {
                // `oom_kill` appeared in Linux 4.13; older kernels report none.
                u.oom_kills = files::keyed(&oom, &text, "oom_kill")?.unwrap_or(0);
            }
        }
        if let Some(m) = self.mount("pids") {
            u.pids_current = files::read_u64_or_zero(&m.join(rel).join("pids.current"))?;
        }
        Ok(u)
    }

    fn kill_at_once(&self, _rel: &Path) -> Result<bool, CgroupError> {
        Ok(false) // v1 has no cgroup.kill
    }

    fn set_frozen(&self, rel: &Path, frozen: bool) -> Result<bool, CgroupError> {
        let Some(m) = self.mount("freezer") else {
            return Ok(false);
        };
        let dir = m.join(rel);
        if !dir.is_dir() {
            return Ok(false);
        }
        let state = dir.join("freezer.state");
        files::write(&state, if frozen { "FROZEN" } else { "THAWED" })?;
        if frozen {
            // The state reads FREEZING until every task in the subtree is frozen.
            let start = Instant::now();
            while start.elapsed() < FREEZE_TIMEOUT {
                match files::read_opt(&state)? {
                    Some(s) if s.trim() == "FROZEN" => break,
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
    #[test]
    fn the_kept_layout_is_checked_against_the_file_systems() {
        assert!(!is_cgroup_fs(Path::new("/proc")));
        if super::super::detect() != super::super::Version::V1 {
            return; // nothing to keep on a v2 host
        }
        let first = V1::load().unwrap();
        let again = V1::load().unwrap();
        assert_eq!(first.mounts, again.mounts);
        assert!(!first.mounts.is_empty());
        assert!(first.mounts.iter().all(|(_, p)| is_cgroup_fs(p)));
    }

    /// In a mount namespace of its own (a test thread's, gone with it): nothing changed is
    /// "unchanged", and a mount and an unmount are each reported by the next look.
    #[test]
    fn a_mount_table_change_is_noticed() {
        std::thread::spawn(|| {
            use nix::mount::{mount, umount2, MntFlags, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mnt");
            // Private: the host's mounts and unmounts no longer reach this table.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            let d = tempfile::tempdir().unwrap();
            assert!(mounts_may_have_changed(), "first look in a new namespace");
            assert!(!mounts_may_have_changed(), "nothing changed");
            mount(
                Some("tmpfs"),
                d.path(),
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
            assert!(mounts_may_have_changed(), "a mount");
            assert!(!mounts_may_have_changed(), "reported once");
            umount2(d.path(), MntFlags::MNT_DETACH).unwrap();
            assert!(mounts_may_have_changed(), "an unmount");
        })
        .join()
        .unwrap();
    }

    use super::*;

    #[test]
    fn comounted_controllers_give_one_root_and_missing_ones_are_skipped() {
        let text = "\
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
";
        let v1 = V1::from_mounts(&mountinfo::parse(text));
        assert_eq!(
            v1.roots(),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                PathBuf::from("/sys/fs/cgroup/memory")
            ]
        );
        assert_eq!(
            v1.dirs(Path::new("vslice/a")),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/vslice/a"),
                PathBuf::from("/sys/fs/cgroup/memory/vslice/a")
            ]
        );
        let err = v1
            .need("pids", Path::new("vslice/a"), "pids limit")
            .unwrap_err();
        assert!(
            err.to_string().contains("vslice/a") && err.to_string().contains("pids"),
            "{err}"
        );
    }

    #[test]
    fn pids_limit_semantics() {
        assert_eq!(pids_max(0), None);
        assert_eq!(pids_max(-1).as_deref(), Some("max"));
        assert_eq!(pids_max(100).as_deref(), Some("100"));
    }
}
