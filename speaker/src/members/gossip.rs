//! The SWIM member, sans-IO: [`foca`] with our identity, codec, timings and
//! limits, driven by datagrams, timer events and the API server's list of
//! speakers, answering with [`Output`]s (datagrams to send, timers to arm).
//! No socket and no clock inside: the caller passes `now`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Buf;
use foca::{Codec, Foca, Message, NoCustomBroadcast, Notification, Runtime, Timer};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::IteratorRandom;
use tracing::{debug, info, trace};

use super::codec::IdCodec;
use super::identity::Id;
use super::tuning::{self, MAX_PACKET};
use super::view::{self, MemberView};

/// What the member asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this datagram.
    Send {
        /// Destination (the member's gossip address).
        to: SocketAddr,
        /// The datagram (at most [`MAX_PACKET`] bytes).
        data: Vec<u8>,
    },
    /// Hand `timer` back to [`Gossip::handle_timer`] after `after`, in order.
    Timer {
        /// Delay.
        after: Duration,
        /// The event.
        timer: Timer<Id>,
    },
}

/// Counts of what the member received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to foca.
    pub received: u64,
    /// Datagrams dropped: too large, undecodable, invalid identities, over
    /// the member cap, or refused by foca.
    pub dropped: u64,
    /// Members this one saw go down (foca's `MemberDown`).
    pub members_down: u64,
}

/// foca's [`Runtime`]: collects what an interaction asks for.
#[derive(Debug, Default)]
struct Outbox {
    out: Vec<Output>,
    members_down: u64,
}

impl Runtime<Id> for Outbox {
    fn notify(&mut self, n: Notification<'_, Id>) {
        match n {
            Notification::MemberUp(id) => info!(member = ?id, "speaker up"),
            Notification::MemberDown(id) => {
                self.members_down += 1;
                info!(member = ?id, "speaker down");
            }
            Notification::Rename(old, new) => info!(?old, ?new, "speaker restarted"),
            Notification::Rejoin(id) => info!(me = ?id, "declared down by the others; rejoined"),
            Notification::Active => info!("joined the speakers' gossip"),
            Notification::Idle => info!("no other speaker reachable"),
            Notification::Defunct => info!("declared down by the others"),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn send_to(&mut self, to: Id, data: &[u8]) {
        self.out.push(Output::Send {
            to: to.addr,
            data: data.to_vec(),
        });
    }

    fn submit_after(&mut self, timer: Timer<Id>, after: Duration) {
        self.out.push(Output::Timer { after, timer });
    }
}

/// One speaker's SWIM member.
pub struct Gossip {
    foca: Foca<Id, IdCodec, SmallRng, NoCustomBroadcast>,
    out: Outbox,
    rng: SmallRng,
    known: BTreeMap<String, SocketAddr>,
    max_members: usize,
    join_fanout: usize,
    size: usize,
    last_contact: Option<Instant>,
    stats: Stats,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("id", self.foca.identity())
            .field("members", &self.foca.num_members())
            .finish()
    }
}

/// How many not-yet-joined speakers [`Gossip::join`] announces to at a time.
pub const JOIN_FANOUT: usize = 3;

impl Gossip {
    /// A member with identity `id`, random choices seeded with `seed`,
    /// keeping at most `max_members` members (any state).
    pub fn new(id: Id, seed: u64, max_members: usize) -> Gossip {
        let foca = Foca::new(
            id,
            tuning::swim_config(1),
            SmallRng::seed_from_u64(seed),
            IdCodec,
        );
        Gossip {
            foca,
            out: Outbox::default(),
            rng: SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            known: BTreeMap::new(),
            max_members: max_members.max(1),
            join_fanout: JOIN_FANOUT,
            size: 1,
            last_contact: None,
            stats: Stats::default(),
        }
    }

    /// This member's current identity (it changes when renewed).
    pub fn identity(&self) -> &Id {
        self.foca.identity()
    }

    /// What was received and dropped so far.
    pub fn stats(&self) -> Stats {
        Stats {
            members_down: self.out.members_down,
            ..self.stats
        }
    }

    fn finish(&mut self, now: Instant) -> Vec<Output> {
        if self.foca.num_members() > 0 {
            self.last_contact = Some(now);
        }
        self.resize();
        std::mem::take(&mut self.out.out)
    }

    /// Keeps the size-dependent timings in line with the cluster's size.
    fn resize(&mut self) {
        let size = self.known.len().max(self.foca.num_members() + 1);
        if size != self.size {
            self.size = size;
            // Only size-dependent values change; foca accepts that.
            if let Err(e) = self.foca.set_config(tuning::swim_config(size)) {
                debug!(error = %e, "config not replaced");
            }
        }
    }

