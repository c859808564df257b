//! Serving a router on a Unix socket: one hyper HTTP/1.1 connection per client (with
//! upgrades, for the tty WebSocket), the caller identified once per connection from
//! SO_PEERCRED and attached to every request as an `Extension<Caller>`.
//!
//! Two guards sit in front of every router:
//! * a per-route cap on the request body ([`body_limit`]): a body over it is refused with 413
//!   `payload_too_large` naming the limit, before it is read when it declares its length,
//!   else as soon as it passes the limit. Bodies are buffered here, so no handler ever holds
//!   more than its route's cap (unbounded bodies grew the daemon's RSS for good);
//! * a panic in a handler becomes a 500 `internal` reply (tower-http's `CatchPanicLayer`) and
//!   the daemon keeps serving; the panic is logged.
use super::error::ApiError;
use crate::daemon::{Daemon, Peer};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;

/// Body cap of `POST /v1/slices` and `PATCH …/limits`: a create is a few KB.
pub const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// Body cap of `POST …/exec`: argv, env and stdin (base64) of one command. Larger than a
/// create, bounded so that a few concurrent execs cannot grow the daemon by much.
pub const EXEC_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Body cap of every other route (they take no body).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024;
/// The route that panics on purpose, served only with `test_panic_route = true`.
pub const TEST_PANIC_PATH: &str = "/v1/debug/panic";

/// The largest request body `method path` accepts.
pub fn body_limit(method: &Method, path: &str) -> usize {
    let is = |m: &Method, template: &str| method == m && super::path_matches(template, path);
    if super::files::unbuffered(method, path) {
        // Streamed to the handler, never buffered (a copy-in: the slice's disk is the cap).
        usize::MAX
    } else if is(&Method::POST, "/v1/slices/{name}/exec") {
        EXEC_BODY_LIMIT
    } else if is(&Method::POST, "/v1/slices")
        || is(&Method::PATCH, "/v1/slices/{name}/limits")
        || is(&Method::POST, "/v1/slices/{name}/keys")
    {
        SMALL_BODY_LIMIT
    } else {
        DEFAULT_BODY_LIMIT
    }
}

fn too_large(method: &Method, path: &str, limit: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body of {method} {path} is limited to {limit} bytes"),
    )
    .into_response()
}

/// Refuse or buffer the body of `req` within its route's cap.
async fn cap_body(req: hyper::Request<Incoming>) -> Result<axum::extract::Request, Response> {
    let limit = body_limit(req.method(), req.uri().path());
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(req.method(), req.uri().path(), limit));
    }
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET
        || parts.method == Method::HEAD
        || super::files::unbuffered(&parts.method, parts.uri.path())
    {
        // No GET handler reads a body; a WebSocket upgrade must keep its connection as is.
        return Ok(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::new(body),
        ));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(c.to_bytes()),
        )),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(too_large(&parts.method, parts.uri.path(), limit))
        }
        Err(e) => {
            Err(ApiError::bad_request(format!("reading the request body: {e}")).into_response())
        }
    }
}

/// The 500 reply to a request whose handler panicked.
fn panic_reply(err: Box<dyn Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    tracing::error!(
        panic = what,
        "a request handler panicked; the daemon keeps serving"
    );
    ApiError::internal(
        "internal error: the request's handler failed unexpectedly (see the daemon's log); \
         nothing else is affected",
    )
    .into_response()
}

/// Wrap a router with the panic guard (applied to every router the daemon serves).
pub fn guarded(app: Router) -> Router {
    app.layer(CatchPanicLayer::custom(panic_reply))
}

/// The router with [`TEST_PANIC_PATH`] added: `POST` panics in the handler, `POST ?in=blocking`
/// on a blocking thread. Only for tests of the panic guard (config `test_panic_route`).
pub fn with_test_panic_route(app: Router, daemon: Arc<Daemon>) -> Router {
    app.route(
        TEST_PANIC_PATH,
        axum::routing::post(move |q: axum::extract::RawQuery| test_panic(daemon.clone(), q.0)),
    )
}

async fn test_panic(daemon: Arc<Daemon>, query: Option<String>) -> StatusCode {
    if query.as_deref() == Some("in=blocking") {
        daemon
            .blocking(|_| -> () { panic!("test panic on a blocking thread") })
            .await;
    }
    panic!("test panic in a request handler")
}

/// How long in-flight requests may take to finish once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Accept connections until `shutdown` fires, then let open connections finish their
/// current request (up to [`SHUTDOWN_GRACE`]).
pub async fn serve_unix(
    listener: UnixListener,
    app: Router,
    daemon: Arc<Daemon>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = guarded(app);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "SO_PEERCRED: dropping connection");
                continue;
            }
        };
        let peer = Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        };
        let (app, daemon, shutdown) = (app.clone(), daemon.clone(), shutdown.clone());
        conns.spawn(serve_connection(stream, peer, app, daemon, shutdown));
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

async fn serve_connection(
    stream: tokio::net::UnixStream,
    peer: Peer,
    app: Router,
    daemon: Arc<Daemon>,
    mut shutdown: watch::Receiver<bool>,
) {
    let d = daemon.clone();
    let caller = match tokio::task::spawn_blocking(move || d.auth.identify(peer)).await {
        Ok(c) => c,
        Err(_) => return,
    };
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(caller.clone());
        let app = app.clone();
        async move {
            match cap_body(req).await {
                Ok(req) => app.oneshot(req).await,
                Err(refused) => Ok(refused),
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, uid = peer.uid, "connection ended");
            }
            return;
        }
        _ = shutdown.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Serve the metrics-only router on TCP.
pub async fn serve_tcp(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) {
    let serve = axum::serve(listener, guarded(app)).with_graceful_shutdown(async move {
        let _ = shutdown.changed().await;
    });
    if let Err(e) = serve.await {
        tracing::error!(error = %e, "metrics listener");
    }
}
