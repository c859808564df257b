//! The slice's own view, as programs see it (views/*.rs): inside a Debian slice with 512 MiB,
//! 0.5 CPU and a 256 MiB disk, procps' free, top and uptime, coreutils' nproc and df, and
//! /proc/diskstats agree with the limits, the slice's start and its own I/O. A stopped view
//! server never hangs a reader (SIGCHLD to the shim), a traced one is found by the shim's
//! watchdog, and the slice cannot reach the FUSE control files to abort connections itself. Needs root (it creates slices).
mod daemon_support;

use daemon_support::*;
use std::time::{Duration, Instant};
use vslice::api::types::ExecInput;
use vslice::proto::slice::Limits;

const MIB: u64 = 1 << 20;

fn sh(c: &vslice::client::BlockingClient, slice: &str, script: &str) -> (i32, String, String) {
    let r = c
        .exec(
            slice,
            &ExecInput {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                timeout_secs: Some(120),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("exec {script:?}: {e}"));
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

fn sh_ok(c: &vslice::client::BlockingClient, slice: &str, script: &str) -> String {
    let (code, out, err) = sh(c, slice, script);
    assert_eq!(code, 0, "{script}:\n{out}\n{err}");
    out
}

fn limits() -> Limits {
    Limits {
        memory_max: Some(512 * MIB),
        cpu_max: Some(0.5),
        ..Default::default()
    }
}

/// The view server of the only slice: the shim's child named vslice-views.
fn view_server(d: &TestDaemon) -> Option<i32> {
    let shim = d.shims().first()?.0;
    let children = std::fs::read_to_string(format!("/proc/{shim}/task/{shim}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == vslice::views::SERVER_COMM)
        })
}

/// A daemon with one sleeping slice `name` (512 MiB, half a CPU), and its view server.
fn slice_with_view_server(name: &str) -> (TestDaemon, i32) {
    let d = TestDaemon::start();
    let mut req = sleeper(name);
    req.limits = limits();
    d.blocking().create(&req).unwrap();
    let server = view_server(&d).expect("a vslice-views process under the shim");
    (d, server)
}

fn field<'a>(text: &'a str, line_start: &str, idx: usize) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no line {line_start:?} in {text}"))
        .split_whitespace()
        .nth(idx)
        .unwrap_or_else(|| panic!("no field {idx} in {line_start:?} of {text}"))
}

#[test]
fn debian_tools_agree_with_the_slice_limits() {
    debian::ensure_debian();
    let d = TestDaemon::start();
    let c = d.blocking();
    let mut l = limits();
    l.disk_max = Some(256 * MIB);
    // No I/O limit: on cgroup v1 the slice's I/O is counted all the same (disk::apply_io).
    c.create(&vslice::slice::CreateRequest {
        name: "vagree".into(),
        image: Some("debian".into()),
        start: true,
        limits: l,
        ..Default::default()
    })
    .expect("create a Debian slice");

    // 0.5 CPU: one CPU for sched_getaffinity (nproc), sysconf (cpu/online) and the files.
    let out = sh_ok(
        &c,
        "vagree",
        "nproc; getconf _NPROCESSORS_ONLN; grep -c ^processor /proc/cpuinfo; \
         grep -c '^cpu[0-9]' /proc/stat; grep ^Cpus_allowed_list: /proc/self/status",
    );
    // (`nproc --all` counts the CPUs the machine has, /sys/devices/system/cpu/cpuN, which
    // the views leave alone: like lxcfs, only online CPUs are the slice's.)
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(&l[..4], &["1", "1", "1", "1"], "{out}");
    let allowed = l[4].split_whitespace().nth(1).unwrap();
    assert!(allowed.parse::<u32>().is_ok(), "one CPU allowed: {out}");

    // procps free: 512 MiB total, no swap; used + free <= total.
    let out = sh_ok(&c, "vagree", "free -m");
    assert_eq!(field(&out, "Mem:", 1), "512", "{out}");
    assert_eq!(field(&out, "Swap:", 1), "0", "{out}");
    let used: u64 = field(&out, "Mem:", 2).parse().unwrap();
    let free: u64 = field(&out, "Mem:", 3).parse().unwrap();
    assert!(used + free <= 512 && free > 0, "{out}");

    // procps top's header: 512 MiB of memory, and the task count is the slice's.
    let out = sh_ok(&c, "vagree", "COLUMNS=200 top -bn1 | head -5");
    let mem = out
        .lines()
        .find(|l| l.contains("Mem :"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(mem.contains(" 512.0 total"), "top: {out}");
    let tasks: u32 = field(&out, "Tasks:", 1).parse().unwrap();
    assert!(tasks < 20, "the slice's tasks, not the host's: {out}");

    // uptime counts from the slice's start (well under the host's), procps and the file.
    let host_up: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let out = sh_ok(&c, "vagree", "cat /proc/uptime; uptime; uptime -s");
    let up: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(up < 300.0 && up < host_up, "{out} (host {host_up})");
    assert!(
        out.contains("up 0 min") || out.contains("up 1 min") || out.contains("up 2 min"),
        "{out}"
    );

    // df: the slice's 256 MiB disk.
    let out = sh_ok(&c, "vagree", "df -k / | tail -1");
    let total_k: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        (160 * 1024..=256 * 1024).contains(&total_k),
        "df / shows {total_k} KiB for a 256M disk"
    );

    // /proc/diskstats: the slice's own writes to the device under its disk, nothing else.
    let out = sh_ok(
        &c,
        "vagree",
        "dd if=/dev/zero of=/var/tmp/io bs=1M count=8 oflag=direct 2>/dev/null; sync; rm /var/tmp/io; \
         sleep 0.3; cat /proc/diskstats",
    );
    // Its loop device (or disk, on the project-quota path), and the disk the loop device writes to on the slice's behalf (the
    // host's other devices, zram and the rest, never show).
    let (dev, disk) = {
        let loopdev =
            vslice::disk::device(&d.root.join("slices/vagree")).expect("the slice's disk device");
        use std::os::unix::fs::MetadataExt;
        let st = std::fs::metadata(&d.root).unwrap().dev();
        (loopdev, format!("{}:{}", libc::major(st), libc::minor(st)))
    };
    let mut loop_sectors = None;
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let id = format!("{}:{}", f[0], f[1]);
        let whole = vslice::disk::blkio::whole_disk(&disk);
        assert!(
            id == dev || id == disk || id == whole,
            "{id} is neither the slice's disk {dev} nor the one under it ({disk}): {out}"
        );
        if id == dev {
            loop_sectors = f[9].parse::<u64>().ok();
        }
    }
    let sectors = loop_sectors.unwrap_or_else(|| panic!("no line for {dev}: {out}"));
    assert!(
        (8 * 2048..64 * 2048).contains(&sectors),
        "8 MiB written by the slice, counted in sectors: {out}"
    );
}

