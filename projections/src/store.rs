//! The read store: connection, migrations and the queries the API serves.

use std::sync::Arc;

use sqlx::{AnyPool, Row as _};
use uuid::Uuid;

use crate::{accepted::AcceptedCommands, search::vector_cache::VectorCache, Result};

/// The migrations of this store. With PostgreSQL the stores share one database and one
/// migrations table, so versions are distinct per store and each store ignores the
/// others' entries.
pub(crate) fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// The migrations one database needs in its own SQL (`migrations-sqlite/`,
/// `migrations-postgres/`: full-text search, byte columns), applied after the shared
/// ones. Their versions are distinct from every shared one.
fn dialect_migrator(url: &str) -> sqlx::migrate::Migrator {
    let mut migrator = if url.starts_with("postgres") {
        sqlx::migrate!("./migrations-postgres")
    } else {
        sqlx::migrate!("./migrations-sqlite")
    };
    migrator.set_ignore_missing(true);
    migrator
}

/// Applies the shared migrations, then `url`'s database's own, on `pool`.
pub(crate) async fn migrate(pool: &AnyPool, url: &str) -> Result<()> {
    notesaga_sql::migrate(&migrator(), pool).await?;
    notesaga_sql::migrate(&dialect_migrator(url), pool).await?;
    Ok(())
}

/// The database the projections write and the API reads.
#[derive(Debug, Clone)]
pub struct ReadStore {
    pool: AnyPool,
    /// Where it is: a rebuild puts its shadow copy beside it.
    url: String,
    /// Each owner's search vectors between searches (shared by the clones).
    vectors: Arc<VectorCache>,
    /// The API's record of accepted commands: in this database, or in one of its own
    /// ([`Self::with_accepted_commands`]).
    accepted: AcceptedCommands,
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
    /// Body of the latest version (`None` where a query leaves bodies out: lists).
    pub body: Option<String>,
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
    /// Only of this user's notes (`None`: everyone's, for operators).
    pub owner: Option<String>,
    /// At most this many (newest first).
    pub limit: i64,
}

/// Which notes to list, and from where.
#[derive(Debug, Clone, Default)]
pub struct NoteListQuery {
    /// Whose notes.
    pub owner: String,
    /// Only with this status (`processing`, `published`, `failed`).
    pub status: Option<String>,
    /// Only notes after this one in list order (the previous page's last).
    pub after: Option<NoteCursor>,
    /// At most this many.
    pub limit: i64,
}

/// A position in a note list: the sort key of the last note a page returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteCursor {
    /// Its `updated_at`.
    pub updated_at: String,
    /// Its id (orders notes changed in the same millisecond).
    pub note_id: Uuid,
}

/// One page of a note list.
#[derive(Debug, Clone, PartialEq)]
pub struct NotePage {
    /// The notes, without bodies.
    pub notes: Vec<NoteView>,
    /// Where the next page starts, if there is one.
    pub next: Option<NoteCursor>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SearchHit {
    /// The note.
    pub note_id: Uuid,
    /// Its current title.
    pub title: String,
    /// The published version that matched.
    pub version: i64,
    /// How well it matched; its meaning depends on the mode ([`ReadStore::find`]).
    pub score: f32,
    /// The rankings that found it: `keyword`, `semantic`, or both.
    pub matched_by: Vec<String>,
    /// A short piece of the published text: around the query's words when they
    /// matched, else the text's start.
    pub snippet: String,
}

/// A command the API accepted, as it records it before sending it.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedCommand {
    /// The command.
    pub command_id: Uuid,
    /// Its note.
    pub note_id: Uuid,
    /// Who sent it.
    pub owner: String,
    /// Its type (`CreateNote`, `EditNote`, `DeleteNote`).
    pub command_type: String,
    /// When the API accepted it (RFC 3339).
    pub accepted_at: String,
}

/// A command's status.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandView {
    /// The command.
    pub command_id: Uuid,
    /// Its note.
    pub note_id: Uuid,
    /// Who sent it.
    pub owner: String,
    /// Its type.
    pub command_type: String,
    /// When the API accepted it (RFC 3339).
    pub accepted_at: String,
    /// What became of it.
    pub state: CommandState,
}

impl CommandView {
    /// The status of `accepted`, now in `state`.
    fn of(accepted: AcceptedCommand, state: CommandState) -> Self {
        Self {
            command_id: accepted.command_id,
            note_id: accepted.note_id,
            owner: accepted.owner,
            command_type: accepted.command_type,
            accepted_at: accepted.accepted_at,
            state,
        }
    }
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandState {
    /// Accepted, no outcome projected yet.
    Pending,
    /// Applied.
    Applied {
        /// The note version it produced or affected.
        version: Option<i64>,
        /// When (RFC 3339).
        at: String,
    },
    /// Rejected; nothing changed.
    Rejected {
        /// Machine-readable reason (`version_conflict`, `not_found`, …).
        code: String,
        /// Human-readable explanation.
        message: String,
        /// When (RFC 3339).
        at: String,
    },
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
        migrate(&pool, url).await?;
        Ok(Self {
            accepted: AcceptedCommands::on(pool.clone()),
            pool,
            url: url.to_owned(),
            vectors: Arc::default(),
        })
    }

