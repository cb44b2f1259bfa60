//! The `metallb.io` custom-resource front end (MetalLB v0.13+): a set of
//! objects (from the API server as JSON, or from YAML files) → the same
//! validated [`Config`] the ConfigMap front end builds.
//!
//! Layers, each pure:
//! - `tree`: a JSON object or a YAML document → the crate's YAML tree
//!   (`configmap::yaml`), owned, with lines for files;
//! - this module: [`Resources`], the set of objects with their envelope
//!   (kind, version, metadata) checked;
//! - `build`: each kind's `spec` read with the ConfigMap front end's field
//!   readers (`configmap::read`), MetalLB's checks (its controller's and its
//!   webhooks'), and the whole-set rules, into [`Config`].

mod build;
mod tree;

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

mod documents;
mod write;

pub use documents::{Document, documents, password_secret};
pub use write::{
    ConvertError, Converted, DEFAULT_NAMESPACE, Rename, configmap_to_resources, write_resources,
};

use crate::configmap::yaml::{Node, Value, load};
use crate::{Config, ConfigError, ConfigErrors, ErrorKind};

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

/// The set of `metallb.io` objects that make up one configuration, kept in
/// kind order (as [`KINDS`]) then name order, which is the order the front end
/// reads them in (pools, peers and advertisements come out in name order).
///
/// Problems with an object's envelope (no name, the same kind and name twice,
/// an `apiVersion` the kind does not have) are kept and reported by
/// [`Config::from_resources`] with the rest.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    objects: Vec<Object>,
    problems: Vec<ConfigError>,
}

/// One object of the set.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    /// Index into [`KINDS`].
    pub(crate) kind: usize,
    /// The version of its `apiVersion` (`v1beta1`, `v1beta2`).
    pub(crate) version: String,
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) uid: Option<String>,
    /// What [`Resources::revision`] shows of it: `resourceVersion`, or a hash
    /// of its content.
    pub(crate) revision: String,
    /// The file it came from (`None`: from the API server).
    pub(crate) file: Option<String>,
    /// 1-based line of the document in the file (0 without a file).
    pub(crate) line: usize,
    /// `spec`, if present.
    pub(crate) spec: Option<tree::Tree>,
}

