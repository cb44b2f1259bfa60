//! IPAddressPool status and the Namespace label watch against a real
//! kube-apiserver (testlab): the
//! controller's reconcile shell assigns IPs to Services created in the API
//! server, and the pool status task writes `assignedIPv4/IPv6` and
//! `availableIPv4/IPv6` that match; nothing is written while the pools do not
//! come from custom resources. The test creates a minimal `ipaddresspools`
//! CRD with a status subresource itself. Skips (prints SKIP) when no
//! kube-apiserver binary is available.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrolb_controller::allocator::ServiceKey;
use ferrolb_controller::core::ControllerCore;
use ferrolb_controller::namespaces;
use ferrolb_controller::pool_status::{self, ip_address_pool_resource};
use ferrolb_controller::reconcile::Context;
use ferrolb_ops::events::{Events, Reporter};
use ferrolb_testlab::kube::KubeApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NS: &str = "metallb-system";
const APP_NS: &str = "demo";

const CONFIG: &str = "address-pools:
- {name: v4, protocol: bgp, addresses: [10.9.0.0/30]}
- {name: v6, protocol: bgp, addresses: ['fd00:9::/64']}
- {name: spare, protocol: bgp, addresses: [10.9.1.0/24], avoid-buggy-ips: true}
";

fn crd() -> Value {
    let count = json!({"type": "integer", "format": "int64"});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "ipaddresspools.metallb.io"},
        "spec": {
            "group": "metallb.io",
            "scope": "Namespaced",
            "names": {"plural": "ipaddresspools", "singular": "ipaddresspool",
                      "kind": "IPAddressPool", "listKind": "IPAddressPoolList"},
            "versions": [{
                "name": "v1beta1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "properties": {
                        "assignedIPv4": count, "assignedIPv6": count,
                        "availableIPv4": count, "availableIPv6": count,
                    }},
                }}},
            }],
        },
    })
}

#[test]
fn pool_status_follows_allocations() -> Result<()> {
    let Some(api) = KubeApiServer::start()? else {
        return Ok(());
    };
    let r = api.request_json(
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &crd(),
    )?;
    ensure!(r.status == 201, "CRD: HTTP {}: {}", r.status, r.message());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let res = rt.block_on(scenario(api.kubeconfig_path()));
    if res.is_err() {
        eprintln!("kube-apiserver logs: {}", api.dir().display());
    }
    res
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if t0.elapsed() > timeout {
            bail!("{what}: not within {timeout:?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lb(name: &str, family: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": APP_NS},
        "spec": {"type": "LoadBalancer", "ipFamilies": [family],
                 "ports": [{"port": 80}]},
    }))
    .unwrap()
}

