//! `ferrolb controller`: options and the wiring — leader election, the watch
//! of the configuration (the ConfigMap or the `metallb.io` custom resources,
//! `ferrolb_ops::config_source`), the Service watch feeding kube-runtime's
//! `Controller` around [`crate::reconcile`], the initial rebuild, and the
//! `/metrics`, `/healthz`, `/readyz` endpoints.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use ferrolb_ops::FnProbe;
use ferrolb_ops::cli::KubeOpts;
use ferrolb_ops::events::{Events, Reporter};
use ferrolb_ops::lease::{LeaderElector, Timing};
use ferrolb_ops::metrics::Metrics;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::time::Duration;

use ferrolb_ops::config_source::{ConfigReports, ConfigSource, Role};
use ferrolb_ops::config_state::ConfigState;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::allocator::ServiceKey;
use crate::core::ControllerCore;
use crate::facts::service_facts;
use crate::metrics;
use crate::namespaces;
use crate::pool_status;
use crate::reconcile::{self, Context, REPORTING_CONTROLLER};
use crate::service::{PREFIX_IO, PREFIX_UNIVERSE};

/// Options of `ferrolb controller` (each also read from `FERROLB_<FLAG>`).
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerOpts {
    /// Run only while holding the coordination.k8s.io/v1 Lease `ferrolb-controller`.
    #[arg(long)]
    pub leader_elect: bool,
    #[command(flatten)]
    pub kube: KubeOpts,
}

/// Name of the leader-election Lease.
pub const LEASE_NAME: &str = "ferrolb-controller";

/// This process's identity for leader election and Events.
fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().into()))
        .unwrap_or_else(|_| "ferrolb".into());
    format!("{host}_{}", std::process::id())
}

