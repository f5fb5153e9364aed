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
    /// When the note was deleted (RFC 3339); a deleted note is gone for readers.
    pub deleted_at: Option<String>,
}

/// A saga as operators see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SagaView {
    /// The saga.
    pub saga_id: Uuid,
    /// Its note.
    pub note_id: Uuid,
    /// The version it publishes (for a cleanup, the latest version when deleted).
    pub version: i64,
    /// `publish` or `cleanup`.
    pub kind: String,
    /// `running`, `compensating`, `completed`, `compensated`, `compensation_failed` or
    /// `superseded`.
    pub state: String,
    /// Made no progress for the configured time.
    pub stuck: bool,
    /// The step it is at (or was last at).
    pub step: Option<String>,
    /// That step's attempt.
    pub attempt: Option<i64>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// One transition of a saga.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimelineEntry {
    /// The saga event's type (`StepRequested`, …).
    pub event: String,
    /// The step it is about.
    pub step: Option<String>,
    /// The attempt it is about.
    pub attempt: Option<i64>,
    /// The error it reports.
    pub error: Option<String>,
    /// What else it says.
    pub detail: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// Which sagas to list.
#[derive(Debug, Clone, Default)]
pub struct SagaFilter {
    /// Only in this state.
    pub state: Option<String>,
    /// Only stuck ones.
    pub stuck: bool,
    /// Only of this note.
    pub note_id: Option<Uuid>,
    /// At most this many (newest first).
    pub limit: i64,
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
                    n.published_version, n.created_at, n.updated_at, n.deleted_at, \
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
            deleted_at: row.try_get("deleted_at")?,
        }))
    }

    /// One saga, if the projection has seen it.
    pub async fn saga(&self, saga_id: Uuid) -> Result<Option<SagaView>> {
        let row = sqlx::query(&format!("{SAGA_COLUMNS} WHERE saga_id = $1"))
            .bind(saga_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| saga_view(&row)).transpose()
    }

    /// Sagas matching `filter`, most recently changed first.
    pub async fn sagas(&self, filter: &SagaFilter) -> Result<Vec<SagaView>> {
        // Conditions are fixed strings; only values are bound.
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if filter.state.is_some() {
            conditions.push(format!("state = ${}", next()));
        }
        if filter.stuck {
            conditions.push("stuck = 1".to_owned());
        }
        if filter.note_id.is_some() {
            conditions.push(format!("note_id = ${}", next()));
        }
        let limit = next();
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql =
            format!("{SAGA_COLUMNS} {filter_sql} ORDER BY updated_at DESC, saga_id LIMIT ${limit}");
        let mut query = sqlx::query(&sql);
        if let Some(state) = &filter.state {
            query = query.bind(state.clone());
        }
        if let Some(note_id) = filter.note_id {
            query = query.bind(note_id.to_string());
        }
        let rows = query
            .bind(filter.limit.clamp(1, 1000))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(saga_view).collect()
    }

    /// Every transition of a saga, in log order.
    pub async fn timeline(&self, saga_id: Uuid) -> Result<Vec<TimelineEntry>> {
        let rows = sqlx::query(
            "SELECT event_type, step, attempt, error, detail, occurred_at FROM saga_timeline \
             WHERE saga_id = $1 ORDER BY log_offset",
        )
        .bind(saga_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TimelineEntry {
                    event: row.try_get("event_type")?,
                    step: row.try_get("step")?,
                    attempt: row.try_get("attempt")?,
                    error: row.try_get("error")?,
                    detail: row.try_get("detail")?,
                    at: row.try_get("occurred_at")?,
                })
            })
            .collect()
    }
}

const SAGA_COLUMNS: &str = "SELECT saga_id, note_id, version, kind, state, stuck, step, attempt, \
     failure_reason, started_at, updated_at FROM sagas";

fn saga_view(row: &sqlx::any::AnyRow) -> Result<SagaView> {
    let id = |name: &str| -> Result<Uuid> {
        let text: String = row.try_get(name)?;
        Uuid::parse_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)).into())
    };
    Ok(SagaView {
        saga_id: id("saga_id")?,
        note_id: id("note_id")?,
        version: row.try_get("version")?,
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        stuck: row.try_get::<i64, _>("stuck")? != 0,
        step: row.try_get("step")?,
        attempt: row.try_get("attempt")?,
        failure_reason: row.try_get("failure_reason")?,
        started_at: row.try_get("started_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
