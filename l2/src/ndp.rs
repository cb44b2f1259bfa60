//! IPv6 Neighbor Discovery (RFC 4861) for one purpose: answer Neighbor Solicitations
//! for an address with our MAC, and announce it with unsolicited Neighbor
//! Advertisements. Whole Ethernet frames (Ethernet + IPv6 header + ICMPv6), since the
//! responder reads and writes them on an AF_PACKET socket. Pure: bytes in, values out.
//!
//! ```text
//! Neighbor Solicitation (type 135)          Neighbor Advertisement (type 136)
//! +--------+--------+----------------+      +--------+--------+----------------+
//! |  135   |   0    |    Checksum    |      |  136   |   0    |    Checksum    |
//! +--------+--------+----------------+      +-+-+-+--+--------+----------------+
//! |            Reserved              |      |R|S|O|       Reserved             |
//! +----------------------------------+      +-+-+-+----------------------------+
//! |      Target Address (16)         |      |      Target Address (16)         |
//! +----------------------------------+      +----------------------------------+
//! | Options: Source Link-Layer (1)   |      | Options: Target Link-Layer (2)   |
//! ```
//! An option is `type, length in units of 8 octets, data`; the link-layer address
//! options carry the 6-byte MAC (length 1).

use std::net::Ipv6Addr;

use crate::eth::{self, ETHERTYPE_IPV6, Mac};

/// IPv6 header length.
const IP6_LEN: usize = 40;
/// Next-header value of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 type of a Neighbor Solicitation.
pub const TYPE_NS: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement.
pub const TYPE_NA: u8 = 136;
/// Offset of the ICMPv6 message in an Ethernet frame.
pub const ICMP_OFFSET: usize = eth::HEADER_LEN + IP6_LEN;
/// Length of the Neighbor Advertisements built here: 24 bytes + one 8-byte option.
const NA_ICMP_LEN: usize = 32;
/// Length of an Ethernet frame carrying such an advertisement.
pub const NA_FRAME_LEN: usize = ICMP_OFFSET + NA_ICMP_LEN;

/// `ff02::1`, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The solicited-node multicast address of `ip` (RFC 4291 §2.7.1):
/// `ff02::1:ff00:0/104` with the low 24 bits of `ip`.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address of an IPv6 multicast group (RFC 2464 §7): `33:33` and the
/// group's low 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// A Neighbor Solicitation that passed the RFC 4861 §7.1.1 validity checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborSolicitation {
    /// Ethernet destination.
    pub eth_dst: Mac,
    /// Ethernet source.
    pub eth_src: Mac,
    /// IPv6 source (unspecified for Duplicate Address Detection).
    pub src: Ipv6Addr,
    /// IPv6 destination (solicited-node multicast or the target itself).
    pub dst: Ipv6Addr,
    /// The address being asked about.
    pub target: Ipv6Addr,
    /// The Source Link-Layer Address option, when present.
    pub source_lla: Option<Mac>,
}

/// Why a frame is not a valid Neighbor Solicitation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdpParseError {
    /// Frame shorter than its headers or than the IPv6 payload length says.
    #[error("frame truncated")]
    Short,
    /// Not IPv6 over Ethernet, or not IP version 6.
    #[error("not an IPv6 frame")]
    NotIpv6,
    /// The IPv6 next header is not ICMPv6 (extension headers are not followed).
    #[error("next header {0} is not ICMPv6")]
    NotIcmpv6(u8),
    /// ICMPv6 type other than 135.
    #[error("ICMPv6 type {0} is not a Neighbor Solicitation")]
    NotSolicitation(u8),
    /// RFC 4861 §7.1.1: the hop limit must be 255 (sent on this link).
    #[error("hop limit {0} is not 255")]
    HopLimit(u8),
    /// RFC 4861 §7.1.1: ICMP code must be 0.
    #[error("ICMP code {0} is not 0")]
    Code(u8),
    /// RFC 4861 §7.1.1: ICMP length must be 24 or more.
    #[error("ICMP length {0} is below 24")]
    IcmpLength(usize),
    /// RFC 4861 §7.1.1: the checksum must be valid.
    #[error("ICMPv6 checksum invalid")]
    Checksum,
    /// RFC 4861 §7.1.1: the target must not be a multicast address.
    #[error("target {0} is multicast")]
    MulticastTarget(Ipv6Addr),
    /// RFC 4861 §7.1.1: every option must have a length above zero and fit.
    #[error("malformed option")]
    BadOption,
    /// RFC 4861 §7.1.1: with an unspecified source, the destination must be a
    /// solicited-node multicast address and there must be no source link-layer option.
    #[error("invalid Duplicate Address Detection solicitation")]
    BadDad,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

