//! A minimal IPv4 CIDR type. The `ipnetwork` crate would replace it; it is not a dependency
//! yet and vslice needs only parsing, containment and the n-th host.
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network in CIDR notation, e.g. `10.213.0.0/20`. The address is the network
/// address (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// A network from its address and prefix length; host bits must be zero.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Cidr, String> {
        if prefix_len > 32 {
            return Err(format!("prefix length /{prefix_len} is larger than 32"));
        }
        let cidr = Ipv4Cidr {
            network,
            prefix_len,
        };
        if u32::from(network) & !cidr.mask() != 0 {
            return Err(format!(
                "{network}/{prefix_len} has host bits set (the network address is {}/{prefix_len})",
                Ipv4Addr::from(u32::from(network) & cidr.mask())
            ));
        }
        Ok(cidr)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// Number of usable host offsets (1 ..= host_count()); excludes network and broadcast.
    pub fn host_count(&self) -> u32 {
        let size = 1u64 << (32 - u32::from(self.prefix_len));
        size.saturating_sub(2) as u32
    }

    /// The host at `offset` from the network address (1 = first host), if inside the network
    /// and not the broadcast address.
    pub fn host(&self, offset: u32) -> Option<Ipv4Addr> {
        if offset == 0 || offset > self.host_count() {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network) + offset))
    }

    /// Offset of `ip` from the network address, if `ip` is inside the network.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u32> {
        if self.contains(ip) {
            Some(u32::from(ip) - u32::from(self.network))
        } else {
            None
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR notation (a.b.c.d/n)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| format!("{len:?} is not a prefix length"))?;
        Ipv4Cidr::new(addr, len)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_hosts() {
        let c: Ipv4Cidr = "10.213.0.0/20".parse().unwrap();
        assert_eq!(c.host_count(), 4094);
        assert_eq!(c.host(1), Some(Ipv4Addr::new(10, 213, 0, 1)));
        assert_eq!(c.host(4094), Some(Ipv4Addr::new(10, 213, 15, 254)));
        assert_eq!(c.host(4095), None);
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 213, 1, 2)), Some(258));
        assert!(!c.contains(Ipv4Addr::new(10, 213, 16, 1)));
        assert_eq!(c.to_string(), "10.213.0.0/20");
    }

    #[test]
    fn rejects_host_bits_and_garbage() {
        assert!("10.213.0.1/20"
            .parse::<Ipv4Cidr>()
            .unwrap_err()
            .contains("host bits"));
        assert!("10.213.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.213.0.0/33".parse::<Ipv4Cidr>().is_err());
    }
}
