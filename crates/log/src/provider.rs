//! Calling an external provider (an embedding server, a speech engine) the same way
//! everywhere: every failure is classified as worth another attempt or not
//! ([`ProviderError`]), and [`Resilience`] runs the calls under the one [`RetryPolicy`],
//! a [`CircuitBreaker`] and a concurrency limit, ending in a [`Failed`] the processor
//! turns into its failure reply.
//!
//! HTTP providers share the classification in [`send`] and [`transport`]: timeouts,
//! connection errors, 5xx and 429 (with its `Retry-After`) may pass; any other 4xx,
//! and an answer the provider should never have given, will not.
//!
//! A [`Budget`] is the retry allowance of one command: attempts and a span of time from
//! the command's start. A command that makes several calls (a long narration is spoken
//! chunk by chunk) spends one budget across all of them. A call's first attempt is
//! progress and runs for as long as the provider's own timeout allows; a *retry* never
//! runs past the budget, so a failing command replies within its budget and the caller
//! (a saga with a deadline) hears why instead of timing out.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use crate::{
    breaker::{BreakerConfig, CircuitBreaker},
    retry::RetrySchedule,
    RetryPolicy,
};

/// Why one call to a provider failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Timeouts, connection errors, HTTP 5xx and 429: another attempt may succeed.
    #[error("{reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// The delay the provider asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// HTTP 4xx other than 429, invalid input or answer: retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

impl ProviderError {
    /// A failure another attempt may get past, with no delay asked for.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// A failure after the policy gave up: whether a later attempt (a new command) may
/// succeed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Whether a new attempt (a new command) may succeed.
    pub retryable: bool,
    /// What went wrong on the last attempt.
    pub reason: String,
}

impl Failed {
    /// A failure no retry can fix.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            retryable: false,
            reason: reason.into(),
        }
    }

    /// A failure a later command may get past.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            retryable: true,
            reason: reason.into(),
        }
    }
}

/// Reads a `Retry-After` header: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    // A date in the past asks for no delay at all.
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Classifies a failure of the HTTP exchange itself (no status to judge by). `what`
/// names the provider in the reason, e.g. `speech provider`.
pub fn transport(what: &str, err: &reqwest::Error) -> ProviderError {
    if err.is_builder() {
        // A malformed URL or header: the configuration is wrong, not the provider.
        return ProviderError::Permanent(format!("{what}: cannot build the request: {err}"));
    }
    let reason = if err.is_timeout() {
        format!("{what} timed out: {err}")
    } else if err.is_connect() {
        format!("{what} unreachable: {err}")
    } else {
        format!("{what} failed: {err}")
    };
    ProviderError::retryable(reason)
}

/// Sends `request` and returns the response if its status is a success; otherwise the
/// failure, classified: 429 and 5xx retryable (with `Retry-After`), other statuses not
/// (with the start of the body, which usually says what was wrong with the request).
pub async fn send(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let response = request.send().await.map_err(|err| transport(what, &err))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(ProviderError::Retryable {
            reason: format!("{what} answered {status}"),
            retry_after: retry_after(response.headers()),
        });
    }
    let body = response.text().await.unwrap_or_default();
    Err(ProviderError::Permanent(format!(
        "{what} refused the request ({status}): {}",
        body.chars().take(300).collect::<String>()
    )))
}

/// The retry allowance of one command: attempts and elapsed time, per the policy.
#[derive(Debug)]
pub struct Budget {
    schedule: RetrySchedule,
    started: Instant,
    max_elapsed: Duration,
}

impl Budget {
    /// The attempt about to run (1-based, counted across every call of the command).
    pub fn attempt(&self) -> u32 {
        self.schedule.attempt()
    }
}

/// Retries under the policy, a circuit breaker and a concurrency limit, shared by every
/// clone (one per provider, however many consumer loops use it).
#[derive(Debug, Clone)]
pub struct Resilience {
    name: &'static str,
    retry: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
    limit: Arc<Semaphore>,
}

/// Records a call's outcome with the breaker, also when the call is dropped half way:
/// a half-open breaker waits for its probe's outcome, and a probe that never reports
/// would keep it half-open (refusing every call) for good.
struct Outcome<'a> {
    breaker: &'a CircuitBreaker,
    recorded: bool,
}

impl Outcome<'_> {
    fn record(mut self, healthy: bool) {
        self.breaker.record(healthy, Instant::now());
        self.recorded = true;
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.record(false, Instant::now());
        }
    }
}

