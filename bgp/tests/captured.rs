//! Messages captured from real gobgpd 3.10 and FRR 8.4.4 (see
//! `tests/data/captured/README.md`): decode each, check the fields the README
//! lists, and re-encode. Our canonical encoding is byte-identical to gobgpd's
//! for every captured message. It differs from FRR's in two documented ways:
//! - FRR puts each capability in its own optional parameter; we put all of
//!   them in one (RFC 5492 allows both).
//! - FRR sets the Extended Length flag on AS_PATH (0x50) and MP_REACH_NLRI
//!   (0x90) even for short values, and sends MP_REACH_NLRI first; we set
//!   Extended Length only above 255 bytes and write attributes in type-code
//!   order (RFC 4271 §5 recommends ascending order).
//!
//! For those, the re-encoding must decode back to the same message.

use std::net::{IpAddr, Ipv4Addr};

use bytes::BytesMut;
use ferrolb_bgp::wire::*;

fn hx(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

macro_rules! capture {
    ($name:literal) => {
        hx(include_str!(concat!("data/captured/", $name, ".hex")))
    };
}

/// A capture's bytes and its decoding, after checking its length.
macro_rules! decoded {
    ($name:literal, $len:expr) => {{
        let bytes = capture!($name);
        let m = decode_len(&bytes, $len);
        (bytes, m)
    }};
}

/// Every captured session negotiated the 4-octet AS capability.
fn neg() -> Negotiated {
    Negotiated {
        four_octet_as: true,
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        ..Negotiated::default()
    }
}

fn decode(bytes: &[u8]) -> Message {
    assert_eq!(frame_len(bytes, 4096), Ok(Some(bytes.len())));
    Message::decode(bytes, &neg()).expect("decodes")
}

fn encode(m: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(&neg(), &mut out).unwrap();
    assert_eq!(out.len(), m.encoded_len(&neg()));
    out.to_vec()
}

/// Re-encoding gives exactly the captured bytes.
fn byte_exact(bytes: &[u8], m: &Message) {
    assert_eq!(encode(m), bytes);
}

/// Re-encoding differs from the capture but decodes to the same message.
fn same_meaning(bytes: &[u8], m: &Message) {
    let ours = encode(m);
    assert_ne!(ours, bytes);
    assert_eq!(&Message::decode(&ours, &neg()).unwrap(), m);
}

fn open(m: &Message) -> &Open {
    match m {
        Message::Open(o) => o,
        m => panic!("not an OPEN: {m:?}"),
    }
}

fn update(m: &Message) -> &Update {
    match m {
        Message::Update(u) => u,
        m => panic!("not an UPDATE: {m:?}"),
    }
}

fn v4(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

fn comm(asn: u32, v: u32) -> u32 {
    (asn << 16) | v
}

fn large(g: u32, a: u32, b: u32) -> LargeCommunity {
    LargeCommunity {
        global_admin: g,
        local1: a,
        local2: b,
    }
}

fn check_clean(u: &Update) {
    assert!(!u.treat_as_withdraw);
    assert!(u.discarded.is_empty());
}

/// Checks a capture's length, then decodes it.
fn decode_len(bytes: &[u8], len: usize) -> Message {
    assert_eq!(bytes.len(), len);
    decode(bytes)
}

/// Capability codes of an OPEN, in the order they were sent.
fn capability_codes(o: &Open) -> Vec<u8> {
    o.capabilities.iter().map(Capability::code).collect()
}

/// AS_PATH of one AS_SEQUENCE segment holding `asn`.
fn seq(asn: u32) -> Vec<AsSegment> {
    vec![AsSegment::Sequence(vec![asn])]
}

/// The path attributes checked on every captured announcement.
struct Route {
    origin: Origin,
    as_path: Vec<AsSegment>,
    communities: Vec<u32>,
    large: Vec<LargeCommunity>,
}

impl Route {
    /// gobgpd's tagged routes: communities 64512:100, 64512:200, large 4200000001:1:1.
    fn gobgpd_tagged(origin: Origin, as_path: Vec<AsSegment>) -> Self {
        Route {
            origin,
            as_path,
            communities: vec![comm(64512, 100), comm(64512, 200)],
            large: vec![large(4_200_000_001, 1, 1)],
        }
    }

    /// gobgpd's 172.17.254.4: INCOMPLETE, NO_EXPORT, large 4200000001:4:4.
    fn gobgpd_no_export(as_path: Vec<AsSegment>) -> Self {
        Route {
            origin: Origin::Incomplete,
            as_path,
            communities: vec![0xffff_ff01],
            large: vec![large(4_200_000_001, 4, 4)],
        }
    }

    /// FRR's routes (IPv4 and IPv6): IGP, AS 64513, 64513:100, 64513:200, large 64513:1:1.
    fn frr_tagged() -> Self {
        Route {
            origin: Origin::Igp,
            as_path: seq(64513),
            communities: vec![comm(64513, 100), comm(64513, 200)],
            large: vec![large(64513, 1, 1)],
        }
    }

    /// Checks `m` is an UPDATE with no attribute errors carrying exactly
    /// these ORIGIN, AS_PATH, COMMUNITIES and LARGE_COMMUNITIES.
    fn check<'a>(&self, m: &'a Message) -> &'a Update {
        let u = update(m);
        check_clean(u);
        let a = &u.attributes;
        assert_eq!(a.origin, Some(self.origin));
        assert_eq!(a.as_path.as_ref(), Some(&self.as_path));
        assert_eq!(a.communities, self.communities);
        assert_eq!(a.large_communities, self.large);
        u
    }
}

