//! `ferrolb controller` against a real kube-apiserver v1.20.2 (testlab's
//! `KubeApiServer`; skipped with a printed reason when it is not built, an
//! error under CI).
//!
//! 200 LoadBalancer Services in three namespaces (plain ones, requested IPs
//! via `spec.loadBalancerIP` and the `loadBalancerIPs` annotation, sharing
//! pairs, a small pool that runs out, an unknown pool, a conflicting request)
//! are created and some deleted while the controller is restarted 20 times
//! (SIGTERM and SIGKILL mixed). A watch records every IP each Service is seen
//! with. At the end:
//! - no IP ever moved (once set, a Service's IPs never change while it exists),
//! - no IP is held by two Services that may not share it (checked at every
//!   observed change and at the end),
//! - every Service holds an IP or has an `AllocationFailed` Event with the reason,
//! - an invalid ConfigMap changes nothing (IPs unchanged, controller alive,
//!   stale config reported on /metrics, new Services still served from the
//!   last good config),
//! - a valid config that shrinks a pool under assigned IPs is rejected (as
//!   MetalLB does) and moves nothing; a restarted controller applies it and
//!   takes exactly the IPs outside it away
//!   (`ClearAssignment`, then `AllocationFailed`) and moves nothing else,
//! - a Service changed to ClusterIP loses its ingress,
//! - `/metrics` counts per pool match the IPs the Services show,
//! - a Service holding an IP that gets an unusable request (a typo in
//!   `loadBalancerIPs`; `address-pool: nope`) keeps the IP and is not written
//!   to, with one Warning `LoadBalancerFailed` Event carrying the reason even
//!   when reconciled again; the fix writes and publishes nothing,
//! - a stranding config is applied by the running controller, with no edit to
//!   the ConfigMap, once the Services it names are deleted or moved
//!   (`spec.loadBalancerIP`): stale back to 0, the log says so, and a Service
//!   waiting for a pool only the new config has gets an address from it,
//! - on the 1.20 server (single-stack) a `PreferDualStack` Service in a pool
//!   with IPv4 and IPv6 ranges gets one IPv4 address,
//! - with `--leader-elect` only the Lease holder works, and another
//!   controller takes over after the holder is killed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

const NAMESPACES: [&str; 3] = ["e2e-a", "e2e-b", "e2e-c"];
const RESTARTS: usize = 20;
const SERVICES: usize = 200;

const CONFIG: &str = "address-pools:
- name: a
  protocol: bgp
  addresses: [10.20.0.0/24]
  avoid-buggy-ips: true
- name: b
  protocol: bgp
  addresses: [10.21.0.0/28]
  auto-assign: false
";

/// What a Service of the test asks for.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Plain,
    /// `spec.loadBalancerIP`.
    SpecIp(&'static str),
    /// `metallb.universe.tf/loadBalancerIPs`.
    AnnotatedIp(&'static str),
    /// `address-pool: b` (16 addresses, 20 such Services).
    PoolB,
    /// `allow-shared-ip` with this key; port 80 or 443.
    Shared(String, i32),
    /// `address-pool: nope`.
    UnknownPool,
    /// Requests an IP already requested by a `SpecIp` Service, without sharing.
    Conflict(&'static str),
}

#[derive(Debug, Clone)]
struct Spec {
    ns: &'static str,
    name: String,
    kind: Kind,
}

impl Spec {
    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn manifest(&self) -> Service {
        let mut annotations = BTreeMap::new();
        let mut lb_ip = None;
        let mut port = 80;
        match &self.kind {
            Kind::Plain => {}
            Kind::SpecIp(ip) | Kind::Conflict(ip) => lb_ip = Some(*ip),
            Kind::AnnotatedIp(ip) => {
                annotations.insert(
                    "metallb.universe.tf/loadBalancerIPs".to_string(),
                    ip.to_string(),
                );
            }
            Kind::PoolB => {
                annotations.insert(
                    "metallb.universe.tf/address-pool".to_string(),
                    "b".to_string(),
                );
            }
            Kind::Shared(k, p) => {
                annotations.insert("metallb.universe.tf/allow-shared-ip".to_string(), k.clone());
                port = *p;
            }
            Kind::UnknownPool => {
                annotations.insert(
                    "metallb.universe.tf/address-pool".to_string(),
                    "nope".to_string(),
                );
            }
        }
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.name, "namespace": self.ns, "annotations": annotations},
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerIP": lb_ip,
                "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
                "selector": {"app": self.name},
            }
        }))
        .expect("service manifest")
    }
}

/// Deterministic shuffling without a rand dependency.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const REQUESTED: [&str; 10] = [
    "10.20.0.240",
    "10.20.0.241",
    "10.20.0.242",
    "10.20.0.243",
    "10.20.0.244",
    "10.20.0.245",
    "10.20.0.246",
    "10.20.0.247",
    "10.20.0.248",
    "10.20.0.249",
];

