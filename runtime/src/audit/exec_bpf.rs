//! The exec log's eBPF source: a program on the `sched_process_exec` raw tracepoint
//! (bpf/exec.bpf.c, built by build.rs with clang, loaded and CO-RE-relocated by aya) that
//! sends one event per successful execve of a slice's process to a ring buffer. It sees the
//! exec itself, so path, argv, parent and pid inside the slice are never missed however
//! short-lived the process (the proc connector source in execs.rs reads them from /proc
//! afterwards and loses them when the process is gone).
//!
//! Needs: root (CAP_BPF + CAP_PERFMON), kernel BTF (/sys/kernel/btf/vmlinux), the ring buffer
//! (Linux 5.8). Where loading fails, execs.rs falls back to the proc connector and says why.
//!
//! **Outliving the daemon.** With a pin directory (the daemon's: `/sys/fs/bpf/vslice/<parent>`)
//! the attachment and the maps are pinned in the BPF filesystem, so the program keeps
//! recording while the daemon is down (restart, upgrade, crash) and the next daemon resumes
//! the same ring buffer: the execs of the gap are recorded late, with their own times, up to
//! the ring's 8 MiB (about 20,000 execs); beyond, the program counts them as lost. The pins
//! are removed when the collector stops with no slice left to watch ([`BpfExecs::release`]).
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData, PerCpuArray};

use super::bpf_ring::Ring;
use aya::programs::links::FdLink;
use aya::programs::RawTracePoint;
use aya::{Ebpf, EbpfLoader, Pod};

/// The program, relocated to the running kernel at load time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/exec.bpf.o"));

// The layout of `struct event` in exec.bpf.c.
const EVENT_HEADER: usize = 40;
const PATH_BYTES: usize = 256;
const ARGV_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExecBpfError {
    #[error("exec log BPF: {what}: {reason}")]
    Load { what: &'static str, reason: String },
    #[error("exec log BPF: the slices' parent cgroup {path}: {source}")]
    Parent {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn load_err(what: &'static str) -> impl Fn(String) -> ExecBpfError {
    move |reason| ExecBpfError::Load { what, reason }
}

/// `struct config` of exec.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct Config {
    parent_cgid: u64,
    v1_subsys: u32,
    host_pid_level: u32,
}
// SAFETY: plain old data of integer fields, no padding (8 + 4 + 4 bytes).
unsafe impl Pod for Config {}

/// The unified hierarchy in `Config::v1_subsys`.
const UNIFIED: u32 = u32::MAX;

/// One exec, as the kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEvent {
    /// CLOCK_BOOTTIME of the exec.
    pub boot_ns: u64,
    /// The slice's cgroup (its inode number in the attribution hierarchy).
    pub slice_cgid: u64,
    /// Host pid (thread group id) of the process.
    pub pid: u32,
    pub ppid: u32,
    /// The uid on the host (a slice's root is an unprivileged uid there).
    pub uid: u32,
    /// The pid in the slice's pid namespace; None when the process has none of its own.
    pub pid_in_slice: Option<u32>,
    pub path: String,
    pub argv: Vec<String>,
    /// argv was longer than ARGV_BYTES and is cut.
    pub argv_truncated: bool,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Decode one ring buffer record (header, path, then the used bytes of argv).
pub fn decode(b: &[u8]) -> Option<ExecEvent> {
    let argv_len = (u32_at(b, 32)? as usize).min(ARGV_BYTES);
    let argv_full = u32_at(b, 36)? as usize;
    let path = b.get(EVENT_HEADER..EVENT_HEADER + PATH_BYTES)?;
    let path = &path[..path.iter().position(|&c| c == 0).unwrap_or(PATH_BYTES)];
    let argv_start = EVENT_HEADER + PATH_BYTES;
    let argv = b.get(argv_start..argv_start + argv_len)?;
    let ns_pid = u32_at(b, 28)?;
    Some(ExecEvent {
        boot_ns: u64_at(b, 0)?,
        slice_cgid: u64_at(b, 8)?,
        pid: u32_at(b, 16)?,
        ppid: u32_at(b, 20)?,
        uid: u32_at(b, 24)?,
        pid_in_slice: (ns_pid != 0).then_some(ns_pid),
        path: String::from_utf8_lossy(path).into_owned(),
        // NUL-terminated strings; empty arguments are kept (`sh -c ''`).
        argv: match argv.strip_suffix(&[0]).unwrap_or(argv) {
            [] => Vec::new(),
            a => a
                .split(|&c| c == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        },
        argv_truncated: argv_full > argv_len,
    })
}

/// The index of `controller` in css_set.subsys: /proc/cgroups lists the kernel's cgroup
/// subsystems in that order, compiled-in but unmounted ones included.
pub fn subsys_index(proc_cgroups: &str, controller: &str) -> Option<u32> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .position(|l| l.split_whitespace().next() == Some(controller))
        .map(|i| i as u32)
}

/// Our pid namespace's level: NSpid lists one pid per level from the host's down.
fn own_pid_level() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|v| v.split_whitespace().count().saturating_sub(1) as u32)
        })
        .unwrap_or(0)
}

