//! The pure layer 2 decision: which node answers ARP/NDP for each Service IP
//! in a layer 2 pool, and whether that node is this one.
//!
//! Every speaker computes the same owner from the same facts: the
//! configuration's pools and `L2Advertisement`s, every Node's labels and
//! conditions, the Service and the nodes its usable endpoints run on, and
//! which speakers are alive (the membership view). The owner of a Service's
//! IPs in one pool is the first eligible node in rendezvous order: nodes
//! sorted by `sha256(node name + "#" + ip)` (bytes, ascending), `ip` being the
//! Service's first IP in that pool, written as Go and Rust both print it — the
//! same order as MetalLB's `sortL2Candidates` without preferred nodes, so a
//! mixed or migrating cluster picks the same owner. A node is eligible when:
//! its speaker is alive; it is not `NetworkUnavailable` and not excluded
//! (label, unless `--ignore-exclude-lb`); an `L2Advertisement` of the pool
//! that is for the Service (`serviceSelectors`, none meaning every Service)
//! selects it (`nodeSelectors`, none meaning every node); and, for
//! `externalTrafficPolicy: Local`, a usable endpoint runs on it (for
//! `Cluster`, some endpoint anywhere must be usable, or nobody answers).
//!
//! Stability: a Service's owner depends only on that Service's IP and the
//! set of eligible nodes, so other Services, and label changes that leave the
//! eligible set alone, never move it. The owner changes when it stops being
//! eligible (its IPs go to the next node in their order), or when a node
//! becomes eligible that ranks before it: a node that joins (or comes back)
//! takes the IPs for which it ranks first, about 1/n of them, as in MetalLB.
//!
//! No I/O, no clock: [`Layer2::pass`] takes values and returns values, and
//! keeps the set of Services this node answers for across passes (for the
//! `nodeAssigned` Events and `/metrics`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ferrolb_config::{Config, Pool};

use crate::announce::{
    EndpointSummary, NodeState, ServiceLabels, ServiceState, TrafficPolicy, usable,
};

/// Where this node answers for an IP: every suitable interface, or only these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// Every up, non-loopback interface with a MAC address.
    All,
    /// Only these interfaces (by name, sorted, distinct).
    Only(Vec<String>),
}

impl Interfaces {
    /// Only these interfaces (sorted and deduplicated here).
    pub fn only(names: impl IntoIterator<Item = String>) -> Interfaces {
        let mut v: Vec<String> = names.into_iter().collect();
        v.sort();
        v.dedup();
        Interfaces::Only(v)
    }

    /// Both together: `All` absorbs everything, two lists are merged.
    pub fn union(self, other: Interfaces) -> Interfaces {
        match (self, other) {
            (Interfaces::Only(mut a), Interfaces::Only(b)) => {
                a.extend(b);
                a.sort();
                a.dedup();
                Interfaces::Only(a)
            }
            _ => Interfaces::All,
        }
    }
}

/// Why this node does not answer for an IP. The same words go to logs and Events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The IP lies in no configured pool.
    NotInPool,
    /// The IP's pool has no layer 2 advertisement (it may be a BGP pool: that
    /// path handles it).
    NotLayer2Pool,
    /// `externalTrafficPolicy: Cluster` and no usable endpoint anywhere.
    NoReadyEndpoint,
    /// No node is eligible (for `Local`: no node with a usable endpoint is).
    NoEligibleNode,
    /// This node's speaker is not in the membership view.
    SpeakerNotAlive,
    /// This node's `NetworkUnavailable` condition is true.
    NodeNetworkUnavailable,
    /// This node carries the exclude-from-external-load-balancers label.
    NodeExcluded,
    /// No `L2Advertisement` of the pool that is for the Service selects this node.
    NoAdvertisementForNode,
    /// No `L2Advertisement` of the pool selects the Service
    /// (`serviceSelectors`): no node answers. MetalLB: `noMatchingAdvertisement`.
    NoAdvertisementForService,
    /// `externalTrafficPolicy: Local` and no usable endpoint on this node.
    NoLocalEndpoint,
    /// This node is eligible, and another eligible node ranks first.
    NotOwner,
}

