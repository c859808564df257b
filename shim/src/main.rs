//! vslice-shim: the per-slice supervisor.
//!
//! `vslice-shim start --root DIR --name NAME`
//!   Detaches (own session, not a child of whoever started it), builds the slice's sandbox from
//!   `<root>/slices/<name>/launch.json`, reports `ok <init pid>` or `error <reason>` on stdout,
//!   then stays the parent of the slice's init: reaps it, records how it ended (exit.json),
//!   removes its cgroup and exits. Its private mount namespace holds the slice's rootfs mounts,
//!   so they vanish with it. No async runtime, no threads (the sandbox executor refuses to
//!   fork from a multi-threaded caller): about 0.5 MiB of private memory per slice.
//!
//! `vslice-shim exec --root DIR --name NAME [--tty [--console-socket PATH] [--tty-size CxR]] [--cwd DIR]
//!                   [--env K=V]... -- COMMAND...`
//!   Runs COMMAND inside the running slice under the slice's policy; exits with its exit code
//!   (126: could not run, 127: not found).
mod console;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::exit;
use vslice::cgroup::Cgroup;
use vslice::sandbox::{self, join, pty, CreateOptions, Launch};
use vslice::slice::state::{self, RuntimeState};
use vslice::slice::ExitInfo;
use vslice::util::fs::{read_json, write_json_atomic, write_json_volatile};
use vslice::views;

/// Command line. clap (the workspace's parser: vslice and vslice-runc use it) rather than a
/// hand-written loop. Measured on an idle shim supervising a busybox slice (release build,
/// /proc/<shim>/smaps_rollup, two runs each): hand-written parser Pss_Anon 456/460 KiB, Pss
/// 2071/2283 KiB; clap Pss_Anon 476/472 KiB, Pss 2098/2025 KiB; binary 3.84 MB -> 4.27 MB.
/// So clap costs ~16 KiB of private memory per slice; the rest of the difference is
/// file-backed code, shared by every shim and within run-to-run noise.
#[derive(clap::Parser, Debug)]
#[command(
    name = "vslice-shim",
    about = "Per-slice supervisor, started by vslice / vsliced; not meant to be run by hand"
)]
enum Cmd {
    /// Build the slice's sandbox from <root>/slices/<name>/launch.json and supervise its init.
    Start(Slice),
    /// Run a command inside the running slice under its policy; exits with its exit code
    /// (126: could not run, 127: not found).
    Exec(ExecArgs),
}

#[derive(clap::Args, Debug)]
struct Slice {
    /// The state root (VSLICE_ROOT of the starter).
    #[arg(long)]
    root: PathBuf,
    /// The slice's name.
    #[arg(long, value_parser = parse_name)]
    name: String,
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    #[command(flatten)]
    slice: Slice,
    /// Run the command on a pty from the slice's own devpts.
    #[arg(long)]
    tty: bool,
    /// Send the pty's master to this Unix socket instead of relaying it (needs --tty).
    #[arg(long, requires = "tty")]
    console_socket: Option<PathBuf>,
    /// Window size of the pty, COLSxROWS, set before the command starts (so its first
    /// TIOCGWINSZ already sees it; needs --tty).
    #[arg(long, requires = "tty", value_parser = parse_size, value_name = "COLSxROWS")]
    tty_size: Option<(u16, u16)>,
    /// Working directory inside the slice [default: /].
    #[arg(long)]
    cwd: Option<String>,
    /// Environment variable KEY=VALUE (repeatable; replaces the slice's value of KEY).
    #[arg(long, value_parser = parse_env)]
    env: Vec<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `COLSxROWS`, e.g. `80x24`.
fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (c, r) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?}: expected COLSxROWS"))?;
    match (c.parse(), r.parse()) {
        (Ok(c), Ok(r)) => Ok((c, r)),
        _ => Err(format!("{s:?}: expected COLSxROWS")),
    }
}

