//! A thousand networked slices on one node: attach them all (capped both ways, some with port
//! forwards, some open to each other), detach them all, and after the steps check the
//! kernel's tc and nftables state against what the test itself attached — read from the
//! kernel (tc, nft -j, /sys), not from vslice's state — so that an orphan class, filter,
//! leaf, map or set element, chain, counter or link fails the test.
//!
//! Namespaces are cheap here: a thread unshares a network namespace and keeps an fd to it
//! (`/proc/<pid>/fd/<n>` is the path given to attach); nothing to unmount, nothing left if
//! the test dies. `VSLICE_NET_SCALE_N` overrides the count (default 1000).
mod net_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

use net_support::*;
use vslice::net::{NetSpec, PortForward, Proto};

/// A network namespace held open by an fd of this process.
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

#[derive(Clone)]
struct Want {
    veth: String,
    ip: Ipv4Addr,
    id: u32,
    ports: Vec<u16>,
    open: bool,
}

fn spec_for(i: usize, base_port: u16) -> (NetSpec, Vec<u16>, bool) {
    let mut spec = bridge_spec();
    spec.egress_rate = Some(10_000_000);
    spec.ingress_rate = Some(20_000_000);
    let mut ports = Vec::new();
    if i % 10 == 3 {
        let p = base_port + i as u16;
        spec.ports.push(PortForward {
            host_port: p,
            slice_port: 80,
            proto: Proto::Tcp,
        });
        ports.push(p);
    }
    let open = i % 50 == 7;
    if open {
        spec.allow.slices = vec!["*".into()];
    }
    (spec, ports, open)
}

