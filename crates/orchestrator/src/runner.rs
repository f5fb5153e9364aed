//! The orchestrator's handler: feeds the sagas what it reads and what the clock says,
//! and carries out their actions.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
};

use futures::future::try_join_all;

use notesaga_events::{
    embedding::EmbeddingCommand,
    ids,
    narration::NarrationCommand,
    notes::NotesCommand,
    now_millis,
    saga::SagaEvent,
    topics::{EMBEDDING_COMMANDS, NARRATION_COMMANDS, NOTES_COMMANDS, SAGA_NOTE_PIPELINE},
    Message as _,
};
use notesaga_log::{
    producer::Appended, reader::read_partition, FlowEvent, Handler, HandlerError, Incoming,
    KafkaConfig, Metadata, Publisher,
};
use notesaga_sagas::note_pipeline::{
    apply, pending_command, published_version, react, Action, Command, Input, Kind, NotePipeline,
    Policy, Status, ALL_STATUSES,
};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::observed::{observe, Observed};

/// Most records one batch reacts to (their saga events appended together, then their
/// commands); the role's consumer loop is built with it.
pub const BATCH: usize = 500;

/// Metric: sagas this instance holds, by state (gauge).
pub const SAGAS: &str = "notesaga_sagas";
/// Metric: sagas reported stuck and not progressed since (gauge).
pub const SAGAS_STUCK: &str = "notesaga_sagas_stuck";
/// Metric: saga events appended, by type (counter).
pub const SAGA_EVENTS_TOTAL: &str = "notesaga_saga_events_total";

/// The sagas of one partition of `saga.note-pipeline`.
#[derive(Debug, Default)]
struct Partition {
    sagas: HashMap<Uuid, NotePipeline>,
    /// The sagas of each note: every record is routed by its note, and a scan of all
    /// the partition's sagas per record grew with every saga the partition ever ran.
    by_note: HashMap<Uuid, Vec<Uuid>>,
    /// The correlation id of the record that started each saga, for timer-caused work.
    correlation: HashMap<Uuid, String>,
}

impl Partition {
    fn of_note(&self, note_id: Uuid) -> impl Iterator<Item = &NotePipeline> {
        self.by_note
            .get(&note_id)
            .into_iter()
            .flatten()
            .filter_map(|saga_id| self.sagas.get(saga_id))
    }

    /// Keeps `saga` (new or advanced) and indexes it by its note.
    fn keep(&mut self, saga: NotePipeline) {
        let (saga_id, note_id) = (saga.saga_id, saga.note_id);
        if self.sagas.insert(saga_id, saga).is_none() {
            let ids = self.by_note.entry(note_id).or_default();
            if !ids.contains(&saga_id) {
                ids.push(saga_id);
            }
        }
    }
}

/// A queued append that resolves when the broker has acknowledged it.
type QueuedAppend = Pin<Box<dyn Future<Output = notesaga_log::Result<Appended>> + Send + Sync>>;

/// What the reactions of one batch (or tick) append and send, carried out together by
/// [`Orchestrator::flush`]: every saga event and every command queued at once, their
/// acknowledgements awaited together, so a step costs one round trip to the broker, not
/// two (the offsets are stored only after both are durable). A command may therefore be
/// durable before the saga event that requests it; that is safe because the command id
/// is derived from saga, step and attempt and the event id from the saga's position: if
/// the event is lost, the batch is handled again from the rebuilt saga, which requests
/// the same command under the same id, and the processor answers a repeated id with its
/// first outcome (docs/sagas.md).
#[derive(Default)]
struct Outbox {
    appends: Vec<QueuedAppend>,
    commands: Vec<(Uuid, Command, Metadata)>,
    /// Partitions whose state in memory already holds the queued events.
    touched: HashSet<i32>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("appends", &self.appends.len())
            .field("commands", &self.commands.len())
            .finish()
    }
}

/// Runs note-pipeline sagas.
#[derive(Debug)]
pub struct Orchestrator {
    kafka: KafkaConfig,
    publisher: Publisher,
    policy: Policy,
    /// Sagas of each partition this instance has rebuilt.
    partitions: HashMap<i32, Partition>,
    /// Partitions the group gave this instance (rebuilt eagerly, so deadlines set
    /// before a crash fire after the restart even if no record arrives).
    assigned: HashSet<i32>,
    outbox: Outbox,
}

impl Orchestrator {
    /// An orchestrator with the default [`Policy`].
    pub fn new(kafka: KafkaConfig, publisher: Publisher) -> Self {
        Self::with_policy(kafka, publisher, Policy::default())
    }

