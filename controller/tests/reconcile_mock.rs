//! The reconciler against a mocked API server (`tower_test::mock::pair`):
//! every request it makes is checked for method, path and JSON body.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrolb_config::Config;
use ferrolb_controller::reconcile::{self, Context};
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type MockHandle = Handle<Request<Body>, Response<Body>>;

const CONFIG: &str = "address-pools:\n\
- name: a\n  protocol: bgp\n  addresses: [10.20.0.1/32]\n";

fn svc(ns: &str, name: &str, type_: &str, ingress: &[&str], annotations: Value) -> Service {
    let ingress: Vec<Value> = ingress.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": format!("uid-{name}"),
            "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": annotations,
        },
        "spec": {
            "type": type_,
            "ports": [{"port": 80, "protocol": "TCP"}],
            "selector": {"app": name},
        },
        "status": {"loadBalancer": {"ingress": ingress}},
    }))
    .unwrap()
}

fn context() -> (Arc<Context>, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (ctx, _rx) = Context::new(client, None, Some("test-instance".into()));
    assert!(ctx.apply_config(Config::parse(CONFIG).unwrap()));
    (Arc::new(ctx), handle)
}

/// Takes the next request, checks method and path, returns its JSON body and
/// answers with `reply` (`Null`: echoes the body, as a create does).
async fn expect(handle: &mut MockHandle, method: Method, path: &str, reply: Value) -> Value {
    let mut handle = pin!(handle);
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
        .expect("client dropped");
    assert_eq!(req.method(), method, "method of {}", req.uri());
    assert_eq!(req.uri().to_string(), path);
    if method == Method::PATCH {
        assert_eq!(
            req.headers().get("content-type").unwrap(),
            "application/merge-patch+json"
        );
    }
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let reply = if reply.is_null() { &body } else { &reply };
    send.send_response(Response::new(Body::from(
        serde_json::to_vec(reply).unwrap(),
    )));
    body
}

async fn expect_nothing_more(handle: &mut MockHandle) {
    let mut handle = pin!(handle);
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected request {} {}", req.method(), req.uri());
    }
}

