//! `ServiceBGPStatus` objects (`metallb.io/v1beta1`, MetalLB v0.15+): one per
//! Service this node announces over BGP, in the speaker's namespace, saying
//! which peers the Service is announced to from this node; and, written the
//! same way by a second writer ([`L2`]), `ServiceL2Status` objects
//! (`l2-…`, `status.interfaces`), one per Service this node answers ARP/NDP
//! for ([`desired_l2`]).
//!
//! As MetalLB writes them: `generateName: bgp-`, labels `metallb.io/node`,
//! `metallb.io/service-name`, `metallb.io/service-namespace`, and the status
//! `{node, serviceName, serviceNamespace, peers}` where `peers` holds the
//! `BGPPeer` names (ferrolb: `address:port` for a ConfigMap peer, which has
//! no name). The status is a subresource, so a new object takes two writes
//! (create, then patch `/status`). The owner is the speaker Pod when its name
//! and UID are known (`FERROLB_POD_NAME`, `FERROLB_POD_UID` from the downward
//! API), so the objects go with the Pod, as MetalLB's do.
//!
//! Pure parts: [`desired`] (what this node should report, from the pass's
//! announced set), [`diff`] (desired vs what the API server holds → the
//! writes) and [`TokenBucket`] (time passed in). The I/O shell,
//! [`StatusWriter`], lists this node's objects once (label
//! `metallb.io/node=<node>`), then applies the diff one write at a time within
//! the bucket's budget. It recomputes the diff before every write from the
//! latest desired state, so states that come and go between writes coalesce
//! into nothing. It lists again every [`RESYNC`] (objects deleted behind its
//! back are made again) and after any failed write. When the CRD is not
//! installed (404) it writes nothing, says so once, and asks discovery
//! again every [`ABSENT_RECHECK`] (listing once it shows the resource);
//! until it has listed once, [`StatusWriter::enabled`] is false and the
//! speaker does not even compute what to report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrolb_config::Config;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::announce::{PeerKey, peer_keys, peer_status_name};
use crate::layer2::{Interfaces, Layer2};
use crate::pass::Announcer;

/// Label: the node that announces.
pub const LABEL_NODE: &str = "metallb.io/node";
/// Label: the Service's name.
pub const LABEL_SERVICE_NAME: &str = "metallb.io/service-name";
/// Label: the Service's namespace.
pub const LABEL_SERVICE_NAMESPACE: &str = "metallb.io/service-namespace";
/// How often to look again for the CRD when it was not installed.
pub const ABSENT_RECHECK: Duration = Duration::from_secs(60);
/// How often the objects are listed again while all is well.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Pause after a failed write before the objects are listed again.
const ERROR_PAUSE: Duration = Duration::from_secs(2);

/// Which status objects a writer keeps: `ServiceBGPStatus` (peers) or
/// `ServiceL2Status` (interfaces), which differ only in kind, name prefix and
/// the list in their status.
#[derive(Debug)]
pub struct StatusKind {
    /// `kind` (`metallb.io/v1beta1`).
    pub kind: &'static str,
    /// The resource's plural.
    pub plural: &'static str,
    /// `metadata.generateName`.
    pub generate_name: &'static str,
    /// The status field listing what the Service goes to (`peers`, `interfaces`).
    pub list_field: &'static str,
    /// Entries of that list are `{name: …}` objects, not strings.
    pub named_entries: bool,
}

/// `ServiceBGPStatus`: `status.peers` = the peers' names (`bgp-…`).
pub static BGP: StatusKind = StatusKind {
    kind: "ServiceBGPStatus",
    plural: "servicebgpstatuses",
    generate_name: "bgp-",
    list_field: "peers",
    named_entries: false,
};

/// `ServiceL2Status`: `status.interfaces` = `[{name}]` of the interfaces the
/// node answers on, empty when it answers on all of them (`l2-…`).
pub static L2: StatusKind = StatusKind {
    kind: "ServiceL2Status",
    plural: "servicel2statuses",
    generate_name: "l2-",
    list_field: "interfaces",
    named_entries: true,
};

