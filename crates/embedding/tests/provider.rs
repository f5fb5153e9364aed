//! Provider faults through a local HTTP server speaking the OpenAI embeddings API:
//! retried 5xx, a 400 failing at once, `Retry-After` honoured, a hanging server timed out
//! within the budget, and the circuit breaker opening and recovering.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Json, Router};
use notesaga_embedding::{provider::Failed, OpenAiEmbedder, Provider, Resilient};
use notesaga_log::{breaker::BreakerConfig, RetryPolicy};

/// What the fake server does on one call.
#[derive(Debug, Clone)]
enum Behaviour {
    Answer,
    Status(u16, Option<u64>),
    Hang,
}

#[derive(Debug, Clone)]
struct Script {
    steps: Arc<Mutex<VecDeque<Behaviour>>>,
    /// What it does once the steps are used up.
    then: Arc<Mutex<Behaviour>>,
    calls: Arc<AtomicUsize>,
}

async fn embeddings(State(script): State<Script>) -> axum::response::Response {
    script.calls.fetch_add(1, Ordering::SeqCst);
    let step = script.steps.lock().unwrap().pop_front();
    let behaviour = step.unwrap_or_else(|| script.then.lock().unwrap().clone());
    match behaviour {
        Behaviour::Answer => Json(serde_json::json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
            "model": "fake"
        }))
        .into_response(),
        Behaviour::Status(code, retry_after) => {
            notesaga_testkit::scripted_status(code, retry_after, "{\"error\":\"scripted\"}")
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

async fn server(steps: Vec<Behaviour>, then: Behaviour) -> (String, Script) {
    let script = Script {
        steps: Arc::new(Mutex::new(steps.into())),
        then: Arc::new(Mutex::new(then)),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, script)
}

fn resilient(url: &str, attempts: u32, timeout: Duration, breaker: BreakerConfig) -> Resilient {
    let provider = Provider::OpenAi(OpenAiEmbedder::new(
        url,
        "fake",
        Some("sk-test".into()),
        timeout,
    ));
    let retry = RetryPolicy {
        initial_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(50),
        max_attempts: attempts,
        max_elapsed: Duration::from_secs(30),
        ..RetryPolicy::default()
    };
    Resilient::new(provider, retry, breaker, 2)
}

fn lenient_breaker() -> BreakerConfig {
    BreakerConfig {
        window: 100,
        min_calls: 100,
        ..BreakerConfig::default()
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (url, script) = server(
        vec![Behaviour::Status(500, None), Behaviour::Status(503, None)],
        Behaviour::Answer,
    )
    .await;
    let embedder = resilient(&url, 5, Duration::from_secs(5), lenient_breaker());
    assert_eq!(embedder.embed("text").await, Ok(vec![0.6, 0.8]));
    assert_eq!(script.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_bad_request_fails_at_once_and_is_not_retryable() {
    let (url, script) = server(vec![], Behaviour::Status(400, None)).await;
    let embedder = resilient(&url, 5, Duration::from_secs(5), lenient_breaker());
    let failed = embedder.embed("text").await.unwrap_err();
    assert!(!failed.retryable, "{failed:?}");
    assert!(failed.reason.contains("400"), "{failed:?}");
    assert_eq!(script.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (url, script) = server(vec![Behaviour::Status(429, Some(1))], Behaviour::Answer).await;
    let embedder = resilient(&url, 3, Duration::from_secs(5), lenient_breaker());
    let started = Instant::now();
    assert!(embedder.embed("text").await.is_ok());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
    assert_eq!(script.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_fails_after_the_budget() {
    let (url, script) = server(vec![], Behaviour::Hang).await;
    let embedder = resilient(&url, 3, Duration::from_millis(200), lenient_breaker());
    let failed: Failed = embedder.embed("text").await.unwrap_err();
    assert!(failed.retryable, "a timeout may pass: {failed:?}");
    assert!(failed.reason.contains("timed out"), "{failed:?}");
    assert_eq!(script.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers() {
    let (url, script) = server(vec![], Behaviour::Status(500, None)).await;
    let breaker = BreakerConfig {
        window: 4,
        min_calls: 4,
        failure_ratio: 0.5,
        open_for: Duration::from_millis(500),
    };
    let embedder = resilient(&url, 1, Duration::from_secs(5), breaker);
    for _ in 0..4 {
        assert!(embedder.embed("text").await.is_err());
    }
    assert_eq!(script.calls.load(Ordering::SeqCst), 4);
    let failed = embedder.embed("text").await.unwrap_err();
    assert!(failed.reason.contains("circuit open"), "{failed:?}");
    assert!(failed.retryable);
    assert_eq!(
        script.calls.load(Ordering::SeqCst),
        4,
        "an open breaker does not call the provider"
    );

    *script.then.lock().unwrap() = Behaviour::Answer;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        embedder.embed("text").await.is_ok(),
        "the probe succeeds and closes it"
    );
    assert!(embedder.embed("text").await.is_ok());
    assert_eq!(script.calls.load(Ordering::SeqCst), 6);
}
