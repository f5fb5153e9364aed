//! `notesaga bench replay`: how fast the projector rebuilds its read models from the
//! log, batched against one record per transaction, on each database asked for.
//!
//! 1. Produce: `--events` records onto the projection topics of a fresh broker, shaped
//!    like the flow writes them (see [`history`]): for every note the notes processor's
//!    `NoteCreated` and outcomes, the processors' replies (with a 256-float embedding),
//!    `NotePublished` and the saga's own events; every fourth note is edited once more,
//!    whose saga also retires the old version's artifacts. They go through the same
//!    [`Publisher`] and Avro codec the roles use, many in flight at once.
//! 2. Replay, per database: a fresh database (SQLite: a new file; PostgreSQL: a
//!    throw-away database, dropped afterwards), migrated, then the [`Projector`] the
//!    `projector` role runs, from offset 0, with its batch size (or `--batch-size`),
//!    until its stored offsets cover every record; then with batch size 1 over the first
//!    `--unbatched-events`. The rate of a run counts from its first applied record, so
//!    joining the consumer group is left out (and printed).
//!
//! The projector starts every partition at the offset its database stores, so on a fresh
//! database it reads from offset 0, as a rebuild does. Each run still joins a consumer
//! group of its own, so it never waits for the previous run's member to leave. The
//! stored offsets (`projection_offsets`), summed over the partitions, say how many
//! records it has applied.

use std::{
    collections::VecDeque,
    future::Future,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use notesaga_events::{
    embedding::{EmbeddingDeleted, EmbeddingEvent, EmbeddingGenerated},
    ids,
    narration::{NarrationCompleted, NarrationDeleted, NarrationEvent},
    notes::{CommandApplied, NoteCreated, NoteEdited, NotePublished, NotesEvent, NotesOutcome},
    saga::{SagaCompleted, SagaEvent, SagaStarted, StepRequested, StepSucceeded},
    topics::{
        EMBEDDING_EVENTS, NARRATION_EVENTS, NOTES_EVENTS, NOTES_OUTCOMES, SAGA_NOTE_PIPELINE,
    },
};
use notesaga_log::{
    producer::Appended, topics::ensure_topics, AvroCodec, KafkaConfig, Metadata, Publisher,
    PROJECTION_TOPICS,
};
use notesaga_projections::{notes::NAME as PROJECTION, Projector, ReadStore};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::args::BenchReplayArgs;

/// Records queued to the producer and not yet acknowledged, at most.
const IN_FLIGHT: usize = 20_000;
/// How often the progress lines are printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often a replay run reads the projector's stored offsets.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Dimensions of the embeddings, as the built-in embedder makes them.
const DIMENSIONS: usize = 256;

/// One record of the generated history.
#[derive(Debug, Clone, PartialEq)]
enum Record {
    Notes(NotesEvent),
    Outcome(NotesOutcome),
    Embedding(EmbeddingEvent),
    Narration(NarrationEvent),
    Saga(SagaEvent),
}

impl Record {
    fn topic(&self) -> &'static str {
        match self {
            Self::Notes(_) => NOTES_EVENTS,
            Self::Outcome(_) => NOTES_OUTCOMES,
            Self::Embedding(_) => EMBEDDING_EVENTS,
            Self::Narration(_) => NARRATION_EVENTS,
            Self::Saga(_) => SAGA_NOTE_PIPELINE,
        }
    }
}

/// A record and the headers it carries.
#[derive(Debug, Clone)]
struct Planned {
    record: Record,
    metadata: Metadata,
}

/// An acknowledgement still to come.
type Ack = Pin<Box<dyn Future<Output = notesaga_log::Result<Appended>> + Send + Sync>>;

impl Planned {
    async fn enqueue(&self, publisher: &Publisher) -> notesaga_log::Result<Ack> {
        let (topic, m) = (self.record.topic(), &self.metadata);
        Ok(match &self.record {
            Record::Notes(r) => Box::pin(publisher.enqueue(topic, r, m).await?),
            Record::Outcome(r) => Box::pin(publisher.enqueue(topic, r, m).await?),
            Record::Embedding(r) => Box::pin(publisher.enqueue(topic, r, m).await?),
            Record::Narration(r) => Box::pin(publisher.enqueue(topic, r, m).await?),
            Record::Saga(r) => Box::pin(publisher.enqueue(topic, r, m).await?),
        })
    }
}

