//! Rendering of the slice's own /proc and /sys views from its cgroup limits and usage (the
//! lxcfs idea). Pure functions over the host file's text and the slice's numbers, so they are
//! unit-tested without a cgroup; [`super::source`] gathers the numbers.

/// What the views need to know about the slice, read fresh (or from a short cache).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Numbers {
    /// Memory limit in bytes (None: unlimited, the host's total is shown).
    pub mem_limit: Option<u64>,
    /// Memory charged to the slice, in bytes.
    pub mem_usage: u64,
    /// Page cache charged to the slice (reclaimable), in bytes.
    pub mem_cache: u64,
    pub active_anon: u64,
    pub inactive_anon: u64,
    pub active_file: u64,
    pub inactive_file: u64,
    pub shmem: u64,
    /// The CPUs the slice may use, host numbering, already cut to ceil(quota/period).
    pub cpus: Vec<u32>,
    /// CPU time the slice has used, in nanoseconds (user, system).
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Seconds since the slice started.
    pub uptime: f64,
    /// Runnable and total tasks in the slice.
    pub running: u32,
    pub tasks: u32,
    /// Exponentially decayed load averages (1, 5, 15 min) of `running`.
    pub load: [f64; 3],
    /// Block I/O the slice's cgroup did, per device (blkio / io.stat).
    pub io: Vec<DeviceIo>,
}

/// One device's I/O by the slice: completed requests and bytes, read and written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    pub rios: u64,
    pub rbytes: u64,
    pub wios: u64,
    pub wbytes: u64,
}