#[test]
fn a_stopped_view_server_never_hangs_a_reader() {
    let (d, first) = slice_with_view_server("vstop");
    let c = d.blocking();
    // A reader loop inside the slice, each read bounded by timeout(1) at 2 s: a read that
    // waits longer shows as status 124/143 (counted as a hang).
    let reader = {
        let sock = d.socket.clone();
        std::thread::spawn(move || {
            let c = vslice::client::BlockingClient::new(&sock).unwrap();
            sh(
                &c,
                "vstop",
                "ok=0; bad=0; hang=0; i=0; while [ $i -lt 300 ]; do \
                   timeout 2 head -1 /proc/meminfo >/dev/null 2>&1; r=$?; \
                   if [ $r = 0 ]; then ok=$((ok+1)); elif [ $r = 124 ] || [ $r = 143 ]; then hang=$((hang+1)); else bad=$((bad+1)); fi; \
                   i=$((i+1)); usleep 10000; done; echo $ok $bad $hang",
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    while view_server(&d).is_none_or(|p| p == first) {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(first),
                nix::sys::signal::Signal::SIGCONT,
            );
            let log = std::fs::read_to_string(d.root.join("slices/vstop/shim.log"));
            panic!("the stopped server was not replaced; shim log: {log:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, err) = reader.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let v: Vec<u32> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(v.len(), 3, "{out}");
    assert_eq!(v[2], 0, "no read may hang (ok/failed/hung: {out})");
    assert!(v[0] > 0, "{out}");
    // The views are back, the stopped server is gone (not left stopped beside the new one).
    let (_, m, _) = sh(&c, "vstop", "grep ^MemTotal: /proc/meminfo");
    assert!(m.contains(" 524288 kB"), "{m}");
    wait_for(
        "the stopped server to be reaped",
        Duration::from_secs(5),
        || !std::path::Path::new(&format!("/proc/{first}")).exists(),
    );
    let log = std::fs::read_to_string(d.root.join("slices/vstop/shim.log")).unwrap();
    assert!(log.contains("aborting its connection"), "{log}");
}

/// A traced server (a trace stop: unlike a SIGSTOP, nothing reaches the shim, its parent)
/// is found by the watchdog's periodic look once a request waits on it: the reader gets an
/// error instead of hanging, and a new server serves the views.
#[test]
fn a_traced_view_server_is_found_by_the_watchdog() {
    let (d, first) = slice_with_view_server("vtrace");
    let c = d.blocking();
    // SAFETY: ptrace requests on a pid, with no memory passed.
    unsafe {
        assert_eq!(
            libc::ptrace(libc::PTRACE_SEIZE, first, 0, 0),
            0,
            "seize {first}"
        );
        assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, first, 0, 0), 0);
    }
    let state = || {
        let s = std::fs::read_to_string(format!("/proc/{first}/stat")).unwrap_or_default();
        s.rsplit_once(") ").and_then(|(_, r)| r.chars().next())
    };
    wait_for("the server in a trace stop", Duration::from_secs(5), || {
        state() == Some('t')
    });
    let out = sh_ok(&c, "vtrace", "timeout 20 head -1 /proc/meminfo; echo rc=$?");
    assert!(
        out.contains("rc=") && !out.contains("rc=124"),
        "the read ended without its timeout: {out}"
    );
    // The shim killed it; as its tracer we collect its death first, then the shim (its
    // parent) sees it and starts another.
    wait_for("the traced server to die", Duration::from_secs(5), || {
        let mut status = 0;
        // SAFETY: waitpid on our tracee; status is a valid out pointer.
        let r = unsafe { libc::waitpid(first, &mut status, libc::WNOHANG | libc::__WALL) };
        r == first && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status))
    });
    wait_for("a new view server", Duration::from_secs(10), || {
        view_server(&d).is_some_and(|p| p != first)
    });
    let (_, m, _) = sh(&c, "vtrace", "grep ^MemTotal: /proc/meminfo");
    assert!(m.contains(" 524288 kB"), "{m}");
    let log = std::fs::read_to_string(d.root.join("slices/vtrace/shim.log")).unwrap();
    assert!(log.contains("is in state t with requests waiting"), "{log}");
}

#[test]
fn the_slice_cannot_reach_the_fuse_control_files() {
    let d = TestDaemon::start();
    let c = d.blocking();
    let mut req = sleeper("vctl");
    req.limits = limits();
    c.create(&req).unwrap();
    // Aborting its own (or a neighbour's) view connection would need the FUSE control
    // filesystem: not mountable from the slice's user namespace, and not in its sysfs.
    let (code, out, err) = sh(
        &c,
        "vctl",
        "mkdir -p /tmp/ctl && mount -t fusectl fusectl /tmp/ctl; echo rc=$?; ls /sys/fs/fuse/connections 2>/dev/null | wc -l",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rc=1") || out.contains("rc=255"),
        "{out} {err}"
    );
    assert!(out.ends_with("0\n"), "{out}");
    // Nor can it see the server to signal it: it lives in the host's PID namespace.
    let (_, out, _) = sh(&c, "vctl", "ps -o comm | grep -c vslice-views");
    assert_eq!(out.trim(), "0");
    let (_, m, _) = sh(&c, "vctl", "grep ^MemTotal: /proc/meminfo");
    assert!(m.contains(" 524288 kB"), "{m}");
}

#[test]
fn busybox_free_and_uptime_get_the_slice_numbers_from_sysinfo() {
    let d = TestDaemon::start();
    let c = d.blocking();
    let mut req = sleeper("vsys");
    req.limits = limits();
    // Init's own tree (a service) and an exec'd command both ask sysinfo(2).
    req.init = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "trap 'exit 0' TERM; while :; do free > /tmp/free.init 2>&1; sleep 1; done".into(),
    ]);
    c.create(&req).unwrap();
    wait_for("init's free output", Duration::from_secs(10), || {
        sh(&c, "vsys", "grep -q ^Mem: /tmp/free.init").0 == 0
    });
    let from_init = sh_ok(&c, "vsys", "cat /tmp/free.init");
    assert_eq!(field(&from_init, "Mem:", 1), "524288", "{from_init}");
    // busybox free, uptime and nproc in an exec'd command.
    let out = sh_ok(&c, "vsys", "free; uptime; grep ^MemTotal: /proc/meminfo");
    assert_eq!(field(&out, "Mem:", 1), "524288", "free: {out}");
    assert_eq!(field(&out, "Swap:", 1), "0", "free: {out}");
    let used: u64 = field(&out, "Mem:", 2).parse().unwrap();
    assert!(used > 0 && used < 524288, "{out}");
    // busybox uptime reads sysinfo too: minutes since the slice started, not the host's boot.
    let up_line = out.lines().find(|l| l.contains(" up ")).unwrap();
    assert!(
        up_line.contains("up 0 min") || up_line.contains("up 1 min"),
        "{out}"
    );
    assert!(out.contains("MemTotal:         524288 kB"), "{out}");
}
