//! The controller's I/O shell for one Service: read its facts
//! ([`crate::facts`]), ask the pure core for a plan ([`crate::core`]), write
//! what the plan says — `status.loadBalancer.ingress` (JSON merge patch on
//! `/status`), the pool annotation (merge patch on the object), then the
//! Events (events.k8s.io/v1) — and nothing else.
//!
//! The core lives in [`Context`] behind one mutex that is never held across
//! an `.await`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferrolb_config::crs::Secrets;
use ferrolb_config::gate::MISSING;
use ferrolb_ops::config_source::{Offered, Snapshot, Source, state_of};
use ferrolb_ops::config_state::StateResult;
use ferrolb_ops::events::{EventType, Events, Regarding};
use ferrolb_ops::metrics::IntCounter;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource};
use serde_json::json;
use tracing::{debug, warn};

use crate::allocator::ServiceKey;
use crate::core::{ControllerCore, EventKind, REASON_INVALID_CONFIG, ServicePlan};
use crate::facts::{POOL_ANNOTATION, ServiceFacts, service_facts};
use crate::namespaces::NamespaceLabels;

/// `reportingController` of the Events.
pub const REPORTING_CONTROLLER: &str = "ferrolb-controller";

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

/// Everything a reconcile needs.
pub struct Context {
    client: Client,
    core: Mutex<ControllerCore>,
    events: Events,
    /// Service updates processed (`metallb_k8s_client_updates_total`).
    pub updates: IntCounter,
    /// Service updates that failed and are retried (`metallb_k8s_client_update_errors_total`).
    pub update_errors: IntCounter,
    /// Why the controller does not work yet for reasons outside the core
    /// (waiting for the leader Lease), for `/readyz`.
    waiting: Mutex<Option<String>>,
    reconcile_all: mpsc::UnboundedSender<()>,
    /// Namespace labels (for `serviceAllocation.namespaceSelectors`).
    namespaces: Mutex<NamespaceLabels>,
    /// Signalled when allocations may have changed (IPAddressPool status).
    pool_status_dirty: Arc<tokio::sync::Notify>,
    /// The pools in force are `IPAddressPool` custom resources.
    pools_from_crs: AtomicBool,
    /// Bumped by every [`Context::set_pools_from_crs`] (a configuration applied).
    pools_generation: AtomicU64,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context around `core`. The receiver yields once per "reconcile every
    /// Service" request (config change, freed IPs).
    pub fn new(
        client: Client,
        core: ControllerCore,
        events: Events,
    ) -> (Context, mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = mpsc::unbounded();
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).expect("a valid metric name and help")
        };
        let ctx = Context {
            client,
            core: Mutex::new(core),
            events,
            updates: counter(
                "metallb_k8s_client_updates_total",
                "Number of k8s object updates that have been processed.",
            ),
            update_errors: counter(
                "metallb_k8s_client_update_errors_total",
                "Number of k8s object updates that failed for some reason.",
            ),
            waiting: Mutex::new(None),
            reconcile_all: tx,
            namespaces: Mutex::new(NamespaceLabels::new()),
            pool_status_dirty: Arc::new(tokio::sync::Notify::new()),
            pools_from_crs: AtomicBool::new(false),
            pools_generation: AtomicU64::new(0),
        };
        (ctx, rx)
    }

    /// The core (poisoning is ignored: the state stays usable).
    pub fn core(&self) -> MutexGuard<'_, ControllerCore> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The namespace label table (poisoning is ignored).
    pub fn namespaces(&self) -> MutexGuard<'_, NamespaceLabels> {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The facts of `svc`, its namespace's labels included.
    pub fn facts(&self, svc: &Service) -> Option<ServiceFacts> {
        let f = service_facts(svc)?;
        let labels = self.namespaces().get(&f.key.namespace);
        Some(f.with_namespace_labels(labels))
    }

    /// The Event publisher.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Asks the controller to reconcile every Service.
    pub fn request_reconcile_all(&self) {
        let _ = self.reconcile_all.unbounded_send(());
        self.pool_status_dirty.notify_one();
    }

    /// Signalled whenever allocations may have changed.
    pub fn pool_status_dirty(&self) -> Arc<tokio::sync::Notify> {
        self.pool_status_dirty.clone()
    }

    /// Says whether the pools in force come from `IPAddressPool` custom
    /// resources (their status is then written). To be called by whoever
    /// offers the configuration, each time one applies: every pool's status
    /// is then written once more (a re-created pool has an empty status).
    pub fn set_pools_from_crs(&self, yes: bool) {
        self.pools_from_crs.store(yes, Ordering::Relaxed);
        self.pools_generation.fetch_add(1, Ordering::Relaxed);
        self.pool_status_dirty.notify_one();
    }

    /// How many times [`Context::set_pools_from_crs`] was called.
    pub fn pools_generation(&self) -> u64 {
        self.pools_generation.load(Ordering::Relaxed)
    }

    /// Do the pools in force come from `IPAddressPool` custom resources?
    pub fn pools_from_crs(&self) -> bool {
        self.pools_from_crs.load(Ordering::Relaxed)
    }

    /// Sets (or clears) a reason not to be ready that the core does not know.
    pub fn set_waiting(&self, why: Option<&str>) {
        *self.waiting.lock().unwrap_or_else(|e| e.into_inner()) = why.map(str::to_string);
    }

    /// Ready: nothing to wait for, a configuration in force, the initial rebuild done.
    pub fn ready(&self) -> Result<(), String> {
        if let Some(why) = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(why);
        }
        self.core().ready()
    }

    /// A Service is gone (or not ours any more): free what it held.
    pub fn forget(&self, key: &ServiceKey) {
        if self.core().forget(key) {
            self.request_reconcile_all();
        }
        self.pool_status_dirty.notify_one();
    }

    /// A configuration text arrived (`None`: missing); reports a rejection
    /// once as a Warning Event on `configmap`. True when it applies.
    pub async fn offer_config(
        &self,
        text: Option<&str>,
        configmap: Option<&ObjectReference>,
    ) -> bool {
        let outcome = self.core().offer_config(text);
        if outcome.reconcile_all {
            self.request_reconcile_all();
        }
        if let (Some(note), Some(cm)) = (outcome.report, configmap) {
            let _ = self
                .events
                .publish(
                    cm,
                    EventType::Warning,
                    REASON_INVALID_CONFIG,
                    "LoadConfig",
                    &note,
                )
                .await;
        }
        outcome.applied
    }

    /// Offers the configuration `snap` shows (parsed with
    /// [`Secrets::Ignore`]: the controller runs no sessions). Returns whether
    /// it applies, what to report about it and what the ConfigurationState
    /// should say; the caller publishes (nothing here awaits).
    pub fn offer_snapshot(&self, snap: &Snapshot) -> (bool, Offered, StateResult) {
        let revision = snap.revision(&BTreeMap::new());
        let mut core = self.core();
        let outcome = core.offer_config_with(revision.as_deref(), |_| snap.parse(Secrets::Ignore));
        if outcome.reconcile_all {
            self.request_reconcile_all();
        }
        let gate = core.gate();
        let offered = Offered {
            admitted: outcome
                .applied
                .then(|| gate.current().map(|c| c.warnings.clone()))
                .flatten(),
            // The shared reporter adds its own "configuration rejected: ".
            report: gate.rejection().and(outcome.report).map(|r| {
                r.strip_prefix("configuration rejected: ")
                    .map(str::to_string)
                    .unwrap_or(r)
            }),
        };
        let state = state_of(gate.loaded(), gate.rejection(), MISSING);
        // The configuration in force is this snapshot's (applied, or equal in
        // content to it, e.g. the same pools moved from the ConfigMap to
        // IPAddressPools): its pools' status is written when they are objects.
        if gate.loaded() && gate.rejection().is_none() {
            let crs = snap.source() == Source::Resources;
            if outcome.applied || self.pools_from_crs() != crs {
                self.set_pools_from_crs(crs);
            }
        }
        (outcome.applied, offered, state)
    }

    /// Reconciles one Service: plan, then write.
    pub async fn reconcile_service(&self, svc: &Service) -> Result<Action, Error> {
        let facts = self.facts(svc).ok_or(Error::NoKey)?;
        let plan = self.core().plan(&facts);
        if plan.reconcile_all {
            self.request_reconcile_all();
        } else if plan.ingress.is_some() {
            self.pool_status_dirty.notify_one();
        }
        self.write(svc, &plan).await?;
        Ok(Action::await_change())
    }

    /// Carries out a plan: status, annotation, then Events.
    async fn write(&self, svc: &Service, plan: &ServicePlan) -> Result<(), Error> {
        if let Some(ips) = &plan.ingress {
            self.patch_ingress(svc, ips).await?;
        }
        if let Some(pool) = &plan.pool_annotation {
            self.patch_pool_annotation(svc, pool.as_deref()).await?;
        }
        if plan.events.is_empty() {
            return Ok(());
        }
        let regarding = Regarding::from(svc.object_ref(&()));
        for ev in &plan.events {
            let type_ = match ev.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            };
            let _ = self
                .events
                .publish(regarding.clone(), type_, ev.reason, ev.reason, &ev.note)
                .await;
        }
        Ok(())
    }

    fn api(&self, svc: &Service) -> Result<(Api<Service>, String), Error> {
        let ns = svc.metadata.namespace.as_deref().ok_or(Error::NoKey)?;
        let name = svc.metadata.name.clone().ok_or(Error::NoKey)?;
        Ok((Api::namespaced(self.client.clone(), ns), name))
    }

    async fn patch_ingress(&self, svc: &Service, ips: &[IpAddr]) -> Result<(), Error> {
        let (api, name) = self.api(svc)?;
        let ingress = if ips.is_empty() {
            serde_json::Value::Null
        } else {
            ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect()
        };
        let body = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await?;
        Ok(())
    }

    async fn patch_pool_annotation(&self, svc: &Service, pool: Option<&str>) -> Result<(), Error> {
        let (api, name) = self.api(svc)?;
        let body = json!({"metadata": {"annotations": {POOL_ANNOTATION: pool}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await?;
        Ok(())
    }
}

/// The reconcile function given to kube's `Controller`.
///
/// A 404 on a write means the Service was deleted meanwhile: what it held is
/// released and the reconcile counts as done (the Delete event follows).
pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.updates.inc();
    match ctx.reconcile_service(&svc).await {
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
            if let Some(f) = service_facts(&svc) {
                debug!(svc = %f.key, "service deleted while being reconciled");
                ctx.forget(&f.key);
            }
            Ok(Action::await_change())
        }
        other => other,
    }
}

/// What to do after a failed reconcile: count it, retry in a few seconds.
pub fn error_policy(svc: Arc<Service>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.update_errors.inc();
    let key = service_facts(&svc)
        .map(|f| f.key.to_string())
        .unwrap_or_default();
    warn!(svc = %key, error = %err, "reconcile failed, retrying");
    Action::requeue(Duration::from_secs(5))
}
