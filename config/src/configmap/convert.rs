//! The v0.12 format's levels (root, peer, node selector, pool, advertisement) read
//! from the YAML tree into the model, with MetalLB's checks and defaults, every
//! error collected with its path and line.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::read::{Ctx, Schema, Slot, join};
use super::yaml::{Node, Value};
use crate::addr::Entry;
use crate::duration::parse_go_duration;
use crate::{
    AddrRange, BfdProfile, BgpAdvertisement, Community, Config, ConfigError, ConfigWarning,
    ErrorKind, L2Advertisement, LabelRequirement, NodeSelector, Peer, Pool, Protocol,
    SelectorOperator,
};

static ROOT: Schema = Schema {
    what: "a mapping with peers, address-pools, bgp-communities and bfd-profiles",
    keys: &["peers", "address-pools", "bgp-communities", "bfd-profiles"],
    unsupported: &[],
};

static BFD_PROFILE: Schema = Schema {
    what: "a bfd profile (mapping)",
    keys: &[
        "name",
        "receive-interval",
        "transmit-interval",
        "detect-multiplier",
        "echo-interval",
        "echo-mode",
        "passive-mode",
        "minimum-ttl",
    ],
    unsupported: &[],
};

static PEER: Schema = Schema {
    what: "a peer (mapping)",
    keys: &[
        "peer-address",
        "peer-asn",
        "my-asn",
        "peer-port",
        "hold-time",
        "keepalive-time",
        "router-id",
        "source-address",
        "password",
        "ebgp-multihop",
        "node-selectors",
        "bfd-profile",
        "graceful-restart",
    ],
    unsupported: &[],
};

static SELECTOR: Schema = Schema {
    what: "a node selector (mapping)",
    keys: &["match-labels", "match-expressions"],
    unsupported: &[],
};

static EXPRESSION: Schema = Schema {
    what: "a match expression (mapping)",
    keys: &["key", "operator", "values"],
    unsupported: &[],
};

static POOL: Schema = Schema {
    what: "an address pool (mapping)",
    keys: &[
        "name",
        "protocol",
        "addresses",
        "auto-assign",
        "avoid-buggy-ips",
        "bgp-advertisements",
    ],
    unsupported: &[],
};

static ADVERTISEMENT: Schema = Schema {
    what: "a bgp advertisement (mapping)",
    keys: &[
        "aggregation-length",
        "aggregation-length-v6",
        "localpref",
        "communities",
    ],
    unsupported: &[],
};

/// Read one document's root node (`None`: an empty document, an empty config).
/// Errors come back in line order.
pub(crate) fn config(root: Option<&Node<'_>>) -> Result<Config, Vec<ConfigError>> {
    let mut ctx = Ctx::default();
    let at = Slot {
        path: String::new(),
        line: root.map_or(1, |n| n.line),
        node: root,
    };
    let Some(fields) = ctx.fields(&at, &ROOT) else {
        return Err(ctx.errors);
    };
    let communities = communities(&mut ctx, &fields.get("bgp-communities"));
    let (bfd_profiles, warnings) = bfd_profiles(&mut ctx, &fields.get("bfd-profiles"));
    let peers = peers(&mut ctx, &fields.get("peers"), &bfd_profiles);
    let pools = pools(&mut ctx, &fields.get("address-pools"), &communities);

    if ctx.errors.is_empty() {
        Ok(Config {
            peers,
            pools,
            communities,
            bfd_profiles,
            warnings,
        })
    } else {
        let mut errors = ctx.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(errors)
    }
}

fn communities(ctx: &mut Ctx, at: &Slot<'_, '_>) -> BTreeMap<String, Community> {
    let mut out = BTreeMap::new();
    for (name, slot) in ctx.entries(at) {
        let Ok(text) = ctx.text(&slot) else { continue };
        match Community::parse(text.as_deref().unwrap_or("")) {
            Ok(c) => {
                out.insert(name, c);
            }
            Err(e) => ctx.err(slot.line, slot.path, e),
        }
    }
    out
}

