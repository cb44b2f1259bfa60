//! An in-memory network of [`Gossip`] members on a virtual clock, for the
//! tests and the benchmark: datagrams are delivered after a fixed latency
//! (or lost, at a chosen rate), timers fire in order, members can be killed
//! (their timers and datagrams vanish) and restarted with a new boot id.
//! Deterministic for a given seed.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use foca::Timer;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::gossip::{Gossip, Output};
use super::identity::Id;
use super::tuning::DEFAULT_MAX_MEMBERS;
use super::view::MemberView;

/// Boot ids as [`Id::boot_now`] gives them (microseconds since 1970, here
/// December 2025), so that datagrams have their real size.
const BOOT_EPOCH: u64 = 1_764_547_200_000_000;

enum Event {
    Deliver {
        to: usize,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
        generation: u32,
        timer: Timer<Id>,
    },
    Join {
        node: usize,
        generation: u32,
    },
}

/// Datagrams and bytes one member sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes (UDP payload).
    pub bytes: u64,
}

/// The simulated cluster.
pub struct Sim {
    base: Instant,
    now: Duration,
    nodes: Vec<Option<Gossip>>,
    generation: Vec<u32>,
    names: Vec<String>,
    addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    known: BTreeMap<String, SocketAddr>,
    events: BTreeMap<(Duration, u64), Event>,
    seq: u64,
    rng: SmallRng,
    /// One-way delivery time.
    pub latency: Duration,
    /// Fraction of datagrams lost (0.0–1.0).
    pub loss: f64,
    /// How often each member calls [`Gossip::join`].
    pub join_interval: Duration,
    /// How long without contact before a view falls back to the API's list.
    pub fallback_after: Duration,
    traffic: Vec<Traffic>,
}

impl Sim {
    /// `n` members `node-0`, `node-1`, … all known to each other (as the API
    /// server would list them), each told so at time 0.
    pub fn new(n: usize, seed: u64) -> Sim {
        let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| {
                let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
                SocketAddr::new(ip.into(), 7946)
            })
            .collect();
        let known = names.iter().cloned().zip(addrs.iter().copied()).collect();
        let mut sim = Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            nodes: (0..n).map(|_| None).collect(),
            generation: vec![0; n],
            by_addr: addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect(),
            names,
            addrs,
            known,
            events: BTreeMap::new(),
            seq: 0,
            rng: SmallRng::seed_from_u64(seed),
            latency: Duration::from_micros(200),
            loss: 0.0,
            join_interval: Duration::from_secs(5),
            fallback_after: Duration::from_secs(10),
            traffic: vec![Traffic::default(); n],
        };
        for i in 0..n {
            sim.start(i, BOOT_EPOCH);
        }
        sim
    }

    fn start(&mut self, i: usize, boot: u64) {
        let id = Id::new(self.names[i].clone(), self.addrs[i], boot);
        let seed = self.rng.random::<u64>();
        let mut g = Gossip::new(id, seed, DEFAULT_MAX_MEMBERS);
        let now = self.instant();
        let outs = g.set_known(self.known.clone(), now);
        self.nodes[i] = Some(g);
        self.generation[i] += 1;
        let generation = self.generation[i];
        // Spread the members' join rounds over the interval.
        let first = self.join_interval.mul_f64(self.rng.random::<f64>());
        self.push(
            first,
            Event::Join {
                node: i,
                generation,
            },
        );
        self.carry_out(i, outs);
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn push(&mut self, after: Duration, ev: Event) {
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), ev);
    }

    fn carry_out(&mut self, from: usize, outs: Vec<Output>) {
        let generation = self.generation[from];
        for o in outs {
            match o {
                Output::Send { to, data } => {
                    let t = &mut self.traffic[from];
                    t.datagrams += 1;
                    t.bytes += data.len() as u64;
                    if let Some(&to) = self.by_addr.get(&to) {
                        self.push(self.latency, Event::Deliver { to, data });
                    }
                }
                Output::Timer { after, timer } => self.push(
                    after,
                    Event::Timer {
                        node: from,
                        generation,
                        timer,
                    },
                ),
            }
        }
    }

    /// Runs the network for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), ev) = entry.remove_entry();
            self.now = at;
            let now = self.instant();
            match ev {
                Event::Deliver { to, data } => {
                    // Lost on the way (decided at delivery, so a loss rate
                    // set now applies to datagrams already in flight).
                    if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
                        continue;
                    }
                    if let Some(g) = self.nodes[to].as_mut() {
                        let outs = g.handle_datagram(&data, now);
                        self.carry_out(to, outs);
                    }
                }
                Event::Timer {
                    node,
                    generation,
                    timer,
                } => {
                    if generation == self.generation[node]
                        && let Some(g) = self.nodes[node].as_mut()
                    {
                        let outs = g.handle_timer(timer, now);
                        self.carry_out(node, outs);
                    }
                }
                Event::Join { node, generation } => {
                    if generation == self.generation[node]
                        && let Some(g) = self.nodes[node].as_mut()
                    {
                        let outs = g.join(now);
                        self.carry_out(node, outs);
                        self.push(self.join_interval, Event::Join { node, generation });
                    }
                }
            }
        }
        self.now = end;
    }

    /// Runs until `done` holds (checked every `step`) or `limit` passes;
    /// returns the virtual time it took, or `None`.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if done(self) {
                return Some(self.now - start);
            }
            self.run_for(step);
        }
        done(self).then(|| self.now - start)
    }

    /// Stops member `i` at once (a SIGKILL): nothing more from or to it.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
        self.generation[i] += 1;
    }

    /// Starts member `i` again with a newer boot id.
    pub fn restart(&mut self, i: usize) {
        let boot = self.nodes[i]
            .as_ref()
            .map_or(BOOT_EPOCH, |g| g.identity().boot)
            .max(BOOT_EPOCH + self.now.as_micros() as u64)
            + 1;
        self.start(i, boot);
    }

    /// Member `i` leaves gracefully, then stops.
    pub fn leave(&mut self, i: usize) {
        let now = self.instant();
        if let Some(g) = self.nodes[i].as_mut() {
            let outs = g.leave(now);
            self.carry_out(i, outs);
        }
        self.kill(i);
    }

    /// Hands `data` to member `i` as if it came from the network now.
    pub fn inject(&mut self, i: usize, data: &[u8]) {
        let now = self.instant();
        if let Some(g) = self.nodes[i].as_mut() {
            let outs = g.handle_datagram(data, now);
            self.carry_out(i, outs);
        }
    }

    /// Member `i` (if running).
    pub fn member(&self, i: usize) -> Option<&Gossip> {
        self.nodes[i].as_ref()
    }

    /// Member `i`'s view now (if running).
    pub fn view(&self, i: usize) -> Option<MemberView> {
        self.member(i)
            .map(|g| g.view(self.instant(), self.fallback_after))
    }

    /// Node name of member `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Number of members (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// What each member sent so far.
    pub fn traffic(&self) -> &[Traffic] {
        &self.traffic
    }

    /// Forgets the traffic counted so far.
    pub fn reset_traffic(&mut self) {
        self.traffic
            .iter_mut()
            .for_each(|t| *t = Traffic::default());
    }
}
