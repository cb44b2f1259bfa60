//! Advertisements' `serviceSelectors` in the pure decisions (BGP and layer 2),
//! with MetalLB v0.16's cases (`TestShouldAnnounceBGPServiceSelectors`,
//! `TestL2ServiceSelectors`, `TestL2ElectionConsistentButAdsPerNode`)
//! translated to ferrolb's API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_config::Config;
use ferrolb_config::crs::{Resources, Secrets};
use ferrolb_speaker::announce::{
    Decision, Endpoint, NodeState, PeerKey, ServiceState, SkipReason, TrafficPolicy, decide,
    routes_per_peer,
};
use ferrolb_speaker::layer2::{self, Cluster, Interfaces};

fn doc(kind: &str, name: &str, spec: &str) -> String {
    let version = if kind == "BGPPeer" {
        "v1beta2"
    } else {
        "v1beta1"
    };
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "---\napiVersion: metallb.io/{version}\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

/// Pool `p` (10.0.0.0/24), iBGP peers `a` and `b`, and these advertisements.
fn bgp_config(ads: &[(&str, &str)]) -> Config {
    let mut text = doc("IPAddressPool", "p", "addresses: [10.0.0.0/24]")
        + &doc(
            "BGPPeer",
            "a",
            "myASN: 64500\npeerASN: 64500\npeerAddress: 10.1.0.1",
        )
        + &doc(
            "BGPPeer",
            "b",
            "myASN: 64500\npeerASN: 64500\npeerAddress: 10.1.0.2",
        );
    for (name, spec) in ads {
        text += &doc("BGPAdvertisement", name, spec);
    }
    let mut r = Resources::new();
    r.add_yaml("t.yaml", &text).unwrap();
    Config::from_resources(&r, Secrets::Ignore).unwrap_or_else(|e| panic!("{e}"))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(name: &str, l: &[(&str, &str)]) -> NodeState {
    NodeState {
        name: name.into(),
        labels: labels(l),
        ..NodeState::default()
    }
}

fn svc(key: &str, ip: &str, l: &[(&str, &str)], endpoint_nodes: &[&str]) -> ServiceState {
    ServiceState {
        key: key.into(),
        ips: vec![ip.parse().unwrap()],
        traffic_policy: TrafficPolicy::Cluster,
        endpoints: endpoint_nodes
            .iter()
            .map(|n| Endpoint {
                node: Some(n.to_string()),
                ready: true,
                serving: true,
            })
            .collect(),
        labels: labels(l),
    }
}

fn nginx() -> ServiceState {
    svc("default/web", "10.0.0.1", &[("app", "nginx")], &["n1"])
}

/// (peer address, communities, local pref) of each announcement.
fn announced(d: &Decision) -> Vec<(String, Vec<u32>, Option<u32>)> {
    match d {
        Decision::Announce(anns) => anns
            .iter()
            .map(|a| {
                (
                    a.peer.addr.to_string(),
                    a.attrs.communities.clone(),
                    a.attrs.local_pref,
                )
            })
            .collect(),
        Decision::Skip(r) => panic!("expected an announcement, got skip: {r}"),
    }
}

fn skipped(d: &Decision) -> SkipReason {
    match d {
        Decision::Skip(r) => *r,
        Decision::Announce(a) => panic!("expected a skip, got {a:?}"),
    }
}

const C1: u32 = 64500 << 16 | 1;
const C2: u32 = 64500 << 16 | 2;

#[test]
fn bgp_empty_selector_matches_every_service() {
    let cfg = bgp_config(&[("all", "communities: [\"64500:1\"]")]);
    let d = decide(&cfg, &node("n1", &[]), &nginx());
    assert_eq!(announced(&d).len(), 2);
    let bare = svc("default/bare", "10.0.0.2", &[], &["n1"]);
    assert_eq!(announced(&decide(&cfg, &node("n1", &[]), &bare)).len(), 2);
}

#[test]
fn bgp_matching_selector_announces_with_its_attributes() {
    let cfg = bgp_config(&[(
        "web",
        "communities: [\"64500:1\"]\nserviceSelectors:\n- matchLabels: {app: nginx}",
    )]);
    let d = decide(&cfg, &node("n1", &[]), &nginx());
    assert_eq!(
        announced(&d),
        [
            ("10.1.0.1".to_string(), vec![C1], None),
            ("10.1.0.2".to_string(), vec![C1], None),
        ]
    );
}

#[test]
fn bgp_non_matching_selector_is_not_announced_with_a_reason() {
    let cfg = bgp_config(&[("web", "serviceSelectors:\n- matchLabels: {app: apache}")]);
    let d = decide(&cfg, &node("n1", &[]), &nginx());
    assert_eq!(skipped(&d), SkipReason::NoAdvertisementForService);
    assert_eq!(skipped(&d).as_str(), "noAdvertisementForService");
    // A Service without labels is not selected either.
    let bare = svc("default/bare", "10.0.0.2", &[], &["n1"]);
    assert_eq!(
        skipped(&decide(&cfg, &node("n1", &[]), &bare)),
        SkipReason::NoAdvertisementForService
    );
}

#[test]
fn bgp_selectors_of_one_advertisement_are_ored() {
    let cfg = bgp_config(&[(
        "web",
        "serviceSelectors:\n- matchLabels: {app: apache}\n- matchExpressions:\n  - {key: app, operator: In, values: [nginx, caddy]}",
    )]);
    assert_eq!(
        announced(&decide(&cfg, &node("n1", &[]), &nginx())).len(),
        2
    );
}

#[test]
fn bgp_only_the_advertisements_selecting_the_service_give_attributes() {
    let cfg = bgp_config(&[
        (
            "apache",
            "communities: [\"64500:1\"]\nserviceSelectors:\n- matchLabels: {app: apache}",
        ),
        (
            "nginx",
            "communities: [\"64500:2\"]\npeers: [b]\nserviceSelectors:\n- matchLabels: {app: nginx}",
        ),
    ]);
    let n1 = node("n1", &[]);
    // nginx: the second only, to its peer only.
    assert_eq!(
        announced(&decide(&cfg, &n1, &nginx())),
        [("10.1.0.2".to_string(), vec![C2], None)]
    );
    let apache = svc("default/apache", "10.0.0.3", &[("app", "apache")], &["n1"]);
    assert_eq!(
        announced(&decide(&cfg, &n1, &apache)),
        [
            ("10.1.0.1".to_string(), vec![C1], None),
            ("10.1.0.2".to_string(), vec![C1], None),
        ]
    );
    // Folded per peer: peer a holds only the apache route.
    let states = [nginx(), apache];
    let routes = routes_per_peer(&cfg, &n1, states.iter().map(|s| s.facts("n1")), |_, _| {});
    let a = &routes[&PeerKey::new("10.1.0.1".parse().unwrap(), 179)];
    let b = &routes[&PeerKey::new("10.1.0.2".parse().unwrap(), 179)];
    let prefixes = |r: &ferrolb_bgp::adj_out::Routes| -> Vec<String> {
        r.keys().map(|p| p.to_string()).collect()
    };
    assert_eq!(prefixes(a), ["10.0.0.3/32"]);
    assert_eq!(prefixes(b), ["10.0.0.1/32", "10.0.0.3/32"]);
    assert_eq!(b[&"10.0.0.1/32".parse().unwrap()].communities, [C2]);
    assert_eq!(b[&"10.0.0.3/32".parse().unwrap()].communities, [C1]);
}

#[test]
fn bgp_conflicting_local_pref_among_the_applying_advertisements() {
    // MetalLB's case: one for every Service (100), one for app=nginx (200).
    let cfg = bgp_config(&[
        ("all", "localPref: 100"),
        (
            "web",
            "localPref: 200\nserviceSelectors:\n- matchLabels: {app: nginx}",
        ),
    ]);
    let n1 = node("n1", &[]);
    let d = decide(&cfg, &n1, &nginx());
    assert_eq!(skipped(&d), SkipReason::ConflictingAdvertisements);
    assert_eq!(skipped(&d).as_str(), "conflictingAdvertisements");
    // A Service only the first applies to is announced with its LOCAL_PREF.
    let other = svc("default/db", "10.0.0.4", &[("app", "db")], &["n1"]);
    let got = announced(&decide(&cfg, &n1, &other));
    assert!(got.iter().all(|(_, _, lp)| *lp == Some(100)), "{got:?}");
}

#[test]
fn bgp_no_conflict_toward_different_peers_or_on_other_nodes() {
    let cfg = bgp_config(&[
        ("all", "localPref: 100\npeers: [a]"),
        (
            "web",
            "localPref: 200\npeers: [b]\nserviceSelectors:\n- matchLabels: {app: nginx}",
        ),
    ]);
    let got = announced(&decide(&cfg, &node("n1", &[]), &nginx()));
    assert_eq!(
        got,
        [
            ("10.1.0.1".to_string(), vec![], Some(100)),
            ("10.1.0.2".to_string(), vec![], Some(200)),
        ]
    );
    // The same pair, the second on rack=r2 nodes only: no conflict on n1.
    let cfg = bgp_config(&[
        ("all", "localPref: 100"),
        (
            "web",
            "localPref: 200\nnodeSelectors:\n- matchLabels: {rack: r2}\nserviceSelectors:\n- matchLabels: {app: nginx}",
        ),
    ]);
    assert_eq!(
        announced(&decide(&cfg, &node("n1", &[]), &nginx())).len(),
        2
    );
    assert_eq!(
        skipped(&decide(&cfg, &node("n2", &[("rack", "r2")]), &nginx())),
        SkipReason::ConflictingAdvertisements
    );
}

#[test]
fn bgp_node_selectors_come_before_service_selectors() {
    let cfg = bgp_config(&[(
        "web",
        "nodeSelectors:\n- matchLabels: {rack: r2}\nserviceSelectors:\n- matchLabels: {app: nginx}",
    )]);
    assert_eq!(
        skipped(&decide(&cfg, &node("n1", &[]), &nginx())),
        SkipReason::NoAdvertisementForNode
    );
    assert_eq!(
        announced(&decide(&cfg, &node("n2", &[("rack", "r2")]), &nginx())).len(),
        2
    );
}

// Layer 2.

/// Pool `p` (10.20.30.0/24) and these L2Advertisements.
fn l2_config(ads: &[(&str, &str)]) -> Config {
    let mut text = doc("IPAddressPool", "p", "addresses: [10.20.30.0/24]");
    for (name, spec) in ads {
        text += &doc("L2Advertisement", name, spec);
    }
    let mut r = Resources::new();
    r.add_yaml("t.yaml", &text).unwrap();
    Config::from_resources(&r, Secrets::Ignore).unwrap_or_else(|e| panic!("{e}"))
}

/// Nodes `iris1`, `iris2`, `iris3`, labelled `name: <node>`, all alive.
fn world() -> (BTreeMap<String, NodeState>, BTreeSet<String>) {
    let nodes: BTreeMap<String, NodeState> = ["iris1", "iris2", "iris3"]
        .iter()
        .map(|n| (n.to_string(), node(n, &[("name", n)])))
        .collect();
    let alive = nodes.keys().cloned().collect();
    (nodes, alive)
}

/// Per node: (owner, this node's decision) for the Service's first IP.
fn l2_decide(cfg: &Config, s: &ServiceState) -> Vec<(Option<String>, layer2::Decision)> {
    let (nodes, alive) = world();
    let cluster = Cluster {
        nodes: &nodes,
        alive: &alive,
        ignore_exclude_lb: false,
    };
    let facts = s.l2_facts();
    nodes
        .keys()
        .map(|me| {
            let d = layer2::Decider::new(cfg, cluster, me).decide(&facts);
            let pd = d.into_iter().next().unwrap().1;
            (pd.owner, pd.decision)
        })
        .collect()
}

fn on_iris1(selectors: &str) -> String {
    format!("nodeSelectors:\n- matchLabels: {{name: iris1}}\n{selectors}")
}

fn web(ip: &str) -> ServiceState {
    svc("default/web", ip, &[("app", "nginx")], &["iris1", "iris2"])
}

#[test]
fn l2_empty_matching_and_ored_selectors_let_the_node_answer() {
    for sel in [
        "",
        "serviceSelectors:\n- matchLabels: {app: nginx}",
        "serviceSelectors:\n- matchLabels: {app: apache}\n- matchLabels: {app: nginx}",
    ] {
        let cfg = l2_config(&[("a", &on_iris1(sel))]);
        let got = l2_decide(&cfg, &web("10.20.30.1"));
        assert_eq!(got[0].0.as_deref(), Some("iris1"), "{sel}");
        assert_eq!(got[0].1, layer2::Decision::Own(Interfaces::All), "{sel}");
        assert_eq!(
            got[1].1,
            layer2::Decision::Skip(layer2::SkipReason::NoAdvertisementForNode)
        );
    }
}

#[test]
fn l2_non_matching_selector_means_nobody_answers() {
    let cfg = l2_config(&[(
        "a",
        &on_iris1("serviceSelectors:\n- matchLabels: {app: apache}"),
    )]);
    for (owner, d) in l2_decide(&cfg, &web("10.20.30.1")) {
        assert_eq!(owner, None);
        assert_eq!(
            d,
            layer2::Decision::Skip(layer2::SkipReason::NoAdvertisementForService)
        );
    }
    assert_eq!(
        layer2::SkipReason::NoAdvertisementForService.as_str(),
        "noAdvertisementForService"
    );
}

#[test]
fn l2_election_is_the_same_everywhere_and_interfaces_are_per_node() {
    // MetalLB's TestL2ElectionConsistentButAdsPerNode, plus an advertisement
    // for other Services that selects iris3.
    let for_web = "serviceSelectors:\n- matchLabels: {app: nginx}";
    let cfg = l2_config(&[
        (
            "a",
            &format!(
                "interfaces: [eth0]\nnodeSelectors:\n- matchLabels: {{name: iris1}}\n{for_web}"
            ),
        ),
        (
            "b",
            &format!(
                "interfaces: [eth1]\nnodeSelectors:\n- matchLabels: {{name: iris2}}\n{for_web}"
            ),
        ),
        (
            "c",
            "interfaces: [eth2]\nnodeSelectors:\n- matchLabels: {name: iris3}\nserviceSelectors:\n- matchLabels: {app: db}",
        ),
    ]);
    let mut owners = BTreeSet::new();
    for i in 1..=40 {
        let got = l2_decide(&cfg, &web(&format!("10.20.30.{i}")));
        let owner = got[0].0.clone().expect("an owner");
        assert!(got.iter().all(|(o, _)| o.as_deref() == Some(&*owner)));
        assert_ne!(
            owner, "iris3",
            "iris3's advertisement is not for this Service"
        );
        let (idx, ifname) = if owner == "iris1" {
            (0, "eth0")
        } else {
            (1, "eth1")
        };
        assert_eq!(
            got[idx].1,
            layer2::Decision::Own(Interfaces::Only(vec![ifname.to_string()]))
        );
        assert_eq!(
            got[2].1,
            layer2::Decision::Skip(layer2::SkipReason::NoAdvertisementForNode)
        );
        owners.insert(owner);
    }
    assert_eq!(
        owners.len(),
        2,
        "both eligible nodes win some IPs: {owners:?}"
    );
    // The db Service is answered by iris3 alone, on eth2.
    let db = svc("default/db", "10.20.30.7", &[("app", "db")], &["iris1"]);
    let got = l2_decide(&cfg, &db);
    assert_eq!(got[2].0.as_deref(), Some("iris3"));
    assert_eq!(
        got[2].1,
        layer2::Decision::Own(Interfaces::Only(vec!["eth2".into()]))
    );
}

#[test]
fn l2_interfaces_come_only_from_the_advertisements_for_the_service() {
    // Both select iris1; only the nginx one is for web.
    let cfg = l2_config(&[
        (
            "a",
            &on_iris1("interfaces: [eth0]\nserviceSelectors:\n- matchLabels: {app: nginx}"),
        ),
        (
            "b",
            &on_iris1("interfaces: [eth9]\nserviceSelectors:\n- matchLabels: {app: db}"),
        ),
    ]);
    let got = l2_decide(&cfg, &web("10.20.30.1"));
    assert_eq!(
        got[0].1,
        layer2::Decision::Own(Interfaces::Only(vec!["eth0".into()]))
    );
}

#[test]
fn ip_helper_parses() {
    // Keeps the helpers honest: the pool holds the IPs the tests use.
    let cfg = l2_config(&[("a", "")]);
    assert!(
        cfg.pool_for("10.20.30.40".parse::<IpAddr>().unwrap())
            .is_some()
    );
}

#[test]
fn a_conflict_is_reported_once_by_the_pass_and_again_after_it_clears() {
    use ferrolb_speaker::pass::Announcer;
    let cfg = bgp_config(&[
        ("all", "localPref: 100"),
        (
            "web",
            "localPref: 200\nserviceSelectors:\n- matchLabels: {app: nginx}",
        ),
    ]);
    let n1 = node("n1", &[]);
    let mut a = Announcer::new();
    let s = [nginx()];
    let out = a.pass(&cfg, &n1, s.iter().map(|s| s.facts("n1")));
    assert_eq!(out.conflicting, [Box::from("default/web")]);
    assert!(out.routes.values().all(|r| r.is_empty()));
    let out = a.pass(&cfg, &n1, s.iter().map(|s| s.facts("n1")));
    assert!(out.conflicting.is_empty(), "reported once");
    // Relabelled away from the second advertisement: announced with 100.
    let db = [svc("default/web", "10.0.0.1", &[("app", "db")], &["n1"])];
    let out = a.pass(&cfg, &n1, db.iter().map(|s| s.facts("n1")));
    assert!(out.conflicting.is_empty());
    assert_eq!(out.announced, [Box::from("default/web")]);
    let out = a.pass(&cfg, &n1, s.iter().map(|s| s.facts("n1")));
    assert_eq!(
        out.conflicting,
        [Box::from("default/web")],
        "again after clearing"
    );
    assert_eq!(out.withdrawn.len(), 1);
}

#[test]
fn advertisements_without_selectors_are_not_checked_per_service() {
    // A v0.12 ConfigMap pool may have two advertisements differing only in
    // LOCAL_PREF: still announced, the highest wins (as before).
    let cfg = Config::parse(
        "peers:\n- {peer-address: 10.1.0.1, peer-asn: 64500, my-asn: 64500}\n\
         address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  \
         bgp-advertisements:\n  - {localpref: 100}\n  - {localpref: 200, communities: ['64500:1']}\n",
    )
    .unwrap();
    let n1 = node("n1", &[]);
    let s = [nginx()];
    let routes = routes_per_peer(&cfg, &n1, s.iter().map(|s| s.facts("n1")), |_, _| {});
    let r = &routes[&PeerKey::new("10.1.0.1".parse().unwrap(), 179)];
    let attrs = &r[&"10.0.0.1/32".parse().unwrap()];
    assert_eq!(attrs.local_pref, Some(200));
    assert_eq!(attrs.communities, [C1]);
}
