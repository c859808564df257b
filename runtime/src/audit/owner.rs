//! Which process made a slice's connection: looked up on the host right after the flow's NEW
//! event, from the socket tables and file descriptors of the slice's network namespace.
//!
//! How, and why it is sound:
//! * the slice's network namespace is identified through the **host veth** the flow was
//!   attributed by (its `IFLA_LINK_NETNSID`, from rtnetlink), and a process belongs to it only
//!   when its `/proc/<pid>/ns/net` has that same nsid in the host namespace (`RTM_GETNSID` with
//!   the namespace's fd). Addresses are never trusted: another slice (or a namespace a slice's
//!   root made) holding a socket with the same tuple is in another namespace and never named;
//! * in that namespace the socket is found by its tuple in `/proc/<pid>/net/{tcp,udp}`
//!   (inode), and the process by a `socket:[inode]` link in `/proc/<pid>/fd`; the host sees
//!   every process (a slice's root cannot hide one from the host's /proc).
//!
//! Limits (said in the record and in `who`'s answer by a missing `process`):
//! * a socket closed (or a process gone) before the lookup is not found: connections that live
//!   less than the lookup delay (a batch runs at most every 20 ms, later under load) have no
//!   process. An eBPF program on `connect`/`sendmsg` (cgroup hooks) would see every one; the
//!   tree builds and loads BPF now (the exec log, audit/exec_bpf.rs), so that is the next
//!   step here;
//! * a socket shared by several processes (fork, fd passing) names the first holder found;
//! * an inbound connection not yet accepted is attributed to the listening socket's process;
//! * lookups are bounded (a queue of [`MAX_PENDING`] flows; more are not looked up and the
//!   `proc` record is simply absent), so a connection flood cannot slow the flow log.
//!
//! Why raw rtnetlink here rather than the netlink-packet-route crate (which net/rtnl.rs
//! uses): two fixed requests with one attribute each, answered in one datagram; the crate's
//! message types would be the replacement if more requests are needed.
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// At most this many flows wait for a lookup; more are skipped (counted).
pub const MAX_PENDING: usize = 4096;

/// A flow to find the process of: the socket as the slice sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketKey {
    /// `tcp` or `udp`.
    pub proto: String,
    pub local: (Ipv4Addr, u16),
    pub remote: (Ipv4Addr, u16),
    /// Host end of the slice's veth (identifies the slice's network namespace).
    pub veth: String,
}

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK_NETNSID: u16 = 37;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const NLM_F_REQUEST: u16 = 1;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Send one rtnetlink request, return the payload (after the nlmsghdr) of the first answer of
/// type `want`, or `None` on an error answer.
fn rtnl(kind: u16, body: &[u8], want: u16) -> Option<Vec<u8>> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = 16 + body.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    msg.extend_from_slice(body);
    // SAFETY: sockaddr_nl zeroed is the kernel address.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: msg and sa outlive the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if n < 0 {
        return None;
    }
    let mut buf = vec![0u8; 16384];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 16 {
        return None;
    }
    let buf = &buf[..n as usize];
    let mlen = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
    let mtype = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
    if mtype == NLMSG_ERROR || mtype != want || mlen > buf.len() || mlen < 16 {
        return None;
    }
    Some(buf[16..mlen].to_vec())
}

/// Find attribute `want` in a run of rtattrs.
fn attr(b: &[u8], want: u16) -> Option<&[u8]> {
    super::ctnetlink::attrs(b).find_map(|(kind, v)| (kind == want).then_some(v))
}

fn push_attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(align4(out.len()), 0);
}

/// The nsid (in the host namespace) of the namespace the peer of host link `ifname` is in.
pub fn link_netnsid(ifname: &str) -> Option<i32> {
    let mut body = vec![0u8; 16]; // struct ifinfomsg, AF_UNSPEC, index 0: by name
    let mut name = ifname.as_bytes().to_vec();
    name.push(0);
    push_attr(&mut body, IFLA_IFNAME, &name);
    let p = rtnl(RTM_GETLINK, &body, RTM_NEWLINK)?;
    let a = attr(p.get(16..)?, IFLA_LINK_NETNSID)?;
    Some(i32::from_ne_bytes(a.get(..4)?.try_into().ok()?))
}

/// The nsid the host namespace gave the network namespace `fd` refers to (none assigned: -1).
pub fn nsid_of(fd: &OwnedFd) -> Option<i32> {
    let mut body = vec![0u8; 4]; // struct rtgenmsg, padded
    push_attr(&mut body, NETNSA_FD, &(fd.as_raw_fd() as u32).to_ne_bytes());
    let p = rtnl(RTM_GETNSID, &body, RTM_NEWNSID)?;
    let a = attr(p.get(4..)?, NETNSA_NSID)?;
    Some(i32::from_ne_bytes(a.get(..4)?.try_into().ok()?))
}

