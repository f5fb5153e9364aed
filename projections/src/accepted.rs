//! The commands the API accepted (the `commands` table): written by the API before it
//! sends a command, so that a client holding a 202 finds its command `pending` at once.
//! Not derived from the log; see [`crate::commands`] for the other half of a command's
//! status.
//!
//! Two things make this table's writes cheap under load:
//!
//! - **One writer, group commits.** Every record goes through one task that writes
//!   whatever requests are waiting in one multi-row `INSERT` (one transaction, one
//!   fsync), then answers each. Concurrent API requests would otherwise queue on
//!   SQLite's single write lock one by one, each napping in SQLite's busy handler
//!   (1, 2, 5, 10 … ms) while another holds it.
//! - **Its own SQLite file** (`commands.db` in the data directory, given to
//!   [`crate::ReadStore::with_accepted_commands`]). In the read store's file, every
//!   insert waited for the projector's batch transaction to end (one writer per file),
//!   and the projector waited for the inserts: at 32 concurrent clients that was 62 ms
//!   of a POST's median 72 ms (docs/benchmarks.md). With PostgreSQL the table stays in
//!   the shared database, whose row locks do not serialise writers.
//!
//! A file of its own needs no other change to be safe: the table has one writer, the
//! API, and a command's status reads this table and the projection's
//! `command_outcomes` separately (two lookups by key instead of a join).

use std::{
    fmt::Write as _,
    sync::{Arc, OnceLock},
};

use sqlx::{AnyPool, Row as _};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{store::uuid_column, AcceptedCommand, Error, Result};

/// Most records one group commit writes (five bound values each: well under SQLite's
/// limit of 32,766 bound values per statement).
const GROUP_MAX: usize = 128;
/// Requests waiting for the writer; a full queue makes callers wait, not fail.
const QUEUE: usize = 1024;
/// Metric: accepted commands written (counter). Divided by
/// [`ACCEPTED_COMMAND_GROUPS_TOTAL`], the mean size of a group commit.
pub const ACCEPTED_COMMANDS_TOTAL: &str = "notesaga_accepted_commands_total";
/// Metric: group commits of accepted commands (counter).
pub const ACCEPTED_COMMAND_GROUPS_TOTAL: &str = "notesaga_accepted_command_groups_total";

/// Rows moved per transaction when the table is adopted from the read store's file.
const ADOPT_CHUNK: i64 = 1000;

/// The `commands` table of a store of its own (SQLite: `commands.db`), where the
/// migrations of the read store do not run.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations-accepted");
    migrator.set_ignore_missing(true);
    migrator
}

/// The columns of a row, in the order [`insert_group`] binds them.
const COLUMNS: &str = "command_id, note_id, owner, command_type, accepted_at";

/// One record waiting for the writer.
struct Write {
    command: AcceptedCommand,
    done: oneshot::Sender<Result<()>>,
}

/// The API's record of accepted commands.
#[derive(Debug, Clone)]
pub(crate) struct AcceptedCommands {
    pool: AnyPool,
    /// The writer's queue, shared by the clones; the writer starts with the first
    /// record, so a store that never records (the projector's, a rebuild's shadow, one
    /// replaced by [`crate::ReadStore::with_accepted_commands`]) never starts one.
    writes: Arc<OnceLock<mpsc::Sender<Write>>>,
}

impl AcceptedCommands {
    /// The table in the database of `pool` (the read store's, by default).
    pub(crate) fn on(pool: AnyPool) -> Self {
        Self {
            pool,
            writes: Arc::default(),
        }
    }

    /// The writer's queue, the writer started if this is the first record.
    fn writer(&self) -> &mpsc::Sender<Write> {
        self.writes.get_or_init(|| {
            let (writes, queue) = mpsc::channel(QUEUE);
            tokio::spawn(write_groups(self.pool.clone(), queue));
            writes
        })
    }

    /// The table in a database of its own at `url` (migrated here).
    pub(crate) async fn connect(url: &str) -> Result<Self> {
        let pool =
            notesaga_sql::connect(url, notesaga_sql::connections_for_one_writer(url, 4)).await?;
        notesaga_sql::migrate(&migrator(), &pool).await?;
        Ok(Self::on(pool))
    }

