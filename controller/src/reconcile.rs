//! Kubernetes glue: Service objects in, allocator calls, status patches,
//! annotations and Events out.
//!
//! The decisions are made by the pure [`Allocator`]; this module turns a
//! `Service` into a [`ServiceRequest`], asks the allocator, and writes back only
//! what differs from what the Service already shows:
//! - `status.loadBalancer.ingress` (JSON merge patch on `/status`),
//! - the `metallb.universe.tf/ip-allocated-from-pool` annotation (merge patch on
//!   the object),
//! - Events `IPAllocated`, `AllocationFailed` (Warning) and `ClearAssignment`,
//!   published through kube's [`Recorder`] (events.k8s.io/v1).
//!
//! All shared state lives in [`Context`] behind one mutex that is never held
//! across an `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferrolb_config::{Config, stranded_message};
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::allocator::{
    AllocError, Allocator, Assignment, Change, FamilyPolicy, IpFamily, PoolSpec, Protocol,
    ServiceKey, ServiceRequest, TrafficPolicy,
};
use crate::service::{RequestError, parse_annotations};

/// Annotation the controller writes: the pool the Service's IPs come from.
pub const POOL_ANNOTATION: &str = "metallb.universe.tf/ip-allocated-from-pool";
/// `reportingController` of the Events.
pub const REPORTING_CONTROLLER: &str = "ferrolb-controller";
/// Event reason: IPs were assigned.
pub const REASON_ALLOCATED: &str = "IPAllocated";
/// Event reason: no IP could be assigned.
pub const REASON_FAILED: &str = "AllocationFailed";
/// Event reason: the Service's IPs were taken away.
pub const REASON_CLEARED: &str = "ClearAssignment";
/// Event reason (on the ConfigMap): the configuration was rejected, as MetalLB says it.
pub const REASON_INVALID_CONFIG: &str = "InvalidConfig";
/// Longest Event note the API server takes (events.k8s.io/v1).
const NOTE_MAX: usize = 1024;

/// An error of one reconcile (retried by the controller with a delay).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace or no name.
    #[error("service without namespace or name")]
    NoKey,
}

/// Counters shown on `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Failed reconciles (`ferrolb_reconcile_errors_total`).
    pub reconcile_errors: AtomicU64,
    /// Invalid configurations seen (`ferrolb_config_errors_total`).
    pub config_errors: AtomicU64,
    /// Events that could not be published.
    pub event_errors: AtomicU64,
}

/// Mutable state shared by the reconciles, the config watcher and `/metrics`.
#[derive(Debug, Default)]
pub struct State {
    /// The last valid configuration, if any was ever loaded.
    pub config: Option<Config>,
    /// The allocator; `None` until a valid config is loaded and the
    /// Services have been read (rebuild): until then nothing is allocated.
    pub allocator: Option<Allocator>,
    /// The last configuration seen was invalid (running on `config`).
    pub config_stale: bool,
    /// Why the latest configuration text was not applied (invalid, or it
    /// would strand assigned IPs); `None` once one is applied.
    pub rejected: Option<String>,
    /// Why nothing is allocated yet (no/invalid config), for `/readyz` and logs.
    pub not_ready_reason: Option<String>,
    /// Initial rebuild done and the first full reconcile requested.
    pub synced: bool,
    /// The `AllocationFailed` message last published per Service, so a
    /// Service that keeps failing the same way gets one Event, not one per
    /// reconcile.
    failed: HashMap<ServiceKey, String>,
    /// Reasons a config change took IPs away, published as `ClearAssignment`
    /// at the Service's next reconcile.
    pending_clear: HashMap<ServiceKey, String>,
    /// Services given to the allocator (so deletions missed during a watch
    /// re-list can be found).
    known: HashSet<ServiceKey>,
}

/// Everything a reconcile needs.
pub struct Context {
    client: Client,
    lb_class: Option<String>,
    reporter: Reporter,
    state: Mutex<State>,
    /// Counters for `/metrics`.
    pub counters: Counters,
    reconcile_all: mpsc::UnboundedSender<()>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("lb_class", &self.lb_class)
            .finish_non_exhaustive()
    }
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

/// The pools of a config as the allocator wants them.
pub fn pool_specs(cfg: &Config) -> Vec<PoolSpec> {
    cfg.pools
        .iter()
        .map(|p| PoolSpec {
            name: p.name.clone(),
            ranges: p.ranges.iter().map(|r| (r.start, r.end)).collect(),
            auto_assign: p.auto_assign,
            avoid_buggy_ips: p.avoid_buggy_ips,
        })
        .collect()
}

