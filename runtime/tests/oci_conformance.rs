//! What the OCI runtime spec mandates and runc users rely on, checked against `vslice-runc` on
//! the real kernel (as root): the state and error semantics of every command, `features`
//! matching what is really accepted, hook order and environment, rlimits, sysctl, masked and
//! read-only paths, devices, seccomp errno, process.user (additionalGids, umask). The
//! opencontainers runtime-tools validation suite could not be built here (Debian ships only
//! its library packages, not validation/); these tests cover the same ground for the points
//! listed. Every test leaves nothing behind (oci_support's Env removes it all on drop).
mod oci_support;

use oci_support::{is_alive, wait_for, Env};
use std::process::Output;

fn sleeper(c: &mut serde_json::Value) {
    c["process"]["args"] = serde_json::json!(["sleep", "1000"]);
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `run` a one-shot container whose program is `sh -c script`; returns (exit code, stdout,
/// stderr). The container is deleted by `run`.
fn run_sh(
    env: &Env,
    id: &str,
    script: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (i32, String, String) {
    run_sh_in(env, id, script, edit, |_| {})
}

/// [`run_sh`] with `prep` called on the bundle's rootfs before `run`.
fn run_sh_in(
    env: &Env,
    id: &str,
    script: &str,
    edit: impl FnOnce(&mut serde_json::Value),
    prep: impl FnOnce(&std::path::Path),
) -> (i32, String, String) {
    let b = env.bundle(id, |c| {
        c["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        edit(c);
    });
    prep(&b.join("rootfs"));
    let o = env.run(&["run", "--bundle", b.to_str().unwrap(), id]);
    let (out, err) = text(&o);
    (o.status.code().unwrap_or(-1), out, err)
}

/// Run vslice-runc with stdout/stderr in files (a container it leaves behind inherits them: a
/// pipe would never reach EOF) and `envs` added to its environment; (success, stderr).
fn run_files(env: &Env, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let err = env.work.join(format!("conf-err-{n}"));
    let st = env
        .cmd()
        .envs(envs.iter().copied())
        .args(args)
        .stdout(std::fs::File::create(env.work.join(format!("conf-out-{n}"))).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .expect("run vslice-runc");
    (
        st.success(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[test]
fn command_state_and_error_semantics() {
    let env = Env::new();
    let b = env.bundle("a", sleeper);
    let bs = b.to_str().unwrap();
    env.ok_detached(&["create", "--bundle", bs, "a"]);
    let pid = env.state("a")["pid"].as_i64().unwrap() as i32;

    // create on an existing id: an error, and the existing container is untouched.
    let (ok, err) = run_files(&env, &["create", "--bundle", bs, "a"], &[]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let st = env.state("a");
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"].as_i64(), Some(pid as i64));
    assert!(is_alive(pid));

    // Commands on an id that does not exist fail and say so.
    for args in [
        &["start", "nope"][..],
        &["kill", "nope", "KILL"],
        &["state", "nope"],
        &["delete", "nope"],
        &["exec", "nope", "true"],
        &["pause", "nope"],
    ] {
        let o = env.run(args);
        let (_, err) = text(&o);
        assert!(
            !o.status.success() && err.contains("does not exist"),
            "{args:?}: {err}"
        );
    }
    // runc: `delete --force` of an id that does not exist succeeds (containerd relies on it
    // to clean up after an aborted create).
    env.ok(&["delete", "--force", "nope"]);
    let o = env.run(&["delete", "--force", "../escape"]);
    assert!(!o.status.success(), "an invalid id is still an error");

    // start, start twice: the second fails and the container keeps running.
    env.ok(&["start", "a"]);
    let o = env.run(&["start", "a"]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("running"),
        "start twice: {err}"
    );
    assert_eq!(env.state("a")["status"], "running");

    // delete without --force of a running container fails; with --force it kills and removes.
    let o = env.run(&["delete", "a"]);
    assert!(!o.status.success());
    assert_eq!(env.state("a")["status"], "running");
    env.ok(&["delete", "--force", "a"]);
    assert!(
        wait_for(5, || !is_alive(pid)),
        "init still alive after delete --force"
    );
    assert!(!env.root.join("a").exists());
    assert!(env.cgroup_dirs().iter().all(|d| !d.join("a").exists()));

    // A stopped container: kill and start fail, state says stopped, delete works.
    let b = env.bundle("s", |c| c["process"]["args"] = serde_json::json!(["true"]));
    env.ok_detached(&["create", "--bundle", b.to_str().unwrap(), "s"]);
    env.ok(&["start", "s"]);
    assert!(wait_for(5, || env.state("s")["status"] == "stopped"));
    let o = env.run(&["kill", "s", "TERM"]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("not running"),
        "kill stopped: {err}"
    );
    let o = env.run(&["start", "s"]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("stopped"),
        "start stopped: {err}"
    );
    env.ok(&["delete", "s"]);

    // A created (never started) container may be deleted without --force (runc kills it).
    let b = env.bundle("c", sleeper);
    env.ok_detached(&["create", "--bundle", b.to_str().unwrap(), "c"]);
    let cpid = env.state("c")["pid"].as_i64().unwrap() as i32;
    env.ok(&["delete", "c"]);
    assert!(wait_for(5, || !is_alive(cpid)));
    assert!(env.cgroup_dirs().iter().all(|d| !d.join("c").exists()));
}

/// `features` names only what vslice-runc really accepts: every listed seccomp action,
/// namespace and hook is taken by `create`.
#[test]
fn features_output_is_honest() {
    let env = Env::new();
    let f: serde_json::Value = serde_json::from_str(&env.ok(&["features"])).expect("features JSON");
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["ociVersionMax"].as_str().unwrap().starts_with("1."));
    let list = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        list(&f["hooks"]),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    let caps = list(&f["linux"]["capabilities"]);
    assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()) && caps.contains(&"CAP_CHOWN".to_string()));
    for (n, action) in list(&f["linux"]["seccomp"]["actions"])
        .into_iter()
        .enumerate()
    {
        let id = format!("sa{n}");
        let b = env.bundle(&id, |c| {
            sleeper(c);
            c["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcpu"], "action": action}]
            });
        });
        let (ok, err) = run_files(&env, &["create", "--bundle", b.to_str().unwrap(), &id], &[]);
        assert!(ok, "features lists {action} but create refuses it: {err}");
        env.ok(&["delete", "--force", &id]);
    }
    for ns in list(&f["linux"]["namespaces"]) {
        let id = format!("ns-{ns}");
        let b = env.bundle(&id, |c| {
            sleeper(c);
            let nss = c["linux"]["namespaces"].as_array_mut().unwrap();
            if !nss.iter().any(|x| x["type"] == ns) {
                nss.push(serde_json::json!({"type": ns}));
            }
            if ns == "user" {
                let m = serde_json::json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
                c["linux"]["uidMappings"] = m.clone();
                c["linux"]["gidMappings"] = m;
            }
        });
        let (ok, err) = run_files(&env, &["create", "--bundle", b.to_str().unwrap(), &id], &[]);
        assert!(
            ok,
            "features lists namespace {ns} but create refuses it: {err}"
        );
        env.ok(&["delete", "--force", &id]);
    }
    // What is not listed is refused with a reason.
    let b = env.bundle("notify", |c| {
        sleeper(c);
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcpu"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    if !list(&f["linux"]["seccomp"]["actions"]).contains(&"SCMP_ACT_NOTIFY".to_string()) {
        let (ok, err) = run_files(
            &env,
            &["create", "--bundle", b.to_str().unwrap(), "notify"],
            &[],
        );
        assert!(!ok && err.contains("SCMP_ACT_NOTIFY"), "{err}");
        assert!(!env.root.join("notify").exists());
    }
    assert!(env.cgroup_dirs().iter().all(|d| std::fs::read_dir(d)
        .map(|r| r.flatten().all(|e| !e.path().is_dir()))
        .unwrap_or(true)));
}

/// Hooks of one kind run in the order listed, the kinds in the lifecycle's order, each with
/// exactly its own `env` (nothing of the runtime's environment) and the state on stdin.
#[test]
fn hooks_order_and_environment() {
    let env = Env::new();
    let log = env.work.join("hooks.log");
    let hook = |name: &str| {
        serde_json::json!({"path": "/bin/sh",
            "args": ["sh", "-c", format!("echo \"{name} $HOOK_VAR ${{VSLICE_CANARY:-unset}} $(wc -c)\" >> {}", log.display())],
            "env": [format!("HOOK_VAR=v-{name}")]})
    };
    let b = env.bundle("hk", |c| {
        sleeper(c);
        c["hooks"] = serde_json::json!({
            "prestart": [hook("prestart-1"), hook("prestart-2")],
            "createRuntime": [hook("createRuntime-1"), hook("createRuntime-2")],
            "createContainer": [hook("createContainer")],
            "poststart": [hook("poststart-1"), hook("poststart-2")],
            "poststop": [hook("poststop-1"), hook("poststop-2")],
        });
    });
    let run = |args: &[&str]| {
        let (ok, err) = run_files(&env, args, &[("VSLICE_CANARY", "leaked")]);
        assert!(ok, "{args:?}: {err}");
    };
    run(&["create", "--bundle", b.to_str().unwrap(), "hk"]);
    run(&["start", "hk"]);
    run(&["delete", "--force", "hk"]);
    let lines: Vec<(String, String, String, usize)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "prestart-1",
            "prestart-2",
            "createRuntime-1",
            "createRuntime-2",
            "createContainer",
            "poststart-1",
            "poststart-2",
            "poststop-1",
            "poststop-2"
        ]
    );
    for (name, var, canary, state_len) in &lines {
        assert_eq!(var, &format!("v-{name}"), "{name}: its own env");
        assert_eq!(
            canary, "unset",
            "{name}: the runtime's environment leaked into the hook"
        );
        assert!(
            *state_len > 20,
            "{name}: state JSON on stdin ({state_len} bytes)"
        );
    }
}

#[test]
fn rlimits_apply_to_init_and_exec() {
    let env = Env::new();
    let b = env.bundle("rl", |c| {
        sleeper(c);
        c["process"]["rlimits"] = serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 1111, "hard": 2222},
            {"type": "RLIMIT_NPROC", "soft": 333, "hard": 444},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]);
    });
    env.ok_detached(&["run", "-d", "--bundle", b.to_str().unwrap(), "rl"]);
    let pid = env.state("rl")["pid"].as_i64().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let row = |l: &str, name: &str| -> Vec<String> {
        l.lines()
            .find(|x| x.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {l}"))[name.len()..]
            .split_whitespace()
            .take(2)
            .map(String::from)
            .collect()
    };
    assert_eq!(row(&limits, "Max open files"), ["1111", "2222"]);
    assert_eq!(row(&limits, "Max processes"), ["333", "444"]);
    assert_eq!(row(&limits, "Max core file size"), ["0", "0"]);
    let o = env.run(&["exec", "rl", "cat", "/proc/self/limits"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(row(&out, "Max open files"), ["1111", "2222"], "exec");
    // A duplicate type is a spec error naming the field.
    let b = env.bundle("dup", |c| {
        sleeper(c);
        c["process"]["rlimits"] = serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2}, {"type": "RLIMIT_NOFILE", "soft": 3, "hard": 4}
        ]);
    });
    let (ok, err) = run_files(
        &env,
        &["create", "--bundle", b.to_str().unwrap(), "dup"],
        &[],
    );
    assert!(
        !ok && err.contains("rlimits") && err.contains("RLIMIT_NOFILE"),
        "{err}"
    );
    assert!(!env.root.join("dup").exists());
}

