//! What callers give the allocator and get back: service keys, requests
//! (families, ports, sharing key, requested IPs), pool specs, assignments,
//! configuration changes and pool counters.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

pub use ferrolb_config::ServiceAllocation;

/// Labels of an object, shared (one namespace's labels serve all its
/// Services; a request stays small).
pub type Labels = std::sync::Arc<BTreeMap<String, String>>;

static NO_LABELS: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(Labels::default);

/// Empty [`Labels`], shared: no allocation.
pub fn no_labels() -> Labels {
    NO_LABELS.clone()
}

#[cfg(doc)]
use super::Allocator;

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
    /// One address per family in `families` if the pools allow it, else
    /// whatever can be had. One family listed (a single-stack cluster) means
    /// one address.
    PreferDualStack,
    /// An address of each of the two families in `families`, or an error;
    /// also an error when `families` lists only one (cluster IPs not
    /// dual-stack).
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

/// `spec.externalTrafficPolicy` of a Service (one type for both binaries).
pub use ferrolb_ops::service::TrafficPolicy;

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
    /// `spec.serviceAllocation` of an `IPAddressPool`: which Services the pool
    /// is for, and its priority among such pools. `None`: any Service.
    pub allocation: Option<ServiceAllocation>,
}

impl PoolSpec {
    /// An auto-assign pool over `ranges`, buggy IPs allowed, for any Service.
    pub fn new(name: impl Into<String>, ranges: Vec<(IpAddr, IpAddr)>) -> Self {
        PoolSpec {
            name: name.into(),
            ranges,
            auto_assign: true,
            avoid_buggy_ips: false,
            allocation: None,
        }
    }
}

/// What a service asks of the allocator (built by the glue from a Service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// The service.
    pub key: ServiceKey,
    /// `spec.ipFamilies` (or the families of `spec.clusterIPs`), primary
    /// first: one address per listed family, duplicates ignored. Empty means
    /// the families of the requested IPs, else IPv4.
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
    /// `metadata.labels`, matched against pools' `serviceSelectors`.
    pub labels: Labels,
    /// The labels of the Service's namespace, matched against pools'
    /// `namespaceSelectors` (empty when the namespace is not known).
    pub namespace_labels: Labels,
}

impl Default for ServiceRequest {
    fn default() -> Self {
        ServiceRequest {
            key: ServiceKey::default(),
            families: Vec::new(),
            family_policy: FamilyPolicy::default(),
            requested_ips: Vec::new(),
            pool: None,
            sharing_key: None,
            ports: Vec::new(),
            traffic_policy: TrafficPolicy::default(),
            selector: BTreeMap::new(),
            current: Vec::new(),
            created: None,
            labels: no_labels(),
            namespace_labels: no_labels(),
        }
    }
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
    /// Of `total`, IPv4.
    pub total_v4: u128,
    /// Of `total`, IPv6 (saturating).
    pub total_v6: u128,
    /// Distinct addresses in use.
    pub in_use: u128,
    /// Of `in_use`, IPv4.
    pub in_use_v4: u128,
    /// Of `in_use`, IPv6.
    pub in_use_v6: u128,
    /// Services holding an address of this pool.
    pub services: u64,
}
