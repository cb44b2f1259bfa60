//! `ferrolb speaker` end to end: a real kube-apiserver v1.20.2 (testlab's
//! `KubeApiServer`), the reference lab of DESIGN.md as network namespaces,
//! gobgpd as rt-01 (ASN 64512, multipath) and three speakers, one inside each
//! node namespace. There is no kubelet and no controller: the test writes the
//! Nodes, the ConfigMap, the Service (with its `status.loadBalancer.ingress`)
//! and its endpoints itself.
//!
//! It runs twice, once per way the speaker reads endpoints, as two tests that
//! run in parallel, each with its own API server and its own lab namespaces:
//! - `speaker_on_core_v1_endpoints`: a plain 1.20 server, which serves EndpointSlices only as
//!   v1beta1, so the speaker falls back to core/v1 Endpoints (it must log
//!   `EndpointSlice v1 not served: reading core/v1 Endpoints`); the test writes
//!   one Endpoints object (a group of endpoints = one subset) and no slice;
//! - `speaker_on_endpointslices_v1`: a server with the built-in v1beta1 group off and testlab's
//!   EndpointSlice v1 CRD, so `discovery.k8s.io/v1` is served and the speaker
//!   reads it (it must log `reading endpoints from discovery.k8s.io/v1
//!   EndpointSlices`); the test writes EndpointSlices labelled
//!   `kubernetes.io/service-name` (a group of endpoints = one slice) and never
//!   a core Endpoints object, and checks at the end that none exists.
//!
//! The speakers reach the API server, which listens on 127.0.0.1 of the root
//! namespace, through testlab's UNIX-socket relay: `socat` listens on
//! 127.0.0.1:6443 inside each node namespace. No address is added to the root
//! namespace.
//!
//! Checked at rt-01 (gobgpd's RIB), every wait bounded, on both paths unless
//! said otherwise:
//! - Cluster policy, ready endpoint on node-01 only → three paths for
//!   172.17.254.1/32 (next hops .21 .22 .23, AS path [64522], origin incomplete);
//! - the exclude-from-external-load-balancers label on node-01 → its path goes,
//!   the others stay; (endpoints) node-03, whose speaker runs with
//!   `FERROLB_IGNORE_EXCLUDE_LB=true` (MetalLB's `--ignore-exclude-lb` by its
//!   environment variable), carries it too and keeps its path (2 s);
//! - Cluster, the only endpoint turns not ready → every path withdrawn; ready
//!   again → all three back;
//! - (slices) Cluster, the only endpoint not ready but serving while terminating
//!   (KEP-1669) → all three announced; `serving: false` → withdrawn;
//! - Local policy, endpoint on node-02 → one path via .22; the endpoint moves to
//!   node-03 → one path via .23;
//! - Local, that endpoint turns not ready → node-03's path withdrawn; ready
//!   again → back;
//! - (slices) Local, ready → serving while terminating: still announced; then
//!   `serving: false` → withdrawn; ready again → back;
//! - Local, endpoints split over two slices (two subsets on the Endpoints path)
//!   on node-02 and node-03 → both announce (folded per Service); node-02's
//!   endpoint not ready → only .23; ready again → both; node-03's slice
//!   deleted → only .22;
//! - an invalid ConfigMap withdraws nothing, speakers stay up and report
//!   `metallb_k8s_client_config_stale_bool 1`; a valid one whose pools no
//!   longer hold the Service's IP is rejected (as MetalLB does) and withdraws
//!   nothing either; (endpoints) once the Service's status moves to an IP that
//!   config keeps, every speaker applies it with no ConfigMap change
//!   (`metallb_k8s_client_config_stale_bool 0`, `configuration loaded`) and
//!   announces the new IP;
//! - SIGTERM on a speaker → its path is gone at rt-01 in under 1 s (withdraw and
//!   Cease before exit) and it exits 0;
//! - a `nodeAssigned` Event exists for the Service;
//! - (slices) the peer selects nodes labelled `rack: a`: node-03's Node object
//!   deleted → its speaker keeps its last labels, the session and the path
//!   (3 s); the Node re-created without the label → path and session go;
//! - the run used the API it claims: the slices run has no core/v1 Endpoints
//!   object, the Endpoints run's server serves no `discovery.k8s.io/v1` and
//!   holds no (v1beta1) slice; no speaker logged an error on its endpoints watch.
//!
//! Each run prints one line per step with the time rt-01 took to show the
//! change, and its wall time (about 16 s for endpoints, 18 s for slices, run in parallel).

