//! Slice handlers: list, create, inspect, limits, start, stop, restart, destroy, stats,
//! images — and the helpers every handler uses (authorization, audit, query strings).
use super::error::{parse_body, ApiError};
use super::types::Stats;
use super::AppState;
use crate::audit::{ControlRecord, Entry, Outcome};
use crate::daemon::Caller;
use crate::slice::{CreateRequest, LimitsPatch, SliceError, SliceInfo};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use std::time::Duration;

/// A handler's result before auditing: status and optional JSON body (serialized).
pub(super) type Reply = Result<(StatusCode, Option<Bytes>), ApiError>;

pub(super) fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Reply {
    serde_json::to_vec(v)
        .map(|v| (status, Some(Bytes::from(v))))
        .map_err(|e| ApiError::internal(format!("serialize reply: {e}")))
}

pub(super) fn require_operator(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.operator {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} may not {what}: operators only (root or the admin group)",
            caller.describe()
        )))
    }
}

/// Inspect `name` for a caller who must be an operator or one of its owners. Non-operators
/// get 403 for slices that do not exist, like for slices that are not theirs.
pub(super) async fn authorize_slice(
    st: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<SliceInfo, ApiError> {
    let n = name.to_string();
    let res = st.daemon.blocking(move |m| m.inspect(&n)).await;
    let denied = || {
        ApiError::forbidden(format!(
            "{} may not use slice {name:?}: not an owner",
            caller.describe()
        ))
    };
    match res {
        Ok(info) if caller.may_use_slice(&info.spec.owners) => Ok(info),
        Ok(_) => Err(denied()),
        Err(e) if caller.operator => Err(e.into()),
        Err(SliceError::NotFound(_)) => Err(denied()),
        Err(e) => Err(e.into()),
    }
}

/// Write the audit record for a request, then build the reply. The record is fsynced before
/// the reply is sent; if it cannot be written the caller gets 500 `audit_failed`.
pub(super) async fn finish(
    st: &AppState,
    caller: &Caller,
    action: &str,
    slice: Option<String>,
    args: Value,
    result: Reply,
) -> Response {
    let outcome = match &result {
        Ok((status, _)) => Outcome::ok(status.as_u16()),
        Err(e) => e.outcome(),
    };
    if let Err(e) = audit(st, caller, action, slice.clone(), args, outcome).await {
        let mut err = ApiError::from(e);
        if result.is_ok() {
            err.message = format!(
                "{action} done, but it could not be recorded: {}",
                err.message
            );
        }
        return err.into_response();
    }
    match &result {
        Ok(_) => {
            tracing::info!(action, slice = slice.as_deref(), caller = %caller.describe(), "ok")
        }
        Err(e) => {
            tracing::info!(action, slice = slice.as_deref(), caller = %caller.describe(), error = %e, "refused")
        }
    }
    match result {
        Ok((status, Some(body))) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Ok((status, None)) => status.into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn audit(
    st: &AppState,
    caller: &Caller,
    action: &str,
    slice: Option<String>,
    args: Value,
    result: Outcome,
) -> Result<crate::audit::Record, crate::audit::AuditError> {
    let r = st
        .daemon
        .audit(Entry::Control(ControlRecord {
            caller: caller.audit(),
            action: action.into(),
            slice,
            args,
            result,
        }))
        .await;
    if let Err(e) = &r {
        tracing::error!(error = %e, action, "cannot write the audit log");
    }
    r
}

/// The request body for the audit log: the JSON, or (if it is not JSON) the first 4 KiB.
pub(super) fn body_args(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Object(Default::default());
    }
    serde_json::from_slice(body).unwrap_or_else(|_| {
        let cut = &body[..body.len().min(4096)];
        serde_json::json!({ "unparsed_body": String::from_utf8_lossy(cut) })
    })
}

/// Decoded `key=value` pairs of a query string (repeated keys kept in order), decoded as
/// `application/x-www-form-urlencoded` (`+` is a space; bad escapes are kept as they are).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Query parameters with typed accessors that answer 400 naming the parameter.
pub(super) struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &Option<String>, allowed: &[&str]) -> Result<Query, ApiError> {
        let pairs = query_pairs(raw.as_deref());
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::invalid(
                    k,
                    format!(
                        "unknown query parameter {k:?} (known: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(Query(pairs))
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn parsed<T: std::str::FromStr>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(key, format!("{key}={v:?}: expected {what}"))),
        }
    }
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("" | "1" | "true" | "yes") => Ok(Some(true)),
            Some("0" | "false" | "no") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(
                key,
                format!("{key}={v:?}: expected true or false"),
            )),
        }
    }
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }
}

