//! Stateful scenario tables for the allocator, MetalLB style: each scenario is
//! a pool list and a sequence of steps with the expected outcome of each.
//! After every step the allocator checks its own bookkeeping
//! (`Allocator::check_consistency`, from the crate's `check` feature, which
//! controller/Cargo.toml turns on for tests through a dev-dependency).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_controller::allocator::{
    AllocError, Allocator, Change, FamilyPolicy, IpFamily, PoolSpec, Protocol, ServiceKey,
    ServiceRequest, TrafficPolicy,
};
use ferrolb_controller::service::{RequestError, parse_annotations};

// ---------- builders ----------

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(s: &str) -> ServiceKey {
    let (ns, name) = s.split_once('/').unwrap();
    ServiceKey::new(ns, name)
}

/// `pool("name", &["10.0.0.0/30", "10.0.1.5-10.0.1.9"])`, auto-assign on, avoid off.
fn pool(name: &str, addrs: &[&str]) -> PoolSpec {
    let ranges = addrs
        .iter()
        .map(|a| {
            if let Some((s, e)) = a.split_once('-') {
                (ip(s), ip(e))
            } else {
                let net: ipnet::IpNet = a.parse().unwrap();
                (net.network(), net.broadcast())
            }
        })
        .collect();
    PoolSpec {
        name: name.to_string(),
        ranges,
        auto_assign: true,
        avoid_buggy_ips: false,
        allocation: None,
    }
}

trait PoolExt {
    fn manual(self) -> Self;
    fn avoid(self) -> Self;
}

impl PoolExt for PoolSpec {
    fn manual(mut self) -> Self {
        self.auto_assign = false;
        self
    }
    fn avoid(mut self) -> Self {
        self.avoid_buggy_ips = true;
        self
    }
}

fn svc(k: &str) -> ServiceRequest {
    let mut r = ServiceRequest::new(key(k));
    r.ports = vec![(Protocol::Tcp, 80)];
    r
}

trait ReqExt {
    fn ips(self, ips: &[&str]) -> Self;
    fn pool(self, p: &str) -> Self;
    fn share(self, k: &str) -> Self;
    fn ports(self, p: &[(Protocol, u16)]) -> Self;
    fn local(self, sel: &[(&str, &str)]) -> Self;
    fn families(self, f: &[IpFamily], policy: FamilyPolicy) -> Self;
    fn current(self, ips: &[&str]) -> Self;
    fn created(self, t: i64) -> Self;
}

impl ReqExt for ServiceRequest {
    fn ips(mut self, ips: &[&str]) -> Self {
        self.requested_ips = ips.iter().map(|s| ip(s)).collect();
        self
    }
    fn pool(mut self, p: &str) -> Self {
        self.pool = Some(p.to_string());
        self
    }
    fn share(mut self, k: &str) -> Self {
        self.sharing_key = Some(k.to_string());
        self
    }
    fn ports(mut self, p: &[(Protocol, u16)]) -> Self {
        self.ports = p.to_vec();
        self
    }
    fn local(mut self, sel: &[(&str, &str)]) -> Self {
        self.traffic_policy = TrafficPolicy::Local;
        self.selector = sel
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }
    fn families(mut self, f: &[IpFamily], policy: FamilyPolicy) -> Self {
        self.families = f.to_vec();
        self.family_policy = policy;
        self
    }
    fn current(mut self, ips: &[&str]) -> Self {
        self.current = ips.iter().map(|s| ip(s)).collect();
        self
    }
    fn created(mut self, t: i64) -> Self {
        self.created = Some(t);
        self
    }
}

use FamilyPolicy::{PreferDualStack, RequireDualStack, SingleStack};
use IpFamily::{V4, V6};
use Protocol::{Tcp, Udp};

// ---------- steps ----------

/// Expected outcome of an assignment: the IPs, or a substring of the error.
enum Want {
    Ips(&'static [&'static str]),
    Err(&'static str),
}
use Want::{Err as Fails, Ips};

