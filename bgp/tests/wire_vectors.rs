//! Byte-exact vectors, hand-built from the RFC message layouts, checked in
//! both directions: bytes → Message and Message → bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use ferrolb_bgp::wire::*;

fn four() -> Negotiated {
    Negotiated {
        four_octet_as: true,
        ..Negotiated::default()
    }
}

fn two() -> Negotiated {
    Negotiated::default()
}

/// Hex (whitespace ignored) → bytes.
fn hx(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const MARKER: &str = "ffffffffffffffffffffffffffffffff";

fn check(neg: &Negotiated, body_hex: &str, msg: Message) {
    let body = hx(body_hex);
    let mut bytes = hx(MARKER);
    bytes.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    bytes.push(msg.type_code());
    bytes.extend_from_slice(&body);

    assert_eq!(
        frame_len(&bytes, neg.max_message_len()),
        Ok(Some(bytes.len()))
    );
    let decoded = Message::decode(&bytes, neg).expect("decode");
    assert_eq!(decoded, msg, "decode");
    let mut out = BytesMut::new();
    msg.encode(neg, &mut out).expect("encode");
    assert_eq!(hex(&out), hex(&bytes), "encode");
    assert_eq!(msg.encoded_len(neg), bytes.len(), "encoded_len");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn v4(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

#[test]
fn keepalive() {
    check(&two(), "", Message::Keepalive);
    assert_eq!(Message::Keepalive.encoded_len(&two()), 19);
}

#[test]
fn open_two_octet_asn_with_capabilities() {
    // version 4, AS 64522, hold 90, id 172.17.0.21, one Capabilities parameter:
    // MP IPv4/unicast (1,4: 0001 00 01), route refresh (2,0), 4-octet AS 64522 (65,4).
    let body = "04 fc0a 005a ac110015 10
                02 0e  01 04 0001 00 01  02 00  41 04 0000fc0a";
    let open = Open::new(
        64522,
        90,
        Ipv4Addr::new(172, 17, 0, 21),
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(64522),
        ],
    );
    assert_eq!(open.asn(), 64522);
    check(&two(), body, Message::Open(open));
}

#[test]
fn open_four_octet_asn_graceful_restart_and_unknown() {
    // AS 4200000000 = 0xfa56ea00 → AS_TRANS 23456 = 0x5ba0 in My AS.
    // GR: R and N bits, time 120 → 0xc078; IPv4/unicast F bit, IPv6/unicast none.
    let body = "04 5ba0 00b4 0a000001 24
                02 22
                   01 04 0002 00 01
                   06 00
                   40 0a c078 0001 01 80 0002 01 00
                   41 04 fa56ea00
                   46 00
                   49 04 02 766d 00";
    let open = Open::new(
        4_200_000_000,
        180,
        Ipv4Addr::new(10, 0, 0, 1),
        vec![
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::ExtendedMessage,
            Capability::GracefulRestart(GracefulRestart {
                restart_state: true,
                notification: true,
                restart_time: 120,
                families: vec![(Family::IPV4_UNICAST, true), (Family::IPV6_UNICAST, false)],
            }),
            Capability::FourOctetAs(4_200_000_000),
            Capability::EnhancedRouteRefresh,
            Capability::Unknown {
                code: 73,
                value: hx("02766d00"),
            },
        ],
    );
    assert_eq!(open.my_as_field, AS_TRANS);
    assert_eq!(open.asn(), 4_200_000_000);
    check(&two(), body, Message::Open(open));
}

#[test]
fn open_without_optional_parameters() {
    let open = Open::new(65001, 0, Ipv4Addr::new(1, 2, 3, 4), vec![]);
    check(&two(), "04 fde9 0000 01020304 00", Message::Open(open));
}

#[test]
fn open_rfc9072_extended_parameters_decode() {
    // Non-Ext OP Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length 9,
    // then one parameter: type 2, 2-octet length 6, capability 4-octet AS.
    let mut bytes = hx(MARKER);
    let body = hx("04 fde9 005a 01020304 ff ff 0009 02 0006 41 04 0000fde9");
    bytes.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    bytes.push(1);
    bytes.extend_from_slice(&body);
    let Message::Open(open) = Message::decode(&bytes, &two()).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(open.capabilities, vec![Capability::FourOctetAs(65001)]);
}

#[test]
fn open_many_capabilities_use_rfc9072_encoding_and_round_trip() {
    // 300 bytes of capabilities: several parameters, more than 255 in total.
    let caps: Vec<Capability> = (0..3)
        .map(|i| Capability::Unknown {
            code: 200 + i,
            value: vec![i; 98],
        })
        .collect();
    let msg = Message::Open(Open::new(65001, 90, Ipv4Addr::new(1, 1, 1, 1), caps));
    let mut out = BytesMut::new();
    msg.encode(&two(), &mut out).unwrap();
    // Non-Ext OP Len and Type are 255.
    assert_eq!(&out[28..30], &[0xff, 0xff]);
    assert_eq!(out.len(), msg.encoded_len(&two()));
    assert_eq!(Message::decode(&out, &two()).unwrap(), msg);
}

fn base_attrs() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(vec![AsSegment::Sequence(vec![64522])]),
        next_hop: Some(Ipv4Addr::new(172, 17, 0, 21)),
        ..PathAttributes::default()
    }
}

