//! `ferrolb vip` end to end, in network namespaces (root only).
//!
//! - BGP mode: three agents in the reference lab's three node namespaces
//!   announce 172.17.0.100/32 to gobgpd on rt-01; each node's health
//!   endpoint is a tiny HTTP server in its namespace the test flips between
//!   200 and 500. Three healthy → three paths; one unhealthy → its path is
//!   withdrawn, the other two stay; healthy again → three; SIGTERM of one →
//!   its path goes at once and the address leaves its `lo`.
//! - Layer 2 mode: the same three agents elect a holder through a Lease on
//!   the real kube-apiserver (reached from each namespace through testlab's
//!   relay). Exactly one node has the address on eth0 and answers ARP
//!   (arping from client-less rt-01 sees one MAC); an unhealthy holder gives
//!   it up; a killed holder is replaced within the lease duration (the time
//!   is printed).
//!
//! The two `bench_failover_*` tests are ignored: they are the failover
//! benchmark (`bench/vip-failover/run`, figures in bench/README.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{
    Family, Frr, FrrConfig, FrrNeighbor, GobgpNeighbor, Gobgpd, GobgpdConfig, Netns, Proc, RefLab,
    TestDir, require_or_return, wait_until,
};

const VIP: &str = "172.17.0.100";
const HEALTH_PORT: u16 = 18080;
const RELAY_LISTEN: &str = "127.0.0.1:6443";
/// Where each BGP agent serves /metrics (in its own namespace).
const METRICS: &str = "127.0.0.1:17472";
/// Each node's "API server" for clients of the VIP: answers its node number.
const APP_PORT: u16 = 18000;

/// A health endpoint inside a namespace: answers every request with the
/// current status (200 or 500).
struct Health {
    status: Arc<AtomicU16>,
    _rt: tokio::runtime::Runtime,
}

impl Health {
    fn start(ns: &Netns, node: u8) -> Result<Health> {
        let rt = ns.tokio_runtime()?;
        let status = Arc::new(AtomicU16::new(200));
        let s = status.clone();
        let bound = rt.block_on(rt.spawn(async move {
            let l = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], HEALTH_PORT)))
                .await?;
            let app =
                tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], APP_PORT))).await?;
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Ok((mut c, _)) = app.accept().await {
                    tokio::spawn(async move {
                        let _ = c.write_all(&[node]).await;
                    });
                }
            });
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while let Ok((mut c, _)) = l.accept().await {
                    let code = s.load(Ordering::SeqCst);
                    tokio::spawn(async move {
                        let mut buf = [0u8; 2048];
                        let _ = c.read(&mut buf).await;
                        let msg = format!(
                            "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = c.write_all(msg.as_bytes()).await;
                    });
                }
            });
            Ok::<_, std::io::Error>(())
        }))?;
        bound.context("binding the health endpoint")?;
        Ok(Health { status, _rt: rt })
    }

    fn set(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }
}

/// `ferrolb vip ARGS` for the VIP with the test's health endpoint, checked
/// every `interval` ms (`timeout` ms).
fn vip_cmd_timed(args: &[&str], interval: &str, timeout: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    c.arg("vip")
        .args(args)
        .args([
            "--address",
            VIP,
            "--health-url",
            &format!("http://127.0.0.1:{HEALTH_PORT}/readyz"),
            "--health-interval",
            interval,
            "--health-timeout",
            timeout,
        ])
        .env("RUST_LOG", "info");
    c
}

fn start_health(lab: &RefLab) -> Result<Vec<Health>> {
    (1..=3)
        .zip(&lab.nodes)
        .map(|(i, ns)| Health::start(ns, i))
        .collect()
}

fn bgp_agent(ns: &Netns, source: &str) -> Result<Proc> {
    bgp_agent_timed(ns, source, "200", "150")
}

fn bgp_agent_timed(ns: &Netns, source: &str, interval: &str, timeout: &str) -> Result<Proc> {
    let cmd = vip_cmd_timed(
        &[
            "--mode",
            "bgp",
            "--peer",
            "172.17.0.1",
            "--local-as",
            "64522",
            "--peer-as",
            "64512",
            "--source",
            source,
            "--hold-time",
            "3",
            "--connect-retry",
            "1",
            "--metrics-addr",
            METRICS,
        ],
        interval,
        timeout,
    );
    ns.spawn_labeled(cmd, &format!("vip-{source}"))
}

