//! The reconciler against a mocked API server (`tower_test::mock::pair`):
//! every request it makes is checked for method, path and JSON body.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_config::Config;
use ferrolb_controller::core::ControllerCore;
use ferrolb_controller::facts::service_facts;
use ferrolb_controller::reconcile::{self, Context, REPORTING_CONTROLLER};
use ferrolb_ops::events::{Events, Reporter};
use ferrolb_ops::metrics::Metrics;
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type MockHandle = Handle<Request<Body>, Response<Body>>;

/// Where the reconciler posts its Events.
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events?";

/// MetalLB's annotation naming the pool a Service's IP came from.
const POOL: &str = "metallb.io/ip-allocated-from-pool";

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

/// A kube `Client` over a mocked API server, and the handle to that server.
fn mock_client() -> (Client, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// A context for Services of class `lb_class` on `client`, nothing loaded.
fn bare_context(client: Client, lb_class: Option<&str>) -> Context {
    let events = Events::new(
        client.clone(),
        Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: Some("test-instance".into()),
        },
    );
    Context::new(
        client,
        ControllerCore::new(lb_class.map(Into::into)),
        events,
    )
    .0
}

/// A context serving every class, with `config` applied.
fn context_with(config: &str) -> (Arc<Context>, MockHandle) {
    let (client, handle) = mock_client();
    let ctx = bare_context(client, None);
    assert!(ctx.core().offer_config(Some(config)).applied);
    (Arc::new(ctx), handle)
}

/// Rebuilds the allocator from these Services (as at start-up).
fn rebuild(ctx: &Context, services: &[&Service]) -> bool {
    let facts: Vec<_> = services.iter().filter_map(|s| service_facts(s)).collect();
    ctx.core().rebuild(&facts)
}

/// Events the context could not publish.
fn event_errors(ctx: &Context) -> u64 {
    ctx.events().failed().get()
}

/// A context serving every class, with `CONFIG` applied.
fn context() -> (Arc<Context>, MockHandle) {
    context_with(CONFIG)
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

/// Takes the next request as an Event POST in namespace "default", answers
/// it, checks it with `check_event` and checks its note.
async fn expect_event(handle: &mut MockHandle, type_: &str, reason: &str, name: &str, note: &str) {
    let ev = expect(handle, Method::POST, EVENTS, Value::Null).await;
    assert_eq!(check_event(&ev, type_, reason, name), note);
}

/// Takes the next request as a merge-patch of Service `name`'s status (in
/// namespace "default"), answers it with `reply` and checks that it sets
/// `status.loadBalancer.ingress` to `ingress` and nothing else.
async fn expect_ingress_patch(
    handle: &mut MockHandle,
    name: &str,
    reply: &Service,
    ingress: Value,
) {
    let path = format!("/api/v1/namespaces/default/services/{name}/status?");
    let reply = serde_json::to_value(reply).unwrap();
    let body = expect(handle, Method::PATCH, &path, reply).await;
    assert_eq!(
        body,
        json!({"status": {"loadBalancer": {"ingress": ingress}}})
    );
}

/// Takes the next request as a merge-patch of Service `name` (in namespace
/// "default"), answers it with `reply` and checks that it sets the pool
/// annotation to `pool` (`Null`: removes it) and nothing else.
async fn expect_pool_patch(handle: &mut MockHandle, name: &str, reply: &Service, pool: Value) {
    let path = format!("/api/v1/namespaces/default/services/{name}?");
    let reply = serde_json::to_value(reply).unwrap();
    let body = expect(handle, Method::PATCH, &path, reply).await;
    assert_eq!(body, json!({"metadata": {"annotations": {POOL: pool}}}));
}

/// Reconciles `service` to completion and checks that it made no request at all.
async fn reconcile_silently(ctx: &Arc<Context>, handle: &mut MockHandle, service: Service) {
    // Spawned, so a request it should not make fails the test instead of
    // waiting forever for an answer.
    let task = tokio::spawn(reconcile::reconcile(Arc::new(service), ctx.clone()));
    expect_nothing_more(handle).await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("reconcile did not end")
        .unwrap()
        .unwrap();
}

/// Reconciles `service` and checks only its first request: the status patch
/// giving it `ip`. Then drops the mock server (the rest of the reconcile
/// fails) and waits for the reconcile to end.
async fn expect_first_ip(ctx: &Arc<Context>, mut handle: MockHandle, service: Service, ip: &str) {
    let task = tokio::spawn(reconcile::reconcile(Arc::new(service.clone()), ctx.clone()));
    let name = service.metadata.name.clone().unwrap();
    expect_ingress_patch(&mut handle, &name, &service, json!([{"ip": ip}])).await;
    drop(handle);
    let _ = task.await;
}

#[tokio::test]
async fn load_balancer_gets_ip_status_annotation_and_one_event() {
    let (ctx, mut handle) = context();
    assert!(rebuild(&ctx, &[]));
    let web = svc("default", "web", "LoadBalancer", &[], json!({}));
    let task = tokio::spawn(reconcile::reconcile(Arc::new(web.clone()), ctx.clone()));

    let mut patched = web.clone();
    patched.status = Some(
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "10.20.0.1"}]}}))
            .unwrap(),
    );
    let ingress = json!([{"ip": "10.20.0.1"}]);
    expect_ingress_patch(&mut handle, "web", &patched, ingress).await;
    expect_pool_patch(&mut handle, "web", &patched, json!("a")).await;
    let note = "Assigned IP [\"10.20.0.1\"]";
    expect_event(&mut handle, "Normal", "IPAllocated", "web", note).await;
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;

    // Reconciling the updated object again changes nothing and says nothing.
    let mut done = patched.clone();
    done.metadata.annotations = Some([(POOL.to_string(), "a".to_string())].into());
    reconcile_silently(&ctx, &mut handle, done).await;
    assert_eq!(event_errors(&ctx), 0);

    let mut all = Metrics::new();
    ferrolb_controller::metrics::register(&mut all, ctx.clone()).unwrap();
    let metrics = all.render();
    for line in [
        "metallb_allocator_addresses_total{pool=\"a\"} 1",
        "metallb_allocator_ipv4_addresses_total{pool=\"a\"} 1",
        "metallb_allocator_ipv6_addresses_total{pool=\"a\"} 0",
        "metallb_allocator_addresses_in_use_total{pool=\"a\"} 1",
        "metallb_allocator_ipv4_addresses_in_use_total{pool=\"a\"} 1",
        "metallb_allocator_services_allocated_total{pool=\"a\"} 1",
        "metallb_k8s_client_config_loaded_bool 1",
        "metallb_k8s_client_config_stale_bool 0",
        "metallb_k8s_client_updates_total 2",
        "metallb_k8s_client_update_errors_total 0",
        "ferrolb_event_errors_total 0",
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
    assert!(rebuild(&ctx, &[&first]));

    let second = svc("default", "second", "LoadBalancer", &[], json!({}));
    let task = tokio::spawn(reconcile::reconcile(Arc::new(second.clone()), ctx.clone()));
    let note =
        "Failed to allocate IP for \"default/second\": no available IPv4 addresses in pool \"a\"";
    expect_event(&mut handle, "Warning", "AllocationFailed", "second", note).await;
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;

    // The same failure again: no second Event, no status write.
    reconcile_silently(&ctx, &mut handle, second).await;
    assert_eq!(event_errors(&ctx), 0);
}

