//! The exec log against the real kernel (as root): every execve of a fork/exec loop run in a
//! slice's cgroup (as an unprivileged uid) is on record, with the right slice, for both
//! sources: the eBPF program, which also has every short-lived process's own argv, and the
//! proc connector fallback, which counts them (and may miss their path). Then through a real
//! daemon and slice: the record names the slice, and the uid and pid inside it.
mod daemon_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daemon_support::{sleeper, wait_for, TestDaemon};
use vslice::audit::execs::{ExecCollector, ExecConfig, ExecStats, Mechanism};
use vslice::audit::{AuditLog, DaemonRecord, Entry};

/// A cgroup parent of our own (pids hierarchy on v1, the unified one on v2), removed on drop.
struct TestCgroup {
    parent: String,
    root: PathBuf,
}

impl TestCgroup {
    fn new(tag: &str, slice: &str) -> TestCgroup {
        let parent = format!("vslice-t{}{tag}", std::process::id());
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

fn exec_records(audit_dir: &Path, slice: &str) -> Vec<serde_json::Value> {
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

/// Wait (≤ 15 s) until `want` exec records of `slice` are on disk; returns what is there.
fn await_records(audit_dir: &Path, slice: &str, want: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut recs = exec_records(audit_dir, slice);
    while recs.len() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        recs = exec_records(audit_dir, slice);
    }
    recs
}

struct LoopRun {
    recs: Vec<serde_json::Value>,
    n: usize,
    stats: Arc<ExecStats>,
    control_notes: Vec<String>,
}

/// Run `n` execs of `/bin/true <i>` as uid 65534 in a slice cgroup `looper` while a collector
/// of `mechanism` runs; setpriv and sh are 2 more execs (`[` and the arithmetic are shell
/// builtins).
fn fork_exec_loop(tag: &str, mechanism: Mechanism, n: usize) -> LoopRun {
    let cg = TestCgroup::new(tag, "looper");
    let dir = tempfile::Builder::new()
        .prefix("vslice-test-acctexec")
        .tempdir()
        .unwrap();
    let audit_dir = dir.path().join("audit");
    let (control, _) = AuditLog::open(&audit_dir, 1 << 20).unwrap();
    let control = Arc::new(Mutex::new(control));
    let notes = Arc::new(Mutex::new(Vec::new()));
    let (sink, notes2) = (control.clone(), notes.clone());
    let mut cfg = ExecConfig::new(audit_dir.clone(), &cg.parent);
    cfg.mechanism = mechanism;
    let mut c = ExecCollector::start(
        cfg,
        Box::new(move |event, detail| {
            notes2.lock().unwrap().push(format!("{event}: {detail}"));
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
    let procs = cg.root.join("looper").join("cgroup.procs");
    let script = format!(
        "echo $$ > {}; exec setpriv --reuid 65534 --regid 65534 --clear-groups -- sh -c 'i=0; while [ $i -lt {n} ]; do /bin/true $i; i=$((i+1)); done'",
        procs.display()
    );
    let st = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(st.success());
    let recs = await_records(&audit_dir, "looper", n + 2);
    c.stop();
    drop(control);
    let rep = vslice::audit::verify(&audit_dir, None).unwrap();
    assert!(rep.ok, "{rep:#?}");
    let control_notes = notes.lock().unwrap().clone();
    LoopRun {
        recs,
        n,
        stats: c.stats.clone(),
        control_notes,
    }
}

fn is_root() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    true
}

#[test]
fn every_exec_of_a_fork_exec_loop_is_on_record_with_its_own_argv() {
    if !is_root() {
        return;
    }
    let run = fork_exec_loop("acctbpf", Mechanism::Auto, 300);
    let (recs, n) = (&run.recs, run.n);
    eprintln!(
        "acct (bpf): {} exec records for {} execs; control log: {:?}",
        recs.len(),
        n + 2,
        run.control_notes
    );
    // eBPF is the source on this host (a kernel with BTF, root): the control log says so.
    assert!(
        run.stats.bpf.load(Ordering::Relaxed),
        "{:?}",
        run.control_notes
    );
    assert!(
        run.control_notes
            .iter()
            .any(|l| l == "exec_log_source: bpf"),
        "{:?}",
        run.control_notes
    );
    assert_eq!(recs.len(), n + 2, "exec records");
    assert!(recs.iter().all(|r| r["source"] == "bpf"), "{recs:?}");
    // Every /bin/true carries its own argument: each of the n execs is there with its argv,
    // however short its life.
    let trues: Vec<&serde_json::Value> = recs.iter().filter(|r| r["path"] == "/bin/true").collect();
    let args: BTreeSet<String> = trues
        .iter()
        .filter_map(|r| r["argv"][1].as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(trues.len(), n);
    assert_eq!(args, want, "argv of the /bin/true execs");
    let sh = recs
        .iter()
        .find(|r| r["argv"][0] == "sh")
        .unwrap_or_else(|| panic!("no sh record: {recs:?}"));
    assert_eq!(sh["uid"], 65534, "{sh}");
    assert!(
        trues
            .iter()
            .all(|r| r["ppid"] == sh["pid"] && r["uid"] == 65534),
        "each /bin/true's parent is the loop's shell: {sh} {:?}",
        trues.first()
    );
    assert_eq!(run.stats.overruns.load(Ordering::Relaxed), 0);
    // No process namespace of its own: no pid inside.
    assert!(sh["pid_in_slice"].is_null(), "{sh}");
}

#[test]
fn the_proc_connector_fallback_counts_every_exec() {
    if !is_root() {
        return;
    }
    let run = fork_exec_loop("acctcn", Mechanism::ProcConnector, 300);
    let (recs, n) = (&run.recs, run.n);
    let gone = recs.iter().filter(|r| r["gone"] == true).count();
    eprintln!(
        "acct (proc connector): {} exec records for {} execs ({gone} without path/argv: gone before /proc was read)",
        recs.len(),
        n + 2
    );
    assert!(!run.stats.bpf.load(Ordering::Relaxed));
    assert!(
        run.control_notes
            .iter()
            .any(|l| l.starts_with("exec_log_source: proc connector")),
        "{:?}",
        run.control_notes
    );
    assert_eq!(recs.len(), n + 2, "exec records");
    let trues = recs
        .iter()
        .filter(|r| r["gone"] == true || r["path"].as_str().is_some_and(|p| p.ends_with("/true")))
        .count();
    assert!(trues >= n, "{trues} /bin/true records of {n}");
    if let Some(sh) = recs.iter().find(|r| r["argv"][0] == "sh") {
        assert_eq!(sh["uid"], 65534, "{sh}");
    }
}

#[test]
fn a_slice_exec_is_on_record_with_the_uid_and_pid_inside_the_slice() {
    if !is_root() {
        return;
    }
    let mut d = TestDaemon::start();
    let c = d.blocking();
    c.create(&sleeper("ex")).expect("create slice");
    let r = c
        .exec(
            "ex",
            &vslice::proto::api::ExecInput {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "for i in 1 2 3; do /bin/echo marker-$i; done".into(),
                ],
                ..Default::default()
            },
        )
        .expect("exec");
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
    let audit_dir = d.root.join("audit");
    let mut marked = Vec::new();
    wait_for("three echo records", Duration::from_secs(15), || {
        marked = exec_records(&audit_dir, "ex")
            .into_iter()
            .filter(|r| r["argv"][0] == "/bin/echo")
            .collect();
        marked.len() >= 3
    });
    let args: Vec<&str> = marked
        .iter()
        .filter_map(|r| r["argv"][1].as_str())
        .collect();
    assert_eq!(args, ["marker-1", "marker-2", "marker-3"]);
    for r in &marked {
        // Root inside the slice, an unprivileged uid on the host.
        assert_eq!(r["uid_in_slice"], 0, "{r}");
        assert_ne!(r["uid"], 0, "{r}");
        // Its own pid namespace: a small pid inside, another on the host.
        let inside = r["pid_in_slice"].as_u64().unwrap_or_else(|| panic!("{r}"));
        assert_ne!(Some(inside), r["pid"].as_u64(), "{r}");
        assert_eq!(r["source"], "bpf", "{r}");
    }
    // The init's own exec is there too (the sleeper's shell).
    let all = exec_records(&audit_dir, "ex");
    assert!(
        all.iter().any(|r| r["pid_in_slice"] == 1),
        "init's exec: {all:?}"
    );
    c.destroy("ex").expect("destroy");
    d.teardown();
}

#[test]
fn execs_made_while_the_daemon_is_down_are_recorded_when_it_returns() {
    if !is_root() {
        return;
    }
    let mut d = TestDaemon::start();
    let c = d.blocking();
    // The sleeper's init execs `sleep 1` every second, daemon or not.
    c.create(&sleeper("gap")).expect("create slice");
    let audit_dir = d.root.join("audit");
    let sleeps = |from: &str, to: &str| -> usize {
        exec_records(&audit_dir, "gap")
            .iter()
            .filter(|r| r["argv"][0] == "sleep")
            .filter(|r| r["time"].as_str().is_some_and(|t| t > from && t < to))
            .count()
    };
    wait_for("a first sleep on record", Duration::from_secs(15), || {
        sleeps("", "~") >= 1
    });
    d.kill9();
    let down = vslice::audit::time::now_millis();
    std::thread::sleep(Duration::from_millis(3500));
    let up = vslice::audit::time::now_millis();
    d.spawn();
    let (from, to) = (
        vslice::audit::time::format_millis(down),
        vslice::audit::time::format_millis(up),
    );
    // The program stayed attached: the sleeps of the 3.5 s without a daemon are on record,
    // with their own times.
    wait_for("the gap's sleeps", Duration::from_secs(15), || {
        sleeps(&from, &to) >= 2
    });
    let c = d.blocking();
    let resumed = c
        .audit_show(&Default::default())
        .expect("audit")
        .iter()
        .any(|r| {
            matches!(&r.entry, vslice::audit::Entry::Daemon(dr)
                if dr.event == "exec_log_source"
                    && dr.detail.as_deref().is_some_and(|x| x.starts_with("bpf (resumed")))
        });
    assert!(
        resumed,
        "the restarted daemon's control log names the resumed program"
    );
    assert!(
        vslice::audit::execs::pin_dir_for(&d.cgroup_parent)
            .join("link")
            .exists(),
        "pinned while the slice lives"
    );
    // Each exec once: a consumer that misread the resumed ring would repeat old records.
    let pids: Vec<u64> = exec_records(&audit_dir, "gap")
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .collect();
    let unique: std::collections::BTreeSet<_> = pids.iter().collect();
    assert_eq!(unique.len(), pids.len(), "an exec recorded twice: {pids:?}");
    c.destroy("gap").expect("destroy");
    d.stop();
    // No slice left: the daemon's stop removed the pins.
    assert!(
        !vslice::audit::execs::pin_dir_for(&d.cgroup_parent).exists(),
        "unpinned when no slice is left; daemon log:\n{}",
        d.log_text()
    );
    d.teardown();
}
