//! Hostile OCI images: layers and documents built here with the tar crate (names the tar
//! crate itself would refuse are written into the header bytes), imported with the store's
//! importer as root. Each must be refused with an error that says what is wrong, leave the
//! store empty (no image, no temporary directory), and write nothing outside the store (a
//! canary directory outside it, which the layers aim at, must stay as it was).
//!
//! Also the positive side of the hand-made format: whiteouts and opaque directories across
//! layers, gzip and zstd layers, hardlinks inside the image, and the stored config.
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};
use vslice::image::store;

/// A per-test directory under /tmp, removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = PathBuf::from(format!("/tmp/vslice-test-oci-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(p.join("canary")).unwrap();
        fs::write(p.join("canary/file"), b"canary").unwrap();
        fs::create_dir_all(p.join("images")).unwrap();
        Scratch(p)
    }
    fn canary(&self) -> PathBuf {
        self.0.join("canary")
    }
    fn images(&self) -> PathBuf {
        self.0.join("images")
    }
    /// The canary is untouched and the store holds nothing.
    fn assert_clean(&self, case: &str) {
        let names: Vec<String> = fs::read_dir(self.canary())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["file"],
            "{case}: something was written to the canary"
        );
        assert_eq!(
            fs::read(self.canary().join("file")).unwrap(),
            b"canary",
            "{case}: canary overwritten"
        );
        let left: Vec<String> = fs::read_dir(self.images())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "{case}: the store kept {left:?}");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One tar entry, written with raw header bytes (so `..` and absolute names survive).
struct E {
    kind: EntryType,
    name: String,
    link: String,
    data: Vec<u8>,
    mode: u32,
    uid: u64,
}

