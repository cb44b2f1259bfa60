//! Layer 2 mode end to end: a real kube-apiserver v1.20.2 (testlab), the
//! reference lab of DESIGN.md as network namespaces (testlab's `RefLab`, plus
//! IPv6 on the cluster LAN), and three `ferrolb speaker`s, one in each node
//! namespace, gossiping with each other on their node addresses (port 7946).
//! No kubelet and no controller: the test writes the Nodes, the speaker Pods
//! (ready, with their pod IP, so that the speakers find each other as in a
//! cluster), the ConfigMap, the Services with their
//! `status.loadBalancer.ingress` and their Endpoints.
//!
//! Each node namespace is set up as kube-proxy in IPVS mode with
//! `strictARP: true` sets up a node: every Service IP on a local interface
//! (`lo` here; kube-proxy uses a dummy `kube-ipvs0`) so the node takes the
//! traffic, and
//! `arp_ignore=1`, `arp_announce=2` (so the kernel does not answer ARP for
//! them). A small HTTP server on each node answers with the node's name.
//!
//! Checked from rt-01 (arping, ndisc6) and on the cluster LAN's bridge (tcpdump):
//! - exactly one MAC answers ARP for each of 10 Cluster-policy IPs, and NDP
//!   for the IPv6 IP of a dual-stack Service; that MAC is the node the
//!   rendezvous order (`sha256(node#ip)`) names, and the 10 IPs are not all
//!   on one node;
//! - a Local-policy Service is answered by the node with its endpoint;
//! - the exclude-from-external-load-balancers label on a node moves its IPs,
//!   and only those, to the next node; removed, they come back;
//! - client-01 reaches the Service through rt-01, and the owner node answers;
//! - the owner reports it: `metallb_speaker_announced{protocol="layer2"}`,
//!   `metallb_layer2_*` counters, a `nodeAssigned` Event, a `ServiceL2Status`;
//! - SIGKILL of the owner's speaker: the next node in order answers (time
//!   printed), a gratuitous ARP from its MAC is seen on the wire, client-01's
//!   requests resume on that node, and no other IP moves;
//! - the killed speaker restarted: it answers again exactly for the IPs where
//!   it ranks first (it owns them again) and for no other.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_speaker::layer2::rank;
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{Netns, Proc, RefLab, TestDir, require_or_return};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, Service};
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
const ADDRS6: [&str; 3] = ["fd00:17::21", "fd00:17::22", "fd00:17::23"];
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const METRICS: &str = "127.0.0.1:7472";
/// The dual-stack Service's IPv6 IP.
const WEB6: &str = "fd00:17::200";
/// The Local-policy Service's IP.
const LOCAL_IP: &str = "172.17.0.201";
/// How long an IP may take to be answered as expected.
const CONVERGE: Duration = Duration::from_secs(15);

const CONFIG: &str = "address-pools:
- name: lan
  protocol: layer2
  addresses:
  - 172.17.0.200-172.17.0.219
  - fd00:17::200-fd00:17::21f
";

/// The 10 Cluster-policy Services: `web` (dual-stack) and `s1`..`s9`.
fn cluster_services() -> Vec<(String, Vec<String>)> {
    let mut v = vec![(
        "web".to_string(),
        vec!["172.17.0.200".to_string(), WEB6.to_string()],
    )];
    for i in 1..10 {
        v.push((format!("s{i}"), vec![format!("172.17.0.{}", 201 + i)]));
    }
    v
}

/// The node the rendezvous order names for `ip` among `alive` (node indexes).
fn owner_of(ip: &str, alive: &[usize]) -> usize {
    let ip: IpAddr = ip.parse().unwrap();
    *alive
        .iter()
        .min_by_key(|&&i| rank(NODES[i], ip))
        .expect("some node alive")
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

fn speaker(ns: &Netns, i: usize, kubeconfig: &Path, n: usize) -> Result<Proc> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    cmd.args([
        "speaker",
        "--node-name",
        NODES[i],
        "--metrics-addr",
        METRICS,
    ])
    .arg("--kubeconfig")
    .arg(kubeconfig)
    .env("FERROLB_ML_BIND_ADDR", ADDRS[i])
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1");
    ns.spawn_labeled(cmd, &format!("speaker-{}-{n}", NODES[i]))
}

