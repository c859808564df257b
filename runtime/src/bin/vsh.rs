//! `vsh`: the login shell (and sshd ForceCommand) of slices' host accounts, and sshd's
//! AuthorizedKeysCommand. It has no privileges (no setuid, no capabilities): it hands what
//! sshd gave it — stdin/stdout/stderr, or the one terminal — to vsliced over the SSH socket
//! (SCM_RIGHTS), with SSH_ORIGINAL_COMMAND, and then only forwards window-size changes and
//! exits with the command's code. The daemon decides everything by vsh's uid (SO_PEERCRED).
//!
//! ```text
//! vsh [--socket PATH]                         a session (sshd runs `vsh -c "<ForceCommand>"`)
//! vsh [--socket PATH] --authorized-keys USER  print USER's slice's keys (AuthorizedKeysCommand)
//! ```
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use vslice::proto::ssh::{VshReply, VshRequest, DEFAULT_SSH_SOCKET};

/// Exit code when vsh itself fails or is refused (ssh reports it as the command's).
const EXIT_REFUSED: i32 = 1;
/// Exit code when the session ended without a code (the daemon went away).
const EXIT_LOST: i32 = 255;
/// The ExposeAuthInfo file is small; more is not sshd's.
const MAX_AUTH_INFO: u64 = 64 * 1024;

struct Args {
    socket: String,
    keys_for: Option<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!("vsh: {msg}\nusage: vsh [--socket PATH] [--authorized-keys USER]");
    std::process::exit(2)
}

