//! Bandwidth against the real kernel (as root), measured with iperf3 between test slices and
//! the test bridge's gateway: per-slice caps in each direction, live changes, the weighted
//! share of a node cap, the daily byte budget.
mod net_support;

use net_support::*;
use vslice::net::{ByteBudget, HostPort, NetSpec, Proto, BUDGET_PERIOD_SECS};

fn need_iperf3() -> bool {
    if !need_root() {
        return false;
    }
    assert!(
        which("iperf3"),
        "iperf3 is missing (apt-get install iperf3)"
    );
    assert!(which("socat"), "socat is missing (apt-get install socat)");
    true
}

fn with_host_port(mut spec: NetSpec, port: u16) -> NetSpec {
    spec.allow.host_ports.push(HostPort {
        port,
        proto: Proto::Tcp,
    });
    spec
}

fn within(measured: f64, cap: f64, tol: f64) -> bool {
    ((measured - cap) / cap).abs() <= tol
}

#[test]
fn caps_hold_in_each_direction_and_change_live() {
    if !need_iperf3() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let gw = t.gateway();
    let p = port(24000, &t);
    let a = SliceNs::new("capped");
    let mut spec = with_host_port(bridge_spec(), p);
    spec.egress_rate = Some(10_000_000);
    spec.ingress_rate = Some(10_000_000);
    attach(&t, &a, &spec);
    let _srv = iperf3_server(gw, p);

    let up = iperf3_client(&a, gw, p, 4, false);
    let down = iperf3_client(&a, gw, p, 4, true);
    eprintln!(
        "cap 10 Mbit/s: egress {:.3} ingress {:.3} Mbit/s (wire; goodput {:.3} / {:.3})",
        up.wire_bps() / 1e6,
        down.wire_bps() / 1e6,
        up.goodput_bps / 1e6,
        down.goodput_bps / 1e6
    );
    assert!(
        within(up.wire_bps(), 10e6, 0.05),
        "egress {up:?} not within 5% of 10 Mbit/s"
    );
    assert!(
        within(down.wire_bps(), 10e6, 0.05),
        "ingress {down:?} not within 5% of 10 Mbit/s"
    );

    // Live: halve egress, lift ingress.
    t.node
        .update_rates("capped", Some(5_000_000), None)
        .unwrap();
    let up = iperf3_client(&a, gw, p, 4, false);
    let down = iperf3_client(&a, gw, p, 2, true);
    eprintln!(
        "after update: egress {:.3} Mbit/s, ingress (uncapped) {:.1} Mbit/s",
        up.wire_bps() / 1e6,
        down.wire_bps() / 1e6
    );
    assert!(
        within(up.wire_bps(), 5e6, 0.05),
        "egress {up:?} not within 5% of 5 Mbit/s"
    );
    assert!(down.wire_bps() > 50e6, "ingress still capped: {down:?}");

    let c = t.node.stats("capped").unwrap();
    assert!(c.bytes_out > 5_000_000 && c.bytes_in > 5_000_000, "{c:?}");
    eprintln!("counters: {}", serde_json::to_string(&c).unwrap());
}

