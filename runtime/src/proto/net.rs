//! The network part of a slice spec, and a running slice's traffic counters. Validation is
//! [`crate::net::NetSpec::validate`] (it needs the limits in `crate::net`).
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Network mode of a slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// Loopback only.
    #[default]
    None,
    /// A veth on the host bridge `vslice0`, NAT, shaping.
    Bridge,
}

/// Transport protocol of a port forward or an allowed host port.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(&self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port forward: connections to `host_port` on the node's addresses go to `slice_port` of
/// the slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PortForward {
    /// 1..=65535.
    pub host_port: u16,
    /// 1..=65535.
    pub slice_port: u16,
    pub proto: Proto,
}

/// A host port the slice may connect to (a service of the node itself, on any node address).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct HostPort {
    /// 1..=65535.
    pub port: u16,
    pub proto: Proto,
}

/// What a slice may reach beyond the default (the outside world through NAT).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NetAllow {
    /// Slices this slice may exchange traffic with, or `"*"` for every slice. A pair of slices
    /// is open only when **both** list each other (or `*`): one slice's policy cannot open
    /// another slice. An open pair is open in both directions, every protocol.
    pub slices: Vec<String>,
    /// Services of the node the slice may reach (on any node address, e.g. the gateway).
    pub host_ports: Vec<HostPort>,
}

/// A daily byte budget for traffic **out of** the slice, like PlanetLab's `net_max_kbyte` /
/// `net_thresh_kbyte`. The day is the UTC day. Below `thresh_bytes` nothing happens; past it
/// the slice's outbound rate is lowered to `(max_bytes - used) / seconds left in the day`
/// (at least 8000 bit/s) so that the rest of the budget lasts the rest of the day; past
/// `max_bytes` the slice is held at 8000 bit/s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ByteBudget {
    pub max_bytes: u64,
    pub thresh_bytes: u64,
}

/// The network part of a slice spec.
///
/// Directions are named from the slice's point of view: **egress** is traffic the slice sends
/// (out of the slice), **ingress** is traffic the slice receives. Rates are bits per second,
/// bursts bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NetSpec {
    pub mode: NetMode,
    /// Port forwards from the node's addresses into the slice (mode bridge).
    pub ports: Vec<PortForward>,
    /// Cap on traffic out of the slice, bits/s (8000..=100000000000).
    pub egress_rate: Option<u64>,
    /// Burst allowed above `egress_rate`, bytes (1600..=2^30; default: computed by HTB from
    /// the rate).
    pub egress_burst: Option<u64>,
    /// Cap on traffic into the slice, bits/s (8000..=100000000000).
    pub ingress_rate: Option<u64>,
    /// Burst allowed above `ingress_rate`, bytes (1600..=2^30).
    pub ingress_burst: Option<u64>,
    /// Share of the node-wide caps under contention (like PlanetLab's net_share), 1..=10000;
    /// default 1.
    pub weight: Option<u32>,
    /// Daily byte budget for outbound traffic.
    pub budget: Option<ByteBudget>,
    /// Traffic opened beyond the default isolation.
    pub allow: NetAllow,
}

/// Per-slice counters. "out" is traffic sent by the slice, "in" traffic delivered to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetCounters {
    pub bytes_out: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub packets_in: u64,
    /// Packets dropped by the outbound shaper (queue full).
    pub dropped_shaping_out: u64,
    /// Packets dropped by the inbound shaper.
    pub dropped_shaping_in: u64,
    /// Frames dropped for a source MAC, ARP or IP that is not the slice's.
    pub dropped_spoofed: u64,
    /// Packets dropped by the isolation policy (to other slices, to host services).
    pub dropped_policy: u64,
    /// Frames dropped for not being IPv4 or ARP (e.g. IPv6).
    pub dropped_non_ipv4: u64,
    /// Outbound bytes counted against the daily budget in the current period.
    pub budget_used_bytes: Option<u64>,
    /// The outbound rate the budget holds the slice to, if throttled.
    pub budget_throttle_bps: Option<u64>,
}
