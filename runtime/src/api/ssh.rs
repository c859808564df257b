//! SSH keys of a slice: `GET|POST /v1/slices/{name}/keys`, `DELETE
//! /v1/slices/{name}/keys/{fingerprint}`. Adding the first key gives the slice SSH access:
//! its host account is made then (ssh/account.rs); the account goes with the slice. Keys take
//! effect at once: sshd asks the daemon for them at every login (api/vsh.rs).
use super::error::{parse_body, ApiError};
use super::slices::{authorize_slice, body_args, finish, json, require_operator};
use super::AppState;
use crate::daemon::Caller;
use crate::proto::ssh::KeyAdd;
use crate::ssh::{account, keys, SshError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

impl From<SshError> for ApiError {
    fn from(e: SshError) -> ApiError {
        let message = e.to_string();
        match e {
            SshError::Invalid { field, .. } => ApiError::invalid(&field, message),
            SshError::Duplicate(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message)
            }
            SshError::NoSuchKey(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            SshError::Account { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            SshError::Io(_) => ApiError::internal(message),
        }
    }
}

/// `GET /v1/slices/{name}/keys`.
pub async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize_slice(&st, &caller, &name).await?;
    let dir = st.daemon.paths.slice_dir(&name);
    let ks = tokio::task::spawn_blocking(move || keys::load(&dir))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(ks).into_response())
}

/// `POST /v1/slices/{name}/keys`.
pub async fn add(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let mut args = body_args(&body);
    let mut guard = None;
    let mut fp = None;
    let result = async {
        require_operator(&caller, "manage SSH keys")?;
        let req: KeyAdd = parse_body(&body)?;
        if st.daemon.config.ssh_socket().is_none() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "SSH access is off on this node (the daemon's ssh_socket is empty)",
            ));
        }
        let key = keys::parse(&req.key, "key")?;
        fp = Some(key.fingerprint.clone());
        guard = Some(st.daemon.locks.lock(&name).await);
        authorize_slice(&st, &caller, &name).await?;
        let dir = st.daemon.paths.slice_dir(&name);
        let settings = st.daemon.config.ssh_accounts();
        let n = name.clone();
        let added = tokio::task::spawn_blocking(move || -> Result<_, SshError> {
            // The account first: a key stored for a slice without an account would be a
            // slice that looks reachable and is not.
            account::ensure(&n, &settings)?;
            keys::add(&dir, key)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
        json(StatusCode::CREATED, &added)
    }
    .await;
    if let Some(f) = fp {
        args["fingerprint"] = json!(f);
    }
    let resp = finish(&st, &caller, "ssh_key_add", Some(name), args, result).await;
    drop(guard);
    resp
}

/// `DELETE /v1/slices/{name}/keys/{fingerprint}`.
pub async fn remove(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, fingerprint)): Path<(String, String)>,
) -> Response {
    let mut guard = None;
    let result = async {
        require_operator(&caller, "manage SSH keys")?;
        guard = Some(st.daemon.locks.lock(&name).await);
        authorize_slice(&st, &caller, &name).await?;
        let dir = st.daemon.paths.slice_dir(&name);
        let f = fingerprint.clone();
        tokio::task::spawn_blocking(move || keys::remove(&dir, &f))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
        Ok((StatusCode::NO_CONTENT, None))
    }
    .await;
    let args = json!({ "fingerprint": fingerprint });
    let resp = finish(&st, &caller, "ssh_key_remove", Some(name), args, result).await;
    drop(guard);
    resp
}

/// Whether the slice has SSH access on this daemon (checked before it is destroyed: the key
/// store goes with the slice directory). Never true with SSH access off, so that a daemon
/// without it (a test daemon, a second state root) never touches host accounts.
pub fn has_access(st: &AppState, name: &str) -> bool {
    st.daemon.config.ssh_socket().is_some() && keys::enabled(&st.daemon.paths.slice_dir(name))
}

/// After a slice is destroyed: remove its host account (if it had SSH access). Failures are
/// logged and recorded; the daemon retries at its next start ([`remove_orphans`]).
pub async fn slice_destroyed(st: &AppState, name: &str) {
    let settings = st.daemon.config.ssh_accounts();
    let n = name.to_string();
    let r = tokio::task::spawn_blocking(move || account::remove(&n, &settings)).await;
    match r {
        Ok(Ok(true)) => st
            .daemon
            .audit_daemon("ssh_account_removed", Some(name), None),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::error!(slice = name, error = %e, "removing the slice's host account");
            st.daemon.audit_daemon(
                "ssh_account_removed",
                Some(name),
                Some(format!("failed: {e}")),
            );
        }
        Err(e) => tracing::error!(slice = name, error = %e, "removing the slice's host account"),
    }
}

/// At start-up: remove the host accounts of slices that no longer have SSH access. Blocking.
pub fn remove_orphans(d: &crate::daemon::Daemon) {
    let settings = d.config.ssh_accounts();
    for name in account::orphans(&d.paths.slices_dir(), &settings) {
        match account::remove(&name, &settings) {
            Ok(_) => d.audit_daemon("ssh_account_removed", Some(&name), Some("orphan".into())),
            Err(e) => {
                tracing::error!(account = %name, error = %e, "removing an orphan slice account")
            }
        }
    }
}
