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
//! Semantics follow MetalLB v0.12: pools are tried in configuration order, the
//! lowest free address wins, `auto-assign: false` pools are used only when a
//! service names them or requests one of their IPs, `avoid-buggy-ips` skips
//! IPv4 addresses whose last octet is 0 or 255, and an IP is shared only by
//! services with the same `allow-shared-ip` key, disjoint ports and compatible
//! traffic policies (all `Cluster`, or all `Local` with the same selector).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashMap as FastMap, HashTable};
use smallvec::SmallVec;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            IpFamily::V4 => IpFamily::V6,
            IpFamily::V6 => IpFamily::V4,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// `spec.ipFamilyPolicy` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FamilyPolicy {
    /// One address, of the first family in `families`.
    #[default]
    SingleStack,
    /// Both families if the pools allow it, else whatever can be had.
    PreferDualStack,
    /// Both families or nothing.
    RequireDualStack,
}

/// A port protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// `spec.externalTrafficPolicy` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrafficPolicy {
    /// Traffic may go to any node.
    #[default]
    Cluster,
    /// Traffic goes only to nodes with a local endpoint.
    Local,
}

impl fmt::Display for TrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        })
    }
}

/// Identity of a Service: namespace and name. Displays as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An address pool as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// Unique, non-empty name.
    pub name: String,
    /// Inclusive ranges; both ends of one range are of the same family.
    pub ranges: Vec<(IpAddr, IpAddr)>,
    /// Whether services that neither name the pool nor request one of its IPs may get addresses from it.
    pub auto_assign: bool,
    /// Skip IPv4 addresses whose last octet is 0 or 255.
    pub avoid_buggy_ips: bool,
}

/// What a service asks of the allocator (built by the glue from a Service).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceRequest {
    /// The service.
    pub key: ServiceKey,
    /// `spec.ipFamilies`, primary first. Empty means IPv4 (or the family of the requested IP).
    pub families: Vec<IpFamily>,
    /// `spec.ipFamilyPolicy`.
    pub family_policy: FamilyPolicy,
    /// `spec.loadBalancerIP` and/or the `loadBalancerIPs` annotation: at most one per family.
    pub requested_ips: Vec<IpAddr>,
    /// The `address-pool` annotation.
    pub pool: Option<String>,
    /// The `allow-shared-ip` annotation.
    pub sharing_key: Option<String>,
    /// The service's ports.
    pub ports: Vec<(Protocol, u16)>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// `spec.selector`, compared between `Local` services sharing an IP.
    pub selector: BTreeMap<String, String>,
    /// IPs the service holds now (`status.loadBalancer.ingress`); kept when still valid.
    pub current: Vec<IpAddr>,
    /// Creation time (any monotonic unit, e.g. Unix seconds); orders [`Allocator::rebuild`].
    pub created: Option<i64>,
}

impl ServiceRequest {
    /// A single-stack IPv4, `Cluster` request with no ports and no annotations.
    pub fn new(key: ServiceKey) -> Self {
        ServiceRequest {
            key,
            families: vec![IpFamily::V4],
            ..Default::default()
        }
    }
}

/// The IPs a service holds, each with the name of its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// `(ip, pool name)`, primary family first.
    pub ips: Vec<(IpAddr, String)>,
}

impl Assignment {
    /// Just the IPs.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.ips.iter().map(|(ip, _)| *ip).collect()
    }
}

/// What a configuration change did to a service ([`Allocator::set_pools`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The service lost these IPs (it keeps any other it held); call [`Allocator::assign`] again.
    Released {
        /// The IPs it lost.
        ips: Vec<IpAddr>,
        /// Why, for an Event.
        reason: String,
    },
    /// The service keeps its IPs but the pool they belong to changed name (rewrite the pool annotation).
    PoolChanged(Assignment),
}

/// Per-pool counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Pool name.
    pub name: String,
    /// Assignable addresses (buggy ones excluded when avoided); saturates at `u128::MAX`.
    pub total: u128,
    /// Distinct addresses in use.
    pub in_use: u128,
}

