//! Answers `embedding.commands` (group `notesaga.embedding`).
//!
//! `GenerateEmbedding`: upsert the embedding by (note, version, model), then (re-)send the
//! reply, then the loop commits. The model is the command's (a re-embedding) or the
//! configured one (the saga's commands name none); [`crate::models`] says which embedder
//! that is. `DeleteEmbedding`: delete the rows of one version or of every
//! version, then reply. A crash anywhere repeats a step harmlessly: the upsert writes
//! nothing new, a repeated delete removes nothing, and the reply has the same id.
//!
//! A failed delete is an answer, not a handler error: `EmbeddingDeletionFailed` goes to
//! the saga, which owns the retries (and the visible `compensation_failed` state when they
//! do not help), instead of this loop retrying the record behind the saga's back.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use notesaga_events::{
    embedding::{
        DeleteEmbedding, EmbeddingCommand, EmbeddingDeleted, EmbeddingDeletionFailed,
        EmbeddingEvent, EmbeddingFailed, EmbeddingGenerated, GenerateEmbedding,
    },
    now_millis,
    topics::EMBEDDING_EVENTS,
};
use notesaga_log::{answer_all, faults, Answer, Handler, HandlerError, Incoming, Publisher};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    models::Embedders,
    provider::{Failed, Resilient},
    store::{EmbeddingStore, StoredEmbedding},
};

/// A `GenerateEmbedding` as a batch's preparation keys it: (note, version, the model it
/// names).
type Requested = (Uuid, i64, Option<String>);

/// What the preparation of a batch settled: the stored embedding (and when it was
/// stored) or why the provider failed.
type Settled = Result<(StoredEmbedding, Option<i64>), Failed>;

/// Most commands handled as one batch (their replies acknowledged together); the role's
/// consumer loop is built with it. A batch holds only records already fetched, and the
/// loop does not poll the group while it works, so a batch must end well within
/// `max.poll.interval.ms` (300 s) even when the provider is slow: a local model takes
/// tens of milliseconds per note.
pub const BATCH: usize = 32;

/// The embedding processor's handler.
#[derive(Debug)]
pub struct EmbeddingProcessor {
    store: EmbeddingStore,
    embedders: Embedders,
    publisher: Publisher,
    /// The batch in hand's `GenerateEmbedding`s, settled together by [`prepare`]
    /// and taken by their answers.
    prepared: Mutex<HashMap<Requested, Settled>>,
}

impl EmbeddingProcessor {
    /// A processor embedding with `embedder` (and, for a re-embedding naming another
    /// model, the in-process models, all-MiniLM-L6-v2 from its default directory),
    /// storing into `store` and replying through `publisher`.
    pub fn new(store: EmbeddingStore, embedder: Resilient, publisher: Publisher) -> Self {
        Self {
            store,
            embedders: Embedders::new(embedder, notesaga_embedder::minilm::default_model_dir()),
            publisher,
            prepared: Mutex::default(),
        }
    }

    /// Where a re-embedding to all-MiniLM-L6-v2 loads the model from
    /// (`NOTESAGA_EMBEDDING_MODEL_DIR`).
    pub fn with_minilm_dir(self, dir: std::path::PathBuf) -> Self {
        let configured = self.embedders.configured().clone();
        Self {
            embedders: Embedders::new(configured, dir),
            ..self
        }
    }
}

impl Answer<EmbeddingCommand> for EmbeddingProcessor {
    type Reply = EmbeddingEvent;
    const TOPIC: &'static str = EMBEDDING_EVENTS;

    async fn answer(
        &self,
        incoming: &Incoming<EmbeddingCommand>,
    ) -> Result<EmbeddingEvent, HandlerError> {
        Ok(match &incoming.message {
            EmbeddingCommand::GenerateEmbedding(command) => {
                let prepared = self
                    .prepared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&requested(command));
                match prepared {
                    Some(settled) => reply(command, settled),
                    None => generate(&self.store, &self.embedders, command).await?,
                }
            }
            EmbeddingCommand::DeleteEmbedding(command) => delete(&self.store, command).await,
        })
    }

    fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}

impl Handler<EmbeddingCommand> for EmbeddingProcessor {
    async fn handle(&mut self, incoming: &Incoming<EmbeddingCommand>) -> Result<(), HandlerError> {
        answer_all(self, std::slice::from_ref(incoming)).await
    }

