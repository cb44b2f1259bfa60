//! Interop: `ferrolb announce` against the real Debian daemons (gobgpd 3.10, FRR 8.4
//! bgpd, BIRD 2.0) in private network namespaces joined by a veth, and against a raw
//! misbehaving peer on 127.0.0.1 that sends malformed UPDATEs.
//!
//! Topology of each daemon test (built per test by ferrolb-testlab, removed on drop):
//! ```text
//!  netns A (ferrolb announce)  eth0 198.18.0.2/24 2001:db8:ff::2/64
//!            |  veth
//!  netns B (gobgpd|bgpd|bird)  eth0 198.18.0.1/24 2001:db8:ff::1/64
//! ```
//! The daemon is passive; ferrolb connects (connect-retry 1 s). Each test skips with a
//! printed reason when not root or a daemon is missing, and fails instead in CI.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_testlab::*;

const FERROLB: &str = env!("CARGO_BIN_EXE_ferrolb");
const T: Duration = Duration::from_secs(30);

const SPEAKER_ADDRS: [&str; 2] = ["198.18.0.2/24", "2001:db8:ff::2/64"];
const PEER_ADDRS: [&str; 2] = ["198.18.0.1/24", "2001:db8:ff::1/64"];
const SPEAKER: &str = "198.18.0.2";
const PEER: &str = "198.18.0.1";
const SPEAKER6: &str = "2001:db8:ff::2";
const PEER6: &str = "2001:db8:ff::1";

/// Arguments of one `ferrolb announce` run.
struct Announce {
    args: Vec<String>,
}

impl Announce {
    /// `--peer PEER --source SOURCE --local-as L --peer-as P --connect-retry 1`.
    fn new(peer: &str, source: &str, local_as: u32, peer_as: u32) -> Announce {
        let mut a = Announce { args: vec![] };
        a = a
            .arg("--peer", peer)
            .arg("--local-as", &local_as.to_string())
            .arg("--peer-as", &peer_as.to_string())
            .arg("--connect-retry", "1");
        if !source.is_empty() {
            a = a.arg("--source", source);
        }
        a
    }

    fn arg(mut self, k: &str, v: &str) -> Announce {
        self.args.push(k.to_string());
        self.args.push(v.to_string());
        self
    }

    fn prefixes(mut self, ps: &[&str]) -> Announce {
        for p in ps {
            self = self.arg("--prefix", p);
        }
        self
    }

    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(FERROLB);
        c.arg("announce").args(&self.args).env("RUST_LOG", "debug");
        c
    }

    /// Runs it inside `ns`.
    fn spawn_in(&self, ns: &Netns) -> Result<Proc> {
        ns.spawn_labeled(self.command(), "ferrolb-announce")
    }
}

/// Waits for `established` and `initial-routes-sent` on ferrolb's stdout.
fn wait_up(p: &mut Proc) -> Result<(String, String)> {
    let e = p.wait_for_line("established", T)?;
    let s = p.wait_for_line("initial-routes-sent", T)?;
    Ok((e, s))
}

/// SIGTERM ferrolb and check it exits 0.
fn stop_ok(p: &mut Proc) -> Result<()> {
    p.signal("TERM")?;
    let st = p
        .wait_exit(Duration::from_secs(10))
        .context("ferrolb did not exit within 10 s of SIGTERM")?;
    if !st.success() {
        bail!(
            "ferrolb exited {st} after SIGTERM; stderr:\n{}",
            p.stderr_tail(20)
        );
    }
    Ok(())
}

/// What the tests need of a routing daemon started in the peer namespace.
trait Daemon: Sized {
    /// How the test output names it.
    const NAME: &'static str;
    /// The binaries it needs, for [`require_root_or_skip`].
    const BINS: &'static [&'static str];
    /// Its neighbor config.
    type Neighbor;
    /// A passive neighbor `addr` in AS `asn` for `fams`.
    fn passive(addr: &str, asn: u32, fams: &[Family]) -> Self::Neighbor;
    /// Starts it in `ns` as AS `asn`, router id [`PEER`], with the one neighbor `n`.
    fn start_with(ns: &Netns, asn: u32, n: Self::Neighbor) -> Result<Self>;
    /// Waits until its RIB holds exactly `n` routes of `family`, and returns them.
    fn rib_count(&self, family: Family, n: usize, timeout: Duration) -> Result<Vec<Route>>;
}

/// Implements [`Daemon`] for a testlab daemon guard from its config and neighbor types.
macro_rules! daemon {
    ($t:ident, $name:expr, $bins:expr, $config:ident, $neighbor:ident) => {
        impl Daemon for $t {
            const NAME: &'static str = $name;
            const BINS: &'static [&'static str] = $bins;
            type Neighbor = $neighbor;
            fn passive(addr: &str, asn: u32, fams: &[Family]) -> $neighbor {
                let mut n = $neighbor::new(addr, asn);
                n.passive = true;
                n.families = fams.to_vec();
                n
            }
            fn start_with(ns: &Netns, asn: u32, n: $neighbor) -> Result<$t> {
                $t::start(ns, $config::new(asn, PEER).neighbor(n))
            }
            fn rib_count(&self, family: Family, n: usize, timeout: Duration) -> Result<Vec<Route>> {
                self.wait_rib_count(family, n, timeout)
            }
        }
    };
}

daemon!(
    Gobgpd,
    "gobgpd",
    &["gobgpd", "gobgp"],
    GobgpdConfig,
    GobgpNeighbor
);
daemon!(
    Frr,
    "FRR",
    &["vtysh", util::FRR_BGPD],
    FrrConfig,
    FrrNeighbor
);
daemon!(Bird, "BIRD", &["bird", "birdc"], BirdConfig, BirdNeighbor);

/// One daemon test's lab: the [`Pair`] (ferrolb in `a`, the daemon in `b`), the daemon and
/// the family of its session. Fields drop in order: the daemon first, then the namespaces.
struct Lab<D> {
    d: D,
    pair: Pair,
    family: Family,
}

