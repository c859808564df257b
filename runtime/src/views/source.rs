//! Where the numbers of the views come from: the slice's cgroup files (v1 or v2, found among
//! the hierarchies `cgroup::Cgroup::dirs` names) and the host's /proc files the views are
//! derived from. Results are cached for [`CACHE`]: a slice polling /proc/meminfo in a loop then
//! costs one FUSE round trip per read, not a dozen file reads (the ≥ 50k reads/s goal).
use super::render::{self, Numbers};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long one gathering of numbers is reused. Tools sample at ≥ 1 s intervals.
pub const CACHE: Duration = Duration::from_millis(100);

pub struct Source {
    dirs: Vec<PathBuf>,
    /// CLOCK_BOOTTIME seconds at which the slice started.
    started: f64,
    cached: Option<(Instant, Numbers)>,
    last_load: Option<(f64, [f64; 3])>,
}

/// Seconds of CLOCK_BOOTTIME (counts suspend too, like /proc/uptime).
pub fn boottime() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_BOOTTIME exists since Linux 2.6.39.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut t) } != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn read(p: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn num(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat).
fn kv(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').and_then(num))
}

impl Source {
    pub fn new(cgroup: &str, started: f64) -> Source {
        let dirs = crate::cgroup::Cgroup::new(cgroup)
            .dirs()
            .unwrap_or_default();
        Source {
            dirs,
            started,
            cached: None,
            last_load: None,
        }
    }

    /// The first of this cgroup's hierarchies that has `file`.
    fn file(&self, file: &str) -> Option<String> {
        self.dirs.iter().find_map(|d| read(&d.join(file)))
    }

    pub fn numbers(&mut self) -> Numbers {
        if let Some((at, n)) = &self.cached {
            if at.elapsed() < CACHE {
                return n.clone();
            }
        }
        let n = self.gather();
        self.cached = Some((Instant::now(), n.clone()));
        n
    }

    fn gather(&mut self) -> Numbers {
        // Memory: v2 memory.max/current, v1 memory.limit_in_bytes/usage_in_bytes (the v1
        // "unlimited" value is a page-rounded i64::MAX, which render caps at the host's total).
        let mut n = Numbers {
            mem_limit: self
                .file("memory.max")
                .or_else(|| self.file("memory.limit_in_bytes"))
                .and_then(|s| num(&s)),
            ..Default::default()
        };
        n.mem_usage = self
            .file("memory.current")
            .or_else(|| self.file("memory.usage_in_bytes"))
            .and_then(|s| num(&s))
            .unwrap_or(0);
        if let Some(st) = self.file("memory.stat") {
            // v1 has total_* (hierarchical) and plain names; v2 only plain names.
            let get = |k: &str| {
                kv(&st, &format!("total_{k}"))
                    .or_else(|| kv(&st, k))
                    .unwrap_or(0)
            };
            n.mem_cache = kv(&st, "total_cache")
                .or_else(|| kv(&st, "file"))
                .unwrap_or(0);
            n.active_anon = get("active_anon");
            n.inactive_anon = get("inactive_anon");
            n.active_file = get("active_file");
            n.inactive_file = get("inactive_file");
            n.shmem = kv(&st, "total_shmem")
                .or_else(|| kv(&st, "shmem"))
                .unwrap_or(0);
            // Usage includes reclaimable cache the kernel would drop before failing.
            n.mem_cache = n.mem_cache.min(n.mem_usage);
        }
        // CPUs: the cpuset (effective), else the host's online CPUs; cut to the quota.
        let allowed = self
            .file("cpuset.effective_cpus")
            .or_else(|| self.file("cpuset.cpus.effective"))
            .or_else(|| read(std::path::Path::new("/sys/devices/system/cpu/online")))
            .map(|s| render::parse_cpu_list(&s))
            .unwrap_or_default();
        let (quota, period) = match self.file("cpu.max") {
            Some(m) => {
                let mut it = m.split_whitespace();
                let q = it.next().and_then(num);
                let p = it.next().and_then(num).unwrap_or(100_000);
                (q, p)
            }
            None => (
                self.file("cpu.cfs_quota_us")
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .filter(|&q| q > 0)
                    .map(|q| q as u64),
                self.file("cpu.cfs_period_us")
                    .and_then(|s| num(&s))
                    .unwrap_or(100_000),
            ),
        };
        n.cpus = render::visible_cpus(&allowed, quota, period);
        // CPU time: v2 cpu.stat (µs), v1 cpuacct.usage_user/sys (ns).
        if let Some(st) = self.file("cpu.stat").filter(|s| s.contains("usage_usec")) {
            n.cpu_user_ns = kv(&st, "user_usec").unwrap_or(0) * 1000;
            n.cpu_system_ns = kv(&st, "system_usec").unwrap_or(0) * 1000;
        } else {
            n.cpu_user_ns = self
                .file("cpuacct.usage_user")
                .and_then(|s| num(&s))
                .unwrap_or(0);
            n.cpu_system_ns = self
                .file("cpuacct.usage_sys")
                .and_then(|s| num(&s))
                .unwrap_or(0);
        }
        // Block I/O: v2 io.stat, else v1 blkio's throttle counters (the _recursive files
        // include child cgroups). v1 keeps those only for devices with a throttle rule in the
        // cgroup (a bps/iops cap; measured on 6.18): without one the view is empty.
        n.io = match self.file("io.stat") {
            Some(st) => render::parse_io_stat(&st),
            None => {
                let f = |name: &str| {
                    self.file(&format!("{name}_recursive"))
                        .or_else(|| self.file(name))
                        .unwrap_or_default()
                };
                render::parse_blkio(
                    &f("blkio.throttle.io_serviced"),
                    &f("blkio.throttle.io_service_bytes"),
                )
            }
        };
        let now = boottime();
        n.uptime = (now - self.started).max(0.0);
        let (running, tasks) = self.tasks();
        n.running = running;
        n.tasks = tasks;
        let load = match self.last_load {
            Some((at, l)) => render::decay(l, running, (now - at).max(0.0)),
            None => [0.0; 3],
        };
        self.last_load = Some((now, load));
        n.load = load;
        n
    }

    /// Runnable and total tasks: one /proc/<pid>/stat read per process of the slice (cheap
    /// for the process counts slices have; threads are not counted separately).
    fn tasks(&self) -> (u32, u32) {
        let Some(procs) = self.file("cgroup.procs") else {
            return (0, 0);
        };
        let mut running = 0;
        let mut total = 0;
        for pid in procs.lines().filter_map(num) {
            total += 1;
            let stat = read(&PathBuf::from(format!("/proc/{pid}/stat"))).unwrap_or_default();
            // The state follows the last ')' (the command name may contain one).
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.trim_start()) {
                if rest.starts_with('R') {
                    running += 1;
                }
            }
        }
        (running, total)
    }
}
