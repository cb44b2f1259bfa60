//! `ferrolb speaker`: the I/O shell. On any change the watches report
//! ([`crate::sources`]), it offers the configuration (the ConfigMap, or the
//! `metallb.io` custom resources with the BGP password Secrets they name) to
//! the configuration gate,
//! runs one pure decision pass ([`crate::pass`]) and tells the BGP sessions
//! what to hold ([`crate::peers`]); it publishes what the pass says to
//! publish and serves `/metrics`, `/healthz`, `/readyz` ([`crate::metrics`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_config::crs::{PasswordSecret, Secrets};
use ferrolb_config::gate::MISSING;
use ferrolb_config::{Config, ConfigGate, Verdict, stranded_message};
use ferrolb_ops::FnProbe;
use ferrolb_ops::cli::KubeOpts;
use ferrolb_ops::config_source::{ConfigReports, Offered, Role, read_password_secrets, state_of};
use ferrolb_ops::config_state::ConfigState;
use ferrolb_ops::events::{EventType, Events, Kind, Regarding, Reporter};
use ferrolb_ops::metrics::Metrics;
use ferrolb_ops::rate::TokenBucket;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::announce::SkipReason;
use crate::bgp_status::{self, StatusWriter, WriterConfig};
use crate::layer2::{Cluster, Interfaces};
use crate::members::{MemberView, Members};
use crate::metrics::{self, L2Counters, SpeakerState};
use crate::peers::{
    OnSigterm, PeerSessions, desired_sessions, keep_routes_on_sigterm, source_address_for,
};
use crate::sources::{Sources, WatchCounters, Watched, lock};
use crate::watch::{EndpointView, KnownNode, Nodes, Services, l2_facts, service_facts};
use ferrolb_ops::restart_marker::RestartMarker;

/// Flags of `ferrolb speaker` (each also read from `FERROLB_<FLAG>`).
#[derive(clap::Args, Debug, Clone)]
pub struct SpeakerOpts {
    /// This node's name (from the downward API in the DaemonSet).
    #[arg(long)]
    pub node_name: String,
    /// Announce from this node even when it carries the label
    /// `node.kubernetes.io/exclude-from-external-load-balancers` (kubeadm puts
    /// it on control-plane nodes), as MetalLB's flag of the same name.
    #[arg(long)]
    pub ignore_exclude_lb: bool,
    /// Most API writes a second for the ServiceBGPStatus objects, and as many
    /// again for the ServiceL2Status objects (a new object takes two); bursts
    /// (a restart, every Service changing at once) are spread at this rate.
    #[arg(long, default_value_t = 20.0)]
    pub status_writes_per_second: f64,
    /// Most Events written a second (bursts of up to 5 s worth): after a
    /// restart every announced Service gets its `nodeAssigned` Event, and a
    /// rollout of many speakers must not take every write the API server
    /// can do for them.
    #[arg(long, default_value_t = 20.0)]
    pub events_per_second: f64,
    /// What SIGTERM does to the routes of peers with graceful restart:
    /// `keep` (the routers hold them as stale until the next speaker is back:
    /// rollouts, upgrades), `withdraw` (withdraw, then Hard Reset), or `auto`:
    /// withdraw when this node is cordoned (`spec.unschedulable`, a drain or
    /// a shutdown), keep otherwise. Peers without graceful restart always
    /// get their routes withdrawn.
    #[arg(long, value_enum, default_value = "auto")]
    pub on_sigterm: OnSigterm,
    /// Where the restart marker lives (a hostPath on tmpfs, so that it
    /// outlives the process but not a reboot): a speaker that finds it sets
    /// the graceful restart R bit in its first sessions.
    #[arg(long, default_value = "/run/ferrolb")]
    pub state_dir: std::path::PathBuf,
    #[command(flatten)]
    pub kube: KubeOpts,
    /// The gossip between speakers (layer 2: which speakers are alive).
    #[command(flatten)]
    pub members: crate::members::cli::MembersOpts,
}

/// Events waiting to be written before new ones are dropped.
const EVENT_QUEUE: usize = 16_384;

/// The Event about a Service this node starts announcing (MetalLB's reason).
static NODE_ASSIGNED: Kind = Kind {
    type_: EventType::Normal,
    reason: "nodeAssigned",
    action: "Announce",
};

