//! The raw-socket shell: interface discovery (`getifaddrs`) and one `AF_PACKET` socket
//! per interface and protocol, driven by tokio.
//!
//! Both protocols use `AF_PACKET`: ARP bound to EtherType 0x0806, NDP bound to 0x86dd
//! with a kernel BPF filter that passes only ICMPv6 Neighbor Solicitations. For NDP
//! this was chosen over a raw ICMPv6 socket because the service address is on no
//! interface: the kernel's IPv6 input drops a unicast solicitation for it (the
//! reachability probes neighbours send to the owner's MAC) before a raw ICMPv6 socket
//! could see it, so those probes would go unanswered and neighbours would fall back to
//! multicast resolution each time; a packet socket sees them. Multicast solicitations
//! need the interface to accept the solicited-node group's MAC (`33:33:ffXX:XXXX`):
//! the socket joins it with `PACKET_ADD_MEMBERSHIP` for each owned IPv6 address.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{LinkAddr, MsgFlags, recvfrom, send};
use tokio::io::unix::AsyncFd;

use crate::L2Error;
use crate::eth::{ETHERTYPE_ARP, ETHERTYPE_IPV6, Mac};
use crate::sys::{self, Insn};

/// What discovery knows about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Its Ethernet address (none for interfaces without a 6-byte hardware address).
    pub mac: Option<Mac>,
    /// `IFF_UP`.
    pub up: bool,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// `IFF_BROADCAST`: the link can carry ARP.
    pub broadcast: bool,
    /// `IFF_NOARP`.
    pub noarp: bool,
    /// A port of a bridge or bond (it has a `master`): its frames are handled by the
    /// master interface, which is the one to answer on.
    pub enslaved: bool,
    /// Its first IPv6 link-local address. Without one (IPv6 disabled on the link) the
    /// interface does no NDP, as in MetalLB.
    pub ipv6_link_local: Option<Ipv6Addr>,
}

impl LinkInfo {
    /// The interface can answer ARP (as MetalLB: up, broadcast-capable, ARP not
    /// disabled, not a bridge/bond port, and a MAC; loopback never).
    pub fn arp_capable(&self) -> bool {
        self.up
            && !self.loopback
            && self.broadcast
            && !self.noarp
            && !self.enslaved
            && self.mac.is_some_and(|m| m != Mac::ZERO)
    }

    /// The interface can answer NDP (as MetalLB: up, not a port, NOARP clear, an IPv6
    /// link-local address; here also a MAC, and not loopback).
    pub fn ndp_capable(&self) -> bool {
        self.up
            && !self.loopback
            && !self.noarp
            && !self.enslaved
            && self.ipv6_link_local.is_some()
            && self.mac.is_some_and(|m| m != Mac::ZERO)
    }
}

/// Lists the interfaces of the calling thread's network namespace.
pub fn scan() -> Result<Vec<LinkInfo>, L2Error> {
    let addrs = getifaddrs().map_err(|e| L2Error::io("getifaddrs", e.into()))?;
    let mut by_name: BTreeMap<String, LinkInfo> = BTreeMap::new();
    for a in addrs {
        let e = by_name
            .entry(a.interface_name.clone())
            .or_insert_with(|| LinkInfo {
                name: a.interface_name.clone(),
                index: 0,
                mac: None,
                up: false,
                loopback: false,
                broadcast: false,
                noarp: false,
                enslaved: false,
                ipv6_link_local: None,
            });
        e.up = a.flags.contains(InterfaceFlags::IFF_UP);
        e.loopback = a.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        e.broadcast = a.flags.contains(InterfaceFlags::IFF_BROADCAST);
        e.noarp = a.flags.contains(InterfaceFlags::IFF_NOARP);
        let Some(addr) = a.address else { continue };
        if let Some(ll) = addr.as_link_addr() {
            e.index = ll.ifindex() as u32;
            if ll.halen() == 6 {
                e.mac = ll.addr().map(Mac);
            }
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let ip = v6.ip();
            if ip.is_unicast_link_local() && e.ipv6_link_local.is_none() {
                e.ipv6_link_local = Some(ip);
            }
        }
    }
    let mut v: Vec<LinkInfo> = by_name.into_values().filter(|l| l.index != 0).collect();
    for l in &mut v {
        l.enslaved = enslaved(&l.name, l.index);
    }
    Ok(v)
}