    async fn handle_batch(
        &mut self,
        batch: &[Incoming<EmbeddingCommand>],
    ) -> Result<(), HandlerError> {
        let prepared = prepare(&self.store, &self.embedders, batch).await?;
        *self.prepared.get_mut().unwrap_or_else(|e| e.into_inner()) = prepared;
        let answered = answer_all(self, batch).await;
        self.prepared
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        answered
    }
}

/// Settles the `GenerateEmbedding`s of `batch` together: one read for every stored
/// embedding, the missing ones embedded, and one write (one transaction) for all of
/// them, where one record at a time cost a read, a write and a read each. The answers
/// then take what was settled, in the batch's order. A note with a `DeleteEmbedding`
/// in the batch is left to the record-by-record path, where its commands run in log
/// order; so is a model this role cannot run (its answer is the failure).
async fn prepare(
    store: &EmbeddingStore,
    embedders: &Embedders,
    batch: &[Incoming<EmbeddingCommand>],
) -> Result<HashMap<Requested, Settled>, HandlerError> {
    let deleting: HashSet<Uuid> = batch
        .iter()
        .filter_map(|incoming| match &incoming.message {
            EmbeddingCommand::DeleteEmbedding(command) => Some(command.note_id),
            EmbeddingCommand::GenerateEmbedding(_) => None,
        })
        .collect();
    // Each (note, version, model) once: a second command for the same embedding (a
    // redelivery in the same batch) takes the one-by-one path, which reads it back.
    let mut wanted: Vec<(&GenerateEmbedding, Resilient)> = Vec::new();
    let mut keys = Vec::new();
    for incoming in batch {
        let EmbeddingCommand::GenerateEmbedding(command) = &incoming.message else {
            continue;
        };
        if deleting.contains(&command.note_id) {
            continue;
        }
        let Ok(embedder) = embedders.for_model(command.model.as_deref()).await else {
            continue;
        };
        let key = (
            command.note_id,
            command.version,
            embedder.model().to_owned(),
        );
        if !keys.contains(&key) {
            keys.push(key);
            wanted.push((command, embedder));
        }
    }
    let mut settled = HashMap::new();
    if wanted.len() < 2 {
        // One command costs the same either way.
        return Ok(settled);
    }
    let mut stored = store.get_stored_many(&keys).await.map_err(transient)?;
    let mut fresh = Vec::new();
    for ((command, embedder), key) in wanted.iter().zip(&keys) {
        if let Some(found) = stored.remove(key) {
            settled.insert(requested(command), Ok(found));
            continue;
        }
        match embed(embedder, &command.text).await {
            Ok(vector) => fresh.push((
                command.note_id,
                command.version,
                StoredEmbedding {
                    model: embedder.model().to_owned(),
                    vector,
                },
            )),
            Err(failed) => {
                settled.insert(requested(command), Err(failed));
            }
        }
    }
    if !fresh.is_empty() {
        let mut written = store.upsert_stored_many(&fresh).await.map_err(transient)?;
        for ((command, _), key) in wanted.iter().zip(&keys) {
            if let Some(found) = written.remove(key) {
                settled.insert(requested(command), Ok(found));
            }
        }
    }
    Ok(settled)
}

/// How a batch's preparation keys `command`.
fn requested(command: &GenerateEmbedding) -> Requested {
    (command.note_id, command.version, command.model.clone())
}

fn transient(err: crate::store::Error) -> HandlerError {
    HandlerError::Transient(err.to_string())
}

/// The reply to a `GenerateEmbedding`. A store failure is a handler error (the loop
/// retries the record); a provider failure, or a model this role cannot run, is an
/// `EmbeddingFailed` reply.
async fn generate(
    store: &EmbeddingStore,
    embedders: &Embedders,
    command: &GenerateEmbedding,
) -> Result<EmbeddingEvent, HandlerError> {
    let embedder = match embedders.for_model(command.model.as_deref()).await {
        Ok(embedder) => embedder,
        Err(failed) => return Ok(failure(command, failed)),
    };
    let embedder = &embedder;
    // The reply carries the time the vector was stored, not the time of this delivery:
    // a redelivered command repeats its reply byte for byte.
    let stored = store
        .get_stored(command.note_id, command.version, embedder.model())
        .await
        .map_err(|err| HandlerError::Transient(err.to_string()))?;
    let outcome = match stored {
        Some(stored) => Ok(stored),
        None => match embed(embedder, &command.text).await {
            Ok(vector) => {
                let fresh = StoredEmbedding {
                    model: embedder.model().to_owned(),
                    vector,
                };
                Ok(store
                    .upsert_stored(command.note_id, command.version, &fresh)
                    .await
                    .map_err(|err| HandlerError::Transient(err.to_string()))?)
            }
            Err(failed) => Err(failed),
        },
    };
    Ok(reply(command, outcome))
}

