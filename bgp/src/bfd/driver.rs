//! A thin tokio driver for BFD sessions (RFC 5881, single hop).
//!
//! A [`BfdEndpoint`] owns the shared listeners on UDP port 3784 (one IPv4, one
//! IPv6-only, opened when the first session of that family starts). Each
//! received datagram must arrive with TTL / hop limit 255 (GTSM, RFC 5881 §5;
//! read with `IP_RECVTTL` / `IPV6_RECVHOPLIMIT` through `recvmsg`), must pass
//! [`ControlPacket::decode`], and is handed to its session by Your
//! Discriminator, or by source address while Your Discriminator is 0.
//!
//! Each session ([`BfdSession`]) is one task with its own UDP socket bound to
//! a source port in 49152-65535 and sending with TTL / hop limit 255 to port
//! 3784. The task owns the clock: it turns [`Output::ArmTx`] /
//! [`Output::ArmDetect`] into deadlines and feeds their expiry back to the
//! [`Session`], which decides everything else. State changes are published on
//! a `watch` (current [`BfdStatus`]) and a `broadcast` of [`BfdEvent`]s (every
//! transition, for clients that must not miss a Down). Counters
//! ([`BfdCounters`]) back the `metallb_bfd_*` metrics.
//!
//! Dropping the handle stops the task without telling the peer (it detects the
//! silence); [`BfdSession::shutdown`] first sends AdminDown.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage, recvmsg, setsockopt, socket, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use super::packet::{
    CONTROL_PORT, ControlPacket, Diag, PacketError, SINGLE_HOP_TTL, SOURCE_PORT_MIN, State,
};
use super::session::{Input, Negotiated, Output, Session, SessionConfig};

/// Why a BFD session could not be started or configured.
#[derive(Debug, thiserror::Error)]
pub enum BfdError {
    /// Echo mode was asked for; it is not built.
    #[error("BFD echo mode is not supported")]
    EchoNotSupported,
    /// A minimum TTL other than 255: that is multi-hop BFD (RFC 5883), not built.
    #[error("minimum TTL {0} means multi-hop BFD, which is not supported (single hop uses 255)")]
    MultiHopNotSupported(u8),
    /// A parameter out of range.
    #[error("invalid BFD configuration: {0}")]
    InvalidConfig(&'static str),
    /// The local address is of another family than the peer's.
    #[error("local address {local} and peer {peer} are of different families")]
    FamilyMismatch {
        /// Configured local address.
        local: IpAddr,
        /// Peer address.
        peer: IpAddr,
    },
    /// A session for this peer already exists on this endpoint.
    #[error("a BFD session with {0} already exists")]
    Duplicate(IpAddr),
    /// A socket operation failed.
    #[error("BFD socket: {0}")]
    Io(#[from] io::Error),
}

/// One BFD session's configuration (MetalLB's BFD profile fields, plus addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdConfig {
    /// The peer's address (packets go to its port 3784).
    pub peer: IpAddr,
    /// Our source address (default: chosen by the kernel's routing).
    pub local: Option<IpAddr>,
    /// Desired Min TX interval once Up (MetalLB `transmitInterval`, default 300 ms).
    pub desired_min_tx: Duration,
    /// Required Min RX interval (MetalLB `receiveInterval`, default 300 ms).
    pub required_min_rx: Duration,
    /// Detect multiplier (MetalLB `detectMultiplier`, default 3).
    pub detect_mult: u8,
    /// Passive role: wait for the peer's first packet (MetalLB `passiveMode`).
    pub passive: bool,
    /// Echo mode (MetalLB `echoMode`): refused, not built.
    pub echo: bool,
    /// Minimum received TTL (MetalLB `minimumTtl`): only 255, single hop, is supported.
    pub minimum_ttl: u8,
}

impl BfdConfig {
    /// MetalLB's defaults for `peer`: 300 ms / 300 ms, ×3, active, single hop.
    pub fn new(peer: IpAddr) -> BfdConfig {
        BfdConfig {
            peer,
            local: None,
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
            echo: false,
            minimum_ttl: SINGLE_HOP_TTL,
        }
    }

