//! The validated configuration that the controller and the speaker consume.
//!
//! It does not know where it came from: the v0.12 ConfigMap front end
//! (`crate::configmap`) builds it today, a `metallb.io` custom-resource front end can
//! build the same values. Field docs name the v0.12 key a field comes from, for
//! orientation only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::{AddrRange, Community, LabelSet, NodeSelector};

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
    /// The `bgp-communities` aliases (custom resources: the `Community` objects'
    /// aliases), already parsed (advertisements hold resolved values).
    pub communities: BTreeMap<String, Community>,
    /// BFD profiles by name (custom resources: `BFDProfile`). Peers name them in
    /// [`Peer::bfd_profile`]; every name a peer uses is here.
    pub bfd_profiles: BTreeMap<String, BfdProfile>,
    /// What the configuration asks for that ferrolb does not do (yet): accepted,
    /// reported (Warning Event on the object + log), never silently ignored. See
    /// [`Peer::needs_unsupported`] for the peers that get no session because of it.
    pub warnings: Vec<ConfigWarning>,
}

/// A field the configuration sets that ferrolb accepts but does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Kind of the object that sets it: `BGPPeer`, `BFDProfile`, `ConfigMap`…
    pub kind: String,
    /// Name of that object (`config` for the ConfigMap).
    pub name: String,
    /// Field path inside the object, e.g. `spec.vrf`.
    pub field: String,
    /// What ferrolb does about it, e.g. `VRFs are not supported: no session is made`.
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}: {}: {}",
            self.kind, self.name, self.field, self.message
        )
    }
}

/// `dynamicASN` (BGPPeer v1beta2): accept whatever AS the peer's OPEN carries,
/// constrained to iBGP or eBGP, instead of a fixed `peerASN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DynamicAsn {
    /// `internal`: the peer's AS must equal ours.
    Internal,
    /// `external`: the peer's AS must differ from ours.
    External,
}

/// A BFD profile (`BFDProfile`; MetalLB FRR mode's `bfd-profiles`), MetalLB's
/// defaults filled in. Intervals in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdProfile {
    /// Name peers refer to.
    pub name: String,
    /// `receiveInterval`, default 300.
    pub receive_interval_ms: u32,
    /// `transmitInterval`, default 300.
    pub transmit_interval_ms: u32,
    /// `detectMultiplier`, default 3.
    pub detect_multiplier: u32,
    /// `echoInterval`, default 50 (echo mode is not implemented).
    pub echo_interval_ms: u32,
    /// `echoMode`, default false.
    pub echo_mode: bool,
    /// `passiveMode`, default false.
    pub passive_mode: bool,
    /// `minimumTtl`, default 254.
    pub minimum_ttl: u32,
}

impl BfdProfile {
    /// A profile with MetalLB's defaults.
    pub fn with_defaults(name: &str) -> Self {
        BfdProfile {
            name: name.to_string(),
            receive_interval_ms: 300,
            transmit_interval_ms: 300,
            detect_multiplier: 3,
            echo_interval_ms: 50,
            echo_mode: false,
            passive_mode: false,
            minimum_ttl: 254,
        }
    }