/// The identity of a Service.
pub fn service_key(svc: &Service) -> Option<ServiceKey> {
    Some(ServiceKey::new(svc.namespace()?, svc.meta().name.clone()?))
}

/// `status.loadBalancer.ingress[].ip` (entries without an IP, or with text
/// that is not one, are skipped).
pub fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| {
            ing.iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn has_ingress(svc: &Service) -> bool {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

fn is_load_balancer(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_some_and(|t| t == "LoadBalancer")
}

/// Formats IPs like Go's `%q` of a slice: `["10.0.0.1" "fc00::1"]`.
pub fn go_quoted(ips: &[IpAddr]) -> String {
    let inner: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
    format!("[{}]", inner.join(" "))
}

/// Builds the allocator's view of a Service. Errors are problems in the
/// annotations or `spec.loadBalancerIP`.
pub fn build_request(svc: &Service) -> Result<ServiceRequest, RequestError> {
    let key = service_key(svc).unwrap_or_default();
    let spec = svc.spec.clone().unwrap_or_default();
    let annotations: BTreeMap<String, String> = svc.annotations().clone();
    let (requested_ips, pool, sharing_key) =
        parse_annotations(&annotations, spec.load_balancer_ip.as_deref())?;
    let families = spec
        .ip_families
        .unwrap_or_default()
        .iter()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        })
        .collect();
    let family_policy = match spec.ip_family_policy.as_deref() {
        Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
        _ => FamilyPolicy::SingleStack,
    };
    let ports = spec
        .ports
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let proto = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                _ => return None,
            };
            u16::try_from(p.port).ok().map(|port| (proto, port))
        })
        .collect();
    let traffic_policy = match spec.external_traffic_policy.as_deref() {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    };
    Ok(ServiceRequest {
        key,
        families,
        family_policy,
        requested_ips,
        pool,
        sharing_key,
        ports,
        traffic_policy,
        selector: spec.selector.unwrap_or_default(),
        current: ingress_ips(svc),
        created: svc
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
    })
}

/// What the reconcile decided for a LoadBalancer Service.
enum Outcome {
    Assigned(Assignment),
    Failed(String),
}

impl Context {
    /// A context with no config loaded. The receiver yields once per
    /// "reconcile every Service" request (config change, freed IPs).
    pub fn new(
        client: Client,
        lb_class: Option<String>,
        instance: Option<String>,
    ) -> (Context, mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = mpsc::unbounded();
        let ctx = Context {
            client,
            lb_class,
            reporter: Reporter {
                controller: REPORTING_CONTROLLER.to_string(),
                instance,
            },
            state: Mutex::new(State {
                not_ready_reason: Some("no configuration loaded yet".to_string()),
                ..State::default()
            }),
            counters: Counters::default(),
            reconcile_all: tx,
        };
        (ctx, rx)
    }

    /// The shared state (poisoning is ignored: the state stays usable).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the controller to reconcile every Service.
    pub fn request_reconcile_all(&self) {
        let _ = self.reconcile_all.unbounded_send(());
    }

    /// Ready: a valid config is loaded and the initial rebuild is done.
    pub fn ready(&self) -> Result<(), String> {
        let st = self.state();
        if st.config.is_none() || !st.synced {
            return Err(st
                .not_ready_reason
                .clone()
                .unwrap_or_else(|| "initial sync not done".to_string()));
        }
        Ok(())
    }

    /// A new configuration text arrived (`None`: the ConfigMap or its key is
    /// missing). A valid one replaces the pools, unless it would take an
    /// assigned IP away (then, as with MetalLB, it is rejected like an invalid
    /// one: see [`ferrolb_config::stranded_message`]); IPs that are only outside their
    /// Service's annotated pool now are released and reassigned at the next
    /// reconcile. An invalid one is logged with every error and otherwise
    /// ignored. Returns true when the config was applied.
    pub fn apply_config_text(&self, text: Option<&str>) -> bool {
        let parsed = match text {
            Some(t) => Config::parse(t).map_err(|e| e.to_string()),
            None => Err("ConfigMap not found or has no key \"config\"".to_string()),
        };
        match parsed {
            Ok(cfg) => self.apply_config(cfg),
            Err(msg) => {
                self.counters.config_errors.fetch_add(1, Ordering::Relaxed);
                let mut st = self.state();
                st.rejected = Some(msg.clone());
                if st.config.is_some() {
                    st.config_stale = true;
                    warn!(errors = %msg, "invalid configuration ignored, keeping the last good one");
                } else {
                    warn!(errors = %msg, "invalid configuration and none loaded before: allocating nothing");
                    st.not_ready_reason = Some(format!("no valid configuration: {msg}"));
                }
                false
            }
        }
    }

