//! The `vslice` CLI end to end against a real `vsliced` on a temporary socket, state root and
//! cgroup parent (the daemon tests' harness): lifecycle, output, exit codes and error messages,
//! spec files, exec and enter, events, the audit log, and the message when the daemon is not
//! running. Needs root (it creates slices). Everything is torn down on drop, also on failure.
mod daemon_support;

use daemon_support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a `vslice` run gave.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

fn vslice_cmd(socket: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vslice"));
    c.env("VSLICE_SOCKET", socket)
        .env_remove("VSLICE_DIRECT")
        .env_remove("VSLICE_ROOT");
    c
}

/// Run `vslice ARGS` against `socket`, with `stdin` (else an empty standard input).
fn run(socket: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = vslice_cmd(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vslice");
    {
        let mut w = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            w.write_all(s.as_bytes()).unwrap();
        }
    }
    let o = child.wait_with_output().expect("vslice output");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn vs(d: &TestDaemon, args: &[&str]) -> Out {
    run(&d.socket, args, None)
}

/// `vslice ARGS`, which must succeed.
fn ok(d: &TestDaemon, args: &[&str]) -> Out {
    let o = vs(d, args);
    assert_eq!(o.code, 0, "vslice {args:?}: {o:?}");
    o
}

/// `vslice ARGS`, which must fail with `code`.
fn fails(d: &TestDaemon, args: &[&str], code: i32) -> Out {
    let o = vs(d, args);
    assert_eq!(o.code, code, "vslice {args:?}: {o:?}");
    o
}

const SLEEPER: &[&str] = &[
    "--init",
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 1; done",
];

fn create_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["create", name];
    a.extend_from_slice(extra);
    a.extend_from_slice(SLEEPER);
    a
}

fn limit_file(d: &TestDaemon, slice: &str, v1: &str, v2: &str) -> Option<String> {
    let (c1, f1) = v1.split_once('/').unwrap();
    [
        format!("/sys/fs/cgroup/{c1}/{}/{slice}/{f1}", d.cgroup_parent),
        format!("/sys/fs/cgroup/{}/{slice}/{v2}", d.cgroup_parent),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
}

fn memory_limit(d: &TestDaemon, slice: &str) -> Option<u64> {
    limit_file(d, slice, "memory/memory.limit_in_bytes", "memory.max")?
        .parse()
        .ok()
}

fn pids_limit(d: &TestDaemon, slice: &str) -> Option<String> {
    limit_file(d, slice, "pids/pids.max", "pids.max")
}

#[test]
fn daemon_not_running_is_exit_6_with_a_helpful_message() {
    let sock = format!("/tmp/vslice-test-nodaemon-{}.sock", std::process::id());
    let sock = Path::new(&sock);
    let _ = std::fs::remove_file(sock);
    for args in [
        &["ls"][..],
        &["inspect", "web"],
        &["create", "web"],
        &["audit", "verify"],
        &["events"],
    ] {
        let o = run(sock, args, None);
        assert_eq!(o.code, 6, "{args:?}: {o:?}");
        assert!(
            o.stderr.contains(&format!(
                "vsliced is not running (socket {}): start it with `systemctl start vsliced` or `vsliced &`, or set VSLICE_DIRECT=1",
                sock.display()
            )),
            "{args:?}: {o:?}"
        );
    }
    let o = run(sock, &["ls", "--json"], None);
    assert_eq!(o.code, 6);
    let e = o.json();
    assert_eq!(
        (e["code"].as_str(), e["exit_code"].as_i64()),
        (Some("unreachable"), Some(6))
    );
    // A socket file with nobody behind it is the same.
    let l = std::os::unix::net::UnixListener::bind(sock).unwrap();
    drop(l);
    let o = run(sock, &["ls"], None);
    assert_eq!(o.code, 6, "{o:?}");
    let _ = std::fs::remove_file(sock);
    // Usage errors come before any connection.
    assert_eq!(run(sock, &["create"], None).code, 2);
    assert_eq!(run(sock, &["frobnicate"], None).code, 2);
    let help = run(sock, &["--help"], None);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("VSLICE_DIRECT=1") && help.stdout.contains("Exit codes"));
}

