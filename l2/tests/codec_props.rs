//! Property tests of the codecs: no input makes them panic (the responder feeds them
//! whatever arrives on the wire), and what they build parses back to itself.

use std::net::{Ipv4Addr, Ipv6Addr};

use ferrolb_l2::Mac;
use ferrolb_l2::arp::{self, ArpFrame, Op};
use ferrolb_l2::ndp::{self, NeighborSolicitation};
use proptest::prelude::*;

fn mac() -> impl Strategy<Value = Mac> {
    any::<[u8; 6]>().prop_map(Mac)
}

/// A Neighbor Solicitation frame built independently of the crate's encoder.
fn ns_frame(
    eth_src: Mac,
    eth_dst: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    slla: Option<Mac>,
) -> Vec<u8> {
    let icmp_len = if slla.is_some() { 32 } else { 24 };
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst.0);
    f.extend_from_slice(&eth_src.0);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, icmp_len, 58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    if let Some(m) = slla {
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&m.0);
    }
    let c = ndp::checksum(src, dst, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160), m in mac()) {
        let _ = ArpFrame::parse(&bytes);
        let _ = NeighborSolicitation::parse(&bytes);
        let _ = arp::answer(&bytes, m, |_| true);
        let _ = ndp::answer(&bytes, m, |_| true);
    }

    #[test]
    fn parsers_never_panic_on_near_valid_frames(
        idx in 0usize..86, val in any::<u8>(), cut in 0usize..90, m in mac()
    ) {
        // A valid NS with one byte changed and possibly truncated.
        let mut f = ns_frame(Mac([2, 0, 0, 0, 0, 1]), Mac([0x33, 0x33, 0xff, 0, 0, 0x10]),
            "fe80::1".parse().unwrap(), "ff02::1:ff00:10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(), Some(Mac([2, 0, 0, 0, 0, 1])));
        f[idx] = val;
        f.truncate(cut);
        let _ = NeighborSolicitation::parse(&f);
        let _ = ndp::answer(&f, m, |_| true);
    }

    #[test]
    fn arp_round_trip(
        eth_dst in mac(), eth_src in mac(), reply in any::<bool>(), sha in mac(),
        spa in any::<u32>(), tha in mac(), tpa in any::<u32>()
    ) {
        let f = ArpFrame {
            eth_dst, eth_src, op: if reply { Op::Reply } else { Op::Request },
            sha, spa: Ipv4Addr::from(spa), tha, tpa: Ipv4Addr::from(tpa),
        };
        prop_assert_eq!(ArpFrame::parse(&f.encode()), Ok(f));
    }

    #[test]
    fn solicitations_parse_and_answers_check_out(
        eth_src in mac(), src in any::<u128>(), target in any::<u128>(),
        with_slla in any::<bool>(), us in mac()
    ) {
        let (src, target) = (Ipv6Addr::from(src), Ipv6Addr::from(target));
        prop_assume!(!target.is_multicast() && !src.is_unspecified());
        let dst = ndp::solicited_node(target);
        let eth_dst = ndp::multicast_mac(dst);
        let slla = with_slla.then_some(eth_src);
        let f = ns_frame(eth_src, eth_dst, src, dst, target, slla);
        let ns = NeighborSolicitation::parse(&f).unwrap();
        prop_assert_eq!(ns, NeighborSolicitation { eth_dst, eth_src, src, dst, target, source_lla: slla });
        prop_assume!(us != eth_src);
        let na = ndp::answer(&f, us, |t| t == target).unwrap();
        let bytes = na.encode();
        prop_assert_eq!(ndp::checksum(na.src, na.dst, &bytes[ndp::ICMP_OFFSET..]), 0);
        prop_assert_eq!((na.dst, na.eth_dst, na.target, na.target_lla), (src, eth_src, target, us));
        prop_assert!(ndp::answer(&f, us, |t| t != target).is_err());
    }
}
