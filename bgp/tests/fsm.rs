//! Scripted input -> expected output tables for the sans-IO session.

use std::net::Ipv4Addr;
use std::time::Duration;

use ferrolb_bgp::fsm::{
    ConnId, Direction, DownReason, DynamicAs, Input, Output, Session, SessionConfig, State,
    TimerKind, describe_notification,
};
use ferrolb_bgp::wire::{
    Capability, Family, Message, Negotiated, Notification, Open, RouteRefresh, Update,
};

const LOCAL_AS: u32 = 64522;
const PEER_AS: u32 = 64512;
const C1: ConnId = ConnId(1);
const C2: ConnId = ConnId(2);
/// Wildcard duration for a connect-retry delay (jittered); checked separately.
const ANY: Duration = Duration::MAX;

fn local_id() -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, 21)
}
fn lower_id() -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, 1)
}
fn higher_id() -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, 200)
}

fn cfg() -> SessionConfig {
    SessionConfig {
        seed: 42,
        ..SessionConfig::new(LOCAL_AS, PEER_AS, local_id())
    }
}
fn passive_cfg() -> SessionConfig {
    SessionConfig {
        passive: true,
        ..cfg()
    }
}

fn caps(asn: u32) -> Vec<Capability> {
    vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::RouteRefresh,
        Capability::FourOctetAs(asn),
        Capability::EnhancedRouteRefresh,
    ]
}
fn open_from(asn: u32, hold: u16, id: Ipv4Addr) -> Open {
    Open::new(asn, hold, id, caps(asn))
}
fn peer_open(hold: u16) -> Message {
    Message::Open(open_from(PEER_AS, hold, lower_id()))
}
fn negotiated() -> Negotiated {
    Negotiated {
        four_octet_as: true,
        extended_message: false,
        families: vec![Family::IPV4_UNICAST],
        route_refresh: true,
        enhanced_route_refresh: true,
    }
}
fn notif(code: u8, subcode: u8) -> Notification {
    Notification {
        code,
        subcode,
        data: Vec::new(),
    }
}
fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
fn msg(conn: ConnId, message: Message) -> Input {
    Input::Message { conn, message }
}
fn inbound(conn: ConnId) -> Input {
    Input::Connected {
        conn,
        direction: Direction::Inbound,
    }
}
fn outbound(conn: ConnId) -> Input {
    Input::Connected {
        conn,
        direction: Direction::Outbound,
    }
}
fn send_open(s: &Session, conn: ConnId) -> Output {
    Output::Send(conn, Message::Open(s.local_open()))
}
/// Close + timer cancels that every connection teardown produces.
fn teardown(conn: ConnId) -> Vec<Output> {
    vec![
        Output::Close(conn),
        Output::CancelTimer(TimerKind::Hold(conn)),
        Output::CancelTimer(TimerKind::Keepalive(conn)),
    ]
}

/// Compare, treating `ArmTimer(ConnectRetry, ANY)` as "any duration".
fn assert_outputs(step: &str, got: &[Output], want: &[Output]) {
    let matches = got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| match (g, w) {
            (
                Output::ArmTimer(TimerKind::ConnectRetry, _),
                Output::ArmTimer(TimerKind::ConnectRetry, d),
            ) if *d == ANY => true,
            _ => g == w,
        });
    assert!(matches, "step {step}:\n got: {got:#?}\nwant: {want:#?}");
}

/// Run a script of (input, expected outputs, expected state after).
fn run(s: &mut Session, script: Vec<(Input, Vec<Output>, State)>) {
    for (i, (input, want, state)) in script.into_iter().enumerate() {
        let label = format!("{i} ({input:?})");
        let got = s.handle(input);
        assert_outputs(&label, &got, &want);
        assert_eq!(s.state(), state, "state after step {label}");
    }
}

/// Drive an active session to Established on C1 (peer hold `hold`).
fn established_active(hold: u16) -> Session {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    s.handle(msg(C1, peer_open(hold)));
    let out = s.handle(msg(C1, Message::Keepalive));
    assert!(out.contains(&Output::Established(negotiated())), "{out:?}");
    assert_eq!(s.state(), State::Established);
    s
}

fn established_passive(hold: u16) -> Session {
    let mut s = Session::new(passive_cfg());
    s.handle(Input::Start);
    s.handle(inbound(C1));
    s.handle(msg(C1, peer_open(hold)));
    s.handle(msg(C1, Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    s
}

#[test]
fn active_open_happy_path() {
    let mut s = Session::new(cfg());
    assert_eq!(s.state(), State::Idle);
    let open = send_open(&s, C1);
    run(
        &mut s,
        vec![
            // Event 1: ManualStart
            (
                Input::Start,
                vec![
                    Output::Connect,
                    Output::ArmTimer(TimerKind::ConnectRetry, secs(10)),
                ],
                State::Connect,
            ),
            // Event 16: Tcp_CR_Acked
            (
                outbound(C1),
                vec![
                    Output::CancelTimer(TimerKind::ConnectRetry),
                    open,
                    Output::ArmTimer(TimerKind::Hold(C1), secs(240)),
                ],
                State::OpenSent,
            ),
            // Event 19: BGPOpen
            (
                msg(C1, peer_open(90)),
                vec![
                    Output::Send(C1, Message::Keepalive),
                    Output::ArmTimer(TimerKind::Hold(C1), secs(90)),
                    Output::ArmTimer(TimerKind::Keepalive(C1), secs(30)),
                ],
                State::OpenConfirm,
            ),
            // Event 26: KeepAliveMsg
            (
                msg(C1, Message::Keepalive),
                vec![
                    Output::ArmTimer(TimerKind::Hold(C1), secs(90)),
                    Output::ArmTimer(TimerKind::Stable, secs(30)),
                    Output::Established(negotiated()),
                ],
                State::Established,
            ),
            // Event 26 in Established: restarts the hold timer
            (
                msg(C1, Message::Keepalive),
                vec![Output::ArmTimer(TimerKind::Hold(C1), secs(90))],
                State::Established,
            ),
            // Event 11: KeepaliveTimer_Expires
            (
                Input::TimerExpired(TimerKind::Keepalive(C1)),
                vec![
                    Output::Send(C1, Message::Keepalive),
                    Output::ArmTimer(TimerKind::Keepalive(C1), secs(30)),
                ],
                State::Established,
            ),
        ],
    );
    assert_eq!(s.established_conn(), Some(C1));
    assert_eq!(s.timers(), Some((90, 30)));
    assert_eq!(s.peer_router_id(), Some(lower_id()));
}

#[test]
fn local_open_carries_capabilities() {
    let mut c = cfg();
    c.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    c.local_as = 4_200_000_000;
    c.graceful_restart = Some(ferrolb_bgp::fsm::GracefulRestartConfig::new(300));
    let open = Session::new(c).local_open();
    assert_eq!(open.version, 4);
    assert_eq!(open.my_as_field, ferrolb_bgp::wire::AS_TRANS);
    assert_eq!(open.asn(), 4_200_000_000);
    assert_eq!(open.hold_time, 90);
    let c = &open.capabilities;
    assert!(c.contains(&Capability::Multiprotocol(Family::IPV4_UNICAST)));
    assert!(c.contains(&Capability::Multiprotocol(Family::IPV6_UNICAST)));
    assert!(c.contains(&Capability::RouteRefresh));
    assert!(c.contains(&Capability::EnhancedRouteRefresh));
    assert!(c.contains(&Capability::FourOctetAs(4_200_000_000)));
    assert!(!c.contains(&Capability::ExtendedMessage));
    let gr = c
        .iter()
        .find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g.clone()),
            _ => None,
        })
        .expect("graceful restart capability");
    assert!(!gr.restart_state);
    assert_eq!(gr.restart_time, 300);
}

