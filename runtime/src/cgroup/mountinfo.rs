//! Finding cgroup v1 controller mount points in /proc/self/mountinfo.
//!
//! The mount points are looked up rather than hard-coded because hosts differ: here cpu and
//! cpuacct are separate hierarchies (`/sys/fs/cgroup/cpu`, `/sys/fs/cgroup/cpuacct`), on most
//! distributions they are co-mounted as `/sys/fs/cgroup/cpu,cpuacct` (with `cpu` and
//! `cpuacct` as symlinks), and a controller may be absent altogether.
use std::path::PathBuf;

/// One line of mountinfo, reduced to what we need (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    /// Root of the mount within its filesystem (field 4). For a cgroup mount, the cgroup that
    /// appears at the mount point: `/` unless we are inside a cgroup namespace or a container
    /// that only sees a sub-tree.
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: Vec<String>,
}

/// Parse mountinfo text. Malformed lines are skipped: they cannot be cgroup mounts we could
/// use, and one odd line must not make every cgroup operation fail.
pub(super) fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    // Optional fields (shared:N, master:N, ...) end at a lone "-".
    let sep = fields.iter().position(|f| *f == "-")?;
    if sep < 6 || fields.len() < sep + 4 {
        return None;
    }
    Some(Mount {
        root: unescape(fields[3]),
        mount_point: PathBuf::from(unescape(fields[4])),
        fs_type: fields[sep + 1].to_string(),
        super_options: fields[sep + 3].split(',').map(str::to_string).collect(),
    })
}

/// Undo the kernel's octal escaping of space, tab, newline and backslash (`\040` etc.).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount point of the v1 hierarchy that carries `controller`, if any. When the same hierarchy
/// is mounted more than once (bind mounts), the mount that shows the hierarchy root (`/`) is
/// preferred, then the first one listed.
pub(super) fn v1_mount_point(mounts: &[Mount], controller: &str) -> Option<PathBuf> {
    let carriers = || {
        mounts.iter().filter(move |m| {
            m.fs_type == "cgroup" && m.super_options.iter().any(|o| o == controller)
        })
    };
    carriers()
        .find(|m| m.root == "/")
        .or_else(|| carriers().next())
        .map(|m| m.mount_point.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    // This machine: every controller on its own hierarchy, plus an empty v2 mount (hybrid).
    const SEPARATE: &str = "\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    // A typical systemd distribution: cpu and cpuacct co-mounted, optional fields present.
    const COMOUNTED: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
31 25 0:28 /docker/abc /mnt/pids-bind rw,relatime shared:12 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
";

    #[test]
    fn separate_mounts_are_found_individually() {
        let m = parse(SEPARATE);
        assert_eq!(m.len(), 10);
        assert_eq!(
            v1_mount_point(&m, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
        assert_eq!(
            v1_mount_point(&m, "cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(
            v1_mount_point(&m, "freezer"),
            Some(PathBuf::from("/sys/fs/cgroup/freezer"))
        );
        // Not mounted: absent, not an error.
        assert_eq!(v1_mount_point(&m, "blkio"), None);
        // Named hierarchies and the cgroup2 mount carry no controller.
        assert_eq!(v1_mount_point(&m, "systemd"), None);
    }

    #[test]
    fn comounted_cpu_cpuacct_share_a_mount_and_root_mount_is_preferred() {
        let m = parse(COMOUNTED);
        let both = Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(v1_mount_point(&m, "cpu"), both);
        assert_eq!(v1_mount_point(&m, "cpuacct"), both);
        assert_eq!(
            v1_mount_point(&m, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(v1_mount_point(&m, "cpuset"), None);
    }

    #[test]
    fn escapes_and_malformed_lines() {
        let m = parse(
            "40 31 0:37 / /sys/fs/cgroup/my\\040dir rw - cgroup cgroup rw,memory\ngarbage line\n\n",
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/my dir"));
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }
}
