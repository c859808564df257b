//! The network part of a slice spec and its validation.
use super::cmd::{NetError, Result};

/// The wire types (shared with the API and its clients) live in [`crate::proto::net`].
pub use crate::proto::net::{ByteBudget, HostPort, NetAllow, NetMode, NetSpec, PortForward, Proto};

/// Lowest rate the budget throttle goes to, in bits per second.
pub const BUDGET_FLOOR_BPS: u64 = 8_000;
/// Lowest accepted configured rate, in bits per second.
pub const MIN_RATE_BPS: u64 = 8_000;
/// Highest accepted configured rate (100 Gbit/s).
pub const MAX_RATE_BPS: u64 = 100_000_000_000;
/// Largest accepted weight.
pub const MAX_WEIGHT: u32 = 10_000;

impl NetSpec {
    /// The weight used for sharing (default 1).
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }

    /// Check every field; the error names the field (`net.ports[0].host_port: ...`).
    pub fn validate(&self) -> Result<()> {
        if self.mode == NetMode::None && !self.ports.is_empty() {
            return Err(NetError::invalid(
                "net.ports",
                "port forwards need mode \"bridge\"",
            ));
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.host_port == 0 {
                return Err(NetError::invalid(
                    format!("net.ports[{i}].host_port"),
                    "0 is not a valid port",
                ));
            }
            if p.slice_port == 0 {
                return Err(NetError::invalid(
                    format!("net.ports[{i}].slice_port"),
                    "0 is not a valid port",
                ));
            }
            for (j, q) in self.ports.iter().enumerate().take(i) {
                if q.host_port == p.host_port && q.proto == p.proto {
                    return Err(NetError::invalid(
                        format!("net.ports[{i}].host_port"),
                        format!(
                            "{}/{} is already forwarded by net.ports[{j}]",
                            p.host_port,
                            p.proto.as_str()
                        ),
                    ));
                }
            }
        }
        check_rate("net.egress_rate", self.egress_rate)?;
        check_rate("net.ingress_rate", self.ingress_rate)?;
        check_burst("net.egress_burst", self.egress_burst)?;
        check_burst("net.ingress_burst", self.ingress_burst)?;
        if let Some(w) = self.weight {
            if w == 0 || w > MAX_WEIGHT {
                return Err(NetError::invalid(
                    "net.weight",
                    format!("{w} is out of range 1..={MAX_WEIGHT}"),
                ));
            }
        }
        if let Some(b) = &self.budget {
            if b.max_bytes == 0 {
                return Err(NetError::invalid(
                    "net.budget.max_bytes",
                    "must be greater than 0",
                ));
            }
            if b.thresh_bytes > b.max_bytes {
                return Err(NetError::invalid(
                    "net.budget.thresh_bytes",
                    format!(
                        "{} is larger than max_bytes {}",
                        b.thresh_bytes, b.max_bytes
                    ),
                ));
            }
        }
        for (i, s) in self.allow.slices.iter().enumerate() {
            if s != "*" {
                validate_slice_name(s)
                    .map_err(|msg| NetError::invalid(format!("net.allow.slices[{i}]"), msg))?;
            }
        }
        for (i, p) in self.allow.host_ports.iter().enumerate() {
            if p.port == 0 {
                return Err(NetError::invalid(
                    format!("net.allow.host_ports[{i}].port"),
                    "0 is not a valid port",
                ));
            }
        }
        Ok(())
    }
}

fn check_rate(field: &str, rate: Option<u64>) -> Result<()> {
    match rate {
        Some(r) if !(MIN_RATE_BPS..=MAX_RATE_BPS).contains(&r) => Err(NetError::invalid(
            field,
            format!("{r} bit/s is out of range {MIN_RATE_BPS}..={MAX_RATE_BPS}"),
        )),
        _ => Ok(()),
    }
}

fn check_burst(field: &str, burst: Option<u64>) -> Result<()> {
    const MIN: u64 = 1600;
    const MAX: u64 = 1 << 30;
    match burst {
        Some(b) if !(MIN..=MAX).contains(&b) => Err(NetError::invalid(
            field,
            format!("{b} bytes is out of range {MIN}..={MAX}"),
        )),
        _ => Ok(()),
    }
}

/// Slice names as the network module needs them (they end up in /etc/hosts and state keys).
pub(crate) fn validate_slice_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("{name:?} must be 1 to 63 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(format!(
            "{name:?} may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    if name.starts_with('-') || name.starts_with('.') {
        return Err(format!("{name:?} must not start with '-' or '.'"));
    }
    Ok(())
}

/// Format bits/s for tc (`bit` unit avoids tc's kbit=1000 vs kibit ambiguity).
pub(crate) fn tc_rate(bps: u64) -> String {
    format!("{bps}bit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_deserialize_from_empty() {
        let s: NetSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(s, NetSpec::default());
        let s: NetSpec = serde_json::from_str(
            r#"{"mode":"bridge","ports":[{"host_port":8080,"slice_port":80}],"weight":3,
                "allow":{"slices":["*"],"host_ports":[{"port":53,"proto":"udp"}]}}"#,
        )
        .unwrap();
        assert_eq!(s.mode, NetMode::Bridge);
        assert_eq!(s.ports[0].proto, Proto::Tcp);
        assert_eq!(s.allow.host_ports[0].proto, Proto::Udp);
        s.validate().unwrap();
    }

    #[test]
    fn typos_are_refused() {
        let err = serde_json::from_str::<NetSpec>(r#"{"egres_rate":1}"#).unwrap_err();
        assert!(err.to_string().contains("egres_rate"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let mut s = NetSpec {
            mode: NetMode::Bridge,
            ..Default::default()
        };
        s.ports.push(PortForward {
            host_port: 0,
            slice_port: 80,
            proto: Proto::Tcp,
        });
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "net.ports[0].host_port: 0 is not a valid port"
        );
        s.ports[0].host_port = 8080;
        s.ports.push(PortForward {
            host_port: 8080,
            slice_port: 81,
            proto: Proto::Tcp,
        });
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("net.ports[1].host_port:"));
        s.ports[1].proto = Proto::Udp;
        s.validate().unwrap();
        s.egress_rate = Some(10);
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("net.egress_rate:"));
        s.egress_rate = Some(10_000_000);
        s.weight = Some(0);
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("net.weight:"));
        s.weight = Some(3);
        s.budget = Some(ByteBudget {
            max_bytes: 10,
            thresh_bytes: 20,
        });
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("net.budget.thresh_bytes:"));
        s.budget = None;
        s.allow.slices.push("bad name".into());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("net.allow.slices[0]:"));
        let none = NetSpec {
            ports: vec![PortForward::default()],
            ..Default::default()
        };
        assert!(none
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("net.ports:"));
    }
}
