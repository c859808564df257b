//! Snapshot handlers: snapshot, list, restore, clone, export, import (see
//! [`crate::snapshot`]). Operators only; all but the list are audited. Each holds the per-slice
//! lock of the slices it touches, so a start cannot race the copy.
use super::error::{parse_body, ApiError};
use super::slices::{body_args, finish, json, require_operator};
use super::AppState;
use crate::daemon::Caller;
use crate::proto::snapshot::{
    CloneRequest, ExportRequest, RestoreRequest, SliceImportRequest, SnapshotInfo, SnapshotRequest,
};
use crate::snapshot::{self, SnapshotError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};

impl From<SnapshotError> for ApiError {
    fn from(e: SnapshotError) -> ApiError {
        if let SnapshotError::Slice(s) = e {
            return s.into();
        }
        let (status, code) = e.status_code();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let field = match &e {
            SnapshotError::InvalidName { .. } => Some("name"),
            SnapshotError::Archive { .. } | SnapshotError::Restore(_) => Some("path"),
            _ => None,
        };
        let err = ApiError::new(status, code, e.to_string());
        match field {
            Some(f) => err.with_field(f),
            None => err,
        }
    }
}

fn absolute(path: &str) -> Result<std::path::PathBuf, ApiError> {
    if !path.starts_with('/') {
        return Err(ApiError::invalid(
            "path",
            "path: an absolute path on the node is required",
        ));
    }
    Ok(std::path::PathBuf::from(path))
}

pub async fn create(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let args = body_args(&body);
    let mut guard = None;
    let result = async {
        require_operator(&caller, "snapshot slices")?;
        let req: SnapshotRequest = parse_body(&body)?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let (n, paths) = (name.clone(), st.daemon.paths.clone());
        let info = st
            .daemon
            .blocking(move |m| snapshot::snapshot(m, &paths, &n, req.name.as_deref()))
            .await?;
        json(StatusCode::CREATED, &info)
    }
    .await;
    let resp = finish(&st, &caller, "snapshot", Some(name), args, result).await;
    drop(guard);
    resp
}

pub async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Vec<SnapshotInfo>>, ApiError> {
    require_operator(&caller, "list snapshots")?;
    let paths = st.daemon.paths.clone();
    let l = st
        .daemon
        .blocking(move |m| snapshot::list(m, &paths, &name))
        .await?;
    Ok(Json(l))
}

pub async fn restore(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let args = body_args(&body);
    let mut guard = None;
    let result = async {
        require_operator(&caller, "restore slices")?;
        let req: RestoreRequest = parse_body(&body)?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let (n, paths) = (name.clone(), st.daemon.paths.clone());
        st.daemon
            .blocking(move |m| {
                snapshot::restore(m, &paths, &n, &req.snapshot)?;
                Ok::<_, SnapshotError>(m.inspect(&n)?)
            })
            .await
            .map_err(ApiError::from)
            .and_then(|info| json(StatusCode::OK, &info))
    }
    .await;
    let resp = finish(&st, &caller, "restore", Some(name), args, result).await;
    drop(guard);
    resp
}

pub async fn clone(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let args = body_args(&body);
    let mut guards = Vec::new();
    let result = async {
        require_operator(&caller, "clone slices")?;
        let req: CloneRequest = parse_body(&body)?;
        crate::slice::manager::validate_name(&req.name)?;
        // In name order, so two clones the other way round cannot deadlock.
        let mut names = [name.clone(), req.name.clone()];
        names.sort();
        for n in &names {
            guards.push(st.daemon.locks.lock(n).await);
        }
        let (src, paths) = (name.clone(), st.daemon.paths.clone());
        let info = st
            .daemon
            .blocking(move |m| snapshot::clone(m, &paths, &src, &req.name))
            .await?;
        st.daemon.events.observe(&info);
        json(StatusCode::CREATED, &info)
    }
    .await;
    let resp = finish(&st, &caller, "clone", Some(name), args, result).await;
    drop(guards);
    resp
}

pub async fn export(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let args = body_args(&body);
    let mut guard = None;
    let result = async {
        require_operator(&caller, "export slices")?;
        let req: ExportRequest = parse_body(&body)?;
        let file = absolute(&req.path)?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let (n, paths) = (name.clone(), st.daemon.paths.clone());
        let res = st
            .daemon
            .blocking(move |m| snapshot::export(m, &paths, &n, &file))
            .await?;
        json(StatusCode::OK, &res)
    }
    .await;
    let resp = finish(&st, &caller, "export", Some(name), args, result).await;
    drop(guard);
    resp
}

pub async fn import(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let args = body_args(&body);
    let mut guard = None;
    let result = async {
        require_operator(&caller, "import slices")?;
        let req: SliceImportRequest = parse_body(&body)?;
        let file = absolute(&req.path)?;
        crate::slice::manager::validate_name(&name)?;
        guard = Some(st.daemon.locks.lock(&name).await);
        let (n, paths) = (name.clone(), st.daemon.paths.clone());
        let info = st
            .daemon
            .blocking(move |m| snapshot::import(m, &paths, &file, Some(&n)))
            .await?;
        st.daemon.events.observe(&info);
        json(StatusCode::CREATED, &info)
    }
    .await;
    let resp = finish(&st, &caller, "slice_import", Some(name), args, result).await;
    drop(guard);
    resp
}
