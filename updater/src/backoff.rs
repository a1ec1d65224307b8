//! Retry timing: jittered exponential backoff, bounded.
//!
//! After the n-th failure in a row the wait is drawn uniformly from `[d/2, d]` where
//! `d = min(1 s × 2^n, 5 min)`: quick retries when a network blip passes, no synchronised
//! hammering of the directory when it is down for many terminals at once.

use std::time::Duration;

/// The shortest wait after a failure.
pub const MIN: Duration = Duration::from_secs(1);
/// The longest wait after repeated failures.
pub const MAX: Duration = Duration::from_secs(300);
/// The wait after an error a person must fix (bad key, refused): retrying sooner cannot help.
pub const AFTER_AUTH_FAILURE: Duration = Duration::from_secs(3600);

/// Consecutive failures and the next wait.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait before the next attempt, given a jitter in `[0, 1]`.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let ceiling = MIN
            .saturating_mul(2u32.saturating_pow(self.failures.min(16)))
            .min(MAX);
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// After a success the next failure starts again from the shortest wait.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A uniform random number in `[0, 1)` from the operating system.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_up_to_five_minutes() {
        let mut b = Backoff::default();
        let ceilings: Vec<u64> = (0..12).map(|_| b.next_delay(1.0).as_secs()).collect();
        assert_eq!(
            ceilings,
            vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
    }

    #[test]
    fn jitter_keeps_delays_within_half_to_full() {
        let mut b = Backoff::default();
        for _ in 0..40 {
            let ceiling = {
                let mut probe = b.clone();
                probe.next_delay(1.0)
            };
            let d = b.next_delay(jitter());
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next_delay(1.0);
        }
        b.reset();
        assert_eq!(b.next_delay(1.0), MIN);
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