    /// Checks what this implementation can do with the configuration.
    pub fn validate(&self) -> Result<(), BfdError> {
        if self.echo {
            return Err(BfdError::EchoNotSupported);
        }
        if self.minimum_ttl != SINGLE_HOP_TTL {
            return Err(BfdError::MultiHopNotSupported(self.minimum_ttl));
        }
        if self.detect_mult == 0 {
            return Err(BfdError::InvalidConfig(
                "detect multiplier must be at least 1",
            ));
        }
        if self.desired_min_tx.is_zero() || self.required_min_rx.is_zero() {
            return Err(BfdError::InvalidConfig("intervals must be positive"));
        }
        if self.desired_min_tx.as_micros() > u128::from(u32::MAX)
            || self.required_min_rx.as_micros() > u128::from(u32::MAX)
        {
            return Err(BfdError::InvalidConfig(
                "intervals must fit in 32 bits of microseconds",
            ));
        }
        if let Some(local) = self.local
            && local.is_ipv4() != self.peer.is_ipv4()
        {
            return Err(BfdError::FamilyMismatch {
                local,
                peer: self.peer,
            });
        }
        Ok(())
    }
}

/// The session as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdStatus {
    /// Local state.
    pub state: State,
    /// The peer's state as last heard.
    pub remote_state: State,
    /// Local diagnostic (why we last left Up).
    pub diag: Diag,
    /// The last transition to Down was the peer going AdminDown on purpose
    /// (RFC 5882 §3.2: not a failure; a client keeps its session).
    pub remote_admin_down: bool,
    /// Our discriminator.
    pub local_discr: u32,
    /// The peer's discriminator (0 when not heard).
    pub remote_discr: u32,
    /// Timers in effect.
    pub negotiated: Negotiated,
}

/// One state transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdEvent {
    /// The peer.
    pub peer: IpAddr,
    /// Previous state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Local diagnostic after the change.
    pub diag: Diag,
    /// The peer signalled AdminDown (not a path failure; see [`BfdStatus::remote_admin_down`]).
    pub remote_admin_down: bool,
}

impl BfdEvent {
    /// A Down a client (BGP) should act on: a transition from Up to Down that is not
    /// the peer's administrative decision (RFC 5882 §3.2), nor ours.
    pub fn is_failure(&self) -> bool {
        self.from == State::Up && self.to == State::Down && !self.remote_admin_down
    }
}

/// Packet and transition counters for one session (MetalLB's `metallb_bfd_*` metrics).
#[derive(Debug, Default)]
pub struct BfdCounters {
    /// Control packets accepted for this session (`metallb_bfd_control_packet_input`).
    pub control_packet_input: AtomicU64,
    /// Control packets sent (`metallb_bfd_control_packet_output`).
    pub control_packet_output: AtomicU64,
    /// Transitions to Up (`metallb_bfd_session_up_events`).
    pub session_up_events: AtomicU64,
    /// Transitions from Up to Down or AdminDown (`metallb_bfd_session_down_events`).
    pub session_down_events: AtomicU64,
}

/// Counters of datagrams the endpoint's listeners dropped before any session saw them.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// Arrived with a TTL / hop limit other than 255 (GTSM).
    pub bad_ttl: AtomicU64,
    /// Failed [`ControlPacket::decode`] (including authentication present).
    pub malformed: AtomicU64,
    /// Matched no session.
    pub no_session: AtomicU64,
}

#[derive(Default)]
struct Registry {
    by_discr: HashMap<u32, mpsc::Sender<ControlPacket>>,
    by_peer: HashMap<IpAddr, u32>,
}

/// The IPv4 and IPv6 listener tasks, when started.
type ListenerTasks = (
    Option<tokio::task::JoinHandle<()>>,
    Option<tokio::task::JoinHandle<()>>,
);

