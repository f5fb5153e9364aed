//! The narration domain: text to speech, stored as one WAV file per note version.
//!
//! - [`narrator`]: the configured speech engine — espeak-ng ([`speech`]) or any
//!   OpenAI-compatible `/v1/audio/speech` server ([`openai`]) — behind the retry policy,
//!   circuit breaker and concurrency limit every provider shares (`notesaga_log::provider`),
//!   speaking long text in [`chunks`] appended into one file; [`silent`] renders
//!   silence at once, for benchmarks that isolate the orchestration overhead.
//! - [`wav`]: reads a WAV's length from the audio itself and joins WAV pieces.
//! - [`blob`]: the blob store the audio lives in (`notesaga-blob`: the filesystem under
//!   the data directory, or an S3 bucket) and the narration's keys.
//! - [`processor`]: answers `narration.commands` (`NarrateNote`, `DeleteNarration`).

pub mod blob;
pub mod chunks;
pub mod narrator;
pub mod openai;
pub mod processor;
pub mod silent;
pub mod speech;
pub mod wav;

pub use blob::{BlobStore, Blobs, FsBlobStore, S3BlobStore, S3Config};
pub use narrator::{Narrator, RenderBudget, SpeechEngine};
pub use openai::{ChunkTimeout, OpenAiSpeech};
pub use processor::{NarrationProcessor, Narrations};
pub use silent::Silent;
pub use speech::Espeak;
