//! Kubernetes objects → the plain values [`crate::announce`] decides on.
//!
//! The conversions are pure functions over reflector stores; the watches that
//! fill the stores live in [`crate::run`]. Endpoints come from EndpointSlices
//! (discovery.k8s.io/v1) when the API server serves them, else from core/v1
//! Endpoints (a 1.20 server serves slices only as v1beta1).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::announce::{Endpoint, NodeState, ServiceState, TrafficPolicy};

/// Label on an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Where the speaker reads endpoints from.
#[derive(Clone)]
pub enum EndpointSource {
    /// discovery.k8s.io/v1 EndpointSlices.
    Slices(Store<EndpointSlice>),
    /// core/v1 Endpoints (fallback for API servers without EndpointSlice v1).
    Endpoints(Store<Endpoints>),
}

/// The node as the decision needs it: labels and the `NetworkUnavailable` condition.
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
    NodeState {
        name: name.to_string(),
        labels: node.labels().clone(),
        network_unavailable,
    }
}

/// Is this a Service the speaker should consider (type LoadBalancer)?
pub fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// The IPs a Service holds (`status.loadBalancer.ingress[].ip`), parsed; hostnames ignored.
pub fn service_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| {
            ing.iter()
                .filter_map(|i| i.ip.as_deref())
                .filter_map(|ip| ip.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `spec.externalTrafficPolicy` (Kubernetes' default is Cluster).
pub fn traffic_policy(svc: &Service) -> TrafficPolicy {
    match svc
        .spec
        .as_ref()
        .and_then(|s| s.external_traffic_policy.as_deref())
    {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    }
}

/// Endpoints of one service from the configured source.
pub fn service_endpoints(source: &EndpointSource, namespace: &str, name: &str) -> Vec<Endpoint> {
    match source {
        EndpointSource::Slices(store) => store
            .state()
            .iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(namespace)
                    && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
            })
            .flat_map(|s| slice_endpoints(s))
            .collect(),
        EndpointSource::Endpoints(store) => store
            .get(&ObjectRef::new(name).within(namespace))
            .map(|e| endpoints_endpoints(&e))
            .unwrap_or_default(),
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

/// Every LoadBalancer service with its IPs, policy and endpoints, keyed `namespace/name`.
pub fn service_states(
    services: &Store<Service>,
    endpoints: &EndpointSource,
) -> BTreeMap<String, ServiceState> {
    services
        .state()
        .iter()
        .filter(|s| is_load_balancer(s))
        .map(|svc| {
            let ns = svc.namespace().unwrap_or_default();
            let name = svc.name_any();
            let key = format!("{ns}/{name}");
            let state = ServiceState {
                key: key.clone(),
                ips: service_ips(svc),
                traffic_policy: traffic_policy(svc),
                endpoints: service_endpoints(endpoints, &ns, &name),
            };
            (key, state)
        })
        .collect()
}
