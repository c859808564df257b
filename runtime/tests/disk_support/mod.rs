//! Shared helpers of the disk tests: exec into a slice, a static attack helper, a project-quota
//! test filesystem on a loop device (made, mounted and removed by a Drop guard), and a check
//! that nothing of the test's is left attached to a loop device.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use vslice::api::types::ExecInput;

use crate::daemon_support::TestDaemon;

/// Run `sh -c script` in the slice: (exit code, stdout, stderr).
pub fn sh(d: &TestDaemon, slice: &str, script: &str) -> (i32, String, String) {
    let r = d
        .blocking()
        .exec(
            slice,
            &ExecInput {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                timeout_secs: Some(120),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("exec in {slice}: {e}"));
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

/// Like [`sh`], asserting success; returns stdout.
pub fn sh_ok(d: &TestDaemon, slice: &str, script: &str) -> String {
    let (code, out, err) = sh(d, slice, script);
    assert_eq!(code, 0, "{script}: stdout {out:?} stderr {err:?}");
    out
}

/// `df -k /` inside the slice: (total KiB, used KiB).
pub fn df_root(d: &TestDaemon, slice: &str) -> (u64, u64) {
    let out = sh_ok(d, slice, "df -k / | tail -n 1");
    let f: Vec<&str> = out.split_whitespace().collect();
    (f[1].parse().unwrap(), f[2].parse().unwrap())
}

/// Build the static attack helper (attack.c) and install it as /attack in the slice.
pub fn install_attack(d: &TestDaemon, slice: &str) {
    let dir = std::env::temp_dir().join(format!("vslice-test-disk-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("attack");
    if !bin.exists() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/disk_support/attack.c");
        let out = Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc attack.c: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let data = std::fs::read(&bin).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    use base64::Engine;
    let r = d
        .blocking()
        .exec(
            slice,
            &ExecInput {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "cat > /attack && chmod 755 /attack".into(),
                ],
                stdin_base64: Some(base64::engine::general_purpose::STANDARD.encode(&data)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
}

/// Run /attack in the slice on `dir` and check that every attempt failed (`project`: the
/// project-id attempts must have run, not been skipped); returns the (projid, inherit) line it
/// printed first.
pub fn attacks_fail(d: &TestDaemon, slice: &str, dir: &str, project: bool) -> String {
    let out = sh_ok(d, slice, &format!("mkdir -p {dir} && /attack {dir}"));
    let mut lines = out.lines();
    let first = lines.next().unwrap_or_default().to_string();
    let mut n = 0;
    for l in lines {
        let (name, res) = l.split_once(' ').unwrap();
        assert_ne!(res, "ok", "{name} succeeded from inside the slice: {out}");
        assert!(!(project && res == "skip"), "{name} did not run: {out}");
        n += 1;
    }
    assert!(n >= 9, "not every attempt ran: {out}");
    first
}

/// Loop devices whose backing file is under `prefix`.
pub fn loops_under(prefix: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let p = prefix.to_string_lossy().into_owned();
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for e in rd.flatten() {
            if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                if b.trim_end().starts_with(&p) {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    out
}

/// Detach loop devices backed by files under `prefix` (cleanup after a failed test).
pub fn detach_loops_under(prefix: &Path) {
    for l in loops_under(prefix) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(format!("/dev/{l}"))
            .output();
    }
}

/// A small ext4 filesystem with project quotas (mkfs.ext4 -O quota,project, mounted
/// prjquota from a loop device), mounted on `mount_point`; everything is undone on drop.
pub struct ProjectFs {
    pub image: PathBuf,
    pub mount_point: PathBuf,
}

impl ProjectFs {
    /// Make a filesystem with `mkfs` (program and options; the image is appended) and mount
    /// it (with `opts`). Err(the mount's error) when the kernel refuses it, with everything
    /// undone.
    pub fn try_new(
        tag: &str,
        mount_point: &Path,
        size_mb: u64,
        mkfs: &[&str],
        opts: &str,
    ) -> Result<ProjectFs, String> {
        let image = PathBuf::from(format!(
            "/tmp/vslice-test-disk-{}-{tag}.img",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&image);
        let fs = ProjectFs {
            image: image.clone(),
            mount_point: mount_point.to_path_buf(),
        };
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(size_mb << 20).unwrap();
        drop(f);
        run(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&image));
        std::fs::create_dir_all(mount_point).unwrap();
        // mount -o loop attaches an autoclear loop device: released at unmount.
        let out = Command::new("mount")
            .arg("-o")
            .arg(format!("loop,{opts}"))
            .arg(&image)
            .arg(mount_point)
            .output()
            .expect("run mount");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let _ = std::fs::remove_dir(mount_point.join("lost+found"));
        Ok(fs)
    }
}

/// Whether the kernel's config has every one of `options` (`CONFIG_X=y`, or `CONFIG_X=` for
/// built in or a module), as /proc/config.gz says; None when the kernel does not publish it.
pub fn kernel_has(options: &[&str]) -> Option<bool> {
    let out = Command::new("gzip")
        .args(["-dc", "/proc/config.gz"])
        .output()
        .ok()?;
    if !out.status.success() || out.stdout.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        options
            .iter()
            .all(|o| text.lines().any(|l| l.starts_with(o))),
    )
}

/// Free bytes (for root) of the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    st.blocks_free() * st.fragment_size()
}

impl Drop for ProjectFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::MNT_DETACH);
        // A lazily unmounted filesystem releases its loop device when the last user goes.
        for _ in 0..100 {
            if loops_under(&self.image).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        detach_loops_under(&self.image);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn run(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