fn file(name: &str, data: &str) -> E {
    E {
        kind: EntryType::Regular,
        name: name.into(),
        link: String::new(),
        data: data.as_bytes().to_vec(),
        mode: 0o644,
        uid: 0,
    }
}
fn dir(name: &str) -> E {
    E {
        kind: EntryType::Directory,
        mode: 0o755,
        ..file(name, "")
    }
}
fn symlink(name: &str, target: &str) -> E {
    E {
        kind: EntryType::Symlink,
        link: target.into(),
        mode: 0o777,
        ..file(name, "")
    }
}
fn hardlink(name: &str, target: &str) -> E {
    E {
        kind: EntryType::Link,
        link: target.into(),
        ..file(name, "")
    }
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        if e.kind == EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        let old = h.as_old_mut();
        old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_cksum();
        b.append(&h, e.data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// The first layer of every image: something a slice can start.
fn base() -> Vec<u8> {
    layer(&[
        dir("bin/"),
        E {
            mode: 0o755,
            ..file("bin/sh", "#!/bin/true\n")
        },
        dir("etc/"),
        file("etc/hostname", "base\n"),
    ])
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Compress {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tamper {
    None,
    /// A layer blob differs from its manifest digest.
    LayerBlob,
    /// A diff_id in the config differs from the layer's content.
    DiffId,
    /// The manifest blob differs from the index's digest.
    Manifest,
    /// index.json is not JSON.
    BadIndex,
    /// index.json is larger than accepted.
    HugeIndex,
    /// The config is larger than accepted (and correctly digested).
    HugeConfig,
    /// A digest with another algorithm.
    Sha512,
}

fn write_blob(layout: &Path, data: &[u8]) -> (String, u64) {
    let d = sha(data);
    let p = layout.join("blobs/sha256").join(&d[7..]);
    fs::write(p, data).unwrap();
    (d, data.len() as u64)
}

/// An OCI image layout at `layout` with these (uncompressed) layers.
fn oci_layout(layout: &Path, layers: &[Vec<u8>], c: Compress, tamper: Tamper) {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        diff_ids.push(if tamper == Tamper::DiffId && i == layers.len() - 1 {
            sha(b"something else")
        } else {
            sha(l)
        });
        let (blob, mt) = match c {
            Compress::None => (l.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Compress::Gzip => {
                let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                g.write_all(l).unwrap();
                (
                    g.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Compress::Zstd => (
                zstd::encode_all(l.as_slice(), 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        let (d, size) = write_blob(layout, &blob);
        if tamper == Tamper::LayerBlob && i == layers.len() - 1 {
            // Same size, other bytes: only the digest can tell.
            let mut bad = blob.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0xff;
            fs::write(layout.join("blobs/sha256").join(&d[7..]), bad).unwrap();
        }
        descs.push(serde_json::json!({ "mediaType": mt, "digest": d, "size": size }));
    }
    let mut config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "GREETING=hello from the image"],
            "WorkingDir": "/etc", "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "true"],
            "User": "1000"
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    if tamper == Tamper::HugeConfig {
        config["history"] = serde_json::json!([{ "comment": "x".repeat(5 << 20) }]);
    }
    let config = serde_json::to_vec(&config).unwrap();
    let (cd, cs) = write_blob(layout, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs },
        "layers": descs,
    }))
    .unwrap();
    let (mut md, ms) = write_blob(layout, &manifest);
    if tamper == Tamper::Manifest {
        let other = sha(b"not the manifest");
        fs::write(layout.join("blobs/sha256").join(&other[7..]), &manifest).unwrap();
        md = other;
    }
    if tamper == Tamper::Sha512 {
        md = format!("sha512:{}", "a".repeat(128));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": ms,
            "annotations": { "org.opencontainers.image.ref.name": "latest" },
        }],
    });
    let mut index = serde_json::to_vec(&index).unwrap();
    match tamper {
        Tamper::BadIndex => index = b"{\"manifests\": [".to_vec(),
        Tamper::HugeIndex => {
            index.truncate(index.len() - 1);
            index.extend_from_slice(b", \"pad\": \"");
            index.extend(std::iter::repeat_n(b'x', 2 << 20));
            index.extend_from_slice(b"\"}");
        }
        _ => {}
    }
    fs::write(layout.join("index.json"), index).unwrap();
}

fn import(
    s: &Scratch,
    layout: &Path,
    name: &str,
) -> Result<vslice::proto::image_import::ImportResult, String> {
    store::import(&s.images(), layout, Some(name), &mut |_| {}).map_err(|e| e.to_string())
}

fn must_refuse(s: &Scratch, case: &str, hostile: Vec<u8>, expect: &str) {
    let layout = s.0.join(format!("layout-{}", case.replace(' ', "-")));
    oci_layout(&layout, &[base(), hostile], Compress::None, Tamper::None);
    let err = import(s, &layout, "hostile").expect_err(case);
    assert!(
        err.contains(expect),
        "{case}: error should say {expect:?}: {err}"
    );
    assert!(
        err.contains("layer 2"),
        "{case}: error should name the layer: {err}"
    );
    s.assert_clean(case);
    let _ = fs::remove_dir_all(&layout);
}

fn need_root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        panic!("image import tests run as root (make test runs them so)");
    }
    true
}

