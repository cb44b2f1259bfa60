//! `manifests/crds.yaml`, the metallb.io CustomResourceDefinitions, and the
//! custom-resource examples `manifests/examples/crs-*.yaml`:
//! - pure: the kinds, versions and names are MetalLB v0.16's; every schema is
//!   structural and uses nothing kube-apiserver 1.20 lacks (no CEL); one
//!   storage version per CRD; every v1beta1 BGPPeer field has the same shape in
//!   v1beta2 (so serving both with `conversion: None` is sound); the CRDs in
//!   `speaker.yaml` are the same objects; every example uses only fields the
//!   schemas declare, with values the schemas accept;
//! - a real kube-apiserver v1.20.2 (one for all checks; skipped with a printed
//!   reason when it is not built or kubectl is missing, an error under CI):
//!   `kubectl apply` of the CRDs and of every example, nothing pruned, the
//!   printer columns, a v1beta1 BGPPeer read back as v1beta2, objects the
//!   schemas must refuse, unknown fields, and the status subresource.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, ensure};
use serde::Deserialize;
use serde_json::{Value, json};

const NS: &str = "metallb-system";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn load_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn crds() -> Vec<Value> {
    load_docs(&repo_file("manifests/crds.yaml"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The `crs-*.yaml` example files, sorted.
fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_file("manifests/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("crs-") && n.ends_with(".yaml")
        })
        .collect();
    out.sort();
    out
}

/// (kind, plural, served versions, storage version, status subresource).
const EXPECTED: &[(&str, &str, &[&str], &str, bool)] = &[
    (
        "IPAddressPool",
        "ipaddresspools",
        &["v1beta1"],
        "v1beta1",
        true,
    ),
    (
        "BGPPeer",
        "bgppeers",
        &["v1beta1", "v1beta2"],
        "v1beta2",
        true,
    ),
    (
        "BGPAdvertisement",
        "bgpadvertisements",
        &["v1beta1"],
        "v1beta1",
        true,
    ),
    (
        "L2Advertisement",
        "l2advertisements",
        &["v1beta1"],
        "v1beta1",
        true,
    ),
    ("Community", "communities", &["v1beta1"], "v1beta1", true),
    ("BFDProfile", "bfdprofiles", &["v1beta1"], "v1beta1", true),
    (
        "ServiceBGPStatus",
        "servicebgpstatuses",
        &["v1beta1"],
        "v1beta1",
        true,
    ),
    (
        "ServiceL2Status",
        "servicel2statuses",
        &["v1beta1"],
        "v1beta1",
        true,
    ),
    (
        "ConfigurationState",
        "configurationstates",
        &["v1beta1"],
        "v1beta1",
        true,
    ),
];

fn crd_for<'a>(crds: &'a [Value], kind: &str) -> &'a Value {
    crds.iter()
        .find(|c| c["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn version<'a>(crd: &'a Value, v: &str) -> &'a Value {
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == v)
        .unwrap_or_else(|| panic!("{}: no version {v}", crd["metadata"]["name"]))
}

fn schema<'a>(crd: &'a Value, v: &str) -> &'a Value {
    &version(crd, v)["schema"]["openAPIV3Schema"]
}

// ---------------------------------------------------------------- pure

