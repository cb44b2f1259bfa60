//! `ferrolb convert`: a v0.12 ConfigMap → metallb.io custom resources that the
//! custom-resource front end reads back as the same configuration, and the
//! command line end to end (convert, then `ferrolb validate` the output).
//!
//! The round trips need the custom-resource front end
//! (`Config::from_resources`, helper cfg); the YAML checks do not.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use ferrolb_config::Config;
use ferrolb_config::crs::{self, Resources, Secrets};

/// The valid documents of config/tests/valid.rs (kept in step by hand: a copy,
/// so that the config crate's tests stay as they are), and a few more.
const VALID: &[&str] = &[
    "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 64501\n  my-asn: 64500\n\
     address-pools:\n- name: default\n  protocol: bgp\n  addresses:\n  - 192.168.10.0/24\n",
    "address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n  - 192.168.1.240-192.168.1.250\n",
    "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 64501\n  my-asn: 64500\n\
     address-pools:\n- name: default\n  protocol: bgp\n  addresses:\n  - 198.51.100.0/24\n\
     \x20 bgp-advertisements:\n  - aggregation-length: 32\n    localpref: 100\n    communities:\n    - no-advertise\n\
     \x20 - aggregation-length: 24\n\
     bgp-communities:\n  no-advertise: 65535:65282\n",
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
    "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 2\n  hold-time: 3.9s\n",
    "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 2\n  keepalive-time: 1m\n",
    "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, peer-port: 0}\n",
    "address-pools:\n\
     - {name: a, protocol: layer2, addresses: [10.0.0.0/31, 10.0.0.2-10.0.0.2, 10.0.0.8/29]}\n\
     - {name: b, protocol: bgp, addresses: [\"fc00::/64\", \"fc01::1-fc01::ff\"]}\n",
    "address-pools:\n- {name: a, protocol: layer2, addresses: [10.0.0.7/24]}\n",
    "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2}\n\
     - {peer-address: 10.0.0.2, peer-asn: 1, my-asn: 2}\n\
     address-pools:\n\
     - {name: a, protocol: bgp, addresses: [10.0.0.0/24]}\n\
     - {name: b, protocol: bgp, addresses: [10.0.1.0-10.0.1.10]}\n\
     - {name: c, protocol: layer2, addresses: [\"fc00::/64\"]}\n",
    "address-pools:\n- {name: all, protocol: bgp, addresses: [\"::/0\"]}\n",
    "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 2\n  password: 12345\n\
     \x20 node-selectors:\n  - match-labels: {bgp: true, rack: 7}\n",
    "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0-10.0.0.9]\n\
     \x20 bgp-advertisements: [{aggregation-length: 29}, {aggregation-length: 30}]\n",
    "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0/24, \"fc00::/120\"]\n\
     \x20 bgp-advertisements: [{aggregation-length: 24, aggregation-length-v6: 120}]\n",
    "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, ebgp-multihop: yes}\n\
     address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24], auto-assign: off, avoid-buggy-ips: On}\n",
    // ferrolb's `graceful-restart` key → BGPPeer.enableGracefulRestart.
    "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, graceful-restart: true}\n\
     - {peer-address: 10.0.0.2, peer-asn: 1, my-asn: 2, graceful-restart: false}\n",
    "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  bgp-advertisements: [{}, {localpref: 0}]\n",
    "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24], bgp-advertisements: [{}]}\n\
     - {name: b, protocol: bgp, addresses: [10.0.1.0/24], bgp-advertisements: [{}]}\n",
    "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 0xFC00\n  my-asn: 64_522\n  peer-port: 0o263\n\
     \x20 password: 0012\n  node-selectors:\n  - match-labels: {rack: 1.50, on: off}\n\
     address-pools:\n- name: 007\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n  auto-assign: N\n\
     \x20 bgp-advertisements:\n  - {localpref: +100, communities: [1]}\n\
     bgp-communities:\n  1: \"65535:65281\"\n",
    "peers:\n- &p {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, password: ~, hold-time: null}\n\
     - {peer-address: 10.0.0.2, peer-asn: 1, my-asn: 2}\n---\n",
    // More than nine of a kind: names are zero-padded so name order is source order.
    "peers:\n- {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2}\n- {peer-address: 10.0.0.2, peer-asn: 1, my-asn: 2}\n\
     - {peer-address: 10.0.0.3, peer-asn: 1, my-asn: 2}\n- {peer-address: 10.0.0.4, peer-asn: 1, my-asn: 2}\n\
     - {peer-address: 10.0.0.5, peer-asn: 1, my-asn: 2}\n- {peer-address: 10.0.0.6, peer-asn: 1, my-asn: 2}\n\
     - {peer-address: 10.0.0.7, peer-asn: 1, my-asn: 2}\n- {peer-address: 10.0.0.8, peer-asn: 1, my-asn: 2}\n\
     - {peer-address: 10.0.0.9, peer-asn: 1, my-asn: 2}\n- {peer-address: 10.0.0.10, peer-asn: 1, my-asn: 2}\n\
     - {peer-address: 10.0.0.11, peer-asn: 9, my-asn: 2, password: \"a: b # c\"}\n",
];

