//! The high-availability lab end to end: `lab/up --ha` (three control-plane namespaces
//! k8s-master-01..03, one kube-apiserver each on one etcd, `ferrolb vip --mode bgp` in each
//! announcing the API server VIP 172.17.0.100 to rt-01; the controller and the speakers
//! talk to the API through the VIP), then:
//!
//! 1. rt-01 has three paths for 172.17.0.100/32 (gobgpd RIB and kernel route), the
//!    controller and speakers run with the VIP's kubeconfig and still get the Service's
//!    ECMP route to rt-01, and `kubectl --server https://172.17.0.100:6443 get nodes` from
//!    client-01 works (lab/demo shows both);
//! 2. k8s-master-03's kube-apiserver SIGSTOPped → its path leaves within a few health
//!    intervals, the other two stay, kubectl through the VIP keeps working; SIGCONT → three
//!    paths again;
//! 3. `lab/down` leaves no namespace, no process, no run dir, in well under the 30 s it
//!    takes when the API servers wait for clients that can no longer reach them.
//!
//! 4. `lab/up --ha=layer2` (`ferrolb vip --mode layer2`, a Lease on each master's own API
//!    server): exactly one master answers rt-01's ARP for the VIP and kubectl through it
//!    works; the holder's kube-apiserver SIGSTOPped → another master alone answers (the
//!    time is printed), kubectl works again; `lab/down` leaves nothing.
//!
//! Skips (prints `SKIP`) when not root or the kube-apiserver is not built; with `CI=true`
//! those are failures. Everything happens inside the lab's namespaces.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ferrolb_testlab::gobgp::parse_rib;
use ferrolb_testlab::{in_ci, is_root, kube};
use serde_json::Value;

const RT: &str = "rt-01";
const CLIENT: &str = "client-01";
const VIP: &str = "172.17.0.100";
const VIP_PREFIX: &str = "172.17.0.100/32";
const SVC_PREFIX: &str = "172.17.254.1/32";
const MASTERS: [(&str, &str); 3] = [
    ("k8s-master-01", "172.17.0.10"),
    ("k8s-master-02", "172.17.0.11"),
    ("k8s-master-03", "172.17.0.12"),
];
const NODE_IPS: [&str; 3] = ["172.17.0.21", "172.17.0.22", "172.17.0.23"];
const LAB_NS: [&str; 10] = [
    "lan-client",
    "lan-k8s",
    "rt-01",
    "client-01",
    "k8s-master-01",
    "k8s-master-02",
    "k8s-master-03",
    "k8s-node-01",
    "k8s-node-02",
    "k8s-node-03",
];
/// `ferrolb vip`'s health interval and fall count in the HA lab (lab/ha.bash).
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
const FALL: u32 = 3;

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

    /// The first PID recorded under `name` in the run dir's file `file`.
    fn pid_in(&self, file: &str, name: &str) -> u32 {
        let pids = std::fs::read_to_string(self.run.join(file)).unwrap();
        pids.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{name} not in {}/{file}", self.run.display()))
    }

    /// Every PID lab/up and scripts/kube-apiserver recorded.
    fn all_pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = Vec::new();
        let mut files = vec![self.run.join("pids")];
        for d in std::fs::read_dir(&self.run).unwrap().flatten() {
            if d.file_name().to_string_lossy().starts_with("kube") && d.path().is_dir() {
                files.push(d.path().join("pids"));
            }
        }
        for f in files {
            let Ok(s) = std::fs::read_to_string(f) else {
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
            // A SIGSTOPped API server would hold lab/down up for its KILL timeout.
            for p in self.all_pids() {
                let _ = Command::new("kill")
                    .args(["-CONT", &p.to_string()])
                    .output();
            }
            let out = self.down();
            eprintln!("lab/down (cleanup): {}", text(&out));
        }
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

fn ns_exec(ns: &str, argv: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .expect("ip netns exec")
}

/// rt-01's gobgpd: next hops of the paths for `prefix`.
fn rib_nexthops(prefix: &str) -> BTreeSet<String> {
    let out = ns_exec(RT, &["gobgp", "-j", "global", "rib", "-a", "ipv4"]);
    let Ok(routes) = parse_rib(&String::from_utf8_lossy(&out.stdout)) else {
        return BTreeSet::new();
    };
    routes
        .iter()
        .filter(|r| r.prefix == prefix)
        .flat_map(|r| r.paths.iter().map(|p| p.nexthop.clone()))
        .collect()
}

/// rt-01's kernel: gateways of the `proto bgp` route to `ip`.
fn kernel_nexthops(ip: &str) -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["-n", RT, "-j", "route", "show", ip, "proto", "bgp"])
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