#[test]
fn update_ipv4_all_classic_attributes_four_octet() {
    let body = "0000 003f
        40 01 01 00
        40 02 06 02 01 0000fc0a
        40 03 04 ac110015
        80 04 04 0000000a
        40 05 04 00000064
        40 06 00
        c0 08 08 fc0a0064 ffffff01
        c0 20 0c 0000fc0a 00000001 00000002
        20 ac11fe01  18 ac11fe";
    let attributes = PathAttributes {
        med: Some(10),
        local_pref: Some(100),
        atomic_aggregate: true,
        communities: vec![(64522 << 16) | 100, 0xffff_ff01],
        large_communities: vec![LargeCommunity {
            global_admin: 64522,
            local1: 1,
            local2: 2,
        }],
        ..base_attrs()
    };
    let u = Update {
        attributes,
        nlri: vec![v4("172.17.254.1/32"), v4("172.17.254.0/24")],
        ..Update::default()
    };
    check(&four(), body, Message::Update(u));
}

#[test]
fn update_two_octet_session_writes_as_trans_and_as4_path() {
    // AS_PATH [64522 4200000001] → AS_PATH [64522 23456] + AS4_PATH [64522 4200000001].
    let body = "0000 0021
        40 01 01 02
        40 02 06 02 02 fc0a 5ba0
        40 03 04 ac110015
        c0 11 0a 02 02 0000fc0a fa56ea01
        20 ac11fe01";
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: Some(vec![AsSegment::Sequence(vec![64522, 4_200_000_001])]),
            ..base_attrs()
        },
        nlri: vec![v4("172.17.254.1/32")],
        ..Update::default()
    };
    check(&two(), body, Message::Update(u));
}

#[test]
fn update_two_octet_session_small_asns_have_no_as4_path() {
    let body = "0000 0012
        40 01 01 00
        40 02 04 02 01 fc0a
        40 03 04 ac110015
        20 ac11fe01";
    let u = Update {
        attributes: base_attrs(),
        nlri: vec![v4("172.17.254.1/32")],
        ..Update::default()
    };
    check(&two(), body, Message::Update(u));
}

#[test]
fn as4_path_merge_when_an_old_speaker_prepended() {
    // An OLD speaker (AS 65000) prepended to AS_PATH but not to AS4_PATH:
    // AS_PATH [65000 64522 23456], AS4_PATH [64522 4200000001] → [65000 64522 4200000001].
    let mut bytes = hx(MARKER);
    let body = hx("0000 0023
        40 01 01 00
        40 02 08 02 03 fde8 fc0a 5ba0
        40 03 04 ac110015
        c0 11 0a 02 02 0000fc0a fa56ea01
        20 ac11fe01");
    bytes.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    bytes.push(2);
    bytes.extend_from_slice(&body);
    let Message::Update(u) = Message::decode(&bytes, &two()).unwrap() else {
        panic!()
    };
    assert_eq!(
        u.attributes.as_path,
        Some(vec![AsSegment::Sequence(vec![65000, 64522, 4_200_000_001])])
    );
    assert!(!u.treat_as_withdraw);
}

#[test]
fn update_withdraw_only() {
    let u = Update {
        withdrawn: vec![v4("172.17.254.1/32"), v4("10.0.0.0/8"), v4("0.0.0.0/0")],
        ..Update::default()
    };
    check(&two(), "0008 20ac11fe01 080a 00 0000", Message::Update(u));
}

#[test]
fn update_ipv6_mp_reach_global_and_link_local() {
    let body = "0000 004b
        40 01 01 00
        40 02 06 02 01 0000fc0a
        80 0e 3b 0002 01 20
            20010db8000000000000000000000015
            fe800000000000000000000000000015
            00
            80 20010db8025400000000000000000001
            20 20010db8";
    let u = Update {
        attributes: PathAttributes {
            next_hop: None,
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hops: vec![
                    IpAddr::V6("2001:db8::15".parse::<Ipv6Addr>().unwrap()),
                    IpAddr::V6("fe80::15".parse::<Ipv6Addr>().unwrap()),
                ],
                nlri: vec![net("2001:db8:254::1/128"), net("2001:db8::/32")],
            }),
            ..base_attrs()
        },
        ..Update::default()
    };
    check(&four(), body, Message::Update(u));
}

