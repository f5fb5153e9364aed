//! Runs the note aggregate against `notes.commands` (group `notesaga.notes`).
//!
//! Per command: rebuild the partition's state if this instance has not yet (from
//! `notes.events` and `notes.outcomes` of the same partition number — every flow topic
//! is keyed by note id with the same partition count), answer a redelivered command with
//! its original outcome, otherwise `handle`, append the events (ids derived from the
//! command id), append the outcome, and only then let the loop store the offset.
//!
//! Handled command ids are remembered per note, the last [`REMEMBERED_COMMANDS_PER_NOTE`]
//! of them: redelivery only ever repeats commands newer than the last committed offset,
//! which is far fewer than that per note.

use std::collections::{HashMap, HashSet, VecDeque};

use futures::future::try_join_all;
use notesaga_events::{
    ids,
    notes::{CommandApplied, CommandRejected, NotesCommand, NotesEvent, NotesOutcome},
    now_millis,
    topics::{NOTES_EVENTS, NOTES_OUTCOMES},
    Message as _,
};
use notesaga_log::{
    reader::read_partition, Handler, HandlerError, Incoming, KafkaConfig, Metadata, Publisher,
};
use tracing::{debug, info};
use uuid::Uuid;

use crate::aggregate::{apply, handle, Note, Rejection};

/// Most commands handled as one batch (one round trip to the broker for their events,
/// one for their outcomes); the role's consumer loop is built with it.
pub const BATCH: usize = 500;

/// How many handled command ids are kept per note for answering redeliveries.
pub const REMEMBERED_COMMANDS_PER_NOTE: usize = 256;

/// What one partition's rebuild knows.
#[derive(Debug, Default)]
struct PartitionState {
    notes: HashMap<Uuid, Note>,
    /// Outcome of each remembered command, by command id.
    outcomes: HashMap<Uuid, NotesOutcome>,
    /// Event ids a command appended, for commands whose outcome was not written yet.
    events_by_command: HashMap<Uuid, Vec<String>>,
    /// Remembered command ids per note, oldest first, to bound the memory.
    recent: HashMap<Uuid, VecDeque<Uuid>>,
}

impl PartitionState {
    /// The state a partition's log describes: `events` (every `NoteDeleted` included)
    /// folded per note, then the `outcomes` remembered.
    fn fold(events: &[Incoming<NotesEvent>], outcomes: Vec<Incoming<NotesOutcome>>) -> Self {
        let mut state = Self::default();
        let mut seen_events = HashSet::new();
        for event in events {
            // A duplicate event id is a re-append of the same event: apply it once.
            if !seen_events.insert(event.metadata.event_id) {
                continue;
            }
            let note_id = event.message.note_id();
            let note = state.notes.remove(&note_id).unwrap_or_default();
            state.notes.insert(note_id, apply(note, &event.message));
            if let Some(command_id) = event.metadata.command_id {
                state
                    .events_by_command
                    .entry(command_id)
                    .or_default()
                    .push(event.metadata.event_id.to_string());
            }
        }
        for outcome in outcomes {
            let note_id = outcome.message.note_id();
            state.remember(note_id, outcome.message.command_id(), outcome.message);
        }
        state
    }

    /// What to do with `command` (id `command_id`), from this state alone.
    fn decide(&self, command_id: Uuid, command: &NotesCommand, now: i64) -> Decision {
        let note_id = command.note_id();
        if let Some(outcome) = self.outcomes.get(&command_id) {
            return Decision::Repeat(outcome.clone());
        }
        if let Some(event_ids) = self.events_by_command.get(&command_id) {
            return Decision::Finish(NotesOutcome::CommandApplied(CommandApplied {
                command_id,
                note_id,
                command_type: command_type(command),
                version: self.notes.get(&note_id).map(|n| n.version),
                event_ids: event_ids.clone(),
                occurred_at: now,
            }));
        }
        let note = self.notes.get(&note_id).cloned().unwrap_or_default();
        Decision::Handle(handle(&note, command, now))
    }

    fn remember(&mut self, note_id: Uuid, command_id: Uuid, outcome: NotesOutcome) {
        self.events_by_command.remove(&command_id);
        if self.outcomes.insert(command_id, outcome).is_none() {
            let recent = self.recent.entry(note_id).or_default();
            recent.push_back(command_id);
            if recent.len() > REMEMBERED_COMMANDS_PER_NOTE {
                if let Some(old) = recent.pop_front() {
                    self.outcomes.remove(&old);
                }
            }
        }
    }
}

