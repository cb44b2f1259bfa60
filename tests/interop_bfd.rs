//! Interop: ferrolb's BFD (bgp::bfd, RFC 5880/5881) against FRR 8.4 `bfdd` and BIRD 2.0's
//! `protocol bfd`, in private network namespaces joined by a veth.
//!
//! ```text
//!  netns A (our BfdEndpoint, in a tokio runtime whose threads live in A)
//!       eth0 198.18.0.1/24 fd00:bfd::1/64
//!            |  veth
//!  netns B (bfdd | bird | a test socket)
//!       eth0 198.18.0.2/24 fd00:bfd::2/64
//! ```
//! Each test skips with a printed reason when not root or a daemon is missing, and fails
//! instead in CI (`CI=true`). Tests use separate namespaces and run in parallel.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_bgp::bfd::driver::BfdCounters;
use ferrolb_bgp::bfd::packet::{CONTROL_PORT, ControlPacket};
use ferrolb_bgp::bfd::{BfdConfig, BfdEndpoint, BfdSession, BfdStatus, Diag, State};
use ferrolb_testlab::bird::bfd_protocol;
use ferrolb_testlab::*;
use std::sync::atomic::Ordering;
use tokio::runtime::Runtime;
use tokio::sync::watch;

const US: [&str; 2] = ["198.18.0.1/24", "fd00:bfd::1/64"];
const THEM: [&str; 2] = ["198.18.0.2/24", "fd00:bfd::2/64"];
const T: Duration = Duration::from_secs(10);
const FRR_BFDD: &str = "/usr/lib/frr/bfdd";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Starts a session from a task on `rt`, so its sockets open inside the namespace.
fn start(
    rt: &Runtime,
    ep: &BfdEndpoint,
    cfg: BfdConfig,
) -> Result<(BfdSession, watch::Receiver<BfdStatus>)> {
    let ep = ep.clone();
    Ok(rt.block_on(rt.spawn(async move { ep.spawn(cfg) }))??)
}

/// Waits until the status satisfies `pred`; returns it.
fn wait_status(
    rt: &Runtime,
    rx: &mut watch::Receiver<BfdStatus>,
    what: &str,
    timeout: Duration,
    pred: impl FnMut(&BfdStatus) -> bool,
) -> Result<BfdStatus> {
    let r = rt.block_on(async {
        match tokio::time::timeout(timeout, rx.wait_for(pred)).await {
            Ok(Ok(s)) => Some(Ok(s.clone())),
            Ok(Err(_)) => Some(Err(())),
            Err(_) => None,
        }
    });
    match r {
        Some(Ok(s)) => Ok(s),
        Some(Err(())) => bail!("session task ended while waiting for {what}"),
        None => bail!("not {what} within {timeout:?}: {:?}", *rx.borrow()),
    }
}

fn count(c: &BfdCounters) -> (u64, u64, u64, u64) {
    (
        c.control_packet_input.load(Ordering::Relaxed),
        c.control_packet_output.load(Ordering::Relaxed),
        c.session_up_events.load(Ordering::Relaxed),
        c.session_down_events.load(Ordering::Relaxed),
    )
}

