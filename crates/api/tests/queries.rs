//! The query endpoints through the router, without a socket or a broker: parameters are
//! checked with the promised statuses and problem bodies, lists page by cursor, command
//! status and search answer only for the caller, and `/readyz` names the dependency
//! that is down. The read store is a SQLite file filled through the projection's fold.

mod conform;
mod offline;

use std::time::Duration;

use anyhow::Result;
use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use http_body_util::BodyExt as _;
use notesaga_api::{auth::Claims, router, ApiConfig, AuthConfig};
use notesaga_embedder::BuiltinEmbedder;
use notesaga_events::{
    embedding::{EmbeddingEvent, EmbeddingGenerated},
    notes::{NoteCreated, NotePublished, NotesEvent},
};
use notesaga_log::FlowEvent;
use notesaga_projections::{notes, AcceptedCommand, ReadStore};
use serde_json::Value;
use tower::ServiceExt as _;
use uuid::Uuid;

/// The caller: `sub` of the token every request carries.
const ME: &str = "local";

/// The API's HS256 secret.
const SECRET: &[u8] = b"queries-test-secret-0123456789abcdef";

struct Api {
    _dir: tempfile::TempDir,
    store: ReadStore,
    router: Router,
    token: String,
}

/// An API whose broker and registry are a closed port: every query works, every probe
/// of them fails.
async fn api() -> Result<Api> {
    let config = ApiConfig {
        readiness_timeout: Duration::from_millis(500),
        auth: AuthConfig::hs256(SECRET)?,
        ..ApiConfig::default()
    };
    let offline = offline::offline(config, None).await?;
    Ok(Api {
        _dir: offline.dir,
        store: offline.store,
        router: router(offline.state),
        token: Claims::new(ME, Duration::from_secs(3600)).mint_hs256(SECRET)?,
    })
}

impl Api {
    async fn get(&self, uri: &str) -> Result<(StatusCode, String, Value)> {
        let response = self
            .router
            .clone()
            .oneshot(
                Request::get(uri)
                    .header("authorization", format!("Bearer {}", self.token))
                    .body(Body::empty())?,
            )
            .await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        conform::assert_conforms("GET", uri, status.as_u16(), &headers, &bytes);
        Ok((status, content_type, serde_json::from_slice(&bytes)?))
    }

    /// Expects a problem with `status` whose `type` ends in `slug`.
    async fn problem(&self, uri: &str, status: StatusCode, slug: &str) -> Result<Value> {
        let (got, content_type, body) = self.get(uri).await?;
        assert_eq!(got, status, "{uri}: {body}");
        assert_eq!(content_type, "application/problem+json", "{uri}");
        assert!(
            body["type"].as_str().unwrap_or_default().ends_with(slug),
            "{uri}: {body}"
        );
        assert_eq!(body["status"], status.as_u16());
        Ok(body)
    }

