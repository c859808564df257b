//! The nftables rules of a node: two tables with the same name (default `vslice`), one in the
//! `bridge` family (layer 2: anti-spoofing and slice-to-slice isolation on the bridge ports)
//! and one in the `inet` family (layer 3: NAT, port forwards, what slices may reach on the host
//! and what is routed between slices).
//!
//! The whole rule set is rendered from the state and applied in one `nft -f` transaction:
//! `flush table` (rules go, chains and named counters stay, so counters keep counting) followed
//! by the rules of the slices now active; chains and counters of slices no longer active are
//! deleted in the same transaction. Applying twice gives the same result (idempotent), and a
//! failure changes nothing (atomic).
//!
//! Why the bridge family rather than `br_netfilter`: `br_netfilter` is a host-wide switch
//! (`net.bridge.bridge-nf-call-iptables`) that sends every bridged packet of every bridge on the
//! host through the IP hooks, with the bridge (not the port) as the input interface; rules
//! there cannot tell which slice a frame came from. The bridge family sees the port
//! (`iifname vsN`) and the Ethernet/ARP headers, so the MAC, ARP and IP source of each port are
//! pinned there, before any IP processing. It needs no conntrack (the kernel here has no
//! `nf_conntrack_bridge`), which is why slice-to-slice openings are symmetric. Whether or not
//! `br_netfilter` is on, the IP-level rules agree: with it on, bridged slice-to-slice packets
//! also meet the `between_slices` chain below, which allows exactly the same pairs.
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::cmd::{run, run_input, Result};
use super::spec::{NetSpec, Proto};
use super::state::{NetState, SliceEntry};

/// Bits of a flow mark that name the node (its nftables table); the rest is the slice's id.
pub const FLOW_MARK_MASK: u32 = 0xffff_f000;

/// The mark prefix of a node: 0x76 and 12 bits of a hash of the table name, so that two
/// nodes on one host (tests) do not share marks.
pub fn flow_mark_prefix(table: &str) -> u32 {
    // FNV-1a: stable across builds (unlike std's hasher).
    let mut h: u32 = 0x811c_9dc5;
    for b in table.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    0x7600_0000 | ((h & 0xfff) << 12)
}

/// The conntrack mark of the flows of the slice with address id `id` (ids stay below 4096:
/// subnets are /20 or smaller).
pub fn flow_mark(table: &str, id: u32) -> u32 {
    flow_mark_prefix(table) | (id & 0xfff)
}

/// What the renderer needs to know about the node.
pub(crate) struct NftNode<'a> {
    pub table: &'a str,
    pub bridge: &'a str,
    pub subnet: String,
    pub gateway: Ipv4Addr,
}

fn allows(spec: &NetSpec, other: &str) -> bool {
    spec.allow.slices.iter().any(|s| s == "*" || s == other)
}

/// Pairs of active slices open to each other (both list each other).
pub(crate) fn open_pairs(state: &NetState) -> Vec<(&SliceEntry, &SliceEntry)> {
    let active: Vec<(&String, &SliceEntry)> = state.active().collect();
    let mut pairs = Vec::new();
    for (i, (na, a)) in active.iter().enumerate() {
        for (nb, b) in active.iter().skip(i + 1) {
            if allows(&a.spec, nb) && allows(&b.spec, na) {
                pairs.push((*a, *b));
            }
        }
    }
    pairs
}

fn counters_of(e: &SliceEntry) -> ([String; 3], String) {
    let v = &e.veth;
    (
        [
            format!("spoof_{v}"),
            format!("nonip_{v}"),
            format!("iso_{v}"),
        ],
        format!("blocked_{v}"),
    )
}

