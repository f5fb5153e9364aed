//! The narration domain: text to speech, stored as one WAV file per note version.
//!
//! - [`narrator`]: the configured speech engine — espeak-ng ([`speech`]) or any
//!   OpenAI-compatible `/v1/audio/speech` server ([`openai`]) — behind the retry policy,
//!   circuit breaker and concurrency limit every provider shares (`notesaga_log::provider`),
//!   speaking long text in [`chunks`] appended into one file; [`silent`] renders
//!   silence at once, for benchmarks that isolate the orchestration overhead.
//! - [`wav`]: reads a WAV's length from the audio itself and joins WAV pieces.
//! - [`blob`]: the small blob-store interface the audio lives behind (a filesystem
//!   implementation under the data directory).
//! - [`processor`]: answers `narration.commands` (`NarrateNote`, `DeleteNarration`).

pub mod blob;
pub mod chunks;
pub mod narrator;
pub mod openai;
pub mod processor;
pub mod silent;
pub mod speech;
pub mod wav;

pub use blob::{BlobStore, FsBlobStore};
pub use narrator::{Narrator, RenderBudget, SpeechEngine};
pub use openai::{ChunkTimeout, OpenAiSpeech};
pub use processor::{NarrationProcessor, Narrations};
pub use silent::Silent;
pub use speech::Espeak;
