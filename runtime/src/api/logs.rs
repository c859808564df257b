//! `GET /v1/slices/{name}/logs`: the slice's console log (slice/console.rs), the last lines or
//! all of it, optionally followed. Read-only, so not audited (like stats). The follow loop
//! looks at the file every 250 ms (a slice's console is a log, not a terminal) and ends when
//! the client goes away, the slice is destroyed or the daemon shuts down.
use super::error::ApiError;
use super::slices::{authorize_slice, Query};
use super::AppState;
use crate::daemon::Caller;
use crate::slice::console::{self, Cursor, MAX_TAIL_LINES};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(250);
const CHUNK: usize = 256 * 1024;

pub async fn logs(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(&raw, &["tail", "follow"])?;
    let tail = q.parsed::<usize>("tail", "a number of lines")?;
    if tail.is_some_and(|n| n > MAX_TAIL_LINES) {
        return Err(ApiError::invalid(
            "tail",
            format!("at most {MAX_TAIL_LINES} lines"),
        ));
    }
    let follow = q.flag("follow")?.unwrap_or(false);
    authorize_slice(&st, &caller, &name).await?;
    let dir = st.daemon.paths.slice_dir(&name);
    let d = dir.clone();
    let (data, cursor) = tokio::task::spawn_blocking(move || console::tail(&d, tail))
        .await
        .map_err(|e| ApiError::internal(format!("reading the console log: {e}")))?
        .map_err(|e| ApiError::internal(format!("reading the console log: {e}")))?;
    let headers = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    )];
    if !follow {
        return Ok((StatusCode::OK, headers, data).into_response());
    }
    struct Follow {
        dir: std::path::PathBuf,
        cursor: Cursor,
        first: Option<Vec<u8>>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    }
    let state = Follow {
        dir,
        cursor,
        first: Some(data),
        shutdown: st.shutdown.clone(),
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if let Some(first) = s.first.take() {
            return Some((Ok::<Bytes, std::io::Error>(Bytes::from(first)), s));
        }
        loop {
            if *s.shutdown.borrow() || !s.dir.is_dir() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = s.shutdown.changed() => return None,
            }
            let (dir, cursor) = (s.dir.clone(), s.cursor);
            let r = tokio::task::spawn_blocking(move || console::follow(&dir, cursor, CHUNK)).await;
            match r {
                Ok(Ok((data, cursor))) => {
                    s.cursor = cursor;
                    if !data.is_empty() {
                        return Some((Ok(Bytes::from(data)), s));
                    }
                }
                _ => return None,
            }
        }
    });
    Ok((StatusCode::OK, headers, Body::from_stream(stream)).into_response())
}
