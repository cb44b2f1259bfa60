//! Invariants shared by the `configmap` and `crs` targets: an accepted
//! configuration, written as `metallb.io` custom resources (what `ferrolb
//! convert` does), reads back through the custom-resource front end as the
//! same configuration.

use ferrolb_config::Config;
use ferrolb_config::crs::{ConvertError, Resources, Secrets, write_resources};

/// The parts of a configuration both front ends give alike: peer names
/// (custom resources only), warnings (named after the object kind) and the
/// order of peers and pools (custom resources come in name order) are
/// dropped; `ebgp-multihop` on an iBGP peer is dropped (MetalLB's resources
/// refuse it there; it changes nothing), as `tests/convert_cli.rs` does.
pub fn comparable(mut cfg: Config) -> Config {
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

/// Write `cfg` as custom resources, read them back, compare.
pub fn round_trip(cfg: &Config) {
    let (yaml, _, renamed) = match write_resources(cfg, "fuzz", "") {
        Ok(w) => w,
        // What custom resources cannot say is refused with a reason, not
        // written: pool names no object name can be made of, peers the
        // ConfigMap keeps apart but that are one session twice as BGPPeers,
        // a community alias without a name.
        Err(
            ConvertError::Unnameable(_)
            | ConvertError::NameClash { .. }
            | ConvertError::SamePeer { .. }
            | ConvertError::UnnamedCommunity(_),
        ) => return,
        Err(e) => panic!("write_resources of a valid config: {e}"),
    };
    let mut expected = cfg.clone();
    for r in &renamed {
        for p in expected.pools.iter_mut().filter(|p| p.name == r.from) {
            p.name = r.to.clone();
        }
    }
    let mut resources = Resources::new();
    let others = resources
        .add_yaml("written.yaml", &yaml)
        .unwrap_or_else(|e| panic!("written resources do not parse: {e}\n{yaml}"));
    assert!(others.is_empty(), "{others:?}\n{yaml}");
    let got = Config::from_resources(&resources, Secrets::Ignore)
        .unwrap_or_else(|e| panic!("written resources are invalid: {e}\n{yaml}"));
    assert_eq!(comparable(got), comparable(expected), "\n{yaml}");
}