/// The ConfigMap examples shipped in manifests/examples.
fn shipped_configmaps() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name.starts_with("config-") || name.starts_with("metallb-")) && name.ends_with(".yaml")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), text)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 6, "{out:?}");
    out
}

fn all_inputs() -> Vec<(String, String)> {
    let mut all = shipped_configmaps();
    all.extend(
        VALID
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("VALID[{i}]"), t.to_string())),
    );
    all
}

/// What the conversion keeps: everything but the peers' names (ConfigMap
/// peers have none) and the warnings (the custom-resource front end warns
/// about fields ferrolb does not act on, e.g. L2 advertisements).
/// Pools compare in name order: the custom-resource front end reads them in
/// name order, the ConfigMap front end in document order.
fn comparable(mut cfg: Config) -> Config {
    for p in &mut cfg.peers {
        p.name = None;
    }
    cfg.warnings.clear();
    // ebgp-multihop is dropped for iBGP peers (MetalLB's resources refuse it;
    // it changes nothing there).
    for p in &mut cfg.peers {
        if p.my_asn == p.peer_asn {
            p.ebgp_multihop = false;
        }
    }
    cfg.pools.sort_by(|a, b| a.name.cmp(&b.name));
    cfg
}

/// A summary line with its per-pool address counts sorted (they follow the
/// pools' order, which is name order for custom resources).
fn summary_modulo_pool_order(line: &str) -> String {
    let Some((head, tail)) = line.trim_end().rsplit_once(", ") else {
        return line.trim_end().to_string();
    };
    match tail.strip_suffix(" addresses") {
        Some(counts) => {
            let mut counts: Vec<&str> = counts.split('+').collect();
            counts.sort();
            format!("{head}, {} addresses", counts.join("+"))
        }
        None => line.trim_end().to_string(),
    }
}

