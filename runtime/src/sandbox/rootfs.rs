//! The copy-on-write, id-shifted root filesystem of a slice (DESIGN.md, "Verified on this
//! kernel"). The shim, as host root and in its own private mount namespace, mounts:
//!
//! * `lower`: an idmapped clone of the shared image, so host uid 0 reads as the slice's root;
//! * `rootfs`: overlayfs with that clone as lowerdir and a per-slice upper/work dir.
//!
//! Nothing is copied: the image stays owned by host root and read-only. Because both mounts
//! live in the shim's private mount namespace, they disappear with the shim and its slice;
//! the host mount table never sees them, so a crash cannot leak them.
use super::{sys, SandboxError};
use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdmappedOverlay {
    /// Shared read-only image (owned by host root).
    pub image: PathBuf,
    /// Mount point of the idmapped clone of the image.
    pub lower: PathBuf,
    /// Per-slice upper and work directories (owned by the slice's base uid).
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Mount point of the overlay: the slice's root.
    pub merged: PathBuf,
    /// Host directories attached below `merged` once the overlay is mounted.
    #[serde(default)]
    pub volumes: Vec<super::volumes::VolumeMount>,
}

fn err(op: &'static str, target: &std::path::Path, e: nix::Error) -> SandboxError {
    SandboxError::Sys {
        op,
        target: target.display().to_string(),
        source: e,
    }
}

impl IdmappedOverlay {
    /// Mount both layers; `userns` is a user namespace fd mapped `0 <base> 65536`.
    pub fn mount(&self, userns: &std::os::fd::OwnedFd) -> Result<(), SandboxError> {
        let image = self.image.to_string_lossy();
        let clone =
            sys::open_tree_clone(&image, true).map_err(|e| err("open_tree", &self.image, e))?;
        sys::mount_setattr(&clone, sys::MOUNT_ATTR_RDONLY, 0, Some(userns.as_raw_fd()))
            .map_err(|e| err("mount_setattr idmap", &self.image, e))?;
        sys::move_mount_to(&clone, &self.lower.to_string_lossy())
            .map_err(|e| err("move_mount", &self.lower, e))?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.upper.display(),
            self.work.display()
        );
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| err("mount overlay", &self.merged, e))?;
        super::volumes::attach(&self.volumes, &self.merged, userns)
    }
}
