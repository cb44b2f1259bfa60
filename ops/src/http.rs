//! The HTTP endpoints of both binaries: `/metrics` (Prometheus text format
//! 0.0.4), `/healthz` and `/livez` (200 `ok`), `/readyz` (200 `ok`, or 503
//! `not ready: <reason>`); anything else 404, methods other than GET and HEAD
//! 405.
//!
//! HTTP/1.1 with keep-alive, on hyper's server side (hyper is already in the
//! tree through kube's client). Memory stays bounded under a flood of idle or
//! slow clients: at most [`Limits::max_connections`] connections are served at
//! once (further ones wait in the kernel's accept queue), a connection whose
//! request head has not arrived within [`Limits::header_timeout`] (counted
//! from the connection's start or its previous response, so idle keep-alive
//! connections too) is closed, and a request head may not exceed 16 KiB.
//! Works on a current-thread tokio runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::Error;
use crate::metrics;

/// What the endpoints report, supplied by the binary.
pub trait Probe: Send + Sync + 'static {
    /// Ok when ready; the reason otherwise (shown on /readyz).
    fn ready(&self) -> Result<(), String>;
    /// What /metrics renders (text format 0.0.4).
    fn metrics(&self) -> &metrics::Metrics;
}

/// A [`Probe`] made of the metrics and a readiness function.
pub struct FnProbe<F> {
    metrics: metrics::Metrics,
    ready: F,
}

impl<F> FnProbe<F>
where
    F: Fn() -> Result<(), String> + Send + Sync + 'static,
{
    /// `/metrics` renders `metrics`; `/readyz` asks `ready`.
    pub fn new(metrics: metrics::Metrics, ready: F) -> Arc<Self> {
        Arc::new(FnProbe { metrics, ready })
    }
}

impl<F> Probe for FnProbe<F>
where
    F: Fn() -> Result<(), String> + Send + Sync + 'static,
{
    fn ready(&self) -> Result<(), String> {
        (self.ready)()
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }
}

/// Bounds on what clients may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Time a client has to send a complete request head, from connecting or
    /// from the previous response on a keep-alive connection.
    pub header_timeout: Duration,
}

impl Default for Limits {
    /// 32 connections (Prometheus and the kubelet use a handful), 10 s.
    fn default() -> Self {
        Limits {
            max_connections: 32,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// The largest request head accepted (hyper's read buffer cap).
const MAX_HEAD: usize = 16 * 1024;

/// A running server; stops serving (listener and open connections) on drop
/// or [`Server::abort`].
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// The address actually bound (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving now.
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (error if it cannot, e.g. port in use), then serves in a
/// spawned task with the default [`Limits`].
pub async fn serve(addr: SocketAddr, probe: Arc<dyn Probe>) -> Result<Server, Error> {
    serve_with(addr, probe, Limits::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    addr: SocketAddr,
    probe: Arc<dyn Probe>,
    limits: Limits,
) -> Result<Server, Error> {
    let bind = |source| Error::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let local_addr = listener.local_addr().map_err(bind)?;
    info!(addr = %local_addr, "serving /metrics, /healthz, /livez, /readyz");
    let task = tokio::spawn(accept_loop(listener, probe, limits));
    Ok(Server { local_addr, task })
}

async fn accept_loop(listener: TcpListener, probe: Arc<dyn Probe>, limits: Limits) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD);
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    let max = limits.max_connections.max(1);
    loop {
        while conns.try_join_next().is_some() {}
        if conns.len() >= max {
            conns.join_next().await;
            continue;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = conns.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                warn!(error = %e, "accepting an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let probe = probe.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req: Request<Incoming>| {
                let resp = respond(&*probe, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            }),
        );
        conns.spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "HTTP connection closed");
            }
        });
    }
}

/// The response to `method path` (pure, apart from what `probe` reads).
pub fn respond(probe: &dyn Probe, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let mut r = text(StatusCode::OK, probe.metrics().render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            r
        }
        "/healthz" | "/livez" => text(StatusCode::OK, "ok"),
        "/readyz" => match probe.ready() {
            Ok(()) => text(StatusCode::OK, "ok"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
