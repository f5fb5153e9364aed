//! The embedding domain's commands (`embedding.commands`) and replies (`embedding.events`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{message, record};

/// The text of a note version that is embedded (and narrated): the title and the body
/// together. The saga and `notesaga reembed` both take it from here, so a re-embedding
/// embeds exactly what the saga did.
pub fn note_text(title: &str, body: &str) -> String {
    format!("{title}.\n\n{body}")
}

/// Compute and store the embedding of one note version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateEmbedding {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub text: String,
    /// The model to embed with. `None` (every saga command, and every record written
    /// before the field existed): the embedding role's configured model. `Some`: a
    /// re-embedding (`notesaga reembed`), answered with that model's vector or
    /// `EmbeddingFailed`.
    #[serde(default)]
    pub model: Option<String>,
}

/// The embedding is stored; the vector travels with it so search can be rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingGenerated {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub model: String,
    pub dimensions: i32,
    pub vector: Vec<f32>,
    pub occurred_at: i64,
}

/// The embedding could not be produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingFailed {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub retryable: bool,
    pub reason: String,
    pub occurred_at: i64,
}

/// Delete the stored embedding of one version (`Some`: a compensation or a retirement) or of
/// every version of the note (`None`: the cleanup after a deletion). Idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteEmbedding {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: Option<i64>,
}

/// The embedding is gone (also when there was nothing left to delete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingDeleted {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: Option<i64>,
    pub deleted: i32,
    pub occurred_at: i64,
}

/// The embedding could not be deleted; the saga tries again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingDeletionFailed {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: Option<i64>,
    pub reason: String,
    pub occurred_at: i64,
}

record!(GenerateEmbedding, "notesaga.embedding", "embedding");
record!(EmbeddingGenerated, "notesaga.embedding", "embedding");
record!(EmbeddingFailed, "notesaga.embedding", "embedding");
record!(DeleteEmbedding, "notesaga.embedding", "embedding");
record!(EmbeddingDeleted, "notesaga.embedding", "embedding");
record!(EmbeddingDeletionFailed, "notesaga.embedding", "embedding");

message!(
    /// What may appear on `embedding.commands`.
    EmbeddingCommand {
        GenerateEmbedding,
        DeleteEmbedding,
    }
);

message!(
    /// What may appear on `embedding.events`.
    EmbeddingEvent {
        EmbeddingGenerated,
        EmbeddingFailed,
        EmbeddingDeleted,
        EmbeddingDeletionFailed,
    }
);
