//! Session recordings end to end (as root): an interactive terminal session of a slice is
//! recorded as asciicast v2, named in its control audit records, replayed by `asciinema`
//! (what was typed and printed), and an edit of the recording is reported by `audit verify`.
mod daemon_support;

use daemon_support::*;
use std::time::Duration;
use vslice::client::{TtyEvent, TtyOptions};

#[test]
fn an_enter_session_is_recorded_and_replays_with_asciinema() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    assert!(
        std::process::Command::new("asciinema")
            .arg("--version")
            .output()
            .is_ok(),
        "asciinema is missing (apt-get install asciinema)"
    );
    let d = TestDaemon::start_with(Options {
        config: "session_record_input = true".into(),
        ..Default::default()
    });
    d.blocking().create(&sleeper("rec")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client();
        let mut t = c
            .exec_tty(
                "rec",
                &TtyOptions {
                    argv: vec!["/bin/sh".into()],
                    cols: 100,
                    rows: 30,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        t.send(b"echo hello-$((6*7))\n").await.unwrap();
        let mut out = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !out.contains("hello-42") {
            match tokio::time::timeout_at(deadline, t.recv()).await {
                Ok(Ok(TtyEvent::Output(b))) => out.push_str(&String::from_utf8_lossy(&b)),
                other => panic!("waiting for output: {other:?}; so far {out:?}"),
            }
        }
        t.send(b"exit 0\n").await.unwrap();
        let (_, code) = t.collect().await.unwrap();
        assert_eq!(code, Some(0));
    });
    // The control records name the recording; exec_end carries its hash.
    // (exec_end is written when the relay has finished, just after the client saw the exit.)
    let ends = || {
        d.blocking()
            .audit_show(&vslice::client::AuditQuery {
                slice: Some("rec".into()),
                action: Some("exec_end".into()),
                ..Default::default()
            })
            .unwrap()
    };
    wait_for("the exec_end record", Duration::from_secs(10), || {
        !ends().is_empty()
    });
    let recs = ends();
    let end = serde_json::to_value(recs.last().expect("exec_end record")).unwrap();
    let file = end
        .pointer("/args/recording/file")
        .and_then(|f| f.as_str())
        .unwrap_or_else(|| panic!("exec_end names no recording: {end}"))
        .to_string();
    let path = d.root.join("audit").join(&file);
    let text = std::fs::read_to_string(&path).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 100);
    assert!(
        text.lines()
            .any(|l| l.contains("\"i\"") && l.contains("echo hello")),
        "input not recorded: {text}"
    );
    // asciinema replays it: what was typed (echoed) and printed. It insists on a terminal
    // (/dev/tty), so it runs under script(1)'s pseudo-terminal.
    for cmd in ["cat", "play -s 1000"] {
        let out = std::process::Command::new("script")
            .args(["-q", "-e", "-c"])
            .arg(format!("asciinema {cmd} {}", path.display()))
            .arg("/dev/null")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "asciinema {cmd}: {out:?}");
        assert!(
            shown.contains("echo hello-$((6*7))"),
            "asciinema {cmd}: {shown}"
        );
        assert!(shown.contains("hello-42"), "asciinema {cmd}: {shown}");
    }
    // The recording is covered by the control chain.
    assert!(d.blocking().audit_verify().unwrap().ok);
    std::fs::write(&path, text.replace("hello-42", "hello-43")).unwrap();
    let rep = d.blocking().audit_verify().unwrap();
    assert!(!rep.ok);
    assert!(
        rep.problems.iter().any(|p| p.reason.contains("edited")),
        "{rep:?}"
    );
}
