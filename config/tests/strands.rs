//! `Config::strands` and its message: which assigned IPs a new configuration
//! would take away (the controller and the speakers reject such a config, as
//! MetalLB does).

use ferrolb_config::{Config, stranded_message};

#[test]
fn a_config_strands_the_ips_it_no_longer_holds() {
    let current = Config::parse(
        "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [10.0.0.0/24, 2001:db8::/120]\n",
    )
    .unwrap();
    let next = Config::parse(
        "address-pools:\n- name: a\n  protocol: bgp\n  avoid-buggy-ips: true\n  addresses: [10.0.0.0/25, 2001:db8::/120]\n",
    )
    .unwrap();
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    let held = [
        ("ns/zero", vec![ip("10.0.0.0")]),
        ("ns/low", vec![ip("10.0.0.1")]),
        ("ns/high", vec![ip("10.0.0.200")]),
        ("ns/v6", vec![ip("2001:db8::ff")]),
        // Never in a pool of the current config: not ours to protect.
        ("ns/foreign", vec![ip("192.0.2.1")]),
        ("ns/none", vec![]),
    ];
    let services = || held.iter().map(|(k, ips)| (*k, ips.as_slice()));
    let got = current.strands(&next, services());
    assert_eq!(
        got,
        vec![("ns/zero", ip("10.0.0.0")), ("ns/high", ip("10.0.0.200"))],
        ".0 is avoided now, .200 is outside; IPv6 ::ff is not avoided"
    );
    assert_eq!(
        stranded_message(&got),
        "new config not compatible with assigned IPs: service \"ns/zero\" cannot own \"10.0.0.0\" under new config (and 1 more IPs)"
    );
    assert!(current.strands(&current, services()).is_empty());
    // A renamed pool, or the same addresses split over two pools, strand nothing.
    for moved in [
        "address-pools:\n- name: renamed\n  protocol: bgp\n  addresses: [10.0.0.0/23, 2001:db8::/64]\n",
        "address-pools:\n- name: one\n  protocol: bgp\n  addresses: [10.0.0.0-10.0.0.99]\n- name: two\n  protocol: bgp\n  addresses: [10.0.0.100-10.0.0.255, 2001:db8::/120]\n",
    ] {
        let moved = Config::parse(moved).unwrap();
        assert!(current.strands(&moved, services()).is_empty(), "{moved:?}");
    }
    assert!(
        next.strands(&current, services()).is_empty(),
        "growing strands nothing"
    );
}
