//! `cargo +nightly fuzz run decode`: TCP framing and message decoding under
//! 2-octet and 4-octet AS contexts must never panic, and a successfully
//! decoded message must re-encode (or fail cleanly) with an exact
//! `encoded_len`, and decode again.
#![no_main]

use bytes::BytesMut;
use ferrolb_bgp::wire::{Message, Negotiated, frame_len};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8], neg: &Negotiated) {
    let Ok(m) = Message::decode(bytes, neg) else {
        return;
    };
    let mut out = BytesMut::new();
    if m.encode(neg, &mut out).is_ok() {
        assert_eq!(out.len(), m.encoded_len(neg));
        // What we write, we read back.
        Message::decode(&out, neg).expect("re-encoded message decodes");
    } else {
        assert!(out.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    for four_octet_as in [false, true] {
        for extended_message in [false, true] {
            let neg = Negotiated {
                four_octet_as,
                extended_message,
                ..Negotiated::default()
            };
            let _ = frame_len(data, neg.max_message_len());
            check(data, &neg);

            // Give the input a valid header so the body parsers are reached:
            // the first byte picks the message type, the rest is the body.
            if let Some((&ty, body)) = data.split_first() {
                let len = (body.len() + 19).min(neg.max_message_len());
                let mut msg = vec![0xff; 16];
                msg.extend_from_slice(&(len as u16).to_be_bytes());
                msg.push(ty % 6);
                msg.extend_from_slice(&body[..len - 19]);
                if let Ok(Some(n)) = frame_len(&msg, neg.max_message_len()) {
                    assert_eq!(n, msg.len());
                }
                check(&msg, &neg);
            }
        }
    }
});
