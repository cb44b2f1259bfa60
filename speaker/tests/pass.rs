//! The speaker's decision pass across time (pure): what is announced and
//! withdrawn from one pass to the next, what `/metrics` shows of it, the node
//! as last seen, and peers that share an address.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ferrolb_bgp::driver::SessionStatus;
use ferrolb_bgp::fsm::State;
use ferrolb_config::Config;
use ferrolb_ops::metrics::Metrics;
use ferrolb_speaker::announce::{
    EXCLUDE_LABEL, EndpointSummary, NodeState, PeerKey, ServiceFacts, SkipReason, TrafficPolicy,
    peer_keys,
};
use ferrolb_speaker::metrics::{SessionView, SpeakerState, register};
use ferrolb_speaker::pass::{Announcer, Withdrawn};
use ferrolb_speaker::peers::desired_sessions;
use ferrolb_speaker::watch::{KnownNode, node_state};
use k8s_openapi::api::core::v1::Node;

const CONFIG: &str = "peers:
- {peer-address: 172.17.0.1, peer-asn: 64512, my-asn: 64522}
address-pools:
- {name: default, protocol: bgp, addresses: [172.17.254.0/24]}
";

fn cfg() -> Config {
    Config::parse(CONFIG).unwrap()
}

fn node() -> NodeState {
    NodeState {
        name: "n1".into(),
        ..NodeState::default()
    }
}

const UP: EndpointSummary = EndpointSummary {
    usable_anywhere: true,
    usable_here: true,
};

fn facts<'a>(key: &'a str, ips: &'a [IpAddr], endpoints: EndpointSummary) -> ServiceFacts<'a> {
    ServiceFacts {
        key,
        ips,
        traffic_policy: TrafficPolicy::Cluster,
        endpoints,
        labels: Default::default(),
    }
}

fn ips(s: &[&str]) -> Vec<IpAddr> {
    s.iter().map(|i| i.parse().unwrap()).collect()
}

#[test]
fn announced_and_withdrawn_from_pass_to_pass() {
    let (cfg, node) = (cfg(), node());
    let (a, b) = (ips(&["172.17.254.1"]), ips(&["172.17.254.2"]));
    let mut an = Announcer::new();

    let out = an.pass(&cfg, &node, [facts("ns/a", &a, UP), facts("ns/b", &b, UP)]);
    assert_eq!(out.announced, [Box::from("ns/a"), Box::from("ns/b")]);
    assert!(out.withdrawn.is_empty());
    let peer = PeerKey::new("172.17.0.1".parse().unwrap(), 179);
    assert_eq!(out.routes[&peer].len(), 2);

    // Same facts: nothing new to say, same routes.
    let out = an.pass(&cfg, &node, [facts("ns/a", &a, UP), facts("ns/b", &b, UP)]);
    assert!(out.announced.is_empty() && out.withdrawn.is_empty());
    assert_eq!(out.routes[&peer].len(), 2);

    // b loses its endpoints, a is deleted.
    let out = an.pass(&cfg, &node, [facts("ns/b", &b, EndpointSummary::default())]);
    assert!(out.announced.is_empty());
    assert_eq!(
        out.withdrawn,
        [
            (
                Box::from("ns/b"),
                Withdrawn::Skip(SkipReason::NoReadyEndpoint)
            ),
            (Box::from("ns/a"), Withdrawn::Deleted)
        ]
    );
    assert!(
        out.routes[&peer].is_empty(),
        "the peer is told to hold nothing"
    );
    assert!(an.is_empty());
    assert_eq!(Withdrawn::Deleted.to_string(), "service deleted");
}

/// A BFD session that is Up, with counters 11 in, 12 out, 2 up and 1 down events.
fn bfd_view() -> ferrolb_bgp::driver::BfdView {
    use ferrolb_bgp::bfd::{BfdCounters, BfdStatus, Diag, Negotiated, State as BfdState};
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;
    let ms = Duration::from_millis;
    let status = BfdStatus {
        state: BfdState::Up,
        remote_state: BfdState::Up,
        diag: Diag::None,
        remote_admin_down: false,
        local_discr: 7,
        remote_discr: 9,
        negotiated: Negotiated {
            tx_interval: ms(300),
            detection_time: ms(900),
            local_desired_min_tx: ms(300),
            local_required_min_rx: ms(300),
            remote_desired_min_tx: ms(300),
            remote_required_min_rx: ms(300),
            remote_detect_mult: 3,
        },
    };
    let counters = BfdCounters::default();
    counters.control_packet_input.store(11, Relaxed);
    counters.control_packet_output.store(12, Relaxed);
    counters.session_up_events.store(2, Relaxed);
    counters.session_down_events.store(1, Relaxed);
    let (_, rx) = tokio::sync::watch::channel(status);
    ferrolb_bgp::driver::BfdView {
        status: rx,
        counters: Arc::new(counters),
    }
}

