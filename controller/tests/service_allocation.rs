//! `serviceAllocation` (IPAddressPool `spec.serviceAllocation`, MetalLB
//! v0.13+) in the allocator, as scenario tables: which pools a Service is
//! tried against and in which order, what the annotation and requested IPs
//! may name, and what happens to held IPs when labels change or the
//! allocator is rebuilt. The allocator checks its own bookkeeping after every
//! step.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_config::NodeSelector;
use ferrolb_controller::allocator::{
    Allocator, FamilyPolicy, IpFamily, PoolSpec, ServiceAllocation, ServiceKey, ServiceRequest,
    allocation_admits,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(pairs: &[(&str, &str)]) -> NodeSelector {
    NodeSelector {
        match_labels: labels(pairs),
        match_expressions: Vec::new(),
    }
}

/// A pool over one CIDR, auto-assign on.
fn pool(name: &str, cidr: &str) -> PoolSpec {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    PoolSpec::new(name, vec![(net.network(), net.broadcast())])
}

fn for_ns(p: PoolSpec, priority: i32, namespaces: &[&str]) -> PoolSpec {
    with(
        p,
        ServiceAllocation {
            priority,
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
}

fn with(mut p: PoolSpec, sa: ServiceAllocation) -> PoolSpec {
    p.allocation = Some(sa);
    p
}

/// `ns/name`, optional namespace labels and service labels.
fn svc(k: &str, ns_labels: &[(&str, &str)], svc_labels: &[(&str, &str)]) -> ServiceRequest {
    let (ns, name) = k.split_once('/').unwrap();
    let mut r = ServiceRequest::new(ServiceKey::new(ns, name));
    r.namespace_labels = labels(ns_labels).into();
    r.labels = labels(svc_labels).into();
    r
}

#[allow(clippy::large_enum_variant)] // test data, built once per step
enum Step {
    /// Assign; expect these IPs (empty: an error containing the text).
    Assign(ServiceRequest, &'static [&'static str], &'static str),
    Release(&'static str),
}
use Step::{Assign, Release};

fn run(name: &str, a: &mut Allocator, steps: Vec<Step>) {
    for (i, step) in steps.into_iter().enumerate() {
        let at = format!("{name}, step {i}");
        match step {
            Assign(req, want, err) => match a.assign(&req) {
                Ok(got) => {
                    let want: Vec<IpAddr> = want.iter().map(|s| ip(s)).collect();
                    assert_eq!(got.addrs(), want, "{at}: {}", req.key);
                    assert!(
                        err.is_empty(),
                        "{at}: expected an error {err:?}, got {got:?}"
                    );
                }
                Err(e) => {
                    assert!(
                        want.is_empty() && !err.is_empty() && e.to_string().contains(err),
                        "{at}: {}: unexpected error {e} (wanted {want:?} / {err:?})",
                        req.key
                    );
                    assert!(a.lookup(&req.key).is_none(), "{at}: holds after error");
                }
            },
            Release(k) => {
                let (ns, n) = k.split_once('/').unwrap();
                a.release(&ServiceKey::new(ns, n));
            }
        }
        a.check_consistency()
            .unwrap_or_else(|e| panic!("{at}: inconsistent: {e}"));
    }
}

const PROD: &[(&str, &str)] = &[("env", "prod")];
const WEB: &[(&str, &str)] = &[("app", "web")];

/// default (no allocation), ns-a (namespace a, priority 10), prod (namespaces
/// labelled env=prod, priority 5), web (services app=web, no priority).
fn mixed() -> Vec<PoolSpec> {
    vec![
        pool("default", "10.0.0.0/30"),
        for_ns(pool("ns-a", "10.0.1.0/30"), 10, &["a"]),
        with(
            pool("prod", "10.0.2.0/30"),
            ServiceAllocation {
                priority: 5,
                namespace_selectors: vec![sel(PROD)],
                ..Default::default()
            },
        ),
        with(
            pool("web", "10.0.3.0/31"),
            ServiceAllocation {
                service_selectors: vec![sel(WEB)],
                ..Default::default()
            },
        ),
    ]
}

#[test]
fn matching_pools_first_by_priority_then_the_rest() {
    let mut a = Allocator::new(mixed()).unwrap();
    run(
        "mixed",
        &mut a,
        vec![
            // Matches no allocation: only the pool without one.
            Assign(svc("b/x", &[], &[]), &["10.0.0.0"], ""),
            Assign(svc("a/x", &[], &[]), &["10.0.1.0"], ""),
            // Both ns-a (10) and prod (5) match: prod first.
            Assign(svc("a/y", PROD, &[]), &["10.0.2.0"], ""),
            Assign(svc("c/w", &[], WEB), &["10.0.3.0"], ""),
            // prod (5), ns-a (10), web (unset, last).
            Assign(svc("a/w", PROD, WEB), &["10.0.2.1"], ""),
            Assign(svc("a/p2", PROD, WEB), &["10.0.2.2"], ""),
            Assign(svc("a/p3", PROD, WEB), &["10.0.2.3"], ""),
            // prod is full: next matching pool by priority.
            Assign(svc("a/p4", PROD, WEB), &["10.0.1.1"], ""),
            Assign(svc("a/p5", PROD, WEB), &["10.0.1.2"], ""),
            Assign(svc("a/p6", PROD, WEB), &["10.0.1.3"], ""),
            // ... then the unset priority.
            Assign(svc("a/p7", PROD, WEB), &["10.0.3.1"], ""),
            // Every matching pool is full: the pools without an allocation.
            Assign(svc("a/p8", PROD, WEB), &["10.0.0.1"], ""),
            // A freed address in a matching pool is preferred again.
            Release("a/w"),
            Assign(svc("a/p9", PROD, WEB), &["10.0.2.1"], ""),
            // Idempotent.
            Assign(svc("a/p9", PROD, WEB), &["10.0.2.1"], ""),
        ],
    );
    let stats = a.pool_stats();
    let in_use: Vec<(&str, u128)> = stats.iter().map(|s| (&s.name[..], s.in_use)).collect();
    assert_eq!(
        in_use,
        vec![("default", 2), ("ns-a", 4), ("prod", 4), ("web", 2)]
    );
}

#[test]
fn a_pool_that_does_not_match_is_never_used_for_the_service() {
    let pools = vec![
        for_ns(pool("ns-a", "10.0.1.0/30"), 0, &["a"]),
        PoolSpec {
            auto_assign: false,
            ..for_ns(pool("manual-a", "10.0.5.0/30"), 0, &["a"])
        },
    ];
    let mut a = Allocator::new(pools).unwrap();
    let named = |k, p: &str| {
        let mut r = svc(k, &[], &[]);
        r.pool = Some(p.to_string());
        r
    };
    let requested = |k, ips: &[&str]| {
        let mut r = svc(k, &[], &[]);
        r.requested_ips = ips.iter().map(|s| ip(s)).collect();
        r
    };
    run(
        "not matching",
        &mut a,
        vec![
            Assign(
                svc("b/x", &[], &[]),
                &[],
                "no auto-assign address pool is for this service",
            ),
            // MetalLB's Assign checks the pool of requested IPs and of the
            // annotation against the allocation too.
            Assign(
                named("b/x", "ns-a"),
                &[],
                "address pool \"ns-a\" is not for this service",
            ),
            Assign(
                requested("b/x", &["10.0.1.2"]),
                &[],
                "address pool \"ns-a\" is not for this service",
            ),
            Assign(
                named("b/x", "manual-a"),
                &[],
                "address pool \"manual-a\" is not for this service",
            ),
            Assign(requested("a/x", &["10.0.1.2"]), &["10.0.1.2"], ""),
            // auto-assign: false with an allocation: only when asked for.
            Assign(named("a/y", "manual-a"), &["10.0.5.0"], ""),
            Assign(svc("a/z", &[], &[]), &["10.0.1.0"], ""),
            Assign(svc("a/z2", &[], &[]), &["10.0.1.1"], ""),
            Assign(svc("a/z3", &[], &[]), &["10.0.1.3"], ""),
            Assign(
                svc("a/z4", &[], &[]),
                &[],
                "no available IPv4 addresses in pool \"ns-a\"",
            ),
        ],
    );
    // Only pools with a non-matching allocation and none without one.
    let mut only_manual = Allocator::new(vec![PoolSpec {
        auto_assign: false,
        ..pool("m", "10.0.9.0/30")
    }])
    .unwrap();
    run(
        "no auto pool",
        &mut only_manual,
        vec![Assign(
            svc("b/x", &[], &[]),
            &[],
            "no address pool allows automatic assignment",
        )],
    );
}

#[test]
fn label_changes_move_the_ip_as_metallb_does() {
    let mut a = Allocator::new(mixed()).unwrap();
    run(
        "labels",
        &mut a,
        vec![
            Assign(svc("c/w", &[], WEB), &["10.0.3.0"], ""),
            // The service's labels no longer match "web": MetalLB's Assign of
            // the held IP fails, the IP is cleared and a new one allocated.
            Assign(svc("c/w", &[], &[("app", "db")]), &["10.0.0.0"], ""),
            Assign(svc("a/y", PROD, &[]), &["10.0.2.0"], ""),
            // Namespace relabelled: prod no longer matches; ns-a does.
            Assign(svc("a/y", &[("env", "dev")], &[]), &["10.0.1.0"], ""),
            // Unchanged labels keep the IP.
            Assign(svc("a/y", &[("env", "dev")], &[]), &["10.0.1.0"], ""),
            // Matching again does not move it back (the held IP stays valid).
            Assign(svc("a/y", PROD, &[]), &["10.0.1.0"], ""),
        ],
    );
}

#[test]
fn rebuild_keeps_admitted_ips_and_moves_the_others() {
    let mut keep = svc("a/y", PROD, &[]);
    keep.current = vec![ip("10.0.2.3")];
    // Holds an address of "web" but no longer has the label.
    let mut moved = svc("c/w", &[], &[]);
    moved.current = vec![ip("10.0.3.1")];
    moved.created = Some(1);
    let (a, results) = Allocator::rebuild(mixed(), &[keep, moved]).unwrap();
    let got: Vec<(String, Vec<IpAddr>)> = results
        .into_iter()
        .map(|(k, r)| (k.to_string(), r.unwrap().addrs()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("c/w".to_string(), vec![ip("10.0.0.0")]),
            ("a/y".to_string(), vec![ip("10.0.2.3")]),
        ]
    );
    a.check_consistency().unwrap();
    // A rebuild moves nothing that the running allocator would keep.
    let mut again = Vec::new();
    for (k, ips) in a.held() {
        let mut r = if k.namespace == "a" {
            svc(&k.to_string(), PROD, &[])
        } else {
            svc(&k.to_string(), &[], &[])
        };
        r.current = ips;
        again.push(r);
    }
    let (b, results) = Allocator::rebuild(mixed(), &again).unwrap();
    for (k, r) in results {
        assert_eq!(
            r.unwrap().addrs(),
            a.lookup(&k).unwrap().addrs(),
            "{k} moved on rebuild"
        );
    }
    b.check_consistency().unwrap();
}

#[test]
fn empty_allocation_priority_ties_and_unset_priorities() {
    let pools = vec![
        pool("plain", "10.0.0.0/31"),
        // An allocation with no criteria admits every Service (MetalLB), so
        // the pool is tried before the pools without one.
        with(
            pool("everyone", "10.0.4.0/31"),
            ServiceAllocation {
                priority: 20,
                ..Default::default()
            },
        ),
        for_ns(pool("zeta", "10.0.6.0/32"), 3, &["a"]),
        for_ns(pool("alpha", "10.0.7.0/32"), 3, &["a"]),
        for_ns(pool("neg", "10.0.8.0/32"), -1, &["a"]),
    ];
    let mut a = Allocator::new(pools).unwrap();
    run(
        "order",
        &mut a,
        vec![
            Assign(svc("b/x", &[], &[]), &["10.0.4.0"], ""),
            // Same priority: by name.
            Assign(svc("a/1", &[], &[]), &["10.0.7.0"], ""),
            Assign(svc("a/2", &[], &[]), &["10.0.6.0"], ""),
            Assign(svc("a/3", &[], &[]), &["10.0.4.1"], ""),
            // Negative counts as unset: after every set priority.
            Assign(svc("a/4", &[], &[]), &["10.0.8.0"], ""),
            Assign(svc("a/5", &[], &[]), &["10.0.0.0"], ""),
        ],
    );
}

#[test]
fn prefer_dual_stack_takes_what_the_matching_pools_give() {
    let pools = vec![
        PoolSpec::new(
            "both",
            vec![
                (ip("10.0.0.0"), ip("10.0.0.3")),
                (ip("2001:db8::"), ip("2001:db8::3")),
            ],
        ),
        for_ns(pool("a-v4", "10.0.1.0/30"), 1, &["a"]),
    ];
    let mut a = Allocator::new(pools).unwrap();
    let ds = |k| {
        let mut r = svc(k, &[], &[]);
        r.families = vec![IpFamily::V4, IpFamily::V6];
        r.family_policy = FamilyPolicy::PreferDualStack;
        r
    };
    let rds = |k| {
        let mut r = ds(k);
        r.family_policy = FamilyPolicy::RequireDualStack;
        r
    };
    run(
        "dual",
        &mut a,
        vec![
            // The matching pool gives IPv4 only: MetalLB takes it rather
            // than a dual-stack pair from the other pools.
            Assign(ds("a/x"), &["10.0.1.0"], ""),
            // No matching pool can give both: the rest are tried.
            Assign(rds("a/y"), &["10.0.0.0", "2001:db8::"], ""),
            Assign(ds("b/x"), &["10.0.0.1", "2001:db8::1"], ""),
            Assign(svc("b/y", &[], &[]), &["10.0.0.2"], ""),
            Assign(svc("b/z", &[], &[]), &["10.0.0.3"], ""),
            Assign(
                rds("b/w"),
                &[],
                "no address pool has both a free IPv4 and a free IPv6 address",
            ),
        ],
    );
}

#[test]
fn namespaces_and_namespace_selectors_are_alternatives() {
    let sa = ServiceAllocation {
        namespaces: vec!["a".into()],
        namespace_selectors: vec![sel(PROD)],
        service_selectors: vec![sel(WEB), sel(&[("app", "api")])],
        ..Default::default()
    };
    let none = labels(&[]);
    let prod = labels(PROD);
    let web = labels(WEB);
    let api = labels(&[("app", "api")]);
    // Listed namespace, or a namespace whose labels match (MetalLB resolves
    // both into one set of namespaces); and a matching service selector.
    assert!(allocation_admits(&sa, "a", &none, &web));
    assert!(allocation_admits(&sa, "b", &prod, &api));
    assert!(!allocation_admits(&sa, "b", &none, &web));
    assert!(!allocation_admits(&sa, "a", &prod, &none));
    let only_services = ServiceAllocation {
        service_selectors: vec![sel(WEB)],
        ..Default::default()
    };
    assert!(allocation_admits(&only_services, "any", &none, &web));
    assert!(!allocation_admits(&only_services, "any", &prod, &none));
    assert!(allocation_admits(
        &ServiceAllocation::default(),
        "x",
        &none,
        &none
    ));
}
