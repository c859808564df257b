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
}
