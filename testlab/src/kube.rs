//! A real kube-apiserver v1.20.2 (+ etcd) on 127.0.0.1 for end-to-end tests.
//!
//! The binary is built once by `scripts/kube-apiserver build` into the user cache
//! (`$XDG_CACHE_HOME/ferrolb/kube-apiserver-v1.20.2/`); this module only runs
//! `scripts/kube-apiserver start <tempdir>` and stops it again on drop.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let Some(api) = ferrolb_testlab::kube::KubeApiServer::start()? else { return Ok(()) };
//! println!("{} {}", api.server_url(), api.kubeconfig_path().display());
//! # Ok(()) }
//! ```
//!
//! Skips (returns `Ok(None)` after printing `SKIP kube-apiserver: <reason>`) when the
//! cached binary is missing or the process is not root; with `CI=true` a missing binary
//! is an error instead, so CI cannot silently lose the end-to-end tests.
//!
//! 1.20 serves EndpointSlices only as `discovery.k8s.io/v1beta1`. For the v1 API of
//! later releases, start with [`StartOptions::ENDPOINT_SLICE_V1`] (the built-in
//! v1beta1 group turned off) and install [`ENDPOINT_SLICE_V1_CRD`] with
//! [`KubeApiServer::install_endpoint_slice_v1_crd`]; [`KubeApiServer::start_with_slices_v1`]
//! does both. [`KubeApiServer::request`] sends one raw request (through `curl`), for
//! what a typed client would hide (status codes, the server's refusal messages).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// The kube-apiserver flag that turns the built-in `discovery.k8s.io/v1beta1` off; without
/// it the built-in group shadows the EndpointSlice v1 CRD (its v1 path answers 404).
pub const DISABLE_BUILTIN_SLICES: &str = "--runtime-config=discovery.k8s.io/v1beta1=false";

/// A CustomResourceDefinition that serves `discovery.k8s.io/v1` EndpointSlices with
/// the real v1 schema (required fields, enums, list types, limits; see the comment at
/// the top of the file for what carries over from the built-in type and what does not).
pub const ENDPOINT_SLICE_V1_CRD: &str = include_str!("testdata/endpointslice-v1-crd.yaml");

/// Name of [`ENDPOINT_SLICE_V1_CRD`].
pub const ENDPOINT_SLICE_V1_CRD_NAME: &str = "endpointslices.discovery.k8s.io";

/// How to start the API server ([`KubeApiServer::start_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions<'a> {
    /// More kube-apiserver flags, each one word starting with `--` (`--name=value`),
    /// placed after the defaults so they win. Passed to `scripts/kube-apiserver start`
    /// in `FERROLB_KUBE_EXTRA_ARGS`.
    pub extra_args: &'a [&'a str],
}

impl StartOptions<'static> {
    /// A server on which [`KubeApiServer::install_endpoint_slice_v1_crd`] works:
    /// [`DISABLE_BUILTIN_SLICES`].
    pub const ENDPOINT_SLICE_V1: StartOptions<'static> = StartOptions {
        extra_args: &[DISABLE_BUILTIN_SLICES],
    };
}

/// One answer of the API server to [`KubeApiServer::request`].
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl ApiResponse {
    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("HTTP {} body is not JSON: {}", self.status, self.body))
    }

    /// The `message` of a `Status` body (the server's reason for a refusal), else the
    /// body itself.
    pub fn message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| self.body.trim().to_string())
    }
}

/// A running etcd + kube-apiserver pair, stopped (by PID) when dropped.
#[derive(Debug)]
pub struct KubeApiServer {
    dir: PathBuf,
    script: PathBuf,
    server_url: String,
    token: String,
    kubeconfig: PathBuf,
    stopped: bool,
}

/// The repository root (parent of the testlab crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Path of `scripts/kube-apiserver`.
pub fn script_path() -> PathBuf {
    repo_root().join("scripts").join("kube-apiserver")
}