struct Shared {
    registry: Mutex<Registry>,
    next_discr: AtomicU32,
    counters: ListenerCounters,
    /// The IPv4 and IPv6 listener tasks.
    listeners: Mutex<ListenerTasks>,
}

/// The shared port-3784 listeners and the table of sessions. Create one per
/// process (per network namespace) inside a tokio runtime; dropping it stops
/// the listeners.
#[derive(Clone)]
pub struct BfdEndpoint {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BfdEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BfdEndpoint").finish_non_exhaustive()
    }
}

impl Default for BfdEndpoint {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Ok(l) = self.listeners.get_mut() {
            for h in [l.0.take(), l.1.take()].into_iter().flatten() {
                h.abort();
            }
        }
    }
}

impl BfdEndpoint {
    /// An endpoint with no sockets yet (listeners open with the first session of each family).
    pub fn new() -> BfdEndpoint {
        // Discriminators start at a random point so a restarted process does not
        // reuse the previous one's values (RFC 5880 §6.3 asks for uniqueness).
        let start = rand::random::<u32>() | 1;
        BfdEndpoint {
            shared: Arc::new(Shared {
                registry: Mutex::new(Registry::default()),
                next_discr: AtomicU32::new(start),
                counters: ListenerCounters::default(),
                listeners: Mutex::new((None, None)),
            }),
        }
    }

    /// Datagrams the listeners dropped (bad TTL, malformed, unknown session).
    pub fn listener_counters(&self) -> &ListenerCounters {
        &self.shared.counters
    }

    fn ensure_listener(&self, v4: bool) -> Result<(), BfdError> {
        let mut l = self.shared.listeners.lock().expect("listener lock");
        let slot = if v4 { &mut l.0 } else { &mut l.1 };
        if slot.is_some() {
            return Ok(());
        }
        let sock = listener_socket(v4)?;
        let weak = Arc::downgrade(&self.shared);
        *slot = Some(tokio::spawn(listen(sock, weak)));
        Ok(())
    }

    /// Starts a session with `config.peer`. See [`BfdSession::spawn`].
    pub fn spawn(
        &self,
        config: BfdConfig,
    ) -> Result<(BfdSession, watch::Receiver<BfdStatus>), BfdError> {
        config.validate()?;
        self.ensure_listener(config.peer.is_ipv4())?;
        let socket = session_socket(config.peer, config.local)?;
        let (pkt_tx, pkt_rx) = mpsc::channel(64);
        let local_discr = {
            let mut reg = self.shared.registry.lock().expect("registry lock");
            if reg.by_peer.contains_key(&config.peer) {
                return Err(BfdError::Duplicate(config.peer));
            }
            let mut d;
            loop {
                d = self.shared.next_discr.fetch_add(1, Ordering::Relaxed);
                if d != 0 && !reg.by_discr.contains_key(&d) {
                    break;
                }
            }
            reg.by_discr.insert(d, pkt_tx);
            reg.by_peer.insert(config.peer, d);
            d
        };
        let session = Session::new(SessionConfig {
            local_discr,
            desired_min_tx: config.desired_min_tx,
            required_min_rx: config.required_min_rx,
            detect_mult: config.detect_mult,
            passive: config.passive,
            seed: rand::random::<u64>() | 1,
        });
        let status = status_of(&session, false);
        let (status_tx, status_rx) = watch::channel(status);
        let (events_tx, _) = broadcast::channel(64);
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let counters = Arc::new(BfdCounters::default());
        let task = SessionTask {
            peer: config.peer,
            session,
            socket,
            pkt_rx,
            cmd_rx,
            status_tx,
            events_tx: events_tx.clone(),
            counters: counters.clone(),
            shared: self.shared.clone(),
            tx_at: None,
            detect_at: None,
        };
        let span = tracing::info_span!("bfd", peer = %config.peer, discr = local_discr);
        let join = tokio::spawn(task.run().instrument(span));
        Ok((
            BfdSession {
                peer: config.peer,
                local_discr,
                cmd_tx,
                events_tx,
                counters,
                join: Some(join),
            },
            status_rx,
        ))
    }
}

