//! The validated configuration that the controller and the speaker consume.
//!
//! It does not know where it came from: the v0.12 ConfigMap front end
//! (`crate::configmap`) builds it today, a `metallb.io` custom-resource front end can
//! build the same values. Field docs name the v0.12 key a field comes from, for
//! orientation only.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::{AddrRange, Community, NodeSelector};

/// A validated configuration. The v0.12 ConfigMap front end builds it with
/// [`Config::parse`] (bare config text) or [`Config::parse_document`] (a ConfigMap
/// manifest or bare text).
///
/// Everything here has passed validation: addresses parse, pools do not overlap,
/// pool names are unique, timers are consistent, community aliases are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// BGP routers to peer with, in document order.
    pub peers: Vec<Peer>,
    /// Address pools, in document order (names unique, addresses disjoint across and
    /// within pools).
    pub pools: Vec<Pool>,
    /// The `bgp-communities` aliases, already parsed (advertisements hold resolved values).
    pub communities: BTreeMap<String, Community>,
}

/// One BGP peer (`peers[i]`), with MetalLB's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `peer-address`: where to connect.
    pub address: IpAddr,
    /// `peer-port`, default 179 (MetalLB also treats an explicit 0 as "default").
    pub port: u16,
    /// `my-asn`, never 0.
    pub my_asn: u32,
    /// `peer-asn`, never 0.
    pub peer_asn: u32,
    /// `hold-time`, default 90s, truncated to whole seconds like MetalLB; 0 or ≥ 3s.
    pub hold_time: Duration,
    /// `keepalive-time`, default `hold_time / 3` (MetalLB); never above `hold_time`.
    pub keepalive_time: Duration,
    /// `router-id`; `None` means "use the node's address" (the speaker decides).
    pub router_id: Option<Ipv4Addr>,
    /// `source-address` to bind the session to.
    pub source_address: Option<IpAddr>,
    /// `password` for TCP MD5 (RFC 2385).
    pub password: Option<String>,
    /// `ebgp-multihop`, default false.
    pub ebgp_multihop: bool,
    /// `node-selectors`, ORed; empty means every node.
    pub node_selectors: Vec<NodeSelector>,
}

impl Peer {
    /// Should a node with these labels run a session with this peer?
    /// True when there are no selectors or any one selector matches.
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selectors.is_empty() || self.node_selectors.iter().any(|s| s.matches(labels))
    }

    /// True for iBGP (`my_asn == peer_asn`), where LOCAL_PREF is sent.
    pub fn is_ibgp(&self) -> bool {
        self.my_asn == self.peer_asn
    }
}

/// How a pool's addresses are announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `bgp`: announced to the peers with the pool's advertisements.
    Bgp,
    /// `layer2`: answered by ARP/NDP from one node (not announced over BGP).
    Layer2,
}

