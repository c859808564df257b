//! `make bench` figure for the OCI runtime command: the full lifecycle of /bin/true on the
//! busybox bundle — `create`, `start`, wait for the container's init to exit, `delete` — for
//! vslice-runc, crun and runc in the same run, as containerd's shim drives a runtime.
//!
//! ```text
//! cargo run --release --example oci_bench -- [N] [ROOTFS]     (as root; N >= 50 by default)
//! ```
//!
//! Prints one line per runtime and a summary:
//!
//! ```text
//! oci lifecycle crun median_ms=14.1 p99=19.0 n=50
//! oci lifecycle runc median_ms=41.0 p99=50.2 n=50
//! oci lifecycle vslice-runc median_ms=12.0 p99=15.1 n=50
//! oci lifecycle vslice-runc median_ms=12.0 crun=14.1 runc=41.0 ratio_vs_crun=0.85 ratio_vs_runc=0.29
//! ```
//!
//! How (the same for every runtime, see bench/peers.sh and bench/README.md):
//! * one bundle: a copy of the busybox rootfs, `crun spec`'s config (vslice-runc's own `spec`
//!   if crun is missing) running /bin/true, no terminal, read-only root; each container gets a
//!   unique id and the absolute cgroupsPath /vslice-bench/<id>;
//! * this process enters a private mount namespace with /sys/fs/cgroup/unified unmounted (crun
//!   1.8 refuses the hybrid layout otherwise) and becomes a child subreaper, so every runtime's
//!   init is re-parented to it and `waitpid` sees it exit — outside the timed region;
//! * cycles are interleaved (one per runtime in turn) after 2 warm-up cycles each, so load
//!   changes on the 2-core machine hit every runtime alike (`VSLICE_BENCH_ORDER=blocks` runs
//!   all cycles of one runtime before the next instead); state lives in private `--root`
//!   dirs; whatever happens, every container is `delete --force`d and the cgroups and the temp
//!   dir are removed (no panics: the release profile aborts, and Drop would not run).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const WARMUP: usize = 2;

struct Runtime {
    name: &'static str,
    bin: PathBuf,
    root: PathBuf,
    samples: Vec<f64>,
    /// Per-phase times (create, start, wait, delete) of the timed cycles.
    phases: [Vec<f64>; 4],
    ids: Vec<String>,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Seconds a single runtime command may take before it is killed (and the bench fails).
const COMMAND_TIMEOUT_S: u32 = 30;

extern "C" fn on_alarm(_: libc::c_int) {}

/// Run a runtime command to completion. Its stderr goes to a file, never a pipe: `create`
/// leaves the container's init holding the descriptors it inherited, so a pipe would not
/// reach EOF until the container exits. A command that hangs is killed after
/// COMMAND_TIMEOUT_S (SIGALRM interrupts the wait).
fn run(argv: &[&std::ffi::OsStr], err_file: &Path) -> Result<(), String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    let err =
        std::fs::File::create(err_file).map_err(|e| format!("{}: {e}", err_file.display()))?;
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{:?}: {e}", argv[0]))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // SAFETY: alarm(2) is a plain syscall; the handler does nothing.
    unsafe { libc::alarm(COMMAND_TIMEOUT_S) };
    let status = waitpid(pid, None);
    unsafe { libc::alarm(0) };
    let line = || {
        argv.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match status {
        Ok(WaitStatus::Exited(_, 0)) => Ok(()),
        Ok(st) => Err(format!(
            "{}: {st:?}: {}",
            line(),
            std::fs::read_to_string(err_file).unwrap_or_default().trim()
        )),
        Err(nix::Error::EINTR) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            Err(format!("{}: timed out after {COMMAND_TIMEOUT_S}s", line()))
        }
        Err(e) => Err(format!("{}: wait: {e}", line())),
    }
}

