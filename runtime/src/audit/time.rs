//! Timestamps for the audit log, events and API: RFC 3339 in UTC with milliseconds
//! (`2024-05-01T14:02:03.123Z`). The format is fixed-width, so for records written by vslice a
//! string comparison is a time comparison. No calendar crate: the civil-date conversion below is
//! Howard Hinnant's `days_from_civil` / `civil_from_days`.
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Wall-clock minus CLOCK_BOOTTIME, in nanoseconds: add it to a kernel timestamp taken with
/// `bpf_ktime_get_boot_ns` to get nanoseconds since the epoch. Read fresh at each use, so a
/// step of the wall clock moves it (as it moves `now_millis`).
pub fn boot_to_wall_offset_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let boot = if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0 {
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    } else {
        0
    };
    let wall = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    wall - boot
}

/// The current time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn now_rfc3339() -> String {
    format_millis(now_millis())
}

/// Format milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        );
    }
    // Digits by hand: every record of the high-volume logs carries a time, and format!'s
    // padding machinery was a sixth of the flow writer's CPU.
    let mut b = *b"0000-00-00T00:00:00.000Z";
    for (at, len, v) in [
        (0, 4, y),
        (5, 2, m as i64),
        (8, 2, d as i64),
        (11, 2, sod / 3600),
        (14, 2, (sod / 60) % 60),
        (17, 2, sod % 60),
        (20, 3, milli),
    ] {
        let mut v = v;
        for c in b[at..at + len].iter_mut().rev() {
            *c = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    b.iter().map(|&c| c as char).collect()
}

/// Format seconds since the epoch.
pub fn format_secs(secs: u64) -> String {
    format_millis((secs as i64).saturating_mul(1000))
}

/// Parse a time given by a user: integer seconds since the epoch, `YYYY-MM-DD` (midnight UTC)
/// or RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, `T` or a space). Returns milliseconds.
pub fn parse(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|v| v.checked_mul(1000))
            .ok_or_else(|| format!("time {s:?} out of range"));
    }
    let bad =
        || format!("time {s:?}: expected RFC 3339 (2024-05-01T14:02:00Z), a date or epoch seconds");
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = s.get(from..from + len).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<i64>().map_err(|_| bad())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut ms = days_from_civil(y, mo as u32, d as u32) * 86_400_000;
    if b.len() == 10 {
        return Ok(ms);
    }
    if (b[10] != b'T' && b[10] != b't' && b[10] != b' ')
        || b.len() < 19
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    ms += (h * 3600 + mi * 60 + sec) * 1000;
    let mut i = 19;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let frac = &s[start..i.min(start + 3)];
        let mut v = frac.parse::<i64>().map_err(|_| bad())?;
        for _ in frac.len()..3 {
            v *= 10;
        }
        ms += v;
    }
    match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => Ok(ms),
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let off = (num(i + 1, 2)? * 60 + num(i + 4, 2)?) * 60_000;
            Ok(if *sign == b'+' { ms - off } else { ms + off })
        }
        None => Ok(ms), // no zone: UTC
        _ => Err(bad()),
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(1_714_572_123_456), "2024-05-01T14:02:03.456Z");
        assert_eq!(format_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_what_it_formats_and_more() {
        for ms in [0, 1_714_572_123_456, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse(&format_millis(ms)).unwrap(), ms);
        }
        assert_eq!(parse("1714572123").unwrap(), 1_714_572_123_000);
        assert_eq!(parse("2024-05-01").unwrap(), 1_714_521_600_000);
        assert_eq!(
            parse("2024-05-01T16:02:03+02:00").unwrap(),
            1_714_572_123_000
        );
        assert_eq!(parse("2024-05-01 14:02:03.4Z").unwrap(), 1_714_572_123_400);
        assert!(parse("yesterday").is_err());
        assert!(parse("2024-13-01").is_err());
        assert!(parse("2024-05-01T14:02").is_err());
    }
}
