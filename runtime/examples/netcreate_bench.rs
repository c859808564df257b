//! Networked slice creation for `make bench` (issue 14, "network setup without forks"), as
//! root:
//!
//! * per-slice attach and detach cost of the net layer at 10, 100 and 1000 attached slices
//!   (median of the 10 attaches that bring the count to 10, 100, 1000; capped both ways):
//!   flat means the three are about equal;
//! * create-to-running through the API of a private `vsliced` (own root, cgroup parent,
//!   bridge, subnet and table; removed at the end): bridged slices capped both ways, and
//!   unnetworked slices, one at a time, p50/p99;
//! * crun's `run` of /bin/true on the busybox rootfs in the same run (bench/peers.sh).
//!
//! ```text
//! cargo build --release --bins && cargo run --release --example netcreate_bench -- [N] [SLICES]
//! ```
//! N: API creates per kind (default 100). SLICES: the largest attach count (default 1000).
mod bench_support;
#[path = "../tests/net_support/mod.rs"]
mod net_support;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::percentile_ms;
use net_support::*;
use vslice::client::Client;
use vslice::net::{NetMode, NetSpec, NodeNet};
use vslice::slice::CreateRequest;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// A network namespace held by an fd of this process (no mount, nothing left on exit).
struct NsFd(File);

impl NsFd {
    fn new() -> NsFd {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare net");
            NsFd(File::open("/proc/thread-self/ns/net").expect("open ns"))
        })
        .join()
        .expect("ns thread")
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.0.as_raw_fd()
        ))
    }
}

fn capped() -> NetSpec {
    NetSpec {
        mode: NetMode::Bridge,
        egress_rate: Some(10_000_000),
        ingress_rate: Some(20_000_000),
        ..Default::default()
    }
}

/// Attach cost at 10, 100, 1000 slices, and detach cost at the same counts (going down).
fn attach_flatness(max: usize) {
    let pid = std::process::id();
    let third = (pid % 16) * 16;
    let t = TestNode::new(|n| n.subnet = format!("10.218.{third}.0/20").parse().unwrap());
    let marks: Vec<usize> = [10, 100, 1000, max]
        .into_iter()
        .filter(|&m| m <= max)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut nss = Vec::new();
    let mut attach = Vec::new();
    let spec = capped();
    for k in 0..max {
        let ns = NsFd::new();
        let s = Instant::now();
        t.node
            .attach(&format!("s{k}"), ns.path(), &spec)
            .expect("attach");
        attach.push(ms(s));
        nss.push(ns);
    }
    let mut detach = vec![0.0; max];
    for k in (0..max).rev() {
        let s = Instant::now();
        t.node.detach(&format!("s{k}")).expect("detach");
        detach[k] = ms(s);
    }
    for m in &marks {
        let lo = m.saturating_sub(10);
        let a = attach[lo..*m].to_vec();
        let d = detach[lo..*m].to_vec();
        println!(
            "net attach_ms at {m:4} slices: median={:.2}  detach_ms median={:.2}",
            percentile_ms(&a, 0.5),
            percentile_ms(&d, 0.5)
        );
    }
    let first = percentile_ms(&attach[0..10.min(max)], 0.5);
    let last = percentile_ms(&attach[max.saturating_sub(10)..max], 0.5);
    println!(
        "net attach flatness: cost at {max} / cost at 10 = {:.2} (1.0 is flat)",
        last / first
    );
    for k in 0..max {
        let _ = t.node.release(&format!("s{k}"));
    }
}

// ---- the private daemon ----

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

struct Daemon {
    root: PathBuf,
    parent: String,
    net: NodeNet,
    child: Option<Child>,
}

static CLEANUP: std::sync::Mutex<Option<(u32, PathBuf, String, NodeNet)>> =
    std::sync::Mutex::new(None);

