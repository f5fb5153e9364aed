//! Vectors of several models per note version (issue 13), against each backend, folded
//! through the projection's own `apply`: a re-embedding's reply adds a row beside the
//! saga's without replacing what `note_artifacts` (GET's `embedding`) shows, search
//! ranks by the asked model's vectors only, a repeated reply changes nothing, a deletion
//! removes every model's vector, the listing `notesaga reembed` reads says which notes
//! lack a model, and the migration copies the vectors folded before it.

mod support;

use anyhow::Result;
use notesaga_embedder::BuiltinEmbedder;
use notesaga_events::{
    embedding::{EmbeddingDeleted, EmbeddingEvent, EmbeddingGenerated},
    notes::{NoteCreated, NoteDeleted, NotePublished, NotesEvent},
};
use notesaga_log::FlowEvent;
use notesaga_projections::{
    vectors::{coverage, to_reembed},
    Fusion, ReadStore, SearchMode, SearchQuery,
};
use notesaga_testkit::PostgresDatabase;
use sqlx::Row as _;
use support::fold;
use uuid::Uuid;

const SAGA_MODEL: &str = notesaga_embedder::hash::MODEL;
const NEW_MODEL: &str = "test-model-3d";
const T0: i64 = 1_767_225_600_000;

fn generated(note_id: Uuid, model: &str, vector: Vec<f32>) -> FlowEvent {
    FlowEvent::Embedding(EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated {
        note_id,
        version: 1,
        model: model.into(),
        dimensions: vector.len() as i32,
        vector,
        occurred_at: T0,
    }))
}

/// Created, embedded by the saga's model and published at version 1.
fn published_note(note_id: Uuid, title: &str, body: &str) -> Vec<FlowEvent> {
    vec![
        FlowEvent::Notes(NotesEvent::NoteCreated(NoteCreated {
            note_id,
            owner: "ann".into(),
            version: 1,
            title: title.into(),
            body: body.into(),
            occurred_at: T0,
        })),
        generated(
            note_id,
            SAGA_MODEL,
            BuiltinEmbedder.embed(&format!("{title}.\n\n{body}")),
        ),
        FlowEvent::Notes(NotesEvent::NotePublished(NotePublished {
            note_id,
            version: 1,
            occurred_at: T0 + 1000,
        })),
    ]
}

async fn semantic(store: &ReadStore, model: &str, vector: &[f32]) -> Result<Vec<Uuid>> {
    Ok(store
        .find(&SearchQuery {
            owner: "ann",
            text: "query",
            model,
            vector: Some(vector),
            mode: SearchMode::Semantic,
            limit: 10,
            fusion: Fusion::default(),
        })
        .await?
        .iter()
        .map(|h| h.note_id)
        .collect())
}

async fn artifact_model(store: &ReadStore, note_id: Uuid) -> Result<Option<String>> {
    Ok(
        sqlx::query(
            "SELECT embedding_model FROM note_artifacts WHERE note_id = $1 AND version = 1",
        )
        .bind(note_id.to_string())
        .fetch_one(store.pool())
        .await?
        .try_get("embedding_model")?,
    )
}

