//! Debian's gobgpd 3.10 in a namespace: TOML config, gRPC API on a per-test port on
//! 127.0.0.1 inside the namespace, queried through `gobgp -j`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::netns::Netns;
use crate::proc::Proc;
use crate::route::{
    Family, NeighborState, Origin, Route, RoutePath, RouteSpec, SessionState, community_string,
};
use crate::util::{free_port, wait_until};

/// One `[[neighbors]]` entry.
#[derive(Clone, Debug)]
pub struct GobgpNeighbor {
    /// Neighbor address.
    pub address: String,
    /// Its AS.
    pub peer_as: u32,
    /// TCP MD5 password (`auth-password`).
    pub password: Option<String>,
    /// eBGP multihop TTL.
    pub multihop_ttl: Option<u8>,
    /// Families (`afi-safis`); default IPv4 and IPv6 unicast.
    pub families: Vec<Family>,
    /// Never connect, only accept.
    pub passive: bool,
    /// Source address for the session.
    pub local_address: Option<String>,
    /// Hold time (keepalive = hold/3); gobgpd default 90.
    pub hold_time: Option<u32>,
    /// Connect-retry seconds (default here: 1, so restarts are quick).
    pub connect_retry: u32,
    /// Graceful restart (RFC 4724) with the notification extension
    /// (RFC 8538) for every family: `[neighbors.graceful-restart.config]`
    /// enabled, notification-enabled, with this restart time.
    pub graceful_restart: Option<u32>,
    /// With `graceful_restart`: only help (`helper-only = true`, the default);
    /// `false` lets gobgpd restart gracefully itself ([`Gobgpd::restart_graceful`]).
    pub graceful_restart_helper_only: bool,
}

impl GobgpNeighbor {
    /// A neighbor with IPv4+IPv6 unicast and connect-retry 1 s.
    pub fn new(address: &str, peer_as: u32) -> GobgpNeighbor {
        GobgpNeighbor {
            address: address.to_string(),
            peer_as,
            password: None,
            multihop_ttl: None,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            passive: false,
            local_address: None,
            hold_time: None,
            connect_retry: 1,
            graceful_restart: None,
            graceful_restart_helper_only: true,
        }
    }
}

/// gobgpd configuration.
#[derive(Clone, Debug)]
pub struct GobgpdConfig {
    /// Local AS.
    pub asn: u32,
    /// Router ID.
    pub router_id: String,
    /// BGP listen port (179; `-1` disables listening).
    pub listen_port: i32,
    /// Listen addresses (empty: all).
    pub listen_addresses: Vec<String>,
    /// Neighbors.
    pub neighbors: Vec<GobgpNeighbor>,
    /// `[global.use-multiple-paths.config] enabled = true` (ECMP in the RIB).
    pub use_multiple_paths: bool,
}

impl GobgpdConfig {
    /// A config with no neighbors, listening on 179.
    pub fn new(asn: u32, router_id: &str) -> GobgpdConfig {
        GobgpdConfig {
            asn,
            router_id: router_id.to_string(),
            listen_port: 179,
            listen_addresses: vec![],
            neighbors: vec![],
            use_multiple_paths: false,
        }
    }

