//! The pure announcement decision: does THIS node announce a service's IPs, to
//! which peers, with which attributes — or why not.
//!
//! Inputs are plain values distilled from Kubernetes objects (see
//! [`NodeState`], [`ServiceState`]); the output is a [`Decision`] per service
//! and, folded over all services, the route set per peer that the BGP
//! sessions are told to hold. No I/O, no clock.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_bgp::adj_out::{RouteAttrs, Routes};
use ferrolb_bgp::wire::{LargeCommunity, Origin};
use ferrolb_config::{BgpAdvertisement, Config, LabelSet, Peer};

/// Label that keeps a node out of external load balancing (Kubernetes well-known label).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// What the speaker knows about its own node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The node condition `NetworkUnavailable` is `True`.
    pub network_unavailable: bool,
    /// The node is out of external load balancing: it carries [`EXCLUDE_LABEL`]
    /// and the speaker does not ignore it (`--ignore-exclude-lb`).
    pub excluded: bool,
    /// `spec.unschedulable` (cordoned, e.g. being drained): what SIGTERM
    /// does to graceful-restart routes depends on it (`--on-sigterm auto`).
    pub unschedulable: bool,
}

pub use ferrolb_ops::service::TrafficPolicy;

/// One endpoint of a service, from an EndpointSlice or a core/v1 Endpoints object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The node the endpoint runs on (`nodeName`), if known.
    pub node: Option<String>,
    /// `conditions.ready` (EndpointSlice) or listed in `addresses` (Endpoints).
    pub ready: bool,
    /// `conditions.serving` (EndpointSlice); for Endpoints, equal to `ready`.
    pub serving: bool,
}

/// What the speaker knows about one LoadBalancer service, as owned values
/// (tests and tools build these; the speaker itself decides on borrowed
/// [`ServiceFacts`] straight from its watch maps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// `namespace/name`.
    pub key: String,
    /// IPs from `status.loadBalancer.ingress`.
    pub ips: Vec<IpAddr>,
    pub traffic_policy: TrafficPolicy,
    pub endpoints: Vec<Endpoint>,
    /// `metadata.labels`, matched against advertisements' `serviceSelectors`.
    pub labels: BTreeMap<String, String>,
}

impl ServiceState {
    /// The decision's view of this service from node `node`.
    pub fn facts(&self, node: &str) -> ServiceFacts<'_> {
        ServiceFacts {
            key: &self.key,
            ips: &self.ips,
            traffic_policy: self.traffic_policy,
            endpoints: EndpointSummary::of(node, &self.endpoints),
            labels: ServiceLabels::Map(&self.labels),
        }
    }
}

/// A Service's labels as the decisions read them (advertisements'
/// `serviceSelectors`), borrowed: a map (tools, tests), or the compact pairs
/// a speaker keeps (only the keys some selector reads).
#[derive(Debug, Clone, Copy)]
pub enum ServiceLabels<'a> {
    /// A full label map.
    Map(&'a BTreeMap<String, String>),
    /// `(key, value)` pairs, each key once.
    Pairs(&'a [(Box<str>, Box<str>)]),
}

impl ServiceLabels<'_> {
    /// The labels as sorted `(key, value)` pairs, whatever the form.
    fn sorted(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = match self {
            ServiceLabels::Map(m) => m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            ServiceLabels::Pairs(p) => p.iter().map(|(k, v)| (&**k, &**v)).collect(),
        };
        v.sort_unstable();
        v
    }
}

/// Equal when they hold the same labels, in either form.
impl PartialEq for ServiceLabels<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}

impl Eq for ServiceLabels<'_> {}

impl Default for ServiceLabels<'_> {
    /// No labels.
    fn default() -> Self {
        ServiceLabels::Pairs(&[])
    }
}

impl LabelSet for ServiceLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        match self {
            ServiceLabels::Map(m) => m.label(key),
            ServiceLabels::Pairs(p) => p.label(key),
        }
    }
}

/// What the decision reads of a service's endpoints, seen from one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointSummary {
    /// Some endpoint, on any node, can take traffic.
    pub usable_anywhere: bool,
    /// Some endpoint on this node can take traffic.
    pub usable_here: bool,
}

