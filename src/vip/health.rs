//! Health of the local API server: a pure rise/fall hysteresis
//! ([`Hysteresis`]) fed by a thin HTTP(S) GET ([`Checker`]).
//!
//! One slow or failed answer does not move the address: the state turns
//! down after `fall` failures in a row and up after `rise` successes in a
//! row. The state starts down, so a node announces (or campaigns) only after
//! `rise` good answers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

/// A health state change reported by [`Hysteresis::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `rise` successes in a row while down.
    Up,
    /// `fall` failures in a row while up.
    Down,
}

/// Rise/fall hysteresis over a stream of check results (pure: no clock, no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    healthy: bool,
    /// Results in a row that disagree with the current state.
    streak: u32,
}

impl Hysteresis {
    /// Starts down; `rise` and `fall` of 0 count as 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Hysteresis {
            rise: rise.max(1),
            fall: fall.max(1),
            healthy: false,
            streak: 0,
        }
    }

    /// Feeds one check result; returns the transition it caused, if any.
    pub fn observe(&mut self, ok: bool) -> Option<Transition> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.streak < needed {
            return None;
        }
        self.healthy = ok;
        self.streak = 0;
        Some(if ok { Transition::Up } else { Transition::Down })
    }
}

/// One GET of a health URL: 200 is healthy, anything else (another status,
/// a connection or TLS error, no answer within the timeout) is not.
pub struct Checker {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl Checker {
    /// A checker of `url` (`http://` or `https://`). With `https` and no
    /// `ca`, the server's certificate is not verified (the URL is the local
    /// API server, reached over loopback); with `ca` (a PEM file) it is
    /// verified against those certificates and the URL's host.
    pub fn new(url: &str, ca: Option<&Path>, timeout: Duration) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--health-url {url} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("--health-url {url}: the scheme must be http or https"),
        };
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("--health-url {url} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?;
            let config = match ca {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .with_context(|| format!("reading --health-ca {}", path.display()))?;
                    let mut roots = rustls::RootCertStore::empty();
                    for cert in CertificateDer::pem_slice_iter(&pem) {
                        let cert = cert.with_context(|| {
                            format!("--health-ca {}: not PEM certificates", path.display())
                        })?;
                        roots
                            .add(cert)
                            .context("adding a --health-ca certificate")?;
                    }
                    if roots.is_empty() {
                        bail!("--health-ca {} holds no certificate", path.display());
                    }
                    builder.with_root_certificates(roots).with_no_client_auth()
                }
                None => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                    .with_no_client_auth(),
            };
            let name = ServerName::try_from(host.clone())
                .with_context(|| format!("--health-url host {host}"))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Checker {
            uri,
            host,
            port,
            tls,
            timeout,
        })
    }

    /// One check: Ok(()) on 200, the reason otherwise.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.get()).await {
            Ok(Ok(200)) => Ok(()),
            Ok(Ok(status)) => Err(format!("status {status}")),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    async fn get(&self) -> Result<u16> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .context("connecting")?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                self.request(TokioIo::new(stream)).await
            }
            None => self.request(TokioIo::new(tcp)).await,
        }
    }

    async fn request<I>(&self, io: I) -> Result<u16>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .context("HTTP handshake")?;
        let conn = tokio::spawn(conn);
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let authority = self.uri.authority().map_or("", |a| a.as_str()).to_string();
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "ferrolb-vip")
            .body(Empty::<Bytes>::new())
            .context("building the request")?;
        let resp = sender.send_request(req).await.context("GET")?;
        conn.abort();
        Ok(resp.status().as_u16())
    }
}