fn catalog(rng: &mut Lcg) -> Vec<Spec> {
    let mut v = Vec::new();
    for (i, ip) in REQUESTED.iter().enumerate() {
        let kind = if i < 5 {
            Kind::SpecIp(ip)
        } else {
            Kind::AnnotatedIp(ip)
        };
        v.push(Spec {
            ns: "e2e-a",
            name: format!("req-{i}"),
            kind,
        });
    }
    for i in 0..20 {
        v.push(Spec {
            ns: "e2e-b",
            name: format!("poolb-{i}"),
            kind: Kind::PoolB,
        });
    }
    for i in 0..10 {
        for port in [80, 443] {
            v.push(Spec {
                ns: "e2e-c",
                name: format!("share-{i}-{port}"),
                kind: Kind::Shared(format!("key-{i}"), port),
            });
        }
    }
    v.push(Spec {
        ns: "e2e-b",
        name: "unknown-pool".into(),
        kind: Kind::UnknownPool,
    });
    let mut i = 0;
    while v.len() < SERVICES - 1 {
        v.push(Spec {
            ns: NAMESPACES[i % 3],
            name: format!("plain-{i}"),
            kind: Kind::Plain,
        });
        i += 1;
    }
    // Shuffle, then put the conflicting request last (after its owner).
    for j in (1..v.len()).rev() {
        let k = rng.below(j + 1);
        v.swap(j, k);
    }
    v.push(Spec {
        ns: "e2e-c",
        name: "conflict".into(),
        kind: Kind::Conflict(REQUESTED[0]),
    });
    v
}

fn ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
        .unwrap_or_default()
}

fn sharing_key(svc: &Service) -> Option<String> {
    svc.annotations()
        .get("metallb.universe.tf/allow-shared-ip")
        .cloned()
}

fn ports(svc: &Service) -> BTreeSet<i32> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|p| p.iter().map(|p| p.port).collect())
        .unwrap_or_default()
}

/// May these Services hold the same IP?
fn may_share(a: &Service, b: &Service) -> bool {
    matches!((sharing_key(a), sharing_key(b)), (Some(x), Some(y)) if x == y)
        && ports(a).is_disjoint(&ports(b))
}

/// What the watch has seen.
#[derive(Default)]
struct Observed {
    /// First non-empty IP list seen per Service (by `ns/name`).
    first: HashMap<String, Vec<String>>,
    /// Current objects.
    current: HashMap<String, Service>,
    /// Services excluded from the "never moves" check (changed on purpose).
    exempt: BTreeSet<String>,
    violations: Vec<String>,
    observations: usize,
}

impl Observed {
    fn see(&mut self, svc: Service) {
        let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
        let ips = ingress(&svc);
        self.observations += 1;
        if !self.exempt.contains(&key) {
            match self.first.get(&key) {
                Some(first) if *first != ips => self
                    .violations
                    .push(format!("{key}: IPs moved from {first:?} to {ips:?}")),
                None if !ips.is_empty() => {
                    self.first.insert(key.clone(), ips.clone());
                }
                _ => {}
            }
        }
        self.current.insert(key.clone(), svc);
        // Exclusivity over the current snapshot, for the IPs of this Service.
        let me = &self.current[&key];
        for ip in &ips {
            for (other_key, other) in &self.current {
                if *other_key != key && ingress(other).contains(ip) && !may_share(me, other) {
                    self.violations.push(format!(
                        "{ip} held by {key} and {other_key}, which may not share it"
                    ));
                }
            }
        }
    }

    fn gone(&mut self, svc: &Service) {
        let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
        self.current.remove(&key);
        self.first.remove(&key);
    }
}

struct Ctrl {
    child: Option<Child>,
    bin: String,
    kubeconfig: String,
    metrics: String,
    log: std::path::PathBuf,
    starts: usize,
    term_exits: usize,
    kills: usize,
}

