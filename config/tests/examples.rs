//! Every file in manifests/examples/ is a valid config: a ConfigMap manifest or bare
//! text, or (`crs-*.yaml`) a set of metallb.io custom resources.

use std::path::Path;

use ferrolb_config::{Config, Protocol, config_text};

#[test]
fn every_example_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("manifests/examples exists") {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if is_custom_resources(&path) {
            let mut r = ferrolb_config::crs::Resources::new();
            let name = path.display().to_string();
            r.add_yaml(&name, &text)
                .unwrap_or_else(|e| panic!("{name}:\n{e}"));
            let cfg = Config::from_resources(&r, ferrolb_config::crs::Secrets::Ignore)
                .unwrap_or_else(|e| panic!("{name}:\n{e}"));
            assert!(!cfg.pools.is_empty(), "{name}: no pool");
            seen += 1;
            continue;
        }
        if let Err(e) = Config::parse_document(&text) {
            panic!("{}:\n{e}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} examples found in {}", dir.display());
}

fn is_custom_resources(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("crs-"))
}

#[test]
fn lab_example_matches_the_design() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples/config-lab.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let found = config_text(&text).unwrap();
    assert!(found.from_manifest);
    assert_eq!(found.line_offset, Some(9));
    let cfg = Config::parse_document(&text).unwrap();
    assert_eq!(cfg.peers.len(), 1);
    assert_eq!(cfg.peers[0].address.to_string(), "172.17.0.1");
    assert_eq!((cfg.peers[0].peer_asn, cfg.peers[0].my_asn), (64512, 64522));
    assert_eq!(cfg.pools[0].name, "default");
    assert_eq!(cfg.pools[0].protocol(), Some(Protocol::Bgp));
    assert_eq!(cfg.pools[0].cidrs, ["172.17.254.0/24".parse().unwrap()]);
    assert_eq!(
        cfg.pool_for("172.17.254.1".parse().unwrap())
            .map(|p| p.name.as_str()),
        Some("default")
    );
}

#[test]
fn manifest_forms() {
    // Bare text passes through.
    let bare = config_text("peers: []\n").unwrap();
    assert!(!bare.from_manifest);
    assert_eq!(bare.text, "peers: []\n");
    // Several documents: the ConfigMap is found; a quoted config string loses line numbers.
    let multi = "apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n---\n\
                 apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n\
                 data:\n  config: \"address-pools:\\n- {name: a, protocol: bgp, addresses: [10.0.0.0/33]}\\n\"\n";
    let found = config_text(multi).unwrap();
    assert!(found.from_manifest);
    assert_eq!(found.line_offset, None);
    let e = Config::parse_document(multi).unwrap_err();
    assert_eq!(e.0[0].line, None);
    assert_eq!(e.0[0].path, "address-pools[0].addresses[0]");
}
