//! File transfer over SSH into a slice with the Debian image (its own sftp-server and rsync
//! run inside the slice): scp up and down, sftp ls/put/get, rsync of a tree with permissions,
//! and no host file reachable through sftp.
mod daemon_support;
mod ssh_support;

use daemon_support::*;
use ssh_support::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn ssh_scp_sftp_rsync_into_a_debian_slice() {
    debian_image();
    let env = SshEnv::start("f");
    let a = env.slice_name("f");
    let c = env.daemon.blocking();
    c.create(&vslice::slice::CreateRequest {
        image: Some("debian".into()),
        ..sleeper(&a)
    })
    .unwrap();
    let k = env.keygen("k");
    c.add_key(&a, &env.pubkey(&k)).unwrap();
    let opts = env.client_opts(&k);
    let port = env.port.to_string();
    let remote = |p: &str| format!("{a}@127.0.0.1:{p}");
    let run = |cmd: &mut Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{cmd:?}: {}", o.describe());
        o
    };

    // scp (SFTP mode, the default) up and down, 3 MiB of every byte value.
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let up = env.dir.join("up.bin");
    std::fs::write(&up, &data).unwrap();
    run(Command::new("scp")
        .args(&opts)
        .args(["-P", &port])
        .arg(&up)
        .arg(remote("/root/up.bin")));
    let inside = c.exec(&a, &exec_input(&["cat", "/root/up.bin"])).unwrap();
    assert!(inside.stdout == data, "scp up differs");
    let down = env.dir.join("down.bin");
    run(Command::new("scp")
        .args(&opts)
        .args(["-P", &port])
        .arg(remote("/root/up.bin"))
        .arg(&down));
    assert!(std::fs::read(&down).unwrap() == data, "scp down differs");
    // Relative paths are the home directory's (/root), as with any ssh account.
    run(Command::new("scp")
        .args(&opts)
        .args(["-P", &port])
        .arg(&up)
        .arg(remote("rel.bin")));
    let rel = c.exec(&a, &exec_input(&["cat", "/root/rel.bin"])).unwrap();
    assert!(rel.stdout == data, "scp to a relative path");

    // sftp: ls, put, get; paths are the slice's, never the host's.
    let secret = env.dir.join("host-secret");
    std::fs::write(&secret, "host only").unwrap();
    let batch = env.dir.join("batch");
    let got = env.dir.join("got-hostname");
    std::fs::write(
        &batch,
        format!(
            "ls /\nput {} /root/put.txt\nget /etc/hostname {}\n",
            secret.display(),
            got.display()
        ),
    )
    .unwrap();
    let o = run(Command::new("sftp")
        .args(&opts)
        .args(["-P", &port, "-b"])
        .arg(&batch)
        .arg(format!("{a}@127.0.0.1")));
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        listing.contains("usr") && listing.contains("root"),
        "{listing}"
    );
    let hostname = c
        .exec(&a, &exec_input(&["cat", "/etc/hostname"]))
        .unwrap()
        .stdout_string();
    assert_eq!(std::fs::read_to_string(&got).unwrap(), hostname);
    let put = c
        .exec(&a, &exec_input(&["cat", "/root/put.txt"]))
        .unwrap()
        .stdout_string();
    assert_eq!(put, "host only");
    // The host's file is not there for sftp (only the copy we put), nor the host's shadow.
    for path in [secret.display().to_string(), env.dir.display().to_string()] {
        std::fs::write(&batch, format!("ls {path}\n")).unwrap();
        let o = Command::new("sftp")
            .args(&opts)
            .args(["-P", &port, "-b"])
            .arg(&batch)
            .arg(format!("{a}@127.0.0.1"))
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "host path {path} visible: {}",
            o.describe()
        );
    }
    let shadow = env.dir.join("got-shadow");
    std::fs::write(&batch, format!("get /etc/shadow {}\n", shadow.display())).unwrap();
    let _ = Command::new("sftp")
        .args(&opts)
        .args(["-P", &port, "-b"])
        .arg(&batch)
        .arg(format!("{a}@127.0.0.1"))
        .output()
        .unwrap();
    if let Ok(s) = std::fs::read_to_string(&shadow) {
        assert_ne!(
            s,
            std::fs::read_to_string("/etc/shadow").unwrap(),
            "got the host's shadow"
        );
    }

    // rsync a tree with modes (and a symlink) up, and back down.
    let tree = env.dir.join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    let files = [
        ("a.txt", 0o644),
        ("secret", 0o600),
        ("run.sh", 0o750),
        ("sub/b", 0o640),
        ("sub/deeper/c", 0o604),
    ];
    for (f, mode) in files {
        std::fs::write(tree.join(f), format!("content of {f}")).unwrap();
        std::fs::set_permissions(tree.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(tree.join("sub"), std::fs::Permissions::from_mode(0o710)).unwrap();
    std::os::unix::fs::symlink("a.txt", tree.join("link")).unwrap();
    let ssh_e = format!("ssh -p {port} {}", opts.join(" "));
    run(Command::new("rsync")
        .args(["-a", "-e", &ssh_e])
        .arg(format!("{}/", tree.display()))
        .arg(remote("/root/tree/")));
    let listing = c
        .exec(
            &a,
            &exec_input(&[
                "sh",
                "-c",
                "cd /root/tree && find . -mindepth 1 | sort | xargs stat -c '%a %F %n'",
            ]),
        )
        .unwrap()
        .stdout_string();
    for (f, mode) in files {
        assert!(
            listing.contains(&format!("{mode:o} regular file ./{f}")),
            "{f}: {listing}"
        );
    }
    assert!(listing.contains("710 directory ./sub"), "{listing}");
    assert!(listing.contains("symbolic link ./link"), "{listing}");
    let back = env.dir.join("back");
    run(Command::new("rsync")
        .args(["-a", "-e", &ssh_e])
        .arg(remote("/root/tree/"))
        .arg(format!("{}/", back.display())));
    for (f, mode) in files {
        let md = std::fs::metadata(back.join(f)).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, mode, "{f}");
        assert_eq!(
            std::fs::read_to_string(back.join(f)).unwrap(),
            format!("content of {f}")
        );
    }
    assert_eq!(
        std::fs::read_link(back.join("link")).unwrap().to_str(),
        Some("a.txt")
    );
    c.destroy(&a).unwrap();
}
