//! Human-readable output of the CLI: tables and one-line renderings of events and audit
//! records (with `--json` the CLI prints the API's JSON instead).
use super::units::format_size;
use crate::api::types::{Event, EventKind, Image, Stats, VerifyReport};
use crate::slice::{Limits, SliceInfo, Status};
use serde_json::Value;
use std::fmt::Write;

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Running => "running",
        Status::Stopped => "stopped",
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// `vslice ls`.
pub fn slice_table(slices: &[SliceInfo]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<8} {:>8} {:<10} {:>6} {:>8} {:>8} {:>6}",
        "NAME", "STATUS", "PID", "IMAGE", "CPUS", "MEMORY", "MEM-USE", "PIDS"
    );
    for i in slices {
        let l = &i.spec.limits;
        let _ = writeln!(
            s,
            "{:<20} {:<8} {:>8} {:<10} {:>6} {:>8} {:>8} {:>6}",
            i.spec.name,
            status_str(i.status),
            opt(i.init_pid),
            i.spec.image,
            opt(l.cpu_max),
            l.memory_max.map(format_size).unwrap_or_else(|| "-".into()),
            i.usage
                .as_ref()
                .map(|u| format_size(u.memory_current))
                .unwrap_or_else(|| "-".into()),
            i.usage
                .as_ref()
                .map(|u| u.pids_current.to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }
    s
}

fn cpu_time(ns: u64) -> String {
    let secs = ns as f64 / 1e9;
    if secs < 60.0 {
        format!("{secs:.2}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, secs as u64 % 60)
    } else {
        format!("{}h{:02}m", (secs / 3600.0) as u64, (secs as u64 / 60) % 60)
    }
}

/// `vslice stats`.
pub fn stats_table(all: &[Stats]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<8} {:>10} {:>6} {:>8} {:>8} {:>8} {:>6} {:>8} {:>4}",
        "NAME",
        "STATUS",
        "CPU-TIME",
        "CPUS",
        "MEM-USE",
        "MEM-PEAK",
        "MEMORY",
        "PIDS",
        "PIDS-MAX",
        "OOM"
    );
    for st in all {
        let u = st.usage.as_ref();
        let _ = writeln!(
            s,
            "{:<20} {:<8} {:>10} {:>6} {:>8} {:>8} {:>8} {:>6} {:>8} {:>4}",
            st.slice,
            status_str(st.status),
            u.map(|u| cpu_time(u.cpu_usage_ns))
                .unwrap_or_else(|| "-".into()),
            opt(st.limits.cpu_max),
            u.map(|u| format_size(u.memory_current))
                .unwrap_or_else(|| "-".into()),
            u.map(|u| format_size(u.memory_peak))
                .unwrap_or_else(|| "-".into()),
            st.limits
                .memory_max
                .map(format_size)
                .unwrap_or_else(|| "-".into()),
            opt(u.map(|u| u.pids_current)),
            opt(st.limits.pids_max),
            opt(u.map(|u| u.oom_kills)),
        );
    }
    s
}

/// Limits as `cpus=0.5 memory=256M pids=256`.
pub fn limits_str(l: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(v) = l.cpu_weight {
        parts.push(format!("cpu-weight={v}"));
    }
    if let Some(v) = l.cpu_max {
        parts.push(format!("cpus={v}"));
    }
    if let Some(v) = &l.cpuset {
        parts.push(format!("cpuset={v}"));
    }
    if let Some(v) = l.memory_max {
        parts.push(format!("memory={}", format_size(v)));
    }
    if let Some(v) = l.swap_max {
        parts.push(format!("swap={}", format_size(v)));
    }
    if let Some(v) = l.pids_max {
        parts.push(format!("pids={v}"));
    }
    super::disk::limits_parts(l, &mut parts);
    if parts.is_empty() {
        "no limits".into()
    } else {
        parts.join(" ")
    }
}

