//! Adding and removing one host address (/32 or /128) on an interface with
//! a hand-written rtnetlink message (RTM_NEWADDR / RTM_DELADDR) on nix's
//! safe netlink socket: [`encode`] is pure, [`add`] and [`remove`] send it.
//!
//! Both are idempotent: adding an address that is there (EEXIST) and
//! removing one that is not (EADDRNOTAVAIL) succeed.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    socket,
};

/// `RTM_NEWADDR` (linux/rtnetlink.h).
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_DELADDR`.
pub const RTM_DELADDR: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// `IFA_F_NODAD`: an IPv6 address usable at once (no duplicate detection).
const IFA_F_NODAD: u8 = 0x02;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The request message: `nlmsghdr`, `ifaddrmsg` (host prefix length,
/// universe scope), then `IFA_LOCAL` and `IFA_ADDRESS` carrying the address
/// (native byte order for the header fields, as netlink wants).
pub fn encode(msg_type: u16, ifindex: u32, ip: IpAddr, seq: u32) -> Vec<u8> {
    let (family, prefix, bytes): (u8, u8, Vec<u8>) = match ip {
        IpAddr::V4(a) => (AF_INET, 32, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, 128, a.octets().to_vec()),
    };
    let mut flags = NLM_F_REQUEST | NLM_F_ACK;
    if msg_type == RTM_NEWADDR {
        flags |= NLM_F_CREATE | NLM_F_EXCL;
    }
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, set below
    m.extend_from_slice(&msg_type.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    // struct ifaddrmsg
    m.push(family);
    m.push(prefix);
    m.push(if ip.is_ipv6() { IFA_F_NODAD } else { 0 });
    m.push(0); // RT_SCOPE_UNIVERSE
    m.extend_from_slice(&ifindex.to_ne_bytes());
    for attr in [IFA_LOCAL, IFA_ADDRESS] {
        let len = 4 + bytes.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes());
        m.extend_from_slice(&attr.to_ne_bytes());
        m.extend_from_slice(&bytes);
        m.resize(m.len().next_multiple_of(4), 0);
    }
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// The errno of the kernel's answer to request `seq`: 0 is success. None
/// when `buf` holds no `NLMSG_ERROR` for `seq`.
pub fn decode_ack(buf: &[u8], seq: u32) -> Option<i32> {
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        let s = u32::from_ne_bytes(rest[8..12].try_into().ok()?);
        if len < 16 || len > rest.len() {
            return None;
        }
        if ty == NLMSG_ERROR && s == seq && len >= 20 {
            let err = i32::from_ne_bytes(rest[16..20].try_into().ok()?);
            return Some(-err);
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    None
}

/// Puts `ip` (as a host address) on `ifname`; already there is fine.
pub fn add(ifname: &str, ip: IpAddr) -> Result<()> {
    match request(RTM_NEWADDR, ifname, ip)? {
        Errno::UnknownErrno | Errno::EEXIST => Ok(()),
        e => bail!("adding {ip} to {ifname}: {e}"),
    }
}

/// Takes `ip` off `ifname`; not there is fine.
pub fn remove(ifname: &str, ip: IpAddr) -> Result<()> {
    match request(RTM_DELADDR, ifname, ip)? {
        Errno::UnknownErrno | Errno::EADDRNOTAVAIL => Ok(()),
        e => bail!("removing {ip} from {ifname}: {e}"),
    }
}

/// Sends one request and returns the kernel's errno (`UnknownErrno` for 0).
fn request(msg_type: u16, ifname: &str, ip: IpAddr) -> Result<Errno> {
    let ifindex =
        nix::net::if_::if_nametoindex(ifname).with_context(|| format!("no interface {ifname}"))?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .context("opening a netlink socket")?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, 0),
    )
    .context("binding the netlink socket")?;
    let seq = 1;
    let msg = encode(msg_type, ifindex, ip, seq);
    sendto(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .context("sending to netlink")?;
    let mut buf = [0u8; 4096];
    loop {
        let n = recv(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &mut buf,
            MsgFlags::empty(),
        )
        .context("reading the netlink answer")?;
        if let Some(errno) = decode_ack(&buf[..n], seq) {
            return Ok(Errno::from_raw(errno));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_new_address_message() {
        let m = encode(RTM_NEWADDR, 7, "172.17.0.100".parse().unwrap(), 9);
        // 16 header + 8 ifaddrmsg + 2 × (4 + 4) attributes.
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 20);
        assert_eq!(
            u16::from_ne_bytes(m[6..8].try_into().unwrap()),
            0x1 | 0x4 | 0x200 | 0x400
        );
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 9);
        assert_eq!(&m[16..20], &[2, 32, 0, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        // IFA_LOCAL then IFA_ADDRESS, 8 bytes each.
        assert_eq!(u16::from_ne_bytes(m[24..26].try_into().unwrap()), 8);
        assert_eq!(u16::from_ne_bytes(m[26..28].try_into().unwrap()), 2);
        assert_eq!(&m[28..32], &[172, 17, 0, 100]);
        assert_eq!(u16::from_ne_bytes(m[34..36].try_into().unwrap()), 1);
        assert_eq!(&m[36..40], &[172, 17, 0, 100]);
    }

    #[test]
    fn ipv6_delete_message() {
        let m = encode(RTM_DELADDR, 1, "2001:db8::64".parse().unwrap(), 3);
        assert_eq!(m.len(), 16 + 8 + 2 * 20);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 21);
        // No CREATE/EXCL on a delete.
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x5);
        assert_eq!(&m[16..20], &[10, 128, IFA_F_NODAD, 0]);
        assert_eq!(u16::from_ne_bytes(m[24..26].try_into().unwrap()), 20);
        assert_eq!(m[28], 0x20);
        assert_eq!(m[43], 0x64);
    }

    #[test]
    fn acks() {
        let mut ack = Vec::new();
        ack.extend_from_slice(&36u32.to_ne_bytes());
        ack.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&0u16.to_ne_bytes());
        ack.extend_from_slice(&5u32.to_ne_bytes());
        ack.extend_from_slice(&0u32.to_ne_bytes());
        ack.extend_from_slice(&(-17i32).to_ne_bytes()); // -EEXIST
        ack.extend_from_slice(&[0; 16]); // the request's header
        assert_eq!(decode_ack(&ack, 5), Some(17));
        assert_eq!(decode_ack(&ack, 6), None);
        assert_eq!(decode_ack(&ack[..10], 5), None);
    }

    /// Against the kernel, in a namespace of our own (root only).
    #[test]
    fn add_and_remove_in_a_namespace() {
        if !ferrolb_testlab::require_root_or_skip(
            "vip::addr::add_and_remove_in_a_namespace",
            &["ip"],
        ) {
            return;
        }
        let ns = ferrolb_testlab::Netns::new().unwrap();
        // The runtime's threads live in the namespace; the test thread does not.
        let rt = ns.tokio_runtime().unwrap();
        let in_ns = |f: fn() -> Result<()>| rt.block_on(rt.spawn(async move { f() })).unwrap();
        in_ns(|| {
            let ip: IpAddr = "172.17.0.100".parse().unwrap();
            add("lo", ip)?;
            add("lo", ip)?; // idempotent
            add("lo", "2001:db8::64".parse().unwrap())
        })
        .unwrap();
        let shown = ns.ip(&["-o", "addr", "show", "dev", "lo"]).unwrap();
        assert!(shown.contains("172.17.0.100/32"), "{shown}");
        assert!(shown.contains("2001:db8::64/128"), "{shown}");
        in_ns(|| {
            let ip: IpAddr = "172.17.0.100".parse().unwrap();
            remove("lo", ip)?;
            remove("lo", ip) // idempotent
        })
        .unwrap();
        assert!(in_ns(|| add("no-such-if0", "172.17.0.1".parse().unwrap())).is_err());
        let shown = ns.ip(&["-o", "addr", "show", "dev", "lo"]).unwrap();
        assert!(!shown.contains("172.17.0.100"), "{shown}");
        assert!(shown.contains("2001:db8::64/128"), "{shown}");
    }
}
