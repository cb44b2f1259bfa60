//! What the custom resources ask for that ferrolb accepts but does not do:
//! every such field is a warning naming the object and field; peers that
//! would be wrong without it get no session.

use ferrolb_config::crs::{Resources, Secrets};
use ferrolb_config::{Config, NodeSelector};

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

fn config(text: &str) -> Config {
    let mut r = Resources::new();
    r.add_yaml("w.yaml", text).unwrap();
    Config::from_resources(&r, Secrets::Ignore).unwrap_or_else(|e| panic!("{e}"))
}

fn warnings(cfg: &Config) -> Vec<(String, String, String)> {
    cfg.warnings
        .iter()
        .map(|w| (w.kind.clone(), w.name.clone(), w.field.clone()))
        .collect()
}

fn triple(kind: &str, name: &str, field: &str) -> (String, String, String) {
    (kind.into(), name.into(), field.into())
}

#[test]
fn peers_that_get_no_session() {
    let text = doc("IPAddressPool", "p", "addresses: [10.0.0.0/24]")
        + &doc("BGPAdvertisement", "a", "")
        + &doc(
            "BGPPeer",
            "v",
            "myASN: 1\npeerASN: 2\npeerAddress: 10.1.0.1\nvrf: red",
        )
        + &doc(
            "BGPPeer",
            "i",
            "myASN: 1\ndynamicASN: external\ninterface: eth1",
        )
        + &doc(
            "BGPPeer",
            "l",
            "myASN: 1\npeerASN: 2\npeerAddress: 10.1.0.3\nlocalASN: 9",
        )
        + &doc(
            "BGPPeer",
            "ok",
            "myASN: 1\npeerASN: 2\npeerAddress: 10.1.0.4\ndualStackAddressFamily: true",
        );
    let cfg = config(&text);
    assert_eq!(
        warnings(&cfg),
        [
            triple("BGPPeer", "i", "spec.interface"),
            triple("BGPPeer", "l", "spec.localASN"),
            triple("BGPPeer", "ok", "spec.dualStackAddressFamily"),
            triple("BGPPeer", "v", "spec.vrf"),
        ]
    );
    let unsupported: Vec<(Option<&str>, bool)> = cfg
        .peers
        .iter()
        .map(|p| (p.name.as_deref(), p.needs_unsupported().is_some()))
        .collect();
    assert_eq!(
        unsupported,
        [
            (Some("i"), true),
            (Some("l"), true),
            (Some("ok"), false),
            (Some("v"), true)
        ]
    );
    let i = &cfg.peers[0];
    assert_eq!(i.interface.as_deref(), Some("eth1"));
    assert!(i.address.is_unspecified());
    assert_eq!(cfg.peers[1].local_asn, Some(9));
    assert_eq!(cfg.peers[3].vrf.as_deref(), Some("red"));
    assert!(cfg.warnings[3].message.contains("VRF"));
}

#[test]
fn unused_fields_and_dangling_names() {
    let text = doc("IPAddressPool", "p", "addresses: [10.0.0.0/24]")
        + &doc("IPAddressPool", "quiet", "addresses: [10.0.1.0/24]")
        + &doc(
            "BGPPeer",
            "r",
            "myASN: 1\npeerASN: 2\npeerAddress: 10.1.0.1",
        )
        + &doc(
            "BGPAdvertisement",
            "a",
            "ipAddressPools: [p, later]\npeers: [r, gone]\nserviceSelectors:\n- matchLabels: {app: x}",
        )
        + &doc("BFDProfile", "echo", "echoMode: true")
        + &doc(
            "L2Advertisement",
            "l2",
            "ipAddressPoolSelectors:\n- matchLabels: {none: here}",
        );
    let cfg = config(&text);
    assert_eq!(
        warnings(&cfg),
        [
            triple("BFDProfile", "echo", "spec.echoMode"),
            triple("BGPAdvertisement", "a", "spec.peers[1]"),
            triple("BGPAdvertisement", "a", "spec.ipAddressPools[1]"),
            triple("L2Advertisement", "l2", "spec"),
            triple("IPAddressPool", "quiet", "metadata.name"),
        ]
    );
    let msg = |i: usize| cfg.warnings[i].message.as_str();
    assert!(msg(0).contains("not supported"), "{}", msg(0));
    assert!(msg(1).contains("\"gone\""), "{}", msg(1));
    assert!(msg(2).contains("\"later\""), "{}", msg(2));
    assert!(msg(3).contains("no pool"), "{}", msg(3));
    assert!(msg(4).contains("allocated but not announced"), "{}", msg(4));
    // The advertisement still applies to p, with both peer names kept, and
    // its serviceSelectors are kept (applied, so no warning).
    assert_eq!(cfg.pools[0].advertisements[0].peers, ["r", "gone"]);
    let app_x = NodeSelector {
        match_labels: [("app".to_string(), "x".to_string())].into(),
        match_expressions: Vec::new(),
    };
    assert_eq!(cfg.pools[0].advertisements[0].service_selectors, [app_x]);
    assert!(
        cfg.warnings
            .iter()
            .all(|w| !w.field.contains("serviceSelectors"))
    );
    assert!(cfg.pools[1].advertisements.is_empty());
}

#[test]
fn no_advertisement_selector_means_every_pool_and_labels_select() {
    let pool = |name: &str, addr: &str, labels: &str| {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec: {{addresses: [{addr}]}}\n"
        )
    };
    let text = pool("a", "10.0.0.0/24", "zone: x")
        + &pool("b", "10.0.1.0/24", "zone: y")
        + &pool("c", "10.0.2.0/24", "")
        + &doc("BGPAdvertisement", "all", "localPref: 5")
        + &doc(
            "BGPAdvertisement",
            "some",
            "localPref: 5\nipAddressPools: [c]\nipAddressPoolSelectors:\n- matchExpressions:\n  - {key: zone, operator: In, values: [x]}",
        );
    let cfg = config(&text);
    let counts: Vec<(&str, usize)> = cfg
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.advertisements.len()))
        .collect();
    assert_eq!(counts, [("a", 2), ("b", 1), ("c", 2)]);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}
