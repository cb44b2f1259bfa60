//! Parse speed of the fullest shipped example. Not a benchmark harness, a quick
//! figure for reviews: `cargo test -p ferrolb-config --release --test parse_speed -- --ignored --nocapture`.

use std::path::Path;
use std::time::Instant;

use ferrolb_config::{Config, config_text};

#[test]
#[ignore = "timing, run by hand"]
fn parse_metallb_full_example() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples/metallb-full.yaml");
    let manifest = std::fs::read_to_string(path).unwrap();
    let text = config_text(&manifest).unwrap().text;
    let expected = Config::parse(&text).unwrap();
    assert_eq!(Config::parse_document(&manifest).unwrap(), expected);

    let rounds = 20_000;
    let per_call = |f: &dyn Fn() -> Config| {
        for _ in 0..rounds / 10 {
            std::hint::black_box(f());
        }
        let start = Instant::now();
        for _ in 0..rounds {
            let cfg = std::hint::black_box(f());
            assert_eq!(cfg.pools.len(), 2);
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    };
    let bare = per_call(&|| Config::parse(std::hint::black_box(&text)).unwrap());
    let doc = per_call(&|| Config::parse_document(std::hint::black_box(&manifest)).unwrap());
    println!("Config::parse (config text): {bare:.1} µs/parse");
    println!("Config::parse_document (manifest): {doc:.1} µs/parse");
}
