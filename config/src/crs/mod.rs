//! The `metallb.io` custom-resource front end (MetalLB v0.13+, as of v0.16):
//! a set of objects (from the API server as JSON, or from YAML files) → the
//! same validated [`Config`] the ConfigMap front end builds.
//!
//! ```
//! use ferrolb_config::Config;
//! use ferrolb_config::crs::{Resources, Secrets};
//!
//! let mut set = Resources::new();
//! let others = set
//!     .add_yaml(
//!         "crs.yaml",
//!         "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: default}\n\
//!          spec: {addresses: [172.17.254.0/24]}\n---\n\
//!          apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: all}\n",
//!     )
//!     .unwrap();
//! assert!(others.is_empty());
//! let cfg = Config::from_resources(&set, Secrets::Ignore).unwrap();
//! assert_eq!(cfg.pools[0].advertisements[0].aggregation_length, 32);
//! ```
//!
//! # MetalLB's rules implemented
//! - **IPAddressPool**: `addresses` required, each a CIDR or an `a-b` range of
//!   one family; no address in two entries (of any pools); `autoAssign` true,
//!   `avoidBuggyIPs` false by default; `serviceAllocation` (no repeated
//!   namespace, no repeated selector; written with nothing but a priority it
//!   matches every Service).
//! - **BGPPeer**: `myASN` non-zero; exactly one of `peerASN` and `dynamicASN`
//!   (`internal`|`external`); `ebgpMultiHop` not for iBGP; exactly one of
//!   `peerAddress` and `interface`; `peerPort` 179 by default (1..=16384;
//!   v1beta1 also 0 = default); timers as MetalLB's `parseTimers` (hold alone →
//!   keepalive hold/3, keepalive alone → hold 3×keepalive, neither → 90s/30s;
//!   hold truncated to seconds must be 0 or ≥ 3s; keepalive ≤ hold);
//!   `connectTime` whole seconds in 1..=65535 (the CRD's rules); `routerID`
//!   IPv4; not both `password` and `passwordSecret`; the Secret (by name, in
//!   the peer's namespace) of type `kubernetes.io/basic-auth` with key
//!   `password`; `bfdProfile` names an existing BFDProfile.
//! - **BGPAdvertisement**: `aggregationLength` 1..=32 (default 32),
//!   `aggregationLengthV6` 0..=128 (default 128); per `addresses` entry of
//!   each selected pool, the length is not shorter than the entry's shortest
//!   CIDR prefix; `communities` are `A:B`, `large:A:B:C` or a Community alias,
//!   none repeated; no repeated pool name, peer name or selector;
//!   `serviceSelectors` only with the default lengths; two advertisements of a
//!   pool that send the same prefixes to the same peers from the same nodes
//!   agree on `localPref` (advertisements with `serviceSelectors` are checked
//!   per Service by the speaker instead, as MetalLB); no IPv6 pool advertised
//!   to a peer whose BFD profile has echo mode on.
//! - **L2Advertisement**: no repeated pool name, interface or selector; an
//!   advertisement that selects the same nodes, interfaces and Services as an
//!   earlier one of the pool is kept once.
//! - **Community**: every alias has a name and a valid value; names unique
//!   across all Community objects.
//! - **BFDProfile**: `receiveInterval`, `transmitInterval`, `echoInterval`
//!   10..=60000 ms (default 300, 300, 50), `detectMultiplier` 2..=255 (3),
//!   `minimumTtl` 1..=254 (254), `echoMode`, `passiveMode` false.
//! - Label selectors (`matchLabels`, `matchExpressions` with In, NotIn,
//!   Exists, DoesNotExist): no repeated selector, expression or value.
//!
//! # Decisions
//! - **Order**: pools, peers and advertisements come in name order (MetalLB
//!   keeps maps; it has no order). Overlaps are reported at the later pool.
//! - **Selection**: an advertisement without `ipAddressPools` and
//!   `ipAddressPoolSelectors` selects every pool; otherwise the pools named or
//!   whose labels match, each once (MetalLB v0.16 appends a pool matched both
//!   ways twice).
//! - **Dangling names** (`ipAddressPools`, `peers` naming no object) are
//!   warnings, not errors: MetalLB accepts them (the object may come later)
//!   and applying objects in any order must work.
//! - **Unannounced pools**: a pool no advertisement selects is allocated from
//!   and not announced, as MetalLB; a warning says so.
//! - **Node-dependent rules** (MetalLB evaluates selectors against the cluster's
//!   Nodes): pure here, two selectors "share a node" when either list is empty
//!   or they have a selector in common. So: two peers with the same address,
//!   port, VRF (or interface) and the same node selectors are an error (FRR
//!   mode's rule; MetalLB native compares whole objects, names included, so
//!   never fires); the local-preference rule above uses the same test.
//! - **Accepted, not acted on** (each a [`crate::ConfigWarning`]): `vrf`,
//!   `interface`, `localASN` (the peer gets no session: see
//!   [`crate::Peer::needs_unsupported`]); `bfdProfile` and BFDProfiles (kept in
//!   the model, BFD not run), `echoMode`;
//!   `dualStackAddressFamily`. An
//!   L2Advertisement that selects no pool is warned about (it does nothing).
//! - **Files are read as `kubectl apply` would send them**: unknown fields in
//!   `spec` are errors (the API server would prune them; a strict apply
//!   refuses them), numbers and booleans where strings belong (and the
//!   reverse) are type errors; a v1beta1 BGPPeer has v1beta1's fields only. The
//!   same kind and name twice is an error, and so are objects in different
//!   namespaces (MetalLB reads its own namespace only). Booleans and integers
//!   are read as `kubectl` reads YAML (YAML 1.1: `yes` is true, `0x10` is 16).
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
    /// left alone). An object whose kind and name are already in the set is
    /// kept out and reported by [`Config::from_resources`].
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

