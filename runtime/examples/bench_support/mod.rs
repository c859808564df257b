//! What the bench programs share: percentiles and units for the figures they print.
#![allow(dead_code)] // each bench uses its own part
use std::time::Duration;

/// The nearest-rank `p` percentile (0..=1) of `sorted` (ascending), `None` when empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    let i = (last as f64 * p).round() as usize;
    Some(sorted[i.min(last)])
}

/// [`percentile`] of millisecond samples in any order (NaN when empty).
pub fn percentile_ms(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, p).unwrap_or(f64::NAN)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
