//! Sans-IO BFD session state machine, asynchronous mode (RFC 5880 §6.8).
//!
//! [`Session::handle`] takes one [`Input`] (a received packet that passed the
//! codec checks, a timer expiry, or an administrative command) and returns the
//! [`Output`]s the driver carries out in order: send a packet, (re)arm or
//! cancel the transmit and detection timers, and report state changes. The
//! session never touches a socket and never reads a clock: time enters only as
//! timer expiries, and leaves only as the durations to arm. Transmit jitter
//! (§6.8.7) comes from a small PRNG seeded from [`SessionConfig::seed`], so a
//! scripted test sees the same intervals every run; [`jittered`] is the pure
//! rule.
//!
//! Timers follow §6.8.3: while the session is not Up we advertise a Desired
//! Min TX of at least one second ([`SLOW_TX`]); once Up, the configured
//! intervals, announced with a Poll Sequence (P set in every packet until a
//! packet with F arrives). A larger TX interval or a smaller RX interval only
//! takes effect when the Poll Sequence completes; the other directions take
//! effect at once.
//!
//! Not built: Demand mode, Echo mode, authentication.

use std::time::Duration;

use super::packet::{ControlPacket, Diag, State};

/// Desired Min TX advertised while the session is not Up (RFC 5880 §6.8.3: at least 1 s).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// Session parameters. Intervals are rounded down to whole microseconds on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.LocalDiscr: non-zero, unique among this system's sessions (the driver assigns it).
    pub local_discr: u32,
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult (non-zero).
    pub detect_mult: u8,
    /// Passive role: send nothing until the peer has sent a packet (§6.1).
    pub passive: bool,
    /// Seed of the transmit-jitter PRNG (0 picks a fixed non-zero seed).
    pub seed: u64,
}

impl Default for SessionConfig {
    /// MetalLB's defaults: 300 ms both ways, multiplier 3, active.
    fn default() -> Self {
        SessionConfig {
            local_discr: 1,
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
            seed: 0x5eed_bfd0,
        }
    }
}

/// Something happened; the session decides what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bring the session up from its initial Down state (active role: start sending).
    Start,
    /// A packet for this session passed [`ControlPacket::decode`] (and the GTSM check).
    Received(ControlPacket),
    /// The timer armed with [`Output::ArmTx`] expired: time to send a periodic packet.
    TxTimer,
    /// The timer armed with [`Output::ArmDetect`] expired: nothing heard for a Detection Time.
    DetectTimer,
    /// Hold the session down on purpose (§6.8.16); the peer sees AdminDown with Diag 7.
    AdminDown,
    /// Leave AdminDown (back to Down, then the usual handshake).
    AdminUp,
    /// New local timer parameters; announced with a Poll Sequence when Up.
    SetTimers {
        /// New bfd.DesiredMinTxInterval.
        desired_min_tx: Duration,
        /// New bfd.RequiredMinRxInterval.
        required_min_rx: Duration,
        /// New bfd.DetectMult (0 keeps the current one).
        detect_mult: u8,
    },
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this packet to the peer now.
    Send(ControlPacket),
    /// (Re)start the transmit timer.
    ArmTx(Duration),
    /// Stop the transmit timer.
    CancelTx,
    /// (Re)start the detection timer.
    ArmDetect(Duration),
    /// Stop the detection timer.
    CancelDetect,
    /// The local session state changed.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// bfd.LocalDiag after the change: why we left Up (or None on the way up).
        diag: Diag,
        /// The peer went AdminDown on purpose. RFC 5882 §3.2: a client (BGP) must not
        /// treat this as a path failure, so it must not tear its session down for it.
        remote_admin_down: bool,
    },
}

/// The timer values in effect, for display and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Interval between our periodic packets before jitter: max(our Desired Min TX, their Required Min RX).
    pub tx_interval: Duration,
    /// Detection Time: their Detect Mult × max(our Required Min RX, their Desired Min TX).
    pub detection_time: Duration,
    /// Desired Min TX we advertise now.
    pub local_desired_min_tx: Duration,
    /// Required Min RX we advertise now.
    pub local_required_min_rx: Duration,
    /// The peer's Desired Min TX.
    pub remote_desired_min_tx: Duration,
    /// The peer's Required Min RX.
    pub remote_required_min_rx: Duration,
    /// The peer's Detect Mult (0 before it was heard).
    pub remote_detect_mult: u8,
}

