//! The controller's decisions as tables: Service objects in, the plan of
//! status, annotation and Events out (`ControllerCore`, pure, no API server).

use std::collections::HashSet;
use std::net::IpAddr;

use ferrolb_controller::allocator::ServiceKey;
use ferrolb_controller::core::{
    ControllerCore, EventKind, PlannedEvent, REASON_ALLOCATED, REASON_CLEARED, REASON_FAILED,
    REASON_LB_FAILED, ServicePlan,
};
use ferrolb_controller::facts::{ServiceFacts, service_facts};
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

const TWO: &str = "address-pools:
- {name: a, protocol: bgp, addresses: [10.0.0.1-10.0.0.2]}
- {name: b, protocol: bgp, addresses: [10.0.1.0/24], auto-assign: false}
";
/// Pool a shrunk to 10.0.0.1 only.
const SHRUNK: &str = "address-pools:
- {name: a, protocol: bgp, addresses: [10.0.0.1/32]}
- {name: b, protocol: bgp, addresses: [10.0.1.0/24], auto-assign: false}
";
const DUAL: &str = "address-pools:
- {name: d, protocol: bgp, addresses: [10.0.2.0/24, 'fd00::/120']}
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A LoadBalancer Service `ns/<name>` with extra fields merged in.
fn lb(name: &str, extra: Value) -> Service {
    let mut v = json!({
        "metadata": {"namespace": "ns", "name": name, "uid": format!("uid-{name}")},
        "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"], "ports": [{"port": 80}]},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The Service as it is after the shell wrote `plan` (status and annotation).
fn written(svc: &Service, plan: &ServicePlan) -> Service {
    let mut v = serde_json::to_value(svc).unwrap();
    if let Some(ips) = &plan.ingress {
        let ingress: Vec<Value> = ips.iter().map(|i| json!({"ip": i.to_string()})).collect();
        v["status"] = json!({"loadBalancer": {"ingress": ingress}});
    }
    if let Some(pool) = &plan.pool_annotation {
        let ann = &mut v["metadata"]["annotations"];
        if ann.is_null() {
            *ann = json!({});
        }
        match pool {
            Some(p) => ann["metallb.io/ip-allocated-from-pool"] = json!(p),
            None => {
                ann.as_object_mut()
                    .unwrap()
                    .remove("metallb.io/ip-allocated-from-pool");
            }
        }
    }
    serde_json::from_value(v).unwrap()
}

fn facts(svc: &Service) -> ServiceFacts {
    service_facts(svc).unwrap()
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("ns", name)
}

/// A core with `config` in force and rebuilt from no Services.
fn core_with(config: &str) -> ControllerCore {
    let mut core = ControllerCore::new(None);
    assert!(core.ready().is_err());
    let out = core.offer_config(Some(config));
    assert!(out.applied && out.reconcile_all && out.report.is_none());
    assert!(core.rebuild(&[]));
    core.ready().unwrap();
    core
}

/// Plans for `svc`, applies the writes, and returns the plan and the written Service.
fn step(core: &mut ControllerCore, svc: &Service) -> (ServicePlan, Service) {
    let plan = core.plan(&facts(svc));
    let after = written(svc, &plan);
    (plan, after)
}

fn reasons(plan: &ServicePlan) -> Vec<(&'static str, EventKind)> {
    plan.events.iter().map(|e| (e.reason, e.kind)).collect()
}

#[test]
fn nothing_is_planned_before_a_config_and_a_rebuild() {
    let mut core = ControllerCore::new(None);
    assert_eq!(core.ready(), Err("no configuration loaded yet".into()));
    let plan = core.plan(&facts(&lb("web", json!({}))));
    assert!(plan.is_empty() && !plan.reconcile_all);
    core.offer_config(Some(TWO));
    assert_eq!(core.ready(), Err("initial sync not done".into()));
    assert!(core.plan(&facts(&lb("web", json!({})))).is_empty());
}

#[test]
fn assign_once_then_nothing_to_write() {
    let mut core = core_with(TWO);
    let web = lb("web", json!({}));
    let (plan, web) = step(&mut core, &web);
    assert_eq!(plan.ingress, Some(vec![ip("10.0.0.1")]));
    assert_eq!(plan.pool_annotation, Some(Some("a".into())));
    assert_eq!(
        plan.events,
        vec![PlannedEvent {
            kind: EventKind::Normal,
            reason: REASON_ALLOCATED,
            note: "Assigned IP [\"10.0.0.1\"]".into()
        }]
    );
    // The same Service as written: nothing more to do.
    let (again, _) = step(&mut core, &web);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn an_exhausted_pool_fails_once_and_a_freed_ip_asks_for_a_full_reconcile() {
    let mut core = core_with(TWO);
    let (_, _one) = step(&mut core, &lb("one", json!({})));
    let (_, _two) = step(&mut core, &lb("two", json!({})));
    let three = lb("three", json!({}));
    let (plan, three) = step(&mut core, &three);
    assert_eq!(reasons(&plan), [(REASON_FAILED, EventKind::Warning)]);
    assert!(
        plan.events[0]
            .note
            .starts_with("Failed to allocate IP for \"ns/three\": ")
    );
    assert!(plan.ingress.is_none() && plan.pool_annotation.is_none());
    // Failing the same way again: no second Event.
    assert!(step(&mut core, &three).0.is_empty());
    // `one` is deleted: its IP is free and `three` waits, so reconcile all.
    assert!(core.forget(&key("one")));
    let (plan, _) = step(&mut core, &three);
    assert_eq!(plan.ingress, Some(vec![ip("10.0.0.1")]));
    assert_eq!(reasons(&plan), [(REASON_ALLOCATED, EventKind::Normal)]);
    // Nobody waits any more: deleting frees without a full reconcile.
    assert!(!core.forget(&key("two")));
}

#[test]
fn an_invalid_request_keeps_the_ip_it_holds_and_says_why_once() {
    let mut core = core_with(TWO);
    let (_, web) = step(&mut core, &lb("web", json!({})));
    // A typo in loadBalancerIPs on a Service that holds 10.0.0.1.
    let holding = |annotations: Value| {
        lb(
            "web",
            json!({
                "metadata": {"annotations": annotations},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}},
            }),
        )
    };
    let typo = holding(json!({
        "metallb.universe.tf/loadBalancerIPs": "10.0.0.x",
        "metallb.io/ip-allocated-from-pool": "a",
    }));
    let (plan, typo) = step(&mut core, &typo);
    assert!(
        plan.ingress.is_none() && plan.pool_annotation.is_none(),
        "{plan:?}"
    );
    assert_eq!(reasons(&plan), [(REASON_LB_FAILED, EventKind::Warning)]);
    assert!(
        plan.events[0].note.contains("keeping IP [\"10.0.0.1\"]")
            && plan.events[0].note.contains("10.0.0.x"),
        "{}",
        plan.events[0].note
    );
    assert!(step(&mut core, &typo).0.is_empty(), "said once");
    assert_eq!(
        core.allocator()
            .unwrap()
            .lookup(&key("web"))
            .unwrap()
            .addrs(),
        [ip("10.0.0.1")]
    );

    // An unknown pool on the same Service: kept too.
    let unknown = holding(json!({
        "metallb.universe.tf/address-pool": "nope",
        "metallb.io/ip-allocated-from-pool": "a",
    }));
    let (plan, _) = step(&mut core, &unknown);
    assert!(plan.ingress.is_none());
    assert_eq!(reasons(&plan), [(REASON_LB_FAILED, EventKind::Warning)]);
    assert!(
        plan.events[0]
            .note
            .contains("unknown address pool \"nope\"")
    );

    // Fixed: nothing to write, no Event.
    assert!(step(&mut core, &web).0.is_empty());
}