pub async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<SliceInfo>>, ApiError> {
    let mut all = st.daemon.blocking(|m| m.list()).await?;
    if !caller.operator {
        all.retain(|s| caller.is_owner(&s.spec.owners));
    }
    Ok(Json(all))
}

pub async fn inspect(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<SliceInfo>, ApiError> {
    let info = authorize_slice(&st, &caller, &name).await?;
    st.daemon.events.observe(&info);
    Ok(Json(info))
}

pub async fn stats(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Stats>, ApiError> {
    let info = authorize_slice(&st, &caller, &name).await?;
    st.daemon.events.observe(&info);
    Ok(Json(Stats {
        slice: info.spec.name,
        time: crate::audit::time::now_rfc3339(),
        status: info.status,
        init_pid: info.init_pid,
        started_at: info.started_at,
        limits: info.spec.limits,
        usage: info.usage,
        disk: info.disk,
    }))
}

pub async fn create(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let args = body_args(&body);
    let slice = args.get("name").and_then(Value::as_str).map(str::to_string);
    let mut guard = None;
    let result = async {
        require_operator(&caller, "create slices")?;
        let req: CreateRequest = parse_body(&body)?;
        crate::slice::manager::validate_name(&req.name)?;
        guard = Some(st.daemon.locks.lock(&req.name).await);
        let info = st.daemon.blocking(move |m| m.create(&req)).await?;
        st.daemon.events.observe(&info);
        json(StatusCode::CREATED, &info)
    }
    .await;
    let resp = finish(&st, &caller, "create", slice, args, result).await;
    drop(guard);
    resp
}

pub async fn destroy(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let mut guard = None;
    let result = async {
        require_operator(&caller, "destroy slices")?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let n = name.clone();
        let ssh = super::ssh::has_access(&st, &name);
        st.daemon.events.destroying(&name);
        if let Err(e) = st.daemon.blocking(move |m| m.destroy(&n)).await {
            st.daemon.events.destroy_failed(&name);
            return Err(e.into());
        }
        st.daemon.events.forget(&name);
        if ssh {
            super::ssh::slice_destroyed(&st, &name).await;
        }
        Ok((StatusCode::NO_CONTENT, None))
    }
    .await;
    let resp = finish(
        &st,
        &caller,
        "destroy",
        Some(name),
        Value::Object(Default::default()),
        result,
    )
    .await;
    drop(guard);
    resp
}

pub async fn update_limits(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let args = body_args(&body);
    let mut guard = None;
    let result = async {
        require_operator(&caller, "change limits")?;
        let patch: LimitsPatch = parse_body(&body)?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let n = name.clone();
        let info = st
            .daemon
            .blocking(move |m| m.update_limits(&n, &patch))
            .await?;
        st.daemon.events.observe(&info);
        json(StatusCode::OK, &info)
    }
    .await;
    let resp = finish(&st, &caller, "update_limits", Some(name), args, result).await;
    drop(guard);
    resp
}

pub async fn start(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let mut guard = None;
    let result = async {
        require_operator(&caller, "start slices")?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let n = name.clone();
        let info = st.daemon.blocking(move |m| m.start(&n)).await;
        // A failed start may still have changed state (exit.json "start-failed").
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                st.daemon.observe(&name).await;
                return Err(e.into());
            }
        };
        st.daemon.events.observe(&info);
        json(StatusCode::OK, &info)
    }
    .await;
    let resp = finish(
        &st,
        &caller,
        "start",
        Some(name),
        Value::Object(Default::default()),
        result,
    )
    .await;
    drop(guard);
    resp
}

