//! /etc/hosts and /etc/resolv.conf for a slice, and writing them into a slice's rootfs without
//! following links the slice may have planted.
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{fchown, Gid, Uid};

use super::cmd::Result;
use crate::util::fs::PathError;

/// The name the gateway (the node, as seen from slices) has in every slice's /etc/hosts.
pub const GATEWAY_HOSTNAME: &str = "vslice-gateway";

pub(crate) fn hosts_file(slice: &str, ip: Option<Ipv4Addr>, gateway: Option<Ipv4Addr>) -> String {
    let mut s = String::from(
        "# written by vslice\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    match ip {
        Some(ip) => s.push_str(&format!("{ip}\t{slice}\n")),
        None => s.push_str(&format!("127.0.1.1\t{slice}\n")),
    }
    if let Some(gw) = gateway {
        s.push_str(&format!("{gw}\t{GATEWAY_HOSTNAME}\n"));
    }
    s
}

/// Nameservers and search domains of the host that a slice can use: loopback resolvers (a
/// systemd-resolved stub at 127.0.0.53, a local dnsmasq) are unreachable from a slice, so
/// they are skipped; with systemd-resolved the upstream list in /run/systemd/resolve is used.
pub(crate) fn host_dns() -> (Vec<Ipv4Addr>, Vec<String>) {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    for path in ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match it.next() {
                Some("nameserver") => {
                    if let Some(Ok(ip)) = it.next().map(|a| a.parse::<Ipv4Addr>()) {
                        if !ip.is_loopback() && !ip.is_unspecified() && !servers.contains(&ip) {
                            servers.push(ip);
                        }
                    }
                }
                Some("search") | Some("domain") if search.is_empty() => {
                    search = it.map(String::from).collect();
                }
                _ => {}
            }
        }
        if !servers.is_empty() {
            break;
        }
    }
    (servers, search)
}

pub(crate) fn resolv_conf(servers: &[Ipv4Addr], search: &[String]) -> String {
    let mut s = String::from("# written by vslice\n");
    if servers.is_empty() {
        s.push_str("# no nameserver of the node is reachable from slices (set NodeNet::dns)\n");
    }
    for ns in servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    s
}

fn open_dir_nofollow(dirfd: Option<RawFd>, name: &Path) -> std::result::Result<OwnedFd, Errno> {
    let fd = openat(
        dirfd,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Write `files` (name, content) into `<rootfs>/etc`, each atomically (temp file + rename),
/// never following a symlink the slice may have put at `etc` or at the file names (a rename
/// replaces a symlink, it does not write through it). `owner` is the host uid/gid the files get
/// (the slice's root), mode 0644.
pub(crate) fn write_etc_files(
    rootfs: &Path,
    files: &[(&str, &str)],
    owner: Option<(u32, u32)>,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    let root =
        open_dir_nofollow(None, rootfs).map_err(|e| PathError::new("open", rootfs, e.into()))?;
    let etc_path = rootfs.join("etc");
    let etc = open_dir_nofollow(Some(root.as_raw_fd()), Path::new("etc"))
        .map_err(|e| PathError::new("open (no symlinks)", &etc_path, e.into()))?;
    for (name, content) in files {
        let tmp = format!(".{name}.vslice.{}", std::process::id());
        let target = etc_path.join(name);
        let fd = openat(
            Some(etc.as_raw_fd()),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        );
        let fd = match fd {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => {
                // A leftover of a crashed write (or a planted file): remove it, then retry once.
                let _ = nix::unistd::unlinkat(
                    Some(etc.as_raw_fd()),
                    tmp.as_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                openat(
                    Some(etc.as_raw_fd()),
                    tmp.as_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                )
                .map_err(|e| PathError::new("create", etc_path.join(&tmp), e.into()))?
            }
            Err(e) => return Err(PathError::new("create", etc_path.join(&tmp), e.into()).into()),
        };
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let res = (|| -> std::result::Result<(), PathError> {
            f.write_all(content.as_bytes())
                .map_err(|e| PathError::new("write", &target, e))?;
            if let Some((uid, gid)) = owner {
                fchown(
                    f.as_raw_fd(),
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                )
                .map_err(|e| PathError::new("chown", &target, e.into()))?;
            }
            f.sync_all()
                .map_err(|e| PathError::new("fsync", &target, e))?;
            renameat(
                Some(etc.as_raw_fd()),
                tmp.as_str(),
                Some(etc.as_raw_fd()),
                *name,
            )
            .map_err(|e| PathError::new("rename into", &target, e.into()))
        })();
        if res.is_err() {
            let _ = nix::unistd::unlinkat(
                Some(etc.as_raw_fd()),
                tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        res?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_planted_symlinks_and_refuse_a_linked_etc() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("etc/hosts")).unwrap();
        write_etc_files(
            &root,
            &[("hosts", "10.213.0.2\tweb\n"), ("resolv.conf", "x\n")],
            None,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(root.join("etc/hosts")).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
            "10.213.0.2\tweb\n"
        );
        let names: Vec<_> = std::fs::read_dir(root.join("etc")).unwrap().collect();
        assert_eq!(names.len(), 2, "temp file left behind");

        let root2 = dir.path().join("rootfs2");
        std::fs::create_dir_all(&root2).unwrap();
        std::os::unix::fs::symlink(dir.path(), root2.join("etc")).unwrap();
        let err = write_etc_files(&root2, &[("hosts", "x")], None).unwrap_err();
        assert!(err.to_string().contains("rootfs2/etc"), "{err}");
        assert!(!dir.path().join("hosts").exists());
    }

    #[test]
    fn resolv_and_hosts_content() {
        let r = resolv_conf(&["192.0.2.53".parse().unwrap()], &["example.org".into()]);
        assert_eq!(
            r,
            "# written by vslice\nnameserver 192.0.2.53\nsearch example.org\n"
        );
        let h = hosts_file(
            "web",
            Some("10.213.0.2".parse().unwrap()),
            Some("10.213.0.1".parse().unwrap()),
        );
        assert!(h.contains("10.213.0.2\tweb\n") && h.contains("10.213.0.1\tvslice-gateway\n"));
    }
}
