//! Density figures of issue 14 (`scripts/density-bench.sh` runs this, `make bench` section
//! `density`): N running networked slices (busybox init plus one sleeping service each) under
//! a private `vsliced` with its own bridge, nftables table, veth prefix and subnet:
//!
//! * node memory per slice: MemAvailable before and after, so the kernel's share (netns,
//!   veths, cgroups, page tables) counts;
//! * daemon RSS; PSS of the shims and of the view servers (sum and per slice);
//! * create rate (8 clients) and create latency percentiles;
//! * API latency at N: list (median, p90 of 3), inspect (median of 50) and inspect
//!   throughput with 16 clients;
//! * idle CPU over 30 s of the daemon (and its voluntary context switches: wake-ups), and of
//!   all shims and view servers together;
//! * destroy-all time.
//!
//! ```text
//! scripts/density-bench.sh [BIN_DIR]      # N from BENCH_DENSITY_N (default 1000)
//! ```
//! The names come from the environment the script sets (it cleans up by them even when this
//! program is killed): DENSITY_ROOT, DENSITY_CGROUP, VSLICE_BRIDGE, VSLICE_NFT_TABLE,
//! VSLICE_VETH_PREFIX, VSLICE_SUBNET. Needs root.
mod bench_support;

use bench_support::{mib, ms, percentile};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vslice::client::Client;
use vslice::slice::CreateRequest;

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| {
        eprintln!("density_bench: {k} is not set (run scripts/density-bench.sh)");
        std::process::exit(2)
    })
}

fn env_num(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VSLICE_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn images_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("VSLICE_TEST_IMAGES").unwrap_or_else(|_| "/tmp/vslice-test-images".into()),
    );
    if let Err(e) = vslice::image::ensure_busybox(&dir, &repo_dir().join("images")) {
        eprintln!("density_bench: busybox image: {e}");
        std::process::exit(1);
    }
    dir
}

/// The /proc/meminfo lines that explain a change in MemAvailable.
const MEM_PARTS: [&str; 5] = [
    "MemFree:",
    "Cached:",
    "SReclaimable:",
    "SUnreclaim:",
    "Percpu:",
];

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// (utime + stime) of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn hz() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64
}

/// Threads fed by host-wide event sources (every exec on the node, every tracked connection):
/// their cost follows what else runs on the machine, so they are shown apart.
const HOST_DRIVEN: [&str; 3] = ["vsl-execlog", "vsl-flowevents", "vsl-flowwriter"];

/// CPU ticks of a process's threads: (its own threads, the host-driven ones).
fn thread_ticks(pid: i32) -> (u64, u64) {
    let (mut own, mut host) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
            if HOST_DRIVEN.iter().any(|h| comm.trim_end() == *h) {
                host += ticks;
            } else {
                own += ticks;
            }
        }
    }
    (own, host)
}

/// Voluntary context switches of each of a process's threads (each is a wake-up).
fn wakeups(pid: i32) -> std::collections::HashMap<String, u64> {
    let mut per_thread = std::collections::HashMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let n = s
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0);
            per_thread.insert(format!("{pid}/{}", t.file_name().to_string_lossy()), n);
        }
    }
    per_thread
}

/// Wake-ups between two [`wakeups`] readings, over the threads present in both (a thread that
/// ended in between took its count with it: summing totals once went negative).
fn wakeups_between(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    after
        .iter()
        .filter_map(|(t, n)| before.get(t).map(|b| n.saturating_sub(*b)))
        .sum()
}

fn status_kb(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

fn pss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// Shims and view servers of `root`: (shim pids, view server pids).
fn supervisors(root: &Path) -> (Vec<i32>, Vec<i32>) {
    let root_s = root.to_string_lossy().into_owned();
    let (mut shims, mut views) = (Vec::new(), Vec::new());
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            if !(args.first().is_some_and(|a| a.ends_with(b"vslice-shim"))
                && args.contains(&root_s.as_bytes()))
            {
                continue;
            }
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == vslice::views::SERVER_COMM {
                views.push(pid);
            } else {
                shims.push(pid);
            }
        }
    }
    (shims, views)
}

fn slice(name: &str) -> CreateRequest {
    let mut r = CreateRequest {
        name: name.to_string(),
        start: true,
        // busybox init as PID 1 (its rcS, no console) and one sleeping service beside it.
        init: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "sleep 2147483647 & exec /sbin/init".into(),
        ]),
        ..Default::default()
    };
    r.net.mode = vslice::net::NetMode::Bridge;
    r
}

/// The `p` percentile of `sorted`, in ms (0 when empty).
fn pct(sorted: &[Duration], p: f64) -> f64 {
    percentile(sorted, p).map_or(0.0, ms)
}

