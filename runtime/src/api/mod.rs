//! The daemon's HTTP/1.1 JSON API, versioned under `/v1`, served on Unix sockets.
//!
//! The route table [`ROUTES`] is the single list of what the API serves: the router is built
//! from it, the OpenAPI document ([`openapi::document`]) is checked against it by a test, and
//! the owners' socket serves only its non-operator entries.
//!
//! Who may call what ([`Access`]): `public` routes describe the API; `owner` routes accept
//! operators and the owners of the slice named in the path (lists and event streams are
//! filtered to the caller's slices); `operator` routes accept operators only. A caller that is
//! not allowed gets 403 — also for a slice that does not exist, so that non-operators cannot
//! probe for slice names.
mod accounting;
mod disk_metrics;
pub mod error;
mod exec;
mod files;
mod images;
mod logs;
pub mod metrics;
pub mod openapi;
pub mod server;
pub(crate) mod slices;
mod ssh;
pub use ssh::remove_orphans as ssh_remove_orphans;
mod snapshots;
mod streams;
pub mod types;
pub mod vsh;

use crate::daemon::{Caller, Daemon};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Extension, Json, Router};
use error::ApiError;
use std::sync::Arc;
use std::time::Instant;

/// API version prefix.
pub const API_VERSION: &str = "v1";

/// Shared by all handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub daemon: Arc<Daemon>,
    pub metrics: Arc<metrics::RequestMetrics>,
    /// Fires when the daemon shuts down (ends event streams).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who can connect.
    Public,
    /// Operators, and owners of the slice in the path (filtered results for collections).
    Owner,
    /// Operators only.
    Operator,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Owner => "owner",
            Access::Operator => "operator",
        }
    }
}

/// One API route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// Whether requests are recorded in the audit log.
    pub audited: bool,
}

const fn r(method: &'static str, path: &'static str, access: Access, audited: bool) -> Route {
    Route {
        method,
        path,
        access,
        audited,
    }
}

/// Every route the daemon serves.
pub const ROUTES: &[Route] = &[
    r("GET", "/v1/info", Access::Public, false),
    r("GET", "/v1/openapi.json", Access::Public, false),
    r("GET", "/v1/slices", Access::Owner, false),
    r("POST", "/v1/slices", Access::Operator, true),
    r("GET", "/v1/slices/{name}", Access::Owner, false),
    r("DELETE", "/v1/slices/{name}", Access::Operator, true),
    r("PATCH", "/v1/slices/{name}/limits", Access::Operator, true),
    r("POST", "/v1/slices/{name}/start", Access::Operator, true),
    r("POST", "/v1/slices/{name}/stop", Access::Operator, true),
    r("POST", "/v1/slices/{name}/restart", Access::Operator, true),
    r("POST", "/v1/slices/{name}/exec", Access::Owner, true),
    r("GET", "/v1/slices/{name}/exec/tty", Access::Owner, true),
    r("GET", "/v1/slices/{name}/stats", Access::Owner, false),
    r("GET", "/v1/slices/{name}/keys", Access::Owner, false),
    r("POST", "/v1/slices/{name}/keys", Access::Operator, true),
    r(
        "DELETE",
        "/v1/slices/{name}/keys/{fingerprint}",
        Access::Operator,
        true,
    ),
    r("GET", "/v1/slices/{name}/files", Access::Owner, true),
    r("PUT", "/v1/slices/{name}/files", Access::Owner, true),
    r("GET", "/v1/slices/{name}/logs", Access::Owner, false),
    r("GET", "/v1/events", Access::Owner, false),
    r("GET", "/v1/images", Access::Operator, false),
    r("POST", "/v1/images", Access::Operator, true),
    r("GET", "/v1/images/{name}", Access::Operator, false),
    r("DELETE", "/v1/images/{name}", Access::Operator, true),
    r(
        "GET",
        "/v1/slices/{name}/snapshots",
        Access::Operator,
        false,
    ),
    r(
        "POST",
        "/v1/slices/{name}/snapshots",
        Access::Operator,
        true,
    ),
    r("POST", "/v1/slices/{name}/restore", Access::Operator, true),
    r("POST", "/v1/slices/{name}/clone", Access::Operator, true),
    r("POST", "/v1/slices/{name}/export", Access::Operator, true),
    r("POST", "/v1/slices/{name}/import", Access::Operator, true),
    r("GET", "/v1/audit", Access::Operator, false),
    r("GET", "/v1/audit/verify", Access::Operator, false),
    r("GET", "/v1/audit/flows", Access::Operator, false),
    r("GET", "/v1/audit/execs", Access::Operator, false),
    r("GET", "/v1/who", Access::Operator, false),
    r("GET", "/metrics", Access::Operator, false),
];

