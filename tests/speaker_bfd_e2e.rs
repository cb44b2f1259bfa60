//! `ferrolb speaker` with a BFD profile, end to end: the ConfigMap's
//! `bfd-profiles` and a peer's `bfd-profile` reach the session the speaker
//! runs against FRR 8.4 (zebra + bgpd + bfdd) on a real kube-apiserver v1.20.2.
//!
//! ```text
//!  netns A: node k8s-node-01, `ferrolb speaker` (AS 64522)   eth0 198.18.0.2/24
//!           127.0.0.1:6443 → testlab's UNIX-socket relay → the API server
//!  netns B: router, FRR zebra + bgpd + bfdd (AS 64512)        eth0 198.18.0.1/24
//! ```
//! Checked, every wait bounded:
//! - the Service's IP reaches FRR, and FRR's BFD peer is Up with the timers of
//!   the ConfigMap's profile as the remote's (Required Min RX 100 ms, Desired
//!   Min TX 120 ms, multiplier 3), while FRR keeps its own (200/150/4);
//! - the speaker's `/metrics` shows `metallb_bfd_session_up{peer}` 1 and
//!   counts control packets both ways;
//! - the profile's echo setting is reported as unsupported (the speaker logs
//!   a warning naming `echo-mode`) while the rest is used;
//! - SIGSTOP of the speaker: the route leaves FRR's table through BFD, before
//!   the 30 s hold time could have done it (FRR's last reset names BFD);
//!   SIGCONT: session, BFD and route come back.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_testlab::frr::FrrBfdProfile;
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{
    Family, Frr, FrrConfig, FrrNeighbor, Netns, Pair, Proc, TestDir, require_or_return, wait_until,
};
use serde_json::json;

const FRR_BFDD: &str = "/usr/lib/frr/bfdd";
const NODE: &str = "k8s-node-01";
const SPEAKER: &str = "198.18.0.2";
const PEER: &str = "198.18.0.1";
const IP: &str = "172.17.254.7";
const PREFIX: &str = "172.17.254.7/32";
const HOLD: u32 = 30;
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const METRICS: &str = "127.0.0.1:7472";
const T: Duration = Duration::from_secs(30);

fn config() -> String {
    format!(
        "peers:\n- peer-address: {PEER}\n  peer-asn: 64512\n  my-asn: 64522\n  hold-time: {HOLD}s\n  bfd-profile: fast\n\
         bfd-profiles:\n- name: fast\n  receive-interval: 100\n  transmit-interval: 120\n  detect-multiplier: 3\n  echo-mode: true\n\
         address-pools:\n- name: default\n  protocol: bgp\n  addresses: [172.17.254.0/24]\n"
    )
}

fn frr_config() -> FrrConfig {
    let mut n = FrrNeighbor::new(SPEAKER, 64522);
    n.families = vec![Family::Ipv4Unicast];
    n.hold_time = Some(HOLD);
    n.passive = true;
    n.bfd = true;
    let mut c = FrrConfig::new(64512, PEER).neighbor(n);
    c.extra_router_lines = vec!["bgp log-neighbor-changes".into()];
    c.bfd_profile = Some(FrrBfdProfile {
        name: "fast".into(),
        receive_interval_ms: 200,
        transmit_interval_ms: 150,
        detect_multiplier: 4,
    });
    c
}

fn speaker(ns: &Netns, kubeconfig: &Path) -> Result<Proc> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    cmd.args(["speaker", "--node-name", NODE, "--metrics-addr", METRICS])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("FERROLB_POD_NAME")
        .env_remove("FERROLB_POD_UID");
    ns.spawn_labeled(cmd, "speaker")
}

/// One API call that must succeed (2xx).
fn api_ok(api: &KubeApiServer, method: &str, path: &str, body: serde_json::Value) -> Result<()> {
    let r = api.request_json(method, path, &body)?;
    ensure!(
        (200..300).contains(&r.status),
        "{method} {path}: {} {}",
        r.status,
        r.message()
    );
    Ok(())
}

