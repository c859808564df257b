//! The sandbox executor's entry points (`sandbox::create`, `join::spawn`,
//! `join::spawn_detached`) fork and then allocate, which is only sound in a single-threaded
//! caller; they refuse a multi-threaded one. libtest runs every test on a thread of its own, so
//! this file has its own `main` (`harness = false` in Cargo.toml): `main` is then the only
//! thread, a real single-threaded caller for the positive cases, and it starts one extra
//! thread for the refusals. Real kernel, as root; everything is removed even on failure (the
//! guards' Drop runs while a failed assertion unwinds).
#[path = "oci_support/mod.rs"]
mod oci_support;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use oci_support::{is_alive, wait_for, Env};
use vslice::sandbox::process::ExecPlan;
use vslice::sandbox::{self, join, sys, CreateOptions, Launch, SandboxError};

/// Kills (and reaps: main is the subreaper) every process a case started, even on failure.
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
    }
}

fn launch(env: &Env, id: &str, args: &[&str]) -> Launch {
    let bundle = env.bundle(id, |c| {
        c["process"]["args"] = serde_json::json!(args);
        // vslice-runc turns this entry into per-hierarchy mounts before calling the
        // executor; the executor alone gets a spec without it.
        if let Some(m) = c["mounts"].as_array_mut() {
            m.retain(|m| m["destination"] != "/sys/fs/cgroup");
        }
    });
    let mut spec = Spec::load(bundle.join("config.json")).expect("load config.json");
    let mut root = spec.root().clone().expect("root");
    root.set_path(bundle.join("rootfs"));
    spec.set_root(Some(root));
    Launch {
        spec,
        overlay: None,
    }
}

fn opts() -> CreateOptions {
    CreateOptions {
        null_stdio: true,
        start_fifo: None,
        sysinfo_to: None,
    }
}

fn plan(args: &[&str]) -> ExecPlan {
    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    p.set_cwd("/".into());
    ExecPlan::from_process(&p, None).expect("exec plan")
}

fn exit_code(pid: i32) -> i32 {
    match waitpid(Pid::from_raw(pid), None) {
        Ok(WaitStatus::Exited(_, c)) => c,
        Ok(WaitStatus::Signaled(_, s, _)) => 128 + s as i32,
        other => panic!("waitpid {pid}: {other:?}"),
    }
}

fn assert_refused<T: std::fmt::Debug>(r: Result<T, SandboxError>, op: &str) {
    match r {
        Err(SandboxError::MultiThreaded { op: o, threads }) => {
            assert_eq!(o, op);
            assert_eq!(threads, 2, "main + the one extra thread");
        }
        other => panic!("{op} with a second thread alive: expected a refusal, got {other:?}"),
    }
}

fn target(env: &Env, id: &str, init: i32) -> join::Target {
    join::Target {
        init_pid: init,
        cgroup: Some(format!("/{}/{id}", env.cgroup_parent)),
    }
}

/// Positive control, single-threaded: a sandbox runs to its exit code; join::spawn runs a
/// command (and maps not-found to 127); join::spawn_detached returns a command that outlives
/// the joiner (no parent-death signal) and reports not-found as NotRunnable 127.
fn single_threaded_caller_works(env: &Env) {
    assert_eq!(sys::thread_count().expect("thread count"), 1);
    let created = sandbox::create(&launch(env, "once", &["/bin/sh", "-c", "exit 7"]), &opts())
        .expect("create from a single-threaded caller");
    assert_eq!(exit_code(created.pid), 7, "the sandbox's program ran");

    let long = sandbox::create(&launch(env, "long", &["/bin/sleep", "300"]), &opts())
        .expect("create long-running sandbox");
    let _reap = Reap(vec![long.pid]);
    let t = target(env, "long", long.pid);

    let joiner = join::spawn(
        &t,
        &plan(&["/bin/sh", "-c", "exit 5"]),
        join::Stdio::Inherit,
    )
    .expect("join::spawn");
    assert_eq!(join::wait(joiner), 5);
    let joiner = join::spawn(&t, &plan(&["/no/such/program"]), join::Stdio::Inherit)
        .expect("join::spawn (not found)");
    assert_eq!(join::wait(joiner), join::EXIT_NOT_FOUND);

    let cmd = join::spawn_detached(&t, &plan(&["/bin/sleep", "300"]), join::Stdio::Inherit)
        .expect("join::spawn_detached");
    let _reap_cmd = Reap(vec![cmd]);
    // The joiner has exited by now (spawn_detached reaped it): a parent-death signal on the
    // command would have killed it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(is_alive(cmd), "the detached command outlives its joiner");
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("ns link");
    assert_eq!(
        ns(cmd),
        ns(long.pid),
        "detached command is in the sandbox's PID namespace"
    );
    match join::spawn_detached(&t, &plan(&["/no/such/program"]), join::Stdio::Inherit) {
        Err(SandboxError::NotRunnable { code, message }) => {
            assert_eq!(code, join::EXIT_NOT_FOUND, "{message}");
            assert!(message.contains("/no/such/program"), "{message}");
        }
        other => panic!("detached exec of a missing program: {other:?}"),
    }
}

