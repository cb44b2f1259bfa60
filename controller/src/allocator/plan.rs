//! Planning an assignment: which families a service gets, which held
//! addresses it keeps, which new ones it picks (requested IPs, pool
//! annotation, sharing key-mates, lowest free), and recording the result.

use smallvec::SmallVec;

use super::Allocator;
use super::error::AllocError;
use super::ids::{Id, Record, set_ips};
use super::ranges::{Addr, Packed, to_addr, to_ip};
use super::request::{FamilyPolicy, IpFamily, ServiceRequest};

/// A chosen address: address, pool index, range index.
pub(super) type Pick = (Addr, usize, usize);

/// At most one pick per family.
pub(super) type Plan = SmallVec<[Pick; 2]>;

/// The families a service gets an address of, primary first.
type Families = SmallVec<[IpFamily; 2]>;

/// "address pool \"x\"" or "auto-assign address pool", for error reasons.
fn pools_phrase(req: &ServiceRequest) -> String {
    match &req.pool {
        Some(p) => format!("address pool \"{p}\""),
        None => "auto-assign address pool".to_string(),
    }
}

impl Allocator {
    /// The families `req` gets an address of, primary first, as MetalLB
    /// decides them: the listed `families` (duplicates dropped), or when none
    /// are listed the families of the requested IPs, else IPv4. The policy
    /// never adds a family: a PreferDualStack Service on a single-stack
    /// cluster lists one family and gets one address. SingleStack keeps the
    /// first family only; RequireDualStack with one family is an error.
    fn desired_families(req: &ServiceRequest) -> Result<Families, AllocError> {
        let mut fams = Families::new();
        for &f in &req.families {
            if !fams.contains(&f) {
                fams.push(f);
            }
        }
        if fams.is_empty() {
            for f in req.requested_ips.iter().map(IpFamily::of) {
                if !fams.contains(&f) {
                    fams.push(f);
                }
            }
        }
        if fams.is_empty() {
            fams.push(IpFamily::V4);
        }
        match req.family_policy {
            FamilyPolicy::SingleStack => fams.truncate(1),
            FamilyPolicy::PreferDualStack => {}
            FamilyPolicy::RequireDualStack if fams.len() < 2 => {
                return Err(AllocError::DualStackImpossible {
                    reason: format!(
                        "the service's IP families are {} only (its cluster IPs are not dual-stack)",
                        fams[0]
                    ),
                });
            }
            FamilyPolicy::RequireDualStack => {}
        }
        Ok(fams)
    }

    /// Is a held `addr` still good for `req` (pool, annotation, sharing)?
    fn keep_ok(&self, addr: Addr, req: &ServiceRequest, me: Option<Id>) -> Option<Pick> {
        let (p, r) = self.locate(addr)?;
        if req.pool.as_ref().is_some_and(|n| *n != self.pools[p].name) {
            return None;
        }
        // As MetalLB re-checks a held IP: a pool whose serviceAllocation no
        // longer admits the service (labels changed) takes it back.
        if !self.pools[p].admits(req) {
            return None;
        }
        self.check_share(addr, req, me).ok()?;
        Some((addr, p, r))
    }

    /// Lowest assignable address of family `f` in pool `p` for `req`: an IP
    /// already used by a compatible key-mate first, else the lowest free one.
    fn pick(&self, p: usize, f: IpFamily, req: &ServiceRequest, me: Option<Id>) -> Option<Pick> {
        if let Some(k) = &req.sharing_key
            && let Some(list) = self.by_sharing_key.get(k.as_str())
        {
            for &packed in list.iter().filter(|a| a.fam == f) {
                let u = &self.ips[&packed];
                let addr = packed.addr();
                if u.pool as usize == p && self.check_share(addr, req, me).is_ok() {
                    return Some((addr, p, u.range as usize));
                }
            }
        }
        self.pools[p]
            .ranges
            .iter()
            .enumerate()
            .filter(|(_, r)| r.fam == f)
            .find_map(|(ri, r)| r.first_free().map(|x| ((f, x), p, ri)))
    }

    fn exhausted(&self, cands: &[usize], f: IpFamily, req: &ServiceRequest) -> AllocError {
        if !cands.iter().any(|&p| self.pools[p].has_family(f)) {
            return AllocError::NoPoolForFamily {
                family: f,
                pool: req.pool.clone(),
            };
        }
        if req.pool.is_some() || cands.len() == 1 {
            return AllocError::PoolExhausted {
                pool: self.pools[cands[0]].name.clone(),
                family: f,
            };
        }
        AllocError::AllPoolsExhausted {
            family: f,
            pools: cands.iter().map(|&p| self.pools[p].name.clone()).collect(),
        }
    }

