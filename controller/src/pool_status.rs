//! `IPAddressPool` status (`assignedIPv4`, `assignedIPv6`, `availableIPv4`,
//! `availableIPv6`), as MetalLB v0.14+ keeps it: a pure computation from the
//! allocator's [`PoolStats`] ([`status_of`]), a pure coalescer deciding which
//! pools to write now ([`Coalescer`]), and a thin task ([`run`]) that merge-patches
//! `/apis/metallb.io/v1beta1/namespaces/NS/ipaddresspools/NAME/status`.
//!
//! Writes happen only while the pools come from custom resources (a
//! ConfigMap's pools have no object to write to), only when a pool's value
//! changed since the last write, at most once per pool per interval (one
//! second), and once for every pool when writing starts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::allocator::PoolStats;
use crate::reconcile::Context;

/// Counts at or above this are shown as `i64::MAX`: MetalLB does so for any
/// CIDR with 62 or more host bits ("will never run out").
pub const HUGE: u128 = 1 << 62;

/// The status of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// `assignedIPv4`: distinct IPv4 addresses in use.
    pub assigned_v4: i64,
    /// `assignedIPv6`: distinct IPv6 addresses in use.
    pub assigned_v6: i64,
    /// `availableIPv4`: assignable IPv4 addresses (buggy ones excluded when
    /// avoided) minus those in use.
    pub available_v4: i64,
    /// `availableIPv6`: the same for IPv6; a pool of 2^62 or more IPv6
    /// addresses counts `i64::MAX` of them.
    pub available_v6: i64,
}

impl PoolStatus {
    /// The JSON `status` object.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "assignedIPv4": self.assigned_v4,
            "assignedIPv6": self.assigned_v6,
            "availableIPv4": self.available_v4,
            "availableIPv6": self.available_v6,
        })
    }
}

fn clamp(n: u128) -> i64 {
    if n >= HUGE { i64::MAX } else { n as i64 }
}

/// The status MetalLB would show for a pool with these counters. Saturates
/// instead of overflowing (MetalLB's int64 sum can wrap when a huge IPv6
/// CIDR is followed by another).
pub fn status_of(s: &PoolStats) -> PoolStatus {
    let (used4, used6) = (clamp(s.in_use_v4), clamp(s.in_use_v6));
    PoolStatus {
        assigned_v4: used4,
        assigned_v6: used6,
        available_v4: clamp(s.total_v4).saturating_sub(used4).max(0),
        available_v6: clamp(s.total_v6).saturating_sub(used6).max(0),
    }
}

/// Which pools to write, when. Pure: the time is passed in.
#[derive(Debug, Clone)]
pub struct Coalescer {
    interval: Duration,
    /// What each pool's status was last written as.
    written: HashMap<String, PoolStatus>,
    /// When each pool was last written (or a write was attempted).
    last: HashMap<String, Instant>,
}

/// What [`Coalescer::due`] says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Due {
    /// Write these now.
    pub writes: Vec<(String, PoolStatus)>,
    /// Look again at this time: a changed pool was written too recently.
    pub next: Option<Instant>,
}

impl Coalescer {
    /// At most one write per pool per `interval`.
    pub fn new(interval: Duration) -> Self {
        Coalescer {
            interval,
            written: HashMap::new(),
            last: HashMap::new(),
        }
    }

    /// The pools among `current` to write at `now`: those whose status
    /// differs from the last one written (every pool, the first time),
    /// unless written less than an interval ago. Pools not in `current` are
    /// forgotten (a pool that comes back is written again).
    pub fn due(&mut self, now: Instant, current: &[(String, PoolStatus)]) -> Due {
        let names: HashSet<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
        self.written.retain(|n, _| names.contains(n.as_str()));
        self.last.retain(|n, _| names.contains(n.as_str()));
        let mut due = Due::default();
        for (name, status) in current {
            if self.written.get(name) == Some(status) {
                continue;
            }
            match self.last.get(name) {
                Some(&t) if now < t + self.interval => {
                    let at = t + self.interval;
                    due.next = Some(due.next.map_or(at, |n| n.min(at)));
                }
                _ => due.writes.push((name.clone(), *status)),
            }
        }
        due
    }

    /// `name` was written as `status` at `now`.
    pub fn wrote(&mut self, name: &str, status: PoolStatus, now: Instant) {
        self.written.insert(name.to_string(), status);
        self.last.insert(name.to_string(), now);
    }

    /// A write of `name` failed at `now`: try again after the interval.
    pub fn failed(&mut self, name: &str, now: Instant) {
        self.last.insert(name.to_string(), now);
    }

    /// Forget everything: the next [`Coalescer::due`] writes every pool.
    pub fn reset(&mut self) {
        self.written.clear();
        self.last.clear();
    }
}

/// The `metallb.io/v1beta1` `IPAddressPool` resource.
pub fn ip_address_pool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metallb.io", "v1beta1", "IPAddressPool"),
        "ipaddresspools",
    )
}

