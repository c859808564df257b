//! The CPUs of a slice that has a CPU cap but names no cpuset: ceil(cap) CPUs, so that what
//! programs count (sched_getaffinity: nproc, `make -j$(nproc)`, JVM and Go runtimes sizing
//! their thread pools) matches what the slice may use, and matches the views (/proc/cpuinfo,
//! /proc/stat, /sys/devices/system/cpu/online cut to the same ceil(cap), render.rs). The cap
//! itself stays a CFS quota: 0.5 CPU is half of one CPU.
//!
//! Which CPUs: a window of ceil(cap) consecutive ones of those available, starting at an offset
//! derived from the slice's name, so that many small slices spread over the node rather than
//! all sharing CPU 0 (and a slice keeps its CPUs across restarts and limit changes).

/// The CPUs the caller may run on (its affinity: what a slice's cgroup can be given).
pub fn available() -> Vec<u32> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..nix::sched::CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .map(|i| i as u32)
        .collect()
}

/// The cpuset ("2,3") for a slice named `name` capped at `cpu_max` CPUs, out of `available`
/// (None when there is nothing to choose from or the cap is not positive).
pub fn auto_cpuset(name: &str, cpu_max: f64, available: &[u32]) -> Option<String> {
    if available.is_empty() || !cpu_max.is_finite() || cpu_max <= 0.0 {
        return None;
    }
    let n = (cpu_max.ceil() as usize).clamp(1, available.len());
    let start = fnv1a(name.as_bytes()) as usize % available.len();
    let mut cpus: Vec<u32> = (0..n)
        .map(|i| available[(start + i) % available.len()])
        .collect();
    cpus.sort_unstable();
    Some(
        cpus.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// A small stable hash (not Rust's DefaultHasher, whose output may change between releases:
/// the choice must survive an upgrade).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_of_the_cap_spread_by_name() {
        let all = [0, 1, 2, 3];
        for name in ["a", "b", "web", "db"] {
            let one = auto_cpuset(name, 0.5, &all).unwrap();
            assert_eq!(one.split(',').count(), 1, "{one}");
            assert_eq!(auto_cpuset(name, 1.5, &all).unwrap().split(',').count(), 2);
            assert_eq!(auto_cpuset(name, 9.0, &all).unwrap(), "0,1,2,3");
            // Stable.
            assert_eq!(auto_cpuset(name, 0.5, &all).unwrap(), one);
        }
        let starts: std::collections::HashSet<String> = (0..32)
            .map(|i| auto_cpuset(&format!("s{i}"), 1.0, &all).unwrap())
            .collect();
        assert!(starts.len() > 1, "slices spread over the CPUs");
        assert_eq!(auto_cpuset("a", 1.0, &[]), None);
        assert_eq!(auto_cpuset("a", 0.0, &all), None);
        assert_eq!(auto_cpuset("x", 2.0, &[5, 7]).unwrap(), "5,7");
    }
}