impl<D: Daemon> Lab<D> {
    /// `None` (with the reason printed) when `test` cannot run here; otherwise the pair
    /// with `D` started as AS `asn` and `speaker` in AS `speaker_as` as passive neighbor
    /// for the family of `speaker`'s address.
    fn start(test: &str, asn: u32, speaker: &str, speaker_as: u32) -> Result<Option<Lab<D>>> {
        let family = Family::of(speaker);
        let n = D::passive(speaker, speaker_as, &[family]);
        Lab::start_with(test, asn, family, n)
    }

    /// [`Lab::start`] with the neighbor config `n` (for `family`) as given.
    fn start_with(test: &str, asn: u32, family: Family, n: D::Neighbor) -> Result<Option<Lab<D>>> {
        if !require_root_or_skip(test, D::BINS) {
            return Ok(None);
        }
        let pair = Pair::new(&SPEAKER_ADDRS, &PEER_ADDRS)?;
        let d = D::start_with(&pair.b, asn, n)?;
        Ok(Some(Lab { d, pair, family }))
    }

    /// Runs `a` in the speaker namespace.
    fn spawn(&self, a: Announce) -> Result<Proc> {
        a.spawn_in(&self.pair.a)
    }

    /// Runs `a` in the speaker namespace and [`wait_up`]: (ferrolb, established line,
    /// initial-routes-sent line).
    fn up(&self, a: Announce) -> Result<(Proc, String, String)> {
        let mut f = self.spawn(a)?;
        let (est, sent) = wait_up(&mut f)?;
        Ok((f, est, sent))
    }

    /// Waits (up to [`T`]) until the daemon's RIB holds exactly `n` routes of the
    /// session's family, and returns them.
    fn routes(&self, n: usize) -> Result<Vec<Route>> {
        self.d.rib_count(self.family, n, T)
    }