/// The reply to `command` once its embedding is stored (or the provider failed).
fn reply(command: &GenerateEmbedding, outcome: Settled) -> EmbeddingEvent {
    match outcome {
        Ok((stored, stored_at)) => {
            info!(note_id = %command.note_id, version = command.version, model = %stored.model, "embedding stored");
            EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated {
                note_id: command.note_id,
                version: command.version,
                model: stored.model,
                dimensions: stored.vector.len() as i32,
                vector: stored.vector,
                occurred_at: stored_at.unwrap_or_else(now_millis),
            })
        }
        Err(failed) => failure(command, failed),
    }
}

/// The `EmbeddingFailed` answering `command`.
fn failure(command: &GenerateEmbedding, failed: Failed) -> EmbeddingEvent {
    warn!(note_id = %command.note_id, version = command.version, model = ?command.model, retryable = failed.retryable, reason = %failed.reason, "embedding failed");
    EmbeddingEvent::EmbeddingFailed(EmbeddingFailed {
        note_id: command.note_id,
        version: command.version,
        retryable: failed.retryable,
        reason: failed.reason,
        occurred_at: now_millis(),
    })
}

/// Embeds `text`; an injected fault stands for a provider outage, which a later attempt
/// may get past.
async fn embed(embedder: &Resilient, text: &str) -> Result<Vec<f32>, Failed> {
    faults::check("embedding.generate").map_err(|reason| Failed {
        retryable: true,
        reason,
    })?;
    embedder.embed(text).await
}