    /// Adds a neighbor (builder style).
    pub fn neighbor(mut self, n: GobgpNeighbor) -> Self {
        self.neighbors.push(n);
        self
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "[global.config]\n  as = {}\n  router-id = \"{}\"\n  port = {}\n",
            self.asn, self.router_id, self.listen_port
        );
        if !self.listen_addresses.is_empty() {
            let l: Vec<String> = self
                .listen_addresses
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect();
            s += &format!("  local-address-list = [{}]\n", l.join(", "));
        }
        if self.use_multiple_paths {
            s += "\n[global.use-multiple-paths.config]\n  enabled = true\n";
        }
        for n in &self.neighbors {
            s += &format!(
                "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n",
                n.address, n.peer_as
            );
            if let Some(p) = &n.password {
                s += &format!("    auth-password = \"{p}\"\n");
            }
            let hold = n.hold_time.unwrap_or(90);
            s += &format!(
                "  [neighbors.timers.config]\n    connect-retry = {}\n    hold-time = {}\n    keepalive-interval = {}\n    idle-hold-time-after-reset = 1\n",
                n.connect_retry,
                hold,
                (hold / 3).max(1)
            );
            s += "  [neighbors.transport.config]\n";
            if n.passive {
                s += "    passive-mode = true\n";
            }
            if let Some(a) = &n.local_address {
                s += &format!("    local-address = \"{a}\"\n");
            }
            if let Some(t) = n.graceful_restart {
                s += &format!(
                    "  [neighbors.graceful-restart.config]\n    enabled = true\n    helper-only = {}\n    notification-enabled = true\n    restart-time = {t}\n",
                    n.graceful_restart_helper_only
                );
            }
            if let Some(t) = n.multihop_ttl {
                s += &format!(
                    "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = {t}\n"
                );
            }
            for f in &n.families {
                let name = match f {
                    Family::Ipv4Unicast => "ipv4-unicast",
                    Family::Ipv6Unicast => "ipv6-unicast",
                };
                s += &format!(
                    "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{name}\"\n"
                );
                if n.graceful_restart.is_some() {
                    s += "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n";
                }
            }
        }
        s
    }
}

/// A running gobgpd. Killed by PID on drop (via its [`Proc`]).
#[derive(Debug)]
pub struct Gobgpd {
    ns: String,
    dir: PathBuf,
    api_port: u16,
    config: GobgpdConfig,
    conf_path: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

impl Gobgpd {
    /// Writes the config to the namespace's dir and starts gobgpd; returns when its API
    /// answers (typically ~0.1 s).
    pub fn start(ns: &Netns, config: GobgpdConfig) -> Result<Gobgpd> {
        let api_port = free_port();
        let conf_path = ns.dir().join(format!("gobgpd-{api_port}.toml"));
        std::fs::write(&conf_path, config.to_toml())?;
        let mut g = Gobgpd {
            ns: ns.name().to_string(),
            dir: ns.dir().to_path_buf(),
            api_port,
            config,
            conf_path,
            proc: None,
            starts: 0,
        };
        g.launch()?;
        Ok(g)
    }

    fn launch(&mut self) -> Result<()> {
        self.launch_with(&[])
    }

