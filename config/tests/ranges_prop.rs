//! Properties of range → CIDR decomposition and overlap detection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_config::{AddrRange, Config, ip_to_u128, u128_to_ip};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

/// The hand-written decomposition `AddrRange::to_cidrs` used before it went through
/// `ipnet`'s subnet iterators, kept as the reference the new one must equal.
fn old_to_cidrs(r: &AddrRange) -> Vec<IpNet> {
    let v4 = r.is_ipv4();
    let bits: u32 = if v4 { 32 } else { 128 };
    let end = r.end_u128();
    let mut cur = r.start_u128();
    let mut out = Vec::new();
    loop {
        // Largest block aligned at `cur` that stays within `end`.
        let mut size_log = if cur == 0 {
            bits
        } else {
            cur.trailing_zeros().min(bits)
        };
        let span = |l: u32| {
            if l >= 128 {
                u128::MAX
            } else {
                (1u128 << l) - 1
            }
        };
        while size_log > 0
            && cur
                .checked_add(span(size_log))
                .is_none_or(|last| last > end)
        {
            size_log -= 1;
        }
        let prefix = (bits - size_log) as u8;
        out.push(match u128_to_ip(cur, v4) {
            IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, prefix).unwrap()),
            IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, prefix).unwrap()),
        });
        let last = cur + span(size_log);
        if last >= end {
            break;
        }
        cur = last + 1;
    }
    out
}

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

fn v6(n: u128) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(n))
}

#[test]
fn edges_equal_the_old_decomposition() {
    let ranges = [
        (v4(0), v4(u32::MAX)),
        (v4(0), v4(0)),
        (v4(u32::MAX), v4(u32::MAX)),
        (v4(u32::MAX - 1), v4(u32::MAX)),
        (v4(1), v4(u32::MAX - 1)),
        (v6(0), v6(u128::MAX)),
        (v6(1), v6(u128::MAX)),
        (v6(0), v6(u128::MAX - 1)),
        (v6(u128::MAX), v6(u128::MAX)),
        (v6(1 << 64), v6((1 << 65) - 1)),
    ];
    for (a, b) in ranges {
        let r = AddrRange::new(a, b).unwrap();
        assert_eq!(r.to_cidrs(), old_to_cidrs(&r), "{r}");
        check_cover(&r);
    }
}

fn check_cover(r: &AddrRange) {
    let cidrs = r.to_cidrs();
    // In order, adjacent, aligned, exactly covering start..=end.
    let mut next = r.start_u128();
    for (i, c) in cidrs.iter().enumerate() {
        let net = ip_to_u128(c.network());
        let last = ip_to_u128(c.broadcast());
        assert_eq!(
            net, next,
            "{r}: cidr {i} {c} does not start where the previous ended"
        );
        assert_eq!(c.trunc(), *c, "{c} not aligned");
        if i + 1 == cidrs.len() {
            assert_eq!(
                last,
                r.end_u128(),
                "{r}: last cidr {c} does not end at the end"
            );
        } else {
            next = last + 1;
        }
    }
    // Minimal: no two neighbours could merge into one aligned block.
    for w in cidrs.windows(2) {
        let merged = w[0].supernet().filter(|s| w[1].supernet() == Some(*s));
        assert!(
            merged.is_none() || w[0].prefix_len() != w[1].prefix_len(),
            "{r}: {} and {} merge",
            w[0],
            w[1]
        );
    }
}

proptest! {
    #[test]
    fn v4_ranges_decompose_exactly(a in any::<u32>(), b in any::<u32>()) {
        let (s, e) = (a.min(b), a.max(b));
        let r = AddrRange::new(IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(e))).unwrap();
        check_cover(&r);
        prop_assert_eq!(r.to_cidrs(), old_to_cidrs(&r));
        prop_assert_eq!(r.len(), u128::from(e - s) + 1);
    }

    #[test]
    fn v6_ranges_decompose_exactly(a in any::<u128>(), span in 0u128..1_000_000) {
        let e = a.saturating_add(span);
        let r = AddrRange::new(IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(e))).unwrap();
        check_cover(&r);
        prop_assert_eq!(r.to_cidrs(), old_to_cidrs(&r));
    }

    #[test]
    fn wide_v6_ranges_equal_the_old_decomposition(a in any::<u128>(), b in any::<u128>()) {
        let r = AddrRange::new(v6(a.min(b)), v6(a.max(b))).unwrap();
        check_cover(&r);
        prop_assert_eq!(r.to_cidrs(), old_to_cidrs(&r));
    }

    #[test]
    fn two_pools_are_rejected_exactly_when_ranges_share_an_address(
        a in 0u32..64, b in 0u32..64, c in 0u32..64, d in 0u32..64,
    ) {
        let (a, b) = (a.min(b), a.max(b));
        let (c, d) = (c.min(d), c.max(d));
        let text = format!(
            "address-pools:\n- {{name: x, protocol: bgp, addresses: [10.0.0.{a}-10.0.0.{b}]}}\n\
             - {{name: y, protocol: layer2, addresses: [10.0.0.{c}-10.0.0.{d}]}}\n"
        );
        let overlap = a <= d && c <= b;
        prop_assert_eq!(Config::parse(&text).is_err(), overlap, "{}", text);
    }
}
