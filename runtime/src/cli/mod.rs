//! The `vslice` command line: a client of the `vsliced` API on its Unix socket
//! ([`crate::client::BlockingClient`]). With `VSLICE_DIRECT=1` it drives the slice library
//! itself instead (no daemon: a single node without vsliced, or recovery), with the same
//! flags and output, the same per-slice locking and the same audit records
//! ([`crate::daemon::direct`]).
//!
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 no such slice, 4 conflict (exists,
//! already running, not running), 5 invalid request, 6 the daemon is not reachable, 7 permission
//! denied; `exec` and `enter` exit with the command's own code (126: could not run it, 127: not
//! found in the slice, 128+N: killed by signal N); `audit verify` exits 1 when the log is
//! damaged.
pub mod accounting;
pub mod disk;
pub mod files;
pub mod format;
pub mod image;
pub mod keys;
pub mod snapshot;
pub mod spec_file;
pub mod units;

use crate::api::types::{b64, ExecInput, Image, Stats, VerifyReport};
use crate::audit::Outcome;
use crate::client::{AuditQuery, BlockingClient, ClientError, EventFilter, TtyOptions};
use crate::config::Paths;
use crate::daemon::direct::{DirectError, DirectSession};
use crate::net::{NetMode, NetSpec, PortForward};
use crate::slice::{
    CreateRequest, ExecRequest, Limits, LimitsPatch, Manager, SliceError, SliceInfo,
};
use clap::{Args, Parser, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes of `vslice` (also in `vslice --help`).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const CONFLICT: i32 = 4;
    pub const INVALID: i32 = 5;
    pub const UNREACHABLE: i32 = 6;
    pub const FORBIDDEN: i32 = 7;
}

/// Environment variable that selects the daemon-less mode.
pub const DIRECT_ENV: &str = "VSLICE_DIRECT";

const AFTER_HELP: &str = "\
Daemon and direct mode:
  vslice is a client of vsliced: every command is a request on its Unix socket, taken from
  --socket, else $VSLICE_SOCKET, else /run/vslice/vslice.sock (operators: root and the
  vslice-admin group) or, when that cannot be opened, /run/vslice/user.sock (slice owners).
  VSLICE_DIRECT=1 selects the daemon-less mode, for a single node without vsliced or for
  recovery when the daemon cannot run: vslice then drives the slices itself, with the state
  under $VSLICE_ROOT (default /var/lib/vslice), policies from $VSLICE_POLICY_DIR, cgroups
  under $VSLICE_CGROUP_PARENT (default vslice) and $VSLICE_SHIM. Direct mode is for the
  node's root (it needs root to act at all); every action is locked against other commands
  and recorded in the audit log like the daemon's, with the local user as caller and
  mode \"direct\". It refuses to act while vsliced serves the same state root (exit 4);
  `events` needs the daemon.

Units:
  sizes 512M, 1.5G, 1048576 (powers of 1024); CPUs 0.5, 2; rates as tc writes them:
  10mbit, 1gbit, 500kbit (bits/s, powers of 1000; NNNbps = bytes/s).

Exit codes:
  0  success
  1  failure (also `audit verify` when the log is damaged)
  2  usage error
  3  no such slice
  4  conflict: the slice exists, is already running, or is not running
  5  invalid request (the message names the field)
  6  vsliced is not reachable (not running, or no socket)
  7  permission denied
  `exec` and `enter` exit with the command's own code (126: could not run it, 127: not found
  in the slice, 128+N: killed by signal N).
  With --json, errors are also printed on stdout as {\"error\", \"code\", \"field\", \"exit_code\"}.";

#[derive(Parser, Debug)]
#[command(
    name = "vslice",
    version,
    about = "Slices: long-lived system containers. Root inside, nobody on the host.",
    long_about = "vslice creates and runs slices: isolated, resource-limited Linux environments in which \
the developer is root and on the host is an unprivileged uid. It is the client of the node \
daemon vsliced (docs/daemon.md); VSLICE_DIRECT=1 runs it without the daemon (see below).",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Print JSON instead of tables and messages (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// vsliced's socket [default: $VSLICE_SOCKET, else /run/vslice/vslice.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// CPU share under contention, 1-10000 (default 100).
    #[arg(long, value_name = "WEIGHT")]
    pub cpu_weight: Option<u64>,
    /// Hard CPU cap in CPUs, e.g. 0.5.
    #[arg(long, value_name = "CPUS", value_parser = units::parse_cpus)]
    pub cpus: Option<f64>,
    /// CPUs the slice may use, e.g. 0-1.
    #[arg(long, value_name = "LIST")]
    pub cpuset: Option<String>,
    /// Memory limit, e.g. 512M.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub memory: Option<u64>,
    /// Swap limit on top of memory, e.g. 256M.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub swap: Option<u64>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    #[command(flatten)]
    pub disk: disk::DiskArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct NetArgs {
    /// Network: `none` (loopback only, the default) or `bridge` (a veth on the node's bridge,
    /// NAT, shaping). --publish and the rate and weight flags imply `bridge`.
    #[arg(long = "net", value_name = "MODE", value_parser = parse_net_mode)]
    pub mode: Option<NetMode>,
    /// Cap on traffic out of the slice, e.g. 10mbit.
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    pub egress_rate: Option<u64>,
    /// Cap on traffic into the slice, e.g. 100mbit.
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    pub ingress_rate: Option<u64>,
    /// Forward HOSTPORT on the node's addresses to SLICEPORT (repeatable), e.g. 8080:80/tcp.
    #[arg(short = 'p', long = "publish", value_name = "HOSTPORT:SLICEPORT[/PROTO]", value_parser = units::parse_publish)]
    pub publish: Vec<PortForward>,
    /// Share of the node's bandwidth under contention (default 1).
    #[arg(long, value_name = "N")]
    pub net_weight: Option<u32>,
}

fn parse_net_mode(s: &str) -> Result<NetMode, String> {
    match s {
        "bridge" => Ok(NetMode::Bridge),
        "none" => Ok(NetMode::None),
        _ => Err(format!("{s:?}: the network mode is bridge or none")),
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a slice (and start it unless --no-start), from flags or a TOML spec file.
    Create {
        /// The slice's name (a DNS label); may come from the spec file instead.
        #[arg(required_unless_present = "file")]
        name: Option<String>,
        /// A TOML create request (keys of POST /v1/slices, human units allowed, e.g.
        /// `memory_max = "512M"`); flags given as well override it.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        /// Base image [default: busybox].
        #[arg(long)]
        image: Option<String>,
        /// Policy (policies/<name>.toml) [default: default].
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        net: NetArgs,
        /// Host user allowed to inspect, exec into and enter the slice (repeatable).
        #[arg(long = "owner", value_name = "USER")]
        owners: Vec<String>,
        /// Start again when the node starts.
        #[arg(long)]
        autostart: bool,
        /// Only create; do not start.
        #[arg(long)]
        no_start: bool,
        /// Mount a host directory into the slice, idmapped (repeatable): HOST:PATH[:ro]. HOST
        /// must be an absolute path of a root-owned 0700 directory outside the state root.
        #[arg(short = 'v', long = "volume", value_name = "HOST:PATH[:ro]", value_parser = crate::slice::volumes::parse_flag)]
        volumes: Vec<crate::proto::Volume>,
        /// Init command instead of the image's /sbin/init.
        #[arg(long, num_args = 1.., value_name = "ARGV", allow_hyphen_values = true)]
        init: Option<Vec<String>>,
    },
    /// Start a stopped slice.
    Start { name: String },
    /// Stop a slice: SIGTERM to its init, SIGKILL after the timeout.
    Stop {
        name: String,
        /// Seconds to wait before SIGKILL [default: the daemon's stop_timeout, 10].
        #[arg(long, short)]
        timeout: Option<u64>,
    },
    /// Stop, then start.
    Restart {
        name: String,
        /// Seconds to wait before SIGKILL [default: the daemon's stop_timeout, 10].
        #[arg(long, short)]
        timeout: Option<u64>,
    },
    /// Destroy a slice: kill it, remove its files, cgroups and state.
    #[command(alias = "destroy")]
    Rm { name: String },
    /// List slices (a table; --json for everything).
    #[command(alias = "list")]
    Ls,
    /// Show everything about a slice (JSON).
    Inspect { name: String },
    /// Change limits of a slice; applied at once if it is running.
    Set {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        /// New cap on traffic out of the slice (bridge mode), e.g. 10mbit.
        #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
        egress_rate: Option<u64>,
        /// New cap on traffic into the slice (bridge mode), e.g. 100mbit.
        #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
        ingress_rate: Option<u64>,
    },
    /// Run a command in a running slice as its root; prints its output and exits with its code.
    Exec {
        name: String,
        /// Allocate a terminal from the slice's own devpts (interactive).
        #[arg(long, short)]
        tty: bool,
        /// Pass standard input to the command (read to its end first). Without it the command
        /// gets an empty standard input (not with --tty, which relays the terminal).
        #[arg(long, short)]
        interactive: bool,
        /// Environment variable NAME=value (repeatable).
        #[arg(long, short, value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Working directory inside the slice.
        #[arg(long, short = 'w')]
        cwd: Option<String>,
        /// Kill the command after this many seconds (exit code 137).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Open an interactive root shell in a running slice.
    Enter {
        name: String,
        /// Shell to run (as a login shell).
        #[arg(long, default_value = "/bin/sh")]
        shell: String,
    },
    /// Usage and limits of slices (all of them without a name).
    Stats { names: Vec<String> },
    /// Follow slice events: created, started, exited, oom, limits-changed, destroyed.
    Events {
        /// Only this slice's events.
        #[arg(long)]
        slice: Option<String>,
        /// First replay the buffered events after this sequence number (0: all buffered).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// Only these types (repeatable or comma-separated).
        #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
        types: Vec<String>,
        /// Print the buffered events and exit instead of following.
        #[arg(long)]
        no_follow: bool,
    },
    /// Read or check the control-plane audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Manage the SSH keys of a slice (`ssh NAME@node`).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCmd,
    },
    /// Copy files into or out of a running slice: `vslice cp ./app web:/srv/app`,
    /// `vslice cp web:/var/log/x .` (directories included; symlinks copied as symlinks).
    ///
    /// Slice paths are NAME:/absolute/path and resolve inside the slice (a symlink planted in
    /// the slice never leads outside it; /proc, /sys, /dev and other mounts of the slice are
    /// not crossed). Into a slice: into DST if it is a directory, else as DST; owned by the
    /// slice's root unless --owner. Out of a slice: owned by you, setuid bits dropped.
    Cp {
        /// Source: a local path or NAME:/path.
        src: String,
        /// Destination: a local path or NAME:/path.
        dst: String,
        /// Slice ids owning what is copied in (default 0:0, the slice's root).
        #[arg(long, value_name = "UID[:GID]", value_parser = files::parse_owner)]
        owner: Option<(u32, u32)>,
    },
    /// Print a slice's console log: what its init and services wrote to stdout/stderr.
    Logs {
        name: String,
        /// Keep printing what the slice writes next (until interrupted).
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
    #[command(flatten)]
    Snapshots(snapshot::SnapshotCmd),
    /// OCI image import, listing with reference counts, removal.
    Image {
        #[command(subcommand)]
        command: image::ImageCmd,
    },
    /// Which slice talked to a remote address around a time (from the flow log): the slice,
    /// its owners, the flows with public address/port, bytes and times.
    Who(accounting::WhoArgs),
    /// List base images.
    Images {
        /// Also compute each image's disk usage.
        #[arg(long)]
        size: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Flow records (one JSON object per line, as stored) of a window.
    Flows(accounting::FlowsArgs),
    /// Exec records (every execve in every slice; one JSON object per line) of a window.
    Execs(accounting::FlowsArgs),
    /// Show audit records (readable lines; --json: the stored NDJSON lines).
    Show {
        /// Only records about this slice.
        #[arg(long)]
        slice: Option<String>,
        /// From this time on: RFC 3339, YYYY-MM-DD or epoch seconds.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Up to this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only this action (create, start, stop, restart, update_limits, destroy, exec,
        /// exec_end) or daemon event (start, stop, …).
        #[arg(long)]
        action: Option<String>,
        /// Only this record kind (control, daemon).
        #[arg(long)]
        kind: Option<String>,
        /// At most this many records (the first ones; the last ones with --tail).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// With --limit: the last records.
        #[arg(long)]
        tail: bool,
    },
    /// Check the hash chain of the whole log; exits 1 if it is damaged.
    Verify,
}

/// An error as the CLI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// Process exit code.
    pub exit: i32,
    /// Machine-readable code (`not_found`, `invalid`, `unreachable`, …).
    pub code: String,
    pub message: String,
    /// The request field the error is about.
    pub field: Option<String>,
}

impl CliError {
    pub fn new(exit: i32, code: &str, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            code: code.to_string(),
            message: message.into(),
            field: None,
        }
    }
    fn usage(message: impl Into<String>) -> CliError {
        CliError::new(exit::USAGE, "usage", message)
    }
    fn failure(message: impl Into<String>) -> CliError {
        CliError::new(exit::FAILURE, "failed", message)
    }

    /// Map a client error; `socket` is the daemon's socket for the not-running message.
    pub fn from_client(e: ClientError) -> CliError {
        match &e {
            ClientError::NotRunning { socket, .. } => CliError::new(
                exit::UNREACHABLE,
                "unreachable",
                format!(
                    "vsliced is not running (socket {}): start it with `systemctl start vsliced` or `vsliced &`, or set VSLICE_DIRECT=1",
                    socket.display()
                ),
            ),
            ClientError::PermissionDenied { .. } => {
                CliError::new(exit::FORBIDDEN, "forbidden", e.to_string())
            }
            ClientError::Api {
                status,
                code,
                message,
                field,
            } => {
                let exit = match (*status, code.as_str()) {
                    (404, "not_found") => exit::NOT_FOUND,
                    (409, _) => exit::CONFLICT,
                    (400, _) | (413, _) => exit::INVALID,
                    (403, _) => exit::FORBIDDEN,
                    _ => exit::FAILURE,
                };
                CliError {
                    exit,
                    code: code.clone(),
                    message: message.clone(),
                    field: field.clone(),
                }
            }
            ClientError::Transport(_) | ClientError::Protocol(_) => {
                CliError::new(exit::FAILURE, "failed", e.to_string())
            }
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        CliError::from_client(e)
    }
}

impl From<SliceError> for CliError {
    fn from(e: SliceError) -> CliError {
        let (exit, code) = match &e {
            SliceError::NotFound(_) => (exit::NOT_FOUND, "not_found"),
            SliceError::AlreadyExists(_) => (exit::CONFLICT, "already_exists"),
            SliceError::Conflict { .. } => (exit::CONFLICT, "conflict"),
            SliceError::Invalid { .. } => (exit::INVALID, "invalid"),
            _ => (exit::FAILURE, "failed"),
        };
        CliError {
            exit,
            code: code.to_string(),
            field: e.field().map(str::to_string),
            message: e.to_string(),
        }
    }
}

type R<T> = Result<T, CliError>;

impl LimitArgs {
    fn is_empty(&self) -> bool {
        self.cpu_weight.is_none()
            && self.cpus.is_none()
            && self.cpuset.is_none()
            && self.memory.is_none()
            && self.swap.is_none()
            && self.pids.is_none()
            && self.disk.is_empty()
    }

    /// Override the fields given on the command line.
    fn apply(&self, l: &mut Limits) {
        if self.cpu_weight.is_some() {
            l.cpu_weight = self.cpu_weight;
        }
        if self.cpus.is_some() {
            l.cpu_max = self.cpus;
        }
        if self.cpuset.is_some() {
            l.cpuset = self.cpuset.clone();
        }
        if self.memory.is_some() {
            l.memory_max = self.memory;
        }
        if self.swap.is_some() {
            l.swap_max = self.swap;
        }
        if self.pids.is_some() {
            l.pids_max = self.pids;
        }
        self.disk.apply(l);
    }

    fn to_patch(&self) -> LimitsPatch {
        let mut p = LimitsPatch {
            cpu_weight: self.cpu_weight,
            cpu_max: self.cpus,
            cpuset: self.cpuset.clone(),
            memory_max: self.memory,
            swap_max: self.swap,
            pids_max: self.pids,
            ..Default::default()
        };
        self.disk.patch(&mut p);
        p
    }
}

impl NetArgs {
    /// Override the network fields given on the command line.
    fn apply(&self, n: &mut NetSpec) {
        let implies_bridge = !self.publish.is_empty()
            || self.egress_rate.is_some()
            || self.ingress_rate.is_some()
            || self.net_weight.is_some();
        match self.mode {
            Some(m) => n.mode = m,
            None if implies_bridge => n.mode = NetMode::Bridge,
            None => {}
        }
        if self.egress_rate.is_some() {
            n.egress_rate = self.egress_rate;
        }
        if self.ingress_rate.is_some() {
            n.ingress_rate = self.ingress_rate;
        }
        if !self.publish.is_empty() {
            n.ports = self.publish.clone();
        }
        if self.net_weight.is_some() {
            n.weight = self.net_weight;
        }
    }
}

/// Whether `VSLICE_DIRECT` selects the daemon-less mode.
pub fn direct_mode() -> bool {
    matches!(
        std::env::var(DIRECT_ENV).as_deref().map(str::trim),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// Where the commands go: the daemon, or the slice library itself (locked and audited like
/// the daemon does it, see [`DirectSession`]).
enum Backend {
    Daemon(BlockingClient),
    Direct(Box<DirectSession>),
}

impl From<DirectError> for CliError {
    fn from(e: DirectError) -> CliError {
        match e {
            DirectError::DaemonRunning(_) => {
                CliError::new(exit::CONFLICT, "daemon_running", e.to_string())
            }
            other => CliError::failure(other.to_string()),
        }
    }
}

/// A direct-mode action: locked, run, recorded; the action's own error after the record.
fn direct<T>(
    d: &DirectSession,
    action: &str,
    slice: Option<&str>,
    args: serde_json::Value,
    ok_status: u16,
    op: impl FnOnce(&Manager) -> Result<T, SliceError>,
) -> R<T> {
    Ok(d.act(action, slice, args, ok_status, op)??)
}

fn no_args() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl Backend {
    fn create(&self, req: &CreateRequest) -> R<SliceInfo> {
        match self {
            Backend::Daemon(c) => Ok(c.create(req)?),
            Backend::Direct(d) => {
                let args = serde_json::to_value(req).unwrap_or_else(|_| no_args());
                direct(d, "create", Some(&req.name), args, 201, |m| m.create(req))
            }
        }
    }
    fn list(&self) -> R<Vec<SliceInfo>> {
        match self {
            Backend::Daemon(c) => Ok(c.list()?),
            Backend::Direct(d) => Ok(d.manager.list()?),
        }
    }
    fn inspect(&self, name: &str) -> R<SliceInfo> {
        match self {
            Backend::Daemon(c) => Ok(c.inspect(name)?),
            Backend::Direct(d) => Ok(d.manager.inspect(name)?),
        }
    }
    fn update_limits(&self, name: &str, patch: &LimitsPatch) -> R<SliceInfo> {
        match self {
            Backend::Daemon(c) => Ok(c.update_limits(name, patch)?),
            Backend::Direct(d) => {
                let args = serde_json::to_value(patch).unwrap_or_else(|_| no_args());
                direct(d, "update_limits", Some(name), args, 200, |m| {
                    m.update_limits(name, patch)
                })
            }
        }
    }
    fn start(&self, name: &str) -> R<SliceInfo> {
        match self {
            Backend::Daemon(c) => Ok(c.start(name)?),
            Backend::Direct(d) => direct(d, "start", Some(name), no_args(), 200, |m| m.start(name)),
        }
    }
    fn stop(&self, name: &str, timeout: Option<u64>) -> R<SliceInfo> {
        match self {
            Backend::Daemon(c) => Ok(c.stop(name, timeout.map(Duration::from_secs))?),
            Backend::Direct(d) => {
                let secs = timeout.unwrap_or(10);
                let args = serde_json::json!({ "timeout": secs });
                direct(d, "stop", Some(name), args, 200, |m| {
                    m.stop(name, Duration::from_secs(secs))
                })
            }
        }
    }
    fn restart(&self, name: &str, timeout: Option<u64>) -> R<SliceInfo> {
        match self {
            Backend::Daemon(c) => Ok(c.restart(name, timeout.map(Duration::from_secs))?),
            Backend::Direct(d) => {
                let secs = timeout.unwrap_or(10);
                let args = serde_json::json!({ "timeout": secs });
                direct(d, "restart", Some(name), args, 200, |m| {
                    m.stop(name, Duration::from_secs(secs))?;
                    m.start(name)
                })
            }
        }
    }
    fn destroy(&self, name: &str) -> R<()> {
        match self {
            Backend::Daemon(c) => Ok(c.destroy(name)?),
            Backend::Direct(d) => direct(d, "destroy", Some(name), no_args(), 204, |m| {
                m.destroy(name)
            }),
        }
    }
    fn stats(&self, name: &str) -> R<Stats> {
        match self {
            Backend::Daemon(c) => Ok(c.stats(name)?),
            Backend::Direct(d) => {
                let i = d.manager.inspect(name)?;
                Ok(Stats {
                    slice: i.spec.name,
                    time: crate::audit::time::now_rfc3339(),
                    status: i.status,
                    init_pid: i.init_pid,
                    started_at: i.started_at,
                    limits: i.spec.limits,
                    usage: i.usage,
                    disk: i.disk,
                })
            }
        }
    }
    fn images(&self, with_size: bool) -> R<Vec<Image>> {
        match self {
            Backend::Daemon(c) => Ok(c.images(with_size)?),
            Backend::Direct(d) => {
                let all = crate::image::list(&d.paths.images_dir())
                    .map_err(|e| CliError::failure(e.to_string()))?;
                if !with_size {
                    return Ok(all);
                }
                all.into_iter()
                    .map(|i| i.with_size().map_err(|e| CliError::failure(e.to_string())))
                    .collect()
            }
        }
    }
    fn audit_lines(&self, q: &AuditQuery) -> R<Vec<String>> {
        match self {
            Backend::Daemon(c) => Ok(c.audit_lines(q)?),
            Backend::Direct(d) => {
                let time = |field: &str, v: &Option<String>| -> R<Option<i64>> {
                    v.as_deref()
                        .map(|t| {
                            crate::audit::time::parse(t).map_err(|e| CliError {
                                field: Some(field.to_string()),
                                ..CliError::new(exit::INVALID, "invalid", format!("{field}: {e}"))
                            })
                        })
                        .transpose()
                };
                let filter = crate::audit::Filter {
                    slice: q.slice.clone(),
                    action: q.action.clone(),
                    kind: q.kind.clone(),
                    since_ms: time("since", &q.since)?,
                    until_ms: time("until", &q.until)?,
                    after_seq: q.after_seq,
                    limit: q.limit,
                    tail: q.tail,
                };
                crate::audit::query(&d.paths.root.join("audit"), &filter)
                    .map_err(|e| CliError::failure(format!("audit log: {e}")))
            }
        }
    }
    fn audit_verify(&self) -> R<VerifyReport> {
        match self {
            Backend::Daemon(c) => Ok(c.audit_verify()?),
            Backend::Direct(d) => crate::audit::verify(&d.paths.root.join("audit"), None)
                .map_err(|e| CliError::failure(format!("audit log: {e}"))),
        }
    }
}

/// Write to stdout; a closed pipe (`vslice events | head`) ends the program quietly.
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    if o.write_all(text.as_bytes())
        .and_then(|_| o.write_all(b"\n"))
        .and_then(|_| o.flush())
        .is_err()
    {
        std::process::exit(exit::OK);
    }
}

fn out_json<T: serde::Serialize>(v: &T) {
    out(&serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_info(json: bool, info: &SliceInfo, verb: &str) {
    if json {
        out_json(info);
    } else {
        out(&format!("{verb} {}", info.spec.name));
    }
}

fn backend(cli_socket: Option<PathBuf>) -> R<Backend> {
    if direct_mode() {
        return Ok(Backend::Direct(Box::new(DirectSession::new(
            Paths::from_env(),
        ))));
    }
    let c = match cli_socket {
        Some(s) => BlockingClient::new(s),
        None => BlockingClient::from_env(),
    }
    .map_err(|e| CliError::failure(format!("cannot start the client runtime: {e}")))?;
    Ok(Backend::Daemon(c))
}

/// Run the CLI; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let json = cli.json;
    let r = backend(cli.socket).and_then(|b| dispatch(&b, cli.command, json));
    match r {
        Ok(code) => code,
        Err(e) => {
            if json {
                out(&serde_json::json!({
                    "error": e.message,
                    "code": e.code,
                    "field": e.field,
                    "exit_code": e.exit,
                })
                .to_string());
            }
            match &e.field {
                Some(f) if !e.message.contains(f.as_str()) => {
                    eprintln!("vslice: {} (field: {f})", e.message)
                }
                _ => eprintln!("vslice: {}", e.message),
            }
            e.exit
        }
    }
}

fn dispatch(b: &Backend, cmd: Cmd, json: bool) -> R<i32> {
    match cmd {
        Cmd::Create {
            name,
            file,
            image,
            policy,
            limits,
            net,
            owners,
            autostart,
            no_start,
            volumes,
            init,
        } => {
            let mut req = match &file {
                Some(f) => spec_file::load(f).map_err(|e| CliError {
                    field: e.field,
                    ..CliError::new(exit::INVALID, "invalid", e.message)
                })?,
                None => CreateRequest {
                    start: true,
                    ..Default::default()
                },
            };
            if let Some(n) = name {
                req.name = n;
            }
            if req.name.is_empty() {
                return Err(CliError::usage(
                    "the slice needs a name: give NAME, or `name` in the spec file",
                ));
            }
            if image.is_some() {
                req.image = image;
            }
            if policy.is_some() {
                req.policy = policy;
            }
            limits.apply(&mut req.limits);
            net.apply(&mut req.net);
            for o in owners {
                if !req.owners.contains(&o) {
                    req.owners.push(o);
                }
            }
            if autostart {
                req.autostart = true;
            }
            if no_start {
                req.start = false;
            }
            if init.is_some() {
                req.init = init;
            }
            req.volumes.extend(volumes);
            let info = b.create(&req)?;
            print_info(
                json,
                &info,
                if req.start {
                    "created and started"
                } else {
                    "created"
                },
            );
            Ok(exit::OK)
        }
        Cmd::Cp { src, dst, owner } => files::cp(b, &src, &dst, owner, json),
        Cmd::Logs { name, follow, tail } => files::logs(b, &name, follow, tail),
        Cmd::Start { name } => {
            print_info(json, &b.start(&name)?, "started");
            Ok(exit::OK)
        }
        Cmd::Stop { name, timeout } => {
            print_info(json, &b.stop(&name, timeout)?, "stopped");
            Ok(exit::OK)
        }
        Cmd::Restart { name, timeout } => {
            print_info(json, &b.restart(&name, timeout)?, "restarted");
            Ok(exit::OK)
        }
        Cmd::Rm { name } => {
            b.destroy(&name)?;
            if json {
                out(&serde_json::json!({ "destroyed": name }).to_string());
            } else {
                out(&format!("destroyed {name}"));
            }
            Ok(exit::OK)
        }
        Cmd::Ls => {
            let all = b.list()?;
            if json {
                out_json(&all);
            } else {
                out(format::slice_table(&all).trim_end());
            }
            Ok(exit::OK)
        }
        Cmd::Inspect { name } => {
            out_json(&b.inspect(&name)?);
            Ok(exit::OK)
        }
        Cmd::Set {
            name,
            limits,
            egress_rate,
            ingress_rate,
        } => {
            if limits.is_empty() && egress_rate.is_none() && ingress_rate.is_none() {
                return Err(CliError::usage(
                    "nothing to change: give at least one of --cpu-weight, --cpus, --cpuset, --memory, --swap, --pids, --disk, --inodes, --io-weight, --io-read-bps, --io-write-bps, --io-read-iops, --io-write-iops, --egress-rate, --ingress-rate",
                ));
            }
            let patch = LimitsPatch {
                egress_rate,
                ingress_rate,
                ..limits.to_patch()
            };
            print_info(json, &b.update_limits(&name, &patch)?, "updated");
            Ok(exit::OK)
        }
        Cmd::Exec {
            name,
            tty,
            interactive,
            env,
            cwd,
            timeout,
            command,
        } => exec(b, json, name, tty, interactive, env, cwd, timeout, command),
        Cmd::Enter { name, shell } => {
            let argv = vec![shell, "-l".to_string()];
            let cwd = Some("/root".to_string());
            match b {
                Backend::Daemon(c) => Ok(c.exec_tty_attached(
                    &name,
                    &TtyOptions {
                        argv,
                        env: Vec::new(),
                        cwd,
                        cols: 0,
                        rows: 0,
                    },
                )?),
                Backend::Direct(d) => {
                    let req = ExecRequest {
                        argv,
                        env: vec![],
                        cwd,
                        tty: true,
                    };
                    direct_exec(d, &name, &req)
                }
            }
        }
        Cmd::Stats { names } => {
            let names: Vec<String> = if names.is_empty() {
                b.list()?.into_iter().map(|i| i.spec.name).collect()
            } else {
                names
            };
            let single = names.len() == 1;
            let mut all = Vec::with_capacity(names.len());
            for n in &names {
                all.push(b.stats(n)?);
            }
            if json {
                if single {
                    out_json(&all[0]);
                } else {
                    out_json(&all);
                }
            } else {
                out(format::stats_table(&all).trim_end());
            }
            Ok(exit::OK)
        }
        Cmd::Events {
            slice,
            since,
            types,
            no_follow,
        } => {
            let Backend::Daemon(c) = b else {
                return Err(CliError::failure(
                    "events come from vsliced: they are not available with VSLICE_DIRECT=1",
                ));
            };
            let filter = EventFilter {
                slice,
                since: if no_follow { since.or(Some(0)) } else { since },
                follow: !no_follow,
                types,
            };
            for ev in c.events(&filter)? {
                let ev = ev?;
                if json {
                    out(&serde_json::to_string(&ev).unwrap_or_default());
                } else {
                    out(&format::event_line(&ev));
                }
            }
            Ok(exit::OK)
        }
        Cmd::Keys { command } => keys::run(b, command, json),
        Cmd::Audit { command } => match command {
            AuditCmd::Show {
                slice,
                since,
                until,
                action,
                kind,
                limit,
                tail,
            } => {
                let lines = b.audit_lines(&AuditQuery {
                    slice,
                    action,
                    kind,
                    since,
                    until,
                    after_seq: None,
                    limit,
                    tail,
                })?;
                for l in &lines {
                    if json {
                        out(l);
                    } else {
                        out(&format::audit_line(l));
                    }
                }
                Ok(exit::OK)
            }
            AuditCmd::Flows(a) => accounting::records(b, "flows", a),
            AuditCmd::Execs(a) => accounting::records(b, "execs", a),
            AuditCmd::Verify => {
                let report = b.audit_verify()?;
                if json {
                    out_json(&report);
                } else {
                    out(format::verify_report(&report).trim_end());
                }
                Ok(if report.ok { exit::OK } else { exit::FAILURE })
            }
        },
        Cmd::Image { command } => image::run(b, json, command),
        Cmd::Snapshots(command) => snapshot::run(b, json, command),
        Cmd::Who(a) => accounting::who(b, a, json),
        Cmd::Images { size } => {
            let all = b.images(size)?;
            if json {
                out_json(&all);
            } else {
                out(format::image_table(&all, size).trim_end());
            }
            Ok(exit::OK)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn exec(
    b: &Backend,
    json: bool,
    name: String,
    tty: bool,
    interactive: bool,
    env: Vec<String>,
    cwd: Option<String>,
    timeout: Option<u64>,
    argv: Vec<String>,
) -> R<i32> {
    let c = match b {
        Backend::Daemon(c) => c,
        Backend::Direct(d) => {
            if timeout.is_some() {
                eprintln!("vslice: --timeout is not supported with VSLICE_DIRECT=1; ignored");
            }
            // Direct mode: the shim runs the command with this process's stdio.
            let req = ExecRequest {
                argv,
                env,
                cwd,
                tty,
            };
            return direct_exec(d, &name, &req);
        }
    };
    if tty {
        return Ok(c.exec_tty_attached(
            &name,
            &TtyOptions {
                argv,
                env,
                cwd,
                cols: 0,
                rows: 0,
            },
        )?);
    }
    let stdin = if interactive {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| CliError::failure(format!("reading standard input: {e}")))?;
        Some(b64::encode(&data))
    } else {
        None
    };
    let input = ExecInput {
        argv,
        env,
        cwd,
        stdin: None,
        stdin_base64: stdin,
        timeout_secs: timeout,
    };
    let r = c.exec(&name, &input)?;
    if json {
        out(&serde_json::json!({
            "exit_code": r.exit_code,
            "stdout": String::from_utf8_lossy(&r.stdout),
            "stderr": String::from_utf8_lossy(&r.stderr),
            "truncated": r.truncated,
            "timed_out": r.timed_out,
        })
        .to_string());
    } else {
        let _ = std::io::stdout()
            .write_all(&r.stdout)
            .and_then(|_| std::io::stdout().flush());
        let _ = std::io::stderr().write_all(&r.stderr);
        if r.truncated {
            eprintln!("vslice: output truncated (the daemon's exec_output_limit)");
        }
        if r.timed_out {
            eprintln!(
                "vslice: the command was killed after {}s",
                timeout.unwrap_or(0)
            );
        }
    }
    Ok(r.exit_code)
}

/// A direct-mode exec, recorded like the daemon records one: `exec` (fsynced) before the
/// command starts, `exec_end` with its exit code after. The root lock is held only while
/// writing each record, not for the command's lifetime.
fn direct_exec(d: &DirectSession, name: &str, req: &ExecRequest) -> R<i32> {
    let args = crate::audit::exec_args(&req.argv, &req.env, req.cwd.as_deref(), req.tty);
    let cmd = {
        let held = d.lock_root()?;
        match d.manager.exec_command(name, req, None) {
            Ok(cmd) => {
                d.record(&held, "exec", Some(name), args.clone(), Outcome::ok(200))?;
                cmd
            }
            Err(e) => {
                let (status, code) = e.status_code();
                let outcome = Outcome::error(status, code, &e.to_string());
                d.record(&held, "exec", Some(name), args, outcome)?;
                return Err(e.into());
            }
        }
    };
    let started = std::time::Instant::now();
    let result = run_shim(cmd);
    let mut outcome = match &result {
        Ok(code) => Outcome {
            exit_code: Some(*code),
            ..Outcome::ok(200)
        },
        Err(e) => Outcome::error(500, "exec_failed", &e.message),
    };
    outcome.ok = result.is_ok();
    let mut end_args = args;
    end_args["duration_ms"] = serde_json::json!(started.elapsed().as_millis() as u64);
    let held = d.lock_root()?;
    d.record(&held, "exec_end", Some(name), end_args, outcome)?;
    result
}

fn run_shim(mut cmd: std::process::Command) -> R<i32> {
    let status = cmd.status().map_err(|e| {
        CliError::failure(format!(
            "running {}: {e}",
            cmd.get_program().to_string_lossy()
        ))
    })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_create_flags() {
        let cli = Cli::try_parse_from([
            "vslice",
            "create",
            "web",
            "--memory",
            "256M",
            "--cpus",
            "0.5",
            "--pids",
            "64",
            "-p",
            "8080:80",
            "--publish",
            "5353:53/udp",
            "--egress-rate",
            "10mbit",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Cmd::Create {
            name, limits, net, ..
        } = cli.command
        else {
            panic!("not create")
        };
        assert_eq!(name.as_deref(), Some("web"));
        let mut l = Limits::default();
        limits.apply(&mut l);
        assert_eq!(
            (l.memory_max, l.cpu_max, l.pids_max),
            (Some(256 << 20), Some(0.5), Some(64))
        );
        let mut n = NetSpec::default();
        net.apply(&mut n);
        assert_eq!(n.mode, NetMode::Bridge, "--publish implies bridge");
        assert_eq!(n.ports.len(), 2);
        assert_eq!(n.egress_rate, Some(10_000_000));
        // An explicit mode wins.
        let cli = Cli::try_parse_from([
            "vslice",
            "create",
            "x",
            "--net",
            "none",
            "--net-weight",
            "2",
        ])
        .unwrap();
        let Cmd::Create { net, .. } = cli.command else {
            panic!()
        };
        let mut n = NetSpec::default();
        net.apply(&mut n);
        assert_eq!((n.mode, n.weight), (NetMode::None, Some(2)));
        // Usage errors.
        assert!(Cli::try_parse_from(["vslice", "create"]).is_err());
        assert!(Cli::try_parse_from(["vslice", "create", "x", "--memory", "lots"]).is_err());
        assert!(Cli::try_parse_from(["vslice", "create", "x", "--net", "host"]).is_err());
        assert!(Cli::try_parse_from(["vslice", "create", "x", "-p", "80"]).is_err());
        assert!(Cli::try_parse_from(["vslice", "create", "--file", "x.toml"]).is_ok());
    }

    #[test]
    fn client_errors_map_to_exit_codes() {
        let api = |status: u16, code: &str| ClientError::Api {
            status,
            code: code.into(),
            message: "m".into(),
            field: Some("limits.memory_max".into()),
        };
        assert_eq!(CliError::from(api(404, "not_found")).exit, exit::NOT_FOUND);
        assert_eq!(
            CliError::from(api(409, "already_exists")).exit,
            exit::CONFLICT
        );
        assert_eq!(CliError::from(api(409, "conflict")).exit, exit::CONFLICT);
        let e = CliError::from(api(400, "invalid"));
        assert_eq!(
            (e.exit, e.field.as_deref()),
            (exit::INVALID, Some("limits.memory_max"))
        );
        assert_eq!(CliError::from(api(403, "forbidden")).exit, exit::FORBIDDEN);
        assert_eq!(CliError::from(api(500, "internal")).exit, exit::FAILURE);
        let e = CliError::from(ClientError::NotRunning {
            socket: "/x.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert_eq!(e.exit, exit::UNREACHABLE);
        assert!(
            e.message
                .contains("vsliced is not running (socket /x.sock)"),
            "{}",
            e.message
        );
        assert!(e.message.contains("VSLICE_DIRECT=1"));
    }
}