    /// An orchestrator writing through `publisher`, rebuilding through `kafka`, with
    /// the deadlines and budgets of `policy`.
    pub fn with_policy(kafka: KafkaConfig, publisher: Publisher, policy: Policy) -> Self {
        Self {
            kafka,
            publisher,
            policy,
            partitions: HashMap::new(),
            assigned: HashSet::new(),
            outbox: Outbox::default(),
        }
    }

    async fn rebuild(&self, partition: i32) -> Result<Partition, HandlerError> {
        let events = read_partition::<SagaEvent>(
            &self.kafka,
            self.publisher.codec(),
            SAGA_NOTE_PIPELINE,
            partition,
        )
        .await?;
        let mut seen = HashSet::new();
        let mut rebuilt = Partition::default();
        for event in &events {
            // First writer wins: a second record with an id already read is a duplicate
            // or a zombie's version of the same position.
            if !seen.insert(event.metadata.event_id) {
                continue;
            }
            let saga_id = event.message.saga_id();
            if let Some(saga) = apply(rebuilt.sagas.remove(&saga_id), &event.message) {
                rebuilt.keep(saga);
            }
            rebuilt
                .correlation
                .entry(saga_id)
                .or_insert_with(|| event.metadata.correlation_id.clone());
        }
        // A crash may have come between appending a request and sending its command:
        // send it again with the same id (the processor answers it once).
        let mut resent = 0;
        for saga in rebuilt.sagas.values() {
            if let Some(Action::Send {
                command_id,
                command,
            }) = pending_command(saga)
            {
                let correlation = rebuilt.correlation.get(&saga.saga_id).cloned();
                let cause = Metadata::new(
                    command_id,
                    correlation.unwrap_or_else(|| saga.saga_id.to_string()),
                );
                self.send(command_id, &command, &cause).await?;
                resent += 1;
            }
        }
        info!(
            partition,
            events = events.len(),
            sagas = rebuilt.sagas.len(),
            resent,
            "rebuilt saga partition"
        );
        Ok(rebuilt)
    }

    async fn ensure_rebuilt(&mut self, partition: i32) -> Result<(), HandlerError> {
        if !self.partitions.contains_key(&partition) {
            let rebuilt = self.rebuild(partition).await?;
            self.partitions.insert(partition, rebuilt);
        }
        Ok(())
    }

    /// Queues `command` (id `command_id`) on its topic.
    async fn enqueue_command(
        &self,
        command_id: Uuid,
        command: &Command,
        cause: &Metadata,
    ) -> Result<QueuedAppend, HandlerError> {
        let metadata = cause.caused(command_id).with_command(command_id);
        let publisher = &self.publisher;
        Ok(match command {
            Command::GenerateEmbedding(c) => {
                let message = EmbeddingCommand::GenerateEmbedding(c.clone());
                Box::pin(
                    publisher
                        .enqueue(EMBEDDING_COMMANDS, &message, &metadata)
                        .await?,
                )
            }
            Command::DeleteEmbedding(c) => {
                let message = EmbeddingCommand::DeleteEmbedding(c.clone());
                Box::pin(
                    publisher
                        .enqueue(EMBEDDING_COMMANDS, &message, &metadata)
                        .await?,
                )
            }
            Command::NarrateNote(c) => {
                let message = NarrationCommand::NarrateNote(c.clone());
                Box::pin(
                    publisher
                        .enqueue(NARRATION_COMMANDS, &message, &metadata)
                        .await?,
                )
            }
            Command::DeleteNarration(c) => {
                let message = NarrationCommand::DeleteNarration(c.clone());
                Box::pin(
                    publisher
                        .enqueue(NARRATION_COMMANDS, &message, &metadata)
                        .await?,
                )
            }
            Command::PublishNoteVersion(c) => {
                let message = NotesCommand::PublishNoteVersion(c.clone());
                Box::pin(
                    publisher
                        .enqueue(NOTES_COMMANDS, &message, &metadata)
                        .await?,
                )
            }
            Command::MarkNoteVersionFailed(c) => {
                let message = NotesCommand::MarkNoteVersionFailed(c.clone());
                Box::pin(
                    publisher
                        .enqueue(NOTES_COMMANDS, &message, &metadata)
                        .await?,
                )
            }
        })
    }

    /// Sends `command` and waits for the broker.
    async fn send(
        &self,
        command_id: Uuid,
        command: &Command,
        cause: &Metadata,
    ) -> Result<(), HandlerError> {
        self.enqueue_command(command_id, command, cause)
            .await?
            .await?;
        Ok(())
    }

