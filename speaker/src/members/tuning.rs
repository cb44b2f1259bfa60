//! The SWIM timings, chosen for a LAN where a dead speaker must be noticed
//! within about two seconds, with a handful of small datagrams per second
//! per node whatever the cluster's size.
//!
//! Per probe period each member pings one other member (in a shuffled
//! round-robin, so every member is probed by each other member at least once
//! every `n − 1` periods) and, on average, is pinged once: two datagrams sent
//! and two received per period. With a 500 ms period that is 4 datagrams per
//! second each way, of 50–70 bytes of UDP payload (measured), independent
//! of the cluster's size.
//! Updates (joins, suspicions, deaths) ride on those datagrams and on gossip
//! rounds every 200 ms that are only sent while updates are pending.
//!
//! A speaker that dies is noticed as follows: some member's probe gets no
//! ack within [`PROBE_RTT`] (LAN round trips are well below 1 ms; 200 ms
//! leaves room for a busy node), three others ping it indirectly, and at the
//! next period (500 ms after the probe started) it is *suspect*. It is
//! declared *down* [`suspect_to_down_after`] later unless it refutes (a live
//! member hearing it is suspected bumps its incarnation). The first probe of
//! a dead member comes within one period on average in a large cluster
//! (every member probes one member per period), within two in a three-node
//! one. Three nodes: 0–1 s until probed + 0.5 s + 1 s suspicion + one gossip
//! round ≈ 1.5–2.7 s (measured: median 1.8 s, max 2.5 s over real UDP in
//! namespaces). The suspicion grows with the cluster (as memberlist's does,
//! more slowly), because the refutation must reach every member that heard
//! the suspicion before its timer ends: 1.5 s at 100 nodes, 2 s at 1,000
//! ([`suspect_to_down_after`]); in the simulated network 100 members under
//! 5 % datagram loss see no false death in a minute (tests/members_sim.rs).

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use foca::{Config, PeriodicParams};

/// How often each member probes one other member.
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// How long a direct probe waits for its ack before indirect probes.
pub const PROBE_RTT: Duration = Duration::from_millis(200);
/// Largest datagram foca produces and accepts (payload; a tag is added on
/// top when a key is set). Below a 1500-byte Ethernet MTU with headers.
pub const MAX_PACKET: usize = 1400;
/// Default cap on the members kept (alive or down).
pub const DEFAULT_MAX_MEMBERS: usize = 5_000;

/// How long a suspect member has to refute before it is declared down:
/// 1 s up to 10 members, then 0.5 s more per factor of ten
/// (1 s + 0.5 s × log10(n / 10)): 1.5 s at 100, 2 s at 1,000.
pub fn suspect_to_down_after(cluster_size: usize) -> Duration {
    let n = cluster_size.max(1) as f64;
    Duration::from_secs_f64(1.0 + 0.5 * (n / 10.0).log10().max(0.0))
}

/// How many times each update is sent on: 4 × log10(n + 1), at least 6.
pub fn max_transmissions(cluster_size: usize) -> NonZeroU8 {
    let n = cluster_size as f64 + 1.0;
    let tx = (4.0 * n.log10()).clamp(6.0, 255.0) as u8;
    NonZeroU8::new(tx).unwrap_or(NonZeroU8::MIN)
}

/// foca's configuration for a cluster of about `cluster_size` speakers.
/// Only the size-dependent values change when the size does
/// ([`foca::Foca::set_config`] refuses changes to the probe timings).
pub fn swim_config(cluster_size: usize) -> Config {
    let mut c = Config::simple();
    c.probe_period = PROBE_PERIOD;
    c.probe_rtt = PROBE_RTT;
    c.num_indirect_probes = NonZeroUsize::new(3).expect("3 > 0");
    c.max_transmissions = max_transmissions(cluster_size);
    c.suspect_to_down_after = suspect_to_down_after(cluster_size);
    // Identities renew themselves (a new boot id replaces the old one under
    // the same node name), so a down identity is never reused; forgetting it
    // after an hour only frees the memory of nodes that left for good. (A
    // speaker whose pod stays ready while its gossip never gets through is,
    // after that hour, one the gossip has not heard of: alive by the API's
    // word again, as before it ever joined — see view::compute.)
    c.remove_down_after = Some(Duration::from_secs(3600));
    c.max_packet_size = NonZeroUsize::new(MAX_PACKET).expect("> 0");
    // Tell a member declared down so it renews and rejoins at once.
    c.notify_down_members = true;
    // Anti-entropy: ask one member for its view every 30 s; try two down
    // members every 60 s so that a healed partition rejoins by itself.
    c.periodic_announce = Some(PeriodicParams {
        frequency: Duration::from_secs(30),
        num_members: NonZeroUsize::MIN,
    });
    c.periodic_announce_to_down_members = Some(PeriodicParams {
        frequency: Duration::from_secs(60),
        num_members: NonZeroUsize::new(2).expect("2 > 0"),
    });
    // Spread updates faster than the probe cycle alone would; nothing is
    // sent when no update is pending.
    c.periodic_gossip = Some(PeriodicParams {
        frequency: Duration::from_millis(200),
        num_members: NonZeroUsize::new(3).expect("3 > 0"),
    });
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_scales_with_log_of_size() {
        assert_eq!(suspect_to_down_after(3), Duration::from_secs(1));
        assert_eq!(suspect_to_down_after(10), Duration::from_secs(1));
        assert_eq!(suspect_to_down_after(100), Duration::from_millis(1500));
        assert_eq!(suspect_to_down_after(1000), Duration::from_secs(2));
        assert_eq!(max_transmissions(3).get(), 6);
        assert_eq!(max_transmissions(1000).get(), 12);
    }
}