/// What the processor does with one command.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Handled before (a redelivery): send its outcome again, unchanged.
    Repeat(NotesOutcome),
    /// Its events were appended but its outcome was not (a crash in between): send this.
    Finish(NotesOutcome),
    /// New: the aggregate's verdict, to append and answer.
    Handle(Result<Vec<NotesEvent>, Rejection>),
}

/// The notes processor's handler.
#[derive(Debug)]
pub struct NotesProcessor {
    kafka: KafkaConfig,
    publisher: Publisher,
    partitions: HashMap<i32, PartitionState>,
}

impl NotesProcessor {
    /// A processor appending through `publisher` and rebuilding through `kafka`.
    pub fn new(kafka: KafkaConfig, publisher: Publisher) -> Self {
        Self {
            kafka,
            publisher,
            partitions: HashMap::new(),
        }
    }

    async fn rebuild(&self, partition: i32) -> Result<PartitionState, HandlerError> {
        let codec = self.publisher.codec();
        // The two topics are independent: read them side by side.
        let (events, outcomes) = tokio::try_join!(
            read_partition::<NotesEvent>(&self.kafka, codec, NOTES_EVENTS, partition),
            read_partition::<NotesOutcome>(&self.kafka, codec, NOTES_OUTCOMES, partition),
        )?;
        let state = PartitionState::fold(&events, outcomes);
        info!(
            partition,
            events = events.len(),
            notes = state.notes.len(),
            "rebuilt notes partition"
        );
        Ok(state)
    }

    /// Rebuilds one partition's state as an assignment does, and drops it (the notes
    /// benchmark times this).
    pub async fn rebuild_for_bench(&self, partition: i32) -> Result<usize, HandlerError> {
        Ok(self.rebuild(partition).await?.notes.len())
    }
}

fn command_type(command: &NotesCommand) -> String {
    command.event_type().to_owned()
}

/// The answer to one command of a batch, sent once the batch's events are durable.
#[derive(Debug)]
struct Answer {
    partition: i32,
    note_id: Uuid,
    command_id: Uuid,
    outcome: NotesOutcome,
    cause: Metadata,
    /// False for a repeated outcome, which is remembered already.
    remember: bool,
}

impl NotesProcessor {
    /// Handles commands in order: every event of the batch is queued, then awaited
    /// together, and only then are the outcomes queued and awaited — an outcome is never
    /// durable before the events it names. One round trip per batch, not per command.
    async fn handle_commands(
        &mut self,
        batch: &[Incoming<NotesCommand>],
    ) -> Result<(), HandlerError> {
        let touched: HashSet<i32> = batch.iter().map(|incoming| incoming.partition).collect();
        for partition in &touched {
            if !self.partitions.contains_key(partition) {
                let state = self.rebuild(*partition).await?;
                self.partitions.insert(*partition, state);
            }
        }
        let result = self.append_batch(batch).await;
        if result.is_err() {
            // The state in memory may hold appends that never became durable: the next
            // attempt rebuilds these partitions from the log, which is the truth.
            for partition in &touched {
                self.partitions.remove(partition);
            }
        }
        result
    }

