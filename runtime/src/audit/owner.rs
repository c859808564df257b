//! Which process made a slice's connection: looked up on the host right after the flow's NEW
//! event, from the socket tables and file descriptors of the slice's network namespace.
//!
//! How, and why it is sound:
//! * the slice's network namespace is identified through the **host veth** the flow was
//!   attributed by (its `IFLA_LINK_NETNSID`, from rtnetlink), and a process belongs to it only
//!   when its `/proc/<pid>/ns/net` has that same nsid in the host namespace (`RTM_GETNSID` with
//!   the namespace's fd). Addresses are never trusted: another slice (or a namespace a slice's
//!   root made) holding a socket with the same tuple is in another namespace and never named;
//! * in that namespace the socket is found by its tuple with an exact sock_diag request (one
//!   hash lookup in the kernel, asked through a netlink socket made inside the namespace), and
//!   the process by a `socket:[inode]` link in `/proc/<pid>/fd`; the host sees every process
//!   (a slice's root cannot hide one from the host's /proc). Reading the namespace's
//!   `/proc/net/tcp` instead walks every bucket of the host's established hash (it is shared
//!   by all namespaces) for each batch: that walk was most of the flow log's CPU.
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
//! Why raw rtnetlink and sock_diag here rather than the netlink-packet-route and
//! netlink-packet-sock-diag crates (net/rtnl.rs uses the first): three fixed requests, each
//! answered in one datagram, of which one field is read; the crates' message types would be
//! the replacement if more requests are needed.
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::util::netlink::{attr, push_attr};

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

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_sockid`'s cookie value that means "any socket".
const INET_DIAG_NOCOOKIE: u32 = !0;
/// Offset of `idiag_inode` in `struct inet_diag_msg` (family, state, timer, retrans: 4 bytes;
/// the 48-byte sockid; expires, rqueue, wqueue, uid: 16 bytes).
const IDIAG_INODE_AT: usize = 68;

/// A sock_diag socket in the network namespace `ns`. Made by a short-lived thread that joins
/// the namespace: setns(CLONE_NEWNET) moves only the calling thread, and a thread that ends
/// right after cannot be left in a slice's namespace by a failed return (the collector's own
/// threads must stay in the host's: their rtnetlink requests name host links).
fn diag_socket_in(ns: OwnedFd) -> Option<OwnedFd> {
    std::thread::Builder::new()
        .name("vsl-flowdiag".into())
        .spawn(move || {
            // SAFETY: ns is a namespace fd we own; setns only affects this thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            // SAFETY: plain socket(2); the fd is owned right away.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    NETLINK_SOCK_DIAG,
                )
            };
            // SAFETY: a fresh descriptor nobody else owns.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .ok()?
        .join()
        .ok()?
}

/// The inode of the socket the kernel finds for this exact request (`inet_diag_req_v2` without
/// NLM_F_DUMP: one hash lookup, where reading /proc/net/tcp walks every bucket of the host's
/// established hash, whichever namespace they belong to: that walk was most of the flow log's
/// CPU). `Some(0)`: a socket without a file (a connection in the accept queue, TIME_WAIT).
fn diag_inode(
    sock: &OwnedFd,
    proto: u8,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> Option<u64> {
    let mut msg = Vec::with_capacity(72);
    msg.extend_from_slice(&72u32.to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    msg.extend_from_slice(&[libc::AF_INET as u8, proto, 0, 0]);
    msg.extend_from_slice(&(!0u32).to_ne_bytes()); // every state
    msg.extend_from_slice(&src.1.to_be_bytes());
    msg.extend_from_slice(&dst.1.to_be_bytes());
    msg.extend_from_slice(&src.0.octets());
    msg.extend_from_slice(&[0; 12]);
    msg.extend_from_slice(&dst.0.octets());
    msg.extend_from_slice(&[0; 12]);
    msg.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    msg.extend_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
    msg.extend_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
    // SAFETY: msg outlives the call; the socket is connected to the kernel by default.
    let n = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return None;
    }
    let mut buf = [0u8; 512];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    let buf = buf.get(..usize::try_from(n).ok()?)?;
    let mtype = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
    if mtype != SOCK_DIAG_BY_FAMILY {
        return None; // NLMSG_ERROR: ENOENT, no such socket
    }
    let at = 16 + IDIAG_INODE_AT;
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?).into())
}

/// The inode of the socket holding `k` in the namespace of `sock`: the connection's own socket,
/// else (TCP) the listener on the local port (an inbound connection not yet accepted) or (UDP)
/// a socket bound to the local port and not connected elsewhere.
pub fn socket_inode(sock: &OwnedFd, k: &SocketKey) -> Option<u64> {
    let found = |ino: Option<u64>| ino.filter(|&i| i != 0);
    if k.proto == "udp" {
        // udp_diag looks the request up the way a datagram from the remote end is: source
        // and destination swapped ("for historical reasons", net/ipv4/udp_diag.c).
        return found(diag_inode(sock, libc::IPPROTO_UDP as u8, k.remote, k.local));
    }
    let tcp = libc::IPPROTO_TCP as u8;
    found(diag_inode(sock, tcp, k.local, k.remote)).or_else(|| {
        // No established socket with a file: inet_lookup's listener fallback, asked with a
        // remote end no connection has.
        let none = (Ipv4Addr::UNSPECIFIED, 0);
        found(diag_inode(sock, tcp, k.local, none))
    })
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
        // One sock_diag socket per namespace for the whole batch, closed at its end (an open
        // one would keep a destroyed slice's namespace alive).
        let mut socks = HashMap::new();
        let mut out = self.pass(keys, &mut socks);
        if out.iter().any(|l| matches!(l, Lookup::Unheld)) {
            // A socket whose holder is not among the known processes: one that started after
            // the last scan (a client right after another one). Wait out the rate limit
            // rather than give up, so a miss costs at most one rescan. A socket already
            // closed asks for none: no rescan would find it.
            if let Some(since) = self.scanned.map(|t| t.elapsed()) {
                if since < RESCAN_MISS {
                    std::thread::sleep(RESCAN_MISS - since);
                }
            }
            self.scan();
            let again = self.pass(keys, &mut socks);
            for (o, a) in out.iter_mut().zip(again) {
                if matches!(o, Lookup::Unheld) {
                    *o = a;
                }
            }
        }
        out.into_iter()
            .map(|l| match l {
                Lookup::Held(pid) => Some(pid),
                Lookup::Unheld | Lookup::NoSocket => None,
            })
            .collect()
    }

    /// A sock_diag socket in namespace `id`, joined through one of its known processes and
    /// confirmed to be that namespace (the pid may have been reused since the scan).
    fn diag_socket(&self, id: i32) -> Option<OwnedFd> {
        self.members
            .get(&id)?
            .iter()
            .find_map(|pid| {
                let f = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok()?;
                let ns = OwnedFd::from(f);
                (nsid_of(&ns) == Some(id)).then_some(ns)
            })
            .and_then(diag_socket_in)
    }

    fn pass(&self, keys: &[SocketKey], socks: &mut HashMap<i32, Option<OwnedFd>>) -> Vec<Lookup> {
        let mut out: Vec<Lookup> = keys.iter().map(|_| Lookup::NoSocket).collect();
        // Socket inode per key, asked of its own namespace.
        let mut want: HashMap<i32, Vec<(usize, u64)>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            let Some(Some(id)) = self.links.get(&k.veth) else {
                continue;
            };
            if !self.members.contains_key(id) {
                continue;
            }
            let sock = socks.entry(*id).or_insert_with(|| self.diag_socket(*id));
            if let Some(ino) = sock.as_ref().and_then(|s| socket_inode(s, k)) {
                out[i] = Lookup::Unheld;
                want.entry(*id).or_default().push((i, ino));
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
                        if want_ino == ino && matches!(out[i], Lookup::Unheld) {
                            out[i] = Lookup::Held(pid);
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

/// What a lookup found for one flow.
enum Lookup {
    Held(u32),
    /// A socket, but none of the namespace's known processes holds it.
    Unheld,
    /// No socket (closed already) or no namespace to ask.
    NoSocket,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    fn ino(fd: impl AsFd) -> u64 {
        let f = std::fs::File::from(fd.as_fd().try_clone_to_owned().unwrap());
        f.metadata().unwrap().ino()
    }

    fn v4(a: SocketAddr) -> (Ipv4Addr, u16) {
        match a {
            SocketAddr::V4(a) => (*a.ip(), a.port()),
            SocketAddr::V6(_) => panic!("v4 only"),
        }
    }

    /// Real sockets on loopback, looked up through a sock_diag socket made the way the
    /// collector makes them (a thread that joins the namespace: here the test's own).
    #[test]
    fn finds_sockets_by_exact_lookup() {
        let ns = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").unwrap());
        let diag = diag_socket_in(ns).expect("sock_diag socket");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (c_local, c_remote) = (
            v4(client.local_addr().unwrap()),
            v4(client.peer_addr().unwrap()),
        );
        let key = |proto: &str, local, remote| SocketKey {
            proto: proto.into(),
            local,
            remote,
            veth: "unused".into(),
        };
        // Outbound: the client's own socket.
        assert_eq!(
            socket_inode(&diag, &key("tcp", c_local, c_remote)),
            Some(ino(&client))
        );
        // Inbound, not yet accepted (the child has no file): the listener.
        let inbound = key("tcp", c_remote, c_local);
        assert_eq!(socket_inode(&diag, &inbound), Some(ino(&listener)));
        // Accepted: the connection's socket.
        let (server, _) = listener.accept().unwrap();
        assert_eq!(socket_inode(&diag, &inbound), Some(ino(&server)));
        // Nobody's tuple on a port nobody listens on.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let unused = v4(closed.local_addr().unwrap());
        drop(closed);
        assert_eq!(socket_inode(&diag, &key("tcp", unused, c_remote)), None);
        // UDP: a socket bound to the local port and not connected.
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let remote = (Ipv4Addr::new(127, 0, 0, 2), 999);
        let u_local = v4(udp.local_addr().unwrap());
        assert_eq!(
            socket_inode(&diag, &key("udp", u_local, remote)),
            Some(ino(&udp))
        );
        // Connected elsewhere: not this flow's socket.
        udp.connect("127.0.0.3:1000").unwrap();
        assert_eq!(socket_inode(&diag, &key("udp", u_local, remote)), None);
        assert_eq!(socket_inode(&diag, &key("udp", unused, remote)), None);
    }
}
