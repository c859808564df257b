//! The node's slice network: [`NodeNet`] and the per-slice operations.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::cidr::Ipv4Cidr;
use super::cmd::{
    link_exists, run, run_in_netns, run_input, run_opt, write_sysctl, NetError, Result,
};
use super::etc;
use super::nft::{self, NftNode};
use super::rtnl::{self, Rtnl};
use super::spec::{
    validate_slice_name, ByteBudget, NetMode, NetSpec, BUDGET_FLOOR_BPS, MAX_RATE_BPS, MIN_RATE_BPS,
};
use super::state::{BudgetState, NetState, SliceEntry, StateLock};
use super::tc::{self, ClassPlan, Dir};

/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "vslice0";
/// Default nftables table name (one in the `bridge` family, one in `inet`).
pub const DEFAULT_NFT_TABLE: &str = "vslice";
/// Default prefix of the host ends of the veth pairs (`vs2`, `vs3`, ...).
pub const DEFAULT_VETH_PREFIX: &str = "vs";
/// Default slice subnet. See the module documentation for why this one.
pub const DEFAULT_SUBNET: &str = "10.213.0.0/20";
/// File in the state dir recording what the last [`NodeNet::ensure`] converged.
const ENSURED_FILE: &str = "ensured";
/// Seconds in a budget period (a UTC day).
pub const BUDGET_PERIOD_SECS: u64 = 86_400;

/// A network namespace to attach a slice to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// The network namespace of a process (`/proc/<pid>/ns/net`), e.g. the slice's init.
    Pid(u32),
    /// A namespace file: `/proc/<pid>/ns/net`, `/run/netns/<name>`, a bind mount.
    Path(PathBuf),
}

impl Netns {
    pub fn path(&self) -> PathBuf {
        match self {
            Netns::Pid(p) => PathBuf::from(format!("/proc/{p}/ns/net")),
            Netns::Path(p) => p.clone(),
        }
    }
}

impl From<u32> for Netns {
    fn from(pid: u32) -> Netns {
        Netns::Pid(pid)
    }
}

impl From<&Path> for Netns {
    fn from(p: &Path) -> Netns {
        Netns::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for Netns {
    fn from(p: PathBuf) -> Netns {
        Netns::Path(p)
    }
}

/// What a slice got: its address and the files its rootfs needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceNet {
    pub slice: String,
    pub mode: NetMode,
    /// The slice's address (on `eth0`); `None` in mode `none`.
    pub address: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: Option<String>,
    /// Host end of the veth pair.
    pub host_veth: Option<String>,
    /// Content for the slice's /etc/hosts.
    pub hosts: String,
    /// Content for the slice's /etc/resolv.conf.
    pub resolv_conf: String,
}

impl SliceNet {
    /// Write `hosts` and `resolv_conf` into `<rootfs>/etc` (atomically, never following a
    /// symlink the slice planted), owned by `owner` (host uid, gid of the slice's root).
    pub fn write_etc(&self, rootfs: &Path, owner: Option<(u32, u32)>) -> Result<()> {
        etc::write_etc_files(
            rootfs,
            &[
                ("hosts", self.hosts.as_str()),
                ("resolv.conf", self.resolv_conf.as_str()),
            ],
            owner,
        )
    }
}

/// One slice's entry in the node's network state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub slice: String,
    pub address: Ipv4Addr,
    pub host_veth: String,
    /// Recorded as attached (veth, rules and classes present).
    pub active: bool,
}

/// Per-slice counters; a wire type, see [`crate::proto::net::NetCounters`].
pub use crate::proto::net::NetCounters;

/// The byte budget of one slice after an [`NodeNet::enforce_budgets`] pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetStatus {
    pub slice: String,
    pub period_start: u64,
    pub used_bytes: u64,
    pub max_bytes: u64,
    pub thresh_bytes: u64,
    /// Outbound rate in force because of the budget (None: below the threshold).
    pub throttle_bps: Option<u64>,
}

/// The slice network of a node. All names are configurable so that tests and benchmarks run
/// beside a real installation.
#[derive(Debug, Clone)]
pub struct NodeNet {
    /// Bridge name, at most 11 characters (the IFBs are `<bridge>-out` and `<bridge>-in`).
    pub bridge: String,
    /// Slice subnet; the first host address is the gateway (on the bridge). /20 to /29.
    pub subnet: Ipv4Cidr,
    /// nftables table name (used in the `bridge` and `inet` families).
    pub nft_table: String,
    /// Prefix of the host veth names, 1 to 8 characters `[a-z0-9]`.
    pub veth_prefix: String,
    /// Node-wide cap on traffic out of all slices, bits/s, shared by weight.
    pub node_egress_rate: Option<u64>,
    /// Node-wide cap on traffic into all slices, bits/s, shared by weight.
    pub node_ingress_rate: Option<u64>,
    /// Where allocations and budget counters live (`net.json`, `net.lock`).
    pub state_dir: PathBuf,
    /// Nameservers for the slices' resolv.conf; `None`: the host's non-loopback ones.
    pub dns: Option<Vec<Ipv4Addr>>,
    /// Set `net.ipv4.ip_forward=1` host-wide in `ensure` (needed for NAT to the outside).
    /// When false only the bridge's own `conf/<bridge>/forwarding` is set: slices then reach
    /// the host and port forwards work, but routing to other interfaces depends on their own
    /// forwarding setting (tests use this to leave the host's sysctls alone).
    pub set_global_ip_forward: bool,
}