#[test]
fn update_ipv6_mp_unreach() {
    let body = "0000 0017 80 0f 14 0002 01 80 20010db8025400000000000000000002";
    let u = Update {
        attributes: PathAttributes {
            mp_unreach: Some(MpUnreach {
                family: Family::IPV6_UNICAST,
                withdrawn: vec![net("2001:db8:254::2/128")],
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    check(&four(), body, Message::Update(u));
}

#[test]
fn end_of_rib_markers() {
    let eor4 = Update::end_of_rib(Family::IPV4_UNICAST);
    check(&two(), "0000 0000", Message::Update(eor4.clone()));
    assert_eq!(eor4.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    let eor6 = Update::end_of_rib(Family::IPV6_UNICAST);
    check(
        &two(),
        "0000 0006 80 0f 03 0002 01",
        Message::Update(eor6.clone()),
    );
    assert_eq!(eor6.end_of_rib_family(), Some(Family::IPV6_UNICAST));
    let not_eor = Update {
        withdrawn: vec![v4("10.0.0.0/8")],
        ..Update::default()
    };
    assert_eq!(not_eor.end_of_rib_family(), None);
    let not_eor = Update {
        attributes: base_attrs(),
        ..Update::default()
    };
    assert_eq!(not_eor.end_of_rib_family(), None);
}

#[test]
fn extended_length_flag_above_255_bytes() {
    // 70 communities = 280 bytes → flags 0xd0 and a 2-octet length 0x0118.
    let communities: Vec<u32> = (0..70).map(|i| (64522 << 16) | i).collect();
    let mut body =
        String::from("0000 0130 40 01 01 00 40 02 06 02 01 0000fc0a 40 03 04 ac110015 d0 08 0118");
    for c in &communities {
        body.push_str(&format!("{c:08x}"));
    }
    body.push_str("20 ac11fe01");
    let u = Update {
        attributes: PathAttributes {
            communities,
            ..base_attrs()
        },
        nlri: vec![v4("172.17.254.1/32")],
        ..Update::default()
    };
    check(&four(), &body, Message::Update(u));
}

#[test]
fn raw_attributes_sorted_into_type_code_order() {
    // AGGREGATOR (7) between ATOMIC_AGGREGATE and COMMUNITIES, an unknown
    // optional transitive (99, partial) after LARGE_COMMUNITY... none here, at the end.
    let body = "0000 0025
        40 01 01 00
        40 02 06 02 01 0000fc0a
        40 03 04 ac110015
        c0 07 08 0000fc0a ac110015
        e0 63 03 010203
        20 ac11fe01";
    let u = Update {
        attributes: PathAttributes {
            other: vec![
                RawAttribute {
                    flags: 0xc0,
                    type_code: 7,
                    value: hx("0000fc0a ac110015"),
                },
                RawAttribute {
                    flags: 0xe0,
                    type_code: 99,
                    value: hx("010203"),
                },
            ],
            ..base_attrs()
        },
        nlri: vec![v4("172.17.254.1/32")],
        ..Update::default()
    };
    check(&four(), body, Message::Update(u));
}

#[test]
fn notification_plain_and_with_data() {
    check(
        &two(),
        "02 02",
        Message::Notification(Notification::new(2, 2)),
    );
    check(
        &two(),
        "01 02 0005",
        Message::Notification(Notification {
            code: 1,
            subcode: 2,
            data: vec![0, 5],
        }),
    );
}

#[test]
fn notification_shutdown_communication() {
    let n = Notification::cease(subcode::ADMINISTRATIVE_SHUTDOWN, Some("bye"));
    check(&two(), "06 02 03 627965", Message::Notification(n.clone()));
    assert_eq!(n.shutdown_message().as_deref(), Some("bye"));
    assert_eq!(n.to_string(), "Cease / Administrative Shutdown: \"bye\"");
    let reset = Notification::cease(subcode::ADMINISTRATIVE_RESET, None);
    check(&two(), "06 04", Message::Notification(reset.clone()));
    assert_eq!(reset.shutdown_message(), None);
}

#[test]
fn shutdown_message_truncated_on_char_boundary() {
    // 127 × "é" (2 bytes) + "x" = 255 bytes fits; 128 × "é" = 256 bytes is cut to 254.
    let s: String = std::iter::repeat_n('é', 128).collect();
    let n = Notification::cease(subcode::ADMINISTRATIVE_SHUTDOWN, Some(&s));
    assert_eq!(n.data[0], 254);
    assert_eq!(n.data.len(), 255);
    assert_eq!(n.shutdown_message().unwrap().chars().count(), 127);
    let s = format!("{}x", "é".repeat(127));
    let n = Notification::cease(subcode::ADMINISTRATIVE_SHUTDOWN, Some(&s));
    assert_eq!(n.data[0], 255);
    assert_eq!(n.shutdown_message().as_deref(), Some(s.as_str()));
    // Other Cease subcodes carry no message.
    assert!(
        Notification::cease(subcode::PEER_DECONFIGURED, Some("x"))
            .data
            .is_empty()
    );
}

#[test]
fn notification_names() {
    assert_eq!(
        Notification::new(2, 2).to_string(),
        "OPEN Message Error / Bad Peer AS"
    );
    assert_eq!(
        Notification::new(3, 11).to_string(),
        "UPDATE Message Error / Malformed AS_PATH"
    );
    assert_eq!(
        Notification::new(1, 1).to_string(),
        "Message Header Error / Connection Not Synchronized"
    );
    assert_eq!(
        Notification::new(4, 0).to_string(),
        "Hold Timer Expired / Unspecific"
    );
    assert_eq!(
        Notification::new(5, 3).to_string(),
        "Finite State Machine Error / Receive Unexpected Message in Established State"
    );
    assert_eq!(
        Notification::new(7, 1).to_string(),
        "ROUTE-REFRESH Message Error / Invalid Message Length"
    );
    assert_eq!(Notification::new(42, 9).to_string(), "code 42 / subcode 9");
    for (c, s) in [
        (1, 3),
        (2, 1),
        (2, 3),
        (2, 4),
        (2, 6),
        (2, 7),
        (3, 1),
        (3, 2),
        (3, 3),
        (3, 4),
        (3, 5),
        (3, 6),
        (3, 8),
        (3, 9),
        (3, 10),
        (6, 1),
        (6, 3),
        (6, 5),
        (6, 6),
        (6, 7),
        (6, 8),
        (6, 9),
    ] {
        assert!(subcode_name(c, s).is_some(), "{c}/{s}");
    }
}

#[test]
fn route_refresh_normal_and_borr() {
    check(
        &two(),
        "0001 00 01",
        Message::RouteRefresh(RouteRefresh {
            family: Family::IPV4_UNICAST,
            subtype: 0,
        }),
    );
    check(
        &two(),
        "0002 01 01",
        Message::RouteRefresh(RouteRefresh {
            family: Family::IPV6_UNICAST,
            subtype: 1,
        }),
    );
}

#[test]
fn size_helpers() {
    assert_eq!(nlri_wire_len(32), 5);
    assert_eq!(nlri_wire_len(24), 4);
    assert_eq!(nlri_wire_len(25), 5);
    assert_eq!(nlri_wire_len(0), 1);
    assert_eq!(nlri_wire_len(128), 17);
    assert_eq!(nlri_wire_len(64), 9);
    let attrs = PathAttributes {
        communities: vec![1, 2],
        ..base_attrs()
    };
    // 4 (ORIGIN) + 9 (AS_PATH 4-octet) + 7 (NEXT_HOP) + 11 (COMMUNITIES)
    assert_eq!(attrs.encoded_len(&four()), 31);
    // 2-octet AS_PATH is 2 bytes shorter.
    assert_eq!(attrs.encoded_len(&two()), 29);
}

#[test]
fn too_long_is_an_encode_error_and_writes_nothing() {
    let nlri: Vec<_> = (0..1000u32)
        .map(|i| ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap())
        .collect();
    let u = Message::Update(Update {
        attributes: base_attrs(),
        nlri,
        ..Update::default()
    });
    let mut out = BytesMut::from(&b"keep"[..]);
    let err = u.encode(&four(), &mut out).unwrap_err();
    assert!(
        matches!(err, EncodeError::TooLong { max: 4096, .. }),
        "{err:?}"
    );
    assert_eq!(&out[..], b"keep");
    // With the extended message capability it fits.
    let ext = Negotiated {
        extended_message: true,
        ..four()
    };
    u.encode(&ext, &mut out).unwrap();
    assert_eq!(out.len() - 4, u.encoded_len(&ext));
}
