//! ferrolb-l2: layer 2 announcing of service addresses. This node answers ARP requests
//! (IPv4) and Neighbor Solicitations (IPv6) for the addresses it is told it owns, with
//! the MAC of the interface the question arrived on, and announces a newly owned
//! address with gratuitous ARP / unsolicited Neighbor Advertisements so that switches
//! and neighbours move to it at once.
//!
//! It is: pure codecs ([`arp`], [`ndp`]: parse a request, build the answer and the
//! announcements, byte-exact against frames captured from Linux, iputils `arping` and
//! `ndisc6`), and a thin tokio shell ([`Announcer`], [`send_gratuitous`]) over one
//! `AF_PACKET` socket per interface and protocol (see [`socket`] for why NDP uses a
//! packet socket too). It needs `CAP_NET_RAW`.
//!
//! It is not: the owner choice (which node answers is the speaker's decision), a
//! membership protocol, or anything Kubernetes. It never adds the address to an
//! interface; the node's service proxy handles the traffic, as with MetalLB.
//!
//! Node settings: with kube-proxy in IPVS mode every node has the service addresses on
//! its `kube-ipvs0` dummy interface, and Linux by default (`arp_ignore=0`) answers ARP
//! for any local address on any interface, so every node would answer besides the
//! owner. Set kube-proxy's `strictARP: true`, which sets `net.ipv4.conf.all.arp_ignore=1`
//! (answer only for addresses on the receiving interface) and `arp_announce=2`, as
//! MetalLB documents. In iptables/nftables mode the addresses are on no interface and
//! nothing is needed. IPv6 needs nothing: Linux answers a solicitation only for
//! addresses on the interface it arrived on.
//!
//! Behaviour follows MetalLB's layer 2 announcer: interfaces are all up, non-loopback
//! ones with a MAC that are not bridge/bond ports and not NOARP (ARP also needs the
//! broadcast flag, NDP an IPv6 link-local address), rediscovered every 10 s; a newly
//! owned address is announced 5 times, 1.1 s apart, the first at once (both ARP forms
//! each time); only requests for owned addresses are answered, never ARP
//! announcements, never our own frames. Where this differs from MetalLB (answer
//! source address and Override flag in NDP, target hardware fields of gratuitous ARP,
//! no re-announcement when the same set is given again) the item's docs say why.

mod announcer;
pub mod arp;
pub mod eth;
pub mod ndp;
pub mod socket;
mod sys;

use std::io;
use std::net::IpAddr;

pub use announcer::{Announcer, AnnouncerConfig};
pub use eth::Mac;

use socket::{PacketSocket, Proto};

/// Which interfaces an address is answered on.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Interfaces {
    /// Every interface the announcer uses: up, not loopback, with a MAC (see the crate
    /// documentation for the full rule).
    #[default]
    All,
    /// Only these interface names (still only those the announcer can use).
    Only(Vec<String>),
}

impl Interfaces {
    /// Whether interface `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Interfaces::All => true,
            Interfaces::Only(v) => v.iter().any(|n| n == name),
        }
    }
}

/// Metrics hook, implemented by the speaker (MetalLB's `metallb_layer2_*` counters).
pub trait L2Observer: Send + Sync + 'static {
    /// An ARP request or Neighbor Solicitation arrived for an address owned here, on an
    /// interface it is answered on.
    fn request_received(&self, ip: IpAddr);
    /// The answer to such a request was sent.
    fn response_sent(&self, ip: IpAddr);
    /// One gratuitous ARP packet (each burst step sends two) or unsolicited Neighbor
    /// Advertisement was sent.
    fn gratuitous_sent(&self, ip: IpAddr);
}

/// An observer that counts nothing.
impl L2Observer for () {
    fn request_received(&self, _: IpAddr) {}
    fn response_sent(&self, _: IpAddr) {}
    fn gratuitous_sent(&self, _: IpAddr) {}
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    /// A system call failed (`EPERM` from `socket` means `CAP_NET_RAW` is missing).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Not called inside a tokio runtime.
    #[error("no tokio runtime")]
    NoRuntime,
    /// No interface of that name.
    #[error("no interface {0:?}")]
    NoSuchInterface(String),
    /// The interface cannot carry the announcement (no MAC, down, no IPv6 link-local).
    #[error("interface {ifname:?} cannot send {what}")]
    NotCapable {
        /// Interface name.
        ifname: String,
        /// "ARP" or "NDP".
        what: &'static str,
    },
}

impl L2Error {
    pub(crate) fn io(op: &'static str, source: io::Error) -> L2Error {
        L2Error::Io { op, source }
    }

    /// Whether this is a permission error (`EPERM`/`EACCES`: the process lacks
    /// `CAP_NET_RAW`).
    pub fn is_permission(&self) -> bool {
        matches!(self, L2Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }
}

/// Whether this process may answer at all: opens one packet socket (which
/// receives nothing) and closes it. Fails with a permission error
/// ([`L2Error::is_permission`]) without `CAP_NET_RAW`. Cheap; for a caller
/// that must know before it offers to own addresses.
pub fn probe() -> Result<(), L2Error> {
    sys::packet_socket()
        .map(drop)
        .map_err(|e| L2Error::io("socket(AF_PACKET)", e))
}

/// Sends one gratuitous announcement for `ip` on `ifname` with that interface's MAC:
/// for IPv4 the pair of gratuitous ARP packets ([`arp::gratuitous`], request and reply
/// form), for IPv6 one unsolicited Neighbor Advertisement to all nodes
/// ([`ndp::unsolicited`]). Runs in the calling thread's network namespace.
/// Used by `ferrolb vip` in layer 2 mode.
pub async fn send_gratuitous(ifname: &str, ip: IpAddr) -> Result<(), L2Error> {
    let link = socket::scan()?
        .into_iter()
        .find(|l| l.name == ifname)
        .ok_or_else(|| L2Error::NoSuchInterface(ifname.to_string()))?;
    let not_capable = |what| L2Error::NotCapable {
        ifname: ifname.to_string(),
        what,
    };
    match ip {
        IpAddr::V4(v4) => {
            if !link.arp_capable() {
                return Err(not_capable("ARP"));
            }
            let mac = link.mac.ok_or_else(|| not_capable("ARP"))?;
            let sock = PacketSocket::open(link.index, Proto::Arp)?;
            for f in arp::gratuitous(mac, v4) {
                sock.send(&f.encode())
                    .await
                    .map_err(|e| L2Error::io("send gratuitous ARP", e))?;
            }
        }
        IpAddr::V6(v6) => {
            let (Some(mac), true) = (link.mac, link.ndp_capable()) else {
                return Err(not_capable("NDP"));
            };
            let sock = PacketSocket::open(link.index, Proto::Ndp)?;
            sock.send(&ndp::unsolicited(mac, v6).encode())
                .await
                .map_err(|e| L2Error::io("send unsolicited NA", e))?;
        }
    }
    Ok(())
}
