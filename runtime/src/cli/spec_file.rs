//! `vslice create --file spec.toml`: a TOML [`CreateRequest`] in which sizes, CPU counts,
//! rates and port forwards may be written in human units:
//!
//! ```toml
//! name = "web"
//! image = "busybox"
//! owners = ["alice"]
//! autostart = true
//!
//! [limits]
//! memory_max = "512M"      # or 536870912
//! cpu_max = 0.5            # or "0.5"
//! pids_max = 256
//!
//! [net]
//! mode = "bridge"
//! egress_rate = "10mbit"   # or 10000000 (bits/s)
//! ports = ["8080:80", "5353:53/udp"]   # or [{host_port = 8080, slice_port = 80}]
//! ```
//!
//! Every key is the `POST /v1/slices` body's (docs/daemon.md); an unknown key is an error that
//! names it. `start` defaults to true here (as on the command line).
use super::units;
use crate::slice::CreateRequest;
use serde_json::Value;
use std::path::Path;

/// A spec file problem: the field (JSON path) it is about, if any, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: Option<String>,
    pub message: String,
}

/// Read and parse a spec file.
pub fn load(path: &Path) -> Result<CreateRequest, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        field: None,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    parse(&text).map_err(|mut e| {
        e.message = format!("{}: {}", path.display(), e.message);
        e
    })
}

/// Parse the TOML text of a spec file.
pub fn parse(text: &str) -> Result<CreateRequest, SpecError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| SpecError {
        field: None,
        message: format!("not valid TOML: {}", e.to_string().trim_end()),
    })?;
    let mut value = serde_json::to_value(&table).map_err(|e| SpecError {
        field: None,
        message: e.to_string(),
    })?;
    let had_start = table.contains_key("start");
    normalize(&mut value)?;
    let mut req: CreateRequest = crate::api::error::parse_value(value).map_err(|e| SpecError {
        field: e.field.clone(),
        message: match &e.field {
            Some(f) => format!("{f}: {}", e.message.trim_start_matches("request body: ")),
            None => e.message.trim_start_matches("request body: ").to_string(),
        },
    })?;
    if !had_start {
        req.start = true;
    }
    Ok(req)
}

fn convert(
    value: &mut Value,
    path: &[&str],
    parse: impl Fn(&str) -> Result<Value, String>,
) -> Result<(), SpecError> {
    let mut v = &mut *value;
    for k in path {
        match v.get_mut(*k) {
            Some(inner) => v = inner,
            None => return Ok(()),
        }
    }
    if let Value::String(s) = v {
        *v = parse(s).map_err(|m| SpecError {
            field: Some(path.join(".")),
            message: format!("{}: {m}", path.join(".")),
        })?;
    }
    Ok(())
}

/// Replace human-unit strings with the numbers the API takes.
fn normalize(v: &mut Value) -> Result<(), SpecError> {
    let size = |s: &str| units::parse_size(s).map(Value::from);
    let rate = |s: &str| units::parse_rate(s).map(Value::from);
    let cpus = |s: &str| units::parse_cpus(s).map(Value::from);
    convert(v, &["limits", "memory_max"], size)?;
    convert(v, &["limits", "swap_max"], size)?;
    convert(v, &["limits", "cpu_max"], cpus)?;
    convert(v, &["net", "egress_rate"], rate)?;
    convert(v, &["net", "ingress_rate"], rate)?;
    convert(v, &["net", "egress_burst"], size)?;
    convert(v, &["net", "ingress_burst"], size)?;
    convert(v, &["net", "budget", "max_bytes"], size)?;
    convert(v, &["net", "budget", "thresh_bytes"], size)?;
    if let Some(Value::Array(ports)) = v.get_mut("net").and_then(|n| n.get_mut("ports")) {
        for (i, p) in ports.iter_mut().enumerate() {
            if let Value::String(s) = p {
                let pf = units::parse_publish(s).map_err(|m| SpecError {
                    field: Some(format!("net.ports[{i}]")),
                    message: format!("net.ports[{i}]: {m}"),
                })?;
                *p = serde_json::to_value(pf).unwrap_or_default();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{NetMode, Proto};

    #[test]
    fn human_units() {
        let r = parse(
            r#"
name = "web"
owners = ["alice"]
[limits]
memory_max = "512M"
cpu_max = "0.5"
pids_max = 100
[net]
mode = "bridge"
egress_rate = "10mbit"
ingress_rate = 2000000
ports = ["8080:80", { host_port = 5353, slice_port = 53, proto = "udp" }]
"#,
        )
        .unwrap();
        assert_eq!(r.name, "web");
        assert!(r.start);
        assert_eq!(r.limits.memory_max, Some(512 << 20));
        assert_eq!(r.limits.cpu_max, Some(0.5));
        assert_eq!(r.limits.pids_max, Some(100));
        assert_eq!(r.net.mode, NetMode::Bridge);
        assert_eq!(r.net.egress_rate, Some(10_000_000));
        assert_eq!(r.net.ingress_rate, Some(2_000_000));
        assert_eq!(r.net.ports.len(), 2);
        assert_eq!(r.net.ports[0].host_port, 8080);
        assert_eq!(r.net.ports[1].proto, Proto::Udp);
        assert!(!parse("name = \"x\"\nstart = false\n").unwrap().start);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("name = \"x\"\n[limits]\nmemory_max = \"lots\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.memory_max"), "{e:?}");
        let e = parse("name = \"x\"\ncolour = \"red\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("colour"), "{e:?}");
        let e = parse("name = \"x\"\n[limits]\nmemroy_max = 1\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.memroy_max"), "{e:?}");
        let e = parse("name = \"x\"\n[net]\nports = [\"80\"]\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("net.ports[0]"), "{e:?}");
        assert!(parse("name = ").is_err());
    }
}