/// `bfd-profiles` (MetalLB's FRR mode): names unique and non-empty, MetalLB's
/// ranges and defaults; the settings ferrolb does not act on come back as
/// warnings.
fn bfd_profiles(
    ctx: &mut Ctx,
    at: &Slot<'_, '_>,
) -> (BTreeMap<String, BfdProfile>, Vec<ConfigWarning>) {
    let mut out = BTreeMap::new();
    let mut warnings = Vec::new();
    let Ok(items) = ctx.seq(at) else {
        return (out, warnings);
    };
    let mut paths: HashMap<String, String> = HashMap::new();
    for item in items {
        let Some(f) = ctx.fields(&item, &BFD_PROFILE) else {
            continue;
        };
        let before = ctx.errors.len();
        let name_at = f.get("name");
        let name = match ctx.text(&name_at) {
            Ok(Some(n)) if !n.is_empty() => n,
            Ok(_) => {
                ctx.err(name_at.line, name_at.path, ErrorKind::Missing);
                continue;
            }
            Err(()) => continue,
        };
        let mut p = BfdProfile::with_defaults(&name);
        let mut int = |key: &str, min: u32, max: u32, dst: &mut u32| {
            if let Ok(Some(n)) = ctx.integer(&f.get(key), min.into(), max.into()) {
                *dst = n as u32;
            }
        };
        int("receive-interval", 10, 60000, &mut p.receive_interval_ms);
        int("transmit-interval", 10, 60000, &mut p.transmit_interval_ms);
        int("detect-multiplier", 2, 255, &mut p.detect_multiplier);
        int("echo-interval", 10, 60000, &mut p.echo_interval_ms);
        int("minimum-ttl", 1, 254, &mut p.minimum_ttl);
        p.echo_mode = ctx.boolean(&f.get("echo-mode")).unwrap_or(false);
        p.passive_mode = ctx.boolean(&f.get("passive-mode")).unwrap_or(false);
        if ctx.errors.len() != before {
            continue;
        }
        if let Some(first) = paths.get(&name) {
            let msg = format!("duplicate bfd profile name {name:?} (first defined at {first})");
            ctx.err(name_at.line, name_at.path, ErrorKind::Invalid(msg));
            continue;
        }
        for (field, message) in p.unsupported_settings(false) {
            warnings.push(ConfigWarning {
                kind: "ConfigMap".to_string(),
                name: "config".to_string(),
                field: join(&item.path, field),
                message,
            });
        }
        paths.insert(name.clone(), item.path.clone());
        out.insert(name, p);
    }
    (out, warnings)
}

fn peers(
    ctx: &mut Ctx,
    at: &Slot<'_, '_>,
    bfd_profiles: &BTreeMap<String, BfdProfile>,
) -> Vec<Peer> {
    let Ok(items) = ctx.seq(at) else {
        return Vec::new();
    };
    let mut peers: Vec<Peer> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for item in items {
        let before = ctx.errors.len();
        let Some(peer) = peer(ctx, &item, bfd_profiles) else {
            continue;
        };
        if ctx.errors.len() != before {
            continue;
        }
        // MetalLB rejects a peer only when it equals an earlier one in every parsed
        // field (reflect.DeepEqual); peers that differ in anything are accepted.
        if let Some(j) = peers.iter().position(|p| same_parsed_peer(p, &peer)) {
            ctx.err(
                item.line,
                item.path,
                ErrorKind::DuplicatePeer(paths[j].clone()),
            );
            continue;
        }
        peers.push(peer);
        paths.push(item.path);
    }
    peers
}

/// MetalLB's notion of two equal peers: its parsed `Peer` structs are deeply equal.
/// Where the Go values normalise something ours keep apart, the comparison does too:
/// an IPv4-mapped IPv6 address is the IPv4 address (`net.IP` holds both in 16
/// bytes), and node selectors compare as the label requirements they become (no
/// selectors ≡ one empty selector; requirements in key order).
fn same_parsed_peer(a: &Peer, b: &Peer) -> bool {
    let Peer {
        address,
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
        bfd_profile,
        graceful_restart,
        // Not in the v0.12 format: always the defaults here.
        name: _,
        dynamic_asn: _,
        connect_time: _,
        vrf: _,
        disable_mp: _,
        interface: _,
        local_asn: _,
    } = a;
    address.to_canonical() == b.address.to_canonical()
        && *port == b.port
        && *my_asn == b.my_asn
        && *peer_asn == b.peer_asn
        && *hold_time == b.hold_time
        && *keepalive_time == b.keepalive_time
        && *router_id == b.router_id
        && source_address.map(|s| s.to_canonical()) == b.source_address.map(|s| s.to_canonical())
        && *password == b.password
        && *ebgp_multihop == b.ebgp_multihop
        && *bfd_profile == b.bfd_profile
        && *graceful_restart == b.graceful_restart
        && selector_requirements(node_selectors) == selector_requirements(&b.node_selectors)
}

