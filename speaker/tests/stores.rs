//! Decisions fed through the speaker's slim maps: Kubernetes objects (as the
//! API server would send them, as a watcher's initial list) → slim maps →
//! conversions → decision. No network.

use ferrolb_config::Config;
use std::collections::BTreeMap;

use ferrolb_bgp::adj_out::Routes;
use ferrolb_speaker::announce::{Decision, NodeState, PeerKey, SkipReason, routes_per_peer};
use ferrolb_speaker::watch::{
    EndpointSource, EndpointView, EndpointsIndex, Services, SliceIndex, node_state, service_facts,
    service_states,
};
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

/// Feed `objs` as a watcher's initial list (Init, InitApply…, InitDone).
fn listed<K>(objs: Vec<K>, mut apply: impl FnMut(&Event<K>)) {
    apply(&Event::Init);
    for o in objs {
        apply(&Event::InitApply(o));
    }
    apply(&Event::InitDone);
}

fn services_of(objs: Vec<Service>) -> Services {
    let mut services = Services::default();
    listed(objs, |ev| services.apply(ev));
    services
}

fn endpoints_of(objs: Vec<Endpoints>) -> EndpointSource {
    let mut idx = EndpointsIndex::default();
    listed(objs, |ev| idx.apply(ev));
    EndpointSource::Endpoints(idx)
}

fn slices_of(objs: Vec<EndpointSlice>) -> EndpointSource {
    let mut idx = SliceIndex::default();
    listed(objs, |ev| idx.apply(ev));
    EndpointSource::Slices(idx)
}

fn service(name: &str, ip: Option<&str>, policy: &str) -> Service {
    let status = match ip {
        Some(ip) => serde_json::json!({"loadBalancer": {"ingress": [{"ip": ip}]}}),
        None => serde_json::json!({}),
    };
    obj(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy,
                 "ports": [{"port": 80, "protocol": "TCP"}]},
        "status": status,
    }))
}

fn endpoints(name: &str, ready_on: &[&str], unready_on: &[&str]) -> Endpoints {
    let addr = |nodes: &[&str]| -> Vec<serde_json::Value> {
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| serde_json::json!({"ip": format!("10.244.0.{}", i + 1), "nodeName": n}))
            .collect()
    };
    obj(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "subsets": [{"addresses": addr(ready_on), "notReadyAddresses": addr(unready_on),
                     "ports": [{"port": 80}]}],
    }))
}

fn node(name: &str, labels: serde_json::Value, net_unavailable: bool) -> Node {
    obj(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [
            {"type": "NetworkUnavailable", "status": if net_unavailable {"True"} else {"False"}},
            {"type": "Ready", "status": "True"}
        ]}
    }))
}

/// The speaker's own pass: slim maps → borrowed facts → decisions and routes.
/// Checks on the way that the facts equal what the owned conversion gives.
fn decide_all(
    cfg: &Config,
    node: &NodeState,
    services: &Services,
    eps: &EndpointSource,
) -> (BTreeMap<PeerKey, Routes>, BTreeMap<String, Decision>) {
    let states = service_states(services, eps);
    let view = EndpointView::new(eps, &node.name);
    let facts: Vec<_> = service_facts(services, &view).collect();
    assert_eq!(
        facts,
        states
            .values()
            .map(|s| s.facts(&node.name))
            .collect::<Vec<_>>(),
        "borrowed facts and owned states agree"
    );
    let mut decisions = BTreeMap::new();
    let per_peer = routes_per_peer(cfg, node, facts, |svc, d| {
        decisions.insert(svc.key.to_string(), d.clone());
    });
    (per_peer, decisions)
}

const CONFIG: &str = "peers:\n- peer-address: 172.17.0.1\n  peer-asn: 64512\n  my-asn: 64522\naddress-pools:\n- name: default\n  protocol: bgp\n  addresses: [172.17.254.0/24]\n";

