//! The gossip member on a simulated network: join, detection of a dead
//! member, a restarted member rejoining under a new identity, a graceful
//! leave, garbage datagrams, the member cap and the API fallback.

use std::collections::BTreeSet;
use std::time::Duration;

use ferrolb_speaker::members::sim::Sim;
use ferrolb_speaker::members::{Gossip, Id, ViewSource};

const STEP: Duration = Duration::from_millis(10);

fn all_but(sim: &Sim, dead: &[usize]) -> BTreeSet<String> {
    (0..sim.len())
        .filter(|i| !dead.contains(i))
        .map(|i| sim.name(i).to_string())
        .collect()
}

/// Every running member's view is gossip-sourced and holds exactly `want`.
fn converged(sim: &Sim, want: &BTreeSet<String>) -> bool {
    (0..sim.len()).all(|i| match sim.view(i) {
        None => true,
        Some(v) => v.source == ViewSource::Gossip && &v.alive == want,
    })
}

/// Every running member holds all the others in the gossip itself.
fn joined(sim: &Sim) -> bool {
    let running: Vec<usize> = (0..sim.len())
        .filter(|i| sim.member(*i).is_some())
        .collect();
    running
        .iter()
        .all(|&i| sim.member(i).unwrap().active().len() == running.len() - 1)
}

fn started(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(n, seed);
    let t = sim.run_until(Duration::from_secs(30), STEP, joined);
    assert!(t.is_some(), "{n} members did not all join within 30 s");
    sim
}

#[test]
fn three_join_then_one_dies() {
    for seed in 0..20 {
        let mut sim = started(3, seed);
        let everyone = all_but(&sim, &[]);
        assert!(converged(&sim, &everyone));
        sim.run_for(Duration::from_secs(5));
        sim.kill(1);
        let t = sim
            .run_until(Duration::from_secs(10), STEP, |s| {
                converged(s, &all_but(s, &[1]))
            })
            .unwrap_or_else(|| panic!("seed {seed}: node-1's death not seen within 10 s"));
        // Worst case from the timings (tuning.rs): 2 periods until probed,
        // one period to suspect, 1 s suspicion, a gossip round: 2.7 s.
        assert!(t <= Duration::from_millis(3000), "seed {seed}: took {t:?}");
        // Nobody resurrects it.
        sim.run_for(Duration::from_secs(20));
        assert!(converged(&sim, &all_but(&sim, &[1])), "seed {seed}");
    }
}

#[test]
fn detection_time_at_fifty() {
    let mut sim = started(50, 7);
    sim.run_for(Duration::from_secs(5));
    sim.kill(17);
    let t = sim
        .run_until(Duration::from_secs(15), STEP, |s| {
            converged(s, &all_but(s, &[17]))
        })
        .expect("death seen by all 49 within 15 s");
    // 50 members: suspicion 1.7 s; first probe within ~a period on average.
    assert!(t <= Duration::from_secs(5), "took {t:?}");
    println!("50 members: all 49 dropped the dead one after {t:?}");
}

#[test]
fn restarted_member_rejoins_with_a_new_identity() {
    let mut sim = started(3, 3);
    let old_boot = sim.member(2).unwrap().identity().boot;
    sim.kill(2);
    sim.run_until(Duration::from_secs(10), STEP, |s| {
        converged(s, &all_but(s, &[2]))
    })
    .expect("death seen");
    sim.restart(2);
    let new_boot = sim.member(2).unwrap().identity().boot;
    assert!(new_boot > old_boot);
    let t = sim
        .run_until(Duration::from_secs(10), STEP, |s| {
            converged(s, &all_but(s, &[]))
        })
        .expect("restarted member back in every view within 10 s");
    println!("restarted member back in every view after {t:?}");
    // Restarted before the others noticed it died: the new identity
    // replaces the old one and it never drops out.
    sim.run_for(Duration::from_secs(5));
    sim.kill(0);
    sim.restart(0);
    let mut ok = true;
    let mut left = Duration::from_secs(10);
    while left > Duration::ZERO {
        sim.run_for(STEP);
        left -= STEP;
        for i in 1..3 {
            if !sim.view(i).unwrap().alive.contains("node-0") {
                ok = false;
            }
        }
    }
    assert!(ok, "a quickly restarted member dropped out of a view");
    assert!(converged(&sim, &all_but(&sim, &[])));
}

#[test]
fn graceful_leave_is_seen_at_once() {
    let mut sim = started(5, 11);
    sim.leave(3);
    let t = sim
        .run_until(Duration::from_secs(5), Duration::from_millis(1), |s| {
            converged(s, &all_but(s, &[3]))
        })
        .expect("leave seen");
    assert!(t < Duration::from_millis(500), "took {t:?}");
}

#[test]
fn survives_loss() {
    let mut sim = Sim::new(10, 5);
    sim.loss = 0.05;
    sim.run_until(Duration::from_secs(30), STEP, joined)
        .expect("join despite 5% loss");
    // No false deaths over a minute of 5% loss.
    for _ in 0..600 {
        sim.run_for(Duration::from_millis(100));
        assert!(
            converged(&sim, &all_but(&sim, &[])),
            "false death at {:?}",
            sim.elapsed()
        );
    }
    sim.kill(4);
    sim.run_until(Duration::from_secs(10), STEP, |s| {
        converged(s, &all_but(s, &[4]))
    })
    .expect("death seen despite loss");
}

