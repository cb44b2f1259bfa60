//! Inputs the fuzz targets `configmap` and `crs` (fuzz/, `bench/fuzz/run`)
//! found failing, each checked with the targets' invariants: parsing is
//! deterministic, and an accepted configuration, written as custom resources
//! (`ferrolb convert`), either reads back as the same configuration or is
//! refused by the writer with a reason.

use ferrolb_config::Config;
use ferrolb_config::crs::{ConvertError, Resources, Secrets, write_resources};

/// What both front ends give alike (as fuzz/fuzz_targets/common.rs and
/// tests/convert_cli.rs compare): no peer names, warnings or order.
fn comparable(mut cfg: Config) -> Config {
    cfg.warnings.clear();
    for p in &mut cfg.peers {
        p.name = None;
        if p.my_asn == p.peer_asn {
            p.ebgp_multihop = false;
        }
    }
    cfg.peers.sort_by_cached_key(|p| format!("{p:?}"));
    cfg.pools.sort_by(|a, b| a.name.cmp(&b.name));
    cfg
}

/// Written as custom resources and read back: the same configuration, or the
/// writer's refusal.
fn round_trip(cfg: &Config) -> Result<(), ConvertError> {
    let (yaml, _, renamed) = write_resources(cfg, "fuzz", "")?;
    let mut expected = cfg.clone();
    for r in &renamed {
        for p in expected.pools.iter_mut().filter(|p| p.name == r.from) {
            p.name = r.to.clone();
        }
    }
    let mut resources = Resources::new();
    let others = resources
        .add_yaml("written.yaml", &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert!(others.is_empty(), "{others:?}");
    let got = Config::from_resources(&resources, Secrets::Ignore)
        .unwrap_or_else(|e| panic!("written resources are invalid: {e}\n{yaml}"));
    assert_eq!(comparable(got), comparable(expected), "\n{yaml}");
    Ok(())
}

fn configmap(text: &str) -> Result<Config, String> {
    let cfg = Config::parse_document(text);
    assert_eq!(cfg, Config::parse_document(text));
    cfg.map_err(|e| e.to_string())
}

/// Two ConfigMap peers that differ only in their BFD profile (or ASN,
/// password…) are two peers to MetalLB's ConfigMap, but one session twice as
/// `BGPPeer`s: the converter wrote resources the custom-resource front end
/// rejects. It now refuses with a reason.
#[test]
fn configmap_peers_differing_only_in_bfd_profile() {
    let cfg = configmap(
        "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2}\n\
         - {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, bfd-profile: p}\n\
         bfd-profiles:\n- name: p\n",
    )
    .unwrap();
    assert_eq!(cfg.peers.len(), 2);
    assert_eq!(
        round_trip(&cfg),
        Err(ConvertError::SamePeer {
            first: "peer1".into(),
            second: "peer2".into()
        })
    );
    // Different ports (or node selectors) are different sessions: written.
    let cfg = configmap(
        "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2}\n\
         - {peer-address: 10.0.0.1, peer-port: 1179, peer-asn: 1, my-asn: 2, bfd-profile: p}\n\
         bfd-profiles:\n- name: p\n",
    )
    .unwrap();
    assert_eq!(round_trip(&cfg), Ok(()));
}

fn resources(text: &str) -> Result<Config, String> {
    let load = || {
        let mut r = Resources::new();
        r.add_yaml("fuzz.yaml", text).map_err(|e| e.to_string())?;
        Config::from_resources(&r, Secrets::Ignore).map_err(|e| e.to_string())
    };
    let cfg = load();
    assert_eq!(cfg, load());
    cfg
}

const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
                    metadata: {name: internal, namespace: x}\nspec: {addresses: [10.10.0.0/29]}\n";

/// `BGPPeer.spec.localASN` and `spec.interface` (unnumbered peers) were not
/// written by the converter: the read-back peer lost its local ASN, and an
/// interface peer got `peerAddress: 0.0.0.0` beside its interface.
#[test]
fn custom_resource_peers_with_local_asn_and_interface() {
    let cfg = resources(&format!(
        "{POOL}---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: tor, namespace: x}}\n\
         spec: {{myASN: 64512, peerASN: 64513, peerAddress: 10.0.0.1, localASN: 1179}}\n\
         ---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: unnumbered, namespace: x}}\n\
         spec: {{myASN: 64512, dynamicASN: external, interface: eth1}}\n"
    ))
    .unwrap();
    assert_eq!(cfg.peers[0].local_asn, Some(1179));
    assert_eq!(cfg.peers[1].interface.as_deref(), Some("eth1"));
    assert_eq!(round_trip(&cfg), Ok(()));
}

/// A ConfigMap `bgp-communities` alias with an empty key (MetalLB's Go
/// decoder takes a missing key as ""): the converter wrote a `Community` alias
/// with `name: ""`, which the custom-resource front end reads as no name. It
/// now refuses with a reason. An alias whose name holds a line break no longer
/// breaks the comment naming it next to an advertisement's value.
#[test]
fn configmap_community_aliases_with_empty_or_multi_line_names() {
    let cfg = configmap("bgp-communities:\n : &a: \"0:62536\"\n").unwrap();
    assert!(cfg.communities.contains_key(""));
    assert_eq!(
        round_trip(&cfg),
        Err(ConvertError::UnnamedCommunity("0:62536".into()))
    );

    let cfg = configmap(
        "bgp-communities: {\"a\\nb: c\": \"1:2\"}\n\
         address-pools:\n- name: p\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n\
         \x20 bgp-advertisements: [{communities: [\"a\\nb: c\"]}]\n",
    )
    .unwrap();
    assert_eq!(cfg.pools[0].advertisements[0].communities, [1 << 16 | 2]);
    assert_eq!(round_trip(&cfg), Ok(()));
}

/// An `IPAddressPool` with an empty `serviceAllocation` (present, nothing
/// set): the converter wrote `serviceAllocation:` with nothing under it,
/// which reads back as no service allocation at all.
#[test]
fn custom_resource_pool_with_empty_service_allocation() {
    let cfg = resources(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
         metadata: {name: internal, namespace: x}\n\
         spec: {addresses: [10.10.0.0/29], serviceAllocation: {}}\n",
    )
    .unwrap();
    assert!(cfg.pools[0].service_allocation.is_some());
    assert_eq!(round_trip(&cfg), Ok(()));
}