    /// The same store with the API's accepted commands in a database of their own at
    /// `url` (the single node's `commands.db`), where recording one never waits for
    /// the projector's transactions (see `accepted.rs`). Rows this store's own
    /// `commands` table still holds, from before, are moved there first.
    pub async fn with_accepted_commands(mut self, url: &str) -> Result<Self> {
        let accepted = AcceptedCommands::connect(url).await?;
        let moved = accepted.adopt_from(&self.pool).await?;
        if moved > 0 {
            tracing::info!(moved, "accepted commands moved to their own store");
        }
        self.accepted = accepted;
        Ok(self)
    }

    /// The same store with an in-memory vector cache of at most `budget_bytes` (0 keeps
    /// nothing: every semantic search reads its vectors; the default is
    /// [`crate::search::vector_cache::DEFAULT_BUDGET_BYTES`]).
    #[must_use]
    pub fn with_vector_cache(mut self, budget_bytes: usize) -> Self {
        self.vectors = Arc::new(VectorCache::new(budget_bytes));
        self
    }

    /// The in-memory vector cache of semantic search.
    pub(crate) fn vector_cache(&self) -> &VectorCache {
        &self.vectors
    }

    /// A store on `pool` (already migrated, e.g. a rebuild's shadow copy at `url`).
    pub(crate) fn from_pool(pool: AnyPool, url: &str) -> Self {
        Self {
            accepted: AcceptedCommands::on(pool.clone()),
            pool,
            url: url.to_owned(),
            vectors: Arc::default(),
        }
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool, for the projector.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// One note, if the projection has seen it.
    pub async fn note(&self, note_id: Uuid) -> Result<Option<NoteView>> {
        let row = sqlx::query(&format!(
            "SELECT {NOTE_COLUMNS}, n.body {NOTE_FROM} WHERE n.note_id = $1"
        ))
        .bind(note_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| note_view(&row, true)).transpose()
    }

    /// One page of an owner's notes, newest change first (by `updated_at`, then
    /// `note_id`), without bodies; deleted notes are never listed.
    ///
    /// The walk is by keyset, so a page never repeats or skips a note that did not change
    /// while the client paged. A note that changes meanwhile moves ahead of the cursor: the
    /// walk shows it at most once (a fresh walk shows it first).
    pub async fn notes_page(&self, query: &NoteListQuery) -> Result<NotePage> {
        // Conditions are fixed strings; only values are bound, each placeholder once.
        let mut conditions = vec!["n.owner = $1".to_owned(), "n.deleted_at IS NULL".to_owned()];
        let mut n = 1;
        if query.status.is_some() {
            n += 1;
            conditions.push(format!("n.status = ${n}"));
        }
        if query.after.is_some() {
            conditions.push(format!(
                "(n.updated_at < ${} OR (n.updated_at = ${} AND n.note_id < ${}))",
                n + 1,
                n + 2,
                n + 3
            ));
            n += 3;
        }
        let limit = query.limit.clamp(1, 1000);
        let sql = format!(
            "SELECT {NOTE_COLUMNS} {NOTE_FROM} WHERE {} \
             ORDER BY n.updated_at DESC, n.note_id DESC LIMIT ${}",
            conditions.join(" AND "),
            n + 1
        );
        let mut select = sqlx::query(&sql).bind(query.owner.clone());
        if let Some(status) = &query.status {
            select = select.bind(status.clone());
        }
        if let Some(after) = &query.after {
            select = select
                .bind(after.updated_at.clone())
                .bind(after.updated_at.clone())
                .bind(after.note_id.to_string());
        }
        // One row more than asked tells whether another page follows.
        let rows = select.bind(limit + 1).fetch_all(&self.pool).await?;
        let mut notes = rows
            .iter()
            .map(|row| note_view(row, false))
            .collect::<Result<Vec<_>>>()?;
        let more = notes.len() as i64 > limit;
        notes.truncate(limit as usize);
        let next = if more {
            notes.last().map(|last| NoteCursor {
                updated_at: last.updated_at.clone(),
                note_id: last.note_id,
            })
        } else {
            None
        };
        Ok(NotePage { notes, next })
    }

    /// The owner's notes whose *published* version's embedding (by `model`) is most like
    /// `query` (cosine similarity), best first; at most `limit`, only positive scores,
    /// deleted notes never. Vectors of another model are not comparable and are skipped.
    /// The semantic mode of [`ReadStore::find`].
    pub async fn search(
        &self,
        owner: &str,
        model: &str,
        query: &[f32],
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        self.find(&crate::search::SearchQuery {
            owner,
            text: "",
            model,
            vector: Some(query),
            mode: crate::search::SearchMode::Semantic,
            limit,
            fusion: crate::search::Fusion::default(),
        })
        .await
    }

    /// What became of a command the API accepted (`None`: the API never accepted it).
    pub async fn command(&self, command_id: Uuid) -> Result<Option<CommandView>> {
        let Some(accepted) = self.accepted.get(command_id).await? else {
            return Ok(None);
        };
        let outcome = sqlx::query(
            "SELECT status, version, code, message, occurred_at FROM command_outcomes \
             WHERE command_id = $1",
        )
        .bind(command_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = outcome else {
            return Ok(Some(CommandView::of(accepted, CommandState::Pending)));
        };
        let status: String = row.try_get("status")?;
        let state = match status.as_str() {
            "applied" => CommandState::Applied {
                version: row.try_get("version")?,
                at: row.try_get("occurred_at")?,
            },
            _ => CommandState::Rejected {
                code: row
                    .try_get::<Option<String>, _>("code")?
                    .unwrap_or_default(),
                message: row
                    .try_get::<Option<String>, _>("message")?
                    .unwrap_or_default(),
                at: row.try_get("occurred_at")?,
            },
        };
        Ok(Some(CommandView::of(accepted, state)))
    }

    /// Whether the database answers (`SELECT 1`), for the readiness probe.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        // The accepted commands' own database, where they have one: without it no
        // command can be accepted.
        self.accepted.ping().await
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
        if filter.owner.is_some() {
            conditions.push(format!(
                "note_id IN (SELECT note_id FROM notes WHERE owner = ${})",
                next()
            ));
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
        if let Some(owner) = &filter.owner {
            query = query.bind(owner.clone());
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

/// Written by the API, not by a projection.
///
/// Command status has to answer `pending` the moment the API answers 202, before the
/// command has travelled through the log; no projection can know of it that early. So the
/// API records each command it accepts, here, in the `commands` table, and the
/// projection's `command_outcomes` (rebuildable from `notes.outcomes`) completes it. The
/// two writers never touch the same table, so a projection rebuild leaves the API's rows
/// alone and the API never races the projector for a row.
impl ReadStore {
    /// Records that the API accepted `command`, before it is sent.
    pub async fn record_accepted(&self, command: &AcceptedCommand) -> Result<()> {
        self.accepted.record(command).await
    }

    /// Whether the API accepted a `CreateNote` of `note_id` from `owner`. A note whose
    /// create is accepted is the owner's before the projection has seen it: the API
    /// takes the owner's next commands on it at once (the notes aggregate, which sees
    /// them after the create on the same partition, judges them), while another user's
    /// command still finds no such note.
    pub async fn accepted_create(&self, note_id: Uuid, owner: &str) -> Result<bool> {
        self.accepted.has_create(note_id, owner).await
    }

    /// Forgets a command that could not be sent after all (the client got an error, not
    /// its id, so nobody asks for it).
    pub async fn forget_accepted(&self, command_id: Uuid) -> Result<()> {
        self.accepted.forget(command_id).await
    }
}

/// The columns of a [`NoteView`] but the body.
const NOTE_COLUMNS: &str = "n.note_id, n.owner, n.version, n.title, n.status, \
     n.failure_reason, n.published_version, n.created_at, n.updated_at, n.deleted_at, \
     a.embedding_model, a.embedding_dimensions, a.audio_key, a.audio_duration_ms";

/// A note with the artifacts of its published version.
const NOTE_FROM: &str = "FROM notes n LEFT JOIN note_artifacts a \
     ON a.note_id = n.note_id AND a.version = n.published_version";

fn note_view(row: &sqlx::any::AnyRow, with_body: bool) -> Result<NoteView> {
    let published_version: Option<i64> = row.try_get("published_version")?;
    Ok(NoteView {
        note_id: uuid_column(row, "note_id")?,
        owner: row.try_get("owner")?,
        version: row.try_get("version")?,
        title: row.try_get("title")?,
        body: if with_body {
            Some(row.try_get("body")?)
        } else {
            None
        },
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
    })
}

pub(crate) fn uuid_column(row: &sqlx::any::AnyRow, name: &str) -> Result<Uuid> {
    let text: String = row.try_get(name)?;
    Uuid::parse_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)).into())
}

const SAGA_COLUMNS: &str = "SELECT saga_id, note_id, version, kind, state, stuck, step, attempt, \
     failure_reason, started_at, updated_at FROM sagas";

fn saga_view(row: &sqlx::any::AnyRow) -> Result<SagaView> {
    Ok(SagaView {
        saga_id: uuid_column(row, "saga_id")?,
        note_id: uuid_column(row, "note_id")?,
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
