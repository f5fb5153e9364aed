//! Answers `embedding.commands` (group `notesaga.embedding`): upsert the embedding by
//! (note, version), then (re-)send the reply, then the loop commits. A crash anywhere
//! repeats a step harmlessly: the upsert writes nothing new and the reply has the same id.

use notesaga_events::{
    embedding::{EmbeddingCommand, EmbeddingEvent, EmbeddingFailed, EmbeddingGenerated},
    ids, now_millis,
    topics::EMBEDDING_EVENTS,
};
use notesaga_log::{Handler, HandlerError, Incoming, Publisher};
use tracing::info;

use crate::{
    embedder::BuiltinEmbedder,
    store::{EmbeddingStore, StoredEmbedding},
};

/// The embedding processor's handler.
#[derive(Debug)]
pub struct EmbeddingProcessor {
    store: EmbeddingStore,
    embedder: BuiltinEmbedder,
    publisher: Publisher,
}

impl EmbeddingProcessor {
    /// A processor storing into `store` and replying through `publisher`.
    pub fn new(store: EmbeddingStore, embedder: BuiltinEmbedder, publisher: Publisher) -> Self {
        Self {
            store,
            embedder,
            publisher,
        }
    }
}

impl Handler<EmbeddingCommand> for EmbeddingProcessor {
    async fn handle(&mut self, incoming: Incoming<EmbeddingCommand>) -> Result<(), HandlerError> {
        let EmbeddingCommand::GenerateEmbedding(command) = incoming.message;
        let command_id = incoming
            .metadata
            .command_id
            .unwrap_or(incoming.metadata.event_id);
        let reply_meta = incoming
            .metadata
            .caused(ids::event_id(command_id, 0))
            .with_command(command_id);
        let reply = if command.text.trim().is_empty() {
            EmbeddingEvent::EmbeddingFailed(EmbeddingFailed {
                note_id: command.note_id,
                version: command.version,
                retryable: false,
                reason: "text is empty".into(),
                occurred_at: now_millis(),
            })
        } else {
            let stored = match self.store.get(command.note_id, command.version).await {
                Ok(Some(stored)) => stored,
                Ok(None) => {
                    let fresh = StoredEmbedding {
                        model: self.embedder.model().to_owned(),
                        vector: self.embedder.embed(&command.text),
                    };
                    self.store
                        .upsert(command.note_id, command.version, &fresh)
                        .await
                        .map_err(|err| HandlerError::Transient(err.to_string()))?
                }
                Err(err) => return Err(HandlerError::Transient(err.to_string())),
            };
            info!(note_id = %command.note_id, version = command.version, model = %stored.model, "embedding stored");
            EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated {
                note_id: command.note_id,
                version: command.version,
                model: stored.model,
                dimensions: stored.vector.len() as i32,
                vector: stored.vector,
                occurred_at: now_millis(),
            })
        };
        self.publisher
            .publish(EMBEDDING_EVENTS, &reply, &reply_meta)
            .await?;
        Ok(())
    }
}
