//! Reading an OCI bundle: config.json through oci-spec, then everything that must be decided
//! before the executor runs:
//!
//! * `root.path` made absolute (relative to the bundle);
//! * `linux.cgroupsPath` mapped to a plain path below every hierarchy root (see
//!   [`map_cgroups_path`]);
//! * `cgroup` mounts turned into what this host can mount (see [`rewrite_cgroup_mounts`]);
//! * everything vslice cannot honour refused with an error naming the field ([`validate`]):
//!   a spec feature is never silently dropped.
use super::{err, Result};
use crate::cgroup::Version;
use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec};
use std::path::{Path, PathBuf};

/// Read `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| err!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&data).map_err(|e| err!("parse {}: {e}", path.display()))
}

/// Default cgroup path when the spec has none (never relative to the caller's own cgroup).
pub fn default_cgroup(id: &str, systemd: bool) -> String {
    if systemd {
        format!("system.slice/vslice-runc-{id}.scope")
    } else {
        format!("vslice-runc/{id}")
    }
}

/// systemd's slice naming: `a-b-c.slice` lives in `a.slice/a-b.slice/a-b-c.slice`.
pub fn expand_slice(slice: &str) -> Result<String> {
    let name = slice
        .strip_suffix(".slice")
        .ok_or_else(|| err!("cgroupsPath: {slice:?} is not a systemd slice name"))?;
    if name == "-" {
        return Ok(String::new());
    }
    if name.is_empty()
        || name.contains('/')
        || name.starts_with('-')
        || name.ends_with('-')
        || name.contains("--")
    {
        return Err(err!("cgroupsPath: invalid systemd slice name {slice:?}"));
    }
    let mut parts = Vec::new();
    let mut prefix = String::new();
    for comp in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(comp);
        parts.push(format!("{prefix}.slice"));
    }
    Ok(parts.join("/"))
}

/// Map `linux.cgroupsPath` to a path below every hierarchy root.
///
/// * absent: [`default_cgroup`];
/// * `--systemd-cgroup` and `slice:prefix:name` (what containerd and the kubelet pass with the
///   systemd driver): `<expanded slice>/<prefix>-<name>.scope` (or `<name>` if it already
///   ends in `.slice`) — the same directory systemd would use, made directly by vslice, which
///   does not talk to systemd;
/// * anything else: the path itself, absolute or not, below the hierarchy roots. A relative
///   path is *not* nested under the caller's cgroup (runc would): vslice-runc never creates
///   cgroups under someone else's (DESIGN.md, "Rules for touching the host").
pub fn map_cgroups_path(raw: Option<&Path>, id: &str, systemd: bool) -> Result<String> {
    let raw = raw
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if raw.is_empty() {
        return Ok(default_cgroup(id, systemd));
    }
    let mapped = if systemd && raw.contains(':') && !raw.starts_with('/') {
        let parts: Vec<&str> = raw.split(':').collect();
        if parts.len() != 3 {
            return Err(err!(
                "cgroupsPath {raw:?}: expected slice:prefix:name with --systemd-cgroup"
            ));
        }
        let slice = if parts[0].is_empty() {
            "system.slice"
        } else {
            parts[0]
        };
        let base = expand_slice(slice)?;
        let unit = if parts[2].ends_with(".slice") {
            parts[2].to_string()
        } else if parts[1].is_empty() {
            format!("{}.scope", parts[2])
        } else {
            format!("{}-{}.scope", parts[1], parts[2])
        };
        if base.is_empty() {
            unit
        } else {
            format!("{base}/{unit}")
        }
    } else {
        raw.trim_matches('/').to_string()
    };
    let ok = !mapped.is_empty()
        && !mapped.contains("//")
        && mapped
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !mapped.contains('\n')
        && !mapped.contains('\0');
    if !ok {
        return Err(err!("cgroupsPath {raw:?}: must name a cgroup below the hierarchy root (plain names, no . or ..)"));
    }
    Ok(mapped)
}

/// Whether the host has AppArmor enabled (module loaded and securityfs shows it).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
        && Path::new("/sys/kernel/security/apparmor").exists()
}

