//! What hostile testing of the daemon found, each against a real `vsliced` on a real socket:
//! a panicking handler, oversized request bodies, bad input that used to reach the kernel, and
//! per-exec shims that outlived their command. Needs root (it creates slices).
mod daemon_support;

use daemon_support::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// One raw HTTP/1.1 request on the socket: `head` (without the final blank line), then as
/// much of `body` as the daemon reads (it may refuse before reading all of it). Returns the
/// status and the body of the reply.
fn raw(socket: &Path, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    // The daemon may answer and close without reading the body: a write error is expected.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_panicking_handler_gets_500_and_the_daemon_keeps_serving() {
    // Off by default: the route does not exist.
    let plain = TestDaemon::start();
    let (s, b) = plain.curl("POST", "/v1/debug/panic", None);
    assert_eq!(s, 404, "{b}");
    drop(plain);

    let d = TestDaemon::start_with(Options {
        config: "test_panic_route = true".into(),
        ..Default::default()
    });
    let pid = d.pid().unwrap();
    for path in ["/v1/debug/panic", "/v1/debug/panic?in=blocking"] {
        for _ in 0..3 {
            let (s, b) = d.curl("POST", path, None);
            assert_eq!(s, 500, "{path}: {b}");
            let v = json(&b);
            assert_eq!(v["code"], "internal", "{b}");
            assert!(v["message"].as_str().unwrap().contains("handler"), "{b}");
            // The daemon is the same process and still answers.
            let (s, b) = d.curl("GET", "/v1/info", None);
            assert_eq!(s, 200, "{b}");
            assert_eq!(json(&b)["pid"], pid);
        }
    }
    // Real work still goes through after the panics.
    let c = d.blocking();
    c.create(&sleeper("after-panic")).unwrap();
    let r = c
        .exec(
            "after-panic",
            &vslice::api::types::ExecInput {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.exit_code, 0);
    c.destroy("after-panic").unwrap();
    assert!(d.log_text().contains("test panic in a request handler"));
}

#[test]
fn request_bodies_are_capped_per_route_and_memory_stays_bounded() {
    let d = TestDaemon::start();
    let pid = d.pid().unwrap();
    let create = |len: usize| {
        // Valid JSON padded with spaces to `len` bytes.
        let mut b = br#"{"name":"big","start":false}"#.to_vec();
        b.resize(len, b' ');
        b
    };
    // A create is a few KB: 100 KB is refused, naming the limit, with or without a length.
    let body = create(100 * 1024);
    let (s, b) = raw(
        &d.socket,
        &format!(
            "POST /v1/slices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        &body,
    );
    assert_eq!(s, 413, "{b}");
    let v = json(&b);
    assert_eq!(v["code"], "payload_too_large");
    assert!(
        v["message"].as_str().unwrap().contains("65536 bytes"),
        "{b}"
    );
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (s, b) = raw(
        &d.socket,
        "POST /v1/slices HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked",
        &chunked,
    );
    assert_eq!(s, 413, "chunked: {b}");
    assert_eq!(json(&b)["code"], "payload_too_large");
    assert!(d.slice_dirs().is_empty(), "nothing was created");
    // Limits too; exec has a larger but bounded cap; routes without a body take almost none.
    let (s, b) = raw(
        &d.socket,
        "PATCH /v1/slices/x/limits HTTP/1.1\r\nHost: x\r\nContent-Length: 70000",
        &[b' '; 70000],
    );
    assert_eq!(
        (s, json(&b)["code"].clone()),
        (413, "payload_too_large".into())
    );
    let (s, b) = raw(
        &d.socket,
        "POST /v1/slices/x/exec HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000",
        b"",
    );
    assert_eq!(s, 413, "{b}");
    assert!(b.contains("2097152 bytes"), "{b}");
    let (s, b) = raw(
        &d.socket,
        "POST /v1/slices/x/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 100000",
        b"",
    );
    assert_eq!(s, 413, "{b}");
    // A create of normal size is still fine.
    let small = create(2048);
    let (s, b) = raw(
        &d.socket,
        &format!(
            "POST /v1/slices HTTP/1.1\r\nHost: x\r\nContent-Length: {}",
            small.len()
        ),
        &small,
    );
    assert_eq!(s, 201, "{b}");

    // Memory: a storm of large bodies (declared and chunked, in parallel) leaves the daemon's
    // resident memory where it was.
    let before = rss_kib(pid);
    let t0 = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let sock = d.socket.clone();
            std::thread::spawn(move || {
                let big = vec![b' '; 1 << 20];
                let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
                chunked.extend_from_slice(&big);
                chunked.extend_from_slice(b"\r\n0\r\n\r\n");
                for i in 0..10 {
                    let (s, _) = if (t + i) % 2 == 0 {
                        raw(
                            &sock,
                            "POST /v1/slices/big/exec HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600",
                            &big,
                        )
                    } else {
                        raw(
                            &sock,
                            "POST /v1/slices HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked",
                            &chunked,
                        )
                    };
                    assert_eq!(s, 413);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = rss_kib(pid);
    eprintln!(
        "RSS {before} KiB -> {after} KiB after 80 oversized requests in {:?}",
        t0.elapsed()
    );
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let (s, _) = d.curl("GET", "/v1/info", None);
    assert_eq!(s, 200);
}

/// (status, field) of a JSON error reply.
fn refused(reply: (u16, String)) -> (u16, String) {
    let (s, b) = reply;
    let v = json(&b);
    assert!(v["message"].is_string(), "{b}");
    (s, v["field"].as_str().unwrap_or("").to_string())
}

#[test]
fn bad_input_is_a_400_naming_the_field_and_changes_nothing() {
    let d = TestDaemon::start();
    let c = d.blocking();
    c.create(&sleeper("v")).unwrap();
    let only_v = || {
        assert_eq!(
            d.slice_dirs().into_iter().collect::<Vec<_>>(),
            vec!["v".to_string()]
        );
        assert_eq!(
            d.cgroups().into_iter().collect::<Vec<_>>(),
            vec!["v".to_string()]
        );
    };
    let create = |body: Value| d.curl("POST", "/v1/slices", Some(&body.to_string()));
    let sleep_init = serde_json::json!(["/bin/sh", "-c", "sleep 1000"]);
    // CPUs the node does not have: at create and on a running slice.
    for cpuset in ["0-99999", "99", "0-4294967295"] {
        let r = create(serde_json::json!({
            "name": "cpu", "start": true, "init": sleep_init, "limits": {"cpuset": cpuset}
        }));
        assert_eq!(refused(r), (400, "limits.cpuset".into()), "{cpuset}");
        let r = d.curl(
            "PATCH",
            "/v1/slices/v/limits",
            Some(&serde_json::json!({ "cpuset": cpuset }).to_string()),
        );
        assert_eq!(refused(r), (400, "limits.cpuset".into()), "{cpuset}");
    }
    only_v();
    // NUL bytes and an init the image does not have.
    let r = create(serde_json::json!({
        "name": "nul", "start": true, "init": ["/bin/sh", "-c", "a\u{0}b"]
    }));
    assert_eq!(refused(r), (400, "init[2]".into()));
    for start in [true, false] {
        let r = create(serde_json::json!({
            "name": "noinit", "start": start, "init": ["/no/such/init"]
        }));
        let (s, b) = r.clone();
        assert_eq!(refused(r), (400, "init[0]".into()), "{b}");
        assert!(b.contains("/no/such/init"), "{s} {b}");
    }
    // A symlink in the image is followed inside it: /bin/sh is busybox's link.
    let r = create(serde_json::json!({ "name": "viash", "start": false, "init": ["sh"] }));
    assert_eq!(r.0, 201, "{}", r.1);
    c.destroy("viash").unwrap();
    only_v();
    // Exec: NUL bytes in argv, env and cwd; an argument over the kernel's limit (E2BIG).
    // Raw requests: curl's own argv could not carry the large bodies.
    let exec = |body: Value| {
        let body = body.to_string();
        raw(
            &d.socket,
            &format!(
                "POST /v1/slices/v/exec HTTP/1.1\r\nHost: x\r\nContent-Length: {}",
                body.len()
            ),
            body.as_bytes(),
        )
    };
    let cases = [
        (
            serde_json::json!({"argv": ["/bin/echo", "a\u{0}b"]}),
            "argv[1]",
        ),
        (
            serde_json::json!({"argv": ["/bin/true"], "env": ["A=\u{0}"]}),
            "env[0]",
        ),
        (
            serde_json::json!({"argv": ["/bin/true"], "cwd": "/\u{0}"}),
            "cwd",
        ),
        (
            serde_json::json!({"argv": ["/bin/echo", "x".repeat(1_500_000)]}),
            "argv[1]",
        ),
        (
            serde_json::json!({"argv": ["/bin/true"], "env": (0..8).map(|i| format!("V{i}={}", "y".repeat(100_000))).collect::<Vec<_>>()}),
            "argv",
        ),
    ];
    for (body, field) in cases {
        assert_eq!(refused(exec(body)), (400, field.into()));
    }
    // The interactive exec's command (a WebSocket request).
    let ws = |query: &str| {
        raw(
            &d.socket,
            &format!(
                "GET /v1/slices/v/exec/tty?{query} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
            ),
            b"",
        )
    };
    assert_eq!(
        refused(ws("cmd=/bin/echo&cmd=a%00b")),
        (400, "cmd[1]".into())
    );
    assert_eq!(
        refused(ws("cmd=/bin/true&env=A%3D%00")),
        (400, "env[0]".into())
    );
    // Nothing changed; the slice still works.
    only_v();
    let r = c
        .exec(
            "v",
            &vslice::api::types::ExecInput {
                argv: vec!["/bin/echo".into(), "still".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((r.exit_code, r.stdout.as_slice()), (0, &b"still\n"[..]));
    assert!(c.inspect("v").unwrap().spec.limits.cpuset.is_none());
}

/// `vslice-shim exec` processes of this daemon (alive, not zombies) for `slice`.
fn exec_shims(d: &TestDaemon, slice: &str) -> Vec<i32> {
    d.shims()
        .into_iter()
        .filter(|(pid, cmd, name)| {
            cmd == "exec"
                && name == slice
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| {
                        s.rsplit_once(')')
                            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(true)
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

#[test]
fn an_exec_storm_leaves_no_shim_behind() {
    let d = TestDaemon::start();
    let c = d.blocking();
    c.create(&sleeper("storm")).unwrap();
    let body = |cmd: &str, timeout: Option<u64>| {
        let mut v = serde_json::json!({ "argv": ["/bin/sh", "-c", cmd] });
        if let Some(t) = timeout {
            v["timeout_secs"] = t.into();
        }
        v.to_string()
    };
    let t0 = Instant::now();
    let threads: Vec<_> = (0..48)
        .map(|i| {
            let sock = d.socket.clone();
            let b = match i % 4 {
                // Finishes; the client waits.
                0 => body("echo hi", None),
                // Runs long; the client goes away.
                1 => body("sleep 31", None),
                // Runs long with a child of its own; the client goes away.
                2 => body("sleep 31 & sleep 31; echo never", None),
                // Killed by its timeout.
                _ => body("sleep 31", Some(1)),
            };
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).unwrap();
                s.write_all(
                    format!(
                        "POST /v1/slices/storm/exec HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    )
                    .as_bytes(),
                )
                .unwrap();
                if i % 4 == 1 || i % 4 == 2 {
                    std::thread::sleep(Duration::from_millis(500));
                    drop(s); // disconnect mid-command
                } else {
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).unwrap_or(0);
                    assert!(
                        buf[..n].starts_with(b"HTTP/1.1 200"),
                        "{}",
                        String::from_utf8_lossy(&buf[..n])
                    );
                }
            })
        })
        .collect();
    // Interactive execs whose clients go away after the upgrade.
    let ttys: Vec<_> = (0..6)
        .map(|_| {
            let sock = d.socket.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).unwrap();
                s.write_all(
                    b"GET /v1/slices/storm/exec/tty?cmd=/bin/sh&cmd=-c&cmd=trap%20%22%22%20HUP%3B%20sleep%2031 HTTP/1.1\r\nHost: x\r\n\
                      Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                )
                .unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).unwrap_or(0);
                assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&buf[..n]));
                std::thread::sleep(Duration::from_millis(300));
            })
        })
        .collect();
    for t in threads.into_iter().chain(ttys) {
        t.join().unwrap();
    }
    eprintln!(
        "storm sent in {:?}; shims now: {:?}",
        t0.elapsed(),
        exec_shims(&d, "storm")
    );
    // Every exec ended (finished, timed out, or its client left; an interactive command that
    // ignores the hangup gets a short grace): no shim may remain, and no command either.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let left = exec_shims(&d, "storm");
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exec shims outlived their command: {left:?}; processes:\n{}",
            String::from_utf8_lossy(
                &std::process::Command::new("ps")
                    .args(["-eo", "pid,ppid,stat,args"])
                    .output()
                    .unwrap()
                    .stdout
            )
            .lines()
            .filter(|l| l.contains("vslice-shim") || l.contains("sleep 31"))
            .collect::<Vec<_>>()
            .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = c
        .exec(
            "storm",
            &vslice::api::types::ExecInput {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "ps -o args | grep -c '^sleep 3[1]' || true".into(),
                ],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "0",
        "commands of ended execs are gone"
    );
    c.destroy("storm").unwrap();
}
