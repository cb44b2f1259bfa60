//! BGP mode: announce the addresses while healthy, withdraw them when not.

use anyhow::{Result, bail};
use ferrolb_bgp::adj_out::Routes;
use ferrolb_bgp::bfd::BfdEndpoint;
use ferrolb_bgp::driver::{self, PeerConfig};
use ferrolb_bgp::fsm::State;
use ferrolb_ops::metrics::Metrics;

use super::{Gauges, RunArgs, addr, list, say};

/// Runs until SIGINT/SIGTERM.
pub(super) async fn run(run: &RunArgs, cfg: PeerConfig, routes: Routes) -> Result<()> {
    let metrics = Metrics::new();
    let gauges = Gauges::new(
        &metrics,
        "ferrolb_vip_announcing",
        "1 while the addresses are announced to the BGP peer",
    )?;
    let _server = super::serve_metrics(run, metrics).await?;
    let addrs = run.addresses.clone();
    let names = list(&addrs);
    let mut healthy = super::spawn_health(run, gauges.clone())?;
    let shutdown = ferrolb_ops::signal::shutdown();
    tokio::pin!(shutdown);

    let peer = cfg.peer;
    tracing::info!(%peer, addresses = %names, "starting BGP session");
    let bfd = cfg.bfd.is_some();
    let endpoint = BfdEndpoint::new();
    let handle = driver::spawn_with_bfd(cfg, &endpoint);
    if bfd && let Some(e) = &handle.status().borrow().bfd_error {
        bail!("cannot start the BFD session: {e}");
    }
    if !run.no_local_address {
        for a in &addrs {
            addr::add("lo", *a)?;
        }
        tracing::info!(addresses = %names, "addresses on lo");
    }
    let mut status = handle.status();
    let mut announcing = false;
    let mut printed_generation = 0;
    loop {
        let want = *healthy.borrow_and_update();
        if want != announcing {
            announcing = want;
            handle.set(if want { routes.clone() } else { Routes::new() });
            gauges.set_active(want);
            if want {
                tracing::info!(addresses = %names, "announcing");
                say(format_args!("announcing addresses={names}"));
            } else {
                tracing::warn!(addresses = %names, "withdrawn");
                say(format_args!("withdrawn addresses={names}"));
            }
        }
        {
            let s = status.borrow_and_update();
            if s.state == State::Established && s.established_generation > printed_generation {
                printed_generation = s.established_generation;
                say(format_args!(
                    "established peer={peer} generation={printed_generation}"
                ));
            }
        }
        tokio::select! {
            r = healthy.changed() => if r.is_err() { bail!("the health checks stopped") },
            r = status.changed() => if r.is_err() { bail!("the BGP session task ended unexpectedly") },
            () = &mut shutdown => break,
        }
    }
    handle
        .shutdown(Some("ferrolb vip: shutting down".to_string()))
        .await;
    if announcing {
        say(format_args!("withdrawn addresses={names}"));
    }
    if !run.no_local_address {
        for a in &addrs {
            if let Err(e) = addr::remove("lo", *a) {
                tracing::warn!(error = %e, "removing the address from lo");
            }
        }
    }
    Ok(())
}
