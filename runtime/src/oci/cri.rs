//! Pods from containerd's CRI plugin get a user namespace, one per pod.
//!
//! containerd 1.6 (Debian 12) never puts a user namespace into a CRI container's spec (pod
//! user namespaces arrived in 1.7/Kubernetes 1.25+ as an opt-in); vslice's rule is that code
//! from outside only ever runs as an unprivileged host uid. So when a spec carries the CRI's
//! `io.kubernetes.cri.container-type` annotation and no user namespace, vslice-runc adds one:
//!
//! * the pod's sandbox (pause) container gets a **new** user namespace mapping 0..65536 to a
//!   host range of its own, allocated from [`ALLOC_DIR`] (one file per range, created
//!   O_EXCL, holding the sandbox's id; removed when the sandbox is deleted);
//! * every other container of the pod (`io.kubernetes.cri.sandbox-id`) **joins** the
//!   sandbox's user namespace (`/proc/<sandbox init>/ns/user`), so the pod-shared IPC, UTS and
//!   PID namespaces that the sandbox created (and that containerd puts into the container's
//!   spec as paths) are owned by the namespace the container is in, as the kernel requires
//!   for setns.
//!
//! Host ranges start at [`FIRST_HOST_ID`], above the daemon's slice ranges (1e9..2^31), so a
//! pod and a slice never share ids. A spec that already has a user namespace (a newer
//! containerd with `hostUsers: false`) is left alone.
use super::state::Container;
use super::{err, Result};
use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The CRI's annotations (containerd pkg/cri/annotations).
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// Host-wide allocation of pod uid ranges (ranges are a host resource, whatever `--root`).
pub const ALLOC_DIR: &str = "/run/vslice-runc-userns";
/// First host id of pod ranges: above the slices' (1e9 + 16383 * 65536 < 2^31).
pub const FIRST_HOST_ID: u32 = 3_000_000_000;
pub const IDS_PER_POD: u32 = 65536;
/// (u32::MAX - FIRST_HOST_ID) / IDS_PER_POD, less one so that id 2^32-1 (-1) is never mapped.
pub const MAX_PODS: u32 = (u32::MAX - FIRST_HOST_ID) / IDS_PER_POD - 1;

/// What [`pod_userns`] did to the spec.
#[derive(Debug, PartialEq)]
pub enum PodUserns {
    /// Not a CRI container, or the spec already has a user namespace.
    Unchanged,
    /// A sandbox: a new user namespace with this allocated host range (file in [`ALLOC_DIR`]).
    New { host_id: u32, alloc: PathBuf },
    /// A container joining its sandbox's user namespace.
    Joined { sandbox_pid: i32 },
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn has_user_ns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::User))
}

/// Allocate the lowest free pod range in `dir` for sandbox `id`.
pub fn allocate(dir: &Path, id: &str) -> Result<(u32, PathBuf)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err!("create {}: {e}", dir.display()))?;
    let mut slot = 0;
    while slot < MAX_PODS {
        let path = dir.join(slot.to_string());
        slot += 1;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                if let Err(e) = f.write_all(id.as_bytes()) {
                    let _ = std::fs::remove_file(&path);
                    return Err(err!("write {}: {e}", path.display()));
                }
                return Ok((FIRST_HOST_ID + (slot - 1) * IDS_PER_POD, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // A concurrent release removed the (then empty) directory: make it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                slot -= 1;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| err!("create {}: {e}", dir.display()))?;
            }
            Err(e) => return Err(err!("create {}: {e}", path.display())),
        }
    }
    Err(err!(
        "no free pod uid range: {MAX_PODS} pods hold one (files in {})",
        dir.display()
    ))
}

