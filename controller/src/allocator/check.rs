//! The consistency checker for tests: the allocator's bookkeeping checked
//! against itself. Compiled only under `cfg(test)` or the `check` feature,
//! never into the product.

use super::Allocator;
use super::ids::Id;
use super::ranges::to_ip;

impl Allocator {
    /// Checks the internal bookkeeping (free intervals against addresses in
    /// use, holders against records, the key index against the records).
    /// Cost is proportional to allocations and free intervals. Only built for
    /// tests (`cfg(test)` or the crate's `check` feature).
    pub fn check_consistency(&self) -> Result<(), String> {
        for (packed, u) in &self.ips {
            let addr = packed.addr();
            let r = &self.pools[u.pool as usize].ranges[u.range as usize];
            if r.fam != addr.0 || addr.1 < r.lo || addr.1 > r.hi || r.skippable(addr.1) {
                return Err(format!("{} recorded outside its range", to_ip(addr)));
            }
            if let Some((_, &s)) = r.free.range(addr.1..).next()
                && s <= addr.1
            {
                return Err(format!("{} is both used and free", to_ip(addr)));
            }
            let hs = u.holders.as_slice();
            if hs.is_empty() {
                return Err(format!("{} has no holder", to_ip(addr)));
            }
            for (i, &h) in hs.iter().enumerate() {
                if hs[..i].contains(&h) {
                    return Err(format!("{} lists holder {h} twice", to_ip(addr)));
                }
                let Some(Some(slot)) = self.slots.get(h as usize) else {
                    return Err(format!("{} lists a vacant service {h}", to_ip(addr)));
                };
                if !slot.rec.ips().contains(packed) {
                    return Err(format!(
                        "{} lists {} which does not hold it",
                        to_ip(addr),
                        slot.service_key()
                    ));
                }
            }
            let first_key = self.slot(hs[0]).rec.sharing_key();
            let listed = first_key
                .and_then(|k| self.by_sharing_key.get(k))
                .is_some_and(|v| v.contains(packed));
            if first_key.is_some() != listed {
                return Err(format!(
                    "{} and its sharing key disagree in the key index",
                    to_ip(addr)
                ));
            }
        }
        let mut listed = 0;
        for (k, v) in &self.by_sharing_key {
            if v.is_empty() || v.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("sharing key {k:?}: bad address list"));
            }
            listed += v.len();
        }
        let keyed = self
            .ips
            .values()
            .filter(|u| self.slot(u.holders.as_slice()[0]).rec.share.is_some())
            .count();
        if listed != keyed {
            return Err(format!(
                "{listed} addresses listed under sharing keys, {keyed} taken with one"
            ));
        }
        for (pi, p) in self.pools.iter().enumerate() {
            let used = self.ips.values().filter(|u| u.pool as usize == pi).count() as u128;
            if used != p.in_use {
                return Err(format!(
                    "pool {} counts {} in use, has {used}",
                    p.name, p.in_use
                ));
            }
            for r in &p.ranges {
                let mut prev_end: Option<u128> = None;
                let mut free_count = 0u128;
                for (&e, &s) in &r.free {
                    if s > e || s < r.lo || e > r.hi || r.skippable(s) || r.skippable(e) {
                        return Err(format!("bad free interval {s}-{e} in pool {}", p.name));
                    }
                    if let Some(pe) = prev_end
                        && (s <= pe || r.bridges(pe, s))
                    {
                        return Err(format!("unmerged free intervals in pool {}", p.name));
                    }
                    prev_end = Some(e);
                    free_count = free_count.saturating_add(r.assignable(s, e));
                }
                let used_here = self
                    .ips
                    .keys()
                    .filter(|a| {
                        let (f, x) = a.addr();
                        f == r.fam && r.lo <= x && x <= r.hi
                    })
                    .count() as u128;
                if free_count + used_here != r.total() {
                    return Err(format!(
                        "pool {}: {free_count} free + {used_here} used != {} total",
                        p.name,
                        r.total()
                    ));
                }
            }
        }
        let live = self.slots.iter().filter(|s| s.is_some()).count();
        if live != self.ids.len() || live + self.free_ids.len() != self.slots.len() {
            return Err(format!(
                "{live} records, {} indexed, {} free of {} slots",
                self.ids.len(),
                self.free_ids.len(),
                self.slots.len()
            ));
        }
        for &id in &self.free_ids {
            if self.slots.get(id as usize).is_none_or(|s| s.is_some()) {
                return Err(format!("free id {id} is not vacant"));
            }
        }
        for (id, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let key = slot.service_key();
            let h = self.hash_of(&key.namespace, &key.name);
            if self.find(h, &key) != Some(id as Id) {
                return Err(format!("{key} is not indexed under its id"));
            }
            if slot.rec.ips().is_empty() {
                return Err(format!("{key} has a record without IPs"));
            }
            for a in slot.rec.ips() {
                if !self
                    .ips
                    .get(a)
                    .is_some_and(|u| u.holders.as_slice().contains(&(id as Id)))
                {
                    return Err(format!("{key} holds {} unrecorded", to_ip(a.addr())));
                }
            }
        }
        Ok(())
    }
}
