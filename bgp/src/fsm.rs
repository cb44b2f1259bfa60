//! Sans-IO BGP-4 session state machine (RFC 4271 §8).
//!
//! [`Session::handle`] takes one [`Input`] (an administrative command, a TCP
//! event, a decoded message or a timer expiry) and returns the [`Output`]s
//! the driver must carry out, in order: connect, send, close, arm or cancel a
//! timer, and report `Established` / `Down`. The session never touches a
//! socket and never reads a clock; timers are outputs and their expiry is an
//! input. Randomness (connect-retry jitter) comes from a small PRNG seeded
//! from [`SessionConfig::seed`], so a scripted test sees the same delays
//! every run.
//!
//! Up to two TCP connections to the peer may exist at once (one we opened,
//! one the peer opened); the driver names each with a [`ConnId`]. Connection
//! collisions are resolved as RFC 4271 §6.8 says (with RFC 6286 for equal
//! BGP Identifiers): the connection opened by the speaker with the higher BGP
//! Identifier survives, the other is closed with Cease / Connection
//! Collision Resolution (6/7). A connection that shows up while the session
//! is Established loses, except from a graceful-restarting peer (below).
//!
//! Graceful restart (RFC 4724) with the Notification extension (RFC 8538),
//! when [`SessionConfig::graceful_restart`] is set: the OPEN carries the
//! capability with the restart time, every configured family with the
//! Forwarding bit (the data plane is not ours and survives a restart), the N
//! bit, and the R bit while [`GracefulRestartConfig::restarting`] says this
//! process is a restart (until the first Established). When the peer set
//! the N bit too, the Cease subcodes RFC 8538 §5 lists
//! ([`Notification::wants_hard_reset`]) go out wrapped in a Hard Reset (6/9)
//! so the peer drops our routes, and [`Input::StopKeepRoutes`] ends the
//! session so that the peer keeps them as stale until we are back. As the
//! helper: an OPEN on a new connection while the session is Established on
//! another, from a peer that advertised graceful restart on both, replaces
//! the old connection (RFC 4724 §4.2) instead of losing to it. Without
//! graceful restart the OPEN carries no such capability.
//!
//! Peer oscillation damping (RFC 4271 §8.1.1): the connect-retry backoff
//! starts over only after the session stayed Established for
//! [`SessionConfig::stable_time`] ([`TimerKind::Stable`]), so a peer that
//! resets the session right after Established meets a growing delay.
//! An attempt that reaches no BGP speaker (TCP refused or timed out, or
//! closed before the peer's OPEN with no NOTIFICATION), and a session the
//! peer's operator ended (a Cease for administrative shutdown or reset,
//! de-configuration, configuration change or connection rejected, in any
//! state) are not oscillations: those retry on their own backoff, capped at
//! [`SessionConfig::unreachable_retry_max`] (5 s), so a router that comes
//! back after a reboot or a restart by hand is reconnected within seconds,
//! not after a delay that grew while it was down or restarting. The first
//! [`SessionConfig::unreachable_quick`] (30) of those retries do not grow at
//! all (1 s): a router briefly holding the peer Idle (gobgpd refuses a peer
//! for 5 s after the peer's Cease, 30 s after its operator's reset) is met
//! within a second of taking connections again, not up to 5 s later.
//!
//! What this module does not do: send routes (on [`Output::Established`] the
//! driver asks the Adj-RIB-Out for UPDATEs), keep a RIB-In, or damp route
//! flaps.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::{
    Capability, Family, GracefulRestart, Message, Negotiated, Notification, Open, Update,
    check_open, code, subcode,
};

/// Hold time used while waiting for the peer's OPEN (RFC 4271 §8.2.2: "a large value", 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// Identifies one TCP connection to the peer. Assigned by the driver; the
/// session only compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Who opened a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We connected to the peer (after an [`Output::Connect`]).
    Outbound,
    /// The peer connected to us.
    Inbound,
}

/// Session state as RFC 4271 §8.2.2 names it. With two connections at once
/// it is the state of the most advanced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Not started, or administratively stopped.
    Idle,
    /// An outbound TCP connection attempt is in progress.
    Connect,
    /// Waiting for the connect-retry timer, or (passive peers) for the peer to connect.
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Up: UPDATEs may flow.
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        };
        f.write_str(s)
    }
}

/// A timer the driver runs for the session. Arming an armed timer restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// ConnectRetryTimer: the delay before the next outbound attempt
    /// (Active), or the time allowed for the current one (Connect).
    ConnectRetry,
    /// HoldTimer of one connection.
    Hold(ConnId),
    /// KeepaliveTimer of one connection.
    Keepalive(ConnId),
    /// The Established session has stayed up for
    /// [`SessionConfig::stable_time`]: earlier failures are forgiven and the
    /// connect-retry backoff starts over from its first delay.
    Stable,
}

