//! Controller at scale (`harness = false`; run through
//! `bench/controller-scale/run`, see bench/README.md, section
//! "controller-scale"; issue 15 scenario 3, the controller's part).
//!
//! Set-up: a real kube-apiserver v1.20.2 (testlab, on loopback) with an
//! audit log of every request, a ConfigMap with one /16 pool, and one
//! `ferrolb controller` (the binary under test) talking to it on loopback.
//!
//! Phases, each timed, API requests counted from the audit log by verb and
//! resource:
//! - **allocate**: N LoadBalancer Services (default 10,000) created by 32
//!   concurrent writers → until every one shows an IP in its status. Also
//!   from the last create to the last IP (how far the controller trails the
//!   writers).
//! - **steady**: 20 s with nothing changing (target: no writes).
//! - **restart**: the controller stopped (SIGTERM) and started again →
//!   until it logs that it is synced; then 20 s more. IPs compared with
//!   those before (target: none moved) and writes counted (target: none).
//! - **delete**: every Service deleted → until the controller has nothing
//!   left to do (its allocation gauge, or 20 s without writes).
//!
//! The controller's VmRSS (and VmHWM) idle, after allocate, after the
//! restart (the rebuild from 10,000 Services), after delete.
//!
//! Environment: `FERROLB` = the ferrolb binary (default
//! `$CARGO_TARGET_DIR/release/ferrolb`), `SCALE_BENCH_SERVICES` (default
//! 10000), `SCALE_BENCH_WRITERS` (default 32).

use ferrolb_testlab::bench::{
    AuditReq, Tally, audit_args, concurrently, env_usize, existing_ferrolb_bin, now_s, read_audit,
    tally, under_cargo_bench,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ferrolb_testlab::TestDir;
use ferrolb_testlab::kube::{KubeApiServer, StartOptions};
use ferrolb_testlab::proc::Proc;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

const NS: &str = "scale";
const CONFIG: &str = "address-pools:
- name: scale
  protocol: bgp
  addresses: [10.40.0.0/16]
";
const METRICS: &str = "127.0.0.1:17472";
/// Longest a phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(1200);
const QUIET: Duration = Duration::from_secs(20);

/// The bench's own client says so; the controller sends no user agent.
const BENCH_AGENT: &str = "controller-scale-bench";

/// Requests the controller sent: not the bench's own, nor the API server's
/// loopback ones (priority-and-fairness config, quota and namespace lookups).
fn controllers(r: &AuditReq) -> bool {
    r.user_agent != BENCH_AGENT && !r.system_user
}

fn service(name: &str) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    }))?)
}

/// Service name → its first status IP ("" when none).
async fn ips(c: &Client) -> Result<BTreeMap<String, String>> {
    let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
    let mut out = BTreeMap::new();
    let mut lp = ListParams::default().limit(2000);
    loop {
        let l = svcs.list(&lp).await?;
        for s in &l.items {
            let ip = s
                .status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .and_then(|i| i.first())
                .and_then(|i| i.ip.clone())
                .unwrap_or_default();
            out.insert(s.metadata.name.clone().unwrap_or_default(), ip);
        }
        match l.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(cont) => lp = lp.continue_token(&cont),
            None => break,
        }
    }
    Ok(out)
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// VmRSS and VmHWM of a process.
fn mem(p: &Proc) -> String {
    format!("VmRSS {} (VmHWM {})", mib(p.rss_kb()), mib(p.rss_peak_kb()))
}

fn controller(bin: &Path, kubeconfig: &Path, dir: &Path, n: usize) -> Result<Proc> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "controller",
        "--metrics-addr",
        METRICS,
        "--config-source",
        "configmap",
    ])
    .arg("--kubeconfig")
    .arg(kubeconfig)
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1");
    Proc::spawn(cmd, dir, &format!("controller-{n}"))
}

/// Waits for the controller's "initial sync done" (its log is on stderr).
fn synced(p: &Proc, within: Duration) -> Result<()> {
    ferrolb_testlab::wait_until(within, Duration::from_millis(20), || {
        p.stderr().contains("initial sync done").then_some(())
    })
    .with_context(|| format!("{} never synced: {}", p.label(), p.stderr_tail(20)))
}

fn row(what: &str, value: String) {
    println!("{what:<58} {value}");
}

fn print_requests(name: &str, reqs: &[AuditReq], from: f64, to: f64) {
    let Tally {
        total: n,
        busiest_second: peak,
        by,
    } = tally(reqs, from, to, controllers);
    let secs = (to - from).max(0.001);
    row(
        &format!("controller requests, {name}"),
        format!(
            "{n} in {secs:.1} s = {:.1}/s (busiest second {peak})",
            n as f64 / secs
        ),
    );
    for (k, v) in by {
        row(&format!("    {k}"), v.to_string());
    }
}

