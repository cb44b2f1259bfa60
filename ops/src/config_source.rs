//! Where the configuration comes from: the MetalLB v0.12 ConfigMap, the
//! `metallb.io` custom resources of MetalLB v0.13+, or (by default) whichever
//! is in use.
//!
//! Two halves:
//! - pure: [`select`] (which source is in force, from the mode and what
//!   exists) and [`revision`] (the string [`ferrolb_config::ConfigGate::offer`]
//!   compares: it changes when the chosen source changes or its content does);
//! - I/O: [`ConfigSource`] watches the ConfigMap (by name) and the kinds of
//!   [`ferrolb_config::crs::KINDS`] as [`DynamicObject`]s in one namespace and
//!   hands out a [`Snapshot`] per pass; [`read_password_secrets`] GETs the
//!   Secrets BGPPeers refer to; [`ConfigReports`] publishes what the user
//!   should see about the configuration (rejections, an ignored ConfigMap,
//!   unsupported fields) and keeps the [`ConfigState`] object current.
//!
//! It does not decide whether a configuration is admitted: the binaries'
//! gates do.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_config::crs::{KINDS, PasswordSecret, Resources, Secrets};
use ferrolb_config::{Config, ConfigWarning};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use kube::{Client, Resource};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config_state::{ConfigState, StateResult};
use crate::events::{EventType, Events};
use crate::metrics::IntCounter;

/// API group of the custom resources.
pub const GROUP: &str = "metallb.io";

/// Event reason on a ConfigMap that is present but not used (custom resources win).
pub const REASON_CONFIGMAP_IGNORED: &str = "ConfigMapIgnored";
/// Event reason on an object whose field is accepted but not acted upon.
pub const REASON_UNSUPPORTED_FIELD: &str = "UnsupportedField";
/// Event reason of a rejected configuration (MetalLB's).
pub const REASON_INVALID_CONFIG: &str = "InvalidConfig";

/// `--config-source`: where the configuration is read from.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceMode {
    /// The custom resources when at least one IPAddressPool exists, else the ConfigMap.
    #[default]
    Auto,
    /// Only the ConfigMap (the custom resources are not watched).
    Configmap,
    /// Only the custom resources (the ConfigMap is not watched).
    Crds,
}

impl SourceMode {
    /// The ConfigMap is watched in this mode.
    pub fn watches_configmap(self) -> bool {
        self != SourceMode::Crds
    }

    /// The custom resources are watched in this mode.
    pub fn watches_resources(self) -> bool {
        self != SourceMode::Configmap
    }
}

/// The source a configuration is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The ConfigMap's key `config`.
    ConfigMap,
    /// The `metallb.io` objects.
    Resources,
}

/// The outcome of [`select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// The source in force.
    pub source: Source,
    /// A ConfigMap configuration exists but is not used (auto mode, custom
    /// resources present): tell the user once.
    pub configmap_ignored: bool,
}

/// Which source is in force. `configmap_present`: the ConfigMap exists with
/// a key `config`; `has_pools`: at least one IPAddressPool exists.
pub fn select(mode: SourceMode, configmap_present: bool, has_pools: bool) -> Selection {
    match mode {
        SourceMode::Configmap => Selection {
            source: Source::ConfigMap,
            configmap_ignored: false,
        },
        SourceMode::Crds => Selection {
            source: Source::Resources,
            configmap_ignored: false,
        },
        SourceMode::Auto if has_pools => Selection {
            source: Source::Resources,
            configmap_ignored: configmap_present,
        },
        SourceMode::Auto => Selection {
            source: Source::ConfigMap,
            configmap_ignored: false,
        },
    }
}

/// The revision offered to the gate: `None` when the ConfigMap is the source
/// and it (or its key) is missing; otherwise a string naming the source and
/// its content: the ConfigMap's text, or the objects' revision
/// (`Resources::revision`) and every referred Secret's resourceVersion
/// (`secrets` by name; a name in `secret_names` missing from it counts as
/// "not found").
pub fn revision(
    source: Source,
    configmap_text: Option<&str>,
    resources_revision: &str,
    secret_names: &[String],
    secrets: &BTreeMap<String, PasswordSecret>,
) -> Option<String> {
    match source {
        Source::ConfigMap => configmap_text.map(|t| format!("configmap\n{t}")),
        Source::Resources => {
            let mut s = format!("resources\n{resources_revision}\nsecrets:");
            for name in secret_names {
                let rv = match secrets.get(name) {
                    Some(sec) => sec.resource_version.as_deref().unwrap_or("?"),
                    None => "-",
                };
                s.push_str(&format!(" {name}={rv}"));
            }
            Some(s)
        }
    }
}

/// What the ConfigurationState says for a gate in this state: `loaded` (a
/// configuration was admitted) and the latest offer's rejection reason.
/// A missing source (`missing` is the gate's reason for it) is `Unknown`.
pub fn state_of(loaded: bool, rejection: Option<&str>, missing: &str) -> StateResult {
    match rejection {
        Some(r) if r == missing => StateResult::Unknown(r.to_string()),
        Some(r) => StateResult::Invalid(r.to_string()),
        None if loaded => StateResult::Valid,
        None => StateResult::Unknown("no configuration yet".to_string()),
    }
}

/// The [`ApiResource`] of `(kind, plural, version)` in [`GROUP`].
pub fn api_resource(kind: &str, plural: &str, version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, version, kind), plural)
}

