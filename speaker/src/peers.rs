//! One BGP session per configured peer that selects this node.
//!
//! [`desired_sessions`] is pure: config + node → the session parameters each
//! peer should have. [`PeerSessions::sync`] opens, replaces and closes driver
//! sessions to match, and hands each its route set (the session diffs).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use ferrolb_bgp::adj_out::Routes;
use ferrolb_bgp::driver::{self, PeerConfig, SessionHandle};
use ferrolb_bgp::wire::Family;
use ferrolb_config::{Config, Peer};
use tracing::{info, warn};

use crate::announce::{NodeState, PeerKey, peers_for_node};
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
    cfg.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    cfg.ebgp_multihop = peer.ebgp_multihop.then_some(255);
    Ok(cfg)
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
            Ok(c) => {
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
}

impl PeerSessions {
    /// Make the running sessions match `desired` (start new, restart changed,
    /// stop removed ones with Cease) and give each its routes.
    pub async fn sync(
        &mut self,
        desired: BTreeMap<PeerKey, PeerConfig>,
        mut routes: BTreeMap<PeerKey, Routes>,
    ) {
        let stale: Vec<PeerKey> = self
            .running
            .iter()
            .filter(|(k, r)| desired.get(*k) != Some(&r.config))
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(r) = self.running.remove(&key) {
                info!(peer = %r.config.peer, "closing BGP session: peer removed or changed");
                r.handle
                    .shutdown(Some("ferrolb: peer configuration changed".into()))
                    .await;
            }
        }
        for (key, cfg) in desired {
            let r = self.running.entry(key).or_insert_with(|| {
                info!(peer = %cfg.peer, local = ?cfg.local_addr, "opening BGP session");
                Running {
                    handle: driver::spawn(cfg.clone()),
                    config: cfg,
                }
            });
            r.handle.set(routes.remove(&key).unwrap_or_default());
        }
        for key in routes.keys() {
            warn!(peer = %key, "routes for a peer without a session (no source address?)");
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
                desired: desired.get(k).copied().unwrap_or(0),
            })
            .collect()
    }

    /// Withdraw everything from every peer, give the withdrawals a moment to
    /// reach the wire, then close every session with Cease.
    pub async fn shutdown(self, grace: Duration) {
        for r in self.running.values() {
            r.handle.set(Routes::new());
        }
        let deadline = tokio::time::Instant::now() + grace;
        for r in self.running.values() {
            let mut st = r.handle.status();
            let _ = tokio::time::timeout_at(deadline, async {
                while st.borrow().prefixes_announced > 0 && st.changed().await.is_ok() {}
            })
            .await;
        }
        for (_, r) in self.running {
            r.handle
                .shutdown(Some("ferrolb speaker shutting down".into()))
                .await;
        }
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
    fn source_address_for_loopback() {
        assert_eq!(
            source_address_for("127.0.0.1".parse().unwrap()),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