/// How soon a peer that got no session (no route to it) is looked at again;
/// also how often the BGP password Secrets are read again.
const PEER_RECHECK: Duration = Duration::from_secs(10);

/// The admission check of a new configuration on the speaker: as the
/// controller (and MetalLB), a configuration that would take an assigned IP
/// away is rejected, and the routes stay.
fn admit(
    services: &Mutex<Services>,
    current: Option<&Config>,
    next: &Config,
) -> Result<(), String> {
    let Some(current) = current else {
        return Ok(());
    };
    let services = lock(services);
    let stranded = current.strands(next, services.ips());
    if stranded.is_empty() {
        Ok(())
    } else {
        Err(stranded_message(&stranded))
    }
}

/// How long the first election waits for the speaker-pod list that seeds
/// the member view.
const SEED_WAIT: Duration = Duration::from_secs(10);

/// The layer 2 I/O: the membership view the election reads, and the
/// ARP/NDP announcer told which IPs this node answers for (started once the
/// configuration has a layer 2 pool, so that a speaker without one needs no
/// `NET_RAW`).
struct L2Shell {
    members: Option<Arc<Members>>,
    view: Option<tokio::sync::watch::Receiver<MemberView>>,
    announcer: Option<ferrolb_l2::Announcer>,
    counters: Arc<L2Counters>,
    /// The announcer could not start (no `CAP_NET_RAW`, say): this node
    /// answers for nothing, claims nothing and has left the member gossip,
    /// so that the other nodes elect owners among themselves. Until the
    /// speaker restarts.
    disabled: bool,
    owned: BTreeMap<IpAddr, Interfaces>,
}

impl L2Shell {
    /// With the member gossip, when it runs (`--ml-bind-addr`); `usable`:
    /// [`ferrolb_l2::probe`] passed (else the shell starts `disabled`).
    fn new(members: Option<Members>, counters: Arc<L2Counters>, usable: bool) -> L2Shell {
        if members.is_none() && usable {
            info!("layer 2 counts every Node as having a live speaker (no gossip)");
        }
        let members = members.map(Arc::new);
        L2Shell {
            view: members.as_ref().map(|m| m.view()),
            members,
            announcer: None,
            counters,
            disabled: !usable,
            owned: BTreeMap::new(),
        }
    }

    /// The speakers alive: the gossip's view (none before the API server's
    /// list of speakers seeded it), or every Node without gossip; never this
    /// node once its announcer could not start.
    fn alive(&self, nodes: &Nodes, me: &str) -> BTreeSet<String> {
        if let Some(m) = &self.members
            && !m.seeded()
        {
            return BTreeSet::new();
        }
        let mut alive = match &self.view {
            Some(v) => v.borrow().alive.clone(),
            None => nodes.names().map(str::to_string).collect(),
        };
        if self.disabled {
            alive.remove(me);
        }
        alive
    }

    /// Start the announcer when the configuration has a layer 2 pool, before
    /// this node is elected for anything: a node that cannot answer must
    /// never be an owner. On failure the node stops taking part (see
    /// `disabled`) and leaves the gossip.
    async fn start_if_needed(&mut self, wanted: bool) {
        if !wanted || self.announcer.is_some() || self.disabled {
            return;
        }
        let cfg = ferrolb_l2::AnnouncerConfig::new(self.counters.clone());
        match ferrolb_l2::Announcer::start(cfg) {
            Ok(a) => {
                info!(interfaces = ?a.interfaces(), "layer 2: ARP/NDP announcer started");
                self.announcer = Some(a);
            }
            Err(e) => {
                error!(error = %e, permission = e.is_permission(),
                    "layer 2: cannot answer ARP/NDP (the speaker needs CAP_NET_RAW); \
                     this node takes no layer 2 IPs and leaves the member gossip so \
                     that other nodes answer for them, until the speaker restarts");
                self.disabled = true;
                if let Some(m) = &self.members {
                    m.leave().await;
                }
            }
        }
    }

