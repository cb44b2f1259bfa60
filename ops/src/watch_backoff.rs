//! The retry policy of every watch: kube-runtime's default backoff (0.8 s
//! doubling to 30 s, started over after 120 s without an error), except that
//! a 410 Gone (the resource version expired) is not waited on.
//!
//! A 410 is what every watch meets first after the API server was restarted
//! or its watch cache moved on (etcd compacted): the watcher has already gone
//! back to a fresh list, and waiting only delays it. With the plain
//! [`default_backoff`](kube::runtime::WatchStreamExt::default_backoff) the 410
//! counted as one more error on top of those of the outage, so the relist
//! waited one more full delay (client-go's reflector relists at once on a 410).
//! What this does not change: during an outage the delay still grows to 30 s,
//! which kube-runtime's jitter stretches up to 60 s, so a watch can stay idle
//! that long after the API server is back (`bench/reliability/run api-outage`:
//! a new Service got its IP about a minute after the servers' start, before
//! and after this change; see RELIABILITY.md).
//!
//! The error still reaches the caller (logs, counters); only the sleep is
//! skipped. This module holds no state of its own and does no I/O.

use futures::{Stream, StreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, DefaultBackoff};

/// The HTTP status the API server answers a watch whose resource version is
/// too old with.
const GONE: u16 = 410;

/// Whether `e` is a 410 Gone from the API server (in a watch event or as the
/// answer to a request).
pub fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(status) => status.code == GONE,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == GONE,
        _ => false,
    }
}

/// `s` (a [`watcher()`](kube::runtime::watcher()) stream) with kube-runtime's
/// default backoff on every error except a 410 Gone ([`is_gone`]), which is
/// passed on at once.
pub fn backoff<S, T>(s: S) -> impl Stream<Item = Result<T, watcher::Error>>
where
    S: Stream<Item = Result<T, watcher::Error>>,
{
    // A 410 travels as an Ok through the backoff layer, which only sleeps on Err.
    s.map(|r| match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) if is_gone(&e) => Ok(Err(e)),
        Err(e) => Err(e),
    })
    .backoff(DefaultBackoff::default())
    .map(|r| r.and_then(|inner| inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use tokio::time::Instant;

    fn gone() -> watcher::Error {
        let mut s = Status::failure("too old resource version: 208 (2197)", "Expired");
        s.code = GONE;
        watcher::Error::WatchError(Box::new(s))
    }

    fn not_found() -> watcher::Error {
        let mut s = Status::failure("not found", "NotFound");
        s.code = 404;
        watcher::Error::WatchError(Box::new(s))
    }

    #[test]
    fn only_a_410_is_gone() {
        assert!(is_gone(&gone()));
        assert!(!is_gone(&not_found()));
        assert!(!is_gone(&watcher::Error::NoResourceVersion));
        let mut s = Status::failure("gone", "Expired");
        s.code = GONE;
        assert!(is_gone(&watcher::Error::WatchStartFailed(
            kube::Error::Api(Box::new(s))
        )));
    }

    /// Runs the items through [`backoff`] on paused time: (results, virtual seconds).
    async fn run(items: Vec<Result<u32, watcher::Error>>) -> (Vec<Result<u32, String>>, f64) {
        let t0 = Instant::now();
        let out: Vec<_> = backoff(futures::stream::iter(items))
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await;
        (out, t0.elapsed().as_secs_f64())
    }

    #[tokio::test(start_paused = true)]
    async fn a_410_is_passed_on_without_waiting() {
        let (out, secs) = run(vec![Err(gone()), Err(gone()), Err(gone()), Ok(7)]).await;
        assert_eq!(out.len(), 4);
        assert!(out[..3].iter().all(|r| {
            r.as_ref()
                .is_err_and(|e| e.contains("410") || e.contains("Expired"))
        }));
        assert_eq!(out[3], Ok(7));
        assert_eq!(secs, 0.0, "a 410 must not be waited on");
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_still_back_off() {
        let (out, secs) = run(vec![Err(not_found()), Err(not_found()), Ok(7)]).await;
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], Ok(7));
        // Two errors: at least two of kube-runtime's jittered delays (0.8 s, then 1.6 s, each
        // jittered within its step), never nothing.
        assert!(secs > 0.5, "waited only {secs} s after two errors");
    }
}
