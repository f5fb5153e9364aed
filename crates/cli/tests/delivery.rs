//! Delivery guarantees of the processors against the real broker: a command delivered
//! twice has one effect and one outcome repeated with the same ids; records that cannot
//! be decoded go to the group's DLQ with their coordinates, and the partition moves on.

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use notesaga_events::{
    embedding::{EmbeddingCommand, GenerateEmbedding},
    narration::{NarrationCompleted, NarrationEvent},
    notes::{CreateNote, NotesCommand},
    topics,
};
use notesaga_log::{AvroCodec, KafkaConfig, Metadata, Publisher};
use notesaga_testkit::{wait_for_records, Cluster, RawRecord};
use rdkafka::message::OwnedHeaders;
use sqlx::{Connection as _, Row as _};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn publisher(cluster: &Cluster) -> Result<Publisher> {
    Ok(Publisher::new(
        &KafkaConfig::new(cluster.kafka_addr()),
        Arc::new(AvroCodec::new(&cluster.registry_url)),
    )?)
}

fn keyed(records: &[RawRecord], note_id: Uuid) -> impl Iterator<Item = &RawRecord> {
    let key = note_id.to_string().into_bytes();
    records
        .iter()
        .filter(move |r| r.key.as_deref() == Some(key.as_slice()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_delivered_twice_has_one_effect_and_the_same_outcome() -> Result<()> {
    let cluster = Cluster::start().await?;
    let publisher = publisher(&cluster)?;

    // CreateNote produced twice with one command id.
    let note_id = Uuid::new_v4();
    let command_id = Uuid::new_v4();
    let command = NotesCommand::CreateNote(CreateNote {
        note_id,
        owner: "local".into(),
        title: "Twice".into(),
        body: "Sent twice, applied once.".into(),
    });
    let metadata = Metadata::new(command_id, "duplicate-test").with_command(command_id);
    publisher
        .publish(topics::NOTES_COMMANDS, &command, &metadata)
        .await?;
    publisher
        .publish(topics::NOTES_COMMANDS, &command, &metadata)
        .await?;

    let outcomes = wait_for_records(
        cluster.kafka_addr(),
        topics::NOTES_OUTCOMES,
        WAIT,
        |records| {
            keyed(records, note_id)
                .filter(|r| r.header("command_id") == Some(&command_id.to_string()))
                .count()
                >= 2
        },
    )
    .await?;
    let outcomes: Vec<_> = keyed(&outcomes, note_id)
        .filter(|r| r.header("command_id") == Some(&command_id.to_string()))
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].header("event_type"), Some("CommandApplied"));
    assert_eq!(
        outcomes[0].header("event_id"),
        outcomes[1].header("event_id"),
        "the repeated outcome has the same id"
    );
    assert_eq!(outcomes[0].value, outcomes[1].value, "and the same content");
    let events = notesaga_testkit::read_topic(cluster.kafka_addr(), topics::NOTES_EVENTS)?;
    let created: Vec<_> = keyed(&events, note_id)
        .filter(|r| r.header("event_type") == Some("NoteCreated"))
        .collect();
    assert_eq!(created.len(), 1, "one NoteCreated for two deliveries");

    // GenerateEmbedding produced twice with one command id.
    let note_id = Uuid::new_v4();
    let command_id = Uuid::new_v4();
    let command = EmbeddingCommand::GenerateEmbedding(GenerateEmbedding {
        note_id,
        version: 1,
        text: "Embedded once, answered twice.".into(),
        model: None,
    });
    let metadata = Metadata::new(command_id, "duplicate-test").with_command(command_id);
    publisher
        .publish(topics::EMBEDDING_COMMANDS, &command, &metadata)
        .await?;
    publisher
        .publish(topics::EMBEDDING_COMMANDS, &command, &metadata)
        .await?;
    let replies = wait_for_records(
        cluster.kafka_addr(),
        topics::EMBEDDING_EVENTS,
        WAIT,
        |records| keyed(records, note_id).count() >= 2,
    )
    .await?;
    let replies: Vec<_> = keyed(&replies, note_id).collect();
    assert_eq!(replies[0].header("event_id"), replies[1].header("event_id"));
    assert_eq!(replies[0].header("event_type"), Some("EmbeddingGenerated"));
    let url = format!(
        "sqlite://{}?mode=ro",
        cluster.data_dir().join("embedding.db").display()
    );
    let mut db = sqlx::SqliteConnection::connect(&url).await?;
    let stored: i64 = sqlx::query("SELECT COUNT(*) AS n FROM embedding_vectors WHERE note_id = ?")
        .bind(note_id.to_string())
        .fetch_one(&mut db)
        .await?
        .try_get("n")?;
    assert_eq!(stored, 1, "one stored embedding for two deliveries");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_records_are_dead_lettered_and_the_partition_moves_on() -> Result<()> {
    let cluster = Cluster::start().await?;
    let publisher = publisher(&cluster)?;
    let note_id = Uuid::new_v4();
    let key = note_id.to_string();

    // A record correctly framed but of a type that belongs on none of the inputs below.
    let stray = NarrationEvent::NarrationCompleted(NarrationCompleted {
        note_id,
        version: 1,
        audio_key: "narrations/x/1.wav".into(),
        content_type: "audio/wav".into(),
        duration_ms: 1,
        size_bytes: 1,
        occurred_at: 0,
    });
    let stray = publisher
        .codec()
        .encode(topics::NOTES_COMMANDS, &stray)
        .await?;
    let poisons: Vec<(&str, Vec<u8>)> = vec![
        ("bad magic byte", b"not avro at all".to_vec()),
        ("unknown schema id", vec![0, 0, 0, 0x7f, 0x7f, 2, 4]),
        ("unexpected type", stray),
    ];
    let inputs = [
        (topics::NOTES_COMMANDS, vec!["notesaga.notes"]),
        (topics::EMBEDDING_COMMANDS, vec!["notesaga.embedding"]),
        (topics::NARRATION_COMMANDS, vec!["notesaga.narration"]),
        (
            topics::EMBEDDING_EVENTS,
            vec!["notesaga.orchestrator", "notesaga.projector.notes"],
        ),
    ];
    for (topic, _) in &inputs {
        for (why, value) in &poisons {
            let headers = OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "why",
                value: Some(*why),
            });
            publisher
                .send_raw(topic, Some(key.as_bytes()), Some(value), headers)
                .await?;
        }
    }

    // Then a good command on the same key, hence the same partition, behind the poison.
    let command_id = Uuid::new_v4();
    let command = NotesCommand::CreateNote(CreateNote {
        note_id,
        owner: "local".into(),
        title: "After the poison".into(),
        body: "Still processed.".into(),
    });
    publisher
        .publish(
            topics::NOTES_COMMANDS,
            &command,
            &Metadata::new(command_id, "poison-test").with_command(command_id),
        )
        .await?;
    notesaga_testkit::client::wait_published(&cluster.http_url, &key, 1, Duration::from_secs(90))
        .await?;

    for (topic, groups) in &inputs {
        for group in groups {
            let dlq = format!("{group}.dlq");
            let letters = wait_for_records(cluster.kafka_addr(), &dlq, WAIT, |records| {
                keyed(records, note_id)
                    .filter(|r| r.header("dlq.topic") == Some(topic))
                    .count()
                    >= poisons.len()
            })
            .await
            .with_context(|| format!("{dlq} for {topic}"))?;
            for (why, value) in &poisons {
                let letter = keyed(&letters, note_id)
                    .find(|r| r.header("dlq.topic") == Some(topic) && r.header("why") == Some(why))
                    .with_context(|| format!("{why} from {topic} missing in {dlq}"))?;
                assert_eq!(
                    letter.value.as_ref(),
                    Some(value),
                    "{dlq}: value kept untouched"
                );
                assert_eq!(letter.header("dlq.group"), Some(*group));
                assert!(letter
                    .header("dlq.partition")
                    .is_some_and(|p| p.parse::<i32>().is_ok()));
                assert!(letter
                    .header("dlq.offset")
                    .is_some_and(|o| o.parse::<i64>().is_ok()));
                assert!(
                    !letter.header("dlq.error").unwrap_or_default().is_empty(),
                    "{dlq}: error recorded"
                );
            }
        }
    }
    Ok(())
}