/// Free the range that sandbox `id` holds in `dir` (nothing if it holds none).
pub fn release(dir: &Path, id: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if std::fs::read(e.path()).is_ok_and(|c| c == id.as_bytes()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    // Leave nothing behind once the last pod is gone (fails while others hold ranges).
    let _ = std::fs::remove_dir(dir);
}

fn set_user_ns(spec: &mut Spec, path: Option<PathBuf>, host_id: u32, size: u32) -> Result<()> {
    let mut linux = spec
        .linux()
        .clone()
        .ok_or_else(|| err!("linux: missing (a CRI container always has it)"))?;
    let mut nss = linux.namespaces().clone().unwrap_or_default();
    let mut b = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User);
    if let Some(p) = path {
        b = b.path(p);
    }
    nss.push(b.build().map_err(|e| err!("user namespace: {e}"))?);
    linux.set_namespaces(Some(nss));
    let map = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(host_id)
        .size(size)
        .build()
        .map_err(|e| err!("id mapping: {e}"))?;
    linux.set_uid_mappings(Some(vec![map]));
    linux.set_gid_mappings(Some(vec![map]));
    spec.set_linux(Some(linux));
    Ok(())
}

/// The first line of a /proc/PID/{uid,gid}_map: (inside, host, size).
fn first_map(pid: i32, file: &str) -> Result<(u32, u32, u32)> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).map_err(|e| err!("read {path}: {e}"))?;
    let f: Vec<u32> = text
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    match f[..] {
        [a, b, c] => Ok((a, b, c)),
        _ => Err(err!("{path}: no mapping")),
    }
}

/// Give a CRI container its pod's user namespace (see the module doc). `alloc_dir` is
/// [`ALLOC_DIR`] outside tests.
pub fn pod_userns(spec: &mut Spec, root: &Path, alloc_dir: &Path, id: &str) -> Result<PodUserns> {
    let Some(kind) = annotation(spec, CONTAINER_TYPE).map(str::to_string) else {
        return Ok(PodUserns::Unchanged);
    };
    if has_user_ns(spec) {
        return Ok(PodUserns::Unchanged);
    }
    match kind.as_str() {
        "sandbox" => {
            let (host_id, alloc) = allocate(alloc_dir, id)?;
            if let Err(e) = set_user_ns(spec, None, host_id, IDS_PER_POD) {
                let _ = std::fs::remove_file(&alloc);
                return Err(e);
            }
            Ok(PodUserns::New { host_id, alloc })
        }
        "container" => {
            let sid = annotation(spec, SANDBOX_ID)
                .ok_or_else(|| {
                    err!("annotation {SANDBOX_ID}: missing on a CRI container (container-type \"container\")")
                })?
                .to_string();
            let sandbox = Container::peek(root, &sid)
                .map_err(|e| err!("annotation {SANDBOX_ID}: sandbox {sid}: {e}"))?;
            let saved = sandbox.saved.as_ref().ok_or_else(|| {
                err!("annotation {SANDBOX_ID}: sandbox {sid} was never fully created")
            })?;
            if !crate::util::process::is_alive(saved.pid, saved.pid_start) {
                return Err(err!(
                    "annotation {SANDBOX_ID}: sandbox {sid} is not running (its user namespace is gone)"
                ));
            }
            let (inside, host, size) = first_map(saved.pid, "uid_map")?;
            if inside != 0 || host == 0 {
                return Err(err!(
                    "annotation {SANDBOX_ID}: sandbox {sid} has no user namespace of vslice's (uid_map {inside} {host} {size})"
                ));
            }
            set_user_ns(
                spec,
                Some(PathBuf::from(format!("/proc/{}/ns/user", saved.pid))),
                host,
                size,
            )?;
            Ok(PodUserns::Joined {
                sandbox_pid: saved.pid,
            })
        }
        other => Err(err!(
            "annotation {CONTAINER_TYPE}: unknown value {other:?} (expected \"sandbox\" or \"container\")"
        )),
    }
}

