//! Figures for the node daemon (`make bench`), measured against a private `vsliced` (own
//! state root `/tmp/vslice-bench-daemon-<pid>`, cgroup parent `vslice-bench-d<pid>`, removed
//! at the end):
//!
//! * inspect throughput over the socket with 16 clients (requests/s);
//! * create-to-running and destroy latency through the API (median, p99);
//! * daemon RSS with 0, 100 and N (default 1000) idle slices, and after M (default 1000)
//!   create/destroy cycles.
//!
//! ```text
//! cargo build --release --bins && cargo run --release --example daemon_bench -- [--slices N] [--cycles M] [--stopped] [--json]
//! ```
//! `--stopped`: the N idle slices are created but not started (lighter on a small machine).
//! Needs root. Binaries: next to the example's directory (`target/<profile>/`), or
//! `$VSLICE_BIN_DIR`. The busybox image: `$VSLICE_TEST_IMAGES` (default
//! /tmp/vslice-test-images), built if missing.
mod bench_support;

use bench_support::{mib, ms, percentile};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vslice::client::Client;
use vslice::slice::CreateRequest;

struct Opts {
    slices: usize,
    cycles: usize,
    stopped: bool,
    json: bool,
    seconds: u64,
}

fn opts() -> Opts {
    let mut o = Opts {
        slices: 1000,
        cycles: 1000,
        stopped: false,
        json: false,
        seconds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> usize {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("daemon_bench: {what} needs a number");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--slices" => o.slices = num("--slices"),
            "--cycles" => o.cycles = num("--cycles"),
            "--seconds" => o.seconds = num("--seconds") as u64,
            "--stopped" => o.stopped = true,
            "--json" => o.json = true,
            _ => {
                eprintln!("usage: daemon_bench [--slices N] [--cycles M] [--seconds S] [--stopped] [--json]");
                std::process::exit(2)
            }
        }
    }
    o
}

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VSLICE_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    if !dir.join("vsliced").is_file() || !dir.join("vslice-shim").is_file() {
        eprintln!("daemon_bench: no vsliced/vslice-shim in {}: run `cargo build --release --bins` (or set VSLICE_BIN_DIR)", dir.display());
        std::process::exit(1);
    }
    dir
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn images_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("VSLICE_TEST_IMAGES").unwrap_or_else(|_| "/tmp/vslice-test-images".into()),
    );
    if let Err(e) = vslice::image::ensure_busybox(&dir, &repo_dir().join("images")) {
        eprintln!("daemon_bench: busybox image: {e}");
        std::process::exit(1);
    }
    dir
}

/// The private daemon; torn down on drop.
struct Bench {
    root: PathBuf,
    socket: PathBuf,
    parent: String,
    child: Option<Child>,
}

impl Bench {
    fn start() -> Bench {
        let pid = std::process::id();
        let root = PathBuf::from(format!("/tmp/vslice-bench-daemon-{pid}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir");
        std::os::unix::fs::symlink(images_dir(), root.join("images")).expect("link images");
        std::fs::write(
            root.join("vslice.toml"),
            "admin_group = \"vslice-bench-nogroup\"\nlog = \"warn\"\nevents_poll_ms = 500\n",
        )
        .unwrap();
        let bin = bin_dir();
        let socket = root.join("api.sock");
        let parent = format!("vslice-bench-d{pid}");
        let log = std::fs::File::create(root.join("vsliced.log")).unwrap();
        let child = Command::new(bin.join("vsliced"))
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vsliced");
        *CLEANUP.lock().unwrap() = Some((child.id(), root.clone(), parent.clone()));
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            if let Some((pid, root, parent)) =
                CLEANUP.lock().unwrap_or_else(|p| p.into_inner()).take()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                eprintln!("daemon_bench: cleaning up {}", root.display());
                teardown(&root, &parent);
            }
        }));
        let b = Bench {
            root,
            socket,
            parent,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&b.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "vsliced did not start; see {}/vsliced.log",
                b.root.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        b
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// CPU time (user + system) the daemon used so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    fn rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }
}

/// What to tear down if the bench panics (panics abort in this project: no unwinding, no
/// Drop), set by [`Bench::start`] and run by the panic hook.
static CLEANUP: std::sync::Mutex<Option<(u32, PathBuf, String)>> = std::sync::Mutex::new(None);

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        CLEANUP.lock().unwrap_or_else(|p| p.into_inner()).take();
        teardown(&self.root, &self.parent);
    }
}

