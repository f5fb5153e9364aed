//! The read store: connection, migrations and the queries the API serves.

use sqlx::{AnyPool, Row as _};
use uuid::Uuid;

use crate::Result;

/// The migrations of this store. With PostgreSQL the stores share one database and one
/// migrations table, so versions are distinct per store and each store ignores the
/// others' entries.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// The database the projections write and the API reads.
#[derive(Debug, Clone)]
pub struct ReadStore {
    pool: AnyPool,
}

/// A note as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteView {
    /// The note.
    pub note_id: Uuid,
    /// Its owner.
    pub owner: String,
    /// Latest version.
    pub version: i64,
    /// Title of the latest version.
    pub title: String,
    /// Body of the latest version.
    pub body: String,
    /// `processing`, `published` or `failed` (of the latest version).
    pub status: String,
    /// Why the latest version failed.
    pub failure_reason: Option<String>,
    /// The version readers see.
    pub published: Option<PublishedVersion>,
    /// When the note was created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// The artifacts of the published version.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedVersion {
    /// The version.
    pub version: i64,
    /// Embedding model.
    pub embedding_model: Option<String>,
    /// Embedding length.
    pub embedding_dimensions: Option<i64>,
    /// Blob key of the audio.
    pub audio_key: Option<String>,
    /// Audio length.
    pub audio_duration_ms: Option<i64>,
}

impl ReadStore {
    /// Connects to `url` (`sqlite://…?mode=rwc` or `postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = notesaga_sql::connect(url, 8).await?;
        notesaga_sql::migrate(&migrator(), &pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for the projector.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// One note, if the projection has seen it.
    pub async fn note(&self, note_id: Uuid) -> Result<Option<NoteView>> {
        let row = sqlx::query(
            "SELECT n.note_id, n.owner, n.version, n.title, n.body, n.status, n.failure_reason, \
                    n.published_version, n.created_at, n.updated_at, \
                    a.embedding_model, a.embedding_dimensions, a.audio_key, a.audio_duration_ms \
             FROM notes n LEFT JOIN note_artifacts a \
               ON a.note_id = n.note_id AND a.version = n.published_version \
             WHERE n.note_id = $1",
        )
        .bind(note_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let published_version: Option<i64> = row.try_get("published_version")?;
        Ok(Some(NoteView {
            note_id,
            owner: row.try_get("owner")?,
            version: row.try_get("version")?,
            title: row.try_get("title")?,
            body: row.try_get("body")?,
            status: row.try_get("status")?,
            failure_reason: row.try_get("failure_reason")?,
            published: match published_version {
                Some(version) => Some(PublishedVersion {
                    version,
                    embedding_model: row.try_get("embedding_model")?,
                    embedding_dimensions: row.try_get("embedding_dimensions")?,
                    audio_key: row.try_get("audio_key")?,
                    audio_duration_ms: row.try_get("audio_duration_ms")?,
                }),
                None => None,
            },
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }
}
