//! `notesaga bench api`: command acceptance of a running node's HTTP API, from a load
//! generator on the same machine.
//!
//! 1. Warm-up: closed-loop load for `--warmup` seconds (connections open, schemas
//!    registered, the producer's batches warm); only its refusals are kept.
//! 2. Throughput: `--concurrency` workers each post the next note as soon as the last
//!    one was answered (closed loop) for `--duration` seconds: 202s per second.
//! 3. Latency: posts sent at a fixed rate, half the throughput of phase 2, for
//!    `--duration` seconds (open loop). Each request's latency runs from the time it was
//!    *scheduled* to be sent, not from when it went out, so a stalled server is charged
//!    for the requests it kept waiting (no coordinated omission).
//!
//! Every answer other than 202 is counted by status and reported, and makes the command
//! exit non-zero: the figures would otherwise mix in cheap refusals (401, 413, 429).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use hdrhistogram::Histogram;
use tokio::{sync::Mutex, task::JoinSet, time::Instant};

use crate::args::BenchApiArgs;

/// Distinct bodies the posts cycle through (generated once, so the load generator spends
/// its CPU on requests, not on text).
const BODIES: usize = 64;

/// A send this far behind its schedule is reported as late.
const LATE: Duration = Duration::from_millis(10);

/// Latencies are recorded in microseconds, up to a minute, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What a phase saw.
#[derive(Debug)]
struct Tally {
    /// Requests answered 202.
    accepted: usize,
    /// Every other answer, by status (or transport error), with a sample detail.
    refused: BTreeMap<String, (usize, String)>,
    /// Latencies of the 202s, µs.
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            accepted: 0,
            refused: BTreeMap::new(),
            latency: histogram(),
        }
    }

    fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Accepted => {
                self.accepted += 1;
                // Saturates at the histogram's top rather than losing the sample.
                self.latency
                    .saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
            }
            Outcome::Refused(kind, detail) => {
                let entry = self.refused.entry(kind).or_insert((0, detail));
                entry.0 += 1;
            }
        }
    }

    fn refusals(&self) -> usize {
        self.refused.values().map(|(n, _)| n).sum()
    }
}

/// The answer to one post.
#[derive(Debug)]
enum Outcome {
    Accepted,
    /// Status (or "transport error") and what the body or the error said.
    Refused(String, String),
}

/// The target: URL, credentials and the prepared bodies.
#[derive(Debug)]
struct Target {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    /// `POST /v1/notes` bodies as JSON text, used in turn.
    bodies: Vec<String>,
    next: AtomicUsize,
}

impl Target {
    async fn post(&self) -> Outcome {
        let body = &self.bodies[self.next.fetch_add(1, Ordering::Relaxed) % self.bodies.len()];
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                // Read the body either way, so the connection goes back to the pool.
                let text = response.text().await.unwrap_or_default();
                if status == reqwest::StatusCode::ACCEPTED {
                    Outcome::Accepted
                } else {
                    Outcome::Refused(status.to_string(), text.chars().take(300).collect())
                }
            }
            Err(err) => Outcome::Refused("transport error".into(), format!("{err:#}")),
        }
    }
}