/// Runs the controller until SIGTERM/SIGINT (Ok) or a fatal error.
pub async fn run(opts: ControllerOpts) -> Result<()> {
    let client = ferrolb_ops::client(opts.kube.kubeconfig.as_deref()).await?;
    let id = identity();
    let events = Events::new(
        client.clone(),
        Reporter {
            controller: REPORTING_CONTROLLER.to_string(),
            instance: Some(id.clone()),
        },
    );
    let core = ControllerCore::new(opts.kube.lb_class.clone());
    let (ctx, reconcile_all_rx) = Context::new(client.clone(), core, events);
    let ctx = Arc::new(ctx);
    let mut all_metrics = Metrics::new();
    metrics::register(&mut all_metrics, ctx.clone())?;
    let probe = {
        let ctx = ctx.clone();
        FnProbe::new(all_metrics, move || ctx.ready())
    };
    let _http = ferrolb_ops::serve(opts.kube.metrics_addr, probe).await?;
    let mut elector = if opts.leader_elect {
        let api: Api<Lease> = Api::namespaced(client.clone(), &opts.kube.namespace);
        let mut elector = LeaderElector::new(api, LEASE_NAME, id.clone(), Timing::default())?;
        ctx.set_waiting(Some("waiting for the leader Lease"));
        tokio::select! {
            () = elector.acquire() => {}
            () = ferrolb_ops::signal::shutdown() => return Ok(()),
        }
        ctx.set_waiting(None);
        Some(elector)
    } else {
        None
    };

    // The config: the ConfigMap or the metallb.io custom resources, watched.
    let config_loaded = Arc::new(Notify::new());
    let config_changed = Arc::new(Notify::new());
    let source = ConfigSource::start(
        &client,
        &opts.kube.namespace,
        &opts.kube.config_name,
        opts.kube.config_source,
        config_changed.clone(),
        None,
    );
    let reports = ConfigReports::new(
        Role::Controller,
        ctx.events().clone(),
        ConfigState::new(client.clone(), &opts.kube.namespace, None),
    );
    let cm_task = tokio::spawn(watch_config(
        source,
        config_changed,
        ctx.clone(),
        config_loaded.clone(),
        reports,
    ));

    // Services, all namespaces, through our own reflector so deletions are seen.
    let (reader, writer) = reflector::store::<Service>();
    let svc_api: Api<Service> = Api::all(client.clone());
    let del_ctx = ctx.clone();
    let store_listed = Arc::new(Notify::new());
    let rebuild_listed = store_listed.clone();
    let del_reader = reader.clone();
    // Controller::for_stream is behind kube's `unstable-runtime` feature
    // (stream control); Controller::new would hide Delete events.
    let stream = ferrolb_ops::watch_backoff::backoff(watcher(svc_api, watcher::Config::default()))
        .modify(slim_service)
        .reflect(writer)
        .inspect_ok(move |ev| match ev {
            watcher::Event::Delete(svc) => {
                if let Some(f) = service_facts(svc) {
                    del_ctx.forget(&f.key);
                }
            }
            watcher::Event::InitDone => {
                let again = {
                    let mut core = del_ctx.core();
                    core.synced() && core.forget_missing(&store_keys(&del_reader))
                };
                if again {
                    del_ctx.request_reconcile_all();
                }
                // The reflector has applied the list: the store is complete.
                store_listed.notify_one();
            }
            _ => {}
        })
        .applied_objects();

    // Namespace labels (serviceAllocation.namespaceSelectors), metadata only.
    let (ns_listed_tx, ns_listed) = tokio::sync::watch::channel(false);
    let ns_task = tokio::spawn(namespaces::watch(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        ctx.clone(),
        ns_listed_tx,
    ));

    // IPAddressPool status, while the pools are custom resources.
    let status_task = {
        let c = ctx.clone();
        tokio::spawn(pool_status::run(
            client.clone(),
            opts.kube.namespace.clone(),
            ctx.clone(),
            ctx.pool_status_dirty(),
            Arc::new(move || c.pools_from_crs()),
            std::time::Duration::from_secs(1),
        ))
    };

    let rebuild = tokio::spawn(initial_rebuild(
        reader.clone(),
        rebuild_listed,
        ctx.clone(),
        config_loaded,
        ns_listed,
    ));

    let controller = Controller::for_stream(stream, reader)
        .with_config(
            kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
        )
        .reconcile_all_on(reconcile_all_rx.ready_chunks(1024).map(|_| ()))
        .graceful_shutdown_on(ferrolb_ops::signal::shutdown())
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|res| {
            if let Err(e) = res {
                match e {
                    kube::runtime::controller::Error::ObjectNotFound(r) => {
                        // Deleted before its turn: the Delete event released it.
                        if let Some(ns) = r.namespace.as_deref() {
                            ctx.forget(&ServiceKey::new(ns, r.name.as_str()));
                        }
                    }
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    other => warn!(error = %other, "controller"),
                }
            }
            futures::future::ready(())
        });

    let result = match elector.as_mut() {
        Some(elector) => {
            tokio::select! {
                () = controller => Ok(()),
                lost = elector.hold() => Err(anyhow::anyhow!("leadership lost: {lost}")),
            }
        }
        None => {
            controller.await;
            Ok(())
        }
    };
    if let Some(elector) = elector.as_mut()
        && let Err(e) = elector.release().await
    {
        warn!(error = %e, "releasing the leader Lease");
    }
    cm_task.abort();
    ns_task.abort();
    status_task.abort();
    rebuild.abort();
    info!("controller stopped");
    result
}

/// Reconciles in flight at once. kube-runtime's default is unbounded: after
/// a restart with 10,000 Services, 10,000 reconcile futures were alive at
/// once and the controller's resident memory went from 40 to 116 MiB
/// (bench/controller-scale). Each reconcile is a few API calls of a few
/// milliseconds, so 16 at a time is still more than the API server takes.
const RECONCILE_CONCURRENCY: u16 = 16;

/// What the store keeps of a Service: everything the controller reads, less
/// `managedFields` and the annotations that are not MetalLB's (a
/// `kubectl.kubernetes.io/last-applied-configuration` is a copy of the whole
/// object). The store holds every Service in the cluster, so this is most
/// of the controller's memory; writes are merge patches of our own fields,
/// which never need what was dropped.
pub(crate) fn slim_service(svc: &mut Service) {
    svc.metadata.managed_fields = None;
    if let Some(a) = svc.metadata.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(PREFIX_IO) || k.starts_with(PREFIX_UNIVERSE));
    }
}

