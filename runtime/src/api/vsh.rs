//! The SSH socket: sessions handed over by `vsh` (the slice accounts' login shell, run by
//! sshd) and sshd's key lookups (AuthorizedKeysCommand). Not HTTP: newline-delimited JSON
//! ([`crate::proto::ssh`]), because the first request carries file descriptors (SCM_RIGHTS).
//!
//! Who may ask what is decided by the peer's uid (SO_PEERCRED), never by what it says:
//! * the keys of slice S: root and the configured `ssh_keys_user` only;
//! * a session: only the host account of a slice with SSH access, and only into that slice.
//!
//! A session runs like `vslice exec`/`enter` (the same `Manager::exec_command`, the shim's
//! join path and policy): without a terminal, the command gets sshd's pipes as its stdio
//! directly (binary-clean, no copy in the daemon); with one, the shim allocates the pty in the
//! slice's own devpts and the daemon relays between it and sshd's pty, which never reaches
//! slice code (TIOCSTI injection, CVE-2017-5226 class). When vsh goes away (the client
//! disconnected), the terminal is hung up and the shim killed, which kills the command's
//! session. Each login is audited (`ssh_login`: slice, remote address, key fingerprint,
//! session id) before the command starts, and its end (`ssh_logout`, exit code).
use super::exec::{
    console_socket_path, exit_code, read_master, receive_terminal, set_nonblocking, spawn_error,
    write_master, DEFAULT_SHELL,
};
use super::slices::audit;
use super::AppState;
use crate::audit::Outcome;
use crate::daemon::{Caller, Peer};
use crate::proto::ssh::{VshReply, VshRequest};
use crate::slice::{ExecRequest, SliceError};
use crate::ssh::{account, keys};
use serde_json::{json, Value};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

/// The first request (with its descriptors) must arrive within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUEST: usize = 1 << 20;
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);
const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// Bytes buffered in each direction of a terminal relay.
const RELAY_BUFFER: usize = 256 * 1024;
/// Command text kept in the audit record.
const AUDIT_COMMAND_BYTES: usize = 4096;

/// Prefix of every session's shell script: to the home directory, quietly.
const CD_HOME: &str = "cd 2>/dev/null || cd /; ";

static SESSION_SEQ: AtomicU64 = AtomicU64::new(0);

type LineReader = Lines<BufReader<Box<dyn AsyncRead + Send + Unpin>>>;

/// Accept vsh connections until shutdown. Sessions in progress end with the daemon.
pub async fn serve(listener: UnixListener, st: AppState) {
    let mut shutdown = st.shutdown.clone();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "ssh socket: accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let st = st.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(st, stream).await {
                tracing::debug!(error = %e, "ssh socket connection");
            }
        });
    }
}