/// The name becomes a path component below the state root: only a slice name is accepted.
fn parse_name(s: &str) -> Result<String, String> {
    vslice::slice::manager::validate_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_env(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn main() {
    // A panic must never unwind through the supervisor or a half-set-up sandbox child (which
    // inherit this hook across fork): abort at once. The sandbox children install it again
    // after fork, for callers other than the shim.
    vslice::sandbox::sys::abort_on_panic();
    let cmd = <Cmd as clap::Parser>::parse();
    match cmd {
        Cmd::Start(s) => start(&s.root.join("slices").join(&s.name)),
        Cmd::Exec(a) => exec(&a.slice.root.join("slices").join(&a.slice.name), &a),
    }
}

fn log(msg: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "{} vslice-shim[{}]: {msg}",
        state::now_secs(),
        std::process::id()
    );
}

fn start(dir: &Path) -> ! {
    // Detach: a new session without a controlling terminal, then fork so that whoever started
    // us reaps our first process at once and we are re-parented to init (or the daemon's
    // subreaper): the slice must outlive the CLI or daemon that started it.
    if let Err(e) = nix::unistd::setsid() {
        report_failure(&format!("setsid: {e}"));
    }
    // SAFETY: single-threaded.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => exit(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => report_failure(&format!("fork: {e}")),
    }
    let launch: Launch = match read_json(&dir.join(state::LAUNCH_FILE)) {
        Ok(l) => l,
        Err(e) => report_failure(&e.to_string()),
    };
    let cgroup = launch
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| Cgroup::new(&p.to_string_lossy()));
    // Init's stdout/stderr: a pipe this shim copies into the console log; stdin: an empty pipe.
    let console = match console::Console::new(dir) {
        Ok(c) => c,
        Err(e) => report_failure(&format!("console log: {e}")),
    };
    let mut launch = launch;
    let mut views = cgroup.as_ref().map(|cg| views::Config {
        cgroup: cg.path.clone(),
        started: views::source::boottime(),
        dir: dir.join("views"),
    });
    let mut views_pid = None;
    let mut sysinfo = None;
    let init_pid = match console
        .with_stdio(|| setup(&mut launch, dir, &mut views, &mut views_pid, &mut sysinfo))
    {
        Ok(Ok(pid)) => pid,
        Ok(Err(e)) => report_failure(&e),
        Err(e) => report_failure(&format!("console log: {e}")),
    };
    let mut console = console.started();
    drop(launch);
    let oom_at_start = cgroup
        .as_ref()
        .and_then(|c| c.usage().ok())
        .map(|u| u.oom_kills)
        .unwrap_or(0);
    let me = std::process::id() as i32;
    let rs = RuntimeState {
        shim_pid: me,
        shim_start: state::process_start_time(me).unwrap_or(0),
        init_pid,
        init_start: state::process_start_time(init_pid).unwrap_or(0),
        started_at: state::now_secs(),
        oom_kills_at_start: oom_at_start,
    };
    if let Err(e) = write_json_volatile(&dir.join(state::STATE_FILE), &rs) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(init_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(init_pid), None);
        if let Some(cg) = &cgroup {
            let _ = cg.destroy();
        }
        report_failure(&e.to_string());
    }
    // Release the slice's lock (inherited from the starter) now that state.json is written.
    let _ = nix::unistd::close(state::SHIM_LOCK_FD);
    // The starter may be gone (a daemon killed mid-start): a failed report must not kill us.
    let _ = writeln!(std::io::stdout(), "ok {init_pid}");
    let _ = std::io::stdout().flush();
    detach_stdout();
    log(&format!("slice init running as pid {init_pid}"));
    // SAFETY: returns freed heap to the kernel; keeps the idle shim's PSS small.
    unsafe {
        libc::malloc_trim(0);
    }
    let exit_info = supervise(
        init_pid,
        cgroup.as_ref(),
        oom_at_start,
        &mut console,
        views.as_ref().map(|v| (v, views_pid)),
        sysinfo,
    );
    log(&format!("slice init ended: {}", exit_info.reason));
    if let Some(cg) = &cgroup {
        if let Err(e) = cg.destroy() {
            log(&format!("removing cgroup: {e}"));
        }
    }
    if let Err(e) = write_json_atomic(&dir.join(state::EXIT_FILE), &exit_info) {
        log(&format!("recording exit: {e}"));
    }
    let _ = std::fs::remove_file(dir.join(state::STATE_FILE));
    exit(0)
}

