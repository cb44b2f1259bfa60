//! `ferrolb diff NEW-CONFIG...`: what applying a configuration would do,
//! before it is applied. Nothing is written.
//!
//! Pure core [`diff`]: the controller's own core ([`ControllerCore`]) is
//! given the configuration in force and rebuilt from every Service as the
//! controller does at start, then offered the new one: rejected (the
//! controller's message, word for word), or each Service's IPs before and
//! after. The speakers' own functions then say, per node, the routes each
//! peer holds under each ([`routes_per_peer`]: withdrawn, added, or
//! re-advertised with other attributes) and the sessions that end or change
//! ([`desired_sessions`], [`sessions_to_close`]). The I/O shell reads the
//! files as `validate` does and the cluster as `explain` does.
//!
//! Layer 2: the owner of each IP under each configuration, by the speakers'
//! own election ([`layer2::Decider`]) over the speakers alive as the API
//! shows them (Ready speaker pods, as `explain` does; the gossip's own view
//! is not readable from outside, and the output says so).
//!
//! Not reproduced offline, and said so in the output: a session's source
//! address (the node's routing table: the same placeholder is used on both
//! sides, so only configured changes show) and BGP passwords from Secrets.
//!
//! Exit codes: 0 nothing moves, 1 something moves, 2 invalid or rejected.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use ferrolb_config::Config;
use ferrolb_controller::allocator::Labels;
use ferrolb_controller::core::{ControllerCore, REASON_CLEARED, REASON_FAILED};
use ferrolb_controller::facts::{ServiceFacts as ControllerFacts, service_facts};
use ferrolb_speaker::announce::{
    Endpoint, NodeState, PeerKey, ServiceState, TrafficPolicy, peer_keys, peer_status_name,
    routes_per_peer,
};
use ferrolb_speaker::layer2::{self, Cluster};
use ferrolb_speaker::peers::{Replace, desired_sessions, sessions_to_close};
use ferrolb_speaker::watch::{
    SERVICE_NAME_LABEL, endpoints_endpoints, node_state, slice_endpoints,
};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

/// Flags of `ferrolb diff`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The new configuration: a ConfigMap (manifest or bare text) or files of
    /// metallb.io custom resources (and Secrets), as `validate` takes; `-` reads stdin.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: crate::explain::ClusterArgs,
}

/// One Service as both halves read it.
#[derive(Debug, Clone)]
pub struct Svc {
    /// As the controller reads it.
    pub facts: ControllerFacts,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    /// `metadata.labels`, matched against advertisements' `serviceSelectors`.
    pub labels: BTreeMap<String, String>,
}

/// What [`diff`] reads.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The configuration in force.
    pub current: Config,
    /// The new one, or its errors.
    pub next: Result<Config, Vec<String>>,
    /// Every Service.
    pub services: Vec<Svc>,
    /// Every Node.
    pub nodes: Vec<NodeState>,
    /// `--lb-class`.
    pub lb_class: Option<String>,
    /// `--ignore-exclude-lb`.
    pub ignore_exclude_lb: bool,
    /// Nodes with a Ready speaker pod (`None` or empty: every Node counts).
    pub speaker_nodes: Option<BTreeSet<String>>,
}

/// One Service whose IPs would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpChange {
    /// `namespace/name`.
    pub service: String,
    /// IPs now.
    pub before: Vec<IpAddr>,
    /// IPs after (empty: released).
    pub after: Vec<IpAddr>,
    /// The controller's Event note, if it has one.
    pub why: Option<String>,
}

/// What happens to one route toward one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteChange {
    /// Announced now, not after.
    Withdrawn,
    /// Announced after, not now.
    Added,
    /// Announced both, with other attributes: sent again.
    Readvertised,
}

/// A route change on one node toward one peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteMove {
    pub node: String,
    /// The peer's status name (its BGPPeer name, or `address:port`).
    pub peer: String,
    pub prefix: String,
    pub change: RouteChange,
}

/// A layer 2 IP whose answering node changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnerMove {
    /// `namespace/name`.
    pub service: String,
    pub ip: IpAddr,
    /// The node answering now (`None`: nobody, or not a layer 2 IP).
    pub before: Option<String>,
    /// The node answering after.
    pub after: Option<String>,
}

/// What happens to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionChange {
    /// Parameters change: closed (Cease 6/6) and opened again.
    Reset,
    /// The peer no longer selects the node (or is gone): closed (Cease 6/3).
    Closed,
    /// A new session.
    Opened,
}

