//! Kubernetes objects → the plain values [`crate::announce`] decides on.
//!
//! The watches in [`crate::run`] fold every event straight into slim maps
//! ([`Services`], [`EndpointsIndex`], [`SliceIndex`]): each object is reduced,
//! as it arrives, to the few fields the decision reads, so the speaker never
//! keeps a Kubernetes object per Service. [`service_states`] turns the maps
//! into the decision's inputs for one pass. Endpoints come from EndpointSlices
//! (discovery.k8s.io/v1) when the API server serves them, else from core/v1
//! Endpoints (a 1.20 server serves slices only as v1beta1).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_ops::service;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

use crate::announce::{
    EXCLUDE_LABEL, Endpoint, EndpointSummary, NodeState, ServiceFacts, ServiceLabels, ServiceState,
    TrafficPolicy, usable,
};
use crate::layer2::L2Service;

/// Label on an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `namespace/name` of an object; the name alone for a cluster-scoped one (a Node).
fn key_of<K: Resource>(obj: &K) -> Box<str> {
    let m = obj.meta();
    let name = m.name.as_deref().unwrap_or_default();
    match m.namespace.as_deref() {
        Some(ns) => format!("{ns}/{name}").into_boxed_str(),
        None => name.into(),
    }
}

/// Slim values keyed `namespace/name`, fed by watcher events with the
/// reflector's semantics: `Init` starts a fresh buffer, `InitApply` fills it,
/// `InitDone` swaps it in (so a relist drops what was deleted meanwhile);
/// `Apply` inserts or replaces, `Delete` removes. An object the conversion
/// maps to `None` (say a Service that is not a LoadBalancer) is not kept, and
/// replaces (removes) what was kept under its key.
#[derive(Debug)]
pub struct SlimMap<V> {
    live: BTreeMap<Box<str>, V>,
    buffer: Option<BTreeMap<Box<str>, V>>,
}

impl<V> Default for SlimMap<V> {
    fn default() -> Self {
        SlimMap {
            live: BTreeMap::new(),
            buffer: None,
        }
    }
}

impl<V> SlimMap<V> {
    /// Apply one watcher event, converting objects with `slim`.
    pub fn apply<K: Resource>(&mut self, event: &Event<K>, mut slim: impl FnMut(&K) -> Option<V>) {
        match event {
            Event::Init => self.buffer = Some(BTreeMap::new()),
            Event::InitApply(obj) => {
                let buffer = self.buffer.get_or_insert_with(BTreeMap::new);
                if let Some(v) = slim(obj) {
                    buffer.insert(key_of(obj), v);
                }
            }
            Event::InitDone => {
                if let Some(buffer) = self.buffer.take() {
                    self.live = buffer;
                }
            }
            Event::Apply(obj) => {
                let key = key_of(obj);
                match slim(obj) {
                    Some(v) => {
                        self.live.insert(key, v);
                    }
                    None => {
                        self.live.remove(&key);
                    }
                }
            }
            Event::Delete(obj) => {
                self.live.remove(&key_of(obj));
            }
        }
    }

    /// The value kept under `namespace/name`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.live.get(key)
    }

    /// Every value kept, to change in place.
    fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.live.values_mut()
    }

    /// Everything kept, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.live.iter().map(|(k, v)| (&**k, v))
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// A Service's IPs; nearly always one, kept inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ips {
    One(IpAddr),
    /// None, or more than one.
    Many(Box<[IpAddr]>),
}

impl Ips {
    pub fn as_slice(&self) -> &[IpAddr] {
        match self {
            Ips::One(ip) => std::slice::from_ref(ip),
            Ips::Many(ips) => ips,
        }
    }
}

impl From<Vec<IpAddr>> for Ips {
    fn from(ips: Vec<IpAddr>) -> Self {
        match ips.as_slice() {
            [ip] => Ips::One(*ip),
            _ => Ips::Many(ips.into_boxed_slice()),
        }
    }
}

