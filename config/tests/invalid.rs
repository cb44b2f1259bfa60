//! Invalid documents: each error's path and line, and that all errors are collected.

use ferrolb_config::{Config, ConfigError, ErrorKind};

/// Parse, expect failure, return (line, path) of every error.
fn errors(text: &str) -> Vec<ConfigError> {
    match Config::parse(text) {
        Ok(c) => panic!("expected errors, got {c:?}\n--- document ---\n{text}"),
        Err(e) => e.0,
    }
}

fn where_(text: &str) -> Vec<(Option<usize>, String)> {
    errors(text).into_iter().map(|e| (e.line, e.path)).collect()
}

const PEER: &str = "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 64512\n  my-asn: 64522\n";

/// A one-peer document with `extra` lines appended to the peer (lines 5..).
fn peer_with(extra: &str) -> String {
    format!("{PEER}{extra}")
}

/// A document with a BGP pool `a` holding `addrs` and `extra` lines (from line 5).
fn pool_with(addrs: &str, extra: &str) -> String {
    format!("address-pools:\n- name: a\n  protocol: bgp\n  addresses: [{addrs}]\n{extra}")
}

#[test]
fn table_of_single_errors() {
    // (document, line, path, part of the message)
    let cases: Vec<(String, usize, &str, &str)> = vec![
        // Unknown key at each level.
        ("bogus: 1\n".into(), 1, "bogus", "unknown key \"bogus\""),
        (peer_with("  bogus: 1\n"), 5, "peers[0].bogus", "unknown key"),
        (
            peer_with("  node-selectors:\n  - match-label: {a: b}\n"),
            6,
            "peers[0].node-selectors[0].match-label",
            "unknown key",
        ),
        (
            peer_with("  node-selectors:\n  - match-expressions:\n    - {key: a, operator: In, values: [b], value: c}\n"),
            7,
            "peers[0].node-selectors[0].match-expressions[0].value",
            "unknown key",
        ),
        (pool_with("10.0.0.0/24", "  cidr: [10.0.1.0/24]\n"), 5, "address-pools[0].cidr", "unknown key"),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - aggregation-length: 32\n    local-pref: 100\n"),
            7,
            "address-pools[0].bgp-advertisements[0].local-pref",
            "unknown key",
        ),
        // MetalLB's pre-0.7 key names are unknown keys too.
        ("communities: {a: \"1:1\"}\n".into(), 1, "communities", "unknown key"),
        (peer_with("  bfd-profile: p1\n"), 5, "peers[0].bfd-profile", "non existing bfd profile \"p1\""),
        // BFD profiles (MetalLB's FRR-mode ranges).
        ("bfd-profiles:\n- receive-interval: 100\n".into(), 2, "bfd-profiles[0].name", "is required"),
        ("bfd-profiles:\n- name: a\n  receive-interval: 9\n".into(), 3, "bfd-profiles[0].receive-interval", "expected an integer in 10..=60000"),
        ("bfd-profiles:\n- name: a\n  transmit-interval: 60001\n".into(), 3, "bfd-profiles[0].transmit-interval", "expected an integer in 10..=60000"),
        ("bfd-profiles:\n- name: a\n  detect-multiplier: 1\n".into(), 3, "bfd-profiles[0].detect-multiplier", "expected an integer in 2..=255"),
        ("bfd-profiles:\n- name: a\n  echo-interval: 5\n".into(), 3, "bfd-profiles[0].echo-interval", "expected an integer in 10..=60000"),
        ("bfd-profiles:\n- name: a\n  minimum-ttl: 255\n".into(), 3, "bfd-profiles[0].minimum-ttl", "expected an integer in 1..=254"),
        ("bfd-profiles:\n- name: a\n  echo-mode: \"yes\"\n".into(), 3, "bfd-profiles[0].echo-mode", "expected a boolean"),
        ("bfd-profiles:\n- name: a\n  echo: true\n".into(), 3, "bfd-profiles[0].echo", "unknown key"),
        ("bfd-profiles:\n- name: a\n- name: a\n".into(), 3, "bfd-profiles[1].name", "duplicate bfd profile name \"a\""),
        // Peers.
        ("peers:\n- peer-asn: 1\n  my-asn: 2\n".into(), 2, "peers[0].peer-address", "is required"),
        ("peers:\n- peer-address: \"\"\n  peer-asn: 1\n  my-asn: 2\n".into(), 2, "peers[0].peer-address", "is required"),
        ("peers:\n- peer-address: 10.0.0.1\n  my-asn: 2\n".into(), 2, "peers[0].peer-asn", "is required"),
        ("peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n".into(), 2, "peers[0].my-asn", "is required"),
        ("peers:\n- peer-address: 10.0.0.1\n  peer-asn: 0\n  my-asn: 2\n".into(), 3, "peers[0].peer-asn", "must not be 0"),
        ("peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 0\n".into(), 4, "peers[0].my-asn", "must not be 0"),
        ("peers:\n- peer-address: 10.0.0.1\n  peer-asn: -1\n  my-asn: 2\n".into(), 3, "peers[0].peer-asn", "invalid value"),
        ("peers:\n- peer-address: 10.0.0.1\n  peer-asn: 4294967296\n  my-asn: 2\n".into(), 3, "peers[0].peer-asn", "invalid value"),
        ("peers:\n- peer-address: 10.0.0.300\n  peer-asn: 1\n  my-asn: 2\n".into(), 2, "peers[0].peer-address", "\"10.0.0.300\" is not an IP address"),
        (peer_with("  peer-port: 65536\n"), 5, "peers[0].peer-port", "invalid value"),
        (peer_with("  hold-time: 1s\n"), 5, "peers[0].hold-time", "hold time \"1s\" must be 0 or at least 3s"),
        (peer_with("  hold-time: 2s\n"), 5, "peers[0].hold-time", "hold time"),
        (peer_with("  hold-time: 2.9s\n"), 5, "peers[0].hold-time", "hold time"),
        (peer_with("  hold-time: 90\n"), 5, "peers[0].hold-time", "\"90\" is not a duration"),
        (peer_with("  hold-time: 1d\n"), 5, "peers[0].hold-time", "\"1d\" is not a duration"),
        (peer_with("  hold-time: -90s\n"), 5, "peers[0].hold-time", "\"-90s\" must not be negative"),
        (peer_with("  keepalive-time: 91s\n"), 5, "peers[0].keepalive-time", "keepalive time \"91s\" must not exceed"),
        (peer_with("  hold-time: 9s\n  keepalive-time: 10s\n"), 6, "peers[0].keepalive-time", "keepalive time"),
        (peer_with("  hold-time: 0s\n  keepalive-time: 1s\n"), 6, "peers[0].keepalive-time", "keepalive time"),
        (peer_with("  keepalive-time: soon\n"), 5, "peers[0].keepalive-time", "\"soon\" is not a duration"),
        (peer_with("  router-id: 1.2.3\n"), 5, "peers[0].router-id", "\"1.2.3\" is not an IPv4 address"),
        (peer_with("  router-id: \"::1\"\n"), 5, "peers[0].router-id", "\"::1\" is not an IPv4 address"),
        (peer_with("  source-address: nowhere\n"), 5, "peers[0].source-address", "\"nowhere\" is not an IP address"),
        (peer_with("  ebgp-multihop: maybe\n"), 5, "peers[0].ebgp-multihop", "expected a boolean, found \"maybe\""),
        (peer_with("  ebgp-multihop: 1\n"), 5, "peers[0].ebgp-multihop", "invalid type"),
        (peer_with("  node-selectors: {a: b}\n"), 5, "peers[0].node-selectors", "expected a list"),
        (
            peer_with("  node-selectors:\n  - match-expressions:\n    - {key: a, operator: In}\n"),
            7,
            "peers[0].node-selectors[0].match-expressions[0].values",
            "operator In needs at least one value",
        ),
        (
            peer_with("  node-selectors:\n  - match-expressions:\n    - {key: a, operator: NotIn, values: []}\n"),
            7,
            "peers[0].node-selectors[0].match-expressions[0].values",
            "operator NotIn needs",
        ),
        (
            peer_with("  node-selectors:\n  - match-expressions:\n    - key: a\n      operator: Exists\n      values: [b]\n"),
            9,
            "peers[0].node-selectors[0].match-expressions[0].values",
            "operator Exists takes no values",
        ),
        (
            peer_with("  node-selectors:\n  - match-expressions:\n    - {key: a, operator: DoesNotExist, values: [b]}\n"),
            7,
            "peers[0].node-selectors[0].match-expressions[0].values",
            "operator DoesNotExist takes no values",
        ),
        (
            peer_with("  node-selectors:\n  - match-expressions:\n    - key: a\n      operator: in\n      values: [b]\n"),
            8,
            "peers[0].node-selectors[0].match-expressions[0].operator",
            "unknown operator \"in\"",
        ),
        (
            peer_with("  node-selectors:\n  - match-expressions:\n    - {operator: Exists}\n"),
            7,
            "peers[0].node-selectors[0].match-expressions[0].key",
            "is required",
        ),
        (
            format!("{PEER}- peer-address: 10.0.0.1\n  peer-asn: 64512\n  my-asn: 64522\n"),
            5,
            "peers[1]",
            "duplicate peer: identical to peers[0]",
        ),
        // Pools.
        ("address-pools:\n- protocol: bgp\n  addresses: [10.0.0.0/24]\n".into(), 2, "address-pools[0].name", "is required"),
        ("address-pools:\n- name: \"\"\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n".into(), 2, "address-pools[0].name", "is required"),
        ("address-pools:\n- name: a\n  addresses: [10.0.0.0/24]\n".into(), 2, "address-pools[0].protocol", "is required"),
        ("address-pools:\n- name: a\n  protocol: BGP\n  addresses: [10.0.0.0/24]\n".into(), 3, "address-pools[0].protocol", "unknown protocol \"BGP\""),
        ("address-pools:\n- name: a\n  protocol: bgp\n".into(), 2, "address-pools[0].addresses", "is required"),
        ("address-pools:\n- name: a\n  protocol: bgp\n  addresses: []\n".into(), 4, "address-pools[0].addresses", "is required"),
        (pool_with("10.0.0.300/24", ""), 4, "address-pools[0].addresses[0]", "\"10.0.0.300/24\" is not a CIDR or an IP range"),
        (pool_with("10.0.0.0/33", ""), 4, "address-pools[0].addresses[0]", "is not a CIDR"),
        (pool_with("10.0.0.1", ""), 4, "address-pools[0].addresses[0]", "\"10.0.0.1\" is not a CIDR or an IP range"),
        (pool_with("10.0.0.1-", ""), 4, "address-pools[0].addresses[0]", "is not a CIDR"),
        (pool_with("10.0.0.9-10.0.0.1", ""), 4, "address-pools[0].addresses[0]", "\"10.0.0.9-10.0.0.1\": range start is after its end"),
        (pool_with("\"10.0.0.1-fc00::1\"", ""), 4, "address-pools[0].addresses[0]", "\"10.0.0.1-fc00::1\": both ends"),
        (pool_with("\"fc00::9-fc00::1\"", ""), 4, "address-pools[0].addresses[0]", "range start is after"),
        (
            pool_with("10.0.0.0/24", "  addresses: [10.0.1.0/24]\n"),
            2,
            "address-pools[0]",
            "duplicate entry with key \"addresses\"",
        ),
        // Advertisements.
        (
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [10.0.0.0/24]\n  bgp-advertisements:\n  - aggregation-length: 32\n".into(),
            5,
            "address-pools[0].bgp-advertisements",
            "bgp-advertisements are not allowed in a layer2 pool",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - aggregation-length: 33\n"),
            6,
            "address-pools[0].bgp-advertisements[0].aggregation-length",
            "aggregation length 33 is out of range 0..=32",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - aggregation-length: -1\n"),
            6,
            "address-pools[0].bgp-advertisements[0].aggregation-length",
            "aggregation length -1 is out of range",
        ),
        (
            pool_with("\"fc00::/64\"", "  bgp-advertisements:\n  - aggregation-length-v6: 129\n"),
            6,
            "address-pools[0].bgp-advertisements[0].aggregation-length-v6",
            "aggregation length 129 is out of range 0..=128",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - aggregation-length: 23\n"),
            6,
            "address-pools[0].bgp-advertisements[0].aggregation-length",
            "aggregation length 23 is shorter than prefix length 24 of pool entry \"10.0.0.0/24\"",
        ),
        (
            pool_with("10.0.0.0-10.0.0.9", "  bgp-advertisements:\n  - aggregation-length: 28\n"),
            6,
            "address-pools[0].bgp-advertisements[0].aggregation-length",
            "aggregation length 28 is shorter than prefix length 29",
        ),
        (
            pool_with("\"fc00::/64\"", "  bgp-advertisements:\n  - aggregation-length-v6: 48\n"),
            6,
            "address-pools[0].bgp-advertisements[0].aggregation-length-v6",
            "aggregation length 48 is shorter than prefix length 64",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - communities: [no-export]\n"),
            6,
            "address-pools[0].bgp-advertisements[0].communities[0]",
            "\"no-export\" is not a community value nor an alias defined in bgp-communities",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - communities: [\"65536:1\"]\n"),
            6,
            "address-pools[0].bgp-advertisements[0].communities[0]",
            "\"65536:1\" is not a BGP community",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - communities: [\"1:2:3\"]\n"),
            6,
            "address-pools[0].bgp-advertisements[0].communities[0]",
            "\"1:2:3\" is not a BGP community",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - communities: [\"large:1:2\"]\n"),
            6,
            "address-pools[0].bgp-advertisements[0].communities[0]",
            "\"large:1:2\" is not a large BGP community",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - communities: [\"large:1:2:4294967296\"]\n"),
            6,
            "address-pools[0].bgp-advertisements[0].communities[0]",
            "is not a large BGP community",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - communities:\n    - \"1:1\"\n    - \"1:1\"\n"),
            8,
            "address-pools[0].bgp-advertisements[0].communities[1]",
            "duplicate community \"1:1\"",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - {}\n  - {}\n"),
            7,
            "address-pools[0].bgp-advertisements[1]",
            "duplicate advertisement: written the same as address-pools[0].bgp-advertisements[0]",
        ),
        (
            pool_with(
                "10.0.0.0/24",
                "  bgp-advertisements:\n  - {aggregation-length: 32, localpref: 100, communities: [\"1:1\", \"2:2\"]}\n\
                 \x20 - {aggregation-length: 24}\n\
                 \x20 - {communities: [\"1:1\", \"2:2\"], localpref: 100, aggregation-length: 32}\n",
            ),
            8,
            "address-pools[0].bgp-advertisements[2]",
            "written the same as address-pools[0].bgp-advertisements[0]",
        ),
        (
            // MetalLB compares the decoded values: 0x20 is 32.
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - aggregation-length: 32\n  - aggregation-length: 0x20\n"),
            7,
            "address-pools[0].bgp-advertisements[1]",
            "duplicate advertisement",
        ),
        (
            pool_with("10.0.0.0/24", "  bgp-advertisements:\n  - localpref: -5\n"),
            6,
            "address-pools[0].bgp-advertisements[0].localpref",
            "invalid value",
        ),
        // Aliases.
        ("bgp-communities:\n  a: \"1:65536\"\n".into(), 2, "bgp-communities.a", "\"1:65536\" is not a BGP community"),
        ("bgp-communities:\n  a: large:1\n".into(), 2, "bgp-communities.a", "is not a large BGP community"),
        // Syntax.
        ("peers: [\n".into(), 2, "", ""),
        ("peers: 3\n".into(), 1, "peers", "expected a list"),
        ("- a\n- b\n".into(), 1, "", "invalid type: sequence"),
    ];
    let mut failures = Vec::new();
    for (doc, line, path, msg) in &cases {
        let errs = match Config::parse(doc) {
            Ok(_) => {
                failures.push(format!("no error for:\n{doc}"));
                continue;
            }
            Err(e) => e.0,
        };
        let ok = errs.len() == 1
            && errs[0].line == Some(*line)
            && errs[0].path == *path
            && errs[0].kind.to_string().contains(msg);
        if !ok {
            failures.push(format!(
                "expected one error at line {line} {path:?} containing {msg:?}, got:\n{}\n--- for ---\n{doc}",
                errs.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn display_format() {
    let text = "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n\
                - name: b\n  protocol: bgp\n  addresses:\n  - 10.0.0.300/24\n";
    let e = Config::parse(text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 8: address-pools[1].addresses[0]: \"10.0.0.300/24\" is not a CIDR or an IP range"
    );
    assert!(matches!(e.0[0].kind, ErrorKind::InvalidAddresses(_)));
}

#[test]
fn overlaps_v4_v6_cidr_and_range_mixed() {
    let text = r#"
address-pools:
- name: a
  protocol: bgp
  addresses:
  - 10.0.0.0/24
  - fc00::/120
- name: b
  protocol: layer2
  addresses:
  - 10.0.0.128/25
  - 10.0.1.0-10.0.1.10
  - 10.0.0.255-10.0.1.0
  - fc00::ff-fc00::1ff
- name: c
  protocol: bgp
  addresses:
  - 10.0.1.10/32
  - 10.0.2.0/24
  - 10.0.2.100-10.0.2.110
  - "::/0"
"#;
    let errs = errors(text);
    let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 11: address-pools[1].addresses[0]: \"10.0.0.128/25\" overlaps \"10.0.0.0/24\" at address-pools[0].addresses[0] (pool \"a\")",
            "line 13: address-pools[1].addresses[2]: \"10.0.0.255-10.0.1.0\" overlaps \"10.0.0.0/24\" at address-pools[0].addresses[0] (pool \"a\")",
            "line 14: address-pools[1].addresses[3]: \"fc00::ff-fc00::1ff\" overlaps \"fc00::/120\" at address-pools[0].addresses[1] (pool \"a\")",
            "line 18: address-pools[2].addresses[0]: \"10.0.1.10/32\" overlaps \"10.0.1.0-10.0.1.10\" at address-pools[1].addresses[1] (pool \"b\")",
            // Within one pool too (MetalLB checks every CIDR against all earlier ones).
            "line 20: address-pools[2].addresses[2]: \"10.0.2.100-10.0.2.110\" overlaps \"10.0.2.0/24\" at address-pools[2].addresses[1] (pool \"c\")",
            "line 21: address-pools[2].addresses[3]: \"::/0\" overlaps \"fc00::/120\" at address-pools[0].addresses[1] (pool \"a\")",
        ]
    );
    // Adjacent ranges and different families do not overlap.
    Config::parse(
        "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24, \"::/0\"]}\n\
         - {name: b, protocol: bgp, addresses: [10.0.1.0-10.0.1.0, 0.0.0.0-9.255.255.255]}\n",
    )
    .unwrap();
}

#[test]
fn duplicate_pool_names() {
    let text = "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24]}\n\
                - {name: a, protocol: layer2, addresses: [10.0.1.0/24]}\n";
    assert_eq!(
        errors(text)[0].to_string(),
        "line 3: address-pools[1].name: duplicate pool name \"a\" (first defined at address-pools[0].name)"
    );
}

#[test]
fn duplicate_peers_follow_metallb() {
    let base = "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw}\n";
    let with = |second: &str| format!("{base}- {{{second}}}\n");
    // MetalLB rejects a peer only when every parsed field equals an earlier peer's.
    let e = Config::parse(&with(
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw",
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 3: peers[1]: duplicate peer: identical to peers[0]"
    );
    for same in [
        // Written differently, parsed the same.
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw, hold-time: 90s, peer-port: 179",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw, peer-port: 0, keepalive-time: 30s",
        "peer-address: \"::ffff:10.0.0.1\", peer-asn: 0x1, my-asn: 2, password: pw, ebgp-multihop: no",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw, node-selectors: [{}]",
    ] {
        assert_eq!(
            where_(&with(same)),
            [(Some(3), "peers[1]".to_string())],
            "{same}"
        );
    }
    // Differing in one field only: a peer of its own, accepted.
    for other in [
        "peer-address: 10.0.0.1, peer-asn: 5, my-asn: 2, password: pw",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 3, password: pw",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: other",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw, hold-time: 9s",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw, peer-port: 1179",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw, ebgp-multihop: true",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw, router-id: 1.1.1.1",
        "peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: pw, node-selectors: [{match-labels: {rack: b}}]",
    ] {
        let cfg = Config::parse(&with(other)).unwrap_or_else(|e| panic!("{other}: {e}"));
        assert_eq!(cfg.peers.len(), 2, "{other}");
    }
    // Selectors compare as the requirements they become: order inside one selector
    // does not matter, and a label is not an `In` expression.
    let sel = |s: &str| {
        format!(
            "peers:\n- {{peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, node-selectors: [{{match-labels: {{a: x}}, \
             match-expressions: [{{key: b, operator: Exists}}, {{key: c, operator: In, values: [y]}}]}}]}}\n\
             - {{peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, node-selectors: [{s}]}}\n"
        )
    };
    assert_eq!(
        where_(&sel(
            "{match-expressions: [{key: c, operator: In, values: [y]}, {key: b, operator: Exists}], match-labels: {a: x}}"
        )),
        [(Some(3), "peers[1]".to_string())]
    );
    let cfg = Config::parse(&sel(
        "{match-expressions: [{key: a, operator: In, values: [x]}, {key: b, operator: Exists}, {key: c, operator: In, values: [y]}]}",
    ))
    .unwrap();
    assert_eq!(cfg.peers.len(), 2);
}

#[test]
fn unknown_keys_name_the_allowed_keys_at_every_level() {
    let text = r#"bogus: 1
peers:
- peer-address: 10.0.0.1
  peer-asn: 1
  my-asn: 2
  peer-adress: 10.0.0.2
  node-selectors:
  - match-label: {a: b}
    match-expressions:
    - {key: a, operator: Exists, value: x}
address-pools:
- name: a
  protocol: bgp
  addresses: [10.0.0.0/24]
  avoid-buggy-ip: true
  bgp-advertisements:
  - aggregation-length: 32
    community: [no-export]
bgp-communities: {}
bfd-profiles:
- name: p
  echo: true
"#;
    let got: Vec<String> = errors(text).iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 1: bogus: unknown key \"bogus\" (expected one of: peers, address-pools, bgp-communities, bfd-profiles)",
            "line 6: peers[0].peer-adress: unknown key \"peer-adress\" (expected one of: peer-address, peer-asn, \
             my-asn, peer-port, hold-time, keepalive-time, router-id, source-address, password, ebgp-multihop, node-selectors, \
             bfd-profile, graceful-restart)",
            "line 8: peers[0].node-selectors[0].match-label: unknown key \"match-label\" (expected one of: match-labels, match-expressions)",
            "line 10: peers[0].node-selectors[0].match-expressions[0].value: unknown key \"value\" (expected one of: key, operator, values)",
            "line 15: address-pools[0].avoid-buggy-ip: unknown key \"avoid-buggy-ip\" (expected one of: name, protocol, \
             addresses, auto-assign, avoid-buggy-ips, bgp-advertisements)",
            "line 18: address-pools[0].bgp-advertisements[0].community: unknown key \"community\" (expected one of: \
             aggregation-length, aggregation-length-v6, localpref, communities)",
            "line 22: bfd-profiles[0].echo: unknown key \"echo\" (expected one of: name, receive-interval, \
             transmit-interval, detect-multiplier, echo-interval, echo-mode, passive-mode, minimum-ttl)",
        ]
    );
    let e = &errors(text)[0];
    assert_eq!(
        e.kind,
        ErrorKind::UnknownKey {
            key: "bogus".into(),
            expected: "peers, address-pools, bgp-communities, bfd-profiles".into()
        }
    );
}

#[test]
fn wrong_yaml_types_at_nested_paths() {
    let text = "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 2\n  node-selectors:\n\
                \x20 - match-expressions:\n    - key: a\n      operator: In\n      values:\n        x: y\n\
                address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  bgp-advertisements:\n\
                \x20 - localpref: \"100\"\n    aggregation-length: 24.0\n  - [32]\n  auto-assign: \"false\"\n";
    let got: Vec<String> = errors(text).iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 9: peers[0].node-selectors[0].match-expressions[0].values: invalid type: mapping, expected a list",
            "line 16: address-pools[0].bgp-advertisements[0].localpref: invalid type: string \"100\", expected an integer",
            "line 17: address-pools[0].bgp-advertisements[0].aggregation-length: invalid type: float `24.0`, expected an integer",
            "line 18: address-pools[0].bgp-advertisements[1]: invalid type: sequence, expected a bgp advertisement (mapping)",
            "line 19: address-pools[0].auto-assign: expected a boolean, found \"false\" (a quoted value is a string: write the boolean unquoted)",
        ]
    );
}

