//! The allocator's errors: an invalid pool list ([`PoolError`]) and why a
//! service got no address ([`AllocError`], whose `Display` is the Event text).

use std::net::IpAddr;

use super::request::{IpFamily, Protocol, ServiceKey, TrafficPolicy};

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
    /// Every auto-assign pool has a `serviceAllocation` and none admits the service.
    #[error(
        "no auto-assign address pool is for this service (each has a serviceAllocation that does not match it)"
    )]
    NoPoolForService,
    /// The annotated pool, or the pool of a requested or held IP, has a
    /// `serviceAllocation` that does not admit the service.
    #[error(
        "address pool \"{pool}\" is not for this service (its serviceAllocation does not match the service's namespace or labels)"
    )]
    PoolNotForService {
        /// The pool.
        pool: String,
    },
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
    /// `RequireDualStack` could not be satisfied: the service lists one family
    /// only, or no candidate pool has both families free.
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