fn report_failure(reason: &str) -> ! {
    log(reason);
    let _ = writeln!(std::io::stdout(), "error {reason}");
    exit(1)
}

/// Point stdout at /dev/null so the starter sees EOF and no pipe is kept open.
fn detach_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

fn setup(
    launch: &mut Launch,
    dir: &Path,
    views: &mut Option<views::Config>,
    views_pid: &mut Option<nix::unistd::Pid>,
    sysinfo: &mut Option<std::os::fd::OwnedFd>,
) -> Result<i32, String> {
    // Re-parent the slice's init to us when the executor's intermediate process exits.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("prctl PR_SET_CHILD_SUBREAPER: {e}"))?;
    // A private mount namespace for the rootfs mounts: they never appear in the host's mount
    // table and are released when this shim and its slice are gone.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare mount namespace: {e}"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make / rprivate: {e}"))?;
    // A loop-backed disk quota: the slice's image mounted under its upper and work dirs.
    vslice::disk::shim_mount(dir).map_err(|e| format!("disk: {e}"))?;
    // The slice's own /proc view (views/mod.rs): served from our mount namespace, bound over
    // the slice's files by the sandbox like any bind mount. Without FUSE the slice starts with
    // the host's files (logged), rather than not at all.
    if let Some(cfg) = views.as_ref() {
        // For the watchdog (views/watchdog.rs): the FUSE control files, in our namespace.
        views::watchdog::mount_control();
        match views::spawn(cfg) {
            Ok(pid) => {
                *views_pid = Some(pid);
                let mut mounts = launch.spec.mounts().clone().unwrap_or_default();
                let extra = cfg.spec_mounts(&mounts);
                mounts.extend(extra);
                launch.spec.set_mounts(Some(mounts));
            }
            Err(e) => {
                log(&format!("{e}; the slice sees the host's /proc files"));
                *views = None;
            }
        }
    }
    // With views, init hands us the listener of its sysinfo filter (views/sysinfo.rs): we
    // answer sysinfo(2) for init's whole process tree with the slice's numbers.
    let channel = match views
        .as_ref()
        .map(|_| views::sysinfo::channel())
        .transpose()
    {
        Ok(c) => c,
        Err(e) => {
            log(&format!("{e}; sysinfo(2) shows the host's numbers"));
            None
        }
    };
    let opts = CreateOptions {
        // Init gets the console pipes the caller put on fds 0-2 (see console.rs).
        null_stdio: false,
        start_fifo: None,
        sysinfo_to: channel.as_ref().map(|(_, theirs)| theirs.as_raw_fd()),
    };
    let pid = sandbox::create(launch, &opts)
        .map(|c| c.pid)
        .map_err(|e| e.to_string())?;
    // Init has exec'd: the listener, if it sent one, is waiting in the socket.
    *sysinfo = channel.and_then(|(ours, _)| views::sysinfo::receive(&ours, true));
    Ok(pid)
}