/// The program's objects in a pin directory.
const PIN_LINK: &str = "link";
const PIN_MAPS: [&str; 3] = ["config", "events", "lost"];

/// Our consumer of the events map (see bpf_ring.rs for why not aya's).
fn ring_of(map: Map) -> Result<Ring, ExecBpfError> {
    let Map::RingBuf(data) = map else {
        return Err(load_err("events map")("not a ring buffer".into()));
    };
    let size = data
        .info()
        .map_err(|e| load_err("events map")(e.to_string()))?
        .max_entries() as usize;
    Ring::new(data, size).map_err(|e| load_err("map the events ring")(e.to_string()))
}

/// The loaded, attached program and its ring buffer; detached on drop unless pinned.
pub struct BpfExecs {
    ring: Ring,
    lost: PerCpuArray<MapData, u64>,
    /// Where the slices' cgroups are: an unknown slice cgroup id is looked up here.
    pub parent_dir: PathBuf,
    /// Where the attachment and maps are pinned (None: they live as long as this value).
    pub pin_dir: Option<PathBuf>,
    /// The program was already attached (pinned by an earlier collector) and was resumed.
    pub resumed: bool,
    // Holds the program and its unpinned link: dropping it detaches. None when resumed.
    _ebpf: Option<Ebpf>,
}

impl BpfExecs {
    /// Load and attach the program for the slices under `cgroup_parent` (e.g. `vslice`),
    /// creating the parent cgroup in the attribution hierarchy if it is not there yet (its
    /// id is what the program matches). Returns the source and whether it made the parent.
    pub fn start(
        cgroup_parent: &str,
        pin_dir: Option<&Path>,
    ) -> Result<(BpfExecs, bool), ExecBpfError> {
        let (root, controller) = crate::cgroup::attribution_hierarchy()
            .map_err(|e| load_err("cgroup layout")(e.to_string()))?;
        let v1_subsys = match controller {
            None => UNIFIED,
            Some(c) => {
                let text = std::fs::read_to_string("/proc/cgroups")
                    .map_err(|e| load_err("read /proc/cgroups")(e.to_string()))?;
                subsys_index(&text, c)
                    .ok_or_else(|| load_err("/proc/cgroups")(format!("no {c} controller line")))?
            }
        };
        let parent_dir = root.join(cgroup_parent.trim_matches('/'));
        let created = match std::fs::create_dir(&parent_dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(source) => {
                return Err(ExecBpfError::Parent {
                    path: parent_dir,
                    source,
                })
            }
        };
        let cfg = Config {
            parent_cgid: 0,
            v1_subsys,
            host_pid_level: own_pid_level(),
        };
        let started = match pin_dir {
            Some(pins) if pins.join(PIN_LINK).exists() => Self::resume(&parent_dir, cfg, pins),
            _ => Self::load(&parent_dir, cfg, pin_dir),
        };
        if started.is_err() {
            if let Some(pins) = pin_dir {
                unpin_partial(pins);
            }
            if created {
                let _ = std::fs::remove_dir(&parent_dir);
            }
        }
        started.map(|s| (s, created))
    }