#[test]
fn metrics_show_the_announced_set_and_sessions_under_metallb_names() {
    let (cfg, node) = (cfg(), node());
    let a = ips(&["172.17.254.1"]);
    let mut announcer = Announcer::new();
    announcer.pass(&cfg, &node, [facts("default/web", &a, UP)]);
    let (_tx, status) = tokio::sync::watch::channel(SessionStatus {
        state: State::Established,
        updates_sent: 3,
        prefixes_announced: 1,
        ..SessionStatus::default()
    });
    let shared = Arc::new(Mutex::new(SpeakerState {
        synced: true,
        config_loaded: true,
        config_stale: false,
        announcer,
        sessions: vec![SessionView {
            peer: PeerKey::new("172.17.0.1".parse().unwrap(), 179),
            status,
            desired: 2,
            bfd: Some(bfd_view()),
        }],
        status_writes: Some({
            let c = ferrolb_speaker::bgp_status::WriteCounters::default();
            c.creates.store(4, std::sync::atomic::Ordering::Relaxed);
            c.patches.store(7, std::sync::atomic::Ordering::Relaxed);
            Arc::new(c)
        }),
        layer2: Default::default(),
        l2_counters: Some({
            let c = ferrolb_speaker::metrics::L2Counters::default();
            let ip = "172.17.0.200".parse().unwrap();
            c.request_received(ip);
            c.request_received(ip);
            c.response_sent(ip);
            for _ in 0..3 {
                c.gratuitous_sent(ip);
            }
            Arc::new(c)
        }),
    }));
    let mut metrics = Metrics::new();
    register(&mut metrics, shared.clone(), "n1".into()).unwrap();
    let text = metrics.render();
    for line in [
        "metallb_bgp_session_up{peer=\"172.17.0.1:179\"} 1",
        "metallb_bgp_updates_total{peer=\"172.17.0.1:179\"} 3",
        "# TYPE metallb_bgp_updates_total counter",
        "metallb_bgp_announced_prefixes_total{peer=\"172.17.0.1:179\"} 1",
        "metallb_bgp_pending_prefixes_total{peer=\"172.17.0.1:179\"} 2",
        "metallb_k8s_client_config_loaded_bool 1",
        "metallb_k8s_client_config_stale_bool 0",
        "metallb_speaker_announced{ip=\"172.17.254.1\",node=\"n1\",protocol=\"bgp\",service=\"default/web\"} 1",
        "ferrolb_speaker_status_writes_total{verb=\"create\"} 4",
        "ferrolb_speaker_status_writes_total{verb=\"patch\"} 7",
        "ferrolb_speaker_status_writes_total{verb=\"delete\"} 0",
        "ferrolb_speaker_status_writes_pending 0",
        "metallb_bfd_session_up{peer=\"172.17.0.1\"} 1",
        "# TYPE metallb_bfd_control_packet_input counter",
        "metallb_bfd_control_packet_input{peer=\"172.17.0.1\"} 11",
        "metallb_bfd_control_packet_output{peer=\"172.17.0.1\"} 12",
        "metallb_bfd_session_up_events{peer=\"172.17.0.1\"} 2",
        "metallb_bfd_session_down_events{peer=\"172.17.0.1\"} 1",
        "# TYPE metallb_layer2_requests_received counter",
        "metallb_layer2_requests_received{ip=\"172.17.0.200\"} 2",
        "metallb_layer2_responses_sent{ip=\"172.17.0.200\"} 1",
        "metallb_layer2_gratuitous_sent{ip=\"172.17.0.200\"} 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // Withdrawn: the series goes with it.
    shared.lock().unwrap().announcer.pass(
        &cfg,
        &node,
        [facts("default/web", &a, EndpointSummary::default())],
    );
    assert!(!metrics.render().contains("metallb_speaker_announced{"));
}

fn node_object(labels: serde_json::Value) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1", "labels": labels},
    }))
    .unwrap()
}

#[test]
fn a_node_object_that_disappears_keeps_its_last_labels() {
    let mut known = KnownNode::default();
    // Never seen: no labels.
    assert!(known.observe("n1", None).labels.is_empty());
    let seen = known.observe("n1", Some(&node_object(serde_json::json!({"rack": "a"}))));
    assert_eq!(seen.labels["rack"], "a");
    // Deleted (or renamed away): still rack=a, so rack-selected peers stay.
    let gone = known.observe("n1", None);
    assert_eq!(gone, seen);
    // Back with other labels: those count.
    let back = known.observe("n1", Some(&node_object(serde_json::json!({"rack": "b"}))));
    assert_eq!(back.labels["rack"], "b");
}

