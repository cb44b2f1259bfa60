//! Speaker benchmark (`harness = false`; run through `bench/speaker/run`, see
//! bench/README.md, section "speaker").
//!
//! Set-up: a real kube-apiserver v1.20.2 (testlab), the reference lab's rt-01
//! (gobgpd, ASN 64512, multipath) and k8s-node-01 as network namespaces, one
//! release-build `ferrolb speaker` inside node-01 reaching the API server
//! through testlab's UNIX-socket relay.
//!
//! Figures:
//! - **latency**: from the return of the PATCH that gives a Service its
//!   `status.loadBalancer.ingress` IP to the /32 appearing in gobgpd's global
//!   RIB (`gobgp monitor global rib -j`, each line stamped when read), median
//!   and p90 over 50 Services (target < 200 ms);
//! - **RSS**: the speaker's VmRSS and VmHWM idle (config loaded, session up,
//!   no Services; target ≤ 10 MiB) and with 10k LoadBalancer Services with IPs
//!   from a /16 pool and ready Endpoints, all announced (target ≤ 30 MiB).
//!
//! Environment: `FERROLB` = the ferrolb binary (default
//! `$CARGO_TARGET_DIR/release/ferrolb`), `SPEAKER_BENCH_SERVICES` (default
//! 10000), `SPEAKER_BENCH_LATENCY` (default 50).

use ferrolb_testlab::bench::{env_usize, existing_ferrolb_bin, under_cargo_bench};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{Family, GobgpNeighbor, Gobgpd, GobgpdConfig, Netns, Proc, RefLab, TestDir};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

const RELAY_LISTEN: &str = "127.0.0.1:6443";
const NODE: &str = "k8s-node-01";
const NODE_ADDR: &str = "172.17.0.21";

const CONFIG: &str = "peers:
- peer-address: 172.17.0.1
  peer-asn: 64512
  my-asn: 64522
  hold-time: 9s
address-pools:
- name: latency
  protocol: bgp
  addresses: [172.17.254.0/24]
- name: bulk
  protocol: bgp
  addresses: [10.30.0.0/16]
";

/// Memory figures from /proc/PID/status, KiB.
#[derive(Clone, Copy, Debug)]
struct Mem {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
}

fn rss(pid: u32) -> Result<Mem> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Mem {
        rss: get("VmRSS:"),
        hwm: get("VmHWM:"),
        anon: get("RssAnon:"),
        file: get("RssFile:"),
    })
}

