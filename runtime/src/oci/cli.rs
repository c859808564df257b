//! The `vslice-runc` command line: runc's subcommands and flags (what containerd's go-runc
//! passes), parsed with clap. Global flags may come before or after the subcommand.
use super::commands::{self, CreateArgs, ExecArgs, Execd, Global, RunArgs};
use super::log;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "vslice-runc",
    version,
    about = "runc-compatible OCI runtime on vslice's sandbox executor",
    long_about = "runc-compatible OCI runtime on vslice's sandbox executor.\n\n\
        containerd: set BinaryName = \"/usr/local/bin/vslice-runc\" in the options of an \
        io.containerd.runc.v2 runtime (see docs/oci.md)."
)]
pub struct Cli {
    /// Directory for container state (one subdirectory per container).
    #[arg(long, global = true, default_value = "/run/vslice-runc")]
    pub root: PathBuf,
    /// Append errors (and with --debug, progress) to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: log::Format,
    /// Accepted for runc compatibility: cgroupsPath "slice:prefix:name" is mapped to the
    /// directory systemd would use (e.g. system.slice/prefix-name.scope), which vslice-runc
    /// creates itself; it does not talk to systemd.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Log progress too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; vslice-runc does not checkpoint.
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// runc's rootless mode: only "false" or "auto" (vslice-runc runs as root).
    #[arg(long, global = true, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateFlags {
    /// Bundle directory (config.json and, usually, rootfs).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write init's host PID here.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (process.terminal = true).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility; vslice always uses pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not give the container its own session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra descriptors (refused: not supported).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PsFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container: everything set up, its program not started yet.
    Create(CreateFlags),
    /// Start a created container's program.
    Start { id: String },
    /// Print the OCI state JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init, or to every process (--all).
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a container and everything it made (--force: kill it first if running).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start; without --detach wait for it, forward signals, delete it.
    Run {
        #[command(flatten)]
        create: CreateFlags,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a process in a running container.
    Exec {
        /// process JSON (runtime-spec "process"); "-" reads stdin.
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short, long)]
        tty: bool,
        #[arg(short, long)]
        detach: bool,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// UID[:GID]
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short = 'g', long = "additional-gids")]
        additional_gids: Vec<u32>,
        #[arg(short, long = "cap")]
        cap: Vec<String>,
        #[arg(long = "no-new-privs")]
        no_new_privs: bool,
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: u32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the container's processes (host PIDs).
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: PsFormat,
        id: String,
        /// ps(1) options (accepted for runc compatibility, ignored).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers under --root.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: PsFormat,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change the resources of a running container.
    Update {
        /// LinuxResources JSON ("-" reads stdin).
        #[arg(short, long)]
        resources: Option<PathBuf>,
        #[arg(long)]
        memory: Option<i64>,
        #[arg(long = "memory-swap")]
        memory_swap: Option<i64>,
        #[arg(long = "pids-limit")]
        pids_limit: Option<i64>,
        #[arg(long = "cpu-shares")]
        cpu_shares: Option<u64>,
        #[arg(long = "cpu-quota")]
        cpu_quota: Option<i64>,
        #[arg(long = "cpu-period")]
        cpu_period: Option<u64>,
        #[arg(long = "cpuset-cpus")]
        cpuset_cpus: Option<String>,
        #[arg(long = "cpuset-mems")]
        cpuset_mems: Option<String>,
        id: String,
    },
    /// Print the features JSON (runtime-spec features.md).
    Features,
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

fn create_args(f: &CreateFlags) -> CreateArgs {
    CreateArgs {
        id: f.id.clone(),
        bundle: f.bundle.clone(),
        pid_file: f.pid_file.clone(),
        console_socket: f.console_socket.clone(),
        no_new_keyring: f.no_new_keyring,
        preserve_fds: f.preserve_fds,
    }
}

