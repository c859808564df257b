//! Network figures for `make bench` (as root; needs iproute2, nftables, iperf3, socat):
//!
//! * measured over configured rate for 1, 10 and 100 Mbit/s caps in each direction,
//! * the split of a node cap between two slices of weights 1 and 3,
//! * throughput of an uncapped slice (and of one redirected through the shaper) against a bare
//!   veth pair: the cost of the bridge, the nftables rules and the shaping machinery,
//! * attach / detach latency.
//!
//! Rates are the iperf3 receiver goodput converted to Ethernet frame bytes (what the shaper
//! counts): x 1514/1448. Every measurement is bounded (`VSLICE_NET_BENCH_SECS`, default 3 s,
//! plus 1 s of slow start left out). Uses its own bridge/table/subnet and removes them.
#[path = "../tests/net_support/mod.rs"]
mod net_support;

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Instant;

use net_support::*;
use vslice::net::{HostPort, NetSpec, NodeNet, Proto};

static NODES: Mutex<Vec<NodeNet>> = Mutex::new(Vec::new());

fn mbit(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.2}Gbit", bps / 1e9)
    } else {
        format!("{:.3}Mbit", bps / 1e6)
    }
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("net_bench: needs root");
        std::process::exit(1);
    }
    for tool in ["ip", "tc", "nft", "iperf3", "socat", "nsenter", "setpriv"] {
        if !which(tool) {
            eprintln!("net_bench: {tool} is missing (apt-get install iproute2 nftables iperf3 socat util-linux)");
            std::process::exit(1);
        }
    }
    // The dev profile aborts on panic (no unwinding, no Drop): tear the test nodes down from
    // the hook. Helper processes die with us (setpriv --pdeathsig).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(nodes) = NODES.lock() {
            for n in nodes.iter() {
                let _ = n.teardown();
            }
        }
        default_hook(info);
    }));
    let secs: u32 = std::env::var("VSLICE_NET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);

    caps(secs);
    fairness(secs);
    overhead(secs);
    latency();
}

fn register(t: &TestNode) {
    NODES.lock().unwrap().push(t.node.clone());
}

fn allow(mut spec: NetSpec, port: u16) -> NetSpec {
    spec.allow.host_ports.push(HostPort {
        port,
        proto: Proto::Tcp,
    });
    spec
}

fn caps(secs: u32) {
    let t = TestNode::new(|_| {});
    register(&t);
    let gw = t.gateway();
    let p = port(27000, &t);
    let s = SliceNs::new("bench");
    let mut spec = allow(bridge_spec(), p);
    spec.egress_rate = Some(1_000_000);
    spec.ingress_rate = Some(1_000_000);
    attach(&t, &s, &spec);
    let _srv = iperf3_server(gw, p);
    for cap in [1_000_000u64, 10_000_000, 100_000_000] {
        t.node.update_rates("bench", Some(cap), Some(cap)).unwrap();
        // HTB passes whole GSO packets (up to 64 KiB, 0.5 s at 1 Mbit/s): measure low caps
        // over a longer window.
        let window = if cap < 5_000_000 { secs * 4 } else { secs };
        for (dir, reverse) in [("egress", false), ("ingress", true)] {
            let r = iperf3_client(&s, gw, p, window, reverse);
            println!(
                "net cap={}Mbit dir={dir} measured={} ratio={:.3} window_s={window}",
                cap / 1_000_000,
                mbit(r.wire_bps()),
                r.wire_bps() / cap as f64
            );
        }
    }
}

