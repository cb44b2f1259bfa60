//! One BGP session per configured peer that selects this node.
//!
//! [`desired_sessions`] is pure: config + node → the session parameters each
//! peer should have. [`PeerSessions::sync`] opens, replaces and closes driver
//! sessions to match, and hands each its route set (the session diffs). A
//! session whose parameters change is replaced: the old one is closed with
//! Cease / Other Configuration Change (6/6), a peer that no longer selects
//! the node (or left the configuration) gets Cease / Peer De-configured (6/3),
//! as RFC 4486 names them. Peers that need something unsupported (a VRF) get
//! no session at all ([`PeerSessions::report_unsupported`] logs them once).
//! A peer with a `bfd-profile` gets the profile's timers in its session
//! parameters ([`peer_bfd`]), so a profile change replaces the session too; its
//! BFD session runs on the process's one [`BfdEndpoint`]. One BFD session per
//! peer address: a second peer at the same address runs without BFD (its
//! [`SessionStatus::bfd_error`](ferrolb_bgp::driver::SessionStatus) says so).
//!
//! Graceful restart (a peer's `enableGracefulRestart` / `graceful-restart`):
//! the session advertises RFC 4724 with restart time 120 s and RFC 8538's N
//! bit, and the R bit for the sessions of the first sync when the speaker is
//! a restart ([`PeerSessions::restarting`]). Sessions open in the first sync,
//! after the watches synced, and get their complete route set at once, so the
//! End-of-RIB the driver holds back until the first set follows the complete
//! table. A removed peer's 6/3 then goes out as a Hard Reset (the router
//! drops the routes), a changed one's 6/6 as is (the router keeps them until
//! the new session's End-of-RIB). On SIGTERM, [`keep_routes_on_sigterm`]
//! decides between [`PeerSessions::shutdown_keeping_routes`] (rollout) and
//! [`PeerSessions::shutdown`] (withdraw, then Hard Reset).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use ferrolb_bgp::adj_out::Routes;
use ferrolb_bgp::bfd::BfdEndpoint;
use ferrolb_bgp::driver::{self, PeerBfd, PeerConfig, SessionHandle};
use ferrolb_bgp::fsm::{DynamicAs, GracefulRestartConfig};
use ferrolb_bgp::wire::{Family, subcode};
use ferrolb_config::{BfdProfile, Config, DynamicAsn, Peer};
use tracing::{info, warn};

use crate::announce::{NodeState, PeerKey, peers_for_node, unsupported_peers_for_node};
use crate::metrics::SessionView;

/// Why a peer that selects the node gets no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("peer {0}: no route to the peer from this node, so no source address")]
    NoSourceAddress(IpAddr),
    #[error("peer {0}: no router-id configured and no IPv4 address on this node to use")]
    NoRouterId(IpAddr),
}

