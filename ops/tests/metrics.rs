//! Text format 0.0.4 exactly as client_golang writes it: HELP/TYPE lines,
//! counters named with and without `_total`, escaping, ordering.

use std::sync::{Arc, Mutex};

use ferrolb_ops::metrics::{IntCounter, IntGauge, Kind, Registry, ScrapeCollectorBuilder, render};

#[test]
fn gauge_and_counters_exact_text() {
    let r = Registry::new();
    let loaded = IntGauge::new(
        "metallb_k8s_client_config_loaded_bool",
        "1 if the MetalLB configuration was successfully loaded at least once",
    )
    .unwrap();
    loaded.set(1);
    r.register(Box::new(loaded)).unwrap();

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
    r.register(Box::new(b.build(move |s| {
        s.add(opens, &["172.17.0.1:179"], 3.0);
        s.add(updates, &["172.17.0.1:179"], 12.0);
    })))
    .unwrap();

    assert_eq!(
        render(&r),
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
    let r = Registry::new();
    let c = IntCounter::new(
        "metallb_bfd_control_packet_input",
        "Number of received BFD control packets",
    )
    .unwrap();
    c.inc_by(7);
    r.register(Box::new(c)).unwrap();
    assert_eq!(
        render(&r),
        "# HELP metallb_bfd_control_packet_input Number of received BFD control packets\n\
         # TYPE metallb_bfd_control_packet_input counter\n\
         metallb_bfd_control_packet_input 7\n"
    );
}

#[test]
fn label_values_escaped_and_help_escaped() {
    let r = Registry::new();
    let mut b = ScrapeCollectorBuilder::new();
    let up = b
        .gauge("x_state", "help with \\ and\nnewline", &["name"])
        .unwrap();
    r.register(Box::new(b.build(move |s| {
        s.add(up, &["a\"b\\c\nd"], 1.0);
    })))
    .unwrap();
    assert_eq!(
        render(&r),
        "# HELP x_state help with \\\\ and\\nnewline\n\
         # TYPE x_state gauge\n\
         x_state{name=\"a\\\"b\\\\c\\nd\"} 1\n"
    );
}

/// Families by name, samples by label values, labels by name (as Go), even
/// when declared and added in another order; families without samples left out.
#[test]
fn sorted_as_the_encoder_does() {
    let r = Registry::new();
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
    r.register(Box::new(b.build(move |s| {
        let _ = empty;
        for (svc, ip, v) in seen.lock().unwrap().iter() {
            s.add(announced, &[svc.as_str(), "bgp", "n1", ip.as_str()], *v);
        }
    })))
    .unwrap();
    let g = IntGauge::new("b_gauge", "between").unwrap();
    r.register(Box::new(g)).unwrap();

    assert_eq!(
        render(&r),
        "# HELP b_gauge between\n\
         # TYPE b_gauge gauge\n\
         b_gauge 0\n\
         # HELP metallb_speaker_announced IP announced by this speaker\n\
         # TYPE metallb_speaker_announced gauge\n\
         metallb_speaker_announced{ip=\"172.17.254.1\",node=\"n1\",protocol=\"bgp\",service=\"default/api\"} 1\n\
         metallb_speaker_announced{ip=\"172.17.254.2\",node=\"n1\",protocol=\"bgp\",service=\"default/web\"} 1\n"
    );

    // Computed at scrape time: the next scrape shows the state of the moment.
    state
        .lock()
        .unwrap()
        .retain(|(svc, _, _)| svc == "default/web");
    let text = render(&r);
    assert!(!text.contains("default/api"), "{text}");
    assert!(text.contains("service=\"default/web\"} 1\n"), "{text}");
}

#[test]
fn wrong_label_count_left_out() {
    let r = Registry::new();
    let mut b = ScrapeCollectorBuilder::new();
    let f = b.gauge("x_up", "up", &["peer"]).unwrap();
    r.register(Box::new(b.build(move |s| {
        s.add(f, &["p1", "extra"], 1.0);
        s.add(f, &["p2"], 0.0);
    })))
    .unwrap();
    assert_eq!(
        render(&r),
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
    let r = Registry::new();
    let mut b = ScrapeCollectorBuilder::new();
    let f = b.gauge("x_ratio", "ratio", &[]).unwrap();
    r.register(Box::new(b.build(move |s| s.add(f, &[] as &[&str], 0.25))))
        .unwrap();
    assert_eq!(
        render(&r),
        "# HELP x_ratio ratio\n# TYPE x_ratio gauge\nx_ratio 0.25\n"
    );
}
