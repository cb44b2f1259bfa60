//! `/metrics` for the gossip: the view (how many speakers are alive, whether
//! it is the API server's fallback) and datagram counters, read at scrape
//! time.

use std::sync::atomic::Ordering::Relaxed;

use ferrolb_ops::metrics::{Metrics, ScrapeCollectorBuilder};

use super::{Members, ViewSource};

/// Registers `ferrolb_members_alive`, `ferrolb_members_view_fallback` and
/// the `ferrolb_members_datagrams_*` / `…_bytes_*` counters of `members`.
pub fn register(metrics: &mut Metrics, members: &Members) -> Result<(), ferrolb_ops::Error> {
    let mut b = ScrapeCollectorBuilder::new();
    let alive = b.gauge(
        "ferrolb_members_alive",
        "Speakers this speaker holds alive (itself included)",
        &[],
    )?;
    let fallback = b.gauge(
        "ferrolb_members_view_fallback",
        "1 when no other speaker is reachable over the gossip and the API server's list of speakers is used instead",
        &[],
    )?;
    let sent = b.counter(
        "ferrolb_members_datagrams_sent_total",
        "Gossip datagrams sent",
        &[],
    )?;
    let sent_bytes = b.counter(
        "ferrolb_members_sent_bytes_total",
        "Gossip bytes sent (UDP payload)",
        &[],
    )?;
    let received = b.counter(
        "ferrolb_members_datagrams_received_total",
        "Gossip datagrams received",
        &[],
    )?;
    let received_bytes = b.counter(
        "ferrolb_members_received_bytes_total",
        "Gossip bytes received (UDP payload)",
        &[],
    )?;
    let dropped = b.counter(
        "ferrolb_members_datagrams_dropped_total",
        "Gossip datagrams dropped: wrong key, malformed, invalid identity, or over the member cap",
        &[],
    )?;
    let view = members.view();
    let c = members.counters();
    let none: &[&str] = &[];
    metrics.add(b.build(move |out| {
        let v = view.borrow();
        out.add(alive, none, v.alive.len() as f64);
        let fb = v.source == ViewSource::ApiFallback;
        out.add(fallback, none, f64::from(u8::from(fb)));
        out.add(sent, none, c.sent.load(Relaxed) as f64);
        out.add(sent_bytes, none, c.sent_bytes.load(Relaxed) as f64);
        out.add(received, none, c.received.load(Relaxed) as f64);
        out.add(received_bytes, none, c.received_bytes.load(Relaxed) as f64);
        out.add(dropped, none, c.dropped.load(Relaxed) as f64);
    }))
}
