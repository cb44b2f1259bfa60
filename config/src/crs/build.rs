//! Each kind's `spec` read into the model with MetalLB's checks (its
//! controller's `internal/config` and its webhooks'), then the rules that
//! span objects; every error is kept, with the object, the field and (for
//! files) the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::{BFD, BGP_ADV, COMMUNITY, L2_ADV, Object, PEER, POOL, Resources, Secrets};
use crate::addr::Entry;
use crate::configmap::read::{Ctx, Schema, Slot};
use crate::configmap::yaml::Kind;
use crate::duration::parse_go_duration;
use crate::{
    BfdProfile, BgpAdvertisement, Community, Config, ConfigErrors, ConfigWarning, DynamicAsn,
    ErrorKind, L2Advertisement, LabelRequirement, NodeSelector, Peer, Pool, SelectorOperator,
    ServiceAllocation,
};

static POOL_SPEC: Schema = Schema {
    what: "an IPAddressPool spec (mapping)",
    keys: &[
        "addresses",
        "autoAssign",
        "avoidBuggyIPs",
        "serviceAllocation",
    ],
    unsupported: &[],
};

static ALLOCATION: Schema = Schema {
    what: "a serviceAllocation (mapping)",
    keys: &[
        "priority",
        "namespaces",
        "namespaceSelectors",
        "serviceSelectors",
    ],
    unsupported: &[],
};

static SELECTOR: Schema = Schema {
    what: "a label selector (mapping)",
    keys: &["matchLabels", "matchExpressions"],
    unsupported: &[],
};

static EXPRESSION: Schema = Schema {
    what: "a match expression (mapping)",
    keys: &["key", "operator", "values"],
    unsupported: &[],
};

static PEER_V1BETA2: Schema = Schema {
    what: "a BGPPeer spec (mapping)",
    keys: &[
        "myASN",
        "peerASN",
        "localASN",
        "dynamicASN",
        "peerAddress",
        "interface",
        "sourceAddress",
        "peerPort",
        "holdTime",
        "keepaliveTime",
        "connectTime",
        "routerID",
        "nodeSelectors",
        "password",
        "passwordSecret",
        "bfdProfile",
        "enableGracefulRestart",
        "ebgpMultiHop",
        "vrf",
        "disableMP",
        "dualStackAddressFamily",
    ],
    unsupported: &[],
};

/// v1beta1 had fewer fields; a file written as v1beta1 with v1beta2 fields is
/// refused (the API server would prune them).
static PEER_V1BETA1: Schema = Schema {
    what: "a BGPPeer v1beta1 spec (mapping)",
    keys: &[
        "myASN",
        "peerASN",
        "peerAddress",
        "sourceAddress",
        "peerPort",
        "holdTime",
        "keepaliveTime",
        "routerID",
        "nodeSelectors",
        "password",
        "bfdProfile",
        "ebgpMultiHop",
    ],
    unsupported: &[],
};

static SECRET_REF: Schema = Schema {
    what: "a secret reference (mapping)",
    keys: &["name", "namespace"],
    unsupported: &[],
};

static BGP_ADV_SPEC: Schema = Schema {
    what: "a BGPAdvertisement spec (mapping)",
    keys: &[
        "aggregationLength",
        "aggregationLengthV6",
        "localPref",
        "communities",
        "ipAddressPools",
        "ipAddressPoolSelectors",
        "nodeSelectors",
        "peers",
        "serviceSelectors",
    ],
    unsupported: &[],
};

static L2_ADV_SPEC: Schema = Schema {
    what: "an L2Advertisement spec (mapping)",
    keys: &[
        "ipAddressPools",
        "ipAddressPoolSelectors",
        "nodeSelectors",
        "interfaces",
        "serviceSelectors",
    ],
    unsupported: &[],
};

static COMMUNITY_SPEC: Schema = Schema {
    what: "a Community spec (mapping)",
    keys: &["communities"],
    unsupported: &[],
};

static ALIAS: Schema = Schema {
    what: "a community alias (mapping with name and value)",
    keys: &["name", "value"],
    unsupported: &[],
};

static BFD_SPEC: Schema = Schema {
    what: "a BFDProfile spec (mapping)",
    keys: &[
        "receiveInterval",
        "transmitInterval",
        "detectMultiplier",
        "echoInterval",
        "echoMode",
        "passiveMode",
        "minimumTtl",
    ],
    unsupported: &[],
};

/// The reader's state: the errors so far (in [`Ctx`]) and the warnings.
struct Build {
    ctx: Ctx,
    warnings: Vec<ConfigWarning>,
    /// Community aliases whose definition is in error (already reported):
    /// advertisements that use them are not reported again.
    broken_aliases: BTreeSet<String>,
}

