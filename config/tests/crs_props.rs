//! Property tests of the custom-resource front end's advertisement rules:
//! communities (values, aliases) and the aggregation length against a
//! pool's prefixes.

use ferrolb_config::crs::{Resources, Secrets};
use ferrolb_config::{Config, ConfigErrors};
use proptest::prelude::*;

fn build(pool: &str, adv_spec: &str, aliases: &str) -> Result<Config, ConfigErrors> {
    let text = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: p}}\nspec: {{addresses: [\"{pool}\"]}}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {{name: c}}\nspec: {{communities: [{aliases}]}}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: a}}\nspec: {adv_spec}\n"
    );
    let mut r = Resources::new();
    r.add_yaml("p.yaml", &text).unwrap();
    Config::from_resources(&r, Secrets::Ignore)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// `A:B` is a standard community when both fit 16 bits, an error on the
    /// advertisement's communities[0] otherwise; through an alias the same.
    #[test]
    fn standard_communities(a in 0u32..70000, b in 0u32..70000, via_alias: bool) {
        let value = format!("{a}:{b}");
        let (spec, aliases) = if via_alias {
            ("{communities: [x]}".to_string(), format!("{{name: x, value: \"{value}\"}}"))
        } else {
            (format!("{{communities: [\"{value}\"]}}"), String::new())
        };
        let got = build("10.0.0.0/24", &spec, &aliases);
        if a <= 0xffff && b <= 0xffff {
            let cfg = got.unwrap();
            prop_assert_eq!(&cfg.pools[0].advertisements[0].communities, &vec![a << 16 | b]);
        } else {
            let e = got.unwrap_err();
            prop_assert_eq!(e.len(), 1);
            let path = if via_alias { "Community/c: spec.communities[0].value" } else { "BGPAdvertisement/a: spec.communities[0]" };
            prop_assert_eq!(e.0[0].path.as_str(), path);
        }
    }

    /// `large:A:B:C` with 32-bit parts.
    #[test]
    fn large_communities(a: u32, b: u32, c in 0u64..(1 << 33)) {
        let got = build("10.0.0.0/24", &format!("{{communities: [\"large:{a}:{b}:{c}\"]}}"), "");
        match u32::try_from(c) {
            Ok(c) => prop_assert_eq!(&got.unwrap().pools[0].advertisements[0].large_communities, &vec![(a, b, c)]),
            Err(_) => prop_assert!(got.is_err()),
        }
    }

    /// The aggregation length must not be shorter than the pool entry's
    /// prefix (for a range: its shortest CIDR), per family.
    #[test]
    fn aggregation_against_the_pool(prefix in 1u8..=32, len in 1u8..=32, v6_prefix in 1u8..=128, v6_len in 0u8..=128) {
        let v4 = build(&format!("10.0.0.0/{prefix}"), &format!("{{aggregationLength: {len}}}"), "");
        prop_assert_eq!(v4.is_ok(), len >= prefix, "{:?}", v4);
        if let Ok(cfg) = v4 {
            prop_assert_eq!(cfg.pools[0].advertisements[0].aggregation_length, len);
        }
        let v6 = build(&format!("fd00::/{v6_prefix}"), &format!("{{aggregationLengthV6: {v6_len}}}"), "");
        prop_assert_eq!(v6.is_ok(), v6_len >= v6_prefix, "{:?}", v6);
        if let Err(e) = v6 {
            prop_assert_eq!(e.0[0].path.as_str(), "BGPAdvertisement/a: spec.aggregationLengthV6");
        }
    }
}

/// Any JSON at all, with keys of the kinds' fields now and then.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("addresses"),
        Just("myASN"),
        Just("peerASN"),
        Just("peerAddress"),
        Just("holdTime"),
        Just("keepaliveTime"),
        Just("nodeSelectors"),
        Just("matchLabels"),
        Just("matchExpressions"),
        Just("key"),
        Just("operator"),
        Just("values"),
        Just("communities"),
        Just("name"),
        Just("value"),
        Just("passwordSecret"),
        Just("aggregationLength"),
        Just("ipAddressPools"),
        Just("serviceAllocation"),
        Just("detectMultiplier"),
        Just("x"),
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-z0-9:./-]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("10.0.0.0/24")),
        Just(serde_json::Value::from("In")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| {
                serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the specs hold, the front end answers (a Config or errors
    /// with paths), never panics.
    #[test]
    fn any_spec_is_an_answer(specs in prop::collection::vec(json(), 6)) {
        let mut r = Resources::new();
        for ((kind, _, version), spec) in ferrolb_config::crs::KINDS.iter().zip(specs) {
            r.add_json(&serde_json::json!({
                "apiVersion": format!("metallb.io/{version}"), "kind": kind,
                "metadata": {"name": "o"}, "spec": spec,
            }))
            .unwrap();
        }
        if let Err(e) = Config::from_resources(&r, Secrets::Ignore) {
            prop_assert!(e.iter().all(|e| e.path.starts_with(|c: char| c.is_ascii_uppercase())), "{e}");
        }
    }
}
