//! The slice's own view of its resources (views/mod.rs): inside a slice with 512 MiB and 0.5
//! CPU, /proc and /sys show those limits; the views cannot be written or unmounted from
//! inside; killing the view server never hangs a reader and the views come back.
//! Needs root (it creates slices).
mod daemon_support;

use daemon_support::*;
use std::time::{Duration, Instant};
use vslice::api::types::ExecInput;
use vslice::proto::slice::Limits;

fn sh(c: &vslice::client::BlockingClient, slice: &str, script: &str) -> (i32, String, String) {
    let r = c
        .exec(
            slice,
            &ExecInput {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                ..Default::default()
            },
        )
        .unwrap();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

fn limited(name: &str) -> vslice::slice::CreateRequest {
    let mut req = sleeper(name);
    req.limits = Limits {
        memory_max: Some(512 << 20),
        cpu_max: Some(0.5),
        ..Default::default()
    };
    req
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

#[test]
fn views_show_the_slice_limits() {
    let d = TestDaemon::start();
    let c = d.blocking();
    c.create(&limited("views1")).unwrap();

    let (code, out, err) = sh(
        &c,
        "views1",
        "cat /proc/meminfo | grep -E '^(MemTotal|SwapTotal):' ",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("MemTotal:         524288 kB"), "{out}");
    assert!(out.contains("SwapTotal:             0 kB"), "{out}");
    let (_, free, _) = sh(&c, "views1", "grep ^MemFree: /proc/meminfo");
    let free: u64 = free.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        free > 0 && free < 524288,
        "MemFree {free} kB within the limit"
    );

    // 0.5 CPU: one CPU everywhere a program counts them.
    let (_, out, err) = sh(&c, "views1", "cat /sys/devices/system/cpu/online");
    assert_eq!(out, "0\n", "{err}");
    let (_, out, _) = sh(&c, "views1", "grep -c ^processor /proc/cpuinfo");
    assert_eq!(out, "1\n");
    let (_, out, _) = sh(&c, "views1", "grep -c '^cpu[0-9]' /proc/stat");
    assert_eq!(out, "1\n");

    // Uptime counts from the slice's start, not the host's boot.
    let host_up: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (_, out, _) = sh(&c, "views1", "cat /proc/uptime");
    let up: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        up < 120.0 && up < host_up,
        "slice uptime {up}, host {host_up}"
    );
    let (_, out, _) = sh(&c, "views1", "cat /proc/loadavg");
    assert_eq!(out.split_whitespace().count(), 5, "{out}");

    // busybox top's header reads /proc/meminfo: used + free = the limit.
    let (code, out, err) = sh(&c, "views1", "top -bn1 | head -1");
    assert_eq!(code, 0, "{err}");
    let nums: Vec<u64> = out
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches('K').parse().ok())
        .collect();
    assert!(
        nums.len() >= 2 && nums[0] + nums[1] == 524288,
        "top header: {out}"
    );

    // /proc/swaps and /proc/diskstats show nothing of the host's.
    let (_, out, _) = sh(&c, "views1", "cat /proc/swaps /proc/diskstats | wc -l");
    assert_eq!(out.trim(), "1");

    // The views belong to the shim, not the daemon: a daemon crash and restart keeps them.
    let mut d = d;
    d.kill9();
    d.spawn();
    let c = d.blocking();
    let (_, out, _) = sh(&c, "views1", "grep ^MemTotal: /proc/meminfo");
    assert!(out.contains(" 524288 kB"), "after a daemon restart: {out}");
}

#[test]
fn views_resist_writes_and_unmounts_from_inside() {
    let d = TestDaemon::start();
    let c = d.blocking();
    c.create(&limited("views2")).unwrap();
    for f in [
        "/proc/meminfo",
        "/proc/uptime",
        "/sys/devices/system/cpu/online",
    ] {
        let (code, _, _) = sh(&c, "views2", &format!("echo x > {f}"));
        assert_ne!(code, 0, "writing {f} from inside must fail");
        let (code, _, _) = sh(&c, "views2", &format!("echo x >> {f}"));
        assert_ne!(code, 0, "appending to {f} from inside must fail");
    }
    // The slice's root holds CAP_SYS_ADMIN in its own user namespace and the views are not
    // locked mounts: it can unmount one. What that reveals is the file of the slice's own
    // procfs (host-wide numbers it could read before views existed), nothing of the host's
    // mount tree: no FUSE mount remains there and the file still reads.
    let (code, out, err) = sh(
        &c,
        "views2",
        "umount -l /proc/meminfo && grep -c ' /proc/meminfo .*fuse' /proc/self/mountinfo; grep -c ^MemTotal: /proc/meminfo",
    );
    assert_eq!((code, out.as_str()), (0, "0\n1\n"), "{err}");
}

