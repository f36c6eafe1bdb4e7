//! Exponential backoff with jitter, as the Collector's `retry_on_failure` computes it:
//! each interval is the previous one times `multiplier`, capped at `max_interval`, then
//! randomised within ±`randomization_factor`. A server's retry hint (HTTP Retry-After,
//! gRPC RetryInfo) replaces the computed delay when it is longer.

use std::time::Duration;

use super::RetryConfig;

pub struct Backoff {
    next: Duration,
    max: Duration,
    multiplier: f64,
    randomization: f64,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(c: &RetryConfig, seed: u64) -> Backoff {
        Backoff {
            next: c.initial_interval.get(),
            max: c.max_interval.get(),
            multiplier: c.multiplier.max(1.0),
            randomization: c.randomization_factor.clamp(0.0, 1.0),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next attempt, given the server's hint if any.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Duration {
        let base = self.next;
        self.next = Duration::from_secs_f64(
            (base.as_secs_f64() * self.multiplier).min(self.max.as_secs_f64()),
        );
        let delta = base.as_secs_f64() * self.randomization;
        let jittered = base.as_secs_f64() - delta + self.rng.f64() * 2.0 * delta;
        let d = Duration::from_secs_f64(jittered.max(0.0));
        match hint {
            Some(h) if h > d => h,
            _ => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    #[test]
    fn grows_caps_and_honours_hints() {
        let c = RetryConfig {
            initial_interval: Dur::secs(1),
            max_interval: Dur::secs(4),
            multiplier: 2.0,
            randomization_factor: 0.0,
            ..Default::default()
        };
        let mut b = Backoff::new(&c, 1);
        let d: Vec<u64> = (0..5).map(|_| b.next_delay(None).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 4, 4]);
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(10))),
            Duration::from_secs(10)
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_millis(1))),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn jitter_stays_within_factor() {
        let c = RetryConfig {
            initial_interval: Dur::secs(10),
            max_interval: Dur::secs(10),
            randomization_factor: 0.5,
            ..Default::default()
        };
        let mut b = Backoff::new(&c, 7);
        for _ in 0..100 {
            let d = b.next_delay(None).as_secs_f64();
            assert!((5.0..=15.0).contains(&d), "{d}");
        }
    }
}