/// What the speaker keeps of a LoadBalancer Service: what the decision reads,
/// and the uid for the Events' object reference (namespace and name are the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimService {
    pub uid: Option<Box<str>>,
    pub traffic_policy: TrafficPolicy,
    pub ips: Ips,
    /// The Service's labels whose keys some advertisement's
    /// `serviceSelectors` reads (empty, allocating nothing, when none does).
    pub labels: Box<[(Box<str>, Box<str>)]>,
}

/// The slim form of a Service, keeping the labels whose keys are in
/// `label_keys`; `None` unless it is a LoadBalancer of class `lb_class`
/// (`None`: a LoadBalancer without `spec.loadBalancerClass`, as the
/// controller's `--lb-class` decides which Services it gives IPs).
pub fn slim_service(
    svc: &Service,
    lb_class: Option<&str>,
    label_keys: &BTreeSet<Box<str>>,
) -> Option<SlimService> {
    (service::is_load_balancer(svc) && service::load_balancer_class(svc) == lb_class).then(|| {
        let labels = match &svc.metadata.labels {
            Some(l) if !label_keys.is_empty() => l
                .iter()
                .filter(|(k, _)| label_keys.contains(k.as_str()))
                .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str())))
                .collect(),
            _ => Box::default(),
        };
        SlimService {
            uid: svc.metadata.uid.as_deref().map(Box::from),
            traffic_policy: service::traffic_policy(svc),
            ips: service::ingress_ips(svc).into(),
            labels,
        }
    })
}

/// The LoadBalancer Services of one load-balancer class, slim, keyed
/// `namespace/name`. The default keeps those without a class, and no labels.
///
/// Labels: only those whose keys the configuration's `serviceSelectors` read
/// ([`Services::set_label_keys`]), so a speaker whose advertisements select
/// no Services keeps no label at all. When the configuration starts reading
/// a key the stored Services do not carry, they must be listed again (the
/// watch events are gone): [`Services::set_label_keys`] says so, and
/// [`Services::labels_pending`] stays true until the new list is in.
#[derive(Debug, Default)]
pub struct Services {
    map: SlimMap<SlimService>,
    lb_class: Option<String>,
    label_keys: BTreeSet<Box<str>>,
    labels_pending: bool,
}

impl Services {
    /// Keep the LoadBalancer Services of class `lb_class` (`None`: without one).
    pub fn with_class(lb_class: Option<String>) -> Self {
        Services {
            lb_class,
            ..Services::default()
        }
    }

    /// Fold one watch event in.
    pub fn apply(&mut self, event: &Event<Service>) {
        let class = self.lb_class.as_deref();
        let keys = &self.label_keys;
        self.map.apply(event, |svc| slim_service(svc, class, keys));
        if matches!(event, Event::InitDone) {
            self.labels_pending = false;
        }
    }

