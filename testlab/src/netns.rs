//! Network namespaces, veth pairs and bridged LANs. Addresses are only ever added inside
//! namespaces created here; nothing touches the root namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proc::Proc;
use crate::util::TestDir;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh short id `<pid % 100000>x<n>`: unique per process, fits interface names.
fn next_id() -> String {
    format!(
        "{}x{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `ip <args>` in the root namespace context (only for namespace/link management
/// that names a namespace), failing with its stderr.
fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace named `flb-<pid>x<n>` with `lo` up and a log directory.
///
/// On drop every process still inside it (`ip netns pids`) is killed by PID (SIGTERM,
/// then SIGKILL) and the namespace is deleted, which also removes its veths.
/// Declare it *before* the [`Proc`]s and daemons that run in it, so they drop first.
#[derive(Debug)]
pub struct Netns {
    name: String,
    dir: TestDir,
    spawned: AtomicU32,
}

impl Netns {
    /// Creates the namespace and brings `lo` up. The first call in a process also reaps
    /// namespaces left by test processes that were killed before their guards could run
    /// (see [`reap_stale_netns`]).
    pub fn new() -> Result<Netns> {
        static REAPED: std::sync::Once = std::sync::Once::new();
        REAPED.call_once(reap_stale_netns);
        let name = format!("flb-{}", next_id());
        ip(&["netns", "add", &name])?;
        let dir = match TestDir::new(&name) {
            Ok(d) => d,
            Err(e) => {
                let _ = ip(&["netns", "del", &name]);
                return Err(e);
            }
        };
        let ns = Netns {
            name,
            dir,
            spawned: AtomicU32::new(0),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The per-namespace temp directory (process output, daemon configs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ip -n NAME <args>`, failing with ip's stderr.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        ip(&v)
    }

    /// Adds an address (`198.18.0.1/24`, `2001:db8:ff::1/64`; IPv6 gets `nodad`) to
    /// an interface of this namespace and brings the interface up.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", ifname, "nodad"])?;
        } else {
            self.ip(&["addr", "add", cidr, "dev", ifname])?;
        }
        self.ip(&["link", "set", ifname, "up"])?;
        Ok(())
    }

    /// A tokio runtime (two workers, all drivers enabled) whose threads all run inside
    /// this namespace (each worker and blocking thread `setns`es into it when it starts).
    /// Sockets opened by tasks spawned on it (`rt.spawn`) live in the namespace; code in
    /// `rt.block_on(…)` itself runs on the calling thread, in the root namespace, so
    /// open sockets inside a spawned task. Drop it before the namespace.
    pub fn tokio_runtime(&self) -> Result<tokio::runtime::Runtime> {
        let path = PathBuf::from("/run/netns").join(&self.name);
        let f = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        let f = std::sync::Arc::new(f);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                if let Err(e) = nix::sched::setns(&*f, nix::sched::CloneFlags::CLONE_NEWNET) {
                    panic!("setns into {}: {e}", path.display());
                }
            })
            .build()
            .context("tokio runtime")
    }

    /// A `Command` that runs `program` inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `argv` inside the namespace to completion and returns its output (any exit code).
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        let (prog, args) = argv.split_first().context("empty argv")?;
        self.command(prog)
            .args(args)
            .output()
            .with_context(|| format!("ip netns exec {} {}", self.name, argv.join(" ")))
    }

    /// Like [`Netns::exec`] but fails on a non-zero exit and returns stdout.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let out = self.exec(argv)?;
        if !out.status.success() {
            bail!(
                "in {}: {} exited {}: {}{}",
                self.name,
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Spawns `cmd` (program, args, env and cwd are kept) inside the namespace via
    /// `ip netns exec`, output captured in [`Netns::dir`] as `<program>-<n>.stdout/.stderr`.
    pub fn spawn(&self, cmd: Command) -> Result<Proc> {
        let prog = Path::new(cmd.get_program())
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "proc".into());
        let label = format!("{prog}-{}", self.spawned.fetch_add(1, Ordering::Relaxed));
        self.spawn_labeled(cmd, &label)
    }

    /// [`Netns::spawn`] with an explicit label for the output files.
    pub fn spawn_labeled(&self, cmd: Command, label: &str) -> Result<Proc> {
        let mut c = self.command(cmd.get_program());
        c.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        Proc::spawn(c, self.dir(), label)
    }

    /// PIDs of all processes in the namespace.
    pub fn pids(&self) -> Vec<u32> {
        ip(&["netns", "pids", &self.name])
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kills every process in the namespace (TERM, up to 2 s, then KILL).
    pub fn kill_all(&self) {
        let pids = self.pids();
        if pids.is_empty() {
            return;
        }
        for p in &pids {
            let _ = Command::new("kill")
                .args(["-TERM", &p.to_string()])
                .output();
        }
        let gone =
            crate::util::wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
                self.pids().is_empty().then_some(())
            });
        if gone.is_none() {
            for p in self.pids() {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .output();
            }
            let _ =
                crate::util::wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
                    self.pids().is_empty().then_some(())
                });
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("ferrolb-testlab: {e}");
        }
    }
}

/// Creates a veth pair with end `a_if` in `a` and `b_if` in `b`, both up. The ends are
/// created directly inside the namespaces (never in the root namespace) and vanish with
/// them. Add addresses with [`Netns::add_addr`] or use [`veth_with_addrs`].
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    ip(&[
        "link",
        "add",
        "name",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// [`veth`] plus addresses on each end (e.g. `&["198.18.0.1/24", "2001:db8:ff::1/64"]`).
pub fn veth_with_addrs(
    a: &Netns,
    a_if: &str,
    a_addrs: &[&str],
    b: &Netns,
    b_if: &str,
    b_addrs: &[&str],
) -> Result<()> {
    veth(a, a_if, b, b_if)?;
    for c in a_addrs {
        a.add_addr(a_if, c)?;
    }
    for c in b_addrs {
        b.add_addr(b_if, c)?;
    }
    Ok(())
}

/// Two namespaces joined by one veth (`eth0` on both sides): the usual interop setup.
#[derive(Debug)]
pub struct Pair {
    /// Left host (e.g. the ferrolb speaker).
    pub a: Netns,
    /// Right host (e.g. the peer router).
    pub b: Netns,
}

impl Pair {
    /// Creates both namespaces and `eth0`↔`eth0` with the given addresses.
    pub fn new(a_addrs: &[&str], b_addrs: &[&str]) -> Result<Pair> {
        let a = Netns::new()?;
        let b = Netns::new()?;
        veth_with_addrs(&a, "eth0", a_addrs, &b, "eth0", b_addrs)?;
        Ok(Pair { a, b })
    }
}

/// An Ethernet LAN: a namespace holding bridge `br0`, to which hosts attach with veths.
/// Dropping it deletes the switch namespace and with it every port veth.
#[derive(Debug)]
pub struct Lan {
    switch: Netns,
    ports: AtomicU32,
}

impl Lan {
    /// Creates the switch namespace and its bridge (STP off, forwarding at once).
    pub fn new() -> Result<Lan> {
        let switch = Netns::new()?;
        switch.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        Ok(Lan {
            switch,
            ports: AtomicU32::new(0),
        })
    }

    /// The switch namespace (e.g. to run tcpdump on `br0`).
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// Attaches `host` to the LAN with interface `ifname` and the given addresses.
    pub fn attach(&self, host: &Netns, ifname: &str, addrs: &[&str]) -> Result<()> {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        veth(host, ifname, &self.switch, &port)?;
        self.switch.ip(&["link", "set", &port, "master", "br0"])?;
        for a in addrs {
            host.add_addr(ifname, a)?;
        }
        Ok(())
    }
}

/// The reference lab of DESIGN.md as namespaces: cluster LAN 172.17.0.0/24
/// (rt-01 .1 on `eth2`, k8s-master-01 .10, k8s-node-01..03 .21–.23 on `eth0`) and client
/// LAN 172.17.1.0/24 (rt-01 .1 on `eth1`, client-01 .10 on `eth0`, default route via .1).
/// rt-01 forwards IPv4. Routing daemons are started by the caller.
#[derive(Debug)]
pub struct RefLab {
    /// Router namespace.
    pub rt01: Netns,
    /// Client namespace.
    pub client01: Netns,
    /// Control-plane node.
    pub master01: Netns,
    /// Worker nodes k8s-node-01, -02, -03.
    pub nodes: Vec<Netns>,
    /// 172.17.0.0/24.
    pub cluster_lan: Lan,
    /// 172.17.1.0/24.
    pub client_lan: Lan,
}

impl RefLab {
    /// Node addresses in order (k8s-node-01..03).
    pub const NODE_ADDRS: [&'static str; 3] = ["172.17.0.21", "172.17.0.22", "172.17.0.23"];

    /// Builds the topology (~0.2–1 s).
    pub fn new() -> Result<RefLab> {
        let cluster_lan = Lan::new()?;
        let client_lan = Lan::new()?;
        let rt01 = Netns::new()?;
        let client01 = Netns::new()?;
        let master01 = Netns::new()?;
        let nodes = (0..3).map(|_| Netns::new()).collect::<Result<Vec<_>>>()?;
        cluster_lan.attach(&rt01, "eth2", &["172.17.0.1/24"])?;
        client_lan.attach(&rt01, "eth1", &["172.17.1.1/24"])?;
        rt01.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        client_lan.attach(&client01, "eth0", &["172.17.1.10/24"])?;
        client01.ip(&["route", "add", "default", "via", "172.17.1.1"])?;
        cluster_lan.attach(&master01, "eth0", &["172.17.0.10/24"])?;
        master01.ip(&["route", "add", "default", "via", "172.17.0.1"])?;
        for (ns, a) in nodes.iter().zip(Self::NODE_ADDRS) {
            cluster_lan.attach(ns, "eth0", &[&format!("{a}/24")])?;
            ns.ip(&["route", "add", "default", "via", "172.17.0.1"])?;
        }
        Ok(RefLab {
            rt01,
            client01,
            master01,
            nodes,
            cluster_lan,
            client_lan,
        })
    }

    /// Every namespace name of the lab (for cleanup checks).
    pub fn netns_names(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            &self.rt01,
            &self.client01,
            &self.master01,
            self.cluster_lan.switch(),
            self.client_lan.switch(),
        ]
        .iter()
        .map(|n| n.name().to_string())
        .collect();
        v.extend(self.nodes.iter().map(|n| n.name().to_string()));
        v
    }
}

/// Deletes namespaces named `flb-<pid>x<n>` (only this crate makes such names) whose
/// creating process `<pid>` no longer exists — left behind when a test process was
/// killed (SIGKILL, SIGPIPE) and no Drop ran. Processes still inside are killed by PID
/// first. Namespaces of live processes are never touched.
pub fn reap_stale_netns() {
    for name in list_netns() {
        let Some(rest) = name.strip_prefix("flb-") else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('x') else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<u32>(), n.chars().all(|c| c.is_ascii_digit())) else {
            continue;
        };
        if pid_alive(pid) || pid % 100_000 != pid {
            continue;
        }
        // The name keeps pid % 100000: a live process with a larger pid of the same
        // residue may own it; only reap when no such process is visible either.
        let owner_alive = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    .is_some_and(|p| p % 100_000 == pid && pid_alive(p))
            });
        if owner_alive {
            continue;
        }
        if let Ok(pids) = ip(&["netns", "pids", &name]) {
            for p in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", p]).output();
            }
        }
        match ip(&["netns", "del", &name]) {
            Ok(_) => eprintln!("ferrolb-testlab: removed stale namespace {name}"),
            Err(e) => eprintln!("ferrolb-testlab: {e}"),
        }
    }
}

/// Names from `ip netns list`.
pub fn list_netns() -> Vec<String> {
    ip(&["netns", "list"])
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a process with this PID exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// Path of a file in a namespace's dir (convenience for configs).
pub fn ns_file(ns: &Netns, name: &str) -> PathBuf {
    ns.dir().join(name)
}
