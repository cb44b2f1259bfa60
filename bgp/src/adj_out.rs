//! Adj-RIB-Out: what the peer was told versus what we want it to hold,
//! turned into packed UPDATE messages.
//!
//! The owner hands [`AdjOut::set_desired`] the complete route set it wants
//! announced; [`AdjOut::updates`] diffs that against what was already
//! advertised on this session and returns the UPDATEs that close the gap:
//! withdrawals first (IPv4 in the classic withdrawn field, IPv6 in
//! MP_UNREACH_NLRI), then announcements grouped by their resolved attribute
//! set, each group packed into as few UPDATEs as the session's maximum
//! message size allows. After `updates` returns, the returned messages are
//! taken as sent: the caller must put all of them on the wire, in order.
//! [`AdjOut::updates_paced`] does the same work in slices of about a given
//! number of encoded bytes, walking the prefixes in order, so a sender can
//! pull the next slice when its socket drains instead of holding the whole
//! difference encoded at once. Slices are cut where a message is full, so
//! the UPDATEs of a paced sync are as few and as full as those of one
//! `updates` call.
//!
//! Memory is proportional to the number of routes: each route is a prefix
//! plus a shared pointer to an interned attribute set, never a copy of it.
//!
//! This module is pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};

use crate::wire::{
    AsSegment, Family, HEADER_LEN, LargeCommunity, MpReach, MpUnreach, Negotiated, Origin,
    PathAttributes, Update, nlri_wire_len,
};

/// Attributes the owner wants one route announced with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteAttrs {
    /// `None` = the session's local address of the route's family.
    pub next_hop: Option<IpAddr>,
    pub origin: Origin,
    pub med: Option<u32>,
    /// Sent only on iBGP sessions (100 there when `None`).
    pub local_pref: Option<u32>,
    /// COMMUNITIES (RFC 1997) as 32-bit values; order and duplicates do not matter.
    pub communities: Vec<u32>,
    /// LARGE_COMMUNITY (RFC 8092); order and duplicates do not matter.
    pub large_communities: Vec<LargeCommunity>,
}

impl Default for RouteAttrs {
    /// Next hop = local address, ORIGIN IGP, nothing else.
    fn default() -> Self {
        RouteAttrs {
            next_hop: None,
            origin: Origin::Igp,
            med: None,
            local_pref: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
        }
    }
}

impl RouteAttrs {
    /// The same attributes with communities sorted and deduplicated, so two
    /// sets that differ only in community order compare (and group) equal.
    pub fn normalized(mut self) -> Self {
        self.communities.sort_unstable();
        self.communities.dedup();
        self.large_communities.sort_unstable();
        self.large_communities.dedup();
        self
    }
}

/// The complete set of routes the owner wants announced on a session. The
/// attributes are shared: a table of any size where every route carries the
/// same attributes holds one [`RouteAttrs`] and a pointer per route.
pub type Routes = BTreeMap<IpNet, Arc<RouteAttrs>>;

/// What [`AdjOut::updates`] needs to know about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutContext {
    pub local_as: u32,
    /// Peer AS == local AS.
    pub ibgp: bool,
    /// Local address used for IPv4 next hops when a route has none.
    pub local_v4: Option<Ipv4Addr>,
    /// Local (global) address used for IPv6 next hops when a route has none.
    pub local_v6: Option<Ipv6Addr>,
    pub negotiated: Negotiated,
}

/// Why a desired route is not on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Skip {
    /// The session did not negotiate the route's family.
    FamilyNotNegotiated,
    /// No next hop of the route's family (none given and no local address of that family).
    NoNextHop,
    /// The attributes alone do not fit in one UPDATE with a single prefix.
    TooLarge,
}

/// A desired attribute set (by address) and whether the route is IPv6.
type ResolveKey = (*const RouteAttrs, bool);
/// The interned wire attributes of a desired set, or why its routes are not sent.
type Resolution = Result<Arc<PathAttributes>, Skip>;

/// Per-session Adj-RIB-Out. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct AdjOut {
    /// Desired routes, sorted by prefix; attribute sets interned.
    desired: Vec<(IpNet, Arc<RouteAttrs>)>,
    /// What the peer holds from us, sorted by prefix; attribute sets interned in `sets`.
    advertised: Vec<(IpNet, Arc<PathAttributes>)>,
    /// Interned resolved attribute sets (templates: MP_REACH, if any, has no NLRI).
    sets: HashSet<Arc<PathAttributes>>,
}

