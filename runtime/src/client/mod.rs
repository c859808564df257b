//! Client library for the daemon's API: HTTP/1.1 over the Unix socket, typed methods, errors
//! that say what to do (daemon not running, not allowed). The `vslice` CLI uses it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vslice::client::ClientError> {
//! use vslice::client::Client;
//! let c = Client::from_env();
//! for s in c.list().await? {
//!     println!("{} {:?}", s.spec.name, s.status);
//! }
//! # Ok(()) }
//! ```
//!
//! [`Client`] is async (tokio); [`BlockingClient`] wraps it with its own single-threaded
//! runtime for synchronous callers. A `Client` keeps one keep-alive connection and runs one
//! request at a time on it; clone it (a clone gets its own connection) for parallel requests.
//!
//! The client depends only on [`crate::proto`] (the wire types) and the HTTP/WebSocket crates,
//! not on the daemon or the slice internals.
mod accounting;
pub mod files;
mod image;
mod snapshot;
mod ssh;
pub mod tty;

use crate::proto::{
    AuditRecord, CreateRequest, ErrorBody, Event, EventsQuery, ExecInput, ExecOutput, Image,
    ImagesQuery, Info, LimitsPatch, Resize, SliceInfo, Stats, StopQuery, TtyExit, TtyQuery,
    VerifyReport,
};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::WebSocketStream;

pub use crate::proto::{AuditQuery, DEFAULT_SOCKET, DEFAULT_USER_SOCKET};

/// Errors of API calls.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("cannot connect to vsliced at {}: {source} — is the daemon running? (`systemctl start vsliced`, or run `vsliced`; set VSLICE_SOCKET for another socket)", socket.display())]
    NotRunning { socket: PathBuf, source: io::Error },
    /// The socket's permissions keep the caller out.
    #[error("permission denied on {}: operators must be root or in the vslice-admin group; slice owners use {}", socket.display(), DEFAULT_USER_SOCKET)]
    PermissionDenied { socket: PathBuf },
    /// The daemon answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("talking to vsliced: {0}")]
    Transport(String),
    #[error("unexpected reply from vsliced: {0}")]
    Protocol(String),
}

impl ClientError {
    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// Error code of an API error (`not_found`, `forbidden`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    /// The request field an API error is about.
    pub fn field(&self) -> Option<&str> {
        match self {
            ClientError::Api { field, .. } => field.as_deref(),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some("not_found")
    }
    /// Whether the daemon could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::NotRunning { .. } | ClientError::PermissionDenied { .. }
        )
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Result of a non-interactive exec, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub timed_out: bool,
}

/// Options of an interactive (terminal) exec. An empty `argv` runs the slice's login shell
/// (`/bin/sh -l`): that is `vslice enter`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TtyOptions {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub cols: u16,
    pub rows: u16,
}

/// Which events to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub slice: Option<String>,
    /// Also the buffered events after this seq (`Some(0)`: everything buffered).
    pub since: Option<u64>,
    /// Keep the stream open for new events.
    pub follow: bool,
    /// Only these types (`created`, `started`, `exited`, `oom`, `limits-changed`, `destroyed`).
    pub types: Vec<String>,
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            slice: None,
            since: None,
            follow: true,
            types: Vec::new(),
        }
    }
}

/// Bytes escaped in a path segment: everything but RFC 3986's unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a path segment (or a query value).
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// `?k=v&…` (form-urlencoded) from a query type of [`crate::proto`]: null members are left
/// out, arrays become repeated keys (`cmd=a&cmd=b`), as the OpenAPI document describes them.
pub fn query_string<T: Serialize>(q: &T) -> Result<String> {
    let value = serde_json::to_value(q).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let serde_json::Value::Object(members) = value else {
        return Err(ClientError::Protocol("query is not a JSON object".into()));
    };
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut add = |k: &str, v: &serde_json::Value| match v {
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => {
            out.append_pair(k, s);
        }
        other => {
            out.append_pair(k, &other.to_string());
        }
    };
    for (k, v) in &members {
        match v {
            serde_json::Value::Array(items) => items.iter().for_each(|i| add(k, i)),
            v => add(k, v),
        }
    }
    let text = out.finish();
    Ok(if text.is_empty() {
        text
    } else {
        format!("?{text}")
    })
}

/// The async client.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Clone for Client {
    fn clone(&self) -> Self {
        Client::new(&self.socket)
    }
}

