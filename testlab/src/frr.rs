//! FRR 8.4 `bgpd` (and `zebra` when routes must reach the kernel, and `bfdd` with
//! zebra when a neighbor has `bfd`: bgpd registers BFD peers through zebra, which
//! relays them to bfdd) in a namespace, run as
//! `-u frr -g frr -P 0` with its zserv socket, vty sockets and pid files in a per-daemon
//! run directory owned by `frr`; queried with `vtysh --vty_socket DIR -c '… json'`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bfdd::FRR_BFDD;
use crate::netns::Netns;
use crate::proc::Proc;
use crate::route::{Family, NeighborState, Origin, Route, RoutePath, SessionState};
use crate::util::{FRR_BGPD, FRR_ZEBRA, wait_until};

/// One `neighbor` of `router bgp`.
#[derive(Clone, Debug)]
pub struct FrrNeighbor {
    /// Address.
    pub address: String,
    /// `remote-as`.
    pub remote_as: u32,
    /// TCP MD5 `password`.
    pub password: Option<String>,
    /// `ebgp-multihop N`.
    pub ebgp_multihop: Option<u8>,
    /// `update-source`.
    pub update_source: Option<String>,
    /// Activated families (default IPv4 and IPv6 unicast).
    pub families: Vec<Family>,
    /// `timers KEEPALIVE HOLD` (hold; keepalive = hold/3).
    pub hold_time: Option<u32>,
    /// `passive`.
    pub passive: bool,
    /// `neighbor X bfd` (with `bfd profile NAME` when the config has a BFD profile).
    pub bfd: bool,
    /// Graceful restart helper for the neighbor (`neighbor X
    /// graceful-restart-helper`; FRR 8.4 sends and honours the N bit).
    pub graceful_restart_helper: bool,
}

/// A bfdd `profile` for the BFD-enabled neighbors (intervals in ms).
#[derive(Clone, Debug)]
pub struct FrrBfdProfile {
    /// Profile name.
    pub name: String,
    /// `receive-interval`.
    pub receive_interval_ms: u32,
    /// `transmit-interval`.
    pub transmit_interval_ms: u32,
    /// `detect-multiplier`.
    pub detect_multiplier: u8,
}

impl FrrNeighbor {
    /// IPv4+IPv6 unicast, no password.
    pub fn new(address: &str, remote_as: u32) -> FrrNeighbor {
        FrrNeighbor {
            address: address.to_string(),
            remote_as,
            password: None,
            ebgp_multihop: None,
            update_source: None,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            hold_time: None,
            passive: false,
            bfd: false,
            graceful_restart_helper: false,
        }
    }
}

/// FRR bgpd configuration (always with `no bgp ebgp-requires-policy` and
/// `no bgp network import-check`, and `timers bgp connect-retry 1` style fast reconnects).
#[derive(Clone, Debug)]
pub struct FrrConfig {
    /// Local AS.
    pub asn: u32,
    /// Router ID.
    pub router_id: String,
    /// Neighbors.
    pub neighbors: Vec<FrrNeighbor>,
    /// `maximum-paths N` in both unicast families (ECMP).
    pub maximum_paths: Option<u32>,
    /// Prefixes to originate with `network`.
    pub networks: Vec<String>,
    /// Run zebra too (kernel route install); otherwise bgpd runs with `-Z`.
    pub zebra: bool,
    /// Raw lines appended inside `router bgp` (before the address families).
    pub extra_router_lines: Vec<String>,
    /// bgpd listen addresses (`-l`; default all).
    pub listen_addresses: Vec<String>,
    /// The BFD profile of the `bfd` neighbors (bfdd defaults when `None`).
    pub bfd_profile: Option<FrrBfdProfile>,
}