/// The MAC address of `ifname` in `ns`, lower case.
fn mac_of(ns: &Netns, ifname: &str) -> Result<String> {
    let out = ns.ip(&["-br", "link", "show", ifname])?;
    out.split_whitespace()
        .nth(2)
        .map(str::to_lowercase)
        .with_context(|| format!("no MAC in {out:?}"))
}

/// The MACs that answer an ARP request (IPv4) or a Neighbor Solicitation
/// (IPv6) for `ip`, sent by rt-01 on the cluster LAN (two tries).
fn answers(rt: &Netns, ip: &str) -> Result<BTreeSet<String>> {
    let out = if ip.contains(':') {
        rt.exec(&["ndisc6", "-m", "-n", "-r", "2", "-w", "400", ip, "eth2"])?
    } else {
        rt.exec(&["arping", "-b", "-c", "2", "-w", "1", "-I", "eth2", ip])?
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut macs = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.split("reply from").nth(1) {
            // "Unicast reply from 172.17.0.200 [AA:BB:CC:DD:EE:FF]  0.7ms"
            if let Some(m) = rest.split('[').nth(1).and_then(|r| r.split(']').next()) {
                macs.insert(m.to_lowercase());
            }
        } else if let Some(m) = line.split("link-layer address:").nth(1) {
            macs.insert(m.trim().to_lowercase());
        }
    }
    Ok(macs)
}

