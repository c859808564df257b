//! Accountability routes: `GET /v1/who` (which slice talked to a remote address around a
//! time, from the flow log) and `GET /v1/audit/flows|execs` (the records of a window). Both are
//! operator-only: flows of every slice are on record. The work is in [`crate::audit::flows`].
use super::error::ApiError;
use super::slices::{require_operator, Query};
use super::AppState;
use crate::daemon::Caller;
use crate::proto::accounting::{KindQuery, WhoAnswer, WhoParams};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

/// `GET /v1/who?remote=ADDR[:PORT]&at=TIME[&window=10m][&proto=tcp|udp]`.
pub async fn who(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WhoAnswer>, ApiError> {
    require_operator(&caller, "query the flow log")?;
    let q = Query::parse(&raw, &["remote", "at", "window", "proto"])?;
    let params = WhoParams {
        remote: q.get("remote").unwrap_or("").to_string(),
        proto: q.get("proto").map(str::to_string),
        at: q.get("at").unwrap_or("").to_string(),
        window: q.get("window").map(str::to_string),
    };
    if params.remote.is_empty() {
        return Err(ApiError::invalid("remote", "required: ADDR or ADDR:PORT"));
    }
    let dir = st.daemon.audit_dir().to_path_buf();
    let slack = st.daemon.config.flow_dump_interval as i64 * 1000;
    let answer =
        tokio::task::spawn_blocking(move || crate::audit::flows::who_params(&dir, &params, slack))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::invalid(e.field, e.reason))??;
    Ok(Json(answer))
}

/// `GET /v1/audit/flows?slice=&since=&until=&limit=`: stored flow records, one per line.
pub async fn flows(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    require_operator(&caller, "read the flow log")?;
    kind_records(st, raw, "flows").await
}

/// `GET /v1/audit/execs?slice=&since=&until=&limit=`: stored exec records, one per line.
pub async fn execs(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    require_operator(&caller, "read the exec log")?;
    kind_records(st, raw, "execs").await
}

async fn kind_records(
    st: AppState,
    raw: Option<String>,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let q = Query::parse(&raw, &["slice", "since", "until", "limit"])?;
    let kq = KindQuery {
        slice: q.get("slice").map(str::to_string),
        since: q.get("since").map(str::to_string),
        until: q.get("until").map(str::to_string),
        limit: q.parsed("limit", "a number of records")?,
    };
    let dir = st.daemon.audit_dir().to_path_buf();
    let recs =
        tokio::task::spawn_blocking(move || crate::audit::flows::kind_params(&dir, kind, &kq))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::invalid(e.field, e.reason))??;
    let mut body = String::new();
    for r in recs {
        body.push_str(&crate::audit::canonical_json(&r));
        body.push('\n');
    }
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from(body),
    )
        .into_response())
}