impl Build {
    fn warn(&mut self, o: &Object, field: &str, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            kind: o.kind().to_string(),
            name: o.name.clone(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Read one object with `read`, then give the errors it produced the
    /// object's file (or, from the API server, no line).
    fn object<T>(&mut self, o: &Object, read: impl FnOnce(&mut Self, Slot<'_, '_>) -> T) -> T {
        let before = self.ctx.errors.len();
        let at = Slot {
            path: format!("{}/{}: spec", o.kind(), o.name),
            line: o
                .spec
                .as_ref()
                .filter(|s| s.line > 0)
                .map_or(o.line, |s| s.line),
            node: o.spec.as_ref(),
        };
        let out = read(self, at);
        for e in &mut self.ctx.errors[before..] {
            e.file = o.file.clone();
            if o.file.is_none() {
                e.line = None;
            }
        }
        out
    }

    fn err(&mut self, at: &Slot<'_, '_>, kind: ErrorKind) {
        self.ctx.err(at.line, at.path.clone(), kind);
    }

    fn invalid(&mut self, at: &Slot<'_, '_>, msg: impl Into<String>) {
        self.err(at, ErrorKind::Invalid(msg.into()));
    }

    /// A string (a quoted or plain YAML scalar that is not a number, boolean
    /// or null; a JSON string). Absent, null or empty is `Ok(None)`.
    fn string(&mut self, at: &Slot<'_, '_>) -> Result<Option<String>, ()> {
        let Some(node) = at.value() else {
            return Ok(None);
        };
        match node.scalar() {
            Some(s) if s.kind == Kind::Str => {
                Ok(Some(s.text.to_string()).filter(|s| !s.is_empty()))
            }
            _ => {
                let msg = format!("invalid type: {}, expected a string", node.describe());
                self.err(at, ErrorKind::Yaml(msg));
                Err(())
            }
        }
    }

    /// A list of strings; a repeated entry is an error (MetalLB's
    /// `validateDuplicate`). Each with its slot.
    fn strings<'n, 'a>(&mut self, at: &Slot<'n, 'a>, what: &str) -> Vec<(String, Slot<'n, 'a>)> {
        let items = self.ctx.seq(at).unwrap_or_default();
        let mut out: Vec<(String, Slot<'n, 'a>)> = Vec::new();
        for item in items {
            match self.string(&item) {
                Ok(Some(s)) if out.iter().any(|(seen, _)| *seen == s) => {
                    self.invalid(&item, format!("duplicate definition of {what} {s:?}"));
                }
                Ok(Some(s)) => out.push((s, item)),
                Ok(None) => self.err(&item, ErrorKind::Missing),
                Err(()) => {}
            }
        }
        out
    }

    /// An integer in `min..=max`.
    fn integer(&mut self, at: &Slot<'_, '_>, min: i128, max: i128) -> Option<i128> {
        self.ctx.integer(at, min, max).ok().flatten()
    }

    /// A Go duration string (`metav1.Duration`): its text and value.
    fn duration(&mut self, at: &Slot<'_, '_>) -> Result<Option<(String, Duration)>, ()> {
        let Some(text) = self.string(at)? else {
            return Ok(None);
        };
        match parse_go_duration(&text) {
            None => {
                self.err(at, ErrorKind::InvalidDuration(text));
                Err(())
            }
            Some(ns) if ns < 0 => {
                self.err(at, ErrorKind::NegativeDuration(text));
                Err(())
            }
            Some(ns) => Ok(Some((text, Duration::from_nanos(ns as u64)))),
        }
    }

    /// An IP address string.
    fn ip(&mut self, at: &Slot<'_, '_>) -> Option<IpAddr> {
        let text = self.string(at).ok().flatten()?;
        match text.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(at, ErrorKind::InvalidIp(text));
                None
            }
        }
    }

    /// `[]metav1.LabelSelector`, with MetalLB's duplicate checks (a selector
    /// written twice, an expression twice in a selector, a value twice in an
    /// expression).
    fn selectors(&mut self, at: &Slot<'_, '_>, what: &str) -> Vec<NodeSelector> {
        let items = self.ctx.seq(at).unwrap_or_default();
        let mut out: Vec<NodeSelector> = Vec::new();
        let mut sorted: Vec<NodeSelector> = Vec::new();
        for item in items {
            let Some(sel) = self.selector(&item) else {
                continue;
            };
            let mut key = sel.clone();
            for e in &mut key.match_expressions {
                e.values.sort();
            }
            if sorted.contains(&key) {
                self.invalid(&item, format!("duplicate definition of {what}"));
                continue;
            }
            sorted.push(key);
            out.push(sel);
        }
        out
    }

    fn selector(&mut self, item: &Slot<'_, '_>) -> Option<NodeSelector> {
        let f = self.ctx.fields(item, &SELECTOR)?;
        let before = self.ctx.errors.len();
        let mut sel = NodeSelector::default();
        for (k, slot) in self.ctx.entries(&f.get("matchLabels")) {
            if let Ok(v) = self.string(&slot) {
                sel.match_labels.insert(k, v.unwrap_or_default());
            }
        }
        for e in self.ctx.seq(&f.get("matchExpressions")).unwrap_or_default() {
            let Some(req) = self.expression(&e) else {
                continue;
            };
            let mut key = req.clone();
            key.values.sort();
            if sel.match_expressions.iter().any(|r| {
                let mut r = r.clone();
                r.values.sort();
                r == key
            }) {
                self.invalid(&e, "duplicate definition of match expressions");
                continue;
            }
            sel.match_expressions.push(req);
        }
        (self.ctx.errors.len() == before).then_some(sel)
    }

