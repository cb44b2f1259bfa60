//! Configuration by MetalLB's `metallb.io` custom resources, end to end: a real
//! kube-apiserver v1.20.2 with `manifests/crds.yaml` applied by `kubectl`, the
//! reference lab as network namespaces, a router in rt-01's namespace, the
//! controller (root namespace, talking to the API server on loopback) and three
//! speakers (one per node namespace, through testlab's UNIX-socket relay).
//!
//! `crs_switch_allocate_announce` (gobgpd as rt-01, iBGP AS 64522 so that
//! LOCAL_PREF reaches it), in order, every wait bounded:
//! 1. ConfigMap only: a Service gets 172.17.254.1, announced by all three nodes.
//! 2. The custom resources are created (same `default` pool plus others): the
//!    configuration switches to them (ConfigurationState `controller` Valid, a
//!    Warning Event on the now ignored ConfigMap) and the Service keeps its IP
//!    (checked for 3 s) and its three paths.
//! 3. `serviceAllocation`: a Service in namespace `team-a` gets an IP of pool
//!    `team` (namespaces), one labelled `app: db` there gets pool `db`
//!    (namespaceSelectors + serviceSelectors, priority 10 before 20), the same
//!    labels in namespace `e2e` get `default`; `autoAssign: false`: pool
//!    `a-manual` (first by name) is never picked unasked, and is picked for
//!    the `metallb.io/address-pool` annotation.
//! 4. The `team` pool's BGPAdvertisement (aggregationLength 24, localPref 150,
//!    a Community alias for a standard and a large community, a literal large
//!    community) as seen at rt-01: one /24 with those attributes.
//! 5. IPAddressPool status: assigned/available counts match the allocations.
//!    Then advertisements' `serviceSelectors`: pool `edge` (picked by
//!    annotation) has only a BGPAdvertisement for `app: edge` Services with
//!    community 64522:42, created after the Services (the speakers list the
//!    Services again to learn the label). The labelled Service is announced
//!    by all three nodes with it; an unlabelled one in the pool gets an IP and is not
//!    announced; labelled afterwards, it is.
//! 6. A BGPPeer `nodeSelectors` change: node-03's path goes, the others stay.
//! 7. An invalid set (overlapping pools): rejected, ConfigurationState Invalid
//!    with the reason, a Warning Event, paths unchanged, a new Service still
//!    gets an IP from the last good set; the bad pool deleted → Valid again.
//!
//! `crs_password_secret_md5_frr`: FRR as rt-01 requires TCP MD5 from node-01;
//! the BGPPeer takes its password from a `kubernetes.io/basic-auth` Secret.
//! Established and the route seen; the Secret changed to a wrong password → the
//! session goes down (the speaker reconnects with it); fixed again → back.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_testlab::kube::KubeApiServer;
use ferrolb_testlab::relay::UnixTcpRelay;
use ferrolb_testlab::{
    Family, Frr, FrrConfig, FrrNeighbor, GobgpNeighbor, Gobgpd, GobgpdConfig, Netns, Proc, RefLab,
    Route, TestDir, require_or_return,
};
use serde_json::{Value, json};

const NODES: [&str; 3] = ["k8s-node-01", "k8s-node-02", "k8s-node-03"];
const ADDRS: [&str; 3] = ["172.17.0.21", "172.17.0.22", "172.17.0.23"];
const RELAY_LISTEN: &str = "127.0.0.1:6443";
const METRICS: &str = "127.0.0.1:7472";
const CONVERGE: Duration = Duration::from_secs(15);
const MLB: &str = "/apis/metallb.io/v1beta1/namespaces/metallb-system";
const MLB2: &str = "/apis/metallb.io/v1beta2/namespaces/metallb-system";

const CONFIGMAP: &str = "peers:
- peer-address: 172.17.0.1
  peer-asn: 64522
  my-asn: 64522
  hold-time: 3s
address-pools:
- name: default
  protocol: bgp
  addresses: [172.17.254.1-172.17.254.255]
";

