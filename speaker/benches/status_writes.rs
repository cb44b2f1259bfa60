//! ServiceBGPStatus write benchmark (`harness = false`; run through
//! `bench/status-writes/run`, see bench/README.md, section "status-writes").
//!
//! Set-up: a real kube-apiserver v1.20.2 (testlab) with an audit log of every
//! write, the reference lab's rt-01 (gobgpd, AS 64512, multipath) and three
//! node namespaces, each running a `ferrolb speaker` that reaches the API
//! server through testlab's UNIX-socket relay. The bench installs a minimal
//! ServiceBGPStatus CRD and writes N LoadBalancer Services (default 1000) with
//! IPs and a ready endpoint on node-01 (Cluster policy: every node announces
//! every Service) before the speakers start.
//!
//! Phases, each timed; writes counted from the API server's audit log
//! (`ResponseComplete` of create/update/patch/delete on `servicebgpstatuses`,
//! status subresource included), cross-checked with the speakers' own
//! `ferrolb_speaker_status_writes_total`:
//! - **start**: speakers start with N Services → until the API server holds
//!   3·N objects with their status;
//! - **steady**: 30 s with nothing changing;
//! - **withdraw all**: every Endpoints object turns not ready at once → until
//!   no object is left;
//! - **announce all**: every Endpoints object ready again → 3·N objects again.
//!
//! Environment: `FERROLB` = the ferrolb binary (default
//! `$CARGO_TARGET_DIR/release/ferrolb`), `STATUS_BENCH_SERVICES` (default
//! 1000), `STATUS_BENCH_RATE` (the speakers' `--status-writes-per-second`;
//! default: theirs), `STATUS_BENCH_STEADY` (seconds, default 30).

use ferrolb_testlab::bench::{
    env_usize, existing_ferrolb_bin, now_s, parse_rfc3339, under_cargo_bench,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ferrolb_testlab::kube::{KubeApiServer, StartOptions};
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{Family, GobgpNeighbor, Gobgpd, GobgpdConfig, Proc, RefLab, TestDir};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Service};
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

const RELAY_LISTEN: &str = "127.0.0.1:6443";
const NODES: [&str; 3] = ["k8s-node-01", "k8s-node-02", "k8s-node-03"];
const ADDRS: [&str; 3] = ["172.17.0.21", "172.17.0.22", "172.17.0.23"];
const NS: &str = "bulk";
const CONFIG: &str = "peers:
- peer-address: 172.17.0.1
  peer-asn: 64512
  my-asn: 64522
  hold-time: 90s
address-pools:
- name: bulk
  protocol: bgp
  addresses: [10.30.0.0/16]
";
const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
";
/// Longest a phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(900);

fn crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicebgpstatuses.metallb.io"},
        "spec": {
            "group": "metallb.io",
            "names": {"kind": "ServiceBGPStatus", "listKind": "ServiceBGPStatusList",
                      "plural": "servicebgpstatuses", "singular": "servicebgpstatus"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1beta1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

fn statuses(c: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        c.clone(),
        "metallb-system",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("metallb.io", "v1beta1", "ServiceBGPStatus"),
            "servicebgpstatuses",
        ),
    )
}

/// Objects whose status is written (its node set).
async fn complete_objects(c: &Client) -> Result<usize> {
    let l = statuses(c).list(&ListParams::default()).await?;
    Ok(l.items
        .iter()
        .filter(|o| {
            o.data
                .pointer("/status/node")
                .and_then(|n| n.as_str())
                .is_some_and(|n| !n.is_empty())
        })
        .count())
}

fn endpoints(name: &str, i: usize, ready: bool) -> Result<Endpoints> {
    let addr =
        json!({"ip": format!("10.244.{}.{}", (i / 250) % 250, i % 250 + 1), "nodeName": NODES[0]});
    let key = if ready {
        "addresses"
    } else {
        "notReadyAddresses"
    };
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "subsets": [{key: [addr], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
    }))?)
}

fn service(name: &str) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    }))?)
}

/// One write the audit log recorded.
#[derive(Debug, Clone)]
struct Write {
    at: f64,
    resource: String,
    verb: String,
    code: u64,
}

fn audit_writes(path: &Path) -> Result<Vec<Write>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["stage"] != "ResponseComplete" {
            continue;
        }
        let Some(at) = v["stageTimestamp"].as_str().and_then(parse_rfc3339) else {
            continue;
        };
        let resource = v["objectRef"]["resource"].as_str().unwrap_or_default();
        let sub = v["objectRef"]["subresource"].as_str().unwrap_or_default();
        let code = v["responseStatus"]["code"].as_u64().unwrap_or(0);
        out.push(Write {
            at,
            resource: if sub.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}/{sub}")
            },
            verb: v["verb"].as_str().unwrap_or_default().to_string(),
            code,
        });
    }
    Ok(out)
}