    /// Carries out the outbox: the saga events (already queued) and the commands, all
    /// acknowledged before it returns. On failure the partitions whose state already
    /// holds the events are dropped, to be rebuilt from the log (the truth) before the
    /// retry.
    async fn flush(&mut self) -> Result<(), HandlerError> {
        let outbox = std::mem::take(&mut self.outbox);
        let result = async {
            let mut pending = outbox.appends;
            pending.reserve(outbox.commands.len());
            for (command_id, command, cause) in &outbox.commands {
                pending.push(self.enqueue_command(*command_id, command, cause).await?);
            }
            try_join_all(pending).await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            for partition in &outbox.touched {
                self.partitions.remove(partition);
            }
        }
        result
    }

    /// Forgets what a failed batch queued and the state it changed.
    fn discard(&mut self) {
        let outbox = std::mem::take(&mut self.outbox);
        for partition in &outbox.touched {
            self.partitions.remove(partition);
        }
    }

    /// Feeds `input` to saga `saga_id` of `partition` and queues what it decides in the
    /// outbox: each event (id from its position in the saga's history), folded into the
    /// state at once, and each command, in order.
    async fn drive(
        &mut self,
        partition: i32,
        saga_id: Uuid,
        input: &Input,
        cause: &Metadata,
    ) -> Result<(), HandlerError> {
        let now = now_millis();
        let state = self.partitions.get(&partition).expect("rebuilt first");
        let mut saga = state.sagas.get(&saga_id).cloned();
        let actions = react(saga.as_ref(), input, &self.policy, now);
        if actions.is_empty() {
            if !matches!(input, Input::Tick) {
                debug!(%saga_id, ?input, "nothing to do (duplicate, late or superseded)");
            }
            return Ok(());
        }
        for action in &actions {
            match action {
                Action::Record(event) => {
                    let position = saga.as_ref().map_or(0, |s| s.seq);
                    let metadata = cause.caused(ids::saga_event_id(saga_id, position));
                    let append = self
                        .publisher
                        .enqueue(SAGA_NOTE_PIPELINE, event, &metadata)
                        .await?;
                    self.outbox.appends.push(Box::pin(append));
                    self.outbox.touched.insert(partition);
                    metrics::counter!(SAGA_EVENTS_TOTAL, "type" => event.event_type()).increment(1);
                    saga = apply(saga, event);
                    if let Some(saga) = &saga {
                        info!(
                            %saga_id,
                            note_id = %saga.note_id,
                            version = saga.version,
                            event = event.event_type(),
                            status = saga.status.as_str(),
                            "saga advanced"
                        );
                        let state = self.partitions.get_mut(&partition).expect("rebuilt");
                        state.keep(saga.clone());
                        state
                            .correlation
                            .entry(saga_id)
                            .or_insert_with(|| cause.correlation_id.clone());
                    }
                }
                Action::Send {
                    command_id,
                    command,
                } => self
                    .outbox
                    .commands
                    .push((*command_id, command.clone(), cause.clone())),
            }
        }
        Ok(())
    }

    /// Carries out what `observed` (a record of `partition`) means.
    async fn observed(
        &mut self,
        partition: i32,
        observed: Observed,
        incoming: &Incoming<FlowEvent>,
    ) -> Result<(), HandlerError> {
        let cause = &incoming.metadata;
        let state = self.partitions.get(&partition).expect("rebuilt first");
        match observed {
            Observed::VersionCreated {
                note_id,
                version,
                text,
            } => {
                // Only the latest version is ever published: cancel older in-flight ones.
                let older: Vec<Uuid> = state
                    .of_note(note_id)
                    .filter(|s| s.kind == Kind::Publish && s.version < version)
                    .map(|s| s.saga_id)
                    .collect();
                for saga_id in older {
                    let cancel = Input::Cancel {
                        by_version: Some(version),
                    };
                    self.drive(partition, saga_id, &cancel, cause).await?;
                }
                let state = self.partitions.get(&partition).expect("rebuilt first");
                let retire_version = published_version(state.of_note(note_id));
                let input = Input::VersionCreated {
                    note_id,
                    version,
                    text,
                    retire_version,
                };
                let saga_id = ids::saga_id(note_id, version);
                self.drive(partition, saga_id, &input, cause).await
            }
            Observed::NoteDeleted { note_id, version } => {
                let publishing: Vec<Uuid> = state
                    .of_note(note_id)
                    .filter(|s| s.kind == Kind::Publish)
                    .map(|s| s.saga_id)
                    .collect();
                for saga_id in publishing {
                    let cancel = Input::Cancel { by_version: None };
                    self.drive(partition, saga_id, &cancel, cause).await?;
                }
                let input = Input::NoteDeleted { note_id, version };
                let saga_id = ids::cleanup_saga_id(note_id);
                self.drive(partition, saga_id, &input, cause).await
            }
            Observed::Reply {
                note_id,
                command_id,
                reply,
            } => {
                let waiting = state
                    .of_note(note_id)
                    .find(|s| s.status.is_active() && s.awaited_command() == Some(command_id))
                    .map(|s| s.saga_id);
                match waiting {
                    Some(saga_id) => {
                        let input = Input::Reply { command_id, reply };
                        self.drive(partition, saga_id, &input, cause).await
                    }
                    None => {
                        info!(%note_id, %command_id, topic = %incoming.topic, "reply ignored: no saga waits for it (late, duplicate or cancelled)");
                        Ok(())
                    }
                }
            }
            Observed::RetryRequested { saga_id } => {
                let FlowEvent::Saga(request) = &incoming.message else {
                    return Ok(());
                };
                let state = self.partitions.get_mut(&partition).expect("rebuilt first");
                let Some(saga) = state.sagas.remove(&saga_id) else {
                    warn!(%saga_id, "retry requested for an unknown saga");
                    return Ok(());
                };
                let saga = apply(Some(saga), request).expect("a saga stays");
                state.keep(saga);
                self.drive(partition, saga_id, &Input::OperatorRetry, cause)
                    .await
            }
        }
    }

