//! The Event publisher against a mocked API server (`tower_test::mock::pair`).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_ops::events::{EventType, Events, Kind, NOTE_MAX, Regarding, Reporter, truncate_note};
use ferrolb_ops::metrics::{Registry, render};
use ferrolb_ops::rate::TokenBucket;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type MockHandle = Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (Client, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn reporter() -> Reporter {
    Reporter {
        controller: "ferrolb-speaker".into(),
        instance: Some("node-1".into()),
    }
}

/// Takes the next request, checks it is a POST to `path`, answers `status`
/// (201 echoes the body) and returns the body.
async fn expect_post(handle: &mut MockHandle, path: &str, status: StatusCode) -> Value {
    let mut handle = pin!(handle);
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected POST {path}"))
        .expect("client dropped");
    assert_eq!(req.method(), Method::POST, "{}", req.uri());
    assert_eq!(req.uri().to_string(), path);
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let reply = if status.is_success() {
        body.clone()
    } else {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": "boom", "reason": "InternalError", "code": status.as_u16()})
    };
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
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

const EVENTS_NS1: &str = "/apis/events.k8s.io/v1/namespaces/ns1/events?";

#[test]
fn truncation_at_char_boundary() {
    // Short and exactly-at-the-limit notes are kept whole.
    assert_eq!(truncate_note("short"), "short");
    let exact = "é".repeat(NOTE_MAX / 2);
    assert_eq!(exact.len(), NOTE_MAX);
    assert_eq!(truncate_note(&exact), exact.as_str());

    // 1020 ASCII bytes then 3-byte chars: the cut (at most 1021 bytes, then
    // "...") falls inside the first euro sign, so it goes back to byte 1020.
    let note = format!("{}{}", "a".repeat(1020), "€€");
    assert_eq!(note.len(), 1026);
    let cut = truncate_note(&note);
    assert_eq!(cut, format!("{}...", "a".repeat(1020)));

    // 4-byte chars all the way: cut at 1020 (255 chars), 1023 bytes with "...".
    let note = "🦀".repeat(300);
    let cut = truncate_note(&note);
    assert!(cut.len() <= NOTE_MAX);
    assert_eq!(cut, format!("{}...", "🦀".repeat(255)));

    // One byte over: cut to 1021 + "...".
    let note = "b".repeat(NOTE_MAX + 1);
    let cut = truncate_note(&note);
    assert_eq!(cut.len(), NOTE_MAX);
    assert!(cut.ends_with("b..."));
}

#[tokio::test]
async fn publish_posts_the_event() {
    let (client, mut handle) = mock_client();
    let events = Events::new(client, reporter());
    let svc = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        namespace: Some("ns1".into()),
        name: Some("web".into()),
        uid: Some("uid-web".into()),
        ..Default::default()
    };
    let long = "x".repeat(2000);
    let publishing = {
        let events = events.clone();
        let svc = svc.clone();
        tokio::spawn(async move {
            events
                .publish(&svc, EventType::Normal, "IPAllocated", "Allocate", &long)
                .await
        })
    };
    let ev = expect_post(&mut handle, EVENTS_NS1, StatusCode::CREATED).await;
    assert!(publishing.await.unwrap().is_ok());
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["kind"], "Event");
    assert_eq!(ev["type"], "Normal");
    assert_eq!(ev["reason"], "IPAllocated");
    assert_eq!(ev["action"], "Allocate");
    assert_eq!(ev["reportingController"], "ferrolb-speaker");
    assert_eq!(ev["reportingInstance"], "node-1");
    assert_eq!(
        ev["regarding"],
        json!({"apiVersion": "v1", "kind": "Service", "namespace": "ns1",
               "name": "web", "uid": "uid-web"})
    );
    assert_eq!(ev["metadata"]["namespace"], "ns1");
    let note = ev["note"].as_str().unwrap();
    assert_eq!(note.len(), NOTE_MAX);
    assert_eq!(note, format!("{}...", "x".repeat(NOTE_MAX - 3)));

    // A second Event, same reason, same object: a new POST with its own note
    // (a shared Recorder would PATCH a series keeping the first note).
    let publishing = {
        let events = events.clone();
        tokio::spawn(async move {
            events
                .publish(svc, EventType::Warning, "IPAllocated", "Allocate", "second")
                .await
        })
    };
    let ev = expect_post(&mut handle, EVENTS_NS1, StatusCode::CREATED).await;
    assert!(publishing.await.unwrap().is_ok());
    assert_eq!(ev["note"], "second");
    assert_eq!(ev["type"], "Warning");
    assert_eq!(events.failed().get(), 0);
}

