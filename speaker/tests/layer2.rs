//! Decision tables for the layer 2 owner election: spread, stability, the
//! eligibility rules (membership, exclusion, selectors, traffic policy) and
//! a Service with IPs in both a BGP and a layer 2 pool.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_config::{Config, L2Advertisement, NodeSelector};
use ferrolb_speaker::announce::{
    Decision as BgpDecision, Endpoint, NodeState, ServiceState, TrafficPolicy, decide,
};
use ferrolb_speaker::layer2::{Cluster, Decider, Decision, Interfaces, Layer2, SkipReason, rank};

const CONFIG: &str = r#"
peers:
- peer-address: 172.17.0.1
  peer-asn: 64512
  my-asn: 64522
address-pools:
- name: bgp
  protocol: bgp
  addresses: [172.17.254.0/24]
- name: l2
  protocol: layer2
  addresses: [172.17.0.200-172.17.0.219, "fd00:17::200/120"]
- name: other
  protocol: layer2
  addresses: [10.9.0.0/24]
"#;

fn config() -> Config {
    Config::parse(CONFIG).expect("test config is valid")
}

fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct World {
    nodes: BTreeMap<String, NodeState>,
    alive: BTreeSet<String>,
}

impl World {
    fn new(names: &[&str]) -> World {
        World {
            nodes: names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        NodeState {
                            name: n.to_string(),
                            ..NodeState::default()
                        },
                    )
                })
                .collect(),
            alive: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn cluster(&self) -> Cluster<'_> {
        Cluster {
            nodes: &self.nodes,
            alive: &self.alive,
            ignore_exclude_lb: false,
        }
    }

    fn node(&mut self, n: &str) -> &mut NodeState {
        self.nodes.get_mut(n).unwrap()
    }

    /// The owner of each service's first IP, as every node computes it;
    /// asserts that all nodes agree (exactly one says `Own`).
    fn owners(&self, config: &Config, svcs: &[ServiceState]) -> Vec<Option<String>> {
        svcs.iter()
            .map(|s| {
                let mut owners = Vec::new();
                let mut seen = None;
                for me in self.nodes.keys() {
                    let d = Decider::new(config, self.cluster(), me);
                    let (_, pd) = d.decide(&s.l2_facts()).remove(0);
                    if let Some(prev) = &seen {
                        assert_eq!(prev, &pd.owner, "{me} computes another owner for {}", s.key);
                    }
                    seen = Some(pd.owner.clone());
                    if matches!(pd.decision, Decision::Own(_)) {
                        owners.push(me.clone());
                    }
                }
                assert!(owners.len() <= 1, "{}: owned by {owners:?}", s.key);
                assert_eq!(seen.unwrap(), owners.first().cloned(), "{}", s.key);
                owners.pop()
            })
            .collect()
    }
}

fn ep(node: &str, ready: bool) -> Endpoint {
    Endpoint {
        node: Some(node.into()),
        ready,
        serving: ready,
    }
}

fn svc(key: &str, ips: &[&str], policy: TrafficPolicy, eps: Vec<Endpoint>) -> ServiceState {
    ServiceState {
        key: key.into(),
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        traffic_policy: policy,
        endpoints: eps,
        labels: Default::default(),
    }
}

fn ten_services() -> Vec<ServiceState> {
    (0..10)
        .map(|i| {
            svc(
                &format!("ns/s{i}"),
                &[&format!("172.17.0.{}", 200 + i)],
                TrafficPolicy::Cluster,
                vec![ep("n1", true)],
            )
        })
        .collect()
}

