//! ARP over Ethernet (RFC 826) for IPv4: parse a request, build the reply, build
//! gratuitous announcements. Pure: bytes in, values out.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------+-------------------------------+
//! |   Hardware type (1 = Ether)   |    Protocol type (0x0800)     |
//! +---------------+---------------+-------------------------------+
//! |  HW len (6)   | Proto len (4) |  Operation (1 req, 2 reply)   |
//! +---------------+---------------+-------------------------------+
//! |          Sender hardware address (6) | Sender protocol addr (4)
//! |          Target hardware address (6) | Target protocol addr (4)
//! +---------------------------------------------------------------+
//! ```
//! The 28-byte packet follows a 14-byte Ethernet header (EtherType 0x0806).

use std::net::Ipv4Addr;

use crate::eth::{self, ETHERTYPE_ARP, Mac};

/// Length of an Ethernet frame carrying ARP (header + 28 bytes; no padding).
pub const FRAME_LEN: usize = eth::HEADER_LEN + 28;

/// ARP operation code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// 1: who-has.
    Request,
    /// 2: is-at.
    Reply,
}

impl Op {
    fn code(self) -> u16 {
        match self {
            Op::Request => 1,
            Op::Reply => 2,
        }
    }
}

/// An Ethernet frame carrying an Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpFrame {
    /// Ethernet destination.
    pub eth_dst: Mac,
    /// Ethernet source.
    pub eth_src: Mac,
    /// Operation.
    pub op: Op,
    /// Sender hardware address.
    pub sha: Mac,
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target hardware address.
    pub tha: Mac,
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

