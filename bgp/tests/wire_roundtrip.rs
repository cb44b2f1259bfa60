//! Property tests: any message in the valid domain round-trips through
//! encode → decode under both 2-octet and 4-octet AS contexts, `encoded_len`
//! is exact, and arbitrary or corrupted bytes never make decoding panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use ferrolb_bgp::wire::*;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

fn ctx(four: bool) -> Negotiated {
    Negotiated {
        four_octet_as: four,
        ..Negotiated::default()
    }
}

fn v4net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn v6net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())
}

fn any_family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::IPV4_UNICAST),
        Just(Family::IPV6_UNICAST),
        (3u16.., 2u8..).prop_map(|(a, s)| Family {
            afi: Afi::Other(a),
            safi: Safi::Other(s),
        }),
    ]
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        any_family().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        Just(Capability::EnhancedRouteRefresh),
        any::<u32>().prop_map(Capability::FourOctetAs),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            prop::collection::vec((any_family(), any::<bool>()), 0..4)
        )
            .prop_map(|(r, n, t, f)| Capability::GracefulRestart(GracefulRestart {
                restart_state: r,
                notification: n,
                restart_time: t,
                families: f,
            })),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_filter("known code", |(c, _)| !matches!(
                c,
                1 | 2 | 6 | 64 | 65 | 70
            ))
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    (
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        prop::collection::vec(capability(), 0..16),
    )
        .prop_map(|(version, my_as_field, hold_time, id, capabilities)| Open {
            version,
            my_as_field,
            hold_time,
            router_id: Ipv4Addr::from(id),
            capabilities,
        })
}

fn asns(max: u32) -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(prop_oneof![1..=max, 1u32..=65535], 1..8)
}

/// Confederation segments only at the front (RFC 5065), with 2-octet ASNs;
/// then AS_SEQUENCE / AS_SET segments with any ASN.
fn as_path() -> impl Strategy<Value = Vec<AsSegment>> {
    (
        prop::collection::vec(
            prop_oneof![
                asns(65535).prop_map(AsSegment::ConfedSequence),
                asns(65535).prop_map(AsSegment::ConfedSet),
            ],
            0..2,
        ),
        prop::collection::vec(
            prop_oneof![
                asns(u32::MAX).prop_map(AsSegment::Sequence),
                asns(u32::MAX).prop_map(AsSegment::Set),
            ],
            0..4,
        ),
    )
        .prop_map(|(mut c, s)| {
            c.extend(s);
            c
        })
}

fn next_hop() -> impl Strategy<Value = Ipv4Addr> {
    (1u32..0xe000_0000).prop_map(Ipv4Addr::from)
}

fn mp_reach() -> impl Strategy<Value = MpReach> {
    prop_oneof![
        (
            next_hop(),
            prop::collection::vec(v4net().prop_map(IpNet::V4), 0..10)
        )
            .prop_map(|(nh, nlri)| MpReach {
                family: Family::IPV4_UNICAST,
                next_hops: vec![IpAddr::V4(nh)],
                nlri,
            }),
        (
            prop::collection::vec(any::<u128>().prop_map(|a| IpAddr::V6(a.into())), 1..=2),
            prop::collection::vec(v6net().prop_map(IpNet::V6), 0..10)
        )
            .prop_map(|(next_hops, nlri)| MpReach {
                family: Family::IPV6_UNICAST,
                next_hops,
                nlri,
            }),
    ]
}

fn mp_unreach() -> impl Strategy<Value = MpUnreach> {
    prop_oneof![
        prop::collection::vec(v4net().prop_map(IpNet::V4), 0..10).prop_map(|w| MpUnreach {
            family: Family::IPV4_UNICAST,
            withdrawn: w,
        }),
        prop::collection::vec(v6net().prop_map(IpNet::V6), 0..10).prop_map(|w| MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: w,
        }),
    ]
}

fn other_attrs() -> impl Strategy<Value = Vec<RawAttribute>> {
    // Unknown optional attributes, one per type code, values up to 300 bytes
    // (so the Extended Length flag is exercised).
    prop::collection::btree_map(
        100u8..=250,
        (
            prop_oneof![Just(0x80u8), Just(0xc0), Just(0xe0)],
            prop::collection::vec(any::<u8>(), 0..300),
        ),
        0..3,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(type_code, (flags, value))| RawAttribute {
                flags,
                type_code,
                value,
            })
            .collect()
    })
}