/// Merge-patches the status of pool `name`. A missing pool (404) is not an
/// error: its custom resource is gone and the configuration follows.
pub async fn write_status(
    api: &Api<DynamicObject>,
    name: &str,
    status: &PoolStatus,
) -> Result<(), kube::Error> {
    let body = json!({"status": status.to_json()});
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            debug!(pool = name, "IPAddressPool not found, status not written");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Writes pool statuses while `enabled()` says the pools are custom
/// resources in `namespace`. Wakes on `dirty` (allocation changed) and at
/// least every 30 s, computes the statuses at most once per `interval`, and
/// writes what [`Coalescer`] says; every pool again after a configuration
/// applied ([`Context::pools_generation`] moved). Runs until aborted.
pub async fn run(
    client: Client,
    namespace: String,
    ctx: Arc<Context>,
    dirty: Arc<Notify>,
    enabled: Arc<dyn Fn() -> bool + Send + Sync>,
    interval: Duration,
) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, &namespace, &ip_address_pool_resource());
    let mut co = Coalescer::new(interval);
    let mut next: Option<Instant> = None;
    let mut generation = ctx.pools_generation();
    loop {
        let wait = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(30));
        tokio::select! {
            () = dirty.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        next = None;
        let g = ctx.pools_generation();
        if !enabled() || g != generation {
            // Disabled, or a configuration applied: write every pool again.
            generation = g;
            co.reset();
        }
        if !enabled() {
            continue;
        }
        let stats = {
            let core = ctx.core();
            if !core.synced() {
                continue;
            }
            core.pool_stats()
        };
        let current: Vec<(String, PoolStatus)> = stats
            .iter()
            .map(|s| (s.name.clone(), status_of(s)))
            .collect();
        let due = co.due(Instant::now(), &current);
        next = due.next;
        for (name, status) in due.writes {
            match write_status(&api, &name, &status).await {
                Ok(()) => co.wrote(&name, status, Instant::now()),
                Err(e) => {
                    warn!(pool = %name, error = %e, "writing IPAddressPool status");
                    co.failed(&name, Instant::now());
                    let at = Instant::now() + interval;
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        // Bound the work: statuses are computed at most once per interval.
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(total_v4: u128, in_use_v4: u128, total_v6: u128, in_use_v6: u128) -> PoolStats {
        PoolStats {
            name: "p".into(),
            total: total_v4.saturating_add(total_v6),
            total_v4,
            total_v6,
            in_use: in_use_v4 + in_use_v6,
            in_use_v4,
            in_use_v6,
            services: 0,
        }
    }

    #[test]
    fn status_counts_and_saturation() {
        assert_eq!(
            status_of(&stats(254, 3, 0, 0)),
            PoolStatus {
                assigned_v4: 3,
                assigned_v6: 0,
                available_v4: 251,
                available_v6: 0
            }
        );
        // A /64: MetalLB shows MaxInt64 minus what is assigned.
        let s = status_of(&stats(0, 0, 1 << 64, 2));
        assert_eq!((s.assigned_v6, s.available_v6), (2, i64::MAX - 2));
        // 2^62 is where MetalLB switches to MaxInt64; just below is exact.
        assert_eq!(
            status_of(&stats(0, 0, (1 << 62) - 1, 0)).available_v6,
            (1 << 62) - 1
        );
        assert_eq!(status_of(&stats(0, 0, 1 << 62, 0)).available_v6, i64::MAX);
        assert_eq!(
            status_of(&stats(0, 0, u128::MAX, 5)).available_v6,
            i64::MAX - 5
        );
        assert_eq!(
            status_of(&stats(4, 1, 8, 8)).to_json(),
            json!({"assignedIPv4": 1, "assignedIPv6": 8, "availableIPv4": 3, "availableIPv6": 0})
        );
    }

    fn st(a: i64) -> PoolStatus {
        PoolStatus {
            assigned_v4: a,
            available_v4: 10 - a,
            ..Default::default()
        }
    }

    fn names(d: &Due) -> Vec<&str> {
        d.writes.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn coalescing_once_per_pool_per_interval_and_only_on_change() {
        let sec = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut co = Coalescer::new(sec);
        let cur = vec![("a".to_string(), st(0)), ("b".to_string(), st(0))];
        // Start: every pool once.
        let d = co.due(t0, &cur);
        assert_eq!(names(&d), ["a", "b"]);
        assert_eq!(d.next, None);
        for (n, s) in &d.writes {
            co.wrote(n, *s, t0);
        }
        // Nothing changed: nothing to write.
        assert_eq!(co.due(t0 + 5 * sec, &cur), Due::default());
        // a changes 0.2 s after its write: deferred to t0 + 1 s.
        let t = t0 + Duration::from_millis(200);
        let cur = vec![("a".to_string(), st(1)), ("b".to_string(), st(0))];
        let d = co.due(t, &cur);
        assert!(d.writes.is_empty());
        assert_eq!(d.next, Some(t0 + sec));
        // a changes again before then: still one write, of the latest value.
        let cur = vec![("a".to_string(), st(2)), ("b".to_string(), st(0))];
        let d = co.due(t0 + sec, &cur);
        assert_eq!(d.writes, vec![("a".to_string(), st(2))]);
        co.wrote("a", st(2), t0 + sec);
        // Changed back to what was written: nothing to do.
        assert_eq!(co.due(t0 + 3 * sec, &cur), Due::default());
        // A failed write is retried after the interval, not before.
        let cur = vec![("a".to_string(), st(3)), ("b".to_string(), st(0))];
        let t = t0 + 4 * sec;
        assert_eq!(names(&co.due(t, &cur)), ["a"]);
        co.failed("a", t);
        let d = co.due(t + Duration::from_millis(10), &cur);
        assert!(d.writes.is_empty());
        assert_eq!(d.next, Some(t + sec));
        assert_eq!(names(&co.due(t + sec, &cur)), ["a"]);
        // A pool that leaves and comes back is written again; reset writes all.
        co.wrote("a", st(3), t + sec);
        let only_b = vec![("b".to_string(), st(0))];
        assert_eq!(co.due(t + 9 * sec, &only_b), Due::default());
        assert_eq!(names(&co.due(t + 9 * sec, &cur)), ["a"]);
        co.reset();
        assert_eq!(names(&co.due(t + 9 * sec, &cur)), ["a", "b"]);
    }
}
