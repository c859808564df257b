//! Shared harness of the daemon tests: a real `vsliced` on a private socket, state root
//! (`/tmp/vslice-test-d<pid>-<n>`) and cgroup parent (`vslice-t<pid>d<n>`), torn down on drop
//! even when the test fails: the daemon is killed by PID, the slices' processes (found by
//! their cgroups under the private parent and by the private root in their command line) are
//! killed, the cgroups removed, the root deleted. Host users made by [`Users`] are removed
//! on drop too.
#![allow(dead_code)]
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod debian;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo dir")
}

pub fn vsliced_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vsliced"))
}

/// `vslice-shim` next to `vsliced`, else in $VSLICE_BIN_DIR; built on demand.
pub fn shim_bin() -> PathBuf {
    let next = vsliced_bin().with_file_name("vslice-shim");
    if next.is_file() {
        return next;
    }
    if let Some(d) = std::env::var_os("VSLICE_BIN_DIR") {
        let p = PathBuf::from(d).join("vslice-shim");
        if p.is_file() {
            return p;
        }
    }
    let release = vsliced_bin()
        .parent()
        .is_some_and(|d| d.ends_with("release"));
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(["build", "-p", "vslice-shim"])
        .current_dir(repo_dir());
    if release {
        c.arg("--release");
    }
    if let Some(target) = vsliced_bin().parent().and_then(Path::parent) {
        c.env("CARGO_TARGET_DIR", target);
    }
    let st = c.status().expect("cargo build -p vslice-shim");
    assert!(
        st.success() && next.is_file(),
        "build the shim first: cargo build -p vslice-shim"
    );
    next
}

/// The shared busybox image, built once (same place `make test` builds it).
pub fn images_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("VSLICE_TEST_IMAGES").unwrap_or_else(|_| "/tmp/vslice-test-images".into()),
    );
    if let Err(e) = vslice::image::ensure_busybox(&dir, &repo_dir().join("images")) {
        panic!("busybox test image: {e}");
    }
    dir
}

/// Options of a test daemon.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Operators' group (default: a group that does not exist, so only root is an operator).
    pub admin_group: Option<String>,
    /// Extra config file lines.
    pub config: String,
    /// $NOTIFY_SOCKET for the daemon (systemd readiness).
    pub notify_socket: Option<PathBuf>,
    /// Extra environment of the daemon (e.g. a private bridge: VSLICE_BRIDGE, ...).
    pub env: Vec<(String, String)>,
}

pub struct TestDaemon {
    pub root: PathBuf,
    pub socket: PathBuf,
    pub user_socket: PathBuf,
    pub cgroup_parent: String,
    pub log: PathBuf,
    pub config_path: PathBuf,
    pub child: Option<Child>,
    pub starts: usize,
    pub notify_socket: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl TestDaemon {
    pub fn start() -> TestDaemon {
        TestDaemon::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> TestDaemon {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let root = PathBuf::from(format!("/tmp/vslice-test-d{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir root");
        // Others (the test users) must reach the owners' socket inside the root.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink(images_dir(), root.join("images")).expect("link images");
        let admin_group = opts
            .admin_group
            .clone()
            .unwrap_or_else(|| format!("vst-nogroup-{pid}"));
        let config_path = root.join("vslice.toml");
        std::fs::write(
            &config_path,
            format!(
                "admin_group = \"{admin_group}\"\nevents_poll_ms = 200\nstop_timeout = 2\n{}{}\n",
                // SSH access off unless the test sets it up (its socket and host accounts
                // are node-wide).
                if opts.config.contains("ssh_socket") {
                    ""
                } else {
                    "ssh_socket = \"\"\n"
                },
                opts.config
            ),
        )
        .unwrap();
        let mut d = TestDaemon {
            socket: root.join("api.sock"),
            user_socket: root.join("user.sock"),
            log: root.join("vsliced.log"),
            cgroup_parent: format!("vslice-t{pid}d{n}"),
            config_path,
            root,
            child: None,
            starts: 0,
            notify_socket: opts.notify_socket.clone(),
            env: opts.env.clone(),
        };
        d.spawn();
        d
    }

    /// Start the daemon process and wait until it answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(vsliced_bin());
        match &self.notify_socket {
            Some(p) => cmd.env("NOTIFY_SOCKET", p),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .arg("--config")
            .arg(&self.config_path)
            .arg("--root")
            .arg(&self.root)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--user-socket")
            .arg(&self.user_socket)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--policy-dir")
            .arg(repo_dir().join("policies"))
            .arg("--shim")
            .arg(shim_bin())
            .env("RUST_LOG", "info,vslice=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn vsliced");
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "vsliced exited at start-up ({st}); log:\n{}",
                    self.log_text()
                );
            }
            let out = self.curl("GET", "/v1/info", None);
            if out.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vsliced did not become ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL the daemon (by PID) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self) -> vslice::client::Client {
        vslice::client::Client::new(&self.socket)
    }

    pub fn blocking(&self) -> vslice::client::BlockingClient {
        vslice::client::BlockingClient::new(&self.socket).unwrap()
    }

    /// `curl --unix-socket` on the operators' socket as root: (status, body).
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        curl_cmd(Command::new("curl"), &self.socket, method, path, body)
    }