fn update() -> impl Strategy<Value = Update> {
    let attrs = (
        (
            prop::option::of(prop_oneof![
                Just(Origin::Igp),
                Just(Origin::Egp),
                Just(Origin::Incomplete)
            ]),
            prop::option::of(as_path()),
            prop::option::of(next_hop()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
            any::<bool>(),
        ),
        (
            prop::collection::vec(any::<u32>(), 0..6),
            prop::collection::vec(
                (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(g, a, b)| LargeCommunity {
                    global_admin: g,
                    local1: a,
                    local2: b,
                }),
                0..4,
            ),
            prop::option::of(mp_reach()),
            prop::option::of(mp_unreach()),
            other_attrs(),
        ),
    )
        .prop_map(
            |(
                (origin, as_path, next_hop, med, local_pref, atomic_aggregate),
                (communities, large_communities, mp_reach, mp_unreach, other),
            )| PathAttributes {
                origin,
                as_path,
                next_hop,
                med,
                local_pref,
                atomic_aggregate,
                communities,
                large_communities,
                mp_reach,
                mp_unreach,
                other,
            },
        );
    (
        prop::collection::vec(v4net(), 0..20),
        attrs,
        prop::collection::vec(v4net(), 0..20),
    )
        .prop_map(|(withdrawn, mut attributes, nlri)| {
            // An UPDATE that announces must carry the mandatory attributes
            // (otherwise decoding rightly reports treat-as-withdraw).
            if !nlri.is_empty() || attributes.mp_reach.is_some() {
                attributes.origin.get_or_insert(Origin::Igp);
                attributes.as_path.get_or_insert_with(Vec::new);
            }
            if !nlri.is_empty() {
                attributes
                    .next_hop
                    .get_or_insert(Ipv4Addr::new(192, 0, 2, 1));
            }
            Update {
                withdrawn,
                attributes,
                nlri,
                ..Update::default()
            }
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        open().prop_map(Message::Open),
        update().prop_map(Message::Update),
        (
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(code, subcode, data)| Message::Notification(Notification {
                code,
                subcode,
                data
            })),
        Just(Message::Keepalive),
        (any_family(), any::<u8>())
            .prop_map(|(family, subtype)| Message::RouteRefresh(RouteRefresh { family, subtype })),
    ]
}

fn round_trip(m: &Message, neg: &Negotiated) -> Result<(), TestCaseError> {
    let mut out = BytesMut::new();
    m.encode(neg, &mut out)
        .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    prop_assert_eq!(out.len(), m.encoded_len(neg));
    if let Message::Update(u) = m {
        // Total Path Attribute Length sits after the header, the withdrawn
        // routes length and the withdrawn routes.
        let at = 21
            + u.withdrawn
                .iter()
                .map(|w| nlri_wire_len(w.prefix_len()))
                .sum::<usize>();
        let attrs_len = u16::from_be_bytes([out[at], out[at + 1]]);
        prop_assert_eq!(usize::from(attrs_len), u.attributes.encoded_len(neg));
    }
    prop_assert_eq!(frame_len(&out, neg.max_message_len()), Ok(Some(out.len())));
    let back =
        Message::decode(&out, neg).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(&back, m);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_four_octet(m in message()) {
        round_trip(&m, &ctx(true))?;
    }

    #[test]
    fn round_trip_two_octet(m in message()) {
        round_trip(&m, &ctx(false))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..512), ty in 1u8..=6, four in any::<bool>()) {
        let neg = ctx(four);
        let _ = frame_len(&bytes, 4096);
        let _ = Message::decode(&bytes, &neg);
        // Also with a valid header so the body parsers are reached.
        if bytes.len() >= 19 {
            bytes[..16].fill(0xff);
            let len = bytes.len().min(4096) as u16;
            bytes.truncate(usize::from(len));
            bytes[16..18].copy_from_slice(&len.to_be_bytes());
            bytes[18] = ty;
            if let Ok(m) = Message::decode(&bytes, &neg) {
                let mut out = BytesMut::new();
                let _ = m.encode(&neg, &mut out);
                let _ = m.encoded_len(&neg);
            }
        }
    }

    #[test]
    fn corrupted_valid_messages_never_panic(m in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), four in any::<bool>()) {
        let neg = ctx(four);
        let mut out = BytesMut::new();
        if m.encode(&neg, &mut out).is_ok() {
            let mut bytes = out.to_vec();
            for (i, b) in flips {
                // Keep the header intact half of the time so bodies get exercised.
                let at = i.index(bytes.len());
                if at >= 19 || b & 1 == 0 {
                    bytes[at] = b;
                }
            }
            if let Ok((m2, _)) = decode_message(&bytes, &neg) {
                let mut again = BytesMut::new();
                let _ = m2.encode(&neg, &mut again);
            }
        }
    }
}
