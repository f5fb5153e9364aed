//! The narration domain's commands (`narration.commands`) and replies (`narration.events`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{message, record};

/// Render the narration of one note version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NarrateNote {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub text: String,
}

/// The narration is stored as a WAV file under `audio_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NarrationCompleted {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub audio_key: String,
    pub content_type: String,
    pub duration_ms: i64,
    pub size_bytes: i64,
    pub occurred_at: i64,
}

/// The narration could not be produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NarrationFailed {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub retryable: bool,
    pub reason: String,
    pub occurred_at: i64,
}

/// Delete the stored audio of one version (`Some`: a compensation or a retirement) or of
/// every version of the note (`None`: the cleanup after a deletion). Idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteNarration {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: Option<i64>,
}

/// The audio is gone (also when there was nothing left to delete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NarrationDeleted {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: Option<i64>,
    pub deleted: i32,
    pub occurred_at: i64,
}

/// The audio could not be deleted; the saga tries again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NarrationDeletionFailed {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: Option<i64>,
    pub reason: String,
    pub occurred_at: i64,
}

record!(NarrateNote, "notesaga.narration", "narration");
record!(NarrationCompleted, "notesaga.narration", "narration");
record!(NarrationFailed, "notesaga.narration", "narration");
record!(DeleteNarration, "notesaga.narration", "narration");
record!(NarrationDeleted, "notesaga.narration", "narration");
record!(NarrationDeletionFailed, "notesaga.narration", "narration");

message!(
    /// What may appear on `narration.commands`.
    NarrationCommand {
        NarrateNote,
        DeleteNarration,
    }
);

message!(
    /// What may appear on `narration.events`.
    NarrationEvent {
        NarrationCompleted,
        NarrationFailed,
        NarrationDeleted,
        NarrationDeletionFailed,
    }
);
