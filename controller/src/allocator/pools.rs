//! The pool table: validating a pool list (names, ranges, overlaps) and
//! finding the pool and range an address belongs to.

use std::collections::{BTreeMap, HashMap};

use super::Allocator;
use super::error::PoolError;
use super::ranges::{Addr, Range, to_addr, to_ip};
use super::request::{IpFamily, PoolSpec};

/// A configured pool: its ranges in configuration order and how many of its
/// addresses are in use.
#[derive(Debug, Clone)]
pub(super) struct Pool {
    pub(super) name: String,
    pub(super) auto_assign: bool,
    pub(super) ranges: Vec<Range>,
    pub(super) in_use: u128,
}

impl Pool {
    pub(super) fn has_family(&self, f: IpFamily) -> bool {
        self.ranges.iter().any(|r| r.fam == f)
    }
}

/// What [`build_pools`] returns: the pools, the range index (range start ->
/// range end, pool, range index in pool), pool names, auto-assign pools.
pub(super) type Built = (
    Vec<Pool>,
    BTreeMap<Addr, (u128, usize, usize)>,
    HashMap<String, usize>,
    Vec<usize>,
);

/// Validates `specs` (names, ranges, overlaps) and builds the pool table.
pub(super) fn build_pools(specs: Vec<PoolSpec>) -> Result<Built, PoolError> {
    let mut pools = Vec::with_capacity(specs.len());
    let mut index = BTreeMap::new();
    let mut by_name = HashMap::new();
    for (pi, spec) in specs.into_iter().enumerate() {
        if spec.name.is_empty() {
            return Err(PoolError::EmptyName);
        }
        if by_name.insert(spec.name.clone(), pi).is_some() {
            return Err(PoolError::DuplicateName(spec.name));
        }
        let mut ranges = Vec::with_capacity(spec.ranges.len());
        for (ri, &(start, end)) in spec.ranges.iter().enumerate() {
            let (fs, s) = to_addr(start);
            let (fe, e) = to_addr(end);
            if fs != fe || s > e {
                return Err(PoolError::InvalidRange {
                    pool: spec.name,
                    start,
                    end,
                });
            }
            index.insert((fs, s), (e, pi, ri));
            ranges.push(Range::new(fs, s, e, spec.avoid_buggy_ips));
        }
        pools.push(Pool {
            name: spec.name,
            auto_assign: spec.auto_assign,
            ranges,
            in_use: 0,
        });
    }
    // Overlaps: in start order, each range must begin after the previous one ends.
    let mut prev: Option<(Addr, u128, usize)> = None;
    for (&(fam, lo), &(hi, pi, _)) in &index {
        if let Some(((pf, _), phi, ppi)) = prev
            && pf == fam
            && lo <= phi
        {
            return Err(PoolError::Overlap {
                first: pools[ppi].name.clone(),
                second: pools[pi].name.clone(),
                at: to_ip((fam, lo)),
            });
        }
        if prev.is_none_or(|((pf, _), phi, _)| pf != fam || hi > phi) {
            prev = Some(((fam, lo), hi, pi));
        }
    }
    // Two identical starts collapse in the map: detect them by count.
    let count: usize = pools.iter().map(|p| p.ranges.len()).sum();
    if count != index.len() {
        let mut seen = HashMap::new();
        for (pi, p) in pools.iter().enumerate() {
            for r in &p.ranges {
                if let Some(first) = seen.insert((r.fam, r.lo), pi) {
                    return Err(PoolError::Overlap {
                        first: pools[first].name.clone(),
                        second: p.name.clone(),
                        at: to_ip((r.fam, r.lo)),
                    });
                }
            }
        }
    }
    let auto = (0..pools.len()).filter(|&p| pools[p].auto_assign).collect();
    Ok((pools, index, by_name, auto))
}

impl Allocator {
    /// The pool and range containing `addr`, avoided or not.
    pub(super) fn locate_raw(&self, addr: Addr) -> Option<(usize, usize)> {
        let (&(fam, _), &(hi, p, r)) = self.index.range(..=addr).next_back()?;
        (fam == addr.0 && hi >= addr.1).then_some((p, r))
    }

    /// The pool and range where `addr` is assignable.
    pub(super) fn locate(&self, addr: Addr) -> Option<(usize, usize)> {
        self.locate_raw(addr)
            .filter(|&(p, r)| !self.pools[p].ranges[r].skippable(addr.1))
    }
}
