//! LoadBalancer IP allocation: pure, in memory, no Kubernetes types and no I/O.
//!
//! The allocator owns the address pools and remembers which service holds which
//! IP. It is rebuilt at start from the Services' current status
//! ([`Allocator::rebuild`]): services that already hold a valid IP are placed
//! first, so a restart moves nothing.
//!
//! Memory is proportional to the number of allocations, never to the size of a
//! pool: addresses are `u128` (IPv4 and IPv6 kept apart by [`IpFamily`]), each
//! pool range keeps a `BTreeMap` of its *free intervals*, and the addresses in
//! use live in a hash map. Finding the lowest free address of a range is the
//! first entry of its free-interval map, so every operation is `O(log n)` in
//! the number of free intervals and `O(1)` expected in the number of services.
//!
//! Service keys are interned: each service gets a small internal id on its
//! first assignment (one hash of its key per call); holders, records and the
//! sharing index refer to that id, so the key's strings are stored once, and
//! only services with a sharing key store what sharing checks compare (ports,
//! traffic policy, selector).
//!
//! Semantics follow MetalLB v0.12, with one deliberate difference: pools are
//! tried in configuration order (MetalLB iterates a Go map, so its choice among
//! several auto-assign pools is random; ours is predictable). The
//! lowest free address wins, `auto-assign: false` pools are used only when a
//! service names them or requests one of their IPs, `avoid-buggy-ips` skips
//! IPv4 addresses whose last octet is 0 or 255, and an IP is shared only by
//! services with the same `allow-shared-ip` key, disjoint ports and compatible
//! traffic policies (all `Cluster`, or all `Local` with the same selector).
//! Pools with a `serviceAllocation` (custom resources, MetalLB v0.13+) are
//! for the Services it admits only (namespace names or labels, Service
//! labels; [`allocation_admits`]): the auto-assign ones that admit a Service
//! are tried first, lower priority first (unset after set, ties by name),
//! then the auto-assign pools without one; the annotation, requested IPs and
//! held IPs must be in a pool that admits the Service (MetalLB re-checks a
//! held IP, so a label change can move it).
//! Families come from the service (those of its cluster IPs), never from its
//! `ipFamilyPolicy`: one listed family means one address whatever the policy;
//! with two listed, SingleStack takes the first, PreferDualStack what the
//! pools can give, RequireDualStack both or an error (an error too when only
//! one family is listed).
//!
//! Where things are: `request.rs` (what goes in and comes out; re-exported
//! here), `error.rs` ([`PoolError`], [`AllocError`]), `ranges.rs` (free
//! intervals, packed addresses), `pools.rs` (pool validation and lookup),
//! `ids.rs` (service ids and records), `sharing.rs` (holders and the sharing
//! rules), `plan.rs` (families, keep/pick, requested IPs, commit) and
//! `check.rs` (the consistency checker, built only for tests: `cfg(test)` or
//! the `check` feature).

mod error;
mod ids;
mod plan;
mod pools;
mod ranges;
mod request;
mod sharing;

#[cfg(any(test, feature = "check"))]
mod check;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashMap as FastMap, HashTable};
use smallvec::SmallVec;

pub use error::{AllocError, PoolError};
pub use pools::allocation_admits;
pub use request::{
    Assignment, Change, FamilyPolicy, IpFamily, Labels, PoolSpec, PoolStats, Protocol,
    ServiceAllocation, ServiceKey, ServiceRequest, TrafficPolicy, no_labels,
};

use ids::{Id, Slot, set_ips};
use plan::Plan;
use pools::{Pool, build_pools};
use ranges::{Addr, Packed, to_ip};
use sharing::IpUse;

/// Pools plus who holds what. See the module documentation.
#[derive(Debug, Clone)]
pub struct Allocator {
    pools: Vec<Pool>,
    /// Range start -> (range end, pool, range index in pool).
    index: BTreeMap<Addr, (u128, usize, usize)>,
    by_name: HashMap<String, usize>,
    /// Auto-assign pools without a `serviceAllocation`, in order.
    auto: Vec<usize>,
    /// Auto-assign pools with a `serviceAllocation`, in priority order.
    pinned: Vec<usize>,
    ips: FastMap<Packed, IpUse>,
    /// Services by [`Id`]; `None` slots are listed in `free_ids`.
    slots: Vec<Option<Slot>>,
    free_ids: Vec<Id>,
    /// Interning of service keys: the table holds ids, hashed by their key.
    ids: HashTable<Id>,
    hasher: DefaultHashBuilder,
    /// Sharing key -> addresses first taken under it, sorted.
    by_sharing_key: FastMap<Arc<str>, Vec<Packed>>,
}

