//! Stage 1 (YAML → raw serde structs, unknown keys rejected) and stage 2 (raw →
//! typed, validated [`Config`]), collecting every error with its path and line.
//!
//! The raw structs hold each field as a `serde_yaml::Value` so that a wrong type in
//! one field is reported at that field's path and does not hide problems elsewhere;
//! `deny_unknown_fields` gives MetalLB's strictness at every level.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::duration::parse_go_duration;
use crate::positions::{Positions, join};
use crate::{
    AddrRange, BgpAdvertisement, Community, Config, ConfigError, ErrorKind, LabelRequirement,
    NodeSelector, Peer, Pool, Protocol, SelectorOperator,
};

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a mapping with peers, address-pools and bgp-communities"
)]
struct RawConfig {
    peers: Option<Value>,
    address_pools: Option<Value>,
    bgp_communities: Option<Value>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a peer (mapping)"
)]
struct RawPeer {
    peer_address: Option<Value>,
    peer_asn: Option<Value>,
    my_asn: Option<Value>,
    peer_port: Option<Value>,
    hold_time: Option<Value>,
    keepalive_time: Option<Value>,
    router_id: Option<Value>,
    source_address: Option<Value>,
    password: Option<Value>,
    ebgp_multihop: Option<Value>,
    node_selectors: Option<Value>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a node selector (mapping)"
)]
struct RawSelector {
    match_labels: Option<Value>,
    match_expressions: Option<Value>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a match expression (mapping)"
)]
struct RawExpression {
    key: Option<Value>,
    operator: Option<Value>,
    values: Option<Value>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "an address pool (mapping)"
)]
struct RawPool {
    name: Option<Value>,
    protocol: Option<Value>,
    addresses: Option<Value>,
    auto_assign: Option<Value>,
    avoid_buggy_ips: Option<Value>,
    bgp_advertisements: Option<Value>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a bgp advertisement (mapping)"
)]
struct RawAdvertisement {
    aggregation_length: Option<Value>,
    aggregation_length_v6: Option<Value>,
    localpref: Option<Value>,
    communities: Option<Value>,
}

