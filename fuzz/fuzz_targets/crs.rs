//! `cargo +nightly fuzz run crs`: the `metallb.io` custom-resource front end
//! (`Resources::add_yaml` on a multi-document YAML file, then
//! `Config::from_resources`) must never panic and must be deterministic; an
//! accepted configuration, written back as custom resources, reads back the
//! same.
#![no_main]

mod common;

use std::collections::BTreeMap;

use ferrolb_config::Config;
use ferrolb_config::crs::{self, Resources, Secrets};
use libfuzzer_sys::fuzz_target;

fn load(text: &str) -> (String, Resources) {
    let mut r = Resources::new();
    let added = match r.add_yaml("fuzz.yaml", text) {
        Ok(others) => format!("{others:?}"),
        Err(e) => {
            assert!(!e.is_empty(), "an Err without errors");
            e.to_string()
        }
    };
    (added, r)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // What `ferrolb validate` looks at first.
    let _ = crs::documents(text).map(|d| d.iter().any(|d| d.is_metallb()));

    let (added, resources) = load(text);
    let (added2, resources2) = load(text);
    assert_eq!(added, added2, "add_yaml not deterministic");
    assert_eq!(resources.revision(), resources2.revision());

    let result = Config::from_resources(&resources, Secrets::Ignore);
    assert_eq!(
        result,
        Config::from_resources(&resources2, Secrets::Ignore),
        "from_resources not deterministic"
    );
    // Secrets given, none found: errors for passwordSecret peers, no panic.
    let none = BTreeMap::new();
    let given = Config::from_resources(&resources, Secrets::Given(&none));
    let _ = resources.password_secrets();

    for r in [&result, &given] {
        match r {
            Ok(cfg) => {
                let _ = cfg.summary();
                common::round_trip(cfg);
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "an Err without errors");
                let _ = errors.to_string();
            }
        }
    }
});
