//! The query read models against each backend: records folded through the projection's
//! own `apply`, then read the way the API reads them. Note lists page by cursor through
//! every row exactly once, filter by status and never show deleted or other owners'
//! notes; command status goes pending → applied / rejected; search ranks published
//! embeddings of the owner's live notes by cosine similarity.

mod support;

use anyhow::Result;
use notesaga_embedding::BuiltinEmbedder;
use notesaga_events::{
    embedding::{EmbeddingEvent, EmbeddingGenerated},
    notes::{
        CommandApplied, CommandRejected, NoteCreated, NoteDeleted, NoteEdited,
        NotePublicationFailed, NotePublished, NotesEvent, NotesOutcome,
    },
};
use notesaga_log::FlowEvent;
use notesaga_projections::{AcceptedCommand, CommandState, NoteListQuery, NoteView, ReadStore};
use notesaga_testkit::PostgresDatabase;
use support::fold;
use uuid::Uuid;

/// 2026-01-01T00:00:00Z in milliseconds; every record happens some seconds after it.
const T0: i64 = 1_767_225_600_000;

fn created(note_id: Uuid, owner: &str, title: &str, body: &str, second: i64) -> FlowEvent {
    FlowEvent::Notes(NotesEvent::NoteCreated(NoteCreated {
        note_id,
        owner: owner.into(),
        version: 1,
        title: title.into(),
        body: body.into(),
        occurred_at: T0 + second * 1000,
    }))
}

fn edited(note_id: Uuid, version: i64, title: &str, body: &str, second: i64) -> FlowEvent {
    FlowEvent::Notes(NotesEvent::NoteEdited(NoteEdited {
        note_id,
        owner: "ann".into(),
        version,
        title: title.into(),
        body: body.into(),
        occurred_at: T0 + second * 1000,
    }))
}

fn published(note_id: Uuid, version: i64, second: i64) -> FlowEvent {
    FlowEvent::Notes(NotesEvent::NotePublished(NotePublished {
        note_id,
        version,
        occurred_at: T0 + second * 1000,
    }))
}

fn failed(note_id: Uuid, version: i64, second: i64) -> FlowEvent {
    FlowEvent::Notes(NotesEvent::NotePublicationFailed(NotePublicationFailed {
        note_id,
        version,
        reason: "narration failed: boom".into(),
        occurred_at: T0 + second * 1000,
    }))
}

fn deleted(note_id: Uuid, owner: &str, second: i64) -> FlowEvent {
    FlowEvent::Notes(NotesEvent::NoteDeleted(NoteDeleted {
        note_id,
        owner: owner.into(),
        version: 1,
        occurred_at: T0 + second * 1000,
    }))
}

fn embedded(note_id: Uuid, version: i64, model: &str, text: &str) -> FlowEvent {
    let vector = BuiltinEmbedder.embed(text);
    FlowEvent::Embedding(EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated {
        note_id,
        version,
        model: model.into(),
        dimensions: vector.len() as i32,
        vector,
        occurred_at: T0,
    }))
}

/// Walks every page of `query` (from the first) and returns the notes in order.
async fn walk(store: &ReadStore, mut query: NoteListQuery) -> Result<Vec<NoteView>> {
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.notes_page(&query).await?;
        pages += 1;
        assert!(
            page.notes.len() as i64 <= query.limit,
            "page over the limit"
        );
        assert!(
            page.next.is_none() || page.notes.len() as i64 == query.limit,
            "only the last page may be short"
        );
        all.extend(page.notes);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        assert!(pages < 100, "the walk does not end");
    }
    Ok(all)
}

fn ids(notes: &[NoteView]) -> Vec<Uuid> {
    notes.iter().map(|n| n.note_id).collect()
}

