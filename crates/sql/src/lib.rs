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
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&pool)
            .await?;
    }
    Ok(pool)
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
