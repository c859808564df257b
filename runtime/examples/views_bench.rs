//! `make bench` figure for the slice views (views/mod.rs): /proc/meminfo reads per second
//! through a view server (goal ≥ 50k/s), and the server's CPU time per read.
//!
//! Measured from the host on the server's own mount (in a private mount namespace of this
//! process), one open+read+close per iteration: the same FUSE round trips a reader inside a
//! slice makes (the slice's bind mount adds no per-read work). Needs root and /dev/fuse.
use std::io::Read;
use std::time::{Duration, Instant};

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn main() {
    let pid = std::process::id();
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / rprivate");
    let dir = std::path::PathBuf::from(format!("/tmp/vslice-bench-views-{pid}"));
    let cfg = vslice::views::Config {
        // No such cgroup: the numbers fall back to the host's; the read path is the same.
        cgroup: format!("vslice-bench-views-{pid}"),
        started: vslice::views::source::boottime(),
        dir: dir.clone(),
    };
    let server = vslice::views::spawn(&cfg).expect("start the view server");
    let file = dir.join("meminfo");
    let mut buf = Vec::with_capacity(8192);
    let cpu0 = cpu_ticks(server.as_raw());
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        buf.clear();
        let mut f = std::fs::File::open(&file).expect("open meminfo view");
        f.read_to_end(&mut buf).expect("read meminfo view");
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(server.as_raw()) - cpu0) as f64 / 100.0;
    println!(
        "views: /proc/meminfo view reads: {:.0}/s (one reader, {} bytes each; goal >= 50000/s); view server CPU {:.0}% of one core",
        n as f64 / secs,
        buf.len(),
        cpu / secs * 100.0
    );
    let _ = nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(server, None);
    let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&dir);
    many(pid, 100);
}

/// `n` view servers (one per slice, as shims run them), each read in a loop by its own
/// reader thread at once: total reads/s, the servers' CPU together, and their memory.
fn many(pid: u32, n: usize) {
    // Servers first: spawn forks and wants a single-threaded caller.
    let mut servers = Vec::new();
    for i in 0..n {
        let dir = std::path::PathBuf::from(format!("/tmp/vslice-bench-views-{pid}-{i}"));
        let cfg = vslice::views::Config {
            cgroup: format!("vslice-bench-views-{pid}"),
            started: vslice::views::source::boottime(),
            dir: dir.clone(),
        };
        let s = vslice::views::spawn(&cfg).expect("start a view server");
        servers.push((s, dir));
    }
    let cpu = |servers: &[(nix::unistd::Pid, std::path::PathBuf)]| -> u64 {
        servers.iter().map(|(s, _)| cpu_ticks(s.as_raw())).sum()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cpu0 = cpu(&servers);
    let start = Instant::now();
    let readers: Vec<_> = servers
        .iter()
        .map(|(_, dir)| {
            let file = dir.join("meminfo");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::with_capacity(8192);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    buf.clear();
                    if let Ok(mut f) = std::fs::File::open(&file) {
                        if f.read_to_end(&mut buf).is_ok() {
                            n += 1;
                        }
                    }
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let secs = start.elapsed().as_secs_f64();
    let cpu_s = (cpu(&servers) - cpu0) as f64 / 100.0;
    let rss_kib: u64 = servers
        .iter()
        .map(|(s, _)| {
            std::fs::read_to_string(format!("/proc/{}/smaps_rollup", s.as_raw()))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("Pss:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                })
                .unwrap_or(0)
        })
        .sum();
    println!(
        "views: {n} view servers each read in a loop by its own reader: {:.0} reads/s in total, servers' CPU {:.2} cores ({:.1} us per read) on {} host CPUs; servers' Pss {} KiB total ({} KiB each)",
        reads as f64 / secs,
        cpu_s / secs,
        if reads > 0 { cpu_s * 1e6 / reads as f64 } else { 0.0 },
        vslice::views::cpus::available().len(),
        rss_kib,
        rss_kib / n.max(1) as u64
    );
    for (s, dir) in servers {
        let _ = nix::sys::signal::kill(s, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(s, None);
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&dir);
    }
}
