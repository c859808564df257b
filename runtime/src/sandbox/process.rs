//! The last steps before a sandboxed program runs, shared by a slice's init and by every
//! exec into a running slice: identity, capabilities, rlimits, no_new_privs, seccomp, fds,
//! working directory, exec. Everything here runs in a single-threaded child after fork.
use super::seccomp::CompiledFilters;
use super::SandboxError;
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, Process};
use std::ffi::CString;
use std::str::FromStr;

fn sys_err(op: &'static str, target: impl Into<String>, e: nix::Error) -> SandboxError {
    SandboxError::Sys {
        op,
        target: target.into(),
        source: e,
    }
}

/// Convert OCI capability names to the caps crate's type.
pub fn to_caps(set: Option<&oci_spec::runtime::Capabilities>) -> Result<CapsHashSet, SandboxError> {
    let mut out = CapsHashSet::new();
    for c in set.into_iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let cap = Capability::from_str(&name)
            .map_err(|_| SandboxError::Spec(format!("unknown capability {name:?}")))?;
        out.insert(cap);
    }
    Ok(out)
}

/// Resolved capability sets, computed before fork so that the child only makes syscalls.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

impl CapSets {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<CapSets, SandboxError> {
        let Some(c) = c else {
            return Ok(CapSets::default());
        };
        Ok(CapSets {
            bounding: to_caps(c.bounding().as_ref())?,
            effective: to_caps(c.effective().as_ref())?,
            permitted: to_caps(c.permitted().as_ref())?,
            inheritable: to_caps(c.inheritable().as_ref())?,
            ambient: to_caps(c.ambient().as_ref())?,
        })
    }
}

/// A resolved rlimit (resource number, soft, hard).
pub type Rlimit = (libc::c_int, u64, u64);

pub fn rlimit_resource(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU as _,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE as _,
        "RLIMIT_DATA" => libc::RLIMIT_DATA as _,
        "RLIMIT_STACK" => libc::RLIMIT_STACK as _,
        "RLIMIT_CORE" => libc::RLIMIT_CORE as _,
        "RLIMIT_RSS" => libc::RLIMIT_RSS as _,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC as _,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE as _,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK as _,
        "RLIMIT_AS" => libc::RLIMIT_AS as _,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS as _,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING as _,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE as _,
        "RLIMIT_NICE" => libc::RLIMIT_NICE as _,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO as _,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME as _,
        _ => return None,
    })
}

pub fn rlimits_from_spec(r: Option<&Vec<PosixRlimit>>) -> Result<Vec<Rlimit>, SandboxError> {
    let mut out = Vec::new();
    for l in r.into_iter().flatten() {
        let name = serde_json::to_value(l.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let res = rlimit_resource(&name).ok_or_else(|| {
            SandboxError::Spec(format!("process.rlimits: unknown rlimit {name:?}"))
        })?;
        // The runtime spec: a duplicate type MUST be an error (which one would win is
        // otherwise an accident of the order they are applied in).
        if out.iter().any(|(r, _, _)| *r == res) {
            return Err(SandboxError::Spec(format!(
                "process.rlimits: {name} given more than once"
            )));
        }
        if l.soft() > l.hard() {
            return Err(SandboxError::Spec(format!(
                "process.rlimits: {name} soft limit {} is above its hard limit {}",
                l.soft(),
                l.hard()
            )));
        }
        out.push((res, l.soft(), l.hard()));
    }
    Ok(out)
}

/// Everything the child needs to become the sandboxed program, resolved before fork.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// PATH from the program's environment, for resolving a bare argv[0].
    pub path_var: String,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: CapSets,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub seccomp: Option<CompiledFilters>,
    pub oom_score_adj: Option<i32>,
    /// A connected Unix socket: install the sysinfo-notifying filter (views/sysinfo.rs) and
    /// send its listener there before exec, so the slice's supervisor answers sysinfo(2).
    pub sysinfo_to: Option<std::os::fd::RawFd>,
}

/// Set by the sandbox's intermediate process once it wrote oom_score_adj as host root; fork
/// copies it into init, whose [`ExecPlan::apply`] then leaves the inherited value alone.
pub(crate) static OOM_SCORE_ADJ_SET: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn cstrings(v: &[String], what: &str) -> Result<Vec<CString>, SandboxError> {
    v.iter()
        .map(|s| {
            CString::new(s.as_str())
                .map_err(|_| SandboxError::Spec(format!("{what}: NUL byte in {s:?}")))
        })
        .collect()
}