/// Next hops of the VIP's paths at rt-01, sorted.
fn paths(g: &Gobgpd) -> Vec<String> {
    let mut v: Vec<String> = g
        .rib(Family::Ipv4Unicast)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.prefix == format!("{VIP}/32"))
        .flat_map(|r| r.paths.into_iter().map(|p| p.nexthop))
        .collect();
    v.sort();
    v
}

fn wait_paths(g: &Gobgpd, want: &[&str], timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let mut last = Vec::new();
    wait_until(timeout, Duration::from_millis(50), || {
        last = paths(g);
        (last == want).then_some(())
    })
    .with_context(|| format!("paths {last:?}, wanted {want:?}"))?;
    Ok(t0.elapsed())
}

fn metrics(ns: &Netns) -> Result<String> {
    ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        &format!("http://{METRICS}/metrics"),
    ])
}

fn on_lo(ns: &Netns) -> bool {
    ns.ip(&["-o", "addr", "show", "dev", "lo"])
        .map(|s| s.contains(&format!("{VIP}/32")))
        .unwrap_or(false)
}

#[test]
fn bgp_mode_three_paths_follow_health() -> Result<()> {
    require_or_return!("vip_e2e bgp", "gobgpd", "gobgp", "curl");
    let lab = RefLab::new()?;
    let mut gcfg = GobgpdConfig::new(64512, "172.17.0.1");
    gcfg.use_multiple_paths = true;
    for a in RefLab::NODE_ADDRS {
        let mut n = GobgpNeighbor::new(a, 64522);
        n.hold_time = Some(3);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        gcfg = gcfg.neighbor(n);
    }
    let g = Gobgpd::start(&lab.rt01, gcfg)?;
    let health = start_health(&lab)?;
    let mut agents = Vec::new();
    for (ns, a) in lab.nodes.iter().zip(RefLab::NODE_ADDRS) {
        agents.push(bgp_agent(ns, a)?);
    }
    let res = bgp_steps(&lab, &g, &health, &mut agents);
    if res.is_err() {
        for a in &agents {
            eprintln!(
                "--- {} stdout:\n{}\n--- stderr:\n{}",
                a.label(),
                a.stdout(),
                a.stderr_tail(20)
            );
        }
    }
    res
}

fn bgp_steps(lab: &RefLab, g: &Gobgpd, health: &[Health], agents: &mut [Proc]) -> Result<()> {
    let all = RefLab::NODE_ADDRS;
    let t = wait_paths(g, &all, Duration::from_secs(20))?;
    eprintln!("three paths after {t:?}");
    for ns in &lab.nodes {
        ensure!(on_lo(ns), "{VIP} is not on lo of {}", ns.name());
    }
    // Node 2 unhealthy: fall 3 × 200 ms, then its path goes; the others stay.
    health[1].set(500);
    let t = wait_paths(g, &[all[0], all[2]], Duration::from_secs(5))?;
    eprintln!("unhealthy node withdrawn after {t:?} (fall 3 x 200 ms)");
    agents[1].wait_for_line("withdrawn addresses=172.17.0.100", Duration::from_secs(1))?;
    let m = metrics(&lab.nodes[1])?;
    for line in [
        "ferrolb_vip_healthy 0",
        "ferrolb_vip_announcing 0",
        "ferrolb_vip_transitions_total{transition=\"health_down\"} 1",
        "ferrolb_vip_transitions_total{transition=\"health_up\"} 1",
        "ferrolb_vip_transitions_total{transition=\"inactive\"} 1",
    ] {
        ensure!(m.lines().any(|l| l == line), "no {line:?} in:\n{m}");
    }
    ensure!(
        metrics(&lab.nodes[0])?
            .lines()
            .any(|l| l == "ferrolb_vip_announcing 1"),
        "node 1 does not say it announces"
    );
    // Still two a little later (no flapping).
    std::thread::sleep(Duration::from_millis(600));
    ensure!(paths(g) == [all[0], all[2]], "paths {:?}", paths(g));
    // Healthy again: rise 2.
    health[1].set(200);
    let t = wait_paths(g, &all, Duration::from_secs(5))?;
    eprintln!("back to three paths after {t:?}");
    // One failed answer is not enough to withdraw (fall 3).
    health[0].set(500);
    std::thread::sleep(Duration::from_millis(250));
    health[0].set(200);
    std::thread::sleep(Duration::from_millis(800));
    ensure!(
        paths(g) == all,
        "one bad answer moved a path: {:?}",
        paths(g)
    );
    // SIGTERM: the session closes, the path goes, the address leaves lo.
    agents[2].signal("TERM")?;
    let status = agents[2]
        .wait_exit(Duration::from_secs(5))
        .context("no exit after SIGTERM")?;
    ensure!(status.success(), "exit status {status:?}");
    let t = wait_paths(g, &[all[0], all[1]], Duration::from_secs(3))?;
    eprintln!("SIGTERM: path gone after {t:?}");
    ensure!(!on_lo(&lab.nodes[2]), "{VIP} still on lo after SIGTERM");
    Ok(())
}

