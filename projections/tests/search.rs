//! Keyword, semantic and hybrid search against each backend, with records folded
//! through the projection's own `apply`: only the published version's words match (not
//! an unpublished edit's, a failed version's, a deleted note's or another owner's),
//! a newly published version replaces its predecessor's words, vectors are stored as
//! little-endian f32 bytes (and JSON vectors written before still count), and every hit
//! says which rankings found it and shows a snippet.

mod support;

use anyhow::Result;
use notesaga_embedder::BuiltinEmbedder;
use notesaga_events::{
    embedding::{EmbeddingEvent, EmbeddingGenerated},
    notes::{
        NoteCreated, NoteDeleted, NoteEdited, NotePublicationFailed, NotePublished, NotesEvent,
    },
};
use notesaga_log::FlowEvent;
use notesaga_projections::{Fusion, ReadStore, SearchMode, SearchQuery};
use notesaga_testkit::PostgresDatabase;
use sqlx::Row as _;
use support::fold;
use uuid::Uuid;

const MODEL: &str = notesaga_embedder::hash::MODEL;
const T0: i64 = 1_767_225_600_000;

fn created(note_id: Uuid, owner: &str, title: &str, body: &str) -> FlowEvent {
    FlowEvent::Notes(NotesEvent::NoteCreated(NoteCreated {
        note_id,
        owner: owner.into(),
        version: 1,
        title: title.into(),
        body: body.into(),
        occurred_at: T0,
    }))
}

fn edited(note_id: Uuid, version: i64, title: &str, body: &str) -> FlowEvent {
    FlowEvent::Notes(NotesEvent::NoteEdited(NoteEdited {
        note_id,
        owner: "ann".into(),
        version,
        title: title.into(),
        body: body.into(),
        occurred_at: T0 + version * 1000,
    }))
}

fn embedded(note_id: Uuid, version: i64, text: &str) -> FlowEvent {
    let vector = BuiltinEmbedder.embed(text);
    FlowEvent::Embedding(EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated {
        note_id,
        version,
        model: MODEL.into(),
        dimensions: vector.len() as i32,
        vector,
        occurred_at: T0,
    }))
}

fn published(note_id: Uuid, version: i64) -> FlowEvent {
    FlowEvent::Notes(NotesEvent::NotePublished(NotePublished {
        note_id,
        version,
        occurred_at: T0 + version * 1000,
    }))
}

/// A note created, embedded and published at version 1.
fn note(note_id: Uuid, owner: &str, title: &str, body: &str) -> Vec<FlowEvent> {
    vec![
        created(note_id, owner, title, body),
        embedded(note_id, 1, &format!("{title}.\n\n{body}")),
        published(note_id, 1),
    ]
}

async fn find(
    store: &ReadStore,
    owner: &str,
    text: &str,
    mode: SearchMode,
) -> Result<Vec<notesaga_projections::SearchHit>> {
    let vector = BuiltinEmbedder.embed(text);
    Ok(store
        .find(&SearchQuery {
            owner,
            text,
            model: MODEL,
            vector: Some(&vector),
            mode,
            limit: 10,
            fusion: Fusion::default(),
        })
        .await?)
}

async fn ids(store: &ReadStore, text: &str, mode: SearchMode) -> Result<Vec<Uuid>> {
    Ok(find(store, "ann", text, mode)
        .await?
        .iter()
        .map(|h| h.note_id)
        .collect())
}