/// Up against bfdd with the intervals configured on both sides; Poll/Final timer change;
/// FRR's `shutdown` seen as a remote AdminDown (not a failure); our AdminDown seen by FRR;
/// our process going silent seen by FRR within its detection time.
#[test]
fn frr_bfdd_ipv4() -> Result<()> {
    require_or_return!("frr_bfdd_ipv4", FRR_BFDD, "vtysh");
    let lab = Pair::new(&US, &THEM)?;
    let mut peer = BfddPeer::new("198.18.0.1", "198.18.0.2");
    peer.receive_interval_ms = 200;
    peer.transmit_interval_ms = 150;
    peer.detect_multiplier = 4;
    let frr = Bfdd::start(&lab.b, &BfddConfig::default().peer(peer.clone()))?;
    let rt = lab.a.tokio_runtime()?;
    let ep = BfdEndpoint::new();
    let mut cfg = BfdConfig::new(ip("198.18.0.2"));
    cfg.local = Some(ip("198.18.0.1"));
    cfg.desired_min_tx = ms(100);
    cfg.required_min_rx = ms(250);
    cfg.detect_mult = 3;
    let (sess, mut st) = start(&rt, &ep, cfg)?;
    let mut events = sess.subscribe();

    // Up, and both Poll Sequences done: we send at max(our 100, FRR's RX 200) and detect
    // after FRR's 4 x max(our RX 250, FRR's TX 150).
    let s = wait_status(&rt, &mut st, "Up with negotiated timers", T, |s| {
        s.state == State::Up
            && s.negotiated.tx_interval == ms(200)
            && s.negotiated.detection_time == ms(1000)
    })?;
    assert_eq!(s.negotiated.remote_detect_mult, 4);
    let f = frr.wait_status("198.18.0.1", "up", T)?;
    let f = wait_until(T, ms(50), || {
        frr.peer("198.18.0.1")
            .ok()
            .filter(|p| p.remote_transmit_interval == 100)
    })
    .with_context(|| format!("FRR never saw our 100 ms TX: {f:?}"))?;
    assert_eq!(
        (f.receive_interval, f.transmit_interval, f.detect_multiplier),
        (200, 150, 4)
    );
    assert_eq!(
        (
            f.remote_receive_interval,
            f.remote_transmit_interval,
            f.remote_detect_multiplier
        ),
        (250, 100, 3)
    );
    assert_eq!(f.remote_id, sess.local_discr());
    assert_eq!(f.id, s.remote_discr);
    let (i, o, up, down) = count(&sess.counters());
    assert!(i > 0 && o > 0, "packets in {i} out {o}");
    assert_eq!((up, down), (1, 0));

    // A timer change while Up goes out with a Poll and FRR takes it.
    rt.block_on(sess.set_timers(ms(300), ms(250), 3));
    wait_until(T, ms(50), || {
        frr.peer("198.18.0.1")
            .ok()
            .filter(|p| p.remote_transmit_interval == 300)
    })
    .context("FRR did not see our new 300 ms TX")?;
    wait_status(&rt, &mut st, "TX 300 ms", T, |s| {
        s.negotiated.tx_interval == ms(300)
    })?;

    // FRR's peer shut down: we go Down with diag 3 and know it was administrative.
    frr.configure_peer(&peer, &["shutdown"])?;
    let s = wait_status(&rt, &mut st, "Down", T, |s| s.state == State::Down)?;
    assert_eq!(s.diag, Diag::NeighborSignaledSessionDown);
    assert!(s.remote_admin_down);
    let ev = rt.block_on(async {
        loop {
            let e = events.recv().await?;
            if e.to == State::Down {
                return anyhow::Ok(e);
            }
        }
    })?;
    assert!(
        !ev.is_failure(),
        "remote AdminDown is not a failure: {ev:?}"
    );
    frr.configure_peer(&peer, &["no shutdown"])?;
    wait_status(&rt, &mut st, "Up again", T, |s| s.state == State::Up)?;
    frr.wait_status("198.18.0.1", "up", T)?;

    // Our AdminDown: FRR goes down at once and shows our diag 7.
    rt.block_on(sess.admin_down());
    let f = frr.wait_status("198.18.0.1", "down", ms(2000))?;
    assert_eq!(f.remote_diagnostic, "administratively down");
    rt.block_on(sess.admin_up());
    wait_status(&rt, &mut st, "Up after AdminUp", T, |s| {
        s.state == State::Up
    })?;
    frr.wait_status("198.18.0.1", "up", T)?;
    wait_status(&rt, &mut st, "TX 300 ms again", T, |s| {
        s.negotiated.tx_interval == ms(300)
    })?;
    wait_until(T, ms(50), || {
        frr.peer("198.18.0.1")
            .ok()
            .filter(|p| p.remote_transmit_interval == 300)
    })
    .context("FRR back on our 300 ms TX")?;
    let (_, _, up, down) = count(&sess.counters());
    assert_eq!((up, down), (3, 2));

    // We go silent (session dropped, as if the process died): FRR's detection time is
    // our 3 x max(FRR's RX 200, our TX 300) = 900 ms.
    let t0 = Instant::now();
    drop(sess);
    let f = frr.wait_status("198.18.0.1", "down", ms(3000))?;
    let took = t0.elapsed();
    assert_eq!(f.diagnostic, "control detection time expired");
    assert!(
        took < ms(900 + 400),
        "FRR noticed after {took:?}, detection time 900 ms"
    );
    eprintln!("frr_bfdd_ipv4: FRR detected our silence after {took:?}");
    Ok(())
}

