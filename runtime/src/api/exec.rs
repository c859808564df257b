//! Running commands inside a slice: `POST …/exec` (collect stdout, stderr and the exit code)
//! and `GET …/exec/tty` (a WebSocket carrying a pseudo-terminal).
//!
//! Both spawn `vslice-shim exec …` as built by [`crate::slice::Manager::exec_command`]; the
//! exit code is the shim's, which is the command's. For a tty the shim allocates the pty in
//! the slice's devpts and passes the master to a console socket the daemon listens on (runc's
//! console-socket protocol: one SCM_RIGHTS message); the daemon then relays between the
//! master and the WebSocket:
//!
//! * client → daemon, binary frame: input bytes;
//! * client → daemon, text frame `{"cols":C,"rows":R}`: resize (TIOCSWINSZ on the master);
//! * daemon → client, binary frame: output bytes;
//! * daemon → client, last text frame `{"exit_code":N}`, then a close frame.
//!
//! Closing the WebSocket hangs up the terminal (the session gets SIGHUP), like closing an
//! ssh connection. Each exec is audited before the command starts (`exec`) and when it ends
//! (`exec_end`, with the exit code).
use super::error::{parse_body, ApiError};
use super::slices::{audit, authorize_slice, body_args, finish, Query};
use super::types::{b64, ExecInput, ExecOutput, Resize, TtyExit};
use super::AppState;
use crate::audit::{exec_args, Outcome};
use crate::daemon::Caller;
use crate::slice::ExecRequest;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};

/// Default command of an interactive exec without `cmd` (an "enter").
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-l"];
/// How long the shim may take to hand over the pty.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Output still read after the command exited (background jobs may keep the pty open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);
/// How long a command may run on after its client went away and its terminal was hung up
/// (e.g. one that ignores SIGHUP) before its shim is killed, which ends it.
const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// Input buffered for the pty before the daemon stops reading the WebSocket.
const MAX_PENDING_INPUT: usize = 256 * 1024;

/// Exit code of a process: its code, or 128+signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// The shim could not be spawned. The command's strings are checked before (slice/manager.rs
/// exec_command), so E2BIG or a NUL here is still the client's command, not the daemon.
pub(super) fn spawn_error(e: io::Error) -> ApiError {
    if e.raw_os_error() == Some(libc::E2BIG) {
        ApiError::invalid(
            "argv",
            format!("the command and its environment are too large for the kernel: {e}"),
        )
    } else if e.kind() == io::ErrorKind::InvalidInput {
        ApiError::invalid("argv", format!("not a valid command: {e}"))
    } else {
        ApiError::internal(format!("spawning the shim: {e}"))
    }
}

/// An interactive exec takes its command as `cmd` query parameters: name those in errors.
fn tty_field(mut e: ApiError) -> ApiError {
    if let Some(f) = &e.field {
        if let Some(rest) = f.strip_prefix("argv") {
            e.field = Some(format!("cmd{rest}"));
        }
    }
    e
}

/// What the audit log keeps of an exec: the command, not the environment's values.
pub(super) async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, truncated),
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
}

