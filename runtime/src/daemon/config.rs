//! The daemon's configuration file (`/etc/vslice/vslice.toml`). Every key is optional; the
//! defaults below are documented in `dist/vslice.toml.example` and `docs/daemon.md`.
//! Precedence: command-line flag > environment variable > config file > default.
use crate::config::Paths;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/vslice/vslice.toml";
pub use crate::proto::{DEFAULT_SOCKET, DEFAULT_USER_SOCKET};
pub const DEFAULT_ADMIN_GROUP: &str = "vslice-admin";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// `/etc/vslice/vslice.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The operators' API socket: root:`admin_group`, mode `socket_mode`.
    pub socket: PathBuf,
    /// Octal permission bits of `socket` (when `admin_group` exists; else 0600).
    pub socket_mode: String,
    /// The socket for everyone else (slice owners): mode 0666, serving only the routes owners
    /// may use (inspect, stats, exec, enter, events). Empty: not created.
    pub user_socket: PathBuf,
    /// Members of this group (and root) are operators; it also owns `socket`.
    pub admin_group: String,
    /// State root (slice specs and state, audit log, images). Default `/var/lib/vslice`.
    pub root: Option<PathBuf>,
    /// Cgroup parent name at the root of every hierarchy. Default `vslice`.
    pub cgroup_parent: Option<String>,
    /// Policy directory. Default `/usr/share/vslice/policies` (or `policies/` of a checkout).
    pub policy_dir: Option<PathBuf>,
    /// The shim binary. Default: `vslice-shim` next to `vsliced`, else /usr/local/bin.
    pub shim: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when stopping a slice (per-request `?timeout=`).
    pub stop_timeout: u64,
    /// How often slice state is polled for events (exits, OOM kills), in milliseconds.
    pub events_poll_ms: u64,
    /// Events kept in memory for `GET /v1/events?since=`.
    pub event_history: usize,
    /// Audit log segment size in bytes before a new segment is started.
    pub audit_segment_bytes: u64,
    /// Bytes of stdout and of stderr a non-interactive exec returns (the rest is dropped).
    pub exec_output_limit: usize,
    /// Also serve `GET /metrics` (only that) on this TCP address, e.g. "127.0.0.1:9477".
    /// Empty: off.
    pub metrics_listen: String,
    /// Start the slices marked `autostart` that are not running when the daemon starts.
    pub autostart: bool,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Record every flow of every slice from conntrack (the flow log; `vslice who`).
    pub flow_log: bool,
    /// Seconds between listings of live flows (long-lived flows are on record at least this
    /// often; also the slack of `who` queries).
    pub flow_dump_interval: u64,
    /// Days of flow (and later exec, session) records kept; 0: forever.
    pub audit_retention_days: u32,
    /// Free bytes the flow log leaves on the state root's file system: below this, flow
    /// records are dropped (and counted) so that control records still fit.
    pub audit_reserve_bytes: u64,
    /// Also record what is typed in interactive sessions (the output, including the echo of
    /// what is typed, is always recorded; passwords end up in input recordings).
    pub session_record_input: bool,
    /// For tests of the daemon only: serve `POST /v1/debug/panic` on the operators' socket, a
    /// route whose handler panics (the daemon must answer 500 and keep serving). Off by
    /// default; never turn it on in production.
    pub test_panic_route: bool,
    /// SSH access (README "SSH access"): the socket `vsh` hands sessions to. Empty: off.
    pub ssh_socket: PathBuf,
    /// Primary group of the slices' host accounts (the sshd drop-in's `Match Group`).
    pub ssh_group: String,
    /// Login shell of the slices' host accounts: the `vsh` binary.
    pub ssh_shell: PathBuf,
    /// The user sshd runs the AuthorizedKeysCommand as (AuthorizedKeysCommandUser): the only
    /// one besides root that may ask the SSH socket for a slice's keys.
    pub ssh_keys_user: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            socket: PathBuf::from(DEFAULT_SOCKET),
            socket_mode: "0660".into(),
            user_socket: PathBuf::from(DEFAULT_USER_SOCKET),
            admin_group: DEFAULT_ADMIN_GROUP.into(),
            root: None,
            cgroup_parent: None,
            policy_dir: None,
            shim: None,
            stop_timeout: 10,
            events_poll_ms: 500,
            event_history: 1000,
            audit_segment_bytes: crate::audit::DEFAULT_SEGMENT_BYTES,
            exec_output_limit: 16 << 20,
            metrics_listen: String::new(),
            autostart: true,
            log: "info".into(),
            log_format: "text".into(),
            test_panic_route: false,
            ssh_socket: PathBuf::from(crate::proto::ssh::DEFAULT_SSH_SOCKET),
            ssh_group: "vslice-ssh".into(),
            ssh_shell: PathBuf::from("/usr/local/bin/vsh"),
            ssh_keys_user: "vslice-sshkeys".into(),
            session_record_input: false,
            flow_log: true,
            flow_dump_interval: 300,
            audit_retention_days: 90,
            audit_reserve_bytes: crate::audit::records::DEFAULT_RESERVE_BYTES,
        }
    }
}

