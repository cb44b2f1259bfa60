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
        // crs-*.yaml are metallb.io custom resources; `validate` reads them
        // once the custom-resource front end (issue 10) lands.
        let name = path.file_name().unwrap().to_str().unwrap();
        if name.starts_with("crs-") {
            continue;
        }
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
