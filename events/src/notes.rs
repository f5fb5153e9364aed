//! The notes domain's commands (`notes.commands`), events (`notes.events`) and command
//! outcomes (`notes.outcomes`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{message, record};

/// Create a note at version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateNote {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub owner: String,
    pub title: String,
    pub body: String,
}

/// Replace a note's title and body, making a new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditNote {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub owner: String,
    pub title: String,
    pub body: String,
    pub expected_version: Option<i64>,
}

/// Make a version the one readers see (sent by the note-pipeline saga).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishNoteVersion {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
}

/// Give up on publishing a version (sent by the note-pipeline saga).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkNoteVersionFailed {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub reason: String,
}

/// Delete a note: readers answer 410 Gone, and a cleanup saga removes every artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteNote {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub owner: String,
    pub expected_version: Option<i64>,
}

/// A note came into being at version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteCreated {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub owner: String,
    pub version: i64,
    pub title: String,
    pub body: String,
    pub occurred_at: i64,
}

/// A note got a new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteEdited {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub owner: String,
    pub version: i64,
    pub title: String,
    pub body: String,
    pub occurred_at: i64,
}

/// A version became the one readers see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotePublished {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub occurred_at: i64,
}

/// A version will not be published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotePublicationFailed {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub reason: String,
    pub occurred_at: i64,
}

/// A note was deleted (at its latest version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteDeleted {
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub owner: String,
    pub version: i64,
    pub occurred_at: i64,
}

/// A command was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandApplied {
    #[serde(with = "crate::uuid_string")]
    pub command_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub command_type: String,
    pub version: Option<i64>,
    pub event_ids: Vec<String>,
    pub occurred_at: i64,
}

/// A command was rejected; nothing changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRejected {
    #[serde(with = "crate::uuid_string")]
    pub command_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub command_type: String,
    pub code: String,
    pub message: String,
    pub occurred_at: i64,
}

record!(CreateNote, "notesaga.notes", "notes");
record!(EditNote, "notesaga.notes", "notes");
record!(PublishNoteVersion, "notesaga.notes", "notes");
record!(MarkNoteVersionFailed, "notesaga.notes", "notes");
record!(DeleteNote, "notesaga.notes", "notes");
record!(NoteDeleted, "notesaga.notes", "notes");
record!(NoteCreated, "notesaga.notes", "notes");
record!(NoteEdited, "notesaga.notes", "notes");
record!(NotePublished, "notesaga.notes", "notes");
record!(NotePublicationFailed, "notesaga.notes", "notes");
record!(CommandApplied, "notesaga.notes", "notes");
record!(CommandRejected, "notesaga.notes", "notes");

message!(
    /// What may appear on `notes.commands`.
    NotesCommand {
        CreateNote,
        EditNote,
        PublishNoteVersion,
        MarkNoteVersionFailed,
        DeleteNote,
    }
);

message!(
    /// What may appear on `notes.events`.
    NotesEvent {
        NoteCreated,
        NoteEdited,
        NotePublished,
        NotePublicationFailed,
        NoteDeleted,
    }
);

message!(
    /// What may appear on `notes.outcomes`.
    NotesOutcome {
        CommandApplied,
        CommandRejected,
    }
);

impl NotesEvent {
    /// The note version the event is about.
    pub fn version(&self) -> i64 {
        match self {
            Self::NoteCreated(e) => e.version,
            Self::NoteEdited(e) => e.version,
            Self::NotePublished(e) => e.version,
            Self::NotePublicationFailed(e) => e.version,
            Self::NoteDeleted(e) => e.version,
        }
    }
}

impl NotesOutcome {
    /// The command the outcome answers.
    pub fn command_id(&self) -> Uuid {
        match self {
            Self::CommandApplied(o) => o.command_id,
            Self::CommandRejected(o) => o.command_id,
        }
    }
}