impl Protocol {
    /// The spelling used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Bgp => "bgp",
            Protocol::Layer2 => "layer2",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One address pool (`address-pools[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// `name`, unique and non-empty.
    pub name: String,
    /// `protocol`.
    pub protocol: Protocol,
    /// One inclusive range per `addresses` entry, in document order (a CIDR entry
    /// becomes network..=last address).
    pub ranges: Vec<AddrRange>,
    /// The ranges decomposed into CIDRs (fewest covering prefixes), in entry order.
    pub cidrs: Vec<IpNet>,
    /// `auto-assign`, default true: false means only Services that ask for this pool
    /// (annotation) or for one of its IPs get addresses from it.
    pub auto_assign: bool,
    /// `avoid-buggy-ips`, default false: never hand out IPv4 addresses ending in .0 or .255.
    pub avoid_buggy_ips: bool,
    /// How the pool's IPs are announced over BGP. For a `bgp` pool without
    /// `bgp-advertisements`, MetalLB uses one default advertisement (aggregation
    /// 32/128, no local-pref, no communities); this list then holds exactly that
    /// ([`BgpAdvertisement::default`]). Always empty for a `layer2` pool.
    pub advertisements: Vec<BgpAdvertisement>,
}

impl Pool {
    /// Does the pool hold this address?
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Number of addresses (before `avoid_buggy_ips`), saturating at `u128::MAX`.
    pub fn size(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.len()))
    }

    /// Is this address one that `avoid_buggy_ips` excludes (IPv4 .0 or .255)?
    /// Always false when the option is off.
    pub fn is_buggy(&self, ip: IpAddr) -> bool {
        self.avoid_buggy_ips
            && matches!(ip, IpAddr::V4(a) if a.octets()[3] == 0 || a.octets()[3] == 255)
    }
}

/// How one pool's IPs are announced over BGP (`bgp-advertisements[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpAdvertisement {
    /// `aggregation-length` for IPv4 service IPs, 0..=32, default 32 (no aggregation).
    pub aggregation_length: u8,
    /// `aggregation-length-v6` for IPv6 service IPs, 0..=128, default 128.
    pub aggregation_length_v6: u8,
    /// `localpref`; `None` when not set. MetalLB sends LOCAL_PREF to iBGP peers only,
    /// with 0 when unset; that choice belongs to the speaker.
    pub local_pref: Option<u32>,
    /// Standard communities (aliases resolved), sorted and deduplicated, `A << 16 | B`.
    pub communities: Vec<u32>,
    /// Large communities (aliases resolved), sorted and deduplicated.
    pub large_communities: Vec<(u32, u32, u32)>,
}

impl Default for BgpAdvertisement {
    /// MetalLB's default advertisement: /32 and /128, no local-pref, no communities.
    fn default() -> Self {
        BgpAdvertisement {
            aggregation_length: 32,
            aggregation_length_v6: 128,
            local_pref: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
        }
    }
}

impl BgpAdvertisement {
    /// The prefix this advertisement announces for a service IP: the IP rolled up to
    /// the aggregation length of its family.
    pub fn prefix_for(&self, ip: IpAddr) -> IpNet {
        let len = match ip {
            IpAddr::V4(_) => self.aggregation_length,
            IpAddr::V6(_) => self.aggregation_length_v6,
        };
        IpNet::new(ip, len)
            .expect("aggregation length validated against the family")
            .trunc()
    }
}

impl Config {
    /// The pool that holds `ip`, if any (pools never overlap, so there is at most one).
    pub fn pool_for(&self, ip: IpAddr) -> Option<&Pool> {
        self.pool_index_for(ip).map(|i| &self.pools[i])
    }

    /// The index in `pools` of the pool that holds `ip`, if any.
    pub fn pool_index_for(&self, ip: IpAddr) -> Option<usize> {
        self.pools.iter().position(|p| p.contains(ip))
    }

    /// The service IPs that moving from this configuration to `next` would
    /// strand: IPs a pool of this one assigns (holds and does not avoid) that
    /// no pool of `next` assigns (none holds them, or the pool avoids them:
    /// avoid-buggy-ips), with their service keys, in the order given. MetalLB's
    /// controller and speaker both reject such a `next` and keep running on
    /// this one; so do ferrolb's.
    pub fn strands<'s, K: Copy>(
        &self,
        next: &Config,
        services: impl IntoIterator<Item = (K, &'s [IpAddr])>,
    ) -> Vec<(K, IpAddr)> {
        let assignable =
            |cfg: &Config, ip: IpAddr| cfg.pool_for(ip).is_some_and(|p| !p.is_buggy(ip));
        services
            .into_iter()
            .flat_map(|(key, ips)| ips.iter().map(move |&ip| (key, ip)))
            .filter(|&(_, ip)| assignable(self, ip) && !assignable(next, ip))
            .collect()
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The peers a node with these labels should have sessions with.
    pub fn peers_for_node<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Peer> + 'a {
        self.peers.iter().filter(move |p| p.selects_node(labels))
    }

    /// One line for humans, e.g.
    /// `valid: 2 peers, 3 pools (2 bgp, 1 layer2), 256+11+1 addresses`
    /// (the address counts are per pool, in order).
    pub fn summary(&self) -> String {
        let bgp = self
            .pools
            .iter()
            .filter(|p| p.protocol == Protocol::Bgp)
            .count();
        let l2 = self.pools.len() - bgp;
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let mut s = format!(
            "valid: {}, {} ({bgp} bgp, {l2} layer2)",
            plural(self.peers.len(), "peer"),
            plural(self.pools.len(), "pool"),
        );
        if !self.pools.is_empty() {
            let sizes: Vec<String> = self.pools.iter().map(count).collect();
            s.push_str(&format!(", {} addresses", sizes.join("+")));
        }
        s
    }
}

/// Address count of a pool, written `2^N` when it is a large power of two.
fn count(p: &Pool) -> String {
    let n = p.size();
    if n == u128::MAX && p.ranges.iter().any(|r| r.len() == u128::MAX) {
        "2^128".to_string()
    } else if n > 1 << 32 && n.is_power_of_two() {
        format!("2^{}", n.trailing_zeros())
    } else {
        n.to_string()
    }
}

/// Why a configuration that would take assigned IPs away is rejected, in
/// MetalLB's words, naming the first service and counting the rest.
pub fn stranded_message<K: std::fmt::Display>(stranded: &[(K, IpAddr)]) -> String {
    let Some((svc, ip)) = stranded.first() else {
        return String::new();
    };
    let more = match stranded.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more IPs)"),
    };
    format!(
        "new config not compatible with assigned IPs: service \"{svc}\" cannot own \"{ip}\" under new config{more}"
    )
}