    fn expression(&mut self, item: &Slot<'_, '_>) -> Option<LabelRequirement> {
        let f = self.ctx.fields(item, &EXPRESSION)?;
        let key_at = f.get("key");
        let key = match self.string(&key_at) {
            Ok(Some(k)) => Some(k),
            Ok(None) => {
                self.err(&key_at, ErrorKind::Missing);
                None
            }
            Err(()) => None,
        };
        let op_at = f.get("operator");
        let operator = match self.string(&op_at) {
            Ok(Some(op)) => match SelectorOperator::parse(&op) {
                Some(op) => Some(op),
                None => {
                    self.err(&op_at, ErrorKind::UnknownOperator(op));
                    None
                }
            },
            Ok(None) => {
                self.err(&op_at, ErrorKind::Missing);
                None
            }
            Err(()) => None,
        };
        let values_at = f.get("values");
        let values: Vec<String> = self
            .strings(&values_at, "match expression value in label selector")
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        LabelRequirement::new(key?, operator?, values)
            .map_err(|kind| self.err(&values_at, kind))
            .ok()
    }
}

/// Build and validate the configuration (see [`Config::from_resources`]).
pub(super) fn config(resources: &Resources, secrets: Secrets<'_>) -> Result<Config, ConfigErrors> {
    let mut b = Build {
        ctx: Ctx::default(),
        warnings: Vec::new(),
        broken_aliases: BTreeSet::new(),
    };
    b.ctx.errors.extend(resources.problems().iter().cloned());
    // MetalLB reads its own namespace only: a set spread over namespaces is
    // not one configuration.
    let mut namespaced = resources.all().iter().filter(|o| o.namespace.is_some());
    if let Some(first) = namespaced.next() {
        let ns = first.namespace.as_deref().unwrap_or_default();
        for o in namespaced.filter(|o| o.namespace.as_deref() != Some(ns)) {
            b.ctx.errors.push(crate::ConfigError {
                file: o.file.clone(),
                line: o.file.as_ref().map(|_| o.line),
                path: format!("{}/{}: metadata.namespace", o.kind(), o.name),
                kind: ErrorKind::Invalid(format!(
                    "{:?} is not the namespace of the other objects ({ns:?}, {}/{})",
                    o.namespace.as_deref().unwrap_or_default(),
                    first.kind(),
                    first.name
                )),
            });
        }
    }
    let of = |kind: usize| resources.all().iter().filter(move |o| o.kind == kind);

    let communities = communities(&mut b, of(COMMUNITY));
    let bfd_profiles = bfd_profiles(&mut b, of(BFD));

    let mut entries: Vec<Entry> = Vec::new();
    let mut pools: Vec<(Pool, &Object, usize)> = Vec::new();
    for o in of(POOL) {
        let first = entries.len();
        if let Some(p) = b.object(o, |b, at| pool(b, o, &at, &mut entries)) {
            pools.push((p, o, first));
        }
    }
    let pool_entries = |i: usize| -> &[Entry] {
        let first = pools[i].2;
        let end = pools.get(i + 1).map_or(entries.len(), |p| p.2);
        &entries[first..end]
    };
    let pool_entry_ranges: Vec<(usize, usize)> = (0..pools.len())
        .map(|i| {
            let e = pool_entries(i);
            let first = pools[i].2;
            (first, first + e.len())
        })
        .collect();

    let mut peers: Vec<Peer> = Vec::new();
    for o in of(PEER) {
        let p = b.object(o, |b, at| peer(b, o, &at, secrets, &bfd_profiles, &peers));
        if let Some(p) = p {
            peers.push(p);
        }
    }

    // Advertisements, in name order, into the pools they select.
    let pool_objects: Vec<&Object> = pools.iter().map(|p| p.1).collect();
    let mut models: Vec<Pool> = pools.iter().map(|p| p.0.clone()).collect();
    for o in of(BGP_ADV) {
        b.object(o, |b, at| {
            bgp_advertisement(
                b,
                o,
                &at,
                &Selection {
                    pools: &pool_objects,
                    entries: &entries,
                    ranges: &pool_entry_ranges,
                },
                &mut models,
                &communities,
                &peers,
                &bfd_profiles,
            )
        });
    }
    for o in of(L2_ADV) {
        b.object(o, |b, at| {
            l2_advertisement(b, o, &at, &pool_objects, &mut models)
        });
    }
    for (pool, o) in models.iter().zip(&pool_objects) {
        if pool.advertisements.is_empty() && pool.l2_advertisements.is_empty() {
            b.warn(
                o,
                "metadata.name",
                "no BGPAdvertisement or L2Advertisement selects this pool: its IPs are \
                 allocated but not announced (as MetalLB)",
            );
        }
    }

    if !b.ctx.errors.is_empty() {
        let mut errors = b.ctx.errors;
        errors.sort_by(|x, y| {
            (x.file.is_none(), &x.file, x.line).cmp(&(y.file.is_none(), &y.file, y.line))
        });
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        peers,
        pools: models,
        communities,
        bfd_profiles,
        warnings: b.warnings,
    })
}