async fn scenario(store: &ReadStore, migration: &str) -> Result<()> {
    let cells = Uuid::from_u128(1);
    let trains = Uuid::from_u128(2);
    let gone = Uuid::from_u128(3);
    let mut records = published_note(cells, "Cells", "The mitochondria is the powerhouse.");
    records.extend(published_note(
        trains,
        "Trains",
        "Steam trains crossed the land.",
    ));
    records.extend(published_note(gone, "Gone", "Deleted soon."));
    records.push(FlowEvent::Notes(NotesEvent::NoteDeleted(NoteDeleted {
        note_id: gone,
        owner: "ann".into(),
        version: 1,
        occurred_at: T0 + 2000,
    })));
    fold(store, records).await?;

    // Before: every live note has the saga's model only.
    let notes = store.published_notes(None).await?;
    assert_eq!(
        notes.iter().map(|n| n.note_id).collect::<Vec<_>>(),
        vec![cells, trains],
        "deleted notes are not listed"
    );
    assert_eq!(
        notes[0].text,
        Some((
            "Cells".to_owned(),
            "The mitochondria is the powerhouse.".to_owned()
        ))
    );
    assert_eq!(to_reembed(&notes, NEW_MODEL).todo.len(), 2);
    assert_eq!(coverage(&notes, Some(NEW_MODEL)).get(NEW_MODEL), Some(&0));
    assert!(store.published_notes(Some("bob")).await?.is_empty());

    // A re-embedding's reply for `cells`: a second row, GET's embedding unchanged.
    fold(
        store,
        vec![generated(cells, NEW_MODEL, vec![1.0, 0.0, 0.0])],
    )
    .await?;
    assert_eq!(
        artifact_model(store, cells).await?.as_deref(),
        Some(SAGA_MODEL)
    );
    let notes = store.published_notes(None).await?;
    let plan = to_reembed(&notes, NEW_MODEL);
    assert_eq!(
        plan.todo.iter().map(|n| n.note_id).collect::<Vec<_>>(),
        vec![trains]
    );
    assert_eq!(plan.done, 1);
    assert_eq!(coverage(&notes, None).get(SAGA_MODEL), Some(&2));
    assert_eq!(
        store
            .vector_dimensions(NEW_MODEL, &[(cells, 1), (trains, 1), (cells, 2)])
            .await?
            .into_iter()
            .collect::<Vec<_>>(),
        vec![((cells, 1), 3)]
    );

    // Search ranks by the asked model's vectors only: the saga's model still finds both,
    // the new model only the note that has one of its vectors.
    let saga_query = BuiltinEmbedder.embed("mitochondria powerhouse");
    let found = semantic(store, SAGA_MODEL, &saga_query).await?;
    assert_eq!(found.first(), Some(&cells), "{found:?}");
    assert!(!found.contains(&gone));
    assert_eq!(
        semantic(store, NEW_MODEL, &[1.0, 0.0, 0.0]).await?,
        vec![cells]
    );

    // A repeated reply (a zombie's or a redelivery's, with another vector) changes nothing.
    fold(
        store,
        vec![generated(cells, NEW_MODEL, vec![0.0, 1.0, 0.0])],
    )
    .await?;
    assert_eq!(
        semantic(store, NEW_MODEL, &[1.0, 0.0, 0.0]).await?,
        vec![cells]
    );
    assert!(semantic(store, NEW_MODEL, &[0.0, 1.0, 0.0])
        .await?
        .is_empty());

    // Retiring the version deletes every model's vector, as the embedding store does.
    fold(
        store,
        vec![FlowEvent::Embedding(EmbeddingEvent::EmbeddingDeleted(
            EmbeddingDeleted {
                note_id: cells,
                version: Some(1),
                deleted: 2,
                occurred_at: T0 + 3000,
            },
        ))],
    )
    .await?;
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM note_vectors WHERE note_id = $1")
        .bind(cells.to_string())
        .fetch_one(store.pool())
        .await?
        .try_get("n")?;
    assert_eq!(left, 0);

    // The migration copies what the fold kept in `note_artifacts` before it existed.
    sqlx::query("DELETE FROM note_vectors")
        .execute(store.pool())
        .await?;
    sqlx::raw_sql(migration).execute(store.pool()).await?;
    let copied = sqlx::query(
        "SELECT model, dimensions FROM note_vectors WHERE note_id = $1 AND version = 1",
    )
    .bind(trains.to_string())
    .fetch_all(store.pool())
    .await?;
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].try_get::<String, _>("model")?, SAGA_MODEL);
    assert_eq!(copied[0].try_get::<i64, _>("dimensions")?, 256);
    let found = semantic(store, SAGA_MODEL, &BuiltinEmbedder.embed("steam trains")).await?;
    assert_eq!(found.first(), Some(&trains), "{found:?}");
    Ok(())
}

#[tokio::test]
async fn vectors_per_model_on_sqlite() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    scenario(
        &ReadStore::connect(&url).await?,
        include_str!("../migrations-sqlite/20261205080200_note_vectors.sql"),
    )
    .await
}

/// Needs the PostgreSQL server at `NOTESAGA_TEST_POSTGRES_URL`, as the flow tests do.
#[tokio::test]
async fn vectors_per_model_on_postgres() -> Result<()> {
    let db = PostgresDatabase::create().await?;
    scenario(
        &ReadStore::connect(&db.url()).await?,
        include_str!("../migrations-postgres/20261205080200_note_vectors.sql"),
    )
    .await
}
