//! Where the configuration comes from, end to end: `ferrolb controller`
//! against a real kube-apiserver v1.20.2 (testlab's `KubeApiServer`; skipped
//! with a printed reason when it is not built) with the `metallb.io` CRDs
//! of `manifests/crds.yaml` installed by the test.
//!
//! - The ConfigMap alone is the configuration (auto mode): a Service gets an
//!   IP from it, and the ConfigurationState `controller` says `Valid`.
//! - An IPAddressPool with the ConfigMap's pool name and range appears: the
//!   custom resources are in force, the ConfigMap gets one Warning
//!   `ConfigMapIgnored` Event, and the Service's IP does not move (nobody
//!   writes it).
//! - A Service asking for a pool only the custom resources have gets an IP
//!   from it.
//! - A BGPPeer with `vrf` gets a Warning `UnsupportedField` Event regarding it.
//! - Overlapping pools are rejected: the last good configuration keeps
//!   serving (a new Service still gets an IP from it), `/metrics` says stale,
//!   the ConfigurationState says `Invalid` with an `errorSummary`, and a
//!   Warning `InvalidConfig` Event regards it. Removing the overlap makes it
//!   `Valid` again and not stale.
//! - A speaker (node `n1`, in the root namespace: its only peer is on
//!   127.0.0.2, loopback) reads the same custom resources: its
//!   ConfigurationState `speaker-n1` says `Valid`; a BGPPeer naming a
//!   password Secret that does not exist makes it `Invalid` (with a Warning
//!   `InvalidConfig` Event regarding it) while the controller, which does not
//!   read Secrets, stays `Valid`; creating the Secret makes it `Valid` again
//!   with no change to the custom resources (the Secrets are read again every
//!   10 s).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NS: &str = "metallb-system";
const APP_NS: &str = "src-e2e";

const CONFIG: &str = "address-pools:
- name: shared
  protocol: bgp
  addresses: [10.40.0.0/24]
";

/// `(kind, plural, version)` of the kinds the test uses.
const CRDS: &[(&str, &str, &str)] = &[
    ("IPAddressPool", "ipaddresspools", "v1beta1"),
    ("BGPPeer", "bgppeers", "v1beta2"),
    ("BGPAdvertisement", "bgpadvertisements", "v1beta1"),
    ("L2Advertisement", "l2advertisements", "v1beta1"),
    ("Community", "communities", "v1beta1"),
    ("BFDProfile", "bfdprofiles", "v1beta1"),
    ("ConfigurationState", "configurationstates", "v1beta1"),
];

/// The CustomResourceDefinitions of `manifests/crds.yaml`.
fn shipped_crds() -> Result<Vec<CustomResourceDefinition>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/crds.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if v.is_null() {
            continue;
        }
        ensure!(
            v["kind"] == "CustomResourceDefinition",
            "{}: {}",
            path.display(),
            v["kind"]
        );
        out.push(serde_json::from_value(v)?);
    }
    Ok(out)
}

fn ar(kind: &str) -> ApiResource {
    let (k, plural, version) = CRDS.iter().find(|c| c.0 == kind).expect("a known kind");
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metallb.io", version, k), plural)
}

fn cr_api(client: &Client, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NS, &ar(kind))
}

async fn create_cr(client: &Client, kind: &str, name: &str, spec: Value) -> Result<()> {
    let a = ar(kind);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": a.api_version, "kind": kind,
        "metadata": {"name": name, "namespace": NS}, "spec": spec,
    }))?;
    cr_api(client, kind)
        .create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating {kind}/{name}"))?;
    Ok(())
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

fn metric(addr: &str, name: &str) -> Result<f64> {
    let (_, body) = http_get(addr, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} on /metrics"))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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

fn service(name: &str, pool: Option<&str>) -> Result<Service> {
    let annotations = match pool {
        Some(p) => json!({"metallb.universe.tf/address-pool": p}),
        None => json!({}),
    };
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": APP_NS, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    }))?)
}

fn ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
        .unwrap_or_default()
}

/// Waits until the Service shows one IP and returns it.
async fn ip_of(api: &Api<Service>, name: &str) -> Result<String> {
    poll(
        Duration::from_secs(30),
        &format!("{name} gets an IP"),
        || async { Ok(ingress(&api.get(name).await?).into_iter().next()) },
    )
    .await
}

/// The Events in `ns` with this reason about the object `kind`/`name`.
async fn events(
    client: &Client,
    ns: &str,
    reason: &str,
    kind: &str,
    name: &str,
) -> Result<Vec<Event>> {
    Ok(Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(kind)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect())
}

/// `status` of the ConfigurationState `name`, once it has a `result`.
async fn state_of(client: &Client, name: &str) -> Result<Option<Value>> {
    let Some(obj) = cr_api(client, "ConfigurationState").get_opt(name).await? else {
        return Ok(None);
    };
    Ok(obj
        .data
        .get("status")
        .filter(|s| s.get("result").is_some())
        .cloned())
}

async fn state_is(client: &Client, result: &str) -> Result<Value> {
    named_state_is(client, "controller", result, Duration::from_secs(30)).await
}