#[test]
fn passive_open() {
    let mut s = Session::new(passive_cfg());
    let open = send_open(&s, C1);
    run(
        &mut s,
        vec![
            // Event 4: ManualStart_with_PassiveTcpEstablishment: no connect
            (Input::Start, vec![], State::Active),
            // Event 17: TcpConnectionConfirmed
            (
                inbound(C1),
                vec![
                    Output::CancelTimer(TimerKind::ConnectRetry),
                    open,
                    Output::ArmTimer(TimerKind::Hold(C1), secs(240)),
                ],
                State::OpenSent,
            ),
            (
                msg(C1, peer_open(30)),
                vec![
                    Output::Send(C1, Message::Keepalive),
                    Output::ArmTimer(TimerKind::Hold(C1), secs(30)),
                    Output::ArmTimer(TimerKind::Keepalive(C1), secs(10)),
                ],
                State::OpenConfirm,
            ),
            (
                msg(C1, Message::Keepalive),
                vec![
                    Output::ArmTimer(TimerKind::Hold(C1), secs(30)),
                    Output::ArmTimer(TimerKind::Stable, secs(30)),
                    Output::Established(negotiated()),
                ],
                State::Established,
            ),
            // The connection closes: Down, back to Active, no connect (passive).
            (
                Input::Closed { conn: C1 },
                [
                    teardown(C1),
                    vec![Output::Down(DownReason::ConnectionClosed)],
                ]
                .concat(),
                State::Active,
            ),
        ],
    );
}