/// The cached kube-apiserver binary, if it has been built.
pub fn cached_binary() -> Option<PathBuf> {
    let out = Command::new(script_path()).arg("path").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn is_root() -> bool {
    // Real UID from /proc, so no libc dependency is needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn unique_dir() -> Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "ferrolb-kube-{}-{}-{nanos:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver in a fresh temporary directory and waits for
    /// `/readyz`. `Ok(None)` means the test should skip (a `SKIP` line was printed).
    pub fn start() -> Result<Option<KubeApiServer>> {
        Self::start_with(&StartOptions::default())
    }

    /// [`KubeApiServer::start`] with [`StartOptions::ENDPOINT_SLICE_V1`], then
    /// [`KubeApiServer::install_endpoint_slice_v1_crd`]: the server serves
    /// `discovery.k8s.io/v1` EndpointSlices (and no built-in v1beta1 ones).
    pub fn start_with_slices_v1() -> Result<Option<KubeApiServer>> {
        let Some(api) = Self::start_with(&StartOptions::ENDPOINT_SLICE_V1)? else {
            return Ok(None);
        };
        api.install_endpoint_slice_v1_crd(Duration::from_secs(30))?;
        Ok(Some(api))
    }

    /// [`KubeApiServer::start`] with more kube-apiserver flags.
    pub fn start_with(opts: &StartOptions<'_>) -> Result<Option<KubeApiServer>> {
        for a in opts.extra_args {
            ensure!(
                a.starts_with("--") && a.len() > 2 && !a.contains(char::is_whitespace),
                "kube-apiserver extra argument {a:?}: want one word starting with --"
            );
        }
        let script = script_path();
        if !script.exists() {
            bail!("{} not found", script.display());
        }
        if cached_binary().is_none() {
            let reason = "kube-apiserver v1.20.2 not built (run scripts/kube-apiserver build)";
            if in_ci() {
                bail!("{reason}; CI=true, so this is an error");
            }
            eprintln!("SKIP kube-apiserver: {reason}");
            return Ok(None);
        }
        if !is_root() {
            eprintln!("SKIP kube-apiserver: not root");
            return Ok(None);
        }
        let dir = unique_dir()?;
        let out = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .env("FERROLB_KUBE_WATCH_PID", std::process::id().to_string())
            .env("FERROLB_KUBE_EXTRA_ARGS", opts.extra_args.join(" "))
            .output()
            .with_context(|| format!("running {} start", script.display()))?;
        if !out.status.success() {
            // The script stops what it started on failure; keep the dir for the logs.
            bail!(
                "{} start {} failed ({}):\n{}{}",
                script.display(),
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let read = |name: &str| -> Result<String> {
            let p = dir.join(name);
            Ok(std::fs::read_to_string(&p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_string())
        };
        let mut api = KubeApiServer {
            server_url: String::new(),
            token: String::new(),
            kubeconfig: dir.join("kubeconfig"),
            dir: dir.clone(),
            script,
            stopped: false,
        };
        // From here on Drop cleans up if reading the files fails.
        api.server_url = read("server")?;
        api.token = read("token")?;
        if !api.kubeconfig.exists() {
            bail!("{} missing after start", api.kubeconfig.display());
        }
        Ok(Some(api))
    }

    /// `DIR/kubeconfig`: server, CA data and the admin token (system:masters).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The port of [`KubeApiServer::server_url`].
    pub fn port(&self) -> Result<u16> {
        self.server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .with_context(|| format!("no port in {}", self.server_url))
    }

    /// Writes a kubeconfig at `path` for clients that reach this server
    /// through `server` (e.g. `https://127.0.0.1:6443`, a relay's listener in
    /// a node namespace): this server's CA and the admin token.
    pub fn write_kubeconfig_via(&self, path: &Path, server: &str) -> Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\ncurrent-context: e2e\n",
            self.ca_cert_path().display(),
            self.token
        );
        std::fs::write(path, text).with_context(|| path.display().to_string())
    }

    /// Static bearer token of a `system:masters` user.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// PEM CA that signed the serving certificate (SANs 127.0.0.1 and localhost).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// State directory: etcd data, certificates, `etcd.log`, `kube-apiserver.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Milliseconds from `start` until `/readyz` answered `ok`.
    pub fn ready_ms(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("ready-ms"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// PIDs of the processes started (kube-apiserver, etcd, optional watcher).
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().last()?.parse().ok())
            .collect()
    }

    /// The extra flags the server was started with (`DIR/extra-args`).
    pub fn extra_args(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("extra-args"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// One request to the API server as the admin user, through `curl` (10 s bound).
    /// `path` starts with `/` (`/apis/…?query`); `body` is `(content type, bytes)`.
    /// Any HTTP status is `Ok`; `Err` means no answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<ApiResponse> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "-X", method, "--cacert"])
            .arg(self.ca_cert_path())
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token))
            .args(["-w", "\n%{http_code}"]);
        if let Some((content_type, _)) = body {
            cmd.arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                .args(["--data-binary", "@-"]);
        }
        cmd.arg(format!("{}{path}", self.server_url))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running curl")?;
        let mut stdin = child.stdin.take().context("curl stdin")?;
        if let Some((_, bytes)) = body {
            stdin.write_all(bytes).context("writing the body to curl")?;
        }
        drop(stdin);
        let out = child.wait_with_output().context("waiting for curl")?;
        ensure!(
            out.status.success(),
            "curl {method} {path}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text
            .rsplit_once('\n')
            .with_context(|| format!("curl {method} {path}: no status line in {text:?}"))?;
        Ok(ApiResponse {
            status: code
                .trim()
                .parse()
                .with_context(|| format!("curl {method} {path}: status {code:?}"))?,
            body: body.to_string(),
        })
    }

    /// [`KubeApiServer::request`] with a JSON body.
    pub fn request_json(&self, method: &str, path: &str, body: &Value) -> Result<ApiResponse> {
        self.request(
            method,
            path,
            Some(("application/json", body.to_string().as_bytes())),
        )
    }

    /// Creates [`ENDPOINT_SLICE_V1_CRD`] and waits (up to `timeout`) until it is
    /// Established with its names accepted and its API approval recognised, and until
    /// discovery (`/apis/discovery.k8s.io/v1`) lists `endpointslices`, which is what
    /// clients (the speaker) look at. Needs a server started with
    /// [`StartOptions::ENDPOINT_SLICE_V1`]. Returns how long it took.
    pub fn install_endpoint_slice_v1_crd(&self, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        let r = self.request(
            "POST",
            crds,
            Some(("application/yaml", ENDPOINT_SLICE_V1_CRD.as_bytes())),
        )?;
        ensure!(
            r.status == 201,
            "creating {ENDPOINT_SLICE_V1_CRD_NAME}: HTTP {}: {}",
            r.status,
            r.message()
        );
        let mut last = String::new();
        let established = crate::util::wait_until(timeout, Duration::from_millis(100), || {
            let crd = self
                .request("GET", &format!("{crds}/{ENDPOINT_SLICE_V1_CRD_NAME}"), None)
                .and_then(|r| r.json())
                .ok()?;
            let conds = crd["status"]["conditions"].as_array().cloned()?;
            let is = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            last = Value::Array(conds.clone()).to_string();
            (is("Established")
                && is("NamesAccepted")
                && is("KubernetesAPIApprovalPolicyConformant")
                && !is("NonStructuralSchema"))
            .then_some(())
        });
        ensure!(
            established.is_some(),
            "{ENDPOINT_SLICE_V1_CRD_NAME} not established within {timeout:?}; conditions: {last}"
        );
        let served = crate::util::wait_until(
            timeout.saturating_sub(t0.elapsed()),
            Duration::from_millis(100),
            || {
                let r = self
                    .request("GET", "/apis/discovery.k8s.io/v1", None)
                    .ok()?;
                last = format!("HTTP {}: {}", r.status, r.body.trim());
                let v = r.json().ok()?;
                v["resources"]
                    .as_array()?
                    .iter()
                    .any(|res| res["name"] == "endpointslices" && res["kind"] == "EndpointSlice")
                    .then_some(())
            },
        );
        if served.is_none() {
            let hint = if self
                .extra_args()
                .iter()
                .any(|a| a == DISABLE_BUILTIN_SLICES)
            {
                ""
            } else {
                " (the server was not started with StartOptions::ENDPOINT_SLICE_V1, so the \
                 built-in discovery.k8s.io group shadows the CRD)"
            };
            bail!(
                "/apis/discovery.k8s.io/v1 does not list endpointslices within {timeout:?}{hint}; last: {last}"
            );
        }
        Ok(t0.elapsed())
    }

    /// Stops kube-apiserver and etcd (TERM, then KILL). Idempotent.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let status = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            // Fall back to killing by PID directly.
            for pid in self.pids() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            bail!(
                "{} stop {} failed: {status:?}",
                self.script.display(),
                self.dir.display()
            );
        }
        Ok(())
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("kube-apiserver: {e:#}");
        }
        if std::thread::panicking() || std::env::var_os("FERROLB_KEEP_KUBE_DIR").is_some() {
            eprintln!(
                "kube-apiserver: state and logs kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