impl Client {
    /// A client for the daemon on `socket`. Connects lazily.
    pub fn new(socket: impl AsRef<Path>) -> Client {
        Client {
            socket: socket.as_ref().to_path_buf(),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The socket from `$VSLICE_SOCKET`; else the operators' socket if the caller may open
    /// it; else the owners' socket if it exists; else the operators' socket (so the error
    /// names it).
    pub fn from_env() -> Client {
        Client::new(default_socket())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connect_stream(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                    socket: self.socket.clone(),
                },
                _ => ClientError::NotRunning {
                    socket: self.socket.clone(),
                    source: e,
                },
            })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = self.connect_stream().await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn build(method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost");
        if body.is_some() {
            b = b.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Send a request on the shared connection and read the whole reply.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut guard = self.conn.lock().await;
        let mut req = Self::build(method, path, body)?;
        for attempt in 0..3 {
            if guard.as_ref().is_none_or(|s| s.is_closed()) {
                *guard = Some(self.connect().await?);
            }
            let sender = guard.as_mut().expect("connected");
            if sender.ready().await.is_err() {
                *guard = None;
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| ClientError::Transport(e.to_string()))?
                        .to_bytes();
                    return Ok((status, body));
                }
                Err(mut e) => {
                    *guard = None;
                    match e.take_message() {
                        // Not sent (the kept-alive connection had closed): retry on a new one.
                        Some(r) if attempt < 2 => req = r,
                        _ => return Err(ClientError::Transport(e.into_error().to_string())),
                    }
                }
            }
        }
        Err(ClientError::Transport("could not send the request".into()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let (status, bytes) = self.raw(method, path, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("{path}: {e}")))
    }

    async fn call_json<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let data = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(method, path, Some(data)).await
    }

    pub async fn info(&self) -> Result<Info> {
        self.call(Method::GET, "/v1/info", None).await
    }

    pub async fn create(&self, req: &CreateRequest) -> Result<SliceInfo> {
        self.call_json(Method::POST, "/v1/slices", req).await
    }

    pub async fn list(&self) -> Result<Vec<SliceInfo>> {
        self.call(Method::GET, "/v1/slices", None).await
    }

    pub async fn inspect(&self, name: &str) -> Result<SliceInfo> {
        self.call(Method::GET, &format!("/v1/slices/{}", encode(name)), None)
            .await
    }

    pub async fn update_limits(&self, name: &str, patch: &LimitsPatch) -> Result<SliceInfo> {
        self.call_json(
            Method::PATCH,
            &format!("/v1/slices/{}/limits", encode(name)),
            patch,
        )
        .await
    }

    pub async fn start(&self, name: &str) -> Result<SliceInfo> {
        self.call(
            Method::POST,
            &format!("/v1/slices/{}/start", encode(name)),
            None,
        )
        .await
    }

    /// Stop: SIGTERM, then SIGKILL after `timeout` (default: the daemon's).
    pub async fn stop(&self, name: &str, timeout: Option<Duration>) -> Result<SliceInfo> {
        let q = query_string(&StopQuery {
            timeout: timeout.map(|t| t.as_secs_f64()),
        })?;
        self.call(
            Method::POST,
            &format!("/v1/slices/{}/stop{q}", encode(name)),
            None,
        )
        .await
    }

    pub async fn restart(&self, name: &str, timeout: Option<Duration>) -> Result<SliceInfo> {
        let q = query_string(&StopQuery {
            timeout: timeout.map(|t| t.as_secs_f64()),
        })?;
        self.call(
            Method::POST,
            &format!("/v1/slices/{}/restart{q}", encode(name)),
            None,
        )
        .await
    }

    pub async fn destroy(&self, name: &str) -> Result<()> {
        let (status, bytes) = self
            .raw(
                Method::DELETE,
                &format!("/v1/slices/{}", encode(name)),
                None,
            )
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(())
    }

    /// Run a command in the slice and collect its output.
    pub async fn exec(&self, name: &str, input: &ExecInput) -> Result<ExecResult> {
        let out: ExecOutput = self
            .call_json(
                Method::POST,
                &format!("/v1/slices/{}/exec", encode(name)),
                input,
            )
            .await?;
        Ok(ExecResult {
            exit_code: out.exit_code,
            stdout: out.stdout_bytes().map_err(ClientError::Protocol)?,
            stderr: out.stderr_bytes().map_err(ClientError::Protocol)?,
            truncated: out.truncated,
            timed_out: out.timed_out,
        })
    }

