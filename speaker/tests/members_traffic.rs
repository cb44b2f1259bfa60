//! Gossip traffic per node, measured on the simulated network: datagrams
//! and bytes each member sends per second in steady state (everyone joined,
//! nobody dying) and while one member dies and comes back. SWIM's load per
//! node does not grow with the cluster; the test checks that between 3 and
//! 100 members. `cargo test --test members_traffic -- --ignored --nocapture`
//! also runs 1,000 members and prints the table of bench/README.md.

use std::time::Duration;

use ferrolb_speaker::members::sim::Sim;

#[derive(Debug)]
struct Rate {
    n: usize,
    /// Mean over members, per second.
    datagrams: f64,
    bytes: f64,
    /// Largest member's datagrams per second.
    max_datagrams: f64,
    /// While one member dies and restarts: mean datagrams per second.
    churn_datagrams: f64,
    churn_bytes: f64,
    /// From start until every member holds all others.
    join: Duration,
    /// From a kill until every other member dropped it.
    detect: Duration,
}

fn joined(sim: &Sim) -> bool {
    (0..sim.len()).all(|i| sim.member(i).unwrap().num_active() == sim.len() - 1)
}

fn measure(n: usize, seconds: u64) -> Rate {
    let mut sim = Sim::new(n, 42);
    let join = sim
        .run_until(Duration::from_secs(120), Duration::from_millis(100), joined)
        .unwrap_or_else(|| panic!("{n} members did not all join within 120 s"));
    // Past the join's updates.
    sim.run_for(Duration::from_secs(20));
    sim.reset_traffic();
    sim.run_for(Duration::from_secs(seconds));
    let secs = seconds as f64;
    let t = sim.traffic();
    let datagrams = t.iter().map(|x| x.datagrams).sum::<u64>() as f64 / n as f64 / secs;
    let bytes = t.iter().map(|x| x.bytes).sum::<u64>() as f64 / n as f64 / secs;
    let max_datagrams = t.iter().map(|x| x.datagrams).max().unwrap_or(0) as f64 / secs;
    // Churn: one member killed, detected, restarted, rejoined, over 20 s.
    sim.reset_traffic();
    sim.kill(1);
    let others_dropped = |s: &Sim| {
        (0..s.len())
            .filter(|&i| i != 1)
            .all(|i| s.member(i).unwrap().num_active() == s.len() - 2)
    };
    let detect = sim
        .run_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            others_dropped,
        )
        .unwrap_or_else(|| panic!("{n} members: death not seen by all within 10 s"));
    sim.run_for(Duration::from_secs(10) - detect);
    sim.restart(1);
    sim.run_for(Duration::from_secs(10));
    let t = sim.traffic();
    let churn_datagrams = t.iter().map(|x| x.datagrams).sum::<u64>() as f64 / n as f64 / 20.0;
    let churn_bytes = t.iter().map(|x| x.bytes).sum::<u64>() as f64 / n as f64 / 20.0;
    Rate {
        n,
        datagrams,
        bytes,
        max_datagrams,
        churn_datagrams,
        churn_bytes,
        join,
        detect,
    }
}

fn print(r: &Rate) {
    println!(
        "| {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} s | {:.2} s |",
        r.n,
        r.datagrams,
        r.bytes,
        r.max_datagrams,
        r.churn_datagrams,
        r.churn_bytes,
        r.join.as_secs_f64(),
        r.detect.as_secs_f64()
    );
}

#[test]
fn load_per_node_does_not_grow_with_the_cluster() {
    let small = measure(3, 60);
    let large = measure(100, 30);
    print(&small);
    print(&large);
    // Two datagrams per probe period (a ping out, on average one ack out)
    // = 4/s at 500 ms; a little more for indirect probes and anti-entropy.
    for r in [&small, &large] {
        assert!(
            (3.5..=5.0).contains(&r.datagrams),
            "{} members: {:.2} datagrams/s per node",
            r.n,
            r.datagrams
        );
        assert!(r.bytes < 1000.0, "{} members: {:.0} B/s", r.n, r.bytes);
    }
    assert!(
        large.datagrams < small.datagrams * 1.25,
        "{small:?} vs {large:?}"
    );
}

#[test]
#[ignore = "1,000 members: run with --ignored for bench/README.md"]
fn table_for_the_benchmark_note() {
    println!(
        "| members | datagrams/s per node | bytes/s per node | busiest node datagrams/s | churn datagrams/s | churn bytes/s | all joined | death seen by all |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (n, secs) in [(3, 60), (100, 60), (1000, 30)] {
        print(&measure(n, secs));
    }
}