fn set_of(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

/// Polls until rt-01's RIB and kernel route for `prefix` both show exactly `want`;
/// returns the time until the RIB matched.
fn wait_paths(prefix: &str, want: &BTreeSet<String>, timeout: Duration, what: &str) -> Duration {
    let ip = prefix.split('/').next().unwrap();
    let t0 = Instant::now();
    let mut rib_at = None;
    loop {
        let rib = rib_nexthops(prefix);
        if rib_at.is_none() && &rib == want {
            rib_at = Some(t0.elapsed());
        }
        let fib = kernel_nexthops(ip);
        if let Some(at) = rib_at
            && &fib == want
        {
            return at;
        }
        assert!(
            t0.elapsed() < timeout,
            "{what}: after {timeout:?} rt-01 RIB has {rib:?} for {prefix}, kernel route {fib:?}, wanted {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kubectl --server https://VIP:6443 get nodes -o name` from client-01 (a new
/// connection each time); panics unless it lists the three nodes.
fn kubectl_via_vip(lab: &Lab, what: &str) {
    let kubeconfig = lab.run.join("kube/kubeconfig");
    let out = ns_exec(
        CLIENT,
        &[
            "kubectl",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--server",
            &format!("https://{VIP}:6443"),
            "--request-timeout",
            "5s",
            "get",
            "nodes",
            "-o",
            "name",
        ],
    );
    let got = text(&out);
    assert!(out.status.success(), "{what}: kubectl via the VIP: {got}");
    let names: BTreeSet<&str> = got.lines().map(str::trim).collect();
    assert_eq!(
        names,
        BTreeSet::from(["node/k8s-node-01", "node/k8s-node-02", "node/k8s-node-03"]),
        "{what}: kubectl via the VIP listed {got}"
    );
}

fn signal(sig: &str, pid: u32) {
    let out = Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "kill {sig} {pid}: {}", text(&out));
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn skip(reason: &str) {
    assert!(!in_ci(), "{reason}; CI=true, so this is an error");
    eprintln!("SKIP lab_ha_e2e: {reason}");
}

#[test]
fn lab_up_ha_vip_paths_master_loss_and_down() {
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
    let run = std::env::temp_dir().join(format!("ferrolb-lab-ha-e2e-{}", std::process::id()));
    let mut lab = Lab { run, down: false };

    // --- lab/up --ha (the demo runs at its end)
    let t0 = Instant::now();
    let out = lab
        .script("up")
        .arg("--ha")
        .env("FERROLB_BIN", env!("CARGO_BIN_EXE_ferrolb"))
        .output()
        .expect("run lab/up --ha");
    let up_time = t0.elapsed();
    let up_text = text(&out);
    eprintln!("lab/up --ha ({up_time:?}):\n{up_text}");
    assert!(out.status.success(), "lab/up --ha failed");
    assert!(
        up_text.contains("3 paths (masters: 172.17.0.10 172.17.0.11 172.17.0.12)"),
        "lab/demo's HA part: {up_text}"
    );
    assert!(
        up_text.contains(&format!("kubectl --server https://{VIP}:6443 get nodes"))
            && up_text.contains("k8s-node-03"),
        "lab/demo's kubectl through the VIP: {up_text}"
    );

    // --- 1. three paths for the VIP; controller and speakers use the VIP and work
    let masters: Vec<&str> = MASTERS.iter().map(|m| m.1).collect();
    let all = set_of(&masters);
    wait_paths(
        VIP_PREFIX,
        &all,
        Duration::from_secs(10),
        "VIP after lab/up",
    );
    let out = ns_exec(RT, &["gobgp", "-j", "global", "rib", "-a", "ipv4"]);
    let routes = parse_rib(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let r = routes.iter().find(|r| r.prefix == VIP_PREFIX).unwrap();
    assert_eq!(r.paths.len(), 3, "{r:?}");
    let vip_kubeconfig = lab.run.join("kube/kubeconfig-vip");
    let kc = std::fs::read_to_string(&vip_kubeconfig).unwrap();
    assert!(
        kc.contains(&format!("server: https://{VIP}:6443")),
        "kubeconfig-vip: {kc}"
    );
    for name in [
        "controller",
        "speaker-k8s-node-01",
        "speaker-k8s-node-02",
        "speaker-k8s-node-03",
    ] {
        let c = cmdline(lab.pid_in("pids", name));
        assert!(
            c.contains(&format!("--kubeconfig {}", vip_kubeconfig.display())),
            "{name} does not use the VIP's kubeconfig: {c}"
        );
    }
    // The speakers read the Service and Endpoints through the VIP and announce it.
    wait_paths(
        SVC_PREFIX,
        &set_of(&NODE_IPS),
        Duration::from_secs(10),
        "the Service's ECMP route (speakers through the VIP)",
    );
    for i in 0..4 {
        kubectl_via_vip(&lab, &format!("all healthy, request {i}"));
    }

    // --- 2. one master's API server stops answering
    let stopped = lab.pid_in("kube-k8s-master-03/pids", "kube-apiserver");
    assert!(cmdline(stopped).contains("kube-apiserver"));
    signal("-STOP", stopped);
    let two = set_of(&masters[..2]);
    let t = wait_paths(
        VIP_PREFIX,
        &two,
        Duration::from_secs(15),
        "k8s-master-03's kube-apiserver SIGSTOPped",
    );
    eprintln!(
        "k8s-master-03's kube-apiserver stopped: its path left after {t:?} (health every {HEALTH_INTERVAL:?}, fall {FALL})"
    );
    // fall checks, each ending at the latest after one interval, plus the update's way
    // through gobgpd; slack for a busy machine.
    let bound = HEALTH_INTERVAL * (FALL + 2) + Duration::from_secs(2);
    assert!(t <= bound, "path lingered {t:?} (bound {bound:?})");
    let t_stable = Instant::now();
    for i in 0..6 {
        kubectl_via_vip(&lab, &format!("k8s-master-03 stopped, request {i}"));
    }
    // The other two stay for a while (several health intervals).
    while t_stable.elapsed() < HEALTH_INTERVAL * (FALL + 3) {
        assert_eq!(rib_nexthops(VIP_PREFIX), two, "the healthy masters' paths");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(kernel_nexthops(VIP), two);

    // ... and comes back.
    signal("-CONT", stopped);
    let t = wait_paths(
        VIP_PREFIX,
        &all,
        Duration::from_secs(20),
        "k8s-master-03's kube-apiserver resumed",
    );
    eprintln!("k8s-master-03's kube-apiserver resumed: path back after {t:?}");
    kubectl_via_vip(&lab, "all healthy again");

    // --- 3. lab/down leaves nothing behind
    down_leaves_nothing(&mut lab);

    // --- 4. the layer 2 variant
    let mut lab = Lab {
        run: lab.run.clone(),
        down: false,
    };
    let out = lab
        .script("up")
        .arg("--ha=layer2")
        .env("FERROLB_BIN", env!("CARGO_BIN_EXE_ferrolb"))
        .output()
        .expect("run lab/up --ha=layer2");
    let up_text = text(&out);
    eprintln!("lab/up --ha=layer2:\n{up_text}");
    assert!(out.status.success(), "lab/up --ha=layer2 failed");
    assert!(
        up_text.contains("masters answering: 1 (k8s-master-0"),
        "lab/demo's layer 2 HA part: {up_text}"
    );
    let holder = wait_one_holder(None, Duration::from_secs(10), "after lab/up --ha=layer2");
    eprintln!("layer 2: {VIP} held by {holder}");
    kubectl_via_vip(&lab, "layer 2, all healthy");
    let dir = if holder == MASTERS[0].0 {
        "kube".to_string()
    } else {
        format!("kube-{holder}")
    };
    let stopped = lab.pid_in(&format!("{dir}/pids"), "kube-apiserver");
    signal("-STOP", stopped);
    let t0 = Instant::now();
    let next = wait_one_holder(
        Some(&holder),
        Duration::from_secs(20),
        "the holder's kube-apiserver SIGSTOPped",
    );
    eprintln!(
        "layer 2: {holder}'s kube-apiserver stopped, {next} alone answers for {VIP} after {:?} (arping polls take ~1 s each)",
        t0.elapsed()
    );
    kubectl_via_vip(&lab, "layer 2, after the failover");
    signal("-CONT", stopped);
    down_leaves_nothing(&mut lab);
}

/// The masters whose eth0 MAC answers rt-01's ARP request for the VIP.
fn l2_holders() -> BTreeSet<String> {
    let out = ns_exec(
        RT,
        &["arping", "-b", "-c", "2", "-w", "1", "-I", "eth2", VIP],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    MASTERS
        .iter()
        .filter(|(m, _)| {
            let o = ns_exec(m, &["ip", "-br", "link", "show", "eth0"]);
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .is_some_and(|mac| text.contains(&format!("[{}]", mac.to_lowercase())))
        })
        .map(|(m, _)| m.to_string())
        .collect()
}

/// Waits until exactly one master, other than `not`, answers ARP for the VIP.
fn wait_one_holder(not: Option<&str>, timeout: Duration, what: &str) -> String {
    let t0 = Instant::now();
    loop {
        let got = l2_holders();
        if got.len() == 1 && got.iter().all(|m| Some(m.as_str()) != not) {
            return got.into_iter().next().unwrap();
        }
        assert!(t0.elapsed() < timeout, "{what}: {VIP} answered by {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lab/down`: quick, and no namespace, recorded process, root-namespace address or run
/// dir left.
fn down_leaves_nothing(lab: &mut Lab) {
    let pids = lab.all_pids();
    // The plain lab's 9 (gobgpd, rib2fib, 3 httpd, controller, 3 speakers), 3 vip
    // agents, 3 kube-apiservers and etcd.
    assert!(pids.len() >= 16, "pids recorded: {pids:?}");
    let t_down = Instant::now();
    let out = lab.down();
    let t_down = t_down.elapsed();
    assert!(out.status.success(), "lab/down: {}", text(&out));
    eprintln!("lab/down took {t_down:?}");
    // The VIP agents stop last, so the API servers see their clients go and stop at
    // once (otherwise each waits for SIGKILL: 10 s apiece, over 30 s in all).
    assert!(t_down < Duration::from_secs(20), "lab/down took {t_down:?}");
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
            "process {pid} ({}) left behind by lab/down",
            cmdline(pid)
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
}