    /// Keep the labels with these keys from now on (the configuration's
    /// [`ferrolb_config::Config::service_label_keys`]). Labels of keys no
    /// longer read are dropped at once. Returns true when a key is new: the
    /// Services must be listed again to learn it (until that list is in,
    /// [`Services::labels_pending`] is true).
    pub fn set_label_keys<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) -> bool {
        let keys: BTreeSet<Box<str>> = keys.into_iter().map(Box::from).collect();
        if keys == self.label_keys {
            return false;
        }
        let added = keys.iter().any(|k| !self.label_keys.contains(k));
        for svc in self.map.values_mut() {
            if svc.labels.iter().any(|(k, _)| !keys.contains(k)) {
                svc.labels = svc
                    .labels
                    .iter()
                    .filter(|(k, _)| keys.contains(k))
                    .cloned()
                    .collect();
            }
        }
        self.label_keys = keys;
        if added {
            self.labels_pending = true;
        }
        added
    }

    /// The configuration reads a label key that the stored Services were
    /// read without: a new list is under way, decisions should wait for it.
    pub fn labels_pending(&self) -> bool {
        self.labels_pending
    }

    pub fn get(&self, key: &str) -> Option<&SlimService> {
        self.map.get(key)
    }

    /// Every LoadBalancer Service with its IPs, in key order.
    pub fn ips(&self) -> impl Iterator<Item = (&str, &[IpAddr])> {
        self.map.iter().map(|(k, s)| (k, s.ips.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Node names seen in endpoints, each stored once; endpoints refer to them by index.
#[derive(Debug, Default)]
pub struct NodeNames {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl NodeNames {
    const NONE: u32 = u32::MAX;

    fn intern(&mut self, name: Option<&str>) -> u32 {
        let Some(name) = name else {
            return Self::NONE;
        };
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(Self::NONE);
        if i == Self::NONE {
            return i;
        }
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.index.insert(name, i);
        i
    }

    fn name(&self, i: u32) -> Option<&str> {
        self.names.get(i as usize).map(|n| &**n)
    }
}

/// One endpoint as kept: its node (an index into [`NodeNames`]) and conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlimEndpoint {
    node: u32,
    ready: bool,
    serving: bool,
}

fn slim_endpoints(nodes: &mut NodeNames, eps: Vec<Endpoint>) -> Box<[SlimEndpoint]> {
    eps.into_iter()
        .map(|e| SlimEndpoint {
            node: nodes.intern(e.node.as_deref()),
            ready: e.ready,
            serving: e.serving,
        })
        .collect()
}

fn expand(nodes: &NodeNames, eps: &[SlimEndpoint], out: &mut Vec<Endpoint>) {
    out.extend(eps.iter().map(|e| Endpoint {
        node: nodes.name(e.node).map(str::to_string),
        ready: e.ready,
        serving: e.serving,
    }));
}

/// core/v1 Endpoints, slim, keyed by their Service's `namespace/name`.
#[derive(Debug, Default)]
pub struct EndpointsIndex {
    map: SlimMap<Box<[SlimEndpoint]>>,
    nodes: NodeNames,
}

impl EndpointsIndex {
    /// Fold one watch event in.
    pub fn apply(&mut self, event: &Event<Endpoints>) {
        let nodes = &mut self.nodes;
        self.map.apply(event, |ep| {
            Some(slim_endpoints(nodes, endpoints_endpoints(ep)))
        });
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One EndpointSlice as kept: the Service it belongs to and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEntry {
    /// `namespace/name` of the Service (the slice's service-name label).
    service: Box<str>,
    endpoints: Box<[SlimEndpoint]>,
}

/// EndpointSlices, slim, keyed by the slice's own `namespace/name` (a Service
/// has several); folded per Service when the decision's inputs are built.
#[derive(Debug, Default)]
pub struct SliceIndex {
    map: SlimMap<SliceEntry>,
    nodes: NodeNames,
}

impl SliceIndex {
    /// Fold one watch event in. A slice without the service-name label is not kept.
    pub fn apply(&mut self, event: &Event<EndpointSlice>) {
        let nodes = &mut self.nodes;
        self.map.apply(event, |slice| {
            let svc = slice.labels().get(SERVICE_NAME_LABEL)?;
            Some(SliceEntry {
                service: format!("{}/{svc}", slice.namespace().unwrap_or_default())
                    .into_boxed_str(),
                endpoints: slim_endpoints(nodes, slice_endpoints(slice)),
            })
        });
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Where the speaker reads endpoints from.
#[derive(Debug)]
pub enum EndpointSource {
    /// discovery.k8s.io/v1 EndpointSlices.
    Slices(SliceIndex),
    /// core/v1 Endpoints (fallback for API servers without EndpointSlice v1).
    Endpoints(EndpointsIndex),
}

/// The node as the decision needs it: labels, the `NetworkUnavailable`
/// condition, and whether it carries the exclude-from-external-load-balancers
/// label.
pub fn node_state(name: &str, node: Option<&Node>) -> NodeState {
    let Some(node) = node else {
        // Not seen yet: no labels, so selectors with labels do not match.
        return NodeState {
            name: name.to_string(),
            ..NodeState::default()
        };
    };
    let network_unavailable = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True")
        });
    let labels = node.labels().clone();
    NodeState {
        name: name.to_string(),
        excluded: labels.contains_key(EXCLUDE_LABEL),
        labels,
        network_unavailable,
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
    }
}

/// This node as last seen. A Node object that disappears (deleted, or renamed
/// away) keeps its last known labels and conditions until it comes back or the
/// speaker restarts, so peers selected by its labels do not drop because the
/// object is briefly gone.
#[derive(Debug, Default)]
pub struct KnownNode {
    last: Option<NodeState>,
}

impl KnownNode {
    /// The node's state given its slim state now in the watch (`None`: absent).
    pub fn observe_state(&mut self, name: &str, node: Option<&NodeState>) -> NodeState {
        match node {
            Some(n) => {
                self.last = Some(n.clone());
                n.clone()
            }
            None => self.last.clone().unwrap_or_else(|| node_state(name, None)),
        }
    }

    /// The node's state given the object now in the watch (`None`: absent).
    pub fn observe(&mut self, name: &str, node: Option<&Node>) -> NodeState {
        match node {
            Some(n) => {
                let state = node_state(name, Some(n));
                self.last = Some(state.clone());
                state
            }
            None => self.last.clone().unwrap_or_else(|| node_state(name, None)),
        }
    }
}

/// Every Node, slim ([`node_state`]: labels, `NetworkUnavailable`,
/// excluded), keyed by name: what the layer 2 election reads of the other
/// nodes, and this node's own state.
#[derive(Debug, Default)]
pub struct Nodes(SlimMap<NodeState>);

impl Nodes {
    /// Fold one watch event in.
    pub fn apply(&mut self, event: &Event<Node>) {
        self.0
            .apply(event, |n| Some(node_state(&n.name_any(), Some(n))));
    }

    /// The node named `name`.
    pub fn get(&self, name: &str) -> Option<&NodeState> {
        self.0.get(name)
    }

    /// Every node's name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl crate::layer2::NodeLookup for Nodes {
    fn node(&self, name: &str) -> Option<&NodeState> {
        self.get(name)
    }
}

/// Endpoints listed in one EndpointSlice. A missing `ready` means ready (API
/// contract); a missing `serving` means the same as `ready`.
pub fn slice_endpoints(slice: &EndpointSlice) -> Vec<Endpoint> {
    slice
        .endpoints
        .iter()
        .map(|e| {
            let cond = e.conditions.as_ref();
            let ready = cond.and_then(|c| c.ready).unwrap_or(true);
            let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
            Endpoint {
                node: e.node_name.clone(),
                ready,
                serving,
            }
        })
        .collect()
}

/// Endpoints listed in a core/v1 Endpoints object: `addresses` are ready,
/// `notReadyAddresses` are not.
pub fn endpoints_endpoints(ep: &Endpoints) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        for a in subset.addresses.iter().flatten() {
            out.push(Endpoint {
                node: a.node_name.clone(),
                ready: true,
                serving: true,
            });
        }
        for a in subset.not_ready_addresses.iter().flatten() {
            out.push(Endpoint {
                node: a.node_name.clone(),
                ready: false,
                serving: false,
            });
        }
    }
    out
}

/// The endpoints of every service, summarized as seen from one node, for one
/// decision pass. For EndpointSlices the slices are folded per Service once
/// (a Service may have several); core/v1 Endpoints are read in place.
pub struct EndpointView<'a> {
    source: &'a EndpointSource,
    /// The node's index among the interned names (Endpoints only).
    here: Option<u32>,
    /// Per Service key (EndpointSlices only).
    by_service: HashMap<&'a str, EndpointSummary>,
}

impl<'a> EndpointView<'a> {
    pub fn new(source: &'a EndpointSource, node: &str) -> Self {
        let mut view = EndpointView {
            source,
            here: None,
            by_service: HashMap::new(),
        };
        match source {
            EndpointSource::Slices(idx) => {
                let here = idx.nodes.index.get(node).copied();
                for (_, slice) in idx.map.iter() {
                    let s = summarize(&slice.endpoints, here);
                    let e = view.by_service.entry(&slice.service).or_default();
                    *e = e.or(s);
                }
            }
            EndpointSource::Endpoints(idx) => view.here = idx.nodes.index.get(node).copied(),
        }
        view
    }

    /// The summary for Service `namespace/name` (no endpoints known: nothing usable).
    pub fn summary(&self, key: &str) -> EndpointSummary {
        match self.source {
            EndpointSource::Slices(_) => self.by_service.get(key).copied().unwrap_or_default(),
            EndpointSource::Endpoints(idx) => idx
                .map
                .get(key)
                .map(|eps| summarize(eps, self.here))
                .unwrap_or_default(),
        }
    }
}

fn summarize(eps: &[SlimEndpoint], here: Option<u32>) -> EndpointSummary {
    eps.iter().fold(EndpointSummary::default(), |s, e| {
        s.with(e.ready, e.serving, Some(e.node) == here)
    })
}

/// The decision's input for every LoadBalancer service, in key order, borrowed
/// from the maps (nothing is allocated per service).
pub fn service_facts<'a>(
    services: &'a Services,
    endpoints: &'a EndpointView<'a>,
) -> impl Iterator<Item = ServiceFacts<'a>> + 'a {
    services.map.iter().map(|(key, svc)| ServiceFacts {
        key,
        ips: svc.ips.as_slice(),
        traffic_policy: svc.traffic_policy,
        endpoints: endpoints.summary(key),
        labels: ServiceLabels::Pairs(&svc.labels),
    })
}

/// The layer 2 decision's input for every LoadBalancer Service with an IP in
/// a pool that `wanted` accepts (a layer 2 pool), in key order: only those
/// Services' endpoints are folded into the nodes they run on.
pub fn l2_facts<'a>(
    services: &'a Services,
    endpoints: &'a EndpointSource,
    mut wanted: impl FnMut(IpAddr) -> bool,
) -> Vec<L2Service<'a>> {
    let mut out: Vec<L2Service<'a>> = services
        .map
        .iter()
        .filter(|(_, svc)| svc.ips.as_slice().iter().any(|ip| wanted(*ip)))
        .map(|(key, svc)| L2Service {
            key,
            ips: svc.ips.as_slice(),
            traffic_policy: svc.traffic_policy,
            usable_anywhere: false,
            usable_nodes: Vec::new(),
            labels: ServiceLabels::Pairs(&svc.labels),
        })
        .collect();
    if out.is_empty() {
        return out;
    }
    let index: HashMap<&str, usize> = out.iter().enumerate().map(|(i, s)| (s.key, i)).collect();
    let mut fold = |svc: &str, nodes: &'a NodeNames, eps: &'a [SlimEndpoint]| {
        let Some(&i) = index.get(svc) else {
            return;
        };
        for e in eps.iter().filter(|e| usable(e.ready, e.serving)) {
            out[i].usable_anywhere = true;
            if let Some(n) = nodes.name(e.node) {
                out[i].usable_nodes.push(n);
            }
        }
    };
    match endpoints {
        EndpointSource::Slices(idx) => {
            for (_, slice) in idx.map.iter() {
                fold(&slice.service, &idx.nodes, &slice.endpoints);
            }
        }
        EndpointSource::Endpoints(idx) => {
            for (key, eps) in idx.map.iter() {
                fold(key, &idx.nodes, eps);
            }
        }
    }
    for s in &mut out {
        s.usable_nodes.sort_unstable();
        s.usable_nodes.dedup();
    }
    out
}

