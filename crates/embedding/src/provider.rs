//! Embedding providers, chosen by configuration (`NOTESAGA_EMBEDDING_PROVIDER`):
//! the [`BuiltinEmbedder`] and any OpenAI-compatible `POST /v1/embeddings` server
//! (OpenAI, Ollama, vLLM, TEI). [`Resilient`] wraps either with the retry policy, a
//! circuit breaker and a concurrency limit.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use notesaga_log::{
    breaker::{BreakerConfig, CircuitBreaker},
    retry::Attempt,
    RetryPolicy,
};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::embedder::BuiltinEmbedder;

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Timeouts, connection errors, HTTP 5xx and 429: another attempt may succeed.
    #[error("{reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// The delay the server asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// HTTP 4xx other than 429, invalid input or answer: retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

/// An OpenAI-compatible embeddings server.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingData>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingData {
    embedding: Vec<f32>,
}

/// Reads a `Retry-After` header given in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl OpenAiEmbedder {
    /// A client of `{url}/v1/embeddings` for `model`, each request bounded by `timeout`.
    pub fn new(url: &str, model: &str, api_key: Option<String>, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a plain HTTP client builds");
        Self {
            client,
            url: url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            api_key,
        }
    }

    /// One request, classified.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, ProviderError> {
        let mut request = self
            .client
            .post(format!("{}/v1/embeddings", self.url))
            .json(&serde_json::json!({"model": self.model, "input": text}));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|err| ProviderError::Retryable {
                reason: if err.is_timeout() {
                    format!("embedding provider timed out: {err}")
                } else {
                    format!("embedding provider unreachable: {err}")
                },
                retry_after: None,
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(ProviderError::Retryable {
                reason: format!("embedding provider answered {status}"),
                retry_after: retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ProviderError::Permanent(format!(
                "embedding provider refused the request ({status}): {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        let body: EmbeddingsResponse =
            response
                .json()
                .await
                .map_err(|err| ProviderError::Retryable {
                    reason: format!("unreadable embeddings answer: {err}"),
                    retry_after: None,
                })?;
        body.data
            .into_iter()
            .next()
            .map(|d| d.embedding)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ProviderError::Permanent("embeddings answer holds no vector".into()))
    }
}

/// The configured provider.
#[derive(Debug, Clone)]
pub enum Provider {
    /// The deterministic, lexical built-in embedder.
    Builtin(BuiltinEmbedder),
    /// An OpenAI-compatible server.
    OpenAi(OpenAiEmbedder),
}

impl Provider {
    /// The model name written on `EmbeddingGenerated`.
    pub fn model(&self) -> &str {
        match self {
            Self::Builtin(e) => e.model(),
            Self::OpenAi(e) => &e.model,
        }
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, ProviderError> {
        match self {
            Self::Builtin(e) => Ok(e.embed(text)),
            Self::OpenAi(e) => e.embed(text).await,
        }
    }
}

/// A provider behind the retry policy, a circuit breaker and a concurrency limit.
#[derive(Debug, Clone)]
pub struct Resilient {
    provider: Provider,
    retry: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
    limit: Arc<Semaphore>,
}

/// A failure after the policy gave up: whether a later attempt may succeed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Whether a new attempt (a new command) may succeed.
    pub retryable: bool,
    /// What went wrong, last attempt first.
    pub reason: String,
}

impl Resilient {
    /// Wraps `provider`; at most `concurrency` calls run at once.
    pub fn new(
        provider: Provider,
        retry: RetryPolicy,
        breaker: BreakerConfig,
        concurrency: usize,
    ) -> Self {
        Self {
            provider,
            retry,
            breaker: Arc::new(CircuitBreaker::new(breaker)),
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// The model name.
    pub fn model(&self) -> &str {
        self.provider.model()
    }

    /// Embeds `text`, retrying transient failures within the policy's budget.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, Failed> {
        if text.trim().is_empty() {
            return Err(Failed {
                retryable: false,
                reason: "text is empty".into(),
            });
        }
        let _permit = self
            .limit
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.retry
            .run(|attempt| async move {
                if let Err(open) = self.breaker.allow(Instant::now()) {
                    // Fail fast; the wait the breaker asks for counts as a retry delay.
                    return Err(Attempt::Transient {
                        error: Failed {
                            retryable: true,
                            reason: open.to_string(),
                        },
                        after: Some(open.retry_in),
                    });
                }
                let result = self.provider.embed(text).await;
                self.breaker.record(
                    !matches!(result, Err(ProviderError::Retryable { .. })),
                    Instant::now(),
                );
                match result {
                    Ok(vector) => Ok(vector),
                    Err(ProviderError::Permanent(reason)) => Err(Attempt::Permanent(Failed {
                        retryable: false,
                        reason,
                    })),
                    Err(ProviderError::Retryable {
                        reason,
                        retry_after,
                    }) => {
                        tracing::warn!(attempt, %reason, "embedding attempt failed");
                        Err(Attempt::Transient {
                            error: Failed {
                                retryable: true,
                                reason: format!("{reason} (attempt {attempt})"),
                            },
                            after: retry_after,
                        })
                    }
                }
            })
            .await
    }
}
