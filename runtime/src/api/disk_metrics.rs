//! Per-slice disk series of `/metrics` (slices with a disk quota only).
use super::metrics::{esc, header};
use crate::slice::SliceInfo;
use std::fmt::Write;

pub fn render_disk(out: &mut String, slices: &[SliceInfo]) {
    type Get = fn(&SliceInfo) -> Option<u64>;
    let series: [(&str, &str, Get); 4] = [
        (
            "vslice_slice_disk_used_bytes",
            "Bytes the slice's files take (upper and work directories).",
            |s| s.disk.as_ref().map(|d| d.used_bytes),
        ),
        (
            "vslice_slice_disk_limit_bytes",
            "The slice's disk quota.",
            |s| s.disk.as_ref().map(|d| d.limit_bytes),
        ),
        (
            "vslice_slice_disk_inodes",
            "Inodes the slice's files take.",
            |s| s.disk.as_ref().map(|d| d.used_inodes),
        ),
        (
            "vslice_slice_disk_inodes_limit",
            "The slice's inode limit.",
            |s| s.disk.as_ref().and_then(|d| d.limit_inodes),
        ),
    ];
    for (name, help, get) in series {
        header(out, name, "gauge", help);
        for s in slices {
            if let Some(v) = get(s) {
                let _ = writeln!(out, "{name}{{slice=\"{}\"}} {v}", esc(&s.spec.name));
            }
        }
    }
}
