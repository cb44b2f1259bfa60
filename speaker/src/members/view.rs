//! Which speakers are alive, from the gossip and the API server: pure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where a [`MemberView`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewSource {
    /// The gossip: this speaker reaches other speakers (or is the only one).
    Gossip,
    /// The API server's list of ready speaker pods: no other speaker has
    /// been reachable for a while (or ever, since this speaker started)
    /// although the API server knows some.
    ApiFallback,
}

impl ViewSource {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewSource::Gossip => "gossip",
            ViewSource::ApiFallback => "api-fallback",
        }
    }
}

/// Which speakers are alive now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Node names whose speaker is alive (always includes this node).
    pub alive: BTreeSet<String>,
    /// Where this view comes from.
    pub source: ViewSource,
}

/// What [`compute`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// This node's name.
    pub me: &'a str,
    /// Node names of the members the gossip holds alive or suspect
    /// (without this node).
    pub active: &'a BTreeSet<String>,
    /// Node names of every member the gossip holds, in any state
    /// (alive, suspect, down).
    pub heard_of: &'a BTreeSet<String>,
    /// The speakers the API server knows (ready speaker pods).
    pub known: &'a BTreeMap<String, SocketAddr>,
    /// The last time the gossip had at least one other live member.
    pub last_contact: Option<Instant>,
    /// Now.
    pub now: Instant,
    /// How long without any reachable member before falling back.
    pub fallback_after: Duration,
}

/// The view: while the gossip reaches someone (or did less than
/// `fallback_after` ago, or the API server knows no other speaker), the
/// members the gossip holds alive, plus the speakers the API server lists
/// that the gossip has not heard of at all (yet: a speaker that just
/// started, or whose gossip datagrams never arrive; the gossip has no
/// evidence they are dead, so the API's word stands). Speakers the gossip
/// declared down are not alive even while their pod still looks ready.
///
/// Otherwise (never reached anyone since start, or nobody for
/// `fallback_after`, while the API knows other speakers) the API server's
/// list: every speaker computes the same owners from it, instead of each
/// isolated speaker claiming every IP.
pub fn compute(i: Inputs<'_>) -> MemberView {
    let others = i.known.keys().filter(|n| n.as_str() != i.me);
    let no_others = i.known.keys().all(|n| n == i.me);
    let recent = i
        .last_contact
        .is_some_and(|t| i.now.saturating_duration_since(t) < i.fallback_after);
    let mut alive: BTreeSet<String> = BTreeSet::new();
    alive.insert(i.me.to_string());
    if !i.active.is_empty() || recent || no_others {
        alive.extend(i.active.iter().cloned());
        alive.extend(others.filter(|n| !i.heard_of.contains(*n)).cloned());
        MemberView {
            alive,
            source: ViewSource::Gossip,
        }
    } else {
        alive.extend(others.cloned());
        MemberView {
            alive,
            source: ViewSource::ApiFallback,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }
    fn known(v: &[&str]) -> BTreeMap<String, SocketAddr> {
        v.iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.to_string(),
                    SocketAddr::from(([10, 0, 0, i as u8 + 1], 7946)),
                )
            })
            .collect()
    }

    #[test]
    fn cases() {
        let t0 = Instant::now();
        let fb = Duration::from_secs(10);
        let k = known(&["a", "b", "c"]);
        let view = |active: &[&str],
                    heard: &[&str],
                    known: &BTreeMap<String, SocketAddr>,
                    last: Option<Instant>,
                    now: Instant| {
            compute(Inputs {
                me: "a",
                active: &set(active),
                heard_of: &set(heard),
                known,
                last_contact: last,
                now,
                fallback_after: fb,
            })
        };
        // Connected: gossip's alive set; c was declared down.
        let v = view(&["b"], &["b", "c"], &k, Some(t0), t0);
        assert_eq!(v.source, ViewSource::Gossip);
        assert_eq!(v.alive, set(&["a", "b"]));
        // Connected, c never heard of: the API's word stands.
        let v = view(&["b"], &["b"], &k, Some(t0), t0);
        assert_eq!(v.alive, set(&["a", "b", "c"]));
        // Just started, nobody reached yet: the API's view.
        let v = view(&[], &[], &k, None, t0);
        assert_eq!(v.source, ViewSource::ApiFallback);
        assert_eq!(v.alive, set(&["a", "b", "c"]));
        // Lost everyone 5 s ago: still gossip (alone); after 10 s: fallback.
        let v = view(&[], &["b", "c"], &k, Some(t0), t0 + Duration::from_secs(5));
        assert_eq!((v.source, v.alive), (ViewSource::Gossip, set(&["a"])));
        let v = view(&[], &["b", "c"], &k, Some(t0), t0 + fb);
        assert_eq!(v.source, ViewSource::ApiFallback);
        assert_eq!(v.alive, set(&["a", "b", "c"]));
        // Alone in the API's list (or the list not read yet): gossip, alone.
        let v = view(&[], &[], &known(&["a"]), None, t0);
        assert_eq!((v.source, v.alive), (ViewSource::Gossip, set(&["a"])));
        let v = view(&[], &[], &BTreeMap::new(), None, t0);
        assert_eq!((v.source, v.alive), (ViewSource::Gossip, set(&["a"])));
    }
}
