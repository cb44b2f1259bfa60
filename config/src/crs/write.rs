//! Writing a configuration as `metallb.io` custom resources: what MetalLB's
//! `configmaptocrs` tool does for a v0.12 ConfigMap, as a pure function (text
//! in, text out) behind `ferrolb convert`.
//!
//! The objects, in this order, all in one namespace:
//! - one `BGPPeer` (v1beta2) per peer, named `peer1`, `peer2`… (its own name
//!   when the peer has one);
//! - one `IPAddressPool` per pool, named after the pool;
//! - one `BGPAdvertisement` per advertisement of each pool (`bgpadvertisement1`…,
//!   counted across pools, `ipAddressPools: [pool]`);
//! - one `L2Advertisement` per layer 2 advertisement (`l2advertisement1`…);
//! - one `BFDProfile` per profile;
//! - one `Community` named `communities` with every alias, when there are any.
//!
//! Numbered names are zero-padded when there are ten or more of a kind
//! (`peer01`…`peer12`), so that name order — the order the custom-resource
//! front end reads them in — is the order of the source.
//!
//! Only what differs from the custom resources' defaults is written. Values
//! are the validated model's, not the text as written: an `addresses` entry
//! is written as the CIDR it is (`10.0.0.7/24` → `10.0.0.0/24`) or as an
//! `a-b` range, durations in Go's notation (`1m30s`), and advertisements
//! carry community values (`"65535:65281"`), each followed by a comment
//! naming its alias when exactly one alias has that value; the aliases
//! themselves stay available in the `Community` object.
//!
//! Pool names that are not valid Kubernetes object names (DNS-1123
//! subdomains) are renamed as MetalLB's tool does (lower case, other
//! characters as `-`, leading and trailing non-alphanumerics dropped) and
//! reported in [`Converted::renamed`]: a Service that asks for such a pool by
//! name must then be updated.
//!
//! What the custom resources cannot say is refused with a [`ConvertError`]
//! rather than written wrong: pool names no object name can be made of (or
//! two that become one), two peers the ConfigMap keeps apart but that are one
//! session twice as `BGPPeer`s, a community alias with an empty name. Anything
//! written reads back through [`Config::from_resources`] as the same
//! configuration, up to peer names, warnings, order and `ebgp-multihop` on
//! iBGP peers (dropped: MetalLB's resources refuse it there, and it changes
//! nothing); the `configmap` and `crs` fuzz targets check it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::configmap::yaml;
use crate::{AddrRange, Community, Config, ConfigErrors, NodeSelector, Peer, Pool};

/// The namespace MetalLB (and ferrolb's manifests) use.
pub const DEFAULT_NAMESPACE: &str = "metallb-system";

/// Why a configuration could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The ConfigMap is not valid: every problem, as `ferrolb validate` reports them.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// A pool name that cannot be made a Kubernetes object name.
    #[error("pool {0:?}: no Kubernetes object name can be made of it (it has no letter or digit)")]
    Unnameable(String),
    /// Two peers that differ only in fields a `BGPPeer` may not differ in
    /// alone (same address, interface, port, VRF and node selectors).
    #[error(
        "peers {first} and {second} have the same address, port, VRF and node selectors: \
         as custom resources they are one session twice, which is refused; keep one of them"
    )]
    SamePeer {
        /// The earlier peer's object name.
        first: String,
        /// The later peer's object name.
        second: String,
    },
    /// A `bgp-communities` alias with an empty name: a `Community` object's
    /// aliases need one.
    #[error(
        "the bgp-communities alias with an empty name (value {0}) cannot be a Community \
         object's alias, which needs a name: rename it"
    )]
    UnnamedCommunity(String),
    /// Two pool names that become the same object name.
    #[error("pools {first:?} and {second:?} would both be named {name:?}")]
    NameClash {
        /// The earlier pool.
        first: String,
        /// The later pool.
        second: String,
        /// The object name both become.
        name: String,
    },
}

/// A pool renamed because its name is not a valid Kubernetes object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// Kind of the object (`IPAddressPool`).
    pub kind: &'static str,
    /// The name in the source.
    pub from: String,
    /// The object's name.
    pub to: String,
}