impl ExecPlan {
    pub fn from_process(
        p: &Process,
        seccomp: Option<CompiledFilters>,
    ) -> Result<ExecPlan, SandboxError> {
        let args = p.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err(SandboxError::Spec("process.args: empty".into()));
        }
        let env = p.env().clone().unwrap_or_default();
        let path_var = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
            .unwrap_or_else(|| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            });
        Ok(ExecPlan {
            argv: cstrings(&args, "process.args")?,
            env: cstrings(&env, "process.env")?,
            path_var,
            cwd: p.cwd().to_string_lossy().into_owned(),
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
            umask: p.user().umask(),
            caps: CapSets::from_spec(p.capabilities().as_ref())?,
            rlimits: rlimits_from_spec(p.rlimits().as_ref())?,
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            seccomp,
            oom_score_adj: p.oom_score_adj(),
            sysinfo_to: None,
        })
    }

    /// Set the rlimits. Called while still privileged on the host (before entering the user
    /// namespace): raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace,
    /// which the slice's root never has. The limits are inherited by everything it forks.
    pub fn apply_rlimits(&self) -> Result<(), SandboxError> {
        for &(res, soft, hard) in &self.rlimits {
            let mut lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: plain syscall with a valid struct.
            if unsafe { libc::setrlimit(res as _, &lim) } == 0 {
                continue;
            }
            // Without CAP_SYS_RESOURCE (some hosts drop it even for root) a hard limit can only
            // be lowered: keep the caller's hard limit as the ceiling rather than fail the slice.
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain syscalls with valid structs.
            let ok = unsafe { libc::getrlimit(res as _, &mut cur) } == 0 && {
                lim.rlim_max = lim.rlim_max.min(cur.rlim_max);
                lim.rlim_cur = lim.rlim_cur.min(lim.rlim_max);
                unsafe { libc::setrlimit(res as _, &lim) == 0 }
            };
            if !ok {
                return Err(sys_err(
                    "setrlimit",
                    format!("resource {res} soft {soft} hard {hard}"),
                    nix::Error::last(),
                ));
            }
        }
        Ok(())
    }

    /// Apply identity, capabilities, no_new_privs and seccomp (rlimits were applied earlier by
    /// [`ExecPlan::apply_rlimits`]), mark every inherited
    /// descriptor close-on-exec, and exec. Only returns on failure.
    pub fn exec(&self) -> SandboxError {
        match self.apply() {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    fn apply(&self) -> Result<std::convert::Infallible, SandboxError> {
        // First, while every capability is held (a filter needs CAP_SYS_ADMIN without
        // no_new_privs), and before the policy's filters, which may refuse seccomp(2).
        if let Some(sock) = self.sysinfo_to {
            let l =
                crate::views::sysinfo::install().map_err(|e| SandboxError::Child(e.to_string()))?;
            super::send_fd(sock, &l, "sysinfo")?;
            drop(l);
            let _ = nix::unistd::close(sock);
        }
        // Already set as host root before the user namespace (sandbox/mod.rs, then inherited
        // through fork): this process is non-dumpable, so its /proc files belong to host root
        // and opening one for writing from inside a user namespace fails (EACCES).
        if let Some(adj) = self.oom_score_adj {
            if !OOM_SCORE_ADJ_SET.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                    .map_err(|e| sys_err("write", "/proc/self/oom_score_adj", io_errno(&e)))?;
            }
        }
        // Bounding set first: dropping needs CAP_SETPCAP, which a non-root uid would lose.
        for cap in caps::all() {
            if !self.caps.bounding.contains(&cap)
                && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
            {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                    SandboxError::Spec(format!("drop {cap} from bounding set: {e}"))
                })?;
            }
        }
        // Keep permitted caps across the uid change; we set the final sets right after.
        nix::sys::prctl::set_keepcaps(true).map_err(|e| sys_err("prctl", "PR_SET_KEEPCAPS", e))?;
        let gids: Vec<Gid> = self
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids)
            .map_err(|e| sys_err("setgroups", format!("{:?}", self.additional_gids), e))?;
        let gid = Gid::from_raw(self.gid);
        nix::unistd::setresgid(gid, gid, gid)
            .map_err(|e| sys_err("setresgid", self.gid.to_string(), e))?;
        let uid = Uid::from_raw(self.uid);
        nix::unistd::setresuid(uid, uid, uid)
            .map_err(|e| sys_err("setresuid", self.uid.to_string(), e))?;
        let set = |which: CapSet, caps: &CapsHashSet| {
            caps::set(None, which, caps)
                .map_err(|e| SandboxError::Spec(format!("set {which:?} capabilities: {e}")))
        };
        // Without no_new_privs the kernel only accepts a filter from a process holding
        // CAP_SYS_ADMIN in its user namespace, so install it before capabilities are dropped
        // (runc does the same); the shipped profiles deny nothing used below.
        if !self.no_new_privileges {
            if let Some(f) = &self.seccomp {
                f.install()?;
            }
        }
        // Effective first: the kernel refuses a permitted set smaller than the effective one.
        let effective: CapsHashSet = self
            .caps
            .effective
            .intersection(&self.caps.permitted)
            .copied()
            .collect();
        set(CapSet::Effective, &effective)?;
        set(CapSet::Permitted, &self.caps.permitted)?;
        set(CapSet::Inheritable, &self.caps.inheritable)?;
        for cap in &self.caps.ambient {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(|e| SandboxError::Spec(format!("raise ambient {cap}: {e}")))?;
        }
        nix::sys::prctl::set_keepcaps(false).map_err(|e| sys_err("prctl", "PR_SET_KEEPCAPS", e))?;
        if let Some(mask) = self.umask {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        }
        nix::unistd::chdir(self.cwd.as_str()).map_err(|e| sys_err("chdir", &self.cwd, e))?;
        if self.no_new_privileges {
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| sys_err("prctl", "PR_SET_NO_NEW_PRIVS", e))?;
        }
        let program = self.resolve_program()?;
        reset_signals()?;
        super::sys::cloexec_from(3).map_err(|e| sys_err("close_range", "3..", e))?;
        // With no_new_privs, seccomp goes last: the filter may deny syscalls used above.
        if self.no_new_privileges {
            if let Some(f) = &self.seccomp {
                f.install()?;
            }
        }
        let e = nix::unistd::execve(&program, &self.argv, &self.env).unwrap_err();
        Err(sys_err("execve", program.to_string_lossy(), e))
    }

    fn resolve_program(&self) -> Result<CString, SandboxError> {
        let arg0 = self.argv[0].to_string_lossy().into_owned();
        if arg0.contains('/') {
            return Ok(self.argv[0].clone());
        }
        for dir in self.path_var.split(':').filter(|d| !d.is_empty()) {
            let candidate = format!("{dir}/{arg0}");
            if nix::unistd::access(candidate.as_str(), nix::unistd::AccessFlags::X_OK).is_ok() {
                return CString::new(candidate)
                    .map_err(|_| SandboxError::Spec("NUL in PATH".into()));
            }
        }
        Err(sys_err(
            "execve",
            format!("{arg0} (not found in PATH {})", self.path_var),
            nix::Error::ENOENT,
        ))
    }
}