/// Named maps and sets that dispatch to the per-slice chains, with their declarations. The
/// dispatch rules are fixed and refer to these; a slice's attach or detach only adds or
/// deletes its chains and its elements here (see [`render_attach`]), so its cost does not
/// grow with the number of slices, and classification is a hash lookup, not a rule walk.
const BRIDGE_SETS: [(&str, &str); 4] = [
    ("port_from", "type ifname : verdict;"),
    ("port_iso", "type ifname : verdict;"),
    ("ports", "type ifname;"),
    ("port_pairs", "type ifname . ifname;"),
];
const INET_SETS: [(&str, &str); 4] = [
    ("addr_host", "type ipv4_addr : verdict;"),
    ("addr_peer", "type ipv4_addr : verdict;"),
    ("addr_pairs", "type ipv4_addr . ipv4_addr;"),
    ("fwd_port", "type inet_proto . inet_service : verdict;"),
];

fn declare_sets(w: &mut String, family: &str, t: &str, sets: &[(&str, &str)], flush: bool) {
    for (name, decl) in sets {
        let kind = if decl.contains(':') { "map" } else { "set" };
        let _ = writeln!(w, "add {kind} {family} {t} {name} {{ {decl} }}");
        if flush {
            let _ = writeln!(w, "flush {kind} {family} {t} {name}");
        }
    }
}

/// The chains, counters and rules of one slice in the bridge table (re-rendered whole: the
/// chains are flushed first, so this is also a convergent update of an existing slice).
fn render_slice_bridge(w: &mut String, node: &NftNode, e: &SliceEntry) {
    let t = node.table;
    let ([spoof, nonip, iso], _) = counters_of(e);
    let v = &e.veth;
    for c in [&spoof, &nonip, &iso] {
        let _ = writeln!(w, "add counter bridge {t} {c}");
    }
    let ch = format!("from_{v}");
    let _ = writeln!(w, "add chain bridge {t} {ch}");
    let _ = writeln!(w, "flush chain bridge {t} {ch}");
    let (mac, ip) = (&e.mac, e.ip);
    // Only IPv4 and ARP leave a slice (no IPv6: the slice network is IPv4-only).
    let _ = writeln!(
        w,
        "add rule bridge {t} {ch} ether type != {{ ip, arp }} counter name \"{nonip}\" drop"
    );
    let _ = writeln!(
        w,
        "add rule bridge {t} {ch} ether saddr != {mac} counter name \"{spoof}\" drop"
    );
    let _ = writeln!(
        w,
        "add rule bridge {t} {ch} arp saddr ether != {mac} counter name \"{spoof}\" drop"
    );
    let _ = writeln!(
        w,
        "add rule bridge {t} {ch} arp saddr ip != {ip} counter name \"{spoof}\" drop"
    );
    let _ = writeln!(
        w,
        "add rule bridge {t} {ch} ether type arp limit rate over 50/second burst 100 packets drop"
    );
    let _ = writeln!(
        w,
        "add rule bridge {t} {ch} ip saddr != {ip} counter name \"{spoof}\" drop"
    );
    // Flow accounting: the port a frame came in on, as a mark (copied to the conntrack
    // entry in the inet table); never derived from the source address.
    let _ = writeln!(
        w,
        "add rule bridge {t} {ch} meta mark set {:#x}",
        flow_mark(t, e.id)
    );
    let ich = format!("iso_{v}");
    let _ = writeln!(w, "add chain bridge {t} {ich}");
    let _ = writeln!(w, "flush chain bridge {t} {ich}");
    let _ = writeln!(
        w,
        "add rule bridge {t} {ich} ether type ip counter name \"{iso}\" drop"
    );
    let _ = writeln!(w, "add rule bridge {t} {ich} drop");
}

