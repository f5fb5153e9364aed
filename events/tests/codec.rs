//! Every record of the contract survives an Avro round trip through its own schema, the
//! same schema-aware path the log layer's encoder takes.

use apache_avro::{reader::datum::GenericDatumReader, writer::datum::GenericDatumWriter, Schema};
use notesaga_events::{
    embedding::{EmbeddingCommand, EmbeddingEvent, EmbeddingGenerated, GenerateEmbedding},
    narration::{NarrationCompleted, NarrationEvent},
    notes::{CommandApplied, EditNote, NotePublished, NotesCommand, NotesEvent, NotesOutcome},
    saga::{SagaEvent, StepFailed},
    Message, Record,
};
use proptest::prelude::*;
use uuid::Uuid;

fn round_trip<M: Message + PartialEq>(message: &M) -> M {
    let schema = Schema::parse_str(message.schema()).expect("schema parses");
    let bytes = GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer")
        .write_ser_to_vec(message)
        .expect("encode");
    let value = GenericDatumReader::builder(&schema)
        .build()
        .expect("reader")
        .read_value(&mut bytes.as_slice())
        .expect("decode");
    M::from_avro(&message.full_name(), &value).expect("from_avro")
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

#[test]
fn every_schema_parses_and_names_its_type() {
    let all = [
        NotesCommand::schemas(),
        NotesEvent::schemas(),
        NotesOutcome::schemas(),
        EmbeddingEvent::schemas(),
        NarrationEvent::schemas(),
        SagaEvent::schemas(),
    ];
    for (full_name, text) in all.into_iter().flatten() {
        let schema = Schema::parse_str(text).unwrap_or_else(|e| panic!("{full_name}: {e}"));
        let Schema::Record(record) = schema else {
            panic!("{full_name} is not a record")
        };
        assert_eq!(record.name.fullname(None), full_name);
    }
}

#[test]
fn a_record_of_another_topic_is_refused() {
    let event = NotesEvent::NotePublished(NotePublished {
        note_id: Uuid::new_v4(),
        version: 1,
        occurred_at: 0,
    });
    let schema = Schema::parse_str(event.schema()).unwrap();
    let bytes = GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_ser_to_vec(&event)
        .unwrap();
    let value = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut bytes.as_slice())
        .unwrap();
    let err = NotesCommand::from_avro(&event.full_name(), &value).unwrap_err();
    assert!(err.to_string().contains("NotesCommand"), "{err}");
}

/// A `GenerateEmbedding` written before it had `model` (the schema of its time and the
/// bytes of `tests/samples/`) still decodes, as the log layer decodes it (with the
/// writer's schema only, no resolution against today's) and as a reader resolving it
/// against today's schema does: both read "the configured model" (`None`).
#[test]
fn a_generate_embedding_without_model_still_decodes() {
    let sample: serde_json::Value = serde_json::from_str(include_str!(
        "samples/notesaga.embedding.GenerateEmbedding.json"
    ))
    .unwrap();
    let writer = Schema::parse(&sample["writer_schema"]).unwrap();
    assert!(
        !sample["writer_schema"].to_string().contains("\"model\""),
        "the sample is the old schema"
    );
    let hex = sample["avro_hex"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let name = "notesaga.embedding.GenerateEmbedding";

    let as_written = GenericDatumReader::builder(&writer)
        .build()
        .unwrap()
        .read_value(&mut bytes.as_slice())
        .unwrap();
    let today = Schema::parse_str(<GenerateEmbedding as Record>::SCHEMA).unwrap();
    let resolved = GenericDatumReader::builder(&writer)
        .reader_schema(&today)
        .build()
        .unwrap()
        .read_value(&mut bytes.as_slice())
        .unwrap();
    for value in [as_written, resolved] {
        match EmbeddingCommand::from_avro(name, &value).unwrap() {
            EmbeddingCommand::GenerateEmbedding(command) => {
                assert_eq!(command.model, None, "{value:?}");
                assert_eq!(command.version, 1);
                assert_eq!(command.text, "sample text");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn generate_embedding_round_trips_with_and_without_a_model() {
    for model in [None, Some("all-MiniLM-L6-v2".to_owned())] {
        let command = EmbeddingCommand::GenerateEmbedding(GenerateEmbedding {
            note_id: Uuid::from_u128(5),
            version: 3,
            text: "Ribosomes make proteins.".into(),
            model,
        });
        assert_eq!(round_trip(&command), command);
    }
}

proptest! {
    #[test]
    fn edit_note_round_trips(note_id in uuid(), owner in ".{0,20}", title in ".{1,50}", body in ".{0,300}", expected in proptest::option::of(any::<i64>())) {
        let command = NotesCommand::EditNote(EditNote { note_id, owner, title, body, expected_version: expected });
        prop_assert_eq!(round_trip(&command), command);
    }

    #[test]
    fn outcome_round_trips(command_id in uuid(), note_id in uuid(), version in proptest::option::of(1i64..1000), ids in proptest::collection::vec("[a-f0-9-]{36}", 0..4), at in any::<i64>()) {
        let outcome = NotesOutcome::CommandApplied(CommandApplied { command_id, note_id, command_type: "EditNote".into(), version, event_ids: ids, occurred_at: at });
        prop_assert_eq!(round_trip(&outcome), outcome);
    }

    #[test]
    fn embedding_round_trips(note_id in uuid(), version in 1i64..1000, vector in proptest::collection::vec(-1.0f32..1.0, 0..64)) {
        let event = EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated { note_id, version, model: "m".into(), dimensions: vector.len() as i32, vector, occurred_at: 1 });
        prop_assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn narration_round_trips(note_id in uuid(), version in 1i64..1000, duration_ms in 0i64..10_000_000, size in 0i64..1_000_000_000) {
        let event = NarrationEvent::NarrationCompleted(NarrationCompleted { note_id, version, audio_key: format!("narrations/{note_id}/{version}.wav"), content_type: "audio/wav".into(), duration_ms, size_bytes: size, occurred_at: 7 });
        prop_assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn saga_event_round_trips(saga_id in uuid(), note_id in uuid(), attempt in 1i32..10, retryable in any::<bool>(), reason in ".{0,80}") {
        let event = SagaEvent::StepFailed(StepFailed { saga_id, note_id, version: 3, step: "narration".into(), attempt, retryable, reason, occurred_at: 9 });
        prop_assert_eq!(round_trip(&event), event);
    }
}