    /// What `req` (service `me`, if known) should hold; changes nothing.
    pub(super) fn plan(&self, req: &ServiceRequest, me: Option<Id>) -> Result<Plan, AllocError> {
        let fams = Self::desired_families(req)?;
        if !req.requested_ips.is_empty() {
            return self.plan_requested(req, &fams, me);
        }
        let held: SmallVec<[Addr; 2]> = match me {
            Some(id) => self.slot(id).rec.ips().iter().map(|a| a.addr()).collect(),
            None => req.current.iter().map(|ip| to_addr(*ip)).collect(),
        };
        let mut plan: Plan = SmallVec::new();
        let mut missing: SmallVec<[IpFamily; 2]> = SmallVec::new();
        for &f in &fams {
            match held
                .iter()
                .filter(|a| a.0 == f)
                .find_map(|&a| self.keep_ok(a, req, me))
            {
                Some(k) => plan.push(k),
                None => missing.push(f),
            }
        }
        if missing.is_empty() {
            return Ok(plan);
        }
        let require = req.family_policy == FamilyPolicy::RequireDualStack;
        let named;
        let pinned: SmallVec<[usize; 4]>;
        let tries: [&[usize]; 2] = match &req.pool {
            Some(name) => {
                named = *self
                    .by_name
                    .get(name)
                    .ok_or_else(|| AllocError::UnknownPool { pool: name.clone() })?;
                if !self.pools[named].admits(req) {
                    return Err(AllocError::PoolNotForService { pool: name.clone() });
                }
                [std::slice::from_ref(&named), &[]]
            }
            None => {
                if self.pools.is_empty() {
                    return Err(AllocError::NoPools);
                }
                // MetalLB: the pools whose serviceAllocation admits the
                // service first, by priority; then the pools without one.
                pinned = if self.pinned.is_empty() {
                    SmallVec::new()
                } else {
                    self.pinned
                        .iter()
                        .copied()
                        .filter(|&p| self.pools[p].admits(req))
                        .collect()
                };
                if pinned.is_empty() && self.auto.is_empty() {
                    return Err(if self.pinned.is_empty() {
                        AllocError::NoAutoAssignPool
                    } else {
                        AllocError::NoPoolForService
                    });
                }
                [&pinned, &self.auto]
            }
        };
        for cands in tries {
            if !cands.is_empty() && self.pick_missing(cands, &missing, &mut plan, &fams, req, me) {
                return Ok(plan);
            }
        }
        if !plan.is_empty() && req.family_policy == FamilyPolicy::PreferDualStack {
            return Ok(plan);
        }
        let all: SmallVec<[usize; 8]> = tries.iter().flat_map(|c| c.iter().copied()).collect();
        if missing.len() == 2 && require {
            let reason = if all.iter().any(|&p| {
                self.pools[p].has_family(IpFamily::V4) && self.pools[p].has_family(IpFamily::V6)
            }) {
                "no address pool has both a free IPv4 and a free IPv6 address".to_string()
            } else {
                format!("no {} has both IPv4 and IPv6 addresses", pools_phrase(req))
            };
            return Err(AllocError::DualStackImpossible { reason });
        }
        let e = self.exhausted(&all, missing[0], req);
        if require {
            return Err(AllocError::DualStackImpossible {
                reason: e.to_string(),
            });
        }
        Err(e)
    }

    /// Completes `plan` (what `req` keeps) with the `missing` families from
    /// the pools `cands`, tried in order; false (and `plan` untouched) when
    /// they cannot. Two missing families come from one pool when a pool has
    /// both (MetalLB); otherwise, unless dual-stack is required, one family
    /// is enough.
    #[inline]
    fn pick_missing(
        &self,
        cands: &[usize],
        missing: &[IpFamily],
        plan: &mut Plan,
        fams: &[IpFamily],
        req: &ServiceRequest,
        me: Option<Id>,
    ) -> bool {
        if missing.len() == 2 {
            // Nothing is held: `plan` is empty.
            for &p in cands {
                if let (Some(a), Some(b)) = (
                    self.pick(p, missing[0], req, me),
                    self.pick(p, missing[1], req, me),
                ) {
                    plan.push(a);
                    plan.push(b);
                    return true;
                }
            }
            if req.family_policy == FamilyPolicy::RequireDualStack {
                return false;
            }
            for &f in missing {
                for &p in cands {
                    if let Some(a) = self.pick(p, f, req, me) {
                        plan.push(a);
                        return true;
                    }
                }
            }
            return false;
        }
        let f = missing[0];
        let kept_pool = plan.first().map(|k| k.1).filter(|p| cands.contains(p));
        for p in kept_pool.into_iter().chain(cands.iter().copied()) {
            if let Some(a) = self.pick(p, f, req, me) {
                plan.push(a);
                if plan.len() > 1 {
                    // Keep the primary family first.
                    plan.sort_by_key(|k| fams.iter().position(|&x| x == k.0.0));
                }
                return true;
            }
        }
        false
    }

