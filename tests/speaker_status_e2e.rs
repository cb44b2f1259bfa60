//! `ferrolb speaker` end to end for what the metallb.io resources ask of the
//! BGP side: ServiceBGPStatus objects and sessions replaced on a parameter
//! change. A real kube-apiserver v1.20.2 (testlab), the reference lab of
//! DESIGN.md as network namespaces, gobgpd as rt-01 (AS 64512) and three
//! speakers (AS 64522), one in each node namespace, reaching the API server
//! through testlab's UNIX-socket relay (no address in the root namespace).
//!
//! The test installs the ServiceBGPStatus CRD from `manifests/crds.yaml`
//! (namespaced, `status` subresource, as MetalLB's) and writes Nodes, the
//! ConfigMap, two Services with their status IPs and their core/v1
//! Endpoints. Checked, every wait bounded:
//! - each speaker keeps one ServiceBGPStatus per Service it announces, in
//!   `metallb-system`: `generateName` `bgp-`, labels `metallb.io/node`,
//!   `metallb.io/service-name`, `metallb.io/service-namespace`, status
//!   `{node, serviceName, serviceNamespace, peers: ["172.17.0.1:179"]}` (a
//!   ConfigMap peer has no name); node-01's speaker runs with
//!   `FERROLB_POD_NAME`/`FERROLB_POD_UID` and its objects name that Pod as
//!   owner, the others' have none;
//! - a Service whose only endpoint turns not ready is withdrawn and its three
//!   objects are deleted; the other's stay;
//! - the ConfigMap's hold time 9s → 6s: every speaker closes its session with
//!   Cease 6/6 (Other Configuration Change), which gobgpd logs, and comes back
//!   with hold time 6 (`gobgp neighbor`); the route is back on all three;
//! - the peer's node-selectors drop node-03: node-03's speaker closes with
//!   Cease 6/3 (Peer De-configured) and deletes its object;
//! - node-01's `/metrics` counts its writes (2 creates, their status patches,
//!   1 delete).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{
    Family, GobgpNeighbor, Gobgpd, GobgpdConfig, Netns, Proc, RefLab, Route, TestDir,
    require_or_return, wait_until,
};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Service};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::json;

const NS: &str = "e2e";
const SYS: &str = "metallb-system";
const NODES: [&str; 3] = ["k8s-node-01", "k8s-node-02", "k8s-node-03"];
const ADDRS: [&str; 3] = ["172.17.0.21", "172.17.0.22", "172.17.0.23"];
const SERVICES: [(&str, &str); 2] = [("web-1", "172.17.254.1"), ("web-2", "172.17.254.2")];
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const METRICS: &str = "127.0.0.1:7472";
const CONVERGE: Duration = Duration::from_secs(20);
const POD_UID: &str = "0b6d1e0e-6a53-4c52-9a0e-7f0a6a8d2c11";

fn config(hold: &str, only_rack_a: bool) -> String {
    let sel = if only_rack_a {
        "  node-selectors:\n  - match-labels:\n      rack: a\n"
    } else {
        ""
    };
    format!(
        "peers:\n- peer-address: 172.17.0.1\n  peer-asn: 64512\n  my-asn: 64522\n  hold-time: {hold}\n{sel}\
         address-pools:\n- name: default\n  protocol: bgp\n  addresses: [172.17.254.0/24]\n"
    )
}

/// The ServiceBGPStatus CRD as shipped (`manifests/crds.yaml`).
fn crd() -> Result<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/crds.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(doc)?)?;
        if v["metadata"]["name"] == "servicebgpstatuses.metallb.io" {
            return Ok(v);
        }
    }
    bail!("no servicebgpstatuses.metallb.io in {}", path.display())
}

fn status_api(c: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metallb.io", "v1beta1", "ServiceBGPStatus"),
        "servicebgpstatuses",
    );
    Api::namespaced_with(c.clone(), SYS, &ar)
}

