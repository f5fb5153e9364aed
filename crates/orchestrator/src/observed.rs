//! What a record of the orchestrator's input topics means to the sagas.

use notesaga_events::{
    embedding::{note_text, EmbeddingEvent},
    narration::NarrationEvent,
    notes::NotesEvent,
    saga::SagaEvent,
};
use notesaga_log::FlowEvent;
use notesaga_sagas::note_pipeline::Reply;
use uuid::Uuid;

/// A record, as the orchestrator reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// `NoteCreated` / `NoteEdited`: a version to publish (and older sagas to cancel).
    VersionCreated {
        /// The note.
        note_id: Uuid,
        /// The new version.
        version: i64,
        /// What the steps embed and speak: the title and the body together.
        text: String,
    },
    /// `NoteDeleted`: cancel the note's sagas and clean up after it.
    NoteDeleted {
        /// The note.
        note_id: Uuid,
        /// Its latest version.
        version: i64,
    },
    /// A processor's answer to the command `command_id`.
    Reply {
        /// The note.
        note_id: Uuid,
        /// The command answered (its `command_id` header).
        command_id: Uuid,
        /// How it ended.
        reply: Reply,
    },
    /// An operator asked a parked saga to try again.
    RetryRequested {
        /// The saga.
        saga_id: Uuid,
    },
}

/// What `event`, whose `command_id` header is `command_id`, means to the sagas (`None`:
/// nothing, e.g. the saga's own events coming back).
pub fn observe(event: &FlowEvent, command_id: Option<Uuid>) -> Option<Observed> {
    let reply = |note_id: Uuid, reply: Reply| {
        command_id.map(|command_id| Observed::Reply {
            note_id,
            command_id,
            reply,
        })
    };
    let failed = |retryable: bool, reason: &str| Reply::Failed {
        retryable,
        reason: reason.to_owned(),
    };
    match event {
        FlowEvent::Notes(NotesEvent::NoteCreated(e)) => Some(Observed::VersionCreated {
            note_id: e.note_id,
            version: e.version,
            text: note_text(&e.title, &e.body),
        }),
        FlowEvent::Notes(NotesEvent::NoteEdited(e)) => Some(Observed::VersionCreated {
            note_id: e.note_id,
            version: e.version,
            text: note_text(&e.title, &e.body),
        }),
        FlowEvent::Notes(NotesEvent::NoteDeleted(e)) => Some(Observed::NoteDeleted {
            note_id: e.note_id,
            version: e.version,
        }),
        FlowEvent::Notes(NotesEvent::NotePublished(e)) => reply(e.note_id, Reply::Succeeded),
        // The answer to MarkNoteVersionFailed, which the saga sends as its last word.
        FlowEvent::Notes(NotesEvent::NotePublicationFailed(_)) => None,
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingGenerated(e)) => {
            reply(e.note_id, Reply::Succeeded)
        }
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingFailed(e)) => {
            reply(e.note_id, failed(e.retryable, &e.reason))
        }
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingDeleted(e)) => {
            reply(e.note_id, Reply::Succeeded)
        }
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingDeletionFailed(e)) => {
            reply(e.note_id, failed(true, &e.reason))
        }
        FlowEvent::Narration(NarrationEvent::NarrationCompleted(e)) => {
            reply(e.note_id, Reply::Succeeded)
        }
        FlowEvent::Narration(NarrationEvent::NarrationFailed(e)) => {
            reply(e.note_id, failed(e.retryable, &e.reason))
        }
        FlowEvent::Narration(NarrationEvent::NarrationDeleted(e)) => {
            reply(e.note_id, Reply::Succeeded)
        }
        FlowEvent::Narration(NarrationEvent::NarrationDeletionFailed(e)) => {
            reply(e.note_id, failed(true, &e.reason))
        }
        FlowEvent::Saga(SagaEvent::SagaRetryRequested(e)) => {
            Some(Observed::RetryRequested { saga_id: e.saga_id })
        }
        // The saga's own events come back on the topic it also reads for operator
        // requests; they are already in its state.
        FlowEvent::Saga(_) => None,
        // The orchestrator does not subscribe to notes.outcomes (only the projections
        // do); should one arrive all the same, the events tell the saga what happened.
        FlowEvent::Outcome(_) => None,
    }
}
