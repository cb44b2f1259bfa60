//! Starts the cached kube-apiserver v1.20.2 (see scripts/kube-apiserver) and checks
//! `/version` over HTTPS with the static admin token. Skips when not built / not root.

use std::process::Command;

use ferrolb_testlab::kube::KubeApiServer;

#[test]
fn kube_apiserver_version() -> anyhow::Result<()> {
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    eprintln!(
        "kube-apiserver at {} ready in {:?} ms, kubeconfig {}",
        api.server_url(),
        api.ready_ms(),
        api.kubeconfig_path().display()
    );
    let out = Command::new("curl")
        .args(["-sSk", "--max-time", "10", "-H"])
        .arg(format!("Authorization: Bearer {}", api.token()))
        .arg(format!("{}/version", api.server_url()))
        .output()?;
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["gitVersion"], "v1.20.2", "unexpected /version: {v}");
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "20");

    // The token is a cluster admin: an RBAC-protected list works, no token is 401/403.
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {}", api.token()))
        .arg(format!("{}/api/v1/namespaces", api.server_url()))
        .output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let pids = api.pids();
    drop(api);
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z")),
            "pid {pid} still running after drop"
        );
    }
    Ok(())
}
