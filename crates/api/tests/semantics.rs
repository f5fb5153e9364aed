//! The API's promises about retries, waits and bounds, through the router without a
//! socket or a broker (the broker is a closed port: no test here sends a command; those
//! that do run on a real single node in `crates/cli/tests/semantics.rs`).
//!
//! - `Idempotency-Key`: a key whose request is in flight answers 409, a key used with
//!   another body 422, a finished key replays its response without sending anything.
//! - `?min_version=N` waits for the projection, then answers the note, 412 or 404.
//! - Bounds: 413, 429 with `Retry-After`, 400 beyond the page size, 503 on timeout.

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
use notesaga_api::{auth::Claims, router, ApiConfig, AuthConfig, Limits};
use notesaga_events::notes::{NoteCreated, NoteEdited, NotesEvent};
use notesaga_log::FlowEvent;
use notesaga_projections::{
    idempotency::{KeyRequest, Reservation, StoredResponse},
    notes, ReadStore,
};
use serde_json::{json, Value};
use tower::ServiceExt as _;
use uuid::Uuid;

const ME: &str = "ann";
const SECRET: &[u8] = b"semantics-test-secret-0123456789abcdef";

struct Api {
    _dir: tempfile::TempDir,
    store: ReadStore,
    router: Router,
}

/// What a request got back.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem of `status` and kind `slug`.
    fn assert_problem(&self, status: StatusCode, slug: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{:?}",
            self.body
        );
        assert_eq!(
            self.body["type"],
            format!("https://notesaga.dev/problems/{slug}"),
            "{:?}",
            self.body
        );
        assert_eq!(self.body["status"], status.as_u16());
    }
}

/// An API with `limits` on a SQLite read store, its broker a closed port.
async fn api(limits: Limits) -> Result<Api> {
    api_on(limits, None).await
}

/// The same on the read store at `database_url` (SQLite in a temporary directory if none).
async fn api_on(limits: Limits, database_url: Option<&str>) -> Result<Api> {
    let config = ApiConfig {
        body_limit: 4096,
        auth: AuthConfig::hs256(SECRET)?,
        limits,
        ..ApiConfig::default()
    };
    let offline = offline::offline(config, database_url).await?;
    Ok(Api {
        _dir: offline.dir,
        store: offline.store,
        router: router(offline.state),
    })
}

/// Runs an idempotency scenario (an `async fn(Api) -> Result<()>`) as two tests: on
/// SQLite, and on a throw-away database of the PostgreSQL server at
/// `NOTESAGA_TEST_POSTGRES_URL` (default 127.0.0.1:5432), since the key table's
/// compare-and-swap statements must hold on both.
macro_rules! on_sqlite_and_postgres {
    ($sqlite:ident, $postgres:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $sqlite() -> Result<()> {
            $scenario(api(Limits::default()).await?).await
        }

        #[tokio::test]
        async fn $postgres() -> Result<()> {
            let database = notesaga_testkit::PostgresDatabase::create().await?;
            // The API (and its pool) is dropped inside the scenario, before the database.
            $scenario(api_on(Limits::default(), Some(&database.url())).await?).await
        }
    };
}

fn token(sub: &str) -> Result<String> {
    Ok(Claims::new(sub, Duration::from_secs(3600)).mint_hs256(SECRET)?)
}

