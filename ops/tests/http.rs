//! The probe/metrics server over real TCP on 127.0.0.1 (current-thread runtime,
//! as the speaker uses).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferrolb_ops::http::{Limits, Probe, serve, serve_with};
use ferrolb_ops::metrics::{IntGauge, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

struct TestProbe {
    metrics: Metrics,
    not_ready: Mutex<Option<String>>,
}

impl Probe for TestProbe {
    fn ready(&self) -> Result<(), String> {
        match &*self.not_ready.lock().unwrap() {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

fn probe() -> Arc<TestProbe> {
    let metrics = Metrics::new();
    let g = IntGauge::new("metallb_k8s_client_config_loaded_bool", "1 if loaded").unwrap();
    g.set(1);
    metrics.registry().register(Box::new(g)).unwrap();
    Arc::new(TestProbe {
        metrics,
        not_ready: Mutex::new(None),
    })
}

const LOCAL: &str = "127.0.0.1:0";

fn local() -> SocketAddr {
    LOCAL.parse().unwrap()
}

/// One parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (head, then Content-Length bytes unless `head_only`).
async fn read_response(s: &mut TcpStream, head_only: bool) -> Resp {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read");
        assert!(
            n == 1,
            "connection closed in the head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; if head_only { 0 } else { len }];
    s.read_exact(&mut body).await.unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    timeout(
        Duration::from_secs(5),
        read_response(&mut s, method == "HEAD"),
    )
    .await
    .expect("response in time")
}

/// Waits for the peer to close: Ok(bytes received before the close).
async fn until_closed(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, &'static str> {
    let mut got = Vec::new();
    timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|_| "still open")?;
    Ok(got)
}

#[tokio::test]
async fn metrics_body_and_content_type() {
    let server = serve(local(), probe()).await.unwrap();
    let r = request(server.local_addr(), "GET", "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        r.body,
        "# HELP metallb_k8s_client_config_loaded_bool 1 if loaded\n\
         # TYPE metallb_k8s_client_config_loaded_bool gauge\n\
         metallb_k8s_client_config_loaded_bool 1\n"
    );
}

#[tokio::test]
async fn health_ready_404_405() {
    let p = probe();
    let server = serve(local(), p.clone()).await.unwrap();
    let addr = server.local_addr();
    for path in ["/healthz", "/livez", "/readyz"] {
        let r = request(addr, "GET", path).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{path}");
    }
    *p.not_ready.lock().unwrap() = Some("no configuration loaded yet".into());
    let r = request(addr, "GET", "/readyz").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "not ready: no configuration loaded yet")
    );
    // Liveness does not depend on readiness.
    assert_eq!(request(addr, "GET", "/healthz").await.status, 200);
    assert_eq!(request(addr, "GET", "/nope").await.status, 404);
    assert_eq!(request(addr, "GET", "/metrics/x").await.status, 404);
    let r = request(addr, "POST", "/metrics").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // A query string does not change the path.
    assert_eq!(request(addr, "GET", "/healthz?verbose").await.status, 200);
}

#[tokio::test]
async fn keep_alive_two_requests_and_head() {
    let server = serve(local(), probe()).await.unwrap();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut s, true).await;
    assert_eq!(head.status, 200);
    let announced: usize = head.header("content-length").unwrap().parse().unwrap();
    // The HEAD response carried no body: the next response starts right away.
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let get = read_response(&mut s, false).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.body.len(), announced);
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, false).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

/// The old speaker server read once and answered whatever it had.
#[tokio::test]
async fn request_split_over_several_writes() {
    let server = serve(local(), probe()).await.unwrap();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    for part in [
        "GE",
        "T /rea",
        "dyz HTTP/1.1\r\n",
        "Host: t\r\n",
        "\r",
        "\n",
    ] {
        s.write_all(part.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = timeout(Duration::from_secs(5), read_response(&mut s, false))
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn silent_client_dropped_after_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = serve_with(local(), probe(), limits).await.unwrap();
    let start = Instant::now();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    let got = until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    // Nothing but, at most, an error status.
    let text = String::from_utf8_lossy(&got);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");

    // An idle keep-alive connection too, counted from its last response.
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, false).await.status, 200);
    let idle = Instant::now();
    until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
    assert!(idle.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn connection_cap_holds() {
    let limits = Limits {
        max_connections: 2,
        header_timeout: Duration::from_secs(30),
    };
    let server = serve_with(local(), probe(), limits).await.unwrap();
    let addr = server.local_addr();
    // Two clients that hold their connection and send nothing.
    let mut idle1 = TcpStream::connect(addr).await.unwrap();
    let _idle2 = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A third is connected by the kernel but not served while both are held.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let early = timeout(Duration::from_millis(500), read_response(&mut third, false)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");

    // One idle client leaves: the third is served.
    idle1.shutdown().await.unwrap();
    let _ = until_closed(&mut idle1, Duration::from_secs(5)).await;
    drop(idle1);
    let r = timeout(Duration::from_secs(5), read_response(&mut third, false))
        .await
        .expect("served once a slot is free");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn port_in_use_is_an_error_and_drop_stops_serving() {
    let server = serve(local(), probe()).await.unwrap();
    let addr = server.local_addr();
    let err = serve(addr, probe()).await.unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    // An open keep-alive connection is closed with the server.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, false).await.status, 200);
    drop(server);
    until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("connection closed on drop");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

/// `FnProbe` (what both binaries serve) answers /readyz from its function.
#[test]
fn fn_probe_asks_its_function() {
    use ferrolb_ops::FnProbe;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let probe = FnProbe::new(Metrics::new(), move || {
        if flag.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("caches not synced yet".into())
        }
    });
    let resp = ferrolb_ops::http::respond(&*probe, &http::Method::GET, "/readyz");
    assert_eq!(resp.status(), 503);
    ready.store(true, Ordering::Relaxed);
    let resp = ferrolb_ops::http::respond(&*probe, &http::Method::GET, "/readyz");
    assert_eq!(resp.status(), 200);
    assert!(ferrolb_ops::Probe::metrics(&*probe).render().is_empty());
}
