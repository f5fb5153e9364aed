//! Read models: the SQL they live in ([`store`], migrations in `migrations/`, and each
//! database's own in `migrations-sqlite/` and `migrations-postgres/`), [`search`], the folds
//! of records into rows ([`notes`], [`sagas`], [`commands`], [`vectors`]), and the [`runner`] that applies records in batches,
//! each batch in one transaction together with the offsets it consumed, so a projection
//! is exactly-once into SQL. The same code runs on SQLite (single node) and PostgreSQL.
//! A projection is rebuilt while serving ([`rebuild`], into a [`shadow`] copy) through
//! rebuild [`jobs`] the API queues and the projector runs.

mod accepted;
pub use accepted::{ACCEPTED_COMMANDS_TOTAL, ACCEPTED_COMMAND_GROUPS_TOTAL};
pub mod commands;
pub mod idempotency;
pub mod jobs;
pub mod notes;
pub mod rebuild;
pub mod runner;
pub mod sagas;
pub mod search;
pub mod shadow;
pub mod store;
pub mod vectors;

pub use jobs::{Job, JobState, QueueError};
pub use runner::Projector;
pub use search::{Fusion, SearchMode, SearchQuery};
pub use store::{
    AcceptedCommand, CommandState, CommandView, NoteCursor, NoteListQuery, NotePage, NoteView,
    ReadStore, SagaFilter, SagaView, SearchHit, TimelineEntry,
};

/// Every projection a projector runs, by name (its consumer group is
/// `notesaga.projector.<name>`): what `notesaga replay --all` rebuilds, and the names the
/// admin API accepts.
pub const PROJECTIONS: [&str; 1] = [notes::NAME];

/// Whether `name` is one of the [`PROJECTIONS`].
pub fn is_projection(name: &str) -> bool {
    PROJECTIONS.contains(&name)
}

/// Why a projection failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("read store: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("read store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] notesaga_log::Error),
    /// The consumer failed.
    #[error("projection consumer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A rebuild could not go on.
    #[error("rebuild: {0}")]
    Rebuild(String),
    /// A part of the store is not running (it stopped with the process).
    #[error("read store: {0}")]
    Unavailable(String),
}

impl Error {
    /// SQLite's "database is locked" (`SQLITE_BUSY`, or `SQLITE_BUSY_SNAPSHOT` when a
    /// read transaction cannot become a write one): another writer, such as the API
    /// recording accepted commands, holds the one write lock. Contention passes; it is
    /// not a failure of the store, so it must not use up a retry budget.
    pub fn is_lock_contention(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("5" | "517"))
                    || db.message().contains("database is locked")
            }
            _ => false,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