    fn launch_with(&mut self, extra: &[&str]) -> Result<()> {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.ns, "gobgpd", "-f"])
            .arg(&self.conf_path)
            .args(["-t", "toml", "-p", "-l", "debug", "--pprof-disable"])
            .arg(format!("--api-hosts=127.0.0.1:{}", self.api_port))
            .args(extra);
        let label = format!("gobgpd-{}-{}", self.api_port, self.starts);
        self.starts += 1;
        let mut p = Proc::spawn(c, &self.dir, &label)?;
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.cli(&["global"]).ok()
        });
        if ready.is_none() {
            let alive = p.is_alive();
            bail!(
                "gobgpd API on 127.0.0.1:{} not ready (alive: {alive}); stderr:\n{}{}",
                self.api_port,
                p.stderr_tail(20),
                p.stdout()
            );
        }
        self.proc = Some(p);
        Ok(())
    }

    /// The config it runs with.
    pub fn config(&self) -> &GobgpdConfig {
        &self.config
    }

    /// gRPC API port (127.0.0.1 inside the namespace).
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// PID of gobgpd.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// The process (logs: JSON lines on stdout/stderr).
    pub fn proc(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    /// gobgpd's log so far (stdout and stderr of the current process).
    pub fn log(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.stdout() + &p.stderr())
            .unwrap_or_default()
    }

    /// SIGKILL gobgpd (a crash: no NOTIFICATION, TCP closed by the kernel).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(3));
        }
    }

    /// Kills (SIGKILL) and starts it again with the same config and API port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    /// Stops it cleanly (SIGTERM: a Cease to every peer; SIGKILL after 3 s) and
    /// starts it again with the same config and API port, as an operator's
    /// `systemctl restart` would.
    pub fn restart_clean(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    /// Kills (SIGKILL) and starts it again as a graceful restart (`-r`: the R bit in
    /// its OPENs; with neighbors not `graceful_restart_helper_only`, it defers its
    /// best-path selection until their End-of-RIB).
    pub fn restart_graceful(&mut self) -> Result<()> {
        self.kill();
        self.launch_with(&["-r"])
    }

    /// Runs `gobgp -p PORT <args>` in the namespace; stdout on success.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp", "-p"])
            .arg(self.api_port.to_string())
            .args(args)
            .output()
            .context("run gobgp")?;
        if !out.status.success() {
            bail!(
                "gobgp {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// All neighbors and their state (`gobgp -j neighbor`).
    pub fn neighbors(&self) -> Result<Vec<NeighborState>> {
        parse_neighbors(&self.cli(&["-j", "neighbor"])?)
    }

    /// State of one neighbor.
    pub fn neighbor_state(&self, address: &str) -> Result<SessionState> {
        self.neighbors()?
            .into_iter()
            .find(|n| n.address == address)
            .map(|n| n.state)
            .with_context(|| format!("gobgpd has no neighbor {address}"))
    }

    /// Waits until `address` is Established.
    pub fn wait_established(&self, address: &str, timeout: Duration) -> Result<()> {
        let mut last = None;
        let ok = wait_until(timeout, Duration::from_millis(100), || {
            let s = self.neighbor_state(address).ok();
            let ok = s.as_ref().is_some_and(SessionState::is_established);
            last = s;
            ok.then_some(())
        });
        ok.with_context(|| {
            format!("gobgpd neighbor {address} not Established within {timeout:?} (last {last:?})")
        })
    }

    /// The global (Loc-)RIB of a family (`gobgp -j global rib -a ipv4|ipv6`).
    pub fn rib(&self, family: Family) -> Result<Vec<Route>> {
        parse_rib(&self.cli(&["-j", "global", "rib", "-a", afi_arg(family)])?)
    }

    /// Adj-RIB-In of one neighbor (`gobgp -j neighbor ADDR adj-in -a …`).
    pub fn adj_in(&self, neighbor: &str, family: Family) -> Result<Vec<Route>> {
        parse_rib(&self.cli(&["-j", "neighbor", neighbor, "adj-in", "-a", afi_arg(family)])?)
    }

    /// Waits until the global RIB of `family` holds exactly `n` prefixes; returns them.
    pub fn wait_rib_count(
        &self,
        family: Family,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Route>> {
        let mut last = 0;
        wait_until(timeout, Duration::from_millis(100), || {
            let r = self.rib(family).ok()?;
            last = r.len();
            (r.len() == n).then_some(r)
        })
        .with_context(|| {
            format!("gobgpd RIB {family:?}: {last} prefixes, wanted {n} within {timeout:?}")
        })
    }

    /// Injects a route (`gobgp global rib add`).
    pub fn add_route(&self, r: &RouteSpec) -> Result<()> {
        let mut a: Vec<String> = vec![
            "global".into(),
            "rib".into(),
            "add".into(),
            "-a".into(),
            afi_arg(Family::of(&r.prefix)).into(),
            r.prefix.clone(),
            "nexthop".into(),
            r.nexthop.clone(),
            "origin".into(),
            r.origin.unwrap_or(Origin::Igp).gobgp_keyword().into(),
        ];
        if !r.communities.is_empty() {
            a.push("community".into());
            a.push(r.communities.join(","));
        }
        if !r.large_communities.is_empty() {
            a.push("large-community".into());
            a.push(r.large_communities.join(","));
        }
        if let Some(lp) = r.local_pref {
            a.push("local-pref".into());
            a.push(lp.to_string());
        }
        if let Some(m) = r.med {
            a.push("med".into());
            a.push(m.to_string());
        }
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        self.cli(&refs).map(|_| ())
    }

    /// Removes an injected route (`gobgp global rib del`).
    pub fn del_route(&self, prefix: &str) -> Result<()> {
        self.cli(&[
            "global",
            "rib",
            "del",
            "-a",
            afi_arg(Family::of(prefix)),
            prefix,
        ])
        .map(|_| ())
    }
}

fn afi_arg(f: Family) -> &'static str {
    match f {
        Family::Ipv4Unicast => "ipv4",
        Family::Ipv6Unicast => "ipv6",
    }
}

/// Parses `gobgp -j neighbor` (array of peers; `state.session_state` is the gRPC enum
/// 1 Idle … 6 Established).
pub fn parse_neighbors(json: &str) -> Result<Vec<NeighborState>> {
    let v: Value = serde_json::from_str(json.trim()).context("gobgp neighbor JSON")?;
    let arr = v.as_array().context("gobgp neighbor JSON: not an array")?;
    Ok(arr
        .iter()
        .map(|p| {
            let addr = p["state"]["neighbor_address"]
                .as_str()
                .or(p["conf"]["neighbor_address"].as_str())
                .unwrap_or_default()
                .to_string();
            let state = match p["state"]["session_state"].as_u64().unwrap_or(0) {
                1 => SessionState::Idle,
                2 => SessionState::Connect,
                3 => SessionState::Active,
                4 => SessionState::OpenSent,
                5 => SessionState::OpenConfirm,
                6 => SessionState::Established,
                n => SessionState::Other(format!("session_state {n}")),
            };
            let received = p["afi_safis"].as_array().map(|a| {
                a.iter()
                    .filter_map(|f| f["state"]["received"].as_u64())
                    .sum()
            });
            NeighborState {
                address: addr,
                peer_as: p["conf"]["peer_asn"]
                    .as_u64()
                    .and_then(|a| u32::try_from(a).ok()),
                state,
                received,
            }
        })
        .collect())
}

/// Parses `gobgp -j global rib` / `adj-in` output: an object from prefix to paths, each
/// path with typed `attrs` (1 origin, 2 as_path, 3 next hop, 4 MED, 5 local-pref,
/// 8 communities, 14 MP_REACH next hop, 32 large communities). Sorted by prefix.
pub fn parse_rib(json: &str) -> Result<Vec<Route>> {
    let t = json.trim();
    if t.is_empty() || t == "null" {
        return Ok(vec![]);
    }
    let v: Value = serde_json::from_str(t).context("gobgp rib JSON")?;
    let obj = v.as_object().context("gobgp rib JSON: not an object")?;
    let mut routes: Vec<Route> = obj
        .iter()
        .map(|(prefix, paths)| Route {
            prefix: prefix.clone(),
            paths: paths
                .as_array()
                .map(|a| a.iter().map(parse_gobgp_path).collect())
                .unwrap_or_default(),
        })
        .collect();
    routes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    Ok(routes)
}

fn parse_gobgp_path(p: &Value) -> RoutePath {
    let mut r = RoutePath {
        best: p["best"].as_bool().unwrap_or(false),
        stale: p["stale"].as_bool().unwrap_or(false),
        from: p["neighbor-ip"].as_str().map(str::to_string),
        ..RoutePath::default()
    };
    for a in p["attrs"].as_array().into_iter().flatten() {
        match a["type"].as_u64() {
            Some(1) => r.origin = a["value"].as_u64().and_then(Origin::from_code),
            Some(2) => {
                for seg in a["as_paths"].as_array().into_iter().flatten() {
                    for asn in seg["asns"].as_array().into_iter().flatten() {
                        if let Some(n) = asn.as_u64().and_then(|n| u32::try_from(n).ok()) {
                            r.as_path.push(n);
                        }
                    }
                }
            }
            Some(3) | Some(14) => {
                if let Some(nh) = a["nexthop"].as_str() {
                    r.nexthop = nh.to_string();
                }
            }
            Some(4) => r.med = a["metric"].as_u64().and_then(|n| u32::try_from(n).ok()),
            Some(5) => r.local_pref = a["value"].as_u64().and_then(|n| u32::try_from(n).ok()),
            Some(8) => {
                r.communities = a["communities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .map(community_string)
                    .collect()
            }
            Some(32) => {
                r.large_communities = a["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{}:{}:{}",
                            c["ASN"].as_u64().unwrap_or(0),
                            c["LocalData1"].as_u64().unwrap_or(0),
                            c["LocalData2"].as_u64().unwrap_or(0)
                        )
                    })
                    .collect()
            }
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rib_ipv4_ebgp_4octet_with_communities() {
        let r = parse_rib(include_str!("testdata/gobgp-rib-ipv4.json")).unwrap();
        let p = r.iter().find(|r| r.prefix == "172.17.254.1/32").unwrap();
        let path = &p.paths[0];
        assert_eq!(path.nexthop, "198.18.0.1");
        assert_eq!(path.as_path, vec![4_200_000_001]);
        assert_eq!(path.communities, vec!["64512:100", "64512:200"]);
        assert_eq!(path.large_communities, vec!["4200000001:1:1"]);
        assert_eq!(path.med, Some(10));
        assert_eq!(path.local_pref, None);
        assert_eq!(path.origin, Some(Origin::Igp));
        assert_eq!(path.from.as_deref(), Some("198.18.0.1"));
        assert!(path.best);
        let p4 = r.iter().find(|r| r.prefix == "172.17.254.4/32").unwrap();
        assert_eq!(p4.paths[0].origin, Some(Origin::Incomplete));
        assert_eq!(p4.paths[0].communities, vec!["65535:65281"]);
    }

    #[test]
    fn rib_ipv4_ibgp_local_pref_empty_as_path() {
        let r = parse_rib(include_str!("testdata/gobgp-rib-ipv4-ibgp.json")).unwrap();
        let p = &r
            .iter()
            .find(|r| r.prefix == "172.17.254.2/32")
            .unwrap()
            .paths[0];
        assert!(p.as_path.is_empty());
        assert_eq!(p.local_pref, Some(200));
    }

    #[test]
    fn rib_ipv6_mp_reach_nexthop() {
        let r = parse_rib(include_str!("testdata/gobgp-rib-ipv6.json")).unwrap();
        let p = &r
            .iter()
            .find(|r| r.prefix == "2001:db8:254::1/128")
            .unwrap()
            .paths[0];
        assert_eq!(p.nexthop, "2001:db8:ff::1");
        assert_eq!(p.large_communities, vec!["4200000001:6:1"]);
    }

    #[test]
    fn empty_rib() {
        assert!(parse_rib("{}\n").unwrap().is_empty());
        assert!(parse_rib("").unwrap().is_empty());
    }

    #[test]
    fn neighbors_states() {
        let n = parse_neighbors(include_str!("testdata/gobgp-neighbors.json")).unwrap();
        let a = n.iter().find(|n| n.address == "198.18.0.1").unwrap();
        assert_eq!(a.state, SessionState::Established);
        assert_eq!(a.peer_as, Some(4_200_000_001));
        assert_eq!(a.received, Some(4));
    }

    #[test]
    fn toml_has_password_and_families() {
        let mut n = GobgpNeighbor::new("198.18.0.2", 4_200_000_001);
        n.password = Some("s3cret".into());
        n.multihop_ttl = Some(5);
        let t = GobgpdConfig::new(64512, "198.18.0.1").neighbor(n).to_toml();
        assert!(t.contains("auth-password = \"s3cret\""));
        assert!(t.contains("peer-as = 4200000001"));
        assert!(t.contains("afi-safi-name = \"ipv6-unicast\""));
        assert!(t.contains("multihop-ttl = 5"));
    }
}