impl FrrConfig {
    /// No neighbors, no zebra.
    pub fn new(asn: u32, router_id: &str) -> FrrConfig {
        FrrConfig {
            asn,
            router_id: router_id.to_string(),
            neighbors: vec![],
            maximum_paths: None,
            networks: vec![],
            zebra: false,
            extra_router_lines: vec![],
            listen_addresses: vec![],
            bfd_profile: None,
        }
    }

    /// Some neighbor uses BFD: zebra and bfdd run too.
    pub fn uses_bfd(&self) -> bool {
        self.neighbors.iter().any(|n| n.bfd)
    }

    /// The `bfdd.conf` text (its profile, if any).
    pub fn bfdd_conf(&self) -> String {
        let mut s = String::from("hostname flbfrr\nlog stdout debugging\n!\nbfd\n");
        if let Some(p) = &self.bfd_profile {
            s += &format!(
                " profile {}\n  receive-interval {}\n  transmit-interval {}\n  detect-multiplier {}\n !\n",
                p.name, p.receive_interval_ms, p.transmit_interval_ms, p.detect_multiplier
            );
        }
        s += "!\n";
        s
    }

    /// Adds a neighbor (builder style).
    pub fn neighbor(mut self, n: FrrNeighbor) -> Self {
        self.neighbors.push(n);
        self
    }

    /// The `bgpd.conf` text.
    pub fn to_conf(&self) -> String {
        let mut s = String::from("hostname flbfrr\nlog stdout debugging\n!\n");
        s += &format!(
            "router bgp {}\n bgp router-id {}\n no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n",
            self.asn, self.router_id
        );
        for n in &self.neighbors {
            s += &format!(" neighbor {} remote-as {}\n", n.address, n.remote_as);
            s += &format!(" neighbor {} timers connect 1\n", n.address);
            if let Some(p) = &n.password {
                s += &format!(" neighbor {} password {p}\n", n.address);
            }
            if let Some(t) = n.ebgp_multihop {
                s += &format!(" neighbor {} ebgp-multihop {t}\n", n.address);
            }
            if let Some(u) = &n.update_source {
                s += &format!(" neighbor {} update-source {u}\n", n.address);
            }
            if let Some(h) = n.hold_time {
                s += &format!(" neighbor {} timers {} {h}\n", n.address, (h / 3).max(1));
            }
            if n.passive {
                s += &format!(" neighbor {} passive\n", n.address);
            }
            if n.graceful_restart_helper {
                s += &format!(" neighbor {} graceful-restart-helper\n", n.address);
            }
            if n.bfd {
                s += &format!(" neighbor {} bfd\n", n.address);
                if let Some(p) = &self.bfd_profile {
                    s += &format!(" neighbor {} bfd profile {}\n", n.address, p.name);
                }
            }
        }
        for l in &self.extra_router_lines {
            s += &format!(" {l}\n");
        }
        for (fam, kw) in [(Family::Ipv4Unicast, "ipv4"), (Family::Ipv6Unicast, "ipv6")] {
            s += &format!(" address-family {kw} unicast\n");
            if let Some(m) = self.maximum_paths {
                s += &format!("  maximum-paths {m}\n  maximum-paths ibgp {m}\n");
            }
            for net in self.networks.iter().filter(|n| Family::of(n) == fam) {
                s += &format!("  network {net}\n");
            }
            for n in self.neighbors.iter().filter(|n| n.families.contains(&fam)) {
                s += &format!("  neighbor {} activate\n", n.address);
            }
            s += " exit-address-family\n";
        }
        s += "!\n";
        s
    }
}

/// Running FRR daemons (bgpd, optionally zebra), killed by PID on drop.
#[derive(Debug)]
pub struct Frr {
    ns: String,
    ns_dir: PathBuf,
    run_dir: PathBuf,
    config: FrrConfig,
    zebra: Option<Proc>,
    bfdd: Option<Proc>,
    bgpd: Option<Proc>,
    starts: u32,
}

