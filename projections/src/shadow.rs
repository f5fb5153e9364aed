//! The shadow copy a rebuild writes into, beside the live tables, and the swap that makes
//! it live.
//!
//! The shadow has the live store's DDL because it is made by the same migrations, so
//! the folds ([`crate::notes`], [`crate::sagas`], [`crate::commands`]) write into it
//! unchanged, with unqualified table names:
//!
//! - SQLite: a sibling database file (`projections.db.rebuild-notes`). The swap attaches
//!   it to a connection of the live database.
//! - PostgreSQL: a schema of the same database (`notesaga_rebuild_notes`), which the
//!   shadow's connections put first on their `search_path`.
//!
//! The swap is one transaction on the live database: the projection's tables and
//! offset rows are emptied and refilled from the shadow's. Readers see the old rows or
//! the new ones, never an empty or half table (SQLite WAL and PostgreSQL MVCC keep
//! their snapshot until the commit).

use std::path::PathBuf;

use sqlx::{any::AnyPoolOptions, Executor as _};
use tracing::{info, warn};

use crate::{Error, ReadStore, Result};

/// The tables a projection derives from the log: a rebuild replaces exactly these. The
/// API's own tables (`commands`, the idempotency keys) are not derived and never touched.
/// A migration adding a derived table adds it here.
pub fn tables(projection: &str) -> &'static [&'static str] {
    match projection {
        crate::notes::NAME => &[
            "notes",
            "note_artifacts",
            "sagas",
            "saga_timeline",
            "command_outcomes",
            "note_texts",
            "search_documents",
            "note_vectors",
            "search_generations",
        ],
        _ => &[],
    }
}

/// Where a projection's shadow copy lives.
#[derive(Debug, Clone)]
pub(crate) enum Shadow {
    /// A sibling SQLite file.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
    /// A schema of the live PostgreSQL database.
    Postgres {
        /// The live database.
        url: String,
        /// The schema.
        schema: String,
    },
}

/// The file of a `sqlite:` URL (`sqlite://PATH?…` or `sqlite:PATH`).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

impl Shadow {
    /// The shadow of `projection` beside `live`.
    pub(crate) fn beside(live: &ReadStore, projection: &str) -> Result<Self> {
        let url = live.url();
        if url.starts_with("postgres") {
            Ok(Self::Postgres {
                url: url.to_owned(),
                schema: format!("notesaga_rebuild_{projection}"),
            })
        } else if let Some(path) = sqlite_path(url) {
            let mut file = path.into_os_string();
            file.push(format!(".rebuild-{projection}"));
            Ok(Self::Sqlite {
                path: PathBuf::from(file),
            })
        } else {
            Err(Error::Rebuild(format!(
                "cannot place a shadow copy beside the read store {url:?} (a file-backed SQLite or a PostgreSQL database is needed)"
            )))
        }
    }

    /// An empty, migrated shadow store (whatever an earlier, interrupted rebuild left
    /// there is thrown away first).
    pub(crate) async fn create(&self) -> Result<ReadStore> {
        match self {
            Self::Sqlite { path } => {
                remove_sqlite_files(path);
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let pool = notesaga_sql::connect(&url, 2).await?;
                crate::store::migrate(&pool, &url).await?;
                Ok(ReadStore::from_pool(pool, &url))
            }
            Self::Postgres { url, schema } => {
                let admin = notesaga_sql::connect(url, 1).await?;
                admin
                    .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                    .await?;
                admin
                    .execute(format!("CREATE SCHEMA {schema}").as_str())
                    .await?;
                admin.close().await;
                let search_path = format!("SET search_path TO {schema}");
                let pool = AnyPoolOptions::new()
                    .max_connections(2)
                    .after_connect(move |conn, _meta| {
                        let sql = search_path.clone();
                        Box::pin(async move { conn.execute(sql.as_str()).await.map(|_| ()) })
                    })
                    .connect(url)
                    .await?;
                crate::store::migrate(&pool, url).await?;
                Ok(ReadStore::from_pool(pool, url))
            }
        }
    }

    /// Makes the shadow's rows and offsets of `projection` the live ones, in one
    /// transaction on `live`. The live runner must be paused (between batches) while
    /// this runs, and the shadow not written.
    pub(crate) async fn swap(&self, live: &ReadStore, projection: &str) -> Result<()> {
        let mut conn = live.pool().acquire().await?;
        // An attached database stays with the connection: never give this one back.
        conn.close_on_drop();
        let prefix = match self {
            Self::Sqlite { path } => {
                sqlx::query("ATTACH DATABASE $1 AS shadow")
                    .bind(path.display().to_string())
                    .execute(&mut *conn)
                    .await?;
                "shadow".to_owned()
            }
            Self::Postgres { schema, .. } => schema.clone(),
        };
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if matches!(self, Self::Postgres { .. }) {
            // Another projector instance's batch must not write offsets read before
            // the swap over the swapped ones: it waits, then reads the new offsets.
            tx.execute("LOCK TABLE projection_offsets IN ACCESS EXCLUSIVE MODE")
                .await?;
        }
        for table in tables(projection) {
            // Both sides come from the same migrations, so the columns are the same, in
            // the same order.
            tx.execute(format!("DELETE FROM {table}").as_str()).await?;
            tx.execute(format!("INSERT INTO {table} SELECT * FROM {prefix}.{table}").as_str())
                .await?;
        }
        sqlx::query("DELETE FROM projection_offsets WHERE projection = $1")
            .bind(projection.to_owned())
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO projection_offsets (projection, topic, partition_id, next_offset) \
             SELECT projection, topic, partition_id, next_offset \
             FROM {prefix}.projection_offsets WHERE projection = $1"
        ))
        .bind(projection.to_owned())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        info!(projection, "rebuilt projection swapped in");
        Ok(())
    }

    /// Drops the shadow copy.
    pub(crate) async fn remove(&self, shadow: Option<ReadStore>) {
        if let Some(shadow) = shadow {
            shadow.pool().close().await;
        }
        match self {
            Self::Sqlite { path } => remove_sqlite_files(path),
            Self::Postgres { url, schema } => {
                let dropped = async {
                    let admin = notesaga_sql::connect(url, 1).await?;
                    admin
                        .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                        .await?;
                    admin.close().await;
                    Ok::<_, sqlx::Error>(())
                };
                if let Err(err) = dropped.await {
                    warn!(%err, schema, "cannot drop the rebuild's schema");
                }
            }
        }
    }
}

fn remove_sqlite_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(file));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_of_urls() {
        for (url, path) in [
            ("sqlite:///data/p.db?mode=rwc", Some("/data/p.db")),
            ("sqlite://rel/p.db", Some("rel/p.db")),
            ("sqlite:p.db", Some("p.db")),
            ("sqlite::memory:", None),
            ("sqlite://", None),
            ("postgres://x/y", None),
        ] {
            assert_eq!(sqlite_path(url), path.map(PathBuf::from), "{url}");
        }
    }
}
