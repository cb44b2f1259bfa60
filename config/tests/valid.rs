//! Valid documents: parsed values and MetalLB's defaults.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ferrolb_config::{
    AddrRange, BfdProfile, BgpAdvertisement, Community, Config, Protocol, SelectorOperator,
};

fn parse(text: &str) -> Config {
    match Config::parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected valid, got:\n{e}\n--- document ---\n{text}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const STD: fn(u16, u16) -> u32 = |a, b| u32::from(a) << 16 | u32::from(b);

#[test]
fn empty_documents_are_empty_configs() {
    for text in [
        "",
        "\n",
        "# nothing\n",
        "peers:\naddress-pools:\n",
        "{}",
        "peers: []\n",
    ] {
        assert_eq!(parse(text), Config::default(), "{text:?}");
    }
}

#[test]
fn metallb_bgp_example_with_defaults() {
    let cfg = parse(
        "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 64501\n  my-asn: 64500\n\
         address-pools:\n- name: default\n  protocol: bgp\n  addresses:\n  - 192.168.10.0/24\n",
    );
    let p = &cfg.peers[0];
    assert_eq!(p.address, ip("10.0.0.1"));
    assert_eq!((p.peer_asn, p.my_asn, p.port), (64501, 64500, 179));
    assert_eq!(p.hold_time, Duration::from_secs(90));
    assert_eq!(p.keepalive_time, Duration::from_secs(30));
    assert_eq!(p.router_id, None);
    assert_eq!(p.source_address, None);
    assert_eq!(p.password, None);
    assert!(!p.ebgp_multihop);
    assert!(p.node_selectors.is_empty());
    assert!(p.selects_node(&labels(&[])));
    assert!(!p.is_ibgp());

    let pool = &cfg.pools[0];
    assert_eq!(pool.name, "default");
    assert_eq!(pool.protocol(), Some(Protocol::Bgp));
    assert_eq!(
        pool.ranges,
        [AddrRange::new(ip("192.168.10.0"), ip("192.168.10.255")).unwrap()]
    );
    assert_eq!(pool.cidrs, ["192.168.10.0/24".parse().unwrap()]);
    assert!(pool.auto_assign);
    assert!(!pool.avoid_buggy_ips);
    // MetalLB's default advertisement for a BGP pool without bgp-advertisements.
    assert_eq!(pool.advertisements, [BgpAdvertisement::default()]);
    assert_eq!(pool.advertisements[0].aggregation_length, 32);
    assert_eq!(pool.advertisements[0].aggregation_length_v6, 128);
    assert_eq!(pool.advertisements[0].local_pref, None);
    assert_eq!(pool.size(), 256);
    assert_eq!(cfg.pool_for(ip("192.168.10.77")).unwrap().name, "default");
    assert!(cfg.pool_for(ip("192.168.11.1")).is_none());
    assert_eq!(
        cfg.summary(),
        "valid: 1 peer, 1 pool (1 bgp, 0 layer2), 256 addresses"
    );
}

#[test]
fn metallb_layer2_example() {
    let cfg = parse(
        "address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n  - 192.168.1.240-192.168.1.250\n",
    );
    assert!(cfg.peers.is_empty());
    let pool = &cfg.pools[0];
    assert_eq!(pool.protocol(), Some(Protocol::Layer2));
    assert!(pool.advertisements.is_empty());
    assert_eq!(pool.size(), 11);
    assert_eq!(
        pool.cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["192.168.1.240/29", "192.168.1.248/31", "192.168.1.250/32"]
    );
    assert!(pool.contains(ip("192.168.1.240")));
    assert!(pool.contains(ip("192.168.1.250")));
    assert!(!pool.contains(ip("192.168.1.251")));
    assert!(!pool.contains(ip("::1")));
}

#[test]
fn metallb_advertisement_example_resolves_aliases() {
    let cfg = parse(
        "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 64501\n  my-asn: 64500\n\
         address-pools:\n- name: default\n  protocol: bgp\n  addresses:\n  - 198.51.100.0/24\n\
         \x20 bgp-advertisements:\n  - aggregation-length: 32\n    localpref: 100\n    communities:\n    - no-advertise\n\
         \x20 - aggregation-length: 24\n\
         bgp-communities:\n  no-advertise: 65535:65282\n",
    );
    let ads = &cfg.pools[0].advertisements;
    assert_eq!(ads.len(), 2);
    assert_eq!(ads[0].aggregation_length, 32);
    assert_eq!(ads[0].local_pref, Some(100));
    assert_eq!(ads[0].communities, [STD(65535, 65282)]);
    assert_eq!(ads[1].aggregation_length, 24);
    assert_eq!(ads[1].aggregation_length_v6, 128);
    assert!(ads[1].communities.is_empty());
    assert_eq!(
        ads[1].prefix_for(ip("198.51.100.10")),
        "198.51.100.0/24".parse().unwrap()
    );
    assert_eq!(
        ads[0].prefix_for(ip("198.51.100.10")),
        "198.51.100.10/32".parse().unwrap()
    );
    assert_eq!(
        cfg.communities["no-advertise"],
        Community::Standard(STD(65535, 65282))
    );
}

#[test]
fn every_field() {
    let cfg = parse(
        r#"
peers:
- peer-address: 10.0.0.1
  peer-asn: 64512
  my-asn: 64512
  peer-port: 1179
  source-address: 10.0.0.2
  hold-time: 1m30s
  keepalive-time: 500ms
  router-id: 1.2.3.4
  password: "yourPassword"
  ebgp-multihop: true
  node-selectors:
  - match-labels:
      kubernetes.io/hostname: prod-01
    match-expressions:
    - key: kubernetes.io/arch
      operator: In
      values: [amd64, arm]
  - match-expressions:
    - {key: rack, operator: NotIn, values: [slow]}
    - {key: bgp, operator: Exists}
    - {key: drain, operator: DoesNotExist}
- peer-address: "fc00::1"
  peer-asn: 4200000000
  my-asn: 4200000001
  hold-time: 0
  keepalive-time: 0s
address-pools:
- name: my-ip-space
  protocol: bgp
  addresses:
  - 192.168.10.0/24
  - 192.168.9.1 - 192.168.9.5
  - fc00:f853:ccd:e799::/124
  avoid-buggy-ips: true
  auto-assign: false
  bgp-advertisements:
  - aggregation-length: 31
    aggregation-length-v6: 124
    localpref: 4294967295
    communities: [65535:65282, no-export, large:64512:1:2, big, "0:0"]
bgp-communities:
  no-export: 65535:65281
  big: large:1:2:3
"#,
    );
    let p = &cfg.peers[0];
    assert_eq!(p.port, 1179);
    assert_eq!(p.source_address, Some(ip("10.0.0.2")));
    assert_eq!(p.hold_time, Duration::from_secs(90));
    assert_eq!(p.keepalive_time, Duration::from_millis(500));
    assert_eq!(p.router_id, Some("1.2.3.4".parse().unwrap()));
    assert_eq!(p.password.as_deref(), Some("yourPassword"));
    assert!(p.ebgp_multihop);
    assert!(p.is_ibgp());
    assert_eq!(p.node_selectors.len(), 2);
    assert_eq!(
        p.node_selectors[0].match_labels["kubernetes.io/hostname"],
        "prod-01"
    );
    assert_eq!(
        p.node_selectors[0].match_expressions[0].operator,
        SelectorOperator::In
    );
    assert_eq!(
        p.node_selectors[0].match_expressions[0].values,
        ["amd64", "arm"]
    );
    assert_eq!(
        p.node_selectors[1].match_expressions[1].operator,
        SelectorOperator::Exists
    );

    // Selectors are ORed; inside one, everything is ANDed.
    let prod_amd = labels(&[
        ("kubernetes.io/hostname", "prod-01"),
        ("kubernetes.io/arch", "amd64"),
    ]);
    let prod_x86 = labels(&[
        ("kubernetes.io/hostname", "prod-01"),
        ("kubernetes.io/arch", "386"),
    ]);
    let bgp_fast = labels(&[("bgp", "yes"), ("rack", "fast")]);
    let bgp_slow = labels(&[("bgp", "yes"), ("rack", "slow")]);
    let bgp_norack = labels(&[("bgp", "")]);
    let bgp_drain = labels(&[("bgp", ""), ("drain", "1")]);
    assert!(p.selects_node(&prod_amd));
    assert!(!p.selects_node(&prod_x86));
    assert!(p.selects_node(&bgp_fast));
    assert!(!p.selects_node(&bgp_slow));
    assert!(p.selects_node(&bgp_norack));
    assert!(!p.selects_node(&bgp_drain));
    assert!(!p.selects_node(&labels(&[])));
    assert_eq!(cfg.peers_for_node(&bgp_fast).count(), 2);

    let q = &cfg.peers[1];
    assert_eq!(q.address, ip("fc00::1"));
    assert_eq!((q.peer_asn, q.my_asn), (4_200_000_000, 4_200_000_001));
    assert_eq!(q.hold_time, Duration::ZERO);
    assert_eq!(q.keepalive_time, Duration::ZERO);

    let pool = &cfg.pools[0];
    assert!(!pool.auto_assign);
    assert!(pool.avoid_buggy_ips);
    assert!(pool.is_buggy(ip("192.168.10.255")));
    assert!(pool.is_buggy(ip("192.168.10.0")));
    assert!(!pool.is_buggy(ip("192.168.10.1")));
    assert_eq!(pool.ranges.len(), 3);
    assert_eq!(
        pool.ranges[1],
        AddrRange::new(ip("192.168.9.1"), ip("192.168.9.5")).unwrap()
    );
    assert!(!pool.ranges[2].is_ipv4());
    assert_eq!(pool.ranges[2].len(), 16);
    assert_eq!(
        pool.cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "192.168.10.0/24",
            "192.168.9.1/32",
            "192.168.9.2/31",
            "192.168.9.4/31",
            "fc00:f853:ccd:e799::/124"
        ]
    );
    assert!(pool.contains(ip("fc00:f853:ccd:e799::f")));
    assert!(!pool.contains(ip("fc00:f853:ccd:e799::10")));
    let ad = &pool.advertisements[0];
    assert_eq!((ad.aggregation_length, ad.aggregation_length_v6), (31, 124));
    assert_eq!(ad.local_pref, Some(u32::MAX));
    assert_eq!(ad.communities, [0, STD(65535, 65281), STD(65535, 65282)]);
    assert_eq!(ad.large_communities, [(1, 2, 3), (64512, 1, 2)]);
    assert_eq!(cfg.communities["big"], Community::Large(1, 2, 3));
    assert_eq!(
        cfg.summary(),
        "valid: 2 peers, 1 pool (1 bgp, 0 layer2), 277 addresses"
    );
}

