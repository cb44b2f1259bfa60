//! `manifests/speaker.yaml`, the all-in-one install, checked three ways:
//! - structure: every object is named, the DaemonSet/Deployment run the real
//!   subcommands (the controller non-root without capabilities, the speaker
//!   as UID 0 with exactly NET_RAW), probes hit the port the
//!   binary listens on (read from `ferrolb <cmd> --help`), the example
//!   ConfigMap is the lab config and validates;
//! - RBAC: the rules grant exactly what [`CONTROLLER_NEEDS`] / [`SPEAKER_NEEDS`]
//!   list (keep those in sync with the Api<..> calls in controller/ and speaker/);
//! - a real kube-apiserver v1.20.2 (testlab; skipped with a printed reason when
//!   not built, an error under CI): every object is dry-run created, then
//!   created, and nothing we sent may be missing from what the server stored
//!   (1.20 drops unknown fields silently). Then the service accounts are
//!   impersonated and each needed call is tried for real, with a few that
//!   must be forbidden. Last, the real `ferrolb controller` and `ferrolb
//!   speaker` run as those service accounts (and, via setpriv, the controller
//!   as UID 65534 without capabilities, the speaker as UID 0 with NET_RAW only): the controller must take the Lease, allocate
//!   an IP and publish an Event, the speaker must turn ready, and neither may
//!   log a permission error;
//! - `kubectl apply` (when installed): the migration form without the example
//!   ConfigMap, an idempotent re-apply, a misspelled field refused.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};
use serde::Deserialize;
use serde_json::{Value, json};

