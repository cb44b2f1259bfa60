//! Interop: `ferrolb announce --bfd` against FRR 8.4 (zebra + bgpd + bfdd, the
//! neighbor with `bfd` and a BFD profile), in private network namespaces joined
//! by a veth.
//!
//! ```text
//!  netns A (ferrolb announce --bfd)   eth0 198.18.0.2/24
//!            |  veth
//!  netns B (FRR zebra, bgpd, bfdd)    eth0 198.18.0.1/24
//! ```
//! bgpd registers its BFD peers with bfdd through zebra, so zebra runs too. BIRD
//! 2.0 (`bgp` with `bfd on` and a `protocol bfd`) takes FRR's place in a second
//! test. Skips
//! with a printed reason when not root or a daemon is missing (fails in CI).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_testlab::frr::FrrBfdProfile;
use ferrolb_testlab::*;

const FERROLB: &str = env!("CARGO_BIN_EXE_ferrolb");
const FRR_BFDD: &str = "/usr/lib/frr/bfdd";
const T: Duration = Duration::from_secs(30);
const HOLD: u32 = 9;

const SPEAKER_ADDRS: [&str; 1] = ["198.18.0.2/24"];
const PEER_ADDRS: [&str; 1] = ["198.18.0.1/24"];
const SPEAKER: &str = "198.18.0.2";
const PEER: &str = "198.18.0.1";
const PREFIX: &str = "172.17.254.1/32";

fn announce(ns: &Netns) -> Result<Proc> {
    let mut c = std::process::Command::new(FERROLB);
    c.arg("announce")
        .args(["--peer", PEER, "--source", SPEAKER])
        .args(["--local-as", "64522", "--peer-as", "64512"])
        .args(["--connect-retry", "1", "--hold-time", &HOLD.to_string()])
        .args(["--prefix", PREFIX])
        .args([
            "--bfd",
            "--bfd-rx-interval",
            "100",
            "--bfd-tx-interval",
            "120",
        ])
        .args(["--bfd-detect-multiplier", "3"])
        .env("RUST_LOG", "info");
    ns.spawn_labeled(c, "ferrolb-announce")
}

fn frr_config() -> FrrConfig {
    let mut n = FrrNeighbor::new(SPEAKER, 64522);
    n.families = vec![Family::Ipv4Unicast];
    n.hold_time = Some(HOLD);
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

fn route_present(frr: &Frr) -> bool {
    frr.rib(Family::Ipv4Unicast)
        .map(|r| r.iter().any(|x| x.prefix == PREFIX))
        .unwrap_or(false)
}

/// Session and BFD Up with the configured timers; SIGSTOP of ferrolb takes the
/// route out of FRR well before the hold time; bfdd killed makes ferrolb close
/// with Cease / BFD Down (6/10) and reconnect.
#[test]
fn frr_bgp_with_bfd() -> Result<()> {
    require_or_return!("frr_bgp_with_bfd", FRR_BFDD, "vtysh");
    let lab = Pair::new(&SPEAKER_ADDRS, &PEER_ADDRS)?;
    let mut frr = Frr::start(&lab.b, frr_config())?;
    let mut f = announce(&lab.a)?;
    let res = scenario(&mut frr, &mut f);
    if res.is_err() {
        eprintln!("ferrolb stderr:\n{}", f.stderr_tail(60));
        if let Some(b) = frr.bgpd_proc() {
            eprintln!("bgpd log:\n{}", tail(&b.stdout(), 40));
        }
    }
    let _ = f.signal("CONT");
    f.terminate(Duration::from_secs(5));
    res
}

fn tail(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

fn scenario(frr: &mut Frr, f: &mut Proc) -> Result<()> {
    f.wait_for_line("established", T)?;
    f.wait_for_line("initial-routes-sent", T)?;
    frr.wait_established(SPEAKER, T)?;
    wait_until(T, Duration::from_millis(50), || {
        route_present(frr).then_some(())
    })
    .context("route never reached FRR")?;

    // BFD Up on FRR's side with both sides' configured timers.
    let p = wait_until(T, Duration::from_millis(50), || {
        frr.bfd_peers()
            .ok()?
            .into_iter()
            .find(|p| p.peer == SPEAKER && p.status == "up" && p.remote_transmit_interval == 120)
    })
    .with_context(|| format!("FRR's BFD peer never Up: {:?}", frr.bfd_peers()))?;
    assert_eq!(
        (p.receive_interval, p.transmit_interval, p.detect_multiplier),
        (200, 150, 4),
        "{p:?}"
    );
    assert_eq!(
        (
            p.remote_receive_interval,
            p.remote_transmit_interval,
            p.remote_detect_multiplier
        ),
        (100, 120, 3),
        "{p:?}"
    );

    // Freeze ferrolb: FRR's bfdd detects it (4 x 200 ms here) and bgpd drops the
    // session and the route long before the 9 s hold time.
    let t0 = Instant::now();
    f.signal("STOP")?;
    wait_until(
        Duration::from_secs(HOLD.into()),
        Duration::from_millis(10),
        || (!route_present(frr)).then_some(()),
    )
    .context("route still in FRR's table at the hold time")?;
    let gone = t0.elapsed();
    eprintln!("route left FRR {gone:?} after SIGSTOP (hold time {HOLD} s)");
    assert!(gone < Duration::from_secs(HOLD.into()));
    f.signal("CONT")?;
    f.wait_for_line("generation=2", T)
        .context("no re-establishment after SIGCONT")?;
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
    .context("BFD not Up again")?;

    // bfdd dies: ferrolb's BFD detects the silence and closes BGP with 6/10.
    // (Resuming from SIGSTOP may already have done so once: our own detection
    // timer expired while frozen.)
    let closes = |f: &Proc| {
        f.stderr()
            .matches("notification=6/10 Cease / BFD Down")
            .count()
    };
    let before = closes(f);
    let next_gen = f
        .stdout()
        .lines()
        .filter(|l| l.starts_with("established"))
        .count()
        + 1;
    frr.kill_bfdd();
    wait_until(T, Duration::from_millis(20), || {
        (closes(f) > before).then_some(())
    })
    .context("ferrolb did not close the session with 6/10 on BFD Down")?;
    // FRR logs the NOTIFICATION it received (log-neighbor-changes).
    let seen = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let log = frr.bgpd_proc().map(|b| b.stdout()).unwrap_or_default();
        log.lines()
            .find(|l| l.contains("received from neighbor") && l.contains("6/10"))
            .map(str::to_string)
    });
    let last = frr.last_reset(SPEAKER)?;
    eprintln!("FRR: {seen:?}\n{last}");
    if seen.is_none() {
        bail!("FRR's log shows no Cease 6/10 received");
    }
    assert!(last.contains("\"Cease/BFD Down\""), "{last}");
    // And the session comes back (bgpd does not wait for BFD), after the backoff.
    f.wait_for_line(&format!("generation={next_gen}"), T)
        .context("no re-establishment after BFD Down")?;
    Ok(())
}