impl PasswordSecret {
    /// The name and the parts the front end needs of a `v1` Secret as the API
    /// server serves it (JSON; `data.password` base64-encoded). Errors name
    /// what is wrong: not a Secret, no name, `data.password` not base64.
    pub fn from_json(secret: &serde_json::Value) -> Result<(String, PasswordSecret), String> {
        Self::from_tree(&tree::from_json(secret))
    }

    /// The same from a YAML document (e.g. an [`OtherDocument`] of kind
    /// `Secret` that `ferrolb validate` was given): `data.password`
    /// (base64) or, as `kubectl apply` merges it, `stringData.password`
    /// (which wins).
    pub fn from_yaml(text: &str) -> Result<(String, PasswordSecret), String> {
        let docs = load(text).map_err(|e| format!("line {}: {}", e.line, e.message))?;
        let root = docs
            .iter()
            .flatten()
            .find(|n| !n.is_null())
            .ok_or("an empty document")?;
        Self::from_tree(&tree::to_owned(root, 0))
    }

    fn from_tree(node: &tree::Tree) -> Result<(String, PasswordSecret), String> {
        let text = |path: &[&str]| {
            let mut n = node;
            for key in path {
                n = n.get(key)?.1;
            }
            n.scalar()
                .filter(|s| s.kind != crate::configmap::yaml::Kind::Null)
                .map(|s| s.text.to_string())
        };
        if text(&["kind"]).as_deref() != Some("Secret") {
            return Err("not a Secret".into());
        }
        let name = text(&["metadata", "name"]).ok_or("a Secret without a name")?;
        let mut password = match text(&["data", "password"]) {
            Some(b64) => Some(
                base64_decode(&b64)
                    .ok_or_else(|| format!("Secret {name:?}: data.password is not base64"))?,
            ),
            None => None,
        };
        if let Some(plain) = text(&["stringData", "password"]) {
            password = Some(plain.into_bytes());
        }
        Ok((
            name,
            PasswordSecret {
                type_: text(&["type"]),
                password,
                resource_version: text(&["metadata", "resourceVersion"]),
            },
        ))
    }
}

/// Standard base64 with padding (what the API server uses for Secret data);
/// whitespace is ignored. `None` if the text is not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(digits.len() / 4 * 3);
    for (i, chunk) in digits.chunks(4).enumerate() {
        let last = i + 1 == digits.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("cGFzcw==").unwrap(), b"pass");
        assert_eq!(base64_decode("cGFzczE=").unwrap(), b"pass1");
        assert_eq!(base64_decode("cGFzczEy").unwrap(), b"pass12");
        assert_eq!(base64_decode("cGFz\nczEy").unwrap(), b"pass12");
        for bad in ["cGFzcw=", "cG=zcw==", "cGFz!w==", "c==="] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn secrets_from_yaml_and_json() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: md5, resourceVersion: \"4\"}\n\
                    type: kubernetes.io/basic-auth\ndata: {password: cGFzcw==}\n";
        let (name, s) = PasswordSecret::from_yaml(yaml).unwrap();
        assert_eq!(name, "md5");
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(s.password.as_deref(), Some(&b"pass"[..]));
        assert_eq!(s.resource_version.as_deref(), Some("4"));
        let string_data = yaml.replace(
            "data: {password: cGFzcw==}",
            "stringData: {password: \"0012\"}",
        );
        let (_, s) = PasswordSecret::from_yaml(&string_data).unwrap();
        assert_eq!(s.password.as_deref(), Some(&b"0012"[..]));
        let json = serde_json::json!({"kind": "Secret", "metadata": {"name": "x"}, "type": "Opaque", "data": {}});
        let (name, s) = PasswordSecret::from_json(&json).unwrap();
        assert_eq!((name.as_str(), s.password), ("x", None));
        assert!(PasswordSecret::from_yaml("kind: ConfigMap\n").is_err());
        let bad = yaml.replace("cGFzcw==", "\"!!\"");
        assert!(
            PasswordSecret::from_yaml(&bad)
                .unwrap_err()
                .contains("not base64")
        );
    }
}