/// Waits until exactly `want` answers for `ip`; returns how long it took.
fn wait_answer(rt: &Netns, ip: &str, want: &str, what: &str) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        let got = answers(rt, ip)?;
        if got.len() == 1 && got.contains(want) {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > CONVERGE {
            let raw = rt.exec(&["arping", "-b", "-c", "2", "-w", "1", "-I", "eth2", ip])?;
            bail!(
                "{what}: {ip} answered by {got:?}, want only {want} (waited {CONVERGE:?}); arping says: {}{}",
                String::from_utf8_lossy(&raw.stdout),
                String::from_utf8_lossy(&raw.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One GET from client-01 to `http://ip/`: the answering node's name.
fn fetch(client: &Netns, ip: &str) -> Option<String> {
    client
        .run(&["curl", "-s", "--max-time", "1", &format!("http://{ip}/")])
        .ok()
        .map(|s| s.trim().to_string())
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

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn layer2_owner_answers_fails_over_and_spreads() -> Result<()> {
    require_or_return!(
        "l2_e2e", "socat", "curl", "arping", "ndisc6", "tcpdump", "python3"
    );
    let t0 = Instant::now();
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    eprintln!("kube-apiserver ready after {:?}", t0.elapsed());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let res = scenario(&rt, &api, Mode::Test);
    if res.is_err() {
        eprintln!("kube-apiserver logs: {}", api.dir().display());
    } else {
        eprintln!("whole run took {:?}", t0.elapsed());
    }
    res
}

/// bench/l2-failover (not a timed test: ignored unless asked for, prints
/// figures): the owner of 172.17.0.200 has its speaker SIGKILLed, `rounds`
/// times; each time, how long until rt-01 gets the first ARP answer from the
/// new owner, and until client-01's HTTP request through rt-01 is served by
/// it. `FERROLB_L2_BENCH_ROUNDS` sets the rounds (default 20).
#[test]
#[ignore = "a benchmark: bench/l2-failover/run"]
fn l2_failover_bench() -> Result<()> {
    require_or_return!(
        "l2_failover_bench",
        "socat",
        "curl",
        "arping",
        "ndisc6",
        "tcpdump",
        "python3",
        "stdbuf"
    );
    let rounds = std::env::var("FERROLB_L2_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    scenario(&rt, &api, Mode::Bench(rounds))
}

fn crds() -> Result<Vec<serde_json::Value>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/crds.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(doc)?)?;
        if v["metadata"]["name"] == "servicel2statuses.metallb.io" {
            out.push(v);
        }
    }
    ensure!(
        !out.is_empty(),
        "no servicel2statuses CRD in {}",
        path.display()
    );
    Ok(out)
}

fn l2_status_api(c: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        c.clone(),
        SYS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("metallb.io", "v1beta1", "ServiceL2Status"),
            "servicel2statuses",
        ),
    )
}

/// The Kubernetes objects a cluster would have: namespaces, Nodes, the
/// speaker Pods (ready, pod IP = node IP), the ConfigMap, the Services with
/// their IPs and their Endpoints.
async fn objects(c: &Client, local_node: usize) -> Result<()> {
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
    for n in NODES {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": n,
                    "labels": {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}}}))?,
            )
            .await?;
    }
    // The speaker Pods, as the DaemonSet would make them (no kubelet: the
    // status is written here).
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.clone(), SYS);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "speaker"}}))?,
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), SYS);
    for (n, a) in NODES.iter().zip(ADDRS) {
        let name = format!("speaker-{n}");
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {
                    "app.kubernetes.io/name": "ferrolb",
                    "app.kubernetes.io/component": "speaker"}},
                "spec": {"nodeName": n, "serviceAccountName": "speaker",
                    "automountServiceAccountToken": false, "hostNetwork": true,
                    "containers": [{"name": "speaker", "image": "ferrolb"}]}
            }))?,
        )
        .await?;
        pods.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "podIP": a,
                "podIPs": [{"ip": a}],
                "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await?;
    }
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), SYS);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "config"}, "data": {"config": CONFIG}}),
        )?,
    )
    .await?;
    let mut all: Vec<(String, Vec<String>, &str, usize)> = cluster_services()
        .into_iter()
        .map(|(n, ips)| (n, ips, "Cluster", 0))
        .collect();
    all.push(("local".into(), vec![LOCAL_IP.into()], "Local", local_node));
    let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
    for (name, ips, policy, ep_node) in all {
        svcs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy,
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
            }))?,
        )
        .await?;
        let ingress: Vec<serde_json::Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        svcs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": ingress}}})),
        )
        .await?;
        eps.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name},
                "subsets": [{"addresses": [{"ip": format!("10.244.{ep_node}.10"),
                    "nodeName": NODES[ep_node]}], "ports": [{"name": "http", "port": 80}]}]
            }))?,
        )
        .await?;
    }
    Ok(())
}

/// A node namespace as kube-proxy (IPVS, strictARP) leaves it: the Service
/// IPs on a local interface (kube-proxy uses a dummy `kube-ipvs0`; `lo` here,
/// which the kernel treats the same for ARP, and needs no dummy module), ARP
/// for them answered by nobody but the speaker.
fn prepare_node(ns: &Netns, i: usize, ips: &[String]) -> Result<()> {
    ns.add_addr("eth0", &format!("{}/64", ADDRS6[i]))?;
    for s in [
        "net.ipv4.conf.all.arp_ignore=1",
        "net.ipv4.conf.all.arp_announce=2",
    ] {
        ns.run(&["sysctl", "-qw", s])?;
    }
    for ip in ips {
        let cidr = if ip.contains(':') {
            format!("{ip}/128")
        } else {
            format!("{ip}/32")
        };
        ns.add_addr("lo", &cidr)?;
    }
    Ok(())
}

/// What to do once the lab and the speakers are up.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// The end-to-end checks.
    Test,
    /// bench/l2-failover: this many kill/measure/restart rounds.
    Bench(usize),
}

