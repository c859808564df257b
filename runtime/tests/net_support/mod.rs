//! Helpers for the networking tests and the network benchmark (runtime/examples/net_bench.rs):
//! a node network with names of its own, "slices" that are processes in a new user + network
//! namespace whose root is an unprivileged host uid (65534), helper processes killed by PID.
//!
//! Traffic only goes to addresses inside namespaces made here, to the test bridge's gateway
//! and to test-made veths.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vslice::net::{NetMode, NetSpec, NodeNet, SliceNet};

/// Host uid/gid the test slices' root is mapped to.
pub const SLICE_HOST_UID: u32 = 65534;

static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Tests in one binary run one at a time: they measure rates on a 2-core machine.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn need_root() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    for tool in ["ip", "tc", "nft", "nsenter", "setpriv", "unshare"] {
        if !which(tool) {
            panic!("{tool} is missing (apt-get install iproute2 nftables util-linux)");
        }
    }
    true
}

pub fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// A test node network: its own bridge, table, veth prefix, subnet and state dir. Torn down
/// on drop.
pub struct TestNode {
    pub node: NodeNet,
    pub tag: String,
    /// Third octet of the test subnets (10.214.N.0/24 for slices, 10.215.N.0/24 outside).
    pub n: u8,
    _dir: tempfile::TempDir,
}

impl TestNode {
    pub fn new(configure: impl FnOnce(&mut NodeNet)) -> TestNode {
        let c = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{:x}{}", pid % 0xfffff, (b'a' + (c % 26) as u8) as char);
        let n = ((pid % 200) + c % 50 + 1) as u8;
        let dir = tempfile::Builder::new()
            .prefix("vslice-net-test")
            .tempdir()
            .unwrap();
        let mut node = NodeNet::new(dir.path().join("net"));
        node.bridge = format!("vtb{tag}");
        node.nft_table = format!("vslice_t{tag}");
        node.veth_prefix = format!("t{tag}v");
        node.subnet = format!("10.214.{n}.0/24").parse().unwrap();
        node.set_global_ip_forward = false;
        node.dns = Some(vec![]);
        configure(&mut node);
        node.ensure().expect("ensure");
        TestNode {
            node,
            tag,
            n,
            _dir: dir,
        }
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.node.gateway()
    }

    /// Names of every link this node may have made.
    pub fn leftover_links(&self) -> Vec<String> {
        let (o, i) = self.node.ifb_names();
        let mut left = Vec::new();
        for entry in std::fs::read_dir("/sys/class/net").unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name == self.node.bridge
                || name == o
                || name == i
                || name.starts_with(&self.node.veth_prefix)
                || name.starts_with(&format!("vtx{}", self.tag))
            {
                left.push(name);
            }
        }
        left
    }

    pub fn nft_table_exists(&self) -> bool {
        let out = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().last() == Some(self.node.nft_table.as_str()))
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Err(e) = self.node.teardown() {
            eprintln!("teardown failed: {e}");
        }
    }
}

