//! SSH access end to end: real OpenSSH (a test sshd on 127.0.0.1 with its own host key and
//! the installed drop-in's content), a real vsliced, the real `ssh` client.
mod daemon_support;
mod ssh_support;

use daemon_support::*;
use ssh_support::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

#[test]
fn ssh_login_commands_refusals_and_audit() {
    let env = SshEnv::start("a");
    let (a, b) = (env.slice_name("a"), env.slice_name("b"));
    let c = env.daemon.blocking();
    c.create(&sleeper(&a)).unwrap();
    c.create(&sleeper(&b)).unwrap();
    let ka = env.keygen("ka");
    let ka2 = env.keygen("ka2");
    let kb = env.keygen("kb");
    let stranger = env.keygen("stranger");
    let added = c.add_key(&a, &env.pubkey(&ka)).unwrap();
    let added2 = c.add_key(&a, &env.pubkey(&ka2)).unwrap();
    c.add_key(&b, &env.pubkey(&kb)).unwrap();
    assert_eq!(c.keys(&a).unwrap().len(), 2);
    // A duplicate and a key with options are refused, naming the field.
    let e = c.add_key(&a, &env.pubkey(&ka)).unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    let e = c
        .add_key(&a, &format!("command=\"x\" {}", env.pubkey(&ka)))
        .unwrap_err();
    assert_eq!(e.field(), Some("key"), "{e}");

    // The host account: named like the slice, our group, vsh as its shell.
    let acct = nix::unistd::User::from_name(&a)
        .unwrap()
        .expect("account made");
    assert_eq!(acct.shell, env.vsh);
    assert_eq!(
        nix::unistd::Group::from_gid(acct.gid)
            .unwrap()
            .unwrap()
            .name,
        env.group
    );

    // Login lands as root in the slice, with the slice's hostname and processes.
    let host = c
        .exec(&a, &exec_input(&["cat", "/proc/sys/kernel/hostname"]))
        .unwrap()
        .stdout_string();
    let o = env.ssh(
        &ka,
        &a,
        &[],
        &["id -u; cat /proc/sys/kernel/hostname; pwd; cat /proc/1/cmdline | tr '\\0' ' '"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", o.describe());
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], host.trim(), "{out}");
    assert_eq!(lines[2], "/root", "starts in the home directory: {out}");
    assert!(
        lines[3].contains("while :; do sleep 1; done"),
        "slice init visible: {out}"
    );

    // Exit codes, 128+N when killed.
    let o = env.ssh(&ka, &a, &[], &["exit 42"], None);
    assert_eq!(o.status.code(), Some(42), "{}", o.describe());
    let o = env.ssh(&ka, &a, &[], &["kill -9 $$"], None);
    assert_eq!(o.status.code(), Some(137), "{}", o.describe());

    // Binary-clean stdin/stdout; stderr apart.
    let data: Vec<u8> = (0..512 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let o = env.ssh(&ka, &a, &[], &["cat; echo oops >&2"], Some(&data));
    assert_eq!(o.status.code(), Some(0), "{}", o.describe());
    assert!(
        o.stdout == data,
        "stdout differs ({} bytes)",
        o.stdout.len()
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "oops");

    // On a terminal: the slice's own devpts.
    let o = env.ssh(&ka, &a, &["-tt"], &["id -u; tty"], None);
    assert_eq!(o.status.code(), Some(0), "{}", o.describe());
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    assert!(out.starts_with("0\n/dev/pts/"), "{out}");

    // Refused: a stranger's key, another slice's key, a removed key.
    for (k, who) in [(&stranger, "stranger"), (&kb, "slice b's key")] {
        let o = env.ssh(&k.clone(), &a, &[], &["true"], None);
        assert_eq!(o.status.code(), Some(255), "{who}: {}", o.describe());
        assert!(
            o.stderr_text().contains("Permission denied"),
            "{who}: {}",
            o.describe()
        );
    }
    let o = env.ssh(&ka2, &a, &[], &["true"], None);
    assert_eq!(o.status.code(), Some(0), "{}", o.describe());
    c.remove_key(&a, &added2.fingerprint).unwrap();
    let o = env.ssh(&ka2, &a, &[], &["true"], None);
    assert_eq!(o.status.code(), Some(255), "removed key: {}", o.describe());
    let e = c.remove_key(&a, &added2.fingerprint).unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");

    // Forwarding refused: -R fails outright; a -L / -D tunnel carries nothing.
    let o = env.ssh(
        &ka,
        &a,
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "127.0.0.1:0:127.0.0.1:22",
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(255), "-R: {}", o.describe());
    let lport = free_port();
    let mut tunnel = env.ssh_spawn(
        &ka,
        &a,
        &[
            "-N",
            "-L",
            &format!("127.0.0.1:{lport}:127.0.0.1:{}", env.port),
        ],
    );
    wait_for("the -L listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", lport)).is_ok()
    });
    let mut s = std::net::TcpStream::connect(("127.0.0.1", lport)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("SSH-2.0"),
        "-L tunnel reached the host's sshd: {:?}",
        String::from_utf8_lossy(&got)
    );
    let _ = tunnel.kill();
    let _ = tunnel.wait();
    let dport = free_port();
    let mut socks = env.ssh_spawn(&ka, &a, &["-N", "-D", &format!("127.0.0.1:{dport}")]);
    wait_for("the -D listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", dport)).is_ok()
    });
    let o = std::process::Command::new("curl")
        .args(["-s", "-m", "10", "--socks5", &format!("127.0.0.1:{dport}")])
        .arg(format!("http://127.0.0.1:{}/", env.port))
        .output()
        .unwrap();
    assert!(!o.status.success(), "-D tunnel worked");
    let _ = socks.kill();
    let _ = socks.wait();
    // X11: the request is refused (the client says so); agent: no socket is made on the host.
    let o = env.ssh_env(
        &ka,
        &a,
        &["-X", "-o", "LogLevel=INFO"],
        &["true"],
        None,
        &[("DISPLAY", ":99")],
    );
    assert!(
        o.stderr_text().contains("X11 forwarding request failed"),
        "{}",
        o.describe()
    );
    let agent_sock = env.dir.join("agent.sock");
    let agent = std::process::Command::new("ssh-agent")
        .arg("-a")
        .arg(&agent_sock)
        .output()
        .unwrap();
    assert!(agent.status.success());
    let agent_pid: i32 = String::from_utf8_lossy(&agent.stdout)
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.parse().ok())
        .expect("agent pid");
    let _agent_guard = KillOnDrop(agent_pid);
    let mut with_agent = env.ssh_spawn_env(
        &ka,
        &a,
        &["-A"],
        &["sleep 3"],
        &[("SSH_AUTH_SOCK", agent_sock.to_str().unwrap())],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let agent_dirs: Vec<String> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| {
            use std::os::unix::fs::MetadataExt;
            e.file_name().to_string_lossy().starts_with("ssh-")
                && e.metadata()
                    .map(|m| m.uid() == acct.uid.as_raw())
                    .unwrap_or(false)
        })
        .map(|e| e.path().display().to_string())
        .collect();
    let _ = with_agent.wait();
    assert!(agent_dirs.is_empty(), "agent sockets made: {agent_dirs:?}");

    // A stopped slice: a clear message.
    c.stop(&b, Some(Duration::from_secs(2))).unwrap();
    let o = env.ssh(&kb, &b, &[], &["true"], None);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert!(
        o.stderr_text().contains("is not running"),
        "{}",
        o.describe()
    );

    // vsh run by a local user who is no slice account gets nothing; nor do their key lookups.
    let mut users = Users::new();
    let u = users.user(&format!("vsltssh{}", std::process::id()), &[]);
    let o = env.vsh_as(u.uid, u.gid, &[], &[("SSH_ORIGINAL_COMMAND", "id")]);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert!(o.stdout.is_empty());
    assert!(
        o.stderr_text().contains("is not the account of a slice"),
        "{}",
        o.describe()
    );
    let o = env.vsh_as(u.uid, u.gid, &["--authorized-keys", &a], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert!(o.stdout.is_empty(), "{}", o.describe());
    // The keys user (nobody here) does get them: the refusal above is about the uid.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let o = env.vsh_as(
        nobody.uid.as_raw(),
        nobody.gid.as_raw(),
        &["--authorized-keys", &a],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", o.describe());
    assert!(String::from_utf8_lossy(&o.stdout).contains(&added.key));

    // The audit log: every login with the key's fingerprint, remote address and session.
    let lines = c
        .audit_lines(&vslice::proto::AuditQuery {
            slice: Some(a.clone()),
            action: Some("ssh_login".into()),
            ..Default::default()
        })
        .unwrap();
    let ok: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["entry"]["result"]["ok"] == true || r["result"]["ok"] == true)
        .collect();
    assert!(ok.len() >= 5, "{lines:#?}");
    let text = lines.join("\n");
    assert!(text.contains(&added.fingerprint), "{text}");
    assert!(text.contains("127.0.0.1 "), "{text}");
    assert!(text.contains("\"session\""), "{text}");
    let all = c.audit_lines(&Default::default()).unwrap().join("\n");
    for action in ["ssh_key_add", "ssh_key_remove", "ssh_logout"] {
        assert!(all.contains(action), "{action} missing");
    }

    // Destroying the slice removes its account.
    c.destroy(&a).unwrap();
    assert!(
        nix::unistd::User::from_name(&a).unwrap().is_none(),
        "account left"
    );
    let o = env.ssh(&ka, &a, &[], &["true"], None);
    assert_eq!(o.status.code(), Some(255), "{}", o.describe());
}

