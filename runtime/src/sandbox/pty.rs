//! Pseudo-terminals allocated from a sandbox's own devpts instance, so that the terminal a
//! slice process sees belongs to the slice (its root can't reach host ptys through it), plus
//! the host-side relay and the runc console-socket hand-off.
use super::process::io_errno;
use super::{sys_err, SandboxError};
use nix::sys::termios;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};

/// A pty pair: the master stays on the host side, the slave goes to the command.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

const TIOCGPTPEER: libc::c_ulong = 0x5441;
const PTMX_MAJOR: u64 = 5;
const PTMX_MINOR: u64 = 2;

/// Open a new pty in the devpts instance of the sandbox whose init is `init_pid`.
///
/// The path is resolved through /proc/<pid>/root (inside the sandbox's mount namespace); the
/// sandbox controls that tree, so refuse symlinks at the last component and check that what we
/// opened really is a ptmx character device before trusting it.
pub fn open_in_sandbox(init_pid: i32) -> Result<Pty, SandboxError> {
    let path = format!("/proc/{init_pid}/root/dev/pts/ptmx");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| sys_err("open", path.clone(), io_errno(&e)))?;
    let md = f
        .metadata()
        .map_err(|e| sys_err("fstat", path.clone(), io_errno(&e)))?;
    let rdev = md.rdev();
    if !md.file_type().is_char_device()
        || libc::major(rdev) as u64 != PTMX_MAJOR
        || libc::minor(rdev) as u64 != PTMX_MINOR
    {
        return Err(SandboxError::Child(format!("{path} is not a ptmx device")));
    }
    let master = OwnedFd::from(f);
    // Back to blocking for the relay.
    nix::fcntl::fcntl(
        master.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(|e| sys_err("fcntl", path.clone(), e))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(sys_err("ioctl TIOCSPTLCK", path, nix::Error::last()));
    }
    // SAFETY: TIOCGPTPEER returns a new fd for the slave of this very master, without any path
    // lookup (no race with the sandbox renaming things under /dev/pts).
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(sys_err("ioctl TIOCGPTPEER", path, nix::Error::last()));
    }
    // SAFETY: the kernel just returned this fd.
    Ok(Pty {
        master,
        slave: unsafe { OwnedFd::from_raw_fd(slave) },
    })
}

use std::os::unix::fs::OpenOptionsExt;

/// Set the window size of a pty.
pub fn set_size(fd: &impl AsRawFd, cols: u16, rows: u16) -> Result<(), SandboxError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ takes a pointer to winsize.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(sys_err("ioctl TIOCSWINSZ", "pty", nix::Error::last()));
    }
    Ok(())
}

fn get_size(fd: i32) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the struct.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
        Some((ws.ws_col, ws.ws_row))
    } else {
        None
    }
}

/// Send the master to a Unix socket (runc's console-socket protocol: one SCM_RIGHTS message).
pub fn send_to_console_socket(
    master: &OwnedFd,
    socket_path: &std::path::Path,
) -> Result<(), SandboxError> {
    use nix::sys::socket::{
        connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
        UnixAddr,
    };
    let where_ = socket_path.display().to_string();
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| sys_err("socket", where_.clone(), e))?;
    let addr = UnixAddr::new(socket_path)
        .map_err(|e| sys_err("console socket address", where_.clone(), e))?;
    connect(s.as_raw_fd(), &addr).map_err(|e| sys_err("connect", where_.clone(), e))?;
    let fds = [master.as_raw_fd()];
    let name = b"/dev/pts/ptmx";
    let iov = [std::io::IoSlice::new(name)];
    sendmsg::<()>(
        s.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| sys_err("sendmsg", where_, e))?;
    Ok(())
}

static WINCH: AtomicBool = AtomicBool::new(false);
extern "C" fn on_winch(_: libc::c_int) {
    WINCH.store(true, Ordering::Relaxed);
}

/// Relay between our stdin/stdout and the master until the command side closes, with the
/// local terminal in raw mode and window-size changes forwarded. Returns when the pty hangs up.
pub fn relay(master: &OwnedFd) -> Result<(), SandboxError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdin = std::io::stdin();
    let is_tty = nix::unistd::isatty(0).unwrap_or(false);
    let saved = if is_tty {
        termios::tcgetattr(stdin.as_fd()).ok()
    } else {
        None
    };
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
    }
    if let Some((c, r)) = get_size(0) {
        let _ = set_size(master, c, r);
    }
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGWINCH,
            nix::sys::signal::SigHandler::Handler(on_winch),
        );
    }
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    let result = loop {
        if WINCH.swap(false, Ordering::Relaxed) {
            if let Some((c, r)) = get_size(0) {
                let _ = set_size(master, c, r);
            }
        }
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => break Err(sys_err("poll", "pty", e)),
            Ok(_) => {}
        }
        let m = fds[0].revents().unwrap_or(PollFlags::empty());
        let i = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        if m.intersects(PollFlags::POLLIN) {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => break Ok(()),
                Ok(n) => {
                    if write_all(1, &buf[..n]).is_err() {
                        break Ok(());
                    }
                }
                Err(nix::Error::EINTR) => {}
                Err(e) => break Err(sys_err("read", "pty", e)),
            }
        } else if m.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            break Ok(());
        }
        if i.intersects(PollFlags::POLLIN) {
            match nix::unistd::read(0, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    let _ = write_all(master.as_raw_fd(), &buf[..n]);
                }
                Err(nix::Error::EINTR) => {}
                Err(_) => stdin_open = false,
            }
        } else if i.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            stdin_open = false;
        }
    };
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, t);
    }
    result
}

fn write_all(fd: i32, mut data: &[u8]) -> Result<(), SandboxError> {
    while !data.is_empty() {
        // SAFETY: fd is open for the duration of the relay; BorrowedFd only for this call.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match nix::unistd::write(bfd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(sys_err("write", "pty", e)),
        }
    }
    Ok(())
}