    /// The settings of this profile ferrolb accepts but does not act on, each
    /// as (field, why): echo mode and an echo interval other than the default
    /// (echo mode is not built), and a minimum TTL other than 254 (MetalLB's
    /// FRR mode applies it to multi-hop sessions, which are not built; single
    /// hop always checks TTL 255). `camel` picks the custom resources'
    /// spelling of the field names (`echoMode`) over the ConfigMap's
    /// (`echo-mode`).
    pub fn unsupported_settings(&self, camel: bool) -> Vec<(&'static str, String)> {
        let name = |kebab: &'static str, camel_name: &'static str| {
            if camel { camel_name } else { kebab }
        };
        let mut out = Vec::new();
        if self.echo_mode {
            out.push((
                name("echo-mode", "echoMode"),
                "BFD echo mode is accepted, not supported: the session runs in asynchronous mode only"
                    .to_string(),
            ));
        }
        if self.echo_interval_ms != 50 {
            out.push((
                name("echo-interval", "echoInterval"),
                format!(
                    "echo interval {} ms is accepted, not supported (no echo mode)",
                    self.echo_interval_ms
                ),
            ));
        }
        if self.minimum_ttl != 254 {
            out.push((
                name("minimum-ttl", "minimumTtl"),
                format!(
                    "minimum TTL {} is accepted, not supported: it applies to multi-hop BFD, \
                     which ferrolb does not run (single hop checks TTL 255)",
                    self.minimum_ttl
                ),
            ));
        }
        out
    }
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
    /// The `BGPPeer`'s name (custom resources; advertisements' `peers` lists
    /// refer to it). `None` for ConfigMap peers, which have no names.
    pub name: Option<String>,
    /// `dynamicASN`: when set, `peer_asn` is 0 and the peer's OPEN decides.
    pub dynamic_asn: Option<DynamicAsn>,
    /// `connectTime`: the ConnectRetry time; `None` = the speaker's default.
    pub connect_time: Option<Duration>,
    /// `bfdProfile` / `bfd-profile`: a key of [`Config::bfd_profiles`].
    pub bfd_profile: Option<String>,
    /// `enableGracefulRestart` (RFC 4724), default false.
    pub graceful_restart: bool,
    /// `vrf`: the VRF to run the session in. Not supported: such a peer gets no
    /// session (a session in the default VRF would be wrong).
    pub vrf: Option<String>,
    /// `disableMP`: one session per address family instead of multiprotocol.
    pub disable_mp: bool,
    /// `interface` (BGPPeer v1beta2): unnumbered BGP over this interface instead
    /// of a `peerAddress` (then `address` is the unspecified IPv6 address). Not
    /// supported: such a peer gets no session.
    pub interface: Option<String>,
    /// `localASN` (BGPPeer v1beta2): the AS to present to the peer instead of
    /// `my_asn` (FRR's `local-as … no-prepend replace-as`). Not supported: such
    /// a peer gets no session (the peer expects that AS).
    pub local_asn: Option<u32>,
}

impl Peer {
    /// A peer with the required fields and MetalLB's defaults for the rest
    /// (port 179, hold 90 s, keepalive 30 s, nothing optional set).
    pub fn new(address: IpAddr, my_asn: u32, peer_asn: u32) -> Self {
        Peer {
            address,
            port: 179,
            my_asn,
            peer_asn,
            hold_time: Duration::from_secs(90),
            keepalive_time: Duration::from_secs(30),
            router_id: None,
            source_address: None,
            password: None,
            ebgp_multihop: false,
            node_selectors: Vec::new(),
            name: None,
            dynamic_asn: None,
            connect_time: None,
            bfd_profile: None,
            graceful_restart: false,
            vrf: None,
            disable_mp: false,
            interface: None,
            local_asn: None,
        }
    }

    /// Why this peer must get no session at all, if it asks for something that
    /// would make a session wrong without it: a VRF, an interface (unnumbered
    /// BGP), a `localASN`.
    pub fn needs_unsupported(&self) -> Option<&'static str> {
        if self.vrf.is_some() {
            Some("VRFs are not supported: this peer gets no session")
        } else if self.interface.is_some() {
            Some("unnumbered BGP (interface) is not supported: this peer gets no session")
        } else if self.local_asn.is_some() {
            Some("localASN is not supported: this peer gets no session")
        } else {
            None
        }
    }
    /// Should a node with these labels run a session with this peer?
    /// True when there are no selectors or any one selector matches.
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selectors.is_empty() || self.node_selectors.iter().any(|s| s.matches(labels))
    }

    /// True for iBGP (`my_asn == peer_asn`, or `dynamicASN: internal`), where
    /// LOCAL_PREF is sent. For `dynamicASN: external` false.
    pub fn is_ibgp(&self) -> bool {
        match self.dynamic_asn {
            Some(DynamicAsn::Internal) => true,
            Some(DynamicAsn::External) => false,
            None => self.my_asn == self.peer_asn,
        }
    }
}

/// A ConfigMap pool's `protocol` (v0.12). With custom resources a pool has no
/// protocol: it is announced by whichever BGP and L2 advertisements select it,
/// which is what [`Pool::advertisements`] and [`Pool::l2_advertisements`] hold
/// for either front end.
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

/// `serviceAllocation` of an `IPAddressPool`: which Services the pool is for,
/// and its priority among the pools that are for a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAllocation {
    /// `priority`: among pools whose allocation matches a Service, lower is tried
    /// first; 0 (unset) comes after every set priority.
    pub priority: i32,
    /// `namespaces`: the Service's namespace must be one of these (when non-empty).
    pub namespaces: Vec<String>,
    /// `namespaceSelectors`: the Service's namespace labels must match one (when non-empty).
    pub namespace_selectors: Vec<NodeSelector>,
    /// `serviceSelectors`: the Service's labels must match one (when non-empty).
    pub service_selectors: Vec<NodeSelector>,
}