/// Run `names` through `op` with `parallel` clients; (latencies, failures).
async fn run_all<F, Fut>(
    socket: &Path,
    names: Vec<String>,
    parallel: usize,
    op: F,
) -> (Vec<Duration>, Vec<String>)
where
    F: Fn(Client, String) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let names = std::sync::Arc::new(std::sync::Mutex::new(names));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (socket, names, op) = (socket.to_path_buf(), names.clone(), op.clone());
        tasks.spawn(async move {
            let (mut lat, mut failed) = (Vec::new(), Vec::new());
            loop {
                let Some(n) = names.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                    return (lat, failed);
                };
                let t = Instant::now();
                match op(Client::new(&socket), n.clone()).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => failed.push(format!("{n}: {e}")),
                }
            }
        });
    }
    let (mut lat, mut failed) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        if let Ok((l, f)) = r {
            lat.extend(l);
            failed.extend(f);
        }
    }
    lat.sort();
    (lat, failed)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("density_bench: needs root");
        std::process::exit(1);
    }
    let n = env_num("BENCH_DENSITY_N", 1000) as usize;
    let idle_secs = env_num("BENCH_DENSITY_IDLE_SECS", 30);
    let parallel = env_num("BENCH_DENSITY_CLIENTS", 8) as usize;
    let root = PathBuf::from(env("DENSITY_ROOT"));
    let parent = env("DENSITY_CGROUP");
    let bin = bin_dir();
    std::fs::create_dir_all(&root).expect("mkdir root");
    let _ = std::os::unix::fs::symlink(images_dir(), root.join("images"));
    std::fs::write(
        root.join("vslice.toml"),
        "admin_group = \"vslice-bench-nogroup\"\nlog = \"warn\"\nssh_socket = \"\"\n",
    )
    .expect("config");
    let socket = root.join("api.sock");
    let log = std::fs::File::create(root.join("vsliced.log")).expect("log");
    let mut daemon: Child = Command::new(bin.join("vsliced"))
        .arg("--config")
        .arg(root.join("vslice.toml"))
        .arg("--root")
        .arg(&root)
        .arg("--socket")
        .arg(&socket)
        .arg("--user-socket")
        .arg("")
        .arg("--cgroup-parent")
        .arg(&parent)
        .arg("--policy-dir")
        .arg(repo_dir().join("policies"))
        .arg("--shim")
        .arg(bin.join("vslice-shim"))
        .env("VSLICE_IP_FORWARD", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn vsliced");
    let dpid = daemon.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline || daemon.try_wait().ok().flatten().is_some() {
            eprintln!(
                "density_bench: vsliced did not start; see {}/vsliced.log",
                root.display()
            );
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "N = {n} networked slices (busybox init + sleep), {parallel} clients, load before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // A first slice brings the bridge, ifbs and tables up: its cost is the node's, not a
    // slice's. Measured from after it.
    rt.block_on(async { Client::new(&socket).create(&slice("d00000")).await })
        .unwrap_or_else(|e| {
            eprintln!("density_bench: first slice: {e}");
            std::process::exit(1)
        });
    std::thread::sleep(Duration::from_secs(2));
    let avail0 = meminfo("MemAvailable:");
    let parts0 = MEM_PARTS.map(meminfo);
    let rss0 = status_kb(dpid, "VmRSS:") * 1024;

    let names: Vec<String> = (1..n).map(|i| format!("d{i:05}")).collect();
    let t = Instant::now();
    let (lat, failed) = rt.block_on(run_all(&socket, names, parallel, |c, name| async move {
        c.create(&slice(&name))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    let create_secs = t.elapsed().as_secs_f64();
    let created = lat.len() + 1;
    println!(
        "create {} slices: {:.1} s, {:.1} slices/s; latency p50 {:.0} ms, p99 {:.0} ms",
        created - 1,
        create_secs,
        (created - 1) as f64 / create_secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    if !failed.is_empty() {
        println!(
            "create FAILED for {} slices; first: {}",
            failed.len(),
            failed[0]
        );
        for f in failed.iter().skip(1).take(4) {
            println!("  {f}");
        }
    }
    std::thread::sleep(Duration::from_secs(5));
    let avail1 = meminfo("MemAvailable:");
    let rss1 = status_kb(dpid, "VmRSS:") * 1024;
    let per = avail0.saturating_sub(avail1) as f64 / (created - 1).max(1) as f64;
    println!(
        "node memory per slice (MemAvailable, kernel included): {:.2} MiB ({:.0} MiB for {})",
        mib(per as u64),
        mib(avail0.saturating_sub(avail1)),
        created - 1
    );
    println!(
        "daemon RSS: {:.1} MiB with 1 slice, {:.1} MiB with {created}",
        mib(rss0),
        mib(rss1)
    );
    let (shims, views) = supervisors(&root);
    let spss: u64 = shims.iter().map(|&p| pss_kb(p)).sum::<u64>() * 1024;
    let vpss: u64 = views.iter().map(|&p| pss_kb(p)).sum::<u64>() * 1024;
    println!(
        "shim PSS: {:.0} KiB per shim ({} shims, {:.1} MiB); view server PSS: {:.0} KiB each ({} servers, {:.1} MiB)",
        spss as f64 / 1024.0 / shims.len().max(1) as f64,
        shims.len(),
        mib(spss),
        vpss as f64 / 1024.0 / views.len().max(1) as f64,
        views.len(),
        mib(vpss)
    );

    // API latency at N.
    let c = vslice::client::BlockingClient::new(&socket).expect("client");
    let mut lists = Vec::new();
    let mut listed = 0;
    for _ in 0..3 {
        let t = Instant::now();
        listed = c.list().map(|l| l.len()).unwrap_or(0);
        lists.push(t.elapsed());
    }
    lists.sort();
    let mut inspects = Vec::new();
    for i in 0..50 {
        let name = format!("d{:05}", (i * 7919) % created);
        let t = Instant::now();
        let _ = c.inspect(&name);
        inspects.push(t.elapsed());
    }
    inspects.sort();
    drop(c);
    println!(
        "list of {listed}: median {:.1} ms, p90 {:.1} ms; inspect: median {:.2} ms, p99 {:.2} ms",
        pct(&lists, 0.5),
        pct(&lists, 0.9),
        pct(&inspects, 0.5),
        pct(&inspects, 0.99)
    );
    let (count, secs) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..16 {
            let c = Client::new(&socket);
            let name = format!("d{:05}", (k * 61) % created);
            tasks.spawn(async move {
                let mut m = 0u64;
                while Instant::now() < deadline {
                    if c.inspect(&name).await.is_ok() {
                        m += 1;
                    }
                }
                m
            });
        }
        let mut total = 0;
        while let Some(r) = tasks.join_next().await {
            total += r.unwrap_or(0);
        }
        (total, t0.elapsed().as_secs_f64())
    });
    println!(
        "inspect throughput, 16 clients: {:.0} req/s",
        count as f64 / secs
    );

    // Idle: nobody calls the API.
    std::thread::sleep(Duration::from_secs(2));
    let (shims, views) = supervisors(&root);
    let others: Vec<i32> = shims.iter().chain(views.iter()).copied().collect();
    let (d0, w0, t0) = (cpu_ticks(dpid), wakeups(dpid), thread_ticks(dpid));
    let o0: u64 = others.iter().map(|&p| cpu_ticks(p)).sum();
    let ow0: std::collections::HashMap<String, u64> =
        others.iter().flat_map(|&p| wakeups(p)).collect();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let (d1, w1, t1) = (cpu_ticks(dpid), wakeups(dpid), thread_ticks(dpid));
    let o1: u64 = others.iter().map(|&p| cpu_ticks(p)).sum();
    let ow1: std::collections::HashMap<String, u64> =
        others.iter().flat_map(|&p| wakeups(p)).collect();
    let of_core = |ticks: u64| ticks as f64 / hz() as f64 / idle_secs as f64 * 100.0;
    println!(
        "idle {idle_secs} s at {created}: daemon CPU {:.2}% of a core ({:.2}% its own threads, {:.2}% the exec/flow log threads fed by the whole host), {:.1} wake-ups/s; {} shims + view servers: {:.2}% of a core, {:.1} wake-ups/s",
        of_core(d1 - d0),
        of_core(t1.0.saturating_sub(t0.0)),
        of_core(t1.1.saturating_sub(t0.1)),
        wakeups_between(&w0, &w1) as f64 / idle_secs as f64,
        others.len(),
        of_core(o1.saturating_sub(o0)),
        wakeups_between(&ow0, &ow1) as f64 / idle_secs as f64
    );

    let names: Vec<String> = rt
        .block_on(async { Client::new(&socket).list().await })
        .map(|l| l.into_iter().map(|i| i.spec.name).collect())
        .unwrap_or_default();
    let total = names.len();
    let t = Instant::now();
    let (_, failed) = rt.block_on(run_all(&socket, names, parallel, |c, name| async move {
        c.destroy(&name)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    println!(
        "destroy all {total}: {:.1} s ({:.1} slices/s){}",
        t.elapsed().as_secs_f64(),
        total as f64 / t.elapsed().as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; {} FAILED, first: {}", failed.len(), failed[0])
        }
    );
    std::thread::sleep(Duration::from_secs(1));
    // Where what is not returned sits: page cache (the slices' logs and state files),
    // reclaimable slab (dentries and inodes of removed cgroups, kernfs nodes) or not.
    let delta = |now: u64, then: u64| (now as f64 - then as f64) / (1 << 20) as f64;
    let parts: Vec<String> = MEM_PARTS
        .iter()
        .zip(parts0)
        .map(|(k, then)| {
            format!(
                "{} {:+.0}",
                k.trim_end_matches(':'),
                delta(meminfo(k), then)
            )
        })
        .collect();
    println!(
        "memory returned: MemAvailable {:+.0} MiB against before the slices ({} MiB)",
        delta(meminfo("MemAvailable:"), avail0),
        parts.join(", ")
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dpid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    // The node network (bridge, ifbs, tables) and the state root: the script's trap.
}
