//! Attacks from inside a slice, as its root. Each must fail, and the host and a neighbouring
//! slice must be unaffected. The slice's root is an unprivileged uid on the host, so nothing
//! here runs attack code as host root (docs/design.md, "Host rules").
use std::process::{Child, Command, Stdio};
use vslice_integration::Env;

/// A host process the test owns, killed (by PID) on drop.
struct HostProcess(Child);
impl HostProcess {
    fn sleep() -> HostProcess {
        HostProcess(
            Command::new("sleep")
                .arg("600")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}
impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_fails(env: &Env, slice: &str, what: &str, script: &str) -> String {
    let (code, out, err) = env.sh(slice, script);
    assert_ne!(
        code, 0,
        "{what}: attack succeeded!\nstdout: {out}\nstderr: {err}"
    );
    format!("{out}{err}")
}

#[test]
fn cannot_reach_the_host_disk_or_devices() {
    let env = Env::new();
    let s = env.slice("disk", &[]);
    let marker = std::env::temp_dir().join(format!("vslice-it-marker-{}", std::process::id()));
    std::fs::write(&marker, "host secret").unwrap();
    let root_dev = root_device();
    // mknod a block device, mount the host's disk, read the host through /proc.
    assert_fails(
        &env,
        &s,
        "mknod block device",
        &format!(
            "mknod /tmp/disk b {} {} && head -c 512 /tmp/disk | wc -c",
            root_dev.0, root_dev.1
        ),
    );
    assert_fails(
        &env,
        &s,
        "mount host disk",
        "ls /dev; mount -t ext4 /dev/vda /mnt || mount -t ext4 /dev/sda /mnt",
    );
    assert_fails(
        &env,
        &s,
        "host file via path",
        &format!("cat {}", marker.display()),
    );
    assert_fails(
        &env,
        &s,
        "host file via /proc/1/root",
        &format!("cat /proc/1/root{}", marker.display()),
    );
    assert_fails(
        &env,
        &s,
        "host root via /proc/*/cwd",
        &format!(
            "for p in /proc/[0-9]*; do cat $p/cwd{} $p/root{} 2>/dev/null && exit 0; done; exit 1",
            marker.display(),
            marker.display()
        ),
    );
    // Only the device nodes the sandbox provides exist.
    let (_, out, _) = env.sh(&s, "ls /dev");
    for bad in ["vda", "sda", "mem", "kmsg", "port"] {
        assert!(
            !out.split_whitespace().any(|d| d == bad),
            "/dev/{bad} is visible in the slice: {out}"
        );
    }
    let _ = std::fs::remove_file(&marker);
}

fn root_device() -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    (libc::major(dev) as u64, libc::minor(dev) as u64)
}

#[test]
fn cannot_load_modules_or_poke_the_kernel() {
    let env = Env::new();
    let s = env.slice("kernel", &[]);
    // Kernels built without module support have no /proc/modules; insmod must fail all the same.
    let modules_before = std::fs::read_to_string("/proc/modules").ok();
    let core_before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let out = assert_fails(
        &env,
        &s,
        "load a module",
        "head -c 4096 /dev/urandom > /tmp/x.ko && insmod /tmp/x.ko",
    );
    assert!(
        out.contains("not permitted") || out.contains("denied"),
        "insmod should be refused by policy: {out}"
    );
    assert_fails(
        &env,
        &s,
        "write sysrq-trigger",
        "echo h > /proc/sysrq-trigger",
    );
    assert_fails(
        &env,
        &s,
        "write core_pattern",
        "echo '|/tmp/pwn' > /proc/sys/kernel/core_pattern",
    );
    assert_fails(&env, &s, "write /sys", "echo 1 > /sys/kernel/mm/ksm/run");
    assert_fails(
        &env,
        &s,
        "remount /sys rw",
        "mount -o remount,rw /sys && touch /sys/x",
    );
    assert_fails(
        &env,
        &s,
        "read kcore",
        "head -c 16 /proc/kcore | wc -c | grep -qv '^0$'",
    );
    // busybox date reports the failure but exits 0: check the clock itself.
    assert_fails(
        &env,
        &s,
        "set the clock",
        "date -s '2001-01-01 00:00' >/dev/null 2>&1; test $(date +%Y) = 2001",
    );
    // No module came from the slice. The kernel loads its own modules on demand while other
    // tests run beside this one (veth, bridge, nf_*...), so /proc/modules may grow: every new
    // entry must be a module of the installed kernel (in its modules.dep), never a foreign one.
    if let Some(before) = modules_before {
        let names = |t: &str| -> std::collections::BTreeSet<String> {
            t.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string)
                .collect()
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let dep = std::fs::read_to_string(format!("/lib/modules/{}/modules.dep", release.trim()))
            .unwrap_or_default();
        let known: std::collections::BTreeSet<String> = dep
            .lines()
            .filter_map(|l| l.split(':').next())
            .filter_map(|p| p.rsplit('/').next())
            .filter_map(|f| f.split(".ko").next())
            .map(|m| m.replace('-', "_"))
            .collect();
        let after = names(&std::fs::read_to_string("/proc/modules").unwrap());
        for m in after.difference(&names(&before)) {
            assert!(
                known.contains(m),
                "module {m} appeared while the slice tried insmod, and the kernel does not ship it"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_before
    );
}

#[test]
fn cannot_see_signal_or_trace_host_or_neighbour_processes() {
    let env = Env::new();
    let s = env.slice("ps", &[]);
    let neighbour = env.slice("nb", &[]);
    let host = HostProcess::sleep();
    let nb_init = env.inspect(&neighbour)["init_pid"].as_i64().unwrap();
    for pid in [host.pid() as i64, nb_init] {
        assert_fails(
            &env,
            &s,
            "see a host/neighbour process",
            &format!("test -e /proc/{pid}/status"),
        );
        assert_fails(
            &env,
            &s,
            "signal a host/neighbour process",
            &format!("kill -9 {pid}"),
        );
    }
    // Every process it can see shares its own namespaces: no host namespace is reachable to setns.
    let (code, out, err) = env.sh(&s, "for p in /proc/[0-9]*; do readlink $p/ns/mnt; readlink $p/ns/user; done 2>/dev/null | sort -u | wc -l");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "2",
        "a foreign namespace is reachable from inside the slice"
    );
    // Control: setns itself works inside (into the slice's own mount namespace), so the
    // attack below fails because the host's namespace is out of reach, not because nsenter
    // is missing or broken.
    let (code, _, err) = env.sh(&s, "nsenter --mount=/proc/1/ns/mnt true");
    assert_eq!(
        code, 0,
        "nsenter into the slice's own mount namespace: {err}"
    );
    assert_fails(
        &env,
        &s,
        "setns into the host's mount namespace",
        &format!("nsenter --mount=/proc/{}/ns/mnt true", host.pid()),
    );
    // The host and the neighbour are unaffected.
    assert!(std::path::Path::new(&format!("/proc/{}", host.pid())).exists());
    assert_eq!(env.inspect(&neighbour)["status"], "running");
}

#[test]
fn cannot_raise_its_limits_or_leave_its_cgroup() {
    let env = Env::new();
    let s = env.slice("cg", &["--memory", "64M", "--pids", "64"]);
    let cg = vslice::cgroup::Cgroup::new(&format!("{}/{}", env.cgroup_parent, s));
    // cgroup v1 mounts are refused in a user namespace, so release_agent (CVE-2022-0492) is out of reach.
    assert_fails(&env, &s, "mount cgroup v1 (release_agent)", "mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg && echo /tmp/pwn > /tmp/cg/release_agent");
    assert_fails(
        &env,
        &s,
        "mount cgroup v1 rdma",
        "mkdir -p /tmp/cg2 && mount -t cgroup -o rdma cgroup /tmp/cg2 && ls /tmp/cg2/release_agent",
    );
    // A cgroup2 mount inside its cgroup namespace only shows its own subtree: moving to its
    // root keeps it in the slice's cgroup, and raising limits there is refused.
    let (_, _, _) = env.sh(&s, "mkdir -p /tmp/u && mount -t cgroup2 none /tmp/u && echo $$ > /tmp/u/cgroup.procs; for f in /tmp/u/memory.max /tmp/u/pids.max; do echo max > $f; done; true");
    assert_fails(
        &env,
        &s,
        "write its own v1 limits",
        "echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes",
    );
    if cg.version == vslice::cgroup::Version::V2 {
        // v2: the slice's /sys/fs/cgroup is its own cgroup; its limit files are the host's.
        assert_fails(
            &env,
            &s,
            "write its own v2 limits",
            "echo max > /sys/fs/cgroup/memory.max",
        );
        assert_fails(
            &env,
            &s,
            "write its own v2 pids limit",
            "echo max > /sys/fs/cgroup/pids.max",
        );
    }
    // Host side: the limits hold and every slice process is still in the slice's cgroup.
    let info = env.inspect(&s);
    assert_eq!(info["spec"]["limits"]["memory_max"], 64u64 << 20);
    if cg.version == vslice::cgroup::Version::V1 {
        let mem = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory/{}/memory.limit_in_bytes",
            cg.path
        ))
        .unwrap();
        assert_eq!(mem.trim(), (64u64 << 20).to_string());
        let pids =
            std::fs::read_to_string(format!("/sys/fs/cgroup/pids/{}/pids.max", cg.path)).unwrap();
        assert_eq!(pids.trim(), "64");
    } else {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/{}/{f}", cg.path))
                .unwrap_or_else(|e| panic!("{f}: {e}"))
                .trim()
                .to_string()
        };
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("pids.max"), "64");
    }
    // A new slice process lands in the slice's cgroup: find it there by its PID as the slice
    // sees it (the last NSpid field). Counting processes would race with init's own children.
    let (_, out, _) = env.sh(&s, "sleep 30 >/dev/null 2>&1 & echo $!");
    let inner_pid = out.trim().to_string();
    assert!(inner_pid.parse::<u32>().is_ok(), "{out}");
    let in_cgroup = cg.pids().unwrap().into_iter().any(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|ns| ns.split_whitespace().last().map(str::to_string))
            == Some(inner_pid.clone())
    });
    assert!(
        in_cgroup,
        "slice process {inner_pid} is not in the slice's cgroup"
    );
}

