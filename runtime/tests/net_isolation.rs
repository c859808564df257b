//! Slice networking against the real kernel (as root): addressing, isolation, port forwards,
//! anti-spoofing, what a slice's root can and cannot do, idempotence and cleanup.
mod net_support;

use std::net::Ipv4Addr;
use std::process::Command;

use net_support::*;
use vslice::net::{HostPort, NetMode, NetSpec, PortForward, Proto};

#[test]
fn attach_gives_address_route_and_files_and_detach_cleans() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    // ensure is idempotent
    t.node.ensure().unwrap();
    t.node.ensure().unwrap();
    let a = SliceNs::new("alpha");
    let net = attach(&t, &a, &bridge_spec());
    let ip = net.address.unwrap();
    assert_eq!(ip, Ipv4Addr::new(10, 214, t.n, 2));
    assert_eq!(net.gateway, Some(t.gateway()));
    assert!(net.hosts.contains(&format!("{ip}\talpha")), "{}", net.hosts);
    assert!(net.resolv_conf.starts_with("# written by vslice"));

    // Inside: eth0 with the address and MAC, default route via the gateway.
    let out = String::from_utf8_lossy(&a.run(&["ip", "-4", "addr", "show", "dev", "eth0"]).stdout)
        .into_owned();
    assert!(out.contains(&format!("{ip}/24")), "{out}");
    let route =
        String::from_utf8_lossy(&a.run(&["ip", "route", "show", "default"]).stdout).into_owned();
    assert!(route.contains(&format!("via {}", t.gateway())), "{route}");
    // The gateway answers a ping (the one host service open by default).
    let ping = a.run(&[
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &t.gateway().to_string(),
    ]);
    assert!(
        ping.status.success(),
        "ping gateway: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // attach again converges (daemon restart), same address.
    let again = attach(&t, &a, &bridge_spec());
    assert_eq!(again.address, Some(ip));
    let ping = a.run(&[
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &t.gateway().to_string(),
    ]);
    assert!(ping.status.success());

    // A second slice gets the next address.
    let b = SliceNs::new("beta");
    let netb = attach(&t, &b, &bridge_spec());
    assert_eq!(netb.address, Some(Ipv4Addr::new(10, 214, t.n, 3)));

    let c = t.node.stats("alpha").unwrap();
    assert!(c.packets_out > 0 && c.packets_in > 0, "{c:?}");
    // `list` reads every veth's counters from one rtnetlink dump, not the veth's own files:
    // the same counters (later, so no fewer).
    let all = t
        .node
        .attachments(&vslice::net::DropCounters::default())
        .unwrap();
    let (_, listed) = &all["alpha"];
    assert!(
        listed.packets_out >= c.packets_out
            && listed.packets_in >= c.packets_in
            && listed.bytes_out >= c.bytes_out
            && listed.bytes_in >= c.bytes_in,
        "list {listed:?} against inspect {c:?}"
    );

    // detach is idempotent and removes the veth; the address stays reserved.
    let veth = net.host_veth.clone().unwrap();
    t.node.detach("alpha").unwrap();
    t.node.detach("alpha").unwrap();
    assert!(!std::path::Path::new("/sys/class/net").join(&veth).exists());
    let eth0 = a.run(&["ip", "link", "show", "dev", "eth0"]);
    assert!(
        !eth0.status.success(),
        "eth0 still in the slice after detach"
    );
    let back = attach(&t, &a, &bridge_spec());
    assert_eq!(back.address, Some(ip));
    // release frees it
    t.node.release("alpha").unwrap();
    t.node.release("alpha").unwrap();
    assert!(t.node.get("alpha").unwrap().is_none());

    // teardown removes everything, twice is fine.
    t.node.teardown().unwrap();
    t.node.teardown().unwrap();
    assert_eq!(t.leftover_links(), Vec::<String>::new());
    assert!(!t.nft_table_exists());
    drop(a);
    drop(b);
}

#[test]
fn mode_none_is_loopback_only() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let a = SliceNs::new("lonely");
    let net = t
        .node
        .attach("lonely", a.netns(), &NetSpec::default())
        .unwrap();
    assert_eq!(net.mode, NetMode::None);
    assert_eq!(net.address, None);
    let links = String::from_utf8_lossy(&a.run(&["ip", "-o", "link"]).stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    // bridge -> none detaches
    attach(&t, &a, &bridge_spec());
    t.node
        .attach("lonely", a.netns(), &NetSpec::default())
        .unwrap();
    let links = String::from_utf8_lossy(&a.run(&["ip", "-o", "link"]).stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "{links}");
}