#[test]
fn keepalives() {
    for b in [capture!("gobgpd-keepalive"), capture!("frr-keepalive")] {
        let m = decode(&b);
        assert_eq!(m, Message::Keepalive);
        byte_exact(&b, &m);
    }
}

#[test]
fn gobgpd_open_ebgp() {
    let (b, m) = decoded!("gobgpd-open-ebgp-as4200000001", 77);
    let o = open(&m);
    assert_eq!(o.version, 4);
    assert_eq!(o.my_as_field, AS_TRANS);
    assert_eq!(o.asn(), 4_200_000_001);
    assert_eq!(o.hold_time, 90);
    assert_eq!(o.router_id, Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(
        o.capabilities,
        vec![
            Capability::RouteRefresh,
            Capability::Unknown {
                code: 73,
                value: hx("02766d00"),
            },
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::FourOctetAs(4_200_000_001),
            Capability::GracefulRestart(GracefulRestart {
                restart_state: false,
                notification: false,
                restart_time: 120,
                families: vec![(Family::IPV4_UNICAST, false), (Family::IPV6_UNICAST, false)],
            }),
            Capability::Unknown {
                code: 5,
                value: hx("000100010002"),
            },
        ]
    );
    assert_eq!(
        check_open(o, Some(4_200_000_001), 64522, Ipv4Addr::new(198, 18, 0, 2)),
        Ok(())
    );
    byte_exact(&b, &m);
}

#[test]
fn gobgpd_open_receiver_and_ibgp() {
    let b = capture!("gobgpd-open-receiver-as64512");
    let m = decode(&b);
    let o = open(&m);
    assert_eq!((o.my_as_field, o.asn(), o.hold_time), (64512, 64512, 90));
    assert_eq!(o.router_id, Ipv4Addr::new(198, 18, 0, 2));
    assert!(o.capabilities.contains(&Capability::FourOctetAs(64512)));
    byte_exact(&b, &m);

    let (b, m) = decoded!("gobgpd-open-ibgp-as4200000001", 59);
    let o = open(&m);
    assert_eq!((o.my_as_field, o.asn()), (AS_TRANS, 4_200_000_001));
    assert_eq!(o.router_id, Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(capability_codes(o), vec![2, 73, 1, 65, 5]);
    assert!(
        !o.capabilities
            .contains(&Capability::Multiprotocol(Family::IPV6_UNICAST))
    );
    byte_exact(&b, &m);
}

#[test]
fn frr_opens() {
    for (file, family) in [
        (capture!("frr-open-ipv4-session"), Family::IPV4_UNICAST),
        (capture!("frr-open-ipv6-session"), Family::IPV6_UNICAST),
    ] {
        let m = decode_len(&file, 98);
        let o = open(&m);
        assert_eq!((o.my_as_field, o.asn(), o.hold_time), (64513, 64513, 180));
        assert_eq!(o.router_id, Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(
            capability_codes(o),
            vec![1, 128, 2, 70, 65, 6, 69, 73, 64, 71]
        );
        assert_eq!(o.capabilities[0], Capability::Multiprotocol(family));
        assert!(o.capabilities.contains(&Capability::EnhancedRouteRefresh));
        assert!(o.capabilities.contains(&Capability::ExtendedMessage));
        assert!(
            o.capabilities
                .contains(&Capability::GracefulRestart(GracefulRestart {
                    restart_state: true,
                    notification: true,
                    restart_time: 120,
                    families: vec![],
                }))
        );
        // FRR: one capability per optional parameter; ours: all in one.
        same_meaning(&file, &m);
    }
}

#[test]
fn gobgpd_update_ipv4_communities_large() {
    let (b, m) = decoded!("gobgpd-update-ipv4-communities-large", 91);
    let u = Route::gobgpd_tagged(Origin::Igp, seq(4_200_000_001)).check(&m);
    assert!(u.withdrawn.is_empty());
    let a = &u.attributes;
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(a.med, Some(10));
    assert_eq!(a.local_pref, None);
    assert_eq!(
        u.nlri,
        vec![
            v4("172.17.254.1/32"),
            v4("172.17.254.2/32"),
            v4("172.17.254.3/32")
        ]
    );
    byte_exact(&b, &m);
}

#[test]
fn gobgpd_update_no_export() {
    let (b, m) = decoded!("gobgpd-update-ipv4-incomplete-no-export", 70);
    let u = Route::gobgpd_no_export(seq(4_200_000_001)).check(&m);
    assert_eq!(u.attributes.med, None);
    assert_eq!(u.nlri, vec![v4("172.17.254.4/32")]);
    byte_exact(&b, &m);
}

#[test]
fn gobgpd_ibgp_updates() {
    let (b, m) = decoded!("gobgpd-update-ibgp-ipv4-local-pref", 87);
    let u = Route::gobgpd_tagged(Origin::Igp, vec![]).check(&m);
    let a = &u.attributes;
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!((a.med, a.local_pref), (Some(10), Some(200)));
    assert_eq!(u.nlri, vec![v4("172.17.254.2/32"), v4("172.17.254.1/32")]);
    byte_exact(&b, &m);

    let (b, m) = decoded!("gobgpd-update-ibgp-ipv4-incomplete", 71);
    let u = Route::gobgpd_no_export(vec![]).check(&m);
    assert_eq!(u.attributes.local_pref, Some(100));
    assert_eq!(u.nlri, vec![v4("172.17.254.4/32")]);
    byte_exact(&b, &m);
}

#[test]
fn gobgpd_ipv6_mp_reach() {
    let (b, m) = decoded!("gobgpd-update-ipv6-mp-reach", 99);
    let u = Route {
        origin: Origin::Igp,
        as_path: seq(4_200_000_001),
        communities: vec![comm(64512, 100)],
        large: vec![large(4_200_000_001, 6, 1)],
    }
    .check(&m);
    let a = &u.attributes;
    assert_eq!(a.next_hop, None);
    assert_eq!(
        a.mp_reach,
        Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["2001:db8:ff::1".parse::<IpAddr>().unwrap()],
            nlri: vec!["2001:db8:254::1/128".parse().unwrap()],
        })
    );
    assert!(u.nlri.is_empty());
    byte_exact(&b, &m);
}

#[test]
fn gobgpd_end_of_rib_and_withdrawals() {
    for (b, len, family) in [
        (capture!("gobgpd-eor-ipv4"), 23, Family::IPV4_UNICAST),
        (capture!("gobgpd-eor-ipv6"), 29, Family::IPV6_UNICAST),
    ] {
        let m = decode_len(&b, len);
        assert_eq!(update(&m).end_of_rib_family(), Some(family));
        assert_eq!(m, Message::Update(Update::end_of_rib(family)));
        byte_exact(&b, &m);
    }

    let (b, m) = decoded!("gobgpd-withdraw-ipv4", 28);
    let u = update(&m);
    assert_eq!(u.withdrawn, vec![v4("172.17.254.3/32")]);
    assert_eq!(u.attributes, PathAttributes::default());
    assert!(u.nlri.is_empty());
    assert_eq!(u.end_of_rib_family(), None);
    byte_exact(&b, &m);

    let (b, m) = decoded!("gobgpd-withdraw-ipv6-mp-unreach", 46);
    let u = update(&m);
    assert_eq!(
        u.attributes.mp_unreach,
        Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: vec!["2001:db8:254::2/128".parse().unwrap()],
        })
    );
    assert_eq!(u.end_of_rib_family(), None);
    byte_exact(&b, &m);
}