use std::collections::BTreeSet;
use std::fmt::Debug;
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
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

const NS: &str = "e2e";
const SVC: &str = "web";
const IP: &str = "172.17.254.1";
const PREFIX: &str = "172.17.254.1/32";
const NODES: [&str; 3] = ["k8s-node-01", "k8s-node-02", "k8s-node-03"];
const ADDRS: [&str; 3] = ["172.17.0.21", "172.17.0.22", "172.17.0.23"];
const EXCLUDE: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Where each namespace's socat listens (and the speakers' kubeconfig points).
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const METRICS: &str = "127.0.0.1:7472";
/// An IP only the stranding config's pool (172.17.253.0/24) holds.
const MOVED_IP: &str = "172.17.253.1";
const MOVED_PREFIX: &str = "172.17.253.1/32";
/// The label every Node carries and the peer selects (`node-selectors`).
const RACK: &str = "rack";
/// Bound for a route change to show up at rt-01.
const CONVERGE: Duration = Duration::from_secs(10);

const CONFIG: &str = "peers:
- peer-address: 172.17.0.1
  peer-asn: 64512
  my-asn: 64522
  hold-time: 3s
  node-selectors:
  - match-labels:
      rack: a
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
  node-selectors:
  - match-labels:
      rack: a
address-pools:
- name: default
  protocol: bgp
  addresses: [172.17.254.0/33]
";

/// Which endpoints API a run writes and its speakers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// core/v1 Endpoints on a plain 1.20 server (the speaker's fallback).
    Endpoints,
    /// discovery.k8s.io/v1 EndpointSlices through testlab's CRD.
    Slices,
}

impl Source {
    fn tag(self) -> &'static str {
        match self {
            Source::Endpoints => "endpoints",
            Source::Slices => "slices",
        }
    }

    /// What every speaker must log about where it reads endpoints from.
    fn speaker_says(self) -> &'static str {
        match self {
            Source::Endpoints => "EndpointSlice v1 not served: reading core/v1 Endpoints",
            Source::Slices => "reading endpoints from discovery.k8s.io/v1 EndpointSlices",
        }
    }

    /// What holds one group of endpoints.
    fn group(self) -> &'static str {
        match self {
            Source::Endpoints => "subset",
            Source::Slices => "slice",
        }
    }

    /// The node (index into `NODES`) whose speaker runs with
    /// `FERROLB_IGNORE_EXCLUDE_LB=true` (MetalLB's `--ignore-exclude-lb`,
    /// through its environment variable): node-03 on the Endpoints run.
    fn ignores_exclude_lb(self) -> Option<usize> {
        match self {
            Source::Endpoints => Some(2),
            Source::Slices => None,
        }
    }

    /// The speaker's name for its endpoints watch (in `watch error` lines).
    fn watch_name(self) -> &'static str {
        match self {
            Source::Endpoints => "watch=\"endpoints\"",
            Source::Slices => "watch=\"endpointslices\"",
        }
    }
}

/// One endpoint of the Service as the test writes it.
#[derive(Debug, Clone, Copy)]
struct Ep {
    /// Index into `NODES`.
    node: usize,
    ready: bool,
    serving: bool,
    terminating: bool,
}

fn ready(node: usize) -> Ep {
    Ep {
        node,
        ready: true,
        serving: true,
        terminating: false,
    }
}

fn not_ready(node: usize) -> Ep {
    Ep {
        node,
        ready: false,
        serving: false,
        terminating: false,
    }
}

/// A terminating endpoint (never ready), still `serving` or not.
fn terminating(node: usize, serving: bool) -> Ep {
    Ep {
        node,
        ready: false,
        serving,
        terminating: true,
    }
}

/// Endpoint `i` of group `g` on `node` gets 10.244.<node+1>.<10 g + i + 5>.
fn ep_ip(g: usize, i: usize, e: &Ep) -> String {
    format!("10.244.{}.{}", e.node + 1, 10 * g + i + 5)
}

