//! Gathers the [`Facts`] the checker needs from a settled cluster: the raw records of
//! `notes.commands`, `notes.outcomes` and `notes.events` (read outside any group, as
//! `notesaga check` does, and decoded through the registry), each note as its owner
//! reads it, the sagas' states, and the read models before and after a fresh rebuild.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result};
use notesaga_events::{
    notes::{NotesCommand, NotesEvent, NotesOutcome},
    topics, Message as _,
};
use notesaga_log::AvroCodec;
use notesaga_testkit::{read_topic, Cluster, RawRecord};
use sqlx::{sqlite::SqliteConnectOptions, Row as _, SqlitePool};
use uuid::Uuid;

use crate::verdict::{CommandKind, CommandRecord, EventRecord, Facts, NoteRead, OutcomeRecord};

/// The read-model tables a rebuild must reproduce row for row.
const REBUILT_TABLES: [&str; 5] = [
    "notes",
    "note_artifacts",
    "command_outcomes",
    "sagas",
    "saga_timeline",
];

async fn raw(kafka: &str, topic: &'static str) -> Result<Vec<RawRecord>> {
    let kafka = kafka.to_owned();
    tokio::task::spawn_blocking(move || read_topic(&kafka, topic))
        .await?
        .with_context(|| format!("read {topic}"))
}

fn header_id(record: &RawRecord, name: &str) -> Option<Uuid> {
    record.header(name).and_then(|v| v.parse().ok())
}

/// The log's part of the facts; undecodable records are counted, not hidden.
pub(crate) async fn log_facts(cluster: &Cluster, facts: &mut Facts) -> Result<usize> {
    let codec = AvroCodec::new(&cluster.registry_url);
    let kafka = cluster.kafka_addr();
    let mut undecodable = 0;
    for record in raw(kafka, topics::NOTES_COMMANDS).await? {
        let Ok(command) = codec
            .decode::<NotesCommand>(topics::NOTES_COMMANDS, record.value.as_deref())
            .await
        else {
            undecodable += 1;
            continue;
        };
        let Some(command_id) = header_id(&record, "command_id") else {
            undecodable += 1;
            continue;
        };
        let (kind, title) = match &command {
            NotesCommand::CreateNote(c) => (CommandKind::Create, Some(c.title.clone())),
            NotesCommand::EditNote(c) => (CommandKind::Edit, Some(c.title.clone())),
            NotesCommand::DeleteNote(_) => (CommandKind::Delete, None),
            _ => (CommandKind::Other, None),
        };
        facts.commands.push(CommandRecord {
            command_id,
            note_id: command.note_id(),
            kind,
            title,
        });
    }
    for record in raw(kafka, topics::NOTES_OUTCOMES).await? {
        match codec
            .decode::<NotesOutcome>(topics::NOTES_OUTCOMES, record.value.as_deref())
            .await
        {
            Ok(NotesOutcome::CommandApplied(o)) => facts.outcomes.push(OutcomeRecord {
                command_id: o.command_id,
                applied: true,
                version: o.version,
                code: None,
            }),
            Ok(NotesOutcome::CommandRejected(o)) => facts.outcomes.push(OutcomeRecord {
                command_id: o.command_id,
                applied: false,
                version: None,
                code: Some(o.code),
            }),
            Err(_) => undecodable += 1,
        }
    }
    for record in raw(kafka, topics::NOTES_EVENTS).await? {
        let decoded = codec
            .decode::<NotesEvent>(topics::NOTES_EVENTS, record.value.as_deref())
            .await;
        match (decoded, header_id(&record, "event_id")) {
            (Ok(event), Some(event_id)) => facts.events.push(EventRecord {
                event_id,
                note_id: event.note_id(),
                version: event.version(),
                kind: event.event_type().to_owned(),
            }),
            _ => undecodable += 1,
        }
    }
    Ok(undecodable)
}