/// IPv6: Up against bfdd; bfdd killed → we go Down with diag 1 within our detection time.
#[test]
fn frr_bfdd_ipv6_killed() -> Result<()> {
    require_or_return!("frr_bfdd_ipv6_killed", FRR_BFDD, "vtysh");
    let lab = Pair::new(&US, &THEM)?;
    let mut peer = BfddPeer::new("fd00:bfd::1", "fd00:bfd::2");
    peer.receive_interval_ms = 100;
    peer.transmit_interval_ms = 100;
    let mut frr = Bfdd::start(&lab.b, &BfddConfig::default().peer(peer))?;
    let rt = lab.a.tokio_runtime()?;
    let ep = BfdEndpoint::new();
    let mut cfg = BfdConfig::new(ip("fd00:bfd::2"));
    cfg.local = Some(ip("fd00:bfd::1"));
    cfg.desired_min_tx = ms(100);
    cfg.required_min_rx = ms(100);
    let (sess, mut st) = start(&rt, &ep, cfg)?;
    let mut events = sess.subscribe();
    wait_status(&rt, &mut st, "Up at 100 ms", T, |s| {
        s.state == State::Up && s.negotiated.detection_time == ms(300)
    })?;
    let f = frr.wait_status("fd00:bfd::1", "up", T)?;
    assert_eq!(f.remote_id, sess.local_discr());
    let t0 = Instant::now();
    frr.kill();
    let ev = rt.block_on(async {
        loop {
            let e = events.recv().await?;
            if e.to == State::Down {
                return anyhow::Ok(e);
            }
        }
    })?;
    let took = t0.elapsed();
    assert_eq!(ev.diag, Diag::ControlDetectionTimeExpired);
    assert!(ev.is_failure());
    assert!(
        took < ms(300 + 200),
        "Down after {took:?}, detection time 300 ms"
    );
    eprintln!("frr_bfdd_ipv6_killed: Down {took:?} after bfdd was killed");
    Ok(())
}

fn bird_case(name: &str, us: &str, them: &str) -> Result<()> {
    if !require_root_or_skip(name, &["bird", "birdc"]) {
        return Ok(());
    }
    let lab = Pair::new(&US, &THEM)?;
    let mut conf = BirdConfig::new(65000, "198.18.0.2");
    conf.extra = bfd_protocol(&[(us, them)], 200, 150, 5);
    let mut bird = Bird::start(&lab.b, conf)?;
    let rt = lab.a.tokio_runtime()?;
    let ep = BfdEndpoint::new();
    let mut cfg = BfdConfig::new(ip(them));
    cfg.local = Some(ip(us));
    cfg.desired_min_tx = ms(120);
    cfg.required_min_rx = ms(250);
    cfg.detect_mult = 3;
    let (sess, mut st) = start(&rt, &ep, cfg)?;
    // We send at max(120, BIRD's RX 200); we detect after 5 x max(250, BIRD's TX 150).
    wait_status(&rt, &mut st, "Up with BIRD's timers", T, |s| {
        s.state == State::Up
            && s.negotiated.tx_interval == ms(200)
            && s.negotiated.detection_time == ms(1250)
    })?;
    // BIRD sends at max(150, our RX 250) and detects after 3 x max(200, our TX 120).
    let b = wait_until(T, ms(50), || {
        bird.bfd_sessions()
            .ok()?
            .into_iter()
            .find(|s| s.address == us && s.state == "Up" && s.interval == 0.25 && s.timeout == 0.6)
    })
    .with_context(|| format!("BIRD session: {:?}", bird.bfd_sessions()))?;
    eprintln!("{name}: BIRD {b:?}");
    // BIRD stops (killed: silence) → we go Down with diag 1.
    let t0 = Instant::now();
    bird.kill();
    let s = wait_status(&rt, &mut st, "Down", ms(3000), |s| s.state == State::Down)?;
    let took = t0.elapsed();
    assert_eq!(s.diag, Diag::ControlDetectionTimeExpired);
    assert!(took < ms(1250 + 300), "Down after {took:?}");
    drop(sess);
    Ok(())
}