impl AdjOut {
    /// An empty Adj-RIB-Out: nothing desired, nothing advertised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace the desired route set. Nothing is sent until [`updates`](Self::updates).
    pub fn set_desired(&mut self, routes: Routes) {
        let mut interned: HashMap<RouteAttrs, Arc<RouteAttrs>> = HashMap::new();
        // Given set (by address) → its interned, normalized form.
        let mut by_ptr: HashMap<*const RouteAttrs, Arc<RouteAttrs>> = HashMap::new();
        let mut last: Option<(Arc<RouteAttrs>, Arc<RouteAttrs>)> = None;
        let mut desired = Vec::with_capacity(routes.len());
        let mut host_bits = false;
        // `routes` lives until the loop ends, so a given set's address names it throughout.
        for (&prefix, attrs) in &routes {
            // Consecutive routes nearly always share one attribute set: skip the hashes then.
            let arc = match &last {
                Some((given, arc)) if Arc::ptr_eq(given, attrs) => arc.clone(),
                _ => {
                    let arc = by_ptr
                        .entry(Arc::as_ptr(attrs))
                        .or_insert_with(|| {
                            let norm = (**attrs).clone().normalized();
                            // Already normalized (the usual case): keep the given set.
                            let same = norm == **attrs;
                            interned
                                .entry(norm.clone())
                                .or_insert_with(
                                    || if same { attrs.clone() } else { Arc::new(norm) },
                                )
                                .clone()
                        })
                        .clone();
                    last = Some((attrs.clone(), arc.clone()));
                    arc
                }
            };
            let net = prefix.trunc();
            host_bits |= net != prefix;
            desired.push((net, arc));
        }
        if host_bits {
            // Prefixes given with host bits set: truncation can reorder them and
            // make two keys one. Sort again (stably) and keep the last of equals.
            desired.sort_by_key(|e| e.0);
            desired.dedup_by(|later, kept| {
                if later.0 == kept.0 {
                    std::mem::swap(later, kept);
                    true
                } else {
                    false
                }
            });
        }
        self.desired = desired;
    }

    /// Forget what was advertised (the session went down): the next
    /// [`updates`](Self::updates) sends the full desired table.
    pub fn reset(&mut self) {
        self.advertised = Vec::new();
        self.sets.clear();
    }

    /// Number of prefixes the peer currently holds from us.
    pub fn announced_count(&self) -> usize {
        self.advertised.len()
    }

