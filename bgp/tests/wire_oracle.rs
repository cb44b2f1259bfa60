//! netgauze-bgp-pkt 0.13 (an independent Apache-2.0 implementation) as an
//! oracle: messages we encode are parsed by netgauze and compared field by
//! field; messages netgauze encodes are decoded by us and compared; and for
//! the same content both encoders must produce the same bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use ferrolb_bgp::wire::*;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netgauze_bgp_pkt as ng;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use proptest::prelude::*;

use ng::capabilities as ngc;
use ng::nlri as ngn;
use ng::path_attribute as ngp;

fn ctx(four: bool) -> Negotiated {
    Negotiated {
        four_octet_as: four,
        ..Negotiated::default()
    }
}

fn ng_parse(bytes: &[u8], four: bool) -> ng::BgpMessage {
    let mut pctx = BgpParsingContext::default();
    pctx.set_asn4(four);
    ng::BgpMessage::parse(&mut SliceReader::new(bytes), &mut pctx)
        .expect("netgauze parses our bytes")
}

fn ng_write(m: &ng::BgpMessage) -> Vec<u8> {
    let mut buf = Vec::new();
    m.write(&mut buf).expect("netgauze writes");
    buf
}

fn ours(m: &Message, four: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(&ctx(four), &mut out).unwrap();
    out.to_vec()
}

// --- our types → netgauze ---------------------------------------------------

fn address_type(f: Family) -> AddressType {
    match f {
        Family::IPV4_UNICAST => AddressType::Ipv4Unicast,
        Family::IPV6_UNICAST => AddressType::Ipv6Unicast,
        f => panic!("no oracle for {f:?}"),
    }
}

fn ng_v4(n: &Ipv4Net) -> ngn::Ipv4UnicastAddress {
    ngn::Ipv4UnicastAddress::new_no_path_id(ngn::Ipv4Unicast::from_net(*n).unwrap())
}

fn ng_v6(n: &Ipv6Net) -> ngn::Ipv6UnicastAddress {
    ngn::Ipv6UnicastAddress::new(None, ngn::Ipv6Unicast::from_net(*n).unwrap())
}

fn cap_to_ng(c: &Capability) -> ngc::BgpCapability {
    match c {
        Capability::Multiprotocol(f) => ngc::BgpCapability::MultiProtocolExtensions(
            ngc::MultiProtocolExtensionsCapability::new(address_type(*f)),
        ),
        Capability::RouteRefresh => ngc::BgpCapability::RouteRefresh,
        Capability::EnhancedRouteRefresh => ngc::BgpCapability::EnhancedRouteRefresh,
        Capability::ExtendedMessage => ngc::BgpCapability::ExtendedMessage,
        Capability::FourOctetAs(a) => {
            ngc::BgpCapability::FourOctetAs(ngc::FourOctetAsCapability::new(*a))
        }
        Capability::GracefulRestart(g) => {
            ngc::BgpCapability::GracefulRestartCapability(ngc::GracefulRestartCapability::new(
                g.restart_state,
                g.notification,
                g.restart_time,
                g.families
                    .iter()
                    .map(|(f, fwd)| ngc::GracefulRestartAddressFamily::new(*fwd, address_type(*f)))
                    .collect::<Vec<_>>(),
            ))
        }
        c => panic!("no oracle for {c:?}"),
    }
}

fn seg_to_ng(s: &AsSegment, four: bool) -> (ngp::AsPathSegmentType, Vec<u32>) {
    let _ = four;
    match s {
        AsSegment::Set(v) => (ngp::AsPathSegmentType::AsSet, v.clone()),
        AsSegment::Sequence(v) => (ngp::AsPathSegmentType::AsSequence, v.clone()),
        s => panic!("netgauze has no confederation segments: {s:?}"),
    }
}

