//! The custom-resource front end on valid sets: every kind and field → the
//! exact `Config`; JSON as the API server serves it → the same.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ferrolb_config::crs::{PasswordSecret, Resources, Secrets};
use ferrolb_config::{
    AddrRange, BfdProfile, BgpAdvertisement, Community, Config, DynamicAsn, L2Advertisement,
    LabelRequirement, NodeSelector, Peer, Pool, SelectorOperator, ServiceAllocation,
};

const FULL: &str = include_str!("crs/full.yaml");

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel_labels(pairs: &[(&str, &str)]) -> NodeSelector {
    NodeSelector {
        match_labels: labels(pairs),
        match_expressions: Vec::new(),
    }
}

fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelRequirement {
    LabelRequirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn range(s: &str) -> AddrRange {
    AddrRange::parse(s).unwrap()
}

fn secrets() -> BTreeMap<String, PasswordSecret> {
    BTreeMap::from([(
        "spine-md5".to_string(),
        PasswordSecret {
            type_: Some("kubernetes.io/basic-auth".into()),
            password: Some(b"s3cret".to_vec()),
            resource_version: Some("7".into()),
        },
    )])
}

fn expected() -> Config {
    let spine_only = BgpAdvertisement {
        peers: vec!["spine".into()],
        service_selectors: vec![
            sel_labels(&[("exposure", "spine")]),
            NodeSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![req("tier", SelectorOperator::NotIn, &["internal"])],
            },
        ],
        ..BgpAdvertisement::default()
    };
    let internal = Pool {
        advertisements: vec![spine_only.clone()],
        l2_advertisements: vec![L2Advertisement {
            node_selectors: vec![NodeSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![req("edge", SelectorOperator::Exists, &[])],
            }],
            interfaces: vec!["eth0".into()],
            service_selectors: vec![sel_labels(&[("l2", "yes")])],
        }],
        ..Pool::new("internal", vec![range("10.10.0.0/29")])
    };
    let public = Pool {
        auto_assign: false,
        avoid_buggy_ips: true,
        service_allocation: Some(ServiceAllocation {
            priority: 50,
            namespaces: vec!["web".into(), "shop".into()],
            namespace_selectors: vec![sel_labels(&[("team", "a")])],
            service_selectors: vec![NodeSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![req("app", SelectorOperator::In, &["nginx", "caddy"])],
            }],
        }),
        advertisements: vec![
            BgpAdvertisement {
                aggregation_length: 32,
                aggregation_length_v6: 124,
                local_pref: Some(100),
                communities: vec![65535 << 16 | 65281, 65535 << 16 | 65282],
                large_communities: vec![(64512, 1, 2)],
                node_selectors: vec![sel_labels(&[("rack", "r1")])],
                peers: vec!["tor".into()],
                service_selectors: Vec::new(),
            },
            spine_only,
        ],
        ..Pool::new(
            "public",
            vec![
                range("192.168.10.0/24"),
                range("192.168.9.1-192.168.9.5"),
                range("fc00:f853:ccd:e799::/124"),
            ],
        )
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let old = Peer {
        hold_time: Duration::from_secs(60),
        keepalive_time: Duration::from_secs(20),
        name: Some("old".into()),
        ..Peer::new(ip("10.0.0.9"), 64512, 64600)
    };
    let spine = Peer {
        hold_time: Duration::from_secs(9),
        keepalive_time: Duration::from_secs(3),
        password: Some("s3cret".into()),
        name: Some("spine".into()),
        dynamic_asn: Some(DynamicAsn::Internal),
        bfd_profile: Some("fast".into()),
        graceful_restart: true,
        ..Peer::new(ip("fd00::1"), 64512, 0)
    };
    let tor = Peer {
        port: 1179,
        hold_time: Duration::from_secs(120),
        keepalive_time: Duration::from_secs(30),
        router_id: Some("1.2.3.4".parse().unwrap()),
        source_address: Some(ip("10.0.0.2")),
        password: Some("yourPassword".into()),
        ebgp_multihop: true,
        node_selectors: vec![NodeSelector {
            match_labels: labels(&[("kubernetes.io/hostname", "prod-01")]),
            match_expressions: vec![req(
                "kubernetes.io/arch",
                SelectorOperator::In,
                &["amd64", "arm"],
            )],
        }],
        name: Some("tor".into()),
        connect_time: Some(Duration::from_secs(10)),
        disable_mp: true,
        ..Peer::new(ip("10.0.0.1"), 64512, 64513)
    };
    Config {
        peers: vec![old, spine, tor],
        pools: vec![internal, public],
        communities: BTreeMap::from([(
            "no-export".to_string(),
            Community::Standard(65535 << 16 | 65281),
        )]),
        bfd_profiles: BTreeMap::from([(
            "fast".to_string(),
            BfdProfile {
                receive_interval_ms: 100,
                transmit_interval_ms: 200,
                detect_multiplier: 5,
                echo_interval_ms: 60,
                passive_mode: true,
                minimum_ttl: 10,
                ..BfdProfile::with_defaults("fast")
            },
        )]),
        warnings: Vec::new(),
    }
}

