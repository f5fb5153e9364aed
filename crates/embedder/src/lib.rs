//! Text to vectors, for both sides of search: the embedding role embeds notes and the
//! API embeds queries with the same [`Provider`], so both produce vectors of one model.
//!
//! [`minilm`] runs all-MiniLM-L6-v2 in process (its BERT encoder is [`bert`]), [`hash`]
//! is the model-free lexical embedder (provider `builtin`), and [`provider`] chooses
//! between them and OpenAI-compatible servers behind retries, a circuit breaker and a
//! concurrency limit.

mod bert;
pub mod hash;
pub mod minilm;
pub mod provider;

pub use hash::{cosine, BuiltinEmbedder};
pub use minilm::MiniLm;
pub use provider::{OpenAiEmbedder, Provider, Resilient};