/// `concurrency` workers posting back to back for `duration`; returns what they saw and
/// the time from the start to the last answer.
async fn closed_loop(
    target: &Arc<Target>,
    concurrency: usize,
    duration: Duration,
) -> (Tally, Duration) {
    let tally = Arc::new(Mutex::new(Tally::new()));
    let start = Instant::now();
    let end = start + duration;
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (target, tally) = (target.clone(), tally.clone());
        workers.spawn(async move {
            let mut local = Tally::new();
            while Instant::now() < end {
                let sent = Instant::now();
                let outcome = target.post().await;
                local.record(outcome, sent.elapsed());
            }
            let mut tally = tally.lock().await;
            tally.accepted += local.accepted;
            for (kind, (n, detail)) in local.refused {
                tally.refused.entry(kind).or_insert((0, detail)).0 += n;
            }
            tally
                .latency
                .add(&local.latency)
                .expect("same histogram bounds");
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let tally = Arc::try_unwrap(tally)
        .expect("every worker finished")
        .into_inner();
    (tally, elapsed)
}

/// Posts sent at `rate` per second for `duration`, each in its own task so a slow answer
/// never delays the next send; latency from the scheduled send time.
async fn open_loop(target: &Arc<Target>, rate: f64, duration: Duration) -> Result<(Tally, usize)> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut requests = JoinSet::new();
    let mut tally = Tally::new();
    let mut sent = 0usize;
    let mut late = 0usize;
    loop {
        let scheduled = start + interval.mul_f64(sent as f64);
        if scheduled >= start + duration {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        // Well behind schedule (tokio's timer alone is up to a millisecond or two late):
        // the generator itself could not keep the rate (latency still counts from
        // `scheduled`).
        if scheduled.elapsed() > LATE {
            late += 1;
        }
        let target = target.clone();
        requests.spawn(async move {
            let outcome = target.post().await;
            (outcome, scheduled.elapsed())
        });
        sent += 1;
        // Take the finished ones as we go, so the set stays small.
        while let Some(done) = requests.try_join_next() {
            let (outcome, latency) = done.context("a request task panicked")?;
            tally.record(outcome, latency);
        }
    }
    while let Some(done) = requests.join_next().await {
        let (outcome, latency) = done.context("a request task panicked")?;
        tally.record(outcome, latency);
    }
    Ok((tally, late))
}

fn ms(micros: u64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

fn latency_line(h: &Histogram<u64>) -> String {
    format!(
        "p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

fn print_refusals(phase: &str, tally: &Tally) {
    for (kind, (n, detail)) in &tally.refused {
        println!("  {phase}: {n} × {kind}: {detail}");
    }
}

/// The token to send: `--token`, else one of the user `bench` minted with the secret of
/// `--data-dir` (valid for the run, with room).
fn token(args: &BenchApiArgs) -> Result<Option<String>> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    let Some(data_dir) = &args.data_dir else {
        return Ok(None);
    };
    let ttl = Duration::from_secs(3600 + 3 * (args.warmup + 2 * args.duration));
    crate::dev::token(data_dir, "bench", false, ttl).map(Some)
}

/// Waits until the API answers `/healthz`.
async fn wait_for_api(client: &reqwest::Client, base: &str) -> Result<()> {
    let url = format!("{base}/healthz");
    for _ in 0..240 {
        if let Ok(response) = client.get(&url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the API at {base} does not answer /healthz")
}

pub(crate) async fn run(args: BenchApiArgs) -> Result<()> {
    if args.concurrency == 0 || args.duration == 0 {
        bail!("--concurrency and --duration must be positive");
    }
    let base = match &args.api {
        Some(api) => api.trim_end_matches('/').to_owned(),
        None => {
            let data_dir = args.data_dir.clone().unwrap_or_else(|| "./data".into());
            let (url, _) = crate::admin_client::api_base(None, &data_dir)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            url.as_str().trim_end_matches('/').to_owned()
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency.max(64) * 4)
        .build()?;
    wait_for_api(&client, &base).await?;
    let seed = u64::from(uuid::Uuid::new_v4().as_fields().0);
    let bodies = (0..BODIES)
        .map(|i| {
            serde_json::json!({
                "title": format!("Bench note {seed}-{i}"),
                "body": super::saga::body(seed + i as u64, args.body_size),
            })
            .to_string()
        })
        .collect();
    let target = Arc::new(Target {
        client,
        url: format!("{base}/v1/notes"),
        token: token(&args)?,
        bodies,
        next: AtomicUsize::new(0),
    });
    println!(
        "notesaga bench api: POST {} with ~{}-byte bodies{}; concurrency {}, {} s per phase after {} s of warm-up",
        target.url,
        args.body_size,
        if target.token.is_some() { ", bearer token" } else { ", no token" },
        args.concurrency,
        args.duration,
        args.warmup
    );

    let (warm, _) = closed_loop(&target, args.concurrency, Duration::from_secs(args.warmup)).await;
    println!(
        "warm-up: {} accepted, {} refused",
        warm.accepted,
        warm.refusals()
    );
    print_refusals("warm-up", &warm);
    if warm.refused.keys().any(|kind| kind.starts_with("401")) {
        bail!(
            "the API answered 401 Unauthorized: pass a token with --token (NOTESAGA_TOKEN), or --data-dir DIR of the `notesaga dev` node to mint one"
        );
    }

    let duration = Duration::from_secs(args.duration);
    let (closed, elapsed) = closed_loop(&target, args.concurrency, duration).await;
    let throughput = closed.accepted as f64 / elapsed.as_secs_f64();
    println!(
        "closed loop, concurrency {}: {throughput:.0} accepted/s ({} in {:.1} s), {} refused; latency {}",
        args.concurrency,
        closed.accepted,
        elapsed.as_secs_f64(),
        closed.refusals(),
        latency_line(&closed.latency)
    );
    print_refusals("closed loop", &closed);
    if closed.accepted == 0 {
        bail!("no post was accepted: nothing to measure the latency at");
    }

    let rate = throughput / 2.0;
    let (open, late) = open_loop(&target, rate, duration).await?;
    println!(
        "open loop at {rate:.0}/s (50 % of the closed-loop throughput): {} accepted, {} refused; latency from the scheduled send {}",
        open.accepted,
        open.refusals(),
        latency_line(&open.latency)
    );
    if late > 0 {
        println!(
            "  {late} sends left the generator more than {} ms late (their latency counts from the schedule)",
            LATE.as_millis()
        );
    }
    print_refusals("open loop", &open);

    let refused = warm.refusals() + closed.refusals() + open.refusals();
    if refused > 0 {
        bail!("{refused} posts were not answered 202: the figures above cover only the rest");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_count_refusals_by_kind_and_accepted_latencies() {
        let mut tally = Tally::new();
        tally.record(Outcome::Accepted, Duration::from_millis(5));
        tally.record(Outcome::Accepted, Duration::from_millis(7));
        tally.record(
            Outcome::Refused("429 Too Many Requests".into(), "slow down".into()),
            Duration::ZERO,
        );
        tally.record(
            Outcome::Refused("429 Too Many Requests".into(), "again".into()),
            Duration::ZERO,
        );
        tally.record(
            Outcome::Refused("transport error".into(), "reset".into()),
            Duration::ZERO,
        );
        assert_eq!(tally.accepted, 2);
        assert_eq!(tally.refusals(), 3);
        assert_eq!(
            tally.refused["429 Too Many Requests"],
            (2, "slow down".into())
        );
        assert_eq!(tally.latency.len(), 2);
        assert!(tally.latency.max() >= 7_000);
    }
}