#[test]
fn kinds_versions_and_names_are_metallbs() {
    let crds = crds();
    assert_eq!(crds.len(), EXPECTED.len());
    for c in &crds {
        assert_eq!(c["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(c["kind"], "CustomResourceDefinition");
        assert_eq!(c["metadata"]["labels"]["app.kubernetes.io/name"], "ferrolb");
    }
    for (kind, plural, served, storage, status) in EXPECTED {
        let c = crd_for(&crds, kind);
        let spec = &c["spec"];
        assert_eq!(c["metadata"]["name"], format!("{plural}.metallb.io"));
        assert_eq!(spec["group"], "metallb.io");
        assert_eq!(spec["scope"], "Namespaced", "{kind}");
        assert_eq!(spec["names"]["plural"], *plural);
        assert_eq!(spec["names"]["singular"], kind.to_lowercase());
        assert_eq!(spec["names"]["listKind"], format!("{kind}List"));
        // MetalLB defines no short names.
        assert!(spec["names"]["shortNames"].is_null(), "{kind}");
        let versions = spec["versions"].as_array().unwrap();
        let names: Vec<&str> = versions.iter().map(|v| s(&v["name"])).collect();
        assert_eq!(names, *served, "{kind}");
        let storages: Vec<&str> = versions
            .iter()
            .filter(|v| v["storage"] == true)
            .map(|v| s(&v["name"]))
            .collect();
        assert_eq!(storages, [*storage], "{kind}: exactly one storage version");
        for v in versions {
            assert_eq!(v["served"], true, "{kind} {}", v["name"]);
            assert_eq!(
                v["subresources"]["status"].is_object(),
                *status,
                "{kind} {} status subresource",
                v["name"]
            );
        }
        if versions.len() > 1 {
            // No webhook: the API server only rewrites apiVersion.
            assert_eq!(spec["conversion"]["strategy"], "None", "{kind}");
        }
    }
    // The old BGPPeer version warns.
    let peer = crd_for(&crds, "BGPPeer");
    assert_eq!(version(peer, "v1beta1")["deprecated"], true);
    assert!(version(peer, "v1beta1")["deprecationWarning"].is_string());
    // Printer columns as MetalLB's `kubectl get ipaddresspools`.
    let cols: Vec<(&str, &str)> =
        version(crd_for(&crds, "IPAddressPool"), "v1beta1")["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (s(&c["name"]), s(&c["jsonPath"])))
            .collect();
    assert_eq!(
        cols,
        [
            ("Auto Assign", ".spec.autoAssign"),
            ("Avoid Buggy IPs", ".spec.avoidBuggyIPs"),
            ("Addresses", ".spec.addresses")
        ]
    );
}

/// Problems that make a schema non-structural (or unusable on 1.20) at `at`.
fn structural_problems(node: &Value, at: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{at}: not a schema object"));
        return;
    };
    let typed = obj.get("type").and_then(Value::as_str).is_some()
        || obj.get("x-kubernetes-int-or-string") == Some(&json!(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if !typed {
        out.push(format!("{at}: no type"));
    }
    const KNOWN: &[&str] = &[
        "type",
        "description",
        "properties",
        "items",
        "additionalProperties",
        "required",
        "enum",
        "default",
        "format",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "pattern",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
    ];
    for k in obj.keys() {
        // x-kubernetes-validations (CEL) arrived in 1.23; 1.20 rejects it.
        if !KNOWN.contains(&k.as_str()) {
            out.push(format!(
                "{at}: {k} not allowed here (1.20 structural schema)"
            ));
        }
    }
    if let Some(req) = obj.get("required").and_then(Value::as_array) {
        for r in req {
            if obj.get("properties").and_then(|p| p.get(s(r))).is_none() {
                out.push(format!("{at}: required {r} is not a property"));
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        if obj.get("type") != Some(&json!("object")) {
            out.push(format!("{at}: properties on a non-object"));
        }
        for (k, v) in props {
            structural_problems(v, &format!("{at}.{k}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        if obj.get("type") != Some(&json!("array")) {
            out.push(format!("{at}: items on a non-array"));
        }
        structural_problems(items, &format!("{at}[]"), out);
    } else if obj.get("type") == Some(&json!("array")) {
        out.push(format!("{at}: array without items"));
    }
    if let Some(ap) = obj.get("additionalProperties") {
        if obj.contains_key("properties") {
            out.push(format!("{at}: both properties and additionalProperties"));
        }
        structural_problems(ap, &format!("{at}{{}}"), out);
    }
}

#[test]
fn every_crd_is_structural() {
    let crds = crds();
    let mut problems = Vec::new();
    for c in &crds {
        for v in c["spec"]["versions"].as_array().unwrap() {
            let at = format!("{} {}", s(&c["metadata"]["name"]), s(&v["name"]));
            let root = &v["schema"]["openAPIV3Schema"];
            structural_problems(root, &at, &mut problems);
            if root["type"] != "object" {
                problems.push(format!("{at}: root is not an object"));
            }
            // metadata may only be typed at the root (no properties of ours).
            if root["properties"]["metadata"] != json!({"type": "object"}) {
                problems.push(format!("{at}: metadata must be exactly {{type: object}}"));
            }
            for f in ["apiVersion", "kind"] {
                if root["properties"][f]["type"] != "string" {
                    problems.push(format!("{at}: {f} must be a string"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The checker above can fail: a node without a type, CEL, properties on an array.
#[test]
fn structural_check_catches_mistakes() {
    for bad in [
        json!({"type": "object", "properties": {"a": {"description": "untyped"}}}),
        json!({"type": "object", "properties": {"a": {"type": "string",
            "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}),
        json!({"type": "array", "properties": {"a": {"type": "string"}}}),
        json!({"type": "array"}),
        json!({"type": "object", "required": ["b"], "properties": {"a": {"type": "string"}}}),
    ] {
        let mut p = Vec::new();
        structural_problems(&bad, "t", &mut p);
        assert!(!p.is_empty(), "not caught: {bad}");
    }
}

/// Every leaf path of a schema with its type: `.spec.nodeSelectors[].matchLabels{}` -> string.
fn shapes(node: &Value, at: &str, out: &mut BTreeSet<(String, String)>) {
    let ty = node["type"].as_str().unwrap_or("?").to_string();
    out.insert((at.to_string(), ty));
    if let Some(props) = node["properties"].as_object() {
        for (k, v) in props {
            shapes(v, &format!("{at}.{k}"), out);
        }
    }
    if node["items"].is_object() {
        shapes(&node["items"], &format!("{at}[]"), out);
    }
    if node["additionalProperties"].is_object() {
        shapes(&node["additionalProperties"], &format!("{at}{{}}"), out);
    }
}

/// `conversion: None` is sound only if a v1beta1 BGPPeer means the same when
/// read as v1beta2: every v1beta1 path exists in v1beta2 with the same type
/// (MetalLB's webhook copies each of these fields unchanged).
#[test]
fn bgppeer_v1beta1_is_a_subset_of_v1beta2() {
    let crds = crds();
    let peer = crd_for(&crds, "BGPPeer");
    let (mut old, mut new) = (BTreeSet::new(), BTreeSet::new());
    shapes(&schema(peer, "v1beta1")["properties"]["spec"], "", &mut old);
    shapes(&schema(peer, "v1beta2")["properties"]["spec"], "", &mut new);
    let missing: Vec<_> = old.difference(&new).collect();
    assert!(
        missing.is_empty(),
        "v1beta1 paths not in v1beta2: {missing:?}"
    );
    // And the v1beta2-only fields are the ones MetalLB added.
    let added: BTreeSet<String> = new
        .difference(&old)
        .map(|(p, _)| p.trim_start_matches('.').to_string())
        .filter(|p| !p.contains('.') && !p.is_empty())
        .collect();
    let expected: BTreeSet<String> = [
        "connectTime",
        "disableMP",
        "dualStackAddressFamily",
        "dynamicASN",
        "enableGracefulRestart",
        "interface",
        "localASN",
        "passwordSecret",
        "vrf",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(added, expected);
}

#[test]
fn speaker_yaml_carries_the_same_crds() {
    let ours = crds();
    let all = load_docs(&repo_file("manifests/speaker.yaml"));
    let theirs: Vec<Value> = all
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .cloned()
        .collect();
    assert_eq!(theirs.len(), ours.len(), "CRD count");
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(
            a, b,
            "{} differs between crds.yaml and speaker.yaml",
            a["metadata"]["name"]
        );
    }
    // Right after the Namespace, before anything that could use them.
    assert_eq!(all[0]["kind"], "Namespace");
    for d in &all[1..=ours.len()] {
        assert_eq!(d["kind"], "CustomResourceDefinition");
    }
}

/// `value` against `schema` the way the API server would see it: unknown
/// fields (which the server prunes silently), types, enums, ranges, required.
fn schema_problems(value: &Value, schema: &Value, at: &str, out: &mut Vec<String>) {
    let ty = schema["type"].as_str().unwrap_or("");
    match (ty, value) {
        ("object", Value::Object(m)) => {
            for r in schema["required"].as_array().into_iter().flatten() {
                if !m.contains_key(s(r)) {
                    out.push(format!("{at}.{}: required", s(r)));
                }
            }
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in m {
                    match props.get(k) {
                        Some(sub) => schema_problems(v, sub, &format!("{at}.{k}"), out),
                        None => out.push(format!("{at}.{k}: unknown field")),
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for (k, v) in m {
                    schema_problems(
                        v,
                        &schema["additionalProperties"],
                        &format!("{at}.{k}"),
                        out,
                    );
                }
            } else if !m.is_empty() && at != ".metadata" {
                out.push(format!("{at}: the schema keeps no fields here"));
            }
        }
        ("array", Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                schema_problems(v, &schema["items"], &format!("{at}[{i}]"), out);
            }
        }
        ("string", Value::String(_)) | ("boolean", Value::Bool(_)) => {}
        ("integer", Value::Number(n)) if n.is_u64() || n.is_i64() => {
            let n = n.as_i64().unwrap_or(i64::MAX);
            if schema["minimum"].as_i64().is_some_and(|m| n < m)
                || schema["maximum"].as_i64().is_some_and(|m| n > m)
            {
                out.push(format!("{at}: {n} out of range"));
            }
        }
        _ => out.push(format!("{at}: {value} is not a {ty}")),
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(value)
    {
        out.push(format!("{at}: {value} not one of {e:?}"));
    }
    if let (Some(p), Some(v)) = (schema["pattern"].as_str(), value.as_str()) {
        // The one pattern in crds.yaml is the Go duration; check it the simple way.
        assert!(p.contains("ns|us"), "unexpected pattern {p}");
        if !is_go_duration(v) {
            out.push(format!("{at}: {v:?} is not a duration"));
        }
    }
}

/// What Go's `time.ParseDuration` accepts (sign, "0", number+unit repeated).
fn is_go_duration(v: &str) -> bool {
    let v = v.strip_prefix(['+', '-']).unwrap_or(v);
    if v == "0" {
        return true;
    }
    let mut rest = v;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n = &rest[..num];
        if n.is_empty() || n == "." || n.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num..];
        let Some(unit) = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

#[test]
fn examples_use_only_declared_fields_with_valid_values() {
    let crds = crds();
    let files = examples();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    for want in [
        "crs-lab.yaml",
        "crs-lab-split.yaml",
        "crs-bgp.yaml",
        "crs-advertisements.yaml",
        "crs-layer2.yaml",
        "crs-metallb-full.yaml",
        "crs-full.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing");
    }
    let mut kinds = BTreeSet::new();
    for f in &files {
        let docs = load_docs(f);
        assert!(!docs.is_empty(), "{}", f.display());
        let mut seen = BTreeSet::new();
        for d in &docs {
            let kind = s(&d["kind"]);
            let what = format!("{}: {kind} {}", f.display(), d["metadata"]["name"]);
            assert_eq!(d["metadata"]["namespace"], NS, "{what}");
            assert!(
                seen.insert((kind.to_string(), s(&d["metadata"]["name"]).to_string())),
                "{what} twice"
            );
            kinds.insert(kind.to_string());
            if kind == "Secret" {
                assert_eq!(d["type"], "kubernetes.io/basic-auth", "{what}");
                assert!(d["stringData"]["password"].is_string(), "{what}");
                continue;
            }
            let (group, v) = s(&d["apiVersion"]).split_once('/').unwrap();
            assert_eq!(group, "metallb.io", "{what}");
            let crd = crd_for(&crds, kind);
            // Examples use the storage (newest) version.
            assert_eq!(
                version(crd, v)["storage"],
                true,
                "{what}: use the storage version"
            );
            let mut p = Vec::new();
            schema_problems(d, schema(crd, v), "", &mut p);
            assert!(p.is_empty(), "{what}: {p:#?}");
        }
    }
    for k in [
        "IPAddressPool",
        "BGPPeer",
        "BGPAdvertisement",
        "L2Advertisement",
        "Community",
        "Secret",
    ] {
        assert!(kinds.contains(k), "no example uses {k}");
    }
}

#[test]
fn schema_check_catches_mistakes() {
    let crds = crds();
    let peer = schema(crd_for(&crds, "BGPPeer"), "v1beta2");
    let base = json!({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
        "metadata": {"name": "p", "namespace": NS},
        "spec": {"myASN": 1, "peerASN": 2, "peerAddress": "10.0.0.1", "holdTime": "1m30s"}});
    let mut p = Vec::new();
    schema_problems(&base, peer, "", &mut p);
    assert!(p.is_empty(), "{p:?}");
    for (field, v) in [
        ("peerASN", json!(4_294_967_296_u64)),
        ("dynamicASN", json!("bogus")),
        ("holdTime", json!("90 seconds")),
        ("peerAdress", json!("10.0.0.1")),
        ("peerPort", json!("179")),
    ] {
        let mut bad = base.clone();
        bad["spec"][field] = v;
        let mut p = Vec::new();
        schema_problems(&bad, peer, "", &mut p);
        assert!(!p.is_empty(), "{field} not caught");
    }
    assert!(is_go_duration("90s") && is_go_duration("1h2m3.5s") && is_go_duration("0"));
    assert!(!is_go_duration("90") && !is_go_duration("s") && !is_go_duration(""));
}

// ---------------------------------------------------------------- real kube-apiserver

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Kube<'a> {
    kubeconfig: &'a Path,
    server: &'a str,
    token: &'a str,
    ca: PathBuf,
}

impl Kube<'_> {
    /// kubectl with its output (stdout + stderr) and success.
    fn kubectl(&self, args: &[&str]) -> Result<(bool, String)> {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig)
            .args(["--request-timeout", "30s"])
            .args(args)
            .output()
            .context("running kubectl")?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    /// kubectl with a YAML document on stdin.
    fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<(bool, String)> {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig)
            .args(["--request-timeout", "30s"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        child.stdin.take().unwrap().write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    fn get_json(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let (ok, out) = self.kubectl(&a)?;
        ensure!(ok, "kubectl {a:?}: {out}");
        // Warnings (deprecated version) go to stderr after the JSON.
        let end = out.rfind('}').context("no JSON")?;
        Ok(serde_json::from_str(&out[..=end])?)
    }

    /// A merge PATCH with curl (kubectl 1.20 has no --subresource).
    fn merge_patch(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let mut child = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-X", "PATCH", "--cacert"])
            .arg(&self.ca)
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .args(["-H", "Content-Type: application/merge-patch+json"])
            .args(["-w", "\n%{http_code}", "--data-binary", "@-"])
            .arg(format!("{}{path}", self.server))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("running curl")?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(body)?.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "curl PATCH {path} failed");
        let text = String::from_utf8(out.stdout)?;
        let (body, code) = text.rsplit_once('\n').context("no status from curl")?;
        Ok((
            code.trim().parse()?,
            serde_json::from_str(body).unwrap_or(Value::Null),
        ))
    }
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
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{at}: sent {a}, stored {b}")),
    }
}

#[test]
fn crds_and_examples_on_a_real_apiserver() -> Result<()> {
    if !kubectl_available() {
        let reason = "kubectl not installed";
        ensure!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{reason} under CI"
        );
        eprintln!("SKIP CRDs on kube-apiserver: {reason}");
        return Ok(());
    }
    let Some(api) = ferrolb_testlab::kube::KubeApiServer::start()? else {
        return Ok(());
    };
    let kube = Kube {
        kubeconfig: api.kubeconfig_path(),
        server: api.server_url(),
        token: api.token(),
        ca: api.ca_cert_path(),
    };
    let res = real_server_checks(&kube, api.dir());
    if res.is_err() {
        eprintln!("kube-apiserver logs: {}", api.dir().display());
    }
    res
}

fn real_server_checks(k: &Kube, dir: &Path) -> Result<()> {
    let crds_file = repo_file("manifests/crds.yaml");
    let crds_file = crds_file.to_str().unwrap();
    // 1. The CRDs install and become Established; a re-apply changes nothing.
    let (ok, out) = k.kubectl(&["apply", "--validate=true", "-f", crds_file])?;
    ensure!(ok, "kubectl apply crds.yaml: {out}");
    ensure!(out.matches(" created").count() == EXPECTED.len(), "{out}");
    let (ok, out) = k.kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "60s",
        "-f",
        crds_file,
    ])?;
    ensure!(ok, "CRDs not Established: {out}");
    for c in crds() {
        let name = s(&c["metadata"]["name"]);
        let got = k.get_json(&["crd", name])?;
        let conds = got["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(
            !conds.iter().any(|c| c["type"] == "NonStructuralSchema"),
            "{name}: {conds:?}"
        );
        // The server stored every schema keyword we wrote (1.20 drops nothing).
        let mut lost = Vec::new();
        lost_fields(&c["spec"], &got["spec"], "", &mut lost);
        ensure!(lost.is_empty(), "{name}: {lost:#?}");
    }
    let (ok, out) = k.kubectl(&["apply", "--validate=true", "-f", crds_file])?;
    ensure!(
        ok && out.matches(" unchanged").count() == EXPECTED.len(),
        "re-apply: {out}"
    );

    // 2. Every example applies with server-side validation and comes back
    //    whole (nothing pruned). Each file in a fresh namespace-state: the
    //    objects of one file are deleted before the next.
    let (ok, out) = k.kubectl(&["create", "namespace", NS])?;
    ensure!(ok, "{out}");
    for f in examples() {
        let file = f.to_str().unwrap();
        let (ok, out) = k.kubectl(&["apply", "--validate=true", "-f", file])?;
        ensure!(ok, "kubectl apply {file}: {out}");
        let docs = load_docs(&f);
        ensure!(
            out.matches(" created").count() == docs.len(),
            "{file}: {out}"
        );
        let got = k.get_json(&["-f", file])?;
        let items = got["items"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![got.clone()]);
        ensure!(
            items.len() == docs.len(),
            "{file}: read back {} objects",
            items.len()
        );
        for (sent, stored) in docs.iter().zip(&items) {
            if sent["kind"] == "Secret" {
                // stringData is write-only: it comes back base64-encoded in data.
                ensure!(stored["data"]["password"].is_string(), "{file}: Secret");
                continue;
            }
            let mut lost = Vec::new();
            lost_fields(sent, stored, "", &mut lost);
            ensure!(
                lost.is_empty(),
                "{file}: {} {lost:#?}",
                sent["metadata"]["name"]
            );
        }
        if f.ends_with("crs-full.yaml") {
            // 3. Printer columns, with crs-full's two pools in place.
            let (ok, out) = k.kubectl(&["get", "ipaddresspools", "-n", NS])?;
            ensure!(ok, "{out}");
            let mut lines = out.lines();
            let header: Vec<&str> = lines
                .next()
                .unwrap_or("")
                .split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect();
            ensure!(
                header == ["NAME", "AUTO ASSIGN", "AVOID BUGGY IPS", "ADDRESSES"],
                "columns: {out}"
            );
            let row = |name: &str| -> Vec<String> {
                out.lines()
                    .find(|l| l.starts_with(&format!("{name} ")))
                    .unwrap_or("")
                    .split_whitespace()
                    .map(String::from)
                    .collect()
            };
            // autoAssign defaults to true, avoidBuggyIPs to false (as MetalLB).
            ensure!(
                row("production")
                    == [
                        "production",
                        "true",
                        "false",
                        r#"["203.0.113.0/24","2001:db8:100::/120"]"#
                    ],
                "{out}"
            );
            ensure!(
                row("reserved")
                    == [
                        "reserved",
                        "false",
                        "true",
                        r#"["198.51.100.10-198.51.100.20"]"#
                    ],
                "{out}"
            );
            status_subresource(k)?;
        }
        let (ok, out) = k.kubectl(&["delete", "-f", file, "--wait=true"])?;
        ensure!(ok, "delete {file}: {out}");
    }

    v1beta1_bgppeer(k)?;
    refused(k, dir)?;
    eprintln!("CRDs: installed, examples applied, v1beta1 peer, refusals, status subresource");
    Ok(())
}

/// The status subresource of IPAddressPool: a status patch sets the counts and
/// cannot touch the spec; a main-resource patch cannot touch the status.
fn status_subresource(k: &Kube) -> Result<()> {
    let path = "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/production";
    let before = k.get_json(&["ipaddresspool", "-n", NS, "production"])?;
    let counts = json!({"assignedIPv4": 3, "assignedIPv6": 1, "availableIPv4": 253,
        "availableIPv6": 255});
    let (code, got) = k.merge_patch(
        &format!("{path}/status"),
        &json!({"status": counts, "spec": {"autoAssign": false, "addresses": ["10.9.9.0/24"]}}),
    )?;
    ensure!(code == 200, "status patch: {code} {got}");
    let after = k.get_json(&["ipaddresspool", "-n", NS, "production"])?;
    ensure!(after["status"] == counts, "status: {}", after["status"]);
    ensure!(
        after["spec"] == before["spec"],
        "spec changed by a status patch: {}",
        after["spec"]
    );
    ensure!(
        after["metadata"]["generation"] == before["metadata"]["generation"],
        "generation moved"
    );
    // The status subresource needs all four counts.
    let (code, got) = k.merge_patch(
        &format!("{path}/status"),
        &json!({"status": {"assignedIPv4": null}}),
    )?;
    ensure!(
        code == 422,
        "a status without assignedIPv4 was accepted: {code} {got}"
    );
    // Through the main resource, status is ignored.
    let (code, got) = k.merge_patch(path, &json!({"status": {"assignedIPv4": 99}}))?;
    ensure!(code == 200, "main patch: {code} {got}");
    let again = k.get_json(&["ipaddresspool", "-n", NS, "production"])?;
    ensure!(
        again["status"] == counts,
        "status changed via the main resource"
    );
    // ServiceBGPStatus and ConfigurationState keep what the binaries write there.
    let (ok, out) = k.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: metallb.io/v1beta1\nkind: ServiceBGPStatus\n\
         metadata: {name: node-1-web, namespace: metallb-system}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: ConfigurationState\n\
         metadata: {name: controller, namespace: metallb-system}\n",
    )?;
    ensure!(ok, "{out}");
    let mlb = "/apis/metallb.io/v1beta1/namespaces/metallb-system";
    let sbs = json!({"node": "node-1", "serviceName": "web", "serviceNamespace": "shop",
        "peers": ["tor-a", "tor-b"]});
    let (code, got) = k.merge_patch(
        &format!("{mlb}/servicebgpstatuses/node-1-web/status"),
        &json!({"status": sbs}),
    )?;
    ensure!(
        code == 200 && got["status"] == sbs,
        "servicebgpstatus: {code} {got}"
    );
    let state = json!({"result": "Invalid", "errorSummary": "pools a and b overlap",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ConfigInvalid",
            "message": "pools a and b overlap", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    let (code, got) = k.merge_patch(
        &format!("{mlb}/configurationstates/controller/status"),
        &json!({"status": state}),
    )?;
    ensure!(
        code == 200 && got["status"] == state,
        "configurationstate: {code} {got}"
    );
    let (ok, out) = k.kubectl(&["get", "configurationstates", "-n", NS])?;
    ensure!(
        ok && out.contains("RESULT") && out.contains("ERRORSUMMARY") && out.contains("Invalid"),
        "{out}"
    );
    let (code, got) = k.merge_patch(
        &format!("{mlb}/configurationstates/controller/status"),
        &json!({"status": {"result": "Broken"}}),
    )?;
    ensure!(code == 422, "result Broken accepted: {code} {got}");
    // Valid again: errorSummary is removed with null (MetalLB omits it when
    // empty). An empty string would not do on the test server: its
    // kube-apiserver build reads "" in a custom resource as null and refuses
    // it ("must be of type string"), in patches and creates alike.
    let (code, got) = k.merge_patch(
        &format!("{mlb}/configurationstates/controller/status"),
        &json!({"status": {"result": "Valid", "errorSummary": null, "conditions": null}}),
    )?;
    ensure!(
        code == 200 && got["status"] == json!({"result": "Valid"}),
        "back to Valid: {code} {got}"
    );
    let (code, got) = k.merge_patch(
        &format!("{mlb}/configurationstates/controller/status"),
        &json!({"status": {"errorSummary": ""}}),
    )?;
    if code == 200 {
        eprintln!("note: this kube-apiserver keeps \"\" in custom resources");
    } else {
        eprintln!("note: this kube-apiserver refuses \"\" in custom resources ({code}): {got}");
    }
    let (ok, out) = k.kubectl(&[
        "delete",
        "-n",
        NS,
        "servicebgpstatus/node-1-web",
        "configurationstate/controller",
    ])?;
    ensure!(ok, "{out}");
    Ok(())
}

/// A v1beta1 BGPPeer (no webhook) reads back as v1beta2 with the same fields,
/// plus v1beta2's defaults; a v1beta2-only field is left out of a v1beta1 read.
fn v1beta1_bgppeer(k: &Kube) -> Result<()> {
    let spec = json!({"myASN": 64500, "peerASN": 4_294_967_295_u64, "peerAddress": "10.0.0.1",
        "sourceAddress": "10.0.0.2", "holdTime": "90s", "keepaliveTime": "30s",
        "routerID": "10.0.0.2", "password": "pw", "bfdProfile": "fast", "ebgpMultiHop": true,
        "nodeSelectors": [{"matchLabels": {"rack": "a"},
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]});
    let obj = json!({"apiVersion": "metallb.io/v1beta1", "kind": "BGPPeer",
        "metadata": {"name": "old", "namespace": NS}, "spec": spec});
    let (ok, out) = k.kubectl_stdin(&["apply", "-f", "-"], &obj.to_string())?;
    ensure!(ok, "apply v1beta1 peer: {out}");
    ensure!(out.contains("deprecated"), "no deprecation warning: {out}");
    let got = k.get_json(&["bgppeers.v1beta2.metallb.io", "-n", NS, "old"])?;
    ensure!(
        got["apiVersion"] == "metallb.io/v1beta2",
        "{}",
        got["apiVersion"]
    );
    let mut want = spec.clone();
    // v1beta2's defaults, applied on read.
    want["peerPort"] = json!(179);
    want["disableMP"] = json!(false);
    want["dualStackAddressFamily"] = json!(false);
    ensure!(
        got["spec"] == want,
        "v1beta2 read: {}\nwant {want}",
        got["spec"]
    );
    // v1beta2-only fields are not shown to a v1beta1 reader (as MetalLB's webhook).
    let (code, body) = k.merge_patch(
        "/apis/metallb.io/v1beta2/namespaces/metallb-system/bgppeers/old",
        &json!({"spec": {"passwordSecret": {"name": "pw"}, "vrf": "red"}}),
    )?;
    ensure!(code == 200, "{code} {body}");
    let old = k.get_json(&["bgppeers.v1beta1.metallb.io", "-n", NS, "old"])?;
    ensure!(old["apiVersion"] == "metallb.io/v1beta1");
    ensure!(
        old["spec"]["passwordSecret"].is_null() && old["spec"]["vrf"].is_null(),
        "{}",
        old["spec"]
    );
    ensure!(
        old["spec"]["peerASN"] == 4_294_967_295_u64,
        "{}",
        old["spec"]
    );
    let new = k.get_json(&["bgppeers.v1beta2.metallb.io", "-n", NS, "old"])?;
    ensure!(new["spec"]["vrf"] == "red", "{}", new["spec"]);
    let (ok, out) = k.kubectl(&["delete", "-n", NS, "bgppeers.v1beta2.metallb.io/old"])?;
    ensure!(ok, "{out}");
    Ok(())
}

/// Objects the schemas refuse, with the field in the message; and what 1.20
/// does with an unknown field.
fn refused(k: &Kube, dir: &Path) -> Result<()> {
    let peer = |extra: &str| {
        format!(
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\n\
             metadata: {{name: bad, namespace: metallb-system}}\n\
             spec: {{myASN: 64500, peerAddress: 10.0.0.1, {extra}}}\n"
        )
    };
    let cases = [
        (
            peer("peerASN: 4294967296"),
            "spec.peerASN",
            "less than or equal to 4294967295",
        ),
        (
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\n\
             metadata: {name: bad, namespace: metallb-system}\nspec: {myASN: -1, peerASN: 1}\n"
                .to_string(),
            "spec.myASN",
            "greater than or equal to 0",
        ),
        (peer("dynamicASN: bogus"), "spec.dynamicASN", "internal"),
        (
            peer("peerPort: 16385"),
            "spec.peerPort",
            "less than or equal to 16384",
        ),
        (
            peer("holdTime: 90 seconds"),
            "spec.holdTime",
            "should match",
        ),
        (
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\n\
             metadata: {name: bad, namespace: metallb-system}\nspec: {peerASN: 1}\n"
                .to_string(),
            "spec.myASN",
            "Required",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\n\
             metadata: {name: bad, namespace: metallb-system}\nspec: {aggregationLength: 33}\n"
                .to_string(),
            "spec.aggregationLength",
            "less than or equal to 32",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\n\
             metadata: {name: bad, namespace: metallb-system}\nspec: {aggregationLengthV6: 129}\n"
                .to_string(),
            "spec.aggregationLengthV6",
            "less than or equal to 128",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
             metadata: {name: bad, namespace: metallb-system}\nspec: {autoAssign: true}\n"
                .to_string(),
            "spec.addresses",
            "Required",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\n\
             metadata: {name: bad, namespace: metallb-system}\nspec: {detectMultiplier: 1}\n"
                .to_string(),
            "spec.detectMultiplier",
            "greater than or equal to 2",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
             metadata: {name: bad, namespace: metallb-system}\n\
             spec: {addresses: [10.0.0.0/24], serviceAllocation: {namespaceSelectors: \
             [{matchExpressions: [{key: a, operator: Maybe}]}]}}\n"
                .to_string(),
            "operator",
            "Unsupported value",
        ),
    ];
    let mut failures = Vec::new();
    for (doc, field, words) in &cases {
        // --validate=false: the server's schema alone decides.
        let (ok, out) = k.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], doc)?;
        if ok || !out.contains(field) || !out.contains(words) {
            failures.push(format!("{doc}-> ok={ok}: {out}"));
        }
    }
    ensure!(
        failures.is_empty(),
        "not refused as expected:\n{}",
        failures.join("\n")
    );

    // An unknown (misspelled) field: kubectl's --validate refuses it (1.20
    // publishes the CRD schemas in its OpenAPI); the server alone prunes it.
    let typo = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
                metadata: {name: typo, namespace: metallb-system}\n\
                spec: {addresses: [10.0.0.0/24], autoAsign: false}\n";
    let typo_file = dir.join("typo.yaml");
    std::fs::write(&typo_file, typo)?;
    let typo_file = typo_file.to_str().unwrap();
    let (ok, out) = k.kubectl(&["apply", "--validate=true", "-f", typo_file])?;
    ensure!(
        !ok && out.contains("autoAsign"),
        "typo accepted by kubectl --validate: {out}"
    );
    let (ok, out) = k.kubectl(&["apply", "--validate=false", "-f", typo_file])?;
    ensure!(ok, "{out}");
    let got = k.get_json(&["ipaddresspool", "-n", NS, "typo"])?;
    ensure!(
        got["spec"]
            == json!({"addresses": ["10.0.0.0/24"], "autoAssign": true, "avoidBuggyIPs": false}),
        "unknown field not pruned: {}",
        got["spec"]
    );
    Ok(())
}
