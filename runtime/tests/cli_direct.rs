//! `VSLICE_DIRECT=1` against the same state root a real `vsliced` uses: direct mode refuses to
//! act while the daemon serves the root, and when it does act it is locked and audited like
//! the daemon (caller = the local user, `mode: "direct"`), in the same hash chain the daemon
//! goes on writing after it. Needs root (it creates slices).
mod daemon_support;

use daemon_support::*;
use serde_json::Value;
use std::process::{Command, Output};

fn direct(d: &TestDaemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vslice"))
        .env("VSLICE_DIRECT", "1")
        .env("VSLICE_ROOT", &d.root)
        .env("VSLICE_CGROUP_PARENT", &d.cgroup_parent)
        .env("VSLICE_POLICY_DIR", repo_dir().join("policies"))
        .env("VSLICE_SHIM", shim_bin())
        .env_remove("VSLICE_SOCKET")
        .args(args)
        .output()
        .expect("run vslice")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const SLEEPER: &[&str] = &[
    "--init",
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1; done",
];

/// Control records of the log (read directly, as `audit show --json` prints them).
fn control_records(d: &TestDaemon) -> Vec<Value> {
    let o = direct(d, &["audit", "show", "--json", "--kind", "control"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

fn direct_records(d: &TestDaemon) -> Vec<(String, Value)> {
    control_records(d)
        .into_iter()
        .filter(|r| r["caller"]["mode"] == "direct")
        .map(|r| (r["action"].as_str().unwrap_or("").to_string(), r))
        .collect()
}

fn verify_ok(d: &TestDaemon) {
    let o = direct(d, &["audit", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(0), "audit verify: {}", text(&o));
}

#[test]
fn refused_while_the_daemon_serves_the_root_and_audited_without_it() {
    let mut d = TestDaemon::start();

    // While vsliced serves the root: refused (conflict), nothing made, nothing recorded.
    let mut args = vec!["create", "dm1"];
    args.extend_from_slice(SLEEPER);
    let o = direct(&d, &args);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("vsliced is serving"),
        "{}",
        text(&o)
    );
    assert!(d.slice_dirs().is_empty(), "{:?}", d.slice_dirs());
    assert!(direct_records(&d).is_empty());

    // Without the daemon: the action runs and is on record, as root, mode direct.
    d.stop();
    let o = direct(&d, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = direct(&d, &["exec", "dm1", "--", "/bin/sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = direct(&d, &["set", "dm1", "--pids", "200"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A refused action is recorded too, with why.
    let o = direct(&d, &["set", "nosuch", "--pids", "200"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    let recs = direct_records(&d);
    let actions: Vec<&str> = recs.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "create",
            "exec",
            "exec_end",
            "update_limits",
            "update_limits"
        ],
        "{recs:?}"
    );
    for (_, r) in &recs {
        assert_eq!(r["caller"]["uid"], 0, "{r}");
        assert_eq!(r["caller"]["user"], "root", "{r}");
    }
    assert_eq!(recs[0].1["slice"], "dm1");
    assert_eq!(recs[0].1["result"]["status"], 201);
    assert_eq!(recs[1].1["args"]["argv"][2], "exit 3");
    assert_eq!(recs[2].1["result"]["exit_code"], 3);
    assert_eq!(recs[3].1["args"]["pids_max"], 200);
    assert_eq!(recs[4].1["result"]["ok"], false);
    assert_eq!(recs[4].1["result"]["code"], "not_found");
    verify_ok(&d);

    // The daemon takes over the same chain and the same slice.
    d.spawn();
    let (status, body) = d.curl("GET", "/v1/slices/dm1", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.curl("DELETE", "/v1/slices/dm1", None);
    assert_eq!(status, 204, "{body}");
    d.stop();
    verify_ok(&d);
    let daemon_destroy = control_records(&d)
        .into_iter()
        .any(|r| r["action"] == "destroy" && r["caller"]["mode"].is_null());
    assert!(daemon_destroy, "the daemon's own record follows");
}

#[test]
fn concurrent_direct_actions_keep_one_chain() {
    let mut d = TestDaemon::start();
    d.stop();
    // Eight direct-mode commands at once on one root: without the root lock their appends
    // would race (duplicate sequence numbers, a forked chain) and verify would fail.
    let names: Vec<String> = (0..8).map(|i| format!("dc{i}")).collect();
    let handles: Vec<_> = names
        .iter()
        .map(|n| {
            let (root, parent) = (d.root.clone(), d.cgroup_parent.clone());
            let n = n.clone();
            std::thread::spawn(move || {
                Command::new(env!("CARGO_BIN_EXE_vslice"))
                    .env("VSLICE_DIRECT", "1")
                    .env("VSLICE_ROOT", &root)
                    .env("VSLICE_CGROUP_PARENT", &parent)
                    .env("VSLICE_POLICY_DIR", repo_dir().join("policies"))
                    .env("VSLICE_SHIM", shim_bin())
                    .args(["create", &n, "--no-start"])
                    .output()
                    .expect("run vslice")
            })
        })
        .collect();
    for h in handles {
        let o = h.join().expect("thread");
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    verify_ok(&d);
    let creates = direct_records(&d)
        .into_iter()
        .filter(|(a, _)| a == "create")
        .count();
    assert_eq!(creates, 8);
    for n in &names {
        let o = direct(&d, &["rm", n]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    verify_ok(&d);
}