    async fn append_batch(&mut self, batch: &[Incoming<NotesCommand>]) -> Result<(), HandlerError> {
        let now = now_millis();
        let mut appends = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for incoming in batch {
            let partition = incoming.partition;
            let command = &incoming.message;
            let note_id = command.note_id();
            // Commands from other producers may lack the header; their event id stands in.
            let command_id = incoming.metadata.command();
            let cause = incoming.metadata.clone().with_command(command_id);
            let state = self.partitions.get(&partition).expect("rebuilt first");
            let (outcome, remember) = match state.decide(command_id, command, now) {
                Decision::Repeat(outcome) => {
                    debug!(%command_id, "redelivered command: repeating its outcome");
                    (outcome, false)
                }
                Decision::Finish(outcome) => {
                    debug!(%command_id, "events appended before a crash: finishing the outcome");
                    (outcome, true)
                }
                Decision::Handle(Ok(events)) => {
                    let mut note = state.notes.get(&note_id).cloned().unwrap_or_default();
                    let mut event_ids = Vec::with_capacity(events.len());
                    for (index, event) in events.iter().enumerate() {
                        let metadata = cause.command_event(command_id, index);
                        appends.push(
                            self.publisher
                                .enqueue(NOTES_EVENTS, event, &metadata)
                                .await?,
                        );
                        note = apply(note, event);
                        event_ids.push(metadata.event_id.to_string());
                    }
                    let version = events
                        .last()
                        .map(NotesEvent::version)
                        .or(Some(note.version));
                    let state = self.partitions.get_mut(&partition).expect("rebuilt first");
                    state.notes.insert(note_id, note);
                    state
                        .events_by_command
                        .insert(command_id, event_ids.clone());
                    info!(%note_id, %command_id, command = command.event_type(), ?version, "applied");
                    let applied = NotesOutcome::CommandApplied(CommandApplied {
                        command_id,
                        note_id,
                        command_type: command_type(command),
                        version,
                        event_ids,
                        occurred_at: now,
                    });
                    (applied, true)
                }
                Decision::Handle(Err(rejection)) => {
                    info!(%note_id, %command_id, code = rejection.code.as_str(), reason = %rejection.message, "rejected");
                    let rejected = NotesOutcome::CommandRejected(CommandRejected {
                        command_id,
                        note_id,
                        command_type: command_type(command),
                        code: rejection.code.as_str().to_owned(),
                        message: rejection.message,
                        occurred_at: now,
                    });
                    (rejected, true)
                }
            };
            answers.push(Answer {
                partition,
                note_id,
                command_id,
                outcome,
                cause,
                remember,
            });
        }
        try_join_all(appends).await?;
        let mut sends = Vec::with_capacity(answers.len());
        for answer in &answers {
            let metadata = answer
                .cause
                .caused(ids::outcome_id(answer.command_id))
                .with_command(answer.command_id);
            sends.push(
                self.publisher
                    .enqueue(NOTES_OUTCOMES, &answer.outcome, &metadata)
                    .await?,
            );
        }
        try_join_all(sends).await?;
        for answer in answers.into_iter().filter(|a| a.remember) {
            let state = self
                .partitions
                .get_mut(&answer.partition)
                .expect("rebuilt first");
            state.remember(answer.note_id, answer.command_id, answer.outcome);
        }
        Ok(())
    }
}

impl Handler<NotesCommand> for NotesProcessor {
    async fn handle(&mut self, incoming: &Incoming<NotesCommand>) -> Result<(), HandlerError> {
        self.handle_commands(std::slice::from_ref(incoming)).await
    }

    async fn handle_batch(&mut self, batch: &[Incoming<NotesCommand>]) -> Result<(), HandlerError> {
        self.handle_commands(batch).await
    }

