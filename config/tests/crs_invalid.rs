//! The custom-resource front end on broken sets: each rule broken once → the
//! error, with the object and field path and, for files, the file and line.

use std::collections::BTreeMap;

use ferrolb_config::crs::{PasswordSecret, Resources, Secrets};
use ferrolb_config::{Config, ConfigError, ErrorKind};

/// One document: apiVersion on line 1, kind 2, metadata 3, `spec:` 4, the
/// spec's first line 5.
fn doc(kind: &str, name: &str, spec: &str) -> String {
    let version = if kind == "BGPPeer" {
        "v1beta2"
    } else {
        "v1beta1"
    };
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: metallb.io/{version}\nkind: {kind}\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec:\n{spec}"
    )
}

/// A valid pool and peer, as the first two documents (10 lines), for cases
/// that need something to refer to.
fn base() -> String {
    doc("IPAddressPool", "p", "addresses: [10.0.0.0/24]")
        + "---\n"
        + &doc(
            "BGPPeer",
            "r",
            "myASN: 64512\npeerASN: 64513\npeerAddress: 10.1.0.1",
        )
}

/// Lines `base()` takes, with its `---`.
const BASE: usize = 5 + 1 + 7 + 1;

fn errors_with(text: &str, secrets: Secrets<'_>) -> Vec<ConfigError> {
    let mut r = Resources::new();
    r.add_yaml("set.yaml", text).unwrap();
    match Config::from_resources(&r, secrets) {
        Ok(c) => panic!("accepted:\n{text}\n{c:?}"),
        Err(e) => e.0,
    }
}

/// The set's one error: its path, line and message.
fn error(text: &str) -> (String, Option<usize>, String) {
    let errs = errors_with(text, Secrets::Ignore);
    assert_eq!(errs.len(), 1, "{text}\n{errs:#?}");
    let e = &errs[0];
    assert_eq!(e.file.as_deref(), Some("set.yaml"));
    (e.path.clone(), e.line, e.kind.to_string())
}

fn after_base(d: &str) -> String {
    base() + "---\n" + d
}

#[track_caller]
fn check(text: &str, path: &str, line: usize, words: &str) {
    let (p, l, msg) = error(text);
    assert_eq!((p.as_str(), l), (path, Some(line)), "{msg}");
    assert!(msg.contains(words), "{msg:?} lacks {words:?}");
}

#[test]
fn pools() {
    check(
        &doc("IPAddressPool", "p", "autoAssign: true"),
        "IPAddressPool/p: spec.addresses",
        5,
        "no prefixes",
    );
    check(
        &doc("IPAddressPool", "p", "addresses: []"),
        "IPAddressPool/p: spec.addresses",
        5,
        "no prefixes",
    );
    check(
        &doc(
            "IPAddressPool",
            "p",
            "addresses:\n- 10.0.0.0/24\n- 10.0.0.300/24",
        ),
        "IPAddressPool/p: spec.addresses[1]",
        7,
        "not a CIDR",
    );
    check(
        &doc("IPAddressPool", "p", "addresses: [10.0.0.9-10.0.0.1]"),
        "IPAddressPool/p: spec.addresses[0]",
        5,
        "after its end",
    );
    // Overlap across pools: reported at the later one (name order).
    let text = doc("IPAddressPool", "b", "addresses: [10.0.0.128/25]")
        + "---\n"
        + &doc("IPAddressPool", "a", "addresses: [10.0.0.0/24]");
    check(
        &text,
        "IPAddressPool/b: spec.addresses[0]",
        5,
        "overlaps \"10.0.0.0/24\" at IPAddressPool/a: spec.addresses[0]",
    );
    // Within one pool.
    check(
        &doc(
            "IPAddressPool",
            "p",
            "addresses: [10.0.0.0/24, 10.0.0.5-10.0.0.6]",
        ),
        "IPAddressPool/p: spec.addresses[1]",
        5,
        "overlaps",
    );
    check(
        &doc(
            "IPAddressPool",
            "p",
            "addresses: [10.0.0.0/24]\nautoAssign: \"false\"",
        ),
        "IPAddressPool/p: spec.autoAssign",
        6,
        "quoted",
    );
    check(
        &doc(
            "IPAddressPool",
            "p",
            "addresses: [10.0.0.0/24]\nprotocol: bgp",
        ),
        "IPAddressPool/p: spec.protocol",
        6,
        "unknown key \"protocol\"",
    );
    check(
        &doc(
            "IPAddressPool",
            "p",
            "addresses: [10.0.0.0/24]\nserviceAllocation:\n  namespaces: [a, b, a]",
        ),
        "IPAddressPool/p: spec.serviceAllocation.namespaces[2]",
        7,
        "duplicate definition of namespaces \"a\"",
    );
    check(
        &doc(
            "IPAddressPool",
            "p",
            "addresses: [10.0.0.0/24]\nserviceAllocation:\n  serviceSelectors:\n  - matchExpressions:\n    - {key: app, operator: Is, values: [x]}",
        ),
        "IPAddressPool/p: spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].operator",
        9,
        "unknown operator",
    );
    check(
        &doc(
            "IPAddressPool",
            "p",
            "addresses: [10.0.0.0/24]\nserviceAllocation:\n  serviceSelectors:\n  - matchLabels: {app: x}\n  - matchLabels: {app: x}",
        ),
        "IPAddressPool/p: spec.serviceAllocation.serviceSelectors[1]",
        9,
        "duplicate definition of serviceSelectors",
    );
}

