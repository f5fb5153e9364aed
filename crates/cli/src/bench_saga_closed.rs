//! `notesaga bench saga --concurrency C[,C…]`: the closed loop. C clients each post a
//! note through `POST /v1/notes` and wait for that note's `NotePublished` (read from
//! `notes.events` by one tail consumer) before posting the next. Per level: sagas
//! completed per second and the post→published latency (p50, p99), then one table.
//!
//! A closed loop measures what the system sustains at a given number of users in
//! flight; the open loop (`--rate`) measures latency at a chosen arrival rate.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::saga::{
    bench_token, body, events_tail, flow_watermarks, ms, outcome_of, percentile, sorted,
    wait_for_api,
};
use crate::args::BenchSagaArgs;

/// How long one note may take before the client counts it lost and goes on.
const NOTE_TIMEOUT: Duration = Duration::from_secs(60);

/// Outcomes by note: waiters registered after their 202, and outcomes that arrived
/// before their note's 202 did.
#[derive(Default)]
struct Outcomes {
    waiting: HashMap<Uuid, oneshot::Sender<(bool, Instant)>>,
    early: HashMap<Uuid, (bool, Instant)>,
}

/// One level's figures.
#[derive(Debug)]
struct Row {
    concurrency: usize,
    completed: usize,
    failed: usize,
    lost: usize,
    refused: usize,
    per_sec: f64,
    latencies: Vec<Duration>,
    /// POST → 202 of each accepted note: the part of the latency spent before the
    /// command is on the log (the rest is the saga and the tail's read of its outcome).
    posts: Vec<Duration>,
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    body_size: usize,
}

impl Client {
    async fn post(&self, seed: u64) -> Result<Uuid> {
        let payload = serde_json::json!({
            "title": format!("Bench note {seed}"),
            "body": body(seed, self.body_size),
        });
        let mut request = self.http.post(&self.url).json(&payload);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("401: the API wants a token: pass --data-dir of the node (a token is minted with its secret) or --token");
        }
        if status != reqwest::StatusCode::ACCEPTED {
            bail!("{status}: {}", response.text().await.unwrap_or_default());
        }
        let json: serde_json::Value = response.json().await?;
        let id = json["note_id"].as_str().context("no note_id in the 202")?;
        Ok(Uuid::parse_str(id)?)
    }
}

/// What one note did: published or failed with its latency, or lost / refused.
enum NoteResult {
    Done {
        published: bool,
        latency: Duration,
        /// POST → 202, where the call returns before the saga is done (not Restate's).
        post: Option<Duration>,
    },
    Lost,
    Refused(String),
}

async fn one_note(client: &Client, outcomes: &Mutex<Outcomes>, seed: u64) -> NoteResult {
    let sent = Instant::now();
    let note = match client.post(seed).await {
        Ok(note) => note,
        Err(err) => return NoteResult::Refused(format!("{err:#}")),
    };
    let post = sent.elapsed();
    let (tx, rx) = oneshot::channel();
    let early = {
        let mut outcomes = outcomes.lock().expect("not poisoned");
        match outcomes.early.remove(&note) {
            Some(done) => Some(done),
            None => {
                outcomes.waiting.insert(note, tx);
                None
            }
        }
    };
    let done = match early {
        Some(done) => Some(done),
        None => tokio::time::timeout(NOTE_TIMEOUT, rx)
            .await
            .ok()
            .and_then(Result::ok),
    };
    match done {
        Some((published, at)) => NoteResult::Done {
            published,
            latency: at.saturating_duration_since(sent),
            post: Some(post),
        },
        None => NoteResult::Lost,
    }
}