impl EndpointSummary {
    /// This summary with one more endpoint, seen from this node. An endpoint
    /// can take traffic when it is ready, or serving while terminating
    /// (KEP-1669); `here`: it runs on this node.
    pub fn with(self, ready: bool, serving: bool, here: bool) -> Self {
        let usable = usable(ready, serving);
        EndpointSummary {
            usable_anywhere: self.usable_anywhere || usable,
            usable_here: self.usable_here || (usable && here),
        }
    }

    /// The summary of `endpoints` as seen from node `node`.
    pub fn of<'e>(node: &str, endpoints: impl IntoIterator<Item = &'e Endpoint>) -> Self {
        endpoints.into_iter().fold(Self::default(), |s, e| {
            s.with(e.ready, e.serving, e.node.as_deref() == Some(node))
        })
    }

    /// Both summaries together (a service's endpoints spread over several slices).
    pub fn or(self, other: Self) -> Self {
        EndpointSummary {
            usable_anywhere: self.usable_anywhere || other.usable_anywhere,
            usable_here: self.usable_here || other.usable_here,
        }
    }
}

/// Can an endpoint with these conditions take traffic? When it is ready, or
/// serving while terminating (KEP-1669). Both decisions (BGP and layer 2) use this.
pub fn usable(ready: bool, serving: bool) -> bool {
    ready || serving
}

/// The decision's input for one service: borrowed, nothing allocated per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceFacts<'a> {
    /// `namespace/name`.
    pub key: &'a str,
    /// IPs from `status.loadBalancer.ingress`.
    pub ips: &'a [IpAddr],
    pub traffic_policy: TrafficPolicy,
    pub endpoints: EndpointSummary,
    /// The Service's labels (at least those advertisements' `serviceSelectors` read).
    pub labels: ServiceLabels<'a>,
}

/// Why a node does not announce a service. The same words go to logs, metrics and Events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The service has no IP in its status yet.
    NoIp,
    /// None of the service's IPs lies in a configured pool.
    NotInPool,
    /// The pool is a layer2 pool: not announced over BGP.
    Layer2Pool,
    /// The pool has no BGP advertisement.
    NoAdvertisement,
    /// No configured peer selects this node (peers that get no session, such
    /// as VRF peers, do not count).
    NoPeerForNode,
    /// The pool's BGP advertisements all have `nodeSelectors`, and none
    /// matches this node.
    NoAdvertisementForNode,
    /// Advertisements select this node, but none of them selects the Service
    /// (`serviceSelectors`). MetalLB: `noMatchingAdvertisement`.
    NoAdvertisementForService,
    /// The advertisements that select this node name (`peers`) only peers
    /// this node has no session with.
    NoAdvertisementForPeer,
    /// Two advertisements that both select this node and the Service would
    /// send one prefix to one peer with different LOCAL_PREFs (MetalLB's
    /// `conflictingAdvertisements`): nothing of the Service is announced.
    ConflictingAdvertisements,
    /// The node's `NetworkUnavailable` condition is true.
    NodeNetworkUnavailable,
    /// The node carries the exclude-from-external-load-balancers label.
    NodeExcluded,
    /// `externalTrafficPolicy: Local` and no usable endpoint on this node.
    NoLocalEndpoint,
    /// `externalTrafficPolicy: Cluster` and no usable endpoint anywhere.
    NoReadyEndpoint,
}

impl SkipReason {
    /// A short stable name, for metric labels and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoIp => "noIP",
            SkipReason::NotInPool => "notInPool",
            SkipReason::Layer2Pool => "layer2Pool",
            SkipReason::NoAdvertisement => "noAdvertisement",
            SkipReason::NoPeerForNode => "noPeerForNode",
            SkipReason::NoAdvertisementForNode => "noAdvertisementForNode",
            SkipReason::NoAdvertisementForService => "noAdvertisementForService",
            SkipReason::NoAdvertisementForPeer => "noAdvertisementForPeer",
            SkipReason::ConflictingAdvertisements => "conflictingAdvertisements",
            SkipReason::NodeNetworkUnavailable => "nodeNetworkUnavailable",
            SkipReason::NodeExcluded => "nodeExcluded",
            SkipReason::NoLocalEndpoint => "noLocalEndpoint",
            SkipReason::NoReadyEndpoint => "noReadyEndpoint",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NoIp => "the service has no IP yet",
            SkipReason::NotInPool => "the service's IP is in no configured pool",
            SkipReason::Layer2Pool => "the IP's pool uses layer2, not bgp",
            SkipReason::NoAdvertisement => "the IP's pool has no BGP advertisement",
            SkipReason::NoPeerForNode => "no BGP peer selects this node",
            SkipReason::NoAdvertisementForNode => {
                "no BGP advertisement of the IP's pool selects this node"
            }
            SkipReason::NoAdvertisementForService => {
                "no BGP advertisement of the IP's pool for this node selects the service (serviceSelectors)"
            }
            SkipReason::NoAdvertisementForPeer => {
                "the BGP advertisements for this node name no peer of this node"
            }
            SkipReason::ConflictingAdvertisements => {
                "BGP advertisements selecting this node and the service set different LOCAL_PREFs for the same prefix and peer"
            }
            SkipReason::NodeNetworkUnavailable => "the node's network is unavailable",
            SkipReason::NodeExcluded => "the node is excluded from external load balancers",
            SkipReason::NoLocalEndpoint => {
                "externalTrafficPolicy is Local and no ready endpoint is on this node"
            }
            SkipReason::NoReadyEndpoint => "the service has no ready endpoint",
        })
    }
}