fn scenario(rt: &tokio::runtime::Runtime, api: &KubeApiServer, mode: Mode) -> Result<()> {
    let dir = TestDir::new("l2-e2e")?;
    let lab = RefLab::new()?;
    lab.rt01.add_addr("eth2", "fd00:17::1/64")?;
    let services = cluster_services();
    let mut every_ip: Vec<String> = services.iter().flat_map(|(_, ips)| ips.clone()).collect();
    every_ip.push(LOCAL_IP.into());
    for (i, ns) in lab.nodes.iter().enumerate() {
        prepare_node(ns, i, &every_ip)?;
    }
    let macs: Vec<String> = lab
        .nodes
        .iter()
        .map(|ns| mac_of(ns, "eth0"))
        .collect::<Result<_>>()?;
    let node_of_mac = |m: &str| {
        macs.iter()
            .position(|x| x == m)
            .map_or_else(|| format!("unknown MAC {m}"), |i| NODES[i].to_string())
    };
    let mut httpds = Vec::new();
    for (ns, n) in lab.nodes.iter().zip(NODES) {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/httpd"))
            .arg(n);
        httpds.push(ns.spawn_labeled(cmd, &format!("httpd-{n}"))?);
    }
    // Everything ARP on the cluster LAN, to see the gratuitous ARPs.
    let mut tcpdump = {
        let mut cmd = std::process::Command::new("tcpdump");
        cmd.args(["-l", "-n", "-e", "-i", "br0", "arp"]);
        lab.cluster_lan.switch().spawn_labeled(cmd, "tcpdump")?
    };

    // The Local Service's endpoint: on a node that does not rank first for
    // its IP, so that only the policy can make it the owner.
    let all = [0, 1, 2];
    let local_node = (owner_of(LOCAL_IP, &all) + 1) % 3;

    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api.port()?).into(),
    )?;
    let kubeconfig = dir.path().join("speaker.kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{RELAY_LISTEN}"))?;
    let c = rt.block_on(client(api.kubeconfig_path()))?;
    rt.block_on(objects(&c, local_node))?;

    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let mut speakers: Vec<Proc> = lab
        .nodes
        .iter()
        .enumerate()
        .map(|(i, ns)| speaker(ns, i, &kubeconfig, 0))
        .collect::<Result<_>>()?;
    let res = match mode {
        Mode::Test => steps(
            rt,
            &c,
            &lab,
            &kubeconfig,
            &mut speakers,
            &macs,
            &node_of_mac,
            local_node,
            &mut tcpdump,
        ),
        Mode::Bench(rounds) => bench(&lab, &kubeconfig, &mut speakers, &macs, rounds),
    };
    if res.is_err() {
        for s in &speakers {
            eprintln!("--- {} stderr (tail):\n{}", s.label(), s.stderr_tail(40));
        }
        eprintln!("--- tcpdump (tail):\n{}", tcpdump.stdout_tail(30));
    }
    res
}

trait Tail {
    fn stdout_tail(&self, n: usize) -> String;
}

