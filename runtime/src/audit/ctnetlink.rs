//! conntrack through ctnetlink, in the daemon: the event subscription (NEW and DESTROY groups)
//! and the table listing the flow log needs, without the `conntrack` tool.
//!
//! Why by hand: netlink-packet-netfilter covers nflog and only parts of ctnetlink (no event
//! groups, no CTA_COUNTERS / CTA_TIMESTAMP), and the subprocess it replaces cost a fork, a text
//! formatter and a text parser per event. The wire format is small and stable (uapi
//! `linux/netfilter/nfnetlink_conntrack.h`): a netlink header, a 4-byte `nfgenmsg`, then
//! attributes, some nested. Sockets come from netlink-sys; parsing here is pure (unit-tested
//! on crafted messages) and the integration tests drive it against the kernel's conntrack.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::util::netlink::{attrs, be16, be32, be64};

/// One direction of a conntrack tuple, with its counters when accounting is on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tuple {
    pub src: String,
    pub dst: String,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

/// What a message said about the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CtEvent {
    /// A new connection (event stream).
    New,
    /// The entry was destroyed (event stream), with its final counters.
    Destroy,
    /// A listing of the table (dump) — the entry is alive.
    #[default]
    Listed,
}

/// A conntrack entry as one message describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtEntry {
    pub event: CtEvent,
    /// Protocol name (`tcp`, `udp`, `icmp`, …) or its number.
    pub proto: String,
    pub orig: Tuple,
    pub reply: Tuple,
    pub mark: u32,
    pub id: Option<u64>,
    /// Start and stop, ns since the epoch (with `nf_conntrack_timestamp`).
    pub start_ns: Option<u64>,
    pub stop_ns: Option<u64>,
}

impl CtEntry {
    /// When the event happened, ms since the epoch: the kernel's own stamp where it gave one.
    pub fn time_ms(&self) -> Option<i64> {
        let ns = match self.event {
            CtEvent::New => self.start_ns,
            CtEvent::Destroy => self.stop_ns,
            CtEvent::Listed => None,
        }?;
        i64::try_from(ns / 1_000_000).ok()
    }

    /// How long a destroyed entry lived, whole seconds (as `conntrack`'s `delta-time`).
    pub fn duration_secs(&self) -> Option<u64> {
        Some(self.stop_ns?.checked_sub(self.start_ns?)? / 1_000_000_000)
    }
}

// uapi constants (linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h, netlink.h).
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_TIMESTAMP: u16 = 20;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_TIMESTAMP_START: u16 = 1;
const CTA_TIMESTAMP_STOP: u16 = 2;

fn addr(p: &[u8]) -> Option<String> {
    let ip = match p.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(p).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(p).ok()?)),
        _ => return None,
    };
    Some(ip.to_string())
}

