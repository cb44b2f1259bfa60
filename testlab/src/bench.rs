//! Small helpers the benchmark harnesses (`harness = false`) share: their
//! environment knobs, the release binary under test, and the API server's
//! audit log (which requests, when, how many per second).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};

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

/// Whether this harness runs under `cargo bench` (which passes `--bench`).
/// `cargo test --all-targets` (scripts/test) runs `harness = false` benches
/// too, without it, and a bench of many minutes has no place there: then
/// this says so on stderr (`name`, and `script`, the way to run it) and is
/// false.
pub fn under_cargo_bench(name: &str, script: &str) -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        eprintln!("{name}: not under `cargo bench` (use {script}); nothing to do");
    }
    yes
}

/// [`ferrolb_bin`], which must exist.
pub fn existing_ferrolb_bin() -> Result<PathBuf> {
    let bin = ferrolb_bin();
    anyhow::ensure!(
        bin.exists(),
        "no ferrolb binary at {} (cargo build --release, or set FERROLB)",
        bin.display()
    );
    Ok(bin)
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

/// Runs `f(0)`, …, `f(n - 1)` (API writes, typically) with at most `width`
/// in flight at once; the first error ends it.
pub async fn concurrently<F, Fut>(n: usize, width: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        if set.len() >= width.max(1)
            && let Some(r) = set.join_next().await
        {
            r??;
        }
        set.spawn(f(i));
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// An audit policy that records every request at the Metadata level (who,
/// verb, resource, when; no bodies).
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
";

/// Writes [`AUDIT_POLICY`] into `dir` and returns the kube-apiserver flags
/// that log every request as JSON lines to `dir/audit.log`, and that path.
pub fn audit_args(dir: &Path) -> Result<(Vec<String>, PathBuf)> {
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).with_context(|| policy.display().to_string())?;
    let log = dir.join("audit.log");
    Ok((
        vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", log.display()),
            "--audit-log-format=json".to_string(),
            // Unset, the log is rotated at 100 MB (lumberjack's default) and
            // a reader of `audit.log` alone loses the older requests.
            "--audit-log-maxsize=1000000".to_string(),
        ],
        log,
    ))
}

/// One request the audit log recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditReq {
    /// When the API server received it (seconds since the epoch), so that a
    /// watch counts when it was opened, not when it ended.
    pub at: f64,
    /// `get`, `list`, `watch`, `create`, `patch`, ...
    pub verb: String,
    /// Resource, with `/subresource` when there is one; `-` for non-resource URLs.
    pub resource: String,
    /// The client's User-Agent.
    pub user_agent: String,
    /// Sent by a `system:` user (the API server's own loopback requests).
    pub system_user: bool,
}

/// The requests in an audit log written with [`audit_args`], once each
/// (a watch has a ResponseStarted and a ResponseComplete line), in file order.
pub fn read_audit(path: &Path) -> Result<Vec<AuditReq>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Ok(parse_audit(&text))
}

/// [`read_audit`] on the log's text.
pub fn parse_audit(text: &str) -> Vec<AuditReq> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if !matches!(
            v["stage"].as_str(),
            Some("ResponseStarted" | "ResponseComplete" | "Panic")
        ) {
            continue;
        }
        let Some(id) = v["auditID"].as_str() else {
            continue;
        };
        let Some(at) = v["requestReceivedTimestamp"]
            .as_str()
            .and_then(parse_rfc3339)
        else {
            continue;
        };
        if !seen.insert(id.to_string()) {
            continue;
        }
        let resource = v["objectRef"]["resource"].as_str().unwrap_or("-");
        let sub = v["objectRef"]["subresource"].as_str().unwrap_or_default();
        out.push(AuditReq {
            at,
            verb: v["verb"].as_str().unwrap_or_default().to_string(),
            resource: if sub.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}/{sub}")
            },
            user_agent: v["userAgent"].as_str().unwrap_or_default().to_string(),
            system_user: v["user"]["username"]
                .as_str()
                .is_some_and(|u| u.starts_with("system:")),
        });
    }
    out
}