#[test]
fn lifecycle_through_the_cli() {
    let d = TestDaemon::start();
    // Create with human units.
    let o = ok(
        &d,
        &create_args(
            "web",
            &["--memory", "256M", "--cpus", "0.5", "--pids", "64"],
        ),
    );
    assert_eq!(o.stdout.trim(), "created and started web");
    assert_eq!(memory_limit(&d, "web"), Some(256 << 20));
    assert_eq!(pids_limit(&d, "web").as_deref(), Some("64"));

    // ls: a table, and JSON.
    let o = ok(&d, &["ls"]);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATUS"),
        "{o:?}"
    );
    assert!(
        lines[1].starts_with("web") && lines[1].contains("running") && lines[1].contains("256M"),
        "{o:?}"
    );
    let all = ok(&d, &["ls", "--json"]).json();
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(all[0]["spec"]["limits"]["memory_max"], 256u64 << 20);

    // inspect: JSON with the init pid and uid range.
    let info = ok(&d, &["inspect", "web"]).json();
    assert_eq!(info["status"], "running");
    let pid = info["init_pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert!(info["spec"]["uid_base"].as_u64().unwrap() > 0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.contains(&info["spec"]["uid_base"].to_string()),
        "init runs as the slice's base uid on the host: {uid_line}"
    );

    // set: live limits.
    let o = ok(&d, &["set", "web", "--memory", "128M", "--pids", "32"]);
    assert_eq!(o.stdout.trim(), "updated web");
    assert_eq!(memory_limit(&d, "web"), Some(128 << 20));
    assert_eq!(pids_limit(&d, "web").as_deref(), Some("32"));
    let info = ok(&d, &["set", "web", "--cpus", "0.25", "--json"]).json();
    assert_eq!(info["spec"]["limits"]["cpu_max"], 0.25);

    // exec: output on stdout and stderr, the command's exit code.
    let o = vs(
        &d,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "id -u; echo oops >&2; exit 7",
        ],
    );
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (7, "0\n", "oops\n"),
        "{o:?}"
    );
    let o = vs(
        &d,
        &[
            "exec",
            "web",
            "-e",
            "GREETING=hi there",
            "-w",
            "/tmp",
            "--",
            "sh",
            "-c",
            "echo $GREETING in $(pwd)",
        ],
    );
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "hi there in /tmp\n"),
        "{o:?}"
    );
    let o = run(
        &d.socket,
        &["exec", "-i", "web", "--", "tr", "a-z", "A-Z"],
        Some("hello\n"),
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "HELLO\n"), "{o:?}");
    let o = vs(&d, &["exec", "web", "--", "cat"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, ""),
        "no -i: empty stdin: {o:?}"
    );
    assert_eq!(vs(&d, &["exec", "web", "--", "/no/such/command"]).code, 127);
    let o = vs(&d, &["exec", "web", "--timeout", "1", "--", "sleep", "30"]);
    assert_eq!(o.code, 137, "{o:?}");
    let j = ok(&d, &["exec", "web", "--json", "--", "echo", "out"]).json();
    assert_eq!(
        (j["exit_code"].as_i64(), j["stdout"].as_str()),
        (Some(0), Some("out\n"))
    );

    // stats.
    let st = ok(&d, &["stats", "web", "--json"]).json();
    assert_eq!(st["slice"], "web");
    assert!(st["usage"]["pids_current"].as_u64().unwrap() >= 1, "{st}");
    let o = ok(&d, &["stats"]);
    assert!(o.stdout.lines().nth(1).unwrap().starts_with("web"), "{o:?}");

    // stop / start / restart.
    let o = ok(&d, &["stop", "web", "--timeout", "5"]);
    assert_eq!(o.stdout.trim(), "stopped web");
    assert_eq!(ok(&d, &["inspect", "web"]).json()["status"], "stopped");
    let o = fails(&d, &["exec", "web", "--", "true"], 4);
    assert!(o.stderr.contains("web"), "{o:?}");
    assert_eq!(ok(&d, &["start", "web"]).stdout.trim(), "started web");
    fails(&d, &["start", "web"], 4);
    let old = ok(&d, &["inspect", "web"]).json()["init_pid"].as_i64();
    let info = ok(&d, &["restart", "web", "--json"]).json();
    assert_eq!(info["status"], "running");
    assert_ne!(info["init_pid"].as_i64(), old);
    // Limits survive a restart.
    assert_eq!(memory_limit(&d, "web"), Some(128 << 20));

    // A second slice, not started.
    let o = ok(&d, &create_args("idle", &["--no-start"]));
    assert_eq!(o.stdout.trim(), "created idle");
    assert_eq!(ok(&d, &["inspect", "idle"]).json()["status"], "stopped");

    // rm.
    assert_eq!(ok(&d, &["rm", "web"]).stdout.trim(), "destroyed web");
    let j = ok(&d, &["destroy", "idle", "--json"]).json();
    assert_eq!(j["destroyed"], "idle");
    assert_eq!(ok(&d, &["ls", "--json"]).json(), Value::Array(vec![]));
    d.assert_consistent();
    assert!(d.cgroups().is_empty(), "{:?}", d.cgroups());
}

