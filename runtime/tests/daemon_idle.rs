//! Issue 14, "idle is free": a daemon with a few running slices and no callers wakes up only
//! for its documented timers, and still sees what happens to slices at once (event-driven,
//! not polled). Counts wake-ups (voluntary context switches of the daemon's threads, from
//! /proc/PID/task/*/status), not time: a polling loop of any period below a few seconds
//! makes the count exceed the budget, whatever the machine's speed. Needs root.
mod daemon_support;

use daemon_support::*;
use std::time::Duration;
use vslice::client::EventFilter;
use vslice::slice::Status;

/// Threads driven by host-wide event sources (every process start on the node, every
/// connection tracked): their wake-ups depend on what else runs on the machine, not on the
/// daemon. Named in audit/execs.rs and audit/flows.rs. The flow log's dump thread
/// (`vsl-flowdump`) sleeps for its whole interval and is counted.
const HOST_DRIVEN: [&str; 3] = ["vsl-execlog", "vsl-flowevents", "vsl-flowwriter"];

/// (voluntary context switches of the daemon's own threads, their number, per-thread detail).
fn wakeups(pid: u32) -> (u64, usize, Vec<(String, u64)>) {
    let mut total = 0;
    let mut detail = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim_end().to_string();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let n: u64 = status
            .lines()
            .find(|l| l.starts_with("voluntary_ctxt_switches:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        // A thread's comm may have a suffix; the stderr reader of conntrack is unnamed
        // but only wakes on conntrack's complaints.
        if HOST_DRIVEN.iter().any(|h| comm.starts_with(h)) {
            continue;
        }
        detail.push((format!("{}:{comm}", t.file_name().to_string_lossy()), n));
        total += n;
    }
    let threads = detail.len();
    (total, threads, detail)
}

#[test]
fn an_idle_daemon_wakes_only_for_its_full_poll_and_still_sees_exits_at_once() {
    let d = TestDaemon::start();
    let c = d.blocking();
    for n in ["idle-a", "idle-b", "idle-c"] {
        c.create(&sleeper(n)).unwrap();
    }
    // Settle: the creates' own events and the first retention passes.
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.pid().unwrap();
    let (before, _, detail0) = wakeups(pid);
    // Three full polls' worth ([`vslice::daemon::FULL_POLL_EVERY`]), plus a part.
    let full = vslice::daemon::FULL_POLL_EVERY;
    let window = full * 3 + Duration::from_secs(1);
    std::thread::sleep(window);
    let (after, threads, detail1) = wakeups(pid);
    let woke = after - before;
    // Each full poll wakes the timer's worker, a blocking-pool thread and whatever hands
    // work between them: a generous 25 switches per poll, 4 polls at most in the window, plus
    // the runtime's own slack. A 200 ms loop in any one thread alone costs > 80; the old
    // per-tick stat scan cost > 150 over this window.
    let polls = window.as_secs() / full.as_secs() + 1;
    let budget = polls * 25 + 10;
    let per_thread: Vec<String> = detail1
        .iter()
        .map(|(t, n)| {
            let was = detail0
                .iter()
                .find(|(u, _)| u == t)
                .map(|(_, m)| *m)
                .unwrap_or(0);
            format!("{t}={}", n - was)
        })
        .collect();
    eprintln!(
        "idle daemon: {woke} wake-ups in {window:?} over {threads} threads ({})",
        per_thread.join(" ")
    );
    assert!(
        woke <= budget,
        "an idle daemon with 3 slices woke {woke} times in {window:?} (budget {budget} for {polls} full polls): a polling loop? per thread: {}",
        per_thread.join(" ")
    );

    // Event-driven, not blind: an init killed from outside the API is an `exited` event
    // without any call that would make the daemon look (the shim writes exit.json; inotify
    // wakes the poller).
    let info = c.inspect("idle-b").unwrap();
    let init = info.init_pid.unwrap();
    let follower = {
        let sock = d.socket.clone();
        std::thread::spawn(move || {
            let c = vslice::client::BlockingClient::new(&sock).unwrap();
            for e in c
                .events(&EventFilter {
                    slice: Some("idle-b".into()),
                    follow: true,
                    types: vec!["exited".into()],
                    ..Default::default()
                })
                .unwrap()
            {
                let e = e.unwrap();
                if e.kind.name() == "exited" {
                    return true;
                }
            }
            false
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(follower.join().unwrap(), "an exited event for idle-b");
    wait_for("idle-b stopped", Duration::from_secs(10), || {
        c.inspect("idle-b").unwrap().status == Status::Stopped
    });
    // Answers unchanged by the poller's light observations: list and inspect still carry
    // what they did.
    let listed = c.list().unwrap();
    assert_eq!(listed.len(), 3);
    for i in &listed {
        let one = c.inspect(&i.spec.name).unwrap();
        assert_eq!(one.status, i.status);
        assert_eq!(one.init_pid, i.init_pid);
        if i.status == Status::Running {
            assert!(i.usage.is_some(), "{} has usage", i.spec.name);
        }
    }
    drop(c);
    for n in ["idle-a", "idle-b", "idle-c"] {
        d.blocking().destroy(n).unwrap();
    }
}