/// The source address the kernel would use to reach `peer` (a connected UDP
/// socket sends nothing; it only asks the routing table).
pub fn source_address_for(peer: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match peer {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.connect((peer, 179)).ok()?;
    let local = sock.local_addr().ok()?.ip();
    (!local.is_unspecified()).then_some(local)
}

/// Session parameters for one peer on this node. `resolve` finds the source
/// address toward a peer (injected so tests need no routing table).
pub fn session_config(
    peer: &Peer,
    resolve: &dyn Fn(IpAddr) -> Option<IpAddr>,
    fallback_router_id: Option<Ipv4Addr>,
) -> Result<PeerConfig, PeerError> {
    let source = match peer.source_address {
        Some(a) => a,
        None => resolve(peer.address).ok_or(PeerError::NoSourceAddress(peer.address))?,
    };
    let router_id = match (peer.router_id, source) {
        (Some(id), _) => id,
        (None, IpAddr::V4(v4)) => v4,
        (None, IpAddr::V6(_)) => fallback_router_id.ok_or(PeerError::NoRouterId(peer.address))?,
    };
    let secs = |d: Duration| u16::try_from(d.as_secs()).unwrap_or(u16::MAX);
    let mut cfg = PeerConfig::new(
        SocketAddr::new(peer.address, peer.port),
        peer.my_asn,
        peer.peer_asn,
        router_id,
    );
    cfg.local_addr = Some(source);
    cfg.hold_time = secs(peer.hold_time);
    // The default keepalive (a third of the configured hold time) is left to the
    // session, which then sends one every third of the *negotiated* hold time,
    // as MetalLB's native speaker does: a router proposing a shorter hold time
    // gets keepalives often enough. A keepalive written in the config is kept.
    cfg.keepalive = (peer.keepalive_time != peer.hold_time / 3).then(|| secs(peer.keepalive_time));
    cfg.password = peer.password.clone();
    // disableMP: the session carries only its own address family (the
    // multiprotocol capability of the other one is not offered, and its
    // routes are not handed to the session), as MetalLB's FRR mode with one
    // neighbor per family. Otherwise one session carries both.
    cfg.families = if peer.disable_mp {
        vec![family_of(peer.address)]
    } else {
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    };
    cfg.ebgp_multihop = peer.ebgp_multihop.then_some(255);
    cfg.dynamic_peer_as = peer.dynamic_asn.map(|d| match d {
        DynamicAsn::Internal => DynamicAs::Internal,
        DynamicAsn::External => DynamicAs::External,
    });
    // MetalLB's FRR mode leaves the restart time at FRR's default, 120 s.
    cfg.graceful_restart = peer
        .graceful_restart
        .then(|| GracefulRestartConfig::new(GracefulRestartConfig::DEFAULT_RESTART_TIME));
    if let Some(t) = peer.connect_time {
        // connectTime: a fixed interval between attempts (FRR's `timers
        // connect`), instead of the 1 s doubling backoff.
        let t = t.max(Duration::from_secs(1));
        cfg.connect_retry = t;
        cfg.connect_retry_max = t;
    }
    Ok(cfg)
}

/// The BFD timers of a profile. Echo mode and a multi-hop minimum TTL are not
/// used (the configuration reports them as warnings): the session is
/// single hop, asynchronous, checking TTL 255.
pub fn peer_bfd(p: &BfdProfile) -> PeerBfd {
    PeerBfd {
        desired_min_tx: Duration::from_millis(p.transmit_interval_ms.into()),
        required_min_rx: Duration::from_millis(p.receive_interval_ms.into()),
        detect_mult: u8::try_from(p.detect_multiplier).unwrap_or(u8::MAX),
        passive: p.passive_mode,
    }
}

/// The unicast family of a peer address.
pub fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::IPV4_UNICAST,
        IpAddr::V6(_) => Family::IPV6_UNICAST,
    }
}

/// Keep only the routes of `families` (a disableMP session carries one family).
pub fn routes_for_families(routes: Routes, families: &[Family]) -> Routes {
    if families.contains(&Family::IPV4_UNICAST) && families.contains(&Family::IPV6_UNICAST) {
        return routes;
    }
    let mut routes = routes;
    routes.retain(|p, _| families.contains(&family_of(p.addr())));
    routes
}

/// How a running session ends when [`PeerSessions::sync`] no longer wants it
/// as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Still wanted with other parameters: Cease 6/6 Other Configuration Change.
    Changed,
    /// Not wanted any more: Cease 6/3 Peer De-configured.
    Removed,
}

impl Replace {
    /// The Cease subcode (RFC 4486).
    pub fn cease_subcode(self) -> u8 {
        match self {
            Replace::Changed => subcode::OTHER_CONFIGURATION_CHANGE,
            Replace::Removed => subcode::PEER_DECONFIGURED,
        }
    }
}

/// Pure: which running sessions must end, and how, to go from `running` to
/// `desired` (a session equal to its desired parameters stays).
pub fn sessions_to_close(
    running: &BTreeMap<PeerKey, PeerConfig>,
    desired: &BTreeMap<PeerKey, PeerConfig>,
) -> Vec<(PeerKey, Replace)> {
    running
        .iter()
        .filter_map(|(k, cfg)| match desired.get(k) {
            None => Some((*k, Replace::Removed)),
            Some(d) if d != cfg => Some((*k, Replace::Changed)),
            Some(_) => None,
        })
        .collect()
}

