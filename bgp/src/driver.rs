//! Thin tokio driver: one task per peer that carries out what the
//! [`fsm::Session`](crate::fsm::Session) decides.
//!
//! The task owns the TCP connections (outbound connect and, with
//! [`PeerConfig::listen`], inbound accept), the timers the session arms, the
//! [`AdjOut`] of the session and the status the owner watches. It decides
//! nothing: every TCP event, decoded message and timer expiry goes to the
//! session, and its outputs are executed in order.
//!
//! Each connection has a reader task (framing with [`frame_len`], frames
//! are decoded by the peer task with the session's negotiated context) and a
//! writer task fed by two queues: a priority queue (OPEN, KEEPALIVE,
//! NOTIFICATION, close) that is always drained first, and a bulk queue of
//! UPDATE batches of at most [`BULK_CHUNK`] bytes, cut on message
//! boundaries, so KEEPALIVEs still go out during a large initial send.
//! UPDATEs are pulled rather than pushed: the Adj-RIB-Out is synced in
//! slices ([`AdjOut::updates_paced`]) only while less than [`SEND_WINDOW`]
//! bytes wait for the writer, and the next slice is encoded when the writer
//! reports a batch written, so what is buffered per connection stays under
//! [`SEND_QUEUE_BOUND`] however large the table or slow the peer.
//! A session negotiated without hold timer (hold time 0) gets TCP keepalive
//! and TCP_USER_TIMEOUT on its socket instead ([`TCP_KEEPIDLE`]), so a
//! vanished peer still ends it.
//! A write that makes no progress for the send hold time (RFC 9687,
//! [`PeerConfig::send_hold_time`]) stops the writer, frees its queues and
//! closes the connection with Send Hold Timer Expired (8/0).
//!
//! With [`PeerConfig::bfd`] and a [`BfdEndpoint`] ([`spawn_with_bfd`]) the
//! task also runs a BFD session with the peer for as long as it lives; a BFD
//! failure ([`BfdEvent::is_failure`]) while Established closes the BGP session
//! at once with Cease / BFD Down (6/10, RFC 9384), and the session reconnects
//! after its usual backoff.
//!
//! Limits: one listening socket per peer task. Several listening peers on the
//! same port in one process need a shared acceptor (not provided here).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::adj_out::{AdjOut, OutContext, Routes};
use crate::bfd::{BfdConfig, BfdCounters, BfdEndpoint, BfdEvent, BfdSession, BfdStatus};
use crate::fsm::{
    ConnId, Direction, DownReason, DynamicAs, GracefulRestartConfig, Input, Output, Session,
    SessionConfig, State, TimerKind,
};
use crate::md5;
use crate::wire::{
    Family, MAX_EXTENDED_MESSAGE_LEN, Message, Negotiated, Notification, RouteRefresh, Update,
    code, frame_len, subcode,
};

/// Largest batch of UPDATE bytes handed to the writer at once.
pub const BULK_CHUNK: usize = 64 * 1024;
/// The session encodes more UPDATEs only while less than this is queued
/// for the writer; the rest waits in the Adj-RIB-Out until the socket drains.
pub const SEND_WINDOW: usize = 4 * BULK_CHUNK;
/// Most bytes ever queued for one connection's writer
/// ([`SessionStatus::send_queue_peak_bytes`]): the window, one batch
/// encoded while just below it (a batch stops after the message that
/// crosses [`BULK_CHUNK`]), and the small messages around a table (OPEN,
/// KEEPALIVEs, End-of-RIB, route-refresh markers, NOTIFICATION).
pub const SEND_QUEUE_BOUND: usize = SEND_WINDOW + BULK_CHUNK + 2 * MAX_EXTENDED_MESSAGE_LEN;
/// How long [`SessionHandle::shutdown`] and [`SessionHandle::close`] give
/// what is queued (withdrawals included) and the Cease to be written.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);
/// TCP keepalive on a session without hold timer (hold time 0): the first
/// probe after this much silence…
pub const TCP_KEEPIDLE: Duration = Duration::from_secs(30);
/// …then one probe this often…
pub const TCP_KEEPINTVL: Duration = Duration::from_secs(10);
/// …and the connection fails after this many unanswered probes (a dead peer
/// is noticed after about 60 s).
pub const TCP_KEEPCNT: u32 = 3;
/// TCP_USER_TIMEOUT on such a session: data unacknowledged for this long
/// fails the connection (the usual 90 s hold time).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(90);
/// After a failed accept (out of descriptors, ...) the listener rests this
/// long, doubling on each further failure up to [`ACCEPT_PAUSE_MAX`], so a
/// persistent error never spins.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(5);
/// How long the Cease, queued behind everything else, may take to be written
/// once the drain is over (in time or not) before the connection is dropped.
const CEASE_FLUSH: Duration = Duration::from_secs(1);
/// How long a closed connection keeps draining what the peer still sends
/// (so closing does not turn into a RST that could eat our NOTIFICATION).
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// One BGP peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Peer address and port to connect to (the port is unused for passive peers).
    pub peer: SocketAddr,
    /// Source address for outbound connections and the listening address.
    pub local_addr: Option<IpAddr>,
    pub local_as: u32,
    /// The AS the peer must announce; ignored when `dynamic_peer_as` is set.
    pub peer_as: u32,
    /// Accept any peer AS of this kind (iBGP: ours, eBGP: any other) instead
    /// of `peer_as`; iBGP or eBGP treatment then follows the AS the peer's
    /// OPEN carries.
    pub dynamic_peer_as: Option<DynamicAs>,
    pub router_id: Ipv4Addr,
    /// Proposed hold time, seconds (0 or >= 3).
    pub hold_time: u16,
    /// Keepalive interval, seconds; `None` = hold time / 3.
    pub keepalive: Option<u16>,
    /// TCP MD5 signature password (RFC 2385).
    pub password: Option<String>,
    /// Never connect; wait for the peer (needs `listen`).
    pub passive: bool,
    /// Families to negotiate.
    pub families: Vec<Family>,
    /// TTL for eBGP; `None` = 1 (directly connected). iBGP always uses 255.
    pub ebgp_multihop: Option<u8>,
    /// First connect-retry delay (doubles on each failure up to
    /// `connect_retry_max`, ±25 % jitter).
    pub connect_retry: Duration,
    /// Cap of the connect-retry delay (60 s by default; equal to
    /// `connect_retry` for a fixed interval, as a configured `connectTime`).
    pub connect_retry_max: Duration,
    /// Accept inbound connections from the peer too.
    pub listen: bool,
    /// Port to accept on when `listen` (179; 0 = any free port, see [`SessionStatus::listen_addr`]).
    pub listen_port: u16,
    /// Run a BFD session with the peer (needs [`spawn_with_bfd`]).
    pub bfd: Option<PeerBfd>,
    /// Close the session with Cease / Maximum Number of Prefixes Reached
    /// (6/1, RFC 4486) when [`SessionStatus::prefixes_received`] exceeds
    /// this; `None` = no limit. The session reconnects after its backoff.
    pub max_prefix: Option<u32>,
    /// Send hold time (RFC 9687): a connection on which nothing could be
    /// written for this long while data was waiting closes with Send Hold
    /// Timer Expired (8/0) and its queue is freed; `None` = the RFC's
    /// default, the larger of 8 minutes and twice [`hold_time`](Self::hold_time).
    pub send_hold_time: Option<Duration>,
    /// Graceful restart (RFC 4724, RFC 8538 N bit); `None`: the OPEN has no
    /// such capability. With it, the first table and End-of-RIB wait for the
    /// first [`SessionHandle::set`] (see [`spawn`]).
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// Offer the Extended Message capability (RFC 8654). When the peer
    /// offers it too, UPDATEs are packed up to 65535 bytes instead of 4096
    /// (some routers, FRR among them, absorb a large table faster in fewer,
    /// larger UPDATEs; see bench/README.md).
    pub extended_message: bool,
}

