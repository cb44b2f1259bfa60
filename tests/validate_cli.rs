//! `ferrolb validate` as a process: exit codes, summary, every error, manifests, stdin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn temp_file(content: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "ferrolb-validate-{}-{}.yaml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, content).unwrap();
    path
}

fn validate(arg: &str, stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["validate", arg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const VALID: &str = "peers:\n- peer-address: 172.17.0.1\n  peer-asn: 64512\n  my-asn: 64522\n\
                     address-pools:\n- name: default\n  protocol: bgp\n  addresses: [172.17.254.0/24]\n\
                     - name: l2\n  protocol: layer2\n  addresses: [172.17.253.10-172.17.253.20]\n";

const INVALID: &str = "peers:\n- peer-address: 172.17.0.1\n  peer-asn: 64512\n  my-asn: 0\n\
                       address-pools:\n- name: default\n  protocol: bgp\n  addresses:\n  - 10.0.0.300/24\n  - 10.0.0.0/24\n\
                       - name: other\n  protocol: layer2\n  addresses: [10.0.0.5-10.0.0.9]\n";

#[test]
fn valid_file_prints_summary_and_exits_0() {
    let path = temp_file(VALID);
    let out = validate(path.to_str().unwrap(), None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        "valid: 1 peer, 2 pools (1 bgp, 1 layer2), 256+11 addresses\n"
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn invalid_file_prints_every_error_and_exits_1() {
    let path = temp_file(INVALID);
    let out = validate(path.to_str().unwrap(), None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stdout(&out),
        "line 4: peers[0].my-asn: must not be 0\n\
         line 9: address-pools[0].addresses[0]: \"10.0.0.300/24\" is not a CIDR or an IP range\n\
         line 13: address-pools[1].addresses[0]: \"10.0.0.5-10.0.0.9\" overlaps \"10.0.0.0/24\" at address-pools[0].addresses[1] (pool \"default\")\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 errors"));
    std::fs::remove_file(path).ok();
}

#[test]
fn configmap_manifest_is_accepted_with_manifest_lines() {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let manifest = |body: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: metallb-system\n  name: config\ndata:\n  config: |\n{}",
            indent(body)
        )
    };
    let ok = temp_file(&manifest(VALID));
    let out = validate(ok.to_str().unwrap(), None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).starts_with("valid: 1 peer, 2 pools"));

    let bad = temp_file(&manifest(INVALID));
    let out = validate(bad.to_str().unwrap(), None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The config starts on manifest line 8, so config line 4 is manifest line 11.
    assert!(
        stdout(&out).starts_with("line 11: peers[0].my-asn: must not be 0\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stdout(&out).lines().count(), 3);
    std::fs::remove_file(ok).ok();
    std::fs::remove_file(bad).ok();
}

#[test]
fn stdin_dash() {
    let out = validate("-", Some(VALID));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = validate("-", Some("bogus: 1\n"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).starts_with("line 1: bogus: unknown key \"bogus\""));
}

#[test]
fn unreadable_file_exits_2() {
    let out = validate("/nonexistent/ferrolb/config.yaml", None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read /nonexistent/ferrolb/config.yaml"),
        "{err}"
    );
}

#[test]
fn shipped_examples_validate() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let out = validate(path.to_str().unwrap(), None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            stdout(&out)
        );
    }
}

// ---- Several files, custom resources (need the custom-resource front end) ----

fn validate_all(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .arg("validate")
        .args(args)
        .output()
        .unwrap()
}

const POOL_AND_PEER: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: a\n  namespace: metallb-system\nspec:\n  addresses:\n  - 10.0.0.0/24\n---\n\
apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: p\n  namespace: metallb-system\nspec:\n  myASN: 64500\n  peerASN: 64501\n  peerAddress: 10.0.0.1\n---\n\
apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: ad\n  namespace: metallb-system\nspec:\n  ipAddressPools: [a]\n";

#[test]
fn custom_resources_validate_with_the_configmap_summary() {
    let path = temp_file(POOL_AND_PEER);
    let out = validate(path.to_str().unwrap(), None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        "valid: 1 peer, 1 pool (1 bgp, 0 layer2), 256 addresses\n"
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn errors_in_two_objects_are_both_reported_with_file_and_line() {
    let text = POOL_AND_PEER
        .replace("  - 10.0.0.0/24\n", "  - 10.0.0.300/24\n")
        .replace("peerAddress: 10.0.0.1", "peerAddress: 10.0.0.999");
    let path = temp_file(&text);
    let file = path.to_str().unwrap();
    let out = validate(file, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let got = stdout(&out);
    assert!(
        got.contains(&format!(
            "{file}:8: IPAddressPool/a: spec.addresses[0]: \"10.0.0.300/24\" is not a CIDR or an IP range\n"
        )),
        "{got}"
    );
    assert!(
        got.contains(&format!(
            "{file}:18: BGPPeer/p: spec.peerAddress: \"10.0.0.999\" is not an IP address\n"
        )),
        "{got}"
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn a_configmap_file_and_a_custom_resource_file() {
    let cm = temp_file(VALID);
    let crs = temp_file(POOL_AND_PEER);
    let (cm, crs) = (cm.to_str().unwrap(), crs.to_str().unwrap());
    let out = validate_all(&[cm, crs]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!(
            "{cm}: valid: 1 peer, 2 pools (1 bgp, 1 layer2), 256+11 addresses\n\
             custom resources: valid: 1 peer, 1 pool (1 bgp, 0 layer2), 256 addresses\n"
        )
    );
    // An invalid ConfigMap among them: its errors, named by file; exit 1.
    let bad = temp_file(INVALID);
    let bad = bad.to_str().unwrap();
    let out = validate_all(&[bad, crs]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).starts_with(&format!("{bad}:4: peers[0].my-asn: must not be 0\n")),
        "{}",
        stdout(&out)
    );
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    for f in [cm, crs, bad] {
        std::fs::remove_file(f).ok();
    }
}

#[test]
fn an_unknown_kind_is_an_error() {
    let text = format!(
        "{POOL_AND_PEER}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
    );
    let path = temp_file(&text);
    let file = path.to_str().unwrap();
    let out = validate(file, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!(
            "{file}:28: web: unknown kind \"Deployment\" (expected a metallb.io kind, ConfigMap or Secret)\n"
        )
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn a_secret_in_a_second_file_satisfies_password_secret() {
    let crs = temp_file(&POOL_AND_PEER.replace(
        "  peerAddress: 10.0.0.1\n",
        "  peerAddress: 10.0.0.1\n  passwordSecret:\n    name: bgp-pw\n",
    ));
    let secret = |ty: &str| {
        temp_file(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bgp-pw\n  namespace: metallb-system\n\
             type: {ty}\ndata:\n  password: c2VjcmV0\n"
        ))
    };
    let good = secret("kubernetes.io/basic-auth");
    let crs_s = crs.to_str().unwrap();
    let summary = "valid: 1 peer, 1 pool (1 bgp, 0 layer2), 256 addresses";

    // Without the Secret: valid, with a note that it was not checked.
    let out = validate(crs_s, None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).starts_with("note: Secret \"bgp-pw\""),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).ends_with(&format!("{summary}\n")),
        "{}",
        stdout(&out)
    );

    // With it, in another file: checked, no note.
    let out = validate_all(&[crs_s, good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), format!("{summary}\n"));

    // A Secret of the wrong type is an error naming the peer.
    let opaque = secret("Opaque");
    let out = validate_all(&[crs_s, opaque.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("BGPPeer/p"), "{}", stdout(&out));
    for f in [crs, good, opaque] {
        std::fs::remove_file(f).ok();
    }
}
