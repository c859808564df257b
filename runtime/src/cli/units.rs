//! Human units for the CLI: sizes like `512M` / `1.5G`, CPU counts like `0.5`, network rates
//! like `10mbit` (tc's units), port forwards like `8080:80/tcp`.
use crate::net::{PortForward, Proto};

/// Parse a byte size: a number with an optional K, M, G or T suffix (powers of 1024,
/// an optional trailing `i`/`iB`/`B` accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let stripped = lower.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match stripped.chars().last() {
        Some('k') => (&stripped[..stripped.len() - 1], 1u64 << 10),
        Some('m') => (&stripped[..stripped.len() - 1], 1 << 20),
        Some('g') => (&stripped[..stripped.len() - 1], 1 << 30),
        Some('t') => (&stripped[..stripped.len() - 1], 1 << 40),
        _ => (stripped, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 512M, 1G, 1048576)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{s:?} is not a size"));
    }
    Ok((v * mult as f64).round() as u64)
}

/// Format bytes the way operators read them.
pub fn format_size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else if (v - v.round()).abs() < 0.05 {
        format!("{:.0}{}", v, UNITS[i])
    } else {
        format!("{:.1}{}", v, UNITS[i])
    }
}

pub fn parse_cpus(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a CPU count (examples: 0.5, 2)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s:?}: must be a positive number of CPUs"));
    }
    Ok(v)
}

/// Parse a network rate into bits per second, with tc's units (case-insensitive): a bare
/// number or `bit` is bits/s; `kbit`, `mbit`, `gbit`, `tbit` are powers of 1000 (and `k`, `m`,
/// `g`, `t` alone mean the same); `kibit`, `mibit`, `gibit`, `tibit` powers of 1024; `bps`
/// is **bytes**/s (`kbps`, `mbps`, `gbps`, `kibps`, … accordingly), as in tc.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("{s:?} is not a rate (examples: 10mbit, 1gbit, 500kbit, 8000)");
    let v: f64 = num.parse().map_err(|_| bad())?;
    let (prefix, bytes) = if let Some(p) = unit.strip_suffix("bit") {
        (p, false)
    } else if let Some(p) = unit.strip_suffix("bps") {
        (p, true)
    } else {
        (unit, false)
    };
    let mult: f64 = match prefix {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bits = v * mult * if bytes { 8.0 } else { 1.0 };
    if !(bits.is_finite() && bits >= 0.0 && bits < u64::MAX as f64) {
        return Err(bad());
    }
    Ok(bits.round() as u64)
}

/// Format bits/s the way tc prints them (`10mbit`, `1.5gbit`, `8000bit`).
pub fn format_rate(bps: u64) -> String {
    for (div, unit) in [(1e12, "tbit"), (1e9, "gbit"), (1e6, "mbit"), (1e3, "kbit")] {
        let v = bps as f64 / div;
        if v >= 1.0 {
            return if (v - v.round()).abs() < 0.005 {
                format!("{:.0}{unit}", v)
            } else {
                let n = format!("{v:.2}");
                format!("{}{unit}", n.trim_end_matches('0').trim_end_matches('.'))
            };
        }
    }
    format!("{bps}bit")
}

/// Parse a port forward `HOSTPORT:SLICEPORT[/tcp|/udp]` (default tcp).
pub fn parse_publish(s: &str) -> Result<PortForward, String> {
    let bad =
        |why: &str| format!("{s:?}: {why} (expected HOSTPORT:SLICEPORT[/tcp|udp], e.g. 8080:80)");
    let (ports, proto) = match s.trim().split_once('/') {
        Some((p, "tcp")) | Some((p, "TCP")) => (p, Proto::Tcp),
        Some((p, "udp")) | Some((p, "UDP")) => (p, Proto::Udp),
        Some(_) => return Err(bad("the protocol must be tcp or udp")),
        None => (s.trim(), Proto::Tcp),
    };
    let (h, c) = ports.split_once(':').ok_or_else(|| bad("missing ':'"))?;
    let port = |p: &str, what: &str| -> Result<u16, String> {
        match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(&format!("{what} port must be 1-65535"))),
            Ok(v) => Ok(v),
        }
    };
    Ok(PortForward {
        host_port: port(h, "the host")?,
        slice_port: port(c, "the slice")?,
        proto,
    })
}

/// Format a port forward the way [`parse_publish`] reads it.
pub fn format_publish(p: &PortForward) -> String {
    format!("{}:{}/{}", p.host_port, p.slice_port, p.proto.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1M").is_err());
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(format_size(3 << 29), "1.5G");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5").unwrap(), 0.5);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("two").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10mbit").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1gbit").unwrap(), 1_000_000_000);
        assert_eq!(parse_rate("500kbit").unwrap(), 500_000);
        assert_eq!(parse_rate("1.5Mbit").unwrap(), 1_500_000);
        assert_eq!(parse_rate("8000").unwrap(), 8000);
        assert_eq!(parse_rate("8000bit").unwrap(), 8000);
        assert_eq!(parse_rate("10m").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1kibit").unwrap(), 1024);
        assert_eq!(parse_rate("1mbps").unwrap(), 8_000_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10mbits/s").is_err());
        assert!(parse_rate("-1mbit").is_err());
        assert_eq!(format_rate(10_000_000), "10mbit");
        assert_eq!(format_rate(1_500_000_000), "1.5gbit");
        assert_eq!(format_rate(8000), "8kbit");
        assert_eq!(format_rate(900), "900bit");
    }

    #[test]
    fn publish() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!((p.host_port, p.slice_port, p.proto), (8080, 80, Proto::Tcp));
        let p = parse_publish("5353:53/udp").unwrap();
        assert_eq!((p.host_port, p.slice_port, p.proto), (5353, 53, Proto::Udp));
        assert_eq!(format_publish(&p), "5353:53/udp");
        assert!(parse_publish("8080").is_err());
        assert!(parse_publish("0:80").is_err());
        assert!(parse_publish("8080:80/sctp").is_err());
        assert!(parse_publish("70000:80").is_err());
    }
}
