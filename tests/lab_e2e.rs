//! The whole system in the rt-01 lab: `lab/up` (namespaces, gobgpd + RIB→FIB on rt-01,
//! kube-apiserver on k8s-master-01, ferrolb controller, one ferrolb speaker per node),
//! then what an operator would check:
//!
//! 1. rt-01 has three paths for 172.17.254.1/32 (gobgpd RIB) and one kernel route with
//!    three nexthops; client-01 reaches the service and more than one node answers;
//! 2. Endpoints on one node + `externalTrafficPolicy: Local` → one path, via that node;
//! 3. back to Cluster; a speaker SIGKILLed → its path is gone at once (TCP closes);
//!    a speaker SIGSTOPped (a silent node) → its path is gone within the hold time (3 s);
//! 4. `lab/down` leaves no namespace, no process and no 172.17 address behind;
//! 5. `lab/up --crds` (the same lab configured by `metallb.io` custom resources applied
//!    with kubectl, no ConfigMap): rt-01's `gobgp monitor adj-in --current` prints
//!    exactly what it printed with the ConfigMap, and lab/down cleans up again.
//!
//! Runs `lab/up` with this build's `ferrolb` (FERROLB_BIN) and a private run directory.
//! Skips (prints `SKIP`) when not root or the kube-apiserver is not built; with `CI=true`
//! those are failures. Everything happens inside the lab's namespaces.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferrolb_testlab::gobgp::parse_rib;
use ferrolb_testlab::{in_ci, is_root, kube};
use serde_json::Value;

const RT: &str = "rt-01";
const CLIENT: &str = "client-01";
const SVC: &str = "172.17.254.1";
const PREFIX: &str = "172.17.254.1/32";
const NODES: [(&str, &str); 3] = [
    ("k8s-node-01", "172.17.0.21"),
    ("k8s-node-02", "172.17.0.22"),
    ("k8s-node-03", "172.17.0.23"),
];
const LAB_NS: [&str; 8] = [
    "lan-client",
    "lan-k8s",
    "rt-01",
    "client-01",
    "k8s-master-01",
    "k8s-node-01",
    "k8s-node-02",
    "k8s-node-03",
];
/// gobgpd's hold time in the lab (lab/topology.json).
const HOLD: Duration = Duration::from_secs(3);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The lab, torn down by `lab/down` when dropped (also when a check panics).
struct Lab {
    run: PathBuf,
    down: bool,
}

impl Lab {
    fn script(&self, name: &str) -> Command {
        let mut c = Command::new(repo().join("lab").join(name));
        c.env("FERROLB_LAB_RUN", &self.run);
        c
    }

    fn down(&mut self) -> Output {
        self.down = true;
        self.script("down").output().expect("run lab/down")
    }

