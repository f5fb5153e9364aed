//! `notesaga dev` keeps everything in its data directory: stopped and started again on
//! the same directory, it still serves the published note, its audio, its topics and
//! its schemas.

use std::time::Duration;

use anyhow::{Context as _, Result};
use notesaga_testkit::{client, SingleNode};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    ClientConfig,
};
use serde_json::Value;

fn topics(kafka: &str) -> Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect())
}

async fn subjects(registry: &str) -> Result<Vec<String>> {
    Ok(reqwest::get(format!("{registry}/subjects"))
        .await?
        .error_for_status()?
        .json()
        .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_the_same_data_directory_keeps_notes_topics_and_schemas() -> Result<()> {
    let data = tempfile::tempdir()?;
    let mut node = SingleNode::start(data.path()).await?;
    let base = node.http_url();
    let (status, created) = client::create(
        &base,
        "Photosynthesis",
        "Plants turn light, water and carbon dioxide into sugar.",
    )
    .await?;
    assert_eq!(status, 202, "{created}");
    let id = created["note_id"].as_str().context("note_id")?.to_owned();
    let before = client::wait_published(&base, &id, 1, Duration::from_secs(90)).await?;
    let topics_before = topics(&node.kafka_addr)?;
    let subjects_before = subjects(&node.registry_url()).await?;
    for topic in [
        "notes.commands",
        "notes.events",
        "notes.outcomes",
        "embedding.commands",
        "embedding.events",
        "narration.commands",
        "narration.events",
        "saga.note-pipeline",
        "_schemas",
        "notesaga.notes.dlq",
    ] {
        assert!(
            topics_before.iter().any(|t| t == topic),
            "{topic} missing from {topics_before:?}"
        );
    }
    assert!(
        subjects_before
            .iter()
            .any(|s| s == "notes.events-notesaga.notes.NoteCreated"),
        "{subjects_before:?}"
    );

    node.stop()?;
    let (http, kafka, registry) = (
        node.http_addr.clone(),
        node.kafka_addr.clone(),
        node.registry_addr.clone(),
    );
    let node = SingleNode::start_on(data.path(), &http, &kafka, &registry).await?;

    let (status, after) = client::get(&node.http_url(), &id).await?;
    assert_eq!(status, 200);
    assert_eq!(after, before, "the note reads the same after the restart");
    let audio = reqwest::get(format!(
        "{}{}",
        node.http_url(),
        after["narration"]["audio_url"]
            .as_str()
            .context("audio_url")?
    ))
    .await?;
    assert_eq!(audio.status().as_u16(), 200);
    assert!(audio.bytes().await?.starts_with(b"RIFF"));
    let mut topics_after = topics(&node.kafka_addr)?;
    let mut topics_before = topics_before;
    topics_after.sort();
    topics_before.sort();
    assert_eq!(topics_after, topics_before);
    let mut subjects_after = subjects(&node.registry_url()).await?;
    let mut subjects_before = subjects_before;
    subjects_after.sort();
    subjects_before.sort();
    assert_eq!(subjects_after, subjects_before);
    let schema: Value = reqwest::get(format!(
        "{}/subjects/notes.events-notesaga.notes.NoteCreated/versions/latest",
        node.registry_url()
    ))
    .await?
    .json()
    .await?;
    assert!(schema["id"].as_i64().is_some(), "{schema}");

    // The flow still runs after the restart: an edit publishes version 2.
    let (status, _) = client::edit(
        &node.http_url(),
        &id,
        "Photosynthesis",
        "Chlorophyll absorbs light.",
    )
    .await?;
    assert_eq!(status, 202);
    client::wait_published(&node.http_url(), &id, 2, Duration::from_secs(90)).await?;
    node.assert_consistent(Duration::from_secs(60))?;
    Ok(())
}
