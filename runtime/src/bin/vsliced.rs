//! vsliced — the vslice node daemon. See docs/daemon.md.
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vslice::api::{self, AppState, SocketKind};
use vslice::daemon::config::{Config, DEFAULT_CONFIG_FILE};
use vslice::daemon::socket::{self, Access};
use vslice::daemon::{notify, Daemon};

/// The vslice node daemon: serves the slice API on a Unix socket.
///
/// Precedence of settings: flag > environment variable > config file > default.
#[derive(Debug, Parser)]
#[command(name = "vsliced", version)]
struct Args {
    /// Config file [default: /etc/vslice/vslice.toml; a missing default file is fine].
    #[arg(long, env = "VSLICE_CONFIG")]
    config: Option<PathBuf>,
    /// Operators' API socket [default: /run/vslice/vslice.sock].
    #[arg(long, env = "VSLICE_SOCKET")]
    socket: Option<PathBuf>,
    /// Slice owners' socket ("" disables it) [default: /run/vslice/user.sock].
    #[arg(long, env = "VSLICE_USER_SOCKET")]
    user_socket: Option<String>,
    /// State root [default: /var/lib/vslice].
    #[arg(long, env = "VSLICE_ROOT")]
    root: Option<PathBuf>,
    /// Cgroup parent name [default: vslice].
    #[arg(long, env = "VSLICE_CGROUP_PARENT")]
    cgroup_parent: Option<String>,
    /// Policy directory.
    #[arg(long, env = "VSLICE_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// The vslice-shim binary.
    #[arg(long, env = "VSLICE_SHIM")]
    shim: Option<PathBuf>,
    /// Operators' group [default: vslice-admin].
    #[arg(long, env = "VSLICE_ADMIN_GROUP")]
    admin_group: Option<String>,
    /// Serve GET /metrics on this TCP address too (e.g. 127.0.0.1:9477).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Do not start autostart slices at start-up.
    #[arg(long)]
    no_autostart: bool,
    /// Print the effective configuration (TOML) and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (config_path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let mut config = match Config::load(&config_path, required) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vsliced: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(s) = &args.socket {
        config.socket = s.clone();
    }
    if let Some(s) = &args.user_socket {
        config.user_socket = PathBuf::from(s);
    }
    if let Some(g) = &args.admin_group {
        config.admin_group = g.clone();
    }
    if let Some(m) = &args.metrics_listen {
        config.metrics_listen = m.clone();
    }
    if args.no_autostart {
        config.autostart = false;
    }
    let mut paths = config.paths();
    if let Some(r) = &args.root {
        paths.root = r.clone();
    }
    if let Some(c) = &args.cgroup_parent {
        paths.cgroup_parent = c.clone();
    }
    if let Some(p) = &args.policy_dir {
        paths.policy_dir = p.clone();
    }
    if let Some(s) = &args.shim {
        paths.shim = s.clone();
    }
    config.root = Some(paths.root.clone());
    config.cgroup_parent = Some(paths.cgroup_parent.clone());
    config.policy_dir = Some(paths.policy_dir.clone());
    config.shim = Some(paths.shim.clone());
    if let Err(e) = config.validate() {
        eprintln!("vsliced: {e}");
        return ExitCode::from(2);
    }
    if args.print_config {
        print!("{}", toml::to_string(&config).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config, paths)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vsliced: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(
    config: Config,
    paths: vslice::config::Paths,
) -> Result<(), Box<dyn std::error::Error>> {
    if !nix::unistd::geteuid().is_root() {
        tracing::warn!("not running as root: slices cannot be created or started");
    }
    tracing::info!(version = vslice::daemon::VERSION, root = %paths.root.display(), cgroup_parent = %paths.cgroup_parent, shim = %paths.shim.display(), policy_dir = %paths.policy_dir.display(), "starting");
    // Supported kernels and file systems: fail now (before anything is made), naming the
    // cause and the fix, rather than at every create (docs/design.md, "Supported kernels").
    vslice::hostcheck::check_daemon(&paths.root, &paths.images_dir())?;
    let daemon = Daemon::open(config.clone(), paths)?;

    // Reconcile before serving: clients see a converged state.
    let d = daemon.clone();
    let report = tokio::task::spawn_blocking(move || d.reconcile()).await?;
    tracing::info!(
        running = report.running.len(),
        started = report.started.len(),
        stopped = report.stopped.len(),
        failed = report.failed.len(),
        recovered = ?report.recovered,
        "reconciled"
    );

    // The flow log (conntrack → <root>/audit/flows), stopped when the daemon stops.
    let d = daemon.clone();
    let _flow_log =
        tokio::task::spawn_blocking(move || vslice::audit::flows::start_for_daemon(&d)).await?;
    // The exec log (eBPF, else the process events connector → <root>/audit/execs).
    let _exec_log = vslice::audit::execs::start_for_daemon(&daemon);

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let state = AppState {
        daemon: daemon.clone(),
        metrics: Arc::new(api::metrics::RequestMetrics::new()),
        shutdown: shutdown_rx.clone(),
    };

    let mode = config.socket_mode_bits()?;
    let (admin_std, applied) = socket::bind(
        &config.socket,
        &Access::Group {
            group: config.admin_group.clone(),
            mode,
        },
    )?;
    if let Some(w) = &applied.warning {
        tracing::warn!("{w}");
    }
    tracing::info!(socket = %config.socket.display(), mode = format!("{:o}", applied.mode), gid = applied.gid, "listening (operators)");
    let mut servers = tokio::task::JoinSet::new();
    admin_std.set_nonblocking(true)?;
    let admin = tokio::net::UnixListener::from_std(admin_std)?;
    let mut admin_app = api::router(state.clone(), SocketKind::Admin);
    if config.test_panic_route {
        tracing::warn!(
            path = api::server::TEST_PANIC_PATH,
            "test_panic_route is on: serving a route that panics (tests only)"
        );
        admin_app = api::server::with_test_panic_route(admin_app, daemon.clone());
    }
    servers.spawn(api::server::serve_unix(
        admin,
        admin_app,
        daemon.clone(),
        shutdown_rx.clone(),
    ));
    let mut sockets = vec![config.socket.clone()];
    if let Some(path) = config.user_socket() {
        let (user_std, _) = socket::bind(path, &Access::World)?;
        user_std.set_nonblocking(true)?;
        let user = tokio::net::UnixListener::from_std(user_std)?;
        tracing::info!(socket = %path.display(), "listening (slice owners)");
        servers.spawn(api::server::serve_unix(
            user,
            api::router(state.clone(), SocketKind::User),
            daemon.clone(),
            shutdown_rx.clone(),
        ));
        sockets.push(path.to_path_buf());
    }
    if !config.metrics_listen.is_empty() {
        let tcp = tokio::net::TcpListener::bind(&config.metrics_listen).await?;
        tracing::info!(addr = %config.metrics_listen, "serving /metrics on TCP");
        servers.spawn(api::server::serve_tcp(
            tcp,
            api::metrics_router(state.clone()),
            shutdown_rx.clone(),
        ));
    }
    if let Some(path) = config.ssh_socket() {
        // Accounts of slices destroyed while the daemon was down (or in direct mode).
        let d = daemon.clone();
        tokio::task::spawn_blocking(move || api::ssh_remove_orphans(&d)).await?;
        // 0666: the daemon decides by the peer's uid (slice accounts, the keys user, root).
        let (ssh_std, _) = socket::bind(path, &Access::World)?;
        ssh_std.set_nonblocking(true)?;
        let ssh = tokio::net::UnixListener::from_std(ssh_std)?;
        tracing::info!(socket = %path.display(), "listening (vsh: SSH sessions and keys)");
        servers.spawn(api::vsh::serve(ssh, state.clone()));
        sockets.push(path.to_path_buf());
    }
    let poller = tokio::spawn(daemon.clone().poll_events(shutdown_rx.clone()));

    match notify::notify(&format!(
        "READY=1\nSTATUS=serving {} slices\nMAINPID={}",
        daemon.events.known_slices(),
        std::process::id()
    )) {
        Ok(true) => tracing::info!("notified systemd: ready"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "sd_notify"),
    }

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let sig = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = sig, "shutting down; slices keep running");
    let _ = notify::notify("STOPPING=1");
    let _ = shutdown_tx.send(true);
    while servers.join_next().await.is_some() {}
    let _ = poller.await;
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    daemon.audit_daemon("stop", None, Some(sig.into()));
    Ok(())
}
