//! OCI import end to end, as root against a real daemon: an image made here with umoci from
//! the busybox test image (plus a whiteout layer and an opaque-directory layer, and a config
//! with Env and WorkingDir), exported by skopeo as an oci-archive and a docker-archive, is
//! imported in all three formats with `vslice image import`; the three trees are the same; a
//! slice created from one runs with the image's Env and WorkingDir; `vslice image rm` is
//! refused while the slice uses the image (naming it) and works after. Nothing is pulled from
//! a network: umoci and skopeo only convert local files.
mod daemon_support;

use daemon_support::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Scratch directory and the images this test imported (into the shared test images
/// directory, under names carrying the test's pid), removed on drop.
struct Guard {
    scratch: PathBuf,
    images: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
        for i in &self.images {
            let _ = fs::remove_dir_all(i);
        }
    }
}

fn sh(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e} (deps/packages.txt lists it)"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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

/// (path, kind+mode, uid, gid, size, link target) of every entry under `root`, sorted.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let link = fs::read_link(&p)
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let size = if md.is_file() { md.len() } else { 0 };
            out.push(format!(
                "{rel} {:o} {}:{} {size} {link}",
                md.mode(),
                md.uid(),
                md.gid()
            ));
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn three_formats_import_alike_and_a_slice_runs_from_one() {
    let d = TestDaemon::start();
    let pid = std::process::id();
    let scratch = PathBuf::from(format!("/tmp/vslice-test-ocifmt-{pid}"));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).unwrap();
    let images = d.root.join("images");
    let names: Vec<String> = ["layout", "archive", "docker"]
        .iter()
        .map(|f| format!("oci-{f}-{pid}"))
        .collect();
    let _guard = Guard {
        scratch: scratch.clone(),
        images: names.iter().map(|n| images.join(n)).collect(),
    };

    // The image: busybox plus a file, then a whiteout layer and an opaque-directory layer.
    let src = scratch.join("src");
    sh(
        "cp",
        &[
            "-a",
            &images.join("busybox/rootfs").display().to_string(),
            &src.display().to_string(),
        ],
    );
    fs::write(src.join("hello"), "hello from an OCI image\n").unwrap();
    fs::create_dir_all(src.join("opt/old")).unwrap();
    fs::write(src.join("opt/old/x"), "x").unwrap();
    fs::create_dir_all(src.join("srv/app/conf")).unwrap();
    fs::write(src.join("srv/app/conf/a"), "a").unwrap();
    let newconf = scratch.join("newconf");
    fs::create_dir_all(&newconf).unwrap();
    fs::write(newconf.join("b"), "b").unwrap();
    let layout = scratch.join("layout");
    let (l, s) = (layout.display().to_string(), src.display().to_string());
    let img = format!("{l}:t");
    sh("umoci", &["init", "--layout", &l]);
    sh("umoci", &["new", "--image", &img]);
    sh("umoci", &["insert", "--image", &img, &s, "/"]);
    sh(
        "umoci",
        &["insert", "--image", &img, "--whiteout", "/opt/old"],
    );
    sh(
        "umoci",
        &[
            "insert",
            "--image",
            &img,
            "--opaque",
            &newconf.display().to_string(),
            "/srv/app/conf",
        ],
    );
    sh(
        "umoci",
        &[
            "config",
            "--image",
            &img,
            "--config.env",
            "GREETING=hello from the config",
            "--config.workingdir",
            "/srv/app",
        ],
    );
    let archive = scratch.join("image-oci.tar");
    let docker = scratch.join("image-docker.tar");
    sh(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{img}"),
            &format!("oci-archive:{}:t", archive.display()),
        ],
    );
    sh(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{img}"),
            &format!("docker-archive:{}:img:t", docker.display()),
        ],
    );

    let mut trees = Vec::new();
    for ((path, format), name) in [
        (&layout, "oci-layout"),
        (&archive, "oci-archive"),
        (&docker, "docker-archive"),
    ]
    .into_iter()
    .zip(&names)
    {
        let o = vslice(
            &d,
            &[
                "--json",
                "image",
                "import",
                &path.display().to_string(),
                "--name",
                name,
            ],
        );
        assert_eq!(o.code, 0, "{format}: {} {}", o.stdout, o.stderr);
        let res: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(res["config"]["format"], format);
        assert_eq!(res["config"]["layers"], 3, "{res}");
        assert_eq!(res["config"]["working_dir"], "/srv/app");
        let root = images.join(name).join("rootfs");
        assert_eq!(
            fs::read_to_string(root.join("hello")).unwrap(),
            "hello from an OCI image\n"
        );
        assert!(
            root.join("opt").is_dir() && !root.join("opt/old").exists(),
            "{format}: whiteout"
        );
        assert!(!root.join("srv/app/conf/a").exists(), "{format}: opaque");
        assert_eq!(
            fs::read_to_string(root.join("srv/app/conf/b")).unwrap(),
            "b"
        );
        assert_eq!(
            fs::read_link(root.join("sbin/init")).unwrap(),
            fs::read_link(src.join("sbin/init")).unwrap()
        );
        trees.push(listing(&root));
    }
    assert_eq!(trees[0], trees[1], "oci-layout vs oci-archive");
    assert_eq!(trees[0], trees[2], "oci-layout vs docker-archive");

    // A taken name is a conflict; a hostile or broken file is invalid; both leave no trace.
    let o = vslice(&d, &["image", "import", &l, "--name", &names[0]]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(o.stderr.contains("already exists"), "{}", o.stderr);
    let o = vslice(
        &d,
        &["image", "import", &src.join("hello").display().to_string()],
    );
    assert_eq!(o.code, 5, "{}", o.stderr);
    let leftovers: Vec<String> = fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".import."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A slice from the docker-archive import gets the config's Env and WorkingDir.
    let slice = format!("ocif{pid}");
    // (busybox init changes to / itself: record the directory it was started in first.)
    let o = vslice(
        &d,
        &[
            "create",
            &slice,
            "--image",
            &names[2],
            "--init",
            "/bin/sh",
            "-c",
            "pwd > /init-cwd; exec /sbin/init",
        ],
    );
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let o = vslice(&d, &["exec", &slice, "cat", "/hello"]);
    assert_eq!(o.stdout, "hello from an OCI image\n", "{}", o.stderr);
    let o = vslice(
        &d,
        &[
            "exec",
            &slice,
            "sh",
            "-c",
            "tr '\\0' '\\n' < /proc/1/environ; cat /init-cwd",
        ],
    );
    assert!(
        o.stdout.contains("GREETING=hello from the config"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("VSLICE_NAME="), "{}", o.stdout);
    assert!(o.stdout.trim_end().ends_with("/srv/app"), "{}", o.stdout);
    // The image's files are the slice root's (idmapped), not host root's, inside.
    let o = vslice(&d, &["exec", &slice, "stat", "-c", "%u", "/hello"]);
    assert_eq!(o.stdout.trim(), "0", "{}", o.stderr);

    // Reference counts: ls shows the user; rm is refused naming it.
    let o = vslice(&d, &["--json", "image", "ls"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let ls: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let entry = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == names[2].as_str())
        .unwrap_or_else(|| panic!("{} not listed: {ls}", names[2]));
    assert_eq!(entry["used_by"], serde_json::json!([slice]));
    let o = vslice(&d, &["image", "rm", &names[2]]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(o.stderr.contains(&slice), "{}", o.stderr);
    assert!(images.join(&names[2]).join("rootfs/hello").exists());
    let o = vslice(&d, &["--json", "image", "inspect", &names[2]]);
    let details: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(details["used_by"], serde_json::json!([slice]));
    assert_eq!(details["config"]["format"], "docker-archive");

    let o = vslice(&d, &["rm", &slice]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for n in &names {
        let o = vslice(&d, &["image", "rm", n]);
        assert_eq!(o.code, 0, "{n}: {}", o.stderr);
        assert!(!images.join(n).exists());
    }
    let o = vslice(&d, &["image", "rm", &names[0]]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    // Imports and removals are in the audit log.
    let o = vslice(&d, &["--json", "audit", "show", "--action", "image_import"]);
    assert_eq!(o.stdout.lines().count(), 5, "{}", o.stdout);
    d.assert_consistent();
}
