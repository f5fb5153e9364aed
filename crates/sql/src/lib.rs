//! How notesaga's stores reach SQL: one `AnyPool` whether the URL is `sqlite://` (the
//! single-node default) or `postgres://`, and migrations that tolerate several processes
//! starting on one SQLite file at once.

use std::time::Duration;

use sqlx::{any::AnyPoolOptions, migrate::Migrator, AnyPool};

/// Connects to `url` with at most `max_connections`. SQLite files are switched to WAL so
/// readers in other processes (the API) do not block the writer (the projector).
pub async fn connect(url: &str, max_connections: u32) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections)
        .connect(url)
        .await?;
    if url.starts_with("sqlite:") {
        wal_mode(&pool).await?;
    }
    Ok(pool)
}

/// `count` bind placeholders numbered from `first`, comma-separated (`$2, $3, $4`): an
/// `IN (…)` list. Both SQLite and PostgreSQL read `$n` through sqlx's `Any` driver.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `VALUES` of a multi-row `INSERT`: `rows` tuples of `columns` placeholders,
/// numbered from `$1` row by row (`($1, $2), ($3, $4)`).
pub fn row_placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", placeholders(row * columns + 1, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many connections a store that one task mostly writes should open: one for a
/// SQLite file, `server` for a database server. In WAL mode a SQLite connection that
/// sees another connection's commit drops its whole page cache and reads the pages it
/// needs again from the WAL, so a pool of several connections used one after another
/// re-read the same index and row pages on every statement: with four connections the
/// embedding store did 11 WAL reads and 8.5 lock calls per saga. One connection keeps
/// its cache across its own writes; a server keeps its own cache and gains from several.
pub fn connections_for_one_writer(url: &str, server: u32) -> u32 {
    if url.starts_with("sqlite:") {
        1
    } else {
        server
    }
}

/// Switches a SQLite database to WAL. The switch needs the database to itself, so when
/// several processes open one file at start-up (`notesaga dev`'s roles) it can meet
/// another's migration and fail with `SQLITE_BUSY` past the busy timeout: tried again,
/// as migrations are, instead of failing the role's start.
async fn wal_mode(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let mut attempt: u32 = 0;
    loop {
        match sqlx::query("PRAGMA journal_mode=WAL").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(err) if attempt < 10 && is_busy(&err) => {
                attempt += 1;
                tracing::debug!(%err, attempt, "switching to WAL met another process; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// SQLite's "database is locked" (`SQLITE_BUSY`, code 5).
fn is_busy(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("5"))
}

/// Applies `migrator`. SQLite has no migration lock: the loser of a start-up race fails
/// on the migrations table and simply tries again, finding the migrations applied.
pub async fn migrate(
    migrator: &Migrator,
    pool: &AnyPool,
) -> Result<(), sqlx::migrate::MigrateError> {
    let mut attempt: u32 = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt < 10 => {
                attempt += 1;
                tracing::debug!(%err, attempt, "migrations raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_as_sqlx_binds_them() {
        for (first, count, expected) in [
            (1, 0, ""),
            (1, 1, "$1"),
            (1, 3, "$1, $2, $3"),
            (2, 2, "$2, $3"),
        ] {
            assert_eq!(placeholders(first, count), expected, "{first}, {count}");
        }
        for (rows, columns, expected) in [
            (0, 4, ""),
            (1, 2, "($1, $2)"),
            (2, 2, "($1, $2), ($3, $4)"),
            (2, 3, "($1, $2, $3), ($4, $5, $6)"),
        ] {
            assert_eq!(
                row_placeholders(rows, columns),
                expected,
                "{rows} × {columns}"
            );
        }
    }
}