async fn scenario(store: &ReadStore) -> Result<()> {
    let goliath = Uuid::from_u128(1);
    let trains = Uuid::from_u128(2);
    let failed = Uuid::from_u128(3);
    let gone = Uuid::from_u128(4);
    let bobs = Uuid::from_u128(5);
    let goliath_body =
        "And David smote the Philistine in his forehead with a stone from his sling; \
         Goliath of Gath fell upon his face to the earth.";
    let mut records = note(goliath, "ann", "David and the champion", goliath_body);
    records.extend(note(
        trains,
        "ann",
        "Railways",
        "Steam trains crossed the country.",
    ));
    // Version 2 speaks of Goliath but is not published (yet).
    records.push(edited(trains, 2, "Giants", "Goliath was a giant of Gath."));
    records.push(embedded(
        trains,
        2,
        "Giants.\n\nGoliath was a giant of Gath.",
    ));
    records.push(created(failed, "ann", "Goliath draft", "Goliath, failed."));
    records.push(FlowEvent::Notes(NotesEvent::NotePublicationFailed(
        NotePublicationFailed {
            note_id: failed,
            version: 1,
            reason: "narration failed".into(),
            occurred_at: T0,
        },
    )));
    records.extend(note(gone, "ann", "Goliath again", "Goliath of Gath."));
    records.push(FlowEvent::Notes(NotesEvent::NoteDeleted(NoteDeleted {
        note_id: gone,
        owner: "ann".into(),
        version: 1,
        occurred_at: T0 + 5000,
    })));
    records.extend(note(bobs, "bob", "Goliath", "Goliath of Gath, bob's."));
    fold(store, records).await?;

    // Keyword: only the published, live text of the caller's notes.
    let hits = find(store, "ann", "goliath", SearchMode::Keyword).await?;
    assert_eq!(
        hits.iter().map(|h| h.note_id).collect::<Vec<_>>(),
        vec![goliath],
        "{hits:?}"
    );
    assert_eq!(hits[0].matched_by, vec!["keyword"]);
    assert_eq!(hits[0].score, 1.0);
    assert!(hits[0].snippet.contains("Goliath"), "{}", hits[0].snippet);
    assert_eq!(hits[0].version, 1);
    assert_eq!(
        ids(store, "trains", SearchMode::Keyword).await?,
        vec![trains]
    );
    assert_eq!(
        find(store, "bob", "goliath", SearchMode::Keyword)
            .await?
            .iter()
            .map(|h| h.note_id)
            .collect::<Vec<_>>(),
        vec![bobs]
    );
    // Stemmed: "smiting" finds "smote"? No (irregular), but "falls" finds "fell"? No;
    // "slings" finds "sling" and "Philistines" finds "Philistine".
    assert_eq!(
        ids(store, "slings Philistines", SearchMode::Keyword).await?,
        vec![goliath]
    );
    // Function words alone match nothing; query syntax is only words.
    assert!(ids(store, "the of and unto", SearchMode::Keyword)
        .await?
        .is_empty());
    assert_eq!(
        ids(store, "\"goliath\" OR NEAR( title:* -", SearchMode::Keyword).await?,
        vec![goliath]
    );

    // Semantic and hybrid: the same notes by their vectors.
    let semantic = find(store, "ann", "Goliath of Gath", SearchMode::Semantic).await?;
    assert_eq!(semantic[0].note_id, goliath, "{semantic:?}");
    assert_eq!(semantic[0].matched_by, vec!["semantic"]);
    assert!(semantic[0].score > 0.0 && semantic[0].score <= 1.0);
    assert!(
        goliath_body.starts_with(&semantic[0].snippet),
        "{}",
        semantic[0].snippet
    );
    assert!(!semantic
        .iter()
        .any(|h| [failed, gone, bobs].contains(&h.note_id)));
    let hybrid = find(store, "ann", "Goliath of Gath", SearchMode::Hybrid).await?;
    assert_eq!(hybrid[0].note_id, goliath, "{hybrid:?}");
    assert_eq!(hybrid[0].matched_by, vec!["keyword", "semantic"]);
    assert!(hybrid.iter().all(|h| (0.0..=1.0).contains(&h.score)));

    // Version 2 published: its words replace version 1's.
    fold(store, vec![published(trains, 2)]).await?;
    assert!(ids(store, "trains", SearchMode::Keyword).await?.is_empty());
    let mut giants = ids(store, "goliath", SearchMode::Keyword).await?;
    giants.sort();
    assert_eq!(giants, vec![goliath, trains]);
    // A late copy of version 1's publication changes nothing.
    fold(store, vec![published(trains, 1)]).await?;
    assert!(ids(store, "trains", SearchMode::Keyword).await?.is_empty());

    // Vectors are little-endian f32 bytes.
    let row = sqlx::query(
        "SELECT embedding_f32, embedding_vector FROM note_artifacts \
         WHERE note_id = $1 AND version = 1",
    )
    .bind(goliath.to_string())
    .fetch_one(store.pool())
    .await?;
    let bytes: Vec<u8> = row.try_get("embedding_f32")?;
    let json: Option<String> = row.try_get("embedding_vector")?;
    let expected = BuiltinEmbedder.embed(&format!("David and the champion.\n\n{goliath_body}"));
    assert_eq!(bytes.len(), expected.len() * 4);
    assert_eq!(
        &bytes[..4],
        &expected[0].to_le_bytes(),
        "first float, little-endian"
    );
    assert_eq!(json, None);
    // A vector written as JSON before the bytes column existed (and copied to
    // `note_vectors`, which search reads, as it was) still counts. Written behind the
    // fold's back, so read by a store that has not cached the owner's vectors.
    sqlx::query(
        "UPDATE note_vectors SET vector_f32 = NULL, vector_json = $1 \
         WHERE note_id = $2 AND version = 1",
    )
    .bind(serde_json::to_string(&expected)?)
    .bind(goliath.to_string())
    .execute(store.pool())
    .await?;
    let fresh = ReadStore::connect(store.url()).await?.with_vector_cache(0);
    assert!(ids(&fresh, "Goliath of Gath", SearchMode::Semantic)
        .await?
        .contains(&goliath));
    Ok(())
}

