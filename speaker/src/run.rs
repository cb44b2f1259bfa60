//! `ferrolb speaker`: the I/O shell. Watches Services, endpoints, its Node and
//! the ConfigMap; on any change recomputes the pure decision and tells the BGP
//! sessions what to hold. Serves `/metrics`, `/healthz`, `/readyz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use ferrolb_bgp::fsm::State;
use ferrolb_config::{Config, stranded_message};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::announce::{Decision, routes_per_peer};
use crate::peers::{PeerSessions, desired_sessions, source_address_for};
use crate::watch::{
    EndpointSource, EndpointView, EndpointsIndex, Ips, Services, SliceIndex, node_state,
    service_facts, service_ref,
};

/// Flags of `ferrolb speaker`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpeakerOpts {
    /// This node's name (from the downward API in the DaemonSet).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Kubeconfig file; default: in-cluster config, then $KUBECONFIG.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the ConfigMap.
    #[arg(long, env = "METALLB_NAMESPACE", default_value = "metallb-system")]
    pub namespace: String,
    /// Name of the ConfigMap (key `config`).
    #[arg(long, env = "METALLB_CONFIG", default_value = "config")]
    pub config_name: String,
    /// Announce only Services with this `spec.loadBalancerClass` (default:
    /// only those without one), as the controller's `--lb-class`.
    #[arg(long, env = "FERROLB_LB_CLASS")]
    pub lb_class: Option<String>,
    /// Listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:7472")]
    pub metrics_addr: SocketAddr,
}

/// A service this node announces.
struct Announced {
    /// The decision pass that last announced it.
    pass: u64,
    ips: Ips,
}

/// Shared state behind the HTTP endpoints.
#[derive(Default)]
struct Metrics {
    config_loaded: bool,
    config_stale: bool,
    synced: bool,
    /// Services this node announces (`namespace/name`), with their IPs.
    announced: BTreeMap<Box<str>, Announced>,
    /// Last rendered BGP session lines (filled at scrape time from handles).
    sessions: Vec<(String, bool, u64, usize)>,
}

async fn client(opts: &SpeakerOpts) -> anyhow::Result<Client> {
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Drive a watch stream into a store, ringing `notify` on every event.
fn pump<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    writer: reflector::store::Writer<K>,
    notify: Arc<Notify>,
    what: &'static str,
) where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    tokio::spawn(async move {
        let mut s = std::pin::pin!(stream.default_backoff().reflect(writer));
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                warn!(watch = what, error = %e, "watch error (retrying)");
            }
            notify.notify_one();
        }
    });
}

/// A reflector store fed by a watch; `trim` drops what the speaker never reads
/// before an object is stored (memory grows with the cluster's Services).
fn store_for<K>(
    api: Api<K>,
    cfg: watcher::Config,
    trim: fn(&mut K),
    notify: &Arc<Notify>,
    what: &'static str,
) -> Store<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    pump(watcher(api, cfg).modify(trim), writer, notify.clone(), what);
    store
}

/// Drive a watch into a slim map (`apply` folds each event in), ringing
/// `notify` whenever what the map shows changed. The receiver turns true at
/// the first complete list.
fn pump_slim<K>(
    api: Api<K>,
    mut apply: impl FnMut(&watcher::Event<K>) + Send + 'static,
    notify: &Arc<Notify>,
    what: &'static str,
) -> tokio::sync::watch::Receiver<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let notify = notify.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(ev) = s.next().await {
            match ev {
                Ok(ev) => {
                    apply(&ev);
                    match ev {
                        // Listed objects become visible only at InitDone.
                        watcher::Event::Init | watcher::Event::InitApply(_) => continue,
                        watcher::Event::InitDone => {
                            ready_tx.send_replace(true);
                        }
                        watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
                    }
                }
                Err(e) => warn!(watch = what, error = %e, "watch error (retrying)"),
            }
            notify.notify_one();
        }
    });
    ready_rx
}

/// Does the API server serve discovery.k8s.io/v1 EndpointSlices?
async fn serves_slices_v1(client: &Client) -> bool {
    match client.list_api_group_resources("discovery.k8s.io/v1").await {
        Ok(list) => list.resources.iter().any(|r| r.name == "endpointslices"),
        Err(_) => false,
    }
}