    /// [`Allocator::plan`] for a service that requests IPs: exactly those.
    fn plan_requested(
        &self,
        req: &ServiceRequest,
        fams: &[IpFamily],
        me: Option<Id>,
    ) -> Result<Plan, AllocError> {
        let mut plan: Plan = SmallVec::new();
        for &ip in &req.requested_ips {
            let addr = to_addr(ip);
            if let Some(prev) = plan.iter().find(|k| k.0.0 == addr.0) {
                return Err(AllocError::TwoRequestedIpsOfFamily {
                    family: addr.0,
                    first: to_ip(prev.0),
                    second: ip,
                });
            }
            if !fams.contains(&addr.0) {
                return Err(AllocError::RequestedIpFamily {
                    ip,
                    family: addr.0,
                    families: fams
                        .iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            let (p, r) = self
                .locate_raw(addr)
                .ok_or(AllocError::RequestedIpNotInAnyPool { ip })?;
            let pool = &self.pools[p];
            if let Some(name) = &req.pool
                && *name != pool.name
            {
                if !self.by_name.contains_key(name) {
                    return Err(AllocError::UnknownPool { pool: name.clone() });
                }
                return Err(AllocError::RequestedIpNotInPool {
                    ip,
                    pool: name.clone(),
                    actual: pool.name.clone(),
                });
            }
            if !pool.admits(req) {
                return Err(AllocError::PoolNotForService {
                    pool: pool.name.clone(),
                });
            }
            if pool.ranges[r].skippable(addr.1) {
                return Err(AllocError::RequestedIpAvoided {
                    ip,
                    pool: pool.name.clone(),
                });
            }
            self.check_share(addr, req, me)?;
            plan.push((addr, p, r));
        }
        if req.family_policy == FamilyPolicy::RequireDualStack && plan.len() < 2 {
            return Err(AllocError::DualStackImpossible {
                reason: "RequireDualStack with requested IPs needs one requested IP per family"
                    .to_string(),
            });
        }
        Ok(plan)
    }

    /// Rebuild step for a service not yet known (key hash `h`): keep the
    /// valid `current` IPs of `req`, allocate nothing new.
    pub(super) fn adopt(&mut self, req: &ServiceRequest, h: u64) {
        let Ok(fams) = Self::desired_families(req) else {
            return;
        };
        let mut plan: Plan = SmallVec::new();
        for &f in &fams {
            let requested = req.requested_ips.iter().find(|ip| IpFamily::of(ip) == f);
            if !req.requested_ips.is_empty() && requested.is_none() {
                continue;
            }
            let found = req
                .current
                .iter()
                .map(|ip| to_addr(*ip))
                .filter(|a| a.0 == f && requested.is_none_or(|r| to_addr(*r) == *a))
                .find_map(|a| self.keep_ok(a, req, None));
            plan.extend(found);
        }
        if !plan.is_empty() {
            self.commit(req, h, None, &plan);
        }
    }

    /// Records `plan` as what `req` (service `id` if known, key hash `h`) holds.
    pub(super) fn commit(&mut self, req: &ServiceRequest, h: u64, id: Option<Id>, plan: &[Pick]) {
        let id = match id {
            Some(id) => {
                let rec = &mut self.slot_mut(id).rec;
                if rec.sharing_key() == req.sharing_key.as_deref()
                    && rec.ips().len() == plan.len()
                    && rec.ips().iter().zip(plan).all(|(a, k)| a.addr() == k.0)
                {
                    // Same addresses: refresh what later sharing checks read.
                    if let Some(s) = &mut rec.share {
                        if *s.ports != *req.ports {
                            s.ports = SmallVec::from_slice(&req.ports);
                        }
                        s.traffic_policy = req.traffic_policy;
                        if s.selector != req.selector {
                            s.selector.clone_from(&req.selector);
                        }
                    }
                    if rec.pool_annotation.as_deref() != req.pool.as_deref() {
                        rec.pool_annotation = req.pool.as_deref().map(Box::from);
                    }
                    return;
                }
                let (old, n) = (rec.ips, usize::from(rec.n_ips));
                let old_key = rec.share.as_ref().map(|s| s.key.clone());
                for &addr in &old[..n] {
                    self.detach(addr, id, old_key.as_deref());
                }
                let share = self.share_of(req);
                let rec = &mut self.slot_mut(id).rec;
                rec.share = share;
                rec.pool_annotation = req.pool.as_deref().map(Box::from);
                set_ips(rec, plan);
                id
            }
            None => {
                let mut rec = Record {
                    ips: [Packed::new((IpFamily::V4, 0)); 2],
                    n_ips: 0,
                    share: self.share_of(req),
                    pool_annotation: req.pool.as_deref().map(Box::from),
                };
                set_ips(&mut rec, plan);
                self.insert_id(h, &req.key, rec)
            }
        };
        let skey = self.slot(id).rec.share.as_ref().map(|s| s.key.clone());
        for &(addr, p, r) in plan {
            self.attach(addr, p, r, id, skey.as_ref());
        }
    }
}