#[test]
fn hostile_layers_are_refused_and_write_nothing_outside() {
    need_root();
    let s = Scratch::new("hostile");
    let canary = s.canary().display().to_string();
    let up = "../../../../../../../../../..";
    must_refuse(&s, "dotdot name", layer(&[file("../../x", "p")]), "`..`");
    must_refuse(
        &s,
        "dotdot deep",
        layer(&[dir("etc/"), file(&format!("etc/{up}{canary}/p"), "p")]),
        "`..`",
    );
    must_refuse(
        &s,
        "absolute symlink escape",
        layer(&[symlink("esc", &canary), file("esc/p", "p")]),
        "symlink",
    );
    must_refuse(
        &s,
        "relative symlink escape",
        layer(&[symlink("rel", &format!("{up}{canary}")), file("rel/p", "p")]),
        "symlink",
    );
    must_refuse(
        &s,
        "symlinked parent from a lower layer",
        // `etc` is a directory in layer 1; here it becomes a symlink, then a write through it
        layer(&[symlink("etc", &canary), file("etc/p", "p")]),
        "symlink",
    );
    must_refuse(
        &s,
        "hardlink outside",
        layer(&[hardlink("h", &format!("{up}{canary}/file"))]),
        "`..`",
    );
    // An absolute hardlink target names a file of the image (which has none there).
    must_refuse(
        &s,
        "hardlink absolute",
        layer(&[hardlink("h", &format!("{canary}/file"))]),
        "not in the image",
    );
    must_refuse(
        &s,
        "hardlink through symlink",
        layer(&[symlink("s", &canary), hardlink("h", "s/file")]),
        "symlink",
    );
    must_refuse(
        &s,
        "hardlink missing",
        layer(&[hardlink("h", "nope")]),
        "not in the image",
    );
    must_refuse(
        &s,
        "device node",
        layer(&[E {
            kind: EntryType::Char,
            ..file("dev-null", "")
        }]),
        "device node",
    );
    must_refuse(
        &s,
        "block device",
        layer(&[E {
            kind: EntryType::Block,
            ..file("sda", "")
        }]),
        "device node",
    );
    must_refuse(
        &s,
        "whiteout of dotdot",
        layer(&[file(".wh...", "")]),
        "whiteout",
    );
    must_refuse(
        &s,
        "whiteout of dotdot deep",
        layer(&[dir("etc/"), file("etc/.wh...", "")]),
        "whiteout",
    );
    must_refuse(
        &s,
        "id outside the slice range",
        layer(&[E {
            uid: 70000,
            ..file("x", "")
        }]),
        "65536",
    );
    // An absolute name lands inside the image root, never at the host path it spells.
    let layout = s.0.join("layout-absolute");
    oci_layout(
        &layout,
        &[base(), layer(&[file(&format!("{canary}/p"), "inside")])],
        Compress::None,
        Tamper::None,
    );
    import(&s, &layout, "absolute").unwrap();
    let inside = s
        .images()
        .join("absolute/rootfs")
        .join(canary.trim_start_matches('/'));
    assert_eq!(fs::read(inside.join("p")).unwrap(), b"inside");
    fs::remove_dir_all(s.images().join("absolute")).unwrap();
    s.assert_clean("absolute name");
    // A symlink at a name, then a file at the same name: the file replaces the link; it is
    // never written through it (accepted, and the canary is untouched).
    let layout = s.0.join("layout-replace");
    oci_layout(
        &layout,
        &[
            base(),
            layer(&[
                symlink("over", &format!("{canary}/file")),
                file("over", "mine"),
            ]),
        ],
        Compress::None,
        Tamper::None,
    );
    import(&s, &layout, "replace").unwrap();
    let over = s.images().join("replace/rootfs/over");
    assert!(fs::symlink_metadata(&over).unwrap().is_file());
    assert_eq!(fs::read(&over).unwrap(), b"mine");
    fs::remove_dir_all(s.images().join("replace")).unwrap();
    s.assert_clean("symlink then file");
}

#[test]
fn bad_documents_and_digests_are_refused() {
    need_root();
    let s = Scratch::new("digests");
    let layers = [base(), layer(&[file("etc/motd", "hi")])];
    for (tamper, expect) in [
        (Tamper::LayerBlob, "layer 2 blob: digest mismatch"),
        (Tamper::DiffId, "diff_id"),
        (Tamper::Manifest, "image manifest: digest mismatch"),
        (Tamper::BadIndex, "index.json: EOF"),
        (Tamper::HugeIndex, "more than the 1048576 accepted"),
        (Tamper::HugeConfig, "image config"),
        (Tamper::Sha512, "only sha256"),
    ] {
        let case = format!("{tamper:?}");
        let layout = s.0.join(format!("layout-{case}"));
        oci_layout(&layout, &layers, Compress::Gzip, tamper);
        let err = import(&s, &layout, "tampered").expect_err(&case);
        assert!(err.contains(expect), "{case}: want {expect:?} in: {err}");
        s.assert_clean(&case);
        fs::remove_dir_all(&layout).unwrap();
    }
    // Neither format, and not there at all.
    let err = import(&s, &s.canary(), "x").unwrap_err();
    assert!(err.contains("neither an OCI image layout"), "{err}");
    let err = import(&s, &s.0.join("missing"), "x").unwrap_err();
    assert!(err.contains("No such file"), "{err}");
    // A tar that is not an archive.
    fs::write(s.0.join("junk.tar"), vec![7u8; 3000]).unwrap();
    let err = import(&s, &s.0.join("junk.tar"), "x").unwrap_err();
    assert!(err.contains("junk.tar"), "{err}");
    s.assert_clean("documents");
}

