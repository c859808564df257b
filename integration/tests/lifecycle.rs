//! A slice's life through the real `vslice` binary: create, run, exec, stop, start, destroy,
//! and what a root user inside expects to be able to do.
use std::path::Path;
use vslice_integration::Env;

fn init_pid(env: &Env, name: &str) -> i32 {
    env.inspect(name)["init_pid"]
        .as_i64()
        .expect("running slice has an init pid") as i32
}

fn host_uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap() // effective uid
}

#[test]
fn slice_runs_as_root_inside_and_nobody_on_the_host() {
    let env = Env::new();
    let a = env.slice("a", &["--memory", "128M", "--pids", "200"]);
    let b = env.slice("b", &[]);
    let info = env.inspect(&a);
    assert_eq!(info["status"], "running");

    // Inside: uid 0, PID 1 is init, hostname is the slice's name, only the slice's processes.
    let (code, out, err) = env.sh(
        &a,
        "id -u; hostname; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], a);
    assert_eq!(lines[2], "init");
    let visible: u32 = lines[3].parse().unwrap();
    assert!(
        visible <= 5,
        "slice sees {visible} processes: it must see only its own"
    );

    // Host side: init runs as an unprivileged uid of the slice's own range; ranges don't overlap.
    let base_a = info["spec"]["uid_base"].as_u64().unwrap() as u32;
    let base_b = env.inspect(&b)["spec"]["uid_base"].as_u64().unwrap() as u32;
    assert!(base_a >= 65536 && base_b >= 65536);
    assert!(
        base_a.abs_diff(base_b) >= 65536,
        "ranges overlap: {base_a} {base_b}"
    );
    assert_eq!(host_uid_of(init_pid(&env, &a)), base_a);
    assert_eq!(host_uid_of(init_pid(&env, &b)), base_b);

    // A process started inside also runs as the slice's base uid on the host.
    let (code, out, _) = env.sh(&a, "sleep 300 >/dev/null 2>&1 & echo started");
    assert_eq!((code, out.trim()), (0, "started"));
    let sleeper =
        find_host_child_named(init_pid(&env, &a), "sleep").expect("sleep visible from host");
    assert_eq!(host_uid_of(sleeper), base_a);
}

/// A host PID of a process named `comm` in the same PID namespace as `init`.
fn find_host_child_named(init: i32, comm: &str) -> Option<i32> {
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).ok()?;
    for _ in 0..100 {
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&ns)
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim() == comm)
                    .unwrap_or(false)
            {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[test]
fn rootfs_is_copy_on_write_over_a_shared_image_shown_as_root_owned() {
    let env = Env::new();
    let name = env.slice("cow", &[]);
    let base = env.inspect(&name)["spec"]["uid_base"].as_u64().unwrap() as u32;
    let image = env.root.join("images/busybox/rootfs");
    let passwd_before = std::fs::read(image.join("etc/passwd")).unwrap();
    let (code, out, err) = env.sh(
        &name,
        "stat -c '%u:%g' /bin/busybox /etc/passwd; echo 'dev:x:1000:1000::/home/dev:/bin/sh' >> /etc/passwd; \
         mkdir -p /home/dev && echo hi > /home/dev/f && chown 1000:1000 /home/dev/f && stat -c '%u' /home/dev/f",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec!["0:0", "0:0", "1000"],
        "image files must show as root-owned inside"
    );
    // The image is untouched; the change landed in this slice's upper dir, owned by base+N.
    assert_eq!(
        std::fs::read(image.join("etc/passwd")).unwrap(),
        passwd_before
    );
    let upper = env.root.join("slices").join(&name).join("fs/upper");
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::metadata(upper.join("home/dev/f")).expect("copied-up file in upper dir");
    assert_eq!(f.uid(), base + 1000);
    assert_eq!(
        std::fs::metadata(upper.join("etc/passwd")).unwrap().uid(),
        base
    );
    // Creating the slice copied nothing: the upper dir holds only what the slice wrote.
    let copied = walk_count(&upper);
    assert!(
        copied < 20,
        "upper dir has {copied} entries; creating a slice must not copy the image"
    );
}

fn walk_count(p: &Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    1 + if e.path().is_dir() && !e.path().is_symlink() {
                        walk_count(&e.path())
                    } else {
                        0
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn root_inside_can_do_what_root_does() {
    let env = Env::new();
    let name = env.slice("root", &[]);
    // Bind-mount inside its own mount namespace, change its hostname, install and chown files.
    let (code, out, err) = env.sh(
        &name,
        "mkdir -p /mnt/b && mount --bind /etc /mnt/b && test -f /mnt/b/passwd && echo bind-ok; \
         hostname renamed && hostname; \
         echo 'svc:x:2000:' >> /etc/group && echo 'svc:x:2000:2000::/home/svc:/bin/sh' >> /etc/passwd && \
         mkdir -p /home/svc && chown svc:svc /home/svc && stat -c %U /home/svc",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["bind-ok", "renamed", "svc"]
    );
    // The host's hostname is untouched.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "renamed");
    // The bind mount exists only inside the slice.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/mnt/b"));
}

#[test]
fn setuid_binaries_work_inside() {
    let env = Env::new();
    let name = env.slice("suid", &[]);
    // A static program that prints its effective uid, built on the host and installed inside.
    let dir = std::env::temp_dir().join(format!("vslice-it-suid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("euid.c");
    std::fs::write(&src, "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d %d\\n\",(int)getuid(),(int)geteuid());return 0;}\n").unwrap();
    let bin = dir.join("euid");
    let st = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(st.success(), "compiling the setuid probe failed");
    let data = std::fs::read(&bin).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = env
        .cmd()
        .args([
            "exec",
            &name,
            "--",
            "/bin/sh",
            "-c",
            "cat > /bin/euid && chmod 4755 /bin/euid && su -s /bin/euid nobody",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "65534 0",
        "setuid root must take effect inside the slice"
    );
}

#[test]
fn a_service_outlives_the_shell_that_started_it() {
    let env = Env::new();
    let name = env.slice("svc", &[]);
    let (code, _, err) = env.sh(
        &name,
        "mkdir -p /www && hostname > /www/h && httpd -p 8080 -h /www",
    );
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (code, out, _) = env.sh(
        &name,
        "wget -q -O - http://127.0.0.1:8080/h; ps -o ppid,comm | grep httpd",
    );
    assert_eq!(code, 0);
    assert!(out.contains(&name), "service did not answer: {out}");
    // Re-parented to the slice's init.
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().next() == Some("1")),
        "httpd not adopted by init: {out}"
    );
}

#[test]
fn stop_start_keeps_files_and_destroy_removes_everything() {
    let env = Env::new();
    let name = env.slice("life", &["--memory", "64M"]);
    let info = env.inspect(&name);
    let shim = info["shim_pid"].as_i64().unwrap() as i32;
    let init = info["init_pid"].as_i64().unwrap() as i32;
    assert_eq!(env.sh(&name, "echo kept > /root/note").0, 0);
    env.ok(&["stop", &name, "--timeout", "5"]);
    let info = env.inspect(&name);
    assert_eq!(info["status"], "stopped");
    assert!(info["last_exit"]["reason"].is_string());
    assert!(gone(shim), "shim still running after stop");
    assert!(gone(init), "init still running after stop");
    assert!(
        env.cgroup_dirs().iter().all(|d| !d.join(&name).exists()),
        "cgroup left after stop"
    );
    // exec into a stopped slice is refused with the conflict exit code.
    assert_eq!(
        env.run(&["exec", &name, "--", "true"]).status.code(),
        Some(4)
    );
    env.ok(&["start", &name]);
    let (code, out, _) = env.sh(&name, "cat /root/note");
    assert_eq!((code, out.trim()), (0, "kept"));
    let info = env.inspect(&name);
    let shim = info["shim_pid"].as_i64().unwrap() as i32;
    env.ok(&["rm", &name]);
    assert!(
        !env.root.join("slices").join(&name).exists(),
        "state dir left after destroy"
    );
    assert!(gone(shim), "shim left after destroy");
    assert!(
        env.cgroup_dirs().iter().all(|d| !d.join(&name).exists()),
        "cgroup left after destroy"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(env.root.to_str().unwrap()),
        "mount left after destroy"
    );
    assert_eq!(env.run(&["inspect", &name]).status.code(), Some(3));
}

#[test]
fn exec_returns_the_command_exit_code_and_refuses_bad_input() {
    let env = Env::new();
    let name = env.slice("codes", &[]);
    assert_eq!(env.sh(&name, "exit 7").0, 7);
    // Programs start with default signal handling, whatever the launching process had: no
    // ignored signals (Rust ignores SIGPIPE) and none blocked.
    // (Not through sh -c: busybox ash ignores SIGQUIT itself.)
    let o = env.run(&[
        "exec",
        &name,
        "--",
        "grep",
        "-E",
        "^Sig(Ign|Blk)",
        "/proc/self/status",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    for line in out.lines() {
        assert!(line.ends_with("\t0000000000000000"), "{out}");
    }
    assert_eq!(out.lines().count(), 2, "{out}");
    // So a writer into a closed pipe dies of SIGPIPE (128 + 13), as everywhere else.
    let (code, out, err) = env.sh(&name, "(yes; echo \"yes-status $?\" >&2) | head -n 1");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "y\n");
    assert!(err.contains("yes-status 141"), "{err}");
    assert_eq!(
        env.run(&["exec", &name, "--", "/no/such/program"])
            .status
            .code(),
        Some(127)
    );
    let o = env.run(&["exec", &name, "--env", "NOEQUALS", "--", "true"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("env[0]"));
    assert_eq!(
        env.run(&["exec", "nope", "--", "true"]).status.code(),
        Some(3)
    );
}

#[test]
fn failed_creates_say_why_and_leave_nothing() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--image", "nosuchimage"], "image"),
        (&["--memory", "1K"], "limits.memory_max"),
        (&["--cpus", "100000"], "limits.cpu_max"),
        (&["--cpu-weight", "0"], "limits.cpu_weight"),
        (&["--policy", "nosuchpolicy"], "policy"),
        (&["--owner", "no-such-user-xyz"], "owners[0]"),
        (&["--init", "/no/such/init"], "no/such/init"),
    ];
    for (flags, needle) in cases {
        let name = env.name("bad");
        let mut args = vec!["create", name.as_str()];
        args.extend_from_slice(flags);
        let o = env.run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "create {flags:?} succeeded");
        assert!(
            err.contains(needle),
            "create {flags:?}: error {err:?} does not mention {needle:?}"
        );
        assert!(
            !env.root.join("slices").join(&name).exists(),
            "create {flags:?} left its state dir"
        );
        assert!(
            env.cgroup_dirs().iter().all(|d| !d.join(&name).exists()),
            "create {flags:?} left a cgroup"
        );
    }
    let o = env.run(&["create", "Bad_Name"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("name"));
    // And the same name works afterwards.
    env.slice("bad", &[]);
}

#[test]
fn limits_change_on_a_running_slice() {
    let env = Env::new();
    let name = env.slice("set", &["--memory", "64M", "--pids", "100", "--cpus", "1"]);
    env.ok(&[
        "set",
        &name,
        "--memory",
        "96M",
        "--pids",
        "150",
        "--cpus",
        "0.5",
        "--cpu-weight",
        "300",
    ]);
    let info = env.inspect(&name);
    assert_eq!(info["spec"]["limits"]["memory_max"], 96u64 << 20);
    let cg = vslice::cgroup::Cgroup::new(&format!("{}/{}", env.cgroup_parent, name));
    match cg.version {
        vslice::cgroup::Version::V1 => {
            let mem = std::fs::read_to_string(format!(
                "/sys/fs/cgroup/memory/{}/memory.limit_in_bytes",
                cg.path
            ))
            .unwrap();
            assert_eq!(mem.trim().parse::<u64>().unwrap(), 96 << 20);
            let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/{}/pids.max", cg.path))
                .unwrap();
            assert_eq!(pids.trim(), "150");
            let quota =
                std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{}/cpu.cfs_quota_us", cg.path))
                    .unwrap();
            assert_eq!(quota.trim(), "50000");
            let shares =
                std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{}/cpu.shares", cg.path))
                    .unwrap();
            assert_eq!(shares.trim(), "3072");
        }
        vslice::cgroup::Version::V2 => {
            // The same limits in the v2 kernel files (the v1 values above, converted).
            let read = |f: &str| {
                std::fs::read_to_string(format!("/sys/fs/cgroup/{}/{f}", cg.path))
                    .unwrap_or_else(|e| panic!("{f}: {e}"))
                    .trim()
                    .to_string()
            };
            assert_eq!(read("memory.max").parse::<u64>().unwrap(), 96 << 20);
            assert_eq!(read("pids.max"), "150");
            assert_eq!(read("cpu.max"), "50000 100000");
            assert_eq!(read("cpu.weight"), "300");
        }
    }
    // A limit above the policy maximum is refused and changes nothing.
    let o = env.run(&["set", &name, "--pids", "100000000"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(env.inspect(&name)["spec"]["limits"]["pids_max"], 150);
}

/// The process has exited (it may linger as a zombie until the host's init reaps it).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|r| r.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}
