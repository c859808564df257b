//! Serving a router on a Unix socket: one hyper HTTP/1.1 connection per client (with
//! upgrades, for the tty WebSocket), the caller identified once per connection from
//! SO_PEERCRED and attached to every request as an `Extension<Caller>`.
use crate::daemon::{Daemon, Peer};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tower::ServiceExt;

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
        app.clone().oneshot(req)
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
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown.changed().await;
    });
    if let Err(e) = serve.await {
        tracing::error!(error = %e, "metrics listener");
    }
}