#[test]
fn sysctl_masked_and_readonly_paths() {
    let env = Env::new();
    let (code, out, err) = run_sh_in(
        &env,
        "sys",
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni;
         ls -A /etc/secret | wc -l; test -s /proc/kcore || echo kcore-masked;
         touch /srv/ro/x 2>/dev/null || echo ro-denied; touch /srv/rw-ok && echo rw-ok;
         echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null || echo procsys-ro",
        |c| {
            c["root"]["readonly"] = false.into();
            c["linux"]["sysctl"] =
                serde_json::json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
            c["linux"]["maskedPaths"].as_array_mut().unwrap().extend([
                serde_json::json!("/etc/secret"),
                serde_json::json!("/no/such/path"),
            ]);
            c["linux"]["readonlyPaths"]
                .as_array_mut()
                .unwrap()
                .push("/srv/ro".into());
        },
        |rootfs| {
            std::fs::create_dir_all(rootfs.join("etc/secret")).unwrap();
            std::fs::write(rootfs.join("etc/secret/key"), "hidden").unwrap();
            std::fs::create_dir_all(rootfs.join("srv/ro")).unwrap();
        },
    );
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "1",
            "1234",
            "0",
            "kcore-masked",
            "ro-denied",
            "rw-ok",
            "procsys-ro"
        ],
        "stderr: {err}"
    );
    // The host's values are untouched (the sysctls were namespaced).
    let host_shmmni = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    assert_ne!(host_shmmni.trim(), "1234");
}