#[test]
fn timers_follow_metallb() {
    let peer = |extra: &str| {
        let cfg = parse(&format!(
            "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 2\n{extra}"
        ));
        let p = &cfg.peers[0];
        (p.hold_time, p.keepalive_time)
    };
    let s = Duration::from_secs;
    assert_eq!(peer(""), (s(90), s(30)));
    assert_eq!(peer("  hold-time: 3s\n"), (s(3), s(1)));
    assert_eq!(peer("  hold-time: 3m\n"), (s(180), s(60)));
    assert_eq!(
        peer("  hold-time: 9s\n  keepalive-time: 9s\n"),
        (s(9), s(9))
    );
    // Hold time is truncated to whole seconds, like MetalLB.
    assert_eq!(peer("  hold-time: 3.9s\n"), (s(3), s(1)));
    assert_eq!(peer("  hold-time: 500ms\n"), (s(0), s(0)));
    assert_eq!(
        peer("  hold-time: 0s\n  keepalive-time: 0s\n"),
        (s(0), s(0))
    );
    assert_eq!(peer("  keepalive-time: 1m\n"), (s(90), s(60)));
    // A bare integer is a Go duration only when 0 (`hold-time: 0`).
    assert_eq!(peer("  hold-time: 0\n"), (s(0), s(0)));
    // peer-port 0 means the default, as in MetalLB.
    let cfg = parse("peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, peer-port: 0}\n");
    assert_eq!(cfg.peers[0].port, 179);
}