#[test]
fn an_invalid_request_without_an_ip_is_an_allocation_failure() {
    let mut core = core_with(TWO);
    let bad = lb(
        "bad",
        json!({"metadata": {"annotations": {"metallb.universe.tf/address-pool": "nope"}}}),
    );
    let (plan, _) = step(&mut core, &bad);
    assert_eq!(reasons(&plan), [(REASON_FAILED, EventKind::Warning)]);
    assert!(
        plan.events[0]
            .note
            .contains("unknown address pool \"nope\"")
    );
}

#[test]
fn a_service_that_stops_being_a_load_balancer_is_cleared() {
    let mut core = core_with(TWO);
    let (_, web) = step(&mut core, &lb("web", json!({})));
    let plain = {
        let mut v = serde_json::to_value(&web).unwrap();
        v["spec"]["type"] = json!("ClusterIP");
        serde_json::from_value::<Service>(v).unwrap()
    };
    let (plan, plain) = step(&mut core, &plain);
    assert_eq!(plan.ingress, Some(vec![]));
    assert_eq!(plan.pool_annotation, Some(None));
    assert_eq!(
        plan.events,
        vec![PlannedEvent {
            kind: EventKind::Normal,
            reason: REASON_CLEARED,
            note: "service is not of type LoadBalancer, clearing IP [\"10.0.0.1\"]".into()
        }]
    );
    assert!(core.allocator().unwrap().lookup(&key("web")).is_none());
    assert!(step(&mut core, &plain).0.is_empty());
}