/// A session change on one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionMove {
    pub node: String,
    pub peer: String,
    pub change: SessionChange,
}

/// What applying the configuration would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The new configuration is invalid: its errors.
    pub invalid: Vec<String>,
    /// The controller (and speakers) would reject it: why, as they say it.
    pub rejected: Option<String>,
    pub ips: Vec<IpChange>,
    pub routes: Vec<RouteMove>,
    pub sessions: Vec<SessionMove>,
    /// Layer 2 IPs that change hands (or start or stop being answered).
    pub owners: Vec<OwnerMove>,
    /// What is not reproduced offline.
    pub notes: Vec<String>,
}

impl Report {
    /// Invalid or rejected.
    pub fn refused(&self) -> bool {
        !self.invalid.is_empty() || self.rejected.is_some()
    }

    /// Something moves.
    pub fn moves(&self) -> bool {
        !self.ips.is_empty()
            || !self.routes.is_empty()
            || !self.sessions.is_empty()
            || !self.owners.is_empty()
    }
}

/// The controller's allocations for every Service under the configuration
/// `core` holds: `namespace/name` → IPs, with the Event notes about them.
fn allocations(
    core: &mut ControllerCore,
    services: &[Svc],
) -> BTreeMap<String, (Vec<IpAddr>, Option<String>)> {
    let mut out = BTreeMap::new();
    for s in services {
        let plan = core.plan(&s.facts);
        let ips = core
            .allocator()
            .and_then(|a| a.lookup(&s.facts.key))
            .map(|a| a.addrs())
            .unwrap_or_default();
        let why = plan
            .events
            .iter()
            .find(|e| e.reason == REASON_CLEARED || e.reason == REASON_FAILED)
            .map(|e| e.note.clone());
        out.insert(s.facts.key.to_string(), (ips, why));
    }
    out
}

/// Placeholder source address toward every peer (the same on both sides).
fn placeholder(_: IpAddr) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
}