/// One line per event: `TIME SLICE TYPE DETAILS`.
pub fn event_line(e: &Event) -> String {
    let detail = match &e.kind {
        EventKind::Created | EventKind::Destroyed => String::new(),
        EventKind::Started { init_pid } => init_pid
            .map(|p| format!("init pid {p}"))
            .unwrap_or_default(),
        EventKind::Exited {
            reason,
            code,
            signal,
        } => {
            let mut d = reason.clone();
            if let Some(c) = code {
                let _ = write!(d, ", exit code {c}");
            }
            if let Some(s) = signal {
                let _ = write!(d, ", signal {s}");
            }
            d
        }
        EventKind::Oom { oom_kills } => format!("{oom_kills} OOM kill(s) so far"),
        EventKind::LimitsChanged { limits } => limits_str(limits),
        EventKind::Lagged { missed } => format!("{missed} events missed (reader too slow)"),
    };
    format!(
        "{} {:<20} {:<14} {}",
        e.time,
        e.slice,
        e.kind.name(),
        detail
    )
    .trim_end()
    .to_string()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// One audit record (a stored JSON line) as a readable line.
pub fn audit_line(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return format!("(unreadable record) {line}");
    };
    let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let head = format!("{seq:>6} {}", s(&v, "time"));
    match s(&v, "kind") {
        "control" => {
            let c = v.get("caller").cloned().unwrap_or(Value::Null);
            let who = match (c.get("user").and_then(Value::as_str), c.get("uid")) {
                (Some(u), _) => u.to_string(),
                (None, Some(uid)) => format!("uid {uid}"),
                _ => "?".into(),
            };
            let pid = c
                .get("pid")
                .and_then(Value::as_i64)
                .map(|p| format!(" pid {p}"))
                .unwrap_or_default();
            let r = v.get("result").cloned().unwrap_or(Value::Null);
            let result = if r.get("ok").and_then(Value::as_bool) == Some(true) {
                match r.get("exit_code").and_then(Value::as_i64) {
                    Some(code) => format!("ok, exit code {code}"),
                    None => "ok".to_string(),
                }
            } else {
                format!(
                    "FAILED {} {}: {}",
                    r.get("status").and_then(Value::as_u64).unwrap_or(0),
                    s(&r, "code"),
                    s(&r, "message")
                )
            };
            let args = v.get("args").cloned().unwrap_or(Value::Null);
            let argv = args
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| {
                    let words: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                    format!(" [{}]", words.join(" "))
                })
                .unwrap_or_default();
            format!(
                "{head} {:<14} {:<20} by {who}{pid}{argv}: {result}",
                s(&v, "action"),
                v.get("slice").and_then(Value::as_str).unwrap_or("-"),
            )
        }
        "daemon" => {
            let mut line = format!(
                "{head} daemon {:<7} pid {} (vsliced {})",
                s(&v, "event"),
                v.get("pid").and_then(Value::as_u64).unwrap_or(0),
                s(&v, "version")
            );
            if let Some(sl) = v.get("slice").and_then(Value::as_str) {
                let _ = write!(line, " slice {sl}");
            }
            if let Some(d) = v.get("detail").and_then(Value::as_str) {
                let _ = write!(line, ": {d}");
            }
            line
        }
        kind => {
            // A kind this CLI does not know yet: show its own fields.
            let mut rest = v.clone();
            if let Some(o) = rest.as_object_mut() {
                for k in ["seq", "time", "kind", "hash", "prev_hash"] {
                    o.remove(k);
                }
            }
            format!("{head} {kind} {rest}")
        }
    }
}

/// `vslice audit verify`.
pub fn verify_report(r: &VerifyReport) -> String {
    let mut s = String::new();
    let short = |h: &str| h.chars().take(16).collect::<String>();
    if r.ok {
        let _ = writeln!(
            s,
            "audit log OK: {} records in {} segment(s), last seq {}, hash {}…",
            r.records,
            r.segments,
            r.last_seq,
            short(&r.last_hash)
        );
    } else {
        let _ = writeln!(
            s,
            "audit log DAMAGED: {} problem(s) in {} records, {} segment(s)",
            r.problems.len(),
            r.records,
            r.segments
        );
        for p in &r.problems {
            let seq = p.seq.map(|q| format!(" (seq {q})")).unwrap_or_default();
            let _ = writeln!(s, "  {}:{}{seq}: {}", p.segment, p.line, p.reason);
        }
    }
    if let Some(h) = &r.head {
        let _ = writeln!(s, "head: seq {}, hash {}…", h.seq, short(&h.hash));
    }
    s
}

/// `vslice images`.
pub fn image_table(images: &[Image], with_size: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<20} {:>8} {:<24} ROOTFS", "NAME", "SIZE", "CREATED");
    for i in images {
        let _ = writeln!(
            s,
            "{:<20} {:>8} {:<24} {}",
            i.name,
            if with_size {
                format_size(i.size_bytes)
            } else {
                "-".into()
            },
            if i.created > 0 {
                crate::audit::time::format_secs(i.created)
            } else {
                "-".into()
            },
            i.rootfs.display()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_read_well() {
        let l = r#"{"action":"create","args":{"name":"web"},"caller":{"pid":42,"uid":0,"user":"root"},"hash":"x","kind":"control","prev_hash":"y","result":{"ok":true,"status":201},"seq":17,"slice":"web","time":"2026-05-01T14:02:03.123Z"}"#;
        let s = audit_line(l);
        assert!(
            s.contains("create")
                && s.contains("web")
                && s.contains("root pid 42")
                && s.ends_with("ok"),
            "{s}"
        );
        let l = r#"{"action":"update_limits","caller":{"uid":1000},"kind":"control","result":{"ok":false,"status":400,"code":"invalid","message":"limits.memory_max: too big"},"seq":3,"slice":"web","time":"t"}"#;
        let s = audit_line(l);
        assert!(s.contains("FAILED 400 invalid: limits.memory_max"), "{s}");
        let s = audit_line(r#"{"kind":"flow","seq":9,"time":"t","bytes":5}"#);
        assert!(s.contains("flow") && s.contains("\"bytes\":5"), "{s}");
        let s = audit_line(
            r#"{"kind":"daemon","event":"start","pid":7,"version":"0.1.0","seq":1,"time":"t"}"#,
        );
        assert!(s.contains("daemon start") && s.contains("pid 7"), "{s}");
    }

    #[test]
    fn events_read_well() {
        let e: Event = serde_json::from_str(
            r#"{"seq":3,"time":"2026-05-01T14:02:03.123Z","slice":"web","type":"exited","reason":"signaled","signal":9}"#,
        )
        .unwrap();
        let s = event_line(&e);
        assert!(
            s.contains("web") && s.contains("exited") && s.contains("signaled, signal 9"),
            "{s}"
        );
    }
}
