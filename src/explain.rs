//! `ferrolb explain [-n NS] SERVICE`: why a Service is (not) announced.
//!
//! Two halves, as everywhere in ferrolb:
//! - pure: [`explain`] takes the [`Facts`] (plain values distilled from the
//!   API objects) and returns an [`Explanation`]; it runs the controller's own
//!   allocator ([`ControllerCore`]) and the speaker's own decisions
//!   ([`announce::decide`], [`layer2::Decider`]) — no second implementation;
//! - I/O: [`gather`] lists and gets what the controller and the speakers
//!   watch (the Service, its EndpointSlices or Endpoints, Nodes, the speaker
//!   pods, the configuration from the source the speakers would use, the
//!   ServiceBGPStatus / ServiceL2Status objects); [`run`] prints and chooses
//!   the exit code (0 served, 1 not served, 2 error).
//!
//! It writes nothing. What it cannot know offline it says: the layer 2
//! membership is the API server's view (Ready speaker pods, else every Node),
//! not the speakers' gossip; a rejected configuration leaves the speakers on
//! their last good one, which is not in the API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use ferrolb_config::Config;
use ferrolb_config::crs::{KINDS, Secrets};
use ferrolb_controller::allocator::Labels;
use ferrolb_controller::core::{ControllerCore, REASON_FAILED, REASON_LB_FAILED};
use ferrolb_controller::facts::{ServiceFacts as ControllerFacts, service_facts};
use ferrolb_ops::config_source::{Snapshot, Source, SourceMode, api_resource};
use ferrolb_speaker::announce::{
    self, Decision, Endpoint, NodeState, ServiceState, SkipReason, TrafficPolicy, peer_keys,
    peer_status_name,
};
use ferrolb_speaker::bgp_status::{self, Existing, LABEL_SERVICE_NAME, LABEL_SERVICE_NAMESPACE};
use ferrolb_speaker::layer2::{self, Cluster, Interfaces};
use ferrolb_speaker::members::speakers::{DEFAULT_SELECTOR, speaker_pod};
use ferrolb_speaker::watch::{endpoints_endpoints, node_state, slice_endpoints};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Reason name of a row whose peer's `nodeSelectors` do not select the node
/// (the speaker opens no session there, so it has no decision of its own).
pub const PEER_NOT_FOR_NODE: &str = "peerNotForNode";
/// Reason name of a row whose peer selects the node but needs something
/// ferrolb does not do (a VRF…): the speaker opens no session.
pub const PEER_UNSUPPORTED: &str = "peerUnsupported";

/// Output format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// For scripts.
    Json,
}

/// Flags of `ferrolb explain`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The Service: `NAME` (in `--service-namespace`) or `NAMESPACE/NAME`.
    pub service: String,
    /// The Service's namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub service_namespace: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// `text` or `json`.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// How `explain` and `diff` reach the cluster and read it as ferrolb does.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Kubeconfig file; without it: KUBECONFIG, ~/.kube/config, else the in-cluster config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace ferrolb runs in (its configuration, speaker pods, status objects).
    #[arg(long, default_value = "metallb-system")]
    pub namespace: String,
    /// Name of the configuration ConfigMap (key `config`).
    #[arg(long, default_value = "config")]
    pub config_name: String,
    /// Where the speakers read the configuration: `auto` (the custom
    /// resources when an IPAddressPool exists, else the ConfigMap),
    /// `configmap` or `crds`.
    #[arg(long, value_enum, default_value_t = SourceMode::Auto)]
    pub config_source: SourceMode,
    /// The `--lb-class` the controller and speakers run with.
    #[arg(long)]
    pub lb_class: Option<String>,
    /// The speakers run with `--ignore-exclude-lb`.
    #[arg(long)]
    pub ignore_exclude_lb: bool,
    /// Label selector of the speaker pods (the layer 2 membership seen from the API).
    #[arg(long, default_value = DEFAULT_SELECTOR)]
    pub speaker_selector: String,
}

/// What [`explain`] reads: plain values from the API objects.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The Service as the controller reads it (namespace labels filled in).
    pub service: ControllerFacts,
    /// Every Service as the controller reads it (this one included): the
    /// allocator is rebuilt from them as the controller does at start.
    pub all_services: Vec<ControllerFacts>,
    /// The controller's and speakers' `--lb-class`.
    pub lb_class: Option<String>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// The Service's `metadata.labels` (advertisements' `serviceSelectors`).
    pub labels: BTreeMap<String, String>,
    /// The Service's endpoints (EndpointSlices, else Endpoints).
    pub endpoints: Vec<Endpoint>,
    /// Where they came from, for the output.
    pub endpoints_from: String,
    /// The source the speakers would read, and what it parses to.
    pub source: Source,
    /// The configuration, or why it is rejected.
    pub config: Result<Config, String>,
    /// Every Node, as the speaker sees it ([`node_state`]).
    pub nodes: Vec<NodeState>,
    /// Nodes with a Ready speaker pod (`None`: could not list them).
    pub speaker_nodes: Option<BTreeSet<String>>,
    /// The speakers run with `--ignore-exclude-lb`.
    pub ignore_exclude_lb: bool,
    /// ServiceBGPStatus of this Service: node → peer names (`None`: not readable).
    pub bgp_status: Option<BTreeMap<String, Vec<String>>>,
    /// ServiceL2Status of this Service: node → interfaces (`None`: not readable).
    pub l2_status: Option<BTreeMap<String, Vec<String>>>,
}