#[test]
fn endpoints_objects_drive_local_and_cluster_decisions() {
    let cfg = Config::parse(CONFIG).unwrap();
    let services = services_of(vec![
        service("web", Some("172.17.254.1"), "Cluster"),
        service("local", Some("172.17.254.2"), "Local"),
        service("pending", None, "Cluster"),
        service("down", Some("172.17.254.3"), "Cluster"),
    ]);
    let eps = endpoints_of(vec![
        endpoints("web", &["node-2"], &[]),
        endpoints("local", &["node-2"], &["node-1"]),
        endpoints("down", &[], &["node-1"]),
    ]);
    assert_eq!(service_states(&services, &eps).len(), 4);

    let n1 = node_state(
        "node-1",
        Some(&node("node-1", serde_json::json!({}), false)),
    );
    let (per_peer, d) = decide_all(&cfg, &n1, &services, &eps);
    assert!(matches!(d["default/web"], Decision::Announce(_)));
    assert_eq!(
        d["default/local"],
        Decision::Skip(SkipReason::NoLocalEndpoint)
    );
    assert_eq!(d["default/pending"], Decision::Skip(SkipReason::NoIp));
    assert_eq!(
        d["default/down"],
        Decision::Skip(SkipReason::NoReadyEndpoint)
    );
    let routes = per_peer.values().next().unwrap();
    assert_eq!(
        routes.keys().map(|p| p.to_string()).collect::<Vec<_>>(),
        vec!["172.17.254.1/32"]
    );

    let n2 = node_state(
        "node-2",
        Some(&node("node-2", serde_json::json!({}), false)),
    );
    let (_, d) = decide_all(&cfg, &n2, &services, &eps);
    assert!(matches!(d["default/local"], Decision::Announce(_)));
}

#[test]
fn node_conditions_and_labels() {
    let cfg = Config::parse(CONFIG).unwrap();
    let services = services_of(vec![service("web", Some("172.17.254.1"), "Cluster")]);
    let eps = endpoints_of(vec![endpoints("web", &["node-1"], &[])]);

    let sick = node_state("node-1", Some(&node("node-1", serde_json::json!({}), true)));
    let (_, d) = decide_all(&cfg, &sick, &services, &eps);
    assert_eq!(
        d["default/web"],
        Decision::Skip(SkipReason::NodeNetworkUnavailable)
    );

    let excluded = node_state(
        "node-1",
        Some(&node(
            "node-1",
            serde_json::json!({"node.kubernetes.io/exclude-from-external-load-balancers": "true"}),
            false,
        )),
    );
    let (_, d) = decide_all(&cfg, &excluded, &services, &eps);
    assert_eq!(d["default/web"], Decision::Skip(SkipReason::NodeExcluded));
}

#[test]
fn endpoint_slices_with_conditions() {
    let cfg = Config::parse(CONFIG).unwrap();
    let services = services_of(vec![service("local", Some("172.17.254.2"), "Local")]);
    let slice: EndpointSlice = obj(serde_json::json!({
        "metadata": {"name": "local-abc", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "local"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.1.5"], "nodeName": "node-1",
             "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.244.2.5"], "nodeName": "node-2",
             "conditions": {"ready": false, "serving": false}},
        ]
    }));
    let other: EndpointSlice = obj(serde_json::json!({
        "metadata": {"name": "other-abc", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "other"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.3.5"], "nodeName": "node-3"}]
    }));
    let eps = slices_of(vec![slice, other]);
    let states = service_states(&services, &eps);
    assert_eq!(
        states["default/local"].endpoints.len(),
        2,
        "only its own slice counts"
    );

    let d1 = decide_all(&cfg, &node_state("node-1", None), &services, &eps).1;
    assert!(
        matches!(d1["default/local"], Decision::Announce(_)),
        "a serving, terminating endpoint keeps the route"
    );
    let d2 = decide_all(&cfg, &node_state("node-2", None), &services, &eps).1;
    assert_eq!(
        d2["default/local"],
        Decision::Skip(SkipReason::NoLocalEndpoint)
    );
    let d3 = decide_all(&cfg, &node_state("node-3", None), &services, &eps).1;
    assert_eq!(
        d3["default/local"],
        Decision::Skip(SkipReason::NoLocalEndpoint)
    );
}