#[tokio::test]
async fn failure_is_counted_and_exposed() {
    let (client, mut handle) = mock_client();
    let events = Events::new(client, reporter());
    let registry = Registry::new();
    events.register(&registry).unwrap();
    let publishing = {
        let events = events.clone();
        tokio::spawn(async move {
            events
                .publish(
                    Regarding::service("ns1/web", Some("u1")),
                    EventType::Warning,
                    "InvalidConfig",
                    "LoadConfig",
                    "bad",
                )
                .await
        })
    };
    expect_post(&mut handle, EVENTS_NS1, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert!(publishing.await.unwrap().is_err());
    assert_eq!(events.failed().get(), 1);
    let text = render(&registry);
    assert!(
        text.contains(
            "\n# TYPE ferrolb_event_errors_total counter\nferrolb_event_errors_total 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\nferrolb_events_dropped_total 0\n"),
        "{text}"
    );
}

/// The speaker's Event about a Service it announces.
static ASSIGNED: Kind = Kind {
    type_: EventType::Normal,
    reason: "nodeAssigned",
    action: "Announce",
};

#[tokio::test]
async fn queue_drops_overflow_and_drains_the_rest() {
    let (client, mut handle) = mock_client();
    let events = Events::with_queue(client, reporter(), 2, TokenBucket::new(1000.0, 1000.0));
    let note: Arc<str> = Arc::from("announcing from node \"node-1\" with protocol \"bgp\"");
    // No await between these: the drain task has not run, the queue holds 2.
    let queued: Vec<bool> = (0..5)
        .map(|i| {
            events.enqueue(
                Regarding::service(&format!("ns1/svc-{i}"), Some(&format!("uid-{i}"))),
                &ASSIGNED,
                note.clone(),
            )
        })
        .collect();
    assert_eq!(queued, [true, true, false, false, false]);
    assert_eq!(events.dropped().get(), 3);

    for i in 0..2 {
        let ev = expect_post(&mut handle, EVENTS_NS1, StatusCode::CREATED).await;
        assert_eq!(ev["reason"], "nodeAssigned");
        assert_eq!(ev["action"], "Announce");
        assert_eq!(ev["note"], *note);
        assert_eq!(
            ev["regarding"],
            json!({"apiVersion": "v1", "kind": "Service", "namespace": "ns1",
                   "name": format!("svc-{i}"), "uid": format!("uid-{i}")})
        );
    }
    expect_nothing_more(&mut handle).await;

    // Drained: there is room again.
    assert!(events.enqueue(
        Regarding::service("ns1/svc-9", None),
        &ASSIGNED,
        note.clone(),
    ));
    let ev = expect_post(&mut handle, EVENTS_NS1, StatusCode::CREATED).await;
    assert_eq!(ev["regarding"]["name"], "svc-9");
    assert_eq!(events.dropped().get(), 3);
    assert_eq!(events.failed().get(), 0);
}

#[tokio::test]
async fn enqueue_without_queue_drops() {
    let (client, mut handle) = mock_client();
    let events = Events::new(client, reporter());
    assert!(!events.enqueue(Regarding::service("ns1/a", None), &ASSIGNED, Arc::from("n"),));
    assert_eq!(events.dropped().get(), 1);
    expect_nothing_more(&mut handle).await;
}

/// The queue is drained no faster than its pace: a restarted speaker's
/// 1,000 `nodeAssigned` Events (bench/speaker-scale: one speaker alone sent
/// 600 a second) are spread, the burst first.
#[tokio::test(start_paused = true)]
async fn queue_is_drained_at_its_pace() {
    let (client, mut handle) = mock_client();
    // 2 a second, bursts of 3.
    let events = Events::with_queue(client, reporter(), 100, TokenBucket::new(2.0, 3.0));
    let note: Arc<str> = Arc::from("n");
    for i in 0..7 {
        assert!(events.enqueue(
            Regarding::service(&format!("ns1/svc-{i}"), None),
            &ASSIGNED,
            note.clone(),
        ));
    }
    let t0 = tokio::time::Instant::now();
    let mut at = Vec::new();
    for _ in 0..7 {
        expect_post(&mut handle, EVENTS_NS1, StatusCode::CREATED).await;
        at.push(t0.elapsed().as_secs_f64());
    }
    // The burst of 3 at once, then one every 500 ms.
    assert!(at[2] < 0.01, "{at:?}");
    for (i, want) in [(3, 0.5), (4, 1.0), (5, 1.5), (6, 2.0)] {
        assert!((at[i] - want).abs() < 0.05, "Event {i} at {at:?}");
    }
}