/// One node × peer (BGP) or one node (layer 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The node.
    pub node: String,
    /// `bgp` or `layer2`.
    pub protocol: &'static str,
    /// The peer's status name (BGP; `None` for layer 2 or when no peer is configured).
    pub peer: Option<String>,
    /// The node announces the Service (to this peer; layer 2: answers ARP/NDP).
    pub announced: bool,
    /// Why not: the speaker's reason name ([`SkipReason::as_str`],
    /// [`layer2::SkipReason::as_str`]) or [`PEER_NOT_FOR_NODE`] / [`PEER_UNSUPPORTED`].
    pub reason: Option<&'static str>,
    /// The reason in words.
    pub detail: Option<String>,
    /// Announced prefixes (aggregation shows in their length).
    pub prefixes: Vec<String>,
    /// Standard communities, `A:B`.
    pub communities: Vec<String>,
    /// Large communities, `A:B:C`.
    pub large_communities: Vec<String>,
    /// LOCAL_PREF (iBGP peers only).
    pub local_pref: Option<u32>,
    /// Layer 2: the owner of the Service's IPs (the same on every row).
    pub owner: Option<String>,
    /// Layer 2: the interfaces (`None`: all).
    pub interfaces: Option<Vec<String>>,
    /// The status objects agree (`None`: they could not be read).
    pub live_agrees: Option<bool>,
}

/// What [`explain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// `namespace/name`.
    pub service: String,
    /// The IPs the Service shows (`status.loadBalancer.ingress`).
    pub ips: Vec<IpAddr>,
    /// The pool of its (first) IP as the controller's allocator says.
    pub pool: Option<String>,
    /// Why that pool, or why no IP (the allocator's reason).
    pub pool_reason: String,
    /// The IPs the allocator gives the Service now (may differ from `ips`).
    pub allocated: Vec<IpAddr>,
    /// `configmap` or `resources`.
    pub config_source: &'static str,
    /// The configuration is rejected: why (nothing else is decided).
    pub config_error: Option<String>,
    /// Where the endpoints came from.
    pub endpoints_from: String,
    /// One per node × peer (BGP) and per node (layer 2).
    pub rows: Vec<Row>,
    /// What could not be reproduced offline, and other remarks.
    pub notes: Vec<String>,
}

impl Explanation {
    /// The Service has an IP and at least one node announces it.
    pub fn served(&self) -> bool {
        !self.ips.is_empty() && self.rows.iter().any(|r| r.announced)
    }
}