const NS: &str = "metallb-system";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Every non-empty document of a multi-document YAML file, as JSON values.
fn load_docs(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_file(rel)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn docs() -> Vec<Value> {
    load_docs("manifests/speaker.yaml")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in speaker.yaml"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

// ---------------------------------------------------------------- structure

#[test]
fn every_object_is_named_and_namespaced_where_it_must_be() {
    let docs = docs();
    assert!(docs.len() >= 10, "only {} documents", docs.len());
    let cluster_scoped = [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    ];
    let mut seen = BTreeSet::new();
    for d in &docs {
        let kind = s(&d["kind"]);
        assert!(d["apiVersion"].is_string(), "{kind} without apiVersion");
        let name = s(&d["metadata"]["name"]);
        assert!(!name.is_empty());
        if cluster_scoped.contains(&kind) {
            assert!(d["metadata"]["namespace"].is_null(), "{kind} {name}");
        } else {
            assert_eq!(d["metadata"]["namespace"], NS, "{kind} {name}");
        }
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/name"], "ferrolb",
            "{kind} {name}: label app.kubernetes.io/name=ferrolb"
        );
        assert!(seen.insert((kind, name)), "{kind} {name} twice");
    }
    // Dependency order: the Namespace first, workloads last.
    assert_eq!(docs[0]["kind"], "Namespace");
    let last_two: Vec<_> = docs[docs.len() - 2..]
        .iter()
        .map(|d| s(&d["kind"]))
        .collect();
    assert_eq!(last_two, ["Deployment", "DaemonSet"]);
}

/// The default `--metrics-addr` port, from `ferrolb <cmd> --help`.
fn metrics_port(cmd: &str) -> u16 {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args([cmd, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ferrolb {cmd} --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let at = help
        .find("--metrics-addr")
        .unwrap_or_else(|| panic!("no --metrics-addr in ferrolb {cmd} --help:\n{help}"));
    let rest = &help[at..];
    let d = rest
        .find("[default: ")
        .expect("no [default: ...] for --metrics-addr")
        + 10;
    let addr = &rest[d..d + rest[d..].find(']').unwrap()];
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    addr.port()
}

fn workload_container<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let w = find(docs, kind, name);
    let containers = w["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "{kind} {name}: one container");
    &containers[0]
}

#[test]
fn workloads_run_real_subcommands_unprivileged_with_probes_on_the_metrics_port() {
    let docs = docs();
    for (kind, name, sub, sa) in [
        (
            "Deployment",
            "ferrolb-controller",
            "controller",
            "controller",
        ),
        ("DaemonSet", "ferrolb-speaker", "speaker", "speaker"),
    ] {
        let w = find(&docs, kind, name);
        let pod = &w["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], sa);
        assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
        // Selector matches the template's labels.
        let sel = w["spec"]["selector"]["matchLabels"].as_object().unwrap();
        for (k, v) in sel {
            assert_eq!(&w["spec"]["template"]["metadata"]["labels"][k], v, "{name}");
        }
        let c = workload_container(&docs, kind, name);
        assert_eq!(
            c["image"],
            find(&docs, "Deployment", "ferrolb-controller")["spec"]["template"]["spec"]["containers"]
                [0]["image"],
            "one image for both"
        );
        // The args are real: the first is the subcommand, and `ferrolb <args> --help` succeeds.
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(s).collect();
        assert_eq!(args[0], sub);
        let st = Command::new(env!("CARGO_BIN_EXE_ferrolb"))
            .args(&args)
            .arg("--help")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "ferrolb {args:?} --help");
        // The controller: non-root, no capabilities. The speaker: UID 0 with
        // exactly NET_RAW (layer 2's packet sockets; Kubernetes makes an added
        // capability effective only for UID 0). Both: read-only root, no
        // escalation, everything else dropped.
        let psc = &pod["securityContext"];
        let csc = &c["securityContext"];
        if sub == "speaker" {
            assert_eq!(csc["runAsUser"], 0, "{name}");
            assert_eq!(csc["runAsNonRoot"], false, "{name}");
            assert_eq!(csc["capabilities"]["add"], json!(["NET_RAW"]), "{name}");
        } else {
            assert_eq!(psc["runAsNonRoot"], true, "{name}");
            assert!(psc["runAsUser"].as_u64().unwrap() > 0, "{name}");
            assert_eq!(csc["runAsNonRoot"], true, "{name}");
            assert!(
                csc["capabilities"]["add"].is_null(),
                "{name} adds capabilities"
            );
        }
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(csc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(csc["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert!(csc["privileged"].is_null() || csc["privileged"] == false);
        // Probes: /healthz and /readyz on the port the binary listens on.
        let port = metrics_port(sub);
        let ports = c["ports"].as_array().unwrap();
        let resolve = |p: &Value| -> u64 {
            match p {
                Value::Number(n) => n.as_u64().unwrap(),
                Value::String(named) => ports
                    .iter()
                    .find(|cp| cp["name"] == *named)
                    .unwrap_or_else(|| panic!("{name}: no port named {named}"))["containerPort"]
                    .as_u64()
                    .unwrap(),
                _ => panic!("{name}: bad probe port {p}"),
            }
        };
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let g = &c[probe]["httpGet"];
            assert_eq!(g["path"], path, "{name} {probe}");
            assert_eq!(resolve(&g["port"]), u64::from(port), "{name} {probe}");
        }
        // An explicit METRICS_ADDR must agree with the port too.
        if let Some(env) = c["env"].as_array() {
            for e in env {
                let name = s(&e["name"]);
                // One naming rule: every variable is a flag's FERROLB_<FLAG>.
                assert!(
                    name.starts_with("FERROLB_") || name == "POD_NAME",
                    "{name}: use the FERROLB_ name"
                );
                if e["name"] == "FERROLB_METRICS_ADDR" {
                    let a: std::net::SocketAddr = s(&e["value"]).parse().unwrap();
                    assert_eq!(a.port(), port, "{name} {}", e["name"]);
                }
            }
        }
        // Requests and a memory limit.
        let r = &c["resources"];
        assert!(r["requests"]["memory"].is_string() && r["requests"]["cpu"].is_string());
        assert!(r["limits"]["memory"].is_string());
    }
    let ds = &find(&docs, "DaemonSet", "ferrolb-speaker")["spec"]["template"]["spec"];
    assert_eq!(ds["hostNetwork"], true);
    let c = workload_container(&docs, "DaemonSet", "ferrolb-speaker");
    let node_name = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "FERROLB_NODE_NAME")
        .expect("FERROLB_NODE_NAME env");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let tolerated: Vec<&str> = ds["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| s(&t["key"]))
        .collect();
    assert!(tolerated.contains(&"node-role.kubernetes.io/control-plane"));
    assert!(tolerated.contains(&"node-role.kubernetes.io/master"));
    let d = find(&docs, "Deployment", "ferrolb-controller");
    assert_eq!(d["spec"]["replicas"], 1);
}

/// The speaker's read-only root has one writable place: the graceful restart marker's
/// directory (`ferrolb speaker --state-dir`, default /run/ferrolb), an emptyDir in memory
/// that survives container restarts.
#[test]
fn speaker_state_dir_is_a_writable_memory_mount() {
    let docs = docs();
    let c = workload_container(&docs, "DaemonSet", "ferrolb-speaker");
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(s).collect();
    let dir = args
        .windows(2)
        .find(|w| w[0] == "--state-dir")
        .map_or("/run/ferrolb", |w| w[1]);
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    let m = mounts
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    assert!(m["readOnly"].is_null() || m["readOnly"] == false);
    let pod = &find(&docs, "DaemonSet", "ferrolb-speaker")["spec"]["template"]["spec"];
    let v = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == m["name"])
        .expect("the mounted volume");
    assert_eq!(v["emptyDir"]["medium"], "Memory", "{v}");
}

#[test]
fn example_configmap_is_the_lab_config_and_validates() {
    let docs = docs();
    let cm = find(&docs, "ConfigMap", "config");
    assert_eq!(cm["metadata"]["namespace"], NS);
    assert_eq!(
        cm["metadata"]["labels"]["ferrolb.io/example-config"],
        "true"
    );
    let lab = load_docs("manifests/examples/config-lab.yaml");
    assert_eq!(lab.len(), 1);
    assert_eq!(cm["data"], lab[0]["data"], "differs from config-lab.yaml");
    assert_eq!(cm["metadata"]["name"], lab[0]["metadata"]["name"]);
    assert_eq!(cm["metadata"]["namespace"], lab[0]["metadata"]["namespace"]);
    let text = s(&cm["data"]["config"]);
    let ours = ferrolb_config::Config::parse(text).expect("example config validates");
    let lab_text =
        std::fs::read_to_string(repo_file("manifests/examples/config-lab.yaml")).unwrap();
    let theirs = ferrolb_config::Config::parse_document(&lab_text).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(ours.pools.len(), 2);
    assert_eq!(ours.peers.len(), 1);
}

// ---------------------------------------------------------------- RBAC

/// One permission: (apiGroup, resource, verb, namespace (None = cluster-wide),
/// resourceName (None = any)).
type Need = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

/// What `ferrolb controller` calls (controller/src/run.rs, reconcile.rs; the
/// metallb.io and namespaces entries are the custom-resource calls of issue 10).
const CONTROLLER_NEEDS: &[Need] = &[
    // Api::<Service>::all: watcher (list, watch), reconcile get, annotation patch.
    ("", "services", "get", None, None),
    ("", "services", "list", None, None),
    ("", "services", "watch", None, None),
    ("", "services", "update", None, None),
    ("", "services", "patch", None, None),
    // patch_status (status.loadBalancer.ingress).
    ("", "services/status", "update", None, None),
    ("", "services/status", "patch", None, None),
    // Namespace labels, for IPAddressPool serviceAllocation.namespaceSelectors
    // (a cluster-wide watcher).
    ("", "namespaces", "list", None, None),
    ("", "namespaces", "watch", None, None),
    // kube-runtime Recorder (events.k8s.io/v1: create, then patch for series); core for compat.
    ("events.k8s.io", "events", "create", None, None),
    ("events.k8s.io", "events", "patch", None, None),
    ("", "events", "create", None, None),
    ("", "events", "patch", None, None),
    // watch_config: fieldSelector metadata.name=config.
    ("", "configmaps", "get", Some(NS), Some("config")),
    ("", "configmaps", "list", Some(NS), Some("config")),
    ("", "configmaps", "watch", Some(NS), Some("config")),
    // The custom-resource configuration: a watcher per kind in NS.
    ("metallb.io", "ipaddresspools", "list", Some(NS), None),
    ("metallb.io", "ipaddresspools", "watch", Some(NS), None),
    ("metallb.io", "bgppeers", "list", Some(NS), None),
    ("metallb.io", "bgppeers", "watch", Some(NS), None),
    ("metallb.io", "bgpadvertisements", "list", Some(NS), None),
    ("metallb.io", "bgpadvertisements", "watch", Some(NS), None),
    ("metallb.io", "l2advertisements", "list", Some(NS), None),
    ("metallb.io", "l2advertisements", "watch", Some(NS), None),
    ("metallb.io", "communities", "list", Some(NS), None),
    ("metallb.io", "communities", "watch", Some(NS), None),
    ("metallb.io", "bfdprofiles", "list", Some(NS), None),
    ("metallb.io", "bfdprofiles", "watch", Some(NS), None),
    // Pool address counts (assigned/available), a status merge patch.
    (
        "metallb.io",
        "ipaddresspools/status",
        "patch",
        Some(NS),
        None,
    ),
    // Its ConfigurationState: created once, then its status patched.
    (
        "metallb.io",
        "configurationstates",
        "create",
        Some(NS),
        None,
    ),
    (
        "metallb.io",
        "configurationstates/status",
        "patch",
        Some(NS),
        None,
    ),
    // acquire/hold/release_lease.
    ("coordination.k8s.io", "leases", "create", Some(NS), None),
    (
        "coordination.k8s.io",
        "leases",
        "get",
        Some(NS),
        Some("ferrolb-controller"),
    ),
    (
        "coordination.k8s.io",
        "leases",
        "update",
        Some(NS),
        Some("ferrolb-controller"),
    ),
];

/// What `ferrolb speaker` calls (speaker/src/run.rs; the metallb.io and
/// secrets entries are the custom-resource calls of issue 10).
const SPEAKER_NEEDS: &[Need] = &[
    ("", "services", "get", None, None),
    ("", "services", "list", None, None),
    ("", "services", "watch", None, None),
    // EndpointSlices (discovery.k8s.io/v1) or the core Endpoints fallback.
    ("", "endpoints", "get", None, None),
    ("", "endpoints", "list", None, None),
    ("", "endpoints", "watch", None, None),
    ("discovery.k8s.io", "endpointslices", "get", None, None),
    ("discovery.k8s.io", "endpointslices", "list", None, None),
    ("discovery.k8s.io", "endpointslices", "watch", None, None),
    // Every Node (the layer 2 election reads the others' labels and conditions).
    ("", "nodes", "get", None, None),
    ("", "nodes", "list", None, None),
    ("", "nodes", "watch", None, None),
    ("", "configmaps", "get", Some(NS), Some("config")),
    ("", "configmaps", "list", Some(NS), Some("config")),
    ("", "configmaps", "watch", Some(NS), Some("config")),
    // The custom-resource configuration: a watcher per kind in NS.
    ("metallb.io", "ipaddresspools", "list", Some(NS), None),
    ("metallb.io", "ipaddresspools", "watch", Some(NS), None),
    ("metallb.io", "bgppeers", "list", Some(NS), None),
    ("metallb.io", "bgppeers", "watch", Some(NS), None),
    ("metallb.io", "bgpadvertisements", "list", Some(NS), None),
    ("metallb.io", "bgpadvertisements", "watch", Some(NS), None),
    ("metallb.io", "l2advertisements", "list", Some(NS), None),
    ("metallb.io", "l2advertisements", "watch", Some(NS), None),
    ("metallb.io", "communities", "list", Some(NS), None),
    ("metallb.io", "communities", "watch", Some(NS), None),
    ("metallb.io", "bfdprofiles", "list", Some(NS), None),
    ("metallb.io", "bfdprofiles", "watch", Some(NS), None),
    // BGPPeer.passwordSecret: get by name (any name; never list).
    ("", "secrets", "get", Some(NS), None),
    // The speaker pods, by label, to seed the gossip between speakers
    // (speaker/src/members/speakers.rs).
    ("", "pods", "list", Some(NS), None),
    ("", "pods", "watch", Some(NS), None),
    // ServiceBGPStatus, one per announced Service on this node: a list of its
    // own (label-selected) objects at start and every 5 minutes, create,
    // delete, status patch (speaker/src/bgp_status.rs).
    ("metallb.io", "servicebgpstatuses", "list", Some(NS), None),
    ("metallb.io", "servicebgpstatuses", "create", Some(NS), None),
    ("metallb.io", "servicebgpstatuses", "delete", Some(NS), None),
    (
        "metallb.io",
        "servicebgpstatuses/status",
        "patch",
        Some(NS),
        None,
    ),
    // ServiceL2Status, the same for each Service this node answers ARP/NDP for.
    ("metallb.io", "servicel2statuses", "list", Some(NS), None),
    ("metallb.io", "servicel2statuses", "create", Some(NS), None),
    ("metallb.io", "servicel2statuses", "delete", Some(NS), None),
    (
        "metallb.io",
        "servicel2statuses/status",
        "patch",
        Some(NS),
        None,
    ),
    // Its ConfigurationState: created once, then its status patched.
    (
        "metallb.io",
        "configurationstates",
        "create",
        Some(NS),
        None,
    ),
    (
        "metallb.io",
        "configurationstates/status",
        "patch",
        Some(NS),
        None,
    ),
    ("events.k8s.io", "events", "create", None, None),
    ("events.k8s.io", "events", "patch", None, None),
    ("", "events", "create", None, None),
    ("", "events", "patch", None, None),
];

/// A granted permission, expanded from a rule: (group, resource, verb,
/// namespace or None, resourceName or None).
type Grant = (String, String, String, Option<String>, Option<String>);

/// Everything the manifest grants the service account `sa`, one entry per
/// (group, resource, verb, resourceName).
fn grants(docs: &[Value], sa: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for b in docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
    {
        let bound = b["subjects"].as_array().unwrap().iter().any(|sub| {
            sub["kind"] == "ServiceAccount" && sub["name"] == sa && sub["namespace"] == NS
        });
        if !bound {
            continue;
        }
        let ns = b["metadata"]["namespace"].as_str().map(String::from);
        let role = find(docs, s(&b["roleRef"]["kind"]), s(&b["roleRef"]["name"]));
        assert_eq!(b["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        if b["kind"] == "ClusterRoleBinding" {
            assert_eq!(role["kind"], "ClusterRole");
        }
        for rule in role["rules"].as_array().unwrap() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .map(|a| a.iter().map(|v| s(v).to_string()).collect())
                    .unwrap_or_default()
            };
            let names = list("resourceNames");
            let names: Vec<Option<String>> = if names.is_empty() {
                vec![None]
            } else {
                names.into_iter().map(Some).collect()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for v in list("verbs") {
                        assert!(g != "*" && r != "*" && v != "*", "wildcard in {rule}");
                        for n in &names {
                            out.insert((g.clone(), r.clone(), v.clone(), ns.clone(), n.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

fn needs_set(needs: &[Need]) -> BTreeSet<Grant> {
    needs
        .iter()
        .map(|(g, r, v, ns, n)| {
            (
                g.to_string(),
                r.to_string(),
                v.to_string(),
                ns.map(String::from),
                n.map(String::from),
            )
        })
        .collect()
}

#[test]
fn rbac_grants_exactly_what_the_code_needs() {
    let docs = docs();
    for (sa, needs) in [("controller", CONTROLLER_NEEDS), ("speaker", SPEAKER_NEEDS)] {
        let granted = grants(&docs, sa);
        let needed = needs_set(needs);
        let missing: Vec<_> = needed.difference(&granted).collect();
        let extra: Vec<_> = granted.difference(&needed).collect();
        assert!(missing.is_empty(), "{sa}: missing {missing:#?}");
        assert!(extra.is_empty(), "{sa}: more than needed {extra:#?}");
        let sa_obj = find(&docs, "ServiceAccount", sa);
        assert_eq!(sa_obj["metadata"]["namespace"], NS);
    }
}

// ---------------------------------------------------------------- real kube-apiserver

struct Http<'a> {
    server: &'a str,
    token: &'a str,
    ca: PathBuf,
}

impl Http<'_> {
    /// One request with curl; returns (status, parsed body or Null).
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        as_user: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "-X", method, "--cacert"])
            .arg(&self.ca)
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .args(["-H", "Accept: application/json"])
            .args(["-w", "\n%{http_code}"]);
        if let Some(u) = as_user {
            cmd.args(["-H", &format!("Impersonate-User: {u}")]);
        }
        if body.is_some() {
            let ct = if method == "PATCH" {
                "Content-Type: application/merge-patch+json"
            } else {
                "Content-Type: application/json"
            };
            cmd.args(["-H", ct, "--data-binary", "@-"]);
        }
        cmd.arg(format!("{}{}", self.server, path));
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().context("running curl")?;
        {
            let mut stdin = child.stdin.take().unwrap();
            if let Some(b) = body {
                stdin.write_all(serde_json::to_string(b)?.as_bytes())?;
            }
        }
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "curl {method} {path} failed");
        let text = String::from_utf8(out.stdout)?;
        let (body, code) = text.rsplit_once('\n').context("no status from curl")?;
        let code: u16 = code.trim().parse()?;
        let v = serde_json::from_str(body).unwrap_or(Value::Null);
        Ok((code, v))
    }
}

/// REST collection path for an object of the manifest.
fn collection_path(obj: &Value) -> Result<String> {
    let api_version = s(&obj["apiVersion"]);
    let plural = match s(&obj["kind"]) {
        "Namespace" => "namespaces",
        "ServiceAccount" => "serviceaccounts",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ConfigMap" => "configmaps",
        "Deployment" => "deployments",
        "DaemonSet" => "daemonsets",
        "CustomResourceDefinition" => "customresourcedefinitions",
        k => bail!("kind {k}: add its plural here"),
    };
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    Ok(match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}"),
        None => format!("{prefix}/{plural}"),
    })
}

/// Paths present in `sent` but absent from (or different in) `got`.
fn lost_fields(sent: &Value, got: &Value, at: &str, out: &mut Vec<String>) {
    match (sent, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k} dropped by the server")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{at}: {} items sent, {} stored", a.len(), b.len()));
            } else {
                for (i, (v, w)) in a.iter().zip(b).enumerate() {
                    lost_fields(v, w, &format!("{at}[{i}]"), out);
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{at}: sent {a}, stored {b}")),
    }
}

#[test]
fn applies_to_a_real_apiserver_and_rbac_holds() -> Result<()> {
    let Some(api) = ferrolb_testlab::kube::KubeApiServer::start()? else {
        return Ok(());
    };
    let http = Http {
        server: api.server_url(),
        token: api.token(),
        ca: api.ca_cert_path(),
    };
    let res = apply_and_check(&http)
        .and_then(|()| run_as_service_accounts(&http, api.kubeconfig_path(), api.dir()));
    if res.is_err() {
        eprintln!("kube-apiserver logs: {}", api.dir().display());
    }
    res
}

fn apply_and_check(http: &Http) -> Result<()> {
    let docs = docs();
    // 1. Create every object, in file order: dry run first, then for real, and
    //    compare what the server stored with what we sent.
    for obj in &docs {
        let what = format!("{} {}", s(&obj["kind"]), s(&obj["metadata"]["name"]));
        let path = collection_path(obj)?;
        // A dry run in a namespace that does not exist yet fails, so the
        // Namespace goes first for real; everything else dry-runs first.
        if obj["kind"] != "Namespace" {
            let (code, dry) = http.call("POST", &format!("{path}?dryRun=All"), Some(obj), None)?;
            ensure!(code == 201 || code == 200, "dry run {what}: {code} {dry}");
            let mut lost = Vec::new();
            lost_fields(obj, &dry, "", &mut lost);
            ensure!(lost.is_empty(), "dry run {what}: {lost:#?}");
        }
        let (code, stored) = http.call("POST", &path, Some(obj), None)?;
        ensure!(code == 201 || code == 200, "create {what}: {code} {stored}");
        let mut lost = Vec::new();
        lost_fields(obj, &stored, "", &mut lost);
        ensure!(lost.is_empty(), "create {what}: {lost:#?}");
        eprintln!("created {what} ({code})");
    }

    // The comparison catches a misspelled field: the server drops it.
    let mut typo = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .unwrap()
        .clone();
    typo["metadata"]["name"] = json!("typo-check");
    typo["spec"]["template"]["spec"]["hostNetwrok"] = json!(true);
    let (code, dry) = http.call(
        "POST",
        &format!("{}?dryRun=All", collection_path(&typo)?),
        Some(&typo),
        None,
    )?;
    ensure!(code == 201, "typo dry run: {code} {dry}");
    let mut lost = Vec::new();
    lost_fields(&typo, &dry, "", &mut lost);
    ensure!(
        lost == [".spec.template.spec.hostNetwrok dropped by the server"],
        "typo not detected: {lost:?}"
    );

    // 2. RBAC, for real, as each service account. A Service and a Node to act on.
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "rbac-check", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    let (code, body) = http.call(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&svc),
        None,
    )?;
    ensure!(code == 201, "create service: {code} {body}");
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}});
    let (code, body) = http.call("POST", "/api/v1/nodes", Some(&node), None)?;
    ensure!(code == 201, "create node: {code} {body}");
    // The CRDs serve their kinds once Established; then a pool and a password
    // Secret to act on.
    for crd in docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        let name = s(&crd["metadata"]["name"]);
        let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
        wait_for(&format!("CRD {name} Established"), 30, || {
            let (_, c) = http.call("GET", &path, None, None)?;
            Ok(c["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True"))
        })?;
    }
    let mlb = "/apis/metallb.io/v1beta1/namespaces/metallb-system";
    let pool = json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "rbac-pool", "namespace": NS},
        "spec": {"addresses": ["172.17.254.0/24"]}});
    let (code, body) = http.call("POST", &format!("{mlb}/ipaddresspools"), Some(&pool), None)?;
    ensure!(code == 201, "create pool: {code} {body}");
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "rbac-pw", "namespace": NS},
        "type": "kubernetes.io/basic-auth", "stringData": {"password": "pw"}});
    let secrets = "/api/v1/namespaces/metallb-system/secrets";
    let (code, body) = http.call("POST", secrets, Some(&secret), None)?;
    ensure!(code == 201, "create secret: {code} {body}");

    let controller = "system:serviceaccount:metallb-system:controller";
    let speaker = "system:serviceaccount:metallb-system:speaker";
    let svc_path = "/api/v1/namespaces/default/services/rbac-check";
    let cm = "/api/v1/namespaces/metallb-system/configmaps";
    let leases = "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases";
    let event = |n: &str| {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": n, "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "ferrolb", "reportingInstance": "test",
            "action": "Allocate", "reason": "IPAllocated", "type": "Normal",
            "regarding": {"apiVersion": "v1", "kind": "Service", "namespace": "default",
                "name": "rbac-check"}})
    };
    let core_event = |n: &str| {
        json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": n, "namespace": "default"},
            "reason": "IPAllocated", "type": "Normal", "message": "m",
            "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": "default",
                "name": "rbac-check"}})
    };
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "ferrolb-controller"},
        "spec": {"holderIdentity": "test", "leaseDurationSeconds": 15}});
    let other_lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "someone-else"}, "spec": {}});
    let status_patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": "172.17.254.1"}]}}});
    let ann_patch = json!({"metadata": {"annotations": {
        "metallb.io/ip-allocated-from-pool": "default"}}});

    let pool_status = json!({"status": {"assignedIPv4": 1, "assignedIPv6": 0,
        "availableIPv4": 255, "availableIPv6": 0}});
    let sbs = json!({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceBGPStatus",
        "metadata": {"name": "node-1-rbac-check", "namespace": NS,
            "labels": {"metallb.io/node": "node-1"}}});
    let sbs_status = json!({"status": {"node": "node-1", "serviceName": "rbac-check",
        "serviceNamespace": "default", "peers": ["peer-0"]}});
    let state = |n: &str| {
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "ConfigurationState",
            "metadata": {"name": n, "namespace": NS}})
    };
    // No `errorSummary: ""`: the test kube-apiserver build turns an empty
    // string in a custom resource into null and refuses it (tests/crds.rs).
    let state_status = json!({"status": {"result": "Valid"}});
    let sbs_path = format!("{mlb}/servicebgpstatuses");
    let sl2 = json!({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status",
        "metadata": {"name": "node-1-rbac-check", "namespace": NS,
            "labels": {"metallb.io/node": "node-1"}}});
    let sl2_status = json!({"status": {"node": "node-1", "serviceName": "rbac-check",
        "serviceNamespace": "default", "interfaces": [{"name": "eth0"}]}});
    let sl2_path = format!("{mlb}/servicel2statuses");

    // (who, method, path, body, allowed)
    let w = "watch=1&timeoutSeconds=1";
    let by_name = "fieldSelector=metadata.name%3Dconfig";
    #[rustfmt::skip]
    let checks: Vec<(&str, &str, String, Option<Value>, bool)> = vec![
        // speaker
        (speaker, "GET", "/api/v1/services".into(), None, true),
        (speaker, "GET", format!("/api/v1/services?{w}"), None, true),
        (speaker, "GET", svc_path.into(), None, true),
        (speaker, "GET", "/api/v1/endpoints".into(), None, true),
        (speaker, "GET", format!("/api/v1/endpoints?{w}"), None, true),
        (speaker, "GET", "/apis/discovery.k8s.io/v1beta1/endpointslices".into(), None, true),
        (speaker, "GET", format!("/apis/discovery.k8s.io/v1beta1/endpointslices?{w}"), None, true),
        (speaker, "GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-1".into(), None, true),
        (speaker, "GET", format!("/api/v1/nodes?fieldSelector=metadata.name%3Dnode-1&{w}"), None, true),
        (speaker, "GET", format!("{cm}?{by_name}"), None, true),
        (speaker, "GET", format!("{cm}?{by_name}&{w}"), None, true),
        (speaker, "GET", format!("{cm}/config"), None, true),
        (speaker, "POST", "/apis/events.k8s.io/v1/namespaces/default/events".into(), Some(event("sp-1")), true),
        (speaker, "PATCH", "/apis/events.k8s.io/v1/namespaces/default/events/sp-1".into(), Some(json!({"note": "again"})), true),
        (speaker, "POST", "/api/v1/namespaces/default/events".into(), Some(core_event("sp-2")), true),
        (speaker, "GET", "/apis/metallb.io/v1beta2/namespaces/metallb-system/bgppeers".into(), None, true),
        (speaker, "GET", format!("/apis/metallb.io/v1beta2/namespaces/metallb-system/bgppeers?{w}"), None, true),
        (speaker, "GET", format!("{mlb}/ipaddresspools"), None, true),
        (speaker, "GET", format!("{mlb}/ipaddresspools?{w}"), None, true),
        (speaker, "GET", format!("{mlb}/bgpadvertisements"), None, true),
        (speaker, "GET", format!("{mlb}/l2advertisements"), None, true),
        (speaker, "GET", format!("{mlb}/communities"), None, true),
        (speaker, "GET", format!("{mlb}/bfdprofiles?{w}"), None, true),
        (speaker, "GET", format!("{secrets}/rbac-pw"), None, true),
        (speaker, "POST", sbs_path.clone(), Some(sbs.clone()), true),
        (speaker, "GET", format!("{sbs_path}?labelSelector=metallb.io%2Fnode%3Dnode-1"), None, true),
        (speaker, "PATCH", format!("{sbs_path}/node-1-rbac-check/status"), Some(sbs_status.clone()), true),
        (speaker, "POST", sl2_path.clone(), Some(sl2.clone()), true),
        (speaker, "GET", format!("{sl2_path}?labelSelector=metallb.io%2Fnode%3Dnode-1"), None, true),
        (speaker, "PATCH", format!("{sl2_path}/node-1-rbac-check/status"), Some(sl2_status.clone()), true),
        (speaker, "GET", "/api/v1/nodes".into(), None, true),
        (speaker, "GET", format!("/api/v1/nodes?{w}"), None, true),
        (speaker, "POST", format!("{mlb}/configurationstates"), Some(state("speaker-node-1")), true),
        (speaker, "PATCH", format!("{mlb}/configurationstates/speaker-node-1/status"), Some(state_status.clone()), true),
        // speaker: forbidden
        (speaker, "GET", format!("{sbs_path}?labelSelector=metallb.io%2Fnode%3Dnode-1&{w}"), None, false),
        (speaker, "GET", format!("{sbs_path}/node-1-rbac-check"), None, false),
        (speaker, "PATCH", format!("{sl2_path}/node-1-rbac-check"), Some(json!({"metadata": {"labels": {"x": "y"}}})), false),
        (speaker, "PATCH", format!("{sbs_path}/node-1-rbac-check"), Some(json!({"metadata": {"labels": {"x": "y"}}})), false),
        (speaker, "PATCH", format!("{mlb}/ipaddresspools/rbac-pool/status"), Some(pool_status.clone()), false),
        (speaker, "PATCH", format!("{mlb}/ipaddresspools/rbac-pool"), Some(json!({"spec": {"autoAssign": false}})), false),
        (speaker, "POST", format!("{mlb}/ipaddresspools?dryRun=All"), Some(pool.clone()), false),
        (speaker, "GET", "/api/v1/namespaces/default/secrets/rbac-pw".into(), None, false),
        (speaker, "GET", "/api/v1/namespaces".into(), None, false),
        (speaker, "DELETE", format!("{sbs_path}/node-1-rbac-check"), None, true),
        (speaker, "GET", cm.into(), None, false),
        (speaker, "GET", "/api/v1/namespaces/metallb-system/secrets".into(), None, false),
        (speaker, "PATCH", format!("{svc_path}/status"), Some(status_patch.clone()), false),
        (speaker, "DELETE", format!("{svc_path}?dryRun=All"), None, false),
        (speaker, "PATCH", "/api/v1/nodes/node-1".into(), Some(json!({"metadata": {"labels": {"x": "y"}}})), false),
        (speaker, "GET", "/api/v1/pods".into(), None, false),
        (speaker, "GET", "/api/v1/namespaces/metallb-system/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dspeaker".into(), None, true),
        (speaker, "GET", "/api/v1/namespaces/metallb-system/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dspeaker&watch=true&timeoutSeconds=1".into(), None, true),
        (speaker, "GET", "/api/v1/namespaces/default/pods".into(), None, false),
        // controller
        (controller, "GET", "/api/v1/services".into(), None, true),
        (controller, "GET", format!("/api/v1/services?{w}"), None, true),
        (controller, "GET", svc_path.into(), None, true),
        (controller, "PATCH", svc_path.into(), Some(ann_patch), true),
        (controller, "PATCH", format!("{svc_path}/status"), Some(status_patch), true),
        (controller, "GET", format!("{cm}?{by_name}"), None, true),
        (controller, "GET", format!("{cm}?{by_name}&{w}"), None, true),
        (controller, "POST", "/apis/events.k8s.io/v1/namespaces/default/events".into(), Some(event("ct-1")), true),
        (controller, "PATCH", "/apis/events.k8s.io/v1/namespaces/default/events/ct-1".into(), Some(json!({"note": "again"})), true),
        (controller, "POST", "/api/v1/namespaces/default/events".into(), Some(core_event("ct-2")), true),
        (controller, "POST", leases.into(), Some(lease), true),
        (controller, "GET", format!("{leases}/ferrolb-controller"), None, true),
        (controller, "PATCH", format!("{leases}/ferrolb-controller"), Some(json!({"spec": {"holderIdentity": "t2"}})), false),
        (controller, "GET", format!("{mlb}/ipaddresspools"), None, true),
        (controller, "GET", format!("{mlb}/ipaddresspools?{w}"), None, true),
        (controller, "GET", "/apis/metallb.io/v1beta2/namespaces/metallb-system/bgppeers".into(), None, true),
        (controller, "GET", format!("{mlb}/bgpadvertisements?{w}"), None, true),
        (controller, "GET", format!("{mlb}/l2advertisements"), None, true),
        (controller, "GET", format!("{mlb}/communities"), None, true),
        (controller, "GET", format!("{mlb}/bfdprofiles"), None, true),
        (controller, "PATCH", format!("{mlb}/ipaddresspools/rbac-pool/status"), Some(pool_status.clone()), true),
        (controller, "GET", "/api/v1/namespaces".into(), None, true),
        (controller, "GET", format!("/api/v1/namespaces?{w}"), None, true),
        (controller, "POST", format!("{mlb}/configurationstates"), Some(state("controller")), true),
        (controller, "PATCH", format!("{mlb}/configurationstates/controller/status"), Some(state_status.clone()), true),
        // controller: forbidden
        (controller, "GET", cm.into(), None, false),
        (controller, "GET", leases.into(), None, false),
        (controller, "POST", leases.into(), Some(other_lease), true),
        (controller, "GET", format!("{leases}/someone-else"), None, false),
        (controller, "DELETE", format!("{svc_path}?dryRun=All"), None, false),
        (controller, "POST", "/api/v1/namespaces/default/services?dryRun=All".into(), Some(svc.clone()), false),
        (controller, "GET", "/api/v1/nodes".into(), None, false),
        (controller, "GET", "/api/v1/namespaces/metallb-system/secrets".into(), None, false),
        (controller, "GET", format!("{secrets}/rbac-pw"), None, false),
        (controller, "GET", format!("{mlb}/ipaddresspools/rbac-pool"), None, false),
        (controller, "PATCH", format!("{mlb}/ipaddresspools/rbac-pool"), Some(json!({"spec": {"autoAssign": false}})), false),
        (controller, "GET", format!("{mlb}/configurationstates/controller"), None, false),
        (controller, "POST", sbs_path.clone(), Some(sbs), false),
        (controller, "GET", "/api/v1/namespaces/default".into(), None, false),
    ];
    let mut failures = Vec::new();
    for (who, method, path, body, allowed) in &checks {
        let (code, resp) = http.call(method, path, body.as_ref(), Some(who))?;
        let short = who.rsplit(':').next().unwrap();
        let ok = if *allowed {
            (200..300).contains(&code)
        } else {
            code == 403
        };
        if !ok {
            failures.push(format!(
                "{short} {method} {path}: {code} (expected {}) {resp}",
                if *allowed { "2xx" } else { "403" }
            ));
        }
    }
    // Update (what hold_lease does) on the Lease it created.
    let (code, mut l) = http.call(
        "GET",
        &format!("{leases}/ferrolb-controller"),
        None,
        Some(controller),
    )?;
    ensure!(code == 200, "get lease: {code}");
    l["spec"]["holderIdentity"] = json!("t3");
    let (code, resp) = http.call(
        "PUT",
        &format!("{leases}/ferrolb-controller"),
        Some(&l),
        Some(controller),
    )?;
    if code != 200 {
        failures.push(format!("controller PUT lease: {code} {resp}"));
    }
    ensure!(
        failures.is_empty(),
        "RBAC checks failed:\n{}",
        failures.join("\n")
    );
    eprintln!("{} RBAC checks passed", checks.len() + 1);
    Ok(())
}