#[test]
fn errors_have_exit_codes_and_name_the_field() {
    let d = TestDaemon::start();
    // Not found: 3.
    for args in [
        &["inspect", "nope"][..],
        &["rm", "nope"],
        &["start", "nope"],
        &["stop", "nope"],
        &["set", "nope", "--pids", "10"],
        &["exec", "nope", "--", "true"],
        &["stats", "nope"],
    ] {
        let o = fails(&d, args, 3);
        assert!(
            o.stderr.contains("\"nope\"") && o.stderr.contains("not found"),
            "{args:?}: {o:?}"
        );
    }
    // Invalid requests: 5, with the field in the message and in the JSON.
    let o = fails(&d, &["create", "Bad_Name"], 5);
    assert!(
        o.stderr.starts_with("vslice: ") && o.stderr.contains("name"),
        "{o:?}"
    );
    let o = fails(&d, &["create", "big", "--memory", "100T"], 5);
    assert!(o.stderr.contains("limits.memory_max"), "{o:?}");
    let e = fails(&d, &["create", "big", "--memory", "100T", "--json"], 5).json();
    assert_eq!(e["field"], "limits.memory_max");
    assert_eq!(e["code"], "invalid");
    assert_eq!(e["exit_code"], 5);
    let o = fails(&d, &["create", "o", "--owner", "no-such-user-vst"], 5);
    assert!(o.stderr.contains("owners[0]"), "{o:?}");
    assert!(
        d.slice_dirs().is_empty(),
        "failed creates left state: {:?}",
        d.slice_dirs()
    );

    ok(&d, &create_args("web", &[]));
    let o = fails(&d, &["set", "web", "--cpus", "65"], 5);
    assert!(o.stderr.contains("limits.cpu_max"), "{o:?}");
    let o = fails(&d, &["set", "web", "--cpu-weight", "0"], 5);
    assert!(o.stderr.contains("limits.cpu_weight"), "{o:?}");
    // Conflicts: 4.
    let o = fails(&d, &create_args("web", &[]), 4);
    assert!(o.stderr.contains("already exists"), "{o:?}");
    // Usage errors (the flag is named): 2.
    let o = fails(&d, &["create", "x", "--memory", "lots"], 2);
    assert!(
        o.stderr.contains("--memory") && o.stderr.contains("lots"),
        "{o:?}"
    );
    let o = fails(&d, &["set", "web", "--cpus", "0"], 2);
    assert!(o.stderr.contains("--cpus"), "{o:?}");
    fails(&d, &["set", "web"], 2);
    fails(&d, &["create", "x", "--egress-rate", "fast"], 2);
    fails(&d, &["create", "x", "-p", "80"], 2);
    fails(&d, &["exec", "web"], 2);
    // The failures are in the audit log, with the field's message.
    let o = ok(&d, &["audit", "show", "--action", "update_limits"]);
    assert!(
        o.stdout.contains("FAILED 400 invalid: limits.cpu_max"),
        "{o:?}"
    );
    ok(&d, &["rm", "web"]);
    d.assert_consistent();
}