fn setup(api: &KubeApiServer) -> Result<()> {
    for n in ["metallb-system", "e2e"] {
        api_ok(
            api,
            "POST",
            "/api/v1/namespaces",
            json!({"metadata": {"name": n}}),
        )?;
    }
    api_ok(
        api,
        "POST",
        "/api/v1/nodes",
        json!({"metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}}),
    )?;
    api_ok(
        api,
        "POST",
        "/api/v1/namespaces/metallb-system/configmaps",
        json!({"metadata": {"name": "config"}, "data": {"config": config()}}),
    )?;
    api_ok(
        api,
        "POST",
        "/api/v1/namespaces/e2e/services",
        json!({"metadata": {"name": "web"},
               "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
    )?;
    let r = api.request(
        "PATCH",
        "/api/v1/namespaces/e2e/services/web/status",
        Some((
            "application/merge-patch+json",
            json!({"status": {"loadBalancer": {"ingress": [{"ip": IP}]}}})
                .to_string()
                .as_bytes(),
        )),
    )?;
    ensure!(
        r.status == 200,
        "status patch: {} {}",
        r.status,
        r.message()
    );
    api_ok(
        api,
        "POST",
        "/api/v1/namespaces/e2e/endpoints",
        json!({"metadata": {"name": "web"},
               "subsets": [{"addresses": [{"ip": "10.244.1.10", "nodeName": NODE}],
                            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}),
    )
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

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn route_present(frr: &Frr) -> bool {
    frr.rib(Family::Ipv4Unicast)
        .map(|r| r.iter().any(|x| x.prefix == PREFIX))
        .unwrap_or(false)
}

#[test]
fn speaker_runs_bfd_from_the_configmap_profile() -> Result<()> {
    let test = "speaker_runs_bfd_from_the_configmap_profile";
    require_or_return!(test, FRR_BFDD, "vtysh", "socat", "curl");
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let dir = TestDir::new("speaker-bfd-e2e")?;
    let lab = Pair::new(&[&format!("{SPEAKER}/24")], &[&format!("{PEER}/24")])?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api.port()?).into(),
    )?;
    let kubeconfig = dir.path().join("speaker.kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{RELAY_LISTEN}"))?;
    setup(&api)?;
    let mut frr = Frr::start(&lab.b, frr_config())?;
    let _socat = relay.spawn_listener_in(&lab.a, RELAY_LISTEN.parse()?)?;
    let mut sp = speaker(&lab.a, &kubeconfig)?;
    let res = scenario(&lab.a, &frr, &mut sp);
    if res.is_err() {
        eprintln!("--- speaker stderr (tail):\n{}", sp.stderr_tail(60));
        if let Some(b) = frr.bgpd_proc() {
            let out = b.stdout();
            let v: Vec<&str> = out.lines().collect();
            eprintln!(
                "--- bgpd log (tail):\n{}",
                v[v.len().saturating_sub(40)..].join("\n")
            );
        }
    }
    let _ = sp.signal("CONT");
    sp.terminate(Duration::from_secs(5));
    res
}

fn scenario(node: &Netns, frr: &Frr, sp: &mut Proc) -> Result<()> {
    frr.wait_established(SPEAKER, T)?;
    wait_until(T, Duration::from_millis(50), || {
        route_present(frr).then_some(())
    })
    .context("the Service's route never reached FRR")?;

    // FRR's view of our BFD session: our profile's timers as the remote's.
    let p = wait_until(T, Duration::from_millis(50), || {
        frr.bfd_peers()
            .ok()?
            .into_iter()
            .find(|p| p.peer == SPEAKER && p.status == "up" && p.remote_transmit_interval == 120)
    })
    .with_context(|| format!("FRR's BFD peer never Up: {:?}", frr.bfd_peers()))?;
    assert_eq!(
        (
            p.remote_receive_interval,
            p.remote_transmit_interval,
            p.remote_detect_multiplier
        ),
        (100, 120, 3),
        "{p:?}"
    );
    assert_eq!(
        (p.receive_interval, p.transmit_interval, p.detect_multiplier),
        (200, 150, 4),
        "{p:?}"
    );

    // The speaker's metrics under MetalLB's names.
    let label = format!("{{peer=\"{PEER}\"}}");
    let m = wait_until(T, Duration::from_millis(200), || {
        let m = metrics(node).ok()?;
        (metric(&m, &format!("metallb_bfd_session_up{label}")) == Some(1.0)
            && metric(&m, &format!("metallb_bfd_control_packet_input{label}"))? > 0.0)
            .then_some(m)
    })
    .with_context(|| {
        format!(
            "metallb_bfd_session_up never 1: {}",
            metrics(node).unwrap_or_default()
        )
    })?;
    ensure!(
        metric(&m, &format!("metallb_bfd_control_packet_output{label}")).unwrap_or(0.0) > 0.0,
        "no control packets counted as sent:\n{m}"
    );

    // echo-mode is reported (the speaker logs it; Events are the controller's),
    // not silently dropped.
    let line = wait_until(T, Duration::from_millis(200), || {
        sp.stderr()
            .lines()
            .find(|l| l.contains("WARN") && l.contains("echo-mode") && l.contains("not supported"))
            .map(str::to_string)
    })
    .context("the speaker never warned that echo-mode is not supported")?;
    eprintln!("warning: {line}");

    // Freeze the speaker: BFD, not the 30 s hold timer, takes the route out.
    let t0 = Instant::now();
    sp.signal("STOP")?;
    wait_until(
        Duration::from_secs(HOLD.into()),
        Duration::from_millis(10),
        || (!route_present(frr)).then_some(()),
    )
    .context("route still in FRR's table at the hold time")?;
    let gone = t0.elapsed();
    let last = frr.last_reset(SPEAKER)?;
    eprintln!("route left FRR {gone:?} after SIGSTOP (hold time {HOLD} s)\n{last}");
    if !last.to_lowercase().contains("bfd") {
        bail!("FRR's last reset does not name BFD:\n{last}");
    }
    sp.signal("CONT")?;
    wait_until(T, Duration::from_millis(50), || {
        route_present(frr).then_some(())
    })
    .context("route not back after SIGCONT")?;
    wait_until(T, Duration::from_millis(50), || {
        frr.bfd_peers()
            .ok()?
            .into_iter()
            .find(|p| p.peer == SPEAKER && p.status == "up")
    })
    .context("BFD not Up again after SIGCONT")?;
    Ok(())
}