#[test]
fn whiteouts_opaque_dirs_and_compression() {
    need_root();
    let s = Scratch::new("layers");
    let l2 = layer(&[
        dir("opt/"),
        dir("opt/keep/"),
        file("opt/keep/a", "a"),
        file("opt/keep/b", "b"),
        dir("opt/gone/"),
        file("opt/gone/x", "x"),
        file("etc/motd", "layer 2"),
        file("etc/remove-me", "r"),
        E {
            mode: 0o4755,
            ..file("bin/suid", "s")
        },
        E {
            uid: 1000,
            ..file("etc/owned", "o")
        },
        hardlink("etc/motd-link", "etc/motd"),
        symlink("etc/abs", "/etc/hostname"),
    ]);
    let l3 = layer(&[
        file("etc/.wh.remove-me", ""),
        file("opt/.wh.gone", ""),
        // opaque: a and b of layer 2 vanish, c (this layer) stays, whatever the order
        file("opt/keep/c", "c"),
        file("opt/keep/.wh..wh..opq", ""),
        // a whiteout of something this layer adds does not remove it
        file("etc/new", "n"),
        file("etc/.wh.new", ""),
        // replacing a directory with a file and a file with a directory
        file("etc/motd", "layer 3"),
    ]);
    for c in [Compress::None, Compress::Gzip, Compress::Zstd] {
        let layout = s.0.join(format!("layout-{c:?}"));
        oci_layout(&layout, &[base(), l2.clone(), l3.clone()], c, Tamper::None);
        let name = format!("good-{c:?}").to_lowercase();
        let res = import(&s, &layout, &name).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!(res.config.layers, 3);
        assert_eq!(res.config.format, "oci-layout");
        assert_eq!(res.config.working_dir.as_deref(), Some("/etc"));
        assert!(res
            .config
            .env
            .contains(&"GREETING=hello from the image".to_string()));
        assert_eq!(res.config.entrypoint, ["/bin/sh"]);
        assert_eq!(res.config.user.as_deref(), Some("1000"));
        let root = s.images().join(&name).join("rootfs");
        let read = |p: &str| fs::read_to_string(root.join(p)).ok();
        assert_eq!(read("etc/motd").as_deref(), Some("layer 3"), "{c:?}");
        assert_eq!(read("etc/motd-link").as_deref(), Some("layer 2"), "{c:?}");
        assert_eq!(read("etc/remove-me"), None, "{c:?}: whiteout");
        assert!(!root.join("opt/gone").exists(), "{c:?}: directory whiteout");
        assert_eq!(read("opt/keep/a"), None, "{c:?}: opaque");
        assert_eq!(read("opt/keep/b"), None, "{c:?}: opaque");
        assert_eq!(
            read("opt/keep/c").as_deref(),
            Some("c"),
            "{c:?}: opaque keeps own"
        );
        assert_eq!(
            read("etc/new").as_deref(),
            Some("n"),
            "{c:?}: same-layer whiteout"
        );
        assert!(!root.join("opt/keep/.wh..wh..opq").exists());
        assert!(!root.join("etc/.wh.new").exists());
        let suid = fs::metadata(root.join("bin/suid")).unwrap();
        assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(fs::metadata(root.join("etc/owned")).unwrap().uid(), 1000);
        assert_eq!(
            fs::read_link(root.join("etc/abs")).unwrap(),
            Path::new("/etc/hostname")
        );
        // Store permissions: root-only image directory, usable rootfs.
        let img = fs::metadata(s.images().join(&name)).unwrap();
        assert_eq!(img.permissions().mode() & 0o777, 0o700);
        assert_eq!(img.uid(), 0);
        let r = fs::metadata(&root).unwrap();
        assert_eq!((r.uid(), r.permissions().mode() & 0o777), (0, 0o755));
        let image = vslice::image::resolve(&s.images(), &name).unwrap();
        assert_eq!(image.entry_point(), Some("/bin/sh"));
        // No Entrypoint-less /sbin/init here: the config's Entrypoint + Cmd is the default init.
        assert_eq!(
            store::default_init(&image, &s.images()),
            ["/bin/sh", "-c", "true"]
        );
    }
    // A second import of a taken name is refused and changes nothing.
    let layout = s.0.join("layout-None");
    let err = import(&s, &layout, "good-none").unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    // Removal: refused while a slice names the image, then done.
    let slices = s.0.join("slices");
    fs::create_dir_all(slices.join("web")).unwrap();
    let spec = serde_json::json!({
        "name": "web", "image": "good-none", "policy": "default", "limits": {},
        "owners": [], "autostart": false, "init": ["/sbin/init"], "uid_base": 100000,
        "created_at": 0
    });
    fs::write(slices.join("web/spec.json"), spec.to_string()).unwrap();
    let lock = s.0.join("lock");
    let err = store::remove(&s.images(), &slices, &lock, "good-none").unwrap_err();
    assert!(err.to_string().contains("used by slice(s) web"), "{err}");
    assert!(s.images().join("good-none/rootfs/bin/sh").exists());
    fs::remove_dir_all(slices.join("web")).unwrap();
    store::remove(&s.images(), &slices, &lock, "good-none").unwrap();
    assert!(!s.images().join("good-none").exists());
    let err = store::remove(&s.images(), &slices, &lock, "good-none").unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

/// A `docker save` tar made here: manifest.json, the config named by its digest, layers.
fn docker_tar(
    path: &Path,
    config_name: Option<&str>,
    layer_names: &[&str],
    layers: &[Vec<u8>],
    diff_ids: &[String],
) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Env": ["FROM=docker"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap();
    let cname = config_name
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}.json", &sha(&config)[7..]));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": cname, "RepoTags": ["example.org/team/tool:1.0"], "Layers": layer_names,
    }]))
    .unwrap();
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", &manifest);
    add(&cname, &config);
    for (n, l) in layer_names.iter().zip(layers) {
        if !n.contains("..") {
            add(n, l);
        }
    }
    b.finish().unwrap();
}