impl SkipReason {
    /// A short stable name, for metric labels and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotInPool => "notInPool",
            SkipReason::NotLayer2Pool => "notLayer2Pool",
            SkipReason::NoReadyEndpoint => "noReadyEndpoint",
            SkipReason::NoEligibleNode => "noEligibleNode",
            SkipReason::SpeakerNotAlive => "speakerNotAlive",
            SkipReason::NodeNetworkUnavailable => "nodeNetworkUnavailable",
            SkipReason::NodeExcluded => "nodeExcluded",
            SkipReason::NoAdvertisementForNode => "noAdvertisementForNode",
            SkipReason::NoAdvertisementForService => "noAdvertisementForService",
            SkipReason::NoLocalEndpoint => "noLocalEndpoint",
            SkipReason::NotOwner => "notOwner",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NotInPool => "the IP is in no configured pool",
            SkipReason::NotLayer2Pool => "the IP's pool has no layer 2 advertisement",
            SkipReason::NoReadyEndpoint => "the service has no ready endpoint",
            SkipReason::NoEligibleNode => "no node is eligible to answer for the IP",
            SkipReason::SpeakerNotAlive => "this node's speaker is not in the member view",
            SkipReason::NodeNetworkUnavailable => "the node's network is unavailable",
            SkipReason::NodeExcluded => "the node is excluded from external load balancers",
            SkipReason::NoAdvertisementForNode => {
                "no L2Advertisement of the IP's pool for the service selects this node"
            }
            SkipReason::NoAdvertisementForService => {
                "no L2Advertisement of the IP's pool selects the service (serviceSelectors)"
            }
            SkipReason::NoLocalEndpoint => {
                "externalTrafficPolicy is Local and no ready endpoint is on this node"
            }
            SkipReason::NotOwner => "another node answers for the IP",
        })
    }
}

/// The decision for one IP on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer ARP/NDP for it on these interfaces.
    Own(Interfaces),
    /// Do not answer, for this reason.
    Skip(SkipReason),
}

/// What the layer 2 decision reads of one Service, borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Service<'a> {
    /// `namespace/name`.
    pub key: &'a str,
    /// IPs from `status.loadBalancer.ingress`.
    pub ips: &'a [IpAddr],
    pub traffic_policy: TrafficPolicy,
    /// Some endpoint, on any node, can take traffic.
    pub usable_anywhere: bool,
    /// The nodes with an endpoint that can take traffic (ready, or serving
    /// while terminating), sorted, distinct.
    pub usable_nodes: Vec<&'a str>,
    /// The Service's labels (at least those advertisements' `serviceSelectors` read).
    pub labels: ServiceLabels<'a>,
}

impl ServiceState {
    /// The layer 2 decision's view of this service.
    pub fn l2_facts(&self) -> L2Service<'_> {
        let mut usable_nodes: Vec<&str> = self
            .endpoints
            .iter()
            .filter(|e| usable(e.ready, e.serving))
            .filter_map(|e| e.node.as_deref())
            .collect();
        usable_nodes.sort_unstable();
        usable_nodes.dedup();
        L2Service {
            key: &self.key,
            ips: &self.ips,
            traffic_policy: self.traffic_policy,
            usable_anywhere: EndpointSummary::of("", &self.endpoints).usable_anywhere,
            usable_nodes,
            labels: ServiceLabels::Map(&self.labels),
        }
    }
}

/// Every Node's state (labels, `NetworkUnavailable`, excluded), by name.
pub trait NodeLookup {
    /// The node named `name`, if known.
    fn node(&self, name: &str) -> Option<&NodeState>;
}

impl NodeLookup for BTreeMap<String, NodeState> {
    fn node(&self, name: &str) -> Option<&NodeState> {
        self.get(name)
    }
}

/// The cluster as the decision sees it: every Node (by name) and the speakers alive.
#[derive(Clone, Copy)]
pub struct Cluster<'a> {
    /// Every Node's state (labels, `NetworkUnavailable`, excluded), by name.
    pub nodes: &'a dyn NodeLookup,
    /// Nodes whose speaker is alive (the membership view, this node included).
    pub alive: &'a BTreeSet<String>,
    /// `--ignore-exclude-lb`: the exclusion label does not count.
    pub ignore_exclude_lb: bool,
}