    /// The same as a host user (setpriv, with the user's groups), on `socket`.
    pub fn curl_as(
        &self,
        user: &User,
        socket: &Path,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .arg("--init-groups")
            .arg("curl");
        curl_cmd(c, socket, method, path, body)
    }

    /// The slices' directories (names) in the state store.
    pub fn slice_dirs(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.root.join("slices"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Slice cgroups under the private parent, by name, in any hierarchy.
    pub fn cgroups(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for h in cgroup_hierarchies() {
            if let Ok(rd) = std::fs::read_dir(h.join(&self.cgroup_parent)) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        out.insert(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
        }
        out
    }

    /// (pid, subcommand, slice name) of every `vslice-shim` process of this root.
    pub fn shims(&self) -> Vec<(i32, String, String)> {
        let root = self.root.to_string_lossy().into_owned();
        let mut out = Vec::new();
        for (pid, args) in processes() {
            if !args.first().is_some_and(|a| a.ends_with("vslice-shim")) {
                continue;
            }
            // The slice's view server is a fork of its shim (same command line, own comm); it
            // dies with the shim (PDEATHSIG).
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() == vslice::views::SERVER_COMM {
                continue;
            }
            let pos = |k: &str| {
                args.iter()
                    .position(|a| a == k)
                    .and_then(|i| args.get(i + 1))
                    .cloned()
            };
            if pos("--root").as_deref() == Some(root.as_str()) {
                out.push((
                    pid,
                    args.get(1).cloned().unwrap_or_default(),
                    pos("--name").unwrap_or_default(),
                ));
            }
        }
        out
    }

    /// Every process in the private cgroup parent.
    pub fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for h in cgroup_hierarchies() {
            collect_procs(&h.join(&self.cgroup_parent), &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The kernel agrees with the state (within a few seconds: the daemon's janitor cleans
    /// leftovers of interrupted operations periodically): see [`TestDaemon::consistency`].
    pub fn assert_consistent(&self) {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(15);
        let mut first: Option<String> = None;
        loop {
            match self.consistency() {
                Ok(()) => {
                    if let Some(f) = first {
                        eprintln!("consistent after {:?} (first check: {f})", t0.elapsed());
                    }
                    return;
                }
                Err(e) if first.is_none() => {
                    first = Some(e);
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) if Instant::now() >= deadline => panic!("kernel and state disagree: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Every slice dir is a listed slice; no half-made directories; running slices have their
    /// shim and cgroup; nothing else has either.
    pub fn consistency(&self) -> Result<(), String> {
        let infos = self.blocking().list().map_err(|e| format!("list: {e}"))?;
        let listed: BTreeSet<String> = infos.iter().map(|i| i.spec.name.clone()).collect();
        let running: BTreeSet<String> = infos
            .iter()
            .filter(|i| i.status == vslice::slice::Status::Running)
            .map(|i| i.spec.name.clone())
            .collect();
        let dirs = self.slice_dirs();
        let hidden: Vec<&String> = dirs.iter().filter(|d| d.starts_with('.')).collect();
        if !hidden.is_empty() {
            return Err(format!("half-made state left: {hidden:?}"));
        }
        if dirs != listed {
            return Err(format!(
                "slice directories {dirs:?} vs listed slices {listed:?}"
            ));
        }
        // Shims: exactly one `start` shim per running slice, none for others.
        let start_shims: Vec<String> = self
            .shims()
            .into_iter()
            .filter(|(_, c, _)| c == "start")
            .map(|(_, _, n)| n)
            .collect();
        let shim_set: BTreeSet<String> = start_shims.iter().cloned().collect();
        if start_shims.len() != shim_set.len() {
            return Err(format!("duplicate shims: {start_shims:?}"));
        }
        if shim_set != running {
            return Err(format!(
                "shim processes {shim_set:?} vs running slices {running:?}"
            ));
        }
        for i in &infos {
            if let Some(p) = i.shim_pid {
                if !Path::new(&format!("/proc/{p}")).exists() {
                    return Err(format!("{}: shim {p} is gone", i.spec.name));
                }
            }
        }
        // Cgroups: exactly the running slices'.
        let cgs = self.cgroups();
        if cgs != running {
            return Err(format!(
                "cgroups under {} {cgs:?} vs running slices {running:?}",
                self.cgroup_parent
            ));
        }
        Ok(())
    }

    /// Kill everything this test daemon made and remove it (also run on drop).
    pub fn teardown(&mut self) {
        self.kill9();
        for (pid, _, _) in self.shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for _ in 0..100 {
            let pids = self.cgroup_pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The exec log's program, pinned so that it outlives a daemon that has slices.
        vslice::audit::exec_bpf::unpin(&vslice::audit::execs::pin_dir_for(&self.cgroup_parent));
        for h in cgroup_hierarchies() {
            remove_cgroup_tree(&h.join(&self.cgroup_parent));
        }
        // Shims mount in private namespaces; anything visible here under the root goes too.
        let root = self.root.to_string_lossy().into_owned();
        if let Ok(m) = std::fs::read_to_string("/proc/self/mounts") {
            let mut mps: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|p| p.starts_with(&root))
                .collect();
            mps.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in mps {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- vsliced log ({}) ----\n{}",
                self.log.display(),
                tail(&self.log_text(), 200)
            );
        }
        self.teardown();
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn curl_cmd(
    mut c: Command,
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    c.arg("-s")
        .arg("-S")
        .arg("--max-time")
        .arg("120")
        .arg("--unix-socket")
        .arg(socket)
        .arg("-X")
        .arg(method);
    c.arg("-w").arg("\n%{http_code}");
    if let Some(b) = body {
        c.arg("-H")
            .arg("Content-Type: application/json")
            .arg("--data-binary")
            .arg(b);
    }
    c.arg(format!("http://localhost{path}"));
    let out = c.stdin(Stdio::null()).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Mounted cgroup hierarchies (v1 controllers and/or the v2 root).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.procs").exists() {
        out.push(base.to_path_buf());
    }
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            let p = e.path();
            if p.join("cgroup.procs").exists() && !p.is_symlink() {
                out.push(p);
            }
        }
    }
    out
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                collect_procs(&e.path(), out);
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    if dir.exists() {
        for _ in 0..50 {
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// (pid, argv) of every process.
pub fn processes() -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if !args.is_empty() {
                out.push((pid, args));
            }
        }
    }
    out
}

/// A host user made for a test.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Host users and groups created for a test; removed on drop.
pub struct Users {
    pub users: Vec<User>,
    pub groups: Vec<String>,
}

impl Users {
    pub fn new() -> Users {
        Users {
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    pub fn group(&mut self, name: &str) {
        let _ = Command::new("groupdel").arg(name).output();
        run(Command::new("groupadd").arg(name));
        self.groups.push(name.to_string());
    }

    pub fn user(&mut self, name: &str, groups: &[&str]) -> User {
        let _ = Command::new("userdel").arg(name).output();
        let mut c = Command::new("useradd");
        c.args(["-M", "-N", "-s", "/bin/sh", "-d", "/nonexistent"]);
        if !groups.is_empty() {
            c.arg("-G").arg(groups.join(","));
        }
        c.arg(name);
        run(&mut c);
        let u = nix::unistd::User::from_name(name)
            .unwrap()
            .expect("user just made");
        let user = User {
            name: name.to_string(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        };
        self.users.push(user.clone());
        user
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(&u.name).output();
        }
        for g in &self.groups {
            let _ = Command::new("groupdel").arg(g).output();
        }
    }
}

fn run(c: &mut Command) -> Output {
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Wait until `f` is true.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A create request for a slice running a long sleep (fast to start and stop).
pub fn sleeper(name: &str) -> vslice::slice::CreateRequest {
    vslice::slice::CreateRequest {
        name: name.to_string(),
        start: true,
        init: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; while :; do sleep 1; done".into(),
        ]),
        ..Default::default()
    }
}