    /// End-of-RIB markers (RFC 4724) for every unicast family the session negotiated, IPv4 first.
    pub fn end_of_rib(ctx: &OutContext) -> Vec<Update> {
        [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
            .into_iter()
            .filter(|f| ctx.negotiated.families.contains(f))
            .map(Update::end_of_rib)
            .collect()
    }

    /// The UPDATEs that bring the peer from what it was told to what is
    /// desired: withdrawals first, then announcements grouped by attribute
    /// set. Each UPDATE encodes to at most `ctx.negotiated.max_message_len()`
    /// bytes and holds as many prefixes as fit. The result is taken as sent.
    pub fn updates(&mut self, ctx: &OutContext) -> Vec<Update> {
        self.diff(ctx, None, usize::MAX).0
    }

    /// One slice of [`updates`](Self::updates): brings the prefixes from
    /// `from` on (from the first one when `None`) in sync, and stops once the
    /// UPDATEs produced reach `budget` encoded bytes, before the next prefix
    /// that would start a new message: the message being filled when the
    /// budget is reached is filled up first (so at most one message beyond
    /// the budget), and a slice does not end with a half-empty UPDATE the
    /// next slice could have filled. Prefixes already in sync cost nothing.
    /// Returns the UPDATEs, taken as sent like those of `updates`, and the
    /// prefix the next call continues from; `None` when everything from
    /// `from` on is in sync.
    ///
    /// A sync started from `None` and continued until `None` comes back
    /// leaves the peer holding exactly the desired set, even when
    /// [`set_desired`](Self::set_desired) changes it in between, as long as
    /// the sync restarts from `None` after each such change.
    pub fn updates_paced(
        &mut self,
        ctx: &OutContext,
        from: Option<IpNet>,
        budget: usize,
    ) -> (Vec<Update>, Option<IpNet>) {
        self.diff(ctx, from, budget.max(1))
    }

    fn diff(
        &mut self,
        ctx: &OutContext,
        from: Option<IpNet>,
        budget: usize,
    ) -> (Vec<Update>, Option<IpNet>) {
        let neg = &ctx.negotiated;
        let max = neg.max_message_len();
        let v4_ok = neg.families.contains(&Family::IPV4_UNICAST);
        let v6_ok = neg.families.contains(&Family::IPV6_UNICAST);

        let mut withdraw_v4 = WithdrawV4::new(max);
        let mut withdraw_v6 = WithdrawV6::new(neg);
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of: HashMap<*const PathAttributes, usize> = HashMap::new();
        let mut last_group: Option<(*const PathAttributes, usize)> = None;

        // Resolution of a desired attribute set for one family, once per call.
        let mut resolved: HashMap<ResolveKey, Resolution> = HashMap::new();
        let mut last_resolved: Option<(ResolveKey, Resolution)> = None;
        let mut skipped: HashMap<Skip, (usize, IpNet)> = HashMap::new();

        // Entries before `from` are in sync already and stay as they are.
        let d0 = from.map_or(0, |f| self.desired.partition_point(|e| e.0 < f));
        let mut new_adv = std::mem::take(&mut self.advertised);
        let a0 = from.map_or(0, |f| new_adv.partition_point(|e| e.0 < f));
        let old_adv = new_adv.split_off(a0);
        if from.is_none() {
            new_adv.reserve(self.desired.len());
        }
        let mut old = old_adv.into_iter().peekable();
        // Estimated encoded bytes produced so far, and where to stop.
        let mut used = 0usize;
        let mut next: Option<IpNet> = None;

        // The packer that took the last prefix: past the budget, the walk
        // goes on only while prefixes still fit in its current message.
        let mut last: Option<Packer> = None;

        'walk: for (prefix, want) in &self.desired[d0..] {
            if used >= budget
                && !last.is_some_and(|b| b.is_open(&groups, &withdraw_v4, &withdraw_v6))
            {
                next = Some(match old.peek() {
                    Some((o, _)) if o < prefix => *o,
                    _ => *prefix,
                });
                break;
            }
            // Everything advertised that sorts before this prefix is no longer desired.
            while let Some((p, _)) = old.peek() {
                if p >= prefix {
                    break;
                }
                let p = *p;
                let b = Packer::withdrawal(p);
                if used >= budget && !b.continues(last, p, &groups, &withdraw_v4, &withdraw_v6) {
                    next = Some(p);
                    break 'walk;
                }
                old.next();
                used += withdraw(&mut withdraw_v4, &mut withdraw_v6, p);
                last = Some(b);
            }
            let (in_old, was) = match old.peek() {
                Some((p, a)) if p == prefix => (true, Some(Arc::as_ptr(a))),
                _ => (false, None),
            };
            let v6 = matches!(prefix, IpNet::V6(_));
            let key = (Arc::as_ptr(want), v6);
            let res = match &last_resolved {
                Some((k, r)) if *k == key => r.clone(),
                _ => {
                    let r = resolved
                        .entry(key)
                        .or_insert_with(|| {
                            if !(if v6 { v6_ok } else { v4_ok }) {
                                return Err(Skip::FamilyNotNegotiated);
                            }
                            let attrs = resolve(want, v6, ctx).ok_or(Skip::NoNextHop)?;
                            let arc = match self.sets.get(&attrs) {
                                Some(a) => a.clone(),
                                None => {
                                    let a = Arc::new(attrs);
                                    self.sets.insert(a.clone());
                                    a
                                }
                            };
                            Ok(arc)
                        })
                        .clone();
                    last_resolved = Some((key, r.clone()));
                    r
                }
            };
            let res = res.and_then(|attrs| {
                // A group is created (and its size checked) on first use.
                let ptr = Arc::as_ptr(&attrs);
                let gi = match last_group {
                    Some((p, gi)) if p == ptr => gi,
                    _ => {
                        let gi = *group_of.entry(ptr).or_insert_with(|| {
                            groups.push(Group::new(attrs.clone(), neg));
                            groups.len() - 1
                        });
                        last_group = Some((ptr, gi));
                        gi
                    }
                };
                if groups[gi].fits_one(*prefix) {
                    Ok((attrs, gi))
                } else {
                    Err(Skip::TooLarge)
                }
            });
            match res {
                Ok((attrs, gi)) => {
                    if was != Some(Arc::as_ptr(&attrs)) {
                        let b = Packer::Group(gi);
                        if used >= budget
                            && !b.continues(last, *prefix, &groups, &withdraw_v4, &withdraw_v6)
                        {
                            next = Some(*prefix);
                            break;
                        }
                        used += groups[gi].push(*prefix);
                        last = Some(b);
                    }
                    if in_old {
                        old.next();
                    }
                    new_adv.push((*prefix, attrs));
                }
                Err(why) => {
                    if in_old {
                        let b = Packer::withdrawal(*prefix);
                        if used >= budget
                            && !b.continues(last, *prefix, &groups, &withdraw_v4, &withdraw_v6)
                        {
                            next = Some(*prefix);
                            break;
                        }
                        old.next();
                        used += withdraw(&mut withdraw_v4, &mut withdraw_v6, *prefix);
                        last = Some(b);
                    }
                    let e = skipped.entry(why).or_insert((0, *prefix));
                    e.0 += 1;
                }
            }
        }
        if next.is_none() {
            // Advertised beyond the last desired prefix: no longer desired.
            while let Some((p, _)) = old.peek() {
                let p = *p;
                let b = Packer::withdrawal(p);
                if used >= budget && !b.continues(last, p, &groups, &withdraw_v4, &withdraw_v6) {
                    next = Some(p);
                    break;
                }
                old.next();
                used += withdraw(&mut withdraw_v4, &mut withdraw_v6, p);
                last = Some(b);
            }
        }
        // What the walk did not reach is still advertised as before.
        new_adv.extend(old);

        for (why, (n, example)) in &skipped {
            match why {
                Skip::FamilyNotNegotiated => {
                    tracing::debug!(routes = n, %example, "not sent: family not negotiated")
                }
                Skip::NoNextHop => tracing::warn!(
                    routes = n,
                    %example,
                    "not sent: no next hop of the route's family (give one or a local address)"
                ),
                Skip::TooLarge => tracing::warn!(
                    routes = n,
                    %example,
                    "not sent: attributes do not fit in one UPDATE"
                ),
            }
        }

        self.advertised = new_adv;
        self.sets.retain(|a| Arc::strong_count(a) > 1);

        let mut out = withdraw_v4.finish();
        out.extend(withdraw_v6.finish());
        for g in groups {
            out.extend(g.finish());
        }
        (out, next)
    }
}

