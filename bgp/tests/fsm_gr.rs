//! Graceful restart (RFC 4724) with the Notification extension (RFC 8538) in
//! the sans-IO session: the capability we send, the R bit, Hard Reset
//! wrapping, stopping so the peer keeps our routes, and a restarting peer's
//! new connection replacing the Established one.

use std::net::Ipv4Addr;

use ferrolb_bgp::fsm::{
    ConnId, Direction, DownReason, GracefulRestartConfig, Input, Output, Session, SessionConfig,
    State,
};
use ferrolb_bgp::wire::{
    Capability, Family, GracefulRestart, Message, Negotiated, Notification, Open, code, subcode,
};

const LOCAL_AS: u32 = 64522;
const PEER_AS: u32 = 64512;
const C1: ConnId = ConnId(1);
const C2: ConnId = ConnId(2);

fn local_id() -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, 21)
}

fn gr_cfg(restarting: bool) -> SessionConfig {
    SessionConfig {
        seed: 7,
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        graceful_restart: Some(GracefulRestartConfig {
            restart_time: 90,
            restarting,
        }),
        ..SessionConfig::new(LOCAL_AS, PEER_AS, local_id())
    }
}

/// The peer's OPEN; `gr` = its graceful restart capability (helper: no families).
fn peer_open(gr: Option<GracefulRestart>) -> Message {
    let mut caps = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::RouteRefresh,
        Capability::FourOctetAs(PEER_AS),
    ];
    if let Some(g) = gr {
        caps.push(Capability::GracefulRestart(g));
    }
    Message::Open(Open::new(PEER_AS, 90, Ipv4Addr::new(172, 17, 0, 1), caps))
}

fn helper(notification: bool) -> GracefulRestart {
    GracefulRestart {
        restart_state: false,
        notification,
        restart_time: 120,
        families: vec![],
    }
}

fn our_gr(open: &Open) -> Option<GracefulRestart> {
    open.capabilities.iter().find_map(|c| match c {
        Capability::GracefulRestart(g) => Some(g.clone()),
        _ => None,
    })
}

fn sent_open(out: &[Output]) -> Open {
    out.iter()
        .find_map(|o| match o {
            Output::Send(_, Message::Open(o)) => Some(o.clone()),
            _ => None,
        })
        .expect("an OPEN was sent")
}

fn sent_notifications(out: &[Output], conn: ConnId) -> Vec<Notification> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(c, Message::Notification(n)) if *c == conn => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn inbound(conn: ConnId) -> Input {
    Input::Connected {
        conn,
        direction: Direction::Inbound,
    }
}

/// Start, connect outbound on `conn`, OPEN from the peer, KEEPALIVE: Established.
/// Returns the outputs of the connect step (they hold our OPEN).
fn establish(s: &mut Session, conn: ConnId, peer: Message) -> Vec<Output> {
    s.handle(Input::Start);
    let connect = s.handle(Input::Connected {
        conn,
        direction: Direction::Outbound,
    });
    s.handle(Input::Message {
        conn,
        message: peer,
    });
    let out = s.handle(Input::Message {
        conn,
        message: Message::Keepalive,
    });
    assert!(
        out.iter().any(|o| matches!(o, Output::Established(_))),
        "{out:?}"
    );
    connect
}

#[test]
fn capability_carries_families_with_forwarding_and_the_n_bit() {
    let open = Session::new(gr_cfg(false)).local_open();
    let gr = our_gr(&open).expect("graceful restart capability");
    assert_eq!(
        gr,
        GracefulRestart {
            restart_state: false,
            notification: true,
            restart_time: 90,
            families: vec![(Family::IPV4_UNICAST, true), (Family::IPV6_UNICAST, true)],
        }
    );
    // It encodes as RFC 4724 §3 lays out: flags+time 0x405a (N, 90 s), then
    // AFI 1 SAFI 1 flags 0x80, AFI 2 SAFI 1 flags 0x80.
    let mut buf = bytes::BytesMut::new();
    Message::Open(Open::new(
        LOCAL_AS,
        90,
        local_id(),
        vec![Capability::GracefulRestart(gr)],
    ))
    .encode(&Negotiated::default(), &mut buf)
    .unwrap();
    let cap = [64u8, 10, 0x40, 0x5a, 0, 1, 1, 0x80, 0, 2, 1, 0x80];
    assert!(
        buf.windows(cap.len()).any(|w| w == cap),
        "capability bytes not found in {buf:02x?}"
    );
    // A restart time beyond 12 bits is sent as the largest one.
    let mut c = gr_cfg(false);
    c.graceful_restart = Some(GracefulRestartConfig::new(10_000));
    let gr = our_gr(&Session::new(c).local_open()).unwrap();
    assert_eq!(gr.restart_time, 4095);
}