enum Command {
    Input(Input),
    Shutdown,
}

/// Handle of a running session. Dropping it stops the session without a word to
/// the peer; [`BfdSession::shutdown`] sends AdminDown first.
#[derive(Debug)]
pub struct BfdSession {
    peer: IpAddr,
    local_discr: u32,
    cmd_tx: mpsc::Sender<Command>,
    events_tx: broadcast::Sender<BfdEvent>,
    counters: Arc<BfdCounters>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl BfdSession {
    /// Starts a session on `endpoint` (validating `config`: echo and multi-hop are
    /// refused). Returns the handle and a `watch` of the session's status.
    pub fn spawn(
        endpoint: &BfdEndpoint,
        config: BfdConfig,
    ) -> Result<(BfdSession, watch::Receiver<BfdStatus>), BfdError> {
        endpoint.spawn(config)
    }

    /// The peer.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Our discriminator.
    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    /// Every state transition from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BfdEvent> {
        self.events_tx.subscribe()
    }

    /// The session's counters.
    pub fn counters(&self) -> Arc<BfdCounters> {
        self.counters.clone()
    }

    /// New timer values (announced with a Poll Sequence when Up). A detect multiplier
    /// of 0 keeps the current one.
    pub async fn set_timers(
        &self,
        desired_min_tx: Duration,
        required_min_rx: Duration,
        detect_mult: u8,
    ) {
        let _ = self
            .cmd_tx
            .send(Command::Input(Input::SetTimers {
                desired_min_tx,
                required_min_rx,
                detect_mult,
            }))
            .await;
    }

    /// Holds the session AdminDown (the peer is told, with Diag 7).
    pub async fn admin_down(&self) {
        let _ = self.cmd_tx.send(Command::Input(Input::AdminDown)).await;
    }

    /// Leaves AdminDown.
    pub async fn admin_up(&self) {
        let _ = self.cmd_tx.send(Command::Input(Input::AdminUp)).await;
    }

