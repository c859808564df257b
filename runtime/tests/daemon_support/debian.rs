//! The Debian test image (the shared contract of docs: images/README.md): tests that need a
//! Debian slice call [`ensure_debian`], which makes `<images_dir()>/debian/rootfs` exist:
//!
//! * already there (`make test` copies the cache into $VSLICE_TEST_IMAGES): used as is;
//! * else copied from the cache `/var/cache/vslice/images/debian/rootfs` (`make images`);
//! * else the cache is built first with images/debian/build.sh --if-stale (mmdebstrap from the
//!   Debian mirror; it takes the cache's flock, so concurrent tests wait for one build).
//!
//! The copy is made in a temporary directory beside the target and renamed into place, under
//! `<images_dir()>/.debian.lock`, so a concurrent test never sees a half-copied tree.
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `make images` keeps the Debian image.
pub const CACHE: &str = "/var/cache/vslice/images/debian/rootfs";

/// Make sure the test images directory has the `debian` image; returns that directory.
pub fn ensure_debian() -> PathBuf {
    let dir = super::images_dir();
    let dest = dir.join("debian").join("rootfs");
    if dest.is_dir() {
        return dir;
    }
    let cache = Path::new(CACHE);
    if !cache.is_dir() {
        let script = super::repo_dir().join("images/debian/build.sh");
        let out = Command::new("sh")
            .arg(&script)
            .arg("--if-stale")
            .arg(cache)
            .output()
            .expect("run images/debian/build.sh");
        assert!(
            out.status.success() && cache.is_dir(),
            "images/debian/build.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::create_dir_all(dest.parent().unwrap()).expect("mkdir images/debian");
    let lock = dir.join(".debian.lock");
    let tmp = dir
        .join("debian")
        .join(format!("rootfs.tmp.{}", std::process::id()));
    // flock(1) serializes the copy between test processes; the second one finds it done.
    let script = format!(
        "[ -d '{dest}' ] && exit 0; rm -rf '{tmp}' && cp -a --reflink=auto '{cache}' '{tmp}' && mv -T '{tmp}' '{dest}'",
        dest = dest.display(),
        tmp = tmp.display(),
        cache = cache.display()
    );
    let st = Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", &script])
        .status()
        .expect("flock");
    assert!(
        st.success() && dest.is_dir(),
        "copy the Debian image into {}",
        dir.display()
    );
    dir
}