#[test]
fn no_capability_without_graceful_restart() {
    let c = SessionConfig::new(LOCAL_AS, PEER_AS, local_id());
    assert_eq!(c.graceful_restart, None, "off by default, as MetalLB's");
    assert_eq!(our_gr(&Session::new(c).local_open()), None);
}

#[test]
fn r_bit_only_until_the_first_established() {
    let mut s = Session::new(gr_cfg(true));
    let connect = establish(&mut s, C1, peer_open(Some(helper(true))));
    assert!(our_gr(&sent_open(&connect)).unwrap().restart_state);
    // The session flaps: the next OPEN of this process is no restart.
    let out = s.handle(Input::Closed { conn: C1 });
    assert!(out.contains(&Output::Down(DownReason::ConnectionClosed)));
    let out = s.handle(Input::TimerExpired(
        ferrolb_bgp::fsm::TimerKind::ConnectRetry,
    ));
    assert!(out.contains(&Output::Connect), "{out:?}");
    let open = sent_open(&s.handle(Input::Connected {
        conn: C2,
        direction: Direction::Outbound,
    }));
    assert!(!our_gr(&open).unwrap().restart_state);
    // A fresh (not restarting) process never sets it.
    let mut s = Session::new(gr_cfg(false));
    let connect = establish(&mut s, C1, peer_open(Some(helper(true))));
    assert!(!our_gr(&sent_open(&connect)).unwrap().restart_state);
}

#[test]
fn hard_reset_encoding() {
    let inner = Notification::cease(subcode::PEER_DECONFIGURED, None);
    let hr = Notification::hard_reset(&inner);
    assert_eq!((hr.code, hr.subcode, hr.data.clone()), (6, 9, vec![6, 3]));
    assert_eq!(hr.hard_reset_inner(), Some(inner));
    assert_eq!(
        hr.to_string(),
        "Cease / Hard Reset (Cease / Peer De-configured)"
    );
    // On the wire: marker, length 23, type 3, code 6, subcode 9, data 06 03.
    let mut buf = bytes::BytesMut::new();
    Message::Notification(hr)
        .encode(&Negotiated::default(), &mut buf)
        .unwrap();
    assert_eq!(&buf[16..], &[0, 23, 3, 6, 9, 6, 3]);
    // The inner data follows its code and subcode (6/2 with a message).
    let inner = Notification::cease(subcode::ADMINISTRATIVE_SHUTDOWN, Some("bye"));
    let hr = Notification::hard_reset(&inner);
    assert_eq!(hr.data, vec![6, 2, 3, b'b', b'y', b'e']);
    assert_eq!(
        hr.hard_reset_inner().unwrap().shutdown_message().as_deref(),
        Some("bye")
    );
    // RFC 8538 §5: which Ceases flush the routes.
    let wants: Vec<u8> = (0..=10)
        .filter(|s| Notification::cease(*s, None).wants_hard_reset())
        .collect();
    assert_eq!(wants, vec![1, 2, 3, 4]);
    assert!(!Notification::new(code::HOLD_TIMER_EXPIRED, 0).wants_hard_reset());
    assert_eq!(
        Notification::new(6, 9).hard_reset_inner(),
        None,
        "no inner code"
    );
}

#[test]
fn peer_deconfigured_is_a_hard_reset_when_n_was_negotiated() {
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(Some(helper(true))));
    assert!(s.notification_negotiated(C1));
    let out = s.handle(Input::Stop {
        subcode: subcode::PEER_DECONFIGURED,
        communication: None,
    });
    assert_eq!(
        sent_notifications(&out, C1),
        vec![Notification::hard_reset(&Notification::cease(3, None))]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn no_hard_reset_without_the_peers_n_bit_or_without_ours() {
    // The peer helps but has no N bit (BIRD 2.0): plain 6/3.
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(Some(helper(false))));
    assert!(!s.notification_negotiated(C1));
    let out = s.handle(Input::Stop {
        subcode: subcode::PEER_DECONFIGURED,
        communication: None,
    });
    assert_eq!(
        sent_notifications(&out, C1),
        vec![Notification::cease(3, None)]
    );
    // We have graceful restart off: the peer's N bit alone changes nothing.
    let mut c = gr_cfg(false);
    c.graceful_restart = None;
    let mut s = Session::new(c);
    establish(&mut s, C1, peer_open(Some(helper(true))));
    assert!(!s.notification_negotiated(C1));
    let out = s.handle(Input::Stop {
        subcode: subcode::PEER_DECONFIGURED,
        communication: None,
    });
    assert_eq!(
        sent_notifications(&out, C1),
        vec![Notification::cease(3, None)]
    );
}

