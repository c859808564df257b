//! Tearing down a test's private containerd (tests/oci_containerd.rs, tests/oci_cri.rs).
use super::{runc_bin, wait_for};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// The containerd shims started for the containerd listening on `sock` (their command line
/// names it), so that only ours are stopped.
pub fn shim_pids(sock: &Path) -> Vec<i32> {
    let needle = sock.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("/usr/bin/containerd-shim") && cmd.contains(&needle) {
            out.push(pid);
        }
    }
    out
}

/// Remove, in order, what a private containerd made, even after a failed test: its
/// containers and tasks (through `ctr`, a `ctr` bound to its socket and namespace), whatever
/// vslice-runc still has under `runtime_root`, its shims (SIGKILL, by PID), containerd itself
/// (`daemon`: SIGTERM, SIGKILL after 10 s) and the mounts under `work`, deepest first.
pub fn tear_down(
    ctr: impl Fn(&[&str]) -> Output,
    sock: &Path,
    runtime_root: &Path,
    daemon: Option<Child>,
    work: &Path,
) {
    let kill = |pid: i32, sig| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    };
    let list = ctr(&["containers", "list", "--quiet"]);
    for id in String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let _ = ctr(&["task", "kill", "--signal", "SIGKILL", id]);
        let _ = ctr(&["task", "delete", "--force", id]);
        let _ = ctr(&["containers", "delete", id]);
    }
    // This also frees a CRI sandbox's uid range.
    if let Ok(rd) = std::fs::read_dir(runtime_root) {
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = Command::new(runc_bin())
                .arg("--root")
                .arg(runtime_root)
                .args(["delete", "--force", &id])
                .stderr(Stdio::null())
                .status();
        }
    }
    for pid in shim_pids(sock) {
        kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    if let Some(mut c) = daemon {
        kill(c.id() as i32, nix::sys::signal::Signal::SIGTERM);
        if !wait_for(10, || c.try_wait().map(|s| s.is_some()).unwrap_or(true)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
    // Snapshots, task rootfs, a sandbox's shm; a shim that died leaves them.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = work.to_string_lossy().into_owned();
    let mut ours: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in ours {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
}
