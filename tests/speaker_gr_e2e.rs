//! `ferrolb speaker` with graceful restart, end to end: a real kube-apiserver v1.20.2,
//! the reference lab as network namespaces, gobgpd as rt-01 configured as a graceful
//! restart helper (with RFC 8538 notification) for the three nodes, and the ConfigMap's
//! peer with `graceful-restart: true`. The test writes the Nodes, the ConfigMap, the
//! Service (its status IP) and a core/v1 Endpoints object (Cluster policy, one ready
//! endpoint), so every node announces 172.17.254.1/32.
//!
//! Checked at rt-01 (gobgpd's RIB):
//! - node-01's speaker SIGKILLed: its path stays, marked stale, for 2 s; a new speaker
//!   (it logs `restarting=true`, from its restart marker) makes it fresh again;
//! - node-02's speaker SIGTERMed on an uncordoned node (`--on-sigterm auto`): it exits 0
//!   and its path stays stale (gobgpd logged a Cease 6/2, no Hard Reset); restarted, fresh;
//! - node-03 cordoned (`spec.unschedulable: true`), its speaker SIGTERMed: the path is
//!   gone within 2 s, gobgpd logged a Hard Reset, and the next speaker is no restart
//!   (`restarting=false`: the marker was removed);
//! - the peer removed from the configuration: every session ends with a Hard Reset
//!   carrying 6/3 and rt-01 has no path left.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{
    Family, GobgpNeighbor, Gobgpd, GobgpdConfig, Proc, RefLab, TestDir, require_or_return,
};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

const NS: &str = "e2e";
const SVC: &str = "web";
const PREFIX: &str = "172.17.254.1/32";
const NODES: [&str; 3] = ["k8s-node-01", "k8s-node-02", "k8s-node-03"];
const ADDRS: [&str; 3] = ["172.17.0.21", "172.17.0.22", "172.17.0.23"];
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const T: Duration = Duration::from_secs(20);

fn config(peer: &str) -> String {
    format!(
        "peers:\n- peer-address: {peer}\n  peer-asn: 64512\n  my-asn: 64522\n  hold-time: 3s\n  \
         graceful-restart: true\naddress-pools:\n- name: default\n  protocol: bgp\n  \
         addresses: [172.17.254.0/24]\n"
    )
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

struct Speakers<'a> {
    lab: &'a RefLab,
    kubeconfig: PathBuf,
    state: PathBuf,
    procs: Vec<Proc>,
    starts: usize,
}

impl Speakers<'_> {
    fn start(&mut self, i: usize) -> Result<Proc> {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
        cmd.args([
            "speaker",
            "--node-name",
            NODES[i],
            "--metrics-addr",
            "127.0.0.1:7472",
        ])
        .arg("--kubeconfig")
        .arg(&self.kubeconfig)
        .arg("--state-dir")
        .arg(self.state.join(NODES[i]))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
        self.starts += 1;
        let p = self.lab.nodes[i]
            .spawn_labeled(cmd, &format!("speaker-{}-{}", NODES[i], self.starts))?;
        ferrolb_testlab::wait_until(T, Duration::from_millis(50), || {
            p.stderr().contains("graceful restart state").then_some(())
        })
        .with_context(|| format!("{} never synced: {}", p.label(), p.stderr_tail(20)))?;
        Ok(p)
    }

    /// Replaces node `i`'s speaker by a new one; returns the new one's log line
    /// about the restart marker.
    fn restart(&mut self, i: usize) -> Result<String> {
        let p = self.start(i)?;
        let line = p
            .stderr()
            .lines()
            .find(|l| l.contains("graceful restart state"))
            .unwrap_or_default()
            .to_string();
        self.procs[i] = p;
        Ok(line)
    }
}

/// rt-01's paths for the prefix: (next hop, stale).
fn paths(g: &Gobgpd) -> Result<Vec<(String, bool)>> {
    let rib = g.rib(Family::Ipv4Unicast)?;
    let mut out: Vec<(String, bool)> = rib
        .into_iter()
        .filter(|r| r.prefix == PREFIX)
        .flat_map(|r| r.paths)
        .map(|p| (p.nexthop, p.stale))
        .collect();
    out.sort();
    Ok(out)
}

fn want(stale: &[bool; 3]) -> Vec<(String, bool)> {
    ADDRS
        .iter()
        .map(|a| a.to_string())
        .zip(stale.iter().copied())
        .collect()
}