#[test]
fn yaml_level_errors() {
    // A repeated key is reported at its mapping; both documents of a stream at once are not a config.
    assert_eq!(
        errors("peers: []\npeers: []\n")[0].to_string(),
        "line 1: duplicate entry with key \"peers\""
    );
    assert_eq!(
        errors("bgp-communities:\n  a: \"1:1\"\n  a: \"1:2\"\n")[0].to_string(),
        "line 1: bgp-communities: duplicate entry with key \"a\""
    );
    assert_eq!(
        errors("peers: []\n---\naddress-pools: []\n")[0].to_string(),
        "line 3: a second YAML document: the config is one document (no `---` inside)"
    );
    // Syntax errors name the line where the parser stopped.
    let e = &errors("peers:\n  - peer-address: 10.0.0.1\n   my-asn: 2\n")[0];
    assert_eq!((e.line, e.path.as_str()), (Some(3), ""));
    assert!(
        e.to_string().starts_with("line 3: YAML syntax error: "),
        "{e}"
    );
    // An unknown tag makes a string (as in yaml.v2), which an integer field refuses.
    assert_eq!(
        errors("peers:\n- {peer-address: 10.0.0.1, peer-asn: !x 1, my-asn: 2}\n")[0].to_string(),
        "line 2: peers[0].peer-asn: invalid type: string \"1\", expected an integer"
    );
}

