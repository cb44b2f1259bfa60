//! Kubernetes Events (events.k8s.io/v1) for both binaries, written through
//! kube-runtime's [`Recorder`].
//!
//! Each Event gets a fresh `Recorder`: a shared one caches every Event it
//! wrote for 6 minutes (~1 KiB each) and turns a second Event with the same
//! reason on the same object into a series update that keeps the first note.
//! Notes are cut to the API's 1024 bytes ([`truncate_note`]). A failed write
//! is logged and counted ([`Events::failed`]), never returned as fatal.
//!
//! Two ways to publish: [`Events::publish`] writes inline (the controller
//! writes its Event after its status patch, in order); [`Events::enqueue`]
//! never waits: a bounded queue drained by one task at a bounded rate,
//! overflow dropped, logged and counted ([`Events::dropped`]) (the speaker
//! may announce 10k Services at once after a restart, and 50 restarted
//! speakers must not take the API server's every write for it). A queued
//! entry is small: the object as `namespace/name` + uid for a Service (its
//! reference is built when written), static reason and action, and a shared
//! `Arc<str>` note.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder};
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tracing::warn;

pub use kube::runtime::events::{EventType, Reporter};

use crate::Error;
use crate::rate::TokenBucket;

/// The largest note the API accepts, in bytes.
pub const NOTE_MAX: usize = 1024;

/// `note` cut to at most [`NOTE_MAX`] bytes: when longer, cut at a char
/// boundary and ended with `...`.
pub fn truncate_note(note: &str) -> Cow<'_, str> {
    if note.len() <= NOTE_MAX {
        return Cow::Borrowed(note);
    }
    let end = (0..=NOTE_MAX - 3)
        .rev()
        .find(|&i| note.is_char_boundary(i))
        .unwrap_or(0);
    Cow::Owned(format!("{}...", &note[..end]))
}

/// The object an Event is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Regarding {
    /// Any object, by its full reference.
    Object(Box<ObjectReference>),
    /// A core/v1 Service: `namespace/name`, then a space and its uid when
    /// known, in one allocation (a queue may hold 10k of these).
    Service(Box<str>),
}

/// The type, reason and action of an Event, fixed in the code that
/// publishes it (so a queued Event carries one pointer for the three).
#[derive(Debug, Clone)]
pub struct Kind {
    /// Normal or Warning.
    pub type_: EventType,
    /// The Event's reason, e.g. `nodeAssigned`.
    pub reason: &'static str,
    /// The Event's action, e.g. `Announce`.
    pub action: &'static str,
}

impl Regarding {
    /// The Service `key` (`namespace/name`) with this uid.
    pub fn service(key: &str, uid: Option<&str>) -> Self {
        Regarding::Service(match uid {
            Some(uid) => format!("{key} {uid}").into(),
            None => key.into(),
        })
    }

    /// The object reference written into the Event; `None` for a Service key
    /// without `/`.
    pub fn reference(&self) -> Option<Cow<'_, ObjectReference>> {
        match self {
            Regarding::Object(r) => Some(Cow::Borrowed(r)),
            Regarding::Service(key_uid) => {
                let (key, uid) = match key_uid.split_once(' ') {
                    Some((key, uid)) => (key, Some(uid)),
                    None => (&**key_uid, None),
                };
                let (ns, name) = key.split_once('/')?;
                Some(Cow::Owned(ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Service".into()),
                    namespace: (!ns.is_empty()).then(|| ns.to_string()),
                    name: Some(name.to_string()),
                    uid: uid.map(str::to_string),
                    ..Default::default()
                }))
            }
        }
    }
}

impl From<ObjectReference> for Regarding {
    fn from(r: ObjectReference) -> Self {
        Regarding::Object(Box::new(r))
    }
}

impl From<&ObjectReference> for Regarding {
    fn from(r: &ObjectReference) -> Self {
        Regarding::Object(Box::new(r.clone()))
    }
}

/// An Event waiting in the queue.
#[derive(Debug)]
struct Pending {
    regarding: Regarding,
    kind: &'static Kind,
    note: Arc<str>,
}

/// Names of the counters, as exposed by [`Events::register`].
pub const FAILED_METRIC: &str = "ferrolb_event_errors_total";
/// See [`FAILED_METRIC`].
pub const DROPPED_METRIC: &str = "ferrolb_events_dropped_total";

struct Inner {
    client: Client,
    reporter: Reporter,
    failed: IntCounter,
    dropped: IntCounter,
}

