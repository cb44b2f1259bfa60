//! Small helpers the benchmark harnesses (`harness = false`) share: their
//! environment knobs, the release binary under test, and audit-log times.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// `k` from the environment as a number, else `d`.
pub fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// The ferrolb binary a bench measures: `FERROLB`, else the release build in
/// `$CARGO_TARGET_DIR` (default the repository's `target/`).
pub fn ferrolb_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERROLB") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::kube::repo_root().join("target"));
    target.join("release").join("ferrolb")
}

/// Seconds since the epoch, now.
pub fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since the epoch of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS[.frac]Z`
/// (the API server's audit `stageTimestamp`).
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (h, mi, sec) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    let frac = s
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map(|r| r.trim_end_matches('Z'))
        .and_then(|r| format!("0.{r}").parse::<f64>().ok())
        .unwrap_or(0.0);
    // Days from civil (proleptic Gregorian), H. Hinnant's algorithm.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec) as f64 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        let t = parse_rfc3339("2026-12-04T05:42:08.250000Z").unwrap();
        assert!((t - 1_796_362_928.25).abs() < 1e-6, "{t}");
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
