//! Text format 0.0.4 exactly as client_golang writes it: HELP/TYPE lines,
//! counters named with and without `_total`, escaping, ordering.

use std::sync::{Arc, Mutex};

use ferrolb_ops::metrics::{IntCounter, IntGauge, Kind, Metrics, ScrapeCollectorBuilder, render};

#[test]
fn gauge_and_counters_exact_text() {
    let mut m = Metrics::new();
    let loaded = IntGauge::new(
        "metallb_k8s_client_config_loaded_bool",
        "1 if the MetalLB configuration was successfully loaded at least once",
    )
    .unwrap();
    loaded.set(1);
    m.registry().register(Box::new(loaded)).unwrap();

    let mut b = ScrapeCollectorBuilder::new();
    let opens = b
        .counter(
            "metallb_bgp_opens_sent",
            "Number of BGP open messages sent",
            &["peer"],
        )
        .unwrap();
    let updates = b
        .counter(
            "metallb_bgp_updates_total",
            "Number of BGP UPDATE messages sent",
            &["peer"],
        )
        .unwrap();
    m.add(b.build(move |s| {
        s.add(opens, &["172.17.0.1:179"], 3.0);
        s.add(updates, &["172.17.0.1:179"], 12.0);
    }))
    .unwrap();

    assert_eq!(
        m.render(),
        "# HELP metallb_bgp_opens_sent Number of BGP open messages sent\n\
         # TYPE metallb_bgp_opens_sent counter\n\
         metallb_bgp_opens_sent{peer=\"172.17.0.1:179\"} 3\n\
         # HELP metallb_bgp_updates_total Number of BGP UPDATE messages sent\n\
         # TYPE metallb_bgp_updates_total counter\n\
         metallb_bgp_updates_total{peer=\"172.17.0.1:179\"} 12\n\
         # HELP metallb_k8s_client_config_loaded_bool 1 if the MetalLB configuration was successfully loaded at least once\n\
         # TYPE metallb_k8s_client_config_loaded_bool gauge\n\
         metallb_k8s_client_config_loaded_bool 1\n"
    );
}

#[test]
fn plain_counter_keeps_its_name() {
    let m = Metrics::new();
    let c = IntCounter::new(
        "metallb_bfd_control_packet_input",
        "Number of received BFD control packets",
    )
    .unwrap();
    c.inc_by(7);
    m.registry().register(Box::new(c)).unwrap();
    assert_eq!(
        m.render(),
        "# HELP metallb_bfd_control_packet_input Number of received BFD control packets\n\
         # TYPE metallb_bfd_control_packet_input counter\n\
         metallb_bfd_control_packet_input 7\n"
    );
    assert_eq!(render(m.registry()), m.render(), "registry-only rendering");
}

#[test]
fn label_values_escaped_and_help_escaped() {
    let mut m = Metrics::new();
    let mut b = ScrapeCollectorBuilder::new();
    let up = b
        .gauge("x_state", "help with \\ and\nnewline", &["name"])
        .unwrap();
    m.add(b.build(move |s| {
        s.add(up, &["a\"b\\c\nd"], 1.0);
    }))
    .unwrap();
    assert_eq!(
        m.render(),
        "# HELP x_state help with \\\\ and\\nnewline\n\
         # TYPE x_state gauge\n\
         x_state{name=\"a\\\"b\\\\c\\nd\"} 1\n"
    );
}