/// Reap until init exits, copying the console pipe into the log meanwhile and serving the
/// views again if their server dies; classify how it ended.
fn supervise(
    init_pid: i32,
    cgroup: Option<&Cgroup>,
    oom_at_start: u64,
    console: &mut console::Running,
    views: Option<(&views::Config, Option<nix::unistd::Pid>)>,
    sysinfo: Option<std::os::fd::OwnedFd>,
) -> ExitInfo {
    use std::os::fd::AsFd;
    let mut sysinfo = sysinfo;
    let mut source = views.map(|(cfg, _)| views::source::Source::new(&cfg.cgroup, cfg.started));
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let init = nix::unistd::Pid::from_raw(init_pid);
    let mut server = views.and_then(|(_, p)| p);
    let new_dog = |server: Option<nix::unistd::Pid>| {
        views
            .zip(server)
            .map(|((cfg, _), pid)| views::watchdog::Watchdog::new(pid.as_raw(), &cfg.dir))
    };
    let mut dog = new_dog(server);
    // With a view server, SIGCHLD comes through a signalfd: its death or a stop (SIGSTOP,
    // reported to us as its parent) wakes the loop at once, instead of a look every tick.
    // Blocked in this (single-threaded) process only; a forked server has no children and
    // exec'd programs start with an empty mask (std::process resets it).
    let children = views.and_then(|_| {
        let mut mask = nix::sys::signal::SigSet::empty();
        mask.add(nix::sys::signal::Signal::SIGCHLD);
        mask.thread_block().ok()?;
        nix::sys::signalfd::SignalFd::with_flags(
            &mask,
            nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| {
            log(&format!(
                "signalfd: {e}; the view server is watched by ticks"
            ))
        })
        .ok()
    });
    let (code, signal) = loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Exited(pid, c)) if pid == init => break (Some(c), None),
            Ok(WaitStatus::Signaled(pid, s, _)) if pid == init => break (None, Some(s as i32)),
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _))
                if Some(pid) == server =>
            {
                // The view server died: its mounts in the slice now fail with ENOTCONN (no
                // hang); serve again and put fresh views in place.
                server = views.and_then(|(cfg, _)| restart_views(cfg, init_pid));
                dog = new_dog(server);
            }
            Ok(WaitStatus::Stopped(pid, sig)) if Some(pid) == server => {
                // A stopped server answers nothing: the same end as the watchdog's.
                if let Some(d) = dog.as_ref() {
                    log(&format!(
                        "view server {pid} was stopped ({sig}): aborting its connection and restarting it"
                    ));
                    d.abort();
                }
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            Ok(WaitStatus::StillAlive) => {
                // Without a signalfd the server is looked at every TICK (its death and stop
                // are then noticed by the next look and waitpid).
                let look = dog.as_ref().map(|d| match children {
                    Some(_) => d.next_look(),
                    None => views::watchdog::TICK,
                });
                let ready = console.wait_and_copy(
                    init_pid,
                    children.as_ref().map(|fd| fd.as_fd()),
                    look,
                    sysinfo.as_ref().map(|l| l.as_fd()),
                );
                if let Some(fd) = children.as_ref() {
                    // Drain: waitpid above finds what the signals were about.
                    while let Ok(Some(_)) = fd.read_signal() {}
                }
                if let (true, Some(l), Some(src)) = (ready, sysinfo.as_ref(), source.as_mut()) {
                    if let Err(e) = views::sysinfo::handle(l.as_fd(), || src.numbers()) {
                        log(&format!("{e}; sysinfo(2) is no longer answered"));
                        sysinfo = None;
                    }
                }
                // A live server that does not answer (stopped, deadlocked): end its
                // connection so no reader waits on it, and kill it; its death is reaped
                // above and takes the restart path.
                if let (Some(d), Some(pid)) = (dog.as_mut(), server) {
                    if let views::watchdog::Verdict::Stuck(why) = d.check() {
                        log(&format!("{why}: aborting its connection and restarting it"));
                        d.abort();
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => {
                log(&format!("waitpid: {e}"));
                break (None, None);
            }
        }
    };
    console.drain();
    if let Some(pid) = server {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    let oom_now = cgroup
        .and_then(|c| c.usage().ok())
        .map(|u| u.oom_kills)
        .unwrap_or(0);
    let oom_killed = signal == Some(libc::SIGKILL) && oom_now > oom_at_start;
    let reason = if oom_killed {
        "oom-killed"
    } else if signal.is_some() {
        "signaled"
    } else {
        "exited"
    };
    ExitInfo {
        code,
        signal,
        oom_killed,
        reason: reason.into(),
        at: state::now_secs(),
    }
}

/// Start a new view server and re-inject its files into the slice; a few attempts, then the
/// slice keeps ENOTCONN views (logged) rather than a supervisor in a restart loop.
fn restart_views(cfg: &views::Config, init_pid: i32) -> Option<nix::unistd::Pid> {
    for attempt in 1..=3 {
        match views::spawn(cfg) {
            Ok(pid) => {
                match views::reinject(cfg, init_pid) {
                    Ok(n) => log(&format!(
                        "view server restarted (pid {pid}), {n} views re-injected"
                    )),
                    Err(e) => log(&format!("view server restarted, re-inject failed: {e}")),
                }
                return Some(pid);
            }
            Err(e) => {
                log(&format!("view server restart {attempt}/3: {e}"));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    None
}

fn exec(dir: &Path, args: &ExecArgs) -> ! {
    let fail = |msg: String| -> ! {
        eprintln!("vslice: {msg}");
        exit(join::EXIT_CANNOT_RUN)
    };
    let st: RuntimeState = match read_json(&dir.join(state::STATE_FILE)) {
        Ok(s) => s,
        Err(_) => fail("the slice is not running".into()),
    };
    if !state::is_alive(st.init_pid, st.init_start) {
        fail("the slice is not running".into());
    }
    let launch: Launch = match read_json(&dir.join(state::LAUNCH_FILE)) {
        Ok(l) => l,
        Err(e) => fail(e.to_string()),
    };
    let mut process = launch.spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for e in &args.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(
        args.cwd.clone().unwrap_or_else(|| "/".into()),
    ));
    let linux = launch.spec.linux().clone().unwrap_or_default();
    let seccomp = match linux
        .seccomp()
        .as_ref()
        .map(sandbox::seccomp::compile)
        .transpose()
    {
        Ok(s) => s,
        Err(e) => fail(e.to_string()),
    };
    let mut plan = match sandbox::process::ExecPlan::from_process(&process, seccomp) {
        Ok(p) => p,
        Err(e) => fail(e.to_string()),
    };
    // A slice with views: its sysinfo(2) is answered with its numbers (views/sysinfo.rs) for
    // the command's process tree too, by a thread of ours (we fork nothing after the join).
    let cgroup_path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let channel = cgroup_path
        .as_ref()
        .filter(|_| dir.join("views").is_dir())
        .and_then(|_| views::sysinfo::channel().ok());
    plan.sysinfo_to = channel.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
    let target = join::Target {
        init_pid: st.init_pid,
        cgroup: linux
            .cgroups_path()
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
    };
    let started_at = st.started_at;
    let serve_sysinfo = move || {
        let Some((ours, theirs)) = channel else {
            return;
        };
        drop(theirs);
        let Some(cg) = cgroup_path else { return };
        let started =
            views::source::boottime() - state::now_secs().saturating_sub(started_at) as f64;
        std::thread::spawn(move || {
            if let Some(l) = views::sysinfo::receive(&ours, false) {
                let mut src = views::source::Source::new(&cg, started);
                views::sysinfo::serve(&l, || src.numbers());
            }
        });
    };
    if !args.tty {
        match join::spawn(&target, &plan, join::Stdio::Inherit) {
            Ok(pid) => {
                serve_sysinfo();
                exit(join::wait(pid))
            }
            Err(e) => fail(e.to_string()),
        }
    }
    let pty = match pty::open_in_sandbox(st.init_pid) {
        Ok(p) => p,
        Err(e) => fail(e.to_string()),
    };
    let master = pty.master;
    if let Some((cols, rows)) = args.tty_size {
        let _ = pty::set_size(&master, cols, rows);
    }
    let joiner = match join::spawn(&target, &plan, join::Stdio::Pty(pty.slave)) {
        Ok(pid) => pid,
        Err(e) => fail(e.to_string()),
    };
    serve_sysinfo();
    match &args.console_socket {
        Some(sock) => {
            if let Err(e) = pty::send_to_console_socket(&master, sock) {
                let _ = nix::sys::signal::kill(joiner, nix::sys::signal::Signal::SIGKILL);
                fail(e.to_string());
            }
            drop(master);
        }
        None => {
            if let Err(e) = pty::relay(&master) {
                eprintln!("vslice: {e}");
            }
        }
    }
    exit(join::wait(joiner))
}
