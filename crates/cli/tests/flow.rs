//! The note flow end to end, every role a separate process against one broker: a note
//! goes from HTTP through Kafka to published, with real speech and an embedding; an edit
//! publishes the next version; a raw record read with kcat is in the Confluent wire
//! format; bad requests (a missing token among them) get problem bodies. The audio is
//! fetched through its signed `audio_url`, without a token.

use std::{process::Command, time::Duration};

use anyhow::{ensure, Context as _, Result};
use notesaga_testkit::{client, Cluster};
use serde_json::Value;

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(90);

async fn audio(url: &str) -> Result<(u16, String, Vec<u8>)> {
    let response = reqwest::get(url).await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, content_type, response.bytes().await?.to_vec()))
}

fn check_wav(bytes: &[u8]) -> Result<()> {
    ensure!(bytes.len() > 1000, "audio is only {} bytes", bytes.len());
    ensure!(
        &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "audio is not a WAV file"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_note_is_published_through_the_log_and_edits_publish_the_next_version() -> Result<()> {
    let cluster = Cluster::start().await?;
    let base = cluster.http_url.as_str();

    let (status, created) = client::create(
        base,
        "Cell biology",
        "The mitochondria is the powerhouse of the cell.",
    )
    .await?;
    assert_eq!(status, 202, "{created}");
    let id = created["note_id"].as_str().context("note_id")?.to_owned();
    assert!(created["command_id"].is_string(), "{created}");

    let note = client::wait_published(base, &id, 1, PUBLISH_TIMEOUT).await?;
    assert_eq!(note["title"], "Cell biology");
    assert_eq!(note["version"], 1);
    assert_eq!(note["embedding"]["model"], "notesaga-builtin-hash-v1");
    assert_eq!(note["embedding"]["dimensions"], 256);
    let duration = note["narration"]["duration_ms"]
        .as_i64()
        .context("duration_ms")?;
    assert!(
        duration > 500,
        "a sentence of speech lasts more than half a second: {duration}"
    );
    let audio_url = format!(
        "{base}{}",
        note["narration"]["audio_url"]
            .as_str()
            .context("audio_url")?
    );
    let (status, content_type, v1_audio) = audio(&audio_url).await?;
    assert_eq!((status, content_type.as_str()), (200, "audio/wav"));
    check_wav(&v1_audio)?;

    let (status, _) = client::edit(
        base,
        &id,
        "Cell biology",
        "Ribosomes make proteins from amino acids, reading messenger RNA.",
    )
    .await?;
    assert_eq!(status, 202);
    let note = client::wait_published(base, &id, 2, PUBLISH_TIMEOUT).await?;
    assert_eq!(note["version"], 2);
    assert!(note["body"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Ribosomes"));
    let (_, _, v2_audio) = audio(&audio_url).await?;
    check_wav(&v2_audio)?;
    assert_ne!(
        v1_audio, v2_audio,
        "the published audio follows the published version"
    );

    wire_format_is_confluent_avro(&cluster, &id).await?;
    // Version 1's artifacts are retired once version 2 is published; nothing else is left.
    cluster.assert_consistent(Duration::from_secs(60))?;
    Ok(())
}

/// Reads the first record of the note's `notes.events` partition with kcat, an
/// independent client, and checks the Confluent framing against the registry.
async fn wire_format_is_confluent_avro(cluster: &Cluster, note_id: &str) -> Result<()> {
    // kcat links Debian's librdkafka 2.0.2. This reads with the pre-0.10 protocol and
    // absolute offsets, the oldest mode the broker serves; kcat's defaults are covered by
    // crates/broker/tests/kcat.rs.
    let kcat = |partition: i32, format: &str| -> Result<Vec<u8>> {
        // `-e` ends at the end of the partition (an empty partition yields nothing);
        // `timeout` bounds kcat should the broker misbehave.
        let output = Command::new("timeout")
            .args(["30", "kcat", "-b", cluster.kafka_addr()])
            .args([
                "-X",
                "api.version.request=false",
                "-X",
                "broker.version.fallback=0.9.0",
            ])
            .args([
                "-C",
                "-t",
                "notes.events",
                "-p",
                &partition.to_string(),
                "-o",
                "0",
                "-c",
                "1",
                "-e",
            ])
            .args(["-f", format])
            .output()
            .context("run kcat (apt-get install kcat)")?;
        ensure!(
            output.status.success(),
            "kcat failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output.stdout)
    };
    let mut found = None;
    for partition in 0..3 {
        let key = kcat(partition, "%k")?;
        if key == note_id.as_bytes() {
            found = Some(partition);
            break;
        }
    }
    let partition = found
        .with_context(|| format!("no partition of notes.events starts with note {note_id}"))?;
    let value = kcat(partition, "%s")?;
    ensure!(value.len() > 5, "value too short: {value:?}");
    assert_eq!(value[0], 0, "magic byte");
    let schema_id = u32::from_be_bytes(value[1..5].try_into()?);
    let schema: Value = reqwest::get(format!("{}/schemas/ids/{schema_id}", cluster.registry_url))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let schema: Value = serde_json::from_str(schema["schema"].as_str().context("schema string")?)?;
    assert_eq!(schema["name"], "NoteCreated");
    assert_eq!(schema["namespace"], "notesaga.notes");
    let versions: Value = reqwest::get(format!(
        "{}/subjects/notes.events-notesaga.notes.NoteCreated/versions/latest",
        cluster.registry_url
    ))
    .await?
    .json()
    .await?;
    assert_eq!(
        versions["id"], schema_id,
        "subject follows TopicRecordNameStrategy"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_problem_details() -> Result<()> {
    let cluster = Cluster::start().await?;
    let base = cluster.http_url.as_str();
    let anonymous = reqwest::get(format!("{base}/v1/notes")).await?;
    assert_eq!(anonymous.status().as_u16(), 401, "no token");
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let http = notesaga_testkit::http();
    let send = |method: reqwest::Method, path: &str, body: &'static str| {
        http.request(method, format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let cases: Vec<(reqwest::Method, String, &'static str, u16, Option<&str>)> = vec![
        (
            reqwest::Method::POST,
            "/v1/notes".into(),
            "{\"title\": ",
            400,
            None,
        ),
        (
            reqwest::Method::POST,
            "/v1/notes".into(),
            "{\"body\": \"b\"}",
            422,
            Some("title"),
        ),
        (
            reqwest::Method::POST,
            "/v1/notes".into(),
            "{\"title\": \"  \", \"body\": \"b\"}",
            422,
            Some("title"),
        ),
        (
            reqwest::Method::POST,
            "/v1/notes".into(),
            "{\"title\": \"t\", \"body\": \"\"}",
            422,
            Some("body"),
        ),
        (
            reqwest::Method::GET,
            "/v1/notes/7d3c1f6e-0000-4000-8000-000000000000".into(),
            "",
            404,
            None,
        ),
        (
            reqwest::Method::PUT,
            "/v1/notes/7d3c1f6e-0000-4000-8000-000000000000".into(),
            "{\"title\": \"t\", \"body\": \"b\"}",
            404,
            None,
        ),
        (
            reqwest::Method::GET,
            "/v1/notes/7d3c1f6e-0000-4000-8000-000000000000/audio".into(),
            "",
            404,
            None,
        ),
        (
            reqwest::Method::GET,
            "/v1/nothing-here".into(),
            "",
            404,
            None,
        ),
    ];
    for (method, path, body, status, field) in cases {
        let response = send(method.clone(), &path, body).await?;
        assert_eq!(response.status().as_u16(), status, "{method} {path} {body}");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{method} {path}"
        );
        let problem: Value = response.json().await?;
        assert_eq!(problem["status"], status);
        assert!(
            problem["title"].is_string() && problem["type"].is_string(),
            "{problem}"
        );
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
    }

    let oversized = format!(
        "{{\"title\": \"t\", \"body\": \"{}\"}}",
        "x".repeat(100_001)
    );
    let response = http
        .post(format!("{base}/v1/notes"))
        .header("content-type", "application/json")
        .body(oversized)
        .send()
        .await?;
    assert_eq!(
        response.status().as_u16(),
        422,
        "a body over 100,000 bytes is a field error"
    );
    let huge = format!(
        "{{\"title\": \"t\", \"body\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let response = http
        .post(format!("{base}/v1/notes"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await?;
    assert_eq!(
        response.status().as_u16(),
        413,
        "a request over the body limit"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn projections_and_the_embedding_store_run_on_postgres() -> Result<()> {
    use sqlx::{Connection as _, Row as _};
    let database = notesaga_testkit::PostgresDatabase::create().await?;
    let url = database.url();
    let cluster = Cluster::start_with(&["--database-url", &url]).await?;
    let base = cluster.http_url.as_str();
    let (status, created) =
        client::create(base, "Plate tectonics", "Continents drift on the mantle.").await?;
    assert_eq!(status, 202, "{created}");
    let id = created["note_id"].as_str().context("note_id")?.to_owned();
    let note = client::wait_published(base, &id, 1, PUBLISH_TIMEOUT).await?;
    assert_eq!(note["embedding"]["dimensions"], 256);

    let mut db = sqlx::PgConnection::connect(&url).await?;
    let row = sqlx::query("SELECT status, published_version FROM notes WHERE note_id = $1")
        .bind(&id)
        .fetch_one(&mut db)
        .await?;
    assert_eq!(row.try_get::<String, _>("status")?, "published");
    assert_eq!(row.try_get::<i64, _>("published_version")?, 1);
    let stored: i64 = sqlx::query("SELECT COUNT(*) AS n FROM embedding_vectors WHERE note_id = $1")
        .bind(&id)
        .fetch_one(&mut db)
        .await?
        .try_get("n")?;
    assert_eq!(stored, 1, "the embedding store lives in PostgreSQL too");
    let offsets: i64 = sqlx::query("SELECT COUNT(*) AS n FROM projection_offsets")
        .fetch_one(&mut db)
        .await?
        .try_get("n")?;
    assert!(
        offsets > 0,
        "the projector stores its offsets with its rows"
    );
    cluster.assert_consistent(Duration::from_secs(60))?;
    Ok(())
}