/// One phase: its wall-clock window (epoch seconds) and duration.
struct Phase {
    name: String,
    from: f64,
    to: f64,
}

fn is_status_write(w: &Write) -> bool {
    w.resource.starts_with("servicebgpstatuses")
}

/// (writes, failed, by verb and code, peak writes in any one second, events written)
fn tally(writes: &[Write], p: &Phase) -> (usize, usize, BTreeMap<String, usize>, usize, usize) {
    let inside: Vec<&Write> = writes
        .iter()
        .filter(|w| w.at >= p.from && w.at < p.to)
        .collect();
    let status: Vec<&&Write> = inside.iter().filter(|w| is_status_write(w)).collect();
    let mut by_verb = BTreeMap::new();
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for w in &status {
        *by_verb
            .entry(format!("{} {} {}", w.verb, w.resource, w.code))
            .or_default() += 1;
        *per_second.entry(w.at.floor() as i64).or_default() += 1;
    }
    let failed = status
        .iter()
        .filter(|w| !(200..300).contains(&w.code))
        .count();
    let events = inside
        .iter()
        .filter(|w| w.resource.starts_with("events"))
        .count();
    (
        status.len(),
        failed,
        by_verb,
        per_second.values().copied().max().unwrap_or(0),
        events,
    )
}

