//! One decision pass of the speaker, pure: from the configuration, this node
//! and every LoadBalancer Service's facts to the routes each peer must hold,
//! the Services newly announced (for `nodeAssigned` Events) and those
//! withdrawn (with the reason, for the log). It also keeps the set of
//! Services this node announces, with the peers each goes to, which
//! `/metrics` shows (`metallb_speaker_announced`) and the ServiceBGPStatus
//! objects report ([`crate::bgp_status`]).
//!
//! Nothing is allocated per Service and pass beyond the route sets: the
//! announced set is updated in place, and a pass counter finds Services that
//! were deleted (announced before, not seen in this pass).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_bgp::adj_out::Routes;
use ferrolb_config::Config;

use crate::announce::{Decision, NodeState, PeerKey, ServiceFacts, SkipReason, routes_per_peer};
use crate::watch::Ips;

/// A Service this node announces.
#[derive(Debug)]
struct Announced {
    /// The pass that last announced it.
    pass: u64,
    ips: Ips,
    /// The peers it is announced to, sorted, distinct.
    peers: Box<[PeerKey]>,
}

/// The distinct peers of a decision's announcements, sorted.
fn peers_of(anns: &[crate::announce::Announcement]) -> Vec<PeerKey> {
    let mut peers: Vec<PeerKey> = anns.iter().map(|a| a.peer).collect();
    peers.sort_unstable();
    peers.dedup();
    peers
}

/// Why a Service announced before is withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// The decision says no, for this reason.
    Skip(SkipReason),
    /// The Service is gone (deleted, no longer a LoadBalancer, or of another class).
    Deleted,
}

impl std::fmt::Display for Withdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Withdrawn::Skip(r) => r.fmt(f),
            Withdrawn::Deleted => f.write_str("service deleted"),
        }
    }
}

/// What one pass decided.
#[derive(Debug, Default)]
pub struct PassOutcome {
    /// The routes each peer selecting this node must hold (every such peer has
    /// an entry, possibly empty).
    pub routes: BTreeMap<PeerKey, Routes>,
    /// Services announced now and not in the previous pass, `namespace/name`.
    pub announced: Vec<Box<str>>,
    /// Services announced in the previous pass and not now, with why.
    pub withdrawn: Vec<(Box<str>, Withdrawn)>,
    /// Services whose advertisements conflict on LOCAL_PREF now and did not
    /// in the previous pass ([`SkipReason::ConflictingAdvertisements`]): an
    /// error to report once, not every pass.
    pub conflicting: Vec<Box<str>>,
}

/// The Services this node announces, across passes.
#[derive(Debug, Default)]
pub struct Announcer {
    announced: BTreeMap<Box<str>, Announced>,
    /// Services skipped for conflicting advertisements in the last pass.
    conflicting: BTreeSet<Box<str>>,
    pass: u64,
}

impl Announcer {
    /// Nothing announced yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decide for every Service (see [`routes_per_peer`]) and update the
    /// announced set.
    pub fn pass<'s>(
        &mut self,
        config: &Config,
        node: &NodeState,
        services: impl IntoIterator<Item = ServiceFacts<'s>>,
    ) -> PassOutcome {
        self.pass += 1;
        let pass = self.pass;
        let announced = &mut self.announced;
        let mut fresh = Vec::new();
        let mut withdrawn = Vec::new();
        let before = std::mem::take(&mut self.conflicting);
        let conflicting = &mut self.conflicting;
        let mut new_conflicts = Vec::new();
        let routes = routes_per_peer(config, node, services, |svc, d| match d {
            Decision::Announce(anns) => match announced.get_mut(svc.key) {
                Some(a) => {
                    a.pass = pass;
                    if a.ips.as_slice() != svc.ips {
                        a.ips = svc.ips.to_vec().into();
                    }
                    let peers = peers_of(anns);
                    if *a.peers != *peers {
                        a.peers = peers.into();
                    }
                }
                None => {
                    announced.insert(
                        svc.key.into(),
                        Announced {
                            pass,
                            ips: svc.ips.to_vec().into(),
                            peers: peers_of(anns).into(),
                        },
                    );
                    fresh.push(svc.key.into());
                }
            },
            Decision::Skip(reason) => {
                if *reason == SkipReason::ConflictingAdvertisements {
                    if !before.contains(svc.key) {
                        new_conflicts.push(svc.key.into());
                    }
                    conflicting.insert(svc.key.into());
                }
                if let Some((key, _)) = announced.remove_entry(svc.key) {
                    withdrawn.push((key, Withdrawn::Skip(*reason)));
                }
            }
        });
        // Announced before, and no decision this pass: the Service is gone.
        announced.retain(|key, a| {
            let keep = a.pass == pass;
            if !keep {
                withdrawn.push((key.clone(), Withdrawn::Deleted));
            }
            keep
        });
        PassOutcome {
            routes,
            announced: fresh,
            withdrawn,
            conflicting: new_conflicts,
        }
    }

    /// Every Service announced, in key order, with its IPs.
    pub fn announced(&self) -> impl Iterator<Item = (&str, &[IpAddr])> {
        self.announced.iter().map(|(k, a)| (&**k, a.ips.as_slice()))
    }

    /// Every Service announced, in key order, with the peers it goes to
    /// (sorted, distinct).
    pub fn announced_to(&self) -> impl Iterator<Item = (&str, &[PeerKey])> {
        self.announced.iter().map(|(k, a)| (&**k, &*a.peers))
    }

    /// How many Services are announced.
    pub fn len(&self) -> usize {
        self.announced.len()
    }

    /// Nothing announced.
    pub fn is_empty(&self) -> bool {
        self.announced.is_empty()
    }
}
