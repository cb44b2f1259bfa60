//! `ferrolb vip`: keeps a control-plane address (the API servers' VIP)
//! alive without keepalived, in one of two modes:
//! - **bgp**: every node whose local API server is healthy announces the
//!   address as a host route to its BGP peer (the router spreads traffic
//!   over them); the address sits on `lo` so the node accepts its traffic.
//! - **layer2**: one healthy node, elected through a Kubernetes Lease on its
//!   *local* API server, holds the address on `--interface` and announces it
//!   with gratuitous ARP / unsolicited NA.
//!
//! Health is the local API server's `/readyz` with rise/fall hysteresis
//! ([`health`]); addresses are added and removed over rtnetlink ([`addr`]).
//! `ferrolb vip manifest` prints the static pod that runs it ([`manifest`]).
//!
//! Output (stdout, one line each, flushed at once): `health state=up|down`,
//! `announcing addresses=…` / `withdrawn addresses=…` (bgp), `holder
//! addresses=… interface=…` / `released addresses=…` (layer2).

pub mod addr;
mod bgp;
pub mod health;
mod layer2;
pub mod manifest;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use ferrolb_ops::metrics::{IntCounterVec, IntGauge, Metrics, Opts};
use tokio::sync::watch;

use crate::announce::PeerArgs;

const AFTER_HELP: &str = "\
Output (stdout, one line each, flushed at once):
  health state=up|down [reason=...]   after --rise good / --fall bad checks in a row
  announcing addresses=A,B            (bgp) the host routes are announced
  withdrawn addresses=A,B             (bgp) they are withdrawn (unhealthy)
  established peer=ADDR:PORT generation=G   (bgp) the BGP session is up
  holder addresses=A,B interface=IF   (layer2) this node holds the Lease and the addresses
  released addresses=A,B reason=...   (layer2) it gave them up
On SIGINT or SIGTERM: bgp closes the session (the peer withdraws the routes)
and takes the addresses off lo; layer2 removes the addresses and releases the
Lease so another node takes over at once.

Examples:
  ferrolb vip --mode bgp --address 172.17.0.100 --peer 172.17.0.1 \\
      --local-as 64522 --peer-as 64512 --source 172.17.0.11
  ferrolb vip --mode layer2 --address 172.17.0.100 --interface eth0
  ferrolb vip manifest -- --mode layer2 --address 172.17.0.100 --interface eth0";

/// `ferrolb vip`: run the agent, or `ferrolb vip manifest` to print its static pod.
#[derive(clap::Args, Debug)]
#[command(
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Print a static-pod manifest running `ferrolb vip` with the arguments after `--`.
    Manifest(manifest::Args),
}

/// How the address is kept alive.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every healthy node announces the address to its BGP peer.
    Bgp,
    /// One healthy node (the Lease holder) holds the address on --interface.
    Layer2,
}