#[test]
fn objects() {
    // The same kind and name twice in the files: at the second.
    let text = doc("IPAddressPool", "p", "addresses: [10.0.0.0/24]")
        + "---\n"
        + &doc("IPAddressPool", "p", "addresses: [10.1.0.0/24]");
    check(
        &text,
        "IPAddressPool/p",
        7,
        "defined twice (first at set.yaml:1)",
    );
    // One namespace for the whole set.
    let text = doc("IPAddressPool", "p", "addresses: [10.0.0.0/24]")
        + "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a, namespace: other}\n";
    check(
        &text,
        "BGPAdvertisement/a: metadata.namespace",
        7,
        "\"other\" is not the namespace of the other objects (\"metallb-system\"",
    );
    check(
        "apiVersion: metallb.io/v1beta2\nkind: IPAddressPool\nmetadata: {name: p}\n",
        "apiVersion",
        1,
        "no version \"v1beta2\"",
    );
    check(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {namespace: x}\n",
        "metadata.name",
        3,
        "without a name",
    );
    check(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspc: {}\n",
        "spc",
        4,
        "unknown field",
    );
    check(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: [1]\n",
        "IPAddressPool/p: spec",
        4,
        "invalid type: sequence",
    );
}

fn peer(spec: &str) -> String {
    after_base(&doc("BGPPeer", "x", spec))
}

const P: &str = "BGPPeer/x: spec";

