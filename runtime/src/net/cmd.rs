//! Running `ip`, `tc`, `nft` and `nsenter`, with every failure reported as the command line
//! and its stderr.
//!
//! What still shells out, and why:
//! * A slice's attach and detach fork at most one `nft -f -` and one `tc -batch -` (links,
//!   addresses and routes go through rtnetlink, see `rtnl.rs`).
//! * tc: `netlink-packet-route` has qdisc/class/filter messages but no HTB class options nor
//!   u32 selectors with hash keys and mirred actions; they would be raw attributes built by
//!   hand. `tc -batch` until that crate has them (see `tc.rs`).
//! * nftables: no maintained Rust crate speaks the nf_tables netlink transaction API with
//!   expression building (the `nftables` crate itself shells out to `nft -j`; `rustables` has
//!   had no release in years). One `nft -f` transaction per change (see `nft.rs`).
//! * Node-level steps that run once (`NodeNet::ensure`, `teardown`: the bridge, the IFBs) and
//!   reads that are not on the create path (`tc -s class show` for counters) still use
//!   `ip`/`tc`: they could move to `rtnl.rs` the same way, at no gain in latency that matters.
use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::fs::PathError;

/// Errors of the networking module. Validation errors name the spec field.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A spec or configuration value is invalid: `field` is a path like `net.ports[0].host_port`.
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    /// A command failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The request does not fit the current state (unknown slice, exhausted subnet, ...).
    #[error("{0}")]
    State(String),
}

impl NetError {
    pub(crate) fn invalid(field: impl Into<String>, msg: impl Into<String>) -> NetError {
        NetError::Invalid {
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// True for a command failure whose stderr says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            NetError::Command { stderr, .. } => {
                let s = stderr.to_ascii_lowercase();
                s.contains("cannot find device")
                    || s.contains("does not exist")
                    || s.contains("no such file or directory")
                    || s.contains("no such device")
                    || s.contains("cannot find specified")
            }
            _ => false,
        }
    }
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;

fn command_line(program: &str, args: &[&str]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(a);
        }
    }
    s
}

fn package_of(program: &str) -> &'static str {
    match program {
        "ip" | "tc" => "iproute2",
        "nft" => "nftables",
        "nsenter" => "util-linux",
        _ => "the package providing it",
    }
}

/// Run `program args...` with `input` on stdin (if any); return stdout.
pub(crate) fn run_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let cmd = command_line(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Command {
            cmd: cmd.clone(),
            status: "not started".into(),
            stderr: if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program} not found (install {})", package_of(program))
            } else {
                e.to_string()
            },
        })?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A write error (EPIPE) shows up as the command's own failure below.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| NetError::Command {
        cmd: cmd.clone(),
        status: "wait failed".into(),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        if let Some(input) = input {
            // Batch input: show it, so that a line number in the error can be looked up.
            const MAX: usize = 4000;
            let shown: String = input.chars().take(MAX).collect();
            stderr.push_str("\n--- input ---\n");
            stderr.push_str(&shown);
            if input.len() > MAX {
                stderr.push_str("\n...");
            }
        }
        let status = match out.status.code() {
            Some(c) => format!("exit {c}"),
            None => format!("{}", out.status),
        };
        Err(NetError::Command {
            cmd,
            status,
            stderr,
        })
    }
}

/// Run `program args...`; return stdout.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    run_input(program, args, None)
}

/// Like [`run`], but a "does not exist" failure is `Ok(None)`.
pub(crate) fn run_opt(program: &str, args: &[&str]) -> Result<Option<String>> {
    match run(program, args) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Run `program args...` inside the network namespace at `netns` (host root, only the network
/// namespace is joined: the tools and files are the host's).
pub(crate) fn run_in_netns(
    netns: &std::path::Path,
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String> {
    let ns_arg = format!("--net={}", netns.display());
    let mut full: Vec<&str> = vec![&ns_arg, "--", program];
    full.extend_from_slice(args);
    run_input("nsenter", &full, input)
}

/// Does a network device exist in the host (caller's) network namespace?
pub(crate) fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Write a sysctl under /proc/sys (of the caller's network namespace).
pub(crate) fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| PathError::new("write", path, e).into())
}
