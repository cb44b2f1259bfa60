//! The service table: each service gets a small id on its first assignment
//! (its key interned once); its record says which addresses it holds.

use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::DefaultHashBuilder;

use super::Allocator;
use super::plan::Pick;
use super::ranges::{Packed, to_ip};
use super::request::{Assignment, ServiceKey};
use super::sharing::Share;

/// Internal service number: index into `Allocator::slots`.
pub(super) type Id = u32;

/// What the allocator remembers of a service.
#[derive(Debug, Clone)]
pub(super) struct Record {
    /// The first `n_ips` are held (at most one per family).
    pub(super) ips: [Packed; 2],
    pub(super) n_ips: u8,
    pub(super) share: Option<Box<Share>>,
    pub(super) pool_annotation: Option<Box<str>>,
}

impl Record {
    pub(super) fn ips(&self) -> &[Packed] {
        &self.ips[..usize::from(self.n_ips)]
    }

    pub(super) fn sharing_key(&self) -> Option<&str> {
        self.share.as_ref().map(|s| &*s.key)
    }
}

/// A service: its key (namespace then name in one allocation) and record.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) key: Box<str>,
    /// Length of the namespace in `key`.
    pub(super) split: u32,
    pub(super) rec: Record,
}

impl Slot {
    pub(super) fn ns(&self) -> &str {
        &self.key[..self.split as usize]
    }

    pub(super) fn name(&self) -> &str {
        &self.key[self.split as usize..]
    }

    pub(super) fn is(&self, k: &ServiceKey) -> bool {
        self.ns() == k.namespace && self.name() == k.name
    }

    pub(super) fn service_key(&self) -> ServiceKey {
        ServiceKey::new(self.ns(), self.name())
    }
}

/// Sets the held addresses of `rec` to those of `plan` (at most two).
pub(super) fn set_ips(rec: &mut Record, plan: &[Pick]) {
    debug_assert!(plan.len() <= 2, "at most one address per family");
    for (slot, k) in rec.ips.iter_mut().zip(plan) {
        *slot = Packed::new(k.0);
    }
    rec.n_ips = plan.len() as u8;
}

/// The hash of a service key as the id index files it.
pub(super) fn hash_key(hasher: &DefaultHashBuilder, ns: &str, name: &str) -> u64 {
    let mut h = hasher.build_hasher();
    ns.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

impl Allocator {
    pub(super) fn hash_of(&self, ns: &str, name: &str) -> u64 {
        hash_key(&self.hasher, ns, name)
    }

    pub(super) fn find(&self, h: u64, key: &ServiceKey) -> Option<Id> {
        let slots = &self.slots;
        self.ids
            .find(h, |&id| {
                slots[id as usize].as_ref().is_some_and(|s| s.is(key))
            })
            .copied()
    }

    pub(super) fn slot(&self, id: Id) -> &Slot {
        self.slots[id as usize].as_ref().expect("live service id")
    }

    pub(super) fn slot_mut(&mut self, id: Id) -> &mut Slot {
        self.slots[id as usize].as_mut().expect("live service id")
    }

    /// Files a new service under `key` (hash `h`); returns its id.
    pub(super) fn insert_id(&mut self, h: u64, key: &ServiceKey, rec: Record) -> Id {
        let mut joined = String::with_capacity(key.namespace.len() + key.name.len());
        joined.push_str(&key.namespace);
        joined.push_str(&key.name);
        let slot = Slot {
            key: joined.into_boxed_str(),
            split: u32::try_from(key.namespace.len()).expect("namespace shorter than 4 GiB"),
            rec,
        };
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                Id::try_from(self.slots.len() - 1).expect("fewer than 2^32 services")
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.ids.insert_unique(h, id, |&i| {
            let s = slots[i as usize].as_ref().expect("indexed ids are live");
            hash_key(hasher, s.ns(), s.name())
        });
        id
    }

    /// Forgets service `id` (holding nothing any more).
    pub(super) fn remove_id(&mut self, id: Id) {
        let slot = self.slots[id as usize].take().expect("live service id");
        let h = hash_key(&self.hasher, slot.ns(), slot.name());
        if let Ok(e) = self.ids.find_entry(h, |&i| i == id) {
            e.remove();
        }
        self.free_ids.push(id);
    }

    /// Frees what service `id` holds and forgets it; returns what it held.
    pub(super) fn release_id(&mut self, id: Id) -> Assignment {
        let a = self.assignment_of(id);
        let rec = &self.slot(id).rec;
        let (ips, n) = (rec.ips, usize::from(rec.n_ips));
        let skey = rec.share.as_ref().map(|s| s.key.clone());
        for &addr in &ips[..n] {
            self.detach(addr, id, skey.as_deref());
        }
        self.remove_id(id);
        a
    }

    /// What service `id` holds, with pool names.
    pub(super) fn assignment_of(&self, id: Id) -> Assignment {
        Assignment {
            ips: self
                .slot(id)
                .rec
                .ips()
                .iter()
                .map(|a| {
                    (
                        to_ip(a.addr()),
                        self.pools[self.ips[a].pool as usize].name.clone(),
                    )
                })
                .collect(),
        }
    }
}