/// `Community` objects: every alias, names unique across objects.
fn communities<'o>(
    b: &mut Build,
    objects: impl Iterator<Item = &'o Object>,
) -> BTreeMap<String, Community> {
    let mut out: BTreeMap<String, Community> = BTreeMap::new();
    for o in objects {
        b.object(o, |b, at| {
            let Some(f) = b.ctx.fields(&at, &COMMUNITY_SPEC) else {
                return;
            };
            for item in b.ctx.seq(&f.get("communities")).unwrap_or_default() {
                let Some(f) = b.ctx.fields(&item, &ALIAS) else {
                    continue;
                };
                let (name_at, value_at) = (f.get("name"), f.get("value"));
                let name = b.string(&name_at);
                let value = b.string(&value_at);
                let name = match name {
                    Ok(Some(n)) => n,
                    Ok(None) => {
                        b.err(&name_at, ErrorKind::Missing);
                        continue;
                    }
                    Err(()) => continue,
                };
                let value = match value {
                    Ok(Some(v)) => Community::parse(&v).map_err(|e| b.err(&value_at, e)),
                    Ok(None) => {
                        b.err(&value_at, ErrorKind::Missing);
                        Err(())
                    }
                    Err(()) => Err(()),
                };
                let Ok(value) = value else {
                    b.broken_aliases.insert(name);
                    continue;
                };
                if out.contains_key(&name) {
                    b.invalid(
                        &name_at,
                        format!("duplicate definition of community {name:?}"),
                    );
                    continue;
                }
                out.insert(name, value);
            }
        });
    }
    out
}

/// `BFDProfile` objects, MetalLB's defaults and ranges.
fn bfd_profiles<'o>(
    b: &mut Build,
    objects: impl Iterator<Item = &'o Object>,
) -> BTreeMap<String, BfdProfile> {
    let mut out = BTreeMap::new();
    for o in objects {
        let p = b.object(o, |b, at| {
            let f = b.ctx.fields(&at, &BFD_SPEC)?;
            let before = b.ctx.errors.len();
            let mut p = BfdProfile::with_defaults(&o.name);
            let int = |b: &mut Build, key: &str, min: u32, max: u32, dst: &mut u32| {
                if let Some(n) = b.integer(&f.get(key), min.into(), max.into()) {
                    *dst = n as u32;
                }
            };
            int(b, "receiveInterval", 10, 60000, &mut p.receive_interval_ms);
            int(
                b,
                "transmitInterval",
                10,
                60000,
                &mut p.transmit_interval_ms,
            );
            int(b, "detectMultiplier", 2, 255, &mut p.detect_multiplier);
            int(b, "echoInterval", 10, 60000, &mut p.echo_interval_ms);
            int(b, "minimumTtl", 1, 254, &mut p.minimum_ttl);
            p.echo_mode = b.ctx.boolean(&f.get("echoMode")).unwrap_or(false);
            p.passive_mode = b.ctx.boolean(&f.get("passiveMode")).unwrap_or(false);
            (b.ctx.errors.len() == before).then_some(p)
        });
        if let Some(p) = p {
            for (field, why) in p.unsupported_settings(true) {
                b.warn(o, &format!("spec.{field}"), why);
            }
            out.insert(o.name.clone(), p);
        }
    }
    out
}

/// One `IPAddressPool`; its address entries are added to `entries` (all
/// pools' entries so far, for the overlap check).
fn pool(b: &mut Build, o: &Object, at: &Slot<'_, '_>, entries: &mut Vec<Entry>) -> Option<Pool> {
    let f = b.ctx.fields(at, &POOL_SPEC)?;
    let before = b.ctx.errors.len();

    let addresses_at = f.get("addresses");
    let items = b.ctx.seq(&addresses_at);
    if matches!(&items, Ok(a) if a.is_empty()) {
        b.invalid(
            &addresses_at,
            "pool has no prefixes defined (addresses is required)",
        );
    }
    let first = entries.len();
    for a in items.unwrap_or_default() {
        let text = match b.string(&a) {
            Ok(Some(t)) => t,
            Ok(None) => {
                b.err(&a, ErrorKind::InvalidAddresses(String::new()));
                continue;
            }
            Err(()) => continue,
        };
        match Entry::read(text, a.path.clone(), &o.name, entries) {
            Ok((entry, overlap)) => {
                if let Some(kind) = overlap {
                    b.err(&a, kind);
                }
                entries.push(entry);
            }
            Err(e) => b.err(&a, e),
        }
    }
    let auto_assign = b.ctx.boolean(&f.get("autoAssign")).unwrap_or(true);
    let avoid_buggy_ips = b.ctx.boolean(&f.get("avoidBuggyIPs")).unwrap_or(false);

    let alloc_at = f.get("serviceAllocation");
    let service_allocation = if alloc_at.is_set() {
        let a = b.ctx.fields(&alloc_at, &ALLOCATION)?;
        let priority = b
            .integer(&a.get("priority"), i32::MIN.into(), i32::MAX.into())
            .unwrap_or(0) as i32;
        let namespaces = b
            .strings(&a.get("namespaces"), "namespaces")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let namespace_selectors = b.selectors(&a.get("namespaceSelectors"), "namespaceSelectors");
        let service_selectors = b.selectors(&a.get("serviceSelectors"), "serviceSelectors");
        Some(ServiceAllocation {
            priority,
            namespaces,
            namespace_selectors,
            service_selectors,
        })
    } else {
        None
    };

    if b.ctx.errors.len() != before {
        return None;
    }
    let ranges = entries[first..].iter().map(|e| e.range).collect();
    Some(Pool {
        auto_assign,
        avoid_buggy_ips,
        service_allocation,
        ..Pool::new(&o.name, ranges)
    })
}