impl NodeNet {
    /// The defaults (bridge `vslice0`, subnet 10.213.0.0/20, table `vslice`, veths `vs…`, no
    /// node caps), state in `state_dir` (e.g. `/var/lib/vslice/net`).
    pub fn new(state_dir: impl Into<PathBuf>) -> NodeNet {
        NodeNet {
            bridge: DEFAULT_BRIDGE.into(),
            subnet: DEFAULT_SUBNET.parse().expect("default subnet parses"),
            nft_table: DEFAULT_NFT_TABLE.into(),
            veth_prefix: DEFAULT_VETH_PREFIX.into(),
            node_egress_rate: None,
            node_ingress_rate: None,
            state_dir: state_dir.into(),
            dns: None,
            set_global_ip_forward: true,
        }
    }

    /// The gateway address (first host of the subnet, on the bridge).
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.host(1).expect("validated subnet has hosts")
    }

    /// Names of the two IFB devices (outbound, inbound).
    pub fn ifb_names(&self) -> (String, String) {
        (
            tc::ifb_name(&self.bridge, Dir::Out),
            tc::ifb_name(&self.bridge, Dir::In),
        )
    }

    /// Check the configuration; errors name the field (`node.bridge: ...`).
    pub fn validate(&self) -> Result<()> {
        let ifname_ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if self.bridge.is_empty() || self.bridge.len() > 11 || !ifname_ok(&self.bridge) {
            return Err(NetError::invalid(
                "node.bridge",
                format!("{:?} must be 1 to 11 characters [A-Za-z0-9_-]", self.bridge),
            ));
        }
        let p = &self.veth_prefix;
        if p.is_empty()
            || p.len() > 8
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(NetError::invalid(
                "node.veth_prefix",
                format!("{p:?} must be 1 to 8 characters [a-z0-9]"),
            ));
        }
        let t = &self.nft_table;
        if t.is_empty() || t.len() > 32 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(NetError::invalid(
                "node.nft_table",
                format!("{t:?} must be 1 to 32 characters [A-Za-z0-9_]"),
            ));
        }
        let len = self.subnet.prefix_len();
        if !(20..=29).contains(&len) {
            return Err(NetError::invalid(
                "node.subnet",
                format!(
                    "{}: the prefix must be /20 to /29 (tc class and filter ids allow 4094 slices)",
                    self.subnet
                ),
            ));
        }
        for (field, r) in [
            ("node.node_egress_rate", self.node_egress_rate),
            ("node.node_ingress_rate", self.node_ingress_rate),
        ] {
            if let Some(r) = r {
                if !(MIN_RATE_BPS..=MAX_RATE_BPS).contains(&r) {
                    return Err(NetError::invalid(
                        field,
                        format!("{r} bit/s is out of range {MIN_RATE_BPS}..={MAX_RATE_BPS}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn nft_node(&self) -> NftNode<'_> {
        NftNode {
            table: &self.nft_table,
            bridge: &self.bridge,
            subnet: self.subnet.to_string(),
            gateway: self.gateway(),
        }
    }

    fn bridge_mac(&self) -> String {
        mac_for(self.gateway())
    }

    fn load(&self) -> Result<NetState> {
        let mut st = NetState::load(&self.state_dir)?;
        st.bind_subnet(self.subnet)?;
        Ok(st)
    }

    /// Create or converge the node-level objects: the bridge with the gateway address,
    /// forwarding, the IFBs with the node caps, the nftables tables (re-rendered from the
    /// state), the shaping classes of the active slices. Idempotent; also the way to apply a
    /// change of the node caps.
    pub fn ensure(&self) -> Result<()> {
        self.validate()?;
        let _lock = StateLock::acquire(&self.state_dir)?;
        let br = self.bridge.as_str();
        if !link_exists(br) {
            let mac = self.bridge_mac();
            run(
                "ip",
                &["link", "add", "name", br, "address", &mac, "type", "bridge"],
            )?;
        }
        let gw = format!("{}/{}", self.gateway(), self.subnet.prefix_len());
        run_input(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "addr replace {gw} dev {br}\nlink set dev {br} up\n"
            )),
        )?;
        // Per-interface sysctls of our own devices only.
        let v6 = format!("/proc/sys/net/ipv6/conf/{br}/disable_ipv6");
        if Path::new(&v6).exists() {
            write_sysctl(&v6, "1")?;
        }
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{br}/forwarding"), "1")?;
        if self.set_global_ip_forward {
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        }
        let (out, inn) = self.ifb_names();
        let sub = self.subnet.to_string();
        tc::ensure_ifb(&out, Dir::Out, &sub, self.node_egress_rate)?;
        tc::ensure_ifb(&inn, Dir::In, &sub, self.node_ingress_rate)?;
        let st = self.load()?;
        st.save(&self.state_dir)?;
        nft::apply(&self.nft_node(), &st)?;
        let all: Vec<String> = st.active().map(|(n, _)| n.clone()).collect();
        self.apply_shaping(&st, &all)?;
        let stamp = self.state_dir.join(ENSURED_FILE);
        std::fs::write(&stamp, self.ensured_key())
            .map_err(|e| crate::util::fs::PathError::new("write", &stamp, e))?;
        Ok(())
    }

    /// What [`NodeNet::ensure`] converged: the configuration and the ifindexes of the bridge
    /// and the IFBs (a device deleted and created again gets a new one).
    fn ensured_key(&self) -> String {
        let (out, inn) = self.ifb_names();
        format!(
            "{} {} {} {:?} {:?} {:?} {:?} {:?}\n",
            self.bridge,
            self.subnet,
            self.nft_table,
            self.node_egress_rate,
            self.node_ingress_rate,
            ifindex(&self.bridge),
            ifindex(&out),
            ifindex(&inn),
        )
    }

    /// [`NodeNet::ensure`] unless it already ran with this configuration and the node's
    /// devices are the ones it made (no process, a few stat/reads): what a slice start calls,
    /// so that a networked create does not re-render the whole node. Rule sets removed behind
    /// vslice's back are still repaired: an incremental change that fails falls back to
    /// re-rendering from the state.
    pub fn ensure_once(&self) -> Result<()> {
        let stamp = self.state_dir.join(ENSURED_FILE);
        if link_exists(&self.bridge)
            && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&self.ensured_key())
        {
            return Ok(());
        }
        self.ensure()
    }

    /// Remove every node-level object: all ports of the bridge (so every slice's veth), the
    /// IFBs, both nftables tables, the bridge. Allocations and budget counters stay in the
    /// state (slices are marked detached). Idempotent. Host-wide `ip_forward` is left as is.
    pub fn teardown(&self) -> Result<()> {
        self.validate()?;
        let _lock = StateLock::acquire(&self.state_dir)?;
        let mut st = NetState::load(&self.state_dir)?;
        let now = now_secs();
        for e in st.slices.values_mut() {
            if e.active {
                observe_budget(e, now);
                delete_link(&e.veth)?;
                e.active = false;
            }
        }
        if link_exists(&self.bridge) {
            if let Some(out) = run_opt("ip", &["-j", "link", "show", "master", &self.bridge])? {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
                for l in v.as_array().into_iter().flatten() {
                    if let Some(name) = l.get("ifname").and_then(|n| n.as_str()) {
                        delete_link(name)?;
                    }
                }
            }
        }
        let (out, inn) = self.ifb_names();
        delete_link(&out)?;
        delete_link(&inn)?;
        nft::delete_tables(&self.nft_table)?;
        delete_link(&self.bridge)?;
        let _ = std::fs::remove_file(self.state_dir.join(ENSURED_FILE));
        st.save(&self.state_dir)?;
        Ok(())
    }

    /// Connect a slice: a veth pair (host end `<prefix><id>` on the bridge, slice end `eth0`
    /// in `netns` with the slice's address, MAC and default route), its rules and shaping.
    /// The address is allocated once per slice name and kept until [`NodeNet::release`].
    /// Idempotent: attaching again (daemon restart) converges. In mode `none` only `lo` is
    /// brought up (and a previous bridge attachment is detached).
    pub fn attach(&self, slice: &str, netns: impl Into<Netns>, spec: &NetSpec) -> Result<SliceNet> {
        self.validate()?;
        validate_slice_name(slice).map_err(|m| NetError::invalid("slice", m))?;
        spec.validate()?;
        let netns = netns.into().path();
        if !netns.exists() {
            return Err(NetError::State(format!(
                "network namespace {} does not exist (has the slice's init exited?)",
                netns.display()
            )));
        }
        let _lock = StateLock::acquire(&self.state_dir)?;
        let mut st = self.load()?;
        if spec.mode == NetMode::None {
            if st.slices.get(slice).is_some_and(|e| e.active) {
                self.detach_locked(&mut st, slice)?;
            }
            run_in_netns(&netns, "ip", &["link", "set", "dev", "lo", "up"], None)?;
            return Ok(SliceNet {
                slice: slice.into(),
                mode: NetMode::None,
                address: None,
                prefix_len: 0,
                gateway: None,
                mac: None,
                host_veth: None,
                hosts: etc::hosts_file(slice, None, None),
                resolv_conf: etc::resolv_conf(&[], &[]),
            });
        }
        if !link_exists(&self.bridge) {
            return Err(NetError::State(format!(
                "bridge {} does not exist: NodeNet::ensure() must run before attach",
                self.bridge
            )));
        }
        check_port_conflicts(&st, slice, spec)?;
        let entry = match st.slices.get(slice) {
            Some(e) => e.clone(),
            None => {
                let id = st.free_id(&self.subnet).ok_or_else(|| {
                    NetError::State(format!("subnet {} has no free address", self.subnet))
                })?;
                let ip = self.subnet.host(id).expect("free id is in the subnet");
                SliceEntry {
                    id,
                    ip,
                    mac: mac_for(ip),
                    veth: format!("{}{}", self.veth_prefix, id),
                    spec: spec.clone(),
                    active: false,
                    budget: BudgetState::default(),
                }
            }
        };
        let mut entry = entry;
        let was_active = entry.active;
        entry.spec = spec.clone();
        entry.active = true;
        // Record first, so that a crash half-way leaves something detach/teardown can clean.
        st.slices.insert(slice.to_string(), entry.clone());
        st.save(&self.state_dir)?;

        let fresh = self.setup_veth(&entry, &netns)?;
        if fresh && !was_active {
            // A new attachment: add only this slice's objects (cost independent of the
            // number of slices); anything unexpected falls back to converging everything.
            let node = self.nft_node();
            let fast = nft::render_attach(&node, &st, slice).map(|s| nft::apply_script(&s));
            if !matches!(fast, Some(Ok(()))) {
                nft::apply(&node, &st)?;
            }
            if self.shape_added(&st, slice).is_err() {
                self.apply_shaping(&st, &[slice.to_string()])?;
            }
        } else {
            nft::apply(&self.nft_node(), &st)?;
            self.apply_shaping(&st, &[slice.to_string()])?;
        }
        Ok(self.slice_net(slice, &entry))
    }

    /// The shaping objects of a slice just attached with a new veth, in one `tc -batch`:
    /// its classes, leaves, hashed filters and the redirects on its veth; under a node cap
    /// also the new shares of the other classes.
    fn shape_added(&self, st: &NetState, slice: &str) -> Result<()> {
        let Some(e) = st.slices.get(slice) else {
            return Ok(());
        };
        let mut b = tc::Batch::default();
        let mut clsact = false;
        for dir in [Dir::Out, Dir::In] {
            let (ifb, cap) = self.ifb_of(dir);
            if !link_exists(&ifb) {
                tc::ensure_ifb(&ifb, dir, &self.subnet.to_string(), cap)?;
            }
            for (name, p) in self.plans(st, dir) {
                if name == slice {
                    b.add_class(&ifb, dir, &p);
                    if !clsact {
                        b.add_clsact(&e.veth);
                        clsact = true;
                    }
                    b.add_redirect(&e.veth, dir, &ifb, e.ip);
                } else if cap.is_some() {
                    b.change_class(&ifb, &p);
                }
            }
        }
        b.run()
    }

    /// The IFB of a direction and the node cap there.
    fn ifb_of(&self, dir: Dir) -> (String, Option<u64>) {
        let cap = match dir {
            Dir::Out => self.node_egress_rate,
            Dir::In => self.node_ingress_rate,
        };
        (tc::ifb_name(&self.bridge, dir), cap)
    }

    fn slice_net(&self, slice: &str, e: &SliceEntry) -> SliceNet {
        self.slice_net_with(slice, e, &self.dns_servers())
    }

    /// The name servers and search domains slices are given (the host's resolv.conf unless
    /// configured): read once for all the slices of a list.
    fn dns_servers(&self) -> (Vec<Ipv4Addr>, Vec<String>) {
        match &self.dns {
            Some(d) => (d.clone(), Vec::new()),
            None => etc::host_dns(),
        }
    }

    fn slice_net_with(
        &self,
        slice: &str,
        e: &SliceEntry,
        (servers, search): &(Vec<Ipv4Addr>, Vec<String>),
    ) -> SliceNet {
        SliceNet {
            slice: slice.into(),
            mode: NetMode::Bridge,
            address: Some(e.ip),
            prefix_len: self.subnet.prefix_len(),
            gateway: Some(self.gateway()),
            mac: Some(e.mac.clone()),
            host_veth: Some(e.veth.clone()),
            hosts: etc::hosts_file(slice, Some(e.ip), Some(self.gateway())),
            resolv_conf: etc::resolv_conf(servers, search),
        }
    }

    /// Every slice's allocation as recorded in the state, by slice name.
    pub fn allocations(&self) -> Result<Vec<Allocation>> {
        let st = NetState::load(&self.state_dir)?;
        Ok(st
            .slices
            .iter()
            .map(|(name, e)| Allocation {
                slice: name.clone(),
                address: e.ip,
                host_veth: e.veth.clone(),
                active: e.active,
            })
            .collect())
    }

    /// Whether a slice's recorded attachment is live: recorded active and its host veth is on
    /// the bridge.
    pub fn is_attached(&self, slice: &str) -> Result<bool> {
        let st = NetState::load(&self.state_dir)?;
        let Some(e) = st.slices.get(slice).filter(|e| e.active) else {
            return Ok(false);
        };
        let master = format!("/sys/class/net/{}/master", e.veth);
        Ok(std::fs::read_link(&master)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy() == self.bridge))
            .unwrap_or(false))
    }

    /// The network of an allocated slice (None if it has no allocation).
    pub fn get(&self, slice: &str) -> Result<Option<SliceNet>> {
        let st = NetState::load(&self.state_dir)?;
        Ok(st.slices.get(slice).map(|e| self.slice_net(slice, e)))
    }

    /// Create (or check) the slice's veth pair and configure both ends, through rtnetlink.
    /// Returns true if the pair was created now (nothing of a previous attachment is left on
    /// it: the caller may add the per-slice objects incrementally).
    fn setup_veth(&self, e: &SliceEntry, netns: &Path) -> Result<bool> {
        let veth = e.veth.as_str();
        let mac = rtnl::parse_mac(&e.mac)
            .ok_or_else(|| NetError::State(format!("slice MAC {:?} does not parse", e.mac)))?;
        let mut nl = Rtnl::open()?;
        let bridge = nl
            .link_index(&self.bridge)?
            .ok_or_else(|| NetError::State(format!("bridge {} does not exist", self.bridge)))?;
        let host = nl.link_index(veth)?;
        let ours = match host {
            None => false,
            Some(h) => match rtnl::in_netns(netns, |nl| nl.link_index("eth0"))? {
                Some(i) => h.link == Some(i.index) && i.link == Some(h.index),
                None => false,
            },
        };
        if !ours {
            if host.is_some() {
                nl.del_link(veth)?;
            }
            let ns = std::fs::File::open(netns)
                .map_err(|err| crate::util::fs::PathError::new("open", netns, err))?;
            if let Err(err) = nl.add_veth(veth, "eth0", mac, &ns) {
                if rtnl::errno_of(&err) == Some(libc::EEXIST)
                    && rtnl::in_netns(netns, |nl| nl.link_index("eth0"))?.is_some()
                {
                    return Err(NetError::State(format!(
                        "network namespace {} already has an eth0 that is not vslice's veth",
                        netns.display()
                    )));
                }
                return Err(err);
            }
        }
        let host = nl
            .link_index(veth)?
            .ok_or_else(|| NetError::State(format!("veth {veth} vanished after creation")))?;
        nl.set_link_up(host.index, Some(bridge.index), None)?;
        let v6 = format!("/proc/sys/net/ipv6/conf/{veth}/disable_ipv6");
        if Path::new(&v6).exists() {
            write_sysctl(&v6, "1")?;
        }
        let gw = self.gateway();
        let plen = self.subnet.prefix_len();
        let ip = e.ip;
        let fresh = !ours;
        rtnl::in_netns(netns, move |nl| {
            let lo = nl
                .link_index("lo")?
                .ok_or_else(|| NetError::State("the namespace has no lo".into()))?;
            nl.set_link_up(lo.index, None, None)?;
            let eth0 = nl
                .link_index("eth0")?
                .ok_or_else(|| NetError::State("eth0 vanished from the namespace".into()))?;
            if !fresh {
                // Converge eth0's IPv4 addresses to exactly the slice's: remove what the
                // slice's root may have added (it would be dropped as spoofed anyway, but as
                // the primary address it would also be the source the slice's stack picks).
                // Deleting a primary address also deletes its secondaries: ours is added after.
                for (a, l) in nl.addrs_v4(eth0.index)? {
                    if (a, l) != (ip, plen) {
                        nl.addr_del(eth0.index, a, l)?;
                    }
                }
            }
            nl.set_link_up(eth0.index, None, (!fresh).then_some(mac))?;
            nl.addr_replace(eth0.index, ip, plen)?;
            nl.default_route_replace(eth0.index, gw)?;
            // The slice network is IPv4-only; IPv6 frames are dropped on the host side
            // anyway, this only keeps the slice from sending them. Best effort (IPv6 may be
            // disabled). This thread is in the slice's namespace: /proc/sys/net is its.
            let _ = std::fs::write("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", "1");
            Ok(())
        })?;
        Ok(fresh)
    }

    /// Class plans of one direction for every active slice that is shaped in it.
    fn plans(&self, st: &NetState, dir: Dir) -> Vec<(String, ClassPlan)> {
        let node_cap = match dir {
            Dir::Out => self.node_egress_rate,
            Dir::In => self.node_ingress_rate,
        };
        let total_w: u64 = st.active().map(|(_, e)| u64::from(e.spec.weight())).sum();
        let mut plans = Vec::new();
        for (name, e) in st.active() {
            let (own, burst, throttle) = match dir {
                Dir::Out => (
                    e.spec.egress_rate,
                    e.spec.egress_burst,
                    e.budget.throttle_bps,
                ),
                Dir::In => (e.spec.ingress_rate, e.spec.ingress_burst, None),
            };
            let Some(ceil) = [own, node_cap, throttle].into_iter().flatten().min() else {
                continue;
            };
            let w = e.spec.weight();
            let rate = match node_cap {
                Some(n) => (n.saturating_mul(u64::from(w)) / total_w.max(1))
                    .clamp(MIN_RATE_BPS.min(ceil), ceil),
                None => ceil,
            };
            plans.push((
                name.clone(),
                ClassPlan {
                    id: e.id,
                    ip: e.ip,
                    rate,
                    ceil,
                    burst,
                    weight: w,
                },
            ));
        }
        plans
    }

    /// Converge the classes of both IFBs to the active slices, and the redirects of the
    /// slices named in `redirects`.
    fn apply_shaping(&self, st: &NetState, redirects: &[String]) -> Result<()> {
        for dir in [Dir::Out, Dir::In] {
            let ifb = tc::ifb_name(&self.bridge, dir);
            if !link_exists(&ifb) {
                let cap = match dir {
                    Dir::Out => self.node_egress_rate,
                    Dir::In => self.node_ingress_rate,
                };
                tc::ensure_ifb(&ifb, dir, &self.subnet.to_string(), cap)?;
            }
            let plans = self.plans(st, dir);
            let classes: Vec<ClassPlan> = plans.iter().map(|(_, p)| p.clone()).collect();
            tc::apply_classes(&ifb, dir, &classes)?;
            for name in redirects {
                let Some(e) = st.slices.get(name).filter(|e| e.active) else {
                    continue;
                };
                let want = plans.iter().any(|(n, _)| n == name).then_some(e.ip);
                tc::set_redirect(&e.veth, dir, &ifb, want)?;
            }
        }
        Ok(())
    }

    /// Disconnect a slice: delete its veth pair, rules and classes. The address stays
    /// allocated (the slice gets it again on the next attach). Idempotent.
    pub fn detach(&self, slice: &str) -> Result<()> {
        self.validate()?;
        let _lock = StateLock::acquire(&self.state_dir)?;
        let mut st = self.load()?;
        self.detach_locked(&mut st, slice)
    }

    fn detach_locked(&self, st: &mut NetState, slice: &str) -> Result<()> {
        let active = st.slices.get(slice).is_some_and(|e| e.active);
        if active && link_exists(&self.bridge) {
            return self.detach_incremental(st, slice);
        }
        if !active {
            // Nothing of a detached slice is in the rule sets or the shaper (a detach that
            // failed half-way fell back to converging everything): only a veth may be left.
            if let Some(e) = st.slices.get(slice) {
                delete_link(&e.veth)?;
            }
            return Ok(());
        }
        if let Some(e) = st.slices.get_mut(slice) {
            if e.active {
                observe_budget(e, now_secs());
            }
            delete_link(&e.veth)?;
            e.active = false;
        }
        st.save(&self.state_dir)?;
        if link_exists(&self.bridge) {
            nft::apply(&self.nft_node(), st)?;
            self.apply_shaping(st, &[])?;
        }
        Ok(())
    }

    /// Detach an active slice removing only its own objects (one `nft -f`, one `tc -batch`);
    /// anything unexpected falls back to converging everything from the state.
    fn detach_incremental(&self, st: &mut NetState, slice: &str) -> Result<()> {
        let node = self.nft_node();
        let script = nft::render_detach(&node, st, slice);
        let had: Vec<(Dir, bool)> = [Dir::Out, Dir::In]
            .into_iter()
            .map(|d| (d, self.plans(st, d).iter().any(|(n, _)| n == slice)))
            .collect();
        let Some(e) = st.slices.get_mut(slice) else {
            return Ok(());
        };
        observe_budget(e, now_secs());
        delete_link(&e.veth)?;
        e.active = false;
        let (id, ip) = (e.id, e.ip);
        st.save(&self.state_dir)?;
        if !matches!(script.map(|s| nft::apply_script(&s)), Some(Ok(()))) {
            nft::apply(&node, st)?;
        }
        let mut b = tc::Batch::default();
        for (dir, shaped) in had {
            let (ifb, cap) = self.ifb_of(dir);
            if shaped {
                b.del_class(&ifb, id, ip);
            }
            if cap.is_some() {
                for (_, p) in self.plans(st, dir) {
                    b.change_class(&ifb, &p);
                }
            }
        }
        if b.run().is_err() {
            self.apply_shaping(st, &[])?;
        }
        Ok(())
    }

    /// Detach and forget the slice: its address and budget counters are freed.
    pub fn release(&self, slice: &str) -> Result<()> {
        self.validate()?;
        let _lock = StateLock::acquire(&self.state_dir)?;
        let mut st = self.load()?;
        self.detach_locked(&mut st, slice)?;
        if st.slices.remove(slice).is_some() {
            st.save(&self.state_dir)?;
        }
        Ok(())
    }

    /// Apply a changed spec to an attached slice, live: rates, bursts, weight, budget, port
    /// forwards, allow lists. A change to mode `none` detaches; a change from `none` to
    /// `bridge` needs an [`NodeNet::attach`] (the namespace is not known here).
    pub fn update(&self, slice: &str, spec: &NetSpec) -> Result<()> {
        self.validate()?;
        spec.validate()?;
        let _lock = StateLock::acquire(&self.state_dir)?;
        let mut st = self.load()?;
        let Some(e) = st.slices.get(slice) else {
            return Err(NetError::State(format!(
                "slice {slice:?} has no network attachment"
            )));
        };
        if spec.mode == NetMode::None {
            self.detach_locked(&mut st, slice)?;
            return Ok(());
        }
        let active = e.active;
        check_port_conflicts(&st, slice, spec)?;
        let now = now_secs();
        let e = st.slices.get_mut(slice).expect("checked above");
        e.spec = spec.clone();
        if active {
            observe_budget(e, now);
        }
        e.budget.throttle_bps = e
            .spec
            .budget
            .as_ref()
            .and_then(|b| throttle_for(b, &e.budget, now));
        st.save(&self.state_dir)?;
        if active {
            nft::apply(&self.nft_node(), &st)?;
            self.apply_shaping(&st, &[slice.to_string()])?;
        }
        Ok(())
    }

    /// Live rates only: a shorthand for [`NodeNet::update`] with the stored spec's rates changed.
    pub fn update_rates(
        &self,
        slice: &str,
        egress_rate: Option<u64>,
        ingress_rate: Option<u64>,
    ) -> Result<()> {
        let st = NetState::load(&self.state_dir)?;
        let Some(e) = st.slices.get(slice) else {
            return Err(NetError::State(format!(
                "slice {slice:?} has no network attachment"
            )));
        };
        let mut spec = e.spec.clone();
        spec.egress_rate = egress_rate;
        spec.ingress_rate = ingress_rate;
        self.update(slice, &spec)
    }

    /// Counters of a slice (zero for a detached slice, except the budget).
    pub fn stats(&self, slice: &str) -> Result<NetCounters> {
        let st = NetState::load(&self.state_dir)?;
        let Some(e) = st.slices.get(slice) else {
            return Err(NetError::State(format!(
                "slice {slice:?} has no network attachment"
            )));
        };
        let drops = if e.active && link_exists(&e.veth) {
            self.drop_counters()?
        } else {
            DropCounters::default()
        };
        Ok(counters_of(e, &drops, None))
    }

    /// The counters tc and nftables keep for every slice, read at once: two class dumps and
    /// two counter dumps over netlink whatever the number of slices (per slice, listing 1000
    /// slices ran 4000 processes; then four processes per list were still most of its cost).
    pub fn drop_counters(&self) -> Result<DropCounters> {
        let (out, inn) = self.ifb_names();
        Ok(DropCounters {
            shaping_out: tc::all_class_drops(&out)?,
            shaping_in: tc::all_class_drops(&inn)?,
            bridge: super::nftnl::counters("bridge", &self.nft_table)?,
            inet: super::nftnl::counters("inet", &self.nft_table)?,
        })
    }

    /// Every attached slice's address, host veth and counters (the drop counters from
    /// `drops`, the rest read now), from one read of the state.
    pub fn attachments(
        &self,
        drops: &DropCounters,
    ) -> Result<BTreeMap<String, (SliceNet, NetCounters)>> {
        let st = NetState::load_shared(&self.state_dir)?;
        // One dump for every veth; where it fails, each veth is asked for on its own.
        let links = super::rtnl::Rtnl::open()
            .and_then(|mut r| r.link_stats())
            .ok();
        let dns = self.dns_servers();
        Ok(st
            .slices
            .iter()
            .map(|(name, e)| {
                (
                    name.clone(),
                    (
                        self.slice_net_with(name, e, &dns),
                        counters_of(e, drops, links.as_ref()),
                    ),
                )
            })
            .collect())
    }

    /// [`NodeNet::get`] and its counters (the drop counters from `drops`).
    pub fn attachment(
        &self,
        slice: &str,
        drops: &DropCounters,
    ) -> Result<Option<(SliceNet, NetCounters)>> {
        let st = NetState::load_shared(&self.state_dir)?;
        Ok(st
            .slices
            .get(slice)
            .map(|e| (self.slice_net(slice, e), counters_of(e, drops, None))))
    }

    /// One budget pass (the daemon runs it periodically, e.g. every 10 s): count each active
    /// slice's outbound bytes into its daily budget (persisted), and throttle or release its
    /// outbound rate.
    pub fn enforce_budgets(&self) -> Result<Vec<BudgetStatus>> {
        self.enforce_budgets_at(now_secs())
    }

    /// [`NodeNet::enforce_budgets`] at a given time (seconds since the epoch).
    pub fn enforce_budgets_at(&self, now: u64) -> Result<Vec<BudgetStatus>> {
        self.validate()?;
        let _lock = StateLock::acquire(&self.state_dir)?;
        let mut st = self.load()?;
        let mut changed = Vec::new();
        let mut statuses = Vec::new();
        for (name, e) in st.slices.iter_mut() {
            if !e.active {
                continue;
            }
            let before = e.budget.throttle_bps;
            match e.spec.budget {
                Some(b) => {
                    observe_budget(e, now);
                    e.budget.throttle_bps = throttle_for(&b, &e.budget, now);
                    statuses.push(BudgetStatus {
                        slice: name.clone(),
                        period_start: e.budget.period_start,
                        used_bytes: e.budget.used_bytes,
                        max_bytes: b.max_bytes,
                        thresh_bytes: b.thresh_bytes,
                        throttle_bps: e.budget.throttle_bps,
                    });
                }
                None => e.budget.throttle_bps = None,
            }
            if e.budget.throttle_bps != before {
                changed.push(name.clone());
            }
        }
        st.save(&self.state_dir)?;
        if !changed.is_empty() && link_exists(&self.bridge) {
            self.apply_shaping(&st, &changed)?;
        }
        Ok(statuses)
    }
}

