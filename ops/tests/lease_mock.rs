//! The leader-election loop against a mocked API server, on tokio's paused
//! clock (so the 2 s / 10 s / 15 s timings run instantly).

use std::pin::pin;
use std::time::Duration;

use ferrolb_ops::lease::{LeaderElector, Lost, Timing};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use kube::client::Body;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::time::Instant;
use tower_test::mock::{self, Handle, SendResponse};

type MockHandle = Handle<Request<Body>, Response<Body>>;

const NS: &str = "metallb-system";
const NAME: &str = "ferrolb-controller";
const ME: &str = "me_1";
const OTHER: &str = "other_2";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases";
const THIS: &str =
    "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases/ferrolb-controller";

fn elector() -> (LeaderElector, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let api: Api<Lease> = Api::namespaced(client, NS);
    (
        LeaderElector::new(api, NAME, ME, Timing::default()).unwrap(),
        handle,
    )
}

/// The next request: checks method and path; returns its JSON body (Null if
/// none) and the responder.
async fn next(
    handle: &mut MockHandle,
    method: Method,
    path: &str,
) -> (Value, SendResponse<Response<Body>>) {
    let mut handle = pin!(handle);
    let (req, send) = tokio::time::timeout(Duration::from_secs(60), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
        .expect("client dropped");
    assert_eq!(
        (req.method(), req.uri().path()),
        (&method, path),
        "{}",
        req.uri()
    );
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

fn reply(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn lease(holder: &str, renew: &str, transitions: i32, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-06-01T11:00:00.000000Z",
                 "renewTime": renew, "leaseTransitions": transitions}
    })
}

/// A written Lease as the server would answer it: the body with a new resourceVersion.
fn stored(mut body: Value, rv: &str) -> Value {
    body["metadata"]["resourceVersion"] = json!(rv);
    body
}

#[tokio::test(start_paused = true)]
async fn create_renew_conflict_retry_then_lost() {
    let (mut e, mut h) = elector();
    let task = tokio::spawn(async move {
        e.acquire().await;
        assert!(e.is_leader());
        let lost = e.hold().await;
        assert!(!e.is_leader());
        lost
    });

    // GET 404 → POST, held by us.
    let (_, send) = next(&mut h, Method::GET, THIS).await;
    reply(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
    let (created, send) = next(&mut h, Method::POST, LEASES).await;
    assert_eq!(created["metadata"]["name"], NAME);
    assert_eq!(created["spec"]["holderIdentity"], ME);
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created["spec"]["leaseTransitions"], 0);
    assert!(created["spec"]["renewTime"].is_string());
    reply(send, StatusCode::CREATED, &stored(created.clone(), "1"));
    let leader_at = Instant::now();

    // One retry period later: GET mine → PUT carrying the resourceVersion read.
    let (_, send) = next(&mut h, Method::GET, THIS).await;
    assert_eq!(leader_at.elapsed(), Duration::from_secs(2));
    reply(send, StatusCode::OK, &stored(created.clone(), "1"));
    let (put, send) = next(&mut h, Method::PUT, THIS).await;
    assert_eq!(put["metadata"]["resourceVersion"], "1");
    assert_eq!(put["spec"]["holderIdentity"], ME);
    assert_eq!(put["spec"]["leaseTransitions"], 0);
    // 409: another writer was first; read again at once.
    reply(send, StatusCode::CONFLICT, &status(409, "Conflict"));
    let conflict_at = Instant::now();
    let (_, send) = next(&mut h, Method::GET, THIS).await;
    assert_eq!(conflict_at.elapsed(), Duration::ZERO);
    reply(send, StatusCode::OK, &stored(put.clone(), "2"));
    let (put, send) = next(&mut h, Method::PUT, THIS).await;
    assert_eq!(put["metadata"]["resourceVersion"], "2");
    assert_eq!(put["spec"]["holderIdentity"], ME);
    reply(send, StatusCode::OK, &stored(put.clone(), "3"));

    // The next read shows another holder: leadership lost at once.
    let (_, send) = next(&mut h, Method::GET, THIS).await;
    reply(
        send,
        StatusCode::OK,
        &lease(OTHER, "2026-06-01T12:00:00.000000Z", 1, "4"),
    );
    let lost = tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("hold returned")
        .unwrap();
    assert_eq!(lost, Lost::TakenBy(OTHER.into()));
}

