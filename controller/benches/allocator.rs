//! Allocator throughput and memory: `cargo bench -p ferrolb-controller --bench allocator`.
//! Prints figures; asserts nothing about time.
//!
//! What is timed: `Allocator::assign` (or `release`) calls only, including
//! building and dropping the returned `Assignment`. The `ServiceRequest`s are
//! built beforehand, outside the timed region, as the reconciler builds one
//! from the Service object (`service.rs`) before it calls the allocator.
//! Each figure is given twice: wall time and this thread's on-CPU time (the
//! latter is the one to read on a loaded machine). "bytes live" is the
//! allocator's heap as requested from the global allocator (malloc's own
//! per-block overhead not included), measured after the timed loop.

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
    Allocator, FamilyPolicy, IpFamily, PoolSpec, Protocol, ServiceAllocation, ServiceKey,
    ServiceRequest,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicIsize = AtomicIsize::new(0);

/// Adds to a counter with a plain load and store, not a locked read-modify-write:
/// this bench allocates from one thread only, and a locked add on every
/// allocation and free would weigh on the timings it reports.
fn add(counter: &AtomicIsize, n: isize) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

// SAFETY: every call forwards to `System` with the caller's arguments
// unchanged; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(&LIVE, layout.size() as isize);
        add(&ALLOCS, 1);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(&LIVE, -(layout.size() as isize));
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(&LIVE, new_size as isize - layout.size() as isize);
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
        allocation: None,
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

/// Runs `f`; returns (wall seconds, on-CPU seconds).
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let t = Instant::now();
    let c = cpu_ns();
    f();
    let cpu = (cpu_ns() - c) as f64 / 1e9;
    (t.elapsed().as_secs_f64(), cpu)
}

/// Assigns every request into a fresh allocator; prints time and live bytes.
fn run(label: &str, pools: Vec<PoolSpec>, reqs: &[ServiceRequest]) -> Allocator {
    let before = live();
    let mut a = Allocator::new(pools).unwrap();
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let (el, cpu) = timed(|| {
        for r in reqs {
            black_box(a.assign(r).unwrap());
        }
    });
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs;
    let bytes = live() - before;
    println!(
        "allocator {label}: {} assignments in {:.1} ms = {:.0}/s, {} bytes live ({:.0} bytes/service), {:.1} heap allocations/assignment; on-CPU {:.1} ms = {:.0}/s",
        reqs.len(),
        el * 1e3,
        reqs.len() as f64 / el,
        bytes,
        bytes as f64 / reqs.len() as f64,
        allocs as f64 / reqs.len() as f64,
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
    let (el, cpu) = timed(|| {
        for r in reqs.iter().step_by(2) {
            black_box(a.release(&r.key));
        }
        for r in reqs.iter().step_by(2) {
            black_box(a.assign(r).unwrap());
        }
    });
    println!(
        "allocator /16 churn: {} releases + {} re-assignments in {:.1} ms = {:.0} ops/s; on-CPU {:.1} ms = {:.0} ops/s",
        reqs.len() / 2,
        reqs.len() / 2,
        el * 1e3,
        reqs.len() as f64 / el,
        cpu * 1e3,
        reqs.len() as f64 / cpu
    );
    // Idempotent re-assign of every service (the reconcile loop's common case).
    let (el, cpu) = timed(|| {
        for r in &reqs {
            black_box(a.assign(r).unwrap());
        }
    });
    println!(
        "allocator /16 idempotent: {} re-assignments in {:.1} ms = {:.0}/s; on-CPU {:.1} ms = {:.0}/s",
        reqs.len(),
        el * 1e3,
        reqs.len() as f64 / el,
        cpu * 1e3,
        reqs.len() as f64 / cpu
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
    let mut out = None;
    let (el, cpu) = timed(|| out = Some(Allocator::rebuild(pools(), &reqs).unwrap()));
    let (b, results) = out.unwrap();
    let bytes = live() - before;
    let moved = results
        .iter()
        .filter(|(k, r)| r.as_ref().ok().map(|x| x.addrs()) != a.lookup(k).map(|x| x.addrs()))
        .count();
    println!(
        "allocator /64 rebuild: {} services in {:.1} ms = {:.0}/s, {} moved, {} bytes live incl. results; on-CPU {:.1} ms = {:.0}/s",
        reqs.len(),
        el * 1e3,
        reqs.len() as f64 / el,
        moved,
        bytes,
        cpu * 1e3,
        reqs.len() as f64 / cpu
    );
    black_box((b, results));
    let _: IpAddr = "::1".parse().unwrap();
    drop(a);

    // serviceAllocation: 100 pools (a /24 each) pinned to one namespace
    // each, priority by number, plus a pool for everyone else; 20k services
    // over the 100 namespaces. Each assignment filters the 100 pinned pools.
    let pools: Vec<PoolSpec> = (0..100u32)
        .map(|i| {
            let mut p = pool(
                &format!("ns{i}"),
                &format!("10.2.{i}.0"),
                &format!("10.2.{i}.255"),
            );
            p.allocation = Some(ServiceAllocation {
                priority: i as i32 + 1,
                namespaces: vec![format!("ns{i}")],
                ..Default::default()
            });
            p
        })
        .chain([pool("rest", "10.3.0.0", "10.3.255.255")])
        .collect();
    let reqs = requests(20_000, IpFamily::V4, false);
    let a = run("serviceAllocation (100 pinned pools)", pools, &reqs);
    // Idempotent re-assign: each held IP is re-checked against its pool.
    let mut a = a;
    let (el, cpu) = timed(|| {
        for r in &reqs {
            black_box(a.assign(r).unwrap());
        }
    });
    println!(
        "allocator serviceAllocation idempotent: {} re-assignments in {:.1} ms = {:.0}/s; on-CPU {:.1} ms = {:.0}/s",
        reqs.len(),
        el * 1e3,
        reqs.len() as f64 / el,
        cpu * 1e3,
        reqs.len() as f64 / cpu
    );
}
