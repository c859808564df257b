//! Slice networking (bridge, veth, nftables, tc). OWNED BY THE NETWORK HELPER.
use serde::{Deserialize, Serialize};

/// Network mode of a slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// Loopback only.
    #[default]
    None,
    /// A veth on the host bridge `vslice0`, NAT, shaping.
    Bridge,
}

/// The network part of a slice spec (extended by the networking work).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetSpec {
    pub mode: NetMode,
}