impl Inner {
    async fn write(
        &self,
        regarding: &Regarding,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), Error> {
        let Some(reference) = regarding.reference() else {
            self.failed.inc();
            warn!(
                ?regarding,
                reason, "Event about an object without a name: not written"
            );
            return Err(Error::Regarding(format!("{regarding:?}")));
        };
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate_note(note).into_owned()),
            action: action.to_string(),
            secondary: None,
        };
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        recorder.publish(&ev, &reference).await.map_err(|e| {
            self.failed.inc();
            warn!(
                object = reference.name.as_deref().unwrap_or_default(),
                namespace = reference.namespace.as_deref().unwrap_or_default(),
                reason,
                error = %e,
                "could not publish Event"
            );
            Error::Kube(e)
        })
    }
}

/// The Event publisher; cheap to clone (clones share the queue and counters).
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
    queue: Option<mpsc::Sender<Pending>>,
}

impl Events {
    /// A publisher for [`publish`](Self::publish) only (no queue, no task).
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Events {
            inner: Arc::new(Inner {
                client,
                reporter,
                failed: counter(FAILED_METRIC, "Events that could not be published"),
                dropped: counter(
                    DROPPED_METRIC,
                    "Events dropped because the Event queue was full",
                ),
            }),
            queue: None,
        }
    }

    /// A publisher that also has a queue of `capacity` Events for
    /// [`enqueue`](Self::enqueue), drained by a task spawned here (it ends
    /// when the last clone is dropped) no faster than `pace` allows. Needs a
    /// tokio runtime.
    pub fn with_queue(
        client: Client,
        reporter: Reporter,
        capacity: usize,
        mut pace: TokenBucket,
    ) -> Self {
        let mut events = Events::new(client, reporter);
        let (tx, mut rx) = mpsc::channel::<Pending>(capacity.max(1));
        let inner = events.inner.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                // tokio's clock, so that tests with paused time see it move.
                while let Err(wait) = pace.take(1, tokio::time::Instant::now().into_std()) {
                    tokio::time::sleep(wait).await;
                }
                let k = p.kind;
                let _ = inner
                    .write(&p.regarding, k.type_, k.reason, k.action, &p.note)
                    .await;
            }
        });
        events.queue = Some(tx);
        events
    }

    /// Writes an Event now (note cut to [`NOTE_MAX`]). A failure is logged and
    /// counted before it is returned; callers may ignore it.
    pub async fn publish(
        &self,
        regarding: impl Into<Regarding>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), Error> {
        self.inner
            .write(&regarding.into(), type_, reason, action, note)
            .await
    }

    /// Queues an Event without waiting; true if queued. When the queue is full
    /// (or there is none: built with [`new`](Self::new)), the Event is dropped,
    /// logged and counted.
    pub fn enqueue(&self, regarding: Regarding, kind: &'static Kind, note: Arc<str>) -> bool {
        let reason = kind.reason;
        let pending = Pending {
            regarding,
            kind,
            note,
        };
        let Some(queue) = &self.queue else {
            self.inner.dropped.inc();
            warn!(reason, "Event dropped: this publisher has no queue");
            return false;
        };
        match queue.try_send(pending) {
            Ok(()) => true,
            Err(e) => {
                self.inner.dropped.inc();
                let p = e.into_inner();
                warn!(regarding = ?p.regarding, reason, "Event queue full: Event dropped");
                false
            }
        }
    }

    /// Events that could not be written (counter named [`FAILED_METRIC`]).
    pub fn failed(&self) -> &IntCounter {
        &self.inner.failed
    }

    /// Events dropped from a full queue (counter named [`DROPPED_METRIC`]).
    pub fn dropped(&self) -> &IntCounter {
        &self.inner.dropped
    }

    /// Registers both counters in `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> Result<(), Error> {
        registry.register(Box::new(self.inner.failed.clone()))?;
        registry.register(Box::new(self.inner.dropped.clone()))?;
        Ok(())
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    // Constant, valid names and help (checked by the tests).
    IntCounter::new(name, help).expect("valid metric name and help")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued Event stays small: 10k of them are what the speaker may queue.
    #[test]
    fn queue_entry_is_small() {
        assert!(
            std::mem::size_of::<Pending>() <= 40,
            "{} bytes",
            std::mem::size_of::<Pending>()
        );
    }

    #[test]
    fn service_reference() {
        let r = Regarding::service("ns1/web", Some("u-1"));
        let r = r.reference().unwrap();
        assert_eq!(r.api_version.as_deref(), Some("v1"));
        assert_eq!(r.kind.as_deref(), Some("Service"));
        assert_eq!(r.namespace.as_deref(), Some("ns1"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.uid.as_deref(), Some("u-1"));
        assert!(Regarding::service("no-slash", None).reference().is_none());
    }
}
