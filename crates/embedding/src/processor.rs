//! Answers `embedding.commands` (group `notesaga.embedding`): upsert the embedding by
//! (note, version), then (re-)send the reply, then the loop commits. A crash anywhere
//! repeats a step harmlessly: the upsert writes nothing new and the reply has the same id.

use notesaga_events::{
    embedding::{EmbeddingCommand, EmbeddingEvent, EmbeddingFailed, EmbeddingGenerated},
    now_millis,
    topics::EMBEDDING_EVENTS,
};
use notesaga_log::{Handler, HandlerError, Incoming, Publisher};
use tracing::info;

use crate::{
    provider::Resilient,
    store::{EmbeddingStore, StoredEmbedding},
};

/// The embedding processor's handler.
#[derive(Debug)]
pub struct EmbeddingProcessor {
    store: EmbeddingStore,
    embedder: Resilient,
    publisher: Publisher,
}

impl EmbeddingProcessor {
    /// A processor storing into `store` and replying through `publisher`.
    pub fn new(store: EmbeddingStore, embedder: Resilient, publisher: Publisher) -> Self {
        Self {
            store,
            embedder,
            publisher,
        }
    }
}

impl Handler<EmbeddingCommand> for EmbeddingProcessor {
    async fn handle(&mut self, incoming: &Incoming<EmbeddingCommand>) -> Result<(), HandlerError> {
        let EmbeddingCommand::GenerateEmbedding(command) = &incoming.message;
        let command_id = incoming.metadata.command();
        let reply_meta = incoming.metadata.command_event(command_id, 0);
        let stored = self
            .store
            .get(command.note_id, command.version)
            .await
            .map_err(|err| HandlerError::Transient(err.to_string()))?;
        let outcome = match stored {
            Some(stored) => Ok(stored),
            None => match self.embedder.embed(&command.text).await {
                Ok(vector) => {
                    let fresh = StoredEmbedding {
                        model: self.embedder.model().to_owned(),
                        vector,
                    };
                    self.store
                        .upsert(command.note_id, command.version, &fresh)
                        .await
                        .map(Ok)
                        .map_err(|err| HandlerError::Transient(err.to_string()))?
                }
                Err(failed) => Err(failed),
            },
        };
        let reply = match outcome {
            Ok(stored) => {
                info!(note_id = %command.note_id, version = command.version, model = %stored.model, "embedding stored");
                EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated {
                    note_id: command.note_id,
                    version: command.version,
                    model: stored.model,
                    dimensions: stored.vector.len() as i32,
                    vector: stored.vector,
                    occurred_at: now_millis(),
                })
            }
            Err(failed) => {
                tracing::warn!(note_id = %command.note_id, version = command.version, retryable = failed.retryable, reason = %failed.reason, "embedding failed");
                EmbeddingEvent::EmbeddingFailed(EmbeddingFailed {
                    note_id: command.note_id,
                    version: command.version,
                    retryable: failed.retryable,
                    reason: failed.reason,
                    occurred_at: now_millis(),
                })
            }
        };
        self.publisher
            .publish(EMBEDDING_EVENTS, &reply, &reply_meta)
            .await?;
        Ok(())
    }
}