fn target_ref(g: usize, i: usize, e: &Ep) -> serde_json::Value {
    json!({"kind": "Pod", "namespace": NS, "name": format!("{SVC}-{}-{g}{i}", e.node + 1)})
}

/// The core/v1 Endpoints object for `groups`, one subset per non-empty group:
/// ready endpoints in `addresses`, the others in `notReadyAddresses`. Terminating
/// endpoints have no form here (the Endpoints controller leaves terminating pods
/// out), so they are refused.
fn endpoints_object(groups: &[&[Ep]]) -> Result<Endpoints> {
    let mut subsets = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        for (i, e) in group.iter().enumerate() {
            ensure!(
                !e.terminating,
                "core/v1 Endpoints cannot carry a terminating endpoint: {e:?}"
            );
            let a = json!({"ip": ep_ip(g, i, e), "nodeName": NODES[e.node],
                           "targetRef": target_ref(g, i, e)});
            if e.ready {
                ready.push(a)
            } else {
                not_ready.push(a)
            }
        }
        subsets.push(json!({
            "addresses": ready,
            "notReadyAddresses": not_ready,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }));
    }
    Ok(serde_json::from_value(json!({
        "metadata": {"name": SVC, "namespace": NS},
        "subsets": subsets
    }))?)
}

/// The EndpointSlice `web-<g>` for group `g`, labelled as the EndpointSlice
/// controller labels them.
fn slice_object(g: usize, group: &[Ep]) -> Result<EndpointSlice> {
    let endpoints: Vec<_> = group
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "addresses": [ep_ip(g, i, e)],
                "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating},
                "nodeName": NODES[e.node],
                "targetRef": target_ref(g, i, e)
            })
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{SVC}-{g}"), "namespace": NS, "labels": {
            SERVICE_NAME_LABEL: SVC,
            "endpointslice.kubernetes.io/managed-by": "e2e.ferrolb.test"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))?)
}

/// Create, or replace (PUT, with the current resourceVersion): a CRD takes no
/// strategic merge patch, and replace is what works for both kinds.
async fn put<K>(api: &Api<K>, mut obj: K) -> Result<()>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj.name_any();
    match api.get_opt(&name).await? {
        Some(cur) => {
            obj.meta_mut().resource_version = cur.resource_version();
            api.replace(&name, &PostParams::default(), &obj).await?;
        }
        None => {
            api.create(&PostParams::default(), &obj).await?;
        }
    }
    Ok(())
}

/// Makes the Service's endpoints exactly `groups`: on the Endpoints path one
/// Endpoints object with a subset per group; on the slices path one
/// EndpointSlice per group (`web-0`, `web-1`, …; slices beyond are deleted).
async fn set_endpoints(c: &Client, path: Source, groups: &[&[Ep]]) -> Result<()> {
    match path {
        Source::Endpoints => put(&Api::namespaced(c.clone(), NS), endpoints_object(groups)?).await,
        Source::Slices => {
            let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), NS);
            let mut want = BTreeSet::new();
            for (g, group) in groups.iter().enumerate() {
                let s = slice_object(g, group)?;
                want.insert(s.name_any());
                put(&slices, s).await?;
            }
            let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={SVC}"));
            for s in slices.list(&lp).await?.items {
                if !want.contains(&s.name_any()) {
                    slices
                        .delete(&s.name_any(), &DeleteParams::default())
                        .await?;
                }
            }
            Ok(())
        }
    }
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// A speaker for `node`; `ignore_exclude_lb` sets `FERROLB_IGNORE_EXCLUDE_LB=true`
/// in its environment (and it is removed otherwise).
fn speaker(ns: &Netns, node: &str, kubeconfig: &Path, ignore_exclude_lb: bool) -> Result<Proc> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    cmd.args(["speaker", "--node-name", node, "--metrics-addr", METRICS])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    if ignore_exclude_lb {
        cmd.env("FERROLB_IGNORE_EXCLUDE_LB", "true");
    } else {
        cmd.env_remove("FERROLB_IGNORE_EXCLUDE_LB");
    }
    ns.spawn_labeled(cmd, &format!("speaker-{node}"))
}