fn community(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

/// Runs the controller's allocator and the speakers' decisions on `facts`.
pub fn explain(facts: &Facts) -> Explanation {
    let key = facts.service.key.to_string();
    let mut out = Explanation {
        service: key.clone(),
        ips: facts.service.shown.clone(),
        pool: None,
        pool_reason: String::new(),
        allocated: Vec::new(),
        config_source: match facts.source {
            Source::ConfigMap => "configmap",
            Source::Resources => "resources",
        },
        config_error: None,
        endpoints_from: facts.endpoints_from.clone(),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let config = match &facts.config {
        Ok(c) => c,
        Err(e) => {
            out.config_error = Some(e.clone());
            out.pool_reason = "the configuration is rejected".into();
            out.notes.push(
                "speakers and controller keep their last good configuration, which the API does not show: nothing can be decided offline".into(),
            );
            return out;
        }
    };
    allocation(facts, config, &mut out);

    let svc = ServiceState {
        key: key.clone(),
        ips: facts.service.shown.clone(),
        traffic_policy: facts.traffic_policy,
        endpoints: facts.endpoints.clone(),
        labels: facts.labels.clone(),
    };
    let nodes: Vec<NodeState> = facts
        .nodes
        .iter()
        .map(|n| NodeState {
            excluded: n.excluded && !facts.ignore_exclude_lb,
            ..n.clone()
        })
        .collect();
    // Which paths look at the Service: BGP unless every pool of its IPs is a
    // layer 2 pool only; layer 2 when some pool of its IPs has an L2Advertisement.
    let pools: Vec<_> = svc
        .ips
        .iter()
        .filter_map(|ip| config.pool_for(*ip))
        .collect();
    let l2 = pools.iter().any(|p| !p.l2_advertisements.is_empty());
    let bgp = pools.is_empty() || pools.iter().any(|p| p.l2_advertisements.is_empty());
    if bgp {
        bgp_rows(facts, config, &svc, &nodes, &mut out);
    }
    if l2 {
        l2_rows(facts, config, &svc, &nodes, &mut out);
    }
    if facts.bgp_status.is_none() && bgp || facts.l2_status.is_none() && l2 {
        out.notes
            .push("the status objects could not be read: live state not compared".into());
    }
    if !out.allocated.is_empty() && out.allocated != out.ips {
        out.notes.push(format!(
            "the allocator gives {:?} but the Service shows {:?}: is the controller running?",
            out.allocated, out.ips
        ));
    }
    out
}

/// The controller's allocator, rebuilt from every Service as at its start,
/// then asked for this Service.
fn allocation(facts: &Facts, config: &Config, out: &mut Explanation) {
    let f = &facts.service;
    if !f.load_balancer {
        out.pool_reason = "the Service is not of type LoadBalancer".into();
        return;
    }
    if f.class != facts.lb_class {
        out.pool_reason = format!(
            "spec.loadBalancerClass is {:?}, not ferrolb's ({:?})",
            f.class, facts.lb_class
        );
        return;
    }
    let mut core = ControllerCore::new(facts.lb_class.clone());
    core.offer_config_with(Some("explain"), |_| Ok(config.clone()));
    if !core.rebuild(&facts.all_services) {
        out.pool_reason = "the allocator rejects the pools".into();
        return;
    }
    let plan = core.plan(f);
    let assignment = core.allocator().and_then(|a| a.lookup(&f.key));
    let failed = plan
        .events
        .iter()
        .find(|e| e.reason == REASON_FAILED || e.reason == REASON_LB_FAILED);
    let Some(a) = assignment else {
        out.pool_reason = failed
            .map(|e| format!("{}: {}", e.reason, e.note))
            .unwrap_or_else(|| "the allocator gives no IP".into());
        return;
    };
    out.allocated = a.addrs();
    let (ip, pool) = a.ips[0].clone();
    out.pool = Some(pool.clone());
    out.pool_reason = match &f.request {
        Err(e) => {
            format!("it keeps {ip} from pool \"{pool}\" although its request is invalid: {e}")
        }
        Ok(r) if r.pool.is_some() => {
            format!("the address-pool annotation names \"{pool}\"")
        }
        Ok(r) if !r.requested_ips.is_empty() => {
            format!("it requests {ip} (loadBalancerIP / annotation), in pool \"{pool}\"")
        }
        Ok(r) if r.current.contains(&ip) => {
            format!("it holds {ip} (status) and the IP is in pool \"{pool}\"")
        }
        Ok(_) => {
            let admitted = config
                .pool(&pool)
                .is_some_and(|p| p.service_allocation.is_some());
            format!(
                "\"{pool}\" is the first auto-assign pool{} with a free address",
                if admitted {
                    " whose serviceAllocation admits the Service"
                } else {
                    ""
                }
            )
        }
    };
    if let Some(e) = failed {
        out.notes.push(format!("{}: {}", e.reason, e.note));
    }
}

fn bgp_rows(
    facts: &Facts,
    config: &Config,
    svc: &ServiceState,
    nodes: &[NodeState],
    out: &mut Explanation,
) {
    let keys = peer_keys(config);
    for node in nodes {
        let decision = announce::decide(config, node, svc);
        let unsupported = announce::unsupported_peers_for_node(config, &node.labels);
        let live_peers = facts
            .bgp_status
            .as_ref()
            .map(|m| m.get(&node.name).cloned().unwrap_or_default());
        let row = |peer: Option<String>| Row {
            node: node.name.clone(),
            protocol: "bgp",
            peer,
            announced: false,
            reason: None,
            detail: None,
            prefixes: Vec::new(),
            communities: Vec::new(),
            large_communities: Vec::new(),
            local_pref: None,
            owner: None,
            interfaces: None,
            live_agrees: None,
        };
        if config.peers.is_empty() {
            let mut r = row(None);
            if let Decision::Skip(why) = &decision {
                r.reason = Some(why.as_str());
                r.detail = Some(why.to_string());
            }
            r.live_agrees = live_peers.as_ref().map(|p| p.is_empty());
            out.rows.push(r);
            continue;
        }
        for (key, peer) in keys.iter().zip(&config.peers) {
            let name = peer_status_name(key, peer);
            let mut r = row(Some(name.clone()));
            if !peer.selects_node(&node.labels) {
                r.reason = Some(PEER_NOT_FOR_NODE);
                r.detail = Some("the peer's nodeSelectors do not select this node".into());
            } else if let Some((_, _, why)) = unsupported.iter().find(|(k, _, _)| k == key) {
                r.reason = Some(PEER_UNSUPPORTED);
                r.detail = Some(format!("no session: {why}"));
            } else {
                match &decision {
                    Decision::Skip(why) => {
                        r.reason = Some(why.as_str());
                        r.detail = Some(why.to_string());
                    }
                    Decision::Announce(anns) => {
                        let mine: Vec<_> = anns.iter().filter(|a| a.peer == *key).collect();
                        if mine.is_empty() {
                            let why = SkipReason::NoAdvertisementForPeer;
                            r.reason = Some(why.as_str());
                            r.detail = Some(
                                "no BGP advertisement of the IP's pool names this peer".into(),
                            );
                        } else {
                            r.announced = true;
                            for a in mine {
                                r.prefixes.push(a.prefix.to_string());
                                r.communities
                                    .extend(a.attrs.communities.iter().map(|c| community(*c)));
                                r.large_communities
                                    .extend(a.attrs.large_communities.iter().map(|l| {
                                        format!("{}:{}:{}", l.global_admin, l.local1, l.local2)
                                    }));
                                r.local_pref = r.local_pref.max(a.attrs.local_pref);
                            }
                            r.prefixes.dedup();
                            r.communities.sort();
                            r.communities.dedup();
                            r.large_communities.sort();
                            r.large_communities.dedup();
                        }
                    }
                }
            }
            r.live_agrees = live_peers
                .as_ref()
                .map(|p| p.contains(&name) == r.announced);
            out.rows.push(r);
        }
    }
}

/// The nodes with a Ready speaker pod (`None`: the pods could not be listed).
pub async fn ready_speaker_nodes(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> Option<BTreeSet<String>> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .ok()
        .map(|l| {
            l.items
                .iter()
                .filter_map(speaker_pod)
                .map(|p| p.node)
                .collect()
        })
}

/// The speakers a layer 2 election is computed over from outside, and the
/// note saying so: the Ready speaker pods, or every Node when none is found
/// (as a speaker without gossip counts them).
pub fn layer2_alive<'a>(
    speaker_nodes: Option<&BTreeSet<String>>,
    nodes: impl Iterator<Item = &'a String>,
) -> (BTreeSet<String>, String) {
    match speaker_nodes {
        Some(s) if !s.is_empty() => (
            s.clone(),
            format!(
                "layer 2: the speakers alive are taken from the API (Ready speaker pods: {}), not from their gossip",
                s.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
        _ => (
            nodes.cloned().collect(),
            "layer 2: no Ready speaker pod found: every Node counts as having a live speaker (as a speaker without gossip counts them)".into(),
        ),
    }
}

fn l2_rows(
    facts: &Facts,
    config: &Config,
    svc: &ServiceState,
    nodes: &[NodeState],
    out: &mut Explanation,
) {
    let by_name: BTreeMap<String, NodeState> =
        nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
    let (alive, note) = layer2_alive(facts.speaker_nodes.as_ref(), by_name.keys());
    out.notes.push(note);
    let cluster = Cluster {
        nodes: &by_name,
        alive: &alive,
        // Already folded into `excluded` above.
        ignore_exclude_lb: false,
    };
    let l2svc = svc.l2_facts();
    for node in nodes {
        let decisions = layer2::Decider::new(config, cluster, &node.name).decide(&l2svc);
        let mut r = Row {
            node: node.name.clone(),
            protocol: "layer2",
            peer: None,
            announced: false,
            reason: None,
            detail: None,
            prefixes: Vec::new(),
            communities: Vec::new(),
            large_communities: Vec::new(),
            local_pref: None,
            owner: None,
            interfaces: None,
            live_agrees: None,
        };
        let mut any = false;
        for (ip, d) in decisions {
            match d.decision {
                layer2::Decision::Skip(
                    layer2::SkipReason::NotInPool | layer2::SkipReason::NotLayer2Pool,
                ) => continue,
                layer2::Decision::Own(ifs) => {
                    r.announced = true;
                    r.prefixes.push(ip.to_string());
                    if let Interfaces::Only(v) = ifs {
                        r.interfaces = Some(v);
                    }
                }
                layer2::Decision::Skip(why) => {
                    if r.reason.is_none() {
                        r.reason = Some(why.as_str());
                        r.detail = Some(why.to_string());
                    }
                }
            }
            if !any {
                r.owner = d.owner;
                any = true;
            }
        }
        if !any {
            continue;
        }
        if r.announced {
            r.reason = None;
            r.detail = None;
        }
        r.live_agrees = facts
            .l2_status
            .as_ref()
            .map(|m| m.contains_key(&node.name) == r.announced);
        out.rows.push(r);
    }
}

/// The JSON form (`-o json`).
pub fn to_json(e: &Explanation) -> Value {
    let rows: Vec<Value> = e
        .rows
        .iter()
        .map(|r| {
            json!({
                "node": r.node,
                "protocol": r.protocol,
                "peer": r.peer,
                "announced": r.announced,
                "reason": r.reason,
                "detail": r.detail,
                "prefixes": r.prefixes,
                "communities": r.communities,
                "largeCommunities": r.large_communities,
                "localPref": r.local_pref,
                "owner": r.owner,
                "interfaces": r.interfaces,
                "liveAgrees": r.live_agrees,
            })
        })
        .collect();
    json!({
        "service": e.service,
        "ips": e.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "pool": e.pool,
        "poolReason": e.pool_reason,
        "allocated": e.allocated.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "configSource": e.config_source,
        "configError": e.config_error,
        "endpoints": e.endpoints_from,
        "served": e.served(),
        "announcements": rows,
        "notes": e.notes,
    })
}

/// The text form.
pub fn to_text(e: &Explanation) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let ips: Vec<String> = e.ips.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        s,
        "Service {}: {}",
        e.service,
        if ips.is_empty() {
            "no IP".to_string()
        } else {
            ips.join(", ")
        }
    );
    let _ = writeln!(s, "  configuration: {}", e.config_source);
    if let Some(err) = &e.config_error {
        let _ = writeln!(s, "  configuration rejected: {err}");
    }
    match &e.pool {
        Some(p) => {
            let _ = writeln!(s, "  pool: {p} ({})", e.pool_reason);
        }
        None => {
            let _ = writeln!(s, "  pool: none ({})", e.pool_reason);
        }
    }
    let _ = writeln!(s, "  endpoints: {}", e.endpoints_from);
    for r in &e.rows {
        let who = match (&r.peer, r.protocol) {
            (Some(p), _) => format!("{} → {p}", r.node),
            (None, "layer2") => format!("{} (layer 2)", r.node),
            (None, _) => format!("{} (no peer)", r.node),
        };
        let mut line = if r.announced {
            let mut l = format!("  {who}: announced {}", r.prefixes.join(", "));
            if !r.communities.is_empty() {
                let _ = write!(l, " communities {}", r.communities.join(" "));
            }
            if !r.large_communities.is_empty() {
                let _ = write!(l, " large-communities {}", r.large_communities.join(" "));
            }
            if let Some(lp) = r.local_pref {
                let _ = write!(l, " local-pref {lp}");
            }
            if let Some(ifs) = &r.interfaces {
                let _ = write!(l, " on {}", ifs.join(","));
            }
            l
        } else {
            format!(
                "  {who}: not announced: {} ({})",
                r.reason.unwrap_or("-"),
                r.detail.as_deref().unwrap_or("")
            )
        };
        if r.protocol == "layer2"
            && let Some(o) = &r.owner
        {
            let _ = write!(line, " [owner {o}]");
        }
        let _ = write!(
            line,
            "; live: {}",
            match r.live_agrees {
                Some(true) => "agrees",
                Some(false) => "DISAGREES",
                None => "unknown",
            }
        );
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "  served: {}", if e.served() { "yes" } else { "no" });
    for n in &e.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    s
}

/// `ferrolb explain`: prints the explanation; exit 0 served, 1 not, 2 error.
pub fn run(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrolb explain: {e}");
            return ExitCode::from(2);
        }
    };
    let facts = match rt.block_on(gather(&args)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ferrolb explain: {e:#}");
            return ExitCode::from(2);
        }
    };
    let e = explain(&facts);
    match args.output {
        Output::Json => println!("{:#}", to_json(&e)),
        Output::Text => print!("{}", to_text(&e)),
    }
    if e.config_error.is_some() {
        ExitCode::from(2)
    } else if e.served() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The HTTP status of an API error.
