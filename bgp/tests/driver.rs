//! The tokio driver over real TCP on 127.0.0.1: two ferrolb sessions talk to each other.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferrolb_bgp::adj_out::{RouteAttrs, Routes};
use ferrolb_bgp::driver::{PeerConfig, SessionHandle, SessionStatus, spawn};
use ferrolb_bgp::fsm::{DownReason, State};
use ipnet::{IpNet, Ipv4Net};
use tokio::sync::watch;

const PASSIVE_AS: u32 = 64512;
const ACTIVE_AS: u32 = 64522;
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn routes(n: u32) -> Routes {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let attrs = Arc::new(RouteAttrs::default());
    (0..n)
        .map(|i| {
            let net = Ipv4Net::new(Ipv4Addr::from(base + i), 32).unwrap();
            (IpNet::V4(net), attrs.clone())
        })
        .collect()
}

/// `n` host routes, each with its own attribute set of 300 communities: one
/// UPDATE of about 1.3 KB per route, more than the kernel buffers of a
/// connection hold (tcp_wmem allows 4 MB) when `n` is 8000.
fn fat_routes(n: u32) -> Routes {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    (0..n)
        .map(|i| {
            let net = Ipv4Net::new(Ipv4Addr::from(base + i), 32).unwrap();
            let attrs = RouteAttrs {
                med: Some(i),
                communities: (0..300).map(|c| (64512 << 16) | c).collect(),
                ..RouteAttrs::default()
            };
            (IpNet::V4(net), Arc::new(attrs))
        })
        .collect()
}

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

/// A passive, listening session on a free port; returns it with its port.
async fn passive(port: u16, password: Option<&str>) -> (SessionHandle, u16) {
    let mut cfg = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), 179),
        PASSIVE_AS,
        ACTIVE_AS,
        Ipv4Addr::new(198, 18, 0, 1),
    );
    cfg.passive = true;
    cfg.listen = true;
    cfg.listen_port = port;
    cfg.hold_time = 3;
    cfg.password = password.map(str::to_string);
    let h = spawn(cfg);
    let mut rx = h.status();
    let s = wait_for(&mut rx, "listening", |s| s.listen_addr.is_some()).await;
    (h, s.listen_addr.unwrap().port())
}

fn active(port: u16, password: Option<&str>) -> SessionHandle {
    let mut cfg = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), port),
        ACTIVE_AS,
        PASSIVE_AS,
        Ipv4Addr::new(198, 18, 0, 2),
    );
    cfg.hold_time = 3;
    cfg.connect_retry = Duration::from_millis(100);
    cfg.password = password.map(str::to_string);
    spawn(cfg)
}