/// Families by name and labels by name (as Go), even when declared and added
/// in another order; scrape-time samples in the order they were added (written
/// straight out, never gathered to be sorted); families without samples left out.
#[test]
fn families_sorted_samples_as_added() {
    let mut m = Metrics::new();
    let state: Arc<Mutex<Vec<(String, String, f64)>>> = Arc::new(Mutex::new(vec![
        ("default/web".into(), "172.17.254.2".into(), 1.0),
        ("default/api".into(), "172.17.254.1".into(), 1.0),
    ]));
    let mut b = ScrapeCollectorBuilder::new();
    let announced = b
        .family(
            Kind::Gauge,
            "metallb_speaker_announced",
            "IP announced by this speaker",
            &["service", "protocol", "node", "ip"],
        )
        .unwrap();
    let empty = b.gauge("a_never_sampled", "no samples", &[]).unwrap();
    let seen = state.clone();
    m.add(b.build(move |s| {
        let _ = empty;
        for (svc, ip, v) in seen.lock().unwrap().iter() {
            s.add(announced, &[svc.as_str(), "bgp", "n1", ip.as_str()], *v);
        }
    }))
    .unwrap();
    let g = IntGauge::new("b_gauge", "between").unwrap();
    m.registry().register(Box::new(g)).unwrap();

    assert_eq!(
        m.render(),
        "# HELP b_gauge between\n\
         # TYPE b_gauge gauge\n\
         b_gauge 0\n\
         # HELP metallb_speaker_announced IP announced by this speaker\n\
         # TYPE metallb_speaker_announced gauge\n\
         metallb_speaker_announced{ip=\"172.17.254.2\",node=\"n1\",protocol=\"bgp\",service=\"default/web\"} 1\n\
         metallb_speaker_announced{ip=\"172.17.254.1\",node=\"n1\",protocol=\"bgp\",service=\"default/api\"} 1\n"
    );

    // Computed at scrape time: the next scrape shows the state of the moment.
    state
        .lock()
        .unwrap()
        .retain(|(svc, _, _)| svc == "default/web");
    let text = m.render();
    assert!(!text.contains("default/api"), "{text}");
    assert!(text.contains("service=\"default/web\"} 1\n"), "{text}");
}

#[test]
fn wrong_label_count_left_out() {
    let mut m = Metrics::new();
    let mut b = ScrapeCollectorBuilder::new();
    let f = b.gauge("x_up", "up", &["peer"]).unwrap();
    m.add(b.build(move |s| {
        s.add(f, &["p1", "extra"], 1.0);
        s.add(f, &["p2"], 0.0);
    }))
    .unwrap();
    assert_eq!(
        m.render(),
        "# HELP x_up up\n# TYPE x_up gauge\nx_up{peer=\"p2\"} 0\n"
    );
}

#[test]
fn invalid_declarations_refused() {
    let mut b = ScrapeCollectorBuilder::new();
    assert!(b.gauge("bad-name", "h", &[]).is_err());
    assert!(b.gauge("ok_name", "", &[]).is_err());
    assert!(b.gauge("ok_name", "h", &["bad-label"]).is_err());
    assert!(b.gauge("ok_name", "h", &["peer"]).is_ok());
    assert!(
        b.counter("ok_name", "h", &["peer"]).is_err(),
        "declared twice"
    );
}

#[test]
fn fractional_values() {
    let mut m = Metrics::new();
    let mut b = ScrapeCollectorBuilder::new();
    let f = b.gauge("x_ratio", "ratio", &[]).unwrap();
    m.add(b.build(move |s| s.add(f, &[] as &[&str], 0.25)))
        .unwrap();
    assert_eq!(
        m.render(),
        "# HELP x_ratio ratio\n# TYPE x_ratio gauge\nx_ratio 0.25\n"
    );
}

/// A family name taken by a registered metric, or by another collector, is refused.
#[test]
fn a_name_is_registered_once() {
    let mut m = Metrics::new();
    let c = IntCounter::new("x_total", "x").unwrap();
    m.registry().register(Box::new(c)).unwrap();
    let mut b = ScrapeCollectorBuilder::new();
    b.counter("x_total", "again", &[]).unwrap();
    assert!(m.add(b.build(|_| {})).is_err());
    let mut b = ScrapeCollectorBuilder::new();
    b.gauge("y", "y", &[]).unwrap();
    m.add(b.build(|_| {})).unwrap();
    let mut b = ScrapeCollectorBuilder::new();
    b.gauge("y", "y again", &[]).unwrap();
    assert!(m.add(b.build(|_| {})).is_err());
}

/// Only the family being written is computed when the closure asks.
#[test]
fn a_closure_can_skip_families_not_being_written() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut m = Metrics::new();
    let mut b = ScrapeCollectorBuilder::new();
    let a = b.gauge("a_x", "a", &[]).unwrap();
    let big = b.gauge("b_x", "b", &["i"]).unwrap();
    let seen = calls.clone();
    m.add(b.build(move |s| {
        s.add(a, &[] as &[&str], 1.0);
        if s.wants(big) {
            for i in 0..3 {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s.add(big, &[i.to_string()], 1.0);
            }
        }
    }))
    .unwrap();
    let text = m.render();
    assert_eq!(text.lines().filter(|l| l.starts_with("b_x{")).count(), 3);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "computed once"
    );
}
