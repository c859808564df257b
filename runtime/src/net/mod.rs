//! Slice networking: bridge, veth pairs, address allocation, nftables isolation and NAT, tc
//! shaping, byte budgets, counters.
//!
//! # API
//!
//! ```no_run
//! use vslice::net::{NodeNet, NetSpec, NetMode, Netns};
//! # fn main() -> Result<(), vslice::net::NetError> {
//! let node = NodeNet::new("/var/lib/vslice/net");        // defaults: vslice0, 10.213.0.0/20, table vslice
//! node.ensure()?;                                         // idempotent; at daemon start
//! let spec = NetSpec { mode: NetMode::Bridge, egress_rate: Some(10_000_000), ..Default::default() };
//! let init_pid = 1234;
//! let net = node.attach("web", Netns::Pid(init_pid), &spec)?;   // idempotent
//! // net.hosts / net.resolv_conf -> the slice's /etc (or net.write_etc(rootfs, Some((uid, gid))))
//! node.update("web", &spec)?;                             // live: rates, weight, budget, ports, allow
//! let counters = node.stats("web")?;                      // serde
//! node.enforce_budgets()?;                                // periodically (e.g. every 10 s)
//! node.detach("web")?;                                    // keeps the address; release() frees it
//! node.teardown()?;                                       // removes bridge, IFBs, tables
//! # Ok(()) }
//! ```
//!
//! * [`NodeNet`] holds the node configuration (every kernel object name is configurable, so
//!   tests run beside a real install) and its methods are the operations; state (address
//!   allocations, specs in force, budget counters) is `net.json` in `state_dir`, written
//!   atomically under an flock on `net.lock`, so several processes may call them.
//! * The namespace is given as [`Netns::Pid`] (`/proc/<pid>/ns/net`) or [`Netns::Path`].
//!
//! # Addressing
//!
//! Default subnet **10.213.0.0/20**, gateway 10.213.0.1 on the bridge, slices from .2 up
//! (lowest free; kept per slice name until `release`). Why there: it stays clear of the ranges
//! people actually use — home and office routers (192.168.0-1.0/24, 10.0.0.0/24, 10.0-10.1/16),
//! Docker (172.17.0.0/16 and its 172.18-31 / 192.168.x pools), Kubernetes defaults (10.96/12
//! services, 10.244/16 flannel, 10.42/16 k3s, 10.233/16 kubespray), Podman 10.88/16, libvirt
//! 192.168.122/24, and the CGNAT block 100.64/10 (carrier NAT and Tailscale) — while being RFC
//! 1918 space that is never routed on the internet. A /20 gives 4094 addresses, more than the
//! thousand slices a node is sized for, and fits tc's 12-bit u32 filter node ids, which are the
//! slice ids here (subnets /20 to /29 are accepted). MACs are derived from the address
//! (`02:76:` + the four octets).
//!
//! # Isolation (nftables, see `nft.rs`)
//!
//! * Layer 2, `bridge` family table: a frame entering from a slice's host veth must carry the
//!   slice's MAC, and its ARP sender / IPv4 source must be the slice's; anything else is
//!   dropped and counted (`spoof_<veth>`); non-IPv4/ARP frames are dropped (`nonip_<veth>`).
//!   Frames between two slice ports are dropped (`iso_<veth>`) unless the pair is open.
//! * Layer 3, `inet` family table: input from the bridge is dropped (`blocked_<veth>`) unless
//!   it is a reply, a ping of the gateway, or a host port the slice's policy opens; forwarding
//!   from the bridge back to the bridge (a slice routing to another slice through the gateway)
//!   is dropped unless the pair is open; forwarding into slices is allowed only for replies and
//!   port forwards; traffic from the subnet to elsewhere is masqueraded.
//! * Port forwards: DNAT in prerouting (from outside, to any node address) and in output (from
//!   the node itself, to any node address except 127/8 — e.g. connect to the gateway address
//!   `10.213.0.1:<host_port>`). 127.0.0.1 is not supported on purpose: it would need
//!   `route_localnet` on the bridge, which also lets slices reach the host's loopback-only
//!   services. Port forwards are not reachable from slices.
//! * Why not `br_netfilter`: see `nft.rs`; the rules are correct whether it is on or off.
//!
//! # Bandwidth (tc, see `tc.rs`)
//!
//! Two shared IFB devices per node, `<bridge>-out` and `<bridge>-in`, each with one HTB tree:
//! node class 1:1 (the node cap of that direction, or unlimited) and one class per shaped
//! slice, `ceil = min(own cap, node cap, budget throttle)`, `rate = node cap * weight / sum of
//! active weights` (or the ceil without a node cap). The host veth's tc ingress (traffic out of
//! the slice) and egress (traffic into it) redirect the slice's packets there. All of it is in
//! the host network namespace: the slice's root (CAP_NET_ADMIN in its own namespace only)
//! cannot see or change it.
//!
//! # Byte budget
//!
//! [`ByteBudget`] counts the host veth's rx bytes (what the slice sent) per UTC day; the
//! counters live in `net.json`, so they survive daemon restarts (a new veth after a node reboot
//! is detected by its ifindex). [`NodeNet::enforce_budgets`] is the periodic pass.
//!
//! # Sysctls touched
//!
//! Only of our own devices (`conf/<bridge>/forwarding=1`, `disable_ipv6=1` on the bridge and
//! host veths, `disable_ipv6` on the slice's eth0), plus the host-wide
//! `net.ipv4.ip_forward=1` when [`NodeNet::set_global_ip_forward`] is true (the default; NAT
//! to the outside needs it). Docker-style hosts with a FORWARD policy of DROP in another table
//! will drop slice egress: the operator must allow the bridge there.
mod cidr;
mod cmd;
mod etc;
mod nft;
mod nftnl;
mod node;
mod rtnl;
mod spec;
mod state;
mod tc;

pub use cidr::Ipv4Cidr;
pub use cmd::NetError;
pub use etc::GATEWAY_HOSTNAME;
pub use nft::{flow_mark, flow_mark_prefix, FLOW_MARK_MASK};
pub use node::{
    Allocation, BudgetStatus, DropCounters, NetCounters, Netns, NodeNet, SliceNet,
    BUDGET_PERIOD_SECS, DEFAULT_BRIDGE, DEFAULT_NFT_TABLE, DEFAULT_SUBNET, DEFAULT_VETH_PREFIX,
};
pub use spec::{
    ByteBudget, HostPort, NetAllow, NetMode, NetSpec, PortForward, Proto, BUDGET_FLOOR_BPS,
    MAX_RATE_BPS, MAX_WEIGHT, MIN_RATE_BPS,
};
pub use state::{NetState, SliceEntry};
