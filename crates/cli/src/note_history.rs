//! `notesaga note history NOTE_ID`: every record of one note across the topics — its
//! commands, events and outcomes, the embedding and narration commands and replies, the
//! saga's transitions, and any dead letters and redriven copies — decoded through the
//! registry, as JSON lines ordered by record timestamp, then topic, partition, offset.
//!
//! Everything about a note is keyed by its id, so the key picks its records out of every
//! partition; nothing but the log is read (the source of truth, not a projection).

use std::{io::Write as _, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use notesaga_events::topics::{dlq_topic, redrive_topic, FLOW_TOPICS, GROUPS, REDRIVE_GROUPS};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::logread::{LogArgs, RawRecord, Start};

/// `notesaga note`.
#[derive(Debug, Clone, Args)]
pub(crate) struct NoteArgs {
    #[command(subcommand)]
    pub(crate) command: NoteCommand,
}

/// What to do with one note.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum NoteCommand {
    /// Every record of the note across the topics, decoded, as JSON lines in time order.
    History {
        /// The note id.
        note_id: Uuid,
        #[command(flatten)]
        log: LogArgs,
    },
}

/// Runs `note`; exit 2 when the log cannot be read.
pub(crate) async fn run(args: NoteArgs, shutdown: CancellationToken) -> ExitCode {
    let NoteCommand::History { note_id, log } = args.command;
    match history(note_id, &log, &shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("notesaga note history: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// The topics a note's records may be on.
fn note_topics() -> Vec<String> {
    FLOW_TOPICS
        .iter()
        .map(|t| (*t).to_owned())
        .chain(GROUPS.iter().map(|g| dlq_topic(g)))
        .chain(REDRIVE_GROUPS.iter().map(|g| redrive_topic(g)))
        .collect()
}

/// Time order, then the log's coordinates: one total order, the same on every run.
fn sort(records: &mut [RawRecord]) {
    records.sort_by(|a, b| {
        (a.timestamp, &a.topic, a.partition, a.offset).cmp(&(
            b.timestamp,
            &b.topic,
            b.partition,
            b.offset,
        ))
    });
}

async fn history(note_id: Uuid, args: &LogArgs, shutdown: &CancellationToken) -> Result<()> {
    let log = args.open()?;
    let existing = log.topics().await.with_context(|| {
        format!(
            "cannot reach the Kafka broker at {} (--kafka-addr / NOTESAGA_KAFKA_ADDR)",
            log.kafka_addr
        )
    })?;
    // A broker of an older notesaga may lack the newer topics (redrive): skip them.
    let topics: Vec<String> = note_topics()
        .into_iter()
        .filter(|t| existing.contains(t))
        .collect();
    let key = note_id.hyphenated().to_string();
    let mut records = Vec::new();
    log.scan(&topics, Start::Beginning, false, shutdown, |record| {
        if record.key_text().as_deref() == Some(key.as_str()) {
            records.push(record);
        }
        Ok(())
    })
    .await?;
    sort(&mut records);
    let mut stdout = std::io::stdout();
    for record in &records {
        let decoded = log.decode(record).await;
        if writeln!(stdout, "{}", record.to_json(decoded)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, partition: i32, offset: i64, timestamp: i64) -> RawRecord {
        RawRecord {
            topic: topic.into(),
            partition,
            offset,
            timestamp: Some(timestamp),
            key: None,
            value: None,
            headers: vec![],
        }
    }

    #[test]
    fn history_is_in_time_then_log_order() {
        let mut records = vec![
            record("saga.note-pipeline", 1, 5, 20),
            record("notes.events", 1, 7, 20),
            record("notes.events", 0, 9, 20),
            record("notes.commands", 1, 3, 10),
            record("notes.events", 1, 6, 20),
        ];
        sort(&mut records);
        let order: Vec<_> = records
            .iter()
            .map(|r| (r.topic.as_str(), r.partition, r.offset))
            .collect();
        assert_eq!(
            order,
            [
                ("notes.commands", 1, 3),
                ("notes.events", 0, 9),
                ("notes.events", 1, 6),
                ("notes.events", 1, 7),
                ("saga.note-pipeline", 1, 5),
            ]
        );
    }

    #[test]
    fn history_reads_flow_dlq_and_redrive_topics() {
        let topics = note_topics();
        for topic in [
            "notes.commands",
            "saga.note-pipeline",
            "notesaga.narration.dlq",
            "notesaga.orchestrator.redrive",
        ] {
            assert!(topics.iter().any(|t| t == topic), "{topic}");
        }
        assert!(!topics.iter().any(|t| t == "_schemas"));
    }
}