/// An invalid pool list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// A pool without a name.
    #[error("an address pool has an empty name")]
    EmptyName,
    /// Two pools with one name.
    #[error("address pool \"{0}\" is defined twice")]
    DuplicateName(String),
    /// A range whose ends are of different families or in the wrong order.
    #[error("address pool \"{pool}\": invalid range {start}-{end}")]
    InvalidRange {
        /// Pool.
        pool: String,
        /// First address.
        start: IpAddr,
        /// Last address.
        end: IpAddr,
    },
    /// Two ranges overlap.
    #[error("address pools \"{first}\" and \"{second}\" overlap at {at}")]
    Overlap {
        /// Pool of the lower range.
        first: String,
        /// Pool of the other range.
        second: String,
        /// First address of the other range.
        at: IpAddr,
    },
}

/// Why a service got no address. `Display` is the Kubernetes Event message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The configuration has no pools.
    #[error("no address pools are configured")]
    NoPools,
    /// Every pool has `auto-assign: false` and the service neither names one nor requests an IP.
    #[error(
        "no address pool allows automatic assignment (auto-assign: false); request an IP or name a pool"
    )]
    NoAutoAssignPool,
    /// The `address-pool` annotation names no pool.
    #[error("unknown address pool \"{pool}\"")]
    UnknownPool {
        /// The annotated name.
        pool: String,
    },
    /// No candidate pool has addresses of this family.
    #[error("{}", match pool {
        Some(p) => format!("address pool \"{p}\" has no {family} addresses"),
        None => format!("no auto-assign address pool has {family} addresses"),
    })]
    NoPoolForFamily {
        /// The family.
        family: IpFamily,
        /// The annotated pool, if any.
        pool: Option<String>,
    },
    /// The one candidate pool is full.
    #[error("no available {family} addresses in pool \"{pool}\"")]
    PoolExhausted {
        /// The pool.
        pool: String,
        /// The family.
        family: IpFamily,
    },
    /// Every auto-assign pool is full.
    #[error(
        "no available {family} addresses in any auto-assign pool ({})",
        quoted(pools)
    )]
    AllPoolsExhausted {
        /// The family.
        family: IpFamily,
        /// The pools tried, in order.
        pools: Vec<String>,
    },
    /// A requested IP lies outside every pool.
    #[error("requested IP {ip} is not in any address pool")]
    RequestedIpNotInAnyPool {
        /// The IP.
        ip: IpAddr,
    },
    /// A requested IP ends in .0 or .255 and its pool avoids those.
    #[error("requested IP {ip} is in pool \"{pool}\", which avoids buggy IPs ending in .0 or .255")]
    RequestedIpAvoided {
        /// The IP.
        ip: IpAddr,
        /// Its pool.
        pool: String,
    },
    /// A requested IP is not in the annotated pool.
    #[error("requested IP {ip} is in pool \"{actual}\", not in the annotated pool \"{pool}\"")]
    RequestedIpNotInPool {
        /// The IP.
        ip: IpAddr,
        /// The annotated pool.
        pool: String,
        /// The pool the IP is in.
        actual: String,
    },
    /// A requested IP is of a family the service does not have.
    #[error("requested IP {ip} is {family}, but the service's IP families are {families}")]
    RequestedIpFamily {
        /// The IP.
        ip: IpAddr,
        /// Its family.
        family: IpFamily,
        /// The service's families, e.g. `IPv4`.
        families: String,
    },
    /// Two requested IPs of one family.
    #[error("requested IPs {first} and {second} are both {family}; at most one per family")]
    TwoRequestedIpsOfFamily {
        /// The family.
        family: IpFamily,
        /// First IP.
        first: IpAddr,
        /// Second IP.
        second: IpAddr,
    },
    /// The IP is held by a service with another (or no) sharing key.
    #[error(
        "IP {ip} is already used by {other}, which does not share it (sharing key {} vs {})",
        key_str(mine),
        key_str(theirs)
    )]
    NotShared {
        /// The IP.
        ip: IpAddr,
        /// The holder.
        other: ServiceKey,
        /// This service's sharing key.
        mine: Option<String>,
        /// The holder's sharing key.
        theirs: Option<String>,
    },
    /// Same sharing key, but a port is taken.
    #[error("port {port}/{protocol} is already used on IP {ip} by {other}")]
    PortInUse {
        /// The IP.
        ip: IpAddr,
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
        /// The holder.
        other: ServiceKey,
    },
    /// Same sharing key, but one is `Local` and the other `Cluster`.
    #[error(
        "IP {ip} is already used by {other} with externalTrafficPolicy {theirs}; a {mine} service cannot share it"
    )]
    TrafficPolicyConflict {
        /// The IP.
        ip: IpAddr,
        /// The holder.
        other: ServiceKey,
        /// This service's policy.
        mine: TrafficPolicy,
        /// The holder's policy.
        theirs: TrafficPolicy,
    },
    /// Same sharing key, both `Local`, different selectors.
    #[error(
        "IP {ip} is already used by {other} with externalTrafficPolicy Local and a different selector; Local services share an IP only with the same selector"
    )]
    SelectorConflict {
        /// The IP.
        ip: IpAddr,
        /// The holder.
        other: ServiceKey,
    },
    /// `RequireDualStack` could not be satisfied.
    #[error("RequireDualStack: cannot allocate both an IPv4 and an IPv6 address: {reason}")]
    DualStackImpossible {
        /// Why.
        reason: String,
    },
}