fn is_solicited_node(a: Ipv6Addr) -> bool {
    let s = a.segments();
    s[..5] == [0xff02, 0, 0, 0, 0] && s[5] == 1 && s[6] & 0xff00 == 0xff00
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `icmp` (its checksum field as given)
/// over the IPv6 pseudo-header (RFC 8200 §8.1). A message with a correct checksum
/// in place yields 0.
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += u32::from(w);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(icmp);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl NeighborSolicitation {
    /// Parses and validates an Ethernet frame (RFC 4861 §7.1.1). Trailing bytes beyond
    /// the IPv6 payload length (Ethernet padding) are ignored.
    pub fn parse(frame: &[u8]) -> Result<NeighborSolicitation, NdpParseError> {
        if frame.len() < ICMP_OFFSET {
            return Err(NdpParseError::Short);
        }
        if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_IPV6 {
            return Err(NdpParseError::NotIpv6);
        }
        let ip = &frame[eth::HEADER_LEN..];
        if ip[0] >> 4 != 6 {
            return Err(NdpParseError::NotIpv6);
        }
        let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if ip[6] != NEXT_HEADER_ICMPV6 {
            return Err(NdpParseError::NotIcmpv6(ip[6]));
        }
        if frame.len() < ICMP_OFFSET + payload_len {
            return Err(NdpParseError::Short);
        }
        let icmp = &frame[ICMP_OFFSET..ICMP_OFFSET + payload_len];
        if icmp.is_empty() {
            return Err(NdpParseError::Short);
        }
        if icmp[0] != TYPE_NS {
            return Err(NdpParseError::NotSolicitation(icmp[0]));
        }
        let (hop_limit, src, dst) = (ip[7], addr(&ip[8..]), addr(&ip[24..]));
        if hop_limit != 255 {
            return Err(NdpParseError::HopLimit(hop_limit));
        }
        if icmp.len() < 24 {
            return Err(NdpParseError::IcmpLength(icmp.len()));
        }
        if icmp[1] != 0 {
            return Err(NdpParseError::Code(icmp[1]));
        }
        if checksum(src, dst, icmp) != 0 {
            return Err(NdpParseError::Checksum);
        }
        let target = addr(&icmp[8..]);
        if target.is_multicast() {
            return Err(NdpParseError::MulticastTarget(target));
        }
        let mut source_lla = None;
        let mut opts = &icmp[24..];
        while !opts.is_empty() {
            if opts.len() < 2 || opts[1] == 0 || opts.len() < usize::from(opts[1]) * 8 {
                return Err(NdpParseError::BadOption);
            }
            let len = usize::from(opts[1]) * 8;
            // Source Link-Layer Address; for Ethernet its length is 1 (RFC 2464 §6).
            if opts[0] == 1 && len == 8 && source_lla.is_none() {
                source_lla = Some(Mac::read(&opts[2..]));
            }
            opts = &opts[len..];
        }
        if src.is_unspecified() && (!is_solicited_node(dst) || source_lla.is_some()) {
            return Err(NdpParseError::BadDad);
        }
        Ok(NeighborSolicitation {
            eth_dst: Mac::read(frame),
            eth_src: Mac::read(&frame[6..]),
            src,
            dst,
            target,
            source_lla,
        })
    }
}

/// A Neighbor Advertisement with a Target Link-Layer Address option, as sent here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborAdvertisement {
    /// Ethernet destination.
    pub eth_dst: Mac,
    /// Ethernet source.
    pub eth_src: Mac,
    /// IPv6 source (the target itself in what [`advertise`] and [`unsolicited`] build).
    pub src: Ipv6Addr,
    /// IPv6 destination: the solicitor, or all nodes.
    pub dst: Ipv6Addr,
    /// Router flag.
    pub router: bool,
    /// Solicited flag: a response to a solicitation.
    pub solicited: bool,
    /// Override flag: replace an existing cache entry.
    pub override_: bool,
    /// The address advertised.
    pub target: Ipv6Addr,
    /// Its link-layer address (Target Link-Layer Address option).
    pub target_lla: Mac,
}

