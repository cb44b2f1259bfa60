//! `ferrolb announce`: announce prefixes to one BGP peer until SIGINT/SIGTERM.
//!
//! A thin shell over ferrolb-bgp: parse and check the arguments into a
//! [`PeerConfig`] and a route set, start one session, print two machine-read
//! lines on stdout, and stop with a Cease on a signal.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ferrolb_bgp::adj_out::{RouteAttrs, Routes};
use ferrolb_bgp::bfd::BfdEndpoint;
use ferrolb_bgp::driver::{self, PeerBfd, PeerConfig};
use ferrolb_bgp::fsm::{DynamicAs, GracefulRestartConfig, State};
use ferrolb_bgp::wire::{Family, LargeCommunity, Origin};
use ferrolb_ops::restart_marker::RestartMarker;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

const AFTER_HELP: &str = "\
Output (stdout, one line each, flushed at once; programs wait for them):
  established peer=ADDR:PORT local_as=N peer_as=N generation=G
      when the session reaches Established (again after every re-establishment,
      with G counting establishments from 1); peer_as is the AS the peer's OPEN
      carried (with --dynamic-peer-as, the one it chose)
  initial-routes-sent prefixes=N updates=M elapsed_ms=T generation=G
      when every initial route of that session is on the wire (N prefixes
      announced in M UPDATE messages, T ms after Established)
Logs go to stderr (--log-level or RUST_LOG filters them, default info).
With --bfd a BFD session runs with the peer (single hop, UDP 3784, TTL 255);
when it fails while the BGP session is Established, the BGP session is closed
at once with Cease / BFD Down (6/10) and reconnects after --connect-retry.
On SIGINT or SIGTERM the session is closed with a Cease NOTIFICATION
(6/2, Administrative Shutdown, with a message) and the program exits 0.
With --graceful-restart (RFC 4724, with RFC 8538's N bit) the OPEN carries
the capability (restart time, the announced families with the Forwarding bit,
N), End-of-RIB follows the complete table, and SIGINT/SIGTERM end the session
so that the peer keeps the routes as stale until the next run is back and has
sent End-of-RIB (routes it no longer announces then disappear): Cease 6/2 when
the peer set the N bit too, else a TCP close without NOTIFICATION. With
--hard-reset they end it with Cease / Hard Reset (6/9 carrying 6/2) when N was
negotiated (a plain 6/2 otherwise), so the peer drops the routes at once.
--state-dir keeps a restart marker there: a run that finds one (the last run
was killed or kept its routes) sets the R bit; ending with --hard-reset
removes it. Without --state-dir the R bit is never set.
Arguments that cannot work together (a --next-hop missing for one of the
announced families, --ebgp-multihop 0, ...) exit 2 before connecting.

Examples:
  ferrolb announce --peer 198.18.0.1 --source 198.18.0.2 --local-as 64522 \\
      --peer-as 64512 --prefix 172.17.254.1/32 --community 64512:1 --community no-export
  ferrolb announce --peer 198.18.0.1 --source 198.18.0.2 --local-as 64522 \\
      --peer-as 64512 --count 100000 --first 10.0.0.0";

/// Arguments of `ferrolb announce`.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The session and route-attribute flags (shared with `ferrolb vip --mode bgp`).
    #[command(flatten)]
    pub peer: PeerArgs,
    /// A prefix to announce (a bare address is a host route). Repeatable.
    #[arg(long = "prefix", value_name = "P", value_parser = parse_prefix,
          required_unless_present = "count", conflicts_with_all = ["count", "first"])]
    prefixes: Vec<IpNet>,
    /// Announce this many consecutive host routes (/32 or /128) starting at --first.
    #[arg(long, value_name = "N", requires = "first")]
    count: Option<u64>,
    /// First address of --count.
    #[arg(long, value_name = "IP", requires = "count")]
    first: Option<IpAddr>,
    /// On SIGINT/SIGTERM end with Cease / Hard Reset so the peer drops the
    /// routes at once (with --graceful-restart; without it, the Cease does).
    #[arg(long, requires = "graceful_restart")]
    hard_reset: bool,
    /// Directory of the restart marker (with --graceful-restart): a run that
    /// finds the marker of an earlier one sets the Restart (R) bit.
    #[arg(long, value_name = "DIR", requires = "graceful_restart")]
    state_dir: Option<std::path::PathBuf>,
}