/// One object as the test compares them: (node label, service label) →
/// (name, status, owner pod names).
type Objects = BTreeMap<(String, String), (String, serde_json::Value, Vec<String>)>;

async fn objects(c: &Client) -> Result<(usize, Objects)> {
    let list = status_api(c).list(&ListParams::default()).await?;
    let n = list.items.len();
    let mut out = Objects::new();
    for o in list.items {
        let l = o.labels().clone();
        let owners = o
            .owner_references()
            .iter()
            .filter(|r| r.kind == "Pod" && r.uid == POD_UID)
            .map(|r| r.name.clone())
            .collect();
        out.insert(
            (
                l.get("metallb.io/node").cloned().unwrap_or_default(),
                format!(
                    "{}/{}",
                    l.get("metallb.io/service-namespace")
                        .cloned()
                        .unwrap_or_default(),
                    l.get("metallb.io/service-name")
                        .cloned()
                        .unwrap_or_default()
                ),
            ),
            (
                o.name_any(),
                o.data.get("status").cloned().unwrap_or_default(),
                owners,
            ),
        );
    }
    Ok((n, out))
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

fn speaker(ns: &Netns, node: &str, kubeconfig: &Path, owner: bool) -> Result<Proc> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    cmd.args(["speaker", "--node-name", node, "--metrics-addr", METRICS])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("FERROLB_STATUS_WRITES_PER_SECOND");
    if owner {
        cmd.env("FERROLB_POD_NAME", format!("speaker-{node}"))
            .env("FERROLB_POD_UID", POD_UID);
    } else {
        cmd.env_remove("FERROLB_POD_NAME")
            .env_remove("FERROLB_POD_UID");
    }
    ns.spawn_labeled(cmd, &format!("speaker-{node}"))
}