#[test]
fn ranges_and_cidrs_in_both_families() {
    let cfg = parse(
        "address-pools:\n\
         - {name: a, protocol: layer2, addresses: [10.0.0.0/31, 10.0.0.2-10.0.0.2, 10.0.0.8/29]}\n\
         - {name: b, protocol: bgp, addresses: [\"fc00::/64\", \"fc01::1-fc01::ff\"]}\n",
    );
    let a = &cfg.pools[0];
    assert_eq!(
        a.ranges[1],
        AddrRange::new(ip("10.0.0.2"), ip("10.0.0.2")).unwrap()
    );
    assert_eq!(a.size(), 2 + 1 + 8);
    let b = &cfg.pools[1];
    assert_eq!(b.ranges[0].start_u128(), u128::from(ip_v6("fc00::")));
    assert_eq!(b.ranges[1].len(), 255);
    assert_eq!(b.cidrs.len(), 1 + 8);
    assert!(b.contains(ip("fc01::ff")));
    assert!(!b.contains(ip("fc01::")));
    assert_eq!(cfg.pool_for(ip("10.0.0.3")), None);
    assert_eq!(cfg.pool_for(ip("10.0.0.2")).unwrap().name, "a");
}

fn ip_v6(s: &str) -> std::net::Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn cidr_with_host_bits_is_its_network() {
    let cfg = parse("address-pools:\n- {name: a, protocol: layer2, addresses: [10.0.0.7/24]}\n");
    assert_eq!(cfg.pools[0].cidrs, ["10.0.0.0/24".parse().unwrap()]);
}