/// Receive what is there, keeping descriptors that came with it.
fn recv_some(sock: RawFd, data: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; 64 * 1024];
    let n = {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(io::Error::from)?;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(v) = c {
                for fd in v {
                    // SAFETY: the kernel just installed this fd in our table; we own it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        msg.bytes
    };
    data.extend_from_slice(&buf[..n]);
    Ok(n)
}

/// The first line and the descriptors sent with it; also the bytes read past the line.
async fn read_first(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<u8>, Vec<OwnedFd>)> {
    let (mut data, mut fds) = (Vec::new(), Vec::new());
    loop {
        stream.readable().await?;
        match stream.try_io(tokio::io::Interest::READABLE, || {
            recv_some(stream.as_raw_fd(), &mut data, &mut fds)
        }) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                if let Some(i) = data.iter().position(|b| *b == b'\n') {
                    let rest = data.split_off(i + 1);
                    data.pop();
                    return Ok((data, rest, fds));
                }
                if data.len() > MAX_REQUEST {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request too large",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn reply(w: &mut OwnedWriteHalf, r: &VshReply) -> io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

async fn handle(st: AppState, stream: UnixStream) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let peer = Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    };
    let (line, rest, fds) = tokio::time::timeout(REQUEST_TIMEOUT, read_first(&stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request"))??;
    let (rd, mut wr) = stream.into_split();
    let reader: Box<dyn AsyncRead + Send + Unpin> =
        Box::new(tokio::io::AsyncReadExt::chain(io::Cursor::new(rest), rd));
    let lines = BufReader::new(reader).lines();
    let req: VshRequest = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("bad request: {e}");
            return reply(&mut wr, &VshReply::Error { message }).await;
        }
    };
    match req {
        VshRequest::Keys { user } => {
            let r = match authorized_keys(&st, peer.uid, &user).await {
                Ok(lines) => VshReply::Keys { lines },
                Err(message) => VshReply::Error { message },
            };
            reply(&mut wr, &r).await
        }
        VshRequest::Session {
            command,
            tty,
            term,
            cols,
            rows,
            connection,
            auth_info,
        } => {
            let s = SessionReq {
                command,
                tty,
                term,
                cols,
                rows,
                connection,
                auth_info,
            };
            session(st, peer, fds, s, lines, wr).await
        }
        VshRequest::Resize { .. } => {
            let message = "a resize before any session".to_string();
            reply(&mut wr, &VshReply::Error { message }).await
        }
    }
}

/// sshd's AuthorizedKeysCommand: the keys of `user`'s slice, for root and the keys user.
async fn authorized_keys(st: &AppState, uid: u32, user: &str) -> Result<Vec<String>, String> {
    let keys_user = st.daemon.config.ssh_keys_user.clone();
    let settings = st.daemon.config.ssh_accounts();
    let slices = st.daemon.paths.slices_dir();
    let user = user.to_string();
    tokio::task::spawn_blocking(move || {
        let allowed = uid == 0
            || nix::unistd::User::from_name(&keys_user)
                .ok()
                .flatten()
                .is_some_and(|u| u.uid.as_raw() == uid);
        if !allowed {
            return Err(format!(
                "uid {uid} may not read keys (only root and {keys_user:?})"
            ));
        }
        let Some(u) = nix::unistd::User::from_name(&user).ok().flatten() else {
            return Ok(Vec::new());
        };
        // Only slice accounts have keys here: for any other user, sshd gets none.
        match account::slice_of(u.uid.as_raw(), &settings) {
            Some(slice)
                if slice == user && crate::slice::manager::validate_name(&slice).is_ok() =>
            {
                let ks = keys::load(&slices.join(&slice)).map_err(|e| e.to_string())?;
                Ok(ks.iter().map(keys::authorized_line).collect())
            }
            _ => Ok(Vec::new()),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

struct SessionReq {
    command: Option<String>,
    tty: bool,
    term: Option<String>,
    cols: u16,
    rows: u16,
    connection: Option<String>,
    auth_info: Option<String>,
}

/// A value from the client's side that goes into the slice's environment: short, printable.
fn env_value(v: &Option<String>) -> Option<&str> {
    v.as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 256 && s.chars().all(|c| !c.is_control()))
}

fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

async fn session(
    st: AppState,
    peer: Peer,
    fds: Vec<OwnedFd>,
    req: SessionReq,
    lines: LineReader,
    mut wr: OwnedWriteHalf,
) -> io::Result<()> {
    let n = SESSION_SEQ.fetch_add(1, Ordering::Relaxed);
    let session_id = format!(
        "{}-{}-{n}",
        crate::audit::time::now_millis(),
        std::process::id()
    );
    let d = st.daemon.clone();
    let settings = st.daemon.config.ssh_accounts();
    let slices = st.daemon.paths.slices_dir();
    let (caller, slice): (Caller, Option<String>) = tokio::task::spawn_blocking(move || {
        let caller = d.auth.identify(peer);
        let slice = account::slice_of(peer.uid, &settings)
            .filter(|s| crate::slice::manager::validate_name(s).is_ok())
            .filter(|s| keys::enabled(&slices.join(s)));
        (caller, slice)
    })
    .await
    .map_err(io::Error::other)?;
    let remote = req
        .connection
        .as_deref()
        .map(|c| c.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
    let fingerprint = req
        .auth_info
        .as_deref()
        .and_then(keys::fingerprint_of_auth_info);
    let mut args = json!({
        "session": session_id,
        "remote": remote,
        "key_fingerprint": fingerprint,
        "command": req.command.as_deref().map(|c| truncated(c, AUDIT_COMMAND_BYTES)),
        "tty": req.tty,
    });
    let refuse = |message: String, status: u16, code: &'static str| {
        let (st, caller, slice, args) = (st.clone(), caller.clone(), slice.clone(), args.clone());
        async move {
            let mut o = Outcome::ok(status);
            o.ok = false;
            o.code = Some(code.into());
            o.message = Some(message.clone());
            let _ = audit(&st, &caller, "ssh_login", slice, args, o).await;
            VshReply::Error { message }
        }
    };
    let Some(slice) = slice.clone() else {
        let r = refuse(
            format!(
                "{} is not the account of a slice with SSH access",
                caller.describe()
            ),
            403,
            "forbidden",
        )
        .await;
        return reply(&mut wr, &r).await;
    };
    let expected = if req.tty { 1 } else { 3 };
    let is_tty = |fd: &OwnedFd| nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false);
    // Without a terminal, the descriptors go to the command as they are: none may be a host
    // terminal (TIOCSTI). With one, it must be one (it stays in the daemon).
    if fds.len() != expected
        || (req.tty && !is_tty(&fds[0]))
        || (!req.tty && fds.iter().any(is_tty))
    {
        let r = refuse(
            format!(
                "expected {expected} descriptor(s){}, got {}",
                if req.tty {
                    " (a terminal)"
                } else {
                    " (no terminal)"
                },
                fds.len()
            ),
            400,
            "invalid",
        )
        .await;
        return reply(&mut wr, &r).await;
    }
    // Like sshd: the session starts in the home directory (HOME, /root in the slice's default
    // environment; `/` if it is missing), then runs `sh -c COMMAND` or a login shell.
    let argv: Vec<String> = match &req.command {
        Some(c) => vec!["/bin/sh".into(), "-c".into(), format!("{CD_HOME}{c}")],
        None => vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("{CD_HOME}exec {}", DEFAULT_SHELL.join(" ")),
        ],
    };
    let mut env = Vec::new();
    if let (true, Some(t)) = (req.tty, env_value(&req.term)) {
        env.push(format!("TERM={t}"));
    }
    if let Some(c) = env_value(&req.connection) {
        env.push(format!("SSH_CONNECTION={c}"));
    }
    let console = if req.tty {
        let p = console_socket_path(&st)?;
        let l = UnixListener::bind(&p)?;
        Some((p, l))
    } else {
        None
    };
    let title = argv.clone();
    let exec = ExecRequest {
        argv,
        env,
        cwd: None,
        tty: req.tty,
    };
    let (sl, p) = (slice.clone(), console.as_ref().map(|c| c.0.clone()));
    let prepared = st
        .daemon
        .blocking(move |m| m.exec_command(&sl, &exec, p.as_deref()))
        .await;
    let cmd = match prepared {
        Ok(c) => c,
        Err(e) => {
            if let Some((p, _)) = &console {
                let _ = std::fs::remove_file(p);
            }
            let (status, code) = e.status_code();
            let message = match &e {
                SliceError::Conflict { .. } => format!(
                    "slice {slice} is not running: an operator must start it (vslice start {slice}) before you can log in"
                ),
                other => format!("slice {slice}: {other}"),
            };
            let r = refuse(message, status, code).await;
            return reply(&mut wr, &r).await;
        }
    };
    // A terminal session is recorded like `vslice enter` (asciicast v2, audit/sessions.rs),
    // named in the login record and hashed in the logout record (`vslice audit verify`).
    let mut recorder = None;
    if req.tty {
        match crate::audit::sessions::Recorder::create(
            st.daemon.audit_dir(),
            &slice,
            &title,
            req.cols,
            req.rows,
            st.daemon.config.session_record_input,
        ) {
            Ok(r) => {
                args["recording"] = Value::from(r.name.clone());
                recorder = Some(r);
            }
            Err(e) => args["recording_error"] = Value::from(e.to_string()),
        }
    }
    // Recorded (fsynced) before the command starts.
    let mut login = Outcome::ok(200);
    login.message = None;
    if let Err(e) = audit(
        &st,
        &caller,
        "ssh_login",
        Some(slice.clone()),
        args.clone(),
        login,
    )
    .await
    {
        let message = format!("the login could not be recorded: {e}");
        return reply(&mut wr, &VshReply::Error { message }).await;
    }
    let started = Instant::now();
    let result = match console {
        None => run_plain(cmd, fds, lines, &mut wr, &session_id).await,
        Some((path, listener)) => {
            let host = fds.into_iter().next().expect("one fd checked above");
            run_tty(
                cmd,
                host,
                (req.cols, req.rows),
                path,
                listener,
                lines,
                &mut wr,
                &session_id,
                &mut recorder,
            )
            .await
        }
    };
    if let Some(r) = recorder.take() {
        args["recording"] = r.close().to_json();
    }
    let mut o = Outcome::ok(200);
    match &result {
        Ok(Some(code)) => o.exit_code = Some(*code),
        Ok(None) => o.message = Some("client disconnected; session killed".into()),
        Err(m) => {
            o.ok = false;
            o.status = 500;
            o.code = Some("exec_failed".into());
            o.message = Some(m.clone());
        }
    }
    args["duration_ms"] = Value::from(started.elapsed().as_millis() as u64);
    let _ = audit(&st, &caller, "ssh_logout", Some(slice), args, o).await;
    match result {
        Ok(Some(code)) => reply(&mut wr, &VshReply::Exit { exit_code: code }).await,
        Ok(None) => Ok(()),
        Err(message) => reply(&mut wr, &VshReply::Error { message }).await,
    }
}

/// No terminal: the command's stdio is sshd's. Ends with the command (its code) or with vsh
/// (None: the shim is killed, and with it the command's session).
async fn run_plain(
    cmd: std::process::Command,
    fds: Vec<OwnedFd>,
    mut lines: LineReader,
    wr: &mut OwnedWriteHalf,
    session: &str,
) -> Result<Option<i32>, String> {
    let mut cmd = Command::from(cmd);
    let mut it = fds.into_iter();
    let (i, o, e) = (it.next(), it.next(), it.next());
    let (Some(i), Some(o), Some(e)) = (i, o, e) else {
        return Err("three descriptors expected".into());
    };
    cmd.stdin(Stdio::from(i))
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e))
        .kill_on_drop(true);
    let spawned = cmd.spawn();
    // Our copies of sshd's pipes close now: sshd sees end-of-file when the command is done.
    drop(cmd);
    let mut child = spawned.map_err(|e| spawn_error(e).message)?;
    let started = VshReply::Started {
        session: session.to_string(),
    };
    if reply(wr, &started).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Ok(None);
    }
    loop {
        tokio::select! {
            status = child.wait() => {
                return Ok(Some(status.map(exit_code).unwrap_or(255)));
            }
            l = lines.next_line() => match l {
                Ok(Some(_)) => {} // a resize without a terminal: nothing to do
                Ok(None) | Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Ok(None);
                }
            },
        }
    }
}