/// Applies the §6.8.7 jitter to `interval`: a value in 75-100 % of it, or 75-90 %
/// when `detect_mult` is 1, picked by the random value `r`.
pub fn jittered(interval: Duration, detect_mult: u8, r: u32) -> Duration {
    let (lo, hi) = if detect_mult == 1 {
        (750u64, 900u64)
    } else {
        (750, 1000)
    };
    let permille = lo + u64::from(r) % (hi - lo + 1);
    let us = interval.as_micros().min(u128::from(u64::MAX / 1000)) as u64;
    Duration::from_micros(us * permille / 1000)
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// One BFD session (the §6.8.1 state variables and the §6.8.6 reception rules).
#[derive(Debug, Clone)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    remote_state: State,
    remote_discr: u32,
    diag: Diag,
    remote_min_rx: u32,
    remote_desired_tx: u32,
    remote_detect_mult: u8,
    adv_tx: Duration,
    adv_rx: Duration,
    active_tx: Duration,
    active_rx: Duration,
    poll: bool,
    heard: bool,
    started: bool,
    tx_armed: bool,
    admin_down_tx_left: u8,
    rng: u64,
}

impl Session {
    /// A session in state Down that sends nothing until [`Input::Start`].
    pub fn new(cfg: SessionConfig) -> Session {
        let rng = if cfg.seed == 0 { 0x5eed_bfd0 } else { cfg.seed };
        let adv_tx = cfg.desired_min_tx.max(SLOW_TX);
        let adv_rx = cfg.required_min_rx;
        Session {
            state: State::Down,
            remote_state: State::Down,
            remote_discr: 0,
            diag: Diag::None,
            // §6.8.1: bfd.RemoteMinRxInterval starts at 1 µs.
            remote_min_rx: 1,
            remote_desired_tx: 0,
            remote_detect_mult: 0,
            adv_tx,
            adv_rx,
            active_tx: adv_tx,
            active_rx: adv_rx,
            poll: false,
            heard: false,
            started: false,
            tx_armed: false,
            admin_down_tx_left: 0,
            rng,
            cfg,
        }
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.RemoteSessionState.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// bfd.LocalDiag.
    pub fn diag(&self) -> Diag {
        self.diag
    }

    /// bfd.LocalDiscr.
    pub fn local_discr(&self) -> u32 {
        self.cfg.local_discr
    }

    /// bfd.RemoteDiscr (0 until heard, and again after a Detection Time of silence).
    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// A Poll Sequence is in progress (our packets carry P).
    pub fn polling(&self) -> bool {
        self.poll
    }

    /// The configuration (with the latest [`Input::SetTimers`] applied).
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The timers in effect.
    pub fn negotiated(&self) -> Negotiated {
        Negotiated {
            tx_interval: self.tx_interval(),
            detection_time: self.detection_time(),
            local_desired_min_tx: self.adv_tx,
            local_required_min_rx: self.adv_rx,
            remote_desired_min_tx: Duration::from_micros(self.remote_desired_tx.into()),
            remote_required_min_rx: Duration::from_micros(self.remote_min_rx.into()),
            remote_detect_mult: self.remote_detect_mult,
        }
    }

    fn tx_interval(&self) -> Duration {
        self.active_tx
            .max(Duration::from_micros(self.remote_min_rx.into()))
    }

    fn detection_time(&self) -> Duration {
        self.active_rx
            .max(Duration::from_micros(self.remote_desired_tx.into()))
            * u32::from(self.remote_detect_mult)
    }

    fn next_rand(&mut self) -> u32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn may_send(&self) -> bool {
        self.started
            && (!self.cfg.passive || self.heard)
            && self.remote_min_rx != 0
            && (self.state != State::AdminDown || self.admin_down_tx_left > 0)
    }

    fn packet(&self, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.diag,
            state: self.state,
            // §6.5: P and F are never both set; a Final goes out on its own.
            poll: self.poll && !final_,
            final_,
            control_plane_independent: false,
            authentication: false,
            demand: false,
            multipoint: false,
            detect_mult: self.cfg.detect_mult,
            my_discr: self.cfg.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx: micros(self.adv_tx),
            required_min_rx: micros(self.adv_rx),
            required_min_echo_rx: 0,
        }
    }

