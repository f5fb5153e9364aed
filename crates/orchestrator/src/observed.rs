//! What the orchestrator reads, as one type over its three input topics.

use apache_avro::types::Value;
use notesaga_events::{
    embedding::EmbeddingEvent,
    narration::NarrationEvent,
    notes::NotesEvent,
    topics::{EMBEDDING_EVENTS, NARRATION_EVENTS, NOTES_EVENTS},
    Message,
};
use notesaga_log::Inbound;
use notesaga_sagas::note_pipeline::{Input, Step};
use uuid::Uuid;

/// A record from one of the orchestrator's input topics.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// From `notes.events`.
    Notes(NotesEvent),
    /// From `embedding.events`.
    Embedding(EmbeddingEvent),
    /// From `narration.events`.
    Narration(NarrationEvent),
}

impl Inbound for Observed {
    fn decode(topic: &str, full_name: &str, value: &Value) -> notesaga_events::Result<Self> {
        match topic {
            NOTES_EVENTS => NotesEvent::from_avro(full_name, value).map(Self::Notes),
            EMBEDDING_EVENTS => EmbeddingEvent::from_avro(full_name, value).map(Self::Embedding),
            NARRATION_EVENTS => NarrationEvent::from_avro(full_name, value).map(Self::Narration),
            _ => Err(notesaga_events::Error::UnexpectedType {
                full_name: full_name.to_owned(),
                topic_kind: "the orchestrator's input topics",
            }),
        }
    }
}

impl Observed {
    /// The note version it is about and what it means to that version's saga.
    pub fn to_input(&self) -> Option<(Uuid, i64, Input)> {
        let text = |title: &str, body: &str| format!("{title}.\n\n{body}");
        Some(match self {
            Self::Notes(NotesEvent::NoteCreated(e)) => (
                e.note_id,
                e.version,
                Input::VersionCreated {
                    note_id: e.note_id,
                    version: e.version,
                    text: text(&e.title, &e.body),
                },
            ),
            Self::Notes(NotesEvent::NoteEdited(e)) => (
                e.note_id,
                e.version,
                Input::VersionCreated {
                    note_id: e.note_id,
                    version: e.version,
                    text: text(&e.title, &e.body),
                },
            ),
            Self::Notes(NotesEvent::NotePublished(e)) => (
                e.note_id,
                e.version,
                Input::Succeeded {
                    step: Step::Publish,
                },
            ),
            Self::Notes(NotesEvent::NotePublicationFailed(_)) => return None,
            Self::Embedding(EmbeddingEvent::EmbeddingGenerated(e)) => (
                e.note_id,
                e.version,
                Input::Succeeded {
                    step: Step::Embedding,
                },
            ),
            Self::Embedding(EmbeddingEvent::EmbeddingFailed(e)) => (
                e.note_id,
                e.version,
                Input::Failed {
                    step: Step::Embedding,
                    retryable: e.retryable,
                    reason: e.reason.clone(),
                },
            ),
            Self::Narration(NarrationEvent::NarrationCompleted(e)) => (
                e.note_id,
                e.version,
                Input::Succeeded {
                    step: Step::Narration,
                },
            ),
            Self::Narration(NarrationEvent::NarrationFailed(e)) => (
                e.note_id,
                e.version,
                Input::Failed {
                    step: Step::Narration,
                    retryable: e.retryable,
                    reason: e.reason.clone(),
                },
            ),
        })
    }
}