async fn level(
    args: &BenchSagaArgs,
    client: Arc<Client>,
    concurrency: usize,
    seed: u64,
) -> Result<Row> {
    let kafka = args.connection.kafka();
    let marks = flow_watermarks(&kafka).await?;
    let tail = events_tail(&kafka, &marks)?;
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let reader = {
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            loop {
                match tail.recv().await {
                    Ok(message) => {
                        let at = Instant::now();
                        if let Some((note, published)) = outcome_of(&message) {
                            let mut outcomes = outcomes.lock().expect("not poisoned");
                            match outcomes.waiting.remove(&note) {
                                Some(tx) => _ = tx.send((published, at)),
                                None => _ = outcomes.early.insert(note, (published, at)),
                            }
                        }
                    }
                    Err(err) => tracing::warn!(%err, "reading notes.events"),
                }
            }
        })
    };

    let note = {
        let client = client.clone();
        move |seed: u64| {
            let (client, outcomes) = (client.clone(), outcomes.clone());
            async move { one_note(&client, &outcomes, seed).await }
        }
    };
    let row = closed_loop(concurrency, Duration::from_secs(args.seconds), seed, note).await;
    reader.abort();
    row
}

/// Runs `concurrency` clients, each calling `note` (with a seed of its own) again and
/// again for `length`, after one warm-up call each that is not counted.
async fn closed_loop<F, Fut>(
    concurrency: usize,
    length: Duration,
    seed: u64,
    note: F,
) -> Result<Row>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = NoteResult> + Send + 'static,
{
    // Warm-up: each client's first note is not counted (connections, caches).
    let warm: Vec<_> = (0..concurrency)
        .map(|i| tokio::spawn(note.clone()(seed + i as u64)))
        .collect();
    for task in warm {
        if let NoteResult::Refused(why) = task.await? {
            bail!("the warm-up was refused: {why}");
        }
    }

    let start = Instant::now();
    let end = start + length;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let note = note.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                let mut n = 0u64;
                while Instant::now() < end {
                    let seed = seed + 1_000_000 * (worker as u64 + 1) + n;
                    n += 1;
                    let result = note(seed).await;
                    results.push((Instant::now(), result));
                }
                results
            })
        })
        .collect();
    let mut row = Row {
        concurrency,
        completed: 0,
        failed: 0,
        lost: 0,
        refused: 0,
        per_sec: 0.0,
        latencies: Vec::new(),
        posts: Vec::new(),
    };
    let mut last = start;
    for worker in workers {
        for (at, result) in worker.await? {
            match result {
                NoteResult::Done {
                    published,
                    latency,
                    post,
                } => {
                    last = last.max(at);
                    row.completed += 1;
                    row.posts.extend(post);
                    if published {
                        row.latencies.push(latency);
                    } else {
                        row.failed += 1;
                    }
                }
                NoteResult::Lost => row.lost += 1,
                NoteResult::Refused(why) => {
                    if row.refused == 0 {
                        eprintln!("  refused: {why}");
                    }
                    row.refused += 1;
                }
            }
        }
    }
    let secs = last.saturating_duration_since(start).as_secs_f64();
    row.per_sec = if secs > 0.0 {
        row.completed as f64 / secs
    } else {
        0.0
    };
    row.latencies = sorted(row.latencies);
    row.posts = sorted(row.posts);
    Ok(row)
}

/// Prints one level as it finishes.
fn print_level(row: &Row) {
    println!(
        "  {:>4} clients: {:.1} sagas/s, p50 {}, p99 {}{} ({} completed, {} failed, {} lost, {} refused)",
        row.concurrency,
        row.per_sec,
        ms(percentile(&row.latencies, 50.0)),
        ms(percentile(&row.latencies, 99.0)),
        if row.posts.is_empty() {
            String::new()
        } else {
            format!(
                "; of which POST→202 p50 {}, p99 {}",
                ms(percentile(&row.posts, 50.0)),
                ms(percentile(&row.posts, 99.0))
            )
        },
        row.completed,
        row.failed,
        row.lost,
        row.refused
    );
}

/// Prints the table of every level; fails when notes were lost or refused.
fn print_table(rows: &[Row]) -> Result<()> {
    println!();
    println!("| clients | sagas/s | p50 | p99 | completed | failed | lost |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.1} | {} | {} | {} | {} | {} |",
            row.concurrency,
            row.per_sec,
            ms(percentile(&row.latencies, 50.0)),
            ms(percentile(&row.latencies, 99.0)),
            row.completed,
            row.failed,
            row.lost
        );
    }
    if rows.iter().any(|r| r.lost > 0 || r.refused > 0) {
        bail!("some notes were lost or refused: the figures cover only the rest");
    }
    Ok(())
}