fn endpoints(name: &str, ready: bool) -> Result<Endpoints> {
    let addr = json!({"ip": "10.244.1.10", "nodeName": NODES[0]});
    let subset = if ready {
        json!({"addresses": [addr], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    } else {
        json!({"notReadyAddresses": [addr], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    };
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": NS}, "subsets": [subset]}),
    )?)
}

fn next_hops(g: &Gobgpd, prefix: &str) -> Result<Vec<String>> {
    let rib: Vec<Route> = g.rib(Family::Ipv4Unicast)?;
    let mut v: Vec<String> = rib
        .into_iter()
        .find(|r| r.prefix == prefix)
        .map(|r| r.paths.into_iter().map(|p| p.nexthop).collect())
        .unwrap_or_default();
    v.sort();
    Ok(v)
}

fn wait_hops(g: &Gobgpd, prefix: &str, want: &[&str], what: &str) -> Result<()> {
    let t0 = Instant::now();
    wait_until(CONVERGE, Duration::from_millis(100), || {
        let h = next_hops(g, prefix).ok()?;
        (h == want).then_some(())
    })
    .with_context(|| {
        format!(
            "{what}: next hops for {prefix} {:?}, want {want:?}",
            next_hops(g, prefix)
        )
    })?;
    eprintln!("{what}: {want:?} for {prefix} after {:?}", t0.elapsed());
    Ok(())
}

/// gobgpd's negotiated hold time with `addr`, from `gobgp -j neighbor ADDR`.
fn negotiated_hold(g: &Gobgpd, addr: &str) -> Option<u64> {
    let out = g.cli(&["-j", "neighbor", addr]).ok()?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
    let v = if v.is_array() { v[0].clone() } else { v };
    v["timers"]["state"]["negotiated_hold_time"].as_u64()
}

fn metrics(ns: &Netns) -> Result<String> {
    ns.run(&[
        "curl",
        "-s",
        "--max-time",
        "5",
        &format!("http://{METRICS}/metrics"),
    ])
}

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn speaker_bgp_status_and_session_changes() -> Result<()> {
    let test = "speaker_bgp_status_and_session_changes";
    require_or_return!(test, "gobgpd", "gobgp", "socat", "curl");
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = TestDir::new("speaker-status-e2e")?;
    let lab = RefLab::new()?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api.port()?).into(),
    )?;
    let kubeconfig = dir.path().join("speaker.kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{RELAY_LISTEN}"))?;

    let mut gcfg = GobgpdConfig::new(64512, "172.17.0.1");
    gcfg.use_multiple_paths = true;
    for a in ADDRS {
        let mut n = GobgpNeighbor::new(a, 64522);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        gcfg = gcfg.neighbor(n);
    }
    let g = Gobgpd::start(&lab.rt01, gcfg)?;

    let c = rt.block_on(client(api.kubeconfig_path()))?;
    rt.block_on(async {
        let crds: Api<DynamicObject> = Api::all_with(
            c.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                "customresourcedefinitions",
            ),
        );
        crds.create(&PostParams::default(), &serde_json::from_value(crd()?)?)
            .await?;
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
            if i < 2 {
                labels["rack"] = json!("a");
            }
            nodes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": n, "labels": labels}}))?,
                )
                .await?;
        }
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), SYS);
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "config"}, "data": {"config": config("9s", false)}}),
            )?,
        )
        .await?;
        let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
        let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
        for (name, ip) in SERVICES {
            svcs.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
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
            eps.create(&PostParams::default(), &endpoints(name, true)?)
                .await?;
        }
        // The CRD is served once listing works.
        let t0 = Instant::now();
        while status_api(&c).list(&ListParams::default()).await.is_err() {
            ensure!(t0.elapsed() < CONVERGE, "ServiceBGPStatus CRD never served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    })?;

    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let mut speakers = Vec::new();
    for (i, (ns, node)) in lab.nodes.iter().zip(NODES).enumerate() {
        speakers.push(speaker(ns, node, &kubeconfig, i == 0)?);
    }
    let res = steps(&rt, &c, &g, &lab);
    if res.is_err() {
        for s in &speakers {
            eprintln!("--- {} stderr (tail):\n{}", s.label(), s.stderr_tail(40));
        }
        let log = g.log();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "--- gobgpd log (tail):\n{}",
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
        eprintln!("kube-apiserver dir: {}", api.dir().display());
    }
    res
}

fn steps(rt: &tokio::runtime::Runtime, c: &Client, g: &Gobgpd, lab: &RefLab) -> Result<()> {
    let want_status = |node: &str, svc: &str| json!({"node": node, "serviceName": svc, "serviceNamespace": NS, "peers": ["172.17.0.1:179"]});
    let wait_objects = |want: &[(usize, &str)], what: &str| -> Result<Objects> {
        let t0 = Instant::now();
        loop {
            let (n, got) = rt.block_on(objects(c))?;
            let ok = n == want.len()
                && want.iter().all(|(i, svc)| {
                    got.get(&(NODES[*i].to_string(), format!("{NS}/{svc}")))
                        .is_some_and(|(_, st, _)| *st == want_status(NODES[*i], svc))
                });
            if ok {
                eprintln!(
                    "{what}: {n} ServiceBGPStatus objects after {:?}",
                    t0.elapsed()
                );
                return Ok(got);
            }
            if t0.elapsed() > CONVERGE {
                bail!("{what}: {n} objects {got:#?}, want {want:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    for (_, ip) in SERVICES {
        wait_hops(g, &format!("{ip}/32"), &ADDRS, "start")?;
    }
    let all: Vec<(usize, &str)> = (0..3)
        .flat_map(|i| SERVICES.iter().map(move |(s, _)| (i, *s)))
        .collect();
    let got = wait_objects(&all, "one object per node and Service")?;
    for ((node, _), (name, _, owners)) in &got {
        ensure!(name.starts_with("bgp-"), "{name}: generateName bgp-");
        if node == NODES[0] {
            ensure!(
                *owners == vec![format!("speaker-{node}")],
                "{name}: owned by the speaker Pod, got {owners:?}"
            );
        } else {
            ensure!(
                owners.is_empty(),
                "{name}: no owner without the Pod's identity"
            );
        }
    }

    // web-2's only endpoint turns not ready: withdrawn everywhere, objects deleted.
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
    let mut e = endpoints("web-2", false)?;
    e.metadata.resource_version = rt.block_on(eps.get("web-2"))?.metadata.resource_version;
    rt.block_on(eps.replace("web-2", &PostParams::default(), &e))?;
    wait_hops(g, "172.17.254.2/32", &[], "web-2 not ready")?;
    let only_web1: Vec<(usize, &str)> = (0..3).map(|i| (i, "web-1")).collect();
    wait_objects(&only_web1, "web-2 withdrawn")?;

    // Hold time 9s -> 6s: Cease 6/6, new sessions with hold time 6.
    for a in ADDRS {
        ensure!(
            negotiated_hold(g, a) == Some(9),
            "{a}: hold {:?}",
            negotiated_hold(g, a)
        );
    }
    let log_before = g.log().len();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), SYS);
    rt.block_on(cms.patch(
        "config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"config": config("6s", false)}})),
    ))?;
    let t0 = Instant::now();
    wait_until(CONVERGE, Duration::from_millis(200), || {
        ADDRS
            .iter()
            .all(|a| negotiated_hold(g, a) == Some(6))
            .then_some(())
    })
    .context("sessions never came back with hold time 6")?;
    eprintln!("hold time 6 on all three sessions after {:?}", t0.elapsed());
    wait_hops(g, "172.17.254.1/32", &ADDRS, "after the hold-time change")?;
    let log = g.log()[log_before..].to_string();
    // gobgpd logs e.g. `msg="Peer Down" Key=172.17.0.21 Reason="notification-received
    // code 6(cease) subcode 6(other configuration change)"`.
    let cease = |log: &str, key: &str, sub: u8| {
        log.lines()
            .filter(|l| l.contains("Peer Down") && l.contains(&format!("Key={key} ")))
            .filter(|l| {
                l.contains(&format!(
                    "notification-received code 6(cease) subcode {sub}("
                ))
            })
            .count()
    };
    eprintln!(
        "gobgpd log lines after the change:\n{}",
        log.lines()
            .filter(|l| l.contains("otification"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for a in ADDRS {
        ensure!(
            cease(&log, a, 6) == 1,
            "want one Cease 6/6 from {a} at gobgpd, log:\n{log}"
        );
    }

    // The peer now selects rack a only: node-03 de-configures it (6/3) and deletes its object.
    let log_before = g.log().len();
    rt.block_on(cms.patch(
        "config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"config": config("6s", true)}})),
    ))?;
    wait_hops(
        g,
        "172.17.254.1/32",
        &ADDRS[..2],
        "node-03 no longer selected",
    )?;
    wait_objects(&only_web1[..2], "node-03's object deleted")?;
    let log = g.log()[log_before..].to_string();
    ensure!(
        cease(&log, ADDRS[2], 3) == 1,
        "want Cease 6/3 from node-03 at gobgpd, log:\n{log}"
    );
    ensure!(
        cease(&log, ADDRS[0], 6) + cease(&log, ADDRS[0], 3) == 0,
        "node-01's session stays, log:\n{log}"
    );

    // node-01's writes, as its /metrics counts them.
    let m = metrics(&lab.nodes[0])?;
    let get = |verb: &str| {
        metric(
            &m,
            &format!("ferrolb_speaker_status_writes_total{{verb=\"{verb}\"}}"),
        )
    };
    eprintln!(
        "node-01 writes: create {:?} patch {:?} delete {:?}",
        get("create"),
        get("patch"),
        get("delete")
    );
    ensure!(get("create") == Some(2.0), "two objects created:\n{m}");
    ensure!(get("delete") == Some(1.0), "one deleted:\n{m}");
    ensure!(
        get("patch").is_some_and(|p| (2.0..=3.0).contains(&p)),
        "a status patch per create (and at most one more):\n{m}"
    );
    Ok(())
}