/// Node selectors as MetalLB holds them after parsing: one list of requirements
/// per selector, `match-labels` as `key = value`, sorted by key.
fn selector_requirements(selectors: &[NodeSelector]) -> Vec<Vec<(&str, &str, &[String])>> {
    if selectors.is_empty() {
        return vec![Vec::new()];
    }
    selectors
        .iter()
        .map(|s| {
            let mut reqs: Vec<(&str, &str, &[String])> = s
                .match_labels
                .iter()
                .map(|(k, v)| (k.as_str(), "=", std::slice::from_ref(v)))
                .chain(
                    s.match_expressions
                        .iter()
                        .map(|e| (e.key.as_str(), e.operator.as_str(), e.values.as_slice())),
                )
                .collect();
            reqs.sort();
            reqs
        })
        .collect()
}

fn ip(ctx: &mut Ctx, at: &Slot<'_, '_>) -> Result<Option<IpAddr>, ()> {
    let Some(s) = ctx.text(at)?.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(Some(ip)),
        Err(_) => {
            ctx.err(at.line, at.path.clone(), ErrorKind::InvalidIp(s));
            Err(())
        }
    }
}

/// A Go duration, as written and as a non-negative [`Duration`].
fn duration(ctx: &mut Ctx, at: &Slot<'_, '_>) -> Result<Option<(String, Duration)>, ()> {
    let Some(s) = ctx.text(at)? else {
        return Ok(None);
    };
    match parse_go_duration(&s) {
        None => {
            ctx.err(at.line, at.path.clone(), ErrorKind::InvalidDuration(s));
            Err(())
        }
        Some(n) if n < 0 => {
            ctx.err(at.line, at.path.clone(), ErrorKind::NegativeDuration(s));
            Err(())
        }
        Some(n) => Ok(Some((s, Duration::from_nanos(n as u64)))),
    }
}

fn asn(ctx: &mut Ctx, at: &Slot<'_, '_>) -> Option<u32> {
    match ctx.integer(at, 0, u32::MAX.into()) {
        Ok(None) => {
            ctx.err(at.line, at.path.clone(), ErrorKind::Missing);
            None
        }
        Ok(Some(0)) => {
            ctx.err(at.line, at.path.clone(), ErrorKind::ZeroAsn);
            None
        }
        Ok(Some(n)) => u32::try_from(n).ok(),
        Err(()) => None,
    }
}