/// A deterministic unit vector for note `seed` (a stand-in for the built-in embedder's:
/// the same size on the wire and in the database).
fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    let raw: Vec<f32> = (0..DIMENSIONS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2_000) as f32 / 1_000.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|x| x / norm).collect()
}

/// Builds one saga's records in log order, numbering the saga's own events as the
/// orchestrator does.
struct SagaWriter<'a> {
    out: &'a mut Vec<Planned>,
    correlation: String,
    note_id: Uuid,
    version: i64,
    saga_id: Uuid,
    position: u32,
    at: i64,
}

impl SagaWriter<'_> {
    fn push(&mut self, record: Record, event_id: Uuid, command_id: Option<Uuid>) {
        let mut metadata = Metadata::new(event_id, self.correlation.clone());
        metadata.command_id = command_id;
        self.out.push(Planned { record, metadata });
        // Records a few milliseconds apart, like a saga at work.
        self.at += 7;
    }

    fn saga(&mut self, event: SagaEvent) {
        let id = ids::saga_event_id(self.saga_id, self.position);
        self.position += 1;
        self.push(Record::Saga(event), id, None);
    }

    /// `StepRequested` for `step`; returns the command it sends.
    fn request(&mut self, step: &str) -> Uuid {
        let command_id = ids::saga_command_id(self.saga_id, step, 1);
        self.saga(SagaEvent::StepRequested(StepRequested {
            saga_id: self.saga_id,
            note_id: self.note_id,
            version: self.version,
            step: step.into(),
            attempt: 1,
            command_id,
            deadline_at: self.at + 30_000,
            occurred_at: self.at,
        }));
        command_id
    }

    fn succeeded(&mut self, step: &str) {
        self.saga(SagaEvent::StepSucceeded(StepSucceeded {
            saga_id: self.saga_id,
            note_id: self.note_id,
            version: self.version,
            step: step.into(),
            attempt: 1,
            occurred_at: self.at,
        }));
    }

    /// A reply of a processor to `command_id`: an event with an id derived from it.
    fn reply(&mut self, record: Record, command_id: Uuid) {
        self.push(record, ids::event_id(command_id, 0), Some(command_id));
    }

    /// `NotePublished` and its outcome, as the notes processor appends them.
    fn publish(&mut self, command_id: Uuid) {
        let (note_id, version, at) = (self.note_id, self.version, self.at);
        self.reply(
            Record::Notes(NotesEvent::NotePublished(NotePublished {
                note_id,
                version,
                occurred_at: at,
            })),
            command_id,
        );
        self.outcome(command_id, "PublishNoteVersion");
    }

    fn outcome(&mut self, command_id: Uuid, command_type: &str) {
        let outcome = NotesOutcome::CommandApplied(CommandApplied {
            command_id,
            note_id: self.note_id,
            command_type: command_type.into(),
            version: Some(self.version),
            event_ids: vec![ids::event_id(command_id, 0).to_string()],
            occurred_at: self.at,
        });
        self.push(
            Record::Outcome(outcome),
            ids::outcome_id(command_id),
            Some(command_id),
        );
    }
}