/// A Lease whose renewTime is hours old by our wall clock is still waited on
/// for a full duration from when we first saw it; one that keeps changing
/// (renewTime hours ahead of us) is never taken.
#[tokio::test(start_paused = true)]
async fn expiry_judged_by_observation_not_by_renew_time() {
    // Stale by our wall clock: taken over 15 s after first sight, not at once.
    let (mut e, mut h) = elector();
    let task = tokio::spawn(async move { e.acquire().await });
    let stale = lease(OTHER, "2000-01-01T00:00:00.000000Z", 4, "70");
    let first = Instant::now();
    let put = loop {
        let mut handle = pin!(&mut h);
        let (req, send) = handle.next_request().await.unwrap();
        if req.method() == Method::PUT {
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            reply(send, StatusCode::OK, &stored(body.clone(), "71"));
            break body;
        }
        assert_eq!(req.method(), Method::GET);
        reply(send, StatusCode::OK, &stale);
    };
    let waited = first.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited <= Duration::from_secs(17),
        "took over after {waited:?}"
    );
    assert_eq!(put["metadata"]["resourceVersion"], "70");
    assert_eq!(put["spec"]["holderIdentity"], ME);
    assert_eq!(put["spec"]["leaseTransitions"], 5);
    assert_ne!(put["spec"]["acquireTime"], stale["spec"]["acquireTime"]);
    task.await.unwrap();

    // Renewed by its holder at every read, with a clock hours ahead of ours:
    // only GETs for 60 s.
    let (mut e, mut h) = elector();
    let task = tokio::spawn(async move { e.acquire().await });
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let (_, send) = next(&mut h, Method::GET, THIS).await;
        n += 1;
        let renew = format!("2026-06-01T{:02}:{:02}:00.000000Z", 18 + n / 60, n % 60);
        reply(
            send,
            StatusCode::OK,
            &lease(OTHER, &renew, 0, &n.to_string()),
        );
    }
    assert!(n >= 25, "{n} reads");
    task.abort();
}

/// Renewals failing (errors, or no answer at all) end leadership at the renew deadline.
#[tokio::test(start_paused = true)]
async fn renew_deadline_ends_leadership() {
    for hang in [false, true] {
        let (mut e, mut h) = elector();
        let task = tokio::spawn(async move {
            e.acquire().await;
            e.hold().await
        });
        let (_, send) = next(&mut h, Method::GET, THIS).await;
        reply(send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
        let (created, send) = next(&mut h, Method::POST, LEASES).await;
        reply(send, StatusCode::CREATED, &stored(created, "1"));
        let leader_at = Instant::now();
        // Every later read fails, or is never answered.
        let responder = tokio::spawn(async move {
            let mut held = Vec::new();
            let mut reads = 0;
            while let Some((req, send)) = pin!(&mut h).next_request().await {
                assert_eq!((req.method(), req.uri().path()), (&Method::GET, THIS));
                reads += 1;
                if hang {
                    held.push(send);
                } else {
                    reply(
                        send,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &status(500, "InternalError"),
                    );
                }
            }
            reads
        });
        let lost = task.await.unwrap();
        let after = leader_at.elapsed();
        assert!(matches!(lost, Lost::RenewDeadline(_)), "{lost:?}");
        assert!(
            after >= Duration::from_secs(10) && after <= Duration::from_secs(11),
            "hang {hang}: lost after {after:?}"
        );
        // Failing reads retried every 2 s (2, 4, 6, 8 s; at 10 s the deadline
        // has come); a hung read is cut at the deadline.
        let reads = responder.await.unwrap();
        assert_eq!(reads, if hang { 1 } else { 4 }, "hang {hang}");
    }
}

#[tokio::test(start_paused = true)]
async fn release_clears_our_holder_only() {
    let (mut e, mut h) = elector();
    let task = tokio::spawn(async move { e.release().await.map(|()| e) });
    let (_, send) = next(&mut h, Method::GET, THIS).await;
    reply(
        send,
        StatusCode::OK,
        &lease(ME, "2026-06-01T12:00:00.000000Z", 3, "9"),
    );
    let (put, send) = next(&mut h, Method::PUT, THIS).await;
    assert_eq!(put["metadata"]["resourceVersion"], "9");
    assert!(
        put["spec"].get("holderIdentity").is_none_or(Value::is_null),
        "{put}"
    );
    assert_eq!(put["spec"]["leaseTransitions"], 3);
    reply(send, StatusCode::OK, &stored(put.clone(), "10"));
    let mut e = task.await.unwrap().unwrap();

    // Someone else's: read, not written.
    let task = tokio::spawn(async move { e.release().await });
    let (_, send) = next(&mut h, Method::GET, THIS).await;
    reply(
        send,
        StatusCode::OK,
        &lease(OTHER, "2026-06-01T12:00:00.000000Z", 4, "11"),
    );
    task.await.unwrap().unwrap();
    // The elector is gone with its task, and it wrote nothing more.
    assert!(pin!(&mut h).next_request().await.is_none());
}