/// Per-device I/O from cgroup v1 blkio.throttle.io_serviced and io_service_bytes
/// ("8:0 Read 12" lines).
pub fn parse_blkio(serviced: &str, bytes: &str) -> Vec<DeviceIo> {
    let mut out: Vec<DeviceIo> = Vec::new();
    for (text, is_bytes) in [(serviced, false), (bytes, true)] {
        for l in text.lines() {
            let mut it = l.split_whitespace();
            let (Some(dev), Some(op), Some(v)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Some((ma, mi)) = dev.split_once(':') else {
                continue;
            };
            let (Ok(major), Ok(minor), Ok(v)) = (ma.parse(), mi.parse(), v.parse::<u64>()) else {
                continue;
            };
            let d = match out
                .iter()
                .position(|d| d.major == major && d.minor == minor)
            {
                Some(i) => &mut out[i],
                None => {
                    out.push(DeviceIo {
                        major,
                        minor,
                        ..Default::default()
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            match (op, is_bytes) {
                ("Read", false) => d.rios = v,
                ("Write", false) => d.wios = v,
                ("Read", true) => d.rbytes = v,
                ("Write", true) => d.wbytes = v,
                _ => {}
            }
        }
    }
    out
}

/// Per-device I/O from cgroup v2 io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...").
pub fn parse_io_stat(text: &str) -> Vec<DeviceIo> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (ma, mi) = it.next()?.split_once(':')?;
            let mut d = DeviceIo {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                ..Default::default()
            };
            for kv in it {
                let (k, v) = kv.split_once('=')?;
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => d.rbytes = v,
                    "wbytes" => d.wbytes = v,
                    "rios" => d.rios = v,
                    "wios" => d.wios = v,
                    _ => {}
                }
            }
            Some(d)
        })
        .collect()
}

/// The CPUs shown: the cpuset (or the host's online CPUs) cut to ceil(quota/period).
pub fn visible_cpus(allowed: &[u32], quota_us: Option<u64>, period_us: u64) -> Vec<u32> {
    let mut n = allowed.len();
    if let Some(q) = quota_us {
        if period_us > 0 && q > 0 {
            n = n.min(q.div_ceil(period_us).max(1) as usize);
        }
    }
    allowed.iter().take(n.max(1)).copied().collect()
}

/// Parse a kernel CPU list ("0-3,8,10-11").
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// /sys/devices/system/cpu/online: the slice's CPUs renumbered from 0 ("0" or "0-N").
pub fn online(n: usize) -> String {
    match n {
        0 | 1 => "0\n".to_string(),
        n => format!("0-{}\n", n - 1),
    }
}

fn kib(bytes: u64) -> u64 {
    bytes / 1024
}

/// /proc/meminfo: the host's file with the memory lines replaced by the slice's numbers.
pub fn meminfo(host: &str, n: &Numbers) -> String {
    let host_total = field_kib(host, "MemTotal").unwrap_or(0);
    let total = n
        .mem_limit
        .map(kib)
        .filter(|&l| l > 0 && (host_total == 0 || l < host_total))
        .unwrap_or(host_total);
    let used = kib(n.mem_usage).min(total);
    let free = total - used;
    let available = (free + kib(n.mem_cache)).min(total);
    let mut out = String::with_capacity(host.len());
    for line in host.lines() {
        let key = line.split(':').next().unwrap_or("");
        let v = match key {
            "MemTotal" => Some(total),
            "MemFree" => Some(free),
            "MemAvailable" => Some(available),
            "Buffers" | "SwapCached" => Some(0),
            "Cached" => Some(kib(n.mem_cache).min(used)),
            "Active" => Some(kib(n.active_anon + n.active_file)),
            "Inactive" => Some(kib(n.inactive_anon + n.inactive_file)),
            "Active(anon)" => Some(kib(n.active_anon)),
            "Inactive(anon)" => Some(kib(n.inactive_anon)),
            "Active(file)" => Some(kib(n.active_file)),
            "Inactive(file)" => Some(kib(n.inactive_file)),
            "Shmem" => Some(kib(n.shmem)),
            // Kernel memory of the host's: free(1) (procps and busybox) adds SReclaimable
            // to buff/cache, which would then exceed the slice's usage.
            "SReclaimable" | "SUnreclaim" | "Slab" | "KReclaimable" => Some(0),
            // The slice gets no swap of its own to look at: /proc/swaps is empty too.
            "SwapTotal" | "SwapFree" => Some(0),
            _ => None,
        };
        match v {
            Some(v) => out.push_str(&format!("{:<16}{:>8} kB\n", format!("{key}:"), v)),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.split(':').next() == Some(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// /proc/cpuinfo: the host's blocks for the slice's CPUs, renumbered from 0.
pub fn cpuinfo(host: &str, cpus: &[u32]) -> String {
    let mut out = String::with_capacity(host.len());
    let mut next = 0u32;
    for block in host.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let id = block
            .lines()
            .find(|l| l.starts_with("processor"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<u32>().ok());
        // Architectures whose cpuinfo has no per-CPU blocks: pass it through.
        let Some(id) = id else {
            out.push_str(block.trim_start_matches('\n'));
            out.push_str("\n\n");
            continue;
        };
        if !cpus.contains(&id) {
            continue;
        }
        for line in block.trim_start_matches('\n').lines() {
            if line.starts_with("processor") {
                out.push_str(&format!("processor\t: {next}\n"));
            } else if line.starts_with("siblings") || line.starts_with("cpu cores") {
                let key = line.split(':').next().unwrap_or("").trim_end();
                out.push_str(&format!("{key}\t: {}\n", cpus.len()));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
        next += 1;
    }
    out
}

/// USER_HZ: /proc/stat and /proc/uptime's idle are in these ticks (100 on every Linux ABI).
const HZ: u64 = 100;

/// /proc/stat: the aggregate and per-CPU lines from the slice's CPU time (spread evenly over
/// its CPUs; idle is what the slice did not use of its CPUs since it started); the other
/// lines (btime, ctxt, processes...) are the host's, so that ps' start times stay right.
pub fn stat(host: &str, n: &Numbers) -> String {
    let ncpu = n.cpus.len().max(1) as u64;
    let user = n.cpu_user_ns / (1_000_000_000 / HZ);
    let system = n.cpu_system_ns / (1_000_000_000 / HZ);
    let total = (n.uptime * HZ as f64) as u64 * ncpu;
    let idle = total.saturating_sub(user + system);
    let line = |name: &str, div: u64| {
        format!(
            "{name} {} 0 {} {} 0 0 0 0 0 0\n",
            user / div,
            system / div,
            idle / div
        )
    };
    let mut out = line("cpu ", 1);
    for i in 0..ncpu {
        out.push_str(&line(&format!("cpu{i}"), ncpu));
    }
    for l in host.lines().filter(|l| !l.starts_with("cpu")) {
        if let Some(rest) = l.strip_prefix("procs_running ") {
            let _ = rest;
            out.push_str(&format!("procs_running {}\n", n.running));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// /proc/uptime: seconds since the slice started, and idle seconds of its CPUs.
pub fn uptime(n: &Numbers) -> String {
    let used = (n.cpu_user_ns + n.cpu_system_ns) as f64 / 1e9;
    let idle = (n.uptime * n.cpus.len().max(1) as f64 - used).max(0.0);
    format!("{:.2} {:.2}\n", n.uptime, idle)
}

/// /proc/loadavg: the slice's decayed runnable counts, runnable/total tasks, and the host's
/// last pid (a host-wide counter the slice cannot use to learn anything new: pids are
/// namespaced).
pub fn loadavg(host: &str, n: &Numbers) -> String {
    let last = host.split_whitespace().nth(4).unwrap_or("0");
    format!(
        "{:.2} {:.2} {:.2} {}/{} {last}\n",
        n.load[0], n.load[1], n.load[2], n.running, n.tasks
    )
}

/// /proc/swaps: the slice has no swap device of its own.
pub fn swaps() -> String {
    "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n".to_string()
}

/// /proc/diskstats: only the devices the slice did I/O on, with the slice's own requests and
/// sectors (from its cgroup); the host's other devices and everybody else's traffic are hidden.
/// Names come from the host's file; times, merges and queue figures are not kept per cgroup
/// and show as 0.
pub fn diskstats(host: &str, n: &Numbers) -> String {
    let mut out = String::new();
    for d in n.io.iter().filter(|d| d.rios + d.wios > 0) {
        let name = host
            .lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                let ma: u32 = it.next()?.parse().ok()?;
                let mi: u32 = it.next()?.parse().ok()?;
                (ma == d.major && mi == d.minor).then(|| it.next().map(str::to_string))?
            })
            .unwrap_or_else(|| format!("dev{}-{}", d.major, d.minor));
        out.push_str(&format!(
            "{:>4} {:>7} {name} {} 0 {} 0 {} 0 {} 0 0 0 0 0 0 0 0 0 0\n",
            d.major,
            d.minor,
            d.rios,
            d.rbytes / 512,
            d.wios,
            d.wbytes / 512
        ));
    }
    out
}

/// Fold one sample of runnable tasks into the 1/5/15-minute averages, `dt` seconds after the
/// previous one (the kernel's formula, continuous in time because samples come on reads).
pub fn decay(load: [f64; 3], running: u32, dt: f64) -> [f64; 3] {
    let mut out = load;
    for (i, period) in [60.0f64, 300.0, 900.0].iter().enumerate() {
        let e = (-dt / period).exp();
        out[i] = load[i] * e + running as f64 * (1.0 - e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:        8000000 kB\nMemFree:         4000000 kB\nMemAvailable:    6000000 kB\nBuffers:           10000 kB\nCached:          1000000 kB\nSwapTotal:       1000000 kB\nSwapFree:        1000000 kB\nHugePages_Total:       0\n";

    #[test]
    fn meminfo_shows_the_limit_and_usage() {
        let n = Numbers {
            mem_limit: Some(512 << 20),
            mem_usage: 100 << 20,
            mem_cache: 20 << 20,
            ..Default::default()
        };
        let out = meminfo(MEMINFO, &n);
        assert_eq!(field_kib(&out, "MemTotal"), Some(524288));
        assert_eq!(field_kib(&out, "MemFree"), Some(524288 - 102400));
        assert_eq!(
            field_kib(&out, "MemAvailable"),
            Some(524288 - 102400 + 20480)
        );
        assert_eq!(field_kib(&out, "SwapTotal"), Some(0));
        assert!(out.contains("HugePages_Total:       0\n"));
    }

    #[test]
    fn meminfo_unlimited_or_above_host_shows_host_total() {
        for limit in [None, Some(u64::MAX / 2)] {
            let n = Numbers {
                mem_limit: limit,
                ..Default::default()
            };
            assert_eq!(field_kib(&meminfo(MEMINFO, &n), "MemTotal"), Some(8000000));
        }
    }

    #[test]
    fn cpus_cut_to_quota() {
        assert_eq!(visible_cpus(&[0, 1, 2, 3], Some(50_000), 100_000), vec![0]);
        assert_eq!(
            visible_cpus(&[0, 1, 2, 3], Some(150_000), 100_000),
            vec![0, 1]
        );
        assert_eq!(visible_cpus(&[2, 3], None, 100_000), vec![2, 3]);
        assert_eq!(parse_cpu_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(online(1), "0\n");
        assert_eq!(online(3), "0-2\n");
    }

    #[test]
    fn cpuinfo_keeps_and_renumbers_the_slice_cpus() {
        let host = "processor\t: 0\nsiblings\t: 4\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n\nprocessor\t: 2\nmodel name\t: X\n\n";
        let out = cpuinfo(host, &[1, 2]);
        assert_eq!(out.matches("processor").count(), 2);
        assert!(out.contains("processor\t: 0\n") && out.contains("processor\t: 1\n"));
        assert!(!out.contains("processor\t: 2\n"));
    }

    #[test]
    fn stat_and_uptime_follow_the_slice() {
        let n = Numbers {
            cpus: vec![0],
            cpu_user_ns: 2_000_000_000,
            cpu_system_ns: 1_000_000_000,
            uptime: 10.0,
            running: 1,
            tasks: 3,
            ..Default::default()
        };
        let s = stat(
            "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nbtime 5\nprocs_running 9\n",
            &n,
        );
        assert!(s.starts_with("cpu  200 0 100 700 "), "{s}");
        assert!(s.contains("cpu0 ") && !s.contains("cpu1 "));
        assert!(s.contains("btime 5\n") && s.contains("procs_running 1\n"));
        assert_eq!(uptime(&n), "10.00 7.00\n");
        assert_eq!(
            loadavg("0.1 0.2 0.3 1/100 4242", &n),
            "0.00 0.00 0.00 1/3 4242\n"
        );
        let l = decay([0.0; 3], 1, 60.0);
        let io = parse_blkio(
            "8:0 Read 3\n8:0 Write 5\n8:0 Total 8\n7:1 Read 0\n7:1 Write 0\nTotal 8\n",
            "8:0 Read 4096\n8:0 Write 10240\nTotal 14336\n",
        );
        assert_eq!(io.len(), 2);
        assert_eq!(
            (io[0].rios, io[0].rbytes, io[0].wios, io[0].wbytes),
            (3, 4096, 5, 10240)
        );
        let v2 = parse_io_stat("8:0 rbytes=4096 wbytes=10240 rios=3 wios=5 dbytes=0 dios=0\n");
        assert_eq!(v2[0], io[0]);
        let n = Numbers {
            io,
            ..Default::default()
        };
        let ds = diskstats("   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n", &n);
        assert_eq!(ds, "   8       0 sda 3 0 8 0 5 0 20 0 0 0 0 0 0 0 0 0 0\n");
        assert!(l[0] > 0.6 && l[0] < 0.7 && l[2] < l[1]);
    }
}
