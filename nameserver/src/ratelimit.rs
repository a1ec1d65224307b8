//! Rate limits: token buckets, response rate limiting (RRL) for UDP, and the per-key limit
//! on updates.
//!
//! **Failed enrollments**: each failed enrollment costs its source prefix and its token
//! id one token ([`EnrollFailures`]); with either bucket empty, an enrollment is refused
//! before its TSIG is checked or any key agreement is made.
//!
//! **RRL**: a UDP answer costs the asker's network prefix (/24 for IPv4, /56 for IPv6) one
//! token; tokens refill at `rate` per second up to `rate` (one second of burst). Over the
//! limit, answers are dropped, except every `slip`-th, which is sent empty with TC set so a
//! real client retries over TCP (which cannot be spoofed). This blunts reflection and
//! amplification with forged source addresses, as NSD's and Knot's RRL do. Every UDP answer
//! counts, error answers included (FORMERR, REFUSED, NOTIMP, BADKEY, BADSIG, BADTIME), as
//! BIND's `errors-per-second` and NSD's rrl do; only answers to requests whose TSIG verified
//! and answers to requests with a valid server cookie are not limited: their senders proved
//! they are who they say.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Buckets kept before idle ones are swept.
const MAX_BUCKETS: usize = 100_000;

/// Token buckets by key.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<K, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// `rate` tokens per second, at most `burst` saved up.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; false when its bucket is empty.
    pub fn take(&self, key: &K, now: Instant) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_BUCKETS && !map.contains_key(key) {
            self.sweep(&mut map, now);
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `rate` tokens per second (a fraction: one a minute is 1/60), at most `burst` saved up.
    pub fn fractional(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` has a token left, without taking it.
    pub fn has(&self, key: &K, now: Instant) -> bool {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).is_none_or(|bucket| {
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            (bucket.tokens + elapsed * self.rate).min(self.burst) >= 1.0
        })
    }

    /// Forgets buckets that have refilled (they behave as new ones); if none has, the
    /// oldest half, so memory stays bounded under a flood of spoofed sources.
    fn sweep(&self, map: &mut HashMap<K, Bucket>, now: Instant) {
        let full_after = self.burst / self.rate.max(f64::MIN_POSITIVE);
        map.retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() < full_after);
        if map.len() >= MAX_BUCKETS {
            let mut ages: Vec<Instant> = map.values().map(|b| b.at).collect();
            ages.sort();
            let cutoff = ages[ages.len() / 2];
            map.retain(|_, b| b.at > cutoff);
        }
    }

    /// Gives back a token taken for a request that turned out not to count (a replay
    /// caught late), so a stranger's copies never spend the owner's budget.
    pub fn refund(&self, key: &K) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = map.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What to do with an answer under RRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// Send it empty with TC set.
    Slip,
    Drop,
}

/// Response rate limiting by client prefix.
#[derive(Debug)]
pub struct ResponseRateLimit {
    buckets: Buckets<IpAddr>,
    slip: u32,
    over: AtomicU32,
}

impl ResponseRateLimit {
    /// `rate` answers per second per prefix; every `slip`-th answer over it slips (0: none).
    pub fn new(rate: u32, slip: u32) -> Self {
        Self {
            buckets: Buckets::new(rate, rate),
            slip,
            over: AtomicU32::new(0),
        }
    }

    pub fn check(&self, src: IpAddr, now: Instant) -> Verdict {
        if self.buckets.take(&prefix(src), now) {
            return Verdict::Answer;
        }
        let n = self.over.fetch_add(1, Ordering::Relaxed);
        if self.slip > 0 && n % self.slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// Failed enrollments allowed per source prefix and per token, in a burst.
pub const ENROLL_FAILURE_BURST: u32 = 10;
/// Failed enrollments allowed per minute, per source prefix and per token, after the burst.
pub const ENROLL_FAILURES_PER_MINUTE: u32 = 10;

/// The budget of failed enrollments, per source prefix (/24, /56) and per token id.
#[derive(Debug)]
pub struct EnrollFailures {
    prefixes: Buckets<IpAddr>,
    tokens: Buckets<String>,
}

impl Default for EnrollFailures {
    fn default() -> Self {
        Self::new(ENROLL_FAILURE_BURST)
    }
}

impl EnrollFailures {
    /// `burst` failures at once, then [`ENROLL_FAILURES_PER_MINUTE`].
    pub fn new(burst: u32) -> Self {
        let per_second = f64::from(ENROLL_FAILURES_PER_MINUTE) / 60.0;
        Self {
            prefixes: Buckets::fractional(per_second, burst),
            tokens: Buckets::fractional(per_second, burst),
        }
    }

    /// Whether an enrollment from `src` with the token `token` (as its key name says) may
    /// be tried at all.
    pub fn allows(&self, src: IpAddr, token: Option<&str>, now: Instant) -> bool {
        self.prefixes.has(&prefix(src), now)
            && token.is_none_or(|t| self.tokens.has(&t.to_owned(), now))
    }

    /// Counts a failed enrollment against `src`'s prefix and the token.
    pub fn failed(&self, src: IpAddr, token: Option<&str>, now: Instant) {
        self.prefixes.take(&prefix(src), now);
        if let Some(t) = token {
            self.tokens.take(&t.to_owned(), now);
        }
    }
}

/// The network an address belongs to for RRL: /24 for IPv4, /56 for IPv6.
pub fn prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => prefix(IpAddr::V4(v4)),
            None => {
                let mut octets = v6.octets();
                octets[7..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_allow_the_burst_then_the_rate() {
        let b = Buckets::new(10, 10);
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| b.take(&"k", t0)).count();
        assert_eq!(allowed, 10);
        assert!(!b.take(&"k", t0));
        assert!(
            b.take(&"k", t0 + Duration::from_millis(100)),
            "one token refilled"
        );
        assert!(b.take(&"other", t0), "keys are independent");
    }

    #[test]
    fn rrl_slips_every_second_answer_over_the_limit() {
        let rrl = ResponseRateLimit::new(5, 2);
        let t0 = Instant::now();
        let src: IpAddr = "192.0.2.7".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..15).map(|_| rrl.check(src, t0)).collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Answer).count(),
            5
        );
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Slip).count(), 5);
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Drop).count(), 5);
        // Same /24: same bucket. Another /24: its own.
        assert_ne!(
            rrl.check("192.0.2.200".parse().unwrap(), t0),
            Verdict::Answer
        );
        assert_eq!(rrl.check("192.0.3.7".parse().unwrap(), t0), Verdict::Answer);
    }

    #[test]
    fn failed_enrollments_run_out_per_prefix_and_per_token_and_come_back() {
        let failures = EnrollFailures::new(3);
        let (now, src) = (Instant::now(), IpAddr::from([192, 0, 2, 1]));
        let neighbour = IpAddr::from([192, 0, 2, 200]);
        for _ in 0..3 {
            assert!(failures.allows(src, Some("t1"), now));
            failures.failed(src, Some("t1"), now);
        }
        assert!(!failures.allows(neighbour, None, now), "the same /24");
        assert!(!failures.allows(IpAddr::from([198, 51, 100, 1]), Some("t1"), now));
        assert!(failures.allows(IpAddr::from([198, 51, 100, 1]), Some("t2"), now));
        let later = now + std::time::Duration::from_secs(6);
        assert!(
            failures.allows(src, Some("t1"), later),
            "one failure a minute back"
        );
    }

    #[test]
    fn prefixes_are_slash_24_and_slash_56() {
        assert_eq!(
            prefix("192.0.2.77".parse().unwrap()),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            prefix("2001:db8:1:23ff:1:2:3:4".parse().unwrap()),
            "2001:db8:1:2300::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn memory_stays_bounded_under_spoofed_sources() {
        let b = Buckets::new(1, 1);
        let t0 = Instant::now();
        for i in 0..(MAX_BUCKETS as u32 + 5000) {
            b.take(&i, t0);
        }
        assert!(b.len() <= MAX_BUCKETS);
    }
}
