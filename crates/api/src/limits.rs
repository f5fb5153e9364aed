//! The API's bounds: per-user rate limit (429 with `Retry-After`), request timeout (503),
//! largest page of any list, longest wait (`Prefer: wait`, `?min_version`), and how long
//! idempotency keys are kept. The body limit is [`crate::ApiConfig::body_limit`].
//!
//! The rate limit is a token bucket per owner, in memory: each API process limits on its
//! own, so N processes behind a balancer allow up to N times the rate. Buckets are checked
//! once the caller is known ([`crate::caller`]), so anonymous endpoints are never limited.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::problem::Problem;

/// The API's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Requests per second each user may make, sustained (0: no limit).
    pub rate_limit: f64,
    /// Requests a user may make at once, above the sustained rate.
    pub rate_burst: u32,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Largest `limit` of any list (notes, sagas, search).
    pub max_page_size: i64,
    /// Longest wait of `Prefer: wait=N` and `?min_version=N`.
    pub max_wait: Duration,
    /// How long an idempotency key is kept after its first use (at least 24 hours is
    /// what clients are promised).
    pub idempotency_retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Generous: far above what a person or a well-behaved client sends, there to
            // stop a runaway one. Load generators run with a higher limit (or 0).
            rate_limit: 1000.0,
            rate_burst: 2000,
            request_timeout: Duration::from_secs(30),
            max_page_size: 100,
            max_wait: Duration::from_secs(10),
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl Limits {
    /// Why these limits cannot work together, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(self.rate_limit.is_finite() && self.rate_limit >= 0.0) {
            return Err("the rate limit must be a number of requests per second, 0 or more".into());
        }
        if self.rate_limit > 0.0 && self.rate_burst == 0 {
            return Err("the rate burst must be at least 1 when there is a rate limit".into());
        }
        if self.max_page_size < 1 {
            return Err("the maximum page size must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return Err("the request timeout must be longer than 0".into());
        }
        // A waited request must be answered by its wait running out, never by the timeout.
        if self.max_wait >= self.request_timeout {
            return Err(format!(
                "the maximum wait ({:?}) must be shorter than the request timeout ({:?})",
                self.max_wait, self.request_timeout
            ));
        }
        Ok(())
    }

    /// After how long an idempotency key's in-flight request counts as crashed: no
    /// request runs longer than the timeout, so twice that is never a live one.
    pub(crate) fn abandoned_after(&self) -> Duration {
        self.request_timeout * 2
    }
}

/// One user's tokens.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    fn take(&mut self, now: Instant, rate: f64, burst: u32) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    fn is_full(&self, now: Instant, rate: f64, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * rate >= f64::from(burst)
    }
}

/// Buckets kept before the full ones (users idle long enough to be back at the
/// burst, so forgetting them changes nothing) are dropped.
const BUCKETS_BEFORE_PRUNING: usize = 10_000;

/// Token buckets by owner.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            rate: limits.rate_limit,
            burst: limits.rate_burst,
            buckets: Mutex::default(),
        }
    }

    /// Lets `owner`'s request through, or answers 429 with `Retry-After`.
    pub(crate) fn check(&self, owner: &str) -> Result<(), Problem> {
        self.check_at(owner, Instant::now())
    }

    fn check_at(&self, owner: &str, now: Instant) -> Result<(), Problem> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let (rate, burst) = (self.rate, self.burst);
        let verdict = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if buckets.len() >= BUCKETS_BEFORE_PRUNING {
                buckets.retain(|_, bucket| !bucket.is_full(now, rate, burst));
            }
            buckets
                .entry(owner.to_owned())
                .or_insert_with(|| Bucket::full(burst, now))
                .take(now, rate, burst)
        };
        verdict.map_err(|wait| {
            // Whole seconds, rounded up: a client that waits that long gets a token.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            )
            .detail(format!(
                "more than {rate} requests per second (bursts of {burst}); retry in {seconds} s"
            ))
            .extension("retry_after", json!(seconds))
        })
    }
}

/// Answers a request that takes longer than the timeout with a 503 problem (the handler
/// is dropped; commands it sent stay sent, and their status URL tells what became of them).
pub(crate) async fn timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request-timeout",
            "Request timed out",
        )
        .detail(format!(
            "the request took longer than {} ms; retry (with the same Idempotency-Key for a command)",
            limit.as_millis()
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_the_burst_then_the_rate() {
        let limiter = RateLimiter::new(&Limits {
            rate_limit: 2.0,
            rate_burst: 3,
            ..Limits::default()
        });
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // (owner, ms since t0, allowed, Retry-After when refused)
        let table: [(&str, u64, bool, Option<u64>); 9] = [
            ("ann", 0, true, None),
            ("ann", 0, true, None),
            ("ann", 0, true, None),
            // The burst is spent; a token every 500 ms.
            ("ann", 0, false, Some(1)),
            ("bob", 0, true, None),
            ("ann", 499, false, Some(1)),
            ("ann", 500, true, None),
            ("ann", 600, false, Some(1)),
            // Idle long enough, the bucket is full again, never fuller.
            ("ann", 60_000, true, None),
        ];
        for (i, (owner, ms, allowed, retry)) in table.into_iter().enumerate() {
            let got = limiter.check_at(owner, at(ms));
            assert_eq!(got.is_ok(), allowed, "row {i}");
            if let Err(problem) = got {
                assert_eq!(problem.status, 429, "row {i}");
                let extensions = problem.extensions.expect("retry_after");
                assert_eq!(extensions["retry_after"].as_u64(), retry, "row {i}");
            }
        }
        for _ in 0..2 {
            assert!(limiter.check_at("ann", at(60_000)).is_ok());
        }
        assert!(limiter.check_at("ann", at(60_000)).is_err());
    }

    #[test]
    fn zero_rate_is_no_limit() {
        let limiter = RateLimiter::new(&Limits {
            rate_limit: 0.0,
            ..Limits::default()
        });
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.check_at("ann", now).is_ok()));
    }

    #[test]
    fn limits_that_cannot_work_are_refused() {
        let ok = Limits::default();
        assert_eq!(ok.check(), Ok(()));
        let bad = [
            Limits {
                rate_limit: -1.0,
                ..ok.clone()
            },
            Limits {
                rate_burst: 0,
                ..ok.clone()
            },
            Limits {
                max_page_size: 0,
                ..ok.clone()
            },
            Limits {
                max_wait: Duration::from_secs(30),
                ..ok
            },
        ];
        for limits in bad {
            assert!(limits.check().is_err(), "{limits:?}");
        }
    }
}