/// Resident KiB per mapping (from /proc/PID/smaps), summed by what is mapped:
/// the binary, each library, the heap, stacks, other anonymous memory.
fn rss_by_mapping(pid: u32) -> Result<Vec<(String, u64)>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    let mut current = String::new();
    for line in s.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let perms = f.next().unwrap_or_default();
            let path = f.nth(3).unwrap_or("[anon]");
            let name = Path::new(path)
                .file_name()
                .map_or(path.into(), |n| n.to_string_lossy().into_owned());
            current = format!(
                "{name} {}",
                if perms.contains('x') { "code" } else { "data" }
            );
        } else if first == "Rss:" {
            *by.entry(current.clone()).or_default() +=
                f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut v: Vec<_> = by.into_iter().filter(|(_, kb)| *kb > 0).collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    Ok(v)
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// `gobgp monitor global rib -j` in rt-01; every line read is stamped, and the
/// first time each prefix is seen announced is kept. Killed by PID on drop.
struct Monitor {
    child: Child,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Monitor {
    fn start(ns: &Netns, api_port: u16) -> Result<Monitor> {
        let mut child = ns
            .command("gobgp")
            .args([
                "-p",
                &api_port.to_string(),
                "monitor",
                "global",
                "rib",
                "-j",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("gobgp monitor")?;
        let out = child.stdout.take().context("monitor stdout")?;
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let paths = match v {
                    serde_json::Value::Array(a) => a,
                    o => vec![o],
                };
                let mut m = s.lock().unwrap();
                for p in paths {
                    if p.get("withdrawal").and_then(|w| w.as_bool()) == Some(true) {
                        continue;
                    }
                    if let Some(prefix) = p.pointer("/nlri/prefix").and_then(|x| x.as_str()) {
                        m.entry(prefix.to_string()).or_insert(now);
                    }
                }
            }
        });
        Ok(Monitor { child, seen })
    }

    fn wait(&self, prefix: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.seen.lock().unwrap().get(prefix) {
                return Some(*t);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kube-apiserver 1.20 gives every LoadBalancer Service a nodePort from
/// 30000-32767 (2768 ports; `allocateLoadBalancerNodePorts: false` is alpha
/// there), so 10k Services need a wider range. testlab's start script takes no
/// extra flags, so restart the apiserver it started with the same command line
/// plus `--service-node-port-range`, and record the new PID in the state
/// directory's `pids` file so `KubeApiServer`'s stop still finds it. No port
/// is bound for nodePorts (there is no kube-proxy).
fn widen_node_port_range(api: &KubeApiServer) -> Result<()> {
    let pids_path = api.dir().join("pids");
    let pids = std::fs::read_to_string(&pids_path)?;
    let old: u32 = pids
        .lines()
        .find_map(|l| l.strip_prefix("kube-apiserver "))
        .and_then(|p| p.trim().parse().ok())
        .context("no kube-apiserver PID in the pids file")?;
    let cmdline = std::fs::read(format!("/proc/{old}/cmdline"))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let (prog, args) = argv.split_first().context("empty cmdline")?;
    std::process::Command::new("kill")
        .args(["-TERM", &old.to_string()])
        .status()?;
    ferrolb_testlab::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (!Path::new(&format!("/proc/{old}")).exists()).then_some(())
    })
    .context("old kube-apiserver did not stop")?;
    let log = std::fs::File::create(api.dir().join("kube-apiserver-restarted.log"))?;
    let child = std::process::Command::new(prog)
        .args(args)
        .arg("--service-node-port-range=20000-59999")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let new = child.id();
    std::fs::write(
        &pids_path,
        pids.replace(
            &format!("kube-apiserver {old}"),
            &format!("kube-apiserver {new}"),
        ),
    )?;
    let ready =
        ferrolb_testlab::wait_until(Duration::from_secs(90), Duration::from_millis(200), || {
            let out = std::process::Command::new("curl")
                .args(["-sk", "--max-time", "2", "-H"])
                .arg(format!("Authorization: Bearer {}", api.token()))
                .arg(format!("{}/readyz", api.server_url().trim_end_matches('/')))
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout).trim() == "ok").then_some(())
        });
    ready.context("restarted kube-apiserver not ready within 90 s")?;
    // The child is reaped by KubeApiServer's stop (by PID); forget the handle.
    drop(child);
    Ok(())
}

fn rib_count(g: &Gobgpd) -> Option<usize> {
    // "Table ipv4-unicast\nDestination: N, Path: M"
    let out = g.cli(&["global", "rib", "summary", "-a", "ipv4"]).ok()?;
    out.split("Destination:")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Wait (up to 300 s) until rt-01's RIB holds `want` IPv4 prefixes.
fn wait_for_routes(g: &Gobgpd, want: usize, sp: &Proc, when: &str) -> Result<()> {
    let mut last = 0;
    let all =
        ferrolb_testlab::wait_until(Duration::from_secs(300), Duration::from_millis(250), || {
            last = rib_count(g).unwrap_or(last);
            (last >= want).then_some(())
        });
    if all.is_none() {
        bail!(
            "{when}: rt-01 has {last} of {want} prefixes after 300 s: {}",
            sp.stderr_tail(20)
        );
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn service(name: &str) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    }))?)
}

fn endpoints(name: &str, i: usize) -> Result<Endpoints> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "subsets": [{
            "addresses": [{"ip": format!("10.244.{}.{}", (i / 250) % 250, i % 250 + 1), "nodeName": NODE}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }]
    }))?)
}

fn status(ip: &str) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}))
}