#[test]
fn peers() {
    let l = BASE + 5;
    let with = |extra: &str| {
        peer(&format!(
            "myASN: 64512\npeerASN: 64600\npeerAddress: 10.2.0.1\n{extra}"
        ))
    };
    check(
        &peer("peerASN: 1\npeerAddress: 10.2.0.1"),
        &format!("{P}.myASN"),
        l,
        "missing local ASN",
    );
    check(
        &peer("myASN: 0\npeerASN: 1\npeerAddress: 10.2.0.1"),
        &format!("{P}.myASN"),
        l,
        "missing local ASN",
    );
    check(
        &peer("myASN: 1\npeerAddress: 10.2.0.1"),
        &format!("{P}.peerASN"),
        l,
        "missing peer ASN and dynamicASN",
    );
    check(
        &peer("myASN: 1\npeerASN: 2\ndynamicASN: external\npeerAddress: 10.2.0.1"),
        &format!("{P}.dynamicASN"),
        l + 2,
        "both peerASN and dynamicASN",
    );
    check(
        &peer("myASN: 1\ndynamicASN: outside\npeerAddress: 10.2.0.1"),
        &format!("{P}.dynamicASN"),
        l + 1,
        "invalid dynamicASN \"outside\"",
    );
    check(
        &peer("myASN: 1\npeerASN: 2"),
        &format!("{P}.peerAddress"),
        l,
        "no peerAddress or interface",
    );
    check(
        &with("interface: eth0"),
        &format!("{P}.interface"),
        l + 3,
        "both peerAddress and interface",
    );
    check(
        &peer("myASN: 1\npeerASN: 2\npeerAddress: 10.2.0.300"),
        &format!("{P}.peerAddress"),
        l + 2,
        "not an IP",
    );
    check(
        &peer("myASN: 64512\npeerASN: 64512\npeerAddress: 10.2.0.1\nebgpMultiHop: true"),
        &format!("{P}.ebgpMultiHop"),
        l + 3,
        "iBGP",
    );
    check(
        &with("holdTime: 2s"),
        &format!("{P}.holdTime"),
        l + 3,
        "must be 0 or at least 3s",
    );
    check(
        &with("keepaliveTime: 500ms"),
        &format!("{P}.keepaliveTime"),
        l + 3,
        "must be 0 or at least 3s",
    );
    check(
        &with("holdTime: 30s\nkeepaliveTime: 40s"),
        &format!("{P}.keepaliveTime"),
        l + 4,
        "must not exceed the hold time",
    );
    check(
        &with("holdTime: 90x"),
        &format!("{P}.holdTime"),
        l + 3,
        "is not a duration",
    );
    check(
        &with("holdTime: 90"),
        &format!("{P}.holdTime"),
        l + 3,
        "invalid type: integer `90`, expected a string",
    );
    check(
        &with("connectTime: 1500ms"),
        &format!("{P}.connectTime"),
        l + 3,
        "whole number of seconds",
    );
    check(
        &with("connectTime: 20h"),
        &format!("{P}.connectTime"),
        l + 3,
        "between 1 second and 65535",
    );
    check(
        &with("routerID: fd00::1"),
        &format!("{P}.routerID"),
        l + 3,
        "not an IPv4",
    );
    check(
        &with("peerPort: 0"),
        &format!("{P}.peerPort"),
        l + 3,
        "1..=16384",
    );
    check(
        &with("password: a\npasswordSecret: {name: s}"),
        &format!("{P}.passwordSecret"),
        l + 4,
        "both password and passwordSecret",
    );
    check(
        &with("passwordSecret: {name: s, namespace: other}"),
        &format!("{P}.passwordSecret.namespace"),
        l + 3,
        "peer's namespace \"metallb-system\"",
    );
    check(
        &with("bfdProfile: nope"),
        &format!("{P}.bfdProfile"),
        l + 3,
        "non existing BFDProfile \"nope\"",
    );
    check(
        &with("vrfName: red"),
        &format!("{P}.vrfName"),
        l + 3,
        "unknown key \"vrfName\"",
    );
    check(
        &peer("myASN: \"64512\"\npeerASN: 1\npeerAddress: 10.2.0.1"),
        &format!("{P}.myASN"),
        l,
        "expected an integer",
    );
    check(
        &peer("myASN: 4294967296\npeerASN: 1\npeerAddress: 10.2.0.1"),
        &format!("{P}.myASN"),
        l,
        "0..=4294967295",
    );
    check(
        &with("nodeSelectors:\n- matchExpressions:\n  - {key: a, operator: In, values: []}"),
        &format!("{P}.nodeSelectors[0].matchExpressions[0].values"),
        l + 5,
        "needs at least one value",
    );
    check(
        &with("nodeSelectors:\n- matchExpressions:\n  - {key: a, operator: In, values: [x, x]}"),
        &format!("{P}.nodeSelectors[0].matchExpressions[0].values[1]"),
        l + 5,
        "duplicate definition of match expression value",
    );
    // Same address, port and node selectors as BGPPeer r: the later one (x) is refused.
    check(
        &peer("myASN: 64512\npeerASN: 64999\npeerAddress: 10.1.0.1"),
        &format!("{P}.peerAddress"),
        l + 2,
        "BGPPeer \"r\" has the same address",
    );
    // v1beta1 objects have v1beta1's fields only.
    let old = after_base(
        "apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: x}\nspec:\n  myASN: 1\n  peerASN: 2\n  peerAddress: 10.2.0.1\n  vrf: red\n",
    );
    check(&old, &format!("{P}.vrf"), l + 3, "unknown key \"vrf\"");
}

#[test]
fn password_secrets() {
    let text =
        peer("myASN: 64512\npeerASN: 64600\npeerAddress: 10.2.0.1\npasswordSecret:\n  name: md5");
    let line = BASE + 5 + 4;
    let path = format!("{P}.passwordSecret.name");
    let one = |secrets: BTreeMap<String, PasswordSecret>| {
        let errs = errors_with(&text, Secrets::Given(&secrets));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].path.as_str(), errs[0].line),
            (path.as_str(), Some(line))
        );
        errs[0].kind.to_string()
    };
    assert!(one(BTreeMap::new()).contains("Secret \"md5\" not found"));
    let secret = |type_: &str, password: Option<&str>| {
        BTreeMap::from([(
            "md5".to_string(),
            PasswordSecret {
                type_: Some(type_.into()),
                password: password.map(|p| p.as_bytes().to_vec()),
                resource_version: None,
            },
        )])
    };
    assert!(one(secret("Opaque", Some("x"))).contains("has type \"Opaque\""));
    assert!(one(secret("kubernetes.io/basic-auth", None)).contains("no key \"password\""));
    // Given and right: the password is the Secret's.
    let mut r = Resources::new();
    r.add_yaml("set.yaml", &text).unwrap();
    let s = secret("kubernetes.io/basic-auth", Some("pw"));
    let cfg = Config::from_resources(&r, Secrets::Given(&s)).unwrap();
    assert_eq!(cfg.peers[1].password.as_deref(), Some("pw"));
    // An empty password is no password (no TCP MD5), as MetalLB.
    let s = secret("kubernetes.io/basic-auth", Some(""));
    let cfg = Config::from_resources(&r, Secrets::Given(&s)).unwrap();
    assert_eq!(cfg.peers[1].password, None);
    assert_eq!(r.password_secrets(), ["md5"]);
}

