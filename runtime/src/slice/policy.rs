//! Operator policies (policies/<name>.toml): what a slice may be given (limit maxima,
//! capabilities, seccomp profiles, rlimits, masked and read-only paths). The slice layer turns a
//! policy plus a slice spec into the OCI spec the sandbox runs (slice/oci.rs).
//!
//! The TOML schema is documented at the top of `policies/default.toml`. Loading validates every
//! field; an error names the policy, the field and the reason, e.g.
//! `policy "strict": capabilities[3]: unknown capability "CAP_FOO"`.
use crate::util::fs::IoContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {name:?}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("{0}")]
    Io(#[from] crate::util::fs::PathError),
}

/// A process resource limit, OCI names (`RLIMIT_NOFILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlimitEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// Upper bounds an operator allows for a slice's limits under this policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maxima {
    pub cpu_max: Option<f64>,
    pub memory_max: Option<u64>,
    pub swap_max: Option<u64>,
    pub pids_max: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub description: String,
    /// Capabilities kept (bounding, permitted, effective) by slice processes, e.g. "CAP_CHOWN".
    pub capabilities: Vec<String>,
    /// Seccomp profile in OCI/Docker JSON format, already loaded from policies/seccomp/.
    pub seccomp: oci_spec::runtime::LinuxSeccomp,
    pub no_new_privileges: bool,
    pub rlimits: Vec<RlimitEntry>,
    /// Paths masked inside the slice (files: /dev/null bound over; dirs: empty read-only tmpfs).
    pub masked_paths: Vec<String>,
    /// Paths made read-only inside the slice.
    pub readonly_paths: Vec<String>,
    pub maxima: Maxima,
}

/// `RLIM_INFINITY`, what `"unlimited"` means in an rlimit.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// The OCI rlimit types (`man 2 getrlimit`), and whether each counts bytes (and so accepts
/// `"64M"`-style sizes).
pub const RLIMIT_TYPES: &[(&str, bool)] = &[
    ("RLIMIT_AS", true),
    ("RLIMIT_CORE", true),
    ("RLIMIT_CPU", false),
    ("RLIMIT_DATA", true),
    ("RLIMIT_FSIZE", true),
    ("RLIMIT_LOCKS", false),
    ("RLIMIT_MEMLOCK", true),
    ("RLIMIT_MSGQUEUE", true),
    ("RLIMIT_NICE", false),
    ("RLIMIT_NOFILE", false),
    ("RLIMIT_NPROC", false),
    ("RLIMIT_RSS", true),
    ("RLIMIT_RTPRIO", false),
    ("RLIMIT_RTTIME", false),
    ("RLIMIT_SIGPENDING", false),
    ("RLIMIT_STACK", true),
];

/// Load `<dir>/<name>.toml` and the seccomp profile it names (from `<dir>/seccomp/`).
pub fn load(dir: &Path, name: &str) -> Result<Policy, PolicyError> {
    let invalid = |reason: String| PolicyError::Invalid {
        name: name.to_string(),
        reason,
    };
    check_file_name(name).map_err(|r| invalid(format!("name: {r}")))?;
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).ctx("read policy", &path)?;
    let (mut policy, seccomp_file) = parse(name, &text).map_err(invalid)?;

    let seccomp_path = dir.join("seccomp").join(&seccomp_file);
    let data = std::fs::read(&seccomp_path).ctx("read seccomp profile", &seccomp_path)?;
    policy.seccomp = serde_json::from_slice(&data)
        .map_err(|e| invalid(format!("seccomp: {}: {e}", seccomp_path.display())))?;
    // Compile once now so that a bad profile is reported when the policy is loaded, not when a
    // slice starts.
    crate::sandbox::seccomp::compile(&policy.seccomp)
        .map_err(|e| invalid(format!("seccomp: {}: {e}", seccomp_path.display())))?;
    Ok(policy)
}

/// The names of the policies in `dir` (`<name>.toml` files with a valid name), sorted. An
/// unreadable directory has none.
pub fn list(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".toml")
                .map(str::to_string)
        })
        .filter(|n| check_file_name(n).is_ok())
        .collect();
    names.sort();
    names
}

