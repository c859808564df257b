//! Netlink attributes (`struct nlattr`), read and written by hand for the netlink families the
//! `netlink-packet-*` crates do not cover: ctnetlink and nf_tables (audit/ctnetlink.rs,
//! net/nftnl.rs) and the few rtnetlink requests made on raw sockets (audit/owner.rs).
//! netlink-packet-netfilter models neither conntrack entries nor nf_tables objects yet.

const NLA_TYPE_MASK: u16 = 0x3fff;

/// Netlink attributes of `buf`: (type without the nested/byte-order flags, payload). Stops at
/// the first malformed one.
pub(crate) fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return None;
        }
        let payload = &rest[4..len];
        let next = align4(len);
        rest = rest.get(next..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// The payload of attribute `want` in a run of attributes.
pub(crate) fn attr(buf: &[u8], want: u16) -> Option<&[u8]> {
    attrs(buf).find_map(|(kind, v)| (kind == want).then_some(v))
}

/// Append attribute `kind` with payload `data`, padded to 4 bytes.
pub(crate) fn push_attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(align4(out.len()), 0);
}

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub(crate) fn be16(p: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(..2)?.try_into().ok()?))
}
pub(crate) fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}
pub(crate) fn be64(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}

/// The messages of a datagram: (nlmsg_type, payload after the 16-byte header). Stops at the
/// first malformed one.
pub(crate) fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < 16 || len > rest.len() {
            return None;
        }
        let payload = &rest[16..len];
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_stop_at_garbage() {
        let mut b = Vec::new();
        push_attr(&mut b, 1, b"abc\0");
        push_attr(&mut b, 0x8000 | 2, &7u64.to_be_bytes());
        push_attr(&mut b, 3, &[]);
        let all: Vec<_> = attrs(&b).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], (1, &b"abc\0"[..]));
        assert_eq!(
            be64(all[1].1),
            Some(7),
            "the nested flag is masked: {all:?}"
        );
        assert_eq!(attr(&b, 3), Some(&[][..]));
        // A length running past the buffer ends the walk instead of reading beyond it.
        b.extend_from_slice(&[200, 0, 4, 0, 1, 2]);
        assert_eq!(attrs(&b).count(), 3);
    }

    #[test]
    fn messages_split_a_datagram() {
        let mut d = Vec::new();
        for (kind, body) in [(3u16, &b"done"[..]), (0x0a12, &b"xyz"[..])] {
            d.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            d.extend_from_slice(&kind.to_ne_bytes());
            d.extend_from_slice(&[0; 10]);
            d.extend_from_slice(body);
            d.resize(align4(d.len()), 0);
        }
        let m: Vec<_> = messages(&d).collect();
        assert_eq!(m, vec![(3, &b"done"[..]), (0x0a12, &b"xyz"[..])]);
    }
}