impl Resilience {
    /// `name` labels the logs; at most `concurrency` calls are in flight at once.
    pub fn new(
        name: &'static str,
        retry: RetryPolicy,
        breaker: BreakerConfig,
        concurrency: usize,
    ) -> Self {
        // The series exist from the start, so dashboards and alerts see them at 0.
        metrics::gauge!(crate::telemetry::BREAKER_OPEN, "provider" => name).set(0.0);
        metrics::counter!(crate::telemetry::PROVIDER_ERRORS_TOTAL, "provider" => name, "kind" => "retryable")
            .increment(0);
        Self {
            name,
            retry,
            breaker: Arc::new(CircuitBreaker::new(breaker)),
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Reports a call's failure (`kind`, none for a success) and the breaker's state
    /// after it ([`crate::telemetry::BREAKER_OPEN`], [`crate::telemetry::PROVIDER_ERRORS_TOTAL`]).
    fn observe(&self, failure: Option<&'static str>) {
        if let Some(kind) = failure {
            metrics::counter!(crate::telemetry::PROVIDER_ERRORS_TOTAL, "provider" => self.name, "kind" => kind)
                .increment(1);
        }
        let open = self.breaker.is_open(Instant::now());
        metrics::gauge!(crate::telemetry::BREAKER_OPEN, "provider" => self.name).set(if open {
            1.0
        } else {
            0.0
        });
    }

    /// A fresh allowance for one command, of the policy's attempts and elapsed time;
    /// its clock starts now.
    pub fn budget(&self) -> Budget {
        self.budget_of(self.retry.max_elapsed)
    }

    /// A fresh allowance of the policy's attempts within `max_elapsed` (for commands
    /// whose deadline depends on their size); its clock starts now.
    pub fn budget_of(&self, max_elapsed: Duration) -> Budget {
        let policy = RetryPolicy {
            max_elapsed,
            ..self.retry.clone()
        };
        Budget {
            schedule: policy.schedule(),
            started: Instant::now(),
            max_elapsed,
        }
    }

    /// One call with a budget of its own.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, Failed>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        self.call(&mut self.budget(), operation).await
    }

    /// Runs `operation` until it succeeds, fails permanently, or `budget` is spent.
    /// `operation` gets the attempt number; each attempt holds a concurrency permit
    /// only while it runs, not while it waits to retry. Retries (not the first attempt)
    /// are cut off when the budget ends.
    pub async fn call<T, F, Fut>(&self, budget: &mut Budget, mut operation: F) -> Result<T, Failed>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut retrying = false;
        loop {
            let attempt = budget.attempt();
            let (failed, asked) = match self.breaker.allow(Instant::now()) {
                // Fail fast; the wait the breaker asks for counts as a retry delay.
                Err(open) => {
                    self.observe(Some("refused"));
                    (Failed::transient(open.to_string()), Some(open.retry_in))
                }
                Ok(()) => {
                    let outcome = Outcome {
                        breaker: &self.breaker,
                        recorded: false,
                    };
                    let result = {
                        let _permit = self
                            .limit
                            .acquire()
                            .await
                            .expect("the semaphore is never closed");
                        let left = budget.max_elapsed.saturating_sub(budget.started.elapsed());
                        if retrying {
                            tokio::time::timeout(left, operation(attempt))
                                .await
                                .unwrap_or_else(|_| {
                                    Err(ProviderError::retryable(format!(
                                        "{} provider timed out: no answer before the retry budget of {:?} ran out",
                                        self.name, budget.max_elapsed
                                    )))
                                })
                        } else {
                            operation(attempt).await
                        }
                    };
                    // A permanent failure is the provider answering: it is up.
                    outcome.record(!matches!(result, Err(ProviderError::Retryable { .. })));
                    self.observe(match &result {
                        Ok(_) => None,
                        Err(ProviderError::Retryable { .. }) => Some("retryable"),
                        Err(ProviderError::Permanent(_)) => Some("permanent"),
                    });
                    match result {
                        Ok(value) => return Ok(value),
                        Err(ProviderError::Permanent(reason)) => {
                            return Err(Failed::permanent(reason))
                        }
                        Err(ProviderError::Retryable {
                            reason,
                            retry_after,
                        }) => {
                            tracing::warn!(provider = self.name, attempt, %reason, "provider attempt failed");
                            (
                                Failed::transient(format!("{reason} (attempt {attempt})")),
                                retry_after,
                            )
                        }
                    }
                }
            };
            retrying = true;
            let Some(delay) = budget.schedule.next_delay(asked) else {
                return Err(failed);
            };
            // A delay the provider asked for may reach past the budget; waiting it out
            // would only make the reply late, so give up now (retryably).
            if budget.started.elapsed() + delay > budget.max_elapsed {
                return Err(Failed::transient(format!(
                    "{}; retry budget of {:?} spent",
                    failed.reason, budget.max_elapsed
                )));
            }
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn resilience(attempts: u32, max_elapsed: Duration, breaker: BreakerConfig) -> Resilience {
        Resilience::new(
            "test",
            RetryPolicy {
                initial_interval: Duration::from_millis(1),
                max_interval: Duration::from_millis(2),
                max_attempts: attempts,
                max_elapsed,
                ..RetryPolicy::default()
            },
            breaker,
            1,
        )
    }

    fn lenient() -> BreakerConfig {
        BreakerConfig {
            window: 100,
            min_calls: 100,
            ..BreakerConfig::default()
        }
    }

    #[tokio::test]
    async fn one_budget_spans_the_calls_of_a_command() {
        let r = resilience(3, Duration::from_secs(10), lenient());
        let mut budget = r.budget();
        let calls = AtomicU32::new(0);
        // Two failures in the first call, one more in the second: the budget of three
        // attempts is spent across both, so the second call fails.
        let flaky = |failures: u32| {
            let calls = &calls;
            move |_| async move {
                if calls.fetch_add(1, Ordering::SeqCst) < failures {
                    Err(ProviderError::retryable("flaky"))
                } else {
                    Ok(())
                }
            }
        };
        r.call(&mut budget, flaky(2)).await.unwrap();
        calls.store(0, Ordering::SeqCst);
        let failed = r.call(&mut budget, flaky(1)).await.unwrap_err();
        assert!(failed.retryable);
        assert!(failed.reason.contains("attempt 3"), "{failed:?}");
    }

    #[tokio::test]
    async fn permanent_failures_end_at_once() {
        let r = resilience(5, Duration::from_secs(10), lenient());
        let calls = AtomicU32::new(0);
        let failed = r
            .run(|_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ProviderError::Permanent("bad request".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(failed, Failed::permanent("bad request"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_budget_gives_up_instead_of_waiting() {
        let r = resilience(5, Duration::from_secs(2), lenient());
        let started = Instant::now();
        let failed = r
            .run(|_| async {
                Err::<(), _>(ProviderError::Retryable {
                    reason: "busy".into(),
                    retry_after: Some(Duration::from_secs(3600)),
                })
            })
            .await
            .unwrap_err();
        assert!(failed.retryable);
        assert!(failed.reason.contains("budget"), "{failed:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_retry_ends_with_the_budget_but_a_first_attempt_may_outlast_it() {
        let r = resilience(5, Duration::from_millis(300), lenient());
        // Progress is not cut short: the first attempt outlives the budget...
        let slow = r.run(|_| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, ProviderError>(1)
        });
        assert_eq!(slow.await, Ok(1));
        // ...but a retry is: it hangs, and the call ends when the budget does.
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let hanging_retry = r.run(|_| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err(ProviderError::retryable("blip"))
                } else {
                    std::future::pending::<Result<(), ProviderError>>().await
                }
            }
        });
        let failed = tokio::time::timeout(Duration::from_secs(5), hanging_retry)
            .await
            .expect("the budget ends the retry")
            .unwrap_err();
        assert!(failed.retryable);
        assert!(failed.reason.contains("retry budget"), "{failed:?}");
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_probe_dropped_half_way_does_not_wedge_the_breaker() {
        let r = resilience(
            1,
            Duration::from_secs(10),
            BreakerConfig {
                window: 1,
                min_calls: 1,
                failure_ratio: 1.0,
                open_for: Duration::from_millis(20),
            },
        );
        assert!(r
            .run(|_| async { Err::<(), _>(ProviderError::retryable("down")) })
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The half-open probe is abandoned mid-call (its caller went away).
        let probe = r.run(|_| std::future::pending::<Result<(), ProviderError>>());
        assert!(tokio::time::timeout(Duration::from_millis(20), probe)
            .await
            .is_err());
        // It counted as a failure: the breaker opened again, and probes after the pause.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(r.run(|_| async { Ok::<_, ProviderError>(7) }).await, Ok(7));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(reqwest::header::RETRY_AFTER, later.parse().unwrap());
        let asked = retry_after(&headers).unwrap();
        assert!(asked > Duration::from_secs(100) && asked <= Duration::from_secs(120));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