/// Every LoadBalancer service with its IPs, policy and endpoints as owned
/// values, keyed `namespace/name` (for tests and diagnostics: the speaker
/// decides on [`service_facts`], which allocates nothing per service).
pub fn service_states(
    services: &Services,
    endpoints: &EndpointSource,
) -> BTreeMap<String, ServiceState> {
    let mut by_service: HashMap<&str, Vec<Endpoint>> = HashMap::new();
    match endpoints {
        EndpointSource::Slices(idx) => {
            for (_, slice) in idx.map.iter() {
                expand(
                    &idx.nodes,
                    &slice.endpoints,
                    by_service.entry(&*slice.service).or_default(),
                );
            }
        }
        EndpointSource::Endpoints(idx) => {
            for (key, eps) in idx.map.iter() {
                expand(&idx.nodes, eps, by_service.entry(key).or_default());
            }
        }
    }
    services
        .map
        .iter()
        .map(|(key, svc)| {
            let endpoints = by_service.remove(key).unwrap_or_default();
            let state = ServiceState {
                key: key.to_string(),
                ips: svc.ips.as_slice().to_vec(),
                traffic_policy: svc.traffic_policy,
                endpoints,
                labels: svc
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            (key.to_string(), state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn slim_service_keeps_what_the_decision_reads() {
        let s = svc(json!({
            "metadata": {"name": "web", "namespace": "e2e", "uid": "u1", "resourceVersion": "7",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.17.254.1"}, {"hostname": "x"}]}}
        }));
        let slim = slim_service(&s, None, &BTreeSet::new()).expect("a LoadBalancer is kept");
        assert_eq!(slim.ips.as_slice(), service::ingress_ips(&s).as_slice());
        assert_eq!(slim.ips, Ips::One("172.17.254.1".parse().unwrap()));
        assert_eq!(slim.traffic_policy, TrafficPolicy::Local);
        assert_eq!(slim.uid.as_deref(), Some("u1"));

        let mut services = Services::default();
        services.apply(&Event::Apply(s.clone()));
        let kept = services.get("e2e/web").unwrap();
        assert_eq!(
            ferrolb_ops::events::Regarding::service("e2e/web", kept.uid.as_deref())
                .reference()
                .map(std::borrow::Cow::into_owned),
            Some(s.object_ref(&())),
            "the Event reference built from what is kept is what the full object gives"
        );
    }

    #[test]
    fn only_the_labels_selectors_read_are_kept() {
        let s = svc(json!({
            "metadata": {"name": "web", "namespace": "e2e",
                "labels": {"app": "web", "tier": "edge", "helm.sh/chart": "web-1.2.3"}},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.17.254.1"}]}}
        }));
        // No advertisement selects Services: nothing kept, nothing allocated.
        let slim = slim_service(&s, None, &BTreeSet::new()).unwrap();
        assert!(slim.labels.is_empty());
        let keys: BTreeSet<Box<str>> = ["app".into(), "zone".into()].into();
        let slim = slim_service(&s, None, &keys).unwrap();
        assert_eq!(&*slim.labels, [("app".into(), "web".into())]);

        let mut services = Services::default();
        services.apply(&Event::Apply(s.clone()));
        assert!(services.get("e2e/web").unwrap().labels.is_empty());
        assert!(!services.labels_pending());
        // A key the kept Services were read without: list again, and wait.
        assert!(services.set_label_keys(["app", "tier"]));
        assert!(services.labels_pending());
        assert!(!services.set_label_keys(["tier", "app"]), "unchanged");
        services.apply(&Event::Init);
        services.apply(&Event::InitApply(s.clone()));
        assert!(services.labels_pending(), "until the list is complete");
        services.apply(&Event::InitDone);
        assert!(!services.labels_pending());
        let mut got: Vec<_> = services.get("e2e/web").unwrap().labels.to_vec();
        got.sort();
        assert_eq!(
            got,
            [("app".into(), "web".into()), ("tier".into(), "edge".into())]
        );
        // Fewer keys: dropped at once, no list needed.
        assert!(!services.set_label_keys(["tier"]));
        assert!(!services.labels_pending());
        assert_eq!(
            &*services.get("e2e/web").unwrap().labels,
            [("tier".into(), "edge".into())]
        );
        // The decisions read them.
        let eps = EndpointSource::Slices(SliceIndex::default());
        let view = EndpointView::new(&eps, "n1");
        let facts: Vec<_> = service_facts(&services, &view).collect();
        use ferrolb_config::LabelSet;
        assert_eq!(facts[0].labels.label("tier"), Some("edge"));
        assert_eq!(facts[0].labels.label("app"), None);
    }

    #[test]
    fn cluster_ip_service_is_not_kept() {
        let lb = svc(json!({
            "metadata": {"name": "db", "namespace": "e2e"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"ip": "1.2.3.5"}]}}
        }));
        let s = svc(json!({
            "metadata": {"name": "db", "namespace": "e2e"},
            "spec": {"type": "ClusterIP", "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
        }));
        assert!(slim_service(&s, None, &BTreeSet::new()).is_none());
        let mut services = Services::default();
        services.apply(&Event::Apply(lb));
        assert_eq!(services.get("e2e/db").unwrap().ips.as_slice().len(), 2);
        services.apply(&Event::Apply(s));
        assert!(
            services.is_empty(),
            "a type change away from LoadBalancer drops it"
        );
    }

    #[test]
    fn only_services_of_the_speakers_load_balancer_class_are_kept() {
        let of_class = |class: Option<&str>| {
            svc(json!({
                "metadata": {"name": "web", "namespace": "ns"},
                "spec": {"type": "LoadBalancer", "loadBalancerClass": class},
                "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
            }))
        };
        let mut default = Services::default();
        let mut ours = Services::with_class(Some("ferrolb.io/bgp".into()));
        for class in [None, Some("ferrolb.io/bgp"), Some("other")] {
            for s in [&mut default, &mut ours] {
                s.apply(&Event::Apply(of_class(class)));
            }
            assert_eq!(default.len(), usize::from(class.is_none()), "{class:?}");
            assert_eq!(
                ours.len(),
                usize::from(class == Some("ferrolb.io/bgp")),
                "{class:?}"
            );
        }
    }

    #[test]
    fn slim_endpoints_and_slices_keep_nodes_and_readiness() {
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "e2e", "managedFields": [{"manager": "m"}]},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.1", "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "p"}}],
                "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "n2"}, {"ip": "10.0.0.3"}],
                "ports": [{"port": 8080}]
            }]
        }))
        .unwrap();
        let mut idx = EndpointsIndex::default();
        idx.apply(&Event::Apply(ep.clone()));
        let mut out = Vec::new();
        expand(&idx.nodes, idx.map.get("e2e/web").unwrap(), &mut out);
        assert_eq!(out, endpoints_endpoints(&ep));

        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "e2e",
                "labels": {SERVICE_NAME_LABEL: "web", "other": "x"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n1",
                "conditions": {"ready": false, "serving": true}, "hostname": "h"}],
            "ports": [{"port": 8080}]
        }))
        .unwrap();
        let mut idx = SliceIndex::default();
        idx.apply(&Event::Apply(slice.clone()));
        let entry = idx.map.get("e2e/web-abc").unwrap();
        assert_eq!(&*entry.service, "e2e/web");
        let mut out = Vec::new();
        expand(&idx.nodes, &entry.endpoints, &mut out);
        assert_eq!(out, slice_endpoints(&slice));
    }

    #[test]
    fn nodes_are_kept_slim_by_name() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"rack": "a", EXCLUDE_LABEL: ""},
                "managedFields": [{"manager": "kubelet"}]},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "True"}]}
        }))
        .unwrap();
        let mut nodes = Nodes::default();
        nodes.apply(&Event::Apply(node.clone()));
        let n = nodes.get("n1").expect("found by its name");
        assert_eq!(n, &node_state("n1", Some(&node)));
        assert!(n.excluded && n.network_unavailable);
        assert_eq!(n.labels.get("rack").map(String::as_str), Some("a"));
        assert_eq!(nodes.names().collect::<Vec<_>>(), ["n1"]);
        nodes.apply(&Event::Delete(node));
        assert!(nodes.is_empty());
    }

    #[test]
    fn node_names_are_stored_once() {
        let mut nodes = NodeNames::default();
        let a = nodes.intern(Some("n1"));
        assert_eq!(nodes.intern(Some("n2")), a + 1);
        assert_eq!(nodes.intern(Some("n1")), a);
        assert_eq!(nodes.intern(None), NodeNames::NONE);
        assert_eq!(nodes.name(a), Some("n1"));
        assert_eq!(nodes.name(NodeNames::NONE), None);
    }

    fn lb(name: &str, ip: &str) -> Service {
        svc(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}
        }))
    }

    #[test]
    fn relist_swaps_in_at_init_done_like_the_reflector() {
        let mut services = Services::default();
        services.apply(&Event::Init);
        services.apply(&Event::InitApply(lb("a", "10.0.0.1")));
        services.apply(&Event::InitApply(lb("b", "10.0.0.2")));
        assert!(services.is_empty(), "nothing is visible before InitDone");
        services.apply(&Event::InitDone);
        assert_eq!(services.len(), 2);

        services.apply(&Event::Apply(lb("a", "10.0.0.9")));
        assert_eq!(
            services.get("ns/a").unwrap().ips,
            Ips::One("10.0.0.9".parse().unwrap())
        );
        services.apply(&Event::Delete(lb("b", "10.0.0.2")));
        assert!(services.get("ns/b").is_none());

        // A relist (after a watch error) in which `a` is gone and `c` is new:
        // the old view stays until InitDone, then the listed one replaces it.
        services.apply(&Event::Init);
        services.apply(&Event::InitApply(lb("c", "10.0.0.3")));
        assert!(services.get("ns/a").is_some());
        services.apply(&Event::InitDone);
        assert!(services.get("ns/a").is_none());
        assert!(services.get("ns/c").is_some());
        assert_eq!(services.len(), 1);
    }

    #[test]
    fn slices_of_one_service_are_folded_and_deleted_one_by_one() {
        let slice = |name: &str, svc: &str, node: &str| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns",
                    "labels": {SERVICE_NAME_LABEL: svc}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": node}]
            }))
            .unwrap()
        };
        let mut services = Services::default();
        services.apply(&Event::Apply(lb("web", "10.1.0.1")));
        let mut idx = SliceIndex::default();
        idx.apply(&Event::Apply(slice("web-1", "web", "n1")));
        idx.apply(&Event::Apply(slice("web-2", "web", "n2")));
        idx.apply(&Event::Apply(slice("db-1", "db", "n3")));
        let mut src = EndpointSource::Slices(idx);
        let nodes = |src: &EndpointSource| -> Vec<Option<String>> {
            service_states(&services, src)["ns/web"]
                .endpoints
                .iter()
                .map(|e| e.node.clone())
                .collect()
        };
        assert_eq!(nodes(&src), [Some("n1".into()), Some("n2".into())]);
        let EndpointSource::Slices(idx) = &mut src else {
            unreachable!()
        };
        idx.apply(&Event::Delete(slice("web-1", "web", "n1")));
        assert_eq!(nodes(&src), [Some("n2".into())]);
    }
}
