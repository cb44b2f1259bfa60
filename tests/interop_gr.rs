//! Interop: graceful restart (RFC 4724, with RFC 8538's Notification/Hard Reset) of
//! `ferrolb announce --graceful-restart` against gobgpd 3.10, FRR 8.4 bgpd and BIRD 2.0,
//! each configured as a graceful restart helper, in private network namespaces.
//!
//! ```text
//!  netns A (ferrolb announce)  eth0 198.18.0.2/24
//!            |  veth
//!  netns B (gobgpd|bgpd|bird)  eth0 198.18.0.1/24   (passive, helper)
//! ```
//! Per daemon:
//! - ferrolb announces two prefixes and is SIGKILLed: the router keeps both (stale, where
//!   it shows that) after it has seen the session close; a new run (the R bit set from the
//!   restart marker) announces only one: after its End-of-RIB the router has exactly that
//!   one, and that one never left the router's table in between (polled every 50 ms).
//!   gobgpd and FRR show how they read our capability: restart time, the Forwarding bit
//!   of IPv4 unicast, and (gobgpd's raw flags) the R and N bits of the restarted run.
//! - `--hard-reset` + SIGTERM: the routes are gone at once (well before the restart
//!   time) and the router saw the Hard Reset (gobgpd, FRR: N bit) or the Cease (BIRD 2.0
//!   has no N bit, so a plain 6/2 flushes).
//! - The helper side: gobgpd restarted gracefully (`-r`) defers its best-path selection
//!   until End-of-RIB; ferrolb's table and End-of-RIB bring the routes back in ~1 s.
//!
//! Each test skips with a printed reason when not root or a daemon is missing, and fails
//! instead in CI.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ferrolb_testlab::*;

const FERROLB: &str = env!("CARGO_BIN_EXE_ferrolb");
const T: Duration = Duration::from_secs(30);
const SPEAKER: &str = "198.18.0.2";
const PEER: &str = "198.18.0.1";
const KEPT: &str = "172.17.254.1/32";
const DROPPED: &str = "172.17.254.2/32";
/// Our restart time: the routes must go long before it on a Hard Reset.
const RESTART_TIME: u64 = 60;

/// A graceful-restart helper daemon in the peer namespace.
trait Helper: Sized {
    const NAME: &'static str;
    const BINS: &'static [&'static str];
    /// Starts it in `ns` (AS 64512, router id [`PEER`]) with [`SPEAKER`] (AS 64522) as a
    /// passive IPv4 neighbor it helps.
    fn start_helper(ns: &Netns) -> Result<Self>;
    fn routes(&self) -> Result<Vec<Route>>;
    fn state(&self) -> Result<SessionState>;
    /// What it logged or shows about the session's last end.
    fn last_down(&self) -> Result<String>;
    /// Whether it marks kept routes as stale (BIRD does not show it).
    const SHOWS_STALE: bool;
    /// Checks what it shows of our graceful restart capability, where it shows it.
    fn check_our_capability(&self) -> Result<()> {
        Ok(())
    }
}

impl Helper for Gobgpd {
    const NAME: &'static str = "gobgpd";
    const BINS: &'static [&'static str] = &["gobgpd", "gobgp"];
    const SHOWS_STALE: bool = true;
    fn start_helper(ns: &Netns) -> Result<Self> {
        let mut n = GobgpNeighbor::new(SPEAKER, 64522);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        n.graceful_restart = Some(120);
        Gobgpd::start(ns, GobgpdConfig::new(64512, PEER).neighbor(n))
    }
    fn routes(&self) -> Result<Vec<Route>> {
        self.rib(Family::Ipv4Unicast)
    }
    fn state(&self) -> Result<SessionState> {
        self.neighbor_state(SPEAKER)
    }
    fn last_down(&self) -> Result<String> {
        Ok(self.log())
    }
    /// gobgpd's view of our capability after the restart, as its API's protobuf
    /// (`apipb.GracefulRestartCapability`, base64): `08 0c` flags 12 = R (8) + N (4),
    /// `10 3c` restart time 60, `1a 09` one tuple: `0a 04 08 01 10 01` IPv4 unicast,
    /// `10 80 01` flags 128 = F.
    fn check_our_capability(&self) -> Result<()> {
        let out = self.cli(&["-j", "neighbor", SPEAKER])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let gr = v["state"]["remote_cap"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type_url"] == "type.googleapis.com/apipb.GracefulRestartCapability")
            .with_context(|| format!("no graceful restart capability from us: {out}"))?;
        ensure!(gr["value"] == "CAwQPBoJCgQIARABEIAB", "{gr}");
        Ok(())
    }
}

