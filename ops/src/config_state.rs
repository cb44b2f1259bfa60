//! The `metallb.io/v1beta1` ConfigurationState object of one component (as
//! MetalLB v0.15+): `controller`, or `speaker-<node>` per speaker, labelled
//! `metallb.io/component-type` (and `metallb.io/node-name` for a speaker),
//! whose status says whether the configuration that component sees is
//! `Valid`, `Invalid` (with an `errorSummary`) or `Unknown`, with one
//! condition in the `metav1.Condition` shape.
//!
//! Writes are bounded: the object is created once (already there is fine),
//! then its `/status` is merge-patched only when the result changes. When the
//! CRD is not installed (404) nothing is written, that is logged once, and it
//! is looked at again at most once a minute.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config_source::api_resource;

/// The kind, plural and version of the object.
pub const KIND: (&str, &str, &str) = ("ConfigurationState", "configurationstates", "v1beta1");
/// The condition's message when the configuration is valid. (Not empty: the
/// condition requires a message, and the test kube-apiserver build reads an
/// empty string in a custom resource as null and refuses it.)
pub const VALID_MESSAGE: &str = "the latest configuration is in force";
/// The condition type (MetalLB's config reconciler's).
pub const CONDITION_TYPE: &str = "configReconcilerValid";

/// What the status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateResult {
    /// The configuration in force is the latest one.
    Valid,
    /// The latest configuration was rejected: why.
    Invalid(String),
    /// No configuration to judge (none found yet): why.
    Unknown(String),
}

impl StateResult {
    /// `Valid`, `Invalid` or `Unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            StateResult::Valid => "Valid",
            StateResult::Invalid(_) => "Invalid",
            StateResult::Unknown(_) => "Unknown",
        }
    }
}

/// The merge patch of `/status` for `result` (pure). `now` is the condition's
/// `lastTransitionTime` (RFC 3339; only written when the result changes, so it
/// is the transition), `generation` the object's `metadata.generation` when
/// known (left out otherwise).
pub fn status_patch(result: &StateResult, now: &str, generation: Option<i64>) -> Value {
    let (status, reason, message, summary) = match result {
        StateResult::Valid => ("True", "Reconciled", VALID_MESSAGE, None),
        StateResult::Invalid(why) => ("False", "ConfigurationError", cut(why), Some(cut(why))),
        StateResult::Unknown(why) => ("Unknown", "NoConfiguration", cut(why), None),
    };
    let mut condition = json!({
        "type": CONDITION_TYPE,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    });
    if let Some(g) = generation {
        condition["observedGeneration"] = g.into();
    }
    json!({
        "status": {
            "result": result.as_str(),
            "errorSummary": summary,
            "conditions": [condition],
        }
    })
}