impl NeighborAdvertisement {
    /// The frame: Ethernet, IPv6 (hop limit 255, flow label 0), ICMPv6 with checksum.
    pub fn encode(&self) -> [u8; NA_FRAME_LEN] {
        let mut f = [0u8; NA_FRAME_LEN];
        eth::write_header(&mut f, self.eth_dst, self.eth_src, ETHERTYPE_IPV6);
        let ip = &mut f[eth::HEADER_LEN..ICMP_OFFSET];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(NA_ICMP_LEN as u16).to_be_bytes());
        ip[6] = NEXT_HEADER_ICMPV6;
        ip[7] = 255;
        ip[8..24].copy_from_slice(&self.src.octets());
        ip[24..40].copy_from_slice(&self.dst.octets());
        let icmp = &mut f[ICMP_OFFSET..];
        icmp[0] = TYPE_NA;
        icmp[4] = u8::from(self.router) << 7
            | u8::from(self.solicited) << 6
            | u8::from(self.override_) << 5;
        icmp[8..24].copy_from_slice(&self.target.octets());
        icmp[24] = 2;
        icmp[25] = 1;
        icmp[26..32].copy_from_slice(&self.target_lla.0);
        let c = checksum(self.src, self.dst, icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f
    }
}

/// The advertisement answering `ns` from an interface with MAC `mac` (RFC 4861
/// §7.2.4): Solicited and Override set, sent to the solicitor at its Source Link-Layer
/// Address (or the frame's source when the option is absent, as in unicast reachability
/// probes). A Duplicate Address Detection probe (source unspecified) is answered to all
/// nodes with Solicited clear, defending the address.
///
/// The IPv6 source is the target address itself, exactly as Linux answers for its own
/// addresses (the service address is, to the link, ours). MetalLB sends from the
/// interface's link-local address instead; some receivers ignore that: `ndisc6` drops an
/// answer whose source has a different scope than the (global) target.
///
/// Override is set (as Linux does for addresses that are not anycast) so that a
/// neighbour still holding the previous owner's MAC replaces it; MetalLB leaves it
/// clear on solicited answers.
pub fn advertise(ns: &NeighborSolicitation, mac: Mac) -> NeighborAdvertisement {
    let dad = ns.src.is_unspecified();
    NeighborAdvertisement {
        eth_dst: if dad {
            multicast_mac(ALL_NODES)
        } else {
            ns.source_lla.unwrap_or(ns.eth_src)
        },
        eth_src: mac,
        src: ns.target,
        dst: if dad { ALL_NODES } else { ns.src },
        router: false,
        solicited: !dad,
        override_: true,
        target: ns.target,
        target_lla: mac,
    }
}

/// An unsolicited Neighbor Advertisement (RFC 4861 §7.2.6) announcing that `target`
/// is at `mac`: to all nodes (`ff02::1`), Override set, Solicited clear, from `target`
/// itself (as Linux sends them for its own addresses, see [`advertise`]).
pub fn unsolicited(mac: Mac, target: Ipv6Addr) -> NeighborAdvertisement {
    NeighborAdvertisement {
        eth_dst: multicast_mac(ALL_NODES),
        eth_src: mac,
        src: target,
        dst: ALL_NODES,
        router: false,
        solicited: false,
        override_: true,
        target,
        target_lla: mac,
    }
}

/// Why a received frame gets no advertisement (the responder's drop reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdpIgnore {
    /// Not a valid Neighbor Solicitation.
    Invalid,
    /// Sent by this interface.
    OwnFrame,
    /// Ethernet destination neither multicast nor this interface's MAC.
    NotForUs,
    /// The target is not owned here on this interface.
    NotOwned,
}

