//! Streams and reports: the event feed, the audit log, Prometheus metrics.
use super::error::ApiError;
use super::slices::{authorize_slice, require_operator, Query};
use super::AppState;
use crate::daemon::events::{Event, EventKind, Published};
use crate::daemon::Caller;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

pub const NDJSON: &str = "application/x-ndjson";
/// An empty line is sent this often on an idle followed stream, so that a client that went
/// away is noticed (clients skip empty lines).
const HEARTBEAT: Duration = Duration::from_secs(15);

fn ndjson(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, NDJSON),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn line(e: &Event) -> Bytes {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

struct Filter {
    caller: Caller,
    slice: Option<String>,
    types: Option<Vec<String>>,
}

impl Filter {
    fn visible(&self, p: &Published) -> bool {
        if matches!(p.event.kind, EventKind::Lagged { .. }) {
            return true;
        }
        if self.slice.as_ref().is_some_and(|s| *s != p.event.slice) {
            return false;
        }
        if self
            .types
            .as_ref()
            .is_some_and(|t| !t.iter().any(|t| t == p.event.kind.name()))
        {
            return false;
        }
        self.caller.operator || self.caller.is_owner(&p.owners)
    }
}

struct Feed {
    backlog: VecDeque<Arc<Published>>,
    rx: tokio::sync::broadcast::Receiver<Arc<Published>>,
    filter: Filter,
    shutdown: tokio::sync::watch::Receiver<bool>,
    lagged_seq: u64,
}

/// `GET /v1/events?slice=&since=&follow=&type=`.
pub async fn events(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(&raw, &["slice", "since", "follow", "type"])?;
    let slice = q.get("slice").map(str::to_string);
    let since = q.parsed::<u64>("since", "an event seq")?;
    let follow = q.flag("follow")?.unwrap_or(true);
    let types = q
        .get("type")
        .map(|t| t.split(',').map(str::to_string).collect::<Vec<_>>());
    if let Some(s) = &slice {
        if !caller.operator {
            authorize_slice(&st, &caller, s).await?;
        }
    }
    let sub = st
        .daemon
        .events
        .subscribe(Some(since.unwrap_or(if follow { u64::MAX } else { 0 })));
    let filter = Filter {
        caller,
        slice,
        types,
    };
    let backlog: VecDeque<Arc<Published>> = sub
        .backlog
        .into_iter()
        .filter(|p| filter.visible(p))
        .collect();
    if !follow {
        let body: Vec<u8> = backlog
            .iter()
            .flat_map(|p| line(&p.event).to_vec())
            .collect();
        return Ok(ndjson(Body::from(body)));
    }
    let feed = Feed {
        backlog,
        rx: sub.rx,
        filter,
        shutdown: st.shutdown.clone(),
        lagged_seq: 0,
    };
    let stream = futures_util::stream::unfold(feed, |mut f| async move {
        if let Some(p) = f.backlog.pop_front() {
            return Some((Ok::<_, std::convert::Infallible>(line(&p.event)), f));
        }
        loop {
            tokio::select! {
                r = f.rx.recv() => match r {
                    Ok(p) if f.filter.visible(&p) => return Some((Ok(line(&p.event)), f)),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        f.lagged_seq += 1;
                        let e = Event {
                            seq: 0,
                            time: crate::audit::time::now_rfc3339(),
                            slice: String::new(),
                            kind: EventKind::Lagged { missed },
                        };
                        return Some((Ok(line(&e)), f));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(HEARTBEAT) => return Some((Ok(Bytes::from_static(b"\n")), f)),
                _ = f.shutdown.changed() => return None,
            }
        }
    });
    Ok(ndjson(Body::from_stream(stream)))
}

/// `GET /v1/audit?slice=&action=&kind=&since=&until=&after_seq=&limit=&tail=`: stored
/// records, one per line, exactly as in the log (so a client can re-check the hashes).
pub async fn audit_show(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    require_operator(&caller, "read the audit log")?;
    let q = Query::parse(
        &raw,
        &[
            "slice",
            "action",
            "kind",
            "since",
            "until",
            "after_seq",
            "limit",
            "tail",
        ],
    )?;
    let time = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .map(|v| crate::audit::time::parse(v).map_err(|e| ApiError::invalid(k, e)))
            .transpose()
    };
    let filter = crate::audit::Filter {
        slice: q.get("slice").map(str::to_string),
        action: q.get("action").map(str::to_string),
        kind: q.get("kind").map(str::to_string),
        since_ms: time("since")?,
        until_ms: time("until")?,
        after_seq: q.parsed("after_seq", "a record seq")?,
        limit: q.parsed("limit", "a number of records")?,
        tail: q.flag("tail")?.unwrap_or(false),
    };
    let dir = st.daemon.audit_dir().to_path_buf();
    let lines = tokio::task::spawn_blocking(move || crate::audit::query(&dir, &filter))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let mut body = lines.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    Ok(ndjson(Body::from(body)))
}

/// `GET /v1/audit/verify`: check the chain up to the last record written.
pub async fn audit_verify(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<crate::audit::VerifyReport>, ApiError> {
    require_operator(&caller, "verify the audit log")?;
    let head = st.daemon.audit_head();
    let dir = st.daemon.audit_dir().to_path_buf();
    let report = tokio::task::spawn_blocking(move || crate::audit::verify(&dir, Some(head)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(report))
}

async fn render_metrics(st: &AppState) -> Result<Response, ApiError> {
    let slices = st.daemon.blocking(|m| m.list()).await?;
    let mut out = String::with_capacity(4096 + slices.len() * 512);
    super::metrics::render_slices(&mut out, &slices);
    super::disk_metrics::render_disk(&mut out, &slices);
    super::metrics::render_daemon(
        &mut out,
        st.daemon.started_unix,
        crate::daemon::rss_bytes(),
        st.daemon.events.followers(),
        st.daemon.locks.len(),
    );
    crate::audit::flows::render_metrics(&mut out);
    crate::audit::execs::render_metrics(&mut out);
    st.metrics.render(&mut out);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// `GET /metrics` on the API sockets (operators).
pub async fn metrics(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require_operator(&caller, "read metrics")?;
    render_metrics(&st).await
}

/// `GET /metrics` on the optional TCP listener (no caller identity there).
pub async fn metrics_public(State(st): State<AppState>) -> Result<Response, ApiError> {
    render_metrics(&st).await
}