/// See the module documentation.
pub fn diff(facts: &Facts) -> Report {
    let mut r = Report::default();
    let next = match &facts.next {
        Ok(c) => c,
        Err(errors) => {
            r.invalid = errors.clone();
            return r;
        }
    };
    let ours: Vec<Svc> = facts
        .services
        .iter()
        .filter(|s| s.facts.load_balancer && s.facts.class == facts.lb_class)
        .cloned()
        .collect();
    let mut core = ControllerCore::new(facts.lb_class.clone());
    core.offer_config_with(Some("current"), |_| Ok(facts.current.clone()));
    let all: Vec<ControllerFacts> = ours.iter().map(|s| s.facts.clone()).collect();
    core.rebuild(&all);
    let before = allocations(&mut core, &ours);
    let outcome = core.offer_config_with(Some("next"), |_| Ok(next.clone()));
    // Not applied and no rejection: the same configuration (the gate says unchanged).
    if !outcome.applied
        && let Some(why) = core.gate().rejection()
    {
        r.rejected = Some(why.to_string());
        return r;
    }
    let after = allocations(&mut core, &ours);
    for s in &ours {
        let key = s.facts.key.to_string();
        let (b, _) = &before[&key];
        let (a, why) = &after[&key];
        if a != b {
            r.ips.push(IpChange {
                service: key,
                before: b.clone(),
                after: a.clone(),
                why: why.clone(),
            });
        }
    }

    // The speakers: routes and sessions per node.
    let states = |alloc: &BTreeMap<String, (Vec<IpAddr>, Option<String>)>| -> Vec<ServiceState> {
        ours.iter()
            .map(|s| {
                let key = s.facts.key.to_string();
                ServiceState {
                    ips: alloc[&key].0.clone(),
                    key,
                    traffic_policy: s.traffic_policy,
                    endpoints: s.endpoints.clone(),
                    labels: s.labels.clone(),
                }
            })
            .collect()
    };
    let (old_states, new_states) = (states(&before), states(&after));
    let names = |c: &Config| -> BTreeMap<PeerKey, String> {
        peer_keys(c)
            .into_iter()
            .zip(&c.peers)
            .map(|(k, p)| (k, peer_status_name(&k, p)))
            .collect()
    };
    let (old_names, new_names) = (names(&facts.current), names(next));
    let name_of = |k: &PeerKey| {
        new_names
            .get(k)
            .or_else(|| old_names.get(k))
            .cloned()
            .unwrap_or_else(|| k.to_string())
    };
    for n in &facts.nodes {
        let node = NodeState {
            excluded: n.excluded && !facts.ignore_exclude_lb,
            ..n.clone()
        };
        let old = routes_per_peer(
            &facts.current,
            &node,
            old_states.iter().map(|s| s.facts(&node.name)),
            |_, _| {},
        );
        let new = routes_per_peer(
            next,
            &node,
            new_states.iter().map(|s| s.facts(&node.name)),
            |_, _| {},
        );
        let empty = Default::default();
        for k in old
            .keys()
            .chain(new.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (o, w) = (old.get(k).unwrap_or(&empty), new.get(k).unwrap_or(&empty));
            for (prefix, attrs) in o {
                let change = match w.get(prefix) {
                    None => Some(RouteChange::Withdrawn),
                    Some(a) if a != attrs => Some(RouteChange::Readvertised),
                    Some(_) => None,
                };
                if let Some(change) = change {
                    r.routes.push(RouteMove {
                        node: node.name.clone(),
                        peer: name_of(k),
                        prefix: prefix.to_string(),
                        change,
                    });
                }
            }
            for prefix in w.keys().filter(|p| !o.contains_key(*p)) {
                r.routes.push(RouteMove {
                    node: node.name.clone(),
                    peer: name_of(k),
                    prefix: prefix.to_string(),
                    change: RouteChange::Added,
                });
            }
        }
        let (old_s, _) = desired_sessions(&facts.current, &node, &placeholder);
        let (new_s, _) = desired_sessions(next, &node, &placeholder);
        for (k, how) in sessions_to_close(&old_s, &new_s) {
            r.sessions.push(SessionMove {
                node: node.name.clone(),
                peer: name_of(&k),
                change: match how {
                    Replace::Changed => SessionChange::Reset,
                    Replace::Removed => SessionChange::Closed,
                },
            });
        }
        for k in new_s.keys().filter(|k| !old_s.contains_key(*k)) {
            r.sessions.push(SessionMove {
                node: node.name.clone(),
                peer: name_of(k),
                change: SessionChange::Opened,
            });
        }
    }
    r.routes.sort();
    r.sessions.sort();
    let l2 = |c: &Config| c.pools.iter().any(|p| !p.l2_advertisements.is_empty());
    if l2(&facts.current) || l2(next) {
        let (owners, note) = owner_moves(facts, next, &old_states, &new_states);
        r.owners = owners;
        r.notes.push(note);
    }
    r.notes.push(
        "sessions are compared without the nodes' source addresses and BGP password Secrets".into(),
    );
    r
}

/// The layer 2 owner of every IP before and after, where it differs; and
/// the note saying whose liveness was assumed.
fn owner_moves(
    facts: &Facts,
    next: &Config,
    old: &[ServiceState],
    new: &[ServiceState],
) -> (Vec<OwnerMove>, String) {
    let by_name: BTreeMap<String, NodeState> = facts
        .nodes
        .iter()
        .map(|n| {
            let n = NodeState {
                excluded: n.excluded && !facts.ignore_exclude_lb,
                ..n.clone()
            };
            (n.name.clone(), n)
        })
        .collect();
    let (alive, note) = crate::explain::layer2_alive(facts.speaker_nodes.as_ref(), by_name.keys());
    let cluster = Cluster {
        nodes: &by_name,
        alive: &alive,
        ignore_exclude_lb: false,
    };
    // The owner does not depend on the node asking; any name will do.
    let me = by_name.keys().next().map_or("", String::as_str);
    let owners = |config: &Config, states: &[ServiceState]| {
        let d = layer2::Decider::new(config, cluster, me);
        let mut out: BTreeMap<(String, IpAddr), Option<String>> = BTreeMap::new();
        for s in states {
            for (ip, pd) in d.decide(&s.l2_facts()) {
                if matches!(
                    pd.decision,
                    layer2::Decision::Skip(
                        layer2::SkipReason::NotInPool | layer2::SkipReason::NotLayer2Pool
                    )
                ) {
                    continue;
                }
                out.insert((s.key.clone(), ip), pd.owner);
            }
        }
        out
    };
    let (before, after) = (owners(&facts.current, old), owners(next, new));
    let keys: BTreeSet<&(String, IpAddr)> = before.keys().chain(after.keys()).collect();
    let moves = keys
        .into_iter()
        .filter_map(|k| {
            let b = before.get(k).cloned().flatten();
            let a = after.get(k).cloned().flatten();
            (b != a).then(|| OwnerMove {
                service: k.0.clone(),
                ip: k.1,
                before: b,
                after: a,
            })
        })
        .collect();
    (moves, note)
}