/// Decides what to do with a frame received on an interface with MAC `mac`:
/// `Ok(advertisement)` when it is a valid solicitation for an address `owns` accepts.
pub fn answer(
    frame: &[u8],
    mac: Mac,
    owns: impl Fn(Ipv6Addr) -> bool,
) -> Result<NeighborAdvertisement, NdpIgnore> {
    let ns = NeighborSolicitation::parse(frame).map_err(|_| NdpIgnore::Invalid)?;
    if ns.eth_src == mac || ns.source_lla == Some(mac) {
        return Err(NdpIgnore::OwnFrame);
    }
    if !ns.eth_dst.is_multicast() && ns.eth_dst != mac {
        return Err(NdpIgnore::NotForUs);
    }
    if !owns(ns.target) {
        return Err(NdpIgnore::NotOwned);
    }
    Ok(advertise(&ns, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const A: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
    const B: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
    const C: Mac = Mac([0x02, 0, 0, 0, 0, 0x0c]);

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    // Captured with tcpdump -w: `ndisc6 2001:db8::10 veth0` from 02:..:0b (fe80::ff:fe00:b).
    const NDISC6_NS: &str = "3333 ff00 0010 0200 0000 000b 86dd 600e
        3f0a 0020 3aff fe80 0000 0000 0000 0000 00ff fe00 000b ff02 0000 0000 0000 0000
        0001 ff00 0010 8700 4c2f 0000 0000 2001 0db8 0000 0000 0000 0000 0000 0010 0101
        0200 0000 000b";
    // Captured: `ndisc6 2001:db8::1 veth0` from 02:..:0a (fe80::ff:fe00:a) and the Linux
    // kernel's answer from 02:..:0b, which has 2001:db8::1 (so its source is that address).
    const KERNEL_NS: &str = "3333 ff00 0001 0200 0000 000a 86dd 6003
        d874 0020 3aff fe80 0000 0000 0000 0000 00ff fe00 000a ff02 0000 0000 0000 0000
        0001 ff00 0001 8700 4c4f 0000 0000 2001 0db8 0000 0000 0000 0000 0000 0001 0101
        0200 0000 000a";
    const KERNEL_NA: &str = "0200 0000 000a 0200 0000 000b 86dd 6000
        0000 0020 3aff 2001 0db8 0000 0000 0000 0000 0000 0001 fe80 0000 0000 0000 0000
        00ff fe00 000a 8800 ba99 6000 0000 2001 0db8 0000 0000 0000 0000 0000 0001 0201
        0200 0000 000b";
    // Captured: the kernel's unsolicited advertisement (`ndisc_notify=1`, MAC changed to
    // 02:..:0c) for its link-local fe80::ff:fe00:b.
    const KERNEL_UNSOLICITED: &str = "3333 0000 0001 0200 0000 000c 86dd 6000
        0000 0020 3aff fe80 0000 0000 0000 0000 00ff fe00 000b ff02 0000 0000 0000 0000
        0000 0000 0001 8800 597c 2000 0000 fe80 0000 0000 0000 0000 00ff fe00 000b 0201
        0200 0000 000c";

    #[test]
    fn addresses() {
        assert_eq!(solicited_node(ip("2001:db8::10")), ip("ff02::1:ff00:10"));
        assert_eq!(
            solicited_node(ip("2001:db8::abcd:ef12:3456")),
            ip("ff02::1:ff12:3456")
        );
        assert_eq!(
            multicast_mac(ip("ff02::1:ff00:10")),
            Mac([0x33, 0x33, 0xff, 0, 0, 0x10])
        );
        assert!(is_solicited_node(ip("ff02::1:ff00:10")));
        assert!(!is_solicited_node(ip("ff02::1")));
    }

    #[test]
    fn parses_ndisc6_solicitation() {
        let ns = NeighborSolicitation::parse(&hex(NDISC6_NS)).unwrap();
        assert_eq!(
            ns,
            NeighborSolicitation {
                eth_dst: Mac([0x33, 0x33, 0xff, 0, 0, 0x10]),
                eth_src: B,
                src: ip("fe80::ff:fe00:b"),
                dst: ip("ff02::1:ff00:10"),
                target: ip("2001:db8::10"),
                source_lla: Some(B),
            }
        );
    }

    #[test]
    fn checksum_matches_captures() {
        for v in [NDISC6_NS, KERNEL_NS, KERNEL_NA, KERNEL_UNSOLICITED] {
            let f = hex(v);
            let (src, dst) = (addr(&f[22..]), addr(&f[38..]));
            assert_eq!(checksum(src, dst, &f[ICMP_OFFSET..]), 0, "{v}");
            let mut zeroed = f[ICMP_OFFSET..].to_vec();
            let want = u16::from_be_bytes([zeroed[2], zeroed[3]]);
            zeroed[2] = 0;
            zeroed[3] = 0;
            assert_eq!(checksum(src, dst, &zeroed), want);
        }
    }

    #[test]
    fn advertisement_matches_the_linux_kernel_byte_for_byte() {
        let ns = NeighborSolicitation::parse(&hex(KERNEL_NS)).unwrap();
        // Same source (the target), same flags, same option: the kernel's frame exactly.
        let na = advertise(&ns, B);
        assert!(na.solicited && na.override_ && !na.router);
        assert_eq!(na.dst, ip("fe80::ff:fe00:a"));
        assert_eq!(na.encode().to_vec(), hex(KERNEL_NA));
    }

    #[test]
    fn unsolicited_matches_the_linux_kernel_byte_for_byte() {
        let na = unsolicited(C, ip("fe80::ff:fe00:b"));
        assert_eq!(na.encode().to_vec(), hex(KERNEL_UNSOLICITED));
    }

    #[test]
    fn answer_from_the_target_and_filters() {
        let owned = |t: Ipv6Addr| t == ip("2001:db8::10");
        let f = hex(NDISC6_NS);
        let na = answer(&f, A, owned).unwrap();
        assert_eq!(
            (na.eth_dst, na.src, na.dst, na.target, na.target_lla),
            (
                B,
                ip("2001:db8::10"),
                ip("fe80::ff:fe00:b"),
                ip("2001:db8::10"),
                A
            )
        );
        let enc = na.encode();
        assert_eq!(checksum(na.src, na.dst, &enc[ICMP_OFFSET..]), 0);
        assert_eq!(enc[ICMP_OFFSET + 4], 0x60); // S|O
        assert_eq!(answer(&f, A, |_| false), Err(NdpIgnore::NotOwned));
        assert_eq!(answer(&f, B, owned), Err(NdpIgnore::OwnFrame));
        // Unicast to another MAC.
        let mut g = f.clone();
        g[..6].copy_from_slice(&C.0);
        assert_eq!(answer(&g, A, owned), Err(NdpIgnore::NotForUs));
        // Unicast to us (a reachability probe) is answered.
        g[..6].copy_from_slice(&A.0);
        assert!(answer(&g, A, owned).is_ok());
    }

    /// Rebuilds a solicitation with a fresh checksum after `edit`.
    fn ns_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut f = hex(NDISC6_NS);
        edit(&mut f);
        let (src, dst) = (addr(&f[22..]), addr(&f[38..]));
        f[ICMP_OFFSET + 2] = 0;
        f[ICMP_OFFSET + 3] = 0;
        let c = checksum(src, dst, &f[ICMP_OFFSET..]);
        f[ICMP_OFFSET + 2..ICMP_OFFSET + 4].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn rfc4861_validity_checks() {
        use NdpParseError as E;
        let parse = |f: &[u8]| NeighborSolicitation::parse(f);
        assert_eq!(parse(&ns_with(|f| f[21] = 64)), Err(E::HopLimit(64)));
        assert_eq!(parse(&ns_with(|f| f[55] = 1)), Err(E::Code(1)));
        let mut bad = hex(NDISC6_NS);
        bad[60] ^= 1;
        assert_eq!(parse(&bad), Err(E::Checksum));
        assert_eq!(
            parse(&ns_with(|f| f[62] = 0xff)),
            Err(E::MulticastTarget(ip("ff01:db8::10")))
        );
        // Zero-length option.
        assert_eq!(parse(&ns_with(|f| f[79] = 0)), Err(E::BadOption));
        // Option longer than the message.
        assert_eq!(parse(&ns_with(|f| f[79] = 2)), Err(E::BadOption));
        // Too short for a solicitation: 16 bytes of ICMP.
        assert_eq!(
            parse(&ns_with(|f| {
                f.truncate(ICMP_OFFSET + 16);
                f[19] = 16;
            })),
            Err(E::IcmpLength(16))
        );
        // Truncated frame (payload length says 32).
        assert_eq!(parse(&hex(NDISC6_NS)[..70]), Err(E::Short));
        assert_eq!(parse(&ns_with(|f| f[20] = 0)), Err(E::NotIcmpv6(0)));
        assert_eq!(
            parse(&ns_with(|f| f[54] = TYPE_NA)),
            Err(E::NotSolicitation(TYPE_NA))
        );
        // DAD: unspecified source with a source link-layer option is invalid ...
        assert_eq!(parse(&ns_with(|f| f[22..38].fill(0))), Err(E::BadDad));
        // ... without it, it is valid, and answered to all nodes, Solicited clear.
        let dad = ns_with(|f| {
            f[22..38].fill(0);
            f.truncate(ICMP_OFFSET + 24);
            f[19] = 24;
        });
        let ns = parse(&dad).unwrap();
        assert_eq!(ns.source_lla, None);
        let na = advertise(&ns, A);
        assert_eq!(
            (na.dst, na.solicited, na.override_),
            (ALL_NODES, false, true)
        );
        assert_eq!(na.eth_dst, Mac([0x33, 0x33, 0, 0, 0, 1]));
        // ... and to a non-solicited-node destination it is invalid.
        assert_eq!(
            parse(&ns_with(|f| {
                f[22..38].fill(0);
                f.truncate(ICMP_OFFSET + 24);
                f[19] = 24;
                f[38..54].copy_from_slice(&ALL_NODES.octets());
            })),
            Err(E::BadDad)
        );
        // Ethernet padding after the payload is ignored.
        let mut padded = hex(NDISC6_NS);
        padded.extend_from_slice(&[0; 4]);
        assert!(parse(&padded).is_ok());
    }
}
