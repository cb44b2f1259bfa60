//! The controller's `/metrics`: MetalLB's names, computed at scrape time from
//! the core.

use std::sync::Arc;

use ferrolb_ops::metrics::{ConfigGauges, Metrics, ScrapeCollectorBuilder};

use crate::reconcile::Context;

/// Registers the controller's metrics in `registry`.
pub fn register(metrics: &mut Metrics, ctx: Arc<Context>) -> Result<(), ferrolb_ops::Error> {
    let mut b = ScrapeCollectorBuilder::new();
    let total = b.gauge(
        "metallb_allocator_addresses_total",
        "Number of usable IP addresses, per pool",
        &["pool"],
    )?;
    let total_v4 = b.gauge(
        "metallb_allocator_ipv4_addresses_total",
        "Number of usable IPV4 addresses, per pool",
        &["pool"],
    )?;
    let total_v6 = b.gauge(
        "metallb_allocator_ipv6_addresses_total",
        "Number of usable IPV6 addresses, per pool",
        &["pool"],
    )?;
    let in_use = b.gauge(
        "metallb_allocator_addresses_in_use_total",
        "Number of IP addresses in use, per pool",
        &["pool"],
    )?;
    let in_use_v4 = b.gauge(
        "metallb_allocator_ipv4_addresses_in_use_total",
        "Number of IPV4 addresses in use, per pool",
        &["pool"],
    )?;
    let in_use_v6 = b.gauge(
        "metallb_allocator_ipv6_addresses_in_use_total",
        "Number of IPV6 addresses in use, per pool",
        &["pool"],
    )?;
    let services = b.gauge(
        "metallb_allocator_services_allocated_total",
        "Number of services allocated, per pool",
        &["pool"],
    )?;
    let config = ConfigGauges::declare(&mut b)?;
    let config_errors = b.counter(
        "ferrolb_config_errors_total",
        "Configurations rejected (invalid, missing, or taking assigned IPs away)",
        &[],
    )?;
    let c = ctx.clone();
    let collector = b.build(move |out| {
        let core = c.core();
        for p in core.pool_stats() {
            let pool = [p.name.as_str()];
            out.add(total, &pool, p.total as f64);
            out.add(total_v4, &pool, p.total_v4 as f64);
            out.add(total_v6, &pool, p.total_v6 as f64);
            out.add(in_use, &pool, p.in_use as f64);
            out.add(in_use_v4, &pool, p.in_use_v4 as f64);
            out.add(in_use_v6, &pool, p.in_use_v6 as f64);
            out.add(services, &pool, p.services as f64);
        }
        config.add(out, core.gate().loaded(), core.gate().stale());
        out.add(config_errors, &[] as &[&str], core.config_rejections as f64);
    });
    let registry = metrics.registry();
    registry.register(Box::new(ctx.updates.clone()))?;
    registry.register(Box::new(ctx.update_errors.clone()))?;
    ctx.events().register(registry)?;
    metrics.add(collector)
}
