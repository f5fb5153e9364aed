//! A circuit breaker per provider: after too many failures in a window it opens, so a
//! dead provider fails fast instead of tying up every partition; after a cool-down it
//! lets one probe through (half-open), and that probe decides whether it closes again.
//!
//! The state machine is pure: every transition takes `now`, so it is table-tested
//! without sleeping.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

/// When the breaker opens and for how long.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// How many recent calls are considered.
    pub window: usize,
    /// Fewest calls in the window before the ratio counts.
    pub min_calls: usize,
    /// Failure ratio (0–1) at which it opens.
    pub failure_ratio: f64,
    /// How long it stays open before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: 20,
            min_calls: 5,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Why a call was refused without being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open: the provider failed too often; next probe in {retry_in:?}")]
pub struct BreakerOpen {
    /// When a call may be tried again.
    pub retry_in: Duration,
}

#[derive(Debug)]
struct Inner {
    state: State,
    outcomes: VecDeque<bool>,
}

/// A thread-safe circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                outcomes: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a call be made at `now`? In half-open state only one probe at a time is.
    pub fn allow(&self, now: Instant) -> Result<(), BreakerOpen> {
        let mut inner = self.lock();
        match inner.state {
            State::Closed => Ok(()),
            State::Open { until } if now < until => Err(BreakerOpen {
                retry_in: until - now,
            }),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                inner.state = State::HalfOpen { probing: true };
                Ok(())
            }
            State::HalfOpen { probing: true } => Err(BreakerOpen {
                retry_in: Duration::from_millis(100),
            }),
        }
    }

    /// Records the outcome of an allowed call made at `now`.
    pub fn record(&self, success: bool, now: Instant) {
        let mut inner = self.lock();
        match inner.state {
            State::HalfOpen { .. } => {
                inner.outcomes.clear();
                inner.state = if success {
                    State::Closed
                } else {
                    State::Open {
                        until: now + self.config.open_for,
                    }
                };
            }
            State::Closed => {
                inner.outcomes.push_back(success);
                while inner.outcomes.len() > self.config.window {
                    inner.outcomes.pop_front();
                }
                let calls = inner.outcomes.len();
                let failures = inner.outcomes.iter().filter(|ok| !**ok).count();
                if calls >= self.config.min_calls
                    && failures as f64 >= self.config.failure_ratio * calls as f64
                {
                    inner.state = State::Open {
                        until: now + self.config.open_for,
                    };
                    inner.outcomes.clear();
                }
            }
            // A call allowed before the breaker opened finished late: it changes nothing.
            State::Open { .. } => {}
        }
    }

    /// Whether it currently refuses calls (for metrics and logs).
    pub fn is_open(&self, now: Instant) -> bool {
        matches!(self.lock().state, State::Open { until } if now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            window: 4,
            min_calls: 4,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_at_the_failure_ratio_then_probes_and_closes() {
        let b = breaker();
        let t = Instant::now();
        for ok in [true, false, true] {
            b.allow(t).unwrap();
            b.record(ok, t);
        }
        assert!(!b.is_open(t), "too few calls to judge");
        b.allow(t).unwrap();
        b.record(false, t);
        assert!(b.is_open(t), "2 of 4 failed");
        assert!(b.allow(t + Duration::from_secs(9)).is_err());
        b.allow(t + Duration::from_secs(10))
            .expect("a probe after the cool-down");
        assert!(
            b.allow(t + Duration::from_secs(10)).is_err(),
            "one probe at a time"
        );
        b.record(true, t + Duration::from_secs(11));
        assert!(b.allow(t + Duration::from_secs(11)).is_ok(), "closed again");
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..4 {
            b.allow(t).unwrap();
            b.record(false, t);
        }
        let later = t + Duration::from_secs(10);
        b.allow(later).unwrap();
        b.record(false, later);
        let err = b.allow(later + Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.retry_in, Duration::from_secs(9));
    }

    #[test]
    fn successes_keep_it_closed() {
        let b = breaker();
        let t = Instant::now();
        for i in 0..100 {
            b.allow(t).unwrap();
            b.record(i % 4 != 0, t);
        }
        assert!(!b.is_open(t), "1 in 4 failing is under the ratio");
    }
}
