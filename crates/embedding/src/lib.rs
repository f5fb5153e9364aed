//! The embedding domain: the [`embedder`] that turns text into a vector, the [`store`]
//! it owns (its own tables, never read by another domain), and the [`processor`] that
//! answers `embedding.commands`.

pub mod embedder;
pub mod processor;
pub mod store;

pub use embedder::BuiltinEmbedder;
pub use processor::EmbeddingProcessor;
pub use store::EmbeddingStore;