/// Whether the host has SELinux enabled (selinuxfs mounted).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Refuse the process fields vslice does not apply (shared by `create` and `exec`).
pub fn validate_process(p: &Process, what: &str) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        return Err(if apparmor_enabled() {
            err!("{what}.apparmorProfile: apparmor profile {profile} requested, but vslice-runc does not apply AppArmor profiles yet")
        } else {
            err!("{what}.apparmorProfile: apparmor profile {profile} requested but AppArmor is not enabled on this host")
        });
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        return Err(if selinux_enabled() {
            err!("{what}.selinuxLabel: SELinux label {label} requested, but vslice-runc does not apply SELinux labels yet")
        } else {
            err!("{what}.selinuxLabel: SELinux label {label} requested but SELinux is not enabled on this host")
        });
    }
    if p.io_priority().is_some() {
        return Err(err!("{what}.ioPriority: not supported by vslice-runc"));
    }
    if p.scheduler().is_some() {
        return Err(err!("{what}.scheduler: not supported by vslice-runc"));
    }
    if p.exec_cpu_affinity().is_some() {
        return Err(err!("{what}.execCPUAffinity: not supported by vslice-runc"));
    }
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(err!("{what}.args: must name a program"));
    }
    if !p.cwd().is_absolute() {
        return Err(err!(
            "{what}.cwd: {} is not an absolute path",
            p.cwd().display()
        ));
    }
    Ok(())
}

/// Mount options that a bind mount honours (attributes, propagation); others are refused
/// rather than ignored.
const BIND_OPTIONS: &[&str] = &[
    "bind",
    "rbind",
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "noatime",
    "atime",
    "relatime",
    "strictatime",
    "nodiratime",
    "diratime",
    "private",
    "rprivate",
    "slave",
    "rslave",
    "shared",
    "rshared",
    "unbindable",
    "runbindable",
];

fn ns_present(spec: &Spec, t: LinuxNamespaceType) -> Option<Option<PathBuf>> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == t)
        .map(|n| n.path().clone())
}

/// A namespace of type `t` that is not the runtime's own (new, or joined by a path that is
/// not ours): what a namespaced setting (hostname, net.* sysctl) needs to stay off the host.
fn private_ns(spec: &Spec, t: LinuxNamespaceType, proc_name: &str) -> bool {
    match ns_present(spec, t) {
        None => false,
        Some(None) => true,
        Some(Some(path)) => {
            use std::os::unix::fs::MetadataExt;
            match (
                std::fs::metadata(&path),
                std::fs::metadata(format!("/proc/self/ns/{proc_name}")),
            ) {
                (Ok(a), Ok(b)) => !(a.ino() == b.ino() && a.dev() == b.dev()),
                _ => false,
            }
        }
    }
}

/// Which namespace a sysctl needs (runc's rule); None: not namespaced, refused.
fn sysctl_namespace(key: &str) -> Option<(LinuxNamespaceType, &'static str)> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some((LinuxNamespaceType::Ipc, "ipc"))
    } else if key.starts_with("net.") {
        Some((LinuxNamespaceType::Network, "net"))
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some((LinuxNamespaceType::Uts, "uts"))
    } else {
        None
    }
}

