//! The lab's files agree with each other: lab/topology.json is the one definition;
//! lab/gen derives lab/topology.env (the netns lab), lab/gobgpd-rt01.toml, lab/Vagrantfile
//! and lab/rt01.clab.yml from it. These tests fail when a committed file differs from its
//! generated text, or when the definition disagrees with DESIGN.md's addresses and ASNs,
//! the example ConfigMap or the test harness's reference lab.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn topology() -> Value {
    serde_json::from_str(&read("lab/topology.json")).expect("lab/topology.json parses")
}

fn python3() -> Option<&'static str> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some("python3")
}

#[test]
fn generated_files_are_up_to_date() {
    let Some(py) = python3() else {
        assert!(
            !ferrolb_testlab::in_ci(),
            "python3 missing; CI=true, so this is an error"
        );
        eprintln!("SKIP generated_files_are_up_to_date: python3 not installed");
        return;
    };
    let out = Command::new(py)
        .arg(repo().join("lab/gen"))
        .arg("--check")
        .output()
        .expect("run lab/gen --check");
    assert!(
        out.status.success(),
        "lab/gen --check failed (run lab/gen and commit):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// DESIGN.md's reference lab, spelled out once more on purpose.
#[test]
fn topology_is_the_reference_lab() {
    let t = topology();
    assert_eq!(t["router"]["name"], "rt-01");
    assert_eq!(t["router"]["asn"], 64512);
    assert_eq!(t["router"]["router_id"], "172.17.0.1");
    assert_eq!(t["node_asn"], 64522);
    assert_eq!(t["client"]["addr"], "172.17.1.10");
    assert_eq!(t["master"]["addr"], "172.17.0.10");
    assert_eq!(t["pool"], "172.17.254.0/24");
    assert_eq!(t["service"]["ip"], "172.17.254.1");
    let nodes: Vec<(&str, &str)> = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["addr"].as_str().unwrap()))
        .collect();
    assert_eq!(
        nodes,
        [
            ("k8s-node-01", "172.17.0.21"),
            ("k8s-node-02", "172.17.0.22"),
            ("k8s-node-03", "172.17.0.23")
        ]
    );
    // The Rust harness's RefLab (used by interop tests) builds the same addresses.
    let addrs: Vec<&str> = nodes.iter().map(|n| n.1).collect();
    assert_eq!(addrs, ferrolb_testlab::RefLab::NODE_ADDRS);
}

/// Every address and ASN of the definition appears in each derived file, so a hand edit
/// of one file that lab/gen --check would also catch is reported by name here.
#[test]
fn derived_files_carry_the_addresses_and_asns() {
    let t = topology();
    let mut must: Vec<String> = vec![
        t["router"]["router_id"].as_str().unwrap().into(),
        t["client"]["addr"].as_str().unwrap().into(),
        t["master"]["addr"].as_str().unwrap().into(),
    ];
    for n in t["nodes"].as_array().unwrap() {
        must.push(n["addr"].as_str().unwrap().into());
    }
    for i in t["router"]["interfaces"].as_array().unwrap() {
        must.push(i["addr"].as_str().unwrap().into());
    }
    for f in [
        "lab/topology.env",
        "lab/Vagrantfile",
        "lab/rt01.clab.yml",
        "lab/gobgpd-rt01.toml",
    ] {
        let text = read(f);
        let wanted: Vec<&String> = if f.ends_with(".toml") {
            // gobgpd's config names the router and its neighbors only.
            must.iter()
                .filter(|a| a.starts_with("172.17.0.2") || *a == "172.17.0.1")
                .collect()
        } else {
            must.iter().collect()
        };
        for a in wanted {
            assert!(text.contains(a.as_str()), "{f} lacks {a}");
        }
        assert!(text.contains("64512"), "{f} lacks ASN 64512");
    }
    let toml = read("lab/gobgpd-rt01.toml");
    assert!(toml.contains("as = 64512"));
    assert_eq!(toml.matches("peer-as = 64522").count(), 3);
    assert!(toml.contains("[global.use-multiple-paths.config]\n  enabled = true"));
    let env = read("lab/topology.env");
    assert!(env.contains("LAB_RT_ASN=64512") && env.contains("LAB_NODE_ASN=64522"));
}

/// The lab applies manifests/examples/config-lab.yaml: it must peer with rt-01 as the
/// topology says (lab/gen checks the text too; this goes through the real parser).
#[test]
fn example_config_matches_the_topology() {
    let t = topology();
    let text = read("manifests/examples/config-lab.yaml");
    let cfg = ferrolb_config::Config::parse_document(&text).expect("config-lab.yaml validates");
    assert_eq!(cfg.peers.len(), 1);
    assert_eq!(
        cfg.peers[0].address.to_string(),
        t["router"]["router_id"].as_str().unwrap()
    );
    assert_eq!(
        u64::from(cfg.peers[0].peer_asn),
        t["router"]["asn"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(cfg.peers[0].my_asn),
        t["node_asn"].as_u64().unwrap()
    );
    let svc_ip = t["service"]["ip"].as_str().unwrap().parse().unwrap();
    assert!(cfg.pool_for(svc_ip).is_some());
    assert!(Path::new(&repo().join("lab/up")).exists());
}

/// `lab/up --ha`: the three masters (k8s-master-01 is the plain lab's master) are rt-01's
/// neighbours in lab/gobgpd-rt01-ha.toml next to the nodes, and topology.env carries the
/// VIP and the masters for lab/ha.bash; the plain lab's gobgpd config is unchanged.
#[test]
fn ha_variant_matches_the_topology() {
    let t = topology();
    let ha = &t["ha"];
    assert_eq!(ha["vip"], "172.17.0.100");
    let mut masters = vec![(
        t["master"]["name"].as_str().unwrap(),
        t["master"]["addr"].as_str().unwrap(),
    )];
    masters.extend(
        ha["more_masters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap(), m["addr"].as_str().unwrap())),
    );
    assert_eq!(
        masters,
        [
            ("k8s-master-01", "172.17.0.10"),
            ("k8s-master-02", "172.17.0.11"),
            ("k8s-master-03", "172.17.0.12")
        ]
    );
    let toml = read("lab/gobgpd-rt01-ha.toml");
    let neighbors: Vec<&str> = toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("neighbor-address = "))
        .map(|a| a.trim_matches('"'))
        .collect();
    let mut want: Vec<&str> = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["addr"].as_str().unwrap())
        .collect();
    want.extend(masters.iter().map(|m| m.1));
    assert_eq!(neighbors, want);
    assert_eq!(
        toml.matches(&format!("peer-as = {}", ha["asn"])).count(),
        if ha["asn"] == t["node_asn"] { 6 } else { 3 }
    );
    let plain = read("lab/gobgpd-rt01.toml");
    assert_eq!(plain.matches("neighbor-address").count(), 3);
    assert!(!plain.contains("172.17.0.10\""));
    let env = read("lab/topology.env");
    assert!(env.contains("LAB_HA_VIP=172.17.0.100\n"), "{env}");
    assert!(
        env.contains("LAB_HA_MASTERS=(k8s-master-01 k8s-master-02 k8s-master-03)\n"),
        "{env}"
    );
    assert!(
        env.contains("LAB_HA_MASTER_IPS=(172.17.0.10 172.17.0.11 172.17.0.12)\n"),
        "{env}"
    );
}