/// The Event checks common to all tests; returns the note.
fn check_event(ev: &Value, type_: &str, reason: &str, name: &str) -> String {
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["kind"], "Event");
    assert_eq!(ev["type"], type_);
    assert_eq!(ev["reason"], reason);
    assert_eq!(ev["action"], reason);
    assert_eq!(ev["reportingController"], "ferrolb-controller");
    assert_eq!(ev["reportingInstance"], "test-instance");
    assert_eq!(ev["regarding"]["kind"], "Service");
    assert_eq!(ev["regarding"]["name"], name);
    assert_eq!(ev["regarding"]["namespace"], "default");
    assert_eq!(ev["regarding"]["uid"], format!("uid-{name}"));
    assert_eq!(ev["metadata"]["namespace"], "default");
    assert!(
        ev["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{name}."))
    );
    ev["note"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn load_balancer_gets_ip_status_annotation_and_one_event() {
    let (ctx, mut handle) = context();
    assert!(ctx.rebuild(&[]));
    let web = svc("default", "web", "LoadBalancer", &[], json!({}));
    let task = tokio::spawn(reconcile::reconcile(Arc::new(web.clone()), ctx.clone()));

    let mut patched = web.clone();
    patched.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "10.20.0.1"}]}}))
            .unwrap(),
    );
    let body = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/namespaces/default/services/web/status?",
        serde_json::to_value(&patched).unwrap(),
    )
    .await;
    assert_eq!(
        body,
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.20.0.1"}]}}})
    );

    let ev = expect(
        &mut handle,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events?",
        Value::Null,
    )
    .await;
    let note = check_event(&ev, "Normal", "IPAllocated", "web");
    assert_eq!(note, "Assigned IP [\"10.20.0.1\"]");

    let body = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/namespaces/default/services/web?",
        serde_json::to_value(&patched).unwrap(),
    )
    .await;
    assert_eq!(
        body,
        json!({"metadata": {"annotations": {"metallb.universe.tf/ip-allocated-from-pool": "a"}}})
    );
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;

    // Reconciling the updated object again changes nothing and says nothing.
    let mut done = patched.clone();
    done.metadata.annotations = Some(
        [(
            "metallb.universe.tf/ip-allocated-from-pool".to_string(),
            "a".to_string(),
        )]
        .into(),
    );
    reconcile::reconcile(Arc::new(done), ctx.clone())
        .await
        .unwrap();
    expect_nothing_more(&mut handle).await;
    assert_eq!(ctx.counters.event_errors.load(Ordering::Relaxed), 0);

    let metrics = ferrolb_controller::run::render_metrics(&ctx);
    for line in [
        "metallb_allocator_addresses_total{pool=\"a\"} 1",
        "metallb_allocator_addresses_in_use_total{pool=\"a\"} 1",
        "metallb_k8s_client_config_loaded_bool 1",
        "metallb_k8s_client_config_stale_bool 0",
        "ferrolb_reconcile_errors_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn exhausted_pool_gives_allocation_failed_and_no_ingress() {
    let (ctx, mut handle) = context();
    // "first" holds the pool's only address (from its status, as after a restart).
    let first = svc(
        "default",
        "first",
        "LoadBalancer",
        &["10.20.0.1"],
        json!({}),
    );
    assert!(ctx.rebuild(&[Arc::new(first)]));

    let second = svc("default", "second", "LoadBalancer", &[], json!({}));
    let task = tokio::spawn(reconcile::reconcile(Arc::new(second.clone()), ctx.clone()));
    let ev = expect(
        &mut handle,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events?",
        Value::Null,
    )
    .await;
    let note = check_event(&ev, "Warning", "AllocationFailed", "second");
    assert_eq!(
        note,
        "Failed to allocate IP for \"default/second\": no available IPv4 addresses in pool \"a\""
    );
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;

    // The same failure again: no second Event, no status write.
    reconcile::reconcile(Arc::new(second), ctx.clone())
        .await
        .unwrap();
    expect_nothing_more(&mut handle).await;
    assert_eq!(ctx.counters.event_errors.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn former_load_balancer_gets_its_ingress_cleared() {
    let (ctx, mut handle) = context();
    let annotations = json!({"metallb.universe.tf/ip-allocated-from-pool": "a"});
    let before = svc(
        "default",
        "old",
        "LoadBalancer",
        &["10.20.0.1"],
        annotations.clone(),
    );
    assert!(ctx.rebuild(&[Arc::new(before)]));

    let now = svc("default", "old", "ClusterIP", &["10.20.0.1"], annotations);
    let task = tokio::spawn(reconcile::reconcile(Arc::new(now.clone()), ctx.clone()));
    let reply = serde_json::to_value(&now).unwrap();
    let body = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/namespaces/default/services/old/status?",
        reply.clone(),
    )
    .await;
    assert_eq!(body, json!({"status": {"loadBalancer": {"ingress": null}}}));
    let body = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/namespaces/default/services/old?",
        reply,
    )
    .await;
    assert_eq!(
        body,
        json!({"metadata": {"annotations": {"metallb.universe.tf/ip-allocated-from-pool": null}}})
    );
    let ev = expect(
        &mut handle,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events?",
        Value::Null,
    )
    .await;
    let note = check_event(&ev, "Normal", "ClearAssignment", "old");
    assert_eq!(
        note,
        "service is not of type LoadBalancer, clearing IP [\"10.20.0.1\"]"
    );
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;
    assert_eq!(ctx.counters.event_errors.load(Ordering::Relaxed), 0);

    // The address is free again: a new LoadBalancer Service gets it.
    let next = svc("default", "next", "LoadBalancer", &[], json!({}));
    let task = tokio::spawn(reconcile::reconcile(Arc::new(next.clone()), ctx.clone()));
    let body = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/namespaces/default/services/next/status?",
        serde_json::to_value(&next).unwrap(),
    )
    .await;
    assert_eq!(
        body,
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.20.0.1"}]}}})
    );
    drop(handle);
    let _ = task.await;
}

#[tokio::test]
async fn other_load_balancer_class_is_left_alone() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (ctx, _rx) = Context::new(client, Some("ferrolb".into()), Some("test-instance".into()));
    assert!(ctx.apply_config(Config::parse(CONFIG).unwrap()));
    assert!(ctx.rebuild(&[]));
    let ctx = Arc::new(ctx);

    // No class while we only serve "ferrolb": not ours, no request at all.
    let plain = svc("default", "plain", "LoadBalancer", &[], json!({}));
    reconcile::reconcile(Arc::new(plain), ctx.clone())
        .await
        .unwrap();
    expect_nothing_more(&mut handle).await;

    // Our class: served.
    let mut ours = svc("default", "ours", "LoadBalancer", &[], json!({}));
    ours.spec.as_mut().unwrap().load_balancer_class = Some("ferrolb".into());
    let task = tokio::spawn(reconcile::reconcile(Arc::new(ours.clone()), ctx.clone()));
    let body = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/namespaces/default/services/ours/status?",
        serde_json::to_value(&ours).unwrap(),
    )
    .await;
    assert_eq!(
        body,
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.20.0.1"}]}}})
    );
    drop(handle);
    let _ = task.await;
}