fn from_yaml(text: &str, secrets: Secrets<'_>) -> Config {
    let mut r = Resources::new();
    let others = r.add_yaml("full.yaml", text).unwrap();
    assert!(others.is_empty(), "{others:?}");
    Config::from_resources(&r, secrets).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_kind_and_field_gives_the_exact_config() {
    let s = secrets();
    let mut cfg = from_yaml(FULL, Secrets::Given(&s));
    let warnings = std::mem::take(&mut cfg.warnings);
    assert_eq!(cfg, expected());
    let found: Vec<(&str, &str, &str)> = warnings
        .iter()
        .map(|w| (w.kind.as_str(), w.name.as_str(), w.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("BFDProfile", "fast", "spec.echoInterval"),
            ("BFDProfile", "fast", "spec.minimumTtl"),
        ]
    );
    assert!(warnings.iter().all(|w| !w.message.is_empty()));
}

#[test]
fn secrets_ignored_leave_the_password_unset() {
    let cfg = from_yaml(FULL, Secrets::Ignore);
    let spine = cfg
        .peers
        .iter()
        .find(|p| p.name.as_deref() == Some("spine"));
    assert_eq!(spine.unwrap().password, None);
    let mut r = Resources::new();
    r.add_yaml("full.yaml", FULL).unwrap();
    assert_eq!(r.password_secrets(), ["spine-md5"]);
    assert!(r.has_pools());
    assert!(!r.is_empty());
}

/// The objects of `crs/full.json` (the same set as the API server serves it:
/// schema defaults, uid, resourceVersion, managedFields, status).
fn json_resources() -> Resources {
    let list: serde_json::Value = serde_json::from_str(include_str!("crs/full.json")).unwrap();
    let mut r = Resources::new();
    for item in list["items"].as_array().unwrap() {
        r.add_json(item).unwrap();
    }
    r
}

#[test]
fn json_from_the_api_server_gives_the_same_config() {
    let s = secrets();
    let from_json = Config::from_resources(&json_resources(), Secrets::Given(&s)).unwrap();
    assert_eq!(from_json, from_yaml(FULL, Secrets::Given(&s)));
}

#[test]
fn uids_objects_and_revision() {
    let r = json_resources();
    assert_eq!(r.uid("BGPPeer", "tor"), Some("0000-2"));
    assert_eq!(r.uid("BGPPeer", "nope"), None);
    let kinds: Vec<(&str, &str)> = r.objects().map(|(k, n, _)| (k, n)).collect();
    assert_eq!(
        kinds,
        [
            ("IPAddressPool", "internal"),
            ("IPAddressPool", "public"),
            ("BGPPeer", "old"),
            ("BGPPeer", "spine"),
            ("BGPPeer", "tor"),
            ("BGPAdvertisement", "a-public"),
            ("BGPAdvertisement", "b-all"),
            ("L2Advertisement", "l2"),
            ("Community", "communities"),
            ("BFDProfile", "fast"),
        ]
    );
    // The revision follows resourceVersions; without them, the content.
    let list: serde_json::Value = serde_json::from_str(include_str!("crs/full.json")).unwrap();
    let mut bumped = list.clone();
    bumped["items"][0]["metadata"]["resourceVersion"] = "9999".into();
    let revision = |l: &serde_json::Value| {
        let mut r = Resources::new();
        for item in l["items"].as_array().unwrap() {
            r.add_json(item).unwrap();
        }
        r.revision()
    };
    assert_eq!(revision(&list), r.revision());
    assert_ne!(revision(&bumped), r.revision());
    let mut a = Resources::new();
    a.add_yaml("f", FULL).unwrap();
    let mut b = Resources::new();
    b.add_yaml("f", &FULL.replace("localPref: 100", "localPref: 101"))
        .unwrap();
    assert_ne!(a.revision(), b.revision());
    let mut c = Resources::new();
    c.add_yaml("other-name", FULL).unwrap();
    assert_eq!(a.revision(), c.revision());
    assert!(Resources::new().is_empty());
    assert!(!Resources::new().has_pools());
}

#[test]
fn other_documents_come_back_with_their_lines() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/basic-auth\n\
                stringData: {password: x}\n---\n"
        .to_string()
        + FULL
        + "---\napiVersion: metallb.io/v1beta1\nkind: ServiceBGPStatus\nmetadata: {name: x}\n";
    let mut r = Resources::new();
    let others = r.add_yaml("mixed.yaml", &text).unwrap();
    let found: Vec<(usize, &str)> = others.iter().map(|o| (o.line, o.kind.as_str())).collect();
    let last = text.lines().count() - 3;
    assert_eq!(found, [(1, "Secret"), (last, "ServiceBGPStatus")]);
    assert!(others[0].text.starts_with("apiVersion: v1\nkind: Secret\n"));
    assert_eq!(r.objects().count(), 10);
}

#[test]
fn a_json_object_of_another_kind_is_refused() {
    let mut r = Resources::new();
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config"}});
    let e = r.add_json(&cm).unwrap_err();
    assert_eq!(e.path, "kind");
    assert!(e.to_string().contains("\"ConfigMap\""), "{e}");
    let old = serde_json::json!({"apiVersion": "metallb.io/v1alpha1", "kind": "IPAddressPool", "metadata": {"name": "p"}});
    let e = r.add_json(&old).unwrap_err();
    assert_eq!(e.path, "apiVersion");
    assert!(r.is_empty());
}