/// Which of a diff's message packers a prefix goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packer {
    WithdrawV4,
    WithdrawV6,
    /// Announcements of `groups[i]`.
    Group(usize),
}

impl Packer {
    fn withdrawal(p: IpNet) -> Packer {
        match p {
            IpNet::V4(_) => Packer::WithdrawV4,
            IpNet::V6(_) => Packer::WithdrawV6,
        }
    }

    /// Whether this packer's current message is started and could still take
    /// a host route of its family (a slice past its budget goes on filling it).
    fn is_open(self, groups: &[Group], w4: &WithdrawV4, w6: &WithdrawV6) -> bool {
        match self {
            Packer::WithdrawV4 => w4.takes(nlri_wire_len(32)),
            Packer::WithdrawV6 => w6.takes(nlri_wire_len(128)),
            Packer::Group(i) => {
                let host = if groups[i].mp_value.is_some() {
                    128
                } else {
                    32
                };
                groups[i].takes(nlri_wire_len(host))
            }
        }
    }

    /// Whether `p`, going to this packer, fills the message `last` was
    /// filling (rather than starting a new one).
    fn continues(
        self,
        last: Option<Packer>,
        p: IpNet,
        groups: &[Group],
        w4: &WithdrawV4,
        w6: &WithdrawV6,
    ) -> bool {
        let add = nlri_wire_len(p.prefix_len());
        last == Some(self)
            && match self {
                Packer::WithdrawV4 => w4.takes(add),
                Packer::WithdrawV6 => w6.takes(add),
                Packer::Group(i) => groups[i].takes(add),
            }
    }
}