fn write_config(bundle: &Path, base: &serde_json::Value, id: &str) -> Result<(), String> {
    let mut c = base.clone();
    c["linux"]["cgroupsPath"] = format!("/vslice-bench/{id}").into();
    let tmp = bundle.join("config.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&c).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, bundle.join("config.json")).map_err(|e| e.to_string())
}

/// One timed lifecycle: create, start, wait for init, delete.
fn cycle(
    rt: &mut Runtime,
    bundle: &Path,
    base: &serde_json::Value,
    id: &str,
    timed: bool,
) -> Result<(), String> {
    write_config(bundle, base, id)?;
    let pid_file = rt.root.join(format!("{id}.pid"));
    rt.ids.push(id.to_string());
    let root = rt.root.as_os_str();
    let bin = rt.bin.as_os_str();
    let os = |s: &str| std::ffi::OsString::from(s);
    let err = rt.root.join("stderr");
    let t0 = Instant::now();
    run(
        &[
            bin,
            &os("--root"),
            root,
            &os("create"),
            &os("--bundle"),
            bundle.as_os_str(),
            &os("--pid-file"),
            pid_file.as_os_str(),
            &os(id),
        ],
        &err,
    )?;
    let t_create = t0.elapsed();
    run(&[bin, &os("--root"), root, &os("start"), &os(id)], &err)?;
    let t_start = t0.elapsed();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .map_err(|e| format!("{}: {e}", pid_file.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("pid file: {e}"))?;
    // SAFETY: see `run`.
    unsafe { libc::alarm(COMMAND_TIMEOUT_S) };
    let waited = loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(..))
            | Ok(nix::sys::wait::WaitStatus::Signaled(..)) => break Ok(()),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => {
                break Err(format!(
                    "{}: container init {pid} still running after {COMMAND_TIMEOUT_S}s",
                    rt.name
                ))
            }
            Err(e) => break Err(format!("waitpid {pid} ({}): {e}", rt.name)),
        }
    };
    unsafe { libc::alarm(0) };
    waited?;
    let t_wait = t0.elapsed();
    run(&[bin, &os("--root"), root, &os("delete"), &os(id)], &err)?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    rt.ids.pop(); // deleted: nothing left to clean up for it
    let _ = std::fs::remove_file(&pid_file);
    if timed {
        rt.samples.push(ms);
        let ms_of = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        rt.phases[0].push(ms_of(t_create));
        rt.phases[1].push(ms_of(t_start - t_create));
        rt.phases[2].push(ms_of(t_wait - t_start));
        rt.phases[3].push(ms - ms_of(t_wait));
    }
    Ok(())
}

fn median(s: &[f64]) -> f64 {
    let mut v = s.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn p99(s: &[f64]) -> f64 {
    let mut v = s.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((0.99 * v.len() as f64).ceil() as usize).max(1);
    v[rank - 1]
}

fn busybox_rootfs(arg: Option<String>) -> Option<PathBuf> {
    let candidates = arg.map(PathBuf::from).into_iter().chain(
        [
            std::env::var("VSLICE_TEST_IMAGES")
                .ok()
                .map(|d| format!("{d}/busybox/rootfs")),
            Some("/tmp/vslice-test-images/busybox/rootfs".into()),
            Some("/var/lib/vslice/images/busybox/rootfs".into()),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::from),
    );
    candidates.into_iter().find(|p| p.join("bin/true").exists())
}

fn setup_namespace() -> Result<(), String> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // SIGALRM interrupts waits (no SA_RESTART) instead of killing us: see `run`.
    // SAFETY: the handler does nothing.
    unsafe {
        sigaction(
            Signal::SIGALRM,
            &SigAction::new(
                SigHandler::Handler(on_alarm),
                SaFlags::empty(),
                SigSet::empty(),
            ),
        )
    }
    .map_err(|e| format!("sigaction: {e}"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make / rprivate: {e}"))?;
    if std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .contains(" /sys/fs/cgroup/unified ")
    {
        umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH)
            .map_err(|e| format!("umount /sys/fs/cgroup/unified: {e}"))?;
    }
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))
}

