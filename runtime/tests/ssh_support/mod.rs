//! A test sshd with the installed drop-in's content, a test vsliced with SSH access, test
//! keys and clients. Everything is removed on drop, also when the test fails: sshd, the slice
//! accounts the daemon made (named after this test's slices), the group, the directory.
#![allow(dead_code)]
use crate::daemon_support::{repo_dir, vsliced_bin, Options, TestDaemon};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct SshEnv {
    /// Root-owned, 0755, under /run: sshd wants the AuthorizedKeysCommand (vsh) on a path with
    /// no group- or world-writable component (so not /tmp).
    pub dir: PathBuf,
    pub vsh: PathBuf,
    pub socket: PathBuf,
    pub group: String,
    pub port: u16,
    pub tag: String,
    sshd: Option<Child>,
    pub daemon: TestDaemon,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `vsh` next to `vsliced` (built with it).
pub fn vsh_bin() -> PathBuf {
    let p = vsliced_bin().with_file_name("vsh");
    assert!(p.exists(), "{} missing: build the vsh binary", p.display());
    p
}

/// The drop-in as `make install` renders it.
pub fn render_dropin(vsh: &Path, socket: &Path, group: &str, keys_user: &str) -> String {
    std::fs::read_to_string(repo_dir().join("dist/sshd_config.d/vslice.conf"))
        .unwrap()
        .replace("@GROUP@", group)
        .replace("@VSH@", &vsh.display().to_string())
        .replace("@SOCKET@", &socket.display().to_string())
        .replace("@KEYS_USER@", keys_user)
}

pub fn exec_input(argv: &[&str]) -> vslice::proto::ExecInput {
    vslice::proto::ExecInput {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub trait Describe {
    fn describe(&self) -> String;
    fn stderr_text(&self) -> String;
}
impl Describe for Output {
    fn describe(&self) -> String {
        format!(
            "{:?}\nstdout: {}\nstderr: {}",
            self.status,
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(2000)]),
            String::from_utf8_lossy(&self.stderr)
        )
    }
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).to_string()
    }
}

pub trait StdoutString {
    fn stdout_string(&self) -> String;
}
impl StdoutString for vslice::client::ExecResult {
    fn stdout_string(&self) -> String {
        String::from_utf8_lossy(&self.stdout).to_string()
    }
}