#[test]
fn devices_are_created_with_mode_and_owner() {
    let env = Env::new();
    let (code, out, err) = run_sh(
        &env,
        "dev",
        "ls -ln /dev/vs-null | awk '{print $1, $3, $4, $5, $6}'; echo hi > /dev/vs-null && echo write-ok",
        |c| {
            c["linux"]["devices"] = serde_json::json!([
                {"path": "/dev/vs-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o606, "uid": 7, "gid": 8}
            ]);
            c["linux"]["resources"]["devices"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
        },
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["crw----rw- 7 8 1, 3", "write-ok"],
        "{err}"
    );
}

#[test]
fn seccomp_errno_with_its_return_value() {
    let env = Env::new();
    let (code, out, err) = run_sh(&env, "sc", "mkdir /tmp/d 2>&1; echo still-here", |c| {
        c["root"]["readonly"] = false.into();
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        });
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Permission denied") && out.contains("still-here"),
        "{out} {err}"
    );
}

#[test]
fn process_user_additional_gids_and_umask() {
    let env = Env::new();
    let (code, out, err) = run_sh(
        &env,
        "usr",
        "id -u; id -g; id -G; umask; touch /tmp/f; ls -ln /tmp/f | cut -c1-10",
        |c| {
            c["root"]["readonly"] = false.into();
            c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 6], "umask": 0o077});
        },
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "1001", "{out}");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["1001", "5", "6"], "{out}");
    assert_eq!(lines[3], "0077", "{out}");
    assert_eq!(lines[4], "-rw-------", "{out}");
    // exec gets the same user unless told otherwise, and --user overrides it.
    let b = env.bundle("usr2", |c| {
        sleeper(c);
        c["process"]["user"] =
            serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [5], "umask": 0o027});
    });
    env.ok_detached(&["run", "-d", "--bundle", b.to_str().unwrap(), "usr2"]);
    let o = env.run(&["exec", "usr2", "sh", "-c", "id -u; id -G; umask"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.lines().next(), Some("1000"), "{out}");
    let o = env.run(&[
        "exec",
        "--user",
        "2000:2001",
        "usr2",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    let (out, err) = text(&o);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["2000", "2001"], "{err}");
    env.ok(&["delete", "--force", "usr2"]);
}