fn peer(
    ctx: &mut Ctx,
    item: &Slot<'_, '_>,
    bfd_profiles: &BTreeMap<String, BfdProfile>,
) -> Option<Peer> {
    let f = ctx.fields(item, &PEER)?;

    let address_at = f.get("peer-address");
    let address = match ip(ctx, &address_at) {
        Ok(Some(a)) => Some(a),
        Ok(None) => {
            ctx.err(address_at.line, address_at.path, ErrorKind::Missing);
            None
        }
        Err(()) => None,
    };
    let peer_asn = asn(ctx, &f.get("peer-asn"));
    let my_asn = asn(ctx, &f.get("my-asn"));
    let port = match ctx.integer(&f.get("peer-port"), 0, u16::MAX.into()) {
        Ok(Some(n)) if n != 0 => u16::try_from(n).unwrap_or(179),
        _ => 179,
    };

    // Hold time: default 90s, truncated to whole seconds, 0 or >= 3s (MetalLB).
    let mut timers_ok = true;
    let hold_at = f.get("hold-time");
    let hold_time = match duration(ctx, &hold_at) {
        Ok(None) => Duration::from_secs(90),
        Ok(Some((s, d))) => {
            let secs = Duration::from_secs(d.as_secs());
            if secs != Duration::ZERO && secs < Duration::from_secs(3) {
                ctx.err(hold_at.line, hold_at.path, ErrorKind::HoldTime(s));
                timers_ok = false;
            }
            secs
        }
        Err(()) => {
            timers_ok = false;
            Duration::from_secs(90)
        }
    };
    let keepalive_at = f.get("keepalive-time");
    let keepalive_time = match duration(ctx, &keepalive_at) {
        Ok(None) => hold_time / 3,
        Ok(Some((s, d))) => {
            if timers_ok && d > hold_time {
                let kind = ErrorKind::KeepaliveTooLong {
                    keepalive: s,
                    hold: hold_time,
                };
                ctx.err(keepalive_at.line, keepalive_at.path, kind);
            }
            d
        }
        Err(()) => hold_time / 3,
    };

    let router_at = f.get("router-id");
    let router_id = match ctx.text(&router_at) {
        Ok(Some(s)) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Some(a),
            Ok(IpAddr::V6(_)) | Err(_) => {
                ctx.err(router_at.line, router_at.path, ErrorKind::NotIpv4(s));
                None
            }
        },
        _ => None,
    };
    let source_address = ip(ctx, &f.get("source-address")).ok().flatten();
    let password = ctx
        .text(&f.get("password"))
        .ok()
        .flatten()
        .filter(|s| !s.is_empty());
    let ebgp_multihop = ctx.boolean(&f.get("ebgp-multihop")).unwrap_or(false);
    let node_selectors = selectors(ctx, &f.get("node-selectors"));
    // Not a MetalLB v0.12 key (its ConfigMap has none; the custom resources'
    // BGPPeer has `enableGracefulRestart`): ferrolb's, as the issue asks.
    let graceful_restart = ctx.boolean(&f.get("graceful-restart")).unwrap_or(false);
    let bfd_at = f.get("bfd-profile");
    let bfd_profile = ctx.text(&bfd_at).ok().flatten().filter(|s| !s.is_empty());
    if let Some(p) = &bfd_profile
        && !bfd_profiles.contains_key(p)
    {
        let msg = format!("peer references non existing bfd profile {p:?}");
        ctx.err(bfd_at.line, bfd_at.path, ErrorKind::Invalid(msg));
    }

    Some(Peer {
        address: address?,
        port,
        my_asn: my_asn?,
        peer_asn: peer_asn?,
        hold_time,
        keepalive_time,
        router_id,
        source_address,
        password,
        ebgp_multihop,
        node_selectors,
        bfd_profile,
        graceful_restart,
        ..Peer::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, 0)
    })
}

fn selectors(ctx: &mut Ctx, at: &Slot<'_, '_>) -> Vec<NodeSelector> {
    let Ok(items) = ctx.seq(at) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(f) = ctx.fields(&item, &SELECTOR) else {
            continue;
        };
        let mut sel = NodeSelector::default();
        for (k, slot) in ctx.entries(&f.get("match-labels")) {
            if let Ok(v) = ctx.text(&slot) {
                sel.match_labels.insert(k, v.unwrap_or_default());
            }
        }
        let exprs = ctx.seq(&f.get("match-expressions")).unwrap_or_default();
        for e in exprs {
            if let Some(req) = expression(ctx, &e) {
                sel.match_expressions.push(req);
            }
        }
        out.push(sel);
    }
    out
}

fn expression(ctx: &mut Ctx, item: &Slot<'_, '_>) -> Option<LabelRequirement> {
    let f = ctx.fields(item, &EXPRESSION)?;
    let key_at = f.get("key");
    let key = match ctx.text(&key_at) {
        Ok(Some(k)) if !k.is_empty() => Some(k),
        Ok(_) => {
            ctx.err(key_at.line, key_at.path, ErrorKind::Missing);
            None
        }
        Err(()) => None,
    };
    let operator = ctx.one_of(
        &f.get("operator"),
        SelectorOperator::parse,
        ErrorKind::UnknownOperator,
    );
    let values_at = f.get("values");
    let mut values = Vec::new();
    let Ok(items) = ctx.seq(&values_at) else {
        return None;
    };
    for v in items {
        if let Ok(v) = ctx.text(&v) {
            values.push(v.unwrap_or_default());
        }
    }
    LabelRequirement::new(key?, operator?, values)
        .map_err(|kind| ctx.err(values_at.line, values_at.path, kind))
        .ok()
}

