//! The driver acting on BFD events (RFC 9384): two ferrolb sessions over TCP
//! on 127.0.0.1, the active one fed by a fake BFD event source.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ferrolb_bgp::bfd::{BfdEvent, Diag, State as BfdState};
use ferrolb_bgp::driver::{PeerConfig, SessionHandle, SessionStatus, spawn, spawn_with_bfd_events};
use ferrolb_bgp::fsm::{DownReason, State};
use tokio::sync::{broadcast, watch};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

async fn wait_for(
    rx: &mut watch::Receiver<SessionStatus>,
    what: &str,
    f: impl FnMut(&SessionStatus) -> bool,
) -> SessionStatus {
    let res = tokio::time::timeout(Duration::from_secs(30), async {
        rx.wait_for(f).await.map(|s| s.clone())
    })
    .await;
    match res {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!("{what}: session task ended"),
        Err(_) => panic!("{what}: timed out; last status {:#?}", *rx.borrow()),
    }
}

async fn passive() -> (SessionHandle, u16) {
    let mut cfg = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), 179),
        64512,
        64522,
        Ipv4Addr::new(198, 18, 0, 1),
    );
    cfg.passive = true;
    cfg.listen = true;
    cfg.listen_port = 0;
    cfg.hold_time = 30;
    let h = spawn(cfg);
    let mut rx = h.status();
    let s = wait_for(&mut rx, "listening", |s| s.listen_addr.is_some()).await;
    (h, s.listen_addr.unwrap().port())
}

fn active_cfg(port: u16) -> PeerConfig {
    let mut cfg = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), port),
        64522,
        64512,
        Ipv4Addr::new(198, 18, 0, 2),
    );
    cfg.hold_time = 30;
    cfg.connect_retry = Duration::from_millis(400);
    cfg
}

fn event(from: BfdState, to: BfdState, diag: Diag, remote_admin_down: bool) -> BfdEvent {
    BfdEvent {
        peer: IpAddr::V4(LOCALHOST),
        from,
        to,
        diag,
        remote_admin_down,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bfd_failure_closes_with_cease_10_and_reconnects_after_backoff() {
    let (p, port) = passive().await;
    let (bfd_tx, bfd_rx) = broadcast::channel(16);
    let a = spawn_with_bfd_events(active_cfg(port), bfd_rx);
    let mut arx = a.status();
    let mut prx = p.status();
    wait_for(&mut arx, "established", |s| s.state == State::Established).await;

    // Coming Up, and the peer going AdminDown on purpose, are not failures.
    bfd_tx
        .send(event(BfdState::Init, BfdState::Up, Diag::None, false))
        .unwrap();
    bfd_tx
        .send(event(
            BfdState::Up,
            BfdState::Down,
            Diag::NeighborSignaledSessionDown,
            true,
        ))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = a.status().borrow().clone();
    assert_eq!(s.state, State::Established, "{s:#?}");
    assert_eq!((s.established_generation, s.bfd_downs), (1, 0));

    // A detection-time expiry while Established: Cease 6/10 at once.
    bfd_tx
        .send(event(BfdState::Down, BfdState::Up, Diag::None, false))
        .unwrap();
    let t0 = Instant::now();
    bfd_tx
        .send(event(
            BfdState::Up,
            BfdState::Down,
            Diag::ControlDetectionTimeExpired,
            false,
        ))
        .unwrap();
    let sp = wait_for(&mut prx, "peer sees the Cease", |s| {
        s.state != State::Established
    })
    .await;
    let Some(DownReason::NotificationReceived(n)) = &sp.last_down_reason else {
        panic!("{sp:#?}")
    };
    assert_eq!((n.code, n.subcode), (6, 10), "Cease / BFD Down");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let sa = wait_for(&mut arx, "down", |s| s.bfd_downs == 1).await;
    let Some(DownReason::NotificationSent(n)) = &sa.last_down_reason else {
        panic!("{sa:#?}")
    };
    assert_eq!((n.code, n.subcode), (6, 10));

    // Reconnects, after the connect-retry delay (400 ms ± 25 %), not at once.
    let sa = wait_for(&mut arx, "re-established", |s| {
        s.state == State::Established && s.established_generation == 2
    })
    .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "reconnected after {:?}: no backoff",
        t0.elapsed()
    );
    assert_eq!(sa.bfd_downs, 1);
    a.shutdown(None).await;
    p.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bfd_failure_without_established_session_changes_nothing() {
    // Nobody listens on this port: the session stays Connect/Active.
    let port = {
        let l = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let (bfd_tx, bfd_rx) = broadcast::channel(16);
    let a = spawn_with_bfd_events(active_cfg(port), bfd_rx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    bfd_tx
        .send(event(
            BfdState::Up,
            BfdState::Down,
            Diag::ControlDetectionTimeExpired,
            false,
        ))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = a.status().borrow().clone();
    assert_eq!(s.bfd_downs, 0, "{s:#?}");
    assert!(s.last_down_reason.is_none(), "{s:#?}");
    // The event source going away leaves the BGP session running.
    drop(bfd_tx);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        a.status().borrow().state,
        State::Connect | State::Active
    ));
    a.shutdown(None).await;
}