/// The custom resources a ConfigMap converts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Multi-document YAML (`---` between objects), starting with comments
    /// naming the source.
    pub yaml: String,
    /// Where the configuration came from: `ConfigMap metallb-system/config`,
    /// or `bare config text`.
    pub source: String,
    /// The namespace every object is in.
    pub namespace: String,
    /// How many objects `yaml` holds.
    pub objects: usize,
    /// Pools that got another name.
    pub renamed: Vec<Rename>,
}

/// Convert a v0.12 ConfigMap manifest (or the bare config text under its
/// `config` key) to the equivalent `metallb.io` objects.
///
/// The namespace is `namespace` when given, else the ConfigMap's own, else
/// [`DEFAULT_NAMESPACE`]. Invalid input gives the same errors as
/// [`Config::parse_document`].
pub fn configmap_to_resources(
    document: &str,
    namespace: Option<&str>,
) -> Result<Converted, ConvertError> {
    let config = Config::parse_document(document).map_err(ConvertError::Invalid)?;
    let (cm_namespace, cm_name) = configmap_metadata(document);
    let source = if is_manifest(document) {
        format!(
            "ConfigMap {}/{}",
            cm_namespace.as_deref().unwrap_or("(no namespace)"),
            cm_name.as_deref().unwrap_or("(no name)")
        )
    } else {
        "bare config text".to_string()
    };
    let namespace = namespace
        .map(str::to_string)
        .or(cm_namespace)
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let header =
        format!("# metallb.io custom resources converted by `ferrolb convert` from {source}.\n");
    let (yaml, objects, renamed) = write_resources(&config, &namespace, &header)?;
    Ok(Converted {
        yaml,
        source,
        namespace,
        objects,
        renamed,
    })
}