    /// The parent cgroup's id: what the program matches a task's ancestors against.
    fn parent_cgid(parent_dir: &Path) -> Result<u64, ExecBpfError> {
        Ok(std::fs::metadata(parent_dir)
            .map_err(|source| ExecBpfError::Parent {
                path: parent_dir.to_path_buf(),
                source,
            })?
            .ino())
    }

    fn set_config(map: &mut Map, parent_dir: &Path, mut cfg: Config) -> Result<(), ExecBpfError> {
        cfg.parent_cgid = Self::parent_cgid(parent_dir)?;
        let mut array: Array<_, Config> =
            Array::try_from(map).map_err(|e| load_err("config map")(e.to_string()))?;
        array
            .set(0, cfg, 0)
            .map_err(|e| load_err("config map")(e.to_string()))
    }

    fn load(
        parent_dir: &Path,
        cfg: Config,
        pin_dir: Option<&Path>,
    ) -> Result<BpfExecs, ExecBpfError> {
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(|e| load_err("load the object")(e.to_string()))?;
        let cfg_map = ebpf
            .map_mut("config")
            .ok_or_else(|| load_err("config map")("missing".into()))?;
        Self::set_config(cfg_map, parent_dir, cfg)?;
        if let Some(pins) = pin_dir {
            prepare_pin_dir(pins)?;
            for name in PIN_MAPS {
                let map = ebpf
                    .map(name)
                    .ok_or_else(|| load_err("pin maps")(format!("{name} missing")))?;
                map.pin(pins.join(name)).map_err(|e| {
                    load_err("pin maps")(format!("{}: {e}", pins.join(name).display()))
                })?;
            }
        }
        let prog: &mut RawTracePoint = ebpf
            .program_mut("vslice_exec")
            .ok_or_else(|| load_err("program")("vslice_exec missing".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| load_err("program")(e.to_string()))?;
        // The verifier's log is in the error (ProgramError::LoadError).
        prog.load()
            .map_err(|e| load_err("verify the program")(format!("{e:?}")))?;
        let link = prog
            .attach("sched_process_exec")
            .map_err(|e| load_err("attach to sched_process_exec")(e.to_string()))?;
        if let Some(pins) = pin_dir {
            // Pinned last: a pinned link is what tells a later collector to resume.
            let link: FdLink = prog
                .take_link(link)
                .map_err(|e| load_err("pin the link")(e.to_string()))?
                .into();
            link.pin(pins.join(PIN_LINK))
                .map_err(|e| load_err("pin the link")(e.to_string()))?;
        }
        let ring = ebpf
            .take_map("events")
            .ok_or_else(|| load_err("events map")("missing".into()))?;
        let ring = ring_of(ring)?;
        let lost = ebpf
            .take_map("lost")
            .ok_or_else(|| load_err("lost map")("missing".into()))?;
        let lost = PerCpuArray::try_from(lost).map_err(|e| load_err("lost map")(e.to_string()))?;
        Ok(BpfExecs {
            ring,
            lost,
            parent_dir: parent_dir.to_path_buf(),
            pin_dir: pin_dir.map(Path::to_path_buf),
            resumed: false,
            _ebpf: Some(ebpf),
        })
    }

    /// Take over the program an earlier collector pinned: its ring holds what happened since.
    fn resume(parent_dir: &Path, cfg: Config, pins: &Path) -> Result<BpfExecs, ExecBpfError> {
        let pinned = |name: &str| {
            MapData::from_pin(pins.join(name)).map_err(|e| {
                load_err("open a pinned map")(format!("{}: {e}", pins.join(name).display()))
            })
        };
        // The parent cgroup may have been made anew since: its id is set again.
        Self::set_config(&mut Map::Array(pinned("config")?), parent_dir, cfg)?;
        let ring = ring_of(Map::RingBuf(pinned("events")?))?;
        let lost = PerCpuArray::try_from(Map::PerCpuArray(pinned("lost")?))
            .map_err(|e| load_err("lost map")(e.to_string()))?;
        Ok(BpfExecs {
            ring,
            lost,
            parent_dir: parent_dir.to_path_buf(),
            pin_dir: Some(pins.to_path_buf()),
            resumed: true,
            _ebpf: None,
        })
    }

    /// Detach the program for good: remove its pins (the kernel frees the link and maps with
    /// the last reference, which is this value's, dropped here).
    pub fn release(self) {
        if let Some(pins) = &self.pin_dir {
            unpin(pins);
        }
    }

    /// Readable (for poll) when the ring holds events.
    pub fn raw_fd(&self) -> RawFd {
        self.ring.raw_fd()
    }

    /// Hand every queued event to `f`; returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(ExecEvent)) -> usize {
        self.ring.drain(|item| {
            if let Some(ev) = decode(item) {
                f(ev);
            }
        })
    }