fn resources_from(
    file: Option<&PathBuf>,
    patch: impl FnOnce(&mut serde_json::Value),
) -> super::Result<oci_spec::runtime::LinuxResources> {
    let mut v: serde_json::Value = match file {
        Some(p) if p.as_os_str() == "-" => serde_json::from_reader(std::io::stdin())
            .map_err(|e| super::err!("parse resources from stdin: {e}"))?,
        Some(p) => {
            let data = std::fs::read(p).map_err(|e| super::err!("read {}: {e}", p.display()))?;
            serde_json::from_slice(&data).map_err(|e| super::err!("parse {}: {e}", p.display()))?
        }
        None => serde_json::json!({}),
    };
    patch(&mut v);
    serde_json::from_value(v).map_err(|e| super::err!("resources: {e}"))
}

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    // SIGPIPE stays ignored (Rust's default): with the default disposition a hook or sandbox
    // child that exits before reading what we write to it would kill the runtime silently,
    // mid-create. Container programs get the default back from the sandbox's exec path and
    // hooks from std's Command.
    let cli = Cli::parse();
    log::init(cli.log.clone(), cli.log_format, cli.debug);
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            log::error(&e.0);
            eprintln!("vslice-runc: {e}");
            1
        }
    }
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn dispatch(cli: &Cli) -> super::Result<i32> {
    if let Some(r) = cli.rootless.as_deref() {
        if r != "false" && r != "auto" {
            return Err(super::err!("--rootless {r}: vslice-runc runs as root only"));
        }
    }
    let g = Global {
        root: cli.root.clone(),
        systemd_cgroup: cli.systemd_cgroup,
    };
    log::debug(&format!("{:?}", cli.cmd));
    match &cli.cmd {
        Cmd::Create(f) => {
            commands::create(&g, &create_args(f), None)?;
            Ok(0)
        }
        Cmd::Start { id } => commands::start(&g, id).map(|()| 0),
        Cmd::State { id } => {
            print_json(&commands::state(&g, id)?);
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => commands::kill(&g, id, signal, *all).map(|()| 0),
        Cmd::Delete { force, id } => commands::delete(&g, id, *force).map(|()| 0),
        Cmd::Run {
            create,
            detach,
            keep,
        } => commands::run(
            &g,
            &RunArgs {
                create: create_args(create),
                detach: *detach,
                keep: *keep,
            },
        ),
        Cmd::Exec {
            process,
            tty,
            detach,
            pid_file,
            console_socket,
            cwd,
            env,
            user,
            additional_gids,
            cap,
            no_new_privs,
            preserve_fds,
            id,
            command,
        } => {
            let a = ExecArgs {
                id: id.clone(),
                process: process.clone(),
                command: command.clone(),
                tty: *tty,
                detach: *detach,
                pid_file: pid_file.clone(),
                console_socket: console_socket.clone(),
                cwd: cwd.clone(),
                env: env.clone(),
                user: user.clone(),
                additional_gids: additional_gids.clone(),
                caps: cap.clone(),
                no_new_privs: *no_new_privs,
                preserve_fds: *preserve_fds,
            };
            match commands::exec(&g, &a)? {
                Execd::Exited(code) => Ok(code),
                Execd::Detached(_) => Ok(0),
            }
        }
        Cmd::Ps { format, id, .. } => {
            let pids = commands::pids(&g, id)?;
            match format {
                PsFormat::Json => println!("{}", serde_json::to_string(&pids).unwrap_or_default()),
                PsFormat::Table => print!("{}", commands::ps_table(&pids)),
            }
            Ok(0)
        }
        Cmd::List { format, quiet } => {
            let mut rows = Vec::new();
            for id in super::state::list(&g.root)? {
                if let Ok(c) = super::state::Container::peek(&g.root, &id) {
                    rows.push(c.oci_state(c.status()));
                }
            }
            if *quiet {
                for r in &rows {
                    println!("{}", r["id"].as_str().unwrap_or(""));
                }
            } else {
                match format {
                    PsFormat::Json => {
                        println!("{}", serde_json::to_string(&rows).unwrap_or_default())
                    }
                    PsFormat::Table => {
                        println!(
                            "{:<24} {:<8} {:<9} {:<40} CREATED",
                            "ID", "PID", "STATUS", "BUNDLE"
                        );
                        for r in &rows {
                            println!(
                                "{:<24} {:<8} {:<9} {:<40} {}",
                                r["id"].as_str().unwrap_or(""),
                                r["pid"].as_i64().unwrap_or(0),
                                r["status"].as_str().unwrap_or(""),
                                r["bundle"].as_str().unwrap_or(""),
                                r["created"].as_str().unwrap_or("")
                            );
                        }
                    }
                }
            }
            Ok(0)
        }
        Cmd::Pause { id } => commands::pause(&g, id, true).map(|()| 0),
        Cmd::Resume { id } => commands::pause(&g, id, false).map(|()| 0),
        Cmd::Update {
            resources,
            memory,
            memory_swap,
            pids_limit,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            cpuset_mems,
            id,
        } => {
            let res = resources_from(resources.as_ref(), |v| {
                let obj = v.as_object_mut().expect("resources is an object");
                let mut set = |section: &str, key: &str, val: serde_json::Value| {
                    let s = obj.entry(section).or_insert_with(|| serde_json::json!({}));
                    s[key] = val;
                };
                if let Some(m) = memory {
                    set("memory", "limit", (*m).into());
                }
                if let Some(m) = memory_swap {
                    set("memory", "swap", (*m).into());
                }
                if let Some(p) = pids_limit {
                    set("pids", "limit", (*p).into());
                }
                if let Some(s) = cpu_shares {
                    set("cpu", "shares", (*s).into());
                }
                if let Some(q) = cpu_quota {
                    set("cpu", "quota", (*q).into());
                }
                if let Some(p) = cpu_period {
                    set("cpu", "period", (*p).into());
                }
                if let Some(c) = cpuset_cpus {
                    set("cpu", "cpus", c.clone().into());
                }
                if let Some(m) = cpuset_mems {
                    set("cpu", "mems", m.clone().into());
                }
            })?;
            commands::update(&g, id, &res).map(|()| 0)
        }
        Cmd::Features => {
            print_json(&commands::features());
            Ok(0)
        }
        Cmd::Spec { bundle } => {
            commands::write_spec(bundle)?;
            Ok(0)
        }
    }
}