#[test]
fn rank_is_sha256_of_node_hash_ip() {
    // sha256("n1#172.17.0.200"), computed independently (`printf %s 'n1#172.17.0.200' | sha256sum`).
    let r = rank("n1", "172.17.0.200".parse().unwrap());
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    let expected = std::process::Command::new("sh")
        .args(["-c", "printf %s 'n1#172.17.0.200' | sha256sum"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split(' ')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    if expected.is_empty() {
        eprintln!("skipping the cross-check: sha256sum not available");
    } else {
        assert_eq!(hex, expected);
    }
    // IPv6 is hashed in its compressed form, as Go prints it.
    assert_eq!(
        rank("n1", "fd00:17::200".parse().unwrap()),
        rank("n1", "fd00:0017:0000::0200".parse().unwrap())
    );
}

#[test]
fn ten_services_on_three_nodes_spread_and_each_has_one_owner() {
    let cfg = config();
    let w = World::new(&["n1", "n2", "n3"]);
    let owners = w.owners(&cfg, &ten_services());
    assert!(owners.iter().all(Option::is_some), "{owners:?}");
    let per_node: BTreeMap<&str, usize> =
        owners.iter().flatten().fold(BTreeMap::new(), |mut m, o| {
            *m.entry(o.as_str()).or_default() += 1;
            m
        });
    assert!(per_node.len() >= 2, "no node owns all: {per_node:?}");
    assert!(per_node.values().all(|&n| n < 10), "{per_node:?}");
}

#[test]
fn unrelated_changes_move_no_owner() {
    let cfg = config();
    let mut w = World::new(&["n1", "n2", "n3"]);
    let mut svcs = ten_services();
    let before = w.owners(&cfg, &svcs);
    // Another Service appears.
    svcs.push(svc(
        "ns/new",
        &["172.17.0.215"],
        TrafficPolicy::Cluster,
        vec![ep("n2", true)],
    ));
    let after = w.owners(&cfg, &svcs);
    assert_eq!(before[..], after[..10]);
    // Labels of every node change (no selector reads them).
    for n in ["n1", "n2", "n3"] {
        w.node(n).labels = labels(&[("rack", "b"), ("zone", n)]);
    }
    assert_eq!(before[..], w.owners(&cfg, &svcs)[..10]);
}

#[test]
fn only_the_owners_ineligibility_moves_its_ips() {
    let cfg = config();
    let mut w = World::new(&["n1", "n2", "n3"]);
    let svcs = ten_services();
    let before = w.owners(&cfg, &svcs);
    // A node that owns some but not all IPs dies.
    let dead = before[0].clone().unwrap();
    w.alive.remove(&dead);
    let after = w.owners(&cfg, &svcs);
    for (b, a) in before.iter().zip(&after) {
        if b.as_deref() == Some(dead.as_str()) {
            assert_ne!(a, b, "the dead node's IPs move");
            assert!(a.is_some());
        } else {
            assert_eq!(a, b, "the others' IPs stay");
        }
    }
    // It comes back: it takes back exactly the IPs where it ranks first (its
    // old ones), nothing else moves.
    w.alive.insert(dead.clone());
    assert_eq!(w.owners(&cfg, &svcs), before);

    // Excluded or NetworkUnavailable: the same as dead for the election.
    w.node(&dead).excluded = true;
    let excluded = w.owners(&cfg, &svcs);
    assert_eq!(excluded, after);
    w.node(&dead).excluded = false;
    w.node(&dead).network_unavailable = true;
    assert_eq!(w.owners(&cfg, &svcs), after);
    // ... unless --ignore-exclude-lb (exclusion only).
    w.node(&dead).network_unavailable = false;
    w.node(&dead).excluded = true;
    let d = Decider::new(
        &cfg,
        Cluster {
            ignore_exclude_lb: true,
            ..w.cluster()
        },
        &dead,
    );
    assert!(matches!(
        d.decide(&svcs[0].l2_facts())[0].1.decision,
        Decision::Own(Interfaces::All)
    ));
    let d = Decider::new(&cfg, w.cluster(), &dead);
    assert_eq!(
        d.decide(&svcs[0].l2_facts())[0].1.decision,
        Decision::Skip(SkipReason::NodeExcluded)
    );
}

#[test]
fn local_policy_picks_a_node_with_an_endpoint() {
    let cfg = config();
    let w = World::new(&["n1", "n2", "n3"]);
    for i in 0..10 {
        let ip = format!("172.17.0.{}", 200 + i);
        let host = ["n1", "n2", "n3"][i % 3];
        let s = svc(
            "ns/local",
            &[&ip],
            TrafficPolicy::Local,
            vec![ep(host, true), ep("n9", false)],
        );
        assert_eq!(
            w.owners(&cfg, std::slice::from_ref(&s)),
            [Some(host.to_string())]
        );
        // The others say why.
        for me in ["n1", "n2", "n3"].into_iter().filter(|n| *n != host) {
            let d = Decider::new(&cfg, w.cluster(), me);
            assert_eq!(
                d.decide(&s.l2_facts())[0].1.decision,
                Decision::Skip(SkipReason::NoLocalEndpoint)
            );
        }
    }
    // Endpoints on two nodes: one of those two, never the third.
    let s = svc(
        "ns/two",
        &["172.17.0.205"],
        TrafficPolicy::Local,
        vec![ep("n1", true), ep("n3", true)],
    );
    let o = w.owners(&cfg, std::slice::from_ref(&s)).remove(0).unwrap();
    assert!(o == "n1" || o == "n3", "{o}");
    // A serving, terminating endpoint counts; one neither ready nor serving does not.
    let terminating = Endpoint {
        node: Some("n2".into()),
        ready: false,
        serving: true,
    };
    let s = svc(
        "ns/t",
        &["172.17.0.205"],
        TrafficPolicy::Local,
        vec![terminating],
    );
    assert_eq!(
        w.owners(&cfg, std::slice::from_ref(&s)),
        [Some("n2".into())]
    );
    // The endpoint's node is not alive: nobody answers.
    let mut w2 = World::new(&["n1", "n2", "n3"]);
    w2.alive.remove("n2");
    let s = svc(
        "ns/t",
        &["172.17.0.205"],
        TrafficPolicy::Local,
        vec![ep("n2", true)],
    );
    assert_eq!(w2.owners(&cfg, std::slice::from_ref(&s)), [None]);
    let d = Decider::new(&cfg, w2.cluster(), "n1");
    assert_eq!(
        d.decide(&s.l2_facts())[0].1.decision,
        Decision::Skip(SkipReason::NoLocalEndpoint)
    );
    // No usable endpoint anywhere (Cluster): nobody answers.
    let s = svc(
        "ns/c",
        &["172.17.0.205"],
        TrafficPolicy::Cluster,
        vec![ep("n2", false)],
    );
    assert_eq!(w.owners(&cfg, std::slice::from_ref(&s)), [None]);
    let d = Decider::new(&cfg, w.cluster(), "n1");
    assert_eq!(
        d.decide(&s.l2_facts())[0].1.decision,
        Decision::Skip(SkipReason::NoReadyEndpoint)
    );
}

fn selector(l: &[(&str, &str)]) -> NodeSelector {
    NodeSelector {
        match_labels: labels(l),
        match_expressions: Vec::new(),
    }
}

#[test]
fn node_selectors_and_interfaces_of_the_advertisements() {
    let mut cfg = config();
    let l2 = cfg.pools.iter_mut().find(|p| p.name == "l2").unwrap();
    l2.l2_advertisements = vec![
        L2Advertisement {
            node_selectors: vec![selector(&[("l2", "yes")])],
            interfaces: vec!["eth1".into(), "eth0".into()],
            ..L2Advertisement::default()
        },
        L2Advertisement {
            node_selectors: vec![selector(&[("edge", "true")])],
            interfaces: vec!["eth2".into(), "eth0".into()],
            ..L2Advertisement::default()
        },
    ];
    let mut w = World::new(&["n1", "n2", "n3"]);
    w.node("n1").labels = labels(&[("l2", "yes")]);
    w.node("n3").labels = labels(&[("l2", "yes"), ("edge", "true")]);
    let svcs = ten_services();
    let owners = w.owners(&cfg, &svcs);
    assert!(
        owners.iter().all(|o| o.as_deref() != Some("n2")),
        "n2 is selected by no advertisement: {owners:?}"
    );
    let d2 = Decider::new(&cfg, w.cluster(), "n2");
    assert_eq!(
        d2.decide(&svcs[0].l2_facts())[0].1.decision,
        Decision::Skip(SkipReason::NoAdvertisementForNode)
    );
    // The interfaces: the union over the advertisements selecting the node.
    for (s, o) in svcs.iter().zip(&owners) {
        let o = o.as_deref().unwrap();
        let d = Decider::new(&cfg, w.cluster(), o);
        let want = if o == "n3" {
            Interfaces::Only(vec!["eth0".into(), "eth1".into(), "eth2".into()])
        } else {
            Interfaces::Only(vec!["eth0".into(), "eth1".into()])
        };
        assert_eq!(d.decide(&s.l2_facts())[0].1.decision, Decision::Own(want));
    }
    // An advertisement without interfaces selecting the node: all interfaces.
    let l2 = cfg.pools.iter_mut().find(|p| p.name == "l2").unwrap();
    l2.l2_advertisements.push(L2Advertisement::default());
    let owners = w.owners(&cfg, &svcs);
    let s = owners
        .iter()
        .position(|o| o.as_deref() == Some("n1"))
        .expect("n1 owns one");
    let d = Decider::new(&cfg, w.cluster(), "n1");
    assert_eq!(
        d.decide(&svcs[s].l2_facts())[0].1.decision,
        Decision::Own(Interfaces::All)
    );
}

#[test]
fn a_service_in_a_bgp_and_a_layer2_pool_is_handled_by_both_paths() {
    let cfg = config();
    let w = World::new(&["n1", "n2", "n3"]);
    let s = svc(
        "ns/both",
        &["172.17.254.7", "172.17.0.210"],
        TrafficPolicy::Cluster,
        vec![ep("n1", true)],
    );
    let owner = w
        .owners(
            &cfg,
            std::slice::from_ref(&svc(
                "ns/both",
                &["172.17.0.210"],
                TrafficPolicy::Cluster,
                vec![ep("n1", true)],
            )),
        )
        .remove(0)
        .unwrap();
    for me in ["n1", "n2", "n3"] {
        let d = Decider::new(&cfg, w.cluster(), me).decide(&s.l2_facts());
        assert_eq!(d[0].1.decision, Decision::Skip(SkipReason::NotLayer2Pool));
        assert_eq!(
            matches!(d[1].1.decision, Decision::Own(_)),
            me == owner,
            "{me}"
        );
        // The BGP path announces the BGP IP from every node.
        let node = NodeState {
            name: me.into(),
            ..NodeState::default()
        };
        let BgpDecision::Announce(anns) = decide(&cfg, &node, &s) else {
            panic!("the BGP IP is announced from {me}");
        };
        let prefixes: Vec<String> = anns.iter().map(|a| a.prefix.to_string()).collect();
        assert_eq!(prefixes, ["172.17.254.7/32"]);
    }
}

#[test]
fn dual_stack_ips_of_one_pool_share_the_owner() {
    let cfg = config();
    let w = World::new(&["n1", "n2", "n3", "n4", "n5"]);
    for i in 0..10u8 {
        let v4 = format!("172.17.0.{}", 200 + i);
        let v6 = format!("fd00:17::2{i:02}");
        let s = svc(
            "ns/ds",
            &[&v4, &v6],
            TrafficPolicy::Cluster,
            vec![ep("n1", true)],
        );
        let mut owners = BTreeSet::new();
        for me in w.nodes.keys() {
            let d = Decider::new(&cfg, w.cluster(), me).decide(&s.l2_facts());
            assert_eq!(d.len(), 2);
            assert_eq!(d[0].1, d[1].1, "both IPs decided together");
            if matches!(d[0].1.decision, Decision::Own(_)) {
                owners.insert(me.clone());
            }
        }
        assert_eq!(owners.len(), 1);
    }
}

#[test]
fn pass_reports_assigned_and_released_services() {
    let cfg = config();
    let mut w = World::new(&["n1", "n2", "n3"]);
    let svcs = ten_services();
    let owners = w.owners(&cfg, &svcs);
    let me = owners[0].clone().unwrap();
    let mine: Vec<&ServiceState> = svcs
        .iter()
        .zip(&owners)
        .filter(|(_, o)| o.as_deref() == Some(me.as_str()))
        .map(|(s, _)| s)
        .collect();
    let mut l2 = Layer2::new();
    let out = l2.pass(
        &cfg,
        w.cluster(),
        &me,
        svcs.iter().map(ServiceState::l2_facts),
    );
    let want: BTreeSet<&str> = mine.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        out.assigned.iter().map(|k| &**k).collect::<BTreeSet<_>>(),
        want
    );
    let ips: BTreeSet<IpAddr> = mine.iter().map(|s| s.ips[0]).collect();
    assert_eq!(out.owned.keys().copied().collect::<BTreeSet<_>>(), ips);
    assert!(out.owned.values().all(|i| *i == Interfaces::All));
    assert!(out.released.is_empty());
    assert_eq!(out.owners.len(), 10);
    // Same facts: nothing new.
    let out = l2.pass(
        &cfg,
        w.cluster(),
        &me,
        svcs.iter().map(ServiceState::l2_facts),
    );
    assert!(out.assigned.is_empty() && out.released.is_empty());
    assert_eq!(l2.len(), want.len());
    // This node goes NetworkUnavailable: everything is released, with why.
    w.node(&me).network_unavailable = true;
    let out = l2.pass(
        &cfg,
        w.cluster(),
        &me,
        svcs.iter().map(ServiceState::l2_facts),
    );
    assert!(out.owned.is_empty());
    assert_eq!(out.released.len(), want.len());
    assert!(
        out.released
            .iter()
            .all(|(_, r)| *r == Some(SkipReason::NodeNetworkUnavailable))
    );
    // Back, then the Services are deleted: released as gone.
    w.node(&me).network_unavailable = false;
    l2.pass(
        &cfg,
        w.cluster(),
        &me,
        svcs.iter().map(ServiceState::l2_facts),
    );
    let out = l2.pass(&cfg, w.cluster(), &me, std::iter::empty());
    assert_eq!(out.released.len(), want.len());
    assert!(out.released.iter().all(|(_, r)| r.is_none()));
    assert!(l2.is_empty());
}