    /// Installs a valid configuration (see [`Context::apply_config_text`]).
    pub fn apply_config(&self, cfg: Config) -> bool {
        let mut st = self.state();
        if st.config.as_ref() == Some(&cfg) {
            st.config_stale = false;
            st.rejected = None;
            return false;
        }
        let specs = pool_specs(&cfg);
        // As MetalLB: a configuration must not break existing Services. One
        // that would take an assigned IP away (its pool gone or shrunk, or the
        // IP now avoided) is rejected; the last good one keeps serving. Moving
        // those Services first (or restarting the controller) lets it in.
        if let (Some(alloc), Some(current)) = (st.allocator.as_ref(), st.config.as_ref()) {
            let held: Vec<(ServiceKey, Vec<IpAddr>)> = alloc.held().collect();
            let mut stranded = current.strands(&cfg, held.iter().map(|(k, ips)| (k, &ips[..])));
            if !stranded.is_empty() {
                stranded.sort();
                let why = stranded_message(&stranded);
                self.counters.config_errors.fetch_add(1, Ordering::Relaxed);
                st.config_stale = true;
                warn!(error = %why, "configuration rejected, keeping the last good one");
                st.rejected = Some(why);
                return false;
            }
        }
        if let Some(alloc) = st.allocator.as_mut() {
            match alloc.set_pools(specs) {
                Ok(changes) => {
                    for (key, change) in changes {
                        match change {
                            Change::Released { ips, reason } => {
                                info!(svc = %key, ips = ?ips, %reason, "config change released IPs");
                                st.pending_clear.insert(key, reason);
                            }
                            Change::PoolChanged(a) => {
                                debug!(svc = %key, assignment = ?a, "pool renamed");
                            }
                        }
                    }
                }
                Err(e) => {
                    // Config validation rules out what the allocator rejects;
                    // treat it like an invalid config all the same.
                    self.counters.config_errors.fetch_add(1, Ordering::Relaxed);
                    st.config_stale = true;
                    warn!(error = %e, "configuration rejected by the allocator, keeping the last good one");
                    st.rejected = Some(e.to_string());
                    return false;
                }
            }
        }
        info!(summary = %cfg.summary(), "configuration loaded");
        st.config = Some(cfg);
        st.config_stale = false;
        st.rejected = None;
        st.not_ready_reason = None;
        drop(st);
        self.request_reconcile_all();
        true
    }

    /// Builds the allocator from the Services as they are now: those that
    /// show IPs in `status.loadBalancer.ingress` keep them (oldest first when
    /// two claim one), so a restart moves no IP. Services without IPs are
    /// left to their reconcile, which reads the newest object (a status write
    /// of a killed predecessor that lands late is then still adopted).
    /// Needs a loaded config; returns false (and does nothing) without one.
    pub fn rebuild(&self, services: &[Arc<Service>]) -> bool {
        let mut st = self.state();
        let Some(cfg) = st.config.as_ref() else {
            return false;
        };
        let reqs: Vec<ServiceRequest> = services
            .iter()
            .filter(|s| is_load_balancer(s) && self.class_matches(s))
            .filter_map(|s| build_request(s).ok())
            .filter(|r| !r.current.is_empty())
            .collect();
        match Allocator::rebuild(pool_specs(cfg), &reqs) {
            Ok((alloc, results)) => {
                let kept = results.iter().filter(|(_, r)| r.as_ref().is_ok()).count();
                info!(
                    holding = reqs.len(),
                    kept, "allocator rebuilt from the Services' current status"
                );
                // Services that could not keep an IP they show (the config
                // changed while no controller ran): say why when they move.
                let current: HashMap<&ServiceKey, &[IpAddr]> = reqs
                    .iter()
                    .map(|r| (&r.key, r.current.as_slice()))
                    .collect();
                let mut clear = Vec::new();
                for (key, result) in &results {
                    let held = result.as_ref().map(Assignment::addrs).unwrap_or_default();
                    let lost: Vec<String> = current[key]
                        .iter()
                        .filter(|ip| !held.contains(ip))
                        .map(|&ip| lost_reason(cfg, ip))
                        .collect();
                    if !lost.is_empty() {
                        clear.push((key.clone(), lost.join("; ")));
                    }
                }
                st.pending_clear.extend(clear);
                st.known = reqs.iter().map(|r| r.key.clone()).collect();
                st.allocator = Some(alloc);
                st.synced = true;
                drop(st);
                self.request_reconcile_all();
                true
            }
            Err(e) => {
                warn!(error = %e, "pools rejected by the allocator");
                st.not_ready_reason = Some(format!("pools rejected: {e}"));
                false
            }
        }
    }