/// Stops a relay listener and the connections it forked (kept-alive client
/// connections would otherwise go on working): freeze it, kill its children
/// by PID, then it.
fn stop_relay(relay: &mut Proc) -> Result<()> {
    relay.signal("STOP")?;
    let pid = relay.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", child])
            .status();
    }
    relay.kill();
    Ok(())
}

/// A layer 2 agent for node `i` (0-based), health checked every `interval` ms.
fn l2_agent(
    ns: &Netns,
    i: usize,
    kubeconfig: &std::path::Path,
    interval: &str,
    timeout: &str,
) -> Result<Proc> {
    let name = format!("k8s-node-0{}", i + 1);
    let cmd = vip_cmd_timed(
        &[
            "--mode",
            "layer2",
            "--interface",
            "eth0",
            "--kubeconfig",
            kubeconfig.to_str().context("path")?,
            "--node-name",
            &name,
            "--api-server",
            &format!("https://{RELAY_LISTEN}"),
            "--api-server-tls-name",
            "localhost",
        ],
        interval,
        timeout,
    );
    ns.spawn_labeled(cmd, &format!("vip-{name}"))
}

/// The node namespaces that have the VIP on eth0.
fn holders(lab: &RefLab) -> Vec<usize> {
    lab.nodes
        .iter()
        .enumerate()
        .filter(|(_, ns)| {
            ns.ip(&["-o", "addr", "show", "dev", "eth0"])
                .map(|s| s.contains(&format!("{VIP}/32")))
                .unwrap_or(false)
        })
        .map(|(i, _)| i)
        .collect()
}

/// MACs answering ARP for the VIP, asked from rt-01.
fn arp_macs(lab: &RefLab) -> Result<Vec<String>> {
    let out = lab
        .rt01
        .exec(&["arping", "-b", "-c", "2", "-w", "3", "-I", "eth2", VIP])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut macs: Vec<String> = text
        .lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| {
            let open = l.find('[')?;
            let close = l.find(']')?;
            Some(l[open + 1..close].to_ascii_lowercase())
        })
        .collect();
    macs.sort();
    macs.dedup();
    Ok(macs)
}

fn mac_of(ns: &Netns) -> Result<String> {
    let s = ns.ip(&["-o", "link", "show", "dev", "eth0"])?;
    let i = s.find("link/ether ").context("no MAC")? + "link/ether ".len();
    Ok(s[i..i + 17].to_ascii_lowercase())
}

fn wait_one_holder(lab: &RefLab, not: Option<usize>, timeout: Duration) -> Result<usize> {
    let mut last = Vec::new();
    wait_until(timeout, Duration::from_millis(20), || {
        last = holders(lab);
        match last.as_slice() {
            [h] if Some(*h) != not => Some(*h),
            _ => None,
        }
    })
    .with_context(|| format!("holders {last:?} (not {not:?})"))
}

#[test]
fn layer2_mode_one_holder_and_failover() -> Result<()> {
    require_or_return!("vip_e2e layer2", "socat", "arping");
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let dir = TestDir::new("vip-e2e-l2")?;
    let lab = RefLab::new()?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api.port()?).into(),
    )?;
    let kubeconfig = dir.path().join("vip.kubeconfig");
    // As kubeadm's admin.conf: the server is the VIP itself. The agents
    // talk to their local API server instead (--api-server), verifying its
    // certificate for a name it carries (--api-server-tls-name).
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{VIP}:6443"))?;
    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let health = start_health(&lab)?;
    // A predecessor's address left on node 3: its agent removes it at start.
    lab.nodes[2].ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;
    let mut agents = Vec::new();
    for (i, ns) in lab.nodes.iter().enumerate() {
        agents.push(l2_agent(ns, i, &kubeconfig, "200", "150")?);
        if i == 2 {
            // Its stale address goes before it campaigns.
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                (!holders(&lab).contains(&2)).then_some(())
            })
            .context("the stale address was not removed")?;
        }
    }
    let client = lab.rt01.tokio_runtime()?;
    let res = layer2_steps(&lab, &health, &mut agents, &mut socats, &client);
    if res.is_err() {
        for a in &agents {
            eprintln!(
                "--- {} stdout:\n{}\n--- stderr:\n{}",
                a.label(),
                a.stdout(),
                a.stderr_tail(20)
            );
        }
        eprintln!("kube-apiserver logs: {}", api.dir().display());
    }
    res
}