fn attr(
    optional: bool,
    transitive: bool,
    value: ngp::PathAttributeValue,
    len: usize,
) -> ngp::PathAttribute {
    ngp::PathAttribute::from(optional, transitive, false, len > 255, value).unwrap()
}

/// Build the netgauze UPDATE with the same attributes in the same (type-code) order.
fn update_to_ng(u: &Update, four: bool) -> ng::update::BgpUpdateMessage {
    let a = &u.attributes;
    let mut attrs = Vec::new();
    if let Some(o) = a.origin {
        let o = match o {
            Origin::Igp => ngp::Origin::IGP,
            Origin::Egp => ngp::Origin::EGP,
            Origin::Incomplete => ngp::Origin::Incomplete,
        };
        attrs.push(attr(false, true, ngp::PathAttributeValue::Origin(o), 1));
    }
    let mut as4 = None;
    if let Some(p) = &a.as_path {
        let segs: Vec<_> = p.iter().map(|s| seg_to_ng(s, four)).collect();
        let len: usize = segs
            .iter()
            .map(|(_, v)| 2 + v.len() * if four { 4 } else { 2 })
            .sum();
        let value = if four {
            ngp::AsPath::As4PathSegments(
                segs.iter()
                    .map(|(t, v)| ngp::As4PathSegment::new(*t, v.clone()))
                    .collect(),
            )
        } else {
            if segs.iter().any(|(_, v)| v.iter().any(|&x| x > 0xffff)) {
                as4 = Some(segs.clone());
            }
            ngp::AsPath::As2PathSegments(
                segs.iter()
                    .map(|(t, v)| {
                        ngp::As2PathSegment::new(
                            *t,
                            v.iter()
                                .map(|&x| u16::try_from(x).unwrap_or(AS_TRANS))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect(),
            )
        };
        attrs.push(attr(
            false,
            true,
            ngp::PathAttributeValue::AsPath(value),
            len,
        ));
    }
    if let Some(nh) = a.next_hop {
        attrs.push(attr(
            false,
            true,
            ngp::PathAttributeValue::NextHop(ngp::NextHop::new(nh)),
            4,
        ));
    }
    if let Some(m) = a.med {
        attrs.push(attr(
            true,
            false,
            ngp::PathAttributeValue::MultiExitDiscriminator(ngp::MultiExitDiscriminator::new(m)),
            4,
        ));
    }
    if let Some(lp) = a.local_pref {
        attrs.push(attr(
            false,
            true,
            ngp::PathAttributeValue::LocalPreference(ngp::LocalPreference::new(lp)),
            4,
        ));
    }
    if a.atomic_aggregate {
        attrs.push(attr(
            false,
            true,
            ngp::PathAttributeValue::AtomicAggregate(ngp::AtomicAggregate),
            0,
        ));
    }
    if !a.communities.is_empty() {
        let c: Vec<_> = a
            .communities
            .iter()
            .map(|&v| ng::community::Community::new(v))
            .collect();
        attrs.push(attr(
            true,
            true,
            ngp::PathAttributeValue::Communities(ngp::Communities::new(c)),
            4 * a.communities.len(),
        ));
    }
    if let Some(m) = &a.mp_reach {
        let len = 5
            + m.next_hops.len() * 16
            + m.nlri
                .iter()
                .map(|n| nlri_wire_len(n.prefix_len()))
                .sum::<usize>();
        let value = match m.family {
            Family::IPV4_UNICAST => ngp::MpReach::Ipv4Unicast {
                next_hop: m.next_hops[0],
                next_hop_local: None,
                nlri: m
                    .nlri
                    .iter()
                    .map(|n| match n {
                        IpNet::V4(n) => ng_v4(n),
                        _ => unreachable!(),
                    })
                    .collect(),
            },
            _ => ngp::MpReach::Ipv6Unicast {
                next_hop_global: match m.next_hops[0] {
                    IpAddr::V6(a) => a,
                    _ => unreachable!(),
                },
                next_hop_local: m.next_hops.get(1).map(|a| match a {
                    IpAddr::V6(a) => *a,
                    _ => unreachable!(),
                }),
                nlri: m
                    .nlri
                    .iter()
                    .map(|n| match n {
                        IpNet::V6(n) => ng_v6(n),
                        _ => unreachable!(),
                    })
                    .collect(),
            },
        };
        let len = if m.family == Family::IPV4_UNICAST {
            len - 12
        } else {
            len
        };
        attrs.push(attr(
            true,
            false,
            ngp::PathAttributeValue::MpReach(value),
            len,
        ));
    }
    if let Some(m) = &a.mp_unreach {
        let len = 3 + m
            .withdrawn
            .iter()
            .map(|n| nlri_wire_len(n.prefix_len()))
            .sum::<usize>();
        let value = match m.family {
            Family::IPV4_UNICAST => ngp::MpUnreach::Ipv4Unicast {
                nlri: m
                    .withdrawn
                    .iter()
                    .map(|n| match n {
                        IpNet::V4(n) => ng_v4(n),
                        _ => unreachable!(),
                    })
                    .collect(),
            },
            _ => ngp::MpUnreach::Ipv6Unicast {
                nlri: m
                    .withdrawn
                    .iter()
                    .map(|n| match n {
                        IpNet::V6(n) => ng_v6(n),
                        _ => unreachable!(),
                    })
                    .collect(),
            },
        };
        attrs.push(attr(
            true,
            false,
            ngp::PathAttributeValue::MpUnreach(value),
            len,
        ));
    }
    if let Some(segs) = as4 {
        let len: usize = segs.iter().map(|(_, v)| 2 + v.len() * 4).sum();
        let p = ngp::As4Path::new(
            segs.iter()
                .map(|(t, v)| ngp::As4PathSegment::new(*t, v.clone()))
                .collect::<Vec<_>>(),
        );
        attrs.push(attr(true, true, ngp::PathAttributeValue::As4Path(p), len));
    }
    if !a.large_communities.is_empty() {
        let c: Vec<_> = a
            .large_communities
            .iter()
            .map(|l| ng::community::LargeCommunity::new(l.global_admin, l.local1, l.local2))
            .collect();
        attrs.push(attr(
            true,
            true,
            ngp::PathAttributeValue::LargeCommunities(ngp::LargeCommunities::new(c)),
            12 * a.large_communities.len(),
        ));
    }
    ng::update::BgpUpdateMessage::new(
        u.withdrawn.iter().map(ng_v4).collect::<Vec<_>>(),
        attrs,
        u.nlri.iter().map(ng_v4).collect::<Vec<_>>(),
    )
}

fn to_ng(m: &Message, four: bool) -> ng::BgpMessage {
    match m {
        Message::Open(o) => ng::BgpMessage::Open(ng::open::BgpOpenMessage::new(
            o.my_as_field,
            o.hold_time,
            o.router_id,
            vec![ng::open::BgpOpenMessageParameter::new_capabilities(
                o.capabilities.iter().map(cap_to_ng).collect::<Vec<_>>(),
            )],
        )),
        Message::Update(u) => ng::BgpMessage::Update(update_to_ng(u, four)),
        Message::Keepalive => ng::BgpMessage::KeepAlive,
        Message::RouteRefresh(r) => {
            ng::BgpMessage::RouteRefresh(ng::route_refresh::BgpRouteRefreshMessage::new(
                address_type(r.family),
                match r.subtype {
                    0 => ng::iana::RouteRefreshSubcode::NormalRequest,
                    1 => ng::iana::RouteRefreshSubcode::BeginningOfRouteRefresh,
                    _ => ng::iana::RouteRefreshSubcode::EndOfRouteRefresh,
                },
            ))
        }
        Message::Notification(n) => {
            use ng::notification::*;
            let value = n.data.clone().into_boxed_slice();
            ng::BgpMessage::Notification(match (n.code, n.subcode) {
                (6, 2) => {
                    BgpNotificationMessage::CeaseError(CeaseError::AdministrativeShutdown { value })
                }
                (6, 4) => {
                    BgpNotificationMessage::CeaseError(CeaseError::AdministrativeReset { value })
                }
                (2, 2) => {
                    BgpNotificationMessage::OpenMessageError(OpenMessageError::BadPeerAs { value })
                }
                (3, 1) => BgpNotificationMessage::UpdateMessageError(
                    UpdateMessageError::MalformedAttributeList { value },
                ),
                (4, s) => BgpNotificationMessage::HoldTimerExpiredError(
                    HoldTimerExpiredError::Unspecific { sub_code: s, value },
                ),
                c => panic!("no oracle for notification {c:?}"),
            })
        }
    }
}

// --- netgauze → our types (field comparison) -------------------------------

fn family_from(t: AddressType) -> Family {
    match t {
        AddressType::Ipv4Unicast => Family::IPV4_UNICAST,
        AddressType::Ipv6Unicast => Family::IPV6_UNICAST,
        t => panic!("unexpected {t:?}"),
    }
}

fn from_ng(m: &ng::BgpMessage, four: bool) -> Message {
    match m {
        ng::BgpMessage::KeepAlive => Message::Keepalive,
        ng::BgpMessage::Open(o) => Message::Open(Open {
            version: o.version(),
            my_as_field: o.my_as(),
            hold_time: o.hold_time(),
            router_id: o.bgp_id(),
            capabilities: o
                .capabilities()
                .into_iter()
                .map(|c| match c {
                    ngc::BgpCapability::MultiProtocolExtensions(m) => {
                        Capability::Multiprotocol(family_from(m.address_type()))
                    }
                    ngc::BgpCapability::RouteRefresh => Capability::RouteRefresh,
                    ngc::BgpCapability::EnhancedRouteRefresh => Capability::EnhancedRouteRefresh,
                    ngc::BgpCapability::ExtendedMessage => Capability::ExtendedMessage,
                    ngc::BgpCapability::FourOctetAs(a) => Capability::FourOctetAs(a.asn4()),
                    ngc::BgpCapability::GracefulRestartCapability(g) => {
                        Capability::GracefulRestart(GracefulRestart {
                            restart_state: g.restart(),
                            notification: g.graceful_notification(),
                            restart_time: g.time(),
                            families: g
                                .address_families()
                                .iter()
                                .map(|f| (family_from(f.address_type()), f.forwarding_state()))
                                .collect(),
                        })
                    }
                    c => panic!("unexpected {c:?}"),
                })
                .collect(),
        }),
        ng::BgpMessage::Update(u) => Message::Update(update_from_ng(u, four)),
        ng::BgpMessage::RouteRefresh(r) => Message::RouteRefresh(RouteRefresh {
            family: family_from(r.address_type()),
            subtype: u8::from(r.operation_type()),
        }),
        ng::BgpMessage::Notification(n) => {
            use ng::notification::*;
            let (code, subcode, data) = match n {
                BgpNotificationMessage::CeaseError(CeaseError::AdministrativeShutdown {
                    value,
                }) => (6, 2, value),
                BgpNotificationMessage::CeaseError(CeaseError::AdministrativeReset { value }) => {
                    (6, 4, value)
                }
                BgpNotificationMessage::OpenMessageError(OpenMessageError::BadPeerAs { value }) => {
                    (2, 2, value)
                }
                BgpNotificationMessage::UpdateMessageError(
                    UpdateMessageError::MalformedAttributeList { value },
                ) => (3, 1, value),
                BgpNotificationMessage::HoldTimerExpiredError(
                    HoldTimerExpiredError::Unspecific { sub_code, value },
                ) => (4, *sub_code, value),
                n => panic!("unexpected {n:?}"),
            };
            Message::Notification(Notification {
                code,
                subcode,
                data: data.to_vec(),
            })
        }
    }
}

fn seg_from(t: ngp::AsPathSegmentType, v: Vec<u32>) -> AsSegment {
    match t {
        ngp::AsPathSegmentType::AsSet => AsSegment::Set(v),
        ngp::AsPathSegmentType::AsSequence => AsSegment::Sequence(v),
    }
}

fn update_from_ng(u: &ng::update::BgpUpdateMessage, four: bool) -> Update {
    let mut a = PathAttributes::default();
    let mut as4 = None;
    for pa in u.path_attributes() {
        match pa.value() {
            ngp::PathAttributeValue::Origin(o) => {
                a.origin = Some(match o {
                    ngp::Origin::IGP => Origin::Igp,
                    ngp::Origin::EGP => Origin::Egp,
                    ngp::Origin::Incomplete => Origin::Incomplete,
                })
            }
            ngp::PathAttributeValue::AsPath(p) => {
                a.as_path = Some(match p {
                    ngp::AsPath::As2PathSegments(s) => {
                        assert!(!four);
                        s.iter()
                            .map(|s| {
                                seg_from(
                                    s.segment_type(),
                                    s.as_numbers().iter().map(|&x| u32::from(x)).collect(),
                                )
                            })
                            .collect()
                    }
                    ngp::AsPath::As4PathSegments(s) => {
                        assert!(four);
                        s.iter()
                            .map(|s| seg_from(s.segment_type(), s.as_numbers().to_vec()))
                            .collect()
                    }
                })
            }
            ngp::PathAttributeValue::As4Path(p) => {
                as4 = Some(
                    p.segments()
                        .iter()
                        .map(|s| seg_from(s.segment_type(), s.as_numbers().to_vec()))
                        .collect::<Vec<_>>(),
                )
            }
            ngp::PathAttributeValue::NextHop(n) => a.next_hop = Some(n.next_hop()),
            ngp::PathAttributeValue::MultiExitDiscriminator(m) => a.med = Some(m.metric()),
            ngp::PathAttributeValue::LocalPreference(m) => a.local_pref = Some(m.metric()),
            ngp::PathAttributeValue::AtomicAggregate(_) => a.atomic_aggregate = true,
            ngp::PathAttributeValue::Communities(c) => {
                a.communities = c.communities().iter().map(|c| c.value()).collect()
            }
            ngp::PathAttributeValue::LargeCommunities(c) => {
                a.large_communities = c
                    .communities()
                    .iter()
                    .map(|c| LargeCommunity {
                        global_admin: c.global_admin(),
                        local1: c.local_data1(),
                        local2: c.local_data2(),
                    })
                    .collect()
            }
            ngp::PathAttributeValue::MpReach(ngp::MpReach::Ipv4Unicast {
                next_hop, nlri, ..
            }) => {
                a.mp_reach = Some(MpReach {
                    family: Family::IPV4_UNICAST,
                    next_hops: vec![*next_hop],
                    nlri: nlri
                        .iter()
                        .map(|n| IpNet::V4(n.network().address()))
                        .collect(),
                })
            }
            ngp::PathAttributeValue::MpReach(ngp::MpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                nlri,
            }) => {
                let mut next_hops = vec![IpAddr::V6(*next_hop_global)];
                next_hops.extend(next_hop_local.map(IpAddr::V6));
                a.mp_reach = Some(MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hops,
                    nlri: nlri
                        .iter()
                        .map(|n| IpNet::V6(n.network().address()))
                        .collect(),
                })
            }
            ngp::PathAttributeValue::MpUnreach(ngp::MpUnreach::Ipv4Unicast { nlri }) => {
                a.mp_unreach = Some(MpUnreach {
                    family: Family::IPV4_UNICAST,
                    withdrawn: nlri
                        .iter()
                        .map(|n| IpNet::V4(n.network().address()))
                        .collect(),
                })
            }
            ngp::PathAttributeValue::MpUnreach(ngp::MpUnreach::Ipv6Unicast { nlri }) => {
                a.mp_unreach = Some(MpUnreach {
                    family: Family::IPV6_UNICAST,
                    withdrawn: nlri
                        .iter()
                        .map(|n| IpNet::V6(n.network().address()))
                        .collect(),
                })
            }
            v => panic!("unexpected attribute {v:?}"),
        }
    }
    if let Some(as4) = as4 {
        // We only send AS4_PATH with the whole path, so it replaces AS_PATH.
        a.as_path = Some(as4);
    }
    Update {
        withdrawn: u
            .withdraw_routes()
            .iter()
            .map(|n| n.network().address())
            .collect(),
        attributes: a,
        nlri: u.nlri().iter().map(|n| n.network().address()).collect(),
        ..Update::default()
    }
}

// --- the checks --------------------------------------------------------------

/// Ours → netgauze (fields), netgauze → ours, and byte equality.
fn oracle(m: &Message, four: bool) {
    let our_bytes = ours(m, four);
    let parsed = ng_parse(&our_bytes, four);
    assert_eq!(
        &from_ng(&parsed, four),
        m,
        "netgauze reads our bytes differently"
    );
    let ng_msg = to_ng(m, four);
    let ng_bytes = ng_write(&ng_msg);
    assert_eq!(
        hex(&ng_bytes),
        hex(&our_bytes),
        "encodings differ for {m:?}"
    );
    assert_eq!(
        &Message::decode(&ng_bytes, &ctx(four)).unwrap(),
        m,
        "we read netgauze's bytes differently"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn v4(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn base() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(vec![AsSegment::Sequence(vec![64522])]),
        next_hop: Some(Ipv4Addr::new(172, 17, 0, 21)),
        ..PathAttributes::default()
    }
}

fn fixed_messages() -> Vec<Message> {
    let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
    vec![
        Message::Keepalive,
        Message::Open(Open::new(
            64522,
            90,
            Ipv4Addr::new(172, 17, 0, 21),
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Multiprotocol(Family::IPV6_UNICAST),
                Capability::RouteRefresh,
                Capability::EnhancedRouteRefresh,
                Capability::ExtendedMessage,
                Capability::FourOctetAs(64522),
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: true,
                    notification: false,
                    restart_time: 120,
                    families: vec![(Family::IPV4_UNICAST, true), (Family::IPV6_UNICAST, false)],
                }),
            ],
        )),
        Message::Open(Open::new(
            4_200_000_001,
            180,
            Ipv4Addr::new(10, 0, 0, 1),
            vec![Capability::FourOctetAs(4_200_000_001)],
        )),
        Message::Update(Update {
            attributes: PathAttributes {
                med: Some(10),
                local_pref: Some(200),
                atomic_aggregate: true,
                communities: vec![(64512 << 16) | 100, 0xffff_ff01],
                large_communities: vec![LargeCommunity {
                    global_admin: 4_200_000_001,
                    local1: 1,
                    local2: 1,
                }],
                ..base()
            },
            nlri: (1..=50)
                .map(|i| v4(&format!("172.17.254.{i}/32")))
                .collect(),
            ..Update::default()
        }),
        Message::Update(Update {
            withdrawn: vec![v4("172.17.254.3/32"), v4("10.0.0.0/8")],
            ..Update::default()
        }),
        Message::Update(Update {
            attributes: PathAttributes {
                next_hop: None,
                mp_reach: Some(MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hops: vec![v6("2001:db8:ff::3"), v6("fe80::1")],
                    nlri: vec![
                        "2001:db8:254::10/128".parse().unwrap(),
                        "2001:db8::/32".parse().unwrap(),
                    ],
                }),
                ..base()
            },
            ..Update::default()
        }),
        Message::Update(Update {
            attributes: PathAttributes {
                mp_unreach: Some(MpUnreach {
                    family: Family::IPV6_UNICAST,
                    withdrawn: vec!["2001:db8:254::2/128".parse().unwrap()],
                }),
                ..PathAttributes::default()
            },
            ..Update::default()
        }),
        Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)),
        Message::Update(Update::end_of_rib(Family::IPV6_UNICAST)),
        Message::Update(Update {
            // > 255 bytes of communities: Extended Length.
            attributes: PathAttributes {
                communities: (0..100).collect(),
                ..base()
            },
            nlri: vec![v4("172.17.254.1/32")],
            ..Update::default()
        }),
        Message::Notification(Notification::cease(2, Some("maintenance window"))),
        Message::Notification(Notification::cease(4, None)),
        Message::Notification(Notification::new(2, 2)),
        Message::Notification(Notification::new(4, 0)),
        Message::RouteRefresh(RouteRefresh {
            family: Family::IPV4_UNICAST,
            subtype: 0,
        }),
        Message::RouteRefresh(RouteRefresh {
            family: Family::IPV6_UNICAST,
            subtype: 2,
        }),
    ]
}

