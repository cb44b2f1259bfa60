//! The `metallb.io` custom-resource front end (MetalLB v0.13+): a set of
//! objects (from the API server as JSON, or from YAML files) → the same
//! validated [`Config`] the ConfigMap front end builds.
//!
//! SKELETON: the public API below is fixed (other crates build against it);
//! the bodies are being written (helper "cfg").

use std::collections::BTreeMap;

mod documents;
mod write;

pub use documents::{Document, documents, password_secret};
pub use write::{
    ConvertError, Converted, DEFAULT_NAMESPACE, Rename, configmap_to_resources, write_resources,
};

use crate::{Config, ConfigError, ConfigErrors};

/// The kinds this front end reads, as `(kind, plural, version)`: what the
/// binaries watch (group `metallb.io`, in the configuration's namespace).
pub const KINDS: &[(&str, &str, &str)] = &[
    ("IPAddressPool", "ipaddresspools", "v1beta1"),
    ("BGPPeer", "bgppeers", "v1beta2"),
    ("BGPAdvertisement", "bgpadvertisements", "v1beta1"),
    ("L2Advertisement", "l2advertisements", "v1beta1"),
    ("Community", "communities", "v1beta1"),
    ("BFDProfile", "bfdprofiles", "v1beta1"),
];

/// The set of `metallb.io` objects that make up one configuration.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    // private: the objects, each with kind, name, namespace, resourceVersion,
    // origin (file and line, when read from a file) and its body.
}

/// The Secrets `BGPPeer.spec.passwordSecret` refers to, as the caller could
/// read them.
#[derive(Debug, Clone, Copy)]
pub enum Secrets<'a> {
    /// Do not resolve `passwordSecret` (the controller, which runs no sessions):
    /// peers that use it get `password: None` and no error.
    Ignore,
    /// The Secrets found, by name (a name missing from the map was not found).
    Given(&'a BTreeMap<String, PasswordSecret>),
}

/// What the front end needs of one Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSecret {
    /// The Secret's `type` (must be `kubernetes.io/basic-auth`).
    pub type_: Option<String>,
    /// `data.password`, decoded (or `stringData.password` in a file).
    pub password: Option<Vec<u8>>,
    /// The Secret's resourceVersion (part of the configuration's revision).
    pub resource_version: Option<String>,
}

impl Resources {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one object as served by the API server (a JSON object with
    /// `apiVersion`, `kind`, `metadata`, `spec`). Objects of other groups or
    /// kinds are an error.
    pub fn add_json(&mut self, object: &serde_json::Value) -> Result<(), ConfigError> {
        let _ = object;
        unimplemented!("helper cfg")
    }

    /// Add every `metallb.io` document of a (multi-document) YAML file; `file`
    /// names it in errors. Returns the documents it did not take (other kinds,
    /// e.g. a ConfigMap or a Secret), each as `(first line, kind, text)`;
    /// YAML errors are returned as `Err`.
    pub fn add_yaml(&mut self, file: &str, text: &str) -> Result<Vec<OtherDocument>, ConfigErrors> {
        let _ = (file, text);
        unimplemented!("helper cfg")
    }

    /// No objects at all.
    pub fn is_empty(&self) -> bool {
        unimplemented!("helper cfg")
    }

    /// At least one `IPAddressPool` (MetalLB: the custom resources are the
    /// configuration when a pool exists).
    pub fn has_pools(&self) -> bool {
        unimplemented!("helper cfg")
    }

    /// A string that changes whenever the set does (kinds, names,
    /// resourceVersions; the content when an object has no resourceVersion),
    /// for [`crate::ConfigGate::offer`].
    pub fn revision(&self) -> String {
        unimplemented!("helper cfg")
    }

    /// Names of the Secrets the BGPPeers refer to (`spec.passwordSecret.name`),
    /// sorted, deduplicated.
    pub fn password_secrets(&self) -> Vec<String> {
        unimplemented!("helper cfg")
    }
}

/// A document of a YAML file that is not a `metallb.io` object.
#[derive(Debug, Clone)]
pub struct OtherDocument {
    /// 1-based line where the document starts in the file.
    pub line: usize,
    /// Its `kind` (empty if none).
    pub kind: String,
    /// Its text, as written.
    pub text: String,
}

impl Config {
    /// Build and validate the configuration the objects describe, as MetalLB's
    /// controller and webhooks would; every problem is reported, each with the
    /// object (`IPAddressPool/default: spec.addresses[0]`) and, for objects read
    /// from a file, the file and line.
    pub fn from_resources(
        resources: &Resources,
        secrets: Secrets<'_>,
    ) -> Result<Config, ConfigErrors> {
        let _ = (resources, secrets);
        unimplemented!("helper cfg")
    }
}
