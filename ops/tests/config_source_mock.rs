//! The configuration source and the ConfigurationState writer against a
//! mocked API server (`tower_test::mock::pair`): what they ask, how often.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_ops::config_source::{ConfigSource, SETTLE, Source, SourceMode, WatchCounts};
use ferrolb_ops::config_state::{ConfigState, StateResult};
use ferrolb_ops::metrics::IntCounter;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower_test::mock::{self, Handle, SendResponse};

type MockHandle = Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (Client, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn reply(send: SendResponse<Response<Body>>, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// The next request: method, path and query, body (JSON or null).
async fn next(handle: &mut MockHandle) -> (Method, String, Value, SendResponse<Response<Body>>) {
    let mut handle = pin!(handle);
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("no request")
        .expect("client dropped");
    let method = req.method().clone();
    let uri = req.uri().to_string();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (method, uri, body, send)
}

async fn nothing_more(handle: &mut MockHandle) {
    let mut handle = pin!(handle);
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        panic!("unexpected request {} {}", req.method(), req.uri());
    }
}

const STATES: &str = "/apis/metallb.io/v1beta1/namespaces/ns/configurationstates";

fn state_object(uid: &str) -> Value {
    json!({"apiVersion": "metallb.io/v1beta1", "kind": "ConfigurationState",
           "metadata": {"name": "speaker-n1", "namespace": "ns", "uid": uid, "generation": 1}})
}

#[tokio::test]
async fn configuration_state_is_created_once_and_patched_only_on_change() {
    let (client, mut handle) = mock_client();
    let mut state = ConfigState::new(client, "ns", Some("n1"));
    assert_eq!(state.name(), "speaker-n1");

    let set = tokio::spawn(async move {
        state.set(&StateResult::Valid).await;
        state
    });
    // Create: it exists already (another run of this speaker made it).
    let (m, uri, body, send) = next(&mut handle).await;
    assert_eq!((m, uri.split('?').next().unwrap()), (Method::POST, STATES));
    assert_eq!(body["metadata"]["name"], "speaker-n1");
    assert_eq!(
        body["metadata"]["labels"]["metallb.io/component-type"],
        "speaker"
    );
    assert_eq!(body["metadata"]["labels"]["metallb.io/node-name"], "n1");
    reply(send, 409, &status(409, "AlreadyExists"));
    // No GET (RBAC: create and patch status only): the status patch at once.
    let (m, uri, body, send) = next(&mut handle).await;
    assert_eq!(m, Method::PATCH);
    assert_eq!(
        uri.split('?').next().unwrap(),
        format!("{STATES}/speaker-n1/status")
    );
    assert_eq!(body["status"]["result"], "Valid");
    let generation = body["status"]["conditions"][0].get("observedGeneration");
    assert!(generation.is_none(), "not known yet: {generation:?}");
    reply(send, 200, &state_object("u-1"));
    let mut state = set.await.unwrap();
    assert_eq!(
        state.reference().and_then(|r| r.uid.as_deref()),
        Some("u-1")
    );

    // The same verdict again (every speaker pass): no request.
    state.set(&StateResult::Valid).await;
    nothing_more(&mut handle).await;

    // A new verdict: one status patch, no create.
    let set = tokio::spawn(async move {
        state.set(&StateResult::Invalid("overlap".into())).await;
        state
    });
    let (m, uri, body, send) = next(&mut handle).await;
    assert_eq!(m, Method::PATCH);
    assert!(uri.contains("/speaker-n1/status"), "{uri}");
    assert_eq!(body["status"]["result"], "Invalid");
    assert_eq!(body["status"]["errorSummary"], "overlap");
    assert_eq!(body["status"]["conditions"][0]["observedGeneration"], 1);
    reply(send, 200, &state_object("u-1"));
    let mut state = set.await.unwrap();
    state.set(&StateResult::Invalid("overlap".into())).await;
    nothing_more(&mut handle).await;
}

#[tokio::test]
async fn configuration_state_without_its_crd_is_skipped_quietly() {
    let (client, mut handle) = mock_client();
    let mut state = ConfigState::new(client, "ns", None);
    assert_eq!(state.name(), "controller");
    let set = tokio::spawn(async move {
        state.set(&StateResult::Valid).await;
        state
    });
    let (m, _, body, send) = next(&mut handle).await;
    assert_eq!(m, Method::POST);
    assert_eq!(
        body["metadata"]["labels"]["metallb.io/component-type"],
        "controller"
    );
    reply(send, 404, &status(404, "NotFound"));
    let mut state = set.await.unwrap();
    assert!(state.reference().is_none());
    // Looked at again later, not on every call.
    state.set(&StateResult::Invalid("x".into())).await;
    state.set(&StateResult::Valid).await;
    nothing_more(&mut handle).await;
}

/// What [`serve`] saw (metallb.io lists, discovery GETs of
/// `metallb.io/v1beta1`) and whether the metallb.io CRDs count as installed.
#[derive(Default)]
struct Fake {
    installed: bool,
    lists: Vec<String>,
    discovery: usize,
}

/// Answers the watches' requests: the ConfigMap list with one ConfigMap;
/// every metallb.io list with 404 (CRDs not installed) or, once
/// `installed`, an empty list; `GET /apis/metallb.io/v1beta1` (discovery)
/// with 404 or an APIResourceList the same way. Watches are left pending.
async fn serve(mut handle: MockHandle, st: Arc<std::sync::Mutex<Fake>>) {
    let mut pending = Vec::new();
    loop {
        let mut h = pin!(&mut handle);
        let Some((req, send)) = h.next_request().await else {
            return;
        };
        let uri = req.uri().to_string();
        let watch = uri.contains("watch=true");
        let mut st = st.lock().unwrap();
        if uri == "/apis/metallb.io/v1beta1" {
            st.discovery += 1;
            if st.installed {
                reply(
                    send,
                    200,
                    &json!({"kind": "APIResourceList", "apiVersion": "v1",
                            "groupVersion": "metallb.io/v1beta1", "resources": []}),
                );
            } else {
                reply(send, 404, &status(404, "NotFound"));
            }
        } else if uri.starts_with("/apis/metallb.io/") && !watch {
            st.lists.push(uri.clone());
            if st.installed {
                reply(
                    send,
                    200,
                    &json!({"kind": "List", "apiVersion": "metallb.io/v1beta1",
                            "metadata": {"resourceVersion": "20"}, "items": []}),
                );
            } else {
                reply(send, 404, &status(404, "NotFound"));
            }
        } else if uri.starts_with("/api/v1/namespaces/ns/configmaps") && !watch {
            reply(
                send,
                200,
                &json!({"kind": "ConfigMapList", "apiVersion": "v1",
                        "metadata": {"resourceVersion": "10"},
                        "items": [{"metadata": {"name": "config", "namespace": "ns",
                                                "uid": "cm-1", "resourceVersion": "9"},
                                   "data": {"config": "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24]}\n"}}]}),
            );
        } else {
            // A watch: keep it open (never answered).
            pending.push(send);
        }
    }
}

#[tokio::test]
async fn missing_crds_count_as_no_objects_and_are_retried_slowly() {
    let (client, handle) = mock_client();
    let st = Arc::new(std::sync::Mutex::new(Fake::default()));
    let server = tokio::spawn(serve(handle, st.clone()));
    let notify = Arc::new(Notify::new());
    let counts = WatchCounts {
        updates: IntCounter::new("u", "u").unwrap(),
        errors: IntCounter::new("e", "e").unwrap(),
    };
    let mut source = ConfigSource::start(
        &client,
        "ns",
        "config",
        SourceMode::Auto,
        notify,
        Some(counts.clone()),
    );
    tokio::time::timeout(Duration::from_secs(5), source.synced())
        .await
        .expect("synced although no CRD is installed");
    let snap = source.snapshot();
    assert_eq!(snap.source(), Source::ConfigMap);
    assert_eq!(
        snap.configmap.as_ref().and_then(|c| c.uid.as_deref()),
        Some("cm-1")
    );
    assert!(snap.revision(&Default::default()).is_some());
    let cfg = snap
        .parse(ferrolb_config::crs::Secrets::Ignore)
        .expect("the ConfigMap parses");
    assert_eq!(cfg.pools[0].name, "a");
    // Each of the six kinds was listed once, and not again within 2 s (the
    // first retry waits 5 s).
    let first = st.lock().unwrap().lists.len();
    assert_eq!(
        first,
        ferrolb_config::crs::KINDS.len(),
        "{:?}",
        st.lock().unwrap().lists
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(st.lock().unwrap().lists.len(), first, "retried too soon");
    assert_eq!(st.lock().unwrap().discovery, 0, "asked too soon");
    // Counted: the ConfigMap's list (Init, InitApply, InitDone), each kind's
    // Init (before its list) and one error per kind.
    let kinds = ferrolb_config::crs::KINDS.len() as u64;
    assert_eq!(counts.updates.get(), 3 + kinds);
    assert_eq!(counts.errors.get(), kinds);
    drop(source);
    server.abort();
}

#[tokio::test]
async fn configmap_mode_watches_no_custom_resources() {
    let (client, handle) = mock_client();
    let st = Arc::new(std::sync::Mutex::new(Fake::default()));
    let server = tokio::spawn(serve(handle, st.clone()));
    let mut source = ConfigSource::start(
        &client,
        "ns",
        "config",
        SourceMode::Configmap,
        Arc::new(Notify::new()),
        None,
    );
    tokio::time::timeout(Duration::from_secs(5), source.synced())
        .await
        .expect("synced");
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let st = st.lock().unwrap();
        assert!(st.lists.is_empty() && st.discovery == 0, "{:?}", st.lists);
    }
    assert_eq!(source.snapshot().source(), Source::ConfigMap);
    drop(source);
    server.abort();
}

fn pool(name: &str, rv: &str, cidr: &str) -> Value {
    json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
           "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                        "resourceVersion": rv},
           "spec": {"addresses": [cidr]}})
}

