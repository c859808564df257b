//! `vslice who` and `vslice audit flows|execs` in direct mode over a flow log written here
//! (the collector itself is tested in acct_flows.rs): the answer names the slice, owners and
//! public address; a lossy window says so; bad input names the flag; no match exits 3.
use std::path::Path;
use std::process::{Command, Output};

use vslice::audit::records::KindLog;
use vslice::audit::time;

fn vslice(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vslice"))
        .env("VSLICE_DIRECT", "1")
        .env("VSLICE_ROOT", root)
        .env_remove("VSLICE_SOCKET")
        .args(args)
        .output()
        .expect("run vslice")
}

fn flow(slice: &str, src: &str, remote: &str, port: u16) -> serde_json::Value {
    serde_json::json!({
        "event": "new", "slice": slice, "owners": ["alice"], "veth": "vs2", "mark": 1,
        "ct_id": 7, "proto": "tcp", "dir": "out",
        "orig": {"src": src, "dst": remote, "sport": 40000, "dport": port},
        "reply": {"src": remote, "dst": "192.0.2.1", "sport": port, "dport": 40001},
    })
}

#[test]
fn who_and_audit_flows_in_direct_mode() {
    let d = tempfile::Builder::new()
        .prefix("vslice-test-acctcli")
        .tempdir()
        .unwrap();
    let audit = d.path().join("audit");
    let (mut log, _) = KindLog::open(&audit, "flows", 1 << 20, 0).unwrap();
    let t = time::now_millis() - 60_000;
    log.append(t, flow("web", "10.213.0.2", "203.0.113.7", 22))
        .unwrap();
    log.append(t + 1000, flow("db", "10.213.0.3", "203.0.113.8", 22))
        .unwrap();
    log.flush().unwrap();
    let at = time::format_millis(t);

    let o = vslice(
        d.path(),
        &["who", "--remote", "203.0.113.7:22", "--at", &at],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("web (alice) tcp out 10.213.0.2:40000 -> public 192.0.2.1:40001 -> remote 203.0.113.7:22"), "{out}");
    assert!(!out.contains("db"), "{out}");

    let o = vslice(
        d.path(),
        &[
            "--json",
            "who",
            "--remote",
            "203.0.113.8",
            "--at",
            &at,
            "--window",
            "5m",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["slices"], serde_json::json!(["db"]));
    assert_eq!(v["lossy"], false);

    // Nobody an hour earlier: exit 3.
    let o = vslice(
        d.path(),
        &[
            "who",
            "--remote",
            "203.0.113.7:22",
            "--at",
            &time::format_millis(t - 3_600_000),
        ],
    );
    assert_eq!(o.status.code(), Some(3));

    // Bad input names the flag.
    let o = vslice(d.path(), &["who", "--remote", "nowhere:22", "--at", &at]);
    assert_eq!(o.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--remote"),
        "{o:?}"
    );
    let o = vslice(
        d.path(),
        &[
            "who",
            "--remote",
            "203.0.113.7",
            "--at",
            &at,
            "--window",
            "3w",
        ],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--window"),
        "{o:?}"
    );

    // A loss in the window is reported.
    log.append(
        t + 2000,
        serde_json::json!({"event": "loss", "reason": "ENOBUFS"}),
    )
    .unwrap();
    log.flush().unwrap();
    let o = vslice(
        d.path(),
        &["who", "--remote", "203.0.113.7:22", "--at", &at],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("WARNING: the flow log lost records"));

    // The stored records, for jq.
    let o = vslice(
        d.path(),
        &[
            "audit",
            "flows",
            "--slice",
            "web",
            "--since",
            &time::format_millis(t - 1000),
        ],
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["slice"], "web");
    let o = vslice(d.path(), &["audit", "execs"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}