#[test]
fn ssh_terminal_resize_and_disconnect() {
    let env = SshEnv::start("r");
    let a = env.slice_name("r");
    let c = env.daemon.blocking();
    c.create(&sleeper(&a)).unwrap();
    let k = env.keygen("k");
    // Keys through the CLI: add (a .pub file), ls, and direct mode's clear refusal.
    let vslice = |args: &[&str], direct: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vslice"));
        cmd.arg("--socket").arg(&env.daemon.socket).args(args);
        if direct {
            cmd.env("VSLICE_DIRECT", "1")
                .env("VSLICE_ROOT", &env.daemon.root);
        }
        cmd.output().unwrap()
    };
    let pubfile = k.with_extension("pub");
    let o = vslice(&["keys", "add", &a, pubfile.to_str().unwrap()], false);
    assert_eq!(o.status.code(), Some(0), "{}", o.describe());
    let fp = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(fp.starts_with("SHA256:"), "{}", o.describe());
    let o = vslice(&["--json", "keys", "ls", &a], false);
    let listed: Vec<vslice::proto::SshKey> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fingerprint, fp);
    assert_eq!(listed[0].comment, "k@test");
    let o = vslice(&["keys", "ls", &a], true);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert!(o.stderr_text().contains("vsliced"), "{}", o.describe());
    let o = vslice(&["keys", "add", &a, "ssh-ed25519 AAAA x"], false);
    assert_eq!(o.status.code(), Some(5), "invalid: {}", o.describe());

    // The client on a terminal of ours: its size changes reach the slice's shell.
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .unwrap();
    let mut child = env.ssh_on_pty(
        &k,
        &a,
        &pty.slave,
        &["stty size; read x; stty size; exit 7"],
    );
    drop(pty.slave);
    let watchdog = Watchdog::new(child.id() as i32, Duration::from_secs(90));
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let read_until = |master: &mut std::fs::File, out: &mut Vec<u8>, buf: &mut [u8], pat: &str| {
        while !String::from_utf8_lossy(out).contains(pat) {
            assert!(
                std::time::Instant::now() < deadline,
                "waiting for {pat:?}: {:?}",
                String::from_utf8_lossy(out)
            );
            match master.read(buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    read_until(&mut master, &mut out, &mut buf, "40 100");
    let ws = nix::pty::Winsize {
        ws_row: 50,
        ws_col: 132,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on our own pty master; the kernel signals the client (SIGWINCH).
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    std::thread::sleep(Duration::from_millis(800));
    master.write_all(b"\n").unwrap();
    read_until(&mut master, &mut out, &mut buf, "50 132");
    let status = child.wait().unwrap();
    drop(watchdog); // before the pid can be reused
    assert_eq!(
        status.code(),
        Some(7),
        "{:?}",
        String::from_utf8_lossy(&out)
    );

    // An interactive login shell (no command): input, output and its exit code.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut child = env.ssh_on_pty(&k, &a, &pty.slave, &[]);
    drop(pty.slave);
    let watchdog = Watchdog::new(child.id() as i32, Duration::from_secs(90));
    let mut master = std::fs::File::from(pty.master);
    master
        .write_all(b"echo hi-$((6*7)) $(id -u); exit 3\n")
        .unwrap();
    let mut out = Vec::new();
    read_until(&mut master, &mut out, &mut buf, "hi-42 0");
    let status = child.wait().unwrap();
    drop(watchdog);
    assert_eq!(
        status.code(),
        Some(3),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    // The terminal session is recorded (asciicast v2), named and hashed in its logout record.
    let logouts = c
        .audit_lines(&vslice::proto::AuditQuery {
            slice: Some(a.clone()),
            action: Some("ssh_logout".into()),
            ..Default::default()
        })
        .unwrap();
    let recording = logouts
        .iter()
        .rev() // the interactive shell is the latest terminal session
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|r| r.pointer("/args/recording").cloned())
        .find(|r| r["sha256"].is_string())
        .unwrap_or_else(|| panic!("no recorded terminal session: {logouts:#?}"));
    let cast = std::fs::read_to_string(
        env.daemon
            .root
            .join("audit")
            .join(recording["file"].as_str().unwrap()),
    )
    .unwrap();
    assert!(
        cast.lines().next().unwrap().contains("\"version\":2"),
        "{cast}"
    );
    assert!(cast.contains("hi-42 0"), "{cast}");

    // Disconnect kills the session's processes in the slice.
    for flags in [&[][..], &["-tt"][..]] {
        let marker = format!("sleep 77{}", flags.len());
        let mut s = env.ssh_spawn_cmd(&k, &a, flags, &[&marker]);
        let running = |c: &vslice::client::BlockingClient| {
            c.exec(&a, &exec_input(&["ps", "-o", "args"]))
                .map(|o| o.stdout_string().lines().any(|l| l.trim() == marker))
                .unwrap_or(false)
        };
        wait_for("the session's command", Duration::from_secs(20), || {
            running(&c)
        });
        s.kill().unwrap();
        let _ = s.wait();
        wait_for(
            "the session's command to die",
            Duration::from_secs(20),
            || !running(&c),
        );
    }
    c.destroy(&a).unwrap();
}
