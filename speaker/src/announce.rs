//! The pure announcement decision: does THIS node announce a service's IPs, to
//! which peers, with which attributes — or why not.
//!
//! Inputs are plain values distilled from Kubernetes objects (see
//! [`NodeState`], [`ServiceState`]); the output is a [`Decision`] per service
//! and, folded over all services, the route set per peer that the BGP
//! sessions are told to hold. No I/O, no clock.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ferrolb_bgp::adj_out::{RouteAttrs, Routes};
use ferrolb_bgp::wire::{LargeCommunity, Origin};
use ferrolb_config::{Config, Peer, Protocol};

/// Label that keeps a node out of external load balancing (Kubernetes well-known label).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// What the speaker knows about its own node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The node condition `NetworkUnavailable` is `True`.
    pub network_unavailable: bool,
}

/// `spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

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

impl Endpoint {
    /// Ready, or serving while terminating (KEP-1669): it can take traffic.
    pub fn usable(&self) -> bool {
        self.ready || self.serving
    }
}

/// What the speaker knows about one LoadBalancer service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// `namespace/name`.
    pub key: String,
    /// IPs from `status.loadBalancer.ingress`.
    pub ips: Vec<IpAddr>,
    pub traffic_policy: TrafficPolicy,
    pub endpoints: Vec<Endpoint>,
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
    /// No configured peer selects this node.
    NoPeerForNode,
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
            SkipReason::NodeNetworkUnavailable => "the node's network is unavailable",
            SkipReason::NodeExcluded => "the node is excluded from external load balancers",
            SkipReason::NoLocalEndpoint => {
                "externalTrafficPolicy is Local and no ready endpoint is on this node"
            }
            SkipReason::NoReadyEndpoint => "the service has no ready endpoint",
        })
    }
}

/// Identity of a configured peer (address and port), the key of the per-peer route sets.
pub type PeerKey = (IpAddr, u16);

/// The key of a peer.
pub fn peer_key(peer: &Peer) -> PeerKey {
    (peer.address, peer.port)
}

/// One route a node announces for a service: to whom, what prefix, which attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub peer: PeerKey,
    pub prefix: ipnet::IpNet,
    pub attrs: RouteAttrs,
}

/// The decision for one service on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Announce these routes (at least one).
    Announce(Vec<Announcement>),
    /// Do not announce (withdraw if announced), for this reason.
    Skip(SkipReason),
}

/// Decide whether this node announces `svc`, and how.
///
/// Rules, in order (the first that fails is the reason given):
/// the service has an IP; the node is not `NetworkUnavailable` and not excluded;
/// endpoints fit the traffic policy; then for each IP, its pool exists, is a BGP
/// pool with at least one advertisement, and some peer selects the node.
pub fn decide(config: &Config, node: &NodeState, svc: &ServiceState) -> Decision {
    if svc.ips.is_empty() {
        return Decision::Skip(SkipReason::NoIp);
    }
    if node.network_unavailable {
        return Decision::Skip(SkipReason::NodeNetworkUnavailable);
    }
    if node.labels.contains_key(EXCLUDE_LABEL) {
        return Decision::Skip(SkipReason::NodeExcluded);
    }
    match svc.traffic_policy {
        TrafficPolicy::Local => {
            let local = svc
                .endpoints
                .iter()
                .any(|e| e.usable() && e.node.as_deref() == Some(node.name.as_str()));
            if !local {
                return Decision::Skip(SkipReason::NoLocalEndpoint);
            }
        }
        TrafficPolicy::Cluster => {
            if !svc.endpoints.iter().any(Endpoint::usable) {
                return Decision::Skip(SkipReason::NoReadyEndpoint);
            }
        }
    }
    let peers: Vec<&Peer> = config.peers_for_node(&node.labels).collect();

    let mut out = Vec::new();
    // The most specific reason seen across the service's IPs, if none is announced.
    let mut reason = SkipReason::NotInPool;
    for &ip in &svc.ips {
        let Some(pool) = config.pool_for(ip) else {
            continue;
        };
        if pool.protocol != Protocol::Bgp {
            reason = reason.max(SkipReason::Layer2Pool);
            continue;
        }
        if pool.advertisements.is_empty() {
            reason = reason.max(SkipReason::NoAdvertisement);
            continue;
        }
        if peers.is_empty() {
            reason = reason.max(SkipReason::NoPeerForNode);
            continue;
        }
        for adv in &pool.advertisements {
            let prefix = adv.prefix_for(ip);
            for peer in &peers {
                let mut communities = adv.communities.clone();
                communities.sort_unstable();
                communities.dedup();
                let mut large: Vec<LargeCommunity> = adv
                    .large_communities
                    .iter()
                    .map(|&(global_admin, local1, local2)| LargeCommunity {
                        global_admin,
                        local1,
                        local2,
                    })
                    .collect();
                large.sort_unstable();
                large.dedup();
                out.push(Announcement {
                    peer: peer_key(peer),
                    prefix,
                    attrs: RouteAttrs {
                        next_hop: None,
                        origin: Origin::Incomplete,
                        med: None,
                        local_pref: if peer.is_ibgp() { adv.local_pref } else { None },
                        communities,
                        large_communities: large,
                    },
                });
            }
        }
    }
    if out.is_empty() {
        Decision::Skip(reason)
    } else {
        Decision::Announce(out)
    }
}

/// Fold the decisions for all services into the route set each peer selecting
/// this node must hold. Every peer that selects the node gets an entry, possibly
/// empty (so its session withdraws everything). Services are visited in key
/// order; when two announcements share a prefix toward one peer (aggregation),
/// communities are merged and the highest local preference wins, so the result
/// does not depend on iteration order.
pub fn routes_per_peer<'a>(
    config: &Config,
    node: &NodeState,
    services: impl IntoIterator<Item = &'a ServiceState>,
) -> (BTreeMap<PeerKey, Routes>, BTreeMap<String, Decision>) {
    let mut per_peer: BTreeMap<PeerKey, Routes> = config
        .peers_for_node(&node.labels)
        .map(|p| (peer_key(p), Routes::new()))
        .collect();
    let mut decisions = BTreeMap::new();
    for svc in services {
        let d = decide(config, node, svc);
        if let Decision::Announce(anns) = &d {
            for a in anns {
                let routes = per_peer.entry(a.peer).or_default();
                match routes.get_mut(&a.prefix) {
                    None => {
                        routes.insert(a.prefix, a.attrs.clone());
                    }
                    Some(existing) => merge_attrs(existing, &a.attrs),
                }
            }
        }
        decisions.insert(svc.key.clone(), d);
    }
    (per_peer, decisions)
}

fn merge_attrs(into: &mut RouteAttrs, other: &RouteAttrs) {
    into.local_pref = match (into.local_pref, other.local_pref) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    into.communities.extend_from_slice(&other.communities);
    into.communities.sort_unstable();
    into.communities.dedup();
    into.large_communities
        .extend_from_slice(&other.large_communities);
    into.large_communities.sort_unstable();
    into.large_communities.dedup();
}
