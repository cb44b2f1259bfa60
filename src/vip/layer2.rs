//! Layer 2 mode: the healthy node holding the Lease holds the addresses.
//!
//! A node campaigns only while its local API server is healthy; it gives the
//! Lease up when that turns unhealthy, and loses it (and drops the addresses)
//! when no renewal succeeded within the renew deadline, which is shorter than
//! the lease duration: the old holder has let go before anyone may take over,
//! so there are never two holders while the Lease is reachable. At start the
//! addresses are taken off the interface (a predecessor may have left them).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use ferrolb_ops::lease::{LeaderElector, Timing};
use ferrolb_ops::metrics::Metrics;
use k8s_openapi::api::coordination::v1::Lease;
use tokio::sync::watch;

use super::{Gauges, RunArgs, addr, list, say};

/// Runs until SIGINT/SIGTERM.
pub(super) async fn run(run: &RunArgs, interface: String, timing: Timing) -> Result<()> {
    let metrics = Metrics::new();
    let gauges = Gauges::new(
        &metrics,
        "ferrolb_vip_holder",
        "1 while this node holds the Lease and the addresses",
    )?;
    let _server = super::serve_metrics(run, metrics).await?;
    let addrs = run.addresses.clone();
    let names = list(&addrs);
    let identity = match &run.node_name {
        Some(n) => n.clone(),
        None => hostname()?,
    };
    // Not the holder yet: whatever a predecessor left goes.
    for a in &addrs {
        addr::remove(&interface, *a)?;
    }
    let client = client(run, timing).await?;
    let api: kube::Api<Lease> = kube::Api::namespaced(client, &run.lease_namespace);
    let mut elector = LeaderElector::new(api, &run.lease_name, &identity, timing)?;
    tracing::info!(lease = %run.lease_name, namespace = %run.lease_namespace, %identity,
        interface = %interface, addresses = %names, ?timing, "layer 2 mode");
    let mut healthy = super::spawn_health(run, gauges.clone())?;
    let shutdown = ferrolb_ops::signal::shutdown();
    tokio::pin!(shutdown);

    loop {
        // Campaign only while healthy.
        if !*healthy.borrow_and_update() {
            tokio::select! {
                r = healthy.changed() => { r.context("the health checks stopped")?; continue }
                () = &mut shutdown => return Ok(()),
            }
        }
        tokio::select! {
            () = elector.acquire() => {}
            r = wait_for(&mut healthy, false) => { r?; continue }
            () = &mut shutdown => return Ok(()),
        }
        // Holder.
        let taken = take(&interface, &addrs).await;
        if let Err(e) = &taken {
            tracing::error!(error = %e, "cannot hold the addresses; giving the Lease up");
        } else {
            gauges.set_active(true);
            say(format_args!(
                "holder addresses={names} interface={interface}"
            ));
        }
        // `lost`: the elector already let go (taken over, cleared, or no
        // renewal in time); otherwise we clear the Lease so another node takes
        // over without waiting for it to expire.
        let (reason, lost, stop) = if taken.is_err() {
            ("cannot add the addresses".to_string(), false, false)
        } else {
            tokio::select! {
                why = elector.hold() => (why.to_string(), true, false),
                r = wait_for(&mut healthy, false) => { r?; ("unhealthy".to_string(), false, false) }
                () = &mut shutdown => ("shutting down".to_string(), false, true),
            }
        };
        // Drop the addresses first, then tell the others.
        for a in &addrs {
            if let Err(e) = addr::remove(&interface, *a) {
                tracing::error!(error = %e, "removing the address");
            }
        }
        if taken.is_ok() {
            gauges.set_active(false);
            tracing::warn!(addresses = %names, %reason, "released");
            say(format_args!("released addresses={names} reason={reason:?}"));
        }
        if !lost {
            let bound = timing.retry_period.max(Duration::from_secs(1));
            match tokio::time::timeout(bound, elector.release()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "releasing the Lease"),
                Err(_) => tracing::warn!("releasing the Lease timed out"),
            }
        }
        if stop {
            return Ok(());
        }
        if taken.is_err() {
            tokio::time::sleep(timing.lease_duration).await;
        }
    }
}

/// A client of the local API server: the kubeconfig's credentials, its
/// server unless `--api-server`, and request timeouts within the renew
/// deadline (a black-holed server must not stall the election).
async fn client(run: &RunArgs, timing: Timing) -> Result<kube::Client> {
    let path = &run.kubeconfig;
    let file = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("kubeconfig {}", path.display()))?;
    if let Some(url) = &run.api_server {
        config.cluster_url = url
            .parse()
            .with_context(|| format!("--api-server {url} is not a URL"))?;
    }
    if let Some(name) = &run.api_server_tls_name {
        config.tls_server_name = Some(name.clone());
    }
    config.connect_timeout = Some(timing.retry_period.max(Duration::from_secs(1)));
    config.read_timeout = Some(timing.renew_deadline);
    config.write_timeout = Some(timing.renew_deadline);
    tracing::info!(server = %config.cluster_url, "API server for the Lease");
    Ok(kube::Client::try_from(config)?)
}

/// Resolves when the health state becomes `want`.
async fn wait_for(rx: &mut watch::Receiver<bool>, want: bool) -> Result<()> {
    rx.wait_for(|h| *h == want)
        .await
        .context("the health checks stopped")?;
    Ok(())
}

/// Adds the addresses to the interface and announces them (gratuitous ARP
/// for IPv4, unsolicited NA for IPv6) so that neighbours switch to this
/// node's MAC at once instead of when their cache entry expires. A failed
/// announcement is logged, not fatal: the address still answers ARP.
async fn take(interface: &str, addrs: &[IpAddr]) -> Result<()> {
    for a in addrs {
        addr::add(interface, *a)?;
    }
    for a in addrs {
        match ferrolb_l2::send_gratuitous(interface, *a).await {
            Ok(()) => tracing::info!(%interface, address = %a, "gratuitous ARP/NA sent"),
            Err(e) => tracing::warn!(%interface, address = %a, error = %e, "gratuitous ARP/NA"),
        }
    }
    Ok(())
}

/// The kernel's host name.
fn hostname() -> Result<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the hostname")?;
    Ok(h.trim().to_string())
}