#[test]
fn frr_ipv4_updates() {
    let (b, m) = decoded!("frr-update-ipv4-communities-large", 87);
    let u = Route::frr_tagged().check(&m);
    let a = &u.attributes;
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(198, 18, 0, 3)));
    assert_eq!(a.med, Some(50));
    assert_eq!(u.nlri, vec![v4("172.17.254.10/32"), v4("172.17.254.11/32")]);
    // FRR's AS_PATH carries the Extended Length flag (0x50, 2-octet length).
    let ours = encode(&m);
    assert_eq!(ours.len(), b.len() - 1);
    same_meaning(&b, &m);

    let (b, m) = decoded!("frr-update-ipv4-plain", 56);
    let u = update(&m);
    check_clean(u);
    assert_eq!(u.attributes.med, Some(0));
    assert_eq!(u.attributes.as_path, Some(seq(64513)));
    assert!(u.attributes.communities.is_empty());
    assert_eq!(u.nlri, vec![v4("172.17.254.12/32")]);
    same_meaning(&b, &m);
}

#[test]
fn frr_ipv6_global_and_link_local() {
    let (b, m) = decoded!("frr-update-ipv6-global-linklocal", 128);
    let u = Route::frr_tagged().check(&m);
    let a = &u.attributes;
    assert_eq!(a.med, Some(50));
    let mp = a.mp_reach.as_ref().unwrap();
    assert_eq!(mp.family, Family::IPV6_UNICAST);
    assert_eq!(
        mp.next_hops,
        vec![
            "2001:db8:ff::3".parse::<IpAddr>().unwrap(),
            "fe80::44d5:2bff:fe52:9cb5".parse::<IpAddr>().unwrap(),
        ]
    );
    assert_eq!(mp.nlri, vec!["2001:db8:254::10/128".parse().unwrap()]);
    // FRR: MP_REACH_NLRI first with 0x90, AS_PATH with 0x50; ours: type-code order, 0x80/0x40.
    same_meaning(&b, &m);
}

#[test]
fn frr_shutdown_communication() {
    let (b, m) = decoded!("frr-notification-cease-shutdown-message", 52);
    let Message::Notification(n) = &m else {
        panic!("{m:?}")
    };
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(
        n.shutdown_message().as_deref(),
        Some("\"ferrolb capture: maintenance\"")
    );
    assert_eq!(
        n.to_string(),
        "Cease / Administrative Shutdown: \"\\\"ferrolb capture: maintenance\\\"\""
    );
    assert_eq!(
        *n,
        Notification::cease(2, Some("\"ferrolb capture: maintenance\""))
    );
    byte_exact(&b, &m);
}