/// Error collector that knows where each path is.
struct Ctx<'a> {
    pos: &'a Positions,
    doc: usize,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, path: impl Into<String>, kind: ErrorKind) {
        let path = path.into();
        let line = self.pos.line(self.doc, &path);
        self.errors.push(ConfigError { line, path, kind });
    }

    /// Turn a serde error on the value at `path` into an error at the most precise path.
    fn serde_err(&mut self, path: &str, e: &serde_yaml::Error) {
        let msg = strip_location(&e.to_string());
        if let Some(rest) = msg.strip_prefix("unknown field `")
            && let Some((key, tail)) = rest.split_once('`')
        {
            let expected = tail
                .trim_start_matches(',')
                .trim()
                .trim_start_matches("expected one of ")
                .trim_start_matches("expected ")
                .replace('`', "");
            let at = self
                .pos
                .find_key_under(self.doc, path, key)
                .unwrap_or_else(|| join(path, key));
            if key.starts_with("bfd-profile") {
                let why = "BFD is not implemented (MetalLB supports it only in FRR mode)";
                self.err(at, ErrorKind::Unsupported(key.to_string(), why));
                return;
            }
            self.err(
                at,
                ErrorKind::UnknownKey {
                    key: key.to_string(),
                    expected,
                },
            );
            return;
        }
        self.err(path, ErrorKind::Yaml(msg));
    }

    /// Deserialize a raw struct, reporting failure at `path`. Each unknown key is
    /// reported and dropped, then the rest is read, so that one stray key does not
    /// hide the other problems of the same item.
    fn raw<T: DeserializeOwned>(&mut self, mut v: Value, path: &str) -> Option<T> {
        loop {
            match serde_yaml::from_value(v.clone()) {
                Ok(t) => return Some(t),
                Err(e) => {
                    self.serde_err(path, &e);
                    let unknown = unknown_field(&e.to_string());
                    let removed = match (&mut v, unknown) {
                        (Value::Mapping(m), Some(key)) => m.remove(key.as_str()).is_some(),
                        _ => false,
                    };
                    if !removed {
                        return None;
                    }
                }
            }
        }
    }

    /// Deserialize an optional scalar field; absent or null gives `None`.
    fn field<T: DeserializeOwned>(&mut self, v: Option<Value>, path: &str) -> Option<T> {
        match v {
            None | Some(Value::Null) => None,
            Some(v) => self.raw(v, path),
        }
    }

    /// A scalar read as text (numbers and booleans as written), like Go's yaml.v2
    /// decoding a scalar into a string field. `Err(())` when it is not a scalar.
    fn text(&mut self, v: Option<Value>, path: &str) -> Result<Option<String>, ()> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => {
                self.err(
                    path,
                    ErrorKind::Yaml(format!("expected a string, found {}", type_name(&other))),
                );
                Err(())
            }
        }
    }

    /// A boolean. Besides YAML 1.2's `true`/`false`, the YAML 1.1 spellings that
    /// MetalLB's Go YAML decoder takes as booleans (`yes`, `on`, `n`, ...) are accepted.
    fn boolean(&mut self, v: Option<Value>, path: &str) -> Option<bool> {
        match v {
            Some(Value::String(s)) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "True" | "TRUE" => {
                    Some(true)
                }
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "False" | "FALSE" => {
                    Some(false)
                }
                _ => {
                    self.err(
                        path,
                        ErrorKind::Yaml(format!("expected a boolean, found {s:?}")),
                    );
                    None
                }
            },
            v => self.field::<bool>(v, path),
        }
    }

    /// A list; absent or null gives an empty list.
    fn seq(&mut self, v: Option<Value>, path: &str) -> Result<Vec<Value>, ()> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Sequence(s)) => Ok(s),
            Some(other) => {
                self.err(
                    path,
                    ErrorKind::Yaml(format!("expected a list, found {}", type_name(&other))),
                );
                Err(())
            }
        }
    }
}

/// The key named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest.split_once('`')?.0.to_string())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// serde_yaml appends ` at line L column C`; the line is reported separately.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Parse one YAML document of bare config text (document `doc` of `pos`).
pub(crate) fn parse_config(
    text: &str,
    pos: &Positions,
    doc: usize,
) -> Result<Config, Vec<ConfigError>> {
    let mut ctx = Ctx {
        pos,
        doc,
        errors: Vec::new(),
    };
    let value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            // serde_yaml writes `path: message` when the error is below the root.
            let msg = strip_location(&e.to_string());
            let (path, msg) = match msg.split_once(": ") {
                Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
                _ => (String::new(), msg),
            };
            return Err(vec![ConfigError {
                line: e.location().map(|l| l.line()),
                path,
                kind: ErrorKind::Yaml(msg),
            }]);
        }
    };
    // An empty document is an empty (valid) config, as in MetalLB.
    let raw: RawConfig = match value {
        Value::Null => RawConfig {
            peers: None,
            address_pools: None,
            bgp_communities: None,
        },
        v => match ctx.raw(v, "") {
            Some(r) => r,
            None => return Err(ctx.errors),
        },
    };

    let communities = parse_communities(&mut ctx, raw.bgp_communities);
    let peers = parse_peers(&mut ctx, raw.peers);
    let pools = parse_pools(&mut ctx, raw.address_pools, &communities);

    if ctx.errors.is_empty() {
        Ok(Config {
            peers,
            pools,
            communities,
        })
    } else {
        let mut errors = ctx.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(errors)
    }
}