#[test]
fn all_errors_are_collected_in_line_order() {
    let text = r#"peers:
- peer-address: 1.2.3.400
  my-asn: 0
  hold-time: 2s
  foo: 1
- peer-address: 10.0.0.2
  peer-asn: 1
  my-asn: 2
  router-id: fc00::1
address-pools:
- name: a
  protocol: bgp
  addresses: [10.0.0.0/24, 10.0.0.300/24]
  bgp-advertisements:
  - aggregation-length: 16
    communities: [no-export, "1:70000"]
- name: a
  protocol: layer2
  addresses: [10.0.0.5-10.0.0.9]
  bgp-advertisements: [{}]
- name: c
  protocol: ospf
  addresses: []
  extra: true
"#;
    assert_eq!(
        where_(text),
        [
            (Some(2), "peers[0].peer-address".to_string()),
            (Some(2), "peers[0].peer-asn".to_string()),
            (Some(3), "peers[0].my-asn".to_string()),
            (Some(4), "peers[0].hold-time".to_string()),
            (Some(5), "peers[0].foo".to_string()),
            (Some(9), "peers[1].router-id".to_string()),
            (Some(13), "address-pools[0].addresses[1]".to_string()),
            (
                Some(15),
                "address-pools[0].bgp-advertisements[0].aggregation-length".to_string()
            ),
            (
                Some(16),
                "address-pools[0].bgp-advertisements[0].communities[0]".to_string()
            ),
            (
                Some(16),
                "address-pools[0].bgp-advertisements[0].communities[1]".to_string()
            ),
            (Some(17), "address-pools[1].name".to_string()),
            (Some(19), "address-pools[1].addresses[0]".to_string()),
            (Some(20), "address-pools[1].bgp-advertisements".to_string()),
            (Some(22), "address-pools[2].protocol".to_string()),
            (Some(23), "address-pools[2].addresses".to_string()),
            (Some(24), "address-pools[2].extra".to_string()),
        ]
    );
}