impl Frr {
    /// Writes the config and starts zebra (if configured) and bgpd; returns when vtysh
    /// answers `show bgp summary`.
    pub fn start(ns: &Netns, config: FrrConfig) -> Result<Frr> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run_dir = ns.dir().join(format!(
            "frr-{}",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&run_dir)?;
        std::fs::write(run_dir.join("bgpd.conf"), config.to_conf())?;
        std::fs::write(run_dir.join("zebra.conf"), "hostname flbfrr\n")?;
        std::fs::write(run_dir.join("bfdd.conf"), config.bfdd_conf())?;
        chown_frr(&run_dir)?;
        let mut f = Frr {
            ns: ns.name().to_string(),
            ns_dir: ns.dir().to_path_buf(),
            run_dir,
            config,
            zebra: None,
            bfdd: None,
            bgpd: None,
            starts: 0,
        };
        if f.config.zebra || f.config.uses_bfd() {
            f.start_zebra()?;
        }
        if f.config.uses_bfd() {
            f.start_bfdd()?;
        }
        f.start_bgpd()?;
        Ok(f)
    }

    fn base_cmd(&self, bin: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns", "exec", &self.ns, bin, "-u", "frr", "-g", "frr", "-P", "0", "-z",
        ])
        .arg(self.run_dir.join("zserv.api"))
        .arg("--vty_socket")
        .arg(&self.run_dir);
        c
    }

    fn start_zebra(&mut self) -> Result<()> {
        let mut c = self.base_cmd(FRR_ZEBRA);
        c.arg("-i")
            .arg(self.run_dir.join("zebra.pid"))
            .arg("-f")
            .arg(self.run_dir.join("zebra.conf"));
        let p = Proc::spawn(c, &self.ns_dir, &format!("zebra-{}", self.starts))?;
        let api = self.run_dir.join("zserv.api");
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            api.exists().then_some(())
        })
        .with_context(|| {
            format!(
                "zebra did not create {}: {}",
                api.display(),
                p.stderr_tail(20)
            )
        })?;
        self.zebra = Some(p);
        Ok(())
    }

    /// bfdd on the same zserv socket and vty directory (its own `--bfdctl` socket).
    pub fn start_bfdd(&mut self) -> Result<()> {
        let mut c = self.base_cmd(FRR_BFDD);
        c.arg("-i")
            .arg(self.run_dir.join("bfdd.pid"))
            .arg("-f")
            .arg(self.run_dir.join("bfdd.conf"))
            .arg("--bfdctl")
            .arg(self.run_dir.join("bfdd.sock"));
        let label = format!("bfdd-{}", self.starts);
        let mut p = Proc::spawn(c, &self.ns_dir, &label)?;
        if wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.vtysh("show bfd peers").ok()
        })
        .is_none()
        {
            bail!(
                "bfdd not answering vtysh (alive: {}): {}",
                p.is_alive(),
                p.stderr_tail(20)
            );
        }
        self.bfdd = Some(p);
        Ok(())
    }

    /// SIGKILL bfdd (bgpd and zebra keep running).
    pub fn kill_bfdd(&mut self) {
        if let Some(mut p) = self.bfdd.take() {
            p.kill();
        }
    }

    /// bfdd's peers (`show bfd peers json`).
    pub fn bfd_peers(&self) -> Result<Vec<crate::bfdd::BfdPeerState>> {
        crate::bfdd::parse_peers(&self.vtysh("show bfd peers json")?)
    }

    /// Every `last…` field of a neighbor in `show bgp neighbors X json` (why and
    /// when it last went down, the last NOTIFICATION), as `key: value` lines.
    pub fn last_reset(&self, address: &str) -> Result<String> {
        let out = self.vtysh(&format!("show bgp neighbors {address} json"))?;
        let v: Value = serde_json::from_str(&out).context("neighbor json")?;
        let mut s = String::new();
        if let Some(o) = v[address].as_object() {
            for (k, x) in o.iter().filter(|(k, _)| k.starts_with("last")) {
                s += &format!("{k}: {x}\n");
            }
        }
        Ok(s)
    }

    fn start_bgpd(&mut self) -> Result<()> {
        let mut c = self.base_cmd(FRR_BGPD);
        c.arg("-i")
            .arg(self.run_dir.join("bgpd.pid"))
            .arg("-f")
            .arg(self.run_dir.join("bgpd.conf"));
        if !self.config.zebra {
            c.arg("-Z");
        }
        for l in &self.config.listen_addresses {
            c.args(["-l", l]);
        }
        let label = format!("bgpd-{}", self.starts);
        self.starts += 1;
        let mut p = Proc::spawn(c, &self.ns_dir, &label)?;
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.vtysh("show bgp summary").ok()
        });
        if ready.is_none() {
            bail!(
                "FRR bgpd not answering vtysh (alive: {}); stdout/stderr tail:\n{}\n{}",
                p.is_alive(),
                p.stdout()
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n"),
                p.stderr_tail(20)
            );
        }
        self.bgpd = Some(p);
        Ok(())
    }

    /// The config.
    pub fn config(&self) -> &FrrConfig {
        &self.config
    }

    /// The run dir (vty sockets, pid files, configs).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// PID of bgpd.
    pub fn bgpd_pid(&self) -> Option<u32> {
        self.bgpd.as_ref().map(Proc::pid)
    }

    /// PIDs of all FRR daemons it started.
    pub fn pids(&self) -> Vec<u32> {
        self.bgpd
            .iter()
            .chain(self.zebra.iter())
            .chain(self.bfdd.iter())
            .map(Proc::pid)
            .collect()
    }

    /// bgpd's process (its log goes to stdout).
    pub fn bgpd_proc(&mut self) -> Option<&mut Proc> {
        self.bgpd.as_mut()
    }

    /// SIGKILL bgpd (zebra keeps running).
    pub fn kill_bgpd(&mut self) {
        if let Some(mut p) = self.bgpd.take() {
            p.kill();
        }
    }

    /// Kills bgpd and starts it again with the same config.
    pub fn restart_bgpd(&mut self) -> Result<()> {
        self.kill_bgpd();
        let _ = std::fs::remove_file(self.run_dir.join("bgpd.vty"));
        self.start_bgpd()
    }

    /// `vtysh --vty_socket DIR -c CMD` in the namespace; stdout on success.
    pub fn vtysh(&self, cmd: &str) -> Result<String> {
        self.vtysh_many(&[cmd])
    }

    /// Several `-c` commands in one vtysh call (e.g. `conf t`, `router bgp N`, …).
    pub fn vtysh_many(&self, cmds: &[&str]) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "vtysh", "--vty_socket"])
            .arg(&self.run_dir);
        for x in cmds {
            c.args(["-c", x]);
        }
        let out = c.output().context("run vtysh")?;
        let so = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || so.contains("% Unknown command") {
            bail!(
                "vtysh {cmds:?}: {} {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                so.trim()
            );
        }
        Ok(so)
    }

    /// Applies config lines under `router bgp ASN` (e.g. `neighbor X shutdown`).
    pub fn configure_router(&self, lines: &[&str]) -> Result<()> {
        let head = format!("router bgp {}", self.config.asn);
        let mut v = vec!["configure terminal", head.as_str()];
        v.extend_from_slice(lines);
        self.vtysh_many(&v).map(|_| ())
    }

    /// All neighbors (`show bgp neighbors json`).
    pub fn neighbors(&self) -> Result<Vec<NeighborState>> {
        parse_neighbors(&self.vtysh("show bgp neighbors json")?)
    }

    /// State of one neighbor.
    pub fn neighbor_state(&self, address: &str) -> Result<SessionState> {
        self.neighbors()?
            .into_iter()
            .find(|n| n.address == address)
            .map(|n| n.state)
            .with_context(|| format!("FRR has no neighbor {address}"))
    }

    /// Waits until `address` is Established.
    pub fn wait_established(&self, address: &str, timeout: Duration) -> Result<()> {
        let mut last = None;
        wait_until(timeout, Duration::from_millis(100), || {
            let s = self.neighbor_state(address).ok();
            let ok = s.as_ref().is_some_and(SessionState::is_established);
            last = s;
            ok.then_some(())
        })
        .with_context(|| {
            format!("FRR neighbor {address} not Established within {timeout:?} (last {last:?})")
        })
    }

    /// The BGP table of a family (`show bgp ipv4|ipv6 unicast json detail`).
    pub fn rib(&self, family: Family) -> Result<Vec<Route>> {
        let kw = match family {
            Family::Ipv4Unicast => "ipv4",
            Family::Ipv6Unicast => "ipv6",
        };
        parse_rib_detail(&self.vtysh(&format!("show bgp {kw} unicast json detail"))?)
    }

    /// Waits until the table of `family` holds exactly `n` prefixes.
    pub fn wait_rib_count(
        &self,
        family: Family,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Route>> {
        let mut last = 0;
        wait_until(timeout, Duration::from_millis(200), || {
            let r = self.rib(family).ok()?;
            last = r.len();
            (r.len() == n).then_some(r)
        })
        .with_context(|| {
            format!("FRR RIB {family:?}: {last} prefixes, wanted {n} within {timeout:?}")
        })
    }
}

