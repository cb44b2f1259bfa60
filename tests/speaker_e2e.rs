//! `ferrolb speaker` end to end: a real kube-apiserver v1.20.2 (testlab's
//! `KubeApiServer`), the reference lab of DESIGN.md as network namespaces,
//! gobgpd as rt-01 (ASN 64512, multipath) and three speakers, one inside each
//! node namespace. There is no kubelet and no controller: the test writes the
//! Nodes, the ConfigMap, the Service (with its `status.loadBalancer.ingress`)
//! and its core/v1 Endpoints itself (a 1.20 server has no EndpointSlice v1, so
//! the speaker's Endpoints fallback is what runs).
//!
//! The speakers reach the API server, which listens on 127.0.0.1 of the root
//! namespace, through testlab's UNIX-socket relay: `socat` listens on
//! 127.0.0.1:6443 inside each node namespace. No address is added to the root
//! namespace.
//!
//! Checked at rt-01 (gobgpd's RIB), every wait bounded:
//! - Cluster policy, ready endpoint on node-01 only → three paths for
//!   172.17.254.1/32 (next hops .21 .22 .23, AS path [64522], origin incomplete);
//! - the exclude-from-external-load-balancers label on node-01 → its path goes,
//!   the others stay;
//! - Local policy, endpoint on node-02 → one path via .22; the endpoint moves to
//!   node-03 → one path via .23;
//! - an invalid ConfigMap withdraws nothing, speakers stay up and report
//!   `metallb_k8s_client_config_stale_bool 1`; a valid one whose pools no
//!   longer hold the Service's IP is rejected (as MetalLB does) and withdraws
//!   nothing either;
//! - SIGTERM on a speaker → its path is gone at rt-01 in under 1 s (withdraw and
//!   Cease before exit) and it exits 0;
//! - a `nodeAssigned` Event exists for the Service.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{
    Family, GobgpNeighbor, Gobgpd, GobgpdConfig, Netns, Origin, Proc, RefLab, Route, TestDir,
    require_or_return,
};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::json;

const NS: &str = "e2e";
const SVC: &str = "web";
const IP: &str = "172.17.254.1";
const PREFIX: &str = "172.17.254.1/32";
const NODES: [&str; 3] = ["k8s-node-01", "k8s-node-02", "k8s-node-03"];
const ADDRS: [&str; 3] = ["172.17.0.21", "172.17.0.22", "172.17.0.23"];
const EXCLUDE: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Where each namespace's socat listens (and the speakers' kubeconfig points).
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const METRICS: &str = "127.0.0.1:7472";
/// Bound for a route change to show up at rt-01.
const CONVERGE: Duration = Duration::from_secs(10);

const CONFIG: &str = "peers:
- peer-address: 172.17.0.1
  peer-asn: 64512
  my-asn: 64522
  hold-time: 3s
address-pools:
- name: default
  protocol: bgp
  addresses: [172.17.254.0/24]
";

const BAD_CONFIG: &str = "peers:
- peer-address: 172.17.0.1
  peer-asn: 64512
  my-asn: 64522
  hold-time: 3s
address-pools:
- name: default
  protocol: bgp
  addresses: [172.17.254.0/33]
";

/// A kubeconfig for processes in a node namespace: the relay's listener, the API
/// server's CA (its certificate has SAN 127.0.0.1) and the admin token.
fn write_speaker_kubeconfig(path: &Path, api: &KubeApiServer) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://{RELAY_LISTEN}
    certificate-authority: {}
users:
- name: admin
  user:
    token: {}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: admin
current-context: e2e
",
        api.ca_cert_path().display(),
        api.token()
    );
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

fn api_port(api: &KubeApiServer) -> Result<u16> {
    api.server_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .with_context(|| format!("no port in {}", api.server_url()))
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

fn speaker(ns: &Netns, node: &str, kubeconfig: &Path) -> Result<Proc> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    cmd.args(["speaker", "--node-name", node, "--metrics-addr", METRICS])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    ns.spawn_labeled(cmd, &format!("speaker-{node}"))
}

/// The paths rt-01 holds for `PREFIX`, by next hop.
fn paths(g: &Gobgpd) -> Result<Vec<ferrolb_testlab::RoutePath>> {
    let rib: Vec<Route> = g.rib(Family::Ipv4Unicast)?;
    Ok(rib
        .into_iter()
        .find(|r| r.prefix == PREFIX)
        .map(|r| r.paths)
        .unwrap_or_default())
}