#[test]
fn manifest_errors_carry_manifest_lines() {
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: metallb-system\n  name: config\n\
                    data:\n  config: |\n    address-pools:\n    - name: a\n      protocol: bgp\n      addresses: [10.0.0.300/24]\n";
    let e = Config::parse_document(manifest).unwrap_err();
    assert_eq!(e.0[0].line, Some(11));
    assert_eq!(e.0[0].path, "address-pools[0].addresses[0]");

    let not_cm = "apiVersion: v1\nkind: Secret\nmetadata: {name: config}\n";
    assert_eq!(
        Config::parse_document(not_cm).unwrap_err().to_string(),
        "line 2: kind: not a ConfigMap (kind: Secret)"
    );
    let no_config = "apiVersion: v1\nkind: ConfigMap\ndata:\n  other: x\n";
    assert_eq!(
        Config::parse_document(no_config).unwrap_err().to_string(),
        "line 3: data.config: is required"
    );
}

#[test]
fn manifest_block_lines_map_back() {
    // Comment and blank line inside the block, an indentation indicator, nested data.
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n\
                    data:\n  other: |\n    x\n  config: |2\n\n    # pools\n    address-pools:\n    - name: a\n\
                    \x20     protocol: bgp\n      addresses:\n      - 10.0.0.0/24\n      - 10.0.0.300/24\n      bogus: 1\n";
    let found = ferrolb_config::config_text(manifest).unwrap();
    assert_eq!(found.line_offset, Some(7));
    let e = Config::parse_document(manifest).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 15: address-pools[0].addresses[1]: \"10.0.0.300/24\" is not a CIDR or an IP range\n\
         line 16: address-pools[0].bogus: unknown key \"bogus\" (expected one of: name, protocol, addresses, \
         auto-assign, avoid-buggy-ips, bgp-advertisements)"
    );
    // A folded block does not keep lines: errors come without one.
    let folded = "kind: ConfigMap\ndata:\n  config: >\n    bogus: 1\n";
    let e = Config::parse_document(folded).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bogus: unknown key \"bogus\" (expected one of: peers, address-pools, bgp-communities, bfd-profiles)"
    );
    // Bare text goes through parse_document with its own lines.
    let e = Config::parse_document("peers:\n- {peer-address: 10.0.0.1, my-asn: 2}\n").unwrap_err();
    assert_eq!(e.to_string(), "line 2: peers[0].peer-asn: is required");
    // A config that is not text.
    let e =
        Config::parse_document("kind: ConfigMap\ndata:\n  config:\n    peers: []\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 3: data.config: invalid type: mapping, expected a string"
    );
}