    /// Sends one packet now (a Final, or news of a state change) and restarts the
    /// transmit timer from here.
    fn send_now(&mut self, final_: bool, out: &mut Vec<Output>) {
        // A Final answers a Poll even when periodic packets are not wanted (§6.8.7).
        let final_allowed = final_ && self.started && self.state != State::AdminDown;
        if !(self.may_send() || final_allowed) {
            return;
        }
        if self.state == State::AdminDown {
            self.admin_down_tx_left = self.admin_down_tx_left.saturating_sub(1);
        }
        out.push(Output::Send(self.packet(final_)));
        self.arm_tx(out);
    }

    fn arm_tx(&mut self, out: &mut Vec<Output>) {
        if self.may_send() {
            let r = self.next_rand();
            out.push(Output::ArmTx(jittered(
                self.tx_interval(),
                self.cfg.detect_mult,
                r,
            )));
            self.tx_armed = true;
        } else if self.tx_armed {
            out.push(Output::CancelTx);
            self.tx_armed = false;
        }
    }

    /// §6.8.3: recompute what we advertise; start a Poll Sequence when it changes while Up.
    fn update_timers(&mut self) {
        let tx = if self.state == State::Up {
            self.cfg.desired_min_tx
        } else {
            self.cfg.desired_min_tx.max(SLOW_TX)
        };
        let rx = self.cfg.required_min_rx;
        if tx == self.adv_tx && rx == self.adv_rx {
            return;
        }
        self.adv_tx = tx;
        self.adv_rx = rx;
        if self.state == State::Up {
            self.poll = true;
            // Safe directions apply now; the others when the Final arrives.
            if tx <= self.active_tx {
                self.active_tx = tx;
            }
            if rx >= self.active_rx {
                self.active_rx = rx;
            }
        } else {
            self.active_tx = tx;
            self.active_rx = rx;
        }
    }

    fn change(&mut self, to: State, diag: Diag, remote_admin_down: bool, out: &mut Vec<Output>) {
        let from = self.state;
        self.state = to;
        self.diag = diag;
        if to != State::Up {
            // A Poll Sequence only matters while Up (the values are re-announced on the way up).
            self.poll = false;
        }
        self.update_timers();
        out.push(Output::StateChanged {
            from,
            to,
            diag,
            remote_admin_down,
        });
    }