async fn list_scenario(store: &ReadStore) -> Result<()> {
    // Ann's notes 0..9 are created one second apart, except 4, 5 and 6, which share a
    // second: the note id orders them. Bob's note and Ann's deleted one are never listed.
    let ann: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
    let mut records = Vec::new();
    for (i, id) in ann.iter().enumerate() {
        let second = match i {
            4..=6 => 4,
            _ => i as i64,
        };
        records.push(created(*id, "ann", &format!("note {i}"), "a body", second));
    }
    let bob = Uuid::new_v4();
    records.push(created(bob, "bob", "bob's", "b", 50));
    // 1 and 3 get published, 2 fails, 8 is deleted; each changes updated_at.
    records.push(published(ann[1], 1, 20));
    records.push(published(ann[3], 1, 21));
    records.push(failed(ann[2], 1, 22));
    records.push(deleted(ann[8], "ann", 23));
    fold(store, records).await?;

    let everything = NoteListQuery {
        owner: "ann".into(),
        limit: 100,
        ..NoteListQuery::default()
    };
    let one_page = store.notes_page(&everything).await?;
    assert!(one_page.next.is_none());
    let listed = one_page.notes;
    // Newest change first: 2 (22 s), 3 (21 s), 1 (20 s), 7, then 4..=6 by id descending, 0.
    let mut tied = vec![ann[4], ann[5], ann[6]];
    tied.sort_by(|a, b| b.cmp(a));
    let expected: Vec<Uuid> = [ann[2], ann[3], ann[1], ann[7]]
        .into_iter()
        .chain(tied)
        .chain([ann[0]])
        .collect();
    assert_eq!(ids(&listed), expected);
    assert!(
        listed.iter().all(|n| n.body.is_none()),
        "lists carry no bodies"
    );
    assert_eq!(listed[0].status, "failed");
    assert_eq!(
        listed[0].failure_reason.as_deref(),
        Some("narration failed: boom")
    );

    // Every page size walks every row exactly once, in the same order, including pages
    // that end inside the tie.
    for limit in [1, 2, 3, 5, 8] {
        let walked = walk(
            store,
            NoteListQuery {
                limit,
                ..everything.clone()
            },
        )
        .await?;
        assert_eq!(ids(&walked), expected, "limit {limit}");
    }

    let published_only = walk(
        store,
        NoteListQuery {
            status: Some("published".into()),
            limit: 1,
            ..everything.clone()
        },
    )
    .await?;
    assert_eq!(ids(&published_only), vec![ann[3], ann[1]]);
    assert!(published_only
        .iter()
        .all(|n| n.published.as_ref().map(|p| p.version) == Some(1)));
    let processing = walk(
        store,
        NoteListQuery {
            status: Some("processing".into()),
            limit: 2,
            ..everything.clone()
        },
    )
    .await?;
    assert_eq!(processing.len(), 5, "0, 4, 5, 6 and 7; not the deleted 8");
    assert!(!ids(&processing).contains(&ann[8]));

    let bobs = walk(
        store,
        NoteListQuery {
            owner: "bob".into(),
            ..everything.clone()
        },
    )
    .await?;
    assert_eq!(ids(&bobs), vec![bob]);
    Ok(())
}