fn wait_paths(g: &Gobgpd, want: &[(String, bool)], what: &str) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        let now = paths(g)?;
        if now == want {
            eprintln!("{what}: {want:?} after {:?}", t0.elapsed());
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > T {
            bail!("{what}: rt-01 has {now:?}, want {want:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hold_paths(g: &Gobgpd, want: &[(String, bool)], dur: Duration, what: &str) -> Result<()> {
    let until = Instant::now() + dur;
    while Instant::now() < until {
        let now = paths(g)?;
        ensure!(now == want, "{what}: rt-01 has {now:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[test]
fn speaker_graceful_restart() -> Result<()> {
    let test = "speaker_graceful_restart";
    require_or_return!(test, "gobgpd", "gobgp", "socat");
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = TestDir::new("speaker-gr-e2e")?;
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
        n.graceful_restart = Some(120);
        gcfg = gcfg.neighbor(n);
    }
    let g = Gobgpd::start(&lab.rt01, gcfg)?;
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
            let node = json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}});
            nodes
                .create(&PostParams::default(), &serde_json::from_value(node)?)
                .await?;
        }
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "metallb-system");
        let cm = json!({"metadata": {"name": "config"}, "data": {"config": config("172.17.0.1")}});
        cms.create(&PostParams::default(), &serde_json::from_value(cm)?)
            .await?;
        let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
        let svc = json!({
            "metadata": {"name": SVC},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        });
        svcs.create(&PostParams::default(), &serde_json::from_value(svc)?)
            .await?;
        svcs.patch_status(
            SVC,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "172.17.254.1"}]}}}),
            ),
        )
        .await?;
        let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
        let ep = json!({"metadata": {"name": SVC}, "subsets": [{
            "addresses": [{"ip": "10.244.0.10", "nodeName": NODES[0]}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]});
        eps.create(&PostParams::default(), &serde_json::from_value(ep)?)
            .await?;
        anyhow::Ok(())
    })?;
    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let mut sp = Speakers {
        lab: &lab,
        kubeconfig,
        state: dir.path().join("state"),
        procs: Vec::new(),
        starts: 0,
    };
    for i in 0..3 {
        let p = sp.start(i)?;
        ensure!(
            p.stderr().contains("restarting=false"),
            "a first start is no restart"
        );
        sp.procs.push(p);
    }
    let res = steps(&rt, &c, &g, &mut sp);
    if res.is_err() {
        for p in &sp.procs {
            eprintln!("--- {} stderr (tail):\n{}", p.label(), p.stderr_tail(30));
        }
        let log = g.log();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "--- gobgpd (tail):\n{}",
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    drop(socats);
    res
}

fn hard_resets(g: &Gobgpd) -> usize {
    g.log().matches("Reason=hard-reset").count()
}

fn steps(rt: &tokio::runtime::Runtime, c: &Client, g: &Gobgpd, sp: &mut Speakers) -> Result<()> {
    wait_paths(g, &want(&[false; 3]), "all three announce")?;

    // SIGKILL: the path stays (stale) until the new speaker's End-of-RIB.
    sp.procs[0].kill();
    wait_paths(g, &want(&[true, false, false]), "node-01 killed: stale")?;
    hold_paths(
        g,
        &want(&[true, false, false]),
        Duration::from_secs(2),
        "node-01 away",
    )?;
    let line = sp.restart(0)?;
    ensure!(
        line.contains("restarting=true"),
        "the restarted speaker sets R: {line}"
    );
    wait_paths(g, &want(&[false; 3]), "node-01 back: fresh")?;

    // SIGTERM on an uncordoned node (a rollout): the routes stay.
    let before = hard_resets(g);
    sp.procs[1].signal("TERM")?;
    let st = sp.procs[1]
        .wait_exit(Duration::from_secs(10))
        .context("speaker exit")?;
    ensure!(st.success(), "exit {st}");
    wait_paths(g, &want(&[false, true, false]), "node-02 SIGTERM: stale")?;
    hold_paths(
        g,
        &want(&[false, true, false]),
        Duration::from_secs(2),
        "node-02 away",
    )?;
    ensure!(hard_resets(g) == before, "no Hard Reset on a rollout");
    ensure!(
        sp.procs[1]
            .stderr()
            .contains("graceful restart peers keep our routes"),
        "{}",
        sp.procs[1].stderr_tail(5)
    );
    let line = sp.restart(1)?;
    ensure!(line.contains("restarting=true"), "{line}");
    wait_paths(g, &want(&[false; 3]), "node-02 back: fresh")?;

    // Cordoned node: SIGTERM withdraws and ends with a Hard Reset.
    let nodes: Api<Node> = Api::all(c.clone());
    rt.block_on(nodes.patch(
        NODES[2],
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"unschedulable": true}})),
    ))?;
    // The speaker sees the change through its Node watch.
    std::thread::sleep(Duration::from_millis(500));
    let before = hard_resets(g);
    sp.procs[2].signal("TERM")?;
    let st = sp.procs[2]
        .wait_exit(Duration::from_secs(10))
        .context("speaker exit")?;
    ensure!(st.success(), "exit {st}");
    let took = wait_paths(
        g,
        &[(ADDRS[0].to_string(), false), (ADDRS[1].to_string(), false)],
        "node-03 cordoned, SIGTERM: withdrawn",
    )?;
    ensure!(took < Duration::from_secs(2), "withdrawn after {took:?}");
    ferrolb_testlab::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (hard_resets(g) > before).then_some(())
    })
    .context("gobgpd logged no Hard Reset")?;
    let line = sp.restart(2)?;
    ensure!(
        line.contains("restarting=false"),
        "the marker was removed: {line}"
    );
    // (node-03 is still cordoned: it announces anyway, cordoning only changes SIGTERM.)
    wait_paths(g, &want(&[false; 3]), "node-03 back")?;

    // The peer leaves the configuration: 6/3 inside a Hard Reset, routes gone.
    let before = hard_resets(g);
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "metallb-system");
    rt.block_on(cms.patch(
        "config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"config": config("172.17.0.99")}})),
    ))?;
    wait_paths(g, &[], "peer removed")?;
    ferrolb_testlab::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (hard_resets(g) >= before + 3).then_some(())
    })
    .context("gobgpd logged fewer than 3 Hard Resets")?;
    ensure!(
        g.log().contains("Data=\"[6 3]\""),
        "Hard Reset carrying 6/3"
    );
    for p in &mut sp.procs {
        p.signal("TERM")?;
        p.wait_exit(Duration::from_secs(10));
    }
    Ok(())
}