/// The BFD timers of a peer (MetalLB's BFD profile); the addresses are the
/// BGP session's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBfd {
    /// Desired Min TX interval (MetalLB `transmitInterval`).
    pub desired_min_tx: Duration,
    /// Required Min RX interval (MetalLB `receiveInterval`).
    pub required_min_rx: Duration,
    /// Detect multiplier (MetalLB `detectMultiplier`).
    pub detect_mult: u8,
    /// Wait for the peer's first packet (MetalLB `passiveMode`).
    pub passive: bool,
}

impl Default for PeerBfd {
    /// MetalLB's defaults: 300 ms / 300 ms, ×3, active.
    fn default() -> Self {
        PeerBfd {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
        }
    }
}

impl PeerBfd {
    /// The BFD session configuration toward `peer` from `local`.
    pub fn session_config(&self, peer: IpAddr, local: Option<IpAddr>) -> BfdConfig {
        BfdConfig {
            local,
            desired_min_tx: self.desired_min_tx,
            required_min_rx: self.required_min_rx,
            detect_mult: self.detect_mult,
            passive: self.passive,
            ..BfdConfig::new(peer)
        }
    }
}

impl PeerConfig {
    /// Defaults: hold 90 s, keepalive hold/3, no password, active, not
    /// listening (port 179 when enabled), IPv4 unicast, TTL 1 for eBGP,
    /// first retry after 1 s.
    pub fn new(peer: SocketAddr, local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        PeerConfig {
            peer,
            local_addr: None,
            local_as,
            peer_as,
            dynamic_peer_as: None,
            router_id,
            hold_time: 90,
            keepalive: None,
            password: None,
            passive: false,
            families: vec![Family::IPV4_UNICAST],
            ebgp_multihop: None,
            connect_retry: Duration::from_secs(1),
            connect_retry_max: Duration::from_secs(60),
            listen: false,
            listen_port: 179,
            bfd: None,
            max_prefix: None,
            send_hold_time: None,
            graceful_restart: None,
            extended_message: false,
        }
    }

    /// The send hold time in force: [`send_hold_time`](Self::send_hold_time),
    /// else max(8 min, 2 × hold time). The configured hold time bounds the
    /// negotiated one, so the default is never below twice the latter.
    pub fn effective_send_hold_time(&self) -> Duration {
        self.send_hold_time.unwrap_or_else(|| {
            Duration::from_secs(480).max(Duration::from_secs(2 * u64::from(self.hold_time)))
        })
    }

    /// Both sides in the same AS: `peer_as == local_as`, or a dynamic peer
    /// of the internal kind.
    pub fn is_ibgp(&self) -> bool {
        match self.dynamic_peer_as {
            Some(d) => d == DynamicAs::Internal,
            None => self.local_as == self.peer_as,
        }
    }

    /// The TTL our packets carry: 255 for iBGP, `ebgp_multihop` (default 1) for eBGP.
    pub fn ttl(&self) -> u8 {
        if self.is_ibgp() {
            255
        } else {
            self.ebgp_multihop.unwrap_or(1)
        }
    }

    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            hold_time: self.hold_time,
            keepalive: self.keepalive,
            passive: self.passive,
            families: self.families.clone(),
            connect_retry: self.connect_retry,
            connect_retry_max: self.connect_retry_max.max(self.connect_retry),
            dynamic_peer_as: self.dynamic_peer_as,
            graceful_restart: self.graceful_restart,
            extended_message: self.extended_message,
            seed: rand::random(),
            ..SessionConfig::new(self.local_as, self.peer_as, self.router_id)
        }
    }
}

/// What the session is doing, for the owner to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub state: State,
    /// Incremented each time the session becomes Established.
    pub established_generation: u64,
    /// All initial routes and End-of-RIB markers were written to the socket
    /// since the last Established.
    pub initial_table_sent: bool,
    /// UPDATE messages written, over the life of the task.
    pub updates_sent: u64,
    /// Prefixes the peer was told about and not withdrawn.
    pub prefixes_announced: usize,
    /// Why the session last went down.
    pub last_down: Option<String>,
    /// The same, as a value.
    pub last_down_reason: Option<DownReason>,
    /// The context of the Established session.
    pub negotiated: Option<Negotiated>,
    /// The AS the peer's OPEN carried on the Established session (for a
    /// dynamic peer, the one it chose).
    pub peer_as: Option<u32>,
    /// UPDATE messages received in this Established session.
    pub updates_received: u64,
    /// Prefixes announced minus prefixes withdrawn, as received in this
    /// Established session, never below 0. Nothing is kept per prefix, so
    /// this is the number of routes the peer holds toward us only while it
    /// announces each prefix once between withdrawals; a re-announcement
    /// (implicit withdraw) counts again. The memory a peer costs does not
    /// grow with the routes it sends.
    pub prefixes_received: usize,
    /// Where inbound connections are accepted, when listening.
    pub listen_addr: Option<SocketAddr>,
    /// The last outbound connection failure (refused, timed out, ...) or
    /// listening failure; cleared on Established.
    pub last_connect_error: Option<String>,
    /// BFD was configured but its session could not be started (the BGP
    /// session then runs without it).
    pub bfd_error: Option<String>,
    /// BGP sessions closed because BFD went down, over the life of the task.
    pub bfd_downs: u64,
    /// Encoded bytes handed to the connections' writers and not yet written
    /// to their sockets (a closed connection's queue is freed and no longer
    /// counted).
    pub send_queue_bytes: usize,
    /// The most [`send_queue_bytes`](Self::send_queue_bytes) one connection
    /// ever reached, over the life of the task (at most [`SEND_QUEUE_BOUND`]).
    pub send_queue_peak_bytes: usize,
    /// The TCP keepalive settings of the Established connection, as read
    /// back from its socket; set (see [`TCP_KEEPIDLE`]) only when the
    /// negotiated hold time is 0, so that a dead peer is still noticed.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Failed accepts on the listening socket, over the life of the task
    /// (each pauses accepting, with a doubling delay).
    pub accept_errors: u64,
}

/// TCP keepalive and user timeout of a socket (`SO_KEEPALIVE`,
/// `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`, `TCP_USER_TIMEOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpKeepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
    pub user_timeout: Duration,
}

/// Turn TCP keepalive and the user timeout on for `fd` with the values
/// above, then read them back.
fn enable_tcp_keepalive(fd: &OwnedFd) -> nix::Result<TcpKeepalive> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    setsockopt(fd, sockopt::TcpKeepIdle, &secs(TCP_KEEPIDLE))?;
    setsockopt(fd, sockopt::TcpKeepInterval, &secs(TCP_KEEPINTVL))?;
    setsockopt(fd, sockopt::TcpKeepCount, &TCP_KEEPCNT)?;
    setsockopt(fd, sockopt::TcpUserTimeout, &millis(TCP_USER_TIMEOUT))?;
    setsockopt(fd, sockopt::KeepAlive, &true)?;
    if !getsockopt(fd, sockopt::KeepAlive)? {
        return Err(nix::Error::EINVAL);
    }
    Ok(TcpKeepalive {
        idle: Duration::from_secs(getsockopt(fd, sockopt::TcpKeepIdle)?.into()),
        interval: Duration::from_secs(getsockopt(fd, sockopt::TcpKeepInterval)?.into()),
        count: getsockopt(fd, sockopt::TcpKeepCount)?,
        user_timeout: Duration::from_millis(getsockopt(fd, sockopt::TcpUserTimeout)?.into()),
    })
}

