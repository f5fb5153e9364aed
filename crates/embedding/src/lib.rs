//! The embedding domain: the [`store`] it owns (its own tables, never read by another
//! domain) and the [`processor`] that answers `embedding.commands`. The embedders
//! themselves (hash, all-MiniLM-L6-v2, OpenAI-compatible) live in `notesaga-embedder`,
//! which the API shares for its queries; they are re-exported here.

pub mod processor;
pub mod store;

pub use notesaga_embedder::{
    hash as embedder, provider, BuiltinEmbedder, MiniLm, OpenAiEmbedder, Provider, Resilient,
};
pub use processor::EmbeddingProcessor;
pub use store::EmbeddingStore;
