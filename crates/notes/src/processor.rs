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

use crate::aggregate::{apply, handle, Note};

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
        let events =
            read_partition::<NotesEvent>(&self.kafka, codec, NOTES_EVENTS, partition).await?;
        let outcomes =
            read_partition::<NotesOutcome>(&self.kafka, codec, NOTES_OUTCOMES, partition).await?;
        let mut state = PartitionState::default();
        let mut seen_events = HashSet::new();
        for event in &events {
            // A duplicate event id is a re-append of the same event: apply it once.
            if !seen_events.insert(event.metadata.event_id) {
                continue;
            }
            let note = state
                .notes
                .remove(&event.message.note_id())
                .unwrap_or_default();
            state
                .notes
                .insert(event.message.note_id(), apply(note, &event.message));
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
        info!(
            partition,
            events = events.len(),
            notes = state.notes.len(),
            "rebuilt notes partition"
        );
        Ok(state)
    }

    async fn send_outcome(
        &self,
        outcome: &NotesOutcome,
        cause: &Metadata,
        command_id: Uuid,
    ) -> Result<(), HandlerError> {
        let metadata = cause
            .caused(ids::outcome_id(command_id))
            .with_command(command_id);
        self.publisher
            .publish(NOTES_OUTCOMES, outcome, &metadata)
            .await?;
        Ok(())
    }
}

fn command_type(command: &NotesCommand) -> String {
    command.event_type().to_owned()
}

impl Handler<NotesCommand> for NotesProcessor {
    async fn handle(&mut self, incoming: &Incoming<NotesCommand>) -> Result<(), HandlerError> {
        let partition = incoming.partition;
        if !self.partitions.contains_key(&partition) {
            let state = self.rebuild(partition).await?;
            self.partitions.insert(partition, state);
        }
        let command = &incoming.message;
        let note_id = command.note_id();
        // Commands from other producers may lack the header; their event id stands in.
        let command_id = incoming.metadata.command();
        let cause = incoming.metadata.clone().with_command(command_id);
        let state = self.partitions.get(&partition).expect("rebuilt above");

        if let Some(outcome) = state.outcomes.get(&command_id).cloned() {
            debug!(%command_id, "redelivered command: repeating its outcome");
            return self.send_outcome(&outcome, &cause, command_id).await;
        }
        if let Some(event_ids) = state.events_by_command.get(&command_id).cloned() {
            // Events were appended but the outcome was not: finish that.
            let version = state.notes.get(&note_id).map(|n| n.version);
            let outcome = NotesOutcome::CommandApplied(CommandApplied {
                command_id,
                note_id,
                command_type: command_type(command),
                version,
                event_ids,
                occurred_at: now_millis(),
            });
            self.send_outcome(&outcome, &cause, command_id).await?;
            let state = self.partitions.get_mut(&partition).expect("rebuilt above");
            state.remember(note_id, command_id, outcome);
            return Ok(());
        }

        let note = state.notes.get(&note_id).cloned().unwrap_or_default();
        let now = now_millis();
        let outcome = match handle(&note, command, now) {
            Ok(events) => {
                let mut note = note;
                let mut event_ids = Vec::with_capacity(events.len());
                for (index, event) in events.iter().enumerate() {
                    let metadata = cause.command_event(command_id, index);
                    let event_id = metadata.event_id;
                    self.publisher
                        .publish(NOTES_EVENTS, event, &metadata)
                        .await?;
                    note = apply(note, event);
                    event_ids.push(event_id.to_string());
                }
                let version = events
                    .last()
                    .map(NotesEvent::version)
                    .or(Some(note.version));
                let state = self.partitions.get_mut(&partition).expect("rebuilt above");
                state.notes.insert(note_id, note);
                state
                    .events_by_command
                    .insert(command_id, event_ids.clone());
                info!(%note_id, %command_id, command = command.event_type(), ?version, "applied");
                NotesOutcome::CommandApplied(CommandApplied {
                    command_id,
                    note_id,
                    command_type: command_type(command),
                    version,
                    event_ids,
                    occurred_at: now,
                })
            }
            Err(rejection) => {
                info!(%note_id, %command_id, code = rejection.code.as_str(), reason = %rejection.message, "rejected");
                NotesOutcome::CommandRejected(CommandRejected {
                    command_id,
                    note_id,
                    command_type: command_type(command),
                    code: rejection.code.as_str().to_owned(),
                    message: rejection.message,
                    occurred_at: now,
                })
            }
        };
        self.send_outcome(&outcome, &cause, command_id).await?;
        let state = self.partitions.get_mut(&partition).expect("rebuilt above");
        state.remember(note_id, command_id, outcome);
        Ok(())
    }

    fn revoked(&mut self, partitions: &[(String, i32)]) {
        for (_, partition) in partitions {
            self.partitions.remove(partition);
        }
    }
}
