//! The Debian image (images/debian/build.sh, `make images`) in a real slice: it boots with its
//! busybox init, and `apt-get update && apt-get install` work as the slice's root in the
//! idmapped overlay — dpkg unpacks, chowns to non-root ids, keeps setuid bits and fsyncs —
//! while the shared image stays untouched.
//!
//! The packages come from a local `file:` repository put into the slice (the tests send no
//! traffic off the node, and this host does not forward: NAT to the Debian mirror is what a
//! `--net bridge` slice uses in production, see images/README.md): `hello` downloaded from the
//! Debian registry by the host's apt (`apt-get download`), and a package built here whose
//! files carry an owner other than root and a setuid bit.
mod daemon_support;

use daemon_support::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use vslice::proto::ExecInput;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `script` with sh in the slice; returns (exit code, stdout, stderr).
fn sh(d: &TestDaemon, name: &str, script: &str, stdin: Option<&[u8]>) -> (i32, String, String) {
    use base64::Engine;
    let r = d
        .blocking()
        .exec(
            name,
            &ExecInput {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                stdin_base64: stdin.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                timeout_secs: Some(600),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("exec {script:?}: {e}"));
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

fn sh_ok(d: &TestDaemon, name: &str, script: &str, stdin: Option<&[u8]>) -> String {
    let (code, out, err) = sh(d, name, script, stdin);
    assert_eq!(code, 0, "{script}:\n{out}\n{err}");
    out
}

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

/// A local apt repository with `hello` (from the Debian registry, through the host's apt) and
/// `vslice-files-test` (built here: /srv/vst/owned is 1234:5678, /usr/local/bin/vst-suid is
/// setuid root), as a tar of the repository directory.
fn local_repo(dir: &Path) -> Vec<u8> {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    run(Command::new("apt-get")
        .args(["download", "-q", "hello"])
        .current_dir(&repo));
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("srv/vst")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/local/bin")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: vslice-files-test\nVersion: 1.0\nArchitecture: all\nMaintainer: vslice tests <root@localhost>\nDescription: ownership and setuid bits for the vslice Debian image test\n",
    )
    .unwrap();
    std::fs::write(pkg.join("srv/vst/owned"), "owned by 1234:5678\n").unwrap();
    std::fs::write(pkg.join("usr/local/bin/vst-suid"), "#!/bin/sh\nid -u\n").unwrap();
    run(Command::new("chown")
        .args(["1234:5678"])
        .arg(pkg.join("srv/vst/owned")));
    run(Command::new("chmod")
        .args(["4755"])
        .arg(pkg.join("usr/local/bin/vst-suid")));
    run(Command::new("dpkg-deb")
        .args(["--build", "-Zgzip"])
        .arg(&pkg)
        .arg(repo.join("vslice-files-test_1.0_all.deb")));
    let packages = run(Command::new("dpkg-scanpackages")
        .args(["-m", "."])
        .current_dir(&repo));
    std::fs::write(repo.join("Packages"), packages).unwrap();
    let out = Command::new("tar")
        .arg("-C")
        .arg(&repo)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn debian_slice_installs_packages_with_apt_and_leaves_the_image_alone() {
    let images = debian::ensure_debian();
    let image = images.join("debian/rootfs");
    let status_before = sha256_file(&image.join("var/lib/dpkg/status"));
    assert!(!image.join("usr/bin/hello").exists(), "hello in the image");

    let scratch = Scratch(PathBuf::from(format!(
        "/tmp/vslice-test-files-debian-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(&scratch.0).unwrap();
    let repo_tar = local_repo(&scratch.0);

    let d = TestDaemon::start();
    let c = d.blocking();
    let info = c
        .create(&vslice::slice::CreateRequest {
            name: "deb".into(),
            image: Some("debian".into()),
            start: true,
            ..Default::default()
        })
        .expect("create a Debian slice");
    assert_eq!(info.spec.image, "debian");
    assert_eq!(info.spec.init, vec!["/sbin/init".to_string()]);
    let base = info.spec.uid_base;

    // It runs Debian, PID 1 is busybox init, and we are root.
    let out = sh_ok(
        &d,
        "deb",
        "cat /etc/debian_version; id -u; readlink /proc/1/exe",
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("12."), "{out}");
    assert_eq!(lines[1], "0", "{out}");
    assert!(lines[2].ends_with("busybox"), "{out}");

    // The package lists were left out of the image.
    sh_ok(
        &d,
        "deb",
        "test -z \"$(ls /var/lib/apt/lists | grep -v -e partial -e lock)\"",
        None,
    );

    sh_ok(
        &d,
        "deb",
        "mkdir -p /srv/repo && tar -x -C /srv/repo",
        Some(&repo_tar),
    );
    let apt = "set -e; echo 'deb [trusted=yes] file:/srv/repo ./' >/etc/apt/sources.list.d/local.list; \
               export DEBIAN_FRONTEND=noninteractive; \
               o='-o Dir::Etc::SourceList=/etc/apt/sources.list.d/local.list -o Dir::Etc::SourceParts=-'; \
               apt-get $o update; apt-get $o install -y hello vslice-files-test";
    sh_ok(&d, "deb", apt, None);

    assert_eq!(sh_ok(&d, "deb", "hello", None).trim(), "Hello, world!");
    let st = sh_ok(
        &d,
        "deb",
        "stat -c '%u:%g %a' /srv/vst/owned /usr/local/bin/vst-suid /usr/bin/hello; dpkg-query -W -f='${Status}\\n' hello",
        None,
    );
    assert_eq!(
        st.lines().collect::<Vec<_>>(),
        [
            "1234:5678 644",
            "0:0 4755",
            "0:0 755",
            "install ok installed"
        ],
        "{st}"
    );
    // Setuid bits work in the slice: sudo run by the slice's nobody gets to be root (it reads
    // its root-only configuration and asks for a password; without the setuid bit it would
    // say it must be setuid root).
    let (code, out, err) = sh(
        &d,
        "deb",
        "setpriv --reuid=65534 --regid=65534 --clear-groups sudo -n true",
        None,
    );
    assert_ne!(code, 0, "nobody may not sudo:\n{out}{err}");
    assert!(
        err.contains("password is required") || err.contains("not in the sudoers"),
        "sudo did not run as setuid root (it would say it must be setuid root): {err}"
    );

    // On the host: the installed files are in the slice's upper layer, owned by its ids
    // (slice uid 1234 = host uid base+1234), and the image is unchanged.
    let upper = d.root.join("slices/deb/fs/upper");
    let owned = std::fs::metadata(upper.join("srv/vst/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (base + 1234, base + 5678));
    let hello = std::fs::metadata(upper.join("usr/bin/hello")).unwrap();
    assert_eq!(hello.uid(), base);
    assert!(
        !image.join("usr/bin/hello").exists(),
        "hello leaked into the image"
    );
    assert!(
        !image.join("srv/vst").exists(),
        "package files leaked into the image"
    );
    assert_eq!(
        sha256_file(&image.join("var/lib/dpkg/status")),
        status_before,
        "the image's dpkg status changed"
    );
    let img_root = std::fs::metadata(&image).unwrap();
    assert_eq!(img_root.uid(), 0);

    c.destroy("deb").expect("destroy");
}
