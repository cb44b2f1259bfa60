//! Advertisements' `serviceSelectors` (custom resources): kept in the model,
//! applied (no warning), with MetalLB's config-time rules.

use std::collections::BTreeMap;

use ferrolb_config::crs::{Resources, Secrets};
use ferrolb_config::{Config, ConfigErrors};

fn doc(kind: &str, name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    let mut r = Resources::new();
    r.add_yaml("s.yaml", text).unwrap();
    Config::from_resources(&r, Secrets::Ignore)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const POOL: &str = "addresses: [10.0.0.0/24]";

#[test]
fn bgp_and_l2_selectors_are_kept_and_not_warned_about() {
    let text = doc("IPAddressPool", "p", POOL)
        + &doc(
            "BGPAdvertisement",
            "b",
            "serviceSelectors:\n- matchLabels: {app: web}\n- matchExpressions:\n  - {key: tier, operator: In, values: [edge]}",
        )
        + &doc(
            "L2Advertisement",
            "l",
            "serviceSelectors:\n- matchExpressions:\n  - {key: l2, operator: Exists}",
        );
    let cfg = load(&text).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let bgp = &cfg.pools[0].advertisements[0];
    assert_eq!(bgp.service_selectors.len(), 2);
    assert!(bgp.selects_service(&labels(&[("app", "web")])));
    assert!(bgp.selects_service(&labels(&[("tier", "edge"), ("app", "db")])));
    assert!(!bgp.selects_service(&labels(&[("app", "db")])));
    assert!(!bgp.selects_service(&labels(&[])));
    let l2 = &cfg.pools[0].l2_advertisements[0];
    assert!(l2.selects_service(&labels(&[("l2", "")])));
    assert!(!l2.selects_service(&labels(&[("app", "web")])));
    assert_eq!(
        cfg.service_label_keys().into_iter().collect::<Vec<_>>(),
        ["app", "l2", "tier"]
    );
}

#[test]
fn no_selectors_select_every_service_and_read_no_label() {
    let text = doc("IPAddressPool", "p", POOL)
        + &doc("BGPAdvertisement", "b", "localPref: 1")
        + &doc("L2Advertisement", "l", "interfaces: [eth0]");
    let cfg = load(&text).unwrap();
    assert!(cfg.service_label_keys().is_empty());
    assert!(cfg.pools[0].advertisements[0].selects_service(&labels(&[])));
    assert!(cfg.pools[0].l2_advertisements[0].selects_service(&labels(&[("x", "y")])));
}

#[test]
fn duplicate_service_selectors_are_refused() {
    for kind in ["BGPAdvertisement", "L2Advertisement"] {
        let text = doc("IPAddressPool", "p", POOL)
            + &doc(
                kind,
                "a",
                "serviceSelectors:\n- matchExpressions:\n  - {key: k, operator: In, values: [p, q]}\n- matchExpressions:\n  - {key: k, operator: In, values: [q, p]}",
            );
        let e = load(&text).unwrap_err().to_string();
        assert!(
            e.contains("spec.serviceSelectors[1]")
                && e.contains("duplicate definition of serviceSelectors"),
            "{kind}: {e}"
        );
    }
}

#[test]
fn aggregation_other_than_the_default_is_refused_with_selectors_v6_too() {
    let text = doc("IPAddressPool", "p", "addresses: [fd00::/64]")
        + &doc(
            "BGPAdvertisement",
            "a",
            "aggregationLengthV6: 64\nserviceSelectors:\n- matchLabels: {a: b}",
        );
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("mutually exclusive"), "{e}");
    // The defaults written out are fine.
    let text = doc("IPAddressPool", "p", POOL)
        + &doc(
            "BGPAdvertisement",
            "a",
            "aggregationLength: 32\naggregationLengthV6: 128\nserviceSelectors:\n- matchLabels: {a: b}",
        );
    load(&text).unwrap();
}

#[test]
fn l2_advertisements_differing_only_in_service_selectors_are_both_kept() {
    let same_nodes = |name: &str, sel: &str| {
        doc(
            "L2Advertisement",
            name,
            &format!("interfaces: [eth0]\nserviceSelectors:\n{sel}"),
        )
    };
    let text = doc("IPAddressPool", "p", POOL)
        + &same_nodes("a", "- matchLabels: {app: a}")
        + &same_nodes("b", "- matchLabels: {app: b}");
    assert_eq!(load(&text).unwrap().pools[0].l2_advertisements.len(), 2);
    // The same selectors in another order: one advertisement.
    let text = doc("IPAddressPool", "p", POOL)
        + &same_nodes("a", "- matchLabels: {app: a}\n- matchLabels: {app: b}")
        + &same_nodes("b", "- matchLabels: {app: b}\n- matchLabels: {app: a}");
    assert_eq!(load(&text).unwrap().pools[0].l2_advertisements.len(), 1);
}

#[test]
fn local_pref_rule_leaves_selective_advertisements_to_the_speaker() {
    // Both selective: accepted (a Service matching both is refused by the
    // speaker, `conflictingAdvertisements`).
    let text = doc("IPAddressPool", "p", POOL)
        + &doc(
            "BGPAdvertisement",
            "a",
            "localPref: 100\nserviceSelectors:\n- matchLabels: {app: a}",
        )
        + &doc(
            "BGPAdvertisement",
            "b",
            "localPref: 200\nserviceSelectors:\n- matchLabels: {app: a}",
        );
    let cfg = load(&text).unwrap();
    let ads = &cfg.pools[0].advertisements;
    assert!(ads[0].local_pref_conflicts(&ads[1], true, false));
    // Neither selective: refused at config time.
    let text = doc("IPAddressPool", "p", POOL)
        + &doc("BGPAdvertisement", "a", "localPref: 100")
        + &doc("BGPAdvertisement", "b", "localPref: 200");
    assert!(
        load(&text)
            .unwrap_err()
            .to_string()
            .contains("conflicts with 100")
    );
}