/// Identity of a configured peer, the key of the per-peer route sets and
/// sessions: its address and port, and which of the peers with that address
/// and port it is (MetalLB accepts peers that differ only in ASN, password or
/// timers, and runs a session for each that selects the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    pub addr: IpAddr,
    pub port: u16,
    /// 0 for the first peer with this address and port in the configuration, 1 for the next…
    pub nth: u16,
}

impl PeerKey {
    /// The first (usually only) peer at `addr:port`.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        PeerKey { addr, port, nth: 0 }
    }
}

/// `addr:port` (`[v6]:port`), with `#2`, `#3`… for the second, third… peer at that address:
/// the `peer` label of the BGP metrics.
impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        std::net::SocketAddr::new(self.addr, self.port).fmt(f)?;
        if self.nth > 0 {
            write!(f, "#{}", self.nth + 1)?;
        }
        Ok(())
    }
}

/// The key of every configured peer, in configuration order.
pub fn peer_keys(config: &Config) -> Vec<PeerKey> {
    let mut seen: BTreeMap<(IpAddr, u16), u16> = BTreeMap::new();
    config
        .peers
        .iter()
        .map(|p| {
            let n = seen.entry((p.address, p.port)).or_default();
            let key = PeerKey {
                addr: p.address,
                port: p.port,
                nth: *n,
            };
            *n += 1;
            key
        })
        .collect()
}

/// The peers selecting a node with these labels that get a session, with
/// their keys, in configuration order. A peer asking for something ferrolb
/// cannot do right ([`Peer::needs_unsupported`], e.g. a VRF) is left out:
/// no session, no routes (see [`unsupported_peers_for_node`]).
pub fn peers_for_node<'a>(
    config: &'a Config,
    labels: &BTreeMap<String, String>,
) -> Vec<(PeerKey, &'a Peer)> {
    peer_keys(config)
        .into_iter()
        .zip(&config.peers)
        .filter(|(_, p)| p.selects_node(labels) && p.needs_unsupported().is_none())
        .collect()
}

/// The peers selecting a node with these labels that get no session because
/// they need something unsupported, with why.
pub fn unsupported_peers_for_node<'a>(
    config: &'a Config,
    labels: &BTreeMap<String, String>,
) -> Vec<(PeerKey, &'a Peer, &'static str)> {
    peer_keys(config)
        .into_iter()
        .zip(&config.peers)
        .filter(|(_, p)| p.selects_node(labels))
        .filter_map(|(k, p)| p.needs_unsupported().map(|why| (k, p, why)))
        .collect()
}

/// How a peer is named in `ServiceBGPStatus.status.peers`: the `BGPPeer`'s
/// name, or `address:port` for a ConfigMap peer (which has no name).
pub fn peer_status_name(key: &PeerKey, peer: &Peer) -> String {
    match &peer.name {
        Some(n) => n.clone(),
        None => key.to_string(),
    }
}

/// One route a node announces for a service: to whom, what prefix, which
/// attributes (shared by every route of the same advertisement and peer kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub peer: PeerKey,
    pub prefix: ipnet::IpNet,
    pub attrs: Arc<RouteAttrs>,
}

/// The decision for one service on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Announce these routes (at least one).
    Announce(Vec<Announcement>),
    /// Do not announce (withdraw if announced), for this reason.
    Skip(SkipReason),
}