/// Why a frame is not an ARP packet this crate understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArpParseError {
    /// Shorter than 42 bytes.
    #[error("frame too short for ARP ({0} bytes)")]
    Short(usize),
    /// EtherType is not 0x0806.
    #[error("EtherType {0:#06x} is not ARP")]
    EtherType(u16),
    /// Not Ethernet hardware / IPv4 protocol with 6/4-byte addresses.
    #[error("not Ethernet/IPv4 ARP (htype {htype}, ptype {ptype:#06x}, hlen {hlen}, plen {plen})")]
    Format {
        /// Hardware type.
        htype: u16,
        /// Protocol type.
        ptype: u16,
        /// Hardware address length.
        hlen: u8,
        /// Protocol address length.
        plen: u8,
    },
    /// Operation other than request or reply (RARP, InARP, ...).
    #[error("ARP operation {0} is not request or reply")]
    Op(u16),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ipv4(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

impl ArpFrame {
    /// Parses an Ethernet frame (trailing padding is ignored).
    pub fn parse(frame: &[u8]) -> Result<ArpFrame, ArpParseError> {
        if frame.len() < FRAME_LEN {
            return Err(ArpParseError::Short(frame.len()));
        }
        let ethertype = be16(frame, 12);
        if ethertype != ETHERTYPE_ARP {
            return Err(ArpParseError::EtherType(ethertype));
        }
        let a = &frame[eth::HEADER_LEN..];
        let (htype, ptype, hlen, plen) = (be16(a, 0), be16(a, 2), a[4], a[5]);
        if htype != 1 || ptype != 0x0800 || hlen != 6 || plen != 4 {
            return Err(ArpParseError::Format {
                htype,
                ptype,
                hlen,
                plen,
            });
        }
        let op = match be16(a, 6) {
            1 => Op::Request,
            2 => Op::Reply,
            o => return Err(ArpParseError::Op(o)),
        };
        Ok(ArpFrame {
            eth_dst: Mac::read(&frame[0..]),
            eth_src: Mac::read(&frame[6..]),
            op,
            sha: Mac::read(&a[8..]),
            spa: ipv4(a, 14),
            tha: Mac::read(&a[18..]),
            tpa: ipv4(a, 24),
        })
    }

    /// The 42-byte frame.
    pub fn encode(&self) -> [u8; FRAME_LEN] {
        let mut f = [0u8; FRAME_LEN];
        eth::write_header(&mut f, self.eth_dst, self.eth_src, ETHERTYPE_ARP);
        let a = &mut f[eth::HEADER_LEN..];
        a[0..2].copy_from_slice(&1u16.to_be_bytes());
        a[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        a[4] = 6;
        a[5] = 4;
        a[6..8].copy_from_slice(&self.op.code().to_be_bytes());
        a[8..14].copy_from_slice(&self.sha.0);
        a[14..18].copy_from_slice(&self.spa.octets());
        a[18..24].copy_from_slice(&self.tha.0);
        a[24..28].copy_from_slice(&self.tpa.octets());
        f
    }

    /// The reply to this request from `mac`, which holds the requested address: unicast
    /// to the asker, `tpa is-at mac`, addressed to the asker's hardware and protocol
    /// addresses (for an RFC 5227 probe, sender 0.0.0.0, that is 0.0.0.0, as Linux does).
    pub fn reply(&self, mac: Mac) -> ArpFrame {
        ArpFrame {
            eth_dst: self.sha,
            eth_src: mac,
            op: Op::Reply,
            sha: mac,
            spa: self.tpa,
            tha: self.sha,
            tpa: self.spa,
        }
    }
}

/// The two gratuitous ARP packets announcing that `ip` is at `mac`, both broadcast,
/// sender and target protocol address `ip`, as MetalLB sends them at each step of a burst:
///
/// 1. the request form (an RFC 5227 §2.3 "ARP Announcement": target hardware address
///    zero), which RFC 5227 recommends and which every Linux and switch accepts;
/// 2. the reply form (RFC 2002 §4.6: target hardware address = sender's), for the
///    devices that only update their tables from replies.
///
/// Linux updates an existing neighbour entry from either form (it creates none unless
/// `arp_accept` is set), so peers that talked to the previous owner move at once, and
/// it treats both as gratuitous (skipping its 1 s `locktime`) only when they look like
/// this: sender = target address, and for the reply form target hardware = sender
/// hardware. MetalLB puts the broadcast address in both target hardware fields, so
/// Linux does not take its reply form as gratuitous.
/// (`tests/netns.rs` checks a neighbour's entry moves on the first announcement.)
pub fn gratuitous(mac: Mac, ip: Ipv4Addr) -> [ArpFrame; 2] {
    let base = ArpFrame {
        eth_dst: Mac::BROADCAST,
        eth_src: mac,
        op: Op::Request,
        sha: mac,
        spa: ip,
        tha: Mac::ZERO,
        tpa: ip,
    };
    [
        base,
        ArpFrame {
            op: Op::Reply,
            tha: mac,
            ..base
        },
    ]
}

/// Why a received ARP frame gets no answer (the responder's drop reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpIgnore {
    /// Not a valid Ethernet/IPv4 ARP frame.
    Malformed,
    /// A reply (only requests are answered).
    NotRequest,
    /// Sent by this interface (our own gratuitous frames, or the kernel's).
    OwnFrame,
    /// Ethernet destination neither broadcast nor this interface's MAC.
    NotForUs,
    /// Sender address = target address: someone announcing its own address, not asking.
    Announcement,
    /// The target address is not owned here on this interface.
    NotOwned,
}

/// Decides what to do with a frame received on an interface with MAC `mac`:
/// `Ok((reply, target))` when it is a request for an address `owns` accepts.
pub fn answer(
    frame: &[u8],
    mac: Mac,
    owns: impl Fn(Ipv4Addr) -> bool,
) -> Result<(ArpFrame, Ipv4Addr), ArpIgnore> {
    let req = ArpFrame::parse(frame).map_err(|_| ArpIgnore::Malformed)?;
    if req.op != Op::Request {
        return Err(ArpIgnore::NotRequest);
    }
    if req.eth_src == mac || req.sha == mac {
        return Err(ArpIgnore::OwnFrame);
    }
    if req.eth_dst != Mac::BROADCAST && req.eth_dst != mac {
        return Err(ArpIgnore::NotForUs);
    }
    if req.spa == req.tpa {
        return Err(ArpIgnore::Announcement);
    }
    if !owns(req.tpa) {
        return Err(ArpIgnore::NotOwned);
    }
    Ok((req.reply(mac), req.tpa))
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

    // Captured with tcpdump -w: iputils `arping -I veth0 192.0.2.10` from
    // 02:00:00:00:00:0b / 192.0.2.1.
    const ARPING_REQUEST: &str = "ffff ffff ffff 0200 0000 000b 0806 0001
        0800 0604 0001 0200 0000 000b c000 0201 ffff ffff ffff c000 020a";
    // Captured: `arping -I veth0 192.0.2.1` from 02:..:0a / 192.0.2.2, and the Linux
    // kernel's reply from 02:..:0b, which owns 192.0.2.1.
    const KERNEL_REQUEST: &str = "ffff ffff ffff 0200 0000 000a 0806 0001
        0800 0604 0001 0200 0000 000a c000 0202 ffff ffff ffff c000 0201";
    const KERNEL_REPLY: &str = "0200 0000 000a 0200 0000 000b 0806 0001
        0800 0604 0002 0200 0000 000b c000 0201 0200 0000 000a c000 0202";
    // Captured: `arping -U` (unsolicited request form) and `arping -A` (reply form)
    // from 02:..:0b for 192.0.2.1.
    const ARPING_U: &str = "ffff ffff ffff 0200 0000 000b 0806 0001
        0800 0604 0001 0200 0000 000b c000 0201 ffff ffff ffff c000 0201";
    const ARPING_A: &str = "ffff ffff ffff 0200 0000 000b 0806 0001
        0800 0604 0002 0200 0000 000b c000 0201 0200 0000 000b c000 0201";

    #[test]
    fn parses_arping_request_both_ways() {
        let bytes = hex(ARPING_REQUEST);
        let f = ArpFrame::parse(&bytes).unwrap();
        assert_eq!(
            f,
            ArpFrame {
                eth_dst: Mac::BROADCAST,
                eth_src: B,
                op: Op::Request,
                sha: B,
                spa: Ipv4Addr::new(192, 0, 2, 1),
                tha: Mac::BROADCAST,
                tpa: Ipv4Addr::new(192, 0, 2, 10),
            }
        );
        assert_eq!(f.encode().to_vec(), bytes);
    }

    #[test]
    fn reply_matches_the_linux_kernel_byte_for_byte() {
        let req = ArpFrame::parse(&hex(KERNEL_REQUEST)).unwrap();
        let (reply, target) = answer(&hex(KERNEL_REQUEST), B, |ip| {
            ip == Ipv4Addr::new(192, 0, 2, 1)
        })
        .unwrap();
        assert_eq!(target, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(reply, req.reply(B));
        assert_eq!(reply.encode().to_vec(), hex(KERNEL_REPLY));
    }

    #[test]
    fn gratuitous_forms() {
        let ip = Ipv4Addr::new(192, 0, 2, 1);
        let [req, rep] = gratuitous(B, ip);
        // The reply form is what iputils `arping -A` sends, byte for byte.
        assert_eq!(rep.encode().to_vec(), hex(ARPING_A));
        // The request form differs from `arping -U` only in the target hardware
        // address (zero per RFC 5227 instead of broadcast): bytes 32..38.
        let ours = req.encode();
        let theirs = hex(ARPING_U);
        assert_eq!(ours[..32], theirs[..32]);
        assert_eq!(ours[32..38], [0; 6]);
        assert_eq!(ours[38..], theirs[38..]);
        // Both parse back as themselves.
        assert_eq!(ArpFrame::parse(&ours).unwrap(), req);
    }

    #[test]
    fn answer_filters() {
        let owned = |ip: Ipv4Addr| ip == Ipv4Addr::new(192, 0, 2, 10);
        let req = hex(ARPING_REQUEST);
        assert!(answer(&req, A, owned).is_ok());
        // Not owned.
        assert_eq!(answer(&req, A, |_| false).unwrap_err(), ArpIgnore::NotOwned);
        // Our own frame (sent from A).
        assert_eq!(answer(&req, B, owned).unwrap_err(), ArpIgnore::OwnFrame);
        // Replies are not answered.
        let mut rep = ArpFrame::parse(&req).unwrap();
        rep.op = Op::Reply;
        assert_eq!(
            answer(&rep.encode(), A, owned).unwrap_err(),
            ArpIgnore::NotRequest
        );
        // Unicast to someone else.
        let mut other = ArpFrame::parse(&req).unwrap();
        other.eth_dst = Mac([0x02, 0, 0, 0, 0, 0x0c]);
        assert_eq!(
            answer(&other.encode(), A, owned).unwrap_err(),
            ArpIgnore::NotForUs
        );
        // Unicast to us (a neighbour re-validating its cache) is answered.
        other.eth_dst = A;
        assert!(answer(&other.encode(), A, owned).is_ok());
        // Someone else's gratuitous announcement of the owned address.
        let [g, _] = gratuitous(B, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(
            answer(&g.encode(), A, owned).unwrap_err(),
            ArpIgnore::Announcement
        );
        // An RFC 5227 probe (sender 0.0.0.0) for the owned address is answered
        // (defending it), addressed to 0.0.0.0 at the prober's MAC.
        let mut probe = ArpFrame::parse(&req).unwrap();
        probe.spa = Ipv4Addr::UNSPECIFIED;
        probe.tha = Mac::ZERO;
        let (r, _) = answer(&probe.encode(), A, owned).unwrap();
        assert_eq!((r.eth_dst, r.tpa), (B, Ipv4Addr::UNSPECIFIED));
        // Truncated and non-ARP frames.
        assert_eq!(
            answer(&req[..41], A, owned).unwrap_err(),
            ArpIgnore::Malformed
        );
    }

    #[test]
    fn parse_errors() {
        let req = hex(ARPING_REQUEST);
        assert_eq!(ArpFrame::parse(&req[..30]), Err(ArpParseError::Short(30)));
        let mut v = req.clone();
        v[12] = 0x86;
        v[13] = 0xdd;
        assert_eq!(ArpFrame::parse(&v), Err(ArpParseError::EtherType(0x86dd)));
        let mut v = req.clone();
        v[18] = 8; // hlen
        assert!(matches!(
            ArpFrame::parse(&v),
            Err(ArpParseError::Format { hlen: 8, .. })
        ));
        let mut v = req.clone();
        v[21] = 3; // RARP request
        assert_eq!(ArpFrame::parse(&v), Err(ArpParseError::Op(3)));
        // Ethernet padding to 60 bytes is accepted.
        let mut v = req;
        v.resize(60, 0);
        assert!(ArpFrame::parse(&v).is_ok());
    }
}