/// A process that is killed (by its PID) and reaped on drop.
pub struct Proc {
    pub child: Option<Child>,
    pub what: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, what: &str) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Proc {
            child: Some(child),
            what: what.into(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Kill, reap, and return what it wrote to stdout (if piped).
    pub fn stop(&mut self) -> String {
        let Some(child) = self.child.take() else {
            return String::new();
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let out = child.wait_with_output().ok();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A stand-in slice: `unshare -U -r -n sleep` run as uid 65534, so its root has
/// CAP_NET_ADMIN over its own network namespace only, like a real slice's root.
pub struct SliceNs {
    pub name: String,
    pub proc: Proc,
}

impl SliceNs {
    pub fn new(name: &str) -> SliceNs {
        let uid = SLICE_HOST_UID.to_string();
        let proc = Proc::spawn(
            Command::new("setpriv")
                .args([
                    "--pdeathsig",
                    "KILL",
                    "--reuid",
                    &uid,
                    "--regid",
                    &uid,
                    "--clear-groups",
                    "--",
                ])
                .args([
                    "unshare",
                    "--user",
                    "--map-root-user",
                    "--net",
                    "--",
                    "sleep",
                    "100000",
                ])
                .stdin(Stdio::null()),
            &format!("slice {name}"),
        );
        let pid = proc.pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Ready once unshare has exec'd sleep (the uid map and namespaces are in place).
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "slice namespace {name} did not come up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        SliceNs {
            name: name.into(),
            proc,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// A command run as the slice's root (user + network namespace; host uid 65534).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid().to_string(), "-U", "-n", "--"])
            .args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run as the slice's root and wait.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run a shell script as the slice's root.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["sh", "-c", script])
    }

    /// Start a long-running process as the slice's root (killed if this process dies).
    pub fn spawn(&self, args: &[&str], what: &str) -> Proc {
        let mut full = vec!["setpriv", "--pdeathsig", "KILL", "--"];
        full.extend_from_slice(args);
        let mut c = self.cmd(&full);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        Proc::spawn(&mut c, what)
    }

    /// Wait until something listens on `port` (tcp or udp) in the slice's namespace.
    pub fn wait_listening(&self, proto: &str, port: u16) {
        wait_listening_in(Some(&self.netns()), proto, port);
    }
}

/// Wait until a socket listens on `port` (in `netns`, or the host).
pub fn wait_listening_in(netns: Option<&std::path::Path>, proto: &str, port: u16) {
    let flag = if proto == "udp" { "-Hlun" } else { "-Hltn" };
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = match netns {
            Some(ns) => Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .args(["--", "ss", flag, &filter])
                .output()
                .unwrap(),
            None => Command::new("ss").args([flag, &filter]).output().unwrap(),
        };
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {proto} port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A host-side process run as uid 65534 (servers the slices talk to).
pub fn host_unprivileged(args: &[&str]) -> Command {
    let uid = SLICE_HOST_UID.to_string();
    let mut c = Command::new("setpriv");
    c.args([
        "--pdeathsig",
        "KILL",
        "--reuid",
        &uid,
        "--regid",
        &uid,
        "--clear-groups",
        "--",
    ]);
    c.args(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

/// A bridge-mode spec.
pub fn bridge_spec() -> NetSpec {
    NetSpec {
        mode: NetMode::Bridge,
        ..Default::default()
    }
}

/// Try a TCP exchange from the slice: returns the server's reply, or None on failure.
pub fn tcp_from_slice(s: &SliceNs, ip: Ipv4Addr, port: u16) -> Option<String> {
    let target = format!("TCP:{ip}:{port},connect-timeout=2");
    let out = s.run(&["socat", "-T", "3", "-", &target]);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Like [`tcp_from_slice`], but tries up to 3 times: right after a policy opens a path, the
/// slice may still hold a failed ARP entry from an earlier blocked attempt, and the kernel
/// then fails the next connect with EHOSTUNREACH.
pub fn tcp_from_slice_retry(s: &SliceNs, ip: Ipv4Addr, port: u16) -> Option<String> {
    for _ in 0..3 {
        if let Some(r) = tcp_from_slice(s, ip, port) {
            return Some(r);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// A TCP server in the slice answering `reply` to every connection.
pub fn tcp_server_in_slice(s: &SliceNs, port: u16, reply: &str) -> Proc {
    let listen = format!("TCP-LISTEN:{port},reuseaddr,fork");
    let sys = format!("SYSTEM:echo {reply}");
    let p = s.spawn(&["socat", &listen, &sys], "tcp server");
    s.wait_listening("tcp", port);
    p
}

/// A TCP server on the host bound to `ip`, run as uid 65534.
pub fn tcp_server_on_host(ip: Ipv4Addr, port: u16, reply: &str) -> Proc {
    let listen = format!("TCP-LISTEN:{port},bind={ip},reuseaddr,fork");
    let sys = format!("SYSTEM:echo {reply}");
    let p = Proc::spawn(
        &mut host_unprivileged(&["socat", &listen, &sys]),
        "host tcp server",
    );
    wait_listening_in(None, "tcp", port);
    p
}

/// Result of an iperf3 run.
#[derive(Debug, Clone, Copy)]
pub struct Iperf {
    /// Receiver-side goodput (TCP payload), bits/s, over the steady-state intervals.
    pub goodput_bps: f64,
}

impl Iperf {
    /// The goodput converted to the Ethernet frame rate the shaper counts: a full-sized
    /// segment carries 1448 payload bytes in a 1514-byte frame (14 Ethernet + 20 IPv4 + 32
    /// TCP with timestamps).
    pub fn wire_bps(&self) -> f64 {
        self.goodput_bps * 1514.0 / 1448.0
    }
}

/// An iperf3 server on the host bound to `ip` (as uid 65534; JSON so that clients get its
/// per-interval receive counts with --get-server-output).
pub fn iperf3_server(ip: Ipv4Addr, port: u16) -> Proc {
    let mut c = host_unprivileged(&[
        "iperf3",
        "-s",
        "-J",
        "-B",
        &ip.to_string(),
        "-p",
        &port.to_string(),
    ]);
    c.stdout(Stdio::null());
    let p = Proc::spawn(&mut c, "iperf3 server");
    wait_listening_in(None, "tcp", port);
    p
}

/// iperf3 client arguments: `secs` measured after 1 s of slow start left out; `reverse`: the
/// server sends (traffic into the slice).
pub fn iperf3_args(server: Ipv4Addr, port: u16, secs: u32, reverse: bool) -> Vec<String> {
    let mut v: Vec<String> = ["iperf3", "-c", &server.to_string(), "-p", &port.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for a in [
        "-t",
        &secs.to_string(),
        "-O",
        "1",
        "-J",
        "--get-server-output",
    ] {
        v.push(a.to_string());
    }
    if reverse {
        v.push("-R".into());
    }
    v
}

/// Run an iperf3 client in the slice against `server:port` (see [`iperf3_args`]).
pub fn iperf3_client(s: &SliceNs, server: Ipv4Addr, port: u16, secs: u32, reverse: bool) -> Iperf {
    let args = iperf3_args(server, port, secs, reverse);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = s.run(&args);
    parse_iperf(&out, reverse)
}

/// The receiver's rate from an iperf3 -J run: the receiver's own per-interval byte counts
/// (the client's intervals with -R, the server's otherwise), leaving out the omitted warm-up
/// and the last interval (the sender's buffers draining after it stopped). iperf3's end
/// summary is not used: when the sender has queued a lot (1 MB is 8 s at 1 Mbit/s) it divides
/// by a duration that does not match the bytes.
pub fn parse_iperf(out: &Output, reverse: bool) -> Iperf {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 output is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if let Some(err) = v.get("error") {
        panic!("iperf3 failed: {err}");
    }
    let intervals = if reverse {
        v.get("intervals")
    } else {
        v.pointer("/server_output_json/intervals")
    };
    let sums: Vec<&serde_json::Value> = intervals
        .and_then(|i| i.as_array())
        .map(|a| a.iter().filter_map(|i| i.get("sum")).collect())
        .unwrap_or_default();
    let measured: Vec<&serde_json::Value> = sums
        .iter()
        .copied()
        .filter(|s| !s.get("omitted").and_then(|o| o.as_bool()).unwrap_or(false))
        .collect();
    let steady = if measured.len() > 2 {
        &measured[..measured.len() - 1]
    } else {
        &measured[..]
    };
    let bytes: f64 = steady
        .iter()
        .filter_map(|s| s.get("bytes").and_then(|b| b.as_f64()))
        .sum();
    let secs: f64 = steady
        .iter()
        .filter_map(|s| s.get("seconds").and_then(|b| b.as_f64()))
        .sum();
    if secs > 0.0 {
        return Iperf {
            goodput_bps: bytes * 8.0 / secs,
        };
    }
    let bps = v
        .pointer("/end/sum_received/bits_per_second")
        .and_then(|x| x.as_f64())
        .expect("iperf3 JSON has end.sum_received.bits_per_second");
    Iperf { goodput_bps: bps }
}

/// Attach a slice namespace with a spec.
pub fn attach(t: &TestNode, s: &SliceNs, spec: &NetSpec) -> SliceNet {
    t.node
        .attach(&s.name, s.netns(), spec)
        .unwrap_or_else(|e| panic!("attach {}: {e}", s.name))
}

/// An "outside" namespace linked to the host by a veth (host side `vtx<tag>`,
/// 10.215.N.1/30; inside 10.215.N.2/30 on eth0), standing in for the rest of the network.
pub struct Outside {
    pub ns: SliceNs,
    pub host_ip: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub host_if: String,
}

impl Outside {
    pub fn new(t: &TestNode) -> Outside {
        let ns = SliceNs::new("outside");
        let host_if = format!("vtx{}", t.tag);
        let host_ip = Ipv4Addr::new(10, 215, t.n, 1);
        let ip = Ipv4Addr::new(10, 215, t.n, 2);
        let nsp = ns.netns().display().to_string();
        run_ok(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &nsp,
            ],
        );
        run_ok(
            "ip",
            &["addr", "add", &format!("{host_ip}/30"), "dev", &host_if],
        );
        run_ok("ip", &["link", "set", "dev", &host_if, "up"]);
        // Forwarding for packets arriving on this test interface only (no host-wide sysctl).
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{host_if}/forwarding"), "1").unwrap();
        let ns_arg = format!("--net={nsp}");
        let addr = format!("{ip}/30");
        for args in [
            ["ip", "addr", "add", addr.as_str(), "dev", "eth0"],
            ["ip", "link", "set", "dev", "eth0", "up"],
            ["ip", "link", "set", "dev", "lo", "up"],
        ] {
            let mut full = vec![ns_arg.as_str(), "--"];
            full.extend(args);
            run_ok("nsenter", &full);
        }
        Outside {
            ns,
            host_ip,
            ip,
            host_if,
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "dev", &self.host_if])
            .output();
    }
}

pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP port unlikely to be in use, per test.
pub fn port(base: u16, t: &TestNode) -> u16 {
    base + u16::from(t.n % 50) * 10
}