#[test]
fn graceful_ceases_stay_as_they_are() {
    // 6/6 (the session is replaced with new parameters): the peer keeps the
    // routes as stale until the new session's End-of-RIB.
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(Some(helper(true))));
    let out = s.handle(Input::Stop {
        subcode: subcode::OTHER_CONFIGURATION_CHANGE,
        communication: None,
    });
    assert_eq!(
        sent_notifications(&out, C1),
        vec![Notification::cease(6, None)]
    );
    // 6/1 max-prefix through Reset is wrapped.
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(Some(helper(true))));
    let n = Notification::cease(subcode::MAXIMUM_PREFIXES_REACHED, None);
    let out = s.handle(Input::Reset(n.clone()));
    assert_eq!(
        sent_notifications(&out, C1),
        vec![Notification::hard_reset(&n)]
    );
}

#[test]
fn stop_keep_routes_by_what_the_peer_supports() {
    let stop = || Input::StopKeepRoutes {
        communication: Some("upgrade".into()),
    };
    // N negotiated: Cease 6/2 with the message, not a Hard Reset.
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(Some(helper(true))));
    let out = s.handle(stop());
    assert_eq!(
        sent_notifications(&out, C1),
        vec![Notification::cease(2, Some("upgrade"))]
    );
    assert!(out.contains(&Output::Close(C1)));
    assert!(out.contains(&Output::Down(DownReason::AdminStop)));
    assert_eq!(s.state(), State::Idle);
    // RFC 4724 alone: a TCP close without NOTIFICATION.
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(Some(helper(false))));
    let out = s.handle(stop());
    assert!(sent_notifications(&out, C1).is_empty(), "{out:?}");
    assert!(out.contains(&Output::Close(C1)));
    // A peer without graceful restart: it drops the routes anyway; say why.
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(None));
    let out = s.handle(stop());
    assert_eq!(
        sent_notifications(&out, C1),
        vec![Notification::cease(2, Some("upgrade"))]
    );
    // Stopped already: nothing.
    assert!(s.handle(stop()).is_empty());
}

#[test]
fn a_restarting_peers_new_connection_replaces_the_established_one() {
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(Some(helper(true))));
    // The peer restarted; we have not noticed the old connection die yet.
    let out = s.handle(inbound(C2));
    assert!(matches!(out.as_slice(), [Output::Send(c, Message::Open(_)), ..] if *c == C2));
    let mut restarted = helper(true);
    restarted.restart_state = true;
    let out = s.handle(Input::Message {
        conn: C2,
        message: peer_open(Some(restarted)),
    });
    assert!(out.contains(&Output::Close(C1)), "{out:?}");
    assert!(out.contains(&Output::Down(DownReason::PeerRestarted)));
    assert!(
        sent_notifications(&out, C1).is_empty(),
        "the old one gets no NOTIFICATION"
    );
    assert!(
        sent_notifications(&out, C2).is_empty(),
        "the new one is not refused"
    );
    assert!(out.contains(&Output::Send(C2, Message::Keepalive)));
    let out = s.handle(Input::Message {
        conn: C2,
        message: Message::Keepalive,
    });
    assert!(out.iter().any(|o| matches!(o, Output::Established(_))));
    assert_eq!(s.established_conn(), Some(C2));
    assert_eq!(s.conns(), vec![C2]);
}

#[test]
fn without_graceful_restart_the_new_connection_still_loses() {
    // The peer advertised no graceful restart in the Established session.
    let mut s = Session::new(gr_cfg(false));
    establish(&mut s, C1, peer_open(None));
    s.handle(inbound(C2));
    let out = s.handle(Input::Message {
        conn: C2,
        message: peer_open(Some(helper(true))),
    });
    assert_eq!(
        sent_notifications(&out, C2),
        vec![Notification::cease(
            subcode::CONNECTION_COLLISION_RESOLUTION,
            None
        )]
    );
    assert_eq!(s.established_conn(), Some(C1));
}