    /// [`stop_ok`] on `f`, then waits (up to `within`) until the daemon has no routes of
    /// the session's family left.
    fn stop_withdraws(&self, f: &mut Proc, within: Duration) -> Result<()> {
        stop_ok(f)?;
        self.d.rib_count(self.family, 0, within)?;
        Ok(())
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// ferrolb (AS 64522) announces `count` routes from 172.17.254.1 to `D` (AS 64512);
/// after `restart` of the daemon it reconnects (generation 2) and `D` has all of them
/// again.
fn restart_gets_full_table_again<D: Daemon>(
    test: &str,
    count: usize,
    restart: impl FnOnce(&mut D) -> Result<()>,
) -> Result<()> {
    let Some(mut lab) = Lab::<D>::start(test, 64512, SPEAKER, 64522)? else {
        return Ok(());
    };
    let (mut f, _, _) = lab.up(Announce::new(PEER, SPEAKER, 64522, 64512)
        .arg("--count", &count.to_string())
        .arg("--first", "172.17.254.1"))?;
    lab.routes(count)?;
    let t0 = Instant::now();
    restart(&mut lab.d)?;
    let (est, _) = wait_up(&mut f)?;
    assert!(est.contains("generation=2"), "{est}");
    lab.routes(count)?;
    eprintln!(
        "table back at restarted {} after {:?}",
        D::NAME,
        t0.elapsed()
    );
    assert!(f.is_alive());
    stop_ok(&mut f)?;
    Ok(())
}

// ---------------------------------------------------------------- gobgpd

#[test]
fn gobgpd_ebgp_4octet_communities_then_sigterm_withdraws() -> Result<()> {
    let test = "gobgpd_ebgp_4octet_communities_then_sigterm_withdraws";
    let Some(lab) = Lab::<Gobgpd>::start(test, 64512, SPEAKER, 4_200_000_001)? else {
        return Ok(());
    };
    let t0 = Instant::now();
    let (mut f, est, _) = lab.up(Announce::new(PEER, SPEAKER, 4_200_000_001, 64512)
        .prefixes(&["172.17.254.1/32", "172.17.254.2/32", "172.17.254.3/32"])
        .arg("--community", "64512:100")
        .arg("--community", "no-export")
        .arg("--large-community", "4200000001:1:2")
        .arg("--med", "5")
        .arg("--origin", "igp"))?;
    assert!(est.contains("local_as=4200000001"), "{est}");
    lab.d.wait_established(SPEAKER, T)?;
    let rib = lab.routes(3)?;
    eprintln!("3 routes at gobgpd {:?} after start", t0.elapsed());
    for r in &rib {
        let p = r.best().context("no path")?;
        assert_eq!(p.nexthop, SPEAKER, "{r:?}");
        assert_eq!(p.as_path, vec![4_200_000_001], "{r:?}");
        assert_eq!(p.communities, strs(&["64512:100", "65535:65281"]), "{r:?}");
        assert_eq!(p.large_communities, strs(&["4200000001:1:2"]), "{r:?}");
        assert_eq!(p.med, Some(5));
        assert_eq!(p.origin, Some(Origin::Igp));
        assert_eq!(p.local_pref, None, "no LOCAL_PREF on eBGP");
    }
    assert_eq!(
        rib.iter().map(|r| r.prefix.as_str()).collect::<Vec<_>>(),
        ["172.17.254.1/32", "172.17.254.2/32", "172.17.254.3/32"]
    );

    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;
    let log = lab.d.log();
    assert!(
        log.contains("notification-received"),
        "gobgpd should log the Cease as notification-received"
    );
    Ok(())
}

/// `ferrolb announce` with no fixed peer AS (MetalLB's `dynamicASN`): the peer's OPEN decides.
fn dynamic(kind: &str, local_as: u32) -> Announce {
    Announce { args: vec![] }
        .arg("--peer", PEER)
        .arg("--source", SPEAKER)
        .arg("--local-as", &local_as.to_string())
        .arg("--dynamic-peer-as", kind)
        .arg("--connect-retry", "1")
        .arg("--local-pref", "250")
        .prefixes(&["172.17.254.1/32"])
}

/// dynamicASN against gobgpd configured with a fixed AS for us: `external`
/// takes gobgpd's AS 64512 and sends eBGP routes (AS_PATH [us], no
/// LOCAL_PREF); `internal` refuses the same OPEN with 2/2 Bad Peer AS and
/// never comes up; against an iBGP gobgpd (AS = ours) `internal` comes up
/// and sends iBGP routes (empty AS_PATH, LOCAL_PREF).
#[test]
fn gobgpd_dynamic_peer_as() -> Result<()> {
    let test = "gobgpd_dynamic_peer_as";
    let Some(lab) = Lab::<Gobgpd>::start(test, 64512, SPEAKER, 64522)? else {
        return Ok(());
    };
    let (mut f, est, _) = lab.up(dynamic("external", 64522))?;
    assert!(est.contains("peer_as=64512"), "the AS gobgpd chose: {est}");
    let rib = lab.routes(1)?;
    let p = rib[0].best().context("no path")?;
    assert_eq!(p.as_path, vec![64522], "eBGP: {p:?}");
    assert_eq!(p.local_pref, None, "eBGP: no LOCAL_PREF {p:?}");
    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;

    // internal: gobgpd's AS differs from ours, so its OPEN is refused with 2/2.
    let mut f = lab.spawn(dynamic("internal", 64522))?;
    wait_until(T, Duration::from_millis(100), || {
        f.stderr().contains("notification sent: 2/2").then_some(())
    })
    .with_context(|| format!("no 2/2 sent: {}", f.stderr_tail(20)))?;
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !f.stdout().contains("established"),
        "internal must not establish with an eBGP peer"
    );
    assert_ne!(
        lab.d.neighbor_state(SPEAKER)?,
        SessionState::Established,
        "gobgpd must not be up with it"
    );
    stop_ok(&mut f)?;
    drop(lab);

    let Some(lab) = Lab::<Gobgpd>::start(test, 64522, SPEAKER, 64522)? else {
        return Ok(());
    };
    let (mut f, est, _) = lab.up(dynamic("internal", 64522))?;
    assert!(est.contains("peer_as=64522"), "{est}");
    let rib = lab.routes(1)?;
    let p = rib[0].best().context("no path")?;
    assert!(p.as_path.is_empty(), "iBGP: empty AS_PATH {p:?}");
    assert_eq!(p.local_pref, Some(250), "iBGP: LOCAL_PREF {p:?}");
    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn gobgpd_ibgp_1000_host_routes_with_attributes() -> Result<()> {
    let test = "gobgpd_ibgp_1000_host_routes_with_attributes";
    let Some(lab) = Lab::<Gobgpd>::start(test, 64522, SPEAKER, 64522)? else {
        return Ok(());
    };
    let t0 = Instant::now();
    let (mut f, _, sent) = lab.up(Announce::new(PEER, SPEAKER, 64522, 64522)
        .arg("--count", "1000")
        .arg("--first", "10.1.0.0")
        .arg("--community", "64522:1")
        .arg("--community", "64522:2")
        .arg("--large-community", "64522:3:4")
        .arg("--local-pref", "250"))?;
    eprintln!("ferrolb: {sent}");
    assert!(sent.contains("prefixes=1000"), "{sent}");
    let rib = lab.routes(1000)?;
    eprintln!("1000 routes in gobgpd's RIB {:?} after start", t0.elapsed());
    let mut seen = std::collections::BTreeSet::new();
    for r in &rib {
        let p = r.best().context("no path")?;
        assert_eq!(p.nexthop, SPEAKER, "{r:?}");
        assert!(p.as_path.is_empty(), "iBGP: empty AS_PATH {r:?}");
        assert_eq!(p.local_pref, Some(250), "{r:?}");
        assert_eq!(p.communities, strs(&["64522:1", "64522:2"]), "{r:?}");
        assert_eq!(p.large_communities, strs(&["64522:3:4"]), "{r:?}");
        assert_eq!(p.origin, Some(Origin::Incomplete), "default origin {r:?}");
        assert!(r.prefix.ends_with("/32"));
        seen.insert(r.prefix.clone());
    }
    for i in 0..1000u32 {
        let a = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 1, 0, 0)) + i);
        assert!(seen.contains(&format!("{a}/32")), "missing {a}/32");
    }
    eprintln!(
        "ferrolb announce peak RSS {:?} kB, gobgpd adj-in has {} prefixes",
        f.rss_peak_kb(),
        lab.d.adj_in(SPEAKER, Family::Ipv4Unicast)?.len()
    );
    lab.stop_withdraws(&mut f, Duration::from_secs(30))?;
    Ok(())
}

