//! The speaker's `/metrics`, under MetalLB's names, computed at scrape time
//! from the speaker's state (nothing is kept per label set between scrapes),
//! and its `/readyz`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ferrolb_bgp::bfd::State as BfdState;
use ferrolb_bgp::driver::{BfdView, SessionStatus};
use ferrolb_bgp::fsm::State;
use ferrolb_ops::metrics::{ConfigGauges, Metrics, ScrapeCollectorBuilder};
use tokio::sync::watch;

use crate::announce::PeerKey;
use crate::bgp_status::WriteCounters;
use crate::layer2::Layer2;
use crate::pass::Announcer;
use crate::sources::lock;

/// One BGP session as `/metrics` shows it.
#[derive(Debug)]
pub struct SessionView {
    /// The peer (label `peer`).
    pub peer: PeerKey,
    /// The session's live status.
    pub status: watch::Receiver<SessionStatus>,
    /// Prefixes the peer should hold (`metallb_bgp_pending_prefixes_total`).
    pub desired: usize,
    /// The session's BFD session, when its peer has a BFD profile
    /// (`metallb_bfd_*`, label `peer` = the peer's address, as MetalLB's FRR
    /// mode labels them).
    pub bfd: Option<BfdView>,
}

/// Layer 2 counters per IP (MetalLB's `metallb_layer2_*`, label `ip`):
/// ARP requests / Neighbor Solicitations received for an IP this node
/// answers for, answers sent, gratuitous ARPs / unsolicited Neighbor
/// Advertisements sent. The ARP/NDP announcer reports into it.
#[derive(Debug, Default)]
pub struct L2Counters {
    per_ip: Mutex<BTreeMap<IpAddr, [u64; 3]>>,
}

impl L2Counters {
    fn bump(&self, ip: IpAddr, i: usize) {
        lock(&self.per_ip).entry(ip).or_default()[i] += 1;
    }

    /// An ARP request / Neighbor Solicitation for `ip` arrived.
    pub fn request_received(&self, ip: IpAddr) {
        self.bump(ip, 0);
    }

    /// An answer for `ip` was sent.
    pub fn response_sent(&self, ip: IpAddr) {
        self.bump(ip, 1);
    }

    /// A gratuitous ARP / unsolicited Neighbor Advertisement for `ip` was sent.
    pub fn gratuitous_sent(&self, ip: IpAddr) {
        self.bump(ip, 2);
    }

    /// `[received, responses, gratuitous]` per IP, in IP order.
    pub fn snapshot(&self) -> Vec<(IpAddr, [u64; 3])> {
        lock(&self.per_ip).iter().map(|(ip, c)| (*ip, *c)).collect()
    }
}

impl ferrolb_l2::L2Observer for L2Counters {
    fn request_received(&self, ip: IpAddr) {
        L2Counters::request_received(self, ip);
    }
    fn response_sent(&self, ip: IpAddr) {
        L2Counters::response_sent(self, ip);
    }
    fn gratuitous_sent(&self, ip: IpAddr) {
        L2Counters::gratuitous_sent(self, ip);
    }
}

/// What the speaker's endpoints read.
#[derive(Debug, Default)]
pub struct SpeakerState {
    /// The caches are synced and a first pass ran (ready).
    pub synced: bool,
    /// A configuration was ever loaded.
    pub config_loaded: bool,
    /// Running on an older configuration because the latest was rejected.
    pub config_stale: bool,
    /// The Services this node announces.
    pub announcer: Announcer,
    /// The BGP sessions.
    pub sessions: Vec<SessionView>,
    /// The ServiceBGPStatus writer's counters, once it runs.
    pub status_writes: Option<Arc<WriteCounters>>,
    /// The Services this node answers ARP/NDP for.
    pub layer2: Layer2,
    /// The layer 2 counters, once the announcer runs.
    pub l2_counters: Option<Arc<L2Counters>>,
}

/// Shared between the decision loop and the HTTP endpoints.
pub type Shared = Arc<Mutex<SpeakerState>>;

