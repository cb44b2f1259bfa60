//! Fuzzing on stable Rust: a bounded, seeded mutation storm over the
//! captured gobgpd/FRR messages and hand-made seeds, with the same
//! invariants as `fuzz/fuzz_targets/decode.rs`. Crashes found by either
//! become named regression tests at the bottom of this file.

use bytes::BytesMut;
use ferrolb_bgp::wire::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn hx(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The fuzz target's invariants for one input under one context.
fn check(bytes: &[u8], neg: &Negotiated) {
    let _ = frame_len(bytes, neg.max_message_len());
    let Ok((m, _)) = decode_message(bytes, neg) else {
        return;
    };
    let mut out = BytesMut::new();
    if m.encode(neg, &mut out).is_ok() {
        assert_eq!(out.len(), m.encoded_len(neg), "{m:?}");
        if let Err(e) = Message::decode(&out, neg) {
            panic!("re-encoded {m:?} does not decode: {e}");
        }
    } else {
        assert!(out.is_empty());
    }
}

fn contexts() -> [Negotiated; 3] {
    [
        Negotiated::default(),
        Negotiated {
            four_octet_as: true,
            ..Negotiated::default()
        },
        Negotiated {
            four_octet_as: true,
            extended_message: true,
            ..Negotiated::default()
        },
    ]
}

fn seeds() -> Vec<Vec<u8>> {
    let captured = [
        include_str!("data/captured/gobgpd-open-ebgp-as4200000001.hex"),
        include_str!("data/captured/frr-open-ipv4-session.hex"),
        include_str!("data/captured/gobgpd-update-ipv4-communities-large.hex"),
        include_str!("data/captured/gobgpd-update-ipv6-mp-reach.hex"),
        include_str!("data/captured/gobgpd-update-ibgp-ipv4-local-pref.hex"),
        include_str!("data/captured/gobgpd-withdraw-ipv6-mp-unreach.hex"),
        include_str!("data/captured/gobgpd-eor-ipv6.hex"),
        include_str!("data/captured/frr-update-ipv6-global-linklocal.hex"),
        include_str!("data/captured/frr-update-ipv4-communities-large.hex"),
        include_str!("data/captured/frr-notification-cease-shutdown-message.hex"),
        include_str!("data/captured/gobgpd-keepalive.hex"),
    ];
    let mut seeds: Vec<Vec<u8>> = captured.iter().map(|s| hx(s)).collect();
    // A 2-octet UPDATE with AS_TRANS + AS4_PATH + AGGREGATOR/AS4_AGGREGATOR, and a ROUTE-REFRESH.
    seeds.push(hx("ffffffffffffffffffffffffffffffff 0051 02 0000 0035
        40 01 01 00 40 02 06 02 02 fc0a 5ba0 40 03 04 ac110015
        c0 07 06 5ba0 ac110015 c0 11 0a 02 02 0000fc0a fa56ea01
        c0 12 08 fa56ea01 ac110015 20 ac11fe01"));
    seeds.push(hx("ffffffffffffffffffffffffffffffff 0017 05 0002 01 01"));
    seeds
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..6) {
            // Flip a byte, mostly in the body.
            0 | 1 => {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            // Set a byte to an interesting value.
            2 => {
                let i = rng.random_range(0..b.len());
                b[i] = [0, 1, 2, 0x7f, 0x80, 0xff, 0x10, 0x40, 0xc0][rng.random_range(0..9)];
            }
            // Truncate.
            3 => {
                let n = rng.random_range(0..=b.len());
                b.truncate(n);
            }
            // Insert random bytes.
            4 => {
                let i = rng.random_range(0..=b.len());
                let n = rng.random_range(1..8);
                for _ in 0..n {
                    b.insert(i, rng.random());
                }
            }
            // Remove a range.
            _ => {
                if !b.is_empty() {
                    let i = rng.random_range(0..b.len());
                    let n = rng.random_range(1..=(b.len() - i).min(8));
                    b.drain(i..i + n);
                }
            }
        }
        if b.is_empty() {
            break;
        }
    }
    // Usually repair the header length so the body parsers see the mutation.
    if b.len() >= 19 && rng.random_range(0..4) != 0 {
        let len = b.len() as u16;
        b[16..18].copy_from_slice(&len.to_be_bytes());
        b[..16].fill(0xff);
    }
    b
}

#[test]
fn mutation_storm() {
    let seeds = seeds();
    let neg = contexts();
    let mut rng = StdRng::seed_from_u64(0x00f0_10b6);
    // Bounded: ~60k inputs × 3 contexts, a few seconds in a debug build.
    for _ in 0..60_000 {
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, seed);
        for n in &neg {
            check(&input, n);
        }
    }
}

#[test]
fn random_bytes_storm() {
    let neg = contexts();
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let len = rng.random_range(0..128);
        let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if b.len() >= 19 {
            b[..16].fill(0xff);
            let l = b.len() as u16;
            b[16..18].copy_from_slice(&l.to_be_bytes());
            b[18] = rng.random_range(1..=5);
        }
        for n in &neg {
            check(&b, n);
        }
    }
}

// --- regressions ---------------------------------------------------------------
// (None found so far by the storm above or by `cargo fuzz run decode`; each
// crash found later gets a test here with its input bytes.)

#[test]
fn seeds_decode_cleanly() {
    for s in seeds() {
        let neg = Negotiated {
            four_octet_as: s.len() != 0x51,
            ..Negotiated::default()
        };
        let (_, problems) = decode_message(&s, &neg).unwrap();
        assert!(problems.is_empty());
    }
}
