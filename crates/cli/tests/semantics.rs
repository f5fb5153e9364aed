//! Retries and read-your-writes on a real single node (`notesaga dev`): a command sent
//! twice with one `Idempotency-Key` is one command on the log with one answer; another
//! body under the key is refused; `Prefer: wait` answers the command's outcome (201, 200,
//! 412, 404) and `?min_version` reads the version just written.

use std::time::Duration;

use anyhow::{Context as _, Result};
use notesaga_testkit::{http, http_as, read_topic, SingleNode};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Long enough for the first command of a fresh node (consumer groups joining, schemas
/// registered) on a busy machine; the node allows it (see [`start`]).
const WAIT_SECONDS: u64 = 60;

/// A node whose API lets a request wait [`WAIT_SECONDS`].
async fn start(dir: &std::path::Path) -> Result<SingleNode> {
    // The node inherits this process's environment; every test here wants the same.
    std::env::set_var("NOTESAGA_MAX_WAIT", format!("{WAIT_SECONDS}s"));
    std::env::set_var("NOTESAGA_REQUEST_TIMEOUT", format!("{}s", WAIT_SECONDS * 2));
    SingleNode::start(dir).await
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

async fn call(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Answer> {
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
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

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_commands_and_waited_outcomes() -> Result<()> {
    let data = tempfile::tempdir()?;
    let mut node = start(data.path()).await?;
    let base = node.http_url();
    let me = http();
    let wait = format!("wait={WAIT_SECONDS}");
    let note = json!({"title": "Krebs cycle", "body": "Citrate is formed first."});

    // Create, waited for, under a key: 201 once the notes processor applied it.
    let create = |key: &'static str, body: Value| {
        let (me, base, wait) = (me.clone(), base.clone(), wait.clone());
        async move {
            call(
                &me,
                Method::POST,
                &format!("{base}/v1/notes"),
                &[("idempotency-key", key), ("prefer", &wait)],
                Some(body),
            )
            .await
        }
    };
    let first = create("create-1", note.clone()).await?;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.header("preference-applied"), Some(wait.as_str()));
    assert_eq!(first.header("etag"), Some("\"1\""));
    assert_eq!(first.body["status"], "applied");
    let id = first.body["note_id"]
        .as_str()
        .context("note_id")?
        .to_owned();
    let command_id = first.body["command_id"]
        .as_str()
        .context("command_id")?
        .to_owned();
    assert_eq!(
        first.header("location"),
        Some(format!("/v1/notes/{id}").as_str())
    );

    // The same request again: the same answer, nothing sent.
    let again = create("create-1", note.clone()).await?;
    assert_eq!(again.status, StatusCode::CREATED, "{again:?}");
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Another body under the key: 422.
    let other = create("create-1", json!({"title": "Other", "body": "Other."})).await?;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "{other:?}");
    assert!(
        other.problem_type().ends_with("/idempotency-key-reused"),
        "{other:?}"
    );
    // One command on the log for the key.
    let sent = read_topic(&node.kafka_addr, "notes.commands")?
        .into_iter()
        .filter(|record| record.header("command_id") == Some(command_id.as_str()))
        .count();
    assert_eq!(sent, 1, "records of command {command_id} on notes.commands");

    let note_url = format!("{base}/v1/notes/{id}");
    let edit = json!({"title": "Krebs cycle", "body": "Citrate, then isocitrate."});
    // A stale If-Match, waited for: the aggregate's version_conflict as 412.
    let stale = call(
        &me,
        Method::PUT,
        &note_url,
        &[("if-match", "\"7\""), ("prefer", &wait)],
        Some(edit.clone()),
    )
    .await?;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{stale:?}");
    assert!(
        stale.problem_type().ends_with("/version-conflict"),
        "{stale:?}"
    );
    assert_eq!(stale.body["rejection"]["code"], "version_conflict");
    // The right one: 200 with the new version.
    let edited = call(
        &me,
        Method::PUT,
        &note_url,
        &[("if-match", "\"1\""), ("prefer", &wait)],
        Some(edit.clone()),
    )
    .await?;
    assert_eq!(edited.status, StatusCode::OK, "{edited:?}");
    assert_eq!(edited.header("etag"), Some("\"2\""));
    assert_eq!(edited.body["version"], 2);
    // Read-your-writes: the projection may lag the outcome; min_version waits for it.
    let read = call(
        &me,
        Method::GET,
        &format!("{note_url}?min_version=2"),
        &[],
        None,
    )
    .await?;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.body["version"], 2);
    assert_eq!(read.body["body"], "Citrate, then isocitrate.");

    // Another user's note and a missing one: 404 alike.
    let bob = http_as("bob", false);
    let theirs = call(
        &bob,
        Method::PUT,
        &note_url,
        &[("prefer", &wait)],
        Some(edit.clone()),
    )
    .await?;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs:?}");
    let missing = call(
        &me,
        Method::PUT,
        &format!("{base}/v1/notes/{}", uuid::Uuid::new_v4()),
        &[("prefer", &wait)],
        Some(edit),
    )
    .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");

    // Delete, waited for: 200; then the note is gone.
    let deleted = call(&me, Method::DELETE, &note_url, &[("prefer", &wait)], None).await?;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    // The outcome can come before the projection has the deletion: poll for it.
    let mut gone = call(&me, Method::GET, &note_url, &[], None).await?;
    for _ in 0..600 {
        if gone.status != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        gone = call(&me, Method::GET, &note_url, &[], None).await?;
    }
    assert_eq!(gone.status, StatusCode::GONE, "{gone:?}");

    node.stop()?;
    Ok(())
}