#[test]
fn fixed_set_four_octet() {
    for m in fixed_messages() {
        oracle(&m, true);
    }
}

#[test]
fn fixed_set_two_octet() {
    for m in fixed_messages() {
        oracle(&m, false);
    }
}

#[test]
fn as_trans_and_as4_path_two_octet() {
    let m = Message::Update(Update {
        attributes: PathAttributes {
            as_path: Some(vec![
                AsSegment::Sequence(vec![64522, 4_200_000_001, 65000]),
                AsSegment::Set(vec![4_200_000_002, 7]),
            ]),
            ..base()
        },
        nlri: vec![v4("172.17.254.1/32")],
        ..Update::default()
    });
    oracle(&m, false);
    oracle(&m, true);
    // netgauze sees AS_TRANS in AS_PATH.
    let ng_msg = ng_parse(&ours(&m, false), false);
    let ng::BgpMessage::Update(u) = ng_msg else {
        panic!()
    };
    let as_path = u
        .path_attributes()
        .iter()
        .find_map(|a| match a.value() {
            ngp::PathAttributeValue::AsPath(ngp::AsPath::As2PathSegments(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(as_path[0].as_numbers(), &[64522, AS_TRANS, 65000]);
}

fn arb_update() -> impl Strategy<Value = Update> {
    let net = (any::<u32>(), 0u8..=32)
        .prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc());
    (
        prop::collection::vec(net.clone(), 0..30),
        prop::collection::vec(net, 1..30),
        prop::collection::vec(prop_oneof![1u32..=65535, any::<u32>()], 1..10),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::collection::vec(any::<u32>(), 0..80),
        prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..4),
        1u32..0xe000_0000,
    )
        .prop_map(
            |(withdrawn, nlri, path, med, local_pref, communities, large, nh)| Update {
                withdrawn,
                attributes: PathAttributes {
                    origin: Some(Origin::Egp),
                    as_path: Some(vec![AsSegment::Sequence(path)]),
                    next_hop: Some(Ipv4Addr::from(nh)),
                    med,
                    local_pref,
                    communities,
                    large_communities: large
                        .into_iter()
                        .map(|(g, a, b)| LargeCommunity {
                            global_admin: g,
                            local1: a,
                            local2: b,
                        })
                        .collect(),
                    ..PathAttributes::default()
                },
                nlri,
                ..Update::default()
            },
        )
        .prop_filter("netgauze rejects multicast-range unicast prefixes", |u| {
            u.nlri
                .iter()
                .chain(&u.withdrawn)
                .all(|n| ngn::Ipv4Unicast::from_net(*n).is_ok())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_updates_agree(u in arb_update(), four in any::<bool>()) {
        oracle(&Message::Update(u), four);
    }
}
