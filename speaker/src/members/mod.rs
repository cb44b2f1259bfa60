//! Which speakers are alive, within about two seconds: SWIM gossip between
//! the speakers (the [`foca`] crate, sans-IO) over UDP port 7946, seeded and
//! backed up by the API server's list of ready speaker pods.
//!
//! Layer 2 needs this because a Node's Ready condition takes ~40 s to change
//! and an IP must move to another node within seconds of its owner's
//! speaker dying. As with MetalLB's memberlist, each speaker finds the
//! others from the API server (speaker pods by label, [`speakers`]), joins
//! them, and from then on the gossip says who is alive: [`MemberView`] with
//! [`ViewSource::Gossip`]. A speaker that reaches no other speaker (port
//! 7946 blocked, or it just started) uses the API server's list instead
//! ([`ViewSource::ApiFallback`]) so that every speaker still picks the same
//! owners ([`view::compute`] has the rule). Timings and their reasons:
//! [`tuning`].
//!
//! The pieces: [`identity`] (node name + address + boot id), [`codec`]
//! (foca's postcard format with every identity checked, and an optional
//! HMAC key), [`gossip`] (the member itself: no socket, no clock), [`view`]
//! (pure), [`sim`] (an in-memory network for tests and the benchmark), the
//! tokio shell here ([`Members`]: one UDP socket, foca's timers, the view as
//! a `watch` channel) and [`speakers`] (the watch of speaker pods that feeds
//! [`Members::set_known`]).
//!
//! **Trust.** foca has no authentication. Without a key, anyone who can send
//! UDP to port 7946 on a node can claim to be a speaker, declare others dead
//! (moving layer-2 IPs to itself or away from a node) or make a speaker send
//! datagrams to an address of its choice: the same trust as MetalLB's
//! memberlist without its secret key. With a key ([`MembersConfig::secret`],
//! from the `memberlist` Secret's `secretkey` as MetalLB's manifests create
//! it), every datagram carries an HMAC-SHA256 tag and untagged or mistagged
//! ones are dropped unread; the traffic is authenticated, not encrypted
//! (MetalLB's memberlist encrypts it with AES-GCM).
//!
//! It does not decide which node owns an IP (the layer-2 decision does, from
//! the view) and does not read or write anything in the API server but the
//! speaker pods it watches.

pub mod cli;
pub mod codec;
pub mod gossip;
pub mod identity;
pub mod metrics;
pub mod sim;
pub mod speakers;
pub mod tuning;
pub mod view;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use codec::Key;
pub use gossip::{Gossip, Output};
pub use identity::Id;
pub use view::{MemberView, ViewSource};

/// The gossip port (MetalLB's memberlist port).
pub const DEFAULT_PORT: u16 = 7946;

/// How a speaker takes part in the gossip.
#[derive(Debug, Clone)]
pub struct MembersConfig {
    /// This node's name (`spec.nodeName`).
    pub node_name: String,
    /// Where to receive gossip: the pod IP (= host IP under hostNetwork),
    /// port 7946. Other speakers reach this one at this address unless
    /// `advertise` says otherwise, so it must be a unicast address.
    pub bind: SocketAddr,
    /// The address other speakers send to, when not `bind` (e.g. when
    /// binding 0.0.0.0).
    pub advertise: Option<SocketAddr>,
    /// The shared key authenticating datagrams ([`Key`]); `None` accepts
    /// any well-formed datagram.
    pub secret: Option<Vec<u8>>,
    /// How long without reaching any other speaker before the view falls
    /// back to the API server's list (10 s).
    pub fallback_after: Duration,
    /// How often to announce to speakers the API server lists and the
    /// gossip does not hold alive (5 s).
    pub join_interval: Duration,
    /// Most members kept, in any state (5,000); datagrams that would add
    /// more are dropped.
    pub max_members: usize,
}

impl MembersConfig {
    /// The defaults for `node_name` gossiping at `bind`.
    pub fn new(node_name: impl Into<String>, bind: SocketAddr) -> MembersConfig {
        MembersConfig {
            node_name: node_name.into(),
            bind,
            advertise: None,
            secret: None,
            fallback_after: Duration::from_secs(10),
            join_interval: Duration::from_secs(5),
            max_members: tuning::DEFAULT_MAX_MEMBERS,
        }
    }
}

/// Why [`Members::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    /// The node name is not a Kubernetes node name.
    #[error("invalid node name {0:?}")]
    NodeName(String),
    /// The address others would send to is not a unicast address with a port.
    #[error("gossip address {0} cannot be reached by other speakers: use the pod IP")]
    Address(SocketAddr),
    /// The UDP socket could not be opened.
    #[error("bind gossip socket {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The gossip's metrics could not be registered.
    #[error("gossip metrics: {0}")]
    Metrics(ferrolb_ops::Error),
    /// Called outside a tokio runtime.
    #[error("Members::start must be called inside a tokio runtime")]
    NoRuntime,
}

