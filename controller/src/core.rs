//! The controller's decisions, pure: configuration in force, the allocator,
//! and per Service the plan of what to write back — status, the pool
//! annotation, Events. No Kubernetes client, no clock: the shell
//! ([`crate::reconcile`]) fetches a Service, asks [`ControllerCore::plan`] and
//! writes what comes back.
//!
//! What it remembers besides the allocator:
//! - the `AllocationFailed`/`LoadBalancerFailed` note last planned per Service,
//!   so a Service that keeps failing the same way gets one Event;
//! - reasons a configuration change took IPs away, for the Service's next plan
//!   (`ClearAssignment`);
//! - the Services handed to the allocator (to find deletions missed while a
//!   watch was down);
//! - the Services a rejected configuration would strand, so that the
//!   configuration is looked at again when one of them goes or moves.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ferrolb_config::{Config, ConfigGate, Verdict, stranded_message};
use tracing::{debug, info, warn};

use crate::allocator::{
    Allocator, Assignment, Change, PoolSpec, PoolStats, ServiceKey, ServiceRequest,
    allocation_admits,
};
use crate::facts::ServiceFacts;

/// Event reason: IPs were assigned.
pub const REASON_ALLOCATED: &str = "IPAllocated";
/// Event reason: no IP could be assigned.
pub const REASON_FAILED: &str = "AllocationFailed";
/// Event reason: the Service's IPs were taken away.
pub const REASON_CLEARED: &str = "ClearAssignment";
/// Event reason: the Service's request is invalid but it keeps its IPs (MetalLB's reason).
pub const REASON_LB_FAILED: &str = "LoadBalancerFailed";
/// Event reason (on the ConfigMap): the configuration was rejected, as MetalLB says it.
pub const REASON_INVALID_CONFIG: &str = "InvalidConfig";

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Something happened as it should.
    Normal,
    /// Something the user should look at.
    Warning,
}

/// An Event the shell should publish about the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Normal or Warning.
    pub kind: EventKind,
    /// One of the `REASON_*` constants.
    pub reason: &'static str,
    /// The note.
    pub note: String,
}

/// What to write back for one Service. Writes first (status, then annotation), then Events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePlan {
    /// `Some(ips)`: set `status.loadBalancer.ingress` to these (empty: clear it).
    pub ingress: Option<Vec<IpAddr>>,
    /// `Some(Some(pool))`: set the pool annotation; `Some(None)`: remove it.
    pub pool_annotation: Option<Option<String>>,
    /// Events, in order.
    pub events: Vec<PlannedEvent>,
    /// Reconcile every Service again (IPs were freed while others wait, or a
    /// new configuration is in force).
    pub reconcile_all: bool,
}

impl ServicePlan {
    /// Nothing to write and nothing to publish.
    pub fn is_empty(&self) -> bool {
        self.ingress.is_none() && self.pool_annotation.is_none() && self.events.is_empty()
    }

    fn event(&mut self, kind: EventKind, reason: &'static str, note: String) {
        self.events.push(PlannedEvent { kind, reason, note });
    }
}

/// What a configuration offer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigOutcome {
    /// A new configuration is in force.
    pub applied: bool,
    /// Publish this as a Warning `InvalidConfig` Event on the ConfigMap (once per reason).
    pub report: Option<String>,
    /// Reconcile every Service (a new configuration applies).
    pub reconcile_all: bool,
}

/// The controller's state and decisions (see the module documentation).
#[derive(Debug)]
pub struct ControllerCore {
    lb_class: Option<String>,
    gate: ConfigGate,
    /// Built by the initial rebuild (nothing is allocated before it).
    allocator: Option<Allocator>,
    failed: HashMap<ServiceKey, String>,
    pending_clear: HashMap<ServiceKey, String>,
    known: HashSet<ServiceKey>,
    /// Services the rejected configuration would take IPs from.
    stranded: HashSet<ServiceKey>,
    /// Configurations rejected so far (invalid, stranding, or missing).
    pub config_rejections: u64,
}