#[test]
fn views_recover_when_the_server_is_killed() {
    let d = TestDaemon::start();
    let c = d.blocking();
    c.create(&limited("views3")).unwrap();
    let first = view_server(&d).expect("a vslice-views process under the shim");
    // A reader loop inside the slice, timing each read (busybox date has no sub-second
    // format, so each read is bounded by timeout(1) instead: a hang shows as status 124).
    let reader = {
        let sock = d.socket.clone();
        std::thread::spawn(move || {
            let c = vslice::client::BlockingClient::new(&sock).unwrap();
            sh(
                &c,
                "views3",
                "ok=0; bad=0; hang=0; i=0; while [ $i -lt 400 ]; do \
                   timeout 1 head -1 /proc/meminfo >/dev/null 2>&1; r=$?; \
                   if [ $r = 0 ]; then ok=$((ok+1)); elif [ $r = 124 ] || [ $r = 143 ]; then hang=$((hang+1)); else bad=$((bad+1)); fi; \
                   i=$((i+1)); usleep 5000; done; echo $ok $bad $hang",
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    while view_server(&d).is_none_or(|p| p == first) {
        if t.elapsed() > Duration::from_secs(10) {
            let log = std::fs::read_to_string(d.root.join("slices/views3/shim.log"));
            panic!("no new view server; shim log: {log:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, err) = reader.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let v: Vec<u32> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(v.len(), 3, "{out}");
    assert_eq!(v[2], 0, "no read may hang (ok/failed/hung: {out})");
    assert!(v[0] > 0, "{out}");
    // The views are back: the limit, not the host's memory.
    let (_, m, _) = sh(&c, "views3", "grep ^MemTotal: /proc/meminfo");
    assert!(m.contains(" 524288 kB"), "{m}");
    let (_, m, _) = sh(&c, "views3", "cat /sys/devices/system/cpu/online");
    assert_eq!(m, "0\n");
}

/// The kernel serves repeated reads of a view from its page cache (views/fs.rs); what it
/// serves must still move with time. A whole-file reader (cat) and one reading a few bytes
/// at offset 0 (dd, inside the cached size: only the attribute refresh catches it) each see
/// /proc/uptime advance across half-second sleeps, and a memory allocation inside the slice
/// shows in MemFree within a second.
#[test]
fn views_read_in_a_loop_stay_fresh() {
    let d = TestDaemon::start();
    let c = d.blocking();
    c.create(&limited("views4")).unwrap();
    let (code, out, err) = sh(
        &c,
        "views4",
        "for i in 1 2 3 4; do cat /proc/uptime; dd if=/proc/uptime bs=7 count=1 2>/dev/null; echo; usleep 500000; done",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    let first_number = |l: &str| -> f64 {
        l.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("uptime line {l:?} in {out}"))
    };
    let cat: Vec<f64> = lines.iter().step_by(2).map(|l| first_number(l)).collect();
    let dd: Vec<f64> = lines
        .iter()
        .skip(1)
        .step_by(2)
        .map(|l| first_number(l))
        .collect();
    for w in cat.windows(2).chain(dd.windows(2)) {
        assert!(
            w[1] - w[0] >= 0.3,
            "uptime read through the view must advance with time: {out}"
        );
    }

    // A splice reader (busybox cat uses sendfile, which never refreshes the file's size) and
    // a read(2) reader see whole files, the same lines, while the text changes under them.
    let (code, out, err) = sh(
        &c,
        "views4",
        "for i in 1 2 3 4 5 6; do echo $(cat /proc/meminfo | wc -l) $(awk 'END {print NR}' /proc/meminfo) \
           $(cat /proc/meminfo | tail -n 1 | grep -c ' kB$'); usleep 150000; done",
    );
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default().to_string();
    assert!(
        first.split_whitespace().next() == first.split_whitespace().nth(1) && first.ends_with(" 1"),
        "{out}"
    );
    assert!(out.lines().all(|l| l == first), "{out}");

    // 32 MiB written to a file in the slice: its page cache is charged to the slice's memory
    // cgroup, so MemFree (the limit less the usage) drops by about that much.
    let (code, out, err) = sh(
        &c,
        "views4",
        "a=$(awk '/^MemFree:/ {print $2}' /proc/meminfo); \
         dd if=/dev/zero of=/fill bs=1M count=32 2>/dev/null; usleep 300000; \
         b=$(awk '/^MemFree:/ {print $2}' /proc/meminfo); rm -f /fill; echo $a $b",
    );
    assert_eq!(code, 0, "{err}");
    let v: Vec<i64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(v.len(), 2, "{out}");
    assert!(
        v[0] - v[1] >= 24 * 1024,
        "MemFree before/after writing 32 MiB (kB): {out}"
    );
}