fn adv(spec: &str) -> String {
    after_base(&doc("BGPAdvertisement", "a", spec))
}

const A: &str = "BGPAdvertisement/a: spec";

#[test]
fn bgp_advertisements() {
    let l = BASE + 5;
    check(
        &adv("aggregationLength: 16"),
        &format!("{A}.aggregationLength"),
        l,
        "shorter than prefix length 24",
    );
    check(
        &adv("aggregationLength: 33"),
        &format!("{A}.aggregationLength"),
        l,
        "out of range 0..=32",
    );
    check(
        &adv("aggregationLength: 0"),
        &format!("{A}.aggregationLength"),
        l,
        "must be in 1..=32",
    );
    check(
        &adv("aggregationLengthV6: 129"),
        &format!("{A}.aggregationLengthV6"),
        l,
        "out of range 0..=128",
    );
    check(
        &adv("communities: [\"65536:1\"]"),
        &format!("{A}.communities[0]"),
        l,
        "is not a BGP community",
    );
    check(
        &adv("communities: [large:1:2]"),
        &format!("{A}.communities[0]"),
        l,
        "not a large BGP community",
    );
    check(
        &adv("communities: [no-export]"),
        &format!("{A}.communities[0]"),
        l,
        "nor the name of an alias",
    );
    check(
        &adv("communities: [\"1:1\", \"1:1\"]"),
        &format!("{A}.communities[1]"),
        l,
        "duplicate definition of community",
    );
    check(
        &adv("ipAddressPools: [p, p]"),
        &format!("{A}.ipAddressPools[1]"),
        l,
        "duplicate definition of ipAddressPools",
    );
    check(
        &adv("peers: [r, r]"),
        &format!("{A}.peers[1]"),
        l,
        "duplicate definition of peers",
    );
    check(
        &adv("localPref: -1"),
        &format!("{A}.localPref"),
        l,
        "0..=4294967295",
    );
    check(
        &adv("aggregationLength: 30\nserviceSelectors:\n- matchLabels: {a: b}"),
        &format!("{A}.serviceSelectors"),
        l + 1,
        "mutually exclusive",
    );
    // Two advertisements of pool p with different LOCAL_PREF for the same
    // prefixes, peers and nodes.
    let two = after_base(&doc("BGPAdvertisement", "a", "localPref: 100"))
        + "---\n"
        + &doc("BGPAdvertisement", "b", "localPref: 200");
    check(
        &two,
        "BGPAdvertisement/b: spec.localPref",
        BASE + 6 + 5,
        "conflicts with 100",
    );
    // …but not when they go to different peers, or announce different prefixes.
    for (a, b) in [
        ("localPref: 100\npeers: [r]", "localPref: 200\npeers: [s]"),
        ("localPref: 100", "localPref: 200\naggregationLength: 25"),
        (
            "localPref: 100\nserviceSelectors:\n- matchLabels: {a: b}",
            "localPref: 200",
        ),
    ] {
        let text = after_base(&doc("BGPAdvertisement", "a", a))
            + "---\n"
            + &doc("BGPAdvertisement", "b", b);
        let mut r = Resources::new();
        r.add_yaml("set.yaml", &text).unwrap();
        let cfg = Config::from_resources(&r, Secrets::Ignore).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.pools[0].advertisements.len(), 2);
    }
    // The aggregation rule counts the shortest prefix of a range's CIDRs.
    let range = doc("IPAddressPool", "p", "addresses: [10.0.0.1-10.0.0.6]")
        + "---\n"
        + &doc("BGPAdvertisement", "a", "aggregationLength: 30");
    check(
        &range,
        &format!("{A}.aggregationLength"),
        6 + 5,
        "prefix length 31",
    );
}