/// Run the speaker until SIGTERM/SIGINT; then withdraw everything and send Cease.
pub async fn run(opts: SpeakerOpts) -> anyhow::Result<()> {
    let client = client(&opts).await?;
    let notify = Arc::new(Notify::new());
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    let sessions = Arc::new(tokio::sync::Mutex::new(PeerSessions::default()));
    serve_http(
        opts.metrics_addr,
        opts.node_name.clone(),
        metrics.clone(),
        sessions.clone(),
    )
    .await?;

    let services = Arc::new(Mutex::new(Services::with_class(opts.lb_class.clone())));
    let mut services_ready = {
        let services = services.clone();
        pump_slim(
            Api::<Service>::all(client.clone()),
            move |ev| services.lock().unwrap().apply(ev),
            &notify,
            "services",
        )
    };
    let (endpoints, mut endpoints_ready) = if serves_slices_v1(&client).await {
        info!("reading endpoints from discovery.k8s.io/v1 EndpointSlices");
        let endpoints = Arc::new(Mutex::new(EndpointSource::Slices(SliceIndex::default())));
        let src = endpoints.clone();
        let ready = pump_slim(
            Api::<EndpointSlice>::all(client.clone()),
            move |ev| {
                if let EndpointSource::Slices(idx) = &mut *src.lock().unwrap() {
                    idx.apply(ev);
                }
            },
            &notify,
            "endpointslices",
        );
        (endpoints, ready)
    } else {
        info!("EndpointSlice v1 not served: reading core/v1 Endpoints");
        let endpoints = Arc::new(Mutex::new(EndpointSource::Endpoints(
            EndpointsIndex::default(),
        )));
        let src = endpoints.clone();
        let ready = pump_slim(
            Api::<Endpoints>::all(client.clone()),
            move |ev| {
                if let EndpointSource::Endpoints(idx) = &mut *src.lock().unwrap() {
                    idx.apply(ev);
                }
            },
            &notify,
            "endpoints",
        );
        (endpoints, ready)
    };
    let nodes = store_for(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={}", opts.node_name)),
        |n: &mut Node| n.metadata.managed_fields = None,
        &notify,
        "node",
    );
    let configmaps = store_for(
        Api::<ConfigMap>::namespaced(client.clone(), &opts.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", opts.config_name)),
        |c: &mut ConfigMap| c.metadata.managed_fields = None,
        &notify,
        "configmap",
    );
    let reporter = Reporter {
        controller: "ferrolb-speaker".into(),
        instance: Some(opts.node_name.clone()),
    };
    let events = spawn_event_publisher(client.clone(), reporter.clone(), opts.node_name.clone());

    let _ = services_ready.wait_for(|r| *r).await;
    let _ = nodes.wait_until_ready().await;
    let _ = configmaps.wait_until_ready().await;
    let _ = endpoints_ready.wait_for(|r| *r).await;
    info!(node = %opts.node_name, "caches synced");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut last_good: Option<(String, Config)> = None;
    // The last invalid text, so it is reported once, not on every event.
    let mut last_bad: Option<String> = None;
    // Decision passes so far; a service announced in an earlier pass and not
    // seen in this one was deleted.
    let mut pass: u64 = 0;
    let cm_ref = ObjectRef::<ConfigMap>::new(&opts.config_name).within(&opts.namespace);
    notify.notify_one();
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = sigterm.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
        // Configuration: keep the last good one when the new text is invalid.
        let text = configmaps
            .get(&cm_ref)
            .and_then(|cm| cm.data.as_ref().and_then(|d| d.get("config").cloned()));
        if let Some(text) = text
            && last_good.as_ref().map(|(t, _)| t) != Some(&text)
            && last_bad.as_ref() != Some(&text)
        {
            // As the controller (and MetalLB): a configuration that would take
            // an assigned IP away is rejected, and its routes stay.
            let parsed = Config::parse(&text)
                .map_err(|e| e.to_string())
                .and_then(|cfg| {
                    let Some((_, current)) = &last_good else {
                        return Ok(cfg);
                    };
                    let services = services.lock().unwrap();
                    let stranded = current.strands(&cfg, services.ips());
                    if stranded.is_empty() {
                        Ok(cfg)
                    } else {
                        Err(stranded_message(&stranded))
                    }
                });
            match parsed {
                Ok(cfg) => {
                    info!(summary = %cfg.summary(), "configuration loaded");
                    last_good = Some((text, cfg));
                    last_bad = None;
                    let mut m = metrics.lock().unwrap();
                    m.config_loaded = true;
                    m.config_stale = false;
                }
                Err(errs) => {
                    error!(errors = %errs, "configuration rejected: keeping the last good one, no route changes");
                    metrics.lock().unwrap().config_stale = true;
                    if let Some(cm) = configmaps.get(&cm_ref) {
                        report_invalid_config(
                            client.clone(),
                            reporter.clone(),
                            cm.object_ref(&()),
                            format!("configuration rejected: {errs}"),
                        );
                    }
                    last_bad = Some(text);
                }
            }
        }
        let Some((_, config)) = &last_good else {
            debug!("no valid configuration yet: announcing nothing");
            continue;
        };
        let node = node_state(
            &opts.node_name,
            nodes.get(&ObjectRef::new(&opts.node_name)).as_deref(),
        );
        pass += 1;
        let per_peer = {
            let services = services.lock().unwrap();
            let endpoints = endpoints.lock().unwrap();
            let view = EndpointView::new(&endpoints, &opts.node_name);
            let mut m = metrics.lock().unwrap();
            let announced = &mut m.announced;
            let per_peer = routes_per_peer(
                config,
                &node,
                service_facts(&services, &view),
                |svc, d| match d {
                    Decision::Announce(_) => match announced.get_mut(svc.key) {
                        Some(a) => {
                            a.pass = pass;
                            if a.ips.as_slice() != svc.ips {
                                a.ips = svc.ips.to_vec().into();
                            }
                        }
                        None => {
                            announced.insert(
                                svc.key.into(),
                                Announced {
                                    pass,
                                    ips: svc.ips.to_vec().into(),
                                },
                            );
                            info!(svc = %svc.key, node = %opts.node_name, "announcing");
                            let uid = services.get(svc.key).and_then(|s| s.uid.clone());
                            if events.try_send((svc.key.into(), uid)).is_err() {
                                warn!(svc = %svc.key, "event queue full: nodeAssigned event dropped");
                            }
                        }
                    },
                    Decision::Skip(reason) => {
                        debug!(svc = %svc.key, reason = reason.as_str(), "not announcing: {reason}");
                        if announced.remove(svc.key).is_some() {
                            info!(svc = %svc.key, "withdrawing: {reason}");
                        }
                    }
                },
            );
            // Announced before, and no decision this pass: the Service is gone.
            announced.retain(|key, a| {
                let keep = a.pass == pass;
                if !keep {
                    info!(svc = %key, "withdrawing: service deleted");
                }
                keep
            });
            m.synced = true;
            per_peer
        };
        let (desired, errors) = desired_sessions(config, &node, &source_address_for);
        for e in errors {
            warn!(error = %e, "peer skipped");
        }
        sessions.lock().await.sync(desired, per_peer).await;
    }

    info!("shutting down: withdrawing all routes and closing sessions");
    let sessions = std::mem::take(&mut *sessions.lock().await);
    sessions.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

/// A `nodeAssigned` Event waiting to be written: the Service's `namespace/name` and uid.
type PendingEvent = (Box<str>, Option<Box<str>>);

/// `nodeAssigned` Events are written by their own task, so a burst (10k
/// Services announced at once after a restart) never holds up route
/// decisions. The queue holds only each Service's key and uid (the Event and
/// its object reference are built when written), is bounded, and drops
/// overflow (logged), never awaits. Each event gets a fresh [`Recorder`]:
/// kube's Recorder caches every event it wrote for 6 minutes (to aggregate
/// repeats into a series), which is ~1 KiB per Service after a burst and not
/// worth it for `nodeAssigned`.
fn spawn_event_publisher(
    client: Client,
    reporter: Reporter,
    node: String,
) -> tokio::sync::mpsc::Sender<PendingEvent> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PendingEvent>(EVENT_QUEUE);
    tokio::spawn(async move {
        while let Some((key, uid)) = rx.recv().await {
            let Some(reference) = service_ref(&key, uid.as_deref()) else {
                continue;
            };
            let ev = Event {
                type_: EventType::Normal,
                reason: "nodeAssigned".into(),
                note: Some(format!(
                    "announcing from node \"{node}\" with protocol \"bgp\""
                )),
                action: "Announce".into(),
                secondary: None,
            };
            let recorder = Recorder::new(client.clone(), reporter.clone());
            if let Err(e) = recorder.publish(&ev, &reference).await {
                warn!(svc = %key, error = %e, "could not record event");
            }
        }
    });
    tx
}