    /// Start an interactive command on a terminal; see [`TtySession`].
    pub async fn exec_tty(&self, name: &str, opts: &TtyOptions) -> Result<TtySession> {
        let sized = opts.cols > 0 && opts.rows > 0;
        let q = TtyQuery {
            cmd: opts.argv.clone(),
            env: opts.env.clone(),
            cwd: opts.cwd.clone(),
            cols: sized.then_some(opts.cols),
            rows: sized.then_some(opts.rows),
        };
        let url = format!(
            "ws://localhost/v1/slices/{}/exec/tty{}",
            encode(name),
            query_string(&q)?
        );
        let stream = self.connect_stream().await?;
        let (ws, _) = match tokio_tungstenite::client_async(url, stream).await {
            Ok(ok) => ok,
            // The daemon refused the upgrade with an ordinary error reply.
            Err(tungstenite::Error::Http(resp)) => {
                let body = resp.body().clone().unwrap_or_default();
                return Err(api_error(resp.status(), &body));
            }
            Err(e) => return Err(ClientError::Transport(e.to_string())),
        };
        let (sink, stream) = ws.split();
        Ok(TtySession {
            reader: TtyReader { ws: stream },
            writer: TtyWriter { ws: sink },
        })
    }

    pub async fn stats(&self, name: &str) -> Result<Stats> {
        self.call(
            Method::GET,
            &format!("/v1/slices/{}/stats", encode(name)),
            None,
        )
        .await
    }

    /// Subscribe to events (its own connection).
    pub async fn events(&self, filter: &EventFilter) -> Result<EventStream> {
        let q = query_string(&EventsQuery {
            slice: filter.slice.clone(),
            since: filter.since,
            follow: Some(filter.follow),
            types: (!filter.types.is_empty()).then(|| filter.types.join(",")),
        })?;
        let mut sender = self.connect().await?;
        let req = Self::build(Method::GET, &format!("/v1/events{q}"), None)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(api_error(status, &body));
        }
        Ok(EventStream {
            body: resp.into_body(),
            buf: Vec::new(),
            _sender: sender,
        })
    }

    /// Audit records, as stored lines (canonical JSON).
    pub async fn audit_lines(&self, q: &AuditQuery) -> Result<Vec<String>> {
        let mut q = q.clone();
        // `tail=false` is the default: leave it out of the URL.
        let tail = std::mem::take(&mut q.tail);
        let mut p = query_string(&q)?;
        if tail {
            p.push_str(if p.is_empty() {
                "?tail=true"
            } else {
                "&tail=true"
            });
        }
        let (status, bytes) = self
            .raw(Method::GET, &format!("/v1/audit{p}"), None)
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Audit records, parsed.
    pub async fn audit_show(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.audit_lines(q)
            .await?
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| ClientError::Protocol(format!("audit record: {e}")))
            })
            .collect()
    }

    pub async fn audit_verify(&self) -> Result<VerifyReport> {
        self.call(Method::GET, "/v1/audit/verify", None).await
    }

    pub async fn images(&self, with_size: bool) -> Result<Vec<Image>> {
        let q = query_string(&ImagesQuery {
            size: with_size.then_some(true),
        })?;
        self.call(Method::GET, &format!("/v1/images{q}"), None)
            .await
    }

    /// Prometheus text.
    pub async fn metrics(&self) -> Result<String> {
        let (status, bytes) = self.raw(Method::GET, "/metrics", None).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.call(Method::GET, "/v1/openapi.json", None).await
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Api {
            status: status.as_u16(),
            code: e.code,
            message: e.message,
            field: e.field,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: "http".into(),
            message: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ),
            field: None,
        },
    }
}

/// The socket [`Client::from_env`] uses.
pub fn default_socket() -> PathBuf {
    if let Some(s) = std::env::var_os("VSLICE_SOCKET").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    let admin = Path::new(DEFAULT_SOCKET);
    let user = Path::new(DEFAULT_USER_SOCKET);
    let may_open = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
    if may_open(admin) || !user.exists() {
        admin.to_path_buf()
    } else {
        user.to_path_buf()
    }
}

/// A followed event stream.
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
    _sender: SendRequest<Full<Bytes>>,
}

impl EventStream {
    /// The next event; `None` when the daemon ended the stream.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue; // heartbeat
                }
                return Some(
                    serde_json::from_slice(line)
                        .map_err(|e| ClientError::Protocol(format!("event: {e}"))),
                );
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => return Some(Err(ClientError::Transport(e.to_string()))),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// What a terminal session yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtyEvent {
    Output(Vec<u8>),
    /// The command ended with this exit code; nothing follows.
    Exit(i32),
    /// The daemon closed the stream without an exit code.
    Closed,
}