#[test]
fn communities_and_bfd() {
    let c = |spec: &str| after_base(&doc("Community", "c", spec));
    let l = BASE + 5;
    check(
        &c("communities:\n- {name: x, value: \"1:70000\"}"),
        "Community/c: spec.communities[0].value",
        l + 1,
        "is not a BGP community",
    );
    check(
        &c("communities:\n- {value: \"1:7\"}"),
        "Community/c: spec.communities[0].name",
        l + 1,
        "is required",
    );
    let two = after_base(&doc(
        "Community",
        "c",
        "communities:\n- {name: x, value: \"1:7\"}",
    )) + "---\n"
        + &doc(
            "Community",
            "d",
            "communities:\n- {name: x, value: \"1:8\"}",
        );
    check(
        &two,
        "Community/d: spec.communities[0].name",
        BASE + 7 + 6,
        "duplicate definition of community \"x\"",
    );
    let b = |spec: &str| after_base(&doc("BFDProfile", "f", spec));
    check(
        &b("detectMultiplier: 1"),
        "BFDProfile/f: spec.detectMultiplier",
        l,
        "2..=255",
    );
    check(
        &b("receiveInterval: 60001"),
        "BFDProfile/f: spec.receiveInterval",
        l,
        "10..=60000",
    );
    check(
        &b("minimumTtl: 255"),
        "BFDProfile/f: spec.minimumTtl",
        l,
        "1..=254",
    );
    check(
        &b("echoMode: 1"),
        "BFDProfile/f: spec.echoMode",
        l,
        "expected a boolean",
    );
    // Echo mode and IPv6 do not go together.
    let echo = doc("IPAddressPool", "p", "addresses: [fd00::/120]")
        + "---\n"
        + &doc(
            "BGPPeer",
            "r",
            "myASN: 1\npeerASN: 2\npeerAddress: 10.1.0.1\nbfdProfile: f",
        )
        + "---\n"
        + &doc("BFDProfile", "f", "echoMode: true")
        + "---\n"
        + &doc("BGPAdvertisement", "a", "localPref: 1");
    check(&echo, A, 5 + 1 + 8 + 1 + 5 + 1 + 5, "echo mode on");
}

#[test]
fn l2_advertisements() {
    let l = BASE + 5;
    let l2 = |spec: &str| after_base(&doc("L2Advertisement", "l", spec));
    check(
        &l2("interfaces: [eth0, eth0]"),
        "L2Advertisement/l: spec.interfaces[1]",
        l,
        "duplicate definition of interfaces",
    );
    check(
        &l2("nodeSelectors: {a: b}"),
        "L2Advertisement/l: spec.nodeSelectors",
        l,
        "expected a list",
    );
    check(
        &l2("ipAddressPoolSelectors:\n- matchLabels: [x]"),
        "L2Advertisement/l: spec.ipAddressPoolSelectors[0].matchLabels",
        l + 1,
        "expected a mapping",
    );
}

#[test]
fn every_error_is_reported_and_json_errors_have_no_line() {
    let text = doc(
        "IPAddressPool",
        "p",
        "addresses: [10.0.0.0/33]\navoidBuggyIPs: maybe",
    ) + "---\n"
        + &doc("BGPPeer", "r", "peerASN: 1\npeerAddress: x");
    let errs = errors_with(&text, Secrets::Ignore);
    let found: Vec<(&str, Option<usize>)> =
        errs.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        [
            ("IPAddressPool/p: spec.addresses[0]", Some(5)),
            ("IPAddressPool/p: spec.avoidBuggyIPs", Some(6)),
            ("BGPPeer/r: spec.myASN", Some(12)),
            ("BGPPeer/r: spec.peerAddress", Some(13)),
        ]
    );
    assert_eq!(
        errs[0].to_string(),
        "set.yaml:5: IPAddressPool/p: spec.addresses[0]: \"10.0.0.0/33\" is not a CIDR or an IP range"
    );

    let mut r = Resources::new();
    r.add_json(&serde_json::json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "p", "resourceVersion": "3"},
        "spec": {"addresses": ["10.0.0.0/24", 7], "autoAssign": "yes"}
    }))
    .unwrap();
    let errs = Config::from_resources(&r, Secrets::Ignore).unwrap_err().0;
    let found: Vec<(&str, Option<usize>, Option<&str>)> = errs
        .iter()
        .map(|e| (e.path.as_str(), e.line, e.file.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            ("IPAddressPool/p: spec.addresses[1]", None, None),
            ("IPAddressPool/p: spec.autoAssign", None, None),
        ]
    );
    assert!(matches!(errs[0].kind, ErrorKind::Yaml(_)));
}

#[test]
fn yaml_syntax_errors_name_file_and_line() {
    let mut r = Resources::new();
    let text = doc("IPAddressPool", "p", "addresses: [10.0.0.0/24]") + "---\nkind: [\n";
    let errs = r.add_yaml("broken.yaml", &text).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].file.as_deref(), errs[0].line),
        (Some("broken.yaml"), Some(8))
    );
    // The document that parsed is in.
    assert!(r.has_pools());
}
