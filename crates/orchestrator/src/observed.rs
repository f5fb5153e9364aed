//! What the orchestrator reads, as one type over its three input topics.

use notesaga_events::{embedding::EmbeddingEvent, narration::NarrationEvent, notes::NotesEvent};
use notesaga_log::FlowEvent;
use notesaga_sagas::note_pipeline::{Input, Step};
use uuid::Uuid;

/// The note version `event` is about and what it means to that version's saga.
pub fn to_input(event: &FlowEvent) -> Option<(Uuid, i64, Input)> {
    // The steps speak and embed the title and the body together.
    let created = |note_id: Uuid, version: i64, title: &str, body: &str| {
        let text = format!("{title}.\n\n{body}");
        (
            note_id,
            version,
            Input::VersionCreated {
                note_id,
                version,
                text,
            },
        )
    };
    Some(match event {
        FlowEvent::Notes(NotesEvent::NoteCreated(e)) => {
            created(e.note_id, e.version, &e.title, &e.body)
        }
        FlowEvent::Notes(NotesEvent::NoteEdited(e)) => {
            created(e.note_id, e.version, &e.title, &e.body)
        }
        FlowEvent::Notes(NotesEvent::NotePublished(e)) => (
            e.note_id,
            e.version,
            Input::Succeeded {
                step: Step::Publish,
            },
        ),
        FlowEvent::Notes(NotesEvent::NotePublicationFailed(_)) => return None,
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingGenerated(e)) => (
            e.note_id,
            e.version,
            Input::Succeeded {
                step: Step::Embedding,
            },
        ),
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingFailed(e)) => (
            e.note_id,
            e.version,
            Input::Failed {
                step: Step::Embedding,
                retryable: e.retryable,
                reason: e.reason.clone(),
            },
        ),
        FlowEvent::Narration(NarrationEvent::NarrationCompleted(e)) => (
            e.note_id,
            e.version,
            Input::Succeeded {
                step: Step::Narration,
            },
        ),
        FlowEvent::Narration(NarrationEvent::NarrationFailed(e)) => (
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
