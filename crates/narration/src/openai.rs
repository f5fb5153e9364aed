//! Any OpenAI-compatible speech server (`POST /v1/audio/speech`: OpenAI, openedai-speech,
//! Kokoro-FastAPI, LocalAI), asked for WAV.

use std::time::Duration;

use notesaga_log::provider::{self, ProviderError};

const WHAT: &str = "speech provider";

/// How long one request may take: a fixed part for the round trip and the model's
/// start-up, and a part per character, since a server speaks a long chunk for longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkTimeout {
    /// Allowed for any request.
    pub base: Duration,
    /// Added per character of the chunk's text.
    pub per_char: Duration,
}

impl Default for ChunkTimeout {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            per_char: Duration::from_millis(20),
        }
    }
}

impl ChunkTimeout {
    /// The timeout of a request speaking `text`.
    pub fn for_text(&self, text: &str) -> Duration {
        let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
        self.base
            .saturating_add(self.per_char.saturating_mul(chars))
    }
}

/// A client of `{url}/v1/audio/speech`.
#[derive(Debug, Clone)]
pub struct OpenAiSpeech {
    client: reqwest::Client,
    url: String,
    model: String,
    voice: String,
    api_key: Option<String>,
    timeout: ChunkTimeout,
}

impl OpenAiSpeech {
    /// A client of the server at `url` (`/v1/audio/speech` is appended) speaking with
    /// `model` and `voice`, authenticated with `api_key` as a bearer token if given.
    pub fn new(
        url: &str,
        model: &str,
        voice: &str,
        api_key: Option<String>,
        timeout: ChunkTimeout,
    ) -> Self {
        let client = reqwest::Client::builder()
            // A server that does not even accept the connection is down; the per-request
            // timeout (which grows with the text) is for speaking, not for that.
            .connect_timeout(Duration::from_secs(10).min(timeout.base))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            client,
            url: url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            voice: voice.to_owned(),
            api_key,
            timeout,
        }
    }

    /// The model spoken with.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// One request: `text` (one chunk) spoken into the bytes of a WAV file, classified
    /// on failure.
    pub async fn speak(&self, text: &str) -> Result<Vec<u8>, ProviderError> {
        let mut request = self
            .client
            .post(format!("{}/v1/audio/speech", self.url))
            .timeout(self.timeout.for_text(text))
            .json(&serde_json::json!({
                "model": self.model,
                "input": text,
                "voice": self.voice,
                "response_format": "wav",
            }));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = provider::send(WHAT, request).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|err| provider::transport(WHAT, &err))?;
        // A server that answers something other than WAV (it ignored response_format)
        // will answer the same next time.
        crate::wav::data_chunk(&bytes, bytes.len() as u64).map_err(|err| {
            ProviderError::Permanent(format!(
                "{WHAT} answered {} bytes that are no WAV ({err}); does it support response_format \"wav\"?",
                bytes.len()
            ))
        })?;
        Ok(bytes.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_grows_with_the_chunk() {
        let timeout = ChunkTimeout {
            base: Duration::from_secs(5),
            per_char: Duration::from_millis(10),
        };
        assert_eq!(timeout.for_text(""), Duration::from_secs(5));
        assert_eq!(
            timeout.for_text(&"é".repeat(1_000)),
            Duration::from_secs(15)
        );
    }
}