/// With a second thread alive every entry point refuses before doing anything: no cgroup, no
/// process.
fn multi_threaded_caller_is_refused(env: &Env) {
    let long = sandbox::create(&launch(env, "host", &["/bin/sleep", "300"]), &opts())
        .expect("create (single-threaded)");
    let _reap = Reap(vec![long.pid]);
    let refused = launch(env, "refused", &["/bin/true"]);
    let t = target(env, "host", long.pid);

    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let extra = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    let children_before = children_of_self();
    let results = (
        sandbox::create(&refused, &opts()),
        join::spawn(&t, &plan(&["/bin/true"]), join::Stdio::Inherit),
        join::spawn_detached(&t, &plan(&["/bin/true"]), join::Stdio::Inherit),
        sys::thread_count().expect("thread count"),
    );
    let children_after = children_of_self();
    drop(tx);
    extra.join().expect("extra thread");
    assert_eq!(results.3, 2);
    assert_refused(results.0, "sandbox::create");
    assert_refused(results.1, "join::spawn");
    assert_refused(results.2, "join::spawn_detached");
    assert_eq!(
        children_before, children_after,
        "a refused call forked nothing"
    );
    let refused_cg = format!("{}/refused", env.cgroup_parent);
    assert!(
        oci_support::cgroup_dirs_named(&refused_cg).is_empty(),
        "a refused create made no cgroup"
    );
    // And with the thread gone the same caller is accepted again.
    assert_eq!(sys::thread_count().expect("thread count"), 1);
    let again = sandbox::create(&refused, &opts()).expect("create after the thread ended");
    assert_eq!(exit_code(again.pid), 0);
}

fn children_of_self() -> String {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default()
}

/// `sys::abort_on_panic` (installed by the shim at start and by every sandbox and join child
/// right after fork): a panic ends the process with SIGABRT before anything unwinds. Without
/// it (the control) the same panic unwinds into catch_unwind. Run in a forked child of this
/// single-threaded process.
fn panic_aborts_after_hook() {
    fn child(install: bool) -> WaitStatus {
        // SAFETY: single-threaded (checked by the caller); the child ends in _exit or abort.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                if install {
                    sys::abort_on_panic();
                } else {
                    // Quiet: the control's panic is expected.
                    std::panic::set_hook(Box::new(|_| {}));
                }
                let r = std::panic::catch_unwind(|| panic!("test panic in a sandbox child"));
                // SAFETY: forked child.
                unsafe { libc::_exit(if r.is_err() { 42 } else { 0 }) }
            }
            nix::unistd::ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
        }
    }
    assert_eq!(sys::thread_count().expect("thread count"), 1);
    assert!(
        matches!(child(false), WaitStatus::Exited(_, 42)),
        "control: without the hook a panic unwinds (this test binary is built with unwinding)"
    );
    match child(true) {
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGABRT, _) => {}
        other => panic!("with abort_on_panic a panic must abort, got {other:?}"),
    }
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("sandbox_threads needs root (it creates real sandboxes)");
    }
    // Sandbox inits are re-parented to their caller when the intermediate exits, as in the
    // shim: we reap them.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    // Build the image before anything counts threads (the builder may use some).
    let _ = oci_support::busybox_rootfs();
    type Case = fn(&Env);
    let cases: &[(&str, Case)] = &[
        ("single_threaded_caller_works", single_threaded_caller_works),
        (
            "multi_threaded_caller_is_refused",
            multi_threaded_caller_is_refused,
        ),
        ("panic_aborts_after_hook", |_| panic_aborts_after_hook()),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<u32>().is_err())
        .collect();
    let mut ran = 0;
    for (name, case) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        let env = Env::new();
        case(&env);
        drop(env);
        assert!(
            wait_for(5, || sys::thread_count().map(|n| n == 1).unwrap_or(false)),
            "{name} left a thread behind"
        );
        println!("test {name} ... ok");
        ran += 1;
    }
    assert!(ran > 0, "no case matched {filter:?}");
    println!("\ntest result: ok. {ran} passed; 0 failed");
}
