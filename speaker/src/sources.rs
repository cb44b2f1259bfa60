//! The speaker's watches: Services, endpoints (EndpointSlices when the API
//! server serves discovery.k8s.io/v1, else core/v1 Endpoints), the Nodes
//! and the configuration (the ConfigMap or the `metallb.io` custom resources,
//! [`ConfigSource`]), each driven by its own task into the slim maps of
//! [`crate::watch`] or the configuration source, ringing
//! one [`Notify`] whenever what the decision reads may have changed.

use std::sync::{Arc, Mutex};

use ferrolb_ops::config_source::{ConfigSource, SourceMode, WatchCounts};
use ferrolb_ops::metrics::{IntCounter, Registry};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::watch::{EndpointSource, EndpointsIndex, Nodes, Services, SliceIndex};

/// Counts of what the watches delivered (MetalLB's
/// `metallb_k8s_client_updates_total` and `…_update_errors_total`).
#[derive(Clone)]
pub struct WatchCounters {
    /// Watch events applied.
    pub updates: IntCounter,
    /// Watch errors (each retried with backoff).
    pub errors: IntCounter,
}

impl WatchCounters {
    /// Fresh counters under MetalLB's names; register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, ferrolb_ops::Error> {
        let c = |name: &str, help: &str| -> Result<IntCounter, ferrolb_ops::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(WatchCounters {
            updates: c(
                "metallb_k8s_client_updates_total",
                "Number of k8s object updates that have been processed.",
            )?,
            errors: c(
                "metallb_k8s_client_update_errors_total",
                "Number of k8s object updates that failed for some reason.",
            )?,
        })
    }

    fn count<T>(&self, r: &Result<T, watcher::Error>) {
        match r {
            Ok(_) => self.updates.inc(),
            Err(_) => self.errors.inc(),
        }
    }
}

/// Everything the speaker watches.
pub struct Sources {
    /// LoadBalancer Services of the speaker's class.
    pub services: Arc<Mutex<Services>>,
    /// Endpoints, from whichever API the server serves.
    pub endpoints: Arc<Mutex<EndpointSource>>,
    /// Every Node, slim (this one's labels select peers and advertisements;
    /// the others' are read by the layer 2 election).
    pub nodes: Arc<Mutex<Nodes>>,
    /// The configuration (ConfigMap or custom resources).
    pub config: ConfigSource,
    /// Bumped to make the Services watch list again ([`Sources::relist_services`]).
    services_relist: tokio::sync::watch::Sender<u64>,
    services_ready: tokio::sync::watch::Receiver<bool>,
    endpoints_ready: tokio::sync::watch::Receiver<bool>,
    nodes_ready: tokio::sync::watch::Receiver<bool>,
}

/// Where the watches look.
pub struct Watched<'a> {
    /// This node's name.
    pub node: &'a str,
    /// Namespace of the configuration.
    pub namespace: &'a str,
    /// Name of the ConfigMap.
    pub config_name: &'a str,
    /// Where the configuration is read from.
    pub config_source: SourceMode,
    /// `spec.loadBalancerClass` of the Services to keep.
    pub lb_class: Option<String>,
}

impl Sources {
    /// Starts every watch; `notify` rings on each change.
    pub async fn start(
        client: &Client,
        w: Watched<'_>,
        notify: &Arc<Notify>,
        counters: &WatchCounters,
    ) -> Sources {
        let services = Arc::new(Mutex::new(Services::with_class(w.lb_class)));
        let (services_relist, relist_rx) = tokio::sync::watch::channel(0u64);
        let services_ready = {
            let services = services.clone();
            pump_slim(
                Api::<Service>::all(client.clone()),
                move |ev| lock(&services).apply(ev),
                notify,
                counters,
                "services",
                Some(relist_rx),
            )
        };
        let (endpoints, endpoints_ready) = if serves_slices_v1(client).await {
            info!("reading endpoints from discovery.k8s.io/v1 EndpointSlices");
            let src = Arc::new(Mutex::new(EndpointSource::Slices(SliceIndex::default())));
            let s = src.clone();
            let ready = pump_slim(
                Api::<EndpointSlice>::all(client.clone()),
                move |ev| {
                    if let EndpointSource::Slices(idx) = &mut *lock(&s) {
                        idx.apply(ev);
                    }
                },
                notify,
                counters,
                "endpointslices",
                None,
            );
            (src, ready)
        } else {
            info!("EndpointSlice v1 not served: reading core/v1 Endpoints");
            let src = Arc::new(Mutex::new(EndpointSource::Endpoints(
                EndpointsIndex::default(),
            )));
            let s = src.clone();
            let ready = pump_slim(
                Api::<Endpoints>::all(client.clone()),
                move |ev| {
                    if let EndpointSource::Endpoints(idx) = &mut *lock(&s) {
                        idx.apply(ev);
                    }
                },
                notify,
                counters,
                "endpoints",
                None,
            );
            (src, ready)
        };
        // Every Node: the layer 2 election reads the others' labels and
        // conditions; kept slim (labels and two flags per node).
        let nodes = Arc::new(Mutex::new(Nodes::default()));
        let nodes_ready = {
            let nodes = nodes.clone();
            pump_slim(
                Api::<Node>::all(client.clone()),
                move |ev| lock(&nodes).apply(ev),
                notify,
                counters,
                "nodes",
                None,
            )
        };
        let config = ConfigSource::start(
            client,
            w.namespace,
            w.config_name,
            w.config_source,
            notify.clone(),
            Some(WatchCounts {
                updates: counters.updates.clone(),
                errors: counters.errors.clone(),
            }),
        );
        Sources {
            services,
            endpoints,
            nodes,
            config,
            services_relist,
            services_ready,
            endpoints_ready,
            nodes_ready,
        }
    }

