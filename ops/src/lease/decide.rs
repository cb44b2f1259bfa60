//! The pure core of leader election: no I/O, no clock. The caller passes each
//! Lease it read and the monotonic instant it read it at, and gets back what
//! to do.
//!
//! Expiry is judged as client-go's elector judges it, so that clock skew
//! between nodes does not matter: the core remembers when THIS process last
//! saw the Lease record change (holder, renewTime, acquireTime, transitions
//! or duration), on its own monotonic clock; another holder's Lease has
//! expired when it has not changed for its `leaseDurationSeconds` since then.
//! The renewTime written in the Lease is never compared with our wall clock
//! (it is only written, for people reading the Lease).
//!
//! While leading, the Lease is renewed every [`Timing::retry_period`];
//! leadership is lost when no renewal succeeded within
//! [`Timing::renew_deadline`] (shorter than the lease duration, so we stop
//! before anyone else may take over), or as soon as a read shows another
//! holder (or none).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use crate::Error;

/// Leader-election timings (client-go's defaults for 15 s leases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long others wait, after last seeing the Lease change, before taking
    /// it over; written as the Lease's `leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// The leader gives up when no renewal succeeded for this long.
    pub renew_deadline: Duration,
    /// Time between renewals, and between attempts to acquire.
    pub retry_period: Duration,
}

impl Default for Timing {
    /// 15 s lease, 10 s renew deadline, 2 s retry period.
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Checks `retry_period < renew_deadline < lease_duration`, the duration a
    /// whole number of seconds (at least 1) — what makes the election safe.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why: &str| Err(Error::Timing(format!("{why} ({self:?})")));
        if self.lease_duration.subsec_nanos() != 0
            || self.lease_duration.as_secs() == 0
            || i32::try_from(self.lease_duration.as_secs()).is_err()
        {
            return bad("the lease duration must be a whole number of seconds");
        }
        if self.renew_deadline >= self.lease_duration {
            return bad("the renew deadline must be shorter than the lease duration");
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return bad("the retry period must be non-zero and shorter than the renew deadline");
        }
        Ok(())
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The parts of a Lease the election reads. Two reads show a change when
/// their records differ (resourceVersion is not part of it: other writes to
/// the object, such as labels, are not renewals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `holderIdentity`; an empty string counts as none.
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub duration_seconds: Option<i32>,
    /// `acquireTime`.
    pub acquire_time: Option<MicroTime>,
    /// `renewTime`.
    pub renew_time: Option<MicroTime>,
    /// `leaseTransitions` (absent: 0).
    pub transitions: i32,
}

impl Record {
    /// The record of a Lease as read.
    pub fn of(lease: &Lease) -> Record {
        let spec = lease.spec.as_ref();
        Record {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
            acquire_time: spec.and_then(|s| s.acquire_time.clone()),
            renew_time: spec.and_then(|s| s.renew_time.clone()),
            transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
        }
    }
}

/// What to do after a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, held by us.
    Create,
    /// Take the Lease over (it is free or expired): we become the holder,
    /// `leaseTransitions` + 1, `acquireTime` now.
    TakeOver,
    /// The Lease is ours: write a new `renewTime`.
    Renew,
    /// Another process holds a live Lease: read again after `retry_after`.
    Wait {
        /// Who holds it.
        holder: String,
        /// When to read again.
        retry_after: Duration,
    },
    /// We were leading and no longer are.
    Lost(Lost),
}

/// Why leadership was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// A read shows this other holder.
    TakenBy(String),
    /// A read shows no holder: our record was cleared.
    Cleared,
    /// No renewal succeeded within the renew deadline.
    RenewDeadline(Duration),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::TakenBy(h) => write!(f, "the Lease is now held by {h}"),
            Lost::Cleared => f.write_str("the Lease's holder was cleared"),
            Lost::RenewDeadline(d) => write!(f, "no renewal succeeded for {d:?}"),
        }
    }
}

/// The election state of one candidate.
#[derive(Debug, Clone)]
pub struct Elector {
    identity: String,
    timing: Timing,
    /// The record last read, and when (our clock) it was first seen so.
    observed: Option<(Record, Instant)>,
    /// While leading: when our last write succeeded.
    renewed_at: Option<Instant>,
}