fn store_keys(reader: &Store<Service>) -> HashSet<ServiceKey> {
    reader
        .state()
        .iter()
        .filter_map(|s| service_facts(s).map(|f| f.key))
        .collect()
}

/// Waits for the Services to be listed and a valid config, then rebuilds the
/// allocator from the Services' status (nothing is allocated before that).
///
/// `listed` is signalled by the Service stream after each complete list. (Not
/// `Store::wait_until_ready`: kube-runtime 5 wakes only one of several tasks
/// waiting on it, and the Controller already waits there.) When the
/// configuration selects namespaces by label, the Namespaces must have been
/// listed too (`ns_listed`), or a held IP could be judged without them.
async fn initial_rebuild(
    reader: Store<Service>,
    listed: Arc<Notify>,
    ctx: Arc<Context>,
    config_loaded: Arc<Notify>,
    mut ns_listed: tokio::sync::watch::Receiver<bool>,
) {
    listed.notified().await;
    loop {
        let needs_ns = ctx.core().uses_namespace_labels();
        if needs_ns && !*ns_listed.borrow() {
            info!("waiting for the Namespaces to be listed (namespaceSelectors in use)");
            if ns_listed.wait_for(|l| *l).await.is_err() {
                warn!("namespace watch ended before listing");
                return;
            }
        }
        let facts: Vec<_> = reader.state().iter().filter_map(|s| ctx.facts(s)).collect();
        let done = {
            let mut core = ctx.core();
            let done = core.rebuild(&facts);
            if done {
                // Deletions between the snapshot and the rebuild. (A full
                // reconcile follows anyway.)
                core.forget_missing(&store_keys(&reader));
            }
            done
        };
        if done {
            info!("initial sync done");
            ctx.request_reconcile_all();
            return;
        }
        config_loaded.notified().await;
    }
}

/// How often the configuration is looked at without a change (a rejected one
/// may have been admitted by a Service change meanwhile: the
/// ConfigurationState follows).
const CONFIG_RECHECK: Duration = Duration::from_secs(10);

/// Offers the configuration to the core after every change of its source,
/// and publishes what comes of it.
async fn watch_config(
    mut source: ConfigSource,
    changed: Arc<Notify>,
    ctx: Arc<Context>,
    loaded: Arc<Notify>,
    mut reports: ConfigReports,
) {
    source.synced().await;
    info!(mode = ?source.mode(), "configuration source listed");
    loop {
        let snap = source.snapshot();
        let (applied, offered, state) = ctx.offer_snapshot(&snap);
        if applied {
            info!(source = ?snap.source(), "configuration in force");
            loaded.notify_one();
        }
        reports.report(&snap, offered, state).await;
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep(CONFIG_RECHECK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_store_drops_managed_fields_and_foreign_annotations_and_nothing_read() {
        let full: Service = serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"app": "web"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a huge\": \"copy\"}",
                    "metallb.io/loadBalancerIPs": "10.1.0.5",
                    "metallb.universe.tf/allow-shared-ip": "k",
                    "metallb.io/ip-allocated-from-pool": "p"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.1.0.5"}]}}
        }))
        .unwrap();
        let mut slim = full.clone();
        slim_service(&mut slim);
        assert!(slim.metadata.managed_fields.is_none());
        let kept: Vec<&str> = slim
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            kept,
            [
                "metallb.io/ip-allocated-from-pool",
                "metallb.io/loadBalancerIPs",
                "metallb.universe.tf/allow-shared-ip"
            ]
        );
        assert_eq!(service_facts(&slim), service_facts(&full));
        assert!(service_facts(&full).is_some());
        assert_eq!(slim.metadata.labels, full.metadata.labels);
        assert_eq!(slim.spec, full.spec);
        assert_eq!(slim.status, full.status);
    }
}
