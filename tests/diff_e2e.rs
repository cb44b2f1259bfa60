//! `ferrolb diff` end to end: what it says a configuration would do, then the
//! configuration applied and the cluster checked to do exactly that. A real
//! kube-apiserver v1.20.2 (testlab), `ferrolb controller` (root namespace,
//! straight to the API server), three `ferrolb speaker`s in the reference
//! lab's node namespaces (through testlab's UNIX-socket relay) and gobgpd as
//! rt-01. The configuration is the ConfigMap; two Services hold IPs of pool
//! `default`, announced by all three nodes.
//!
//! 1. A configuration without the pool in use: `diff` exits 2 and names the
//!    Service, as the controller's rejection says it; applied, nothing moves
//!    (IPs, next hops, hold time).
//! 2. The pool shrunk to a /28 that still holds both IPs: exit 0, "nothing
//!    moves"; applied, nothing moves.
//! 3. The peer's hold time 9s → 6s: exit 1, one session reset per node;
//!    applied, gobgpd negotiates 6 s with all three, routes unchanged.
//! 4. A community on the advertisement: exit 1, both routes re-advertised on
//!    each node and no session reset; applied, every path at rt-01 carries it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{
    Family, GobgpNeighbor, Gobgpd, GobgpdConfig, Netns, Proc, RefLab, Route, TestDir, free_port,
    require_or_return, wait_until,
};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

const NS: &str = "e2e";
const SYS: &str = "metallb-system";
const NODES: [&str; 3] = ["k8s-node-01", "k8s-node-02", "k8s-node-03"];
const SERVICES: [(&str, &str); 2] = [("web-1", "172.17.254.1"), ("web-2", "172.17.254.2")];
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const CONVERGE: Duration = Duration::from_secs(30);

fn config(pool: &str, hold: &str, community: Option<&str>) -> String {
    let adv = match community {
        Some(c) => format!("  bgp-advertisements:\n  - communities: ['{c}']\n"),
        None => String::new(),
    };
    format!(
        "peers:\n- peer-address: 172.17.0.1\n  peer-asn: 64512\n  my-asn: 64522\n  hold-time: {hold}\n\
         address-pools:\n- name: default\n  protocol: bgp\n  addresses: [{pool}]\n{adv}"
    )
}

const C0: (&str, &str, Option<&str>) = ("172.17.254.0/24", "9s", None);

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
    .env("NO_COLOR", "1");
    ns.spawn_labeled(cmd, &format!("speaker-{node}"))
}

/// `ferrolb diff FILE`: exit code and stdout.
fn diff(dir: &Path, kubeconfig: &Path, text: &str) -> Result<(i32, String)> {
    let file = dir.join("new-config.yaml");
    std::fs::write(&file, text)?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .arg("diff")
        .arg(&file)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("RUST_LOG")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "ferrolb diff → exit {:?}\n{stdout}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), stdout))
}

fn rib(g: &Gobgpd, prefix: &str) -> Result<Option<Route>> {
    Ok(g.rib(Family::Ipv4Unicast)?
        .into_iter()
        .find(|r| r.prefix == prefix))
}

fn next_hops(g: &Gobgpd, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = rib(g, prefix)
        .ok()
        .flatten()
        .map(|r| r.paths.into_iter().map(|p| p.nexthop).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn negotiated_hold(g: &Gobgpd, addr: &str) -> Option<u64> {
    let out = g.cli(&["-j", "neighbor", addr]).ok()?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
    let v = if v.is_array() { v[0].clone() } else { v };
    v["timers"]["state"]["negotiated_hold_time"].as_u64()
}

/// What must not move: each Service's IP and every route's next hops.
fn snapshot(rt: &tokio::runtime::Runtime, c: &Client, g: &Gobgpd) -> Result<Vec<String>> {
    let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
    let mut out = Vec::new();
    for (name, ip) in SERVICES {
        let s = rt.block_on(svcs.get(name))?;
        let shown: Vec<String> = s
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        out.push(format!(
            "{name} {shown:?} {:?}",
            next_hops(g, &format!("{ip}/32"))
        ));
    }
    Ok(out)
}

#[test]
fn diff_says_what_applying_does() -> Result<()> {
    let test = "diff_says_what_applying_does";
    require_or_return!(test, "gobgpd", "gobgp", "socat");
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = TestDir::new("diff-e2e")?;
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
                    &serde_json::from_value(
                        json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}),
                    )?,
                )
                .await?;
        }
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), SYS);
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "config"}, "data": {"config": config(C0.0, C0.1, C0.2)}}),
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
                    "spec": {"type": "LoadBalancer", "loadBalancerIP": ip,
                             "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
                }))?,
            )
            .await?;
            eps.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": NS},
                    "subsets": [{"addresses": [{"ip": "10.244.1.10", "nodeName": NODES[0]}],
                                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
                }))?,
            )
            .await?;
        }
        anyhow::Ok(())
    })?;

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    cmd.args([
        "controller",
        "--metrics-addr",
        &format!("127.0.0.1:{}", free_port()),
    ])
    .arg("--kubeconfig")
    .arg(api.kubeconfig_path())
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1");
    let controller = Proc::spawn(cmd, dir.path(), "controller")?;
    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let mut speakers = Vec::new();
    for (ns, node) in lab.nodes.iter().zip(NODES) {
        speakers.push(speaker(ns, node, &kubeconfig)?);
    }
    let res = steps(&rt, &c, &g, dir.path(), api.kubeconfig_path());
    if res.is_err() {
        eprintln!(
            "--- controller stderr (tail):\n{}",
            controller.stderr_tail(30)
        );
        for s in &speakers {
            eprintln!("--- {} stderr (tail):\n{}", s.label(), s.stderr_tail(30));
        }
    }
    res
}