    /// Processes one input; returns what the driver must do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                if !self.started {
                    self.started = true;
                    self.send_now(false, &mut out);
                }
            }
            Input::Received(p) => self.receive(p, &mut out),
            Input::TxTimer => {
                self.tx_armed = false;
                if self.may_send() {
                    self.send_now(false, &mut out);
                }
            }
            Input::DetectTimer => {
                // §6.8.1: bfd.RemoteDiscr is reset when a Detection Time passes in silence.
                self.remote_discr = 0;
                self.remote_state = State::Down;
                if matches!(self.state, State::Init | State::Up) {
                    self.change(
                        State::Down,
                        Diag::ControlDetectionTimeExpired,
                        false,
                        &mut out,
                    );
                    self.send_now(false, &mut out);
                }
            }
            Input::AdminDown => {
                if self.state != State::AdminDown {
                    // Keep telling the peer for at least its Detection Time (§6.8.16).
                    self.admin_down_tx_left = self.remote_detect_mult.max(self.cfg.detect_mult) + 1;
                    self.change(
                        State::AdminDown,
                        Diag::AdministrativelyDown,
                        false,
                        &mut out,
                    );
                    out.push(Output::CancelDetect);
                    self.send_now(false, &mut out);
                }
            }
            Input::AdminUp => {
                if self.state == State::AdminDown {
                    self.admin_down_tx_left = 0;
                    self.change(State::Down, Diag::None, false, &mut out);
                    self.send_now(false, &mut out);
                    if !self.tx_armed {
                        self.arm_tx(&mut out);
                    }
                }
            }
            Input::SetTimers {
                desired_min_tx,
                required_min_rx,
                detect_mult,
            } => {
                self.cfg.desired_min_tx = desired_min_tx;
                self.cfg.required_min_rx = required_min_rx;
                if detect_mult != 0 {
                    self.cfg.detect_mult = detect_mult;
                }
                self.update_timers();
                if self.poll {
                    // Start the Poll Sequence now rather than at the next periodic packet.
                    self.send_now(false, &mut out);
                }
            }
        }
        out
    }

    /// §6.8.6, from "If the Your Discriminator field is nonzero" on (the codec did the rest).
    fn receive(&mut self, p: ControlPacket, out: &mut Vec<Output>) {
        if p.your_discr != 0 && p.your_discr != self.cfg.local_discr {
            return;
        }
        if self.state == State::AdminDown {
            return;
        }
        self.heard = true;
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_tx = p.desired_min_tx;
        self.remote_detect_mult = p.detect_mult;
        if p.final_ && self.poll {
            // Poll Sequence complete: the pending values take effect.
            self.poll = false;
            self.active_tx = self.adv_tx;
            self.active_rx = self.adv_rx;
        }
        let before = self.state;
        if p.state == State::AdminDown {
            if self.state != State::Down {
                self.change(State::Down, Diag::NeighborSignaledSessionDown, true, out);
            }
        } else {
            match (self.state, p.state) {
                (State::Down, State::Down) => self.change(State::Init, Diag::None, false, out),
                (State::Down, State::Init) => self.change(State::Up, Diag::None, false, out),
                (State::Init, State::Init | State::Up) => {
                    self.change(State::Up, Diag::None, false, out)
                }
                (State::Up, State::Down) => {
                    self.change(State::Down, Diag::NeighborSignaledSessionDown, false, out)
                }
                _ => {}
            }
        }
        if self.started && (self.state != before || p.poll) {
            self.send_now(p.poll, out);
        } else if !self.tx_armed || self.remote_min_rx == 0 {
            // Passive role heard its peer, or the peer changed its mind about receiving.
            self.arm_tx(out);
        }
        let detect = self.detection_time();
        out.push(Output::ArmDetect(detect));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn cfg(discr: u32) -> SessionConfig {
        SessionConfig {
            local_discr: discr,
            ..SessionConfig::default()
        }
    }

    fn sent(out: &[Output]) -> Vec<ControlPacket> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    fn changes(out: &[Output]) -> Vec<(State, State, Diag, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Output::StateChanged {
                    from,
                    to,
                    diag,
                    remote_admin_down,
                } => Some((*from, *to, *diag, *remote_admin_down)),
                _ => None,
            })
            .collect()
    }

    fn armed_tx(out: &[Output]) -> Option<Duration> {
        out.iter().rev().find_map(|o| match o {
            Output::ArmTx(d) => Some(*d),
            _ => None,
        })
    }

    fn armed_detect(out: &[Output]) -> Option<Duration> {
        out.iter().rev().find_map(|o| match o {
            Output::ArmDetect(d) => Some(*d),
            _ => None,
        })
    }

    /// Delivers every packet in `out` to `to`, repeatedly in both directions,
    /// until both sides go quiet (no immediate replies). Returns all outputs seen.
    fn exchange(
        a: &mut Session,
        b: &mut Session,
        first: Vec<Output>,
    ) -> (Vec<Output>, Vec<Output>) {
        let (mut all_a, mut all_b) = (first.clone(), vec![]);
        let mut pending = sent(&first);
        let mut a_to_b = true;
        for _ in 0..20 {
            if pending.is_empty() {
                break;
            }
            let mut next = vec![];
            for p in pending {
                let (rx, log) = if a_to_b {
                    (&mut *b, &mut all_b)
                } else {
                    (&mut *a, &mut all_a)
                };
                let o = rx.handle(Input::Received(p));
                next.extend(sent(&o));
                log.extend(o);
            }
            pending = next;
            a_to_b = !a_to_b;
        }
        (all_a, all_b)
    }

    /// Brings two sessions Up the way the wire would: A starts, B starts, packets flow.
    fn up_pair() -> (Session, Session) {
        let mut a = Session::new(cfg(11));
        let mut b = Session::new(cfg(22));
        let _ = b.handle(Input::Start);
        let first = a.handle(Input::Start);
        let _ = exchange(&mut a, &mut b, first);
        // Periodic packets finish the Poll Sequences both sides started when going Up.
        for _ in 0..2 {
            let o = a.handle(Input::TxTimer);
            let _ = exchange(&mut a, &mut b, o);
            let o = b.handle(Input::TxTimer);
            let _ = exchange(&mut b, &mut a, o);
        }
        (a, b)
    }

    #[test]
    fn jitter_bounds() {
        let i = MS(1000);
        assert_eq!(jittered(i, 3, 0), MS(750));
        assert_eq!(jittered(i, 3, 250), MS(1000));
        assert_eq!(jittered(i, 3, 251), MS(750));
        assert_eq!(jittered(i, 1, 150), MS(900));
        assert_eq!(jittered(i, 1, 151), MS(750));
        for r in [1u32, 77, 1 << 31, u32::MAX] {
            let d = jittered(i, 1, r);
            assert!(d >= MS(750) && d <= MS(900), "{d:?}");
        }
    }

    #[test]
    fn start_sends_down_at_the_slow_rate() {
        let mut a = Session::new(cfg(11));
        let o = a.handle(Input::Start);
        let p = sent(&o);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].state, State::Down);
        assert_eq!(p[0].your_discr, 0);
        assert_eq!(p[0].my_discr, 11);
        assert_eq!(p[0].desired_min_tx, 1_000_000, "slow TX while not Up");
        assert_eq!(p[0].required_min_rx, 300_000);
        let t = armed_tx(&o).unwrap();
        assert!(t >= MS(750) && t <= MS(1000), "{t:?}");
        // A second Start does nothing.
        assert!(a.handle(Input::Start).is_empty());
    }

    #[test]
    fn three_way_handshake() {
        let mut a = Session::new(cfg(11));
        let mut b = Session::new(cfg(22));
        let _ = b.handle(Input::Start);
        let first = a.handle(Input::Start);
        // B hears A's Down: B goes Init, replies at once.
        let ob = b.handle(Input::Received(sent(&first)[0]));
        assert_eq!(
            changes(&ob),
            vec![(State::Down, State::Init, Diag::None, false)]
        );
        let pb = sent(&ob);
        assert_eq!((pb[0].state, pb[0].your_discr), (State::Init, 11));
        // A hears Init: Up (Down -> Up directly).
        let oa = a.handle(Input::Received(pb[0]));
        assert_eq!(
            changes(&oa),
            vec![(State::Down, State::Up, Diag::None, false)]
        );
        let pa = sent(&oa);
        assert_eq!(pa[0].state, State::Up);
        assert!(pa[0].poll, "going Up announces the fast rate with a Poll");
        assert_eq!(pa[0].desired_min_tx, 300_000);
        // B hears Up: Up, and answers the Poll with a Final (no P in the same packet).
        let ob = b.handle(Input::Received(pa[0]));
        assert_eq!(
            changes(&ob),
            vec![(State::Init, State::Up, Diag::None, false)]
        );
        let pb = sent(&ob);
        assert!(pb[0].final_ && !pb[0].poll);
        assert_eq!(b.state(), State::Up);
        assert!(b.polling(), "B still has its own Poll to run");
        // A gets the Final: its Poll Sequence is over.
        let _ = a.handle(Input::Received(pb[0]));
        assert!(!a.polling());
    }

    #[test]
    fn poll_set_until_final_received() {
        let (mut a, mut b) = up_pair();
        assert!(!a.polling() && !b.polling());
        let o = a.handle(Input::SetTimers {
            desired_min_tx: MS(100),
            required_min_rx: MS(200),
            detect_mult: 5,
        });
        let p = sent(&o)[0];
        assert!(p.poll);
        assert_eq!(
            (p.desired_min_tx, p.required_min_rx, p.detect_mult),
            (100_000, 200_000, 5)
        );
        // Lost on the way: every periodic packet keeps P.
        for _ in 0..3 {
            assert!(sent(&a.handle(Input::TxTimer))[0].poll);
        }
        let ob = b.handle(Input::Received(sent(&a.handle(Input::TxTimer))[0]));
        let fin = sent(&ob)[0];
        assert!(fin.final_);
        let _ = a.handle(Input::Received(fin));
        assert!(!a.polling());
        assert!(!sent(&a.handle(Input::TxTimer))[0].poll);
        // B now sends at max(its 300 ms, our 200 ms RX) and detects after 5 x max(300, 100).
        let n = b.negotiated();
        assert_eq!(n.tx_interval, MS(300));
        assert_eq!(n.detection_time, MS(1500));
        assert_eq!(
            a.negotiated().detection_time,
            MS(900),
            "3 x max(200 ms, B's 300 ms)"
        );
    }

    #[test]
    fn slower_tx_waits_for_the_final_faster_applies_at_once() {
        let (mut a, _b) = up_pair();
        assert_eq!(a.negotiated().tx_interval, MS(300));
        let _ = a.handle(Input::SetTimers {
            desired_min_tx: MS(2000),
            required_min_rx: MS(300),
            detect_mult: 0,
        });
        assert_eq!(a.negotiated().tx_interval, MS(300), "increase waits for F");
        let mut fin = a.packet(true);
        fin.my_discr = 22;
        fin.your_discr = 11;
        fin.desired_min_tx = 300_000;
        fin.required_min_rx = 300_000;
        fin.poll = false;
        let _ = a.handle(Input::Received(fin));
        assert_eq!(a.negotiated().tx_interval, MS(2000));
        let _ = a.handle(Input::SetTimers {
            desired_min_tx: MS(50),
            required_min_rx: MS(300),
            detect_mult: 0,
        });
        assert!(a.polling());
        // Decrease applies before the Final, bounded by the peer's RX (300 ms).
        assert_eq!(a.negotiated().tx_interval, MS(300));
        assert_eq!(a.negotiated().local_desired_min_tx, MS(50));
    }

    #[test]
    fn timer_negotiation_uses_the_larger_value() {
        let mut a = Session::new(SessionConfig {
            local_discr: 1,
            desired_min_tx: MS(100),
            required_min_rx: MS(150),
            detect_mult: 4,
            ..SessionConfig::default()
        });
        let _ = a.handle(Input::Start);
        let peer = ControlPacket {
            diag: Diag::None,
            state: State::Init,
            poll: false,
            final_: false,
            control_plane_independent: false,
            authentication: false,
            demand: false,
            multipoint: false,
            detect_mult: 5,
            my_discr: 9,
            your_discr: 1,
            desired_min_tx: 400_000,
            required_min_rx: 250_000,
            required_min_echo_rx: 0,
        };
        let o = a.handle(Input::Received(peer));
        assert_eq!(a.state(), State::Up);
        // TX: max(our 100, their RX 250); detect: their 5 x max(our RX 150, their TX 400).
        assert_eq!(a.negotiated().tx_interval, MS(250));
        assert_eq!(armed_detect(&o), Some(MS(2000)));
        let t = armed_tx(&o).unwrap();
        assert!(t >= MS(187) && t <= MS(250), "{t:?}");
    }

    #[test]
    fn detection_timeout_goes_down_with_diag_1() {
        let (mut a, _b) = up_pair();
        let o = a.handle(Input::DetectTimer);
        assert_eq!(
            changes(&o),
            vec![(
                State::Up,
                State::Down,
                Diag::ControlDetectionTimeExpired,
                false
            )]
        );
        let p = sent(&o)[0];
        assert_eq!(
            (p.state, p.diag, p.your_discr),
            (State::Down, Diag::ControlDetectionTimeExpired, 0)
        );
        assert_eq!(p.desired_min_tx, 1_000_000, "back to the slow rate");
        assert!(!p.poll);
        // In Down a further expiry changes nothing.
        assert!(changes(&a.handle(Input::DetectTimer)).is_empty());
    }

    #[test]
    fn peer_down_signalled_goes_down_with_diag_3() {
        let (mut a, mut b) = up_pair();
        let _ = b.handle(Input::DetectTimer);
        let p = b.packet(false);
        assert_eq!(p.state, State::Down);
        let mut p = p;
        p.your_discr = 11;
        let o = a.handle(Input::Received(p));
        assert_eq!(
            changes(&o),
            vec![(
                State::Up,
                State::Down,
                Diag::NeighborSignaledSessionDown,
                false
            )]
        );
    }

    #[test]
    fn local_admin_down_then_up() {
        let (mut a, mut b) = up_pair();
        let o = a.handle(Input::AdminDown);
        assert_eq!(
            changes(&o),
            vec![(
                State::Up,
                State::AdminDown,
                Diag::AdministrativelyDown,
                false
            )]
        );
        assert!(o.contains(&Output::CancelDetect));
        let p = sent(&o)[0];
        assert_eq!(
            (p.state, p.diag),
            (State::AdminDown, Diag::AdministrativelyDown)
        );
        // The peer goes Down, and is told this was on purpose.
        let ob = b.handle(Input::Received(p));
        assert_eq!(
            changes(&ob),
            vec![(
                State::Up,
                State::Down,
                Diag::NeighborSignaledSessionDown,
                true
            )]
        );
        // We ignore the peer while AdminDown, keep sending for a while, then stop.
        assert!(a.handle(Input::Received(sent(&ob)[0])).is_empty());
        let mut n = 1;
        loop {
            let o = a.handle(Input::TxTimer);
            if sent(&o).is_empty() {
                break;
            }
            assert_eq!(sent(&o)[0].state, State::AdminDown);
            n += 1;
            assert!(n < 10);
        }
        assert_eq!(n, 4, "detect mult 3 + 1 packets");
        // AdminUp: back to Down and the handshake runs again.
        let o = a.handle(Input::AdminUp);
        assert_eq!(
            changes(&o),
            vec![(State::AdminDown, State::Down, Diag::None, false)]
        );
        assert!(armed_tx(&o).is_some());
        let _ = exchange(&mut a, &mut b, o);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    }

    #[test]
    fn remote_admin_down_in_init_goes_down_but_down_stays_down() {
        let mut a = Session::new(cfg(11));
        let _ = a.handle(Input::Start);
        let mut p = Session::new(cfg(22)).packet(false);
        let _ = a.handle(Input::Received(p));
        assert_eq!(a.state(), State::Init);
        p.state = State::AdminDown;
        p.diag = Diag::AdministrativelyDown;
        let o = a.handle(Input::Received(p));
        assert_eq!(
            changes(&o),
            vec![(
                State::Init,
                State::Down,
                Diag::NeighborSignaledSessionDown,
                true
            )]
        );
        assert!(changes(&a.handle(Input::Received(p))).is_empty());
    }

    #[test]
    fn passive_waits_for_the_peer() {
        let mut a = Session::new(SessionConfig {
            passive: true,
            ..cfg(11)
        });
        assert!(a.handle(Input::Start).is_empty());
        assert!(a.handle(Input::TxTimer).is_empty());
        let mut b = Session::new(cfg(22));
        let ob = b.handle(Input::Start);
        let o = a.handle(Input::Received(sent(&ob)[0]));
        assert_eq!(sent(&o)[0].state, State::Init);
        assert!(armed_tx(&o).is_some());
        let _ = exchange(&mut a, &mut b, o);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    }

    #[test]
    fn wrong_your_discriminator_is_discarded() {
        let mut a = Session::new(cfg(11));
        let _ = a.handle(Input::Start);
        let mut p = Session::new(cfg(22)).packet(false);
        p.your_discr = 12;
        assert!(a.handle(Input::Received(p)).is_empty());
        assert_eq!(a.remote_discr(), 0);
    }

    #[test]
    fn peer_asking_for_no_packets_stops_periodic_tx() {
        let (mut a, _b) = up_pair();
        let mut p = a.packet(false);
        p.my_discr = 22;
        p.your_discr = 11;
        p.required_min_rx = 0;
        let o = a.handle(Input::Received(p));
        assert!(o.contains(&Output::CancelTx));
        assert!(a.handle(Input::TxTimer).is_empty());
        // A Poll is still answered.
        p.poll = true;
        let o = a.handle(Input::Received(p));
        assert!(sent(&o)[0].final_);
    }
}