impl Default for SessionStatus {
    fn default() -> Self {
        SessionStatus {
            state: State::Idle,
            established_generation: 0,
            initial_table_sent: false,
            updates_sent: 0,
            prefixes_announced: 0,
            last_down: None,
            last_down_reason: None,
            negotiated: None,
            peer_as: None,
            updates_received: 0,
            prefixes_received: 0,
            listen_addr: None,
            last_connect_error: None,
            bfd_error: None,
            bfd_downs: 0,
            send_queue_bytes: 0,
            send_queue_peak_bytes: 0,
            tcp_keepalive: None,
            accept_errors: 0,
        }
    }
}

enum Command {
    Set(Routes),
    /// Write what is queued, then Cease with this subcode (and RFC 9003
    /// message), within this grace period, and stop.
    Shutdown(u8, Option<String>, Duration),
    /// Stop so that a graceful-restart peer keeps our routes ([`Input::StopKeepRoutes`]).
    StopKeepRoutes(Option<String>),
}

/// Control of one running session. Dropping it shuts the session down
/// (Cease / Administrative Shutdown, best effort).
#[derive(Debug)]
pub struct SessionHandle {
    cmd: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<SessionStatus>,
    bfd: Option<BfdView>,
    task: Option<JoinHandle<()>>,
}

/// The live state of a session's BFD session, for metrics.
#[derive(Debug, Clone)]
pub struct BfdView {
    /// The BFD session's status.
    pub status: watch::Receiver<BfdStatus>,
    /// Its packet and transition counters.
    pub counters: Arc<BfdCounters>,
}

/// Where a session task learns about BFD.
struct BfdLink {
    /// The session it owns (shut down with AdminDown when the task ends);
    /// `None` when the events come from elsewhere.
    session: Option<BfdSession>,
    events: broadcast::Receiver<BfdEvent>,
}

/// Start the session task for `cfg` on the current tokio runtime, without
/// BFD (`cfg.bfd` is ignored; see [`spawn_with_bfd`]).
///
/// End-of-RIB follows the routes known when the session becomes
/// Established. With [`PeerConfig::graceful_restart`] it waits for the
/// owner's first [`SessionHandle::set`] instead: after a restart the peer
/// holds our old routes as stale until our End-of-RIB, then drops those we
/// did not announce again, so the first table must be the complete one.
pub fn spawn(cfg: PeerConfig) -> SessionHandle {
    spawn_inner(cfg, None, None, None)
}

/// Start the session task for `cfg`, and when `cfg.bfd` is set a BFD session
/// with the peer on `endpoint` (one endpoint per process). If the BFD session
/// cannot start, the BGP session runs without it and
/// [`SessionStatus::bfd_error`] says why.
pub fn spawn_with_bfd(cfg: PeerConfig, endpoint: &BfdEndpoint) -> SessionHandle {
    let Some(b) = &cfg.bfd else {
        return spawn(cfg);
    };
    let bfd_cfg = b.session_config(cfg.peer.ip(), cfg.local_addr);
    match endpoint.spawn(bfd_cfg) {
        Ok((session, status)) => {
            let view = BfdView {
                status,
                counters: session.counters(),
            };
            let link = BfdLink {
                events: session.subscribe(),
                session: Some(session),
            };
            spawn_inner(cfg, Some(link), Some(view), None)
        }
        Err(e) => {
            warn!(peer = %cfg.peer, error = %e, "cannot start the BFD session; BGP runs without it");
            spawn_inner(cfg, None, None, Some(e.to_string()))
        }
    }
}

/// Start the session task for `cfg` acting on BFD events from `events` (any
/// source: a [`BfdSession::subscribe`] or a test's own sender); a failure
/// event while Established closes the session with Cease / BFD Down.
pub fn spawn_with_bfd_events(
    cfg: PeerConfig,
    events: broadcast::Receiver<BfdEvent>,
) -> SessionHandle {
    let link = BfdLink {
        session: None,
        events,
    };
    spawn_inner(cfg, Some(link), None, None)
}

fn spawn_inner(
    cfg: PeerConfig,
    bfd: Option<BfdLink>,
    view: Option<BfdView>,
    bfd_error: Option<String>,
) -> SessionHandle {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    // The BFD error is in the first status, so the caller sees it at once.
    let (status_tx, status_rx) = watch::channel(SessionStatus {
        bfd_error: bfd_error.clone(),
        ..SessionStatus::default()
    });
    let span = info_span!("peer", addr = %cfg.peer);
    let task = tokio::spawn(run(cfg, cmd_rx, status_tx, bfd, bfd_error).instrument(span));
    SessionHandle {
        cmd: cmd_tx,
        status: status_rx,
        bfd: view,
        task: Some(task),
    }
}

impl SessionHandle {
    /// Declare the complete set of routes the peer should have; the session
    /// sends the difference to what it already told the peer.
    pub fn set(&self, routes: Routes) {
        let _ = self.cmd.send(Command::Set(routes));
    }

    /// Watch the session's status.
    pub fn status(&self) -> watch::Receiver<SessionStatus> {
        self.status.clone()
    }

    /// The BFD session's status and counters, when one runs.
    pub fn bfd(&self) -> Option<BfdView> {
        self.bfd.clone()
    }

    /// Send Cease / Administrative Shutdown (with `communication` as the RFC
    /// 9003 message), close, and wait for the task to end, within
    /// [`SHUTDOWN_FLUSH`]. Routes are not withdrawn one by one unless
    /// [`set`](Self::set) was given an empty set first: closing the session
    /// withdraws them all.
    pub async fn shutdown(self, communication: Option<String>) {
        self.shutdown_within(communication, SHUTDOWN_FLUSH).await
    }

    /// [`shutdown`](Self::shutdown) with a grace period: what the session
    /// still has to send (after [`set`](Self::set), the withdrawals) is
    /// written first for up to `grace`, and the Cease always goes out behind
    /// it, never ahead. When the peer does not take it all in time the
    /// connection is dropped (the peer then sees the session end, not a
    /// Cease ahead of the withdrawals). Returns within about `grace` + 1 s.
    pub async fn shutdown_within(self, communication: Option<String>, grace: Duration) {
        self.close_within(subcode::ADMINISTRATIVE_SHUTDOWN, communication, grace)
            .await
    }

