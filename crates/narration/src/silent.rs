//! `silent`: a benchmark engine that renders silence at once. It isolates the
//! orchestration overhead (topics, saga, stores) from the cost of speech synthesis; it
//! is never the default and never meant for users.
//!
//! Each chunk becomes a valid PCM WAV of zeros as long as the chunk would take to read
//! aloud at [`Silent::words_per_minute`], so `duration_ms` and the audio file's size are
//! plausible, and it goes through the same [`Narrator`](crate::Narrator) path (chunks,
//! joined file, blob store) as the real engines.

use crate::wav::{pcm_header, WavInfo, PCM};

/// Silence of the length the text would take to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silent {
    /// Speaking rate the duration is estimated with.
    pub words_per_minute: u32,
    /// Samples per second of the audio (16-bit mono).
    pub sample_rate: u32,
}

impl Default for Silent {
    /// 150 words per minute, 8 kHz 16-bit mono (16,000 bytes of audio per second).
    fn default() -> Self {
        Self {
            words_per_minute: 150,
            sample_rate: 8_000,
        }
    }
}

impl Silent {
    /// Milliseconds `text` takes to say at the configured rate (at least one word's).
    pub fn duration_ms(&self, text: &str) -> u64 {
        let words = text.split_whitespace().count().max(1) as u64;
        words * 60_000 / u64::from(self.words_per_minute.max(1))
    }

    /// The bytes of a WAV file holding [`Self::duration_ms`] of silence.
    pub fn speak(&self, text: &str) -> Vec<u8> {
        let info = WavInfo {
            encoding: PCM,
            sample_rate: self.sample_rate,
            channels: 1,
            bits_per_sample: 16,
            data_bytes: 0,
        };
        let samples = u64::from(self.sample_rate) * self.duration_ms(text) / 1000;
        let data_bytes = samples * 2;
        let mut bytes = Vec::with_capacity(44 + data_bytes as usize);
        bytes.extend_from_slice(&pcm_header(&info, data_bytes));
        bytes.resize(44 + data_bytes as usize, 0);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_lasts_as_long_as_the_words_take_to_say() {
        let silent = Silent::default();
        let text = "word ".repeat(300);
        assert_eq!(silent.duration_ms(&text), 120_000);
        let bytes = silent.speak(&text);
        let info = crate::wav::parse(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(info.encoding, PCM);
        assert_eq!(info.duration_ms(), 120_000);
        assert_eq!(bytes.len(), 44 + 120 * 16_000);
        assert!(bytes[44..].iter().all(|b| *b == 0), "silence");
    }

    #[test]
    fn a_single_word_still_plays() {
        assert_eq!(Silent::default().duration_ms("hi"), 400);
        assert_eq!(Silent::default().duration_ms(""), 400);
    }

    #[tokio::test]
    async fn the_narrator_joins_silent_chunks_into_one_file() {
        use std::time::Duration;

        use notesaga_log::{breaker::BreakerConfig, RetryPolicy};

        use crate::{Narrator, RenderBudget, SpeechEngine};
        let narrator = Narrator::new(
            SpeechEngine::Silent(Silent::default()),
            RetryPolicy {
                initial_interval: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
            RenderBudget::default(),
            BreakerConfig::default(),
            2,
        );
        // 1,500 words of 5 bytes: several chunks.
        let text = "Cells divide. ".repeat(750);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("silent.wav");
        let info = narrator.render(&text, &out).await.unwrap();
        assert!(
            (599_000..=600_000).contains(&info.duration_ms()),
            "{} ms",
            info.duration_ms()
        );
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(crate::wav::parse(&bytes, bytes.len() as u64).unwrap(), info);
    }
}