/// Queue the withdrawal of `p`; returns the encoded bytes it adds (the
/// prefix, plus a message's fixed part when it starts a new one).
fn withdraw(v4: &mut WithdrawV4, v6: &mut WithdrawV6, p: IpNet) -> usize {
    match p {
        IpNet::V4(p) => v4.push(p),
        IpNet::V6(_) => v6.push(p),
    }
}

/// The wire attributes for `attrs` on this session, MP_REACH (for IPv6)
/// without NLRI; `None` when no next hop of the family can be found.
fn resolve(attrs: &RouteAttrs, v6: bool, ctx: &OutContext) -> Option<PathAttributes> {
    let as_path = if ctx.ibgp {
        Vec::new()
    } else {
        vec![AsSegment::Sequence(vec![ctx.local_as])]
    };
    let mut pa = PathAttributes {
        origin: Some(attrs.origin),
        as_path: Some(as_path),
        med: attrs.med,
        local_pref: if ctx.ibgp {
            Some(attrs.local_pref.unwrap_or(100))
        } else {
            None
        },
        communities: attrs.communities.clone(),
        large_communities: attrs.large_communities.clone(),
        ..PathAttributes::default()
    };
    if v6 {
        let nh = match attrs.next_hop {
            Some(IpAddr::V6(a)) => a,
            Some(IpAddr::V4(_)) => return None,
            None => ctx.local_v6?,
        };
        pa.mp_reach = Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec![IpAddr::V6(nh)],
            nlri: Vec::new(),
        });
    } else {
        pa.next_hop = Some(match attrs.next_hop {
            Some(IpAddr::V4(a)) => a,
            Some(IpAddr::V6(_)) => return None,
            None => ctx.local_v4?,
        });
    }
    Some(pa)
}

/// Length of an MP attribute's header: flags, type, and a 1- or 2-octet
/// length (the Extended Length flag once the value exceeds 255 bytes).
fn mp_header_len(value_len: usize) -> usize {
    if value_len > 255 { 4 } else { 3 }
}

/// Bytes of an UPDATE besides attributes and NLRI: header, both 2-octet length fields.
const UPDATE_FIXED: usize = HEADER_LEN + 2 + 2;

/// IPv4 withdrawals in the classic field, packed.
struct WithdrawV4 {
    max: usize,
    cur: Vec<Ipv4Net>,
    len: usize,
    out: Vec<Update>,
}

impl WithdrawV4 {
    fn new(max: usize) -> Self {
        WithdrawV4 {
            max,
            cur: Vec::new(),
            len: UPDATE_FIXED,
            out: Vec::new(),
        }
    }

    /// Whether the current message is started and has room for `add` more bytes.
    fn takes(&self, add: usize) -> bool {
        !self.cur.is_empty() && self.len + add <= self.max
    }

    fn push(&mut self, p: Ipv4Net) -> usize {
        let add = nlri_wire_len(p.prefix_len());
        if self.len + add > self.max {
            self.flush();
        }
        let cost = if self.cur.is_empty() {
            add + UPDATE_FIXED
        } else {
            add
        };
        self.len += add;
        self.cur.push(p);
        cost
    }

    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.out.push(Update {
                withdrawn: std::mem::take(&mut self.cur),
                ..Update::default()
            });
        }
        self.len = UPDATE_FIXED;
    }

    fn finish(mut self) -> Vec<Update> {
        self.flush();
        self.out
    }
}

/// IPv6 withdrawals in MP_UNREACH_NLRI, packed.
struct WithdrawV6 {
    max: usize,
    /// UPDATE length with an empty MP_UNREACH value (AFI, SAFI) and a 1-octet attribute length.
    base: usize,
    cur: Vec<IpNet>,
    /// Sum of the NLRI lengths in `cur`.
    nlri: usize,
    out: Vec<Update>,
}

/// MP_UNREACH value bytes besides the withdrawn routes: AFI, SAFI.
const MP_UNREACH_FIXED: usize = 3;

impl WithdrawV6 {
    fn new(neg: &Negotiated) -> Self {
        WithdrawV6 {
            max: neg.max_message_len(),
            base: UPDATE_FIXED + mp_header_len(MP_UNREACH_FIXED) + MP_UNREACH_FIXED,
            cur: Vec::new(),
            nlri: 0,
            out: Vec::new(),
        }
    }