/// Registers the speaker's metrics, read from `shared` at each scrape. `node`
/// is the `node` label of `metallb_speaker_announced`.
pub fn register(
    metrics: &mut Metrics,
    shared: Shared,
    node: String,
) -> Result<(), ferrolb_ops::Error> {
    let mut b = ScrapeCollectorBuilder::new();
    let config = ConfigGauges::declare(&mut b)?;
    let up = b.gauge(
        "metallb_bgp_session_up",
        "BGP session state (1 is up, 0 is down)",
        &["peer"],
    )?;
    let updates = b.counter(
        "metallb_bgp_updates_total",
        "Number of BGP UPDATE messages sent",
        &["peer"],
    )?;
    let prefixes = b.gauge(
        "metallb_bgp_announced_prefixes_total",
        "Number of prefixes currently being advertised on the BGP session",
        &["peer"],
    )?;
    let pending = b.gauge(
        "metallb_bgp_pending_prefixes_total",
        "Number of prefixes that should be advertised on the BGP session",
        &["peer"],
    )?;
    let announced = b.gauge(
        "metallb_speaker_announced",
        "Services being announced from this node. This is desired state, it does not guarantee that the routing protocols have converged.",
        &["service", "protocol", "node", "ip"],
    )?;
    let status_writes = b.counter(
        "ferrolb_speaker_status_writes_total",
        "API requests that wrote ServiceBGPStatus objects (a create is followed by a status patch)",
        &["verb"],
    )?;
    let status_errors = b.counter(
        "ferrolb_speaker_status_write_errors_total",
        "ServiceBGPStatus writes the API server refused or that failed",
        &[],
    )?;
    let status_pending = b.gauge(
        "ferrolb_speaker_status_writes_pending",
        "ServiceBGPStatus writes waiting for the write budget",
        &[],
    )?;
    let bfd_up = b.gauge(
        "metallb_bfd_session_up",
        "BFD session state (1 is up, 0 is down)",
        &["peer"],
    )?;
    let bfd_in = b.counter(
        "metallb_bfd_control_packet_input",
        "Number of received BFD control packets",
        &["peer"],
    )?;
    let bfd_out = b.counter(
        "metallb_bfd_control_packet_output",
        "Number of sent BFD control packets",
        &["peer"],
    )?;
    let bfd_up_events = b.counter(
        "metallb_bfd_session_up_events",
        "Number of BFD session up events",
        &["peer"],
    )?;
    let bfd_down_events = b.counter(
        "metallb_bfd_session_down_events",
        "Number of BFD session down events",
        &["peer"],
    )?;
    let l2_received = b.counter(
        "metallb_layer2_requests_received",
        "ARP requests and Neighbor Solicitations received for an IP this node answers for",
        &["ip"],
    )?;
    let l2_responses = b.counter(
        "metallb_layer2_responses_sent",
        "ARP replies and Neighbor Advertisements sent in answer, per IP",
        &["ip"],
    )?;
    let l2_gratuitous = b.counter(
        "metallb_layer2_gratuitous_sent",
        "Gratuitous ARPs and unsolicited Neighbor Advertisements sent on taking an IP over",
        &["ip"],
    )?;
    let collector = b.build(move |out| {
        let st = lock(&shared);
        config.add(out, st.config_loaded, st.config_stale);
        for s in &st.sessions {
            let peer = [s.peer.to_string()];
            let status = s.status.borrow();
            let established = status.state == State::Established;
            out.add(up, &peer, f64::from(u8::from(established)));
            out.add(updates, &peer, status.updates_sent as f64);
            out.add(prefixes, &peer, status.prefixes_announced as f64);
            out.add(pending, &peer, s.desired as f64);
            if let Some(bfd) = &s.bfd {
                use std::sync::atomic::Ordering::Relaxed;
                let peer = [s.peer.addr.to_string()];
                let up = bfd.status.borrow().state == BfdState::Up;
                let c = &bfd.counters;
                out.add(bfd_up, &peer, f64::from(u8::from(up)));
                out.add(bfd_in, &peer, c.control_packet_input.load(Relaxed) as f64);
                out.add(bfd_out, &peer, c.control_packet_output.load(Relaxed) as f64);
                out.add(
                    bfd_up_events,
                    &peer,
                    c.session_up_events.load(Relaxed) as f64,
                );
                out.add(
                    bfd_down_events,
                    &peer,
                    c.session_down_events.load(Relaxed) as f64,
                );
            }
        }
        if let Some(c) = &st.status_writes {
            use std::sync::atomic::Ordering::Relaxed;
            for (verb, n) in [
                ("create", &c.creates),
                ("patch", &c.patches),
                ("delete", &c.deletes),
            ] {
                out.add(status_writes, &[verb], n.load(Relaxed) as f64);
            }
            out.add(status_errors, &[] as &[&str], c.errors.load(Relaxed) as f64);
            out.add(
                status_pending,
                &[] as &[&str],
                c.pending.load(Relaxed) as f64,
            );
        }
        if out.wants(announced) {
            for (svc, ips) in st.announcer.announced() {
                for ip in ips {
                    out.add(announced, &[svc, "bgp", &node, &ip.to_string()], 1.0);
                }
            }
            for (svc, ips) in st.layer2.owned() {
                for ip in ips {
                    out.add(announced, &[svc, "layer2", &node, &ip.to_string()], 1.0);
                }
            }
        }
        if let Some(c) = &st.l2_counters {
            for (ip, [rx, tx, garp]) in c.snapshot() {
                let ip = [ip.to_string()];
                out.add(l2_received, &ip, rx as f64);
                out.add(l2_responses, &ip, tx as f64);
                out.add(l2_gratuitous, &ip, garp as f64);
            }
        }
    });
    metrics.add(collector)
}

/// `/readyz`: ready once the caches are synced and a first pass ran on a
/// valid configuration.
pub fn ready(shared: &Shared) -> Result<(), String> {
    if lock(shared).synced {
        Ok(())
    } else {
        Err("caches not synced, or no valid configuration loaded yet".to_string())
    }
}
