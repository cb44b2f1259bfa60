//! The pool table: validating a pool list (names, ranges, overlaps),
//! finding the pool and range an address belongs to, and which pools a
//! Service may get addresses from (`serviceAllocation`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use super::Allocator;
use super::error::PoolError;
use super::ranges::{Addr, Range, to_addr, to_ip};
use super::request::{IpFamily, PoolSpec, ServiceAllocation, ServiceRequest};

/// A configured pool: its ranges in configuration order and how many of its
/// addresses are in use.
#[derive(Debug, Clone)]
pub(super) struct Pool {
    pub(super) name: String,
    pub(super) auto_assign: bool,
    pub(super) ranges: Vec<Range>,
    pub(super) in_use: u128,
    /// `serviceAllocation`: which Services may get its addresses.
    pub(super) allocation: Option<Box<ServiceAllocation>>,
}

impl Pool {
    pub(super) fn has_family(&self, f: IpFamily) -> bool {
        self.ranges.iter().any(|r| r.fam == f)
    }

    /// May `req` get addresses from this pool (its `serviceAllocation`)?
    pub(super) fn admits(&self, req: &ServiceRequest) -> bool {
        self.allocation.as_deref().is_none_or(|sa| {
            allocation_admits(sa, &req.key.namespace, &req.namespace_labels, &req.labels)
        })
    }
}

/// Does a pool's `serviceAllocation` let a Service in `namespace` (labelled
/// `namespace_labels`) with `service_labels` take its addresses? As MetalLB
/// decides it: the namespace must be listed in `namespaces` or match one of
/// `namespaceSelectors` (either list set; both unset: any namespace), and the
/// Service's labels must match one of `serviceSelectors` (when set). An
/// allocation with none of the three admits every Service.
///
/// One deliberate difference: MetalLB resolves `namespaceSelectors` into a
/// list of namespace names, and when that list comes out empty it stops
/// checking the namespace at all (so a requested IP or the annotation, or a
/// `serviceSelectors` match, lets a Service of any namespace in). Here a
/// namespace criterion that no namespace meets admits no namespace.
pub fn allocation_admits(
    sa: &ServiceAllocation,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    service_labels: &BTreeMap<String, String>,
) -> bool {
    sa.matches(namespace, namespace_labels, service_labels)
}

/// The order in which pools with a `serviceAllocation` are tried: set
/// priorities (> 0) first, lower first; then unset ones (0, or negative,
/// which MetalLB's ordering does not handle consistently); ties by name
/// (MetalLB leaves them to an unstable sort).
fn by_priority(a: &Pool, b: &Pool) -> Ordering {
    let key = |p: &Pool| {
        let prio = p.allocation.as_ref().map_or(0, |sa| sa.priority);
        (prio <= 0, prio.max(0))
    };
    key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
}

/// What [`build_pools`] returns.
pub(super) struct Built {
    pub(super) pools: Vec<Pool>,
    /// Range start -> (range end, pool, range index in pool).
    pub(super) index: BTreeMap<Addr, (u128, usize, usize)>,
    pub(super) by_name: HashMap<String, usize>,
    /// Auto-assign pools without a `serviceAllocation`, in configuration order.
    pub(super) auto: Vec<usize>,
    /// Auto-assign pools with a `serviceAllocation`, in the order they are tried.
    pub(super) pinned: Vec<usize>,
}

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
            allocation: spec.allocation.map(Box::new),
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
    let auto = (0..pools.len())
        .filter(|&p| pools[p].auto_assign && pools[p].allocation.is_none())
        .collect();
    let mut pinned: Vec<usize> = (0..pools.len())
        .filter(|&p| pools[p].auto_assign && pools[p].allocation.is_some())
        .collect();
    pinned.sort_by(|&a, &b| by_priority(&pools[a], &pools[b]));
    Ok(Built {
        pools,
        index,
        by_name,
        auto,
        pinned,
    })
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
