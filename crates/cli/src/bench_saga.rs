//! `notesaga bench saga`: the note-pipeline saga end to end on a running single node,
//! beside the plain log rate of the same run on the same broker.
//!
//! 1. Warm-up: a few notes posted and awaited (schemas, consumer groups, engines warm);
//!    their records on the flow topics give the typical flow record size.
//! 2. Plain rdkafka produce→consume of records of that size, without and with the
//!    contract's headers (`notesaga_log::bench::plain_run`).
//! 3. The measured run: N notes posted through `POST /v1/notes` at a steady open-loop
//!    rate; a plain consumer of `notes.events`, assigned from the end before the first
//!    post, takes each note's `NotePublished` / `NotePublicationFailed`. Latency is the
//!    receive time minus the time just before the note's POST. Records written per saga
//!    are counted from the flow topics' watermarks before the run and after the log has
//!    settled.
//!
//! Failed notes are counted and reported; notes still unfinished after `--timeout`, or
//! not accepted by the API, are reported and make the command exit non-zero.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use notesaga_events::topics::{FLOW_TOPICS, NOTES_EVENTS};
use notesaga_log::KafkaConfig;
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _, StreamConsumer},
    message::{Headers as _, Message as _},
    Offset, TopicPartitionList,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::args::BenchSagaArgs;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// (topic, partition) → high watermark.
pub(super) type Marks = BTreeMap<(String, i32), i64>;

/// High watermarks of every partition of every flow topic.
pub(super) async fn flow_watermarks(kafka: &KafkaConfig) -> Result<Marks> {
    let mut config = kafka.client();
    config.set(
        "group.id",
        format!("notesaga.bench.marks.{}", Uuid::new_v4().simple()),
    );
    tokio::task::spawn_blocking(move || -> Result<Marks> {
        let consumer: BaseConsumer = config.create()?;
        let mut marks = Marks::new();
        for topic in FLOW_TOPICS {
            let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
            let partitions = metadata
                .topics()
                .first()
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            if partitions == 0 {
                bail!("topic {topic} has no partitions: is this a notesaga node?");
            }
            for partition in 0..partitions as i32 {
                let (_, high) = consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
                marks.insert((topic.to_owned(), partition), high);
            }
        }
        Ok(marks)
    })
    .await?
}

pub(super) fn total(marks: &Marks) -> i64 {
    marks.values().sum()
}