// ------------------------------------------------------------------ helpers

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl` against the test's API server; output (stdout+stderr) and success.
fn kubectl(api: &KubeApiServer, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(api.kubeconfig_path())
        .args(args)
        .output()
        .context("running kubectl")?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Applies manifests/crds.yaml and waits until every CRD is Established.
fn install_crds(api: &KubeApiServer) -> Result<()> {
    let crds = repo().join("manifests/crds.yaml");
    let (ok, out) = kubectl(api, &["apply", "-f", &crds.display().to_string()])?;
    ensure!(ok, "kubectl apply -f manifests/crds.yaml: {out}");
    let (ok, out) = kubectl(
        api,
        &[
            "wait",
            "--for",
            "condition=established",
            "--timeout",
            "30s",
            "crd",
            "--all",
        ],
    )?;
    ensure!(ok, "CRDs not established: {out}");
    Ok(())
}

/// A request that must succeed (2xx); the body as JSON.
fn call(api: &KubeApiServer, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let r = match (method, body) {
        ("PATCH", Some(b)) => api.request(
            method,
            path,
            Some(("application/merge-patch+json", b.to_string().as_bytes())),
        )?,
        (_, Some(b)) => api.request_json(method, path, b)?,
        (_, None) => api.request(method, path, None)?,
    };
    ensure!(
        (200..300).contains(&r.status),
        "{method} {path}: HTTP {}: {}",
        r.status,
        r.message()
    );
    if r.body.trim().is_empty() {
        return Ok(Value::Null);
    }
    r.json()
}

fn create(api: &KubeApiServer, collection: &str, obj: Value) -> Result<Value> {
    call(api, "POST", collection, Some(&obj))
}

fn patch(api: &KubeApiServer, path: &str, obj: Value) -> Result<Value> {
    call(api, "PATCH", path, Some(&obj))
}

fn get(api: &KubeApiServer, path: &str) -> Result<Value> {
    call(api, "GET", path, None)
}

/// Polls `f` (every 100 ms, up to `timeout`) until it returns `Ok(Some)`; the
/// last `Ok(None)`/error is in the failure message.
fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let t0 = Instant::now();
    let mut last;
    loop {
        match f() {
            Ok(Some(v)) => {
                eprintln!("{what}: after {:?}", t0.elapsed());
                return Ok(v);
            }
            Ok(None) => last = "not yet".into(),
            Err(e) => last = format!("{e:#}"),
        }
        if t0.elapsed() > timeout {
            bail!("{what}: not within {timeout:?} ({last})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn service(
    api: &KubeApiServer,
    ns: &str,
    name: &str,
    labels: Value,
    annotations: Value,
) -> Result<()> {
    create(
        api,
        &format!("/api/v1/namespaces/{ns}/services"),
        json!({
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }),
    )?;
    // One ready endpoint on node-01, so every node announces (Cluster policy).
    create(
        api,
        &format!("/api/v1/namespaces/{ns}/endpoints"),
        json!({
            "metadata": {"name": name},
            "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": NODES[0]}],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
        }),
    )?;
    Ok(())
}

/// The Service's first ingress IP, once it has one.
fn ingress(api: &KubeApiServer, ns: &str, name: &str) -> Result<Option<String>> {
    let s = get(api, &format!("/api/v1/namespaces/{ns}/services/{name}"))?;
    Ok(s["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .map(str::to_string))
}

fn wait_ingress(api: &KubeApiServer, ns: &str, name: &str) -> Result<String> {
    wait(&format!("{ns}/{name} has an IP"), CONVERGE, || {
        ingress(api, ns, name)
    })
}

fn routes(g: &Gobgpd) -> Result<Vec<Route>> {
    g.rib(Family::Ipv4Unicast)
}

fn next_hops(g: &Gobgpd, prefix: &str) -> Result<BTreeSet<String>> {
    Ok(routes(g)?
        .into_iter()
        .find(|r| r.prefix == prefix)
        .map(|r| r.paths.into_iter().map(|p| p.nexthop).collect())
        .unwrap_or_default())
}

fn wait_hops(g: &Gobgpd, prefix: &str, want: &[&str], what: &str) -> Result<()> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    wait(&format!("{what}: {prefix} via {want:?}"), CONVERGE, || {
        let got = next_hops(g, prefix)?;
        if got == want {
            Ok(Some(()))
        } else {
            bail!("rt-01 has {got:?}")
        }
    })
}

/// The `result` and `errorSummary` of ConfigurationState `name`.
fn config_state(api: &KubeApiServer, name: &str) -> Result<(String, String)> {
    let s = get(api, &format!("{MLB}/configurationstates/{name}"))?;
    Ok((
        s["status"]["result"].as_str().unwrap_or("").to_string(),
        s["status"]["errorSummary"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    ))
}

/// Warning Events in `ns` regarding `kind`/`name`, as "reason: message".
fn warnings(api: &KubeApiServer, ns: &str, kind: &str, name: &str) -> Result<Vec<String>> {
    let list = get(api, &format!("/api/v1/namespaces/{ns}/events"))?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["type"] == "Warning"
                && e["involvedObject"]["kind"] == kind
                && e["involvedObject"]["name"] == name
        })
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect())
}

fn speaker(ns: &Netns, node: &str, kubeconfig: &Path) -> Result<Proc> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    cmd.args(["speaker", "--node-name", node, "--metrics-addr", METRICS])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    ns.spawn_labeled(cmd, &format!("speaker-{node}"))
}

fn controller(api: &KubeApiServer, dir: &Path) -> Result<Proc> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrolb"));
    let metrics = format!("127.0.0.1:{}", ferrolb_testlab::free_port());
    cmd.args(["controller", "--metrics-addr", &metrics])
        .arg("--kubeconfig")
        .arg(api.kubeconfig_path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    Proc::spawn(cmd, dir, "controller")
}

/// Namespaces, Nodes (node-01 and -02 in `rack: a`) and the ConfigMap-free base.
fn base_objects(api: &KubeApiServer, namespaces: &[(&str, Value)]) -> Result<()> {
    for (n, labels) in namespaces {
        create(
            api,
            "/api/v1/namespaces",
            json!({"metadata": {"name": n, "labels": labels}}),
        )?;
    }
    for (i, n) in NODES.iter().enumerate() {
        let mut labels = json!({"kubernetes.io/hostname": n});
        if i < 2 {
            labels["rack"] = json!("a");
        }
        create(
            api,
            "/api/v1/nodes",
            json!({"metadata": {"name": n, "labels": labels}}),
        )?;
    }
    Ok(())
}

fn dump(procs: &[&Proc]) {
    for p in procs {
        eprintln!("--- {} (tail):\n{}", p.label(), p.stderr_tail(40));
    }
}

fn in_net(ip: &str, net: &str) -> bool {
    let (Ok(ip), Ok(net)) = (ip.parse::<std::net::IpAddr>(), net.parse::<ipnet::IpNet>()) else {
        return false;
    };
    net.contains(&ip)
}

// ------------------------------------------------------------------ test 1

#[test]
fn crs_switch_allocate_announce() -> Result<()> {
    require_or_return!(
        "crs_switch_allocate_announce",
        "gobgpd",
        "gobgp",
        "socat",
        "curl",
        "kubectl"
    );
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let dir = TestDir::new("crs-e2e")?;
    let lab = RefLab::new()?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api.port()?).into(),
    )?;
    let kubeconfig = dir.path().join("speaker.kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{RELAY_LISTEN}"))?;

    let mut gcfg = GobgpdConfig::new(64522, "172.17.0.1");
    gcfg.use_multiple_paths = true;
    for a in ADDRS {
        let mut n = GobgpNeighbor::new(a, 64522);
        n.hold_time = Some(3);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        gcfg = gcfg.neighbor(n);
    }
    let g = Gobgpd::start(&lab.rt01, gcfg)?;

    install_crds(&api)?;
    base_objects(
        &api,
        &[
            ("metallb-system", json!({})),
            ("e2e", json!({})),
            ("team-a", json!({"team": "a"})),
        ],
    )?;
    create(
        &api,
        "/api/v1/namespaces/metallb-system/configmaps",
        json!({"metadata": {"name": "config"}, "data": {"config": CONFIGMAP}}),
    )?;

    let mut socats = Vec::new();
    for ns in &lab.nodes {
        socats.push(relay.spawn_listener_in(ns, RELAY_LISTEN.parse()?)?);
    }
    let ctrl = controller(&api, dir.path())?;
    let mut speakers = Vec::new();
    for (ns, node) in lab.nodes.iter().zip(NODES) {
        speakers.push(speaker(ns, node, &kubeconfig)?);
    }
    let res = switch_steps(&api, &g);
    if res.is_err() {
        let mut all: Vec<&Proc> = vec![&ctrl];
        all.extend(speakers.iter());
        dump(&all);
        eprintln!("--- gobgpd log (tail):\n{}", g.log());
    }
    res
}

fn switch_steps(api: &KubeApiServer, g: &Gobgpd) -> Result<()> {
    // 1. ConfigMap only.
    service(api, "e2e", "web", json!({}), json!({}))?;
    let web = wait_ingress(api, "e2e", "web")?;
    ensure!(web == "172.17.254.1", "web got {web} from the ConfigMap");
    wait_hops(g, "172.17.254.1/32", &ADDRS, "ConfigMap")?;

    // 2. The custom resources.
    create(
        api,
        &format!("{MLB}/communities"),
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "Community",
               "metadata": {"name": "aliases"},
               "spec": {"communities": [
                   {"name": "team-a", "value": "64522:100"},
                   {"name": "team-large", "value": "large:64522:1:2"}]}}),
    )?;
    for (name, spec, labels) in [
        (
            "default",
            json!({"addresses": ["172.17.254.0/24"]}),
            json!({}),
        ),
        (
            "team",
            json!({"addresses": ["172.17.250.0/24"],
                   "serviceAllocation": {"priority": 20, "namespaces": ["team-a"]}}),
            json!({}),
        ),
        (
            "db",
            json!({"addresses": ["172.17.249.0-172.17.249.255"],
                   "serviceAllocation": {"priority": 10,
                       "namespaceSelectors": [{"matchLabels": {"team": "a"}}],
                       "serviceSelectors": [{"matchExpressions":
                           [{"key": "app", "operator": "In", "values": ["db"]}]}]}}),
            json!({"ads": "plain"}),
        ),
        (
            "a-manual",
            json!({"addresses": ["172.17.251.0/24"], "autoAssign": false}),
            json!({"ads": "plain"}),
        ),
    ] {
        create(
            api,
            &format!("{MLB}/ipaddresspools"),
            json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                   "metadata": {"name": name, "labels": labels}, "spec": spec}),
        )?;
    }
    create(
        api,
        &format!("{MLB2}/bgppeers"),
        json!({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
               "metadata": {"name": "rt-01"},
               "spec": {"myASN": 64522, "peerASN": 64522, "peerAddress": "172.17.0.1",
                        "holdTime": "3s"}}),
    )?;
    for (name, spec) in [
        ("default", json!({"ipAddressPools": ["default"]})),
        (
            "team",
            json!({"ipAddressPools": ["team"], "aggregationLength": 24, "localPref": 150,
                   "communities": ["team-a", "team-large", "large:64522:7:7"]}),
        ),
        (
            "plain",
            json!({"ipAddressPoolSelectors": [{"matchLabels": {"ads": "plain"}}]}),
        ),
    ] {
        create(
            api,
            &format!("{MLB}/bgpadvertisements"),
            json!({"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
                   "metadata": {"name": name}, "spec": spec}),
        )?;
    }
    wait("ConfigurationState controller Valid", CONVERGE, || {
        let (result, summary) = config_state(api, "controller")?;
        Ok((result == "Valid").then_some(()).or_else(|| {
            eprintln!("  controller state {result:?} {summary:?}");
            None
        }))
    })?;
    wait("a Warning Event on the ignored ConfigMap", CONVERGE, || {
        let w = warnings(api, "metallb-system", "ConfigMap", "config")?;
        Ok((!w.is_empty()).then_some(w))
    })
    .map(|w| eprintln!("  ConfigMap events: {w:?}"))?;
    // The switch moved nothing.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let now = ingress(api, "e2e", "web")?;
        ensure!(
            now.as_deref() == Some("172.17.254.1"),
            "web moved to {now:?} when the configuration switched to custom resources"
        );
        ensure!(
            next_hops(g, "172.17.254.1/32")?.len() == 3,
            "web's paths changed during the switch"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 3. serviceAllocation and autoAssign.
    service(api, "team-a", "team-web", json!({}), json!({}))?;
    service(api, "team-a", "team-db", json!({"app": "db"}), json!({}))?;
    service(api, "e2e", "other-db", json!({"app": "db"}), json!({}))?;
    service(
        api,
        "e2e",
        "manual",
        json!({}),
        json!({"metallb.io/address-pool": "a-manual"}),
    )?;
    let team_web = wait_ingress(api, "team-a", "team-web")?;
    let team_db = wait_ingress(api, "team-a", "team-db")?;
    let other_db = wait_ingress(api, "e2e", "other-db")?;
    let manual = wait_ingress(api, "e2e", "manual")?;
    ensure!(
        in_net(&team_web, "172.17.250.0/24"),
        "team-a/team-web got {team_web}, want pool team"
    );
    ensure!(
        in_net(&team_db, "172.17.249.0/24"),
        "team-a/team-db got {team_db}, want pool db (priority 10)"
    );
    ensure!(
        in_net(&other_db, "172.17.254.0/24"),
        "e2e/other-db got {other_db}, want pool default"
    );
    ensure!(
        in_net(&manual, "172.17.251.0/24"),
        "e2e/manual got {manual}, want pool a-manual (annotation)"
    );
    for ip in [&web, &team_web, &team_db, &other_db] {
        ensure!(
            !in_net(ip, "172.17.251.0/24"),
            "{ip} came from a-manual (autoAssign: false) unasked"
        );
    }

    // 4. The team advertisement at rt-01.
    let r = wait("172.17.250.0/24 at rt-01 with 3 paths", CONVERGE, || {
        Ok(routes(g)?
            .into_iter()
            .find(|r| r.prefix == "172.17.250.0/24" && r.paths.len() == 3))
    })?;
    for p in &r.paths {
        ensure!(
            p.local_pref == Some(150),
            "LOCAL_PREF {:?}: {p:?}",
            p.local_pref
        );
        ensure!(
            p.communities == ["64522:100"],
            "communities {:?}",
            p.communities
        );
        let large: BTreeSet<&str> = p.large_communities.iter().map(String::as_str).collect();
        ensure!(
            large == BTreeSet::from(["64522:1:2", "64522:7:7"]),
            "large communities {large:?}"
        );
    }
    ensure!(
        next_hops(g, &format!("{team_web}/32"))?.is_empty(),
        "the team pool's /32 is announced besides the /24"
    );
    for ip in [&team_db, &manual] {
        wait_hops(g, &format!("{ip}/32"), &ADDRS, "plain advertisement")?;
    }

    // 5. Pool status.
    for (pool, assigned, available) in [
        ("default", 2, 254),
        ("team", 1, 255),
        ("db", 1, 255),
        ("a-manual", 1, 255),
    ] {
        wait(
            &format!("IPAddressPool {pool} status {assigned}/{available}"),
            CONVERGE,
            || {
                let p = get(api, &format!("{MLB}/ipaddresspools/{pool}"))?;
                let st = &p["status"];
                let got = (
                    st["assignedIPv4"].as_i64(),
                    st["availableIPv4"].as_i64(),
                    st["assignedIPv6"].as_i64(),
                );
                if got == (Some(assigned), Some(available), Some(0)) {
                    Ok(Some(()))
                } else {
                    bail!("status {st}")
                }
            },
        )?;
    }

    // 5b. Advertisements' serviceSelectors.
    create(
        api,
        &format!("{MLB}/ipaddresspools"),
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
               "metadata": {"name": "edge"},
               "spec": {"addresses": ["172.17.248.0/24"], "autoAssign": false}}),
    )?;
    let edge_pool = json!({"metallb.io/address-pool": "edge"});
    service(
        api,
        "e2e",
        "edge-web",
        json!({"app": "edge"}),
        edge_pool.clone(),
    )?;
    service(api, "e2e", "edge-other", json!({"app": "other"}), edge_pool)?;
    let edge_web = wait_ingress(api, "e2e", "edge-web")?;
    let edge_other = wait_ingress(api, "e2e", "edge-other")?;
    for ip in [&edge_web, &edge_other] {
        ensure!(in_net(ip, "172.17.248.0/24"), "{ip}: want pool edge");
    }
    // The advertisement comes after the Services: the speakers kept no
    // labels until now (no selector read any), so they must list the
    // Services again to learn `app`.
    create(
        api,
        &format!("{MLB}/bgpadvertisements"),
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
               "metadata": {"name": "edge"},
               "spec": {"ipAddressPools": ["edge"], "communities": ["64522:42"],
                        "serviceSelectors": [{"matchLabels": {"app": "edge"}}]}}),
    )?;
    let with_community = |prefix: &str| -> Result<Option<()>> {
        let Some(r) = routes(g)?.into_iter().find(|r| r.prefix == prefix) else {
            return Ok(None);
        };
        if r.paths.len() != 3 {
            return Ok(None);
        }
        for p in &r.paths {
            ensure!(
                p.communities == ["64522:42"],
                "{prefix}: communities {:?}",
                p.communities
            );
        }
        Ok(Some(()))
    };
    let edge_web_32 = format!("{edge_web}/32");
    wait(
        "the app: edge Service at rt-01 with 3 paths and 64522:42",
        CONVERGE,
        || with_community(&edge_web_32),
    )?;
    // The speakers have decided with edge-web's labels: edge-other stays out.
    let edge_other_32 = format!("{edge_other}/32");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        ensure!(
            next_hops(g, &edge_other_32)?.is_empty(),
            "{edge_other_32} announced though no advertisement selects it"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    patch(
        api,
        "/api/v1/namespaces/e2e/services/edge-other",
        json!({"metadata": {"labels": {"app": "edge"}}}),
    )?;
    wait(
        "edge-other, labelled app: edge, at rt-01 with 64522:42",
        CONVERGE,
        || with_community(&edge_other_32),
    )?;

    // 6. The peer's node selectors.
    patch(
        api,
        &format!("{MLB2}/bgppeers/rt-01"),
        json!({"spec": {"nodeSelectors": [{"matchLabels": {"rack": "a"}}]}}),
    )?;
    wait_hops(
        g,
        "172.17.254.1/32",
        &ADDRS[..2],
        "peer selects rack a only",
    )?;

    // 7. An invalid set.
    create(
        api,
        &format!("{MLB}/ipaddresspools"),
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
               "metadata": {"name": "overlap"},
               "spec": {"addresses": ["172.17.254.128/25"]}}),
    )?;
    let summary = wait("ConfigurationState controller Invalid", CONVERGE, || {
        let (result, summary) = config_state(api, "controller")?;
        Ok((result == "Invalid").then_some(summary))
    })?;
    ensure!(
        summary.contains("overlap"),
        "errorSummary does not say why: {summary:?}"
    );
    wait("a Warning Event with the reason", CONVERGE, || {
        let w = warnings(api, "metallb-system", "ConfigurationState", "controller")?;
        Ok(w.iter().any(|m| m.contains("overlap")).then_some(()))
    })?;
    service(api, "e2e", "late", json!({}), json!({}))?;
    let late = wait_ingress(api, "e2e", "late")?;
    ensure!(
        in_net(&late, "172.17.254.0/24"),
        "late got {late} under the last good set"
    );
    wait_hops(
        g,
        &format!("{late}/32"),
        &ADDRS[..2],
        "last good set serves",
    )?;
    ensure!(
        next_hops(g, "172.17.254.1/32")?.len() == 2,
        "web's paths changed with the invalid set"
    );
    call(
        api,
        "DELETE",
        &format!("{MLB}/ipaddresspools/overlap"),
        None,
    )?;
    wait(
        "ConfigurationState controller Valid again",
        CONVERGE,
        || Ok((config_state(api, "controller")?.0 == "Valid").then_some(())),
    )?;
    Ok(())
}

// ------------------------------------------------------------------ test 2

#[test]
fn crs_password_secret_md5_frr() -> Result<()> {
    require_or_return!(
        "crs_password_secret_md5_frr",
        ferrolb_testlab::util::FRR_BGPD,
        "socat",
        "curl",
        "kubectl"
    );
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let dir = TestDir::new("crs-md5")?;
    let lab = RefLab::new()?;
    let relay = UnixTcpRelay::start(
        &dir.path().join("api.sock"),
        ([127, 0, 0, 1], api.port()?).into(),
    )?;
    let kubeconfig = dir.path().join("speaker.kubeconfig");
    api.write_kubeconfig_via(&kubeconfig, &format!("https://{RELAY_LISTEN}"))?;

    let mut fcfg = FrrConfig::new(64512, "172.17.0.1");
    let mut n = FrrNeighbor::new(ADDRS[0], 64522);
    n.password = Some("s3cret-md5".into());
    n.hold_time = Some(3);
    n.passive = true;
    fcfg = fcfg.neighbor(n);
    let frr = Frr::start(&lab.rt01, fcfg)?;

    install_crds(&api)?;
    base_objects(&api, &[("metallb-system", json!({})), ("e2e", json!({}))])?;
    let secret = |pw: &str| {
        json!({"metadata": {"name": "rt-01-auth"}, "type": "kubernetes.io/basic-auth",
               "stringData": {"username": "ignored", "password": pw}})
    };
    create(
        &api,
        "/api/v1/namespaces/metallb-system/secrets",
        secret("s3cret-md5"),
    )?;
    create(
        &api,
        &format!("{MLB}/ipaddresspools"),
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
               "metadata": {"name": "default"}, "spec": {"addresses": ["172.17.254.0/24"]}}),
    )?;
    create(
        &api,
        &format!("{MLB}/bgpadvertisements"),
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
               "metadata": {"name": "default"}, "spec": {}}),
    )?;
    create(
        &api,
        &format!("{MLB2}/bgppeers"),
        json!({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
               "metadata": {"name": "rt-01"},
               "spec": {"myASN": 64522, "peerASN": 64512, "peerAddress": "172.17.0.1",
                        "holdTime": "3s", "passwordSecret": {"name": "rt-01-auth",
                                                             "namespace": "metallb-system"},
                        "nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": NODES[0]}}]}}),
    )?;
    // The Service and its status are written by the test (no controller).
    service(&api, "e2e", "web", json!({}), json!({}))?;
    call(
        &api,
        "PATCH",
        "/api/v1/namespaces/e2e/services/web/status",
        Some(&json!({"status": {"loadBalancer": {"ingress": [{"ip": "172.17.254.1"}]}}})),
    )?;

    let _socat = relay.spawn_listener_in(&lab.nodes[0], RELAY_LISTEN.parse()?)?;
    let sp = speaker(&lab.nodes[0], NODES[0], &kubeconfig)?;
    let res = (|| -> Result<()> {
        frr.wait_established(ADDRS[0], CONVERGE)
            .context("session with the Secret's password")?;
        wait("172.17.254.1/32 at FRR", CONVERGE, || {
            Ok(frr
                .rib(Family::Ipv4Unicast)?
                .into_iter()
                .any(|r| r.prefix == "172.17.254.1/32")
                .then_some(()))
        })?;
        call(
            &api,
            "PUT",
            "/api/v1/namespaces/metallb-system/secrets/rt-01-auth",
            Some(&secret("wrong")),
        )?;
        wait(
            "session down with the wrong password",
            Duration::from_secs(30),
            || {
                Ok(
                    (frr.neighbor_state(ADDRS[0])? != ferrolb_testlab::SessionState::Established)
                        .then_some(()),
                )
            },
        )?;
        call(
            &api,
            "PUT",
            "/api/v1/namespaces/metallb-system/secrets/rt-01-auth",
            Some(&secret("s3cret-md5")),
        )?;
        frr.wait_established(ADDRS[0], Duration::from_secs(30))
            .context("session back with the right password")?;
        Ok(())
    })();
    if res.is_err() {
        dump(&[&sp]);
    }
    res
}
