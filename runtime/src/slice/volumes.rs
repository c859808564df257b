//! Volumes of a slice (`--volume HOST:PATH[:ro]`, `CreateRequest.volumes`): validated at
//! create, attached by the shim at each start (sandbox/volumes.rs says how).
//!
//! What an operator may name, and why:
//! * `host`: an absolute, canonical path (no symlink, `.` or `..`: what was checked is what
//!   gets mounted) of an existing directory, owned by root and closed to other host users
//!   (no group/other permission bits). The mount is idmapped, so what the slice's root creates
//!   there is owned on disk by host ids 0-65535 — possibly setuid root: only a directory no
//!   unprivileged host user can enter may hold that. Not the state root, anything inside it or
//!   containing it, and nothing under /proc, /sys or /dev.
//! * `path`: absolute, normalized, not `/`, not under /proc, /sys or /dev, not the same as or
//!   nested in another volume's path.
use super::{SliceError, SliceSpec};
use crate::config::Paths;
use crate::proto::Volume;
use crate::sandbox::volumes::VolumeMount;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

/// Most volumes per slice.
pub const MAX_VOLUMES: usize = 16;
const SYSTEM_DIRS: [&str; 3] = ["/proc", "/sys", "/dev"];

fn normalized_abs(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains('\0')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !p.split('/').any(|c| c == "." || c == "..")
        && (p == "/" || !p.ends_with('/'))
        && !p.contains("//")
}

fn invalid(field: &str, reason: impl Into<String>) -> SliceError {
    SliceError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn under(p: &Path, dir: &Path) -> bool {
    p.starts_with(dir)
}

pub fn validate(vols: &[Volume], paths: &Paths) -> Result<(), SliceError> {
    if vols.len() > MAX_VOLUMES {
        return Err(invalid("volumes", format!("at most {MAX_VOLUMES} volumes")));
    }
    let state_root = paths
        .root
        .canonicalize()
        .unwrap_or_else(|_| paths.root.clone());
    for (i, v) in vols.iter().enumerate() {
        let hf = format!("volumes[{i}].host");
        let pf = format!("volumes[{i}].path");
        let bad = |f: &str, r: String| Err(invalid(f, r));
        if !normalized_abs(&v.host) || v.host == "/" {
            return bad(
                &hf,
                format!(
                    "{:?}: must be an absolute, normalized host path other than /",
                    v.host
                ),
            );
        }
        let host = Path::new(&v.host);
        match host.canonicalize() {
            Ok(c) if c == host => {}
            Ok(c) => {
                return bad(
                    &hf,
                    format!(
                        "{:?} goes through a symlink (to {}): give the real path",
                        v.host,
                        c.display()
                    ),
                )
            }
            Err(e) => return bad(&hf, format!("{:?}: {e}", v.host)),
        }
        let md = std::fs::metadata(host).map_err(|e| invalid(&hf, format!("{:?}: {e}", v.host)))?;
        if !md.is_dir() {
            return bad(&hf, format!("{:?} is not a directory", v.host));
        }
        if md.uid() != 0 || md.mode() & 0o077 != 0 {
            return bad(&hf, format!(
                "{:?} must be owned by root and closed to other host users (chown root: and chmod 0700): the slice's root creates files there as host ids 0-65535",
                v.host
            ));
        }
        if under(host, &state_root) || under(&state_root, host) {
            return bad(
                &hf,
                format!(
                    "{:?} overlaps the state root {}",
                    v.host,
                    state_root.display()
                ),
            );
        }
        if SYSTEM_DIRS.iter().any(|d| under(host, Path::new(d))) {
            return bad(
                &hf,
                format!("{:?}: /proc, /sys and /dev are not volumes", v.host),
            );
        }
        if !normalized_abs(&v.path) || v.path == "/" {
            return bad(
                &pf,
                format!(
                    "{:?}: must be an absolute, normalized path other than /",
                    v.path
                ),
            );
        }
        let path = Path::new(&v.path);
        if SYSTEM_DIRS.iter().any(|d| under(path, Path::new(d))) {
            return bad(&pf, format!("{:?}: not under /proc, /sys or /dev", v.path));
        }
        for (j, w) in vols[..i].iter().enumerate() {
            let other = Path::new(&w.path);
            if under(path, other) || under(other, path) {
                return bad(
                    &pf,
                    format!("{:?} overlaps volumes[{j}].path {:?}", v.path, w.path),
                );
            }
        }
    }
    Ok(())
}

/// What the shim attaches for `spec`.
pub fn mounts(spec: &SliceSpec) -> Vec<VolumeMount> {
    spec.volumes
        .iter()
        .map(|v| VolumeMount {
            source: v.host.clone().into(),
            target: v.path.clone(),
            read_only: v.read_only,
            uid_base: spec.uid_base,
        })
        .collect()
}

/// `HOST:PATH[:ro|:rw]` (the CLI's --volume).
pub fn parse_flag(s: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, path, ro) = match parts.as_slice() {
        [h, p] => (h, p, false),
        [h, p, "ro"] => (h, p, true),
        [h, p, "rw"] => (h, p, false),
        _ => return Err(format!("{s:?}: expected HOST:PATH[:ro]")),
    };
    Ok(Volume {
        host: host.to_string(),
        path: path.to_string(),
        read_only: ro,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_paths() {
        assert_eq!(
            parse_flag("/srv/data:/data:ro"),
            Ok(Volume {
                host: "/srv/data".into(),
                path: "/data".into(),
                read_only: true
            })
        );
        assert!(parse_flag("/a").is_err());
        assert!(parse_flag("/a:/b:rx").is_err());
        assert!(normalized_abs("/srv/data"));
        for p in ["srv", "/srv/../etc", "/srv/./x", "/srv/", "//srv"] {
            assert!(!normalized_abs(p), "{p}");
        }
    }

    #[test]
    fn refused_volumes_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Paths::from_env();
        paths.root = dir.path().join("state");
        let field = |v: Volume| match validate(&[v], &paths) {
            Err(SliceError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let v = |h: &str, p: &str| Volume {
            host: h.into(),
            path: p.into(),
            read_only: false,
        };
        assert_eq!(field(v("relative", "/data")), "volumes[0].host");
        assert_eq!(field(v("/nonexistent-vslice", "/data")), "volumes[0].host");
        assert_eq!(field(v("/proc", "/data")), "volumes[0].host");
        assert_eq!(field(v("/", "/data")), "volumes[0].host");
        // A world-readable directory.
        assert_eq!(field(v("/usr", "/data")), "volumes[0].host");
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let d = dir
            .path()
            .canonicalize()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(field(v(&d, "/data")), "volumes[0].host"); // contains the state root
        assert_eq!(field(v(&format!("{d}/state"), "/data")), "volumes[0].host");
        let other = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            other.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let ok = other
            .path()
            .canonicalize()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let r = validate(&[v(&ok, "/data")], &paths);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(field(v(&ok, "/dev/x")), "volumes[0].path");
        assert_eq!(field(v(&ok, "/")), "volumes[0].path");
    }
}