    /// Sends AdminDown to the peer, then stops the session and frees its socket.
    pub async fn shutdown(mut self) {
        let _ = self.cmd_tx.send(Command::Shutdown).await;
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

impl Drop for BfdSession {
    fn drop(&mut self) {
        if let Some(j) = self.join.take() {
            j.abort();
        }
    }
}

fn status_of(s: &Session, remote_admin_down: bool) -> BfdStatus {
    BfdStatus {
        state: s.state(),
        remote_state: s.remote_state(),
        diag: s.diag(),
        remote_admin_down,
        local_discr: s.local_discr(),
        remote_discr: s.remote_discr(),
        negotiated: s.negotiated(),
    }
}

struct SessionTask {
    peer: IpAddr,
    session: Session,
    socket: UdpSocket,
    pkt_rx: mpsc::Receiver<ControlPacket>,
    cmd_rx: mpsc::Receiver<Command>,
    status_tx: watch::Sender<BfdStatus>,
    events_tx: broadcast::Sender<BfdEvent>,
    counters: Arc<BfdCounters>,
    shared: Arc<Shared>,
    tx_at: Option<Instant>,
    detect_at: Option<Instant>,
}

impl SessionTask {
    async fn run(mut self) {
        let out = self.session.handle(Input::Start);
        self.apply(out).await;
        loop {
            let input = tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Input(i)) => i,
                    Some(Command::Shutdown) => {
                        let out = self.session.handle(Input::AdminDown);
                        self.apply(out).await;
                        break;
                    }
                    None => break,
                },
                Some(p) = self.pkt_rx.recv() => {
                    self.counters.control_packet_input.fetch_add(1, Ordering::Relaxed);
                    Input::Received(p)
                }
                _ = sleep_until(self.tx_at) => { self.tx_at = None; Input::TxTimer }
                _ = sleep_until(self.detect_at) => { self.detect_at = None; Input::DetectTimer }
            };
            let out = self.session.handle(input);
            self.apply(out).await;
        }
        let mut reg = self.shared.registry.lock().expect("registry lock");
        reg.by_discr.remove(&self.session.local_discr());
        reg.by_peer.remove(&self.peer);
    }

    async fn apply(&mut self, out: Vec<Output>) {
        let mut remote_admin_down = self.status_tx.borrow().remote_admin_down;
        for o in out {
            match o {
                Output::Send(p) => {
                    let dst = SocketAddr::new(self.peer, CONTROL_PORT);
                    match self.socket.send_to(&p.encode(), dst).await {
                        Ok(_) => {
                            self.counters
                                .control_packet_output
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => debug!(error = %e, "send failed"),
                    }
                }
                Output::ArmTx(d) => self.tx_at = Some(Instant::now() + d),
                Output::CancelTx => self.tx_at = None,
                Output::ArmDetect(d) => self.detect_at = Some(Instant::now() + d),
                Output::CancelDetect => self.detect_at = None,
                Output::StateChanged {
                    from,
                    to,
                    diag,
                    remote_admin_down: rad,
                } => {
                    remote_admin_down = rad;
                    if to == State::Up {
                        self.counters
                            .session_up_events
                            .fetch_add(1, Ordering::Relaxed);
                    } else if from == State::Up {
                        self.counters
                            .session_down_events
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if from == State::Up || to == State::Up {
                        info!(%from, %to, %diag, remote_admin_down = rad, "BFD session state");
                    } else {
                        debug!(%from, %to, %diag, "BFD session state");
                    }
                    let _ = self.events_tx.send(BfdEvent {
                        peer: self.peer,
                        from,
                        to,
                        diag,
                        remote_admin_down: rad,
                    });
                }
            }
        }
        let status = status_of(&self.session, remote_admin_down);
        self.status_tx.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A non-blocking UDP socket of `addr`'s family, IPv6-only for IPv6, bound to `addr`.
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match addr {
        SocketAddr::V4(a) => {
            setsockopt(&fd, sockopt::Ipv4Ttl, &i32::from(SINGLE_HOP_TTL))?;
            nix::sys::socket::bind(fd.as_raw_fd(), &SockaddrIn::from(a))?;
        }
        SocketAddr::V6(a) => {
            setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
            setsockopt(&fd, sockopt::Ipv6Ttl, &i32::from(SINGLE_HOP_TTL))?;
            nix::sys::socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?;
        }
    }
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// The shared listener: port 3784 on all addresses, reporting each datagram's TTL / hop limit.
fn listener_socket(v4: bool) -> io::Result<UdpSocket> {
    let any: IpAddr = if v4 {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let sock = udp_socket(SocketAddr::new(any, CONTROL_PORT))?;
    if v4 {
        setsockopt(&sock.as_fd(), sockopt::Ipv4RecvTtl, &true)?;
    } else {
        setsockopt(&sock.as_fd(), sockopt::Ipv6RecvHopLimit, &true)?;
    }
    Ok(sock)
}

/// A session's sending socket: source port in 49152-65535 (RFC 5881 §4), TTL 255.
fn session_socket(peer: IpAddr, local: Option<IpAddr>) -> Result<UdpSocket, BfdError> {
    let ip = local.unwrap_or(match peer {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    });
    let span = u32::from(u16::MAX - SOURCE_PORT_MIN) + 1;
    let first = rand::random::<u32>() % span;
    let mut last = None;
    // Walk the range from a random start until a port is free.
    for i in 0..span.min(512) {
        let port = SOURCE_PORT_MIN + ((first + i) % span) as u16;
        match udp_socket(SocketAddr::new(ip, port)) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse))
        .into())
}

/// One datagram with its source and received TTL / hop limit.
fn recv_with_ttl(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::c_int, libc::c_int);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let mut ttl = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).ok(),
            ControlMessageOwned::Ipv6HopLimit(h) => ttl = u8::try_from(h).ok(),
            _ => {}
        }
    }
    let src = msg
        .address
        .and_then(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()))
            } else {
                a.as_sockaddr_in6()
                    .map(|v6| SocketAddr::new(IpAddr::V6(v6.ip()), v6.port()))
            }
        })
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    Ok((msg.bytes, src, ttl))
}