/// Refuse everything in `spec` that vslice-runc would otherwise not honour.
pub fn validate(spec: &Spec) -> Result<()> {
    if !spec.version().starts_with("1.") {
        return Err(err!(
            "ociVersion {:?}: vslice-runc implements runtime-spec 1.x",
            spec.version()
        ));
    }
    if spec.solaris().is_some() || spec.windows().is_some() || spec.vm().is_some() {
        return Err(err!(
            "solaris/windows/vm sections are not supported on Linux"
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| err!("process: missing"))?;
    validate_process(process, "process")?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| err!("linux: missing"))?;
    if let Some(label) = linux.mount_label().as_deref().filter(|s| !s.is_empty()) {
        return Err(err!(
            "linux.mountLabel: SELinux mount label {label} requested but {}",
            if selinux_enabled() {
                "vslice-runc does not apply SELinux labels yet"
            } else {
                "SELinux is not enabled on this host"
            }
        ));
    }
    if linux.intel_rdt().is_some() {
        return Err(err!("linux.intelRdt: not supported by vslice-runc"));
    }
    if let Some(p) = linux.personality() {
        let default = serde_json::to_value(p.domain())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            == Some("LINUX".into());
        if !default || p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(err!(
                "linux.personality: only the default LINUX domain without flags is supported"
            ));
        }
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(err!("linux.timeOffsets: not supported by vslice-runc"));
    }
    if let Some(s) = linux.seccomp() {
        if s.listener_path().is_some() {
            return Err(err!("linux.seccomp.listenerPath: seccomp user notification is not supported by vslice-runc"));
        }
    }
    let has_uts = private_ns(spec, LinuxNamespaceType::Uts, "uts");
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has_uts {
        return Err(err!("hostname: setting it needs a private UTS namespace (add {{\"type\": \"uts\"}} to linux.namespaces)"));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !has_uts {
        return Err(err!("domainname: setting it needs a private UTS namespace"));
    }
    for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
        match sysctl_namespace(key) {
            Some((t, name)) if private_ns(spec, t, name) => {}
            Some((_, name)) => {
                return Err(err!(
                "linux.sysctl {key}: needs a private {name} namespace (it would change the host's)"
            ))
            }
            None => {
                return Err(err!(
                    "linux.sysctl {key}: not namespaced; setting it would change the host"
                ))
            }
        }
    }
    if let Some(r) = linux.resources() {
        validate_resources(r)?;
    }
    for m in spec.mounts().iter().flatten() {
        validate_mount(m)?;
    }
    if let Some(h) = spec.hooks() {
        for list in [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ] {
            for hook in list.iter().flatten() {
                if !hook.path().is_absolute() {
                    return Err(err!(
                        "hooks: path {} is not absolute",
                        hook.path().display()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn validate_mount(m: &Mount) -> Result<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(err!(
            "mounts: destination {} is not absolute",
            dest.display()
        ));
    }
    let opts = m.options().clone().unwrap_or_default();
    let is_bind =
        m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
    if is_bind {
        for o in &opts {
            if !BIND_OPTIONS.contains(&o.as_str()) {
                return Err(err!(
                    "mounts {}: option {o:?} is not supported on a bind mount",
                    dest.display()
                ));
            }
        }
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| err!("mounts {}: bind mount without source", dest.display()))?;
        if !src.is_absolute() {
            return Err(err!(
                "mounts {}: bind source {} must be absolute",
                dest.display(),
                src.display()
            ));
        }
    }
    Ok(())
}

/// Resource fields the cgroup module (and [`super::devices`]) apply: cpu shares, quota,
/// period, cpus, mems; memory limit and swap; pids; devices (v1); `unified` (v2). Anything
/// else set to a non-default value is refused.
pub fn validate_resources(r: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let unsupported = |f: &str| Err(err!("linux.resources.{f}: not supported by vslice-runc"));
    if let Some(m) = r.memory() {
        if m.reservation().is_some_and(|v| v != 0) {
            return unsupported("memory.reservation");
        }
        if m.kernel().is_some_and(|v| v != 0) {
            return unsupported("memory.kernel");
        }
        if m.kernel_tcp().is_some_and(|v| v != 0) {
            return unsupported("memory.kernelTCP");
        }
        if m.swappiness().is_some() {
            return unsupported("memory.swappiness");
        }
        if m.disable_oom_killer() == Some(true) {
            return unsupported("memory.disableOOMKiller");
        }
    }
    if let Some(c) = r.cpu() {
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return unsupported("cpu.realtimeRuntime/realtimePeriod");
        }
        if c.idle().is_some_and(|v| v != 0) {
            return unsupported("cpu.idle");
        }
        if c.burst().is_some_and(|v| v != 0) {
            return unsupported("cpu.burst");
        }
    }
    if let Some(b) = r.block_io() {
        let empty = b.weight().is_none()
            && b.leaf_weight().is_none()
            && b.weight_device().as_ref().is_none_or(|v| v.is_empty())
            && b.throttle_read_bps_device()
                .as_ref()
                .is_none_or(|v| v.is_empty())
            && b.throttle_write_bps_device()
                .as_ref()
                .is_none_or(|v| v.is_empty())
            && b.throttle_read_iops_device()
                .as_ref()
                .is_none_or(|v| v.is_empty())
            && b.throttle_write_iops_device()
                .as_ref()
                .is_none_or(|v| v.is_empty());
        if !empty {
            return unsupported("blockIO");
        }
    }
    if r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty()) && host_has_hugepages() {
        // The kubelet sends a limit (often 0) for every page size. With no huge page
        // reserved or overcommittable on the host, no container can use any: the limit
        // holds without a hugetlb cgroup. Otherwise it would not be enforced: refuse.
        return Err(err!(
            "linux.resources.hugepageLimits: this host has huge pages available and vslice-runc \
             does not apply hugetlb limits"
        ));
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return unsupported("network");
        }
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        return unsupported("rdma");
    }
    if r.unified().as_ref().is_some_and(|m| !m.is_empty()) && crate::cgroup::detect() == Version::V1
    {
        return Err(err!(
            "linux.resources.unified: cgroup v2 settings on a cgroup v1 host"
        ));
    }
    Ok(())
}

/// Whether any huge page size has pages reserved or overcommittable on this host.
pub fn host_has_hugepages() -> bool {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return false;
    };
    rd.flatten().any(|e| {
        ["nr_hugepages", "nr_overcommit_hugepages"].iter().any(|f| {
            std::fs::read_to_string(e.path().join(f))
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
                > 0
        })
    })
}