/// The agent's flags.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// bgp or layer2.
    #[arg(long, value_enum, required = true)]
    mode: Option<Mode>,
    /// The virtual address (IPv4 or IPv6). Repeatable.
    #[arg(long = "address", value_name = "IP", required = true)]
    addresses: Vec<IpAddr>,
    /// Health endpoint of the local API server; 200 is healthy.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://127.0.0.1:6443/readyz"
    )]
    health_url: String,
    /// CA certificates (PEM) to verify --health-url's server with; without
    /// it the certificate is not verified.
    #[arg(long, value_name = "FILE")]
    health_ca: Option<PathBuf>,
    /// Milliseconds between health checks.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..))]
    health_interval: u64,
    /// Milliseconds a check may take (at most --health-interval is used).
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    health_timeout: u64,
    /// Good checks in a row that make an unhealthy node healthy.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    rise: u32,
    /// Failed checks in a row that make a healthy node unhealthy.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    fall: u32,
    /// Serve /metrics, /healthz, /readyz here (off unless given).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_addr: Option<SocketAddr>,
    /// (bgp) Do not put the addresses on lo (the node already accepts their traffic).
    #[arg(long)]
    no_local_address: bool,
    /// (bgp) The BGP session and route attributes, as `ferrolb announce` takes them.
    #[command(flatten)]
    peer: PeerArgs,
    /// (layer2) The interface that gets the addresses.
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// (layer2) Kubeconfig of the node's own API server (never the VIP).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/kubernetes/admin.conf"
    )]
    kubeconfig: PathBuf,
    /// (layer2) Talk to this API server instead of the kubeconfig's (whose
    /// server is the VIP itself in kubeadm's admin.conf): the node's own,
    /// e.g. https://127.0.0.1:6443 or https://NODE-IP:6443.
    #[arg(long, value_name = "URL")]
    api_server: Option<String>,
    /// (layer2) Verify the API server's certificate for this name instead
    /// of the URL's host (kubeadm's serving certificate has `kubernetes`,
    /// not 127.0.0.1).
    #[arg(long, value_name = "NAME")]
    api_server_tls_name: Option<String>,
    /// (layer2) Name of the Lease the holder is elected with.
    #[arg(long, value_name = "NAME", default_value = "ferrolb-vip")]
    lease_name: String,
    /// (layer2) Namespace of the Lease.
    #[arg(long, value_name = "NS", default_value = "kube-system")]
    lease_namespace: String,
    /// (layer2) Holder identity; default the hostname.
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// (layer2) Lease duration in seconds: how long others wait after the
    /// holder's last renewal before taking over (the failover bound).
    #[arg(long, value_name = "S", default_value_t = 4)]
    lease_duration: u64,
    /// (layer2) The holder gives up when no renewal succeeded for this many ms.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    renew_deadline: u64,
    /// (layer2) Milliseconds between renewals and between attempts to acquire.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    retry_period: u64,
}

