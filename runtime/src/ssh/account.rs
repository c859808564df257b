//! Host accounts of slices with SSH access: one per slice, named like the slice, primary group
//! `group`, login shell `vsh`, password field `*` (no password can match, yet the account is
//! not "locked" for public-key logins), home `/` (never created nor removed).
//!
//! We run shadow-utils' useradd/userdel/groupadd: they take the user database locks
//! (lckpwdf) and keep passwd, shadow, group and gshadow consistent. No maintained crate edits
//! the user database with those locks (the `users` crate only reads it), so a crate would
//! mean reimplementing shadow-utils' locking.
use super::SshError;
use nix::unistd::{Group, User};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// useradd's limit on user names.
pub const MAX_NAME: usize = 32;

/// What the host account settings are (from the daemon config).
#[derive(Debug, Clone)]
pub struct Settings {
    pub group: String,
    pub shell: std::path::PathBuf,
}

fn err(name: &str, reason: impl Into<String>) -> SshError {
    SshError::Account {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Run a shadow-utils command, retried a few times: they fail (rather than wait) when another
/// process holds the user database lock for long, e.g. concurrent useradds on the node.
fn run_retried(name: &str, cmd: &mut Command) -> Result<(), SshError> {
    let mut last = None;
    for _ in 0..5 {
        match run(name, cmd) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last.unwrap_or_else(|| err(name, "failed")))
}

fn run(name: &str, cmd: &mut Command) -> Result<(), SshError> {
    let out = cmd
        .output()
        .map_err(|e| err(name, format!("running {cmd:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(
            name,
            format!(
                "{:?} failed ({}): {}",
                cmd.get_program(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

/// Whether the host user `u` is a slice account made with `s`.
fn is_ours(u: &User, gid: u32, s: &Settings) -> bool {
    u.gid.as_raw() == gid && u.shell == s.shell
}

fn group_gid(group: &str) -> Option<u32> {
    Group::from_name(group)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// Make sure the slice's account exists; returns its uid. Refuses to adopt a host user of
/// that name that is not a slice account.
pub fn ensure(name: &str, s: &Settings) -> Result<u32, SshError> {
    if name.len() > MAX_NAME {
        return Err(SshError::invalid(
            "name",
            format!(
                "SSH access needs a slice name of at most {MAX_NAME} characters (host user names)"
            ),
        ));
    }
    let gid = match group_gid(&s.group) {
        Some(g) => g,
        None => {
            let made = run_retried(
                &s.group,
                Command::new("groupadd").arg("--system").arg(&s.group),
            );
            // Made meanwhile by someone else is fine.
            if let (Err(e), None) = (made, group_gid(&s.group)) {
                return Err(e);
            }
            group_gid(&s.group).ok_or_else(|| err(&s.group, "group missing after groupadd"))?
        }
    };
    match User::from_name(name) {
        Ok(Some(u)) if is_ours(&u, gid, s) => return Ok(u.uid.as_raw()),
        Ok(Some(u)) => {
            return Err(err(
                name,
                format!(
                    "a host user of that name already exists (uid {}) and is not a slice account: SSH access cannot be given to this slice",
                    u.uid
                ),
            ))
        }
        Ok(None) => {}
        Err(e) => return Err(err(name, format!("user database: {e}"))),
    }
    run_retried(name, &mut useradd(name, s))?;
    User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
        .ok_or_else(|| err(name, "missing after useradd"))
}

fn useradd(name: &str, s: &Settings) -> Command {
    let mut c = Command::new("useradd");
    c.args(["--system", "--no-create-home", "--no-user-group"])
        .args(["--home-dir", "/", "--password", "*"])
        .arg("--gid")
        .arg(&s.group)
        .arg("--shell")
        .arg(&s.shell)
        .arg("--comment")
        .arg(format!("vslice slice {name}"))
        .arg(name);
    c
}

/// The slice a uid is the account of: its user name, if that user is a slice account.
pub fn slice_of(uid: u32, s: &Settings) -> Option<String> {
    let gid = group_gid(&s.group)?;
    let u = User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    is_ours(&u, gid, s).then_some(u.name)
}

/// Remove the slice's account if it is one (a no-op otherwise). userdel refuses while the
/// account still has processes (sessions ending as the slice goes away): retried briefly.
pub fn remove(name: &str, s: &Settings) -> Result<bool, SshError> {
    let Some(gid) = group_gid(&s.group) else {
        return Ok(false);
    };
    match User::from_name(name) {
        Ok(Some(u)) if is_ours(&u, gid, s) => {}
        _ => return Ok(false),
    }
    let mut last = None;
    for _ in 0..20 {
        // No --remove: the home is `/`. No --force: it would remove a home.
        match run(name, Command::new("userdel").arg(name)) {
            Ok(()) => return Ok(true),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    Err(last.unwrap_or_else(|| err(name, "userdel failed")))
}

/// Slice accounts (members by primary group, with our shell) whose slice has no SSH access
/// any more (`slices_dir/<name>/ssh-keys.json` missing): left by a slice destroyed while the
/// daemon was down, or in direct mode.
pub fn orphans(slices_dir: &Path, s: &Settings) -> Vec<String> {
    let Some(gid) = group_gid(&s.group) else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string("/etc/passwd") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(':').next())
        .filter_map(|n| User::from_name(n).ok().flatten())
        .filter(|u| is_ours(u, gid, s))
        .filter(|u| !super::keys::enabled(&slices_dir.join(&u.name)))
        .map(|u| u.name)
        .collect()
}
