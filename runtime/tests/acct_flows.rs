//! The flow log against the real kernel (as root): slices make TCP and UDP flows to a test
//! host in a network namespace made here; complaints (remote address, port, time) name the
//! right slice through NAT and a port forward; spoofed traffic is not attributed to the slice
//! whose address it forges; a slice's root cannot stop or alter the records; flows open while
//! the collector was down are recorded when it comes back.
//!
//! Slices: `VSLICE_ACCT_SLICES` (default 24, at most 200).
mod net_support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_support::*;
use vslice::audit::flows::{who, FlowCollector, FlowConfig, WhoQuery};
use vslice::audit::{time, AuditLog, DaemonRecord, Entry};
use vslice::net::{PortForward, Proto};
use vslice::proto::accounting::WhoAnswer;

/// A TCP and UDP responder on ports `base..base+n` in the outside namespace.
const RESPONDER: &str = r#"
import socket, selectors, sys
base, n = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
for p in range(base, base + n):
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", p)); t.listen(64); sel.register(t, selectors.EVENT_READ, "t")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", p)); sel.register(u, selectors.EVENT_READ, "u")
while True:
    for key, _ in sel.select():
        s = key.fileobj
        try:
            if key.data == "t":
                c, _ = s.accept(); c.sendall(b"hi\n"); c.close()
            else:
                d, a = s.recvfrom(2048); s.sendto(b"hi\n", a)
        except OSError:
            pass
"#;

fn need_tools() -> bool {
    if !need_root() {
        return false;
    }
    for tool in ["socat", "python3"] {
        assert!(which(tool), "{tool} is missing (see deps/packages.txt)");
    }
    true
}

struct Collecting {
    collector: FlowCollector,
    control: Arc<Mutex<AuditLog>>,
    audit_dir: std::path::PathBuf,
}

fn collect(t: &TestNode, audit_dir: &Path) -> Collecting {
    let (control, _) = AuditLog::open(audit_dir, 1 << 20).unwrap();
    let control = Arc::new(Mutex::new(control));
    let sink = control.clone();
    let mut cfg = FlowConfig::new(
        audit_dir.to_path_buf(),
        t.node.state_dir.clone(),
        &t.node.nft_table,
    );
    cfg.dump_interval = Duration::from_secs(2);
    cfg.reserve_bytes = 0;
    let collector = FlowCollector::start(
        cfg,
        Box::new(move |event, detail| {
            let mut log = sink.lock().unwrap();
            log.append(Entry::Daemon(DaemonRecord {
                event: event.into(),
                pid: std::process::id(),
                version: "test".into(),
                slice: None,
                detail: Some(detail),
            }))
            .unwrap();
        }),
    )
    .unwrap();
    // No wait: start() returns once the event subscription is in place.
    Collecting {
        collector,
        control,
        audit_dir: audit_dir.to_path_buf(),
    }
}

fn ask(audit_dir: &Path, remote: Ipv4Addr, port: u16, proto: &str, at: i64) -> WhoAnswer {
    who(
        audit_dir,
        &WhoQuery {
            remote: remote.to_string(),
            port: Some(port),
            proto: Some(proto.into()),
            at_ms: at,
            window_ms: 60_000,
            slack_ms: 5_000,
        },
    )
    .unwrap()
}