/// One workflow call through Restate's ingress; it answers when the workflow is done.
async fn restate_note(
    http: &reqwest::Client,
    base: &str,
    body_size: usize,
    seed: u64,
) -> NoteResult {
    let sent = Instant::now();
    let url = format!("{base}/notePipeline/{}/run", Uuid::new_v4());
    let payload = serde_json::json!({
        "title": format!("Bench note {seed}"),
        "body": body(seed, body_size),
    });
    let answer = async {
        let response = http.post(&url).json(&payload).send().await?;
        let status = response.status();
        let json: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::Ok((status, json))
    };
    match tokio::time::timeout(NOTE_TIMEOUT, answer).await {
        Err(_) => NoteResult::Lost,
        Ok(Err(err)) => NoteResult::Refused(format!("{err:#}")),
        Ok(Ok((status, json))) if status.is_success() => NoteResult::Done {
            published: json["status"] == "published",
            latency: sent.elapsed(),
            post: None,
        },
        Ok(Ok((status, json))) => NoteResult::Refused(format!("{status}: {json}")),
    }
}

/// `notesaga bench restate`: the same closed loop against the Restate workflow of
/// `bench/restate/pipeline.mjs` (see `make bench-compare`).
pub(crate) async fn run_restate(args: crate::args::BenchRestateArgs) -> Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) || args.seconds == 0 {
        bail!("--concurrency levels and --seconds must be positive");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build()?;
    let base = args.url.trim_end_matches('/').to_owned();
    println!(
        "restate closed loop: levels {:?}, {} s each, notes of ~{} bytes through {base}/notePipeline/{{id}}/run",
        args.concurrency, args.seconds, args.body_size
    );
    let seed = u64::from(Uuid::new_v4().as_fields().0) << 24;
    let mut rows = Vec::new();
    for (i, &concurrency) in args.concurrency.iter().enumerate() {
        let (http, base, body_size) = (http.clone(), base.clone(), args.body_size);
        let note = move |seed: u64| {
            let (http, base) = (http.clone(), base.clone());
            async move { restate_note(&http, &base, body_size, seed).await }
        };
        let row = closed_loop(
            concurrency,
            Duration::from_secs(args.seconds),
            seed + (i as u64) * (1 << 40),
            note,
        )
        .await?;
        print_level(&row);
        rows.push(row);
    }
    print_table(&rows)
}

pub(crate) async fn run(args: BenchSagaArgs) -> Result<()> {
    if args.concurrency.contains(&0) || args.seconds == 0 {
        bail!("--concurrency levels and --seconds must be positive");
    }
    crate::roles::wait_for_registry(&args.connection.registry_url).await?;
    wait_for_api(&args.api).await?;
    let kafka = args.connection.kafka();
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build()?,
        url: format!("{}/v1/notes", args.api.trim_end_matches('/')),
        token: bench_token(&args)?,
        body_size: args.body_size,
    });
    println!(
        "notesaga bench saga (closed loop): levels {:?}, {} s each, notes of ~{} bytes through {}, broker {}",
        args.concurrency, args.seconds, args.body_size, args.api, kafka.bootstrap_servers
    );
    if !args.skip_plain {
        let plain = notesaga_log::bench::plain_run(&kafka, args.plain_records, 300, true).await?;
        println!(
            "plain rdkafka produce→consume on this broker, {} records of 300 bytes with the contract's headers: {plain:.0} records/s",
            args.plain_records
        );
    }
    let seed = u64::from(Uuid::new_v4().as_fields().0) << 24;
    let mut rows = Vec::new();
    for (i, &concurrency) in args.concurrency.iter().enumerate() {
        let row = level(
            &args,
            client.clone(),
            concurrency,
            seed + (i as u64) * (1 << 40),
        )
        .await?;
        print_level(&row);
        rows.push(row);
    }
    print_table(&rows)
}