#[test]
fn invalid_specs_are_refused_with_the_field() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let a = SliceNs::new("a");
    let b = SliceNs::new("b");
    let mut spec = bridge_spec();
    spec.ports.push(PortForward {
        host_port: 0,
        slice_port: 80,
        proto: Proto::Tcp,
    });
    let err = t
        .node
        .attach("a", a.netns(), &spec)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "net.ports[0].host_port: 0 is not a valid port");
    spec.ports[0].host_port = 18080;
    attach(&t, &a, &spec);
    let err = t
        .node
        .attach("b", b.netns(), &spec)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("net.ports[0].host_port: 18080/tcp is already forwarded"),
        "{err}"
    );
    let err = t.node.attach(
        "c",
        std::path::Path::new("/proc/999999999/ns/net"),
        &bridge_spec(),
    );
    assert!(err.unwrap_err().to_string().contains("does not exist"));
}

#[test]
fn slices_are_isolated_until_policy_opens() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let a = SliceNs::new("a");
    let b = SliceNs::new("b");
    let na = attach(&t, &a, &bridge_spec());
    let nb = attach(&t, &b, &bridge_spec());
    let (ipa, ipb) = (na.address.unwrap(), nb.address.unwrap());
    let gw = t.gateway();
    let hport = port(20000, &t);
    let _host = tcp_server_on_host(gw, hport, "host-ok");
    let _srv_b = tcp_server_in_slice(&b, 9100, "b-ok");
    let _srv_a = tcp_server_in_slice(&a, 9100, "a-ok");

    // Default: neither the host's services nor the other slice.
    assert_eq!(
        tcp_from_slice(&a, gw, hport),
        None,
        "slice reached a host service"
    );
    assert_eq!(
        tcp_from_slice(&a, ipb, 9100),
        None,
        "slice reached another slice"
    );
    assert_eq!(
        tcp_from_slice(&b, ipa, 9100),
        None,
        "slice reached another slice"
    );
    // Not around the bridge through the gateway either.
    let r = a.run(&[
        "ip",
        "route",
        "add",
        &format!("{ipb}/32"),
        "via",
        &gw.to_string(),
    ]);
    assert!(r.status.success());
    assert_eq!(
        tcp_from_slice(&a, ipb, 9100),
        None,
        "slice routed around the bridge"
    );
    a.run(&["ip", "route", "del", &format!("{ipb}/32")]);
    let dropped = t.node.stats("a").unwrap().dropped_policy;
    assert!(dropped > 0, "no policy drops counted");
    // The host itself reaches the slices (administration).
    let out = run_ok(
        "socat",
        &["-T", "3", "-", &format!("TCP:{ipa}:9100,connect-timeout=2")],
    );
    assert_eq!(out.trim(), "a-ok");

    // Open a host port for a: a reaches it, b still does not.
    let mut sa = bridge_spec();
    sa.allow.host_ports.push(HostPort {
        port: hport,
        proto: Proto::Tcp,
    });
    t.node.update("a", &sa).unwrap();
    assert_eq!(
        tcp_from_slice_retry(&a, gw, hport).as_deref(),
        Some("host-ok")
    );
    assert_eq!(tcp_from_slice(&b, gw, hport), None);

    // One side listing the other is not enough.
    sa.allow.slices.push("b".into());
    t.node.update("a", &sa).unwrap();
    assert_eq!(
        tcp_from_slice(&a, ipb, 9100),
        None,
        "one-sided opening let traffic through"
    );
    // Both: open, both directions.
    let mut sb = bridge_spec();
    sb.allow.slices.push("*".into());
    t.node.update("b", &sb).unwrap();
    assert_eq!(tcp_from_slice_retry(&a, ipb, 9100).as_deref(), Some("b-ok"));
    assert_eq!(tcp_from_slice_retry(&b, ipa, 9100).as_deref(), Some("a-ok"));
    // And closed again.
    t.node.update("b", &bridge_spec()).unwrap();
    assert_eq!(tcp_from_slice(&a, ipb, 9100), None);
}

