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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

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