/// The reply to a `DeleteEmbedding`: `EmbeddingDeleted` with the rows removed (0 when
/// there was nothing left), or `EmbeddingDeletionFailed` when the store failed.
async fn delete(store: &EmbeddingStore, command: &DeleteEmbedding) -> EmbeddingEvent {
    let removed = match faults::check("embedding.delete") {
        Ok(()) => store
            .delete(command.note_id, command.version)
            .await
            .map_err(|err| err.to_string()),
        Err(injected) => Err(injected),
    };
    match removed {
        Ok(rows) => {
            info!(note_id = %command.note_id, version = ?command.version, rows, "embeddings deleted");
            EmbeddingEvent::EmbeddingDeleted(EmbeddingDeleted {
                note_id: command.note_id,
                version: command.version,
                // A note has far fewer versions than i32::MAX; saturate rather than wrap.
                deleted: i32::try_from(rows).unwrap_or(i32::MAX),
                occurred_at: now_millis(),
            })
        }
        Err(reason) => {
            warn!(note_id = %command.note_id, version = ?command.version, %reason, "embedding deletion failed");
            EmbeddingEvent::EmbeddingDeletionFailed(EmbeddingDeletionFailed {
                note_id: command.note_id,
                version: command.version,
                reason,
                occurred_at: now_millis(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use notesaga_log::{breaker::BreakerConfig, RetryPolicy};
    use uuid::Uuid;

    use super::*;
    use crate::{provider::Provider, BuiltinEmbedder};

    const NOTE: Uuid = Uuid::from_u128(7);
    const BUILTIN: &str = notesaga_embedder::hash::MODEL;

    async fn sqlite() -> (tempfile::TempDir, String, EmbeddingStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
        let store = EmbeddingStore::connect(&url).await.unwrap();
        (dir, url, store)
    }

    fn embedder() -> Embedders {
        let configured = Resilient::new(
            Provider::Builtin(BuiltinEmbedder),
            RetryPolicy::default(),
            BreakerConfig::default(),
            1,
        );
        Embedders::new(configured, notesaga_embedder::minilm::default_model_dir())
    }

    fn generate_command(version: i64) -> GenerateEmbedding {
        GenerateEmbedding {
            note_id: NOTE,
            version,
            text: "photosynthesis turns light into sugar".into(),
            model: None,
        }
    }

    fn delete_command(version: Option<i64>) -> DeleteEmbedding {
        DeleteEmbedding {
            note_id: NOTE,
            version,
        }
    }

    fn deleted_rows(reply: &EmbeddingEvent) -> i32 {
        match reply {
            EmbeddingEvent::EmbeddingDeleted(d) => d.deleted,
            other => panic!("expected EmbeddingDeleted, got {other:?}"),
        }
    }

    fn incoming(offset: i64, command: EmbeddingCommand) -> Incoming<EmbeddingCommand> {
        Incoming {
            message: command,
            metadata: notesaga_log::Metadata::new(Uuid::from_u128(1000 + offset as u128), "t"),
            topic: "embedding.commands".into(),
            partition: 0,
            offset,
        }
    }

    /// A batch settled together answers each command as the record-by-record path
    /// answers its redelivery (the same vector and time); a note with a delete in the batch is left
    /// to that path, and so is a lone command.
    #[tokio::test]
    async fn a_batch_settled_together_answers_as_one_record_at_a_time() {
        let (_dir, _url, store) = sqlite().await;
        let embedders = embedder();
        let other = Uuid::from_u128(8);
        let deleted = Uuid::from_u128(9);
        // Version 1 is stored before the batch: the batch reads it, not writes it.
        let before = generate(&store, &embedders, &generate_command(1))
            .await
            .unwrap();
        let batch = vec![
            incoming(0, EmbeddingCommand::GenerateEmbedding(generate_command(1))),
            incoming(1, EmbeddingCommand::GenerateEmbedding(generate_command(2))),
            incoming(2, EmbeddingCommand::GenerateEmbedding(generate_command(2))),
            incoming(
                3,
                EmbeddingCommand::GenerateEmbedding(GenerateEmbedding {
                    note_id: other,
                    ..generate_command(1)
                }),
            ),
            incoming(
                4,
                EmbeddingCommand::GenerateEmbedding(GenerateEmbedding {
                    note_id: deleted,
                    ..generate_command(1)
                }),
            ),
            incoming(
                5,
                EmbeddingCommand::DeleteEmbedding(DeleteEmbedding {
                    note_id: deleted,
                    version: None,
                }),
            ),
        ];
        let settled = prepare(&store, &embedders, &batch).await.unwrap();
        let mut keys: Vec<_> = settled.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![(NOTE, 1, None), (NOTE, 2, None), (other, 1, None)],
            "the deleted note is left to the one-by-one path, duplicates settled once"
        );
        assert!(
            store.get(deleted, 1, BUILTIN).await.unwrap().is_none(),
            "nothing written for a note with a delete in the batch"
        );
        for (note_id, version, model) in keys {
            let command = GenerateEmbedding {
                note_id,
                version,
                model,
                ..generate_command(version)
            };
            let batched = reply(&command, settled[&requested(&command)].clone());
            let redelivered = generate(&store, &embedders, &command).await.unwrap();
            assert_eq!(batched, redelivered, "{note_id} v{version}");
        }
        let again = generate(&store, &embedders, &generate_command(1))
            .await
            .unwrap();
        assert_eq!(again, before, "the stored version kept its first reply");

        let lone = vec![incoming(
            0,
            EmbeddingCommand::GenerateEmbedding(generate_command(3)),
        )];
        assert!(prepare(&store, &embedders, &lone).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn generate_then_delete_one_version_then_all() {
        let (_dir, _url, store) = sqlite().await;
        let embedder = embedder();
        for version in [1, 2, 3] {
            let reply = generate(&store, &embedder, &generate_command(version))
                .await
                .unwrap();
            assert!(
                matches!(reply, EmbeddingEvent::EmbeddingGenerated(ref g) if g.version == version),
                "{reply:?}"
            );
        }

        let reply = delete(&store, &delete_command(Some(2))).await;
        assert_eq!(deleted_rows(&reply), 1);
        match &reply {
            EmbeddingEvent::EmbeddingDeleted(d) => {
                assert_eq!((d.note_id, d.version), (NOTE, Some(2)));
            }
            other => panic!("{other:?}"),
        }
        assert!(store.get(NOTE, 2, BUILTIN).await.unwrap().is_none());
        assert!(store.get(NOTE, 1, BUILTIN).await.unwrap().is_some());
        // The redelivery: nothing left, still a success.
        assert_eq!(
            deleted_rows(&delete(&store, &delete_command(Some(2))).await),
            0
        );

        assert_eq!(
            deleted_rows(&delete(&store, &delete_command(None)).await),
            2
        );
        assert_eq!(
            deleted_rows(&delete(&store, &delete_command(None)).await),
            0
        );
        assert!(store.get(NOTE, 1, BUILTIN).await.unwrap().is_none());
    }

    /// A re-embedding names its model: it is answered with a vector of that model even
    /// though the version has the saga's vector of another model stored, and its
    /// redelivery repeats the reply byte for byte. A model the role cannot run is a
    /// permanent `EmbeddingFailed` saying so.
    #[tokio::test]
    async fn a_re_embedding_answers_with_its_model_never_the_stored_one() {
        let (_dir, _url, store) = sqlite().await;
        // The saga's vector, by a model this role runs no more.
        let sagas = StoredEmbedding {
            model: "nomic-embed-text".into(),
            vector: vec![0.6, 0.8],
        };
        store.upsert(NOTE, 1, &sagas).await.unwrap();
        let embedders = embedder();
        let command = GenerateEmbedding {
            model: Some(BUILTIN.into()),
            ..generate_command(1)
        };
        let first = generate(&store, &embedders, &command).await.unwrap();
        match &first {
            EmbeddingEvent::EmbeddingGenerated(g) => {
                assert_eq!(g.model, BUILTIN);
                assert_eq!(g.dimensions, 256);
                assert_eq!(g.vector.len(), 256);
            }
            other => panic!("expected EmbeddingGenerated, got {other:?}"),
        }
        let again = generate(&store, &embedders, &command).await.unwrap();
        assert_eq!(again, first, "a redelivery repeats the reply");
        assert_eq!(
            store.get(NOTE, 1, "nomic-embed-text").await.unwrap(),
            Some(sagas)
        );

        let unknown = GenerateEmbedding {
            model: Some("text-embedding-3-large".into()),
            ..generate_command(1)
        };
        match generate(&store, &embedders, &unknown).await.unwrap() {
            EmbeddingEvent::EmbeddingFailed(failed) => {
                assert!(!failed.retryable);
                assert!(
                    failed.reason.starts_with(
                        "model text-embedding-3-large is not available in this embedding role"
                    ),
                    "{}",
                    failed.reason
                );
            }
            other => panic!("expected EmbeddingFailed, got {other:?}"),
        }
    }

    /// A store that fails answers `EmbeddingDeletionFailed` (for the saga to retry)
    /// instead of failing the handler.
    #[tokio::test]
    async fn store_failure_is_a_deletion_failed_reply() {
        let (_dir, url, store) = sqlite().await;
        let saboteur = notesaga_sql::connect(&url, 1).await.unwrap();
        sqlx::query("DROP TABLE embedding_vectors")
            .execute(&saboteur)
            .await
            .unwrap();
        match delete(&store, &delete_command(Some(1))).await {
            EmbeddingEvent::EmbeddingDeletionFailed(failed) => {
                assert_eq!((failed.note_id, failed.version), (NOTE, Some(1)));
                assert!(
                    failed.reason.contains("embedding_vectors"),
                    "{}",
                    failed.reason
                );
            }
            other => panic!("expected EmbeddingDeletionFailed, got {other:?}"),
        }
    }

    /// The fault points, with the feature on: `NOTESAGA_FAULTS_DIR` is process-wide, and
    /// nextest runs every test in its own process.
    #[cfg(feature = "fault-injection")]
    #[tokio::test]
    async fn injected_faults_become_failure_replies() {
        let (dir, _url, store) = sqlite().await;
        let embedder = embedder();
        std::env::set_var("NOTESAGA_FAULTS_DIR", dir.path());
        std::fs::write(dir.path().join("embedding.generate"), "1").unwrap();
        std::fs::write(dir.path().join("embedding.delete"), "1").unwrap();

        match generate(&store, &embedder, &generate_command(1))
            .await
            .unwrap()
        {
            EmbeddingEvent::EmbeddingFailed(failed) => {
                assert!(failed.retryable);
                assert!(failed.reason.contains("embedding.generate"), "{failed:?}");
            }
            other => panic!("expected EmbeddingFailed, got {other:?}"),
        }
        assert!(store.get(NOTE, 1, BUILTIN).await.unwrap().is_none());
        let reply = generate(&store, &embedder, &generate_command(1))
            .await
            .unwrap();
        assert!(
            matches!(reply, EmbeddingEvent::EmbeddingGenerated(_)),
            "{reply:?}"
        );

        match delete(&store, &delete_command(None)).await {
            EmbeddingEvent::EmbeddingDeletionFailed(failed) => {
                assert!(failed.reason.contains("embedding.delete"), "{failed:?}");
            }
            other => panic!("expected EmbeddingDeletionFailed, got {other:?}"),
        }
        // The injected failure deleted nothing; the retry does.
        assert!(store.get(NOTE, 1, BUILTIN).await.unwrap().is_some());
        assert_eq!(
            deleted_rows(&delete(&store, &delete_command(None)).await),
            1
        );
    }
}