/// Whether `/sys/class/net/NAME/master` exists. sysfs shows the network namespace it
/// was mounted in, which may not be this thread's (tests that `setns`): the check is
/// only trusted when the directory's `ifindex` is this interface's.
fn enslaved(name: &str, index: u32) -> bool {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    let same = std::fs::read_to_string(dir.join("ifindex"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(index);
    same && dir.join("master").exists()
}

/// Which protocol a [`PacketSocket`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// ARP requests.
    Arp,
    /// ICMPv6 Neighbor Solicitations (and sending advertisements).
    Ndp,
}

// Classic BPF, offsets from the start of the Ethernet header.
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// The ancillary "packet type" load (`SKF_AD_OFF + SKF_AD_PKTTYPE`).
const PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// ARP requests that this host did not send.
const ARP_FILTER: [Insn; 6] = [
    insn(LD_W_ABS, 0, 0, PKTTYPE),
    insn(JEQ_K, 3, 0, libc::PACKET_OUTGOING as u32), // ours: drop
    insn(LD_H_ABS, 0, 0, 20),                        // ARP operation
    insn(JEQ_K, 0, 1, 1),                            // request?
    insn(RET_K, 0, 0, 0xffff),
    insn(RET_K, 0, 0, 0),
];

/// ICMPv6 Neighbor Solicitations (no extension headers) that this host did not send.
const NDP_FILTER: [Insn; 8] = [
    insn(LD_W_ABS, 0, 0, PKTTYPE),
    insn(JEQ_K, 5, 0, libc::PACKET_OUTGOING as u32), // ours: drop
    insn(LD_B_ABS, 0, 0, 20),                        // IPv6 next header
    insn(JEQ_K, 0, 3, 58),                           // ICMPv6?
    insn(LD_B_ABS, 0, 0, 54),                        // ICMPv6 type
    insn(JEQ_K, 0, 1, 135),                          // Neighbor Solicitation?
    insn(RET_K, 0, 0, 0xffff),
    insn(RET_K, 0, 0, 0),
];

/// Packet types a responder handles: to us, broadcast, multicast (not other hosts'
/// frames seen in promiscuous mode, not our own).
fn wanted(pkttype: u8) -> bool {
    matches!(
        pkttype,
        libc::PACKET_HOST | libc::PACKET_BROADCAST | libc::PACKET_MULTICAST
    )
}

/// An `AF_PACKET` socket bound to one interface and protocol.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: u32,
}