pub(crate) fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Fetches what [`explain`] reads.
pub async fn gather(args: &Args) -> Result<Facts> {
    let (ns, name) = match args.service.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (args.service_namespace.clone(), args.service.clone()),
    };
    let client = ferrolb_ops::client(args.cluster.kubeconfig.as_deref()).await?;
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .context("getting the Service")?
        .with_context(|| format!("Service {ns}/{name} not found"))?;

    // Namespace labels (pools' namespaceSelectors) for every Service.
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
    let with_labels = |f: ControllerFacts| {
        let l = ns_labels.get(&f.key.namespace).cloned();
        match l {
            Some(l) => f.with_namespace_labels(l),
            None => f,
        }
    };
    let all_services: Vec<ControllerFacts> = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Services")?
        .items
        .iter()
        .filter_map(service_facts)
        .map(with_labels)
        .collect();
    let service = service_facts(&svc)
        .map(with_labels)
        .context("the Service has no name or namespace")?;

    let (endpoints, endpoints_from) = fetch_endpoints(&client, &ns, &name).await?;

    let nodes: Vec<NodeState> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Nodes")?
        .items
        .iter()
        .map(|n| node_state(&n.name_any(), Some(n)))
        .collect();

    let speaker_nodes = ready_speaker_nodes(
        &client,
        &args.cluster.namespace,
        &args.cluster.speaker_selector,
    )
    .await;

    let (source, config) = fetch_config(
        &client,
        &args.cluster.namespace,
        &args.cluster.config_name,
        args.cluster.config_source,
    )
    .await?;

    let status = |kind: &'static bgp_status::StatusKind| {
        let client = client.clone();
        let sel = format!("{LABEL_SERVICE_NAME}={name},{LABEL_SERVICE_NAMESPACE}={ns}");
        let sys = args.cluster.namespace.clone();
        async move {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client,
                &sys,
                &api_resource(kind.kind, kind.plural, "v1beta1"),
            );
            let list = api.list(&ListParams::default().labels(&sel)).await.ok()?;
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for o in &list.items {
                if let Some(e) = Existing::from_object(o, kind) {
                    let node = o
                        .labels()
                        .get(bgp_status::LABEL_NODE)
                        .cloned()
                        .unwrap_or(e.status_node);
                    m.entry(node).or_default().extend(e.peers);
                }
            }
            Some(m)
        }
    };
    let bgp_status = status(&bgp_status::BGP).await;
    let l2_status = status(&bgp_status::L2).await;

    Ok(Facts {
        traffic_policy: ferrolb_ops::service::traffic_policy(&svc),
        labels: svc.labels().clone(),
        service,
        all_services,
        lb_class: args.cluster.lb_class.clone(),
        endpoints,
        endpoints_from,
        source,
        config,
        nodes,
        speaker_nodes,
        ignore_exclude_lb: args.cluster.ignore_exclude_lb,
        bgp_status,
        l2_status,
    })
}