/// Run two iperf3 clients at once (slices `a` and `b`), return their rates.
fn concurrent(
    a: &SliceNs,
    b: &SliceNs,
    gw: std::net::Ipv4Addr,
    pa: u16,
    pb: u16,
    reverse: bool,
) -> (f64, f64) {
    let spawn = |s: &SliceNs, p: u16| {
        let v = iperf3_args(gw, p, 5, reverse);
        let v: Vec<&str> = v.iter().map(|x| x.as_str()).collect();
        s.cmd(&v)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ca = spawn(a, pa);
    let cb = spawn(b, pb);
    let ra = parse_iperf(&ca.wait_with_output().unwrap(), reverse).wire_bps();
    let rb = parse_iperf(&cb.wait_with_output().unwrap(), reverse).wire_bps();
    (ra, rb)
}

#[test]
fn node_cap_is_shared_by_weight() {
    if !need_iperf3() {
        return;
    }
    let _g = serial();
    let cap = 20_000_000u64;
    let t = TestNode::new(|n| {
        n.node_egress_rate = Some(cap);
        n.node_ingress_rate = Some(cap);
    });
    let gw = t.gateway();
    let (pa, pb) = (port(25000, &t), port(25000, &t) + 1);
    let a = SliceNs::new("light");
    let b = SliceNs::new("heavy");
    let mut sa = with_host_port(bridge_spec(), pa);
    sa.weight = Some(1);
    let mut sb = with_host_port(bridge_spec(), pb);
    sb.weight = Some(3);
    attach(&t, &a, &sa);
    attach(&t, &b, &sb);
    let _s1 = iperf3_server(gw, pa);
    let _s2 = iperf3_server(gw, pb);
    for (dir, reverse) in [("egress", false), ("ingress", true)] {
        let (ra, rb) = concurrent(&a, &b, gw, pa, pb, reverse);
        let share = ra / (ra + rb);
        eprintln!(
            "node cap 20 Mbit/s {dir}: weight 1 {:.2} Mbit/s, weight 3 {:.2} Mbit/s, share {:.1}%/{:.1}%, total {:.2}",
            ra / 1e6,
            rb / 1e6,
            share * 100.0,
            (1.0 - share) * 100.0,
            (ra + rb) / 1e6
        );
        assert!(
            (share - 0.25).abs() <= 0.05,
            "{dir}: share {share:.3} not 25% +- 5 points"
        );
        assert!(
            within(ra + rb, cap as f64, 0.05),
            "{dir}: total {} not within 5% of the cap",
            ra + rb
        );
    }
    // Alone, the light slice may use the whole node cap (it borrows).
    let alone = iperf3_client(&a, gw, pa, 3, false);
    eprintln!("weight 1 alone: {:.2} Mbit/s", alone.wire_bps() / 1e6);
    assert!(
        within(alone.wire_bps(), cap as f64, 0.05),
        "alone: {alone:?}"
    );
}

#[test]
fn byte_budget_throttles_past_the_threshold() {
    if !need_iperf3() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let gw = t.gateway();
    let p = port(26000, &t);
    let a = SliceNs::new("thrifty");
    let mut spec = with_host_port(bridge_spec(), p);
    spec.budget = Some(ByteBudget {
        max_bytes: 8_000_000,
        thresh_bytes: 1_000_000,
    });
    attach(&t, &a, &spec);
    let _srv = iperf3_server(gw, p);
    // 16 seconds before the end of a (simulated) day.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let late = now - now % BUDGET_PERIOD_SECS + BUDGET_PERIOD_SECS - 16;

    let st = t.node.enforce_budgets_at(late).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].throttle_bps, None, "{st:?}");
    // Send ~2 MB: past the threshold.
    let out = a.run(&[
        "iperf3",
        "-c",
        &gw.to_string(),
        "-p",
        &p.to_string(),
        "-n",
        "2M",
        "-J",
    ]);
    let fast = parse_iperf(&out, false);
    // iperf3 -n ends once it has written the bytes; up to a socket buffer of them may still be
    // on the way, and the counters see them when they pass. Wait for them (bounded).
    let mut st = t.node.enforce_budgets_at(late).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while st[0].used_bytes < 2_000_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        st = t.node.enforce_budgets_at(late).unwrap();
    }
    let used = st[0].used_bytes;
    assert!(used >= 2_000_000, "{st:?}");
    let throttle = st[0].throttle_bps.expect("throttled past the threshold");
    // What is left of the budget over the 16 s left of the day.
    assert_eq!(
        throttle,
        ((8_000_000 - used) * 8 / 16).max(vslice::net::BUDGET_FLOOR_BPS)
    );
    let c = t.node.stats("thrifty").unwrap();
    assert_eq!(c.budget_throttle_bps, Some(throttle));
    let slow = iperf3_client(&a, gw, p, 4, false);
    eprintln!(
        "budget: unthrottled {:.1} Mbit/s; used {used} B; throttle {:.3} Mbit/s; measured {:.3} Mbit/s",
        fast.goodput_bps / 1e6,
        throttle as f64 / 1e6,
        slow.wire_bps() / 1e6
    );
    assert!(
        fast.goodput_bps > 5.0 * throttle as f64,
        "the slice was slow before the threshold"
    );
    assert!(
        within(slow.wire_bps(), throttle as f64, 0.1),
        "throttled rate {slow:?} vs {throttle}"
    );

    // The counters survive a "daemon restart" (a fresh NodeNet on the same state dir).
    let mut restarted = t.node.clone();
    restarted.ensure().unwrap();
    let st2 = restarted.enforce_budgets_at(late).unwrap();
    assert!(st2[0].used_bytes >= used, "{st2:?}");
    assert!(st2[0].throttle_bps.is_some());
    // A new day lifts the throttle.
    let st3 = restarted.enforce_budgets_at(late + 60).unwrap();
    assert_eq!(st3[0].throttle_bps, None, "{st3:?}");
    assert!(st3[0].used_bytes < 1_000_000);
    let free = iperf3_client(&a, gw, p, 2, false);
    assert!(
        free.goodput_bps > 5.0 * throttle as f64,
        "still throttled: {free:?}"
    );
    restarted.node_egress_rate = None;
}
