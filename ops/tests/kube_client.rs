//! Building a client from a kubeconfig file (no server needed: nothing is sent).

use std::path::PathBuf;

const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: secret-token
contexts:
- name: lab
  context: {cluster: lab, user: admin, namespace: ns-from-file}
current-context: lab
";

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrolb-ops-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn from_a_given_file() {
    let path = temp_file("kubeconfig", KUBECONFIG);
    let client = ferrolb_ops::client(Some(&path)).await.unwrap();
    assert_eq!(client.default_namespace(), "ns-from-file");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn missing_or_bad_file_names_the_path() {
    let missing = std::env::temp_dir().join("ferrolb-ops-no-such-kubeconfig");
    let Err(err) = ferrolb_ops::client(Some(&missing)).await else {
        panic!("a client from a missing file")
    };
    assert!(
        err.to_string().contains("ferrolb-ops-no-such-kubeconfig"),
        "{err}"
    );

    let bad = temp_file("bad-kubeconfig", "current-context: nowhere\n");
    let Err(err) = ferrolb_ops::client(Some(&bad)).await else {
        panic!("a client from a kubeconfig without clusters")
    };
    assert!(err.to_string().contains("bad-kubeconfig"), "{err}");
    let _ = std::fs::remove_dir_all(bad.parent().unwrap());
}
