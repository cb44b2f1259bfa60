//! `ferrolb explain` end to end: a real kube-apiserver v1.20.2 (testlab), the
//! reference lab of DESIGN.md as network namespaces, gobgpd as rt-01
//! (AS 64512) and three speakers (AS 64522), one per node namespace, reaching
//! the API server through testlab's UNIX-socket relay. The configuration is
//! the `metallb.io` custom resources (CRDs of `manifests/crds.yaml`): the
//! speakers and `explain` both pick them by the auto rule.
//!
//! k8s-node-01 has `rack: a`, k8s-node-02 `rack: b`, k8s-node-03 carries the
//! exclude-from-external-load-balancers label. Four Services, their status
//! IPs written by the test, endpoints as core/v1 Endpoints:
//! - `web` (pool `default`, Cluster, community 64512:100): announced by
//!   nodes 01 and 02; node 03 `nodeExcluded`;
//! - `local` (Local, its only endpoint on the excluded node 03): nodes 01
//!   and 02 `noLocalEndpoint`, node 03 `nodeExcluded`: not served (exit 1);
//! - `edge` (pool `edge`, whose BGPAdvertisement selects `rack: a`): node 01
//!   only; node 02 `noAdvertisementForNode`;
//! - `isolated` (pool `isolated`, advertised only to BGPPeer `ghost`, which
//!   selects no node): every node `noAdvertisementForPeer` toward rt-01,
//!   `peerNotForNode` toward ghost: not served (exit 1).
//!
//! After the speakers converge (every row's live state agrees with its
//! ServiceBGPStatus objects), the nodes `explain` says announce each Service
//! to rt-01 are exactly the next hops gobgpd holds for its /32, with the
//! community it says. A Service that does not exist exits 2.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{
    Family, GobgpNeighbor, Gobgpd, GobgpdConfig, Netns, Proc, RefLab, Route, TestDir,
    require_or_return, wait_until,
};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Service};
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

const NS: &str = "e2e";
const SYS: &str = "metallb-system";
const NODES: [&str; 3] = ["k8s-node-01", "k8s-node-02", "k8s-node-03"];
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const CONVERGE: Duration = Duration::from_secs(30);
const EXCLUDE: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// (name, IP, Local policy, node of its one ready endpoint).
const SERVICES: [(&str, &str, bool, &str); 4] = [
    ("web", "172.17.254.1", false, "k8s-node-01"),
    ("local", "172.17.254.2", true, "k8s-node-03"),
    ("edge", "172.17.254.17", false, "k8s-node-01"),
    ("isolated", "172.17.254.33", false, "k8s-node-01"),
];

/// Every CRD of `manifests/crds.yaml`.
fn crds() -> Result<Vec<Value>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/crds.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(doc)?)?;
        if v["kind"] == "CustomResourceDefinition" {
            out.push(v);
        }
    }
    Ok(out)
}

fn ar(kind: &str, plural: &str, version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metallb.io", version, kind), plural)
}

/// The configuration, as (kind, plural, version, name, spec).
fn resources() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
)> {
    vec![
        (
            "IPAddressPool",
            "ipaddresspools",
            "v1beta1",
            "default",
            json!({"addresses": ["172.17.254.0/28"]}),
        ),
        (
            "IPAddressPool",
            "ipaddresspools",
            "v1beta1",
            "edge",
            json!({"addresses": ["172.17.254.16/28"]}),
        ),
        (
            "IPAddressPool",
            "ipaddresspools",
            "v1beta1",
            "isolated",
            json!({"addresses": ["172.17.254.32/28"]}),
        ),
        (
            "BGPPeer",
            "bgppeers",
            "v1beta2",
            "rt01",
            json!({"peerAddress": "172.17.0.1", "peerASN": 64512, "myASN": 64522}),
        ),
        (
            "BGPPeer",
            "bgppeers",
            "v1beta2",
            "ghost",
            json!({"peerAddress": "172.17.0.9", "peerASN": 64513, "myASN": 64522,
                "nodeSelectors": [{"matchLabels": {"role": "none"}}]}),
        ),
        (
            "BGPAdvertisement",
            "bgpadvertisements",
            "v1beta1",
            "default",
            json!({"ipAddressPools": ["default"], "communities": ["64512:100"]}),
        ),
        (
            "BGPAdvertisement",
            "bgpadvertisements",
            "v1beta1",
            "edge",
            json!({"ipAddressPools": ["edge"], "nodeSelectors": [{"matchLabels": {"rack": "a"}}]}),
        ),
        (
            "BGPAdvertisement",
            "bgpadvertisements",
            "v1beta1",
            "isolated",
            json!({"ipAddressPools": ["isolated"], "peers": ["ghost"]}),
        ),
    ]
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

fn speaker(ns: &Netns, node: &str, kubeconfig: &Path) -> Result<Proc> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    cmd.args([
        "speaker",
        "--node-name",
        node,
        "--metrics-addr",
        "127.0.0.1:7472",
    ])
    .arg("--kubeconfig")
    .arg(kubeconfig)
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1")
    .env_remove("FERROLB_POD_NAME")
    .env_remove("FERROLB_POD_UID");
    ns.spawn_labeled(cmd, &format!("speaker-{node}"))
}