impl Elector {
    /// A candidate named `identity` (unique per process).
    pub fn new(identity: impl Into<String>, timing: Timing) -> Self {
        Elector {
            identity: identity.into(),
            timing,
            observed: None,
            renewed_at: None,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The timings in force.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Whether we hold leadership (until told otherwise).
    pub fn is_leader(&self) -> bool {
        self.renewed_at.is_some()
    }

    /// What to do after reading the Lease (`None`: it does not exist) at `now`.
    pub fn observe(&mut self, read: Option<&Record>, now: Instant) -> Decision {
        if let Some(lost) = self.deadline_passed(now) {
            return self.lose(lost);
        }
        let Some(record) = read else {
            self.observed = None;
            return Decision::Create;
        };
        let changed = self.observed.as_ref().is_none_or(|(r, _)| r != record);
        if changed {
            self.observed = Some((record.clone(), now));
        }
        let since_change = self.observed.as_ref().map_or(now, |(_, t)| *t);
        match &record.holder {
            Some(h) if *h == self.identity => Decision::Renew,
            Some(h) if self.is_leader() => self.lose(Lost::TakenBy(h.clone())),
            None if self.is_leader() => self.lose(Lost::Cleared),
            None => Decision::TakeOver,
            Some(h) => {
                let duration = record
                    .duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.timing.lease_duration, Duration::from_secs);
                let unchanged = now.saturating_duration_since(since_change);
                if unchanged >= duration {
                    Decision::TakeOver
                } else {
                    Decision::Wait {
                        holder: h.clone(),
                        retry_after: (duration - unchanged).min(self.timing.retry_period),
                    }
                }
            }
        }
    }

    /// Our write of `record` (after [`Decision::Create`], [`Decision::TakeOver`]
    /// or [`Decision::Renew`]) succeeded at `now`: we lead, renewed now.
    pub fn written(&mut self, record: Record, now: Instant) {
        self.observed = Some((record, now));
        self.renewed_at = Some(now);
    }

    /// A read or write failed at `now`. While leading: `Some` when the renew
    /// deadline has passed (leadership lost).
    pub fn failed(&mut self, now: Instant) -> Option<Lost> {
        let lost = self.deadline_passed(now)?;
        self.renewed_at = None;
        Some(lost)
    }

    /// While leading: how long a renewal may still take before the deadline.
    pub fn time_left(&self, now: Instant) -> Option<Duration> {
        let at = self.renewed_at?;
        Some(
            self.timing
                .renew_deadline
                .saturating_sub(now.saturating_duration_since(at)),
        )
    }

    /// We gave the Lease up (or stopped leading for another reason).
    pub fn released(&mut self) {
        self.renewed_at = None;
    }

    fn deadline_passed(&self, now: Instant) -> Option<Lost> {
        let at = self.renewed_at?;
        let since = now.saturating_duration_since(at);
        (since >= self.timing.renew_deadline).then_some(Lost::RenewDeadline(since))
    }

    fn lose(&mut self, why: Lost) -> Decision {
        self.renewed_at = None;
        Decision::Lost(why)
    }

    /// The Lease to write for `decision` (`read`: the Lease as read, whose
    /// metadata, resourceVersion included, is kept so a concurrent writer
    /// gets a conflict). `wall_now` is only written, never judged. `None` for
    /// [`Decision::Wait`] and [`Decision::Lost`].
    pub fn to_write(
        &self,
        decision: &Decision,
        name: &str,
        read: Option<&Lease>,
        wall_now: MicroTime,
    ) -> Option<Lease> {
        let mut lease = match (decision, read) {
            (Decision::Create, _) | (_, None) => Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            },
            (_, Some(l)) => l.clone(),
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        match decision {
            Decision::Create => {
                spec.acquire_time = Some(wall_now.clone());
            }
            Decision::TakeOver => {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.acquire_time = Some(wall_now.clone());
            }
            Decision::Renew => {
                if spec.acquire_time.is_none() {
                    spec.acquire_time = Some(wall_now.clone());
                }
            }
            Decision::Wait { .. } | Decision::Lost(_) => return None,
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(self.timing.duration_seconds());
        spec.renew_time = Some(wall_now);
        Some(lease)
    }
}

/// `lease` with its holder cleared, when we hold it (`None` otherwise), so
/// that others may take it over at once.
pub fn released(lease: &Lease, identity: &str) -> Option<Lease> {
    if Record::of(lease).holder.as_deref() != Some(identity) {
        return None;
    }
    let mut l = lease.clone();
    if let Some(spec) = l.spec.as_mut() {
        spec.holder_identity = None;
    }
    Some(l)
}
