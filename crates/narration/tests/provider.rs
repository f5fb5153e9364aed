//! The OpenAI-compatible speech provider against a local HTTP server speaking
//! `POST /v1/audio/speech` and answering real WAV bytes: retried 5xx, a 400 failing at
//! once, `Retry-After` honoured, a hanging server timed out within the budget, the
//! circuit breaker opening and recovering, and a long text spoken chunk by chunk into
//! one valid WAV file.

use std::{
    collections::VecDeque,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
    Json, Router,
};
use notesaga_events::narration::{NarrateNote, NarrationEvent};
use notesaga_log::{breaker::BreakerConfig, provider::Failed, RetryPolicy};
use notesaga_narration::{
    chunks,
    speech::CHUNK_BYTES,
    wav::{self, WavInfo, PCM},
    ChunkTimeout, FsBlobStore, Narrations, Narrator, OpenAiSpeech, RenderBudget, SpeechEngine,
};

/// Samples the fake server speaks per character of input (10 ms at 24 kHz).
const SAMPLES_PER_CHAR: usize = 240;
const RATE: u32 = 24_000;

/// What the fake server does on one call.
#[derive(Debug, Clone)]
enum Behaviour {
    /// Speak: a mono 16-bit WAV at this sample rate, 10 ms per character at 24 kHz.
    Speak(u32),
    /// Answer this status, with a `Retry-After` of so many seconds.
    Status(u16, Option<u64>),
    /// Answer 200 with bytes that are not WAV.
    NotWav,
    /// Never answer.
    Hang,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: serde_json::Value,
    authorization: Option<String>,
    /// The audio bytes answered, if it spoke.
    pcm: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Script {
    steps: Arc<Mutex<VecDeque<Behaviour>>>,
    /// What it does once the steps are used up.
    then: Arc<Mutex<Behaviour>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Script {
    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A WAV file holding `pcm`. Every other answer is written the way streaming servers
/// write it (OpenAI's among them): with 0xFFFFFFFF where the sizes go.
fn wav_bytes(sample_rate: u32, pcm: &[u8], streamed: bool) -> Vec<u8> {
    let info = WavInfo {
        encoding: PCM,
        sample_rate,
        channels: 1,
        bits_per_sample: 16,
        data_bytes: 0,
    };
    let mut bytes = wav::pcm_header(&info, pcm.len() as u64).to_vec();
    if streamed {
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    }
    bytes.extend_from_slice(pcm);
    bytes
}

async fn speech(
    State(script): State<Script>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> axum::response::Response {
    let step = script.steps.lock().unwrap().pop_front();
    let behaviour = step.unwrap_or_else(|| script.then.lock().unwrap().clone());
    let index = script.calls();
    let mut seen = Seen {
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        body,
        pcm: None,
    };
    let response = match behaviour {
        Behaviour::Speak(rate) => {
            let chars = seen.body["input"].as_str().unwrap_or("").chars().count();
            // Each answer's samples carry its index, so the joined file shows the order.
            let sample = (index as u16 + 1).to_le_bytes();
            let pcm: Vec<u8> = std::iter::repeat_n(sample, chars * SAMPLES_PER_CHAR)
                .flatten()
                .collect();
            let bytes = wav_bytes(rate, &pcm, index % 2 == 1);
            seen.pcm = Some(pcm);
            ([("content-type", "audio/wav")], bytes).into_response()
        }
        Behaviour::Status(code, retry_after) => notesaga_testkit::scripted_status(
            code,
            retry_after,
            "{\"error\":{\"message\":\"scripted\"}}",
        ),
        Behaviour::NotWav => (StatusCode::OK, b"ID3\x04 an mp3, say".to_vec()).into_response(),
        Behaviour::Hang => {
            script.seen.lock().unwrap().push(seen);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK.into_response();
        }
    };
    script.seen.lock().unwrap().push(seen);
    response
}

async fn server(steps: Vec<Behaviour>, then: Behaviour) -> (String, Script) {
    let script = Script {
        steps: Arc::new(Mutex::new(steps.into())),
        then: Arc::new(Mutex::new(then)),
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let app = Router::new()
        .route("/v1/audio/speech", post(speech))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, script)
}

/// A narrator of the fake server; the retry budget is `retry.max_elapsed` for any text.
fn narrator(url: &str, retry: RetryPolicy, timeout: Duration, breaker: BreakerConfig) -> Narrator {
    let engine = OpenAiSpeech::new(
        // A trailing slash, as people write base URLs, must not double the path's.
        &format!("{url}/"),
        "tts-1",
        "alloy",
        Some("sk-test".into()),
        ChunkTimeout {
            base: timeout,
            per_char: Duration::ZERO,
        },
    );
    let budget = RenderBudget {
        base: retry.max_elapsed,
        per_kb: Duration::ZERO,
    };
    Narrator::new(SpeechEngine::OpenAi(engine), retry, budget, breaker, 2)
}

fn attempts(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(50),
        max_attempts,
        max_elapsed: Duration::from_secs(30),
        ..RetryPolicy::default()
    }
}

fn lenient_breaker() -> BreakerConfig {
    BreakerConfig {
        window: 100,
        min_calls: 100,
        ..BreakerConfig::default()
    }
}

/// Every file under `root`.
fn files(root: &Path) -> Vec<std::path::PathBuf> {
    notesaga_testkit::files_under(root)
}

fn read_wav(path: &Path) -> (WavInfo, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let chunk = wav::data_chunk(&bytes, bytes.len() as u64).unwrap();
    let start = chunk.offset as usize;
    (
        chunk.info,
        bytes[start..start + chunk.info.data_bytes as usize].to_vec(),
    )
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (url, script) = server(
        vec![Behaviour::Status(500, None), Behaviour::Status(503, None)],
        Behaviour::Speak(RATE),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.wav");
    let narrator = narrator(&url, attempts(5), Duration::from_secs(5), lenient_breaker());
    let info = narrator.render("Mitochondria.", &out).await.unwrap();
    assert_eq!(script.calls(), 3);
    assert_eq!(info.duration_ms(), 13 * 10, "10 ms per character");
    assert_eq!(read_wav(&out).0, info);
}

#[tokio::test]
async fn a_bad_request_fails_at_once_and_is_not_retryable() {
    let (url, script) = server(vec![], Behaviour::Status(400, None)).await;
    let dir = tempfile::tempdir().unwrap();
    let narrations = Narrations::new(
        narrator(&url, attempts(5), Duration::from_secs(5), lenient_breaker()),
        FsBlobStore::new(dir.path()),
    );
    let reply = narrations
        .narrate(&NarrateNote {
            note_id: uuid::Uuid::from_u128(1),
            version: 1,
            text: "Mitochondria.".into(),
        })
        .await
        .unwrap();
    let NarrationEvent::NarrationFailed(failed) = reply else {
        panic!("{reply:?}")
    };
    assert!(!failed.retryable, "{failed:?}");
    assert!(failed.reason.contains("400"), "{failed:?}");
    assert!(
        failed.reason.contains("scripted"),
        "the server's own words: {failed:?}"
    );
    assert_eq!(script.calls(), 1);
    assert!(files(dir.path()).is_empty(), "no audio, no staging file");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (url, script) = server(
        vec![Behaviour::Status(429, Some(1))],
        Behaviour::Speak(RATE),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let narrator = narrator(&url, attempts(3), Duration::from_secs(5), lenient_breaker());
    let started = Instant::now();
    narrator
        .render("Mitochondria.", &dir.path().join("a.wav"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
    assert_eq!(script.calls(), 2);
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_fails_after_the_budget() {
    let (url, script) = server(vec![], Behaviour::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(800);
    // Attempts to spare: the time budget is what ends it.
    let retry = RetryPolicy {
        max_elapsed: Duration::from_secs(1),
        ..attempts(100)
    };
    let narrator = narrator(&url, retry, timeout, lenient_breaker());
    let started = Instant::now();
    let failed: Failed = narrator
        .render("Mitochondria.", &dir.path().join("a.wav"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(failed.retryable, "a timeout may pass: {failed:?}");
    assert!(failed.reason.contains("timed out"), "{failed:?}");
    assert_eq!(
        script.calls(),
        2,
        "a first attempt, then a retry cut off by the budget"
    );
    // The retry does not get a whole timeout of its own (that would end at 1.6 s).
    assert!(
        (Duration::from_secs(1)..Duration::from_millis(1_300)).contains(&took),
        "took {took:?}"
    );
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers() {
    let (url, script) = server(vec![], Behaviour::Status(500, None)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.wav");
    let breaker = BreakerConfig {
        window: 4,
        min_calls: 4,
        failure_ratio: 0.5,
        open_for: Duration::from_millis(500),
    };
    let narrator = narrator(&url, attempts(1), Duration::from_secs(5), breaker);
    for _ in 0..4 {
        assert!(narrator.render("Cells.", &out).await.is_err());
    }
    assert_eq!(script.calls(), 4);
    let failed = narrator.render("Cells.", &out).await.unwrap_err();
    assert!(failed.reason.contains("circuit open"), "{failed:?}");
    assert!(failed.retryable);
    assert_eq!(
        script.calls(),
        4,
        "an open breaker does not call the provider"
    );

    *script.then.lock().unwrap() = Behaviour::Speak(RATE);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        narrator.render("Cells.", &out).await.is_ok(),
        "the probe succeeds and closes it"
    );
    assert!(narrator.render("Cells.", &out).await.is_ok());
    assert_eq!(script.calls(), 6);
}

#[tokio::test]
async fn a_long_text_becomes_one_wav_as_long_as_its_chunks() {
    // A 500 on the third chunk: only that chunk is asked for again.
    let (url, script) = server(
        vec![
            Behaviour::Speak(RATE),
            Behaviour::Speak(RATE),
            Behaviour::Status(502, None),
        ],
        Behaviour::Speak(RATE),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let narrations = Narrations::new(
        narrator(&url, attempts(3), Duration::from_secs(5), lenient_breaker()),
        FsBlobStore::new(dir.path()),
    );
    let text = "The cell is the unit of life. Membranes keep it whole! ".repeat(120);
    let expected_chunks = chunks::split(&text, CHUNK_BYTES);
    assert!(
        expected_chunks.len() >= 3,
        "{} chunks",
        expected_chunks.len()
    );

    let reply = narrations
        .narrate(&NarrateNote {
            note_id: uuid::Uuid::from_u128(9),
            version: 2,
            text: text.clone(),
        })
        .await
        .unwrap();
    let NarrationEvent::NarrationCompleted(done) = reply else {
        panic!("{reply:?}")
    };

    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), expected_chunks.len() + 1, "one retry");
    for request in &seen {
        assert_eq!(request.body["model"], "tts-1");
        assert_eq!(request.body["voice"], "alloy");
        assert_eq!(request.body["response_format"], "wav");
        assert_eq!(request.authorization.as_deref(), Some("Bearer sk-test"));
    }
    let spoken: Vec<&Seen> = seen.iter().filter(|s| s.pcm.is_some()).collect();
    let inputs: Vec<&str> = spoken
        .iter()
        .map(|s| s.body["input"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, expected_chunks, "each chunk spoken once, in order");

    let path = dir.path().join(&done.audio_key);
    let (info, audio) = read_wav(&path);
    let answered: Vec<u8> = spoken.iter().flat_map(|s| s.pcm.clone().unwrap()).collect();
    assert_eq!(
        audio, answered,
        "the file holds every chunk's audio, in order"
    );
    let chars: usize = expected_chunks.iter().map(|c| c.chars().count()).sum();
    assert_eq!(info.duration_ms(), chars as u64 * 10);
    assert_eq!(done.duration_ms, chars as i64 * 10, "the sum of the chunks");
    assert_eq!(done.size_bytes, 44 + audio.len() as i64);
    assert_eq!(files(dir.path()), vec![path], "no staging file left");
}

#[tokio::test]
async fn chunks_of_different_formats_fail_for_good() {
    let (url, script) = server(
        vec![Behaviour::Speak(24_000), Behaviour::Speak(22_050)],
        Behaviour::Speak(24_000),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let narrations = Narrations::new(
        narrator(&url, attempts(5), Duration::from_secs(5), lenient_breaker()),
        FsBlobStore::new(dir.path()),
    );
    let reply = narrations
        .narrate(&NarrateNote {
            note_id: uuid::Uuid::from_u128(9),
            version: 1,
            text: "The cell is the unit of life. ".repeat(100),
        })
        .await
        .unwrap();
    let NarrationEvent::NarrationFailed(failed) = reply else {
        panic!("{reply:?}")
    };
    assert!(!failed.retryable, "{failed:?}");
    assert!(failed.reason.contains("format changed"), "{failed:?}");
    assert!(failed.reason.contains("chunk 2 of"), "{failed:?}");
    assert_eq!(script.calls(), 2, "not asked again");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[tokio::test]
async fn an_answer_that_is_not_wav_fails_for_good() {
    let (url, script) = server(vec![], Behaviour::NotWav).await;
    let dir = tempfile::tempdir().unwrap();
    let narrator = narrator(&url, attempts(5), Duration::from_secs(5), lenient_breaker());
    let failed = narrator
        .render("Cells.", &dir.path().join("a.wav"))
        .await
        .unwrap_err();
    assert!(!failed.retryable, "{failed:?}");
    assert!(failed.reason.contains("no WAV"), "{failed:?}");
    assert_eq!(script.calls(), 1);
}

#[tokio::test]
async fn an_unreachable_provider_is_retryable() {
    // A port that was free a moment ago: nothing listens there.
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let narrator = narrator(&url, attempts(2), Duration::from_secs(5), lenient_breaker());
    let failed = narrator
        .render("Cells.", &dir.path().join("a.wav"))
        .await
        .unwrap_err();
    assert!(failed.retryable, "{failed:?}");
    assert!(failed.reason.contains("unreachable"), "{failed:?}");
    assert!(failed.reason.contains("attempt 2"), "{failed:?}");
}