fn run_out(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_key(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => {
            if let Some(c) = o.get("concat").and_then(|c| c.as_array()) {
                c.iter().map(json_key).collect::<Vec<_>>().join(" . ")
            } else if let Some(e) = o.get("elem") {
                json_key(e.get("val").unwrap_or(e))
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// Chains, counters, and the keys of every set/map (with "key => target" for verdict maps)
/// of one table.
#[derive(Debug, Default, PartialEq)]
struct Table {
    chains: BTreeSet<String>,
    counters: BTreeSet<String>,
    sets: BTreeMap<String, BTreeSet<String>>,
}

fn read_table(family: &str, table: &str) -> Table {
    let v: serde_json::Value =
        serde_json::from_str(&run_out(&["nft", "-j", "list", "table", family, table])).unwrap();
    let mut t = Table::default();
    for item in v["nftables"].as_array().unwrap() {
        if let Some(n) = item.pointer("/chain/name").and_then(|n| n.as_str()) {
            t.chains.insert(n.into());
        }
        if let Some(n) = item.pointer("/counter/name").and_then(|n| n.as_str()) {
            t.counters.insert(n.into());
        }
        for kind in ["set", "map"] {
            let Some(s) = item.get(kind) else { continue };
            let name = s["name"].as_str().unwrap().to_string();
            let mut keys = BTreeSet::new();
            for e in s
                .get("elem")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
            {
                let k = match e.as_array() {
                    // map: [key, verdict]
                    Some(kv) => {
                        let target = kv[1]
                            .pointer("/jump/target")
                            .and_then(|x| x.as_str())
                            .unwrap_or("?");
                        format!("{} => {target}", json_key(&kv[0]))
                    }
                    None => json_key(e),
                };
                keys.insert(k);
            }
            t.sets.insert(name, keys);
        }
    }
    t
}

fn tc_ids(args: &[&str], prefix: &str) -> BTreeSet<String> {
    let out = run_out(args);
    let mut ids = BTreeSet::new();
    let mut w = out.split_whitespace();
    while let Some(x) = w.next() {
        if x == prefix {
            if let Some(id) = w.next() {
                ids.insert(id.to_string());
            }
        }
    }
    ids
}

/// Compare the kernel with `want` (the attached slices); every difference is an error line.
fn check(t: &TestNode, want: &BTreeMap<String, Want>, step: &str) {
    let mut errs = Vec::new();
    let node = &t.node;
    let tb = &node.nft_table;
    // Links: exactly the attached veths, each on the bridge.
    let mut links = BTreeSet::new();
    for e in std::fs::read_dir("/sys/class/net").unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        if n.starts_with(&node.veth_prefix) {
            links.insert(n);
        }
    }
    let want_links: BTreeSet<String> = want.values().map(|w| w.veth.clone()).collect();
    if links != want_links {
        errs.push(format!(
            "links: extra {:?} missing {:?}",
            links.difference(&want_links).collect::<Vec<_>>(),
            want_links.difference(&links).collect::<Vec<_>>()
        ));
    }
    // tc: classes, leaves and hashed filters of both IFBs are exactly the slices'.
    let (o, i) = node.ifb_names();
    for ifb in [&o, &i] {
        let mut want_classes: BTreeSet<String> =
            want.values().map(|w| format!("1:{:x}", w.id)).collect();
        want_classes.insert("1:1".into());
        let classes = tc_ids(&["tc", "class", "show", "dev", ifb], "htb");
        if classes != want_classes {
            errs.push(format!(
                "{ifb} classes: extra {:?} missing {:?}",
                classes.difference(&want_classes).collect::<Vec<_>>(),
                want_classes.difference(&classes).collect::<Vec<_>>()
            ));
        }
        let mut leaves = tc_ids(&["tc", "qdisc", "show", "dev", ifb], "parent");
        leaves.remove("1:"); // (none expected; the root has no parent word)
        let want_leaves: BTreeSet<String> =
            want.values().map(|w| format!("1:{:x}", w.id)).collect();
        if leaves != want_leaves {
            errs.push(format!(
                "{ifb} leaves: extra {:?} missing {:?}",
                leaves.difference(&want_leaves).collect::<Vec<_>>(),
                want_leaves.difference(&leaves).collect::<Vec<_>>()
            ));
        }
        let filters: BTreeSet<String> =
            tc_ids(&["tc", "filter", "show", "dev", ifb, "parent", "1:"], "fh")
                .into_iter()
                .filter(|h| h.split(':').nth(2).is_some_and(|n| !n.is_empty()))
                .collect();
        let mut want_filters: BTreeSet<String> = want
            .values()
            .map(|w| match w.ip.octets()[3] {
                // tc prints bucket 0 as empty: `2::<id>`.
                0 => format!("2::{:x}", w.id),
                b => format!("2:{b:x}:{:x}", w.id),
            })
            .collect();
        want_filters.insert("800::1".into()); // the hashing root filter
        if filters != want_filters {
            errs.push(format!(
                "{ifb} filters: extra {:?} missing {:?}",
                filters.difference(&want_filters).collect::<Vec<_>>(),
                want_filters.difference(&filters).collect::<Vec<_>>()
            ));
        }
    }
    // nftables: per-slice chains and counters, dispatch elements, pairs, forwards.
    let opened: Vec<&Want> = want.values().filter(|w| w.open).collect();
    let b = read_table("bridge", tb);
    let mut chains: BTreeSet<String> = ["prerouting", "forward"].map(String::from).into();
    let mut counters = BTreeSet::new();
    let mut from = BTreeSet::new();
    let mut iso = BTreeSet::new();
    let mut ports = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    for w in want.values() {
        let v = &w.veth;
        chains.extend([format!("from_{v}"), format!("iso_{v}")]);
        counters.extend([
            format!("spoof_{v}"),
            format!("nonip_{v}"),
            format!("iso_{v}"),
        ]);
        from.insert(format!("{v} => from_{v}"));
        iso.insert(format!("{v} => iso_{v}"));
        ports.insert(v.clone());
    }
    for a in &opened {
        for c in &opened {
            if a.veth != c.veth {
                pairs.insert(format!("{} . {}", a.veth, c.veth));
            }
        }
    }
    let want_b = Table {
        chains,
        counters,
        sets: BTreeMap::from([
            ("port_from".into(), from),
            ("port_iso".into(), iso),
            ("ports".into(), ports),
            ("port_pairs".into(), pairs),
        ]),
    };
    diff_table("bridge", &b, &want_b, &mut errs);
    let inet = read_table("inet", tb);
    let mut chains: BTreeSet<String> = [
        "flowmark",
        "prerouting_nat",
        "output_nat",
        "postrouting_nat",
        "input",
        "forward",
        "port_forwards",
        "from_slices",
        "between_slices",
        "to_slices",
    ]
    .map(String::from)
    .into();
    let mut counters = BTreeSet::new();
    let mut host = BTreeSet::new();
    let mut peer = BTreeSet::new();
    let mut fwd = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    for w in want.values() {
        let v = &w.veth;
        chains.extend([format!("host_{v}"), format!("peer_{v}"), format!("fwd_{v}")]);
        counters.insert(format!("blocked_{v}"));
        host.insert(format!("{} => host_{v}", w.ip));
        peer.insert(format!("{} => peer_{v}", w.ip));
        for p in &w.ports {
            fwd.insert(format!("tcp . {p} => fwd_{v}"));
        }
    }
    for a in &opened {
        for c in &opened {
            if a.veth != c.veth {
                pairs.insert(format!("{} . {}", a.ip, c.ip));
            }
        }
    }
    let want_i = Table {
        chains,
        counters,
        sets: BTreeMap::from([
            ("addr_host".into(), host),
            ("addr_peer".into(), peer),
            ("addr_pairs".into(), pairs),
            ("fwd_port".into(), fwd),
        ]),
    };
    diff_table("inet", &inet, &want_i, &mut errs);
    assert!(
        errs.is_empty(),
        "{step}: kernel state differs from the {} attached slices:\n{}",
        want.len(),
        errs.join("\n")
    );
}

fn diff_table(family: &str, have: &Table, want: &Table, errs: &mut Vec<String>) {
    let d = |what: &str, h: &BTreeSet<String>, w: &BTreeSet<String>, errs: &mut Vec<String>| {
        if h != w {
            let extra: Vec<_> = h.difference(w).take(5).collect();
            let missing: Vec<_> = w.difference(h).take(5).collect();
            errs.push(format!(
                "{family} {what}: extra {extra:?} missing {missing:?}"
            ));
        }
    };
    d("chains", &have.chains, &want.chains, errs);
    d("counters", &have.counters, &want.counters, errs);
    let names: BTreeSet<&String> = have.sets.keys().chain(want.sets.keys()).collect();
    let empty = BTreeSet::new();
    for n in names {
        d(
            &format!("set {n}"),
            have.sets.get(n).unwrap_or(&empty),
            want.sets.get(n).unwrap_or(&empty),
            errs,
        );
    }
}

/// Check after the first steps, every `every` steps, and at the last one: a full check reads
/// the whole kernel state (it grows with the slice count).
fn check_now(k: usize, n: usize) -> bool {
    k < 12 || k.is_multiple_of(97) || k + 1 == n
}

#[test]
fn thousand_slices_attach_and_detach_without_orphans() {
    if !need_root() {
        return;
    }
    let n: usize = std::env::var("VSLICE_NET_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let pid = std::process::id();
    // A /20 of its own (4094 addresses): 10.217.{16k}.0/20.
    let third = (pid % 16) * 16;
    let t = TestNode::new(|node| {
        node.subnet = format!("10.217.{third}.0/20").parse().unwrap();
    });
    let base_port = 20000 + (pid % 20) as u16 * 1000;
    let mut want: BTreeMap<String, Want> = BTreeMap::new();
    let mut nss = Vec::new();
    check(&t, &want, "empty");
    for k in 0..n {
        let name = format!("s{k}");
        let ns = NsFd::new();
        let (spec, ports, open) = spec_for(k, base_port);
        let got = t.node.attach(&name, ns.path(), &spec).unwrap();
        nss.push(ns);
        let ip = got.address.unwrap();
        want.insert(
            name,
            Want {
                veth: got.host_veth.unwrap(),
                ip,
                id: u32::from(ip) - (u32::from(t.node.subnet.host(1).unwrap()) - 1),
                ports,
                open,
            },
        );
        if check_now(k, n) {
            check(&t, &want, &format!("after attach {k}"));
        }
    }
    // Re-attach of an attached slice converges without duplicates.
    let first = "s0".to_string();
    let (spec, _, _) = spec_for(0, base_port);
    t.node.attach(&first, nss[0].path(), &spec).unwrap();
    check(&t, &want, "after re-attach of s0");
    // Detach: every other slice first (holes all over), then the rest.
    let order: Vec<usize> = (0..n).step_by(2).chain((1..n).step_by(2)).collect();
    for (k, i) in order.iter().enumerate() {
        let name = format!("s{i}");
        t.node.detach(&name).unwrap();
        want.remove(&name);
        if check_now(k, n) {
            check(&t, &want, &format!("after detach {k} ({name})"));
        }
    }
    assert!(want.is_empty());
    check(&t, &want, "all detached");
    for k in 0..n {
        t.node.release(&format!("s{k}")).unwrap();
    }
    drop(nss);
    assert!(t.node.allocations().unwrap().is_empty());
}