/// The chains, counters and rules of one slice in the inet table (flushed first, like
/// [`render_slice_bridge`]).
fn render_slice_inet(w: &mut String, node: &NftNode, e: &SliceEntry) {
    let t = node.table;
    let gw = node.gateway;
    let (_, blocked) = counters_of(e);
    let v = &e.veth;
    let _ = writeln!(w, "add counter inet {t} {blocked}");
    let ch = format!("host_{v}");
    let _ = writeln!(w, "add chain inet {t} {ch}");
    let _ = writeln!(w, "flush chain inet {t} {ch}");
    for proto in [Proto::Tcp, Proto::Udp] {
        let ports: BTreeSet<u16> = e
            .spec
            .allow
            .host_ports
            .iter()
            .filter(|p| p.proto == proto)
            .map(|p| p.port)
            .collect();
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            let _ = writeln!(
                w,
                "add rule inet {t} {ch} {} dport {{ {} }} accept",
                proto.as_str(),
                list.join(", ")
            );
        }
    }
    // Ping of the gateway, for diagnostics; rate limited.
    let _ = writeln!(
        w,
        "add rule inet {t} {ch} ip daddr {gw} icmp type echo-request limit rate 10/second accept"
    );
    let _ = writeln!(w, "add rule inet {t} {ch} counter name \"{blocked}\" drop");
    let fch = format!("peer_{v}");
    let _ = writeln!(w, "add chain inet {t} {fch}");
    let _ = writeln!(w, "flush chain inet {t} {fch}");
    let _ = writeln!(w, "add rule inet {t} {fch} counter name \"{blocked}\" drop");
    // Port forwards of the slice, reached through the fwd_port map (protocol . port).
    let pch = format!("fwd_{v}");
    let _ = writeln!(w, "add chain inet {t} {pch}");
    let _ = writeln!(w, "flush chain inet {t} {pch}");
    for p in &e.spec.ports {
        let _ = writeln!(
            w,
            "add rule inet {t} {pch} {} dport {} ct mark set {:#x} dnat ip to {}:{}",
            p.proto.as_str(),
            p.host_port,
            flow_mark(t, e.id),
            e.ip,
            p.slice_port
        );
    }
}

/// Elements of the dispatch maps for slice `e`, and of the pair sets for its `pairs` (each
/// pair once; both directions are rendered). `verb` is `add` or `delete`.
fn render_elements(
    w: &mut String,
    node: &NftNode,
    verb: &str,
    e: &SliceEntry,
    pairs: &[(&SliceEntry, &SliceEntry)],
) {
    let t = node.table;
    let v = &e.veth;
    let del = verb == "delete";
    let val = |x: String| if del { String::new() } else { x };
    let _ = writeln!(
        w,
        "{verb} element bridge {t} port_from {{ \"{v}\"{} }}",
        val(format!(" : jump from_{v}"))
    );
    let _ = writeln!(
        w,
        "{verb} element bridge {t} port_iso {{ \"{v}\"{} }}",
        val(format!(" : jump iso_{v}"))
    );
    let _ = writeln!(w, "{verb} element bridge {t} ports {{ \"{v}\" }}");
    let _ = writeln!(
        w,
        "{verb} element inet {t} addr_host {{ {}{} }}",
        e.ip,
        val(format!(" : jump host_{v}"))
    );
    let _ = writeln!(
        w,
        "{verb} element inet {t} addr_peer {{ {}{} }}",
        e.ip,
        val(format!(" : jump peer_{v}"))
    );
    for p in &e.spec.ports {
        let _ = writeln!(
            w,
            "{verb} element inet {t} fwd_port {{ {} . {}{} }}",
            p.proto.as_str(),
            p.host_port,
            val(format!(" : jump fwd_{v}"))
        );
    }
    for p in pairs {
        render_elements_pairs(w, node, verb, p);
    }
}

/// Active slices open to `slice` (both list each other), as pairs (slice first).
fn pairs_of<'a>(state: &'a NetState, slice: &str) -> Vec<(&'a SliceEntry, &'a SliceEntry)> {
    let Some(me) = state.slices.get(slice) else {
        return Vec::new();
    };
    state
        .active()
        .filter(|(n, e)| n.as_str() != slice && allows(&me.spec, n) && allows(&e.spec, slice))
        .map(|(_, e)| (me, e))
        .collect()
}