/// A policy or profile name must be a plain file name: `[A-Za-z0-9._-]`, not starting with a
/// dot (so never `.` or `..`), at most 64 characters.
fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 64 {
        return Err(format!("{name:?} is longer than 64 characters"));
    }
    if name.starts_with('.') {
        return Err(format!("{name:?} starts with '.'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(format!(
            "{name:?} contains {c:?} (allowed: letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// A TOML table being taken apart key by key, so that every error names its key.
struct Fields {
    table: toml::Table,
    /// Prefix for error messages: "" at the top, "rlimits[2]." inside an array element.
    at: String,
}

impl Fields {
    fn new(table: toml::Table, at: impl Into<String>) -> Self {
        Fields {
            table,
            at: at.into(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.at)
    }

    fn take_value(&mut self, key: &str) -> Option<toml::Value> {
        self.table.remove(key)
    }

    fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, String> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(v) => v.try_into().map(Some).map_err(|e: toml::de::Error| {
                format!("{}: {}", self.key(key), e.message().trim_end())
            }),
        }
    }

    fn require<T: DeserializeOwned>(&mut self, key: &str) -> Result<T, String> {
        self.take(key)?
            .ok_or_else(|| format!("{}: missing (required)", self.key(key)))
    }

    /// Error on any key nobody took (a typo must not silently weaken a policy).
    fn finish(self, known: &[&str]) -> Result<(), String> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!(
                "{}: unknown key (known: {})",
                self.key(k),
                known.join(", ")
            )),
        }
    }
}

/// Parse and validate a policy file's text. Returns the policy (with an empty seccomp profile)
/// and the profile's file name.
fn parse(name: &str, text: &str) -> Result<(Policy, String), String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("{name}.toml: {}", e.to_string().trim_end()))?;
    let mut f = Fields::new(table, "");

    let description: String = f.require("description")?;
    if description.trim().is_empty() {
        return Err("description: empty".into());
    }
    let seccomp_file: String = f.require("seccomp")?;
    check_file_name(&seccomp_file).map_err(|r| format!("seccomp: {r}"))?;
    let no_new_privileges: bool = f.require("no_new_privileges")?;

    let capabilities: Vec<String> = f.require("capabilities")?;
    for (i, cap) in capabilities.iter().enumerate() {
        if caps::Capability::from_str(cap).is_err() {
            return Err(format!("capabilities[{i}]: unknown capability {cap:?}"));
        }
        if capabilities[..i].contains(cap) {
            return Err(format!("capabilities[{i}]: {cap:?} listed twice"));
        }
    }

    let masked_paths: Vec<String> = f.take("masked_paths")?.unwrap_or_default();
    check_paths("masked_paths", &masked_paths)?;
    let readonly_paths: Vec<String> = f.take("readonly_paths")?.unwrap_or_default();
    check_paths("readonly_paths", &readonly_paths)?;

    let rlimits = match f.take_value("rlimits") {
        None => Vec::new(),
        Some(v) => parse_rlimits(v)?,
    };
    let maxima = match f.take_value("maxima") {
        None => Maxima::default(),
        Some(toml::Value::Table(t)) => parse_maxima(t)?,
        Some(other) => {
            return Err(format!(
                "maxima: expected a table, found {}",
                other.type_str()
            ))
        }
    };
    f.finish(&[
        "description",
        "seccomp",
        "no_new_privileges",
        "capabilities",
        "masked_paths",
        "readonly_paths",
        "rlimits",
        "maxima",
    ])?;

    let policy = Policy {
        name: name.to_string(),
        description,
        capabilities,
        seccomp: Default::default(),
        no_new_privileges,
        rlimits,
        masked_paths,
        readonly_paths,
        maxima,
    };
    Ok((policy, seccomp_file))
}