#[test]
fn port_forward_and_nat() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let out = Outside::new(&t);
    let a = SliceNs::new("web");
    let hport = port(21000, &t);
    let mut spec = bridge_spec();
    spec.ports.push(PortForward {
        host_port: hport,
        slice_port: 80,
        proto: Proto::Tcp,
    });
    let net = attach(&t, &a, &spec);
    let _srv = tcp_server_in_slice(&a, 80, "hello-from-slice");

    // From the host itself, to the gateway address (output-hook DNAT).
    let r = run_ok(
        "socat",
        &[
            "-T",
            "3",
            "-",
            &format!("TCP:{}:{hport},connect-timeout=2", t.gateway()),
        ],
    );
    assert_eq!(r.trim(), "hello-from-slice");
    // From "outside", to the host's address on that side (prerouting DNAT + forward).
    let target = format!("TCP:{}:{hport},connect-timeout=2", out.host_ip);
    let r = out.ns.run(&["socat", "-T", "3", "-", &target]);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "hello-from-slice"
    );
    // Outside cannot reach the slice directly (no route there anyway; and no DNAT = no entry).
    let _ = out.ns.run(&[
        "ip",
        "route",
        "add",
        &t.node.subnet.to_string(),
        "via",
        &out.host_ip.to_string(),
    ]);
    let r = out.ns.run(&[
        "socat",
        "-T",
        "2",
        "-",
        &format!("TCP:{}:80,connect-timeout=2", net.address.unwrap()),
    ]);
    assert!(
        String::from_utf8_lossy(&r.stdout).trim().is_empty(),
        "outside reached the slice without a port forward"
    );

    // Egress NAT: the outside sees the host's address, not the slice's.
    let _peer = out.ns.spawn(
        &[
            "socat",
            "TCP-LISTEN:9300,reuseaddr,fork",
            "SYSTEM:echo $SOCAT_PEERADDR",
        ],
        "outside server",
    );
    out.ns.wait_listening("tcp", 9300);
    let seen = tcp_from_slice_retry(&a, out.ip, 9300);
    assert_eq!(
        seen.as_deref(),
        Some(out.host_ip.to_string().as_str()),
        "not masqueraded"
    );

    // The forward goes away with the slice.
    t.node.update("web", &bridge_spec()).unwrap();
    let r = run_ok(
        "sh",
        &[
            "-c",
            &format!(
                "socat -T 2 - TCP:{}:{hport},connect-timeout=2 || true",
                t.gateway()
            ),
        ],
    );
    assert!(r.trim().is_empty());
}

