//! Malformed inputs → the exact NOTIFICATION code/subcode, or the RFC 7606
//! action (treat-as-withdraw, attribute discard) where RFC 7606 replaces the reset.

use std::net::Ipv4Addr;

use ferrolb_bgp::wire::*;

fn hx(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    m.push(t);
    m.extend_from_slice(body);
    m
}

/// UPDATE without withdrawn routes; lengths computed.
fn upd(attrs: &str, nlri: &str) -> Vec<u8> {
    let a = hx(attrs);
    let mut body = vec![0, 0];
    body.extend_from_slice(&(a.len() as u16).to_be_bytes());
    body.extend_from_slice(&a);
    body.extend_from_slice(&hx(nlri));
    msg(2, &body)
}

const ORIGIN: &str = "40 01 01 00 ";
const ASP4: &str = "40 02 06 02 01 0000fc0a ";
const ASP2: &str = "40 02 04 02 01 fc0a ";
const NH: &str = "40 03 04 ac110015 ";
const NLRI: &str = "20 ac11fe01";
const MP6: &str = "80 0e 1e 0002 01 10 20010db8000000000000000000000015 00 40 20010db800000000 ";

fn four() -> Negotiated {
    Negotiated {
        four_octet_as: true,
        ..Negotiated::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Session reset with this NOTIFICATION code/subcode.
    Reset(u8, u8),
    /// RFC 7606 treat-as-withdraw, reported as this code/subcode.
    Withdraw(u8, u8),
    /// RFC 7606 attribute discard of this type code, reported as code/subcode.
    Discard(u8, u8, u8),
    /// Decodes without any error.
    Clean,
}

fn check(name: &str, bytes: &[u8], neg: &Negotiated, want: Want) {
    let got = decode_message(bytes, neg);
    let codes = |p: &[DecodeError]| -> Vec<(u8, u8)> {
        p.iter()
            .map(|e| {
                let n = Notification::from(e);
                (n.code, n.subcode)
            })
            .collect()
    };
    match (want, got) {
        (Want::Reset(c, s), Err(e)) => {
            let n = Notification::from(&e);
            assert_eq!((n.code, n.subcode), (c, s), "{name}: {e}");
            assert_eq!(Message::decode(bytes, neg).unwrap_err(), e, "{name}");
        }
        (Want::Withdraw(c, s), Ok((Message::Update(u), p))) => {
            assert!(u.treat_as_withdraw, "{name}: not treat-as-withdraw: {u:?}");
            assert!(codes(&p).contains(&(c, s)), "{name}: {p:?}");
        }
        (Want::Discard(t, c, s), Ok((Message::Update(u), p))) => {
            assert!(!u.treat_as_withdraw, "{name}: treat-as-withdraw: {p:?}");
            assert!(u.discarded.contains(&t), "{name}: {u:?}");
            assert!(codes(&p).contains(&(c, s)), "{name}: {p:?}");
        }
        (Want::Clean, Ok((m, p))) => {
            assert!(p.is_empty(), "{name}: {p:?}");
            if let Message::Update(u) = m {
                assert!(!u.treat_as_withdraw && u.discarded.is_empty(), "{name}");
            }
        }
        (w, g) => panic!("{name}: wanted {w:?}, got {g:?}"),
    }
}

#[test]
fn header_errors() {
    let d = Negotiated::default();
    let mut bad_marker = msg(4, &[]);
    bad_marker[3] = 0;
    check("marker", &bad_marker, &d, Want::Reset(1, 1));
    assert_eq!(
        frame_len(&bad_marker, 4096),
        Err(DecodeError::ConnectionNotSynchronized)
    );

    let mut short = msg(4, &[]);
    short[17] = 18;
    check("length 18", &short, &d, Want::Reset(1, 2));
    assert_eq!(
        frame_len(&short, 4096),
        Err(DecodeError::BadMessageLength(18))
    );
    assert_eq!(
        Notification::from(DecodeError::BadMessageLength(18)).data,
        vec![0, 18]
    );

    let big = msg(2, &vec![0; 4097 - 19]);
    assert_eq!(
        frame_len(&big, 4096),
        Err(DecodeError::BadMessageLength(4097))
    );
    check("4097 bytes", &big, &d, Want::Reset(1, 2));
    assert_eq!(frame_len(&big, 65535), Ok(Some(4097)));
    assert_eq!(frame_len(&big[..18], 4096), Ok(None));

    let mut mismatch = msg(4, &[0]);
    mismatch[17] = 19;
    check(
        "header length ≠ slice length",
        &mismatch,
        &d,
        Want::Reset(1, 2),
    );

    check("type 9", &msg(9, &[]), &d, Want::Reset(1, 3));
    assert_eq!(
        Notification::from(DecodeError::BadMessageType(9)).data,
        vec![9]
    );
    check("KEEPALIVE 20", &msg(4, &[0]), &d, Want::Reset(1, 2));
    check(
        "OPEN 28",
        &msg(1, &[4, 0, 1, 0, 90, 1, 1, 1, 1]),
        &d,
        Want::Reset(1, 2),
    );
    check("NOTIFICATION 20", &msg(3, &[6]), &d, Want::Reset(1, 2));
    check("UPDATE 22", &msg(2, &[0, 0, 0]), &d, Want::Reset(1, 2));
    check(
        "ROUTE-REFRESH 24",
        &msg(5, &hx("0001 00 01 00")),
        &d,
        Want::Reset(1, 2),
    );
    let borr = msg(5, &hx("0001 01 01 00"));
    check("BoRR 24 (RFC 7313)", &borr, &d, Want::Reset(7, 1));
    assert_eq!(
        Notification::from(Message::decode(&borr, &d).unwrap_err()).data,
        borr
    );
}

#[test]
fn open_errors() {
    let d = Negotiated::default();
    let open = |params: &str| {
        let p = hx(params);
        let mut b = hx("04 fc0a 005a ac110015");
        b.push(p.len() as u8);
        b.extend_from_slice(&p);
        msg(1, &b)
    };
    check("auth parameter", &open("01 02 0000"), &d, Want::Reset(2, 4));
    check(
        "parameter overrun",
        &open("02 09 41 04 0000fc0a"),
        &d,
        Want::Reset(2, 0),
    );
    check(
        "capability overrun",
        &open("02 06 41 05 0000fc0a"),
        &d,
        Want::Reset(2, 0),
    );
    check(
        "MP capability length 3",
        &open("02 05 01 03 0001 01"),
        &d,
        Want::Reset(2, 0),
    );
    check(
        "4-octet AS length 2",
        &open("02 04 41 02 fc0a"),
        &d,
        Want::Reset(2, 0),
    );
    check(
        "GR length 3",
        &open("02 05 40 03 0078 00"),
        &d,
        Want::Reset(2, 0),
    );
    let mut trailing = open("02 02 02 00");
    trailing[28] = 2; // Opt Parm Len says 2 of the 4 bytes
    trailing.truncate(33);
    check("bytes after parameters", &trailing, &d, Want::Reset(2, 0));
    check(
        "unknown capability is kept",
        &open("02 04 99 02 abcd 02 02 46 00"),
        &d,
        Want::Clean,
    );
}

#[test]
fn check_open_semantics() {
    let me = Ipv4Addr::new(172, 17, 0, 21);
    let ok = Open::new(64512, 90, Ipv4Addr::new(172, 17, 0, 1), vec![]);
    assert_eq!(check_open(&ok, Some(64512), 64999, me), Ok(()));
    assert_eq!(check_open(&ok, None, 64999, me), Ok(()));

    let mut v3 = ok.clone();
    v3.version = 3;
    let n = check_open(&v3, None, 64999, me).unwrap_err();
    assert_eq!((n.code, n.subcode, n.data), (2, 1, vec![0, 4]));

    let n = check_open(&ok, Some(64513), 64999, me).unwrap_err();
    assert_eq!((n.code, n.subcode), (2, 2));
    assert_eq!(n.to_string(), "OPEN Message Error / Bad Peer AS");
    // The 4-octet capability is what counts, not AS_TRANS.
    let big = Open::new(
        4_200_000_001,
        90,
        Ipv4Addr::new(1, 1, 1, 1),
        vec![Capability::FourOctetAs(4_200_000_001)],
    );
    assert_eq!(check_open(&big, Some(4_200_000_001), 64999, me), Ok(()));
    assert!(check_open(&big, Some(u32::from(AS_TRANS)), 64999, me).is_err());
    let zero = Open::new(0, 90, Ipv4Addr::new(1, 1, 1, 1), vec![]);
    assert_eq!(check_open(&zero, None, 64999, me).unwrap_err().subcode, 2);

    for (hold, good) in [(0, true), (1, false), (2, false), (3, true), (65535, true)] {
        let o = Open {
            hold_time: hold,
            ..ok.clone()
        };
        let r = check_open(&o, None, 64999, me);
        assert_eq!(r.is_ok(), good, "hold {hold}");
        if let Err(n) = r {
            assert_eq!((n.code, n.subcode), (2, 6));
        }
    }
    for id in [Ipv4Addr::UNSPECIFIED, me] {
        let o = Open {
            router_id: id,
            ..ok.clone()
        };
        // iBGP: the peer's AS (64512) is ours.
        let n = check_open(&o, None, 64512, me).unwrap_err();
        assert_eq!((n.code, n.subcode), (2, 3), "{id}");
    }
    // eBGP: our identifier is fine from another AS (RFC 6286 §2.2), 0.0.0.0 never is.
    let same = Open {
        router_id: me,
        ..ok.clone()
    };
    assert_eq!(check_open(&same, None, 64999, me), Ok(()));
    let zero_id = Open {
        router_id: Ipv4Addr::UNSPECIFIED,
        ..ok.clone()
    };
    assert_eq!(
        check_open(&zero_id, None, 64999, me).unwrap_err().subcode,
        3
    );
}

#[test]
fn update_length_and_nlri_errors_reset() {
    let f = four();
    check(
        "withdrawn overrun",
        &msg(2, &hx("0009 20ac11fe01 0000")),
        &f,
        Want::Reset(3, 1),
    );
    check(
        "attribute length overrun",
        &msg(2, &hx("0000 0009 40010100")),
        &f,
        Want::Reset(3, 1),
    );
    check(
        "withdrawn /33",
        &msg(2, &hx("0006 21ac11fe0100 0000")),
        &f,
        Want::Reset(3, 10),
    );
    let u = upd(&format!("{ORIGIN}{ASP4}{NH}"), "20 ac11fe");
    check("NLRI truncated", &u, &f, Want::Reset(3, 10));
    let u = upd(&format!("{ORIGIN}{ASP4}{NH}"), "21 ac11fe0101");
    check("NLRI /33", &u, &f, Want::Reset(3, 10));
}

#[test]
fn update_attribute_errors() {
    let f = four();
    let two = Negotiated::default();
    let all = |x: &str| upd(&format!("{ORIGIN}{ASP4}{NH}{x}"), NLRI);
    let cases: Vec<(&str, Vec<u8>, &Negotiated, Want)> = vec![
        ("valid", all(""), &f, Want::Clean),
        ("no attributes, no NLRI", upd("", ""), &f, Want::Clean),
        (
            "ORIGIN 3 (§7.1)",
            upd(&format!("40 01 01 03 {ASP4}{NH}"), NLRI),
            &f,
            Want::Withdraw(3, 6),
        ),
        (
            "ORIGIN length 2 (§7.1)",
            upd(&format!("40 01 02 0000 {ASP4}{NH}"), NLRI),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "ORIGIN flags optional (§3 c)",
            upd(&format!("c0 01 01 00 {ASP4}{NH}"), NLRI),
            &f,
            Want::Withdraw(3, 4),
        ),
        (
            "AS_PATH segment type 5 (§7.2)",
            upd(&format!("{ORIGIN}40 02 06 05 01 0000fc0a {NH}"), NLRI),
            &f,
            Want::Withdraw(3, 11),
        ),
        (
            "AS_PATH zero segment length (§7.2)",
            upd(&format!("{ORIGIN}40 02 02 02 00 {NH}"), NLRI),
            &f,
            Want::Withdraw(3, 11),
        ),
        (
            "AS_PATH segment overrun (§7.2)",
            upd(&format!("{ORIGIN}40 02 06 02 02 0000fc0a {NH}"), NLRI),
            &f,
            Want::Withdraw(3, 11),
        ),
        (
            "AS_PATH one trailing octet (§7.2)",
            upd(&format!("{ORIGIN}40 02 07 02 01 0000fc0a 02 {NH}"), NLRI),
            &f,
            Want::Withdraw(3, 11),
        ),
        (
            "4-octet AS_PATH read as 2-octet",
            upd(&format!("{ORIGIN}{ASP4}{NH}"), NLRI),
            &two,
            Want::Withdraw(3, 11),
        ),
        (
            "NEXT_HOP length 5 (§7.3)",
            upd(&format!("{ORIGIN}{ASP4}40 03 05 ac11001500"), NLRI),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "NEXT_HOP 0.0.0.0",
            upd(&format!("{ORIGIN}{ASP4}40 03 04 00000000"), NLRI),
            &f,
            Want::Withdraw(3, 8),
        ),
        (
            "NEXT_HOP multicast",
            upd(&format!("{ORIGIN}{ASP4}40 03 04 e0000001"), NLRI),
            &f,
            Want::Withdraw(3, 8),
        ),
        (
            "MED length 3 (§7.4)",
            all("80 04 03 000000"),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "LOCAL_PREF length 5 (§7.5)",
            all("40 05 05 0000000000"),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "ATOMIC_AGGREGATE length 1 (§7.6)",
            all("40 06 01 00"),
            &f,
            Want::Discard(6, 3, 5),
        ),
        (
            "AGGREGATOR length 7 (§7.7)",
            all("c0 07 07 0000fc0a ac1100"),
            &f,
            Want::Discard(7, 3, 5),
        ),
        (
            "AGGREGATOR 6 on 4-octet session (§7.7)",
            all("c0 07 06 fc0a ac110015"),
            &f,
            Want::Discard(7, 3, 5),
        ),
        (
            "COMMUNITIES length 5 (§7.8)",
            all("c0 08 05 0000000000"),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "COMMUNITIES length 0 (§7.8)",
            all("c0 08 00"),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "ORIGINATOR_ID length 3 (§7.9)",
            all("80 09 03 010203"),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "CLUSTER_LIST length 6 (§7.10)",
            all("80 0a 06 010203040506"),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "EXTENDED_COMMUNITIES length 4 (§7.14)",
            all("c0 10 04 01020304"),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "LARGE_COMMUNITY length 13 (RFC 8092 §6)",
            all("c0 20 0d 00000000000000000000000000"),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "MED flags well-known (§3 c)",
            all("40 04 04 00000000"),
            &f,
            Want::Withdraw(3, 4),
        ),
        (
            "missing ORIGIN (§3 d)",
            upd(&format!("{ASP4}{NH}"), NLRI),
            &f,
            Want::Withdraw(3, 3),
        ),
        (
            "missing AS_PATH (§3 d)",
            upd(&format!("{ORIGIN}{NH}"), NLRI),
            &f,
            Want::Withdraw(3, 3),
        ),
        (
            "missing NEXT_HOP with IPv4 NLRI (§3 d)",
            upd(&format!("{ORIGIN}{ASP4}"), NLRI),
            &f,
            Want::Withdraw(3, 3),
        ),
        (
            "no NEXT_HOP needed with MP_REACH only",
            upd(&format!("{ORIGIN}{ASP4}{MP6}"), ""),
            &f,
            Want::Clean,
        ),
        (
            "missing ORIGIN with MP_REACH (§3 d)",
            upd(&format!("{ASP4}{MP6}"), ""),
            &f,
            Want::Withdraw(3, 3),
        ),
        (
            "missing attributes without NLRI is fine",
            upd("80 0f 03 0002 01", ""),
            &f,
            Want::Clean,
        ),
        (
            "unrecognized well-known (RFC 4271 §6.3)",
            all("40 63 01 00"),
            &f,
            Want::Reset(3, 2),
        ),
        (
            "unknown optional is kept",
            all("c0 63 01 00"),
            &f,
            Want::Clean,
        ),
        (
            "duplicate MP_REACH (§3 g)",
            upd(&format!("{ORIGIN}{ASP4}{MP6}{MP6}"), ""),
            &f,
            Want::Reset(3, 1),
        ),
        (
            "duplicate MP_UNREACH (§3 g)",
            upd("80 0f 03 0002 01 80 0f 03 0002 01", ""),
            &f,
            Want::Reset(3, 1),
        ),
        (
            "MP_REACH IPv6 next hop length 20 (§7.11)",
            upd(
                &format!("{ORIGIN}{ASP4}80 0e 19 0002 01 14 {} 00", "00".repeat(20)),
                "",
            ),
            &f,
            Want::Reset(3, 9),
        ),
        (
            "MP_REACH IPv4 next hop length 5 (§7.11)",
            upd(
                &format!("{ORIGIN}{ASP4}80 0e 0a 0001 01 05 0a00000101 00"),
                "",
            ),
            &f,
            Want::Reset(3, 9),
        ),
        (
            "MP_REACH NLRI /129 (§5.3)",
            upd(
                &format!(
                    "{ORIGIN}{ASP4}80 0e 16 0002 01 10 20010db8000000000000000000000015 00 81 00"
                ),
                "",
            ),
            &f,
            Want::Reset(3, 9),
        ),
        (
            "MP_REACH truncated before next hop",
            upd(&format!("{ORIGIN}{ASP4}80 0e 03 0002 01"), ""),
            &f,
            Want::Reset(3, 9),
        ),
        (
            "MP_UNREACH NLRI truncated (§5.3)",
            upd("80 0f 05 0002 01 40 2001", ""),
            &f,
            Want::Reset(3, 9),
        ),
        (
            "MP_REACH flags transitive (§3 c), still parsed",
            upd(&format!("{ORIGIN}{ASP4}c0{}", &MP6[2..]), ""),
            &f,
            Want::Withdraw(3, 4),
        ),
        (
            "attribute overruns the attribute field (§4)",
            upd(&format!("{ORIGIN}{ASP4}{NH}c0 08 08 0000"), NLRI),
            &f,
            Want::Withdraw(3, 5),
        ),
        (
            "two octets left in the attribute field (§4)",
            upd(&format!("{ORIGIN}{ASP4}{NH}c0 08"), NLRI),
            &f,
            Want::Withdraw(3, 1),
        ),
        (
            "MP_REACH overruns the attribute field (§3 h)",
            upd(&format!("{ORIGIN}{ASP4}80 0e 40 0002"), ""),
            &f,
            Want::Reset(3, 5),
        ),
        (
            "AS4_PATH malformed from 2-octet peer (RFC 6793 §6)",
            upd(&format!("{ORIGIN}{ASP2}{NH}c0 11 03 02 01 00"), NLRI),
            &two,
            Want::Discard(17, 3, 11),
        ),
        (
            "AS4_PATH with confed segment (RFC 6793 §6)",
            upd(&format!("{ORIGIN}{ASP2}{NH}c0 11 06 03 01 0000fc0a"), NLRI),
            &two,
            Want::Discard(17, 3, 11),
        ),
        (
            "AS4_PATH flags non-transitive (RFC 6793 §6)",
            upd(&format!("{ORIGIN}{ASP2}{NH}80 11 06 02 01 0000fc0a"), NLRI),
            &two,
            Want::Discard(17, 3, 4),
        ),
        (
            "AS4_AGGREGATOR length 6",
            upd(&format!("{ORIGIN}{ASP2}{NH}c0 12 06 0000fc0a0101"), NLRI),
            &two,
            Want::Discard(18, 3, 5),
        ),
    ];
    for (name, bytes, neg, want) in cases {
        check(name, &bytes, neg, want);
    }
}

fn decode_update(bytes: &[u8], neg: &Negotiated) -> Update {
    match Message::decode(bytes, neg).unwrap() {
        Message::Update(u) => u,
        m => panic!("{m:?}"),
    }
}

#[test]
fn treat_as_withdraw_keeps_the_nlri() {
    let u = decode_update(&upd(&format!("40 01 01 07 {ASP4}{NH}"), NLRI), &four());
    assert!(u.treat_as_withdraw);
    assert_eq!(u.nlri, vec!["172.17.254.1/32".parse().unwrap()]);
    // MP NLRI too.
    let u = decode_update(&upd(&format!("40 01 01 07 {ASP4}{MP6}"), ""), &four());
    assert!(u.treat_as_withdraw);
    assert_eq!(
        u.attributes.mp_reach.unwrap().nlri,
        vec!["2001:db8::/64".parse().unwrap()]
    );
    // §4: NLRI located through Total Path Attribute Length even after an overrun.
    let u = decode_update(&upd(&format!("{ORIGIN}c0 08 09 0000"), NLRI), &four());
    assert!(u.treat_as_withdraw);
    assert_eq!(u.nlri.len(), 1);
}

#[test]
fn discard_removes_only_that_attribute() {
    let u = decode_update(
        &upd(&format!("{ORIGIN}{ASP4}{NH}40 06 01 00"), NLRI),
        &four(),
    );
    assert!(!u.attributes.atomic_aggregate);
    assert_eq!(u.discarded, vec![6]);
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
    assert_eq!(u.nlri.len(), 1);
}

#[test]
fn duplicate_keeps_the_first() {
    let u = decode_update(
        &upd(&format!("{ORIGIN}{ASP4}{NH}40 01 01 02"), NLRI),
        &four(),
    );
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
    assert_eq!(u.discarded, vec![1]);
    assert!(!u.treat_as_withdraw);
}

#[test]
fn as4_rules() {
    // From a 4-octet peer, AS4_PATH is dropped silently (RFC 6793 §4.1).
    let u = decode_update(
        &upd(&format!("{ORIGIN}{ASP4}{NH}c0 11 06 02 01 fa56ea01"), NLRI),
        &four(),
    );
    assert_eq!(
        u.attributes.as_path,
        Some(vec![AsSegment::Sequence(vec![64522])])
    );
    assert!(u.attributes.other.is_empty() && u.discarded.is_empty());
    // AS4_PATH longer than AS_PATH is ignored (RFC 6793 §4.2.3).
    let u = decode_update(
        &upd(
            &format!("{ORIGIN}{ASP2}{NH}c0 11 0a 02 02 0000fc0a fa56ea01"),
            NLRI,
        ),
        &Negotiated::default(),
    );
    assert_eq!(
        u.attributes.as_path,
        Some(vec![AsSegment::Sequence(vec![64522])])
    );
    // AGGREGATOR with a real ASN and AS4_AGGREGATOR present: AS4_PATH ignored.
    let u = decode_update(
        &upd(
            &format!(
                "{ORIGIN}40 02 04 02 01 5ba0 {NH}c0 07 06 fc0a ac110015 c0 11 06 02 01 fa56ea01 c0 12 08 fa56ea01 ac110015"
            ),
            NLRI,
        ),
        &Negotiated::default(),
    );
    assert_eq!(
        u.attributes.as_path,
        Some(vec![AsSegment::Sequence(vec![u32::from(AS_TRANS)])])
    );
    // AS_TRANS in AGGREGATOR: AS4_PATH merged.
    let u = decode_update(
        &upd(
            &format!(
                "{ORIGIN}40 02 04 02 01 5ba0 {NH}c0 07 06 5ba0 ac110015 c0 11 06 02 01 fa56ea01 c0 12 08 fa56ea01 ac110015"
            ),
            NLRI,
        ),
        &Negotiated::default(),
    );
    assert_eq!(
        u.attributes.as_path,
        Some(vec![AsSegment::Sequence(vec![4_200_000_001])])
    );
}