/// Absolute, no `.`/`..` components, no empty components, listed once.
fn check_paths(field: &str, paths: &[String]) -> Result<(), String> {
    for (i, p) in paths.iter().enumerate() {
        let err = |reason: &str| Err(format!("{field}[{i}]: {p:?} {reason}"));
        if !p.starts_with('/') {
            return err("is not absolute");
        }
        if p.contains('\0') {
            return err("contains a NUL byte");
        }
        if p.len() > 1 && (p.ends_with('/') || p.contains("//")) {
            return err("has an empty component");
        }
        if p.split('/').any(|c| c == "." || c == "..") {
            return err("contains a '.' or '..' component");
        }
        if Path::new(p).components().all(|c| c == Component::RootDir) {
            return err("is the root directory");
        }
        if paths[..i].contains(p) {
            return err("is listed twice");
        }
    }
    Ok(())
}

fn parse_rlimits(value: toml::Value) -> Result<Vec<RlimitEntry>, String> {
    let toml::Value::Array(items) = value else {
        return Err(format!(
            "rlimits: expected an array of tables ([[rlimits]]), found {}",
            value.type_str()
        ));
    };
    let mut out: Vec<RlimitEntry> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("rlimits[{i}].");
        let toml::Value::Table(t) = item else {
            return Err(format!(
                "rlimits[{i}]: expected a table, found {}",
                item.type_str()
            ));
        };
        let mut f = Fields::new(t, at.clone());
        let kind: String = f.require("type")?;
        let Some(&(_, bytes)) = RLIMIT_TYPES.iter().find(|(n, _)| *n == kind) else {
            let known: Vec<&str> = RLIMIT_TYPES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "{at}type: unknown rlimit type {kind:?} (known: {})",
                known.join(", ")
            ));
        };
        if out.iter().any(|r| r.kind == kind) {
            return Err(format!("{at}type: {kind:?} set twice"));
        }
        let mut limit = |key: &str| -> Result<u64, String> {
            let v = f
                .take_value(key)
                .ok_or_else(|| format!("{at}{key}: missing (required)"))?;
            limit_value(&v, bytes, true).map_err(|r| format!("{at}{key}: {r}"))
        };
        let soft = limit("soft")?;
        let hard = limit("hard")?;
        f.finish(&["type", "soft", "hard"])?;
        if soft > hard {
            return Err(format!("{at}soft: {soft} is above the hard limit {hard}"));
        }
        out.push(RlimitEntry { kind, soft, hard });
    }
    Ok(out)
}

fn parse_maxima(table: toml::Table) -> Result<Maxima, String> {
    let mut f = Fields::new(table, "maxima.");
    let cpu_max = match f.take_value("cpu_max") {
        None => None,
        Some(v) => {
            let cores = match v {
                toml::Value::Float(x) => x,
                toml::Value::Integer(n) => n as f64,
                other => {
                    return Err(format!(
                        "maxima.cpu_max: expected a number of cores, found {}",
                        other.type_str()
                    ))
                }
            };
            if !(cores.is_finite() && cores > 0.0) {
                return Err(format!(
                    "maxima.cpu_max: {cores} is not a positive number of cores"
                ));
            }
            Some(cores)
        }
    };
    let mut bytes = |key: &str, zero_ok: bool| -> Result<Option<u64>, String> {
        f.take_value(key)
            .map(|v| limit_value(&v, true, false).map_err(|r| format!("maxima.{key}: {r}")))
            .transpose()?
            .map(|n| match n {
                0 if !zero_ok => Err(format!("maxima.{key}: must be positive")),
                n => Ok(n),
            })
            .transpose()
    };
    let memory_max = bytes("memory_max", false)?;
    // swap_max = 0 is meaningful: no swap at all.
    let swap_max = bytes("swap_max", true)?;
    let pids_max = match f.take::<i64>("pids_max")? {
        None => None,
        Some(n) if n > 0 => Some(n as u64),
        Some(n) => return Err(format!("maxima.pids_max: {n} must be positive")),
    };
    f.finish(&["cpu_max", "memory_max", "swap_max", "pids_max"])?;
    Ok(Maxima {
        cpu_max,
        memory_max,
        swap_max,
        pids_max,
    })
}