/// A Warning Event `InvalidConfig` on the ConfigMap (as MetalLB's speaker
/// writes), from its own task; the note is cut to the API's 1 kB.
fn report_invalid_config(
    client: Client,
    reporter: Reporter,
    regarding: ObjectReference,
    mut note: String,
) {
    const NOTE_MAX: usize = 1024;
    if note.len() > NOTE_MAX {
        let end = (0..=NOTE_MAX - 3).rev().find(|&i| note.is_char_boundary(i));
        note.truncate(end.unwrap_or(0));
        note.push_str("...");
    }
    tokio::spawn(async move {
        let ev = Event {
            type_: EventType::Warning,
            reason: "InvalidConfig".into(),
            note: Some(note),
            action: "LoadConfig".into(),
            secondary: None,
        };
        if let Err(e) = Recorder::new(client, reporter)
            .publish(&ev, &regarding)
            .await
        {
            warn!(error = %e, "could not record the InvalidConfig event");
        }
    });
}

/// Events waiting to be written before new ones are dropped.
const EVENT_QUEUE: usize = 16_384;

fn render_metrics(m: &Metrics, node: &str) -> String {
    let mut out = String::new();
    let b = |v: bool| u8::from(v);
    let _ = writeln!(
        out,
        "# HELP metallb_k8s_client_config_loaded_bool 1 if the configuration was ever loaded."
    );
    let _ = writeln!(out, "# TYPE metallb_k8s_client_config_loaded_bool gauge");
    let _ = writeln!(
        out,
        "metallb_k8s_client_config_loaded_bool {}",
        b(m.config_loaded)
    );
    let _ = writeln!(
        out,
        "# HELP metallb_k8s_client_config_stale_bool 1 if running on a stale configuration because the latest is invalid."
    );
    let _ = writeln!(out, "# TYPE metallb_k8s_client_config_stale_bool gauge");
    let _ = writeln!(
        out,
        "metallb_k8s_client_config_stale_bool {}",
        b(m.config_stale)
    );
    let _ = writeln!(
        out,
        "# HELP metallb_bgp_session_up BGP session state (1 is up, 0 is down)."
    );
    let _ = writeln!(out, "# TYPE metallb_bgp_session_up gauge");
    for (peer, up, _, _) in &m.sessions {
        let _ = writeln!(out, "metallb_bgp_session_up{{peer=\"{peer}\"}} {}", b(*up));
    }
    let _ = writeln!(
        out,
        "# HELP metallb_bgp_updates_total Number of BGP UPDATE messages sent."
    );
    let _ = writeln!(out, "# TYPE metallb_bgp_updates_total counter");
    for (peer, _, updates, _) in &m.sessions {
        let _ = writeln!(
            out,
            "metallb_bgp_updates_total{{peer=\"{peer}\"}} {updates}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP metallb_bgp_announced_prefixes_total Number of prefixes currently being advertised on the BGP session."
    );
    let _ = writeln!(out, "# TYPE metallb_bgp_announced_prefixes_total gauge");
    for (peer, _, _, n) in &m.sessions {
        let _ = writeln!(
            out,
            "metallb_bgp_announced_prefixes_total{{peer=\"{peer}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP metallb_speaker_announced IPs announced by this speaker."
    );
    let _ = writeln!(out, "# TYPE metallb_speaker_announced gauge");
    for (svc, a) in &m.announced {
        for ip in a.ips.as_slice() {
            let _ = writeln!(
                out,
                "metallb_speaker_announced{{ip=\"{ip}\",node=\"{node}\",protocol=\"bgp\",service=\"{svc}\"}} 1"
            );
        }
    }
    out
}

/// A tiny HTTP/1.0 responder for /metrics, /healthz and /readyz (no framework: the
/// speaker runs on every node, so its footprint matters).
async fn serve_http(
    addr: SocketAddr,
    node: String,
    metrics: Arc<Mutex<Metrics>>,
    sessions: Arc<tokio::sync::Mutex<PeerSessions>>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics address {addr}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let sessions = sessions.clone();
            let node = node.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n =
                    match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                        Ok(Ok(n)) => n,
                        _ => return,
                    };
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/healthz" => ("200 OK", "ok\n".to_string()),
                    "/readyz" => {
                        if metrics.lock().unwrap().synced {
                            ("200 OK", "ready\n".to_string())
                        } else {
                            ("503 Service Unavailable", "not ready\n".to_string())
                        }
                    }
                    "/metrics" => {
                        let lines: Vec<_> = {
                            let s = sessions.lock().await;
                            s.handles()
                                .map(|(k, h)| {
                                    let st = h.status().borrow().clone();
                                    (
                                        format!("{}:{}", k.0, k.1),
                                        st.state == State::Established,
                                        st.updates_sent,
                                        st.prefixes_announced,
                                    )
                                })
                                .collect()
                        };
                        let mut m = metrics.lock().unwrap();
                        m.sessions = lines;
                        ("200 OK", render_metrics(&m, &node))
                    }
                    _ => ("404 Not Found", "not found\n".to_string()),
                };
                let resp = format!(
                    "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(())
}

/// For tests: render with given sessions.
#[doc(hidden)]
pub fn render_for_test(
    announced: &[(&str, &[&str])],
    sessions: &[(&str, bool, u64, usize)],
) -> String {
    let m = Metrics {
        config_loaded: true,
        config_stale: false,
        synced: true,
        announced: announced
            .iter()
            .map(|(svc, ips)| {
                let ips: Vec<std::net::IpAddr> = ips
                    .iter()
                    .map(|ip| ip.parse().expect("an IP address"))
                    .collect();
                (
                    Box::from(*svc),
                    Announced {
                        pass: 0,
                        ips: ips.into(),
                    },
                )
            })
            .collect(),
        sessions: sessions
            .iter()
            .map(|(p, u, n, a)| (p.to_string(), *u, *n, *a))
            .collect(),
    };
    render_metrics(&m, "n1")
}
