//! The speakers the API server knows: a watch of the speaker pods (in the
//! speaker's namespace, by label) folded into node name → gossip address
//! for the ready ones, handed to [`Members::set_known`] on every change.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::{debug, warn};

/// The label selector of the speaker pods in manifests/speaker.yaml.
pub const DEFAULT_SELECTOR: &str =
    "app.kubernetes.io/name=ferrolb,app.kubernetes.io/component=speaker";

/// What is kept of one speaker pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerPod {
    /// `spec.nodeName`.
    pub node: String,
    /// `status.podIP`.
    pub ip: IpAddr,
}

/// A speaker pod that counts: scheduled, with an IP, Ready, not being
/// deleted. Others are `None`.
pub fn speaker_pod(p: &Pod) -> Option<SpeakerPod> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let node = p.spec.as_ref()?.node_name.clone()?;
    let status = p.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip: IpAddr = status.pod_ip.as_ref()?.parse().ok()?;
    ready.then_some(SpeakerPod { node, ip })
}

/// Speaker pods by `namespace/name` (pods come and go under a node: a
/// restarted DaemonSet pod has a new name), folded from watch events.
#[derive(Debug, Default)]
pub struct SpeakerPods {
    pods: BTreeMap<String, SpeakerPod>,
    buffer: Option<BTreeMap<String, SpeakerPod>>,
    synced: bool,
}

fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

impl SpeakerPods {
    /// Folds one watch event in.
    pub fn apply(&mut self, ev: &watcher::Event<Pod>) {
        match ev {
            watcher::Event::Init => self.buffer = Some(BTreeMap::new()),
            watcher::Event::InitApply(p) => {
                if let (Some(b), Some(s)) = (self.buffer.as_mut(), speaker_pod(p)) {
                    b.insert(key(p), s);
                }
            }
            watcher::Event::InitDone => {
                if let Some(b) = self.buffer.take() {
                    self.pods = b;
                }
                self.synced = true;
            }
            watcher::Event::Apply(p) => match speaker_pod(p) {
                Some(s) => {
                    self.pods.insert(key(p), s);
                }
                None => {
                    self.pods.remove(&key(p));
                }
            },
            watcher::Event::Delete(p) => {
                self.pods.remove(&key(p));
            }
        }
    }

    /// Whether a complete list was seen.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Node name → gossip address (pod IP, `port`). Two ready pods on one
    /// node (a rollout) give the address of the first by pod name; the
    /// gossip settles which one is alive.
    pub fn speakers(&self, port: u16) -> BTreeMap<String, SocketAddr> {
        let mut out = BTreeMap::new();
        for s in self.pods.values() {
            out.entry(s.node.clone())
                .or_insert(SocketAddr::new(s.ip, port));
        }
        out
    }
}

/// Watches the speaker pods in `namespace` matching `selector` and hands
/// the ready ones to `set_known` (from the first complete list on, and on
/// every change; [`super::KnownSink::set_known`] in the speaker). Runs until
/// the task is dropped.
pub async fn watch(
    client: Client,
    namespace: String,
    selector: String,
    port: u16,
    mut set_known: impl FnMut(BTreeMap<String, SocketAddr>) + Send,
) {
    let (namespace, selector) = (namespace.as_str(), selector.as_str());
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().labels(selector);
    let mut pods = SpeakerPods::default();
    let mut s = std::pin::pin!(ferrolb_ops::watch_backoff::backoff(watcher(api, cfg)));
    while let Some(ev) = s.next().await {
        match ev {
            Ok(ev) => {
                pods.apply(&ev);
                if pods.synced()
                    && !matches!(ev, watcher::Event::Init | watcher::Event::InitApply(_))
                {
                    let known = pods.speakers(port);
                    debug!(speakers = known.len(), "speaker pods");
                    set_known(known);
                }
            }
            Err(e) => warn!(error = %e, "speaker pods watch error (retrying)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};

    fn pod(name: &str, node: &str, ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("metallb-system".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn ready_pods_by_node() {
        let mut s = SpeakerPods::default();
        s.apply(&watcher::Event::Init);
        s.apply(&watcher::Event::InitApply(pod(
            "a",
            "n1",
            "172.17.0.21",
            true,
        )));
        s.apply(&watcher::Event::InitApply(pod(
            "b",
            "n2",
            "172.17.0.22",
            false,
        )));
        assert!(!s.synced());
        assert!(
            s.speakers(7946).is_empty(),
            "nothing before the list is complete"
        );
        s.apply(&watcher::Event::InitDone);
        assert!(s.synced());
        let want: BTreeMap<String, SocketAddr> =
            [("n1".to_string(), "172.17.0.21:7946".parse().unwrap())].into();
        assert_eq!(s.speakers(7946), want);
        // b turns ready, a is deleted, c has no IP yet.
        s.apply(&watcher::Event::Apply(pod("b", "n2", "172.17.0.22", true)));
        s.apply(&watcher::Event::Delete(pod("a", "n1", "172.17.0.21", true)));
        let mut c = pod("c", "n3", "", true);
        c.status.as_mut().unwrap().pod_ip = None;
        s.apply(&watcher::Event::Apply(c));
        let want: BTreeMap<String, SocketAddr> =
            [("n2".to_string(), "172.17.0.22:7946".parse().unwrap())].into();
        assert_eq!(s.speakers(7946), want);
        // Being deleted: gone at once.
        let mut b = pod("b", "n2", "172.17.0.22", true);
        b.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        s.apply(&watcher::Event::Apply(b));
        assert!(s.speakers(7946).is_empty());
    }
}