fn main() -> Result<()> {
    if !under_cargo_bench("speaker bench", "bench/speaker/run") {
        return Ok(());
    }
    if !ferrolb_testlab::require_root_or_skip("speaker bench", &["gobgpd", "gobgp", "socat"]) {
        return Ok(());
    }
    let bin = existing_ferrolb_bin()?;
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    widen_node_port_range(&api)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let n_bulk = env_usize("SPEAKER_BENCH_SERVICES", 10_000);
    let n_lat = env_usize("SPEAKER_BENCH_LATENCY", 50);

    let dir = TestDir::new("speaker-bench")?;
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
    let mut n = GobgpNeighbor::new(NODE_ADDR, 64522);
    n.passive = true;
    n.hold_time = Some(9);
    n.families = vec![Family::Ipv4Unicast];
    let g = Gobgpd::start(&lab.rt01, gcfg.neighbor(n))?;

    let c = rt.block_on(async {
        let kc = Kubeconfig::read_from(api.kubeconfig_path())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        anyhow::Ok(Client::try_from(cfg)?)
    })?;
    rt.block_on(async {
        let nss: Api<Namespace> = Api::all(c.clone());
        for n in ["metallb-system", "lat", "bulk"] {
            nss.create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": n}}))?,
            )
            .await?;
        }
        Api::<Node>::all(c.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}}),
                )?,
            )
            .await?;
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

    let node = &lab.nodes[0];
    let _socat = relay.spawn_listener_in(node, RELAY_LISTEN.parse()?)?;
    let start_speaker = || -> Result<Proc> {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args([
            "speaker",
            "--node-name",
            NODE,
            "--metrics-addr",
            "127.0.0.1:7472",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
        node.spawn_labeled(cmd, "speaker")
    };
    let mut sp = start_speaker()?;
    let pid = sp.pid();
    g.wait_established(NODE_ADDR, Duration::from_secs(30))
        .with_context(|| sp.stderr_tail(20))?;
    std::thread::sleep(Duration::from_secs(3));
    let idle = rss(pid)?;
    let idle_maps = rss_by_mapping(pid)?;
    eprintln!("idle: {idle:?} KiB");

    // Latency: Service + Endpoints exist, then the status PATCH gives the IP.
    let monitor = Monitor::start(&lab.rt01, g.api_port())?;
    std::thread::sleep(Duration::from_millis(500));
    let svcs: Api<Service> = Api::namespaced(c.clone(), "lat");
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), "lat");
    let mut lat_ms = Vec::new();
    let mut lat_sent_ms = Vec::new();
    for i in 0..n_lat {
        let name = format!("lat-{i}");
        let ip = format!("172.17.254.{}", i + 1);
        rt.block_on(async {
            svcs.create(&PostParams::default(), &service(&name)?)
                .await?;
            eps.create(&PostParams::default(), &endpoints(&name, i)?)
                .await?;
            anyhow::Ok(())
        })?;
        // Let the speaker see the Service without an IP first.
        std::thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        rt.block_on(svcs.patch_status(&name, &PatchParams::default(), &status(&ip)))?;
        let patched = Instant::now();
        let t = monitor
            .wait(&format!("{ip}/32"), Duration::from_secs(10))
            .with_context(|| format!("{ip} never reached rt-01: {}", sp.stderr_tail(20)))?;
        // The route often reaches rt-01 before the PATCH response reaches the
        // client (the watch event and the response leave the API server
        // together), so the figure from the return is signed.
        let ms = |a: Instant, b: Instant| {
            if a >= b {
                a.duration_since(b).as_secs_f64() * 1000.0
            } else {
                -(b.duration_since(a).as_secs_f64() * 1000.0)
            }
        };
        lat_ms.push(ms(t, patched));
        lat_sent_ms.push(ms(t, sent));
    }
    drop(monitor);
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    lat_sent_ms.sort_by(|a, b| a.total_cmp(b));

    // 10k Services with IPs from the /16 pool and ready Endpoints.
    let t_bulk = Instant::now();
    let bsvcs: Api<Service> = Api::namespaced(c.clone(), "bulk");
    let beps: Api<Endpoints> = Api::namespaced(c.clone(), "bulk");
    rt.block_on(async {
        futures::stream::iter(0..n_bulk)
            .map(|i| {
                let (bsvcs, beps) = (bsvcs.clone(), beps.clone());
                async move {
                    let name = format!("s{i}");
                    let ip = format!("10.30.{}.{}", i / 256, i % 256);
                    beps.create(&PostParams::default(), &endpoints(&name, i)?)
                        .await?;
                    bsvcs
                        .create(&PostParams::default(), &service(&name)?)
                        .await?;
                    bsvcs
                        .patch_status(&name, &PatchParams::default(), &status(&ip))
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await
    })?;
    let created = t_bulk.elapsed();
    eprintln!("{n_bulk} Services + Endpoints written in {created:?}");
    let want = n_bulk + n_lat;
    wait_for_routes(&g, want, &sp, "after the writes")?;
    let announced = t_bulk.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let full = rss(pid)?;
    let full_maps = rss_by_mapping(pid)?;
    // Prometheus scrapes every 15–60 s: what one scrape of /metrics (one
    // metallb_speaker_announced line per Service) leaves in the speaker.
    let t_scrape = Instant::now();
    let text = node.run(&[
        "curl",
        "-sf",
        "--max-time",
        "30",
        "http://127.0.0.1:7472/metrics",
    ])?;
    let scrape_time = t_scrape.elapsed();
    let lines = text
        .lines()
        .filter(|l| l.starts_with("metallb_speaker_announced{"))
        .count();
    anyhow::ensure!(
        lines == want,
        "/metrics shows {lines} announced IPs, want {want}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let scraped = rss(pid)?;

    // A restart with every Service already there (a DaemonSet rollout): the
    // new speaker lists 10k Services at once, announces them in one pass and
    // queues a nodeAssigned Event for each.
    sp.terminate(Duration::from_secs(10))
        .context("speaker did not exit on SIGTERM")?;
    ferrolb_testlab::wait_until(Duration::from_secs(120), Duration::from_millis(200), || {
        (rib_count(&g) == Some(0)).then_some(())
    })
    .context("routes still at rt-01 after the speaker exited")?;
    let t_restart = Instant::now();
    sp = start_speaker()?;
    let pid = sp.pid();
    g.wait_established(NODE_ADDR, Duration::from_secs(60))
        .with_context(|| sp.stderr_tail(20))?;
    let reestablished = t_restart.elapsed();
    wait_for_routes(&g, want, &sp, "after the restart")?;
    let reannounced = t_restart.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let restarted = rss(pid)?;

    println!();
    println!("speaker benchmark (release build, kube-apiserver v1.20.2, gobgpd rt-01)");
    println!("{:<52} {:>12} {:>10}", "figure", "value", "target");
    for (from, v) in [("PATCH returned", &lat_ms), ("PATCH sent", &lat_sent_ms)] {
        for (stat, x) in [
            ("median", percentile(v, 0.5)),
            ("p90", percentile(v, 0.9)),
            ("max", v.last().copied().unwrap_or(f64::NAN)),
        ] {
            println!(
                "{:<52} {:>9.1} ms {:>10}",
                format!("{from} → /32 in rt-01 RIB, {stat} (n={n_lat})"),
                x,
                if stat == "max" { "" } else { "< 200 ms" }
            );
        }
    }
    for (when, m) in [
        ("idle", idle),
        (&*format!("with {n_bulk} Services"), full),
        (
            &*format!("{n_bulk} Services, after a /metrics scrape"),
            scraped,
        ),
        (&*format!("restarted with {n_bulk} Services"), restarted),
    ] {
        let target = if when == "idle" {
            "≤ 10 MiB"
        } else {
            "≤ 30 MiB"
        };
        for (what, kb, t) in [
            ("VmRSS", m.rss, target),
            ("VmHWM", m.hwm, target),
            ("  of VmRSS: RssAnon (private)", m.anon, ""),
            ("  of VmRSS: RssFile (mapped binary, libs)", m.file, ""),
        ] {
            println!(
                "{:<52} {:>8.1} MiB {:>10}",
                format!("speaker {what}, {when}"),
                mib(kb),
                t
            );
        }
    }
    for (when, maps) in [("idle", &idle_maps), ("full", &full_maps)] {
        let top: Vec<String> = maps
            .iter()
            .take(8)
            .map(|(m, kb)| format!("{m} {:.2}", mib(*kb)))
            .collect();
        println!("resident MiB by mapping, {when}: {}", top.join(", "));
    }
    println!(
        "{:<52} {:>9.1} ms {:>10}",
        format!(
            "one /metrics scrape at {n_bulk} Services ({} KiB)",
            text.len() / 1024
        ),
        scrape_time.as_secs_f64() * 1000.0,
        ""
    );
    println!(
        "{:<52} {:>10.1} s {:>10}",
        format!("writing {n_bulk} Services+status+Endpoints"),
        created.as_secs_f64(),
        ""
    );
    println!(
        "{:<52} {:>10.1} s {:>10}",
        format!("first write → all {want} /32 in rt-01 RIB"),
        announced.as_secs_f64(),
        ""
    );
    println!(
        "{:<52} {:>10.1} s {:>10}",
        "restart → BGP session Established again",
        reestablished.as_secs_f64(),
        ""
    );
    println!(
        "{:<52} {:>10.1} s {:>10}",
        format!("restart → all {want} /32 in rt-01 RIB again"),
        reannounced.as_secs_f64(),
        ""
    );
    println!("from PATCH returned (ms, sorted): {lat_ms:.1?}");
    println!("from PATCH sent (ms, sorted): {lat_sent_ms:.1?}");
    drop(sp);
    Ok(())
}