/// `POST /v1/slices/{name}/exec`.
pub async fn exec(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let raw_args = body_args(&body);
    let prepared = async {
        let q = Query::parse(&raw, &["encoding"])?;
        let base64_out = match q.get("encoding") {
            None | Some("auto") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "encoding",
                    format!("{other:?}: expected auto or base64"),
                ))
            }
        };
        let input: ExecInput = parse_body(&body)?;
        authorize_slice(&st, &caller, &name).await?;
        let stdin = match (&input.stdin_base64, &input.stdin) {
            (Some(b), _) => Some(b64::decode(b).map_err(|e| ApiError::invalid("stdin_base64", e))?),
            (None, Some(s)) => Some(s.clone().into_bytes()),
            (None, None) => None,
        };
        let req = ExecRequest {
            argv: input.argv.clone(),
            env: input.env.clone(),
            cwd: input.cwd.clone(),
            tty: false,
        };
        let n = name.clone();
        let cmd = st
            .daemon
            .blocking(move |m| m.exec_command(&n, &req, None))
            .await?;
        Ok((input, cmd, stdin, base64_out))
    }
    .await;
    let args = match &prepared {
        Ok((input, ..)) => exec_args(&input.argv, &input.env, input.cwd.as_deref(), false),
        Err(_) => raw_args,
    };
    let (input, cmd, stdin, base64_out) = match prepared {
        Ok(p) => p,
        Err(e) => return finish(&st, &caller, "exec", Some(name), args, Err(e)).await,
    };
    // Recorded (and fsynced) before the command starts.
    if let Err(e) = audit(
        &st,
        &caller,
        "exec",
        Some(name.clone()),
        args.clone(),
        Outcome::ok(200),
    )
    .await
    {
        return ApiError::from(e).into_response();
    }
    let started = Instant::now();
    let result = run_collect(
        cmd,
        stdin,
        input.timeout_secs,
        st.daemon.config.exec_output_limit,
    )
    .await;
    let mut outcome = match &result {
        Ok(out) => {
            let mut o = Outcome::ok(200);
            o.exit_code = Some(out.exit_code);
            o
        }
        Err(e) => e.outcome(),
    };
    if let Ok(out) = &result {
        if out.timed_out {
            outcome.message = Some("timed out".into());
        }
    }
    let mut end_args = args;
    end_args["duration_ms"] = json!(started.elapsed().as_millis() as u64);
    let _ = audit(&st, &caller, "exec_end", Some(name), end_args, outcome).await;
    match result {
        Ok(mut out) => {
            let both_utf8 = std::str::from_utf8(&out.stdout).is_ok()
                && std::str::from_utf8(&out.stderr).is_ok();
            let (encoding, stdout, stderr) = if both_utf8 && !base64_out {
                (
                    "utf8",
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            } else {
                ("base64", b64::encode(&out.stdout), b64::encode(&out.stderr))
            };
            out.stdout.clear();
            Json(ExecOutput {
                exit_code: out.exit_code,
                stdout,
                stderr,
                encoding: encoding.into(),
                truncated: out.truncated,
                timed_out: out.timed_out,
            })
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

struct Collected {
    exit_code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
    timed_out: bool,
}

async fn run_collect(
    cmd: std::process::Command,
    stdin: Option<Vec<u8>>,
    timeout: Option<u64>,
    cap: usize,
) -> Result<Collected, ApiError> {
    let mut cmd = Command::from(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(spawn_error)?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = w.write_all(&data).await;
            let _ = w.shutdown().await;
        });
    }
    let out = tokio::spawn(read_capped(child.stdout.take().expect("piped"), cap));
    let err = tokio::spawn(read_capped(child.stderr.take().expect("piped"), cap));
    let deadline = timeout.map(Duration::from_secs);
    let (status, timed_out) = match deadline {
        Some(d) => match tokio::time::timeout(d, child.wait()).await {
            Ok(s) => (s, false),
            Err(_) => {
                let _ = child.start_kill();
                (child.wait().await, true)
            }
        },
        None => (child.wait().await, false),
    };
    let status = status.map_err(|e| ApiError::internal(format!("waiting for the shim: {e}")))?;
    // Processes the command left in the background may hold the pipes open: do not wait
    // for them beyond a moment.
    let grace = Duration::from_millis(if timed_out { 200 } else { 2000 });
    let collect = |h: tokio::task::JoinHandle<(Vec<u8>, bool)>| async move {
        let abort = h.abort_handle();
        match tokio::time::timeout(grace, h).await {
            Ok(Ok(v)) => v,
            _ => {
                abort.abort();
                (Vec::new(), true)
            }
        }
    };
    let ((stdout, t1), (stderr, t2)) = tokio::join!(collect(out), collect(err));
    Ok(Collected {
        exit_code: if timed_out { 137 } else { exit_code(status) },
        stdout,
        stderr,
        truncated: t1 || t2,
        timed_out,
    })
}

static CONSOLE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A console socket path under `<root>/run` (0700, root's), unique in this daemon.
pub(super) fn console_socket_path(st: &AppState) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = st.daemon.paths.root.join("run");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let n = CONSOLE_SEQ.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!("console-{}-{n}.sock", std::process::id())))
}

/// Receive one fd sent with SCM_RIGHTS.
fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut got: Option<OwnedFd> = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed these fds in our table; we own them.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    match got {
        Some(fd) => Ok(fd),
        None if msg.bytes == 0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "console socket closed without a pty",
        )),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "console socket message carried no fd",
        )),
    }
}