/// The text form.
pub fn to_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if !r.invalid.is_empty() {
        let _ = writeln!(s, "invalid:");
        for e in &r.invalid {
            let _ = writeln!(s, "  {e}");
        }
        return s;
    }
    if let Some(why) = &r.rejected {
        let _ = writeln!(s, "rejected: {why}");
        let _ = writeln!(
            s,
            "  (the controller and the speakers would keep the configuration in force)"
        );
        return s;
    }
    for c in &r.ips {
        let fmt = |v: &[IpAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let what = if c.after.is_empty() {
            format!("IP released: {}", fmt(&c.before))
        } else if c.before.is_empty() {
            format!("IP assigned: {}", fmt(&c.after))
        } else {
            format!("IP changes: {} → {}", fmt(&c.before), fmt(&c.after))
        };
        let _ = write!(s, "service {}: {what}", c.service);
        if let Some(w) = &c.why {
            let _ = write!(s, " ({w})");
        }
        s.push('\n');
    }
    for m in &r.routes {
        let what = match m.change {
            RouteChange::Withdrawn => "withdrawn",
            RouteChange::Added => "added",
            RouteChange::Readvertised => "re-advertised (attributes change)",
        };
        let _ = writeln!(s, "route {} on {} → {}: {what}", m.prefix, m.node, m.peer);
    }
    for m in &r.sessions {
        let what = match m.change {
            SessionChange::Reset => "reset (parameters change)",
            SessionChange::Closed => "closed",
            SessionChange::Opened => "opened",
        };
        let _ = writeln!(s, "session {} → {}: {what}", m.node, m.peer);
    }
    for m in &r.owners {
        let what = match (&m.before, &m.after) {
            (Some(b), Some(a)) => format!("moves from {b} to {a}"),
            (None, Some(a)) => format!("answered by {a} (by nobody now)"),
            (Some(b), None) => format!("answered by nobody (by {b} now)"),
            (None, None) => continue,
        };
        let _ = writeln!(s, "layer 2 {} ({}): {what}", m.ip, m.service);
    }
    if !r.moves() {
        let _ = writeln!(s, "nothing moves");
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

/// `ferrolb diff`: prints the report; exit 0 nothing moves, 1 something
/// moves, 2 invalid, rejected or an error.
pub fn run(args: Args) -> ExitCode {
    let mut texts = Vec::new();
    for path in &args.files {
        match crate::validate::read_input(path) {
            Ok(t) => texts.push((crate::validate::display_name(path), t)),
            Err(msg) => {
                eprintln!("ferrolb diff: {msg}");
                return ExitCode::from(2);
            }
        }
    }
    let next = crate::validate::one_config(&texts);
    let facts = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(gather(&args, next)));
    let facts = match facts {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ferrolb diff: {e:#}");
            return ExitCode::from(2);
        }
    };
    let r = diff(&facts);
    print!("{}", to_text(&r));
    if r.refused() {
        ExitCode::from(2)
    } else if r.moves() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Reads the cluster.
async fn gather(args: &Args, next: Result<Config, Vec<String>>) -> Result<Facts> {
    let client = ferrolb_ops::client(args.cluster.kubeconfig.as_deref()).await?;
    let (_, current) = crate::explain::fetch_config(
        &client,
        &args.cluster.namespace,
        &args.cluster.config_name,
        args.cluster.config_source,
    )
    .await?;
    let current =
        current.map_err(|e| anyhow::anyhow!("the configuration in force is not readable: {e}"))?;
    let ns_labels: BTreeMap<String, Labels> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|n| (n.name_any(), Labels::new(n.labels().clone())))
                .collect()
        })
        .unwrap_or_default();
    // Endpoints of every Service, by `namespace/name`.
    let mut endpoints: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    match Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => {
            for s in &l.items {
                if let Some(svc) = s.labels().get(SERVICE_NAME_LABEL) {
                    let key = format!("{}/{svc}", s.namespace().unwrap_or_default());
                    endpoints.entry(key).or_default().extend(slice_endpoints(s));
                }
            }
        }
        Err(e) if matches!(crate::explain::api_code(&e), Some(404)) => {
            for ep in Api::<Endpoints>::all(client.clone())
                .list(&ListParams::default())
                .await
                .context("listing Endpoints")?
                .items
            {
                let key = format!("{}/{}", ep.namespace().unwrap_or_default(), ep.name_any());
                endpoints.insert(key, endpoints_endpoints(&ep));
            }
        }
        Err(e) => return Err(e).context("listing EndpointSlices"),
    }
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Services")?
        .items
        .iter()
        .filter_map(|svc| {
            let mut f = service_facts(svc)?;
            if let Some(l) = ns_labels.get(&f.key.namespace) {
                f = f.with_namespace_labels(l.clone());
            }
            let key = f.key.to_string();
            Some(Svc {
                traffic_policy: ferrolb_ops::service::traffic_policy(svc),
                endpoints: endpoints.get(&key).cloned().unwrap_or_default(),
                labels: svc.labels().clone(),
                facts: f,
            })
        })
        .collect();
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Nodes")?
        .items
        .iter()
        .map(|n| node_state(&n.name_any(), Some(n)))
        .collect();
    let speaker_nodes = crate::explain::ready_speaker_nodes(
        &client,
        &args.cluster.namespace,
        &args.cluster.speaker_selector,
    )
    .await;
    Ok(Facts {
        current,
        next,
        services,
        nodes,
        lb_class: args.cluster.lb_class.clone(),
        ignore_exclude_lb: args.cluster.ignore_exclude_lb,
        speaker_nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    fn svc(name: &str, ip: &str) -> Svc {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"], "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
        }))
        .unwrap();
        Svc {
            facts: service_facts(&s).unwrap(),
            traffic_policy: TrafficPolicy::Cluster,
            endpoints: vec![Endpoint {
                node: Some("n1".into()),
                ready: true,
                serving: true,
            }],
            labels: BTreeMap::new(),
        }
    }

    fn config(pool: &str, hold: &str, communities: &str) -> Config {
        Config::parse(&format!(
            "peers:\n- {{peer-address: 10.0.0.1, peer-asn: 64512, my-asn: 64522, hold-time: {hold}}}\n\
             address-pools:\n- name: default\n  protocol: bgp\n  addresses: [{pool}]\n  \
             bgp-advertisements:\n  - communities: [{communities}]\n"
        ))
        .unwrap()
    }

    fn facts(next: Config) -> Facts {
        Facts {
            current: config("10.1.0.0/24", "90s", ""),
            next: Ok(next),
            services: vec![svc("a", "10.1.0.5")],
            nodes: vec![NodeState {
                name: "n1".into(),
                ..Default::default()
            }],
            lb_class: None,
            ignore_exclude_lb: false,
            speaker_nodes: None,
        }
    }

    /// Custom resources: pool 10.1.0.0/24, peer 10.0.0.1, one advertisement.
    fn cr_config(adv: &str) -> Config {
        let text = format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: default}}\n\
             spec: {{addresses: [10.1.0.0/24]}}\n---\n\
             apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: r}}\n\
             spec: {{myASN: 64522, peerASN: 64512, peerAddress: 10.0.0.1}}\n---\n\
             apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: a}}\n\
             spec: {adv}\n"
        );
        let mut r = ferrolb_config::crs::Resources::new();
        r.add_yaml("d.yaml", &text).unwrap();
        Config::from_resources(&r, ferrolb_config::crs::Secrets::Ignore).unwrap()
    }

    #[test]
    fn service_selectors_keep_the_labelled_service_and_withdraw_the_other() {
        let mut web = svc("web", "10.1.0.5");
        web.labels = [("app".to_string(), "web".to_string())].into();
        let f = Facts {
            current: cr_config("{}"),
            next: Ok(cr_config(
                "{communities: ['64512:9'], serviceSelectors: [{matchLabels: {app: web}}]}",
            )),
            services: vec![web, svc("db", "10.1.0.6")],
            ..facts(config("10.1.0.0/24", "90s", ""))
        };
        let r = diff(&f);
        let route = |prefix: &str, change| RouteMove {
            node: "n1".into(),
            peer: "r".into(),
            prefix: prefix.into(),
            change,
        };
        assert_eq!(
            r.routes,
            [
                route("10.1.0.5/32", RouteChange::Readvertised),
                route("10.1.0.6/32", RouteChange::Withdrawn),
            ],
            "{r:#?}"
        );
    }

    #[test]
    fn same_configuration_moves_nothing() {
        let r = diff(&facts(config("10.1.0.0/24", "90s", "")));
        assert!(!r.refused() && !r.moves(), "{r:#?}");
        assert!(to_text(&r).contains("nothing moves"));
    }

    #[test]
    fn removing_the_pool_in_use_is_rejected_naming_the_service() {
        let r = diff(&facts(config("10.9.0.0/24", "90s", "")));
        let why = r.rejected.as_deref().unwrap_or_default();
        assert!(
            why.contains("service \"ns/a\" cannot own \"10.1.0.5\""),
            "{r:#?}"
        );
    }

    #[test]
    fn shrinking_without_stranding_moves_nothing() {
        let r = diff(&facts(config("10.1.0.0/29", "90s", "")));
        assert!(!r.refused() && !r.moves(), "{r:#?}");
    }

    #[test]
    fn hold_time_resets_the_session() {
        let r = diff(&facts(config("10.1.0.0/24", "30s", "")));
        assert_eq!(
            r.sessions,
            [SessionMove {
                node: "n1".into(),
                peer: "10.0.0.1:179".into(),
                change: SessionChange::Reset
            }]
        );
        assert!(r.routes.is_empty() && r.ips.is_empty(), "{r:#?}");
    }

    #[test]
    fn a_community_re_advertises_the_route() {
        let r = diff(&facts(config("10.1.0.0/24", "90s", "'64512:7'")));
        assert_eq!(
            r.routes,
            [RouteMove {
                node: "n1".into(),
                peer: "10.0.0.1:179".into(),
                prefix: "10.1.0.5/32".into(),
                change: RouteChange::Readvertised
            }]
        );
        assert!(r.sessions.is_empty(), "{r:#?}");
    }

    #[test]
    fn a_grown_pool_gives_the_waiting_service_an_ip_and_its_route() {
        let mut f = facts(config("10.1.0.4/30", "90s", ""));
        f.current = config("10.1.0.5/32", "90s", "");
        let mut waiting = svc("b", "10.1.0.5");
        // b shows no IP: the full pool had none for it.
        waiting.facts = {
            let s: Service = serde_json::from_value(json!({
                "metadata": {"name": "b", "namespace": "ns", "creationTimestamp": "2024-01-02T00:00:00Z"},
                "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"], "ports": [{"port": 81, "protocol": "TCP"}]},
            }))
            .unwrap();
            service_facts(&s).unwrap()
        };
        f.services.push(waiting);
        let r = diff(&f);
        assert_eq!(r.ips.len(), 1, "{r:#?}");
        assert_eq!(r.ips[0].service, "ns/b");
        assert!(r.ips[0].before.is_empty());
        assert_eq!(r.ips[0].after, ["10.1.0.4".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            r.routes,
            [RouteMove {
                node: "n1".into(),
                peer: "10.0.0.1:179".into(),
                prefix: "10.1.0.4/32".into(),
                change: RouteChange::Added
            }]
        );
        assert!(to_text(&r).contains("service ns/b: IP assigned: 10.1.0.4"));
    }

    #[test]
    fn a_peer_leaving_the_node_closes_the_session_and_withdraws() {
        let next = Config::parse(
            "peers:\n- {peer-address: 10.0.0.1, peer-asn: 64512, my-asn: 64522, hold-time: 90s, \
             node-selectors: [{match-labels: {rack: z}}]}\n\
             address-pools:\n- {name: default, protocol: bgp, addresses: [10.1.0.0/24]}\n",
        )
        .unwrap();
        let r = diff(&facts(next));
        assert_eq!(
            r.sessions,
            [SessionMove {
                node: "n1".into(),
                peer: "10.0.0.1:179".into(),
                change: SessionChange::Closed
            }]
        );
        assert_eq!(r.routes.len(), 1, "{r:#?}");
        assert_eq!(r.routes[0].change, RouteChange::Withdrawn);
    }

    fn l2_config(selected: Option<&str>) -> Config {
        let mut c = Config::parse(
            "address-pools:\n- {name: lan, protocol: layer2, addresses: [10.1.0.0/24]}\n",
        )
        .unwrap();
        if let Some(n) = selected {
            c.pools[0].l2_advertisements[0].node_selectors = vec![ferrolb_config::NodeSelector {
                match_labels: [("name".to_string(), n.to_string())].into(),
                ..Default::default()
            }];
        }
        c
    }

    fn l2_facts(next: Config) -> Facts {
        let nodes = ["n1", "n2", "n3"].map(|n| NodeState {
            name: n.into(),
            labels: [("name".to_string(), n.to_string())].into(),
            ..Default::default()
        });
        Facts {
            current: l2_config(None),
            next: Ok(next),
            services: vec![svc("a", "10.1.0.5")],
            nodes: nodes.to_vec(),
            lb_class: None,
            ignore_exclude_lb: false,
            speaker_nodes: None,
        }
    }

    /// The owner the speakers' rendezvous order names among `alive`.
    fn first(alive: &[&str]) -> String {
        let ip: IpAddr = "10.1.0.5".parse().unwrap();
        alive
            .iter()
            .min_by_key(|n| layer2::rank(n, ip))
            .unwrap()
            .to_string()
    }

    #[test]
    fn layer_2_owner_moves_when_an_advertisement_stops_selecting_it() {
        let all = ["n1", "n2", "n3"];
        let owner = first(&all);
        let same = diff(&l2_facts(l2_config(None)));
        assert!(!same.moves(), "{same:#?}");
        assert!(
            same.notes.iter().any(|n| n.contains("every Node counts")),
            "{same:#?}"
        );
        // Only another node selected: the IP moves there.
        let other = all.iter().find(|n| **n != owner).unwrap();
        let r = diff(&l2_facts(l2_config(Some(other))));
        assert_eq!(
            r.owners,
            [OwnerMove {
                service: "ns/a".into(),
                ip: "10.1.0.5".parse().unwrap(),
                before: Some(owner.clone()),
                after: Some(other.to_string()),
            }],
            "{r:#?}"
        );
        assert!(r.moves() && r.ips.is_empty() && r.routes.is_empty());
        assert!(
            to_text(&r).contains(&format!(
                "layer 2 10.1.0.5 (ns/a): moves from {owner} to {other}"
            )),
            "{}",
            to_text(&r)
        );
        // Selecting the owner itself moves nothing.
        assert!(!diff(&l2_facts(l2_config(Some(&owner)))).moves());
        // A node that selects nobody alive: answered by nobody.
        let r = diff(&l2_facts(l2_config(Some("n9"))));
        assert_eq!(r.owners.len(), 1, "{r:#?}");
        assert_eq!(r.owners[0].after, None);
    }

    #[test]
    fn layer_2_owners_are_taken_over_ready_speakers() {
        // The owner's speaker is not Ready: the IP is on the next node in the
        // order on both sides, so moving the selector onto that node moves nothing.
        let all = ["n1", "n2", "n3"];
        let owner = first(&all);
        let rest: Vec<&str> = all.iter().copied().filter(|n| *n != owner).collect();
        let next_owner = first(&rest);
        let mut f = l2_facts(l2_config(Some(&next_owner)));
        f.speaker_nodes = Some(rest.iter().map(|n| n.to_string()).collect());
        let r = diff(&f);
        assert!(!r.moves(), "{r:#?}");
        assert!(
            r.notes.iter().any(|n| n.contains("Ready speaker pods")),
            "{r:#?}"
        );
    }

    #[test]
    fn a_pool_turned_from_layer_2_to_bgp_is_answered_by_nobody() {
        let next = Config::parse(
            "peers:\n- {peer-address: 10.0.0.1, peer-asn: 64512, my-asn: 64522}\n\
             address-pools:\n- {name: lan, protocol: bgp, addresses: [10.1.0.0/24]}\n",
        )
        .unwrap();
        let r = diff(&l2_facts(next));
        assert_eq!(r.owners.len(), 1, "{r:#?}");
        assert_eq!(r.owners[0].before, Some(first(&["n1", "n2", "n3"])));
        assert_eq!(r.owners[0].after, None);
        assert_eq!(r.routes.len(), 3, "added on every node: {r:#?}");
    }

    #[test]
    fn an_invalid_configuration_is_refused() {
        let mut f = facts(config("10.1.0.0/24", "90s", ""));
        f.next = Err(vec!["bad".into()]);
        let r = diff(&f);
        assert!(r.refused());
        assert!(to_text(&r).contains("bad"));
    }
}