async fn established(h: &SessionHandle, what: &str) -> SessionStatus {
    let mut rx = h.status();
    wait_for(&mut rx, what, |s| s.state == State::Established).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_withdraw_and_shutdown() {
    let (p, port) = passive(0, None).await;
    let a = active(port, None);
    let sa = established(&a, "active established").await;
    let sp = established(&p, "passive established").await;
    assert_eq!(sa.established_generation, 1);
    assert_eq!(sp.established_generation, 1);
    let neg = sa.negotiated.clone().expect("negotiated");
    assert!(neg.four_octet_as && neg.route_refresh);

    // Nothing announced yet: the passive side saw only End-of-RIB.
    let mut prx = p.status();
    let mut arx = a.status();
    wait_for(&mut arx, "empty initial table", |s| s.initial_table_sent).await;

    a.set(routes(2000));
    let sp = wait_for(&mut prx, "2000 received", |s| s.prefixes_received == 2000).await;
    assert!(sp.updates_received >= 3, "2000 /32 need several UPDATEs");
    let sa = wait_for(&mut arx, "2000 announced", |s| s.prefixes_announced == 2000).await;
    assert!(sa.updates_sent >= 3);

    // Withdraw 500.
    a.set(routes(1500));
    wait_for(&mut prx, "1500 left", |s| s.prefixes_received == 1500).await;
    wait_for(&mut arx, "1500 announced", |s| s.prefixes_announced == 1500).await;

    // Keepalives keep a 3 s hold time alive.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(p.status().borrow().state, State::Established);
    assert_eq!(p.status().borrow().established_generation, 1);
    assert_eq!(a.status().borrow().established_generation, 1);

    // Shutdown: Cease 6/2 with the message reaches the other side.
    a.shutdown(Some("maintenance window".into())).await;
    let sp = wait_for(&mut prx, "passive down", |s| s.state != State::Established).await;
    let Some(DownReason::NotificationReceived(n)) = &sp.last_down_reason else {
        panic!("{sp:#?}")
    };
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.shutdown_message().as_deref(), Some("maintenance window"));
    assert!(
        sp.last_down
            .as_deref()
            .unwrap()
            .contains("maintenance window"),
        "{sp:?}"
    );
    assert_eq!(sp.prefixes_received, 0);
    p.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_resends_the_full_table() {
    let (p, port) = passive(0, None).await;
    let a = active(port, None);
    a.set(routes(2000));
    let mut arx = a.status();
    wait_for(&mut arx, "initial table", |s| {
        s.initial_table_sent && s.prefixes_announced == 2000
    })
    .await;
    let mut prx = p.status();
    wait_for(&mut prx, "2000 received", |s| s.prefixes_received == 2000).await;
    let sent_before = arx.borrow().updates_sent;

    // Kill the passive side and bring up a fresh one on the same port.
    p.shutdown(None).await;
    let s = wait_for(&mut arx, "active down", |s| s.state != State::Established).await;
    assert!(matches!(
        s.last_down_reason,
        Some(DownReason::NotificationReceived(_))
    ));
    let (p2, port2) = passive(port, None).await;
    assert_eq!(port2, port);
    let mut p2rx = p2.status();
    wait_for(&mut p2rx, "2000 received again", |s| {
        s.prefixes_received == 2000
    })
    .await;
    let s = wait_for(&mut arx, "initial table again", |s| {
        s.established_generation == 2 && s.initial_table_sent
    })
    .await;
    assert_eq!(s.prefixes_announced, 2000);
    assert!(s.updates_sent >= 2 * sent_before - 1, "{s:?}");
    a.shutdown(None).await;
    p2.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_md5_same_password_establishes() {
    let (p, port) = passive(0, Some("s3cret")).await;
    let a = active(port, Some("s3cret"));
    established(&a, "active established").await;
    established(&p, "passive established").await;
    a.set(routes(100));
    let mut prx = p.status();
    wait_for(&mut prx, "100 received", |s| s.prefixes_received == 100).await;
    a.shutdown(None).await;
    p.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_md5_mismatch_does_not_establish() {
    for (pw_passive, pw_active) in [(Some("s3cret"), Some("other")), (Some("s3cret"), None)] {
        let (p, port) = passive(0, pw_passive).await;
        let a = active(port, pw_active);
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (h, who) in [(&a, "active"), (&p, "passive")] {
            let s = h.status().borrow().clone();
            assert!(
                s.state < State::OpenSent && s.established_generation == 0,
                "{who} with {pw_passive:?}/{pw_active:?}: {s:#?}"
            );
        }
        a.shutdown(None).await;
        p.shutdown(None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_sends_cease() {
    let (p, port) = passive(0, None).await;
    let a = active(port, None);
    established(&p, "passive established").await;
    established(&a, "active established").await;
    drop(a);
    let mut prx = p.status();
    let s = wait_for(&mut prx, "passive down", |s| s.state != State::Established).await;
    let Some(DownReason::NotificationReceived(n)) = &s.last_down_reason else {
        panic!("{s:#?}")
    };
    assert_eq!((n.code, n.subcode), (6, 2));
    p.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_table_goes_out_whole() {
    // 100k /32 (about 124 full UPDATEs). No timing assertion; the elapsed time is printed.
    let (p, port) = passive(0, None).await;
    let a = active(port, None);
    established(&a, "active established").await;
    let table = routes(100_000);
    let start = std::time::Instant::now();
    a.set(table);
    let mut arx = a.status();
    let s = wait_for(&mut arx, "100k announced", |s| {
        s.prefixes_announced == 100_000
    })
    .await;
    let mut prx = p.status();
    let sp = wait_for(&mut prx, "100k received", |s| {
        s.prefixes_received == 100_000
    })
    .await;
    println!(
        "100k /32: {} UPDATEs sent, {} received, {:?} from set() to fully received",
        s.updates_sent,
        sp.updates_received,
        start.elapsed()
    );
    assert!(s.updates_sent >= 124, "{s:?}");
    // The session survived the burst.
    assert_eq!(p.status().borrow().established_generation, 1);
    a.shutdown(None).await;
    p.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_messages_carry_a_table_in_few_large_updates() {
    // Both sides offer RFC 8654: 100k /32 go out in 65535-byte UPDATEs
    // (13098 prefixes each, 8 of them) instead of 124 of 4096 bytes.
    let mut pc = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), 179),
        PASSIVE_AS,
        ACTIVE_AS,
        Ipv4Addr::new(198, 18, 0, 1),
    );
    pc.passive = true;
    pc.listen = true;
    pc.listen_port = 0;
    pc.extended_message = true;
    let p = spawn(pc);
    let mut prx = p.status();
    let port = wait_for(&mut prx, "listening", |s| s.listen_addr.is_some())
        .await
        .listen_addr
        .unwrap()
        .port();
    let mut ac = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), port),
        ACTIVE_AS,
        PASSIVE_AS,
        Ipv4Addr::new(198, 18, 0, 2),
    );
    ac.connect_retry = Duration::from_millis(100);
    ac.extended_message = true;
    let a = spawn(ac);
    a.set(routes(100_000));
    let sp = wait_for(&mut prx, "100k received", |s| {
        s.prefixes_received == 100_000
    })
    .await;
    assert!(sp.negotiated.as_ref().unwrap().extended_message, "{sp:?}");
    // 8 UPDATEs with NLRI and End-of-RIB.
    assert!(sp.updates_received <= 9, "{sp:?}");
    a.shutdown(None).await;

    // Offered by one side only: not negotiated, 4096-byte UPDATEs.
    let b = active(port, None);
    b.set(routes(10_000));
    let sp = wait_for(&mut prx, "10k received", |s| {
        s.established_generation == 2 && s.prefixes_received == 10_000
    })
    .await;
    assert!(!sp.negotiated.as_ref().unwrap().extended_message, "{sp:?}");
    b.shutdown(None).await;
    p.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_peers_with_md5_and_both_families() {
    let v6 = std::net::Ipv6Addr::LOCALHOST;
    let families = vec![
        ferrolb_bgp::wire::Family::IPV4_UNICAST,
        ferrolb_bgp::wire::Family::IPV6_UNICAST,
    ];
    let mut pc = PeerConfig::new(
        SocketAddr::new(v6.into(), 179),
        PASSIVE_AS,
        ACTIVE_AS,
        Ipv4Addr::new(198, 18, 0, 1),
    );
    pc.passive = true;
    pc.listen = true;
    pc.listen_port = 0;
    pc.password = Some("v6-secret".into());
    pc.families = families.clone();
    let p = spawn(pc);
    let mut prx = p.status();
    let port = wait_for(&mut prx, "listening", |s| s.listen_addr.is_some())
        .await
        .listen_addr
        .unwrap()
        .port();
    let mut ac = PeerConfig::new(
        SocketAddr::new(v6.into(), port),
        ACTIVE_AS,
        PASSIVE_AS,
        Ipv4Addr::new(198, 18, 0, 2),
    );
    ac.password = Some("v6-secret".into());
    ac.families = families.clone();
    ac.connect_retry = Duration::from_millis(100);
    ac.local_addr = Some(v6.into());
    let a = spawn(ac);
    let s = established(&a, "active established").await;
    assert_eq!(s.negotiated.unwrap().families, families);
    // IPv6 routes take the session's local IPv6 address as next hop; IPv4
    // routes need an explicit IPv4 next hop on an IPv6-only session.
    let mut table: Routes = (0..50u16)
        .map(|i| {
            let net: IpNet = format!("2001:db8:{i:x}::/48").parse().unwrap();
            (net, Arc::new(RouteAttrs::default()))
        })
        .collect();
    for (net, mut attrs) in routes(10) {
        Arc::make_mut(&mut attrs).next_hop = Some(Ipv4Addr::new(198, 18, 0, 2).into());
        table.insert(net, attrs);
    }
    a.set(table);
    wait_for(&mut prx, "60 received", |s| s.prefixes_received == 60).await;
    a.shutdown(None).await;
    p.shutdown(None).await;
}

/// A free TCP port on 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind((LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_active_and_listening_settle_on_one_connection() {
    // Each side connects to the other's port and accepts: collisions happen
    // (RFC 4271 §6.8) and both must end up Established on the same connection.
    for _ in 0..3 {
        let (port_a, port_b) = (free_port(), free_port());
        let cfg = |listen: u16, connect: u16, local_as, peer_as, id| {
            let mut c = PeerConfig::new(
                SocketAddr::new(LOCALHOST.into(), connect),
                local_as,
                peer_as,
                id,
            );
            c.listen = true;
            c.listen_port = listen;
            c.hold_time = 3;
            c.connect_retry = Duration::from_millis(50);
            c
        };
        let a = spawn(cfg(
            port_a,
            port_b,
            ACTIVE_AS,
            PASSIVE_AS,
            Ipv4Addr::new(198, 18, 0, 2),
        ));
        let b = spawn(cfg(
            port_b,
            port_a,
            PASSIVE_AS,
            ACTIVE_AS,
            Ipv4Addr::new(198, 18, 0, 1),
        ));
        established(&a, "a established").await;
        established(&b, "b established").await;
        a.set(routes(10));
        let mut brx = b.status();
        wait_for(&mut brx, "10 received", |s| s.prefixes_received == 10).await;
        // Stable: no flapping after the collision settled.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.status().borrow().state, State::Established);
        assert_eq!(b.status().borrow().state, State::Established);
        a.shutdown(None).await;
        b.shutdown(None).await;
    }
}

/// A scripted raw peer: accepts our connection, speaks through the codec.
mod raw {
    use bytes::BytesMut;
    use ferrolb_bgp::wire::{Capability, Family, Message, Negotiated, Open, frame_len};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub async fn read_msg(s: &mut TcpStream, buf: &mut BytesMut) -> Option<Message> {
        loop {
            if let Ok(Some(n)) = frame_len(buf, 4096)
                && buf.len() >= n
            {
                let frame = buf.split_to(n);
                return Some(Message::decode(&frame, &Negotiated::default()).unwrap());
            }
            if s.read_buf(buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    pub async fn write_msg(s: &mut TcpStream, m: Message) {
        let mut out = BytesMut::new();
        m.encode(&Negotiated::default(), &mut out).unwrap();
        s.write_all(&out).await.unwrap();
    }

    /// OPEN exchange up to the point where both sides sent KEEPALIVE.
    pub async fn handshake(s: &mut TcpStream, buf: &mut BytesMut, asn: u32, hold: u16) -> Open {
        handshake_with(s, buf, asn, hold, vec![]).await
    }

    pub async fn handshake_with(
        s: &mut TcpStream,
        buf: &mut BytesMut,
        asn: u32,
        hold: u16,
        extra: Vec<Capability>,
    ) -> Open {
        let Some(Message::Open(ours)) = read_msg(s, buf).await else {
            panic!("expected OPEN")
        };
        let mut caps = vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(asn),
        ];
        caps.extend(extra);
        let open = Open::new(asn, hold, "198.18.0.1".parse().unwrap(), caps);
        write_msg(s, Message::Open(open)).await;
        write_msg(s, Message::Keepalive).await;
        assert_eq!(read_msg(s, buf).await, Some(Message::Keepalive));
        ours
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_timer_expiry_and_malformed_message_over_tcp() {
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let a = active(port, None);
    let mut arx = a.status();

    // 1. The peer goes silent: after the 3 s hold time we send 4/0 and go down.
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let ours = raw::handshake(&mut s, &mut buf, PASSIVE_AS, 3).await;
    assert_eq!(ours.asn(), ACTIVE_AS);
    assert!(
        ours.capabilities
            .contains(&ferrolb_bgp::wire::Capability::RouteRefresh)
    );
    wait_for(&mut arx, "established", |s| s.state == State::Established).await;
    // Our keepalives arrive (hold 3 -> keepalive 1 s), then the NOTIFICATION.
    let mut keepalives = 0;
    let n = loop {
        match raw::read_msg(&mut s, &mut buf).await {
            Some(ferrolb_bgp::wire::Message::Keepalive) => keepalives += 1,
            Some(ferrolb_bgp::wire::Message::Update(_)) => {} // End-of-RIB
            Some(ferrolb_bgp::wire::Message::Notification(n)) => break n,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(keepalives >= 1);
    assert_eq!((n.code, n.subcode), (4, 0));
    let st = wait_for(&mut arx, "down", |s| s.state != State::Established).await;
    assert_eq!(st.last_down_reason, Some(DownReason::HoldTimerExpired));

    // 2. The session reconnects by itself; this time the peer sends garbage.
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    raw::handshake(&mut s, &mut buf, PASSIVE_AS, 90).await;
    wait_for(&mut arx, "established again", |s| {
        s.established_generation == 2
    })
    .await;
    tokio::io::AsyncWriteExt::write_all(&mut s, &[0u8; 19])
        .await
        .unwrap();
    let n = loop {
        match raw::read_msg(&mut s, &mut buf).await {
            Some(ferrolb_bgp::wire::Message::Notification(n)) => break n,
            Some(_) => {}
            None => panic!("closed without NOTIFICATION"),
        }
    };
    assert_eq!((n.code, n.subcode), (1, 1));
    let st = wait_for(&mut arx, "down again", |s| s.state != State::Established).await;
    assert!(
        matches!(&st.last_down_reason, Some(DownReason::NotificationSent(n)) if n.code == 1),
        "{st:?}"
    );
    a.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_route_refresh_resends_between_borr_and_eorr() {
    use ferrolb_bgp::wire::{Capability, Family, Message, RouteRefresh};
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let a = active(port, None);
    a.set(routes(10));
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let caps = vec![Capability::RouteRefresh, Capability::EnhancedRouteRefresh];
    raw::handshake_with(&mut s, &mut buf, PASSIVE_AS, 90, caps).await;
    // Initial table: 10 prefixes, then End-of-RIB (an empty UPDATE).
    let mut nlri = 0;
    loop {
        match raw::read_msg(&mut s, &mut buf).await {
            Some(Message::Update(u)) if u.nlri.is_empty() && u.withdrawn.is_empty() => break,
            Some(Message::Update(u)) => nlri += u.nlri.len(),
            Some(Message::Keepalive) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(nlri, 10);
    let rr = |subtype| {
        Message::RouteRefresh(RouteRefresh {
            family: Family::IPV4_UNICAST,
            subtype,
        })
    };
    raw::write_msg(&mut s, rr(0)).await;
    let mut seen = Vec::new();
    loop {
        match raw::read_msg(&mut s, &mut buf).await {
            Some(Message::Keepalive) => {}
            Some(Message::Update(u)) => seen.push(format!("update {}", u.nlri.len())),
            Some(m @ Message::RouteRefresh(_)) => {
                let done = m == rr(2);
                seen.push(format!("{m:?}"));
                if done {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            format!("{:?}", rr(1)),
            "update 10".to_string(),
            format!("{:?}", rr(2))
        ]
    );
    a.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_reported_and_retried() {
    let a = active(free_port(), None);
    let mut arx = a.status();
    let s = wait_for(&mut arx, "connect error", |s| {
        s.last_connect_error.is_some()
    })
    .await;
    assert!(
        s.state == State::Active || s.state == State::Connect,
        "{s:?}"
    );
    assert_eq!(s.established_generation, 0);
    a.shutdown(None).await;
}

/// A dynamic (external) peer AS, one address family only (disableMP), and a
/// close with Cease 6/6 then 6/3, over real TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_as_single_family_and_configuration_change_cease() {
    use ferrolb_bgp::fsm::DynamicAs;
    use ferrolb_bgp::wire::Family;
    let mut cfg = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), 179),
        PASSIVE_AS,
        0,
        Ipv4Addr::new(198, 18, 0, 1),
    );
    cfg.dynamic_peer_as = Some(DynamicAs::External);
    cfg.passive = true;
    cfg.listen = true;
    cfg.listen_port = 0;
    cfg.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    let p = spawn(cfg);
    let mut prx = p.status();
    let port = wait_for(&mut prx, "listening", |s| s.listen_addr.is_some())
        .await
        .listen_addr
        .unwrap()
        .port();

    for (round, cease) in [(1u64, 6u8), (2, 3)] {
        // The active side offers IPv4 only and is handed an IPv6 route too.
        let a = active(port, None);
        let mut r = routes(3);
        r.insert(
            "2001:db8::1/128".parse().unwrap(),
            Arc::new(RouteAttrs::default()),
        );
        a.set(r);
        let sp = wait_for(&mut prx, "passive established", |s| {
            s.state == State::Established && s.established_generation == round
        })
        .await;
        assert_eq!(sp.peer_as, Some(ACTIVE_AS), "the AS the OPEN carried");
        assert_eq!(
            sp.negotiated.as_ref().unwrap().families,
            vec![Family::IPV4_UNICAST],
            "only the family both offer"
        );
        wait_for(&mut prx, "3 IPv4 routes", |s| s.prefixes_received == 3).await;
        let mut arx = a.status();
        let sa = wait_for(&mut arx, "initial table", |s| s.initial_table_sent).await;
        assert_eq!(sa.prefixes_announced, 3, "the IPv6 route is not sent");

        a.close(cease, None).await;
        let sp = wait_for(&mut prx, "passive down", |s| s.state != State::Established).await;
        let Some(DownReason::NotificationReceived(n)) = &sp.last_down_reason else {
            panic!("{sp:#?}")
        };
        assert_eq!((n.code, n.subcode), (6, cease));
    }
    p.shutdown(None).await;
}

/// A listener whose accepted sockets have a small receive buffer, so a peer
/// that does not read stops our writes after a few KB.
fn small_window_listener() -> tokio::net::TcpListener {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind(SocketAddr::new(LOCALHOST.into(), 0)).unwrap();
    sock.listen(8).unwrap()
}

/// Keep a silent session alive: KEEPALIVE every 500 ms on the write half,
/// while the read half is never read.
fn keepalives(mut w: tokio::net::tcp::OwnedWriteHalf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut out = bytes::BytesMut::new();
        ferrolb_bgp::wire::Message::Keepalive
            .encode(&Default::default(), &mut out)
            .unwrap();
        loop {
            if tokio::io::AsyncWriteExt::write_all(&mut w, &out)
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_hold_timer_drops_a_peer_that_stops_reading() {
    let listener = small_window_listener();
    let port = listener.local_addr().unwrap().port();
    let mut cfg = PeerConfig::new(
        SocketAddr::new(LOCALHOST.into(), port),
        ACTIVE_AS,
        PASSIVE_AS,
        Ipv4Addr::new(198, 18, 0, 2),
    );
    cfg.hold_time = 3;
    cfg.connect_retry = Duration::from_millis(100);
    cfg.send_hold_time = Some(Duration::from_secs(2));
    let a = spawn(cfg);
    a.set(fat_routes(8000));
    let mut arx = a.status();

    // The peer completes the OPEN exchange, keeps sending KEEPALIVEs (so our
    // hold timer never fires) and never reads again.
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    raw::handshake(&mut s, &mut buf, PASSIVE_AS, 3).await;
    wait_for(&mut arx, "established", |s| s.state == State::Established).await;
    let (mut r, w) = s.into_split();
    let ka = keepalives(w);
    let blocked = wait_for(&mut arx, "writes blocked", |s| s.send_queue_bytes > 0).await;
    assert!(blocked.send_queue_bytes > 0);

    // Dropped with 8/0 after the send hold time, although the hold timer is fed.
    let t0 = std::time::Instant::now();
    let st = wait_for(&mut arx, "send hold timer expired", |s| {
        s.state != State::Established
    })
    .await;
    let Some(DownReason::NotificationSent(n)) = &st.last_down_reason else {
        panic!("{st:#?}")
    };
    assert_eq!((n.code, n.subcode), (8, 0), "{st:#?}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // The connection's queue is freed with it.
    assert_eq!(st.send_queue_bytes, 0, "{st:#?}");

    // The old socket is closed: reading what the kernel still holds ends in EOF or a reset.
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0usize;
        loop {
            match tokio::io::AsyncReadExt::read(&mut r, &mut sink).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the dropped connection was never closed");
    assert!(drained > 0);
    ka.abort();

    // And the session reconnects.
    let (mut s2, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("no reconnect")
        .unwrap();
    let mut buf2 = bytes::BytesMut::new();
    raw::handshake(&mut s2, &mut buf2, PASSIVE_AS, 90).await;
    wait_for(&mut arx, "established again", |s| {
        s.established_generation == 2
    })
    .await;
    a.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_keeps_the_send_queue_bounded() {
    use ferrolb_bgp::driver::{BULK_CHUNK, SEND_QUEUE_BOUND, SEND_WINDOW};
    use ferrolb_bgp::wire::{Message, Negotiated, frame_len};
    let listener = small_window_listener();
    let port = listener.local_addr().unwrap().port();
    let a = active(port, None);
    // 200,000 host routes: about 1 MB of UPDATEs.
    a.set(routes(200_000));
    let mut arx = a.status();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    raw::handshake(&mut s, &mut buf, PASSIVE_AS, 3).await;
    let (mut r, w) = s.into_split();
    let ka = keepalives(w);

    // Read 16 KB every 20 ms (about 800 KB/s) until End-of-RIB.
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut prefixes = 0usize;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            loop {
                match frame_len(&buf, 4096) {
                    Ok(Some(n)) if buf.len() >= n => {
                        let frame = buf.split_to(n);
                        match Message::decode(&frame, &Negotiated::default()).unwrap() {
                            Message::Update(u) if u.nlri.is_empty() && u.withdrawn.is_empty() => {
                                return prefixes;
                            }
                            Message::Update(u) => prefixes += u.nlri.len(),
                            Message::Keepalive => {}
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    _ => break,
                }
            }
            let n = tokio::io::AsyncReadExt::read(&mut r, &mut chunk)
                .await
                .unwrap();
            assert!(n > 0, "closed");
            buf.extend_from_slice(&chunk[..n]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the table did not arrive");
    assert_eq!(read, 200_000);
    let st = wait_for(&mut arx, "table written", |s| s.initial_table_sent).await;
    assert_eq!(st.state, State::Established);
    assert_eq!(st.established_generation, 1);
    assert_eq!(st.prefixes_announced, 200_000);
    // With 4096-byte messages: the window, one batch and two messages, far below the table.
    let bound = SEND_WINDOW + BULK_CHUNK + 2 * 4096;
    assert!(bound <= SEND_QUEUE_BOUND);
    assert!(
        st.send_queue_peak_bytes > 0 && st.send_queue_peak_bytes <= bound,
        "peak {} > {bound}",
        st.send_queue_peak_bytes
    );
    ka.abort();
    a.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_go_out_before_the_cease_whatever_the_queue_holds() {
    use ferrolb_bgp::wire::{Message, Negotiated, frame_len};
    use std::collections::BTreeSet;
    let listener = small_window_listener();
    let port = listener.local_addr().unwrap().port();
    let a = active(port, None);
    // More than the kernel buffers hold: the writer's queue is never empty here.
    a.set(fat_routes(10_000));
    let mut arx = a.status();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    raw::handshake(&mut s, &mut buf, PASSIVE_AS, 3).await;
    let (mut r, w) = s.into_split();
    let ka = keepalives(w);
    wait_for(&mut arx, "writes blocked", |s| s.send_queue_bytes > 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Withdraw everything and shut down while the queue is full.
    a.set(Routes::new());
    let shut = tokio::spawn(a.shutdown_within(Some("bye".into()), Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The peer now reads everything: when the Cease arrives it holds nothing.
    let mut held: BTreeSet<Ipv4Net> = BTreeSet::new();
    let mut most = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    let cease = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            while let Ok(Some(n)) = frame_len(&buf, 4096) {
                if buf.len() < n {
                    break;
                }
                let frame = buf.split_to(n);
                match Message::decode(&frame, &Negotiated::default()).unwrap() {
                    Message::Update(u) => {
                        for p in &u.withdrawn {
                            held.remove(p);
                        }
                        held.extend(u.nlri.iter().copied());
                        most = most.max(held.len());
                    }
                    Message::Keepalive => {}
                    Message::Notification(n) => return n,
                    other => panic!("unexpected {other:?}"),
                }
            }
            let n = tokio::io::AsyncReadExt::read(&mut r, &mut chunk)
                .await
                .expect("read");
            assert!(n > 0, "closed without a Cease; {} routes held", held.len());
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("no Cease");
    assert_eq!((cease.code, cease.subcode), (6, 2));
    assert!(most > 100, "the peer held {most} routes at most");
    assert!(
        held.is_empty(),
        "Cease arrived while the peer held {} of {most} routes",
        held.len()
    );
    tokio::time::timeout(Duration::from_secs(10), shut)
        .await
        .expect("shutdown did not end")
        .unwrap();
    ka.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_time_0_turns_tcp_keepalive_on() {
    use ferrolb_bgp::driver::{
        TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_USER_TIMEOUT, TcpKeepalive,
    };
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let a = active(port, None);
    let mut arx = a.status();

    // The peer offers hold time 0: no hold timer, so TCP keepalive instead.
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    raw::handshake(&mut s, &mut buf, PASSIVE_AS, 0).await;
    let st = wait_for(&mut arx, "established", |s| s.state == State::Established).await;
    assert_eq!(
        st.tcp_keepalive,
        Some(TcpKeepalive {
            idle: TCP_KEEPIDLE,
            interval: TCP_KEEPINTVL,
            count: TCP_KEEPCNT,
            user_timeout: TCP_USER_TIMEOUT,
        }),
        "{st:#?}"
    );

    // The next session negotiates a hold timer: no TCP keepalive.
    drop(s);
    wait_for(&mut arx, "down", |s| s.state != State::Established).await;
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    raw::handshake(&mut s, &mut buf, PASSIVE_AS, 90).await;
    let st = wait_for(&mut arx, "established again", |s| {
        s.established_generation == 2
    })
    .await;
    assert_eq!(st.tcp_keepalive, None);
    a.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_resetting_right_after_established_is_damped() {
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // First retry after 100 ms: undamped, that is ~10 reconnections a second.
    let a = active(port, None);
    let mut arx = a.status();
    let t0 = std::time::Instant::now();
    let mut connects = Vec::new();
    while t0.elapsed() < Duration::from_secs(4) {
        let left = Duration::from_secs(4).saturating_sub(t0.elapsed());
        let Ok(acc) = tokio::time::timeout(left, listener.accept()).await else {
            break;
        };
        let (mut s, _) = acc.unwrap();
        connects.push(t0.elapsed());
        let mut buf = bytes::BytesMut::new();
        raw::handshake(&mut s, &mut buf, PASSIVE_AS, 90).await;
        let n = connects.len() as u64;
        wait_for(&mut arx, "established", |s| s.established_generation == n).await;
        drop(s); // reset right after Established
    }
    // 100, 200, 400, 800, 1600 ms (±25 %) between attempts: 5 or 6 in 4 s.
    assert!(
        (4..=7).contains(&connects.len()),
        "{} connects: {connects:?}",
        connects.len()
    );
    let gaps: Vec<Duration> = connects.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|w| w[1] > w[0]),
        "the delay does not grow: {gaps:?}"
    );
    a.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexpected_inbound_connections_get_cease_connection_rejected() {
    // Listening for 127.0.0.2 only; a connection from 127.0.0.1 is not the peer.
    let mut cfg = PeerConfig::new(
        SocketAddr::new(Ipv4Addr::new(127, 0, 0, 2).into(), 179),
        PASSIVE_AS,
        ACTIVE_AS,
        Ipv4Addr::new(198, 18, 0, 1),
    );
    cfg.passive = true;
    cfg.listen = true;
    cfg.listen_port = 0;
    let p = spawn(cfg);
    let mut prx = p.status();
    let addr = wait_for(&mut prx, "listening", |s| s.listen_addr.is_some())
        .await
        .listen_addr
        .unwrap();
    let mut s = tokio::net::TcpStream::connect((LOCALHOST, addr.port()))
        .await
        .unwrap();
    let mut buf = bytes::BytesMut::new();
    let got = tokio::time::timeout(Duration::from_secs(5), raw::read_msg(&mut s, &mut buf))
        .await
        .expect("nothing sent");
    let Some(ferrolb_bgp::wire::Message::Notification(n)) = got else {
        panic!("{got:?}")
    };
    assert_eq!((n.code, n.subcode), (6, 5));
    // Then closed.
    assert_eq!(raw::read_msg(&mut s, &mut buf).await, None);
    assert_eq!(p.status().borrow().state, State::Active);
    p.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_capability_2_7_is_left_out_of_the_next_open() {
    use ferrolb_bgp::wire::{Message, Notification};
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let a = active(port, None);
    let mut arx = a.status();

    // Our first OPEN offers Enhanced Route Refresh (70); the peer refuses it.
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let Some(Message::Open(first)) = raw::read_msg(&mut s, &mut buf).await else {
        panic!("expected OPEN")
    };
    let codes = |o: &ferrolb_bgp::wire::Open| -> Vec<u8> {
        o.capabilities.iter().map(|c| c.code()).collect()
    };
    assert!(codes(&first).contains(&70), "{:?}", codes(&first));
    let mut n = Notification::new(2, 7);
    n.data = vec![70, 0];
    raw::write_msg(&mut s, Message::Notification(n)).await;
    let st = wait_for(&mut arx, "down", |s| s.last_down_reason.is_some()).await;
    assert!(st.last_down.as_deref().unwrap().contains("2/7"), "{st:?}");
    drop(s);

    // The next OPEN leaves it out, and the session comes up.
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let ours = raw::handshake(&mut s, &mut buf, PASSIVE_AS, 90).await;
    assert!(!codes(&ours).contains(&70), "{:?}", codes(&ours));
    assert!(codes(&ours).contains(&2) && codes(&ours).contains(&65));
    let st = wait_for(&mut arx, "established", |s| s.state == State::Established).await;
    assert!(!st.negotiated.unwrap().enhanced_route_refresh);
    a.shutdown(None).await;
}