/// Answers lists (one IPAddressPool, nothing else, no ConfigMap) and hands
/// the first watch of the IPAddressPools to the test; other watches stay open.
async fn serve_one_pool(
    mut handle: MockHandle,
    pool_watch: tokio::sync::oneshot::Sender<SendResponse<Response<Body>>>,
) {
    let mut pool_watch = Some(pool_watch);
    let mut pending = Vec::new();
    loop {
        let mut h = pin!(&mut handle);
        let Some((req, send)) = h.next_request().await else {
            return;
        };
        let uri = req.uri().to_string();
        let watch = uri.contains("watch=true");
        let pools = uri.contains("/ipaddresspools");
        if watch {
            if pools && let Some(tx) = pool_watch.take() {
                let _ = tx.send(send);
            } else {
                pending.push(send);
            }
        } else {
            let items = if pools {
                vec![pool("a", "1", "10.0.0.0/24")]
            } else {
                vec![]
            };
            reply(
                send,
                200,
                &json!({"kind": "List", "apiVersion": "v1",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
            );
        }
    }
}

#[tokio::test]
async fn custom_resource_changes_are_taken_once_settled() {
    let (client, handle) = mock_client();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(serve_one_pool(handle, tx));
    let notify = Arc::new(Notify::new());
    let mut source = ConfigSource::start(
        &client,
        "ns",
        "config",
        SourceMode::Auto,
        notify.clone(),
        None,
    );
    tokio::time::timeout(Duration::from_secs(5), source.synced())
        .await
        .expect("synced");
    let first = source.snapshot();
    assert_eq!(first.source(), Source::Resources);
    let pools = |s: &ferrolb_ops::config_source::Snapshot| {
        s.parse(ferrolb_config::crs::Secrets::Ignore)
            .unwrap()
            .pools
            .len()
    };
    assert_eq!(pools(&first), 1);
    // Drain the wake-ups of the initial lists.
    tokio::time::sleep(SETTLE + Duration::from_millis(300)).await;
    while tokio::time::timeout(Duration::from_millis(50), notify.notified())
        .await
        .is_ok()
    {}
    // A second pool arrives by the watch.
    let send = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("the pools are watched")
        .unwrap();
    let line = json!({"type": "ADDED", "object": pool("b", "2", "10.0.1.0/24")});
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(format!("{line}\n").into_bytes()))
            .unwrap(),
    );
    let t0 = tokio::time::Instant::now();
    // Not taken at once: the set may still be changing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        Arc::ptr_eq(&source.snapshot(), &first),
        "taken before it settled"
    );
    // Rung once it settled, and then taken.
    tokio::time::timeout(Duration::from_secs(5), notify.notified())
        .await
        .expect("rung after settling");
    assert!(
        t0.elapsed() >= SETTLE - Duration::from_millis(50),
        "{:?}",
        t0.elapsed()
    );
    let now = source.snapshot();
    assert_eq!(pools(&now), 2);
    assert_ne!(
        now.revision(&Default::default()),
        first.revision(&Default::default())
    );
    drop(source);
    server.abort();
}