/// Decide whether this node announces `svc`, and how. One-off form of
/// [`Decider::decide`] for owned [`ServiceState`]s.
pub fn decide(config: &Config, node: &NodeState, svc: &ServiceState) -> Decision {
    Decider::new(config, node).decide(&svc.facts(&node.name))
}

/// The decision for one configuration and one node, prepared once and applied
/// to every service: the peers selecting the node and, per pool and
/// advertisement, the attribute sets (one for eBGP peers, one for iBGP peers)
/// that all of its routes share.
pub struct Decider<'a> {
    config: &'a Config,
    node: &'a NodeState,
    peers: Vec<(PeerKey, &'a Peer)>,
    /// `attrs[pool][advertisement]` = [eBGP, iBGP] attribute sets.
    attrs: Vec<Vec<[Arc<RouteAttrs>; 2]>>,
    /// `families[pool]`: the pool has (IPv4, IPv6) addresses (for the
    /// LOCAL_PREF conflict rule).
    families: Vec<(bool, bool)>,
}

impl<'a> Decider<'a> {
    pub fn new(config: &'a Config, node: &'a NodeState) -> Self {
        let attrs = config
            .pools
            .iter()
            .map(|pool| {
                pool.advertisements
                    .iter()
                    .map(|adv| [false, true].map(|ibgp| Arc::new(route_attrs(adv, ibgp))))
                    .collect()
            })
            .collect();
        Decider {
            config,
            node,
            peers: peers_for_node(config, &node.labels),
            attrs,
            families: config.pools.iter().map(|p| p.families()).collect(),
        }
    }

    /// Decide for one service.
    ///
    /// Rules, in order (the first that fails is the reason given): the service
    /// has an IP; the node is not `NetworkUnavailable` and not excluded;
    /// endpoints fit the traffic policy; then for each IP, its pool exists, is a
    /// BGP pool with at least one advertisement, some peer with a session
    /// selects the node, some advertisement selects the node
    /// (`nodeSelectors`), such an advertisement selects the Service
    /// (`serviceSelectors`), and one of those is for one of those peers
    /// (`peers`). Across several IPs, the reason of the IP that got furthest
    /// is given. Only the advertisements selecting both the node and the
    /// Service give routes and attributes; when two of them, one at least
    /// with `serviceSelectors`, conflict on LOCAL_PREF
    /// ([`BgpAdvertisement::local_pref_conflicts`]), nothing of the Service
    /// is announced ([`SkipReason::ConflictingAdvertisements`]), as MetalLB
    /// (pairs without selectors are checked when the configuration is read).
    pub fn decide(&self, svc: &ServiceFacts<'_>) -> Decision {
        if svc.ips.is_empty() {
            return Decision::Skip(SkipReason::NoIp);
        }
        if self.node.network_unavailable {
            return Decision::Skip(SkipReason::NodeNetworkUnavailable);
        }
        if self.node.excluded {
            return Decision::Skip(SkipReason::NodeExcluded);
        }
        match svc.traffic_policy {
            TrafficPolicy::Local if !svc.endpoints.usable_here => {
                return Decision::Skip(SkipReason::NoLocalEndpoint);
            }
            TrafficPolicy::Cluster if !svc.endpoints.usable_anywhere => {
                return Decision::Skip(SkipReason::NoReadyEndpoint);
            }
            _ => {}
        }

        let mut out = Vec::new();
        // The most specific reason seen across the service's IPs, if none is announced.
        let mut reason = SkipReason::NotInPool;
        for &ip in svc.ips {
            let Some(p) = self.config.pool_index_for(ip) else {
                continue;
            };
            let pool = &self.config.pools[p];
            if pool.advertisements.is_empty() {
                reason = reason.max(if pool.l2_advertisements.is_empty() {
                    SkipReason::NoAdvertisement
                } else {
                    SkipReason::Layer2Pool
                });
                continue;
            }
            if self.peers.is_empty() {
                reason = reason.max(SkipReason::NoPeerForNode);
                continue;
            }
            let before = out.len();
            let mut for_node = false;
            let mut for_service = false;
            let (v4, v6) = self.families[p];
            for (i, (adv, attrs)) in pool.advertisements.iter().zip(&self.attrs[p]).enumerate() {
                if !adv.selects_node(&self.node.labels) {
                    continue;
                }
                for_node = true;
                if !adv.selects_service(&svc.labels) {
                    continue;
                }
                for_service = true;
                // MetalLB's checkBGPAdvConflicts, over the advertisements
                // that apply to this Service on this node, for the pairs the
                // configuration could not check (one has serviceSelectors).
                // Pairs without selectors keep their behaviour: a ConfigMap
                // (v0.12) pool may have advertisements differing only in
                // LOCAL_PREF, and the highest wins (`routes_per_peer`).
                if pool.advertisements[..i].iter().any(|earlier| {
                    (!adv.service_selectors.is_empty() || !earlier.service_selectors.is_empty())
                        && earlier.selects_node(&self.node.labels)
                        && earlier.selects_service(&svc.labels)
                        && earlier.local_pref_conflicts(adv, v4, v6)
                }) {
                    return Decision::Skip(SkipReason::ConflictingAdvertisements);
                }
                let prefix = adv.prefix_for(ip);
                for (key, peer) in &self.peers {
                    if !adv.goes_to(peer) {
                        continue;
                    }
                    out.push(Announcement {
                        peer: *key,
                        prefix,
                        attrs: attrs[usize::from(peer.is_ibgp())].clone(),
                    });
                }
            }
            if out.len() == before {
                reason = reason.max(if for_service {
                    SkipReason::NoAdvertisementForPeer
                } else if for_node {
                    SkipReason::NoAdvertisementForService
                } else {
                    SkipReason::NoAdvertisementForNode
                });
            }
        }
        if out.is_empty() {
            Decision::Skip(reason)
        } else {
            Decision::Announce(out)
        }
    }
}