impl Config {
    /// The host account settings of SSH access.
    pub fn ssh_accounts(&self) -> crate::ssh::account::Settings {
        crate::ssh::account::Settings {
            group: self.ssh_group.clone(),
            shell: self.ssh_shell.clone(),
        }
    }

    /// Parse TOML text.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Load `path`. A missing file is an error only when `required` (given explicitly);
    /// otherwise the defaults apply.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.socket_mode_bits()?;
        if self.socket.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "socket",
                reason: "must not be empty".into(),
            });
        }
        if let Some(p) = &self.cgroup_parent {
            if p.is_empty() || p.contains('/') || p == "." || p == ".." {
                return Err(ConfigError::Invalid {
                    key: "cgroup_parent",
                    reason: "must be a single path component".into(),
                });
            }
        }
        if self.events_poll_ms < 50 {
            return Err(ConfigError::Invalid {
                key: "events_poll_ms",
                reason: "must be at least 50".into(),
            });
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                key: "log_format",
                reason: "must be \"text\" or \"json\"".into(),
            });
        }
        if !self.metrics_listen.is_empty()
            && self.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid {
                key: "metrics_listen",
                reason: "must be an address like 127.0.0.1:9477".into(),
            });
        }
        Ok(())
    }

    pub fn socket_mode_bits(&self) -> Result<u32, ConfigError> {
        let s = self.socket_mode.trim_start_matches("0o");
        match u32::from_str_radix(s, 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => Err(ConfigError::Invalid {
                key: "socket_mode",
                reason: format!("{:?} is not an octal mode like \"0660\"", self.socket_mode),
            }),
        }
    }

    /// The library paths: environment / defaults (`Paths::from_env`) overridden by the file.
    /// The daemon binary then applies its flags on top.
    pub fn paths(&self) -> Paths {
        let mut paths = Paths::from_env();
        let env_set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        if let (Some(root), false) = (&self.root, env_set("VSLICE_ROOT")) {
            paths.root = root.clone();
        }
        if let (Some(cg), false) = (&self.cgroup_parent, env_set("VSLICE_CGROUP_PARENT")) {
            paths.cgroup_parent = cg.clone();
        }
        if let (Some(p), false) = (&self.policy_dir, env_set("VSLICE_POLICY_DIR")) {
            paths.policy_dir = p.clone();
        }
        if let (Some(s), false) = (&self.shim, env_set("VSLICE_SHIM")) {
            paths.shim = s.clone();
        }
        paths
    }

    /// `user_socket`, unless disabled.
    pub fn user_socket(&self) -> Option<&Path> {
        (!self.user_socket.as_os_str().is_empty()).then_some(self.user_socket.as_path())
    }

    /// The SSH socket, unless SSH access is off.
    pub fn ssh_socket(&self) -> Option<&Path> {
        (!self.ssh_socket.as_os_str().is_empty()).then_some(self.ssh_socket.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(
            Config::parse("", Path::new("x")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        // The example documents every key with its default value.
        let text = include_str!("../../../dist/vslice.toml.example");
        let uncommented: String = text
            .lines()
            .map(|l| {
                let setting = l.strip_prefix("# ").filter(|r| {
                    r.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    })
                });
                setting.unwrap_or(l)
            })
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let cfg = Config::parse(&uncommented, Path::new("example")).unwrap();
        let want = Config {
            root: Some("/var/lib/vslice".into()),
            cgroup_parent: Some("vslice".into()),
            policy_dir: Some("/usr/share/vslice/policies".into()),
            shim: Some("/usr/local/bin/vslice-shim".into()),
            ..Default::default()
        };
        assert_eq!(cfg, want);
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let e = Config::parse("socket_mode = \"999\"", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("socket_mode"), "{e}");
        let e = Config::parse("cgroup_parent = \"a/b\"", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("cgroup_parent"), "{e}");
        let e = Config::parse("no_such_key = 1", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("no_such_key"), "{e}");
        let e = Config::parse("metrics_listen = \"localhost\"", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("metrics_listen"), "{e}");
        assert_eq!(
            Config::parse("socket_mode = \"0600\"", Path::new("x"))
                .unwrap()
                .socket_mode_bits()
                .unwrap(),
            0o600
        );
    }

    #[test]
    fn missing_file_is_an_error_only_when_required() {
        assert!(Config::load(Path::new("/nonexistent/vslice.toml"), false).is_ok());
        assert!(Config::load(Path::new("/nonexistent/vslice.toml"), true).is_err());
    }
}
