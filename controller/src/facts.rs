//! A Service as the controller's decisions read it, converted once from the
//! Kubernetes object. Pure: no I/O, no clock.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

use crate::allocator::{
    FamilyPolicy, IpFamily, Labels, Protocol, ServiceKey, ServiceRequest, no_labels,
};
use crate::service::{RequestError, parse_annotations};

/// Annotation the controller writes: the pool the Service's IPs come from.
pub const POOL_ANNOTATION: &str = "metallb.io/ip-allocated-from-pool";

/// What the controller's plan reads of one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    /// `namespace/name`.
    pub key: ServiceKey,
    /// `spec.type` is `LoadBalancer`.
    pub load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub class: Option<String>,
    /// What the Service asks the allocator for, or why its annotations or
    /// `spec.loadBalancerIP` cannot be used.
    pub request: Result<ServiceRequest, RequestError>,
    /// The IPs `status.loadBalancer.ingress` shows.
    pub shown: Vec<IpAddr>,
    /// Entries in `status.loadBalancer.ingress` (hostnames and unparsable ones included).
    pub ingress_entries: usize,
    /// The value of [`POOL_ANNOTATION`].
    pub pool_annotation: Option<String>,
}

impl ServiceFacts {
    /// The same facts with the labels of the Service's namespace (matched
    /// against pools' `serviceAllocation.namespaceSelectors`).
    pub fn with_namespace_labels(mut self, labels: Labels) -> Self {
        if let Ok(req) = &mut self.request {
            req.namespace_labels = labels;
        }
        self
    }
}

/// The facts of a Service (namespace labels not filled in: see
/// [`ServiceFacts::with_namespace_labels`]); `None` when it has no namespace
/// or name.
pub fn service_facts(svc: &Service) -> Option<ServiceFacts> {
    let key = ServiceKey::new(svc.metadata.namespace.clone()?, svc.metadata.name.clone()?);
    let spec = svc.spec.as_ref();
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    Some(ServiceFacts {
        load_balancer: ferrolb_ops::service::is_load_balancer(svc),
        class: spec.and_then(|s| s.load_balancer_class.clone()),
        request: build_request(svc),
        shown: ferrolb_ops::service::ingress_ips(svc),
        ingress_entries: ingress.len(),
        pool_annotation: svc.annotations().get(POOL_ANNOTATION).cloned(),
        key,
    })
}

fn family_of(name: &str) -> Option<IpFamily> {
    match name {
        "IPv4" => Some(IpFamily::V4),
        "IPv6" => Some(IpFamily::V6),
        _ => None,
    }
}

/// The Service's IP families, primary first: `spec.ipFamilies`, or when the
/// API server did not fill it in (older servers), the families of
/// `spec.clusterIPs` / `spec.clusterIP` (as MetalLB reads them). A
/// `PreferDualStack` Service on a single-stack cluster therefore has one family.
pub fn families(svc: &Service) -> Vec<IpFamily> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<IpFamily> = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| family_of(f))
        .collect();
    if out.is_empty() {
        let ips = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.clone(),
            _ => spec.cluster_ip.iter().cloned().collect(),
        };
        out = ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| IpFamily::of(&ip))
            .collect();
    }
    out.dedup();
    out
}

/// Builds the allocator's view of a Service. Errors are problems in the
/// annotations or `spec.loadBalancerIP`.
pub fn build_request(svc: &Service) -> Result<ServiceRequest, RequestError> {
    let key = ServiceKey::new(
        svc.metadata.namespace.clone().unwrap_or_default(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    let spec = svc.spec.clone().unwrap_or_default();
    let annotations: &BTreeMap<String, String> = svc.annotations();
    let (requested_ips, pool, sharing_key) =
        parse_annotations(annotations, spec.load_balancer_ip.as_deref())?;
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
    Ok(ServiceRequest {
        key,
        families: families(svc),
        family_policy,
        requested_ips,
        pool,
        sharing_key,
        ports,
        traffic_policy: ferrolb_ops::service::traffic_policy(svc),
        selector: spec.selector.unwrap_or_default(),
        current: ferrolb_ops::service::ingress_ips(svc),
        created: svc
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        labels: match svc.labels() {
            l if l.is_empty() => no_labels(),
            l => Labels::new(l.clone()),
        },
        namespace_labels: no_labels(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::TrafficPolicy;
    use serde_json::json;

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
        let f = service_facts(&svc).unwrap();
        assert_eq!(f.ingress_entries, 3);
        assert_eq!(f.shown.len(), 2);
        assert!(f.load_balancer && f.class.is_none() && f.pool_annotation.is_none());
    }

    #[test]
    fn service_and_namespace_labels_reach_the_request() {
        let svc = service(json!({
            "metadata": {"namespace": "ns", "name": "web", "labels": {"app": "web"}},
            "spec": {"type": "LoadBalancer"},
        }));
        let f = service_facts(&svc).unwrap();
        let req = f.request.as_ref().unwrap();
        assert_eq!(req.labels.get("app").map(String::as_str), Some("web"));
        assert!(req.namespace_labels.is_empty());
        let ns: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        let f = f.with_namespace_labels(Labels::new(ns.clone()));
        assert_eq!(*f.request.unwrap().namespace_labels, ns);
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
        assert!(service_facts(&bad).unwrap().request.is_err());
    }

    #[test]
    fn families_follow_ip_families_then_cluster_ips() {
        let fams = |spec: serde_json::Value| {
            families(&service(json!({
                "metadata": {"namespace": "ns", "name": "web"},
                "spec": spec,
            })))
        };
        // A PreferDualStack Service on a single-stack cluster: one family.
        assert_eq!(
            fams(
                json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"],
                        "clusterIPs": ["10.96.0.5"]})
            ),
            vec![IpFamily::V4]
        );
        assert_eq!(
            fams(json!({"ipFamilies": ["IPv6", "IPv4"]})),
            vec![IpFamily::V6, IpFamily::V4]
        );
        // No ipFamilies (an older API server): the cluster IPs say.
        assert_eq!(
            fams(json!({"clusterIPs": ["fd00::5", "10.96.0.5"]})),
            vec![IpFamily::V6, IpFamily::V4]
        );
        assert_eq!(fams(json!({"clusterIP": "10.96.0.5"})), vec![IpFamily::V4]);
        assert_eq!(fams(json!({"clusterIP": "None"})), Vec::<IpFamily>::new());
        assert_eq!(fams(json!({})), Vec::<IpFamily>::new());
    }
}