fn parse_communities(ctx: &mut Ctx<'_>, v: Option<Value>) -> BTreeMap<String, Community> {
    let mut out = BTreeMap::new();
    let map = match v {
        None | Some(Value::Null) => return out,
        Some(Value::Mapping(m)) => m,
        Some(other) => {
            ctx.err(
                "bgp-communities",
                ErrorKind::Yaml(format!("expected a mapping, found {}", type_name(&other))),
            );
            return out;
        }
    };
    for (k, v) in map {
        let Value::String(name) = k else {
            ctx.err(
                "bgp-communities",
                ErrorKind::Yaml(format!(
                    "alias names must be strings, found {}",
                    type_name(&k)
                )),
            );
            continue;
        };
        let path = join("bgp-communities", &name);
        let Ok(text) = ctx.text(Some(v), &path) else {
            continue;
        };
        match Community::parse(text.as_deref().unwrap_or("")) {
            Ok(c) => {
                out.insert(name, c);
            }
            Err(e) => ctx.err(path, e),
        }
    }
    out
}

fn parse_peers(ctx: &mut Ctx<'_>, v: Option<Value>) -> Vec<Peer> {
    let Ok(items) = ctx.seq(v, "peers") else {
        return Vec::new();
    };
    let mut peers: Vec<Peer> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("peers[{i}]");
        let before = ctx.errors.len();
        let Some(peer) = parse_peer(ctx, item, &path) else {
            continue;
        };
        if ctx.errors.len() != before {
            continue;
        }
        if let Some(j) = peers.iter().position(|p| {
            p.address == peer.address
                && p.port == peer.port
                && p.node_selectors == peer.node_selectors
        }) {
            let other = paths[j].clone();
            ctx.err(join(&path, "peer-address"), ErrorKind::DuplicatePeer(other));
            continue;
        }
        peers.push(peer);
        paths.push(path);
    }
    peers
}

fn parse_ip(ctx: &mut Ctx<'_>, v: Option<Value>, path: &str) -> Result<Option<IpAddr>, ()> {
    let Some(s) = ctx.text(v, path)?.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(Some(ip)),
        Err(_) => {
            ctx.err(path, ErrorKind::InvalidIp(s));
            Err(())
        }
    }
}

/// A Go duration, as written and as a non-negative [`Duration`].
fn parse_duration(
    ctx: &mut Ctx<'_>,
    v: Option<Value>,
    path: &str,
) -> Result<Option<(String, Duration)>, ()> {
    let Some(s) = ctx.text(v, path)? else {
        return Ok(None);
    };
    match parse_go_duration(&s) {
        None => {
            ctx.err(path, ErrorKind::InvalidDuration(s));
            Err(())
        }
        Some(n) if n < 0 => {
            ctx.err(path, ErrorKind::NegativeDuration(s));
            Err(())
        }
        Some(n) => {
            let d = Duration::from_nanos(n as u64);
            Ok(Some((s, d)))
        }
    }
}

fn asn(ctx: &mut Ctx<'_>, v: Option<Value>, path: &str) -> Option<u32> {
    match v {
        None | Some(Value::Null) => {
            ctx.err(path, ErrorKind::Missing);
            None
        }
        v => match ctx.field::<u32>(v, path)? {
            0 => {
                ctx.err(path, ErrorKind::ZeroAsn);
                None
            }
            n => Some(n),
        },
    }
}

