//! Speakers at scale (`harness = false`; run through `bench/speaker-scale/run`,
//! see bench/README.md, section "speaker-scale"; issue 15, scenario 3, the
//! speakers' part, and scenario 2 at full length).
//!
//! Set-up: a real kube-apiserver v1.20.2 (testlab, on loopback, every request
//! in its audit log), N node namespaces (default 50) on one LAN with a router
//! namespace running gobgpd (ASN 64512, multipath, one passive neighbor per
//! node, hold time 90 s), one release-build `ferrolb speaker` per node
//! reaching the API server through testlab's UNIX-socket relay, and S
//! LoadBalancer Services (default 1,000; `externalTrafficPolicy: Cluster`, one
//! ready endpoint each) whose IPs the real `ferrolb controller` allocated
//! (it is then stopped, so that every request in the windows below is a
//! speaker's). Every node announces every Service: N × S paths at the router.
//!
//! "Full table" is counted at the router, not assumed: every neighbor
//! Established in a session newer than the action, and exactly S prefixes
//! received from it (`gobgp -j neighbor`, polled every 100 ms).
//!
//! Phases:
//! - **first start**: all N speakers started at once → full table;
//! - **rollout, all at once**: every speaker SIGTERMed (they withdraw and
//!   close), then all started again (a DaemonSet with maxUnavailable 100 %) →
//!   full table; then until the API server is quiet (no speaker request for
//!   5 s: the `nodeAssigned` Events trail the routes);
//! - **rollout, rolling**: one node at a time (maxUnavailable 1), the next
//!   once the restarted node's S paths are back;
//! - **router resets**: `gobgp neighbor X reset` for every node at once, in
//!   rounds, until R resets (default 1,000): time until each session is back
//!   with its S paths; the speakers' VmRSS and open fds before and after;
//! - **router restarts**: gobgpd stopped (SIGTERM) and started K times
//!   (default 100) → full table each time; VmRSS and fds before and after.
//!
//! For each phase: API requests from the speakers (audit log: total, per
//! second, busiest second, by verb and resource).
//!
//! Environment: `FERROLB` = the ferrolb binary (default
//! `$CARGO_TARGET_DIR/release/ferrolb`), `SPEAKER_SCALE_NODES` (50),
//! `SPEAKER_SCALE_SERVICES` (1000), `SPEAKER_SCALE_RESETS` (1000),
//! `SPEAKER_SCALE_RESTARTS` (100), `SPEAKER_SCALE_ROLLING` (1; 0 skips it).

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use ferrolb_testlab::bench::{
    AuditReq, audit_args, concurrently, env_usize, existing_ferrolb_bin, now_s, read_audit, tally,
    under_cargo_bench,
};
use ferrolb_testlab::kube::{KubeApiServer, StartOptions};
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{Family, GobgpNeighbor, Gobgpd, GobgpdConfig, Lan, Netns, Proc, TestDir};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Service};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

const NS: &str = "scale";
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const ROUTER: &str = "172.18.0.1";
const CONFIG: &str = "peers:
- peer-address: 172.18.0.1
  peer-asn: 64512
  my-asn: 64522
address-pools:
- name: scale
  protocol: bgp
  addresses: [10.60.0.0/16]
";
/// Longest any one phase step may take.
const LIMIT: Duration = Duration::from_secs(900);
/// The API server counts as quiet after this long without a speaker request.
const QUIET: Duration = Duration::from_secs(5);

fn node_name(i: usize) -> String {
    format!("scale-node-{:02}", i + 1)
}

fn node_ip(i: usize) -> String {
    format!("172.18.0.{}", 11 + i)
}

/// One neighbor as gobgpd shows it.
#[derive(Debug, Clone)]
struct Peer {
    established: bool,
    /// The session's start as gobgpd prints it; changes with every new session.
    uptime: String,
    received: u64,
}

