//! Volumes against a real daemon and slice: an idmapped bind of a host directory (the slice
//! sees the on-disk ids as its own), read-only volumes refuse writes and cannot be remounted
//! writable or unmounted from inside, nothing outside the named directory is reachable, a
//! symlink planted as the mount point stays inside the slice, and bad volumes are refused
//! naming the field. The attacks run inside the slice (exec as the slice's root).
mod daemon_support;

use daemon_support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;
use vslice::proto::{ExecInput, Volume};

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(d: &TestDaemon, name: &str, script: &str) -> (i32, String) {
    let r = d
        .blocking()
        .exec(
            name,
            &ExecInput {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                ..Default::default()
            },
        )
        .unwrap();
    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&r.stderr));
    (r.exit_code, out)
}

fn vol(host: &std::path::Path, path: &str, ro: bool) -> Volume {
    Volume {
        host: host.to_string_lossy().into_owned(),
        path: path.into(),
        read_only: ro,
    }
}

#[test]
fn volumes_are_idmapped_read_only_when_asked_and_contained() {
    let scratch = Scratch(PathBuf::from(format!(
        "/tmp/vslice-test-files-vol-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&scratch.0);
    let (rw, ro, open) = (
        scratch.0.join("rw"),
        scratch.0.join("ro"),
        scratch.0.join("open"),
    );
    for dir in [&rw, &ro, &open] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(rw.join("owned"), "by 1000\n").unwrap();
    std::os::unix::fs::chown(rw.join("owned"), Some(1000), Some(1000)).unwrap();
    std::fs::write(ro.join("hostfile"), "read me\n").unwrap();
    std::fs::write(scratch.0.join("secret"), "beside the volume\n").unwrap();

    let d = TestDaemon::start();
    let c = d.blocking();

    // Refused, naming the field.
    let bad = |vols: Vec<Volume>| {
        let mut req = sleeper("badvol");
        req.volumes = vols;
        c.create(&req).expect_err("a bad volume was accepted")
    };
    assert_eq!(
        bad(vec![vol(&open, "/data", false)]).field(),
        Some("volumes[0].host")
    );
    assert_eq!(
        bad(vec![vol(&d.root, "/data", false)]).field(),
        Some("volumes[0].host")
    );
    assert_eq!(
        bad(vec![vol(&scratch.0.join("rw/../ro"), "/data", false)]).field(),
        Some("volumes[0].host")
    );
    assert_eq!(
        bad(vec![vol(&rw, "/proc/x", false)]).field(),
        Some("volumes[0].path")
    );
    assert_eq!(
        bad(vec![vol(&rw, "/data", false), vol(&ro, "/data/x", true)]).field(),
        Some("volumes[1].path")
    );
    assert!(!d.root.join("slices/badvol").exists());

    // A slice whose root plants a symlink where the next start mounts a volume.
    let mut req = sleeper("vol");
    req.volumes = vec![vol(&rw, "/data", false), vol(&ro, "/srv/ro", true)];
    let info = c.create(&req).expect("create with volumes");
    assert_eq!(info.spec.volumes.len(), 2);

    // The slice sees the on-disk ids as its own.
    let (code, out) = sh(
        &d,
        "vol",
        "stat -c '%u:%g' /data/owned; cat /srv/ro/hostfile",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "1000:1000\nread me\n");
    // Written by the slice's root: root-owned on disk (hence the 0700 rule).
    let (code, out) = sh(&d, "vol", "echo hi > /data/new && stat -c %u /data/new");
    assert_eq!((code, out.trim()), (0, "0"));
    assert_eq!(std::fs::metadata(rw.join("new")).unwrap().uid(), 0);

    // Read-only: no write, no remount, no unmount (locked), no setuid on the rw one either.
    let (code, out) = sh(&d, "vol", "touch /srv/ro/x");
    assert_ne!(code, 0, "wrote a read-only volume: {out}");
    let (code, out) = sh(&d, "vol", "mount -o remount,rw /srv/ro && touch /srv/ro/x");
    assert_ne!(code, 0, "remounted a read-only volume writable: {out}");
    let (code, out) = sh(&d, "vol", "umount /srv/ro || umount -l /srv/ro; ls /srv/ro");
    assert!(out.contains("hostfile"), "unmounted a volume: {code} {out}");
    assert!(!ro.join("x").exists());
    let (_, out) = sh(&d, "vol", "grep ' /data ' /proc/self/mountinfo");
    assert!(out.contains("nosuid") && out.contains("nodev"), "{out}");

    // Nothing beside the volume: `..` is the slice's own root.
    let (code, out) = sh(
        &d,
        "vol",
        "cat /data/../secret /data/../../secret 2>&1; ls /data/..",
    );
    assert!(!out.contains("beside the volume"), "{code} {out}");
    assert!(out.contains("bin"), "{out}");

    // Plant a symlink on the way to a mount point (/srv -> /etc), restart: the volume lands
    // inside the slice (at its /etc/ro), never at the host's /etc.
    let (code, out) = sh(&d, "vol", "mv /srv /srv.old && ln -s /etc /srv");
    assert_eq!(code, 0, "{out}");
    c.stop("vol", Some(Duration::from_secs(5))).unwrap();
    c.start("vol").expect("restart with a planted symlink");
    let (code, out) = sh(&d, "vol", "cat /etc/ro/hostfile");
    assert_eq!(
        (code, out.as_str()),
        (0, "read me\n"),
        "the volume is at the slice's /etc/ro"
    );
    assert!(
        !std::path::Path::new("/etc/ro").exists(),
        "a mount point made on the host"
    );
    c.destroy("vol").unwrap();
    assert_eq!(
        std::fs::read_to_string(ro.join("hostfile")).unwrap(),
        "read me\n"
    );
}