async fn scenario(kubeconfig: &Path) -> Result<()> {
    let client = client(kubeconfig).await?;
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, APP_NS] {
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    }
    let pools: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), NS, &ip_address_pool_resource());
    // The CRD may take a moment to be served.
    for (name, addrs) in [
        ("v4", "10.9.0.0/30"),
        ("v6", "fd00:9::/64"),
        ("spare", "10.9.1.0/24"),
    ] {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"addresses": [addrs]},
        }))?;
        wait_until("IPAddressPool created", Duration::from_secs(20), || {
            let (pools, obj) = (pools.clone(), obj.clone());
            async move { Ok(pools.create(&PostParams::default(), &obj).await.ok()) }
        })
        .await?;
    }

    let mut core = ControllerCore::new(None);
    ensure!(core.offer_config(Some(CONFIG)).applied);
    ensure!(core.rebuild(&[]));
    let events = Events::new(
        client.clone(),
        Reporter {
            controller: "ferrolb-test".into(),
            instance: None,
        },
    );
    let (ctx, _all) = Context::new(client.clone(), core, events);
    let ctx = Arc::new(ctx);
    let task = {
        let c = ctx.clone();
        tokio::spawn(pool_status::run(
            client.clone(),
            NS.to_string(),
            ctx.clone(),
            ctx.pool_status_dirty(),
            Arc::new(move || c.pools_from_crs()),
            Duration::from_secs(1),
        ))
    };
    let status = |name: &'static str| {
        let pools = pools.clone();
        async move {
            let p = pools.get(name).await?;
            Ok::<Value, anyhow::Error>(p.data.get("status").cloned().unwrap_or(Value::Null))
        }
    };
    let want = |a4: i64, a6: i64, v4: i64, v6: i64| json!({"assignedIPv4": a4, "assignedIPv6": a6, "availableIPv4": v4, "availableIPv6": v6});
    let expect = |name: &'static str, w: Value| {
        let status = &status;
        async move {
            wait_until(
                &format!("status of {name} = {w}"),
                Duration::from_secs(10),
                || {
                    let w = w.clone();
                    async move {
                        let got = status(name).await?;
                        if got == w {
                            Ok(Some(()))
                        } else {
                            anyhow::bail!("last seen {got}")
                        }
                    }
                },
            )
            .await
        }
    };

    // Pools from a ConfigMap: no status is written.
    let svcs: Api<Service> = Api::namespaced(client.clone(), APP_NS);
    let s = svcs
        .create(&PostParams::default(), &lb("a", "IPv4"))
        .await?;
    let s = svcs.get(&s.name_any()).await?;
    ctx.reconcile_service(&s).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        status("v4").await?.is_null(),
        "status written for ConfigMap pools"
    );

    // Pools from custom resources: every pool once, then on change.
    let t0 = Instant::now();
    ctx.set_pools_from_crs(true);
    expect("v4", want(1, 0, 3, 0)).await?;
    expect("v6", want(0, 0, 0, i64::MAX)).await?;
    // avoid-buggy-ips: a /24 loses .0 and .255.
    expect("spare", want(0, 0, 254, 0)).await?;
    println!("pool status: first writes after {:?}", t0.elapsed());

    // Count the writes to pool v4 from here on (watch events).
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = {
        let (pools, writes) = (pools.clone(), writes.clone());
        let cfg = watcher::Config::default().fields("metadata.name=v4");
        tokio::spawn(async move {
            let mut st = watcher(pools, cfg).boxed();
            while let Some(ev) = st.next().await {
                if let Ok(watcher::Event::Apply(_)) = ev {
                    writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut created = vec![s];
    // (The test server's cluster is IPv4 only: IPv6 counts are covered by
    // the pure tests and the empty /64 above.)
    for (name, fam) in [("b", "IPv4"), ("c", "IPv4"), ("d", "IPv4")] {
        let s = svcs.create(&PostParams::default(), &lb(name, fam)).await?;
        ctx.reconcile_service(&s).await?;
        created.push(s);
    }
    let t1 = Instant::now();
    expect("v4", want(4, 0, 0, 0)).await?;
    let n = writes.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "pool status: burst of 3 Services shown after {:?}, {n} write(s) of pool v4",
        t1.elapsed()
    );
    // Coalesced: three allocations within a second make at most two writes.
    ensure!((1..=2).contains(&n), "{n} writes of v4 for a burst of 3");
    // The Services show what the status counts.
    for s in &created {
        let got = svcs.get(&s.name_any()).await?;
        let ing = got
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .context("no ingress")?;
        ensure!(ing.len() == 1, "{}: {ing:?}", s.name_any());
    }

    // Deleting Services frees their addresses.
    for name in ["a", "d"] {
        svcs.delete(name, &DeleteParams::default()).await?;
        ctx.forget(&ServiceKey::new(APP_NS, name));
    }
    expect("v4", want(2, 0, 2, 0)).await?;
    expect("spare", want(0, 0, 254, 0)).await?;

    // A pool re-created under the same name (empty status) gets its status
    // again when the configuration that follows applies.
    pools.delete("spare", &DeleteParams::default()).await?;
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "spare", "namespace": NS},
        "spec": {"addresses": ["10.9.1.0/24"]},
    }))?;
    wait_until("IPAddressPool re-created", Duration::from_secs(10), || {
        let (pools, obj) = (pools.clone(), obj.clone());
        async move { Ok(pools.create(&PostParams::default(), &obj).await.ok()) }
    })
    .await?;
    ensure!(status("spare").await?.is_null());
    ctx.set_pools_from_crs(true);
    expect("spare", want(0, 0, 254, 0)).await?;
    expect("v4", want(2, 0, 2, 0)).await?;
    task.abort();
    counter.abort();

    // The Namespace watch (metadata only) keeps the label table.
    let (tx, mut listed) = tokio::sync::watch::channel(false);
    let ns_task = tokio::spawn(namespaces::watch(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        ctx.clone(),
        tx,
    ));
    tokio::time::timeout(Duration::from_secs(10), listed.wait_for(|l| *l)).await??;
    ensure!(ctx.namespaces().get(APP_NS).is_empty());
    nss.patch(
        APP_NS,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"env": "prod"}}})),
    )
    .await?;
    wait_until("namespace labels seen", Duration::from_secs(10), || {
        let ctx = ctx.clone();
        async move {
            Ok(
                (ctx.namespaces().get(APP_NS).get("env").map(String::as_str) == Some("prod"))
                    .then_some(()),
            )
        }
    })
    .await?;
    // The facts of a Service carry them.
    let f = ctx.facts(&svcs.get("b").await?).context("facts")?;
    ensure!(
        f.request
            .unwrap()
            .namespace_labels
            .get("env")
            .map(String::as_str)
            == Some("prod")
    );
    ns_task.abort();
    Ok(())
}