/// Up against BIRD over IPv4 with both sides' timers; Down when BIRD stops.
#[test]
fn bird_bfd_ipv4() -> Result<()> {
    bird_case("bird_bfd_ipv4", "198.18.0.1", "198.18.0.2")
}

/// The same over IPv6.
#[test]
fn bird_bfd_ipv6() -> Result<()> {
    bird_case("bird_bfd_ipv6", "fd00:bfd::1", "fd00:bfd::2")
}

/// GTSM: a Control packet arriving with TTL 254 is dropped by the listener; the same
/// packet with TTL 255 moves the session to Init.
#[test]
fn ttl_254_is_ignored() -> Result<()> {
    require_or_return!("ttl_254_is_ignored");
    let lab = Pair::new(&US, &THEM)?;
    let rt = lab.a.tokio_runtime()?;
    let peer_rt = lab.b.tokio_runtime()?;
    let ep = BfdEndpoint::new();
    let mut cfg = BfdConfig::new(ip("198.18.0.2"));
    cfg.passive = true; // keeps our side quiet; irrelevant to the check
    let (_sess, mut st) = start(&rt, &ep, cfg)?;
    let pkt = ControlPacket {
        diag: Diag::None,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        authentication: false,
        demand: false,
        multipoint: false,
        detect_mult: 3,
        my_discr: 0x77,
        your_discr: 0,
        desired_min_tx: 1_000_000,
        required_min_rx: 1_000_000,
        required_min_echo_rx: 0,
    };
    let send = |ttl: u32| -> Result<()> {
        peer_rt.block_on(peer_rt.spawn(async move {
            let s = tokio::net::UdpSocket::bind("198.18.0.2:49333").await?;
            s.set_ttl(ttl)?;
            s.send_to(&pkt.encode(), ("198.18.0.1", CONTROL_PORT))
                .await?;
            anyhow::Ok(())
        }))?
    };
    send(254)?;
    wait_until(ms(2000), ms(10), || {
        (ep.listener_counters().bad_ttl.load(Ordering::Relaxed) == 1).then_some(())
    })
    .context("listener did not count the TTL 254 packet")?;
    std::thread::sleep(ms(100));
    assert_eq!(st.borrow().state, State::Down);
    assert_eq!(st.borrow().remote_discr, 0);
    send(255)?;
    let s = wait_status(&rt, &mut st, "Init", ms(2000), |s| s.state == State::Init)?;
    assert_eq!(s.remote_discr, 0x77);
    assert_eq!(ep.listener_counters().bad_ttl.load(Ordering::Relaxed), 1);
    Ok(())
}

/// Passive role: we send nothing until bfdd (active) has spoken, then come Up with it.
#[test]
fn passive_waits_for_frr() -> Result<()> {
    require_or_return!("passive_waits_for_frr", FRR_BFDD, "vtysh");
    let lab = Pair::new(&US, &THEM)?;
    let rt = lab.a.tokio_runtime()?;
    let ep = BfdEndpoint::new();
    let mut cfg = BfdConfig::new(ip("198.18.0.2"));
    cfg.local = Some(ip("198.18.0.1"));
    cfg.passive = true;
    let (sess, mut st) = start(&rt, &ep, cfg)?;
    std::thread::sleep(ms(1500));
    assert_eq!(
        count(&sess.counters()),
        (0, 0, 0, 0),
        "passive sent before hearing"
    );
    let peer = BfddPeer::new("198.18.0.1", "198.18.0.2");
    let frr = Bfdd::start(&lab.b, &BfddConfig::default().peer(peer))?;
    wait_status(&rt, &mut st, "Up", T, |s| s.state == State::Up)?;
    let f = frr.wait_status("198.18.0.1", "up", T)?;
    assert_eq!(f.remote_id, sess.local_discr());
    let (i, o, up, _) = count(&sess.counters());
    assert!(i > 0 && o > 0 && up == 1);
    Ok(())
}