fn stop_timeout(st: &AppState, q: &Query) -> Result<Duration, ApiError> {
    let secs = q
        .parsed::<f64>("timeout", "seconds")?
        .unwrap_or(st.daemon.config.stop_timeout as f64);
    if !(0.0..=3600.0).contains(&secs) {
        return Err(ApiError::invalid(
            "timeout",
            "must be between 0 and 3600 seconds",
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn stop(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut guard = None;
    let q = Query::parse(&raw, &["timeout"]);
    let args = q.as_ref().map(Query::to_json).unwrap_or_default();
    let result = async {
        require_operator(&caller, "stop slices")?;
        let timeout = stop_timeout(&st, &q?)?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let n = name.clone();
        let info = st.daemon.blocking(move |m| m.stop(&n, timeout)).await?;
        st.daemon.events.observe(&info);
        json(StatusCode::OK, &info)
    }
    .await;
    let resp = finish(&st, &caller, "stop", Some(name), args, result).await;
    drop(guard);
    resp
}

pub async fn restart(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut guard = None;
    let q = Query::parse(&raw, &["timeout"]);
    let args = q.as_ref().map(Query::to_json).unwrap_or_default();
    let result = async {
        require_operator(&caller, "restart slices")?;
        let timeout = stop_timeout(&st, &q?)?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let n = name.clone();
        let stopped = st.daemon.blocking(move |m| m.stop(&n, timeout)).await?;
        st.daemon.events.observe(&stopped);
        let n = name.clone();
        let info = st.daemon.blocking(move |m| m.start(&n)).await?;
        st.daemon.events.observe(&info);
        json(StatusCode::OK, &info)
    }
    .await;
    let resp = finish(&st, &caller, "restart", Some(name), args, result).await;
    drop(guard);
    resp
}

pub async fn images(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<crate::image::Image>>, ApiError> {
    require_operator(&caller, "list images")?;
    let q = Query::parse(&raw, &["size"])?;
    let with_size = q.flag("size")?.unwrap_or(false);
    let dir = st.daemon.paths.images_dir();
    let images = tokio::task::spawn_blocking(
        move || -> Result<Vec<crate::image::Image>, crate::image::ImageError> {
            let list = crate::image::list(&dir)?;
            if with_size {
                list.into_iter().map(|i| i.with_size()).collect()
            } else {
                Ok(list)
            }
        },
    )
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(images))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let q = query_pairs(Some("cmd=%2Fbin%2Fsh&cmd=-c&cmd=echo+hi%21&x=&y"));
        assert_eq!(
            q,
            [
                ("cmd", "/bin/sh"),
                ("cmd", "-c"),
                ("cmd", "echo hi!"),
                ("x", ""),
                ("y", "")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let one = |s: &str| query_pairs(Some(&format!("k={s}"))).remove(0).1;
        assert_eq!(one("100%"), "100%");
        assert_eq!(one("%zz%4"), "%zz%4");
        assert_eq!(one("%e2%9c%93"), "✓");
        let q = Query::parse(&Some("timeout=2.5".into()), &["timeout"]).unwrap();
        assert_eq!(q.parsed::<f64>("timeout", "seconds").unwrap(), Some(2.5));
        let e = Query::parse(&Some("tiemout=1".into()), &["timeout"])
            .err()
            .unwrap();
        assert_eq!(e.field.as_deref(), Some("tiemout"));
        let q = Query::parse(&Some("timeout=soon".into()), &["timeout"]).unwrap();
        assert_eq!(
            q.parsed::<f64>("timeout", "seconds")
                .unwrap_err()
                .field
                .as_deref(),
            Some("timeout")
        );
    }
}
