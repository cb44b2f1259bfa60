//! Three speakers' gossip members in three network namespaces on one
//! bridge, over real UDP: they join from the API-style list of addresses;
//! killing one (its runtime dropped: no goodbye, like SIGKILL) makes the
//! other two drop it. The detection time is measured and printed over
//! several rounds (the only timing assert is a generous 10 s bound).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferrolb_speaker::members::{MemberView, Members, MembersConfig, ViewSource};
use ferrolb_testlab::{Lan, Netns, require_or_return, wait_until};
use tokio::sync::watch;

struct Node {
    // Field order: the member stops before its runtime, the runtime before
    // the namespace goes.
    members: Option<Members>,
    rt: Option<tokio::runtime::Runtime>,
    ns: Netns,
    name: String,
    addr: SocketAddr,
}

impl Node {
    fn start(&mut self, known: &BTreeMap<String, SocketAddr>) -> Result<()> {
        let rt = self.ns.tokio_runtime()?;
        let cfg = MembersConfig::new(self.name.clone(), self.addr);
        // Bind inside a task: only the runtime's threads are in the namespace.
        let m = rt.block_on(rt.spawn(async move { Members::start(cfg) }))??;
        m.set_known(known.clone());
        self.members = Some(m);
        self.rt = Some(rt);
        Ok(())
    }

    fn kill(&mut self) {
        self.members = None;
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    fn view(&self) -> watch::Receiver<MemberView> {
        self.members.as_ref().expect("running").view()
    }
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn wait_for(
    rx: &watch::Receiver<MemberView>,
    want: &BTreeSet<String>,
    within: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    wait_until(within, Duration::from_millis(5), || {
        let v = rx.borrow();
        (v.source == ViewSource::Gossip && &v.alive == want).then(|| t0.elapsed())
    })
}

#[test]
fn three_speakers_in_namespaces_detect_a_kill() -> Result<()> {
    require_or_return!("three_speakers_in_namespaces_detect_a_kill");
    let lan = Lan::new()?;
    let mut nodes = Vec::new();
    for i in 1..=3u8 {
        let ns = Netns::new()?;
        lan.attach(&ns, "eth0", &[&format!("10.77.0.{i}/24")])?;
        nodes.push(Node {
            members: None,
            rt: None,
            ns,
            name: format!("node-{i}"),
            addr: SocketAddr::from(([10, 77, 0, i], 7946)),
        });
    }
    let known: BTreeMap<String, SocketAddr> =
        nodes.iter().map(|n| (n.name.clone(), n.addr)).collect();
    for n in &mut nodes {
        n.start(&known)?;
    }
    let all = names(&["node-1", "node-2", "node-3"]);
    for n in &nodes {
        let t = wait_for(&n.view(), &all, Duration::from_secs(10))
            .with_context(|| format!("{} did not see all three within 10 s", n.name))?;
        println!("{}: all three alive after {t:?}", n.name);
    }

    let rounds = 5;
    let mut times = Vec::new();
    for round in 0..rounds {
        // Let the probe cycle settle at a random phase.
        std::thread::sleep(Duration::from_millis(700 + 331 * round));
        let victim = round as usize % 3;
        let rest: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
        let rxs: Vec<_> = rest.iter().map(|&i| nodes[i].view()).collect();
        let want: BTreeSet<String> = rest.iter().map(|&i| nodes[i].name.clone()).collect();
        let t0 = Instant::now();
        nodes[victim].kill();
        let mut slowest = Duration::ZERO;
        for (rx, &i) in rxs.iter().zip(&rest) {
            wait_for(rx, &want, Duration::from_secs(10)).with_context(|| {
                format!(
                    "round {round}: {} still holds {} alive after 10 s",
                    nodes[i].name, nodes[victim].name
                )
            })?;
            slowest = slowest.max(t0.elapsed());
        }
        println!(
            "round {round}: {} killed, both others dropped it after {slowest:?}",
            nodes[victim].name
        );
        times.push(slowest);
        // Restart it (a new boot id) and wait until everyone holds all three.
        nodes[victim].start(&known)?;
        let t0 = Instant::now();
        for n in &nodes {
            wait_for(&n.view(), &all, Duration::from_secs(10)).with_context(|| {
                format!(
                    "round {round}: {} back in {}'s view",
                    nodes[victim].name, n.name
                )
            })?;
        }
        println!(
            "round {round}: restarted, back in every view after {:?}",
            t0.elapsed()
        );
    }
    times.sort();
    println!(
        "detection over {rounds} kills: median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    for n in &mut nodes {
        n.kill();
    }
    Ok(())
}
