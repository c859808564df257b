//! `vslice who` and `vslice audit flows|execs`: answering complaints from the flow and exec logs. In daemon
//! mode they ask the daemon (`GET /v1/who`, `GET /v1/audit/flows`); in direct mode they read
//! `<root>/audit/flows/` themselves (read-only: the flow log is written by the daemon only).
use super::{exit, out, out_json, Backend, CliError, R};
use crate::proto::accounting::{KindQuery, WhoAnswer, WhoParams};

/// Arguments of `vslice who`.
#[derive(clap::Args, Debug)]
pub struct WhoArgs {
    /// The complainant's address, optionally with a port: the address and port a slice
    /// connected to (or, for a port forward, the address that connected in).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub remote: String,
    /// Only this protocol.
    #[arg(long, value_parser = ["tcp", "udp"])]
    pub proto: Option<String>,
    /// When it happened: RFC 3339 (2024-05-01T14:03:00Z), YYYY-MM-DD or epoch seconds.
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// How far around --at to look (90s, 10m, 2h, 1d).
    #[arg(long, default_value = "10m")]
    pub window: String,
}

/// Arguments of `vslice audit flows` and `vslice audit execs`.
#[derive(clap::Args, Debug)]
pub struct FlowsArgs {
    /// Only this slice's flows.
    #[arg(long)]
    pub slice: Option<String>,
    /// From this time on (default: 24 hours ago).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time (default: now).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// At most this many records (default 10000).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

fn param_err(e: crate::audit::flows::ParamError) -> CliError {
    CliError::new(exit::INVALID, "invalid", format!("--{}", e))
}

fn audit_dir(b: &Backend) -> Option<std::path::PathBuf> {
    match b {
        Backend::Direct(d) => Some(d.paths.root.join("audit")),
        Backend::Daemon(_) => None,
    }
}

pub(super) fn who(b: &Backend, a: WhoArgs, json: bool) -> R<i32> {
    let p = WhoParams {
        remote: a.remote,
        proto: a.proto,
        at: a.at,
        window: Some(a.window),
    };
    let answer = match (b, audit_dir(b)) {
        (Backend::Daemon(c), _) => c.who(&p)?,
        (_, Some(dir)) => crate::audit::flows::who_params(&dir, &p, 300_000)
            .map_err(param_err)?
            .map_err(|e| CliError::failure(format!("flow log: {e}")))?,
        _ => return Err(CliError::failure("no backend")),
    };
    if json {
        out_json(&answer);
    } else {
        out(who_text(&answer).trim_end());
    }
    Ok(if answer.flows.is_empty() {
        exit::NOT_FOUND
    } else {
        exit::OK
    })
}

/// The readable answer: one block per flow.
pub fn who_text(a: &WhoAnswer) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
    let _ = writeln!(
        s,
        "remote {}{} between {} and {}: {}",
        a.remote,
        port(a.port),
        a.from,
        a.to,
        if a.slices.is_empty() {
            "no slice".to_string()
        } else {
            a.slices.join(", ")
        }
    );
    if a.lossy {
        let _ = writeln!(
            s,
            "WARNING: the flow log lost records in this window ({} loss event(s)): the answer may be incomplete",
            a.lost
        );
    }
    for f in &a.flows {
        let _ = writeln!(
            s,
            "{} ({}) {} {} {}{} -> public {}{} -> remote {}{}  {} .. {}{}  bytes out {} in {}  via {}",
            f.slice,
            if f.owners.is_empty() {
                "no owners".to_string()
            } else {
                f.owners.join(",")
            },
            f.proto,
            f.direction,
            f.slice_addr,
            port(f.slice_port),
            f.public_addr,
            port(f.public_port),
            f.remote_addr,
            port(f.remote_port),
            f.first_seen,
            f.last_seen,
            if f.end.is_some() { " (ended)" } else { "" },
            f.bytes_from_slice.map(|b| b.to_string()).unwrap_or("?".into()),
            f.bytes_to_slice.map(|b| b.to_string()).unwrap_or("?".into()),
            f.veth,
        );
        if let Some(p) = &f.process {
            let _ = writeln!(
                s,
                "  process: pid {} (in slice {}) uid {} (in slice {}) {} {}",
                p.pid,
                p.pid_in_slice.map(|x| x.to_string()).unwrap_or("?".into()),
                p.uid.map(|x| x.to_string()).unwrap_or("?".into()),
                p.uid_in_slice.map(|x| x.to_string()).unwrap_or("?".into()),
                p.comm,
                p.argv
                    .as_ref()
                    .map(|a| format!("{a:?}"))
                    .unwrap_or_default(),
            );
        }
    }
    s
}

/// `vslice audit flows` / `vslice audit execs`.
pub(super) fn records(b: &Backend, kind: &str, a: FlowsArgs) -> R<i32> {
    let q = KindQuery {
        slice: a.slice,
        since: a.since,
        until: a.until,
        limit: a.limit,
    };
    let lines = match (b, audit_dir(b)) {
        (Backend::Daemon(c), _) => c.audit_kind(kind, &q)?,
        (_, Some(dir)) => crate::audit::flows::kind_params(&dir, kind, &q)
            .map_err(param_err)?
            .map_err(|e| CliError::failure(format!("flow log: {e}")))?
            .iter()
            .map(crate::audit::canonical_json)
            .collect(),
        _ => return Err(CliError::failure("no backend")),
    };
    // The stored lines are JSON already; --json and plain output are the same (for jq).
    for l in &lines {
        out(l);
    }
    Ok(exit::OK)
}
