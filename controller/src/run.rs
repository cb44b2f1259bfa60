//! `ferrolb controller`: options, the watch loops around [`crate::reconcile`],
//! leader election and the `/metrics`, `/healthz`, `/readyz` endpoints.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::Controller;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::allocator::ServiceKey;
use crate::reconcile::{self, Context, REASON_INVALID_CONFIG, service_key};

/// Options of `ferrolb controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerOpts {
    /// Kubeconfig file; without it: `KUBECONFIG` or `~/.kube/config`, else the in-cluster config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the config ConfigMap (and of the leader-election Lease).
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = "metallb-system")]
    pub namespace: String,
    /// Name of the ConfigMap holding the MetalLB config (key `config`).
    #[arg(long, env = "FERROLB_CONFIG_NAME", default_value = "config")]
    pub config_name: String,
    /// Handle only Services with this `spec.loadBalancerClass` (default: only those without one).
    #[arg(long, env = "FERROLB_LB_CLASS")]
    pub lb_class: Option<String>,
    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "FERROLB_METRICS_ADDR", default_value = "0.0.0.0:7472")]
    pub metrics_addr: SocketAddr,
    /// Run only while holding the coordination.k8s.io/v1 Lease `ferrolb-controller`.
    #[arg(long, env = "FERROLB_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Log filter (`info`, `debug`, or a tracing `EnvFilter` directive).
    #[arg(long, env = "FERROLB_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Name of the leader-election Lease.
pub const LEASE_NAME: &str = "ferrolb-controller";
const LEASE_SECONDS: i32 = 15;

async fn client(opts: &ControllerOpts) -> Result<Client> {
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().into()))
        .unwrap_or_else(|_| "ferrolb".into());
    format!("{host}_{}", std::process::id())
}

/// Runs the controller until SIGTERM/SIGINT (Ok) or a fatal error.
pub async fn run(opts: ControllerOpts) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&opts.log_level))
        .try_init();
    let client = client(&opts).await?;
    let id = identity();
    let (ctx, reconcile_all_rx) =
        Context::new(client.clone(), opts.lb_class.clone(), Some(id.clone()));
    let ctx = Arc::new(ctx);

    let listener = TcpListener::bind(opts.metrics_addr)
        .await
        .with_context(|| format!("binding metrics address {}", opts.metrics_addr))?;
    info!(addr = %opts.metrics_addr, "serving /metrics, /healthz, /readyz");
    let http = tokio::spawn(serve_http(listener, ctx.clone()));

    let lease = if opts.leader_elect {
        let api: Api<Lease> = Api::namespaced(client.clone(), &opts.namespace);
        ctx.state().not_ready_reason = Some("waiting for the leader Lease".into());
        tokio::select! {
            r = acquire_lease(&api, &id) => r?,
            _ = shutdown_signal() => { http.abort(); return Ok(()); }
        }
        info!(identity = %id, "became leader");
        ctx.state().not_ready_reason = Some("no configuration loaded yet".into());
        Some(api)
    } else {
        None
    };

    // The config: one ConfigMap, watched.
    let config_loaded = Arc::new(Notify::new());
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &opts.namespace);
    let cm_task = tokio::spawn(watch_config(
        cm_api,
        opts.config_name.clone(),
        ctx.clone(),
        config_loaded.clone(),
    ));

    // Services, all namespaces, through our own reflector so deletions are seen.
    let (reader, writer) = reflector::store::<Service>();
    let svc_api: Api<Service> = Api::all(client.clone());
    let del_ctx = ctx.clone();
    let store_listed = Arc::new(Notify::new());
    let rebuild_listed = store_listed.clone();
    let del_reader = reader.clone();
    // Controller::for_stream is behind kube's `unstable-runtime` feature
    // (stream control); Controller::new would hide Delete events.
    let stream = watcher(svc_api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect_ok(move |ev| match ev {
            watcher::Event::Delete(svc) => {
                if let Some(k) = service_key(svc) {
                    del_ctx.forget(&k);
                }
            }
            watcher::Event::InitDone => {
                let synced = del_ctx.state().synced;
                if synced {
                    del_ctx.forget_missing(&store_keys(&del_reader));
                }
                // The reflector has applied the list: the store is complete.
                store_listed.notify_one();
            }
            _ => {}
        })
        .applied_objects();

    let rebuild = tokio::spawn(initial_rebuild(
        reader.clone(),
        rebuild_listed,
        ctx.clone(),
        config_loaded,
    ));

    let controller = Controller::for_stream(stream, reader)
        .reconcile_all_on(reconcile_all_rx.ready_chunks(1024).map(|_| ()))
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|res| {
            if let Err(e) = res {
                match e {
                    kube::runtime::controller::Error::ObjectNotFound(r) => {
                        // Deleted before its turn: the Delete event released it.
                        if let Some(ns) = r.namespace.as_deref() {
                            ctx.forget(&ServiceKey::new(ns, r.name.as_str()));
                        }
                    }
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    other => warn!(error = %other, "controller"),
                }
            }
            futures::future::ready(())
        });

    let result = match &lease {
        Some(api) => {
            tokio::select! {
                () = controller => Ok(()),
                e = hold_lease(api, &id) => Err(e),
            }
        }
        None => {
            controller.await;
            Ok(())
        }
    };
    if let Some(api) = &lease {
        release_lease(api, &id).await;
    }
    cm_task.abort();
    rebuild.abort();
    http.abort();
    info!("controller stopped");
    result
}