    fn report_gauges(&self) {
        let sagas = self.partitions.values().flat_map(|p| p.sagas.values());
        let mut counts: HashMap<Status, usize> = HashMap::new();
        let mut stuck = 0;
        for saga in sagas {
            *counts.entry(saga.status).or_default() += 1;
            stuck += usize::from(saga.stuck);
        }
        for status in ALL_STATUSES {
            let count = counts.get(&status).copied().unwrap_or(0);
            metrics::gauge!(SAGAS, "state" => status.as_str()).set(count as f64);
        }
        metrics::gauge!(SAGAS_STUCK).set(stuck as f64);
    }
}

impl Orchestrator {
    async fn react_to_all(&mut self, batch: &[Incoming<FlowEvent>]) -> Result<(), HandlerError> {
        for incoming in batch {
            let partition = incoming.partition;
            self.ensure_rebuilt(partition).await?;
            if let Some(observed) = observe(&incoming.message, incoming.metadata.command_id) {
                self.observed(partition, observed, incoming).await?;
            }
        }
        Ok(())
    }
}

impl Handler<FlowEvent> for Orchestrator {
    async fn handle(&mut self, incoming: &Incoming<FlowEvent>) -> Result<(), HandlerError> {
        self.handle_batch(std::slice::from_ref(incoming)).await
    }

    async fn handle_batch(&mut self, batch: &[Incoming<FlowEvent>]) -> Result<(), HandlerError> {
        match self.react_to_all(batch).await {
            Ok(()) => self.flush().await,
            Err(err) => {
                self.discard();
                Err(err)
            }
        }
    }

    fn revoked(&mut self, partitions: &[(String, i32)]) {
        for (_, partition) in partitions {
            self.partitions.remove(partition);
            self.assigned.remove(partition);
        }
    }

    async fn assigned(&mut self, partitions: &[(String, i32)]) -> Result<(), HandlerError> {
        self.assigned
            .extend(partitions.iter().map(|(_, partition)| *partition));
        self.tick().await
    }

    async fn tick(&mut self) -> Result<(), HandlerError> {
        let mut assigned: Vec<i32> = self.assigned.iter().copied().collect();
        assigned.sort_unstable();
        for partition in assigned {
            self.ensure_rebuilt(partition).await?;
        }
        let active: Vec<(i32, Uuid, String)> = self
            .partitions
            .iter()
            .flat_map(|(partition, state)| {
                state
                    .sagas
                    .values()
                    .filter(|s| s.status.is_active())
                    .map(|s| {
                        let correlation = state.correlation.get(&s.saga_id).cloned();
                        let correlation = correlation.unwrap_or_else(|| s.saga_id.to_string());
                        (*partition, s.saga_id, correlation)
                    })
            })
            .collect();
        for (partition, saga_id, correlation) in active {
            let cause = Metadata::new(Uuid::new_v4(), correlation);
            if let Err(err) = self.drive(partition, saga_id, &Input::Tick, &cause).await {
                self.discard();
                return Err(err);
            }
        }
        self.flush().await?;
        self.report_gauges();
        Ok(())
    }
}