/// The pools of a config as the allocator wants them.
pub fn pool_specs(cfg: &Config) -> Vec<PoolSpec> {
    cfg.pools
        .iter()
        .map(|p| PoolSpec {
            name: p.name.clone(),
            ranges: p.ranges.iter().map(|r| (r.start, r.end)).collect(),
            auto_assign: p.auto_assign,
            avoid_buggy_ips: p.avoid_buggy_ips,
            allocation: p.service_allocation.clone(),
        })
        .collect()
}

/// Formats IPs like Go's `%q` of a slice: `["10.0.0.1" "fc00::1"]`.
pub fn go_quoted(ips: &[IpAddr]) -> String {
    let inner: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
    format!("[{}]", inner.join(" "))
}

/// Why a Service could not keep `ip` across a restart, in the words of the
/// allocator's own release reasons.
fn lost_reason(cfg: &Config, ip: IpAddr) -> String {
    match cfg.pool_for(ip) {
        None => format!("IP {ip} is no longer in any address pool"),
        Some(p) if p.is_buggy(ip) => {
            format!(
                "IP {ip} is avoided by pool \"{}\" (avoid-buggy-ips)",
                p.name
            )
        }
        Some(_) => format!("IP {ip} is not available to this service"),
    }
}

/// Why `req` may not keep `ip`: its pool's `serviceAllocation` does not
/// admit the Service (any more); `None` when it does or the IP is in no pool.
fn not_admitted(cfg: &Config, req: &ServiceRequest, ip: IpAddr) -> Option<String> {
    let pool = cfg.pool_for(ip)?;
    let sa = pool.service_allocation.as_ref()?;
    (!allocation_admits(sa, &req.key.namespace, &req.namespace_labels, &req.labels)).then(|| {
        format!(
            "IP {ip}: address pool \"{}\" is not for this service (its serviceAllocation does not match the service's namespace or labels)",
            pool.name
        )
    })
}

/// What the allocator said for one LoadBalancer Service of ours.
enum Outcome {
    Assigned(Assignment),
    /// The request is unusable but the Service keeps what it holds (MetalLB's
    /// `LoadBalancerFailed`): the reason.
    Kept(Assignment, String),
    Failed(String),
}

