//! The gossip shell over real UDP on loopback: three members join, one is
//! dropped (its task stops, like a SIGKILL) and the others' views lose it;
//! a member with the wrong key is never let in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrolb_speaker::members::{MemberView, Members, MembersConfig, ViewSource};
use tokio::sync::watch;

fn cfg(name: &str, secret: Option<&[u8]>) -> MembersConfig {
    let mut c = MembersConfig::new(name, "127.0.0.1:0".parse().unwrap());
    c.secret = secret.map(<[u8]>::to_vec);
    c
}

async fn wait_view(
    rx: &mut watch::Receiver<MemberView>,
    want: &BTreeSet<String>,
    within: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    let ok = tokio::time::timeout(
        within,
        rx.wait_for(|v| v.source == ViewSource::Gossip && &v.alive == want),
    )
    .await;
    matches!(ok, Ok(Ok(_))).then(|| t0.elapsed())
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn three_over_loopback() {
    let key: &[u8] = b"shared";
    let ms: Vec<Members> = ["a", "b", "c"]
        .iter()
        .map(|n| Members::start(cfg(n, Some(key))).expect("start"))
        .collect();
    let intruder = Members::start(cfg("x", Some(b"wrong"))).expect("start");
    let mut known: BTreeMap<String, SocketAddr> = ms
        .iter()
        .map(|m| (m.identity().name.clone(), m.local_addr()))
        .collect();
    known.insert("x".into(), intruder.local_addr());
    // Before the API's list is in, the view is this node alone: not seeded.
    assert!(!ms[0].seeded());
    assert_eq!(ms[0].view().borrow().alive, names(&["a"]));
    for m in &ms {
        m.set_known(known.clone());
    }
    intruder.set_known(known.clone());
    tokio::time::timeout(Duration::from_secs(1), ms[0].wait_seeded())
        .await
        .expect("seeded");
    assert!(ms[0].seeded());
    // x never gets in (its datagrams are dropped), but the gossip never
    // heard of it either, so the API's word stands for it.
    let with_x = names(&["a", "b", "c", "x"]);
    for m in &ms {
        let mut rx = m.view();
        wait_view(&mut rx, &with_x, Duration::from_secs(10))
            .await
            .expect("joined within 10 s");
        assert_eq!(m.view().borrow().source, ViewSource::Gossip);
    }
    assert!(
        ms[0]
            .counters()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    assert_eq!(intruder.view().borrow().source, ViewSource::ApiFallback);
    // The API drops x.
    known.remove("x");
    let everyone = names(&["a", "b", "c"]);
    for m in &ms {
        m.set_known(known.clone());
        let mut rx = m.view();
        wait_view(&mut rx, &everyone, Duration::from_secs(2))
            .await
            .expect("x gone");
    }
    let mut ms = ms;
    let c = ms.pop().expect("c");
    let mut rest_rx: Vec<_> = ms.iter().map(|m| m.view()).collect();
    // Stop c's task without a goodbye.
    drop(c);
    let want = names(&["a", "b"]);
    for rx in &mut rest_rx {
        let t = wait_view(rx, &want, Duration::from_secs(10))
            .await
            .expect("c dropped within 10 s");
        println!("loopback: c dropped after {t:?}");
    }
    // A graceful leave is seen at once.
    let b = ms.pop().expect("b");
    b.leave().await;
    let mut rx = ms[0].view();
    let t = wait_view(&mut rx, &names(&["a"]), Duration::from_secs(2))
        .await
        .expect("b's leave seen within 2 s");
    println!("loopback: b's leave seen after {t:?}");
    // A member that left stays gone while its process lives on (a speaker
    // whose layer 2 cannot work leaves for good): past b's 5 s join round.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        rx.borrow().alive,
        names(&["a"]),
        "b came back after leaving"
    );
    drop(b);
}

/// 100 members in one process over loopback UDP (the real shell, timers and
/// socket): join time, then datagrams and bytes per member per second over
/// 20 s of steady state, from the members' own counters. A cross-check of
/// the simulated figures in bench/README.md; run with --ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "100 members for 30 s: run with --ignored for bench/README.md"]
async fn hundred_over_loopback() {
    use std::sync::atomic::Ordering::Relaxed;
    let n = 100;
    let ms: Vec<Members> = (0..n)
        .map(|i| Members::start(cfg(&format!("node-{i}"), None)).expect("start"))
        .collect();
    let known: BTreeMap<String, SocketAddr> = ms
        .iter()
        .map(|m| (m.identity().name.clone(), m.local_addr()))
        .collect();
    let everyone: BTreeSet<String> = known.keys().cloned().collect();
    let t0 = Instant::now();
    for m in &ms {
        m.set_known(known.clone());
    }
    for m in &ms {
        let mut rx = m.view();
        wait_view(&mut rx, &everyone, Duration::from_secs(60))
            .await
            .expect("all joined within 60 s");
    }
    println!(
        "100 over loopback: all views complete after {:?}",
        t0.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let snap = |ms: &[Members]| -> (u64, u64) {
        ms.iter().fold((0, 0), |(d, b), m| {
            let c = m.counters();
            (d + c.sent.load(Relaxed), b + c.sent_bytes.load(Relaxed))
        })
    };
    let (d0, b0) = snap(&ms);
    let secs = 20.0;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (d1, b1) = snap(&ms);
    let per = |x: u64| x as f64 / n as f64 / secs;
    println!(
        "100 over loopback: {:.1} datagrams/s and {:.0} B/s sent per member",
        per(d1 - d0),
        per(b1 - b0)
    );
    let dropped: u64 = ms.iter().map(|m| m.counters().dropped.load(Relaxed)).sum();
    assert_eq!(dropped, 0);
    for m in &ms {
        assert_eq!(m.view().borrow().alive, everyone, "a false death");
    }
    assert!((3.5..6.0).contains(&per(d1 - d0)));
}