/// Each note the clients' commands name, as its owner reads it now.
pub(crate) async fn read_notes(base: &str, facts: &mut Facts) -> Result<()> {
    let mut owners: BTreeMap<Uuid, usize> = BTreeMap::new();
    for command in &facts.commands {
        let client = command
            .title
            .as_deref()
            .and_then(|t| t.strip_prefix('c'))
            .and_then(|t| t.split('-').next())
            .and_then(|c| c.parse().ok());
        if let (CommandKind::Create, Some(client)) = (command.kind, client) {
            owners.insert(command.note_id, client);
        }
    }
    let mut clients: BTreeMap<usize, reqwest::Client> = BTreeMap::new();
    for (note, client) in owners {
        let http = clients
            .entry(client)
            .or_insert_with(|| notesaga_testkit::http_as(&crate::load::user(client), false));
        let response = http.get(format!("{base}/v1/notes/{note}")).send().await?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        facts.notes.insert(
            note,
            NoteRead {
                status,
                version: (status == 200).then(|| body["version"].as_i64()).flatten(),
                title: (status == 200)
                    .then(|| body["title"].as_str().map(str::to_owned))
                    .flatten(),
            },
        );
    }
    Ok(())
}

async fn projections(data_dir: &Path) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(data_dir.join("projections.db"))
        .read_only(true);
    Ok(SqlitePool::connect_with(options).await?)
}

/// Waits (up to `bound`) until no saga is running or compensating and the read models
/// stopped changing: what the checks compare must hold still.
pub(crate) async fn settle(data_dir: &Path, bound: std::time::Duration) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + bound;
    let mut last = None;
    loop {
        let pool = projections(data_dir).await?;
        let at_work: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM sagas WHERE state IN ('running', 'compensating')",
        )
        .fetch_one(&pool)
        .await?
        .try_get("n")?;
        let rows: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM saga_timeline) + (SELECT COUNT(*) FROM command_outcomes) \
             + (SELECT COUNT(*) FROM note_artifacts) AS n",
        )
        .fetch_one(&pool)
        .await?
        .try_get("n")?;
        pool.close().await;
        if at_work == 0 && last == Some(rows) {
            return Ok(true);
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!("chaos: still {at_work} sagas at work after {bound:?}");
            return Ok(false);
        }
        last = Some(rows);
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// The sagas neither finished nor parked, and the parked ones with their reasons.
pub(crate) async fn sagas(data_dir: &Path, facts: &mut Facts) -> Result<()> {
    let pool = projections(data_dir).await?;
    for row in sqlx::query("SELECT saga_id, note_id, state, failure_reason FROM sagas")
        .fetch_all(&pool)
        .await?
    {
        let saga: Uuid = row.try_get::<String, _>("saga_id")?.parse()?;
        let note: Uuid = row.try_get::<String, _>("note_id")?.parse()?;
        let state: String = row.try_get("state")?;
        match state.as_str() {
            "completed" | "compensated" | "superseded" => {}
            "compensation_failed" => {
                facts
                    .parked_sagas
                    .push((saga, note, row.try_get("failure_reason")?));
            }
            _ => facts.unfinished_sagas.push((saga, note, state)),
        }
    }
    pool.close().await;
    Ok(())
}

/// Every row of the rebuilt tables, as text, in a stable order.
pub(crate) async fn snapshot(data_dir: &Path) -> Result<BTreeMap<&'static str, Vec<String>>> {
    let pool = projections(data_dir).await?;
    let mut tables = BTreeMap::new();
    for table in REBUILT_TABLES {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({table})"))
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?;
        let select = columns
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let mut rows: Vec<String> = sqlx::query(&format!("SELECT {select} AS r FROM {table}"))
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>("r"))
            .collect::<Result<_, _>>()?;
        rows.sort();
        tables.insert(table, rows);
    }
    pool.close().await;
    Ok(tables)
}

/// The rows that differ between two snapshots (at most a few per table).
pub(crate) fn differences(
    before: &BTreeMap<&'static str, Vec<String>>,
    after: &BTreeMap<&'static str, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, rows) in before {
        let empty = Vec::new();
        let other = after.get(table).unwrap_or(&empty);
        let only_before: Vec<_> = rows.iter().filter(|r| !other.contains(r)).collect();
        let only_after: Vec<_> = other.iter().filter(|r| !rows.contains(r)).collect();
        for row in only_before.iter().take(3) {
            out.push(format!("{table}: live only: {row}"));
        }
        for row in only_after.iter().take(3) {
            out.push(format!("{table}: rebuild only: {row}"));
        }
        let more = (only_before.len() + only_after.len()).saturating_sub(6);
        if more > 0 {
            out.push(format!("{table}: {more} more differing rows"));
        }
    }
    out
}