impl Tail for Proc {
    fn stdout_tail(&self, n: usize) -> String {
        let s = self.stdout();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

#[allow(clippy::too_many_arguments)]
fn steps(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    lab: &RefLab,
    kubeconfig: &Path,
    speakers: &mut [Proc],
    macs: &[String],
    node_of_mac: &dyn Fn(&str) -> String,
    local_node: usize,
    tcpdump: &mut Proc,
) -> Result<()> {
    let services = cluster_services();
    let all = [0, 1, 2];
    for s in speakers.iter() {
        ferrolb_testlab::wait_until(CONVERGE, Duration::from_millis(50), || {
            s.stderr().contains("caches synced").then_some(())
        })
        .with_context(|| format!("{} never synced: {}", s.label(), s.stderr_tail(20)))?;
    }

    // 1. Every IP: exactly one MAC, the one the order names.
    let t = Instant::now();
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for (name, ips) in &services {
        let o = owner_of(&ips[0], &all);
        for ip in ips {
            wait_answer(&lab.rt01, ip, &macs[o], name)?;
            owners.insert(ip.clone(), o);
        }
    }
    eprintln!(
        "10 Services (11 IPs, one IPv6) answered by one MAC each after {:?}: {:?}",
        t.elapsed(),
        owners
            .iter()
            .map(|(ip, o)| format!("{ip}={}", NODES[*o]))
            .collect::<Vec<_>>()
    );
    let distinct: BTreeSet<usize> = owners.values().copied().collect();
    ensure!(
        distinct.len() >= 2,
        "all 10 Services on one node: {owners:?}"
    );
    for (ip, o) in &owners {
        let got = answers(&lab.rt01, ip)?;
        ensure!(
            got.len() == 1 && got.contains(&macs[*o]),
            "{ip}: answered by {:?}, want {}",
            got.iter().map(|m| node_of_mac(m)).collect::<Vec<_>>(),
            NODES[*o]
        );
    }

    // 2. Local policy: the node with the endpoint, though another ranks first.
    wait_answer(&lab.rt01, LOCAL_IP, &macs[local_node], "local")?;
    eprintln!(
        "Local policy: {LOCAL_IP} answered by {} (the endpoint's node; {} ranks first)",
        NODES[local_node],
        NODES[owner_of(LOCAL_IP, &all)]
    );

    // 3. client-01 reaches the Service through rt-01, on the owner.
    let web = "172.17.0.200";
    let owner = owners[web];
    let got = fetch(&lab.client01, web);
    ensure!(
        got.as_deref() == Some(NODES[owner]),
        "client-01 → {web}: {got:?}, want {}",
        NODES[owner]
    );

    // 4. The owner reports it.
    let m = metrics(&lab.nodes[owner])?;
    ensure!(
        m.lines()
            .any(|l| l.starts_with("metallb_speaker_announced{")
                && l.contains("protocol=\"layer2\"")
                && l.contains(&format!("ip=\"{web}\""))),
        "owner's metrics lack the layer2 announcement:\n{m}"
    );
    let garp = metric(
        &m,
        &format!("metallb_layer2_gratuitous_sent{{ip=\"{web}\"}}"),
    );
    let req = metric(
        &m,
        &format!("metallb_layer2_requests_received{{ip=\"{web}\"}}"),
    );
    let resp = metric(
        &m,
        &format!("metallb_layer2_responses_sent{{ip=\"{web}\"}}"),
    );
    ensure!(
        garp.unwrap_or(0.0) >= 1.0 && req.unwrap_or(0.0) >= 1.0 && resp.unwrap_or(0.0) >= 1.0,
        "owner's layer2 counters for {web}: gratuitous {garp:?}, requests {req:?}, responses {resp:?}"
    );
    for (i, ns) in lab.nodes.iter().enumerate().filter(|(i, _)| *i != owner) {
        let m = metrics(ns)?;
        ensure!(
            !m.lines()
                .any(|l| l.starts_with("metallb_speaker_announced{")
                    && l.contains(&format!("ip=\"{web}\""))),
            "{} also claims {web}",
            NODES[i]
        );
    }
    let t = Instant::now();
    let web_status = loop {
        let list = rt.block_on(l2_status_api(c).list(&ListParams::default()))?;
        let objs: Vec<DynamicObject> = list
            .items
            .into_iter()
            .filter(|o| {
                o.labels()
                    .get("metallb.io/service-name")
                    .map(String::as_str)
                    == Some("web")
            })
            .collect();
        if objs.len() == 1 && objs[0].data["status"]["node"] == NODES[owner] {
            break objs;
        }
        ensure!(
            t.elapsed() < CONVERGE,
            "ServiceL2Status for web: {objs:?}, want one from {}",
            NODES[owner]
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(
        web_status[0]
            .labels()
            .get("metallb.io/node")
            .map(String::as_str)
            == Some(NODES[owner]),
        "{web_status:?}"
    );
    let events = rt.block_on(
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(c.clone(), NS)
            .list(&ListParams::default()),
    )?;
    ensure!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("nodeAssigned")
                && e.involved_object.name.as_deref() == Some("web")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains(NODES[owner]) && m.contains("layer2"))),
        "no nodeAssigned Event for web from {}",
        NODES[owner]
    );

    // 5. The exclude-from-external-load-balancers label on a node that owns
    // IPs (not web's owner): only its IPs move, to the next node in their
    // order; the label removed, they come back.
    let excluded = *owners
        .values()
        .find(|&&o| o != owner)
        .context("every IP on web's owner")?;
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != excluded).collect();
    let nodes_api: Api<Node> = Api::all(c.clone());
    let label = |v: serde_json::Value| {
        rt.block_on(nodes_api.patch(
            NODES[excluded],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "node.kubernetes.io/exclude-from-external-load-balancers": v}}})),
        ))
    };
    label(json!(""))?;
    let t = Instant::now();
    for (ip, o) in &owners {
        let want = if *o == excluded {
            owner_of(ip, &others)
        } else {
            *o
        };
        wait_answer(&lab.rt01, ip, &macs[want], "node excluded")?;
    }
    eprintln!(
        "{} labelled exclude-from-external-load-balancers: its IPs moved, the others stayed ({:?})",
        NODES[excluded],
        t.elapsed()
    );
    label(serde_json::Value::Null)?;
    for (ip, o) in &owners {
        wait_answer(&lab.rt01, ip, &macs[*o], "exclusion removed")?;
    }

    // 6. SIGKILL of web's owner: the next node takes its IPs.
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != owner).collect();
    let next = owner_of(web, &rest);
    let before_kill = tcpdump.stdout().len();
    let t = Instant::now();
    speakers[owner].kill();
    let first = wait_answer(&lab.rt01, web, &macs[next], "after SIGKILL")?;
    let took = t.elapsed();
    let mut resumed = None;
    while t.elapsed() < CONVERGE {
        if fetch(&lab.client01, web).as_deref() == Some(NODES[next]) {
            resumed = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let resumed = resumed.with_context(|| {
        format!(
            "client-01 never reached {web} on {} after the kill",
            NODES[next]
        )
    })?;
    eprintln!(
        "SIGKILL {}: {web} answered by {} after {took:?} (last probe {first:?}), client-01 served by it after {resumed:?}",
        NODES[owner], NODES[next]
    );
    // The gratuitous ARP on the wire: "who-has V tell V" or "V is-at M", broadcast from the new owner.
    let seen =
        ferrolb_testlab::wait_until(Duration::from_secs(3), Duration::from_millis(100), || {
            let out = tcpdump.stdout();
            out[before_kill.min(out.len())..]
                .lines()
                .find(|l| {
                    l.split_whitespace().nth(1) == Some(macs[next].as_str())
                        && l.contains("ff:ff:ff:ff:ff:ff")
                        && (l.contains(&format!("who-has {web} tell {web}"))
                            || l.contains(&format!("Reply {web} is-at")))
                })
                .map(str::to_string)
        })
        .context("no gratuitous ARP for the Service IP from the new owner on the wire")?;
    eprintln!("gratuitous ARP seen: {seen}");
    // Only the dead node's IPs moved.
    for (ip, o) in &owners {
        let want = if *o == owner { owner_of(ip, &rest) } else { *o };
        wait_answer(&lab.rt01, ip, &macs[want], "after the kill")?;
    }

    // 7. The old owner restarted: it answers again where it ranks first, nowhere else.
    speakers[owner] = speaker(&lab.nodes[owner], owner, kubeconfig, 1)?;
    let t = Instant::now();
    for (ip, o) in &owners {
        wait_answer(&lab.rt01, ip, &macs[*o], "after the restart")?;
    }
    eprintln!(
        "{} restarted: its IPs back on it after {:?}",
        NODES[owner],
        t.elapsed()
    );
    for (ip, o) in &owners {
        let got = answers(&lab.rt01, ip)?;
        ensure!(
            got.len() == 1 && got.contains(&macs[*o]),
            "{ip} after the restart: {got:?}"
        );
    }
    wait_answer(
        &lab.rt01,
        LOCAL_IP,
        &macs[local_node],
        "local after restart",
    )?;

    // 8. The owner's speaker again, without CAP_NET_RAW (a manifest that
    // lost it): it cannot answer, so it must not be elected either — the
    // other nodes keep its IPs, and it claims none of them.
    speakers[owner].kill();
    for (ip, o) in &owners {
        let want = if *o == owner { owner_of(ip, &rest) } else { *o };
        wait_answer(&lab.rt01, ip, &macs[want], "after the second kill")?;
    }
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--bounding-set=-net_raw", "--"])
        .arg(env!("CARGO_BIN_EXE_ferrolb"))
        .args([
            "speaker",
            "--node-name",
            NODES[owner],
            "--metrics-addr",
            METRICS,
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("FERROLB_ML_BIND_ADDR", ADDRS[owner])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    speakers[owner] =
        lab.nodes[owner].spawn_labeled(cmd, &format!("speaker-{}-raw", NODES[owner]))?;
    let s = &speakers[owner];
    ferrolb_testlab::wait_until(CONVERGE, Duration::from_millis(100), || {
        s.stderr().contains("cannot answer ARP/NDP").then_some(())
    })
    .with_context(|| format!("no NET_RAW error from {}: {}", s.label(), s.stderr_tail(20)))?;
    // Past the gossip's detection time, in case it had been counted alive.
    std::thread::sleep(Duration::from_secs(4));
    for (ip, o) in &owners {
        let want = if *o == owner { owner_of(ip, &rest) } else { *o };
        wait_answer(&lab.rt01, ip, &macs[want], "owner without NET_RAW")?;
        let got = answers(&lab.rt01, ip)?;
        ensure!(
            got.len() == 1 && got.contains(&macs[want]),
            "{ip} with {} lacking NET_RAW: {got:?}",
            NODES[owner]
        );
    }
    let m = metrics(&lab.nodes[owner])?;
    ensure!(
        !m.lines()
            .any(|l| l.starts_with("metallb_speaker_announced{") && l.contains("layer2")),
        "{} claims layer 2 IPs without NET_RAW:\n{m}",
        NODES[owner]
    );
    eprintln!(
        "{} without NET_RAW: said so, left the gossip; its IPs stay on the other nodes",
        NODES[owner]
    );
    Ok(())
}

/// ARP answers for `ip` as they arrive at rt-01: bench/l2-failover/arpwatch.py
/// asking every 20 ms (iputils arping's interval is whole seconds), each
/// answer's MAC and arrival time.
struct ArpWatch {
    child: std::process::Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
}

impl ArpWatch {
    fn start(rt: &Netns, ip: &str) -> Result<ArpWatch> {
        use std::io::BufRead as _;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/l2-failover/arpwatch.py");
        let mut child = rt
            .command("python3")
            .arg(script)
            .args(["eth2", ip, "0.02"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().context("arpwatch stdout")?;
        let err = child.stderr.take().context("arpwatch stderr")?;
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut text = String::new();
            let _ = std::io::BufReader::new(err).read_to_string(&mut text);
            if !text.trim().is_empty() {
                eprintln!("arpwatch.py: {}", text.trim());
            }
        });
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            // "<seconds> <mac>": the arrival time here is within a millisecond of the frame's.
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if let Some(m) = line.split_whitespace().nth(1) {
                    s.lock().unwrap().push((Instant::now(), m.to_lowercase()));
                }
            }
        });
        Ok(ArpWatch { child, seen })
    }

    /// The first answer from `mac` after `t0`.
    fn first_from(&self, mac: &str, t0: Instant) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(t, m)| *t > t0 && m == mac)
            .map(|(t, _)| *t)
    }
}