/// `0100007F:1F90` → 127.0.0.1:8080 (the kernel prints the address as a native u32).
fn hex_addr(s: &str) -> Option<(Ipv4Addr, u16)> {
    let (a, p) = s.split_once(':')?;
    let a = u32::from_str_radix(a, 16).ok()?;
    let p = u16::from_str_radix(p, 16).ok()?;
    Some((Ipv4Addr::from(a.to_ne_bytes()), p))
}

/// One row of /proc/net/{tcp,udp}: local, remote, state, inode.
pub type SockRow = ((Ipv4Addr, u16), (Ipv4Addr, u16), u8, u64);

/// Parse one row of /proc/net/{tcp,udp}.
pub fn parse_sock_line(line: &str) -> Option<SockRow> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let local = hex_addr(f.get(1)?)?;
    let remote = hex_addr(f.get(2)?)?;
    let st = u8::from_str_radix(f.get(3)?, 16).ok()?;
    let inode = f.get(9)?.parse().ok()?;
    Some((local, remote, st, inode))
}

const TCP_LISTEN: u8 = 0x0a;

/// `127.0.0.1:8080` → `0100007F:1F90`, as the kernel prints it.
fn hex_of(a: (Ipv4Addr, u16)) -> String {
    format!("{:08X}:{:04X}", u32::from_ne_bytes(a.0.octets()), a.1)
}

/// The socket inode of each key in one /proc/net/{tcp,udp} table: the exact tuple first, then
/// (TCP) the listener on the local port or (UDP) an unconnected socket bound to it.
///
/// One pass, and only the rows that can match are parsed: a slice that makes thousands of
/// short connections has as many TIME_WAIT rows, and splitting every one of them per batch
/// was most of the flow log's CPU. The row's tuple sits at a fixed place after `sl:`
/// (`%08X:%04X %08X:%04X %02X`), so it is compared as text against the keys' own.
fn find_inodes(keys: &[&SocketKey], table: &str) -> Vec<Option<u64>> {
    let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        exact
            .entry(format!("{} {}", hex_of(k.local), hex_of(k.remote)))
            .or_default()
            .push(i);
    }
    let mut out = vec![None; keys.len()];
    let mut unbound: Vec<SockRow> = Vec::new();
    const UNCONNECTED: &str = "00000000:0000";
    for line in table.lines().skip(1) {
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        let (Some(tuple), Some(remote), Some(state)) =
            (rest.get(0..27), rest.get(14..27), rest.get(28..30))
        else {
            continue;
        };
        if let Some(ix) = exact.get(tuple) {
            if let Some(row) = parse_sock_line(line).filter(|r| r.3 != 0) {
                for &i in ix {
                    out[i] = Some(row.3);
                }
            }
        } else if state == "0A" || remote == UNCONNECTED {
            unbound.extend(parse_sock_line(line).filter(|r| r.3 != 0));
        }
    }
    let any = Ipv4Addr::UNSPECIFIED;
    for (i, k) in keys.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        let local_ok = |l: (Ipv4Addr, u16)| l.1 == k.local.1 && (l.0 == k.local.0 || l.0 == any);
        out[i] = unbound
            .iter()
            .find(|r| {
                local_ok(r.0)
                    && if k.proto == "tcp" {
                        r.2 == TCP_LISTEN
                    } else {
                        r.1 == (any, 0)
                    }
            })
            .map(|r| r.3);
    }
    out
}

/// Namespace membership, cached between batches: a full /proc pass (every process's
/// `ns/net`) costs a few ms on a busy host, so it runs at most every [`RESCAN`] and when a
/// socket's holder is not among the known processes (a new process), at most every
/// [`RESCAN_MISS`]. Staleness cannot misattribute: the holder is confirmed by its own
/// `socket:[inode]` link at lookup time, and the inode is taken from the slice's table.
pub struct Resolver {
    /// nsid → processes of that namespace.
    members: HashMap<i32, Vec<u32>>,
    scanned: Option<std::time::Instant>,
    /// veth → nsid of its peer's namespace.
    links: HashMap<String, Option<i32>>,
    links_at: Option<std::time::Instant>,
}