fn proto_name(num: u8) -> String {
    match num {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        33 => "dccp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// A CTA_TUPLE_* payload; returns the protocol name too.
fn tuple(p: &[u8], t: &mut Tuple) -> Option<String> {
    let mut proto = None;
    for (kind, v) in attrs(p) {
        match kind {
            CTA_TUPLE_IP => {
                for (k, a) in attrs(v) {
                    match k {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => t.src = addr(a).unwrap_or_default(),
                        CTA_IP_V4_DST | CTA_IP_V6_DST => t.dst = addr(a).unwrap_or_default(),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, a) in attrs(v) {
                    match k {
                        CTA_PROTO_NUM => proto = a.first().map(|n| proto_name(*n)),
                        CTA_PROTO_SRC_PORT => t.sport = be16(a),
                        CTA_PROTO_DST_PORT => t.dport = be16(a),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    proto
}

fn counters(p: &[u8], t: &mut Tuple) {
    for (k, v) in attrs(p) {
        match k {
            CTA_COUNTERS_PACKETS => t.packets = be64(v),
            CTA_COUNTERS_BYTES => t.bytes = be64(v),
            _ => {}
        }
    }
}

/// The body of a ctnetlink message (after `nfgenmsg`).
fn entry(body: &[u8], event: CtEvent) -> Option<CtEntry> {
    let mut e = CtEntry {
        event,
        ..CtEntry::default()
    };
    for (kind, v) in attrs(body) {
        match kind {
            CTA_TUPLE_ORIG => e.proto = tuple(v, &mut e.orig).unwrap_or_default(),
            CTA_TUPLE_REPLY => {
                tuple(v, &mut e.reply);
            }
            CTA_MARK => e.mark = be32(v).unwrap_or(0),
            CTA_ID => e.id = be32(v).map(u64::from),
            CTA_COUNTERS_ORIG => counters(v, &mut e.orig),
            CTA_COUNTERS_REPLY => counters(v, &mut e.reply),
            CTA_TIMESTAMP => {
                for (k, t) in attrs(v) {
                    match k {
                        CTA_TIMESTAMP_START => e.start_ns = be64(t),
                        CTA_TIMESTAMP_STOP => e.stop_ns = be64(t),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (!e.orig.src.is_empty() && !e.proto.is_empty()).then_some(e)
}

/// What one netlink message in a datagram was.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Entry(Box<CtEntry>),
    /// End of a dump.
    Done,
    /// An error answer (negative errno), or an acknowledgement (0).
    Error(i32),
    /// Anything else (other subsystems, malformed).
    Other,
}

/// Split a datagram into messages. `listing`: the datagram answers a dump (its CT_NEW
/// messages are live entries, not new connections).
pub fn parse(buf: &[u8], listing: bool) -> Vec<Message> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < 16 || len > rest.len() {
            break;
        }
        let payload = &rest[16..len];
        out.push(match kind {
            NLMSG_DONE => Message::Done,
            NLMSG_ERROR => Message::Error(
                payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(-libc::EIO, i32::from_ne_bytes),
            ),
            _ if kind >> 8 == NFNL_SUBSYS_CTNETLINK && payload.len() >= 4 => {
                let event = match (kind & 0xff, listing) {
                    (_, true) => Some(CtEvent::Listed),
                    (IPCTNL_MSG_CT_NEW, false) => Some(CtEvent::New),
                    (IPCTNL_MSG_CT_DELETE, false) => Some(CtEvent::Destroy),
                    _ => None,
                };
                event
                    .and_then(|ev| entry(&payload[4..], ev))
                    .map_or(Message::Other, |e| Message::Entry(Box::new(e)))
            }
            _ => Message::Other,
        });
        let next = (len + 3) & !3;
        if next >= rest.len() {
            break;
        }
        rest = &rest[next..];
    }
    out
}

fn socket() -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_NETFILTER)?;
    s.bind_auto()?;
    Ok(s)
}

/// Socket receive buffer, bytes: SO_RCVBUFFORCE (root may pass `net.core.rmem_max`, which a
/// burst of events needs), SO_RCVBUF if that is refused.
fn set_rcvbuf(s: &Socket, bytes: usize) -> std::io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket fd and a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(std::io::Error::last_os_error())
}

/// The event subscription: NEW and DESTROY of every family, in the caller's netns.
pub struct Events {
    sock: Socket,
    buf: Vec<u8>,
    rcvbuf: usize,
}

impl Events {
    pub fn subscribe(rcvbuf: usize) -> std::io::Result<Events> {
        let sock = socket()?;
        set_rcvbuf(&sock, rcvbuf)?;
        sock.add_membership(NFNLGRP_CONNTRACK_NEW)?;
        sock.add_membership(NFNLGRP_CONNTRACK_DESTROY)?;
        Ok(Events {
            sock,
            buf: vec![0; 64 << 10],
            rcvbuf,
        })
    }

    /// The receive buffer it asked for.
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }

    /// The next datagram's entries; `wait`: block for one, else `None` when none is queued.
    /// `Err(ENOBUFS)`: the kernel dropped events because the buffer was full; the socket stays
    /// usable.
    pub fn recv(&mut self, wait: bool) -> std::io::Result<Option<Vec<Box<CtEntry>>>> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        let n = match self.sock.recv(&mut &mut self.buf[..], flags) {
            Ok(n) => n,
            Err(e) if !wait && e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(
            parse(&self.buf[..n], false)
                .into_iter()
                .filter_map(|m| match m {
                    Message::Entry(e) => Some(e),
                    _ => None,
                })
                .collect(),
        ))
    }
}

/// List the conntrack table (every family), calling `each` per live entry.
pub fn list(mut each: impl FnMut(Box<CtEntry>)) -> std::io::Result<()> {
    let sock = socket()?;
    let _ = set_rcvbuf(&sock, 4 << 20);
    let mut req = Vec::with_capacity(20);
    req.extend_from_slice(&20u32.to_ne_bytes());
    req.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // nfgenmsg: family, v0, res_id
    sock.send_to(&req, &SocketAddr::new(0, 0), 0)?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = sock.recv(&mut &mut buf[..], 0)?;
        if n == 0 {
            return Ok(());
        }
        for m in parse(&buf[..n], true) {
            match m {
                Message::Entry(e) => each(e),
                Message::Done => return Ok(()),
                Message::Error(0) | Message::Other => {}
                Message::Error(errno) => return Err(std::io::Error::from_raw_os_error(-errno)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((payload.len() + 4) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }
    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        nla(kind | 0x8000, &parts.concat())
    }
    fn tuple_attr(kind: u16, src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        nested(
            kind,
            &[
                nested(
                    CTA_TUPLE_IP,
                    &[nla(CTA_IP_V4_SRC, &src), nla(CTA_IP_V4_DST, &dst)],
                ),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        nla(CTA_PROTO_NUM, &[6]),
                        nla(CTA_PROTO_SRC_PORT, &sp.to_be_bytes()),
                        nla(CTA_PROTO_DST_PORT, &dp.to_be_bytes()),
                    ],
                ),
            ],
        )
    }
    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + 4 + body.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[2, 0, 0, 0]);
        v.extend_from_slice(body);
        v
    }

    fn destroy_body() -> Vec<u8> {
        [
            tuple_attr(CTA_TUPLE_ORIG, [10, 0, 0, 2], [192, 0, 2, 9], 40000, 22),
            tuple_attr(
                CTA_TUPLE_REPLY,
                [192, 0, 2, 9],
                [198, 51, 100, 1],
                22,
                40000,
            ),
            nla(CTA_MARK, &0x5a00_0003u32.to_be_bytes()),
            nla(CTA_ID, &77u32.to_be_bytes()),
            nested(
                CTA_COUNTERS_ORIG,
                &[
                    nla(CTA_COUNTERS_PACKETS, &5u64.to_be_bytes()),
                    nla(CTA_COUNTERS_BYTES, &300u64.to_be_bytes()),
                ],
            ),
            nested(
                CTA_COUNTERS_REPLY,
                &[
                    nla(CTA_COUNTERS_PACKETS, &4u64.to_be_bytes()),
                    nla(CTA_COUNTERS_BYTES, &9000u64.to_be_bytes()),
                ],
            ),
            nested(
                CTA_TIMESTAMP,
                &[
                    nla(CTA_TIMESTAMP_START, &1_000_000_000_000u64.to_be_bytes()),
                    nla(CTA_TIMESTAMP_STOP, &1_003_500_000_000u64.to_be_bytes()),
                ],
            ),
        ]
        .concat()
    }

    #[test]
    fn parses_a_destroy_event_with_counters_and_times() {
        let msg = message((1 << 8) | IPCTNL_MSG_CT_DELETE, &destroy_body());
        let parsed = parse(&msg, false);
        let [Message::Entry(e)] = parsed.as_slice() else {
            panic!("{parsed:?}")
        };
        assert_eq!(e.event, CtEvent::Destroy);
        assert_eq!(e.proto, "tcp");
        assert_eq!(
            (e.orig.src.as_str(), e.orig.dst.as_str()),
            ("10.0.0.2", "192.0.2.9")
        );
        assert_eq!((e.orig.sport, e.orig.dport), (Some(40000), Some(22)));
        assert_eq!(e.reply.dst, "198.51.100.1");
        assert_eq!((e.orig.packets, e.orig.bytes), (Some(5), Some(300)));
        assert_eq!((e.reply.packets, e.reply.bytes), (Some(4), Some(9000)));
        assert_eq!(e.mark, 0x5a00_0003);
        assert_eq!(e.id, Some(77));
        assert_eq!(e.time_ms(), Some(1_003_500));
        assert_eq!(e.duration_secs(), Some(3));
    }

    #[test]
    fn a_dump_datagram_holds_several_entries_and_done() {
        let mut dgram = message((1 << 8) | IPCTNL_MSG_CT_NEW, &destroy_body());
        dgram.extend(message((1 << 8) | IPCTNL_MSG_CT_NEW, &destroy_body()));
        let mut done = message(NLMSG_DONE, &[]);
        done.truncate(20);
        dgram.extend(done);
        let parsed = parse(&dgram, true);
        assert_eq!(parsed.len(), 3, "{parsed:?}");
        assert!(matches!(&parsed[0], Message::Entry(e) if e.event == CtEvent::Listed));
        assert_eq!(parsed[2], Message::Done);
        // A listed entry has no event time of its own.
        let Message::Entry(e) = &parsed[1] else {
            panic!()
        };
        assert_eq!(e.time_ms(), None);
    }

    #[test]
    fn malformed_input_is_skipped_not_trusted() {
        // Truncated mid-attribute, an attribute longer than its message, an unknown subsystem.
        let msg = message((1 << 8) | IPCTNL_MSG_CT_NEW, &destroy_body());
        for cut in [0, 10, 19, 30, msg.len() - 3] {
            let _ = parse(&msg[..cut], false);
        }
        let mut bad = message((1 << 8) | IPCTNL_MSG_CT_NEW, &nla(CTA_TUPLE_ORIG, &[0; 8]));
        bad[20] = 0xff; // nla_len far beyond the message
        assert_eq!(parse(&bad, false), vec![Message::Other]);
        let other = message(2 << 8, &destroy_body());
        assert_eq!(parse(&other, false), vec![Message::Other]);
        // An entry without a tuple is not an entry.
        let empty = message((1 << 8) | IPCTNL_MSG_CT_NEW, &nla(CTA_MARK, &[0, 0, 0, 1]));
        assert_eq!(parse(&empty, false), vec![Message::Other]);
    }

    #[test]
    fn error_answers_carry_the_errno() {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        assert_eq!(parse(&m, true), vec![Message::Error(-libc::EPERM)]);
    }
}