#[test]
fn garbage_is_dropped() {
    let mut sim = started(3, 9);
    let mut x: u64 = 0x1234_5678;
    let mut dropped = 0;
    for len in 0..3000 {
        let data: Vec<u8> = (0..len % 1500)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let before = sim.member(0).unwrap().stats().dropped;
        sim.inject(0, &data);
        dropped += sim.member(0).unwrap().stats().dropped - before;
    }
    // Oversized.
    sim.inject(0, &vec![0u8; 5000]);
    assert!(
        dropped >= 2990,
        "only {dropped} of 3000 random datagrams dropped"
    );
    sim.run_for(Duration::from_secs(5));
    assert!(converged(&sim, &all_but(&sim, &[])));
    assert_eq!(sim.member(0).unwrap().held(), 2, "garbage added members");
}

/// A well-formed datagram from a stranger, built by a real member.
fn hello_from(name: &str, to: &Id) -> Vec<u8> {
    let me = Id::new(name, "10.9.0.1:7946".parse().unwrap(), 1);
    let mut g = Gossip::new(me, 1, 10);
    let known = [(to.name.clone(), to.addr)].into();
    let out = g.set_known(known, std::time::Instant::now());
    out.into_iter()
        .find_map(|o| match o {
            ferrolb_speaker::members::Output::Send { data, .. } => Some(data),
            _ => None,
        })
        .expect("an announce")
}

#[test]
fn member_cap_holds() {
    let me = Id::new("a", "10.0.0.1:7946".parse().unwrap(), 1);
    let mut g = Gossip::new(me.clone(), 1, 4);
    let now = std::time::Instant::now();
    for i in 0..10 {
        g.handle_datagram(&hello_from(&format!("stranger-{i}"), &me), now);
    }
    assert_eq!(g.held(), 4);
    assert_eq!(g.stats().received, 4);
    assert_eq!(g.stats().dropped, 6);
    // Known members still get through when full.
    g.handle_datagram(&hello_from("stranger-0", &me), now);
    assert_eq!(g.stats().received, 5);
}

#[test]
fn isolated_member_falls_back_to_the_api() {
    // Nobody answers (every datagram lost): the API's list from the start.
    let mut sim = Sim::new(3, 1);
    sim.loss = 1.0;
    sim.run_for(Duration::from_secs(3));
    for i in 0..3 {
        let v = sim.view(i).unwrap();
        assert_eq!(v.source, ViewSource::ApiFallback);
        assert_eq!(v.alive, all_but(&sim, &[]));
    }
    // Connected, then cut off: gossip (alone) until fallback_after, then the
    // API's list again.
    let mut sim = started(3, 2);
    sim.loss = 1.0;
    sim.run_for(Duration::from_secs(5));
    let v = sim.view(0).unwrap();
    assert_eq!(v.source, ViewSource::Gossip);
    assert_eq!(v.alive, ["node-0".to_string()].into());
    sim.run_for(Duration::from_secs(10));
    let v = sim.view(0).unwrap();
    assert_eq!(v.source, ViewSource::ApiFallback);
    assert_eq!(v.alive, all_but(&sim, &[]));
    // The network heals: back to the gossip with everyone.
    sim.loss = 0.0;
    sim.run_until(Duration::from_secs(90), STEP, |s| {
        converged(s, &all_but(s, &[]))
    })
    .expect("partition healed within 90 s");
}

#[test]
fn no_false_deaths_at_a_hundred_with_loss() {
    let mut sim = Sim::new(100, 8);
    sim.run_until(Duration::from_secs(60), Duration::from_millis(100), |s| {
        (0..s.len()).all(|i| s.member(i).unwrap().num_active() == s.len() - 1)
    })
    .expect("100 members joined");
    sim.loss = 0.05;
    let mut worst = sim.len();
    for _ in 0..600 {
        sim.run_for(Duration::from_millis(100));
        let fewest = (0..sim.len())
            .map(|i| sim.member(i).unwrap().num_active() + 1)
            .min()
            .unwrap();
        worst = worst.min(fewest);
    }
    // A member briefly suspect still counts as alive; nobody may be
    // declared down by anyone.
    assert_eq!(
        worst,
        sim.len(),
        "a live member was declared down under 5% loss"
    );
    let downs: u64 = (0..sim.len())
        .map(|i| sim.member(i).unwrap().stats().members_down)
        .sum();
    assert_eq!(downs, 0, "false deaths under 5% loss");
}

#[test]
fn mutated_datagrams_never_panic_nor_add_bad_members() {
    let me = Id::new("a", "10.0.0.1:7946".parse().unwrap(), 1);
    let good = hello_from("b", &me);
    let mut g = Gossip::new(me.clone(), 1, 100);
    let now = std::time::Instant::now();
    for pos in 0..good.len() {
        for v in [0u8, 1, 0x7f, 0x80, 0xff, good[pos] ^ 0x20] {
            let mut d = good.clone();
            d[pos] = v;
            g.handle_datagram(&d, now);
            // Truncated and extended copies too.
            g.handle_datagram(&d[..pos], now);
            d.extend_from_slice(&[v; 7]);
            g.handle_datagram(&d, now);
        }
    }
    for name in g.heard_of() {
        assert!(
            ferrolb_speaker::members::identity::valid_node_name(&name),
            "{name:?} let in"
        );
    }
    assert!(g.stats().dropped > 0);
}
