//! Slice networking (bridge, veth, nftables, tc). OWNED BY THE NETWORK HELPER.