#[allow(clippy::large_enum_variant)] // test data, built once per step
enum Step {
    /// Assign and check.
    Assign(ServiceRequest, Want),
    /// Release a service.
    Release(&'static str),
    /// Replace the pools; expect exactly these changes: (service, "released" | "pool").
    SetPools(Vec<PoolSpec>, &'static [(&'static str, &'static str)]),
    /// Check what a service holds (empty: nothing).
    Holds(&'static str, &'static [&'static str]),
    /// Check (pool, total, in use).
    Stats(&'static str, u128, u128),
}
use Step::{Assign, Holds, Release, SetPools, Stats};

fn run(name: &str, pools: Vec<PoolSpec>, steps: Vec<Step>) {
    let mut a = Allocator::new(pools).unwrap_or_else(|e| panic!("{name}: pools: {e}"));
    for (i, step) in steps.into_iter().enumerate() {
        let at = format!("{name}, step {i}");
        match step {
            Assign(req, want) => check(&at, &req.key, a.assign(&req), &want),
            Release(k) => {
                a.release(&key(k));
            }
            SetPools(pools, want) => {
                let changes = a.set_pools(pools).unwrap_or_else(|e| panic!("{at}: {e}"));
                let got: Vec<(String, &str)> = changes
                    .iter()
                    .map(|(k, c)| {
                        (
                            k.to_string(),
                            match c {
                                Change::Released { .. } => "released",
                                Change::PoolChanged(_) => "pool",
                            },
                        )
                    })
                    .collect();
                let want: Vec<(String, &str)> =
                    want.iter().map(|(k, c)| (k.to_string(), *c)).collect();
                assert_eq!(got, want, "{at}: changes {changes:?}");
            }
            Holds(k, ips) => {
                let got = a.lookup(&key(k)).map(|x| x.addrs()).unwrap_or_default();
                let want: Vec<IpAddr> = ips.iter().map(|s| ip(s)).collect();
                assert_eq!(got, want, "{at}: {k} holds");
            }
            Stats(p, total, in_use) => {
                let s = a
                    .pool_stats()
                    .into_iter()
                    .find(|s| s.name == p)
                    .unwrap_or_else(|| panic!("{at}: no pool {p}"));
                assert_eq!((s.total, s.in_use), (total, in_use), "{at}: stats of {p}");
            }
        }
        a.check_consistency()
            .unwrap_or_else(|e| panic!("{at}: inconsistent: {e}"));
    }
}

fn check(
    at: &str,
    k: &ServiceKey,
    got: Result<ferrolb_controller::allocator::Assignment, AllocError>,
    want: &Want,
) {
    match (got, want) {
        (Ok(a), Ips(ips)) => {
            let want: Vec<IpAddr> = ips.iter().map(|s| ip(s)).collect();
            assert_eq!(a.addrs(), want, "{at}: {k} got {a:?}");
        }
        (Err(e), Fails(sub)) => {
            let msg = e.to_string();
            assert!(msg.contains(sub), "{at}: {k}: error {msg:?} lacks {sub:?}");
        }
        (Ok(a), Fails(sub)) => panic!("{at}: {k}: got {a:?}, want error containing {sub:?}"),
        (Err(e), Ips(ips)) => panic!("{at}: {k}: error {e}, want {ips:?}"),
    }
}

// ---------- scenarios ----------

#[test]
fn lowest_free_first_pool_order_and_idempotence() {
    run(
        "basic",
        vec![pool("a", &["10.0.0.0/30"]), pool("b", &["10.0.1.0/30"])],
        vec![
            Assign(svc("ns/s1"), Ips(&["10.0.0.0"])),
            Assign(svc("ns/s2"), Ips(&["10.0.0.1"])),
            // Idempotent: same request, same IP, nothing else moves.
            Assign(svc("ns/s1"), Ips(&["10.0.0.0"])),
            Assign(svc("ns/s1").ports(&[(Tcp, 443)]), Ips(&["10.0.0.0"])),
            Stats("a", 4, 2),
            Release("ns/s1"),
            Holds("ns/s1", &[]),
            Stats("a", 4, 1),
            // The freed lowest address is reused.
            Assign(svc("ns/s3"), Ips(&["10.0.0.0"])),
            Assign(svc("ns/s4"), Ips(&["10.0.0.2"])),
            Assign(svc("ns/s5"), Ips(&["10.0.0.3"])),
            // First pool full: second pool.
            Assign(svc("ns/s6"), Ips(&["10.0.1.0"])),
            Release("ns/s4"),
            Assign(svc("ns/s7"), Ips(&["10.0.0.2"])),
        ],
    );
}

#[test]
fn exhaustion_of_a_slash_30() {
    run(
        "exhaustion",
        vec![pool("small", &["10.0.0.0/30"])],
        vec![
            Assign(svc("ns/a"), Ips(&["10.0.0.0"])),
            Assign(svc("ns/b"), Ips(&["10.0.0.1"])),
            Assign(svc("ns/c"), Ips(&["10.0.0.2"])),
            Assign(svc("ns/d"), Ips(&["10.0.0.3"])),
            Assign(
                svc("ns/e"),
                Fails("no available IPv4 addresses in pool \"small\""),
            ),
            Holds("ns/e", &[]),
            Release("ns/b"),
            Assign(svc("ns/e"), Ips(&["10.0.0.1"])),
            Stats("small", 4, 4),
        ],
    );
    run(
        "exhaustion over several pools",
        vec![pool("a", &["10.0.0.0/32"]), pool("b", &["10.0.1.0/32"])],
        vec![
            Assign(svc("ns/a"), Ips(&["10.0.0.0"])),
            Assign(svc("ns/b"), Ips(&["10.0.1.0"])),
            Assign(
                svc("ns/c"),
                Fails("no available IPv4 addresses in any auto-assign pool (\"a\", \"b\")"),
            ),
        ],
    );
    run(
        "no pools",
        vec![],
        vec![Assign(
            svc("ns/a"),
            Fails("no address pools are configured"),
        )],
    );
}

#[test]
fn auto_assign_off() {
    run(
        "auto-assign false",
        vec![
            pool("expensive", &["192.0.2.0/30"]).manual(),
            pool("cheap", &["10.0.0.0/31"]),
        ],
        vec![
            // Auto allocation skips the manual pool although it comes first.
            Assign(svc("ns/a"), Ips(&["10.0.0.0"])),
            Assign(svc("ns/b"), Ips(&["10.0.0.1"])),
            Assign(svc("ns/c"), Fails("in pool \"cheap\"")),
            // By pool name or by IP it is fine.
            Assign(svc("ns/c").pool("expensive"), Ips(&["192.0.2.0"])),
            Assign(svc("ns/d").ips(&["192.0.2.3"]), Ips(&["192.0.2.3"])),
        ],
    );
    run(
        "only manual pools",
        vec![pool("expensive", &["192.0.2.0/30"]).manual()],
        vec![
            Assign(
                svc("ns/a"),
                Fails("no address pool allows automatic assignment"),
            ),
            Assign(svc("ns/a").pool("expensive"), Ips(&["192.0.2.0"])),
        ],
    );
}

#[test]
fn avoid_buggy_ips() {
    run(
        "avoid .0 and .255",
        vec![pool("p", &["10.0.0.254-10.0.1.1"]).avoid()],
        vec![
            Stats("p", 2, 0),
            Assign(svc("ns/a"), Ips(&["10.0.0.254"])),
            // 10.0.0.255 and 10.0.1.0 are skipped.
            Assign(svc("ns/b"), Ips(&["10.0.1.1"])),
            Assign(
                svc("ns/c"),
                Fails("no available IPv4 addresses in pool \"p\""),
            ),
            Release("ns/a"),
            Assign(svc("ns/c"), Ips(&["10.0.0.254"])),
            Assign(svc("ns/d").ips(&["10.0.1.0"]), Fails("avoids buggy IPs")),
        ],
    );
    run(
        "avoid in a /24 counts 254",
        vec![
            pool("p", &["10.0.0.0/24"]).avoid(),
            pool("q", &["10.0.1.0/24"]),
        ],
        vec![
            Stats("p", 254, 0),
            Stats("q", 256, 0),
            Assign(svc("ns/a"), Ips(&["10.0.0.1"])),
            Assign(svc("ns/b").pool("q"), Ips(&["10.0.1.0"])),
            // IPv6 is never avoided.
        ],
    );
    run(
        "avoid does not touch IPv6",
        vec![pool("p6", &["2001:db8::ff-2001:db8::100"]).avoid()],
        vec![
            Stats("p6", 2, 0),
            Assign(
                svc("ns/a").families(&[V6], SingleStack),
                Ips(&["2001:db8::ff"]),
            ),
            Assign(
                svc("ns/b").families(&[V6], SingleStack),
                Ips(&["2001:db8::100"]),
            ),
        ],
    );
}

#[test]
fn requested_ips_and_pool_annotation() {
    run(
        "requested",
        vec![pool("a", &["10.0.0.0/29"]), pool("b", &["10.0.1.0/29"])],
        vec![
            Assign(svc("ns/a").ips(&["10.0.0.5"]), Ips(&["10.0.0.5"])),
            Assign(
                svc("ns/b").ips(&["10.9.9.9"]),
                Fails("requested IP 10.9.9.9 is not in any address pool"),
            ),
            Assign(
                svc("ns/b").ips(&["10.0.0.5"]),
                Fails(
                    "IP 10.0.0.5 is already used by ns/a, which does not share it (sharing key none vs none)",
                ),
            ),
            Assign(svc("ns/b").ips(&["10.0.1.3"]).pool("b"), Ips(&["10.0.1.3"])),
            Assign(
                svc("ns/c").ips(&["10.0.1.4"]).pool("a"),
                Fails("requested IP 10.0.1.4 is in pool \"b\", not in the annotated pool \"a\""),
            ),
            Assign(
                svc("ns/c").pool("nope"),
                Fails("unknown address pool \"nope\""),
            ),
            Assign(svc("ns/c").pool("b"), Ips(&["10.0.1.0"])),
            // Changing the requested IP moves the service; the old one is freed.
            Assign(svc("ns/a").ips(&["10.0.0.6"]), Ips(&["10.0.0.6"])),
            Assign(svc("ns/d").ips(&["10.0.0.5"]), Ips(&["10.0.0.5"])),
            // Dropping the request keeps what it holds.
            Assign(svc("ns/a"), Ips(&["10.0.0.6"])),
            // Annotating another pool moves it there.
            Assign(svc("ns/a").pool("b"), Ips(&["10.0.1.1"])),
            Assign(
                svc("ns/e").ips(&["10.0.0.1", "10.0.0.2"]),
                Fails("both IPv4"),
            ),
            Assign(
                svc("ns/e").ips(&["2001:db8::1"]),
                Fails("is IPv6, but the service's IP families are IPv4"),
            ),
        ],
    );
}

#[test]
fn dual_stack() {
    let both = || vec![pool("ds", &["10.0.0.0/31", "2001:db8::/127"])];
    run(
        "dual-stack pool",
        both(),
        vec![
            Assign(svc("ns/single4"), Ips(&["10.0.0.0"])),
            Assign(
                svc("ns/single6").families(&[V6], SingleStack),
                Ips(&["2001:db8::"]),
            ),
            Assign(
                svc("ns/req").families(&[V4, V6], RequireDualStack),
                Ips(&["10.0.0.1", "2001:db8::1"]),
            ),
            Assign(
                svc("ns/req2").families(&[V6, V4], RequireDualStack),
                Fails("RequireDualStack"),
            ),
            Holds("ns/req2", &[]),
            Release("ns/single6"),
            // IPv6 primary: IPv6 first.
            Assign(
                svc("ns/prefer").families(&[V6, V4], PreferDualStack),
                Ips(&["2001:db8::"]),
            ),
            Release("ns/single4"),
            // The missing family is filled in later, the held one kept.
            Assign(
                svc("ns/prefer").families(&[V6, V4], PreferDualStack),
                Ips(&["2001:db8::", "10.0.0.0"]),
            ),
        ],
    );
    run(
        "separate pools per family",
        vec![
            pool("v4", &["10.0.0.0/30"]),
            pool("v6", &["2001:db8::/126"]),
        ],
        vec![
            // No single pool has both: Require fails, Prefer gets the primary.
            Assign(
                svc("ns/req").families(&[V4, V6], RequireDualStack),
                Fails("no auto-assign address pool has both IPv4 and IPv6 addresses"),
            ),
            Assign(
                svc("ns/pref").families(&[V4, V6], PreferDualStack),
                Ips(&["10.0.0.0"]),
            ),
            Assign(
                svc("ns/pref6").families(&[V6, V4], PreferDualStack),
                Ips(&["2001:db8::"]),
            ),
            Assign(
                svc("ns/pool6").families(&[V4], SingleStack).pool("v6"),
                Fails("address pool \"v6\" has no IPv4 addresses"),
            ),
            Assign(
                svc("ns/reqips")
                    .families(&[V4, V6], RequireDualStack)
                    .ips(&["10.0.0.3", "2001:db8::3"]),
                Ips(&["10.0.0.3", "2001:db8::3"]),
            ),
            Stats("v4", 4, 2),
            Stats("v6", 4, 2),
        ],
    );
    run(
        "IPv4 only config",
        vec![pool("v4", &["10.0.0.0/30"])],
        vec![
            Assign(
                svc("ns/pref").families(&[V6, V4], PreferDualStack),
                Ips(&["10.0.0.0"]),
            ),
            Assign(
                svc("ns/six").families(&[V6], SingleStack),
                Fails("no auto-assign address pool has IPv6 addresses"),
            ),
        ],
    );
}

#[test]
fn ipv6_slash_64() {
    run(
        "ipv6 /64",
        vec![pool("v6", &["2001:db8:1::/64"])],
        vec![
            Stats("v6", 1u128 << 64, 0),
            Assign(
                svc("ns/a").families(&[V6], SingleStack),
                Ips(&["2001:db8:1::"]),
            ),
            Assign(
                svc("ns/b").families(&[V6], SingleStack),
                Ips(&["2001:db8:1::1"]),
            ),
            Assign(
                svc("ns/c")
                    .families(&[V6], SingleStack)
                    .ips(&["2001:db8:1::ffff:ffff:ffff:ffff"]),
                Ips(&["2001:db8:1::ffff:ffff:ffff:ffff"]),
            ),
            Release("ns/a"),
            Assign(
                svc("ns/d").families(&[V6], SingleStack),
                Ips(&["2001:db8:1::"]),
            ),
            Stats("v6", 1u128 << 64, 3),
        ],
    );
}

#[test]
fn sharing() {
    let p = || vec![pool("p", &["10.0.0.0/29"])];
    run(
        "same key shares, other key or none does not",
        p(),
        vec![
            Assign(
                svc("ns/a").share("k").ips(&["10.0.0.5"]),
                Ips(&["10.0.0.5"]),
            ),
            Assign(
                svc("ns/b")
                    .share("k")
                    .ports(&[(Tcp, 443)])
                    .ips(&["10.0.0.5"]),
                Ips(&["10.0.0.5"]),
            ),
            Assign(
                svc("ns/c")
                    .share("other")
                    .ports(&[(Tcp, 8080)])
                    .ips(&["10.0.0.5"]),
                Fails("which does not share it (sharing key \"other\" vs \"k\")"),
            ),
            Assign(
                svc("ns/c").ports(&[(Tcp, 8080)]).ips(&["10.0.0.5"]),
                Fails(
                    "IP 10.0.0.5 is already used by ns/a, which does not share it (sharing key none vs \"k\")",
                ),
            ),
            // Port overlap, same protocol.
            Assign(
                svc("ns/c")
                    .share("k")
                    .ports(&[(Tcp, 80)])
                    .ips(&["10.0.0.5"]),
                Fails("port 80/TCP is already used on IP 10.0.0.5 by ns/a"),
            ),
            // Same port, other protocol: fine.
            Assign(
                svc("ns/c")
                    .share("k")
                    .ports(&[(Udp, 80)])
                    .ips(&["10.0.0.5"]),
                Ips(&["10.0.0.5"]),
            ),
            Stats("p", 8, 1),
            Release("ns/a"),
            Release("ns/b"),
            Holds("ns/c", &["10.0.0.5"]),
            Stats("p", 8, 1),
            Release("ns/c"),
            Stats("p", 8, 0),
        ],
    );
    run(
        "a non-sharing holder refuses",
        p(),
        vec![
            Assign(svc("ns/other").ips(&["10.0.0.5"]), Ips(&["10.0.0.5"])),
            Assign(
                svc("ns/me")
                    .share("a")
                    .ports(&[(Tcp, 81)])
                    .ips(&["10.0.0.5"]),
                Fails(
                    "IP 10.0.0.5 is already used by ns/other, which does not share it (sharing key \"a\" vs none)",
                ),
            ),
        ],
    );
    run(
        "traffic policies",
        p(),
        vec![
            Assign(
                svc("ns/cl").share("k").ips(&["10.0.0.1"]),
                Ips(&["10.0.0.1"]),
            ),
            Assign(
                svc("ns/lo")
                    .share("k")
                    .ports(&[(Tcp, 81)])
                    .local(&[("app", "x")])
                    .ips(&["10.0.0.1"]),
                Fails(
                    "already used by ns/cl with externalTrafficPolicy Cluster; a Local service cannot share it",
                ),
            ),
            Assign(
                svc("ns/l1")
                    .share("l")
                    .local(&[("app", "x")])
                    .ips(&["10.0.0.2"]),
                Ips(&["10.0.0.2"]),
            ),
            Assign(
                svc("ns/l2")
                    .share("l")
                    .ports(&[(Tcp, 81)])
                    .local(&[("app", "y")])
                    .ips(&["10.0.0.2"]),
                Fails(
                    "already used by ns/l1 with externalTrafficPolicy Local and a different selector",
                ),
            ),
            Assign(
                svc("ns/l2")
                    .share("l")
                    .ports(&[(Tcp, 81)])
                    .local(&[("app", "x")])
                    .ips(&["10.0.0.2"]),
                Ips(&["10.0.0.2"]),
            ),
            Assign(
                svc("ns/c2")
                    .share("l")
                    .ports(&[(Tcp, 82)])
                    .ips(&["10.0.0.2"]),
                Fails("with externalTrafficPolicy Local; a Cluster service cannot share it"),
            ),
        ],
    );
    run(
        "auto-assign prefers a key-mate's IP",
        p(),
        vec![
            Assign(svc("ns/x"), Ips(&["10.0.0.0"])),
            Assign(svc("ns/a").share("k"), Ips(&["10.0.0.1"])),
            Assign(svc("ns/y"), Ips(&["10.0.0.2"])),
            Assign(
                svc("ns/b").share("k").ports(&[(Tcp, 443)]),
                Ips(&["10.0.0.1"]),
            ),
            // Port clash with the mates: a fresh address instead.
            Assign(svc("ns/c").share("k"), Ips(&["10.0.0.3"])),
            // Other key: no preference.
            Assign(
                svc("ns/d").share("j").ports(&[(Tcp, 443)]),
                Ips(&["10.0.0.4"]),
            ),
            // Incompatible policy with the mates: fresh address.
            Assign(
                svc("ns/e").share("k").ports(&[(Tcp, 9)]).local(&[]),
                Ips(&["10.0.0.5"]),
            ),
        ],
    );
    run(
        "changing the sharing key of a shared IP",
        p(),
        vec![
            Assign(svc("ns/a").share("k"), Ips(&["10.0.0.0"])),
            Assign(
                svc("ns/b").share("k").ports(&[(Tcp, 443)]),
                Ips(&["10.0.0.0"]),
            ),
            // b changes key: cannot stay with a, moves.
            Assign(
                svc("ns/b").share("z").ports(&[(Tcp, 443)]),
                Ips(&["10.0.0.1"]),
            ),
            // a alone may change its key in place.
            Assign(svc("ns/a").share("q"), Ips(&["10.0.0.0"])),
            Assign(
                svc("ns/c").share("q").ports(&[(Tcp, 443)]),
                Ips(&["10.0.0.0"]),
            ),
        ],
    );
}

#[test]
fn config_changes() {
    run(
        "removing an IP from every pool moves only that service",
        vec![pool("a", &["10.0.0.0/30"]), pool("b", &["10.0.1.0/30"])],
        vec![
            Assign(svc("ns/s1"), Ips(&["10.0.0.0"])),
            Assign(svc("ns/s2"), Ips(&["10.0.0.1"])),
            Assign(svc("ns/s3").pool("b"), Ips(&["10.0.1.0"])),
            SetPools(
                vec![
                    pool("a", &["10.0.0.1-10.0.0.3"]),
                    pool("b", &["10.0.1.0/30"]),
                ],
                &[("ns/s1", "released")],
            ),
            Holds("ns/s1", &[]),
            Holds("ns/s2", &["10.0.0.1"]),
            Holds("ns/s3", &["10.0.1.0"]),
            Assign(svc("ns/s1"), Ips(&["10.0.0.2"])),
            // A change that does not touch anyone's pool moves nothing.
            SetPools(
                vec![
                    pool("a", &["10.0.0.1-10.0.0.3"]),
                    pool("b", &["10.0.1.0/30"]),
                    pool("c", &["10.0.2.0/24"]),
                ],
                &[],
            ),
            Holds("ns/s1", &["10.0.0.2"]),
            Holds("ns/s2", &["10.0.0.1"]),
            Holds("ns/s3", &["10.0.1.0"]),
            // Moving 10.0.1.0/30 to another pool: the annotated service loses it.
            SetPools(
                vec![
                    pool("a", &["10.0.0.1-10.0.0.3"]),
                    pool("c", &["10.0.1.0/24"]),
                ],
                &[("ns/s3", "released")],
            ),
            Assign(svc("ns/s3").pool("b"), Fails("unknown address pool \"b\"")),
            // Renaming a pool keeps un-annotated services' IPs, reports the new pool.
            SetPools(
                vec![
                    pool("renamed", &["10.0.0.1-10.0.0.3"]),
                    pool("c", &["10.0.1.0/24"]),
                ],
                &[("ns/s1", "pool"), ("ns/s2", "pool")],
            ),
            Holds("ns/s1", &["10.0.0.2"]),
            Stats("renamed", 3, 2),
            // Turning avoid-buggy-ips on releases a .0/.255 holder.
            Assign(svc("ns/z").ips(&["10.0.1.255"]), Ips(&["10.0.1.255"])),
            SetPools(
                vec![
                    pool("renamed", &["10.0.0.1-10.0.0.3"]),
                    pool("c", &["10.0.1.0/24"]).avoid(),
                ],
                &[("ns/z", "released")],
            ),
            Stats("c", 254, 0),
        ],
    );
    let mut a = Allocator::new(vec![pool("a", &["10.0.0.0/30"])]).unwrap();
    assert!(matches!(
        a.set_pools(vec![pool("a", &["10.0.0.0/30"]), pool("b", &["10.0.0.2/31"])]),
        Err(e) if e.to_string() == "address pools \"a\" and \"b\" overlap at 10.0.0.2"
    ));
    assert!(
        Allocator::new(vec![
            pool("a", &["10.0.0.0/30"]),
            pool("a", &["10.0.1.0/30"])
        ])
        .is_err()
    );
    assert!(
        Allocator::new(vec![PoolSpec {
            ranges: vec![(ip("10.0.0.1"), ip("2001:db8::1"))],
            ..pool("x", &[])
        }])
        .is_err()
    );
}

#[test]
fn held_lists_every_service_with_its_ips() {
    let mut a = Allocator::new(vec![
        pool("a", &["10.0.0.0/24"]),
        pool("v6", &["2001:db8::/120"]),
    ])
    .unwrap();
    for (k, want) in [
        ("ns/x", "10.0.0.0"),
        ("ns/y", "10.0.0.1"),
        ("ns/z", "10.0.0.200"),
        ("ns/w", "2001:db8::ff"),
    ] {
        let fam = if want.contains(':') { V6 } else { V4 };
        let req = svc(k).families(&[fam], SingleStack).ips(&[want]);
        let got = a.assign(&req).unwrap();
        assert_eq!(got.addrs(), vec![ip(want)]);
    }
    let held = |a: &Allocator| {
        let mut v: Vec<(ServiceKey, Vec<IpAddr>)> = a.held().collect();
        v.sort();
        v
    };
    assert_eq!(
        held(&a),
        vec![
            (key("ns/w"), vec![ip("2001:db8::ff")]),
            (key("ns/x"), vec![ip("10.0.0.0")]),
            (key("ns/y"), vec![ip("10.0.0.1")]),
            (key("ns/z"), vec![ip("10.0.0.200")]),
        ]
    );
    a.release(&key("ns/y"));
    assert_eq!(
        held(&a)
            .iter()
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>(),
        ["ns/w", "ns/x", "ns/z"]
    );
}

#[test]
fn dual_stack_config_change_keeps_the_other_family() {
    run(
        "lose v6 only",
        vec![pool("ds", &["10.0.0.0/30", "2001:db8::/126"])],
        vec![
            Assign(
                svc("ns/d").families(&[V4, V6], PreferDualStack),
                Ips(&["10.0.0.0", "2001:db8::"]),
            ),
            SetPools(
                vec![pool("ds", &["10.0.0.0/30", "2001:db8::1-2001:db8::3"])],
                &[("ns/d", "released")],
            ),
            Holds("ns/d", &["10.0.0.0"]),
            Assign(
                svc("ns/d").families(&[V4, V6], PreferDualStack),
                Ips(&["10.0.0.0", "2001:db8::1"]),
            ),
        ],
    );
}

/// IP families as MetalLB takes them: from the Service's listed families
/// (`spec.ipFamilies`, else its cluster IPs); the policy never adds one.
#[test]
fn families_as_listed_policy_only_decides_strictness() {
    let ds = || vec![pool("ds", &["10.0.0.0/30", "2001:db8::/126"])];
    run(
        "PreferDualStack on a single-stack cluster",
        ds(),
        vec![
            // The API server lists one family there: one address, not two.
            Assign(
                svc("ns/p4").families(&[V4], PreferDualStack),
                Ips(&["10.0.0.0"]),
            ),
            // Idempotent: a second pass adds no IPv6 address either.
            Assign(
                svc("ns/p4").families(&[V4], PreferDualStack),
                Ips(&["10.0.0.0"]),
            ),
            Assign(
                svc("ns/p6").families(&[V6], PreferDualStack),
                Ips(&["2001:db8::"]),
            ),
            Stats("ds", 8, 2),
            // Duplicates count once.
            Assign(
                svc("ns/dup").families(&[V4, V4], PreferDualStack),
                Ips(&["10.0.0.1"]),
            ),
        ],
    );
    run(
        "PreferDualStack with both families and only an IPv4 pool",
        vec![pool("v4", &["10.0.0.0/30"])],
        vec![
            Assign(
                svc("ns/p").families(&[V6, V4], PreferDualStack),
                Ips(&["10.0.0.0"]),
            ),
            Holds("ns/p", &["10.0.0.0"]),
        ],
    );
    run(
        "RequireDualStack with one family listed",
        ds(),
        vec![
            Assign(
                svc("ns/r4").families(&[V4], RequireDualStack),
                Fails(
                    "RequireDualStack: cannot allocate both an IPv4 and an IPv6 address: \
                     the service's IP families are IPv4 only (its cluster IPs are not dual-stack)",
                ),
            ),
            Holds("ns/r4", &[]),
            Assign(
                svc("ns/r6")
                    .families(&[V6], RequireDualStack)
                    .ips(&["2001:db8::3"]),
                Fails("the service's IP families are IPv6 only"),
            ),
            // Nothing listed and nothing requested: IPv4 only, so refused too.
            Assign(
                svc("ns/r").families(&[], RequireDualStack),
                Fails("the service's IP families are IPv4 only"),
            ),
            Stats("ds", 8, 0),
            // A holder whose policy becomes RequireDualStack loses its address.
            Assign(svc("ns/held"), Ips(&["10.0.0.0"])),
            Assign(
                svc("ns/held").families(&[V4], RequireDualStack),
                Fails("not dual-stack"),
            ),
            Holds("ns/held", &[]),
            Stats("ds", 8, 0),
        ],
    );
    run(
        "RequireDualStack with both families and pools for both",
        vec![
            pool("v4", &["10.0.1.0/30"]),
            pool("ds", &["10.0.0.0/30", "2001:db8::/126"]),
        ],
        vec![
            // The first pool has no IPv6: both come from "ds", primary first.
            Assign(
                svc("ns/r64").families(&[V6, V4], RequireDualStack),
                Ips(&["2001:db8::", "10.0.0.0"]),
            ),
            Assign(
                svc("ns/r46").families(&[V4, V6], RequireDualStack),
                Ips(&["10.0.0.1", "2001:db8::1"]),
            ),
            Stats("ds", 8, 4),
            Stats("v4", 4, 0),
        ],
    );
    run(
        "no families listed: those of the requested IPs",
        ds(),
        vec![
            Assign(
                svc("ns/q")
                    .families(&[], PreferDualStack)
                    .ips(&["2001:db8::2", "10.0.0.2"]),
                Ips(&["2001:db8::2", "10.0.0.2"]),
            ),
            Assign(
                svc("ns/q6")
                    .families(&[], SingleStack)
                    .ips(&["2001:db8::3"]),
                Ips(&["2001:db8::3"]),
            ),
            Assign(
                svc("ns/none").families(&[], PreferDualStack),
                Ips(&["10.0.0.0"]),
            ),
        ],
    );
}

/// A RequireDualStack service with one family keeps nothing across a rebuild.
#[test]
fn rebuild_refuses_require_dual_stack_with_one_family() {
    let pools = vec![pool("ds", &["10.0.0.0/30", "2001:db8::/126"])];
    let reqs = vec![
        svc("ns/r")
            .families(&[V4], RequireDualStack)
            .current(&["10.0.0.0"])
            .created(1),
        svc("ns/ok").current(&["10.0.0.1"]).created(2),
    ];
    let (a, results) = Allocator::rebuild(pools, &reqs).unwrap();
    let got: BTreeMap<String, Result<Vec<IpAddr>, String>> = results
        .into_iter()
        .map(|(k, r)| {
            (
                k.to_string(),
                r.map(|x| x.addrs()).map_err(|e| e.to_string()),
            )
        })
        .collect();
    assert!(
        got["ns/r"]
            .as_ref()
            .is_err_and(|e| e.contains("not dual-stack")),
        "{got:?}"
    );
    assert_eq!(got["ns/ok"], Ok(vec![ip("10.0.0.1")]));
    assert_eq!(a.lookup(&key("ns/r")), None);
    assert_eq!(a.pool_stats()[0].in_use, 1);
    a.check_consistency().unwrap();
}

// ---------- rebuild ----------

#[test]
fn rebuild_keeps_every_ip() {
    let pools = || {
        vec![
            pool("a", &["10.0.0.0/29"]),
            pool("b", &["10.0.1.0/30", "2001:db8::/126"]).manual(),
        ]
    };
    let mut live = Allocator::new(pools()).unwrap();
    let mut reqs = vec![
        svc("ns/s0"),
        svc("ns/s1"),
        svc("ns/s2").share("k"),
        svc("ns/s3").share("k").ports(&[(Tcp, 443)]),
        svc("ns/s4").pool("b").families(&[V6, V4], RequireDualStack),
        svc("ns/s5").ips(&["10.0.0.7"]),
    ];
    for (i, r) in reqs.iter_mut().enumerate() {
        r.created = Some(100 - i as i64); // creation order opposite to key order
        live.assign(r).unwrap();
    }
    // Holes, so that a naive re-allocation would move things.
    live.release(&key("ns/s1"));
    reqs.remove(1);
    for r in &mut reqs {
        r.current = live.lookup(&r.key).unwrap().addrs();
    }
    let (rebuilt, results) = Allocator::rebuild(pools(), &reqs).unwrap();
    for (k, res) in &results {
        assert_eq!(res.as_ref().ok(), live.lookup(k).as_ref(), "{k} moved");
    }
    assert_eq!(rebuilt.pool_stats(), live.pool_stats());
    rebuilt.check_consistency().unwrap();
    // Order: oldest first.
    let order: Vec<String> = results.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(order, ["ns/s5", "ns/s4", "ns/s3", "ns/s2", "ns/s0"]);
}

#[test]
fn rebuild_with_conflicts() {
    let pools = || vec![pool("a", &["10.0.0.0/30"])];
    let reqs = vec![
        // Claims .1, created later than old-one: loses it, gets a free IP after
        // every keeper is placed (so it cannot steal .0 from keeper).
        svc("ns/young").current(&["10.0.0.1"]).created(20),
        svc("ns/old").current(&["10.0.0.1"]).created(10),
        svc("ns/keeper").current(&["10.0.0.0"]).created(30),
        // An IP outside every pool: re-assigned.
        svc("ns/stray").current(&["192.0.2.1"]).created(5),
        // New, no status.
        svc("ns/new").created(1),
        // Its annotated pool no longer exists.
        svc("ns/lost")
            .current(&["10.0.0.3"])
            .pool("gone")
            .created(40),
    ];
    let (a, results) = Allocator::rebuild(pools(), &reqs).unwrap();
    let got: BTreeMap<String, Result<Vec<IpAddr>, String>> = results
        .into_iter()
        .map(|(k, r)| {
            (
                k.to_string(),
                r.map(|a| a.addrs()).map_err(|e| e.to_string()),
            )
        })
        .collect();
    let want: BTreeMap<String, Result<Vec<IpAddr>, String>> = [
        ("ns/new", Ok(vec![ip("10.0.0.2")])),
        ("ns/stray", Ok(vec![ip("10.0.0.3")])),
        ("ns/old", Ok(vec![ip("10.0.0.1")])),
        (
            "ns/young",
            Err("no available IPv4 addresses in pool \"a\"".to_string()),
        ),
        ("ns/keeper", Ok(vec![ip("10.0.0.0")])),
        ("ns/lost", Err("unknown address pool \"gone\"".to_string())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
    a.check_consistency().unwrap();

    // With room, the loser is re-assigned instead.
    let (_, results) = Allocator::rebuild(vec![pool("a", &["10.0.0.0/29"])], &reqs).unwrap();
    let young = results.iter().find(|(k, _)| k.name == "young").unwrap();
    assert_eq!(young.1.as_ref().unwrap().addrs(), vec![ip("10.0.0.4")]);
}

// ---------- annotations ----------

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn annotations() {
    type Out = Result<(Vec<IpAddr>, Option<String>, Option<String>), RequestError>;
    let ok = |ips: &[&str], p: Option<&str>, s: Option<&str>| -> Out {
        Ok((
            ips.iter().map(|x| ip(x)).collect(),
            p.map(String::from),
            s.map(String::from),
        ))
    };
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        Result<Out, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (&[], None, Ok(ok(&[], None, None))),
        (&[], Some(""), Ok(ok(&[], None, None))),
        (&[], Some("10.0.0.1"), Ok(ok(&["10.0.0.1"], None, None))),
        (
            &[
                ("metallb.universe.tf/address-pool", "a"),
                ("metallb.universe.tf/allow-shared-ip", "k"),
            ],
            None,
            Ok(ok(&[], Some("a"), Some("k"))),
        ),
        (
            &[
                ("metallb.io/address-pool", "a"),
                ("metallb.io/allow-shared-ip", "k"),
            ],
            None,
            Ok(ok(&[], Some("a"), Some("k"))),
        ),
        (
            &[
                ("metallb.io/address-pool", "a"),
                ("metallb.universe.tf/address-pool", "a"),
            ],
            None,
            Ok(ok(&[], Some("a"), None)),
        ),
        (
            &[
                ("metallb.io/address-pool", "a"),
                ("metallb.universe.tf/address-pool", "b"),
            ],
            None,
            // MetalLB v0.16 (valueForAnnotation, SharingKey): metallb.io wins.
            Ok(ok(&[], Some("a"), None)),
        ),
        (
            &[
                ("metallb.io/allow-shared-ip", "new"),
                ("metallb.universe.tf/allow-shared-ip", "old"),
                ("metallb.io/address-pool", ""),
                ("metallb.universe.tf/address-pool", "b"),
            ],
            None,
            // Present but empty under metallb.io: absent, the old one ignored.
            Ok(ok(&[], None, Some("new"))),
        ),
        (
            &[(
                "metallb.universe.tf/loadBalancerIPs",
                "10.0.0.1, 2001:db8::1",
            )],
            None,
            Ok(ok(&["10.0.0.1", "2001:db8::1"], None, None)),
        ),
        (
            &[("metallb.io/loadBalancerIPs", "10.0.0.1,2001:db8::1")],
            Some("2001:db8::1"),
            Ok(ok(&["10.0.0.1", "2001:db8::1"], None, None)),
        ),
        (
            &[("metallb.io/loadBalancerIPs", "10.0.0.1")],
            Some("10.0.0.2"),
            Err(
                "spec.loadBalancerIP 10.0.0.2 conflicts with annotation metallb.io/loadBalancerIPs (10.0.0.1)",
            ),
        ),
        (
            &[("metallb.universe.tf/loadBalancerIPs", "10.0.0.1,10.0.0.2")],
            None,
            Err(
                "metallb.universe.tf/loadBalancerIPs: 10.0.0.1 and 10.0.0.2 are both IPv4; at most one address per family",
            ),
        ),
        (
            &[("metallb.universe.tf/loadBalancerIPs", "10.0.0.300")],
            None,
            Err("metallb.universe.tf/loadBalancerIPs: \"10.0.0.300\" is not a valid IP address"),
        ),
        (
            &[],
            Some("nope"),
            Err("spec.loadBalancerIP: \"nope\" is not a valid IP address"),
        ),
        (
            &[
                ("metallb.io/loadBalancerIPs", "10.0.0.1"),
                ("metallb.universe.tf/loadBalancerIPs", "10.0.0.2,10.0.0.3"),
            ],
            None,
            Ok(ok(&["10.0.0.1"], None, None)),
        ),
    ];
    for (i, (a, lb, want)) in cases.into_iter().enumerate() {
        let got = parse_annotations(&ann(a), lb);
        match want {
            Ok(w) => assert_eq!(got, w, "case {i}"),
            Err(sub) => {
                let e = got.expect_err(&format!("case {i}")).to_string();
                assert!(e.contains(sub), "case {i}: {e:?} lacks {sub:?}");
            }
        }
    }
}

#[test]
fn annotations_feed_the_allocator() {
    // Both prefixes, end to end.
    let mut a = Allocator::new(vec![
        pool("a", &["10.0.0.0/30"]),
        pool("b", &["10.0.1.0/30"]).manual(),
    ])
    .unwrap();
    for (i, prefix) in ["metallb.universe.tf/", "metallb.io/"]
        .into_iter()
        .enumerate()
    {
        let (ips, p, s) = parse_annotations(
            &ann(&[
                (&format!("{prefix}address-pool"), "b"),
                (&format!("{prefix}allow-shared-ip"), "k"),
            ]),
            None,
        )
        .unwrap();
        let mut r = svc(&format!("ns/s{i}"));
        r.requested_ips = ips;
        r.pool = p;
        r.sharing_key = s;
        r.ports = vec![(Tcp, 80 + i as u16)];
        assert_eq!(
            a.assign(&r).unwrap().ips,
            vec![(ip("10.0.1.0"), "b".to_string())]
        );
    }
}

// ---------- property ----------

mod prop {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    #[allow(clippy::large_enum_variant)] // test data
    enum Op {
        Assign(usize, ServiceRequest),
        Release(usize),
        SetPools(usize),
    }

    const SVCS: usize = 8;

    fn pool_sets() -> Vec<Vec<PoolSpec>> {
        vec![
            vec![
                pool("a", &["10.0.0.254-10.0.1.2"]).avoid(),
                pool("m", &["10.0.2.0/30"]).manual(),
                pool("six", &["2001:db8::/126"]),
            ],
            vec![
                pool("a", &["10.0.0.255-10.0.1.3"]),
                pool("six", &["2001:db8::1-2001:db8::2", "10.0.2.1/32"]),
            ],
            vec![pool("b", &["10.0.0.250-10.0.1.0", "2001:db8::2/127"]).avoid()],
            vec![],
        ]
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u32..8).prop_map(|x| IpAddr::from([10, 0, 0, 250 + x as u8 % 6])),
            (0u32..4).prop_map(|x| IpAddr::from([10, 0, 1, x as u8])),
            (0u32..4).prop_map(|x| IpAddr::from([10, 0, 2, x as u8])),
            (0u32..4).prop_map(|x| ip(&format!("2001:db8::{x}"))),
        ]
    }

    fn request(i: usize) -> impl Strategy<Value = ServiceRequest> {
        (
            prop_oneof![Just(None), Just(Some("k")), Just(Some("j"))],
            proptest::collection::vec((prop_oneof![Just(Tcp), Just(Udp)], 80u16..83), 0..3),
            prop_oneof![Just(0), Just(1), Just(2)],
            prop_oneof![
                Just((vec![V4], SingleStack)),
                Just((vec![V6], SingleStack)),
                Just((vec![V4, V6], PreferDualStack)),
                Just((vec![V6, V4], RequireDualStack)),
                // Single-stack clusters list one family whatever the policy.
                Just((vec![V4], PreferDualStack)),
                Just((vec![V6], RequireDualStack)),
            ],
            proptest::collection::vec(any_ip(), 0..2),
            prop_oneof![
                Just(None),
                Just(Some("a")),
                Just(Some("m")),
                Just(Some("six"))
            ],
        )
            .prop_map(move |(share, ports, policy, (fams, fp), ips, pool)| {
                let mut r = svc(&format!("ns/s{i}"));
                r.sharing_key = share.map(String::from);
                r.ports = ports;
                match policy {
                    0 => {}
                    1 => r = r.local(&[("app", "x")]),
                    _ => r = r.local(&[("app", "y")]),
                }
                r = r.families(&fams, fp);
                r.requested_ips = ips;
                r.pool = pool.map(String::from);
                r
            })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..SVCS).prop_flat_map(|i| request(i).prop_map(move |r| Op::Assign(i, r))),
            2 => (0..SVCS).prop_map(Op::Release),
            1 => (0..4usize).prop_map(Op::SetPools),
        ]
    }

    fn compatible(a: &ServiceRequest, b: &ServiceRequest) -> bool {
        a.sharing_key.is_some()
            && a.sharing_key == b.sharing_key
            && match (a.traffic_policy, b.traffic_policy) {
                (TrafficPolicy::Cluster, TrafficPolicy::Cluster) => true,
                (TrafficPolicy::Local, TrafficPolicy::Local) => a.selector == b.selector,
                _ => false,
            }
            && !a.ports.iter().any(|p| b.ports.contains(p))
    }

    fn in_pool(pools: &[PoolSpec], addr: IpAddr, name: &str) -> bool {
        let Some(p) = pools.iter().find(|p| p.name == name) else {
            return false;
        };
        let buggy = matches!(addr, IpAddr::V4(v4) if p.avoid_buggy_ips && matches!(v4.octets()[3], 0 | 255));
        !buggy
            && p.ranges
                .iter()
                .any(|(s, e)| IpFamily::of(s) == IpFamily::of(&addr) && *s <= addr && addr <= *e)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
        #[test]
        fn never_double_books_and_stays_in_pools(ops in proptest::collection::vec(op(), 1..60)) {
            let sets = pool_sets();
            let mut pools = sets[0].clone();
            let mut a = Allocator::new(pools.clone()).unwrap();
            // Last accepted request of every service holding something.
            let mut model: HashMap<usize, ServiceRequest> = HashMap::new();
            for op in ops {
                match op {
                    Op::Assign(i, r) => {
                        match a.assign(&r) {
                            Ok(got) => {
                                // Requested IPs are honoured exactly.
                                if !r.requested_ips.is_empty() {
                                    prop_assert_eq!(got.addrs(), r.requested_ips.clone());
                                }
                                model.insert(i, r);
                            }
                            Err(_) => {
                                prop_assert!(a.lookup(&r.key).is_none());
                                model.remove(&i);
                            }
                        }
                    }
                    Op::Release(i) => {
                        a.release(&key(&format!("ns/s{i}")));
                        model.remove(&i);
                    }
                    Op::SetPools(s) => {
                        pools = sets[s].clone();
                        a.set_pools(pools.clone()).unwrap();
                    }
                }
                a.check_consistency().map_err(TestCaseError::fail)?;
                // Invariants over what the allocator reports.
                let mut holders: HashMap<IpAddr, Vec<usize>> = HashMap::new();
                for i in 0..SVCS {
                    let Some(asg) = a.lookup(&key(&format!("ns/s{i}"))) else { continue };
                    prop_assert!(model.contains_key(&i), "s{} holds {:?} without a live request", i, asg);
                    // At most one address per family, and only of listed families.
                    let fams: Vec<IpFamily> = asg.addrs().iter().map(IpFamily::of).collect();
                    prop_assert!(fams.len() <= 2 && (fams.len() < 2 || fams[0] != fams[1]), "s{} holds {:?}", i, asg);
                    prop_assert!(fams.iter().all(|f| model[&i].families.contains(f)), "s{} holds {:?} for families {:?}", i, asg, model[&i].families);
                    for (addr, pool_name) in &asg.ips {
                        prop_assert!(in_pool(&pools, *addr, pool_name), "{} not in pool {}", addr, pool_name);
                        if let Some(p) = &model[&i].pool {
                            prop_assert_eq!(p, pool_name);
                        }
                        holders.entry(*addr).or_default().push(i);
                    }
                }
                for (addr, hs) in &holders {
                    for x in 0..hs.len() {
                        for y in x + 1..hs.len() {
                            prop_assert!(
                                compatible(&model[&hs[x]], &model[&hs[y]]),
                                "{} shared by incompatible s{} and s{}", addr, hs[x], hs[y]
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Keys whose namespace and name concatenate to the same text are distinct
/// services; ids freed by releases are reused without mixing services up;
/// three or more services can share an IP and leave it one by one.
#[test]
fn key_identity_id_reuse_and_many_sharers() {
    let mut a = Allocator::new(vec![pool("p", &["10.0.0.0/29"])]).unwrap();
    let x = a.assign(&svc("ab/c")).unwrap();
    let y = a.assign(&svc("a/bc")).unwrap();
    assert_ne!(x.addrs(), y.addrs());
    assert_eq!(a.lookup(&key("ab/c")), Some(x.clone()));
    assert_eq!(a.lookup(&key("a/bc")), Some(y.clone()));
    assert_eq!(a.release(&key("ab/c")), Some(x.clone()));
    assert_eq!(a.lookup(&key("ab/c")), None);
    // The freed id goes to a new service; the old key stays unknown.
    let z = a.assign(&svc("ns/z")).unwrap();
    assert_eq!(z.addrs(), x.addrs());
    assert_eq!(a.lookup(&key("ab/c")), None);
    assert_eq!(a.lookup(&key("a/bc")), Some(y));
    a.check_consistency().unwrap();

    // Four services share one IP (different ports), then leave in turn.
    let sharers: Vec<ServiceRequest> = (0..4u16)
        .map(|i| svc(&format!("s/m{i}")).share("k").ports(&[(Tcp, 1000 + i)]))
        .collect();
    let first = a.assign(&sharers[0]).unwrap();
    for r in &sharers[1..] {
        assert_eq!(a.assign(r).unwrap(), first);
        a.check_consistency().unwrap();
    }
    // A port clash with any holder is refused.
    let clash = svc("s/clash")
        .share("k")
        .ports(&[(Tcp, 1002)])
        .ips(&[&first.addrs()[0].to_string()]);
    assert!(matches!(
        a.assign(&clash),
        Err(AllocError::PortInUse { port: 1002, .. })
    ));
    for (i, r) in sharers.iter().enumerate() {
        assert_eq!(a.release(&r.key), Some(first.clone()));
        a.check_consistency().unwrap();
        for later in &sharers[i + 1..] {
            assert_eq!(a.lookup(&later.key), Some(first.clone()));
        }
    }
    // The IP is free again: the next service takes it.
    assert_eq!(a.assign(&svc("s/next")).unwrap(), first);
    a.check_consistency().unwrap();
}
