//! Bandwidth shaping with tc: two shared IFB devices per node, each with one HTB tree.
//!
//! ```text
//!  slice ──eth0══vsN (host)──▶ tc ingress on vsN: u32 "ip src = slice" ─mirred─▶ <bridge>-out (IFB)
//!                                                        HTB 1:  └ 1:1 node egress cap
//!                                                                   ├ 1:N  rate=share ceil=min(own, node, budget)
//!                                                                   └ 1:M  ...
//!  slice ◀─eth0══vsN (host)◀── tc egress on vsN: u32 "ip dst = slice" ─mirred─▶ <bridge>-in (IFB)
//!                                                        HTB 1:  └ 1:1 node ingress cap
//!                                                                   └ 1:N  rate=share ceil=min(own, node)
//! ```
//!
//! * Everything is on the host side: the slice's root has CAP_NET_ADMIN only in its own network
//!   namespace, where it sees `eth0` and nothing of this.
//! * One HTB tree per direction carries both the slice's own cap and the node-wide cap: the
//!   class of slice N has `ceil = min(own cap, node cap, budget throttle)` and, under a node
//!   cap C, `rate = C * weight / sum(weights of active slices)`. The rates add up to C, so under
//!   contention every slice gets at least its weighted share; spare bandwidth is lent in
//!   proportion to the class quantum, which is also proportional to the weight.
//! * Only packets carrying the slice's own address are redirected (the u32 match), so a slice
//!   cannot charge its traffic to another slice's class with a spoofed source: spoofed packets
//!   are not redirected, and the bridge-family rules drop them right after (see nft.rs).
//! * A slice with no cap in a direction, on a node without a cap in that direction, is not
//!   redirected at all (no shaping cost).
//! * Leaves are `fq_codel` where the kernel has it (AQM, and fairness between the flows of one
//!   slice), else a packet FIFO of ~200 ms of full-sized packets at the ceiling (10 to 1000
//!   packets). Not a byte FIFO: HTB sees unsegmented GSO packets (up to 64 KiB), and a byte
//!   limit small enough for low rates drops whole GSO packets, which cost TCP far more than the
//!   queueing (measured at 1 Mbit/s: 0.89 of the cap with 178 retransmissions with a 128 KiB
//!   bfifo, 0.98-1.0 with none with a pfifo). The kernel this was built on has neither fq_codel
//!   nor sfq.
//! * HTB passes whole GSO packets: over short windows a low-rate class delivers in steps of up
//!   to 64 KiB (0.5 s at 1 Mbit/s); the long-run rate is exact.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, Ordering};

use super::cmd::{link_exists, run, run_input, run_opt, Result};
use super::spec::tc_rate;

/// The rate of the root class when the node has no cap in that direction.
pub(crate) const UNLIMITED_BPS: u64 = 100_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Out of the slice: ingress of the host veth, IFB `<bridge>-out`.
    Out,
    /// Into the slice: egress of the host veth, IFB `<bridge>-in`.
    In,
}

impl Dir {
    pub fn hook(self) -> &'static str {
        match self {
            Dir::Out => "ingress",
            Dir::In => "egress",
        }
    }
    fn match_field(self) -> &'static str {
        match self {
            Dir::Out => "src",
            Dir::In => "dst",
        }
    }
}

/// The class of one slice in one direction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassPlan {
    pub id: u32,
    pub ip: Ipv4Addr,
    pub rate: u64,
    pub ceil: u64,
    pub burst: Option<u64>,
    pub weight: u32,
}

pub(crate) fn ifb_name(bridge: &str, dir: Dir) -> String {
    match dir {
        Dir::Out => format!("{bridge}-out"),
        Dir::In => format!("{bridge}-in"),
    }
}

fn quantum(weight: u32) -> u64 {
    (1514u64 * u64::from(weight)).clamp(1514, 200_000)
}

/// Packet limit of the pfifo leaf: ~200 ms of full-sized frames at the ceiling.
fn fifo_packets(ceil_bps: u64) -> u64 {
    (ceil_bps / 8 / 5 / 1514).clamp(10, 1000)
}

/// Leaf qdisc kind: 0 = not probed yet (try fq_codel), 1 = fq_codel, 2 = pfifo.
static LEAF_KIND: AtomicU8 = AtomicU8::new(0);