/// One `BGPPeer` (v1beta2, or v1beta1 as written in a file).
fn peer(
    b: &mut Build,
    o: &Object,
    at: &Slot<'_, '_>,
    secrets: Secrets<'_>,
    bfd_profiles: &BTreeMap<String, BfdProfile>,
    earlier: &[Peer],
) -> Option<Peer> {
    let schema = if o.version == "v1beta1" {
        &PEER_V1BETA1
    } else {
        &PEER_V1BETA2
    };
    let f = b.ctx.fields(at, schema)?;
    let get = |key: &str| {
        if schema.keys.contains(&key) {
            f.get(key)
        } else {
            // A v1beta2 field on a v1beta1 object: never written (refused above).
            Slot {
                path: String::new(),
                line: 0,
                node: None,
            }
        }
    };
    let before = b.ctx.errors.len();

    let asn = |b: &mut Build, key: &str| b.integer(&get(key), 0, u32::MAX.into()).map(|n| n as u32);
    let my_asn_at = get("myASN");
    let my_asn = asn(b, "myASN").unwrap_or(0);
    if my_asn == 0 && b.ctx.errors.len() == before {
        b.invalid(
            &my_asn_at,
            "missing local ASN (myASN is required and not 0)",
        );
    }
    let peer_asn_at = get("peerASN");
    let peer_asn = asn(b, "peerASN").unwrap_or(0);
    let local_asn = b
        .integer(&get("localASN"), 1, u32::MAX.into())
        .map(|n| n as u32);
    let dyn_at = get("dynamicASN");
    let dynamic_asn = match b.string(&dyn_at) {
        Ok(Some(s)) => match s.as_str() {
            "internal" => Some(DynamicAsn::Internal),
            "external" => Some(DynamicAsn::External),
            _ => {
                b.invalid(
                    &dyn_at,
                    format!("invalid dynamicASN {s:?} (expected internal or external)"),
                );
                None
            }
        },
        _ => None,
    };
    if peer_asn == 0 && !dyn_at.is_set() {
        b.invalid(
            &peer_asn_at,
            "missing peer ASN and dynamicASN (one is required)",
        );
    }
    if peer_asn != 0 && dyn_at.is_set() {
        b.invalid(&dyn_at, "both peerASN and dynamicASN are set");
    }
    let multihop_at = get("ebgpMultiHop");
    let ebgp_multihop = b.ctx.boolean(&multihop_at).unwrap_or(false);
    if ebgp_multihop && peer_asn != 0 && peer_asn == my_asn {
        b.invalid(
            &multihop_at,
            "ebgpMultiHop set for an iBGP peer (peerASN equals myASN)",
        );
    }

    let address_at = get("peerAddress");
    let interface_at = get("interface");
    let address = b.ip(&address_at);
    let interface = b.string(&interface_at).ok().flatten();
    match (address_at.is_set(), interface_at.is_set()) {
        (false, false) => b.invalid(&address_at, "peer has no peerAddress or interface"),
        (true, true) => b.invalid(&interface_at, "peer has both peerAddress and interface"),
        _ => {}
    }
    let port_at = get("peerPort");
    let max_port = if o.version == "v1beta1" { 0 } else { 1 };
    let port = b
        .integer(&port_at, max_port, 16384)
        .filter(|n| *n != 0)
        .map_or(179, |n| n as u16);

    // Timers (MetalLB's parseTimers): hold alone → keepalive hold/3; keepalive
    // alone → hold 3×keepalive; hold (truncated to seconds) 0 or ≥ 3s;
    // keepalive not above hold.
    let hold_at = get("holdTime");
    let keepalive_at = get("keepaliveTime");
    let hold = b.duration(&hold_at);
    let keepalive = b.duration(&keepalive_at);
    let (hold_time, keepalive_time) = match (hold, keepalive) {
        (Ok(h), Ok(k)) => {
            let (hold, ka) = match (h.map(|h| h.1), k.map(|k| k.1)) {
                (None, None) => (Duration::from_secs(90), Duration::from_secs(30)),
                (Some(h), Some(k)) => (h, k),
                (Some(h), None) => (h, h / 3),
                (None, Some(k)) => (k * 3, k),
            };
            let rounded = Duration::from_secs(hold.as_secs());
            if rounded != Duration::ZERO && rounded < Duration::from_secs(3) {
                let at = if hold_at.is_set() {
                    &hold_at
                } else {
                    &keepalive_at
                };
                b.err(at, ErrorKind::HoldTime(format!("{hold:?}")));
            } else if ka > hold {
                let kind = ErrorKind::KeepaliveTooLong {
                    keepalive: format!("{ka:?}"),
                    hold,
                };
                b.err(&keepalive_at, kind);
            }
            (rounded, ka)
        }
        _ => (Duration::from_secs(90), Duration::from_secs(30)),
    };
    let connect_at = get("connectTime");
    let connect_time = match b.duration(&connect_at) {
        Ok(Some((text, d))) => {
            if d.subsec_nanos() != 0 {
                b.invalid(
                    &connect_at,
                    format!("connect time {text:?} should contain a whole number of seconds"),
                );
            } else if !(1..=65535).contains(&d.as_secs()) {
                b.invalid(
                    &connect_at,
                    format!("connect time {text:?} should be between 1 second and 65535"),
                );
            }
            Some(d)
        }
        _ => None,
    };

    let router_at = get("routerID");
    let router_id = match b.string(&router_at) {
        Ok(Some(s)) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Some(a),
            Ok(IpAddr::V6(_)) | Err(_) => {
                b.err(&router_at, ErrorKind::NotIpv4(s));
                None
            }
        },
        _ => None,
    };
    let source_address = b.ip(&get("sourceAddress"));
    let node_selectors = b.selectors(&get("nodeSelectors"), "nodeSelectors");

    // Password: written, or from a basic-auth Secret (not both).
    let password_at = get("password");
    let mut password = b.string(&password_at).ok().flatten();
    let secret_at = get("passwordSecret");
    let mut secret_name = None;
    if secret_at.is_set()
        && let Some(s) = b.ctx.fields(&secret_at, &SECRET_REF)
    {
        let name_at = s.get("name");
        let ns_at = s.get("namespace");
        let name = b.string(&name_at).ok().flatten();
        if let Ok(Some(ns)) = b.string(&ns_at)
            && let Some(own) = &o.namespace
            && ns != *own
        {
            b.invalid(
                &ns_at,
                format!("the Secret must be in the peer's namespace {own:?}, not {ns:?}"),
            );
        }
        if name.is_none() && ns_at.is_set() {
            b.err(&name_at, ErrorKind::Missing);
        }
        secret_name = name.map(|n| (n, name_at));
    }
    if let Some((name, name_at)) = secret_name {
        if password.is_some() {
            b.invalid(
                &secret_at,
                "can not have both password and passwordSecret set",
            );
        } else if let Secrets::Given(found) = secrets {
            match found.get(&name) {
                None => b.invalid(&name_at, format!("Secret {name:?} not found")),
                Some(s) if s.type_.as_deref() != Some("kubernetes.io/basic-auth") => b.invalid(
                    &name_at,
                    format!(
                        "Secret {name:?} has type {:?}, expected \"kubernetes.io/basic-auth\"",
                        s.type_.as_deref().unwrap_or("")
                    ),
                ),
                Some(s) => match &s.password {
                    None => b.invalid(&name_at, format!("Secret {name:?} has no key \"password\"")),
                    Some(bytes) => match String::from_utf8(bytes.clone()) {
                        Ok(p) => password = Some(p).filter(|p| !p.is_empty()),
                        Err(_) => b.invalid(
                            &name_at,
                            format!("the password in Secret {name:?} is not UTF-8"),
                        ),
                    },
                },
            }
        }
    }

    let bfd_at = get("bfdProfile");
    let bfd_profile = b.string(&bfd_at).ok().flatten();
    if let Some(p) = &bfd_profile
        && !bfd_profiles.contains_key(p)
    {
        b.invalid(
            &bfd_at,
            format!("peer references non existing BFDProfile {p:?}"),
        );
    }
    let graceful_restart = b
        .ctx
        .boolean(&get("enableGracefulRestart"))
        .unwrap_or(false);
    let vrf = b.string(&get("vrf")).ok().flatten();
    let disable_mp = b.ctx.boolean(&get("disableMP")).unwrap_or(false);
    let dual_stack = b
        .ctx
        .boolean(&get("dualStackAddressFamily"))
        .unwrap_or(false);

    if b.ctx.errors.len() != before {
        return None;
    }
    let peer = Peer {
        address: address.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        port,
        my_asn,
        peer_asn,
        hold_time,
        keepalive_time,
        router_id,
        source_address,
        password,
        ebgp_multihop,
        node_selectors,
        name: Some(o.name.clone()),
        dynamic_asn,
        connect_time,
        bfd_profile,
        graceful_restart,
        vrf,
        disable_mp,
        interface,
        local_asn,
    };

    // Two peers that would both run on the same nodes with the same address,
    // port and VRF are one session twice (MetalLB's FRR rule, with "share a
    // node" known only when the node selectors are written the same).
    if let Some(first) = earlier.iter().find(|e| {
        e.address == peer.address
            && e.interface == peer.interface
            && e.port == peer.port
            && e.vrf == peer.vrf
            && e.node_selectors == peer.node_selectors
    }) {
        let at = if address_at.is_set() {
            &address_at
        } else {
            &interface_at
        };
        b.invalid(
            at,
            format!(
                "peer already exists: BGPPeer {:?} has the same address, port, VRF and nodeSelectors",
                first.name.as_deref().unwrap_or("")
            ),
        );
        return None;
    }

    if peer.vrf.is_some() {
        b.warn(o, "spec.vrf", peer.needs_unsupported().unwrap_or_default());
    } else if peer.interface.is_some() {
        b.warn(
            o,
            "spec.interface",
            peer.needs_unsupported().unwrap_or_default(),
        );
    } else if peer.local_asn.is_some() {
        b.warn(
            o,
            "spec.localASN",
            peer.needs_unsupported().unwrap_or_default(),
        );
    }
    if dual_stack {
        b.warn(
            o,
            "spec.dualStackAddressFamily",
            "dualStackAddressFamily is accepted but not acted on: ferrolb announces each \
             service IP over the session of any family its multiprotocol capabilities allow",
        );
    }
    Some(peer)
}

