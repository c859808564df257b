//! sysinfo(2) with the slice's numbers, for programs that do not read /proc (busybox free,
//! some runtimes sizing their heaps): a seccomp filter that turns sysinfo into a user
//! notification, and the supervisor's side that answers it from the same numbers the views
//! show (source.rs). Every other syscall is left to the slice's own seccomp policy: the
//! filter returns ALLOW for them, and the kernel takes the strictest result of all filters.
//!
//! The supervisor writes the answer into the caller's memory through /proc/<pid>/mem, opened
//! before it checks that the notification is still valid (SECCOMP_IOCTL_NOTIF_ID_VALID): a
//! caller that died meanwhile (and whose pid was reused) is never written to.
use super::render::Numbers;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum SysinfoError {
    #[error("sysinfo notification: {op}: {source}")]
    Sys {
        op: &'static str,
        source: nix::Error,
    },
}

fn err(op: &'static str) -> SysinfoError {
    SysinfoError::Sys {
        op,
        source: nix::Error::last(),
    }
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// sysinfo on the native ABI → USER_NOTIF; everything else → ALLOW (foreign ABIs are the
/// policy's filters' business: they kill them).
pub fn program() -> Vec<libc::sock_filter> {
    vec![
        stmt(BPF_LD_W_ABS, 4), // seccomp_data.arch
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(BPF_LD_W_ABS, 0), // seccomp_data.nr
        jump(BPF_JEQ_K, libc::SYS_sysinfo as u32, 0, 1),
        stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Install the filter in the calling thread and return its listener. Needs no_new_privs or
/// CAP_SYS_ADMIN in the caller's user namespace (call it before capabilities are dropped).
pub fn install() -> Result<OwnedFd, SysinfoError> {
    let prog = program();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `prog`, alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(err("seccomp(NEW_LISTENER)"));
    }
    // SAFETY: the kernel just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The slice's struct sysinfo: its uptime, loads, memory limit and usage, no swap, its tasks.
/// Fields the slice has no number of its own for are the host's (`host`).
pub fn answer(n: &Numbers, host: &libc::sysinfo) -> libc::sysinfo {
    let unit = u64::from(host.mem_unit.max(1));
    #[allow(clippy::useless_conversion)] // c_ulong is u32 on 32-bit targets
    let host_total = u64::from(host.totalram) * unit;
    let total = n
        .mem_limit
        .filter(|&l| l > 0 && l < host_total)
        .unwrap_or(host_total);
    let used = n.mem_usage.min(total);
    // SAFETY: sysinfo is plain data; zero is a valid value for every field.
    let mut s: libc::sysinfo = unsafe { std::mem::zeroed() };
    s.uptime = n.uptime as libc::c_long;
    for (i, l) in n.load.iter().enumerate() {
        s.loads[i] = (l * 65536.0) as libc::c_ulong; // SI_LOAD_SHIFT
    }
    s.totalram = (total / unit) as libc::c_ulong;
    s.freeram = ((total - used) / unit) as libc::c_ulong;
    s.sharedram = (n.shmem.min(total) / unit) as libc::c_ulong;
    s.bufferram = 0;
    s.totalswap = 0;
    s.freeswap = 0;
    s.procs = n.tasks.min(u16::MAX as u32) as libc::c_ushort;
    s.mem_unit = unit as u32;
    s
}

/// Answer one pending notification on `listener` with `numbers()` (called only for sysinfo).
/// Returns Ok when the caller went away meanwhile (nothing to answer).
pub fn handle(
    listener: BorrowedFd<'_>,
    numbers: impl FnMut() -> Numbers,
) -> Result<(), SysinfoError> {
    // SAFETY: plain data, zeroed as the kernel requires for RECV.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV fills a seccomp_notif.
    if unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    } != 0
    {
        return match nix::Error::last() {
            // The caller died (ENOENT) or a signal interrupted us: nothing to do now.
            nix::Error::ENOENT | nix::Error::EINTR => Ok(()),
            _ => Err(err("NOTIF_RECV")),
        };
    }
    let mut resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 0,
        error: 0,
        flags: 0,
    };
    if req.data.nr != libc::SYS_sysinfo as i32 {
        // Not ours (cannot happen with program()): let the kernel run it.
        resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
    } else {
        resp.error = match write_answer(listener, &req, numbers) {
            Ok(()) => 0,
            Err(e) => -(e as i32),
        };
    }
    // SAFETY: SEND reads a seccomp_notif_resp.
    if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) } != 0
        && nix::Error::last() != nix::Error::ENOENT
    {
        return Err(err("NOTIF_SEND"));
    }
    Ok(())
}

fn write_answer(
    listener: BorrowedFd<'_>,
    req: &libc::seccomp_notif,
    mut numbers: impl FnMut() -> Numbers,
) -> Result<(), nix::Error> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{}/mem", req.pid))
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    // Only now is it known that /proc/<pid>/mem is the caller's (not a reused pid).
    // SAFETY: ID_VALID reads a u64.
    if unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &req.id,
        )
    } != 0
    {
        return Err(nix::Error::ESRCH);
    }
    // SAFETY: plain data.
    let mut host: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: fills the struct.
    if unsafe { libc::sysinfo(&mut host) } != 0 {
        return Err(nix::Error::last());
    }
    let s = answer(&numbers(), &host);
    // SAFETY: viewing a plain-data struct as bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&s as *const libc::sysinfo).cast::<u8>(),
            std::mem::size_of::<libc::sysinfo>(),
        )
    };
    mem.write_all_at(bytes, req.data.args[0])
        .map_err(|_| nix::Error::EFAULT)
}

/// A socket pair for handing a listener over: (ours, the child's). Both close-on-exec.
pub fn channel() -> Result<(OwnedFd, OwnedFd), SysinfoError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| SysinfoError::Sys {
        op: "socketpair",
        source,
    })
}

/// Receive the listener sent by [`install`]'s caller (None: it sent none, e.g. exited
/// first). `nonblocking`: look once without waiting (the sender has exec'd already).
pub fn receive(sock: &OwnedFd, nonblocking: bool) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags).ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Some(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    None
}

/// Serve `listener` until no process uses the filter any more (POLLHUP).
pub fn serve(listener: &OwnedFd, mut numbers: impl FnMut() -> Numbers) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        let r = fds[0].revents().unwrap_or(PollFlags::empty());
        if r.contains(PollFlags::POLLIN) {
            if handle(listener.as_fd(), &mut numbers).is_err() {
                return;
            }
        } else if !r.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_shows_the_limit() {
        // SAFETY: plain data.
        let mut host: libc::sysinfo = unsafe { std::mem::zeroed() };
        host.totalram = 8 << 30;
        host.mem_unit = 1;
        host.totalswap = 1 << 30;
        let n = Numbers {
            mem_limit: Some(512 << 20),
            mem_usage: 100 << 20,
            uptime: 42.5,
            tasks: 3,
            load: [1.0, 0.5, 0.0],
            ..Default::default()
        };
        let s = answer(&n, &host);
        assert_eq!(s.totalram, 512 << 20);
        assert_eq!(s.freeram, 412 << 20);
        assert_eq!((s.totalswap, s.uptime, s.procs), (0, 42, 3));
        assert_eq!(s.loads[0], 65536);
        let n = Numbers::default();
        assert_eq!(answer(&n, &host).totalram, 8 << 30);
    }

    #[test]
    fn program_shape() {
        let p = program();
        assert_eq!(p.len(), 7);
        assert_eq!(p[5].k, libc::SECCOMP_RET_USER_NOTIF);
    }
}
