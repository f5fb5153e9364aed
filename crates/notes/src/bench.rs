//! `notesaga bench notes`: the notes processor's throughput and its aggregate rebuild,
//! each printed beside the plain log rate of the same run with records of the same size.
//!
//! - processing: `CreateNote` commands with 1 KB bodies produced to `notes.commands`, the
//!   processor (the same `ConsumerLoop` + `NotesProcessor` the role runs) appending
//!   `NoteCreated` and the outcome; timed from the first send to the last outcome read.
//!   Beside it: plain rdkafka produce→consume of records of the same size.
//! - rebuild: what a processor does when it is assigned partitions (read `notes.events`
//!   and `notes.outcomes`, decode, fold); beside it: plain rdkafka reading the same
//!   records as raw bytes.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{stream, StreamExt as _, TryStreamExt as _};
use notesaga_events::{
    notes::{CreateNote, NotesCommand},
    topics::{NOTES_COMMANDS, NOTES_EVENTS, NOTES_OUTCOMES},
};
use notesaga_log::{
    bench::{plain_read_rate, plain_run},
    topics::ensure_topics,
    AvroCodec, ConsumerLoop, KafkaConfig, Metadata, Publisher, Result,
};
use rdkafka::{
    consumer::{Consumer as _, StreamConsumer},
    message::Message as _,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::NotesProcessor;

/// Commands in flight at once.
const IN_FLIGHT: usize = 1000;

/// The figures of one run, records/s.
#[derive(Debug, Clone, Copy)]
pub struct NotesFigures {
    /// Plain rdkafka produce→consume, records of the command's size.
    pub plain: f64,
    /// The same with headers of the contract's size on every record (tansu stores each
    /// header as a row, so this is the broker's rate for records shaped like ours).
    pub plain_headers: f64,
    /// Commands handled by the notes processor.
    pub processing: f64,
    /// Plain rdkafka reading the rebuilt partitions as raw bytes.
    pub plain_read: f64,
    /// Events (and outcomes) read, decoded and folded by the rebuild.
    pub rebuild: f64,
}

/// Runs the benchmark `runs` times on the broker behind `kafka` (a fresh one: the
/// processor reads the real `notes.*` topics) and prints every run and the best.
pub async fn run_notes_bench(
    kafka: &KafkaConfig,
    registry_url: &str,
    commands: usize,
    body_size: usize,
    partitions: i32,
    runs: usize,
) -> Result<NotesFigures> {
    ensure_topics(kafka, partitions).await?;
    let codec = Arc::new(AvroCodec::new(registry_url));
    let publisher = Publisher::new(kafka, codec)?;
    println!(
        "notesaga bench notes: {commands} CreateNote commands with {body_size}-byte bodies, {partitions} partitions, {runs} runs, broker {}",
        kafka.bootstrap_servers
    );
    let mut best: Option<NotesFigures> = None;
    for run in 1..=runs.max(1) {
        let sample = command(body_size);
        let size = publisher
            .codec()
            .encode(NOTES_COMMANDS, &sample)
            .await?
            .len();
        let plain = plain_run(kafka, commands, size, false).await?;
        let plain_headers = plain_run(kafka, commands, size, true).await?;
        let processing = processing_run(kafka, &publisher, commands, body_size).await?;
        let (plain_read_all, both_read) = plain_read_both(kafka, partitions).await?;
        let rebuild_secs = rebuild_run(kafka, &publisher, partitions).await?;
        let figures = NotesFigures {
            plain,
            plain_headers,
            processing,
            plain_read: both_read,
            rebuild: plain_read_all as f64 / rebuild_secs,
        };
        println!(
            "run {run}: processing {:.0} commands/s vs plain produce→consume {:.0} records/s ({:.1}%), with headers {:.0} records/s ({:.1}%); rebuild {:.0} records/s vs plain read {:.0} records/s ({:.1}%) over {plain_read_all} records",
            figures.processing,
            figures.plain,
            100.0 * figures.processing / figures.plain,
            figures.plain_headers,
            100.0 * figures.processing / figures.plain_headers,
            figures.rebuild,
            figures.plain_read,
            100.0 * figures.rebuild / figures.plain_read,
        );
        best = Some(match best {
            None => figures,
            Some(b) => NotesFigures {
                plain: b.plain.max(figures.plain),
                plain_headers: b.plain_headers.max(figures.plain_headers),
                processing: b.processing.max(figures.processing),
                plain_read: b.plain_read.max(figures.plain_read),
                rebuild: b.rebuild.max(figures.rebuild),
            },
        });
    }
    let best = best.expect("at least one run");
    println!(
        "best: processing {:.0}/s = {:.1}% of plain {:.0}/s (target ≥ 50%), {:.1}% of plain with headers {:.0}/s; rebuild {:.0}/s = {:.1}% of plain read {:.0}/s (target ≥ 80%)",
        best.processing,
        100.0 * best.processing / best.plain,
        best.plain,
        100.0 * best.processing / best.plain_headers,
        best.plain_headers,
        best.rebuild,
        100.0 * best.rebuild / best.plain_read,
        best.plain_read
    );
    Ok(best)
}

fn command(body_size: usize) -> NotesCommand {
    NotesCommand::CreateNote(CreateNote {
        note_id: Uuid::new_v4(),
        owner: "bench".into(),
        title: "Benchmark note".into(),
        body: "x".repeat(body_size),
    })
}

/// Commands/s through the processor: first send to last outcome.
async fn processing_run(
    kafka: &KafkaConfig,
    publisher: &Publisher,
    commands: usize,
    body_size: usize,
) -> Result<f64> {
    let messages: Vec<NotesCommand> = (0..commands).map(|_| command(body_size)).collect();
    let wanted: HashSet<String> = messages
        .iter()
        .map(|m| notesaga_events::Message::note_id(m).to_string())
        .collect();
    // Outcomes are keyed by note id: count this run's.
    let outcomes: StreamConsumer = kafka
        .consumer(&format!("notesaga.bench.{}", Uuid::new_v4().simple()))
        .create()?;
    outcomes.subscribe(&[NOTES_OUTCOMES])?;
    let shutdown = CancellationToken::new();
    let processor = NotesProcessor::new(kafka.clone(), publisher.clone());
    let group = format!("notesaga.notes.bench.{}", Uuid::new_v4().simple());
    let consumer = ConsumerLoop::new(kafka.clone(), group, &[NOTES_COMMANDS], publisher.clone())
        .with_batch(crate::BATCH);
    let running = tokio::spawn(consumer.run::<NotesCommand, _>(processor, shutdown.clone()));

    let started = Instant::now();
    let produce = stream::iter(messages.iter())
        .map(|message| async move {
            let id = Uuid::new_v4();
            publisher
                .publish(
                    NOTES_COMMANDS,
                    message,
                    &Metadata::new(id, "bench").with_command(id),
                )
                .await
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) });
    let count = async {
        let mut seen = HashSet::new();
        while seen.len() < wanted.len() {
            let message = outcomes.recv().await?;
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            if wanted.contains(&key) {
                seen.insert(key);
            }
        }
        Ok::<_, notesaga_log::Error>(())
    };
    // A failed send or read ends the run with its error instead of hanging.
    let outcome = tokio::try_join!(produce, count);
    if outcome.is_err() {
        shutdown.cancel();
    }
    outcome?;
    let elapsed = started.elapsed();
    shutdown.cancel();
    running.await.expect("processor task")?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(commands as f64 / elapsed.as_secs_f64())
}

/// Raw read of `notes.events` and `notes.outcomes` together, as the rebuild reads them.
async fn plain_read_both(kafka: &KafkaConfig, partitions: i32) -> Result<(usize, f64)> {
    let started = Instant::now();
    let (events, _) = plain_read_rate(kafka, NOTES_EVENTS, partitions).await?;
    let (outcomes, _) = plain_read_rate(kafka, NOTES_OUTCOMES, partitions).await?;
    let records = events + outcomes;
    Ok((records, records as f64 / started.elapsed().as_secs_f64()))
}

/// Seconds to rebuild every partition as an assigned processor does.
async fn rebuild_run(kafka: &KafkaConfig, publisher: &Publisher, partitions: i32) -> Result<f64> {
    let processor = NotesProcessor::new(kafka.clone(), publisher.clone());
    let started = Instant::now();
    for partition in 0..partitions {
        processor
            .rebuild_for_bench(partition)
            .await
            .map_err(|err| notesaga_log::Error::Handler(err.to_string()))?;
    }
    Ok(started.elapsed().as_secs_f64())
}
