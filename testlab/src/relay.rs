//! A relay from a UNIX socket to a TCP address, so processes inside a network namespace
//! can reach a server on 127.0.0.1 of the root namespace without any address being
//! added there: a filesystem socket is visible from every network namespace.
//!
//! ```text
//!  node namespace                         │ root namespace (this test process)
//!  speaker ──► 127.0.0.1:6443 (socat) ──► │ <dir>/api.sock ──► UnixTcpRelay ──► 127.0.0.1:PORT
//! ```
//!
//! [`UnixTcpRelay::start`] listens on the socket path (a thread per direction per
//! connection; meant for a handful of long-lived connections such as watches), and
//! [`UnixTcpRelay::spawn_listener_in`] runs `socat TCP-LISTEN:…,fork UNIX-CONNECT:<path>`
//! inside a namespace as a [`Proc`]. Nothing here knows about Kubernetes.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ferrolb_testlab::{Netns, relay::UnixTcpRelay};
//! let ns = Netns::new()?;
//! let relay = UnixTcpRelay::start(&ns.dir().join("api.sock"), "127.0.0.1:6443".parse()?)?;
//! let _socat = relay.spawn_listener_in(&ns, "127.0.0.1:6443".parse()?)?;
//! // inside `ns`, 127.0.0.1:6443 now reaches 127.0.0.1:6443 of the root namespace
//! # Ok(()) }
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::proc::Proc;
use crate::util::wait_until;

/// Open connection pairs, so drop can shut them down.
type Conns = Arc<Mutex<Vec<(UnixStream, TcpStream)>>>;

/// Accepts on a UNIX socket and pipes each connection to a TCP address. Stopped on drop:
/// the listener closes, open connections are shut down, the socket file is removed.
#[derive(Debug)]
pub struct UnixTcpRelay {
    path: PathBuf,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Conns,
    accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl UnixTcpRelay {
    /// Listens on `path` (removed first if it exists) and relays every connection to
    /// `target`.
    pub fn start(path: &Path, target: SocketAddr) -> Result<UnixTcpRelay> {
        if path.exists() {
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Conns = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, conns, accepted) = (stop.clone(), conns.clone(), accepted.clone());
            std::thread::Builder::new()
                .name("unix-tcp-relay".into())
                .spawn(move || accept_loop(listener, target, stop, conns, accepted))
                .context("spawning relay thread")?
        };
        Ok(UnixTcpRelay {
            path: path.to_path_buf(),
            target,
            stop,
            conns,
            accepted,
            thread: Some(thread),
        })
    }

    /// The UNIX socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The TCP address connections are relayed to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// `socat TCP-LISTEN:<port>,bind=<ip>,reuseaddr,fork UNIX-CONNECT:<path>`: run it
    /// inside a namespace to expose the relay there as a TCP listener.
    pub fn socat_command(&self, listen: SocketAddr) -> Command {
        let mut c = Command::new("socat");
        let bind = match listen.ip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        let kind = if listen.is_ipv6() {
            "TCP6-LISTEN"
        } else {
            "TCP-LISTEN"
        };
        c.arg(format!(
            "{kind}:{},bind={bind},reuseaddr,fork",
            listen.port()
        ))
        .arg(format!("UNIX-CONNECT:{}", self.path.display()));
        c
    }

    /// Spawns [`UnixTcpRelay::socat_command`] inside `ns` and waits (up to 5 s) until it
    /// listens. The returned [`Proc`] kills socat (and with it its forked children,
    /// which the namespace guard also reaps) on drop.
    pub fn spawn_listener_in(&self, ns: &Netns, listen: SocketAddr) -> Result<Proc> {
        let mut p = ns.spawn_labeled(
            self.socat_command(listen),
            &format!("socat-{}", listen.port()),
        )?;
        let port = format!(":{}", listen.port());
        let up = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            let out = ns.exec(&["ss", "-Hltn", "sport", "=", &port]).ok()?;
            (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
        });
        if up.is_none() {
            let alive = p.is_alive();
            bail!(
                "socat in {} not listening on {listen} after 5 s (alive: {alive}): {}",
                ns.name(),
                p.stderr_tail(10)
            );
        }
        Ok(p)
    }
}

fn accept_loop(
    listener: UnixListener,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Conns,
    accepted: Arc<AtomicU64>,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(unix) = conn else { continue };
        accepted.fetch_add(1, Ordering::Relaxed);
        let tcp = match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("unix-tcp-relay: connecting {target}: {e}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (Ok(u2), Ok(t2), Ok(u3), Ok(t3)) = (
            unix.try_clone(),
            tcp.try_clone(),
            unix.try_clone(),
            tcp.try_clone(),
        ) else {
            continue;
        };
        {
            let mut c = conns.lock().expect("relay conns");
            c.push((u3, t3));
        }
        let _ = std::thread::Builder::new()
            .name("relay-up".into())
            .spawn(move || pipe(unix, tcp, |w| w.shutdown(Shutdown::Write)));
        let _ = std::thread::Builder::new()
            .name("relay-down".into())
            .spawn(move || pipe(t2, u2, |w| w.shutdown(Shutdown::Write)));
    }
}

/// Copies `from` to `to` until EOF or an error, then half-closes `to`.
fn pipe<R: Read, W: Write>(
    mut from: R,
    mut to: W,
    half_close: impl FnOnce(&W) -> std::io::Result<()>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = half_close(&to);
}

impl Drop for UnixTcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (u, t) in self
            .conns
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
        {
            let _ = u.shutdown(Shutdown::Both);
            let _ = t.shutdown(Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn relays_both_ways_and_half_closes() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let dir = crate::util::TestDir::new("relay").unwrap();
        let relay = UnixTcpRelay::start(&dir.path().join("r.sock"), addr).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(&got).unwrap();
            s.write_all(b"!").unwrap();
        });
        let mut c = UnixStream::connect(relay.path()).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        c.read_to_string(&mut back).unwrap();
        assert_eq!(back, "hello!");
        echo.join().unwrap();
        assert_eq!(relay.accepted(), 1);
        let path = relay.path().to_path_buf();
        drop(relay);
        assert!(!path.exists(), "socket file removed on drop");
    }
}
