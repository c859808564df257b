//! `GET|PUT /v1/slices/{name}/files`: files out of and into a running slice as tar streams
//! (`vslice cp`). The copying itself, and why it cannot be steered outside the slice, is
//! slice/files.rs; here: query parsing, authorization (operators and the slice's owners, who
//! can exec as the slice's root anyway), the audit record, and streaming.
//!
//! Both directions stream: a copy-out is written by a blocking thread into a bounded channel
//! that feeds the response body; a copy-in's request body is not buffered by the server's
//! body cap ([`unbuffered`]) but read through a bounded bridge on a blocking thread. A copy
//! of 1 GB holds a few hundred KB of the daemon's memory.
use super::error::ApiError;
use super::slices::{audit, authorize_slice, finish, json, Query};
use super::AppState;
use crate::audit::Outcome;
use crate::daemon::Caller;
use crate::proto::CopyResult;
use crate::slice::files::{FilesError, SliceRoot};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::StreamExt;
use serde_json::json;
use std::io::Write;

/// The route whose request body is streamed to its handler instead of being buffered.
pub const FILES_PATH: &str = "/v1/slices/{name}/files";

/// Whether the server must hand `method path` its body unbuffered (a copy-in has no size cap
/// but the slice's disk).
pub fn unbuffered(method: &Method, path: &str) -> bool {
    method == Method::PUT && super::path_matches(FILES_PATH, path)
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> ApiError {
        let message = e.to_string();
        let (status, code) = e.status_code();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let err = ApiError::new(status, code, message);
        match e.field() {
            Some(f) => err.with_field(f),
            None => err,
        }
    }
}

struct Parsed {
    path: String,
    uid: u32,
    gid: u32,
}

fn parse(raw: &Option<String>, put: bool) -> Result<Parsed, ApiError> {
    let allowed: &[&str] = if put {
        &["path", "uid", "gid"]
    } else {
        &["path"]
    };
    let q = Query::parse(raw, allowed)?;
    let path = q
        .get("path")
        .ok_or_else(|| ApiError::invalid("path", "required: the path inside the slice"))?
        .to_string();
    crate::slice::files::validate_path("path", &path).map_err(ApiError::from)?;
    let uid = q
        .parsed::<u32>("uid", "a slice uid (0-65535)")?
        .unwrap_or(0);
    let gid = q
        .parsed::<u32>("gid", "a slice gid (0-65535)")?
        .unwrap_or(0);
    crate::slice::files::validate_id("uid", uid).map_err(ApiError::from)?;
    crate::slice::files::validate_id("gid", gid).map_err(ApiError::from)?;
    Ok(Parsed { path, uid, gid })
}

async fn open_root(st: &AppState, caller: &Caller, name: &str) -> Result<SliceRoot, ApiError> {
    let info = authorize_slice(st, caller, name).await?;
    let paths = st.daemon.paths.clone();
    tokio::task::spawn_blocking(move || SliceRoot::open_running(&paths, &info))
        .await
        .map_err(|e| ApiError::internal(format!("opening the slice's root: {e}")))?
        .map_err(ApiError::from)
}

/// A `Write` into the response body's channel, in 256 KiB chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

/// `GET /v1/slices/{name}/files?path=P`: a tar stream of P.
pub async fn copy_out(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match parse(&raw, false) {
        Ok(q) => q,
        Err(e) => {
            let args = json!({ "query": raw.unwrap_or_default() });
            return finish(&st, &caller, "copy_out", Some(name), args, Err(e)).await;
        }
    };
    let args = json!({ "path": q.path });
    let checked = async {
        let root = open_root(&st, &caller, &name).await?;
        let path = q.path.clone();
        tokio::task::spawn_blocking(move || root.check_out(&path).map(|_| root))
            .await
            .map_err(|e| ApiError::internal(format!("copy out: {e}")))?
            .map_err(ApiError::from)
    };
    let root = match checked.await {
        Ok(r) => r,
        Err(e) => return finish(&st, &caller, "copy_out", Some(name), args, Err(e)).await,
    };
    // The stream starts once the audit record is written; an error half-way (a file that
    // vanished, the client gone) ends the body early, and the client reports a cut archive.
    if let Err(e) = audit(
        &st,
        &caller,
        "copy_out",
        Some(name.clone()),
        args,
        Outcome::ok(200),
    )
    .await
    {
        return ApiError::from(e).into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let path = q.path.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = root.copy_out(&path, &mut w).and_then(|_| {
            w.flush().map_err(|e| FilesError::Io {
                path: path.clone(),
                source: e,
            })
        }) {
            tracing::info!(slice = %name, path = %path, error = %e, "copy out ended early");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `PUT /v1/slices/{name}/files?path=P[&uid=U&gid=G]` with a tar stream as the body.
pub async fn copy_in(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let q = match parse(&raw, true) {
        Ok(q) => q,
        Err(e) => {
            let args = json!({ "query": raw.unwrap_or_default() });
            return finish(&st, &caller, "copy_in", Some(name), args, Err(e)).await;
        }
    };
    let args = json!({ "path": q.path, "uid": q.uid, "gid": q.gid });
    let (feed, drained) = feed_then_drain(body);
    let result = async {
        let root = open_root(&st, &caller, &name).await?;
        let stream = futures_util::stream::unfold(feed, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        let reader = tokio_util::io::StreamReader::new(stream);
        // Built here (it needs the runtime's handle), read on the blocking thread.
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let (path, owner) = (q.path.clone(), (q.uid, q.gid));
        let stats = tokio::task::spawn_blocking(move || {
            root.copy_in(
                &path,
                std::io::BufReader::with_capacity(CHUNK, bridge),
                owner,
            )
        })
        .await
        .map_err(|e| ApiError::internal(format!("copy in: {e}")))??;
        json(
            StatusCode::OK,
            &CopyResult {
                entries: stats.entries,
                bytes: stats.bytes,
            },
        )
    }
    .await;
    // Answer only once the client has sent its whole archive (or DRAIN_LIMIT more of it).
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
    finish(&st, &caller, "copy_in", Some(name), args, result).await
}

/// How much of a refused copy-in's archive the daemon still reads (and throws away), and for
/// how long, before it answers anyway.
const DRAIN_LIMIT: u64 = 64 << 20;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The request body as a channel of chunks for the copy, read by a task of its own that,
/// once the copy stops reading (done, or refused before or half-way), reads on and discards
/// up to [`DRAIN_LIMIT`]. Why: when a server answers and closes while the client is still
/// writing the body, hyper's client reports "error writing a body to connection" and drops
/// the answer, so `vslice cp` would print a transport error instead of the reason (CI saw it
/// for a 409). The returned receiver completes when the body has ended or the limit is hit.
#[allow(clippy::type_complexity)]
fn feed_then_drain(
    body: Body,
) -> (
    tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut discarded = 0u64;
        let mut feeding = true;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            if feeding {
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() {
                    feeding = false; // the copy has stopped reading
                }
                if failed {
                    break;
                }
            } else if let Ok(bytes) = chunk {
                discarded += bytes.len() as u64;
                if discarded > DRAIN_LIMIT {
                    break;
                }
            } else {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    (rx, done_rx)
}
