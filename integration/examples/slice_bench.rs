//! Figures for the slice sandbox (issue "Slice sandbox core"), printed by `make bench`:
//! create-and-start latency to a running init (median, p99 over N slices, all kept running),
//! exec latency of /bin/true into a running slice, shim PSS with N slices running, and the
//! same run's crun/runc `run` of /bin/true on the same busybox rootfs (bench/peers.sh) as ratios.
//!
//!     cargo run --release -p vslice-integration --example slice_bench -- [N]
use std::time::Instant;
use vslice_integration::{repo_dir, Env};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    (percentile(&v, 50.0), percentile(&v, 99.0))
}

fn pss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let env = Env::new();
    // Warm-up (page cache, first cgroup creation), not timed.
    let w = env.name("warm");
    env.ok(&["create", &w]);
    env.ok(&["rm", &w]);

    let mut start_ms = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = env.name(&format!("b{i}"));
        let t = Instant::now();
        env.ok(&["create", &name, "--memory", "64M", "--pids", "64"]);
        start_ms.push(t.elapsed().as_secs_f64() * 1e3);
        names.push(name);
    }
    let (start_med, start_p99) = stats(start_ms);
    println!("slice create_start_ms median={start_med:.1} p99={start_p99:.1} n={n}");

    let mut exec_ms = Vec::with_capacity(n);
    for name in &names {
        let t = Instant::now();
        env.ok(&["exec", name, "--", "/bin/true"]);
        exec_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (exec_med, exec_p99) = stats(exec_ms);
    println!("slice exec_true_ms median={exec_med:.1} p99={exec_p99:.1} n={n}");

    let mut pss = Vec::new();
    for name in &names {
        if let Some(kib) = env.inspect(name)["shim_pid"]
            .as_i64()
            .and_then(|p| pss_kib(p as i32))
        {
            pss.push(kib as f64);
        }
    }
    let (pss_med, pss_max) = stats(pss.clone());
    println!(
        "slice shim_pss_kib median={pss_med:.0} max={pss_max:.0} slices_running={} target_kib=1024 {}",
        pss.len(),
        if pss_med < 1024.0 { "ok" } else { "OVER-TARGET" }
    );
    for name in &names {
        env.ok(&["rm", name]);
    }

    // Peers on the same rootfs, same run.
    let rootfs = env.root.join("images/busybox/rootfs");
    let out = std::process::Command::new("bash")
        .arg(repo_dir().join("bench/peers.sh"))
        .arg(&rootfs)
        .arg(n.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run bench/peers.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let median = |peer: &str, metric: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("peer {peer} {metric} ")))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("median="))?
            .parse()
            .ok()
    };
    for (peer, metric) in [
        ("crun", "run_true_ms"),
        ("crun", "run_true_userns_ms"),
        ("runc", "run_true_ms"),
        ("runc", "run_true_userns_ms"),
    ] {
        if let Some(m) = median(peer, metric) {
            println!(
                "ratio slice_create_start/{peer}_{metric} = {:.2} ({})",
                start_med / m,
                if start_med <= m {
                    "slice start is no slower"
                } else {
                    "slice start is slower"
                }
            );
        }
    }
}