/// How `ferrolb announce` ends on a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Cease 6/2 (a Hard Reset when N was negotiated): the peer drops the routes.
    Withdraw,
    /// The peer keeps the routes as stale (graceful restart).
    KeepRoutes,
}

/// What `plan` adds besides the session: how to end, and the marker directory.
#[derive(Debug)]
struct Lifecycle {
    ending: Ending,
    state_dir: Option<std::path::PathBuf>,
}

/// The BGP session flags and route attributes of one peer, flattened into
/// `ferrolb announce` and `ferrolb vip --mode bgp`.
#[derive(clap::Args, Debug, Clone)]
pub struct PeerArgs {
    /// Peer address, with an optional port: 198.18.0.1, 198.18.0.1:1790,
    /// [2001:db8::1]:179 (required).
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_peer)]
    peer: Option<SocketAddr>,
    /// Our AS number, 1..=4294967295 (required).
    #[arg(long, value_name = "N", value_parser = parse_asn)]
    local_as: Option<u32>,
    /// The peer's AS number; equal to --local-as for iBGP (required unless
    /// --dynamic-peer-as).
    #[arg(long, value_name = "N", value_parser = parse_asn, conflicts_with = "dynamic_peer_as")]
    peer_as: Option<u32>,
    /// Accept the peer's AS from its OPEN instead of --peer-as: `internal`
    /// (it must equal --local-as) or `external` (it must differ); otherwise
    /// the OPEN is refused with 2/2 Bad Peer AS (MetalLB's dynamicASN).
    #[arg(long, value_name = "KIND", value_parser = parse_dynamic)]
    dynamic_peer_as: Option<DynamicAs>,
    /// BGP identifier; defaults to --source when that is IPv4.
    #[arg(long, value_name = "IPV4")]
    router_id: Option<Ipv4Addr>,
    /// Local address to connect from (and the default next hop of its family).
    #[arg(long, value_name = "IP")]
    source: Option<IpAddr>,
    /// Next hop for the routes of its family, at most one IPv4 and one IPv6;
    /// when given, every announced family needs its own. Default: the
    /// session's local address of the route's family.
    #[arg(long = "next-hop", value_name = "IP")]
    next_hops: Vec<IpAddr>,
    /// Hold time in seconds: 0 or 3..=65535.
    #[arg(long, value_name = "S", default_value_t = 90, value_parser = parse_hold_time)]
    hold_time: u16,
    /// Keepalive interval in seconds; default hold time / 3.
    #[arg(long, value_name = "S")]
    keepalive: Option<u16>,
    /// TCP MD5 signature password (RFC 2385).
    #[arg(long, value_name = "P", hide_env_values = true)]
    password: Option<String>,
    /// Allow the peer this many hops away (eBGP TTL, 1..=255); default 1 for eBGP.
    #[arg(long, value_name = "TTL", value_parser = clap::value_parser!(u8).range(1..))]
    ebgp_multihop: Option<u8>,
    /// Seconds between connection attempts.
    #[arg(long, value_name = "S", default_value_t = 5)]
    connect_retry: u64,
    /// Never connect; wait for the peer to connect (needs --listen).
    #[arg(long)]
    passive: bool,
    /// Also accept the peer's connection on --listen-port (bound to --source when given).
    #[arg(long)]
    listen: bool,
    /// Port to accept on with --listen.
    #[arg(long, value_name = "PORT", default_value_t = 179)]
    listen_port: u16,
    /// Community A:B (16 bits each) or a well-known name: no-export, no-advertise,
    /// no-export-subconfed, no-peer. Repeatable.
    #[arg(long = "community", value_name = "A:B", value_parser = parse_community)]
    communities: Vec<u32>,
    /// Large community A:B:C (32 bits each). Repeatable.
    #[arg(long = "large-community", value_name = "A:B:C", value_parser = parse_large_community)]
    large_communities: Vec<LargeCommunity>,
    /// LOCAL_PREF (sent on iBGP only; 100 there when not given).
    #[arg(long, value_name = "N")]
    local_pref: Option<u32>,
    /// MULTI_EXIT_DISC.
    #[arg(long, value_name = "N")]
    med: Option<u32>,
    /// ORIGIN: igp, egp or incomplete.
    #[arg(long, value_name = "ORIGIN", default_value = "incomplete", value_parser = parse_origin)]
    origin: Origin,
    /// Run a BFD session with the peer (RFC 5880/5881, single hop); its failure
    /// closes the BGP session at once with Cease / BFD Down (6/10).
    #[arg(long)]
    bfd: bool,
    /// BFD Required Min RX interval in milliseconds (with --bfd).
    #[arg(long, value_name = "MS", default_value_t = 300, requires = "bfd",
          value_parser = parse_bfd_interval)]
    bfd_rx_interval: u32,
    /// BFD Desired Min TX interval in milliseconds (with --bfd).
    #[arg(long, value_name = "MS", default_value_t = 300, requires = "bfd",
          value_parser = parse_bfd_interval)]
    bfd_tx_interval: u32,
    /// BFD detect multiplier (with --bfd).
    #[arg(long, value_name = "N", default_value_t = 3, requires = "bfd",
          value_parser = parse_bfd_multiplier)]
    bfd_detect_multiplier: u8,
    /// Passive BFD: wait for the peer's first BFD packet (with --bfd).
    #[arg(long, requires = "bfd")]
    bfd_passive: bool,
    /// Close the session with Cease / Maximum Number of Prefixes Reached
    /// (6/1) when the peer announces more than N prefixes (announced minus
    /// withdrawn, counted without storing them); it reconnects after
    /// --connect-retry.
    #[arg(long, value_name = "N")]
    max_prefix: Option<u32>,
    /// Send hold time in seconds (RFC 9687): a peer that takes nothing we
    /// write for this long is dropped with NOTIFICATION 8 (Send Hold Timer
    /// Expired). Default: the larger of 480 and twice --hold-time.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    send_hold_time: Option<u64>,
    /// Graceful restart (RFC 4724 with RFC 8538): the peer keeps our routes
    /// as stale while we restart (see below).
    #[arg(long)]
    graceful_restart: bool,
    /// Restart time in seconds (with --graceful-restart): how long the peer
    /// keeps our routes before we are back.
    #[arg(long, value_name = "S", default_value_t = 120, requires = "graceful_restart",
          value_parser = clap::value_parser!(u16).range(1..=4095))]
    restart_time: u16,
    /// Offer the Extended Message capability (RFC 8654): with a peer that
    /// offers it too, UPDATEs of up to 65535 bytes instead of 4096.
    #[arg(long)]
    extended_message: bool,
}

