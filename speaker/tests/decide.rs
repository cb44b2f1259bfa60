//! Decision tables for the pure announcement logic: every rule and every skip reason.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_config::Config;
use ferrolb_speaker::announce::{
    Decision, EXCLUDE_LABEL, Endpoint, NodeState, PeerKey, ServiceState, SkipReason, TrafficPolicy,
    decide, routes_per_peer,
};

const CONFIG: &str = r#"
peers:
- peer-address: 172.17.0.1
  peer-asn: 64512
  my-asn: 64522
- peer-address: 172.17.0.2
  peer-asn: 64522
  my-asn: 64522
  node-selectors:
  - match-labels:
      rack: a
bgp-communities:
  no-export: 65535:65281
address-pools:
- name: default
  protocol: bgp
  addresses: [172.17.254.0/24]
  bgp-advertisements:
  - aggregation-length: 32
    localpref: 200
    communities: [64512:1, no-export, "large:64512:7:9"]
- name: agg
  protocol: bgp
  addresses: [172.17.250.0/24]
  bgp-advertisements:
  - aggregation-length: 24
    communities: [64512:2]
- name: plain
  protocol: bgp
  addresses: [172.17.253.0/24]
- name: l2
  protocol: layer2
  addresses: [192.168.50.0/24]
- name: v6
  protocol: bgp
  addresses: ["2001:db8:254::/120"]
"#;

fn config() -> Config {
    Config::parse(CONFIG).expect("test config is valid")
}

fn node(name: &str, labels: &[(&str, &str)]) -> NodeState {
    NodeState {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        network_unavailable: false,
        excluded: labels.iter().any(|(k, _)| *k == EXCLUDE_LABEL),
        unschedulable: false,
    }
}

fn ep(node: &str, ready: bool, serving: bool) -> Endpoint {
    Endpoint {
        node: Some(node.into()),
        ready,
        serving,
    }
}

fn svc(ips: &[&str], policy: TrafficPolicy, endpoints: Vec<Endpoint>) -> ServiceState {
    ServiceState {
        key: "default/web".into(),
        ips: ips.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect(),
        traffic_policy: policy,
        endpoints,
        labels: Default::default(),
    }
}

fn skip_reason(d: &Decision) -> Option<SkipReason> {
    match d {
        Decision::Skip(r) => Some(*r),
        Decision::Announce(_) => None,
    }
}

