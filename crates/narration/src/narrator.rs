//! The configured speech engine (`NOTESAGA_NARRATION_PROVIDER`) behind the shared
//! provider machinery, rendering a note's text chunk by chunk into one WAV file.
//!
//! Every chunk is one call under the command's single retry [`Budget`], so a failure in
//! the tenth chunk retries that chunk only. The budget's span grows with the text
//! ([`RenderBudget`]) the way the saga's narration deadline does, and its defaults end
//! at half that deadline, so a failing narration replies (with its reason) long before
//! the saga would give up on it. The chunks' audio is appended to the file as it
//! arrives; they must share one format, and a change of format is a permanent failure
//! (a server mixing sample rates will mix them again).
//!
//! [`Budget`]: notesaga_log::provider::Budget

use std::{path::Path, time::Duration};

use notesaga_log::{
    breaker::BreakerConfig,
    provider::{Failed, ProviderError, Resilience},
    RetryPolicy,
};

use crate::{
    openai::OpenAiSpeech,
    silent::Silent,
    speech::{Espeak, CHUNK_BYTES},
    wav::{WavInfo, WavWriter},
};

/// A speech engine: text (one chunk) in, the bytes of a WAV file out.
#[derive(Debug, Clone)]
pub enum SpeechEngine {
    /// espeak-ng, locally.
    Espeak(Espeak),
    /// An OpenAI-compatible server.
    OpenAi(OpenAiSpeech),
    /// Silence at once (benchmarks only: isolates the orchestration overhead).
    Silent(Silent),
}

impl SpeechEngine {
    async fn speak(&self, text: &str) -> Result<Vec<u8>, ProviderError> {
        match self {
            Self::Espeak(engine) => Ok(engine.speak(text).await?),
            Self::OpenAi(engine) => engine.speak(text).await,
            Self::Silent(engine) => Ok(engine.speak(text)),
        }
    }
}

/// How long retrying may go on for one narration, from its start: a fixed part and a
/// part per started 1,000 bytes of text (the unit of the saga's narration deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderBudget {
    /// For any text.
    pub base: Duration,
    /// Added per started 1,000 bytes of text.
    pub per_kb: Duration,
}

impl Default for RenderBudget {
    /// Half the saga's default narration deadline (60 s + 10 s per KB).
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            per_kb: Duration::from_secs(5),
        }
    }
}

impl RenderBudget {
    /// The budget of narrating `text`.
    pub fn for_text(&self, text: &str) -> Duration {
        let kilobytes = u32::try_from(text.len().div_ceil(1000)).unwrap_or(u32::MAX);
        self.base
            .saturating_add(self.per_kb.saturating_mul(kilobytes))
    }
}

/// A speech engine behind retries, a circuit breaker and a concurrency limit.
#[derive(Debug, Clone)]
pub struct Narrator {
    engine: SpeechEngine,
    resilience: Resilience,
    budget: RenderBudget,
}

impl Narrator {
    /// `engine` under `retry` (its delays and attempts; the time allowed is `budget`,
    /// per text, not the policy's `max_elapsed`), `breaker`, and at most `concurrency`
    /// engine calls at once.
    pub fn new(
        engine: SpeechEngine,
        retry: RetryPolicy,
        budget: RenderBudget,
        breaker: BreakerConfig,
        concurrency: usize,
    ) -> Self {
        Self {
            engine,
            resilience: Resilience::new("narration", retry, breaker, concurrency),
            budget,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &SpeechEngine {
        &self.engine
    }

    /// Speaks `text` into one WAV file at `out` and returns its facts. On failure `out`
    /// may hold part of the audio: the caller renders into a staging file it discards.
    pub async fn render(&self, text: &str, out: &Path) -> Result<WavInfo, Failed> {
        let chunks = crate::chunks::split(text, CHUNK_BYTES);
        if chunks.is_empty() {
            return Err(Failed::permanent("there is nothing to say"));
        }
        let join = |err: crate::wav::JoinError| Failed {
            retryable: err.retryable(),
            reason: err.to_string(),
        };
        let mut writer = WavWriter::create(out)
            .await
            .map_err(|err| Failed::transient(format!("cannot create the audio file: {err}")))?;
        let mut budget = self.resilience.budget_of(self.budget.for_text(text));
        for (index, chunk) in chunks.iter().enumerate() {
            let audio = self
                .resilience
                .call(&mut budget, |_| self.engine.speak(chunk))
                .await
                .map_err(|failed| Failed {
                    reason: format!("chunk {} of {}: {}", index + 1, chunks.len(), failed.reason),
                    ..failed
                })?;
            writer.append(&audio).await.map_err(|err| Failed {
                reason: format!("chunk {} of {}: {}", index + 1, chunks.len(), err),
                ..join(err)
            })?;
            tracing::debug!(
                chunk = index + 1,
                of = chunks.len(),
                bytes = audio.len(),
                "chunk spoken"
            );
        }
        writer.finish().await.map_err(join)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_budget_grows_per_started_kilobyte() {
        let budget = RenderBudget::default();
        assert_eq!(budget.for_text(""), Duration::from_secs(30));
        assert_eq!(budget.for_text("a"), Duration::from_secs(35));
        assert_eq!(budget.for_text(&"a".repeat(1_000)), Duration::from_secs(35));
        assert_eq!(budget.for_text(&"a".repeat(1_001)), Duration::from_secs(40));
    }

    /// Needs espeak-ng (installed by `make deps`): a text of several chunks becomes one
    /// valid WAV holding exactly the audio of its chunks spoken one by one.
    #[tokio::test]
    async fn espeak_speaks_a_long_text_into_one_wav_of_all_its_chunks() {
        let espeak = Espeak::default();
        let narrator = Narrator::new(
            SpeechEngine::Espeak(espeak.clone()),
            RetryPolicy {
                initial_interval: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
            RenderBudget::default(),
            BreakerConfig::default(),
            2,
        );
        let text = "The cell is the unit of life. ".repeat(200);
        let chunks = crate::chunks::split(&text, CHUNK_BYTES);
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("long.wav");
        let info = narrator.render(&text, &out).await.unwrap();

        let mut expected = 0;
        for chunk in &chunks {
            let piece = espeak.speak(chunk).await.unwrap();
            expected += crate::wav::parse(&piece, piece.len() as u64)
                .unwrap()
                .data_bytes;
        }
        let bytes = std::fs::read(&out).unwrap();
        let read = crate::wav::parse(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(read, info);
        assert_eq!(info.data_bytes, expected, "the sum of the chunks");
        assert_eq!(bytes.len() as u64, 44 + expected);
        assert_eq!(
            u64::from(u32::from_le_bytes(bytes[40..44].try_into().unwrap())),
            expected,
            "the header states the real size, not a streaming placeholder"
        );
        assert!(info.duration_ms() > 60_000, "{} ms", info.duration_ms());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no chunk files left behind"
        );
    }
}