fn accepted(command_id: Uuid, note_id: Uuid, command_type: &str) -> AcceptedCommand {
    AcceptedCommand {
        command_id,
        note_id,
        owner: "ann".into(),
        command_type: command_type.into(),
        accepted_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

fn applied(command_id: Uuid, note_id: Uuid, version: i64) -> FlowEvent {
    FlowEvent::Outcome(NotesOutcome::CommandApplied(CommandApplied {
        command_id,
        note_id,
        command_type: "CreateNote".into(),
        version: Some(version),
        event_ids: vec![Uuid::new_v4().to_string()],
        occurred_at: T0 + 1000,
    }))
}

fn rejected(command_id: Uuid, note_id: Uuid, code: &str) -> FlowEvent {
    FlowEvent::Outcome(NotesOutcome::CommandRejected(CommandRejected {
        command_id,
        note_id,
        command_type: "EditNote".into(),
        code: code.into(),
        message: "expected version 7, the note is at version 1".into(),
        occurred_at: T0 + 2000,
    }))
}

async fn commands_scenario(store: &ReadStore) -> Result<()> {
    let note = Uuid::new_v4();
    let create = Uuid::new_v4();
    assert!(
        store.command(create).await?.is_none(),
        "unknown until accepted"
    );

    store
        .record_accepted(&accepted(create, note, "CreateNote"))
        .await?;
    let pending = store.command(create).await?.expect("accepted");
    assert_eq!(pending.state, CommandState::Pending);
    assert_eq!(
        (
            pending.note_id,
            pending.owner.as_str(),
            pending.command_type.as_str()
        ),
        (note, "ann", "CreateNote")
    );

    fold(store, vec![applied(create, note, 1)]).await?;
    let done = store.command(create).await?.expect("accepted");
    assert_eq!(
        done.state,
        CommandState::Applied {
            version: Some(1),
            at: "2026-01-01T00:00:01.000Z".into()
        }
    );
    // A second outcome for the same command (a zombie's copy) changes nothing.
    fold(store, vec![rejected(create, note, "version_conflict")]).await?;
    assert_eq!(
        store.command(create).await?.expect("accepted").state,
        done.state
    );

    // The outcome may be projected before the API's row lands: both halves still meet.
    let edit = Uuid::new_v4();
    fold(store, vec![rejected(edit, note, "version_conflict")]).await?;
    assert!(
        store.command(edit).await?.is_none(),
        "only commands the API accepted are addressable"
    );
    store
        .record_accepted(&accepted(edit, note, "EditNote"))
        .await?;
    match store.command(edit).await?.expect("accepted").state {
        CommandState::Rejected { code, message, .. } => {
            assert_eq!(code, "version_conflict");
            assert!(message.contains("version 7"), "{message}");
        }
        other => panic!("expected rejected, got {other:?}"),
    }

    // A command that could not be sent is forgotten again.
    let lost = Uuid::new_v4();
    store
        .record_accepted(&accepted(lost, note, "DeleteNote"))
        .await?;
    store.forget_accepted(lost).await?;
    assert!(store.command(lost).await?.is_none());
    Ok(())
}

async fn search_scenario(store: &ReadStore) -> Result<()> {
    const MODEL: &str = notesaga_embedding::embedder::MODEL;
    let cells_text = "Cell biology: the mitochondria and the cell membrane";
    let prison_text = "The prison cell in the old tower";
    let trains_text = "Steam trains of the Victorian railway";
    let (cells, prison, trains) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    // Published in every way but one each: deleted, another owner's, another model,
    // and a note whose cell-biology text is only in its unpublished version 2.
    let (gone, bobs, other_model, unpublished) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut records = Vec::new();
    for (id, owner, text, model) in [
        (cells, "ann", cells_text, MODEL),
        (prison, "ann", prison_text, MODEL),
        (trains, "ann", trains_text, MODEL),
        (gone, "ann", cells_text, MODEL),
        (bobs, "bob", cells_text, MODEL),
        (other_model, "ann", cells_text, "another-model"),
        (unpublished, "ann", trains_text, MODEL),
    ] {
        records.push(created(id, owner, &text[..12], text, 1));
        records.push(embedded(id, 1, model, text));
        records.push(published(id, 1, 2));
    }
    records.push(deleted(gone, "ann", 3));
    records.push(edited(unpublished, 2, "Cell biology", cells_text, 4));
    records.push(embedded(unpublished, 2, MODEL, cells_text));
    fold(store, records).await?;

    let query = BuiltinEmbedder.embed("cell biology");
    let hits = store.search("ann", MODEL, &query, 10).await?;
    let found: Vec<Uuid> = hits.iter().map(|h| h.note_id).collect();
    assert_eq!(
        found,
        vec![cells, prison],
        "cells above the prison cell; trains share no word; {hits:?}"
    );
    assert!(hits[0].score > hits[1].score && hits[1].score > 0.0);
    assert_eq!(hits[0].version, 1);
    assert_eq!(hits[0].title, &cells_text[..12]);

    assert_eq!(
        store.search("ann", MODEL, &query, 1).await?.len(),
        1,
        "limit"
    );
    let bob = store.search("bob", MODEL, &query, 10).await?;
    assert_eq!(
        bob.iter().map(|h| h.note_id).collect::<Vec<_>>(),
        vec![bobs]
    );
    let trains_hits = store
        .search(
            "ann",
            MODEL,
            &BuiltinEmbedder.embed("victorian steam trains"),
            10,
        )
        .await?;
    // The unpublished note is found by its published (trains) text, under its new title.
    let mut trains_found: Vec<Uuid> = trains_hits.iter().map(|h| h.note_id).collect();
    trains_found.sort();
    let mut expected = vec![trains, unpublished];
    expected.sort();
    assert_eq!(trains_found, expected);
    let renamed = trains_hits
        .iter()
        .find(|h| h.note_id == unpublished)
        .expect("found");
    assert_eq!(
        (renamed.version, renamed.title.as_str()),
        (1, "Cell biology")
    );
    Ok(())
}

async fn sqlite() -> Result<(tempfile::TempDir, ReadStore)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let store = ReadStore::connect(&url).await?;
    Ok((dir, store))
}

#[tokio::test]
async fn note_lists_on_sqlite() -> Result<()> {
    let (_dir, store) = sqlite().await?;
    list_scenario(&store).await
}

#[tokio::test]
async fn command_status_on_sqlite() -> Result<()> {
    let (_dir, store) = sqlite().await?;
    commands_scenario(&store).await
}

#[tokio::test]
async fn command_status_with_accepted_commands_in_their_own_file() -> Result<()> {
    let (dir, store) = sqlite().await?;
    let commands = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let store = store.with_accepted_commands(&commands).await?;
    commands_scenario(&store).await?;
    // The API's rows are in their own file; the read store's table stays empty.
    assert_eq!(count_commands(store.url()).await?, 0);
    assert_eq!(
        count_commands(&commands).await?,
        2,
        "the create and the edit"
    );
    Ok(())
}

/// A data directory of the previous layout (accepted commands in the read store's file)
/// moves them, all, to their own file at the first start, and reads them there. The
/// records go in concurrently, in the writer's group commits.
#[tokio::test]
async fn accepted_commands_move_from_the_read_store_to_their_own_file() -> Result<()> {
    let (dir, store) = sqlite().await?;
    let note = Uuid::new_v4();
    let ids: Vec<Uuid> = (0..2_500).map(|_| Uuid::new_v4()).collect();
    let records = ids
        .iter()
        .map(|id| accepted(*id, note, "EditNote"))
        .collect::<Vec<_>>();
    futures::future::try_join_all(records.iter().map(|command| store.record_accepted(command)))
        .await?;
    assert_eq!(count_commands(store.url()).await?, 2_500);

    let commands = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let store = ReadStore::connect(store.url())
        .await?
        .with_accepted_commands(&commands)
        .await?;
    assert_eq!(count_commands(store.url()).await?, 0, "moved, not copied");
    assert_eq!(count_commands(&commands).await?, 2_500);
    for id in [ids[0], ids[1_234], ids[2_499]] {
        let found = store.command(id).await?.expect("moved");
        assert_eq!((found.state, found.note_id), (CommandState::Pending, note));
    }
    // A second start finds nothing left to move and changes nothing.
    let store = store.with_accepted_commands(&commands).await?;
    assert_eq!(count_commands(&commands).await?, 2_500);
    assert!(store.command(ids[7]).await?.is_some());
    Ok(())
}

/// Rows of the `commands` table in the database at `url`.
async fn count_commands(url: &str) -> Result<i64> {
    use sqlx::Row as _;
    let pool = notesaga_sql::connect(url, 1).await?;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM commands")
        .fetch_one(&pool)
        .await?;
    Ok(row.try_get("n")?)
}

#[tokio::test]
async fn search_on_sqlite() -> Result<()> {
    let (_dir, store) = sqlite().await?;
    search_scenario(&store).await
}

/// Needs the PostgreSQL server at `NOTESAGA_TEST_POSTGRES_URL`, as the flow tests do.
#[tokio::test]
async fn note_lists_on_postgres() -> Result<()> {
    let db = PostgresDatabase::create().await?;
    list_scenario(&ReadStore::connect(&db.url()).await?).await
}

#[tokio::test]
async fn command_status_on_postgres() -> Result<()> {
    let db = PostgresDatabase::create().await?;
    commands_scenario(&ReadStore::connect(&db.url()).await?).await
}

#[tokio::test]
async fn search_on_postgres() -> Result<()> {
    let db = PostgresDatabase::create().await?;
    search_scenario(&ReadStore::connect(&db.url()).await?).await
}
