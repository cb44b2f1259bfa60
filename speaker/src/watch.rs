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

/// Drops what the speaker never reads from a Service before it enters the
/// reflector store: managed fields, annotations, labels and every spec/status
/// field but `type`, `externalTrafficPolicy` and the ingress IPs. The identity
/// (namespace, name, uid, resourceVersion) stays, for Events. Non-LoadBalancer
/// Services keep only their identity and type. With 10k Services this is most
/// of the speaker's memory.
pub fn trim_service(svc: &mut Service) {
    trim_meta(&mut svc.metadata);
    let lb = is_load_balancer(svc);
    if let Some(spec) = svc.spec.take() {
        svc.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: spec.type_,
            external_traffic_policy: if lb {
                spec.external_traffic_policy
            } else {
                None
            },
            ..Default::default()
        });
    }
    let ingress = if lb {
        svc.status
            .take()
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .map(|ing| {
                ing.into_iter()
                    .filter(|i| i.ip.is_some())
                    .map(|i| k8s_openapi::api::core::v1::LoadBalancerIngress {
                        ip: i.ip,
                        ..Default::default()
                    })
                    .collect::<Vec<_>>()
            })
    } else {
        None
    };
    svc.status = ingress.map(|ing| k8s_openapi::api::core::v1::ServiceStatus {
        load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus { ingress: Some(ing) }),
        ..Default::default()
    });
}

/// Keeps only what [`endpoints_endpoints`] reads: per address, `nodeName`
/// (the IP string is emptied; ports, target refs and hostnames go).
pub fn trim_endpoints(ep: &mut Endpoints) {
    trim_meta(&mut ep.metadata);
    let slim = |addrs: &mut Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        if let Some(v) = addrs {
            for a in v.iter_mut() {
                *a = k8s_openapi::api::core::v1::EndpointAddress {
                    node_name: a.node_name.take(),
                    ..Default::default()
                };
            }
            v.shrink_to_fit();
        }
    };
    for s in ep.subsets.iter_mut().flatten() {
        s.ports = None;
        slim(&mut s.addresses);
        slim(&mut s.not_ready_addresses);
    }
}

/// Keeps only what [`slice_endpoints`] reads (node names and conditions) and
/// the service-name label.
pub fn trim_slice(slice: &mut EndpointSlice) {
    let name = slice
        .metadata
        .labels
        .as_mut()
        .and_then(|l| l.remove(SERVICE_NAME_LABEL));
    trim_meta(&mut slice.metadata);
    if let Some(name) = name {
        slice.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), name)].into());
    }
    slice.ports = None;
    for e in &mut slice.endpoints {
        *e = k8s_openapi::api::discovery::v1::Endpoint {
            node_name: e.node_name.take(),
            conditions: e.conditions.take(),
            ..Default::default()
        };
    }
}

fn trim_meta(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    m.managed_fields = None;
    m.annotations = None;
    m.labels = None;
    m.owner_references = None;
    m.finalizers = None;
    m.generate_name = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn trimmed_service_keeps_what_the_decision_reads() {
        let mut s = svc(json!({
            "metadata": {"name": "web", "namespace": "e2e", "uid": "u1", "resourceVersion": "7",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.17.254.1"}, {"hostname": "x"}]}}
        }));
        let before = (service_ips(&s), traffic_policy(&s), is_load_balancer(&s));
        trim_service(&mut s);
        assert_eq!(
            (service_ips(&s), traffic_policy(&s), is_load_balancer(&s)),
            before
        );
        assert_eq!(s.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
        assert!(s.metadata.managed_fields.is_none() && s.metadata.annotations.is_none());
        let spec = s.spec.as_ref().unwrap();
        assert!(spec.ports.is_none() && spec.selector.is_none() && spec.cluster_ip.is_none());
    }

    #[test]
    fn trimmed_cluster_ip_service_keeps_only_its_type() {
        let mut s = svc(json!({
            "metadata": {"name": "db", "namespace": "e2e"},
            "spec": {"type": "ClusterIP", "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
        }));
        trim_service(&mut s);
        assert!(!is_load_balancer(&s));
        assert!(s.status.is_none());
    }

    #[test]
    fn trimmed_endpoints_and_slices_keep_nodes_and_readiness() {
        let mut ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "e2e", "managedFields": [{"manager": "m"}]},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.1", "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "p"}}],
                "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "n2"}],
                "ports": [{"port": 8080}]
            }]
        }))
        .unwrap();
        let before = endpoints_endpoints(&ep);
        trim_endpoints(&mut ep);
        assert_eq!(endpoints_endpoints(&ep), before);
        assert!(ep.metadata.managed_fields.is_none());

        let mut slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "e2e",
                "labels": {SERVICE_NAME_LABEL: "web", "other": "x"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n1",
                "conditions": {"ready": false, "serving": true}, "hostname": "h"}],
            "ports": [{"port": 8080}]
        }))
        .unwrap();
        let before = slice_endpoints(&slice);
        trim_slice(&mut slice);
        assert_eq!(slice_endpoints(&slice), before);
        assert_eq!(
            slice.labels().get(SERVICE_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        assert_eq!(slice.labels().len(), 1);
    }
}