#[tokio::test]
async fn former_load_balancer_gets_its_ingress_cleared() {
    let (ctx, mut handle) = context();
    let annotations = json!({POOL: "a"});
    let before = svc(
        "default",
        "old",
        "LoadBalancer",
        &["10.20.0.1"],
        annotations.clone(),
    );
    assert!(rebuild(&ctx, &[&before]));

    let now = svc("default", "old", "ClusterIP", &["10.20.0.1"], annotations);
    let task = tokio::spawn(reconcile::reconcile(Arc::new(now.clone()), ctx.clone()));
    expect_ingress_patch(&mut handle, "old", &now, Value::Null).await;
    expect_pool_patch(&mut handle, "old", &now, Value::Null).await;
    let note = "service is not of type LoadBalancer, clearing IP [\"10.20.0.1\"]";
    expect_event(&mut handle, "Normal", "ClearAssignment", "old", note).await;
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;
    assert_eq!(event_errors(&ctx), 0);

    // The address is free again: a new LoadBalancer Service gets it.
    let next = svc("default", "next", "LoadBalancer", &[], json!({}));
    expect_first_ip(&ctx, handle, next, "10.20.0.1").await;
}

#[tokio::test]
async fn other_load_balancer_class_is_left_alone() {
    let (client, mut handle) = mock_client();
    let ctx = bare_context(client, Some("ferrolb"));
    assert!(ctx.core().offer_config(Some(CONFIG)).applied);
    assert!(rebuild(&ctx, &[]));
    let ctx = Arc::new(ctx);

    // No class while we only serve "ferrolb": not ours, no request at all.
    let plain = svc("default", "plain", "LoadBalancer", &[], json!({}));
    reconcile_silently(&ctx, &mut handle, plain).await;

    // Our class: served.
    let mut ours = svc("default", "ours", "LoadBalancer", &[], json!({}));
    ours.spec.as_mut().unwrap().load_balancer_class = Some("ferrolb".into());
    expect_first_ip(&ctx, handle, ours, "10.20.0.1").await;
}

#[tokio::test]
async fn bad_load_balancer_ip_is_an_allocation_failure() {
    let (ctx, mut handle) = context();
    assert!(rebuild(&ctx, &[]));
    let mut bad = svc("default", "bad", "LoadBalancer", &[], json!({}));
    bad.spec.as_mut().unwrap().load_balancer_ip = Some("10.20.0.300".into());
    let task = tokio::spawn(reconcile::reconcile(Arc::new(bad), ctx.clone()));
    let note = "Failed to allocate IP for \"default/bad\": spec.loadBalancerIP: \"10.20.0.300\" is not a valid IP address";
    expect_event(&mut handle, "Warning", "AllocationFailed", "bad", note).await;
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;
}