/// The v1 controllers vslice's cgroup module places a container in (cgroup::v1's list).
const V1_CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "cpuset", "memory", "pids", "freezer"];

/// Mount points of the v1 hierarchies: (mount point, controllers/names in its super options).
fn v1_hierarchies() -> Vec<(PathBuf, Vec<String>)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            continue;
        }
        let opts: Vec<String> = r
            .nth(1)
            .unwrap_or("")
            .split(',')
            .map(String::from)
            .collect();
        if let Some(mp) = left.split_whitespace().nth(4) {
            let mp = PathBuf::from(mp);
            if !out.iter().any(|(p, _)| *p == mp) {
                out.push((mp, opts));
            }
        }
    }
    out
}

fn mount_json(dest: &str, typ: &str, source: &str, options: &[String]) -> Result<Mount> {
    serde_json::from_value(serde_json::json!({
        "destination": dest, "type": typ, "source": source, "options": options,
    }))
    .map_err(|e| err!("build mount {dest}: {e}"))
}

/// `type: cgroup` / `cgroup2` mounts (containerd's CRI always adds one at /sys/fs/cgroup):
///
/// * cgroup v2 with a cgroup namespace: a `cgroup2` mount (made inside the new namespace, so
///   the container's own cgroup is its root); without one: a bind of the container's cgroup;
/// * cgroup v1: a tmpfs with one bind per hierarchy the container is placed in, each showing
///   the container's own cgroup directory (like runc), made read-only afterwards if asked.
///
/// Returns the paths to add to readonlyPaths.
pub fn rewrite_cgroup_mounts(
    spec: &mut Spec,
    cgroup: &str,
    with_devices: bool,
) -> Result<Vec<String>> {
    let Some(mounts) = spec.mounts().clone() else {
        return Ok(Vec::new());
    };
    if !mounts
        .iter()
        .any(|m| matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2")))
    {
        return Ok(Vec::new());
    }
    let cgroupns = ns_present(spec, LinuxNamespaceType::Cgroup) == Some(None);
    let mut out = Vec::new();
    let mut readonly = Vec::new();
    for m in mounts {
        if !matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2")) {
            out.push(m);
            continue;
        }
        let dest = m.destination().to_string_lossy().into_owned();
        let opts = m.options().clone().unwrap_or_default();
        let flags: Vec<String> = opts
            .iter()
            .filter(|o| {
                matches!(
                    o.as_str(),
                    "ro" | "rw" | "nosuid" | "nodev" | "noexec" | "relatime" | "noatime"
                )
            })
            .cloned()
            .collect();
        if crate::cgroup::detect() == Version::V2 {
            if cgroupns {
                out.push(mount_json(&dest, "cgroup2", "cgroup2", &flags)?);
            } else {
                let mut o = flags.clone();
                o.push("rbind".into());
                out.push(mount_json(
                    &dest,
                    "bind",
                    &format!("/sys/fs/cgroup/{cgroup}"),
                    &o,
                )?);
            }
            continue;
        }
        // rw while the binds are attached into it; made read-only afterwards if asked.
        let tmpfs_opts: Vec<String> = ["nosuid", "nodev", "noexec", "mode=755"]
            .map(String::from)
            .to_vec();
        out.push(mount_json(&dest, "tmpfs", "cgroup", &tmpfs_opts)?);
        let mut used: Vec<&str> = V1_CONTROLLERS.to_vec();
        if with_devices {
            used.push("devices");
        }
        for (mp, ctrls) in v1_hierarchies() {
            if !ctrls.iter().any(|c| used.contains(&c.as_str())) {
                continue;
            }
            let Some(name) = mp.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let mut o = flags.clone();
            o.push("rbind".into());
            out.push(mount_json(
                &format!("{dest}/{name}"),
                "bind",
                &mp.join(cgroup).to_string_lossy(),
                &o,
            )?);
        }
        if opts.iter().any(|o| o == "ro") {
            readonly.push(dest.clone());
        }
    }
    spec.set_mounts(Some(out));
    Ok(readonly)
}

