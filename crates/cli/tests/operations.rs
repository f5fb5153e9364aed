//! The operator and analyst commands that read Kafka directly (issue 15), end to end on
//! a real broker and registry: `notesaga dlq` (list, redrive, discard, audit), `notesaga
//! tail` and `notesaga note history`.
//!
//! The fixable dead letter: a narration command whose audio store cannot be looked at.
//! The test puts a regular file where the note's audio directory goes
//! (`audio/narrations/<note>`), so the processor's look-up fails with "Not a directory",
//! a transient failure the consumer loop retries until its budget is spent and then
//! dead-letters. Removing the file is the fix an operator makes (the volume is mended),
//! and a redrive then lands the narration. It needs no fault point: the failure is a
//! real I/O error of the real store.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use anyhow::{bail, ensure, Context as _, Result};
use notesaga_events::{
    narration::{NarrateNote, NarrationCommand},
    topics::NARRATION_COMMANDS,
};
use notesaga_log::{AvroCodec, KafkaConfig, Metadata, Publisher};
use notesaga_testkit::{client, notesaga, read_topic, Cluster, ROLES};
use rdkafka::message::OwnedHeaders;
use serde_json::Value;
use tempfile::TempDir;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);
const GROUP: &str = "notesaga.narration";

/// Runs an operator command; returns its exit status, stdout and stderr apart (stdout is
/// what scripts parse).
fn run(command: &mut Command) -> Result<(std::process::ExitStatus, String, String)> {
    let output = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    Ok((
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// `notesaga ARGS… --kafka-addr … --registry-addr …` against the cluster; fails unless
/// it exits 0, and returns its stdout.
fn cli(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let mut command = notesaga()?;
    command.args(args).args([
        "--kafka-addr",
        cluster.kafka_addr(),
        "--registry-addr",
        &cluster.registry_url,
        "--data-dir",
        "/nonexistent-notesaga-data-dir",
    ]);
    let (status, stdout, stderr) = run(&mut command)?;
    ensure!(
        status.success(),
        "notesaga {args:?} exited with {status}:\n{stdout}\n{stderr}"
    );
    Ok(stdout)
}

/// JSON lines, each one parsed (an error names the line that is not JSON).
fn json_lines(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect()
}

fn dead_letters(cluster: &Cluster) -> Result<Vec<Value>> {
    let out = cli(
        cluster,
        &["dlq", "list", "--group", GROUP, "--output", "json"],
    )?;
    let list: Value = serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))?;
    Ok(list.as_array().context("an array")?.clone())
}

async fn wait_dead_letters(cluster: &Cluster, count: usize) -> Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let letters = dead_letters(cluster)?;
        if letters.len() >= count {
            return Ok(letters);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{count} dead letters did not appear: {letters:#?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Blocks the audio store for one note: a regular file where its directory goes.
fn block_audio(data_dir: &Path, note: Uuid) -> Result<std::path::PathBuf> {
    let dir = data_dir.join("audio").join("narrations");
    std::fs::create_dir_all(&dir)?;
    let blocker = dir.join(note.to_string());
    std::fs::write(&blocker, b"not a directory")?;
    Ok(blocker)
}

/// The narration replies for `note` on narration.events, by record name.
fn narration_replies(cluster: &Cluster, note: Uuid) -> Result<Vec<String>> {
    let out = cli(
        cluster,
        &[
            "tail",
            "narration.events",
            "--decode",
            "--key",
            &note.to_string(),
        ],
    )?;
    Ok(json_lines(&out)?
        .iter()
        .map(|r| r["record"].as_str().unwrap_or_default().to_owned())
        .collect())
}

fn offsets_where(letters: &[Value], f: impl Fn(&Value) -> bool) -> Vec<i64> {
    letters
        .iter()
        .filter(|l| f(l))
        .filter_map(|l| l["dlq_offset"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_dead_letter_is_redriven_to_its_group_once_and_audited() -> Result<()> {
    let cluster = Cluster::start_configured(
        &[],
        &["narration"],
        &[("NOTESAGA_NARRATION_PROVIDER", "silent")],
    )
    .await?;
    let kafka = KafkaConfig::new(cluster.kafka_addr());
    let publisher = Publisher::new(&kafka, Arc::new(AvroCodec::new(&cluster.registry_url)))?;

    // A command whose store look-up fails past the retry budget, and a poison record.
    let (fixable, doomed) = (Uuid::new_v4(), Uuid::new_v4());
    let blocker = block_audio(cluster.data_dir(), fixable)?;
    let doomed_blocker = block_audio(cluster.data_dir(), doomed)?;
    for note in [fixable, doomed] {
        let command = NarrationCommand::NarrateNote(NarrateNote {
            note_id: note,
            version: 1,
            text: "Mitochondria make energy.".into(),
        });
        publisher
            .publish(
                NARRATION_COMMANDS,
                &command,
                &Metadata::new(Uuid::new_v4(), "ops-test"),
            )
            .await?;
    }
    publisher
        .send_raw(
            NARRATION_COMMANDS,
            Some(Uuid::new_v4().to_string().as_bytes()),
            Some(b"\x07 not avro at all"),
            OwnedHeaders::new(),
        )
        .await?;

    let letters = wait_dead_letters(&cluster, 3).await?;
    let gave_up = |l: &Value| {
        l["error"]
            .as_str()
            .is_some_and(|e| e.contains("gave up after"))
    };
    let poison = offsets_where(&letters, |l| {
        l["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("undecodable"))
    });
    assert_eq!(poison.len(), 1, "{letters:#?}");
    let fixable_at = offsets_where(&letters, |l| {
        gave_up(l) && l["note_id"] == fixable.to_string()
    });
    let doomed_at = offsets_where(&letters, |l| {
        gave_up(l) && l["note_id"] == doomed.to_string()
    });
    assert_eq!((fixable_at.len(), doomed_at.len()), (1, 1), "{letters:#?}");
    for letter in &letters {
        assert_eq!(letter["status"], "pending");
        assert_eq!(letter["topic"], NARRATION_COMMANDS, "{letter}");
        assert_eq!(letter["group"], GROUP);
    }
    let commands_before = read_topic(cluster.kafka_addr(), NARRATION_COMMANDS)?.len();
    assert_eq!(commands_before, 3);

    // A dry run says what it would do and does nothing.
    let fixable_offset = fixable_at[0].to_string();
    let dry = cli(
        &cluster,
        &[
            "dlq",
            "redrive",
            GROUP,
            "--offset",
            &fixable_offset,
            "--dry-run",
        ],
    )?;
    assert!(dry.contains("would redrive"), "{dry}");
    assert!(read_topic(cluster.kafka_addr(), "notesaga.narration.redrive")?.is_empty());

    // The fix, then the redrive: the narration lands, once.
    std::fs::remove_file(&blocker)?;
    let out = cli(
        &cluster,
        &[
            "dlq",
            "redrive",
            GROUP,
            "--offset",
            &fixable_offset,
            "--operator",
            "test-operator",
            "--rate",
            "20",
        ],
    )?;
    assert!(out.contains("redrove 1 of 1"), "{out}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !narration_replies(&cluster, fixable)?
        .iter()
        .any(|r| r == "notesaga.narration.NarrationCompleted")
    {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the redriven narration did not land"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A second redrive of the same dead letter is refused (it was dealt with).
    let again = cli(
        &cluster,
        &["dlq", "redrive", GROUP, "--offset", &fixable_offset],
    )?;
    assert!(again.contains("nothing to redrive"), "{again}");

    // The record went to the group's own redrive topic only: the command topic (read by
    // analysts too) got nothing, and no group but notesaga.narration reads the redrive
    // topic (the subscription of every role is checked in the log crate's tests).
    assert_eq!(
        read_topic(cluster.kafka_addr(), NARRATION_COMMANDS)?.len(),
        commands_before
    );
    let redriven = read_topic(cluster.kafka_addr(), "notesaga.narration.redrive")?;
    assert_eq!(redriven.len(), 1);
    assert_eq!(
        redriven[0].header("redrive.topic"),
        Some(NARRATION_COMMANDS)
    );
    assert_eq!(
        redriven[0].header("dlq.error"),
        None,
        "dlq.* headers are dropped"
    );
    assert_eq!(
        redriven[0].key.as_deref(),
        Some(fixable.to_string().as_bytes())
    );

    // A redriven record that fails again goes back to the DLQ once: the doomed note's
    // store is still blocked.
    let doomed_offset = doomed_at[0].to_string();
    cli(
        &cluster,
        &["dlq", "redrive", GROUP, "--offset", &doomed_offset],
    )?;
    let letters = wait_dead_letters(&cluster, 4).await?;
    let again: Vec<&Value> = letters
        .iter()
        .filter(|l| l["redriven_before"] == true)
        .collect();
    assert_eq!(again.len(), 1, "{letters:#?}");
    assert_eq!(again[0]["note_id"], doomed.to_string());
    assert_eq!(
        again[0]["topic"], NARRATION_COMMANDS,
        "its first origin is kept"
    );
    assert_eq!(again[0]["status"], "pending");
    std::fs::remove_file(&doomed_blocker)?;

    // Discard the poison record; the audit lists both actions.
    let poison_offset = poison[0].to_string();
    cli(
        &cluster,
        &[
            "dlq",
            "discard",
            GROUP,
            "--offset",
            &poison_offset,
            "--operator",
            "test-operator",
            "--reason",
            "not a record of ours",
        ],
    )?;
    let audit: Value = serde_json::from_str(&cli(
        &cluster,
        &["dlq", "audit", "--group", GROUP, "--output", "json"],
    )?)?;
    let audit = audit.as_array().context("an array")?;
    assert_eq!(audit.len(), 3, "{audit:#?}");
    assert_eq!(audit[0]["action"], "redrive");
    assert_eq!(audit[0]["operator"], "test-operator");
    assert_eq!(audit[0]["records"][0]["dlq_offset"], fixable_at[0]);
    assert_eq!(audit[0]["target"], "notesaga.narration.redrive");
    assert!(
        audit[1]["operator"].as_str().is_some_and(|o| !o.is_empty()),
        "the OS user: {audit:#?}"
    );
    assert_eq!(audit[2]["action"], "discard");
    assert_eq!(audit[2]["reason"], "not a record of ours");

    let letters = dead_letters(&cluster)?;
    let status_of = |offset: i64| {
        letters
            .iter()
            .find(|l| l["dlq_offset"] == offset)
            .map(|l| l["status"].clone())
    };
    assert_eq!(status_of(fixable_at[0]), Some("redriven".into()));
    assert_eq!(status_of(poison[0]), Some("discarded".into()));
    let pending = cli(
        &cluster,
        &[
            "dlq", "list", "--group", GROUP, "--status", "pending", "--output", "json",
        ],
    )?;
    let pending: Vec<Value> = serde_json::from_str(&pending)?;
    assert_eq!(pending.len(), 1, "only the doomed record's second failure");

    // The effect landed once: one reply and one audio file for the fixed note.
    let replies = narration_replies(&cluster, fixable)?;
    assert_eq!(
        replies,
        ["notesaga.narration.NarrationCompleted"],
        "{replies:?}"
    );
    let audio = cluster
        .data_dir()
        .join("audio")
        .join("narrations")
        .join(fixable.to_string());
    assert_eq!(std::fs::read_dir(audio)?.count(), 1);
    // `dlq show` decodes it.
    let shown: Value =
        serde_json::from_str(&cli(&cluster, &["dlq", "show", GROUP, &fixable_offset])?)?;
    assert_eq!(shown["record"], "notesaga.narration.NarrateNote");
    assert_eq!(shown["value"]["note_id"], fixable.to_string());
    assert_eq!(shown["status"], "redriven");
    Ok(())
}

/// Short deadlines so a failed narration plays out in seconds.
const FAST_SAGAS: [(&str, &str); 7] = [
    ("NOTESAGA_SAGA_NARRATION_DEADLINE_MS", "3000"),
    ("NOTESAGA_SAGA_NARRATION_DEADLINE_PER_KB_MS", "0"),
    ("NOTESAGA_SAGA_OTHER_DEADLINE_MS", "3000"),
    ("NOTESAGA_SAGA_MAX_ATTEMPTS", "2"),
    ("NOTESAGA_SAGA_BACKOFF_MS", "200"),
    ("NOTESAGA_SAGA_BACKOFF_MAX_MS", "500"),
    ("NOTESAGA_NARRATION_PROVIDER", "silent"),
];

#[tokio::test(flavor = "multi_thread")]
async fn tail_and_note_history_name_every_event_of_a_note() -> Result<()> {
    let faults = TempDir::new()?;
    let dir = faults.path().to_str().context("utf-8 path")?;
    let mut env = FAST_SAGAS.to_vec();
    env.push(("NOTESAGA_FAULTS_DIR", dir));
    let cluster = Cluster::start_configured(&[], &ROLES, &env).await?;
    let api = cluster.http_url.clone();

    let (status, body) = client::create(&api, "Cells", "Mitochondria make energy.").await?;
    ensure!(status == 202, "create: {status} {body}");
    let note = body["note_id"].as_str().context("note_id")?.to_owned();
    client::wait_note(&api, &note, WAIT, |s, n| {
        s == 200 && n["status"] == "published"
    })
    .await?;
    // Version 2's narration fails for good: the saga compensates, the version fails.
    std::fs::write(faults.path().join("narration.render"), "always")?;
    let (status, body) = client::edit(&api, &note, "Cells", "Ribosomes make proteins.").await?;
    ensure!(status == 202, "edit: {status} {body}");
    client::wait_note(&api, &note, WAIT, |s, n| {
        s == 200 && n["version"] == 2 && n["status"] == "failed"
    })
    .await?;
    std::fs::remove_file(faults.path().join("narration.render"))?;
    let (status, body) = client::delete(&api, &note).await?;
    ensure!(status == 202, "delete: {status} {body}");
    client::wait_note(&api, &note, WAIT, |s, _| s == 410).await?;
    // The cleanup saga has run when the note's second saga completed (the first
    // published version 1; version 2's was compensated).
    let deadline = tokio::time::Instant::now() + WAIT;
    let history = loop {
        let history = json_lines(&cli(&cluster, &["note", "history", &note])?)?;
        let completed = history
            .iter()
            .filter(|r| r["record"] == "notesaga.saga.SagaCompleted")
            .count();
        if completed >= 2 {
            break history;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the cleanup saga did not complete: {history:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // tail: the note's own events, decoded.
    let tail = json_lines(&cli(
        &cluster,
        &["tail", "notes.events", "--decode", "--key", &note],
    )?)?;
    let names: Vec<&str> = tail.iter().filter_map(|r| r["record"].as_str()).collect();
    let position = |name: &str| names.iter().position(|n| *n == name);
    let created = position("notesaga.notes.NoteCreated").context("NoteCreated")?;
    let edited = position("notesaga.notes.NoteEdited").context("NoteEdited")?;
    let deleted = position("notesaga.notes.NoteDeleted").context("NoteDeleted")?;
    assert!(created < edited && edited < deleted, "log order: {names:?}");
    assert!(
        names.contains(&"notesaga.notes.NotePublicationFailed"),
        "{names:?}"
    );
    for record in &tail {
        assert_eq!(record["key"], note.as_str());
        assert_eq!(record["topic"], "notes.events");
        assert!(record["schema_id"].as_u64().is_some(), "{record}");
        assert!(record["offset"].as_i64().is_some() && record["partition"].as_i64().is_some());
        assert!(record["headers"]["event_id"].is_string(), "{record}");
        assert_eq!(record["value"]["note_id"], note.as_str());
    }

    // note history: every record of the note across the topics, in time order.
    let names: Vec<String> = history
        .iter()
        .map(|r| {
            r["record"]
                .as_str()
                .unwrap_or_default()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for required in [
        "CreateNote",
        "NoteCreated",
        "SagaStarted",
        "GenerateEmbedding",
        "EmbeddingGenerated",
        "NarrateNote",
        "NarrationCompleted",
        "PublishNoteVersion",
        "NotePublished",
        "SagaCompleted",
        "EditNote",
        "NoteEdited",
        "NarrationFailed",
        "StepFailed",
        "MarkNoteVersionFailed",
        "NotePublicationFailed",
        "DeleteEmbedding",
        "DeleteNarration",
        "SagaCompensated",
        "DeleteNote",
        "NoteDeleted",
        "CommandApplied",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "{required} missing from the history: {names:?}"
        );
    }
    let topics: std::collections::BTreeSet<&str> =
        history.iter().filter_map(|r| r["topic"].as_str()).collect();
    for topic in [
        "notes.commands",
        "notes.events",
        "notes.outcomes",
        "embedding.commands",
        "embedding.events",
        "narration.commands",
        "narration.events",
        "saga.note-pipeline",
    ] {
        assert!(topics.contains(topic), "{topic} in {topics:?}");
    }
    let order: Vec<(i64, String, i64, i64)> = history
        .iter()
        .map(|r| {
            (
                r["timestamp"].as_i64().unwrap_or(-1),
                r["topic"].as_str().unwrap_or_default().to_owned(),
                r["partition"].as_i64().unwrap_or(-1),
                r["offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "ordered by timestamp, topic, partition, offset"
    );
    assert!(history.iter().all(|r| r["key"] == note.as_str()));
    Ok(())
}
