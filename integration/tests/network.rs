//! Slices on the node network (bridge mode), through the lifecycle library with real slices:
//! reachability as the policy says, port forwards, anti-spoofing, caps the slice's root cannot
//! lift, and nothing left after destroy. The shaping rates themselves are measured with iperf3
//! by runtime/tests/net_shaping.rs (the image here has no iperf3).
use std::process::Command;
use vslice::config::{NetSettings, Paths};
use vslice::net::{NetMode, NetSpec, PortForward, Proto};
use vslice::slice::{CreateRequest, Limits, Manager};
use vslice_integration::{bin_dir, repo_dir, Env};

struct NetEnv {
    env: Env,
    m: Manager,
    bridge: String,
    table: String,
}

impl NetEnv {
    fn new() -> NetEnv {
        let env = Env::new();
        let n = std::process::id() % 200;
        let tag = env.prefix.clone();
        let bridge = format!("vst{n}{tag}");
        let table = format!("vslice_t{n}{tag}");
        let third = 16
            * ((n as usize * 3 + tag.trim_start_matches('t').parse::<usize>().unwrap_or(0)) % 16);
        let paths = Paths {
            root: env.root.clone(),
            cgroup_parent: env.cgroup_parent.clone(),
            policy_dir: repo_dir().join("policies"),
            shim: bin_dir().join("vslice-shim"),
            net: NetSettings {
                bridge: Some(bridge.clone()),
                subnet: Some(format!("10.214.{third}.0/20")),
                nft_table: Some(table.clone()),
                veth_prefix: Some(format!("vst{tag}")),
                node_egress_rate: None,
                node_ingress_rate: None,
                set_global_ip_forward: false,
            },
        };
        NetEnv {
            m: Manager::new(paths),
            env,
            bridge,
            table,
        }
    }

    fn slice(&self, base: &str, net: NetSpec) -> (String, std::net::Ipv4Addr) {
        let name = self.env.name(base);
        let req = CreateRequest {
            name: name.clone(),
            net,
            start: true,
            limits: Limits::default(),
            ..Default::default()
        };
        let info = self
            .m
            .create(&req)
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        let addr = info
            .net
            .as_ref()
            .and_then(|n| n.address)
            .expect("bridge slice has an address");
        (name, addr)
    }