/// The transaction that adds one slice (now active in `state`, before: not active) to rule
/// sets that are otherwise current: its chains and counters, its map and pair elements.
pub(crate) fn render_attach(node: &NftNode, state: &NetState, slice: &str) -> Option<String> {
    let e = state.slices.get(slice).filter(|e| e.active)?;
    let mut s = String::new();
    render_slice_bridge(&mut s, node, e);
    render_slice_inet(&mut s, node, e);
    render_elements(&mut s, node, "add", e, &pairs_of(state, slice));
    Some(s)
}

/// The transaction that removes one slice (still active in `state`) from current rule sets:
/// its elements, then its chains and counters.
pub(crate) fn render_detach(node: &NftNode, state: &NetState, slice: &str) -> Option<String> {
    let e = state.slices.get(slice).filter(|e| e.active)?;
    let t = node.table;
    let mut s = String::new();
    render_elements(&mut s, node, "delete", e, &pairs_of(state, slice));
    let w = &mut s;
    let v = &e.veth;
    let ([spoof, nonip, iso], blocked) = counters_of(e);
    for c in [format!("from_{v}"), format!("iso_{v}")] {
        let _ = writeln!(w, "flush chain bridge {t} {c}");
        let _ = writeln!(w, "delete chain bridge {t} {c}");
    }
    for c in [spoof, nonip, iso] {
        let _ = writeln!(w, "delete counter bridge {t} {c}");
    }
    for c in [format!("host_{v}"), format!("peer_{v}"), format!("fwd_{v}")] {
        let _ = writeln!(w, "flush chain inet {t} {c}");
        let _ = writeln!(w, "delete chain inet {t} {c}");
    }
    let _ = writeln!(w, "delete counter inet {t} {blocked}");
    Some(s)
}