/// An integer, `"unlimited"` (if allowed) or, for byte values, a size like `"64M"`.
fn limit_value(v: &toml::Value, bytes: bool, unlimited_ok: bool) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
        toml::Value::String(s) if s == "unlimited" && unlimited_ok => Ok(RLIM_INFINITY),
        toml::Value::String(s) if bytes => parse_size(s),
        toml::Value::String(s) => Err(format!(
            "{s:?} is not a count{}",
            if unlimited_ok {
                " or \"unlimited\""
            } else {
                ""
            }
        )),
        other => Err(format!(
            "expected an integer or a string, found {}",
            other.type_str()
        )),
    }
}

/// `"4096"`, `"512K"`, `"64M"`, `"64G"`, `"1T"` (binary units) → bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => {
            return Err(format!(
                "{s:?} is not a size (an integer with an optional K, M, G or T)"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (an integer with an optional K, M, G or T)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn shipped() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    const MINIMAL_PROFILE: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]}"#;

    const GOOD: &str = r#"
description = "test"
seccomp = "p.json"
no_new_privileges = true
capabilities = ["CAP_CHOWN", "CAP_KILL"]
masked_paths = ["/proc/kcore"]
readonly_paths = ["/proc/sys"]
[[rlimits]]
type = "RLIMIT_NOFILE"
soft = 1024
hard = 4096
[maxima]
cpu_max = 2
memory_max = "1G"
pids_max = 100
"#;

    /// A policy dir with `t.toml` = `text` and `seccomp/p.json` = `profile`.
    fn dir_with(text: &str, profile: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("seccomp")).unwrap();
        fs::write(dir.path().join("seccomp/p.json"), profile).unwrap();
        fs::write(dir.path().join("t.toml"), text).unwrap();
        dir
    }

    fn load_err(text: &str) -> String {
        let dir = dir_with(text, MINIMAL_PROFILE);
        match load(dir.path(), "t") {
            Ok(p) => panic!("expected an error, loaded {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn replace(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replacen(from, to, 1)
    }

    #[test]
    fn shipped_policies_load_and_validate() {
        let dir = shipped();
        assert_eq!(
            list(&dir),
            vec!["default".to_string(), "strict".to_string()]
        );

        let default = load(&dir, "default").unwrap();
        let strict = load(&dir, "strict").unwrap();
        assert_eq!(default.name, "default");
        assert!(
            !default.no_new_privileges,
            "setuid binaries must work in default slices"
        );
        assert!(strict.no_new_privileges);
        for cap in [
            "CAP_SYS_ADMIN",
            "CAP_NET_ADMIN",
            "CAP_SETUID",
            "CAP_SYS_BOOT",
        ] {
            assert!(
                default.capabilities.iter().any(|c| c == cap),
                "default lacks {cap}"
            );
        }
        for cap in [
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_TIME",
            "CAP_SYSLOG",
            "CAP_MAC_ADMIN",
        ] {
            assert!(
                !default.capabilities.iter().any(|c| c == cap),
                "default has {cap}"
            );
        }
        assert_eq!(strict.capabilities.len(), 14, "Docker's default set");
        assert!(!strict.capabilities.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert!(strict
            .capabilities
            .iter()
            .all(|c| default.capabilities.contains(c)));

        let runc_masked = [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ];
        let runc_readonly = [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ];
        for p in [&default, &strict] {
            for m in runc_masked {
                assert!(
                    p.masked_paths.iter().any(|x| x == m),
                    "{}: {m} not masked",
                    p.name
                );
            }
            for r in runc_readonly {
                assert!(
                    p.readonly_paths.iter().any(|x| x == r),
                    "{}: {r} not read-only",
                    p.name
                );
            }
            let nofile = p
                .rlimits
                .iter()
                .find(|r| r.kind == "RLIMIT_NOFILE")
                .unwrap();
            assert!(nofile.soft <= nofile.hard);
            assert_eq!(
                p.seccomp.default_action(),
                oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
            );
        }
        assert_eq!(default.maxima.memory_max, Some(64 << 30));
        assert_eq!(default.maxima.pids_max, Some(32768));
        let (d, s) = (&default.maxima, &strict.maxima);
        assert!(s.cpu_max.unwrap() < d.cpu_max.unwrap());
        assert!(s.memory_max.unwrap() < d.memory_max.unwrap());
        assert!(s.swap_max.unwrap() < d.swap_max.unwrap());
        assert!(s.pids_max.unwrap() < d.pids_max.unwrap());
        // strict's denylist is a superset of default's.
        let names = |p: &Policy| -> Vec<String> {
            p.seccomp
                .syscalls()
                .iter()
                .flatten()
                .flat_map(|s| s.names().clone())
                .collect()
        };
        let strict_names = names(&strict);
        for n in names(&default) {
            assert!(strict_names.contains(&n), "strict does not deny {n}");
        }
        assert!(strict_names.len() > names(&default).len());
    }

    #[test]
    fn good_policy_parses_with_sizes_and_unlimited() {
        let dir = dir_with(
            &GOOD.replace("hard = 4096", "hard = \"unlimited\""),
            MINIMAL_PROFILE,
        );
        let p = load(dir.path(), "t").unwrap();
        assert_eq!(p.capabilities, vec!["CAP_CHOWN", "CAP_KILL"]);
        assert_eq!(
            p.rlimits,
            vec![RlimitEntry {
                kind: "RLIMIT_NOFILE".into(),
                soft: 1024,
                hard: RLIM_INFINITY
            }]
        );
        assert_eq!(
            p.maxima,
            Maxima {
                cpu_max: Some(2.0),
                memory_max: Some(1 << 30),
                swap_max: None,
                pids_max: Some(100)
            }
        );
        assert_eq!(p.seccomp.syscalls().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn unknown_capability_names_policy_field_and_index() {
        let err = load_err(&replace(
            r#"["CAP_CHOWN", "CAP_KILL"]"#,
            r#"["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_FOO"]"#,
        ));
        assert_eq!(
            err,
            r#"policy "t": capabilities[3]: unknown capability "CAP_FOO""#
        );
        let err = load_err(&replace(
            r#"["CAP_CHOWN", "CAP_KILL"]"#,
            r#"["CAP_KILL", "CAP_KILL"]"#,
        ));
        assert_eq!(
            err,
            r#"policy "t": capabilities[1]: "CAP_KILL" listed twice"#
        );
    }

    #[test]
    fn parse_errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "no_new_privileges = true",
                "no_new_privileges = \"yes\"",
                "no_new_privileges: invalid type",
            ),
            (
                "no_new_privileges = true\n",
                "",
                "no_new_privileges: missing",
            ),
            (
                "seccomp = \"p.json\"",
                "seccomp = \"../p.json\"",
                "seccomp: \"../p.json\" starts with '.'",
            ),
            (
                "seccomp = \"p.json\"",
                "seccomp = \"x/p.json\"",
                "seccomp: \"x/p.json\" contains '/'",
            ),
            (
                "description = \"test\"",
                "description = \"test\"\ncapabilites = []",
                "capabilites: unknown key",
            ),
            (
                "capabilities = [\"CAP_CHOWN\", \"CAP_KILL\"]",
                "capabilities = \"CAP_CHOWN\"",
                "capabilities: invalid type",
            ),
            (
                "\"/proc/kcore\"",
                "\"proc/kcore\"",
                "masked_paths[0]: \"proc/kcore\" is not absolute",
            ),
            (
                "\"/proc/sys\"",
                "\"/proc/../etc\"",
                "readonly_paths[0]: \"/proc/../etc\" contains a '.' or '..' component",
            ),
            (
                "\"/proc/sys\"",
                "\"/\"",
                "readonly_paths[0]: \"/\" is the root directory",
            ),
            (
                "type = \"RLIMIT_NOFILE\"",
                "type = \"RLIMIT_FILES\"",
                "rlimits[0].type: unknown rlimit type \"RLIMIT_FILES\"",
            ),
            (
                "soft = 1024",
                "soft = 8192",
                "rlimits[0].soft: 8192 is above the hard limit 4096",
            ),
            (
                "soft = 1024",
                "soft = -1",
                "rlimits[0].soft: -1 is negative",
            ),
            (
                "soft = 1024",
                "soft = \"1M\"",
                "rlimits[0].soft: \"1M\" is not a count",
            ),
            (
                "soft = 1024",
                "soft = 1024\nsofty = 1",
                "rlimits[0].softy: unknown key",
            ),
            ("hard = 4096\n", "", "rlimits[0].hard: missing"),
            (
                "pids_max = 100",
                "pids_max = 0",
                "maxima.pids_max: 0 must be positive",
            ),
            (
                "cpu_max = 2",
                "cpu_max = 0.0",
                "maxima.cpu_max: 0 is not a positive number",
            ),
            (
                "cpu_max = 2",
                "cpu_max = \"2\"",
                "maxima.cpu_max: expected a number of cores, found string",
            ),
            (
                "memory_max = \"1G\"",
                "memory_max = \"1Q\"",
                "maxima.memory_max: \"1Q\" is not a size",
            ),
            (
                "memory_max = \"1G\"",
                "memory_max = 0",
                "maxima.memory_max: must be positive",
            ),
            (
                "memory_max = \"1G\"",
                "memory_max = \"unlimited\"",
                "maxima.memory_max: \"unlimited\" is not a size",
            ),
            (
                "pids_max = 100",
                "pids_max = 100\ncpus = 1",
                "maxima.cpus: unknown key",
            ),
            (
                "description = \"test\"",
                "description = ",
                "t.toml: TOML parse error at line 2",
            ),
        ];
        for (from, to, want) in cases {
            let err = load_err(&replace(from, to));
            assert!(err.starts_with("policy \"t\": "), "{err}");
            assert!(
                err.contains(want),
                "replacing {from:?} by {to:?}: want {want:?} in {err:?}"
            );
        }
        let text = GOOD
            .replace("[maxima]", "[other]")
            .replace("description", "maxima = 3\ndescription");
        assert_eq!(
            load_err(&text),
            "policy \"t\": maxima: expected a table, found integer"
        );
        let text = GOOD.replace("[maxima]", "[other]");
        assert!(load_err(&text).contains("policy \"t\": other: unknown key (known: description,"));
    }

    #[test]
    fn seccomp_profile_errors_name_the_profile() {
        let dir = dir_with(GOOD, r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#);
        let err = load(dir.path(), "t").unwrap_err().to_string();
        assert!(err.starts_with("policy \"t\": seccomp: "), "{err}");
        assert!(
            err.contains("p.json") && err.contains("SCMP_ACT_NOTIFY"),
            "{err}"
        );

        let dir = dir_with(GOOD, r#"{"defaultAction": "SCMP_ACT_BOGUS"}"#);
        let err = load(dir.path(), "t").unwrap_err().to_string();
        assert!(
            err.contains("seccomp: ") && err.contains("SCMP_ACT_BOGUS"),
            "{err}"
        );

        let dir = dir_with(&GOOD.replace("p.json", "missing.json"), MINIMAL_PROFILE);
        let err = load(dir.path(), "t").unwrap_err();
        assert!(matches!(err, PolicyError::Io(_)), "{err}");
        assert!(err.to_string().contains("seccomp/missing.json"), "{err}");
    }

    #[test]
    fn names_must_be_plain_file_names() {
        let dir = dir_with(GOOD, MINIMAL_PROFILE);
        for bad in ["../t", "a/b", "..", ".hidden", "", "sp ace"] {
            let err = load(dir.path(), bad).unwrap_err();
            assert!(matches!(err, PolicyError::Invalid { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(": name: "), "{err}");
        }
        let err = load(dir.path(), "absent").unwrap_err().to_string();
        assert!(err.contains("absent.toml"), "{err}");
    }

    #[test]
    fn list_finds_only_policy_files() {
        let dir = dir_with(GOOD, MINIMAL_PROFILE);
        fs::write(dir.path().join("b.toml"), GOOD).unwrap();
        fs::write(dir.path().join(".hidden.toml"), GOOD).unwrap();
        fs::write(dir.path().join("notes.txt"), "").unwrap();
        fs::create_dir(dir.path().join("d.toml")).unwrap();
        assert_eq!(list(dir.path()), vec!["b".to_string(), "t".to_string()]);
        assert!(list(Path::new("/nonexistent/policies")).is_empty());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64G"), Ok(64 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