/// Node `name` as the test writes it; with `rack` it carries `rack: a`, which
/// the peer selects.
fn node_object(name: &str, rack: bool) -> Result<Node> {
    let mut labels = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
    if rack {
        labels[RACK] = json!("a");
    }
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}}),
    )?)
}

/// Sets the Service's `status.loadBalancer.ingress` to `ip`.
async fn set_status_ip(c: &Client, ip: &str) -> Result<()> {
    Api::<Service>::namespaced(c.clone(), NS)
        .patch_status(
            SVC,
            &PatchParams::default(),
            &merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
        )
        .await?;
    Ok(())
}

/// The paths rt-01 holds for `prefix`, by next hop.
fn paths_of(g: &Gobgpd, prefix: &str) -> Result<Vec<ferrolb_testlab::RoutePath>> {
    let rib: Vec<Route> = g.rib(Family::Ipv4Unicast)?;
    Ok(rib
        .into_iter()
        .find(|r| r.prefix == prefix)
        .map(|r| r.paths)
        .unwrap_or_default())
}

/// The paths rt-01 holds for `PREFIX`, by next hop.
fn paths(g: &Gobgpd) -> Result<Vec<ferrolb_testlab::RoutePath>> {
    paths_of(g, PREFIX)
}

fn next_hops_of(g: &Gobgpd, prefix: &str) -> Result<BTreeSet<String>> {
    Ok(paths_of(g, prefix)?
        .into_iter()
        .map(|p| p.nexthop)
        .collect())
}

fn next_hops(g: &Gobgpd) -> Result<BTreeSet<String>> {
    next_hops_of(g, PREFIX)
}

