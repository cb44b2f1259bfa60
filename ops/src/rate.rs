//! A token bucket (time passed in), for whatever must spread its API
//! writes: the speaker's status writers and its Event queue.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` saved up; it
/// starts full. Time is passed in.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive; `burst` is at least 1.
    pub fn new(rate: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
    }

    /// Take `n` tokens at `now` if there are enough; otherwise how long until
    /// there are (a request above the burst waits for a full bucket and
    /// takes it).
    pub fn take(&mut self, n: u32, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let want = f64::from(n).min(self.burst);
        if self.tokens >= want {
            self.tokens -= want;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((want - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_spreads_a_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0);
        for _ in 0..5 {
            assert_eq!(b.take(1, t0), Ok(()));
        }
        let wait = b.take(1, t0).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-6,
            "one token every 100 ms: {wait:?}"
        );
        // 1 s later: 10 tokens earned, but only 5 kept.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..5 {
            assert_eq!(b.take(1, t1), Ok(()));
        }
        assert!(b.take(1, t1).is_err());
        // A create costs two.
        let t2 = t1 + Duration::from_millis(150);
        assert_eq!(b.take(2, t2), Err(Duration::from_millis(50)));
        assert_eq!(b.take(2, t2 + Duration::from_millis(50)), Ok(()));
        // Over a long run, writes never exceed rate × time + burst.
        let mut b = TokenBucket::new(20.0, 20.0);
        let mut now = t0;
        let mut done = 0u32;
        while now < t0 + Duration::from_secs(10) {
            match b.take(1, now) {
                Ok(()) => done += 1,
                Err(w) => now += w,
            }
        }
        assert!((200..=220).contains(&done), "{done} writes in 10 s");
    }
}