/// The pools and their address entries, for advertisements to select.
struct Selection<'s, 'o> {
    pools: &'s [&'o Object],
    entries: &'s [Entry],
    /// Per pool, the range of its entries in `entries`.
    ranges: &'s [(usize, usize)],
}

/// The pools (indices) an advertisement selects: all without `ipAddressPools`
/// and `ipAddressPoolSelectors`, else those named or whose labels match; each
/// once. Unknown names are warnings (MetalLB skips them: the pool may come later).
fn selected_pools(
    b: &mut Build,
    o: &Object,
    f: &crate::configmap::read::Fields<'_, '_>,
    pools: &[&Object],
) -> Vec<usize> {
    let names = b.strings(&f.get("ipAddressPools"), "ipAddressPools");
    let selectors = b.selectors(&f.get("ipAddressPoolSelectors"), "ipAddressPoolSelectors");
    if names.is_empty() && selectors.is_empty() {
        return (0..pools.len()).collect();
    }
    let mut out = BTreeSet::new();
    for (name, at) in &names {
        match pools.iter().position(|p| p.name == *name) {
            Some(i) => {
                out.insert(i);
            }
            None => b.warn(
                o,
                at.path.split_once(": ").map_or("", |p| p.1),
                format!("no IPAddressPool {name:?}: nothing to advertise for it (yet)"),
            ),
        }
    }
    for (i, p) in pools.iter().enumerate() {
        if selectors.iter().any(|s| s.matches(&p.labels)) {
            out.insert(i);
        }
    }
    out.into_iter().collect()
}