/// The rendezvous rank of `node` for `ip`: `sha256(node + "#" + ip)`; lower ranks first.
pub fn rank(node: &str, ip: IpAddr) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(node.as_bytes());
    ctx.update(b"#");
    ctx.update(ip.to_string().as_bytes());
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Why `node` cannot answer for any IP, before advertisements and endpoints
/// are looked at.
fn node_unfit(cluster: &Cluster<'_>, node: &str) -> Option<SkipReason> {
    if !cluster.alive.contains(node) {
        return Some(SkipReason::SpeakerNotAlive);
    }
    let state = cluster.nodes.node(node);
    if state.is_some_and(|s| s.network_unavailable) {
        return Some(SkipReason::NodeNetworkUnavailable);
    }
    if !cluster.ignore_exclude_lb && state.is_some_and(|s| s.excluded) {
        return Some(SkipReason::NodeExcluded);
    }
    None
}

/// Which of the pool's advertisements select a node with these labels.
fn ads_selecting(pool: &Pool, labels: &BTreeMap<String, String>) -> Vec<bool> {
    pool.l2_advertisements
        .iter()
        .map(|a| a.selects_node(labels))
        .collect()
}

/// Some advertisement both selects the node (`selects`) and counts for the
/// Service (`counts`; `None`: all count).
fn any_counts(selects: &[bool], counts: Option<&[bool]>) -> bool {
    match counts {
        None => selects.iter().any(|s| *s),
        Some(c) => selects.iter().zip(c).any(|(s, c)| *s && *c),
    }
}

/// The interfaces a node answers on for a pool: the union over the pool's
/// advertisements selecting it (`selects`) that count for the Service
/// (`counts`; `None`: all), one without `interfaces` meaning all.
fn interfaces_for(pool: &Pool, selects: &[bool], counts: Option<&[bool]>) -> Interfaces {
    pool.l2_advertisements
        .iter()
        .enumerate()
        .filter(|(i, _)| selects[*i] && counts.is_none_or(|c| c[*i]))
        .map(|(_, a)| {
            if a.interfaces.is_empty() {
                Interfaces::All
            } else {
                Interfaces::only(a.interfaces.iter().cloned())
            }
        })
        .reduce(Interfaces::union)
        .unwrap_or(Interfaces::All)
}

/// One layer 2 pool as the decision prepares it for a cluster view.
struct PoolView<'a> {
    /// The nodes fit to answer ([`node_unfit`]: alive, network available,
    /// not excluded), sorted, each with which advertisements select it.
    fit: Vec<(&'a str, Vec<bool>)>,
    /// Of those, the ones some advertisement selects: the eligible nodes
    /// when every advertisement counts (none has `serviceSelectors`).
    eligible_all: Vec<&'a str>,
    /// Why this node is unfit, if it is.
    my_unfit: Option<SkipReason>,
    /// Which advertisements select this node.
    my_ads: Vec<bool>,
    /// This node's interfaces when every advertisement counts.
    my_interfaces_all: Interfaces,
    /// Some advertisement has `serviceSelectors`: which count depends on the Service.
    selective: bool,
}
/// The owner of a Service's IPs in one pool, and this node's decision for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDecision {
    /// The node that answers (`None`: nobody, see the decision's reason).
    pub owner: Option<String>,
    /// This node's decision.
    pub decision: Decision,
}

/// The decision for one configuration, cluster view and node, prepared once
/// (per layer 2 pool, the nodes fit to answer and the advertisements
/// selecting each) and applied to every Service.
pub struct Decider<'a> {
    config: &'a Config,
    me: &'a str,
    /// Per pool index; `None` for pools without layer 2 advertisements.
    pools: Vec<Option<PoolView<'a>>>,
}