async fn listen(sock: UdpSocket, shared: std::sync::Weak<Shared>) {
    let mut buf = [0u8; 512];
    loop {
        let r = sock
            .async_io(Interest::READABLE, || recv_with_ttl(&sock, &mut buf))
            .await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (len, src, ttl) = match r {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "BFD listener receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if ttl != Some(SINGLE_HOP_TTL) {
            shared.counters.bad_ttl.fetch_add(1, Ordering::Relaxed);
            debug!(%src, ?ttl, "BFD packet dropped: TTL is not 255 (GTSM)");
            continue;
        }
        let p = match ControlPacket::decode(&buf[..len.min(buf.len())]) {
            Ok(p) => p,
            Err(e) => {
                shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
                if e == PacketError::AuthenticationNotSupported {
                    warn!(%src, "BFD packet dropped: peer uses authentication, which is not supported");
                } else {
                    debug!(%src, error = %e, "BFD packet dropped");
                }
                continue;
            }
        };
        let target = {
            let reg = shared.registry.lock().expect("registry lock");
            let discr = if p.your_discr != 0 {
                Some(p.your_discr)
            } else {
                reg.by_peer.get(&src.ip()).copied()
            };
            discr.and_then(|d| reg.by_discr.get(&d).cloned())
        };
        match target {
            Some(tx) => {
                // A full queue means the session is far behind; dropping is what UDP would do.
                let _ = tx.try_send(p);
            }
            None => {
                shared.counters.no_session.fetch_add(1, Ordering::Relaxed);
                debug!(%src, your_discr = p.your_discr, "BFD packet for no session");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let ok = BfdConfig::new("198.18.0.2".parse().unwrap());
        assert!(ok.validate().is_ok());
        let with = |f: fn(&mut BfdConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate()
        };
        assert!(matches!(
            with(|c| c.echo = true),
            Err(BfdError::EchoNotSupported)
        ));
        assert!(matches!(
            with(|c| c.minimum_ttl = 254),
            Err(BfdError::MultiHopNotSupported(254))
        ));
        assert!(matches!(
            with(|c| c.detect_mult = 0),
            Err(BfdError::InvalidConfig(_))
        ));
        assert!(matches!(
            with(|c| c.desired_min_tx = Duration::ZERO),
            Err(BfdError::InvalidConfig(_))
        ));
        assert!(matches!(
            with(|c| c.required_min_rx = Duration::from_secs(5000)),
            Err(BfdError::InvalidConfig(_))
        ));
        assert!(matches!(
            with(|c| c.local = Some("fd00::1".parse().unwrap())),
            Err(BfdError::FamilyMismatch { .. })
        ));
        assert!(with(|c| c.passive = true).is_ok());
    }

    #[test]
    fn only_an_unannounced_down_from_up_is_a_failure() {
        let e = BfdEvent {
            peer: "198.18.0.2".parse().unwrap(),
            from: State::Up,
            to: State::Down,
            diag: Diag::ControlDetectionTimeExpired,
            remote_admin_down: false,
        };
        assert!(e.is_failure());
        assert!(
            !BfdEvent {
                remote_admin_down: true,
                diag: Diag::NeighborSignaledSessionDown,
                ..e
            }
            .is_failure()
        );
        assert!(
            !BfdEvent {
                from: State::Init,
                ..e
            }
            .is_failure()
        );
        assert!(
            !BfdEvent {
                to: State::AdminDown,
                diag: Diag::AdministrativelyDown,
                ..e
            }
            .is_failure()
        );
    }
}