impl ServiceAllocation {
    /// Is the pool for a Service in `namespace` (with `namespace_labels`) with
    /// `service_labels`? As MetalLB: the namespace must be listed in
    /// `namespaces` or selected by one of `namespace_selectors` (the two are
    /// alternatives; no check when both are empty), and the Service must match
    /// one of `service_selectors` (when any). Unlike MetalLB, selectors that
    /// match no namespace admit none (MetalLB then stops checking namespaces).
    pub fn matches(
        &self,
        namespace: &str,
        namespace_labels: &BTreeMap<String, String>,
        service_labels: &BTreeMap<String, String>,
    ) -> bool {
        ((self.namespaces.is_empty() && self.namespace_selectors.is_empty())
            || self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selectors
                .iter()
                .any(|s| s.matches(namespace_labels)))
            && (self.service_selectors.is_empty()
                || self
                    .service_selectors
                    .iter()
                    .any(|s| s.matches(service_labels)))
    }
}

/// One address pool (`address-pools[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// `name`, unique and non-empty.
    pub name: String,
    /// One inclusive range per `addresses` entry, in document order (a CIDR entry
    /// becomes network..=last address).
    pub ranges: Vec<AddrRange>,
    /// The ranges decomposed into CIDRs (fewest covering prefixes), in entry order.
    pub cidrs: Vec<IpNet>,
    /// `auto-assign`, default true: false means only Services that ask for this pool
    /// (annotation) or for one of its IPs get addresses from it.
    pub auto_assign: bool,
    /// `serviceAllocation` (custom resources): `None` means any Service may get
    /// an address from the pool (subject to `auto_assign`).
    pub service_allocation: Option<ServiceAllocation>,
    /// `avoid-buggy-ips`, default false: never hand out IPv4 addresses ending in .0 or .255.
    pub avoid_buggy_ips: bool,
    /// How the pool's IPs are announced over BGP. For a ConfigMap `bgp` pool
    /// without `bgp-advertisements`, MetalLB uses one default advertisement
    /// (aggregation 32/128, no local-pref, no communities); this list then holds
    /// exactly that ([`BgpAdvertisement::default`]). Empty for a ConfigMap
    /// `layer2` pool; with custom resources, one entry per `BGPAdvertisement`
    /// selecting the pool (in name order).
    pub advertisements: Vec<BgpAdvertisement>,
    /// How the pool's IPs are announced in layer 2 mode: one default entry for a
    /// ConfigMap `layer2` pool; with custom resources, one per `L2Advertisement`
    /// selecting the pool (in name order).
    pub l2_advertisements: Vec<L2Advertisement>,
}

/// How one pool's IPs are answered for in layer 2 mode (`L2Advertisement`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Advertisement {
    /// `nodeSelectors`, ORed; empty means every node.
    pub node_selectors: Vec<NodeSelector>,
    /// `interfaces`: answer only on these; empty means every suitable interface.
    pub interfaces: Vec<String>,
    /// `serviceSelectors` (custom resources): the Services this advertisement
    /// is for, ORed; empty means every Service of the pool.
    pub service_selectors: Vec<NodeSelector>,
}

impl L2Advertisement {
    /// Does this advertisement select a node with these labels?
    pub fn selects_node<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        any_or_empty(&self.node_selectors, labels)
    }

    /// Is this advertisement for a Service with these labels?
    pub fn selects_service<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        any_or_empty(&self.service_selectors, labels)
    }
}

/// No selectors, or one of them matches.
fn any_or_empty<L: LabelSet + ?Sized>(selectors: &[NodeSelector], labels: &L) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

impl Pool {
    /// A pool with these ranges, auto-assigned, no advertisements (tests and
    /// front ends fill in the rest).
    pub fn new(name: &str, ranges: Vec<AddrRange>) -> Self {
        Pool {
            name: name.to_string(),
            cidrs: ranges.iter().flat_map(AddrRange::to_cidrs).collect(),
            ranges,
            auto_assign: true,
            avoid_buggy_ips: false,
            service_allocation: None,
            advertisements: Vec::new(),
            l2_advertisements: Vec::new(),
        }
    }