/// The Service's EndpointSlices (discovery.k8s.io/v1), else its core/v1
/// Endpoints (API servers without slices v1), as the speaker reads them.
async fn fetch_endpoints(client: &Client, ns: &str, name: &str) -> Result<(Vec<Endpoint>, String)> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!(
            "{}={name}",
            ferrolb_speaker::watch::SERVICE_NAME_LABEL
        )))
        .await;
    match slices {
        Ok(l) => Ok((
            l.items.iter().flat_map(slice_endpoints).collect(),
            format!("{} EndpointSlice(s)", l.items.len()),
        )),
        Err(e) if matches!(api_code(&e), Some(404)) => {
            let ep = Api::<Endpoints>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await
                .context("getting the Endpoints")?;
            Ok(match ep {
                Some(ep) => (
                    endpoints_endpoints(&ep),
                    "Endpoints (no EndpointSlice v1 served)".into(),
                ),
                None => (Vec::new(), "no Endpoints object".into()),
            })
        }
        Err(e) => Err(e).context("listing EndpointSlices"),
    }
}

/// The configuration from the source the speakers would use (same rule:
/// [`Snapshot::build`]). BGP passwords are not read: they decide nothing here.
pub(crate) async fn fetch_config(
    client: &Client,
    namespace: &str,
    config_name: &str,
    mode: SourceMode,
) -> Result<(Source, Result<Config, String>)> {
    let cm = if mode.watches_configmap() {
        Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(config_name)
            .await
            .context("getting the ConfigMap")?
    } else {
        None
    };
    let mut objects = BTreeMap::new();
    if mode.watches_resources() {
        for (kind, plural, version) in KINDS {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                namespace,
                &api_resource(kind, plural, version),
            );
            match api.list(&ListParams::default()).await {
                Ok(l) => {
                    for o in l.items {
                        objects.insert((kind.to_string(), o.name_any()), o);
                    }
                }
                // Not installed, or not allowed: none of this kind (as the speaker).
                Err(e) if matches!(api_code(&e), Some(404 | 403)) => {}
                Err(e) => return Err(e).with_context(|| format!("listing {kind} objects")),
            }
        }
    }
    let snap = Snapshot::build(mode, cm.as_ref(), &objects);
    Ok((snap.source(), snap.parse(Secrets::Ignore)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeState {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NodeState {
            name: name.into(),
            excluded: labels.contains_key(announce::EXCLUDE_LABEL),
            labels,
            ..Default::default()
        }
    }

    fn svc_facts(name: &str, ip: Option<&str>, local: bool) -> ControllerFacts {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": if local {"Local"} else {"Cluster"},
                     "ipFamilies": ["IPv4"], "ports": [{"port": 80, "protocol": "TCP"}]},
        });
        if let Some(ip) = ip {
            v["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
        }
        let svc: Service = serde_json::from_value(v).unwrap();
        service_facts(&svc).unwrap()
    }

    fn ep(node: &str, ready: bool) -> Endpoint {
        Endpoint {
            node: Some(node.into()),
            ready,
            serving: ready,
        }
    }

    const CONFIG: &str = "peers:
