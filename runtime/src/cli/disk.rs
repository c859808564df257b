//! The disk-quota and block-I/O flags of `vslice create` and `vslice set` (issue #12).
use super::units;
use crate::slice::{Limits, LimitsPatch};
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct DiskArgs {
    /// Disk quota on what the slice writes, e.g. 20G (project quota where the state root's
    /// filesystem has one, else a per-slice ext4 image on a loop device). `vslice set`
    /// resizes it live (a loop-backed disk only grows while running).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub disk: Option<u64>,
    /// Inode limit (files and directories); needs --disk.
    #[arg(long, value_name = "N")]
    pub inodes: Option<u64>,
    /// Block I/O weight under contention, 1-1000 (BFQ; default 100).
    #[arg(long, value_name = "WEIGHT")]
    pub io_weight: Option<u64>,
    /// Read cap in bytes/s on the device backing the slice's disk, e.g. 50M (0 removes it).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub io_read_bps: Option<u64>,
    /// Write cap in bytes/s, e.g. 20M (0 removes it).
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub io_write_bps: Option<u64>,
    /// Read cap in operations/s (0 removes it).
    #[arg(long, value_name = "N")]
    pub io_read_iops: Option<u64>,
    /// Write cap in operations/s (0 removes it).
    #[arg(long, value_name = "N")]
    pub io_write_iops: Option<u64>,
}

impl DiskArgs {
    pub fn is_empty(&self) -> bool {
        self.disk.is_none()
            && self.inodes.is_none()
            && self.io_weight.is_none()
            && self.io_read_bps.is_none()
            && self.io_write_bps.is_none()
            && self.io_read_iops.is_none()
            && self.io_write_iops.is_none()
    }

    /// Override the fields given on the command line (a cap of 0 is no cap).
    pub fn apply(&self, l: &mut Limits) {
        let cap = |v: Option<u64>, cur: Option<u64>| match v {
            Some(0) => None,
            Some(n) => Some(n),
            None => cur,
        };
        l.disk_max = self.disk.or(l.disk_max);
        l.inodes_max = self.inodes.or(l.inodes_max);
        l.io_weight = self.io_weight.or(l.io_weight);
        l.io_read_bps = cap(self.io_read_bps, l.io_read_bps);
        l.io_write_bps = cap(self.io_write_bps, l.io_write_bps);
        l.io_read_iops = cap(self.io_read_iops, l.io_read_iops);
        l.io_write_iops = cap(self.io_write_iops, l.io_write_iops);
    }

    pub fn patch(&self, p: &mut LimitsPatch) {
        p.disk_max = self.disk;
        p.inodes_max = self.inodes;
        p.io_weight = self.io_weight;
        p.io_read_bps = self.io_read_bps;
        p.io_write_bps = self.io_write_bps;
        p.io_read_iops = self.io_read_iops;
        p.io_write_iops = self.io_write_iops;
    }
}

/// The disk and io limits as `disk=20G inodes=100000 io-write-bps=10M`.
pub fn limits_parts(l: &Limits, parts: &mut Vec<String>) {
    if let Some(v) = l.disk_max {
        parts.push(format!("disk={}", units::format_size(v)));
    }
    if let Some(v) = l.inodes_max {
        parts.push(format!("inodes={v}"));
    }
    if let Some(v) = l.io_weight {
        parts.push(format!("io-weight={v}"));
    }
    for (k, v) in [
        ("io-read-bps", l.io_read_bps),
        ("io-write-bps", l.io_write_bps),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={}", units::format_size(v)));
        }
    }
    for (k, v) in [
        ("io-read-iops", l.io_read_iops),
        ("io-write-iops", l.io_write_iops),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
}