/// Kill the slices' processes, remove their cgroups and the state root.
fn teardown(root: &Path, parent: &str) {
    let root_s = root.to_string_lossy().into_owned();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            if args.first().is_some_and(|a| a.ends_with(b"vslice-shim"))
                && args.contains(&root_s.as_bytes())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let cg = vslice::cgroup::Cgroup::new(parent);
    for _ in 0..50 {
        let pids = cg.pids().unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Ok(dirs) = cg.dirs() {
        for d in dirs {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
    }
    let _ = std::fs::remove_dir_all(root);
}

fn sleeper(name: &str, start: bool) -> CreateRequest {
    CreateRequest {
        name: name.to_string(),
        start,
        // An idle init: sleeps, wakes rarely, exits on SIGTERM.
        init: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done".into(),
        ]),
        ..Default::default()
    }
}

/// The `p` percentile of `sorted` (zero when empty).
fn pctl(sorted: &[Duration], p: f64) -> Duration {
    percentile(sorted, p).unwrap_or(Duration::ZERO)
}

/// Create `names` with `parallel` clients; panics on error.
async fn create_all(socket: &Path, names: Vec<String>, start: bool, parallel: usize) {
    let names = std::sync::Arc::new(std::sync::Mutex::new(names));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (c, names) = (Client::new(socket), names.clone());
        tasks.spawn(async move {
            loop {
                let Some(n) = names.lock().unwrap().pop() else {
                    return;
                };
                c.create(&sleeper(&n, start))
                    .await
                    .unwrap_or_else(|e| panic!("create {n}: {e}"));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

async fn destroy_all(socket: &Path, parallel: usize) {
    let names: Vec<String> = Client::new(socket)
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    let names = std::sync::Arc::new(std::sync::Mutex::new(names));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (c, names) = (Client::new(socket), names.clone());
        tasks.spawn(async move {
            loop {
                let Some(n) = names.lock().unwrap().pop() else {
                    return;
                };
                c.destroy(&n)
                    .await
                    .unwrap_or_else(|e| panic!("destroy {n}: {e}"));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

fn main() {
    let o = opts();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("daemon_bench: needs root");
        std::process::exit(1);
    }
    let b = Bench::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let sock = b.socket.clone();
    let mut report = serde_json::Map::new();
    let mut say = |key: &str, value: serde_json::Value, line: String| {
        if !o.json {
            println!("{line}");
        }
        report.insert(key.to_string(), value);
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    say(
        "cpus",
        cpus.into(),
        format!("vsliced on {cpus} CPUs, state root {}", b.root.display()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let rss_empty = b.rss();
    say(
        "rss_empty_bytes",
        rss_empty.into(),
        format!(
            "daemon RSS, no slices:                    {:8.1} MiB",
            mib(rss_empty)
        ),
    );

    // Inspect throughput: 16 clients, each its own keep-alive connection.
    rt.block_on(async {
        Client::new(&sock)
            .create(&sleeper("probe", true))
            .await
            .expect("create probe");
    });
    let (count, secs) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(o.seconds);
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let c = Client::new(&sock);
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    c.inspect("probe").await.expect("inspect");
                    n += 1;
                }
                n
            });
        }
        let mut total = 0;
        while let Some(r) = tasks.join_next().await {
            total += r.unwrap();
        }
        (total, t0.elapsed().as_secs_f64())
    });
    let rps = count as f64 / secs;
    say(
        "inspect_rps_16_clients",
        rps.round().into(),
        format!(
            "inspect throughput, 16 clients:           {rps:8.0} req/s ({count} in {secs:.1} s)"
        ),
    );

    // Create-to-running and destroy latency, one at a time.
    let (create_lat, destroy_lat) = rt.block_on(async {
        let c = Client::new(&sock);
        let (mut cl, mut dl) = (Vec::new(), Vec::new());
        for i in 0..100 {
            let n = format!("lat{i}");
            let t = Instant::now();
            let info = c.create(&sleeper(&n, true)).await.expect("create");
            cl.push(t.elapsed());
            assert_eq!(info.status, vslice::slice::Status::Running);
            let t = Instant::now();
            c.destroy(&n).await.expect("destroy");
            dl.push(t.elapsed());
        }
        cl.sort();
        dl.sort();
        (cl, dl)
    });
    let (cm, cp) = (pctl(&create_lat, 0.5), pctl(&create_lat, 0.99));
    let (dm, dp) = (pctl(&destroy_lat, 0.5), pctl(&destroy_lat, 0.99));
    say(
        "create_to_running_ms",
        serde_json::json!({"median": ms(cm), "p99": ms(cp)}),
        format!(
            "create-to-running latency (100):          median {:6.1} ms   p99 {:6.1} ms",
            ms(cm),
            ms(cp)
        ),
    );
    say(
        "destroy_ms",
        serde_json::json!({"median": ms(dm), "p99": ms(dp)}),
        format!(
            "destroy latency (100, running slices):    median {:6.1} ms   p99 {:6.1} ms",
            ms(dm),
            ms(dp)
        ),
    );

    // RSS with idle slices.
    rt.block_on(async {
        Client::new(&sock)
            .destroy("probe")
            .await
            .expect("destroy probe")
    });
    let kind = if o.stopped {
        "stopped (created, not started)"
    } else {
        "running, idle"
    };
    let mut made = 0;
    for target in [100, o.slices] {
        if target <= made {
            continue;
        }
        let t = Instant::now();
        rt.block_on(create_all(
            &sock,
            (made..target).map(|i| format!("idle{i}")).collect(),
            !o.stopped,
            8,
        ));
        made = target;
        std::thread::sleep(Duration::from_secs(2)); // a few event polls
        let rss = b.rss();
        say(
            &format!("rss_{target}_idle_bytes"),
            rss.into(),
            format!("daemon RSS, {target:4} idle slices:           {:8.1} MiB   ({kind}; created in {:.1} s)", mib(rss), t.elapsed().as_secs_f64()),
        );
        let (c0, t0) = (b.cpu(), Instant::now());
        std::thread::sleep(Duration::from_secs(5));
        let idle_cpu = (b.cpu() - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
        say(
            &format!("idle_cpu_{target}_percent"),
            idle_cpu.into(),
            format!("  daemon CPU while idle, {target} slices:      {idle_cpu:8.1} % of a core"),
        );
        let t = Instant::now();
        rt.block_on(async { Client::new(&sock).list().await.expect("list") });
        say(
            &format!("list_{target}_ms"),
            ms(t.elapsed()).into(),
            format!(
                "  list of {target} slices:                   {:8.1} ms",
                ms(t.elapsed())
            ),
        );
    }
    let t = Instant::now();
    rt.block_on(destroy_all(&sock, 8));
    say(
        "destroy_all_s",
        t.elapsed().as_secs_f64().into(),
        format!(
            "  destroyed {made} slices in {:.1} s",
            t.elapsed().as_secs_f64()
        ),
    );
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = b.rss();

    // Create/destroy cycles: the daemon must not grow.
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let per = o.cycles.div_ceil(8);
        for w in 0..8 {
            let c = Client::new(&sock);
            tasks.spawn(async move {
                for i in 0..per {
                    let n = format!("cy{w}-{i}");
                    c.create(&sleeper(&n, true))
                        .await
                        .unwrap_or_else(|e| panic!("create {n}: {e}"));
                    c.destroy(&n)
                        .await
                        .unwrap_or_else(|e| panic!("destroy {n}: {e}"));
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    });
    let cycles = o.cycles.div_ceil(8) * 8;
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = b.rss();
    say(
        "cycles",
        cycles.into(),
        format!(
            "{cycles} create/destroy cycles (8 clients):  {:.1} s, {:.0} cycles/s",
            t.elapsed().as_secs_f64(),
            cycles as f64 / t.elapsed().as_secs_f64()
        ),
    );
    say(
        "rss_before_cycles_bytes",
        rss_before.into(),
        format!(
            "daemon RSS before the cycles:             {:8.1} MiB",
            mib(rss_before)
        ),
    );
    say(
        "rss_after_cycles_bytes",
        rss_after.into(),
        format!(
            "daemon RSS after the cycles:              {:8.1} MiB   ({:+.1} MiB)",
            mib(rss_after),
            mib(rss_after) - mib(rss_before)
        ),
    );
    if o.json {
        println!("{}", serde_json::Value::Object(report));
    }
}
