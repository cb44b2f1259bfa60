//! Packing and encoding 100k /32 routes the way the Adj-RIB-Out does:
//! fill each UPDATE up to 4096 bytes using the size helpers, then encode.

use std::net::Ipv4Addr;
use std::time::Instant;

use bytes::BytesMut;
use ferrolb_bgp::wire::*;
use ipnet::Ipv4Net;

#[test]
fn pack_and_encode_100k_host_routes() {
    let neg = Negotiated {
        four_octet_as: true,
        ..Negotiated::default()
    };
    let attributes = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(vec![AsSegment::Sequence(vec![64522])]),
        next_hop: Some(Ipv4Addr::new(172, 17, 0, 21)),
        ..PathAttributes::default()
    };
    // Header 19 + withdrawn length 2 + attribute length 2 = 23.
    let room = neg.max_message_len() - MIN_UPDATE_LEN - attributes.encoded_len(&neg);
    let per_update = room / nlri_wire_len(32);
    assert_eq!(attributes.encoded_len(&neg), 20);
    assert_eq!(
        per_update, 810,
        "810 /32 per 4096-byte UPDATE, as GoBGP packs"
    );

    let prefixes: Vec<Ipv4Net> = (0..100_000u32)
        .map(|i| Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap())
        .collect();
    let updates: Vec<Message> = prefixes
        .chunks(per_update)
        .map(|c| {
            Message::Update(Update {
                attributes: attributes.clone(),
                nlri: c.to_vec(),
                ..Update::default()
            })
        })
        .collect();
    assert_eq!(updates.len(), 124);

    let mut out = BytesMut::with_capacity(124 * 4096);
    let t = Instant::now();
    for u in &updates {
        u.encode(&neg, &mut out).unwrap();
    }
    let took = t.elapsed();
    eprintln!(
        "encoded 100k /32 in {} UPDATEs, {} bytes, in {took:?}",
        updates.len(),
        out.len()
    );
    // Debug builds are ~10x slower than release; this bound only catches
    // accidental quadratic behaviour or per-prefix allocation storms.
    assert!(took.as_millis() < 1000, "{took:?}");

    // Every message is a full, valid UPDATE and the prefixes all come back.
    let mut rest = &out[..];
    let mut n = 0;
    while let Some(len) = frame_len(rest, 4096).unwrap() {
        assert!(len <= 4096);
        let Message::Update(u) = Message::decode(&rest[..len], &neg).unwrap() else {
            panic!()
        };
        n += u.nlri.len();
        rest = &rest[len..];
    }
    assert!(rest.is_empty());
    assert_eq!(n, 100_000);
    // All but the last are within 5 bytes of the limit.
    assert!(updates[..123].iter().all(|u| u.encoded_len(&neg) > 4090));
}