fn next_hops(g: &Gobgpd) -> Result<BTreeSet<String>> {
    Ok(paths(g)?.into_iter().map(|p| p.nexthop).collect())
}

/// Waits until rt-01's next hops for `PREFIX` are exactly `want`.
fn wait_next_hops(g: &Gobgpd, want: &[&str], timeout: Duration, what: &str) -> Result<Duration> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let t0 = Instant::now();
    let mut last;
    loop {
        last = next_hops(g)?;
        if last == want {
            eprintln!("{what}: {want:?} at rt-01 after {:?}", t0.elapsed());
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            bail!(
                "{what}: rt-01 next hops for {PREFIX} are {last:?}, want {want:?} (waited {timeout:?})"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

fn endpoints(node: &str) -> Result<Endpoints> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": SVC, "namespace": NS},
        "subsets": [{
            "addresses": [{"ip": "10.244.9.5", "nodeName": node}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }]
    }))?)
}

fn merge(v: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(v)
}

#[test]
fn speaker_against_real_apiserver_and_gobgpd() -> Result<()> {
    require_or_return!(
        "speaker_against_real_apiserver_and_gobgpd",
        "gobgpd",
        "gobgp",
        "socat",
        "curl",
        "ss"
    );
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let res = scenario(&rt, &api);
    if res.is_err() {
        eprintln!("kube-apiserver logs: {}", api.dir().display());
    }
    res
}