impl Allocator {
    /// An allocator over `pools` (in configuration order), holding nothing.
    pub fn new(pools: Vec<PoolSpec>) -> Result<Self, PoolError> {
        let pools::Built {
            pools,
            index,
            by_name,
            auto,
            pinned,
        } = build_pools(pools)?;
        Ok(Allocator {
            pools,
            index,
            by_name,
            auto,
            pinned,
            ips: FastMap::default(),
            slots: Vec::new(),
            free_ids: Vec::new(),
            ids: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            by_sharing_key: FastMap::default(),
        })
    }

    /// Rebuilds the state after a restart. Services whose `current` IPs are
    /// still valid keep them (oldest `created` first, then by key, so of two
    /// services claiming one IP without sharing it the older keeps it); then
    /// every service is assigned in the same order, which fills in the rest.
    /// Results come back in that order.
    #[allow(clippy::type_complexity)]
    pub fn rebuild(
        pools: Vec<PoolSpec>,
        services: &[ServiceRequest],
    ) -> Result<(Allocator, Vec<(ServiceKey, Result<Assignment, AllocError>)>), PoolError> {
        let mut a = Allocator::new(pools)?;
        let mut order: Vec<&ServiceRequest> = services.iter().collect();
        order.sort_by(|x, y| {
            (x.created.is_none(), x.created, &x.key).cmp(&(y.created.is_none(), y.created, &y.key))
        });
        a.slots.reserve(order.len());
        a.ids.reserve(order.len(), |_| 0);
        for req in &order {
            if !req.current.is_empty() {
                let h = a.hash_of(&req.key.namespace, &req.key.name);
                if a.find(h, &req.key).is_none() {
                    a.adopt(req, h);
                }
            }
        }
        let results = order
            .iter()
            .map(|req| (req.key.clone(), a.assign(req)))
            .collect();
        Ok((a, results))
    }

