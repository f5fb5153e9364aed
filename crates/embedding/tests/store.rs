//! The embedding store's delete against each backend: one version, every version of a
//! note, a repeat (0 rows, no error), other notes untouched, and a version that can be
//! stored again after its deletion (a retried saga attempt regenerates it).

use anyhow::Result;
use notesaga_embedding::{store::StoredEmbedding, EmbeddingStore};
use notesaga_testkit::PostgresDatabase;
use uuid::Uuid;

fn embedding(model: &str) -> StoredEmbedding {
    StoredEmbedding {
        model: model.into(),
        vector: vec![0.6, 0.8],
    }
}

async fn delete_scenario(store: &EmbeddingStore) -> Result<()> {
    let note = Uuid::new_v4();
    let other = Uuid::new_v4();
    for version in [1, 2, 3] {
        store.upsert(note, version, &embedding("m")).await?;
    }
    store.upsert(other, 1, &embedding("m")).await?;

    assert_eq!(store.delete(note, Some(2)).await?, 1);
    assert!(store.get(note, 2, "m").await?.is_none());
    assert!(store.get(note, 1, "m").await?.is_some());
    assert!(store.get(note, 3, "m").await?.is_some());
    assert_eq!(store.delete(note, Some(2)).await?, 0, "repeat");
    assert_eq!(store.delete(note, Some(9)).await?, 0, "never stored");

    assert_eq!(store.delete(note, None).await?, 2);
    assert!(store.get(note, 1, "m").await?.is_none());
    assert!(store.get(note, 3, "m").await?.is_none());
    assert_eq!(store.delete(note, None).await?, 0, "repeat of all");
    assert!(
        store.get(other, 1, "m").await?.is_some(),
        "other note untouched"
    );

    // No tombstone: a deleted version takes a fresh embedding, not the deleted one.
    let again = store.upsert(note, 2, &embedding("m2")).await?;
    assert_eq!(again.model, "m2");
    assert_eq!(
        store.get(note, 2, "m2").await?.map(|e| e.model),
        Some("m2".into())
    );
    assert!(store.get(note, 2, "m").await?.is_none());
    Ok(())
}

/// A version holds one vector per model (a re-embedding stores the second beside the
/// saga's): each model's upsert keeps its own first vector, a lookup never answers with
/// another model's, and deleting the version removes every model's.
async fn models_scenario(store: &EmbeddingStore) -> Result<()> {
    let note = Uuid::new_v4();
    store.upsert(note, 1, &embedding("old")).await?;
    assert!(
        store.get(note, 1, "new").await?.is_none(),
        "not the old model's"
    );
    let new = StoredEmbedding {
        model: "new".into(),
        vector: vec![1.0, 0.0, 0.0],
    };
    assert_eq!(store.upsert(note, 1, &new).await?, new);
    // A repeat with another vector keeps the first (a redelivery writes nothing new).
    let other = StoredEmbedding {
        model: "new".into(),
        vector: vec![0.0, 1.0, 0.0],
    };
    assert_eq!(store.upsert(note, 1, &other).await?, new);
    assert_eq!(store.get(note, 1, "old").await?, Some(embedding("old")));
    assert!(store.stored_at(note, 1, "new").await?.is_some());
    assert!(store.stored_at(note, 1, "none").await?.is_none());
    assert_eq!(
        store
            .versions()
            .await?
            .iter()
            .filter(|(n, _)| *n == note)
            .count(),
        1
    );
    assert_eq!(store.delete(note, Some(1)).await?, 2);
    assert!(store.get(note, 1, "new").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn delete_on_sqlite() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
    let store = EmbeddingStore::connect(&url).await?;
    delete_scenario(&store).await?;
    models_scenario(&store).await
}

/// Needs the PostgreSQL server at `NOTESAGA_TEST_POSTGRES_URL`, as the flow tests do.
#[tokio::test]
async fn delete_on_postgres() -> Result<()> {
    let db = PostgresDatabase::create().await?;
    let store = EmbeddingStore::connect(&db.url()).await?;
    delete_scenario(&store).await?;
    models_scenario(&store).await
}

/// A store written before vectors were keyed by model keeps its rows through the
/// migration, under their own model.
#[tokio::test]
async fn rows_from_before_the_model_key_survive_the_migration() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
    let note = Uuid::new_v4();
    {
        let pool = notesaga_sql::connect(&url, 1).await?;
        sqlx::raw_sql(include_str!(
            "../migrations/20261121000100_embedding_vectors.sql"
        ))
        .execute(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO embedding_vectors (note_id, version, model, dimensions, vector, created_at) \
             VALUES ($1, 1, 'old-model', 2, '[0.6,0.8]', '2026-12-01T00:00:00+00:00')",
        )
        .bind(note.to_string())
        .execute(&pool)
        .await?;
        pool.close().await;
    }
    let store = EmbeddingStore::connect(&url).await?;
    assert_eq!(
        store.get(note, 1, "old-model").await?,
        Some(embedding("old-model"))
    );
    assert!(store.stored_at(note, 1, "old-model").await?.is_some());
    store.upsert(note, 1, &embedding("new-model")).await?;
    assert_eq!(store.versions().await?, vec![(note, 1)]);
    assert_eq!(store.delete(note, Some(1)).await?, 2);
    Ok(())
}