async fn named_state_is(
    client: &Client,
    name: &str,
    result: &str,
    timeout: Duration,
) -> Result<Value> {
    poll(
        timeout,
        &format!("ConfigurationState {name} says {result}"),
        || async {
            Ok(state_of(client, name)
                .await?
                .filter(|s| s["result"] == result))
        },
    )
    .await
}

struct Ctrl(Child);

impl Drop for Ctrl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn configuration_source_against_real_apiserver() -> Result<()> {
    let Some(api) = ferrolb_testlab::kube::KubeApiServer::start()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The logs outlive the API server's directory.
    let logs = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let res = rt.block_on(scenario(api.kubeconfig_path(), logs));
    if res.is_err() {
        eprintln!(
            "logs: {} and {}/config_source_e2e-*.log",
            api.dir().display(),
            logs.display()
        );
    }
    res
}

async fn scenario(kubeconfig: &Path, dir: &Path) -> Result<()> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let client = Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?,
    )?;
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, APP_NS] {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        ns_api.create(&PostParams::default(), &n).await?;
    }
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in shipped_crds()? {
        crd_api.create(&PostParams::default(), &crd).await?;
    }
    for (kind, ..) in CRDS {
        poll(
            Duration::from_secs(30),
            &format!("{kind} served"),
            || async {
                Ok(cr_api(&client, kind)
                    .list(&ListParams::default())
                    .await
                    .ok()
                    .map(|_| ()))
            },
        )
        .await?;
    }
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "config"}, "data": {"config": CONFIG}
    }))?;
    cm_api.create(&PostParams::default(), &cm).await?;

    let metrics = format!("127.0.0.1:{}", free_port()?);
    let log = std::fs::File::create(dir.join("config_source_e2e-controller.log"))?;
    let _ctrl = Ctrl(
        Command::new(env!("CARGO_BIN_EXE_ferrolb"))
            .args(["controller", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--metrics-addr", &metrics, "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ferrolb controller")?,
    );

    // 1. The ConfigMap alone.
    let svc_api: Api<Service> = Api::namespaced(client.clone(), APP_NS);
    svc_api
        .create(&PostParams::default(), &service("first", None)?)
        .await?;
    let first_ip = ip_of(&svc_api, "first").await?;
    ensure!(first_ip.starts_with("10.40.0."), "first: {first_ip}");
    let st = state_is(&client, "Valid").await?;
    ensure!(st["conditions"][0]["status"] == "True", "{st}");
    let cs = cr_api(&client, "ConfigurationState")
        .get("controller")
        .await?;
    ensure!(
        cs.labels()
            .get("metallb.io/component-type")
            .map(String::as_str)
            == Some("controller"),
        "labels: {:?}",
        cs.labels()
    );

    // 2. The custom resources take over with the same pool: nothing moves.
    let first_rv = svc_api.get("first").await?.resource_version();
    create_cr(
        &client,
        "IPAddressPool",
        "shared",
        json!({"addresses": ["10.40.0.0/24"]}),
    )
    .await?;
    create_cr(&client, "BGPAdvertisement", "all", json!({})).await?;
    let ignored = poll(
        Duration::from_secs(30),
        "ConfigMapIgnored Event",
        || async {
            let evs = events(&client, NS, "ConfigMapIgnored", "ConfigMap", "config").await?;
            Ok((!evs.is_empty()).then_some(evs))
        },
    )
    .await?;
    ensure!(ignored[0].type_.as_deref() == Some("Warning"));
    // 3. A pool only the custom resources have.
    create_cr(
        &client,
        "IPAddressPool",
        "cr-only",
        json!({"addresses": ["10.41.0.0/24"]}),
    )
    .await?;
    svc_api
        .create(&PostParams::default(), &service("second", Some("cr-only"))?)
        .await?;
    let second_ip = ip_of(&svc_api, "second").await?;
    ensure!(second_ip.starts_with("10.41.0."), "second: {second_ip}");
    let first = svc_api.get("first").await?;
    ensure!(
        ingress(&first) == [first_ip.clone()],
        "first moved: {:?}",
        ingress(&first)
    );
    ensure!(
        first.resource_version() == first_rv,
        "first was written after the switch: {:?}",
        first.metadata
    );
    ensure!(
        events(&client, NS, "ConfigMapIgnored", "ConfigMap", "config")
            .await?
            .len()
            == 1,
        "ConfigMapIgnored published more than once"
    );
    state_is(&client, "Valid").await?;

    // 4. An accepted-but-unsupported field.
    create_cr(
        &client,
        "BGPPeer",
        "in-vrf",
        json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "10.1.0.1", "vrf": "red"}),
    )
    .await?;
    let unsupported = poll(
        Duration::from_secs(30),
        "UnsupportedField Event",
        || async {
            let evs = events(&client, NS, "UnsupportedField", "BGPPeer", "in-vrf").await?;
            Ok((!evs.is_empty()).then_some(evs))
        },
    )
    .await?;
    let note = unsupported[0].note.clone().unwrap_or_default();
    ensure!(note.contains("spec.vrf"), "note: {note}");
    let peer_uid = cr_api(&client, "BGPPeer").get("in-vrf").await?.uid();
    ensure!(
        unsupported[0]
            .regarding
            .as_ref()
            .and_then(|r| r.uid.clone())
            == peer_uid,
        "the Event regards the BGPPeer by uid"
    );

    // 5. Overlapping pools: rejected, the last good one serves.
    ensure!(metric(&metrics, "metallb_k8s_client_config_stale_bool")? == 0.0);
    create_cr(
        &client,
        "IPAddressPool",
        "overlap",
        json!({"addresses": ["10.41.0.0/28"]}),
    )
    .await?;
    let st = state_is(&client, "Invalid").await?;
    let summary = st["errorSummary"].as_str().unwrap_or_default().to_string();
    ensure!(!summary.is_empty(), "no errorSummary: {st}");
    ensure!(
        summary.contains("overlap") || summary.contains("10.41.0.0"),
        "errorSummary does not say what is wrong: {summary}"
    );
    ensure!(st["conditions"][0]["status"] == "False", "{st}");
    ensure!(
        st["conditions"][0]["reason"] == "ConfigurationError",
        "{st}"
    );
    let invalid = poll(Duration::from_secs(30), "InvalidConfig Event", || async {
        let evs = events(
            &client,
            NS,
            "InvalidConfig",
            "ConfigurationState",
            "controller",
        )
        .await?;
        Ok((!evs.is_empty()).then_some(evs))
    })
    .await?;
    ensure!(invalid[0].type_.as_deref() == Some("Warning"));
    poll(Duration::from_secs(10), "stale on /metrics", || async {
        Ok((metric(&metrics, "metallb_k8s_client_config_stale_bool")? == 1.0).then_some(()))
    })
    .await?;
    svc_api
        .create(&PostParams::default(), &service("third", Some("cr-only"))?)
        .await?;
    let third_ip = ip_of(&svc_api, "third").await?;
    ensure!(
        third_ip.starts_with("10.41.0.") && third_ip != second_ip,
        "third: {third_ip}"
    );

    // 6. Back to valid.
    cr_api(&client, "IPAddressPool")
        .delete("overlap", &DeleteParams::default())
        .await?;
    let st = state_is(&client, "Valid").await?;
    ensure!(st.get("errorSummary").is_none_or(Value::is_null), "{st}");
    poll(Duration::from_secs(10), "not stale on /metrics", || async {
        Ok((metric(&metrics, "metallb_k8s_client_config_stale_bool")? == 0.0).then_some(()))
    })
    .await?;
    for (name, ip) in [
        ("first", &first_ip),
        ("second", &second_ip),
        ("third", &third_ip),
    ] {
        let s = svc_api.get(name).await?;
        if ingress(&s) != [ip.clone()] {
            bail!("{name} moved: {:?} (was {ip})", ingress(&s));
        }
    }

    // 7. A speaker reads the same custom resources, and the Secrets.
    let speaker_metrics = format!("127.0.0.1:{}", free_port()?);
    let log = std::fs::File::create(dir.join("config_source_e2e-speaker.log"))?;
    let _speaker = Ctrl(
        Command::new(env!("CARGO_BIN_EXE_ferrolb"))
            .args(["speaker", "--node-name", "n1", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--metrics-addr", &speaker_metrics, "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ferrolb speaker")?,
    );
    named_state_is(&client, "speaker-n1", "Valid", Duration::from_secs(30)).await?;
    let cs = cr_api(&client, "ConfigurationState")
        .get("speaker-n1")
        .await?;
    ensure!(
        cs.labels()
            .get("metallb.io/component-type")
            .map(String::as_str)
            == Some("speaker")
            && cs.labels().get("metallb.io/node-name").map(String::as_str) == Some("n1"),
        "labels: {:?}",
        cs.labels()
    );
    create_cr(
        &client,
        "BGPPeer",
        "with-password",
        json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "127.0.0.2",
               "passwordSecret": {"name": "bgp-pw", "namespace": NS}}),
    )
    .await?;
    let st = named_state_is(&client, "speaker-n1", "Invalid", Duration::from_secs(30)).await?;
    let summary = st["errorSummary"].as_str().unwrap_or_default();
    ensure!(summary.contains("bgp-pw"), "errorSummary: {summary}");
    poll(
        Duration::from_secs(30),
        "InvalidConfig Event on speaker-n1",
        || async {
            let evs = events(
                &client,
                NS,
                "InvalidConfig",
                "ConfigurationState",
                "speaker-n1",
            )
            .await?;
            Ok((!evs.is_empty()).then_some(()))
        },
    )
    .await?;
    ensure!(
        state_of(&client, "controller")
            .await?
            .is_some_and(|s| s["result"] == "Valid"),
        "the controller does not read Secrets: still Valid"
    );
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "bgp-pw"}, "type": "kubernetes.io/basic-auth",
        "stringData": {"username": "u", "password": "s3cret"},
    }))?;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await?;
    named_state_is(&client, "speaker-n1", "Valid", Duration::from_secs(30)).await?;
    ensure!(metric(&speaker_metrics, "metallb_k8s_client_config_stale_bool")? == 0.0);
    Ok(())
}