/// The records the flow writes to the projection topics for note number `index`: its
/// creation and publication (14 records) and, for every fourth note, an edit published
/// the same way whose saga then retires version 1's artifacts (20 more).
fn history(index: u64, seed: u64, body_size: usize) -> Vec<Planned> {
    let note_id = Uuid::new_v5(&Uuid::from_u64_pair(seed, 0), &index.to_le_bytes());
    let owner = format!("user-{}", index % 100);
    let mut out = Vec::with_capacity(34);
    let versions = if index % 4 == 3 { 2 } else { 1 };
    let mut at = 1_790_000_000_000 + i64::try_from(index).unwrap_or(0) * 50;
    for version in 1..=versions {
        let body = super::saga::body(seed ^ index.wrapping_mul(31) ^ version as u64, body_size);
        let title = format!("Study note {index} v{version}");
        let api_command = Uuid::new_v5(&note_id, format!("api/{version}").as_bytes());
        let saga_id = ids::saga_id(note_id, version);
        let mut w = SagaWriter {
            out: &mut out,
            correlation: api_command.to_string(),
            note_id,
            version,
            saga_id,
            position: 0,
            at,
        };
        // The notes processor: the event, then its outcome.
        let (event, command_type) = if version == 1 {
            let e = NoteCreated {
                note_id,
                owner: owner.clone(),
                version,
                title,
                body: body.clone(),
                occurred_at: w.at,
            };
            (NotesEvent::NoteCreated(e), "CreateNote")
        } else {
            let e = NoteEdited {
                note_id,
                owner: owner.clone(),
                version,
                title,
                body: body.clone(),
                occurred_at: w.at,
            };
            (NotesEvent::NoteEdited(e), "EditNote")
        };
        w.reply(Record::Notes(event), api_command);
        w.outcome(api_command, command_type);
        // The saga: embedding, narration, publish, then (after an edit) retirement.
        let retire = (version > 1).then(|| version - 1);
        w.saga(SagaEvent::SagaStarted(SagaStarted {
            saga_id,
            note_id,
            version,
            text: body,
            kind: "publish".into(),
            retire_version: retire,
            occurred_at: w.at,
        }));
        let command = w.request("embedding");
        let generated = EmbeddingGenerated {
            note_id,
            version,
            model: "notesaga-builtin-hash-v1".into(),
            dimensions: DIMENSIONS as i32,
            vector: vector(seed ^ index ^ (version as u64) << 40),
            occurred_at: w.at,
        };
        w.reply(
            Record::Embedding(EmbeddingEvent::EmbeddingGenerated(generated)),
            command,
        );
        w.succeeded("embedding");
        let command = w.request("narration");
        let completed = NarrationCompleted {
            note_id,
            version,
            audio_key: format!("{note_id}/{version}.wav"),
            content_type: "audio/wav".into(),
            duration_ms: 40_000 + (index % 20_000) as i64,
            size_bytes: 1_280_000 + (index % 640_000) as i64,
            occurred_at: w.at,
        };
        w.reply(
            Record::Narration(NarrationEvent::NarrationCompleted(completed)),
            command,
        );
        w.succeeded("narration");
        let command = w.request("publish");
        w.publish(command);
        w.succeeded("publish");
        if let Some(old) = retire {
            let command = w.request("retire_embedding");
            let deleted = EmbeddingDeleted {
                note_id,
                version: Some(old),
                deleted: 1,
                occurred_at: w.at,
            };
            w.reply(
                Record::Embedding(EmbeddingEvent::EmbeddingDeleted(deleted)),
                command,
            );
            w.succeeded("retire_embedding");
            let command = w.request("retire_narration");
            let deleted = NarrationDeleted {
                note_id,
                version: Some(old),
                deleted: 1,
                occurred_at: w.at,
            };
            w.reply(
                Record::Narration(NarrationEvent::NarrationDeleted(deleted)),
                command,
            );
            w.succeeded("retire_narration");
        }
        w.saga(SagaEvent::SagaCompleted(SagaCompleted {
            saga_id,
            note_id,
            version,
            occurred_at: w.at,
        }));
        at = w.at + 1_000;
    }
    out
}

/// Records on the projection topics now (their high watermarks, summed).
async fn records_on_topics(kafka: &KafkaConfig) -> Result<i64> {
    let mut config = kafka.client();
    config.set(
        "group.id",
        format!("notesaga.bench.marks.{}", Uuid::new_v4().simple()),
    );
    tokio::task::spawn_blocking(move || -> Result<i64> {
        let consumer: BaseConsumer = config.create()?;
        let timeout = Duration::from_secs(10);
        let mut total = 0;
        for topic in PROJECTION_TOPICS {
            let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
            let partitions = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            for partition in 0..partitions as i32 {
                let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
                total += high - low;
            }
        }
        Ok(total)
    })
    .await?
}

/// Produces `events` records, printing progress; returns the rate, records/s.
async fn produce(publisher: &Publisher, events: usize, body_size: usize) -> Result<f64> {
    let seed = u64::from(Uuid::new_v4().as_fields().0);
    let start = Instant::now();
    let mut last_report = start;
    let mut acks: VecDeque<Ack> = VecDeque::with_capacity(IN_FLIGHT);
    let mut queued = 0usize;
    let mut note = 0u64;
    'notes: loop {
        for planned in history(note, seed, body_size) {
            if queued == events {
                break 'notes;
            }
            acks.push_back(planned.enqueue(publisher).await?);
            queued += 1;
            if acks.len() >= IN_FLIGHT {
                acks.pop_front().expect("not empty").await?;
            }
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                let done = queued - acks.len();
                println!(
                    "  produced {done} / {events} ({:.0} records/s)",
                    done as f64 / start.elapsed().as_secs_f64()
                );
            }
        }
        note += 1;
    }
    while let Some(ack) = acks.pop_front() {
        ack.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "produced {events} records ({} notes) in {secs:.1} s: {:.0} records/s",
        note + 1,
        events as f64 / secs
    );
    Ok(events as f64 / secs)
}