pub(super) async fn receive_master(listener: &UnixListener) -> io::Result<OwnedFd> {
    let (stream, _) = listener.accept().await?;
    loop {
        stream.readable().await?;
        match stream.try_io(tokio::io::Interest::READABLE, || {
            recv_fd(stream.as_raw_fd())
        }) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

struct Tty {
    ws: WebSocketUpgrade,
    listener: UnixListener,
    socket_path: PathBuf,
    cmd: std::process::Command,
    size: Resize,
}

/// `GET /v1/slices/{name}/exec/tty` (WebSocket).
pub async fn exec_tty(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let q = Query::parse(&raw, &["cmd", "env", "cwd", "cols", "rows"]);
    let (mut argv, env, cwd) = match &q {
        Ok(q) => (q.all("cmd"), q.all("env"), q.get("cwd").map(str::to_string)),
        Err(_) => Default::default(),
    };
    if argv.is_empty() {
        argv = DEFAULT_SHELL.iter().map(|s| s.to_string()).collect();
    }
    let args = exec_args(&argv, &env, cwd.as_deref(), true);
    let prepared = async {
        let q = q?;
        let cols = q
            .parsed::<u16>("cols", "a number of columns")?
            .unwrap_or(80);
        let rows = q.parsed::<u16>("rows", "a number of rows")?.unwrap_or(24);
        authorize_slice(&st, &caller, &name).await?;
        let ws =
            ws.map_err(|e| ApiError::bad_request(format!("expected a WebSocket upgrade: {e}")))?;
        let socket_path = console_socket_path(&st)
            .map_err(|e| ApiError::internal(format!("console socket: {e}")))?;
        let listener = UnixListener::bind(&socket_path).map_err(|e| {
            ApiError::internal(format!("console socket {}: {e}", socket_path.display()))
        })?;
        let req = ExecRequest {
            argv: argv.clone(),
            env: env.clone(),
            cwd: cwd.clone(),
            tty: true,
        };
        let (n, p) = (name.clone(), socket_path.clone());
        let cmd = match st
            .daemon
            .blocking(move |m| m.exec_command(&n, &req, Some(&p)))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&socket_path);
                return Err(tty_field(e.into()));
            }
        };
        Ok(Tty {
            ws,
            listener,
            socket_path,
            cmd,
            size: Resize { cols, rows },
        })
    }
    .await;
    let tty = match prepared {
        Ok(t) => t,
        Err(e) => return finish(&st, &caller, "exec", Some(name), args, Err(e)).await,
    };
    // The session recording (asciicast v2), named in the exec record (audit/sessions.rs).
    let mut args = args;
    let recorder = match crate::audit::sessions::Recorder::create(
        st.daemon.audit_dir(),
        &name,
        &argv,
        tty.size.cols,
        tty.size.rows,
        st.daemon.config.session_record_input,
    ) {
        Ok(r) => {
            args["recording"] = json!(r.name);
            Some(r)
        }
        Err(e) => {
            tracing::warn!(error = %e, slice = %name, "cannot record the session");
            args["recording_error"] = json!(e.to_string());
            None
        }
    };
    if let Err(e) = audit(
        &st,
        &caller,
        "exec",
        Some(name.clone()),
        args.clone(),
        Outcome::ok(101),
    )
    .await
    {
        let _ = std::fs::remove_file(&tty.socket_path);
        return ApiError::from(e).into_response();
    }
    let started = Instant::now();
    let end = {
        let (st, caller, name, args) = (st.clone(), caller.clone(), name.clone(), args.clone());
        move |outcome: Outcome, recording: Option<serde_json::Value>| {
            let (st, caller, name, mut args) =
                (st.clone(), caller.clone(), name.clone(), args.clone());
            async move {
                args["duration_ms"] = json!(started.elapsed().as_millis() as u64);
                if let Some(r) = recording {
                    args["recording"] = r;
                }
                let _ = audit(&st, &caller, "exec_end", Some(name), args, outcome).await;
            }
        }
    };
    let Tty {
        ws,
        listener,
        socket_path,
        cmd,
        size,
    } = tty;
    // Sized before the command starts (api/vsh.rs says why).
    let mut cmd = Command::from(super::vsh::with_tty_size(cmd, (size.cols, size.rows)));
    // Killed if this request ends without handing the shim to the relay (the client went
    // away before or during the upgrade): the shim's death ends the command.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&socket_path);
            let err = tty_field(spawn_error(e));
            end(err.outcome(), None).await;
            return err.into_response();
        }
    };
    let master = match receive_terminal(&mut child, listener, &socket_path).await {
        Ok(fd) => fd,
        Err(msg) => {
            let err = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "exec_failed", msg);
            end(err.outcome(), None).await;
            return err.into_response();
        }
    };
    let _ = crate::sandbox::pty::set_size(&master, size.cols, size.rows);
    ws.on_upgrade(move |socket| async move {
        let (code, recording) = relay(socket, master, child, recorder).await;
        let mut o = Outcome::ok(101);
        o.exit_code = code;
        if code.is_none() {
            o.message = Some("client disconnected; command hung up".into());
        }
        end(o, recording.map(|r| r.to_json())).await;
    })
}

pub(super) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(
        fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?,
    );
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    Ok(())
}