fn chown_frr(dir: &Path) -> Result<()> {
    let st = Command::new("chown")
        .args(["-R", "frr:frr"])
        .arg(dir)
        .status()
        .context("chown")?;
    if !st.success() {
        bail!("chown -R frr:frr {} failed", dir.display());
    }
    Ok(())
}

/// Parses `show bgp neighbors json`: an object keyed by neighbor address with `bgpState`,
/// `remoteAs` and per-family `acceptedPrefixCounter`.
pub fn parse_neighbors(json: &str) -> Result<Vec<NeighborState>> {
    let v: Value = serde_json::from_str(json.trim()).context("FRR neighbors JSON")?;
    let obj = v.as_object().context("FRR neighbors JSON: not an object")?;
    let mut out: Vec<NeighborState> = obj
        .iter()
        .filter(|(_, n)| n.get("bgpState").is_some())
        .map(|(addr, n)| NeighborState {
            address: addr.clone(),
            peer_as: n["remoteAs"].as_u64().and_then(|a| u32::try_from(a).ok()),
            state: SessionState::parse(n["bgpState"].as_str().unwrap_or("")),
            received: n["addressFamilyInfo"].as_object().map(|afs| {
                afs.values()
                    .filter_map(|f| f["acceptedPrefixCounter"].as_u64())
                    .sum()
            }),
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// Parses `show bgp … json detail` (FRR 8.4): `routes` maps a prefix to an array whose
/// first element is the prefix header and the others are paths with `aspath.string`,
/// `origin`, `metric`, `locPrf`, `community.list`, `largeCommunity.list`, `nexthops`,
/// `bestpath.overall` and `peer.peerId`.
pub fn parse_rib_detail(json: &str) -> Result<Vec<Route>> {
    let v: Value = serde_json::from_str(json.trim()).context("FRR rib JSON")?;
    let Some(routes) = v["routes"].as_object() else {
        return Ok(vec![]);
    };
    let mut out: Vec<Route> = routes
        .iter()
        .map(|(prefix, arr)| Route {
            prefix: prefix.clone(),
            paths: arr
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p.get("aspath").is_some() || p.get("nexthops").is_some())
                .map(parse_frr_path)
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    Ok(out)
}

fn parse_frr_path(p: &Value) -> RoutePath {
    let as_path = p["aspath"]["string"]
        .as_str()
        .map(|s| {
            s.split(|c: char| !c.is_ascii_digit())
                .filter_map(|t| t.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let nexthops: Vec<&Value> = p["nexthops"].as_array().into_iter().flatten().collect();
    let nh = nexthops
        .iter()
        .find(|n| n["scope"].as_str() != Some("link-local"))
        .or(nexthops.first())
        .and_then(|n| n["ip"].as_str())
        .unwrap_or_default()
        .to_string();
    let list = |k: &str| -> Vec<String> {
        p[k]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect()
    };
    RoutePath {
        nexthop: nh,
        as_path,
        communities: list("community")
            .into_iter()
            .map(|c| well_known_to_numeric(&c))
            .collect(),
        large_communities: list("largeCommunity"),
        local_pref: p["locPrf"].as_u64().and_then(|n| u32::try_from(n).ok()),
        med: p["metric"].as_u64().and_then(|n| u32::try_from(n).ok()),
        origin: p["origin"].as_str().and_then(Origin::parse),
        from: p["peer"]["peerId"].as_str().map(str::to_string),
        best: p["bestpath"]["overall"].as_bool().unwrap_or(false),
        stale: p["stale"].as_bool().unwrap_or(false),
    }
}

/// FRR prints well-known communities by name; map them back to `A:B`.
fn well_known_to_numeric(c: &str) -> String {
    match c {
        "noExport" | "no-export" => "65535:65281".into(),
        "noAdvertise" | "no-advertise" => "65535:65282".into(),
        "localAs" | "local-AS" | "no-export-subconfed" => "65535:65283".into(),
        "blackhole" => "65535:666".into(),
        "graceful-shutdown" | "gshut" => "65535:0".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbors_json() {
        let n = parse_neighbors(include_str!("testdata/frr-neighbors.json")).unwrap();
        let g = n.iter().find(|n| n.address == "198.18.0.1").unwrap();
        assert_eq!(g.state, SessionState::Established);
        assert_eq!(g.peer_as, Some(4_200_000_001));
    }

    #[test]
    fn rib_detail_local_networks() {
        let r = parse_rib_detail(include_str!("testdata/frr-rib-ipv4-detail.json")).unwrap();
        assert_eq!(r.len(), 3);
        let p = &r[0];
        assert_eq!(p.prefix, "172.17.254.10/32");
        assert_eq!(p.paths.len(), 1);
        let path = &p.paths[0];
        assert!(path.as_path.is_empty());
        assert_eq!(path.communities, vec!["64513:100", "64513:200"]);
        assert_eq!(path.large_communities, vec!["64513:1:1"]);
        assert_eq!(path.med, Some(50));
        assert_eq!(path.origin, Some(Origin::Igp));
        assert!(path.best);
    }

    #[test]
    fn rib_detail_received_ebgp() {
        let r =
            parse_rib_detail(include_str!("testdata/frr-rib-ipv4-received-detail.json")).unwrap();
        let p = r[0].best().unwrap();
        assert_eq!(r[0].prefix, "172.17.254.1/32");
        assert_eq!(p.nexthop, "198.18.0.2");
        assert_eq!(p.as_path, vec![4_200_000_001]);
        assert_eq!(p.communities, vec!["64512:100", "65535:65281"]);
        assert_eq!(p.large_communities, vec!["4200000001:1:2"]);
        assert_eq!(p.med, Some(7));
        assert_eq!(p.from.as_deref(), Some("198.18.0.2"));
    }

    #[test]
    fn conf_has_password_and_activate() {
        let mut n = FrrNeighbor::new("198.18.0.2", 4_200_000_001);
        n.password = Some("pw".into());
        n.families = vec![Family::Ipv4Unicast];
        let mut c = FrrConfig::new(64512, "198.18.0.1").neighbor(n);
        c.maximum_paths = Some(8);
        let t = c.to_conf();
        assert!(t.contains("neighbor 198.18.0.2 password pw"));
        assert!(t.contains("no bgp ebgp-requires-policy"));
        assert!(t.contains("maximum-paths 8"));
        let v6 = t.split("address-family ipv6").nth(1).unwrap();
        assert!(!v6.contains("activate"));
    }
}