/// The shim command with `--tty-size COLSxROWS` after its subcommand: the slice's terminal
/// has the client's size before the command starts (set after the hand-over, a quick command
/// such as `stty size` could still see 0x0).
pub(super) fn with_tty_size(
    cmd: std::process::Command,
    (cols, rows): (u16, u16),
) -> std::process::Command {
    let mut args = cmd.get_args();
    let mut out = std::process::Command::new(cmd.get_program());
    if let Some(sub) = args.next() {
        out.arg(sub);
    }
    out.arg("--tty-size").arg(format!("{cols}x{rows}"));
    out.args(args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => out.env(k, v),
            None => out.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        out.current_dir(d);
    }
    out
}

/// sshd's terminal in raw mode: the slice's terminal does the line discipline.
fn make_raw(fd: &OwnedFd) {
    use nix::sys::termios;
    if let Ok(mut t) = termios::tcgetattr(fd.as_fd()) {
        termios::cfmakeraw(&mut t);
        let _ = termios::tcsetattr(fd.as_fd(), termios::SetArg::TCSANOW, &t);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_tty(
    cmd: std::process::Command,
    host: OwnedFd,
    size: (u16, u16),
    socket_path: std::path::PathBuf,
    listener: UnixListener,
    lines: LineReader,
    wr: &mut OwnedWriteHalf,
    session: &str,
    recorder: &mut Option<crate::audit::sessions::Recorder>,
) -> Result<Option<i32>, String> {
    let mut cmd = Command::from(with_tty_size(cmd, size));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&socket_path);
            return Err(spawn_error(e).message);
        }
    };
    let master = receive_terminal(&mut child, listener, &socket_path).await?;
    let _ = crate::sandbox::pty::set_size(&master, size.0, size.1);
    make_raw(&host);
    let started = VshReply::Started {
        session: session.to_string(),
    };
    if reply(wr, &started).await.is_err() {
        drop(master);
        hang_up(child);
        return Ok(None);
    }
    relay(host, master, child, lines, recorder).await
}