/// `ferrolb explain -o json` (from the root namespace, straight to the API
/// server): the exit code and the JSON.
fn explain(kubeconfig: &Path, svc: &str) -> Result<(i32, Value)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["explain", "-n", NS, svc, "-o", "json"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("RUST_LOG")
        .output()?;
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "explain {svc}: exit {code}, stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((code, v))
}

fn route(g: &Gobgpd, prefix: &str) -> Result<Option<Route>> {
    let rib: Vec<Route> = g.rib(Family::Ipv4Unicast)?;
    Ok(rib.into_iter().find(|r| r.prefix == prefix))
}

fn next_hops(g: &Gobgpd, prefix: &str) -> Result<Vec<String>> {
    let mut v: Vec<String> = route(g, prefix)?
        .map(|r| r.paths.into_iter().map(|p| p.nexthop).collect())
        .unwrap_or_default();
    v.sort();
    Ok(v)
}

/// The row of `node` toward `peer` (`None`: layer 2 / no peer).
fn row<'a>(v: &'a Value, node: &str, peer: &str) -> Result<&'a Value> {
    v["announcements"]
        .as_array()
        .context("no announcements")?
        .iter()
        .find(|r| r["node"] == node && r["peer"] == peer)
        .with_context(|| format!("no row {node} → {peer} in {v:#}"))
}

fn node_addr(node: &str) -> &'static str {
    RefLab::NODE_ADDRS[NODES.iter().position(|n| *n == node).expect("a lab node")]
}

#[test]
fn explain_matches_the_speakers_and_the_router() -> Result<()> {
    let test = "explain_matches_the_speakers_and_the_router";
    require_or_return!(test, "gobgpd", "gobgp", "socat");
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = TestDir::new("explain-e2e")?;
    let lab = RefLab::new()?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api.port()?).into(),
    )?;
    let kubeconfig = dir.path().join("speaker.kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{RELAY_LISTEN}"))?;

    let mut gcfg = GobgpdConfig::new(64512, "172.17.0.1");
    gcfg.use_multiple_paths = true;
    for a in RefLab::NODE_ADDRS {
        let mut n = GobgpNeighbor::new(a, 64522);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        gcfg = gcfg.neighbor(n);
    }
    let g = Gobgpd::start(&lab.rt01, gcfg)?;

    let c = rt.block_on(client(api.kubeconfig_path()))?;
    rt.block_on(async {
        let crd_api: Api<DynamicObject> = Api::all_with(
            c.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                "customresourcedefinitions",
            ),
        );
        for crd in crds()? {
            crd_api
                .create(&PostParams::default(), &serde_json::from_value(crd)?)
                .await?;
        }
        let nss: Api<Namespace> = Api::all(c.clone());
        for n in [SYS, NS] {
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": n}}))?,
            )
            .await?;
        }
        let nodes: Api<Node> = Api::all(c.clone());
        for (i, n) in NODES.iter().enumerate() {
            let mut labels = json!({"kubernetes.io/hostname": n});
            match i {
                0 => labels["rack"] = json!("a"),
                1 => labels["rack"] = json!("b"),
                _ => labels[EXCLUDE] = json!(""),
            }
            nodes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": n, "labels": labels}}))?,
                )
                .await?;
        }
        // The CRDs are served once creating works.
        for (kind, plural, version, name, spec) in resources() {
            let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), SYS, &ar(kind, plural, version));
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": format!("metallb.io/{version}"), "kind": kind,
                "metadata": {"name": name, "namespace": SYS}, "spec": spec,
            }))?;
            let t0 = Instant::now();
            loop {
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => break,
                    Err(e) if t0.elapsed() < CONVERGE => {
                        eprintln!("creating {kind}/{name}: {e} (retrying)");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => bail!("creating {kind}/{name}: {e}"),
                }
            }
        }
        let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
        let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
        for (name, ip, local, ep_node) in SERVICES {
            svcs.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"type": "LoadBalancer",
                             "externalTrafficPolicy": if local {"Local"} else {"Cluster"},
                             "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
                }))?,
            )
            .await?;
            svcs.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
            )
            .await?;
            eps.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": NS},
                    "subsets": [{"addresses": [{"ip": "10.244.1.10", "nodeName": ep_node}],
                                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
                }))?,
            )
            .await?;
        }
        anyhow::Ok(())
    })?;

    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let mut speakers = Vec::new();
    for (ns, node) in lab.nodes.iter().zip(NODES) {
        speakers.push(speaker(ns, node, &kubeconfig)?);
    }
    let res = steps(api.kubeconfig_path(), &g);
    if res.is_err() {
        for s in &speakers {
            eprintln!("--- {} stderr (tail):\n{}", s.label(), s.stderr_tail(40));
        }
        eprintln!("kube-apiserver dir: {}", api.dir().display());
    }
    res
}