pub(super) async fn read_master(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard
            .try_io(|inner| nix::unistd::read(inner.as_raw_fd(), buf).map_err(io::Error::from))
        {
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0), // slave side closed
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

pub(super) async fn write_master(fd: &AsyncFd<OwnedFd>, data: &[u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.writable().await?;
        match guard
            .try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(io::Error::from))
        {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Relay until the command ends (then send its exit code) or the client goes away (then
/// hang up the terminal). Returns the exit code, if the command ended while connected.
async fn relay(
    socket: WebSocket,
    master: OwnedFd,
    child: Child,
    mut recorder: Option<crate::audit::sessions::Recorder>,
) -> (Option<i32>, Option<crate::audit::sessions::Closed>) {
    let code = relay_inner(socket, master, child, &mut recorder).await;
    let closed = match recorder {
        Some(r) => tokio::task::spawn_blocking(move || r.close()).await.ok(),
        None => None,
    };
    (code, closed)
}

async fn relay_inner(
    mut socket: WebSocket,
    master: OwnedFd,
    mut child: Child,
    recorder: &mut Option<crate::audit::sessions::Recorder>,
) -> Option<i32> {
    if set_nonblocking(&master).is_err() {
        let _ = child.start_kill();
        return None;
    }
    // SAFETY: we own `master` (received over the console socket) and register it once.
    let master = match unsafe { AsyncFd::register(master) } {
        Ok(m) => m,
        Err(_) => {
            let _ = child.start_kill();
            return None;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut output_open = true;
    let mut exit: Option<i32> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let client_gone = loop {
        if exit.is_some() && !output_open {
            break false;
        }
        tokio::select! {
            r = read_master(&master, &mut buf), if output_open => match r {
                Ok(0) | Err(_) => output_open = false,
                Ok(n) => {
                    if let Some(r) = recorder.as_mut() {
                        r.output(&buf[..n]);
                    }
                    if socket.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break true;
                    }
                }
            },
            m = socket.recv(), if pending.len() < MAX_PENDING_INPUT => match m {
                Some(Ok(Message::Binary(b))) => {
                    if let Some(r) = recorder.as_mut() {
                        r.input(&b);
                    }
                    pending.extend_from_slice(&b)
                }
                Some(Ok(Message::Text(t))) => {
                    if let Ok(r) = serde_json::from_str::<Resize>(t.as_str()) {
                        let _ = crate::sandbox::pty::set_size(master.get_ref(), r.cols, r.rows);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break true,
                Some(Ok(_)) => {}
            },
            w = write_master(&master, &pending), if !pending.is_empty() => match w {
                Ok(n) => { pending.drain(..n); }
                Err(_) => pending.clear(),
            },
            status = child.wait(), if exit.is_none() => {
                exit = Some(status.map(exit_code).unwrap_or(255));
                drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            },
            _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => break false,
        }
    };
    drop(master); // hang up
    if client_gone {
        // The session got SIGHUP; reap the shim in the background.
        tokio::spawn(async move {
            if tokio::time::timeout(HANGUP_GRACE, child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        });
        return None;
    }
    let code = exit.unwrap_or(255);
    let text = serde_json::to_string(&TtyExit { exit_code: code }).unwrap_or_default();
    let _ = socket.send(Message::Text(text.into())).await;
    let _ = socket.send(Message::Close(None)).await;
    Some(code)
}

/// Wait for the shim of a terminal session to hand over the slice's pty master on `listener`
/// (then remove its socket). If the shim ends or times out first, kill it and explain why,
/// with what it wrote to stderr. Shared by the API's tty exec and SSH sessions (api/vsh.rs).
pub(super) async fn receive_terminal(
    child: &mut tokio::process::Child,
    listener: tokio::net::UnixListener,
    socket_path: &std::path::Path,
) -> Result<OwnedFd, String> {
    let stderr_task = child
        .stderr
        .take()
        .map(|e| tokio::spawn(read_capped(e, 64 * 1024)));
    let got = tokio::select! {
        r = tokio::time::timeout(CONSOLE_TIMEOUT, receive_master(&listener)) => match r {
            Ok(Ok(fd)) => Ok(fd),
            Ok(Err(e)) => Err(format!("receiving the slice's terminal: {e}")),
            Err(_) => Err("the shim did not hand over a terminal in time".to_string()),
        },
        status = child.wait() => {
            let code = status.map(exit_code).unwrap_or(255);
            Err(format!("the command could not start (exit code {code})"))
        }
    };
    drop(listener);
    let _ = std::fs::remove_file(socket_path);
    let reason = match got {
        Ok(fd) => return Ok(fd),
        Err(reason) => reason,
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    let stderr = match stderr_task {
        Some(t) => match tokio::time::timeout(Duration::from_millis(500), t).await {
            Ok(Ok((s, _))) => String::from_utf8_lossy(&s).trim().to_string(),
            _ => String::new(),
        },
        None => String::new(),
    };
    Err(if stderr.is_empty() {
        reason
    } else {
        format!("{reason}: {stderr}")
    })
}