fn handler(route: &Route) -> MethodRouter<AppState> {
    match (route.method, route.path) {
        ("GET", "/v1/info") => get(info),
        ("GET", "/v1/openapi.json") => get(openapi_doc),
        ("GET", "/v1/slices") => get(slices::list),
        ("POST", "/v1/slices") => post(slices::create),
        ("GET", "/v1/slices/{name}") => get(slices::inspect),
        ("DELETE", "/v1/slices/{name}") => delete(slices::destroy),
        ("PATCH", "/v1/slices/{name}/limits") => patch(slices::update_limits),
        ("POST", "/v1/slices/{name}/start") => post(slices::start),
        ("POST", "/v1/slices/{name}/stop") => post(slices::stop),
        ("POST", "/v1/slices/{name}/restart") => post(slices::restart),
        ("POST", "/v1/slices/{name}/exec") => post(exec::exec),
        ("GET", "/v1/slices/{name}/exec/tty") => get(exec::exec_tty),
        ("GET", "/v1/slices/{name}/stats") => get(slices::stats),
        ("GET", "/v1/slices/{name}/keys") => get(ssh::list),
        ("POST", "/v1/slices/{name}/keys") => post(ssh::add),
        ("DELETE", "/v1/slices/{name}/keys/{fingerprint}") => delete(ssh::remove),
        ("GET", "/v1/slices/{name}/files") => get(files::copy_out),
        ("PUT", "/v1/slices/{name}/files") => axum::routing::put(files::copy_in),
        ("GET", "/v1/slices/{name}/logs") => get(logs::logs),
        ("GET", "/v1/events") => get(streams::events),
        ("GET", "/v1/images") => get(slices::images),
        ("POST", "/v1/images") => post(images::import),
        ("GET", "/v1/images/{name}") => get(images::inspect),
        ("DELETE", "/v1/images/{name}") => delete(images::remove),
        ("GET", "/v1/slices/{name}/snapshots") => get(snapshots::list),
        ("POST", "/v1/slices/{name}/snapshots") => post(snapshots::create),
        ("POST", "/v1/slices/{name}/restore") => post(snapshots::restore),
        ("POST", "/v1/slices/{name}/clone") => post(snapshots::clone),
        ("POST", "/v1/slices/{name}/export") => post(snapshots::export),
        ("POST", "/v1/slices/{name}/import") => post(snapshots::import),
        ("GET", "/v1/audit") => get(streams::audit_show),
        ("GET", "/v1/audit/verify") => get(streams::audit_verify),
        ("GET", "/v1/audit/flows") => get(accounting::flows),
        ("GET", "/v1/audit/execs") => get(accounting::execs),
        ("GET", "/v1/who") => get(accounting::who),
        ("GET", "/metrics") => get(streams::metrics),
        (m, p) => panic!("route table entry {m} {p} has no handler"),
    }
}

/// Which socket a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// The operators' socket: every route.
    Admin,
    /// The owners' socket: public and owner routes; the rest answer 403.
    User,
}

/// The router for one socket. Requests must carry the caller as an `Extension<Caller>`
/// (inserted by [`server`] from SO_PEERCRED).
pub fn router(state: AppState, kind: SocketKind) -> Router {
    let mut app = Router::new();
    for route in ROUTES {
        if kind == SocketKind::User && route.access == Access::Operator {
            continue;
        }
        app = app.route(route.path, handler(route));
    }
    let app = match kind {
        SocketKind::Admin => app
            .fallback(no_route)
            .method_not_allowed_fallback(method_not_allowed),
        SocketKind::User => app
            .fallback(user_socket_fallback)
            .method_not_allowed_fallback(user_socket_fallback),
    };
    app.layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Only `GET /metrics`, without authentication, for a TCP listener the operator configured.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(streams::metrics_public))
        .fallback(no_route)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn no_route(req: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "no_route",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

async fn user_socket_fallback(req: Request) -> ApiError {
    let path = req.uri().path().to_string();
    let method = req.method().as_str();
    let operator_route = ROUTES
        .iter()
        .any(|r| r.access == Access::Operator && r.method == method && path_matches(r.path, &path));
    if operator_route {
        ApiError::forbidden(format!(
            "{} {path} is for operators: use the operators' socket (this is the slice owners' socket)",
            req.method()
        ))
    } else if ROUTES.iter().any(|r| path_matches(r.path, &path)) {
        method_not_allowed(req).await
    } else {
        no_route(req).await
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Whether a concrete path matches a route template (`{x}` matches one segment).
pub fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// Request metrics and a debug log line per request.
async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let uid = req.extensions().get::<Caller>().map(|c| c.uid);
    let t = Instant::now();
    let resp = next.run(req).await;
    let elapsed = t.elapsed();
    let status = resp.status().as_u16();
    st.metrics.record(
        &method,
        route.as_deref().unwrap_or("unmatched"),
        status,
        elapsed,
    );
    tracing::debug!(%method, %path, status, uid, ms = elapsed.as_secs_f64() * 1e3, "request");
    resp
}

async fn info(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<types::Info> {
    let d = &st.daemon;
    Json(types::Info {
        version: crate::daemon::VERSION.into(),
        api: API_VERSION.into(),
        pid: std::process::id(),
        started_at: d.started_unix,
        root: d.paths.root.display().to_string(),
        cgroup_parent: d.paths.cgroup_parent.clone(),
        cgroup_version: format!("{:?}", crate::cgroup::detect()).to_lowercase(),
        caller: types::CallerInfo {
            uid: caller.uid,
            gid: caller.gid,
            pid: caller.pid,
            user: caller.user.clone(),
            operator: caller.operator,
        },
    })
}

async fn openapi_doc() -> impl IntoResponse {
    Json(openapi::document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_handler_and_no_duplicates() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            let _ = handler(r);
            assert!(
                seen.insert((r.method, r.path)),
                "duplicate {} {}",
                r.method,
                r.path
            );
            assert!(
                r.path.starts_with("/v1/") || r.path == "/metrics",
                "{}",
                r.path
            );
        }
    }

    #[test]
    fn templates_match_paths() {
        assert!(path_matches("/v1/slices/{name}", "/v1/slices/web"));
        assert!(!path_matches("/v1/slices/{name}", "/v1/slices/"));
        assert!(!path_matches("/v1/slices/{name}", "/v1/slices/a/b"));
        assert!(path_matches("/v1/slices/{name}/stop", "/v1/slices/a/stop"));
    }
}
