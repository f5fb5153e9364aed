//! The event topics the orchestrator and the projections read, as one type.

use apache_avro::types::Value;
use notesaga_events::{
    embedding::EmbeddingEvent,
    narration::NarrationEvent,
    notes::{NotesEvent, NotesOutcome},
    saga::SagaEvent,
    topics::{
        EMBEDDING_EVENTS, NARRATION_EVENTS, NOTES_EVENTS, NOTES_OUTCOMES, SAGA_NOTE_PIPELINE,
    },
    Message,
};

use crate::Inbound;

/// A record of `notes.events`, `embedding.events`, `narration.events`,
/// `saga.note-pipeline` or (for the projections only) `notes.outcomes`.
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
    /// From `notes.outcomes`: whether a command was applied or rejected. Only the
    /// projections read it (command status); the orchestrator does not subscribe to it.
    Outcome(NotesOutcome),
}

/// The topics both the orchestrator and the projections read. `notes.outcomes` is not
/// one of them: a saga learns what its commands did from the events they caused, so the
/// orchestrator has no use for outcomes and must not pay for reading them.
pub const FLOW_EVENT_TOPICS: [&str; 4] = [
    NOTES_EVENTS,
    EMBEDDING_EVENTS,
    NARRATION_EVENTS,
    SAGA_NOTE_PIPELINE,
];

/// The topics the projections read: [`FLOW_EVENT_TOPICS`] and `notes.outcomes`.
pub const PROJECTION_TOPICS: [&str; 5] = [
    NOTES_EVENTS,
    EMBEDDING_EVENTS,
    NARRATION_EVENTS,
    SAGA_NOTE_PIPELINE,
    NOTES_OUTCOMES,
];

impl Inbound for FlowEvent {
    fn decode(topic: &str, full_name: &str, value: &Value) -> notesaga_events::Result<Self> {
        match topic {
            NOTES_EVENTS => NotesEvent::from_avro(full_name, value).map(Self::Notes),
            EMBEDDING_EVENTS => EmbeddingEvent::from_avro(full_name, value).map(Self::Embedding),
            NARRATION_EVENTS => NarrationEvent::from_avro(full_name, value).map(Self::Narration),
            SAGA_NOTE_PIPELINE => SagaEvent::from_avro(full_name, value).map(Self::Saga),
            NOTES_OUTCOMES => NotesOutcome::from_avro(full_name, value).map(Self::Outcome),
            _ => Err(notesaga_events::Error::UnexpectedType {
                full_name: full_name.to_owned(),
                topic_kind: "the flow's event topics",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::{
        reader::datum::GenericDatumReader, writer::datum::GenericDatumWriter, Schema,
    };
    use notesaga_events::notes::CommandRejected;
    use uuid::Uuid;

    use super::*;

    /// The Avro value a consumer would decode from the wire.
    fn wire_value<M: Message>(message: &M) -> Value {
        let schema = Schema::parse_str(message.schema()).expect("schema parses");
        let bytes = GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer")
            .write_ser_to_vec(message)
            .expect("encode");
        GenericDatumReader::builder(&schema)
            .build()
            .expect("reader")
            .read_value(&mut bytes.as_slice())
            .expect("decode")
    }

    #[test]
    fn outcomes_reach_the_projections_but_not_the_orchestrator() {
        let outcome = NotesOutcome::CommandRejected(CommandRejected {
            command_id: Uuid::from_u128(1),
            note_id: Uuid::from_u128(2),
            command_type: "EditNote".into(),
            code: "version_conflict".into(),
            message: "expected version 7, the note is at 1".into(),
            occurred_at: 0,
        });
        let value = wire_value(&outcome);
        let decoded = FlowEvent::decode(NOTES_OUTCOMES, &outcome.full_name(), &value)
            .expect("an outcome decodes on notes.outcomes");
        assert_eq!(decoded, FlowEvent::Outcome(outcome));
        assert!(PROJECTION_TOPICS.contains(&NOTES_OUTCOMES));
        // The orchestrator's subscription: outcomes would only be decoded and dropped.
        assert!(!FLOW_EVENT_TOPICS.contains(&NOTES_OUTCOMES));
        assert!(FLOW_EVENT_TOPICS
            .iter()
            .all(|topic| PROJECTION_TOPICS.contains(topic)));
    }
}