#[test]
fn skip_reason_table() {
    use TrafficPolicy::*;
    let cfg = config();
    let n1 = node("n1", &[]);
    let mut unavailable = node("n1", &[]);
    unavailable.network_unavailable = true;
    let excluded = node("n1", &[(EXCLUDE_LABEL, "")]);
    // Config with no peer at all, for NoPeerForNode.
    let no_peers =
        Config::parse("address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.9.0.0/24]\n")
            .unwrap();

    let ready_here = || vec![ep("n1", true, true)];
    let cases: Vec<(&str, &Config, &NodeState, ServiceState, Option<SkipReason>)> = vec![
        (
            "no ip",
            &cfg,
            &n1,
            svc(&[], Cluster, ready_here()),
            Some(SkipReason::NoIp),
        ),
        (
            "ip outside pools",
            &cfg,
            &n1,
            svc(&["10.0.0.1"], Cluster, ready_here()),
            Some(SkipReason::NotInPool),
        ),
        (
            "layer2 pool",
            &cfg,
            &n1,
            svc(&["192.168.50.4"], Cluster, ready_here()),
            Some(SkipReason::Layer2Pool),
        ),
        (
            "network unavailable",
            &cfg,
            &unavailable,
            svc(&["172.17.254.1"], Cluster, ready_here()),
            Some(SkipReason::NodeNetworkUnavailable),
        ),
        (
            "exclude label",
            &cfg,
            &excluded,
            svc(&["172.17.254.1"], Cluster, ready_here()),
            Some(SkipReason::NodeExcluded),
        ),
        (
            "local, endpoint elsewhere",
            &cfg,
            &n1,
            svc(&["172.17.254.1"], Local, vec![ep("n2", true, true)]),
            Some(SkipReason::NoLocalEndpoint),
        ),
        (
            "local, endpoint here but not ready nor serving",
            &cfg,
            &n1,
            svc(&["172.17.254.1"], Local, vec![ep("n1", false, false)]),
            Some(SkipReason::NoLocalEndpoint),
        ),
        (
            "local, terminating but serving here",
            &cfg,
            &n1,
            svc(&["172.17.254.1"], Local, vec![ep("n1", false, true)]),
            None,
        ),
        (
            "local, ready here",
            &cfg,
            &n1,
            svc(&["172.17.254.1"], Local, ready_here()),
            None,
        ),
        (
            "cluster, no endpoints",
            &cfg,
            &n1,
            svc(&["172.17.254.1"], Cluster, vec![]),
            Some(SkipReason::NoReadyEndpoint),
        ),
        (
            "cluster, only unready endpoints",
            &cfg,
            &n1,
            svc(&["172.17.254.1"], Cluster, vec![ep("n2", false, false)]),
            Some(SkipReason::NoReadyEndpoint),
        ),
        (
            "cluster, ready endpoint on another node",
            &cfg,
            &n1,
            svc(&["172.17.254.1"], Cluster, vec![ep("n2", true, true)]),
            None,
        ),
        (
            "pool without advertisement gets MetalLB's default one",
            &cfg,
            &n1,
            svc(&["172.17.253.9"], Cluster, ready_here()),
            None,
        ),
        (
            "no peer selects any node",
            &no_peers,
            &n1,
            svc(&["10.9.0.1"], Cluster, ready_here()),
            Some(SkipReason::NoPeerForNode),
        ),
    ];
    for (name, cfg, node, svc, want) in cases {
        let got = decide(cfg, node, &svc);
        assert_eq!(skip_reason(&got), want, "case {name:?}: got {got:?}");
    }
}

#[test]
fn announce_attributes_and_peer_selection() {
    let cfg = config();
    let s = svc(
        &["172.17.254.7"],
        TrafficPolicy::Cluster,
        vec![ep("n1", true, true)],
    );

    // Node without rack=a: only the eBGP peer selects it.
    let Decision::Announce(anns) = decide(&cfg, &node("n1", &[]), &s) else {
        panic!("expected an announcement");
    };
    assert_eq!(anns.len(), 1);
    let a = &anns[0];
    assert_eq!(a.peer, PeerKey::new("172.17.0.1".parse().unwrap(), 179));
    assert_eq!(a.peer.to_string(), "172.17.0.1:179");
    assert_eq!(a.prefix.to_string(), "172.17.254.7/32");
    assert_eq!(
        a.attrs.next_hop, None,
        "next hop is the session's own address"
    );
    assert_eq!(
        a.attrs.local_pref, None,
        "local-pref is never sent to an eBGP peer"
    );
    assert_eq!(a.attrs.communities, vec![(64512 << 16) | 1, 0xFFFF_FF01]);
    assert_eq!(a.attrs.large_communities.len(), 1);
    assert_eq!(a.attrs.large_communities[0].global_admin, 64512);
    assert_eq!(a.attrs.large_communities[0].local1, 7);
    assert_eq!(a.attrs.large_communities[0].local2, 9);

    // Node with rack=a: both peers; the iBGP one gets the local-pref.
    let Decision::Announce(anns) = decide(&cfg, &node("n1", &[("rack", "a")]), &s) else {
        panic!("expected an announcement");
    };
    assert_eq!(anns.len(), 2);
    let ibgp = anns
        .iter()
        .find(|a| a.peer.addr == "172.17.0.2".parse::<IpAddr>().unwrap())
        .unwrap();
    assert_eq!(ibgp.attrs.local_pref, Some(200));
}