fn steps(kubeconfig: &Path, g: &Gobgpd) -> Result<()> {
    // Converged: every Service's rows agree with the status objects, and the
    // router holds the routes of every Service explain calls served.
    let t0 = Instant::now();
    let mut last = Vec::new();
    let done = wait_until(CONVERGE, Duration::from_millis(500), || {
        last.clear();
        for (name, ip, _, _) in SERVICES {
            let (code, v) = explain(kubeconfig, name).ok()?;
            let rows = v["announcements"].as_array()?;
            let agree = rows.iter().all(|r| r["liveAgrees"] == true);
            let want: Vec<String> = rows
                .iter()
                .filter(|r| r["peer"] == "rt01" && r["announced"] == true)
                .map(|r| node_addr(r["node"].as_str().unwrap_or_default()).to_string())
                .collect();
            let hops = next_hops(g, &format!("{ip}/32")).ok()?;
            let mut want = want;
            want.sort();
            if !(agree && hops == want) {
                last.push(format!(
                    "{name}: exit {code}, agree {agree}, explain {want:?}, rib {hops:?}"
                ));
            }
        }
        last.is_empty().then_some(())
    });
    ensure!(done.is_some(), "not converged after {CONVERGE:?}: {last:?}");
    eprintln!("converged after {:?}", t0.elapsed());

    let rt01 = "rt01";
    let ghost = "ghost";
    let [n1, n2, n3] = NODES;

    // web: Cluster, served by nodes 01 and 02; 03 excluded by its label.
    let (code, v) = explain(kubeconfig, "web")?;
    ensure!(code == 0, "web: exit {code}: {v:#}");
    ensure!(
        v["service"] == "e2e/web" && v["ips"] == json!(["172.17.254.1"]),
        "{v:#}"
    );
    ensure!(v["pool"] == "default", "{v:#}");
    ensure!(v["configSource"] == "resources", "{v:#}");
    for n in [n1, n2] {
        let r = row(&v, n, rt01)?;
        ensure!(
            r["announced"] == true && r["reason"].is_null(),
            "web {n}: {r}"
        );
        ensure!(r["prefixes"] == json!(["172.17.254.1/32"]), "web {n}: {r}");
        ensure!(r["communities"] == json!(["64512:100"]), "web {n}: {r}");
    }
    ensure!(row(&v, n3, rt01)?["reason"] == "nodeExcluded", "{v:#}");
    for n in NODES {
        ensure!(row(&v, n, ghost)?["reason"] == "peerNotForNode", "{v:#}");
    }
    let paths = route(g, "172.17.254.1/32")?.context("web's route")?.paths;
    ensure!(
        paths
            .iter()
            .all(|p| p.communities.contains(&"64512:100".to_string())),
        "the router's paths lack the community explain names: {paths:?}"
    );

    // local: its only endpoint is on the excluded node: nobody announces.
    let (code, v) = explain(kubeconfig, "local")?;
    ensure!(code == 1, "local: exit {code}: {v:#}");
    for n in [n1, n2] {
        ensure!(
            row(&v, n, rt01)?["reason"] == "noLocalEndpoint",
            "local {n}: {v:#}"
        );
    }
    ensure!(row(&v, n3, rt01)?["reason"] == "nodeExcluded", "{v:#}");
    ensure!(next_hops(g, "172.17.254.2/32")?.is_empty());

    // edge: the advertisement selects rack a: node 01 only.
    let (code, v) = explain(kubeconfig, "edge")?;
    ensure!(code == 0, "edge: exit {code}: {v:#}");
    ensure!(v["pool"] == "edge", "{v:#}");
    ensure!(row(&v, n1, rt01)?["announced"] == true, "{v:#}");
    ensure!(
        row(&v, n2, rt01)?["reason"] == "noAdvertisementForNode",
        "{v:#}"
    );
    ensure!(next_hops(g, "172.17.254.17/32")? == [node_addr(n1)]);

    // isolated: the pool goes only to a peer no node has.
    let (code, v) = explain(kubeconfig, "isolated")?;
    ensure!(code == 1, "isolated: exit {code}: {v:#}");
    ensure!(v["pool"] == "isolated", "{v:#}");
    for n in [n1, n2] {
        ensure!(
            row(&v, n, rt01)?["reason"] == "noAdvertisementForPeer",
            "isolated {n}: {v:#}"
        );
        ensure!(
            row(&v, n, ghost)?["reason"] == "peerNotForNode",
            "isolated {n}: {v:#}"
        );
    }
    ensure!(next_hops(g, "172.17.254.33/32")?.is_empty());

    // The text form names the same reasons.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["explain", "e2e/local", "--kubeconfig"])
        .arg(kubeconfig)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("ferrolb explain e2e/local:\n{text}");
    ensure!(out.status.code() == Some(1), "text exit: {:?}", out.status);
    ensure!(
        text.contains("k8s-node-01 → rt01: not announced: noLocalEndpoint")
            && text.contains("k8s-node-03 → rt01: not announced: nodeExcluded")
            && text.contains("served: no"),
        "{text}"
    );

    // No such Service: an error, exit 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(["explain", "-n", NS, "nope", "--kubeconfig"])
        .arg(kubeconfig)
        .output()?;
    ensure!(
        out.status.code() == Some(2),
        "missing Service: {:?}",
        out.status
    );
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