/// A database for one replay: a URL for the store, and how to get rid of it.
#[derive(Debug)]
enum Scratch {
    Sqlite { dir: PathBuf },
    Postgres { server: url::Url, name: String },
}

impl Scratch {
    /// Creates a fresh database for the `--database-url` value `spec`.
    async fn create(spec: &str) -> Result<Self> {
        if spec == "sqlite" || spec == "sqlite:" {
            let dir = std::env::temp_dir()
                .join(format!("notesaga-bench-replay-{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            return Ok(Self::Sqlite { dir });
        }
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            let server = url::Url::parse(spec)
                .with_context(|| format!("--database-url {spec:?} is not a URL"))?;
            let name = format!("notesaga_bench_{}", Uuid::new_v4().simple());
            let admin = notesaga_sql::connect(with_database(&server, "postgres").as_str(), 1)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {spec}"))?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .with_context(|| format!("cannot create the database {name}"))?;
            admin.close().await;
            return Ok(Self::Postgres { server, name });
        }
        bail!("--database-url {spec:?}: expected `sqlite` or a postgres:// server URL")
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "SQLite",
            Self::Postgres { .. } => "PostgreSQL",
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite { dir } => format!("sqlite://{}/replay.db?mode=rwc", dir.display()),
            Self::Postgres { server, name } => with_database(server, name).to_string(),
        }
    }

    /// Removes the database; best effort, reported.
    async fn destroy(self) {
        let result = match &self {
            Self::Sqlite { dir } => std::fs::remove_dir_all(dir).map_err(anyhow::Error::from),
            Self::Postgres { server, name } => {
                async {
                    let admin =
                        notesaga_sql::connect(with_database(server, "postgres").as_str(), 1)
                            .await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await?;
                    admin.close().await;
                    anyhow::Ok(())
                }
                .await
            }
        };
        if let Err(err) = result {
            eprintln!(
                "warning: cannot remove the scratch database {}: {err:#}",
                self.url()
            );
        }
    }
}

/// `server` with its path set to `/database`.
fn with_database(server: &url::Url, database: &str) -> url::Url {
    let mut url = server.clone();
    url.set_path(&format!("/{database}"));
    url
}

/// What one replay run measured.
#[derive(Debug, Clone, Copy)]
struct Replay {
    /// Most records per transaction.
    batch_size: usize,
    /// From the projector's start to its first applied record (joining the group).
    join: Duration,
    /// From the first applied record to the last.
    applying: Duration,
    /// Records applied after the first poll that saw any (the rate's numerator).
    counted: i64,
}

impl Replay {
    fn rate(&self) -> f64 {
        self.counted as f64 / self.applying.as_secs_f64().max(f64::EPSILON)
    }
}

/// Records the projection has applied: its stored next offsets, summed (every
/// partition starts at offset 0 on a fresh broker).
async fn applied(store: &ReadStore) -> Result<i64> {
    let row: (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(next_offset), 0) AS BIGINT) FROM projection_offsets \
         WHERE projection = $1",
    )
    .bind(PROJECTION)
    .fetch_one(store.pool())
    .await?;
    Ok(row.0)
}