#[test]
fn summary_counts() {
    let cfg = parse(
        "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2}\n\
         - {peer-address: 10.0.0.2, peer-asn: 1, my-asn: 2}\n\
         address-pools:\n\
         - {name: a, protocol: bgp, addresses: [10.0.0.0/24]}\n\
         - {name: b, protocol: bgp, addresses: [10.0.1.0-10.0.1.10]}\n\
         - {name: c, protocol: layer2, addresses: [\"fc00::/64\"]}\n",
    );
    assert_eq!(
        cfg.summary(),
        "valid: 2 peers, 3 pools (2 bgp, 1 layer2), 256+11+2^64 addresses"
    );
    assert_eq!(cfg.pool("b").unwrap().size(), 11);
    let all = parse("address-pools:\n- {name: all, protocol: bgp, addresses: [\"::/0\"]}\n");
    assert_eq!(
        all.summary(),
        "valid: 0 peers, 1 pool (1 bgp, 0 layer2), 2^128 addresses"
    );
    assert_eq!(cfg.pool_for(ip("fc00::1234")).unwrap().name, "c");
}

#[test]
fn yaml_scalars_that_go_yaml_reads_as_strings() {
    // Label values and passwords written as numbers or booleans are read as text.
    let cfg = parse(
        "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 2\n  password: 12345\n\
         \x20 node-selectors:\n  - match-labels: {bgp: true, rack: 7}\n",
    );
    assert_eq!(cfg.peers[0].password.as_deref(), Some("12345"));
    assert_eq!(cfg.peers[0].node_selectors[0].match_labels["bgp"], "true");
    assert_eq!(cfg.peers[0].node_selectors[0].match_labels["rack"], "7");
}

#[test]
fn range_pool_aggregation_uses_lowest_mask_per_entry() {
    // 10.0.0.0-10.0.0.9 decomposes into /29 + /31: MetalLB accepts any length >= 29.
    let cfg = parse(
        "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0-10.0.0.9]\n\
         \x20 bgp-advertisements: [{aggregation-length: 29}, {aggregation-length: 30}]\n",
    );
    assert_eq!(cfg.pools[0].advertisements.len(), 2);
    // The v4 length does not constrain v6 entries and vice versa.
    parse(
        "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0/24, \"fc00::/120\"]\n\
         \x20 bgp-advertisements: [{aggregation-length: 24, aggregation-length-v6: 120}]\n",
    );
}

#[test]
fn yaml_1_1_booleans_as_go_yaml_reads_them() {
    let cfg = parse(
        "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, ebgp-multihop: yes}\n\
         address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24], auto-assign: off, avoid-buggy-ips: On}\n",
    );
    assert!(cfg.peers[0].ebgp_multihop);
    assert!(!cfg.pools[0].auto_assign);
    assert!(cfg.pools[0].avoid_buggy_ips);
}

#[test]
fn advertisements_written_differently_are_not_duplicates() {
    // MetalLB compares advertisements as written: an absent field is not its default,
    // `communities: []` is not "no communities", and the order of communities counts.
    for (a, b) in [
        ("{}", "{aggregation-length: 32}"),
        ("{}", "{aggregation-length-v6: 128}"),
        ("{}", "{localpref: 0}"),
        ("{}", "{communities: []}"),
        (
            "{communities: [\"1:1\", \"2:2\"]}",
            "{communities: [\"2:2\", \"1:1\"]}",
        ),
        (
            "{aggregation-length: 32}",
            "{aggregation-length: 32, localpref: 100}",
        ),
    ] {
        let cfg = parse(&format!(
            "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  bgp-advertisements: [{a}, {b}]\n"
        ));
        assert_eq!(cfg.pools[0].advertisements.len(), 2, "{a} {b}");
    }
    // The same advertisement in two pools is fine too.
    let cfg = parse(
        "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24], bgp-advertisements: [{}]}\n\
         - {name: b, protocol: bgp, addresses: [10.0.1.0/24], bgp-advertisements: [{}]}\n",
    );
    assert_eq!(cfg.pools.len(), 2);
}