impl<'a> Decider<'a> {
    pub fn new(config: &'a Config, cluster: Cluster<'a>, me: &'a str) -> Self {
        let empty = BTreeMap::new();
        let labels_of = |n: &str| cluster.nodes.node(n).map_or(&empty, |s| &s.labels);
        let fit: Vec<&'a str> = cluster
            .alive
            .iter()
            .map(String::as_str)
            .filter(|n| node_unfit(&cluster, n).is_none())
            .collect();
        let my_unfit = node_unfit(&cluster, me);
        let pools = config
            .pools
            .iter()
            .map(|pool| {
                if pool.l2_advertisements.is_empty() {
                    return None;
                }
                let fit: Vec<(&'a str, Vec<bool>)> = fit
                    .iter()
                    .map(|n| (*n, ads_selecting(pool, labels_of(n))))
                    .collect();
                let eligible_all = fit
                    .iter()
                    .filter(|(_, sel)| any_counts(sel, None))
                    .map(|(n, _)| *n)
                    .collect();
                let my_ads = ads_selecting(pool, labels_of(me));
                Some(PoolView {
                    fit,
                    eligible_all,
                    my_unfit,
                    my_interfaces_all: interfaces_for(pool, &my_ads, None),
                    my_ads,
                    selective: pool
                        .l2_advertisements
                        .iter()
                        .any(|a| !a.service_selectors.is_empty()),
                })
            })
            .collect();
        Decider { config, me, pools }
    }

    /// The decision for a Service's IPs in pool `p`, ranked by `ip` (the
    /// Service's first IP in that pool). Only the pool's advertisements for
    /// the Service (`serviceSelectors`) decide which nodes are eligible and
    /// on which interfaces this node answers.
    fn decide_pool(&self, p: usize, ip: IpAddr, svc: &L2Service<'_>) -> PoolDecision {
        let skip = |r| PoolDecision {
            owner: None,
            decision: Decision::Skip(r),
        };
        let Some(view) = &self.pools[p] else {
            return skip(SkipReason::NotLayer2Pool);
        };
        if !svc.usable_anywhere {
            return skip(SkipReason::NoReadyEndpoint);
        }
        let pool = &self.config.pools[p];
        let counts: Option<Vec<bool>> = view.selective.then(|| {
            pool.l2_advertisements
                .iter()
                .map(|a| a.selects_service(&svc.labels))
                .collect()
        });
        let counts = counts.as_deref();
        if counts.is_some_and(|c| !c.iter().any(|c| *c)) {
            return skip(SkipReason::NoAdvertisementForService);
        }
        let local = svc.traffic_policy == TrafficPolicy::Local;
        let endpoint_ok = |n: &str| !local || svc.usable_nodes.binary_search(&n).is_ok();
        let owner = match counts {
            None => view
                .eligible_all
                .iter()
                .copied()
                .filter(|n| endpoint_ok(n))
                .min_by_key(|n| rank(n, ip)),
            Some(_) => view
                .fit
                .iter()
                .filter(|(_, sel)| any_counts(sel, counts))
                .map(|(n, _)| *n)
                .filter(|n| endpoint_ok(n))
                .min_by_key(|n| rank(n, ip)),
        }
        .map(|n| n.to_string());
        let mine = view.my_unfit.or_else(|| {
            (!any_counts(&view.my_ads, counts)).then_some(SkipReason::NoAdvertisementForNode)
        });
        let decision = match (&owner, mine) {
            (Some(o), _) if o == self.me => Decision::Own(match counts {
                None => view.my_interfaces_all.clone(),
                Some(_) => interfaces_for(pool, &view.my_ads, counts),
            }),
            (_, Some(r)) => Decision::Skip(r),
            _ if local && svc.usable_nodes.binary_search(&self.me).is_err() => {
                Decision::Skip(SkipReason::NoLocalEndpoint)
            }
            (None, None) => Decision::Skip(SkipReason::NoEligibleNode),
            (Some(_), None) => Decision::Skip(SkipReason::NotOwner),
        };
        PoolDecision { owner, decision }
    }

    /// The decision for each of the Service's IPs, in the Service's order,
    /// with the owner of each. All IPs of one pool share the owner.
    pub fn decide(&self, svc: &L2Service<'_>) -> Vec<(IpAddr, PoolDecision)> {
        let mut by_pool: BTreeMap<usize, PoolDecision> = BTreeMap::new();
        svc.ips
            .iter()
            .map(|&ip| {
                let Some(p) = self.config.pool_index_for(ip) else {
                    return (
                        ip,
                        PoolDecision {
                            owner: None,
                            decision: Decision::Skip(SkipReason::NotInPool),
                        },
                    );
                };
                let d = by_pool
                    .entry(p)
                    .or_insert_with(|| self.decide_pool(p, ip, svc))
                    .clone();
                (ip, d)
            })
            .collect()
    }
}

/// What one layer 2 pass decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct L2Outcome {
    /// Every IP this node answers for now, with its interfaces.
    pub owned: BTreeMap<IpAddr, Interfaces>,
    /// Services this node answers for now and did not in the previous pass.
    pub assigned: Vec<Box<str>>,
    /// Services this node answered for in the previous pass and does not now,
    /// with why (`None`: the Service is gone).
    pub released: Vec<(Box<str>, Option<SkipReason>)>,
    /// Per Service with an IP in a layer 2 pool: the owner of its first such
    /// IP, if any (for logs and status).
    pub owners: BTreeMap<Box<str>, Option<String>>,
}

