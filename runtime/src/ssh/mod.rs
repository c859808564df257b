//! Developer access over SSH (docs/design.md "SSH access"): OpenSSH authenticates, vslice
//! decides. Each slice with SSH access has a host account named like the slice (primary group
//! `ssh_group`, login shell `vsh`, no password, no home); sshd asks the daemon for the slice's
//! keys (AuthorizedKeysCommand → `vsh --authorized-keys`), and `vsh` hands the session's file
//! descriptors to the daemon, which runs the command inside the slice (api/vsh.rs).
//!
//! * [`keys`]: parsing, fingerprints and the per-slice key store (`<slice dir>/ssh-keys.json`,
//!   removed with the slice).
//! * [`account`]: the host accounts (useradd/userdel).
pub mod account;
pub mod keys;

/// Errors of SSH access management.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// A request field is wrong (`field` is its name).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("key {0} is already authorized for this slice")]
    Duplicate(String),
    #[error("no key with fingerprint {0:?} is authorized for this slice")]
    NoSuchKey(String),
    /// The host account cannot be made or used.
    #[error("host account {name:?}: {reason}")]
    Account { name: String, reason: String },
    #[error("{0}")]
    Io(#[from] crate::util::fs::PathError),
}

impl SshError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> SshError {
        SshError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