impl PacketSocket {
    /// Opens the socket (filter attached before binding, so nothing unfiltered is
    /// queued). Must run inside a tokio runtime.
    pub(crate) fn open(ifindex: u32, proto: Proto) -> Result<PacketSocket, L2Error> {
        let fd = sys::packet_socket().map_err(|e| L2Error::io("socket(AF_PACKET)", e))?;
        let (prog, ethertype): (&[Insn], u16) = match proto {
            Proto::Arp => (&ARP_FILTER, ETHERTYPE_ARP),
            Proto::Ndp => (&NDP_FILTER, ETHERTYPE_IPV6),
        };
        sys::attach_filter(&fd, prog).map_err(|e| L2Error::io("SO_ATTACH_FILTER", e))?;
        sys::bind(&fd, ifindex, ethertype).map_err(|e| L2Error::io("bind(AF_PACKET)", e))?;
        let fd = sys::register(fd).map_err(|e| L2Error::io("register socket with tokio", e))?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Receives the next frame of a wanted packet type into `buf`; returns its length.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard
                .try_io(|fd| recvfrom::<LinkAddr>(fd.as_raw_fd(), buf).map_err(io::Error::from));
            match r {
                Ok(Ok((n, from))) => {
                    if from.is_none_or(|a| wanted(a.pkttype())) {
                        return Ok(n);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Transmits one whole Ethernet frame on the bound interface.
    pub(crate) async fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| {
                send(fd.as_raw_fd(), frame, MsgFlags::empty()).map_err(io::Error::from)
            }) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Joins or leaves a link-layer multicast group on the bound interface.
    pub(crate) fn membership(&self, mac: Mac, join: bool) -> io::Result<()> {
        sys::membership(self.fd.get_ref(), self.ifindex, mac, join)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> LinkInfo {
        LinkInfo {
            name: "eth0".into(),
            index: 2,
            mac: Some(Mac([2, 0, 0, 0, 0, 1])),
            up: true,
            loopback: false,
            broadcast: true,
            noarp: false,
            enslaved: false,
            ipv6_link_local: Some("fe80::1".parse().unwrap()),
        }
    }

    #[test]
    fn capability_follows_metallb() {
        assert!(link().arp_capable() && link().ndp_capable());
        let down = LinkInfo {
            up: false,
            ..link()
        };
        assert!(!down.arp_capable() && !down.ndp_capable());
        let lo = LinkInfo {
            loopback: true,
            ..link()
        };
        assert!(!lo.arp_capable() && !lo.ndp_capable());
        let port = LinkInfo {
            enslaved: true,
            ..link()
        };
        assert!(!port.arp_capable() && !port.ndp_capable());
        let noarp = LinkInfo {
            noarp: true,
            ..link()
        };
        assert!(!noarp.arp_capable() && !noarp.ndp_capable());
        let p2p = LinkInfo {
            broadcast: false,
            ..link()
        };
        assert!(!p2p.arp_capable() && p2p.ndp_capable());
        let no_ll = LinkInfo {
            ipv6_link_local: None,
            ..link()
        };
        assert!(no_ll.arp_capable() && !no_ll.ndp_capable());
        let no_mac = LinkInfo {
            mac: None,
            ..link()
        };
        assert!(!no_mac.arp_capable() && !no_mac.ndp_capable());
    }

    /// Runs a classic BPF program (only the instructions used here) over a frame.
    fn run(prog: &[Insn], frame: &[u8], pkttype: u8) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0;
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS if i.k == PKTTYPE => a = pkttype.into(),
                LD_H_ABS => {
                    let k = i.k as usize;
                    if k + 2 > frame.len() {
                        return 0;
                    }
                    a = u16::from_be_bytes([frame[k], frame[k + 1]]).into();
                }
                LD_B_ABS => match frame.get(i.k as usize) {
                    Some(b) => a = (*b).into(),
                    None => return 0,
                },
                JEQ_K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn filters_pass_exactly_what_the_responder_wants() {
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        let [req, rep] = crate::arp::gratuitous(mac, "192.0.2.1".parse().unwrap());
        let (req, rep) = (req.encode(), rep.encode());
        assert_ne!(run(&ARP_FILTER, &req, libc::PACKET_BROADCAST), 0);
        assert_eq!(run(&ARP_FILTER, &req, libc::PACKET_OUTGOING), 0);
        assert_eq!(run(&ARP_FILTER, &rep, libc::PACKET_BROADCAST), 0);

        let na = crate::ndp::unsolicited(mac, "2001:db8::1".parse().unwrap()).encode();
        assert_eq!(run(&NDP_FILTER, &na, libc::PACKET_MULTICAST), 0);
        let mut ns = na;
        ns[crate::ndp::ICMP_OFFSET] = crate::ndp::TYPE_NS;
        assert_ne!(run(&NDP_FILTER, &ns, libc::PACKET_MULTICAST), 0);
        assert_eq!(run(&NDP_FILTER, &ns, libc::PACKET_OUTGOING), 0);
        let mut udp = ns;
        udp[20] = 17;
        assert_eq!(run(&NDP_FILTER, &udp, libc::PACKET_HOST), 0);
        assert!(!wanted(libc::PACKET_OTHERHOST) && wanted(libc::PACKET_HOST));
    }
}
