//! Reading a core/v1 Service the way both binaries read it: whether it is a
//! LoadBalancer, the IPs its status shows, its external traffic policy. Pure
//! functions of the object.

use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

/// `spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TrafficPolicy {
    /// Traffic may go to any node (Kubernetes' default).
    #[default]
    Cluster,
    /// Traffic goes only to nodes with a local endpoint.
    Local,
}

impl fmt::Display for TrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        })
    }
}

/// `spec.type` is `LoadBalancer`.
pub fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// `spec.loadBalancerClass`.
pub fn load_balancer_class(svc: &Service) -> Option<&str> {
    svc.spec.as_ref()?.load_balancer_class.as_deref()
}

/// The IPs of `status.loadBalancer.ingress[].ip`, in order; entries without
/// an IP (hostnames) or with text that is not one are skipped.
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

/// `spec.externalTrafficPolicy` (`Local`, else Kubernetes' default `Cluster`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reads_type_class_ips_and_policy() {
        let s = svc(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "x", "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [
                {"ip": "10.0.0.1"}, {"hostname": "lb.example"}, {"ip": "nope"}, {"ip": "fc00::1"}]}}
        }));
        assert!(is_load_balancer(&s));
        assert_eq!(load_balancer_class(&s), Some("x"));
        assert_eq!(
            ingress_ips(&s),
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fc00::1".parse().unwrap()
            ]
        );
        assert_eq!(traffic_policy(&s), TrafficPolicy::Local);
        let plain = svc(json!({"metadata": {"name": "db"}, "spec": {"type": "ClusterIP"}}));
        assert!(!is_load_balancer(&plain));
        assert_eq!(load_balancer_class(&plain), None);
        assert!(ingress_ips(&plain).is_empty());
        assert_eq!(traffic_policy(&plain), TrafficPolicy::Cluster);
        assert_eq!(TrafficPolicy::Local.to_string(), "Local");
    }
}