    /// A Service disappeared: free what it held.
    pub fn forget(&self, key: &ServiceKey) {
        let mut st = self.state();
        st.failed.remove(key);
        st.pending_clear.remove(key);
        st.known.remove(key);
        let released = st.allocator.as_mut().and_then(|a| a.release(key));
        let waiting = !st.failed.is_empty();
        drop(st);
        if let Some(a) = released {
            info!(svc = %key, ips = ?a.addrs(), "service gone (or not ours), IPs released");
            if waiting {
                self.request_reconcile_all();
            }
        }
    }

    /// Releases every allocation whose Service is not in `present` (after a
    /// watch re-list, deletions missed while disconnected).
    pub fn forget_missing(&self, present: &[ServiceKey]) {
        let keys: Vec<ServiceKey> = {
            let st = self.state();
            let present: HashSet<&ServiceKey> = present.iter().collect();
            st.known
                .iter()
                .chain(st.failed.keys())
                .chain(st.pending_clear.keys())
                .filter(|k| !present.contains(k))
                .cloned()
                .collect()
        };
        for k in keys {
            self.forget(&k);
        }
    }

    fn class_matches(&self, svc: &Service) -> bool {
        let class = svc
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_class.as_deref());
        class == self.lb_class.as_deref()
    }

    async fn publish(&self, svc: &Service, type_: EventType, reason: &str, note: String) {
        self.publish_on(&svc.object_ref(&()), type_, reason, note)
            .await;
    }

    /// Why the latest configuration text was not applied, if it was not.
    pub fn rejection(&self) -> Option<String> {
        self.state().rejected.clone()
    }

    /// Publish an Event about any object (the note cut to the API's 1 kB).
    pub async fn publish_on(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        mut note: String,
    ) {
        if note.len() > NOTE_MAX {
            let end = (0..=NOTE_MAX - 3).rev().find(|&i| note.is_char_boundary(i));
            note.truncate(end.unwrap_or(0));
            note.push_str("...");
        }
        // A fresh Recorder per Event: its cache would otherwise turn a second
        // Event of the same reason into a series update that keeps the first note.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, regarding).await {
            self.counters.event_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, reason, "could not publish Event");
        }
    }

    async fn patch_ingress(&self, svc: &Service, ips: &[IpAddr]) -> Result<(), Error> {
        let (ns, name) = ns_name(svc)?;
        let ingress = if ips.is_empty() {
            serde_json::Value::Null
        } else {
            ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect()
        };
        let body = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        Api::<Service>::namespaced(self.client.clone(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
            .await?;
        Ok(())
    }

    async fn patch_pool_annotation(&self, svc: &Service, pool: Option<&str>) -> Result<(), Error> {
        let (ns, name) = ns_name(svc)?;
        let body = json!({"metadata": {"annotations": {POOL_ANNOTATION: pool}}});
        Api::<Service>::namespaced(self.client.clone(), ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await?;
        Ok(())
    }

    /// Takes the IPs away from a Service that is not (or no longer) ours.
    async fn clear(&self, svc: &Service, key: &ServiceKey, why: &str) -> Result<(), Error> {
        let released = {
            let mut st = self.state();
            st.failed.remove(key);
            st.pending_clear.remove(key);
            st.known.remove(key);
            st.allocator.as_mut().and_then(|a| a.release(key))
        };
        let shown = ingress_ips(svc);
        if has_ingress(svc) {
            self.patch_ingress(svc, &[]).await?;
        }
        if svc.annotations().contains_key(POOL_ANNOTATION) {
            self.patch_pool_annotation(svc, None).await?;
        }
        if released.is_some() || !shown.is_empty() {
            let ips = released.map(|a| a.addrs()).unwrap_or(shown);
            info!(svc = %key, ips = ?ips, why, "assignment cleared");
            self.publish(
                svc,
                EventType::Normal,
                REASON_CLEARED,
                format!("{why}, clearing IP {}", go_quoted(&ips)),
            )
            .await;
            let waiting = !self.state().failed.is_empty();
            if waiting {
                self.request_reconcile_all();
            }
        }
        Ok(())
    }

    /// Reconciles one Service (see the module documentation).
    pub async fn reconcile_service(&self, svc: &Service) -> Result<Action, Error> {
        let key = service_key(svc).ok_or(Error::NoKey)?;
        if !is_load_balancer(svc) {
            let held = self
                .state()
                .allocator
                .as_ref()
                .is_some_and(|a| a.lookup(&key).is_some());
            if held || has_ingress(svc) || svc.annotations().contains_key(POOL_ANNOTATION) {
                self.clear(svc, &key, "service is not of type LoadBalancer")
                    .await?;
            }
            return Ok(Action::await_change());
        }
        if !self.class_matches(svc) {
            // Another implementation's Service: forget it, touch nothing.
            self.forget(&key);
            return Ok(Action::await_change());
        }
        let (outcome, pending_clear) = {
            let mut st = self.state();
            if st.allocator.is_none() {
                // No valid config yet (or not rebuilt): allocate nothing. The
                // rebuild requests a full reconcile.
                return Ok(Action::await_change());
            }
            let pending_clear = st.pending_clear.remove(&key);
            st.known.insert(key.clone());
            let outcome = match build_request(svc) {
                Err(e) => {
                    if let Some(a) = st.allocator.as_mut() {
                        a.release(&key);
                    }
                    Outcome::Failed(e.to_string())
                }
                Ok(req) => match st.allocator.as_mut().map(|a| a.assign(&req)) {
                    Some(Ok(a)) => Outcome::Assigned(a),
                    Some(Err(e)) => Outcome::Failed(alloc_message(&e)),
                    None => return Ok(Action::await_change()),
                },
            };
            (outcome, pending_clear)
        };
        if let Some(reason) = pending_clear {
            let shown = ingress_ips(svc);
            self.publish(
                svc,
                EventType::Normal,
                REASON_CLEARED,
                format!(
                    "current IP {} not allowed by config, clearing: {reason}",
                    go_quoted(&shown)
                ),
            )
            .await;
        }
        match outcome {
            Outcome::Assigned(a) => {
                self.state().failed.remove(&key);
                let ips = a.addrs();
                if ingress_ips(svc) != ips || ingress_count(svc) != ips.len() {
                    self.patch_ingress(svc, &ips).await?;
                    info!(svc = %key, ips = ?ips, "IP assigned");
                    self.publish(
                        svc,
                        EventType::Normal,
                        REASON_ALLOCATED,
                        format!("Assigned IP {}", go_quoted(&ips)),
                    )
                    .await;
                }
                let pool = a.ips.first().map(|(_, p)| p.as_str());
                if svc.annotations().get(POOL_ANNOTATION).map(String::as_str) != pool {
                    self.patch_pool_annotation(svc, pool).await?;
                }
            }
            Outcome::Failed(reason) => {
                let note = format!("Failed to allocate IP for \"{key}\": {reason}");
                if has_ingress(svc) {
                    self.patch_ingress(svc, &[]).await?;
                }
                if svc.annotations().contains_key(POOL_ANNOTATION) {
                    self.patch_pool_annotation(svc, None).await?;
                }
                let new = {
                    let mut st = self.state();
                    st.failed.insert(key.clone(), note.clone()).as_ref() != Some(&note)
                };
                if new {
                    warn!(svc = %key, %reason, "allocation failed");
                    self.publish(svc, EventType::Warning, REASON_FAILED, note)
                        .await;
                }
            }
        }
        Ok(Action::await_change())
    }
}

fn alloc_message(e: &AllocError) -> String {
    e.to_string()
}

fn ingress_count(svc: &Service) -> usize {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map_or(0, Vec::len)
}

fn ns_name(svc: &Service) -> Result<(&str, &str), Error> {
    let ns = svc.metadata.namespace.as_deref().ok_or(Error::NoKey)?;
    let name = svc.metadata.name.as_deref().ok_or(Error::NoKey)?;
    Ok((ns, name))
}

/// The reconcile function given to kube's `Controller`.
///
/// A 404 on a write means the Service was deleted meanwhile: what it held is
/// released and the reconcile counts as done (the Delete event follows).
pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    match ctx.reconcile_service(&svc).await {
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
            if let Some(key) = service_key(&svc) {
                debug!(svc = %key, "service deleted while being reconciled");
                ctx.forget(&key);
            }
            Ok(Action::await_change())
        }
        other => other,
    }
}