/// BIRD as the router: BGP and BFD Up with the negotiated timers, and SIGSTOP
/// of ferrolb takes the route out of BIRD's table before the hold time.
#[test]
fn bird_bgp_with_bfd() -> Result<()> {
    require_or_return!("bird_bgp_with_bfd", "bird", "birdc");
    let lab = Pair::new(&SPEAKER_ADDRS, &PEER_ADDRS)?;
    let mut n = BirdNeighbor::new(SPEAKER, 64522);
    n.families = vec![Family::Ipv4Unicast];
    n.hold_time = Some(HOLD);
    n.bfd = true;
    let mut conf = BirdConfig::new(64512, PEER).neighbor(n);
    // BIRD: RX 200 ms, TX 150 ms, x4 (per interface).
    conf.extra = ferrolb_testlab::bird::bfd_protocol(&[], 200, 150, 4);
    let bird = Bird::start(&lab.b, conf)?;
    let mut f = announce(&lab.a)?;
    let present = |b: &Bird| {
        b.rib(Family::Ipv4Unicast)
            .map(|r| r.iter().any(|x| x.prefix == PREFIX))
            .unwrap_or(false)
    };
    let res = (|| -> Result<()> {
        f.wait_for_line("established", T)?;
        wait_until(T, Duration::from_millis(50), || {
            present(&bird).then_some(())
        })
        .context("route never reached BIRD")?;
        // BIRD sends at max(its TX 150, our RX 100) = 150 ms and detects after our
        // 3 x max(its RX 200, our TX 120) = 600 ms.
        let s = wait_until(T, Duration::from_millis(50), || {
            bird.bfd_sessions().ok()?.into_iter().find(|s| {
                s.address == SPEAKER
                    && s.state == "Up"
                    && (s.interval - 0.150).abs() < 1e-6
                    && (s.timeout - 0.600).abs() < 1e-6
            })
        })
        .with_context(|| {
            format!(
                "BIRD BFD not Up with 150 ms / 600 ms: {:?}",
                bird.bfd_sessions()
            )
        })?;
        eprintln!("BIRD BFD session: {s:?}");
        let t0 = Instant::now();
        f.signal("STOP")?;
        wait_until(
            Duration::from_secs(HOLD.into()),
            Duration::from_millis(10),
            || (!present(&bird)).then_some(()),
        )
        .context("route still in BIRD's table at the hold time")?;
        eprintln!(
            "route left BIRD {:?} after SIGSTOP (hold time {HOLD} s)",
            t0.elapsed()
        );
        f.signal("CONT")?;
        f.wait_for_line("generation=2", T)
            .context("no re-establishment after SIGCONT")?;
        Ok(())
    })();
    if res.is_err() {
        eprintln!("ferrolb stderr:\n{}", f.stderr_tail(60));
    }
    let _ = f.signal("CONT");
    f.terminate(Duration::from_secs(5));
    res
}
