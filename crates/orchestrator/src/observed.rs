//! What the orchestrator reads, as one type over its three input topics.

use notesaga_events::{embedding::EmbeddingEvent, narration::NarrationEvent, notes::NotesEvent};
use notesaga_log::FlowEvent;
use notesaga_sagas::note_pipeline::{Input, Step};
use uuid::Uuid;

/// What the orchestrator reads: the flow's event topics.
pub type Observed = FlowEvent;

/// The note version `event` is about and what it means to that version's saga.
pub fn to_input(event: &Observed) -> Option<(Uuid, i64, Input)> {
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
        Observed::Notes(NotesEvent::NoteCreated(e)) => {
            created(e.note_id, e.version, &e.title, &e.body)
        }
        Observed::Notes(NotesEvent::NoteEdited(e)) => {
            created(e.note_id, e.version, &e.title, &e.body)
        }
        Observed::Notes(NotesEvent::NotePublished(e)) => (
            e.note_id,
            e.version,
            Input::Succeeded {
                step: Step::Publish,
            },
        ),
        Observed::Notes(NotesEvent::NotePublicationFailed(_)) => return None,
        Observed::Embedding(EmbeddingEvent::EmbeddingGenerated(e)) => (
            e.note_id,
            e.version,
            Input::Succeeded {
                step: Step::Embedding,
            },
        ),
        Observed::Embedding(EmbeddingEvent::EmbeddingFailed(e)) => (
            e.note_id,
            e.version,
            Input::Failed {
                step: Step::Embedding,
                retryable: e.retryable,
                reason: e.reason.clone(),
            },
        ),
        Observed::Narration(NarrationEvent::NarrationCompleted(e)) => (
            e.note_id,
            e.version,
            Input::Succeeded {
                step: Step::Narration,
            },
        ),
        Observed::Narration(NarrationEvent::NarrationFailed(e)) => (
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