impl Object {
    /// Its kind, e.g. `BGPPeer`.
    pub(crate) fn kind(&self) -> &'static str {
        KINDS[self.kind].0
    }
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
    /// kinds are an error. Only `metadata.{name, namespace, labels, uid,
    /// resourceVersion}` and `spec` are read (`status`, `managedFields`… are
    /// left alone).
    // The signature is the shared API; ConfigError is one error of a list
    // everywhere else, not worth boxing for this one.
    #[allow(clippy::result_large_err)]
    pub fn add_json(&mut self, object: &serde_json::Value) -> Result<(), ConfigError> {
        let node = tree::from_json(object);
        let hash = || {
            let mut h = DefaultHasher::new();
            object.get("spec").map(ToString::to_string).hash(&mut h);
            object
                .pointer("/metadata/labels")
                .map(ToString::to_string)
                .hash(&mut h);
            format!("#{:016x}", h.finish())
        };
        match envelope(&node, None, hash) {
            Envelope::Object(o) => {
                self.insert(*o);
                Ok(())
            }
            Envelope::Other(kind) => Err(ConfigError {
                file: None,
                line: None,
                path: "kind".into(),
                kind: ErrorKind::Invalid(format!(
                    "{kind:?} is not one of the metallb.io kinds read here ({})",
                    KINDS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
                )),
            }),
            Envelope::Bad(mut e) => {
                e.line = None;
                Err(e)
            }
        }
    }

    /// Add every `metallb.io` document of a (multi-document) YAML file; `file`
    /// names it in errors. Returns the documents it did not take (other kinds,
    /// e.g. a ConfigMap or a Secret, and `metallb.io` kinds that are not
    /// configuration such as `ServiceBGPStatus`), each with its first line, kind
    /// and text. YAML syntax errors are returned as `Err` (one per broken
    /// document); the documents that did parse are added all the same.
    pub fn add_yaml(&mut self, file: &str, text: &str) -> Result<Vec<OtherDocument>, ConfigErrors> {
        let mut others = Vec::new();
        let mut syntax = Vec::new();
        for (first, doc) in tree::split_documents(text) {
            let offset = first - 1;
            let roots = match load(doc) {
                Ok(r) => r,
                Err(e) => {
                    syntax.push(ConfigError {
                        file: Some(file.to_string()),
                        line: Some(e.line + offset),
                        path: String::new(),
                        kind: ErrorKind::Yaml(format!("YAML syntax error: {}", e.message)),
                    });
                    continue;
                }
            };
            for root in roots.iter().flatten().filter(|n| !n.is_null()) {
                let node = tree::to_owned(root, offset);
                let hash = || {
                    let mut h = DefaultHasher::new();
                    doc.hash(&mut h);
                    format!("#{:016x}", h.finish())
                };
                match envelope(&node, Some(file), hash) {
                    Envelope::Object(o) => self.insert(*o),
                    Envelope::Other(kind) => others.push(OtherDocument {
                        line: first,
                        kind,
                        text: doc.to_string(),
                    }),
                    Envelope::Bad(e) => self.problems.push(e),
                }
            }
        }
        if syntax.is_empty() {
            Ok(others)
        } else {
            Err(ConfigErrors(syntax))
        }
    }

    /// Keep `o` in (kind, name) order; the same kind and name twice is a problem.
    fn insert(&mut self, o: Object) {
        let key = |x: &Object| (x.kind, x.name.clone());
        match self.objects.binary_search_by_key(&key(&o), key) {
            Ok(i) => {
                let first = &self.objects[i];
                let at = match (&first.file, first.line) {
                    (Some(f), l) => format!(" (first at {f}:{l})"),
                    (None, _) => String::new(),
                };
                self.problems.push(ConfigError {
                    file: o.file.clone(),
                    line: o.file.as_ref().map(|_| o.line),
                    path: format!("{}/{}", o.kind(), o.name),
                    kind: ErrorKind::Invalid(format!("defined twice{at}")),
                });
            }
            Err(i) => self.objects.insert(i, o),
        }
    }

    /// No objects at all.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.problems.is_empty()
    }

    /// At least one `IPAddressPool` (MetalLB: the custom resources are the
    /// configuration when a pool exists).
    pub fn has_pools(&self) -> bool {
        self.objects.iter().any(|o| o.kind == POOL)
    }

    /// A string that changes whenever the set does (kinds, names,
    /// resourceVersions; the content when an object has no resourceVersion),
    /// for [`crate::ConfigGate::offer`].
    pub fn revision(&self) -> String {
        let mut s = String::new();
        for o in &self.objects {
            s.push_str(&format!("{}/{}@{};", o.kind(), o.name, o.revision));
        }
        if !self.problems.is_empty() {
            s.push_str(&format!("problems:{}", self.problems.len()));
        }
        s
    }

    /// Names of the Secrets the BGPPeers refer to (`spec.passwordSecret.name`),
    /// sorted, deduplicated.
    pub fn password_secrets(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .objects
            .iter()
            .filter(|o| o.kind == PEER)
            .filter_map(|o| {
                let (_, secret) = o.spec.as_ref()?.get("passwordSecret")?;
                let (_, name) = secret.get("name")?;
                let name = name.scalar()?.text.to_string();
                (!name.is_empty()).then_some(name)
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The `metadata.uid` of an object, if it has one (objects from the API
    /// server do), e.g. to make an Event regarding it.
    pub fn uid(&self, kind: &str, name: &str) -> Option<&str> {
        self.objects
            .iter()
            .find(|o| o.kind() == kind && o.name == name)
            .and_then(|o| o.uid.as_deref())
    }

    /// Every object as `(kind, name, uid)`, in kind then name order.
    pub fn objects(&self) -> impl Iterator<Item = (&'static str, &str, Option<&str>)> + '_ {
        self.objects
            .iter()
            .map(|o| (o.kind(), o.name.as_str(), o.uid.as_deref()))
    }

    pub(crate) fn all(&self) -> &[Object] {
        &self.objects
    }

    pub(crate) fn problems(&self) -> &[ConfigError] {
        &self.problems
    }
}

/// Index of `IPAddressPool` in [`KINDS`].
pub(crate) const POOL: usize = 0;
/// Index of `BGPPeer` in [`KINDS`].
pub(crate) const PEER: usize = 1;
/// Index of `BGPAdvertisement` in [`KINDS`].
pub(crate) const BGP_ADV: usize = 2;
/// Index of `L2Advertisement` in [`KINDS`].
pub(crate) const L2_ADV: usize = 3;
/// Index of `Community` in [`KINDS`].
pub(crate) const COMMUNITY: usize = 4;
/// Index of `BFDProfile` in [`KINDS`].
pub(crate) const BFD: usize = 5;

/// What a document or JSON object is.
enum Envelope {
    Object(Box<Object>),
    /// Not a configuration kind of `metallb.io`: its kind (empty if none).
    Other(String),
    /// A configuration kind whose envelope is wrong.
    Bad(ConfigError),
}

/// Read `apiVersion`, `kind` and `metadata` of a document.
fn envelope(node: &tree::Tree, file: Option<&str>, hash: impl FnOnce() -> String) -> Envelope {
    fn text(n: Option<(&Node<'_>, &Node<'_>)>) -> Option<String> {
        n.and_then(|(_, v)| v.scalar().map(|s| s.text.to_string()))
    }
    let kind = text(node.get("kind")).unwrap_or_default();
    let api_version = text(node.get("apiVersion")).unwrap_or_default();
    let Some((group, version)) = api_version.split_once('/') else {
        return Envelope::Other(kind);
    };
    let Some(index) = KINDS.iter().position(|k| k.0 == kind) else {
        return Envelope::Other(kind);
    };
    if group != "metallb.io" {
        return Envelope::Other(kind);
    }
    let bad = |line: usize, path: &str, msg: String| {
        Envelope::Bad(ConfigError {
            file: file.map(str::to_string),
            line: file.map(|_| line),
            path: path.to_string(),
            kind: ErrorKind::Invalid(msg),
        })
    };
    let versions: &[&str] = if index == PEER {
        &["v1beta1", "v1beta2"]
    } else {
        &["v1beta1"]
    };
    if !versions.contains(&version) {
        let line = node.get("apiVersion").map_or(node.line, |(k, _)| k.line);
        return bad(
            line,
            "apiVersion",
            format!(
                "{kind} has no version {version:?} (expected {})",
                versions.join(" or ")
            ),
        );
    }
    for (k, _) in match &node.value {
        Value::Map(entries) => entries.as_slice(),
        _ => &[],
    } {
        let key = k.scalar().map_or("", |s| s.text.as_ref());
        if !["apiVersion", "kind", "metadata", "spec", "status"].contains(&key) {
            return bad(
                k.line,
                key,
                format!(
                    "unknown field {key:?} (expected apiVersion, kind, metadata, spec, status)"
                ),
            );
        }
    }
    let meta = node.get("metadata").map(|(_, m)| m);
    let field = |key: &str| text(meta.and_then(|m| m.get(key)));
    let name = field("name").unwrap_or_default();
    if name.is_empty() {
        let line = meta.map_or(node.line, |m| m.line);
        return bad(line, "metadata.name", format!("{kind} without a name"));
    }
    let mut labels = BTreeMap::new();
    if let Some((
        _,
        Node {
            value: Value::Map(entries),
            ..
        },
    )) = meta.and_then(|m| m.get("labels"))
    {
        for (k, v) in entries {
            if let (Some(k), Some(v)) = (k.scalar(), v.scalar()) {
                labels.insert(k.text.to_string(), v.text.to_string());
            }
        }
    }
    let resource_version = field("resourceVersion").filter(|v| !v.is_empty());
    Envelope::Object(Box::new(Object {
        kind: index,
        version: version.to_string(),
        name,
        namespace: field("namespace").filter(|n| !n.is_empty()),
        labels,
        uid: field("uid").filter(|u| !u.is_empty()),
        revision: resource_version.unwrap_or_else(hash),
        file: file.map(str::to_string),
        line: node.line,
        spec: node.get("spec").map(|(_, s)| tree::to_owned(s, 0)),
    }))
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
        build::config(resources, secrets)
    }
}