/// Write `config` as `metallb.io` objects in `namespace` (see the module
/// docs), after `header` (comment lines). Returns the text, the number of
/// objects and the renamed pools.
pub fn write_resources(
    config: &Config,
    namespace: &str,
    header: &str,
) -> Result<(String, usize, Vec<Rename>), ConvertError> {
    let pool_names = object_names(&config.pools)?;
    let peer_names = peer_names(&config.peers)?;
    let mut w = Writer {
        out: header.to_string(),
        namespace,
        objects: 0,
    };

    for (peer, name) in config.peers.iter().zip(&peer_names) {
        w.begin("v1beta2", "BGPPeer", name, None);
        write_peer(&mut w.out, peer);
    }

    for (pool, name) in config.pools.iter().zip(&pool_names) {
        let note = (name.to != pool.name).then(|| {
            format!(
                "renamed from {:?}: not a valid Kubernetes object name",
                pool.name
            )
        });
        w.begin("v1beta1", "IPAddressPool", &name.to, note.as_deref());
        write_pool(&mut w.out, pool);
    }

    let ads = config.pools.iter().map(|p| p.advertisements.len()).sum();
    let ad_width = width(ads);
    let mut n = 0;
    for (pool, name) in config.pools.iter().zip(&pool_names) {
        for ad in &pool.advertisements {
            n += 1;
            let ad_name = format!("bgpadvertisement{n:0ad_width$}");
            w.begin("v1beta1", "BGPAdvertisement", &ad_name, None);
            w.out.push_str("spec:\n");
            if ad.aggregation_length != 32 {
                let _ = writeln!(w.out, "  aggregationLength: {}", ad.aggregation_length);
            }
            if ad.aggregation_length_v6 != 128 {
                let _ = writeln!(w.out, "  aggregationLengthV6: {}", ad.aggregation_length_v6);
            }
            if !ad.communities.is_empty() || !ad.large_communities.is_empty() {
                w.out.push_str("  communities:\n");
                let values = ad
                    .communities
                    .iter()
                    .map(|&c| Community::Standard(c))
                    .chain(
                        ad.large_communities
                            .iter()
                            .map(|&(a, b, c)| Community::Large(a, b, c)),
                    );
                for c in values {
                    let _ = write!(w.out, "  - {}", quote(&c.to_string()));
                    let mut aliases = config.communities.iter().filter(|(_, v)| **v == c);
                    if let (Some((alias, _)), None) = (aliases.next(), aliases.next()) {
                        // One line, whatever the alias holds (a newline would end the comment).
                        let _ = write!(w.out, " # {}", alias.escape_debug());
                    }
                    w.out.push('\n');
                }
            }
            let _ = writeln!(w.out, "  ipAddressPools:\n  - {}", quote(&name.to));
            if let Some(pref) = ad.local_pref {
                let _ = writeln!(w.out, "  localPref: {pref}");
            }
            write_selectors(&mut w.out, "  ", "nodeSelectors", &ad.node_selectors);
            write_list(&mut w.out, "  ", "peers", &ad.peers);
            write_selectors(&mut w.out, "  ", "serviceSelectors", &ad.service_selectors);
        }
    }

    let l2s = config.pools.iter().map(|p| p.l2_advertisements.len()).sum();
    let l2_width = width(l2s);
    let mut n = 0;
    for (pool, name) in config.pools.iter().zip(&pool_names) {
        for l2 in &pool.l2_advertisements {
            n += 1;
            let l2_name = format!("l2advertisement{n:0l2_width$}");
            w.begin("v1beta1", "L2Advertisement", &l2_name, None);
            w.out.push_str("spec:\n");
            write_list(&mut w.out, "  ", "interfaces", &l2.interfaces);
            let _ = writeln!(w.out, "  ipAddressPools:\n  - {}", quote(&name.to));
            write_selectors(&mut w.out, "  ", "nodeSelectors", &l2.node_selectors);
            write_selectors(&mut w.out, "  ", "serviceSelectors", &l2.service_selectors);
        }
    }

    for (name, bfd) in &config.bfd_profiles {
        w.begin("v1beta1", "BFDProfile", name, None);
        let _ = write!(
            w.out,
            "spec:\n  detectMultiplier: {}\n  echoInterval: {}\n  echoMode: {}\n  minimumTtl: {}\n  \
             passiveMode: {}\n  receiveInterval: {}\n  transmitInterval: {}\n",
            bfd.detect_multiplier,
            bfd.echo_interval_ms,
            bfd.echo_mode,
            bfd.minimum_ttl,
            bfd.passive_mode,
            bfd.receive_interval_ms,
            bfd.transmit_interval_ms
        );
    }

    if !config.communities.is_empty() {
        // A Community alias's name is required (an empty string is no name).
        if let Some(value) = config.communities.get("") {
            return Err(ConvertError::UnnamedCommunity(value.to_string()));
        }
        w.begin("v1beta1", "Community", "communities", None);
        w.out.push_str("spec:\n  communities:\n");
        for (alias, value) in &config.communities {
            let _ = writeln!(
                w.out,
                "  - name: {}\n    value: {}",
                quote(alias),
                quote(&value.to_string())
            );
        }
    }

    let renamed = config
        .pools
        .iter()
        .zip(pool_names)
        .filter(|(p, n)| p.name != n.to)
        .map(|(_, n)| n)
        .collect();
    Ok((w.out, w.objects, renamed))
}

/// The object text being built.
struct Writer<'a> {
    out: String,
    namespace: &'a str,
    objects: usize,
}

impl Writer<'_> {
    /// Start an object: separator, optional comment, apiVersion, kind, metadata.
    fn begin(&mut self, version: &str, kind: &str, name: &str, note: Option<&str>) {
        if self.objects > 0 {
            self.out.push_str("---\n");
        }
        self.objects += 1;
        if let Some(note) = note {
            let _ = writeln!(self.out, "# {note}");
        }
        let _ = write!(
            self.out,
            "apiVersion: metallb.io/{version}\nkind: {kind}\nmetadata:\n  name: {}\n  namespace: {}\n",
            quote(name),
            quote(self.namespace)
        );
    }
}

