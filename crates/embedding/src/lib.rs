//! The embedding domain: the built-in [`embedder`] and the configurable [`provider`]s
//! that turn text into a vector (behind retries, a circuit breaker and a concurrency
//! limit), the [`store`]
//! it owns (its own tables, never read by another domain), and the [`processor`] that
//! answers `embedding.commands`.

pub mod embedder;
pub mod processor;
pub mod provider;
pub mod store;

pub use embedder::BuiltinEmbedder;
pub use processor::EmbeddingProcessor;
pub use provider::{OpenAiEmbedder, Provider, Resilient};
pub use store::EmbeddingStore;