#[test]
fn cannot_write_host_owned_files_and_no_host_fd_or_cwd_leaks() {
    let env = Env::new();
    let s = env.slice("files", &[]);
    let image_passwd = std::fs::read(env.root.join("images/busybox/rootfs/etc/passwd")).unwrap();
    assert_fails(
        &env,
        &s,
        "chmod the host's /dev/null",
        "chmod 777 /dev/null",
    );
    assert_fails(&env, &s, "chown the host's /dev/null", "chown 0 /dev/null");
    // Writes to image files go to the slice's own upper dir; the shared image is untouched.
    assert_eq!(env.sh(&s, "echo pwned >> /etc/passwd").0, 0);
    assert_eq!(
        std::fs::read(env.root.join("images/busybox/rootfs/etc/passwd")).unwrap(),
        image_passwd
    );
    // No host descriptor beyond stdio reaches an exec'd process or init; cwd is inside.
    let (code, out, err) = env.sh(&s, "ls /proc/self/fd | tr '\\n' ' '; echo; ls /proc/1/fd | tr '\\n' ' '; echo; readlink /proc/self/cwd; readlink /proc/1/exe; readlink /proc/self/exe");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let fds: Vec<u32> = lines[0]
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert!(
        fds.iter().all(|&f| f <= 3),
        "extra descriptors in exec: {fds:?}"
    ); // 3 = ls's own dir fd
    let init_fds: Vec<u32> = lines[1]
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert!(
        init_fds.iter().all(|&f| f <= 2),
        "init holds extra descriptors: {init_fds:?}"
    );
    assert_eq!(lines[2], "/");
    // Every executable in reach is the slice's own (CVE-2019-5736: no host binary via /proc/*/exe).
    assert_eq!(lines[3], "/bin/busybox");
    assert_eq!(lines[4], "/bin/busybox");
    assert_fails(
        &env,
        &s,
        "open a process exe for writing",
        "for p in /proc/[0-9]*; do echo x > $p/exe 2>/dev/null && exit 0; done; exit 1",
    );
}

