//! `notesaga reembed` against a real single node (issue 13, "Changing models"): notes
//! published with the builtin hash embedder are re-embedded to all-MiniLM-L6-v2 through
//! the log; every published version then has a 384-dimension vector of that model in
//! the read store, search (still on builtin) keeps answering from the builtin vectors,
//! GET still shows the saga's embedding, no saga is disturbed (no new saga event, no
//! extra `NotePublished`), the re-embedding's replies carry its own headers, and a second
//! run re-embeds nothing.
//!
//! Needs the model in `NOTESAGA_EMBEDDING_MODEL_DIR` or `~/.cache/notesaga` (`make
//! model`): the embedding role loads it for the re-embedding.

use std::{path::Path, time::Duration};

use anyhow::{ensure, Context as _, Result};
use notesaga_embedder::{cosine, minilm, BuiltinEmbedder};
use notesaga_events::topics;
use notesaga_testkit::{client, notesaga, read_topic, run_captured, SingleNode};
use sqlx::{sqlite::SqlitePoolOptions, Row as _};

const TIMEOUT: Duration = Duration::from_secs(120);
const NOTES: [(&str, &str); 3] = [
    (
        "Cell biology",
        "The mitochondria is the powerhouse of the cell.",
    ),
    (
        "Railways",
        "Steam trains crossed the country in the nineteenth century.",
    ),
    ("Astronomy", "The planets move in ellipses around the sun."),
];

fn reembed(dir: &Path, args: &[&str]) -> Result<(bool, String)> {
    let mut command = notesaga()?;
    command.arg("reembed").arg("--data-dir").arg(dir).args(args);
    let (status, output) = run_captured(&mut command)?;
    Ok((status.success(), output))
}

/// (note id, version, model, dimensions, bytes of the vector) of every row of
/// `note_vectors`.
async fn vectors(dir: &Path) -> Result<Vec<(String, i64, String, i64, usize)>> {
    let url = format!("sqlite://{}?mode=ro", dir.join("projections.db").display());
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    let rows = sqlx::query(
        "SELECT note_id, version, model, dimensions, LENGTH(vector_f32) AS bytes \
         FROM note_vectors ORDER BY note_id, version, model",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("note_id")?,
                row.try_get("version")?,
                row.try_get("model")?,
                row.try_get("dimensions")?,
                usize::try_from(row.try_get::<i64, _>("bytes")?)?,
            ))
        })
        .collect()
}

fn count_type(records: &[notesaga_testkit::RawRecord], event_type: &str) -> usize {
    records
        .iter()
        .filter(|r| r.header("event_type") == Some(event_type))
        .count()
}