fn key_str(k: &Option<String>) -> String {
    match k {
        Some(k) => format!("{k:?}"),
        None => "none".to_string(),
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An address: family plus the address as a number.
type Addr = (IpFamily, u128);

fn to_addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => (IpFamily::V4, u32::from(v4) as u128),
        IpAddr::V6(v6) => (IpFamily::V6, u128::from(v6)),
    }
}

fn to_ip((fam, x): Addr) -> IpAddr {
    match fam {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(x as u32)),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(x)),
    }
}

/// Is `x` an IPv4 .0 or .255 address in a range that avoids them?
fn skippable(avoid: bool, x: u128) -> bool {
    avoid && matches!(x & 0xff, 0 | 255)
}

/// An address as stored: 24 bytes and 8-aligned (an [`Addr`] pads to 32).
/// Orders like [`Addr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Packed {
    fam: IpFamily,
    hi: u64,
    lo: u64,
}

impl Packed {
    fn new((fam, x): Addr) -> Self {
        Packed {
            fam,
            hi: (x >> 64) as u64,
            lo: x as u64,
        }
    }

    fn addr(self) -> Addr {
        (self.fam, (u128::from(self.hi) << 64) | u128::from(self.lo))
    }
}

/// One inclusive range of a pool and its free intervals.
#[derive(Debug, Clone)]
struct Range {
    fam: IpFamily,
    lo: u128,
    hi: u128,
    /// Skip IPv4 .0/.255 (pool has avoid-buggy-ips and this is IPv4).
    avoid: bool,
    /// Free intervals `end -> start` (inclusive), keyed by their end so that
    /// taking the lowest address of an interval updates it in place. Their
    /// ends are never skippable addresses and intervals holding only
    /// skippable addresses are left out, so the lowest assignable address is
    /// the start of the first interval.
    free: BTreeMap<u128, u128>,
}