#[test]
fn aggregation_and_per_peer_folding() {
    let cfg = config();
    let n = node("n1", &[("rack", "a")]);
    let here = vec![ep("n1", true, true)];
    let mut a = svc(&["172.17.250.1"], TrafficPolicy::Cluster, here.clone());
    a.key = "ns/a".into();
    let mut b = svc(&["172.17.250.77"], TrafficPolicy::Cluster, here.clone());
    b.key = "ns/b".into();
    let mut c = svc(&["2001:db8:254::5"], TrafficPolicy::Cluster, here.clone());
    c.key = "ns/c".into();
    let mut d = svc(
        &["172.17.254.3"],
        TrafficPolicy::Local,
        vec![ep("n2", true, true)],
    );
    d.key = "ns/d".into();

    let mut decisions = std::collections::BTreeMap::new();
    let per_peer = routes_per_peer(
        &cfg,
        &n,
        [&a, &b, &c, &d].map(|s| s.facts(&n.name)),
        |svc, d| {
            decisions.insert(svc.key.to_string(), d.clone());
        },
    );
    assert_eq!(per_peer.len(), 2, "both peers select the node");
    for routes in per_peer.values() {
        let prefixes: Vec<String> = routes.keys().map(|p| p.to_string()).collect();
        // a and b aggregate into one /24; c is a /128; d is skipped (no local endpoint).
        assert_eq!(prefixes, vec!["172.17.250.0/24", "2001:db8:254::5/128"]);
    }
    assert_eq!(
        decisions["ns/d"],
        Decision::Skip(SkipReason::NoLocalEndpoint)
    );
    assert!(matches!(decisions["ns/a"], Decision::Announce(_)));

    // A node no peer selects... every selecting peer still gets an (empty) entry.
    let per_peer = routes_per_peer(&cfg, &node("n9", &[]), std::iter::empty(), |_, _| {
        panic!("no service, no decision")
    });
    assert_eq!(per_peer.len(), 1);
    assert!(per_peer.values().all(|r| r.is_empty()));
}

#[test]
fn skip_reasons_have_stable_names_and_messages() {
    let all = [
        SkipReason::NoIp,
        SkipReason::NotInPool,
        SkipReason::Layer2Pool,
        SkipReason::NoAdvertisement,
        SkipReason::NoPeerForNode,
        SkipReason::NoAdvertisementForNode,
        SkipReason::NoAdvertisementForPeer,
        SkipReason::NodeNetworkUnavailable,
        SkipReason::NodeExcluded,
        SkipReason::NoLocalEndpoint,
        SkipReason::NoReadyEndpoint,
    ];
    let names: std::collections::BTreeSet<_> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), all.len(), "metric label values are distinct");
    for r in all {
        assert!(!r.to_string().is_empty());
    }
}

fn rack(v: &str) -> ferrolb_config::NodeSelector {
    ferrolb_config::NodeSelector {
        match_labels: [("rack".to_string(), v.to_string())].into(),
        match_expressions: vec![],
    }
}

/// The config of CRs the front end would build: two named peers (`rt-a`
/// selects rack a, `rt-all` every node) and pools whose advertisements are
/// scoped by nodeSelectors and peers.
fn scoped_config() -> Config {
    let mut c = Config::parse(concat!(
        "peers:\n",
        "- {peer-address: 10.0.0.1, peer-asn: 64512, my-asn: 64522}\n",
        "- {peer-address: 10.0.0.2, peer-asn: 64512, my-asn: 64522}\n",
        "address-pools:\n",
        "- {name: a-only, protocol: bgp, addresses: [172.20.1.0/24]}\n",
        "- {name: to-rt-a, protocol: bgp, addresses: [172.20.2.0/24]}\n",
        "- {name: to-nobody, protocol: bgp, addresses: [172.20.3.0/24]}\n",
        "- {name: two-advs, protocol: bgp, addresses: [172.20.4.0/24]}\n",
    ))
    .unwrap();
    c.peers[0].name = Some("rt-a".into());
    c.peers[0].node_selectors = vec![rack("a")];
    c.peers[1].name = Some("rt-all".into());
    c.pools[0].advertisements[0].node_selectors = vec![rack("a")];
    c.pools[1].advertisements[0].peers = vec!["rt-a".into()];
    c.pools[2].advertisements[0].peers = vec!["rt-gone".into()];
    // Two advertisements: /32 for rack a to every peer, /24 for rack b to rt-all.
    let mut b = c.pools[3].advertisements[0].clone();
    c.pools[3].advertisements[0].node_selectors = vec![rack("a")];
    b.node_selectors = vec![rack("b")];
    b.aggregation_length = 24;
    b.peers = vec!["rt-all".into()];
    c.pools[3].advertisements.push(b);
    c
}