fn leaf(ceil_bps: u64) -> String {
    if LEAF_KIND.load(Ordering::Relaxed) == 2 {
        format!("pfifo limit {}", fifo_packets(ceil_bps))
    } else {
        "fq_codel".to_string()
    }
}

/// The u32 hash table of the per-slice filters on an IFB root: 256 buckets keyed on the last
/// byte of the slice's address, so classifying a packet walks one bucket (at most 16 filters
/// in a /20) instead of one filter per slice.
const HASH_HT: u32 = 2;

/// Bucket of an address in [`HASH_HT`].
fn bucket(ip: Ipv4Addr) -> u32 {
    u32::from(ip.octets()[3])
}

/// u32 handle of the filter of slice `id` with address `ip`: `2:<bucket>:<id>`.
fn filter_handle(id: u32, ip: Ipv4Addr) -> String {
    format!("{HASH_HT:x}:{:x}:{id:x}", bucket(ip))
}

/// Create the IFB (if missing), its HTB root, the node class 1:1 and the hashed u32 filter
/// tree (hash table [`HASH_HT`] and the root filter linking the subnet into it). Idempotent.
pub(crate) fn ensure_ifb(name: &str, dir: Dir, subnet: &str, node_cap: Option<u64>) -> Result<()> {
    if !link_exists(name) {
        // `ip link add` races with a concurrent creator only under our state lock: no race.
        run("ip", &["link", "add", name, "type", "ifb"])?;
    }
    run(
        "ip",
        &["link", "set", "dev", name, "txqueuelen", "1000", "up"],
    )?;
    let qd = run("tc", &["qdisc", "show", "dev", name, "root"])?;
    if !qd.contains("htb 1:") {
        run(
            "tc",
            &[
                "qdisc", "replace", "dev", name, "root", "handle", "1:", "htb",
            ],
        )?;
    }
    let rate = node_cap.unwrap_or(UNLIMITED_BPS);
    // burst: 5 ms at the rate (tc's own default for 100gbit overflows to 0).
    let burst = (rate / 8 / 200).max(16 * 1024).to_string();
    let rate = tc_rate(rate);
    run(
        "tc",
        &[
            "class", "replace", "dev", name, "parent", "1:", "classid", "1:1", "htb", "rate",
            &rate, "ceil", &rate, "burst", &burst, "cburst", &burst, "quantum", "200000",
        ],
    )?;
    let filters = run("tc", &["filter", "show", "dev", name, "parent", "1:"])?;
    let mut b = String::new();
    if !filters.contains("ht divisor 256") {
        let _ = writeln!(
            b,
            "filter add dev {name} parent 1: pref 10 protocol ip handle {HASH_HT:x}: u32 divisor 256"
        );
    }
    if !filters.contains("fh 800::1 ") || !filters.contains(&format!("link {HASH_HT:x}:")) {
        if filters.contains("fh 800::1 ") {
            let _ = writeln!(
                b,
                "filter del dev {name} parent 1: pref 10 handle 800::1 protocol ip u32"
            );
        }
        // Offset 12: source address, 16: destination; the key is its last byte.
        let at = match dir {
            Dir::Out => 12,
            Dir::In => 16,
        };
        let _ = writeln!(
            b,
            "filter add dev {name} parent 1: pref 10 protocol ip handle 800::1 u32 ht 800:: match ip {} {subnet} hashkey mask 0x000000ff at {at} link {HASH_HT:x}:",
            dir.match_field()
        );
    }
    if !b.is_empty() {
        run_input("tc", &["-batch", "-"], Some(&b))?;
    }
    Ok(())
}

/// Class ids (minors, as numbers) present under 1: other than 1:1.
fn existing_classes(ifb: &str) -> Result<BTreeSet<u32>> {
    let out = run("tc", &["class", "show", "dev", ifb])?;
    let mut ids = BTreeSet::new();
    for line in out.lines() {
        // "class htb 1:a parent 1:1 leaf a: prio 0 rate ..."
        let mut it = line.split_whitespace();
        if it.next() != Some("class") {
            continue;
        }
        let _kind = it.next();
        if let Some(id) = it.next() {
            if let Some(minor) = id.strip_prefix("1:") {
                if let Ok(n) = u32::from_str_radix(minor, 16) {
                    if n != 1 {
                        ids.insert(n);
                    }
                }
            }
        }
    }
    Ok(ids)
}

