//! The real client: containerd from Debian's packages, started by the test with its own
//! root/state dirs, config and socket (never the system's), with a local OCI image made from
//! the busybox rootfs (no registry), running containers through
//! `ctr run --runc-binary <vslice-runc>` (containerd's io.containerd.runc.v2 shim calling
//! vslice-runc): exit codes, stdout, a tty, exec into a running container, kill, cgroup
//! limits. Everything is removed afterwards, even on failure: containers, tasks, shims (by
//! PID), containerd (by PID), mounts and cgroups under the test's unique namespace.
mod oci_support;

use oci_support::{cgroup_dirs_named, remove_cgroup_tree, runc_bin, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const IMAGE: &str = "docker.io/library/vslice-busybox:latest";

/// A private containerd: own config, root, state, sockets; a unique namespace (which is also
/// the cgroup parent of its containers: ctr uses cgroupsPath /<namespace>/<id>).
struct Containerd {
    work: PathBuf,
    sock: PathBuf,
    ns: String,
    child: Option<Child>,
}

impl Containerd {
    fn start() -> Containerd {
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(
                found,
                "{tool} not found: install Debian's containerd package (make deps)"
            );
        }
        let tag = format!("vslice-test-ctrd-{}", std::process::id());
        let work = PathBuf::from(format!("/tmp/{tag}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let sock = work.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{w}/root\"\nstate = \"{w}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n[debug]\n  address = \"{w}/debug.sock\"\n",
            w = work.display(),
            s = sock.display()
        );
        std::fs::write(work.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(work.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(work.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut c = Containerd {
            work,
            sock,
            ns: tag,
            child: Some(child),
        };
        assert!(
            wait_for(20, || c.ctr(&["version"]).status.success()),
            "containerd did not come up: {}",
            std::fs::read_to_string(c.work.join("containerd.log")).unwrap_or_default()
        );
        let image = c.work.join("busybox-oci.tar");
        oci_support::image::make_oci_image(
            &oci_support::busybox_rootfs(),
            &c.work,
            IMAGE,
            serde_json::json!({ "Cmd": ["/bin/sh"] }),
            &[],
            &image,
        );
        c.ok(&["images", "import", image.to_str().unwrap()]);
        let _ = &mut c;
        c
    }

    fn ctr_cmd(&self) -> Command {
        let mut c = Command::new("timeout");
        c.args(["60", "ctr", "--address"])
            .arg(&self.sock)
            .args(["--namespace", &self.ns]);
        c.stdin(Stdio::null());
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_cmd().args(args).output().expect("run ctr")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\nvslice-runc logs: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.runtime_logs()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The --log files the shim gave vslice-runc.
    fn runtime_logs(&self) -> String {
        let dir = self
            .work
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.ns);
        let mut out = String::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path().join("log.json")) {
                out.push_str(&t);
            }
        }
        out
    }

    /// `ctr run --runc-binary vslice-runc [flags] IMAGE ID ARGS...`
    fn run_args(&self, flags: &[&str], id: &str, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "run".into(),
            "--runc-binary".into(),
            runc_bin().to_string_lossy().into_owned(),
        ];
        v.extend(flags.iter().map(|s| s.to_string()));
        v.push(IMAGE.into());
        v.push(id.into());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn run(&self, flags: &[&str], id: &str, args: &[&str]) -> Output {
        let v = self.run_args(flags, id, args);
        self.ctr(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The shell command line of `ctr ...` for `script`.
    fn ctr_line(&self, args: &[String]) -> String {
        let mut s = format!(
            // --foreground: without it timeout moves ctr into a background process group,
            // and ctr's tcsetattr on the pty then stops it with SIGTTOU (seen when script runs
            // the line with dash, i.e. whenever $SHELL is unset as under CI).
            "timeout --foreground 60 ctr --address {} --namespace {}",
            self.sock.display(),
            self.ns
        );
        for a in args {
            s.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
        }
        s
    }

    /// vslice-runc's state root for our namespace (the shim passes --root /run/containerd/runc/<ns>).
    fn runtime_root(&self) -> PathBuf {
        PathBuf::from("/run/containerd/runc").join(&self.ns)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let daemon = self.child.take();
        oci_support::containerd::tear_down(
            |a| self.ctr(a),
            &self.sock,
            &self.runtime_root(),
            daemon,
            &self.work,
        );
        for d in cgroup_dirs_named(&self.ns) {
            remove_cgroup_tree(&d);
        }
        let _ = std::fs::remove_dir_all(self.runtime_root());
        // Directories containerd and its shim make under /run/containerd: remove if empty.
        for d in [
            "/run/containerd/runc",
            "/run/containerd/s",
            "/run/containerd/fifo",
            "/run/containerd",
        ] {
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn containerd_runs_containers_through_vslice_runc() {
    let c = Containerd::start();

    // Exit code and stdout; the container's cgroup is /<namespace>/<id>, made by vslice-runc.
    let o = c.run(
        &["--rm"],
        "exit7",
        &[
            "sh",
            "-c",
            "echo hello from busybox; cat /proc/self/cgroup | grep memory; exit 7",
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(7),
        "stdout: {out}\nstderr: {err}\nlogs: {}",
        c.runtime_logs()
    );
    assert!(out.contains("hello from busybox"), "{out}");
    assert!(out.contains(&format!(":memory:/{}/exit7", c.ns)), "{out}");
    let o = c.run(&["--rm"], "exit0", &["true"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    // Memory limit from `ctr run --memory-limit`, visible in the container's cgroup.
    let o = c.run(
        &["--rm", "--memory-limit", "67108864"],
        "mem",
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup | grep :memory: | cut -d: -f3",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out} {err}");
    let cg = out.trim().to_string();
    assert_eq!(cg, format!("/{}/mem", c.ns));

    // A long-running container: limits on the host side, exec, ps, kill.
    c.ok(&c
        .run_args(
            &["-d", "--memory-limit", "33554432"],
            "long",
            &["sleep", "1000"],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.runtime_root().join("long/state.json"))
            .expect("vslice-runc's state.json"),
    )
    .unwrap();
    assert!(
        state["pid_start"].as_u64().is_some(),
        "the container was not created by vslice-runc: {state}"
    );
    let pid = state["pid"].as_i64().unwrap() as i32;
    let limit_file = if vslice::cgroup::detect() == vslice::cgroup::Version::V2 {
        format!("/sys/fs/cgroup/{}/long/memory.max", c.ns)
    } else {
        format!("/sys/fs/cgroup/memory/{}/long/memory.limit_in_bytes", c.ns)
    };
    assert_eq!(
        std::fs::read_to_string(&limit_file).unwrap().trim(),
        "33554432"
    );

    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "long",
        "sh",
        "-c",
        "echo exec-out; test $(cat /proc/1/comm) = sleep; exit 5",
    ]);
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{out} {err}\nlogs: {}",
        c.runtime_logs()
    );
    assert!(out.contains("exec-out"), "{out}");

    let ps = c.ok(&["task", "ps", "long"]);
    assert!(ps.contains(&pid.to_string()), "{ps}");

    // A tty for an exec'd process (ctr needs a terminal: script gives it one).
    let line = c.ctr_line(
        &[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "e2",
            "long",
            "sh",
            "-c",
            "tty; exit 4",
        ]
        .map(String::from),
    );
    let o = Command::new("script")
        .args(["-eqc", &line, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out} {err}");
    assert!(out.contains("/dev/pts/"), "{out}");

    // kill: SIGKILL reaches init; the task reports 137 and can be deleted.
    c.ok(&["task", "kill", "--signal", "SIGKILL", "long"]);
    assert!(wait_for(10, || c
        .ok(&["task", "ls"])
        .lines()
        .any(|l| l.starts_with("long") && l.contains("STOPPED"))));
    c.ok(&["task", "delete", "long"]);
    c.ok(&["containers", "delete", "long"]);
    assert!(
        !c.runtime_root().join("long").exists(),
        "vslice-runc state left behind"
    );
    assert!(!Path::new(&limit_file).exists(), "cgroup left behind");

    // A tty for the container itself: `ctr run -t`, input through the terminal.
    let line = c.ctr_line(&c.run_args(&["--rm", "-t"], "tty", &["sh"]));
    let mut child = Command::new("script")
        .args(["-eqc", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        stdin
            .write_all(b"tty; echo sum-$((40+2))\nexit 6\n")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(6),
        "{out} {err}\nlogs: {}",
        c.runtime_logs()
    );
    assert!(
        out.contains("sum-42") && out.contains("/dev/pts/0"),
        "{out}"
    );

    // Nothing of ours is left in any hierarchy once the containers are gone.
    let left: Vec<PathBuf> = cgroup_dirs_named(&c.ns)
        .into_iter()
        .filter(|d| std::fs::read_dir(d).map(|r| r.count() > 0).unwrap_or(false))
        .collect();
    assert!(
        cgroup_dirs_named(&c.ns).is_empty(),
        "cgroups left: {:?} (non-empty: {left:?})",
        cgroup_dirs_named(&c.ns)
    );
}