impl ControllerCore {
    /// No configuration, no allocator. `lb_class`: handle only Services of
    /// that `spec.loadBalancerClass` (`None`: those without one).
    pub fn new(lb_class: Option<String>) -> Self {
        ControllerCore {
            lb_class,
            gate: ConfigGate::new(),
            allocator: None,
            failed: HashMap::new(),
            pending_clear: HashMap::new(),
            known: HashSet::new(),
            stranded: HashSet::new(),
            config_rejections: 0,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Option<&Config> {
        self.gate.current()
    }

    /// Does the configuration in force select namespaces by label
    /// (`serviceAllocation.namespaceSelectors`)?
    pub fn uses_namespace_labels(&self) -> bool {
        self.gate.current().is_some_and(|c| {
            c.pools.iter().any(|p| {
                p.service_allocation
                    .as_ref()
                    .is_some_and(|sa| !sa.namespace_selectors.is_empty())
            })
        })
    }

    /// The configuration gate (loaded, stale, rejection).
    pub fn gate(&self) -> &ConfigGate {
        &self.gate
    }

    /// The allocator, once built.
    pub fn allocator(&self) -> Option<&Allocator> {
        self.allocator.as_ref()
    }

    /// Per-pool counters (empty before the allocator is built).
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        self.allocator
            .as_ref()
            .map(Allocator::pool_stats)
            .unwrap_or_default()
    }

    /// The initial rebuild is done.
    pub fn synced(&self) -> bool {
        self.allocator.is_some()
    }

    /// Ready: a configuration is in force and the initial rebuild is done;
    /// otherwise why not.
    pub fn ready(&self) -> Result<(), String> {
        if !self.gate.loaded() {
            return Err(match self.gate.rejection() {
                Some(why) => format!("no valid configuration: {why}"),
                None => "no configuration loaded yet".to_string(),
            });
        }
        if !self.synced() {
            return Err("initial sync not done".to_string());
        }
        Ok(())
    }

    /// Does this Service belong to this controller's load-balancer class?
    pub fn ours(&self, class: Option<&str>) -> bool {
        class == self.lb_class.as_deref()
    }

    /// A configuration text arrived (`None`: the ConfigMap or its key is
    /// missing). See [`ConfigGate`]: a valid one replaces the pools unless it
    /// would take an assigned IP away (then, as with MetalLB, it is rejected,
    /// and looked at again when a Service it would strand goes or moves); IPs
    /// that are only outside their Service's annotated pool now are released
    /// and reassigned at the Service's next plan.
    pub fn offer_config(&mut self, text: Option<&str>) -> ConfigOutcome {
        self.offer_config_with(text, |t| Config::parse(t).map_err(|e| e.to_string()))
    }

    /// As [`ControllerCore::offer_config`] for any source: `revision`
    /// identifies the configuration (`None`: missing) and `parse` builds it
    /// (called only when the revision is new; it gets the revision).
    pub fn offer_config_with(
        &mut self,
        revision: Option<&str>,
        parse: impl FnOnce(&str) -> Result<Config, String>,
    ) -> ConfigOutcome {
        let allocator = &mut self.allocator;
        let stranded = &mut self.stranded;
        let mut changes = Vec::new();
        let verdict = self.gate.offer(revision, parse, |current, next| {
            admit(allocator, stranded, current, next, &mut changes)
        });
        self.settle(verdict, changes)
    }

    /// Look again at a configuration rejected because it would strand IPs.
    fn retry_config(&mut self) -> ConfigOutcome {
        let allocator = &mut self.allocator;
        let stranded = &mut self.stranded;
        let mut changes = Vec::new();
        let verdict = self
            .gate
            .retry(|current, next| admit(allocator, stranded, current, next, &mut changes));
        let out = self.settle(verdict, changes);
        if out.applied {
            info!(
                "a configuration rejected earlier applies now: the Services it would have stranded are gone or moved"
            );
        }
        out
    }

    fn settle(&mut self, verdict: Verdict, changes: Vec<(ServiceKey, Change)>) -> ConfigOutcome {
        match verdict {
            Verdict::Unchanged => ConfigOutcome::default(),
            Verdict::Applied => {
                self.stranded.clear();
                for (key, change) in changes {
                    match change {
                        Change::Released { ips, reason } => {
                            info!(svc = %key, ips = ?ips, %reason, "config change released IPs");
                            self.pending_clear.insert(key, reason);
                        }
                        Change::PoolChanged(a) => {
                            debug!(svc = %key, assignment = ?a, "pool renamed");
                        }
                    }
                }
                if let Some(cfg) = self.gate.current() {
                    info!(summary = %cfg.summary(), "configuration loaded");
                }
                ConfigOutcome {
                    applied: true,
                    report: None,
                    reconcile_all: true,
                }
            }
            Verdict::Rejected { reason, report } => {
                self.config_rejections += 1;
                if self.gate.loaded() {
                    warn!(error = %reason, "configuration rejected, keeping the last good one");
                } else {
                    warn!(error = %reason, "configuration rejected and none loaded before: allocating nothing");
                }
                ConfigOutcome {
                    applied: false,
                    report: report.map(|r| format!("configuration rejected: {r}")),
                    reconcile_all: false,
                }
            }
        }
    }

    /// Builds the allocator from the Services as they are now: those that
    /// show IPs in `status.loadBalancer.ingress` keep them (oldest first when
    /// two claim one), so a restart moves no IP. Services without IPs are
    /// left to their plan, which reads the newest object. Needs a
    /// configuration in force; returns false (and does nothing) without one.
    pub fn rebuild(&mut self, services: &[ServiceFacts]) -> bool {
        let Some(cfg) = self.gate.current() else {
            return false;
        };
        let owned: Vec<ServiceRequest> = services
            .iter()
            .filter(|f| f.load_balancer && self.ours(f.class.as_deref()))
            .filter_map(|f| f.request.as_ref().ok())
            .filter(|r| !r.current.is_empty())
            .cloned()
            .collect();
        match Allocator::rebuild(pool_specs(cfg), &owned) {
            Ok((alloc, results)) => {
                let kept = results.iter().filter(|(_, r)| r.is_ok()).count();
                info!(
                    holding = owned.len(),
                    kept, "allocator rebuilt from the Services' current status"
                );
                // Services that could not keep an IP they show (the config
                // changed while no controller ran): say why when they move.
                let current: HashMap<&ServiceKey, &ServiceRequest> =
                    owned.iter().map(|r| (&r.key, r)).collect();
                for (key, result) in &results {
                    let held = result.as_ref().map(Assignment::addrs).unwrap_or_default();
                    let req = current[key];
                    let lost: Vec<String> = req
                        .current
                        .iter()
                        .filter(|ip| !held.contains(ip))
                        .map(|&ip| {
                            not_admitted(cfg, req, ip).unwrap_or_else(|| lost_reason(cfg, ip))
                        })
                        .collect();
                    if !lost.is_empty() {
                        self.pending_clear.insert(key.clone(), lost.join("; "));
                    }
                }
                self.known = owned.into_iter().map(|r| r.key).collect();
                self.allocator = Some(alloc);
                true
            }
            Err(e) => {
                warn!(error = %e, "pools rejected by the allocator");
                false
            }
        }
    }

    /// A Service disappeared (or is not ours): free what it held. True when
    /// every Service should be reconciled again (freed IPs while others wait,
    /// or a configuration that was waiting for this Service now applies).
    pub fn forget(&mut self, key: &ServiceKey) -> bool {
        let (released, retried) = self.drop_service(key);
        let Some(a) = released else {
            return false;
        };
        info!(svc = %key, ips = ?a.addrs(), "service gone (or not ours), IPs released");
        !self.failed.is_empty() || retried
    }

    /// Forgets everything about `key` and releases what it held; when that
    /// frees IPs a rejected configuration was waiting for, looks at it again.
    /// Returns what was released, and whether that configuration now applies.
    fn drop_service(&mut self, key: &ServiceKey) -> (Option<Assignment>, bool) {
        self.failed.remove(key);
        self.pending_clear.remove(key);
        self.known.remove(key);
        let released = self.allocator.as_mut().and_then(|a| a.release(key));
        let retried =
            released.is_some() && self.stranded.contains(key) && self.retry_config().reconcile_all;
        (released, retried)
    }

    /// Releases every allocation whose Service is not in `present` (after a
    /// watch re-list, deletions missed while disconnected).
    pub fn forget_missing(&mut self, present: &HashSet<ServiceKey>) -> bool {
        let gone: Vec<ServiceKey> = self
            .known
            .iter()
            .chain(self.failed.keys())
            .chain(self.pending_clear.keys())
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        let mut again = false;
        for k in gone {
            again |= self.forget(&k);
        }
        again
    }

    /// The plan for one Service (see [`ServicePlan`]).
    pub fn plan(&mut self, f: &ServiceFacts) -> ServicePlan {
        let mut plan = ServicePlan::default();
        let key = &f.key;
        if !f.load_balancer {
            let held = self
                .allocator
                .as_ref()
                .is_some_and(|a| a.lookup(key).is_some());
            if held || f.ingress_entries > 0 || f.pool_annotation.is_some() {
                self.clear(f, "service is not of type LoadBalancer", &mut plan);
            }
            return plan;
        }
        if !self.ours(f.class.as_deref()) {
            // Another implementation's Service: forget it, touch nothing.
            plan.reconcile_all = self.forget(key);
            return plan;
        }
        let (Some(alloc), Some(cfg)) = (self.allocator.as_mut(), self.gate.current()) else {
            // No valid config yet (or not rebuilt): allocate nothing. The
            // rebuild asks for a full reconcile.
            return plan;
        };
        let mut pending_clear = self.pending_clear.remove(key);
        self.known.insert(key.clone());
        let before = alloc.lookup(key);
        // MetalLB re-checks a held IP against its pool's serviceAllocation
        // and clears it, with an Event, when the labels no longer match.
        if pending_clear.is_none()
            && let (Some(held), Ok(req)) = (&before, &f.request)
        {
            let why: Vec<String> = held
                .addrs()
                .into_iter()
                .filter_map(|ip| not_admitted(cfg, req, ip))
                .collect();
            if !why.is_empty() {
                pending_clear = Some(why.join("; "));
            }
        }
        let outcome = match (&f.request, &before) {
            // As MetalLB: a Service that holds IPs keeps them (and its route)
            // when its request becomes unusable; it is told why.
            (Err(e), Some(held)) => Outcome::Kept(held.clone(), e.to_string()),
            (Err(e), None) => Outcome::Failed(e.to_string()),
            (Ok(req), Some(held)) if req.pool.as_deref().is_some_and(|p| cfg.pool(p).is_none()) => {
                let pool = req.pool.as_deref().unwrap_or_default();
                Outcome::Kept(held.clone(), format!("unknown address pool \"{pool}\""))
            }
            (Ok(req), _) => match alloc.assign(req) {
                Ok(a) => Outcome::Assigned(a),
                Err(e) => Outcome::Failed(e.to_string()),
            },
        };
        let after: Vec<IpAddr> = alloc.lookup(key).map(|a| a.addrs()).unwrap_or_default();
        let moved = before.as_ref().map(Assignment::addrs).unwrap_or_default() != after;

        if let Some(reason) = pending_clear {
            plan.event(
                EventKind::Normal,
                REASON_CLEARED,
                format!(
                    "current IP {} not allowed by config, clearing: {reason}",
                    go_quoted(&f.shown)
                ),
            );
        }
        match outcome {
            Outcome::Assigned(a) => {
                self.failed.remove(key);
                let ips = a.addrs();
                if sync_status(f, &a, &mut plan) {
                    info!(svc = %key, ips = ?ips, "IP assigned");
                    plan.event(
                        EventKind::Normal,
                        REASON_ALLOCATED,
                        format!("Assigned IP {}", go_quoted(&ips)),
                    );
                }
            }
            Outcome::Kept(a, reason) => {
                sync_status(f, &a, &mut plan);
                let note = format!(
                    "invalid request for \"{key}\", keeping IP {}: {reason}",
                    go_quoted(&a.addrs())
                );
                if self.failed.insert(key.clone(), note.clone()).as_ref() != Some(&note) {
                    warn!(svc = %key, %reason, "invalid request, IPs kept");
                    plan.event(EventKind::Warning, REASON_LB_FAILED, note);
                }
            }
            Outcome::Failed(reason) => {
                if f.ingress_entries > 0 {
                    plan.ingress = Some(Vec::new());
                }
                if f.pool_annotation.is_some() {
                    plan.pool_annotation = Some(None);
                }
                let note = format!("Failed to allocate IP for \"{key}\": {reason}");
                if self.failed.insert(key.clone(), note.clone()).as_ref() != Some(&note) {
                    warn!(svc = %key, %reason, "allocation failed");
                    plan.event(EventKind::Warning, REASON_FAILED, note);
                }
                // What it held before is free now: others may be waiting.
                if before.is_some() && self.failed.len() > 1 {
                    plan.reconcile_all = true;
                }
            }
        }
        if moved && self.stranded.contains(key) {
            plan.reconcile_all |= self.retry_config().reconcile_all;
        }
        plan
    }

    /// Takes the IPs away from a Service that is not (or no longer) a LoadBalancer.
    fn clear(&mut self, f: &ServiceFacts, why: &str, plan: &mut ServicePlan) {
        let key = &f.key;
        let (released, retried) = self.drop_service(key);
        if f.ingress_entries > 0 {
            plan.ingress = Some(Vec::new());
        }
        if f.pool_annotation.is_some() {
            plan.pool_annotation = Some(None);
        }
        if released.is_some() || !f.shown.is_empty() {
            let ips = released
                .as_ref()
                .map(Assignment::addrs)
                .unwrap_or_else(|| f.shown.clone());
            info!(svc = %key, ips = ?ips, why, "assignment cleared");
            plan.event(
                EventKind::Normal,
                REASON_CLEARED,
                format!("{why}, clearing IP {}", go_quoted(&ips)),
            );
            plan.reconcile_all = !self.failed.is_empty() || retried;
        }
    }
}

/// Plans the status and annotation writes that make the Service show `a`;
/// true when the status changes (an `IPAllocated` moment).
fn sync_status(f: &ServiceFacts, a: &Assignment, plan: &mut ServicePlan) -> bool {
    let ips = a.addrs();
    let status_changes = f.shown != ips || f.ingress_entries != ips.len();
    if status_changes {
        plan.ingress = Some(ips);
    }
    let pool = a.ips.first().map(|(_, p)| p.clone());
    if f.pool_annotation != pool {
        plan.pool_annotation = Some(pool);
    }
    status_changes
}

/// The running state's admission check for a new configuration: it must not
/// take an assigned IP away (MetalLB); then its pools go to the allocator.
fn admit(
    allocator: &mut Option<Allocator>,
    stranded: &mut HashSet<ServiceKey>,
    current: Option<&Config>,
    next: &Config,
    changes: &mut Vec<(ServiceKey, Change)>,
) -> Result<(), String> {
    if let (Some(alloc), Some(current)) = (allocator.as_ref(), current) {
        let held: Vec<(ServiceKey, Vec<IpAddr>)> = alloc.held().collect();
        let mut lost = current.strands(next, held.iter().map(|(k, ips)| (k, &ips[..])));
        if !lost.is_empty() {
            lost.sort();
            *stranded = lost.iter().map(|(k, _)| (*k).clone()).collect();
            return Err(stranded_message(&lost));
        }
    }
    if let Some(alloc) = allocator.as_mut() {
        // Config validation rules out what the allocator rejects; treat it
        // like an invalid config all the same.
        *changes = alloc
            .set_pools(pool_specs(next))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_config::{NodeSelector, ServiceAllocation};

    #[test]
    fn not_admitted_names_the_pool_whose_allocation_refuses() {
        let mut cfg = Config::parse(
            "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/30]}\n- {name: b, protocol: bgp, addresses: [10.0.1.0/30]}\n",
        )
        .unwrap();
        cfg.pools[0].service_allocation = Some(ServiceAllocation {
            service_selectors: vec![NodeSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                match_expressions: Vec::new(),
            }],
            ..Default::default()
        });
        let mut req = ServiceRequest::new(ServiceKey::new("ns", "s"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let why = not_admitted(&cfg, &req, ip("10.0.0.1")).unwrap();
        assert!(
            why.contains("address pool \"a\" is not for this service"),
            "{why}"
        );
        // A pool without an allocation, or an IP in no pool: no such reason.
        assert_eq!(not_admitted(&cfg, &req, ip("10.0.1.1")), None);
        assert_eq!(not_admitted(&cfg, &req, ip("10.9.9.9")), None);
        std::sync::Arc::make_mut(&mut req.labels).insert("app".into(), "web".into());
        assert_eq!(not_admitted(&cfg, &req, ip("10.0.0.1")), None);
    }
}
