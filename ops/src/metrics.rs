//! Prometheus metrics in text format 0.0.4, as Go's `client_golang` writes it
//! (so MetalLB's metric names come out exactly, counters without `_total`
//! included), on the `prometheus` crate without protobuf.
//!
//! Two ways to expose a metric:
//! - a metric object kept up to date by the caller ([`IntCounter`], [`IntGauge`],
//!   ... registered in a [`Registry`]);
//! - a [`ScrapeCollector`]: metrics computed at scrape time from the caller's
//!   own state, for label sets that come and go (announced Services, BGP
//!   sessions) without keeping a metric object per label set, and written
//!   straight out as text (no metric object per sample even while scraping).
//!
//! [`Metrics`] holds both and renders them together.
//!
//! Values are written as the `prometheus` crate writes them (Rust's shortest
//! float form): identical to Go's for integers below 10^21 and for ordinary
//! fractions; Go writes `1e+21`, `1e-07`, `+Inf` where this writes
//! `1000000000000000000000`, `0.0000001`, `inf`.

use std::fmt::Write as _;

use prometheus::core::Desc;
use prometheus::proto::MetricFamily;

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

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// A family declared on a [`ScrapeCollectorBuilder`], used to add samples to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyId(usize);

/// One family's fixed description.
struct Family {
    /// Validated by the `prometheus` crate (metric and label names, help).
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
        let mut by_name: Vec<usize> = (0..self.families.len()).collect();
        by_name.sort_by(|&a, &b| {
            self.families[a]
                .desc
                .fq_name
                .cmp(&self.families[b].desc.fq_name)
        });
        ScrapeCollector {
            families: self.families,
            by_name,
            collect: Box::new(collect),
        }
    }
}

type CollectFn = dyn Fn(&mut Samples<'_>) + Send + Sync;

/// Families whose samples a closure computes at scrape time from the caller's
/// state, written straight out as text: a scrape needs the text and nothing
/// per sample besides (a speaker announcing 10k Services writes its 10k
/// `metallb_speaker_announced` lines without building 10k metric objects).
/// Add it to a [`Metrics`].
pub struct ScrapeCollector {
    families: Vec<Family>,
    /// Family indices in name order.
    by_name: Vec<usize>,
    collect: Box<CollectFn>,
}

impl ScrapeCollector {
    fn names(&self) -> impl Iterator<Item = &str> {
        self.families.iter().map(|f| f.desc.fq_name.as_str())
    }

    /// Writes family `index` (header and samples; nothing when it has no
    /// samples). The closure runs once per family written, and only that
    /// family's samples are kept ([`Samples::wants`] lets it skip the rest).
    fn write_family(&self, index: usize, out: &mut String) {
        let mut samples = Samples {
            family: &self.families[index],
            want: index,
            header: false,
            out,
        };
        (self.collect)(&mut samples);
    }
}

/// The samples of one scrape, written by a [`ScrapeCollector`]'s closure.
pub struct Samples<'a> {
    family: &'a Family,
    want: usize,
    header: bool,
    out: &'a mut String,
}

impl Samples<'_> {
    /// Whether samples of `family` are being written now (the closure may skip
    /// computing the others).
    pub fn wants(&self, family: FamilyId) -> bool {
        family.0 == self.want
    }

    /// Adds a sample to `family`, with values for its labels in the order they
    /// were declared. A sample with the wrong number of label values is left
    /// out and logged.
    pub fn add<V: AsRef<str>>(&mut self, family: FamilyId, label_values: &[V], value: f64) {
        if family.0 != self.want {
            return;
        }
        let f = self.family;
        let name = f.desc.fq_name.as_str();
        if label_values.len() != f.desc.variable_labels.len() {
            tracing::warn!(
                metric = %name,
                expected = f.desc.variable_labels.len(),
                got = label_values.len(),
                "sample with the wrong number of labels left out"
            );
            return;
        }
        let out = &mut *self.out;
        if !self.header {
            self.header = true;
            let _ = writeln!(out, "# HELP {name} {}", escape(&f.desc.help, false));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
        }
        out.push_str(name);
        for (n, &i) in f.order.iter().enumerate() {
            out.push(if n == 0 { '{' } else { ',' });
            out.push_str(&f.desc.variable_labels[i]);
            out.push_str("=\"");
            out.push_str(&escape(label_values[i].as_ref(), true));
            out.push('"');
        }
        if !f.order.is_empty() {
            out.push('}');
        }
        // As the `prometheus` crate writes values (Rust's shortest form).
        let _ = writeln!(out, " {value}");
    }
}

/// Escapes `\` and newlines (and `"` in label values), as the text format wants.
fn escape(s: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !s.contains(special) {
        return s.into();
    }
    let mut e = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => e.push_str("\\\\"),
            '\n' => e.push_str("\\n"),
            '"' if quote => e.push_str("\\\""),
            c => e.push(c),
        }
    }
    e.into()
}

/// Everything `/metrics` shows: metric objects kept up to date by the caller
/// (registered in [`Metrics::registry`]) and [`ScrapeCollector`]s, rendered
/// together in text format 0.0.4 with families in name order.
#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    scraped: Vec<ScrapeCollector>,
}

impl Metrics {
    /// Nothing registered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry for metric objects ([`IntCounter`], ...).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds families computed at scrape time; errors when a name is already
    /// taken (by the registry's metrics as registered so far, or by another
    /// collector).
    pub fn add(&mut self, c: ScrapeCollector) -> Result<(), Error> {
        let taken: Vec<String> = self
            .registry
            .gather()
            .into_iter()
            .map(|mf| mf.name().to_string())
            .chain(
                self.scraped
                    .iter()
                    .flat_map(|s| s.names().map(str::to_string)),
            )
            .collect();
        if let Some(dup) = c.names().find(|n| taken.iter().any(|t| t == n)) {
            return Err(prometheus::Error::Msg(format!("metric {dup} registered twice")).into());
        }
        self.scraped.push(c);
        Ok(())
    }

    /// Text format 0.0.4: families in name order with `# HELP` and `# TYPE`
    /// lines, label names sorted, values escaped; registry samples sorted by
    /// label values, scrape-time samples in the order their closure adds them;
    /// a family without samples left out (as Go does).
    pub fn render(&self) -> String {
        enum Source<'a> {
            Registry(MetricFamily),
            Scraped(&'a ScrapeCollector, usize),
        }
        let mut families: Vec<(String, Source<'_>)> = self
            .registry
            .gather()
            .into_iter()
            .map(|mf| (mf.name().to_string(), Source::Registry(mf)))
            .collect();
        for c in &self.scraped {
            for &i in &c.by_name {
                families.push((c.families[i].desc.fq_name.clone(), Source::Scraped(c, i)));
            }
        }
        families.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        for (_, source) in families {
            match source {
                Source::Registry(mf) => {
                    if let Err(e) = TextEncoder::new().encode_utf8(&[mf], &mut out) {
                        tracing::warn!(error = %e, "rendering metrics");
                    }
                }
                Source::Scraped(c, i) => c.write_family(i, &mut out),
            }
        }
        out
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
