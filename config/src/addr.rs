//! Address ranges of pools: `CIDR` or `start-end`, and their CIDR decomposition.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};

use crate::ErrorKind;

/// An inclusive range of addresses of one family (`start <= end`), one per `addresses` entry.
///
/// A CIDR entry becomes the range from its network address to its last address
/// (host bits written in the CIDR are dropped, as Go's `net.ParseCIDR` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRange {
    /// First address (inclusive).
    pub start: IpAddr,
    /// Last address (inclusive); same family as `start`.
    pub end: IpAddr,
}

/// An address as a number: IPv4 in the low 32 bits, IPv6 as all 128.
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`ip_to_u128`] for the family given by `v4`.
/// For IPv4 only the low 32 bits are used.
pub fn u128_to_ip(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

impl AddrRange {
    /// A range from two addresses of the same family with `start <= end`.
    pub fn new(start: IpAddr, end: IpAddr) -> Option<AddrRange> {
        (start.is_ipv4() == end.is_ipv4() && ip_to_u128(start) <= ip_to_u128(end))
            .then_some(AddrRange { start, end })
    }

    /// The range covered by a prefix.
    pub fn from_net(net: IpNet) -> AddrRange {
        AddrRange {
            start: net.network(),
            end: net.broadcast(),
        }
    }

    /// Parse one `addresses` entry: `10.0.0.0/24`, `10.0.0.10-10.0.0.20`, `fc00::/120`,
    /// `fc00::1-fc00::ff` (spaces around `-` allowed, as MetalLB trims them).
    pub fn parse(entry: &str) -> Result<AddrRange, ErrorKind> {
        let bad = || ErrorKind::InvalidAddresses(entry.to_string());
        if let Some((a, b)) = entry.split_once('-') {
            let start = IpAddr::from_str(a.trim()).map_err(|_| bad())?;
            let end = IpAddr::from_str(b.trim()).map_err(|_| bad())?;
            if start.is_ipv4() != end.is_ipv4() {
                return Err(ErrorKind::MixedFamilyRange(entry.to_string()));
            }
            return AddrRange::new(start, end)
                .ok_or_else(|| ErrorKind::ReversedRange(entry.to_string()));
        }
        let net = IpNet::from_str(entry.trim()).map_err(|_| bad())?;
        Ok(AddrRange::from_net(net.trunc()))
    }

    /// True for an IPv4 range.
    pub fn is_ipv4(&self) -> bool {
        self.start.is_ipv4()
    }

    /// First address as a number (see [`ip_to_u128`]).
    pub fn start_u128(&self) -> u128 {
        ip_to_u128(self.start)
    }

    /// Last address as a number (see [`ip_to_u128`]).
    pub fn end_u128(&self) -> u128 {
        ip_to_u128(self.end)
    }

    /// Number of addresses; saturates at `u128::MAX` for `::/0`.
    pub fn len(&self) -> u128 {
        (self.end_u128() - self.start_u128()).saturating_add(1)
    }

    /// Never empty (a range holds at least one address); present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Does the range hold `ip` (same family only)?
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4() && {
            let n = ip_to_u128(ip);
            self.start_u128() <= n && n <= self.end_u128()
        }
    }

    /// Do two ranges share an address?
    pub fn overlaps(&self, other: &AddrRange) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && self.start_u128() <= other.end_u128()
            && other.start_u128() <= self.end_u128()
    }

    /// The fewest CIDRs that exactly cover the range, in address order
    /// (what MetalLB gets from `ipaddr.Summarize`), from `ipnet`'s subnet iterators.
    /// Empty only for a range whose ends are of different families (which
    /// [`AddrRange::new`] and [`AddrRange::parse`] never build).
    pub fn to_cidrs(&self) -> Vec<IpNet> {
        match (self.start, self.end) {
            (IpAddr::V4(a), IpAddr::V4(b)) => Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect(),
            (IpAddr::V6(a), IpAddr::V6(b)) => Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect(),
            _ => Vec::new(),
        }
    }
}

impl FromStr for AddrRange {
    type Err = ErrorKind;

    /// Same as [`AddrRange::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AddrRange::parse(s)
    }
}

impl std::fmt::Display for AddrRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(s: &str) -> Vec<String> {
        AddrRange::parse(s)
            .unwrap()
            .to_cidrs()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn decomposition() {
        assert_eq!(cidrs("10.0.0.0/24"), ["10.0.0.0/24"]);
        assert_eq!(cidrs("10.0.0.7/24"), ["10.0.0.0/24"]);
        assert_eq!(
            cidrs("192.168.10.0-192.168.10.9"),
            ["192.168.10.0/29", "192.168.10.8/31"]
        );
        assert_eq!(
            cidrs("10.0.0.1-10.0.0.6"),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        assert_eq!(cidrs("0.0.0.0-255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(cidrs("::/0"), ["::/0"]);
        assert_eq!(cidrs("fc00::1-fc00::1"), ["fc00::1/128"]);
        assert_eq!(
            cidrs("255.255.255.254-255.255.255.255"),
            ["255.255.255.254/31"]
        );
        assert_eq!(AddrRange::parse("::/0").unwrap().len(), u128::MAX);
        assert_eq!(AddrRange::parse("10.0.0.0/24").unwrap().len(), 256);
    }
}

/// One parsed `addresses` entry of a pool (either front end), kept for the
/// overlap check across pools and the aggregation-length check.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The entry as written.
    pub(crate) text: String,
    /// Its field path (for messages naming the earlier entry).
    pub(crate) path: String,
    /// The pool it belongs to.
    pub(crate) pool: String,
    pub(crate) range: AddrRange,
    /// Shortest prefix length among the entry's CIDRs.
    pub(crate) lowest_prefix: u8,
}

impl Entry {
    /// Parses `text` (a CIDR or an `a-b` range) of pool `pool` at `path`.
    /// `Err` when it does not parse; otherwise the entry and, when it
    /// overlaps one of `earlier`, the error to report for it (the entry is
    /// still kept, as both front ends do).
    pub(crate) fn read(
        text: String,
        path: String,
        pool: &str,
        earlier: &[Entry],
    ) -> Result<(Entry, Option<ErrorKind>), ErrorKind> {
        let range = AddrRange::parse(&text)?;
        let overlap = earlier
            .iter()
            .find(|e| e.range.overlaps(&range))
            .map(|other| ErrorKind::Overlap {
                entry: text.clone(),
                other: other.text.clone(),
                other_path: other.path.clone(),
                other_pool: other.pool.clone(),
            });
        let lowest_prefix = range
            .to_cidrs()
            .iter()
            .map(IpNet::prefix_len)
            .min()
            .unwrap_or(0);
        let entry = Entry {
            text,
            path,
            pool: pool.to_string(),
            range,
            lowest_prefix,
        };
        Ok((entry, overlap))
    }
}
