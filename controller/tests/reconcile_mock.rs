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
