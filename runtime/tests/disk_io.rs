//! Block I/O caps (issue #12): a slice's direct writes run at its write cap, on the device
//! that really backs them (its loop device here), and the cap changes live.
mod daemon_support;
mod disk_support;

use daemon_support::*;
use disk_support::*;
use std::time::Instant;
use vslice::slice::LimitsPatch;

const MIB: u64 = 1 << 20;

/// Write `mib` MiB with O_DIRECT inside the slice; bytes/s as the test measures them (the
/// exec's own overhead, a few ms, is well under 1% of the seconds this takes).
fn direct_write_rate(d: &TestDaemon, slice: &str, mib: u64) -> f64 {
    let t = Instant::now();
    sh_ok(
        d,
        slice,
        &format!("dd if=/dev/zero of=/io bs=1M count={mib} oflag=direct 2>/dev/null"),
    );
    let secs = t.elapsed().as_secs_f64();
    sh_ok(d, slice, "rm -f /io");
    let rate = (mib * MIB) as f64 / secs;
    eprintln!(
        "{mib} MiB direct in {secs:.2} s: {:.2} MiB/s",
        rate / MIB as f64
    );
    rate
}

fn within(rate: f64, cap: u64, tol: f64) -> bool {
    let c = cap as f64;
    rate >= c * (1.0 - tol) && rate <= c * (1.0 + tol)
}

#[test]
fn disk_io_write_cap_holds_and_changes_live() {
    let d = TestDaemon::start();
    let c = d.blocking();
    let mut r = sleeper("dio-a");
    r.limits.disk_max = Some(256 * MIB);
    r.limits.io_write_bps = Some(8 * MIB);
    let info = c.create(&r).unwrap();
    let dev = info.disk.unwrap().device.expect("backing device");
    assert!(
        dev.starts_with("7:"),
        "a loop-backed slice's writes go to its loop device: {dev}"
    );
    // The cap is on that device in the slice's cgroup, nowhere else.
    let v1 = format!(
        "/sys/fs/cgroup/blkio/{}/dio-a/blkio.throttle.write_bps_device",
        d.cgroup_parent
    );
    let v2 = format!("/sys/fs/cgroup/{}/dio-a/io.max", d.cgroup_parent);
    let rule = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap();
    assert!(rule.contains(&dev), "{rule}");

    // 32 MiB at 8 MiB/s: about 4 s.
    let rate = direct_write_rate(&d, "dio-a", 32);
    assert!(
        within(rate, 8 * MIB, 0.10),
        "direct writes ran at {:.2} MiB/s with an 8 MiB/s cap",
        rate / MIB as f64
    );
    // Live: double the cap.
    c.update_limits(
        "dio-a",
        &LimitsPatch {
            io_write_bps: Some(16 * MIB),
            ..Default::default()
        },
    )
    .unwrap();
    let rate = direct_write_rate(&d, "dio-a", 64);
    assert!(
        within(rate, 16 * MIB, 0.10),
        "direct writes ran at {:.2} MiB/s with a 16 MiB/s cap",
        rate / MIB as f64
    );
    // Removing the cap (0) lifts it: faster than the last cap.
    c.update_limits(
        "dio-a",
        &LimitsPatch {
            io_write_bps: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.inspect("dio-a").unwrap().spec.limits.io_write_bps, None);
    let rule = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap();
    assert!(
        !rule.contains(&dev) || rule.contains("wbps=max"),
        "the cap is still there: {rule}"
    );
    c.destroy("dio-a").unwrap();
    assert!(loops_under(&d.root).is_empty());
    d.assert_consistent();
}
