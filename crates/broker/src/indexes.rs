//! Indexes that tansu 0.6's SQLite schema lacks, added by notesaga-broker on every start.
//!
//! WHY: tansu-storage 0.6 (`ddl/040-header.sql`) creates the `header` table with no index
//! at all, and its fetch path (`lite.rs`) runs `sql/header_fetch.sql` once per fetched
//! record, joining `header` on `(topition, offset_id)`. SQLite therefore scans every header
//! ever written, for every record fetched: consumption gets slower as the log grows
//! (quadratic over a run), for header-less records too, since the scan happens anyway.
//! The same index serves the `on delete cascade` from `record` (retention, compaction,
//! topic deletion). Every other query on the produce/fetch path already uses a unique
//! constraint or primary key (checked with `EXPLAIN QUERY PLAN`); `watermark` is scanned
//! too, but it holds one row per partition and does not grow with the log.
//!
//! tansu owns the schema: it runs its DDL (`create table if not exists …`) while the
//! broker is built. We only add indexes on top, with `if not exists`, so this is
//! idempotent, survives restarts, and leaves tansu's tables and queries untouched. Index
//! names carry a `notesaga_` prefix so they cannot clash with a future tansu index.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context as _, Result};
use tracing::info;

/// (index name, table, statement). The statement must be idempotent.
const INDEXES: &[(&str, &str, &str)] = &[(
    "notesaga_header_topition_offset",
    "header",
    "create index if not exists notesaga_header_topition_offset on header (topition, offset_id)",
)];

/// How long to wait for tansu to have created a table before giving up.
const TABLE_WAIT: Duration = Duration::from_secs(60);

/// Adds the missing indexes to tansu's database at `db` (the broker's `broker.db`).
///
/// Call it after tansu has built its storage; it still waits for each table to appear
/// in `sqlite_master` rather than assume when tansu runs its DDL.
pub(crate) async fn ensure(db: &Path) -> Result<()> {
    let database = libsql::Builder::new_local(db)
        .build()
        .await
        .with_context(|| format!("cannot open {}", db.display()))?;
    let conn = database.connect()?;
    // tansu holds its own connections to the same file; wait for its locks instead of
    // failing with SQLITE_BUSY. Building an index over a large existing log takes a
    // while, once.
    conn.busy_timeout(Duration::from_secs(30))?;

    for &(index, table, create) in INDEXES {
        let deadline = tokio::time::Instant::now() + TABLE_WAIT;
        while !exists(&conn, "table", table).await? {
            if tokio::time::Instant::now() >= deadline {
                bail!("tansu did not create table `{table}` in {}", db.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        conn.execute(create, ())
            .await
            .with_context(|| format!("cannot create index {index} on {table}"))?;
        if !exists(&conn, "index", index).await? {
            bail!("index {index} is missing after creating it");
        }
        info!(index, table, "tansu index exists");
    }
    Ok(())
}

/// Whether `sqlite_master` has an object of this type and name.
async fn exists(conn: &libsql::Connection, kind: &str, name: &str) -> Result<bool> {
    let mut rows = conn
        .query(
            "select 1 from sqlite_master where type = ?1 and name = ?2",
            [kind, name],
        )
        .await?;
    Ok(rows.next().await?.is_some())
}