impl Ctrl {
    fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(["controller", "--kubeconfig", &self.kubeconfig])
            .args(["--metrics-addr", &self.metrics, "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ferrolb controller")?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// SIGTERM (must exit 0 within 10 s) or SIGKILL.
    fn stop(&mut self, kill: bool) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        if kill {
            child.kill()?;
            child.wait()?;
            self.kills += 1;
            return Ok(());
        }
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait()? {
                ensure!(st.success(), "controller exited with {st} after SIGTERM");
                self.term_exits += 1;
                return Ok(());
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!("controller did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Ctrl {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// `ferrolb_config_errors_total` from the controller's /metrics.
fn config_errors(addr: &str) -> Result<u64> {
    let (_, body) = http_get(addr, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix("ferrolb_config_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("no ferrolb_config_errors_total on /metrics")
}

fn wait_ready(addr: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = http_get(addr, "/readyz") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "controller not ready within {timeout:?}: {:?}",
                http_get(addr, "/readyz")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

async fn all_services(client: &Client) -> Result<Vec<Service>> {
    let mut out = Vec::new();
    for ns in NAMESPACES {
        out.extend(
            Api::<Service>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await?
                .items,
        );
    }
    Ok(out)
}

/// `AllocationFailed` notes per `ns/name`.
async fn failure_notes(client: &Client) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for ns in NAMESPACES {
        for ev in Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items
        {
            if ev.reason.as_deref() != Some("AllocationFailed") {
                continue;
            }
            let Some(r) = ev.regarding else { continue };
            out.entry(format!("{ns}/{}", r.name.unwrap_or_default()))
                .or_default()
                .push(ev.note.unwrap_or_default());
        }
    }
    Ok(out)
}

/// Waits 2 s, then checks that every Service in `before` still shows the same
/// IPs; returns the new snapshot.
async fn unchanged_after_2s(
    client: &Client,
    before: &BTreeMap<String, Vec<String>>,
    when: &str,
) -> Result<BTreeMap<String, Vec<String>>> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = snapshot(&all_services(client).await?);
    for (k, ips) in before {
        ensure!(
            now.get(k) == Some(ips),
            "{k}: {ips:?} became {:?} {when}",
            now.get(k)
        );
    }
    Ok(now)
}

fn snapshot(svcs: &[Service]) -> BTreeMap<String, Vec<String>> {
    svcs.iter()
        .map(|s| {
            (
                format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()),
                ingress(s),
            )
        })
        .collect()
}

/// What a Service should end with: an IP (checked against its kind) or a
/// failure whose reason contains `Err(text)`.
fn expected_failure(kind: &Kind) -> Option<&'static str> {
    match kind {
        Kind::UnknownPool => Some("unknown address pool \"nope\""),
        Kind::Conflict(_) => Some("10.20.0.240"),
        Kind::PoolB => Some("no available IPv4 addresses in pool \"b\""),
        _ => None,
    }
}

/// A sample of `name` (no labels) from the controller's /metrics.
fn metric(addr: &str, name: &str) -> Result<f64> {
    let (_, body) = http_get(addr, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} on /metrics"))
}

/// Polls `check` every 200 ms until it gives a value, for at most `timeout`.
async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "{what} (waited {timeout:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Events (events.k8s.io/v1) about the Service `ns/name`.
async fn events_about(client: &Client, ns: &str, name: &str) -> Result<Vec<Event>> {
    Ok(Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect())
}

/// Checks for `dur` (every 200 ms) that the Service shows exactly `[ip]` and
/// that nobody wrote it: its resourceVersion stays `rv`.
async fn hold_service(
    api: &Api<Service>,
    name: &str,
    ip: &str,
    rv: Option<String>,
    dur: Duration,
    when: &str,
) -> Result<()> {
    let until = Instant::now() + dur;
    loop {
        let s = api.get(name).await?;
        ensure!(
            ingress(&s) == [ip],
            "{name}: status shows {:?} {when}, want [{ip}]",
            ingress(&s)
        );
        ensure!(
            s.resource_version() == rv,
            "{name} was written {when} (resourceVersion {:?} → {:?}): {:?}",
            rv,
            s.resource_version(),
            s.metadata.annotations
        );
        if Instant::now() >= until {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Service `ns/name`, holding `ip`, gets an unusable request (`bad`,
/// merged into its annotations). As MetalLB: it keeps the IP (checked for 2 s,
/// and the controller writes nothing to it), and gets one Warning Event
/// `LoadBalancerFailed` carrying `reason`, even when reconciled again. Then
/// `fix` (merged the same way) changes nothing and publishes nothing.
async fn kept_on_unusable_request(
    client: &Client,
    (ns, name): (&str, &str),
    ip: &str,
    bad: serde_json::Value,
    fix: serde_json::Value,
    reason: &str,
) -> Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::default();
    let lb_failed = |evs: &[Event]| -> Vec<Event> {
        evs.iter()
            .filter(|e| e.reason.as_deref() == Some("LoadBalancerFailed"))
            .cloned()
            .collect()
    };
    api.patch(
        name,
        &pp,
        &Patch::Merge(json!({"metadata": {"annotations": bad}})),
    )
    .await?;
    let t0 = Instant::now();
    poll(
        Duration::from_secs(20),
        &format!("{ns}/{name}: no LoadBalancerFailed Event for {bad}"),
        || async {
            Ok((!lb_failed(&events_about(client, ns, name).await?).is_empty()).then_some(()))
        },
    )
    .await?;
    eprintln!(
        "{ns}/{name} with {bad}: LoadBalancerFailed after {:?}",
        t0.elapsed()
    );
    // Reconciled again with the same unusable request (a label changes): no
    // second Event, no write.
    let poked = api
        .patch(
            name,
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"e2e-poked": "yes"}}})),
        )
        .await?;
    hold_service(
        &api,
        name,
        ip,
        poked.resource_version(),
        Duration::from_secs(2),
        &format!("under the unusable request {bad}"),
    )
    .await?;
    let evs = lb_failed(&events_about(client, ns, name).await?);
    let want_note = format!("invalid request for \"{ns}/{name}\", keeping IP [\"{ip}\"]: {reason}");
    ensure!(
        evs.len() == 1
            && evs[0].type_.as_deref() == Some("Warning")
            && evs[0].note.as_deref() == Some(want_note.as_str()),
        "{ns}/{name}: want one Warning LoadBalancerFailed {want_note:?}, got {:?}",
        evs.iter()
            .map(|e| (e.type_.clone(), e.note.clone(), e.series.is_some()))
            .collect::<Vec<_>>()
    );
    // The fix: nothing written, nothing published.
    let published = events_about(client, ns, name).await?.len();
    let fixed = api
        .patch(
            name,
            &pp,
            &Patch::Merge(json!({"metadata": {"annotations": fix}})),
        )
        .await?;
    hold_service(
        &api,
        name,
        ip,
        fixed.resource_version(),
        Duration::from_secs(2),
        &format!("after the fix {fix}"),
    )
    .await?;
    let now = events_about(client, ns, name).await?;
    ensure!(
        now.len() == published,
        "{ns}/{name}: the fix {fix} published {:?}",
        now[published.min(now.len())..]
            .iter()
            .map(|e| (e.reason.clone(), e.note.clone()))
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn controller_against_real_apiserver() -> Result<()> {
    let Some(api) = ferrolb_testlab::kube::KubeApiServer::start()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let res = rt.block_on(scenario(api.kubeconfig_path(), api.dir()));
    if res.is_err() {
        eprintln!("kube-apiserver logs: {}", api.dir().display());
    }
    res
}

async fn scenario(kubeconfig: &Path, dir: &Path) -> Result<()> {
    let t0 = Instant::now();
    let client = client(kubeconfig).await?;
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in ["metallb-system"].iter().chain(NAMESPACES.iter()) {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        ns_api.create(&PostParams::default(), &n).await?;
    }
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), "metallb-system");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "config"}, "data": {"config": CONFIG}
    }))?;
    cm_api.create(&PostParams::default(), &cm).await?;

    // The observer: every state of every Service the watch delivers.
    let observed = Arc::new(Mutex::new(Observed::default()));
    let obs = observed.clone();
    let watch_client = client.clone();
    let observer = tokio::spawn(async move {
        let api: Api<Service> = Api::all(watch_client);
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let mut o = obs.lock().unwrap();
            match ev {
                Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => o.see(s),
                Ok(watcher::Event::Delete(s)) => o.gone(&s),
                _ => {}
            }
        }
    });

    let metrics = format!("127.0.0.1:{}", free_port()?);
    let mut ctrl = Ctrl {
        child: None,
        bin: env!("CARGO_BIN_EXE_ferrolb").to_string(),
        kubeconfig: kubeconfig.display().to_string(),
        metrics: metrics.clone(),
        log: dir.join("ferrolb-controller.log"),
        starts: 0,
        term_exits: 0,
        kills: 0,
    };
    ctrl.start()?;
    wait_ready(&metrics, Duration::from_secs(30))?;
    eprintln!("controller ready after {:?}", t0.elapsed());

    // Creations and deletions run on their own while the controller restarts.
    let mut rng = Lcg(0x5eed_f0e5);
    let specs = catalog(&mut rng);
    let kinds: HashMap<String, Kind> = specs.iter().map(|s| (s.key(), s.kind.clone())).collect();
    let mut_client = client.clone();
    let deleted = Arc::new(Mutex::new(Vec::<String>::new()));
    let deleted_w = deleted.clone();
    let mutator = tokio::spawn(async move {
        let mut rng = Lcg(0xdead_beef);
        let mut plain_created: Vec<&Spec> = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let api: Api<Service> = Api::namespaced(mut_client.clone(), spec.ns);
            api.create(&PostParams::default(), &spec.manifest()).await?;
            if spec.kind == Kind::Plain {
                plain_created.push(spec);
            }
            // Every 5th creation, delete an earlier plain Service.
            if i % 5 == 4 && plain_created.len() > 3 {
                let victim = plain_created.remove(rng.below(plain_created.len()));
                Api::<Service>::namespaced(mut_client.clone(), victim.ns)
                    .delete(&victim.name, &DeleteParams::default())
                    .await?;
                deleted_w.lock().unwrap().push(victim.key());
            }
            tokio::time::sleep(Duration::from_millis(90)).await;
        }
        anyhow::Ok(())
    });

    let mut rng = Lcg(0x7e57);
    for i in 0..RESTARTS {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200) as u64)).await;
        ctrl.stop(i % 3 == 2)?;
        if rng.below(2) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(500) as u64)).await;
        }
        ctrl.start()?;
    }
    mutator.await??;
    eprintln!(
        "{} restarts ({} SIGTERM, {} SIGKILL) done after {:?}",
        RESTARTS,
        ctrl.term_exits,
        ctrl.kills,
        t0.elapsed()
    );
    wait_ready(&metrics, Duration::from_secs(30))?;

    // Convergence: every Service holds an IP or has its AllocationFailed Event.
    let deleted: BTreeSet<String> = deleted.lock().unwrap().iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (svcs, notes) = loop {
        let svcs = all_services(&client).await?;
        let notes = failure_notes(&client).await?;
        let pending: Vec<String> = svcs
            .iter()
            .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
            .zip(svcs.iter())
            .filter(|(k, s)| ingress(s).is_empty() && !notes.contains_key(k))
            .map(|(k, _)| k)
            .collect();
        if pending.is_empty() {
            break (svcs, notes);
        }
        if Instant::now() > deadline {
            bail!("no IP and no AllocationFailed Event for {pending:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(
        svcs.len() + deleted.len() == SERVICES,
        "{} services + {} deleted",
        svcs.len(),
        deleted.len()
    );

    // Per kind.
    let mut held: HashMap<String, Vec<&Service>> = HashMap::new();
    let mut failed = 0;
    let mut in_b = 0;
    for s in &svcs {
        let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
        let ips = ingress(s);
        let kind = &kinds[&key];
        for ip in &ips {
            held.entry(ip.clone()).or_default().push(s);
        }
        match (kind, ips.as_slice()) {
            (Kind::SpecIp(want) | Kind::AnnotatedIp(want), [got]) => {
                ensure!(got == want, "{key} asked for {want}, got {got}")
            }
            (Kind::PoolB, [got]) => {
                ensure!(
                    got.starts_with("10.21.0."),
                    "{key} got {got}, not from pool b"
                );
                in_b += 1;
            }
            (Kind::Plain | Kind::Shared(..), [got]) => {
                ensure!(
                    got.starts_with("10.20.0."),
                    "{key} got {got}, not from pool a"
                );
                ensure!(
                    !got.ends_with(".0") && !got.ends_with(".255"),
                    "{key} got buggy IP {got}"
                );
            }
            (k, []) => {
                let want =
                    expected_failure(k).with_context(|| format!("{key} ({k:?}) got no IP"))?;
                let n = &notes[&key];
                ensure!(
                    n.iter().any(|n| n.contains(want) && n.contains(&key)),
                    "{key}: AllocationFailed notes {n:?} do not carry {want:?}"
                );
                failed += 1;
            }
            (k, ips) => bail!("{key} ({k:?}) holds {ips:?}"),
        }
    }
    ensure!(
        in_b == 16,
        "{in_b} Services hold pool b addresses, expected 16"
    );
    // Exclusivity at the end; sharing pairs really share.
    for (ip, holders) in &held {
        for (i, a) in holders.iter().enumerate() {
            for b in &holders[i + 1..] {
                ensure!(
                    may_share(a, b),
                    "{ip} held by {} and {} which may not share",
                    a.name_any(),
                    b.name_any()
                );
            }
        }
    }
    for i in 0..10 {
        let a = ingress(
            svcs.iter()
                .find(|s| s.name_any() == format!("share-{i}-80"))
                .unwrap(),
        );
        let b = ingress(
            svcs.iter()
                .find(|s| s.name_any() == format!("share-{i}-443"))
                .unwrap(),
        );
        ensure!(!a.is_empty() && a == b, "sharing pair {i}: {a:?} vs {b:?}");
    }

    // No IP ever moved, according to the watch.
    {
        let o = observed.lock().unwrap();
        ensure!(o.violations.is_empty(), "violations: {:#?}", o.violations);
        for (key, ips) in snapshot(&svcs) {
            if let Some(first) = o.first.get(&key) {
                ensure!(
                    *first == ips,
                    "{key}: first seen with {first:?}, now {ips:?}"
                );
            }
        }
        eprintln!("watch observed {} Service states", o.observations);
    }

    // An invalid config changes nothing.
    let before = snapshot(&svcs);
    let bad = "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.20.0.0/24]\n- name: c\n  protocol: bgp\n  addresses: [10.20.0.128/25]\n  bogus-key: 1\n";
    cm_api
        .patch(
            "config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"config": bad}})),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http_get(&metrics, "/metrics")?;
        if body.contains("metallb_k8s_client_config_stale_bool 1") {
            ensure!(
                body.contains("metallb_k8s_client_config_loaded_bool 1"),
                "{body}"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "invalid config not reported on /metrics:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let late = Spec {
        ns: "e2e-a",
        name: "after-invalid-config".into(),
        kind: Kind::Plain,
    };
    Api::<Service>::namespaced(client.clone(), "e2e-a")
        .create(&PostParams::default(), &late.manifest())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = Api::<Service>::namespaced(client.clone(), "e2e-a")
            .get(&late.name)
            .await?;
        if let [ip] = ingress(&s).as_slice() {
            ensure!(ip.starts_with("10.20.0."), "late service got {ip}");
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no IP for a Service created after the invalid config"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = unchanged_after_2s(&client, &before, "after an invalid config").await?;
    ensure!(ctrl.alive(), "controller died after an invalid config");
    wait_ready(&metrics, Duration::from_secs(1))?;

    // A valid config that shrinks pool b to 10.21.0.0/29 would take
    // 10.21.0.8-15 from the Services holding them. As MetalLB, the running
    // controller rejects it (counted in ferrolb_config_errors_total) and moves
    // nothing. A restarted controller starts from it: those Services lose the
    // IPs (ClearAssignment, then AllocationFailed: b is full); everything else
    // stays where it is.
    let in_b_before: BTreeMap<String, String> = after
        .iter()
        .filter(|(k, ips)| kinds.get(*k) == Some(&Kind::PoolB) && !ips.is_empty())
        .map(|(k, ips)| (k.clone(), ips[0].clone()))
        .collect();
    {
        let mut o = observed.lock().unwrap();
        o.exempt.extend(in_b_before.keys().cloned());
    }
    let shrunk = CONFIG.replace("10.21.0.0/28", "10.21.0.0/29");
    let errors_before = config_errors(&metrics)?;
    cm_api
        .patch(
            "config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"config": shrunk}})),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while config_errors(&metrics)? == errors_before {
        ensure!(
            Instant::now() < deadline,
            "a config that strands 8 IPs was not rejected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unchanged_after_2s(&client, &after, "under a rejected config").await?;
    let log = std::fs::read_to_string(&ctrl.log).unwrap_or_default();
    ensure!(
        log.lines().any(
            |l| l.contains("new config not compatible with assigned IPs: service")
                && l.contains("cannot own \"10.21.0.")
                && l.contains("(and 7 more IPs)")
        ),
        "no rejection naming the 8 stranded IPs in the controller log"
    );
    // …and said so on the ConfigMap, as MetalLB's controller does.
    let rejected_on_cm = Api::<Event>::namespaced(client.clone(), "metallb-system")
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("InvalidConfig")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("config")
                && e.note.as_deref().is_some_and(|n| {
                    n.starts_with("configuration rejected: new config not compatible")
                        && n.ends_with("(and 7 more IPs)")
                })
        });
    ensure!(
        rejected_on_cm,
        "no InvalidConfig Event on the ConfigMap for the stranding config"
    );
    ctrl.stop(false)?;
    ctrl.start()?;
    wait_ready(&metrics, Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = snapshot(&all_services(&client).await?);
        let cleared_ok = in_b_before.iter().all(|(k, ip)| {
            let last: u8 = ip
                .rsplit('.')
                .next()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let cur = now.get(k).cloned().unwrap_or_default();
            if last < 8 {
                cur == vec![ip.clone()]
            } else {
                cur.is_empty()
            }
        });
        let others_ok = after
            .iter()
            .filter(|(k, _)| !in_b_before.contains_key(*k))
            .all(|(k, ips)| now.get(k) == Some(ips));
        if cleared_ok && others_ok {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "after shrinking pool b: pool-b services {:?}",
            in_b_before
                .keys()
                .map(|k| (k, now.get(k)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut cleared_events = 0;
    for (k, ip) in &in_b_before {
        let last: u8 = ip
            .rsplit('.')
            .next()
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        if last < 8 {
            continue;
        }
        let (ns, name) = k.split_once('/').unwrap();
        let evs = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items;
        let has = |reason: &str, text: &str| {
            evs.iter().any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.note.as_deref().is_some_and(|n| n.contains(text))
            })
        };
        ensure!(
            has("ClearAssignment", ip),
            "{k}: no ClearAssignment Event for {ip}"
        );
        ensure!(
            has("AllocationFailed", "pool \"b\""),
            "{k}: no AllocationFailed Event after losing {ip}"
        );
        cleared_events += 1;
    }
    ensure!(
        cleared_events == 8,
        "{cleared_events} Services lost a pool-b IP, expected 8"
    );
    ensure!(ctrl.alive(), "controller died after a config change");

    // A Service that stops being a LoadBalancer loses its IP.
    let victim = svcs
        .iter()
        .find(|s| {
            kinds[&format!("{}/{}", s.namespace().unwrap(), s.name_any())] == Kind::Plain
                && !ingress(s).is_empty()
        })
        .unwrap();
    let vkey = format!("{}/{}", victim.namespace().unwrap(), victim.name_any());
    observed.lock().unwrap().exempt.insert(vkey.clone());
    let vapi: Api<Service> = Api::namespaced(client.clone(), &victim.namespace().unwrap());
    vapi.patch(
        &victim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = vapi.get(&victim.name_any()).await?;
        if ingress(&s).is_empty()
            && !s
                .annotations()
                .contains_key("metallb.io/ip-allocated-from-pool")
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{vkey}: ingress not cleared after type ClusterIP"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    {
        let o = observed.lock().unwrap();
        ensure!(o.violations.is_empty(), "violations: {:#?}", o.violations);
    }
    // /metrics agrees with what the Services show.
    let shown = snapshot(&all_services(&client).await?);
    let distinct = |prefix: &str| {
        shown
            .values()
            .flatten()
            .filter(|ip| ip.starts_with(prefix))
            .collect::<BTreeSet<_>>()
            .len()
    };
    let (_, body) = http_get(&metrics, "/metrics")?;
    for (pool, prefix, total) in [("a", "10.20.0.", 254), ("b", "10.21.0.", 8)] {
        let in_use = format!(
            "metallb_allocator_addresses_in_use_total{{pool=\"{pool}\"}} {}",
            distinct(prefix)
        );
        let all = format!("metallb_allocator_addresses_total{{pool=\"{pool}\"}} {total}");
        ensure!(
            body.lines().any(|l| l == in_use) && body.lines().any(|l| l == all),
            "expected {in_use:?} and {all:?} in\n{body}"
        );
    }

    // An unusable request on a Service that holds an IP keeps the IP (as
    // MetalLB): a typo in the loadBalancerIPs annotation, then an unknown pool.
    let annotated = after
        .iter()
        .find_map(|(k, ips)| match (kinds.get(k), ips.as_slice()) {
            (Some(Kind::AnnotatedIp(want)), [got]) if got == want => Some((k.clone(), got.clone())),
            _ => None,
        })
        .context("no Service holding its annotated IP")?;
    let plain = shown
        .iter()
        .find_map(|(k, ips)| match (kinds.get(k), ips.as_slice()) {
            (Some(Kind::Plain), [got]) if *k != vkey => Some((k.clone(), got.clone())),
            _ => None,
        })
        .context("no plain Service holding an IP")?;
    let typo = format!("{}5", annotated.1);
    let typo_reason =
        format!("metallb.universe.tf/loadBalancerIPs: \"{typo}\" is not a valid IP address");
    // The two Services are independent: checked side by side.
    futures::try_join!(
        kept_on_unusable_request(
            &client,
            annotated.0.split_once('/').unwrap(),
            &annotated.1,
            json!({"metallb.universe.tf/loadBalancerIPs": typo}),
            json!({"metallb.universe.tf/loadBalancerIPs": annotated.1}),
            &typo_reason,
        ),
        kept_on_unusable_request(
            &client,
            plain.0.split_once('/').unwrap(),
            &plain.1,
            json!({"metallb.universe.tf/address-pool": "nope"}),
            json!({"metallb.universe.tf/address-pool": null}),
            "unknown address pool \"nope\"",
        ),
    )?;

    // A stranding config applies by itself once the Services it names are gone
    // or moved, with no edit to the ConfigMap. Pool s (10.23.0.0/29, only for
    // annotated Services, so no other Service waits for its addresses) is
    // added; s-0 and s-1 take two of its IPs; a config that drops s and adds
    // c (an IPv4 and an IPv6 range) is rejected. s-0 is deleted (still
    // rejected: s-1), s-1 moves into pool a with spec.loadBalancerIP: c applies.
    let svc_b: Api<Service> = Api::namespaced(client.clone(), "e2e-b");
    let pool_s = "- name: s\n  protocol: bgp\n  addresses: [10.23.0.0/29]\n  auto-assign: false\n";
    let pool_c = "- name: c\n  protocol: bgp\n  addresses: [10.22.0.0/29, \"fd00:22::/125\"]\n  auto-assign: false\n";
    cm_api
        .patch(
            "config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"config": format!("{shrunk}{pool_s}")}})),
        )
        .await?;
    poll(Duration::from_secs(20), "pool s never in force", || async {
        Ok(http_get(&metrics, "/metrics")?
            .1
            .contains("metallb_allocator_addresses_total{pool=\"s\"} 8")
            .then_some(()))
    })
    .await?;
    let in_pool = |name: &str, pool: &str| -> Result<Service> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "e2e-b",
                         "annotations": {"metallb.universe.tf/address-pool": pool}},
            "spec": {"type": "LoadBalancer",
                     "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]},
        }))?)
    };
    let mut in_s = Vec::new();
    for name in ["s-0", "s-1"] {
        svc_b
            .create(&PostParams::default(), &in_pool(name, "s")?)
            .await?;
        let ip = poll(
            Duration::from_secs(20),
            &format!("{name}: no IP from pool s"),
            || async {
                Ok(match ingress(&svc_b.get(name).await?).as_slice() {
                    [ip] => Some(ip.clone()),
                    _ => None,
                })
            },
        )
        .await?;
        ensure!(
            ip.starts_with("10.23.0."),
            "{name} got {ip}, not from pool s"
        );
        in_s.push(ip);
    }
    observed
        .lock()
        .unwrap()
        .exempt
        .insert("e2e-b/s-1".to_string());
    let errors_before = config_errors(&metrics)?;
    cm_api
        .patch(
            "config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"config": format!("{shrunk}{pool_c}")}})),
        )
        .await?;
    poll(
        Duration::from_secs(20),
        "a config stranding s-0 and s-1 was not rejected",
        || async { Ok((config_errors(&metrics)? > errors_before).then_some(())) },
    )
    .await?;
    ensure!(
        metric(&metrics, "metallb_k8s_client_config_stale_bool")? == 1.0,
        "stale not reported for the config stranding s-0 and s-1"
    );
    let log = std::fs::read_to_string(&ctrl.log).unwrap_or_default();
    ensure!(
        log.lines().any(|l| l.contains(&format!(
            "service \"e2e-b/s-0\" cannot own \"{}\" under new config (and 1 more IPs)",
            in_s[0]
        ))),
        "no rejection naming s-0 and one more IP in the controller log"
    );
    ensure!(
        !log.contains("a configuration rejected earlier applies now"),
        "a retry applied before anything changed"
    );
    let cm_version = cm_api.get("config").await?.resource_version();
    // A Service asking for pool c waits: c is not in force yet.
    svc_b
        .create(&PostParams::default(), &in_pool("in-c", "c")?)
        .await?;
    poll(
        Duration::from_secs(20),
        "in-c: no AllocationFailed for pool c",
        || async {
            Ok(failure_notes(&client)
                .await?
                .get("e2e-b/in-c")
                .is_some_and(|n| n.iter().any(|n| n.contains("unknown address pool \"c\"")))
                .then_some(()))
        },
    )
    .await?;
    ensure!(
        ingress(&svc_b.get("in-c").await?).is_empty(),
        "in-c got an IP from a rejected config"
    );
    // s-0 deleted: still rejected (s-1 holds an IP of s).
    svc_b.delete("s-0", &DeleteParams::default()).await?;
    poll(
        Duration::from_secs(20),
        "the controller never released s-0",
        || async {
            let log = std::fs::read_to_string(&ctrl.log).unwrap_or_default();
            Ok(log
                .lines()
                .any(|l| l.contains("service gone") && l.contains("e2e-b/s-0"))
                .then_some(()))
        },
    )
    .await?;
    ensure!(
        metric(&metrics, "metallb_k8s_client_config_stale_bool")? == 1.0,
        "the config applied while s-1 still holds {}",
        in_s[1]
    );
    // s-1 moves to a free IP of pool a (the pool annotation goes with it).
    let held_now: BTreeSet<String> = snapshot(&all_services(&client).await?)
        .into_values()
        .flatten()
        .collect();
    let target = (200..240)
        .map(|i| format!("10.20.0.{i}"))
        .find(|ip| !held_now.contains(ip))
        .context("no free IP in 10.20.0.200-239")?;
    let moved_at = Instant::now();
    svc_b
        .patch(
            "s-1",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"metallb.universe.tf/address-pool": null}},
                "spec": {"loadBalancerIP": target},
            })),
        )
        .await?;
    poll(
        Duration::from_secs(20),
        "the stranding config never applied after s-1 moved",
        || async {
            Ok((metric(&metrics, "metallb_k8s_client_config_stale_bool")? == 0.0).then_some(()))
        },
    )
    .await?;
    eprintln!(
        "stranding config applied {:?} after the last stranded Service moved",
        moved_at.elapsed()
    );
    let log = std::fs::read_to_string(&ctrl.log).unwrap_or_default();
    ensure!(
        log.contains("a configuration rejected earlier applies now"),
        "no 'a configuration rejected earlier applies now' in the controller log"
    );
    ensure!(
        cm_api.get("config").await?.resource_version() == cm_version,
        "the ConfigMap changed"
    );
    ensure!(
        ingress(&svc_b.get("s-1").await?) == [target.as_str()],
        "s-1 does not show {target}"
    );
    // in-c gets an address only the new config has.
    let got = poll(
        Duration::from_secs(20),
        "in-c: no IP from pool c",
        || async {
            Ok(match ingress(&svc_b.get("in-c").await?).as_slice() {
                [ip] => Some(ip.clone()),
                [] => None,
                more => bail!("in-c got {more:?}"),
            })
        },
    )
    .await?;
    ensure!(
        got.starts_with("10.22.0."),
        "in-c got {got}, not from pool c"
    );

    // IP families on a 1.20 server (IPv6DualStack gate off, single-stack
    // 10.96.0.0/16): a PreferDualStack Service in pool c (IPv4 and IPv6
    // ranges) gets one IPv4 address. The server drops the dual-stack fields
    // when the gate is off: read back, spec.ipFamilyPolicy and spec.ipFamilies
    // are absent and spec.clusterIPs holds the one IPv4 cluster IP, so the
    // family comes from clusterIPs (as MetalLB reads it).
    let mut dual = in_pool("dual", "c")?;
    dual.spec.as_mut().unwrap().ip_family_policy = Some("PreferDualStack".into());
    let stored = svc_b.create(&PostParams::default(), &dual).await?;
    let spec = stored.spec.clone().unwrap_or_default();
    eprintln!(
        "1.20 stores for a PreferDualStack Service: ipFamilyPolicy {:?}, ipFamilies {:?}, clusterIP {:?}, clusterIPs {:?}",
        spec.ip_family_policy, spec.ip_families, spec.cluster_ip, spec.cluster_ips
    );
    ensure!(
        spec.ip_family_policy.is_none()
            && spec.ip_families.is_none()
            && spec.cluster_ips.as_ref().is_some_and(|c| c.len() == 1
                && c[0].parse::<std::net::Ipv4Addr>().is_ok()
                && spec.cluster_ip.as_ref() == Some(&c[0])),
        "the 1.20 server stored another shape than the comment says: {spec:?}"
    );
    let ips = poll(Duration::from_secs(20), "dual: no IP", || async {
        let ips = ingress(&svc_b.get("dual").await?);
        Ok((!ips.is_empty()).then_some(ips))
    })
    .await?;
    ensure!(
        ips.len() == 1 && ips[0].starts_with("10.22.0."),
        "PreferDualStack on a single-stack server: want one IPv4 address of pool c, got {ips:?}"
    );
    let (_, body) = http_get(&metrics, "/metrics")?;
    for want in [
        "metallb_allocator_ipv4_addresses_in_use_total{pool=\"c\"} 2",
        "metallb_allocator_ipv6_addresses_in_use_total{pool=\"c\"} 0",
    ] {
        ensure!(body.lines().any(|l| l == want), "want {want:?} in\n{body}");
    }
    {
        let o = observed.lock().unwrap();
        ensure!(o.violations.is_empty(), "violations: {:#?}", o.violations);
    }

    observer.abort();
    ctrl.stop(false)?;

    // Leader election: two controllers with --leader-elect; only the Lease
    // holder works. The holder is SIGKILLed; the other takes over once the
    // 15 s Lease expires and serves a new Service.
    let leader_start = Instant::now();
    let mut leaders = Vec::new();
    for i in 0..2 {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.join(format!("ferrolb-leader-{i}.log")))?;
        let child = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
            .args(["controller", "--leader-elect", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--metrics-addr", &addr])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let guard = Ctrl {
            child: Some(child),
            bin: String::new(),
            kubeconfig: String::new(),
            metrics: addr.clone(),
            log: dir.join("unused.log"),
            starts: 1,
            term_exits: 0,
            kills: 0,
        };
        if i == 0 {
            wait_ready(&addr, Duration::from_secs(30))?;
        }
        leaders.push(guard);
    }
    // The second one answers /readyz (not ready) once it is up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (code, body) = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = http_get(&leaders[1].metrics, "/readyz");
        if let Ok((code, body)) = &r
            && body.contains("leader Lease")
        {
            break (*code, body.clone());
        }
        ensure!(
            Instant::now() < deadline,
            "second controller never said it waits for the Lease: {r:?}"
        );
    };
    ensure!(
        code == 503 && body.contains("leader Lease"),
        "second controller should wait for the Lease: {code} {body}"
    );
    leaders[0].stop(true)?;
    let takeover = Instant::now();
    wait_ready(&leaders[1].metrics, Duration::from_secs(40))?;
    let takeover = takeover.elapsed();
    let after_leader = Spec {
        ns: "e2e-b",
        name: "after-leader-change".into(),
        kind: Kind::Plain,
    };
    Api::<Service>::namespaced(client.clone(), "e2e-b")
        .create(&PostParams::default(), &after_leader.manifest())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = Api::<Service>::namespaced(client.clone(), "e2e-b")
            .get(&after_leader.name)
            .await?;
        if !ingress(&s).is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "no IP from the new leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    leaders[1].stop(false)?;
    eprintln!(
        "leader election: takeover {takeover:?} after SIGKILL of the holder; {:?} in all",
        leader_start.elapsed()
    );

    let log = std::fs::read_to_string(dir.join("ferrolb-controller.log")).unwrap_or_default();
    ensure!(
        !log.contains("panicked"),
        "controller panicked; log in {}",
        dir.display()
    );
    eprintln!(
        "controller e2e: {SERVICES} services ({} deleted, {} without IP, each with its AllocationFailed reason), \
         {} controller starts ({} SIGTERM exits, {} SIGKILLs), 0 IPs moved, 0 illegal shares, invalid config ignored, pool shrink rejected, then applied by a restart: exactly the 8 IPs outside it released; \
         unusable requests kept their IPs (one LoadBalancerFailed each); a stranding config applied once its Services went or moved; \
         PreferDualStack on 1.20 got one IPv4 address; {:?}",
        deleted.len(),
        failed,
        ctrl.starts,
        ctrl.term_exits,
        ctrl.kills,
        t0.elapsed()
    );
    Ok(())
}