    /// A datagram from the network. Garbage is counted and dropped.
    pub fn handle_datagram(&mut self, data: &[u8], now: Instant) -> Vec<Output> {
        if data.len() > MAX_PACKET || !self.admit(data) {
            self.stats.dropped += 1;
            return self.finish(now);
        }
        match self.foca.handle_data(data, &mut self.out) {
            Ok(()) => self.stats.received += 1,
            Err(e) => {
                self.stats.dropped += 1;
                trace!(error = %e, "datagram refused");
            }
        }
        self.finish(now)
    }

    /// Whether a datagram decodes with valid identities and would keep the
    /// member count within the cap (foca itself has no cap).
    fn admit(&self, data: &[u8]) -> bool {
        let mut buf = data;
        let Ok(header) = IdCodec.decode_header(&mut buf) else {
            return false;
        };
        let mut names = vec![header.src.name];
        if buf.remaining() >= 2 && header.message != Message::Broadcast {
            let n = buf.get_u16();
            for _ in 0..n {
                match IdCodec.decode_member(&mut buf) {
                    Ok(m) => names.push(m.id().name.clone()),
                    Err(_) => return false,
                }
            }
        }
        let held = self.foca.iter_membership_state().len();
        if held + names.len() <= self.max_members {
            return true;
        }
        let have: HashSet<&str> = self
            .foca
            .iter_membership_state()
            .map(|m| m.id().name.as_str())
            .collect();
        let me = self.identity().name.as_str();
        let new: BTreeSet<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| *n != me && !have.contains(n))
            .collect();
        held + new.len() <= self.max_members
    }

    /// A timer armed by an earlier [`Output::Timer`] is due.
    pub fn handle_timer(&mut self, timer: Timer<Id>, now: Instant) -> Vec<Output> {
        if let Err(e) = self.foca.handle_timer(timer, &mut self.out) {
            trace!(error = %e, "timer");
        }
        self.finish(now)
    }

    /// The speakers the API server knows (node name → gossip address);
    /// announces to those not joined yet.
    pub fn set_known(&mut self, known: BTreeMap<String, SocketAddr>, now: Instant) -> Vec<Output> {
        self.known = known;
        self.join(now)
    }

    /// Announces to up to [`JOIN_FANOUT`] speakers the API server knows and
    /// the gossip does not hold alive (none once everyone has joined). Call
    /// periodically: this is how a speaker joins, and how split groups find
    /// each other again.
    pub fn join(&mut self, now: Instant) -> Vec<Output> {
        let me = self.identity().name.clone();
        let active: HashSet<&str> = self
            .foca
            .iter_members()
            .map(|m| m.id().name.as_str())
            .collect();
        let targets: Vec<Id> = self
            .known
            .iter()
            .filter(|(n, _)| **n != me && !active.contains(n.as_str()))
            .map(|(n, a)| Id::new(n.clone(), *a, 0))
            .filter(Id::is_valid)
            .sample(&mut self.rng, self.join_fanout);
        for t in targets {
            if let Err(e) = self.foca.announce(t, &mut self.out) {
                debug!(error = %e, "announce");
            }
        }
        self.finish(now)
    }

    /// Tells the others this member leaves (on shutdown), so they drop it
    /// without waiting for a suspicion to run out.
    pub fn leave(&mut self, now: Instant) -> Vec<Output> {
        if let Err(e) = self.foca.leave_cluster(&mut self.out) {
            debug!(error = %e, "leave");
        }
        self.finish(now)
    }

    /// Node names of the members held alive (or suspect), without this one.
    pub fn active(&self) -> BTreeSet<String> {
        self.foca
            .iter_members()
            .map(|m| m.id().name.clone())
            .collect()
    }

    /// How many members are held alive (or suspect), without this one.
    pub fn num_active(&self) -> usize {
        self.foca.num_members()
    }

    /// Node names of every member held, in any state.
    pub fn heard_of(&self) -> BTreeSet<String> {
        self.foca
            .iter_membership_state()
            .map(|m| m.id().name.clone())
            .collect()
    }

    /// Members held, in any state (bounded by the cap).
    pub fn held(&self) -> usize {
        self.foca.iter_membership_state().len()
    }

    /// Which speakers are alive now ([`view::compute`]).
    pub fn view(&self, now: Instant, fallback_after: Duration) -> MemberView {
        view::compute(view::Inputs {
            me: &self.identity().name,
            active: &self.active(),
            heard_of: &self.heard_of(),
            known: &self.known,
            last_contact: self.last_contact,
            now,
            fallback_after,
        })
    }
}