#[test]
fn spec_files_and_the_audit_log() {
    let d = TestDaemon::start();
    let spec = d.root.join("web.toml");
    std::fs::write(
        &spec,
        r#"
name = "filed"
init = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]

[limits]
memory_max = "96M"
cpu_max = "0.5"
pids_max = 50
"#,
    )
    .unwrap();
    let spec_s = spec.to_str().unwrap();
    // Flags override the file.
    let info = ok(&d, &["create", "--file", spec_s, "--pids", "40", "--json"]).json();
    assert_eq!(info["spec"]["name"], "filed");
    assert_eq!(info["status"], "running");
    assert_eq!(info["spec"]["limits"]["memory_max"], 96u64 << 20);
    assert_eq!(info["spec"]["limits"]["pids_max"], 40);
    assert_eq!(memory_limit(&d, "filed"), Some(96 << 20));
    // NAME on the command line wins over the file's.
    let info = ok(
        &d,
        &["create", "other", "-f", spec_s, "--no-start", "--json"],
    )
    .json();
    assert_eq!(
        (info["spec"]["name"].as_str(), info["status"].as_str()),
        (Some("other"), Some("stopped"))
    );
    // A bad file: 5, naming the field.
    let bad = d.root.join("bad.toml");
    std::fs::write(&bad, "name = \"b\"\n[limits]\nmemory_max = \"lots\"\n").unwrap();
    let o = fails(&d, &["create", "-f", bad.to_str().unwrap()], 5);
    assert!(o.stderr.contains("limits.memory_max"), "{o:?}");
    std::fs::write(&bad, "name = \"b\"\ncolour = \"red\"\n").unwrap();
    let e = fails(&d, &["create", "-f", bad.to_str().unwrap(), "--json"], 5).json();
    assert_eq!(e["field"], "colour");
    let o = fails(&d, &["create", "-f", "/nonexistent/spec.toml"], 5);
    assert!(o.stderr.contains("/nonexistent/spec.toml"), "{o:?}");
    ok(&d, &["exec", "filed", "--", "true"]);
    ok(&d, &["rm", "other"]);

    // audit show: readable lines, filters, and the stored NDJSON.
    let o = ok(&d, &["audit", "show"]);
    assert!(
        o.stdout.lines().any(|l| l.contains("daemon start")),
        "{o:?}"
    );
    let o = ok(&d, &["audit", "show", "--slice", "filed"]);
    let actions: Vec<&str> = o
        .stdout
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    assert_eq!(actions, ["create", "exec", "exec_end"], "{o:?}");
    assert!(o.stdout.contains("by root"), "{o:?}");
    let o = ok(&d, &["audit", "show", "--action", "create", "--json"]);
    let recs: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        recs.len(),
        2,
        "bad spec files never reach the daemon: {o:?}"
    );
    assert!(recs
        .iter()
        .all(|r| r["action"] == "create" && r["hash"].is_string()));
    let o = ok(
        &d,
        &[
            "audit",
            "show",
            "--since",
            "2000-01-01",
            "--until",
            "2000-01-02",
        ],
    );
    assert_eq!(o.stdout, "");
    let o = fails(&d, &["audit", "show", "--since", "yesterday"], 5);
    assert!(o.stderr.contains("since"), "{o:?}");
    let o = ok(&d, &["audit", "show", "--limit", "1", "--tail", "--json"]);
    assert_eq!(o.stdout.lines().count(), 1);

    // audit verify: OK, then an edited record is found.
    let o = ok(&d, &["audit", "verify"]);
    assert!(o.stdout.starts_with("audit log OK"), "{o:?}");
    let r = ok(&d, &["audit", "verify", "--json"]).json();
    assert_eq!(r["ok"], true);
    let seg = d.root.join("audit/audit-00000001.ndjson");
    let text = std::fs::read_to_string(&seg).unwrap();
    assert!(text.contains("\"filed\""));
    std::fs::write(
        &seg,
        text.replacen("\"name\":\"filed\"", "\"name\":\"FILED\"", 1),
    )
    .unwrap();
    let o = fails(&d, &["audit", "verify"], 1);
    assert!(
        o.stdout.contains("DAMAGED") && o.stdout.contains("hash"),
        "{o:?}"
    );
    std::fs::write(&seg, text).unwrap();

    ok(&d, &["rm", "filed"]);
    // images
    let o = ok(&d, &["images"]);
    assert!(o.stdout.lines().any(|l| l.starts_with("busybox")), "{o:?}");
    let imgs = ok(&d, &["images", "--size", "--json"]).json();
    assert!(imgs[0]["size_bytes"].as_u64().unwrap() > 0, "{imgs}");
    d.assert_consistent();
}