fn pools(ctx: &mut Ctx, at: &Slot<'_, '_>, communities: &BTreeMap<String, Community>) -> Vec<Pool> {
    let Ok(items) = ctx.seq(at) else {
        return Vec::new();
    };
    let mut pools = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut all_entries: Vec<Entry> = Vec::new();
    for item in items {
        let before = ctx.errors.len();
        let Some(f) = ctx.fields(&item, &POOL) else {
            continue;
        };

        let name_at = f.get("name");
        let name = match ctx.text(&name_at) {
            Ok(Some(n)) if !n.is_empty() => {
                if let Some(first) = names.get(&n) {
                    let kind = ErrorKind::DuplicatePool(n.clone(), first.clone());
                    ctx.err(name_at.line, name_at.path, kind);
                } else {
                    names.insert(n.clone(), name_at.path);
                }
                n
            }
            Ok(_) => {
                ctx.err(name_at.line, name_at.path, ErrorKind::Missing);
                String::new()
            }
            Err(()) => String::new(),
        };
        let protocol = ctx.one_of(
            &f.get("protocol"),
            |s| match s {
                "bgp" => Some(Protocol::Bgp),
                "layer2" => Some(Protocol::Layer2),
                _ => None,
            },
            ErrorKind::UnknownProtocol,
        );

        // Addresses: each a CIDR or a range; none may overlap any earlier entry.
        let addresses_at = f.get("addresses");
        let addresses = ctx.seq(&addresses_at);
        if matches!(&addresses, Ok(a) if a.is_empty()) {
            ctx.err(addresses_at.line, addresses_at.path, ErrorKind::Missing);
        }
        let first_entry = all_entries.len();
        for a in addresses.unwrap_or_default() {
            let text = match ctx.text(&a) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    ctx.err(a.line, a.path, ErrorKind::InvalidAddresses(String::new()));
                    continue;
                }
                Err(()) => continue,
            };
            match Entry::read(text, a.path.clone(), &name, &all_entries) {
                Ok((entry, overlap)) => {
                    if let Some(kind) = overlap {
                        ctx.err(a.line, a.path, kind);
                    }
                    all_entries.push(entry);
                }
                Err(e) => ctx.err(a.line, a.path, e),
            }
        }
        let entries = &all_entries[first_entry..];

        let auto_assign = ctx.boolean(&f.get("auto-assign")).unwrap_or(true);
        let avoid_buggy_ips = ctx.boolean(&f.get("avoid-buggy-ips")).unwrap_or(false);

        let ads_at = f.get("bgp-advertisements");
        let items = ctx.seq(&ads_at).unwrap_or_default();
        let mut advertisements = Vec::new();
        if protocol == Some(Protocol::Layer2) {
            if !items.is_empty() {
                ctx.err(ads_at.line, ads_at.path, ErrorKind::AdvertisementsOnLayer2);
            }
        } else {
            // Each advertisement as written, to find duplicates as MetalLB does.
            let mut written: Vec<(AsWritten, String)> = Vec::new();
            for item in items {
                let before = ctx.errors.len();
                let Some((ad, as_written)) = advertisement(ctx, &item, entries, communities) else {
                    continue;
                };
                if ctx.errors.len() != before {
                    continue;
                }
                if let Some((_, first)) = written.iter().find(|(w, _)| *w == as_written) {
                    let kind = ErrorKind::DuplicateAdvertisement(first.clone());
                    ctx.err(item.line, item.path, kind);
                    continue;
                }
                written.push((as_written, item.path));
                advertisements.push(ad);
            }
            if advertisements.is_empty() {
                advertisements.push(BgpAdvertisement::default());
            }
        }

        if ctx.errors.len() != before {
            continue;
        }
        let Some(protocol) = protocol else { continue };
        let ranges: Vec<AddrRange> = entries.iter().map(|e| e.range).collect();
        let l2_advertisements = match protocol {
            Protocol::Layer2 => vec![L2Advertisement::default()],
            Protocol::Bgp => Vec::new(),
        };
        pools.push(Pool {
            auto_assign,
            avoid_buggy_ips,
            advertisements,
            l2_advertisements,
            ..Pool::new(&name, ranges)
        });
    }
    pools
}