fn bench(work: &Path, runtimes: &mut [Runtime], n: usize, rootfs: &Path) -> Result<(), String> {
    let bundle = work.join("bundle");
    std::fs::create_dir_all(&bundle).map_err(|e| e.to_string())?;
    let st = Command::new("cp")
        .arg("-a")
        .arg(rootfs)
        .arg(bundle.join("rootfs"))
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("copy rootfs".into());
    }
    // crun's default spec when crun is there (what bench/peers.sh uses), else ours.
    let spec_tool = runtimes
        .iter()
        .find(|r| r.name == "crun")
        .or_else(|| runtimes.iter().find(|r| r.name == "vslice-runc"))
        .unwrap();
    let st = Command::new(&spec_tool.bin)
        .arg("spec")
        .current_dir(&bundle)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("{} spec failed", spec_tool.name));
    }
    let mut base: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bundle.join("config.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    base["process"]["terminal"] = false.into();
    base["process"]["args"] = serde_json::json!(["/bin/true"]);
    base["process"]["env"] = serde_json::json!(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    base["root"] = serde_json::json!({"path": "rootfs", "readonly": true});
    base["hostname"] = "vslice-bench".into();
    eprintln!(
        "# config from `{} spec`; {} cycles per runtime after {WARMUP} warm-up",
        spec_tool.name, n
    );
    for rt in runtimes.iter() {
        std::fs::create_dir_all(&rt.root).map_err(|e| format!("{}: {e}", rt.root.display()))?;
    }
    let prefix = format!("vslice-bench-oci-{}", std::process::id());
    if std::env::var("VSLICE_BENCH_ORDER").as_deref() == Ok("blocks") {
        // All cycles of one runtime, then the next: each runtime alone on the machine.
        for rt in runtimes.iter_mut() {
            for i in 0..WARMUP + n {
                let id = format!("{prefix}-{}-{i}", rt.name);
                cycle(rt, &bundle, &base, &id, i >= WARMUP)
                    .map_err(|e| format!("{}: {e}", rt.name))?;
            }
        }
        return Ok(());
    }
    for i in 0..WARMUP + n {
        for rt in runtimes.iter_mut() {
            let id = format!("{prefix}-{}-{i}", rt.name);
            cycle(rt, &bundle, &base, &id, i >= WARMUP).map_err(|e| format!("{}: {e}", rt.name))?;
        }
    }
    Ok(())
}

fn cleanup(work: &Path, runtimes: &[Runtime]) {
    for rt in runtimes {
        for id in &rt.ids {
            let _ = Command::new(&rt.bin)
                .arg("--root")
                .arg(&rt.root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    // Reap anything re-parented to us.
    while let Ok(st) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        if st == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
    let prefix = format!("vslice-bench-oci-{}", std::process::id());
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in rd.flatten() {
            let parent = h.path().join("vslice-bench");
            if let Ok(rd) = std::fs::read_dir(&parent) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
    if !std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .contains(&work.to_string_lossy().into_owned())
    {
        let _ = std::fs::remove_dir_all(work);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let rootfs = match busybox_rootfs(args.next()) {
        Some(r) => r,
        None => {
            eprintln!("oci_bench: no busybox rootfs (build one: images/busybox/build.sh /tmp/vslice-test-images/busybox/rootfs)");
            std::process::exit(1)
        }
    };
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("oci_bench: must run as root");
        std::process::exit(1);
    }
    // vslice-runc next to this example (target/<profile>/examples/ -> target/<profile>/).
    let own = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("vslice-runc")));
    let vslice = std::env::var_os("VSLICE_RUNC")
        .map(PathBuf::from)
        .or(own)
        .filter(|p| p.is_file());
    let Some(vslice) = vslice else {
        eprintln!("oci_bench: vslice-runc not found (build it, or set VSLICE_RUNC)");
        std::process::exit(1)
    };
    let work = PathBuf::from(format!("/tmp/vslice-bench-oci-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&work);
    let mut runtimes = vec![];
    for (name, bin) in [
        ("crun", which("crun")),
        ("runc", which("runc")),
        ("vslice-runc", Some(vslice)),
    ] {
        match bin {
            Some(bin) => runtimes.push(Runtime {
                name,
                bin,
                root: work.join(format!("{name}-root")),
                samples: vec![],
                phases: Default::default(),
                ids: vec![],
            }),
            None => eprintln!("# {name} not installed (apt-get install {name}): skipped"),
        }
    }
    let result = setup_namespace().and_then(|()| bench(&work, &mut runtimes, n, &rootfs));
    cleanup(&work, &runtimes);
    if let Err(e) = result {
        println!("oci lifecycle error={e:?}");
        std::process::exit(1);
    }
    for rt in &runtimes {
        println!(
            "oci lifecycle {} median_ms={:.1} p99={:.1} n={}",
            rt.name,
            median(&rt.samples),
            p99(&rt.samples),
            rt.samples.len()
        );
        eprintln!(
            "# phases {} median_ms create={:.1} start={:.1} wait={:.1} delete={:.1}",
            rt.name,
            median(&rt.phases[0]),
            median(&rt.phases[1]),
            median(&rt.phases[2]),
            median(&rt.phases[3])
        );
    }
    let med = |name: &str| {
        runtimes
            .iter()
            .find(|r| r.name == name)
            .map(|r| median(&r.samples))
    };
    let v = med("vslice-runc").unwrap_or(f64::NAN);
    let mut line = format!("oci lifecycle vslice-runc median_ms={v:.1}");
    for peer in ["crun", "runc"] {
        if let Some(m) = med(peer) {
            line.push_str(&format!(" {peer}={m:.1}"));
        }
    }
    for peer in ["crun", "runc"] {
        if let Some(m) = med(peer) {
            line.push_str(&format!(" ratio_vs_{peer}={:.2}", v / m));
        }
    }
    println!("{line}");
}
