//! Embedding providers, chosen by configuration (`NOTESAGA_EMBEDDING_PROVIDER`):
//! all-MiniLM-L6-v2 in process ([`MiniLm`]), the hash [`BuiltinEmbedder`] and any
//! OpenAI-compatible `POST /v1/embeddings` server (OpenAI, Ollama, vLLM, TEI). [`Resilient`] wraps either with the machinery every
//! provider shares (`notesaga_log::provider`): the retry policy, a circuit breaker, a
//! concurrency limit and one classification of HTTP failures.

use std::{sync::Arc, time::Duration};

pub use notesaga_log::provider::{Failed, ProviderError};
use notesaga_log::{
    breaker::BreakerConfig,
    provider::{self, Resilience},
    RetryPolicy,
};
use serde::Deserialize;

use crate::{hash::BuiltinEmbedder, minilm::MiniLm};

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
        const WHAT: &str = "embedding provider";
        let mut request = self
            .client
            .post(format!("{}/v1/embeddings", self.url))
            .json(&serde_json::json!({"model": self.model, "input": text}));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = provider::send(WHAT, request).await?;
        let body: EmbeddingsResponse = response.json().await.map_err(|err| {
            if err.is_decode() {
                ProviderError::retryable(format!("unreadable embeddings answer: {err}"))
            } else {
                provider::transport(WHAT, &err)
            }
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
    /// all-MiniLM-L6-v2, in process (shared: one copy of the weights per process).
    MiniLm(Arc<MiniLm>),
    /// An OpenAI-compatible server.
    OpenAi(OpenAiEmbedder),
}

impl Provider {
    /// The model name written on `EmbeddingGenerated`.
    pub fn model(&self) -> &str {
        match self {
            Self::Builtin(e) => e.model(),
            Self::MiniLm(e) => e.model(),
            Self::OpenAi(e) => &e.model,
        }
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, ProviderError> {
        match self {
            Self::Builtin(e) => Ok(e.embed(text)),
            // Tens of milliseconds of CPU per window: off the async workers.
            Self::MiniLm(e) => {
                let (model, text) = (Arc::clone(e), text.to_owned());
                tokio::task::spawn_blocking(move || model.embed(&text))
                    .await
                    .map_err(|err| ProviderError::retryable(format!("model task: {err}")))?
                    .map_err(|err| ProviderError::Permanent(err.to_string()))
            }
            Self::OpenAi(e) => e.embed(text).await,
        }
    }
}

/// A provider behind the retry policy, a circuit breaker and a concurrency limit (the
/// shared [`Resilience`]).
#[derive(Debug, Clone)]
pub struct Resilient {
    provider: Provider,
    resilience: Resilience,
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
            resilience: Resilience::new("embedding", retry, breaker, concurrency),
        }
    }

    /// The model name.
    pub fn model(&self) -> &str {
        self.provider.model()
    }

    /// Another provider behind this one's retry policy, circuit breaker and concurrency
    /// limit (shared, not copied): the embedding role's second model (a re-embedding)
    /// takes turns with the first instead of doubling the load.
    pub fn with_provider(&self, provider: Provider) -> Self {
        Self {
            provider,
            resilience: self.resilience.clone(),
        }
    }

    /// Embeds `text`, retrying transient failures within the policy's budget.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, Failed> {
        if text.trim().is_empty() {
            return Err(Failed::permanent("text is empty"));
        }
        self.resilience.run(|_| self.provider.embed(text)).await
    }
}
