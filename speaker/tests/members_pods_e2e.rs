//! The speaker-pod watch that seeds the gossip, against a real
//! kube-apiserver: ready speaker pods (by the manifest's labels, in the
//! speaker's namespace) become node name → pod IP:7946; pods not ready,
//! without an IP, with other labels or in another namespace do not count;
//! a deleted pod drops out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, ensure};
use ferrolb_speaker::members::ViewSource;
use ferrolb_speaker::members::cli::MembersOpts;
use ferrolb_speaker::members::speakers::{DEFAULT_SELECTOR, watch};
use ferrolb_testlab::kube::KubeApiServer;
use serde_json::{Value, json};

const NS: &str = "metallb-system";

fn ok(api: &KubeApiServer, method: &str, path: &str, body: &Value) -> Result<()> {
    let r = api.request_json(method, path, body)?;
    ensure!(
        (200..300).contains(&r.status),
        "{method} {path}: {} {}",
        r.status,
        r.body
    );
    Ok(())
}

fn create_pod(api: &KubeApiServer, ns: &str, name: &str, node: &str, labels: Value) -> Result<()> {
    ok(
        api,
        "POST",
        &format!("/api/v1/namespaces/{ns}/pods"),
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "automountServiceAccountToken": false, "containers": [{"name": "speaker", "image": "x"}]},
        }),
    )
}

fn set_status(api: &KubeApiServer, ns: &str, name: &str, ip: &str, ready: bool) -> Result<()> {
    let r = api.request(
        "PATCH",
        &format!("/api/v1/namespaces/{ns}/pods/{name}/status"),
        Some((
            "application/merge-patch+json",
            json!({"status": {
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            }})
            .to_string()
            .as_bytes(),
        )),
    )?;
    ensure!(r.status == 200, "status of {name}: {} {}", r.status, r.body);
    Ok(())
}

fn speaker_labels() -> Value {
    json!({"app.kubernetes.io/name": "ferrolb", "app.kubernetes.io/component": "speaker"})
}

fn want(v: &[(&str, &str)]) -> BTreeMap<String, SocketAddr> {
    v.iter()
        .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
        .collect()
}

#[test]
fn ready_speaker_pods_seed_the_gossip() -> Result<()> {
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    for ns in [NS, "other"] {
        ok(
            &api,
            "POST",
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
        // No controller-manager: the ServiceAccount admission needs `default`.
        ok(
            &api,
            "POST",
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        )?;
    }
    create_pod(&api, NS, "speaker-a", "n1", speaker_labels())?;
    set_status(&api, NS, "speaker-a", "172.17.0.21", true)?;
    create_pod(&api, NS, "speaker-b", "n2", speaker_labels())?;
    set_status(&api, NS, "speaker-b", "172.17.0.22", false)?;
    create_pod(&api, NS, "speaker-c", "n3", speaker_labels())?; // no IP yet
    create_pod(&api, NS, "web", "n4", json!({"app": "web"}))?;
    set_status(&api, NS, "web", "172.17.0.24", true)?;
    create_pod(&api, "other", "speaker-x", "n5", speaker_labels())?;
    set_status(&api, "other", "speaker-x", "172.17.0.25", true)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, mut rx) = tokio::sync::watch::channel(None::<BTreeMap<String, SocketAddr>>);
    let client = rt.block_on(ferrolb_ops::client(Some(api.kubeconfig_path())))?;
    let task = rt.spawn(watch(
        client,
        NS.into(),
        DEFAULT_SELECTOR.into(),
        7946,
        move |k| {
            tx.send_replace(Some(k));
        },
    ));
    let mut expect = |w: BTreeMap<String, SocketAddr>, what: &str| -> Result<()> {
        let got = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                rx.wait_for(|k| k.as_ref() == Some(&w)),
            )
            .await
            .map(|r| r.map(|_| ()))
        });
        match got {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("{what}: watch ended"),
            Err(_) => anyhow::bail!("{what}: still {:?} after 10 s", *rx.borrow()),
        }
    };
    expect(want(&[("n1", "172.17.0.21:7946")]), "first list")?;
    set_status(&api, NS, "speaker-b", "172.17.0.22", true)?;
    set_status(&api, NS, "speaker-c", "172.17.0.23", true)?;
    expect(
        want(&[
            ("n1", "172.17.0.21:7946"),
            ("n2", "172.17.0.22:7946"),
            ("n3", "172.17.0.23:7946"),
        ]),
        "b and c ready",
    )?;
    let r = api.request(
        "DELETE",
        &format!("/api/v1/namespaces/{NS}/pods/speaker-a?gracePeriodSeconds=0"),
        None,
    )?;
    ensure!(r.status == 200, "delete: {} {}", r.status, r.body);
    set_status(&api, NS, "speaker-c", "172.17.0.23", false)?;
    expect(
        want(&[("n2", "172.17.0.22:7946")]),
        "a deleted, c not ready",
    )?;
    task.abort();

    // Without gossip, the same watch gives the API-only view.
    let opts = MembersOpts {
        ml_bind_addr: None,
        ml_bind_port: 7946,
        ml_labels: DEFAULT_SELECTOR.into(),
        ml_secret_key: None,
    };
    let client = rt.block_on(ferrolb_ops::client(Some(api.kubeconfig_path())))?;
    let mut view = rt.block_on(async { opts.api_view("n9", client, NS) });
    let alive: BTreeSet<String> = ["n2", "n9"].iter().map(|s| s.to_string()).collect();
    let got = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            view.wait_for(|v| v.alive == alive && v.source == ViewSource::ApiFallback),
        )
        .await
        .map(|r| r.is_ok())
    });
    ensure!(got == Ok(true), "API-only view: {:?}", *view.borrow());
    Ok(())
}
