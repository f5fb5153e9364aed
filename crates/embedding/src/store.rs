//! The embedding store: one row per (note, version, model), written with an idempotent
//! upsert and removed with an idempotent delete (of every model's row of a version).
//!
//! Keyed by the model because a re-embedding (`notesaga reembed`, issue 13) stores a
//! second model's vector of a version beside the first: a lookup by (note, version)
//! alone would answer a re-embedding with the old model's vector.

use sqlx::{AnyPool, Row as _};
use uuid::Uuid;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("embedding store: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("embedding store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored vector is not valid JSON.
    #[error("embedding store holds a bad vector for {note_id} v{version}: {reason}")]
    Corrupt {
        /// The note.
        note_id: Uuid,
        /// The version.
        version: i64,
        /// What is wrong.
        reason: String,
    },
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stored embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEmbedding {
    /// Model that produced it.
    pub model: String,
    /// The vector.
    pub vector: Vec<f32>,
}

/// An embedding's key: (note, version, model).
pub type EmbeddingKey = (Uuid, i64, String);

/// Embeddings by key, with when each was stored (milliseconds since the Unix epoch).
pub type StoredMany = std::collections::HashMap<EmbeddingKey, (StoredEmbedding, Option<i64>)>;

/// Most keys one statement names (6 bind parameters each for a write: far below the
/// limits of SQLite and PostgreSQL).
const KEYS_PER_STATEMENT: usize = 256;

/// A row of `embedding_vectors` (model, vector, created_at) as the embedding and when it
/// was stored.
fn decode_stored(
    row: &sqlx::any::AnyRow,
    note_id: Uuid,
    version: i64,
) -> Result<(StoredEmbedding, Option<i64>)> {
    let model: String = row.try_get("model")?;
    let vector: String = row.try_get("vector")?;
    let created_at: String = row.try_get("created_at")?;
    let vector = serde_json::from_str(&vector).map_err(|err| Error::Corrupt {
        note_id,
        version,
        reason: err.to_string(),
    })?;
    let stored_at = chrono::DateTime::parse_from_rfc3339(&created_at)
        .ok()
        .map(|at| at.timestamp_millis());
    Ok((StoredEmbedding { model, vector }, stored_at))
}

/// The embedding domain's tables (SQLite or PostgreSQL).
#[derive(Debug, Clone)]
pub struct EmbeddingStore {
    pool: AnyPool,
}

/// The migrations of this store. With PostgreSQL the stores share one database and one
/// migrations table, so versions are distinct per store and each store ignores the
/// others' entries.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

impl EmbeddingStore {
    /// Connects to `url` (`sqlite://…?mode=rwc` or `postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool =
            notesaga_sql::connect(url, notesaga_sql::connections_for_one_writer(url, 4)).await?;
        notesaga_sql::migrate(&migrator(), &pool).await?;
        Ok(Self { pool })
    }

    /// The embedding of a version by `model`, if stored.
    pub async fn get(
        &self,
        note_id: Uuid,
        version: i64,
        model: &str,
    ) -> Result<Option<StoredEmbedding>> {
        Ok(self
            .get_stored(note_id, version, model)
            .await?
            .map(|(embedding, _)| embedding))
    }

    /// When the embedding of `version` by `model` was stored, milliseconds since the Unix
    /// epoch. A reply describing it carries this time, so a redelivered command repeats
    /// its reply byte for byte.
    pub async fn stored_at(&self, note_id: Uuid, version: i64, model: &str) -> Result<Option<i64>> {
        Ok(self
            .get_stored(note_id, version, model)
            .await?
            .and_then(|(_, at)| at))
    }

    /// The embedding of a version by `model` and when it was stored (milliseconds since
    /// the Unix epoch), in one read: what the processor's reply needs.
    pub async fn get_stored(
        &self,
        note_id: Uuid,
        version: i64,
        model: &str,
    ) -> Result<Option<(StoredEmbedding, Option<i64>)>> {
        let row = sqlx::query(
            "SELECT model, vector, created_at FROM embedding_vectors \
             WHERE note_id = $1 AND version = $2 AND model = $3",
        )
        .bind(note_id.to_string())
        .bind(version)
        .bind(model.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| decode_stored(&row, note_id, version))
            .transpose()
    }

    /// Stores the embedding of a version unless one of its model is stored already;
    /// returns the one that is stored afterwards (a redelivered command writes nothing
    /// new).
    pub async fn upsert(
        &self,
        note_id: Uuid,
        version: i64,
        embedding: &StoredEmbedding,
    ) -> Result<StoredEmbedding> {
        Ok(self.upsert_stored(note_id, version, embedding).await?.0)
    }

    /// [`Self::upsert`], with the time the stored embedding was stored (as
    /// [`Self::get_stored`]).
    pub async fn upsert_stored(
        &self,
        note_id: Uuid,
        version: i64,
        embedding: &StoredEmbedding,
    ) -> Result<(StoredEmbedding, Option<i64>)> {
        let vector = serde_json::to_string(&embedding.vector).expect("floats serialise");
        sqlx::query(
            "INSERT INTO embedding_vectors (note_id, version, model, dimensions, vector, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (note_id, version, model) DO NOTHING",
        )
        .bind(note_id.to_string())
        .bind(version)
        .bind(&embedding.model)
        .bind(embedding.vector.len() as i64)
        .bind(vector)
        .bind(chrono::Utc::now().to_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(self
            .get_stored(note_id, version, &embedding.model)
            .await?
            .unwrap_or_else(|| (embedding.clone(), None)))
    }

    /// [`Self::get_stored`] of many (note, version, model) keys in one read: the keys
    /// found, with their embedding and when it was stored.
    pub async fn get_stored_many(&self, keys: &[EmbeddingKey]) -> Result<StoredMany> {
        let mut found = StoredMany::new();
        let mut notes: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
        notes.sort_unstable();
        notes.dedup();
        for chunk in notes.chunks(KEYS_PER_STATEMENT) {
            let placeholders = notesaga_sql::placeholders(1, chunk.len());
            let sql = format!(
                "SELECT note_id, version, model, vector, created_at FROM embedding_vectors \
                 WHERE note_id IN ({placeholders})"
            );
            let mut query = sqlx::query(&sql);
            for note_id in chunk {
                query = query.bind(note_id.to_string());
            }
            for row in query.fetch_all(&self.pool).await? {
                let note_id: String = row.try_get("note_id")?;
                let Ok(note_id) = Uuid::parse_str(&note_id) else {
                    continue;
                };
                let key = (note_id, row.try_get("version")?, row.try_get("model")?);
                if keys.contains(&key) {
                    let stored = decode_stored(&row, note_id, key.1)?;
                    found.insert(key, stored);
                }
            }
        }
        Ok(found)
    }

    /// [`Self::upsert_stored`] of many embeddings in one statement (one transaction):
    /// each is stored unless its key is stored already, and what is stored afterwards is
    /// returned for every key.
    pub async fn upsert_stored_many(
        &self,
        embeddings: &[(Uuid, i64, StoredEmbedding)],
    ) -> Result<StoredMany> {
        let created_at = chrono::Utc::now().to_rfc3339();
        // What a read gives back: the time at the precision it is stored.
        let stored_at = chrono::DateTime::parse_from_rfc3339(&created_at)
            .ok()
            .map(|at| at.timestamp_millis());
        let mut stored = StoredMany::new();
        let mut lost = Vec::new();
        for chunk in embeddings.chunks(KEYS_PER_STATEMENT) {
            let values = notesaga_sql::row_placeholders(chunk.len(), 6);
            // RETURNING names the rows this statement wrote; a key it skipped was stored
            // before (a redelivery, or another member) and is read back below.
            let sql = format!(
                "INSERT INTO embedding_vectors (note_id, version, model, dimensions, vector, created_at) \
                 VALUES {values} ON CONFLICT (note_id, version, model) DO NOTHING \
                 RETURNING note_id, version, model"
            );
            let mut query = sqlx::query(&sql);
            let mut vectors = Vec::with_capacity(chunk.len());
            for (note_id, version, embedding) in chunk {
                let vector = serde_json::to_string(&embedding.vector).expect("floats serialise");
                // The vector as a later read decodes it, so this reply and a redelivery's
                // are the same bytes.
                let decoded: Vec<f32> =
                    serde_json::from_str(&vector).map_err(|err| Error::Corrupt {
                        note_id: *note_id,
                        version: *version,
                        reason: err.to_string(),
                    })?;
                vectors.push(decoded);
                query = query
                    .bind(note_id.to_string())
                    .bind(*version)
                    .bind(embedding.model.clone())
                    .bind(embedding.vector.len() as i64)
                    .bind(vector)
                    .bind(created_at.clone());
            }
            let mut written = Vec::new();
            for row in query.fetch_all(&self.pool).await? {
                let note_id: String = row.try_get("note_id")?;
                if let Ok(note_id) = Uuid::parse_str(&note_id) {
                    let version: i64 = row.try_get("version")?;
                    let model: String = row.try_get("model")?;
                    written.push((note_id, version, model));
                }
            }
            for ((note_id, version, embedding), vector) in chunk.iter().zip(vectors) {
                let key = (*note_id, *version, embedding.model.clone());
                if written.contains(&key) {
                    let embedding = StoredEmbedding {
                        model: embedding.model.clone(),
                        vector,
                    };
                    stored.insert(key, (embedding, stored_at));
                } else {
                    lost.push(key);
                }
            }
        }
        if !lost.is_empty() {
            let mut before = self.get_stored_many(&lost).await?;
            for (note_id, version, embedding) in embeddings {
                let key = (*note_id, *version, embedding.model.clone());
                if lost.contains(&key) {
                    let found = before
                        .remove(&key)
                        .unwrap_or_else(|| (embedding.clone(), None));
                    stored.insert(key, found);
                }
            }
        }
        Ok(stored)
    }

    /// Deletes the embeddings (of every model) of `version`, or of every version of the
    /// note when `None`; returns how many rows went. Deleting what is not there removes 0 rows and is not an
    /// error, so a redelivered or retried delete succeeds.
    pub async fn delete(&self, note_id: Uuid, version: Option<i64>) -> Result<u64> {
        let result = match version {
            Some(version) => {
                sqlx::query("DELETE FROM embedding_vectors WHERE note_id = $1 AND version = $2")
                    .bind(note_id.to_string())
                    .bind(version)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM embedding_vectors WHERE note_id = $1")
                    .bind(note_id.to_string())
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(result.rows_affected())
    }

    /// Every stored (note, version), ordered, once whatever the models. Read-only; for `notesaga check`, which
    /// compares the store with the log.
    pub async fn versions(&self) -> Result<Vec<(Uuid, i64)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT note_id, version FROM embedding_vectors ORDER BY note_id, version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let note_id: String = row.try_get("note_id")?;
                let note_id =
                    Uuid::parse_str(&note_id).map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
                Ok((note_id, row.try_get("version")?))
            })
            .collect()
    }
}