/// Every output is YAML whose documents are metallb.io objects in the namespace,
/// with unique names per kind (checked with another YAML reader, serde_yaml).
#[test]
fn output_is_yaml_of_metallb_objects() {
    for (name, text) in all_inputs() {
        let converted = crs::configmap_to_resources(&text, Some("lb-ns"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut seen = std::collections::BTreeSet::new();
        let mut n = 0;
        for doc in serde_yaml::Deserializer::from_str(&converted.yaml) {
            let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", converted.yaml));
            let api = v["apiVersion"].as_str().unwrap();
            assert!(api.starts_with("metallb.io/v1beta"), "{name}: {api}");
            let kind = v["kind"].as_str().unwrap().to_string();
            assert_eq!(v["metadata"]["namespace"].as_str(), Some("lb-ns"), "{name}");
            let obj = v["metadata"]["name"].as_str().unwrap().to_string();
            assert!(seen.insert((kind, obj)), "{name}: duplicate object");
            n += 1;
        }
        assert_eq!(n, converted.objects, "{name}");
        let cfg = Config::parse_document(&text).unwrap();
        let ads: usize = cfg.pools.iter().map(|p| p.advertisements.len()).sum();
        let l2s: usize = cfg.pools.iter().map(|p| p.l2_advertisements.len()).sum();
        let community = usize::from(!cfg.communities.is_empty());
        assert_eq!(
            n,
            cfg.peers.len() + cfg.pools.len() + ads + l2s + community,
            "{name}"
        );
    }
}

/// ConfigMap → custom resources → the custom-resource front end gives the
/// configuration the ConfigMap front end gives.
#[test]
fn round_trip_gives_the_same_config() {
    for (name, text) in all_inputs() {
        let expected = Config::parse_document(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let converted = crs::configmap_to_resources(&text, None).unwrap();
        let mut resources = Resources::new();
        let others = resources
            .add_yaml("converted.yaml", &converted.yaml)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", converted.yaml));
        assert!(others.is_empty(), "{name}: {others:?}");
        let got = Config::from_resources(&resources, Secrets::Ignore)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", converted.yaml));
        assert_eq!(
            comparable(got),
            comparable(expected),
            "{name}:\n{}",
            converted.yaml
        );
    }
}

fn temp_path(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "ferrolb-convert-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn ferrolb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `ferrolb convert FILE -o OUT`, then `ferrolb validate OUT`: valid, with the
/// summary line `ferrolb validate FILE` prints.
#[test]
fn convert_then_validate_the_output() {
    for (name, _) in shipped_configmaps() {
        let before = ferrolb(&["validate", &name]);
        assert_eq!(before.status.code(), Some(0), "{name}: {before:?}");
        let summary = stdout(&before);

        let out = temp_path("crs.yaml");
        let conv = ferrolb(&["convert", &name, "-o", out.to_str().unwrap()]);
        assert_eq!(conv.status.code(), Some(0), "{name}: {conv:?}");
        assert!(
            stdout(&conv).is_empty(),
            "{name}: -o writes nothing on stdout"
        );
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(
            written
                .starts_with("# metallb.io custom resources converted by `ferrolb convert` from ")
        );

        let after = ferrolb(&["validate", out.to_str().unwrap()]);
        assert_eq!(after.status.code(), Some(0), "{name}: {after:?}\n{written}");
        let last = stdout(&after)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            summary_modulo_pool_order(&last),
            summary_modulo_pool_order(&summary),
            "{name}: {}",
            stdout(&after)
        );
        // Every other line is a warning.
        for line in stdout(&after).lines().filter(|l| *l != last) {
            assert!(line.starts_with("warning: "), "{name}: {line}");
        }
        std::fs::remove_file(out).ok();
    }
}

/// Stdout by default, `--namespace`, the source comment, and the exit codes.
#[test]
fn convert_command_line() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let file = dir.join("metallb-layer2.yaml");
    let out = ferrolb(&["convert", file.to_str().unwrap(), "--namespace", "lb"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "# metallb.io custom resources converted by `ferrolb convert` from ConfigMap metallb-system/config.\n"
        ),
        "{text}"
    );
    assert!(text.contains("kind: L2Advertisement\n"), "{text}");
    assert!(!text.contains("namespace: metallb-system"), "{text}");
    assert!(text.contains("  namespace: lb\n"), "{text}");

    // Invalid: errors as validate words them, on stderr, exit 1.
    let bad = temp_path("bad.yaml");
    std::fs::write(
        &bad,
        "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 0\n",
    )
    .unwrap();
    let out = ferrolb(&["convert", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("line 4: peers[0].my-asn: must not be 0\n"),
        "{err}"
    );
    std::fs::remove_file(bad).ok();

    // Unreadable: exit 2.
    let out = ferrolb(&["convert", "/nonexistent/ferrolb/config.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // A pool renamed for Kubernetes: a note on stderr.
    let renamed = temp_path("renamed.yaml");
    std::fs::write(
        &renamed,
        "address-pools:\n- {name: My_Pool, protocol: layer2, addresses: [10.0.0.0/24]}\n",
    )
    .unwrap();
    let out = ferrolb(&["convert", renamed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("  name: my-pool\n"));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("pool \"My_Pool\" becomes IPAddressPool \"my-pool\""),
        "{out:?}"
    );
    std::fs::remove_file(renamed).ok();
}