/// Render the full transaction. `stale_*` are objects present in the kernel that the new rule
/// set does not use (deleted after the flush).
pub(crate) fn render(
    node: &NftNode,
    state: &NetState,
    stale_bridge: &Existing,
    stale_inet: &Existing,
) -> String {
    let t = node.table;
    let br = node.bridge;
    let active: Vec<&SliceEntry> = state.active().map(|(_, e)| e).collect();
    let pairs = open_pairs(state);
    let mut s = String::new();
    let w = &mut s;

    // ---- bridge family: per-port anti-spoofing, port-to-port isolation ----
    let _ = writeln!(w, "add table bridge {t}");
    let _ = writeln!(w, "flush table bridge {t}");
    // Emptied before the stale chains go: their elements reference them.
    declare_sets(w, "bridge", t, &BRIDGE_SETS, true);
    let want_b = wanted_bridge(&active);
    for c in stale_bridge.chains.difference(&want_b.chains) {
        let _ = writeln!(w, "delete chain bridge {t} {c}");
    }
    for c in stale_bridge.counters.difference(&want_b.counters) {
        let _ = writeln!(w, "delete counter bridge {t} {c}");
    }
    // priority -200: before anything else on the bridge.
    let _ = writeln!(
        w,
        "add chain bridge {t} prerouting {{ type filter hook prerouting priority -200; policy accept; }}"
    );
    let _ = writeln!(
        w,
        "add chain bridge {t} forward {{ type filter hook forward priority 0; policy accept; }}"
    );
    for e in &active {
        render_slice_bridge(w, node, e);
    }
    let _ = writeln!(w, "add rule bridge {t} prerouting iifname vmap @port_from");
    let _ = writeln!(
        w,
        "add rule bridge {t} forward iifname . oifname @port_pairs accept"
    );
    let _ = writeln!(
        w,
        "add rule bridge {t} forward oifname @ports iifname vmap @port_iso"
    );

    // ---- inet family: NAT, port forwards, host services, routed slice-to-slice ----
    let _ = writeln!(w, "add table inet {t}");
    let _ = writeln!(w, "flush table inet {t}");
    declare_sets(w, "inet", t, &INET_SETS, true);
    let want_i = wanted_inet(&active);
    for c in stale_inet.chains.difference(&want_i.chains) {
        let _ = writeln!(w, "delete chain inet {t} {c}");
    }
    for c in stale_inet.counters.difference(&want_i.counters) {
        let _ = writeln!(w, "delete counter inet {t} {c}");
    }
    let sub = &node.subnet;
    let _ = writeln!(w, "add chain inet {t} prerouting_nat {{ type nat hook prerouting priority dstnat; policy accept; }}");
    let _ = writeln!(
        w,
        "add chain inet {t} output_nat {{ type nat hook output priority -100; policy accept; }}"
    );
    let _ = writeln!(w, "add chain inet {t} postrouting_nat {{ type nat hook postrouting priority srcnat; policy accept; }}");
    let _ = writeln!(
        w,
        "add chain inet {t} input {{ type filter hook input priority 0; policy accept; }}"
    );
    let _ = writeln!(
        w,
        "add chain inet {t} forward {{ type filter hook forward priority 0; policy accept; }}"
    );
    // Flow accounting: new connections from a slice port carry the port's mark (set in the
    // bridge family above); copy it to the conntrack entry, where the flow log reads it.
    let _ = writeln!(
        w,
        "add chain inet {t} flowmark {{ type filter hook prerouting priority mangle; policy accept; }}"
    );
    let _ = writeln!(
        w,
        "add rule inet {t} flowmark iifname \"{br}\" ct state new meta mark & {FLOW_MARK_MASK:#x} == {:#x} ct mark set meta mark",
        flow_mark_prefix(t)
    );
    for c in [
        "port_forwards",
        "from_slices",
        "between_slices",
        "to_slices",
    ] {
        let _ = writeln!(w, "add chain inet {t} {c}");
    }
    // Port forwards: from outside (not from slices: a published port is not a way around
    // the isolation between slices) to any node address; from the node itself to any node
    // address but loopback (127/8 would need route_localnet, which would also let slices
    // send to the host's 127.0.0.1 services).
    let _ = writeln!(w, "add rule inet {t} prerouting_nat iifname != \"{br}\" fib daddr type local jump port_forwards");
    let _ = writeln!(w, "add rule inet {t} output_nat ip daddr != 127.0.0.0/8 fib daddr type local jump port_forwards");
    // Each slice's forwards are in its chain fwd_<veth> (render_slice_inet).
    let _ = writeln!(
        w,
        "add rule inet {t} port_forwards meta l4proto . th dport vmap @fwd_port"
    );
    // Egress NAT.
    let _ = writeln!(w, "add rule inet {t} postrouting_nat ip saddr {sub} ip daddr != {sub} oifname != \"{br}\" masquerade");
    // Host services.
    let _ = writeln!(
        w,
        "add rule inet {t} input iifname \"{br}\" jump from_slices"
    );
    let _ = writeln!(
        w,
        "add rule inet {t} from_slices ct state established,related accept"
    );
    let _ = writeln!(w, "add rule inet {t} from_slices ct state invalid drop");
    for e in &active {
        render_slice_inet(w, node, e);
    }
    let _ = writeln!(w, "add rule inet {t} from_slices ip saddr vmap @addr_host");
    let _ = writeln!(w, "add rule inet {t} from_slices drop");
    // Routed traffic: between slices (a slice sending to another slice through the gateway,
    // or bridged packets when br_netfilter is on), into slices, out of slices (allowed, NATed).
    let _ = writeln!(
        w,
        "add rule inet {t} forward iifname \"{br}\" oifname \"{br}\" jump between_slices"
    );
    let _ = writeln!(
        w,
        "add rule inet {t} forward oifname \"{br}\" jump to_slices"
    );
    let _ = writeln!(
        w,
        "add rule inet {t} between_slices ct state established,related accept"
    );
    let _ = writeln!(
        w,
        "add rule inet {t} between_slices ip saddr . ip daddr @addr_pairs accept"
    );
    let _ = writeln!(
        w,
        "add rule inet {t} between_slices ip saddr vmap @addr_peer"
    );
    let _ = writeln!(w, "add rule inet {t} between_slices drop");
    let _ = writeln!(
        w,
        "add rule inet {t} to_slices ct state established,related accept"
    );
    let _ = writeln!(w, "add rule inet {t} to_slices ct status dnat accept");
    let _ = writeln!(w, "add rule inet {t} to_slices drop");

    // ---- elements: every active slice's dispatch, every open pair once ----
    for e in &active {
        render_elements(w, node, "add", e, &[]);
    }
    for p in &pairs {
        render_elements_pairs(w, node, "add", p);
    }
    s
}

