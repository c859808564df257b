//! The flow log names the process behind a slice's connection (as root, real kernel): two
//! slices connect to the same remote port with programs whose argv carries a marker; the
//! complaint's answer names each slice with its own process (pid, comm, argv), never the
//! other's, for TCP and UDP; and the readable `who` text shows it. A flow made while the
//! collector is down is stated as a gap (`lossy`), never silently missing.
mod net_support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use net_support::*;
use vslice::audit::flows::{who, FlowCollector, FlowConfig, WhoQuery};
use vslice::audit::time;
use vslice::proto::accounting::WhoAnswer;

/// TCP and UDP on `port` and `port+1` in the outside namespace; TCP replies and keeps the
/// connection open, UDP answers each datagram.
const SERVER: &str = r#"
import socket, selectors, sys
p = int(sys.argv[1])
sel = selectors.DefaultSelector()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", p)); t.listen(64); sel.register(t, selectors.EVENT_READ, "t")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", p + 1))
sel.register(u, selectors.EVENT_READ, "u")
keep = []
while True:
    for key, _ in sel.select():
        try:
            if key.data == "t":
                c, _ = key.fileobj.accept(); c.sendall(b"hi\n"); keep.append(c)
            else:
                d, a = key.fileobj.recvfrom(2048); key.fileobj.sendto(b"hi\n", a)
        except OSError:
            pass
"#;

/// A client that connects (TCP or UDP), reads the greeting, says `ok` and holds the socket.
const CLIENT: &str = r#"
import socket, sys, time
proto, ip, p = sys.argv[1], sys.argv[2], int(sys.argv[3])
if proto == "tcp":
    s = socket.create_connection((ip, p), timeout=5)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    s.connect((ip, p)); s.send(b"ping")
s.recv(16)
print("ok", flush=True)
time.sleep(30)
"#;

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

/// Wait until the answer has `n` flows with a process (records arrive as found).
fn ask_until(audit_dir: &Path, remote: Ipv4Addr, port: u16, proto: &str, n: usize) -> WhoAnswer {
    let at = time::now_millis();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = ask(audit_dir, remote, port, proto, at);
        if a.flows.iter().filter(|f| f.process.is_some()).count() >= n || Instant::now() > deadline
        {
            return a;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn text_of(a: &WhoAnswer) -> String {
    vslice::cli::accounting::who_text(a)
}

/// Start the client in `s` and wait for its `ok` (the connection is up).
fn client(s: &SliceNs, proto: &str, ip: Ipv4Addr, port: u16, marker: &str) -> Proc {
    let p = port.to_string();
    let ip = ip.to_string();
    let mut c = s.spawn(
        &["python3", "-c", CLIENT, proto, &ip, &p, marker],
        &format!("client {marker}"),
    );
    use std::io::BufRead;
    let out = c.child.as_mut().unwrap().stdout.take().unwrap();
    let mut line = String::new();
    let _ = std::io::BufReader::new(out).read_line(&mut line);
    assert_eq!(line.trim(), "ok", "client {marker} did not connect");
    c
}

#[test]
fn who_names_the_process_that_made_the_connection() {
    if !need_root() {
        return;
    }
    for tool in ["python3", "nsenter", "setpriv"] {
        assert!(which(tool), "{tool} is missing (see deps/packages.txt)");
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let out = Outside::new(&t);
    let base = 23000u16;
    let _srv = out
        .ns
        .spawn(&["python3", "-c", SERVER, &base.to_string()], "server");
    wait_listening_in(Some(&out.ns.netns()), "udp", base + 1);
    let dir = tempfile::Builder::new()
        .prefix("vslice-test-acct-owner")
        .tempdir()
        .unwrap();
    let audit_dir = dir.path().join("audit");
    let mut cfg = FlowConfig::new(
        audit_dir.clone(),
        t.node.state_dir.clone(),
        &t.node.nft_table,
    );
    cfg.reserve_bytes = 0;
    let mut collector = FlowCollector::start(cfg, Box::new(|_, _| {})).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let a = SliceNs::new("ownera");
    let b = SliceNs::new("ownerb");
    let _na = attach(&t, &a, &bridge_spec());
    let _nb = attach(&t, &b, &bridge_spec());
    let ca = client(&a, "tcp", out.ip, base, "marker-tcp-a");
    let cb = client(&b, "tcp", out.ip, base, "marker-tcp-b");
    let ub = client(&b, "udp", out.ip, base + 1, "marker-udp-b");

    let x = ask_until(&audit_dir, out.ip, base, "tcp", 2);
    let mut names = x.slices.clone();
    names.sort();
    assert_eq!(names, vec!["ownera".to_string(), "ownerb".to_string()]);
    for (slice, proc_, marker) in [
        ("ownera", &ca, "marker-tcp-a"),
        ("ownerb", &cb, "marker-tcp-b"),
    ] {
        let f = x
            .flows
            .iter()
            .find(|f| f.slice == slice)
            .unwrap_or_else(|| panic!("no flow of {slice}: {x:#?}"));
        let p = f
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("no process for {slice}: {x:#?}"));
        assert_eq!(p.pid, proc_.pid(), "{slice}: {p:#?}");
        assert_eq!(p.comm, "python3");
        assert!(
            p.argv
                .as_ref()
                .is_some_and(|v| v.iter().any(|a| a == marker)),
            "{slice}: argv without {marker}: {p:#?}"
        );
        // The slice's root is uid 0 inside, an unprivileged uid on the host.
        assert_eq!(p.uid_in_slice, Some(0), "{p:#?}");
        assert_ne!(p.uid, Some(0), "{p:#?}");
    }
    let text = vslice::cli::accounting::who_text(&x);
    assert!(
        text.contains("marker-tcp-a") && text.contains("marker-tcp-b") && text.contains("python3"),
        "{text}"
    );

    let y = ask_until(&audit_dir, out.ip, base + 1, "udp", 1);
    assert_eq!(y.slices, vec!["ownerb".to_string()], "{y:#?}");
    let p = y.flows[0]
        .process
        .as_ref()
        .expect("udp flow without process");
    assert_eq!(p.pid, ub.pid());
    assert!(p
        .argv
        .as_ref()
        .is_some_and(|v| v.iter().any(|a| a == "marker-udp-b")));
    eprintln!(
        "acct-owner: processes found {} skipped {}",
        collector
            .stats
            .procs_found
            .load(std::sync::atomic::Ordering::Relaxed),
        collector
            .stats
            .procs_skipped
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    collector.stop();
    drop(collector);

    // A flow that begins and ends while the collector is down cannot be recovered from
    // conntrack: the restarted collector states the gap, and a complaint about that flow
    // answers `lossy` instead of a silent "no slice".
    let short = client(&a, "tcp", out.ip, base, "marker-during-gap");
    drop(short);
    let t_gap = time::now_millis();
    let mut cfg = FlowConfig::new(
        audit_dir.clone(),
        t.node.state_dir.clone(),
        &t.node.nft_table,
    );
    cfg.reserve_bytes = 0;
    let mut collector = FlowCollector::start(cfg, Box::new(|_, _| {})).unwrap();
    let g = ask(&audit_dir, out.ip, base, "tcp", t_gap);
    assert!(g.lossy, "the gap is not stated: {g:#?}");
    assert!(text_of(&g).contains("WARNING"), "{}", text_of(&g));
    drop((ca, cb, ub));
    collector.stop();
    let rep = vslice::audit::verify(&audit_dir, None).unwrap();
    assert!(rep.ok, "{rep:#?}");
}