#[allow(clippy::too_many_arguments)]
fn bgp_advertisement(
    b: &mut Build,
    o: &Object,
    at: &Slot<'_, '_>,
    sel: &Selection<'_, '_>,
    pools: &mut [Pool],
    aliases: &BTreeMap<String, Community>,
    peers: &[Peer],
    bfd_profiles: &BTreeMap<String, BfdProfile>,
) {
    let Some(f) = b.ctx.fields(at, &BGP_ADV_SPEC) else {
        return;
    };
    let before = b.ctx.errors.len();
    let mut ad = BgpAdvertisement::default();
    let v4_at = f.get("aggregationLength");
    let v6_at = f.get("aggregationLengthV6");
    for (slot, min, max, dst) in [
        (&v4_at, 1, 32u8, &mut ad.aggregation_length),
        (&v6_at, 0, 128u8, &mut ad.aggregation_length_v6),
    ] {
        if let Ok(Some(n)) = b.ctx.integer(slot, i64::MIN.into(), i64::MAX.into()) {
            if (min..=i128::from(max)).contains(&n) {
                *dst = n as u8;
            } else if n > i128::from(max) {
                b.err(
                    slot,
                    ErrorKind::AggregationOutOfRange { len: n as i64, max },
                );
            } else {
                b.invalid(
                    slot,
                    format!("aggregation length {n} must be in {min}..={max}"),
                );
            }
        }
    }
    ad.local_pref = b
        .integer(&f.get("localPref"), 0, u32::MAX.into())
        .map(|n| n as u32);
    for (c, c_at) in b.strings(&f.get("communities"), "community") {
        if b.broken_aliases.contains(&c) {
            continue;
        }
        let value = if let Some(v) = aliases.get(&c) {
            Ok(*v)
        } else if c.contains(':') {
            Community::parse(&c)
        } else {
            Err(ErrorKind::Invalid(format!(
                "{c:?} is neither a community value (A:B, large:A:B:C) nor the name of an alias in a Community"
            )))
        };
        match value {
            Ok(Community::Standard(v)) => ad.communities.push(v),
            Ok(Community::Large(x, y, z)) => ad.large_communities.push((x, y, z)),
            Err(e) => b.err(&c_at, e),
        }
    }
    ad.communities.sort_unstable();
    ad.communities.dedup();
    ad.large_communities.sort_unstable();
    ad.large_communities.dedup();
    ad.node_selectors = b.selectors(&f.get("nodeSelectors"), "nodeSelectors");
    for (name, p_at) in b.strings(&f.get("peers"), "peers") {
        if !peers
            .iter()
            .any(|p| p.name.as_deref() == Some(name.as_str()))
        {
            b.warn(
                o,
                p_at.path.split_once(": ").map_or("", |p| p.1),
                format!(
                    "no BGPPeer {name:?}: this advertisement goes to no peer by that name (yet)"
                ),
            );
        }
        ad.peers.push(name);
    }
    let service_at = f.get("serviceSelectors");
    ad.service_selectors = b.selectors(&service_at, "serviceSelectors");
    if !ad.service_selectors.is_empty()
        && (ad.aggregation_length != 32 || ad.aggregation_length_v6 != 128)
    {
        b.invalid(
            &service_at,
            "serviceSelectors and aggregationLength/aggregationLengthV6 are mutually exclusive \
             (only 32 and 128 may be written with serviceSelectors)",
        );
    }
    let selected = selected_pools(b, o, &f, sel.pools);
    if b.ctx.errors.len() != before {
        return;
    }

    for i in selected {
        let pool_name = &sel.pools[i].name;
        let (first, end) = sel.ranges[i];
        let entries = &sel.entries[first..end];
        let mut ok = true;
        // MetalLB: per addresses entry, the aggregation length must not be
        // shorter than the entry's shortest CIDR prefix.
        for e in entries {
            let (len, slot) = if e.range.is_ipv4() {
                (ad.aggregation_length, &v4_at)
            } else {
                (ad.aggregation_length_v6, &v6_at)
            };
            if len < e.lowest_prefix {
                let kind = ErrorKind::AggregationTooShort {
                    len,
                    prefix: e.lowest_prefix,
                    entry: format!("{} (IPAddressPool {pool_name})", e.text),
                };
                let slot = if slot.is_set() { slot } else { at };
                b.err(slot, kind);
                ok = false;
            }
        }
        // MetalLB: two advertisements of a pool that would send the same prefix
        // to the same peer from the same node must agree on LOCAL_PREF.
        // Advertisements with serviceSelectors are left out (which Services
        // they share is known only at run time: the speaker checks each
        // Service, `conflictingAdvertisements`).
        let (v4, v6) = (
            entries.iter().any(|e| e.range.is_ipv4()),
            entries.iter().any(|e| !e.range.is_ipv4()),
        );
        if ad.service_selectors.is_empty()
            && let Some(other) = pools[i].advertisements.iter().find(|other| {
                other.service_selectors.is_empty()
                    && ad.local_pref_conflicts(other, v4, v6)
                    && (ad.node_selectors.is_empty()
                        || other.node_selectors.is_empty()
                        || ad
                            .node_selectors
                            .iter()
                            .any(|s| other.node_selectors.contains(s)))
            })
        {
            b.invalid(
                &f.get("localPref"),
                format!(
                    "local preference {} conflicts with {} set by another BGPAdvertisement of \
                     IPAddressPool {pool_name} for the same prefixes, peers and nodes",
                    ad.local_pref.unwrap_or(0),
                    other.local_pref.unwrap_or(0)
                ),
            );
            ok = false;
        }
        // MetalLB: BFD echo mode cannot go with IPv6 advertisements.
        if v6 {
            let echo = peers.iter().find(|p| {
                (ad.peers.is_empty() || p.name.as_ref().is_some_and(|n| ad.peers.contains(n)))
                    && p.bfd_profile
                        .as_ref()
                        .and_then(|n| bfd_profiles.get(n))
                        .is_some_and(|bfd| bfd.echo_mode)
            });
            if let Some(p) = echo {
                b.invalid(
                    at,
                    format!(
                        "IPAddressPool {pool_name} has IPv6 addresses and this advertisement goes to \
                         BGPPeer {:?}, whose BFD profile has echo mode on, which is not possible",
                        p.name.as_deref().unwrap_or("")
                    ),
                );
                ok = false;
            }
        }
        if ok {
            pools[i].advertisements.push(ad.clone());
        }
    }
}

