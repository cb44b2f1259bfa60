//! Namespace labels for `serviceAllocation.namespaceSelectors`: a pure table
//! ([`NamespaceLabels`]) fed by a metadata-only watch of Namespaces
//! ([`watch`], list+watch `namespaces` cluster-wide).
//!
//! A label change makes every Service be reconciled again when the
//! configuration in force selects namespaces by label (MetalLB reloads its
//! configuration on such a change and re-checks every held IP against its
//! pool, so a Service whose namespace no longer matches its pool moves).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::watcher;
use tokio::sync::watch as signal;
use tracing::{debug, warn};

use crate::allocator::{Labels, no_labels};
use crate::reconcile::Context;

/// Labels by namespace name. Pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceLabels {
    by_name: HashMap<String, Labels>,
    /// A re-list in progress: what it has seen so far.
    relist: Option<HashMap<String, Labels>>,
}

impl NamespaceLabels {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The labels of `namespace` (empty when unknown).
    pub fn get(&self, namespace: &str) -> Labels {
        self.by_name
            .get(namespace)
            .cloned()
            .unwrap_or_else(no_labels)
    }

    /// Sets the labels of `namespace`; true when they differ from what was known.
    pub fn set(&mut self, namespace: &str, labels: BTreeMap<String, String>) -> bool {
        let labels = if labels.is_empty() {
            no_labels()
        } else {
            Labels::new(labels)
        };
        if let Some(r) = self.relist.as_mut() {
            r.insert(namespace.to_string(), labels.clone());
        }
        let old = self.by_name.insert(namespace.to_string(), labels);
        old.unwrap_or_default() != self.by_name[namespace]
    }

    /// Forgets `namespace`; true when it had labels.
    pub fn remove(&mut self, namespace: &str) -> bool {
        if let Some(r) = self.relist.as_mut() {
            r.remove(namespace);
        }
        self.by_name
            .remove(namespace)
            .is_some_and(|l| !l.is_empty())
    }

    /// A full list starts: namespaces it does not show are dropped at
    /// [`NamespaceLabels::end_relist`].
    pub fn begin_relist(&mut self) {
        self.relist = Some(HashMap::new());
    }

    /// The full list is done; true when a namespace with labels went away.
    pub fn end_relist(&mut self) -> bool {
        let Some(seen) = self.relist.take() else {
            return false;
        };
        let gone = self
            .by_name
            .iter()
            .any(|(n, l)| !l.is_empty() && !seen.contains_key(n));
        self.by_name = seen;
        gone
    }
}

/// Watches Namespaces' metadata into `ctx`'s table. Sends `true` on `listed`
/// after the first complete list.
pub async fn watch(
    api: Api<PartialObjectMeta<Namespace>>,
    ctx: Arc<Context>,
    listed: signal::Sender<bool>,
) {
    let mut stream =
        ferrolb_ops::watch_backoff::backoff(watcher(api, watcher::Config::default())).boxed();
    // Changes seen during a (re-)list, acted on once at its end.
    let mut in_list = false;
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(watcher::Event::Init) => {
                ctx.namespaces().begin_relist();
                false
            }
            Ok(watcher::Event::InitApply(ns)) => {
                if let Some(name) = ns.metadata.name.as_deref() {
                    let labels = ns.metadata.labels.clone().unwrap_or_default();
                    in_list |= ctx.namespaces().set(name, labels);
                }
                false
            }
            Ok(watcher::Event::Apply(ns)) => {
                let Some(name) = ns.metadata.name.as_deref() else {
                    continue;
                };
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                ctx.namespaces().set(name, labels)
            }
            Ok(watcher::Event::Delete(ns)) => ns
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| ctx.namespaces().remove(n)),
            Ok(watcher::Event::InitDone) => {
                let gone = ctx.namespaces().end_relist();
                listed.send_replace(true);
                std::mem::take(&mut in_list) || gone
            }
            Err(e) => {
                warn!(error = %e, "watching Namespaces");
                false
            }
        };
        if changed && ctx.core().uses_namespace_labels() {
            debug!("namespace labels changed: reconciling every Service");
            ctx.request_reconcile_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_remove_and_relist() {
        let mut t = NamespaceLabels::new();
        assert!(t.set("a", l(&[("env", "prod")])));
        assert!(!t.set("a", l(&[("env", "prod")])));
        assert!(t.set("a", l(&[("env", "dev")])));
        assert!(
            !t.set("b", l(&[])),
            "a new namespace without labels changes nothing"
        );
        assert_eq!(*t.get("a"), l(&[("env", "dev")]));
        assert_eq!(*t.get("zz"), l(&[]));
        // A re-list that no longer shows "a": dropped, and that is a change.
        t.begin_relist();
        assert!(!t.set("b", l(&[])));
        assert!(t.end_relist());
        assert_eq!(*t.get("a"), l(&[]));
        assert!(!t.remove("b"));
        assert!(t.set("c", l(&[("x", "1")])));
        assert!(t.remove("c"));
        assert!(!t.end_relist(), "no re-list in progress");
    }
}
