//! Starts the cached kube-apiserver v1.20.2 (see scripts/kube-apiserver) and checks
//! `/version` over HTTPS with the static admin token; starts another with extra flags
//! and the EndpointSlice v1 CRD and checks what it accepts and refuses. Skips when not
//! built / not root.

use std::process::Command;

use ferrolb_testlab::kube::KubeApiServer;

#[test]
fn kube_apiserver_version() -> anyhow::Result<()> {
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    eprintln!(
        "kube-apiserver at {} ready in {:?} ms, kubeconfig {}",
        api.server_url(),
        api.ready_ms(),
        api.kubeconfig_path().display()
    );
    let out = Command::new("curl")
        .args(["-sSk", "--max-time", "10", "-H"])
        .arg(format!("Authorization: Bearer {}", api.token()))
        .arg(format!("{}/version", api.server_url()))
        .output()?;
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["gitVersion"], "v1.20.2", "unexpected /version: {v}");
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "20");

    // The token is a cluster admin: an RBAC-protected list works, no token is 401/403.
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {}", api.token()))
        .arg(format!("{}/api/v1/namespaces", api.server_url()))
        .output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let pids = api.pids();
    drop(api);
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z")),
            "pid {pid} still running after drop"
        );
    }
    Ok(())
}

/// The EndpointSlice v1 CRD on a server started with the built-in v1beta1 group off:
/// served and discoverable as `discovery.k8s.io/v1`; slices as a real 1.33 cluster
/// stores them are created (a port's protocol defaulted to TCP, as the built-in type
/// does), listed by
/// the service-name label, watched, replaced and merge-patched; malformed ones are
/// refused with the server's reason.
#[test]
fn endpoint_slice_v1_crd() -> anyhow::Result<()> {
    use anyhow::ensure;
    use ferrolb_testlab::kube::{DISABLE_BUILTIN_SLICES, StartOptions};
    use serde_json::json;
    use std::time::Duration;

    let Some(api) = KubeApiServer::start_with(&StartOptions::ENDPOINT_SLICE_V1)? else {
        return Ok(());
    };
    assert_eq!(api.extra_args(), vec![DISABLE_BUILTIN_SLICES.to_string()]);
    // The flag reached the server: the built-in group is gone, v1 not served yet.
    for v in ["v1beta1", "v1"] {
        let r = api.request("GET", &format!("/apis/discovery.k8s.io/{v}"), None)?;
        assert_eq!(
            r.status, 404,
            "/apis/discovery.k8s.io/{v} before the CRD: {r:?}"
        );
    }
    let took = api.install_endpoint_slice_v1_crd(Duration::from_secs(30))?;
    eprintln!("EndpointSlice v1 CRD established and discoverable in {took:?}");

    let disc = api
        .request("GET", "/apis/discovery.k8s.io/v1", None)?
        .json()?;
    let res = disc["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "endpointslices"))
        .cloned()
        .expect("endpointslices in discovery");
    assert_eq!(res["kind"], "EndpointSlice");
    assert_eq!(res["namespaced"], true);
    for verb in [
        "create", "get", "list", "watch", "update", "patch", "delete",
    ] {
        assert!(
            res["verbs"].as_array().unwrap().iter().any(|v| v == verb),
            "verb {verb} missing: {res}"
        );
    }
    // The group's preferred version as clients see it.
    let group = api.request("GET", "/apis/discovery.k8s.io", None)?.json()?;
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "discovery.k8s.io/v1"
    );

    let r = api.request_json(
        "POST",
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}),
    )?;
    assert_eq!(r.status, 201, "namespace: {}", r.message());
    let base = "/apis/discovery.k8s.io/v1/namespaces/t/endpointslices";

    // As a 1.33 cluster's EndpointSlice controller writes them: labels, owner, every
    // endpoint field, one ready, one serving while terminating, one not ready.
    let endpoints = json!([
        {"addresses": ["10.244.1.5"],
         "conditions": {"ready": true, "serving": true, "terminating": false},
         "hostname": "web-0", "nodeName": "node-1", "zone": "zone-a",
         "targetRef": {"kind": "Pod", "namespace": "t", "name": "web-0",
                       "uid": "0b5a2c7e-4d3c-4a55-9d8e-1f2a3b4c5d6e"},
         "hints": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "node-1"}]}},
        {"addresses": ["10.244.2.7"],
         "conditions": {"ready": false, "serving": true, "terminating": true},
         "nodeName": "node-2", "zone": "zone-b",
         "targetRef": {"kind": "Pod", "namespace": "t", "name": "web-1",
                       "uid": "7c1d9e2f-3a4b-4c5d-8e9f-0a1b2c3d4e5f"}},
        {"addresses": ["10.244.3.9"],
         "conditions": {"ready": false, "serving": false, "terminating": false},
         "nodeName": "node-3", "deprecatedTopology": {"example.com/rack": "r1"}}
    ]);
    let web = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": "web-x7k2p", "generateName": "web-",
            "labels": {"kubernetes.io/service-name": "web",
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2025-05-01T10:00:00Z"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                 "uid": "5f0e2d1c-9b8a-4f7e-a6d5-c4b3a2918070",
                                 "controller": true, "blockOwnerDeletion": true}]
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
                  {"port": 9090}]
    });
    let r = api.request_json("POST", base, &web)?;
    assert_eq!(r.status, 201, "valid slice refused: {}", r.message());
    let stored = r.json()?;
    let rv_after_web = stored["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string();
    assert_eq!(
        stored["endpoints"], endpoints,
        "endpoints not kept as written"
    );
    assert_eq!(
        stored["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
               {"protocol": "TCP", "port": 9090}]),
        "a port's protocol defaults to TCP"
    );
    // A Service without pods: Go writes the nil lists as null.
    let r = api.request_json(
        "POST",
        base,
        &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "db-q9r4s", "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4", "endpoints": null, "ports": null}),
    )?;
    assert_eq!(r.status, 201, "empty slice refused: {}", r.message());
    // IPv6 and FQDN slices, conditions left out (nil: ready).
    for (name, at, addr) in [
        ("web-v6", "IPv6", "fd00:10:244::5"),
        ("ext", "FQDN", "db.example.com"),
    ] {
        let r = api.request_json(
            "POST",
            base,
            &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
                    "addressType": at, "endpoints": [{"addresses": [addr]}], "ports": []}),
        )?;
        assert_eq!(r.status, 201, "{at} slice refused: {}", r.message());
    }

    // Listed through the v1 API by the service-name label, as clients find a
    // Service's slices.
    let list = api
        .request(
            "GET",
            &format!("{base}?labelSelector=kubernetes.io%2Fservice-name%3Dweb"),
            None,
        )?
        .json()?;
    assert_eq!(list["apiVersion"], "discovery.k8s.io/v1");
    assert_eq!(list["kind"], "EndpointSliceList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["web-x7k2p"]);
    let all = api
        .request("GET", "/apis/discovery.k8s.io/v1/endpointslices", None)?
        .json()?;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(4), "{all}");

    // Watch from after the first create: the other three arrive as ADDED.
    let w = api.request(
        "GET",
        &format!("{base}?watch=true&resourceVersion={rv_after_web}&timeoutSeconds=1"),
        None,
    )?;
    assert_eq!(w.status, 200, "watch: {}", w.body);
    let added: Vec<String> = w
        .body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "ADDED")
        .filter_map(|e| e["object"]["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        added,
        ["db-q9r4s", "web-v6", "ext"],
        "watch body: {}",
        w.body
    );

    // Replace (PUT) works; strategic merge patch does not (a CRD), JSON merge patch does.
    let mut replaced = stored.clone();
    replaced["endpoints"][1]["conditions"]["serving"] = json!(false);
    let r = api.request_json("PUT", &format!("{base}/web-x7k2p"), &replaced)?;
    assert_eq!(r.status, 200, "replace: {}", r.message());
    assert_eq!(r.json()?["endpoints"][1]["conditions"]["serving"], false);
    let patch = br#"{"metadata":{"labels":{"example.com/patched":"yes"}}}"#;
    let r = api.request(
        "PATCH",
        &format!("{base}/web-x7k2p"),
        Some(("application/strategic-merge-patch+json", patch)),
    )?;
    assert_eq!(r.status, 415, "strategic merge patch on a CRD: {r:?}");
    let r = api.request(
        "PATCH",
        &format!("{base}/web-x7k2p"),
        Some(("application/merge-patch+json", patch)),
    )?;
    assert_eq!(r.status, 200, "merge patch: {}", r.message());

    // Malformed slices: refused (422) with the server's reason naming the field (a
    // CRD's reasons name list fields without indexes).
    let slice = |name: &str, body: serde_json::Value| {
        let mut s = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": name,
                                        "labels": {"kubernetes.io/service-name": "bad"}}});
        for (k, v) in body.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    let ok_ep = json!({"addresses": ["10.244.1.5"]});
    let cases = [
        (
            slice(
                "bad-ipv5",
                json!({"addressType": "IPv5", "endpoints": [ok_ep]}),
            ),
            &["addressType", "Unsupported value: \"IPv5\""][..],
        ),
        (
            slice("bad-no-type", json!({"endpoints": [ok_ep]})),
            &["addressType", "Required value"],
        ),
        (
            slice(
                "bad-no-addresses",
                json!({"addressType": "IPv4", "endpoints": [{"nodeName": "node-1"}]}),
            ),
            &["endpoints.addresses", "Required value"],
        ),
        (
            slice(
                "bad-empty-addresses",
                json!({"addressType": "IPv4", "endpoints": [{"addresses": []}]}),
            ),
            &["endpoints.addresses", "at least 1 items"],
        ),
        (
            slice(
                "bad-ready",
                json!({"addressType": "IPv4",
                       "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": "yes"}}]}),
            ),
            &["endpoints.conditions.ready", "boolean"],
        ),
        (
            slice(
                "bad-hostname",
                json!({"addressType": "IPv4",
                       "endpoints": [{"addresses": ["10.244.1.5"], "hostname": "Web_0"}]}),
            ),
            &["endpoints.hostname"],
        ),
        (
            slice(
                "bad-zone-hint",
                json!({"addressType": "IPv4",
                       "endpoints": [{"addresses": ["10.244.1.5"], "hints": {"forZones": [{}]}}]}),
            ),
            &["endpoints.hints.forZones.name", "Required value"],
        ),
        (
            slice(
                "bad-protocol",
                json!({"addressType": "IPv4", "endpoints": [ok_ep],
                       "ports": [{"name": "http", "protocol": "HTTP", "port": 80}]}),
            ),
            &["ports.protocol", "Unsupported value: \"HTTP\""],
        ),
        (
            slice(
                "bad-port",
                json!({"addressType": "IPv4", "endpoints": [ok_ep],
                       "ports": [{"name": "http", "port": 4294967296u64}]}),
            ),
            &["ports.port"],
        ),
    ];
    for (body, want) in &cases {
        let name = body["metadata"]["name"].as_str().unwrap();
        let r = api.request_json("POST", base, body)?;
        let msg = r.message();
        eprintln!("{name}: HTTP {} {msg}", r.status);
        ensure!(
            r.status == 422,
            "{name}: want 422, got HTTP {}: {msg}",
            r.status
        );
        for w in *want {
            ensure!(
                msg.contains(w),
                "{name}: reason {msg:?} does not mention {w:?}"
            );
        }
        let r = api.request("GET", &format!("{base}/{name}"), None)?;
        ensure!(
            r.status == 404,
            "{name} was stored anyway: HTTP {}",
            r.status
        );
    }
    // An update may not break the schema either.
    let mut broken = api
        .request("GET", &format!("{base}/web-x7k2p"), None)?
        .json()?;
    broken["addressType"] = json!("IPv5");
    let r = api.request_json("PUT", &format!("{base}/web-x7k2p"), &broken)?;
    assert_eq!(
        r.status,
        422,
        "replace with addressType IPv5: {}",
        r.message()
    );
    Ok(())
}