/// Something happened; the session decides what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // Message is UPDATE-sized; inputs are moved once.
pub enum Input {
    /// Event 1 ManualStart (or Event 4 ManualStart_with_PassiveTcpEstablishment for passive peers).
    Start,
    /// Event 2 ManualStop: a Cease NOTIFICATION with `subcode` (RFC 4486:
    /// [`subcode::ADMINISTRATIVE_SHUTDOWN`] 6/2, [`subcode::PEER_DECONFIGURED`]
    /// 6/3, [`subcode::OTHER_CONFIGURATION_CHANGE`] 6/6…), carrying
    /// `communication` as the RFC 9003 shutdown message when the subcode
    /// allows one (6/2 and 6/4).
    Stop {
        subcode: u8,
        communication: Option<String>,
    },
    /// Events 9-11: a timer armed with [`Output::ArmTimer`] expired.
    TimerExpired(TimerKind),
    /// Event 16 Tcp_CR_Acked (outbound) / Event 17 TcpConnectionConfirmed (inbound).
    Connected { conn: ConnId, direction: Direction },
    /// Event 18 TcpConnectionFails, for the outbound attempt started by [`Output::Connect`].
    ConnectFailed,
    /// Event 18 TcpConnectionFails, for an established TCP connection (read or write error, EOF).
    Closed { conn: ConnId },
    /// Events 19-27: a well-formed message arrived on `conn`.
    Message { conn: ConnId, message: Message },
    /// Events 21, 22, 28 (BGPHeaderErr, BGPOpenMsgErr, UpdateMsgErr): a
    /// message on `conn` could not be decoded; `notification` is what the
    /// codec maps the error to.
    Malformed {
        conn: ConnId,
        notification: Notification,
    },
    /// The BFD session with the peer failed (Up -> Down, not the peer's
    /// AdminDown; RFC 5882 §3.2). An Established session closes at once with
    /// Cease / BFD Down (6/10, RFC 9384) and reconnects after the usual
    /// connect-retry backoff; in any other state it is ignored.
    BfdDown,
    /// The owner closes the Established session with this NOTIFICATION (for
    /// example Cease / Maximum Number of Prefixes Reached, 6/1; wrapped in a
    /// Hard Reset as [`Session::closing_notification`] says) and the
    /// session reconnects after the usual connect-retry backoff; in any other
    /// state it is ignored.
    Reset(Notification),
    /// The driver could not write anything on `conn` for the send hold time
    /// while data was waiting (RFC 9687): the connection closes with Send
    /// Hold Timer Expired (8/0, best effort: the peer is not reading) in
    /// whatever state it is, and the session reconnects after its backoff.
    SendHoldExpired { conn: ConnId },
    /// Event 2 ManualStop of a restarting speaker (RFC 4724): stop so that a
    /// graceful-restart peer keeps our routes as stale. On each connection
    /// whose peer negotiated the N bit, Cease / Administrative Shutdown
    /// (6/2, not a Hard Reset, with `communication`); whose peer advertised
    /// graceful restart without N, no NOTIFICATION at all (a bare TCP close
    /// is what RFC 4724 treats as a restart); to a peer without graceful
    /// restart, 6/2 as [`Input::Stop`] (it drops the routes anyway).
    StopKeepRoutes { communication: Option<String> },
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Our hold timer expired (we sent 4/0).
    HoldTimerExpired,
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// We sent this NOTIFICATION (bad OPEN, FSM error, malformed message, ...).
    NotificationSent(Notification),
    /// The TCP connection closed or failed without a NOTIFICATION.
    ConnectionClosed,
    /// [`Input::Stop`]: we sent a Cease (Administrative Shutdown, Peer
    /// De-configured, Other Configuration Change…).
    AdminStop,
    /// The peer, graceful-restart capable, opened a new session while the
    /// old one was still Established here: it restarted (RFC 4724 §4.2).
    PeerRestarted,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::HoldTimerExpired => f.write_str("hold timer expired"),
            DownReason::NotificationReceived(n) => {
                write!(f, "notification received: {}", describe_notification(n))
            }
            DownReason::NotificationSent(n) => {
                write!(f, "notification sent: {}", describe_notification(n))
            }
            DownReason::ConnectionClosed => f.write_str("connection closed"),
            DownReason::AdminStop => f.write_str("administrative stop"),
            DownReason::PeerRestarted => f.write_str("peer restarted (new session)"),
        }
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Start an outbound TCP connection attempt, abandoning any attempt still
    /// in progress. Report the result with [`Input::Connected`] (direction
    /// Outbound) or [`Input::ConnectFailed`].
    Connect,
    /// Write this message on the connection.
    Send(ConnId, Message),
    /// Flush what was sent on the connection, then close it. The session has
    /// forgotten it: later events about it are ignored.
    Close(ConnId),
    /// (Re)start a timer; report its expiry with [`Input::TimerExpired`].
    ArmTimer(TimerKind, Duration),
    /// Stop a timer if it runs.
    CancelTimer(TimerKind),
    /// The session is Established on [`Session::established_conn`] with this context.
    Established(Negotiated),
    /// The session (Established or in OPEN exchange) went down.
    Down(DownReason),
    /// The peer asked for our routes of this family again (ROUTE-REFRESH).
    RouteRefreshRequested(Family),
    /// The peer sent an UPDATE (counted and logged; ferrolb installs nothing).
    UpdateReceived(Update),
}

/// Which AS a peer configured without a fixed one (`dynamicASN`) may announce
/// in its OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DynamicAs {
    /// The peer's AS must equal ours (iBGP).
    Internal,
    /// The peer's AS must differ from ours (eBGP).
    External,
}

impl DynamicAs {
    /// Does a peer announcing `peer_as` fit, when we are `local_as`?
    pub fn accepts(self, local_as: u32, peer_as: u32) -> bool {
        match self {
            DynamicAs::Internal => peer_as == local_as,
            DynamicAs::External => peer_as != local_as,
        }
    }
}

