//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's elector
//! does it: [`decide`] is the pure core (expiry judged on our own monotonic
//! clock, so clock skew between nodes does not matter); [`LeaderElector`] is
//! the thin loop that reads and writes the Lease.
//!
//! Writes are a GET then a PUT (`replace`) carrying the resourceVersion read,
//! so of two concurrent writers one gets 409 Conflict; or a POST (`create`)
//! when the Lease does not exist. The verbs needed are exactly `create`, `get`
//! and `update` on the Lease.

pub mod decide;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::time::{Instant, sleep};
use tracing::{debug, info, warn};

pub use decide::{Decision, Elector, Lost, Record, Timing};

use crate::Error;

/// A candidate for leadership of the Lease `name`.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    core: Elector,
}

/// How one attempt ended.
enum Attempt {
    /// Our write succeeded: we lead.
    Written,
    /// Someone else holds it; read again after this long.
    Wait(String, Duration),
    /// We were leading and are not any more.
    Lost(Lost),
    /// A request failed; `conflict`: another writer was first (read again now).
    Failed { conflict: bool },
}

impl LeaderElector {
    /// A candidate `identity` (unique per process, e.g. pod name + pid) for
    /// the Lease `name` in `api`'s namespace. Errors on unsafe timings
    /// ([`Timing::validate`]).
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        timing: Timing,
    ) -> Result<Self, Error> {
        timing.validate()?;
        Ok(LeaderElector {
            api,
            name: name.into(),
            core: Elector::new(identity, timing),
        })
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        self.core.identity()
    }

    /// Whether we lead (since [`acquire`](Self::acquire) returned, until
    /// [`hold`](Self::hold) returns or [`release`](Self::release)).
    pub fn is_leader(&self) -> bool {
        self.core.is_leader()
    }

    /// Blocks until this process holds the Lease. Errors from the API server
    /// are logged and retried every retry period.
    pub async fn acquire(&mut self) {
        let retry = self.core.timing().retry_period;
        let mut waiting_for: Option<String> = None;
        loop {
            match self.attempt().await {
                Attempt::Written => {
                    info!(lease = %self.name, identity = %self.identity(), "became leader");
                    return;
                }
                Attempt::Wait(holder, after) => {
                    if waiting_for.as_ref() != Some(&holder) {
                        info!(lease = %self.name, %holder, "waiting for the leader Lease");
                        waiting_for = Some(holder);
                    }
                    sleep(after).await;
                }
                Attempt::Failed { conflict: true } => {}
                Attempt::Failed { conflict: false } | Attempt::Lost(_) => sleep(retry).await,
            }
        }
    }

    /// Keeps renewing the Lease; returns why leadership was lost. Each renewal
    /// is bounded by the time left before the renew deadline.
    pub async fn hold(&mut self) -> Lost {
        let retry = self.core.timing().retry_period;
        let mut wait = retry;
        loop {
            sleep(wait).await;
            wait = retry;
            let now = Instant::now().into_std();
            let Some(left) = self.core.time_left(now) else {
                // Not leading (never acquired, or released): nothing to hold.
                return Lost::Cleared;
            };
            if left.is_zero()
                && let Some(why) = self.core.failed(now)
            {
                return self.lost(why);
            }
            let outcome = match tokio::time::timeout(left, self.attempt()).await {
                Ok(o) => o,
                Err(_) => {
                    warn!(lease = %self.name, "renewing the leader Lease timed out");
                    Attempt::Failed { conflict: false }
                }
            };
            match outcome {
                Attempt::Written => debug!(lease = %self.name, "renewed"),
                Attempt::Lost(why) => return self.lost(why),
                Attempt::Wait(holder, _) => return self.lost(Lost::TakenBy(holder)),
                Attempt::Failed { conflict } => {
                    if let Some(why) = self.core.failed(Instant::now().into_std()) {
                        return self.lost(why);
                    }
                    if conflict {
                        wait = Duration::ZERO;
                    }
                }
            }
        }
    }

    /// Gives the Lease up: clears `holderIdentity` if the Lease is still ours,
    /// so another candidate takes over without waiting for it to expire.
    pub async fn release(&mut self) -> Result<(), Error> {
        self.core.released();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        if let Some(l) = decide::released(&lease, self.identity()) {
            self.api
                .replace(&self.name, &PostParams::default(), &l)
                .await?;
            info!(lease = %self.name, "released the leader Lease");
        }
        Ok(())
    }

    fn lost(&mut self, why: Lost) -> Lost {
        self.core.released();
        warn!(lease = %self.name, reason = %why, "lost leadership");
        why
    }

    /// One read, decision and (when due) write.
    async fn attempt(&mut self) -> Attempt {
        let read = match self.api.get_opt(&self.name).await {
            Ok(l) => l,
            Err(e) => {
                warn!(lease = %self.name, error = %e, "reading the leader Lease");
                return Attempt::Failed { conflict: false };
            }
        };
        let record = read.as_ref().map(Record::of);
        let decision = self
            .core
            .observe(record.as_ref(), Instant::now().into_std());
        let wall_now = MicroTime(Timestamp::now());
        let Some(lease) = self
            .core
            .to_write(&decision, &self.name, read.as_ref(), wall_now)
        else {
            return match decision {
                Decision::Wait {
                    holder,
                    retry_after,
                } => Attempt::Wait(holder, retry_after),
                Decision::Lost(why) => Attempt::Lost(why),
                _ => Attempt::Failed { conflict: false },
            };
        };
        let pp = PostParams::default();
        let written = match decision {
            Decision::Create => self.api.create(&pp, &lease).await,
            _ => self.api.replace(&self.name, &pp, &lease).await,
        };
        match written {
            Ok(l) => {
                self.core.written(Record::of(&l), Instant::now().into_std());
                Attempt::Written
            }
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                debug!(lease = %self.name, "another writer was first");
                Attempt::Failed { conflict: true }
            }
            Err(e) => {
                warn!(lease = %self.name, error = %e, "writing the leader Lease");
                Attempt::Failed { conflict: false }
            }
        }
    }
}
