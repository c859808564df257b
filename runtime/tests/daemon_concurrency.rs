//! 100 concurrent API clients creating, using and destroying slices: no error, and nothing
//! leaks (slices, cgroups, shim processes, daemon file descriptors, zombies). Needs root.
mod daemon_support;

use daemon_support::*;
use std::time::{Duration, Instant};
use vslice::api::types::ExecInput;

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|r| r.count())
        .unwrap_or(0)
}

fn zombie_children(pid: u32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter_map(|(p, _)| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut f = rest.split_whitespace();
            let state = f.next()?;
            let ppid: u32 = f.next()?.parse().ok()?;
            (ppid == pid && state == "Z").then_some(p)
        })
        .collect()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn hundred_concurrent_clients_create_and_destroy_without_leaks() {
    let d = TestDaemon::start();
    let pid = d.pid().unwrap();
    // Warm up (first-use allocations, thread pool) before taking the baseline.
    {
        let c = d.blocking();
        c.create(&sleeper("warm")).unwrap();
        c.exec(
            "warm",
            &ExecInput {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
        )
        .unwrap();
        c.destroy("warm").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let fds_before = fd_count(pid);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let errors: Vec<String> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100 {
            let c = d.client();
            tasks.spawn(async move {
                let name = format!("p{i}");
                let mut errs = Vec::new();
                for round in 0..2 {
                    let step = async {
                        let info = c
                            .create(&sleeper(&name))
                            .await
                            .map_err(|e| format!("create: {e}"))?;
                        if info.status != vslice::slice::Status::Running {
                            return Err(format!("created but {:?}", info.status));
                        }
                        let r = c
                            .exec(
                                &name,
                                &ExecInput {
                                    argv: vec!["/bin/echo".into(), name.clone()],
                                    ..Default::default()
                                },
                            )
                            .await
                            .map_err(|e| format!("exec: {e}"))?;
                        if r.exit_code != 0 || r.stdout != format!("{name}\n").as_bytes() {
                            return Err(format!("exec: {r:?}"));
                        }
                        c.inspect(&name)
                            .await
                            .map_err(|e| format!("inspect: {e}"))?;
                        c.destroy(&name).await.map_err(|e| format!("destroy: {e}"))
                    };
                    if let Err(e) = step.await {
                        errs.push(format!("{name} round {round}: {e}"));
                    }
                }
                errs
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r.unwrap());
        }
        all
    });
    eprintln!(
        "200 create+exec+destroy cycles by 100 clients in {:?}",
        t0.elapsed()
    );
    assert!(
        errors.is_empty(),
        "{} errors:\n{}",
        errors.len(),
        errors.join("\n")
    );

    // Nothing left: state, kernel, daemon.
    let c = d.blocking();
    assert!(c.list().unwrap().is_empty());
    assert!(d.slice_dirs().is_empty(), "{:?}", d.slice_dirs());
    wait_for("shims to exit", Duration::from_secs(10), || {
        d.shims().is_empty()
    });
    assert!(d.cgroups().is_empty(), "{:?}", d.cgroups());
    assert!(d.cgroup_pids().is_empty());
    assert!(
        zombie_children(pid).is_empty(),
        "zombies: {:?}",
        zombie_children(pid)
    );
    std::thread::sleep(Duration::from_millis(300));
    let fds_after = fd_count(pid);
    assert!(
        fds_after <= fds_before + 4,
        "daemon fds grew from {fds_before} to {fds_after}"
    );
    let m = c.metrics().unwrap();
    assert_eq!(
        metric(&m, "vslice_daemon_slice_locks"),
        0.0,
        "operation locks left"
    );
    assert_eq!(metric(&m, "vslice_daemon_event_followers"), 0.0);
    let audit = c.audit_verify().unwrap();
    assert!(audit.ok, "{audit:?}");
    // 1 start + 201 creates + 201 destroys + 201 execs and their ends.
    assert!(audit.records > 201 * 4, "{} audit records", audit.records);
}