fn write_peer(out: &mut String, p: &Peer) {
    out.push_str("spec:\n");
    if let Some(profile) = &p.bfd_profile {
        let _ = writeln!(out, "  bfdProfile: {}", quote(profile));
    }
    if let Some(t) = p.connect_time {
        let _ = writeln!(out, "  connectTime: {}", go_duration(t));
    }
    if p.disable_mp {
        out.push_str("  disableMP: true\n");
    }
    match p.dynamic_asn {
        Some(crate::DynamicAsn::Internal) => out.push_str("  dynamicASN: internal\n"),
        Some(crate::DynamicAsn::External) => out.push_str("  dynamicASN: external\n"),
        None => {}
    }
    if p.ebgp_multihop && p.my_asn == p.peer_asn && p.dynamic_asn.is_none() {
        // MetalLB's resources refuse it for iBGP, where it changes nothing
        // (iBGP packets carry TTL 255 anyway).
        out.push_str(
            "  # ebgp-multihop dropped: not allowed (and without effect) for an iBGP peer\n",
        );
    } else if p.ebgp_multihop {
        out.push_str("  ebgpMultiHop: true\n");
    }
    if p.graceful_restart {
        out.push_str("  enableGracefulRestart: true\n");
    }
    let _ = writeln!(out, "  holdTime: {}", go_duration(p.hold_time));
    if let Some(interface) = &p.interface {
        let _ = writeln!(out, "  interface: {}", quote(interface));
    }
    let _ = writeln!(out, "  keepaliveTime: {}", go_duration(p.keepalive_time));
    if let Some(asn) = p.local_asn {
        let _ = writeln!(out, "  localASN: {asn}");
    }
    let _ = writeln!(out, "  myASN: {}", p.my_asn);
    write_selectors(out, "  ", "nodeSelectors", &p.node_selectors);
    if let Some(password) = &p.password {
        let _ = writeln!(out, "  password: {}", quote(password));
    }
    if p.dynamic_asn.is_none() {
        let _ = writeln!(out, "  peerASN: {}", p.peer_asn);
    }
    // An unnumbered peer (interface) has no address; both is an error.
    if p.interface.is_none() {
        let _ = writeln!(out, "  peerAddress: {}", quote(&p.address.to_string()));
    }
    let _ = writeln!(out, "  peerPort: {}", p.port);
    if let Some(id) = p.router_id {
        let _ = writeln!(out, "  routerID: {}", quote(&id.to_string()));
    }
    if let Some(src) = p.source_address {
        let _ = writeln!(out, "  sourceAddress: {}", quote(&src.to_string()));
    }
    if let Some(vrf) = &p.vrf {
        let _ = writeln!(out, "  vrf: {}", quote(vrf));
    }
}

fn write_pool(out: &mut String, pool: &Pool) {
    out.push_str("spec:\n  addresses:\n");
    for r in &pool.ranges {
        let _ = writeln!(out, "  - {}", quote(&range_text(r)));
    }
    if !pool.auto_assign {
        out.push_str("  autoAssign: false\n");
    }
    if pool.avoid_buggy_ips {
        out.push_str("  avoidBuggyIPs: true\n");
    }
    if let Some(sa) = &pool.service_allocation {
        let empty = sa.priority == 0
            && sa.namespaces.is_empty()
            && sa.namespace_selectors.is_empty()
            && sa.service_selectors.is_empty();
        if empty {
            // Present but empty is not absent: keep it so.
            out.push_str("  serviceAllocation: {}\n");
            return;
        }
        out.push_str("  serviceAllocation:\n");
        write_list(out, "    ", "namespaces", &sa.namespaces);
        write_selectors(out, "    ", "namespaceSelectors", &sa.namespace_selectors);
        if sa.priority != 0 {
            let _ = writeln!(out, "    priority: {}", sa.priority);
        }
        write_selectors(out, "    ", "serviceSelectors", &sa.service_selectors);
    }
}

/// An address range as a CIDR when it is exactly one, else `start-end`.
fn range_text(r: &AddrRange) -> String {
    match r.to_cidrs().as_slice() {
        [one] => one.to_string(),
        _ => format!("{}-{}", r.start, r.end),
    }
}

/// `key:` and a block list of strings, nothing when empty.
fn write_list(out: &mut String, indent: &str, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}{key}:");
    for item in items {
        let _ = writeln!(out, "{indent}- {}", quote(item));
    }
}