    /// Every service holding IPs, with its IPs, in no particular order.
    pub fn held(&self) -> impl Iterator<Item = (ServiceKey, Vec<IpAddr>)> + '_ {
        self.slots.iter().flatten().map(|slot| {
            let ips = slot.rec.ips().iter().map(|p| to_ip(p.addr())).collect();
            (slot.service_key(), ips)
        })
    }

    /// Replaces the pools. Services whose IP is no longer in any pool, is now
    /// avoided, or is no longer in their annotated pool lose that IP
    /// ([`Change::Released`]; assign them again). Every other IP stays where it
    /// is. Sorted by service key. On error nothing changes.
    pub fn set_pools(
        &mut self,
        pools: Vec<PoolSpec>,
    ) -> Result<Vec<(ServiceKey, Change)>, PoolError> {
        let pools::Built {
            pools,
            index,
            by_name,
            auto,
            pinned,
        } = build_pools(pools)?;
        let old_pool_of: FastMap<Packed, u32> =
            self.ips.iter().map(|(a, u)| (*a, u.pool)).collect();
        let old_pools = std::mem::replace(&mut self.pools, pools);
        self.index = index;
        self.by_name = by_name;
        self.auto = auto;
        self.pinned = pinned;
        self.ips.clear();
        self.by_sharing_key.clear();
        let mut order: Vec<Id> = (0..self.slots.len() as Id)
            .filter(|&id| self.slots[id as usize].is_some())
            .collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (self.slot(a), self.slot(b));
            (a.ns(), a.name()).cmp(&(b.ns(), b.name()))
        });
        let mut changes = Vec::new();
        for id in order {
            let mut lost = Vec::new();
            let mut reasons = Vec::new();
            let mut kept: Plan = SmallVec::new();
            let mut renamed = false;
            let rec = &self.slot(id).rec;
            for &packed in rec.ips() {
                let addr = packed.addr();
                let ip = to_ip(addr);
                match self.locate_raw(addr) {
                    None => {
                        lost.push(ip);
                        reasons.push(format!("IP {ip} is no longer in any address pool"));
                    }
                    Some((p, r)) if self.pools[p].ranges[r].skippable(addr.1) => {
                        lost.push(ip);
                        reasons.push(format!(
                            "IP {ip} is avoided by pool \"{}\" (avoid-buggy-ips)",
                            self.pools[p].name
                        ));
                    }
                    Some((p, _))
                        if rec
                            .pool_annotation
                            .as_ref()
                            .is_some_and(|n| **n != self.pools[p].name) =>
                    {
                        lost.push(ip);
                        reasons.push(format!(
                            "IP {ip} is no longer in the annotated pool \"{}\"",
                            rec.pool_annotation.as_deref().unwrap_or_default()
                        ));
                    }
                    Some((p, r)) => {
                        if old_pool_of
                            .get(&packed)
                            .is_some_and(|&op| old_pools[op as usize].name != self.pools[p].name)
                        {
                            renamed = true;
                        }
                        kept.push((addr, p, r));
                    }
                }
            }
            let skey = rec.share.as_ref().map(|s| s.key.clone());
            for &(addr, p, r) in &kept {
                self.attach(addr, p, r, id, skey.as_ref());
            }
            let rec = &mut self.slot_mut(id).rec;
            set_ips(rec, &kept);
            let key = (!lost.is_empty() || renamed).then(|| self.slot(id).service_key());
            if kept.is_empty() {
                self.remove_id(id);
            }
            let Some(key) = key else { continue };
            if !lost.is_empty() {
                changes.push((
                    key,
                    Change::Released {
                        ips: lost,
                        reason: reasons.join("; "),
                    },
                ));
            } else if renamed {
                let a = self.assignment_of(id);
                changes.push((key, Change::PoolChanged(a)));
            }
        }
        Ok(changes)
    }

    /// Gives `req` its addresses: keeps the valid ones it holds (idempotent),
    /// honours requested IPs and the pool annotation, else takes the lowest free
    /// address of the first matching pool (an IP of a sharing key-mate first).
    /// On error the service holds nothing.
    pub fn assign(&mut self, req: &ServiceRequest) -> Result<Assignment, AllocError> {
        let h = self.hash_of(&req.key.namespace, &req.key.name);
        let id = self.find(h, &req.key);
        match self.plan(req, id) {
            Ok(plan) => {
                let ips = plan
                    .iter()
                    .map(|&(addr, p, _)| (to_ip(addr), self.pools[p].name.clone()))
                    .collect();
                self.commit(req, h, id, &plan);
                Ok(Assignment { ips })
            }
            Err(e) => {
                if let Some(id) = id {
                    self.release_id(id);
                }
                Err(e)
            }
        }
    }

    /// Frees what `key` holds; returns it.
    pub fn release(&mut self, key: &ServiceKey) -> Option<Assignment> {
        let h = self.hash_of(&key.namespace, &key.name);
        let id = self.find(h, key)?;
        Some(self.release_id(id))
    }

    /// What `key` holds.
    pub fn lookup(&self, key: &ServiceKey) -> Option<Assignment> {
        let h = self.hash_of(&key.namespace, &key.name);
        Some(self.assignment_of(self.find(h, key)?))
    }

    /// Number of services holding at least one IP.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no service holds an IP.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Counters per pool, in configuration order.
    /// Cost: the pools' ranges, the addresses in use and the services.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        let mut stats: Vec<PoolStats> = self
            .pools
            .iter()
            .map(|p| {
                let total = |f: Option<IpFamily>| {
                    p.ranges
                        .iter()
                        .filter(|r| f.is_none_or(|f| r.fam == f))
                        .fold(0u128, |t, r| t.saturating_add(r.total()))
                };
                PoolStats {
                    name: p.name.clone(),
                    total: total(None),
                    total_v4: total(Some(IpFamily::V4)),
                    total_v6: total(Some(IpFamily::V6)),
                    in_use: p.in_use,
                    in_use_v4: 0,
                    in_use_v6: 0,
                    services: 0,
                }
            })
            .collect();
        for (packed, used) in &self.ips {
            let s = &mut stats[used.pool as usize];
            match packed.fam {
                IpFamily::V4 => s.in_use_v4 += 1,
                IpFamily::V6 => s.in_use_v6 += 1,
            }
        }
        for slot in self.slots.iter().flatten() {
            let mut pools: SmallVec<[u32; 2]> = SmallVec::new();
            for used in slot.rec.ips().iter().filter_map(|p| self.ips.get(p)) {
                if !pools.contains(&used.pool) {
                    pools.push(used.pool);
                    stats[used.pool as usize].services += 1;
                }
            }
        }
        stats
    }
}
