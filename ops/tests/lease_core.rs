//! Table tests of the pure leader-election core: instants are passed in, and
//! the Lease's own timestamps never decide anything.

use std::time::{Duration, Instant};

use ferrolb_ops::lease::decide::{Decision, Elector, Lost, Record, Timing, released};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

const ME: &str = "me_1";
const OTHER: &str = "other_2";
const NAME: &str = "ferrolb-controller";

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

/// A wall-clock timestamp `offset` seconds from a fixed "our clock" noon.
fn wall(offset_secs: i64) -> MicroTime {
    let base: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    MicroTime(base + SignedDuration::from_secs(offset_secs))
}

fn lease(holder: Option<&str>, renew: MicroTime, transitions: i32, rv: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some("metallb-system".into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(15),
            acquire_time: Some(wall(-3600)),
            renew_time: Some(renew),
            lease_transitions: Some(transitions),
            ..Default::default()
        }),
    }
}

fn record(holder: Option<&str>, renew: MicroTime, transitions: i32) -> Record {
    Record::of(&lease(holder, renew, transitions, "1"))
}

#[test]
fn timing_defaults_and_validation() {
    let t = Timing::default();
    assert_eq!(
        (t.lease_duration, t.renew_deadline, t.retry_period),
        (s(15.0), s(10.0), s(2.0))
    );
    assert!(t.validate().is_ok());
    let bad = [
        Timing {
            renew_deadline: s(15.0),
            ..t
        },
        Timing {
            retry_period: s(10.0),
            ..t
        },
        Timing {
            retry_period: Duration::ZERO,
            ..t
        },
        Timing {
            lease_duration: s(15.5),
            ..t
        },
    ];
    for b in bad {
        assert!(b.validate().is_err(), "{b:?}");
    }
}

#[test]
fn no_lease_is_created() {
    let t0 = Instant::now();
    let mut e = Elector::new(ME, Timing::default());
    let d = e.observe(None, t0);
    assert_eq!(d, Decision::Create);
    let l = e.to_write(&d, NAME, None, wall(0)).unwrap();
    assert_eq!(l.metadata.name.as_deref(), Some(NAME));
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(ME));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.acquire_time, Some(wall(0)));
    assert_eq!(spec.renew_time, Some(wall(0)));
    assert!(!e.is_leader(), "not before the write succeeded");
}

/// The other holder's renewTime as seen against our wall clock: in sync,
/// hours in the past, hours in the future. The decisions must not differ.
const SKEWS: [i64; 3] = [0, -5 * 3600, 5 * 3600];

#[test]
fn held_by_another_and_changing_waits() {
    for skew in SKEWS {
        let t0 = Instant::now();
        let mut e = Elector::new(ME, Timing::default());
        // Renewed every 2 s (by its own clock), seen at our instants.
        for k in 0..20u32 {
            let at = t0 + s(2.0) * k;
            let r = record(Some(OTHER), wall(skew + 2 * i64::from(k)), 0);
            match e.observe(Some(&r), at) {
                Decision::Wait {
                    holder,
                    retry_after,
                } => {
                    assert_eq!(holder, OTHER);
                    assert_eq!(retry_after, s(2.0));
                }
                d => panic!("skew {skew}, step {k}: {d:?}"),
            }
        }
    }
}

#[test]
fn held_by_another_and_unchanged_for_the_duration_is_taken_over() {
    for skew in SKEWS {
        let t0 = Instant::now();
        let mut e = Elector::new(ME, Timing::default());
        let stale = lease(Some(OTHER), wall(skew), 4, "77");
        let r = Record::of(&stale);
        // First sight starts the clock, whatever the renewTime says.
        assert!(
            matches!(e.observe(Some(&r), t0), Decision::Wait { .. }),
            "skew {skew}"
        );
        match e.observe(Some(&r), t0 + s(14.0)) {
            Decision::Wait { retry_after, .. } => assert_eq!(retry_after, s(1.0)),
            d => panic!("skew {skew}: {d:?}"),
        }
        assert!(matches!(
            e.observe(Some(&r), t0 + s(14.999)),
            Decision::Wait { .. }
        ));
        let d = e.observe(Some(&r), t0 + s(15.0));
        assert_eq!(d, Decision::TakeOver, "skew {skew}");

        let l = e.to_write(&d, NAME, Some(&stale), wall(20)).unwrap();
        assert_eq!(l.metadata.resource_version.as_deref(), Some("77"));
        assert_eq!(l.metadata.namespace.as_deref(), Some("metallb-system"));
        let spec = l.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(5));
        assert_eq!(spec.acquire_time, Some(wall(20)));
        assert_eq!(spec.renew_time, Some(wall(20)));
        assert_eq!(spec.lease_duration_seconds, Some(15));

        e.written(Record::of(&l), t0 + s(15.1));
        assert!(e.is_leader());
    }
}

