//! ferrolb-config: the configuration ferrolb runs on, as one typed, validated
//! model ([`Config`]), and the two front ends that build it: MetalLB v0.12's
//! legacy format (the text under key `config` of ConfigMap
//! `metallb-system/config`) and MetalLB v0.13+'s `metallb.io` custom resources
//! ([`crs`]), each reporting every problem found with its field path and line.
//!
//! It is pure: text or JSON values in, values out; no Kubernetes client, no I/O,
//! no clock. Both binaries (controller, speaker) and `ferrolb validate` call
//! [`Config::parse`] / [`Config::parse_document`] or
//! [`Config::from_resources`], so runtime code never sees raw YAML.
//!
//! It is not: a Kubernetes client (the binaries list and watch the objects and
//! the Secrets, and hand them in), nor a reader of options neither format has.
//! BFD profiles (ConfigMap `bfd-profiles` / `bfd-profile` in MetalLB's FRR-mode
//! format, custom resources `BFDProfile` / `bfdProfile`) are parsed into the
//! model; the settings ferrolb does not act on (echo mode, multi-hop minimum
//! TTL) come with a [`ConfigWarning`], like every other such field.
//!
//! # Layout
//! - The model, which knows nothing of where a configuration came from:
//!   [`Config`], [`Peer`], [`Pool`], [`BgpAdvertisement`] (`model`), [`AddrRange`]
//!   (`addr`), [`Community`], [`NodeSelector`] (`selector`), Go durations
//!   (`duration`), and the errors (`error`): a [`ConfigError`] carries a free-form
//!   field path, so every front end names fields its own way
//!   (`peers[0].hold-time` here; `IPAddressPool/default: spec.addresses[0]` for
//!   custom resources).
//! - `configmap`: the v0.12 ConfigMap front end — YAML tree, field readers, the
//!   format's levels read into the model with MetalLB's checks, and
//!   [`config_text`] for manifests.
//! - [`crs`]: the `metallb.io` custom-resource front end beside it — the set of
//!   objects ([`crs::Resources`], from the API server's JSON or from YAML files),
//!   read with the same tree and field readers, MetalLB's controller and
//!   webhook rules, into the same model.
//! - [`gate`]: MetalLB's rules for letting a new configuration in ([`ConfigGate`]:
//!   last good, rejected, stale, reported once, retried when the cluster changes),
//!   used by both binaries whatever the front end.
//!
//! # Parsing
//! The text is parsed once, by `saphyr-parser` (the event parser under `saphyr`),
//! into a small tree of our own whose nodes keep their line, the scalar text as
//! written and its style; a schema-driven walker then reads each level, reports a
//! key outside the level's schema with the keys it allows, and collects every error.
//! Why not a serde deserialiser: MetalLB's Go decoder (yaml.v2) follows YAML 1.1 —
//! `yes`/`on` are booleans, a number in a string field is the text as written
//! (`password: 0012`), duplicate keys are errors — and ferrolb reports *every*
//! problem with a path and a line, including those found after decoding (an
//! overlap). Serde front ends (`serde_yaml`, deprecated; `serde-saphyr`) stop at the
//! first error and report an unknown key only as message text; saphyr's own
//! `MarkedYaml` loader resolves scalars by YAML 1.2, hashes every key, and fails the
//! whole document at the first duplicate key. Owning a small tree over the
//! parser's events and the scalar resolution gives MetalLB's reading of scalars
//! and keys (not its merge keys `<<`, nor its silent float → integer conversion,
//! both refused here).
//!
//! # Defaults (MetalLB's; ConfigMap spelling, see [`crs`] for the custom resources)
//! peer-port 179; hold-time 90s (truncated to whole seconds, 0 or ≥ 3s);
//! keepalive-time hold-time / 3; ebgp-multihop false; no node-selectors = all nodes;
//! auto-assign true; avoid-buggy-ips false; aggregation-length 32 / 128; and a `bgp`
//! pool without `bgp-advertisements` gets one default advertisement.
//!
//! # Duplicates (MetalLB's rules)
//! Pool names are unique; addresses never overlap; a peer equal in every parsed
//! field to an earlier one is rejected (peers differing only in ASN, password, hold
//! time… are kept); two advertisements of one pool written the same are rejected.
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
pub(crate) mod configmap;
pub mod crs;
mod duration;
mod error;
pub mod gate;
mod model;
mod selector;

pub use addr::{AddrRange, ip_to_u128, u128_to_ip};
pub use community::Community;
pub use configmap::{ConfigText, config_text};
pub use duration::parse_go_duration;
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use gate::{ConfigGate, Verdict};
pub use model::{
    BfdProfile, BgpAdvertisement, Config, ConfigWarning, DynamicAsn, L2Advertisement, Peer, Pool,
    Protocol, ServiceAllocation, stranded_message,
};
pub use selector::{LabelRequirement, LabelSet, NodeSelector, SelectorOperator};