/// What `vslice-runc spec` writes: runc's default, adjusted for vslice (cgroup namespace,
/// read-only root).
pub fn default_spec() -> serde_json::Value {
    let caps = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    serde_json::json!({
        "ociVersion": super::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "vslice",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_paths_map_to_plain_paths() {
        assert_eq!(
            map_cgroups_path(None, "c1", false).unwrap(),
            "vslice-runc/c1"
        );
        assert_eq!(
            map_cgroups_path(Some(Path::new("/default/c1")), "c1", false).unwrap(),
            "default/c1"
        );
        assert_eq!(
            map_cgroups_path(Some(Path::new("rel/c1")), "c1", false).unwrap(),
            "rel/c1"
        );
        assert_eq!(
            map_cgroups_path(Some(Path::new("kubepods-burstable-pod1.slice:cri-containerd:abc")), "abc", true).unwrap(),
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope"
        );
        assert_eq!(
            map_cgroups_path(Some(Path::new("system.slice:vs:c1")), "c1", true).unwrap(),
            "system.slice/vs-c1.scope"
        );
        assert_eq!(
            map_cgroups_path(None, "c1", true).unwrap(),
            "system.slice/vslice-runc-c1.scope"
        );
        for bad in ["/a/../b", "/", "a//b", "/./a"] {
            assert!(
                map_cgroups_path(Some(Path::new(bad)), "x", false).is_err(),
                "{bad}"
            );
        }
        assert!(map_cgroups_path(Some(Path::new("a:b")), "x", true).is_err());
    }

    #[test]
    fn unsupported_fields_are_errors() {
        let mut v = default_spec();
        v["process"]["apparmorProfile"] = "docker-default".into();
        let spec: Spec = serde_json::from_value(v).unwrap();
        let e = validate(&spec).unwrap_err().0;
        assert!(
            e.contains("apparmor profile docker-default requested"),
            "{e}"
        );

        let mut v = default_spec();
        v["linux"]["sysctl"] = serde_json::json!({"kernel.core_pattern": "|/x"});
        let e = validate(&serde_json::from_value(v).unwrap()).unwrap_err().0;
        assert!(e.contains("not namespaced"), "{e}");

        let mut v = default_spec();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "mount"}]);
        v.as_object_mut().unwrap().remove("hostname");
        v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
        let e = validate(&serde_json::from_value(v).unwrap()).unwrap_err().0;
        assert!(e.contains("private net namespace"), "{e}");

        let mut v = default_spec();
        v["linux"]["resources"]["blockIO"] = serde_json::json!({"weight": 10});
        let e = validate(&serde_json::from_value(v).unwrap()).unwrap_err().0;
        assert!(e.contains("blockIO"), "{e}");

        let mut v = default_spec();
        v["mounts"] = serde_json::json!([{"destination": "/x", "type": "bind", "source": "/tmp", "options": ["rbind", "tmpcopyup"]}]);
        let e = validate(&serde_json::from_value(v).unwrap()).unwrap_err().0;
        assert!(e.contains("tmpcopyup"), "{e}");

        let spec: Spec = serde_json::from_value(default_spec()).unwrap();
        validate(&spec).unwrap();
    }
}