/// Let the pod's root (host gid `host_gid`, its root's group) traverse the bundle directory,
/// which containerd 1.6 makes 0700 (1.7 does this itself for pods with a user namespace):
/// group `host_gid`, mode 0710, as containerd 1.7 does. Nothing changes when the pod's root
/// can already traverse it.
pub fn open_bundle_to_pod(bundle: &Path, host_gid: u32) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::metadata(bundle).map_err(|e| err!("{}: {e}", bundle.display()))?;
    if md.mode() & 0o001 != 0 || (md.gid() == host_gid && md.mode() & 0o010 != 0) {
        return Ok(());
    }
    std::os::unix::fs::chown(bundle, None, Some(host_gid))
        .map_err(|e| err!("chown :{host_gid} {}: {e}", bundle.display()))?;
    let mode = (md.mode() & 0o7700) | 0o010;
    std::fs::set_permissions(bundle, std::fs::Permissions::from_mode(mode))
        .map_err(|e| err!("chmod {mode:o} {}: {e}", bundle.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(annotations: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        s.set_linux(Some(Default::default()));
        s.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        s
    }

    #[test]
    fn sandbox_gets_a_new_range_and_release_frees_it() {
        let t = tempfile::tempdir().unwrap();
        let alloc = t.path().join("alloc");
        let mut a = spec_with(&[(CONTAINER_TYPE, "sandbox")]);
        let r = pod_userns(&mut a, t.path(), &alloc, "pod-a").unwrap();
        assert_eq!(
            r,
            PodUserns::New {
                host_id: FIRST_HOST_ID,
                alloc: alloc.join("0")
            }
        );
        let l = a.linux().as_ref().unwrap();
        assert!(has_user_ns(&a));
        let m = &l.uid_mappings().as_ref().unwrap()[0];
        assert_eq!(
            (m.container_id(), m.host_id(), m.size()),
            (0, FIRST_HOST_ID, 65536)
        );
        let mut b = spec_with(&[(CONTAINER_TYPE, "sandbox")]);
        match pod_userns(&mut b, t.path(), &alloc, "pod-b").unwrap() {
            PodUserns::New { host_id, .. } => assert_eq!(host_id, FIRST_HOST_ID + 65536),
            r => panic!("{r:?}"),
        }
        release(&alloc, "pod-a");
        let mut c = spec_with(&[(CONTAINER_TYPE, "sandbox")]);
        match pod_userns(&mut c, t.path(), &alloc, "pod-c").unwrap() {
            PodUserns::New { host_id, .. } => assert_eq!(host_id, FIRST_HOST_ID),
            r => panic!("{r:?}"),
        }
        // The highest range ends below 2^32 - 1.
        assert!(
            (FIRST_HOST_ID as u64) + (MAX_PODS as u64 + 1) * (IDS_PER_POD as u64) < u32::MAX as u64
        );
    }

    #[test]
    fn non_cri_and_user_namespaced_specs_are_unchanged() {
        let t = tempfile::tempdir().unwrap();
        let alloc = t.path().join("alloc");
        let mut s = spec_with(&[]);
        assert_eq!(
            pod_userns(&mut s, t.path(), &alloc, "x").unwrap(),
            PodUserns::Unchanged
        );
        assert!(!has_user_ns(&s));
        let mut s = spec_with(&[(CONTAINER_TYPE, "sandbox")]);
        set_user_ns(&mut s, None, 5000, 10).unwrap();
        assert_eq!(
            pod_userns(&mut s, t.path(), &alloc, "x").unwrap(),
            PodUserns::Unchanged
        );
        assert!(!alloc.exists());
    }

    #[test]
    fn bad_cri_annotations_are_named() {
        let t = tempfile::tempdir().unwrap();
        let alloc = t.path().join("alloc");
        let mut s = spec_with(&[(CONTAINER_TYPE, "container")]);
        let e = pod_userns(&mut s, t.path(), &alloc, "x").unwrap_err().0;
        assert!(e.contains(SANDBOX_ID) && e.contains("missing"), "{e}");
        let mut s = spec_with(&[(CONTAINER_TYPE, "container"), (SANDBOX_ID, "nosuch")]);
        let e = pod_userns(&mut s, t.path(), &alloc, "x").unwrap_err().0;
        assert!(e.contains("sandbox nosuch"), "{e}");
        let mut s = spec_with(&[(CONTAINER_TYPE, "weird")]);
        let e = pod_userns(&mut s, t.path(), &alloc, "x").unwrap_err().0;
        assert!(e.contains("unknown value \"weird\""), "{e}");
    }
}
