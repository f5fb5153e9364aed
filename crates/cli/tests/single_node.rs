//! `notesaga dev` keeps everything in its data directory: stopped and started again on
//! the same directory, it still serves the published note, its audio, its topics and
//! its schemas. Its API takes tokens that `notesaga token --data-dir` mints with the
//! node's secret, and `notesaga api` refuses to start without a key.

use std::time::Duration;

use anyhow::{Context as _, Result};
use notesaga_testkit::{client, notesaga, run_captured, SingleNode};
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
    // Each read signs its audio URL afresh (a new expiry); the rest is the same.
    let unsigned = |note: &Value| {
        let mut note = note.clone();
        note["narration"]["audio_url"] = Value::Null;
        note
    };
    assert_eq!(
        unsigned(&after),
        unsigned(&before),
        "the note reads the same after the restart"
    );
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

/// `notesaga token ARGS…`: the token it printed, or its failure output.
fn mint(args: &[&str]) -> Result<String> {
    let mut command = notesaga()?;
    command
        .arg("token")
        .args(args)
        .env_remove("NOTESAGA_JWT_SECRET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "notesaga token {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_minted_with_the_data_directory_are_accepted() -> Result<()> {
    let data = tempfile::tempdir()?;
    let node = SingleNode::start(data.path()).await?;
    let dir = data.path().to_str().context("a UTF-8 path")?;
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<String>| {
        let mut request = http.get(format!("{}{path}", node.http_url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(get("/v1/notes", None).await?.status().as_u16(), 401);

    let user = mint(&["--data-dir", dir, "--sub", "zoe", "--ttl", "10m"])?;
    let mine = get("/v1/notes", Some(user.clone())).await?;
    assert_eq!(mine.status().as_u16(), 200, "token {user:?}");
    let listed: Value = mine.json().await?;
    assert_eq!(
        listed["items"],
        serde_json::json!([]),
        "zoe has no notes yet"
    );
    // A user is not an admin; `--admin` makes one.
    let admin_path = format!("/v1/admin/sagas/{}/retry", uuid::Uuid::new_v4());
    let post = |token: String| {
        http.post(format!("{}{admin_path}", node.http_url()))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(post(user).await?.status().as_u16(), 403);
    let admin = mint(&["--data-dir", dir, "--sub", "zoe", "--admin"])?;
    assert_eq!(post(admin).await?.status().as_u16(), 404, "an unknown saga");

    // `notesaga saga --data-dir` signs its own admin token with the node's secret.
    let mut saga = notesaga()?;
    saga.args(["saga", "list", "--data-dir", dir])
        .env_remove("NOTESAGA_TOKEN")
        .env_remove("NOTESAGA_API_URL");
    let (status, output) = run_captured(&mut saga)?;
    assert!(status.success(), "{output}");

    // Without a secret there is no token, and the message says what to give.
    let empty = tempfile::tempdir()?;
    let missing = mint(&[
        "--data-dir",
        empty.path().to_str().context("UTF-8")?,
        "--sub",
        "zoe",
    ]);
    let message = format!("{:#}", missing.expect_err("no secret there"));
    assert!(message.contains("notesaga dev"), "{message}");
    let message = format!(
        "{:#}",
        mint(&["--sub", "zoe"]).expect_err("no secret at all")
    );
    assert!(message.contains("NOTESAGA_JWT_SECRET"), "{message}");
    Ok(())
}

#[test]
fn the_api_refuses_to_start_without_a_key() -> Result<()> {
    let data = tempfile::tempdir()?;
    let mut api = notesaga()?;
    api.arg("api")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--kafka-addr", "127.0.0.1:1", "--http-addr", "127.0.0.1:0"])
        .env_remove("NOTESAGA_JWT_SECRET")
        .env_remove("NOTESAGA_JWT_PUBLIC_KEY");
    let (status, output) = run_captured(&mut api)?;
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("NOTESAGA_JWT_SECRET") && output.contains("NOTESAGA_JWT_PUBLIC_KEY"),
        "{output}"
    );
    Ok(())
}