fn parse_peer(s: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = SocketAddr::from_str(s) {
        return Ok(sa);
    }
    IpAddr::from_str(s)
        .map(|ip| SocketAddr::new(ip, 179))
        .map_err(|_| {
            format!(
                "`{s}` is not ADDR or ADDR:PORT (IPv6 with a port needs brackets: [2001:db8::1]:179)"
            )
        })
}

fn parse_dynamic(s: &str) -> Result<DynamicAs, String> {
    match s {
        "internal" => Ok(DynamicAs::Internal),
        "external" => Ok(DynamicAs::External),
        _ => Err(format!("`{s}` is neither internal nor external")),
    }
}

fn parse_asn(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("AS 0 is reserved (RFC 7607)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not an AS number (1..=4294967295)")),
    }
}

fn parse_hold_time(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(n) if n == 0 || n >= 3 => Ok(n),
        Ok(n) => Err(format!(
            "hold time {n} is not allowed: 0 or at least 3 seconds (RFC 4271)"
        )),
        Err(_) => Err(format!("`{s}` is not a number of seconds (0 or 3..=65535)")),
    }
}

/// BFD intervals: 10..=60000 ms (MetalLB's profile range for the intervals).
fn parse_bfd_interval(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (10..=60_000).contains(&n) => Ok(n),
        Ok(n) => Err(format!("BFD interval {n} ms is out of range 10..=60000")),
        Err(_) => Err(format!(
            "`{s}` is not a number of milliseconds (10..=60000)"
        )),
    }
}

/// BFD detect multiplier: 2..=255 (MetalLB's profile range).
fn parse_bfd_multiplier(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(format!("`{s}` is not a BFD detect multiplier (2..=255)")),
    }
}

/// Well-known communities (RFC 1997, RFC 3765).
const WELL_KNOWN: [(&str, u32); 4] = [
    ("no-export", 0xFFFF_FF01),
    ("no-advertise", 0xFFFF_FF02),
    ("no-export-subconfed", 0xFFFF_FF03),
    ("no-peer", 0xFFFF_FF04),
];