fn parse_peer(ctx: &mut Ctx<'_>, item: Value, path: &str) -> Option<Peer> {
    let raw: RawPeer = ctx.raw(item, path)?;
    let p = |k: &str| join(path, k);

    let address = match parse_ip(ctx, raw.peer_address, &p("peer-address")) {
        Ok(Some(a)) => Some(a),
        Ok(None) => {
            ctx.err(p("peer-address"), ErrorKind::Missing);
            None
        }
        Err(()) => None,
    };
    let peer_asn = asn(ctx, raw.peer_asn, &p("peer-asn"));
    let my_asn = asn(ctx, raw.my_asn, &p("my-asn"));
    let port = match ctx.field::<u16>(raw.peer_port, &p("peer-port")) {
        None | Some(0) => 179,
        Some(n) => n,
    };

    // Hold time: default 90s, truncated to whole seconds, 0 or >= 3s (MetalLB).
    let mut timers_ok = true;
    let hold_time = match parse_duration(ctx, raw.hold_time, &p("hold-time")) {
        Ok(None) => Duration::from_secs(90),
        Ok(Some((s, d))) => {
            let secs = Duration::from_secs(d.as_secs());
            if secs != Duration::ZERO && secs < Duration::from_secs(3) {
                ctx.err(p("hold-time"), ErrorKind::HoldTime(s));
                timers_ok = false;
            }
            secs
        }
        Err(()) => {
            timers_ok = false;
            Duration::from_secs(90)
        }
    };
    let keepalive_time = match parse_duration(ctx, raw.keepalive_time, &p("keepalive-time")) {
        Ok(None) => hold_time / 3,
        Ok(Some((s, d))) => {
            if timers_ok && d > hold_time {
                ctx.err(
                    p("keepalive-time"),
                    ErrorKind::KeepaliveTooLong {
                        keepalive: s,
                        hold: hold_time,
                    },
                );
            }
            d
        }
        Err(()) => hold_time / 3,
    };

    let router_id = match ctx.text(raw.router_id, &p("router-id")) {
        Ok(Some(s)) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Some(a),
            Ok(IpAddr::V6(_)) | Err(_) => {
                ctx.err(p("router-id"), ErrorKind::NotIpv4(s));
                None
            }
        },
        _ => None,
    };
    let source_address = parse_ip(ctx, raw.source_address, &p("source-address"))
        .ok()
        .flatten();
    let password = ctx
        .text(raw.password, &p("password"))
        .ok()
        .flatten()
        .filter(|s| !s.is_empty());
    let ebgp_multihop = ctx
        .boolean(raw.ebgp_multihop, &p("ebgp-multihop"))
        .unwrap_or(false);
    let node_selectors = parse_selectors(ctx, raw.node_selectors, &p("node-selectors"));

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
    })
}

fn parse_selectors(ctx: &mut Ctx<'_>, v: Option<Value>, path: &str) -> Vec<NodeSelector> {
    let Ok(items) = ctx.seq(v, path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let sp = format!("{path}[{i}]");
        let Some(raw) = ctx.raw::<RawSelector>(item, &sp) else {
            continue;
        };
        let mut sel = NodeSelector::default();
        let lp = join(&sp, "match-labels");
        match raw.match_labels {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let Ok(Some(k)) = ctx.text(Some(k), &lp) else {
                        continue;
                    };
                    let vp = join(&lp, &k);
                    if let Ok(v) = ctx.text(Some(v), &vp) {
                        sel.match_labels.insert(k, v.unwrap_or_default());
                    }
                }
            }
            Some(other) => ctx.err(
                lp,
                ErrorKind::Yaml(format!("expected a mapping, found {}", type_name(&other))),
            ),
        }
        let ep = join(&sp, "match-expressions");
        let exprs = ctx.seq(raw.match_expressions, &ep).unwrap_or_default();
        for (j, e) in exprs.into_iter().enumerate() {
            let xp = format!("{ep}[{j}]");
            let Some(raw) = ctx.raw::<RawExpression>(e, &xp) else {
                continue;
            };
            let key = match ctx.text(raw.key, &join(&xp, "key")) {
                Ok(Some(k)) if !k.is_empty() => Some(k),
                Ok(_) => {
                    ctx.err(join(&xp, "key"), ErrorKind::Missing);
                    None
                }
                Err(()) => None,
            };
            let operator = match ctx.text(raw.operator, &join(&xp, "operator")) {
                Ok(Some(o)) => match SelectorOperator::parse(&o) {
                    Some(op) => Some(op),
                    None => {
                        ctx.err(join(&xp, "operator"), ErrorKind::UnknownOperator(o));
                        None
                    }
                },
                Ok(None) => {
                    ctx.err(join(&xp, "operator"), ErrorKind::Missing);
                    None
                }
                Err(()) => None,
            };
            let vp = join(&xp, "values");
            let mut values = Vec::new();
            for (k, v) in ctx
                .seq(raw.values, &vp)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                if let Ok(v) = ctx.text(Some(v), &format!("{vp}[{k}]")) {
                    values.push(v.unwrap_or_default());
                }
            }
            let (Some(key), Some(operator)) = (key, operator) else {
                continue;
            };
            match operator {
                SelectorOperator::In | SelectorOperator::NotIn if values.is_empty() => {
                    ctx.err(vp, ErrorKind::ValuesRequired(operator.as_str()));
                }
                SelectorOperator::Exists | SelectorOperator::DoesNotExist if !values.is_empty() => {
                    ctx.err(vp, ErrorKind::ValuesForbidden(operator.as_str()));
                }
                _ => sel.match_expressions.push(LabelRequirement {
                    key,
                    operator,
                    values,
                }),
            }
        }
        out.push(sel);
    }
    out
}