    /// End the session so that a graceful-restart peer keeps our routes as
    /// stale until a new process is back and has sent End-of-RIB (a restart
    /// or upgrade): [`Input::StopKeepRoutes`]. Then wait for the task to end.
    pub async fn close_keep_routes(mut self, communication: Option<String>) {
        let _ = self.cmd.send(Command::StopKeepRoutes(communication));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Send a Cease NOTIFICATION with `cease_subcode` (RFC 4486, e.g.
    /// [`subcode::PEER_DECONFIGURED`] 6/3 or
    /// [`subcode::OTHER_CONFIGURATION_CHANGE`] 6/6; `communication` goes out
    /// only with 6/2 and 6/4), close, and wait for the task to end, as
    /// [`shutdown`](Self::shutdown) does.
    pub async fn close(self, cease_subcode: u8, communication: Option<String>) {
        self.close_within(cease_subcode, communication, SHUTDOWN_FLUSH)
            .await
    }

    /// [`close`](Self::close) with the grace period of
    /// [`shutdown_within`](Self::shutdown_within).
    pub async fn close_within(
        mut self,
        cease_subcode: u8,
        communication: Option<String>,
        grace: Duration,
    ) {
        let _ = self
            .cmd
            .send(Command::Shutdown(cease_subcode, communication, grace));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            // The task also stops when the command channel closes; say it explicitly.
            let _ = self.cmd.send(Command::Shutdown(
                subcode::ADMINISTRATIVE_SHUTDOWN,
                None,
                SHUTDOWN_FLUSH,
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Connection I/O tasks

enum ConnEvent {
    Frames(ConnId, Vec<Bytes>),
    Malformed(ConnId, Notification),
    Closed(ConnId, Option<io::Error>),
    Flushed(ConnId, Flush),
    /// A batch from the bulk queue was written: room for more.
    Drained(ConnId),
    /// Nothing could be written for the send hold time; the writer stopped.
    SendHoldExpired(ConnId),
}

/// What a [`WriteCmd::Marker`] marks the end of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// The initial table and End-of-RIB of this Established generation.
    InitialTable(u64),
    /// A route-refresh re-send during this Established generation.
    Refresh(u64),
}

enum WriteCmd {
    Data(Bytes),
    /// Report [`ConnEvent::Flushed`] once everything queued before is written.
    Marker(Flush),
    /// Shut the write side down and stop.
    Close,
}

struct ConnIo {
    prio: mpsc::UnboundedSender<WriteCmd>,
    bulk: mpsc::UnboundedSender<WriteCmd>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    local: SocketAddr,
    /// Bytes sent to `prio`/`bulk` and not yet written by the writer.
    queued: Arc<AtomicUsize>,
    /// A duplicate of the socket's descriptor, for socket options once the
    /// session is negotiated (dropped with the connection).
    fd: Option<OwnedFd>,
}

impl ConnIo {
    /// Hand `data` to the writer on the priority or the bulk queue; returns
    /// the bytes now queued for it.
    fn push(&self, bulk: bool, data: Bytes) -> usize {
        let n = data.len();
        let q = if bulk { &self.bulk } else { &self.prio };
        // Counted before the writer can see it, so its subtraction never
        // comes first.
        let now = self.queued.fetch_add(n, Ordering::Relaxed) + n;
        if q.send(WriteCmd::Data(data)).is_err() {
            return self.queued.fetch_sub(n, Ordering::Relaxed) - n;
        }
        now
    }

    fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// Why [`write_timed`] stopped.
enum WriteFail {
    Io(io::Error),
    /// No byte could be written for the send hold time.
    SendHold,
}

/// Write all of `b`, counting each written byte off `queued`; fails when a
/// single write makes no progress for `send_hold` (RFC 9687: the timer
/// restarts whenever data goes out).
async fn write_timed(
    w: &mut OwnedWriteHalf,
    b: &[u8],
    queued: &AtomicUsize,
    send_hold: Duration,
) -> Result<(), WriteFail> {
    let mut pos = 0;
    while pos < b.len() {
        match tokio::time::timeout(send_hold, w.write(&b[pos..])).await {
            Err(_) => return Err(WriteFail::SendHold),
            Ok(Err(e)) => return Err(WriteFail::Io(e)),
            Ok(Ok(0)) => return Err(WriteFail::Io(io::ErrorKind::WriteZero.into())),
            Ok(Ok(n)) => {
                pos += n;
                queued.fetch_sub(n, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

async fn read_loop(mut r: OwnedReadHalf, id: ConnId, events: mpsc::Sender<ConnEvent>) {
    let mut buf = BytesMut::with_capacity(BULK_CHUNK);
    loop {
        let mut frames = Vec::new();
        let mut malformed = None;
        loop {
            match frame_len(&buf, MAX_EXTENDED_MESSAGE_LEN) {
                Ok(Some(n)) if buf.len() >= n => frames.push(buf.split_to(n).freeze()),
                Ok(_) => break,
                Err(e) => {
                    malformed = Some(Notification::from(&e));
                    break;
                }
            }
        }
        if !frames.is_empty() && events.send(ConnEvent::Frames(id, frames)).await.is_err() {
            return;
        }
        if let Some(n) = malformed {
            let _ = events.send(ConnEvent::Malformed(id, n)).await;
            return;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(BULK_CHUNK);
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = events.send(ConnEvent::Closed(id, None)).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = events.send(ConnEvent::Closed(id, Some(e))).await;
                return;
            }
        }
    }
}

struct WriterCtx {
    id: ConnId,
    events: mpsc::Sender<ConnEvent>,
    queued: Arc<AtomicUsize>,
    send_hold: Duration,
}

async fn write_loop(
    mut w: OwnedWriteHalf,
    mut prio: mpsc::UnboundedReceiver<WriteCmd>,
    mut bulk: mpsc::UnboundedReceiver<WriteCmd>,
    ctx: WriterCtx,
) {
    let WriterCtx {
        id,
        events,
        queued,
        send_hold,
    } = ctx;
    // Once the priority queue's sender is gone, what is left on the bulk
    // queue (an ordered close: the Cease and Close behind the withdrawals) is
    // still written.
    let mut prio_open = true;
    loop {
        let (cmd, from_bulk) = tokio::select! {
            biased;
            c = prio.recv(), if prio_open => (c, false),
            c = bulk.recv() => (c, true),
        };
        if cmd.is_none() && !from_bulk {
            prio_open = false;
            continue;
        }
        match cmd {
            None | Some(WriteCmd::Close) => {
                let _ = w.shutdown().await;
                return;
            }
            Some(WriteCmd::Data(b)) => match write_timed(&mut w, &b, &queued, send_hold).await {
                Ok(()) if from_bulk => {
                    if events.send(ConnEvent::Drained(id)).await.is_err() {
                        return;
                    }
                }
                Ok(()) => {}
                Err(WriteFail::Io(e)) => {
                    let _ = events.send(ConnEvent::Closed(id, Some(e))).await;
                    return;
                }
                Err(WriteFail::SendHold) => {
                    // Dropping the queues here frees what they hold at once.
                    drop((prio, bulk));
                    let _ = events.send(ConnEvent::SendHoldExpired(id)).await;
                    return;
                }
            },
            Some(WriteCmd::Marker(m)) => {
                let _ = events.send(ConnEvent::Flushed(id, m)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The peer task

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

struct Driver {
    cfg: PeerConfig,
    session: Session,
    adj: AdjOut,
    conns: HashMap<ConnId, ConnIo>,
    closing: Vec<JoinHandle<()>>,
    timers: HashMap<TimerKind, Instant>,
    connecting: Option<ConnectFuture>,
    next_id: u64,
    events_tx: mpsc::Sender<ConnEvent>,
    status: SessionStatus,
    status_tx: watch::Sender<SessionStatus>,
    /// A NOTIFICATION to close the Established session with once the
    /// current input is carried out (max-prefix).
    pending_reset: Option<Notification>,
    /// A route-refresh re-send is queued and not yet written.
    refresh_in_flight: bool,
    /// Families whose refresh waits for the queued table to be written; all
    /// requests meanwhile collapse into one re-send (never more entries than
    /// negotiated families).
    refresh_pending: Vec<Family>,
    /// Bulk work of the Established connection not yet handed to its writer.
    outbox: Outbox,
    /// Shutting down: every message and close goes on the bulk queue, behind
    /// what is already there.
    ordered_close: bool,
    /// No accept before this (after an accept error).
    accept_resume: Option<Instant>,
    /// The pause after the next accept error.
    accept_pause: Duration,
    /// The owner called [`SessionHandle::set`] at least once.
    routes_given: bool,
    /// Established with graceful restart before the first set: the initial
    /// table and End-of-RIB go out with it.
    eor_waits_for_routes: bool,
}

/// A shutdown waiting for the queue to drain.
struct Drain {
    deadline: Instant,
    cease: u8,
    communication: Option<String>,
}

/// What the Established connection still has to send in bulk, pulled into
/// the writer's queue as it drains (see [`Driver::refill`]).
#[derive(Default)]
struct Outbox {
    /// An Adj-RIB-Out sync is under way: every prefix before this one is in
    /// sync (`Some(None)`: starting from the first prefix).
    sync: Option<Option<ipnet::IpNet>>,
    /// Messages and flush markers that go out once the sync is done, in order.
    after: Vec<AfterSync>,
}

#[allow(clippy::large_enum_variant)] // a handful per table, moved once
enum AfterSync {
    Message(Message),
    Marker(Flush),
}

async fn run(
    cfg: PeerConfig,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    status_tx: watch::Sender<SessionStatus>,
    bfd: Option<BfdLink>,
    bfd_error: Option<String>,
) {
    let (session, events) = match bfd {
        Some(l) => (l.session, Some(l.events)),
        None => (None, None),
    };
    run_bgp(cfg, cmd_rx, status_tx, events, bfd_error).await;
    if let Some(s) = session {
        // Tell the peer's BFD this is on purpose (AdminDown), then free the socket.
        s.shutdown().await;
    }
}

async fn run_bgp(
    cfg: PeerConfig,
    mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    status_tx: watch::Sender<SessionStatus>,
    mut bfd_events: Option<broadcast::Receiver<BfdEvent>>,
    bfd_error: Option<String>,
) {
    let (events_tx, mut events_rx) = mpsc::channel(256);
    let mut d = Driver {
        session: Session::new(cfg.session_config()),
        cfg,
        adj: AdjOut::new(),
        conns: HashMap::new(),
        closing: Vec::new(),
        timers: HashMap::new(),
        connecting: None,
        next_id: 1,
        events_tx,
        status: SessionStatus::default(),
        status_tx,
        pending_reset: None,
        refresh_in_flight: false,
        refresh_pending: Vec::new(),
        outbox: Outbox::default(),
        ordered_close: false,
        accept_resume: None,
        accept_pause: ACCEPT_PAUSE,
        routes_given: false,
        eor_waits_for_routes: false,
    };
    d.status.bfd_error = bfd_error;
    let listener = if d.cfg.listen {
        match d.listen() {
            Ok(l) => {
                d.status.listen_addr = l.local_addr().ok();
                info!(listen = ?d.status.listen_addr, "accepting inbound connections");
                Some(l)
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for inbound connections");
                d.status.last_connect_error = Some(format!("listen failed: {e}"));
                None
            }
        }
    } else {
        None
    };
    if d.cfg.passive && listener.is_none() {
        warn!("passive peer without a listening socket: the session cannot come up");
    }
    d.feed(Input::Start);
    d.publish();
    let mut draining: Option<Drain> = None;
    loop {
        let next_timer = d.timers.values().min().copied();
        let drain_deadline = draining.as_ref().map(|x| x.deadline);
        tokio::select! {
            cmd = cmd_rx.recv(), if draining.is_none() => {
                let (cease, communication, grace) = match cmd {
                    Some(Command::Set(routes)) => {
                        d.set_routes(routes);
                        d.publish();
                        continue;
                    }
                    Some(Command::Shutdown(cease, communication, grace)) => {
                        (cease, communication, grace)
                    }
                    Some(Command::StopKeepRoutes(communication)) => {
                        d.stop_keeping_routes(communication).await;
                        return;
                    }
                    None => (subcode::ADMINISTRATIVE_SHUTDOWN, None, SHUTDOWN_FLUSH),
                };
                info!(cease, ?grace, queued = d.status.send_queue_bytes, "shutting down: writing what is queued first");
                draining = Some(Drain {
                    deadline: Instant::now() + grace,
                    cease,
                    communication,
                });
            }
            _ = async {
                match drain_deadline {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
            Some(ev) = events_rx.recv() => d.on_event(ev),
            res = async {
                match d.connecting.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            } => {
                d.connecting = None;
                d.on_connect_result(res);
            }
            acc = async {
                match listener.as_ref() {
                    Some(l) => {
                        if let Some(t) = d.accept_resume {
                            tokio::time::sleep_until(t).await;
                        }
                        l.accept().await
                    }
                    None => std::future::pending().await,
                }
            } => d.on_accept(acc),
            ev = async {
                match bfd_events.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => match ev {
                Ok(e) if e.is_failure() => d.on_bfd_failure(e),
                Ok(e) => debug!(from = %e.from, to = %e.to, "BFD state change"),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "BFD events were missed");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    warn!("the BFD session ended; BGP continues without it");
                    bfd_events = None;
                }
            },
            _ = async {
                match next_timer {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => d.on_timers(),
        }
        d.publish();
        if let Some(dr) = &draining {
            let in_time = d.drained();
            if in_time || Instant::now() >= dr.deadline {
                if !in_time {
                    warn!(
                        queued = d.status.send_queue_bytes,
                        "the peer did not take what was queued within the grace period: the Cease goes behind it, the connection is dropped if it cannot be written"
                    );
                }
                let dr = draining.take().expect("checked");
                d.shutdown(dr.cease, dr.communication).await;
                return;
            }
        }
    }
}

impl Driver {
    fn listen(&self) -> io::Result<TcpListener> {
        let ip = self.cfg.local_addr.unwrap_or(match self.cfg.peer {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let sock = if ip.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        if let Some(pw) = &self.cfg.password {
            md5::set_md5_key(&sock, self.cfg.peer.ip(), pw.as_bytes())?;
        }
        md5::set_ttl(&sock, ip.is_ipv6(), self.cfg.ttl())?;
        sock.bind(SocketAddr::new(ip, self.cfg.listen_port))?;
        sock.listen(64)
    }

    /// Feed one input to the session and carry out its outputs.
    fn feed(&mut self, input: Input) {
        let before = self.session.state();
        let outputs = self.session.handle(input);
        for o in outputs {
            self.apply(o);
        }
        let after = self.session.state();
        if before != after {
            info!(from = %before, to = %after, "state change");
        }
        self.status.state = after;
        if let Some(n) = self.pending_reset.take() {
            self.feed(Input::Reset(n));
        }
    }

    fn apply(&mut self, o: Output) {
        match o {
            Output::Connect => self.start_connect(),
            Output::Send(id, m) => self.send_prio(id, &m),
            Output::Close(id) => self.close_conn(id),
            Output::ArmTimer(k, d) => {
                self.timers.insert(k, Instant::now() + d);
            }
            Output::CancelTimer(k) => {
                self.timers.remove(&k);
            }
            Output::Established(neg) => self.on_established(neg),
            Output::Down(reason) => self.on_down(reason),
            Output::RouteRefreshRequested(family) => self.route_refresh(family),
            Output::UpdateReceived(u) => self.on_update(u),
        }
    }

    fn start_connect(&mut self) {
        let peer = self.cfg.peer;
        let local = self.cfg.local_addr;
        let password = self.cfg.password.clone();
        let ttl = self.cfg.ttl();
        debug!("connecting");
        self.connecting = Some(Box::pin(async move {
            let sock = if peer.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(pw) = &password {
                md5::set_md5_key(&sock, peer.ip(), pw.as_bytes())?;
            }
            md5::set_ttl(&sock, peer.is_ipv6(), ttl)?;
            if let Some(ip) = local {
                sock.bind(SocketAddr::new(ip, 0))?;
            }
            sock.set_nodelay(true)?;
            sock.connect(peer).await
        }));
    }

    fn on_connect_result(&mut self, res: io::Result<TcpStream>) {
        match res.and_then(|s| {
            let local = s.local_addr()?;
            Ok((s, local))
        }) {
            Ok((stream, local)) => {
                let id = self.add_conn(stream, local);
                debug!(%id, %local, "connected");
                self.feed(Input::Connected {
                    conn: id,
                    direction: Direction::Outbound,
                });
            }
            Err(e) => {
                info!(error = %e, "connect failed");
                self.status.last_connect_error = Some(e.to_string());
                self.feed(Input::ConnectFailed);
            }
        }
    }

    fn on_accept(&mut self, acc: io::Result<(TcpStream, SocketAddr)>) {
        let (stream, remote) = match acc {
            Ok(x) => x,
            Err(e) => {
                let pause = self.accept_pause;
                self.accept_pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                self.accept_resume = Some(Instant::now() + pause);
                self.status.accept_errors += 1;
                warn!(error = %e, ?pause, "accept failed; accepting again after a pause");
                return;
            }
        };
        self.accept_pause = ACCEPT_PAUSE;
        self.accept_resume = None;
        let remote_ip = match remote.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            ip => ip,
        };
        if remote_ip != self.cfg.peer.ip() {
            info!(%remote, "refusing connection from an unknown address (Cease / Connection Rejected)");
            tokio::spawn(reject(stream).instrument(tracing::Span::current()));
            return;
        }
        let _ = stream.set_nodelay(true);
        let _ = md5::set_ttl(&stream, remote.is_ipv6(), self.cfg.ttl());
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let id = self.add_conn(stream, local);
        debug!(%id, %remote, "accepted");
        self.feed(Input::Connected {
            conn: id,
            direction: Direction::Inbound,
        });
    }

    fn add_conn(&mut self, stream: TcpStream, local: SocketAddr) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        let fd = match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => Some(fd),
            Err(e) => {
                warn!(%id, error = %e, "cannot duplicate the socket descriptor; no TCP keepalive for it");
                None
            }
        };
        let (r, w) = stream.into_split();
        let (prio_tx, prio_rx) = mpsc::unbounded_channel();
        let (bulk_tx, bulk_rx) = mpsc::unbounded_channel();
        let span = tracing::Span::current();
        let reader =
            tokio::spawn(read_loop(r, id, self.events_tx.clone()).instrument(span.clone()));
        let queued = Arc::new(AtomicUsize::new(0));
        let ctx = WriterCtx {
            id,
            events: self.events_tx.clone(),
            queued: queued.clone(),
            send_hold: self.cfg.effective_send_hold_time(),
        };
        let writer = tokio::spawn(write_loop(w, prio_rx, bulk_rx, ctx).instrument(span));
        self.conns.insert(
            id,
            ConnIo {
                prio: prio_tx,
                bulk: bulk_tx,
                reader,
                writer,
                local,
                queued,
                fd,
            },
        );
        id
    }

    /// Nothing is left to write on the Established connection (or there is none).
    fn drained(&self) -> bool {
        let Some(id) = self.session.established_conn() else {
            return true;
        };
        self.outbox.sync.is_none()
            && self.outbox.after.is_empty()
            && self.conns.get(&id).is_none_or(|io| io.queued() == 0)
    }

    fn close_conn(&mut self, id: ConnId) {
        let Some(io) = self.conns.remove(&id) else {
            return;
        };
        debug!(%id, "closing connection");
        let q = if self.ordered_close {
            &io.bulk
        } else {
            &io.prio
        };
        let _ = q.send(WriteCmd::Close);
        let reader = io.reader;
        tokio::spawn(async move {
            // Keep reading (and discarding) a little so the close is a FIN, not a RST.
            tokio::time::sleep(CLOSE_DRAIN).await;
            reader.abort();
        });
        self.closing.retain(|h| !h.is_finished());
        self.closing.push(io.writer);
    }

    fn negotiated_for(&self, id: ConnId) -> Negotiated {
        self.session.negotiated(id).cloned().unwrap_or_default()
    }

    fn send_prio(&mut self, id: ConnId, m: &Message) {
        let neg = self.negotiated_for(id);
        let Some(io) = self.conns.get(&id) else {
            return;
        };
        let mut buf = BytesMut::new();
        match m.encode(&neg, &mut buf) {
            Ok(()) => {
                let q = io.push(self.ordered_close, buf.freeze());
                self.status.send_queue_peak_bytes = self.status.send_queue_peak_bytes.max(q);
            }
            Err(e) => warn!(%id, error = %e, "cannot encode message"),
        }
        if let Message::Notification(n) = m {
            info!(%id, notification = %crate::fsm::describe_notification(n), "sending NOTIFICATION");
        }
    }

    fn out_context(&self, id: ConnId) -> Option<OutContext> {
        let io = self.conns.get(&id)?;
        let negotiated = self.session.negotiated(id)?.clone();
        let mut local_v4 = None;
        let mut local_v6 = None;
        for ip in [Some(io.local.ip()), self.cfg.local_addr]
            .into_iter()
            .flatten()
        {
            match ip {
                IpAddr::V4(a) => local_v4 = local_v4.or(Some(a)),
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(v4) => local_v4 = local_v4.or(Some(v4)),
                    None => local_v6 = local_v6.or(Some(a)),
                },
            }
        }
        // iBGP or eBGP by the AS the peer's OPEN carried (a dynamic peer's
        // kind is only known for sure from it).
        let peer_as = self.session.peer_as(id).unwrap_or(self.cfg.peer_as);
        Some(OutContext {
            local_as: self.cfg.local_as,
            ibgp: self.cfg.local_as == peer_as,
            local_v4,
            local_v6,
            negotiated,
        })
    }

    /// Start (or restart, after the desired set changed) the Adj-RIB-Out
    /// sync of the Established connection, then `after` once it is done.
    fn start_sync(&mut self, after: Vec<AfterSync>) {
        if self.session.established_conn().is_none() {
            return;
        }
        self.outbox.sync = Some(None);
        self.outbox.after.extend(after);
        self.refill();
    }

    /// Encode slices of the sync in progress while the writer holds less
    /// than [`SEND_WINDOW`]; when the sync is done, queue what waits for it.
    fn refill(&mut self) {
        let Some(id) = self.session.established_conn() else {
            return;
        };
        let Some(ctx) = self.out_context(id) else {
            return;
        };
        let Some(io) = self.conns.get(&id) else {
            return;
        };
        let mut sent = 0u64;
        let mut peak = self.status.send_queue_peak_bytes;
        while let Some(from) = self.outbox.sync {
            if io.queued() >= SEND_WINDOW {
                break;
            }
            let (updates, next) = self.adj.updates_paced(&ctx, from, BULK_CHUNK);
            let mut buf = BytesMut::with_capacity(BULK_CHUNK + 4096);
            for u in updates {
                match Message::Update(u).encode(&ctx.negotiated, &mut buf) {
                    Ok(()) => sent += 1,
                    Err(e) => warn!(error = %e, "cannot encode UPDATE; skipped"),
                }
            }
            if !buf.is_empty() {
                peak = peak.max(io.push(true, buf.freeze()));
            }
            self.outbox.sync = next.map(Some);
            if next.is_none() {
                for a in std::mem::take(&mut self.outbox.after) {
                    match a {
                        AfterSync::Message(m) => {
                            let mut buf = BytesMut::new();
                            match m.encode(&ctx.negotiated, &mut buf) {
                                Ok(()) => {
                                    if matches!(m, Message::Update(_)) {
                                        sent += 1;
                                    }
                                    peak = peak.max(io.push(true, buf.freeze()));
                                }
                                Err(e) => warn!(error = %e, "cannot encode message"),
                            }
                        }
                        AfterSync::Marker(f) => {
                            let _ = io.bulk.send(WriteCmd::Marker(f));
                        }
                    }
                }
            }
        }
        self.status.send_queue_peak_bytes = peak;
        self.status.updates_sent += sent;
        self.status.prefixes_announced = self.adj.announced_count();
        if sent > 0 {
            debug!(updates = sent, "UPDATEs queued");
        }
    }

    /// The peer asked for our routes again. While a table is still queued
    /// (the initial one or an earlier re-send) the request only marks the
    /// family pending: however many requests arrive, one re-send follows
    /// once the queue is written, so the send queue holds at most about two
    /// tables.
    fn route_refresh(&mut self, family: Family) {
        if self.session.established_conn().is_none() {
            return;
        }
        if self.refresh_in_flight || !self.status.initial_table_sent {
            if !self.refresh_pending.contains(&family) {
                debug!(
                    ?family,
                    "route refresh requested while a table is queued: pending"
                );
                self.refresh_pending.push(family);
            }
            return;
        }
        self.resend_table(&[family]);
    }

    /// Send the table again for `families`. The Adj-RIB-Out has no
    /// per-family reset, so every family is re-sent (re-announcing is an
    /// implicit replace); with enhanced route refresh (RFC 7313) the
    /// re-advertisement sits between BoRR and EoRR for each requested family.
    fn resend_table(&mut self, families: &[Family]) {
        info!(?families, "route refresh: sending the table again");
        let Some(id) = self.session.established_conn() else {
            return;
        };
        let enhanced = self
            .session
            .negotiated(id)
            .is_some_and(|n| n.enhanced_route_refresh);
        let marker = |family, subtype| Message::RouteRefresh(RouteRefresh { family, subtype });
        if enhanced {
            for f in families {
                self.send_bulk(id, &marker(*f, 1));
            }
        }
        // The whole table again, then EoRR (enhanced) and the flush marker.
        self.adj.reset();
        let mut after: Vec<AfterSync> = Vec::new();
        if enhanced {
            after.extend(families.iter().map(|f| AfterSync::Message(marker(*f, 2))));
        }
        let generation = self.status.established_generation;
        after.push(AfterSync::Marker(Flush::Refresh(generation)));
        self.refresh_in_flight = true;
        self.start_sync(after);
    }

    /// The queued table is written: run the refresh that waited for it.
    fn run_pending_refresh(&mut self) {
        if self.refresh_in_flight || self.refresh_pending.is_empty() {
            return;
        }
        let families = std::mem::take(&mut self.refresh_pending);
        self.resend_table(&families);
    }

    /// One message on the bulk queue (ordered with the UPDATEs).
    fn send_bulk(&mut self, id: ConnId, m: &Message) {
        let neg = self.negotiated_for(id);
        let Some(io) = self.conns.get(&id) else {
            return;
        };
        let mut buf = BytesMut::new();
        match m.encode(&neg, &mut buf) {
            Ok(()) => {
                let q = io.push(true, buf.freeze());
                self.status.send_queue_peak_bytes = self.status.send_queue_peak_bytes.max(q);
            }
            Err(e) => warn!(%id, error = %e, "cannot encode message"),
        }
    }

    fn set_routes(&mut self, routes: Routes) {
        debug!(routes = routes.len(), "desired routes set");
        self.adj.set_desired(routes);
        self.routes_given = true;
        if std::mem::take(&mut self.eor_waits_for_routes) {
            info!("first routes given: sending the initial table and End-of-RIB");
            self.start_initial_sync();
        } else {
            // Restarting the sweep from the first prefix is what keeps a sync
            // interrupted by a change correct (see AdjOut::updates_paced).
            self.start_sync(Vec::new());
        }
    }

    /// Stop for a restart: [`Input::StopKeepRoutes`], then flush and close
    /// as [`Driver::shutdown`] does (its own Stop finds the session stopped).
    async fn stop_keeping_routes(&mut self, communication: Option<String>) {
        info!("stopping so that the peer keeps our routes (graceful restart)");
        self.feed(Input::StopKeepRoutes { communication });
        self.shutdown(subcode::ADMINISTRATIVE_SHUTDOWN, None).await;
    }

    fn on_established(&mut self, neg: Negotiated) {
        self.status.established_generation += 1;
        self.status.initial_table_sent = false;
        self.status.updates_received = 0;
        self.status.negotiated = Some(neg.clone());
        self.status.peer_as = self
            .session
            .established_conn()
            .and_then(|c| self.session.peer_as(c));
        self.status.last_connect_error = None;
        self.status.tcp_keepalive = None;
        if let Some((0, _)) = self.session.timers()
            && let Some(id) = self.session.established_conn()
            && let Some(fd) = self.conns.get(&id).and_then(|io| io.fd.as_ref())
        {
            // No hold timer: without TCP keepalive a peer that vanishes
            // silently would never be noticed.
            match enable_tcp_keepalive(fd) {
                Ok(k) => {
                    info!(keepalive = ?k, "hold time 0: TCP keepalive and user timeout on");
                    self.status.tcp_keepalive = Some(k);
                }
                Err(e) => warn!(error = %e, "hold time 0 and TCP keepalive cannot be set"),
            }
        }
        info!(
            peer_id = ?self.session.peer_router_id(),
            peer_as = ?self.status.peer_as,
            timers = ?self.session.timers(),
            families = ?neg.families,
            four_octet_as = neg.four_octet_as,
            "session established"
        );
        self.adj.reset();
        self.refresh_in_flight = false;
        self.refresh_pending.clear();
        self.outbox = Outbox::default();
        if self.cfg.graceful_restart.is_some() && !self.routes_given {
            info!("graceful restart: End-of-RIB waits for the first complete route set");
            self.eor_waits_for_routes = true;
            return;
        }
        self.start_initial_sync();
    }

    /// The whole Adj-RIB-Out, then End-of-RIB for each family and the
    /// initial-table marker.
    fn start_initial_sync(&mut self) {
        let generation = self.status.established_generation;
        let mut after: Vec<AfterSync> = self
            .session
            .established_conn()
            .and_then(|id| self.out_context(id))
            .map(|ctx| AdjOut::end_of_rib(&ctx))
            .unwrap_or_default()
            .into_iter()
            .map(|u| AfterSync::Message(Message::Update(u)))
            .collect();
        after.push(AfterSync::Marker(Flush::InitialTable(generation)));
        self.start_sync(after);
    }

    fn on_down(&mut self, reason: DownReason) {
        warn!(%reason, "session down");
        self.eor_waits_for_routes = false;
        self.adj.reset();
        self.outbox = Outbox::default();
        self.refresh_in_flight = false;
        self.refresh_pending.clear();
        self.status.prefixes_received = 0;
        self.status.prefixes_announced = 0;
        self.status.initial_table_sent = false;
        self.status.negotiated = None;
        self.status.peer_as = None;
        self.status.tcp_keepalive = None;
        self.status.last_down = Some(reason.to_string());
        self.status.last_down_reason = Some(reason);
    }

    /// Count the UPDATE's prefixes (nothing is kept per prefix) and enforce
    /// [`PeerConfig::max_prefix`].
    fn on_update(&mut self, u: Update) {
        self.status.updates_received += 1;
        let announced = u.nlri.len() + u.attributes.mp_reach.as_ref().map_or(0, |m| m.nlri.len());
        let withdrawn = u.withdrawn.len()
            + u.attributes
                .mp_unreach
                .as_ref()
                .map_or(0, |m| m.withdrawn.len());
        let (announced, withdrawn) = if u.treat_as_withdraw {
            // RFC 7606: the reachable prefixes are withdrawn.
            (0, withdrawn + announced)
        } else {
            (announced, withdrawn)
        };
        self.status.prefixes_received = self
            .status
            .prefixes_received
            .saturating_sub(withdrawn)
            .saturating_add(announced);
        let Some(limit) = self.cfg.max_prefix else {
            return;
        };
        if self.status.prefixes_received <= limit as usize || self.pending_reset.is_some() {
            return;
        }
        let family = u
            .attributes
            .mp_reach
            .as_ref()
            .map_or(Family::IPV4_UNICAST, |m| m.family);
        warn!(
            received = self.status.prefixes_received,
            limit,
            ?family,
            "the peer sent more prefixes than allowed: closing with Cease / Maximum Number of Prefixes Reached"
        );
        self.pending_reset = Some(max_prefix_notification(family, limit));
    }

    fn on_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Frames(id, frames) => {
                for f in frames {
                    if !self.conns.contains_key(&id) {
                        return;
                    }
                    let neg = self.negotiated_for(id);
                    let input = if f.len() > neg.max_message_len() {
                        let mut n =
                            Notification::new(code::MESSAGE_HEADER, subcode::BAD_MESSAGE_LENGTH);
                        n.data = (f.len() as u16).to_be_bytes().to_vec();
                        Input::Malformed {
                            conn: id,
                            notification: n,
                        }
                    } else {
                        match Message::decode(&f, &neg) {
                            Ok(message) => Input::Message { conn: id, message },
                            Err(e) => {
                                warn!(%id, error = %e, "malformed message");
                                Input::Malformed {
                                    conn: id,
                                    notification: Notification::from(&e),
                                }
                            }
                        }
                    };
                    self.feed(input);
                }
            }
            ConnEvent::Malformed(id, notification) => {
                if self.conns.contains_key(&id) {
                    self.feed(Input::Malformed {
                        conn: id,
                        notification,
                    });
                }
            }
            ConnEvent::Closed(id, err) => {
                if self.conns.contains_key(&id) {
                    match err {
                        Some(e) => info!(%id, error = %e, "connection failed"),
                        None => info!(%id, "connection closed by peer"),
                    }
                    self.feed(Input::Closed { conn: id });
                }
            }
            ConnEvent::SendHoldExpired(id) => {
                if self.conns.contains_key(&id) {
                    warn!(
                        %id,
                        send_hold = ?self.cfg.effective_send_hold_time(),
                        "nothing could be written for the send hold time: the peer is not reading"
                    );
                    self.feed(Input::SendHoldExpired { conn: id });
                }
            }
            ConnEvent::Drained(id) => {
                if self.session.established_conn() == Some(id) {
                    self.refill();
                }
            }
            ConnEvent::Flushed(id, flush) => {
                if self.session.established_conn() != Some(id) {
                    return;
                }
                let generation = self.status.established_generation;
                match flush {
                    Flush::InitialTable(m) if m == generation => {
                        self.status.initial_table_sent = true;
                        info!(
                            prefixes = self.adj.announced_count(),
                            updates = self.status.updates_sent,
                            "initial table and End-of-RIB written"
                        );
                    }
                    Flush::Refresh(m) if m == generation => self.refresh_in_flight = false,
                    _ => return,
                }
                self.run_pending_refresh();
            }
        }
    }

    fn on_bfd_failure(&mut self, e: BfdEvent) {
        if self.session.established_conn().is_none() {
            info!(diag = %e.diag, "BFD session down (BGP not Established)");
            return;
        }
        warn!(diag = %e.diag, "BFD session down: closing the BGP session (Cease / BFD Down)");
        self.status.bfd_downs += 1;
        self.feed(Input::BfdDown);
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let mut due: Vec<(Instant, TimerKind)> = self
            .timers
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, t)| (*t, *k))
            .collect();
        due.sort();
        for (_, k) in due {
            // An earlier expiry may have cancelled or re-armed this one.
            if self.timers.get(&k).is_some_and(|t| *t <= now) {
                self.timers.remove(&k);
                self.feed(Input::TimerExpired(k));
            }
        }
    }

    /// Cease and close every connection, the NOTIFICATION behind whatever is
    /// still queued, and wait [`CEASE_FLUSH`] for the writers.
    async fn shutdown(&mut self, cease: u8, communication: Option<String>) {
        info!(cease, ?communication, "shutting down");
        self.ordered_close = true;
        self.feed(Input::Stop {
            subcode: cease,
            communication,
        });
        self.connecting = None;
        self.publish();
        let mut writers: Vec<_> = self.closing.drain(..).collect();
        let flushed = tokio::time::timeout(CEASE_FLUSH, async {
            for w in &mut writers {
                let _ = w.await;
            }
        })
        .await;
        if flushed.is_err() {
            warn!("peer did not take the NOTIFICATION in time; closing anyway");
            for w in &writers {
                w.abort();
            }
        }
    }

    fn publish(&mut self) {
        self.status.state = self.session.state();
        self.status.send_queue_bytes = self
            .conns
            .values()
            .map(|c| c.queued.load(Ordering::Relaxed))
            .sum();
        let new = &self.status;
        self.status_tx.send_if_modified(|s| {
            if s != new {
                *s = new.clone();
                true
            } else {
                false
            }
        });
    }
}

/// Tell a connection we do not accept why (Cease / Connection Rejected,
/// 6/5, RFC 4486 §4), then close it; gives up after a second.
async fn reject(mut stream: TcpStream) {
    let mut buf = BytesMut::new();
    if Message::Notification(crate::fsm::connection_rejected())
        .encode(&Negotiated::default(), &mut buf)
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&buf).await?;
        stream.shutdown().await
    })
    .await;
}

/// Cease / Maximum Number of Prefixes Reached (6/1) with the data RFC 4486
/// §4 gives it: AFI (2 octets), SAFI (1 octet), the upper bound (4 octets).
pub fn max_prefix_notification(family: Family, limit: u32) -> Notification {
    let mut n = Notification::cease(subcode::MAXIMUM_PREFIXES_REACHED, None);
    let mut data = family.afi.to_u16().to_be_bytes().to_vec();
    data.push(family.safi.to_u8());
    data.extend_from_slice(&limit.to_be_bytes());
    n.data = data;
    n
}
