//! The speaker's shutdown against raw BGP peers on 127.0.0.1 that stop
//! reading: all sessions close in parallel, within about one grace period.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferrolb_bgp::adj_out::{RouteAttrs, Routes};
use ferrolb_bgp::driver::PeerConfig;
use ferrolb_bgp::fsm::State;
use ferrolb_bgp::wire::{Capability, Family, Message, Negotiated, Open, frame_len};
use ferrolb_speaker::announce::PeerKey;
use ferrolb_speaker::peers::PeerSessions;
use ipnet::{IpNet, Ipv4Net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const LOCAL_AS: u32 = 64522;
const PEER_AS: u32 = 64512;

/// Host routes each with its own 300 communities: about 1.3 KB of UPDATE per
/// route, so 5000 of them are more than the kernel buffers of a connection.
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

fn small_window_listener() -> TcpListener {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0))
        .unwrap();
    sock.listen(8).unwrap()
}

async fn read_msg(s: &mut TcpStream, buf: &mut BytesMut) -> Message {
    loop {
        if let Ok(Some(n)) = frame_len(buf, 4096)
            && buf.len() >= n
        {
            let frame = buf.split_to(n);
            return Message::decode(&frame, &Negotiated::default()).unwrap();
        }
        assert!(s.read_buf(buf).await.unwrap() > 0, "closed");
    }
}

async fn write_msg(s: &mut TcpStream, m: Message) {
    let mut out = BytesMut::new();
    m.encode(&Negotiated::default(), &mut out).unwrap();
    s.write_all(&out).await.unwrap();
}

/// Accept our session, exchange OPEN (hold 90 s: no KEEPALIVE needed during
/// the test) and KEEPALIVE, then never read again.
async fn silent_peer(listener: TcpListener) -> TcpStream {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = BytesMut::new();
    let Message::Open(_) = read_msg(&mut s, &mut buf).await else {
        panic!("expected OPEN")
    };
    let caps = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::FourOctetAs(PEER_AS),
    ];
    let open = Open::new(PEER_AS, 90, Ipv4Addr::new(198, 18, 0, 1), caps);
    write_msg(&mut s, Message::Open(open)).await;
    write_msg(&mut s, Message::Keepalive).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stuck_peers_shut_down_in_one_grace_period() {
    let mut sessions = PeerSessions::default();
    let mut desired = BTreeMap::new();
    let mut routes = BTreeMap::new();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let l = small_window_listener();
        let port = l.local_addr().unwrap().port();
        let key = PeerKey::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let mut cfg = PeerConfig::new(
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            LOCAL_AS,
            PEER_AS,
            Ipv4Addr::new(198, 18, 0, 2),
        );
        cfg.local_addr = Some(Ipv4Addr::LOCALHOST.into());
        cfg.connect_retry = Duration::from_millis(100);
        desired.insert(key, cfg);
        routes.insert(key, fat_routes(5000));
        peers.push(tokio::spawn(silent_peer(l)));
    }
    sessions.sync(desired, routes).await;
    let mut streams = Vec::new();
    for p in peers {
        streams.push(
            tokio::time::timeout(Duration::from_secs(30), p)
                .await
                .expect("no connection")
                .unwrap(),
        );
    }
    // Every session is up with its writer stuck behind the peer's closed window.
    for v in sessions.views(&BTreeMap::new()) {
        let mut rx = v.status;
        tokio::time::timeout(Duration::from_secs(30), async {
            rx.wait_for(|s| s.state == State::Established && s.send_queue_bytes > 0)
                .await
                .unwrap();
        })
        .await
        .unwrap_or_else(|_| panic!("{}: not stuck: {:#?}", v.peer, *rx.borrow()));
    }

    let grace = Duration::from_secs(3);
    let t0 = Instant::now();
    sessions.shutdown(grace).await;
    let took = t0.elapsed();
    // In parallel: about one grace period (plus the Cease's 1 s), not three.
    assert!(took < 2 * grace, "shutdown took {took:?}");
    assert!(
        took >= grace,
        "shutdown took {took:?}: the grace period was not given"
    );

    // Every connection was dropped: reading what the kernel still holds ends.
    for mut s in streams {
        let mut sink = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match s.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "a connection was left open");
    }
}