fn fairness(secs: u32) {
    let cap = 20_000_000u64;
    let t = TestNode::new(|n| {
        n.node_egress_rate = Some(cap);
        n.node_ingress_rate = Some(cap);
    });
    register(&t);
    let gw = t.gateway();
    let (pa, pb) = (port(28000, &t), port(28000, &t) + 1);
    let a = SliceNs::new("w1");
    let b = SliceNs::new("w3");
    let mut sa = allow(bridge_spec(), pa);
    sa.weight = Some(1);
    let mut sb = allow(bridge_spec(), pb);
    sb.weight = Some(3);
    attach(&t, &a, &sa);
    attach(&t, &b, &sb);
    let _s1 = iperf3_server(gw, pa);
    let _s2 = iperf3_server(gw, pb);
    for (dir, reverse) in [("egress", false), ("ingress", true)] {
        let run = |s: &SliceNs, p: u16| {
            let v = iperf3_args(gw, p, secs, reverse);
            let v: Vec<&str> = v.iter().map(|x| x.as_str()).collect();
            s.cmd(&v)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (ca, cb) = (run(&a, pa), run(&b, pb));
        let ra = parse_iperf(&ca.wait_with_output().unwrap(), reverse).wire_bps();
        let rb = parse_iperf(&cb.wait_with_output().unwrap(), reverse).wire_bps();
        let share = ra / (ra + rb);
        println!(
            "net fairness cap={}Mbit weights=1:3 dir={dir} w1={} w3={} shares={:.1}/{:.1} total_ratio={:.3}",
            cap / 1_000_000,
            mbit(ra),
            mbit(rb),
            share * 100.0,
            (1.0 - share) * 100.0,
            (ra + rb) / cap as f64
        );
    }
}

fn overhead(secs: u32) {
    let t = TestNode::new(|_| {});
    register(&t);
    let gw = t.gateway();
    let p = port(29000, &t);

    // Bare: a namespace linked to the host by a veth, no bridge, no rules, no shaping.
    let bare = Outside::new(&t);
    let bare_port = p + 2;
    let _bsrv = iperf3_server(bare.host_ip, bare_port);

    let s = SliceNs::new("free");
    attach(&t, &s, &allow(bridge_spec(), p));
    let _srv = iperf3_server(gw, p);
    for (dir, reverse) in [("egress", false), ("ingress", true)] {
        let b = iperf3_client(&bare.ns, bare.host_ip, bare_port, secs, reverse).wire_bps();
        let u = iperf3_client(&s, gw, p, secs, reverse).wire_bps();
        // Shaped at a rate it cannot reach: the cost of the IFB redirect + HTB.
        let mut shaped = allow(bridge_spec(), p);
        shaped.egress_rate = Some(100_000_000_000);
        shaped.ingress_rate = Some(100_000_000_000);
        t.node.update("free", &shaped).unwrap();
        let sh = iperf3_client(&s, gw, p, secs, reverse).wire_bps();
        t.node.update("free", &allow(bridge_spec(), p)).unwrap();
        println!(
            "net throughput dir={dir} bare_veth={} slice_uncapped={} ratio={:.3} slice_via_shaper={} ratio={:.3}",
            mbit(b),
            mbit(u),
            u / b,
            mbit(sh),
            sh / b
        );
    }
    let _ = Ipv4Addr::LOCALHOST;
}

fn latency() {
    let t = TestNode::new(|_| {});
    register(&t);
    let n = 10;
    let slices: Vec<SliceNs> = (0..n).map(|i| SliceNs::new(&format!("l{i}"))).collect();
    let mut spec = bridge_spec();
    spec.egress_rate = Some(10_000_000);
    spec.ingress_rate = Some(10_000_000);
    let t0 = Instant::now();
    for s in &slices {
        attach(&t, s, &spec);
    }
    let attach_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let t0 = Instant::now();
    for s in &slices {
        attach(&t, s, &spec);
    }
    let reattach_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let t0 = Instant::now();
    for s in &slices {
        t.node.detach(&s.name).unwrap();
    }
    let detach_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let none = vslice::net::NetSpec::default();
    let t0 = Instant::now();
    for s in &slices {
        t.node.attach(&s.name, s.netns(), &none).unwrap();
    }
    let none_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!(
        "net latency slices={n} attach_ms={attach_ms:.1} reattach_ms={reattach_ms:.1} detach_ms={detach_ms:.1} mode_none_ms={none_ms:.1}"
    );
}