/// One parsed `addresses` entry, kept for the overlap and aggregation checks.
struct Entry {
    text: String,
    path: String,
    pool: String,
    range: AddrRange,
    /// Shortest prefix length among the entry's CIDRs.
    lowest_prefix: u8,
}

fn parse_pools(
    ctx: &mut Ctx<'_>,
    v: Option<Value>,
    communities: &BTreeMap<String, Community>,
) -> Vec<Pool> {
    let Ok(items) = ctx.seq(v, "address-pools") else {
        return Vec::new();
    };
    let mut pools = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut all_entries: Vec<Entry> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("address-pools[{i}]");
        let before = ctx.errors.len();
        let Some(raw) = ctx.raw::<RawPool>(item, &path) else {
            continue;
        };
        let p = |k: &str| join(&path, k);

        let name = match ctx.text(raw.name, &p("name")) {
            Ok(Some(n)) if !n.is_empty() => {
                if let Some(first) = names.get(&n) {
                    ctx.err(
                        p("name"),
                        ErrorKind::DuplicatePool(n.clone(), first.clone()),
                    );
                } else {
                    names.insert(n.clone(), p("name"));
                }
                n
            }
            Ok(_) => {
                ctx.err(p("name"), ErrorKind::Missing);
                String::new()
            }
            Err(()) => String::new(),
        };
        let protocol = match ctx.text(raw.protocol, &p("protocol")) {
            Ok(Some(s)) => match s.as_str() {
                "bgp" => Some(Protocol::Bgp),
                "layer2" => Some(Protocol::Layer2),
                _ => {
                    ctx.err(p("protocol"), ErrorKind::UnknownProtocol(s));
                    None
                }
            },
            Ok(None) => {
                ctx.err(p("protocol"), ErrorKind::Missing);
                None
            }
            Err(()) => None,
        };

        // Addresses: each a CIDR or a range; none may overlap any earlier entry.
        let ap = p("addresses");
        let addrs = ctx.seq(raw.addresses, &ap);
        if matches!(&addrs, Ok(a) if a.is_empty()) {
            ctx.err(ap.clone(), ErrorKind::Missing);
        }
        let first_entry = all_entries.len();
        for (j, a) in addrs.unwrap_or_default().into_iter().enumerate() {
            let ep = format!("{ap}[{j}]");
            let text = match ctx.text(Some(a), &ep) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    ctx.err(ep, ErrorKind::InvalidAddresses(String::new()));
                    continue;
                }
                Err(()) => continue,
            };
            let range = match AddrRange::parse(&text) {
                Ok(r) => r,
                Err(e) => {
                    ctx.err(ep, e);
                    continue;
                }
            };
            if let Some(other) = all_entries.iter().find(|o| o.range.overlaps(&range)) {
                let kind = ErrorKind::Overlap {
                    entry: text.clone(),
                    other: other.text.clone(),
                    other_path: other.path.clone(),
                    other_pool: other.pool.clone(),
                };
                ctx.err(ep.clone(), kind);
            }
            let lowest_prefix = range
                .to_cidrs()
                .iter()
                .map(ipnet::IpNet::prefix_len)
                .min()
                .unwrap_or(0);
            all_entries.push(Entry {
                text,
                path: ep,
                pool: name.clone(),
                range,
                lowest_prefix,
            });
        }
        let entries = &all_entries[first_entry..];

        let auto_assign = ctx
            .boolean(raw.auto_assign, &p("auto-assign"))
            .unwrap_or(true);
        let avoid_buggy_ips = ctx
            .boolean(raw.avoid_buggy_ips, &p("avoid-buggy-ips"))
            .unwrap_or(false);

        let adp = p("bgp-advertisements");
        let raw_ads = ctx.seq(raw.bgp_advertisements, &adp).unwrap_or_default();
        let mut advertisements = Vec::new();
        if protocol == Some(Protocol::Layer2) {
            if !raw_ads.is_empty() {
                ctx.err(adp, ErrorKind::AdvertisementsOnLayer2);
            }
        } else {
            for (k, ad) in raw_ads.into_iter().enumerate() {
                let path = format!("{adp}[{k}]");
                if let Some(ad) = parse_advertisement(ctx, ad, &path, entries, communities) {
                    advertisements.push(ad);
                }
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
        pools.push(Pool {
            name,
            protocol,
            cidrs: ranges.iter().flat_map(AddrRange::to_cidrs).collect(),
            ranges,
            auto_assign,
            avoid_buggy_ips,
            advertisements,
        });
    }
    pools
}

