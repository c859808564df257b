//! OCI image layouts for containerd's `ctr images import`, made from a local rootfs (the
//! containerd and CRI tests pull nothing).
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

/// Write to `out` an OCI image layout tarball of `rootfs` (one uncompressed layer, plus
/// `extra` files given as (path inside, content)) named `name` (`REPO:TAG`), with `run` as its
/// config's process (`{"Cmd": [...]}` or `{"Entrypoint": [...]}`), for `ctr images import`.
/// `work` holds the temporary layout.
pub fn make_oci_image(
    rootfs: &Path,
    work: &Path,
    name: &str,
    run: serde_json::Value,
    extra: &[(&str, &str)],
    out: &Path,
) {
    let tag = out.file_stem().unwrap().to_string_lossy().into_owned();
    let dir = work.join(format!("layout-{tag}"));
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_tmp = work.join(format!("layer-{tag}.tar"));
    let st = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(rootfs)
        .args(["-cf"])
        .arg(&layer_tmp)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar the layer");
    if !extra.is_empty() {
        let x = work.join(format!("extra-{tag}"));
        for (p, content) in extra {
            let f = x.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, content).unwrap();
        }
        let st = Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&x)
            .arg("-rf")
            .arg(&layer_tmp)
            .args(extra.iter().map(|(p, _)| format!("./{p}")))
            .status()
            .unwrap();
        assert!(st.success(), "append to the layer");
    }
    let put = |data: &[u8]| -> (String, usize) {
        let digest = hex::encode(Sha256::digest(data));
        std::fs::write(blobs.join(&digest), data).unwrap();
        (format!("sha256:{digest}"), data.len())
    };
    let layer = std::fs::read(&layer_tmp).unwrap();
    std::fs::remove_file(&layer_tmp).unwrap();
    let (layer_digest, layer_size) = put(&layer);
    let mut process = serde_json::json!({"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]});
    if let (Some(p), Some(r)) = (process.as_object_mut(), run.as_object()) {
        p.extend(r.clone());
    }
    let config = serde_json::json!({
        "architecture": if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" },
        "os": "linux",
        "config": process,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest")},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(out)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap();
    assert!(st.success(), "tar the image layout");
    std::fs::remove_dir_all(&dir).unwrap();
}
