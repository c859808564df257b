//! Request and reply bodies of the HTTP API that are not slice types themselves (those are
//! [`crate::slice`]'s, serialized as they are). Shared by the daemon and [`crate::client`].
use serde::{Deserialize, Serialize};

pub use crate::audit::{Head, Problem, Record as AuditRecord, VerifyReport};
pub use crate::daemon::events::{Event, EventKind};
pub use crate::image::Image;

/// Every error reply: `{code, message, field}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code: `not_found`, `already_exists`, `invalid`, `conflict`,
    /// `forbidden`, `start_failed`, `internal`, `no_route`, `method_not_allowed`,
    /// `audit_failed`, `payload_too_large`.
    pub code: String,
    pub message: String,
    /// The request field the error is about (JSON path, e.g. `limits.memory_max`), or null.
    pub field: Option<String>,
}

/// `POST /v1/slices/{name}/exec` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecInput {
    pub argv: Vec<String>,
    /// `NAME=value` entries added to the slice's default environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// Standard input, UTF-8 text.
    pub stdin: Option<String>,
    /// Standard input, base64 (for binary input; takes precedence over `stdin`).
    pub stdin_base64: Option<String>,
    /// Kill the command after this many seconds (exit code 137).
    pub timeout_secs: Option<u64>,
}

/// `POST /v1/slices/{name}/exec` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// The command's exit code (128+N if killed by signal N; 126 could not run, 127 not found).
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// How `stdout` and `stderr` are encoded: `utf8` when both are valid UTF-8 (and the
    /// request did not ask for `?encoding=base64`), otherwise `base64`.
    pub encoding: String,
    /// Output beyond the daemon's `exec_output_limit` was dropped.
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub timed_out: bool,
}

impl ExecOutput {
    /// Decoded stdout bytes.
    pub fn stdout_bytes(&self) -> Result<Vec<u8>, String> {
        decode_output(&self.encoding, &self.stdout)
    }
    /// Decoded stderr bytes.
    pub fn stderr_bytes(&self) -> Result<Vec<u8>, String> {
        decode_output(&self.encoding, &self.stderr)
    }
}

fn decode_output(encoding: &str, s: &str) -> Result<Vec<u8>, String> {
    match encoding {
        "base64" => b64::decode(s),
        _ => Ok(s.as_bytes().to_vec()),
    }
}

/// Text frame sent by the client on the tty WebSocket to resize the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    pub cols: u16,
    pub rows: u16,
}

/// Final text frame the daemon sends on the tty WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyExit {
    pub exit_code: i32,
}

/// `GET /v1/slices/{name}/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub slice: String,
    pub time: String,
    pub status: crate::slice::Status,
    pub init_pid: Option<i32>,
    pub started_at: Option<u64>,
    pub limits: crate::slice::Limits,
    /// Null when the slice is not running.
    pub usage: Option<crate::cgroup::Usage>,
}

/// `GET /v1/info`: the daemon and who is asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub version: String,
    pub api: String,
    pub pid: u32,
    pub started_at: u64,
    pub root: String,
    pub cgroup_parent: String,
    pub cgroup_version: String,
    pub caller: CallerInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerInfo {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    pub user: Option<String>,
    pub operator: bool,
}

/// Minimal standard base64 (RFC 4648, with padding) for exec I/O.
pub mod b64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(s: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(s.len() / 4 * 3);
        let mut acc = 0u32;
        let mut bits = 0;
        for (i, c) in s.bytes().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' | b'-' => 62,
                b'/' | b'_' => 63,
                b'=' => break,
                b'\n' | b'\r' | b' ' => continue,
                _ => return Err(format!("invalid base64 character at {i}")),
            };
            acc = acc << 6 | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips() {
            for (plain, enc) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(super::encode(plain.as_bytes()), enc);
                assert_eq!(super::decode(enc).unwrap(), plain.as_bytes());
            }
            let bin: Vec<u8> = (0..=255).collect();
            assert_eq!(super::decode(&super::encode(&bin)).unwrap(), bin);
            assert!(super::decode("a*b").is_err());
        }
    }
}