impl Helper for Frr {
    const NAME: &'static str = "FRR";
    const BINS: &'static [&'static str] = &["vtysh", util::FRR_BGPD];
    const SHOWS_STALE: bool = true;
    fn start_helper(ns: &Netns) -> Result<Self> {
        let mut n = FrrNeighbor::new(SPEAKER, 64522);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        n.graceful_restart_helper = true;
        Frr::start(ns, FrrConfig::new(64512, PEER).neighbor(n))
    }
    fn routes(&self) -> Result<Vec<Route>> {
        self.rib(Family::Ipv4Unicast)
    }
    fn state(&self) -> Result<SessionState> {
        self.neighbor_state(SPEAKER)
    }
    fn last_down(&self) -> Result<String> {
        self.last_reset(SPEAKER)
    }
    /// FRR shows what it read from our OPEN: the restart time, the Forwarding bit of
    /// IPv4 unicast ("preserved"), "Restart" mode (families advertised), our End-of-RIB.
    fn check_our_capability(&self) -> Result<()> {
        let out = self.vtysh(&format!("show bgp neighbors {SPEAKER} json"))?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let n = &v[SPEAKER];
        let caps = &n["neighborCapabilities"];
        ensure!(caps["gracefulRestart"] == "advertisedAndReceived", "{caps}");
        ensure!(
            caps["gracefulRestartRemoteTimerMsecs"] == RESTART_TIME * 1000,
            "{caps}"
        );
        ensure!(
            caps["addressFamiliesByPeer"]["ipv4Unicast"]["preserved"] == true,
            "the F bit: {caps}"
        );
        let gr = &n["gracefulRestartInfo"];
        ensure!(gr["remoteGrMode"] == "Restart", "{gr}");
        ensure!(gr["endOfRibRecv"]["ipv4Unicast"] == true, "{gr}");
        Ok(())
    }
}

impl Helper for Bird {
    const NAME: &'static str = "BIRD";
    const BINS: &'static [&'static str] = &["bird", "birdc"];
    const SHOWS_STALE: bool = false;
    fn start_helper(ns: &Netns) -> Result<Self> {
        let mut n = BirdNeighbor::new(SPEAKER, 64522);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        n.graceful_restart = true;
        Bird::start(ns, BirdConfig::new(64512, PEER).neighbor(n))
    }
    fn routes(&self) -> Result<Vec<Route>> {
        self.rib(Family::Ipv4Unicast)
    }
    fn state(&self) -> Result<SessionState> {
        self.neighbor_state(SPEAKER)
    }
    fn last_down(&self) -> Result<String> {
        self.birdc("show protocols all")
    }
}

struct Lab<D> {
    d: D,
    pair: Pair,
    state_dir: PathBuf,
}

impl<D: Helper> Lab<D> {
    fn start(test: &str) -> Result<Option<Lab<D>>> {
        if !require_root_or_skip(test, D::BINS) {
            return Ok(None);
        }
        let pair = Pair::new(&["198.18.0.2/24"], &["198.18.0.1/24"])?;
        let d = D::start_helper(&pair.b)?;
        let state_dir = pair.a.dir().join("ferrolb-state");
        Ok(Some(Lab { d, pair, state_dir }))
    }

