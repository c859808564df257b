//! Who is calling: SO_PEERCRED of the connection, resolved to a user name and to whether the
//! caller is an operator (uid 0, or a member of the admin group in the user database:
//! primary group or listed in the group file, as `getgrouplist(3)` sees it).
//!
//! Operators may do everything. A slice's owners (host user names — or numeric uids — in
//! `spec.owners`) may inspect, exec into, enter and follow the events of that slice. Nobody
//! else may do anything except read the API description.
use nix::unistd::{getgrouplist, Gid, Group, Uid, User};
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Credentials of the peer of a Unix socket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// An identified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Host user name, if the uid has one.
    pub user: Option<String>,
    pub operator: bool,
}

impl Caller {
    /// The caller as recorded in the audit log.
    pub fn audit(&self) -> crate::audit::Caller {
        crate::audit::Caller {
            uid: self.uid,
            user: self.user.clone(),
            pid: self.pid,
            mode: None,
        }
    }

    /// Whether the caller is one of `owners` (user names or numeric uids).
    pub fn is_owner(&self, owners: &[String]) -> bool {
        owners.iter().any(|o| {
            self.user.as_deref() == Some(o.as_str())
                || o.parse::<u32>().is_ok_and(|u| u == self.uid)
        })
    }

    /// Operators, and owners of a slice with these `owners`.
    pub fn may_use_slice(&self, owners: &[String]) -> bool {
        self.operator || self.is_owner(owners)
    }

    /// A short description for logs and messages: `alice (uid 1000)`.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("{u} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

#[derive(Debug, Clone)]
struct Cached {
    at: Instant,
    user: Option<String>,
    operator: bool,
}

/// Resolves peers to callers, caching user-database answers for a couple of seconds (a
/// group change takes effect within `ttl`).
#[derive(Debug)]
pub struct Authenticator {
    admin_group: String,
    ttl: Duration,
    cache: Mutex<HashMap<(u32, u32), Cached>>,
}

impl Authenticator {
    pub fn new(admin_group: &str) -> Authenticator {
        Authenticator {
            admin_group: admin_group.to_string(),
            ttl: Duration::from_secs(2),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn admin_group(&self) -> &str {
        &self.admin_group
    }

    /// Identify a peer. Blocking (user database lookups); call from a blocking thread.
    pub fn identify(&self, peer: Peer) -> Caller {
        let key = (peer.uid, peer.gid);
        if let Ok(cache) = self.cache.lock() {
            if let Some(c) = cache.get(&key) {
                if c.at.elapsed() < self.ttl {
                    return Caller {
                        uid: peer.uid,
                        gid: peer.gid,
                        pid: peer.pid,
                        user: c.user.clone(),
                        operator: c.operator,
                    };
                }
            }
        }
        let (user, operator) = resolve(&self.admin_group, peer.uid, peer.gid);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(
                key,
                Cached {
                    at: Instant::now(),
                    user: user.clone(),
                    operator,
                },
            );
        }
        Caller {
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
            user,
            operator,
        }
    }

    /// Identify without the user database (for tests of the decision logic).
    pub fn caller_from_parts(uid: u32, user: Option<&str>, operator: bool) -> Caller {
        Caller {
            uid,
            gid: uid,
            pid: None,
            user: user.map(str::to_string),
            operator,
        }
    }
}

/// The gid of the admin group, if it exists.
pub fn admin_gid(group: &str) -> Option<u32> {
    Group::from_name(group)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

fn resolve(admin_group: &str, uid: u32, gid: u32) -> (Option<String>, bool) {
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let name = user.as_ref().map(|u| u.name.clone());
    if uid == 0 {
        return (name, true);
    }
    let Some(admin) = admin_gid(admin_group) else {
        return (name, false);
    };
    if gid == admin {
        return (name, true);
    }
    let member = match &user {
        Some(u) if u.gid.as_raw() == admin => true,
        Some(u) => CString::new(u.name.as_bytes())
            .ok()
            .and_then(|c| getgrouplist(&c, u.gid).ok())
            .is_some_and(|groups| groups.contains(&Gid::from_raw(admin))),
        None => false,
    };
    (name, member)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_an_operator() {
        let a = Authenticator::new("vslice-no-such-group-xyz");
        let c = a.identify(Peer {
            uid: 0,
            gid: 0,
            pid: Some(1),
        });
        assert!(c.operator);
        assert_eq!(c.user.as_deref(), Some("root"));
        assert_eq!(c.audit().pid, Some(1));
    }

    #[test]
    fn nobody_without_group_is_not_an_operator() {
        let a = Authenticator::new("vslice-no-such-group-xyz");
        let c = a.identify(Peer {
            uid: 65534,
            gid: 65534,
            pid: None,
        });
        assert!(!c.operator);
        // A group that exists and whose gid is the peer's gid makes an operator.
        let a = Authenticator::new("root");
        assert!(
            a.identify(Peer {
                uid: 65534,
                gid: 0,
                pid: None
            })
            .operator
        );
    }

    #[test]
    fn ownership_by_name_or_uid() {
        let c = Authenticator::caller_from_parts(1001, Some("alice"), false);
        assert!(c.is_owner(&["bob".into(), "alice".into()]));
        assert!(c.is_owner(&["1001".into()]));
        assert!(!c.is_owner(&["bob".into(), "1002".into()]));
        assert!(!c.may_use_slice(&[]));
        assert!(Authenticator::caller_from_parts(5, None, true).may_use_slice(&[]));
        assert_eq!(c.describe(), "alice (uid 1001)");
    }
}