    fn len_with(&self, nlri: usize) -> usize {
        let value = MP_UNREACH_FIXED + nlri;
        self.base + nlri + mp_header_len(value) - mp_header_len(MP_UNREACH_FIXED)
    }

    /// Whether the current message is started and has room for `add` more bytes.
    fn takes(&self, add: usize) -> bool {
        !self.cur.is_empty() && self.len_with(self.nlri + add) <= self.max
    }

    fn push(&mut self, p: IpNet) -> usize {
        let add = nlri_wire_len(p.prefix_len());
        if self.len_with(self.nlri + add) > self.max {
            self.flush();
        }
        let cost = if self.cur.is_empty() {
            add + self.base
        } else {
            add
        };
        self.nlri += add;
        self.cur.push(p);
        cost
    }

    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.out.push(Update {
                attributes: PathAttributes {
                    mp_unreach: Some(MpUnreach {
                        family: Family::IPV6_UNICAST,
                        withdrawn: std::mem::take(&mut self.cur),
                    }),
                    ..PathAttributes::default()
                },
                ..Update::default()
            });
        }
        self.nlri = 0;
    }

    fn finish(mut self) -> Vec<Update> {
        self.flush();
        self.out
    }
}

/// Announcements sharing one resolved attribute set, packed.
struct Group {
    attrs: Arc<PathAttributes>,
    max: usize,
    /// UPDATE length with these attributes and no NLRI.
    base: usize,
    /// For IPv6: the MP_REACH value length without NLRI (its header grows past 255).
    mp_value: Option<usize>,
    cur4: Vec<Ipv4Net>,
    cur6: Vec<IpNet>,
    nlri: usize,
    out: Vec<Update>,
}

impl Group {
    fn new(attrs: Arc<PathAttributes>, neg: &Negotiated) -> Self {
        let mp_value = attrs.mp_reach.as_ref().map(|mp| {
            // AFI, SAFI, next hop length, next hops, reserved.
            2 + 1 + 1 + mp.next_hops.iter().map(|a| ip_len(*a)).sum::<usize>() + 1
        });
        Group {
            base: UPDATE_FIXED + attrs.encoded_len(neg),
            attrs,
            max: neg.max_message_len(),
            mp_value,
            cur4: Vec::new(),
            cur6: Vec::new(),
            nlri: 0,
            out: Vec::new(),
        }
    }

    fn len_with(&self, nlri: usize) -> usize {
        match self.mp_value {
            None => self.base + nlri,
            Some(v) => self.base + nlri + mp_header_len(v + nlri) - mp_header_len(v),
        }
    }

    /// Whether the current message is started and has room for `add` more NLRI bytes.
    fn takes(&self, add: usize) -> bool {
        self.nlri > 0 && self.len_with(self.nlri + add) <= self.max
    }

    /// Whether `p` alone fits in one UPDATE with these attributes.
    fn fits_one(&self, p: IpNet) -> bool {
        self.len_with(nlri_wire_len(p.prefix_len())) <= self.max
    }

    /// Add `p`; returns the encoded bytes it adds (with the attributes when
    /// it starts a new message).
    fn push(&mut self, p: IpNet) -> usize {
        let add = nlri_wire_len(p.prefix_len());
        if self.len_with(self.nlri + add) > self.max {
            self.flush();
        }
        let cost = if self.nlri == 0 { add + self.base } else { add };
        self.nlri += add;
        match p {
            IpNet::V4(p) => self.cur4.push(p),
            IpNet::V6(_) => self.cur6.push(p),
        }
        cost
    }

    fn flush(&mut self) {
        if self.nlri > 0 {
            let mut attributes = PathAttributes::clone(&self.attrs);
            let nlri = if let Some(mp) = attributes.mp_reach.as_mut() {
                mp.nlri = std::mem::take(&mut self.cur6);
                Vec::new()
            } else {
                std::mem::take(&mut self.cur4)
            };
            self.out.push(Update {
                attributes,
                nlri,
                ..Update::default()
            });
        }
        self.nlri = 0;
    }

    fn finish(mut self) -> Vec<Update> {
        self.flush();
        self.out
    }
}

fn ip_len(a: IpAddr) -> usize {
    match a {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}