#[tokio::test]
async fn reembed_moves_published_notes_to_minilm_while_search_stays_on_builtin() -> Result<()> {
    let model_dir = std::env::var_os("NOTESAGA_EMBEDDING_MODEL_DIR")
        .map_or_else(minilm::default_model_dir, std::path::PathBuf::from);
    ensure!(
        model_dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 is not in {}: run `make model`",
        model_dir.display()
    );
    let dir = tempfile::tempdir()?;
    let mut node = SingleNode::start(dir.path()).await?;
    let base = node.http_url();

    // Three notes, the last one edited: its published version is 2.
    let mut ids = Vec::new();
    for (title, body) in NOTES {
        let (status, created) = client::create(&base, title, body).await?;
        ensure!(status == 202, "create: {status} {created}");
        ids.push(created["note_id"].as_str().context("note_id")?.to_owned());
    }
    // Published at version 1 first, so the edit starts a second saga instead of
    // superseding the first.
    for id in &ids {
        client::wait_published(&base, id, 1, TIMEOUT).await?;
    }
    let (status, edited) = client::edit(
        &base,
        &ids[2],
        "Astronomy",
        "Kepler found that the planets move in ellipses around the sun.",
    )
    .await?;
    ensure!(status == 202, "edit: {status} {edited}");
    let published = [1, 1, 2];
    for (id, version) in ids.iter().zip(published) {
        client::wait_published(&base, id, version, TIMEOUT).await?;
        client::wait_sagas(&base, id, TIMEOUT, |sagas| {
            sagas.len() == version as usize && sagas.iter().all(|s| s["state"] == "completed")
        })
        .await?;
    }

    // A model nobody runs is refused before anything is sent.
    let (ok, output) = reembed(dir.path(), &["--model", "all-minilm-l6-v2"])?;
    ensure!(!ok, "an unknown model is refused: {output}");
    ensure!(
        output.contains("did you mean all-MiniLM-L6-v2?"),
        "{output}"
    );
    let (ok, output) = reembed(dir.path(), &["--model", minilm::MODEL, "--dry-run"])?;
    ensure!(ok, "{output}");
    ensure!(
        output.contains("dry run: 3 notes would be re-embedded"),
        "{output}"
    );

    let saga_events = read_topic(&node.kafka_addr, topics::SAGA_NOTE_PIPELINE)?.len();
    let notes_events = read_topic(&node.kafka_addr, topics::NOTES_EVENTS)?;
    let published_before = count_type(&notes_events, "NotePublished");
    ensure!(published_before == 4, "four versions published");

    let (ok, output) = reembed(dir.path(), &["--model", minilm::MODEL, "--timeout", "300"])?;
    ensure!(ok, "reembed failed:\n{output}");
    ensure!(
        output.contains("re-embedded 3 notes to all-MiniLM-L6-v2 (0 failed, 0 still missing"),
        "{output}"
    );
    ensure!(
        output.contains("NOTESAGA_EMBEDDING_PROVIDER=minilm"),
        "{output}"
    );

    // Every published version has a 384-dimension vector of the model beside the saga's.
    let rows = vectors(dir.path()).await?;
    for (id, version) in ids.iter().zip(published) {
        let of_version: Vec<_> = rows
            .iter()
            .filter(|r| r.0 == *id && r.1 == version)
            .collect();
        let minilm_rows: Vec<_> = of_version.iter().filter(|r| r.2 == minilm::MODEL).collect();
        ensure!(minilm_rows.len() == 1, "{id} v{version}: {rows:?}");
        ensure!(
            minilm_rows[0].3 == 384 && minilm_rows[0].4 == 384 * 4,
            "{id}: {rows:?}"
        );
        ensure!(
            of_version
                .iter()
                .any(|r| r.2 == notesaga_embedder::hash::MODEL && r.3 == 256),
            "{id}: the saga's vector stays: {rows:?}"
        );
        // GET shows the saga's embedding.
        let (_, note) = client::get(&base, id).await?;
        ensure!(
            note["embedding"]["model"] == notesaga_embedder::hash::MODEL
                && note["embedding"]["dimensions"] == 256,
            "{note}"
        );
    }
    // The edited note's version 1 was retired: nothing of it was re-embedded.
    ensure!(
        !rows
            .iter()
            .any(|r| r.0 == ids[2] && r.1 == 1 && r.2 == minilm::MODEL),
        "{rows:?}"
    );

    // Search still runs on builtin: the scores are the builtin vectors' cosine.
    let query = "powerhouse of the cell";
    let (status, found) = client::get_json(
        &base,
        &format!("/v1/search?q={}&mode=semantic", query.replace(' ', "%20")),
    )
    .await?;
    ensure!(status == 200, "{status} {found}");
    let results = found["results"].as_array().context("results")?;
    ensure!(
        results.first().and_then(|r| r["note_id"].as_str()) == Some(ids[0].as_str()),
        "{found}"
    );
    let expected = cosine(
        &BuiltinEmbedder.embed(query),
        &BuiltinEmbedder.embed(&format!("{}.\n\n{}", NOTES[0].0, NOTES[0].1)),
    );
    let score = results[0]["score"].as_f64().context("score")? as f32;
    ensure!(
        (score - expected).abs() < 1e-4,
        "score {score} is the builtin vectors' {expected}"
    );

    // No saga noticed: no new saga event, no extra publication, every saga completed.
    ensure!(
        read_topic(&node.kafka_addr, topics::SAGA_NOTE_PIPELINE)?.len() == saga_events,
        "the re-embedding's replies moved no saga"
    );
    let notes_events = read_topic(&node.kafka_addr, topics::NOTES_EVENTS)?;
    ensure!(count_type(&notes_events, "NotePublished") == published_before);
    for id in &ids {
        let sagas = client::note_sagas(&base, id).await?;
        ensure!(
            sagas.iter().all(|s| s["state"] == "completed"),
            "{sagas:#?}"
        );
    }
    // The re-embedding's records say what they are.
    let commands = read_topic(&node.kafka_addr, topics::EMBEDDING_COMMANDS)?;
    let marked: Vec<_> = commands
        .iter()
        .filter(|r| {
            r.header("correlation_id")
                .is_some_and(|c| c.starts_with("reembed:"))
        })
        .collect();
    ensure!(marked.len() == 3, "three re-embedding commands");
    ensure!(marked
        .iter()
        .all(|r| r.header("causation_id") == r.header("correlation_id")));

    // Again: nothing left to do, nothing sent.
    let (ok, output) = reembed(dir.path(), &["--model", minilm::MODEL])?;
    ensure!(ok, "{output}");
    ensure!(output.contains("nothing to re-embed"), "{output}");
    ensure!(
        read_topic(&node.kafka_addr, topics::EMBEDDING_COMMANDS)?.len() == commands.len(),
        "a second run sends nothing"
    );
    let (ok, status) = reembed(dir.path(), &["--status"])?;
    ensure!(ok, "{status}");
    ensure!(status.contains("3 published notes"), "{status}");
    ensure!(
        status.lines().any(|l| l.starts_with("all-MiniLM-L6-v2")
            && l.contains(" 3 ")
            && l.contains("100.0%")),
        "{status}"
    );

    node.assert_consistent(Duration::from_secs(30))?;
    node.stop()
}

