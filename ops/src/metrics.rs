//! Prometheus metrics in text format 0.0.4, as Go's `client_golang` writes it
//! (so MetalLB's metric names come out exactly, counters without `_total`
//! included), on the `prometheus` crate without protobuf.
//!
//! Two ways to expose a metric:
//! - a metric object kept up to date by the caller ([`IntCounter`], [`IntGauge`],
//!   ... registered in a [`Registry`]);
//! - a [`ScrapeCollector`]: metrics computed at scrape time from the caller's
//!   own state, for label sets that come and go (announced Services, BGP
//!   sessions) without keeping a metric object per label set.
//!
//! Values are written as the `prometheus` crate writes them (Rust's shortest
//! float form): identical to Go's for integers below 10^21 and for ordinary
//! fractions; Go writes `1e+21`, `1e-07`, `+Inf` where this writes
//! `1000000000000000000000`, `0.0000001`, `inf`.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

pub use prometheus;
pub use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::Error;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry's metrics in text format 0.0.4: families sorted by name,
/// samples by label values, `# HELP` and `# TYPE` lines, label values escaped
/// (`\\`, `\"`, `\n`). A family with no samples is left out (as Go does).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "rendering metrics");
    }
    out
}

/// The type of a [`ScrapeCollector`] family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up (named as given: no `_total` is added).
    Counter,
}

/// A family declared on a [`ScrapeCollectorBuilder`], used to add samples to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyId(usize);

/// One family's fixed description.
struct Family {
    desc: Desc,
    kind: Kind,
    /// Indices into the label names, in name order (Go writes labels sorted).
    order: Vec<usize>,
}

/// Declares the families of a [`ScrapeCollector`].
#[derive(Default)]
pub struct ScrapeCollectorBuilder {
    families: Vec<Family>,
}

impl ScrapeCollectorBuilder {
    /// A builder with no families.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a gauge family `name` with these label names.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> Result<FamilyId, Error> {
        self.family(Kind::Gauge, name, help, labels)
    }

    /// Declares a counter family `name` (written exactly so) with these label names.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> Result<FamilyId, Error> {
        self.family(Kind::Counter, name, help, labels)
    }

    /// Declares a family; errors on an invalid metric or label name, an empty
    /// help text, or a name declared twice.
    pub fn family(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<FamilyId, Error> {
        if self.families.iter().any(|f| f.desc.fq_name == name) {
            return Err(prometheus::Error::Msg(format!("family {name} declared twice")).into());
        }
        let desc = Desc::new(
            name.to_string(),
            help.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )?;
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by_key(|&i| labels[i]);
        self.families.push(Family { desc, kind, order });
        Ok(FamilyId(self.families.len() - 1))
    }

    /// The collector: `collect` is called at each scrape and adds the samples
    /// of the moment through [`Samples::add`].
    pub fn build<F>(self, collect: F) -> ScrapeCollector
    where
        F: Fn(&mut Samples<'_>) + Send + Sync + 'static,
    {
        ScrapeCollector {
            families: self.families,
            collect: Arc::new(collect),
        }
    }
}

type CollectFn = dyn Fn(&mut Samples<'_>) + Send + Sync;

/// A [`Collector`] of fixed families whose samples a closure computes at
/// scrape time from the caller's state; register it in a [`Registry`]
/// (`registry.register(Box::new(collector))`).
pub struct ScrapeCollector {
    families: Vec<Family>,
    collect: Arc<CollectFn>,
}

impl Collector for ScrapeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.families.iter().map(|f| &f.desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut samples = Samples {
            families: &self.families,
            metrics: self.families.iter().map(|_| Vec::new()).collect(),
        };
        (self.collect)(&mut samples);
        self.families
            .iter()
            .zip(samples.metrics)
            .filter(|(_, m)| !m.is_empty())
            .map(|(f, metrics)| {
                let mut mf = MetricFamily::default();
                mf.set_name(f.desc.fq_name.clone());
                mf.set_help(f.desc.help.clone());
                mf.set_field_type(match f.kind {
                    Kind::Gauge => MetricType::GAUGE,
                    Kind::Counter => MetricType::COUNTER,
                });
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

/// The samples of one scrape, filled by a [`ScrapeCollector`]'s closure.
pub struct Samples<'a> {
    families: &'a [Family],
    metrics: Vec<Vec<proto::Metric>>,
}

impl Samples<'_> {
    /// Adds a sample to `family`, with values for its labels in the order they
    /// were declared. A sample with the wrong number of label values (or a
    /// family of another collector) is left out and logged.
    pub fn add<V: AsRef<str>>(&mut self, family: FamilyId, label_values: &[V], value: f64) {
        let Some(f) = self.families.get(family.0) else {
            tracing::warn!(family = family.0, "sample for an unknown metric family");
            return;
        };
        if label_values.len() != f.desc.variable_labels.len() {
            tracing::warn!(
                metric = %f.desc.fq_name,
                expected = f.desc.variable_labels.len(),
                got = label_values.len(),
                "sample with the wrong number of labels left out"
            );
            return;
        }
        let labels = f
            .order
            .iter()
            .map(|&i| {
                let mut lp = proto::LabelPair::default();
                lp.set_name(f.desc.variable_labels[i].clone());
                lp.set_value(label_values[i].as_ref().to_string());
                lp
            })
            .collect();
        let mut m = proto::Metric::from_label(labels);
        match f.kind {
            Kind::Gauge => {
                let mut g = proto::Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
            Kind::Counter => {
                let mut c = proto::Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
        }
        self.metrics[family.0].push(m);
    }
}

/// The two gauges both binaries show about their configuration, under
/// MetalLB's names: `metallb_k8s_client_config_loaded_bool` (one was ever
/// loaded) and `metallb_k8s_client_config_stale_bool` (running on an older
/// one because the latest was rejected).
#[derive(Debug, Clone, Copy)]
pub struct ConfigGauges {
    loaded: FamilyId,
    stale: FamilyId,
}

impl ConfigGauges {
    /// Declares both families on `b`.
    pub fn declare(b: &mut ScrapeCollectorBuilder) -> Result<Self, Error> {
        Ok(ConfigGauges {
            loaded: b.gauge(
                "metallb_k8s_client_config_loaded_bool",
                "1 if the MetalLB configuration was successfully loaded at least once.",
                &[],
            )?,
            stale: b.gauge(
                "metallb_k8s_client_config_stale_bool",
                "1 if running on a stale configuration, because the latest config failed to load.",
                &[],
            )?,
        })
    }

    /// Adds the samples of the moment.
    pub fn add(&self, out: &mut Samples<'_>, loaded: bool, stale: bool) {
        out.add(self.loaded, &[] as &[&str], f64::from(u8::from(loaded)));
        out.add(self.stale, &[] as &[&str], f64::from(u8::from(stale)));
    }
}