fn l2_advertisement(
    b: &mut Build,
    o: &Object,
    at: &Slot<'_, '_>,
    pool_objects: &[&Object],
    pools: &mut [Pool],
) {
    let Some(f) = b.ctx.fields(at, &L2_ADV_SPEC) else {
        return;
    };
    let before = b.ctx.errors.len();
    let node_selectors = b.selectors(&f.get("nodeSelectors"), "nodeSelectors");
    let interfaces: Vec<String> = b
        .strings(&f.get("interfaces"), "interfaces")
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let service_selectors = b.selectors(&f.get("serviceSelectors"), "serviceSelectors");
    let selected = selected_pools(b, o, &f, pool_objects);
    if b.ctx.errors.len() != before {
        return;
    }
    let ad = L2Advertisement {
        node_selectors,
        interfaces,
        service_selectors,
    };
    let mut names = Vec::new();
    for i in selected {
        names.push(pools[i].name.clone());
        // MetalLB keeps one of advertisements that select the same nodes,
        // interfaces and Services (service selectors in any order).
        let same = |x: &L2Advertisement| {
            x.node_selectors == ad.node_selectors
                && x.interfaces.iter().collect::<BTreeSet<_>>()
                    == ad.interfaces.iter().collect::<BTreeSet<_>>()
                && x.service_selectors.len() == ad.service_selectors.len()
                && x.service_selectors
                    .iter()
                    .all(|s| ad.service_selectors.contains(s))
        };
        if !pools[i].l2_advertisements.iter().any(same) {
            pools[i].l2_advertisements.push(ad.clone());
        }
    }
    if names.is_empty() {
        b.warn(
            o,
            "spec",
            "the advertisement selects no pool: nothing is answered for because of it",
        );
    }
}