/// Per-slice u32 filters present on the IFB root: slice id -> handle (`2:<bucket>:<id>`, or
/// `800::<id>` for a filter of the older linear layout, which is always stale).
pub(crate) fn existing_filters(ifb: &str) -> Result<BTreeMap<u32, String>> {
    let out = run("tc", &["filter", "show", "dev", ifb, "parent", "1:"])?;
    Ok(parse_filter_handles(&out))
}

fn parse_filter_handles(out: &str) -> BTreeMap<u32, String> {
    let mut ids = BTreeMap::new();
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w != "fh" {
            continue;
        }
        let Some(h) = words.next() else { break };
        let parts: Vec<&str> = h.split(':').collect();
        let [ht, _bkt, node] = parts[..] else {
            continue;
        };
        let Ok(node) = u32::from_str_radix(node, 16) else {
            continue; // "2:" (the table) or "800:" (a divisor line)
        };
        if ht == format!("{HASH_HT:x}") {
            ids.insert(node, h.to_string());
        } else if ht == "800" && node != 1 {
            // Old linear layout: id | 0x1000 marks "stale whatever the plan".
            ids.insert(node | 0x1000, h.to_string());
        }
    }
    ids
}

/// Make the classes and classifying filters of `ifb` exactly `plans`: replace the wanted ones,
/// delete the others. One `tc -batch` for the changes.
pub(crate) fn apply_classes(ifb: &str, dir: Dir, plans: &[ClassPlan]) -> Result<()> {
    match apply_classes_once(ifb, dir, plans) {
        Err(e) if LEAF_KIND.load(Ordering::Relaxed) == 0 && !plans.is_empty() => {
            // tc's message (before the batch input the error carries).
            let unknown = matches!(&e, super::cmd::NetError::Command { stderr, .. } if {
                let msg = stderr.split("--- input ---").next().unwrap_or_default().to_ascii_lowercase();
                msg.contains("qdisc kind is unknown") || msg.contains("unknown qdisc")
            });
            if !unknown {
                return Err(e);
            }
            // No fq_codel in this kernel: fall back to pfifo leaves (the batch is idempotent).
            LEAF_KIND.store(2, Ordering::Relaxed);
            apply_classes_once(ifb, dir, plans)
        }
        Ok(()) => {
            if !plans.is_empty() {
                let _ = LEAF_KIND.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn apply_classes_once(ifb: &str, dir: Dir, plans: &[ClassPlan]) -> Result<()> {
    let have_classes = existing_classes(ifb)?;
    let have_filters = existing_filters(ifb)?;
    let want: BTreeSet<u32> = plans.iter().map(|p| p.id).collect();
    let mut b = String::new();
    // A filter whose handle is not the one the plan gives (its slice got another address
    // bucket: never in practice, ids fix addresses) is stale too.
    let wanted_handle: BTreeMap<u32, String> = plans
        .iter()
        .map(|p| (p.id, filter_handle(p.id, p.ip)))
        .collect();
    for (id, h) in &have_filters {
        if wanted_handle.get(id) != Some(h) {
            let _ = writeln!(
                b,
                "filter del dev {ifb} parent 1: pref 10 handle {h} protocol ip u32"
            );
        }
    }
    for id in have_classes.difference(&want) {
        let _ = writeln!(b, "class del dev {ifb} classid 1:{id:x}");
    }
    for p in plans {
        let id = p.id;
        b.push_str(&class_line(ifb, p));
        let _ = writeln!(
            b,
            "qdisc replace dev {ifb} parent 1:{id:x} handle {id:x}: {}",
            leaf(p.ceil)
        );
        if have_filters.get(&id) != wanted_handle.get(&id) {
            b.push_str(&filter_line("add", ifb, dir, p));
        }
    }
    if b.is_empty() {
        return Ok(());
    }
    run_input("tc", &["-batch", "-"], Some(&b)).map(drop)
}

/// The `tc -batch` line of a slice's classifying filter (in its hash bucket).
fn filter_line(verb: &str, ifb: &str, dir: Dir, p: &ClassPlan) -> String {
    format!(
        "filter {verb} dev {ifb} parent 1: pref 10 protocol ip handle {} u32 ht {HASH_HT:x}:{:x}: match ip {} {}/32 flowid 1:{:x}\n",
        filter_handle(p.id, p.ip),
        bucket(p.ip),
        dir.match_field(),
        p.ip,
        p.id
    )
}

fn class_line(ifb: &str, p: &ClassPlan) -> String {
    let burst = match p.burst {
        Some(x) => format!(" burst {x} cburst {x}"),
        None => String::new(),
    };
    format!(
        "class replace dev {ifb} parent 1:1 classid 1:{:x} htb rate {} ceil {}{burst} quantum {}\n",
        p.id,
        tc_rate(p.rate),
        tc_rate(p.ceil),
        quantum(p.weight)
    )
}

/// Incremental changes of the shaping objects, one `tc -batch -` for all of them: what a
/// slice's attach or detach needs, independent of the number of other slices (except the
/// rate lines of a node cap, which every attach changes by design: shares by weight).
///
/// Why `tc -batch` and not netlink: `netlink-packet-route` has qdisc/class/filter messages,
/// but no HTB class options nor u32 selectors with hash keys or mirred actions (they would be
/// hand-built raw attributes, untested against iproute2's encoding); one process per slice
/// operation is within the goal. Replace with netlink messages once that crate grows the HTB
/// and u32 option types.
#[derive(Debug, Default)]
pub(crate) struct Batch(String);

impl Batch {
    /// A new slice's class, leaf qdisc and filter (none of them may exist).
    pub fn add_class(&mut self, ifb: &str, dir: Dir, p: &ClassPlan) {
        self.0.push_str(&class_line(ifb, p));
        let _ = writeln!(
            self.0,
            "qdisc replace dev {ifb} parent 1:{:x} handle {:x}: {}",
            p.id,
            p.id,
            leaf(p.ceil)
        );
        self.0.push_str(&filter_line("add", ifb, dir, p));
    }

    /// New rates of an existing class.
    pub fn change_class(&mut self, ifb: &str, p: &ClassPlan) {
        self.0.push_str(&class_line(ifb, p));
    }

    /// Remove a slice's filter and class (its leaf qdisc goes with the class).
    pub fn del_class(&mut self, ifb: &str, id: u32, ip: Ipv4Addr) {
        let _ = writeln!(
            self.0,
            "filter del dev {ifb} parent 1: pref 10 handle {} protocol ip u32",
            filter_handle(id, ip)
        );
        let _ = writeln!(self.0, "class del dev {ifb} classid 1:{id:x}");
    }

    /// The clsact qdisc of a new veth (once, before its redirects).
    pub fn add_clsact(&mut self, veth: &str) {
        let _ = writeln!(self.0, "qdisc add dev {veth} clsact");
    }

    /// Redirect a new veth's `dir` traffic carrying `ip` to `ifb`.
    pub fn add_redirect(&mut self, veth: &str, dir: Dir, ifb: &str, ip: Ipv4Addr) {
        let _ = writeln!(
            self.0,
            "filter add dev {veth} {} pref 10 protocol ip u32 match ip {} {ip}/32 action mirred egress redirect dev {ifb}",
            dir.hook(),
            dir.match_field()
        );
    }

    pub fn run(&self) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        run_input("tc", &["-batch", "-"], Some(&self.0)).map(drop)
    }
}

/// Make the redirect of `veth`'s `dir` traffic to `ifb` present (`Some(ip)`) or absent (`None`).
pub(crate) fn set_redirect(veth: &str, dir: Dir, ifb: &str, want: Option<Ipv4Addr>) -> Result<()> {
    let qd = run_opt("tc", &["qdisc", "show", "dev", veth])?;
    let Some(qd) = qd else {
        return Ok(()); // veth gone: nothing to shape
    };
    let has_clsact = qd.contains("clsact");
    let current = if has_clsact {
        run_opt("tc", &["filter", "show", "dev", veth, dir.hook()])?.unwrap_or_default()
    } else {
        String::new()
    };
    let present = current.contains(&format!("to device {ifb})"));
    match want {
        None => {
            if !current.trim().is_empty() {
                run("tc", &["filter", "del", "dev", veth, dir.hook()])?;
            }
        }
        Some(ip) => {
            let hex = format!("{:08x}/ffffffff", u32::from(ip));
            if present && current.contains(&hex) {
                return Ok(());
            }
            if !has_clsact {
                run("tc", &["qdisc", "add", "dev", veth, "clsact"])?;
            }
            if !current.trim().is_empty() {
                run("tc", &["filter", "del", "dev", veth, dir.hook()])?;
            }
            let m = format!("{ip}/32");
            run(
                "tc",
                &[
                    "filter",
                    "add",
                    "dev",
                    veth,
                    dir.hook(),
                    "pref",
                    "10",
                    "protocol",
                    "ip",
                    "u32",
                    "match",
                    "ip",
                    dir.match_field(),
                    &m,
                    "action",
                    "mirred",
                    "egress",
                    "redirect",
                    "dev",
                    ifb,
                ],
            )?;
        }
    }
    Ok(())
}

/// Packets dropped per HTB class of `ifb` (class id -> dropped), from one netlink dump;
/// empty when the device does not exist.
pub(crate) fn all_class_drops(ifb: &str) -> Result<std::collections::BTreeMap<u32, u64>> {
    super::rtnl::Rtnl::open()?.class_drops(ifb)
}

/// What `tc -s class show` prints, per class: the reference the netlink dump is tested
/// against (iproute2 6.1 prints no JSON for HTB classes, so the text:
/// "class htb 1:a ...\n Sent 123 bytes 4 pkt (dropped 0, overlimits 0 requeues 0)").
#[cfg(test)]
pub(crate) fn parse_class_drops(out: &str) -> std::collections::BTreeMap<u32, u64> {
    let mut m = std::collections::BTreeMap::new();
    let mut class = None;
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        match w {
            "class" => {
                let _kind = words.next();
                class = words
                    .next()
                    .and_then(|id| id.strip_prefix("1:"))
                    .and_then(|minor| u32::from_str_radix(minor, 16).ok());
            }
            "(dropped" => {
                let dropped = words
                    .next()
                    .and_then(|x| x.trim_end_matches(',').parse().ok())
                    .unwrap_or(0);
                if let Some(id) = class.take() {
                    m.insert(id, dropped);
                }
            }
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_drops_parse_per_class() {
        let out = "class htb 1:1 root rate 1Gbit ceil 1Gbit burst 1375b cburst 1375b \n\
 Sent 9000 bytes 30 pkt (dropped 0, overlimits 0 requeues 0) \n\
 backlog 0b 0p requeues 0\n\
class htb 1:2a parent 1:1 leaf 2a: prio 0 rate 8Mbit ceil 8Mbit burst 1600b cburst 1600b \n\
 Sent 1234 bytes 4 pkt (dropped 17, overlimits 3 requeues 0) \n\
class fq_codel 2a:1 parent 2a: \n";
        let m = parse_class_drops(out);
        assert_eq!(m.get(&0x2a), Some(&17));
        assert_eq!(m.get(&1), Some(&0));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn filter_handles_parse_both_layouts() {
        let out = "filter protocol ip pref 10 u32 chain 0 \n\
filter protocol ip pref 10 u32 chain 0 fh 2: ht divisor 256 \n\
filter protocol ip pref 10 u32 chain 0 fh 2:2:2 order 2 key ht 2 bkt 2 flowid 1:2 not_in_hw \n\
filter protocol ip pref 10 u32 chain 0 fh 2:ff:4ff order 1279 key ht 2 bkt ff flowid 1:4ff \n\
filter protocol ip pref 10 u32 chain 0 fh 800: ht divisor 1 \n\
filter protocol ip pref 10 u32 chain 0 fh 800::1 order 1 key ht 800 bkt 0 link 2: \n\
filter protocol ip pref 10 u32 chain 0 fh 800::7 order 7 key ht 800 bkt 0 flowid 1:7 \n";
        let m = parse_filter_handles(out);
        assert_eq!(m.get(&2).map(String::as_str), Some("2:2:2"));
        assert_eq!(m.get(&0x4ff).map(String::as_str), Some("2:ff:4ff"));
        assert_eq!(m.get(&0x1007).map(String::as_str), Some("800::7"));
        assert_eq!(m.len(), 3);
        assert_eq!(
            filter_handle(0x4ff, Ipv4Addr::new(10, 213, 4, 0xff)),
            "2:ff:4ff"
        );
    }
}