/// `key:` and Kubernetes label selectors, nothing when empty.
fn write_selectors(out: &mut String, indent: &str, key: &str, selectors: &[NodeSelector]) {
    if selectors.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}{key}:");
    for s in selectors {
        if s.match_labels.is_empty() && s.match_expressions.is_empty() {
            let _ = writeln!(out, "{indent}- {{}}");
            continue;
        }
        let mut lead = format!("{indent}- ");
        let inner = format!("{indent}  ");
        if !s.match_expressions.is_empty() {
            let _ = writeln!(out, "{lead}matchExpressions:");
            lead.clone_from(&inner);
            for e in &s.match_expressions {
                let _ = writeln!(out, "{inner}- key: {}", quote(&e.key));
                let _ = writeln!(out, "{inner}  operator: {}", e.operator.as_str());
                if !e.values.is_empty() {
                    let _ = writeln!(out, "{inner}  values:");
                    for v in &e.values {
                        let _ = writeln!(out, "{inner}  - {}", quote(v));
                    }
                }
            }
        }
        if !s.match_labels.is_empty() {
            let _ = writeln!(out, "{lead}matchLabels:");
            for (k, v) in &s.match_labels {
                let _ = writeln!(out, "{inner}  {}: {}", quote(k), quote(v));
            }
        }
    }
}

/// Digits needed to number `n` objects: 1 below ten, so that names are
/// MetalLB's (`peer1`), more when zero-padding keeps name order.
fn width(n: usize) -> usize {
    n.max(1).to_string().len()
}

/// The object name of each peer, in order (its own, else `peer1`…). Two
/// peers with the same address, interface, port, VRF and node selectors are
/// refused: the ConfigMap keeps peers that differ in any other field (ASN,
/// password…), but two such `BGPPeer`s are one session twice, which the
/// custom-resource front end (as MetalLB's webhook) rejects.
fn peer_names(peers: &[Peer]) -> Result<Vec<String>, ConvertError> {
    let width = width(peers.len());
    let names: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.name
                .clone()
                .unwrap_or_else(|| format!("peer{:0width$}", i + 1))
        })
        .collect();
    for (i, p) in peers.iter().enumerate() {
        if let Some(j) = peers[..i].iter().position(|e| {
            e.address == p.address
                && e.interface == p.interface
                && e.port == p.port
                && e.vrf == p.vrf
                && e.node_selectors == p.node_selectors
        }) {
            return Err(ConvertError::SamePeer {
                first: names[j].clone(),
                second: names[i].clone(),
            });
        }
    }
    Ok(names)
}

/// The object name of each pool, in order, and whether it changed.
fn object_names(pools: &[Pool]) -> Result<Vec<Rename>, ConvertError> {
    let mut names: Vec<Rename> = Vec::with_capacity(pools.len());
    for p in pools {
        let to = if is_object_name(&p.name) {
            p.name.clone()
        } else {
            k8s_name(&p.name).ok_or_else(|| ConvertError::Unnameable(p.name.clone()))?
        };
        if let Some(first) = names.iter().find(|n| n.to == to) {
            return Err(ConvertError::NameClash {
                first: first.from.clone(),
                second: p.name.clone(),
                name: to,
            });
        }
        names.push(Rename {
            kind: "IPAddressPool",
            from: p.name.clone(),
            to,
        });
    }
    Ok(names)
}

/// A DNS-1123 subdomain: what Kubernetes accepts as a custom resource's name.
pub fn is_object_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// `name` made a DNS-1123 subdomain, as MetalLB's converter does it: lower
/// case, `_` (and anything else not allowed) as `-`, no leading or trailing
/// separators. `None` when nothing is left.
fn k8s_name(name: &str) -> Option<String> {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.') => c,
            _ => '-',
        })
        .collect();
    // Collapse what would make empty or dash-edged labels.
    let labels: Vec<&str> = mapped
        .split('.')
        .map(|l| l.trim_matches('-'))
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = labels.join(".");
    out.truncate(253);
    let out = out.trim_end_matches(['-', '.']).to_string();
    is_object_name(&out).then_some(out)
}

/// A Go duration (`time.Duration.String` style units, all exact): `1m30s`,
/// `500ms`, `1s500ms`, `0s`.
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let mut s = String::new();
    let (h, m, sec) = (secs / 3600, secs / 60 % 60, secs % 60);
    for (n, unit) in [(h, "h"), (m, "m"), (sec, "s")] {
        if n > 0 {
            let _ = write!(s, "{n}{unit}");
        }
    }
    let (ms, us, ns) = (nanos / 1_000_000, nanos / 1000 % 1000, nanos % 1000);
    for (n, unit) in [(ms, "ms"), (us, "us"), (ns, "ns")] {
        if n > 0 {
            let _ = write!(s, "{n}{unit}");
        }
    }
    s
}