    /// Resolves when the member view changes (never without gossip).
    async fn changed(view: &mut Option<tokio::sync::watch::Receiver<MemberView>>) {
        match view {
            Some(v) => {
                if v.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Answer for exactly these IPs (the announcer was started by
    /// [`L2Shell::start_if_needed`]; without it there is nothing to own).
    fn set(&mut self, owned: BTreeMap<IpAddr, Interfaces>) {
        if owned == self.owned {
            return;
        }
        if let Some(a) = &self.announcer {
            a.set(
                owned
                    .iter()
                    .map(|(ip, i)| {
                        let i = match i {
                            Interfaces::All => ferrolb_l2::Interfaces::All,
                            Interfaces::Only(v) => ferrolb_l2::Interfaces::Only(v.clone()),
                        };
                        (*ip, i)
                    })
                    .collect(),
            );
        }
        self.owned = owned;
    }
}

/// Run the speaker until SIGTERM/SIGINT; then withdraw everything and send Cease.
pub async fn run(opts: SpeakerOpts) -> anyhow::Result<()> {
    let client = ferrolb_ops::client(opts.kube.kubeconfig.as_deref()).await?;
    let node_name = opts.node_name.clone();
    let notify = Arc::new(Notify::new());
    let shared: metrics::Shared = Arc::new(Mutex::new(SpeakerState::default()));
    let mut all_metrics = Metrics::new();
    metrics::register(&mut all_metrics, shared.clone(), node_name.clone())?;
    let events = Events::with_queue(
        client.clone(),
        Reporter {
            controller: "ferrolb-speaker".into(),
            instance: Some(node_name.clone()),
        },
        EVENT_QUEUE,
        TokenBucket::new(opts.events_per_second, opts.events_per_second * 5.0),
    );
    events.register(all_metrics.registry())?;
    let counters = WatchCounters::new(all_metrics.registry())?;
    let l2_counters = Arc::new(L2Counters::default());
    lock(&shared).l2_counters = Some(l2_counters.clone());
    // A node that cannot answer ARP/NDP must never be elected for an IP:
    // it stays out of the gossip, so the others never count it alive.
    let l2_usable = match ferrolb_l2::probe() {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, permission = e.is_permission(),
                "layer 2: cannot answer ARP/NDP (the speaker needs CAP_NET_RAW); this node \
                 takes no layer 2 IPs and stays out of the member gossip (BGP is not affected)");
            false
        }
    };
    let members = if l2_usable {
        opts.members.start(
            &node_name,
            client.clone(),
            &opts.kube.namespace,
            &mut all_metrics,
        )?
    } else {
        None
    };
    let mut l2 = L2Shell::new(members, l2_counters, l2_usable);
    let probe = {
        let shared = shared.clone();
        FnProbe::new(all_metrics, move || metrics::ready(&shared))
    };
    let _http = ferrolb_ops::serve(opts.kube.metrics_addr, probe).await?;

    let mut sources = Sources::start(
        &client,
        Watched {
            node: &node_name,
            namespace: &opts.kube.namespace,
            config_name: &opts.kube.config_name,
            config_source: opts.kube.config_source,
            lb_class: opts.kube.lb_class.clone(),
        },
        &notify,
        &counters,
    )
    .await;
    sources.synced().await;
    info!(node = %node_name, "caches synced");
    if let Some(m) = &l2.members {
        // Until the API server's list of speakers is in, the member view
        // holds only this node: electing on it would claim every layer 2 IP.
        if tokio::time::timeout(SEED_WAIT, m.wait_seeded())
            .await
            .is_err()
        {
            warn!(wait = ?SEED_WAIT, "no list of speaker pods yet: layer 2 answers nothing until it arrives");
        }
    }

    let assigned: Arc<str> =
        format!("announcing from node \"{node_name}\" with protocol \"bgp\"").into();
    let assigned_l2: Arc<str> =
        format!("announcing from node \"{node_name}\" with protocol \"layer2\"").into();

    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &opts.kube.namespace);
    // The Secrets BGPPeers name, as last read; the objects' revision they were
    // read for; when to read them again.
    let mut secrets: BTreeMap<String, PasswordSecret> = BTreeMap::new();
    let mut secrets_for: Option<String> = None;
    let mut secrets_due: Option<tokio::time::Instant> = None;
    let mut reports = ConfigReports::new(
        Role::Speaker,
        events.clone(),
        ConfigState::new(client.clone(), &opts.kube.namespace, Some(&node_name)),
    );
    let mut gate = ConfigGate::new();
    let mut node = KnownNode::default();
    // Claimed after the caches synced: a speaker that dies before it ever
    // announced leaves no marker of its own.
    let (marker, restarting) = match RestartMarker::claim(&opts.state_dir, "speaker") {
        Ok((m, r)) => (Some(m), r),
        Err(e) => {
            warn!(dir = %opts.state_dir.display(), error = %e,
                  "no restart marker: graceful restart sessions never set the R bit");
            (None, false)
        }
    };
    info!(restarting, "graceful restart state");
    let mut sessions = PeerSessions::default().restarting(restarting);
    let status = StatusWriter::spawn(
        client.clone(),
        WriterConfig {
            namespace: opts.kube.namespace.clone(),
            node: node_name.clone(),
            owner_pod: WriterConfig::owner_from_env(),
            writes_per_second: opts.status_writes_per_second,
            kind: &bgp_status::BGP,
            discovery: sources.config.discovery(),
        },
        notify.clone(),
    );
    let l2_status = StatusWriter::spawn(
        client.clone(),
        WriterConfig {
            namespace: opts.kube.namespace.clone(),
            node: node_name.clone(),
            owner_pod: WriterConfig::owner_from_env(),
            writes_per_second: opts.status_writes_per_second,
            kind: &bgp_status::L2,
            discovery: sources.config.discovery(),
        },
        notify.clone(),
    );
    lock(&shared).status_writes = Some(status.counters());
    let shutdown = ferrolb_ops::signal::shutdown();
    tokio::pin!(shutdown);
    // While a peer that selects this node gets no session (no route to it
    // yet), look again on a timer too: nothing in the cluster may change.
    let mut recheck: Option<tokio::time::Instant> = None;
    notify.notify_one();
    loop {
        let wake = match (recheck, secrets_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = notify.notified() => {}
            () = timer => {}
            () = L2Shell::changed(&mut l2.view) => {
                if let Some(v) = &l2.view {
                    let v = v.borrow();
                    info!(alive = ?v.alive, source = v.source.as_str(), "speakers alive");
                }
            }
            _ = &mut shutdown => break,
        }
        // The configuration: the gate keeps the last good one.
        let snap = sources.config.snapshot();
        // BGP passwords: read the Secrets again when the objects change and
        // every PEER_RECHECK, so that a changed password applies.
        let names = snap.password_secrets();
        if names.is_empty() {
            secrets.clear();
            secrets_for = None;
            secrets_due = None;
        } else {
            let now = tokio::time::Instant::now();
            let objects = snap.objects_revision();
            if secrets_for.as_deref() != Some(objects) || secrets_due.is_none_or(|t| t <= now) {
                secrets = read_password_secrets(&secrets_api, names, &secrets).await;
                secrets_for = Some(objects.to_string());
                secrets_due = Some(now + PEER_RECHECK);
            }
        }
        let revision = snap.revision(&secrets);
        let verdict = gate.offer(
            revision.as_deref(),
            |_| snap.parse(Secrets::Given(&secrets)),
            |current, next| admit(&sources.services, current, next),
        );
        let mut offered = Offered::default();
        match verdict {
            Verdict::Applied => {
                if let Some(cfg) = gate.current() {
                    info!(summary = %cfg.summary(), source = ?snap.source(), "configuration loaded");
                    offered.admitted = Some(cfg.warnings.clone());
                }
            }
            Verdict::Rejected { reason, report } => {
                error!(errors = %reason, "configuration rejected: keeping the last good one, no route changes");
                offered.report = report;
            }
            Verdict::Unchanged => {}
        }
        reports
            .report(
                &snap,
                offered,
                state_of(gate.loaded(), gate.rejection(), MISSING),
            )
            .await;
        {
            let mut st = lock(&shared);
            st.config_loaded = gate.loaded();
            st.config_stale = gate.stale();
        }
        let Some(config) = gate.current() else {
            debug!("no valid configuration yet: announcing nothing");
            continue;
        };
        // Service labels: keep those the advertisements' serviceSelectors
        // read; a key the kept Services lack needs a fresh list, and the
        // decisions wait for it (the routes of the last pass stay).
        {
            let mut services = lock(&sources.services);
            if services.set_label_keys(config.service_label_keys()) {
                info!("serviceSelectors read new Service labels: listing the Services again");
                sources.relist_services();
            }
            if services.labels_pending() {
                debug!("waiting for the Services to be listed again");
                continue;
            }
        }
        let mut this = node.observe_state(&node_name, lock(&sources.nodes).get(&node_name));
        if opts.ignore_exclude_lb {
            this.excluded = false;
        }

        let outcome = {
            let services = lock(&sources.services);
            let endpoints = lock(&sources.endpoints);
            let view = EndpointView::new(&endpoints, &node_name);
            let mut st = lock(&shared);
            let outcome = st
                .announcer
                .pass(config, &this, service_facts(&services, &view));
            st.synced = true;
            if status.enabled() {
                status.set(bgp_status::desired(&st.announcer, config));
            }
            for key in &outcome.announced {
                info!(svc = %key, node = %node_name, "announcing");
                let uid = services.get(key).and_then(|s| s.uid.as_deref());
                events.enqueue(
                    Regarding::service(key, uid),
                    &NODE_ASSIGNED,
                    assigned.clone(),
                );
            }
            outcome
        };
        for (key, why) in &outcome.withdrawn {
            info!(svc = %key, "withdrawing: {why}");
        }
        for key in &outcome.conflicting {
            error!(
                svc = %key,
                reason = SkipReason::ConflictingAdvertisements.as_str(),
                "not announced: {}",
                SkipReason::ConflictingAdvertisements
            );
        }
        let desired: BTreeMap<_, usize> =
            outcome.routes.iter().map(|(k, r)| (*k, r.len())).collect();
        sessions.report_unsupported(config, &this);
        let (wanted, errors) = desired_sessions(config, &this, &source_address_for);
        recheck = (!errors.is_empty()).then(|| tokio::time::Instant::now() + PEER_RECHECK);
        for e in errors {
            warn!(error = %e, "peer skipped (looked at again in {}s)", PEER_RECHECK.as_secs());
        }
        sessions.sync(wanted, outcome.routes).await;
        lock(&shared).sessions = sessions.views(&desired);

        // Layer 2: who answers ARP/NDP for each IP of a layer 2 pool.
        l2.start_if_needed(config.pools.iter().any(|p| !p.l2_advertisements.is_empty()))
            .await;
        let l2_out = {
            let services = lock(&sources.services);
            let endpoints = lock(&sources.endpoints);
            let nodes = lock(&sources.nodes);
            let alive = l2.alive(&nodes, &node_name);
            let facts = l2_facts(&services, &endpoints, |ip| {
                config
                    .pool_for(ip)
                    .is_some_and(|p| !p.l2_advertisements.is_empty())
            });
            let cluster = Cluster {
                nodes: &*nodes,
                alive: &alive,
                ignore_exclude_lb: opts.ignore_exclude_lb,
            };
            let mut st = lock(&shared);
            let out = st.layer2.pass(config, cluster, &node_name, facts);
            if l2_status.enabled() {
                l2_status.set(bgp_status::desired_l2(&st.layer2));
            }
            for key in &out.assigned {
                info!(svc = %key, node = %node_name, protocol = "layer2", "announcing");
                let uid = services.get(key).and_then(|s| s.uid.as_deref());
                events.enqueue(
                    Regarding::service(key, uid),
                    &NODE_ASSIGNED,
                    assigned_l2.clone(),
                );
            }
            out
        };
        for (key, why) in &l2_out.released {
            match why {
                Some(r) => info!(svc = %key, protocol = "layer2", "withdrawing: {r}"),
                None => info!(svc = %key, protocol = "layer2", "withdrawing: service deleted"),
            }
        }
        l2.set(l2_out.owned);
    }

    info!("shutting down: layer 2 answers stop, the gossip is left, then BGP");
    l2.set(BTreeMap::new());
    if let Some(m) = &l2.members {
        m.leave().await;
    }
    lock(&shared).sessions.clear();
    let unschedulable = lock(&sources.nodes)
        .get(&node_name)
        .is_some_and(|n| n.unschedulable);
    if keep_routes_on_sigterm(opts.on_sigterm, unschedulable) {
        info!(on_sigterm = ?opts.on_sigterm, unschedulable,
              "shutting down: graceful restart peers keep our routes, the others get withdrawals and Cease");
        sessions
            .shutdown_keeping_routes(Duration::from_secs(2))
            .await;
    } else {
        info!(on_sigterm = ?opts.on_sigterm, unschedulable,
              "shutting down: withdrawing all routes and closing sessions");
        sessions.shutdown(Duration::from_secs(2)).await;
        if let Some(m) = marker
            && let Err(e) = m.remove()
        {
            warn!(error = %e, "cannot remove the restart marker");
        }
    }
    Ok(())
}
