//! The view server's watchdog, run by the shim between its other waits: a server that is alive
//! but not answering (SIGSTOPped, traced, deadlocked, stuck in the kernel) would make every
//! reader of a view wait forever, as lxcfs' readers do. The kernel's FUSE control filesystem
//! tells how many requests of the connection are in flight (`waiting`); when some are and the
//! server cannot be answering them, the shim aborts the connection (in-flight and later reads
//! fail at once with ENOTCONN instead of hanging) and kills the server, whose death then takes
//! the ordinary restart path (new server, views re-injected).
//!
//! "Cannot be answering": the server is stopped or traced (state T/t); or requests
//! have been waiting for [`STALL`] while the server used no CPU at all (a serving server burns
//! some CPU per request, a deadlocked one none).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the shim looks while requests are waiting on the server.
pub const TICK: Duration = Duration::from_millis(250);
/// How often it looks otherwise. A stopped server is reported to the shim at once (SIGCHLD,
/// its parent), so only a deadlocked or ptrace-stopped one waits for this look: a reader
/// then fails after at most about IDLE_TICK + STALL. Looking every TICK made 1000 idle slices
/// cost 4,000 wake-ups and a fifth of a core a second.
pub const IDLE_TICK: Duration = Duration::from_secs(2);
/// Requests waiting this long on a server that used no CPU meanwhile: stuck.
pub const STALL: Duration = Duration::from_millis(750);

/// Where the kernel's FUSE control filesystem is (mounted by [`mount_control`] in the shim's
/// private mount namespace when the host has not mounted it).
pub const CONTROL: &str = "/sys/fs/fuse/connections";
const FUSECTL_SUPER_MAGIC: i64 = 0x6573_7563;

/// Mount the FUSE control filesystem on [`CONTROL`] unless it is there. Called in the shim's
/// own mount namespace: the host's mount table does not change. Best effort: without it the
/// watchdog still sees stopped servers (by their state), only not deadlocked ones.
pub fn mount_control() {
    let mounted = nix::sys::statfs::statfs(CONTROL)
        .map(|s| s.filesystem_type().0 == FUSECTL_SUPER_MAGIC)
        .unwrap_or(false);
    if !mounted {
        let _ = nix::mount::mount(
            Some("fusectl"),
            CONTROL,
            Some("fusectl"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            None::<&str>,
        );
    }
}

/// The control directory of the FUSE connection mounted on `mnt` (named after the mount's
/// device number, as the kernel encodes it).
pub fn connection_of(mnt: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mnt).ok()?.dev();
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    let dir = Path::new(CONTROL).join(((major << 20) | minor).to_string());
    dir.join("waiting").exists().then_some(dir)
}

/// What the watchdog concluded at one tick.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Healthy,
    /// The server cannot answer: abort its connection and kill it. The reason is for the log.
    Stuck(String),
}

pub struct Watchdog {
    server: i32,
    conn: Option<PathBuf>,
    /// Since when requests have been waiting, and the server's CPU ticks then.
    waiting_since: Option<(Instant, u64)>,
}

impl Watchdog {
    /// Watch `server`, the process serving the FUSE mount on `mnt`.
    pub fn new(server: i32, mnt: &Path) -> Watchdog {
        Watchdog {
            server,
            conn: connection_of(mnt),
            waiting_since: None,
        }
    }

    /// Requests in flight on the connection (None: no control file to ask).
    fn waiting(&self) -> Option<u64> {
        let c = self.conn.as_ref()?;
        std::fs::read_to_string(c.join("waiting"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// One look. Cheap when all is well: one small sysfs read (plus the server's stat when
    /// requests are in flight).
    pub fn check(&mut self) -> Verdict {
        let waiting = self.waiting();
        // Without the control file, the state alone (a stopped server is the common case).
        if waiting == Some(0) {
            self.waiting_since = None;
            return Verdict::Healthy;
        }
        let Some((state, cpu)) = proc_state(self.server) else {
            return Verdict::Healthy; // gone: the shim reaps it and restarts it
        };
        // A zombie is dead already (its connection ended with it): the shim reaps it.
        if matches!(state, 'Z' | 'X') {
            return Verdict::Healthy;
        }
        if matches!(state, 'T' | 't') {
            return Verdict::Stuck(format!(
                "view server {} is in state {state} with requests waiting",
                self.server
            ));
        }
        if waiting.is_none() {
            return Verdict::Healthy;
        }
        match self.waiting_since {
            None => self.waiting_since = Some((Instant::now(), cpu)),
            Some((at, cpu0)) => {
                if cpu != cpu0 {
                    self.waiting_since = Some((Instant::now(), cpu));
                } else if at.elapsed() >= STALL {
                    return Verdict::Stuck(format!(
                        "view server {} answered nothing for {:?} with requests waiting",
                        self.server,
                        at.elapsed()
                    ));
                }
            }
        }
        Verdict::Healthy
    }

    /// When to look again: soon while requests are waiting, else after [`IDLE_TICK`].
    pub fn next_look(&self) -> Duration {
        if self.waiting_since.is_some() {
            TICK
        } else {
            IDLE_TICK
        }
    }

    /// End the connection at once: every waiting and later request fails with ENOTCONN. The
    /// caller then kills the server (SIGKILL also ends a stopped one).
    pub fn abort(&self) {
        if let Some(c) = &self.conn {
            let _ = std::fs::write(c.join("abort"), "1");
        }
    }
}

/// A process' state letter and its user+system CPU ticks, from /proc/<pid>/stat.
fn proc_state(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // Fields after the command name (which may contain ')'): state is the first; utime and
    // stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((state, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let s = "42 (vslice-views) T 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat(s), Some(('T', 12)));
        let s = "42 (a) b) R 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0";
        assert_eq!(parse_stat(s), Some(('R', 3)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
