//! IP sharing: who holds each address in use, the `allow-shared-ip` index,
//! and the rules for sharing an IP (same key, disjoint ports, compatible
//! traffic policies); taking and giving back addresses.

use std::collections::BTreeMap;
use std::sync::Arc;

use smallvec::SmallVec;

use super::Allocator;
use super::error::AllocError;
use super::ids::Id;
use super::ranges::{Addr, Packed, to_ip};
use super::request::{Protocol, ServiceRequest, TrafficPolicy};

/// The services holding one address, in the order they took it. One or two
/// holders (the usual cases) need no heap.
#[derive(Debug, Clone)]
pub(super) enum Holders {
    One(Id),
    Two([Id; 2]),
    /// Three or more. Boxed so that the enum stays 16 bytes (a bare `Vec`
    /// would make every address in use 8 bytes bigger for a rare case).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Id>>),
}

impl Holders {
    pub(super) fn as_slice(&self) -> &[Id] {
        match self {
            Holders::One(a) => std::slice::from_ref(a),
            Holders::Two(a) => a,
            Holders::Many(v) => v,
        }
    }

    pub(super) fn push(&mut self, id: Id) {
        match self {
            Holders::One(a) => *self = Holders::Two([*a, id]),
            Holders::Two([a, b]) => *self = Holders::Many(Box::new(vec![*a, *b, id])),
            Holders::Many(v) => v.push(id),
        }
    }

    /// Removes `id`; true if nobody is left.
    pub(super) fn remove(&mut self, id: Id) -> bool {
        match self {
            Holders::One(a) => *a == id,
            Holders::Two([a, b]) => {
                if *a == id {
                    *self = Holders::One(*b);
                } else if *b == id {
                    *self = Holders::One(*a);
                }
                false
            }
            Holders::Many(v) => {
                v.retain(|&h| h != id);
                if let [a, b] = v[..] {
                    *self = Holders::Two([a, b]);
                }
                false
            }
        }
    }
}

/// One address in use and who holds it.
#[derive(Debug, Clone)]
pub(super) struct IpUse {
    pub(super) pool: u32,
    pub(super) range: u32,
    pub(super) holders: Holders,
}

/// What a service with a sharing key brings to the comparison with key-mates
/// (only those are ever compared).
#[derive(Debug, Clone)]
pub(super) struct Share {
    pub(super) key: Arc<str>,
    /// Inline up to two ports (no allocation of their own).
    pub(super) ports: SmallVec<[(Protocol, u16); 2]>,
    pub(super) traffic_policy: TrafficPolicy,
    pub(super) selector: BTreeMap<String, String>,
}

impl Allocator {
    /// May `req` (service `me`, if known) use `addr` alongside its current holders?
    pub(super) fn check_share(
        &self,
        addr: Addr,
        req: &ServiceRequest,
        me: Option<Id>,
    ) -> Result<(), AllocError> {
        let Some(u) = self.ips.get(&Packed::new(addr)) else {
            return Ok(());
        };
        for &h in u.holders.as_slice() {
            if Some(h) == me {
                continue;
            }
            let slot = self.slot(h);
            let ip = to_ip(addr);
            let share = match (&req.sharing_key, &slot.rec.share) {
                (Some(a), Some(s)) if **a == *s.key => s,
                _ => {
                    return Err(AllocError::NotShared {
                        ip,
                        other: slot.service_key(),
                        mine: req.sharing_key.clone(),
                        theirs: slot.rec.sharing_key().map(String::from),
                    });
                }
            };
            match (req.traffic_policy, share.traffic_policy) {
                (TrafficPolicy::Cluster, TrafficPolicy::Cluster) => {}
                (TrafficPolicy::Local, TrafficPolicy::Local) => {
                    if req.selector != share.selector {
                        return Err(AllocError::SelectorConflict {
                            ip,
                            other: slot.service_key(),
                        });
                    }
                }
                (mine, theirs) => {
                    return Err(AllocError::TrafficPolicyConflict {
                        ip,
                        other: slot.service_key(),
                        mine,
                        theirs,
                    });
                }
            }
            if let Some(&(protocol, port)) = req.ports.iter().find(|p| share.ports.contains(p)) {
                return Err(AllocError::PortInUse {
                    ip,
                    protocol,
                    port,
                    other: slot.service_key(),
                });
            }
        }
        Ok(())
    }

    /// The sharing data of `req`, reusing the stored copy of its key.
    pub(super) fn share_of(&self, req: &ServiceRequest) -> Option<Box<Share>> {
        let k = req.sharing_key.as_deref()?;
        let key = match self.by_sharing_key.get_key_value(k) {
            Some((stored, _)) => stored.clone(),
            None => Arc::from(k),
        };
        Some(Box::new(Share {
            key,
            ports: SmallVec::from_slice(&req.ports),
            traffic_policy: req.traffic_policy,
            selector: req.selector.clone(),
        }))
    }

    /// Records service `id` as a holder of `addr` (in pool `p`, range `r`);
    /// the first holder takes the address out of its range's free intervals
    /// and files it under its sharing key.
    pub(super) fn attach(
        &mut self,
        addr: Addr,
        p: usize,
        r: usize,
        id: Id,
        sharing_key: Option<&Arc<str>>,
    ) {
        let packed = Packed::new(addr);
        match self.ips.entry(packed) {
            hashbrown::hash_map::Entry::Occupied(mut o) => o.get_mut().holders.push(id),
            hashbrown::hash_map::Entry::Vacant(v) => {
                let taken = self.pools[p].ranges[r].take(addr.1);
                debug_assert!(taken, "{} was not free", to_ip(addr));
                self.pools[p].in_use += 1;
                v.insert(IpUse {
                    pool: p as u32,
                    range: r as u32,
                    holders: Holders::One(id),
                });
                if let Some(k) = sharing_key {
                    let list = self.by_sharing_key.entry(k.clone()).or_default();
                    if let Err(at) = list.binary_search(&packed) {
                        list.insert(at, packed);
                    }
                }
            }
        }
    }

    /// Removes service `id` from the holders of `packed`; the last holder
    /// gives the address back to its range and its sharing key's list.
    pub(super) fn detach(&mut self, packed: Packed, id: Id, sharing_key: Option<&str>) {
        let Some(u) = self.ips.get_mut(&packed) else {
            return;
        };
        if !u.holders.remove(id) {
            return;
        }
        let (p, r) = (u.pool as usize, u.range as usize);
        self.ips.remove(&packed);
        self.pools[p].ranges[r].give(packed.addr().1);
        self.pools[p].in_use -= 1;
        if let Some(k) = sharing_key
            && let Some(list) = self.by_sharing_key.get_mut(k)
        {
            if let Ok(at) = list.binary_search(&packed) {
                list.remove(at);
            }
            if list.is_empty() {
                self.by_sharing_key.remove(k);
            }
        }
    }
}
