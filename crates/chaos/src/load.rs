//! The seeded load: several users, each a client that creates, edits and deletes its
//! own notes one request after another, and records every request with what it got —
//! an answer, a time-out or a failure — in its real-time order. Some requests carry an
//! `Idempotency-Key` and are retried, with the same key and body, when they time out or
//! fail; the others are sent once.
//!
//! Every create and edit carries a marker in its title (`c<client>-<seq>`), unique in
//! the run, so the checker finds the commands a request produced on the raw log,
//! whether or not the client ever heard back.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::rng::Rng;

/// How long a client waits for one answer before it calls the request timed out.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// Attempts of a keyed request (the first and its retries).
const KEYED_ATTEMPTS: u32 = 4;

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Create,
    Edit,
    Delete,
}

/// One attempt of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The API answered this status.
    Answered(u16),
    /// No answer in time: it may or may not have been sent.
    TimedOut,
    /// The connection failed before anything was sent (refused).
    NotSent,
    /// The connection broke after the request was sent.
    Broken,
}

/// What the client concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx with a command id: the API acknowledged the command.
    Acked { command_id: Uuid },
    /// An answer that says nothing was accepted (4xx), or nothing was sent.
    Refused(u16),
    /// Timed out, broken or 503 on the last attempt: at most once.
    Unknown,
}

/// One request of a client, with its retries.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub(crate) client: usize,
    /// Its place in the client's real-time order.
    pub(crate) seq: u64,
    pub(crate) kind: OpKind,
    /// The note (for a create: the one the answer named, if any).
    pub(crate) note: Option<Uuid>,
    /// `c<client>-<seq>`: the title of a create or edit.
    pub(crate) marker: String,
    pub(crate) key: Option<String>,
    pub(crate) attempts: Vec<Attempt>,
    pub(crate) outcome: Outcome,
}

/// The user a client acts as.
pub(crate) fn user(client: usize) -> String {
    format!("chaos-{client}")
}

/// Runs client `client` against `base` until `stop`; returns its history.
pub(crate) async fn client(
    seed: u64,
    client: usize,
    base: String,
    stop: Arc<AtomicBool>,
) -> Vec<Op> {
    let mut rng = Rng::fork(seed, client as u64);
    let http = http_client(&user(client));
    let mut live: Vec<Uuid> = Vec::new();
    let mut history = Vec::new();
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let marker = format!("c{client}-{seq}");
        let kind = match (live.is_empty(), rng.range(0, 100)) {
            (true, _) | (_, 0..=29) => OpKind::Create,
            (false, 30..=84) => OpKind::Edit,
            _ => OpKind::Delete,
        };
        let note = match kind {
            OpKind::Create => None,
            _ => Some(live[rng.range(0, live.len() as u64) as usize]),
        };
        let key = rng.chance(50).then(|| format!("chaos-{seed}-{marker}"));
        let body = json!({
            "title": marker,
            "body": format!("Chaos run {seed}, client {client}, request {seq}: {}.", words(&mut rng)),
        });
        let (method, path, body) = match kind {
            OpKind::Create => (Method::POST, "/v1/notes".to_owned(), Some(body)),
            OpKind::Edit => (
                Method::PUT,
                format!("/v1/notes/{}", note.unwrap_or_default()),
                Some(body),
            ),
            OpKind::Delete => (
                Method::DELETE,
                format!("/v1/notes/{}", note.unwrap_or_default()),
                None,
            ),
        };
        let mut op = Op {
            client,
            seq,
            kind,
            note,
            marker,
            key: key.clone(),
            attempts: Vec::new(),
            outcome: Outcome::Unknown,
        };
        let attempts = if key.is_some() { KEYED_ATTEMPTS } else { 1 };
        // Whether some attempt may have reached the API without an answer.
        let mut maybe_sent = false;
        let mut refused = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt.min(4))).await;
            }
            let (tried, answer) =
                send(&http, method.clone(), &base, &path, key.as_deref(), &body).await;
            op.attempts.push(tried.clone());
            match (tried, answer) {
                (Attempt::Answered(status), Some(answer)) if (200..300).contains(&status) => {
                    if let (OpKind::Create, Some(id)) = (kind, answer["note_id"].as_str()) {
                        op.note = id.parse().ok();
                    }
                    if let Some(command_id) =
                        answer["command_id"].as_str().and_then(|id| id.parse().ok())
                    {
                        op.outcome = Outcome::Acked { command_id };
                    }
                    break;
                }
                // Accepted, but the answer broke off: it may be on the log.
                (Attempt::Answered(200..=299), None) => maybe_sent = true,
                // In flight under this key, unavailable (maybe sent), throttled: again.
                (Attempt::Answered(409 | 503), _) => maybe_sent = true,
                (Attempt::Answered(429), _) => {}
                (Attempt::Answered(status), _) => {
                    refused = Some(status);
                    break;
                }
                (Attempt::NotSent, _) => {}
                (Attempt::TimedOut | Attempt::Broken, _) => maybe_sent = true,
            }
        }
        if !matches!(op.outcome, Outcome::Acked { .. }) && !maybe_sent {
            op.outcome = Outcome::Refused(refused.unwrap_or(0));
        }
        match (&op.kind, &op.outcome) {
            (OpKind::Create, Outcome::Acked { .. }) => live.extend(op.note),
            // A note the client deleted, or may have, is not used again; nor one the
            // API says is missing or gone.
            (OpKind::Delete, Outcome::Acked { .. } | Outcome::Unknown)
            | (_, Outcome::Refused(404 | 410)) => live.retain(|n| Some(*n) != op.note),
            _ => {}
        }
        history.push(op);
        // Think time: a person editing notes, not a benchmark.
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1500))).await;
    }
    history
}

/// A few words, so bodies differ.
fn words(rng: &mut Rng) -> String {
    const WORDS: [&str; 12] = [
        "mitochondria",
        "osmosis",
        "entropy",
        "photosynthesis",
        "derivative",
        "integral",
        "vector",
        "enzyme",
        "catalyst",
        "tectonics",
        "allele",
        "isotope",
    ];
    (0..rng.range(3, 12))
        .map(|_| WORDS[rng.range(0, WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn http_client(sub: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", notesaga_testkit::token(sub, false))
            .parse()
            .expect("a JWT is a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client builds")
}

async fn send(
    http: &reqwest::Client,
    method: Method,
    base: &str,
    path: &str,
    key: Option<&str>,
    body: &Option<Value>,
) -> (Attempt, Option<Value>) {
    let mut request = http.request(method, format!("{base}{path}"));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let body = response.json::<Value>().await.ok();
            (Attempt::Answered(status.as_u16()), body)
        }
        Err(err) if err.is_timeout() => (Attempt::TimedOut, None),
        Err(err) if err.is_connect() => (Attempt::NotSent, None),
        Err(_) => (Attempt::Broken, None),
    }
}