impl Range {
    fn new(fam: IpFamily, lo: u128, hi: u128, avoid: bool) -> Self {
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

    fn skippable(&self, x: u128) -> bool {
        skippable(self.avoid, x)
    }

    fn insert_trimmed(&mut self, mut s: u128, mut e: u128) {
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

    fn first_free(&self) -> Option<u128> {
        self.free.first_key_value().map(|(_, s)| *s)
    }

    /// Marks `x` used; false if it was not free.
    fn take(&mut self, x: u128) -> bool {
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
    fn bridges(&self, a: u128, b: u128) -> bool {
        a < b && b - a - 1 <= 2 && (a + 1..b).all(|y| self.skippable(y))
    }

    /// Marks `x` (not skippable, inside the range) free again.
    fn give(&mut self, x: u128) {
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
    fn assignable(&self, s: u128, e: u128) -> u128 {
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

    fn total(&self) -> u128 {
        self.assignable(self.lo, self.hi)
    }
}

#[derive(Debug, Clone)]
struct Pool {
    name: String,
    auto_assign: bool,
    ranges: Vec<Range>,
    in_use: u128,
}

impl Pool {
    fn has_family(&self, f: IpFamily) -> bool {
        self.ranges.iter().any(|r| r.fam == f)
    }
}

/// Internal service number: index into `Allocator::slots`.
type Id = u32;

/// The services holding one address, in the order they took it. One or two
/// holders (the usual cases) need no heap.
#[derive(Debug, Clone)]
enum Holders {
    One(Id),
    Two([Id; 2]),
    /// Three or more. Boxed so that the enum stays 16 bytes (a bare `Vec`
    /// would make every address in use 8 bytes bigger for a rare case).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Id>>),
}

impl Holders {
    fn as_slice(&self) -> &[Id] {
        match self {
            Holders::One(a) => std::slice::from_ref(a),
            Holders::Two(a) => a,
            Holders::Many(v) => v,
        }
    }

    fn push(&mut self, id: Id) {
        match self {
            Holders::One(a) => *self = Holders::Two([*a, id]),
            Holders::Two([a, b]) => *self = Holders::Many(Box::new(vec![*a, *b, id])),
            Holders::Many(v) => v.push(id),
        }
    }

    /// Removes `id`; true if nobody is left.
    fn remove(&mut self, id: Id) -> bool {
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
struct IpUse {
    pool: u32,
    range: u32,
    holders: Holders,
}

/// What a service with a sharing key brings to the comparison with key-mates
/// (only those are ever compared).
#[derive(Debug, Clone)]
struct Share {
    key: Arc<str>,
    /// Inline up to two ports (no allocation of their own).
    ports: SmallVec<[(Protocol, u16); 2]>,
    traffic_policy: TrafficPolicy,
    selector: BTreeMap<String, String>,
}

/// What the allocator remembers of a service.
#[derive(Debug, Clone)]
struct Record {
    /// The first `n_ips` are held (at most one per family).
    ips: [Packed; 2],
    n_ips: u8,
    share: Option<Box<Share>>,
    pool_annotation: Option<Box<str>>,
}

impl Record {
    fn ips(&self) -> &[Packed] {
        &self.ips[..usize::from(self.n_ips)]
    }

    fn sharing_key(&self) -> Option<&str> {
        self.share.as_ref().map(|s| &*s.key)
    }
}

/// A service: its key (namespace then name in one allocation) and record.
#[derive(Debug, Clone)]
struct Slot {
    key: Box<str>,
    /// Length of the namespace in `key`.
    split: u32,
    rec: Record,
}

impl Slot {
    fn ns(&self) -> &str {
        &self.key[..self.split as usize]
    }

    fn name(&self) -> &str {
        &self.key[self.split as usize..]
    }

    fn is(&self, k: &ServiceKey) -> bool {
        self.ns() == k.namespace && self.name() == k.name
    }

    fn service_key(&self) -> ServiceKey {
        ServiceKey::new(self.ns(), self.name())
    }
}

/// A chosen address: address, pool index, range index.
type Pick = (Addr, usize, usize);

/// At most one pick per family.
type Plan = SmallVec<[Pick; 2]>;

/// Pools plus who holds what. See the module documentation.
#[derive(Debug, Clone)]
pub struct Allocator {
    pools: Vec<Pool>,
    /// Range start -> (range end, pool, range index in pool).
    index: BTreeMap<Addr, (u128, usize, usize)>,
    by_name: HashMap<String, usize>,
    /// Auto-assign pools, in order.
    auto: Vec<usize>,
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

type Built = (
    Vec<Pool>,
    BTreeMap<Addr, (u128, usize, usize)>,
    HashMap<String, usize>,
    Vec<usize>,
);

fn build_pools(specs: Vec<PoolSpec>) -> Result<Built, PoolError> {
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
    /// An allocator over `pools` (in configuration order), holding nothing.
    pub fn new(pools: Vec<PoolSpec>) -> Result<Self, PoolError> {
        let (pools, index, by_name, auto) = build_pools(pools)?;
        Ok(Allocator {
            pools,
            index,
            by_name,
            auto,
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
        let (pools, index, by_name, auto) = build_pools(pools)?;
        let old_pool_of: FastMap<Packed, u32> =
            self.ips.iter().map(|(a, u)| (*a, u.pool)).collect();
        let old_pools = std::mem::replace(&mut self.pools, pools);
        self.index = index;
        self.by_name = by_name;
        self.auto = auto;
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
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        self.pools
            .iter()
            .map(|p| PoolStats {
                name: p.name.clone(),
                total: p
                    .ranges
                    .iter()
                    .fold(0u128, |t, r| t.saturating_add(r.total())),
                in_use: p.in_use,
            })
            .collect()
    }

    /// Checks the internal bookkeeping (free intervals against addresses in
    /// use, holders against records, the key index against the records).
    /// Cost is proportional to allocations and free intervals; meant for tests.
    #[doc(hidden)]
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

    // ---- internals ----

    fn hash_of(&self, ns: &str, name: &str) -> u64 {
        hash_key(&self.hasher, ns, name)
    }

    fn find(&self, h: u64, key: &ServiceKey) -> Option<Id> {
        let slots = &self.slots;
        self.ids
            .find(h, |&id| {
                slots[id as usize].as_ref().is_some_and(|s| s.is(key))
            })
            .copied()
    }

    fn slot(&self, id: Id) -> &Slot {
        self.slots[id as usize].as_ref().expect("live service id")
    }

    fn slot_mut(&mut self, id: Id) -> &mut Slot {
        self.slots[id as usize].as_mut().expect("live service id")
    }

    /// Files a new service under `key` (hash `h`); returns its id.
    fn insert_id(&mut self, h: u64, key: &ServiceKey, rec: Record) -> Id {
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
    fn remove_id(&mut self, id: Id) {
        let slot = self.slots[id as usize].take().expect("live service id");
        let h = hash_key(&self.hasher, slot.ns(), slot.name());
        if let Ok(e) = self.ids.find_entry(h, |&i| i == id) {
            e.remove();
        }
        self.free_ids.push(id);
    }

    fn release_id(&mut self, id: Id) -> Assignment {
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

    fn assignment_of(&self, id: Id) -> Assignment {
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

    /// The pool and range containing `addr`, avoided or not.
    fn locate_raw(&self, addr: Addr) -> Option<(usize, usize)> {
        let (&(fam, _), &(hi, p, r)) = self.index.range(..=addr).next_back()?;
        (fam == addr.0 && hi >= addr.1).then_some((p, r))
    }

    /// The pool and range where `addr` is assignable.
    fn locate(&self, addr: Addr) -> Option<(usize, usize)> {
        self.locate_raw(addr)
            .filter(|&(p, r)| !self.pools[p].ranges[r].skippable(addr.1))
    }

    /// May `req` (service `me`, if known) use `addr` alongside its current holders?
    fn check_share(
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

    fn desired_families(req: &ServiceRequest) -> SmallVec<[IpFamily; 2]> {
        let mut fams: SmallVec<[IpFamily; 2]> = SmallVec::new();
        for f in &req.families {
            if !fams.contains(f) {
                fams.push(*f);
            }
        }
        if fams.is_empty() {
            fams.push(req.requested_ips.first().map_or(IpFamily::V4, IpFamily::of));
        }
        match req.family_policy {
            FamilyPolicy::SingleStack => fams.truncate(1),
            _ => {
                if fams.len() == 1 {
                    fams.push(fams[0].other());
                }
            }
        }
        fams
    }

    /// Is a held `addr` still good for `req` (pool, annotation, sharing)?
    fn keep_ok(&self, addr: Addr, req: &ServiceRequest, me: Option<Id>) -> Option<Pick> {
        let (p, r) = self.locate(addr)?;
        if req.pool.as_ref().is_some_and(|n| *n != self.pools[p].name) {
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

    fn plan(&self, req: &ServiceRequest, me: Option<Id>) -> Result<Plan, AllocError> {
        let fams = Self::desired_families(req);
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
        let named;
        let cands: &[usize] = match &req.pool {
            Some(name) => {
                named = *self
                    .by_name
                    .get(name)
                    .ok_or_else(|| AllocError::UnknownPool { pool: name.clone() })?;
                std::slice::from_ref(&named)
            }
            None => {
                if self.pools.is_empty() {
                    return Err(AllocError::NoPools);
                }
                if self.auto.is_empty() {
                    return Err(AllocError::NoAutoAssignPool);
                }
                &self.auto
            }
        };
        let require = req.family_policy == FamilyPolicy::RequireDualStack;
        if missing.len() == 2 {
            // Both families from one pool, MetalLB-like.
            for &p in cands {
                if let (Some(a), Some(b)) = (
                    self.pick(p, missing[0], req, me),
                    self.pick(p, missing[1], req, me),
                ) {
                    return Ok(SmallVec::from_buf([a, b]));
                }
            }
            if require {
                let reason = if cands.iter().any(|&p| {
                    self.pools[p].has_family(IpFamily::V4) && self.pools[p].has_family(IpFamily::V6)
                }) {
                    "no address pool has both a free IPv4 and a free IPv6 address".to_string()
                } else {
                    format!("no {} has both IPv4 and IPv6 addresses", pools_phrase(req))
                };
                return Err(AllocError::DualStackImpossible { reason });
            }
            for &f in &missing {
                for &p in cands {
                    if let Some(a) = self.pick(p, f, req, me) {
                        plan.push(a);
                        return Ok(plan);
                    }
                }
            }
            return Err(self.exhausted(cands, missing[0], req));
        }
        let f = missing[0];
        let kept_pool = plan.first().map(|k| k.1).filter(|p| cands.contains(p));
        for p in kept_pool.into_iter().chain(cands.iter().copied()) {
            if let Some(a) = self.pick(p, f, req, me) {
                plan.push(a);
                // Keep the primary family first.
                plan.sort_by_key(|k| fams.iter().position(|&x| x == k.0.0));
                return Ok(plan);
            }
        }
        if !plan.is_empty() && req.family_policy == FamilyPolicy::PreferDualStack {
            return Ok(plan);
        }
        let e = self.exhausted(cands, f, req);
        if require {
            return Err(AllocError::DualStackImpossible {
                reason: e.to_string(),
            });
        }
        Err(e)
    }

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
    fn adopt(&mut self, req: &ServiceRequest, h: u64) {
        let fams = Self::desired_families(req);
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
    fn commit(&mut self, req: &ServiceRequest, h: u64, id: Option<Id>, plan: &[Pick]) {
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

    /// The sharing data of `req`, reusing the stored copy of its key.
    fn share_of(&self, req: &ServiceRequest) -> Option<Box<Share>> {
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

    fn attach(&mut self, addr: Addr, p: usize, r: usize, id: Id, sharing_key: Option<&Arc<str>>) {
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

    fn detach(&mut self, packed: Packed, id: Id, sharing_key: Option<&str>) {
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

/// Sets the held addresses of `rec` to those of `plan` (at most two).
fn set_ips(rec: &mut Record, plan: &[Pick]) {
    debug_assert!(plan.len() <= 2, "at most one address per family");
    for (slot, k) in rec.ips.iter_mut().zip(plan) {
        *slot = Packed::new(k.0);
    }
    rec.n_ips = plan.len() as u8;
}

/// The hash of a service key as the id index files it.
fn hash_key(hasher: &DefaultHashBuilder, ns: &str, name: &str) -> u64 {
    let mut h = hasher.build_hasher();
    ns.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

fn pools_phrase(req: &ServiceRequest) -> String {
    match &req.pool {
        Some(p) => format!("address pool \"{p}\""),
        None => "auto-assign address pool".to_string(),
    }
}
