//! Base images: read-only root filesystems under `<state root>/images/<name>/rootfs`, owned by
//! host root and shared by every slice. OWNED BY THE IMAGE HELPER.