fn store_keys(reader: &Store<Service>) -> Vec<ServiceKey> {
    reader
        .state()
        .iter()
        .filter_map(|s| service_key(s))
        .collect()
}

/// Waits for the Services to be listed and a valid config, then rebuilds the
/// allocator from the Services' status (nothing is allocated before that).
///
/// `listed` is signalled by the Service stream after each complete list. (Not
/// `Store::wait_until_ready`: kube-runtime 5 wakes only one of several tasks
/// waiting on it, and the Controller already waits there.)
async fn initial_rebuild(
    reader: Store<Service>,
    listed: Arc<Notify>,
    ctx: Arc<Context>,
    config_loaded: Arc<Notify>,
) {
    listed.notified().await;
    loop {
        // (rebuild takes the state lock itself: no guard may live here.)
        if ctx.rebuild(&reader.state()) {
            // Deletions between the snapshot and the rebuild.
            ctx.forget_missing(&store_keys(&reader));
            info!("initial sync done");
            return;
        }
        config_loaded.notified().await;
    }
}

async fn watch_config(api: Api<ConfigMap>, name: String, ctx: Arc<Context>, loaded: Arc<Notify>) {
    let wc = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut seen_in_init = false;
    // The rejection last reported on the ConfigMap, so each is reported once.
    let mut reported: Option<String> = None;
    let mut stream = watcher(api, wc).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => seen_in_init = false,
            Ok(watcher::Event::InitApply(cm)) | Ok(watcher::Event::Apply(cm)) => {
                seen_in_init = true;
                let text = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get("config"))
                    .map(String::as_str);
                if ctx.apply_config_text(text) {
                    loaded.notify_one();
                }
                match ctx.rejection() {
                    Some(why) if reported.as_ref() != Some(&why) => {
                        ctx.publish_on(
                            &cm.object_ref(&()),
                            EventType::Warning,
                            REASON_INVALID_CONFIG,
                            format!("configuration rejected: {why}"),
                        )
                        .await;
                        reported = Some(why);
                    }
                    Some(_) => {}
                    None => reported = None,
                }
            }
            Ok(watcher::Event::InitDone) => {
                if !seen_in_init {
                    warn!(configmap = %name, "config ConfigMap not found");
                    ctx.apply_config_text(None);
                }
            }
            Ok(watcher::Event::Delete(cm)) => {
                warn!(configmap = %cm.name_any(), "config ConfigMap deleted; keeping the last good config");
                ctx.apply_config_text(None);
            }
            Err(e) => warn!(error = %e, "watching the config ConfigMap"),
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

// ---- leader election: a coordination.k8s.io/v1 Lease, optimistic updates ----

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn lease_expired(l: &Lease) -> bool {
    let Some(spec) = &l.spec else { return true };
    let Some(renew) = &spec.renew_time else {
        return true;
    };
    let dur = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    renew.0.as_second() + dur < k8s_openapi::jiff::Timestamp::now().as_second()
}