/// Datagram counters (`/metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Bytes sent (UDP payload).
    pub sent_bytes: AtomicU64,
    /// Datagrams received (any).
    pub received: AtomicU64,
    /// Bytes received (UDP payload).
    pub received_bytes: AtomicU64,
    /// Datagrams dropped: bad tag, too large, undecodable, over the cap.
    pub dropped: AtomicU64,
}

enum Cmd {
    Leave(oneshot::Sender<()>),
}

/// A running member: one UDP socket and one task. Dropping it stops the task
/// (others notice within the detection time; [`Members::leave`] first to
/// tell them at once).
#[derive(Debug)]
pub struct Members {
    known: watch::Sender<Option<BTreeMap<String, SocketAddr>>>,
    view: watch::Receiver<MemberView>,
    cmd: mpsc::UnboundedSender<Cmd>,
    counters: Arc<Counters>,
    local_addr: SocketAddr,
    identity: Id,
    task: tokio::task::AbortHandle,
}

impl Drop for Members {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Members {
    /// Binds the socket and starts the member (inside a tokio runtime). It
    /// joins the others once [`Members::set_known`] names them.
    pub fn start(cfg: MembersConfig) -> Result<Members, MembersError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| MembersError::NoRuntime)?;
        if !identity::valid_node_name(&cfg.node_name) {
            return Err(MembersError::NodeName(cfg.node_name));
        }
        let bind_err = |source| MembersError::Bind {
            addr: cfg.bind,
            source,
        };
        let std_sock = std::net::UdpSocket::bind(cfg.bind).map_err(bind_err)?;
        std_sock.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = std_sock.local_addr().map_err(bind_err)?;
        let advertise = cfg.advertise.unwrap_or(local_addr);
        let id = Id::new(cfg.node_name.clone(), advertise, Id::boot_now());
        if !id.is_valid() {
            return Err(MembersError::Address(advertise));
        }
        let sock = {
            let _g = rt.enter();
            UdpSocket::from_std(std_sock).map_err(bind_err)?
        };
        let seed = id.boot ^ fnv(id.name.as_bytes());
        let gossip = Gossip::new(id.clone(), seed, cfg.max_members);
        let first = gossip.view(Instant::now().into_std(), cfg.fallback_after);
        let (view_tx, view_rx) = watch::channel(first);
        let (known_tx, known_rx) = watch::channel(None);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let shell = Shell {
            sock,
            key: cfg.secret.as_deref().map(Key::new),
            gossip,
            timers: BTreeMap::new(),
            seq: 0,
            counters: counters.clone(),
            view: view_tx,
            fallback_after: cfg.fallback_after,
            join_interval: cfg.join_interval,
        };
        info!(me = ?id, authenticated = cfg.secret.is_some(), "gossip started");
        let task = rt.spawn(shell.run(known_rx, cmd_rx)).abort_handle();
        Ok(Members {
            known: known_tx,
            view: view_rx,
            cmd: cmd_tx,
            counters,
            local_addr,
            identity: id,
            task,
        })
    }

    /// Speakers known from the API server (node name → its gossip address),
    /// e.g. ready speaker pods: used to join and as the fallback view. Call
    /// it with the whole list whenever it changes.
    pub fn set_known(&self, speakers: BTreeMap<String, SocketAddr>) {
        set_if_changed(&self.known, speakers);
    }

    /// A handle that sets the known speakers from another task (the pod
    /// watch, [`speakers::watch`]).
    pub fn known_sink(&self) -> KnownSink {
        KnownSink(self.known.clone())
    }

    /// Whether [`Members::set_known`] was called (the API server's list was
    /// read at least once).
    pub fn seeded(&self) -> bool {
        self.known.borrow().is_some()
    }

    /// Returns once [`Members::set_known`] was called. Until then the view
    /// holds this node only: do not act on it before (this node would
    /// think it is the only speaker).
    pub async fn wait_seeded(&self) {
        let mut rx = self.known.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// Which speakers are alive; changes are pushed as they happen. Until
    /// the first [`Members::set_known`] it holds only this node (see
    /// [`Members::wait_seeded`]).
    pub fn view(&self) -> watch::Receiver<MemberView> {
        self.view.clone()
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This speaker's identity at start.
    pub fn identity(&self) -> &Id {
        &self.identity
    }

    /// Datagram counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Tells the other speakers this one is leaving (graceful shutdown, or
    /// layer 2 unusable on this node), so they drop it at once rather than
    /// after the detection time, and stops gossiping for good. Returns when
    /// the datagrams are sent (or after one second).
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Leave(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }
}

fn set_if_changed(
    tx: &watch::Sender<Option<BTreeMap<String, SocketAddr>>>,
    v: BTreeMap<String, SocketAddr>,
) {
    tx.send_if_modified(|k| {
        if k.as_ref() == Some(&v) {
            false
        } else {
            *k = Some(v);
            true
        }
    });
}

/// Sets the speakers a [`Members`] knows from the API server (see
/// [`Members::set_known`]); cheap to clone and `'static`.
#[derive(Debug, Clone)]
pub struct KnownSink(watch::Sender<Option<BTreeMap<String, SocketAddr>>>);

impl KnownSink {
    /// As [`Members::set_known`].
    pub fn set_known(&self, speakers: BTreeMap<String, SocketAddr>) {
        set_if_changed(&self.0, speakers);
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, c| {
        (h ^ u64::from(*c)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The I/O shell around [`Gossip`].
struct Shell {
    sock: UdpSocket,
    key: Option<Key>,
    gossip: Gossip,
    /// foca's timers by deadline, then submission order.
    timers: BTreeMap<(Instant, u64), foca::Timer<Id>>,
    seq: u64,
    counters: Arc<Counters>,
    view: watch::Sender<MemberView>,
    fallback_after: Duration,
    join_interval: Duration,
}

impl Shell {
    async fn run(
        mut self,
        mut known: watch::Receiver<Option<BTreeMap<String, SocketAddr>>>,
        mut cmd: mpsc::UnboundedReceiver<Cmd>,
    ) {
        let mut buf = vec![0u8; tuning::MAX_PACKET + codec::TAG_LEN + 1];
        // Re-evaluates the view (the fallback is a matter of time) and
        // announces to missing speakers every `join_interval`.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_join = Instant::now() + self.join_interval;
        let mut known_open = true;
        loop {
            let next_timer = self.timers.first_key_value().map(|((at, _), _)| *at);
            let outs = tokio::select! {
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, _from)) => self.datagram(&buf[..n]),
                    Err(e) => {
                        // ICMP errors surface here on some systems; harmless.
                        debug!(error = %e, "gossip recv");
                        Vec::new()
                    }
                },
                _ = sleep_until_opt(next_timer) => self.due_timers(),
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now >= next_join {
                        next_join = now + self.join_interval;
                        self.gossip.join(now.into_std())
                    } else {
                        Vec::new()
                    }
                }
                r = known.changed(), if known_open => {
                    if r.is_err() {
                        known_open = false;
                        Vec::new()
                    } else {
                        let k = known.borrow_and_update().clone();
                        match k {
                            Some(k) => self.gossip.set_known(k, Instant::now().into_std()),
                            None => Vec::new(),
                        }
                    }
                }
                c = cmd.recv() => match c {
                    Some(Cmd::Leave(done)) => {
                        let outs = self.gossip.leave(Instant::now().into_std());
                        self.carry_out(outs).await;
                        let _ = done.send(());
                        // For good: answering probes or announcing again
                        // would bring this member back into the others' views.
                        return;
                    }
                    None => Vec::new(),
                },
            };
            self.carry_out(outs).await;
            let v = self
                .gossip
                .view(Instant::now().into_std(), self.fallback_after);
            self.view.send_if_modified(|old| {
                if *old == v {
                    return false;
                }
                if old.source != v.source {
                    match v.source {
                        ViewSource::ApiFallback => warn!(
                            after = ?self.fallback_after,
                            "no other speaker reachable over the gossip: using the API server's list of speakers"
                        ),
                        ViewSource::Gossip => info!("speakers reachable: using the gossip's view"),
                    }
                }
                info!(alive = ?v.alive, source = v.source.as_str(), "live speakers");
                *old = v;
                true
            });
        }
    }

    fn datagram(&mut self, d: &[u8]) -> Vec<Output> {
        let c = &self.counters;
        c.received.fetch_add(1, Ordering::Relaxed);
        c.received_bytes
            .fetch_add(d.len() as u64, Ordering::Relaxed);
        let payload = match &self.key {
            Some(k) => k.open(d),
            None => Some(d),
        };
        let Some(payload) = payload else {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        };
        let before = self.gossip.stats().dropped;
        let outs = self
            .gossip
            .handle_datagram(payload, Instant::now().into_std());
        let dropped = self.gossip.stats().dropped - before;
        c.dropped.fetch_add(dropped, Ordering::Relaxed);
        outs
    }

    fn due_timers(&mut self) -> Vec<Output> {
        let now = Instant::now();
        let mut outs = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            outs.extend(self.gossip.handle_timer(timer, now.into_std()));
        }
        outs
    }

    async fn carry_out(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Send { to, mut data } => {
                    if let Some(k) = &self.key {
                        k.seal(&mut data);
                    }
                    match self.sock.send_to(&data, to).await {
                        Ok(n) => {
                            self.counters.sent.fetch_add(1, Ordering::Relaxed);
                            self.counters
                                .sent_bytes
                                .fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) => debug!(%to, error = %e, "gossip send"),
                    }
                }
                Output::Timer { after, timer } => {
                    self.seq += 1;
                    self.timers
                        .insert((Instant::now() + after, self.seq), timer);
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