    fn revoked(&mut self, partitions: &[(String, i32)]) {
        for (_, partition) in partitions {
            self.partitions.remove(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use notesaga_events::notes::{
        CreateNote, DeleteNote, EditNote, NoteCreated, NoteDeleted, PublishNoteVersion,
    };

    use super::*;
    use crate::aggregate::RejectionCode;

    const NOTE: Uuid = Uuid::from_u128(7);
    const CREATE: Uuid = Uuid::from_u128(100);
    const DELETE: Uuid = Uuid::from_u128(101);

    /// A record of a partition's log as `read_partition` hands it over.
    fn record<M>(message: M, event_id: Uuid, command_id: Uuid, offset: i64) -> Incoming<M> {
        Incoming {
            message,
            metadata: Metadata::new(event_id, "corr").with_command(command_id),
            topic: "t".into(),
            partition: 0,
            offset,
        }
    }

    fn created() -> Incoming<NotesEvent> {
        let event = NotesEvent::NoteCreated(NoteCreated {
            note_id: NOTE,
            owner: "ann".into(),
            version: 1,
            title: "t".into(),
            body: "b".into(),
            occurred_at: 1,
        });
        record(event, ids::event_id(CREATE, 0), CREATE, 0)
    }

    fn deleted() -> Incoming<NotesEvent> {
        let event = NotesEvent::NoteDeleted(NoteDeleted {
            note_id: NOTE,
            owner: "ann".into(),
            version: 1,
            occurred_at: 2,
        });
        record(event, ids::event_id(DELETE, 0), DELETE, 1)
    }

    fn applied(command_id: Uuid, command_type: &str, event: &Incoming<NotesEvent>) -> NotesOutcome {
        NotesOutcome::CommandApplied(CommandApplied {
            command_id,
            note_id: NOTE,
            command_type: command_type.into(),
            version: Some(1),
            event_ids: vec![event.metadata.event_id.to_string()],
            occurred_at: 3,
        })
    }

    fn outcome(outcome: NotesOutcome, offset: i64) -> Incoming<NotesOutcome> {
        let command_id = outcome.command_id();
        record(outcome, ids::outcome_id(command_id), command_id, offset)
    }

    fn delete_command() -> NotesCommand {
        NotesCommand::DeleteNote(DeleteNote {
            note_id: NOTE,
            owner: "ann".into(),
            expected_version: None,
        })
    }

    fn rejected_with(decision: Decision) -> RejectionCode {
        match decision {
            Decision::Handle(Err(rejection)) => rejection.code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// A redelivered DeleteNote gets its original outcome after a rebuild (not
    /// `note_deleted`, which the aggregate alone would answer), while any other command
    /// on the deleted note is rejected.
    #[test]
    fn redelivered_delete_repeats_its_outcome() {
        let (create, delete) = (created(), deleted());
        let outcomes = vec![
            outcome(applied(CREATE, "CreateNote", &create), 0),
            outcome(applied(DELETE, "DeleteNote", &delete), 1),
        ];
        let state = PartitionState::fold(&[create.clone(), delete.clone()], outcomes);
        assert!(state.notes[&NOTE].deleted);

        assert_eq!(
            state.decide(DELETE, &delete_command(), 9),
            Decision::Repeat(applied(DELETE, "DeleteNote", &delete))
        );
        assert_eq!(
            state.decide(CREATE, &create_command(), 9),
            Decision::Repeat(applied(CREATE, "CreateNote", &create))
        );
        let later = [
            delete_command(),
            NotesCommand::EditNote(EditNote {
                note_id: NOTE,
                owner: "ann".into(),
                title: "t".into(),
                body: "b".into(),
                expected_version: None,
            }),
            NotesCommand::PublishNoteVersion(PublishNoteVersion {
                note_id: NOTE,
                version: 1,
            }),
        ];
        for (n, command) in later.iter().enumerate() {
            let fresh = Uuid::from_u128(200 + n as u128);
            assert_eq!(
                rejected_with(state.decide(fresh, command, 9)),
                RejectionCode::NoteDeleted,
                "{command:?}"
            );
        }
    }

    fn create_command() -> NotesCommand {
        NotesCommand::CreateNote(CreateNote {
            note_id: NOTE,
            owner: "ann".into(),
            title: "t".into(),
            body: "b".into(),
        })
    }

    /// A crash after appending NoteDeleted but before its outcome: the redelivery
    /// finishes with the appended event's id instead of a `note_deleted` rejection.
    #[test]
    fn delete_appended_without_outcome_is_finished() {
        let (create, delete) = (created(), deleted());
        let outcomes = vec![outcome(applied(CREATE, "CreateNote", &create), 0)];
        // The zombie re-append of the same event (same id) counts once.
        let state = PartitionState::fold(&[create, delete.clone(), delete.clone()], outcomes);
        match state.decide(DELETE, &delete_command(), 9) {
            Decision::Finish(NotesOutcome::CommandApplied(applied)) => {
                assert_eq!(applied.command_id, DELETE);
                assert_eq!(applied.command_type, "DeleteNote");
                assert_eq!(applied.version, Some(1));
                assert_eq!(
                    applied.event_ids,
                    vec![delete.metadata.event_id.to_string()]
                );
            }
            other => panic!("expected to finish the delete, got {other:?}"),
        }
    }

    /// A rejected delete is remembered too: its redelivery repeats the rejection even
    /// after the note was deleted by a later command.
    #[test]
    fn redelivered_rejected_delete_repeats_its_rejection() {
        let stale = Uuid::from_u128(150);
        let create = created();
        let state = PartitionState::fold(
            std::slice::from_ref(&create),
            vec![outcome(applied(CREATE, "CreateNote", &create), 0)],
        );
        let stale_delete = NotesCommand::DeleteNote(DeleteNote {
            note_id: NOTE,
            owner: "ann".into(),
            expected_version: Some(5),
        });
        assert_eq!(
            rejected_with(state.decide(stale, &stale_delete, 9)),
            RejectionCode::VersionConflict
        );
        let rejection = NotesOutcome::CommandRejected(CommandRejected {
            command_id: stale,
            note_id: NOTE,
            command_type: "DeleteNote".into(),
            code: "version_conflict".into(),
            message: "expected version 5, latest is 1".into(),
            occurred_at: 4,
        });
        let delete = deleted();
        let state = PartitionState::fold(
            &[create.clone(), delete.clone()],
            vec![
                outcome(applied(CREATE, "CreateNote", &create), 0),
                outcome(rejection.clone(), 1),
                outcome(applied(DELETE, "DeleteNote", &delete), 2),
            ],
        );
        assert_eq!(
            state.decide(stale, &stale_delete, 9),
            Decision::Repeat(rejection)
        );
    }
}
