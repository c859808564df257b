//! The console log against a real daemon and slice: init's stdout and stderr (and what the
//! processes it starts write there) are kept, `--tail` and `-f` work, the log is capped and
//! rotated however much the slice writes, init's stdio are pipes (no host file), and the log
//! outlives the slice's run.
mod daemon_support;

use daemon_support::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vslice::proto::{ExecInput, LogsQuery};
use vslice::slice::console::{LOG_FILE, MAX_BYTES, OLD_LOG_FILE};

fn logs(d: &TestDaemon, name: &str, tail: Option<usize>) -> String {
    let mut out = Vec::new();
    d.blocking()
        .logs(name, &LogsQuery { tail, follow: None }, &mut out)
        .expect("logs");
    String::from_utf8_lossy(&out).into_owned()
}

/// A child process killed (by PID) on drop.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn console_log_keeps_rotates_tails_and_follows() {
    let d = TestDaemon::start();
    let c = d.blocking();
    let mut req = sleeper("con");
    req.init = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo hello-console; echo to-stderr >&2; yes 0123456789 | head -n 300000; echo END; \
         trap 'exit 0' TERM; while :; do sleep 1; if [ -e /tmp/go ]; then rm /tmp/go; echo FOLLOWED; fi; done"
            .into(),
    ]);
    c.create(&req).expect("create");
    wait_for("END in the console log", Duration::from_secs(60), || {
        logs(&d, "con", Some(1)) == "END\n"
    });

    // Capped and rotated: 3.3 MB written, at most 2 × 1 MiB kept.
    let dir = d.root.join("slices/con");
    let cur = std::fs::metadata(dir.join(LOG_FILE)).unwrap().len();
    let old = std::fs::metadata(dir.join(OLD_LOG_FILE)).unwrap().len();
    assert!(cur <= MAX_BYTES && old == MAX_BYTES, "{cur} {old}");
    let all = logs(&d, "con", None);
    assert_eq!(all.len() as u64, cur + old);
    assert!(
        !all.contains("hello-console"),
        "the first lines should have rotated out"
    );
    assert_eq!(logs(&d, "con", Some(2)), "0123456789\nEND\n");

    // Init's stdio are pipes, not host files (looked at from the host).
    let init = c.inspect("con").unwrap().init_pid.expect("running");
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{init}/fd/{fd}")).unwrap();
        assert!(
            target.to_string_lossy().starts_with("pipe:"),
            "init's fd {fd} is {}",
            target.display()
        );
    }

    // -f: what the slice writes next arrives.
    let mut follower = Kill(
        Command::new(env!("CARGO_BIN_EXE_vslice"))
            .args(["logs", "con", "-f", "--tail", "1"])
            .env("VSLICE_SOCKET", &d.socket)
            .env_remove("VSLICE_DIRECT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = follower.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&seen).contains("FOLLOWED") {
                break;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    // The follower has printed the tail once it is attached; then poke the slice.
    std::thread::sleep(Duration::from_millis(500));
    c.exec(
        "con",
        &ExecInput {
            argv: vec!["/bin/touch".into(), "/tmp/go".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let seen = reader.join().unwrap();
    assert!(seen.starts_with("END\n"), "{seen}");
    assert!(seen.contains("FOLLOWED"), "{seen}");
    drop(follower);

    // The log outlives the run; the CLI's --tail.
    c.stop("con", Some(Duration::from_secs(5))).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vslice"))
        .args(["logs", "con", "--tail", "1"])
        .env("VSLICE_SOCKET", &d.socket)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "FOLLOWED\n");
    // Bad input names the field.
    let e = c
        .logs(
            "con",
            &LogsQuery {
                tail: Some(1_000_000),
                follow: None,
            },
            &mut Vec::new(),
        )
        .unwrap_err();
    assert_eq!(e.field(), Some("tail"), "{e}");
    c.destroy("con").unwrap();
}

#[test]
fn console_log_has_init_stdout_and_stderr() {
    let d = TestDaemon::start();
    let mut req = sleeper("con2");
    req.init = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo hello-console; echo to-stderr >&2; trap 'exit 0' TERM; while :; do sleep 1; done"
            .into(),
    ]);
    d.blocking().create(&req).expect("create");
    wait_for("both lines", Duration::from_secs(30), || {
        logs(&d, "con2", None) == "hello-console\nto-stderr\n"
    });
    d.blocking().destroy("con2").unwrap();
}
