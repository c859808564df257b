//! Supported kernels and file systems (runtime/src/hostcheck.rs, docs/design.md): a state
//! root or image on a file system the kernel cannot idmap is refused at daemon start and at
//! slice create, with an error that names the cause and the fix. Provoked for real: ramfs
//! (never idmappable) on every kernel, tmpfs on Linux < 6.3 (the v2 VM's 6.1). Needs root.
mod daemon_support;

use daemon_support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A private ramfs/tmpfs mount under /tmp, unmounted and removed on drop.
struct Mount {
    dir: PathBuf,
}

impl Mount {
    fn new(fstype: &str, tag: &str) -> Mount {
        let dir = PathBuf::from(format!(
            "/tmp/vslice-test-hostcheck-{}-{tag}",
            std::process::id()
        ));
        Mount::at(fstype, dir)
    }

    fn at(fstype: &str, dir: PathBuf) -> Mount {
        std::fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(
            Some(fstype),
            &dir,
            Some(fstype),
            nix::mount::MsFlags::empty(),
            Some("mode=755"),
        )
        .unwrap_or_else(|e| panic!("mount {fstype} on {}: {e}", dir.display()));
        Mount { dir }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn old_kernel() -> bool {
    let r = vslice::hostcheck::kernel_release();
    vslice::hostcheck::kernel_version(&r).is_some_and(|v| v < (6, 3))
}

#[test]
fn ramfs_cannot_be_idmapped_and_the_error_says_why_and_what_to_do() {
    let m = Mount::new("ramfs", "probe");
    let e = vslice::hostcheck::check_idmap("image store", &m.dir)
        .expect_err("ramfs must not be idmappable");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("image store {} is on ramfs;", m.dir.display())),
        "{msg}"
    );
    assert!(
        msg.contains("cannot idmap it (mount_setattr idmap: "),
        "{msg}"
    );
    assert!(
        msg.contains("put the state root and image store on ext4, xfs or btrfs"),
        "{msg}"
    );
    // The file system the tests keep their state on is supported (or nothing would run).
    vslice::hostcheck::check_idmap("state root", Path::new("/tmp")).unwrap();
}

#[test]
fn tmpfs_is_refused_before_linux_6_3_only() {
    let m = Mount::new("tmpfs", "tmpfs");
    match vslice::hostcheck::check_idmap("image store", &m.dir) {
        Ok(()) => assert!(
            !old_kernel(),
            "Linux < 6.3 cannot idmap tmpfs: the probe must fail"
        ),
        Err(e) => {
            let msg = e.to_string();
            assert!(old_kernel(), "Linux >= 6.3 idmaps tmpfs, yet: {msg}");
            assert!(msg.contains("is on tmpfs;"), "{msg}");
            assert!(
                msg.contains("tmpfs can be idmapped from Linux 6.3 on: put the state root and image store on ext4, xfs or btrfs"),
                "{msg}"
            );
        }
    }
}

#[test]
fn daemon_refuses_to_start_on_a_state_root_it_cannot_idmap() {
    let m = Mount::new("ramfs", "daemon");
    let root = m.dir.join("state");
    let config = m.dir.join("vslice.toml");
    std::fs::write(
        &config,
        format!(
            "admin_group = \"vst-nogroup-{}\"\nssh_socket = \"\"\n",
            std::process::id()
        ),
    )
    .unwrap();
    let mut child = Command::new(vsliced_bin())
        .arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(&root)
        .arg("--socket")
        .arg(m.dir.join("api.sock"))
        .arg("--user-socket")
        .arg("")
        .arg("--cgroup-parent")
        .arg(format!("vslice-t{}hc", std::process::id()))
        .arg("--policy-dir")
        .arg(repo_dir().join("policies"))
        .arg("--shim")
        .arg(shim_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vsliced");
    // A guard, not a figure: a daemon that starts (the bug) is stopped after 60 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let status = status.unwrap_or_else(|| panic!("vsliced started on ramfs; stderr:\n{err}"));
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("state root {} is on ramfs;", m.dir.display())),
        "{err}"
    );
    assert!(err.contains("ext4, xfs or btrfs"), "{err}");
    assert!(!root.exists(), "nothing made before the check");
}

#[test]
fn create_refuses_an_image_on_a_file_system_it_cannot_idmap() {
    let d = TestDaemon::start();
    // An image `rambox` on ramfs (a copy of the busybox image). The daemon's images dir is
    // a link to the shared test images: give this daemon its own, with a copy of busybox
    // on the supported file system (`diskbox`) as the control.
    let shared = std::fs::read_link(d.root.join("images")).unwrap();
    std::fs::remove_file(d.root.join("images")).unwrap();
    std::fs::create_dir(d.root.join("images")).unwrap();
    std::fs::create_dir(d.root.join("images/diskbox")).unwrap();
    let m = Mount::at("ramfs", d.root.join("images/rambox"));
    for to in [m.dir.join("rootfs"), d.root.join("images/diskbox/rootfs")] {
        let st = Command::new("cp")
            .arg("-a")
            .arg(shared.join("busybox/rootfs"))
            .arg(&to)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let (status, body) = d.curl(
        "POST",
        "/v1/slices",
        Some(r#"{"name":"onram","image":"rambox","start":true}"#),
    );
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("host_unsupported"), "{body}");
    assert!(body.contains("is on ramfs;"), "{body}");
    assert!(body.contains("ext4, xfs or btrfs"), "{body}");
    let (_, list) = d.curl("GET", "/v1/slices", None);
    assert!(
        !list.contains("onram"),
        "nothing of the slice remains: {list}"
    );
    // The same image on the supported file system works.
    let (status, body) = d.curl(
        "POST",
        "/v1/slices",
        Some(r#"{"name":"ondisk","image":"diskbox","start":true}"#),
    );
    assert_eq!(status, 201, "{body}");
    drop(m);
}