- {peer-address: 10.0.0.1, peer-asn: 64512, my-asn: 64522}
- peer-address: 10.0.0.2
  peer-asn: 64522
  my-asn: 64522
  node-selectors:
  - match-labels: {rack: b}
bgp-communities: {edge: '64512:100'}
address-pools:
- name: bgp
  protocol: bgp
  addresses: [10.1.0.0/24]
  bgp-advertisements:
  - {aggregation-length: 32, localpref: 150, communities: [edge]}
- name: l2
  protocol: layer2
  addresses: [10.2.0.0/24]
";

    fn facts(svc: ControllerFacts, local: bool, endpoints: Vec<Endpoint>) -> Facts {
        Facts {
            all_services: vec![svc.clone()],
            service: svc,
            lb_class: None,
            traffic_policy: if local {
                TrafficPolicy::Local
            } else {
                TrafficPolicy::Cluster
            },
            labels: BTreeMap::new(),
            endpoints,
            endpoints_from: "test".into(),
            source: Source::ConfigMap,
            config: Config::parse(CONFIG).map_err(|e| e.to_string()),
            nodes: vec![
                node("n1", &[("rack", "a")]),
                node("n2", &[("rack", "b")]),
                node("n3", &[("rack", "a"), (announce::EXCLUDE_LABEL, "")]),
            ],
            speaker_nodes: None,
            ignore_exclude_lb: false,
            bgp_status: None,
            l2_status: None,
        }
    }

    fn row<'a>(e: &'a Explanation, node: &str, peer: Option<&str>) -> &'a Row {
        e.rows
            .iter()
            .find(|r| r.node == node && r.peer.as_deref() == peer)
            .unwrap_or_else(|| panic!("no row {node} {peer:?} in {:#?}", e.rows))
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            ip: Option<&'static str>,
            local: bool,
            endpoints: Vec<Endpoint>,
            /// (node, peer, announced, reason)
            want: Vec<(
                &'static str,
                Option<&'static str>,
                bool,
                Option<&'static str>,
            )>,
            served: bool,
            pool: Option<&'static str>,
        }
        let p1 = Some("10.0.0.1:179");
        let p2 = Some("10.0.0.2:179");
        let cases = vec![
            Case {
                name: "cluster, announced everywhere but the excluded node",
                ip: Some("10.1.0.5"),
                local: false,
                endpoints: vec![ep("n1", true)],
                want: vec![
                    ("n1", p1, true, None),
                    ("n1", p2, false, Some(PEER_NOT_FOR_NODE)),
                    ("n2", p1, true, None),
                    ("n2", p2, true, None),
                    ("n3", p1, false, Some("nodeExcluded")),
                ],
                served: true,
                pool: Some("bgp"),
            },
            Case {
                name: "local without a local endpoint",
                ip: Some("10.1.0.5"),
                local: true,
                endpoints: vec![ep("n1", true)],
                want: vec![
                    ("n1", p1, true, None),
                    ("n2", p1, false, Some("noLocalEndpoint")),
                    ("n2", p2, false, Some("noLocalEndpoint")),
                ],
                served: true,
                pool: Some("bgp"),
            },
            Case {
                name: "no ready endpoint",
                ip: Some("10.1.0.5"),
                local: false,
                endpoints: vec![ep("n1", false)],
                want: vec![
                    ("n1", p1, false, Some("noReadyEndpoint")),
                    ("n2", p2, false, Some("noReadyEndpoint")),
                ],
                served: false,
                pool: Some("bgp"),
            },
            Case {
                name: "no IP yet: the allocator would give the first free one",
                ip: None,
                local: false,
                endpoints: vec![ep("n1", true)],
                want: vec![("n1", p1, false, Some("noIP"))],
                served: false,
                pool: Some("bgp"),
            },
            Case {
                name: "IP outside every pool",
                ip: Some("192.0.2.1"),
                local: false,
                endpoints: vec![ep("n1", true)],
                want: vec![("n1", p1, false, Some("notInPool"))],
                served: false,
                // The controller would take it away and give one from "bgp".
                pool: Some("bgp"),
            },
            Case {
                name: "layer 2 pool: one owner",
                ip: Some("10.2.0.7"),
                local: false,
                endpoints: vec![ep("n1", true)],
                want: vec![],
                served: true,
                pool: Some("l2"),
            },
        ];
        for c in cases {
            let f = facts(svc_facts("s", c.ip, c.local), c.local, c.endpoints);
            let e = explain(&f);
            for (node, peer, announced, reason) in &c.want {
                let r = row(&e, node, *peer);
                assert_eq!(r.announced, *announced, "{}: {node} {peer:?}", c.name);
                assert_eq!(r.reason, *reason, "{}: {node} {peer:?}", c.name);
            }
            assert_eq!(e.served(), c.served, "{}: {e:#?}", c.name);
            assert_eq!(e.pool.as_deref(), c.pool, "{}: {}", c.name, e.pool_reason);
            // Whenever the allocator and the status differ, the output says so.
            let differs = !e.allocated.is_empty() && e.allocated != e.ips;
            assert_eq!(
                e.notes
                    .iter()
                    .any(|n| n.contains("is the controller running")),
                differs,
                "{}: {:?}",
                c.name,
                e.notes
            );
        }
    }

    #[test]
    fn attributes_and_live_state() {
        let mut f = facts(
            svc_facts("s", Some("10.1.0.5"), false),
            false,
            vec![ep("n1", true)],
        );
        // n1's object lists the peer; n2's object is missing though n2 announces.
        f.bgp_status = Some([("n1".to_string(), vec!["10.0.0.1:179".to_string()])].into());
        let e = explain(&f);
        let r = row(&e, "n1", Some("10.0.0.1:179"));
        assert_eq!(r.prefixes, ["10.1.0.5/32"]);
        assert_eq!(r.communities, ["64512:100"]);
        // eBGP peer: no LOCAL_PREF; iBGP peer (n2 → 10.0.0.2, same ASN): 150.
        assert_eq!(r.local_pref, None);
        assert_eq!(r.live_agrees, Some(true));
        let r2 = row(&e, "n2", Some("10.0.0.2:179"));
        assert_eq!(r2.local_pref, Some(150));
        assert_eq!(r2.live_agrees, Some(false));
        // The excluded node's empty status agrees with "not announced".
        assert_eq!(row(&e, "n3", Some("10.0.0.1:179")).live_agrees, Some(true));
        assert_eq!(
            e.pool_reason,
            "it holds 10.1.0.5 (status) and the IP is in pool \"bgp\""
        );
        let j = to_json(&e);
        assert_eq!(j["service"], "ns/s");
        assert_eq!(j["ips"], json!(["10.1.0.5"]));
        assert_eq!(j["pool"], "bgp");
        let anns = j["announcements"].as_array().unwrap();
        assert_eq!(anns.len(), 6, "3 nodes × 2 peers");
        assert!(
            anns.iter()
                .any(|a| a["node"] == "n3" && a["reason"] == "nodeExcluded")
        );
    }

    /// Custom resources: pools `bgp` (10.1.0.0/24) and `l2` (10.2.0.0/24),
    /// peer `r`, advertisements for `app: web` Services only.
    fn selective_config() -> Config {
        let text = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: bgp}