    async fn fold(&self, records: Vec<FlowEvent>) -> Result<()> {
        let mut tx = self.store.pool().begin().await?;
        for (offset, record) in records.iter().enumerate() {
            notes::apply(&mut tx, record, Uuid::new_v4(), offset as i64).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A published note of `owner`, embedded by the built-in embedder, changed at `second`.
fn published_note(id: Uuid, owner: &str, title: &str, body: &str, second: i64) -> Vec<FlowEvent> {
    let at = 1_767_225_600_000 + second * 1000;
    let vector = BuiltinEmbedder.embed(&format!("{title}.\n\n{body}"));
    vec![
        FlowEvent::Notes(NotesEvent::NoteCreated(NoteCreated {
            note_id: id,
            owner: owner.into(),
            version: 1,
            title: title.into(),
            body: body.into(),
            occurred_at: at,
        })),
        FlowEvent::Embedding(EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated {
            note_id: id,
            version: 1,
            model: BuiltinEmbedder.model().into(),
            dimensions: vector.len() as i32,
            vector,
            occurred_at: at,
        })),
        FlowEvent::Notes(NotesEvent::NotePublished(NotePublished {
            note_id: id,
            version: 1,
            occurred_at: at,
        })),
    ]
}

#[tokio::test]
async fn list_parameters_are_checked() -> Result<()> {
    let api = api().await?;
    let (status, _, empty) = api.get("/v1/notes").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty, serde_json::json!({"items": [], "next_cursor": null}));
    for (uri, slug) in [
        ("/v1/notes?status=archived", "bad-status"),
        ("/v1/notes?status=", "bad-status"),
        ("/v1/notes?limit=0", "bad-limit"),
        ("/v1/notes?limit=101", "bad-limit"),
        ("/v1/notes?limit=ten", "bad-limit"),
        ("/v1/notes?cursor=not-a-cursor", "bad-cursor"),
        // Valid base64 of something that is not a sort key.
        ("/v1/notes?cursor=aGVsbG8", "bad-cursor"),
    ] {
        api.problem(uri, StatusCode::BAD_REQUEST, slug).await?;
    }
    for ok in ["/v1/notes?limit=1", "/v1/notes?limit=100&status=failed"] {
        assert_eq!(api.get(ok).await?.0, StatusCode::OK, "{ok}");
    }
    Ok(())
}

#[tokio::test]
async fn lists_page_through_the_callers_notes_without_bodies() -> Result<()> {
    let api = api().await?;
    let mine: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let theirs = Uuid::new_v4();
    let mut records = Vec::new();
    for (i, id) in mine.iter().enumerate() {
        records.extend(published_note(*id, ME, &format!("n{i}"), "body", i as i64));
    }
    records.extend(published_note(theirs, "someone-else", "t", "body", 99));
    api.fold(records).await?;

    let mut seen = Vec::new();
    let mut uri = "/v1/notes?limit=2".to_owned();
    loop {
        let (status, _, page) = api.get(&uri).await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().expect("items") {
            assert!(item.get("body").is_none(), "no bodies in lists: {item}");
            assert_eq!(item["status"], "published");
            assert_eq!(item["embedding"]["dimensions"], 256);
            seen.push(item["note_id"].as_str().expect("id").parse::<Uuid>()?);
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/notes?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let newest_first: Vec<Uuid> = mine.iter().rev().copied().collect();
    assert_eq!(seen, newest_first);

    // Another user's note is as unknown as a missing one.
    api.problem(
        &format!("/v1/notes/{theirs}"),
        StatusCode::NOT_FOUND,
        "note-not-found",
    )
    .await?;
    let (status, _, note) = api.get(&format!("/v1/notes/{}", mine[0])).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(note["body"], "body", "one note keeps its body");
    Ok(())
}

#[tokio::test]
async fn command_status_is_the_callers_only() -> Result<()> {
    let api = api().await?;
    api.problem(
        &format!("/v1/commands/{}", Uuid::new_v4()),
        StatusCode::NOT_FOUND,
        "command-not-found",
    )
    .await?;
    api.problem(
        "/v1/commands/not-a-uuid",
        StatusCode::NOT_FOUND,
        "command-not-found",
    )
    .await?;
    let (mine, theirs, note) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (command_id, owner) in [(mine, ME), (theirs, "someone-else")] {
        api.store
            .record_accepted(&AcceptedCommand {
                command_id,
                note_id: note,
                owner: owner.into(),
                command_type: "CreateNote".into(),
                accepted_at: "2026-01-01T00:00:00.000Z".into(),
            })
            .await?;
    }
    let (status, _, body) = api.get(&format!("/v1/commands/{mine}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["note_id"], note.to_string());
    assert_eq!(body["command_type"], "CreateNote");
    api.problem(
        &format!("/v1/commands/{theirs}"),
        StatusCode::NOT_FOUND,
        "command-not-found",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn search_ranks_the_callers_published_notes() -> Result<()> {
    let api = api().await?;
    for uri in ["/v1/search", "/v1/search?q=", "/v1/search?q=%20%20"] {
        let body = api
            .problem(uri, StatusCode::UNPROCESSABLE_ENTITY, "validation")
            .await?;
        assert_eq!(body["errors"][0]["field"], "q", "{uri}: {body}");
    }
    let long = "a".repeat(1001);
    api.problem(
        &format!("/v1/search?q={long}"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await?;
    for uri in ["/v1/search?q=x&limit=0", "/v1/search?q=x&limit=101"] {
        api.problem(uri, StatusCode::BAD_REQUEST, "bad-limit")
            .await?;
    }

    let (cells, trains, theirs) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut records = published_note(
        cells,
        ME,
        "Cell biology",
        "The mitochondria is the powerhouse of the cell.",
        1,
    );
    records.extend(published_note(
        trains,
        ME,
        "Railways",
        "Steam trains crossed the country.",
        2,
    ));
    records.extend(published_note(
        theirs,
        "someone-else",
        "Cell biology",
        "The cell membrane.",
        3,
    ));
    api.fold(records).await?;
    let (status, _, body) = api.get("/v1/search?q=cell%20biology").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "only the caller's matching note: {body}");
    assert_eq!(results[0]["note_id"], cells.to_string());
    assert_eq!(results[0]["title"], "Cell biology");
    assert_eq!(results[0]["version"], 1);
    assert!(results[0]["score"].as_f64().unwrap_or_default() > 0.0);
    assert_eq!(
        results[0]["matched_by"],
        serde_json::json!(["keyword", "semantic"]),
        "{body}"
    );
    assert!(results[0]["snippet"]
        .as_str()
        .unwrap_or_default()
        .contains("powerhouse"));

    // Each mode alone; the keyword one embeds nothing and matches words only.
    let (status, _, body) = api.get("/v1/search?q=steam&mode=keyword").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["note_id"], trains.to_string(), "{body}");
    assert_eq!(
        body["results"][0]["matched_by"],
        serde_json::json!(["keyword"])
    );
    assert_eq!(body["results"][0]["score"], 1.0);
    let (status, _, body) = api.get("/v1/search?q=cell%20biology&mode=semantic").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["note_id"], cells.to_string(), "{body}");
    assert_eq!(
        body["results"][0]["matched_by"],
        serde_json::json!(["semantic"])
    );
    let body = api
        .problem(
            "/v1/search?q=x&mode=fuzzy",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await?;
    assert_eq!(body["errors"][0]["field"], "mode", "{body}");
    Ok(())
}

#[tokio::test]
async fn readiness_names_what_is_down() -> Result<()> {
    let api = api().await?;
    let body = api
        .problem("/readyz", StatusCode::SERVICE_UNAVAILABLE, "not-ready")
        .await?;
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(body["checks"]["broker"], "failed", "{body}");
    assert_eq!(body["checks"]["registry"], "failed", "{body}");
    Ok(())
}