impl Daemon {
    fn start() -> Daemon {
        let pid = std::process::id();
        let images = PathBuf::from(
            std::env::var("VSLICE_TEST_IMAGES")
                .unwrap_or_else(|_| "/tmp/vslice-test-images".into()),
        );
        vslice::image::ensure_busybox(&images, &repo_dir().join("images")).expect("busybox image");
        let root = PathBuf::from(format!("/tmp/vslice-bench-netcreate-{pid}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir");
        std::os::unix::fs::symlink(&images, root.join("images")).expect("link images");
        std::fs::write(
            root.join("vslice.toml"),
            "admin_group = \"vslice-bench-nogroup\"\nlog = \"warn\"\nevents_poll_ms = 500\n",
        )
        .unwrap();
        let tag = format!("{:x}", pid % 0xfffff);
        let mut net = NodeNet::new(root.join("net"));
        net.bridge = format!("vnc{tag}");
        net.nft_table = format!("vslice_nc{tag}");
        net.veth_prefix = format!("n{tag}v");
        net.subnet = format!("10.219.{}.0/20", (pid % 16) * 16).parse().unwrap();
        net.set_global_ip_forward = false;
        let bin = bin_dir();
        let parent = format!("vslice-bench-nc{pid}");
        let log = File::create(root.join("vsliced.log")).unwrap();
        let socket = root.join("api.sock");
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
            .env("VSLICE_BRIDGE", &net.bridge)
            .env("VSLICE_SUBNET", net.subnet.to_string())
            .env("VSLICE_NFT_TABLE", &net.nft_table)
            .env("VSLICE_VETH_PREFIX", &net.veth_prefix)
            .env("VSLICE_IP_FORWARD", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vsliced");
        *CLEANUP.lock().unwrap() = Some((child.id(), root.clone(), parent.clone(), net.clone()));
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(info);
            if let Some((pid, root, parent, net)) =
                CLEANUP.lock().unwrap_or_else(|p| p.into_inner()).take()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                teardown(&root, &parent, &net);
            }
        }));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "vsliced did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            root,
            parent,
            net,
            child: Some(child),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        CLEANUP.lock().unwrap_or_else(|p| p.into_inner()).take();
        teardown(&self.root, &self.parent, &self.net);
    }
}

fn teardown(root: &Path, parent: &str, net: &NodeNet) {
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
    if let Err(e) = net.teardown() {
        eprintln!("netcreate_bench: net teardown: {e}");
    }
    let _ = std::fs::remove_dir_all(root);
}

fn sleeper(name: &str, net: Option<NetSpec>) -> CreateRequest {
    CreateRequest {
        name: name.to_string(),
        start: true,
        init: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done".into(),
        ]),
        net: net.unwrap_or_default(),
        ..Default::default()
    }
}

fn api_creates(n: usize) -> (Vec<f64>, Vec<f64>) {
    let d = Daemon::start();
    let sock = d.root.join("api.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let res = rt.block_on(async {
        let c = Client::new(&sock);
        // Warm-up: the first networked create makes the bridge, IFBs and tables.
        for (name, net) in [("warm0", None), ("warm1", Some(capped()))] {
            c.create(&sleeper(name, net)).await.expect("warm-up create");
            c.destroy(name).await.expect("destroy");
        }
        let (mut bridged, mut plain) = (Vec::new(), Vec::new());
        // Interleaved, so both kinds see the same machine load; all kept running (the
        // bridged ones stay attached: the count grows as in a real node).
        for i in 0..n {
            for (v, net, kind) in [(&mut bridged, Some(capped()), "b"), (&mut plain, None, "p")] {
                let name = format!("{kind}{i}");
                let t = Instant::now();
                let info = c.create(&sleeper(&name, net)).await.expect("create");
                v.push(ms(t));
                assert_eq!(info.status, vslice::slice::Status::Running);
            }
        }
        for i in 0..n {
            for kind in ["b", "p"] {
                c.destroy(&format!("{kind}{i}")).await.expect("destroy");
            }
        }
        (bridged, plain)
    });
    drop(d);
    res
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("netcreate_bench: needs root");
        std::process::exit(1);
    }
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let max: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);

    attach_flatness(max);

    let (bridged, plain) = api_creates(n);
    let (bp50, bp99) = (percentile_ms(&bridged, 0.5), percentile_ms(&bridged, 0.99));
    let (pp50, pp99) = (percentile_ms(&plain, 0.5), percentile_ms(&plain, 0.99));
    println!(
        "api create_to_running_ms bridged+capped: p50={bp50:.1} p99={bp99:.1} n={n} (goal p50<=15 p99<=40: {})",
        if bp50 <= 15.0 && bp99 <= 40.0 { "ok" } else { "MISSED" }
    );
    println!("api create_to_running_ms unnetworked:    p50={pp50:.1} p99={pp99:.1} n={n}");

    // crun's run of /bin/true on the same rootfs, same run.
    let images = PathBuf::from(
        std::env::var("VSLICE_TEST_IMAGES").unwrap_or_else(|_| "/tmp/vslice-test-images".into()),
    );
    let out = Command::new("bash")
        .arg(repo_dir().join("bench/peers.sh"))
        .arg(images.join("busybox/rootfs"))
        .arg(n.min(50).to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("run bench/peers.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines().filter(|l| l.starts_with("peer crun")) {
        println!("{l}");
    }
    let crun = text
        .lines()
        .find(|l| l.starts_with("peer crun run_true_ms "))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("median=")))
        .and_then(|m| m.parse::<f64>().ok());
    if let Some(c) = crun {
        println!(
            "ratio unnetworked_create/crun_run_true = {:.2}  bridged_create/crun_run_true = {:.2}",
            pp50 / c,
            bp50 / c
        );
    }
}