/// Runs `ferrolb vip` (or prints the manifest).
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(Sub::Manifest(m)) = args.cmd {
        return manifest::run(m);
    }
    let run = args.run;
    let usage = |msg: String| {
        eprintln!("error: {msg}\n\nFor more information, try '--help'.");
        Ok(ExitCode::from(2))
    };
    let Some(mode) = run.mode else {
        return usage("--mode is required".into());
    };
    if run.addresses.is_empty() {
        return usage("--address is required".into());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match mode {
        Mode::Bgp => {
            let peer = run.peer.clone();
            let prefixes = run.addresses.iter().map(|a| ipnet::IpNet::from(*a));
            let (cfg, routes) = match peer.plan(prefixes) {
                Ok(x) => x,
                Err(e) => return usage(format!("{e:#}")),
            };
            rt.block_on(bgp::run(&run, cfg, routes))?;
        }
        Mode::Layer2 => {
            let Some(interface) = run.interface.clone() else {
                return usage("--mode layer2 needs --interface".into());
            };
            let timing = ferrolb_ops::lease::Timing {
                lease_duration: Duration::from_secs(run.lease_duration),
                renew_deadline: Duration::from_millis(run.renew_deadline),
                retry_period: Duration::from_millis(run.retry_period),
            };
            if let Err(e) = timing.validate() {
                return usage(format!("{e}"));
            }
            rt.block_on(layer2::run(&run, interface, timing))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Print one line on stdout and flush it at once.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The addresses as `A,B`.
fn list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The agent's metrics.
#[derive(Clone)]
struct Gauges {
    healthy: IntGauge,
    active: IntGauge,
    transitions: IntCounterVec,
}

impl Gauges {
    /// Registers the families; `active_help` says what "active" means in this mode.
    fn new(metrics: &Metrics, active_name: &str, active_help: &str) -> Result<Self> {
        let healthy = IntGauge::new(
            "ferrolb_vip_healthy",
            "1 while the local API server is healthy (after rise/fall hysteresis)",
        )?;
        let active = IntGauge::new(active_name, active_help)?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "ferrolb_vip_transitions_total",
                "State changes: health_up, health_down, active, inactive",
            ),
            &["transition"],
        )?;
        let r = metrics.registry();
        r.register(Box::new(healthy.clone()))?;
        r.register(Box::new(active.clone()))?;
        r.register(Box::new(transitions.clone()))?;
        Ok(Gauges {
            healthy,
            active,
            transitions,
        })
    }

    fn set_active(&self, on: bool) {
        self.active.set(i64::from(on));
        self.transitions
            .with_label_values(&[if on { "active" } else { "inactive" }])
            .inc();
    }
}

/// Serves the metrics when `--metrics-addr` is given.
async fn serve_metrics(
    run: &RunArgs,
    metrics: Metrics,
) -> Result<Option<ferrolb_ops::http::Server>> {
    let Some(addr) = run.metrics_addr else {
        return Ok(None);
    };
    let probe = ferrolb_ops::FnProbe::new(metrics, || Ok(()));
    Ok(Some(ferrolb_ops::serve(addr, probe).await?))
}

/// Spawns the health loop: one check every interval, fed through the
/// hysteresis; the receiver sees `true` while healthy.
fn spawn_health(run: &RunArgs, gauges: Gauges) -> Result<watch::Receiver<bool>> {
    let interval = Duration::from_millis(run.health_interval);
    let timeout = Duration::from_millis(run.health_timeout).min(interval);
    let checker = health::Checker::new(&run.health_url, run.health_ca.as_deref(), timeout)?;
    let mut hyst = health::Hysteresis::new(run.rise, run.fall);
    let (tx, rx) = watch::channel(false);
    let url = run.health_url.clone();
    tracing::info!(%url, interval_ms = run.health_interval, timeout_ms = timeout.as_millis() as u64,
        rise = run.rise, fall = run.fall, "health checks");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_err: Option<String> = None;
        loop {
            tick.tick().await;
            let result = checker.check().await;
            if let Err(e) = &result
                && last_err.as_ref() != Some(e)
            {
                tracing::debug!(%url, error = %e, "health check failed");
            }
            last_err = result.as_ref().err().cloned();
            match hyst.observe(result.is_ok()) {
                Some(health::Transition::Up) => {
                    tracing::info!(%url, "healthy");
                    say(format_args!("health state=up"));
                    gauges.healthy.set(1);
                    gauges.transitions.with_label_values(&["health_up"]).inc();
                    let _ = tx.send(true);
                }
                Some(health::Transition::Down) => {
                    let why = last_err.clone().unwrap_or_default();
                    tracing::warn!(%url, reason = %why, "unhealthy");
                    say(format_args!("health state=down reason={why:?}"));
                    gauges.healthy.set(0);
                    gauges.transitions.with_label_values(&["health_down"]).inc();
                    let _ = tx.send(false);
                }
                None => {}
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("vip").chain(args.iter().copied()))
            .map(|c| c.a)
    }

    #[test]
    fn flags() {
        let a = parse(&[
            "--mode",
            "bgp",
            "--address",
            "172.17.0.100",
            "--peer",
            "172.17.0.1",
            "--local-as",
            "64522",
            "--peer-as",
            "64512",
            "--router-id",
            "172.17.0.11",
        ])
        .unwrap();
        assert_eq!(a.run.mode, Some(Mode::Bgp));
        assert_eq!(a.run.health_interval, 1000);
        assert_eq!((a.run.rise, a.run.fall), (2, 3));
        let (cfg, routes) = a
            .run
            .peer
            .clone()
            .plan(a.run.addresses.iter().map(|x| ipnet::IpNet::from(*x)))
            .unwrap();
        assert_eq!(cfg.peer_as, 64512);
        assert!(routes.contains_key(&"172.17.0.100/32".parse().unwrap()));
        // layer2 needs no peer flags.
        let a = parse(&[
            "--mode",
            "layer2",
            "--address",
            "172.17.0.100",
            "--interface",
            "eth0",
        ])
        .unwrap();
        assert!(a.run.peer.clone().plan(std::iter::empty()).is_err());
        assert_eq!(a.run.lease_namespace, "kube-system");
        // --mode and --address are required without a subcommand.
        assert!(parse(&["--address", "172.17.0.100"]).is_err());
        assert!(parse(&["--mode", "bgp"]).is_err());
        // ... and not with one.
        assert!(parse(&["manifest", "--", "--mode", "layer2"]).is_ok());
        assert!(parse(&["--rise", "0", "--mode", "bgp", "--address", "10.0.0.1"]).is_err());
    }
}