fn layer2_steps(
    lab: &RefLab,
    health: &[Health],
    agents: &mut [Proc],
    relays: &mut [Proc],
    client: &tokio::runtime::Runtime,
) -> Result<()> {
    let h = wait_one_holder(lab, None, Duration::from_secs(20))?;
    eprintln!("holder: node {}", h + 1);
    // Stays one holder.
    std::thread::sleep(Duration::from_secs(2));
    ensure!(holders(lab) == [h], "holders {:?}", holders(lab));
    let macs = arp_macs(lab)?;
    ensure!(
        macs == [mac_of(&lab.nodes[h])?],
        "ARP answers from {macs:?}"
    );
    agents[h].wait_for_line(
        "holder addresses=172.17.0.100 interface=eth0",
        Duration::from_secs(1),
    )?;

    // The holder turns unhealthy: it gives the Lease up, another takes over.
    health[h].set(500);
    let t0 = Instant::now();
    let h2 = wait_one_holder(lab, Some(h), Duration::from_secs(10))?;
    eprintln!(
        "unhealthy holder replaced after {:?} (fall 3 x 200 ms + release)",
        t0.elapsed()
    );
    agents[h].wait_for_line("released addresses=172.17.0.100", Duration::from_secs(1))?;
    health[h].set(200);

    // Kill the holder (no release): another holds it within the lease duration.
    std::thread::sleep(Duration::from_secs(2));
    ensure!(holders(lab) == [h2], "holders {:?}", holders(lab));
    // A client on the LAN (rt-01) connects to the VIP through the failover.
    let clients = Clients::start(client);
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    agents[h2].kill();
    // A killed process leaves its address: take it off as a dead node's would vanish.
    lab.nodes[h2].ip(&["addr", "del", &format!("{VIP}/32"), "dev", "eth0"])?;
    let t0 = Instant::now();
    let h3 = wait_one_holder(lab, Some(h2), Duration::from_secs(10))?;
    let took = t0.elapsed();
    // Gratuitous ARP: rt-01's neighbour entry (REACHABLE, kept fresh by the
    // client's connections) switches to the new holder's MAC at once rather
    // than after its reachable time (15-45 s).
    let new_mac = mac_of(&lab.nodes[h3])?;
    let mut seen = String::new();
    wait_until(Duration::from_secs(1), Duration::from_millis(10), || {
        seen = lab.rt01.ip(&["neigh", "show", VIP, "dev", "eth2"]).ok()?;
        seen.contains(&new_mac).then_some(())
    })
    .with_context(|| format!("rt-01 still has {seen:?}, not {new_mac}"))?;
    eprintln!("killed holder replaced after {took:?} (lease duration 4 s)");
    ensure!(
        took <= Duration::from_millis(5500),
        "failover took {took:?}"
    );
    let macs = arp_macs(lab)?;
    ensure!(
        macs == [mac_of(&lab.nodes[h3])?],
        "ARP answers from {macs:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let answers = clients.stop(client)?;
    let gap = longest_gap(&answers, killed);
    let after: Vec<u8> = answers
        .iter()
        .filter(|(t, _)| *t > killed + took + Duration::from_millis(200))
        .filter_map(|a| a.1)
        .collect();
    eprintln!(
        "client on rt-01: {} connections, longest gap {gap:?} across the failover",
        answers.len()
    );
    let want = u8::try_from(h3 + 1)?;
    ensure!(
        !after.is_empty() && after.iter().all(|n| *n == want),
        "answers after the failover: {after:?}, want only node {want}"
    );
    ensure!(gap <= took + Duration::from_millis(1500), "gap {gap:?}");

    // SIGTERM: the holder removes the address and releases the Lease at once.
    agents[h3].signal("TERM")?;
    let t0 = Instant::now();
    let h4 = wait_one_holder(lab, Some(h3), Duration::from_secs(4))?;
    eprintln!("SIGTERM holder replaced after {:?}", t0.elapsed());
    if h4 == h2 {
        bail!("the killed agent cannot hold the address");
    }

    // The last agent loses its API server (its relay stops): it cannot renew,
    // so it drops the address within the renew deadline (3 s), before the
    // Lease could expire for anyone else (4 s).
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    stop_relay(&mut relays[h4])?;
    wait_until(
        Duration::from_millis(4500),
        Duration::from_millis(20),
        || holders(lab).is_empty().then_some(()),
    )
    .with_context(|| format!("holders {:?} without an API server", holders(lab)))?;
    let took = t0.elapsed();
    eprintln!("holder without an API server released the address after {took:?}");
    ensure!(took < Duration::from_secs(4), "released after {took:?}");
    agents[h4].wait_for_line("released addresses=172.17.0.100", Duration::from_secs(1))?;
    Ok(())
}

/// Next hops of rt-01's kernel route to the VIP, sorted.
fn kernel_next_hops(lab: &RefLab) -> Vec<String> {
    let out = lab
        .rt01
        .ip(&["-o", "route", "show", &format!("{VIP}/32")])
        .unwrap_or_default();
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut v: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    v.sort();
    v
}

fn wait_kernel(lab: &RefLab, want: &[&str], timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let mut last = Vec::new();
    wait_until(timeout, Duration::from_millis(20), || {
        last = kernel_next_hops(lab);
        (last == want).then_some(())
    })
    .with_context(|| format!("rt-01 next hops {last:?}, wanted {want:?}"))?;
    Ok(t0.elapsed())
}

/// One answer of the client loop: when, and which node (None: failed).
type Answer = (Instant, Option<u8>);

/// A client of the VIP: a new connection every 20 ms (1 s timeout), each
/// reads the answering node's number.
struct Clients {
    answers: Arc<std::sync::Mutex<Vec<Answer>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Clients {
    /// Starts the loop on `rt` (a namespace's runtime).
    fn start(rt: &tokio::runtime::Runtime) -> Clients {
        let answers = Arc::new(std::sync::Mutex::new(Vec::<Answer>::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a2, s2) = (answers.clone(), stop.clone());
        let task = rt.spawn(async move {
            use tokio::io::AsyncReadExt;
            let target = SocketAddr::new(VIP.parse().expect("VIP"), APP_PORT);
            while !s2.load(Ordering::SeqCst) {
                let one = async {
                    let mut c = tokio::net::TcpStream::connect(target).await.ok()?;
                    let mut b = [0u8; 1];
                    c.read_exact(&mut b).await.ok()?;
                    Some(b[0])
                };
                let got = tokio::time::timeout(Duration::from_secs(1), one)
                    .await
                    .ok()
                    .flatten();
                a2.lock().expect("lock").push((Instant::now(), got));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Clients {
            answers,
            stop,
            task,
        }
    }

    /// Stops the loop; every answer in order.
    fn stop(self, rt: &tokio::runtime::Runtime) -> Result<Vec<Answer>> {
        self.stop.store(true, Ordering::SeqCst);
        rt.block_on(self.task)?;
        Ok(self.answers.lock().expect("lock").clone())
    }
}

/// The longest time without a successful answer after `from`.
fn longest_gap(answers: &[Answer], from: Instant) -> Duration {
    let mut last_ok: Option<Instant> = None;
    let mut gap = Duration::ZERO;
    for (t, got) in answers {
        if got.is_none() {
            continue;
        }
        if let Some(prev) = last_ok
            && *t > from
        {
            gap = gap.max(t.duration_since(prev));
        }
        last_ok = Some(*t);
    }
    gap
}

/// BGP mode with FRR installing the ECMP route at rt-01 (zebra, maximum-paths
/// 3, L4 hashing): a client on the client LAN keeps reaching the VIP while
/// one node turns unhealthy and back; no new connection goes to the
/// unhealthy node while its path is withdrawn.
#[test]
fn bgp_mode_clients_keep_working() -> Result<()> {
    require_or_return!(
        "vip_e2e bgp clients",
        ferrolb_testlab::util::FRR_BGPD,
        ferrolb_testlab::util::FRR_ZEBRA,
        "vtysh"
    );
    let lab = RefLab::new()?;
    lab.rt01
        .run(&["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"])?;
    let mut fcfg = FrrConfig::new(64512, "172.17.0.1");
    fcfg.zebra = true;
    fcfg.maximum_paths = Some(3);
    for a in RefLab::NODE_ADDRS {
        let mut n = FrrNeighbor::new(a, 64522);
        n.hold_time = Some(3);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        fcfg = fcfg.neighbor(n);
    }
    let frr = Frr::start(&lab.rt01, fcfg)?;
    let health = start_health(&lab)?;
    let mut agents = Vec::new();
    for (ns, a) in lab.nodes.iter().zip(RefLab::NODE_ADDRS) {
        agents.push(bgp_agent(ns, a)?);
    }
    let client = lab.client01.tokio_runtime()?;
    let res = clients_steps(&lab, &health, &client);
    if res.is_err() {
        for a in &agents {
            eprintln!(
                "--- {} stdout:\n{}\n--- stderr:\n{}",
                a.label(),
                a.stdout(),
                a.stderr_tail(20)
            );
        }
        eprintln!("FRR run dir: {}", frr.run_dir().display());
    }
    res
}

fn clients_steps(lab: &RefLab, health: &[Health], client: &tokio::runtime::Runtime) -> Result<()> {
    let all = RefLab::NODE_ADDRS;
    let t = wait_kernel(lab, &all, Duration::from_secs(30))?;
    eprintln!("rt-01 has three next hops after {t:?}");
    let clients = Clients::start(client);
    std::thread::sleep(Duration::from_secs(1));
    health[1].set(500);
    wait_kernel(lab, &[all[0], all[2]], Duration::from_secs(5))?;
    let withdrawn = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let restore = Instant::now();
    health[1].set(200);
    wait_kernel(lab, &all, Duration::from_secs(5))?;
    std::thread::sleep(Duration::from_secs(1));
    let answers = clients.stop(client)?;
    let failed = answers.iter().filter(|a| a.1.is_none()).count();
    let mut nodes: Vec<u8> = answers.iter().filter_map(|a| a.1).collect();
    nodes.sort();
    nodes.dedup();
    let during: Vec<u8> = answers
        .iter()
        .filter(|(t, _)| *t > withdrawn && *t < restore)
        .filter_map(|a| a.1)
        .collect();
    eprintln!(
        "{} connections, {failed} failed, nodes answering {nodes:?}, {} while node 2 was withdrawn",
        answers.len(),
        during.len()
    );
    ensure!(answers.len() > 50, "only {} connections", answers.len());
    ensure!(failed == 0, "{failed} connections to the VIP failed");
    ensure!(nodes == [1, 2, 3], "ECMP spread over {nodes:?}");
    ensure!(
        !during.is_empty() && !during.contains(&2),
        "while withdrawn: {during:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The failover benchmark (bench/vip-failover/run; figures in bench/README.md).

/// One connection to the VIP from a namespace's runtime: the answering node.
fn probe(rt: &tokio::runtime::Runtime) -> Option<u8> {
    rt.block_on(rt.spawn(async {
        use tokio::io::AsyncReadExt;
        let target = SocketAddr::new(VIP.parse().ok()?, APP_PORT);
        let one = async {
            let mut c = tokio::net::TcpStream::connect(target).await.ok()?;
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.ok()?;
            Some(b[0])
        };
        tokio::time::timeout(Duration::from_millis(300), one)
            .await
            .ok()
            .flatten()
    }))
    .ok()
    .flatten()
}

/// Median, max and min of `v` in ms.
fn summary(name: &str, v: &mut [Duration]) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let all: Vec<String> = v.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    println!(
        "RESULT {name} runs={} median_ms={:.0} max_ms={:.0} min_ms={:.0} all_ms=[{}]",
        v.len(),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        ms(v[0]),
        all.join(",")
    );
}

fn bench_runs() -> usize {
    std::env::var("VIP_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

/// Not a test: the figures of bench/vip-failover (run with --ignored).
/// Default health timings (1000 ms, fall 3, rise 2) and lease timings.
#[test]
#[ignore = "benchmark: bench/vip-failover/run"]
fn bench_failover_bgp() -> Result<()> {
    require_or_return!(
        "vip bench bgp",
        ferrolb_testlab::util::FRR_BGPD,
        ferrolb_testlab::util::FRR_ZEBRA,
        "vtysh"
    );
    let runs = bench_runs();
    let lab = RefLab::new()?;
    let mut fcfg = FrrConfig::new(64512, "172.17.0.1");
    fcfg.zebra = true;
    fcfg.maximum_paths = Some(3);
    for a in RefLab::NODE_ADDRS {
        let mut n = FrrNeighbor::new(a, 64522);
        n.hold_time = Some(3);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        fcfg = fcfg.neighbor(n);
    }
    let _frr = Frr::start(&lab.rt01, fcfg)?;
    let health = start_health(&lab)?;
    let mut agents = Vec::new();
    for (ns, a) in lab.nodes.iter().zip(RefLab::NODE_ADDRS) {
        agents.push(bgp_agent_timed(ns, a, "1000", "1000")?);
    }
    let all = RefLab::NODE_ADDRS;
    let without = |i: usize| -> Vec<&str> {
        all.iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| *a)
            .collect()
    };
    wait_kernel(&lab, &all, Duration::from_secs(30))?;
    let (mut unhealthy, mut frozen) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let i = run % 3;
        // The node's API server fails: until rt-01's kernel route loses it.
        std::thread::sleep(Duration::from_millis(300 + 137 * run as u64 % 700));
        health[i].set(500);
        unhealthy.push(wait_kernel(&lab, &without(i), Duration::from_secs(10))?);
        health[i].set(200);
        wait_kernel(&lab, &all, Duration::from_secs(10))?;
        // The node hangs (SIGSTOP): the router's hold time (3 s) decides.
        std::thread::sleep(Duration::from_millis(500));
        agents[i].signal("STOP")?;
        frozen.push(wait_kernel(&lab, &without(i), Duration::from_secs(10))?);
        agents[i].signal("CONT")?;
        wait_kernel(&lab, &all, Duration::from_secs(20))?;
    }
    summary("bgp api-server-unhealthy", &mut unhealthy);
    summary("bgp node-hung-hold3s", &mut frozen);
    Ok(())
}

/// Not a test: the figures of bench/vip-failover (run with --ignored).
#[test]
#[ignore = "benchmark: bench/vip-failover/run"]
fn bench_failover_layer2() -> Result<()> {
    require_or_return!("vip bench layer2", "socat");
    let runs = bench_runs();
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let dir = TestDir::new("vip-bench-l2")?;
    let lab = RefLab::new()?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api.port()?).into(),
    )?;
    let kubeconfig = dir.path().join("vip.kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{VIP}:6443"))?;
    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let health = start_health(&lab)?;
    let mut agents = Vec::new();
    for (i, ns) in lab.nodes.iter().enumerate() {
        agents.push(l2_agent(ns, i, &kubeconfig, "1000", "1000")?);
    }
    let client = lab.rt01.tokio_runtime()?;
    // Until a client at rt-01 is answered by another node than `old`.
    let answered_by_other = |old: usize, t0: Instant| -> Result<Duration> {
        let old = u8::try_from(old + 1)?;
        wait_until(Duration::from_secs(20), Duration::from_millis(10), || {
            probe(&client).filter(|n| *n != old).map(|_| t0.elapsed())
        })
        .context("no other node answered")
    };
    let (mut crashed, mut unhealthy) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let h = wait_one_holder(&lab, None, Duration::from_secs(30))?;
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            probe(&client).filter(|n| usize::from(*n) == h + 1)
        })
        .context("the holder does not answer")?;
        std::thread::sleep(Duration::from_millis(300 + 137 * run as u64 % 700));
        // The holder dies (its agent killed, its address gone with it).
        let t0 = Instant::now();
        agents[h].kill();
        lab.nodes[h].ip(&["addr", "del", &format!("{VIP}/32"), "dev", "eth0"])?;
        crashed.push(answered_by_other(h, t0)?);
        agents[h] = l2_agent(&lab.nodes[h], h, &kubeconfig, "1000", "1000")?;
        // The new holder's API server fails.
        let h = wait_one_holder(&lab, None, Duration::from_secs(30))?;
        std::thread::sleep(Duration::from_millis(1500));
        let t0 = Instant::now();
        health[h].set(500);
        unhealthy.push(answered_by_other(h, t0)?);
        health[h].set(200);
        std::thread::sleep(Duration::from_millis(2500));
    }
    summary("layer2 holder-crashed", &mut crashed);
    summary("layer2 api-server-unhealthy", &mut unhealthy);
    Ok(())
}