/// An interactive command on a terminal. Use [`TtySession::split`] to read and write from
/// different tasks, or [`tty::attach`] to connect it to the local terminal.
pub struct TtySession {
    pub reader: TtyReader,
    pub writer: TtyWriter,
}

type Ws = WebSocketStream<UnixStream>;

/// Terminal output (binary frames) and the exit code (the last text frame).
pub struct TtyReader {
    ws: futures_util::stream::SplitStream<Ws>,
}

/// Terminal input (binary frames) and resizes (text frames).
pub struct TtyWriter {
    ws: futures_util::stream::SplitSink<Ws, tungstenite::Message>,
}

impl TtySession {
    pub fn split(self) -> (TtyReader, TtyWriter) {
        (self.reader, self.writer)
    }
    pub async fn send(&mut self, input: &[u8]) -> Result<()> {
        self.writer.send(input).await
    }
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        self.writer.resize(cols, rows).await
    }
    pub async fn recv(&mut self) -> Result<TtyEvent> {
        self.reader.recv().await
    }
    /// Read until the command ends; returns (all output, exit code).
    pub async fn collect(&mut self) -> Result<(Vec<u8>, Option<i32>)> {
        let mut out = Vec::new();
        loop {
            match self.recv().await? {
                TtyEvent::Output(b) => out.extend(b),
                TtyEvent::Exit(c) => return Ok((out, Some(c))),
                TtyEvent::Closed => return Ok((out, None)),
            }
        }
    }
}

impl TtyReader {
    pub async fn recv(&mut self) -> Result<TtyEvent> {
        loop {
            let msg = match self.ws.next().await {
                None => return Ok(TtyEvent::Closed),
                Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(TtyEvent::Closed),
                Some(Err(e)) => return Err(ClientError::Transport(e.to_string())),
                Some(Ok(m)) => m,
            };
            match msg {
                tungstenite::Message::Binary(b) => return Ok(TtyEvent::Output(b.to_vec())),
                tungstenite::Message::Text(t) => {
                    if let Ok(e) = serde_json::from_str::<TtyExit>(t.as_str()) {
                        return Ok(TtyEvent::Exit(e.exit_code));
                    }
                }
                tungstenite::Message::Close(_) => return Ok(TtyEvent::Closed),
                // Pings are answered by tungstenite itself.
                tungstenite::Message::Ping(_)
                | tungstenite::Message::Pong(_)
                | tungstenite::Message::Frame(_) => {}
            }
        }
    }
}

impl TtyWriter {
    async fn send_msg(&mut self, m: tungstenite::Message) -> Result<()> {
        self.ws
            .send(m)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }
    pub async fn send(&mut self, input: &[u8]) -> Result<()> {
        self.send_msg(tungstenite::Message::binary(input.to_vec()))
            .await
    }
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        let text = serde_json::to_string(&Resize { cols, rows })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send_msg(tungstenite::Message::text(text)).await
    }
    /// Close the stream: the terminal hangs up.
    pub async fn close(&mut self) -> Result<()> {
        match self.ws.close().await {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Ok(()),
            Err(e) => Err(ClientError::Transport(e.to_string())),
        }
    }
}

/// A synchronous client: [`Client`] on its own current-thread runtime.
pub struct BlockingClient {
    inner: Client,
    rt: tokio::runtime::Runtime,
}

