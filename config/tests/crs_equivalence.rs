//! ConfigMap ↔ custom resources: each ConfigMap example of manifests/examples
//! and its hand-written custom-resource version (tests/crs/equiv/) give the
//! same `Config`, up to what only custom resources have (peer names,
//! warnings) and order (custom resources come in name order).

use std::path::Path;

use ferrolb_config::Config;
use ferrolb_config::crs::{Resources, Secrets};

fn normalise(mut c: Config) -> Config {
    for p in &mut c.peers {
        p.name = None;
    }
    c.peers.sort_by_key(|p| (p.address, p.port));
    c.pools.sort_by(|a, b| a.name.cmp(&b.name));
    c.warnings.clear();
    c
}

#[test]
fn configmap_examples_and_their_custom_resources_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = root.join("../manifests/examples");
    let mut checked = Vec::new();
    for name in [
        "config-lab.yaml",
        "config-lab-split.yaml",
        "metallb-advertisements.yaml",
        "metallb-bgp.yaml",
        "metallb-full.yaml",
        "metallb-layer2.yaml",
    ] {
        let cm = std::fs::read_to_string(examples.join(name)).unwrap();
        let cm = Config::parse_document(&cm).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = root.join("tests/crs/equiv").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut r = Resources::new();
        let others = r.add_yaml(name, &text).unwrap();
        assert!(others.is_empty());
        let crs = Config::from_resources(&r, Secrets::Ignore).unwrap_or_else(|e| panic!("{e}"));
        assert!(!crs.pools.is_empty(), "{name}");
        assert_eq!(normalise(crs), normalise(cm), "{name}");
        checked.push(name);
    }
    assert_eq!(checked.len(), 6);
}