/// A string as a YAML scalar that every YAML reader (1.1 or 1.2) reads back as
/// the same string: plain when it is a name or an IPv4 address/CIDR/range,
/// double-quoted otherwise.
pub fn quote(s: &str) -> String {
    let name_like = s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    // At least two dots: never a number, never a YAML 1.1 base-60 value.
    let ipv4_like = s.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && s.bytes().filter(|&b| b == b'.').count() >= 2
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'/' | b'-'));
    if name_like || ipv4_like {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

/// Whether `document` is a manifest (some document has a `kind`).
fn is_manifest(document: &str) -> bool {
    yaml::load(document).is_ok_and(|docs| docs.iter().flatten().any(|d| d.get("kind").is_some()))
}

/// `metadata.namespace` and `metadata.name` of the ConfigMap in `document`
/// that holds the config (the first with `data.config`), if it is a manifest.
fn configmap_metadata(document: &str) -> (Option<String>, Option<String>) {
    let Ok(docs) = yaml::load(document) else {
        return (None, None);
    };
    let text = |n: Option<(&yaml::Node<'_>, &yaml::Node<'_>)>| {
        n.and_then(|(_, v)| v.scalar().filter(|_| !v.is_null()))
            .map(|s| s.text.to_string())
    };
    for d in docs.iter().flatten() {
        let is_cm = text(d.get("kind")).as_deref() == Some("ConfigMap");
        let has_config = d
            .get("data")
            .is_some_and(|(_, data)| data.get("config").is_some());
        if is_cm && has_config {
            let meta = d.get("metadata").map(|(_, m)| m);
            let field = |k: &str| text(meta.and_then(|m| m.get(k)));
            return (field("namespace"), field("name"));
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_go_notation_round_trip() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600 * 25 + 1), "25h1s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_nanos(1_001_001), "1ms1us1ns"),
        ] {
            assert_eq!(go_duration(d), s);
            let back = crate::parse_go_duration(s).unwrap();
            assert_eq!(back, d.as_nanos() as i128, "{s}");
        }
    }

    #[test]
    fn quoting_keeps_strings_strings() {
        for (s, q) in [
            ("default", "default"),
            ("kubernetes.io/hostname", "kubernetes.io/hostname"),
            ("10.0.0.1", "10.0.0.1"),
            ("192.168.1.0/24", "192.168.1.0/24"),
            ("10.0.0.1-10.0.0.9", "10.0.0.1-10.0.0.9"),
            ("on", "\"on\""),
            ("No", "\"No\""),
            ("007", "\"007\""),
            ("1.50", "\"1.50\""),
            ("64512:1", "\"64512:1\""),
            ("fc00::1", "\"fc00::1\""),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("quote\"d", "\"quote\\\"d\""),
        ] {
            assert_eq!(quote(s), q, "{s}");
        }
    }

    #[test]
    fn object_names_follow_kubernetes() {
        assert!(is_object_name("default"));
        assert!(is_object_name("007"));
        assert!(is_object_name("a.b-c"));
        assert!(!is_object_name("Capital"));
        assert!(!is_object_name("under_score"));
        assert!(!is_object_name("-lead"));
        assert!(!is_object_name(""));
        assert_eq!(
            k8s_name("Capitalized_Pool").as_deref(),
            Some("capitalized-pool")
        );
        assert_eq!(k8s_name("__x__").as_deref(), Some("x"));
        assert_eq!(k8s_name("a..B").as_deref(), Some("a.b"));
        assert_eq!(k8s_name("___"), None);
        assert_eq!(k8s_name(&"X".repeat(300)).unwrap().len(), 253);
    }

    #[test]
    fn renamed_and_clashing_pools() {
        let cfg = Config::parse(
            "address-pools:\n- {name: My_Pool, protocol: layer2, addresses: [10.0.0.0/24]}\n",
        )
        .unwrap();
        let (text, objects, renamed) = write_resources(&cfg, "ns", "").unwrap();
        assert_eq!(objects, 2);
        assert_eq!(
            renamed,
            [Rename {
                kind: "IPAddressPool",
                from: "My_Pool".into(),
                to: "my-pool".into()
            }]
        );
        assert!(text.contains("# renamed from \"My_Pool\""), "{text}");
        assert!(text.contains("  ipAddressPools:\n  - my-pool\n"), "{text}");

        let cfg = Config::parse(
            "address-pools:\n- {name: my-pool, protocol: layer2, addresses: [10.0.0.0/24]}\n\
             - {name: My_Pool, protocol: layer2, addresses: [10.0.1.0/24]}\n",
        )
        .unwrap();
        assert_eq!(
            write_resources(&cfg, "ns", "").unwrap_err(),
            ConvertError::NameClash {
                first: "my-pool".into(),
                second: "My_Pool".into(),
                name: "my-pool".into()
            }
        );
        let cfg = Config::parse(
            "address-pools:\n- {name: \"__\", protocol: layer2, addresses: [10.0.0.0/24]}\n",
        )
        .unwrap();
        assert_eq!(
            write_resources(&cfg, "ns", "").unwrap_err(),
            ConvertError::Unnameable("__".into())
        );
    }

    #[test]
    fn the_metallb_example_as_objects() {
        let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: lb\n  name: config\n\
                   data:\n  config: |\n    peers:\n    - peer-address: 10.0.0.1\n      peer-asn: 64501\n\
                   \x20     my-asn: 64500\n      hold-time: 120s\n    address-pools:\n    - name: default\n\
                   \x20     protocol: bgp\n      addresses: [198.51.100.0/24, fc00::1-fc00::5]\n\
                   \x20     bgp-advertisements:\n      - {aggregation-length: 24, aggregation-length-v6: 127, localpref: 100, communities: [no-advertise, \"1:2\"]}\n\
                   \x20   bgp-communities:\n      no-advertise: 65535:65282\n";
        let c = configmap_to_resources(doc, None).unwrap();
        assert_eq!(c.source, "ConfigMap lb/config");
        assert_eq!(c.namespace, "lb");
        assert_eq!(c.objects, 4);
        assert!(c.renamed.is_empty());
        assert_eq!(
            c.yaml,
            "# metallb.io custom resources converted by `ferrolb convert` from ConfigMap lb/config.\n\
             apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: peer1\n  namespace: lb\n\
             spec:\n  holdTime: 2m\n  keepaliveTime: 40s\n  myASN: 64500\n  peerASN: 64501\n  \
             peerAddress: 10.0.0.1\n  peerPort: 179\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: default\n  namespace: lb\n\
             spec:\n  addresses:\n  - 198.51.100.0/24\n  - \"fc00::1-fc00::5\"\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: bgpadvertisement1\n  namespace: lb\n\
             spec:\n  aggregationLength: 24\n  aggregationLengthV6: 127\n  communities:\n  - \"1:2\"\n  - \"65535:65282\" # no-advertise\n\
             \x20 ipAddressPools:\n  - default\n  localPref: 100\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata:\n  name: communities\n  namespace: lb\n\
             spec:\n  communities:\n  - name: no-advertise\n    value: \"65535:65282\"\n"
        );
        // --namespace wins; bare text names no ConfigMap.
        let c = configmap_to_resources("peers: []\n", Some("x")).unwrap();
        assert_eq!(
            (c.source.as_str(), c.namespace.as_str(), c.objects),
            ("bare config text", "x", 0)
        );
        let c = configmap_to_resources("peers: []\n", None).unwrap();
        assert_eq!(c.namespace, DEFAULT_NAMESPACE);
        assert!(matches!(
            configmap_to_resources("peers: 1\n", None),
            Err(ConvertError::Invalid(_))
        ));
    }

    #[test]
    fn ten_or_more_are_zero_padded() {
        let peers: String = (1..=10)
            .map(|i| format!("- {{peer-address: 10.0.0.{i}, peer-asn: 1, my-asn: 2}}\n"))
            .collect();
        let cfg = Config::parse(&format!("peers:\n{peers}")).unwrap();
        let (text, objects, _) = write_resources(&cfg, "ns", "").unwrap();
        assert_eq!(objects, 10);
        assert!(text.contains("name: peer01\n") && text.contains("name: peer10\n"));
        assert!(!text.contains("name: peer1\n"));
    }
}
