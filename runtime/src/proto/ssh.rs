//! Wire types of SSH access: the keys routes of the HTTP API (`/v1/slices/{name}/keys`), and
//! the line protocol between `vsh` (the slice accounts' login shell) and the daemon's SSH
//! socket (newline-delimited JSON; the first request carries the session's file descriptors
//! with SCM_RIGHTS).
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The default socket `vsh` talks to (only slice accounts and the keys user get answers).
pub const DEFAULT_SSH_SOCKET: &str = "/run/vslice/ssh/vsh.sock";

/// `POST /v1/slices/{name}/keys` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyAdd {
    /// One public key in authorized_keys format: `TYPE BASE64 [COMMENT]` (no options).
    #[schema(
        example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0hb2dzZWNyZXRrZXlzYXJlbm90aGVyZQ alice@laptop"
    )]
    pub key: String,
}

/// One authorized key of a slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SshKey {
    /// `SHA256:` and the unpadded base64 of the key blob's SHA-256 (as `ssh-keygen -l` prints).
    #[schema(example = "SHA256:2tC0mLz5JGMbgxkPLIh0BVYDrwLjZ8FvXJaBk4Xvq4U")]
    pub fingerprint: String,
    /// Key type, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// The key blob, base64 (as in authorized_keys).
    pub key: String,
    /// The comment given with the key (may be empty).
    pub comment: String,
    /// When it was added (RFC 3339, UTC).
    pub added_at: String,
}

/// What `vsh` asks the daemon (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum VshRequest {
    /// sshd's AuthorizedKeysCommand: the authorized_keys lines of the slice whose account is
    /// `user`. Answered to the configured keys user (and root) only.
    Keys { user: String },
    /// A login. Sent with SCM_RIGHTS carrying stdin, stdout, stderr (`tty` false) or the one
    /// terminal sshd made (`tty` true). The slice is the one whose account the peer's uid is.
    Session {
        /// SSH_ORIGINAL_COMMAND (none: a login shell).
        command: Option<String>,
        tty: bool,
        /// TERM of the client's terminal.
        term: Option<String>,
        cols: u16,
        rows: u16,
        /// SSH_CONNECTION: `client_addr client_port server_addr server_port`.
        connection: Option<String>,
        /// The content of the SSH_USER_AUTH file (ExposeAuthInfo): the methods and the key.
        auth_info: Option<String>,
    },
    /// The client's window changed (sent by vsh on SIGWINCH during a tty session).
    Resize { cols: u16, rows: u16 },
}

/// What the daemon answers (one JSON line each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum VshReply {
    /// The keys, one authorized_keys line each.
    Keys { lines: Vec<String> },
    /// The session started (its id is on the audit record).
    Started { session: String },
    /// The session's command ended with this code (128+N if killed by signal N).
    Exit { exit_code: i32 },
    /// Refused or failed; `message` is for the user's terminal.
    Error { message: String },
}