/// Kill the shim if the command outlives its hangup by [`HANGUP_GRACE`].
fn hang_up(mut child: Child) {
    tokio::spawn(async move {
        if tokio::time::timeout(HANGUP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    });
}

/// Copy between sshd's terminal and the slice's until the command ends (its code) or the
/// client goes away (None; the slice's terminal is hung up).
async fn relay(
    host: OwnedFd,
    master: OwnedFd,
    mut child: Child,
    mut lines: LineReader,
    recorder: &mut Option<crate::audit::sessions::Recorder>,
) -> Result<Option<i32>, String> {
    let setup = set_nonblocking(&host)
        .and_then(|_| set_nonblocking(&master))
        // SAFETY: we own both fds (received over sockets) and register each once.
        .and_then(|_| unsafe { AsyncFd::register(host) }.map_err(|e| e.into_parts().1))
        .and_then(|h| {
            unsafe { AsyncFd::register(master) }
                .map(|m| (h, m))
                .map_err(|e| e.into_parts().1)
        });
    let (host, master) = match setup {
        Ok(p) => p,
        Err(e) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!("terminal relay: {e}"));
        }
    };
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut in_buf = vec![0u8; 32 * 1024];
    let mut to_host: Vec<u8> = Vec::new();
    let mut to_slice: Vec<u8> = Vec::new();
    let mut output_open = true;
    let mut exit: Option<i32> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let client_gone = loop {
        if exit.is_some() && !output_open && to_host.is_empty() {
            break false;
        }
        tokio::select! {
            r = read_master(&master, &mut out_buf), if output_open && to_host.len() < RELAY_BUFFER => match r {
                Ok(0) | Err(_) => output_open = false,
                Ok(n) => {
                    if let Some(r) = recorder.as_mut() {
                        r.output(&out_buf[..n]);
                    }
                    to_host.extend_from_slice(&out_buf[..n]);
                }
            },
            w = write_master(&host, &to_host), if !to_host.is_empty() => match w {
                Ok(n) => { to_host.drain(..n); }
                Err(_) => break true,
            },
            r = read_master(&host, &mut in_buf), if to_slice.len() < RELAY_BUFFER => match r {
                Ok(0) | Err(_) => break true, // sshd closed its side: the client is gone
                Ok(n) => {
                    if let Some(r) = recorder.as_mut() {
                        r.input(&in_buf[..n]);
                    }
                    to_slice.extend_from_slice(&in_buf[..n]);
                }
            },
            w = write_master(&master, &to_slice), if !to_slice.is_empty() => match w {
                Ok(n) => { to_slice.drain(..n); }
                Err(_) => to_slice.clear(),
            },
            l = lines.next_line() => match l {
                Ok(Some(l)) => {
                    if let Ok(VshRequest::Resize { cols, rows }) = serde_json::from_str(&l) {
                        let _ = crate::sandbox::pty::set_size(master.get_ref(), cols, rows);
                    }
                }
                Ok(None) | Err(_) => break true,
            },
            status = child.wait(), if exit.is_none() => {
                exit = Some(status.map(exit_code).unwrap_or(255));
                drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            },
            _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => break false,
        }
    };
    drop(master); // hang up the slice's terminal
    drop(host); // sshd sees the end of output once vsh exits too
    if client_gone {
        if exit.is_none() {
            hang_up(child);
        }
        return Ok(None);
    }
    Ok(Some(exit.unwrap_or(255)))
}