/// What one session is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    /// The AS the peer must announce (else 2/2). Ignored when `dynamic_peer_as` is set.
    pub peer_as: u32,
    /// Accept any peer AS of this kind instead of `peer_as` (else 2/2).
    pub dynamic_peer_as: Option<DynamicAs>,
    pub router_id: Ipv4Addr,
    /// Hold time we propose, seconds: 0 or >= 3.
    pub hold_time: u16,
    /// Keepalive interval, seconds; `None` (or 0) = a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    /// Never connect; wait for the peer to.
    pub passive: bool,
    /// Families to announce with the multiprotocol capability.
    pub families: Vec<Family>,
    /// First connect-retry delay; doubles on every failure up to `connect_retry_max`.
    pub connect_retry: Duration,
    /// Cap of the connect-retry delay.
    pub connect_retry_max: Duration,
    /// Cap of the delay after attempts that reached no BGP speaker (see the
    /// module docs); the first such delay is `connect_retry`, and the cap is
    /// never below it nor above `connect_retry_max`.
    pub unreachable_retry_max: Duration,
    /// How many retries after attempts that reached no BGP speaker wait only
    /// `connect_retry` before that delay starts doubling (to
    /// `unreachable_retry_max`).
    pub unreachable_quick: u32,
    /// How long an outbound TCP connection attempt may take.
    pub connect_timeout: Duration,
    /// How long a session must stay Established before the connect-retry
    /// backoff starts over (RFC 4271 §8.1.1 damping of peer oscillations): a
    /// peer that resets the session sooner, however many times, meets a
    /// growing delay before each reconnection.
    pub stable_time: Duration,
    /// Graceful restart (RFC 4724 / RFC 8538); `None`: no capability sent.
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// Offer the extended message capability (RFC 8654).
    pub extended_message: bool,
    /// Seed of the jitter PRNG.
    pub seed: u64,
}

impl SessionConfig {
    /// A configuration with the usual defaults: hold 90 s, keepalive hold/3,
    /// active, IPv4 unicast, first retry 1 s doubling to 60 s (to 5 s while
    /// the peer cannot be reached), connect timeout 10 s, backoff forgiven after 30 s Established, no graceful
    /// restart, no extended messages.
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        SessionConfig {
            local_as,
            peer_as,
            dynamic_peer_as: None,
            router_id,
            hold_time: 90,
            keepalive: None,
            passive: false,
            families: vec![Family::IPV4_UNICAST],
            connect_retry: Duration::from_secs(1),
            connect_retry_max: Duration::from_secs(60),
            unreachable_retry_max: Duration::from_secs(5),
            unreachable_quick: 30,
            connect_timeout: Duration::from_secs(10),
            stable_time: Duration::from_secs(30),
            graceful_restart: None,
            extended_message: false,
            seed: 0x5eed_f00d,
        }
    }

    /// Both sides in the same AS, as far as the configuration tells (a
    /// dynamic peer: by its kind; the AS actually negotiated is
    /// [`Session::peer_as`]).
    pub fn is_ibgp(&self) -> bool {
        match self.dynamic_peer_as {
            Some(d) => d == DynamicAs::Internal,
            None => self.local_as == self.peer_as,
        }
    }
}

/// Graceful restart as we do it (RFC 4724 §3 with RFC 8538's N bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart Time, seconds (12 bits; larger values are sent as 4095): how
    /// long the peer keeps our routes after the session drops before we are
    /// back.
    pub restart_time: u16,
    /// This process is a restart of one that had sessions with the peer: the
    /// R bit is set in OPENs until the session is first Established.
    pub restarting: bool,
}

impl GracefulRestartConfig {
    /// Restart time 120 s (RFC 4724's usual value; FRR's and GoBGP's default), not a restart.
    pub const DEFAULT_RESTART_TIME: u16 = 120;

    /// Graceful restart with `restart_time`, not a restart.
    pub fn new(restart_time: u16) -> Self {
        GracefulRestartConfig {
            restart_time,
            restarting: false,
        }
    }
}

/// Per-connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    OpenSent,
    OpenConfirm,
    Established,
}

impl ConnState {
    fn as_state(self) -> State {
        match self {
            ConnState::OpenSent => State::OpenSent,
            ConnState::OpenConfirm => State::OpenConfirm,
            ConnState::Established => State::Established,
        }
    }
}

#[derive(Debug, Clone)]
struct Conn {
    id: ConnId,
    direction: Direction,
    state: ConnState,
    /// Set once the peer's OPEN was accepted on this connection.
    peer: Option<PeerInfo>,
}

/// What the peer's OPEN told us on one connection.
#[derive(Debug, Clone)]
struct PeerInfo {
    router_id: Ipv4Addr,
    /// The AS the peer's OPEN announced (4-octet when it has the capability).
    asn: u32,
    negotiated: Negotiated,
    hold_time: u16,
    keepalive: u16,
    /// The peer's graceful restart capability, when it sent one.
    graceful_restart: Option<GracefulRestart>,
}

/// One BGP session with one peer. See the module docs.
#[derive(Debug, Clone)]
pub struct Session {
    cfg: SessionConfig,
    started: bool,
    /// An outbound attempt is in progress (we emitted Connect, no result yet).
    connecting: bool,
    conns: Vec<Conn>,
    /// The next connect-retry delay before jitter, after a session failure.
    retry_base: Duration,
    /// Retries after attempts that reached no BGP speaker, since one last
    /// answered (a peer's OPEN) or the session started: their delay follows
    /// from this count.
    unreachable_retries: u32,
    rng: u64,
    /// Capability codes the peer said it does not support (OPEN Message
    /// Error / Unsupported Capability, 2/7): left out of every later OPEN.
    unsupported_caps: Vec<u8>,
    /// The R bit of our OPENs: set from the configuration, cleared once Established.
    restarting: bool,
}