#[test]
fn docker_archives_are_checked() {
    need_root();
    let s = Scratch::new("docker");
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(&base()).unwrap();
    let gz = g.finish().unwrap();
    let good_ids = [sha(&base())];
    let t = s.0.join("d.tar");

    docker_tar(
        &t,
        None,
        &["l1/layer.tar"],
        std::slice::from_ref(&gz),
        &good_ids,
    );
    let res = store::import(&s.images(), &t, None, &mut |_| {}).unwrap();
    assert_eq!(res.name, "tool", "the name comes from RepoTags");
    assert_eq!(res.config.format, "docker-archive");
    assert_eq!(res.config.env, ["FROM=docker"]);
    fs::remove_dir_all(s.images().join("tool")).unwrap();

    for (case, cfg, names, ids, expect) in [
        (
            "config not a digest",
            Some("config.json"),
            ["l1/layer.tar"],
            good_ids.to_vec(),
            "not named by its sha256 digest",
        ),
        (
            "layer outside",
            None,
            ["../../../etc/passwd"],
            good_ids.to_vec(),
            "not in the archive",
        ),
        (
            "wrong diff_id",
            None,
            ["l1/layer.tar"],
            vec![sha(b"other")],
            "diff_id",
        ),
    ] {
        docker_tar(&t, cfg, &names, std::slice::from_ref(&gz), &ids);
        let err = import(&s, &t, "d").expect_err(case);
        assert!(err.contains(expect), "{case}: want {expect:?}: {err}");
        s.assert_clean(case);
    }
}