/// One configuration as it stands, for one pass.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Which source is in force.
    pub selection: Selection,
    /// The ConfigMap, when it exists (and is watched).
    pub configmap: Option<ObjectReference>,
    configmap_text: Option<String>,
    /// The custom resources (empty when the ConfigMap is the source).
    resources: Resources,
    /// Objects that could not be taken into `resources` (`Kind/name: why`).
    bad_objects: Vec<String>,
    resources_revision: String,
    secret_names: Vec<String>,
    /// [`revision`] without Secrets, built once (the speaker asks every pass).
    base_revision: Option<String>,
    /// References of the objects, by (kind, name).
    refs: BTreeMap<(String, String), ObjectReference>,
}

impl Snapshot {
    /// Builds a snapshot from what the watches hold (pure).
    pub fn build(
        mode: SourceMode,
        configmap: Option<&ConfigMap>,
        objects: &BTreeMap<(String, String), DynamicObject>,
    ) -> Snapshot {
        let configmap_text = configmap
            .and_then(|c| c.data.as_ref()?.get("config"))
            .cloned();
        let has_pools = objects.keys().any(|(kind, _)| kind == "IPAddressPool");
        let selection = select(mode, configmap_text.is_some(), has_pools);
        let mut refs = BTreeMap::new();
        let mut resources = Resources::new();
        let mut bad_objects = Vec::new();
        let mut resources_revision = String::new();
        let mut secret_names = Vec::new();
        if selection.source == Source::Resources {
            for ((kind, name), obj) in objects {
                let ar = KINDS
                    .iter()
                    .find(|(k, _, _)| k == kind)
                    .map(|(k, p, v)| api_resource(k, p, v));
                if let Some(ar) = &ar {
                    refs.insert((kind.clone(), name.clone()), reference(obj, ar));
                }
                let json = match serde_json::to_value(obj) {
                    Ok(mut v) => {
                        if let (Some(ar), Some(map)) = (&ar, v.as_object_mut()) {
                            map.insert("apiVersion".into(), ar.api_version.clone().into());
                            map.insert("kind".into(), ar.kind.clone().into());
                        }
                        v
                    }
                    Err(e) => {
                        bad_objects.push(format!("{kind}/{name}: {e}"));
                        continue;
                    }
                };
                if let Err(e) = resources.add_json(&json) {
                    bad_objects.push(format!("{kind}/{name}: {e}"));
                }
            }
            resources_revision = resources.revision();
            for b in &bad_objects {
                resources_revision.push_str(&format!("\nbad {b}"));
            }
            secret_names = resources.password_secrets();
        }
        let base_revision = revision(
            selection.source,
            configmap_text.as_deref(),
            &resources_revision,
            &secret_names,
            &BTreeMap::new(),
        );
        Snapshot {
            base_revision,
            selection,
            configmap: configmap.map(|c| c.object_ref(&())),
            configmap_text,
            resources,
            bad_objects,
            resources_revision,
            secret_names,
            refs,
        }
    }

    /// The source in force.
    pub fn source(&self) -> Source {
        self.selection.source
    }

    /// The custom resources read (empty unless they are the source).
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Names of the Secrets the BGPPeers refer to (empty unless the custom
    /// resources are the source).
    pub fn password_secrets(&self) -> &[String] {
        &self.secret_names
    }

    /// What identifies the custom resources read (`Resources::revision`;
    /// empty when the ConfigMap is the source): the speaker reads the Secrets
    /// again when it changes.
    pub fn objects_revision(&self) -> &str {
        &self.resources_revision
    }

    /// The revision for the gate, see [`revision`]. Borrowed when no Secret
    /// is named (no copy of the ConfigMap's text on every pass).
    pub fn revision(&self, secrets: &BTreeMap<String, PasswordSecret>) -> Option<Cow<'_, str>> {
        if self.secret_names.is_empty() {
            return self.base_revision.as_deref().map(Cow::Borrowed);
        }
        revision(
            self.source(),
            self.configmap_text.as_deref(),
            &self.resources_revision,
            &self.secret_names,
            secrets,
        )
        .map(Cow::Owned)
    }

    /// Parses the configuration of the source in force (the controller passes
    /// [`Secrets::Ignore`]). Errors are joined, one per line.
    pub fn parse(&self, secrets: Secrets<'_>) -> Result<Config, String> {
        match self.source() {
            Source::ConfigMap => match &self.configmap_text {
                Some(t) => Config::parse(t).map_err(|e| e.to_string()),
                None => Err(ferrolb_config::gate::MISSING.to_string()),
            },
            Source::Resources => {
                if !self.bad_objects.is_empty() {
                    return Err(self.bad_objects.join("\n"));
                }
                Config::from_resources(&self.resources, secrets).map_err(|e| e.to_string())
            }
        }
    }

    /// The first IPAddressPool (by name), when the custom resources are the source.
    pub fn first_pool(&self) -> Option<ObjectReference> {
        self.refs
            .iter()
            .find(|((kind, _), _)| kind == "IPAddressPool")
            .map(|(_, r)| r.clone())
    }

    /// The object a warning is about: the named custom resource, or the
    /// ConfigMap when it is the source.
    pub fn warning_target(&self, w: &ConfigWarning) -> Option<ObjectReference> {
        match self.source() {
            Source::ConfigMap => self.configmap.clone(),
            Source::Resources => self.refs.get(&(w.kind.clone(), w.name.clone())).cloned(),
        }
    }
}