/// Every neighbor of gobgpd by address.
fn peers(g: &Gobgpd) -> Result<BTreeMap<String, Peer>> {
    let v: Value = serde_json::from_str(g.cli(&["-j", "neighbor"])?.trim())?;
    let mut out = BTreeMap::new();
    for p in v.as_array().context("gobgp neighbor JSON: not an array")? {
        let addr = p["state"]["neighbor_address"]
            .as_str()
            .or(p["conf"]["neighbor_address"].as_str())
            .unwrap_or_default()
            .to_string();
        let received = p["afi_safis"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["state"]["received"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        out.insert(
            addr,
            Peer {
                established: p["state"]["session_state"].as_u64() == Some(6),
                uptime: p["timers"]["state"]["uptime"].to_string(),
                received,
            },
        );
    }
    Ok(out)
}

/// Polls gobgpd until each of `nodes` is Established in a session other than
/// the one in `before` with `want` prefixes; returns each node's time from
/// `t0`. `alive_floor` counts the fewest Established neighbors seen.
fn wait_back(
    g: &Gobgpd,
    nodes: &[usize],
    before: &BTreeMap<String, Peer>,
    want: u64,
    t0: Instant,
    alive_floor: &mut usize,
) -> Result<BTreeMap<usize, f64>> {
    let mut back = BTreeMap::new();
    while back.len() < nodes.len() {
        ensure!(
            t0.elapsed() < LIMIT,
            "only {} of {} nodes back with {want} paths after {LIMIT:?}",
            back.len(),
            nodes.len()
        );
        let now = peers(g)?;
        let at = t0.elapsed().as_secs_f64();
        *alive_floor = (*alive_floor).min(now.values().filter(|p| p.established).count());
        for &i in nodes {
            if back.contains_key(&i) {
                continue;
            }
            let Some(p) = now.get(&node_ip(i)) else {
                continue;
            };
            let new_session = before
                .get(&node_ip(i))
                .is_none_or(|b| !b.established || b.uptime != p.uptime);
            if p.established && new_session && p.received == want {
                back.insert(i, at);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(back)
}

/// Median, 90th percentile and max of `v` (seconds), as text.
fn stats(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.2} s, p90 {:.2} s, max {:.2} s, min {:.2} s (n={})",
        at(0.5),
        at(0.9),
        s[s.len() - 1],
        s[0],
        s.len()
    )
}

fn row(what: &str, value: impl std::fmt::Display) {
    println!("{what:<52} {value}");
}

/// VmRSS (KiB) and open fds of a process.
fn rss_fds(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// The speakers' VmRSS and fds: min / median / max, as text.
fn footprint(sp: &[Proc]) -> (String, Vec<(u64, usize)>) {
    let all: Vec<(u64, usize)> = sp.iter().map(|p| rss_fds(p.pid())).collect();
    let mut r: Vec<u64> = all.iter().map(|x| x.0).collect();
    let mut f: Vec<usize> = all.iter().map(|x| x.1).collect();
    r.sort_unstable();
    f.sort_unstable();
    let mib = |k: u64| k as f64 / 1024.0;
    (
        format!(
            "VmRSS {:.1} / {:.1} / {:.1} MiB, fds {} / {} / {} (min / median / max)",
            mib(r[0]),
            mib(r[r.len() / 2]),
            mib(r[r.len() - 1]),
            f[0],
            f[f.len() / 2],
            f[f.len() - 1]
        ),
        all,
    )
}

/// The largest growth of VmRSS (KiB) and of fds from `before` to `after`
/// (each a speaker's (VmRSS, fds), in the same order); 0 with no speaker.
fn largest_growth(before: &[(u64, usize)], after: &[(u64, usize)]) -> (i64, i64) {
    before
        .iter()
        .zip(after)
        .map(|(x, y)| (y.0 as i64 - x.0 as i64, y.1 as i64 - x.1 as i64))
        .reduce(|m, d| (m.0.max(d.0), m.1.max(d.1)))
        .unwrap_or((0, 0))
}

/// Speaker requests in `[from, to)`, as text and the total.
fn requests(reqs: &[AuditReq], from: f64, to: f64) -> (String, usize) {
    let t = tally(reqs, from, to, |r| !r.system_user);
    let secs = (to - from).max(0.001);
    let mut by: Vec<(String, usize)> = t.by.into_iter().collect();
    by.sort_by_key(|b| std::cmp::Reverse(b.1));
    let top: Vec<String> = by.iter().take(6).map(|(k, v)| format!("{k} {v}")).collect();
    (
        format!(
            "{} in {secs:.1} s = {:.0}/s, busiest second {} ({})",
            t.total,
            t.total as f64 / secs,
            t.busiest_second,
            top.join(", ")
        ),
        t.total,
    )
}

/// Follows the audit log's new lines: when the speakers last sent a request.
struct AuditTail {
    path: PathBuf,
    offset: u64,
    last: Instant,
}

impl AuditTail {
    fn new(path: &Path) -> Self {
        AuditTail {
            path: path.to_path_buf(),
            offset: std::fs::metadata(path).map_or(0, |m| m.len()),
            last: Instant::now(),
        }
    }

    /// Reads what was appended; a line from a non-system user counts.
    fn poll(&mut self) -> Result<()> {
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        self.offset += complete as u64;
        let text = String::from_utf8_lossy(&buf[..complete]);
        if text
            .lines()
            .any(|l| !l.contains(r#""username":"system:"#) && l.contains(r#""auditID""#))
        {
            self.last = Instant::now();
        }
        Ok(())
    }

    /// Waits until no speaker request came for [`QUIET`]; returns when the
    /// last one came (epoch seconds), or `None` if `limit` passed first.
    fn wait_quiet(&mut self, limit: Duration) -> Result<Option<f64>> {
        let t0 = Instant::now();
        loop {
            self.poll()?;
            if self.last.elapsed() >= QUIET {
                return Ok(Some(now_s() - self.last.elapsed().as_secs_f64()));
            }
            if t0.elapsed() > limit {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

struct Cluster {
    bin: PathBuf,
    kubeconfig: PathBuf,
    nodes: Vec<Netns>,
}

impl Cluster {
    fn speaker(&self, i: usize, generation: usize) -> Result<Proc> {
        let state = self.nodes[i].dir().join("state");
        std::fs::create_dir_all(&state)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "speaker",
            "--node-name",
            &node_name(i),
            "--metrics-addr",
            "127.0.0.1:7472",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--kubeconfig")
        .arg(&self.kubeconfig)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
        self.nodes[i].spawn_labeled(cmd, &format!("speaker-{}-{generation}", i + 1))
    }
}

/// SIGTERM to each, then waits for every one to exit (SIGKILL after 10 s).
fn stop_all(sp: &mut [Proc]) {
    for p in sp.iter_mut() {
        let _ = p.signal("TERM");
    }
    for p in sp.iter_mut() {
        if p.wait_exit(Duration::from_secs(10)).is_none() {
            p.kill();
        }
    }
}

async fn setup_objects(c: &Client, n: usize, s: usize) -> Result<()> {
    let nss: Api<Namespace> = Api::all(c.clone());
    for ns in ["metallb-system", NS] {
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    }
    let nodes: Api<Node> = Api::all(c.clone());
    for i in 0..n {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": node_name(i),
                                 "labels": {"kubernetes.io/hostname": node_name(i)}},
                    "status": {"addresses": [{"type": "InternalIP", "address": node_ip(i)}],
                               "conditions": [{"type": "Ready", "status": "True"}]}
                }))?,
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
    concurrently(s, 16, |k| {
        let (svcs, eps) = (svcs.clone(), eps.clone());
        async move {
            let name = format!("s{k:04}");
            svcs.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"type": "LoadBalancer",
                             "externalTrafficPolicy": "Cluster",
                             "ports": [{"name": "http", "port": 80,
                                        "targetPort": 8080, "protocol": "TCP"}]}
                }))?,
            )
            .await?;
            eps.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "subsets": [{
                        "addresses": [{"ip": format!("10.244.{}.{}", k / 250, k % 250 + 1),
                                       "nodeName": node_name(k % n)}],
                        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
                    }]
                }))?,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// How many Services in the bench namespace have an IP.
async fn with_ip(c: &Client) -> Result<usize> {
    let l = Api::<Service>::namespaced(c.clone(), NS)
        .list(&ListParams::default())
        .await?;
    Ok(l.items
        .iter()
        .filter(|s| {
            s.status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .is_some_and(|i| !i.is_empty())
        })
        .count())
}

fn main() -> Result<()> {
    if !under_cargo_bench("speaker-scale bench", "bench/speaker-scale/run") {
        return Ok(());
    }
    if !ferrolb_testlab::kube::cached_binary().is_some_and(|p| p.exists()) {
        println!(
            "speaker-scale bench: no kube-apiserver built (scripts/kube-apiserver build); no figures"
        );
        return Ok(());
    }
    if !ferrolb_testlab::is_root() {
        println!("speaker-scale bench: needs root (network namespaces); no figures");
        return Ok(());
    }
    let bin = existing_ferrolb_bin()?;
    let n = env_usize("SPEAKER_SCALE_NODES", 50);
    let s = env_usize("SPEAKER_SCALE_SERVICES", 1000);
    let resets = env_usize("SPEAKER_SCALE_RESETS", 1000);
    let restarts = env_usize("SPEAKER_SCALE_RESTARTS", 100);
    let rolling = env_usize("SPEAKER_SCALE_ROLLING", 1) != 0;
    ensure!((1..=240).contains(&n), "SPEAKER_SCALE_NODES: 1 to 240");
    ensure!(
        (1..=60_000).contains(&s),
        "SPEAKER_SCALE_SERVICES: 1 to 60000"
    );
    let want = s as u64;

    let dir = TestDir::new("speaker-scale-bench")?;
    let (args, audit_log) = audit_args(dir.path())?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(api) = KubeApiServer::start_with(&StartOptions { extra_args: &args })? else {
        println!("speaker-scale bench: kube-apiserver did not start here; no figures");
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let c = rt.block_on(async {
        let kc = Kubeconfig::read_from(api.kubeconfig_path())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        anyhow::Ok(Client::try_from(cfg)?)
    })?;
    let t = Instant::now();
    rt.block_on(setup_objects(&c, n, s))?;
    let mut ctl = {
        let mut cmd = Command::new(&bin);
        cmd.args(["controller", "--metrics-addr", "127.0.0.1:17473"])
            .arg("--kubeconfig")
            .arg(api.kubeconfig_path())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        Proc::spawn(cmd, dir.path(), "controller")?
    };
    while rt.block_on(with_ip(&c))? < s {
        ensure!(
            t.elapsed() < LIMIT,
            "controller: not all Services got an IP: {}",
            ctl.stderr_tail(10)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    ctl.terminate(Duration::from_secs(10));
    eprintln!(
        "speaker-scale bench: {n} Nodes, {s} Services with IPs and Endpoints in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The network: one LAN, the router, N nodes each with a relay listener.
    let lan = Lan::new()?;
    let router = Netns::new()?;
    lan.attach(&router, "eth0", &[&format!("{ROUTER}/24")])?;
    let mut gcfg = GobgpdConfig::new(64512, ROUTER);
    gcfg.use_multiple_paths = true;
    for i in 0..n {
        let mut nb = GobgpNeighbor::new(&node_ip(i), 64522);
        nb.passive = true;
        nb.families = vec![Family::Ipv4Unicast];
        gcfg = gcfg.neighbor(nb);
    }
    let mut g = Gobgpd::start(&router, gcfg)?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        api.server_url()
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()?,
    )?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{RELAY_LISTEN}"))?;
    let mut nodes = Vec::new();
    let mut socats = Vec::new();
    for i in 0..n {
        let ns = Netns::new()?;
        lan.attach(&ns, "eth0", &[&format!("{}/24", node_ip(i))])?;
        socats.push(relay.spawn_listener_in(&ns, RELAY_LISTEN.parse()?)?);
        nodes.push(ns);
    }
    let cl = Cluster {
        bin: bin.clone(),
        kubeconfig,
        nodes,
    };
    let all: Vec<usize> = (0..n).collect();
    println!(
        "speaker-scale bench: {n} speakers x {s} Services = {} paths at one gobgpd; ferrolb {}",
        n * s,
        bin.display()
    );
    let mut figures = serde_json::Map::new();
    let mut floor = usize::MAX;

    // ------------------------------------------------------------ first start
    let before = peers(&g)?;
    let mut tail = AuditTail::new(&audit_log);
    let (w0, t0) = (now_s(), Instant::now());
    let mut sp: Vec<Proc> = (0..n).map(|i| cl.speaker(i, 0)).collect::<Result<_>>()?;
    let back = wait_back(&g, &all, &before, want, t0, &mut floor)?;
    let w1 = now_s();
    let full = back.values().copied().fold(0.0, f64::max);
    let quiet = tail.wait_quiet(LIMIT)?;
    row("first start: full table", format!("{full:.2} s"));
    row(
        "first start: per node",
        stats(&back.values().copied().collect::<Vec<_>>()),
    );
    let (fp_first, _) = footprint(&sp);
    row("speakers with the full table", &fp_first);
    figures.insert("first_start_s".into(), json!(full));

    // -------------------------------------------------- rollout, all at once
    std::thread::sleep(Duration::from_secs(3));
    let before = peers(&g)?;
    let mut tail = AuditTail::new(&audit_log);
    let (r0, t0) = (now_s(), Instant::now());
    stop_all(&mut sp);
    let stopped = t0.elapsed().as_secs_f64();
    let t_start = Instant::now();
    sp = (0..n).map(|i| cl.speaker(i, 1)).collect::<Result<_>>()?;
    let back = wait_back(&g, &all, &before, want, t_start, &mut floor)?;
    let r1 = now_s();
    let full = back.values().copied().fold(0.0, f64::max);
    let r_quiet = tail.wait_quiet(LIMIT)?;
    row(
        "rollout (all at once): stopped",
        format!("{stopped:.2} s after the first SIGTERM"),
    );
    row(
        "rollout (all at once): full table",
        format!(
            "{full:.2} s after the starts ({:.2} s after the first SIGTERM)",
            full + stopped
        ),
    );
    row(
        "rollout (all at once): per node",
        stats(&back.values().copied().collect::<Vec<_>>()),
    );
    figures.insert("rollout_all_s".into(), json!(full + stopped));
    let (fp_roll, _) = footprint(&sp);
    row("speakers after the rollout", &fp_roll);

    // ------------------------------------------------------ rollout, rolling
    let mut rolling_fig = None;
    if rolling {
        std::thread::sleep(Duration::from_secs(3));
        let (l0, t0) = (now_s(), Instant::now());
        let mut per = Vec::new();
        floor = usize::MAX;
        for i in 0..n {
            let before = peers(&g)?;
            let ti = Instant::now();
            sp[i].terminate(Duration::from_secs(10));
            sp[i] = cl.speaker(i, 2)?;
            let b = wait_back(&g, &[i], &before, want, ti, &mut floor)?;
            per.push(b[&i]);
        }
        let l1 = now_s();
        let total = t0.elapsed().as_secs_f64();
        row(
            "rollout (rolling): all nodes",
            format!("{total:.1} s, fewest sessions up meanwhile {floor} of {n}"),
        );
        row(
            "rollout (rolling): per node, stop → full again",
            stats(&per),
        );
        figures.insert("rolling_total_s".into(), json!(total));
        rolling_fig = Some((l0, l1));
    }

    // ------------------------------------------------------- router resets
    std::thread::sleep(Duration::from_secs(3));
    let (fp0, each0) = footprint(&sp);
    let mut reset_times = Vec::new();
    let mut done = 0;
    let x0 = now_s();
    while done < resets {
        let round: Vec<usize> = (0..n.min(resets - done)).collect();
        let before = peers(&g)?;
        let t0 = Instant::now();
        for &i in &round {
            g.cli(&["neighbor", &node_ip(i), "reset"])?;
        }
        let b = wait_back(&g, &round, &before, want, t0, &mut floor)?;
        reset_times.extend(b.values().copied());
        done += round.len();
        if done % (n * 5).max(1) < round.len() || done >= resets {
            eprintln!("resets {done}/{resets}: {}", stats(&reset_times));
        }
    }
    let x1 = now_s();
    let (fp1, _) = footprint(&sp);
    row(
        &format!("router resets ({resets}, {n} at a time)"),
        stats(&reset_times),
    );
    row("speakers before the resets", &fp0);
    row("speakers after the resets", &fp1);
    figures.insert("resets".into(), json!(reset_times.len()));

    // ----------------------------------------------------- router restarts
    let mut restart_times = Vec::new();
    let y0 = now_s();
    for k in 0..restarts {
        let t0 = Instant::now();
        g.restart_clean()?;
        // A new gobgpd: every neighbor's session is new.
        let b = wait_back(&g, &all, &BTreeMap::new(), want, t0, &mut floor)?;
        restart_times.push(b.values().copied().fold(0.0, f64::max));
        if (k + 1) % 10 == 0 {
            eprintln!("restarts {}/{restarts}: {}", k + 1, stats(&restart_times));
        }
    }
    let y1 = now_s();
    let (fp2, each2) = footprint(&sp);
    row(
        &format!("router restarts ({restarts}): full table"),
        stats(&restart_times),
    );
    row("speakers after the restarts", &fp2);
    let (drss, dfds) = largest_growth(&each0, &each2);
    row(
        "largest growth over resets + restarts",
        format!("VmRSS {drss:+} KiB, fds {dfds:+}"),
    );
    let g_rss = g.pid().map(rss_fds).map_or(0, |x| x.0);
    row("gobgpd VmRSS", format!("{:.1} MiB", g_rss as f64 / 1024.0));

    // --------------------------------------------------------- API requests
    stop_all(&mut sp);
    let reqs = read_audit(&audit_log)?;
    let (txt, _) = requests(&reqs, w0, w1);
    row("requests, first start until the full table", txt);
    if let Some(q) = quiet {
        let (txt, total) = requests(&reqs, w0, q + 0.001);
        row("requests, first start until quiet", txt);
        figures.insert("first_start_requests".into(), json!(total));
    }
    let (txt, total) = requests(&reqs, r0, r1);
    row("requests, rollout until the full table", txt);
    figures.insert("rollout_requests_to_full".into(), json!(total));
    match r_quiet {
        Some(q) => {
            let (txt, total) = requests(&reqs, r0, q + 0.001);
            row("requests, rollout until quiet", txt);
            row(
                "rollout: quiet",
                format!("{:.1} s after the first SIGTERM", q - r0),
            );
            figures.insert("rollout_requests".into(), json!(total));
            figures.insert("rollout_quiet_s".into(), json!(q - r0));
        }
        None => row("rollout: quiet", format!("not within {LIMIT:?}")),
    }
    if let Some((l0, l1)) = rolling_fig {
        let (txt, _) = requests(&reqs, l0, l1);
        row("requests, rolling rollout", txt);
    }
    let (txt, _) = requests(&reqs, x0, x1);
    row("requests, router resets", txt);
    let (txt, _) = requests(&reqs, y0, y1);
    row("requests, router restarts", txt);
    figures.insert("nodes".into(), json!(n));
    figures.insert("services".into(), json!(s));
    figures.insert("restarts".into(), json!(restart_times.len()));
    println!("{}", Value::Object(figures));
    drop(socats);
    Ok(())
}
