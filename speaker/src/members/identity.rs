//! Who a member is on the wire: the node name, the address its speaker
//! listens on and a boot id, so that a restarted speaker is a new identity
//! that supersedes the one before it.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Longest node name Kubernetes accepts (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;

/// One speaker's identity in the gossip.
///
/// foca keys members by [`foca::Identity::addr`], here the node name: at
/// most one identity per node is kept, and when two share a node name the
/// one with the larger `boot` wins ([`foca::Identity::win_addr_conflict`]).
/// `boot` is taken from the wall clock when the speaker starts
/// ([`Id::boot_now`]), so a restarted speaker replaces its old identity at
/// once instead of waiting for it to be declared down; when the cluster
/// declares a running speaker down (a long pause, a partition), foca renews
/// the identity with `boot + 1` and rejoins.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Id {
    /// The Kubernetes node name (`spec.nodeName` of the speaker pod).
    pub name: String,
    /// Where this speaker receives gossip (pod IP = host IP, port 7946).
    pub addr: SocketAddr,
    /// Boot id: larger is newer.
    pub boot: u64,
}

impl Id {
    /// A fresh identity for a speaker starting now.
    pub fn new(name: impl Into<String>, addr: SocketAddr, boot: u64) -> Id {
        Id {
            name: name.into(),
            addr,
            boot,
        }
    }

    /// A boot id from the wall clock: microseconds since the Unix epoch.
    pub fn boot_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// Whether this identity can be a speaker's: a node name Kubernetes
    /// accepts (lowercase RFC 1123 subdomain, at most 253 bytes) and a
    /// unicast address with a port. Identities that are not are dropped
    /// with the datagram that carried them.
    pub fn is_valid(&self) -> bool {
        valid_node_name(&self.name) && valid_addr(&self.addr)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.boot)
    }
}

impl foca::Identity for Id {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(Id {
            name: self.name.clone(),
            addr: self.addr,
            boot: self.boot.wrapping_add(1),
        })
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.boot > adversary.boot
    }
}

/// A lowercase RFC 1123 subdomain of at most 253 bytes (what Kubernetes
/// accepts as a Node name).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn valid_addr(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && ip != std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn node_names() {
        for ok in ["k8s-node-01", "a", "node.example.com", "0abc"] {
            assert!(valid_node_name(ok), "{ok}");
        }
        let long = "a".repeat(64);
        let too_long = ["a"; 128].join(".");
        for bad in [
            "",
            "Node",
            "-a",
            "a-",
            "a..b",
            "a b",
            "a_b",
            long.as_str(),
            too_long.as_str(),
        ] {
            assert!(!valid_node_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn newer_boot_wins_and_renew_is_newer() {
        let addr: SocketAddr = "172.17.0.21:7946".parse().unwrap();
        let old = Id::new("n1", addr, 10);
        let new = Id::new("n1", addr, 11);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old));
        assert_eq!(renewed.addr(), "n1");
    }

    #[test]
    fn addresses() {
        let v = |s: &str| Id::new("n", s.parse().unwrap(), 1).is_valid();
        assert!(v("172.17.0.21:7946"));
        assert!(v("[2001:db8::1]:7946"));
        assert!(!v("0.0.0.0:7946"));
        assert!(!v("172.17.0.21:0"));
        assert!(!v("224.0.0.1:7946"));
        assert!(!v("255.255.255.255:7946"));
    }
}
