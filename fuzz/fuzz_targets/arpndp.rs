//! `cargo +nightly fuzz run arpndp`: the layer 2 codecs and responders on
//! any frame must never panic. ARP: a parsed frame re-encodes to the 42
//! bytes it came from and parses back equal; an answer is a well-formed
//! reply. NDP: an answered solicitation gives an advertisement whose ICMPv6
//! checksum verifies, and the decisions agree with the parser.
#![no_main]

use ferrolb_l2::Mac;
use ferrolb_l2::arp::{self, ArpFrame, Op};
use ferrolb_l2::ndp::{self, NeighborSolicitation};
use libfuzzer_sys::fuzz_target;

const MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);

fn check_arp(data: &[u8]) {
    let parsed = ArpFrame::parse(data);
    if let Ok(f) = &parsed {
        let bytes = f.encode();
        assert_eq!(&bytes[..], &data[..42], "re-encoding changed the frame");
        assert_eq!(ArpFrame::parse(&bytes).as_ref(), Ok(f));
    }
    match arp::answer(data, MAC, |_| true) {
        Ok((reply, target)) => {
            let req = parsed.expect("answered a frame that does not parse");
            assert_eq!(req.op, Op::Request);
            assert_eq!(target, req.tpa);
            assert_eq!((reply.op, reply.sha, reply.spa), (Op::Reply, MAC, req.tpa));
            assert_eq!(ArpFrame::parse(&reply.encode()), Ok(reply));
        }
        Err(arp::ArpIgnore::Malformed) => assert!(parsed.is_err()),
        Err(_) => assert!(parsed.is_ok()),
    }
}

fn check_ndp(data: &[u8]) {
    let parsed = NeighborSolicitation::parse(data);
    match ndp::answer(data, MAC, |_| true) {
        Ok(na) => {
            let ns = parsed
                .clone()
                .expect("answered a frame that does not parse");
            assert_eq!((na.target, na.target_lla), (ns.target, MAC));
            let frame = na.encode();
            // The IPv6 payload (ICMPv6) checksums to zero with its checksum in place.
            let icmp = &frame[ndp::ICMP_OFFSET..];
            assert_eq!(ndp::checksum(na.src, na.dst, icmp), 0, "bad NA checksum");
            assert_eq!(&frame[22..38], &na.src.octets());
            assert_eq!(&frame[38..54], &na.dst.octets());
        }
        Err(ndp::NdpIgnore::Invalid) => assert!(parsed.is_err()),
        Err(_) => assert!(parsed.is_ok()),
    }
    if let Ok(ns) = parsed {
        // Unsolicited advertisements for the target also checksum.
        let na = ndp::unsolicited(MAC, ns.target);
        let frame = na.encode();
        assert_eq!(ndp::checksum(na.src, na.dst, &frame[ndp::ICMP_OFFSET..]), 0);
    }
}

fuzz_target!(|data: &[u8]| {
    check_arp(data);
    check_ndp(data);
});