fn holder(l: &Lease) -> Option<&str> {
    l.spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// Blocks until this process holds the Lease.
async fn acquire_lease(api: &Api<Lease>, id: &str) -> Result<()> {
    loop {
        match api.get_opt(LEASE_NAME).await {
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.into()),
                        ..Default::default()
                    },
                    spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                        holder_identity: Some(id.into()),
                        lease_duration_seconds: Some(LEASE_SECONDS),
                        acquire_time: Some(now()),
                        renew_time: Some(now()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                if api.create(&PostParams::default(), &lease).await.is_ok() {
                    return Ok(());
                }
            }
            Ok(Some(mut l)) => {
                let mine = holder(&l) == Some(id);
                if mine || holder(&l).is_none() || lease_expired(&l) {
                    let spec = l.spec.get_or_insert_with(Default::default);
                    if !mine {
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                        spec.acquire_time = Some(now());
                    }
                    spec.holder_identity = Some(id.into());
                    spec.lease_duration_seconds = Some(LEASE_SECONDS);
                    spec.renew_time = Some(now());
                    // replace carries resourceVersion: a concurrent taker gets 409.
                    if api
                        .replace(LEASE_NAME, &PostParams::default(), &l)
                        .await
                        .is_ok()
                    {
                        return Ok(());
                    }
                } else {
                    info!(
                        holder = holder(&l).unwrap_or_default(),
                        "waiting for the leader Lease"
                    );
                }
            }
            Err(e) => warn!(error = %e, "reading the leader Lease"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Renews the Lease; returns (an error) only when leadership is lost.
async fn hold_lease(api: &Api<Lease>, id: &str) -> anyhow::Error {
    let period = Duration::from_secs((LEASE_SECONDS / 3) as u64);
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(period).await;
        let renewed = async {
            let mut l = api.get(LEASE_NAME).await?;
            if holder(&l) != Some(id) {
                return Ok::<bool, kube::Error>(false);
            }
            if let Some(spec) = l.spec.as_mut() {
                spec.renew_time = Some(now());
            }
            api.replace(LEASE_NAME, &PostParams::default(), &l).await?;
            Ok(true)
        }
        .await;
        match renewed {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => return anyhow::anyhow!("leader Lease taken by another controller"),
            Err(e) => {
                warn!(error = %e, "renewing the leader Lease");
                if last_ok.elapsed() > Duration::from_secs(LEASE_SECONDS as u64) {
                    return anyhow::anyhow!("could not renew the leader Lease: {e}");
                }
            }
        }
    }
}

async fn release_lease(api: &Api<Lease>, id: &str) {
    if let Ok(mut l) = api.get(LEASE_NAME).await
        && holder(&l) == Some(id)
    {
        if let Some(spec) = l.spec.as_mut() {
            spec.holder_identity = None;
        }
        if let Err(e) = api.replace(LEASE_NAME, &PostParams::default(), &l).await {
            warn!(error = %e, "releasing the leader Lease");
        }
    }
}

// ---- /metrics, /healthz, /readyz ----

/// Prometheus text exposition of the controller's state.
pub fn render_metrics(ctx: &Context) -> String {
    let mut out = String::new();
    let st = ctx.state();
    let stats = st
        .allocator
        .as_ref()
        .map(|a| a.pool_stats())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP metallb_allocator_addresses_total Number of usable IP addresses, per pool"
    );
    let _ = writeln!(out, "# TYPE metallb_allocator_addresses_total gauge");
    for p in &stats {
        let _ = writeln!(
            out,
            "metallb_allocator_addresses_total{{pool=\"{}\"}} {}",
            esc(&p.name),
            p.total
        );
    }
    let _ = writeln!(
        out,
        "# HELP metallb_allocator_addresses_in_use_total Number of IP addresses in use, per pool"
    );
    let _ = writeln!(out, "# TYPE metallb_allocator_addresses_in_use_total gauge");
    for p in &stats {
        let _ = writeln!(
            out,
            "metallb_allocator_addresses_in_use_total{{pool=\"{}\"}} {}",
            esc(&p.name),
            p.in_use
        );
    }
    let _ = writeln!(
        out,
        "# HELP metallb_k8s_client_config_loaded_bool 1 if the MetalLB configuration was successfully loaded at least once"
    );
    let _ = writeln!(out, "# TYPE metallb_k8s_client_config_loaded_bool gauge");
    let _ = writeln!(
        out,
        "metallb_k8s_client_config_loaded_bool {}",
        u8::from(st.config.is_some())
    );
    let _ = writeln!(
        out,
        "# HELP metallb_k8s_client_config_stale_bool 1 if running on a stale configuration, because the latest config failed to load"
    );
    let _ = writeln!(out, "# TYPE metallb_k8s_client_config_stale_bool gauge");
    let _ = writeln!(
        out,
        "metallb_k8s_client_config_stale_bool {}",
        u8::from(st.config_stale)
    );
    drop(st);
    let c = &ctx.counters;
    for (name, help, v) in [
        (
            "ferrolb_reconcile_errors_total",
            "Failed Service reconciles",
            &c.reconcile_errors,
        ),
        (
            "ferrolb_config_errors_total",
            "Invalid configurations seen",
            &c.config_errors,
        ),
        (
            "ferrolb_event_errors_total",
            "Events that could not be published",
            &c.event_errors,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn serve_http(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            // Read the whole request head (bounded), so closing sends no RST.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let (status, ctype, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", render_metrics(&ctx)),
                "/healthz" | "/livez" => ("200 OK", "text/plain", "ok\n".to_string()),
                "/readyz" => match ctx.ready() {
                    Ok(()) => ("200 OK", "text/plain", "ok\n".to_string()),
                    Err(why) => (
                        "503 Service Unavailable",
                        "text/plain",
                        format!("not ready: {why}\n"),
                    ),
                },
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = sock.write_all(resp.as_bytes()).await {
                error!(error = %e, "metrics response");
            }
            let _ = sock.shutdown().await;
        });
    }
}
