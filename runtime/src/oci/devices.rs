//! The device cgroup (`linux.resources.devices`): which device nodes the container may open
//! or mknod. Without it, a container whose root keeps CAP_MKNOD (containerd's default
//! capability set does) could create and open the host's disks.
//!
//! cgroup v1: a directory in the `devices` hierarchy at the container's cgroup path, the rules
//! written in order to `devices.deny` / `devices.allow`, init moved in before `start` (and
//! every `exec`'d process before it joins). The rest of vslice's cgroup code does not use the
//! devices controller (slices rely on their user namespace instead), so this lives here.
//!
//! cgroup v2 has no devices files: it needs a BPF_PROG_TYPE_CGROUP_DEVICE program, which
//! vslice-runc does not build yet, so device rules on a v2 host are refused (an explicit
//! error, not a silently unrestricted container).
use super::{err, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::path::{Path, PathBuf};

/// Mount point of the v1 `devices` hierarchy, from /proc/self/mountinfo.
pub fn v1_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in text.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            continue;
        }
        let super_opts = r.nth(1).unwrap_or("");
        if super_opts.split(',').any(|o| o == "devices") {
            return left.split_whitespace().nth(4).map(PathBuf::from);
        }
    }
    None
}

/// One rule as the v1 files take it: `c 1:3 rwm`.
pub fn rule_line(r: &LinuxDeviceCgroup) -> Result<String> {
    let t = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::P => return Err(err!("linux.resources.devices: type \"p\" is not a device cgroup type")),
    };
    let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".to_string(), |n| n.to_string());
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(err!("linux.resources.devices: invalid access {access:?}"));
    }
    Ok(format!("{t} {}:{} {access}", num(r.major()), num(r.minor())))
}

/// Rules runc adds after the spec's own: mknod of any node (opening one still needs a rule),
/// and the nodes every container gets (null, zero, full, random, urandom, tty, console, ptmx,
/// the container's own ptys). A spec that denies everything still gets a usable /dev/null.
pub const IMPLICIT_ALLOW: &[&str] =
    &["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"];

/// Make the device cgroup for `cgroup` and write `rules` (then [`IMPLICIT_ALLOW`]); returns
/// its directory. No rules: no device cgroup (every device allowed, as the spec says).
pub fn setup(cgroup: &str, rules: &[LinuxDeviceCgroup]) -> Result<Option<PathBuf>> {
    if rules.is_empty() {
        return Ok(None);
    }
    let mut lines: Vec<(bool, String)> = rules.iter().map(|r| Ok((r.allow(), rule_line(r)?))).collect::<Result<_>>()?;
    lines.extend(IMPLICIT_ALLOW.iter().map(|l| (true, l.to_string())));
    if crate::cgroup::detect() == crate::cgroup::Version::V2 {
        return Err(err!(
            "linux.resources.devices: device rules on a cgroup v2 host need an eBPF device program, \
             which vslice-runc does not implement yet"
        ));
    }
    let mount = v1_mount().ok_or_else(|| err!("linux.resources.devices: the cgroup v1 devices controller is not mounted"))?;
    let dir = mount.join(cgroup);
    std::fs::create_dir_all(&dir).map_err(|e| err!("mkdir {}: {e}", dir.display()))?;
    let result = (|| {
        for (allow, line) in &lines {
            let file = dir.join(if *allow { "devices.allow" } else { "devices.deny" });
            std::fs::write(&file, line).map_err(|e| err!("write {} ({line}): {e}", file.display()))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = remove(&dir);
        return Err(e);
    }
    Ok(Some(dir))
}

pub fn add_pid(dir: &Path, pid: i32) -> Result<()> {
    let file = dir.join("cgroup.procs");
    std::fs::write(&file, pid.to_string()).map_err(|e| err!("write {} ({pid}): {e}", file.display()))
}

/// Remove the directory (retrying briefly while exiting tasks still hold it).
pub fn remove(dir: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => return Err(err!("rmdir {}: {e}", dir.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_render_like_the_kernel_wants() {
        let r: LinuxDeviceCgroup = serde_json::from_value(serde_json::json!({"allow": false, "access": "rwm"})).unwrap();
        assert_eq!(rule_line(&r).unwrap(), "a *:* rwm");
        let r: LinuxDeviceCgroup =
            serde_json::from_value(serde_json::json!({"allow": true, "type": "c", "major": 136, "access": "rwm"})).unwrap();
        assert_eq!(rule_line(&r).unwrap(), "c 136:* rwm");
        let r: LinuxDeviceCgroup =
            serde_json::from_value(serde_json::json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "x"})).unwrap();
        assert!(rule_line(&r).is_err());
    }
}