fn scenario(rt: &tokio::runtime::Runtime, api: &KubeApiServer) -> Result<()> {
    let dir = TestDir::new("speaker-e2e")?;
    let lab = RefLab::new()?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api_port(api)?).into(),
    )?;
    let kubeconfig = dir.path().join("speaker.kubeconfig");
    write_speaker_kubeconfig(&kubeconfig, api)?;

    let mut gcfg = GobgpdConfig::new(64512, "172.17.0.1");
    gcfg.use_multiple_paths = true;
    for a in ADDRS {
        let mut n = GobgpNeighbor::new(a, 64522);
        n.hold_time = Some(3);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        gcfg = gcfg.neighbor(n);
    }
    let g = Gobgpd::start(&lab.rt01, gcfg)?;

    // Kubernetes objects, written by the test (no kubelet, no controller).
    let c = rt.block_on(client(api.kubeconfig_path()))?;
    rt.block_on(async {
        let nss: Api<Namespace> = Api::all(c.clone());
        for n in ["metallb-system", NS] {
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": n}}))?,
            )
            .await?;
        }
        let nodes: Api<Node> = Api::all(c.clone());
        for n in NODES {
            nodes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": n, "labels": {
                        "kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}}}))?,
                )
                .await?;
        }
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "metallb-system");
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "config"}, "data": {"config": CONFIG}}),
            )?,
        )
        .await?;
        let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
        svcs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": SVC},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
            }))?,
        )
        .await?;
        svcs.patch_status(
            SVC,
            &PatchParams::default(),
            &merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": IP}]}}})),
        )
        .await?;
        let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
        eps.create(&PostParams::default(), &endpoints(NODES[0])?)
            .await?;
        anyhow::Ok(())
    })?;

    // One socat per node namespace, then the speakers.
    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let mut speakers = Vec::new();
    for (ns, node) in lab.nodes.iter().zip(NODES) {
        speakers.push(speaker(ns, node, &kubeconfig)?);
    }
    for s in &speakers {
        // The speaker logs to stderr.
        ferrolb_testlab::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            s.stderr().contains("caches synced").then_some(())
        })
        .with_context(|| format!("{} never synced: {}", s.label(), s.stderr_tail(20)))?;
    }
    let result = steps(rt, &c, &g, &lab, &mut speakers);
    if result.is_err() {
        for s in &speakers {
            eprintln!("--- {} stderr (tail):\n{}", s.label(), s.stderr_tail(30));
        }
        eprintln!("--- gobgpd log (tail):\n{}", tail(&g.log(), 30));
        eprintln!("relay accepted {} connections", relay.accepted());
    }
    result
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn steps(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    g: &Gobgpd,
    lab: &RefLab,
    speakers: &mut [Proc],
) -> Result<()> {
    let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
    let nodes: Api<Node> = Api::all(c.clone());
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "metallb-system");
    let pp = PatchParams::default();

    // 1. Cluster policy, the only endpoint on node-01: every node announces.
    for a in ADDRS {
        g.wait_established(a, Duration::from_secs(20))?;
    }
    wait_next_hops(g, &ADDRS, Duration::from_secs(20), "cluster policy")?;
    for p in paths(g)? {
        ensure!(p.as_path == vec![64522], "AS path {:?}", p.as_path);
        ensure!(
            p.origin == Some(Origin::Incomplete),
            "origin {:?}",
            p.origin
        );
    }

    // 2. node-01 excluded from external load balancers: only its path goes.
    rt.block_on(nodes.patch(
        NODES[0],
        &pp,
        &merge(json!({"metadata": {"labels": {EXCLUDE: ""}}})),
    ))?;
    wait_next_hops(g, &ADDRS[1..], CONVERGE, "node-01 excluded")?;
    rt.block_on(nodes.patch(
        NODES[0],
        &pp,
        &merge(json!({"metadata": {"labels": {EXCLUDE: null}}})),
    ))?;
    wait_next_hops(g, &ADDRS, CONVERGE, "node-01 label removed")?;

    // 3. Local policy: only the node with the endpoint announces.
    rt.block_on(async {
        eps.replace(SVC, &PostParams::default(), &with_rv(&eps, NODES[1]).await?)
            .await?;
        svcs.patch(
            SVC,
            &pp,
            &merge(json!({"spec": {"externalTrafficPolicy": "Local"}})),
        )
        .await?;
        anyhow::Ok(())
    })?;
    wait_next_hops(
        g,
        &[ADDRS[1]],
        CONVERGE,
        "local policy, endpoint on node-02",
    )?;
    rt.block_on(async {
        eps.replace(SVC, &PostParams::default(), &with_rv(&eps, NODES[2]).await?)
            .await?;
        anyhow::Ok(())
    })?;
    wait_next_hops(g, &[ADDRS[2]], CONVERGE, "endpoint moved to node-03")?;

    // 4. An invalid ConfigMap: nothing withdrawn, speakers alive, config stale.
    rt.block_on(cms.patch(
        "config",
        &pp,
        &merge(json!({"data": {"config": BAD_CONFIG}})),
    ))?;
    for ns in &lab.nodes {
        let ok = ferrolb_testlab::wait_until(CONVERGE, Duration::from_millis(100), || {
            metrics(ns)
                .ok()
                .filter(|m| m.contains("metallb_k8s_client_config_stale_bool 1"))
        });
        ensure!(
            ok.is_some(),
            "{}: config_stale never became 1: {:?}",
            ns.name(),
            metrics(ns)
        );
    }
    let routes_stay = |what: &str| -> Result<()> {
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let hops = next_hops(g)?;
            ensure!(
                hops == BTreeSet::from([ADDRS[2].to_string()]),
                "{what} changed the routes: {hops:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    };
    routes_stay("an invalid config")?;
    // A valid config whose pool (moved to 172.17.253.0/24) no longer holds the
    // Service's IP: rejected as by MetalLB (and by the controller, which keeps the IP assigned).
    rt.block_on(cms.patch(
        "config",
        &pp,
        &merge(json!({"data": {"config": CONFIG.replace("172.17.254.0/24", "172.17.253.0/24")}})),
    ))?;
    for s in speakers.iter() {
        let said = ferrolb_testlab::wait_until(CONVERGE, Duration::from_millis(100), || {
            s.stderr()
                .contains(&format!(
                    "new config not compatible with assigned IPs: service \"{NS}/{SVC}\" cannot own \"{IP}\""
                ))
                .then_some(())
        });
        ensure!(
            said.is_some(),
            "{}: no rejection of the stranding config: {}",
            s.label(),
            s.stderr_tail(10)
        );
    }
    routes_stay("a config that strands the Service's IP")?;
    // Each speaker said why on the ConfigMap, as MetalLB's speakers do.
    let reporters = rt.block_on(async {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(c.clone(), "metallb-system");
        let deadline = Instant::now() + CONVERGE;
        loop {
            let reporters: BTreeSet<String> = events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some("InvalidConfig")
                        && e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("config")
                        && e.note.as_deref().is_some_and(|n| {
                            n.starts_with("configuration rejected: new config not compatible")
                        })
                })
                .filter_map(|e| e.reporting_instance)
                .collect();
            if reporters.len() == NODES.len() || Instant::now() > deadline {
                return anyhow::Ok(reporters);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    ensure!(
        reporters == NODES.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
        "InvalidConfig Events on the ConfigMap from {reporters:?}, want every node"
    );
    for s in speakers.iter_mut() {
        ensure!(
            s.is_alive(),
            "{} died on an invalid config: {}",
            s.label(),
            s.stderr_tail(20)
        );
    }
    // Service changes still work on the last good config: back to Cluster.
    rt.block_on(svcs.patch(
        SVC,
        &pp,
        &merge(json!({"spec": {"externalTrafficPolicy": "Cluster"}})),
    ))?;
    wait_next_hops(
        g,
        &ADDRS,
        CONVERGE,
        "cluster policy on the last good config",
    )?;

    // 5. SIGTERM on node-02's speaker: its path gone within 1 s, exit 0.
    let t0 = Instant::now();
    speakers[1].signal("TERM")?;
    let gone = wait_next_hops(
        g,
        &[ADDRS[0], ADDRS[2]],
        Duration::from_secs(5),
        "node-02 speaker SIGTERM",
    )?;
    let elapsed = t0.elapsed();
    eprintln!("SIGTERM → path gone at rt-01 in {elapsed:?} (poll saw it after {gone:?})");
    ensure!(
        elapsed < Duration::from_secs(1),
        "withdrawal after SIGTERM took {elapsed:?} (bound: 1 s)"
    );
    let st = speakers[1]
        .wait_exit(Duration::from_secs(5))
        .context("speaker did not exit within 5 s of SIGTERM")?;
    ensure!(st.success(), "speaker exited with {st} after SIGTERM");
    let log = g.log();
    ensure!(
        log.contains("notification-received"),
        "gobgpd should have seen the Cease NOTIFICATION"
    );

    // 6. The nodeAssigned Event.
    let found = rt.block_on(async {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), NS);
            let mut reasons = Vec::new();
            for e in v1.list(&ListParams::default()).await?.items {
                let regarding = e.regarding.as_ref().and_then(|r| r.name.clone());
                reasons.push((e.reason.clone(), regarding, e.note.clone()));
            }
            let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), NS);
            for e in core.list(&ListParams::default()).await?.items {
                reasons.push((e.reason.clone(), e.involved_object.name.clone(), e.message));
            }
            let hits: Vec<_> = reasons
                .iter()
                .filter(|(r, n, _)| {
                    r.as_deref() == Some("nodeAssigned") && n.as_deref() == Some(SVC)
                })
                .cloned()
                .collect();
            if !hits.is_empty() {
                return anyhow::Ok(hits);
            }
            if Instant::now() > deadline {
                bail!("no nodeAssigned Event for {NS}/{SVC}; events: {reasons:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })?;
    eprintln!("nodeAssigned events: {found:?}");

    // The other speakers are still fine and still announce.
    for i in [0, 2] {
        ensure!(speakers[i].is_alive(), "{} died", speakers[i].label());
    }
    let m = metrics(&lab.nodes[0])?;
    ensure!(
        m.contains(&format!(
            "metallb_speaker_announced{{ip=\"{IP}\",node=\"{}\",protocol=\"bgp\",service=\"{NS}/{SVC}\"}} 1",
            NODES[0]
        )),
        "node-01 metrics do not show the announcement:\n{m}"
    );
    ensure!(
        m.contains("metallb_bgp_session_up{peer=\"172.17.0.1:179\"} 1"),
        "node-01 session not up in metrics:\n{m}"
    );
    Ok(())
}

/// The Endpoints object with its endpoint on `node`, carrying the current
/// resourceVersion so `replace` is a plain update.
async fn with_rv(eps: &Api<Endpoints>, node: &str) -> Result<Endpoints> {
    let cur = eps.get(SVC).await?;
    let mut e = endpoints(node)?;
    e.metadata.resource_version = cur.resource_version();
    Ok(e)
}
