//! Prerequisite checks, ports, polling and per-test directories.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// True when running in CI (`CI=true` or `CI=1`): missing prerequisites fail instead of skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when the real UID is 0 (read from `/proc/self/status`; no libc needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Finds `bin` in `$PATH` or as an absolute path.
pub fn which(bin: &str) -> Option<PathBuf> {
    let p = Path::new(bin);
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|c| c.is_file())
    })
}

/// Whether `ip netns` works here: creates and deletes a probe namespace once per process.
fn netns_usable() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let name = format!("flb-probe-{}", std::process::id());
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .map_err(|e| format!("cannot run ip: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip netns add failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            Ok(())
        })
        .clone()
}

/// Binaries of the FRR daemons (not in `$PATH` on Debian).
pub const FRR_BGPD: &str = "/usr/lib/frr/bgpd";
/// FRR zebra.
pub const FRR_ZEBRA: &str = "/usr/lib/frr/zebra";

/// Checks that the test can run: root, a working `ip netns`, and every binary in `bins`
/// (names in `$PATH` or absolute paths; `ip` is always required).
///
/// Returns `true` when everything is there. Otherwise prints `SKIP <test>: <reason>` to
/// stderr and returns `false`, so the test returns early — except in CI (`CI=true`),
/// where a missing prerequisite panics with `FAIL <test>: …`, because CI must run them.
///
/// ```no_run
/// # fn t() {
/// if !ferrolb_testlab::require_root_or_skip("gobgp_ebgp", &["gobgpd", "gobgp"]) { return; }
/// # }
/// ```
pub fn require_root_or_skip(test: &str, bins: &[&str]) -> bool {
    let reason = if !is_root() {
        Some("not root (network namespaces need CAP_SYS_ADMIN)".to_string())
    } else if let Some(b) = std::iter::once(&"ip")
        .chain(bins.iter())
        .find(|b| which(b).is_none())
    {
        Some(format!(
            "{b} not found (run scripts/install-test-deps as root)"
        ))
    } else {
        netns_usable().err()
    };
    match reason {
        None => true,
        Some(r) if in_ci() => panic!("FAIL {test}: prerequisite missing in CI: {r}"),
        Some(r) => {
            eprintln!("SKIP {test}: {r}");
            false
        }
    }
}

/// Returns from the calling test when [`require_root_or_skip`] says to skip. Works in
/// tests returning `()` and `Result<(), E>`.
///
/// ```no_run
/// #[test]
/// fn my_test() -> anyhow::Result<()> {
///     ferrolb_testlab::require_or_return!("my_test", "gobgpd", "gobgp");
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! require_or_return {
    ($test:expr $(, $bin:expr)* $(,)?) => {
        if !$crate::require_root_or_skip($test, &[$($bin),*]) {
            return $crate::util::Skipped::skipped();
        }
    };
}

/// What a skipped test returns (used by [`require_or_return!`]).
pub trait Skipped {
    /// `()` or `Ok(())`.
    fn skipped() -> Self;
}

impl Skipped for () {
    fn skipped() -> Self {}
}

impl<E> Skipped for Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
}

/// A TCP port that was free on 127.0.0.1 in the root namespace and that this process has
/// not handed out before (ports inside a namespace are separate; uniqueness keeps logs
/// readable and lets one namespace host several daemons).
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0");
        if given.lock().expect("port set").insert(port) {
            return port;
        }
    }
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// A per-test directory under the system temp dir (mode 0755 so the `frr` user can
/// traverse it). Removed on drop, unless `FERROLB_KEEP_TEST_DIRS=1` or the thread is
/// panicking; in both cases its path is printed to stderr.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `$TMPDIR/ferrolb-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> Result<TestDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ferrolb-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        set_mode(&path, 0o755)?;
        Ok(TestDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory (created, mode 0755).
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        set_mode(&p, 0o755)?;
        Ok(p)
    }
}

/// `chmod` without libc.
pub fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))
}

/// True when `FERROLB_KEEP_TEST_DIRS=1`.
pub fn keep_test_dirs() -> bool {
    std::env::var("FERROLB_KEEP_TEST_DIRS").is_ok_and(|v| v == "1")
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if keep_test_dirs() || std::thread::panicking() {
            eprintln!("ferrolb-testlab: kept test dir {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