/// A child process killed (by PID) and reaped on drop.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn enter_exec_tty_and_events() {
    let d = TestDaemon::start();
    // Follow events of one slice as NDJSON while it lives.
    let mut follower = Kid(vslice_cmd(&d.socket)
        .args(["events", "--slice", "ev", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    ok(&d, &create_args("ev", &["--memory", "64M"]));
    ok(&d, &create_args("other", &[]));

    // enter: a login shell on a terminal; input from a pipe (EOF ends it), exit code back.
    let o = run(
        &d.socket,
        &["enter", "ev"],
        Some("echo in-$((40+2)) $(id -u) $(pwd)\nexit 3\n"),
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("in-42 0 /root"), "{o:?}");
    // exec -t: the command runs on a terminal.
    let o = run(
        &d.socket,
        &["exec", "-t", "ev", "--", "sh", "-c", "tty; exit 4"],
        None,
    );
    assert_eq!(o.code, 4, "{o:?}");
    assert!(o.stdout.contains("/dev/pts/"), "{o:?}");

    ok(&d, &["set", "ev", "--pids", "99"]);
    ok(&d, &["stop", "ev"]);
    ok(&d, &["rm", "ev"]);
    ok(&d, &["rm", "other"]);
    let mut types = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !types.contains(&"destroyed".to_string()) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("events so far: {types:?}")
        };
        let e: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(e["slice"], "ev", "{line}");
        types.push(e["type"].as_str().unwrap().to_string());
    }
    assert_eq!(
        types,
        [
            "created",
            "started",
            "limits-changed",
            "exited",
            "destroyed"
        ],
        "{types:?}"
    );
    drop(follower);
    // The same history, readable and without following.
    let o = ok(&d, &["events", "--no-follow", "--slice", "ev"]);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{o:?}");
    assert!(
        lines[2].contains("limits-changed") && lines[2].contains("pids=99"),
        "{o:?}"
    );
    let o = ok(
        &d,
        &[
            "events",
            "--no-follow",
            "--type",
            "created,destroyed",
            "--json",
        ],
    );
    assert_eq!(o.stdout.lines().count(), 4, "{o:?}");
    // The execs and the enter are audited.
    let o = ok(
        &d,
        &[
            "audit", "show", "--slice", "ev", "--action", "exec", "--json",
        ],
    );
    let recs: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "{o:?}");
    assert!(recs.iter().all(|r| r["args"]["tty"] == true), "{o:?}");
    d.assert_consistent();
}