pub fn io_errno(e: &std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Ignored signals and the blocked mask survive execve, and whoever launches a slice program
/// may have left some: Rust ignores SIGPIPE before main, some of our processes block signals
/// to handle them synchronously, and glibc's posix_spawn (behind std's Command) leaves its
/// internal signals 32 and 33 ignored in the spawned program. Without this a slice's
/// `yes | head` would print "Broken pipe" errors instead of ending quietly, and a blocked
/// SIGTERM would never stop its service. crun resets every signal too.
fn reset_signals() -> Result<(), SandboxError> {
    use nix::sys::signal::{SigSet, SigmaskHow};
    // The kernel's struct sigaction (x86_64, arm64). The raw syscall, because glibc's
    // sigaction() refuses to touch its internal signals 32 and 33.
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::sighandler_t,
        flags: libc::c_ulong,
        restorer: libc::sighandler_t,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signo in 1..=64 {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installs SIG_DFL from a valid struct of the kernel's layout; no code runs.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            )
        };
        if r != 0 {
            return Err(sys_err(
                "rt_sigaction",
                signo.to_string(),
                nix::Error::last(),
            ));
        }
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| sys_err("sigprocmask", "SIG_SETMASK", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: serde_json::Value) -> Result<Vec<Rlimit>, SandboxError> {
        let v: Vec<PosixRlimit> = serde_json::from_value(json).expect("rlimits JSON");
        rlimits_from_spec(Some(&v))
    }

    #[test]
    fn rlimits_duplicates_and_inverted_limits_are_spec_errors() {
        let ok = limits(serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]))
        .expect("valid rlimits");
        assert_eq!(
            ok,
            vec![
                (libc::RLIMIT_NOFILE as _, 10, 20),
                (libc::RLIMIT_CORE as _, 0, 0)
            ]
        );
        let e = limits(serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2},
            {"type": "RLIMIT_NOFILE", "soft": 3, "hard": 4}
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("process.rlimits") && e.contains("RLIMIT_NOFILE"),
            "{e}"
        );
        let e = limits(serde_json::json!([{"type": "RLIMIT_NPROC", "soft": 5, "hard": 4}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("soft limit 5 is above its hard limit 4"), "{e}");
    }
}