/// `kubectl apply` itself (when kubectl is installed; skipped with a printed
/// reason otherwise): the MetalLB-migration form that leaves the ConfigMap
/// alone, the full apply, an idempotent re-apply, and client-side strict
/// validation rejecting a misspelled field.
#[test]
fn kubectl_apply_against_a_real_apiserver() -> Result<()> {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        eprintln!("SKIP kubectl apply: kubectl not installed");
        return Ok(());
    }
    let Some(api) = ferrolb_testlab::kube::KubeApiServer::start()? else {
        return Ok(());
    };
    let res = kubectl_scenario(api.kubeconfig_path(), api.dir());
    if res.is_err() {
        eprintln!("kube-apiserver logs: {}", api.dir().display());
    }
    res
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "30s"])
        .args(args)
        .output()
        .context("running kubectl")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn kubectl_scenario(kc: &Path, dir: &Path) -> Result<()> {
    let file = repo_file("manifests/speaker.yaml");
    let file = file.to_str().unwrap();
    let objects = docs().len();
    // Migration form: everything but the example ConfigMap.
    let (ok, out) = kubectl(
        kc,
        &[
            "apply",
            "--validate=true",
            "-f",
            file,
            "-l",
            "!ferrolb.io/example-config",
        ],
    )?;
    ensure!(ok, "kubectl apply -l: {out}");
    ensure!(out.matches(" created").count() == objects - 1, "{out}");
    let (ok, out) = kubectl(kc, &["-n", NS, "get", "configmap", "config"])?;
    ensure!(
        !ok && out.contains("NotFound"),
        "the example ConfigMap was applied: {out}"
    );
    // Full apply, then again: nothing changes.
    let (ok, out) = kubectl(kc, &["apply", "--validate=true", "-f", file])?;
    ensure!(
        ok && out.contains("configmap/config created"),
        "kubectl apply: {out}"
    );
    let (ok, out) = kubectl(kc, &["apply", "--validate=true", "-f", file])?;
    ensure!(ok, "kubectl re-apply: {out}");
    ensure!(
        out.matches(" unchanged").count() == objects,
        "re-apply changed something: {out}"
    );
    // A typo is refused.
    let typo = std::fs::read_to_string(file)?.replace("hostNetwork: true", "hostNetwrok: true");
    let typo_path = dir.join("typo.yaml");
    std::fs::write(&typo_path, typo)?;
    let (ok, out) = kubectl(
        kc,
        &[
            "apply",
            "--validate=true",
            "-f",
            typo_path.to_str().unwrap(),
        ],
    )?;
    ensure!(!ok && out.contains("hostNetwrok"), "typo accepted: {out}");
    eprintln!("kubectl apply: {objects} objects, idempotent, typo refused");
    Ok(())
}