fn main() -> Result<()> {
    if !under_cargo_bench("controller-scale bench", "bench/controller-scale/run") {
        return Ok(());
    }
    if !ferrolb_testlab::kube::cached_binary().is_some_and(|p| p.exists()) {
        println!(
            "controller-scale bench: no kube-apiserver built (scripts/kube-apiserver build); no figures"
        );
        return Ok(());
    }
    let bin = existing_ferrolb_bin()?;
    let n = env_usize("SCALE_BENCH_SERVICES", 10_000);
    let writers = env_usize("SCALE_BENCH_WRITERS", 32);

    let dir = TestDir::new("controller-scale-bench")?;
    let (mut args, audit_log) = audit_args(dir.path())?;
    // Every LoadBalancer Service takes a NodePort: 10,000 do not fit the
    // default 30000-32767.
    args.push("--service-node-port-range=20000-45000".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(api) = KubeApiServer::start_with(&StartOptions { extra_args: &args })? else {
        println!("controller-scale bench: kube-apiserver did not start here; no figures");
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let c = rt.block_on(async {
        let kc = Kubeconfig::read_from(api.kubeconfig_path())?;
        let mut cfg =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        cfg.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(BENCH_AGENT),
        ));
        anyhow::Ok(Client::try_from(cfg)?)
    })?;
    rt.block_on(async {
        let nss: Api<Namespace> = Api::all(c.clone());
        for ns in ["metallb-system", NS] {
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
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
        anyhow::Ok(())
    })?;

    let mut ctl = controller(&bin, api.kubeconfig_path(), dir.path(), 0)?;
    synced(&ctl, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "controller-scale bench: {n} Services, {writers} writers, ferrolb {}",
        bin.display()
    );
    row("controller idle", mem(&ctl));

    // ---------------------------------------------------------------- allocate
    let t0 = now_s();
    let start = Instant::now();
    let svcs: Api<Service> = Api::namespaced(c.clone(), NS);
    let created_at = rt.block_on(async {
        concurrently(n, writers, |i| {
            let svcs = svcs.clone();
            async move {
                svcs.create(&PostParams::default(), &service(&format!("s{i:05}"))?)
                    .await?;
                Ok(())
            }
        })
        .await?;
        anyhow::Ok(start.elapsed())
    })?;
    let (last, allocated) = loop {
        let m = rt.block_on(ips(&c))?;
        let have = m.values().filter(|ip| !ip.is_empty()).count();
        if have == n {
            break (m, start.elapsed());
        }
        if start.elapsed() > PHASE_LIMIT {
            bail!("only {have} of {n} Services got an IP in {PHASE_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let t1 = now_s();
    row(
        "allocate: all Services created",
        format!("{:.1} s", created_at.as_secs_f64()),
    );
    row(
        "allocate: all Services have an IP",
        format!(
            "{:.1} s ({:.0} Services/s)",
            allocated.as_secs_f64(),
            n as f64 / allocated.as_secs_f64()
        ),
    );
    row(
        "allocate: last create → last IP",
        format!("{:.1} s", (allocated - created_at).as_secs_f64()),
    );
    let distinct: std::collections::BTreeSet<&String> = last.values().collect();
    if distinct.len() != n {
        bail!("{} distinct IPs for {n} Services", distinct.len());
    }
    std::thread::sleep(Duration::from_secs(3));
    row("controller after allocate", mem(&ctl));

    // ---------------------------------------------------------------- steady
    let t2 = now_s();
    std::thread::sleep(QUIET);
    let t3 = now_s();

    // ---------------------------------------------------------------- restart
    ctl.terminate(Duration::from_secs(10));
    let r0 = Instant::now();
    let t4 = now_s();
    let mut ctl = controller(&bin, api.kubeconfig_path(), dir.path(), 1)?;
    synced(&ctl, Duration::from_secs(120))?;
    let synced = r0.elapsed();
    std::thread::sleep(QUIET);
    let t5 = now_s();
    let after = rt.block_on(ips(&c))?;
    let moved = last
        .iter()
        .filter(|(k, ip)| after.get(*k) != Some(*ip))
        .count();
    row(
        "restart: start → synced",
        format!("{:.2} s", synced.as_secs_f64()),
    );
    row("restart: IPs moved", format!("{moved} of {n}"));
    row("controller after restart", mem(&ctl));

    // ---------------------------------------------------------------- delete
    let d0 = Instant::now();
    let t6 = now_s();
    rt.block_on(concurrently(n, writers, |i| {
        let svcs = svcs.clone();
        async move {
            svcs.delete(&format!("s{i:05}"), &DeleteParams::default())
                .await?;
            Ok(())
        }
    }))?;
    let deleted = d0.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let t7 = now_s();
    row(
        "delete: all Services deleted",
        format!("{:.1} s", deleted.as_secs_f64()),
    );
    row("controller after delete", mem(&ctl));
    ctl.terminate(Duration::from_secs(10));

    let reqs = read_audit(&audit_log)?;
    print_requests("allocate", &reqs, t0, t1);
    print_requests("steady 20 s", &reqs, t2, t3);
    print_requests("restart + 20 s", &reqs, t4, t5);
    print_requests("delete + 5 s", &reqs, t6, t7);
    let ok = moved == 0;
    println!(
        "{}",
        json!({
            "services": n, "writers": writers,
            "created_s": created_at.as_secs_f64(), "allocated_s": allocated.as_secs_f64(),
            "restart_synced_s": synced.as_secs_f64(), "moved": moved,
            "steady_requests": tally(&reqs, t2, t3, controllers).total,
            "restart_requests": tally(&reqs, t4, t5, controllers).total,
        })
    );
    if !ok {
        bail!("{moved} IPs moved on restart");
    }
    Ok(())
}