    /// Moves the rows a read store's own `commands` table holds (written before the
    /// table had a file of its own) into this one, in chunks; returns how many moved.
    /// A row is copied before it is deleted there, and copying skips rows already
    /// here, so a start interrupted half-way finishes the move at the next start.
    pub(crate) async fn adopt_from(&self, old: &AnyPool) -> Result<u64> {
        let mut moved = 0u64;
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM commands ORDER BY command_id LIMIT $1"
            ))
            .bind(ADOPT_CHUNK)
            .fetch_all(old)
            .await?;
            if rows.is_empty() {
                return Ok(moved);
            }
            let chunk = rows
                .iter()
                .map(accepted_command)
                .collect::<Result<Vec<_>>>()?;
            insert_group(&self.pool, chunk.iter()).await?;
            let mut tx = old.begin().await?;
            for command in &chunk {
                sqlx::query("DELETE FROM commands WHERE command_id = $1")
                    .bind(command.command_id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            moved += chunk.len() as u64;
            info!(
                moved,
                "moving accepted commands from the read store to their own store"
            );
        }
    }

    /// Records `command`; answers once it is committed (with others waiting at the
    /// same time).
    pub(crate) async fn record(&self, command: &AcceptedCommand) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let write = Write {
            command: command.clone(),
            done,
        };
        self.writer().send(write).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// The accepted command `command_id`, if the API accepted it.
    pub(crate) async fn get(&self, command_id: Uuid) -> Result<Option<AcceptedCommand>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM commands WHERE command_id = $1"
        ))
        .bind(command_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(accepted_command).transpose()
    }

    /// Whether a `CreateNote` of `note_id` from `owner` was accepted.
    pub(crate) async fn has_create(&self, note_id: Uuid, owner: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS found FROM commands \
             WHERE note_id = $1 AND owner = $2 AND command_type = 'CreateNote' LIMIT 1",
        )
        .bind(note_id.to_string())
        .bind(owner.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Whether its database answers.
    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Forgets `command_id`.
    pub(crate) async fn forget(&self, command_id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM commands WHERE command_id = $1")
            .bind(command_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The writer task is gone: only at shutdown, when the runtime drops its tasks (the
/// writer itself ends only when every clone of its store is gone).
fn writer_gone() -> Error {
    Error::Unavailable("the writer of accepted commands has stopped".to_owned())
}

/// The writer: takes what is waiting (at least one record), writes it as one group,
/// answers each. A group that fails is written again record by record, so one bad
/// record fails alone, with its own error. Ends when every sender is gone.
async fn write_groups(pool: AnyPool, mut queue: mpsc::Receiver<Write>) {
    let mut group = Vec::with_capacity(GROUP_MAX);
    while queue.recv_many(&mut group, GROUP_MAX).await > 0 {
        let written = insert_group(&pool, group.iter().map(|write| &write.command)).await;
        match written {
            Ok(()) => {
                count_group(group.len());
                for write in group.drain(..) {
                    let _ = write.done.send(Ok(()));
                }
            }
            Err(err) => {
                warn!(records = group.len(), error = %err, "a group of accepted commands failed; writing them one by one");
                for write in group.drain(..) {
                    let alone = insert_group(&pool, std::iter::once(&write.command)).await;
                    if alone.is_ok() {
                        count_group(1);
                    }
                    let _ = write.done.send(alone);
                }
            }
        }
    }
}

/// Counts one group commit of `records` accepted commands.
fn count_group(records: usize) {
    metrics::counter!(ACCEPTED_COMMAND_GROUPS_TOTAL).increment(1);
    metrics::counter!(ACCEPTED_COMMANDS_TOTAL).increment(records as u64);
}

/// One multi-row `INSERT` of `commands` (a command id already there is left as it is:
/// a resumed request recording its command again changes nothing).
async fn insert_group<'a>(
    pool: &AnyPool,
    commands: impl Iterator<Item = &'a AcceptedCommand> + Clone,
) -> Result<()> {
    let mut sql = format!("INSERT INTO commands ({COLUMNS}) VALUES ");
    for (i, _) in commands.clone().enumerate() {
        let n = i * 5;
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(
            sql,
            "(${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5
        );
    }
    sql.push_str(" ON CONFLICT (command_id) DO NOTHING");
    let mut query = sqlx::query(&sql);
    for command in commands {
        query = query
            .bind(command.command_id.to_string())
            .bind(command.note_id.to_string())
            .bind(command.owner.clone())
            .bind(command.command_type.clone())
            .bind(command.accepted_at.clone());
    }
    query.execute(pool).await?;
    Ok(())
}

/// A row of [`COLUMNS`].
fn accepted_command(row: &sqlx::any::AnyRow) -> Result<AcceptedCommand> {
    Ok(AcceptedCommand {
        command_id: uuid_column(row, "command_id")?,
        note_id: uuid_column(row, "note_id")?,
        owner: row.try_get("owner")?,
        command_type: row.try_get("command_type")?,
        accepted_at: row.try_get("accepted_at")?,
    })
}