/// Ask until the answer has a flow (records are written as conntrack reports them).
fn ask_until(
    audit_dir: &Path,
    remote: Ipv4Addr,
    port: u16,
    proto: &str,
    at: i64,
    ok: impl Fn(&WhoAnswer) -> bool,
) -> WhoAnswer {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = ask(audit_dir, remote, port, proto, at);
        if ok(&a) || Instant::now() > deadline {
            return a;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn udp_from_slice(s: &SliceNs, ip: Ipv4Addr, port: u16) -> Option<String> {
    let out = s.sh(&format!("echo ping | socat -T 2 - UDP:{ip}:{port}"));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[test]
fn complaints_name_the_right_slice_through_nat_and_port_forwards() {
    if !need_tools() {
        return;
    }
    let _g = serial();
    let n: usize = std::env::var("VSLICE_ACCT_SLICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
        .clamp(2, 200);
    let t = TestNode::new(|_| {});
    let out = Outside::new(&t);
    let base = 20000u16;
    let _resp = out.ns.spawn(
        &[
            "python3",
            "-c",
            RESPONDER,
            &base.to_string(),
            &n.to_string(),
        ],
        "responder",
    );
    wait_listening_in(Some(&out.ns.netns()), "tcp", base + n as u16 - 1);
    let dir = tempfile::Builder::new()
        .prefix("vslice-test-acct")
        .tempdir()
        .unwrap();
    let audit_dir = dir.path().join("audit");
    let mut c = collect(&t, &audit_dir);

    let hport = port(21500, &t);
    let mut slices = Vec::new();
    for i in 0..n {
        let s = SliceNs::new(&format!("acct{i}"));
        let mut spec = bridge_spec();
        if i == 0 {
            spec.ports.push(PortForward {
                host_port: hport,
                slice_port: 80,
                proto: Proto::Tcp,
            });
        }
        let net = attach(&t, &s, &spec);
        slices.push((s, net));
    }
    let _srv = tcp_server_in_slice(&slices[0].0, 80, "pf");

    // Each slice: one TCP and one UDP flow to its own port on the outside host.
    let mut times = Vec::new();
    for (i, (s, _)) in slices.iter().enumerate() {
        let p = base + i as u16;
        assert_eq!(
            tcp_from_slice_retry(s, out.ip, p).as_deref(),
            Some("hi"),
            "tcp from {}",
            s.name
        );
        assert_eq!(
            udp_from_slice(s, out.ip, p).as_deref(),
            Some("hi"),
            "udp from {}",
            s.name
        );
        times.push(time::now_millis());
    }
    // Inbound through the port forward: the outside host connects to the host's address.
    let target = format!("TCP:{}:{hport},connect-timeout=2", out.host_ip);
    let r = out.ns.run(&["socat", "-T", "3", "-", &target]);
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "pf");
    let t_pf = time::now_millis();

    let started = Instant::now();
    for (i, (s, net)) in slices.iter().enumerate() {
        let p = base + i as u16;
        for proto in ["tcp", "udp"] {
            let a = ask_until(&audit_dir, out.ip, p, proto, times[i], |a| {
                !a.flows.is_empty()
            });
            assert_eq!(a.slices, vec![s.name.clone()], "{proto} port {p}: {a:#?}");
            let f = &a.flows[0];
            assert_eq!(f.direction, "out");
            assert_eq!(Some(&f.veth), net.host_veth.as_ref());
            assert_eq!(f.slice_addr, net.address.unwrap().to_string());
            // NAT: the outside host saw the host's address on its side.
            assert_eq!(f.public_addr, out.host_ip.to_string(), "{f:#?}");
            assert!(!a.lossy);
        }
    }
    let answer_ms = started.elapsed().as_millis() as f64 / (2 * n) as f64;
    eprintln!(
        "acct: {n} slices, {} complaints, {answer_ms:.1} ms per answer",
        2 * n
    );
    // The same complaint an hour earlier names nobody.
    let a = ask(&audit_dir, out.ip, base, "tcp", times[0] - 3_600_000);
    assert!(a.flows.is_empty(), "{a:#?}");

    // The port forward: the remote is the connecting host, the port the public one.
    let a = ask_until(&audit_dir, out.ip, hport, "tcp", t_pf, |a| {
        a.flows.iter().any(|f| f.direction == "in")
    });
    assert_eq!(a.slices, vec![slices[0].0.name.clone()], "{a:#?}");
    let f = a.flows.iter().find(|f| f.direction == "in").unwrap();
    assert_eq!(f.public_addr, out.host_ip.to_string());
    assert_eq!(f.public_port, Some(hport));
    assert_eq!(f.slice_port, Some(80));

    // Byte counts arrive with the periodic dump (or the end of the flow).
    let a = ask_until(&audit_dir, out.ip, base + 1, "udp", times[1], |a| {
        a.flows.iter().any(|f| f.bytes_from_slice.unwrap_or(0) > 0)
    });
    assert!(
        a.flows.iter().any(|f| f.bytes_from_slice.unwrap_or(0) > 0),
        "no byte counts: {a:#?}"
    );

    c.collector.stop();
    assert_eq!(
        c.collector
            .stats
            .overruns
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(c.control);
    let rep = vslice::audit::verify(&c.audit_dir, None).unwrap();
    assert!(rep.ok, "{rep:#?}");
}

#[test]
fn spoofing_tampering_flooding_and_restarts_do_not_hide_flows() {
    if !need_tools() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let out = Outside::new(&t);
    let base = 20000u16;
    let _resp = out.ns.spawn(
        &["python3", "-c", RESPONDER, &base.to_string(), "8"],
        "responder",
    );
    wait_listening_in(Some(&out.ns.netns()), "tcp", base + 7);
    let dir = tempfile::Builder::new()
        .prefix("vslice-test-acct")
        .tempdir()
        .unwrap();
    let audit_dir = dir.path().join("audit");
    let mut c = collect(&t, &audit_dir);
    let a = SliceNs::new("spoofer");
    let b = SliceNs::new("victim");
    let na = attach(&t, &a, &bridge_spec());
    let nb = attach(&t, &b, &bridge_spec());
    let ipb = nb.address.unwrap();

    // The spoofer sends with the victim's address as source (TCP and UDP).
    let r = a.run(&["ip", "addr", "add", &format!("{ipb}/32"), "dev", "eth0"]);
    assert!(r.status.success());
    let spoofed_before = t.node.stats("spoofer").unwrap().dropped_spoofed;
    let _ = a.sh(&format!(
        "echo x | socat -T 1 - UDP:{}:{},bind={ipb}; socat -T 1 - TCP:{}:{},bind={ipb},connect-timeout=1",
        out.ip,
        base + 1,
        out.ip,
        base + 1
    ));
    let t_spoof = time::now_millis();
    // A genuine flow of the spoofer to another port, as a marker that records arrive.
    assert_eq!(
        tcp_from_slice_retry(&a, out.ip, base + 2).as_deref(),
        Some("hi")
    );
    let marker = ask_until(&audit_dir, out.ip, base + 2, "tcp", t_spoof, |x| {
        !x.flows.is_empty()
    });
    assert_eq!(marker.slices, vec!["spoofer".to_string()]);
    for proto in ["tcp", "udp"] {
        let x = ask(&audit_dir, out.ip, base + 1, proto, t_spoof);
        assert!(
            !x.slices.contains(&"victim".to_string()),
            "spoofed {proto} flow attributed to the victim: {x:#?}"
        );
    }
    let spoofed_after = t.node.stats("spoofer").unwrap().dropped_spoofed;
    assert!(
        spoofed_after > spoofed_before,
        "the spoofer's veth {:?} did not count its forged packets",
        na.host_veth
    );

    // The slice's root cannot reach the collector or the records.
    // The collector is this process (ctnetlink, no helper process).
    let collector_pid = std::process::id();
    let r = a.run(&["kill", "-9", &collector_pid.to_string()]);
    assert!(
        !r.status.success(),
        "slice root could signal the collector ({collector_pid})"
    );
    let seg_dir = audit_dir.join("flows");
    let r = a.sh(&format!(
        "for f in {0}/*; do echo forged >> $f && echo WROTE; done; rm -rf {0} && echo REMOVED",
        seg_dir.display()
    ));
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        !text.contains("WROTE") && !text.contains("REMOVED"),
        "slice root altered records: {text}"
    );

    // Flood: many short UDP flows from the victim; every one is on record (or the loss is
    // counted), and a flow after the flood is still attributed.
    let flood = 2000;
    let script = format!(
        "import socket\nfor i in range({flood}):\n s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n s.bind(('', 30000 + i))\n s.sendto(b'x', ('{}', {}))\n s.close()\n",
        out.ip,
        base + 3
    );
    let r = b.run(&["python3", "-c", &script]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let t_flood = time::now_millis();
    // Conntrack keeps the entries for 30 s or more, so after a loss the resync listing puts
    // every flood flow on record again.
    let x = ask_until(&audit_dir, out.ip, base + 3, "udp", t_flood, |x| {
        x.flows.len() >= flood
    });
    assert!(
        x.flows.len() >= flood,
        "{} of {flood} flood flows on record (lossy: {})",
        x.flows.len(),
        x.lossy
    );
    eprintln!(
        "acct: flood of {flood} UDP flows: {} on record, lost {} (lossy: {})",
        x.flows.len(),
        x.lost,
        x.lossy
    );

    // A connection held open across a collector restart is on record after it.
    let hold_port = base + 100;
    let _holder = out.ns.spawn(
        &[
            "socat",
            &format!("TCP-LISTEN:{hold_port},reuseaddr"),
            "SYSTEM:sleep 30",
        ],
        "holding server",
    );
    wait_listening_in(Some(&out.ns.netns()), "tcp", hold_port);
    c.collector.stop();
    drop(c);
    let mut held = b.spawn(
        &[
            "socat",
            "-u",
            &format!("TCP:{}:{hold_port}", out.ip),
            "STDOUT",
        ],
        "held connection",
    );
    std::thread::sleep(Duration::from_millis(500));
    let t_held = time::now_millis();
    let c2 = collect(&t, &audit_dir);
    let x = ask_until(&audit_dir, out.ip, hold_port, "tcp", t_held, |x| {
        !x.flows.is_empty()
    });
    assert_eq!(x.slices, vec!["victim".to_string()], "{x:#?}");
    held.stop();
    drop(c2);
    let rep = vslice::audit::verify(&audit_dir, None).unwrap();
    assert!(rep.ok, "{rep:#?}");
}