/// Waits until no flow topic grows for two seconds (the sagas' last records, written
/// after `NotePublished`, are in), at most a minute; returns the watermarks then.
pub(super) async fn settled_watermarks(kafka: &KafkaConfig) -> Result<Marks> {
    let started = Instant::now();
    let mut last = flow_watermarks(kafka).await?;
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_secs(2) {
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!("warning: the flow topics still grow after 60 s; counting what is there");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = flow_watermarks(kafka).await?;
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    Ok(last)
}

/// Mean value size and mean header count of the flow records between two watermark
/// snapshots, read raw with a plain consumer.
pub(super) async fn mean_record_size(
    kafka: &KafkaConfig,
    before: &Marks,
    after: &Marks,
) -> Result<(usize, f64, f64)> {
    let mut config = kafka.client();
    config
        .set(
            "group.id",
            format!("notesaga.bench.sizes.{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: StreamConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    let mut expected = 0i64;
    for ((topic, partition), high) in after {
        let low = before
            .get(&(topic.clone(), *partition))
            .copied()
            .unwrap_or(0);
        if *high > low {
            expected += high - low;
            assignment.add_partition_offset(topic, *partition, Offset::Offset(low))?;
        }
    }
    if expected == 0 {
        bail!("no records on the flow topics: did the warm-up notes reach the pipeline?");
    }
    consumer.assign(&assignment)?;
    let (mut seen, mut bytes, mut headers) = (0i64, 0usize, 0usize);
    while seen < expected {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("reading the flow records timed out")??;
        if message.offset() >= after[&(message.topic().to_owned(), message.partition())] {
            continue;
        }
        seen += 1;
        bytes += message.payload_len();
        headers += message.headers().map_or(0, |h| h.count());
    }
    let records = usize::try_from(seen).unwrap_or(0);
    Ok((
        records,
        bytes as f64 / records as f64,
        headers as f64 / records as f64,
    ))
}

const WORDS: &[&str] = &[
    "the",
    "cell",
    "is",
    "unit",
    "of",
    "life",
    "energy",
    "flows",
    "through",
    "membrane",
    "protein",
    "enzyme",
    "reaction",
    "gradient",
    "molecule",
    "structure",
    "function",
    "nucleus",
    "carries",
    "genetic",
    "information",
    "mitochondria",
    "produce",
    "most",
    "chemical",
    "needed",
    "to",
    "power",
    "biochemical",
    "reactions",
    "in",
    "a",
    "and",
    "photosynthesis",
    "converts",
    "light",
    "into",
    "sugar",
    "water",
    "carbon",
    "dioxide",
    "oxygen",
    "release",
    "transport",
    "active",
    "passive",
    "diffusion",
    "osmosis",
];

/// A note body of about `size` bytes of English-like sentences, different per `seed`
/// (every benchmark that writes notes uses it).
pub(super) fn body(seed: u64, size: usize) -> String {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let mut text = String::with_capacity(size + 16);
    let mut in_sentence = 0;
    while text.len() < size {
        let word = WORDS[next() % WORDS.len()];
        if in_sentence == 0 {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                text.extend(first.to_uppercase());
                text.push_str(chars.as_str());
            }
        } else {
            text.push_str(word);
        }
        in_sentence += 1;
        if in_sentence >= 8 + next() % 8 {
            text.push_str(". ");
            in_sentence = 0;
        } else {
            text.push(' ');
        }
    }
    let mut text = text.trim_end().to_owned();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// What happened to one posted note.
#[derive(Debug, Default)]
struct RunOutcome {
    posted: usize,
    /// Posts the API did not accept, with why.
    rejected: Vec<String>,
    /// Time of each POST (send to 202).
    post_latencies: Vec<Duration>,
    /// Command→published latency of each published note, in the order they were sent.
    published: Vec<(Instant, Duration)>,
    /// Notes whose saga failed (`NotePublicationFailed`).
    failed: Vec<Uuid>,
    /// Accepted notes with no outcome before the deadline.
    timed_out: Vec<Uuid>,
    first_send: Option<Instant>,
    last_outcome: Option<Instant>,
}

/// A consumer of `notes.events` from its current end.
pub(super) fn events_tail(kafka: &KafkaConfig, marks: &Marks) -> Result<StreamConsumer> {
    let mut config = kafka.client();
    config
        .set(
            "group.id",
            format!("notesaga.bench.tail.{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // The measuring consumer must not add its own wait to the latency.
        .set("fetch.wait.max.ms", "10");
    let consumer: StreamConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    for ((topic, partition), high) in marks {
        if topic == NOTES_EVENTS {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(*high))?;
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// `event_type` of a record and its key as a note id.
pub(super) fn outcome_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<(Uuid, bool)> {
    let event_type = message
        .headers()?
        .iter()
        .find(|h| h.key == "event_type")
        .and_then(|h| h.value)?;
    let published = match event_type {
        b"NotePublished" => true,
        b"NotePublicationFailed" => false,
        _ => return None,
    };
    let note = Uuid::parse_str(std::str::from_utf8(message.key()?).ok()?).ok()?;
    Some((note, published))
}

/// Posts `notes` notes at `rate` per second and waits for each one's outcome.
async fn pipeline_run(
    args: &BenchSagaArgs,
    kafka: &KafkaConfig,
    notes: usize,
    seed: u64,
) -> Result<RunOutcome> {
    let marks = flow_watermarks(kafka).await?;
    let tail = events_tail(kafka, &marks)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/notes", args.api.trim_end_matches('/'));
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let (results, mut received) = mpsc::unbounded_channel();
    let token = bench_token(args)?;

    let bodies: Vec<String> = (0..notes)
        .map(|i| body(seed + i as u64, args.body_size))
        .collect();
    let start = tokio::time::Instant::now();
    let sender = tokio::spawn(async move {
        for (i, text) in bodies.into_iter().enumerate() {
            tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
            let (client, url, results) = (client.clone(), url.clone(), results.clone());
            let token = token.clone();
            tokio::spawn(async move {
                let payload =
                    serde_json::json!({"title": format!("Bench note {seed}-{i}"), "body": text});
                let sent = Instant::now();
                let answer = async {
                    let mut request = client.post(&url).json(&payload);
                    if let Some(token) = &token {
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
                .await;
                let _ = results.send((sent, sent.elapsed(), answer));
            });
        }
    });

    let deadline =
        Instant::now() + interval.mul_f64(notes as f64) + Duration::from_secs(args.timeout);
    let mut outcome = RunOutcome::default();
    let mut sent_at: HashMap<Uuid, Instant> = HashMap::new();
    // Outcomes by note, kept even before the note's 202 arrives.
    let mut outcomes: HashMap<Uuid, (bool, Instant)> = HashMap::new();
    let mut answered = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            message = tail.recv() => match message {
                Ok(message) => {
                    let at = Instant::now();
                    if let Some((note, published)) = outcome_of(&message) {
                        outcomes.entry(note).or_insert((published, at));
                    }
                }
                Err(err) => tracing::warn!(%err, "reading notes.events"),
            },
            Some((sent, post, answer)) = received.recv() => {
                answered += 1;
                outcome.first_send = Some(outcome.first_send.map_or(sent, |f| f.min(sent)));
                match answer {
                    Ok(note) => {
                        outcome.posted += 1;
                        outcome.post_latencies.push(post);
                        sent_at.insert(note, sent);
                    }
                    Err(err) => outcome.rejected.push(format!("{err:#}")),
                }
            }
            _ = tick.tick() => {}
        }
        let all_answered = answered == notes;
        if all_answered && sent_at.keys().all(|note| outcomes.contains_key(note)) {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "timeout: {} of {} notes without an outcome",
                sent_at.keys().filter(|n| !outcomes.contains_key(n)).count() + (notes - answered),
                notes
            );
            break;
        }
    }
    sender.abort();
    for (note, sent) in &sent_at {
        match outcomes.get(note) {
            Some((true, at)) => {
                outcome
                    .published
                    .push((*sent, at.saturating_duration_since(*sent)));
                outcome.last_outcome = Some(outcome.last_outcome.map_or(*at, |l| l.max(*at)));
            }
            Some((false, at)) => {
                outcome.failed.push(*note);
                outcome.last_outcome = Some(outcome.last_outcome.map_or(*at, |l| l.max(*at)));
            }
            None => outcome.timed_out.push(*note),
        }
    }
    for _ in answered..notes {
        outcome
            .rejected
            .push("no answer before the deadline".into());
    }
    outcome.published.sort_by_key(|(sent, _)| *sent);
    Ok(outcome)
}

/// Nearest-rank percentile of sorted durations.
pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub(super) fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

/// Waits until the API answers `/healthz`.
pub(super) async fn wait_for_api(api: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{}/healthz", api.trim_end_matches('/'));
    for _ in 0..240 {
        if let Ok(response) = client.get(&url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the API at {api} does not answer /healthz; start a node (`notesaga dev`) or set --api")
}

/// The token to send: `--token`, else one of the user `bench` minted with the secret of
/// `--data-dir`, else none (a node with auth then answers 401, which the run reports).
pub(super) fn bench_token(args: &BenchSagaArgs) -> Result<Option<String>> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    let Some(data_dir) = &args.data_dir else {
        return Ok(None);
    };
    let ttl = Duration::from_secs(6 * 3600);
    crate::dev::token(data_dir, "bench", false, ttl).map(Some)
}

pub(crate) async fn run(args: BenchSagaArgs) -> Result<()> {
    if !args.concurrency.is_empty() {
        return super::saga_closed::run(args).await;
    }
    if args.notes == 0 || args.rate <= 0.0 {
        bail!("--notes and --rate must be positive");
    }
    crate::roles::wait_for_registry(&args.connection.registry_endpoint()).await?;
    wait_for_api(&args.api).await?;
    let kafka = args.connection.kafka();
    println!(
        "notesaga bench saga: {} notes of ~{} bytes at {}/s through {}, broker {}",
        args.notes, args.body_size, args.rate, args.api, kafka.bootstrap_servers
    );
    let seed = u64::from(Uuid::new_v4().as_fields().0);

    // 1. Warm-up, and the typical flow record.
    let before = flow_watermarks(&kafka).await?;
    let warm = pipeline_run(&args, &kafka, args.warmup.max(1), seed).await?;
    if warm.posted == 0 || !warm.timed_out.is_empty() {
        bail!(
            "the warm-up did not finish ({} posted, {} rejected, {} unfinished){}: is every role running?",
            warm.posted,
            warm.rejected.len(),
            warm.timed_out.len(),
            // Why the API refused, so a 401 (no --data-dir, no --token) says so.
            warm.rejected
                .first()
                .map(|why| format!("; the first refusal: {why}"))
                .unwrap_or_default()
        );
    }
    let after = settled_watermarks(&kafka).await?;
    let (sampled, value_bytes, header_count) = mean_record_size(&kafka, &before, &after).await?;
    let record_size = value_bytes.round() as usize;
    println!(
        "warm-up: {} notes ({} published, {} failed); their {sampled} flow records average {value_bytes:.0} bytes of value and {header_count:.1} headers",
        warm.posted,
        warm.published.len(),
        warm.failed.len()
    );

    // 2. Plain rdkafka on the same broker, records of that size.
    let plain =
        notesaga_log::bench::plain_run(&kafka, args.plain_records, record_size, false).await?;
    let plain_headers =
        notesaga_log::bench::plain_run(&kafka, args.plain_records, record_size, true).await?;
    println!(
        "plain rdkafka produce→consume, {} records of {record_size} bytes: {plain:.0} records/s; with the contract's headers: {plain_headers:.0} records/s",
        args.plain_records
    );

    // 3. The measured run.
    let before = flow_watermarks(&kafka).await?;
    let run = pipeline_run(&args, &kafka, args.notes, seed + 1_000_000).await?;
    let after = settled_watermarks(&kafka).await?;
    let records = total(&after) - total(&before);

    let finished = run.published.len() + run.failed.len();
    let window = match (run.first_send, run.last_outcome) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    let latencies = sorted(run.published.iter().map(|(_, l)| *l).collect());
    let posts = sorted(run.post_latencies.clone());
    let third = run.published.len() / 3;
    let first_third = sorted(run.published[..third].iter().map(|(_, l)| *l).collect());
    let last_third = sorted(
        run.published[run.published.len() - third..]
            .iter()
            .map(|(_, l)| *l)
            .collect(),
    );
    let secs = window.as_secs_f64();
    let sagas_per_sec = if secs > 0.0 {
        finished as f64 / secs
    } else {
        0.0
    };
    let records_per_saga = if finished > 0 {
        records as f64 / finished as f64
    } else {
        0.0
    };
    let records_per_sec = if secs > 0.0 {
        records as f64 / secs
    } else {
        0.0
    };

    println!(
        "pipeline: {} notes posted at {}/s; {} published, {} failed (NotePublicationFailed), {} unfinished at the timeout, {} not accepted by the API",
        args.notes,
        args.rate,
        run.published.len(),
        run.failed.len(),
        run.timed_out.len(),
        run.rejected.len()
    );
    println!(
        "  sagas completed: {sagas_per_sec:.2}/s ({finished} in {secs:.1} s, first POST → last outcome)"
    );
    println!(
        "  command→published latency: p50 {}, p99 {}, max {} (first third p50 {}, last third p50 {}); POST→202 p50 {}, p99 {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
        ms(percentile(&first_third, 50.0)),
        ms(percentile(&last_third, 50.0)),
        ms(percentile(&posts, 50.0)),
        ms(percentile(&posts, 99.0)),
    );
    println!(
        "  records written per saga: {records_per_saga:.1} ({records} records on the {} flow topics)",
        FLOW_TOPICS.len()
    );
    println!(
        "  pipeline: {records_per_sec:.0} records/s = {:.1}% of plain rdkafka ({plain:.0}/s), {:.1}% of plain with headers ({plain_headers:.0}/s)",
        100.0 * records_per_sec / plain,
        100.0 * records_per_sec / plain_headers
    );
    for note in run.failed.iter().take(10) {
        println!("  failed: note {note} (GET /v1/notes/{note} has its failure_reason)");
    }
    for note in run.timed_out.iter().take(10) {
        println!("  unfinished: note {note}");
    }
    for reason in run.rejected.iter().take(10) {
        println!("  not accepted: {reason}");
    }
    if !run.timed_out.is_empty() || !run.rejected.is_empty() {
        bail!(
            "{} notes unfinished and {} not accepted: the figures above cover only the rest",
            run.timed_out.len(),
            run.rejected.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_sentences_of_about_the_size_asked() {
        let a = body(1, 1024);
        assert!((1024..1100).contains(&a.len()), "{}", a.len());
        assert!(a.ends_with('.'));
        assert!(a.chars().next().unwrap().is_uppercase());
        assert_ne!(a, body(2, 1024));
        assert!(a.split_whitespace().count() > 100);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