fn parse_community(s: &str) -> Result<u32, String> {
    if let Some((_, v)) = WELL_KNOWN.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Ok(*v);
    }
    let bad = || {
        format!(
            "`{s}` is not a community: use A:B with A and B in 0..=65535, or one of \
             no-export, no-advertise, no-export-subconfed, no-peer"
        )
    };
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    Ok(u32::from(a) << 16 | u32::from(b))
}

fn parse_large_community(s: &str) -> Result<LargeCommunity, String> {
    let bad = || format!("`{s}` is not a large community: use A:B:C, each in 0..=4294967295");
    let parts: Vec<&str> = s.split(':').collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(bad());
    };
    Ok(LargeCommunity {
        global_admin: a.parse().map_err(|_| bad())?,
        local1: b.parse().map_err(|_| bad())?,
        local2: c.parse().map_err(|_| bad())?,
    })
}

fn parse_origin(s: &str) -> Result<Origin, String> {
    match s.to_ascii_lowercase().as_str() {
        "igp" | "i" => Ok(Origin::Igp),
        "egp" | "e" => Ok(Origin::Egp),
        "incomplete" | "?" => Ok(Origin::Incomplete),
        _ => Err(format!("`{s}` is not an origin: igp, egp or incomplete")),
    }
}

fn parse_prefix(s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = IpAddr::from_str(s) {
        return Ok(IpNet::from(ip));
    }
    let net = IpNet::from_str(s)
        .map_err(|_| format!("`{s}` is not a prefix (10.0.0.0/24, 2001:db8::/64 or an address)"))?;
    if net.trunc() != net {
        return Err(format!(
            "prefix {s} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// `count` consecutive host routes from `first`, produced lazily (no copy of a
/// million prefixes besides the route map itself).
fn host_routes(first: IpAddr, count: u64) -> Result<Box<dyn Iterator<Item = IpNet>>> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    Ok(match first {
        IpAddr::V4(a) => {
            let start = u32::from(a);
            let last = u64::from(start) + count - 1;
            if last > u64::from(u32::MAX) {
                bail!("--first {a} --count {count} runs past 255.255.255.255");
            }
            let last = u32::try_from(last).expect("checked above");
            Box::new(
                (start..=last)
                    .map(|n| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(n), 32).expect("/32 is valid"))),
            )
        }
        IpAddr::V6(a) => {
            let start = u128::from(a);
            let last = start
                .checked_add(u128::from(count) - 1)
                .ok_or_else(|| anyhow!("--first {a} --count {count} runs past the end of IPv6"))?;
            Box::new((start..=last).map(|n| {
                IpNet::V6(Ipv6Net::new(std::net::Ipv6Addr::from(n), 128).expect("/128 is valid"))
            }))
        }
    })
}

/// Check the arguments and build the session config and the route set.
#[cfg(test)]
fn plan(args: Args) -> Result<(PeerConfig, Routes)> {
    plan_lifecycle(args).map(|(c, r, _)| (c, r))
}

/// [`plan`], with how the run ends.
fn plan_lifecycle(args: Args) -> Result<(PeerConfig, Routes, Lifecycle)> {
    let prefixes: Box<dyn Iterator<Item = IpNet>> = match (args.count, args.first) {
        (Some(n), Some(first)) => host_routes(first, n)?,
        _ => Box::new(args.prefixes.into_iter()),
    };
    let life = Lifecycle {
        ending: if args.peer.graceful_restart && !args.hard_reset {
            Ending::KeepRoutes
        } else {
            Ending::Withdraw
        },
        state_dir: args.state_dir,
    };
    let (cfg, routes) = args.peer.plan(prefixes)?;
    Ok((cfg, routes, life))
}

impl PeerArgs {
    /// Whether --peer and --local-as are given.
    pub fn has_session(&self) -> bool {
        self.peer.is_some() && self.local_as.is_some()
    }

    /// Whether the peer's connection is accepted on a privileged port.
    pub fn listens_below_1024(&self) -> bool {
        self.listen && self.listen_port < 1024
    }

    /// Checks the flags and builds the session config and the route set of
    /// `prefixes` (every announced family is negotiated).
    pub fn plan(self, prefixes: impl Iterator<Item = IpNet>) -> Result<(PeerConfig, Routes)> {
        let args = self;
        // Required, but checked here rather than by clap: `ferrolb vip` flattens
        // these flags too and needs them only with --mode bgp.
        let (Some(peer), Some(local_as)) = (args.peer, args.local_as) else {
            bail!("--peer and --local-as are required");
        };
        if args.peer_as.is_none() && args.dynamic_peer_as.is_none() {
            bail!("--peer-as (or --dynamic-peer-as) is required");
        }
        let router_id = match (args.router_id, args.source) {
            (Some(id), _) => id,
            (None, Some(IpAddr::V4(src))) => src,
            (None, Some(IpAddr::V6(_))) | (None, None) => {
                bail!(
                    "give --router-id (an IPv4 address): it defaults to --source only when that is IPv4"
                )
            }
        };
        if let Some(src) = args.source
            && src.is_ipv4() != peer.is_ipv4()
        {
            bail!(
                "--source {src} and --peer {} are of different address families",
                peer
            );
        }
        if args.passive && !args.listen {
            bail!("--passive never connects: add --listen so the peer can connect to us");
        }
        if let Some(k) = args.keepalive
            && args.hold_time != 0
            && k >= args.hold_time
        {
            bail!(
                "--keepalive {k} must be shorter than --hold-time {}",
                args.hold_time
            );
        }
        let (mut nh_v4, mut nh_v6) = (None, None);
        for nh in &args.next_hops {
            let slot = if nh.is_ipv4() { &mut nh_v4 } else { &mut nh_v6 };
            if let Some(old) = slot.replace(*nh) {
                bail!("--next-hop {old} and --next-hop {nh}: give at most one per address family");
            }
        }
        let attrs = |next_hop: Option<IpAddr>| {
            Arc::new(
                RouteAttrs {
                    next_hop,
                    origin: args.origin,
                    med: args.med,
                    local_pref: args.local_pref,
                    communities: args.communities.clone(),
                    large_communities: args.large_communities.clone(),
                }
                .normalized(),
            )
        };
        let (attrs_v4, attrs_v6) = (attrs(nh_v4), attrs(nh_v6));
        let mut families = BTreeSet::new();
        let mut routes = Routes::new();
        for p in prefixes {
            let (family, attrs) = match p {
                IpNet::V4(_) => (Family::IPV4_UNICAST, &attrs_v4),
                IpNet::V6(_) => (Family::IPV6_UNICAST, &attrs_v6),
            };
            families.insert(family);
            routes.insert(p, attrs.clone());
        }
        let name = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
        // A --next-hop is for the routes of its family: one no route has is a mistake.
        for nh in &args.next_hops {
            let fam = if nh.is_ipv4() {
                Family::IPV4_UNICAST
            } else {
                Family::IPV6_UNICAST
            };
            if !families.contains(&fam) {
                bail!(
                    "--next-hop {nh} is {} but no {} prefix is announced",
                    name(nh.is_ipv6()),
                    name(nh.is_ipv6())
                );
            }
        }
        let session_v4 = peer.is_ipv4();
        for f in &families {
            let v6 = *f == Family::IPV6_UNICAST;
            let own = if v6 { nh_v6 } else { nh_v4 };
            if own.is_some() {
                continue;
            }
            // A next hop of the other family than the session can only come from --next-hop.
            if v6 == session_v4 {
                bail!(
                    "{} prefixes over an {} session need --next-hop of their family",
                    name(v6),
                    name(!session_v4)
                );
            }
            // Given for another family only: the user meant a next hop for every route.
            if let Some(other) = args.next_hops.first() {
                bail!(
                    "--next-hop {other} is {} but {} prefixes are announced too: \
                 give an {} --next-hop as well",
                    name(other.is_ipv6()),
                    name(v6),
                    name(v6)
                );
            }
        }
        let cfg = PeerConfig {
            peer,
            local_addr: args.source,
            local_as,
            peer_as: args.peer_as.unwrap_or(0),
            dynamic_peer_as: args.dynamic_peer_as,
            router_id,
            hold_time: args.hold_time,
            keepalive: args.keepalive,
            password: args.password,
            passive: args.passive,
            families: families.into_iter().collect(),
            ebgp_multihop: args.ebgp_multihop,
            connect_retry: Duration::from_secs(args.connect_retry.max(1)),
            connect_retry_max: Duration::from_secs(60).max(Duration::from_secs(args.connect_retry)),
            listen: args.listen,
            listen_port: args.listen_port,
            bfd: args.bfd.then(|| PeerBfd {
                desired_min_tx: Duration::from_millis(args.bfd_tx_interval.into()),
                required_min_rx: Duration::from_millis(args.bfd_rx_interval.into()),
                detect_mult: args.bfd_detect_multiplier,
                passive: args.bfd_passive,
            }),
            max_prefix: args.max_prefix,
            send_hold_time: args.send_hold_time.map(Duration::from_secs),
            graceful_restart: args
                .graceful_restart
                .then(|| GracefulRestartConfig::new(args.restart_time)),
            extended_message: args.extended_message,
        };
        Ok((cfg, routes))
    }
}

/// Print one line on stdout and flush it at once.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop the session.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Run the announcer until SIGINT/SIGTERM. Arguments that cannot work
/// together are a usage error: the message on stderr and exit code 2, as
/// clap does for its own checks.
pub fn run(args: Args) -> Result<ExitCode> {
    let (cfg, routes, life) = match plan_lifecycle(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}\n\nFor more information, try '--help'.");
            return Ok(ExitCode::from(2));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(session(cfg, routes, life))?;
    Ok(ExitCode::SUCCESS)
}

async fn session(mut cfg: PeerConfig, routes: Routes, life: Lifecycle) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let marker = match (&life.state_dir, cfg.graceful_restart.as_mut()) {
        (Some(dir), Some(gr)) => {
            let name = format!("announce-{}-{}", cfg.peer.ip(), cfg.peer.port());
            let (m, restarting) = RestartMarker::claim(dir, &name)
                .with_context(|| format!("restart marker in {}", dir.display()))?;
            tracing::info!(marker = %m.path().display(), restarting, "graceful restart");
            gr.restarting = restarting;
            Some(m)
        }
        _ => None,
    };
    let (peer, local_as) = (cfg.peer, cfg.local_as);
    let count = routes.len();
    tracing::info!(%peer, local_as, peer_as = cfg.peer_as, dynamic = ?cfg.dynamic_peer_as, prefixes = count, "starting session");
    let bfd = cfg.bfd.is_some();
    let endpoint = BfdEndpoint::new();
    let handle = driver::spawn_with_bfd(cfg, &endpoint);
    if bfd && let Some(e) = &handle.status().borrow().bfd_error {
        bail!("cannot start the BFD session: {e}");
    }
    handle.set(routes);
    let mut status = handle.status();

    let mut last_state: Option<State> = None;
    let mut printed_established = 0u64;
    let mut printed_sent = 0u64;
    let mut established_at = Instant::now();
    let signal = loop {
        {
            let s = status.borrow_and_update();
            if last_state != Some(s.state) {
                // The driver logs every transition with its cause; this is the owner's view.
                tracing::debug!(state = ?s.state, last_down = ?s.last_down, "session state");
                last_state = Some(s.state);
            }
            if s.state == State::Established && s.established_generation > printed_established {
                printed_established = s.established_generation;
                established_at = Instant::now();
                say(format_args!(
                    "established peer={peer} local_as={local_as} peer_as={} generation={}",
                    s.peer_as.unwrap_or_default(),
                    s.established_generation
                ));
            }
            if s.state == State::Established
                && s.initial_table_sent
                && s.established_generation > printed_sent
                && s.established_generation == printed_established
            {
                printed_sent = s.established_generation;
                say(format_args!(
                    "initial-routes-sent prefixes={} updates={} elapsed_ms={} generation={}",
                    s.prefixes_announced,
                    s.updates_sent,
                    established_at.elapsed().as_millis(),
                    s.established_generation
                ));
                if s.prefixes_announced != count {
                    tracing::warn!(
                        announced = s.prefixes_announced,
                        requested = count,
                        "not every requested prefix was announced (see earlier warnings)"
                    );
                }
            }
        }
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    bail!("the BGP session task ended unexpectedly");
                }
            }
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };
    let message = Some(format!("ferrolb announce: {signal}, shutting down"));
    match life.ending {
        Ending::KeepRoutes => {
            tracing::info!(
                signal,
                "stopping; the peer keeps our routes (graceful restart)"
            );
            handle.close_keep_routes(message).await;
        }
        Ending::Withdraw => {
            tracing::info!(signal, "shutting down");
            handle.shutdown(message).await;
            if let Some(m) = marker {
                m.remove().context("removing the restart marker")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities() {
        assert_eq!(parse_community("64512:1"), Ok(64512 << 16 | 1));
        assert_eq!(parse_community("no-export"), Ok(0xFFFF_FF01));
        assert_eq!(parse_community("NO-PEER"), Ok(0xFFFF_FF04));
        assert!(parse_community("65536:1").is_err());
        assert!(parse_community("1").is_err());
        assert_eq!(
            parse_large_community("4200000000:1:2"),
            Ok(LargeCommunity {
                global_admin: 4_200_000_000,
                local1: 1,
                local2: 2
            })
        );
        assert!(parse_large_community("1:2").is_err());
    }

    #[test]
    fn peers_and_prefixes() {
        assert_eq!(
            parse_peer("198.18.0.1").unwrap(),
            "198.18.0.1:179".parse().unwrap()
        );
        assert_eq!(
            parse_peer("[2001:db8::1]:1790").unwrap(),
            "[2001:db8::1]:1790".parse().unwrap()
        );
        assert!(parse_peer("2001:db8::1:1790").is_ok()); // an address, port 179
        assert_eq!(
            parse_prefix("10.0.0.1").unwrap(),
            "10.0.0.1/32".parse().unwrap()
        );
        assert!(
            parse_prefix("10.0.0.1/24")
                .unwrap_err()
                .contains("10.0.0.0/24")
        );
        assert!(parse_asn("0").is_err());
        assert!(parse_hold_time("2").is_err());
    }

    #[test]
    fn bfd_values() {
        assert_eq!(parse_bfd_interval("300"), Ok(300));
        assert_eq!(parse_bfd_interval("10"), Ok(10));
        assert!(parse_bfd_interval("9").is_err());
        assert!(parse_bfd_interval("60001").is_err());
        assert!(parse_bfd_interval("x").is_err());
        assert_eq!(parse_bfd_multiplier("3"), Ok(3));
        assert!(parse_bfd_multiplier("1").is_err());
        assert!(parse_bfd_multiplier("256").is_err());
    }

    /// `ferrolb announce` arguments after a fixed peer, AS pair and router id.
    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        let base = [
            "announce",
            "--peer",
            "198.18.0.1",
            "--local-as",
            "64522",
            "--peer-as",
            "64512",
            "--router-id",
            "198.18.0.2",
        ];
        <Cli as clap::Parser>::try_parse_from(base.iter().chain(extra)).map(|c| c.a)
    }

    #[test]
    fn next_hops_per_family() {
        let nh = |routes: &Routes, p: &str| routes[&p.parse::<IpNet>().unwrap()].next_hop;
        let (_, routes) = plan(
            parse(&[
                "--prefix",
                "172.17.254.1/32",
                "--prefix",
                "2001:db8:254::1/128",
                "--next-hop",
                "2001:db8:ff::2",
                "--next-hop",
                "198.18.0.9",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            nh(&routes, "172.17.254.1/32"),
            Some("198.18.0.9".parse().unwrap())
        );
        assert_eq!(
            nh(&routes, "2001:db8:254::1/128"),
            Some("2001:db8:ff::2".parse().unwrap())
        );
        // Only an IPv6 next hop for mixed prefixes: the IPv4 routes would be dropped.
        let e = plan(
            parse(&[
                "--prefix",
                "172.17.254.1/32",
                "--prefix",
                "2001:db8:254::1/128",
                "--next-hop",
                "2001:db8:ff::2",
            ])
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("IPv4 --next-hop as well"), "{e}");
        let e = plan(
            parse(&[
                "--prefix",
                "172.17.254.1/32",
                "--next-hop",
                "2001:db8:ff::2",
            ])
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no IPv6 prefix"), "{e}");
        let e = plan(
            parse(&[
                "--prefix",
                "172.17.254.1/32",
                "--next-hop",
                "198.18.0.7",
                "--next-hop",
                "198.18.0.9",
            ])
            .unwrap(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("at most one per address family"),
            "{e}"
        );
        // IPv6 prefixes over the IPv4 session without an IPv6 next hop.
        assert!(plan(parse(&["--prefix", "2001:db8:254::1/128"]).unwrap()).is_err());
        // No --next-hop: each family defaults to the session's local address.
        let (_, routes) = plan(parse(&["--prefix", "172.17.254.1/32"]).unwrap()).unwrap();
        assert_eq!(nh(&routes, "172.17.254.1/32"), None);
    }

    #[test]
    fn ebgp_multihop_is_1_to_255() {
        assert!(parse(&["--prefix", "10.0.0.1", "--ebgp-multihop", "0"]).is_err());
        let (cfg, _) =
            plan(parse(&["--prefix", "10.0.0.1", "--ebgp-multihop", "255"]).unwrap()).unwrap();
        assert_eq!(cfg.ttl(), 255);
    }

    #[test]
    fn send_hold_time_defaults_to_max_of_480_and_twice_the_hold_time() {
        assert!(parse(&["--prefix", "10.0.0.1", "--send-hold-time", "0"]).is_err());
        let (cfg, _) = plan(parse(&["--prefix", "10.0.0.1"]).unwrap()).unwrap();
        assert_eq!(cfg.effective_send_hold_time(), Duration::from_secs(480));
        let (cfg, _) =
            plan(parse(&["--prefix", "10.0.0.1", "--hold-time", "300"]).unwrap()).unwrap();
        assert_eq!(cfg.effective_send_hold_time(), Duration::from_secs(600));
        let (cfg, _) =
            plan(parse(&["--prefix", "10.0.0.1", "--send-hold-time", "20"]).unwrap()).unwrap();
        assert_eq!(cfg.effective_send_hold_time(), Duration::from_secs(20));
    }

    #[test]
    fn extended_message_flag() {
        let (cfg, _) = plan(parse(&["--prefix", "10.0.0.1"]).unwrap()).unwrap();
        assert!(!cfg.extended_message);
        let (cfg, _) =
            plan(parse(&["--prefix", "10.0.0.1", "--extended-message"]).unwrap()).unwrap();
        assert!(cfg.extended_message);
    }

    #[test]
    fn graceful_restart_flags() {
        let run = |extra: &[&str]| {
            let mut a = vec!["--prefix", "10.0.0.1"];
            a.extend_from_slice(extra);
            plan_lifecycle(parse(&a).unwrap()).unwrap()
        };
        let (cfg, _, life) = run(&[]);
        assert_eq!(cfg.graceful_restart, None);
        assert_eq!(life.ending, Ending::Withdraw);
        let (cfg, _, life) = run(&["--graceful-restart"]);
        assert_eq!(cfg.graceful_restart, Some(GracefulRestartConfig::new(120)));
        assert_eq!(life.ending, Ending::KeepRoutes);
        assert_eq!(life.state_dir, None);
        let (cfg, _, life) = run(&[
            "--graceful-restart",
            "--restart-time",
            "30",
            "--hard-reset",
            "--state-dir",
            "/run/x",
        ]);
        assert_eq!(cfg.graceful_restart, Some(GracefulRestartConfig::new(30)));
        assert_eq!(life.ending, Ending::Withdraw);
        assert_eq!(life.state_dir, Some("/run/x".into()));
        // Each of these needs --graceful-restart; the time fits 12 bits.
        for bad in [
            &["--prefix", "10.0.0.1", "--hard-reset"][..],
            &["--prefix", "10.0.0.1", "--restart-time", "30"],
            &["--prefix", "10.0.0.1", "--state-dir", "/tmp"],
            &[
                "--prefix",
                "10.0.0.1",
                "--graceful-restart",
                "--restart-time",
                "4096",
            ],
            &[
                "--prefix",
                "10.0.0.1",
                "--graceful-restart",
                "--restart-time",
                "0",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn consecutive_hosts() {
        let v4: Vec<IpNet> = host_routes("10.0.0.254".parse().unwrap(), 3)
            .unwrap()
            .collect();
        assert_eq!(v4[2], "10.0.1.0/32".parse::<IpNet>().unwrap());
        assert!(host_routes("255.255.255.255".parse().unwrap(), 2).is_err());
        let v6: Vec<IpNet> = host_routes("2001:db8::ffff".parse().unwrap(), 2)
            .unwrap()
            .collect();
        assert_eq!(v6[1], "2001:db8::1:0/128".parse::<IpNet>().unwrap());
    }
}