/// An advertisement as MetalLB v0.12 decodes it before any check (its raw struct),
/// which is what its duplicate rule compares: absent (or null) is not the same as
/// a value, `communities: []` is not the same as no communities, the order of
/// communities matters, and `0x20` is the same as `32`.
#[derive(Debug, PartialEq, Eq)]
struct AsWritten {
    aggregation_length: Option<i128>,
    aggregation_length_v6: Option<i128>,
    localpref: Option<i128>,
    communities: Option<Vec<String>>,
}

fn aggregation(ctx: &mut Ctx, at: &Slot<'_, '_>, max: u8) -> Result<Option<u8>, ()> {
    let Some(n) = ctx.integer(at, i64::MIN.into(), i64::MAX.into())? else {
        return Ok(None);
    };
    match u8::try_from(n) {
        Ok(len) if len <= max => Ok(Some(len)),
        _ => {
            let kind = ErrorKind::AggregationOutOfRange { len: n as i64, max };
            ctx.err(at.line, at.path.clone(), kind);
            Err(())
        }
    }
}

fn advertisement(
    ctx: &mut Ctx,
    item: &Slot<'_, '_>,
    entries: &[Entry],
    aliases: &BTreeMap<String, Community>,
) -> Option<(BgpAdvertisement, AsWritten)> {
    let f = ctx.fields(item, &ADVERTISEMENT)?;
    let before = ctx.errors.len();
    let mut ad = BgpAdvertisement::default();
    let v4_at = f.get("aggregation-length");
    let v6_at = f.get("aggregation-length-v6");
    let v4 = aggregation(ctx, &v4_at, 32);
    let v6 = aggregation(ctx, &v6_at, 128);
    if let Ok(Some(l)) = v4 {
        ad.aggregation_length = l;
    }
    if let Ok(Some(l)) = v6 {
        ad.aggregation_length_v6 = l;
    }
    // MetalLB: an aggregate must not cover addresses outside the pool, i.e. the length
    // must be >= the shortest prefix among the CIDRs of each `addresses` entry.
    if ctx.errors.len() == before {
        for e in entries {
            let (len, at) = if e.range.is_ipv4() {
                (ad.aggregation_length, &v4_at)
            } else {
                (ad.aggregation_length_v6, &v6_at)
            };
            if len < e.lowest_prefix {
                let path = if at.is_set() { &at.path } else { &item.path };
                let kind = ErrorKind::AggregationTooShort {
                    len,
                    prefix: e.lowest_prefix,
                    entry: e.text.clone(),
                };
                ctx.err(at.line, path.clone(), kind);
            }
        }
    }
    let localpref = ctx.integer(&f.get("localpref"), 0, u32::MAX.into());
    ad.local_pref = localpref.ok().flatten().and_then(|n| u32::try_from(n).ok());

    let communities_at = f.get("communities");
    let items = ctx.seq(&communities_at).unwrap_or_default();
    let mut written: Vec<String> = Vec::with_capacity(items.len());
    for c in items {
        let s = match ctx.text(&c) {
            Ok(Some(s)) => s,
            Ok(None) => {
                ctx.err(c.line, c.path, ErrorKind::InvalidCommunity(String::new()));
                continue;
            }
            Err(()) => continue,
        };
        if written.contains(&s) {
            ctx.err(c.line, c.path, ErrorKind::DuplicateCommunity(s));
            continue;
        }
        written.push(s.clone());
        let value = if let Some(c) = aliases.get(&s) {
            Ok(*c)
        } else if s.contains(':') {
            Community::parse(&s)
        } else {
            Err(ErrorKind::UndefinedCommunity(s))
        };
        match value {
            Ok(Community::Standard(v)) => ad.communities.push(v),
            Ok(Community::Large(a, b, c)) => ad.large_communities.push((a, b, c)),
            Err(e) => ctx.err(c.line, c.path, e),
        }
    }
    ad.communities.sort_unstable();
    ad.communities.dedup();
    ad.large_communities.sort_unstable();
    ad.large_communities.dedup();

    if ctx.errors.len() != before {
        return None;
    }
    let as_written = AsWritten {
        aggregation_length: v4.ok().flatten().map(i128::from),
        aggregation_length_v6: v6.ok().flatten().map(i128::from),
        localpref: localpref.ok().flatten(),
        communities: communities_at
            .value()
            .is_some_and(|n| matches!(n.value, Value::Seq(_)))
            .then_some(written),
    };
    Some((ad, as_written))
}