    fn sh(&self, name: &str, script: &str) -> (i32, String) {
        let o = self.env.run(&["exec", name, "--", "/bin/sh", "-c", script]);
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

impl Drop for NetEnv {
    fn drop(&mut self) {
        for s in self.m.list().unwrap_or_default() {
            let _ = self.m.destroy(&s.spec.name);
        }
        if let Ok(net) = self.m.node_net() {
            let _ = net.teardown();
        }
    }
}

fn bridge_spec() -> NetSpec {
    NetSpec {
        mode: NetMode::Bridge,
        ..Default::default()
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn bridge_slices_reach_the_gateway_not_each_other_and_are_held_to_their_address() {
    let ne = NetEnv::new();
    let (a, addr_a) = ne.slice("a", bridge_spec());
    let (b, addr_b) = ne.slice("b", bridge_spec());
    let gw = ne.m.node_net().unwrap().gateway();
    // /etc/hosts written into the slice; an address on eth0; default route via the gateway.
    let (code, out) = ne.sh(&a, "ip -4 addr show eth0; ip route; cat /etc/hosts");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&addr_a.to_string()) && out.contains(&format!("default via {gw}")),
        "{out}"
    );
    assert!(out.contains(&a), "/etc/hosts lacks the slice's name: {out}");
    assert_eq!(
        ne.sh(&a, &format!("ping -c1 -W2 {gw}")).0,
        0,
        "a slice must reach its gateway"
    );
    // Slice to slice is closed by default, both directions.
    assert_ne!(
        ne.sh(&a, &format!("ping -c1 -W1 {addr_b}")).0,
        0,
        "slice a reached slice b"
    );
    assert_ne!(
        ne.sh(&b, &format!("ping -c1 -W1 {addr_a}")).0,
        0,
        "slice b reached slice a"
    );
    // Spoofing: a's root takes b's address; its packets are dropped on the host side.
    let before =
        ne.m.inspect(&a)
            .unwrap()
            .net
            .unwrap()
            .counters
            .dropped_spoofed;
    let (code, out) = ne.sh(&a, &format!("ip addr flush dev eth0 && ip addr add {addr_b}/20 dev eth0 && ip route add default via {gw}; ping -c2 -W1 {gw}"));
    assert_ne!(code, 0, "a spoofed source got through: {out}");
    let after =
        ne.m.inspect(&a)
            .unwrap()
            .net
            .unwrap()
            .counters
            .dropped_spoofed;
    assert!(
        after > before,
        "spoofed frames were not counted as dropped ({before} -> {after})"
    );
    // b is unaffected.
    assert_eq!(ne.sh(&b, &format!("ping -c1 -W2 {gw}")).0, 0);
}

#[test]
fn port_forward_reaches_a_service_in_the_slice() {
    let ne = NetEnv::new();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let spec = NetSpec {
        ports: vec![PortForward {
            host_port: port,
            slice_port: 8080,
            proto: Proto::Tcp,
        }],
        ..bridge_spec()
    };
    let (s, _) = ne.slice("web", spec);
    assert_eq!(
        ne.sh(
            &s,
            "mkdir -p /www && echo hello-from-slice > /www/index.html && httpd -p 8080 -h /www"
        )
        .0,
        0
    );
    let gw = ne.m.node_net().unwrap().gateway();
    let mut body = String::new();
    for _ in 0..20 {
        let o = Command::new("curl")
            .args(["-s", "--max-time", "2", &format!("http://{gw}:{port}/")])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&o.stdout).into_owned();
        if body.contains("hello-from-slice") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        body.contains("hello-from-slice"),
        "port forward did not reach the slice: {body:?}"
    );
}

#[test]
fn the_slice_root_cannot_lift_its_caps_and_destroy_removes_everything() {
    let ne = NetEnv::new();
    let spec = NetSpec {
        egress_rate: Some(10_000_000),
        ingress_rate: Some(10_000_000),
        ..bridge_spec()
    };
    let (s, _) = ne.slice("cap", spec);
    let veth = ne.m.inspect(&s).unwrap().net.unwrap().host_veth;
    let qdiscs_before = String::from_utf8_lossy(
        &Command::new("tc")
            .args(["qdisc", "show", "dev", &veth])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        qdiscs_before.contains("htb") || qdiscs_before.contains("clsact"),
        "no host-side shaping on {veth}: {qdiscs_before}"
    );
    // Root inside has CAP_NET_ADMIN over its own namespace only.
    let (_, out) = ne.sh(&s, "tc qdisc del dev eth0 root; tc qdisc add dev eth0 root pfifo; ip link set eth0 mtu 9000; ip link add x type dummy; ip link show");
    assert!(
        !out.contains(&veth),
        "the slice sees the host's veth: {out}"
    );
    let qdiscs_after = String::from_utf8_lossy(
        &Command::new("tc")
            .args(["qdisc", "show", "dev", &veth])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert_eq!(
        qdiscs_before, qdiscs_after,
        "host-side qdiscs changed from inside the slice"
    );
    // Raising its own rate goes through the operator only.
    ne.m.update_limits(
        &s,
        &vslice::slice::LimitsPatch {
            egress_rate: Some(20_000_000),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        ne.m.inspect(&s).unwrap().spec.net.egress_rate,
        Some(20_000_000)
    );
    ne.m.destroy(&s).unwrap();
    assert!(!link_exists(&veth), "host veth {veth} left after destroy");
    let net = ne.m.node_net().unwrap();
    net.teardown().unwrap();
    assert!(!link_exists(&ne.bridge), "bridge left after teardown");
    let tables = String::from_utf8_lossy(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!tables.contains(&ne.table), "nft table left: {tables}");
}