fn reference(obj: &DynamicObject, ar: &ApiResource) -> ObjectReference {
    ObjectReference {
        api_version: Some(ar.api_version.clone()),
        kind: Some(ar.kind.clone()),
        name: obj.metadata.name.clone(),
        namespace: obj.metadata.namespace.clone(),
        uid: obj.metadata.uid.clone(),
        resource_version: obj.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Counters of the watch events the configuration watches deliver (the
/// speaker counts them in `metallb_k8s_client_updates_total` and
/// `…_update_errors_total`, as its other watches).
#[derive(Clone)]
pub struct WatchCounts {
    /// Watch events applied.
    pub updates: IntCounter,
    /// Watch errors (each retried).
    pub errors: IntCounter,
}

impl WatchCounts {
    fn count<T>(counts: &Option<WatchCounts>, r: &Result<T, watcher::Error>) {
        if let Some(c) = counts {
            match r {
                Ok(_) => c.updates.inc(),
                Err(_) => c.errors.inc(),
            }
        }
    }
}

/// How long the custom resources must be left alone before a change to them
/// is taken: `kubectl apply -f` creates a file's objects one by one, and
/// a set caught half-way (the pools without their peers or advertisements,
/// typically when switching from the ConfigMap) would withdraw routes for
/// the moment it lasts.
pub const SETTLE: Duration = Duration::from_secs(1);
/// The longest a change waits for the set to settle (under constant edits).
pub const SETTLE_MAX: Duration = Duration::from_secs(10);

/// When changes to the custom resources, the first at `first` and the
/// latest at `last`, are taken: [`SETTLE`] after the latest, at most
/// [`SETTLE_MAX`] after the first.
pub fn settled_at(first: Instant, last: Instant) -> Instant {
    (last + SETTLE).min(first + SETTLE_MAX)
}

/// What the watches hold.
#[derive(Default)]
struct State {
    configmap: Option<ConfigMap>,
    objects: BTreeMap<(String, String), DynamicObject>,
    /// Bumped on every change.
    generation: u64,
    cached: Option<(u64, Arc<Snapshot>)>,
    /// Changes to the custom resources not in a snapshot yet: when the first
    /// and the latest came.
    unsettled: Option<(Instant, Instant)>,
}

impl State {
    fn objects_changed(&mut self) {
        self.generation += 1;
        let now = Instant::now();
        self.unsettled = Some(match self.unsettled {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }
}

/// Rings `notify` once the changes to the custom resources have settled
/// (woken by `changed` on each change).
async fn settler(state: Arc<Mutex<State>>, changed: Arc<Notify>, notify: Arc<Notify>) {
    loop {
        changed.notified().await;
        loop {
            let at = lock(&state).unsettled.map(|(f, l)| settled_at(f, l));
            match at {
                None => break,
                Some(at) if Instant::now() < at => tokio::time::sleep_until(at).await,
                Some(_) => {
                    notify.notify_one();
                    break;
                }
            }
        }
    }
}

/// The watches of the configuration (see the module documentation).
pub struct ConfigSource {
    mode: SourceMode,
    discovery: Arc<GroupDiscovery>,
    state: Arc<Mutex<State>>,
    ready: Vec<tokio::sync::watch::Receiver<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ConfigSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long to wait before listing a kind whose CRD is not installed again
/// (doubling from the first to the last).
const ABSENT_RETRY: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(60));

/// The group version whose discovery document says whether MetalLB's CRDs
/// are installed at all (IPAddressPool, without which there is no
/// configuration from custom resources, is served only there).
const PROBE_VERSION: &str = "metallb.io/v1beta1";

/// A discovery answer younger than this serves every kind that asks.
const PROBE_FRESH: Duration = Duration::from_secs(2);

/// What discovery says about [`PROBE_VERSION`].
#[derive(Clone, Debug)]
pub enum Discovered {
    /// 404: no `metallb.io` CRD is installed.
    NotServed,
    /// Served, with these resources (plurals).
    Served(Arc<[String]>),
    /// The question failed (API server away, forbidden): whoever asked
    /// should try its own request, which reports the failure.
    Unknown,
}

impl Discovered {
    /// The group is (or may be) served.
    pub fn group_served(&self) -> bool {
        !matches!(self, Discovered::NotServed)
    }

    /// `plural` is (or may be) served in [`PROBE_VERSION`].
    pub fn may_serve(&self, plural: &str) -> bool {
        match self {
            Discovered::NotServed => false,
            Discovered::Served(r) => r.iter().any(|x| x == plural),
            Discovered::Unknown => true,
        }
    }
}

/// Whether `metallb.io` is served, asked once for all who wait on a missing
/// CRD: with no CRDs installed (a ConfigMap install in `auto` mode) the
/// configuration kinds and the status writers wait on one discovery GET per
/// retry period, not one list each (bench/speaker-scale: 50 idle speakers
/// sent 7 requests/s, 8 lists per speaker per minute of kinds that did not
/// exist).
pub struct GroupDiscovery {
    client: Client,
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Discovered)>>,
}

impl std::fmt::Debug for GroupDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupDiscovery").finish_non_exhaustive()
    }
}

impl GroupDiscovery {
    /// Asks through `client`.
    pub fn new(client: Client) -> Self {
        GroupDiscovery {
            client,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Asks discovery about [`PROBE_VERSION`], or returns an answer younger
    /// than [`PROBE_FRESH`] (so kinds waking together ask once).
    pub async fn discover(&self) -> Discovered {
        let mut last = self.last.lock().await;
        if let Some((at, d)) = &*last
            && at.elapsed() < PROBE_FRESH
        {
            return d.clone();
        }
        let d = match self.client.list_api_group_resources(PROBE_VERSION).await {
            Ok(l) => Discovered::Served(l.resources.into_iter().map(|r| r.name).collect()),
            Err(kube::Error::Api(ref s)) if s.code == 404 => Discovered::NotServed,
            Err(_) => Discovered::Unknown,
        };
        *last = Some((tokio::time::Instant::now(), d.clone()));
        d
    }
}

impl ConfigSource {
    /// Starts the watches `mode` needs in `namespace`: the ConfigMap
    /// `config_name` and/or the `metallb.io` kinds. `notify` rings on every
    /// change; `counts`, when given, counts every watch event and error.
    pub fn start(
        client: &Client,
        namespace: &str,
        config_name: &str,
        mode: SourceMode,
        notify: Arc<Notify>,
        counts: Option<WatchCounts>,
    ) -> ConfigSource {
        let state = Arc::new(Mutex::new(State::default()));
        let discovery = Arc::new(GroupDiscovery::new(client.clone()));
        let mut ready = Vec::new();
        let mut tasks = Vec::new();
        if mode.watches_configmap() {
            let (tx, rx) = tokio::sync::watch::channel(false);
            ready.push(rx);
            let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
            let wc = watcher::Config::default().fields(&format!("metadata.name={config_name}"));
            let state = state.clone();
            let notify = notify.clone();
            let counts = counts.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = std::pin::pin!(crate::watch_backoff::backoff(watcher(api, wc)));
                let mut listed: Option<ConfigMap> = None;
                while let Some(ev) = s.next().await {
                    WatchCounts::count(&counts, &ev);
                    let cm = match ev {
                        Ok(watcher::Event::Init) => {
                            listed = None;
                            continue;
                        }
                        Ok(watcher::Event::InitApply(mut cm)) => {
                            cm.metadata.managed_fields = None;
                            listed = Some(cm);
                            continue;
                        }
                        Ok(watcher::Event::InitDone) => {
                            tx.send_replace(true);
                            listed.take()
                        }
                        Ok(watcher::Event::Apply(mut cm)) => {
                            cm.metadata.managed_fields = None;
                            Some(cm)
                        }
                        Ok(watcher::Event::Delete(_)) => None,
                        Err(e) => {
                            warn!(error = %e, "watching the configuration ConfigMap (retrying)");
                            continue;
                        }
                    };
                    {
                        let mut st = lock(&state);
                        st.configmap = cm;
                        st.generation += 1;
                    }
                    notify.notify_one();
                }
            }));
        }
        if mode.watches_resources() {
            let changed = Arc::new(Notify::new());
            tasks.push(tokio::spawn(settler(
                state.clone(),
                changed.clone(),
                notify.clone(),
            )));
            for (kind, plural, version) in KINDS {
                let (tx, rx) = tokio::sync::watch::channel(false);
                ready.push(rx);
                let ar = api_resource(kind, plural, version);
                let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar);
                tasks.push(tokio::spawn(watch_kind(
                    api,
                    discovery.clone(),
                    kind,
                    state.clone(),
                    changed.clone(),
                    tx,
                    counts.clone(),
                )));
            }
        }
        ConfigSource {
            mode,
            discovery,
            state,
            ready,
            tasks,
        }
    }

    /// The mode it was started with.
    pub fn mode(&self) -> SourceMode {
        self.mode
    }

    /// Its discovery of the `metallb.io` group, for others in the process
    /// that wait on a CRD (one answer serves all who ask together).
    pub fn discovery(&self) -> Arc<GroupDiscovery> {
        self.discovery.clone()
    }

    /// Waits until every watch has listed once (a kind whose CRD is not
    /// installed counts as listed, empty).
    pub async fn synced(&mut self) {
        for r in &mut self.ready {
            let _ = r.wait_for(|r| *r).await;
        }
    }

    /// The configuration as it stands (rebuilt only after a change). While
    /// the custom resources are being changed (see [`SETTLE`]), the previous
    /// snapshot; the notifier rings when they have settled.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let mut st = lock(&self.state);
        if let Some((generation, snap)) = &st.cached {
            let unsettled = st
                .unsettled
                .is_some_and(|(f, l)| Instant::now() < settled_at(f, l));
            if *generation == st.generation || unsettled {
                return snap.clone();
            }
        }
        let snap = Arc::new(Snapshot::build(
            self.mode,
            st.configmap.as_ref(),
            &st.objects,
        ));
        st.cached = Some((st.generation, snap.clone()));
        st.unsettled = None;
        snap
    }
}