/// Runs a projector with `batch_size` into `store` until it has applied `target`
/// records.
async fn replay(
    kafka: &KafkaConfig,
    publisher: &Publisher,
    store: &ReadStore,
    batch_size: Option<usize>,
    target: i64,
    label: &str,
) -> Result<Replay> {
    // A consumer group of its own: no earlier member to wait for. (The offset it starts
    // from is the database's, 0 on a fresh one, whatever the group has committed.)
    let mut kafka = kafka.clone();
    kafka.overrides.push((
        "group.id".into(),
        format!("notesaga.bench.replay.{}", Uuid::new_v4().simple()),
    ));
    let mut projector = Projector::new(kafka, publisher.clone(), store.clone());
    if let Some(batch_size) = batch_size {
        projector.batch_size = batch_size;
    }
    let batch_size = projector.batch_size;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut task = tokio::spawn(projector.run(shutdown.clone()));
    let mut first: Option<(Instant, i64)> = None;
    let mut last_report = started;
    let outcome = loop {
        tokio::select! {
            ended = &mut task => {
                break Err(match ended {
                    Ok(Ok(())) => anyhow::anyhow!("the projector stopped by itself"),
                    Ok(Err(err)) => anyhow::Error::from(err).context("the projector failed"),
                    Err(err) => anyhow::anyhow!("the projector panicked: {err}"),
                });
            }
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
        let done = applied(store).await?;
        let now = Instant::now();
        if first.is_none() && done > 0 {
            first = Some((now, done));
        }
        if done >= target {
            let (first_at, first_done) = first.expect("set above");
            break Ok(Replay {
                batch_size,
                join: first_at.saturating_duration_since(started),
                applying: now.saturating_duration_since(first_at),
                counted: done - first_done,
            });
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = now;
            match first {
                Some((first_at, first_done)) => println!(
                    "  {label}, batch size {batch_size}: {done} / {target} applied ({:.0} records/s)",
                    (done - first_done) as f64 / now.duration_since(first_at).as_secs_f64()
                ),
                None => println!("  {label}, batch size {batch_size}: joining the consumer group"),
            }
        }
    };
    shutdown.cancel();
    if !task.is_finished() {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => eprintln!("warning: the projector ended with {err}"),
            Ok(Err(err)) => eprintln!("warning: the projector panicked: {err}"),
            Err(_) => eprintln!("warning: the projector did not stop within 30 s"),
        }
    }
    outcome
}

/// This process's peak resident set (`VmHWM`), if the platform says.
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_owned())
}

/// Both runs on one database.
async fn bench_database(
    args: &BenchReplayArgs,
    kafka: &KafkaConfig,
    publisher: &Publisher,
    spec: &str,
) -> Result<(Replay, Replay)> {
    let batched_target = i64::try_from(args.events)?;
    let unbatched_target = i64::try_from(args.unbatched_events.min(args.events))?;
    let mut runs = Vec::new();
    for (batch_size, target) in [
        (args.batch_size, batched_target),
        (Some(1), unbatched_target),
    ] {
        let scratch = Scratch::create(spec).await?;
        let label = scratch.label();
        let result = async {
            let store = ReadStore::connect(&scratch.url())
                .await
                .with_context(|| format!("cannot open the scratch {label} database"))?;
            let run = replay(kafka, publisher, &store, batch_size, target, label).await;
            store.pool().close().await;
            run
        }
        .await;
        scratch.destroy().await;
        let run = result?;
        println!(
            "{label}, batch size {}: {} records in {:.1} s = {:.0} events/s (joining the group took {:.1} s, not counted)",
            run.batch_size,
            run.counted,
            run.applying.as_secs_f64(),
            run.rate(),
            run.join.as_secs_f64()
        );
        runs.push(run);
    }
    Ok((runs[0], runs[1]))
}

