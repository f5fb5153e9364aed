//! The one retry policy: exponential backoff with jitter on the `backoff` crate, bounded
//! by attempts and by elapsed time, so every retry in notesaga is visible here.

use std::{future::Future, time::Duration};

use backoff::{backoff::Backoff as _, ExponentialBackoff, ExponentialBackoffBuilder};

/// How often and how long to retry a transient failure.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial_interval: Duration,
    /// Longest delay between two attempts.
    pub max_interval: Duration,
    /// Growth factor of the delay.
    pub multiplier: f64,
    /// Jitter: each delay is randomised by ± this fraction.
    pub randomization_factor: f64,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            multiplier: 2.0,
            randomization_factor: 0.2,
            max_attempts: 5,
            max_elapsed: Duration::from_secs(60),
        }
    }
}

/// What an attempt reports: try again, or stop.
#[derive(Debug)]
pub enum Attempt<E> {
    /// Worth another attempt (after `after`, when the other side said so).
    Transient {
        /// The failure.
        error: E,
        /// A delay the other side asked for (e.g. `Retry-After`).
        after: Option<Duration>,
    },
    /// Retrying cannot help.
    Permanent(E),
}

impl RetryPolicy {
    /// The exponential backoff this policy describes.
    pub fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial_interval)
            .with_max_interval(self.max_interval)
            .with_multiplier(self.multiplier)
            .with_randomization_factor(self.randomization_factor)
            .with_max_elapsed_time(Some(self.max_elapsed))
            .build()
    }

    /// A fresh schedule for one operation, for loops that cannot be a closure.
    pub fn schedule(&self) -> RetrySchedule {
        RetrySchedule {
            backoff: self.backoff(),
            attempt: 1,
            max_attempts: self.max_attempts,
        }
    }

    /// Runs `operation` until it succeeds, fails permanently, or the policy is spent;
    /// returns the last error then. `operation` gets the attempt number (1-based).
    pub async fn run<T, E, F, Fut>(&self, mut operation: F) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Attempt<E>>>,
    {
        let mut schedule = self.schedule();
        loop {
            match operation(schedule.attempt()).await {
                Ok(value) => return Ok(value),
                Err(Attempt::Permanent(error)) => return Err(error),
                Err(Attempt::Transient { error, after }) => {
                    let Some(delay) = schedule.next_delay(after) else {
                        return Err(error);
                    };
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// The state of one operation's retries.
#[derive(Debug)]
pub struct RetrySchedule {
    backoff: ExponentialBackoff,
    attempt: u32,
    max_attempts: u32,
}

impl RetrySchedule {
    /// The attempt about to run or running (1-based).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// After a transient failure: how long to wait before the next attempt, or `None`
    /// when the budget is spent. `asked` is a delay the other side requested; the wait
    /// is never shorter than it.
    pub fn next_delay(&mut self, asked: Option<Duration>) -> Option<Duration> {
        let delay = self.backoff.next_backoff()?;
        if self.attempt >= self.max_attempts {
            return None;
        }
        self.attempt += 1;
        Some(asked.map_or(delay, |asked| asked.max(delay)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            initial_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(2),
            max_attempts,
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_until_success() {
        let result: Result<u32, &str> = quick(5)
            .run(|attempt| async move {
                if attempt < 3 {
                    Err(Attempt::Transient {
                        error: "flaky",
                        after: None,
                    })
                } else {
                    Ok(attempt)
                }
            })
            .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test]
    async fn stops_at_the_attempt_budget() {
        let mut seen = 0;
        let result: Result<(), &str> = quick(4)
            .run(|_| {
                seen += 1;
                async {
                    Err(Attempt::Transient {
                        error: "down",
                        after: None,
                    })
                }
            })
            .await;
        assert_eq!((result, seen), (Err("down"), 4));
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let mut seen = 0;
        let result: Result<(), &str> = quick(4)
            .run(|_| {
                seen += 1;
                async { Err(Attempt::Permanent("bad input")) }
            })
            .await;
        assert_eq!((result, seen), (Err("bad input"), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_a_requested_delay() {
        let started = tokio::time::Instant::now();
        let _: Result<(), &str> = quick(2)
            .run(|_| async {
                Err(Attempt::Transient {
                    error: "busy",
                    after: Some(Duration::from_secs(7)),
                })
            })
            .await;
        assert!(started.elapsed() >= Duration::from_secs(7));
    }
}