fn aggregation(ctx: &mut Ctx<'_>, v: Option<Value>, path: &str, max: u8) -> Option<u8> {
    let n = ctx.field::<i64>(v, path)?;
    if !(0..=i64::from(max)).contains(&n) {
        ctx.err(path, ErrorKind::AggregationOutOfRange { len: n, max });
        return None;
    }
    Some(n as u8)
}

fn parse_advertisement(
    ctx: &mut Ctx<'_>,
    item: Value,
    path: &str,
    entries: &[Entry],
    aliases: &BTreeMap<String, Community>,
) -> Option<BgpAdvertisement> {
    let raw: RawAdvertisement = ctx.raw(item, path)?;
    let before = ctx.errors.len();
    let p = |k: &str| join(path, k);
    let mut ad = BgpAdvertisement::default();
    let v4_set = raw.aggregation_length.is_some();
    let v6_set = raw.aggregation_length_v6.is_some();
    if let Some(l) = aggregation(ctx, raw.aggregation_length, &p("aggregation-length"), 32) {
        ad.aggregation_length = l;
    }
    if let Some(l) = aggregation(
        ctx,
        raw.aggregation_length_v6,
        &p("aggregation-length-v6"),
        128,
    ) {
        ad.aggregation_length_v6 = l;
    }
    // MetalLB: an aggregate must not cover addresses outside the pool, i.e. the length
    // must be >= the shortest prefix among the CIDRs of each `addresses` entry.
    if ctx.errors.len() == before {
        for e in entries {
            let (len, key, set) = if e.range.is_ipv4() {
                (ad.aggregation_length, "aggregation-length", v4_set)
            } else {
                (ad.aggregation_length_v6, "aggregation-length-v6", v6_set)
            };
            if len < e.lowest_prefix {
                let at = if set { p(key) } else { path.to_string() };
                ctx.err(
                    at,
                    ErrorKind::AggregationTooShort {
                        len,
                        prefix: e.lowest_prefix,
                        entry: e.text.clone(),
                    },
                );
            }
        }
    }
    ad.local_pref = ctx.field::<u32>(raw.localpref, &p("localpref"));

    let cp = p("communities");
    let mut seen: Vec<String> = Vec::new();
    for (i, c) in ctx
        .seq(raw.communities, &cp)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let ip = format!("{cp}[{i}]");
        let s = match ctx.text(Some(c), &ip) {
            Ok(Some(s)) => s,
            Ok(None) => {
                ctx.err(ip, ErrorKind::InvalidCommunity(String::new()));
                continue;
            }
            Err(()) => continue,
        };
        if seen.contains(&s) {
            ctx.err(ip, ErrorKind::DuplicateCommunity(s));
            continue;
        }
        seen.push(s.clone());
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
            Err(e) => ctx.err(ip, e),
        }
    }
    ad.communities.sort_unstable();
    ad.communities.dedup();
    ad.large_communities.sort_unstable();
    ad.large_communities.dedup();
    (ctx.errors.len() == before).then_some(ad)
}
