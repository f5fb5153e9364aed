//! The notes projection: folds `notes.events`, `embedding.events` and
//! `narration.events` into the `notes`, `note_artifacts` and `note_vectors` tables (the
//! last: every model's vector of a version, see [`crate::vectors`]), and (through
//! [`crate::sagas`]) `saga.note-pipeline` into the saga timeline and (through
//! [`crate::commands`]) `notes.outcomes` into command status.
//!
//! Every statement is idempotent and version-guarded, so applying a record twice, or a
//! zombie's second copy of a version, changes nothing: the first in log order wins, as
//! in the aggregate and the orchestrator.

use chrono::{TimeZone as _, Utc};
use notesaga_events::{embedding::EmbeddingEvent, narration::NarrationEvent, notes::NotesEvent};
use notesaga_log::FlowEvent;
use sqlx::{Any, Transaction};
use uuid::Uuid;

use crate::Result;

/// The projection's name (its consumer group is `notesaga.projector.notes`).
pub const NAME: &str = "notes";

/// The topics it reads.
pub const TOPICS: [&str; 5] = notesaga_log::PROJECTION_TOPICS;

pub(crate) fn rfc3339(millis: i64) -> String {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or_else(Utc::now)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Applies one record (id `event_id`, at `offset` of its partition) inside the batch's
/// transaction.
pub async fn apply(
    tx: &mut Transaction<'static, Any>,
    record: &FlowEvent,
    event_id: Uuid,
    offset: i64,
) -> Result<()> {
    match record {
        FlowEvent::Saga(event) => crate::sagas::apply(tx, event, event_id, offset).await?,
        FlowEvent::Outcome(outcome) => crate::commands::apply(tx, outcome).await?,
        FlowEvent::Notes(NotesEvent::NoteDeleted(e)) => {
            sqlx::query(
                "UPDATE notes SET deleted_at = $1, updated_at = $2 \
                 WHERE note_id = $3 AND deleted_at IS NULL",
            )
            .bind(rfc3339(e.occurred_at))
            .bind(rfc3339(e.occurred_at))
            .bind(e.note_id.to_string())
            .execute(&mut **tx)
            .await?;
            crate::search::forget(tx, e.note_id).await?;
            crate::search::touch(tx, e.note_id).await?;
        }
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingDeleted(e)) => {
            forget_artifact(
                tx,
                e.note_id,
                e.version,
                "embedding_model = NULL, embedding_dimensions = NULL, embedding_vector = NULL, \
                 embedding_f32 = NULL",
            )
            .await?;
            // The embedding store deleted every model's vector of the version(s).
            crate::vectors::forget(tx, e.note_id, e.version).await?;
            crate::search::touch(tx, e.note_id).await?;
        }
        FlowEvent::Narration(NarrationEvent::NarrationDeleted(e)) => {
            forget_artifact(
                tx,
                e.note_id,
                e.version,
                "audio_key = NULL, audio_duration_ms = NULL, audio_size_bytes = NULL",
            )
            .await?;
        }
        // The saga retries a failed delete; nothing changed.
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingDeletionFailed(_))
        | FlowEvent::Narration(NarrationEvent::NarrationDeletionFailed(_)) => {}
        FlowEvent::Notes(NotesEvent::NoteCreated(e)) => {
            let at = rfc3339(e.occurred_at);
            sqlx::query(
                "INSERT INTO notes (note_id, owner, version, title, body, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'processing', $6, $7) ON CONFLICT (note_id) DO NOTHING",
            )
            .bind(e.note_id.to_string())
            .bind(&e.owner)
            .bind(e.version)
            .bind(&e.title)
            .bind(&e.body)
            .bind(&at)
            .bind(&at)
            .execute(&mut **tx)
            .await?;
            crate::search::record_text(tx, e.note_id, e.version, &e.title, &e.body).await?;
        }
        FlowEvent::Notes(NotesEvent::NoteEdited(e)) => {
            sqlx::query(
                "UPDATE notes SET version = $1, title = $2, body = $3, status = 'processing', \
                 failure_reason = NULL, updated_at = $4 WHERE note_id = $5 AND version = $6",
            )
            .bind(e.version)
            .bind(&e.title)
            .bind(&e.body)
            .bind(rfc3339(e.occurred_at))
            .bind(e.note_id.to_string())
            .bind(e.version - 1)
            .execute(&mut **tx)
            .await?;
            crate::search::record_text(tx, e.note_id, e.version, &e.title, &e.body).await?;
        }
        FlowEvent::Notes(NotesEvent::NotePublished(e)) => {
            sqlx::query(
                "UPDATE notes SET published_version = $1, updated_at = $2, \
                 status = CASE WHEN version = $3 THEN 'published' ELSE status END \
                 WHERE note_id = $4 AND version >= $5 \
                 AND (published_version IS NULL OR published_version < $6)",
            )
            .bind(e.version)
            .bind(rfc3339(e.occurred_at))
            .bind(e.version)
            .bind(e.note_id.to_string())
            .bind(e.version)
            .bind(e.version)
            .execute(&mut **tx)
            .await?;
            crate::search::index_published(tx, e.note_id, e.version).await?;
            crate::search::touch(tx, e.note_id).await?;
        }
        FlowEvent::Notes(NotesEvent::NotePublicationFailed(e)) => {
            sqlx::query(
                "UPDATE notes SET status = 'failed', failure_reason = $1, updated_at = $2 \
                 WHERE note_id = $3 AND version = $4 AND status = 'processing'",
            )
            .bind(&e.reason)
            .bind(rfc3339(e.occurred_at))
            .bind(e.note_id.to_string())
            .bind(e.version)
            .execute(&mut **tx)
            .await?;
        }
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingGenerated(e)) => {
            crate::vectors::record(tx, e).await?;
            crate::search::touch(tx, e.note_id).await?;
            // `note_artifacts` holds the saga's embedding, the first of the version in log
            // order: a re-embedding's reply (another model, later on the same partition,
            // since only published versions are re-embedded) does not replace it. After
            // an `EmbeddingDeleted` the columns are empty and a new one is taken.
            // Bytes, not JSON: search reads every vector of a user per query.
            sqlx::query(
                "INSERT INTO note_artifacts (note_id, version, embedding_model, embedding_dimensions, embedding_f32) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (note_id, version) DO UPDATE SET \
                 embedding_model = excluded.embedding_model, \
                 embedding_dimensions = excluded.embedding_dimensions, \
                 embedding_vector = NULL, embedding_f32 = excluded.embedding_f32 \
                 WHERE note_artifacts.embedding_model IS NULL",
            )
            .bind(e.note_id.to_string())
            .bind(e.version)
            .bind(&e.model)
            .bind(i64::from(e.dimensions))
            .bind(crate::search::vector_bytes(&e.vector))
            .execute(&mut **tx)
            .await?;
        }
        FlowEvent::Narration(NarrationEvent::NarrationCompleted(e)) => {
            sqlx::query(
                "INSERT INTO note_artifacts (note_id, version, audio_key, audio_duration_ms, audio_size_bytes) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (note_id, version) DO UPDATE SET \
                 audio_key = excluded.audio_key, audio_duration_ms = excluded.audio_duration_ms, \
                 audio_size_bytes = excluded.audio_size_bytes",
            )
            .bind(e.note_id.to_string())
            .bind(e.version)
            .bind(&e.audio_key)
            .bind(e.duration_ms)
            .bind(e.size_bytes)
            .execute(&mut **tx)
            .await?;
        }
        // Failures of a step show through NotePublicationFailed, which the saga sends.
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingFailed(_))
        | FlowEvent::Narration(NarrationEvent::NarrationFailed(_)) => {}
    }
    Ok(())
}

/// Clears one kind of artifact of one version (`Some`) or of every version (`None`).
async fn forget_artifact(
    tx: &mut Transaction<'static, Any>,
    note_id: Uuid,
    version: Option<i64>,
    clear: &str,
) -> Result<()> {
    let note_id = note_id.to_string();
    match version {
        Some(version) => {
            sqlx::query(&format!(
                "UPDATE note_artifacts SET {clear} WHERE note_id = $1 AND version = $2"
            ))
            .bind(note_id)
            .bind(version)
            .execute(&mut **tx)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "UPDATE note_artifacts SET {clear} WHERE note_id = $1"
            ))
            .bind(note_id)
            .execute(&mut **tx)
            .await?
        }
    };
    Ok(())
}