#[test]
fn yaml_1_1_scalars_as_metallb_reads_them() {
    // Integers in Go's notations; text fields keep the scalar exactly as written.
    let cfg = parse(
        "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 0xFC00\n  my-asn: 64_522\n  peer-port: 0o263\n\
         \x20 password: 0012\n  node-selectors:\n  - match-labels: {rack: 1.50, on: off}\n\
         address-pools:\n- name: 007\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  auto-assign: N\n\
         \x20 bgp-advertisements:\n  - {localpref: +100, communities: [1]}\n\
         bgp-communities:\n  1: \"65535:65281\"\n",
    );
    let p = &cfg.peers[0];
    assert_eq!((p.peer_asn, p.my_asn, p.port), (64512, 64522, 179));
    assert_eq!(p.password.as_deref(), Some("0012"));
    assert_eq!(p.node_selectors[0].match_labels["rack"], "1.50");
    assert_eq!(p.node_selectors[0].match_labels["on"], "off");
    assert_eq!(cfg.pools[0].name, "007");
    assert!(!cfg.pools[0].auto_assign);
    assert_eq!(cfg.pools[0].advertisements[0].local_pref, Some(100));
    assert_eq!(
        cfg.pools[0].advertisements[0].communities,
        [STD(65535, 65281)]
    );
    // Null is "not set"; anchors and aliases work; empty trailing documents are ignored.
    let cfg = parse(
        "peers:\n- &p {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: ~, hold-time: null}\n\
         - {peer-address: 10.0.0.2, peer-asn: 1, my-asn: 2}\n---\n",
    );
    assert_eq!(cfg.peers[0].password, None);
    assert_eq!(cfg.peers[0].hold_time, Duration::from_secs(90));
    assert_eq!(cfg.peers.len(), 2);
}

#[test]
fn bfd_profiles_and_a_peers_profile() {
    let c = parse(
        "peers:\n\
         - peer-address: 10.0.0.1\n  peer-asn: 64512\n  my-asn: 64513\n  bfd-profile: fast\n\
         - peer-address: 10.0.0.2\n  peer-asn: 64512\n  my-asn: 64513\n\
         bfd-profiles:\n\
         - name: fast\n  receive-interval: 100\n  transmit-interval: 120\n  detect-multiplier: 4\n  passive-mode: true\n\
         - name: plain\n\
         - name: odd\n  echo-mode: true\n  echo-interval: 70\n  minimum-ttl: 10\n",
    );
    assert_eq!(c.peers[0].bfd_profile.as_deref(), Some("fast"));
    assert_eq!(c.peers[1].bfd_profile, None);
    assert_eq!(
        c.bfd_profiles["fast"],
        BfdProfile {
            receive_interval_ms: 100,
            transmit_interval_ms: 120,
            detect_multiplier: 4,
            passive_mode: true,
            ..BfdProfile::with_defaults("fast")
        }
    );
    assert_eq!(c.bfd_profiles["plain"], BfdProfile::with_defaults("plain"));
    assert!(c.bfd_profiles["odd"].echo_mode);
    // Only "odd" sets what ferrolb does not do: each such field is a warning.
    let fields: Vec<(&str, &str, &str)> = c
        .warnings
        .iter()
        .map(|w| (w.kind.as_str(), w.name.as_str(), w.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("ConfigMap", "config", "bfd-profiles[2].echo-mode"),
            ("ConfigMap", "config", "bfd-profiles[2].echo-interval"),
            ("ConfigMap", "config", "bfd-profiles[2].minimum-ttl"),
        ]
    );
    assert!(
        c.warnings
            .iter()
            .all(|w| w.message.contains("not supported"))
    );
}

#[test]
fn peers_differing_only_in_bfd_profile_are_not_duplicates() {
    let c = parse(
        "peers:\n\
         - {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2}\n\
         - {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, bfd-profile: p}\n\
         bfd-profiles:\n- name: p\n",
    );
    assert_eq!(c.peers.len(), 2);
}

#[test]
fn graceful_restart_key_of_a_peer() {
    let c = parse(
        "peers:\n\
         - {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, graceful-restart: true}\n\
         - {peer-address: 10.0.0.2, peer-asn: 1, my-asn: 2}\n\
         - {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, graceful-restart: false}\n",
    );
    assert!(c.peers[0].graceful_restart);
    assert!(!c.peers[1].graceful_restart, "off by default");
    assert_eq!(
        c.peers.len(),
        3,
        "differing only in graceful-restart: not duplicates"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}
