//! Named counters of an nftables table read through nf_tables netlink (`NFT_MSG_GETOBJ`
//! dump), without running `nft`.
//!
//! Why by hand: `nft -j list counters` loads the whole ruleset into its cache before it
//! prints a counter, so `list` and `inspect` paid a process and a full ruleset dump that
//! grows with the slices (two thirds of a list of 300 slices was `nft`). The kernel filters
//! the dump by table and object type; what comes back is one small message per counter. The
//! `rustables` and `nftnl` crates would cover this, but each brings a whole ruleset model (or
//! libnftnl through FFI) for one read-only request; rules are still written by `nft -f` (one
//! transaction per change, see nft.rs).
use std::collections::BTreeMap;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::cmd::{NetError, Result};
use crate::util::netlink::{attr, attrs, be64, messages, push_attr};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_GETOBJ: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;

fn nl_err(family: &str, table: &str, e: impl std::fmt::Display) -> NetError {
    NetError::Command {
        cmd: format!("netlink nf_tables dump of the counters of table {family} {table}"),
        status: "failed".into(),
        stderr: e.to_string(),
    }
}

/// The `nfgenmsg` family of an nft family name.
fn family_number(family: &str, table: &str) -> Result<u8> {
    Ok(match family {
        "inet" => libc::NFPROTO_INET,
        "ip" => libc::NFPROTO_IPV4,
        "ip6" => libc::NFPROTO_IPV6,
        "bridge" => libc::NFPROTO_BRIDGE,
        "arp" => libc::NFPROTO_ARP,
        "netdev" => libc::NFPROTO_NETDEV,
        other => {
            return Err(nl_err(
                family,
                table,
                format!("unknown nftables family {other:?}"),
            ))
        }
    } as u8)
}

/// The dump request: every counter object of `table` in `family`.
fn request(family: u8, table: &str) -> Vec<u8> {
    let mut body = vec![family, 0, 0, 0]; // nfgenmsg: family, NFNETLINK_V0, res_id 0
    let mut name = table.as_bytes().to_vec();
    name.push(0);
    push_attr(&mut body, NFTA_OBJ_TABLE, &name);
    push_attr(&mut body, NFTA_OBJ_TYPE, &NFT_OBJECT_COUNTER.to_be_bytes());
    let mut req = Vec::with_capacity(16 + body.len());
    req.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ).to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    req.extend_from_slice(&body);
    req
}

/// One `NEWOBJ` message of `table`'s counters: (name, (packets, bytes)).
fn counter(payload: &[u8], table: &str) -> Option<(String, (u64, u64))> {
    let a = payload.get(4..)?; // after nfgenmsg
    let of_table = attr(a, NFTA_OBJ_TABLE)?.split(|&b| b == 0).next()? == table.as_bytes();
    let name = attr(a, NFTA_OBJ_NAME)?.split(|&b| b == 0).next()?;
    let data = attr(a, NFTA_OBJ_DATA)?;
    let (mut packets, mut bytes) = (0, 0);
    for (k, v) in attrs(data) {
        match k {
            NFTA_COUNTER_PACKETS => packets = be64(v)?,
            NFTA_COUNTER_BYTES => bytes = be64(v)?,
            _ => {}
        }
    }
    of_table.then(|| (String::from_utf8_lossy(name).into_owned(), (packets, bytes)))
}

/// Named counters of `table` in `family` (the current network namespace): name ->
/// (packets, bytes). Empty when the table does not exist.
pub(crate) fn counters(family: &str, table: &str) -> Result<BTreeMap<String, (u64, u64)>> {
    let mut out = BTreeMap::new();
    let err = |e: std::io::Error| nl_err(family, table, e);
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(err)?;
    sock.bind_auto().map_err(err)?;
    let req = request(family_number(family, table)?, table);
    sock.send_to(&req, &SocketAddr::new(0, 0), 0).map_err(err)?;
    // A dump datagram is at most a page or two (NLMSG_GOODSIZE); 64 KiB never truncates.
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = sock.recv(&mut &mut buf[..], 0).map_err(err)?;
        if n == 0 {
            return Ok(out);
        }
        for (kind, payload) in messages(&buf[..n]) {
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = payload
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map_or(-libc::EIO, i32::from_ne_bytes);
                    // ENOENT: no such table (the node network is not up yet).
                    return match -errno {
                        0 | libc::ENOENT => Ok(out),
                        e => Err(err(std::io::Error::from_raw_os_error(e))),
                    };
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ => {
                    if let Some((name, c)) = counter(payload, table) {
                        out.insert(name, c);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::rtnl::tests::in_fresh_netns;

    /// The counters `nft -j list counters` prints (the reference; it was the implementation).
    fn nft_listed(family: &str, table: &str) -> BTreeMap<String, (u64, u64)> {
        let out = std::process::Command::new("nft")
            .args(["-j", "list", "counters", "table", family, table])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i.get("counter"))
            .map(|c| {
                let n = |k: &str| c[k].as_u64().unwrap();
                (
                    c["name"].as_str().unwrap().to_string(),
                    (n("packets"), n("bytes")),
                )
            })
            .collect()
    }

    /// In a namespace of its own: counters of one table only (a same-named table of another
    /// family and another table's counter are left out), with the packets a rule counted.
    #[test]
    fn counters_match_nft() {
        in_fresh_netns(|| {
            let rules = "table inet vt {
                counter a {}
                counter hit {}
                chain out {
                    type filter hook output priority 0;
                    udp dport 9 counter name hit
                }
            }
            table bridge vt { counter b { packets 3 bytes 300; }; }
            table inet other { counter c {}; }
            ";
            let mut nft = std::process::Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            nft.stdin
                .take()
                .unwrap()
                .write_all(rules.as_bytes())
                .unwrap();
            assert!(nft.wait().unwrap().success());
            std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap();
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..5 {
                u.send_to(b"x", "127.0.0.1:9").unwrap();
            }
            let inet = counters("inet", "vt").unwrap();
            assert_eq!(inet, nft_listed("inet", "vt"));
            assert_eq!(inet.keys().collect::<Vec<_>>(), ["a", "hit"]);
            assert_eq!(inet["hit"].0, 5, "{inet:?}");
            assert_eq!(inet["hit"].1, 5 * 29, "IPv4 20 + UDP 8 + 1 byte: {inet:?}");
            let bridge = counters("bridge", "vt").unwrap();
            assert_eq!(bridge, nft_listed("bridge", "vt"));
            assert_eq!(bridge.get("b"), Some(&(3, 300)));
            assert!(counters("inet", "nosuchtable").unwrap().is_empty());
            assert!(counters("nosuchfamily", "vt").is_err());
        });
    }
}