    /// Events the program could not queue (ring full) since load, summed over the CPUs.
    pub fn lost(&self) -> u64 {
        self.lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

/// Remove a pin directory made by [`BpfExecs::start`] (nothing if there is none).
pub fn unpin(pins: &Path) {
    for name in std::iter::once(PIN_LINK).chain(PIN_MAPS) {
        let _ = std::fs::remove_file(pins.join(name));
    }
    let _ = std::fs::remove_dir(pins);
    // The daemons' common directory, once no daemon's pins are in it.
    if let Some(common) = pins
        .parent()
        .filter(|p| *p == Path::new("/sys/fs/bpf/vslice"))
    {
        let _ = std::fs::remove_dir(common);
    }
}

/// Make the pin directory, mounting the BPF filesystem at /sys/fs/bpf first if nothing is
/// mounted there (systemd mounts it at boot; a host without systemd may not have it).
fn prepare_pin_dir(pins: &Path) -> Result<(), ExecBpfError> {
    let bpffs = Path::new("/sys/fs/bpf");
    if pins.starts_with(bpffs) && !is_bpffs(bpffs) {
        nix::mount::mount(
            Some("bpf"),
            bpffs,
            Some("bpf"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some("mode=700"),
        )
        .map_err(|e| load_err("mount the BPF filesystem at /sys/fs/bpf")(e.to_string()))?;
    }
    // Maps left by a start that failed before pinning its link.
    unpin_partial(pins);
    std::fs::create_dir_all(pins)
        .map_err(|e| load_err("make the pin directory")(format!("{}: {e}", pins.display())))?;
    Ok(())
}

/// Remove stray pins of an unfinished start (no link pinned).
fn unpin_partial(pins: &Path) {
    if !pins.join(PIN_LINK).exists() {
        unpin(pins);
    }
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == libc::BPF_FS_MAGIC)
}

/// What the collector knows of a slice's cgroup.
#[derive(Debug, Clone, Default)]
pub struct SliceInfo {
    pub name: String,
    /// The slice's uid map (`inside outside count`), read from a process of the slice; empty
    /// until one was readable.
    pub uid_map: Vec<(u64, u64, u64)>,
}

/// Parse a `/proc/PID/uid_map` text.
pub fn parse_id_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut v = l.split_whitespace().map(|x| x.parse::<u64>());
            match (v.next(), v.next(), v.next()) {
                (Some(Ok(i)), Some(Ok(o)), Some(Ok(c))) => Some((i, o, c)),
                _ => None,
            }
        })
        .collect()
}

/// Host uid `uid` through an id map: the id inside, or None when unmapped.
pub fn map_id(map: &[(u64, u64, u64)], uid: u32) -> Option<u64> {
    let u = uid as u64;
    map.iter()
        .find(|(_, outside, count)| u >= *outside && u < outside + count)
        .map(|(inside, outside, _)| inside + (u - outside))
}