impl Session {
    /// A stopped (Idle) session; send [`Input::Start`] to bring it up.
    pub fn new(cfg: SessionConfig) -> Self {
        let rng = if cfg.seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            cfg.seed
        };
        Session {
            restarting: cfg.graceful_restart.is_some_and(|g| g.restarting),
            retry_base: cfg.connect_retry,
            unreachable_retries: 0,
            cfg,
            started: false,
            connecting: false,
            conns: Vec::new(),
            rng,
            unsupported_caps: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Current state (of the most advanced connection, if any).
    pub fn state(&self) -> State {
        if !self.started {
            return State::Idle;
        }
        if let Some(s) = self.conns.iter().map(|c| c.state.as_state()).max() {
            return s;
        }
        if self.connecting {
            State::Connect
        } else {
            State::Active
        }
    }

    /// The connection the session is Established on.
    pub fn established_conn(&self) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|c| c.state == ConnState::Established)
            .map(|c| c.id)
    }

    /// The negotiated context of `conn`, once the peer's OPEN was accepted on it.
    pub fn negotiated(&self, conn: ConnId) -> Option<&Negotiated> {
        self.conn(conn)?.peer.as_ref().map(|p| &p.negotiated)
    }

    /// Negotiated hold time and keepalive interval (seconds) of the Established connection.
    pub fn timers(&self) -> Option<(u16, u16)> {
        let c = self.conn(self.established_conn()?)?;
        c.peer.as_ref().map(|p| (p.hold_time, p.keepalive))
    }

    /// The AS the peer announced in its accepted OPEN on `conn`: the fixed
    /// `peer_as`, or for a dynamic peer whatever it chose. iBGP vs eBGP
    /// treatment of routes on that connection follows from it.
    pub fn peer_as(&self, conn: ConnId) -> Option<u32> {
        self.conn(conn)?.peer.as_ref().map(|p| p.asn)
    }

    /// The peer's BGP Identifier on the Established connection.
    pub fn peer_router_id(&self) -> Option<Ipv4Addr> {
        let c = self.conn(self.established_conn()?)?;
        c.peer.as_ref().map(|p| p.router_id)
    }

    /// The graceful restart capability the peer sent on `conn`, when both
    /// sides advertised one (we only look at it when ours is on).
    pub fn peer_graceful_restart(&self, conn: ConnId) -> Option<&GracefulRestart> {
        self.cfg.graceful_restart?;
        self.conn(conn)?.peer.as_ref()?.graceful_restart.as_ref()
    }

    /// Both sides set the N bit (RFC 8538) on `conn`: a NOTIFICATION other
    /// than Hard Reset leaves our routes at the peer as stale.
    pub fn notification_negotiated(&self, conn: ConnId) -> bool {
        self.peer_graceful_restart(conn)
            .is_some_and(|g| g.notification)
    }

    /// What to send on `conn` to close it with `n`: `n` itself, or a Hard
    /// Reset carrying it when the N bit was negotiated and RFC 8538 §5 says
    /// `n` should flush the routes.
    pub fn closing_notification(&self, conn: ConnId, n: Notification) -> Notification {
        if n.wants_hard_reset() && self.notification_negotiated(conn) {
            Notification::hard_reset(&n)
        } else {
            n
        }
    }

    /// Connections the session currently knows.
    pub fn conns(&self) -> Vec<ConnId> {
        self.conns.iter().map(|c| c.id).collect()
    }

    /// The OPEN this session sends.
    pub fn local_open(&self) -> Open {
        let mut caps: Vec<Capability> = self
            .cfg
            .families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        caps.push(Capability::RouteRefresh);
        if self.cfg.extended_message {
            caps.push(Capability::ExtendedMessage);
        }
        if let Some(g) = self.cfg.graceful_restart {
            caps.push(Capability::GracefulRestart(GracefulRestart {
                restart_state: self.restarting,
                notification: true,
                restart_time: g.restart_time.min(0x0fff),
                // Forwarding state preserved: routes point at kube-proxy's
                // data plane, which a speaker restart does not touch.
                families: self.cfg.families.iter().map(|f| (*f, true)).collect(),
            }));
        }
        caps.push(Capability::FourOctetAs(self.cfg.local_as));
        caps.push(Capability::EnhancedRouteRefresh);
        caps.retain(|c| !self.unsupported_caps.contains(&c.code()));
        Open::new(
            self.cfg.local_as,
            self.cfg.hold_time,
            self.cfg.router_id,
            caps,
        )
    }

    /// Feed one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            // Event 1: ManualStart / Event 4: ManualStart_with_PassiveTcpEstablishment
            Input::Start => {
                if !self.started {
                    self.started = true;
                    self.retry_base = self.cfg.connect_retry;
                    self.unreachable_retries = 0;
                    if !self.cfg.passive {
                        self.start_connect(&mut out);
                    }
                }
                // Event 1 in any other state is ignored.
            }
            // Event 2: ManualStop
            Input::Stop {
                subcode,
                communication,
            } => {
                if self.started {
                    let n = Notification::cease(subcode, communication.as_deref());
                    for id in self.conns() {
                        let n = self.closing_notification(id, n.clone());
                        out.push(Output::Send(id, Message::Notification(n)));
                        self.drop_conn(id, &mut out);
                    }
                    self.connecting = false;
                    out.push(Output::CancelTimer(TimerKind::ConnectRetry));
                    self.started = false;
                    out.push(Output::Down(DownReason::AdminStop));
                }
            }
            // Event 2 ManualStop, as the restarting speaker of RFC 4724: the
            // peer must keep our routes (stale) until we are back.
            Input::StopKeepRoutes { communication } => {
                if self.started {
                    for id in self.conns() {
                        // With the N bit (RFC 8538) any NOTIFICATION but Hard
                        // Reset keeps the routes; with RFC 4724 alone only a TCP
                        // close without one does. A peer without graceful
                        // restart drops them whatever we do: tell it why.
                        let notify = self
                            .peer_graceful_restart(id)
                            .is_none_or(|g| g.notification);
                        if notify {
                            let n = Notification::cease(
                                subcode::ADMINISTRATIVE_SHUTDOWN,
                                communication.as_deref(),
                            );
                            out.push(Output::Send(id, Message::Notification(n)));
                        }
                        self.drop_conn(id, &mut out);
                    }
                    self.connecting = false;
                    out.push(Output::CancelTimer(TimerKind::ConnectRetry));
                    self.started = false;
                    out.push(Output::Down(DownReason::AdminStop));
                }
            }
            Input::TimerExpired(kind) => self.on_timer(kind, &mut out),
            // Event 16: Tcp_CR_Acked / Event 17: TcpConnectionConfirmed
            Input::Connected { conn, direction } => self.on_connected(conn, direction, &mut out),
            // Event 18: TcpConnectionFails (the outbound attempt)
            Input::ConnectFailed => {
                if self.started && self.connecting {
                    self.connecting = false;
                    if self.conns.is_empty() {
                        // Connect -> Active; wait before the next attempt.
                        self.arm_retry(Retry::Unreachable, &mut out);
                    } else {
                        out.push(Output::CancelTimer(TimerKind::ConnectRetry));
                    }
                }
            }
            // Event 18: TcpConnectionFails (an established TCP connection)
            Input::Closed { conn } => {
                if self.conn(conn).is_some() {
                    self.fail_conn(conn, None, DownReason::ConnectionClosed, &mut out);
                }
            }
            Input::Message { conn, message } => {
                if self.conn(conn).is_some() {
                    self.on_message(conn, message, &mut out);
                }
            }
            // Events 21/22/28: BGPHeaderErr / BGPOpenMsgErr / UpdateMsgErr
            Input::Malformed { conn, notification } => {
                if self.conn(conn).is_some() {
                    self.fail_conn(
                        conn,
                        Some(notification.clone()),
                        DownReason::NotificationSent(notification),
                        &mut out,
                    );
                }
            }
            Input::BfdDown => {
                if let Some(id) = self.established_conn() {
                    let n = Notification::cease(subcode::BFD_DOWN, None);
                    self.fail_conn(
                        id,
                        Some(n.clone()),
                        DownReason::NotificationSent(n),
                        &mut out,
                    );
                }
            }
            Input::SendHoldExpired { conn } => {
                if self.conn(conn).is_some() {
                    let n = Notification::new(code::SEND_HOLD_TIMER_EXPIRED, subcode::UNSPECIFIC);
                    self.fail_conn(
                        conn,
                        Some(n.clone()),
                        DownReason::NotificationSent(n),
                        &mut out,
                    );
                }
            }
            Input::Reset(n) => {
                if let Some(id) = self.established_conn() {
                    let n = self.closing_notification(id, n);
                    self.fail_conn(
                        id,
                        Some(n.clone()),
                        DownReason::NotificationSent(n),
                        &mut out,
                    );
                }
            }
        }
        out
    }

    fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.iter().find(|c| c.id == id)
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }

    fn on_timer(&mut self, kind: TimerKind, out: &mut Vec<Output>) {
        if !self.started {
            return;
        }
        match kind {
            // Event 9: ConnectRetryTimer_Expires
            TimerKind::ConnectRetry => {
                if self.cfg.passive {
                    return;
                }
                if self.connecting {
                    // In Connect: the attempt took too long; drop it and try again
                    // if nothing else came up meanwhile.
                    self.connecting = false;
                    if self.conns.is_empty() {
                        self.start_connect(out);
                    }
                } else if self.conns.is_empty() {
                    // In Active: time for the next attempt.
                    self.start_connect(out);
                }
            }
            // Event 10: HoldTimer_Expires
            TimerKind::Hold(id) => {
                if self.conn(id).is_some() {
                    let n = Notification::new(code::HOLD_TIMER_EXPIRED, subcode::UNSPECIFIC);
                    self.fail_conn(id, Some(n), DownReason::HoldTimerExpired, out);
                }
            }
            // Left armed when the session goes down: it only forgives while
            // Established, and the next Established restarts it.
            TimerKind::Stable => {
                if self.established_conn().is_some() {
                    self.retry_base = self.cfg.connect_retry;
                }
            }
            // Event 11: KeepaliveTimer_Expires
            TimerKind::Keepalive(id) => {
                if let Some(c) = self.conn(id)
                    && let Some(p) = &c.peer
                    && p.keepalive > 0
                {
                    let ka = p.keepalive;
                    out.push(Output::Send(id, Message::Keepalive));
                    out.push(Output::ArmTimer(
                        TimerKind::Keepalive(id),
                        Duration::from_secs(ka.into()),
                    ));
                }
            }
        }
    }

    fn on_connected(&mut self, id: ConnId, direction: Direction, out: &mut Vec<Output>) {
        if !self.started || self.conn(id).is_some() {
            // Idle refuses connections (Events 16/17 in Idle); the peer
            // hears why (RFC 4486 §4: Cease / Connection Rejected).
            if direction == Direction::Inbound && self.conn(id).is_none() {
                out.push(Output::Send(
                    id,
                    Message::Notification(connection_rejected()),
                ));
            }
            out.push(Output::Close(id));
            return;
        }
        match direction {
            Direction::Outbound => {
                if !self.connecting {
                    // An attempt we gave up on finished late.
                    out.push(Output::Close(id));
                    return;
                }
                self.connecting = false;
            }
            Direction::Inbound => {
                // The peer reconnecting replaces its own previous, unfinished attempt.
                if let Some(old) = self
                    .conns
                    .iter()
                    .find(|c| {
                        c.direction == Direction::Inbound && c.state != ConnState::Established
                    })
                    .map(|c| c.id)
                {
                    self.drop_conn(old, out);
                }
            }
        }
        if self.conns.len() >= 2 {
            if direction == Direction::Inbound {
                out.push(Output::Send(
                    id,
                    Message::Notification(connection_rejected()),
                ));
            }
            out.push(Output::Close(id));
            return;
        }
        if !self.connecting && self.conns.is_empty() {
            // Active -> OpenSent: no retry needed any more.
            out.push(Output::CancelTimer(TimerKind::ConnectRetry));
        }
        // Connect/Active -> OpenSent: send OPEN, large hold timer.
        out.push(Output::Send(id, Message::Open(self.local_open())));
        out.push(Output::ArmTimer(TimerKind::Hold(id), OPEN_HOLD_TIME));
        self.conns.push(Conn {
            id,
            direction,
            state: ConnState::OpenSent,
            peer: None,
        });
    }

    fn on_message(&mut self, id: ConnId, message: Message, out: &mut Vec<Output>) {
        let Some(state) = self.conn(id).map(|c| c.state) else {
            return;
        };
        match (state, message) {
            // Events 24/25: NotifMsgVerErr / NotifMsg, any state
            (_, Message::Notification(n)) => {
                if (n.code, n.subcode) == (code::OPEN_MESSAGE, subcode::UNSUPPORTED_CAPABILITY) {
                    self.drop_capabilities(&n.data);
                }
                self.fail_conn(id, None, DownReason::NotificationReceived(n), out);
            }
            // Event 19: BGPOpen in OpenSent
            (ConnState::OpenSent, Message::Open(open)) => self.on_open(id, open, out),
            // Events 26/27 and ROUTE-REFRESH in OpenSent: Event 27/28 -> FSM error 5/1
            (ConnState::OpenSent, _) => {
                self.fsm_error(id, subcode::UNEXPECTED_IN_OPEN_SENT, out);
            }
            // Event 26: KeepAliveMsg in OpenConfirm -> Established
            (ConnState::OpenConfirm, Message::Keepalive) => {
                let Some(c) = self.conn_mut(id) else { return };
                c.state = ConnState::Established;
                let Some(p) = c.peer.clone() else { return };
                if p.hold_time > 0 {
                    out.push(Output::ArmTimer(
                        TimerKind::Hold(id),
                        Duration::from_secs(p.hold_time.into()),
                    ));
                }
                // The backoff starts over only once the session proved stable.
                out.push(Output::ArmTimer(TimerKind::Stable, self.cfg.stable_time));
                // Later OPENs (after a flap of this process's session) are no restart.
                self.restarting = false;
                out.push(Output::Established(p.negotiated));
            }
            // Events 19/27 and ROUTE-REFRESH in OpenConfirm: FSM error 5/2
            (ConnState::OpenConfirm, _) => {
                self.fsm_error(id, subcode::UNEXPECTED_IN_OPEN_CONFIRM, out);
            }
            // Event 26: KeepAliveMsg in Established
            (ConnState::Established, Message::Keepalive) => self.restart_hold(id, out),
            // Event 27: UpdateMsg in Established
            (ConnState::Established, Message::Update(u)) => {
                self.restart_hold(id, out);
                out.push(Output::UpdateReceived(u));
            }
            // ROUTE-REFRESH (RFC 2918) in Established
            (ConnState::Established, Message::RouteRefresh(rr)) => {
                self.restart_hold(id, out);
                let Some(p) = self.conn(id).and_then(|c| c.peer.as_ref()) else {
                    return;
                };
                // Subtypes 1/2 (BoRR/EoRR) frame the peer's own re-advertisement.
                if rr.subtype == 0
                    && p.negotiated.route_refresh
                    && p.negotiated.families.contains(&rr.family)
                {
                    out.push(Output::RouteRefreshRequested(rr.family));
                }
            }
            // Event 19: BGPOpen in Established: FSM error 5/3
            (ConnState::Established, Message::Open(_)) => {
                self.fsm_error(id, subcode::UNEXPECTED_IN_ESTABLISHED, out);
            }
        }
    }

    /// Event 19 BGPOpen on a connection in OpenSent.
    fn on_open(&mut self, id: ConnId, open: Open, out: &mut Vec<Output>) {
        // Event 22 BGPOpenMsgErr: the OPEN is well formed but unacceptable
        // (RFC 4271 §6.2: version 2/1, peer AS 2/2, hold time 2/6, identifier 2/3;
        // an identifier equal to ours only from an internal peer, RFC 6286 §2.2).
        // A dynamic peer may announce any AS of its kind (iBGP or eBGP).
        let expected = match self.cfg.dynamic_peer_as {
            None => Some(self.cfg.peer_as),
            Some(_) => None,
        };
        let checked =
            check_open(&open, expected, self.cfg.local_as, self.cfg.router_id).and_then(|()| {
                match self.cfg.dynamic_peer_as {
                    Some(d) if !d.accepts(self.cfg.local_as, open.asn()) => {
                        Err(Notification::new(code::OPEN_MESSAGE, subcode::BAD_PEER_AS))
                    }
                    _ => Ok(()),
                }
            });
        if let Err(n) = checked {
            self.fail_conn(id, Some(n.clone()), DownReason::NotificationSent(n), out);
            return;
        }
        // Collision detection (RFC 4271 §6.8): the peer's identifier is known now,
        // so look at the other connection whatever its state.
        if let Some(other) = self.conns.iter().find(|c| c.id != id).cloned() {
            let this_dir = self.conn(id).map(|c| c.direction);
            let peer_restarting = other.state == ConnState::Established
                && self.cfg.graceful_restart.is_some()
                && other
                    .peer
                    .as_ref()
                    .is_some_and(|p| p.graceful_restart.is_some())
                && open
                    .capabilities
                    .iter()
                    .any(|c| matches!(c, Capability::GracefulRestart(_)));
            if peer_restarting {
                // RFC 4724 §4.2: a graceful-restart peer opening a new
                // session while we hold the old one has restarted: close the
                // old connection (no NOTIFICATION: it is dead on the other
                // side) and go on with the new one.
                self.drop_conn(other.id, out);
                out.push(Output::Down(DownReason::PeerRestarted));
            }
            let loser = if peer_restarting {
                None
            } else if other.state == ConnState::Established {
                // A connection that collides with an Established one loses.
                Some(id)
            } else {
                let keep = self.collision_winner(open.router_id, open.asn());
                Some(if this_dir == Some(keep) { other.id } else { id })
            };
            if let Some(loser) = loser {
                let n = Notification::cease(subcode::CONNECTION_COLLISION_RESOLUTION, None);
                out.push(Output::Send(loser, Message::Notification(n)));
                self.drop_conn(loser, out);
                if loser == id {
                    return;
                }
            }
        }
        let negotiated = self.negotiate(&open);
        let hold_time = self.cfg.hold_time.min(open.hold_time);
        let keepalive = match self.cfg.keepalive {
            _ if hold_time == 0 => 0,
            Some(k) if k > 0 && k < hold_time => k,
            _ => (hold_time / 3).max(1),
        };
        out.push(Output::Send(id, Message::Keepalive));
        if hold_time > 0 {
            out.push(Output::ArmTimer(
                TimerKind::Hold(id),
                Duration::from_secs(hold_time.into()),
            ));
            out.push(Output::ArmTimer(
                TimerKind::Keepalive(id),
                Duration::from_secs(keepalive.into()),
            ));
        } else {
            out.push(Output::CancelTimer(TimerKind::Hold(id)));
        }
        // A BGP speaker answered: the next time it cannot be reached counts from 1 s again.
        self.unreachable_retries = 0;
        if let Some(c) = self.conn_mut(id) {
            c.state = ConnState::OpenConfirm;
            c.peer = Some(PeerInfo {
                router_id: open.router_id,
                asn: open.asn(),
                negotiated,
                hold_time,
                keepalive,
                graceful_restart: open.capabilities.iter().find_map(|c| match c {
                    Capability::GracefulRestart(g) => Some(g.clone()),
                    _ => None,
                }),
            });
        }
    }

    /// The capability codes in the data of an Unsupported Capability
    /// NOTIFICATION (RFC 5492 §3: the capabilities as the OPEN carried them,
    /// code, length, value) are not offered again. A truncated entry ends
    /// the list.
    fn drop_capabilities(&mut self, data: &[u8]) {
        let mut rest = data;
        while let [code, len, tail @ ..] = rest {
            if !self.unsupported_caps.contains(code) {
                self.unsupported_caps.push(*code);
            }
            rest = tail.get(usize::from(*len)..).unwrap_or(&[]);
        }
    }

    /// Capability codes left out of our OPEN because the peer said it does
    /// not support them (2/7).
    pub fn unsupported_capabilities(&self) -> &[u8] {
        &self.unsupported_caps
    }

    /// Which direction survives a collision with a peer whose identifier is `peer_id`.
    fn collision_winner(&self, peer_id: Ipv4Addr, peer_as: u32) -> Direction {
        let local = u32::from(self.cfg.router_id);
        let remote = u32::from(peer_id);
        let local_wins = if local != remote {
            local > remote
        } else {
            // RFC 6286 §2.3: equal identifiers, the larger AS keeps its connection.
            self.cfg.local_as > peer_as
        };
        if local_wins {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }

    /// What both OPENs agree on.
    fn negotiate(&self, peer: &Open) -> Negotiated {
        // A feature is on when both OPENs carried it (ours may leave some out, 2/7).
        let ours = self.local_open().capabilities;
        let has = |pred: fn(&Capability) -> bool| {
            peer.capabilities.iter().any(pred) && ours.iter().any(pred)
        };
        let mut theirs: Vec<Family> = peer
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if theirs.is_empty() {
            // RFC 4760 §8: no multiprotocol capability means IPv4 unicast only.
            theirs.push(Family::IPV4_UNICAST);
        }
        let mut mine: Vec<Family> = ours
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if mine.is_empty() {
            // Our OPEN carried no multiprotocol capability either (2/7 for it).
            mine.extend(
                self.cfg
                    .families
                    .iter()
                    .filter(|f| **f == Family::IPV4_UNICAST),
            );
        }
        let mut families: Vec<Family> = mine.into_iter().filter(|f| theirs.contains(f)).collect();
        families.sort();
        families.dedup();
        Negotiated {
            four_octet_as: has(|c| matches!(c, Capability::FourOctetAs(_))),
            extended_message: self.cfg.extended_message
                && has(|c| matches!(c, Capability::ExtendedMessage)),
            families,
            route_refresh: has(|c| matches!(c, Capability::RouteRefresh)),
            enhanced_route_refresh: has(|c| matches!(c, Capability::EnhancedRouteRefresh)),
        }
    }

    fn restart_hold(&self, id: ConnId, out: &mut Vec<Output>) {
        if let Some(p) = self.conn(id).and_then(|c| c.peer.as_ref())
            && p.hold_time > 0
        {
            out.push(Output::ArmTimer(
                TimerKind::Hold(id),
                Duration::from_secs(p.hold_time.into()),
            ));
        }
    }

    /// Send FSM error 5/`subcode` on `id` and tear it down.
    fn fsm_error(&mut self, id: ConnId, fsm_subcode: u8, out: &mut Vec<Output>) {
        let n = Notification::new(code::FSM, fsm_subcode);
        self.fail_conn(id, Some(n.clone()), DownReason::NotificationSent(n), out);
    }

    /// A connection ends for `reason`, after sending `notify` when given.
    /// Reports Down when it was the Established one or the last one, then
    /// (for active peers with nothing left) schedules the next attempt.
    fn fail_conn(
        &mut self,
        id: ConnId,
        notify: Option<Notification>,
        reason: DownReason,
        out: &mut Vec<Output>,
    ) {
        let Some(was) = self.conn(id).map(|c| c.state) else {
            return;
        };
        // Nobody spoke BGP to us on it (the peer is not there yet), or the
        // peer's operator ended the session: not an oscillation to damp.
        let unreachable = match &reason {
            DownReason::ConnectionClosed => was == ConnState::OpenSent && notify.is_none(),
            DownReason::NotificationReceived(n) => is_administrative_cease(n),
            _ => false,
        };
        if let Some(n) = notify {
            out.push(Output::Send(id, Message::Notification(n)));
        }
        self.drop_conn(id, out);
        if was == ConnState::Established || self.conns.is_empty() {
            out.push(Output::Down(reason));
        }
        if self.conns.is_empty() && !self.connecting && !self.cfg.passive {
            // -> Active: wait, then connect again.
            let kind = if unreachable {
                Retry::Unreachable
            } else {
                Retry::Session
            };
            self.arm_retry(kind, out);
        }
    }

    /// Forget a connection: close it and stop its timers.
    fn drop_conn(&mut self, id: ConnId, out: &mut Vec<Output>) {
        self.conns.retain(|c| c.id != id);
        out.push(Output::Close(id));
        out.push(Output::CancelTimer(TimerKind::Hold(id)));
        out.push(Output::CancelTimer(TimerKind::Keepalive(id)));
    }

    /// -> Connect: start an outbound attempt, bounded by the connect-retry timer.
    fn start_connect(&mut self, out: &mut Vec<Output>) {
        self.connecting = true;
        out.push(Output::Connect);
        out.push(Output::ArmTimer(
            TimerKind::ConnectRetry,
            self.cfg.connect_timeout,
        ));
    }

    /// -> Active: arm the connect-retry timer with the next backoff delay of `kind`.
    fn arm_retry(&mut self, kind: Retry, out: &mut Vec<Output>) {
        let d = match kind {
            Retry::Session => {
                let cap = self.cfg.connect_retry_max;
                let (d, next) = self.jittered(self.retry_base, cap);
                self.retry_base = next;
                d
            }
            Retry::Unreachable => {
                let cap = self
                    .cfg
                    .unreachable_retry_max
                    .max(self.cfg.connect_retry)
                    .min(self.cfg.connect_retry_max);
                self.unreachable_retries = self.unreachable_retries.saturating_add(1);
                // `connect_retry` for the quick ones and the first after
                // them, then doubling.
                let doublings = self
                    .unreachable_retries
                    .saturating_sub(self.cfg.unreachable_quick.saturating_add(1))
                    .min(20);
                let base = self.cfg.connect_retry.saturating_mul(1 << doublings);
                self.jittered(base, cap).0
            }
        };
        out.push(Output::ArmTimer(TimerKind::ConnectRetry, d));
    }

    /// `base` (capped) with ±25 % jitter, never above `cap`, and the doubled base.
    fn jittered(&mut self, base: Duration, cap: Duration) -> (Duration, Duration) {
        let base = base.min(cap);
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // factor in [0.75, 1.25)
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 0.75 + 0.5 * unit;
        let d = base.mul_f64(factor).min(cap);
        (d, (base * 2).min(cap))
    }
}