/// A change seen late restarts the wait: the holder renewed after all.
#[test]
fn a_change_restarts_the_wait() {
    let t0 = Instant::now();
    let mut e = Elector::new(ME, Timing::default());
    e.observe(Some(&record(Some(OTHER), wall(0), 0)), t0);
    let renewed = record(Some(OTHER), wall(12), 0);
    assert!(matches!(
        e.observe(Some(&renewed), t0 + s(12.0)),
        Decision::Wait { .. }
    ));
    // 15 s after the first sight, but only 3 s after the change.
    assert!(matches!(
        e.observe(Some(&renewed), t0 + s(15.0)),
        Decision::Wait { .. }
    ));
    assert_eq!(e.observe(Some(&renewed), t0 + s(27.0)), Decision::TakeOver);

    // A new holder (the same renewTime) is a change too.
    let mut e = Elector::new(ME, Timing::default());
    e.observe(Some(&record(Some(OTHER), wall(0), 0)), t0);
    let moved = record(Some("third_3"), wall(0), 1);
    assert!(matches!(
        e.observe(Some(&moved), t0 + s(15.0)),
        Decision::Wait { .. }
    ));
}

#[test]
fn the_leases_own_duration_is_used() {
    let t0 = Instant::now();
    let mut e = Elector::new(ME, Timing::default());
    let mut l = lease(Some(OTHER), wall(0), 0, "1");
    l.spec.as_mut().unwrap().lease_duration_seconds = Some(60);
    let r = Record::of(&l);
    e.observe(Some(&r), t0);
    assert!(matches!(
        e.observe(Some(&r), t0 + s(59.0)),
        Decision::Wait { .. }
    ));
    assert_eq!(e.observe(Some(&r), t0 + s(60.0)), Decision::TakeOver);
}

#[test]
fn free_lease_is_taken_at_once() {
    let t0 = Instant::now();
    for holder in [None, Some("")] {
        let mut e = Elector::new(ME, Timing::default());
        let r = record(holder, wall(0), 3);
        assert_eq!(r.holder, None);
        assert_eq!(e.observe(Some(&r), t0), Decision::TakeOver);
    }
}

#[test]
fn our_own_lease_is_renewed() {
    let t0 = Instant::now();
    let mut e = Elector::new(ME, Timing::default());
    // Ours already (say our create succeeded but the answer was lost): renew,
    // keeping transitions and acquireTime.
    let mine = lease(Some(ME), wall(0), 2, "9");
    let d = e.observe(Some(&Record::of(&mine)), t0);
    assert_eq!(d, Decision::Renew);
    let l = e.to_write(&d, NAME, Some(&mine), wall(2)).unwrap();
    let spec = l.spec.as_ref().unwrap();
    assert_eq!(spec.lease_transitions, Some(2));
    assert_eq!(spec.acquire_time, Some(wall(-3600)));
    assert_eq!(spec.renew_time, Some(wall(2)));
    assert_eq!(l.metadata.resource_version.as_deref(), Some("9"));
}

#[test]
fn renewal_failing_past_the_deadline_is_lost() {
    let t0 = Instant::now();
    let mut e = Elector::new(ME, Timing::default());
    e.written(record(Some(ME), wall(0), 0), t0);
    assert!(e.is_leader());
    assert_eq!(e.time_left(t0 + s(4.0)), Some(s(6.0)));
    assert_eq!(e.failed(t0 + s(2.0)), None);
    assert_eq!(e.failed(t0 + s(9.9)), None);
    assert!(e.is_leader());
    assert_eq!(e.failed(t0 + s(10.0)), Some(Lost::RenewDeadline(s(10.0))));
    assert!(!e.is_leader());
    assert_eq!(e.time_left(t0 + s(10.0)), None);

    // A success in between moves the deadline.
    let mut e = Elector::new(ME, Timing::default());
    e.written(record(Some(ME), wall(0), 0), t0);
    assert_eq!(e.failed(t0 + s(8.0)), None);
    e.written(record(Some(ME), wall(9), 0), t0 + s(9.0));
    assert_eq!(e.failed(t0 + s(18.0)), None);
    assert!(e.failed(t0 + s(19.0)).is_some());

    // A read that comes back only after the deadline does not renew.
    let mut e = Elector::new(ME, Timing::default());
    e.written(record(Some(ME), wall(0), 0), t0);
    let d = e.observe(Some(&record(Some(ME), wall(0), 0)), t0 + s(11.0));
    assert_eq!(d, Decision::Lost(Lost::RenewDeadline(s(11.0))));
    assert!(!e.is_leader());
}

#[test]
fn another_holder_seen_is_lost() {
    for skew in SKEWS {
        let t0 = Instant::now();
        let mut e = Elector::new(ME, Timing::default());
        e.written(record(Some(ME), wall(0), 0), t0);
        let d = e.observe(Some(&record(Some(OTHER), wall(skew), 1)), t0 + s(2.0));
        assert_eq!(d, Decision::Lost(Lost::TakenBy(OTHER.into())));
        assert!(!e.is_leader());
    }
    // Our holder cleared while we lead: lost too.
    let t0 = Instant::now();
    let mut e = Elector::new(ME, Timing::default());
    e.written(record(Some(ME), wall(0), 0), t0);
    assert_eq!(
        e.observe(Some(&record(None, wall(0), 0)), t0 + s(2.0)),
        Decision::Lost(Lost::Cleared)
    );
}

#[test]
fn release_clears_only_our_holder() {
    let mine = lease(Some(ME), wall(0), 2, "5");
    let l = released(&mine, ME).unwrap();
    let spec = l.spec.as_ref().unwrap();
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.lease_transitions, Some(2));
    assert_eq!(l.metadata.resource_version.as_deref(), Some("5"));
    assert!(released(&lease(Some(OTHER), wall(0), 2, "5"), ME).is_none());
}