#[test]
fn a_service_of_another_class_is_left_alone() {
    let mut core = core_with(TWO);
    let theirs = lb(
        "theirs",
        json!({"spec": {"loadBalancerClass": "other"}, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}),
    );
    assert!(step(&mut core, &theirs).0.is_empty());
    assert!(core.allocator().unwrap().is_empty());
}

#[test]
fn a_config_that_strands_an_ip_is_rejected_until_the_service_is_deleted() {
    let mut core = core_with(TWO);
    let (_, _one) = step(&mut core, &lb("one", json!({})));
    let (_, _two) = step(&mut core, &lb("two", json!({})));
    // two holds 10.0.0.2, which SHRUNK takes away.
    let out = core.offer_config(Some(SHRUNK));
    assert!(!out.applied);
    let report = out.report.expect("reported");
    assert!(
        report.contains("service \"ns/two\" cannot own \"10.0.0.2\""),
        "{report}"
    );
    assert!(core.gate().stale());
    // Looked at again, nothing changed: no second report.
    assert_eq!(core.offer_config(Some(SHRUNK)).report, None);
    // Deleting `one` changes nothing for the rejected config.
    assert!(!core.forget(&key("one")));
    assert!(core.gate().stale());
    // Deleting `two` lets it in, without any text change.
    assert!(core.forget(&key("two")), "applied: reconcile every Service");
    assert!(!core.gate().stale());
    assert_eq!(core.config().unwrap().pools[0].size(), 1);
}

#[test]
fn a_config_that_strands_an_ip_applies_once_the_service_moves() {
    let mut core = core_with(TWO);
    let (_, _) = step(&mut core, &lb("one", json!({})));
    let (_, two) = step(&mut core, &lb("two", json!({})));
    assert!(!core.offer_config(Some(SHRUNK)).applied);
    // The user moves `two` into pool b (an IP there).
    let moved = {
        let mut v = serde_json::to_value(&two).unwrap();
        v["spec"]["loadBalancerIP"] = json!("10.0.1.7");
        serde_json::from_value::<Service>(v).unwrap()
    };
    let (plan, _) = step(&mut core, &moved);
    assert_eq!(plan.ingress, Some(vec![ip("10.0.1.7")]));
    assert!(plan.reconcile_all, "the waiting config applied");
    assert!(!core.gate().stale());
}

#[test]
fn a_restart_keeps_every_ip_and_says_why_one_moved() {
    let mut core = core_with(TWO);
    let (_, one) = step(&mut core, &lb("one", json!({})));
    let (_, two) = step(&mut core, &lb("two", json!({})));
    // A new controller, started on SHRUNK (applied while none ran).
    let mut fresh = ControllerCore::new(None);
    fresh.offer_config(Some(SHRUNK));
    assert!(fresh.rebuild(&[facts(&one), facts(&two)]));
    assert!(step(&mut fresh, &one).0.is_empty(), "one keeps 10.0.0.1");
    let (plan, _) = step(&mut fresh, &two);
    assert_eq!(
        reasons(&plan),
        [
            (REASON_CLEARED, EventKind::Normal),
            (REASON_FAILED, EventKind::Warning)
        ]
    );
    assert!(
        plan.events[0]
            .note
            .contains("IP 10.0.0.2 is no longer in any address pool"),
        "{}",
        plan.events[0].note
    );
    assert_eq!(plan.ingress, Some(vec![]));
}