const RESCAN: std::time::Duration = std::time::Duration::from_secs(1);
const RESCAN_MISS: std::time::Duration = std::time::Duration::from_millis(100);

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    pub fn new() -> Resolver {
        Resolver {
            members: HashMap::new(),
            scanned: None,
            links: HashMap::new(),
            links_at: None,
        }
    }

    /// Every process's namespace, grouped by nsid (only namespaces with an nsid: those linked
    /// to the host by a veth or otherwise known to it).
    fn scan(&mut self) {
        self.scanned = Some(std::time::Instant::now());
        self.members.clear();
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        let mut by_ns: HashMap<std::path::PathBuf, Vec<u32>> = HashMap::new();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else {
                continue;
            };
            if Some(&ns) == own.as_ref() {
                continue;
            }
            by_ns.entry(ns).or_default().push(pid);
        }
        for (_, pids) in by_ns {
            for &pid in &pids {
                let Ok(f) = std::fs::File::open(format!("/proc/{pid}/ns/net")) else {
                    continue; // gone: try another process of the namespace
                };
                if let Some(id) = nsid_of(&OwnedFd::from(f)) {
                    if id >= 0 {
                        self.members.insert(id, pids);
                    }
                }
                break;
            }
        }
    }

    /// Look up a batch: for each key, the host pid of the process holding its socket.
    pub fn resolve(&mut self, keys: &[SocketKey]) -> Vec<Option<u32>> {
        if self.links_at.is_none_or(|t| t.elapsed() > RESCAN) {
            self.links.clear();
            self.links_at = Some(std::time::Instant::now());
        }
        for k in keys {
            if !self.links.contains_key(&k.veth) {
                let id = link_netnsid(&k.veth);
                self.links.insert(k.veth.clone(), id);
            }
        }
        if self.scanned.is_none_or(|t| t.elapsed() > RESCAN) {
            self.scan();
        }
        let mut out = self.pass(keys);
        if out.iter().any(Option::is_none) {
            // A holder started after the last scan (a client right after another one): wait
            // out the rate limit rather than give up, so a miss costs at most one rescan.
            if let Some(since) = self.scanned.map(|t| t.elapsed()) {
                if since < RESCAN_MISS {
                    std::thread::sleep(RESCAN_MISS - since);
                }
            }
            self.scan();
            let again = self.pass(keys);
            for (o, a) in out.iter_mut().zip(again) {
                if o.is_none() {
                    *o = a;
                }
            }
        }
        out
    }

    fn pass(&self, keys: &[SocketKey]) -> Vec<Option<u32>> {
        let mut out = vec![None; keys.len()];
        // Socket inode per key, from its namespace's tables (read through any member), one
        // table per (namespace, protocol) with all its keys at once.
        let mut groups: HashMap<(i32, &str), Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            let Some(Some(id)) = self.links.get(&k.veth) else {
                continue;
            };
            if self.members.contains_key(id) {
                groups.entry((*id, k.proto.as_str())).or_default().push(i);
            }
        }
        let mut want: HashMap<i32, Vec<(usize, u64)>> = HashMap::new();
        for ((id, proto), ix) in groups {
            let Some(pids) = self.members.get(&id) else {
                continue;
            };
            let table = pids
                .iter()
                .find_map(|p| std::fs::read_to_string(format!("/proc/{p}/net/{proto}")).ok())
                .unwrap_or_default();
            let group: Vec<&SocketKey> = ix.iter().map(|&i| &keys[i]).collect();
            for (i, ino) in ix.iter().zip(find_inodes(&group, &table)) {
                if let Some(ino) = ino {
                    want.entry(id).or_default().push((*i, ino));
                }
            }
        }
        // Holders: a socket:[inode] link among the namespace's processes' descriptors.
        for (id, items) in &want {
            let Some(pids) = self.members.get(id) else {
                continue;
            };
            let mut left = items.len();
            'pids: for &pid in pids {
                let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                    continue;
                };
                for fd in fds.flatten() {
                    let Ok(l) = std::fs::read_link(fd.path()) else {
                        continue;
                    };
                    let l = l.to_string_lossy();
                    let Some(ino) = l
                        .strip_prefix("socket:[")
                        .and_then(|x| x.strip_suffix(']'))
                        .and_then(|x| x.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    for &(i, want_ino) in items {
                        if want_ino == ino && out[i].is_none() {
                            out[i] = Some(pid);
                            left -= 1;
                        }
                    }
                    if left == 0 {
                        break 'pids;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socket_rows_and_matches_tuples() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
   1: 0203D60A:9C40 0203D70A:0016 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n";
        let row = parse_sock_line(table.lines().nth(2).unwrap()).unwrap();
        assert_eq!(row.0, (Ipv4Addr::new(10, 214, 3, 2), 40000));
        assert_eq!(row.1, (Ipv4Addr::new(10, 215, 3, 2), 22));
        assert_eq!(row.2, 1);
        assert_eq!(row.3, 222);
        let k = SocketKey {
            proto: "tcp".into(),
            local: (Ipv4Addr::new(10, 214, 3, 2), 40000),
            remote: (Ipv4Addr::new(10, 215, 3, 2), 22),
            veth: "x".into(),
        };
        // Inbound, not yet accepted: the listener.
        let inbound = SocketKey {
            local: (Ipv4Addr::new(10, 214, 3, 2), 22),
            remote: (Ipv4Addr::new(10, 215, 3, 2), 5555),
            ..k.clone()
        };
        // A tuple nobody holds, on a port nobody listens on.
        let unknown = SocketKey {
            local: (Ipv4Addr::new(10, 214, 3, 2), 40001),
            ..k.clone()
        };
        assert_eq!(
            find_inodes(&[&k, &inbound, &unknown], table),
            vec![Some(222), Some(111), None]
        );
        assert_eq!(hex_of(k.local), "0203D60A:9C40");
    }
}