    /// The ConfigMap `protocol` this pool corresponds to: `Bgp` when it has BGP
    /// advertisements, `Layer2` when it has only layer 2 ones, `None` when it is
    /// announced by neither (or, with custom resources, both).
    pub fn protocol(&self) -> Option<Protocol> {
        match (
            self.advertisements.is_empty(),
            self.l2_advertisements.is_empty(),
        ) {
            (false, true) => Some(Protocol::Bgp),
            (true, false) => Some(Protocol::Layer2),
            _ => None,
        }
    }

    /// Does the pool have IPv4 addresses, IPv6 addresses?
    pub fn families(&self) -> (bool, bool) {
        (
            self.ranges.iter().any(AddrRange::is_ipv4),
            self.ranges.iter().any(|r| !r.is_ipv4()),
        )
    }

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
    /// `nodeSelectors` (custom resources): the nodes that announce with this
    /// advertisement, ORed; empty means every node.
    pub node_selectors: Vec<NodeSelector>,
    /// `peers` (custom resources): names of the `BGPPeer`s to announce to;
    /// empty means every peer.
    pub peers: Vec<String>,
    /// `serviceSelectors` (custom resources): the Services this advertisement
    /// is for, ORed; empty means every Service of the pool. Only with the
    /// default aggregation lengths (32 and 128).
    pub service_selectors: Vec<NodeSelector>,
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
            node_selectors: Vec::new(),
            peers: Vec::new(),
            service_selectors: Vec::new(),
        }
    }
}

impl BgpAdvertisement {
    /// Does this advertisement apply on a node with these labels, towards `peer`?
    pub fn applies(&self, node_labels: &BTreeMap<String, String>, peer: &Peer) -> bool {
        self.selects_node(node_labels) && self.goes_to(peer)
    }

    /// Does this advertisement select a node with these labels?
    pub fn selects_node<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        any_or_empty(&self.node_selectors, labels)
    }

    /// Is this advertisement for a Service with these labels?
    pub fn selects_service<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        any_or_empty(&self.service_selectors, labels)
    }

    /// Does this advertisement go to `peer` (`peers` empty, or naming it)?
    pub fn goes_to(&self, peer: &Peer) -> bool {
        self.peers.is_empty()
            || peer
                .name
                .as_ref()
                .is_some_and(|n| self.peers.iter().any(|p| p == n))
    }

    /// MetalLB's rule for two advertisements that both apply to one Service
    /// on one node (`BGPAdvertisementsHaveCompatibleLocalPref`): they conflict
    /// when they set different LOCAL_PREFs (unset = 0) for the same prefix
    /// (same aggregation length for a family the pool has: `v4`, `v6`) towards
    /// a common peer (either goes to every peer, or they name one in common).
    /// Node selectors are not compared here: the caller knows both select the
    /// node.
    pub fn local_pref_conflicts(&self, other: &BgpAdvertisement, v4: bool, v6: bool) -> bool {
        let d4 = self.aggregation_length != other.aggregation_length;
        let d6 = self.aggregation_length_v6 != other.aggregation_length_v6;
        let prefixes_differ = match (v4, v6) {
            (false, false) => true,
            (true, false) => d4,
            (false, true) => d6,
            (true, true) => d4 && d6,
        };
        self.local_pref.unwrap_or(0) != other.local_pref.unwrap_or(0)
            && !prefixes_differ
            && (self.peers.is_empty()
                || other.peers.is_empty()
                || self.peers.iter().any(|p| other.peers.contains(p)))
    }

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

    /// The Service label keys that advertisements' `serviceSelectors` read
    /// (BGP and layer 2), sorted and distinct; empty when no advertisement
    /// has any. A speaker keeps only these labels of each Service.
    pub fn service_label_keys(&self) -> BTreeSet<&str> {
        self.pools
            .iter()
            .flat_map(|p| {
                p.advertisements
                    .iter()
                    .flat_map(|a| &a.service_selectors)
                    .chain(
                        p.l2_advertisements
                            .iter()
                            .flat_map(|a| &a.service_selectors),
                    )
            })
            .flat_map(NodeSelector::keys)
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
            .filter(|p| !p.advertisements.is_empty())
            .count();
        let l2 = self
            .pools
            .iter()
            .filter(|p| !p.l2_advertisements.is_empty())
            .count();
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