#[test]
fn the_exclude_label_excludes_unless_ignored() {
    let labelled = node_object(serde_json::json!({ EXCLUDE_LABEL: "" }));
    let state = node_state("n1", Some(&labelled));
    assert!(state.excluded);
    let a = ips(&["172.17.254.1"]);
    let out = Announcer::new().pass(&cfg(), &state, [facts("ns/a", &a, UP)]);
    assert!(out.announced.is_empty());
    // --ignore-exclude-lb: the shell clears `excluded`.
    let ignored = NodeState {
        excluded: false,
        ..state
    };
    let out = Announcer::new().pass(&cfg(), &ignored, [facts("ns/a", &a, UP)]);
    assert_eq!(out.announced.len(), 1);
}

#[test]
fn peers_that_share_an_address_get_a_session_each() {
    // MetalLB accepts two peers that differ only in ASN (say, during an ASN
    // migration) and runs both sessions; the router accepts the right one.
    let cfg = Config::parse(
        "peers:
- {peer-address: 172.17.0.1, peer-asn: 64512, my-asn: 64522}
- {peer-address: 172.17.0.1, peer-asn: 64513, my-asn: 64522}
- {peer-address: 172.17.0.9, peer-asn: 64512, my-asn: 64522}
address-pools:
- {name: default, protocol: bgp, addresses: [172.17.254.0/24]}
",
    )
    .unwrap();
    let keys = peer_keys(&cfg);
    let labels: Vec<String> = keys.iter().map(ToString::to_string).collect();
    assert_eq!(
        labels,
        ["172.17.0.1:179", "172.17.0.1:179#2", "172.17.0.9:179"]
    );
    let resolve = |_: IpAddr| Some("172.17.0.21".parse().unwrap());
    let (sessions, errors) = desired_sessions(&cfg, &node(), &resolve);
    assert!(errors.is_empty());
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[&keys[0]].peer_as, 64512);
    assert_eq!(sessions[&keys[1]].peer_as, 64513);
    let a = ips(&["172.17.254.1"]);
    let out = Announcer::new().pass(&cfg, &node(), [facts("ns/a", &a, UP)]);
    assert_eq!(out.routes.len(), 3);
    assert!(out.routes.values().all(|r| r.len() == 1));
}

/// What the ServiceBGPStatus objects say comes from the pass: per announced
/// Service, the peers it goes to — BGPPeer names, `address:port` for a
/// ConfigMap peer — and it follows the pass (advertisement peers, withdrawals).
#[test]
fn bgp_status_desired_follows_the_pass() {
    use ferrolb_speaker::bgp_status::{ServiceId, desired};
    let mut cfg = Config::parse(
        "peers:
- {peer-address: 172.17.0.1, peer-asn: 64512, my-asn: 64522}
- {peer-address: 172.17.0.2, peer-asn: 64512, my-asn: 64522}
- {peer-address: 172.17.0.3, peer-asn: 64512, my-asn: 64522}
address-pools:
- {name: default, protocol: bgp, addresses: [172.17.254.0/24]}
- {name: only-b, protocol: bgp, addresses: [172.17.253.0/24]}
",
    )
    .unwrap();
    cfg.peers[0].name = Some("rt-a".into());
    cfg.peers[1].name = Some("rt-b".into());
    cfg.peers[2].vrf = Some("red".into());
    cfg.pools[1].advertisements[0].peers = vec!["rt-b".into()];
    let node = node();
    let (a, b) = (ips(&["172.17.254.1"]), ips(&["172.17.253.1"]));
    let mut ann = Announcer::new();
    ann.pass(&cfg, &node, [facts("ns/a", &a, UP), facts("ns/b", &b, UP)]);
    let id = |n: &str| ServiceId::parse(n).unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        desired(&ann, &cfg),
        [
            (id("ns/a"), s(&["rt-a", "rt-b"])),
            (id("ns/b"), s(&["rt-b"]))
        ]
        .into()
    );
    // ConfigMap peers (no names) are named address:port; a withdrawn Service goes.
    cfg.peers[0].name = None;
    ann.pass(
        &cfg,
        &node,
        [
            facts("ns/a", &a, UP),
            facts("ns/b", &b, EndpointSummary::default()),
        ],
    );
    assert_eq!(
        desired(&ann, &cfg),
        [(id("ns/a"), s(&["172.17.0.1:179", "rt-b"]))].into()
    );
}