/// The slices' cgroups by id (inode number), read from the parent directory when an id is
/// not known yet.
#[derive(Debug, Default)]
pub struct SliceNames {
    by_id: std::collections::HashMap<u64, SliceInfo>,
}

impl SliceNames {
    pub fn lookup(&mut self, parent_dir: &Path, cgid: u64) -> Option<&SliceInfo> {
        if !self.by_id.contains_key(&cgid) {
            self.rescan(parent_dir);
        }
        let info = self.by_id.get_mut(&cgid)?;
        if info.uid_map.is_empty() {
            // The uid map of the slice's user namespace, from the oldest process directly
            // in its cgroup (its init, or an exec'd command): read from the slice's cgroup,
            // not from the exec'd process, which may be gone or in a namespace of its own.
            let procs = std::fs::read_to_string(parent_dir.join(&info.name).join("cgroup.procs"))
                .unwrap_or_default();
            if let Some(pid) = procs
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .min()
            {
                info.uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
                    .map(|t| parse_id_map(&t))
                    .unwrap_or_default();
            }
        }
        Some(info)
    }

    fn rescan(&mut self, parent_dir: &Path) {
        let mut fresh = std::collections::HashMap::new();
        if let Ok(rd) = std::fs::read_dir(parent_dir) {
            for e in rd.flatten() {
                let Ok(md) = e.metadata() else { continue };
                if !md.is_dir() {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                // Keep what is known of a slice still there (its uid map).
                let info = match self.by_id.remove(&md.ino()) {
                    Some(known) if known.name == name => known,
                    _ => SliceInfo {
                        name,
                        uid_map: Vec::new(),
                    },
                };
                fresh.insert(md.ino(), info);
            }
        }
        self.by_id = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(argv: &[u8], full: u32, ns_pid: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&7u64.to_ne_bytes());
        b.extend_from_slice(&99u64.to_ne_bytes());
        for v in [10u32, 9, 100000, ns_pid, argv.len() as u32, full] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let mut path = b"/bin/true".to_vec();
        path.resize(PATH_BYTES, 0);
        b.extend_from_slice(&path);
        b.extend_from_slice(argv);
        b
    }

    #[test]
    fn decodes_an_event() {
        let ev = decode(&record(b"/bin/true\0a b\0\0c\0", 17, 3)).unwrap();
        assert_eq!(ev.boot_ns, 7);
        assert_eq!(ev.slice_cgid, 99);
        assert_eq!((ev.pid, ev.ppid, ev.uid), (10, 9, 100000));
        assert_eq!(ev.pid_in_slice, Some(3));
        assert_eq!(ev.path, "/bin/true");
        assert_eq!(ev.argv, vec!["/bin/true", "a b", "", "c"]);
        assert!(!ev.argv_truncated);
        let cut = decode(&record(b"x\0", 5000, 0)).unwrap();
        assert!(cut.argv_truncated);
        assert_eq!(cut.pid_in_slice, None);
    }

    #[test]
    fn refuses_a_short_record() {
        let r = record(b"abc\0", 4, 1);
        assert!(decode(&r[..r.len() - 2]).is_none());
        assert!(decode(&r[..20]).is_none());
    }

    #[test]
    fn maps_a_host_uid_into_the_slice() {
        let map = parse_id_map("         0  100000000      65536\n  bad line\n");
        assert_eq!(map, vec![(0, 100000000, 65536)]);
        assert_eq!(map_id(&map, 100000000), Some(0));
        assert_eq!(map_id(&map, 100000033), Some(33));
        assert_eq!(map_id(&map, 100065536), None);
        assert_eq!(map_id(&map, 0), None);
        assert_eq!(map_id(&[], 5), None);
    }

    #[test]
    fn finds_the_subsystem_index() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t1\t1\ncpu\t1\t1\t1\npids\t8\t5\t1\n";
        assert_eq!(subsys_index(text, "pids"), Some(2));
        assert_eq!(subsys_index(text, "memory"), None);
    }
}