fn speaker_metrics_writes(lab: &RefLab) -> f64 {
    lab.nodes
        .iter()
        .filter_map(|ns| {
            ns.run(&[
                "curl",
                "-sf",
                "--max-time",
                "10",
                "http://127.0.0.1:7472/metrics",
            ])
            .ok()
        })
        .map(|text| {
            text.lines()
                .filter(|l| l.starts_with("ferrolb_speaker_status_writes_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

fn wait_objects(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    want: usize,
    speakers: &[Proc],
    what: &str,
) -> Result<Duration> {
    let t0 = Instant::now();
    let mut last = usize::MAX;
    loop {
        let n = rt.block_on(complete_objects(c))?;
        if n != last {
            eprintln!(
                "  {what}: {n} objects at {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            last = n;
        }
        if n == want {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > PHASE_LIMIT {
            let tails: Vec<String> = speakers.iter().map(|s| s.stderr_tail(10)).collect();
            bail!(
                "{what}: {n} objects, want {want}, after {PHASE_LIMIT:?}:\n{}",
                tails.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn set_all_endpoints(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    n: usize,
    ready: bool,
) -> Result<()> {
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
    rt.block_on(async {
        futures::stream::iter(0..n)
            .map(|i| {
                let eps = eps.clone();
                async move {
                    let name = format!("s{i}");
                    let body = serde_json::to_value(endpoints(&name, i, ready)?)?;
                    // A merge patch replaces the subsets list as a whole.
                    eps.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"subsets": body["subsets"]})),
                    )
                    .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await
    })?;
    Ok(())
}

fn main() -> Result<()> {
    if !under_cargo_bench("status-writes bench", "bench/status-writes/run") {
        return Ok(());
    }
    if !ferrolb_testlab::require_root_or_skip(
        "status-writes bench",
        &["gobgpd", "gobgp", "socat", "curl"],
    ) {
        return Ok(());
    }
    let bin = existing_ferrolb_bin()?;
    let n = env_usize("STATUS_BENCH_SERVICES", 1000);
    let steady = Duration::from_secs(env_usize("STATUS_BENCH_STEADY", 30) as u64);
    let rate = std::env::var("STATUS_BENCH_RATE").ok();

    let dir = TestDir::new("status-writes-bench")?;
    let policy = dir.path().join("audit-policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let audit = dir.path().join("audit.log");
    let policy_arg = format!("--audit-policy-file={}", policy.display());
    let log_arg = format!("--audit-log-path={}", audit.display());
    let Some(api) = KubeApiServer::start_with(&StartOptions {
        extra_args: &[&policy_arg, &log_arg, "--audit-log-format=json"],
    })?
    else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lab = RefLab::new()?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        api.server_url()
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()?,
    )?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{RELAY_LISTEN}"))?;
    let mut gcfg = GobgpdConfig::new(64512, "172.17.0.1");
    gcfg.use_multiple_paths = true;
    for a in ADDRS {
        let mut nb = GobgpNeighbor::new(a, 64522);
        nb.passive = true;
        nb.families = vec![Family::Ipv4Unicast];
        gcfg = gcfg.neighbor(nb);
    }
    let g = Gobgpd::start(&lab.rt01, gcfg)?;

    let c = rt.block_on(async {
        let kc = Kubeconfig::read_from(api.kubeconfig_path())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        anyhow::Ok(Client::try_from(cfg)?)
    })?;
    let t_setup = Instant::now();
    rt.block_on(async {
        Api::<DynamicObject>::all_with(
            c.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                "customresourcedefinitions",
            ),
        )
        .create(&PostParams::default(), &serde_json::from_value(crd())?)
        .await?;
        let nss: Api<Namespace> = Api::all(c.clone());
        for ns in ["metallb-system", NS] {
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        }
        for node in NODES {
            Api::<Node>::all(c.clone())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(
                        json!({"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}),
                    )?,
                )
                .await?;
        }
        Api::<ConfigMap>::namespaced(c.clone(), "metallb-system")
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": "config"}, "data": {"config": CONFIG}}),
                )?,
            )
            .await?;
        let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
        let eps: Api<Endpoints> = Api::namespaced(c.clone(), NS);
        futures::stream::iter(0..n)
            .map(|i| {
                let (svcs, eps) = (svcs.clone(), eps.clone());
                async move {
                    let name = format!("s{i}");
                    let ip = format!("10.30.{}.{}", i / 256, i % 256);
                    eps.create(&PostParams::default(), &endpoints(&name, i, true)?)
                        .await?;
                    svcs.create(&PostParams::default(), &service(&name)?)
                        .await?;
                    svcs.patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
                    )
                    .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        while statuses(&c).list(&ListParams::default()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    })?;
    eprintln!(
        "{n} Services with IPs and Endpoints written in {:?}",
        t_setup.elapsed()
    );

    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let mut phases = Vec::new();
    let from = now_s();
    let mut speakers = Vec::new();
    for (ns, node) in lab.nodes.iter().zip(NODES) {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args([
            "speaker",
            "--node-name",
            node,
            "--metrics-addr",
            "127.0.0.1:7472",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
        match &rate {
            Some(r) => cmd.env("FERROLB_STATUS_WRITES_PER_SECOND", r),
            None => cmd.env_remove("FERROLB_STATUS_WRITES_PER_SECOND"),
        };
        speakers.push(ns.spawn_labeled(cmd, &format!("speaker-{node}"))?);
    }
    let d = wait_objects(&rt, &c, 3 * n, &speakers, "start")?;
    phases.push(Phase {
        name: format!("start: 3 speakers, {n} Services → {} objects", 3 * n),
        from,
        to: now_s(),
    });
    eprintln!("start converged in {d:?}");
    for a in ADDRS {
        g.wait_established(a, Duration::from_secs(60))?;
    }

    let from = now_s();
    std::thread::sleep(steady);
    phases.push(Phase {
        name: format!("steady: {} s, nothing changes", steady.as_secs()),
        from,
        to: now_s(),
    });

    let from = now_s();
    set_all_endpoints(&rt, &c, n, false)?;
    wait_objects(&rt, &c, 0, &speakers, "withdraw all")?;
    phases.push(Phase {
        name: format!("withdraw all: {n} Endpoints not ready → 0 objects"),
        from,
        to: now_s(),
    });

    let from = now_s();
    set_all_endpoints(&rt, &c, n, true)?;
    wait_objects(&rt, &c, 3 * n, &speakers, "announce all")?;
    phases.push(Phase {
        name: format!("announce all: {n} Endpoints ready → {} objects", 3 * n),
        from,
        to: now_s(),
    });
    // Let the audit log catch up, then count.
    std::thread::sleep(Duration::from_secs(2));
    let by_speakers = speaker_metrics_writes(&lab);
    for s in &mut speakers {
        let _ = s.terminate(Duration::from_secs(10));
    }
    let writes = audit_writes(&audit)?;

    println!();
    println!(
        "ServiceBGPStatus writes: 3 speakers ({}), {n} Services, kube-apiserver v1.20.2, gobgpd rt-01; rate limit per speaker: {}",
        bin.display(),
        rate.as_deref().unwrap_or("default (20/s)")
    );
    println!(
        "{:<58} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7}",
        "phase", "time s", "writes", "mean w/s", "peak w/s", "failed", "events"
    );
    let mut total = 0;
    for p in &phases {
        let (count, failed, by_verb, peak, events) = tally(&writes, p);
        total += count;
        let secs = p.to - p.from;
        println!(
            "{:<58} {:>8.1} {:>8} {:>9.1} {:>9} {:>7} {:>7}",
            p.name,
            secs,
            count,
            count as f64 / secs.max(1e-9),
            peak,
            failed,
            events
        );
        let detail: Vec<String> = by_verb.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        if !detail.is_empty() {
            println!("    {}", detail.join(", "));
        }
    }
    println!(
        "status writes in the audit log over the phases: {total}; the speakers' ferrolb_speaker_status_writes_total summed: {by_speakers}"
    );
    drop(speakers);
    Ok(())
}