fn announced(d: &Decision) -> Vec<(String, String)> {
    match d {
        Decision::Announce(a) => a
            .iter()
            .map(|a| (a.peer.addr.to_string(), a.prefix.to_string()))
            .collect(),
        Decision::Skip(r) => vec![("skip".into(), r.as_str().into())],
    }
}

#[test]
fn advertisement_node_selectors_and_peers() {
    let c = scoped_config();
    let a = node("node-a", &[("rack", "a")]);
    let b = node("node-b", &[("rack", "b")]);
    let ready = |ip: &str| {
        svc(
            &[ip],
            TrafficPolicy::Cluster,
            vec![ep("node-a", true, true)],
        )
    };
    let pair = |p: &str, x: &str| (p.to_string(), x.to_string());

    // nodeSelectors: rack a announces to both its peers, rack b nothing, and says why.
    assert_eq!(
        announced(&decide(&c, &a, &ready("172.20.1.1"))),
        vec![
            pair("10.0.0.1", "172.20.1.1/32"),
            pair("10.0.0.2", "172.20.1.1/32")
        ]
    );
    assert_eq!(
        decide(&c, &b, &ready("172.20.1.1")),
        Decision::Skip(SkipReason::NoAdvertisementForNode)
    );
    // peers: only rt-a, which rack b has no session with.
    assert_eq!(
        announced(&decide(&c, &a, &ready("172.20.2.1"))),
        vec![pair("10.0.0.1", "172.20.2.1/32")]
    );
    assert_eq!(
        decide(&c, &b, &ready("172.20.2.1")),
        Decision::Skip(SkipReason::NoAdvertisementForPeer)
    );
    // peers naming no configured peer: nobody, anywhere.
    for n in [&a, &b] {
        assert_eq!(
            decide(&c, n, &ready("172.20.3.1")),
            Decision::Skip(SkipReason::NoAdvertisementForPeer)
        );
    }
    // Two advertisements, each for its rack.
    assert_eq!(
        announced(&decide(&c, &a, &ready("172.20.4.9"))),
        vec![
            pair("10.0.0.1", "172.20.4.9/32"),
            pair("10.0.0.2", "172.20.4.9/32")
        ]
    );
    assert_eq!(
        announced(&decide(&c, &b, &ready("172.20.4.9"))),
        vec![pair("10.0.0.2", "172.20.4.0/24")]
    );
    // Across two IPs the reason of the IP that got furthest is given.
    let both = svc(
        &["172.20.1.1", "172.20.2.1"],
        TrafficPolicy::Cluster,
        vec![ep("node-a", true, true)],
    );
    assert_eq!(
        decide(&c, &b, &both),
        Decision::Skip(SkipReason::NoAdvertisementForPeer)
    );
    // The endpoint rules still come first.
    let none = svc(&["172.20.1.1"], TrafficPolicy::Cluster, vec![]);
    assert_eq!(
        decide(&c, &b, &none),
        Decision::Skip(SkipReason::NoReadyEndpoint)
    );
}

