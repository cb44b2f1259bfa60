//! Addresses as numbers and the free intervals of one pool range: taking the
//! lowest free address, giving one back, counting assignable addresses
//! (`avoid-buggy-ips` skips IPv4 .0 and .255).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::request::IpFamily;

/// An address: family plus the address as a number.
pub(super) type Addr = (IpFamily, u128);

pub(super) fn to_addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => (IpFamily::V4, u32::from(v4) as u128),
        IpAddr::V6(v6) => (IpFamily::V6, u128::from(v6)),
    }
}

pub(super) fn to_ip((fam, x): Addr) -> IpAddr {
    match fam {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(x as u32)),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(x)),
    }
}

/// Is `x` an IPv4 .0 or .255 address in a range that avoids them?
pub(super) fn skippable(avoid: bool, x: u128) -> bool {
    avoid && matches!(x & 0xff, 0 | 255)
}

/// An address as stored: 24 bytes and 8-aligned (an [`Addr`] pads to 32).
/// Orders like [`Addr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Packed {
    pub(super) fam: IpFamily,
    pub(super) hi: u64,
    pub(super) lo: u64,
}

impl Packed {
    pub(super) fn new((fam, x): Addr) -> Self {
        Packed {
            fam,
            hi: (x >> 64) as u64,
            lo: x as u64,
        }
    }

    pub(super) fn addr(self) -> Addr {
        (self.fam, (u128::from(self.hi) << 64) | u128::from(self.lo))
    }
}

/// One inclusive range of a pool and its free intervals.
#[derive(Debug, Clone)]
pub(super) struct Range {
    pub(super) fam: IpFamily,
    pub(super) lo: u128,
    pub(super) hi: u128,
    /// Skip IPv4 .0/.255 (pool has avoid-buggy-ips and this is IPv4).
    pub(super) avoid: bool,
    /// Free intervals `end -> start` (inclusive), keyed by their end so that
    /// taking the lowest address of an interval updates it in place. Their
    /// ends are never skippable addresses and intervals holding only
    /// skippable addresses are left out, so the lowest assignable address is
    /// the start of the first interval.
    pub(super) free: BTreeMap<u128, u128>,
}

impl Range {
    pub(super) fn new(fam: IpFamily, lo: u128, hi: u128, avoid: bool) -> Self {
        let mut r = Range {
            fam,
            lo,
            hi,
            avoid: avoid && fam == IpFamily::V4,
            free: BTreeMap::new(),
        };
        r.insert_trimmed(lo, hi);
        r
    }

    pub(super) fn skippable(&self, x: u128) -> bool {
        skippable(self.avoid, x)
    }

    pub(super) fn insert_trimmed(&mut self, mut s: u128, mut e: u128) {
        while s <= e && self.skippable(s) {
            match s.checked_add(1) {
                Some(n) => s = n,
                None => return,
            }
        }
        while e >= s && self.skippable(e) {
            match e.checked_sub(1) {
                Some(n) => e = n,
                None => return,
            }
        }
        if s <= e {
            self.free.insert(e, s);
        }
    }

    pub(super) fn first_free(&self) -> Option<u128> {
        self.free.first_key_value().map(|(_, s)| *s)
    }

    /// Marks `x` used; false if it was not free.
    pub(super) fn take(&mut self, x: u128) -> bool {
        let avoid = self.avoid;
        let Some((&e, start)) = self.free.range_mut(x..).next() else {
            return false;
        };
        let s = *start;
        if s > x {
            return false;
        }
        if x < e {
            // The part above `x` keeps its key (end `e`, never skippable).
            let mut ns = x + 1;
            while skippable(avoid, ns) {
                ns += 1;
            }
            *start = ns;
        } else {
            self.free.remove(&e);
        }
        if x > s {
            self.insert_trimmed(s, x - 1);
        }
        true
    }

    /// True if every address strictly between `a` and `b` is skippable.
    pub(super) fn bridges(&self, a: u128, b: u128) -> bool {
        a < b && b - a - 1 <= 2 && (a + 1..b).all(|y| self.skippable(y))
    }

    /// Marks `x` (not skippable, inside the range) free again.
    pub(super) fn give(&mut self, x: u128) {
        let mut s = x;
        if let Some((&le, &ls)) = self.free.range(..x).next_back()
            && self.bridges(le, x)
        {
            self.free.remove(&le);
            s = ls;
        }
        if let Some(xn) = x.checked_add(1)
            && let Some((&re, &rs)) = self.free.range(xn..).next()
            && self.bridges(x, rs)
        {
            // Grow the interval above down to `s`; its key stays.
            self.free.insert(re, s);
            return;
        }
        self.free.insert(x, s);
    }

    /// Assignable (not skippable) addresses in `[s, e]`; saturates.
    pub(super) fn assignable(&self, s: u128, e: u128) -> u128 {
        let n = (e - s).saturating_add(1);
        if !self.avoid {
            return n;
        }
        // Skippable addresses in [0, x]: two per full /24 block, plus .0 of the
        // partial block, plus .255 if x itself ends the block.
        let upto = |x: u128| (x >> 8) * 2 + 1 + u128::from(x & 0xff == 0xff);
        let skipped = upto(e) - if s == 0 { 0 } else { upto(s - 1) };
        n - skipped
    }

    pub(super) fn total(&self) -> u128 {
        self.assignable(self.lo, self.hi)
    }
}
