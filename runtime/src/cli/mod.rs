//! The `vslice` command line. For now it drives the slice library directly (no daemon); the
//! node daemon issue switches it to the socket API with the same flags and output.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 no such slice, 4 conflict (exists,
//! already running, not running), 5 invalid request; `exec` and `enter` exit with the
//! command's own code (126: could not run it, 127: not found in the slice).
pub mod units;

use crate::config::Paths;
use crate::slice::{CreateRequest, ExecRequest, Limits, LimitsPatch, Manager, SliceError, SliceInfo, Status};
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "vslice",
    version,
    about = "Slices: long-lived system containers. Root inside, nobody on the host.",
    long_about = "vslice creates and runs slices: isolated, resource-limited Linux environments in which \
the developer is root and on the host is an unprivileged uid.\n\nState lives under $VSLICE_ROOT \
(default /var/lib/vslice); policies under $VSLICE_POLICY_DIR; cgroups under $VSLICE_CGROUP_PARENT \
(default vslice) at the root of every hierarchy."
)]
pub struct Cli {
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
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
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a slice (and start it unless --no-start).
    Create {
        name: String,
        /// Base image.
        #[arg(long, default_value = "busybox")]
        image: String,
        /// Policy (policies/<name>.toml).
        #[arg(long, default_value = "default")]
        policy: String,
        #[command(flatten)]
        limits: LimitArgs,
        /// Host user allowed to inspect, exec into and enter the slice (repeatable).
        #[arg(long = "owner", value_name = "USER")]
        owners: Vec<String>,
        /// Start again when the node starts.
        #[arg(long)]
        autostart: bool,
        /// Only create; do not start.
        #[arg(long)]
        no_start: bool,
        /// Init command instead of the image's /sbin/init.
        #[arg(long, num_args = 1.., value_name = "ARGV", allow_hyphen_values = true)]
        init: Option<Vec<String>>,
    },
    /// Start a stopped slice.
    Start { name: String },
    /// Stop a slice: SIGTERM to its init, SIGKILL after the timeout.
    Stop {
        name: String,
        /// Seconds to wait before SIGKILL.
        #[arg(long, short, default_value_t = 10)]
        timeout: u64,
    },
    /// Stop, then start.
    Restart {
        name: String,
        #[arg(long, short, default_value_t = 10)]
        timeout: u64,
    },
    /// Destroy a slice: kill it, remove its files, cgroups and state.
    #[command(alias = "destroy")]
    Rm { name: String },
    /// List slices.
    #[command(alias = "list")]
    Ls,
    /// Show everything about a slice (JSON).
    Inspect { name: String },
    /// Change limits of a slice; applied at once if it is running.
    Set {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Run a command in a running slice as its root.
    Exec {
        name: String,
        /// Allocate a terminal from the slice's own devpts.
        #[arg(long, short)]
        tty: bool,
        /// Environment variable NAME=value (repeatable).
        #[arg(long, short, value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Working directory inside the slice.
        #[arg(long, short = 'w')]
        cwd: Option<String>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Open an interactive root shell in a running slice.
    Enter {
        name: String,
        /// Shell to run.
        #[arg(long, default_value = "/bin/sh")]
        shell: String,
    },
}

fn exit_code(e: &SliceError) -> i32 {
    match e {
        SliceError::NotFound(_) => 3,
        SliceError::AlreadyExists(_) | SliceError::Conflict { .. } => 4,
        SliceError::Invalid { .. } => 5,
        _ => 1,
    }
}

impl LimitArgs {
    fn to_limits(&self) -> Limits {
        Limits {
            cpu_weight: self.cpu_weight,
            cpu_max: self.cpus,
            cpuset: self.cpuset.clone(),
            memory_max: self.memory,
            swap_max: self.swap,
            pids_max: self.pids,
        }
    }
}

fn print_table(slices: &[SliceInfo]) {
    println!("{:<20} {:<8} {:>8} {:<10} {:>6} {:>8} {:>8} {:>6}", "NAME", "STATUS", "PID", "IMAGE", "CPUS", "MEMORY", "MEM-USE", "PIDS");
    for s in slices {
        let l = &s.spec.limits;
        println!(
            "{:<20} {:<8} {:>8} {:<10} {:>6} {:>8} {:>8} {:>6}",
            s.spec.name,
            match s.status {
                Status::Running => "running",
                Status::Stopped => "stopped",
            },
            s.init_pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.spec.image,
            l.cpu_max.map(|c| format!("{c}")).unwrap_or_else(|| "-".into()),
            l.memory_max.map(units::format_size).unwrap_or_else(|| "-".into()),
            s.usage.as_ref().map(|u| units::format_size(u.memory_current)).unwrap_or_else(|| "-".into()),
            s.usage.as_ref().map(|u| u.pids_current.to_string()).unwrap_or_else(|| "-".into()),
        );
    }
}

fn print_info(json: bool, info: &SliceInfo, verb: &str) {
    if json {
        println!("{}", serde_json::to_string_pretty(info).unwrap_or_default());
    } else {
        println!("{verb} {}", info.spec.name);
    }
}

/// Run the CLI; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let m = Manager::new(Paths::from_env());
    let json = cli.json;
    let r: Result<i32, SliceError> = (|| match cli.command {
        Cmd::Create { name, image, policy, limits, owners, autostart, no_start, init } => {
            let req = CreateRequest {
                name,
                image: Some(image),
                policy: Some(policy),
                limits: limits.to_limits(),
                owners,
                autostart,
                init,
                net: Default::default(),
                start: !no_start,
            };
            let info = m.create(&req)?;
            print_info(json, &info, if req.start { "created and started" } else { "created" });
            Ok(0)
        }
        Cmd::Start { name } => {
            print_info(json, &m.start(&name)?, "started");
            Ok(0)
        }
        Cmd::Stop { name, timeout } => {
            print_info(json, &m.stop(&name, Duration::from_secs(timeout))?, "stopped");
            Ok(0)
        }
        Cmd::Restart { name, timeout } => {
            m.stop(&name, Duration::from_secs(timeout))?;
            print_info(json, &m.start(&name)?, "restarted");
            Ok(0)
        }
        Cmd::Rm { name } => {
            m.destroy(&name)?;
            if json {
                println!("{}", serde_json::json!({ "destroyed": name }));
            } else {
                println!("destroyed {name}");
            }
            Ok(0)
        }
        Cmd::Ls => {
            let all = m.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else {
                print_table(&all);
            }
            Ok(0)
        }
        Cmd::Inspect { name } => {
            println!("{}", serde_json::to_string_pretty(&m.inspect(&name)?).unwrap_or_default());
            Ok(0)
        }
        Cmd::Set { name, limits } => {
            let l = limits.to_limits();
            let patch = LimitsPatch {
                cpu_weight: l.cpu_weight,
                cpu_max: l.cpu_max,
                cpuset: l.cpuset,
                memory_max: l.memory_max,
                swap_max: l.swap_max,
                pids_max: l.pids_max,
            };
            print_info(json, &m.update_limits(&name, &patch)?, "updated");
            Ok(0)
        }
        Cmd::Exec { name, tty, env, cwd, command } => {
            let req = ExecRequest { argv: command, env, cwd, tty };
            run_shim(m.exec_command(&name, &req, None)?)
        }
        Cmd::Enter { name, shell } => {
            let req = ExecRequest { argv: vec![shell, "-l".into()], env: vec![], cwd: Some("/root".into()), tty: true };
            run_shim(m.exec_command(&name, &req, None)?)
        }
    })();
    match r {
        Ok(code) => code,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": e.to_string(), "field": e.field() }));
            }
            eprintln!("vslice: {e}");
            exit_code(&e)
        }
    }
}

fn run_shim(mut cmd: std::process::Command) -> Result<i32, SliceError> {
    let status = cmd.status().map_err(|e| SliceError::Start { name: String::new(), reason: format!("running vslice-shim: {e}") })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