/// The sessions this node should run: one per peer whose node-selectors match.
pub fn desired_sessions(
    config: &Config,
    node: &NodeState,
    resolve: &dyn Fn(IpAddr) -> Option<IpAddr>,
) -> (BTreeMap<PeerKey, PeerConfig>, Vec<PeerError>) {
    let peers = peers_for_node(config, &node.labels);
    // A router-id for IPv6-only sessions: the node's first IPv4 source address toward any peer.
    let fallback_id = peers.iter().find_map(|(_, p)| match resolve(p.address) {
        Some(IpAddr::V4(v4)) => Some(v4),
        _ => None,
    });
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, p) in peers {
        match session_config(p, resolve, fallback_id) {
            Ok(mut c) => {
                c.bfd = p
                    .bfd_profile
                    .as_ref()
                    .and_then(|n| config.bfd_profiles.get(n))
                    .map(peer_bfd);
                out.insert(key, c);
            }
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

struct Running {
    config: PeerConfig,
    handle: SessionHandle,
}

/// The live sessions of this node.
#[derive(Default)]
pub struct PeerSessions {
    running: BTreeMap<PeerKey, Running>,
    /// The peers last reported as getting no session (unsupported), with why.
    unsupported: BTreeSet<(PeerKey, &'static str)>,
    /// The BFD sockets all sessions share.
    bfd: BfdEndpoint,
    /// Sessions opened by the next sync carry the graceful restart R bit.
    restarting: bool,
}

/// What the speaker does with its routes on SIGTERM (`--on-sigterm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnSigterm {
    /// Close graceful-restart sessions so the routers keep the routes as
    /// stale until the new speaker is back (a rollout or an upgrade).
    Keep,
    /// Withdraw every route, then Cease (a Hard Reset where negotiated).
    Withdraw,
    /// `withdraw` when the node is cordoned (`spec.unschedulable`: being
    /// drained or shut down), else `keep`.
    Auto,
}

/// Pure: whether the sessions with graceful restart keep their routes at the
/// routers when the speaker stops (sessions without it always withdraw).
pub fn keep_routes_on_sigterm(mode: OnSigterm, node_unschedulable: bool) -> bool {
    match mode {
        OnSigterm::Keep => true,
        OnSigterm::Withdraw => false,
        OnSigterm::Auto => !node_unschedulable,
    }
}

impl PeerSessions {
    /// Sessions opened by the next [`PeerSessions::sync`] (the first one,
    /// after the watches synced) set the graceful restart R bit: this speaker
    /// is a restart of one that had them (see `ferrolb_ops::restart_marker`).
    pub fn restarting(mut self, yes: bool) -> Self {
        self.restarting = yes;
        self
    }

    /// Make the running sessions match `desired` (start new, restart changed,
    /// stop removed ones with Cease) and give each its routes.
    pub async fn sync(
        &mut self,
        desired: BTreeMap<PeerKey, PeerConfig>,
        mut routes: BTreeMap<PeerKey, Routes>,
    ) {
        let running: BTreeMap<PeerKey, PeerConfig> = self
            .running
            .iter()
            .map(|(k, r)| (*k, r.config.clone()))
            .collect();
        for (key, how) in sessions_to_close(&running, &desired) {
            if let Some(r) = self.running.remove(&key) {
                info!(
                    peer = %key,
                    cease = how.cease_subcode(),
                    "closing BGP session: {}",
                    match how {
                        Replace::Changed => "its parameters changed (a new one follows)",
                        Replace::Removed => "the peer is no longer configured for this node",
                    }
                );
                r.handle.close(how.cease_subcode(), None).await;
            }
        }
        for (key, cfg) in desired {
            let bfd = &self.bfd;
            let restarting = self.restarting;
            let r = self.running.entry(key).or_insert_with(|| {
                info!(peer = %cfg.peer, local = ?cfg.local_addr, bfd = cfg.bfd.is_some(),
                      graceful_restart = cfg.graceful_restart.is_some(), "opening BGP session");
                // The R bit is in the session only, not in the compared config.
                let mut spawned = cfg.clone();
                if let Some(g) = spawned.graceful_restart.as_mut() {
                    g.restarting = restarting;
                }
                Running {
                    handle: driver::spawn_with_bfd(spawned, bfd),
                    config: cfg,
                }
            });
            let mine = routes.remove(&key).unwrap_or_default();
            r.handle.set(routes_for_families(mine, &r.config.families));
        }
        for key in routes.keys() {
            warn!(peer = %key, "routes for a peer without a session (no source address?)");
        }
        self.restarting = false;
    }

    /// Log, once per change, the peers selecting this node that get no
    /// session because they need something ferrolb does not support.
    pub fn report_unsupported(&mut self, config: &Config, node: &NodeState) {
        let now: BTreeSet<(PeerKey, &'static str)> =
            unsupported_peers_for_node(config, &node.labels)
                .into_iter()
                .map(|(k, _, why)| (k, why))
                .collect();
        if now != self.unsupported {
            for (key, why) in now.difference(&self.unsupported) {
                warn!(peer = %key, "no BGP session: {why}");
            }
            self.unsupported = now;
        }
    }

    /// The sessions as `/metrics` shows them; `desired` is the number of
    /// prefixes each peer should hold.
    pub fn views(&self, desired: &BTreeMap<PeerKey, usize>) -> Vec<SessionView> {
        self.running
            .iter()
            .map(|(k, r)| SessionView {
                peer: *k,
                status: r.handle.status(),
                bfd: r.handle.bfd(),
                desired: desired.get(k).copied().unwrap_or(0),
            })
            .collect()
    }

    /// Stop for a restart: sessions with graceful restart end so that their
    /// routers keep the routes as stale until the next speaker is back and
    /// has sent End-of-RIB ([`SessionHandle::close_keep_routes`]); the others
    /// as [`PeerSessions::shutdown`], all at once.
    pub async fn shutdown_keeping_routes(mut self, grace: Duration) {
        let keep: Vec<PeerKey> = self
            .running
            .iter()
            .filter(|(_, r)| r.config.graceful_restart.is_some())
            .map(|(k, _)| *k)
            .collect();
        let kept: Vec<_> = keep
            .iter()
            .filter_map(|key| self.running.remove(key).map(|r| (*key, r)))
            .collect();
        let kept = futures::future::join_all(kept.into_iter().map(|(key, r)| {
            info!(peer = %key, "closing BGP session; the router keeps our routes (graceful restart)");
            r.handle
                .close_keep_routes(Some("ferrolb speaker restarting".into()))
        }));
        futures::future::join(kept, self.shutdown(grace)).await;
    }

    /// Withdraw everything from every peer and close every session with
    /// Cease, all peers at once: each session writes its withdrawals before
    /// its Cease for up to `grace` (a peer that does not take them in time has
    /// its connection dropped instead), so the whole shutdown takes about
    /// `grace` plus 1 s however many peers there are.
    pub async fn shutdown(self, grace: Duration) {
        for r in self.running.values() {
            r.handle.set(Routes::new());
        }
        futures::future::join_all(self.running.into_values().map(|r| {
            r.handle
                .shutdown_within(Some("ferrolb speaker shutting down".into()), grace)
        }))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn session_config_defaults_from_node_address() {
        let c = cfg(
            "peers:\n- peer-address: 172.17.0.1\n  peer-asn: 64512\n  my-asn: 64522\n  hold-time: 3s\n  password: s3cret\n",
        );
        let node = NodeState::default();
        let resolve = |_: IpAddr| Some("172.17.0.21".parse().unwrap());
        let (sessions, errors) = desired_sessions(&c, &node, &resolve);
        assert!(errors.is_empty());
        let s = &sessions[&PeerKey::new("172.17.0.1".parse().unwrap(), 179)];
        assert_eq!(s.local_addr, Some("172.17.0.21".parse().unwrap()));
        assert_eq!(s.router_id, "172.17.0.21".parse::<Ipv4Addr>().unwrap());
        assert_eq!((s.local_as, s.peer_as), (64522, 64512));
        assert_eq!(s.hold_time, 3);
        assert_eq!(
            s.keepalive, None,
            "the default: a third of the negotiated hold time"
        );
        assert_eq!(s.password.as_deref(), Some("s3cret"));
        assert_eq!(s.ebgp_multihop, None);
    }

    #[test]
    fn a_bfd_profile_puts_its_timers_in_the_session_and_a_change_replaces_it() {
        let text = |rx: u32| {
            format!(
                "peers:\n- {{peer-address: 172.17.0.1, peer-asn: 1, my-asn: 2, bfd-profile: fast}}\n\
                 - {{peer-address: 172.17.0.2, peer-asn: 1, my-asn: 2}}\n\
                 bfd-profiles:\n- {{name: fast, receive-interval: {rx}, transmit-interval: 120, \
                 detect-multiplier: 4, passive-mode: true, echo-mode: true}}\n"
            )
        };
        let resolve = |_: IpAddr| Some("172.17.0.21".parse().unwrap());
        let (a, _) = desired_sessions(&cfg(&text(100)), &NodeState::default(), &resolve);
        let k1 = PeerKey::new("172.17.0.1".parse().unwrap(), 179);
        let k2 = PeerKey::new("172.17.0.2".parse().unwrap(), 179);
        assert_eq!(
            a[&k1].bfd,
            Some(PeerBfd {
                desired_min_tx: Duration::from_millis(120),
                required_min_rx: Duration::from_millis(100),
                detect_mult: 4,
                passive: true,
            })
        );
        assert_eq!(a[&k2].bfd, None);
        let (b, _) = desired_sessions(&cfg(&text(200)), &NodeState::default(), &resolve);
        assert_eq!(sessions_to_close(&a, &b), vec![(k1, Replace::Changed)]);
        assert!(sessions_to_close(&a, &a).is_empty());
    }

    #[test]
    fn a_written_keepalive_is_kept() {
        let c = cfg(
            "peers:\n- {peer-address: 172.17.0.1, peer-asn: 1, my-asn: 2, hold-time: 9s, keepalive-time: 2s}\n",
        );
        let resolve = |_: IpAddr| Some("172.17.0.21".parse().unwrap());
        let (sessions, _) = desired_sessions(&c, &NodeState::default(), &resolve);
        let s = sessions.values().next().unwrap();
        assert_eq!((s.hold_time, s.keepalive), (9, Some(2)));
    }

    #[test]
    fn explicit_router_id_source_and_selectors() {
        let c = cfg(concat!(
            "peers:\n",
            "- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 2\n  router-id: 9.9.9.9\n  source-address: 10.0.0.5\n  ebgp-multihop: true\n",
            "- peer-address: 10.0.0.2\n  peer-asn: 1\n  my-asn: 2\n  node-selectors:\n  - match-labels:\n      rack: b\n",
        ));
        let node = NodeState {
            name: "n".into(),
            labels: [("rack".to_string(), "a".to_string())].into(),
            network_unavailable: false,
            excluded: false,
            unschedulable: false,
        };
        let resolve = |_: IpAddr| None;
        let (sessions, errors) = desired_sessions(&c, &node, &resolve);
        assert_eq!(
            sessions.len(),
            1,
            "the rack=b peer does not select this node"
        );
        assert!(errors.is_empty(), "{errors:?}");
        let s = sessions.values().next().unwrap();
        assert_eq!(s.router_id, "9.9.9.9".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.local_addr, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(s.ebgp_multihop, Some(255));
    }

    #[test]
    fn unreachable_peer_is_an_error_not_a_session() {
        let c = cfg("peers:\n- peer-address: 10.0.0.1\n  peer-asn: 1\n  my-asn: 2\n");
        let (sessions, errors) = desired_sessions(&c, &NodeState::default(), &|_| None);
        assert!(sessions.is_empty());
        assert_eq!(
            errors,
            vec![PeerError::NoSourceAddress("10.0.0.1".parse().unwrap())]
        );
    }

    #[test]
    fn richer_peer_fields_reach_the_session() {
        let mut c = cfg(concat!(
            "peers:\n",
            "- {peer-address: 10.0.0.1, peer-asn: 64512, my-asn: 64522}\n",
            "- {peer-address: 10.0.0.2, peer-asn: 64512, my-asn: 64522}\n",
            "- {peer-address: 10.0.0.3, peer-asn: 64512, my-asn: 64522}\n",
            "- {peer-address: 'fd00::1', peer-asn: 64512, my-asn: 64522}\n",
        ));
        c.peers[0].peer_asn = 0;
        c.peers[0].dynamic_asn = Some(DynamicAsn::External);
        c.peers[0].connect_time = Some(Duration::from_secs(5));
        c.peers[1].vrf = Some("red".into());
        c.peers[2].disable_mp = true;
        c.peers[3].disable_mp = true;
        let resolve = |a: IpAddr| {
            Some(if a.is_ipv4() {
                "10.0.0.9".parse().unwrap()
            } else {
                "fd00::9".parse().unwrap()
            })
        };
        let (s, errors) = desired_sessions(&c, &NodeState::default(), &resolve);
        assert!(errors.is_empty(), "{errors:?}");
        let key = |a: &str| PeerKey::new(a.parse().unwrap(), 179);
        let dynamic = &s[&key("10.0.0.1")];
        assert_eq!(dynamic.dynamic_peer_as, Some(DynamicAs::External));
        assert_eq!(
            (dynamic.connect_retry, dynamic.connect_retry_max),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        assert!(
            !s.contains_key(&key("10.0.0.2")),
            "a VRF peer gets no session"
        );
        assert_eq!(s[&key("10.0.0.3")].families, vec![Family::IPV4_UNICAST]);
        assert_eq!(s[&key("fd00::1")].families, vec![Family::IPV6_UNICAST]);
        assert_eq!(
            s[&key("fd00::1")].router_id,
            "10.0.0.9".parse::<Ipv4Addr>().unwrap()
        );
        // Defaults: both families, backoff from 1 s to 60 s, fixed AS.
        let plain = session_config(
            &Peer::new("10.0.0.4".parse().unwrap(), 1, 2),
            &resolve,
            None,
        )
        .unwrap();
        assert_eq!(plain.families.len(), 2);
        assert_eq!(plain.dynamic_peer_as, None);
        assert_eq!(plain.connect_retry_max, Duration::from_secs(60));
    }

    #[test]
    fn changed_sessions_get_6_6_and_removed_ones_6_3() {
        let resolve = |_: IpAddr| Some("10.0.0.9".parse().unwrap());
        let c = cfg(concat!(
            "peers:\n",
            "- {peer-address: 10.0.0.1, peer-asn: 64512, my-asn: 64522, hold-time: 90s}\n",
            "- {peer-address: 10.0.0.2, peer-asn: 64512, my-asn: 64522}\n",
            "- {peer-address: 10.0.0.3, peer-asn: 64512, my-asn: 64522}\n",
        ));
        let (before, _) = desired_sessions(&c, &NodeState::default(), &resolve);
        let mut next = c.clone();
        next.peers[0].hold_time = Duration::from_secs(30);
        next.peers[0].keepalive_time = Duration::from_secs(10);
        next.peers[1].vrf = Some("red".into());
        let (after, _) = desired_sessions(&next, &NodeState::default(), &resolve);
        let key = |a: &str| PeerKey::new(a.parse().unwrap(), 179);
        assert_eq!(
            sessions_to_close(&before, &after),
            vec![
                (key("10.0.0.1"), Replace::Changed),
                (key("10.0.0.2"), Replace::Removed)
            ]
        );
        assert_eq!(Replace::Changed.cease_subcode(), 6);
        assert_eq!(Replace::Removed.cease_subcode(), 3);
        assert!(sessions_to_close(&after, &after).is_empty());
        // Every session parameter counts as a change.
        let base = before[&key("10.0.0.3")].clone();
        let edits: [fn(&mut PeerConfig); 12] = [
            |p| p.hold_time = 9,
            |p| p.keepalive = Some(1),
            |p| p.local_as = 1,
            |p| p.peer_as = 1,
            |p| p.dynamic_peer_as = Some(DynamicAs::Internal),
            |p| p.password = Some("x".into()),
            |p| p.peer.set_port(1790),
            |p| p.local_addr = None,
            |p| p.router_id = Ipv4Addr::new(1, 1, 1, 1),
            |p| p.ebgp_multihop = Some(255),
            |p| p.families = vec![Family::IPV4_UNICAST],
            |p| p.connect_retry = Duration::from_secs(9),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut changed = base.clone();
            edit(&mut changed);
            let old = BTreeMap::from([(key("10.0.0.3"), base.clone())]);
            let new = BTreeMap::from([(key("10.0.0.3"), changed)]);
            assert_eq!(
                sessions_to_close(&old, &new),
                vec![(key("10.0.0.3"), Replace::Changed)],
                "edit #{i}"
            );
        }
    }

    #[test]
    fn disable_mp_sessions_get_their_family_only() {
        let mut r = Routes::new();
        let attrs = std::sync::Arc::new(ferrolb_bgp::adj_out::RouteAttrs::default());
        r.insert("172.20.0.1/32".parse().unwrap(), attrs.clone());
        r.insert("fd00::1/128".parse().unwrap(), attrs);
        let v4 = routes_for_families(r.clone(), &[Family::IPV4_UNICAST]);
        assert_eq!(
            v4.keys().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["172.20.0.1/32"]
        );
        let v6 = routes_for_families(r.clone(), &[Family::IPV6_UNICAST]);
        assert_eq!(
            v6.keys().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["fd00::1/128"]
        );
        assert_eq!(
            routes_for_families(r, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]).len(),
            2
        );
    }

    #[test]
    fn graceful_restart_reaches_the_session_and_a_change_replaces_it() {
        let resolve = |_: IpAddr| Some("10.0.0.9".parse().unwrap());
        let text = |gr: bool| {
            format!(
                "peers:\n- {{peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, graceful-restart: {gr}}}\n"
            )
        };
        let (on, _) = desired_sessions(&cfg(&text(true)), &NodeState::default(), &resolve);
        let (off, _) = desired_sessions(&cfg(&text(false)), &NodeState::default(), &resolve);
        let k = PeerKey::new("10.0.0.1".parse().unwrap(), 179);
        assert_eq!(
            on[&k].graceful_restart,
            Some(GracefulRestartConfig {
                restart_time: 120,
                restarting: false
            }),
            "the R bit is never in the compared config"
        );
        assert_eq!(off[&k].graceful_restart, None);
        assert_eq!(sessions_to_close(&on, &off), vec![(k, Replace::Changed)]);
    }

    #[test]
    fn sigterm_keeps_routes_unless_withdraw_or_cordoned() {
        use OnSigterm::*;
        let table = [
            (Keep, false, true),
            (Keep, true, true),
            (Withdraw, false, false),
            (Withdraw, true, false),
            (Auto, false, true),
            (Auto, true, false),
        ];
        for (mode, cordoned, keep) in table {
            assert_eq!(
                keep_routes_on_sigterm(mode, cordoned),
                keep,
                "{mode:?} cordoned={cordoned}"
            );
        }
    }

    #[test]
    fn source_address_for_loopback() {
        assert_eq!(
            source_address_for("127.0.0.1".parse().unwrap()),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
