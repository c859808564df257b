//! Facts about host processes read from /proc, shared by slices (shim, manager, daemon) and
//! the OCI runtime's state: a PID alone may be reused, so a process is named by its PID and
//! its start time.

/// Start time of a process, or None if it does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is the same process that had `start` as its start time, and not a zombie.
pub fn is_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    // `list` asks this of every running slice: three syscalls, not read_to_string's nine.
    let Ok(stat) =
        crate::util::fs::read_kernel_text(std::path::Path::new(&format!("/proc/{pid}/stat")))
    else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let Some(rest) = stat.get(close + 2..) else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("");
    if state == "Z" || state == "X" {
        return false;
    }
    fields.nth(18).and_then(|s| s.parse::<u64>().ok()) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_start_time_guards_reuse() {
        let me = std::process::id() as i32;
        let start = process_start_time(me).expect("start time of self");
        assert!(is_alive(me, start));
        assert!(
            !is_alive(me, start + 1),
            "a different start time must read as another process"
        );
        assert!(!is_alive(-1, start));
    }
}