fn render_elements_pairs(
    w: &mut String,
    node: &NftNode,
    verb: &str,
    (a, b): &(&SliceEntry, &SliceEntry),
) {
    let t = node.table;
    let _ = writeln!(
        w,
        "{verb} element bridge {t} port_pairs {{ \"{}\" . \"{}\", \"{}\" . \"{}\" }}",
        a.veth, b.veth, b.veth, a.veth
    );
    let _ = writeln!(
        w,
        "{verb} element inet {t} addr_pairs {{ {} . {}, {} . {} }}",
        a.ip, b.ip, b.ip, a.ip
    );
}

/// Chains and named counters of a table.
#[derive(Debug, Default)]
pub(crate) struct Existing {
    pub chains: BTreeSet<String>,
    pub counters: BTreeSet<String>,
}

const BASE_BRIDGE: [&str; 2] = ["prerouting", "forward"];
const BASE_INET: [&str; 10] = [
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
];

fn wanted_bridge(active: &[&SliceEntry]) -> Existing {
    let mut x = Existing::default();
    x.chains.extend(BASE_BRIDGE.iter().map(|s| s.to_string()));
    for e in active {
        x.chains.insert(format!("from_{}", e.veth));
        x.chains.insert(format!("iso_{}", e.veth));
        let (b, _) = counters_of(e);
        x.counters.extend(b);
    }
    x
}

fn wanted_inet(active: &[&SliceEntry]) -> Existing {
    let mut x = Existing::default();
    x.chains.extend(BASE_INET.iter().map(|s| s.to_string()));
    for e in active {
        x.chains.insert(format!("host_{}", e.veth));
        x.chains.insert(format!("peer_{}", e.veth));
        x.chains.insert(format!("fwd_{}", e.veth));
        x.counters.insert(counters_of(e).1);
    }
    x
}

/// List the chains and counters of `family table` (empty if the table does not exist).
pub(crate) fn existing(family: &str, table: &str) -> Result<Existing> {
    let mut x = Existing::default();
    let out = match run("nft", &["-j", "list", "table", family, table]) {
        Ok(o) => o,
        Err(e) if e.is_not_found() => return Ok(x),
        Err(e) => return Err(e),
    };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    if let Some(items) = v.get("nftables").and_then(|n| n.as_array()) {
        for item in items {
            if let Some(name) = item.pointer("/chain/name").and_then(|n| n.as_str()) {
                x.chains.insert(name.to_string());
            }
            if let Some(name) = item.pointer("/counter/name").and_then(|n| n.as_str()) {
                x.counters.insert(name.to_string());
            }
        }
    }
    Ok(x)
}

/// Render and apply the rule set for `state`.
pub(crate) fn apply(node: &NftNode, state: &NetState) -> Result<()> {
    let b = existing("bridge", node.table)?;
    let i = existing("inet", node.table)?;
    let script = render(node, state, &b, &i);
    run_input("nft", &["-f", "-"], Some(&script)).map(drop)
}

/// Apply one slice's incremental transaction ([`render_attach`] / [`render_detach`]): one
/// `nft -f -`, atomic. An error (the table is of an older layout, or the kernel state differs
/// from `net.json`) changes nothing; the caller then converges with [`apply`].
///
/// Why `nft -f` and not netlink: no maintained Rust crate speaks the nf_tables netlink
/// transaction API with expression building (`nftables` shells out to `nft -j`, `rustables`
/// is young and unreleased for years); one process per slice operation is within the goal.
pub(crate) fn apply_script(script: &str) -> Result<()> {
    run_input("nft", &["-f", "-"], Some(script)).map(drop)
}