impl Drop for ArpWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn bench(
    lab: &RefLab,
    kubeconfig: &Path,
    speakers: &mut [Proc],
    macs: &[String],
    rounds: usize,
) -> Result<()> {
    let web = "172.17.0.200";
    let all = [0, 1, 2];
    let owner = owner_of(web, &all);
    let next = owner_of(
        web,
        &all.iter()
            .copied()
            .filter(|&i| i != owner)
            .collect::<Vec<_>>(),
    );
    eprintln!(
        "bench: {web} is owned by {}, next in order {}; {rounds} rounds",
        NODES[owner], NODES[next]
    );
    let (mut arp, mut http) = (Vec::new(), Vec::new());
    let (mut rejoin, mut overlap) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // All three alive and agreed: only the owner answers.
        wait_answer(&lab.rt01, web, &macs[owner], "before the kill")?;
        // Let the restarted speaker's gossip settle (it rejoined at most a few seconds ago).
        std::thread::sleep(Duration::from_secs(3));
        wait_answer(&lab.rt01, web, &macs[owner], "before the kill")?;
        let watch = ArpWatch::start(&lab.rt01, web)?;
        // arpwatch is running once it has seen the owner answer.
        let started = Instant::now();
        ferrolb_testlab::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            watch.first_from(&macs[owner], started)
        })
        .with_context(|| format!("round {round}: arpwatch saw no answer from the owner"))?;
        let t0 = Instant::now();
        speakers[owner].kill();
        let mut served = None;
        while t0.elapsed() < Duration::from_secs(20) {
            if fetch(&lab.client01, web).as_deref() == Some(NODES[next]) {
                served = Some(t0.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let served =
            served.with_context(|| format!("round {round}: never served by {}", NODES[next]))?;
        let first =
            ferrolb_testlab::wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
                watch.first_from(&macs[next], t0)
            })
            .with_context(|| format!("round {round}: no ARP answer from {}", NODES[next]))?
                - t0;
        drop(watch);
        eprintln!(
            "round {round:2}: first ARP answer from the new owner {first:>8.3?}, client served {served:>8.3?}"
        );
        arp.push(first);
        http.push(served);
        // The restarted speaker rejoins and takes its IP back; for how long do
        // both answer (the returning owner before the other has heard of it)?
        let watch = ArpWatch::start(&lab.rt01, web)?;
        let t1 = Instant::now();
        speakers[owner] = speaker(&lab.nodes[owner], owner, kubeconfig, round)?;
        while t1.elapsed() < Duration::from_secs(30) {
            let got = answers(&lab.rt01, web)?;
            if got.len() == 1 && got.contains(&macs[owner]) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(500));
        let seen = watch.seen.lock().unwrap().clone();
        drop(watch);
        let back = seen
            .iter()
            .find(|(_, m)| *m == macs[owner])
            .map(|(t, _)| *t);
        let last_other = seen
            .iter()
            .filter(|(_, m)| *m == macs[next])
            .map(|(t, _)| *t)
            .max();
        let both = match (back, last_other) {
            (Some(b), Some(o)) if o > b => o - b,
            _ => Duration::ZERO,
        };
        let again = back.map(|b| b - t1).unwrap_or_default();
        eprintln!(
            "round {round:2}: restarted owner answers again after {again:>8.3?}; both answered for {both:>8.3?}"
        );
        rejoin.push(again);
        overlap.push(both);
    }
    let (am, hm) = (median(&mut arp), median(&mut http));
    let (ax, hx) = (arp.iter().max().unwrap(), http.iter().max().unwrap());
    eprintln!(
        "bench l2-failover ({rounds} rounds): first ARP answer from the new owner median {am:.3?} max {ax:.3?}; client request served median {hm:.3?} max {hx:.3?}"
    );
    let (rm, om) = (median(&mut rejoin), median(&mut overlap));
    let (rx, ox) = (rejoin.iter().max().unwrap(), overlap.iter().max().unwrap());
    eprintln!(
        "after the restart: the old owner answers again median {rm:.3?} max {rx:.3?}; both answering median {om:.3?} max {ox:.3?}"
    );
    println!(
        "l2-failover rounds={rounds} arp_median_ms={} arp_max_ms={} http_median_ms={} http_max_ms={}",
        am.as_millis(),
        ax.as_millis(),
        hm.as_millis(),
        hx.as_millis()
    );
    Ok(())
}