/// A condition's message holds at most 32768 bytes.
fn cut(s: &str) -> &str {
    const MAX: usize = 32 * 1024;
    if s.len() <= MAX {
        return s;
    }
    let end = (0..=MAX)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

/// The name and labels of the object of the controller (`node: None`) or of
/// the speaker on `node` (pure).
pub fn identity(node: Option<&str>) -> (String, BTreeMap<String, String>) {
    let mut labels = BTreeMap::new();
    match node {
        None => {
            labels.insert("metallb.io/component-type".into(), "controller".into());
            ("controller".into(), labels)
        }
        Some(node) => {
            labels.insert("metallb.io/component-type".into(), "speaker".into());
            labels.insert("metallb.io/node-name".into(), node.into());
            (format!("speaker-{node}"), labels)
        }
    }
}

/// How long to leave the object alone after a 404 (CRD missing) or a failure.
const ABSENT_RETRY: Duration = Duration::from_secs(60);
const ERROR_RETRY: Duration = Duration::from_secs(10);

/// The writer of one component's ConfigurationState.
pub struct ConfigState {
    api: Api<DynamicObject>,
    ar: ApiResource,
    name: String,
    labels: BTreeMap<String, String>,
    /// Created (or found existing: 409).
    created: bool,
    /// The object as the API server last returned it (for Events about it).
    object: Option<ObjectReference>,
    generation: Option<i64>,
    /// What the status shows (as last written by this process).
    written: Option<StateResult>,
    /// No write before this instant (CRD missing, or a failure).
    quiet_until: Option<Instant>,
    absent_logged: bool,
}

impl ConfigState {
    /// The writer for the controller (`node: None`) or the speaker on `node`,
    /// in `namespace`.
    pub fn new(client: Client, namespace: &str, node: Option<&str>) -> Self {
        let ar = api_resource(KIND.0, KIND.1, KIND.2);
        let (name, labels) = identity(node);
        ConfigState {
            api: Api::namespaced_with(client, namespace, &ar),
            ar,
            name,
            labels,
            created: false,
            object: None,
            generation: None,
            written: None,
            quiet_until: None,
            absent_logged: false,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object, once the API server returned it (create or status
    /// patch), for Events about it.
    pub fn reference(&self) -> Option<&ObjectReference> {
        self.object.as_ref()
    }

    /// Makes the status show `result`: nothing when it already does (as far
    /// as this process wrote it); creates the object first if needed. Errors
    /// are logged, and the write is tried again on a later call (not before
    /// 10 s; 60 s when the CRD is not installed).
    pub async fn set(&mut self, result: &StateResult) {
        if self.written.as_ref() == Some(result) {
            return;
        }
        if let Some(t) = self.quiet_until
            && Instant::now() < t
        {
            return;
        }
        match self.write(result).await {
            Ok(true) => {
                self.quiet_until = None;
                self.absent_logged = false;
                self.written = Some(result.clone());
                debug!(name = %self.name, result = result.as_str(), "ConfigurationState written");
            }
            Ok(false) => {
                if !self.absent_logged {
                    info!(
                        name = %self.name,
                        "ConfigurationState CRD not installed: configuration state not published"
                    );
                    self.absent_logged = true;
                }
                self.quiet_until = Some(Instant::now() + ABSENT_RETRY);
            }
            Err(e) => {
                warn!(name = %self.name, error = %e, "writing the ConfigurationState");
                self.quiet_until = Some(Instant::now() + ERROR_RETRY);
            }
        }
    }

    /// Creates the object unless done before: 409 (it exists) is fine.
    /// `Ok(false)`: the CRD is not installed.
    async fn ensure(&mut self) -> Result<bool, kube::Error> {
        if self.created {
            return Ok(true);
        }
        let body = json!({
            "apiVersion": self.ar.api_version,
            "kind": self.ar.kind,
            "metadata": {"name": self.name, "labels": self.labels},
        });
        let obj: DynamicObject = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
        match self.api.create(&PostParams::default(), &obj).await {
            Ok(o) => self.remember(&o),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(e) => return Err(e),
        }
        self.created = true;
        Ok(true)
    }

    fn remember(&mut self, obj: &DynamicObject) {
        self.generation = obj.metadata.generation;
        self.object = Some(ObjectReference {
            api_version: Some(self.ar.api_version.clone()),
            kind: Some(self.ar.kind.clone()),
            name: obj.metadata.name.clone(),
            namespace: obj.metadata.namespace.clone(),
            uid: obj.metadata.uid.clone(),
            ..Default::default()
        });
    }

    /// `Ok(false)`: the CRD is not installed.
    async fn write(&mut self, result: &StateResult) -> Result<bool, kube::Error> {
        if !self.ensure().await? {
            return Ok(false);
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        let now = k8s_openapi::jiff::Timestamp::from_second(now.as_second())
            .map(|t| t.to_string())
            .unwrap_or_else(|_| now.to_string());
        let patch = status_patch(result, &now, self.generation);
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(o) => {
                self.remember(&o);
                Ok(true)
            }
            Err(e) => {
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    // Deleted meanwhile: create it again next time.
                    self.created = false;
                    self.object = None;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_as_metallb() {
        let (name, labels) = identity(None);
        assert_eq!(name, "controller");
        assert_eq!(labels["metallb.io/component-type"], "controller");
        assert!(!labels.contains_key("metallb.io/node-name"));
        let (name, labels) = identity(Some("n1"));
        assert_eq!(name, "speaker-n1");
        assert_eq!(labels["metallb.io/component-type"], "speaker");
        assert_eq!(labels["metallb.io/node-name"], "n1");
    }

    #[test]
    fn status_of_each_result() {
        let t = "2026-01-01T00:00:00Z";
        let v = status_patch(&StateResult::Valid, t, Some(1));
        assert_eq!(v["status"]["result"], "Valid");
        assert!(
            v["status"]["errorSummary"].is_null(),
            "cleared by the merge patch"
        );
        let c = &v["status"]["conditions"][0];
        assert_eq!(c["type"], CONDITION_TYPE);
        assert_eq!(c["status"], "True");
        assert_eq!(c["lastTransitionTime"], t);
        assert_eq!(c["observedGeneration"], 1);
        assert_eq!(c["message"], VALID_MESSAGE);
        let v = status_patch(&StateResult::Invalid("overlap".into()), t, None);
        assert!(
            v["status"]["conditions"][0]
                .get("observedGeneration")
                .is_none()
        );
        assert_eq!(v["status"]["result"], "Invalid");
        assert_eq!(v["status"]["errorSummary"], "overlap");
        let c = &v["status"]["conditions"][0];
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "ConfigurationError");
        assert_eq!(c["message"], "overlap");
        let v = status_patch(&StateResult::Unknown("none".into()), t, None);
        assert_eq!(v["status"]["result"], "Unknown");
        assert_eq!(v["status"]["conditions"][0]["status"], "Unknown");
    }
}