#[test]
fn memory_exhaustion_is_oom_killed_inside_and_reported() {
    let env = Env::new();
    let s = env.slice("oom", &["--memory", "32M", "--swap", "0"]);
    let (code, _, _) = env.sh(&s, "tail /dev/zero");
    assert_eq!(code, 137, "the memory hog should be OOM-killed (SIGKILL)");
    let info = env.inspect(&s);
    assert_eq!(info["status"], "running", "the slice itself survives");
    assert!(
        info["usage"]["oom_kills"].as_u64().unwrap() >= 1,
        "OOM kill not counted: {info}"
    );
    // A slice whose init is the hog: the shim reports the OOM kill as the exit reason.
    let hog = env.name("oominit");
    env.ok(&[
        "create",
        &hog,
        "--memory",
        "32M",
        "--swap",
        "0",
        "--init",
        "/usr/bin/tail",
        "/dev/zero",
    ]);
    let mut reason = String::new();
    for _ in 0..200 {
        let info = env.inspect(&hog);
        if info["status"] == "stopped" {
            reason = info["last_exit"]["reason"]
                .as_str()
                .unwrap_or("")
                .to_string();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(reason, "oom-killed");
    // The host is fine and the neighbour slice still runs.
    assert_eq!(env.sh(&s, "echo alive").1.trim(), "alive");
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    let env = Env::new();
    let s = env.slice("bomb", &["--pids", "40"]);
    let (_, out, err) = env.sh(
        &s,
        "i=0; while [ $i -lt 200 ]; do sleep 60 >/dev/null & i=$((i+1)); done 2>&1; echo done",
    );
    let all = format!("{out}{err}");
    assert!(
        all.contains("fork") || all.contains("Resource temporarily unavailable"),
        "no fork failure seen: {all}"
    );
    let cg = vslice::cgroup::Cgroup::new(&format!("{}/{}", env.cgroup_parent, s));
    let usage = cg.usage().unwrap();
    assert!(
        usage.pids_current <= 40,
        "pids.current {} exceeds the limit",
        usage.pids_current
    );
    // The host can still start processes.
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn cpu_use_stays_at_the_cap() {
    let env = Env::new();
    let s = env.slice("cpu", &["--cpus", "0.5"]);
    let cg = vslice::cgroup::Cgroup::new(&format!("{}/{}", env.cgroup_parent, s));
    // Two busy loops would use two cores; the cap holds them to half of one.
    let (code, _, err) = env.sh(
        &s,
        "for i in 1 2; do (while :; do :; done) >/dev/null 2>&1 & done; echo started",
    );
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let u0 = cg.usage().unwrap().cpu_usage_ns;
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let used = (cg.usage().unwrap().cpu_usage_ns - u0) as f64 / 1e9;
    let wall = t0.elapsed().as_secs_f64();
    let ratio = used / wall;
    assert!(ratio < 0.6, "slice used {ratio:.2} CPUs with a 0.5 cap");
    assert!(
        ratio > 0.3,
        "slice used only {ratio:.2} CPUs: the busy loops did not run"
    );
}
