//! Connecting a [`TtySession`] to the local terminal: raw mode while attached, window-size
//! changes forwarded (SIGWINCH), the remote exit code returned. This is `vslice enter`.
use super::{ClientError, Result, TtyEvent, TtySession};
use std::io::Read;
use std::os::fd::AsFd;
use tokio::io::AsyncWriteExt;

/// The local terminal's size (columns, rows), from stdout or stdin.
pub fn terminal_size() -> Option<(u16, u16)> {
    for fd in [1, 0, 2] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills the struct we pass.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0
            && ws.ws_col > 0
            && ws.ws_row > 0
        {
            return Some((ws.ws_col, ws.ws_row));
        }
    }
    None
}

/// Puts stdin in raw mode while alive (if it is a terminal).
pub struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    pub fn enable() -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = match tcgetattr(stdin.as_fd()) {
            Ok(t) => t,
            Err(_) => return RawMode { saved: None },
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawMode { saved: None };
        }
        RawMode { saved: Some(saved) }
    }
    pub fn is_terminal(&self) -> bool {
        self.saved.is_some()
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Relay stdin/stdout to the session until the command ends; returns its exit code.
/// When stdin is not a terminal and reaches end of file, an EOF character (Ctrl-D) is sent.
pub async fn attach(session: TtySession) -> Result<i32> {
    let raw = RawMode::enable();
    let interactive = raw.is_terminal();
    let (mut reader, mut writer) = session.split();
    // The WebSocket reader is not cancel-safe: it runs in its own task.
    let (ev_tx, mut events) = tokio::sync::mpsc::channel::<Result<TtyEvent>>(64);
    tokio::spawn(async move {
        loop {
            let ev = reader.recv().await;
            let last = !matches!(ev, Ok(TtyEvent::Output(_)));
            if ev_tx.send(ev).await.is_err() || last {
                break;
            }
        }
    });
    // Blocking stdin reads on a plain thread (it may stay blocked after we return; the
    // process is about to exit then).
    let (in_tx, mut input) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let mut stdout = tokio::io::stdout();
    let mut stdin_open = true;
    // A write can fail because the command has just ended and the daemon closed the stream:
    // its exit code may still be on the way, so a write error only ends the input.
    let mut write_failed: Option<ClientError> = None;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Ok(TtyEvent::Output(b))) => {
                    let _ = stdout.write_all(&b).await;
                    let _ = stdout.flush().await;
                }
                Some(Ok(TtyEvent::Exit(code))) => return Ok(code),
                Some(Ok(TtyEvent::Closed)) | None => {
                    return Err(write_failed.unwrap_or_else(|| {
                        ClientError::Transport("the daemon closed the terminal without an exit code".into())
                    }))
                }
                Some(Err(e)) => return Err(e),
            },
            data = input.recv(), if stdin_open && write_failed.is_none() => {
                let sent = match data {
                    Some(d) => writer.send(&d).await,
                    None => {
                        stdin_open = false;
                        if interactive { Ok(()) } else { writer.send(&[4]).await }
                    }
                };
                if let Err(e) = sent {
                    write_failed = Some(e);
                }
            },
            _ = async {
                match winch.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {
                if let Some((c, r)) = terminal_size() {
                    if write_failed.is_none() {
                        if let Err(e) = writer.resize(c, r).await {
                            write_failed = Some(e);
                        }
                    }
                }
            }
        }
    }
}