/// A Cease the peer's operator caused: Administrative Shutdown or Reset,
/// Peer De-configured, Other Configuration Change, Connection Rejected (RFC
/// 4486), also inside a Hard Reset (RFC 8538). A router restarted or reset by
/// hand sends these; reconnecting to it is retried on the short backoff, not
/// damped as a flapping session would be.
fn is_administrative_cease(n: &Notification) -> bool {
    let n = n.hard_reset_inner().unwrap_or_else(|| n.clone());
    let sub = n.subcode;
    n.code == code::CEASE
        && matches!(
            sub,
            subcode::ADMINISTRATIVE_SHUTDOWN
                | subcode::PEER_DECONFIGURED
                | subcode::ADMINISTRATIVE_RESET
                | subcode::CONNECTION_REJECTED
                | subcode::OTHER_CONFIGURATION_CHANGE
        )
}

/// Which backoff a connect-retry delay comes from.
#[derive(Debug, Clone, Copy)]
enum Retry {
    /// After a session (or an attempt a BGP speaker answered) failed: damped.
    Session,
    /// After an attempt that reached no BGP speaker.
    Unreachable,
}

/// Cease / Connection Rejected (6/5, RFC 4486 §4): what a connection we do
/// not accept is told before it is closed.
pub fn connection_rejected() -> Notification {
    Notification::cease(subcode::CONNECTION_REJECTED, None)
}

/// "6/2 Cease / Administrative Shutdown: \"text\"" for logs and status.
pub fn describe_notification(n: &Notification) -> String {
    format!("{}/{} {n}", n.code, n.subcode)
}
