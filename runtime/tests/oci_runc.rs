//! `vslice-runc` against the real kernel (as root), on bundles made from the busybox image:
//! the runc lifecycle, state JSON, exec, ps, cgroup limits, hooks, the device cgroup,
//! terminals, and refusals of what vslice cannot honour. Every test leaves nothing behind.
mod oci_support;

use oci_support::{is_alive, wait_for, Env};
use std::process::{Command, Stdio};

fn sleeper(c: &mut serde_json::Value) {
    c["process"]["args"] = serde_json::json!(["sleep", "1000"]);
}

#[test]
fn create_start_state_exec_ps_kill_delete() {
    let env = Env::new();
    let b = env.bundle("life", |c| {
        sleeper(c);
        c["annotations"] = serde_json::json!({"org.example/test": "yes"});
    });
    let pid_file = env.work.join("life.pid");
    env.ok_detached(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "life",
    ]);

    let st = env.state("life");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "life");
    assert_eq!(st["bundle"], b.to_str().unwrap());
    assert_eq!(st["annotations"]["org.example/test"], "yes");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert!(is_alive(pid));
    // Created: init is set up but has not exec'd its program yet.
    assert_ne!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );
    // In its own cgroup, below the hierarchy root (not below ours).
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.contains(&oci_support::memory_cgroup_line(&format!(
            "{}/life",
            env.cgroup_parent
        ))),
        "{cg}"
    );

    env.ok(&["start", "life"]);
    assert_eq!(env.state("life")["status"], "running");
    assert!(wait_for(5, || std::fs::read_to_string(format!(
        "/proc/{pid}/comm"
    ))
    .map(|c| c.trim() == "sleep")
    .unwrap_or(false)));
    let again = env.run(&["start", "life"]);
    assert!(!again.status.success(), "starting twice must fail");

    // exec: exit code, stdout, same namespaces as init.
    let o = env.run(&[
        "exec",
        "life",
        "sh",
        "-c",
        "echo out-$((6*7)); test \"$(cat /proc/1/comm)\" = sleep && exit 5",
    ]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "out-42");
    let o = env.run(&["exec", "life", "/no/such/program"]);
    assert_eq!(o.status.code(), Some(127));

    // ps: host PIDs of the container's processes.
    let pids: Vec<i32> =
        serde_json::from_str(&env.ok(&["ps", "--format", "json", "life"])).unwrap();
    assert_eq!(pids, vec![pid]);
    assert!(env.ok(&["ps", "life"]).contains("sleep 1000"));
    assert!(env.ok(&["list"]).contains("life"));

    // A running container is not deleted without --force.
    let o = env.run(&["delete", "life"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not stopped"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // pid 1 of a PID namespace ignores SIGTERM without a handler: KILL.
    env.ok(&["kill", "life", "KILL"]);
    assert!(wait_for(5, || env.state("life")["status"] == "stopped"));
    let o = env.run(&["kill", "life", "TERM"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("container not running"));

    env.ok(&["delete", "life"]);
    assert!(!env.root.join("life").exists(), "state dir left behind");
    assert!(
        env.cgroup_dirs().is_empty(),
        "cgroups left behind: {:?}",
        env.cgroup_dirs()
    );
    let o = env.run(&["state", "life"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}

#[test]
fn run_returns_the_exit_code_and_cleans_up() {
    let env = Env::new();
    let b = env.bundle("ex", |c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "echo hello from $(hostname) as $(id -u) home=$HOME; exit 7"
        ]);
    });
    let o = env
        .cmd()
        .args(["run", "--bundle", b.to_str().unwrap(), "ex"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "hello from vslice as 0 home=/root"
    );
    assert!(!env.root.join("ex").exists());
    assert!(env.cgroup_dirs().is_empty(), "{:?}", env.cgroup_dirs());

    // Killed by a signal: 128+n, like a shell.
    let b = env.bundle("sig", sleeper);
    let log = std::fs::File::create(env.work.join("sig.out")).unwrap();
    let mut run = env
        .cmd()
        .args(["run", "--bundle", b.to_str().unwrap(), "sig"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let running = |id: &str| {
        env.run(&["state", id])
            .stdout
            .windows(9)
            .any(|w| w == b"\"running\"")
    };
    assert!(wait_for(10, || running("sig")));
    env.ok(&["kill", "sig", "KILL"]);
    assert_eq!(
        run.wait().unwrap().code(),
        Some(137),
        "{}",
        std::fs::read_to_string(env.work.join("sig.out")).unwrap()
    );

    // A signal sent to `run` is forwarded to the container's init (which, as PID 1 of its
    // namespace, only gets signals it handles).
    let b = env.bundle("fwd", |c| {
        c["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "trap 'exit 42' USR1; while :; do sleep 0.05; done"
        ]);
    });
    let log = std::fs::File::create(env.work.join("fwd.out")).unwrap();
    let mut run = env
        .cmd()
        .args(["run", "--bundle", b.to_str().unwrap(), "fwd"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(wait_for(10, || running("fwd")));
    std::thread::sleep(std::time::Duration::from_millis(200)); // let sh install its trap
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    assert_eq!(
        run.wait().unwrap().code(),
        Some(42),
        "{}",
        std::fs::read_to_string(env.work.join("fwd.out")).unwrap()
    );

    // Program not found: the reason on stderr, 127.
    let b = env.bundle("nf", |c| {
        c["process"]["args"] = serde_json::json!(["/bin/nonexistent"])
    });
    let o = env
        .cmd()
        .args(["run", "--bundle", b.to_str().unwrap(), "nf"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nonexistent"));
    assert!(env.cgroup_dirs().is_empty(), "{:?}", env.cgroup_dirs());
}

#[test]
fn cgroup_limits_are_applied_and_removed() {
    let env = Env::new();
    let b = env.bundle("lim", |c| {
        sleeper(c);
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
        c["linux"]["resources"]["pids"] = serde_json::json!({"limit": 50});
        c["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 20000, "period": 100000});
    });
    env.ok_detached(&["run", "--detach", "--bundle", b.to_str().unwrap(), "lim"]);
    let v2 = vslice::cgroup::detect() == vslice::cgroup::Version::V2;
    let read = |rel: &str| {
        std::fs::read_to_string(std::path::Path::new("/sys/fs/cgroup").join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .trim()
            .to_string()
    };
    let cg = format!("{}/lim", env.cgroup_parent);
    if v2 {
        assert_eq!(read(&format!("{cg}/memory.max")), "67108864");
        assert_eq!(read(&format!("{cg}/pids.max")), "50");
        assert_eq!(read(&format!("{cg}/cpu.max")), "20000 100000");
        // The container sees its own cgroup (read-only) at /sys/fs/cgroup (cgroup namespace).
        let o = env.run(&[
            "exec",
            "lim",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max; touch /sys/fs/cgroup/x 2>&1 || echo ro",
        ]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.starts_with("67108864"),
            "{out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains("ro"), "{out}");
    } else {
        assert_eq!(
            read(&format!("memory/{cg}/memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read(&format!("pids/{cg}/pids.max")), "50");
        assert_eq!(read(&format!("cpu/{cg}/cpu.cfs_quota_us")), "20000");
        // The container sees its own cgroup (read-only) at /sys/fs/cgroup.
        let o = env.run(&["exec", "lim", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; touch /sys/fs/cgroup/x 2>&1 || echo ro"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.starts_with("67108864"),
            "{out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains("ro"), "{out}");
    }
    // update changes the limit of the live container.
    env.ok(&["update", "--memory", "33554432", "lim"]);
    let mem = if v2 {
        format!("{cg}/memory.max")
    } else {
        format!("memory/{cg}/memory.limit_in_bytes")
    };
    assert_eq!(read(&mem), "33554432");
    // pause / resume through the freezer.
    env.ok(&["pause", "lim"]);
    assert_eq!(env.state("lim")["status"], "paused");
    env.ok(&["resume", "lim"]);
    assert_eq!(env.state("lim")["status"], "running");

    env.ok(&["delete", "--force", "lim"]);
    assert!(
        env.cgroup_dirs().is_empty(),
        "cgroups left behind: {:?}",
        env.cgroup_dirs()
    );
}

#[test]
fn device_cgroup_denies_what_the_spec_does_not_allow() {
    let env = Env::new();
    let b = env.bundle("dev", |c| {
        c["process"]["args"] = serde_json::json!(["sh", "-c",
            "echo x > /dev/null && echo null-ok; mknod /dev/sdx b 8 0 && echo mknod-ok; head -c1 /dev/sdx >/dev/null 2>&1 || echo open-denied"]);
        // Keep CAP_MKNOD so that only the device cgroup stands in the way.
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = serde_json::json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE"]);
        }
    });
    let o = env
        .cmd()
        .args(["run", "--bundle", b.to_str().unwrap(), "dev"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["null-ok", "mknod-ok", "open-denied"],
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(env.cgroup_dirs().is_empty(), "{:?}", env.cgroup_dirs());
}

#[test]
fn hooks_run_at_their_points_with_the_state() {
    let env = Env::new();
    let out = env.work.join("hooks");
    std::fs::create_dir_all(&out).unwrap();
    let hook = |name: &str, extra: &str| {
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}.json; {extra}", out.display())],
                           "env": ["HOOK=1"], "timeout": 10})
    };
    let b = env.bundle("hk", |c| {
        sleeper(c);
        c["hooks"] = serde_json::json!({
            "prestart": [hook("prestart", "")],
            "createRuntime": [hook("createRuntime", &format!("readlink /proc/self/ns/mnt > {}/createRuntime.mnt", out.display()))],
            "createContainer": [hook("createContainer", &format!("readlink /proc/self/ns/mnt > {}/createContainer.mnt", out.display()))],
            "poststart": [hook("poststart", "")],
            "poststop": [hook("poststop", "")],
        });
        // startContainer runs inside the container: its path and output are in the rootfs.
        c["hooks"]["startContainer"] = serde_json::json!([{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/startContainer.json"]}]);
        c["root"]["readonly"] = false.into();
    });
    env.ok_detached(&["create", "--bundle", b.to_str().unwrap(), "hk"]);
    let pid = env.state("hk")["pid"].as_i64().unwrap();
    let read = |n: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("{n}.json")))
                .unwrap_or_else(|e| panic!("{n}: {e}")),
        )
        .unwrap()
    };
    for n in ["prestart", "createRuntime", "createContainer"] {
        let s = read(n);
        assert_eq!(s["id"], "hk", "{n}");
        assert_eq!(s["pid"].as_i64(), Some(pid), "{n}");
        assert_eq!(s["status"], "creating", "{n}");
    }
    assert!(!out.join("poststart.json").exists());
    // createRuntime runs in the runtime's mount namespace, createContainer in the container's.
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let rt = std::fs::read_to_string(out.join("createRuntime.mnt")).unwrap();
    let cc = std::fs::read_to_string(out.join("createContainer.mnt")).unwrap();
    assert_eq!(rt.trim(), host_mnt.to_str().unwrap());
    assert_ne!(cc.trim(), host_mnt.to_str().unwrap());
    env.ok(&["start", "hk"]);
    assert_eq!(read("poststart")["status"], "running");
    let sc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(b.join("rootfs/tmp/startContainer.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sc["id"], "hk");
    env.ok(&["delete", "--force", "hk"]);
    assert_eq!(read("poststop")["status"], "stopped");

    // A failing createRuntime hook fails create and leaves nothing.
    let b = env.bundle("bad", |c| {
        sleeper(c);
        c["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no way >&2; exit 3"]}]});
    });
    let o = env.run(&["create", "--bundle", b.to_str().unwrap(), "bad"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{:?} stderr: {err}", o.status);
    assert!(
        err.contains("createRuntime hook") && err.contains("no way"),
        "{err}"
    );
    assert!(!env.root.join("bad").exists());
    assert!(env.cgroup_dirs().is_empty(), "{:?}", env.cgroup_dirs());
}

#[test]
fn terminal_through_run_and_console_socket_rules() {
    let env = Env::new();
    let b = env.bundle("tty", |c| {
        c["process"]["terminal"] = true.into();
        c["process"]["args"] =
            serde_json::json!(["sh", "-c", "tty; test -t 0 && echo stdin-is-tty; exit 3"]);
    });
    // No --console-socket: create refuses, run allocates its own and relays (needs a terminal).
    let o = env.run(&["create", "--bundle", b.to_str().unwrap(), "tty"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--console-socket is required"));
    let cmdline = format!(
        "{} --root {} run --bundle {} tty",
        oci_support::runc_bin().display(),
        env.root.display(),
        b.display()
    );
    let o = Command::new("script")
        .args(["-eqc", &cmdline, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("/dev/pts/0") && out.contains("stdin-is-tty"),
        "{out}"
    );
    assert!(env.cgroup_dirs().is_empty());
}

#[test]
fn what_cannot_be_honoured_is_refused() {
    let env = Env::new();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "aa",
            Box::new(|c| c["process"]["apparmorProfile"] = "docker-default".into()),
            "apparmor profile docker-default requested but AppArmor is not enabled on this host",
        ),
        (
            "se",
            Box::new(|c| c["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0".into()),
            "SELinux",
        ),
        (
            "sc",
            Box::new(|c| {
                c["linux"]["sysctl"] = serde_json::json!({"kernel.core_pattern": "|/tmp/x"})
            }),
            "not namespaced",
        ),
        (
            "hn",
            Box::new(|c| {
                c["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "pid"}])
            }),
            "UTS namespace",
        ),
        (
            "bio",
            Box::new(|c| c["linux"]["resources"]["blockIO"] = serde_json::json!({"weight": 100})),
            "blockIO",
        ),
        ("pfd", Box::new(|_| {}), "preserve-fds"),
    ];
    for (id, edit, want) in cases {
        if id == "aa" && vslice::oci::spec::apparmor_enabled() {
            continue;
        }
        if id == "se" && vslice::oci::spec::selinux_enabled() {
            continue;
        }
        let b = env.bundle(id, |c| {
            sleeper(c);
            edit(c)
        });
        let mut args = vec!["create", "--bundle", b.to_str().unwrap()];
        if id == "pfd" {
            args.extend(["--preserve-fds", "2"]);
        }
        args.push(id);
        let o = env.run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{id}: {err}");
        assert!(!env.root.join(id).exists(), "{id}: state left");
    }
    assert!(env.cgroup_dirs().is_empty(), "{:?}", env.cgroup_dirs());
}

#[test]
fn isolation_basics_readonly_root_masks_user_namespace() {
    let env = Env::new();
    // Read-only root, masked /proc/kcore, own hostname, no host processes visible.
    let b = env.bundle("iso", |c| {
        c["process"]["args"] = serde_json::json!(["sh", "-c",
            "touch /x 2>/dev/null || echo ro-root; test -s /proc/kcore || echo kcore-masked; ls /proc | grep -c '^[0-9]'"]);
    });
    let o = env
        .cmd()
        .args(["run", "--bundle", b.to_str().unwrap(), "iso"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..2],
        ["ro-root", "kcore-masked"],
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(lines[2].parse::<u32>().unwrap() <= 3, "{out}");

    // A user namespace: root inside, an unprivileged uid on the host.
    let b = env.bundle("uns", |c| {
        sleeper(c);
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        let m = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["uidMappings"] = m.clone();
        c["linux"]["gidMappings"] = m;
    });
    env.ok_detached(&["run", "-d", "--bundle", b.to_str().unwrap(), "uns"]);
    let pid = env.state("uns")["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains("200000"), "{uid_line}");
    let o = env.run(&["exec", "uns", "id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "0",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    env.ok(&["delete", "--force", "uns"]);
    assert!(env.cgroup_dirs().is_empty());
}

/// The cgroup v2 device filter (an eBPF program), tested on whatever v2 hierarchy this host
/// has: the unified one (/sys/fs/cgroup/unified on a hybrid host) or /sys/fs/cgroup.
#[test]
fn device_filter_ebpf_program_on_cgroup_v2() {
    let base = if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        std::path::PathBuf::from("/sys/fs/cgroup/unified")
    } else if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        std::path::PathBuf::from("/sys/fs/cgroup")
    } else {
        eprintln!("skipped: no cgroup v2 hierarchy on this host");
        return;
    };
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            oci_support::remove_cgroup_tree(&self.0);
        }
    }
    let dir = Dir(base.join(format!("vslice-test-oci-bpf-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let rules: Vec<oci_spec::runtime::LinuxDeviceCgroup> =
        serde_json::from_value(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "w"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "r"}
        ]))
        .unwrap();
    vslice::oci::devices::bpf::attach(&dir.0, &rules).expect("attach the device program");
    let script = format!(
        "echo $$ > {}/cgroup.procs || exit 99; \
         echo x > /dev/null && echo null-w; \
         head -c1 /dev/zero >/dev/null && echo zero-r; echo x 2>/dev/null > /dev/zero || echo zero-w-denied; \
         head -c1 /dev/urandom >/dev/null && echo urandom-r; \
         head -c1 /dev/full >/dev/null 2>&1 || echo full-denied; \
         mknod /tmp/vslice-test-oci-bpf-node-$$ c 1 3 2>/dev/null || echo mknod-null-denied; \
         mknod /tmp/vslice-test-oci-bpf-node-$$ c 1 5 2>/dev/null && echo mknod-zero && rm -f /tmp/vslice-test-oci-bpf-node-$$",
        dir.0.display()
    );
    let o = Command::new("sh").args(["-c", &script]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "null-w",
            "zero-r",
            "zero-w-denied",
            "urandom-r",
            "full-denied",
            "mknod-null-denied",
            "mknod-zero"
        ],
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `--systemd-cgroup`: `slice:prefix:name` becomes the directory systemd would use, made and
/// removed by vslice-runc itself.
#[test]
fn systemd_cgroups_path_is_mapped_to_a_plain_directory() {
    let env = Env::new();
    let slice = format!("vslicetestoci{}", std::process::id());
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for d in oci_support::cgroup_dirs_named(&format!("{}.slice", self.0)) {
                oci_support::remove_cgroup_tree(&d);
            }
        }
    }
    let _cleanup = Cleanup(slice.clone());
    let b = env.bundle("sd", |c| {
        sleeper(c);
        c["linux"]["cgroupsPath"] = format!("{slice}.slice:vs:sd").into();
    });
    env.ok_detached(&[
        "--systemd-cgroup",
        "run",
        "-d",
        "--bundle",
        b.to_str().unwrap(),
        "sd",
    ]);
    let pid = env.state("sd")["pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.contains(&oci_support::memory_cgroup_line(&format!(
            "{slice}.slice/vs-sd.scope"
        ))),
        "{cg}"
    );
    env.ok(&["delete", "--force", "sd"]);
    assert!(
        oci_support::cgroup_dirs_named(&format!("{slice}.slice")).is_empty(),
        "the slice parent made by create is removed"
    );
}
