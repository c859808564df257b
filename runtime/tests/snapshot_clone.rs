//! Snapshots, clones and moves, as root against real daemons: a slice's files (including a
//! file owned by a non-root user of the slice, a set-uid file, a hard link, a symlink and a
//! deleted image file, i.e. an overlay whiteout) survive snapshot → change → restore; a clone
//! gets a different uid range and every file of its upper layer is owned within it (and reads
//! the same inside); export → import on a fresh state root gives a slice whose files and
//! limits match. A hostile archive is refused and leaves no slice behind.
mod daemon_support;

use daemon_support::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn vslice(d: &TestDaemon, args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_vslice"))
        .env("VSLICE_SOCKET", &d.socket)
        .env_remove("VSLICE_DIRECT")
        .env_remove("VSLICE_ROOT")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn vslice");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn ok(d: &TestDaemon, args: &[&str]) -> String {
    let o = vslice(d, args);
    assert_eq!(o.code, 0, "vslice {args:?}: {} {}", o.stdout, o.stderr);
    o.stdout
}

fn inspect(d: &TestDaemon, name: &str) -> serde_json::Value {
    serde_json::from_str(&ok(d, &["--json", "inspect", name])).unwrap()
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The slice's files as seen inside: contents, owners, modes, links.
const PROBE: &str = "cat /root/data; stat -c '%u:%g %a' /srv/x/file /srv/x/suid; \
     readlink /srv/link; stat -c %h /srv/x/file; test -e /etc/hostname && echo hostname-present; \
     cat /srv/x/hard";

fn populate(d: &TestDaemon, name: &str) {
    ok(
        d,
        &[
            "exec",
            name,
            "sh",
            "-c",
            "echo original > /root/data && mkdir -p /srv/x && echo f > /srv/x/file && \
             chown 1000:1001 /srv/x/file && echo s > /srv/x/suid && chmod 4755 /srv/x/suid && \
             ln -s /root/data /srv/link && ln /srv/x/file /srv/x/hard && rm /etc/hostname",
        ],
    );
}

/// Every inode under `upper` is owned within [base, base + 65536).
fn assert_owned_within(upper: &Path, base: u64) {
    let mut stack = vec![upper.to_path_buf()];
    let mut n = 0;
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        for (what, id) in [("uid", md.uid()), ("gid", md.gid())] {
            assert!(
                (base..base + 65536).contains(&(id as u64)),
                "{}: {what} {id} outside {base}..",
                p.display()
            );
        }
        n += 1;
        if md.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    assert!(n > 5, "upper layer nearly empty: {n} entries");
}

#[test]
fn snapshot_restore_clone_export_import() {
    let pid = std::process::id();
    let scratch = Scratch(PathBuf::from(format!("/tmp/vslice-test-snap-{pid}")));
    let _ = fs::remove_dir_all(&scratch.0);
    fs::create_dir_all(&scratch.0).unwrap();
    let d = TestDaemon::start();
    let (src, copy) = (format!("snap{pid}"), format!("clone{pid}"));
    ok(&d, &["create", &src, "--memory", "96M", "--pids", "77"]);
    populate(&d, &src);
    let expect = ok(&d, &["exec", &src, "sh", "-c", PROBE]);
    assert!(
        expect.starts_with("original\n1000:1001 644\n0:0 4755\n/root/data\n2\n"),
        "{expect}"
    );
    assert!(!expect.contains("hostname-present"), "{expect}");

    // Running: refused.
    let o = vslice(&d, &["snapshot", &src, "s1"]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(o.stderr.contains("stop it first"), "{}", o.stderr);

    ok(&d, &["stop", &src]);
    ok(&d, &["snapshot", &src, "s1"]);
    let o = vslice(&d, &["snapshot", &src, "s1"]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    let o = vslice(&d, &["snapshot", &src, "../x"]);
    assert_eq!(o.code, 5, "{}", o.stderr);
    let list = ok(&d, &["--json", "snapshot", &src, "--list"]);
    assert!(list.contains("\"s1\""), "{list}");

    // Change, then restore.
    ok(&d, &["start", &src]);
    ok(
        &d,
        &[
            "exec",
            &src,
            "sh",
            "-c",
            "echo changed > /root/data; rm /srv/link; touch /new",
        ],
    );
    ok(&d, &["stop", &src]);
    ok(&d, &["restore", &src, "s1"]);
    let o = vslice(&d, &["restore", &src, "nope"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    ok(&d, &["start", &src]);
    assert_eq!(ok(&d, &["exec", &src, "sh", "-c", PROBE]), expect);
    assert_eq!(vslice(&d, &["exec", &src, "test", "-e", "/new"]).code, 1);
    ok(&d, &["stop", &src]);

    // Clone: another uid range, files owned within it, same view inside.
    ok(&d, &["clone", &src, &copy]);
    let (a, b) = (inspect(&d, &src), inspect(&d, &copy));
    let (base_a, base_b) = (
        a["spec"]["uid_base"].as_u64().unwrap(),
        b["spec"]["uid_base"].as_u64().unwrap(),
    );
    assert_ne!(base_a, base_b, "a clone gets its own uid range");
    assert_eq!(a["spec"]["limits"], b["spec"]["limits"]);
    let upper_b = d.root.join("slices").join(&copy).join("fs/upper");
    assert_owned_within(&upper_b, base_b);
    let file = fs::metadata(upper_b.join("srv/x/file")).unwrap();
    assert_eq!(
        (file.uid() as u64, file.gid() as u64),
        (base_b + 1000, base_b + 1001)
    );
    ok(&d, &["start", &copy]);
    assert_eq!(ok(&d, &["exec", &copy, "sh", "-c", PROBE]), expect);
    ok(&d, &["rm", &copy]);

    // Export, then import on a fresh state root.
    let archive = scratch.0.join("slice.tar.zst");
    ok(&d, &["export", &src, &archive.display().to_string()]);
    let d2 = TestDaemon::start();
    let moved = format!("moved{pid}");
    ok(&d2, &["import", &archive.display().to_string(), &moved]);
    let m = inspect(&d2, &moved);
    assert_eq!(m["status"], "stopped");
    assert_eq!(m["spec"]["limits"], a["spec"]["limits"]);
    assert_eq!(m["spec"]["limits"]["memory_max"], 96 << 20);
    assert_eq!(m["spec"]["limits"]["pids_max"], 77);
    assert_eq!(m["spec"]["image"], a["spec"]["image"]);
    let upper_m = d2.root.join("slices").join(&moved).join("fs/upper");
    assert_owned_within(&upper_m, m["spec"]["uid_base"].as_u64().unwrap());
    ok(&d2, &["start", &moved]);
    assert_eq!(ok(&d2, &["exec", &moved, "sh", "-c", PROBE]), expect);
    // Importing again under the same name is a conflict.
    let o = vslice(&d2, &["import", &archive.display().to_string(), &moved]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    ok(&d2, &["rm", &moved]);

    // A hostile archive: a name with `..` after a valid spec. Refused; no slice remains.
    let spec = fs::read(d.root.join("slices").join(&src).join("spec.json")).unwrap();
    let evil = scratch.0.join("evil.tar.zst");
    {
        let f = fs::File::create(&evil).unwrap();
        let mut b = tar::Builder::new(zstd::Encoder::new(f, 1).unwrap().auto_finish());
        let mut h = tar::Header::new_gnu();
        h.set_size(spec.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, "spec.json", spec.as_slice()).unwrap();
        let mut h = tar::Header::new_gnu();
        let name = format!("upper/../../../../..{}/pwned", scratch.0.display());
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap().flush().unwrap();
    }
    let o = vslice(&d2, &["import", &evil.display().to_string(), "evil"]);
    assert_eq!(o.code, 5, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("`..`"), "{}", o.stderr);
    assert!(!scratch.0.join("pwned").exists());
    assert_eq!(vslice(&d2, &["inspect", "evil"]).code, 3);

    ok(&d, &["rm", &src]);
    d.assert_consistent();
    d2.assert_consistent();
}
