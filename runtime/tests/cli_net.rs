//! The CLI's network flags against a real `vsliced`: `--net bridge`, `-p`, rates and weight
//! reach the slice's spec and the kernel, `set` changes rates live. The daemon gets a private
//! bridge, nftables table, veth prefix and subnet (through its environment), and the node
//! network is torn down on drop. One test in this binary: it sets the process environment
//! that the daemon it starts inherits.
mod daemon_support;

use daemon_support::*;
use serde_json::Value;
use std::process::Command;

struct Net {
    node: vslice::net::NodeNet,
}

/// The daemon and its private node network; on drop the daemon is killed first (so it does
/// not re-create what is removed), then the node network goes, then the daemon's harness
/// removes slices, cgroups and the state root.
struct Env {
    d: TestDaemon,
    net: Net,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.d.kill9();
        if let Err(e) = self.net.node.teardown() {
            eprintln!("node network teardown: {e}");
        }
    }
}

fn vslice(d: &TestDaemon, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vslice"))
        .args(args)
        .env("VSLICE_SOCKET", &d.socket)
        .env_remove("VSLICE_DIRECT")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(d: &TestDaemon, args: &[&str]) -> String {
    let (code, out, err) = vslice(d, args);
    assert_eq!(code, 0, "vslice {args:?}:\n{out}\n{err}");
    out
}

#[test]
fn network_flags_reach_the_slice() {
    for tool in ["ip", "tc", "nft"] {
        assert!(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false),
            "{tool} is needed"
        );
    }
    let pid = std::process::id();
    let tag = format!("{:x}", pid % 0xffff);
    let n = pid % 250 + 1;
    let (bridge, table, prefix, subnet) = (
        format!("vst{tag}"),
        format!("vslice_tc{tag}"),
        format!("vst{tag}v"),
        format!("10.216.{n}.0/24"),
    );
    // The only test of this binary: no other thread reads the environment now.
    std::env::set_var("VSLICE_BRIDGE", &bridge);
    std::env::set_var("VSLICE_NFT_TABLE", &table);
    std::env::set_var("VSLICE_VETH_PREFIX", &prefix);
    std::env::set_var("VSLICE_SUBNET", &subnet);
    std::env::set_var("VSLICE_IP_FORWARD", "0");
    let d = TestDaemon::start();
    let mut node = vslice::net::NodeNet::new(d.root.join("net"));
    node.bridge = bridge.clone();
    node.nft_table = table.clone();
    node.veth_prefix = prefix.clone();
    node.subnet = subnet.parse().unwrap();
    node.set_global_ip_forward = false;
    let env = Env {
        d,
        net: Net { node },
    };
    let d = &env.d;

    let info: Value = serde_json::from_str(&ok(
        d,
        &[
            "create",
            "web",
            "--json",
            "-p",
            "18080:80",
            "--publish",
            "15353:53/udp",
            "--egress-rate",
            "10mbit",
            "--ingress-rate",
            "20mbit",
            "--net-weight",
            "3",
            "--init",
            "/bin/sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 1; done",
        ],
    ))
    .unwrap();
    let net = &info["spec"]["net"];
    assert_eq!(net["mode"], "bridge", "-p implies bridge: {net}");
    assert_eq!(net["egress_rate"], 10_000_000);
    assert_eq!(net["ingress_rate"], 20_000_000);
    assert_eq!(net["weight"], 3);
    assert_eq!(net["ports"][0]["host_port"], 18080);
    assert_eq!(net["ports"][0]["slice_port"], 80);
    assert_eq!(net["ports"][1]["proto"], "udp");

    // The slice has eth0 in the private subnet, and the gateway answers.
    let addr = ok(
        d,
        &[
            "exec", "web", "--", "ip", "-4", "-o", "addr", "show", "eth0",
        ],
    );
    let prefix24 = subnet.trim_end_matches("0/24");
    assert!(addr.contains(&format!("inet {prefix24}")), "{addr}");
    // The forward is in the private table.
    let rules = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(rules.contains("18080"), "{rules}");

    // Rates change live.
    let info: Value =
        serde_json::from_str(&ok(d, &["set", "web", "--egress-rate", "5mbit", "--json"])).unwrap();
    assert_eq!(info["spec"]["net"]["egress_rate"], 5_000_000, "{info}");
    let (code, _, err) = vslice(d, &["set", "web", "--egress-rate", "1bit"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("egress_rate"), "{err}");

    // An explicit `--net none` with a port forward is refused, naming the field.
    let (code, _, err) = vslice(d, &["create", "x", "--net", "none", "-p", "8080:80"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("net.ports"), "{err}");

    ok(d, &["rm", "web"]);
    d.assert_consistent();
    drop(env);
    // Nothing of the node network is left.
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(&format!(": {bridge}")), "{links}");
    assert!(!links.contains(&format!(": {prefix}")), "{links}");
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains(&table));
}