#[test]
fn gobgpd_ipv6_128_over_ipv6_session() -> Result<()> {
    let Some(lab) =
        Lab::<Gobgpd>::start("gobgpd_ipv6_128_over_ipv6_session", 64512, SPEAKER6, 64522)?
    else {
        return Ok(());
    };
    let (mut f, _, _) = lab.up(Announce::new(PEER6, SPEAKER6, 64522, 64512)
        .arg("--router-id", SPEAKER)
        .prefixes(&["2001:db8:254::1/128", "2001:db8:254::2/128"])
        .arg("--large-community", "64522:6:6"))?;
    let rib = lab.routes(2)?;
    for r in &rib {
        let p = r.best().context("no path")?;
        assert_eq!(p.nexthop, SPEAKER6, "{r:?}");
        assert_eq!(p.as_path, vec![64522]);
        assert_eq!(p.large_communities, strs(&["64522:6:6"]));
    }
    let mut prefixes: Vec<&str> = rib.iter().map(|r| r.prefix.as_str()).collect();
    prefixes.sort_unstable();
    assert_eq!(prefixes, ["2001:db8:254::1/128", "2001:db8:254::2/128"]);
    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn gobgpd_restart_gets_full_table_again() -> Result<()> {
    // SIGKILL by PID, start again with the same config.
    restart_gets_full_table_again("gobgpd_restart_gets_full_table_again", 50, Gobgpd::restart)
}

#[test]
fn gobgpd_drops_stopped_speaker_after_hold_time_then_relearns() -> Result<()> {
    let test = "gobgpd_drops_stopped_speaker_after_hold_time_then_relearns";
    let Some(lab) = Lab::<Gobgpd>::start(test, 64512, SPEAKER, 64522)? else {
        return Ok(());
    };
    let (mut f, _, _) = lab.up(Announce::new(PEER, SPEAKER, 64522, 64512)
        .prefixes(&["172.17.254.1/32", "172.17.254.2/32"])
        .arg("--hold-time", "3"))?;
    lab.routes(2)?;
    // A node that goes silent: gobgpd must drop its routes after the 3 s hold time.
    f.signal("STOP")?;
    let t0 = Instant::now();
    lab.d
        .wait_rib_count(Family::Ipv4Unicast, 0, Duration::from_secs(10))?;
    let gone = t0.elapsed();
    eprintln!("gobgpd dropped the silent speaker's routes after {gone:?}");
    // Keepalives go every second (hold 3 s / 3), so the last one gobgpd saw is
    // at most 1 s older than the STOP: expiry comes 2–3 s after it. The upper
    // bound leaves room for a loaded machine (polling, scheduling).
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(6)).contains(&gone),
        "routes dropped {gone:?} after the STOP, hold time 3 s"
    );
    f.signal("CONT")?;
    let (est, _) = wait_up(&mut f)?;
    assert!(est.contains("generation=2"), "{est}");
    lab.routes(2)?;
    stop_ok(&mut f)?;
    Ok(())
}

/// gobgpd (AS 64512) injects 200 routes toward ferrolb (AS 64522): with `--max-prefix 100`
/// ferrolb closes with Cease / Maximum Number of Prefixes Reached (6/1) carrying AFI 1,
/// SAFI 1 and the limit (RFC 4486), and gobgpd logs that NOTIFICATION.
#[test]
fn gobgpd_200_prefixes_over_max_prefix_100_gets_cease_6_1() -> Result<()> {
    let test = "gobgpd_200_prefixes_over_max_prefix_100_gets_cease_6_1";
    let Some(lab) = Lab::<Gobgpd>::start(test, 64512, SPEAKER, 64522)? else {
        return Ok(());
    };
    for i in 0..200u32 {
        let a = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 77, 0, 0)) + i);
        lab.d.add_route(&RouteSpec {
            prefix: format!("{a}/32"),
            nexthop: PEER.to_string(),
            ..RouteSpec::default()
        })?;
    }
    let mut f = lab.spawn(
        Announce::new(PEER, SPEAKER, 64522, 64512)
            .prefixes(&["172.17.254.1/32"])
            .arg("--max-prefix", "100"),
    )?;
    wait_until(T, Duration::from_millis(100), || {
        f.stderr().contains("notification sent: 6/1").then_some(())
    })
    .with_context(|| format!("no 6/1 sent: {}", f.stderr_tail(20)))?;
    // gobgpd logs the NOTIFICATION it received with its data: AFI 1, SAFI 1, limit 100.
    let line = wait_until(T, Duration::from_millis(100), || {
        let log = lab.d.log();
        log.lines()
            .find(|l| l.contains("received notification") && l.contains("Key=198.18.0.2"))
            .map(str::to_string)
    })
    .with_context(|| format!("gobgpd logged no NOTIFICATION:\n{}", lab.d.log()))?;
    eprintln!("gobgpd: {line}");
    assert!(line.contains("Code=6"), "{line}");
    assert!(line.contains("Subcode=1 "), "{line}");
    assert!(line.contains("Data=\"[0 1 1 0 0 0 100]\""), "{line}");
    // The count that tripped the limit: more than 100, at most the 200 sent.
    let err = f.stderr();
    let warn = err
        .lines()
        .find(|l| l.contains("Maximum Number of Prefixes Reached") && l.contains("limit=100"))
        .context("no max-prefix warning")?;
    let received: usize = warn
        .split("received=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .context("received=")?
        .parse()?;
    assert!((101..=200).contains(&received), "{warn}");
    assert!(f.is_alive(), "ferrolb died: {}", f.stderr_tail(20));
    stop_ok(&mut f)?;
    Ok(())
}

/// ferrolb with the same BGP identifier as gobgpd (198.18.0.1) on an eBGP session: RFC
/// 6286 §2.2 requires uniqueness within an AS only, so the session comes up.
#[test]
fn gobgpd_ebgp_same_router_id_establishes() -> Result<()> {
    let test = "gobgpd_ebgp_same_router_id_establishes";
    let Some(lab) = Lab::<Gobgpd>::start(test, 64512, SPEAKER, 64522)? else {
        return Ok(());
    };
    let mut f = lab.spawn(
        Announce::new(PEER, SPEAKER, 64522, 64512)
            .arg("--router-id", PEER)
            .prefixes(&["172.17.254.1/32"]),
    )?;
    wait_up(&mut f).with_context(|| format!("not up: {}", f.stderr_tail(20)))?;
    lab.d.wait_established(SPEAKER, T)?;
    lab.routes(1)?;
    assert!(
        !f.stderr().contains("notification sent: 2/3"),
        "{}",
        f.stderr_tail(20)
    );
    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;
    Ok(())
}

// ---------------------------------------------------------------- FRR