/// A kubeconfig like the admin's that impersonates `sa` (kube-rs sends
/// `Impersonate-User`), readable by the unprivileged user the binaries run as.
fn impersonating_kubeconfig(admin: &Path, dir: &Path, sa: &str) -> Result<PathBuf> {
    let mut kc: Value = serde_yaml::from_str(&std::fs::read_to_string(admin)?)?;
    for u in kc["users"].as_array_mut().context("no users")? {
        u["user"]["as"] = json!(format!("system:serviceaccount:{NS}:{sa}"));
    }
    let path = dir.join(format!("kubeconfig-{sa}"));
    std::fs::write(&path, serde_yaml::to_string(&kc)?)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `ferrolb` subcommand; killed (by its own pid) on drop.
struct Proc {
    child: std::process::Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs `ferrolb <args>` the way the manifests do, as far as a test can
/// (setpriv, when we are root and it exists), with no_new_privs: the
/// controller as UID/GID 65534 with no capabilities, the speaker as UID 0
/// with NET_RAW only (its bounding set, hence its only capability).
fn spawn_ferrolb(args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Result<Proc> {
    let speaker = args.first() == Some(&"speaker");
    let bin = env!("CARGO_BIN_EXE_ferrolb");
    let unprivileged = Path::new("/usr/bin/setpriv").exists()
        && Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
    let mut cmd = if unprivileged {
        let mut c = Command::new("/usr/bin/setpriv");
        if speaker {
            c.args(["--reuid=0", "--regid=0", "--bounding-set=-all,+net_raw"]);
        } else {
            c.args(["--reuid=65534", "--regid=65534", "--bounding-set=-all"]);
        }
        c.args([
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
            bin,
        ]);
        c
    } else {
        eprintln!("note: running ferrolb as the current user (no setpriv or not root)");
        Command::new(bin)
    };
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    // stdout and stderr into one file.
    let f = std::fs::File::create(&log)?;
    cmd.stdout(f.try_clone()?).stderr(f);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(Proc {
        child: cmd.spawn().context("spawning ferrolb")?,
        log,
    })
}

fn http_status(url: &str) -> u16 {
    Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if f()? {
            return Ok(());
        }
        ensure!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The real binaries, authenticated as their service accounts with only the
/// manifest's RBAC: the controller takes the Lease, allocates an IP from the
/// example config and publishes an Event; the speaker syncs every watch and
/// turns ready. Neither logs a permission error.
fn run_as_service_accounts(http: &Http, admin_kc: &Path, dir: &Path) -> Result<()> {
    // The RBAC checks above left a Lease held by "t3": start clean.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases";
    let (code, _) = http.call(
        "DELETE",
        &format!("{leases}/ferrolb-controller"),
        None,
        None,
    )?;
    ensure!(code == 200, "delete lease: {code}");
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "as-sa", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    let (code, body) = http.call(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&svc),
        None,
    )?;
    ensure!(code == 201, "create service: {code} {body}");

    let kc = impersonating_kubeconfig(admin_kc, dir, "controller")?;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let controller = spawn_ferrolb(
        &[
            "controller",
            "--leader-elect",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--metrics-addr",
            &addr,
        ],
        &[("POD_NAME", "ferrolb-controller-test")],
        dir.join("controller.log"),
    )?;
    let res = (|| {
        wait_for("controller /readyz", 40, || {
            Ok(http_status(&format!("http://{addr}/readyz")) == 200)
        })?;
        wait_for("an IP on default/as-sa", 30, || {
            let (_, s) = http.call(
                "GET",
                "/api/v1/namespaces/default/services/as-sa",
                None,
                None,
            )?;
            Ok(s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string())
        })?;
        let (_, l) = http.call("GET", &format!("{leases}/ferrolb-controller"), None, None)?;
        let holder = l["spec"]["holderIdentity"].as_str().unwrap_or("");
        ensure!(
            holder.starts_with("ferrolb-controller-test"),
            "lease holder {holder:?}"
        );
        wait_for("an IPAllocated Event for as-sa", 20, || {
            let (_, evs) = http.call(
                "GET",
                "/apis/events.k8s.io/v1/namespaces/default/events",
                None,
                None,
            )?;
            Ok(evs["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["reason"] == "IPAllocated" && e["regarding"]["name"] == "as-sa"))
        })
    })();
    let log = controller.log();
    res.with_context(|| format!("controller as its service account; log:\n{log}"))?;
    ensure!(
        !log.to_lowercase().contains("forbidden") && !log.contains("watch error"),
        "controller log:\n{log}"
    );
    eprintln!("controller log (tail):");
    for l in log
        .lines()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        eprintln!("  {l}");
    }
    drop(controller);

    let kc = impersonating_kubeconfig(admin_kc, dir, "speaker")?;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let speaker = spawn_ferrolb(
        &[
            "speaker",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--metrics-addr",
            &addr,
        ],
        // The variable of earlier releases (still in MetalLB-style
        // manifests): read, with a deprecation warning.
        &[("NODE_NAME", "node-1")],
        dir.join("speaker.log"),
    )?;
    let res = wait_for("speaker /readyz", 40, || {
        Ok(http_status(&format!("http://{addr}/readyz")) == 200)
    })
    .and_then(|()| {
        ensure!(http_status(&format!("http://{addr}/metrics")) == 200);
        ensure!(http_status(&format!("http://{addr}/healthz")) == 200);
        Ok(())
    });
    let log = speaker.log();
    res.with_context(|| format!("speaker as its service account; log:\n{log}"))?;
    ensure!(
        !log.to_lowercase().contains("forbidden") && !log.contains("watch error"),
        "speaker log:\n{log}"
    );
    ensure!(
        log.contains("environment variable NODE_NAME is deprecated: use FERROLB_NODE_NAME"),
        "no deprecation warning for NODE_NAME; speaker log:\n{log}"
    );
    eprintln!("speaker log (tail):");
    for l in log
        .lines()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        eprintln!("  {l}");
    }
    eprintln!(
        "controller and speaker ran as their service accounts (controller UID 65534 without capabilities, speaker UID 0 with NET_RAW only)"
    );
    Ok(())
}