#[test]
fn spoofed_sources_are_dropped() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let a = SliceNs::new("a");
    let b = SliceNs::new("b");
    // Open a <-> b, so that only anti-spoofing stands between a's forged packets and b.
    let mut open = bridge_spec();
    open.allow.slices.push("*".into());
    attach(&t, &a, &open);
    let nb = attach(&t, &b, &open);
    let ipb = nb.address.unwrap();
    let mut rx = b.spawn(&["socat", "-u", "UDP-RECV:9200", "STDOUT"], "udp receiver");
    b.wait_listening("udp", 9200);
    let send = |src: Option<Ipv4Addr>, word: &str| {
        let mut to = format!("UDP-SENDTO:{ipb}:9200");
        if let Some(s) = src {
            to.push_str(&format!(",bind={s}"));
        }
        a.sh(&format!("echo {word} | socat -u - {to}"))
    };
    assert!(send(None, "genuine").status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = t.node.stats("a").unwrap().dropped_spoofed;

    // A second address inside the slice, used as source.
    let spoof = Ipv4Addr::new(10, 214, t.n, 200);
    let r = a.run(&["ip", "addr", "add", &format!("{spoof}/24"), "dev", "eth0"]);
    assert!(r.status.success());
    for _ in 0..3 {
        send(Some(spoof), "forged-ip");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mid = t.node.stats("a").unwrap().dropped_spoofed;
    assert!(
        mid >= before + 3,
        "spoof drop counter {before} -> {mid} after 3 forged-IP packets"
    );
    // A forged MAC with the right IP.
    let r = a.run(&[
        "ip",
        "link",
        "set",
        "dev",
        "eth0",
        "address",
        "02:00:00:00:00:99",
    ]);
    assert!(r.status.success());
    for _ in 0..3 {
        send(None, "forged-mac");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = t.node.stats("a").unwrap().dropped_spoofed;
    let got = rx.stop();
    assert!(
        got.contains("genuine"),
        "the genuine packet did not arrive: {got:?}"
    );
    assert!(!got.contains("forged"), "a forged packet arrived: {got:?}");
    // A new MAC flushes the slice's neighbour cache: its ARP request (forged sender MAC) is
    // the first frame dropped; the UDP packets wait behind it and never leave.
    assert!(
        after > mid,
        "spoof drop counter {mid} -> {after} after the MAC change"
    );
}

#[test]
fn slice_root_cannot_touch_the_host_side() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|_| {});
    let a = SliceNs::new("a");
    let b = SliceNs::new("b");
    let mut spec = bridge_spec();
    spec.egress_rate = Some(10_000_000);
    spec.ingress_rate = Some(10_000_000);
    let net = attach(&t, &a, &spec);
    let nb = attach(&t, &b, &bridge_spec());
    let veth = net.host_veth.clone().unwrap();
    let (out_ifb, in_ifb) = t.node.ifb_names();
    let snapshot = || {
        (
            run_ok("tc", &["qdisc", "show", "dev", &veth]),
            run_ok("tc", &["filter", "show", "dev", &veth, "ingress"]),
            run_ok("tc", &["filter", "show", "dev", &veth, "egress"]),
            run_ok("tc", &["class", "show", "dev", &out_ifb]),
            run_ok("tc", &["class", "show", "dev", &in_ifb]),
            run_ok("nft", &["list", "table", "bridge", &t.node.nft_table]),
        )
    };
    let before = snapshot();

    // It is root in its namespace: it can change its own side...
    let own = a.sh("tc qdisc del dev eth0 root 2>/dev/null; \
         tc qdisc add dev eth0 root handle 1: htb default 1 && \
         tc class add dev eth0 parent 1: classid 1:1 htb rate 10gbit && \
         tc qdisc del dev eth0 root && \
         ip link set dev eth0 txqueuelen 10000 && echo own-ok");
    assert!(
        String::from_utf8_lossy(&own.stdout).contains("own-ok"),
        "the slice root could not manage its own eth0: {}",
        String::from_utf8_lossy(&own.stderr)
    );
    // ...but nothing on the host side.
    for attack in [
        format!("tc qdisc del dev {veth} root"),
        format!("tc qdisc del dev {veth} clsact"),
        format!("tc class change dev {out_ifb} classid 1:2 htb rate 10gbit"),
        format!("ip link set dev {veth} nomaster"),
        format!("ip link del dev {out_ifb}"),
        "ip link set dev eth0 netns 1".to_string(),
        "nsenter --net=/proc/1/ns/net true".to_string(),
        format!("nft delete table bridge {}", t.node.nft_table),
    ] {
        let r = a.sh(&attack);
        assert!(!r.status.success(), "slice root succeeded at: {attack}");
    }
    assert_eq!(snapshot(), before, "host-side shaping or rules changed");

    // The caps still hold after the slice's own tc changes.
    let gw = t.gateway();
    let p = port(22000, &t);
    let mut s = spec.clone();
    s.allow.host_ports.push(HostPort {
        port: p,
        proto: Proto::Tcp,
    });
    t.node.update("a", &s).unwrap();
    let _srv = iperf3_server(gw, p);
    let up = iperf3_client(&a, gw, p, 3, false);
    let down = iperf3_client(&a, gw, p, 3, true);
    eprintln!(
        "after attack: up {:.2} Mbit/s down {:.2} Mbit/s (wire)",
        up.wire_bps() / 1e6,
        down.wire_bps() / 1e6
    );
    assert!(up.wire_bps() < 10_500_000.0, "egress cap lifted: {up:?}");
    assert!(
        down.wire_bps() < 10_500_000.0,
        "ingress cap lifted: {down:?}"
    );

    // Changing its address or routing around the host does not help it either.
    let ipb = nb.address.unwrap();
    let stolen = Ipv4Addr::new(10, 214, t.n, 250);
    let r = a.sh(&format!(
        "ip addr flush dev eth0 && ip addr add {stolen}/24 dev eth0 && ip route add default via {gw}"
    ));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let _srv_b = tcp_server_in_slice(&b, 9100, "b-ok");
    assert_eq!(tcp_from_slice(&a, ipb, 9100), None);
    let ping = a.run(&["busybox", "ping", "-c", "1", "-W", "1", &gw.to_string()]);
    assert!(
        !ping.status.success(),
        "a stolen address reached the gateway"
    );
    assert!(t.node.stats("a").unwrap().dropped_spoofed > 0);
    // The host re-asserts the slice's address on the next attach.
    attach(&t, &a, &s);
    let ping = a.run(&["busybox", "ping", "-c", "1", "-W", "2", &gw.to_string()]);
    assert!(
        ping.status.success(),
        "re-attach did not restore the address"
    );
}

#[test]
fn nothing_remains_after_teardown() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let t = TestNode::new(|n| {
        n.node_egress_rate = Some(50_000_000);
        n.node_ingress_rate = Some(50_000_000);
    });
    let mut slices = Vec::new();
    for i in 0..3 {
        let s = SliceNs::new(&format!("s{i}"));
        let mut spec = bridge_spec();
        spec.egress_rate = Some(5_000_000);
        spec.ports.push(PortForward {
            host_port: port(23000, &t) + i,
            slice_port: 80,
            proto: Proto::Udp,
        });
        attach(&t, &s, &spec);
        slices.push(s);
    }
    assert!(!t.leftover_links().is_empty());
    t.node.teardown().unwrap();
    assert_eq!(t.leftover_links(), Vec::<String>::new());
    assert!(!t.nft_table_exists());
    // The slices' namespaces have no eth0 left, and die with their process.
    let pids: Vec<u32> = slices.iter().map(|s| s.pid()).collect();
    for s in &slices {
        assert!(!s
            .run(&["ip", "link", "show", "dev", "eth0"])
            .status
            .success());
    }
    drop(slices);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "slice process {pid} still there"
        );
    }
    // A node restart rebuilds from the state.
    t.node.ensure().unwrap();
    assert!(t.nft_table_exists());
    let _ = Command::new("true").status();
}