    /// `lab/kapi METHOD PATH` with an optional JSON body on stdin.
    fn kapi(&self, method: &str, path: &str, body: Option<&str>) -> String {
        let mut c = self.script("kapi");
        c.args([method, path]);
        if body.is_some() {
            c.arg("-");
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lab/kapi");
        if let Some(b) = body {
            child.stdin.take().unwrap().write_all(b.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "lab/kapi {method} {path}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// PID of a process lab/up started (`speaker-k8s-node-03`, `gobgpd`, ...).
    fn pid(&self, name: &str) -> u32 {
        let pids = std::fs::read_to_string(self.run.join("pids")).unwrap();
        pids.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{name} not in {}/pids", self.run.display()))
    }

    fn all_pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = Vec::new();
        for f in ["pids", "kube/pids"] {
            let Ok(s) = std::fs::read_to_string(self.run.join(f)) else {
                continue;
            };
            v.extend(
                s.lines()
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok()),
            );
        }
        v
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.down {
            let out = self.down();
            eprintln!("lab/down (cleanup): {}", text(&out));
        }
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

/// What rt-01's gobgpd shows for what it learned from the nodes, as `lab/demo`
/// prints it (`gobgp monitor adj-in --current`, 1 s, lines sorted), without
/// the one field that differs between runs: the timestamp each line starts
/// with (`2026-12-03T19:58:52Z [ROUTE] 172.17.254.1/32 via …`).
fn adj_in_current() -> Vec<String> {
    let out = ns_exec(
        RT,
        &["timeout", "1", "gobgp", "monitor", "adj-in", "--current"],
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .skip_while(|w| !w.starts_with('['))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    lines.sort();
    lines
}

fn ns_exec(ns: &str, argv: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .expect("ip netns exec")
}

/// rt-01's gobgpd: next hops of the paths for the service prefix.
fn rib_nexthops() -> BTreeSet<String> {
    let out = ns_exec(RT, &["gobgp", "-j", "global", "rib", "-a", "ipv4"]);
    let Ok(routes) = parse_rib(&String::from_utf8_lossy(&out.stdout)) else {
        return BTreeSet::new();
    };
    routes
        .iter()
        .filter(|r| r.prefix == PREFIX)
        .flat_map(|r| r.paths.iter().map(|p| p.nexthop.clone()))
        .collect()
}

/// rt-01's kernel: gateways of the `proto bgp` route to the service IP.
fn kernel_nexthops() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["-n", RT, "-j", "route", "show", SVC, "proto", "bgp"])
        .output()
        .expect("ip route");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut set = BTreeSet::new();
    for r in v.as_array().into_iter().flatten() {
        if let Some(g) = r["gateway"].as_str() {
            set.insert(g.to_string());
        }
        for n in r["nexthops"].as_array().into_iter().flatten() {
            if let Some(g) = n["gateway"].as_str() {
                set.insert(g.to_string());
            }
        }
    }
    set
}

fn addrs(nodes: &[usize]) -> BTreeSet<String> {
    nodes.iter().map(|&i| NODES[i].1.to_string()).collect()
}

/// Polls until both rt-01's RIB and kernel route show exactly `want`; returns the time
/// until the RIB matched.
fn wait_paths(want: &BTreeSet<String>, timeout: Duration, what: &str) -> Duration {
    let t0 = Instant::now();
    let mut rib_at = None;
    loop {
        let rib = rib_nexthops();
        if rib_at.is_none() && &rib == want {
            rib_at = Some(t0.elapsed());
        }
        let fib = kernel_nexthops();
        if let Some(at) = rib_at
            && &fib == want
        {
            return at;
        }
        assert!(
            t0.elapsed() < timeout,
            "{what}: after {timeout:?} rt-01 RIB has {rib:?}, kernel route {fib:?}, wanted {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` new connections from client-01; the set of nodes that answered.
/// The layer 2 Service's IP (lab/topology.json `l2_service`).
const L2_SVC: &str = "172.17.0.200";

/// The nodes whose MAC answers rt-01's ARP request for the layer 2 Service IP
/// (unknown MACs by their text).
fn l2_answerers() -> BTreeSet<String> {
    let out = ns_exec(
        RT,
        &["arping", "-b", "-c", "2", "-w", "1", "-I", "eth2", L2_SVC],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let macs: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            l.split("reply from")
                .nth(1)?
                .split('[')
                .nth(1)?
                .split(']')
                .next()
        })
        .map(str::to_string)
        .collect();
    macs.into_iter()
        .map(|m| {
            NODES
                .iter()
                .find(|(n, _)| {
                    let o = ns_exec(n, &["ip", "-br", "link", "show", "eth0"]);
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .nth(2)
                        .is_some_and(|x| x.eq_ignore_ascii_case(&m))
                })
                .map_or(m.clone(), |(n, _)| n.to_string())
        })
        .collect()
}

/// Waits until exactly one node answers ARP for the layer 2 Service IP, other than `not`.
fn wait_l2_owner(not: Option<&str>, timeout: Duration, what: &str) -> (String, Duration) {
    let t0 = Instant::now();
    loop {
        let got = l2_answerers();
        if got.len() == 1 && got.iter().all(|n| Some(n.as_str()) != not) {
            return (got.into_iter().next().unwrap(), t0.elapsed());
        }
        assert!(
            t0.elapsed() < timeout,
            "{what}: {L2_SVC} answered by {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client_requests(n: usize) -> BTreeSet<String> {
    let url = format!("http://{SVC}:80/");
    let mut seen = BTreeSet::new();
    for i in 0..n {
        let out = ns_exec(CLIENT, &["curl", "-s", "--max-time", "3", &url]);
        assert!(
            out.status.success(),
            "request {i} from client-01 to {url} failed: {}",
            text(&out)
        );
        seen.insert(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    seen
}

fn endpoints_json(nodes: &[usize]) -> String {
    let a: Vec<String> = nodes
        .iter()
        .map(|&i| format!(r#"{{"ip":"{}","nodeName":"{}"}}"#, NODES[i].1, NODES[i].0))
        .collect();
    format!(
        r#"{{"apiVersion":"v1","kind":"Endpoints","metadata":{{"name":"nginx","namespace":"default"}},
           "subsets":[{{"addresses":[{}],"ports":[{{"name":"http","port":80,"protocol":"TCP"}}]}}]}}"#,
        a.join(",")
    )
}

fn set_policy(lab: &Lab, policy: &str, nodes: &[usize]) {
    lab.kapi(
        "PATCH",
        "/api/v1/namespaces/default/services/nginx",
        Some(&format!(
            r#"{{"spec":{{"externalTrafficPolicy":"{policy}"}}}}"#
        )),
    );
    lab.kapi(
        "PUT",
        "/api/v1/namespaces/default/endpoints/nginx",
        Some(&endpoints_json(nodes)),
    );
}

fn signal(sig: &str, pid: u32) {
    let out = Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "kill {sig} {pid}: {}", text(&out));
}

fn skip(reason: &str) {
    assert!(!in_ci(), "{reason}; CI=true, so this is an error");
    eprintln!("SKIP lab_e2e: {reason}");
}

#[test]
fn lab_up_ecmp_policy_node_loss_and_down() {
    if !is_root() {
        return skip("not root (the lab needs network namespaces)");
    }
    if kube::cached_binary().is_none() {
        return skip("kube-apiserver v1.20.2 not built (run scripts/kube-apiserver build)");
    }
    if let Some(ns) = LAB_NS
        .iter()
        .find(|n| Path::new("/run/netns").join(n).exists())
    {
        return skip(&format!(
            "namespace {ns} exists: a lab is already up (sudo lab/down)"
        ));
    }
    let run = std::env::temp_dir().join(format!("ferrolb-lab-e2e-{}", std::process::id()));
    let mut lab = Lab { run, down: false };

    // --- lab/up
    let t0 = Instant::now();
    let out = lab
        .script("up")
        .env("FERROLB_BIN", env!("CARGO_BIN_EXE_ferrolb"))
        .output()
        .expect("run lab/up");
    let up_time = t0.elapsed();
    let up_text = text(&out);
    eprintln!("lab/up ({up_time:?}):\n{up_text}");
    assert!(out.status.success(), "lab/up failed");
    let again = lab.script("up").output().unwrap();
    assert!(again.status.success(), "second lab/up: {}", text(&again));
    assert!(text(&again).contains("already up"), "{}", text(&again));

    // --- 1. three paths, one kernel route with three nexthops, service reachable
    let all = addrs(&[0, 1, 2]);
    wait_paths(&all, Duration::from_secs(10), "ECMP after lab/up");
    let out = ns_exec(RT, &["gobgp", "-j", "global", "rib", "-a", "ipv4"]);
    let routes = parse_rib(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let r = routes.iter().find(|r| r.prefix == PREFIX).unwrap();
    assert_eq!(r.paths.len(), 3, "{r:?}");
    for p in &r.paths {
        assert_eq!(p.as_path, vec![64522], "{p:?}");
    }
    let seen = client_requests(12);
    assert!(
        seen.len() >= 2,
        "12 connections all answered by {seen:?}: no ECMP spread"
    );
    eprintln!("client-01: answers from {seen:?}");
    // The layer 2 Service: one node answers ARP for it, and serves client-01 through rt-01.
    assert!(
        up_text.contains("MACs answering: 1 (") && up_text.contains("3/3 answered by the owner"),
        "lab/demo's layer 2 part: {up_text}"
    );
    let (l2_owner, _) = wait_l2_owner(None, Duration::from_secs(10), "after lab/up");
    let url = format!("http://{L2_SVC}:80/");
    let got = ns_exec(CLIENT, &["curl", "-s", "--max-time", "3", &url]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), l2_owner);
    eprintln!("layer 2: {L2_SVC} answered by {l2_owner} alone");
    let adj_in_configmap = adj_in_current();
    assert_eq!(
        adj_in_configmap.len(),
        3,
        "gobgp monitor adj-in --current: {adj_in_configmap:#?}"
    );

    // --- 2. Local policy with the endpoint on node-01 only → one path, via node-01
    set_policy(&lab, "Local", &[0]);
    let t = wait_paths(&addrs(&[0]), Duration::from_secs(15), "Local, one endpoint");
    eprintln!("Local + endpoint on k8s-node-01: one path after {t:?}");
    assert_eq!(
        client_requests(4),
        BTreeSet::from(["k8s-node-01".to_string()])
    );

    // --- 3. back to Cluster on all three; then lose nodes
    set_policy(&lab, "Cluster", &[0, 1, 2]);
    wait_paths(&all, Duration::from_secs(15), "back to Cluster");

    let killed = lab.pid("speaker-k8s-node-02");
    signal("-KILL", killed);
    let t = wait_paths(
        &addrs(&[0, 2]),
        Duration::from_secs(10),
        "speaker on k8s-node-02 SIGKILLed",
    );
    eprintln!("k8s-node-02 speaker SIGKILLed: path gone after {t:?}");
    // Layer 2: k8s-node-02 owns 172.17.0.200 (it ranks first for it: sha256
    // order); with its speaker dead another node answers, alone, in seconds.
    let (next, t_l2) = wait_l2_owner(
        Some("k8s-node-02"),
        Duration::from_secs(15),
        "k8s-node-02's speaker SIGKILLed",
    );
    eprintln!(
        "layer 2: {L2_SVC} answered by {next} alone {t_l2:?} after k8s-node-02's speaker was killed (was {l2_owner})"
    );
    assert!(
        t < HOLD,
        "a killed speaker's TCP close should drop the path before the hold time ({t:?})"
    );

    let stopped = lab.pid("speaker-k8s-node-03");
    signal("-STOP", stopped);
    let t = wait_paths(
        &addrs(&[0]),
        HOLD + Duration::from_secs(10),
        "speaker on k8s-node-03 SIGSTOPped",
    );
    eprintln!("k8s-node-03 speaker SIGSTOPped (silent): path gone after {t:?} (hold {HOLD:?})");
    // Expiry itself happens within HOLD of the last keepalive; allow polling and a busy
    // machine a little slack on top.
    assert!(
        t <= HOLD + Duration::from_millis(1500),
        "silent node's path lingered {t:?} (hold {HOLD:?})"
    );
    assert_eq!(
        client_requests(3),
        BTreeSet::from(["k8s-node-01".to_string()])
    );
    // It comes back when the node wakes up (gobgpd connect-retry 1 s).
    signal("-CONT", stopped);
    let t = wait_paths(
        &addrs(&[0, 2]),
        Duration::from_secs(30),
        "speaker on k8s-node-03 resumed",
    );
    eprintln!("k8s-node-03 speaker resumed: path back after {t:?}");

    // --- 4. lab/down leaves nothing behind
    let pids = lab.all_pids();
    assert!(pids.len() >= 9, "pids recorded: {pids:?}");
    let out = lab.down();
    assert!(out.status.success(), "lab/down: {}", text(&out));

    for ns in LAB_NS {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} left behind"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    for pid in pids {
        assert!(
            !ferrolb_testlab::pid_alive(pid),
            "process {pid} left behind by lab/down"
        );
    }
    let root = Command::new("ip").args(["-4", "addr"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&root.stdout).contains("172.17."),
        "a 172.17 address in the root namespace"
    );
    assert!(
        !lab.run.exists(),
        "run dir {} left behind",
        lab.run.display()
    );
    let twice = lab.script("down").output().unwrap();
    assert!(twice.status.success(), "lab/down twice: {}", text(&twice));
    eprintln!("lab/up took {up_time:?} (apiserver cached, FERROLB_BIN given)");

    // --- 5. the same lab from custom resources
    let mut lab = Lab {
        run: lab.run.clone(),
        down: false,
    };
    let out = lab
        .script("up")
        .arg("--crds")
        .env("FERROLB_BIN", env!("CARGO_BIN_EXE_ferrolb"))
        .env("FERROLB_LAB_DEMO", "0")
        .output()
        .expect("run lab/up --crds");
    eprintln!("lab/up --crds:\n{}", text(&out));
    assert!(out.status.success(), "lab/up --crds failed");
    wait_paths(&all, Duration::from_secs(15), "ECMP after lab/up --crds");
    let cms = lab.kapi("GET", "/api/v1/namespaces/metallb-system/configmaps", None);
    assert!(
        !cms.contains("\"config\""),
        "lab/up --crds created the ConfigMap: {cms}"
    );
    let pools = lab.kapi(
        "GET",
        "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools",
        None,
    );
    assert!(pools.contains("172.17.254.0/24"), "{pools}");
    let adj_in_crds = adj_in_current();
    assert_eq!(
        adj_in_crds, adj_in_configmap,
        "rt-01 learned something else from the custom resources"
    );
    eprintln!(
        "lab/up --crds: gobgp monitor adj-in --current identical:\n{}",
        adj_in_crds.join("\n")
    );
    let out = lab.down();
    assert!(
        out.status.success(),
        "lab/down after --crds: {}",
        text(&out)
    );
    for ns in LAB_NS {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} left behind"
        );
    }
}