/// Waits until rt-01's next hops for `prefix` are exactly `want`.
fn wait_prefix(
    g: &Gobgpd,
    prefix: &str,
    want: &[&str],
    timeout: Duration,
    what: &str,
) -> Result<Duration> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let t0 = Instant::now();
    let mut last;
    loop {
        last = next_hops_of(g, prefix)?;
        if last == want {
            eprintln!(
                "{what}: {want:?} for {prefix} at rt-01 after {:?}",
                t0.elapsed()
            );
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            bail!(
                "{what}: rt-01 next hops for {prefix} are {last:?}, want {want:?} (waited {timeout:?})"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until rt-01's next hops for `PREFIX` are exactly `want`.
fn wait_next_hops(g: &Gobgpd, want: &[&str], timeout: Duration, what: &str) -> Result<Duration> {
    wait_prefix(g, PREFIX, want, timeout, what)
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

fn merge(v: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(v)
}

/// The speakers read core/v1 Endpoints (a plain 1.20 server).
#[test]
fn speaker_on_core_v1_endpoints() -> Result<()> {
    run(Source::Endpoints)
}

/// The speakers read discovery.k8s.io/v1 EndpointSlices (1.20 with testlab's CRD).
#[test]
fn speaker_on_endpointslices_v1() -> Result<()> {
    run(Source::Slices)
}

fn run(source: Source) -> Result<()> {
    let test = format!("speaker_e2e ({})", source.tag());
    require_or_return!(&test, "gobgpd", "gobgp", "socat", "curl", "ss");
    let t0 = Instant::now();
    let api = match source {
        Source::Endpoints => KubeApiServer::start()?,
        Source::Slices => KubeApiServer::start_with_slices_v1()?,
    };
    let Some(api) = api else {
        return Ok(());
    };
    eprintln!(
        "[{}] kube-apiserver ready after {:?}",
        source.tag(),
        t0.elapsed()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let res = scenario(&rt, &api, source);
    if res.is_err() {
        eprintln!(
            "[{}] kube-apiserver logs: {}",
            source.tag(),
            api.dir().display()
        );
    } else {
        eprintln!("[{}] whole run took {:?}", source.tag(), t0.elapsed());
    }
    res
}

fn scenario(rt: &tokio::runtime::Runtime, api: &KubeApiServer, source: Source) -> Result<()> {
    let dir = TestDir::new(&format!("speaker-e2e-{}", source.tag()))?;
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
                .create(&PostParams::default(), &node_object(n, true)?)
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
        set_endpoints(&c, source, &[&[ready(0)]]).await
    })?;

    // One socat per node namespace, then the speakers.
    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let mut speakers = Vec::new();
    for (i, (ns, node)) in lab.nodes.iter().zip(NODES).enumerate() {
        let ignore = source.ignores_exclude_lb() == Some(i);
        speakers.push(speaker(ns, node, &kubeconfig, ignore)?);
    }
    for s in &speakers {
        // The speaker logs to stderr.
        ferrolb_testlab::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            s.stderr().contains("caches synced").then_some(())
        })
        .with_context(|| format!("{} never synced: {}", s.label(), s.stderr_tail(20)))?;
        // It says which endpoints API it reads, before it syncs.
        let log = s.stderr();
        let other = match source {
            Source::Endpoints => Source::Slices,
            Source::Slices => Source::Endpoints,
        };
        ensure!(
            log.contains(source.speaker_says()) && !log.contains(other.speaker_says()),
            "{}: want {:?} in its log, not {:?}: {}",
            s.label(),
            source.speaker_says(),
            other.speaker_says(),
            s.stderr_tail(20)
        );
    }
    let run = Run {
        source,
        rt,
        c: &c,
        g: &g,
    };
    let result = steps(&run, api, &lab, &mut speakers);
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

/// One run's handles, so that the steps read as the scenario.
struct Run<'a> {
    source: Source,
    rt: &'a tokio::runtime::Runtime,
    c: &'a Client,
    g: &'a Gobgpd,
}

impl Run<'_> {
    fn what(&self, what: &str) -> String {
        format!("[{}] {what}", self.source.tag())
    }

    /// Waits (up to `CONVERGE`) until rt-01's next hops are exactly `want`.
    fn wait(&self, want: &[&str], what: &str) -> Result<Duration> {
        wait_next_hops(self.g, want, CONVERGE, &self.what(what))
    }

    /// Checks for `dur` that rt-01's next hops stay exactly `want`.
    fn hold(&self, want: &[&str], dur: Duration, what: &str) -> Result<()> {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        let until = Instant::now() + dur;
        while Instant::now() < until {
            let hops = next_hops(self.g)?;
            ensure!(
                hops == want,
                "{}: rt-01 next hops changed to {hops:?}, want {want:?}",
                self.what(what)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{}: {want:?} held for {dur:?}", self.what(what));
        Ok(())
    }

    /// Makes the Service's endpoints exactly `groups` ([`set_endpoints`]).
    fn set(&self, groups: &[&[Ep]]) -> Result<()> {
        self.rt.block_on(set_endpoints(self.c, self.source, groups))
    }

    /// Sets the Service's `externalTrafficPolicy`.
    fn policy(&self, policy: &str) -> Result<()> {
        let svcs: Api<Service> = Api::namespaced(self.c.clone(), NS);
        self.rt.block_on(svcs.patch(
            SVC,
            &PatchParams::default(),
            &merge(json!({"spec": {"externalTrafficPolicy": policy}})),
        ))?;
        Ok(())
    }
}

fn steps(run: &Run, api: &KubeApiServer, lab: &RefLab, speakers: &mut [Proc]) -> Result<()> {
    let (rt, c, g) = (run.rt, run.c, run.g);
    let nodes: Api<Node> = Api::all(c.clone());
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "metallb-system");
    let pp = PatchParams::default();
    let none: &[&str] = &[];

    // 1. Cluster policy, the only endpoint on node-01: every node announces.
    for a in ADDRS {
        g.wait_established(a, Duration::from_secs(20))?;
    }
    wait_next_hops(
        g,
        &ADDRS,
        Duration::from_secs(20),
        &run.what("cluster policy"),
    )?;
    for p in paths(g)? {
        ensure!(p.as_path == vec![64522], "AS path {:?}", p.as_path);
        ensure!(
            p.origin == Some(Origin::Incomplete),
            "origin {:?}",
            p.origin
        );
    }

    // 2. node-01 excluded from external load balancers: only its path goes.
    //    On the Endpoints run node-03 carries the label too, but its speaker
    //    runs with FERROLB_IGNORE_EXCLUDE_LB=true: it keeps its path.
    let excluded: Vec<usize> = [0]
        .into_iter()
        .chain(run.source.ignores_exclude_lb())
        .collect();
    for &i in &excluded {
        rt.block_on(nodes.patch(
            NODES[i],
            &pp,
            &merge(json!({"metadata": {"labels": {EXCLUDE: ""}}})),
        ))?;
    }
    run.wait(&ADDRS[1..], "node-01 excluded")?;
    if let Some(i) = run.source.ignores_exclude_lb() {
        run.hold(
            &ADDRS[1..],
            Duration::from_secs(2),
            &format!(
                "node-01 and {} excluded, {}'s speaker with FERROLB_IGNORE_EXCLUDE_LB=true",
                NODES[i], NODES[i]
            ),
        )?;
    }
    for &i in &excluded {
        rt.block_on(nodes.patch(
            NODES[i],
            &pp,
            &merge(json!({"metadata": {"labels": {EXCLUDE: null}}})),
        ))?;
    }
    run.wait(&ADDRS, "node-01 label removed")?;

    // 3. Cluster policy, readiness: no ready endpoint anywhere → no node announces.
    run.set(&[&[not_ready(0)]])?;
    run.wait(none, "cluster policy, the only endpoint not ready")?;
    run.set(&[&[ready(0)]])?;
    run.wait(&ADDRS, "cluster policy, the endpoint ready again")?;
    match run.source {
        Source::Slices => {
            // Serving while terminating (KEP-1669) can take traffic: from nothing
            // announced, such an endpoint alone brings every path back.
            run.set(&[&[not_ready(0)]])?;
            run.wait(none, "cluster policy, not ready")?;
            run.set(&[&[terminating(0, true)]])?;
            run.wait(&ADDRS, "cluster policy, terminating but serving")?;
            run.set(&[&[terminating(0, false)]])?;
            run.wait(none, "cluster policy, terminating, no longer serving")?;
            run.set(&[&[ready(0)]])?;
            run.wait(&ADDRS, "cluster policy, ready again")?;
        }
        // The case does not exist on core/v1 Endpoints: the Endpoints controller
        // lists a terminating pod in neither `addresses` nor `notReadyAddresses`
        // (only `publishNotReadyAddresses` keeps it, as a ready address), so a
        // terminating endpoint is simply gone, as in step 3 with no endpoint.
        Source::Endpoints => {}
    }

    // 4. Local policy: only the node with the endpoint announces.
    run.set(&[&[ready(1)]])?;
    run.policy("Local")?;
    run.wait(&[ADDRS[1]], "local policy, endpoint on node-02")?;
    run.set(&[&[ready(2)]])?;
    run.wait(&[ADDRS[2]], "endpoint moved to node-03")?;

    // 5. Local policy, readiness: that node's path goes and comes back.
    run.set(&[&[not_ready(2)]])?;
    run.wait(none, "local policy, the endpoint on node-03 not ready")?;
    run.set(&[&[ready(2)]])?;
    run.wait(
        &[ADDRS[2]],
        "local policy, the endpoint on node-03 ready again",
    )?;

    // 6. Local policy, the pod on node-03 starts terminating while still serving:
    //    still announced; once it stops serving, withdrawn (slices only, see 3).
    if run.source == Source::Slices {
        run.set(&[&[terminating(2, true)]])?;
        run.hold(
            &[ADDRS[2]],
            Duration::from_millis(1500),
            "local policy, node-03 terminating but serving: still announced",
        )?;
        run.set(&[&[terminating(2, false)]])?;
        run.wait(none, "local policy, node-03 terminating, no longer serving")?;
        run.set(&[&[ready(2)]])?;
        run.wait(&[ADDRS[2]], "local policy, node-03 ready again")?;
    }

    // 7. Endpoints split over two slices (two subsets of the Endpoints object),
    //    folded per Service: each node sees its own endpoint in its slice.
    let group = run.source.group();
    run.set(&[&[ready(1)], &[ready(2)]])?;
    run.wait(
        &ADDRS[1..],
        &format!("local policy, two {group}s: node-02 and node-03"),
    )?;
    run.set(&[&[not_ready(1)], &[ready(2)]])?;
    run.wait(
        &[ADDRS[2]],
        &format!("local policy, two {group}s: node-02's not ready"),
    )?;
    run.set(&[&[ready(1)], &[ready(2)]])?;
    run.wait(
        &ADDRS[1..],
        &format!("local policy, two {group}s: node-02's ready again"),
    )?;
    run.set(&[&[ready(1)]])?;
    run.wait(
        &[ADDRS[1]],
        &format!("local policy, node-03's {group} deleted"),
    )?;
    run.set(&[&[ready(2)]])?;
    run.wait(
        &[ADDRS[2]],
        &format!("local policy, one {group}, endpoint on node-03"),
    )?;

    // 8. An invalid ConfigMap: nothing withdrawn, speakers alive, config stale.
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
    run.hold(&[ADDRS[2]], Duration::from_secs(3), "an invalid config")?;
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
    run.hold(
        &[ADDRS[2]],
        Duration::from_secs(3),
        "a config that strands the Service's IP",
    )?;
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
    run.policy("Cluster")?;
    run.wait(&ADDRS, "cluster policy on the last good config")?;

    // 8b. (Endpoints run) The stranding config is looked at again when the
    //     cluster changes: the Service's status moves to 172.17.253.1, which
    //     only that config's pool holds, and every speaker applies it with no
    //     ConfigMap change (stale 0, "configuration loaded" once more, the new
    //     IP announced). Then back: status to 172.17.254.1 and the first config.
    if run.source == Source::Endpoints {
        let cm_version = rt.block_on(cms.get("config"))?.resource_version();
        let loaded = |s: &Proc| s.stderr().matches("configuration loaded").count();
        let loads: Vec<usize> = speakers.iter().map(loaded).collect();
        for ns in &lab.nodes {
            let m = metrics(ns)?;
            ensure!(
                m.contains("metallb_k8s_client_config_stale_bool 1"),
                "{}: not stale under the stranding config:\n{m}",
                ns.name()
            );
        }
        let t0 = Instant::now();
        rt.block_on(set_status_ip(c, MOVED_IP))?;
        for (i, (s, ns)) in speakers.iter().zip(&lab.nodes).enumerate() {
            let ok = ferrolb_testlab::wait_until(CONVERGE, Duration::from_millis(100), || {
                (loaded(s) > loads[i]
                    && metrics(ns).is_ok_and(|m| {
                        m.contains("metallb_k8s_client_config_stale_bool 0")
                            && m.contains("metallb_k8s_client_config_loaded_bool 1")
                    }))
                .then_some(())
            });
            ensure!(
                ok.is_some(),
                "{}: the stranding config was not applied after the Service moved: {:?}\n{}",
                s.label(),
                metrics(ns),
                s.stderr_tail(10)
            );
        }
        eprintln!(
            "{}",
            run.what(&format!(
                "stranding config applied by every speaker {:?} after the Service moved to {MOVED_IP}",
                t0.elapsed()
            ))
        );
        wait_prefix(
            g,
            MOVED_PREFIX,
            &ADDRS,
            CONVERGE,
            &run.what("status moved into the stranding config's pool"),
        )?;
        run.wait(none, "status moved away from 172.17.254.1")?;
        ensure!(
            rt.block_on(cms.get("config"))?.resource_version() == cm_version,
            "the ConfigMap changed"
        );
        rt.block_on(set_status_ip(c, IP))?;
        rt.block_on(cms.patch("config", &pp, &merge(json!({"data": {"config": CONFIG}}))))?;
        run.wait(&ADDRS, "status and config back")?;
        wait_prefix(
            g,
            MOVED_PREFIX,
            none,
            CONVERGE,
            &run.what("status and config back"),
        )?;
    }

    // 9. SIGTERM on node-02's speaker: its path gone within 1 s, exit 0.
    let t0 = Instant::now();
    speakers[1].signal("TERM")?;
    let gone = wait_next_hops(
        g,
        &[ADDRS[0], ADDRS[2]],
        Duration::from_secs(5),
        &run.what("node-02 speaker SIGTERM"),
    )?;
    let elapsed = t0.elapsed();
    eprintln!(
        "{}",
        run.what(&format!(
            "SIGTERM → path gone at rt-01 in {elapsed:?} (poll saw it after {gone:?})"
        ))
    );
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

    // 10. The nodeAssigned Event.
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
    eprintln!(
        "{}",
        run.what(&format!(
            "{} nodeAssigned events, first: {:?}",
            found.len(),
            found[0]
        ))
    );

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

    // 11. (Slices run) A Node object that disappears keeps its last labels in
    //     its speaker: node-03's Node is deleted and its speaker keeps the
    //     session (selected by rack=a) and the path for 3 s; re-created
    //     without the label, the path and the session go.
    if run.source == Source::Slices {
        rt.block_on(nodes.delete(NODES[2], &DeleteParams::default()))?;
        ensure!(
            rt.block_on(nodes.get_opt(NODES[2]))?.is_none(),
            "{} still exists after its deletion",
            NODES[2]
        );
        let want: BTreeSet<String> = [ADDRS[0], ADDRS[2]].iter().map(|s| s.to_string()).collect();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let hops = next_hops(g)?;
            ensure!(
                hops == want,
                "{} deleted: rt-01 next hops {hops:?}, want {want:?}",
                NODES[2]
            );
            let st = g.neighbor_state(ADDRS[2])?;
            ensure!(
                st.is_established(),
                "{} deleted: its session is {st:?}",
                NODES[2]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "{}",
            run.what("node-03's Node deleted: session and path kept for 3s")
        );
        let t0 = Instant::now();
        rt.block_on(nodes.create(&PostParams::default(), &node_object(NODES[2], false)?))?;
        run.wait(&[ADDRS[0]], "node-03's Node re-created without rack=a")?;
        let down = ferrolb_testlab::wait_until(CONVERGE, Duration::from_millis(100), || {
            g.neighbor_state(ADDRS[2])
                .is_ok_and(|s| !s.is_established())
                .then_some(())
        });
        ensure!(
            down.is_some(),
            "node-03's session stayed up with no peer selecting it: {:?}",
            g.neighbor_state(ADDRS[2])
        );
        eprintln!(
            "{}",
            run.what(&format!(
                "node-03's session down {:?} after its Node came back without rack=a",
                t0.elapsed()
            ))
        );
    }

    // 12. The run went through the API it claims, and its watch never failed.
    match run.source {
        Source::Slices => {
            let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
            let listed = rt.block_on(eps.list(&ListParams::default()))?.items;
            ensure!(
                listed.is_empty(),
                "the slices run has core/v1 Endpoints: {:?}",
                listed.iter().map(|e| e.name_any()).collect::<Vec<_>>()
            );
            let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), NS);
            let names: Vec<String> = rt
                .block_on(slices.list(&ListParams::default()))?
                .items
                .iter()
                .map(|s| s.name_any())
                .collect();
            ensure!(
                names == [format!("{SVC}-0")],
                "slices at the end: {names:?}"
            );
        }
        Source::Endpoints => {
            let v1 = api.request("GET", "/apis/discovery.k8s.io/v1", None)?;
            ensure!(
                v1.status == 404,
                "the Endpoints run's server serves discovery.k8s.io/v1: HTTP {}",
                v1.status
            );
            let beta = api
                .request("GET", "/apis/discovery.k8s.io/v1beta1/endpointslices", None)?
                .json()?;
            ensure!(
                beta["items"].as_array().is_some_and(Vec::is_empty),
                "the Endpoints run has EndpointSlices: {beta}"
            );
        }
    }
    for s in speakers.iter() {
        let log = s.stderr();
        let failed: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("watch error") && l.contains(run.source.watch_name()))
            .collect();
        ensure!(failed.is_empty(), "{}: {failed:?}", s.label());
    }
    eprintln!(
        "{}",
        run.what(&format!(
            "endpoints read only through {}",
            match run.source {
                Source::Slices => "discovery.k8s.io/v1 EndpointSlices (no core/v1 Endpoints exist)",
                Source::Endpoints =>
                    "core/v1 Endpoints (no EndpointSlice exists or is served as v1)",
            }
        ))
    );
    Ok(())
}