/// Requests counted over a time window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// How many.
    pub total: usize,
    /// The most received within one wall-clock second.
    pub busiest_second: usize,
    /// `"verb resource"` → how many.
    pub by: BTreeMap<String, usize>,
}

/// The requests of `reqs` received in `[from, to)` for which `keep` is true.
pub fn tally<'a>(
    reqs: impl IntoIterator<Item = &'a AuditReq>,
    from: f64,
    to: f64,
    keep: impl Fn(&AuditReq) -> bool,
) -> Tally {
    let mut t = Tally::default();
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for r in reqs
        .into_iter()
        .filter(|r| r.at >= from && r.at < to && keep(r))
    {
        t.total += 1;
        *t.by
            .entry(format!("{} {}", r.verb, r.resource))
            .or_insert(0) += 1;
        *per_second.entry(r.at.floor() as i64).or_insert(0) += 1;
    }
    t.busiest_second = per_second.values().copied().max().unwrap_or(0);
    t
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

    #[test]
    fn concurrently_runs_each_once_within_its_width() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (now, peak, sum) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        rt.block_on(concurrently(20, 3, |i| {
            let (now, peak, sum) = (now.clone(), peak.clone(), sum.clone());
            async move {
                let k = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(k, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                sum.fetch_add(i, Ordering::SeqCst);
                Ok(())
            }
        }))
        .unwrap();
        assert_eq!(sum.load(Ordering::SeqCst), (0..20).sum::<usize>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        let err = rt.block_on(concurrently(5, 2, |i| async move {
            anyhow::ensure!(i != 3, "write {i} failed");
            Ok(())
        }));
        assert!(err.unwrap_err().to_string().contains("write 3 failed"));
    }

    #[test]
    fn audit_lines_once_per_request_at_their_start() {
        let line = |id: &str, stage: &str, verb: &str, sub: &str, at: &str, user: &str| {
            format!(
                r#"{{"auditID":"{id}","stage":"{stage}","verb":"{verb}","userAgent":"ua","user":{{"username":"{user}"}},"objectRef":{{"resource":"services","subresource":"{sub}"}},"requestReceivedTimestamp":"{at}","stageTimestamp":"2026-12-04T00:09:00Z"}}"#
            )
        };
        let text = [
            line(
                "a",
                "ResponseStarted",
                "watch",
                "",
                "2026-12-04T00:00:01.5Z",
                "admin",
            ),
            line(
                "b",
                "ResponseComplete",
                "patch",
                "status",
                "2026-12-04T00:00:01.9Z",
                "admin",
            ),
            line(
                "a",
                "ResponseComplete",
                "watch",
                "",
                "2026-12-04T00:00:01.5Z",
                "admin",
            ),
            line(
                "c",
                "ResponseComplete",
                "get",
                "",
                "2026-12-04T00:00:03Z",
                "system:apiserver",
            ),
            "not json".to_string(),
        ]
        .join("\n");
        let reqs = parse_audit(&text);
        assert_eq!(reqs.len(), 3, "{reqs:?}");
        assert_eq!(reqs[1].resource, "services/status");
        assert!(reqs[2].system_user && !reqs[0].system_user);
        let base = parse_rfc3339("2026-12-04T00:00:00Z").unwrap();
        let t = tally(&reqs, base, base + 10.0, |r| !r.system_user);
        assert_eq!(t.total, 2);
        assert_eq!(t.busiest_second, 2);
        assert_eq!(t.by.get("watch services"), Some(&1));
        assert_eq!(t.by.get("patch services/status"), Some(&1));
        // The watch counts when it was opened, not when it ended (00:09:00).
        assert_eq!(tally(&reqs, base + 2.0, base + 1e6, |_| true).total, 1);
    }
}