#[test]
fn idle_refuses_connections() {
    let mut s = Session::new(cfg());
    assert_eq!(
        s.handle(inbound(C1)),
        vec![
            Output::Send(C1, Message::Notification(notif(6, 5))),
            Output::Close(C1)
        ]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn collision_our_id_higher_keeps_outbound() {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    let out = s.handle(inbound(C2));
    assert_eq!(
        out,
        vec![
            send_open(&s, C2),
            Output::ArmTimer(TimerKind::Hold(C2), secs(240))
        ]
    );
    // Peer (lower id) OPEN on the outbound connection: the inbound one loses.
    let got = s.handle(msg(C1, Message::Open(open_from(PEER_AS, 90, lower_id()))));
    let want = [
        vec![Output::Send(C2, Message::Notification(notif(6, 7)))],
        teardown(C2),
        vec![
            Output::Send(C1, Message::Keepalive),
            Output::ArmTimer(TimerKind::Hold(C1), secs(90)),
            Output::ArmTimer(TimerKind::Keepalive(C1), secs(30)),
        ],
    ]
    .concat();
    assert_outputs("open on outbound", &got, &want);
    assert_eq!(s.conns(), vec![C1]);
    // Late events on the closed connection are ignored.
    assert_eq!(s.handle(Input::Closed { conn: C2 }), vec![]);
    s.handle(msg(C1, Message::Keepalive));
    assert_eq!(s.established_conn(), Some(C1));
}

#[test]
fn collision_our_id_lower_keeps_inbound() {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    s.handle(inbound(C2));
    // Peer (higher id) OPEN arrives on our outbound connection first: it loses.
    let got = s.handle(msg(C1, Message::Open(open_from(PEER_AS, 90, higher_id()))));
    let want = [
        vec![Output::Send(C1, Message::Notification(notif(6, 7)))],
        teardown(C1),
    ]
    .concat();
    assert_outputs("open on outbound", &got, &want);
    assert_eq!(s.state(), State::OpenSent);
    // Then the OPEN on the inbound connection proceeds normally.
    let got = s.handle(msg(C2, Message::Open(open_from(PEER_AS, 90, higher_id()))));
    assert_eq!(got[0], Output::Send(C2, Message::Keepalive));
    assert_eq!(s.state(), State::OpenConfirm);
    let got = s.handle(msg(C2, Message::Keepalive));
    assert!(got.contains(&Output::Established(negotiated())));
    assert_eq!(s.established_conn(), Some(C2));
}

#[test]
fn collision_with_openconfirm_connection() {
    // Our outbound connection reached OpenConfirm; the peer (higher id) connects
    // in too. When its OPEN arrives on the inbound connection, the OpenConfirm
    // connection (opened by the lower id, us) is closed.
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    s.handle(msg(C1, Message::Open(open_from(PEER_AS, 90, higher_id()))));
    assert_eq!(s.state(), State::OpenConfirm);
    s.handle(inbound(C2));
    let got = s.handle(msg(C2, Message::Open(open_from(PEER_AS, 90, higher_id()))));
    let want = [
        vec![Output::Send(C1, Message::Notification(notif(6, 7)))],
        teardown(C1),
        vec![
            Output::Send(C2, Message::Keepalive),
            Output::ArmTimer(TimerKind::Hold(C2), secs(90)),
            Output::ArmTimer(TimerKind::Keepalive(C2), secs(30)),
        ],
    ]
    .concat();
    assert_outputs("open on inbound", &got, &want);
    assert_eq!(s.conns(), vec![C2]);
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn collision_with_established_connection_closes_the_new_one() {
    // Even though the peer's id is higher (it would win an OpenConfirm
    // collision), a new connection never displaces an Established one.
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    s.handle(msg(C1, Message::Open(open_from(PEER_AS, 90, higher_id()))));
    s.handle(msg(C1, Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    s.handle(inbound(C2));
    assert_eq!(s.state(), State::Established);
    let got = s.handle(msg(C2, Message::Open(open_from(PEER_AS, 90, higher_id()))));
    let want = [
        vec![Output::Send(C2, Message::Notification(notif(6, 7)))],
        teardown(C2),
    ]
    .concat();
    assert_outputs("open on new connection", &got, &want);
    assert_eq!(s.established_conn(), Some(C1));
    assert_eq!(s.conns(), vec![C1]);
}

#[test]
fn third_connection_is_refused() {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    s.handle(inbound(C2));
    // A new inbound connection replaces the peer's unfinished inbound one.
    let got = s.handle(inbound(ConnId(3)));
    assert_eq!(&got[..3], &teardown(C2)[..]);
    assert_eq!(s.conns(), vec![C1, ConnId(3)]);
    // An outbound connection we did not ask for is closed.
    assert_eq!(
        s.handle(outbound(ConnId(4))),
        vec![Output::Close(ConnId(4))]
    );
}

#[test]
fn an_inbound_connection_beyond_two_gets_cease_connection_rejected() {
    // Established on the inbound connection, our outbound attempt in OpenSent.
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(inbound(C1));
    s.handle(msg(C1, peer_open(90)));
    s.handle(msg(C1, Message::Keepalive));
    assert_eq!(s.established_conn(), Some(C1));
    // The connect attempt started with Start completes late.
    s.handle(outbound(C2));
    assert_eq!(s.conns(), vec![C1, C2]);
    // A third connection from the peer: 6/5, then closed; the others stay.
    let c3 = ConnId(3);
    assert_eq!(
        s.handle(inbound(c3)),
        vec![
            Output::Send(c3, Message::Notification(notif(6, 5))),
            Output::Close(c3)
        ]
    );
    assert_eq!(s.conns(), vec![C1, C2]);
    assert_eq!(s.state(), State::Established);
}

#[test]
fn hold_timer_expiry_sends_4_0_and_goes_down() {
    let mut s = established_active(90);
    let got = s.handle(Input::TimerExpired(TimerKind::Hold(C1)));
    let want = [
        vec![Output::Send(C1, Message::Notification(notif(4, 0)))],
        teardown(C1),
        vec![
            Output::Down(DownReason::HoldTimerExpired),
            Output::ArmTimer(TimerKind::ConnectRetry, ANY),
        ],
    ]
    .concat();
    assert_outputs("hold expiry", &got, &want);
    assert_eq!(s.state(), State::Active);
    // Event 9 in Active: connect again.
    assert_eq!(
        s.handle(Input::TimerExpired(TimerKind::ConnectRetry)),
        vec![
            Output::Connect,
            Output::ArmTimer(TimerKind::ConnectRetry, secs(10))
        ]
    );
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn hold_timer_in_opensent_is_four_minutes_and_expires() {
    let mut s = Session::new(passive_cfg());
    s.handle(Input::Start);
    let got = s.handle(inbound(C1));
    assert!(got.contains(&Output::ArmTimer(TimerKind::Hold(C1), secs(240))));
    let got = s.handle(Input::TimerExpired(TimerKind::Hold(C1)));
    let want = [
        vec![Output::Send(C1, Message::Notification(notif(4, 0)))],
        teardown(C1),
        vec![Output::Down(DownReason::HoldTimerExpired)],
    ]
    .concat();
    assert_outputs("opensent hold expiry", &got, &want);
}

#[test]
fn bad_open_is_rejected() {
    let mut v3 = open_from(PEER_AS, 90, lower_id());
    v3.version = 3;
    let cases: Vec<(&str, Open, Notification)> = vec![
        (
            "wrong peer AS",
            open_from(65000, 90, lower_id()),
            notif(2, 2),
        ),
        (
            "version 3",
            v3,
            Notification {
                code: 2,
                subcode: 1,
                data: vec![0, 4],
            },
        ),
        ("hold 1", open_from(PEER_AS, 1, lower_id()), notif(2, 6)),
        ("hold 2", open_from(PEER_AS, 2, lower_id()), notif(2, 6)),
        (
            "router id 0",
            open_from(PEER_AS, 90, Ipv4Addr::UNSPECIFIED),
            notif(2, 3),
        ),
    ];
    for (name, open, n) in cases {
        let mut s = Session::new(passive_cfg());
        s.handle(Input::Start);
        s.handle(inbound(C1));
        let got = s.handle(msg(C1, Message::Open(open)));
        let want = [
            vec![Output::Send(C1, Message::Notification(n.clone()))],
            teardown(C1),
            vec![Output::Down(DownReason::NotificationSent(n))],
        ]
        .concat();
        assert_outputs(name, &got, &want);
        assert_eq!(s.state(), State::Active, "{name}");
    }
}

#[test]
fn same_router_id_as_ours_is_rejected_on_ibgp_only() {
    // RFC 6286 §2.2: the identifier is unique within an AS, so only an internal
    // peer with our identifier is refused (2/3); an external one is accepted.
    for (peer_as, refused) in [(LOCAL_AS, true), (PEER_AS, false)] {
        let mut c = passive_cfg();
        c.peer_as = peer_as;
        let mut s = Session::new(c);
        s.handle(Input::Start);
        s.handle(inbound(C1));
        let got = s.handle(msg(C1, Message::Open(open_from(peer_as, 90, local_id()))));
        if refused {
            assert_eq!(got[0], Output::Send(C1, Message::Notification(notif(2, 3))));
        } else {
            assert_eq!(got[0], Output::Send(C1, Message::Keepalive), "{got:?}");
            assert_eq!(s.state(), State::OpenConfirm);
        }
    }
}

#[test]
fn acceptable_hold_times() {
    for (peer_hold, hold, ka) in [(3u16, 3u64, 1u64), (9, 9, 3), (180, 90, 30), (90, 90, 30)] {
        let mut s = Session::new(passive_cfg());
        s.handle(Input::Start);
        s.handle(inbound(C1));
        let got = s.handle(msg(C1, peer_open(peer_hold)));
        assert_eq!(
            got,
            vec![
                Output::Send(C1, Message::Keepalive),
                Output::ArmTimer(TimerKind::Hold(C1), secs(hold)),
                Output::ArmTimer(TimerKind::Keepalive(C1), secs(ka)),
            ],
            "peer hold {peer_hold}"
        );
    }
}

#[test]
fn configured_keepalive_is_honoured_below_hold() {
    for (ka_cfg, peer_hold, ka) in [
        (Some(10u16), 90u16, 10u64),
        (Some(60), 90, 60),
        (Some(100), 90, 30),
        (Some(30), 9, 3),
        (Some(0), 90, 30),
    ] {
        let mut c = passive_cfg();
        c.keepalive = ka_cfg;
        let mut s = Session::new(c);
        s.handle(Input::Start);
        s.handle(inbound(C1));
        let got = s.handle(msg(C1, peer_open(peer_hold)));
        assert_eq!(
            got[2],
            Output::ArmTimer(TimerKind::Keepalive(C1), secs(ka)),
            "{ka_cfg:?} {peer_hold}"
        );
    }
}

#[test]
fn hold_time_zero_disables_timers() {
    let mut s = Session::new(passive_cfg());
    run(
        &mut s,
        vec![
            (Input::Start, vec![], State::Active),
            (
                inbound(C1),
                vec![
                    Output::CancelTimer(TimerKind::ConnectRetry),
                    Output::Send(C1, Message::Open(Session::new(passive_cfg()).local_open())),
                    Output::ArmTimer(TimerKind::Hold(C1), secs(240)),
                ],
                State::OpenSent,
            ),
            (
                msg(C1, peer_open(0)),
                vec![
                    Output::Send(C1, Message::Keepalive),
                    Output::CancelTimer(TimerKind::Hold(C1)),
                ],
                State::OpenConfirm,
            ),
            (
                msg(C1, Message::Keepalive),
                vec![
                    Output::ArmTimer(TimerKind::Stable, secs(30)),
                    Output::Established(negotiated()),
                ],
                State::Established,
            ),
            (msg(C1, Message::Keepalive), vec![], State::Established),
            (
                msg(C1, Message::Update(Update::default())),
                vec![Output::UpdateReceived(Update::default())],
                State::Established,
            ),
            // A stray keepalive timer does nothing with hold 0.
            (
                Input::TimerExpired(TimerKind::Keepalive(C1)),
                vec![],
                State::Established,
            ),
        ],
    );
    assert_eq!(s.timers(), Some((0, 0)));
}

#[test]
fn notification_received_goes_down_in_every_state() {
    let n = Notification {
        code: 6,
        subcode: 2,
        data: b"\x03bye".to_vec(),
    };
    // OpenSent
    let mut s = Session::new(passive_cfg());
    s.handle(Input::Start);
    s.handle(inbound(C1));
    let got = s.handle(msg(C1, Message::Notification(n.clone())));
    let want = [
        teardown(C1),
        vec![Output::Down(DownReason::NotificationReceived(n.clone()))],
    ]
    .concat();
    assert_outputs("opensent", &got, &want);
    // OpenConfirm
    let mut s = Session::new(passive_cfg());
    s.handle(Input::Start);
    s.handle(inbound(C1));
    s.handle(msg(C1, peer_open(90)));
    let got = s.handle(msg(C1, Message::Notification(n.clone())));
    assert_outputs("openconfirm", &got, &want);
    // Established (active: retry is armed)
    let mut s = established_active(90);
    let got = s.handle(msg(C1, Message::Notification(n.clone())));
    let want = [
        teardown(C1),
        vec![
            Output::Down(DownReason::NotificationReceived(n.clone())),
            Output::ArmTimer(TimerKind::ConnectRetry, ANY),
        ],
    ]
    .concat();
    assert_outputs("established", &got, &want);
    assert_eq!(s.state(), State::Active);
    assert_eq!(
        DownReason::NotificationReceived(n).to_string(),
        "notification received: 6/2 Cease / Administrative Shutdown: \"bye\""
    );
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let update = Message::Update(Update::default());
    let rr = Message::RouteRefresh(RouteRefresh {
        family: Family::IPV4_UNICAST,
        subtype: 0,
    });
    // (how far to go before, message, expected subcode)
    let cases: Vec<(State, Message, u8)> = vec![
        (State::OpenSent, Message::Keepalive, 1),
        (State::OpenSent, update.clone(), 1),
        (State::OpenSent, rr.clone(), 1),
        (State::OpenConfirm, peer_open(90), 2),
        (State::OpenConfirm, update.clone(), 2),
        (State::OpenConfirm, rr, 2),
        (State::Established, peer_open(90), 3),
    ];
    for (state, m, subcode) in cases {
        let mut s = Session::new(passive_cfg());
        s.handle(Input::Start);
        s.handle(inbound(C1));
        if state >= State::OpenConfirm {
            s.handle(msg(C1, peer_open(90)));
        }
        if state >= State::Established {
            s.handle(msg(C1, Message::Keepalive));
        }
        assert_eq!(s.state(), state);
        let got = s.handle(msg(C1, m.clone()));
        let n = notif(5, subcode);
        let want = [
            vec![Output::Send(C1, Message::Notification(n.clone()))],
            teardown(C1),
            vec![Output::Down(DownReason::NotificationSent(n))],
        ]
        .concat();
        assert_outputs(&format!("{state:?} {m:?}"), &got, &want);
    }
}

#[test]
fn malformed_message_sends_mapped_notification() {
    let mut s = established_passive(90);
    let n = Notification {
        code: 3,
        subcode: 1,
        data: Vec::new(),
    };
    let got = s.handle(Input::Malformed {
        conn: C1,
        notification: n.clone(),
    });
    let want = [
        vec![Output::Send(C1, Message::Notification(n.clone()))],
        teardown(C1),
        vec![Output::Down(DownReason::NotificationSent(n))],
    ]
    .concat();
    assert_outputs("malformed", &got, &want);
}

#[test]
fn updates_and_route_refresh_in_established() {
    let mut s = established_passive(90);
    let u = Update {
        nlri: vec!["10.0.0.0/24".parse().unwrap()],
        ..Update::default()
    };
    assert_eq!(
        s.handle(msg(C1, Message::Update(u.clone()))),
        vec![
            Output::ArmTimer(TimerKind::Hold(C1), secs(90)),
            Output::UpdateReceived(u)
        ]
    );
    let rr = |family, subtype| Message::RouteRefresh(RouteRefresh { family, subtype });
    assert_eq!(
        s.handle(msg(C1, rr(Family::IPV4_UNICAST, 0))),
        vec![
            Output::ArmTimer(TimerKind::Hold(C1), secs(90)),
            Output::RouteRefreshRequested(Family::IPV4_UNICAST)
        ]
    );
    // Not negotiated family, or BoRR/EoRR: nothing to do.
    assert_eq!(
        s.handle(msg(C1, rr(Family::IPV6_UNICAST, 0))).len(),
        1,
        "ipv6 not negotiated"
    );
    assert_eq!(s.handle(msg(C1, rr(Family::IPV4_UNICAST, 1))).len(), 1);
}

#[test]
fn negotiation() {
    let open_caps = |caps: Vec<Capability>| {
        let mut c = passive_cfg();
        c.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
        c.extended_message = true;
        let mut s = Session::new(c);
        s.handle(Input::Start);
        s.handle(inbound(C1));
        s.handle(msg(
            C1,
            Message::Open(Open::new(PEER_AS, 90, lower_id(), caps)),
        ));
        s.handle(msg(C1, Message::Keepalive))
            .into_iter()
            .find_map(|o| match o {
                Output::Established(n) => Some(n),
                _ => None,
            })
            .expect("established")
    };
    // No capabilities at all: 2-octet ASNs, IPv4 unicast implied.
    assert_eq!(
        open_caps(vec![]),
        Negotiated {
            four_octet_as: false,
            extended_message: false,
            families: vec![Family::IPV4_UNICAST],
            route_refresh: false,
            enhanced_route_refresh: false,
        }
    );
    // IPv6 only + extended message + route refresh.
    assert_eq!(
        open_caps(vec![
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::ExtendedMessage,
            Capability::RouteRefresh,
            Capability::FourOctetAs(PEER_AS),
        ]),
        Negotiated {
            four_octet_as: true,
            extended_message: true,
            families: vec![Family::IPV6_UNICAST],
            route_refresh: true,
            enhanced_route_refresh: false,
        }
    );
}

#[test]
fn extended_message_needs_both_sides() {
    // We do not offer it by default, so a peer offering it gets 4096-byte messages.
    let mut s = Session::new(passive_cfg());
    s.handle(Input::Start);
    s.handle(inbound(C1));
    let mut c = caps(PEER_AS);
    c.push(Capability::ExtendedMessage);
    s.handle(msg(
        C1,
        Message::Open(Open::new(PEER_AS, 90, lower_id(), c)),
    ));
    assert_eq!(s.negotiated(C1).map(|n| n.extended_message), Some(false));
}

#[test]
fn connect_retry_backoff_grows_and_caps() {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    let mut delays = Vec::new();
    for _ in 0..60 {
        // Event 18: TcpConnectionFails -> Active, retry armed
        let got = s.handle(Input::ConnectFailed);
        let [Output::ArmTimer(TimerKind::ConnectRetry, d)] = got[..] else {
            panic!("{got:?}")
        };
        assert_eq!(s.state(), State::Active);
        delays.push(d);
        // Event 9: ConnectRetryTimer_Expires -> Connect
        assert_eq!(
            s.handle(Input::TimerExpired(TimerKind::ConnectRetry)),
            vec![
                Output::Connect,
                Output::ArmTimer(TimerKind::ConnectRetry, secs(10))
            ]
        );
        assert_eq!(s.state(), State::Connect);
    }
    // Refused attempts reach no BGP speaker: 1 s for the first 30, then
    // doubling to 5 s, not to the 60 s of damped session failures.
    for (i, d) in delays.iter().enumerate() {
        let base = (1u64 << i.saturating_sub(30)).min(5) as f64;
        let d = d.as_secs_f64();
        assert!(
            d >= base * 0.75 && d <= (base * 1.25).min(5.0),
            "retry {i}: {d} for base {base}"
        );
    }
    // Jitter: not all capped delays are equal.
    assert!(delays[33..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
    assert!(delays[..30].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
    // Same seed, same delays.
    let mut t = Session::new(cfg());
    t.handle(Input::Start);
    let first = t.handle(Input::ConnectFailed);
    assert_eq!(
        first,
        vec![Output::ArmTimer(TimerKind::ConnectRetry, delays[0])]
    );

    // A connect attempt that times out (Event 9 in Connect) is restarted.
    assert_eq!(
        s.handle(Input::TimerExpired(TimerKind::ConnectRetry)),
        vec![
            Output::Connect,
            Output::ArmTimer(TimerKind::ConnectRetry, secs(10))
        ]
    );
    // A session that stayed Established for the stable time resets the
    // backoff to the first delay.
    s.handle(outbound(C1));
    s.handle(msg(C1, peer_open(90)));
    s.handle(msg(C1, Message::Keepalive));
    s.handle(Input::TimerExpired(TimerKind::Stable));
    let got = s.handle(Input::Closed { conn: C1 });
    let Some(Output::ArmTimer(TimerKind::ConnectRetry, d)) = got.last() else {
        panic!("{got:?}")
    };
    assert!(d.as_secs_f64() <= 1.25, "{d:?}");
}

/// RFC 4271 §8.1.1: a peer that resets the session right after Established
/// (before the stable time) meets a growing delay before each reconnection.
#[test]
fn resets_right_after_established_are_damped() {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    let mut delays = Vec::new();
    for i in 0..8u64 {
        let c = ConnId(10 + i);
        s.handle(Input::Connected {
            conn: c,
            direction: Direction::Outbound,
        });
        s.handle(msg(c, peer_open(90)));
        let up = s.handle(msg(c, Message::Keepalive));
        assert!(
            up.contains(&Output::ArmTimer(TimerKind::Stable, secs(30))),
            "{up:?}"
        );
        let got = s.handle(Input::Closed { conn: c });
        let Some(Output::ArmTimer(TimerKind::ConnectRetry, d)) = got.last() else {
            panic!("{got:?}")
        };
        delays.push(*d);
        assert_eq!(
            s.handle(Input::TimerExpired(TimerKind::ConnectRetry))[0],
            Output::Connect
        );
    }
    for (i, d) in delays.iter().enumerate() {
        let base = (1u64 << i).min(60) as f64;
        let d = d.as_secs_f64();
        assert!(
            d >= base * 0.75 && d <= (base * 1.25).min(60.0),
            "reset {i}: {d} s for base {base}: {delays:?}"
        );
    }
    // While the peer is away (refused attempts) the damped delay is not
    // used for every attempt: those retry within 5 s...
    for _ in 0..4 {
        let got = s.handle(Input::ConnectFailed);
        let Some(Output::ArmTimer(TimerKind::ConnectRetry, d)) = got.last() else {
            panic!("{got:?}")
        };
        assert!(d.as_secs_f64() <= 5.0, "{d:?}");
        assert_eq!(
            s.handle(Input::TimerExpired(TimerKind::ConnectRetry))[0],
            Output::Connect
        );
    }
    // ... and a stale Stable expiry while down forgives nothing: the next
    // reset right after Established still meets the capped damped delay.
    s.handle(Input::TimerExpired(TimerKind::Stable));
    let c = ConnId(99);
    s.handle(Input::Connected {
        conn: c,
        direction: Direction::Outbound,
    });
    s.handle(msg(c, peer_open(90)));
    s.handle(msg(c, Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    let got = s.handle(Input::Closed { conn: c });
    let Some(Output::ArmTimer(TimerKind::ConnectRetry, d)) = got.last() else {
        panic!("{got:?}")
    };
    assert!(d.as_secs_f64() >= 45.0, "{d:?}");
}

/// The delay after an attempt depends on whether a BGP speaker answered:
/// closed before any OPEN with no NOTIFICATION, or a Cease "Connection
/// Rejected" before the OPEN (a router still starting, or holding us Idle
/// after a reset), is retried on the short backoff; an OPEN error from the
/// peer is a session failure and is damped up to 60 s.
#[test]
fn attempts_that_reach_no_bgp_speaker_retry_within_5_s() {
    fn retry_after(s: &mut Session, end: Input) -> f64 {
        let got = s.handle(end);
        let Some(Output::ArmTimer(TimerKind::ConnectRetry, d)) = got.last() else {
            panic!("{got:?}")
        };
        assert_eq!(
            s.handle(Input::TimerExpired(TimerKind::ConnectRetry))[0],
            Output::Connect
        );
        d.as_secs_f64()
    }
    type End = fn(ConnId) -> Input;
    let ends: [(&str, End, bool); 3] = [
        ("closed before OPEN", |c| Input::Closed { conn: c }, true),
        (
            "Cease 6/5 before OPEN",
            |c| msg(c, Message::Notification(notif(6, 5))),
            true,
        ),
        (
            "OPEN error 2/2",
            |c| msg(c, Message::Notification(notif(2, 2))),
            false,
        ),
    ];
    for (what, end, short) in ends {
        let mut s = Session::new(cfg());
        s.handle(Input::Start);
        let mut delays = Vec::new();
        for i in 0..10u64 {
            let c = ConnId(100 + i);
            s.handle(Input::Connected {
                conn: c,
                direction: Direction::Outbound,
            });
            assert_eq!(s.state(), State::OpenSent, "{what}");
            delays.push(retry_after(&mut s, end(c)));
        }
        let last = delays[delays.len() - 1];
        if short {
            assert!(delays.iter().all(|d| *d <= 5.0), "{what}: {delays:?}");
        } else {
            assert!(last >= 45.0, "{what}: {delays:?}");
        }
    }

    // The first 30 retries stay at 1 s (a router holding the peer Idle for
    // up to 30 s is met within a second of its end: bench/speaker-scale
    // found a rollout waiting 1 + 2 + 4 s against gobgpd's 5 s), then the
    // delay doubles to its 5 s cap.
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    let quick: Vec<f64> = (0..30)
        .map(|_| retry_after(&mut s, Input::ConnectFailed))
        .collect();
    assert!(quick.iter().all(|d| (0.75..=1.25).contains(d)), "{quick:?}");
    for _ in 0..3 {
        retry_after(&mut s, Input::ConnectFailed);
    }
    // An answering peer starts the short backoff over.
    assert!(retry_after(&mut s, Input::ConnectFailed) >= 3.75);
    s.handle(outbound(C1));
    s.handle(msg(C1, peer_open(90)));
    // It then failed in OpenConfirm (a session failure, damped from 1 s) ...
    let first = retry_after(&mut s, Input::Closed { conn: C1 });
    assert!(first <= 1.25, "{first}");
    // ... and is unreachable again: from 1 s, not from 5 s.
    let again = retry_after(&mut s, Input::ConnectFailed);
    assert!(again <= 1.25, "{again}");
}

/// A router restarted or reset by hand ends the session with an
/// administrative Cease: reconnecting is not damped, however young the
/// session was (bench/reliability found back-to-back router restarts
/// waiting up to 60 s). A Cease for another reason (out of resources) or a
/// hold timer expiry still is.
#[test]
fn administrative_cease_from_the_peer_is_not_damped() {
    fn flaps(end: &dyn Fn(ConnId) -> Input) -> Vec<f64> {
        let mut s = Session::new(cfg());
        s.handle(Input::Start);
        let mut delays = Vec::new();
        for i in 0..8u64 {
            let c = ConnId(200 + i);
            s.handle(Input::Connected {
                conn: c,
                direction: Direction::Outbound,
            });
            s.handle(msg(c, peer_open(90)));
            s.handle(msg(c, Message::Keepalive));
            assert_eq!(s.state(), State::Established);
            let got = s.handle(end(c));
            let Some(Output::ArmTimer(TimerKind::ConnectRetry, d)) = got.last() else {
                panic!("{got:?}")
            };
            delays.push(d.as_secs_f64());
            s.handle(Input::TimerExpired(TimerKind::ConnectRetry));
        }
        delays
    }
    for sub in [2u8, 3, 4, 6] {
        let d = flaps(&|c| msg(c, Message::Notification(notif(6, sub))));
        assert!(d.iter().all(|d| *d <= 1.25), "6/{sub}: {d:?}");
    }
    // The same inside a Hard Reset (RFC 8538).
    let d = flaps(&|c| {
        msg(
            c,
            Message::Notification(Notification::hard_reset(&notif(6, 4))),
        )
    });
    assert!(d.iter().all(|d| *d <= 1.25), "6/9 (6/4): {d:?}");
    // Out of resources (6/8) is damped.
    let d = flaps(&|c| msg(c, Message::Notification(notif(6, 8))));
    assert!(d[7] >= 45.0, "6/8: {d:?}");
}

/// A fixed connectTime stays fixed for unreachable attempts too, also above 5 s.
#[test]
fn fixed_connect_time_above_the_unreachable_cap() {
    let mut s = Session::new(SessionConfig {
        connect_retry: secs(20),
        connect_retry_max: secs(20),
        ..cfg()
    });
    s.handle(Input::Start);
    for _ in 0..4 {
        let out = s.handle(Input::ConnectFailed);
        let Some(Output::ArmTimer(TimerKind::ConnectRetry, d)) = out.last() else {
            panic!("{out:?}")
        };
        assert!(*d >= secs(15) && *d <= secs(20), "{d:?}");
        s.handle(Input::TimerExpired(TimerKind::ConnectRetry));
    }
}

#[test]
fn admin_stop_sends_cease_with_communication() {
    let mut s = established_active(90);
    let text = "maintenance window";
    let n = Notification {
        code: 6,
        subcode: 2,
        data: [&[text.len() as u8][..], text.as_bytes()].concat(),
    };
    let got = s.handle(Input::Stop {
        subcode: 2,
        communication: Some(text.to_string()),
    });
    let want = [
        vec![Output::Send(C1, Message::Notification(n.clone()))],
        teardown(C1),
        vec![
            Output::CancelTimer(TimerKind::ConnectRetry),
            Output::Down(DownReason::AdminStop),
        ],
    ]
    .concat();
    assert_outputs("stop", &got, &want);
    assert_eq!(s.state(), State::Idle);
    assert_eq!(n.shutdown_message().as_deref(), Some(text));
    // Stopped: timers and messages are ignored; Stop again does nothing.
    assert_eq!(
        s.handle(Input::TimerExpired(TimerKind::ConnectRetry)),
        vec![]
    );
    assert_eq!(
        s.handle(Input::Stop {
            subcode: 2,
            communication: None
        }),
        vec![]
    );
    // And it can start again.
    assert_eq!(s.handle(Input::Start)[0], Output::Connect);
}

#[test]
fn down_reasons_read_well() {
    assert_eq!(
        DownReason::NotificationSent(notif(6, 7)).to_string(),
        "notification sent: 6/7 Cease / Connection Collision Resolution"
    );
    assert!(describe_notification(&notif(4, 0)).starts_with("4/0 Hold Timer Expired"));
    assert_eq!(
        DownReason::HoldTimerExpired.to_string(),
        "hold timer expired"
    );
}

#[test]
fn tcp_failure_in_opensent_goes_back_to_active_with_retry() {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    let got = s.handle(Input::Closed { conn: C1 });
    let want = [
        teardown(C1),
        vec![
            Output::Down(DownReason::ConnectionClosed),
            Output::ArmTimer(TimerKind::ConnectRetry, ANY),
        ],
    ]
    .concat();
    assert_outputs("closed", &got, &want);
    assert_eq!(s.state(), State::Active);
}

#[test]
fn established_loss_with_another_connection_pending_reports_down() {
    let mut s = established_passive(90);
    s.handle(inbound(C2));
    let got = s.handle(Input::Closed { conn: C1 });
    assert!(got.contains(&Output::Down(DownReason::ConnectionClosed)));
    assert_eq!(s.state(), State::OpenSent);
    // The pending connection can now become Established.
    s.handle(msg(C2, peer_open(90)));
    s.handle(msg(C2, Message::Keepalive));
    assert_eq!(s.established_conn(), Some(C2));
}

/// A dynamic peer: which AS its OPEN may carry, and the AS the session then
/// reports (iBGP/eBGP treatment follows it).
#[test]
fn dynamic_peer_as_accepts_by_kind() {
    let cases = [
        // (kind, AS in the peer's OPEN, accepted)
        (DynamicAs::External, PEER_AS, true),
        (DynamicAs::External, 4_200_000_001, true),
        (DynamicAs::External, LOCAL_AS, false),
        (DynamicAs::Internal, LOCAL_AS, true),
        (DynamicAs::Internal, PEER_AS, false),
    ];
    for (kind, asn, ok) in cases {
        let mut s = Session::new(SessionConfig {
            dynamic_peer_as: Some(kind),
            peer_as: 0,
            ..cfg()
        });
        assert_eq!(s.config().is_ibgp(), kind == DynamicAs::Internal);
        s.handle(Input::Start);
        s.handle(outbound(C1));
        let out = s.handle(msg(C1, Message::Open(open_from(asn, 90, lower_id()))));
        let label = format!("{kind:?} peer announcing AS {asn}");
        if ok {
            assert_eq!(out[0], Output::Send(C1, Message::Keepalive), "{label}");
            assert_eq!(s.state(), State::OpenConfirm, "{label}");
            assert_eq!(s.peer_as(C1), Some(asn), "{label}");
            let out = s.handle(msg(C1, Message::Keepalive));
            assert!(out.contains(&Output::Established(negotiated())), "{label}");
        } else {
            assert_eq!(
                out[0],
                Output::Send(C1, Message::Notification(notif(2, 2))),
                "{label}: Bad Peer AS"
            );
            assert_eq!(s.state(), State::Active, "{label}");
            assert!(
                out.contains(&Output::Down(DownReason::NotificationSent(notif(2, 2)))),
                "{label}: {out:?}"
            );
        }
    }
}

/// A fixed peer AS still rejects any other with 2/2, and reports the fixed one.
#[test]
fn fixed_peer_as_is_reported_after_open() {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    s.handle(msg(C1, peer_open(90)));
    assert_eq!(s.peer_as(C1), Some(PEER_AS));
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    let out = s.handle(msg(C1, Message::Open(open_from(65000, 90, lower_id()))));
    assert_eq!(out[0], Output::Send(C1, Message::Notification(notif(2, 2))));
    assert_eq!(s.peer_as(C1), None);
}

/// Stop with the RFC 4486 subcodes used on configuration changes: 6/3 and 6/6
/// go out without a shutdown communication (only 6/2 and 6/4 carry one).
#[test]
fn stop_with_deconfigured_and_configuration_change() {
    for sub in [3u8, 6] {
        let mut s = established_active(90);
        let out = s.handle(Input::Stop {
            subcode: sub,
            communication: Some("ignored".into()),
        });
        assert_eq!(
            out[0],
            Output::Send(C1, Message::Notification(notif(6, sub)))
        );
        assert_eq!(out.last(), Some(&Output::Down(DownReason::AdminStop)));
        assert_eq!(s.state(), State::Idle);
    }
}

/// A configured connectTime is a fixed connect-retry interval: with the cap
/// equal to the first delay, every retry waits about that long (±25 %).
#[test]
fn fixed_connect_retry_interval() {
    let mut s = Session::new(SessionConfig {
        connect_retry: secs(7),
        connect_retry_max: secs(7),
        ..cfg()
    });
    s.handle(Input::Start);
    for _ in 0..6 {
        let out = s.handle(Input::ConnectFailed);
        let d = out
            .iter()
            .find_map(|o| match o {
                Output::ArmTimer(TimerKind::ConnectRetry, d) => Some(*d),
                _ => None,
            })
            .expect("retry armed");
        assert!(d >= secs(5) && d <= secs(7), "{d:?}");
        let out = s.handle(Input::TimerExpired(TimerKind::ConnectRetry));
        assert_eq!(out[0], Output::Connect);
    }
}

#[test]
fn bfd_down_while_established_sends_cease_10_and_retries_with_backoff() {
    let mut s = established_active(90);
    let got = s.handle(Input::BfdDown);
    let n = notif(6, 10);
    let want = [
        vec![Output::Send(C1, Message::Notification(n.clone()))],
        teardown(C1),
        vec![
            Output::Down(DownReason::NotificationSent(n)),
            Output::ArmTimer(TimerKind::ConnectRetry, ANY),
        ],
    ]
    .concat();
    assert_outputs("bfd down", &got, &want);
    // The retry waits (1 s ± 25 %), it does not reconnect at once.
    let delay = got.iter().find_map(|o| match o {
        Output::ArmTimer(TimerKind::ConnectRetry, d) => Some(*d),
        _ => None,
    });
    assert!(delay.unwrap() >= Duration::from_millis(750), "{delay:?}");
    assert!(!got.contains(&Output::Connect));
    assert_eq!(s.state(), State::Active);
}

#[test]
fn bfd_down_outside_established_is_ignored() {
    let mut s = Session::new(cfg());
    assert!(s.handle(Input::BfdDown).is_empty(), "Idle");
    s.handle(Input::Start);
    s.handle(outbound(C1));
    assert_eq!(s.state(), State::OpenSent);
    assert!(s.handle(Input::BfdDown).is_empty(), "OpenSent");
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn reset_while_established_sends_the_notification_and_retries() {
    let mut s = established_active(90);
    let n = ferrolb_bgp::driver::max_prefix_notification(Family::IPV4_UNICAST, 100);
    assert_eq!((n.code, n.subcode), (6, 1));
    assert_eq!(n.data, [0, 1, 1, 0, 0, 0, 100], "AFI 1, SAFI 1, limit 100");
    let got = s.handle(Input::Reset(n.clone()));
    let want = [
        vec![Output::Send(C1, Message::Notification(n.clone()))],
        teardown(C1),
        vec![
            Output::Down(DownReason::NotificationSent(n.clone())),
            Output::ArmTimer(TimerKind::ConnectRetry, ANY),
        ],
    ]
    .concat();
    assert_outputs("reset", &got, &want);
    assert_eq!(s.state(), State::Active);
    // Outside Established it does nothing.
    assert!(s.handle(Input::Reset(n)).is_empty());
}

/// RFC 5492 §3: after Unsupported Capability (2/7) the next OPEN leaves out
/// the capabilities its data lists, and nothing is negotiated on them.
#[test]
fn unsupported_capability_is_left_out_of_the_next_open() {
    let mut s = Session::new(cfg());
    s.handle(Input::Start);
    s.handle(outbound(C1));
    // Data: Enhanced Route Refresh (70, empty) and Route Refresh (2, empty).
    let mut n = notif(2, 7);
    n.data = vec![70, 0, 2, 0];
    let got = s.handle(msg(C1, Message::Notification(n.clone())));
    assert!(
        got.contains(&Output::Down(DownReason::NotificationReceived(n))),
        "{got:?}"
    );
    assert_eq!(s.unsupported_capabilities(), &[70, 2]);
    s.handle(Input::TimerExpired(TimerKind::ConnectRetry));
    let got = s.handle(outbound(C2));
    let Some(open) = got.iter().find_map(|o| match o {
        Output::Send(_, Message::Open(open)) => Some(open),
        _ => None,
    }) else {
        panic!("{got:?}")
    };
    let codes: Vec<u8> = open.capabilities.iter().map(|c| c.code()).collect();
    assert!(!codes.contains(&70) && !codes.contains(&2), "{codes:?}");
    assert!(codes.contains(&65) && codes.contains(&1), "{codes:?}");
    // The peer offers both anyway: neither is negotiated.
    s.handle(msg(C2, peer_open(90)));
    let neg = s.negotiated(C2).unwrap();
    assert!(!neg.route_refresh && !neg.enhanced_route_refresh, "{neg:?}");
    assert!(neg.four_octet_as);
    assert_eq!(neg.families, vec![Family::IPV4_UNICAST]);
}