impl Api {
    async fn call(
        &self,
        sub: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Answer> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", token(sub)?));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(body.map_or_else(Body::empty, Body::from))?;
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        conform::assert_conforms(method, uri, status.as_u16(), &headers, &bytes);
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn fold(&self, events: Vec<NotesEvent>) -> Result<()> {
        let mut tx = self.store.pool().begin().await?;
        for (offset, event) in events.into_iter().enumerate() {
            notes::apply(
                &mut tx,
                &FlowEvent::Notes(event),
                Uuid::new_v4(),
                offset as i64,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reserves `key` of `owner` as the API would for a request with `fingerprint`.
    async fn reserve(&self, key: &str, fingerprint: &str) -> Result<Reservation> {
        Ok(self
            .store
            .reserve_idempotency_key(&KeyRequest {
                owner: ME.into(),
                key: key.into(),
                fingerprint: fingerprint.into(),
                command_id: Uuid::new_v4(),
                note_id: Uuid::new_v4(),
                now_ms: chrono::Utc::now().timestamp_millis(),
                retention_ms: 86_400_000,
                abandoned_after_ms: 60_000,
            })
            .await?)
    }
}

fn created(id: Uuid, owner: &str) -> NotesEvent {
    NotesEvent::NoteCreated(NoteCreated {
        note_id: id,
        owner: owner.into(),
        version: 1,
        title: "t".into(),
        body: "b".into(),
        occurred_at: 1_767_225_600_000,
    })
}

fn edited(id: Uuid, version: i64) -> NotesEvent {
    NotesEvent::NoteEdited(NoteEdited {
        note_id: id,
        owner: ME.into(),
        version,
        title: format!("t{version}"),
        body: "b".into(),
        occurred_at: 1_767_225_600_000 + version * 1000,
    })
}

const NOTE: &str = r#"{"title": "Krebs cycle", "body": "Citrate first."}"#;

on_sqlite_and_postgres!(
    the_same_request_while_the_first_is_in_flight_is_409,
    the_same_request_while_the_first_is_in_flight_is_409_on_postgres,
    the_same_request_while_the_first_is_in_flight_is_409_scenario
);

async fn the_same_request_while_the_first_is_in_flight_is_409_scenario(api: Api) -> Result<()> {
    // The first request reserves the key; the closed broker fails its send (503), which
    // marks the key abandoned (its command may be on the log: a retry re-sends it).
    let first = api
        .call(
            ME,
            "POST",
            "/v1/notes",
            &[("idempotency-key", "same")],
            Some(NOTE.into()),
        )
        .await?;
    first.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // As if the first request were still at work: its holder is live again.
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query("UPDATE idempotency_keys SET locked_at_ms = $1 WHERE idempotency_key = 'same'")
        .bind(now)
        .execute(api.store.pool())
        .await?;
    let second = api
        .call(
            ME,
            "POST",
            "/v1/notes",
            &[("idempotency-key", "same")],
            Some(NOTE.into()),
        )
        .await?;
    second.assert_problem(StatusCode::CONFLICT, "idempotency-key-in-flight");
    // Another body under the key is 422, in flight or not.
    let other = api
        .call(
            ME,
            "POST",
            "/v1/notes",
            &[("idempotency-key", "same")],
            Some(r#"{"title": "Other", "body": "other"}"#.into()),
        )
        .await?;
    other.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    // Keys are per user: bob's "same" is a key of his own (his send fails too: 503).
    let bob = api
        .call(
            "bob",
            "POST",
            "/v1/notes",
            &[("idempotency-key", "same")],
            Some(NOTE.into()),
        )
        .await?;
    bob.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // A holder older than the bound (twice the request timeout) is taken over: the
    // retry resumes the first request's command id and note id.
    let (command_id, note_id): (String, String) = sqlx::query_as(
        "SELECT command_id, note_id FROM idempotency_keys WHERE owner = 'ann' AND idempotency_key = 'same'",
    )
    .fetch_one(api.store.pool())
    .await?;
    sqlx::query("UPDATE idempotency_keys SET locked_at_ms = $1 WHERE owner = 'ann'")
        .bind(now - 61_000)
        .execute(api.store.pool())
        .await?;
    let fingerprint: String = sqlx::query_scalar(
        "SELECT fingerprint FROM idempotency_keys WHERE owner = 'ann' AND idempotency_key = 'same'",
    )
    .fetch_one(api.store.pool())
    .await?;
    let taken = api.reserve("same", &fingerprint).await?;
    assert_eq!(
        taken,
        Reservation::Reserved {
            command_id: Uuid::parse_str(&command_id)?,
            note_id: Uuid::parse_str(&note_id)?,
            resumed: true,
        }
    );
    Ok(())
}

on_sqlite_and_postgres!(
    a_finished_key_replays_its_response_and_refuses_another_body,
    a_finished_key_replays_its_response_and_refuses_another_body_on_postgres,
    a_finished_key_replays_its_response_and_refuses_another_body_scenario
);

async fn a_finished_key_replays_its_response_and_refuses_another_body_scenario(
    api: Api,
) -> Result<()> {
    let id = Uuid::new_v4();
    api.fold(vec![created(id, ME)]).await?;
    let path = format!("/v1/notes/{id}");
    let body = r#"{"title": "t2", "body": "b2"}"#;
    // Learn the fingerprint the API gives this request by letting it reserve the key;
    // the closed broker fails the send, which abandons the key (resumable at once).
    let failed = api
        .call(
            ME,
            "PUT",
            &path,
            &[("idempotency-key", "edit-1")],
            Some(body.into()),
        )
        .await?;
    failed.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let (fingerprint, command_id): (String, String) = sqlx::query_as(
        "SELECT fingerprint, command_id FROM idempotency_keys WHERE idempotency_key = 'edit-1'",
    )
    .fetch_one(api.store.pool())
    .await?;
    assert!(!fingerprint.is_empty());
    // As if a retry had got through: the key holds its response now.
    let command_id = Uuid::parse_str(&command_id)?;
    let stored = StoredResponse {
        status: 202,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("location".into(), format!("/v1/commands/{command_id}")),
        ],
        body: json!({"note_id": id, "command_id": command_id}).to_string(),
    };
    api.store
        .complete_idempotency_key(ME, "edit-1", command_id, &stored)
        .await?;
    // Same key, same request (keys reordered, other whitespace): the same response,
    // without sending (the broker is down, so a send would be a 503).
    let again = api
        .call(
            ME,
            "PUT",
            &path,
            &[("idempotency-key", "edit-1")],
            Some(r#"{"body":"b2","title":"t2"}"#.into()),
        )
        .await?;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);
    assert_eq!(again.body["command_id"], command_id.to_string());
    assert_eq!(
        again.header("location"),
        Some(format!("/v1/commands/{command_id}").as_str())
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Same key, another body, method or path: 422.
    let other_body = api
        .call(
            ME,
            "PUT",
            &path,
            &[("idempotency-key", "edit-1")],
            Some(r#"{"title": "t3", "body": "b3"}"#.into()),
        )
        .await?;
    other_body.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    let other_method = api
        .call(ME, "DELETE", &path, &[("idempotency-key", "edit-1")], None)
        .await?;
    other_method.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    // A bad key is a 400.
    let bad = api
        .call(
            ME,
            "PUT",
            &path,
            &[("idempotency-key", "")],
            Some(body.into()),
        )
        .await?;
    bad.assert_problem(StatusCode::BAD_REQUEST, "bad-idempotency-key");
    Ok(())
}

on_sqlite_and_postgres!(
    a_check_that_fails_frees_the_key,
    a_check_that_fails_frees_the_key_on_postgres,
    a_check_that_fails_frees_the_key_scenario
);

async fn a_check_that_fails_frees_the_key_scenario(api: Api) -> Result<()> {
    let missing = Uuid::new_v4();
    let path = format!("/v1/notes/{missing}");
    let answer = api
        .call(ME, "DELETE", &path, &[("idempotency-key", "d")], None)
        .await?;
    answer.assert_problem(StatusCode::NOT_FOUND, "note-not-found");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(api.store.pool())
        .await?;
    assert_eq!(rows, 0, "nothing was sent, so the key is free again");
    Ok(())
}

#[tokio::test]
async fn min_version_waits_for_the_projection() -> Result<()> {
    let api = api(Limits {
        max_wait: Duration::from_secs(10),
        ..Limits::default()
    })
    .await?;
    let id = Uuid::new_v4();
    api.fold(vec![created(id, ME)]).await?;
    let uri = format!("/v1/notes/{id}?min_version=2");
    // Version 2 arrives while the request waits.
    let waiting = {
        let router = api.router.clone();
        let token = token(ME)?;
        let uri = uri.clone();
        tokio::spawn(async move {
            let request = Request::get(&uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("a request");
            let response = router.oneshot(request).await.expect("infallible");
            let etag = response.headers().get("etag").cloned();
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            conform::assert_conforms("GET", &uri, status.as_u16(), &headers, &bytes);
            (
                status,
                etag,
                serde_json::from_slice::<Value>(&bytes).expect("json"),
            )
        })
    };
    api.fold(vec![edited(id, 2)]).await?;
    let (status, etag, body) = waiting.await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(etag.as_ref().and_then(|v| v.to_str().ok()), Some("\"2\""));
    // Already there: at once.
    let now = api
        .call(
            ME,
            "GET",
            &format!("/v1/notes/{id}?min_version=1"),
            &[],
            None,
        )
        .await?;
    assert_eq!(now.status, StatusCode::OK);
    assert_eq!(now.body["version"], 2);
    // Bad N: 400.
    for bad in ["0", "-1", "two", ""] {
        let answer = api
            .call(
                ME,
                "GET",
                &format!("/v1/notes/{id}?min_version={bad}"),
                &[],
                None,
            )
            .await?;
        answer.assert_problem(StatusCode::BAD_REQUEST, "bad-min-version");
    }
    Ok(())
}

#[tokio::test]
async fn min_version_not_reached_is_412_and_unseen_is_404() -> Result<()> {
    let api = api(Limits {
        max_wait: Duration::from_millis(300),
        ..Limits::default()
    })
    .await?;
    let mine = Uuid::new_v4();
    let theirs = Uuid::new_v4();
    api.fold(vec![created(mine, ME), created(theirs, "bob")])
        .await?;
    let behind = api
        .call(
            ME,
            "GET",
            &format!("/v1/notes/{mine}?min_version=5"),
            &[],
            None,
        )
        .await?;
    behind.assert_problem(StatusCode::PRECONDITION_FAILED, "min-version-not-reached");
    assert_eq!(behind.body["version"], 1);
    for unseen in [theirs, Uuid::new_v4()] {
        let answer = api
            .call(
                ME,
                "GET",
                &format!("/v1/notes/{unseen}?min_version=1"),
                &[],
                None,
            )
            .await?;
        answer.assert_problem(StatusCode::NOT_FOUND, "note-not-found");
    }
    Ok(())
}

#[tokio::test]
async fn bounds_answer_problems() -> Result<()> {
    let api = api(Limits {
        max_page_size: 10,
        ..Limits::default()
    })
    .await?;
    // Larger than the 4 KiB body limit: 413.
    let big = json!({"title": "t", "body": "x".repeat(5000)}).to_string();
    let answer = api.call(ME, "POST", "/v1/notes", &[], Some(big)).await?;
    answer.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    // Beyond the page size: 400, for every list.
    for uri in [
        "/v1/notes?limit=11",
        "/v1/search?q=x&limit=11",
        "/v1/sagas?limit=11",
    ] {
        let answer = api.call(ME, "GET", uri, &[], None).await?;
        answer.assert_problem(StatusCode::BAD_REQUEST, "bad-limit");
    }
    let answer = api.call(ME, "GET", "/v1/notes?limit=10", &[], None).await?;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    Ok(())
}

#[tokio::test]
async fn beyond_the_rate_limit_is_429_with_retry_after() -> Result<()> {
    let api = api(Limits {
        // A token every 100 s: however slow the machine, none comes back during the test.
        rate_limit: 0.01,
        rate_burst: 3,
        ..Limits::default()
    })
    .await?;
    for _ in 0..3 {
        let answer = api.call(ME, "GET", "/v1/notes", &[], None).await?;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    // The burst is spent: 429 with Retry-After, for
    // this user only.
    let answer = api.call(ME, "GET", "/v1/notes", &[], None).await?;
    answer.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    let retry_after: u64 = answer.header("retry-after").expect("Retry-After").parse()?;
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(answer.body["retry_after"], retry_after);
    let other = api.call("bob", "GET", "/v1/notes", &[], None).await?;
    assert_eq!(other.status, StatusCode::OK, "{:?}", other.body);
    Ok(())
}

#[tokio::test]
async fn a_request_past_the_timeout_is_503() -> Result<()> {
    // A wait longer than the timeout (the CLI refuses this; a test may set it) makes a
    // request that outlives the timeout.
    let api = api(Limits {
        request_timeout: Duration::from_millis(200),
        max_wait: Duration::from_secs(30),
        ..Limits::default()
    })
    .await?;
    let answer = api
        .call(
            ME,
            "GET",
            &format!("/v1/notes/{}?min_version=1", Uuid::new_v4()),
            &[],
            None,
        )
        .await?;
    answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "request-timeout");
    Ok(())
}

on_sqlite_and_postgres!(
    an_expired_key_is_new_again,
    an_expired_key_is_new_again_on_postgres,
    an_expired_key_is_new_again_scenario
);

async fn an_expired_key_is_new_again_scenario(api: Api) -> Result<()> {
    let request = |fingerprint: &str, now_ms: i64| KeyRequest {
        owner: ME.into(),
        key: "old".into(),
        fingerprint: fingerprint.into(),
        command_id: Uuid::new_v4(),
        note_id: Uuid::new_v4(),
        now_ms,
        retention_ms: 1000,
        abandoned_after_ms: 60_000,
    };
    let first = request("a", 10_000);
    assert!(matches!(
        api.store.reserve_idempotency_key(&first).await?,
        Reservation::Reserved { resumed: false, .. }
    ));
    // Within the retention another request is refused; after it, the key is free.
    let within = request("b", 10_500);
    assert_eq!(
        api.store.reserve_idempotency_key(&within).await?,
        Reservation::Mismatch
    );
    let after = request("b", 11_000);
    assert_eq!(
        api.store.reserve_idempotency_key(&after).await?,
        Reservation::Reserved {
            command_id: after.command_id,
            note_id: after.note_id,
            resumed: false,
        }
    );
    assert_eq!(api.store.purge_idempotency_keys(11_999).await?, 0);
    assert_eq!(api.store.purge_idempotency_keys(12_000).await?, 1);
    Ok(())
}
