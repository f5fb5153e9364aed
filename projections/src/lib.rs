//! Read models: the SQL they live in ([`store`], migrations in `migrations/`), the folds
//! of records into rows ([`notes`], [`sagas`], [`commands`]), and the [`runner`] that applies records in batches,
//! each batch in one transaction together with the offsets it consumed, so a projection
//! is exactly-once into SQL. The same code runs on SQLite (single node) and PostgreSQL.

pub mod commands;
pub mod notes;
pub mod runner;
pub mod sagas;
pub mod store;

pub use runner::Projector;
pub use store::{
    AcceptedCommand, CommandState, CommandView, NoteCursor, NoteListQuery, NotePage, NoteView,
    ReadStore, SagaFilter, SagaView, SearchHit, TimelineEntry,
};

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
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