fn check_port_conflicts(st: &NetState, slice: &str, spec: &NetSpec) -> Result<()> {
    for (i, p) in spec.ports.iter().enumerate() {
        for (other, e) in st.active() {
            if other == slice {
                continue;
            }
            if e.spec
                .ports
                .iter()
                .any(|q| q.host_port == p.host_port && q.proto == p.proto)
            {
                return Err(NetError::invalid(
                    format!("net.ports[{i}].host_port"),
                    format!(
                        "{}/{} is already forwarded to slice {other:?}",
                        p.host_port,
                        p.proto.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A locally administered unicast MAC derived from an address: 02:76:a:b:c:d.
fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:76:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The drop counters of every slice as tc and nftables had them at one moment
/// ([`NodeNet::drop_counters`]).
#[derive(Debug, Default, Clone)]
pub struct DropCounters {
    /// Per HTB class id: packets the outbound / inbound shaper dropped.
    shaping_out: BTreeMap<u32, u64>,
    shaping_in: BTreeMap<u32, u64>,
    /// Named nftables counters: name -> (packets, bytes).
    bridge: BTreeMap<String, (u64, u64)>,
    inet: BTreeMap<String, (u64, u64)>,
}

/// A slice's counters: its veth's, from `links` (every link's, one dump: list) or asked for
/// now (inspect), and its drops from `drops`.
fn counters_of(
    e: &SliceEntry,
    drops: &DropCounters,
    links: Option<&std::collections::HashMap<String, super::rtnl::LinkStats>>,
) -> NetCounters {
    let mut c = NetCounters::default();
    let stats = match links {
        Some(all) => all.get(&e.veth).copied(),
        None => super::rtnl::Rtnl::open()
            .and_then(|mut r| r.link_stats_of(&e.veth))
            .ok()
            .flatten(),
    };
    if let Some(s) = stats.filter(|_| e.active) {
        // Host side of the veth: what it receives the slice sent, and vice versa.
        c.bytes_out = s.rx_bytes;
        c.packets_out = s.rx_packets;
        c.bytes_in = s.tx_bytes;
        c.packets_in = s.tx_packets;
        c.dropped_shaping_out = drops.shaping_out.get(&e.id).copied().unwrap_or(0);
        c.dropped_shaping_in = drops.shaping_in.get(&e.id).copied().unwrap_or(0);
        let v = &e.veth;
        let get = |m: &BTreeMap<String, (u64, u64)>, k: String| m.get(&k).map_or(0, |x| x.0);
        c.dropped_spoofed = get(&drops.bridge, format!("spoof_{v}"));
        c.dropped_non_ipv4 = get(&drops.bridge, format!("nonip_{v}"));
        c.dropped_policy =
            get(&drops.bridge, format!("iso_{v}")) + get(&drops.inet, format!("blocked_{v}"));
    }
    if e.spec.budget.is_some() {
        let mut b = e.clone();
        if e.active {
            observe_budget(&mut b, now_secs());
        }
        c.budget_used_bytes = Some(b.budget.used_bytes);
        c.budget_throttle_bps = e.budget.throttle_bps;
    }
    c
}

fn read_stat(dev: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn ifindex(dev: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Add the slice's outbound bytes since the last observation to its budget; start a new
/// period at a UTC midnight (bytes of the old period are not carried over).
fn observe_budget(e: &mut SliceEntry, now: u64) {
    let Some(idx) = ifindex(&e.veth) else { return };
    let raw = read_stat(&e.veth, "rx_bytes");
    let b = &mut e.budget;
    let delta = if idx == b.last_ifindex && raw >= b.last_raw {
        raw - b.last_raw
    } else {
        raw
    };
    let period = now - now % BUDGET_PERIOD_SECS;
    if b.period_start == 0 && b.last_ifindex == 0 {
        // First observation: everything the veth counted belongs to this period.
        b.period_start = period;
        b.used_bytes = delta;
    } else if b.period_start != period {
        b.period_start = period;
        b.used_bytes = 0;
    } else {
        b.used_bytes = b.used_bytes.saturating_add(delta);
    }
    b.last_raw = raw;
    b.last_ifindex = idx;
}

/// The outbound rate a budget imposes: none below the threshold; past it, what makes the rest
/// of the budget last the rest of the period (at least [`BUDGET_FLOOR_BPS`]).
pub(crate) fn throttle_for(budget: &ByteBudget, b: &BudgetState, now: u64) -> Option<u64> {
    if b.used_bytes < budget.thresh_bytes {
        return None;
    }
    let period = now - now % BUDGET_PERIOD_SECS;
    if b.period_start != period {
        return None; // a new period has begun and nothing is counted yet
    }
    let left_secs = (period + BUDGET_PERIOD_SECS).saturating_sub(now).max(1);
    let left_bytes = budget.max_bytes.saturating_sub(b.used_bytes);
    Some((left_bytes.saturating_mul(8) / left_secs).max(BUDGET_FLOOR_BPS))
}

fn delete_link(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    Rtnl::open()?.del_link(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_spreads_the_rest_over_the_day() {
        let budget = ByteBudget {
            max_bytes: 1_000_000_000,
            thresh_bytes: 500_000_000,
        };
        let midnight = 1_700_006_400 - 1_700_006_400 % BUDGET_PERIOD_SECS;
        let noon = midnight + 43_200;
        let mut b = BudgetState {
            period_start: midnight,
            used_bytes: 100,
            ..Default::default()
        };
        assert_eq!(throttle_for(&budget, &b, noon), None);
        b.used_bytes = 600_000_000;
        // 400 MB over 43200 s = 74074 bit/s
        assert_eq!(
            throttle_for(&budget, &b, noon),
            Some(400_000_000 * 8 / 43_200)
        );
        b.used_bytes = 2_000_000_000;
        assert_eq!(throttle_for(&budget, &b, noon), Some(BUDGET_FLOOR_BPS));
        // next day: nothing counted yet
        assert_eq!(throttle_for(&budget, &b, noon + BUDGET_PERIOD_SECS), None);
    }

    #[test]
    fn node_validation_names_fields() {
        let mut n = NodeNet::new("/tmp/x");
        n.validate().unwrap();
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        n.bridge = "a-very-long-bridge".into();
        assert!(n
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("node.bridge:"));
        n.bridge = "vslice0".into();
        n.subnet = "10.0.0.0/8".parse().unwrap();
        assert!(n
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("node.subnet:"));
    }

    #[test]
    fn mac_is_local_unicast() {
        assert_eq!(mac_for(Ipv4Addr::new(10, 213, 0, 2)), "02:76:0a:d5:00:02");
    }
}
