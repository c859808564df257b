//! The exec log against the real kernel (as root): every execve of a fork/exec loop run in a
//! slice's cgroup (as an unprivileged uid) is on record, with the right slice, even the
//! short-lived ones (the proc connector fallback counts them; it may miss their path).
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vslice::audit::execs::{ExecCollector, ExecConfig};
use vslice::audit::{AuditLog, DaemonRecord, Entry};

/// A cgroup parent of our own (pids hierarchy on v1, the unified one on v2), removed on drop.
struct TestCgroup {
    parent: String,
    root: PathBuf,
}

impl TestCgroup {
    fn new(slice: &str) -> TestCgroup {
        let parent = format!("vslice-t{}acct", std::process::id());
        let base = if PathBuf::from("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/pids")
        };
        let root = base.join(&parent);
        std::fs::create_dir_all(root.join(slice)).expect("create test cgroup");
        TestCgroup { parent, root }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

fn count(audit_dir: &std::path::Path, slice: &str) -> Vec<serde_json::Value> {
    vslice::audit::records::query_window(
        audit_dir,
        "execs",
        vslice::audit::time::now_millis() - 600_000,
        vslice::audit::time::now_millis() + 1000,
        |_| true,
        |v| v["slice"] == slice && v["event"] == "exec",
    )
    .unwrap()
}

#[test]
fn every_exec_of_a_fork_exec_loop_is_on_record() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let cg = TestCgroup::new("looper");
    let dir = tempfile::Builder::new()
        .prefix("vslice-test-acctexec")
        .tempdir()
        .unwrap();
    let audit_dir = dir.path().join("audit");
    let (control, _) = AuditLog::open(&audit_dir, 1 << 20).unwrap();
    let control = Arc::new(Mutex::new(control));
    let sink = control.clone();
    let mut c = ExecCollector::start(
        ExecConfig::new(audit_dir.clone(), &cg.parent),
        Box::new(move |event, detail| {
            sink.lock()
                .unwrap()
                .append(Entry::Daemon(DaemonRecord {
                    event: event.into(),
                    pid: std::process::id(),
                    version: "test".into(),
                    slice: None,
                    detail: Some(detail),
                }))
                .unwrap();
        }),
    )
    .unwrap();

    // Join the slice's cgroup, then (as uid 65534) run the loop: setpriv and sh are 2 execs,
    // /bin/true 300 more. `[` and the arithmetic are shell builtins.
    let n = 300;
    let procs = cg.root.join("looper").join("cgroup.procs");
    let script = format!(
        "echo $$ > {}; exec setpriv --reuid 65534 --regid 65534 --clear-groups -- sh -c 'i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done'",
        procs.display()
    );
    let st = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(st.success());
    let want = n + 2;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut recs = count(&audit_dir, "looper");
    while recs.len() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        recs = count(&audit_dir, "looper");
    }
    c.stop();
    let gone = recs.iter().filter(|r| r["gone"] == true).count();
    let trues = recs
        .iter()
        .filter(|r| r["gone"] == true || r["path"].as_str().is_some_and(|p| p.ends_with("/true")))
        .count();
    eprintln!(
        "acct: {} exec records for {want} execs ({gone} without path/argv: gone before /proc was read)",
        recs.len()
    );
    assert_eq!(recs.len(), want, "exec records");
    assert!(trues >= n, "{trues} /bin/true records of {n}");
    // The first two are setpriv and sh, with their uid inside (no user namespace: host uid).
    let sh = recs.iter().find(|r| {
        r["argv"]
            .as_array()
            .is_some_and(|a| a.first().is_some_and(|x| x == "sh"))
    });
    if let Some(sh) = sh {
        assert_eq!(sh["uid"], 65534, "{sh}");
    }
    drop(control);
    let rep = vslice::audit::verify(&audit_dir, None).unwrap();
    assert!(rep.ok, "{rep:#?}");
}