/// The options, from argv (without argv[0]) or, when sshd runs the login shell as
/// `vsh -c COMMAND`, from the forced command's words after its first (vsh itself).
fn parse_args(argv: Vec<String>) -> Result<Args, String> {
    let words: Vec<String> = match argv.first().map(String::as_str) {
        Some("-c") => argv
            .get(1)
            .map(|c| c.split_whitespace().skip(1).map(str::to_string).collect())
            .unwrap_or_default(),
        _ => argv,
    };
    let mut a = Args {
        socket: DEFAULT_SSH_SOCKET.to_string(),
        keys_for: None,
    };
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--socket" => a.socket = it.next().ok_or("--socket needs a path")?,
            "--authorized-keys" => {
                a.keys_for = Some(it.next().ok_or("--authorized-keys needs a user")?)
            }
            "-h" | "--help" => return Err("the login shell of slice accounts".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn connect(path: &str) -> UnixStream {
    UnixStream::connect(path).unwrap_or_else(|e| {
        eprintln!("vsh: cannot reach the vslice daemon at {path}: {e}");
        std::process::exit(EXIT_REFUSED)
    })
}

fn send(sock: &UnixStream, req: &VshRequest, fds: &[i32]) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut sent = 0;
    while sent < line.len() {
        let iov = [std::io::IoSlice::new(&line[sent..])];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let c: &[ControlMessage] = if sent == 0 && !fds.is_empty() {
            &cmsg
        } else {
            &[]
        };
        sent += sendmsg::<()>(sock.as_raw_fd(), &iov, c, MsgFlags::empty(), None)
            .map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Reads newline-delimited replies.
struct Replies {
    sock: UnixStream,
    buf: Vec<u8>,
}

impl Replies {
    /// The next complete reply, if one is buffered.
    fn take(&mut self) -> Option<VshReply> {
        let i = self.buf.iter().position(|b| *b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=i).collect();
        serde_json::from_slice(&line[..line.len() - 1]).ok()
    }
    /// Read more; false at end of stream.
    fn fill(&mut self) -> bool {
        let mut b = [0u8; 4096];
        match self.sock.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }
    fn next_blocking(&mut self) -> Option<VshReply> {
        loop {
            if let Some(r) = self.take() {
                return Some(r);
            }
            if !self.fill() {
                return None;
            }
        }
    }
}

fn keys(socket: &str, user: String) -> i32 {
    let sock = connect(socket);
    if let Err(e) = send(&sock, &VshRequest::Keys { user }, &[]) {
        eprintln!("vsh: {e}");
        return EXIT_REFUSED;
    }
    let mut r = Replies {
        sock,
        buf: Vec::new(),
    };
    match r.next_blocking() {
        Some(VshReply::Keys { lines }) => {
            let mut out = std::io::stdout().lock();
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            0
        }
        Some(VshReply::Error { message }) => {
            eprintln!("vsh: {message}");
            EXIT_REFUSED
        }
        _ => {
            eprintln!("vsh: no answer from the daemon");
            EXIT_REFUSED
        }
    }
}

static WINCH: AtomicBool = AtomicBool::new(false);
extern "C" fn on_winch(_: libc::c_int) {
    WINCH.store(true, Ordering::Relaxed);
}

fn window_size() -> (u16, u16) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the struct.
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
        (ws.ws_col, ws.ws_row)
    } else {
        (80, 24)
    }
}

fn auth_info() -> Option<String> {
    let path = std::env::var_os("SSH_USER_AUTH")?;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_AUTH_INFO)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

fn session(socket: &str) -> i32 {
    let tty = nix::unistd::isatty(0).unwrap_or(false);
    let (cols, rows) = if tty { window_size() } else { (80, 24) };
    let req = VshRequest::Session {
        command: std::env::var("SSH_ORIGINAL_COMMAND").ok(),
        tty,
        term: std::env::var("TERM").ok(),
        cols,
        rows,
        connection: std::env::var("SSH_CONNECTION").ok(),
        auth_info: auth_info(),
    };
    // SAFETY: the handler only stores to an atomic. No SA_RESTART: poll returns EINTR.
    unsafe {
        let sa = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_winch),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGWINCH, &sa);
    }
    let sock = connect(socket);
    let fds: &[i32] = if tty { &[0] } else { &[0, 1, 2] };
    if let Err(e) = send(&sock, &req, fds) {
        eprintln!("vsh: handing the session to the daemon: {e}");
        return EXIT_REFUSED;
    }
    let mut r = Replies {
        sock: sock
            .try_clone()
            .unwrap_or_else(|_| std::process::exit(EXIT_LOST)),
        buf: Vec::new(),
    };
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        while let Some(reply) = r.take() {
            match reply {
                VshReply::Started { .. } | VshReply::Keys { .. } => {}
                VshReply::Exit { exit_code } => return exit_code,
                VshReply::Error { message } => {
                    eprintln!("vsh: {message}");
                    return EXIT_REFUSED;
                }
            }
        }
        if WINCH.swap(false, Ordering::Relaxed) && tty {
            let (cols, rows) = window_size();
            if send(&sock, &VshRequest::Resize { cols, rows }, &[]).is_err() {
                return EXIT_LOST;
            }
        }
        let stdout = std::io::stdout();
        let mut pfds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        if !tty {
            // No events asked: POLLERR/POLLHUP tell that sshd closed the other end (the
            // client went away), and then the session must end.
            pfds.push(PollFd::new(stdout.as_fd(), PollFlags::empty()));
        }
        match poll(&mut pfds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(_) => return EXIT_LOST,
            Ok(_) => {}
        }
        let gone = pfds
            .get(1)
            .and_then(|p| p.revents())
            .is_some_and(|e| e.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        let readable = pfds[0].revents().is_some_and(|e| !e.is_empty());
        if gone {
            return EXIT_LOST;
        }
        if readable && !r.fill() {
            eprintln!("vsh: the vslice daemon ended the session");
            return EXIT_LOST;
        }
    }
}

fn main() {
    let args = parse_args(std::env::args().skip(1).collect()).unwrap_or_else(|e| usage(&e));
    let code = match args.keys_for {
        Some(user) => keys(&args.socket, user),
        None => session(&args.socket),
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_direct_and_from_sshd() {
        let a = parse_args(v(&["--socket", "/s", "--authorized-keys", "web"])).unwrap();
        assert_eq!(
            (a.socket.as_str(), a.keys_for.as_deref()),
            ("/s", Some("web"))
        );
        // sshd: `vsh -c "<ForceCommand>"`; the user's command is in SSH_ORIGINAL_COMMAND.
        let a = parse_args(v(&["-c", "/usr/local/bin/vsh --socket /run/x.sock"])).unwrap();
        assert_eq!((a.socket.as_str(), a.keys_for), ("/run/x.sock", None));
        let a = parse_args(v(&[])).unwrap();
        assert_eq!(a.socket, DEFAULT_SSH_SOCKET);
        assert!(parse_args(v(&["--socket"])).is_err());
        assert!(parse_args(v(&["rm", "-rf"])).is_err());
    }
}