    /// `ferrolb announce --graceful-restart` of `prefixes`, with `extra` arguments, up
    /// to its `initial-routes-sent` line (our End-of-RIB is written).
    fn announce(&self, prefixes: &[&str], extra: &[&str]) -> Result<(Proc, Instant)> {
        let mut c = std::process::Command::new(FERROLB);
        c.args(["announce", "--peer", PEER, "--source", SPEAKER])
            .args([
                "--local-as",
                "64522",
                "--peer-as",
                "64512",
                "--connect-retry",
                "1",
            ])
            .args([
                "--graceful-restart",
                "--restart-time",
                &RESTART_TIME.to_string(),
            ])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(extra)
            .env("RUST_LOG", "debug");
        for p in prefixes {
            c.args(["--prefix", p]);
        }
        let mut f = self.pair.a.spawn_labeled(c, "ferrolb-announce")?;
        f.wait_for_line("established", T)?;
        f.wait_for_line("initial-routes-sent", T)?;
        Ok((f, Instant::now()))
    }

    fn prefixes(&self) -> Result<Vec<String>> {
        Ok(self.d.routes()?.into_iter().map(|r| r.prefix).collect())
    }

    /// Polls until the RIB holds exactly `want`.
    fn wait_rib(&self, want: &[&str], timeout: Duration) -> Result<Vec<Route>> {
        let t0 = Instant::now();
        loop {
            let rib = self.d.routes()?;
            if rib
                .iter()
                .map(|r| r.prefix.as_str())
                .eq(want.iter().copied())
            {
                return Ok(rib);
            }
            if t0.elapsed() > timeout {
                bail!("{} RIB {:?}, want {want:?}", D::NAME, self.prefixes()?);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn stale(rib: &[Route]) -> Vec<bool> {
    rib.iter()
        .map(|r| r.paths.iter().all(|p| p.stale))
        .collect()
}

/// SIGKILL keeps both routes; the next run announcing one leaves exactly that one, which
/// never left the table.
fn sigkill_then_restart_with_one<D: Helper>(test: &str) -> Result<()> {
    let Some(lab) = Lab::<D>::start(test)? else {
        return Ok(());
    };
    let (mut first, _) = lab.announce(&[KEPT, DROPPED], &[])?;
    let rib = lab.wait_rib(&[KEPT, DROPPED], T)?;
    assert_eq!(stale(&rib), [false, false]);
    ensure!(
        lab.state_dir.join("announce-198.18.0.1-179").exists(),
        "the restart marker is written"
    );

    // A crash: the kernel closes the connection, no NOTIFICATION.
    first.kill();
    let t_kill = Instant::now();
    wait_until(T, Duration::from_millis(50), || {
        lab.d
            .state()
            .ok()
            .filter(|s| *s != SessionState::Established)
    })
    .with_context(|| format!("{} never saw the session close", D::NAME))?;
    let seen_down = t_kill.elapsed();
    // For 2 s after the close: both still there at every poll.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        lab.wait_rib(&[KEPT, DROPPED], Duration::ZERO)
            .with_context(|| format!("{:?} after the close", t0.elapsed()))?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let rib = lab.wait_rib(&[KEPT, DROPPED], Duration::ZERO)?;
    if D::SHOWS_STALE {
        assert_eq!(stale(&rib), [true, true], "{rib:?}");
    }

    // The new run announces only KEPT. Poll the table until it holds exactly KEPT:
    // KEPT is there at every poll.
    let mut c = std::process::Command::new(FERROLB);
    c.args(["announce", "--peer", PEER, "--source", SPEAKER])
        .args([
            "--local-as",
            "64522",
            "--peer-as",
            "64512",
            "--connect-retry",
            "1",
        ])
        .args([
            "--graceful-restart",
            "--restart-time",
            &RESTART_TIME.to_string(),
        ])
        .arg("--state-dir")
        .arg(&lab.state_dir)
        .args(["--prefix", KEPT])
        .env("RUST_LOG", "debug");
    let mut second = lab.pair.a.spawn_labeled(c, "ferrolb-announce-2")?;
    let t_start = Instant::now();
    let mut polls = 0u32;
    let mut sent_at: Option<Duration> = None;
    let settled = loop {
        let now = lab.prefixes()?;
        polls += 1;
        ensure!(
            now.iter().any(|p| p == KEPT),
            "{KEPT} left {}'s table after {:?} (poll {polls}): {now:?}",
            D::NAME,
            t_start.elapsed()
        );
        if sent_at.is_none() && second.stdout().contains("initial-routes-sent") {
            sent_at = Some(t_start.elapsed());
        }
        if now == [KEPT] {
            break t_start.elapsed();
        }
        ensure!(
            t_start.elapsed() < T,
            "{} never dropped {DROPPED}: {now:?}",
            D::NAME
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = second.stdout();
    ensure!(stdout.contains("initial-routes-sent"), "{stdout}");
    ensure!(
        second.stderr().contains("restarting=true"),
        "the second run found the marker and sets the R bit"
    );
    lab.d.check_our_capability()?;
    // A moment later KEPT is still there and no longer stale.
    std::thread::sleep(Duration::from_millis(500));
    let rib = lab.wait_rib(&[KEPT], Duration::ZERO)?;
    assert_eq!(stale(&rib), [false], "{rib:?}");
    eprintln!(
        "{}: session seen down {seen_down:?} after SIGKILL; restart: End-of-RIB written at \
         {sent_at:?}, {DROPPED} gone {settled:?} after the start, {KEPT} present at all {polls} polls",
        D::NAME
    );
    // Stopping without --hard-reset keeps the routes too (a rollout).
    second.signal("TERM")?;
    ensure!(
        second
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    std::thread::sleep(Duration::from_secs(1));
    lab.wait_rib(&[KEPT], Duration::ZERO)
        .context("SIGTERM without --hard-reset keeps the route")?;
    Ok(())
}

/// `--hard-reset` + SIGTERM: the router drops the routes at once; returns what it shows
/// about the session's end.
fn hard_reset_drops_at_once<D: Helper>(test: &str) -> Result<Option<String>> {
    let Some(lab) = Lab::<D>::start(test)? else {
        return Ok(None);
    };
    let (mut f, _) = lab.announce(&[KEPT, DROPPED], &["--hard-reset"])?;
    lab.wait_rib(&[KEPT, DROPPED], T)?;
    f.signal("TERM")?;
    let t0 = Instant::now();
    ensure!(
        f.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    lab.wait_rib(&[], Duration::from_secs(3))
        .context("routes kept after a Hard Reset")?;
    let gone = t0.elapsed();
    ensure!(gone < Duration::from_secs(RESTART_TIME / 4));
    ensure!(
        !lab.state_dir.join("announce-198.18.0.1-179").exists(),
        "ending with withdrawal removes the restart marker"
    );
    eprintln!(
        "{}: routes gone {gone:?} after SIGTERM --hard-reset",
        D::NAME
    );
    Ok(Some(lab.d.last_down()?))
}

#[test]
fn gobgpd_helper_sigkill_keeps_routes_restart_drops_the_unannounced() -> Result<()> {
    sigkill_then_restart_with_one::<Gobgpd>(
        "gobgpd_helper_sigkill_keeps_routes_restart_drops_the_unannounced",
    )
}

#[test]
fn frr_helper_sigkill_keeps_routes_restart_drops_the_unannounced() -> Result<()> {
    sigkill_then_restart_with_one::<Frr>(
        "frr_helper_sigkill_keeps_routes_restart_drops_the_unannounced",
    )
}

#[test]
fn bird_helper_sigkill_keeps_routes_restart_drops_the_unannounced() -> Result<()> {
    sigkill_then_restart_with_one::<Bird>(
        "bird_helper_sigkill_keeps_routes_restart_drops_the_unannounced",
    )
}

#[test]
fn gobgpd_hard_reset_on_sigterm() -> Result<()> {
    let Some(log) = hard_reset_drops_at_once::<Gobgpd>("gobgpd_hard_reset_on_sigterm")? else {
        return Ok(());
    };
    ensure!(
        log.contains("Subcode=9") && log.contains("Reason=hard-reset"),
        "gobgpd should log the Hard Reset:\n{log}"
    );
    Ok(())
}

#[test]
fn frr_hard_reset_on_sigterm() -> Result<()> {
    let Some(last) = hard_reset_drops_at_once::<Frr>("frr_hard_reset_on_sigterm")? else {
        return Ok(());
    };
    ensure!(
        last.contains("lastNotificationHardReset: true")
            && last.contains("Cease/Administrative Shutdown"),
        "FRR should show a Hard Reset carrying 6/2:\n{last}"
    );
    Ok(())
}

#[test]
fn bird_cease_on_sigterm() -> Result<()> {
    // BIRD 2.0 has no N bit: the plain Cease 6/2 is what flushes.
    let Some(shown) = hard_reset_drops_at_once::<Bird>("bird_cease_on_sigterm")? else {
        return Ok(());
    };
    ensure!(
        shown.contains("Received: Administrative shutdown"),
        "BIRD should show the Cease:\n{shown}"
    );
    Ok(())
}

/// The control: without `--graceful-restart` the same SIGKILL makes BIRD drop the
/// routes as soon as it sees the close (so the kept routes above are graceful restart).
#[test]
fn bird_without_graceful_restart_drops_routes_on_sigkill() -> Result<()> {
    let test = "bird_without_graceful_restart_drops_routes_on_sigkill";
    let Some(lab) = Lab::<Bird>::start(test)? else {
        return Ok(());
    };
    let mut c = std::process::Command::new(FERROLB);
    c.args(["announce", "--peer", PEER, "--source", SPEAKER])
        .args([
            "--local-as",
            "64522",
            "--peer-as",
            "64512",
            "--connect-retry",
            "1",
        ])
        .args(["--prefix", KEPT, "--prefix", DROPPED]);
    let mut f = lab.pair.a.spawn_labeled(c, "ferrolb-announce")?;
    f.wait_for_line("initial-routes-sent", T)?;
    lab.wait_rib(&[KEPT, DROPPED], T)?;
    f.kill();
    lab.wait_rib(&[], Duration::from_secs(3))?;
    Ok(())
}

/// The helper side: gobgpd restarts gracefully itself (`-r`, R bit) and, as RFC 4724's
/// restarting speaker, defers its best-path selection until its peers' End-of-RIB; ferrolb
/// sends its table and End-of-RIB at once, so the routes are back in about a second, far
/// from gobgpd's 360 s deferral limit.
#[test]
fn gobgpd_restarting_gets_our_table_and_end_of_rib() -> Result<()> {
    let test = "gobgpd_restarting_gets_our_table_and_end_of_rib";
    if !require_root_or_skip(test, Gobgpd::BINS) {
        return Ok(());
    }
    let pair = Pair::new(&["198.18.0.2/24"], &["198.18.0.1/24"])?;
    let mut n = GobgpNeighbor::new(SPEAKER, 64522);
    n.passive = true;
    n.families = vec![Family::Ipv4Unicast];
    n.graceful_restart = Some(120);
    n.graceful_restart_helper_only = false;
    let g = Gobgpd::start(&pair.b, GobgpdConfig::new(64512, PEER).neighbor(n))?;
    let state_dir = pair.a.dir().join("ferrolb-state");
    let mut lab = Lab {
        d: g,
        pair,
        state_dir,
    };
    let (mut f, _) = lab.announce(&[KEPT, DROPPED], &[])?;
    lab.wait_rib(&[KEPT, DROPPED], T)?;
    let t0 = Instant::now();
    lab.d.restart_graceful()?;
    f.wait_for_line("generation=2", T)?;
    lab.wait_rib(&[KEPT, DROPPED], Duration::from_secs(10))?;
    let back = t0.elapsed();
    let log = lab.d.log();
    eprintln!("routes back at the restarted gobgpd after {back:?}");
    ensure!(f.is_alive());
    ensure!(
        log.contains("Now syncing, suppress sending updates. start deferral timer"),
        "gobgpd restarted gracefully (deferral):\n{log}"
    );
    ensure!(
        log.contains("msg=\"EOR received\" AddressFamily=ipv4-unicast Key=198.18.0.2"),
        "gobgpd got our End-of-RIB"
    );
    ensure!(back < Duration::from_secs(10));
    Ok(())
}