/// The Services this node answers for, across passes.
#[derive(Debug, Default)]
pub struct Layer2 {
    /// Service → the IPs this node answers for, and on which interfaces.
    owned: BTreeMap<Box<str>, (Vec<IpAddr>, Interfaces)>,
}

impl Layer2 {
    /// Nothing owned yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decide for every Service and update the owned set.
    pub fn pass<'s>(
        &mut self,
        config: &Config,
        cluster: Cluster<'_>,
        me: &str,
        services: impl IntoIterator<Item = L2Service<'s>>,
    ) -> L2Outcome {
        let decider = Decider::new(config, cluster, me);
        let mut out = L2Outcome::default();
        let mut now: BTreeMap<Box<str>, (Vec<IpAddr>, Interfaces)> = BTreeMap::new();
        let mut why: BTreeMap<Box<str>, SkipReason> = BTreeMap::new();
        for svc in services {
            let decisions = decider.decide(&svc);
            let mut mine = Vec::new();
            let mut on = Interfaces::Only(Vec::new());
            let mut owner_noted = false;
            for (ip, d) in decisions {
                match d.decision {
                    Decision::Own(ifs) => {
                        mine.push(ip);
                        on = on.union(ifs.clone());
                        let e = out.owned.entry(ip).or_insert(Interfaces::Only(Vec::new()));
                        *e = std::mem::replace(e, Interfaces::All).union(ifs);
                    }
                    Decision::Skip(SkipReason::NotInPool | SkipReason::NotLayer2Pool) => continue,
                    Decision::Skip(r) => {
                        why.entry(svc.key.into()).or_insert(r);
                    }
                }
                if !owner_noted {
                    out.owners.insert(svc.key.into(), d.owner);
                    owner_noted = true;
                }
            }
            if !mine.is_empty() {
                if !self.owned.contains_key(svc.key) {
                    out.assigned.push(svc.key.into());
                }
                now.insert(svc.key.into(), (mine, on));
            }
        }
        for key in self.owned.keys() {
            if !now.contains_key(key) {
                out.released.push((key.clone(), why.get(key).copied()));
            }
        }
        self.owned = now;
        out
    }

    /// Every Service this node answers for, in key order, with those IPs.
    pub fn owned(&self) -> impl Iterator<Item = (&str, &[IpAddr])> {
        self.owned
            .iter()
            .map(|(k, (ips, _))| (&**k, ips.as_slice()))
    }

    /// Every Service this node answers for, in key order, with the interfaces
    /// it answers on.
    pub fn owned_on(&self) -> impl Iterator<Item = (&str, &Interfaces)> {
        self.owned.iter().map(|(k, (_, on))| (&**k, on))
    }

    /// How many Services this node answers for.
    pub fn len(&self) -> usize {
        self.owned.len()
    }

    /// Answers for nothing.
    pub fn is_empty(&self) -> bool {
        self.owned.is_empty()
    }
}
