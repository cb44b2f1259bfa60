//! `cargo +nightly fuzz run bfd`: the BFD Control packet codec (RFC 5880)
//! must never panic; a decoded packet re-encodes to the 24 bytes it came from
//! (Length set to 24: we never send an authentication section) and decodes
//! back equal.
#![no_main]

use ferrolb_bgp::bfd::ControlPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = ControlPacket::decode(data) else {
        return;
    };
    let bytes = p.encode();
    let mut expected = [0u8; 24];
    expected.copy_from_slice(&data[..24]);
    expected[3] = 24;
    assert_eq!(bytes, expected, "re-encoding changed the packet");
    assert_eq!(ControlPacket::decode(&bytes), Ok(p));
});