/// What to do after a failed reconcile: count it, retry in a few seconds.
pub fn error_policy(svc: Arc<Service>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.counters
        .reconcile_errors
        .fetch_add(1, Ordering::Relaxed);
    let key = service_key(&svc).map(|k| k.to_string()).unwrap_or_default();
    warn!(svc = %key, error = %err, "reconcile failed, retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn request_from_a_full_service() {
        let svc = service(json!({
            "metadata": {
                "namespace": "ns", "name": "web",
                "creationTimestamp": "2026-01-01T00:00:10Z",
                "annotations": {
                    "metallb.universe.tf/address-pool": "a",
                    "metallb.universe.tf/allow-shared-ip": "k",
                },
            },
            "spec": {
                "type": "LoadBalancer",
                "ipFamilies": ["IPv6", "IPv4"],
                "ipFamilyPolicy": "PreferDualStack",
                "loadBalancerIP": "10.0.0.7",
                "externalTrafficPolicy": "Local",
                "selector": {"app": "web"},
                "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}, {"port": 9, "protocol": "SCTP"}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.7"}, {"hostname": "x"}, {"ip": "fc00::7"}]}},
        }));
        let req = build_request(&svc).unwrap();
        assert_eq!(req.key, ServiceKey::new("ns", "web"));
        assert_eq!(req.families, vec![IpFamily::V6, IpFamily::V4]);
        assert_eq!(req.family_policy, FamilyPolicy::PreferDualStack);
        assert_eq!(
            req.requested_ips,
            vec!["10.0.0.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(req.pool.as_deref(), Some("a"));
        assert_eq!(req.sharing_key.as_deref(), Some("k"));
        assert_eq!(
            req.ports,
            vec![
                (Protocol::Tcp, 80),
                (Protocol::Udp, 53),
                (Protocol::Sctp, 9)
            ]
        );
        assert_eq!(req.traffic_policy, TrafficPolicy::Local);
        assert_eq!(req.selector.get("app").map(String::as_str), Some("web"));
        assert_eq!(
            req.current,
            vec![
                "10.0.0.7".parse::<IpAddr>().unwrap(),
                "fc00::7".parse().unwrap()
            ]
        );
        assert_eq!(req.created, Some(1_767_225_610));
    }

    #[test]
    fn request_defaults_and_errors() {
        let svc = service(json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"type": "LoadBalancer"},
        }));
        let req = build_request(&svc).unwrap();
        assert!(req.families.is_empty());
        assert_eq!(req.family_policy, FamilyPolicy::SingleStack);
        assert_eq!(req.traffic_policy, TrafficPolicy::Cluster);
        assert!(req.ports.is_empty() && req.current.is_empty() && req.created.is_none());

        let bad = service(json!({
            "metadata": {"namespace": "ns", "name": "web",
                         "annotations": {"metallb.universe.tf/loadBalancerIPs": "nope"}},
            "spec": {"type": "LoadBalancer"},
        }));
        assert!(build_request(&bad).is_err());
    }

    #[test]
    fn go_style_ip_lists() {
        assert_eq!(go_quoted(&[]), "[]");
        assert_eq!(
            go_quoted(&["10.0.0.1".parse().unwrap(), "fc00::1".parse().unwrap()]),
            "[\"10.0.0.1\" \"fc00::1\"]"
        );
    }

    #[test]
    fn pool_specs_follow_the_config() {
        let cfg = Config::parse(
            "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/30, 10.0.1.5-10.0.1.6], auto-assign: false, avoid-buggy-ips: true}\n",
        )
        .unwrap();
        let specs = pool_specs(&cfg);
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, "a");
        assert!(!specs[0].auto_assign && specs[0].avoid_buggy_ips);
        assert_eq!(
            specs[0].ranges,
            vec![
                ("10.0.0.0".parse().unwrap(), "10.0.0.3".parse().unwrap()),
                ("10.0.1.5".parse().unwrap(), "10.0.1.6".parse().unwrap())
            ]
        );
    }
}