impl BlockingClient {
    pub fn new(socket: impl AsRef<Path>) -> io::Result<BlockingClient> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(BlockingClient {
            inner: Client::new(socket),
            rt,
        })
    }
    /// See [`Client::from_env`].
    pub fn from_env() -> io::Result<BlockingClient> {
        BlockingClient::new(default_socket())
    }
    pub fn socket(&self) -> &Path {
        self.inner.socket()
    }
    /// The async client and its runtime, for anything not wrapped here.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
    pub fn client(&self) -> &Client {
        &self.inner
    }
    pub fn info(&self) -> Result<Info> {
        self.rt.block_on(self.inner.info())
    }
    pub fn create(&self, req: &CreateRequest) -> Result<SliceInfo> {
        self.rt.block_on(self.inner.create(req))
    }
    pub fn list(&self) -> Result<Vec<SliceInfo>> {
        self.rt.block_on(self.inner.list())
    }
    pub fn inspect(&self, name: &str) -> Result<SliceInfo> {
        self.rt.block_on(self.inner.inspect(name))
    }
    pub fn update_limits(&self, name: &str, patch: &LimitsPatch) -> Result<SliceInfo> {
        self.rt.block_on(self.inner.update_limits(name, patch))
    }
    pub fn start(&self, name: &str) -> Result<SliceInfo> {
        self.rt.block_on(self.inner.start(name))
    }
    pub fn stop(&self, name: &str, timeout: Option<Duration>) -> Result<SliceInfo> {
        self.rt.block_on(self.inner.stop(name, timeout))
    }
    pub fn restart(&self, name: &str, timeout: Option<Duration>) -> Result<SliceInfo> {
        self.rt.block_on(self.inner.restart(name, timeout))
    }
    pub fn destroy(&self, name: &str) -> Result<()> {
        self.rt.block_on(self.inner.destroy(name))
    }
    pub fn exec(&self, name: &str, input: &ExecInput) -> Result<ExecResult> {
        self.rt.block_on(self.inner.exec(name, input))
    }
    /// Run an interactive command on the local terminal (stdin/stdout); returns its exit
    /// code. An empty `opts.argv` enters the slice (login shell).
    pub fn exec_tty_attached(&self, name: &str, opts: &TtyOptions) -> Result<i32> {
        self.rt.block_on(async {
            let mut o = opts.clone();
            if o.cols == 0 || o.rows == 0 {
                if let Some((c, r)) = tty::terminal_size() {
                    (o.cols, o.rows) = (c, r);
                }
            }
            let session = self.inner.exec_tty(name, &o).await?;
            tty::attach(session).await
        })
    }
    pub fn stats(&self, name: &str) -> Result<Stats> {
        self.rt.block_on(self.inner.stats(name))
    }
    /// Events as an iterator (blocks for each).
    pub fn events(&self, filter: &EventFilter) -> Result<impl Iterator<Item = Result<Event>> + '_> {
        let mut stream = self.rt.block_on(self.inner.events(filter))?;
        Ok(std::iter::from_fn(move || self.rt.block_on(stream.next())))
    }
    pub fn audit_show(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.rt.block_on(self.inner.audit_show(q))
    }
    pub fn audit_lines(&self, q: &AuditQuery) -> Result<Vec<String>> {
        self.rt.block_on(self.inner.audit_lines(q))
    }
    pub fn audit_verify(&self) -> Result<VerifyReport> {
        self.rt.block_on(self.inner.audit_verify())
    }
    pub fn images(&self, with_size: bool) -> Result<Vec<Image>> {
        self.rt.block_on(self.inner.images(with_size))
    }
    pub fn metrics(&self) -> Result<String> {
        self.rt.block_on(self.inner.metrics())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_and_query() {
        assert_eq!(encode("web-1"), "web-1");
        assert_eq!(encode("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(encode("✓"), "%E2%9C%93");
        let q = TtyQuery {
            cmd: vec!["/bin/sh".into(), "-c".into(), "echo a&b=c".into()],
            cols: Some(80),
            ..Default::default()
        };
        assert_eq!(
            query_string(&q).unwrap(),
            "?cmd=%2Fbin%2Fsh&cmd=-c&cmd=echo+a%26b%3Dc&cols=80"
        );
        assert_eq!(query_string(&StopQuery::default()).unwrap(), "");
        // What the client encodes, the daemon's query parser decodes.
        let text = query_string(&q).unwrap();
        let back = crate::api::slices::query_pairs(Some(&text[1..]));
        assert_eq!(
            back.iter()
                .filter(|(k, _)| k == "cmd")
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>(),
            q.cmd
        );
    }

    #[tokio::test]
    async fn not_running_is_explained() {
        let c = Client::new("/nonexistent/vslice.sock");
        let e = c.list().await.unwrap_err();
        assert!(e.is_unreachable());
        assert!(e.to_string().contains("is the daemon running"), "{e}");
    }

    #[test]
    fn api_errors_parse() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"code":"invalid","message":"limits.cpu_max: too big","field":"limits.cpu_max"}"#,
        );
        assert_eq!(
            (e.status(), e.code(), e.field()),
            (Some(400), Some("invalid"), Some("limits.cpu_max"))
        );
        assert_eq!(e.to_string(), "limits.cpu_max: too big");
        let e = api_error(StatusCode::BAD_GATEWAY, b"oops");
        assert_eq!(e.code(), Some("http"));
    }
}