/// With no CRD installed, the kinds do not each list again every retry
/// period: one discovery GET of `metallb.io/v1beta1` per period asks for
/// all of them (bench/speaker-scale: 50 idle speakers sent 5 lists/s of
/// kinds that did not exist). Once the group is served, every kind lists.
#[tokio::test(start_paused = true)]
async fn missing_crds_wait_on_one_discovery_request_for_all_kinds() {
    let (client, handle) = mock_client();
    let st = Arc::new(std::sync::Mutex::new(Fake::default()));
    let server = tokio::spawn(serve(handle, st.clone()));
    let mut source = ConfigSource::start(
        &client,
        "ns",
        "config",
        SourceMode::Auto,
        Arc::new(Notify::new()),
        None,
    );
    tokio::time::timeout(Duration::from_secs(5), source.synced())
        .await
        .expect("synced although no CRD is installed");
    let kinds = ferrolb_config::crs::KINDS.len();
    // 70 s: retries at 5, 15 and 35 s (then 75 s).
    tokio::time::sleep(Duration::from_secs(70)).await;
    {
        let st = st.lock().unwrap();
        assert_eq!(st.lists.len(), kinds, "listed again: {:?}", st.lists);
        assert!(
            (1..=3).contains(&st.discovery),
            "{} discovery GETs in 70 s (one per period for all kinds)",
            st.discovery
        );
    }
    st.lock().unwrap().installed = true;
    // The next period (75 s, then 155 s at the latest): every kind lists.
    tokio::time::sleep(Duration::from_secs(90)).await;
    {
        let st = st.lock().unwrap();
        assert_eq!(st.lists.len(), 2 * kinds, "{:?}", st.lists);
        for (_, plural, _) in ferrolb_config::crs::KINDS {
            assert_eq!(
                st.lists.iter().filter(|u| u.contains(plural)).count(),
                2,
                "{plural}: {:?}",
                st.lists
            );
        }
    }
    drop(source);
    server.abort();
}