impl StatusKind {
    fn entries(&self, items: &[String]) -> serde_json::Value {
        if self.named_entries {
            items.iter().map(|n| json!({ "name": n })).collect()
        } else {
            json!(items)
        }
    }
}

/// A Service, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId {
    pub namespace: String,
    pub name: String,
}

impl ServiceId {
    /// From `namespace/name`; `None` without a slash.
    pub fn parse(key: &str) -> Option<ServiceId> {
        let (namespace, name) = key.split_once('/')?;
        Some(ServiceId {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// What this node should report: for each Service it announces, the peers
/// (status names, sorted, distinct).
pub type Desired = BTreeMap<ServiceId, Vec<String>>;

/// The Services `announcer` holds as announced, with their peers' status
/// names under `config` ([`peer_status_name`]).
pub fn desired(announcer: &Announcer, config: &Config) -> Desired {
    let names: BTreeMap<PeerKey, String> = peer_keys(config)
        .into_iter()
        .zip(&config.peers)
        .map(|(k, p)| (k, peer_status_name(&k, p)))
        .collect();
    announcer
        .announced_to()
        .filter_map(|(key, peers)| {
            let mut names: Vec<String> =
                peers.iter().filter_map(|k| names.get(k).cloned()).collect();
            names.sort();
            names.dedup();
            Some((ServiceId::parse(key)?, names))
        })
        .filter(|(_, peers)| !peers.is_empty())
        .collect()
}

/// What this node should report in `ServiceL2Status` objects: for each
/// Service it answers ARP/NDP for, the interfaces (empty: all of them).
pub fn desired_l2(layer2: &Layer2) -> Desired {
    layer2
        .owned_on()
        .filter_map(|(key, on)| {
            let names = match on {
                Interfaces::All => Vec::new(),
                Interfaces::Only(names) => names.clone(),
            };
            Some((ServiceId::parse(key)?, names))
        })
        .collect()
}

/// One object of this node as the API server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// `metadata.name`.
    pub object: String,
    /// From the service labels.
    pub service: ServiceId,
    /// `status.node`, `status.serviceName`, `status.serviceNamespace` as
    /// found (empty when the status was never written).
    pub status_node: String,
    pub status_service: ServiceId,
    /// `status.peers` (BGP) or the names in `status.interfaces` (layer 2).
    pub peers: Vec<String>,
}

impl Existing {
    /// Read an object of kind `kind`; `None` when it lacks the service labels.
    pub fn from_object(o: &DynamicObject, kind: &StatusKind) -> Option<Existing> {
        let labels = o.metadata.labels.as_ref()?;
        let service = ServiceId {
            namespace: labels.get(LABEL_SERVICE_NAMESPACE)?.clone(),
            name: labels.get(LABEL_SERVICE_NAME)?.clone(),
        };
        let status = o.data.get("status");
        let text = |f: &str| {
            status
                .and_then(|s| s.get(f))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let peers = status
            .and_then(|s| s.get(kind.list_field))
            .and_then(|p| p.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| {
                        if kind.named_entries {
                            v.get("name")?.as_str().map(str::to_string)
                        } else {
                            v.as_str().map(str::to_string)
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Existing {
            object: o.metadata.name.clone()?,
            status_node: text("node"),
            status_service: ServiceId {
                namespace: text("serviceNamespace"),
                name: text("serviceName"),
            },
            service,
            peers,
        })
    }
}

/// One write to the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// A new object for `service` (create, then patch its status: two writes).
    Create {
        service: ServiceId,
        peers: Vec<String>,
    },
    /// Patch the status of `object`.
    Patch {
        object: String,
        service: ServiceId,
        peers: Vec<String>,
    },
    /// Delete `object` (the Service is no longer announced from this node, or
    /// the object is a duplicate).
    Delete { object: String, service: ServiceId },
}

impl Write {
    /// API requests it takes.
    pub fn cost(&self) -> u32 {
        match self {
            Write::Create { .. } => 2,
            Write::Patch { .. } | Write::Delete { .. } => 1,
        }
    }

    /// `create`, `patch` or `delete` (metric label).
    pub fn verb(&self) -> &'static str {
        match self {
            Write::Create { .. } => "create",
            Write::Patch { .. } => "patch",
            Write::Delete { .. } => "delete",
        }
    }
}

/// The writes that make the objects `existing` (this node's) match `desired`
/// for node `node`: deletes first (stale statuses are wrong statuses), then
/// status patches, then creates, each in Service order. A Service with
/// several objects keeps the first by name; the others are deleted.
pub fn diff(node: &str, desired: &Desired, existing: &[Existing]) -> Vec<Write> {
    let mut by_service: BTreeMap<&ServiceId, Vec<&Existing>> = BTreeMap::new();
    for e in existing {
        by_service.entry(&e.service).or_default().push(e);
    }
    let (mut deletes, mut patches, mut creates) = (Vec::new(), Vec::new(), Vec::new());
    for (service, objs) in &mut by_service {
        objs.sort_by(|a, b| a.object.cmp(&b.object));
        let keep = match desired.get(*service) {
            Some(peers) => {
                let first = objs[0];
                if first.peers != *peers
                    || first.status_node != node
                    || first.status_service != **service
                {
                    patches.push(Write::Patch {
                        object: first.object.clone(),
                        service: (*service).clone(),
                        peers: peers.clone(),
                    });
                }
                1
            }
            None => 0,
        };
        for e in &objs[keep..] {
            deletes.push(Write::Delete {
                object: e.object.clone(),
                service: e.service.clone(),
            });
        }
    }
    for (service, peers) in desired {
        if !by_service.contains_key(service) {
            creates.push(Write::Create {
                service: service.clone(),
                peers: peers.clone(),
            });
        }
    }
    deletes.extend(patches);
    deletes.extend(creates);
    deletes
}

pub use ferrolb_ops::rate::TokenBucket;

/// Writes done, by verb, and the state of the writer, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriteCounters {
    pub creates: AtomicU64,
    pub patches: AtomicU64,
    pub deletes: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
    /// Writes waiting (the last diff's length).
    pub pending: AtomicU64,
    /// The CRD is served and this node's objects were listed.
    pub enabled: AtomicBool,
}

impl WriteCounters {
    fn count(&self, w: &Write) {
        match w {
            Write::Create { .. } => {
                // The create and the status patch.
                self.creates.fetch_add(1, Ordering::Relaxed);
                self.patches.fetch_add(1, Ordering::Relaxed);
            }
            Write::Patch { .. } => {
                self.patches.fetch_add(1, Ordering::Relaxed);
            }
            Write::Delete { .. } => {
                self.deletes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Where and as whom the writer writes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The speaker's namespace (where the objects live).
    pub namespace: String,
    /// This node's name.
    pub node: String,
    /// The speaker Pod (name, UID), the objects' owner, when known.
    pub owner_pod: Option<(String, String)>,
    /// Writes a second at most (each create counts two).
    pub writes_per_second: f64,
    /// Which objects ([`BGP`] or [`L2`]).
    pub kind: &'static StatusKind,
    /// Asked, while the CRD is not installed, whether it is now (one
    /// discovery GET a period for every writer, not a list each).
    pub discovery: Arc<ferrolb_ops::config_source::GroupDiscovery>,
}

impl WriterConfig {
    /// The owner Pod from `FERROLB_POD_NAME` and `FERROLB_POD_UID`, when both are set.
    pub fn owner_from_env() -> Option<(String, String)> {
        let name = std::env::var("FERROLB_POD_NAME").ok()?;
        let uid = std::env::var("FERROLB_POD_UID").ok()?;
        (!name.is_empty() && !uid.is_empty()).then_some((name, uid))
    }
}

/// The handle of the writer task: give it the desired state after each pass.
#[derive(Debug, Clone)]
pub struct StatusWriter {
    tx: Arc<watch::Sender<Arc<Desired>>>,
    counters: Arc<WriteCounters>,
}

impl StatusWriter {
    /// Start the writer task on the current runtime. It wakes `pass` when it
    /// becomes [enabled](Self::enabled), so that a pass hands it the state.
    pub fn spawn(client: Client, cfg: WriterConfig, pass: Arc<Notify>) -> StatusWriter {
        let (tx, rx) = watch::channel(Arc::new(Desired::new()));
        let counters = Arc::new(WriteCounters::default());
        tokio::spawn(run(client, cfg, rx, counters.clone(), pass));
        StatusWriter {
            tx: Arc::new(tx),
            counters,
        }
    }

    /// The state to reach (only a change wakes the task).
    pub fn set(&self, desired: Desired) {
        self.tx.send_if_modified(|d| {
            if **d != desired {
                *d = Arc::new(desired);
                true
            } else {
                false
            }
        });
    }

    /// The CRD is installed and the writer is running: worth computing
    /// [`desired`] for [`set`](Self::set).
    pub fn enabled(&self) -> bool {
        self.counters.enabled.load(Ordering::Relaxed)
    }

    /// The write counters.
    pub fn counters(&self) -> Arc<WriteCounters> {
        self.counters.clone()
    }
}

fn api_resource(kind: &StatusKind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metallb.io", "v1beta1", kind.kind),
        kind.plural,
    )
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn status_body(
    kind: &StatusKind,
    node: &str,
    service: &ServiceId,
    peers: &[String],
) -> serde_json::Value {
    let mut status = json!({
        "node": node,
        "serviceName": service.name,
        "serviceNamespace": service.namespace,
    });
    status[kind.list_field] = kind.entries(peers);
    json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": kind.kind,
        "status": status,
    })
}

async fn list(
    api: &Api<DynamicObject>,
    kind: &StatusKind,
    node: &str,
) -> Result<Vec<Existing>, kube::Error> {
    let lp = ListParams::default().labels(&format!("{LABEL_NODE}={node}"));
    let objs = api.list(&lp).await?;
    Ok(objs
        .items
        .iter()
        .filter_map(|o| Existing::from_object(o, kind))
        .collect())
}

/// Carry out one write; returns the object as it now stands (`None` once deleted).
async fn apply(
    api: &Api<DynamicObject>,
    cfg: &WriterConfig,
    w: &Write,
) -> Result<Option<Existing>, kube::Error> {
    let status_of = |object: String, service: &ServiceId, peers: &[String]| Existing {
        object,
        service: service.clone(),
        status_node: cfg.node.clone(),
        status_service: service.clone(),
        peers: peers.to_vec(),
    };
    match w {
        Write::Create { service, peers } => {
            let mut meta = json!({
                "generateName": cfg.kind.generate_name,
                "namespace": cfg.namespace,
                "labels": {
                    LABEL_NODE: cfg.node,
                    LABEL_SERVICE_NAME: service.name,
                    LABEL_SERVICE_NAMESPACE: service.namespace,
                },
            });
            if let Some((pod, uid)) = &cfg.owner_pod {
                meta["ownerReferences"] = json!([{
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod,
                    "uid": uid,
                }]);
            }
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": cfg.kind.kind,
                "metadata": meta,
                "spec": {},
            }))
            .map_err(kube::Error::SerdeError)?;
            let made = api.create(&PostParams::default(), &obj).await?;
            let name = made.metadata.name.unwrap_or_default();
            let body = status_body(cfg.kind, &cfg.node, service, peers);
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await?;
            Ok(Some(status_of(name, service, peers)))
        }
        Write::Patch {
            object,
            service,
            peers,
        } => {
            let body = status_body(cfg.kind, &cfg.node, service, peers);
            api.patch_status(object, &PatchParams::default(), &Patch::Merge(&body))
                .await?;
            Ok(Some(status_of(object.clone(), service, peers)))
        }
        Write::Delete { object, .. } => match api.delete(object, &DeleteParams::default()).await {
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

async fn run(
    client: Client,
    cfg: WriterConfig,
    mut rx: watch::Receiver<Arc<Desired>>,
    counters: Arc<WriteCounters>,
    pass: Arc<Notify>,
) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, &cfg.namespace, &api_resource(cfg.kind));
    let kind = cfg.kind.kind;
    let mut bucket = TokenBucket::new(cfg.writes_per_second, cfg.writes_per_second.max(1.0));
    let mut known: Option<Vec<Existing>> = None;
    let mut listed_at = Instant::now();
    let mut said_absent = false;
    // Pause after a failed list (forbidden, API server away…), doubling up to ABSENT_RECHECK.
    let mut list_pause = ERROR_PAUSE;
    loop {
        let Some(existing) = known.as_mut() else {
            match list(&api, cfg.kind, &cfg.node).await {
                Ok(l) => {
                    info!(objects = l.len(), "{kind} objects of this node listed");
                    said_absent = false;
                    list_pause = ERROR_PAUSE;
                    known = Some(l);
                    listed_at = Instant::now();
                    if !counters.enabled.swap(true, Ordering::Relaxed) {
                        pass.notify_one();
                    }
                }
                Err(e) if is_not_found(&e) => {
                    counters.enabled.store(false, Ordering::Relaxed);
                    if !said_absent {
                        info!(
                            "the {kind} CRD is not installed: not writing {kind} objects (looking again every {}s)",
                            ABSENT_RECHECK.as_secs()
                        );
                        said_absent = true;
                    }
                    // Listed again once discovery shows the resource.
                    loop {
                        tokio::time::sleep(ABSENT_RECHECK).await;
                        if cfg.discovery.discover().await.may_serve(cfg.kind.plural) {
                            break;
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?list_pause, "cannot list {kind} objects");
                    tokio::time::sleep(list_pause).await;
                    list_pause = (list_pause * 2).min(ABSENT_RECHECK);
                }
            }
            continue;
        };
        let desired = rx.borrow_and_update().clone();
        let writes = diff(&cfg.node, &desired, existing);
        counters
            .pending
            .store(writes.len() as u64, Ordering::Relaxed);
        let Some(w) = writes.into_iter().next() else {
            let resync = tokio::time::sleep_until((listed_at + RESYNC).into());
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                () = resync => known = None,
            }
            continue;
        };
        if let Err(wait) = bucket.take(w.cost(), Instant::now()) {
            tokio::time::sleep(wait).await;
            continue;
        }
        debug!(write = ?w, "{kind} write");
        match apply(&api, &cfg, &w).await {
            Ok(now) => {
                counters.count(&w);
                match (&w, now) {
                    (Write::Create { .. }, Some(e)) => existing.push(e),
                    (Write::Patch { object, .. }, Some(e)) => {
                        if let Some(slot) = existing.iter_mut().find(|x| x.object == *object) {
                            *slot = e;
                        }
                    }
                    (Write::Delete { object, .. }, _) => existing.retain(|x| x.object != *object),
                    _ => {}
                }
            }
            Err(e) if is_conflict(&e) && matches!(w, Write::Create { .. }) => {
                // `generateName` drew a name that is taken (5 random
                // characters: with thousands of objects it happens); the
                // next round draws another.
                counters.errors.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "generated name taken; creating again");
            }
            Err(e) if is_not_found(&e) && matches!(w, Write::Create { .. }) => {
                // The CRD went away (or never was): list again, which says so.
                counters.errors.fetch_add(1, Ordering::Relaxed);
                known = None;
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, write = w.verb(), service = ?w, "{kind} write failed; listing again");
                known = None;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str) -> ServiceId {
        ServiceId {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn obj(object: &str, s: &ServiceId, node: &str, peers: &[&str]) -> Existing {
        Existing {
            object: object.into(),
            service: s.clone(),
            status_node: node.into(),
            status_service: s.clone(),
            peers: peers.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn peers(p: &[&str]) -> Vec<String> {
        p.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn diff_creates_patches_deletes() {
        let (a, b, c, d) = (
            svc("ns", "a"),
            svc("ns", "b"),
            svc("ns", "c"),
            svc("other", "d"),
        );
        let desired: Desired = [
            (a.clone(), peers(&["rt-1"])),
            (b.clone(), peers(&["rt-1", "rt-2"])),
            (c.clone(), peers(&["10.0.0.1:179"])),
        ]
        .into();
        let mut unfinished = obj("bgp-c2", &c, "", &[]);
        unfinished.status_service = svc("", "");
        let existing = vec![
            obj("bgp-a", &a, "n1", &["rt-1"]),          // up to date
            obj("bgp-b", &b, "n1", &["rt-1"]),          // peers changed
            unfinished,                                 // created, status never written
            obj("bgp-c1", &c, "n1", &["10.0.0.1:179"]), // c's first object: kept
            obj("bgp-d", &d, "n1", &["rt-1"]),          // no longer announced
        ];
        assert_eq!(
            diff("n1", &desired, &existing),
            vec![
                Write::Delete {
                    object: "bgp-c2".into(),
                    service: c.clone()
                },
                Write::Delete {
                    object: "bgp-d".into(),
                    service: d.clone()
                },
                Write::Patch {
                    object: "bgp-b".into(),
                    service: b.clone(),
                    peers: peers(&["rt-1", "rt-2"])
                },
            ]
        );
        // Nothing exists yet: one create per Service, in order.
        let creates = diff("n1", &desired, &[]);
        assert_eq!(creates.len(), 3);
        assert!(matches!(&creates[0], Write::Create { service, .. } if *service == a));
        assert_eq!(creates.iter().map(Write::cost).sum::<u32>(), 6);
        // Reached: nothing to do.
        let reached: Vec<Existing> = desired
            .iter()
            .map(|(s, p)| Existing {
                object: format!("bgp-{}", s.name),
                service: s.clone(),
                status_node: "n1".into(),
                status_service: s.clone(),
                peers: p.clone(),
            })
            .collect();
        assert!(diff("n1", &desired, &reached).is_empty());
        // Another node's status in an object of ours is rewritten.
        let mut wrong_node = reached.clone();
        wrong_node[0].status_node = "n2".into();
        assert_eq!(diff("n1", &desired, &wrong_node).len(), 1);
        // Nothing desired: every object goes.
        assert_eq!(diff("n1", &Desired::new(), &reached).len(), 3);
    }

    #[test]
    fn existing_from_object() {
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "ServiceBGPStatus",
            "metadata": {"name": "bgp-x1", "namespace": "metallb-system", "labels": {
                LABEL_NODE: "n1", LABEL_SERVICE_NAME: "web", LABEL_SERVICE_NAMESPACE: "default"}},
            "status": {"node": "n1", "serviceName": "web", "serviceNamespace": "default",
                       "peers": ["rt-1", "rt-2"]}
        }))
        .unwrap();
        let e = Existing::from_object(&o, &BGP).unwrap();
        assert_eq!(
            e,
            obj("bgp-x1", &svc("default", "web"), "n1", &["rt-1", "rt-2"])
        );
        let mut bare = o.clone();
        bare.metadata.labels = None;
        assert_eq!(Existing::from_object(&bare, &BGP), None);
    }

    #[test]
    fn l2_status_lists_interfaces_as_named_entries() {
        let s = svc("default", "web");
        let body = status_body(&L2, "n1", &s, &["eth0".into(), "eth1".into()]);
        assert_eq!(body["kind"], "ServiceL2Status");
        assert_eq!(
            body["status"],
            json!({"node": "n1", "serviceName": "web", "serviceNamespace": "default",
                   "interfaces": [{"name": "eth0"}, {"name": "eth1"}]})
        );
        // All interfaces: an empty list, as MetalLB writes it.
        assert_eq!(
            status_body(&L2, "n1", &s, &[])["status"]["interfaces"],
            json!([])
        );
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "ServiceL2Status",
            "metadata": {"name": "l2-x1", "namespace": "metallb-system", "labels": {
                LABEL_NODE: "n1", LABEL_SERVICE_NAME: "web", LABEL_SERVICE_NAMESPACE: "default"}},
            "status": body["status"].clone(),
        }))
        .unwrap();
        assert_eq!(
            Existing::from_object(&o, &L2).unwrap(),
            obj("l2-x1", &s, "n1", &["eth0", "eth1"])
        );
        assert_eq!(
            status_body(&BGP, "n1", &s, &["rt-1".into()])["status"]["peers"],
            json!(["rt-1"])
        );
    }
}
