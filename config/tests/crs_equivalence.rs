//! ConfigMap ↔ custom resources: each ConfigMap example of manifests/examples
//! and its custom-resource versions — the shipped `crs-*.yaml` beside it and an
//! independent hand-written one (tests/crs/equiv/) — give the same `Config`, up to what only custom resources have (peer names,
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
    for (name, shipped) in [
        ("config-lab.yaml", "crs-lab.yaml"),
        ("config-lab-split.yaml", "crs-lab-split.yaml"),
        ("metallb-advertisements.yaml", "crs-advertisements.yaml"),
        ("metallb-bgp.yaml", "crs-bgp.yaml"),
        ("metallb-full.yaml", "crs-metallb-full.yaml"),
        ("metallb-layer2.yaml", "crs-layer2.yaml"),
    ] {
        let cm = std::fs::read_to_string(examples.join(name)).unwrap();
        let cm = Config::parse_document(&cm).unwrap_or_else(|e| panic!("{name}: {e}"));
        for path in [
            root.join("tests/crs/equiv").join(name),
            examples.join(shipped),
        ] {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut r = Resources::new();
            let others = r.add_yaml(name, &text).unwrap();
            assert!(others.is_empty(), "{}", path.display());
            let crs = Config::from_resources(&r, Secrets::Ignore)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!crs.pools.is_empty(), "{}", path.display());
            assert_eq!(normalise(crs), normalise(cm.clone()), "{}", path.display());
            checked.push(path);
        }
    }
    assert_eq!(checked.len(), 12);
}