pub(crate) async fn run(args: BenchReplayArgs) -> Result<()> {
    if args.events == 0 || args.unbatched_events == 0 {
        bail!("--events and --unbatched-events must be positive");
    }
    if args.batch_size == Some(0) {
        bail!("--batch-size must be positive");
    }
    crate::roles::wait_for_registry(&args.connection.registry_endpoint()).await?;
    let kafka = args.connection.kafka();
    ensure_topics(&kafka, args.connection.partitions).await?;
    let already = records_on_topics(&kafka).await?;
    if already > 0 {
        bail!(
            "the projection topics of {} already hold {already} records: run this against a fresh broker (scripts/bench-replay.sh starts one)",
            kafka.bootstrap_servers
        );
    }
    let codec = Arc::new(AvroCodec::new(&args.connection.registry_endpoint()));
    let publisher = Publisher::new(&kafka, codec)?;
    println!(
        "notesaga bench replay: {} records (~{}-byte note bodies) on {} partitions per topic, broker {}; replayed into {}",
        args.events,
        args.body_size,
        args.connection.partitions,
        kafka.bootstrap_servers,
        args.database_url.join(", ")
    );
    produce(&publisher, args.events, args.body_size).await?;
    let on_topics = records_on_topics(&kafka).await?;
    if on_topics != i64::try_from(args.events)? {
        bail!(
            "{on_topics} records on the projection topics after producing {}",
            args.events
        );
    }

    let mut summary = Vec::new();
    for spec in &args.database_url {
        let (batched, unbatched) = bench_database(&args, &kafka, &publisher, spec).await?;
        summary.push((spec.clone(), batched, unbatched));
    }
    println!("summary:");
    for (spec, batched, unbatched) in &summary {
        let ratio = batched.rate() / unbatched.rate();
        println!(
            "  {spec}: full rebuild of {} records at {:.0} events/s; one record per transaction {:.0} events/s; batched ÷ unbatched = {ratio:.1}× (target ≥ 10×)",
            args.events,
            batched.rate(),
            unbatched.rate()
        );
    }
    if let Some(rss) = peak_rss() {
        println!("peak RSS of this process (producer and projector): {rss}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    fn types(planned: &[Planned]) -> Vec<(&'static str, String)> {
        planned
            .iter()
            .map(|p| {
                let name = match &p.record {
                    Record::Notes(r) => notesaga_events::Message::event_type(r),
                    Record::Outcome(r) => notesaga_events::Message::event_type(r),
                    Record::Embedding(r) => notesaga_events::Message::event_type(r),
                    Record::Narration(r) => notesaga_events::Message::event_type(r),
                    Record::Saga(r) => notesaga_events::Message::event_type(r),
                };
                (p.record.topic(), name.to_owned())
            })
            .collect()
    }

    #[test]
    fn a_created_note_writes_what_the_flow_writes() {
        let planned = history(0, 7, 200);
        let count = |topic| types(&planned).iter().filter(|(t, _)| *t == topic).count();
        assert_eq!(planned.len(), 14);
        assert_eq!(count(NOTES_EVENTS), 2);
        assert_eq!(count(NOTES_OUTCOMES), 2);
        assert_eq!(count(EMBEDDING_EVENTS), 1);
        assert_eq!(count(NARRATION_EVENTS), 1);
        assert_eq!(count(SAGA_NOTE_PIPELINE), 8);
        assert_eq!(types(&planned)[0].1, "NoteCreated");
        assert_eq!(types(&planned).last().unwrap().1, "SagaCompleted");
    }

    #[test]
    fn every_fourth_note_is_edited_and_retires_its_first_version() {
        let planned = history(3, 7, 200);
        assert_eq!(planned.len(), 14 + 20);
        let names: Vec<String> = types(&planned).into_iter().map(|(_, n)| n).collect();
        assert!(names.contains(&"NoteEdited".to_owned()));
        assert_eq!(names.iter().filter(|n| *n == "SagaCompleted").count(), 2);
        assert!(names.contains(&"EmbeddingDeleted".to_owned()));
        assert!(names.contains(&"NarrationDeleted".to_owned()));
    }

    #[test]
    fn event_ids_are_unique_and_notes_distinct() {
        let mut ids = HashSet::new();
        let mut notes = BTreeMap::new();
        for index in 0..8 {
            for p in history(index, 7, 100) {
                assert!(ids.insert(p.metadata.event_id), "duplicate event id");
                let note = match &p.record {
                    Record::Notes(r) => notesaga_events::Message::note_id(r),
                    Record::Outcome(r) => notesaga_events::Message::note_id(r),
                    Record::Embedding(r) => notesaga_events::Message::note_id(r),
                    Record::Narration(r) => notesaga_events::Message::note_id(r),
                    Record::Saga(r) => notesaga_events::Message::note_id(r),
                };
                notes.entry(note).or_insert(index);
            }
        }
        assert_eq!(notes.len(), 8);
    }

    #[test]
    fn vectors_are_unit_length_and_differ() {
        let (a, b) = (vector(1), vector(2));
        assert_eq!(a.len(), DIMENSIONS);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert_ne!(a, b);
    }

    #[test]
    fn postgres_urls_get_the_database_as_their_path() {
        let server = url::Url::parse("postgres://postgres@127.0.0.1:5432").unwrap();
        assert_eq!(
            with_database(&server, "scratch").as_str(),
            "postgres://postgres@127.0.0.1:5432/scratch"
        );
    }
}