/// Delete both tables (absent tables are fine).
pub(crate) fn delete_tables(table: &str) -> Result<()> {
    for family in ["bridge", "inet"] {
        match run("nft", &["delete", "table", family, table]) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::spec::{HostPort, NetMode, PortForward};
    use crate::net::state::BudgetState;

    fn entry(id: u32, allow: &[&str]) -> SliceEntry {
        let mut spec = NetSpec {
            mode: NetMode::Bridge,
            ..Default::default()
        };
        spec.allow.slices = allow.iter().map(|s| s.to_string()).collect();
        SliceEntry {
            id,
            ip: Ipv4Addr::new(10, 213, 0, id as u8),
            mac: format!("02:76:0a:d5:00:{id:02x}"),
            veth: format!("vs{id}"),
            spec,
            active: true,
            budget: BudgetState::default(),
        }
    }

    #[test]
    fn pairs_need_both_sides() {
        let mut st = NetState::default();
        st.slices.insert("a".into(), entry(2, &["b"]));
        st.slices.insert("b".into(), entry(3, &[]));
        st.slices.insert("c".into(), entry(4, &["*"]));
        assert!(open_pairs(&st).is_empty());
        st.slices.get_mut("b").unwrap().spec.allow.slices = vec!["a".into()];
        let names: Vec<(String, String)> = open_pairs(&st)
            .iter()
            .map(|(x, y)| (x.veth.clone(), y.veth.clone()))
            .collect();
        assert_eq!(names, vec![("vs2".to_string(), "vs3".to_string())]);
        st.slices.get_mut("a").unwrap().spec.allow.slices = vec!["*".into()];
        assert_eq!(open_pairs(&st).len(), 2); // a-b, a-c
        st.slices.get_mut("c").unwrap().active = false;
        assert_eq!(open_pairs(&st).len(), 1);
    }

    #[test]
    fn render_pins_addresses_and_cleans_stale_objects() {
        let mut st = NetState::default();
        let mut a = entry(2, &[]);
        a.spec.ports.push(PortForward {
            host_port: 8080,
            slice_port: 80,
            proto: Proto::Tcp,
        });
        a.spec.allow.host_ports.push(HostPort {
            port: 53,
            proto: Proto::Udp,
        });
        st.slices.insert("a".into(), a);
        let node = NftNode {
            table: "vslice",
            bridge: "vslice0",
            subnet: "10.213.0.0/20".into(),
            gateway: Ipv4Addr::new(10, 213, 0, 1),
        };
        let mut stale = Existing::default();
        stale.chains.insert("from_vs9".into());
        stale.chains.insert("prerouting".into());
        stale.counters.insert("spoof_vs9".into());
        let s = render(&node, &st, &stale, &Existing::default());
        for line in [
            "add rule bridge vslice from_vs2 ether saddr != 02:76:0a:d5:00:02 counter name \"spoof_vs2\" drop",
            "add rule bridge vslice from_vs2 ip saddr != 10.213.0.2 counter name \"spoof_vs2\" drop",
            &format!("add rule inet vslice fwd_vs2 tcp dport 8080 ct mark set {:#x} dnat ip to 10.213.0.2:80", flow_mark("vslice", 2)),
            "add rule inet vslice host_vs2 udp dport { 53 } accept",
            "delete chain bridge vslice from_vs9",
            "delete counter bridge vslice spoof_vs9",
        ] {
            assert!(s.contains(line), "missing {line:?} in:\n{s}");
        }
        assert!(!s.contains("delete chain bridge vslice prerouting"));
        // flush comes before deletes, deletes before adds
        let flush = s.find("flush table bridge").unwrap();
        let del = s.find("delete chain bridge").unwrap();
        let add = s.find("add chain bridge vslice prerouting").unwrap();
        assert!(flush < del && del < add);
    }
}
