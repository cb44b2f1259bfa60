//! Allocator throughput and memory: `cargo bench -p ferrolb-controller --bench allocator`.
//! Prints figures; asserts nothing about time.

// The workspace denies unsafe code. A counting global allocator needs
// `unsafe impl GlobalAlloc` (it only forwards to `System` and counts bytes);
// this bench binary is the one place that needs it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use ferrolb_controller::allocator::{
    Allocator, FamilyPolicy, IpFamily, PoolSpec, Protocol, ServiceKey, ServiceRequest,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments
// unchanged; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// On-CPU time of this thread in ns (Linux `/proc/thread-self/schedstat`), so the
/// figures can be read on a loaded machine; 0 where unavailable.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn pool(name: &str, start: &str, end: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        ranges: vec![(start.parse().unwrap(), end.parse().unwrap())],
        auto_assign: true,
        avoid_buggy_ips: false,
    }
}

fn requests(n: usize, fam: IpFamily, shared_pairs: bool) -> Vec<ServiceRequest> {
    (0..n)
        .map(|i| {
            let mut r = ServiceRequest::new(ServiceKey::new(
                format!("ns{}", i % 100),
                format!("svc-{i}"),
            ));
            r.families = vec![fam];
            r.family_policy = FamilyPolicy::SingleStack;
            r.ports = vec![(Protocol::Tcp, 80)];
            if shared_pairs {
                r.sharing_key = Some(format!("pair-{}", i / 2));
                r.ports = vec![(Protocol::Tcp, 80 + (i % 2) as u16)];
            }
            r
        })
        .collect()
}

/// Assigns every request into a fresh allocator; prints time and live bytes.
fn run(label: &str, pools: Vec<PoolSpec>, reqs: &[ServiceRequest]) -> Allocator {
    let before = live();
    let mut a = Allocator::new(pools).unwrap();
    let t = Instant::now();
    let c = cpu_ns();
    for r in reqs {
        black_box(a.assign(r).unwrap());
    }
    let cpu = (cpu_ns() - c) as f64 / 1e9;
    let el = t.elapsed();
    let bytes = live() - before;
    println!(
        "allocator {label}: {} assignments in {:.1} ms = {:.0}/s, {} bytes live ({:.0} bytes/service); on-CPU {:.1} ms = {:.0}/s",
        reqs.len(),
        el.as_secs_f64() * 1e3,
        reqs.len() as f64 / el.as_secs_f64(),
        bytes,
        bytes as f64 / reqs.len() as f64,
        cpu * 1e3,
        reqs.len() as f64 / cpu
    );
    a
}

fn main() {
    // A /16 holds 65,536 addresses: fill it, one service per address.
    let reqs = requests(65_536, IpFamily::V4, false);
    let mut a = run("/16", vec![pool("p16", "10.1.0.0", "10.1.255.255")], &reqs);
    // Churn: release and re-assign every other service (each re-assignment finds the lowest hole).
    let t = Instant::now();
    for r in reqs.iter().step_by(2) {
        a.release(&r.key);
    }
    for r in reqs.iter().step_by(2) {
        black_box(a.assign(r).unwrap());
    }
    let el = t.elapsed();
    println!(
        "allocator /16 churn: {} releases + {} re-assignments in {:.1} ms = {:.0} ops/s",
        reqs.len() / 2,
        reqs.len() / 2,
        el.as_secs_f64() * 1e3,
        reqs.len() as f64 / el.as_secs_f64()
    );
    // Idempotent re-assign of every service (the reconcile loop's common case).
    let t = Instant::now();
    for r in &reqs {
        black_box(a.assign(r).unwrap());
    }
    let el = t.elapsed();
    println!(
        "allocator /16 idempotent: {} re-assignments in {:.1} ms = {:.0}/s",
        reqs.len(),
        el.as_secs_f64() * 1e3,
        reqs.len() as f64 / el.as_secs_f64()
    );
    drop(a);

    // 100k services in a /16: pairs share an IP (same key, different ports).
    let reqs = requests(100_000, IpFamily::V4, true);
    drop(run(
        "/16 (100k services, pairs sharing an IP)",
        vec![pool("p16", "10.1.0.0", "10.1.255.255")],
        &reqs,
    ));

    // 100k services in a /64.
    let mut reqs = requests(100_000, IpFamily::V6, false);
    let pools = || {
        vec![pool(
            "p64",
            "2001:db8:1::",
            "2001:db8:1::ffff:ffff:ffff:ffff",
        )]
    };
    let a = run("/64", pools(), &reqs);

    // Rebuild from the services' status: nothing may move.
    for r in &mut reqs {
        r.current = a.lookup(&r.key).unwrap().addrs();
    }
    let before = live();
    let t = Instant::now();
    let (b, results) = Allocator::rebuild(pools(), &reqs).unwrap();
    let el = t.elapsed();
    let bytes = live() - before;
    let moved = results
        .iter()
        .filter(|(k, r)| r.as_ref().ok().map(|x| x.addrs()) != a.lookup(k).map(|x| x.addrs()))
        .count();
    println!(
        "allocator /64 rebuild: {} services in {:.1} ms = {:.0}/s, {} moved, {} bytes live incl. results",
        reqs.len(),
        el.as_secs_f64() * 1e3,
        reqs.len() as f64 / el.as_secs_f64(),
        moved,
        bytes
    );
    black_box((b, results));
    let _: IpAddr = "::1".parse().unwrap();
}