/// Accepts any server certificate (no `--health-ca`); signatures are still
/// checked, so the handshake itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_down_and_rises_after_rise_successes() {
        let mut h = Hysteresis::new(2, 3);
        assert!(!h.healthy);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(Transition::Up));
        assert!(h.healthy);
        assert_eq!(h.observe(true), None);
    }

    #[test]
    fn falls_only_after_fall_failures_in_a_row() {
        let mut h = Hysteresis::new(2, 3);
        h.observe(true);
        h.observe(true);
        // Two failures, then a success: the streak starts again.
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        assert!(h.healthy);
        assert_eq!(h.observe(false), Some(Transition::Down));
        assert!(!h.healthy);
        // Down: one success is not enough, a failure resets the rise streak.
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(Transition::Up));
    }

    #[test]
    fn zero_counts_as_one() {
        let mut h = Hysteresis::new(0, 0);
        assert_eq!(h.observe(true), Some(Transition::Up));
        assert_eq!(h.observe(false), Some(Transition::Down));
    }

    #[test]
    fn bad_urls_are_refused() {
        let t = Duration::from_secs(1);
        assert!(Checker::new("ftp://127.0.0.1/", None, t).is_err());
        assert!(Checker::new("not a url", None, t).is_err());
        assert!(Checker::new("https://127.0.0.1:6443/readyz", None, t).is_ok());
    }

    /// A plain HTTP server answering each connection with `status`.
    async fn server(status: u16) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                    )
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_status_decides() {
        let t = Duration::from_secs(2);
        let ok = server(200).await;
        let bad = server(500).await;
        let c = Checker::new(&format!("http://{ok}/readyz"), None, t).unwrap();
        assert_eq!(c.check().await, Ok(()));
        let c = Checker::new(&format!("http://{bad}/readyz"), None, t).unwrap();
        assert_eq!(c.check().await, Err("status 500".to_string()));
        // Nobody listening.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let c = Checker::new(&format!("http://127.0.0.1:{port}/"), None, t).unwrap();
        assert!(c.check().await.is_err());
        // TLS to a plain server fails the handshake.
        let c = Checker::new(&format!("https://{ok}/readyz"), None, t).unwrap();
        assert!(c.check().await.is_err());
    }

    /// Runs openssl with `args`; false when it is missing or fails.
    fn openssl(args: &[&str], dir: &Path) -> bool {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A CA `NAME.crt`/`NAME.key` in `dir` (made by openssl), and with
    /// `leaf`, a server certificate `NAME-leaf.crt`/`.key` it signs for
    /// 127.0.0.1. False when openssl is missing.
    fn make_ca(dir: &Path, name: &str, leaf: bool) -> bool {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=test-ca"];
        ca.extend(ec);
        ca.extend(["-keyout", &key, "-out", &crt]);
        if !openssl(&ca, dir) {
            return false;
        }
        if !leaf {
            return true;
        }
        let (lcsr, lkey, lcrt) = (
            format!("{name}-leaf.csr"),
            format!("{name}-leaf.key"),
            format!("{name}-leaf.crt"),
        );
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        let mut req = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
        req.extend(ec);
        req.extend(["-keyout", &lkey, "-out", &lcsr]);
        openssl(&req, dir)
            && openssl(
                &[
                    "x509",
                    "-req",
                    "-in",
                    &lcsr,
                    "-CA",
                    &crt,
                    "-CAkey",
                    &key,
                    "-CAcreateserial",
                    "-days",
                    "1",
                    "-extfile",
                    "ext.cnf",
                    "-out",
                    &lcrt,
                ],
                dir,
            )
    }

    /// An HTTPS server answering 200 with the certificate at `cert`.
    async fn tls_server(cert: &Path, key: &Path) -> std::net::SocketAddr {
        use rustls::pki_types::PrivateKeyDer;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        });
        addr
    }

    /// HTTPS: any certificate without --health-ca; with it, only one it signs.
    #[tokio::test]
    async fn https_with_and_without_ca() {
        let dir = std::env::temp_dir().join(format!("ferrolb-vip-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if !(make_ca(&dir, "ca", true) && make_ca(&dir, "other", false)) {
            assert!(!ferrolb_testlab::in_ci(), "openssl is needed in CI");
            println!("SKIP https_with_and_without_ca: no openssl");
            return;
        }
        let (cert, other) = (dir.join("ca.crt"), dir.join("other.crt"));
        let addr = tls_server(&dir.join("ca-leaf.crt"), &dir.join("ca-leaf.key")).await;
        let url = format!("https://{addr}/readyz");
        let t = Duration::from_secs(2);
        assert_eq!(Checker::new(&url, None, t).unwrap().check().await, Ok(()));
        assert_eq!(
            Checker::new(&url, Some(&cert), t).unwrap().check().await,
            Ok(())
        );
        let e = Checker::new(&url, Some(&other), t)
            .unwrap()
            .check()
            .await
            .unwrap_err();
        assert!(e.contains("TLS handshake"), "{e}");
        assert!(Checker::new(&url, Some(&dir.join("missing.pem")), t).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
