//! `cargo +nightly fuzz run configmap`: the MetalLB v0.12 ConfigMap front end
//! (`Config::parse_document`, what `ferrolb validate` runs on a ConfigMap
//! manifest or bare config text, and `Config::parse`, the text under the
//! `config` key) must never panic and must be deterministic; a config text
//! found in a manifest parses to what the manifest does; an accepted
//! configuration converts to custom resources that read back the same.
#![no_main]

mod common;

use ferrolb_config::{Config, config_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let document = Config::parse_document(text);
    assert_eq!(document, Config::parse_document(text), "not deterministic");
    let bare = Config::parse(text);
    assert_eq!(bare, Config::parse(text), "not deterministic");

    for result in [&document, &bare] {
        match result {
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

    if let (Ok(cfg), Ok(found)) = (&document, config_text(text)) {
        assert_eq!(
            Config::parse(&found.text).as_ref().ok(),
            Some(cfg),
            "the config text found in the document parses differently"
        );
    }
});
