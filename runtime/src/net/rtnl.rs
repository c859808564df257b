//! Links, addresses and routes through rtnetlink, without forking `ip`.
//!
//! Synchronous on purpose: `NodeNet` is called from the daemon's blocking pool, from the
//! `vslice` CLI without a daemon and from tests, none of which has (or should need) an async
//! runtime; one request at a time on a blocking `NETLINK_ROUTE` socket is all these steps
//! need. Messages are built with `netlink-packet-route` (the message types the `rtnetlink`
//! crate itself uses; `rtnetlink` adds only a tokio connection on top of them).
//!
//! Steps inside a slice's network namespace run on a short-lived thread that joins the
//! namespace with `setns(CLONE_NEWNET)` (per thread; the rest of the process is untouched)
//! and opens its own socket there; the socket stays bound to that namespace.
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::tc::{TcAttribute, TcMessage, TcStats2};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::cmd::{NetError, Result};

/// A blocking rtnetlink socket of the calling thread's network namespace.
pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
}

fn nl_err(what: &str, e: impl std::fmt::Display) -> NetError {
    NetError::Command {
        cmd: format!("netlink {what}"),
        status: "failed".into(),
        stderr: e.to_string(),
    }
}

/// The errno of a failed netlink request, for the callers that accept some.
pub(crate) fn errno_of(e: &NetError) -> Option<i32> {
    match e {
        NetError::Command { status, .. } => status.strip_prefix("errno ")?.parse().ok(),
        _ => None,
    }
}