#[test]
fn frr_ebgp_ipv4_communities() -> Result<()> {
    let Some(lab) = Lab::<Frr>::start("frr_ebgp_ipv4_communities", 64512, SPEAKER, 64522)? else {
        return Ok(());
    };
    let (mut f, _, _) = lab.up(Announce::new(PEER, SPEAKER, 64522, 64512)
        .prefixes(&["172.17.254.1/32", "172.17.254.2/32"])
        .arg("--community", "64512:7")
        .arg("--large-community", "64522:1:1"))?;
    lab.d.wait_established(SPEAKER, T)?;
    let rib = lab.routes(2)?;
    for r in &rib {
        let p = r.best().context("no path")?;
        assert_eq!(p.nexthop, SPEAKER);
        assert_eq!(p.as_path, vec![64522]);
        assert_eq!(p.communities, strs(&["64512:7"]));
        assert_eq!(p.large_communities, strs(&["64522:1:1"]));
        assert_eq!(p.origin, Some(Origin::Incomplete));
    }
    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;
    Ok(())
}

/// Both sides connect and both listen: ferrolb (`--listen`, retrying its
/// connection) is started first, then FRR as an active neighbor, which
/// connects at once. Whether the two connections meet (the collision rules of
/// RFC 4271 §6.8 then keep one; the timing decides, the FSM and driver tests
/// cover the collision itself) or FRR's arrives alone, one session comes up,
/// carries the route and stays up.
#[test]
fn frr_both_active_and_listening_settle_on_one_session() -> Result<()> {
    let test = "frr_both_active_and_listening_settle_on_one_session";
    if !require_root_or_skip(test, <Frr as Daemon>::BINS) {
        return Ok(());
    }
    let pair = Pair::new(&SPEAKER_ADDRS, &PEER_ADDRS)?;
    let mut a = Announce::new(PEER, SPEAKER, 64522, 64512).prefixes(&["172.17.254.1/32"]);
    a.args.push("--listen".into());
    let mut f = a.spawn_in(&pair.a)?;
    // Let ferrolb fail a connect or two, so its retries run when FRR starts.
    std::thread::sleep(Duration::from_millis(1500));
    let mut n = FrrNeighbor::new(SPEAKER, 64522);
    n.families = vec![Family::of(SPEAKER)];
    let d = Frr::start(&pair.b, FrrConfig::new(64512, PEER).neighbor(n))?;
    wait_up(&mut f)?;
    d.wait_established(SPEAKER, T)?;
    d.wait_rib_count(Family::of(SPEAKER), 1, T)?;
    // Stable: no second Established, FRR keeps the route.
    std::thread::sleep(Duration::from_secs(5));
    let out = f.stdout();
    assert!(
        !out.contains("generation=2"),
        "the session went down and up again:\n{out}\n{}",
        f.stderr_tail(30)
    );
    d.wait_established(SPEAKER, Duration::from_secs(1))?;
    d.wait_rib_count(Family::of(SPEAKER), 1, Duration::from_secs(1))?;
    stop_ok(&mut f)?;
    d.wait_rib_count(Family::of(SPEAKER), 0, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn frr_ipv6_128_mp_bgp() -> Result<()> {
    let Some(lab) = Lab::<Frr>::start("frr_ipv6_128_mp_bgp", 64512, SPEAKER6, 64522)? else {
        return Ok(());
    };
    let (mut f, _, _) = lab.up(Announce::new(PEER6, SPEAKER6, 64522, 64512)
        .arg("--router-id", SPEAKER)
        .prefixes(&["2001:db8:254::1/128"])
        .arg("--community", "64512:6"))?;
    let rib = lab.routes(1)?;
    let p = rib[0].best().context("no path")?;
    assert_eq!(rib[0].prefix, "2001:db8:254::1/128");
    assert_eq!(p.nexthop, SPEAKER6);
    assert_eq!(p.as_path, vec![64522]);
    assert_eq!(p.communities, strs(&["64512:6"]));
    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;
    Ok(())
}

/// `None` when `test` cannot run here; otherwise FRR with MD5 password "frr-md5-secret"
/// on the session, and ferrolb announcing 172.17.254.9/32 with `ferrolb_password`.
fn frr_md5(test: &str, ferrolb_password: &str) -> Result<Option<(Lab<Frr>, Proc)>> {
    let mut n = Frr::passive(SPEAKER, 64522, &[Family::Ipv4Unicast]);
    n.password = Some("frr-md5-secret".into());
    let Some(lab) = Lab::<Frr>::start_with(test, 64512, Family::Ipv4Unicast, n)? else {
        return Ok(None);
    };
    let f = lab.spawn(
        Announce::new(PEER, SPEAKER, 64522, 64512)
            .prefixes(&["172.17.254.9/32"])
            .arg("--password", ferrolb_password),
    )?;
    Ok(Some((lab, f)))
}

#[test]
fn frr_md5_right_password_establishes() -> Result<()> {
    let Some((lab, mut f)) = frr_md5("frr_md5_right_password_establishes", "frr-md5-secret")?
    else {
        return Ok(());
    };
    wait_up(&mut f)?;
    lab.d.wait_established(SPEAKER, T)?;
    lab.routes(1)?;
    stop_ok(&mut f)?;
    Ok(())
}

#[test]
fn frr_md5_wrong_password_never_establishes() -> Result<()> {
    let Some((lab, mut f)) = frr_md5("frr_md5_wrong_password_never_establishes", "not-the-secret")?
    else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let st = lab.d.neighbor_state(SPEAKER)?;
        assert!(
            !st.is_established(),
            "FRR established with a wrong MD5 password"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !f.stdout().lines().any(|l| l.starts_with("established ")),
        "ferrolb printed an established line: {}",
        f.stdout()
    );
    assert!(
        f.is_alive(),
        "ferrolb should keep retrying: {}",
        f.stderr_tail(10)
    );
    assert!(lab.d.rib(Family::Ipv4Unicast)?.is_empty());
    stop_ok(&mut f)?;
    Ok(())
}

#[test]
fn frr_restart_gets_full_table_again() -> Result<()> {
    restart_gets_full_table_again("frr_restart_gets_full_table_again", 100, Frr::restart_bgpd)
}

// ---------------------------------------------------------------- BIRD

#[test]
fn bird_ebgp_4octet() -> Result<()> {
    let Some(lab) = Lab::<Bird>::start("bird_ebgp_4octet", 64512, SPEAKER, 4_200_000_001)? else {
        return Ok(());
    };
    let (mut f, _, _) = lab.up(Announce::new(PEER, SPEAKER, 4_200_000_001, 64512)
        .prefixes(&["172.17.254.1/32", "172.17.254.2/32"])
        .arg("--community", "64512:100")
        .arg("--large-community", "4200000001:1:2"))?;
    lab.d.wait_established(SPEAKER, T)?;
    let rib = lab.routes(2)?;
    for r in &rib {
        let p = r.best().context("no path")?;
        assert_eq!(p.nexthop, SPEAKER);
        assert_eq!(p.as_path, vec![4_200_000_001]);
        assert_eq!(p.communities, strs(&["64512:100"]));
        assert_eq!(p.large_communities, strs(&["4200000001:1:2"]));
    }
    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn bird_ibgp_local_pref() -> Result<()> {
    let Some(lab) = Lab::<Bird>::start("bird_ibgp_local_pref", 64522, SPEAKER, 64522)? else {
        return Ok(());
    };
    let (mut f, _, _) = lab.up(Announce::new(PEER, SPEAKER, 64522, 64522)
        .prefixes(&["172.17.254.1/32"])
        .arg("--local-pref", "300"))?;
    let rib = lab.routes(1)?;
    let p = rib[0].best().context("no path")?;
    assert_eq!(p.nexthop, SPEAKER);
    assert!(p.as_path.is_empty());
    assert_eq!(p.local_pref, Some(300));
    lab.stop_withdraws(&mut f, Duration::from_secs(10))?;
    Ok(())
}

// ---------------------------------------------------------------- malformed UPDATEs

/// A raw BGP peer on 127.0.0.1 (root namespace loopback only): completes OPEN/KEEPALIVE
/// with ferrolb, sends one malformed UPDATE and returns the NOTIFICATION ferrolb sends.
struct RawPeer {
    listener: TcpListener,
    port: u16,
}

const MARKER: [u8; 16] = [0xff; 16];

impl RawPeer {
    fn new() -> Result<RawPeer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        Ok(RawPeer { listener, port })
    }

    fn accept(&self, timeout: Duration, ferrolb: &mut Proc) -> Result<TcpStream> {
        self.listener.set_nonblocking(true)?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false)?;
                    s.set_read_timeout(Some(Duration::from_secs(10)))?;
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(st) = ferrolb.try_status() {
                        bail!("ferrolb exited ({st}): {}", ferrolb.stderr_tail(10));
                    }
                    if Instant::now() > deadline {
                        bail!("ferrolb did not connect within {timeout:?}");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = MARKER.to_vec();
    m.extend_from_slice(&u16::try_from(19 + body.len()).expect("short").to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// Reads one BGP message: (type, body).
fn read_msg(s: &mut TcpStream) -> Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 19];
    s.read_exact(&mut h).context("read BGP header")?;
    if h[..16] != MARKER {
        bail!("bad marker {h:02x?}");
    }
    let len = usize::from(u16::from_be_bytes([h[16], h[17]]));
    let mut b = vec![0u8; len.saturating_sub(19)];
    s.read_exact(&mut b).context("read BGP body")?;
    Ok((h[18], b))
}

/// OPEN from AS 64512, hold 90, id 198.18.0.1, capabilities MP IPv4 unicast + 4-octet AS.
fn our_open() -> Vec<u8> {
    let caps = [2u8, 12, 1, 4, 0, 1, 0, 1, 65, 4, 0, 0, 0xfc, 0x00];
    let mut b = vec![4u8];
    b.extend_from_slice(&64512u16.to_be_bytes());
    b.extend_from_slice(&90u16.to_be_bytes());
    b.extend_from_slice(&[198, 18, 0, 1]);
    b.push(u8::try_from(caps.len()).expect("short"));
    b.extend_from_slice(&caps);
    msg(1, &b)
}

/// ferrolb (AS 64522, router id [`SPEAKER`], 172.17.254.1/32) run in its own test
/// directory against a [`RawPeer`], with the connection it opened and the body of its
/// OPEN. Fields drop in order: the connection, ferrolb, the listener, the directory.
struct RawSession {
    s: TcpStream,
    open: Vec<u8>,
    f: Proc,
    peer: RawPeer,
    _dir: TestDir,
}

impl RawSession {
    /// Starts ferrolb against a new [`RawPeer`] (loopback in the root namespace only: no
    /// root or namespaces needed), accepts its connection and reads its OPEN.
    fn start(label: &str) -> Result<RawSession> {
        let dir = TestDir::new(label)?;
        let peer = RawPeer::new()?;
        let mut cmd = Announce::new(&format!("127.0.0.1:{}", peer.port), "", 64522, 64512)
            .arg("--router-id", SPEAKER)
            .prefixes(&["172.17.254.1/32"])
            .command();
        cmd.current_dir(dir.path());
        let mut f = Proc::spawn(cmd, dir.path(), "ferrolb-announce")?;
        let mut s = peer.accept(T, &mut f)?;
        let (ty, open) = read_msg(&mut s)?;
        assert_eq!(ty, 1, "first message must be OPEN");
        Ok(RawSession {
            s,
            open,
            f,
            peer,
            _dir: dir,
        })
    }
}

/// Reads messages until a NOTIFICATION and returns its (code, subcode).
fn read_notification(s: &mut TcpStream) -> Result<(u8, u8)> {
    loop {
        let (ty, b) = read_msg(s)?;
        if ty == 3 {
            return Ok((b[0], b[1]));
        }
    }
}

/// Handshake, then send `bad` (an UPDATE body) and return ferrolb's NOTIFICATION (code, subcode).
fn malformed_update_case(test: &str, bad_body: &[u8], want: (u8, u8)) -> Result<()> {
    let mut x = RawSession::start(test)?;
    assert_eq!(u16::from_be_bytes([x.open[1], x.open[2]]), 64522);
    x.s.write_all(&our_open())?;
    x.s.write_all(&msg(4, &[]))?;
    // Until ferrolb's KEEPALIVE (UPDATEs may already follow).
    loop {
        let (ty, _) = read_msg(&mut x.s)?;
        if ty == 4 {
            break;
        }
        assert_ne!(ty, 3, "NOTIFICATION during handshake");
    }
    x.f.wait_for_line("established", T)?;
    x.s.write_all(&msg(2, bad_body))?;
    let got = read_notification(&mut x.s)?;
    assert_eq!(got, want, "{test}: NOTIFICATION code/subcode");
    // The connection is closed by ferrolb after the NOTIFICATION.
    let mut rest = [0u8; 64];
    let n = x.s.read(&mut rest).unwrap_or(0);
    assert_eq!(
        n, 0,
        "ferrolb should close the TCP connection after the NOTIFICATION"
    );
    drop(x.s);
    assert!(x.f.is_alive(), "ferrolb died: {}", x.f.stderr_tail(20));
    // It reconnects and opens a new session.
    let mut s2 = x.peer.accept(T, &mut x.f)?;
    let (ty, _) = read_msg(&mut s2)?;
    assert_eq!(ty, 1, "reconnect starts with an OPEN");
    assert!(x.f.is_alive());
    drop(s2);
    stop_ok(&mut x.f)?;
    Ok(())
}

#[test]
fn malformed_update_withdrawn_length_overrun_3_1() -> Result<()> {
    // Withdrawn Routes Length 9 but only 5 octets follow before the end: 3/1.
    malformed_update_case(
        "malformed_update_withdrawn_length_overrun_3_1",
        &[0x00, 0x09, 0x20, 0xac, 0x11, 0xfe, 0x01, 0x00, 0x00],
        (3, 1),
    )
}

#[test]
fn malformed_update_total_attribute_length_overrun_3_1() -> Result<()> {
    // Total Path Attribute Length 9 with 4 octets of attributes in the message: the NLRI
    // cannot be located, so RFC 7606 §4 leaves only session reset: 3/1.
    malformed_update_case(
        "malformed_update_total_attribute_length_overrun_3_1",
        &[0x00, 0x00, 0x00, 0x09, 0x40, 0x01, 0x01, 0x00],
        (3, 1),
    )
}

#[test]
fn malformed_update_nlri_prefix_length_33_3_10() -> Result<()> {
    // Valid ORIGIN, AS_PATH (4-octet) and NEXT_HOP, then an NLRI of length /33: 3/10.
    let mut b = vec![0x00, 0x00];
    let attrs: Vec<u8> = [
        vec![0x40, 0x01, 0x01, 0x00],
        vec![0x40, 0x02, 0x06, 0x02, 0x01, 0x00, 0x00, 0xfc, 0x00],
        vec![0x40, 0x03, 0x04, 198, 18, 0, 1],
    ]
    .concat();
    b.extend_from_slice(&u16::try_from(attrs.len()).expect("short").to_be_bytes());
    b.extend_from_slice(&attrs);
    b.extend_from_slice(&[33, 172, 17, 254, 1, 0]);
    malformed_update_case("malformed_update_nlri_prefix_length_33_3_10", &b, (3, 10))
}

#[test]
fn silent_peer_gets_hold_timer_expired_4_0() -> Result<()> {
    // Loopback in the root namespace only. The raw peer offers hold time 3 and then
    // never sends a KEEPALIVE: ferrolb must send NOTIFICATION 4/0 after ~3 s.
    let mut x = RawSession::start("silent-peer")?;
    let mut open = our_open();
    // Hold time field: after marker(16) + length(2) + type(1) + version(1) + AS(2).
    open[22..24].copy_from_slice(&3u16.to_be_bytes());
    x.s.write_all(&open)?;
    x.s.write_all(&msg(4, &[]))?;
    x.f.wait_for_line("established", T)?;
    let t0 = Instant::now();
    let got = read_notification(&mut x.s)?;
    let after = t0.elapsed();
    eprintln!("ferrolb sent NOTIFICATION {got:?} {after:?} after Established");
    assert_eq!(got, (4, 0), "Hold Timer Expired");
    assert!(
        after >= Duration::from_secs(2) && after <= Duration::from_secs(5),
        "{after:?}"
    );
    assert!(x.f.is_alive());
    stop_ok(&mut x.f)?;
    Ok(())
}

/// OPEN from AS 64512 like [`our_open`], also offering ROUTE-REFRESH (capability 2).
fn our_open_with_route_refresh() -> Vec<u8> {
    let caps = [2u8, 14, 1, 4, 0, 1, 0, 1, 65, 4, 0, 0, 0xfc, 0x00, 2, 0];
    let mut b = vec![4u8];
    b.extend_from_slice(&64512u16.to_be_bytes());
    b.extend_from_slice(&90u16.to_be_bytes());
    b.extend_from_slice(&[198, 18, 0, 1]);
    b.push(u8::try_from(caps.len()).expect("short"));
    b.extend_from_slice(&caps);
    msg(1, &b)
}

/// A raw peer sends 5,000 ROUTE-REFRESH messages (IPv4 unicast) in one write: the
/// requests collapse, so ferrolb re-sends its table at most twice (bytes of UPDATEs
/// received after the initial table ≤ 2 tables) and stays up and Established.
#[test]
fn route_refresh_flood_collapses_into_at_most_two_resends() -> Result<()> {
    let dir = TestDir::new("route-refresh-flood")?;
    let peer = RawPeer::new()?;
    let mut cmd = Announce::new(&format!("127.0.0.1:{}", peer.port), "", 64522, 64512)
        .arg("--router-id", SPEAKER)
        .arg("--count", "2000")
        .arg("--first", "10.99.0.0")
        .command();
    cmd.current_dir(dir.path());
    let mut f = Proc::spawn(cmd, dir.path(), "ferrolb-announce")?;
    let mut s = peer.accept(T, &mut f)?;
    let (ty, _) = read_msg(&mut s)?;
    assert_eq!(ty, 1);
    s.write_all(&our_open_with_route_refresh())?;
    s.write_all(&msg(4, &[]))?;
    // The initial table: UPDATE bytes up to the End-of-RIB (an empty UPDATE body).
    let mut table = 0usize;
    loop {
        let (ty, b) = read_msg(&mut s)?;
        assert_ne!(ty, 3, "NOTIFICATION during the initial table");
        if ty == 2 {
            if b == [0, 0, 0, 0] {
                break;
            }
            table += 19 + b.len();
        }
    }
    assert!(table > 10_000, "2000 routes are more than {table} bytes");
    let rr = msg(5, &[0, 1, 0, 1]);
    let flood: Vec<u8> = rr.iter().copied().cycle().take(rr.len() * 5000).collect();
    s.write_all(&flood)?;
    // Read until ferrolb is quiet for 3 s; fail as soon as more than 3 tables came.
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut again = 0usize;
    loop {
        match read_msg(&mut s) {
            Ok((2, b)) => {
                if b != [0, 0, 0, 0] {
                    again += 19 + b.len();
                }
                assert!(
                    again <= 3 * table,
                    "{again} bytes of UPDATEs after 5000 ROUTE-REFRESH (one table: {table})"
                );
            }
            Ok((3, b)) => bail!("NOTIFICATION {:?} after the ROUTE-REFRESH flood", &b[..2]),
            Ok(_) => {}
            Err(e) => {
                let timed_out = e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                });
                if timed_out {
                    break;
                }
                return Err(e);
            }
        }
    }
    eprintln!(
        "after 5000 ROUTE-REFRESH: {again} bytes of UPDATEs (one table {table}), peak RSS {:?} kB",
        f.rss_peak_kb()
    );
    assert!(again >= table, "at least one re-send: {again} < {table}");
    assert!(
        again <= 2 * table,
        "at most two re-sends: {again} > 2 × {table}"
    );
    assert!(f.is_alive(), "ferrolb died: {}", f.stderr_tail(20));
    assert!(
        !f.stderr().contains("session down"),
        "{}",
        f.stderr_tail(20)
    );
    stop_ok(&mut f)?;
    Ok(())
}

// ---------------------------------------------------------------- usage errors

/// `ferrolb announce ARGS` must refuse to start: exit 2 within 10 s, `want` on stderr.
fn usage_error(args: &[&str], want: &str) -> Result<()> {
    let dir = TestDir::new("announce-usage")?;
    let mut cmd = std::process::Command::new(FERROLB);
    cmd.arg("announce")
        .args([
            "--peer",
            "127.0.0.1:9",
            "--local-as",
            "64522",
            "--peer-as",
            "64512",
            "--router-id",
            SPEAKER,
        ])
        .args(args)
        .current_dir(dir.path());
    let mut f = Proc::spawn(cmd, dir.path(), "ferrolb-announce")?;
    let Some(st) = f.wait_exit(Duration::from_secs(10)) else {
        bail!(
            "ferrolb announce {args:?} kept running: {}",
            f.stderr_tail(10)
        );
    };
    assert_eq!(st.code(), Some(2), "{args:?}: {}", f.stderr_tail(10));
    assert!(
        f.stderr().contains(want),
        "{args:?}: stderr lacks {want:?}: {}",
        f.stderr_tail(10)
    );
    Ok(())
}

#[test]
fn announce_ebgp_multihop_0_is_a_usage_error() -> Result<()> {
    usage_error(
        &["--prefix", "172.17.254.1/32", "--ebgp-multihop", "0"],
        "--ebgp-multihop",
    )
}

#[test]
fn announce_next_hop_of_no_prefix_family_is_a_usage_error() -> Result<()> {
    // IPv4 and IPv6 prefixes over an IPv4 session with only an IPv6 next hop: the IPv6
    // routes have theirs, the IPv4 ones would get an IPv6 next hop and be dropped.
    usage_error(
        &[
            "--prefix",
            "172.17.254.1/32",
            "--prefix",
            "2001:db8:254::1/128",
            "--next-hop",
            "2001:db8:ff::2",
        ],
        "--next-hop",
    )?;
    // A next hop of a family no prefix has.
    usage_error(
        &[
            "--prefix",
            "172.17.254.1/32",
            "--next-hop",
            "2001:db8:ff::2",
        ],
        "--next-hop",
    )
}

// ---------------------------------------------------------------- cleanup

#[test]
fn guards_leave_no_namespaces_or_processes() -> Result<()> {
    let (names, pids) = {
        let test = "guards_leave_no_namespaces_or_processes";
        let Some(lab) = Lab::<Gobgpd>::start(test, 64512, SPEAKER, 64522)? else {
            return Ok(());
        };
        let mut f =
            lab.spawn(Announce::new(PEER, SPEAKER, 64522, 64512).prefixes(&["172.17.254.1/32"]))?;
        f.wait_for_line("established", T)?;
        let names = vec![lab.pair.a.name().to_string(), lab.pair.b.name().to_string()];
        let pids = vec![f.pid(), lab.d.pid().context("gobgpd pid")?];
        assert!(pids.iter().all(|p| pid_alive(*p)));
        (names, pids)
        // drop order: f, then lab (gobgpd, then the namespaces)
    };
    let left: Vec<String> = list_netns()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let alive: Vec<&u32> = pids.iter().filter(|p| pid_alive(**p)).collect();
    assert!(alive.is_empty(), "processes left behind: {alive:?}");
    Ok(())
}
