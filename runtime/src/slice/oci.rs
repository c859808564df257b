//! Build the OCI runtime spec that the sandbox executor runs for a slice, from the slice spec
//! and its policy. Written as the JSON an operator would recognise from a config.json, then
//! parsed by oci-spec, so the executor sees exactly what an OCI bundle would give it.
use super::policy::Policy;
use super::{Limits, SliceSpec, UID_COUNT};
use oci_spec::runtime::{LinuxResources, Spec};
use serde_json::json;

/// CFS period used for CPU caps (the kernel default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Environment every slice process starts with.
pub fn default_env(name: &str) -> Vec<String> {
    vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        "HOME=/root".into(),
        "TERM=xterm".into(),
        "container=vslice".into(),
        format!("VSLICE_NAME={name}"),
    ]
}

/// Limits as OCI resources. cpu_weight 100 (the default) is 1024 shares.
pub fn resources(l: &Limits) -> LinuxResources {
    let mut v = json!({});
    let mut cpu = serde_json::Map::new();
    if let Some(w) = l.cpu_weight {
        cpu.insert("shares".into(), json!(w * 1024 / 100));
    }
    if let Some(c) = l.cpu_max {
        cpu.insert(
            "quota".into(),
            json!((c * CPU_PERIOD_US as f64).round() as i64),
        );
        cpu.insert("period".into(), json!(CPU_PERIOD_US));
    }
    if let Some(s) = &l.cpuset {
        cpu.insert("cpus".into(), json!(s));
    }
    if !cpu.is_empty() {
        v["cpu"] = serde_json::Value::Object(cpu);
    }
    if let Some(m) = l.memory_max {
        v["memory"] = json!({ "limit": m });
        if let Some(s) = l.swap_max {
            // OCI swap is memory + swap (cgroup v1's memsw semantics).
            v["memory"]["swap"] = json!(m.saturating_add(s));
        }
    }
    if let Some(p) = l.pids_max {
        v["pids"] = json!({ "limit": p });
    }
    serde_json::from_value(v).unwrap_or_default()
}

/// [`resources`] of the slice `name`: with a CPU cap and no cpuset, the cpuset is cut to
/// ceil(cap) CPUs (views/cpus.rs), so that nproc agrees with the cap and with the views.
pub fn slice_resources(name: &str, l: &Limits) -> LinuxResources {
    let mut l = l.clone();
    if l.cpuset.is_none() {
        if let Some(c) = l.cpu_max {
            l.cpuset = crate::views::cpus::auto_cpuset(name, c, &crate::views::cpus::available());
        }
    }
    resources(&l)
}

fn mount(dest: &str, typ: &str, opts: &[&str]) -> serde_json::Value {
    json!({ "destination": dest, "type": typ, "source": typ, "options": opts })
}

/// The OCI spec of a slice's init.
pub fn slice_spec(
    spec: &SliceSpec,
    policy: &Policy,
    cgroup_path: &str,
    rootfs: &str,
) -> Result<Spec, String> {
    let caps = &policy.capabilities;
    let rlimits: Vec<_> = policy
        .rlimits
        .iter()
        .map(|r| json!({ "type": r.kind, "soft": r.soft, "hard": r.hard }))
        .collect();
    let map = json!([{ "containerID": 0, "hostID": spec.uid_base, "size": UID_COUNT }]);
    let v = json!({
        "ociVersion": "1.2.0",
        "root": { "path": rootfs, "readonly": false },
        "hostname": spec.name,
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": spec.init,
            "env": default_env(&spec.name),
            "cwd": "/",
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": [] },
            "rlimits": rlimits,
            "noNewPrivileges": policy.no_new_privileges,
        },
        "mounts": [
            mount("/proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount("/dev", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
            mount("/dev/pts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            mount("/dev/shm", "tmpfs", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            mount("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
            mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        ],
        "linux": {
            "namespaces": [
                { "type": "user" }, { "type": "pid" }, { "type": "mount" }, { "type": "uts" },
                { "type": "ipc" }, { "type": "network" }, { "type": "cgroup" }
            ],
            "uidMappings": map,
            "gidMappings": map,
            "cgroupsPath": cgroup_path,
            "resources": serde_json::to_value(slice_resources(&spec.name, &spec.limits)).map_err(|e| e.to_string())?,
            "maskedPaths": policy.masked_paths,
            "readonlyPaths": policy.readonly_paths,
            "seccomp": serde_json::to_value(&policy.seccomp).map_err(|e| e.to_string())?,
        }
    });
    serde_json::from_value(v).map_err(|e| format!("building the OCI spec: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_oci_resources() {
        let r = resources(&Limits {
            cpu_weight: Some(200),
            cpu_max: Some(0.5),
            cpuset: None,
            memory_max: Some(64 << 20),
            swap_max: Some(16 << 20),
            pids_max: Some(100),
            ..Default::default()
        });
        let cpu = r.cpu().clone().unwrap();
        assert_eq!(cpu.shares(), Some(2048));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        let mem = r.memory().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(80 << 20));
        assert_eq!(r.pids().unwrap().limit(), 100);
    }

    #[test]
    fn empty_limits_set_nothing() {
        let r = resources(&Limits::default());
        assert!(r.cpu().is_none() && r.memory().is_none() && r.pids().is_none());
    }
}