impl Rtnl {
    pub fn open() -> Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| nl_err("socket", e))?;
        sock.bind_auto().map_err(|e| nl_err("bind", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| nl_err("connect", e))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Send one request and collect its replies (a dump's messages, or nothing for an ack).
    fn request(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(|e| nl_err(what, e))?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(|e| nl_err(what, e))?;
            let mut off = 0;
            while off < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| nl_err(what, e))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue; // a late reply to an earlier request
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out), // the ack
                            Some(code) => Err(NetError::Command {
                                cmd: format!("netlink {what}"),
                                status: format!("errno {}", -code.get()),
                                stderr: std::io::Error::from_raw_os_error(-code.get()).to_string(),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(i) => {
                        out.push(i);
                        if !dump {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The index of link `name` (None if there is none).
    pub fn link_index(&mut self, name: &str) -> Result<Option<LinkState>> {
        Ok(self.get_link(name)?.map(|l| LinkState::of(&l)))
    }

    /// The counters of link `name` (None if there is none), from one request: `inspect`
    /// reads a slice's veth this way rather than four sysfs files and a stat.
    pub fn link_stats_of(&mut self, name: &str) -> Result<Option<LinkStats>> {
        Ok(self.get_link(name)?.and_then(|l| LinkStats::of(&l)))
    }

    fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(
            &format!("get link {name}"),
            RouteNetlinkMessage::GetLink(m),
            0,
        ) {
            Ok(v) => Ok(v.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a veth pair: `host` here, `peer` (with `peer_mac`) moved into the namespace
    /// open at `peer_netns`. Fails with EEXIST if either name is taken.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        peer_netns: &std::fs::File,
    ) -> Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.into()));
        p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(host.into()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            &format!("add veth {host}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Set link `index` up, optionally with a master and a MAC.
    pub fn set_link_up(
        &mut self,
        index: u32,
        master: Option<u32>,
        mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(mac) = mac {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(master) = master {
            m.attributes.push(LinkAttribute::Controller(master));
        }
        self.request(
            &format!("set link {index} up"),
            RouteNetlinkMessage::SetLink(m),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Delete link `name`; a missing link is not an error.
    pub fn del_link(&mut self, name: &str) -> Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(m),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Byte and packet counters of every link of the namespace, by name, from one dump:
    /// `list` reads them for all slices at once rather than four sysfs files per veth.
    pub fn link_stats(&mut self) -> Result<std::collections::HashMap<String, LinkStats>> {
        let all = self.request(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = std::collections::HashMap::new();
        for r in all {
            let RouteNetlinkMessage::NewLink(l) = r else {
                continue;
            };
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if let (Some(n), Some(s)) = (name, LinkStats::of(&l)) {
                out.insert(n, s);
            }
        }
        Ok(out)
    }

    /// Packets dropped per class of link `name`'s root qdisc (class minor -> drops), from one
    /// `RTM_GETTCLASS` dump; empty when the link does not exist. `list` reads the ifbs' HTB
    /// classes (one per slice) this way rather than by running and parsing `tc -s class show`.
    pub fn class_drops(&mut self, name: &str) -> Result<std::collections::BTreeMap<u32, u64>> {
        let mut out = std::collections::BTreeMap::new();
        let Some(link) = self.link_index(name)? else {
            return Ok(out);
        };
        let mut req = TcMessage::default();
        req.header.index = link.index as i32;
        let all = self.request(
            &format!("dump classes of {name}"),
            RouteNetlinkMessage::GetTrafficClass(req),
            NLM_F_DUMP,
        )?;
        for r in all {
            let RouteNetlinkMessage::NewTrafficClass(c) = r else {
                continue;
            };
            // The newer TCA_STATS2 queue block where the kernel sends it, the legacy
            // TCA_STATS otherwise (both carry qstats.drops, which `tc -s` prints).
            let mut drops = None;
            for a in &c.attributes {
                match a {
                    TcAttribute::Stats2(s) => {
                        for st in s {
                            if let TcStats2::Queue(q) = st {
                                drops = Some(u64::from(q.drops));
                            }
                        }
                    }
                    TcAttribute::Stats(s) if drops.is_none() => drops = Some(u64::from(s.drops)),
                    _ => {}
                }
            }
            out.insert(u32::from(c.header.handle.minor), drops.unwrap_or(0));
        }
        Ok(out)
    }

    /// IPv4 addresses of link `index`: (address, prefix length).
    pub fn addrs_v4(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let all = self.request(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(m),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for r in all {
            let RouteNetlinkMessage::NewAddress(a) = r else {
                continue;
            };
            if a.header.index != index || a.header.family != AddressFamily::Inet {
                continue;
            }
            for attr in &a.attributes {
                if let AddressAttribute::Local(std::net::IpAddr::V4(ip)) = attr {
                    out.push((*ip, a.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    fn addr_msg(index: u32, ip: Ipv4Addr, plen: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = plen;
        m.header.index = index;
        m.attributes
            .push(AddressAttribute::Local(std::net::IpAddr::V4(ip)));
        m.attributes
            .push(AddressAttribute::Address(std::net::IpAddr::V4(ip)));
        if plen < 31 {
            let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
            let bcast = Ipv4Addr::from(u32::from(ip) | !mask);
            m.attributes.push(AddressAttribute::Broadcast(bcast));
        }
        m
    }

    /// `ip addr replace ip/plen dev index`.
    pub fn addr_replace(&mut self, index: u32, ip: Ipv4Addr, plen: u8) -> Result<()> {
        self.request(
            &format!("add address {ip}/{plen}"),
            RouteNetlinkMessage::NewAddress(Self::addr_msg(index, ip, plen)),
            NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK,
        )
        .map(drop)
    }

    /// `ip addr del ip/plen dev index`; a missing address is not an error.
    pub fn addr_del(&mut self, index: u32, ip: Ipv4Addr, plen: u8) -> Result<()> {
        match self.request(
            &format!("delete address {ip}/{plen}"),
            RouteNetlinkMessage::DelAddress(Self::addr_msg(index, ip, plen)),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `ip route replace default via gw dev index`.
    pub fn default_route_replace(&mut self, index: u32, gw: Ipv4Addr) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        m.attributes.push(RouteAttribute::Oif(index));
        self.request(
            &format!("replace default route via {gw}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK,
        )
        .map(drop)
    }
}

/// What the veth check needs of a link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkState {
    pub index: u32,
    /// The peer's index (IFLA_LINK) for a veth.
    pub link: Option<u32>,
}

impl LinkState {
    fn of(l: &LinkMessage) -> LinkState {
        LinkState {
            index: l.header.index,
            link: l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Link(i) => Some(*i),
                _ => None,
            }),
        }
    }
}

/// A link's counters (`IFLA_STATS64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

impl LinkStats {
    fn of(l: &LinkMessage) -> Option<LinkStats> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(LinkStats {
                rx_bytes: s.rx_bytes,
                rx_packets: s.rx_packets,
                tx_bytes: s.tx_bytes,
                tx_packets: s.tx_packets,
            }),
            _ => None,
        })
    }
}

/// Run `f` with an rtnetlink socket of the network namespace at `netns`, on a thread that
/// joined it (see the module documentation). `f` may also use files under /proc/sys/net,
/// which then are the namespace's.
pub(crate) fn in_netns<T: Send>(
    netns: &Path,
    f: impl FnOnce(&mut Rtnl) -> Result<T> + Send,
) -> Result<T> {
    let file = std::fs::File::open(netns)
        .map_err(|e| crate::util::fs::PathError::new("open", netns, e))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| nl_err(&format!("setns {}", netns.display()), e))?;
            let mut nl = Rtnl::open()?;
            f(&mut nl)
        })
        .join()
        .unwrap_or_else(|_| Err(nl_err("netns thread", "panicked")))
    })
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut it = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The dump names every link with the counters its sysfs files show (loopback: no
    /// privilege or setup needed; read before and after the dump, as traffic may flow).
    #[test]
    fn link_stats_match_sysfs() {
        let read = |f: &str| -> u64 {
            std::fs::read_to_string(format!("/sys/class/net/lo/statistics/{f}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let links = || -> std::collections::BTreeSet<String> {
            std::fs::read_dir("/sys/class/net")
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        let (names, before) = (links(), (read("rx_packets"), read("tx_bytes")));
        let all = Rtnl::open().unwrap().link_stats().unwrap();
        let lo = all.get("lo").expect("lo in the dump");
        let one = Rtnl::open().unwrap().link_stats_of("lo").unwrap().unwrap();
        let mid = (read("rx_packets"), read("tx_bytes"));
        assert!((lo.rx_packets..=mid.0).contains(&one.rx_packets), "{one:?}");
        assert!((lo.tx_bytes..=mid.1).contains(&one.tx_bytes), "{one:?}");
        assert_eq!(
            Rtnl::open().unwrap().link_stats_of("nosuch0").unwrap(),
            None
        );
        let (after, names_after) = (mid, links());
        assert!((before.0..=after.0).contains(&lo.rx_packets), "{lo:?}");
        assert!((before.1..=after.1).contains(&lo.tx_bytes), "{lo:?}");
        // Every link there before and after (others may come and go meanwhile).
        for n in names.intersection(&names_after) {
            assert!(
                all.contains_key(n),
                "{n} missing from the dump: {:?}",
                all.keys()
            );
        }
    }

    /// Run `f` on a thread in a network namespace of its own (gone when the thread ends), so
    /// a test can make links and qdiscs without touching the host's.
    pub(crate) fn in_fresh_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare net");
                f()
            })
            .join()
            .expect("netns thread")
        })
    }

    /// The per-class drops from the netlink dump are what `tc -s class show` prints, with
    /// real drops: an HTB class at 8 kbit/s with a one-packet queue, flooded through a veth
    /// with a static neighbour, so no ARP (processes forked from the thread share its
    /// namespace).
    #[test]
    fn class_drops_match_tc() {
        in_fresh_netns(|| {
            let sh = |cmd: &str| {
                let st = std::process::Command::new("sh")
                    .arg("-ec")
                    .arg(cmd)
                    .status();
                assert!(st.unwrap().success(), "{cmd}");
            };
            sh(
                "ip link add d0 type veth peer name d1; ip addr add 10.9.9.1/24 dev d0; \
                ip link set d1 up; ip link set d0 up; \
                ip neigh add 10.9.9.2 lladdr 02:00:00:00:00:02 dev d0; \
                tc qdisc add dev d0 root handle 1: htb default 2a; \
                tc class add dev d0 parent 1: classid 1:1 htb rate 1gbit; \
                tc class add dev d0 parent 1:1 classid 1:2a htb rate 8kbit ceil 8kbit; \
                tc class add dev d0 parent 1:1 classid 1:7 htb rate 1mbit; \
                tc qdisc add dev d0 parent 1:2a handle 2a: pfifo limit 1",
            );
            let u = std::net::UdpSocket::bind("10.9.9.1:0").unwrap();
            for _ in 0..50 {
                let _ = u.send_to(&[0u8; 512], "10.9.9.2:9");
            }
            let mut nl = Rtnl::open().unwrap();
            let got = nl.class_drops("d0").unwrap();
            let out = std::process::Command::new("tc")
                .args(["-s", "class", "show", "dev", "d0"])
                .output()
                .unwrap();
            let want = super::super::tc::parse_class_drops(&String::from_utf8_lossy(&out.stdout));
            assert_eq!(got, want);
            assert!(got[&0x2a] > 0, "the flooded class dropped: {got:?}");
            assert_eq!((got[&1], got[&7]), (0, 0), "{got:?}");
            assert!(nl.class_drops("nosuchlink").unwrap().is_empty());
        });
    }
}
