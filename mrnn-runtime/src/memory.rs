//! Memory estimates checked before large allocations: a request that cannot fit is refused with
//! the estimate and the limit, instead of the allocator aborting the process halfway through.
//!
//! The limit is the memory the system reports available when the check runs (`MemAvailable` in
//! `/proc/meminfo`), or `MRNN_MEMORY_LIMIT` when set (bytes, or with a `K`, `M`, `G` or `T`
//! suffix, powers of 1024: `MRNN_MEMORY_LIMIT=8G`). Where neither is known, 16 GiB.
//!
//! ```
//! use mrnn_runtime::memory;
//! // A [100000, 100000] f32 matrix is 40 GB: refused on any ordinary machine, before allocating.
//! let need = memory::f32_bytes(&[100_000, 100_000]);
//! assert_eq!(need, 40_000_000_000);
//! memory::ensure_fits("a [100000, 100000] matrix", need.saturating_mul(1_000)).unwrap_err();
//! memory::ensure_fits("a [10, 10] matrix", memory::f32_bytes(&[10, 10])).unwrap();
//! ```

use crate::{Error, Result};

/// The environment variable that sets the limit (bytes, or `512M`, `8G`, ...).
pub const LIMIT_VARIABLE: &str = "MRNN_MEMORY_LIMIT";

/// The limit used when neither the variable nor `/proc/meminfo` tells one: 16 GiB.
const FALLBACK_LIMIT: u64 = 16 << 30;

/// Bytes of `f32` tensors with these dims (saturating: an absurd request never wraps around to a
/// small number).
#[must_use]
pub fn f32_bytes(dims: &[usize]) -> u64 {
    elements(dims).saturating_mul(4)
}

/// Bytes of `f64` tensors with these dims (saturating).
#[must_use]
pub fn f64_bytes(dims: &[usize]) -> u64 {
    elements(dims).saturating_mul(8)
}

/// The number of elements of a tensor with these dims (saturating).
#[must_use]
pub fn elements(dims: &[usize]) -> u64 {
    dims.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
}

/// The memory a process may use now, in bytes: `MRNN_MEMORY_LIMIT` if set, else the available
/// memory the system reports, else 16 GiB. A malformed variable is an error naming it.
pub fn limit() -> Result<u64> {
    if let Ok(text) = std::env::var(LIMIT_VARIABLE) {
        return parse_size(&text).ok_or_else(|| {
            Error::Invalid(format!(
                "{LIMIT_VARIABLE}=`{text}` is not a size (expected bytes, or a number with K, M, G or T, e.g. `8G`)"
            ))
        });
    }
    Ok(available().unwrap_or(FALLBACK_LIMIT))
}

/// Refuses, before anything is allocated, a request of `bytes` that exceeds [`limit`]; the error
/// says what needed the memory, how much, and the limit.
pub fn ensure_fits(what: impl std::fmt::Display, bytes: u64) -> Result<()> {
    let limit = limit()?;
    if bytes > limit {
        return Err(Error::TooLarge { what: what.to_string(), needed: bytes, limit });
    }
    Ok(())
}

/// A byte count for people: `512 B`, `3.2 MiB`, `40.0 GiB`, `1.2e6 TiB`.
#[must_use]
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        value /= 1024.0;
        unit = u;
        if value < 1024.0 {
            break;
        }
    }
    if value >= 1e4 { format!("{value:.1e} {unit}") } else { format!("{value:.1} {unit}") }
}

/// `123`, `64K`, `512M`, `8G`, `1T` (powers of 1024; a trailing `B` or `iB` is allowed).
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (digits, shift) = match t.char_indices().last()? {
        (i, 'K' | 'k') => (&t[..i], 10),
        (i, 'M' | 'm') => (&t[..i], 20),
        (i, 'G' | 'g') => (&t[..i], 30),
        (i, 'T' | 't') => (&t[..i], 40),
        _ => (t, 0),
    };
    let value: f64 = digits.trim().parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let bytes = value * (1u64 << shift) as f64;
    (bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        for bad in ["", "G", "-1G", "lots", "NaN", "1e400"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_saturate_instead_of_wrapping() {
        assert_eq!(f32_bytes(&[usize::MAX, usize::MAX]), u64::MAX);
        assert_eq!(f64_bytes(&[3, 5]), 120);
        assert_eq!(elements(&[]), 1);
    }

    #[test]
    fn the_system_reports_some_memory() {
        assert!(available().is_some_and(|b| b > 0) || !std::path::Path::new("/proc").exists());
    }

    #[test]
    fn humane_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
        assert_eq!(human(40_000_000_000), "37.3 GiB");
        assert!(human(u64::MAX).ends_with("TiB"));
    }
}