pub struct KillOnDrop(pub i32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

impl SshEnv {
    pub fn start(which: &str) -> SshEnv {
        let pid = std::process::id();
        let tag = format!("tssh{pid}{which}");
        let dir = PathBuf::from(format!("/run/vslice-test-ssh-{pid}-{which}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let vsh = dir.join("vsh");
        std::fs::copy(vsh_bin(), &vsh).unwrap();
        std::fs::set_permissions(&vsh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("vsh.sock");
        let group = format!("vsl-ssh-{pid}{which}");
        let _ = Command::new("groupdel").arg(&group).output();
        let ok = Command::new("groupadd")
            .arg(&group)
            .status()
            .unwrap()
            .success();
        assert!(ok, "groupadd {group}");
        let port = free_port();
        let mut env = SshEnv {
            dir: dir.clone(),
            vsh: vsh.clone(),
            socket: socket.clone(),
            group: group.clone(),
            port,
            tag,
            sshd: None,
            daemon: TestDaemon::start_with(Options {
                config: format!(
                    "ssh_socket = \"{}\"\nssh_group = \"{group}\"\nssh_shell = \"{}\"\nssh_keys_user = \"nobody\"\n",
                    socket.display(),
                    vsh.display()
                ),
                ..Default::default()
            }),
        };
        env.start_sshd();
        env
    }

    fn start_sshd(&mut self) {
        let d = &self.dir;
        let hostkey = d.join("host_ed25519");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&hostkey)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::fs::write(
            d.join("vslice.conf"),
            render_dropin(&self.vsh, &self.socket, &self.group, "nobody"),
        )
        .unwrap();
        let cfg = d.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM no\n\
                 AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 AllowGroups {}\nSubsystem sftp /usr/lib/openssh/sftp-server\nLogLevel VERBOSE\n\
                 PrintMotd no\nPrintLastLog no\nInclude {}\n",
                self.port,
                hostkey.display(),
                d.join("sshd.pid").display(),
                self.group,
                d.join("vslice.conf").display()
            ),
        )
        .unwrap();
        // The privilege separation directory of Debian's sshd (made by the service unit).
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.sshd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(st))) = self.sshd.as_mut().map(|c| c.try_wait()) {
                panic!("sshd exited ({st}): {}", self.sshd_log());
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                self.sshd_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    pub fn slice_name(&self, s: &str) -> String {
        format!("{}{s}", self.tag)
    }

    pub fn keygen(&self, name: &str) -> PathBuf {
        let p = self.dir.join(format!("key-{name}"));
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("{name}@test"))
            .arg("-f")
            .arg(&p)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        p
    }

    pub fn pubkey(&self, key: &Path) -> String {
        std::fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn ssh_cmd(&self, key: &Path, user: &str, flags: &[&str], remote: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.arg("60").arg("ssh").args(["-F", "/dev/null", "-p"]);
        c.arg(self.port.to_string()).arg("-i").arg(key);
        for o in [
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
        ] {
            c.arg("-o").arg(o);
        }
        c.args(flags).arg(format!("{user}@127.0.0.1")).args(remote);
        c.env_remove("SSH_AUTH_SOCK");
        c
    }

    /// Run ssh to completion.
    pub fn ssh(
        &self,
        key: &Path,
        user: &str,
        flags: &[&str],
        remote: &[&str],
        stdin: Option<&[u8]>,
    ) -> Output {
        self.ssh_env(key, user, flags, remote, stdin, &[])
    }

    /// Run ssh to completion with more environment.
    pub fn ssh_env(
        &self,
        key: &Path,
        user: &str,
        flags: &[&str],
        remote: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut c = self.ssh_cmd(key, user, flags, remote);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut w = child.stdin.take().unwrap();
        let data = stdin.map(|d| d.to_vec());
        let writer = std::thread::spawn(move || {
            if let Some(d) = data {
                let _ = std::io::Write::write_all(&mut w, &d);
            }
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out
    }

    pub fn ssh_spawn(&self, key: &Path, user: &str, flags: &[&str]) -> Child {
        self.ssh_spawn_env(key, user, flags, &[], &[])
    }

    pub fn ssh_spawn_cmd(&self, key: &Path, user: &str, flags: &[&str], remote: &[&str]) -> Child {
        self.ssh_spawn_env(key, user, flags, remote, &[])
    }

    pub fn ssh_spawn_env(
        &self,
        key: &Path,
        user: &str,
        flags: &[&str],
        remote: &[&str],
        env: &[(&str, &str)],
    ) -> Child {
        // Not through `timeout`: the test kills this very process to disconnect.
        let c = self.ssh_cmd(key, user, flags, remote);
        let args: Vec<_> = c.get_args().skip(2).map(|a| a.to_owned()).collect();
        let mut c2 = Command::new("ssh");
        c2.args(args);
        c2.env_remove("SSH_AUTH_SOCK");
        for (k, v) in env {
            c2.env(k, v);
        }
        c2.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c2.spawn().unwrap()
    }

    /// ssh with its terminal the slave of a pty of the test (its controlling terminal).
    pub fn ssh_on_pty(&self, key: &Path, user: &str, slave: &OwnedFd, remote: &[&str]) -> Child {
        let c = self.ssh_cmd(key, user, &["-tt"], remote);
        let args: Vec<_> = c.get_args().skip(2).map(|a| a.to_owned()).collect();
        let mut c2 = Command::new("ssh");
        c2.args(args);
        let fd = slave.as_raw_fd();
        c2.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c2.pre_exec(move || {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                let _ = fd;
                Ok(())
            });
        }
        c2.spawn().unwrap()
    }

    /// Run this test's vsh as uid/gid directly (not through sshd).
    pub fn vsh_as(&self, uid: u32, gid: u32, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(&self.vsh)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

impl Drop for SshEnv {
    fn drop(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("sshd log:\n{}", self.sshd_log());
            eprintln!("vsliced log:\n{}", self.daemon.log_text());
        }
        // The slice accounts the daemon made for this test's slices.
        if let Ok(text) = std::fs::read_to_string("/etc/passwd") {
            for name in text.lines().filter_map(|l| l.split(':').next()) {
                if name.starts_with(&self.tag) {
                    let _ = Command::new("userdel").arg(name).output();
                }
            }
        }
        let _ = Command::new("groupdel").arg(&self.group).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shared Debian image (has sftp-server and rsync): `$VSLICE_TEST_IMAGES/debian/rootfs`
/// if there, else hard-linked there from the cache that images/debian/build.sh fills
/// (`/var/cache/vslice/images/debian/rootfs`, built on demand under the cache's lock).
/// Hard links: images are read-only lower layers, never written through.
pub fn debian_image() {
    use nix::fcntl::{Flock, FlockArg};
    let images = crate::daemon_support::images_dir();
    let dest = images.join("debian/rootfs");
    if dest.join("usr/lib/openssh/sftp-server").exists() {
        return;
    }
    let cache = PathBuf::from("/var/cache/vslice/images/debian/rootfs");
    if !cache.exists() {
        std::fs::create_dir_all("/var/cache/vslice/images").unwrap();
        let lock = std::fs::File::create("/var/cache/vslice/images/.debian.lock").unwrap();
        let _held = Flock::lock(lock, FlockArg::LockExclusive).unwrap();
        if !cache.exists() {
            let ok = Command::new("sh")
                .arg(repo_dir().join("images/debian/build.sh"))
                .arg(&cache)
                .status()
                .unwrap()
                .success();
            assert!(ok, "images/debian/build.sh {} failed", cache.display());
        }
    }
    let lock = std::fs::File::create(images.join(".debian.lock")).unwrap();
    let _held = Flock::lock(lock, FlockArg::LockExclusive).unwrap();
    if dest.exists() {
        return;
    }
    std::fs::create_dir_all(images.join("debian")).unwrap();
    let tmp = images.join(format!("debian/rootfs.tmp.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let ok = Command::new("cp")
        .arg("-al")
        .arg(&cache)
        .arg(&tmp)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -al {} {}", cache.display(), tmp.display());
    std::fs::rename(&tmp, &dest).unwrap();
}

impl SshEnv {
    /// `-e` for rsync and the common options for scp/sftp.
    pub fn client_opts(&self, key: &Path) -> Vec<String> {
        let mut v = vec!["-F".to_string(), "/dev/null".into(), "-i".into()];
        v.push(key.display().to_string());
        for o in [
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
        ] {
            v.push("-o".into());
            v.push(o.into());
        }
        v
    }
}

/// SIGKILLs a process if it is still there after a while (a test reading its terminal must
/// not hang forever); disarmed on drop.
pub struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);
impl Watchdog {
    pub fn new(pid: i32, after: Duration) -> Watchdog {
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let a = armed.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            if a.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        });
        Watchdog(armed)
    }
}
impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