spec: {addresses: [10.1.0.0/24]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: l2}
spec: {addresses: [10.2.0.0/24]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: r}
spec: {myASN: 64522, peerASN: 64512, peerAddress: 10.0.0.1}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: web}
spec: {ipAddressPools: [bgp], communities: ['64512:9'], serviceSelectors: [{matchLabels: {app: web}}]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: web}
spec: {ipAddressPools: [l2], serviceSelectors: [{matchLabels: {app: web}}]}
";
        let mut r = ferrolb_config::crs::Resources::new();
        r.add_yaml("e.yaml", text).unwrap();
        Config::from_resources(&r, ferrolb_config::crs::Secrets::Ignore).unwrap()
    }

    #[test]
    fn service_selectors_show_as_a_reason_or_an_announcement() {
        for ip in ["10.1.0.5", "10.2.0.7"] {
            let mut f = facts(svc_facts("s", Some(ip), false), false, vec![ep("n1", true)]);
            f.config = Ok(selective_config());
            let e = explain(&f);
            assert!(!e.rows.is_empty());
            assert!(
                e.rows
                    .iter()
                    .filter(|r| r.node != "n3") // excluded from load balancers
                    .all(|r| !r.announced && r.reason == Some("noAdvertisementForService")),
                "{ip}: {:#?}",
                e.rows
            );
            let j = to_json(&e);
            assert_eq!(
                j["announcements"][0]["reason"], "noAdvertisementForService",
                "{j}"
            );
            assert!(
                to_text(&e).contains("(serviceSelectors)"),
                "{}",
                to_text(&e)
            );
            // Labelled to match: announced (BGP, with the community) or
            // answered by one node (layer 2).
            f.labels = [("app".to_string(), "web".to_string())].into();
            let e = explain(&f);
            let announced: Vec<_> = e.rows.iter().filter(|r| r.announced).collect();
            assert!(!announced.is_empty(), "{ip}: {:#?}", e.rows);
            if ip == "10.1.0.5" {
                assert!(announced.iter().all(|r| r.communities == ["64512:9"]));
            } else {
                assert_eq!(announced.len(), 1);
            }
        }
    }

    #[test]
    fn layer2_owner_is_one_node_and_notes_the_membership_source() {
        let mut f = facts(
            svc_facts("s", Some("10.2.0.7"), true),
            true,
            vec![ep("n2", true)],
        );
        f.speaker_nodes = Some(["n1".to_string(), "n2".to_string()].into());
        let e = explain(&f);
        let owners: Vec<_> = e.rows.iter().filter(|r| r.announced).collect();
        assert_eq!(owners.len(), 1, "{:#?}", e.rows);
        assert_eq!(
            owners[0].node, "n2",
            "Local: the only node with an endpoint"
        );
        assert!(e.rows.iter().all(|r| r.owner.as_deref() == Some("n2")));
        assert_eq!(row(&e, "n1", None).reason, Some("noLocalEndpoint"));
        assert_eq!(row(&e, "n3", None).reason, Some("speakerNotAlive"));
        assert!(
            e.notes.iter().any(|n| n.contains("Ready speaker pods")),
            "{:?}",
            e.notes
        );
    }

    #[test]
    fn allocator_reason_when_no_ip_can_be_given() {
        let mut f = facts(svc_facts("s", None, false), false, vec![]);
        // The annotation names a pool that does not exist.
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns",
                         "annotations": {"metallb.universe.tf/address-pool": "nope"}},
            "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"]},
        }))
        .unwrap();
        svc.metadata.creation_timestamp = None;
        f.service = service_facts(&svc).unwrap();
        f.all_services = vec![f.service.clone()];
        let e = explain(&f);
        assert_eq!(e.pool, None);
        assert!(
            e.pool_reason.contains("AllocationFailed"),
            "{}",
            e.pool_reason
        );
        assert!(e.pool_reason.contains("nope"), "{}", e.pool_reason);
        assert!(!e.served());
    }

    #[test]
    fn rejected_configuration_decides_nothing() {
        let mut f = facts(svc_facts("s", Some("10.1.0.5"), false), false, vec![]);
        f.config = Err("bad".into());
        let e = explain(&f);
        assert_eq!(e.config_error.as_deref(), Some("bad"));
        assert!(e.rows.is_empty());
        assert!(!e.served());
    }
}
