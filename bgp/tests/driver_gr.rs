//! Graceful restart in the tokio driver over real TCP on 127.0.0.1: End-of-RIB
//! waits for the first route set, the two ways to stop (keep the routes /
//! Hard Reset), and a restarting peer's new connection replacing the old one.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferrolb_bgp::adj_out::{RouteAttrs, Routes};
use ferrolb_bgp::driver::{PeerConfig, SessionHandle, SessionStatus, spawn};
use ferrolb_bgp::fsm::{DownReason, GracefulRestartConfig, State};
use ferrolb_bgp::wire::{Notification, subcode};
use ipnet::{IpNet, Ipv4Net};
use tokio::sync::watch;

const PASSIVE_AS: u32 = 64512;
const ACTIVE_AS: u32 = 64522;
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn routes(n: u32) -> Routes {
    let attrs = Arc::new(RouteAttrs::default());
    (0..n)
        .map(|i| {
            let net = Ipv4Net::new(
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i),
                32,
            );
            (IpNet::V4(net.unwrap()), attrs.clone())
        })
        .collect()
}

async fn wait_for(
    rx: &mut watch::Receiver<SessionStatus>,
    what: &str,
    f: impl FnMut(&SessionStatus) -> bool,
) -> SessionStatus {
    let res = tokio::time::timeout(Duration::from_secs(20), async {
        rx.wait_for(f).await.map(|s| s.clone())
    })
    .await;
    match res {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!("{what}: session task ended"),
        Err(_) => panic!("{what}: timed out; last status {:#?}", *rx.borrow()),
    }
}

fn gr() -> Option<GracefulRestartConfig> {
    Some(GracefulRestartConfig::new(120))
}

/// A passive, listening session (graceful restart as given) on a free port.
async fn passive(graceful_restart: Option<GracefulRestartConfig>) -> (SessionHandle, u16) {
    let mut cfg = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), 179),
        PASSIVE_AS,
        ACTIVE_AS,
        Ipv4Addr::new(198, 18, 0, 1),
    );
    cfg.passive = true;
    cfg.listen = true;
    cfg.listen_port = 0;
    cfg.graceful_restart = graceful_restart;
    let h = spawn(cfg);
    let mut rx = h.status();
    let s = wait_for(&mut rx, "listening", |s| s.listen_addr.is_some()).await;
    (h, s.listen_addr.unwrap().port())
}

fn active_cfg(port: u16) -> PeerConfig {
    let mut cfg = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), port),
        ACTIVE_AS,
        PASSIVE_AS,
        Ipv4Addr::new(198, 18, 0, 2),
    );
    cfg.connect_retry = Duration::from_millis(100);
    cfg.graceful_restart = gr();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_rib_waits_for_the_first_route_set() {
    let (p, port) = passive(gr()).await;
    let a = spawn(active_cfg(port));
    let mut arx = a.status();
    wait_for(&mut arx, "established", |s| s.state == State::Established).await;
    // Established, nothing given: no table, no End-of-RIB.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = arx.borrow().clone();
    assert!(!s.initial_table_sent, "{s:#?}");
    assert_eq!(s.updates_sent, 0, "not even End-of-RIB");
    assert_eq!(p.status().borrow().updates_received, 0);
    // The first set: the table, then End-of-RIB.
    a.set(routes(3));
    let s = wait_for(&mut arx, "initial table", |s| s.initial_table_sent).await;
    assert_eq!(s.prefixes_announced, 3);
    assert_eq!(s.updates_sent, 2, "one UPDATE for 3 prefixes + End-of-RIB");
    let mut prx = p.status();
    wait_for(&mut prx, "3 received", |s| s.prefixes_received == 3).await;
    a.shutdown(None).await;
    p.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_routes_stop_sends_a_plain_cease_and_shutdown_a_hard_reset() {
    // close_keep_routes with N negotiated: 6/2, which a helper treats as a restart.
    let (p, port) = passive(gr()).await;
    let a = spawn(active_cfg(port));
    a.set(routes(1));
    let mut prx = p.status();
    wait_for(&mut prx, "1 received", |s| s.prefixes_received == 1).await;
    a.close_keep_routes(Some("upgrade".into())).await;
    let s = wait_for(&mut prx, "down", |s| s.state != State::Established).await;
    assert_eq!(
        s.last_down_reason,
        Some(DownReason::NotificationReceived(Notification::cease(
            subcode::ADMINISTRATIVE_SHUTDOWN,
            Some("upgrade")
        )))
    );
    // shutdown (6/2) with N negotiated: wrapped in a Hard Reset.
    let a = spawn(active_cfg(port));
    a.set(routes(1));
    wait_for(&mut prx, "again", |s| {
        s.established_generation == 2 && s.prefixes_received == 1
    })
    .await;
    a.shutdown(Some("bye".into())).await;
    let s = wait_for(&mut prx, "down", |s| s.state != State::Established).await;
    let Some(DownReason::NotificationReceived(n)) = &s.last_down_reason else {
        panic!("{s:#?}");
    };
    assert_eq!((n.code, n.subcode), (6, 9), "{n}");
    assert_eq!(
        n.hard_reset_inner(),
        Some(Notification::cease(
            subcode::ADMINISTRATIVE_SHUTDOWN,
            Some("bye")
        ))
    );
    // Without graceful restart on the passive side, no N: a plain 6/2.
    p.shutdown(None).await;
    let (p, port) = passive(None).await;
    let a = spawn(active_cfg(port));
    let mut prx = p.status();
    wait_for(&mut prx, "up", |s| s.state == State::Established).await;
    a.shutdown(None).await;
    let s = wait_for(&mut prx, "down", |s| s.state != State::Established).await;
    assert_eq!(
        s.last_down_reason,
        Some(DownReason::NotificationReceived(Notification::cease(
            subcode::ADMINISTRATIVE_SHUTDOWN,
            None
        )))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peers_new_connection_replaces_the_old_one() {
    let (p, port) = passive(gr()).await;
    p.set(routes(5));
    // The first process; it will not try to come back for a long time.
    let mut first = active_cfg(port);
    first.connect_retry = Duration::from_secs(30);
    first.connect_retry_max = Duration::from_secs(30);
    let a1 = spawn(first);
    let mut prx = p.status();
    wait_for(&mut prx, "first", |s| {
        s.state == State::Established && s.initial_table_sent
    })
    .await;
    // The "restarted" process connects while the old connection is still up
    // (as after a crash the passive side has not noticed yet).
    let mut second = active_cfg(port);
    second.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: true,
    });
    let a2 = spawn(second);
    let s = wait_for(&mut prx, "replaced", |s| {
        s.established_generation == 2 && s.state == State::Established && s.initial_table_sent
    })
    .await;
    assert_eq!(s.last_down_reason, Some(DownReason::PeerRestarted));
    // Our full table went to the restarted peer at once.
    let mut a2rx = a2.status();
    wait_for(&mut a2rx, "table at the new one", |s| {
        s.prefixes_received == 5
    })
    .await;
    let s1 = a1.status().borrow().clone();
    assert_ne!(
        s1.state,
        State::Established,
        "the old connection was closed: {s1:#?}"
    );
    drop(a1);
    a2.shutdown(None).await;
    p.shutdown(None).await;
}
