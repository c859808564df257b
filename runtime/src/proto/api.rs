//! Request and reply bodies and query parameters of the HTTP API that are not slice, event,
//! audit or image types themselves.
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Every error reply: `{code, message, field}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// Stable machine-readable code: `not_found`, `already_exists`, `invalid`, `conflict`,
    /// `forbidden`, `start_failed`, `exec_failed`, `internal`, `no_route`,
    /// `method_not_allowed`, `audit_failed`, `payload_too_large`, …
    #[schema(example = "invalid")]
    pub code: String,
    pub message: String,
    /// The request field the error is about (JSON path, e.g. `limits.memory_max`, or a query
    /// parameter), or null.
    #[schema(example = "limits.memory_max")]
    pub field: Option<String>,
}

/// `POST /v1/slices/{name}/exec` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExecInput {
    /// The command and its arguments (required, not empty).
    pub argv: Vec<String>,
    /// `NAME=value` entries added to the slice's default environment.
    pub env: Vec<String>,
    /// Working directory inside the slice.
    pub cwd: Option<String>,
    /// Standard input, UTF-8 text.
    pub stdin: Option<String>,
    /// Standard input, base64 (for binary input; takes precedence over `stdin`).
    #[schema(content_encoding = "base64")]
    pub stdin_base64: Option<String>,
    /// Kill the command after this many seconds (exit code 137).
    pub timeout_secs: Option<u64>,
}

/// How [`ExecOutput`]'s `stdout` and `stderr` are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputEncoding {
    Utf8,
    Base64,
}

/// `POST /v1/slices/{name}/exec` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecOutput {
    /// The command's exit code (128+N if killed by signal N; 126 could not run, 127 not found).
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// How `stdout` and `stderr` are encoded: `utf8` when both are valid UTF-8 (and the
    /// request did not ask for `?encoding=base64`), otherwise `base64`.
    #[schema(value_type = OutputEncoding)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resize {
    pub cols: u16,
    pub rows: u16,
}

/// Final text frame the daemon sends on the tty WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TtyExit {
    pub exit_code: i32,
}

/// `GET /v1/slices/{name}/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    pub slice: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub time: String,
    pub status: crate::proto::slice::Status,
    pub init_pid: Option<i32>,
    /// Seconds since the epoch.
    pub started_at: Option<u64>,
    pub limits: crate::proto::slice::Limits,
    /// Null when the slice is not running.
    pub usage: Option<crate::proto::slice::Usage>,
    /// Disk usage of a slice with a disk quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<crate::proto::disk::DiskUsage>,
}

/// `GET /v1/info`: the daemon and who is asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Info {
    pub version: String,
    /// API version (`v1`).
    pub api: String,
    pub pid: u32,
    /// Seconds since the epoch.
    pub started_at: u64,
    pub root: String,
    pub cgroup_parent: String,
    /// `v1`, `v2` or `hybrid`.
    pub cgroup_version: String,
    pub caller: CallerInfo,
}

/// Who the daemon thinks the caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallerInfo {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    pub user: Option<String>,
    /// Root or a member of the admin group.
    pub operator: bool,
}

/// Query of `POST /v1/slices/{name}/stop` and `/restart`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct StopQuery {
    /// Seconds between SIGTERM and SIGKILL, 0..=3600 (default: the daemon's stop_timeout).
    #[param(minimum = 0, maximum = 3600)]
    pub timeout: Option<f64>,
}

/// Query of `POST /v1/slices/{name}/exec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ExecQuery {
    /// `auto` (default: utf8 if the output is valid UTF-8) or `base64`.
    #[param(pattern = "^(auto|base64)$", example = "base64")]
    pub encoding: Option<String>,
}

/// Query of `GET /v1/slices/{name}/exec/tty` (the WebSocket).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct TtyQuery {
    /// Command and arguments, one `cmd=` per word, in order (default `/bin/sh -l`).
    #[param(style = Form, explode)]
    pub cmd: Vec<String>,
    /// `NAME=value`, repeatable.
    #[param(style = Form, explode)]
    pub env: Vec<String>,
    /// Working directory inside the slice.
    pub cwd: Option<String>,
    /// Initial terminal width (default 80).
    pub cols: Option<u16>,
    /// Initial terminal height (default 24).
    pub rows: Option<u16>,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct EventsQuery {
    /// Only this slice.
    pub slice: Option<String>,
    /// First send buffered events with a larger seq (0: all buffered).
    pub since: Option<u64>,
    /// Keep the stream open (default true); false: buffered events only.
    pub follow: Option<bool>,
    /// Comma-separated event types (`created,started,exited,oom,limits-changed,destroyed`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub types: Option<String>,
}

/// Query of `GET /v1/images`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ImagesQuery {
    /// Compute each image's disk usage (walks the tree).
    pub size: Option<bool>,
}

/// Query of `GET /v1/audit`: which records to read. Times: RFC 3339, `YYYY-MM-DD` or epoch
/// seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct AuditQuery {
    /// Only this slice.
    pub slice: Option<String>,
    /// Only this action (create, start, stop, restart, update_limits, destroy, exec,
    /// exec_end) or daemon event.
    pub action: Option<String>,
    /// Only this record kind (control, daemon).
    pub kind: Option<String>,
    /// From this time.
    pub since: Option<String>,
    /// Up to this time.
    pub until: Option<String>,
    /// Only records with a larger seq.
    pub after_seq: Option<u64>,
    /// At most this many records.
    pub limit: Option<usize>,
    /// With `limit`: the last records instead of the first.
    pub tail: bool,
}

/// Standard base64 (RFC 4648, with padding) for exec I/O, via the `base64` crate. Decoding
/// also takes input without padding and with line breaks (what `base64(1)` writes).
pub mod b64 {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::Engine;

    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );

    pub fn encode(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    pub fn decode(s: &str) -> Result<Vec<u8>, String> {
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        LENIENT
            .decode(compact)
            .map_err(|e| format!("invalid base64: {e}"))
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
            assert_eq!(super::decode("Zm9v\nYmE").unwrap(), b"fooba");
            assert!(super::decode("a*b").is_err());
        }
    }
}