/// The HTTP status of a watch error answered by the API server.
fn status_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

fn trim(o: &mut DynamicObject) {
    o.metadata.managed_fields = None;
    if let Some(a) = o.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Watches one kind into `state` (key `(kind, name)`), ringing `notify` (the
/// settler's) on each change. A 404 (CRD not
/// installed) or 403 (not allowed) empties the kind, counts as listed, is
/// logged once and retried slowly (5 s doubling to 60 s; after a 404 the
/// kind is listed again only once `discovery` says the group is served); other
/// errors are retried with a backoff (0.8 s doubling to 30 s).
async fn watch_kind(
    api: Api<DynamicObject>,
    discovery: Arc<GroupDiscovery>,
    kind: &'static str,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    ready: tokio::sync::watch::Sender<bool>,
    counts: Option<WatchCounts>,
) {
    let mut s = std::pin::pin!(watcher(api, watcher::Config::default()));
    let mut listed: Vec<DynamicObject> = Vec::new();
    let mut absent = false;
    let mut absent_wait = ABSENT_RETRY.0;
    let mut error_wait = Duration::from_millis(800);
    let key = |o: &DynamicObject| {
        (
            kind.to_string(),
            o.metadata.name.clone().unwrap_or_default(),
        )
    };
    while let Some(ev) = s.next().await {
        WatchCounts::count(&counts, &ev);
        let changed = match ev {
            Ok(watcher::Event::Init) => {
                listed.clear();
                false
            }
            Ok(watcher::Event::InitApply(mut o)) => {
                trim(&mut o);
                listed.push(o);
                false
            }
            Ok(watcher::Event::InitDone) => {
                if absent {
                    info!(
                        kind,
                        "custom resource definition found: reading {kind} objects"
                    );
                }
                absent = false;
                absent_wait = ABSENT_RETRY.0;
                error_wait = Duration::from_millis(800);
                let mut st = lock(&state);
                st.objects.retain(|(k, _), _| k != kind);
                for o in listed.drain(..) {
                    st.objects.insert(key(&o), o);
                }
                st.objects_changed();
                drop(st);
                ready.send_replace(true);
                true
            }
            Ok(watcher::Event::Apply(mut o)) => {
                trim(&mut o);
                let mut st = lock(&state);
                st.objects.insert(key(&o), o);
                st.objects_changed();
                true
            }
            Ok(watcher::Event::Delete(o)) => {
                let mut st = lock(&state);
                st.objects.remove(&key(&o));
                st.objects_changed();
                true
            }
            // Not installed (404), or not allowed (403: RBAC of an older
            // install): no objects of this kind, looked at again slowly.
            Err(e) if matches!(status_code(&e), Some(404 | 403)) => {
                if !absent {
                    if status_code(&e) == Some(404) {
                        info!(
                            kind,
                            "custom resource definition not installed: no {kind} objects (looking again now and then)"
                        );
                    } else {
                        warn!(
                            kind, error = %e,
                            "not allowed to list {kind} objects: taken as none (looking again now and then)"
                        );
                    }
                }
                absent = true;
                let changed = {
                    let mut st = lock(&state);
                    let before = st.objects.len();
                    st.objects.retain(|(k, _), _| k != kind);
                    let changed = st.objects.len() != before;
                    if changed {
                        st.objects_changed();
                    }
                    changed
                };
                ready.send_replace(true);
                if changed {
                    notify.notify_one();
                }
                let not_installed = status_code(&e) == Some(404);
                loop {
                    tokio::time::sleep(absent_wait).await;
                    absent_wait = (absent_wait * 2).min(ABSENT_RETRY.1);
                    if !not_installed || discovery.discover().await.group_served() {
                        break;
                    }
                }
                continue;
            }
            Err(e) => {
                warn!(kind, error = %e, "watching custom resources (retrying)");
                tokio::time::sleep(error_wait).await;
                error_wait = (error_wait * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if changed {
            notify.notify_one();
        }
    }
}

/// GETs each Secret of `names` in `api`'s namespace. A Secret not found is
/// left out (the front end reports it); on any other error the entry of
/// `previous` is kept, so a passing API hiccup does not change a password.
pub async fn read_password_secrets(
    api: &Api<Secret>,
    names: &[String],
    previous: &BTreeMap<String, PasswordSecret>,
) -> BTreeMap<String, PasswordSecret> {
    let mut out = BTreeMap::new();
    for name in names {
        match api.get_opt(name).await {
            Ok(Some(s)) => {
                out.insert(name.clone(), password_secret(&s));
            }
            Ok(None) => {}
            Err(e) => {
                warn!(secret = %name, error = %e, "reading a BGP password Secret");
                if let Some(p) = previous.get(name) {
                    out.insert(name.clone(), p.clone());
                }
            }
        }
    }
    out
}

/// What the front end needs of a Secret (pure).
pub fn password_secret(s: &Secret) -> PasswordSecret {
    PasswordSecret {
        type_: s.type_.clone(),
        password: s
            .data
            .as_ref()
            .and_then(|d| d.get("password"))
            .map(|b| b.0.clone()),
        resource_version: s.metadata.resource_version.clone(),
    }
}

/// Who reports, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Publishes rejections, the ignored ConfigMap and unsupported fields as Events.
    Controller,
    /// Publishes rejections only (each speaker would repeat the rest).
    Speaker,
}

/// What one offer to the gate came to, as [`ConfigReports::report`] needs it.
#[derive(Debug, Clone, Default)]
pub struct Offered {
    /// A configuration was admitted by this offer: its warnings.
    pub admitted: Option<Vec<ConfigWarning>>,
    /// A rejection reason not reported yet.
    pub report: Option<String>,
}

/// Publishes what the user should see about the configuration: rejections (a
/// Warning Event on the ConfigMap, or on the ConfigurationState for custom
/// resources — on the first IPAddressPool when that CRD is not installed —
/// plus its status), the ignored ConfigMap and unsupported fields
/// (controller only, once per change), and the warn logs.
pub struct ConfigReports {
    role: Role,
    events: Events,
    state: ConfigState,
    /// The ConfigMap last reported as ignored (its uid), `None` while the
    /// ConfigMap is not ignored.
    ignored: Option<Option<String>>,
}

impl ConfigReports {
    /// Reports as `role`, writing Events through `events` and the
    /// ConfigurationState through `state`.
    pub fn new(role: Role, events: Events, state: ConfigState) -> Self {
        ConfigReports {
            role,
            events,
            state,
            ignored: None,
        }
    }

    /// After an offer: Events and logs for `offered`, the ignored-ConfigMap
    /// Event when that state changed, and the ConfigurationState (written only
    /// when `result` differs from what it shows).
    pub async fn report(&mut self, snap: &Snapshot, offered: Offered, result: StateResult) {
        if let Some(warnings) = &offered.admitted {
            for w in warnings {
                warn!(object = %format!("{}/{}", w.kind, w.name), field = %w.field, "{}", w.message);
                if self.role == Role::Controller
                    && let Some(target) = snap.warning_target(w)
                {
                    let _ = self
                        .events
                        .publish(
                            target,
                            EventType::Warning,
                            REASON_UNSUPPORTED_FIELD,
                            "LoadConfig",
                            &format!("{}: {}", w.field, w.message),
                        )
                        .await;
                }
            }
        }
        if self.role == Role::Controller {
            self.report_ignored(snap).await;
        }
        // The ConfigurationState first: a rejection Event regards it.
        self.state.set(&result).await;
        if let Some(note) = offered.report {
            let note = format!("configuration rejected: {note}");
            // Custom resources without the ConfigurationState CRD (MetalLB
            // v0.13–v0.14 CRDs): on the first IPAddressPool instead.
            let target = match snap.source() {
                Source::ConfigMap => snap.configmap.clone(),
                Source::Resources => self
                    .state
                    .reference()
                    .cloned()
                    .or_else(|| snap.first_pool()),
            };
            if let Some(target) = target {
                let _ = self
                    .events
                    .publish(
                        target,
                        EventType::Warning,
                        REASON_INVALID_CONFIG,
                        "LoadConfig",
                        &note,
                    )
                    .await;
            }
        }
    }

    async fn report_ignored(&mut self, snap: &Snapshot) {
        let now = snap
            .selection
            .configmap_ignored
            .then_some(snap.configmap.as_ref())
            .flatten()
            .map(|c| c.uid.clone());
        if now == self.ignored {
            return;
        }
        self.ignored = now.clone();
        let (Some(_), Some(cm)) = (now, &snap.configmap) else {
            return;
        };
        warn!(
            configmap = cm.name.as_deref().unwrap_or_default(),
            "the ConfigMap configuration is ignored: metallb.io custom resources (IPAddressPool) are in force"
        );
        let _ = self
            .events
            .publish(
                cm.clone(),
                EventType::Warning,
                REASON_CONFIGMAP_IGNORED,
                "LoadConfig",
                "this configuration is ignored: the metallb.io custom resources in this namespace (at least one IPAddressPool exists) are in force",
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_custom_resources_when_a_pool_exists() {
        use Source::*;
        let s = select(SourceMode::Auto, true, true);
        assert_eq!(s.source, Resources);
        assert!(s.configmap_ignored);
        let s = select(SourceMode::Auto, false, true);
        assert_eq!((s.source, s.configmap_ignored), (Resources, false));
        let s = select(SourceMode::Auto, true, false);
        assert_eq!((s.source, s.configmap_ignored), (ConfigMap, false));
        let s = select(SourceMode::Auto, false, false);
        assert_eq!((s.source, s.configmap_ignored), (ConfigMap, false));
    }

    #[test]
    fn forced_modes_never_report_an_ignored_configmap() {
        for (cm, pools) in [(true, true), (true, false), (false, true), (false, false)] {
            let s = select(SourceMode::Configmap, cm, pools);
            assert_eq!((s.source, s.configmap_ignored), (Source::ConfigMap, false));
            let s = select(SourceMode::Crds, cm, pools);
            assert_eq!((s.source, s.configmap_ignored), (Source::Resources, false));
        }
        assert!(SourceMode::Auto.watches_configmap() && SourceMode::Auto.watches_resources());
        assert!(!SourceMode::Configmap.watches_resources());
        assert!(!SourceMode::Crds.watches_configmap());
    }

    fn secret(rv: &str) -> PasswordSecret {
        PasswordSecret {
            type_: Some("kubernetes.io/basic-auth".into()),
            password: Some(b"pw".to_vec()),
            resource_version: Some(rv.into()),
        }
    }

    #[test]
    fn revision_names_the_source_and_follows_its_content() {
        let none = BTreeMap::new();
        let cm = revision(Source::ConfigMap, Some("a"), "r1", &[], &none);
        let crs = revision(Source::Resources, Some("a"), "r1", &[], &none);
        assert!(cm.is_some() && crs.is_some());
        assert_ne!(cm, crs, "switching source changes the revision");
        // The ConfigMap's revision follows its text, not the objects.
        assert_eq!(cm, revision(Source::ConfigMap, Some("a"), "r2", &[], &none));
        assert_ne!(cm, revision(Source::ConfigMap, Some("b"), "r1", &[], &none));
        assert_eq!(revision(Source::ConfigMap, None, "r1", &[], &none), None);
        // The objects' revision follows the objects, not the ConfigMap.
        assert_eq!(crs, revision(Source::Resources, None, "r1", &[], &none));
        assert_ne!(
            crs,
            revision(Source::Resources, Some("a"), "r2", &[], &none)
        );
    }

    #[test]
    fn revision_follows_the_password_secrets() {
        let names = vec!["s1".to_string()];
        let mut secrets = BTreeMap::new();
        let missing = revision(Source::Resources, None, "r", &names, &secrets);
        secrets.insert("s1".to_string(), secret("7"));
        let v7 = revision(Source::Resources, None, "r", &names, &secrets);
        secrets.insert("s1".to_string(), secret("8"));
        let v8 = revision(Source::Resources, None, "r", &names, &secrets);
        assert_ne!(missing, v7);
        assert_ne!(v7, v8);
        // A Secret no peer names does not count.
        secrets.insert("other".to_string(), secret("1"));
        assert_eq!(v8, revision(Source::Resources, None, "r", &names, &secrets));
        // ConfigMap: Secrets are not part of it.
        assert_eq!(
            revision(Source::ConfigMap, Some("t"), "r", &names, &secrets),
            revision(Source::ConfigMap, Some("t"), "r", &names, &BTreeMap::new())
        );
    }

    #[test]
    fn discovered_answers_by_plural() {
        let served = Discovered::Served(vec!["ipaddresspools".to_string()].into());
        assert!(served.group_served());
        assert!(served.may_serve("ipaddresspools"));
        assert!(!served.may_serve("servicebgpstatuses"));
        assert!(!Discovered::NotServed.group_served());
        assert!(!Discovered::NotServed.may_serve("ipaddresspools"));
        // A failed question lets the asker try its own request.
        assert!(Discovered::Unknown.group_served());
        assert!(Discovered::Unknown.may_serve("servicebgpstatuses"));
    }

    #[test]
    fn state_follows_the_gate() {
        let m = ferrolb_config::gate::MISSING;
        assert_eq!(state_of(true, None, m), StateResult::Valid);
        assert_eq!(
            state_of(true, Some("bad"), m),
            StateResult::Invalid("bad".into())
        );
        assert_eq!(
            state_of(false, Some("bad"), m),
            StateResult::Invalid("bad".into())
        );
        assert!(matches!(
            state_of(false, Some(m), m),
            StateResult::Unknown(_)
        ));
        assert!(matches!(state_of(false, None, m), StateResult::Unknown(_)));
    }

    fn cm(text: Option<&str>) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "config", "namespace": "ns", "uid": "u1", "resourceVersion": "5"},
            "data": text.map(|t| serde_json::json!({"config": t})),
        }))
        .unwrap()
    }

    #[test]
    fn snapshot_without_custom_resources_reads_the_configmap() {
        let text = "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24]}\n";
        let c = cm(Some(text));
        let snap = Snapshot::build(SourceMode::Auto, Some(&c), &BTreeMap::new());
        assert_eq!(snap.source(), Source::ConfigMap);
        assert!(!snap.selection.configmap_ignored);
        assert_eq!(snap.configmap.as_ref().unwrap().uid.as_deref(), Some("u1"));
        let cfg = snap.parse(Secrets::Ignore).unwrap();
        assert_eq!(cfg.pools[0].name, "a");
        assert!(snap.revision(&BTreeMap::new()).unwrap().contains(text));
        // Without the key: no revision (the gate's "missing").
        let empty = cm(None);
        let snap = Snapshot::build(SourceMode::Auto, Some(&empty), &BTreeMap::new());
        assert_eq!(snap.revision(&BTreeMap::new()), None);
        assert!(snap.parse(Secrets::Ignore).is_err());
        let w = ConfigWarning {
            kind: "ConfigMap".into(),
            name: "config".into(),
            field: "f".into(),
            message: "m".into(),
        };
        assert_eq!(
            snap.warning_target(&w).unwrap().name.as_deref(),
            Some("config")
        );
    }

    #[derive(clap::Parser, Debug)]
    struct Opts {
        #[command(flatten)]
        kube: crate::cli::KubeOpts,
    }

    #[test]
    fn config_source_flag_and_its_variable() {
        use clap::{CommandFactory, FromArgMatches};
        let (cmd, _) = crate::cli::env_for_every_flag(Opts::command(), &|_| None);
        let parse = |args: &[&str]| {
            let m = cmd
                .clone()
                .try_get_matches_from(std::iter::once("x").chain(args.iter().copied()))?;
            Opts::from_arg_matches(&m).map(|o| o.kube.config_source)
        };
        assert_eq!(parse(&[]).unwrap(), SourceMode::Auto);
        assert_eq!(
            parse(&["--config-source", "crds"]).unwrap(),
            SourceMode::Crds
        );
        assert_eq!(
            parse(&["--config-source", "configmap"]).unwrap(),
            SourceMode::Configmap
        );
        assert_eq!(
            parse(&["--config-source", "auto"]).unwrap(),
            SourceMode::Auto
        );
        assert!(parse(&["--config-source", "both"]).is_err());
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some("config-source"))
            .unwrap();
        assert_eq!(
            arg.get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .as_deref(),
            Some("FERROLB_CONFIG_SOURCE")
        );
    }

    fn object(kind: &str, name: &str, rv: &str, spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metallb.io/v1beta1", "kind": kind,
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "resourceVersion": rv,
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": spec,
        }))
        .unwrap()
    }

    fn objects(list: Vec<DynamicObject>) -> BTreeMap<(String, String), DynamicObject> {
        list.into_iter()
            .map(|o| {
                let kind = o.types.as_ref().unwrap().kind.clone();
                ((kind, o.metadata.name.clone().unwrap()), o)
            })
            .collect()
    }

    #[test]
    fn snapshot_with_a_pool_reads_the_custom_resources() {
        let text = "address-pools:\n- {name: old, protocol: bgp, addresses: [10.9.0.0/24]}\n";
        let c = cm(Some(text));
        let pool = |rv: &str, cidr: &str| {
            object(
                "IPAddressPool",
                "p",
                rv,
                serde_json::json!({"addresses": [cidr]}),
            )
        };
        let peer = object(
            "BGPPeer",
            "r",
            "3",
            serde_json::json!({"myASN": 1, "peerASN": 2, "peerAddress": "10.1.0.1", "vrf": "red"}),
        );
        let objs = objects(vec![pool("1", "10.0.0.0/24"), peer.clone()]);
        let snap = Snapshot::build(SourceMode::Auto, Some(&c), &objs);
        assert_eq!(snap.source(), Source::Resources);
        assert!(snap.selection.configmap_ignored);
        let cfg = snap.parse(Secrets::Ignore).unwrap();
        assert_eq!(cfg.pools.len(), 1);
        assert_eq!(cfg.pools[0].name, "p");
        // The vrf warning regards the BGPPeer, by uid.
        let w = cfg
            .warnings
            .iter()
            .find(|w| w.kind == "BGPPeer")
            .expect("a BGPPeer warning");
        let target = snap.warning_target(w).unwrap();
        assert_eq!(target.kind.as_deref(), Some("BGPPeer"));
        assert_eq!(target.api_version.as_deref(), Some("metallb.io/v1beta2"));
        assert_eq!(target.uid.as_deref(), Some("uid-r"));
        assert_eq!(snap.first_pool().unwrap().uid.as_deref(), Some("uid-p"));
        // The revision follows the objects (a new resourceVersion), not the
        // ignored ConfigMap.
        let rev = snap.revision(&BTreeMap::new()).unwrap();
        let again = Snapshot::build(SourceMode::Auto, Some(&cm(Some("x"))), &objs);
        assert_eq!(again.revision(&BTreeMap::new()).unwrap(), rev);
        let moved = Snapshot::build(
            SourceMode::Auto,
            Some(&c),
            &objects(vec![pool("2", "10.0.1.0/24"), peer.clone()]),
        );
        assert_ne!(moved.revision(&BTreeMap::new()).unwrap(), rev);
        // configmap mode: the same objects are not read at all.
        let snap = Snapshot::build(SourceMode::Configmap, Some(&c), &objs);
        assert_eq!(snap.source(), Source::ConfigMap);
        assert_eq!(snap.parse(Secrets::Ignore).unwrap().pools[0].name, "old");
        // Without any pool, auto mode stays on the ConfigMap.
        let snap = Snapshot::build(SourceMode::Auto, Some(&c), &objects(vec![peer]));
        assert_eq!(snap.source(), Source::ConfigMap);
    }

    #[test]
    fn password_secrets_are_named_and_read() {
        let peer = object(
            "BGPPeer",
            "r",
            "3",
            serde_json::json!({"myASN": 1, "peerASN": 2, "peerAddress": "10.1.0.1",
                               "passwordSecret": {"name": "pw", "namespace": "ns"}}),
        );
        let pool = object(
            "IPAddressPool",
            "p",
            "1",
            serde_json::json!({"addresses": ["10.0.0.0/24"]}),
        );
        let snap = Snapshot::build(SourceMode::Crds, None, &objects(vec![pool, peer]));
        assert_eq!(snap.password_secrets(), ["pw".to_string()]);
        let mut secrets = BTreeMap::new();
        assert!(
            snap.parse(Secrets::Given(&secrets)).is_err(),
            "Secret missing"
        );
        assert!(snap.parse(Secrets::Ignore).is_ok());
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pw", "resourceVersion": "11"},
            "type": "kubernetes.io/basic-auth",
            "data": {"password": "czNjcmV0"},
        }))
        .unwrap();
        let read = password_secret(&secret);
        assert_eq!(read.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(read.resource_version.as_deref(), Some("11"));
        let before = snap.revision(&secrets);
        secrets.insert("pw".to_string(), read);
        assert_ne!(snap.revision(&secrets), before);
        let cfg = snap.parse(Secrets::Given(&secrets)).unwrap();
        assert_eq!(cfg.peers[0].password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn a_burst_of_changes_settles_after_the_last_or_at_most_after_the_first() {
        let t = Instant::now();
        assert_eq!(settled_at(t, t), t + SETTLE);
        let ms = Duration::from_millis;
        assert_eq!(settled_at(t, t + ms(500)), t + ms(500) + SETTLE);
        assert_eq!(settled_at(t, t + SETTLE_MAX), t + SETTLE_MAX);
        assert_eq!(settled_at(t, t + Duration::from_secs(60)), t + SETTLE_MAX);
    }

    #[test]
    fn api_resources_are_in_the_metallb_group() {
        for (kind, plural, version) in KINDS {
            let ar = api_resource(kind, plural, version);
            assert_eq!(ar.api_version, format!("metallb.io/{version}"));
            assert_eq!(ar.plural, *plural);
            assert_eq!(ar.kind, *kind);
        }
    }
}
