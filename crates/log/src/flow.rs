//! The event topics the orchestrator and the projections both read, as one type.

use apache_avro::types::Value;
use notesaga_events::{
    embedding::EmbeddingEvent,
    narration::NarrationEvent,
    notes::NotesEvent,
    saga::SagaEvent,
    topics::{EMBEDDING_EVENTS, NARRATION_EVENTS, NOTES_EVENTS, SAGA_NOTE_PIPELINE},
    Message,
};

use crate::Inbound;

/// A record of `notes.events`, `embedding.events`, `narration.events` or
/// `saga.note-pipeline`.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowEvent {
    /// From `notes.events`.
    Notes(NotesEvent),
    /// From `embedding.events`.
    Embedding(EmbeddingEvent),
    /// From `narration.events`.
    Narration(NarrationEvent),
    /// From `saga.note-pipeline` (the saga's own events, and operator requests).
    Saga(SagaEvent),
}

/// The topics a [`FlowEvent`] comes from.
pub const FLOW_EVENT_TOPICS: [&str; 4] = [
    NOTES_EVENTS,
    EMBEDDING_EVENTS,
    NARRATION_EVENTS,
    SAGA_NOTE_PIPELINE,
];

impl Inbound for FlowEvent {
    fn decode(topic: &str, full_name: &str, value: &Value) -> notesaga_events::Result<Self> {
        match topic {
            NOTES_EVENTS => NotesEvent::from_avro(full_name, value).map(Self::Notes),
            EMBEDDING_EVENTS => EmbeddingEvent::from_avro(full_name, value).map(Self::Embedding),
            NARRATION_EVENTS => NarrationEvent::from_avro(full_name, value).map(Self::Narration),
            SAGA_NOTE_PIPELINE => SagaEvent::from_avro(full_name, value).map(Self::Saga),
            _ => Err(notesaga_events::Error::UnexpectedType {
                full_name: full_name.to_owned(),
                topic_kind: "the flow's event topics",
            }),
        }
    }
}