#[tokio::test]
async fn bad_load_balancer_ip_is_an_allocation_failure() {
    let (ctx, mut handle) = context();
    assert!(ctx.rebuild(&[]));
    let mut bad = svc("default", "bad", "LoadBalancer", &[], json!({}));
    bad.spec.as_mut().unwrap().load_balancer_ip = Some("10.20.0.300".into());
    let task = tokio::spawn(reconcile::reconcile(Arc::new(bad), ctx.clone()));
    let ev = expect(
        &mut handle,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events?",
        Value::Null,
    )
    .await;
    let note = check_event(&ev, "Warning", "AllocationFailed", "bad");
    assert_eq!(
        note,
        "Failed to allocate IP for \"default/bad\": spec.loadBalancerIP: \"10.20.0.300\" is not a valid IP address"
    );
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;
}

fn context_with(config: &str) -> (Arc<Context>, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (ctx, _rx) = Context::new(client, None, Some("test-instance".into()));
    assert!(ctx.apply_config(Config::parse(config).unwrap()));
    (Arc::new(ctx), handle)
}

#[tokio::test]
async fn config_that_strands_an_ip_is_rejected_until_a_restart_applies_it() {
    let (ctx, mut handle) = context();
    let annotations = json!({"metallb.universe.tf/ip-allocated-from-pool": "a"});
    let held = svc(
        "default",
        "held",
        "LoadBalancer",
        &["10.20.0.1"],
        annotations,
    );
    assert!(ctx.rebuild(&[Arc::new(held.clone())]));
    // Pool "a" moves to another address: 10.20.0.1 would be in no pool. As
    // with MetalLB, the running controller rejects the config and keeps the
    // last good one: the Service keeps its IP, nothing is written.
    let moved = "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.30.0.1/32]\n";
    assert!(!ctx.apply_config_text(Some(moved)));
    assert_eq!(ctx.counters.config_errors.load(Ordering::Relaxed), 1);
    assert!(ctx.state().config_stale);
    assert_eq!(ctx.state().config, Some(Config::parse(CONFIG).unwrap()));
    assert!(ctx.ready().is_ok());
    reconcile::reconcile(Arc::new(held.clone()), ctx.clone())
        .await
        .unwrap();
    expect_nothing_more(&mut handle).await;
    // A config that keeps 10.20.0.1 in a pool is taken.
    let grown =
        "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.20.0.0/24, 10.30.0.1/32]\n";
    assert!(ctx.apply_config_text(Some(grown)));
    assert!(!ctx.state().config_stale);

    // A controller started with the new config adopts nothing outside it:
    // the Service is moved (ClearAssignment, then a new IP).
    let (ctx, mut handle) = context_with(moved);
    assert!(ctx.rebuild(&[Arc::new(held.clone())]));
    let task = tokio::spawn(reconcile::reconcile(Arc::new(held.clone()), ctx.clone()));
    let ev = expect(
        &mut handle,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events?",
        Value::Null,
    )
    .await;
    let note = check_event(&ev, "Normal", "ClearAssignment", "held");
    assert_eq!(
        note,
        "current IP [\"10.20.0.1\"] not allowed by config, clearing: IP 10.20.0.1 is no longer in any address pool"
    );
    let body = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/namespaces/default/services/held/status?",
        serde_json::to_value(&held).unwrap(),
    )
    .await;
    assert_eq!(
        body,
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.30.0.1"}]}}})
    );
    let ev = expect(
        &mut handle,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events?",
        Value::Null,
    )
    .await;
    assert_eq!(
        check_event(&ev, "Normal", "IPAllocated", "held"),
        "Assigned IP [\"10.30.0.1\"]"
    );
    // Same pool name: the annotation is already right.
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;

    // An invalid config afterwards changes nothing and is counted.
    assert!(!ctx.apply_config_text(Some("address-pools: [{name: a, bogus: 1}]\n")));
    assert_eq!(ctx.counters.config_errors.load(Ordering::Relaxed), 1);
    assert!(ctx.state().config_stale);
    assert!(ctx.ready().is_ok());
    expect_nothing_more(&mut handle).await;
}

#[tokio::test]
async fn nothing_is_allocated_without_a_valid_config() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (ctx, _rx) = Context::new(client, None, None);
    assert!(!ctx.apply_config_text(Some("address-pools: [{name: a}]\n")));
    let why = ctx.ready().unwrap_err();
    assert!(why.starts_with("no valid configuration: "), "{why}");
    assert!(!ctx.rebuild(&[]));
    let ctx = Arc::new(ctx);
    let web = svc("default", "web", "LoadBalancer", &[], json!({}));
    reconcile::reconcile(Arc::new(web), ctx.clone())
        .await
        .unwrap();
    expect_nothing_more(&mut handle).await;
}