/// The owner's vectors kept in memory between searches follow every change the fold
/// makes: a new published note, a deletion, a deleted embedding; another owner's change
/// leaves them in memory.
async fn cached_vectors_follow_the_fold(store: &ReadStore) -> Result<()> {
    let (first, second, bobs) = (
        Uuid::from_u128(11),
        Uuid::from_u128(12),
        Uuid::from_u128(13),
    );
    let query = "Goliath of Gath";
    fold(
        store,
        note(first, "ann", "Champion", "Goliath of Gath fell."),
    )
    .await?;
    assert_eq!(ids(store, query, SearchMode::Semantic).await?, vec![first]);

    fold(
        store,
        note(second, "ann", "Giant", "Goliath of Gath was tall."),
    )
    .await?;
    let mut found = ids(store, query, SearchMode::Semantic).await?;
    found.sort();
    assert_eq!(
        found,
        vec![first, second],
        "a newly published note is searched"
    );

    fold(
        store,
        vec![FlowEvent::Notes(NotesEvent::NoteDeleted(NoteDeleted {
            note_id: first,
            owner: "ann".into(),
            version: 1,
            occurred_at: T0 + 5000,
        }))],
    )
    .await?;
    assert_eq!(
        ids(store, query, SearchMode::Semantic).await?,
        vec![second],
        "a deleted note is not"
    );

    fold(
        store,
        vec![FlowEvent::Embedding(EmbeddingEvent::EmbeddingDeleted(
            notesaga_events::embedding::EmbeddingDeleted {
                note_id: second,
                version: Some(1),
                deleted: 1,
                occurred_at: T0 + 6000,
            },
        ))],
    )
    .await?;
    assert!(
        ids(store, query, SearchMode::Semantic).await?.is_empty(),
        "a deleted vector is not"
    );

    // Behind the fold's back, ann's vector comes back; a change of bob's does not make
    // the store reread ann's, so the copy in memory (without it) still answers ...
    let vector = BuiltinEmbedder.embed("Giant.\n\nGoliath of Gath was tall.");
    sqlx::query(
        "INSERT INTO note_vectors (note_id, version, model, dimensions, vector_f32) \
         VALUES ($1, 1, $2, $3, $4)",
    )
    .bind(second.to_string())
    .bind(MODEL)
    .bind(vector.len() as i64)
    .bind(notesaga_projections::search::vector_bytes(&vector))
    .execute(store.pool())
    .await?;
    fold(store, note(bobs, "bob", "Bob's", "Goliath of Gath.")).await?;
    assert!(ids(store, query, SearchMode::Semantic).await?.is_empty());
    // ... until one of ann's own changes is folded.
    fold(
        store,
        vec![embedded(second, 1, "Giant.\n\nGoliath of Gath was tall.")],
    )
    .await?;
    assert_eq!(ids(store, query, SearchMode::Semantic).await?, vec![second]);
    Ok(())
}

#[tokio::test]
async fn cached_vectors_follow_the_fold_on_sqlite() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    cached_vectors_follow_the_fold(&ReadStore::connect(&url).await?).await
}

#[tokio::test]
async fn cached_vectors_follow_the_fold_on_postgres() -> Result<()> {
    let db = PostgresDatabase::create().await?;
    cached_vectors_follow_the_fold(&ReadStore::connect(&db.url()).await?).await
}

#[tokio::test]
async fn search_modes_on_sqlite() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    scenario(&ReadStore::connect(&url).await?).await
}

/// Needs the PostgreSQL server at `NOTESAGA_TEST_POSTGRES_URL`, as the flow tests do.
#[tokio::test]
async fn search_modes_on_postgres() -> Result<()> {
    let db = PostgresDatabase::create().await?;
    scenario(&ReadStore::connect(&db.url()).await?).await
}
