//! The orchestrator's handler.

use std::collections::{HashMap, HashSet};

use notesaga_events::{
    embedding::EmbeddingCommand,
    ids,
    narration::NarrationCommand,
    notes::NotesCommand,
    now_millis,
    saga::SagaEvent,
    topics::{EMBEDDING_COMMANDS, NARRATION_COMMANDS, NOTES_COMMANDS, SAGA_NOTE_PIPELINE},
};
use notesaga_log::{
    reader::read_partition, Handler, HandlerError, Incoming, KafkaConfig, Metadata, Publisher,
};
use notesaga_sagas::note_pipeline::{apply, pending_command, react, Action, Command, NotePipeline};
use tracing::info;
use uuid::Uuid;

use notesaga_log::FlowEvent;

/// Runs note-pipeline sagas.
#[derive(Debug)]
pub struct Orchestrator {
    kafka: KafkaConfig,
    publisher: Publisher,
    /// Sagas of each partition this instance has rebuilt, by saga id.
    partitions: HashMap<i32, HashMap<Uuid, NotePipeline>>,
}

impl Orchestrator {
    /// An orchestrator writing through `publisher` and rebuilding through `kafka`.
    pub fn new(kafka: KafkaConfig, publisher: Publisher) -> Self {
        Self {
            kafka,
            publisher,
            partitions: HashMap::new(),
        }
    }

    async fn rebuild(&self, partition: i32) -> Result<HashMap<Uuid, NotePipeline>, HandlerError> {
        let events = read_partition::<SagaEvent>(
            &self.kafka,
            self.publisher.codec(),
            SAGA_NOTE_PIPELINE,
            partition,
        )
        .await?;
        let mut seen = HashSet::new();
        let mut sagas: HashMap<Uuid, NotePipeline> = HashMap::new();
        for event in &events {
            if !seen.insert(event.metadata.event_id) {
                continue;
            }
            let saga_id = event.message.saga_id();
            if let Some(saga) = apply(sagas.remove(&saga_id), &event.message) {
                sagas.insert(saga_id, saga);
            }
        }
        // A crash may have come between appending StepRequested and sending the
        // command: send it again with the same id (the processor answers it once).
        let mut resent = 0;
        for saga in sagas.values() {
            if let Some(Action::Send {
                command_id,
                command,
            }) = pending_command(saga)
            {
                let cause = Metadata::new(command_id, saga.saga_id.to_string());
                self.send(command_id, &command, &cause).await?;
                resent += 1;
            }
        }
        info!(
            partition,
            events = events.len(),
            sagas = sagas.len(),
            resent,
            "rebuilt saga partition"
        );
        Ok(sagas)
    }

    async fn send(
        &self,
        command_id: Uuid,
        command: &Command,
        cause: &Metadata,
    ) -> Result<(), HandlerError> {
        let metadata = cause.caused(command_id).with_command(command_id);
        match command {
            Command::GenerateEmbedding(c) => {
                self.publisher
                    .publish(
                        EMBEDDING_COMMANDS,
                        &EmbeddingCommand::GenerateEmbedding(c.clone()),
                        &metadata,
                    )
                    .await?
            }
            Command::NarrateNote(c) => {
                self.publisher
                    .publish(
                        NARRATION_COMMANDS,
                        &NarrationCommand::NarrateNote(c.clone()),
                        &metadata,
                    )
                    .await?
            }
            Command::PublishNoteVersion(c) => {
                self.publisher
                    .publish(
                        NOTES_COMMANDS,
                        &NotesCommand::PublishNoteVersion(c.clone()),
                        &metadata,
                    )
                    .await?
            }
            Command::MarkNoteVersionFailed(c) => {
                self.publisher
                    .publish(
                        NOTES_COMMANDS,
                        &NotesCommand::MarkNoteVersionFailed(c.clone()),
                        &metadata,
                    )
                    .await?
            }
        };
        Ok(())
    }
}

impl Handler<FlowEvent> for Orchestrator {
    async fn handle(&mut self, incoming: &Incoming<FlowEvent>) -> Result<(), HandlerError> {
        let partition = incoming.partition;
        if !self.partitions.contains_key(&partition) {
            let sagas = self.rebuild(partition).await?;
            self.partitions.insert(partition, sagas);
        }
        let Some((note_id, version, input)) = crate::observed::to_input(&incoming.message) else {
            return Ok(());
        };
        let saga_id = ids::saga_id(note_id, version);
        let sagas = self.partitions.get(&partition).expect("rebuilt above");
        let actions = react(sagas.get(&saga_id), &input, now_millis());
        if actions.is_empty() {
            tracing::debug!(%saga_id, ?input, "nothing to do (duplicate or late reply)");
        }
        let mut saga = sagas.get(&saga_id).cloned();
        for (index, action) in actions.iter().enumerate() {
            match action {
                Action::Record(event) => {
                    let event_id = ids::saga_event_id(saga_id, incoming.metadata.event_id, index);
                    let metadata = incoming.metadata.caused(event_id);
                    self.publisher
                        .publish(SAGA_NOTE_PIPELINE, event, &metadata)
                        .await?;
                    saga = apply(saga, event);
                    if let Some(saga) = &saga {
                        self.partitions
                            .get_mut(&partition)
                            .expect("rebuilt above")
                            .insert(saga_id, saga.clone());
                        info!(%saga_id, %note_id, version, event = notesaga_events::Message::event_type(event), status = saga.status.as_str(), "saga advanced");
                    }
                }
                Action::Send {
                    command_id,
                    command,
                } => {
                    self.send(*command_id, command, &incoming.metadata).await?;
                }
            }
        }
        Ok(())
    }

    fn revoked(&mut self, partitions: &[(String, i32)]) {
        for (_, partition) in partitions {
            self.partitions.remove(partition);
        }
    }
}