fn apply(rt: &tokio::runtime::Runtime, c: &Client, text: &str) -> Result<()> {
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), SYS);
    rt.block_on(cms.patch(
        "config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"config": text}})),
    ))?;
    Ok(())
}

fn steps(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    g: &Gobgpd,
    dir: &Path,
    kubeconfig: &Path,
) -> Result<()> {
    let all: Vec<String> = RefLab::NODE_ADDRS.iter().map(|s| s.to_string()).collect();
    for (_, ip) in SERVICES {
        let prefix = format!("{ip}/32");
        wait_until(CONVERGE, Duration::from_millis(200), || {
            (next_hops(g, &prefix) == all).then_some(())
        })
        .with_context(|| {
            format!(
                "{prefix} never reached rt-01 from all nodes: {:?}",
                next_hops(g, &prefix)
            )
        })?;
    }
    let holds = |want: u64| {
        RefLab::NODE_ADDRS
            .iter()
            .all(|a| negotiated_hold(g, a) == Some(want))
    };
    ensure!(
        wait_until(CONVERGE, Duration::from_millis(200), || holds(9)
            .then_some(()))
        .is_some(),
        "hold time 9 never negotiated"
    );
    let before = snapshot(rt, c, g)?;

    // 1. The pool in use removed: rejected, naming a Service; nothing moves.
    let removed = "peers:\n- peer-address: 172.17.0.1\n  peer-asn: 64512\n  my-asn: 64522\n  hold-time: 9s\n\
                   address-pools:\n- name: other\n  protocol: bgp\n  addresses: [172.17.253.0/24]\n";
    let (code, out) = diff(dir, kubeconfig, removed)?;
    ensure!(code == 2, "removing the pool in use: exit {code}");
    ensure!(
        out.contains("rejected: new config not compatible with assigned IPs: service \"e2e/web-1\" cannot own \"172.17.254.1\" under new config"),
        "{out}"
    );
    apply(rt, c, removed)?;
    std::thread::sleep(Duration::from_secs(4));
    ensure!(
        snapshot(rt, c, g)? == before,
        "a rejected configuration moved something"
    );
    ensure!(holds(9), "a rejected configuration reset a session");
    apply(rt, c, &config(C0.0, C0.1, C0.2))?;

    // 2. Shrunk without stranding: nothing moves.
    let shrunk = config("172.17.254.0/28", "9s", None);
    let (code, out) = diff(dir, kubeconfig, &shrunk)?;
    ensure!(
        code == 0 && out.contains("nothing moves"),
        "shrink: exit {code}: {out}"
    );
    apply(rt, c, &shrunk)?;
    std::thread::sleep(Duration::from_secs(4));
    ensure!(snapshot(rt, c, g)? == before, "shrinking moved something");
    ensure!(holds(9), "shrinking reset a session");

    // 3. Hold time: one reset per node, no route change.
    let hold6 = config("172.17.254.0/28", "6s", None);
    let (code, out) = diff(dir, kubeconfig, &hold6)?;
    ensure!(code == 1, "hold time: exit {code}: {out}");
    for n in NODES {
        ensure!(
            out.contains(&format!("session {n} → 172.17.0.1:179: reset")),
            "{n}: {out}"
        );
    }
    ensure!(
        !out.contains("route "),
        "hold time: no route should change: {out}"
    );
    apply(rt, c, &hold6)?;
    ensure!(
        wait_until(CONVERGE, Duration::from_millis(200), || holds(6)
            .then_some(()))
        .is_some(),
        "hold time 6 never negotiated with every node"
    );
    for (_, ip) in SERVICES {
        let prefix = format!("{ip}/32");
        ensure!(
            wait_until(CONVERGE, Duration::from_millis(200), || (next_hops(
                g, &prefix
            ) == all)
                .then_some(()))
            .is_some(),
            "{prefix} not back on all nodes after the resets"
        );
    }

    // 4. A community: every route re-advertised, no session reset.
    let community = config("172.17.254.0/28", "6s", Some("64512:7"));
    let (code, out) = diff(dir, kubeconfig, &community)?;
    ensure!(code == 1, "community: exit {code}: {out}");
    for n in NODES {
        for (_, ip) in SERVICES {
            ensure!(
                out.contains(&format!(
                    "route {ip}/32 on {n} → 172.17.0.1:179: re-advertised"
                )),
                "{n} {ip}: {out}"
            );
        }
    }
    ensure!(
        !out.contains("session "),
        "community: no session should change: {out}"
    );
    let t0 = Instant::now();
    apply(rt, c, &community)?;
    for (_, ip) in SERVICES {
        let prefix = format!("{ip}/32");
        ensure!(
            wait_until(CONVERGE, Duration::from_millis(200), || {
                let r = rib(g, &prefix).ok()??;
                (r.paths.len() == 3
                    && r.paths
                        .iter()
                        .all(|p| p.communities.contains(&"64512:7".to_string())))
                .then_some(())
            })
            .is_some(),
            "{prefix}: the community never reached rt-01 on every path: {:?}",
            rib(g, &prefix)
        );
    }
    eprintln!("community on every path after {:?}", t0.elapsed());
    ensure!(holds(6), "adding a community reset a session");
    Ok(())
}