#[test]
fn deletions_missed_while_the_watch_was_down_are_released() {
    let mut core = core_with(TWO);
    step(&mut core, &lb("one", json!({})));
    step(&mut core, &lb("two", json!({})));
    let present: HashSet<ServiceKey> = [key("two")].into();
    core.forget_missing(&present);
    let held: Vec<ServiceKey> = core.allocator().unwrap().held().map(|(k, _)| k).collect();
    assert_eq!(held, [key("two")]);
}

#[test]
fn families_follow_the_service_as_metallb_reads_them() {
    let mut core = core_with(DUAL);
    // PreferDualStack on a single-stack cluster: ipFamilies has one entry.
    let single = lb(
        "single",
        json!({"spec": {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"]}}),
    );
    let (plan, _) = step(&mut core, &single);
    assert_eq!(plan.ingress, Some(vec![ip("10.0.2.0")]));
    // A dual-stack Service gets both, primary first.
    let dual = lb(
        "dual",
        json!({"spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}}),
    );
    let (plan, _) = step(&mut core, &dual);
    assert_eq!(plan.ingress, Some(vec![ip("fd00::"), ip("10.0.2.1")]));
    // RequireDualStack with one family cannot be met.
    let bad = lb(
        "bad",
        json!({"spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"]}}),
    );
    let (plan, _) = step(&mut core, &bad);
    assert_eq!(reasons(&plan), [(REASON_FAILED, EventKind::Warning)]);
}

#[test]
fn an_invalid_config_is_reported_once_and_a_missing_one_keeps_the_last_good() {
    let mut core = core_with(TWO);
    let out = core.offer_config(Some("address-pools: [{name: a}]"));
    assert!(!out.applied && out.report.is_some());
    assert!(core.gate().stale());
    let out = core.offer_config(None);
    assert!(!out.applied);
    assert!(out.report.unwrap().contains("configuration not found"));
    assert_eq!(core.config().unwrap().pools.len(), 2, "last good kept");
    assert_eq!(core.config_rejections, 2);
}

#[test]
fn old_pool_annotation_is_left_alone_and_moves_nothing() {
    // A Service as MetalLB v0.12 (or an earlier ferrolb) left it: an IP and
    // metallb.universe.tf/ip-allocated-from-pool. Current MetalLB writes
    // metallb.io/ip-allocated-from-pool and never touches the old key.
    let old = lb(
        "web",
        json!({
            "metadata": {"annotations": {"metallb.universe.tf/ip-allocated-from-pool": "a"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}},
        }),
    );
    let mut core = ControllerCore::new(None);
    core.offer_config(Some(TWO));
    assert!(core.rebuild(&[facts(&old)]));
    let (plan, after) = step(&mut core, &old);
    // The IP stays, the new annotation is written, nothing else.
    assert_eq!(plan.ingress, None);
    assert_eq!(plan.pool_annotation, Some(Some("a".to_string())));
    assert!(plan.events.is_empty(), "{plan:?}");
    let ann = after.metadata.annotations.clone().unwrap();
    assert_eq!(ann["metallb.universe.tf/ip-allocated-from-pool"], "a");
    assert_eq!(ann["metallb.io/ip-allocated-from-pool"], "a");
    assert!(step(&mut core, &after).0.is_empty());

    // Restart with both annotations present: nothing moves, nothing to write.
    let mut again = ControllerCore::new(None);
    again.offer_config(Some(TWO));
    assert!(again.rebuild(&[facts(&after)]));
    assert!(step(&mut again, &after).0.is_empty());

    // A Service that stops being a LoadBalancer loses the annotation we
    // write; the old one is not ours to remove (MetalLB leaves it too).
    let mut v = serde_json::to_value(&after).unwrap();
    v["spec"]["type"] = json!("ClusterIP");
    let plain: Service = serde_json::from_value(v).unwrap();
    let (plan, after) = step(&mut again, &plain);
    assert_eq!(plan.pool_annotation, Some(None));
    assert_eq!(plan.ingress, Some(Vec::new()));
    let ann = after.metadata.annotations.unwrap();
    assert!(!ann.contains_key("metallb.io/ip-allocated-from-pool"));
    assert_eq!(ann["metallb.universe.tf/ip-allocated-from-pool"], "a");
}