/// The attributes of routes from one advertisement: ORIGIN incomplete (as
/// MetalLB), next hop = the session's address, communities sorted and
/// deduplicated, LOCAL_PREF only toward iBGP peers.
fn route_attrs(adv: &BgpAdvertisement, ibgp: bool) -> RouteAttrs {
    RouteAttrs {
        next_hop: None,
        origin: Origin::Incomplete,
        med: None,
        local_pref: if ibgp { adv.local_pref } else { None },
        communities: adv.communities.clone(),
        large_communities: adv
            .large_communities
            .iter()
            .map(|&(global_admin, local1, local2)| LargeCommunity {
                global_admin,
                local1,
                local2,
            })
            .collect(),
    }
    .normalized()
}

/// Fold the decisions for all services into the route set each peer selecting
/// this node must hold, telling `seen` each service's decision on the way.
/// Every peer that selects the node gets an entry, possibly empty (so its
/// session withdraws everything). When two announcements share a prefix
/// toward one peer (aggregation), communities are merged and the highest local
/// preference wins, so the result does not depend on the services' order.
/// Nothing is kept per service: memory is the route sets.
pub fn routes_per_peer<'s>(
    config: &Config,
    node: &NodeState,
    services: impl IntoIterator<Item = ServiceFacts<'s>>,
    mut seen: impl FnMut(&ServiceFacts<'s>, &Decision),
) -> BTreeMap<PeerKey, Routes> {
    let decider = Decider::new(config, node);
    let mut per_peer: BTreeMap<PeerKey, Routes> = decider
        .peers
        .iter()
        .map(|(key, _)| (*key, Routes::new()))
        .collect();
    for svc in services {
        let d = decider.decide(&svc);
        if let Decision::Announce(anns) = &d {
            for a in anns {
                let routes = per_peer.entry(a.peer).or_default();
                match routes.entry(a.prefix) {
                    Entry::Vacant(e) => {
                        e.insert(a.attrs.clone());
                    }
                    Entry::Occupied(mut e) => {
                        if !Arc::ptr_eq(e.get(), &a.attrs) {
                            let merged = merge_attrs(e.get(), &a.attrs);
                            if merged != **e.get() {
                                e.insert(Arc::new(merged));
                            }
                        }
                    }
                }
            }
        }
        seen(&svc, &d);
    }
    per_peer
}

fn merge_attrs(a: &RouteAttrs, b: &RouteAttrs) -> RouteAttrs {
    let mut into = a.clone();
    into.local_pref = match (a.local_pref, b.local_pref) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    into.communities.extend_from_slice(&b.communities);
    into.large_communities
        .extend_from_slice(&b.large_communities);
    into.normalized()
}