/// An embedding role that cannot load the model answers every re-embedding with
/// `EmbeddingFailed` saying so: `reembed` reports each note with that reason, does not
/// print the switch step, exits non-zero, and no saga notices.
#[tokio::test]
async fn a_model_the_embedding_role_cannot_load_fails_each_note_with_the_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The node inherits this process's environment (nextest runs each test alone).
    std::env::set_var(
        "NOTESAGA_EMBEDDING_MODEL_DIR",
        dir.path().join("no-model-here"),
    );
    let mut node = SingleNode::start(&dir.path().join("node")).await?;
    let base = node.http_url();
    let mut ids = Vec::new();
    for (title, body) in &NOTES[..2] {
        let (status, created) = client::create(&base, title, body).await?;
        ensure!(status == 202, "create: {status} {created}");
        ids.push(created["note_id"].as_str().context("note_id")?.to_owned());
    }
    for id in &ids {
        client::wait_published(&base, id, 1, TIMEOUT).await?;
        client::wait_sagas(&base, id, TIMEOUT, |sagas| {
            sagas.len() == 1 && sagas[0]["state"] == "completed"
        })
        .await?;
    }
    let saga_events = read_topic(&node.kafka_addr, topics::SAGA_NOTE_PIPELINE)?.len();

    let node_dir = dir.path().join("node");
    let (ok, output) = reembed(&node_dir, &["--model", minilm::MODEL, "--timeout", "120"])?;
    ensure!(!ok, "failures exit non-zero:\n{output}");
    ensure!(
        output.contains("re-embedded 0 notes to all-MiniLM-L6-v2 (2 failed, 0 still missing"),
        "{output}"
    );
    for id in &ids {
        ensure!(
            output.lines().any(|l| l.starts_with(&format!(
                "failed  {id} v1: model all-MiniLM-L6-v2 is not available in this embedding role: "
            )) && l.contains("no-model-here")),
            "{id}: {output}"
        );
    }
    ensure!(
        !output.contains("to switch search"),
        "no switch before every note has its vector: {output}"
    );
    ensure!(
        read_topic(&node.kafka_addr, topics::SAGA_NOTE_PIPELINE)?.len() == saga_events,
        "the failures moved no saga"
    );
    for id in &ids {
        let (_, note) = client::get(&base, id).await?;
        ensure!(note["status"] == "published", "{note}");
    }
    node.stop()
}