#[test]
fn vrf_peers_get_no_routes_and_dynamic_internal_peers_get_local_pref() {
    let mut c = Config::parse(concat!(
        "peers:\n",
        "- {peer-address: 10.0.0.1, peer-asn: 64512, my-asn: 64522}\n",
        "- {peer-address: 10.0.0.2, peer-asn: 64512, my-asn: 64522}\n",
        "address-pools:\n",
        "- name: p\n  protocol: bgp\n  addresses: [172.20.1.0/24]\n  bgp-advertisements:\n  - localpref: 300\n",
    ))
    .unwrap();
    c.peers[0].vrf = Some("red".into());
    let n = node("n", &[]);
    let s = svc(
        &["172.20.1.1"],
        TrafficPolicy::Cluster,
        vec![ep("n", true, true)],
    );
    let Decision::Announce(a) = decide(&c, &n, &s) else {
        panic!("announced to the default-VRF peer")
    };
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].peer.addr.to_string(), "10.0.0.2");
    assert_eq!(a[0].attrs.local_pref, None, "eBGP: no LOCAL_PREF");
    // Only the VRF peer: as if no peer selected the node.
    c.peers[1].vrf = Some("blue".into());
    assert_eq!(
        decide(&c, &n, &s),
        Decision::Skip(SkipReason::NoPeerForNode)
    );
    // A dynamic internal peer is iBGP (its AS must equal ours): LOCAL_PREF goes out.
    c.peers[1].vrf = None;
    c.peers[1].peer_asn = 0;
    c.peers[1].dynamic_asn = Some(ferrolb_config::DynamicAsn::Internal);
    let Decision::Announce(a) = decide(&c, &n, &s) else {
        panic!("announced")
    };
    assert_eq!(a[0].attrs.local_pref, Some(300));
    c.peers[1].dynamic_asn = Some(ferrolb_config::DynamicAsn::External);
    let Decision::Announce(a) = decide(&c, &n, &s) else {
        panic!("announced")
    };
    assert_eq!(a[0].attrs.local_pref, None);
}

/// The same rules on a configuration the custom-resource front end builds
/// from metallb.io objects: BGPPeers with names, a vrf peer, a dynamicASN
/// peer, BGPAdvertisements scoped by nodeSelectors and peers.
#[test]
fn scope_from_custom_resources() {
    use ferrolb_config::crs::{Resources, Secrets};
    let yaml = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool, namespace: metallb-system}
spec: {addresses: [172.20.1.0/24]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: rt-a, namespace: metallb-system}
spec:
  myASN: 64522
  peerASN: 64512
  peerAddress: 10.0.0.1
  nodeSelectors: [{matchLabels: {rack: a}}]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: rt-dyn, namespace: metallb-system}
spec: {myASN: 64522, dynamicASN: internal, peerAddress: 10.0.0.2}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: rt-vrf, namespace: metallb-system}
spec: {myASN: 64522, peerASN: 64512, peerAddress: 10.0.0.3, vrf: red}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: rack-a-to-rt-a, namespace: metallb-system}
spec:
  ipAddressPools: [pool]
  localPref: 300
  nodeSelectors: [{matchLabels: {rack: a}}]
  peers: [rt-a, rt-vrf]
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: rack-b-to-rt-dyn, namespace: metallb-system}
spec:
  ipAddressPools: [pool]
  localPref: 200
  nodeSelectors: [{matchLabels: {rack: b}}]
  peers: [rt-dyn]
"#;
    let mut r = Resources::new();
    r.add_yaml("test.yaml", yaml).expect("valid objects");
    let c = Config::from_resources(&r, Secrets::Ignore).expect("valid configuration");
    let ready = svc(
        &["172.20.1.7"],
        TrafficPolicy::Cluster,
        vec![ep("n", true, true)],
    );
    let to = |d: Decision| match d {
        Decision::Announce(a) => a
            .iter()
            .map(|a| (a.peer.addr.to_string(), a.attrs.local_pref))
            .collect::<Vec<_>>(),
        Decision::Skip(r) => panic!("skipped: {r}"),
    };
    // Rack a: only rt-a (rt-vrf gets nothing, rt-dyn is not in this advertisement); eBGP.
    assert_eq!(
        to(decide(&c, &node("a", &[("rack", "a")]), &ready)),
        vec![("10.0.0.1".to_string(), None)]
    );
    // Rack b: only rt-dyn, internal, so iBGP with its LOCAL_PREF.
    assert_eq!(
        to(decide(&c, &node("b", &[("rack", "b")]), &ready)),
        vec![("10.0.0.2".to_string(), Some(200))]
    );
    // Rack c: no advertisement for the node.
    assert_eq!(
        decide(&c, &node("c", &[("rack", "c")]), &ready),
        Decision::Skip(SkipReason::NoAdvertisementForNode)
    );
}