#[tokio::test]
async fn config_that_strands_an_ip_is_rejected_until_a_restart_applies_it() {
    let (ctx, mut handle) = context();
    let annotations = json!({POOL: "a"});
    let held = svc(
        "default",
        "held",
        "LoadBalancer",
        &["10.20.0.1"],
        annotations,
    );
    assert!(rebuild(&ctx, &[&held]));
    // Pool "a" moves to another address: 10.20.0.1 would be in no pool. As
    // with MetalLB, the running controller rejects the config and keeps the
    // last good one: the Service keeps its IP, nothing is written but one
    // Warning Event on the ConfigMap.
    let moved = "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.30.0.1/32]\n";
    let cm: k8s_openapi::api::core::v1::ObjectReference = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
        "name": "config", "uid": "uid-config"
    }))
    .unwrap();
    let offer = {
        let ctx = ctx.clone();
        let cm = cm.clone();
        tokio::spawn(async move { ctx.offer_config(Some(moved), Some(&cm)).await })
    };
    let ev = expect(&mut handle, Method::POST, EVENTS, Value::Null).await;
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["reason"], "InvalidConfig");
    assert_eq!(ev["regarding"]["kind"], "ConfigMap");
    assert_eq!(
        ev["note"],
        "configuration rejected: new config not compatible with assigned IPs: service \"default/held\" cannot own \"10.20.0.1\" under new config"
    );
    assert!(!offer.await.unwrap());
    // Offered again (a resync): neither applied nor reported again.
    assert!(!ctx.offer_config(Some(moved), Some(&cm)).await);
    expect_nothing_more(&mut handle).await;
    assert_eq!(ctx.core().config_rejections, 1);
    assert!(ctx.core().gate().stale());
    assert_eq!(ctx.core().config(), Some(&Config::parse(CONFIG).unwrap()));
    assert!(ctx.ready().is_ok());
    reconcile_silently(&ctx, &mut handle, held.clone()).await;
    // A config that keeps 10.20.0.1 in a pool is taken.
    let grown =
        "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.20.0.0/24, 10.30.0.1/32]\n";
    assert!(ctx.core().offer_config(Some(grown)).applied);
    assert!(!ctx.core().gate().stale());

    // A controller started with the new config adopts nothing outside it:
    // the Service is moved (a new IP, then ClearAssignment and IPAllocated).
    let (ctx, mut handle) = context_with(moved);
    assert!(rebuild(&ctx, &[&held]));
    let task = tokio::spawn(reconcile::reconcile(Arc::new(held.clone()), ctx.clone()));
    let ingress = json!([{"ip": "10.30.0.1"}]);
    expect_ingress_patch(&mut handle, "held", &held, ingress).await;
    let note = "current IP [\"10.20.0.1\"] not allowed by config, clearing: IP 10.20.0.1 is no longer in any address pool";
    expect_event(&mut handle, "Normal", "ClearAssignment", "held", note).await;
    let note = "Assigned IP [\"10.30.0.1\"]";
    expect_event(&mut handle, "Normal", "IPAllocated", "held", note).await;
    // Same pool name: the annotation is already right.
    task.await.unwrap().unwrap();
    expect_nothing_more(&mut handle).await;

    // An invalid config afterwards changes nothing and is counted.
    let out = ctx
        .core()
        .offer_config(Some("address-pools: [{name: a, bogus: 1}]\n"));
    assert!(!out.applied && out.report.is_some());
    assert_eq!(ctx.core().config_rejections, 1);
    assert!(ctx.core().gate().stale());
    assert!(ctx.ready().is_ok());
    expect_nothing_more(&mut handle).await;
}

#[tokio::test]
async fn nothing_is_allocated_without_a_valid_config() {
    let (client, mut handle) = mock_client();
    let ctx = bare_context(client, None);
    assert!(
        !ctx.core()
            .offer_config(Some("address-pools: [{name: a}]\n"))
            .applied
    );
    let why = ctx.ready().unwrap_err();
    assert!(why.starts_with("no valid configuration: "), "{why}");
    assert!(!rebuild(&ctx, &[]));
    let ctx = Arc::new(ctx);
    let web = svc("default", "web", "LoadBalancer", &[], json!({}));
    reconcile_silently(&ctx, &mut handle, web).await;
}

#[tokio::test]
async fn a_service_deleted_while_reconciled_is_forgotten() {
    let (ctx, mut handle) = context();
    assert!(rebuild(&ctx, &[]));
    let gone = svc("default", "gone", "LoadBalancer", &[], json!({}));
    let task = tokio::spawn(reconcile::reconcile(Arc::new(gone), ctx.clone()));
    // The status write finds no Service: 404.
    let mut handle_pin = pin!(&mut handle);
    let (req, send) = handle_pin.next_request().await.unwrap();
    assert_eq!(req.method(), Method::PATCH);
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "services \"gone\" not found", "reason": "NotFound", "code": 404});
    send.send_response(
        Response::builder()
            .status(404)
            .body(Body::from(serde_json::to_vec(&status).unwrap()))
            .unwrap(),
    );
    // Done, not an error; its address is free again.
    task.await.unwrap().unwrap();
    assert!(ctx.core().allocator().unwrap().is_empty());
}
