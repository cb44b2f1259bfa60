//! ferrolb-config: MetalLB v0.12's legacy configuration format (the text under key
//! `config` of ConfigMap `metallb-system/config`) parsed and validated into a typed
//! [`Config`], or every problem found, each with its field path and line.
//!
//! It is pure: text in, values out; no Kubernetes client, no I/O, no clock. Both
//! binaries (controller, speaker) and `ferrolb validate` call [`Config::parse`] /
//! [`Config::parse_document`], so runtime code never sees raw YAML.
//!
//! It is not: a reader of MetalLB's CRDs (v0.13+), nor of options this format never
//! had; BFD profiles (`bfd-profiles`, `bfd-profile`) are not supported and are
//! rejected as unknown keys.
//!
//! # Parsing
//! Stage 1 deserialises YAML into raw serde structs with `deny_unknown_fields` at
//! every level (MetalLB parses strictly); stage 2 checks and converts each field,
//! collecting all errors. YAML crates: `serde_yaml` 0.9 (deprecated but stable, it
//! reports locations for syntax errors and is what the raw structs deserialise
//! through) and `saphyr`, whose marked nodes give the line of every key and list item
//! for the errors found in stage 2 (serde_yaml has no spans after deserialisation).
//!
//! # Defaults (MetalLB's)
//! peer-port 179; hold-time 90s (truncated to whole seconds, 0 or ≥ 3s);
//! keepalive-time hold-time / 3; ebgp-multihop false; no node-selectors = all nodes;
//! auto-assign true; avoid-buggy-ips false; aggregation-length 32 / 128; and a `bgp`
//! pool without `bgp-advertisements` gets one default advertisement.
//!
//! ```
//! let cfg = ferrolb_config::Config::parse(
//!     "peers:\n- {peer-address: 172.17.0.1, peer-asn: 64512, my-asn: 64522}\n\
//!      address-pools:\n- {name: default, protocol: bgp, addresses: [172.17.254.0/24]}\n",
//! )
//! .unwrap();
//! assert_eq!(cfg.peers[0].hold_time.as_secs(), 90);
//! assert_eq!(cfg.pool_for("172.17.254.1".parse().unwrap()).unwrap().name, "default");
//! ```

mod addr;
mod community;
mod duration;
mod error;
pub mod gate;
mod manifest;
mod model;
mod parse;
mod positions;
mod selector;

pub use addr::{AddrRange, ip_to_u128, u128_to_ip};
pub use community::Community;
pub use duration::parse_go_duration;
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use gate::{ConfigGate, Verdict};
pub use manifest::{ConfigText, config_text};
pub use model::{BgpAdvertisement, Config, Peer, Pool, Protocol, stranded_message};
pub use selector::{LabelRequirement, NodeSelector, SelectorOperator};

impl Config {
    /// Parse and validate bare MetalLB config text (what is under the ConfigMap's
    /// `config` key). Returns every error found, in line order; lines are 1-based
    /// lines of `text`. An empty text is a valid, empty config.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let pos = positions::Positions::index(text);
        parse::parse_config(text, &pos, 0).map_err(ConfigErrors)
    }

    /// Parse either a ConfigMap manifest (see [`config_text`]) or bare config text.
    /// Error lines refer to `document` (for a manifest whose config is a `|` block:
    /// the manifest's lines; otherwise lines are dropped).
    pub fn parse_document(document: &str) -> Result<Config, ConfigErrors> {
        let found = config_text(document)?;
        Config::parse(&found.text).map_err(|mut errs| {
            for e in &mut errs.0 {
                e.line = match (e.line, found.line_offset) {
                    (Some(l), Some(o)) => Some(l + o),
                    _ => None,
                };
            }
            errs
        })
    }
}
