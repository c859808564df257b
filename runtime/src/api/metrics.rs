//! Prometheus text exposition: per-slice usage (read on each scrape) and the daemon's own
//! request counters and latency histograms (kept here).
use crate::slice::{SliceInfo, Status};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request metrics, keyed by (method, route template) — `/v1/slices/{name}`, never the
/// concrete path, so the number of series is bounded by the route table.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
}

impl RequestMetrics {
    pub fn new() -> RequestMetrics {
        RequestMetrics::default()
    }

    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let s = routes
            .entry((method.to_string(), route.to_string()))
            .or_default();
        *s.by_status.entry(status).or_default() += 1;
        let secs = elapsed.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
        s.count += 1;
        s.sum += secs;
    }

    /// Append the request series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        header(
            out,
            "vslice_http_requests_total",
            "counter",
            "API requests by method, route and status.",
        );
        for ((method, route), s) in &routes {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "vslice_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                    esc(method),
                    esc(route)
                );
            }
        }
        header(
            out,
            "vslice_http_request_duration_seconds",
            "histogram",
            "Time to the response head, by method and route.",
        );
        for ((method, route), s) in &routes {
            let labels = format!("method=\"{}\",route=\"{}\"", esc(method), esc(route));
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "vslice_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "vslice_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "vslice_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "vslice_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escape a label value.
pub fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Per-slice series from a list of slices.
pub fn render_slices(out: &mut String, slices: &[SliceInfo]) {
    let running = slices
        .iter()
        .filter(|s| s.status == Status::Running)
        .count();
    header(out, "vslice_slices", "gauge", "Slices by status.");
    let _ = writeln!(out, "vslice_slices{{status=\"running\"}} {running}");
    let _ = writeln!(
        out,
        "vslice_slices{{status=\"stopped\"}} {}",
        slices.len() - running
    );
    type Get = fn(&SliceInfo) -> Option<String>;
    let series: [(&str, &str, &str, Get); 7] = [
        (
            "vslice_slice_running",
            "gauge",
            "1 if the slice is running.",
            |s| Some(((s.status == Status::Running) as u8).to_string()),
        ),
        (
            "vslice_slice_cpu_seconds_total",
            "counter",
            "CPU time used by the slice's processes.",
            |s| {
                s.usage
                    .as_ref()
                    .map(|u| (u.cpu_usage_ns as f64 / 1e9).to_string())
            },
        ),
        (
            "vslice_slice_memory_bytes",
            "gauge",
            "Memory charged to the slice now.",
            |s| s.usage.as_ref().map(|u| u.memory_current.to_string()),
        ),
        (
            "vslice_slice_memory_peak_bytes",
            "gauge",
            "Peak memory charged to the slice.",
            |s| s.usage.as_ref().map(|u| u.memory_peak.to_string()),
        ),
        (
            "vslice_slice_pids",
            "gauge",
            "Tasks (processes and threads) in the slice.",
            |s| s.usage.as_ref().map(|u| u.pids_current.to_string()),
        ),
        (
            "vslice_slice_oom_kills_total",
            "counter",
            "Processes of the slice killed by the OOM killer.",
            |s| s.usage.as_ref().map(|u| u.oom_kills.to_string()),
        ),
        (
            "vslice_slice_memory_limit_bytes",
            "gauge",
            "The slice's memory limit.",
            |s| s.spec.limits.memory_max.map(|m| m.to_string()),
        ),
    ];
    for (name, kind, help, get) in series {
        header(out, name, kind, help);
        for s in slices {
            if let Some(v) = get(s) {
                let _ = writeln!(out, "{name}{{slice=\"{}\"}} {v}", esc(&s.spec.name));
            }
        }
    }
}

/// Daemon process series.
pub fn render_daemon(out: &mut String, start_unix: u64, rss: u64, followers: usize, locks: usize) {
    header(
        out,
        "vslice_daemon_start_time_seconds",
        "gauge",
        "When the daemon started (Unix time).",
    );
    let _ = writeln!(out, "vslice_daemon_start_time_seconds {start_unix}");
    header(
        out,
        "vslice_daemon_resident_memory_bytes",
        "gauge",
        "Resident set size of the daemon.",
    );
    let _ = writeln!(out, "vslice_daemon_resident_memory_bytes {rss}");
    header(
        out,
        "vslice_daemon_event_followers",
        "gauge",
        "Clients following GET /v1/events.",
    );
    let _ = writeln!(out, "vslice_daemon_event_followers {followers}");
    header(
        out,
        "vslice_daemon_slice_locks",
        "gauge",
        "Slices with an operation in progress or waiting.",
    );
    let _ = writeln!(out, "vslice_daemon_slice_locks {locks}");
    let _ = writeln!(
        out,
        "vslice_daemon_info{{version=\"{}\"}} 1",
        crate::daemon::VERSION
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_counters() {
        let m = RequestMetrics::new();
        m.record("GET", "/v1/slices/{name}", 200, Duration::from_millis(3));
        m.record("GET", "/v1/slices/{name}", 404, Duration::from_millis(30));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(r#"vslice_http_requests_total{method="GET",route="/v1/slices/{name}",status="200"} 1"#), "{out}");
        assert!(out.contains(
            r#"vslice_http_requests_total{method="GET",route="/v1/slices/{name}",status="404"} 1"#
        ));
        assert!(out.contains(r#"vslice_http_request_duration_seconds_bucket{method="GET",route="/v1/slices/{name}",le="0.005"} 1"#));
        assert!(out.contains(r#"vslice_http_request_duration_seconds_bucket{method="GET",route="/v1/slices/{name}",le="0.05"} 2"#));
        assert!(out.contains(r#"le="+Inf"} 2"#));
        assert!(out.contains(r#"vslice_http_request_duration_seconds_count{method="GET",route="/v1/slices/{name}"} 2"#));
        // Every non-comment line is `name{labels} value` with a numeric value.
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let v = line.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn label_escaping() {
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
