//! The embedding domain: the [`store`] it owns (its own tables, never read by another
//! domain), the [`processor`] that answers `embedding.commands`, and [`models`], which
//! says which embedder answers a command (a re-embedding may name another model). The embedders
//! themselves (hash, all-MiniLM-L6-v2, OpenAI-compatible) live in `notesaga-embedder`,
//! which the API shares for its queries; they are re-exported here.

pub mod models;
pub mod processor;
pub mod store;

pub use notesaga_embedder::{
    hash as embedder, provider, BuiltinEmbedder, MiniLm, OpenAiEmbedder, Provider, Resilient,
};
pub use processor::EmbeddingProcessor;
pub use store::EmbeddingStore;