    /// Make the Services watch start over with a fresh list (the
    /// configuration reads a Service label the kept Services lack: see
    /// [`Services::set_label_keys`]).
    pub fn relist_services(&self) {
        self.services_relist.send_modify(|n| *n += 1);
    }

    /// Waits until every watch has listed once.
    pub async fn synced(&mut self) {
        let _ = self.services_ready.wait_for(|r| *r).await;
        let _ = self.nodes_ready.wait_for(|r| *r).await;
        self.config.synced().await;
        let _ = self.endpoints_ready.wait_for(|r| *r).await;
    }
}

/// Locks a slim map (a panic elsewhere does not make it unusable).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drive a watch into a slim map (`apply` folds each event in), ringing
/// `notify` whenever what the map shows changed. The receiver turns true at
/// the first complete list. Each change seen on `relist` drops the watch and
/// starts a new one, which lists everything again.
fn pump_slim<K>(
    api: Api<K>,
    mut apply: impl FnMut(&watcher::Event<K>) + Send + 'static,
    notify: &Arc<Notify>,
    counters: &WatchCounters,
    what: &'static str,
    mut relist: Option<tokio::sync::watch::Receiver<u64>>,
) -> tokio::sync::watch::Receiver<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let notify = notify.clone();
    let counters = counters.clone();
    tokio::spawn(async move {
        loop {
            let mut s = std::pin::pin!(ferrolb_ops::watch_backoff::backoff(watcher(
                api.clone(),
                watcher::Config::default()
            )));
            loop {
                let next = tokio::select! {
                    ev = s.next() => Next::Event(ev),
                    ok = relisted(&mut relist) => Next::Relist(ok),
                };
                let ev = match next {
                    Next::Event(Some(ev)) => ev,
                    Next::Event(None) => return,
                    Next::Relist(true) => {
                        info!(watch = what, "listing again");
                        break;
                    }
                    Next::Relist(false) => {
                        // The sender is gone: never again.
                        relist = None;
                        continue;
                    }
                };
                counters.count(&ev);
                match ev {
                    Ok(ev) => {
                        apply(&ev);
                        match ev {
                            // Listed objects become visible only at InitDone.
                            watcher::Event::Init | watcher::Event::InitApply(_) => continue,
                            watcher::Event::InitDone => {
                                ready_tx.send_replace(true);
                            }
                            watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
                        }
                    }
                    Err(e) => warn!(watch = what, error = %e, "watch error (retrying)"),
                }
                notify.notify_one();
            }
        }
    });
    ready_rx
}

/// What a watch task waits for.
enum Next<E> {
    /// The next watch event (`None`: the stream ended).
    Event(Option<E>),
    /// A relist was asked for (`false`: the sender is gone).
    Relist(bool),
}

/// Resolves when a relist is asked for on `relist` (true), or its sender is
/// gone (false); never without a receiver.
async fn relisted(relist: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match relist {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Does the API server serve discovery.k8s.io/v1 EndpointSlices?
async fn serves_slices_v1(client: &Client) -> bool {
    match client.list_api_group_resources("discovery.k8s.io/v1").await {
        Ok(list) => list.resources.iter().any(|r| r.name == "endpointslices"),
        Err(_) => false,
    }
}
