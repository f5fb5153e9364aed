//! The produce→consume benchmark: notesaga's log layer (Avro through the registry,
//! headers, the consumer loop with its offset discipline) against plain rdkafka bytes on
//! the same broker, in the same run, with the same record count and value size.
//!
//! Each side gets a fresh topic and group. Timing starts at the first send and stops when
//! the consumer has seen every record, so it measures the pipeline, not one end.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::{stream, StreamExt as _, TryStreamExt as _};
use notesaga_events::notes::{NoteCreated, NotesEvent};
use rdkafka::{
    consumer::{Consumer as _, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    topics::{create_topics, TopicSpec},
    AvroCodec, ConsumerLoop, Handler, HandlerError, Incoming, KafkaConfig, Metadata, Publisher,
    Result,
};

/// Sends in flight at once on either side.
const IN_FLIGHT: usize = 1000;
/// Partitions of each benchmark topic.
const PARTITIONS: i32 = 3;

fn fresh_topic(kind: &str) -> String {
    format!("bench.{kind}.{}", Uuid::new_v4().simple())
}

/// A new topic of [`PARTITIONS`] partitions for one side of one run.
async fn create_bench_topic(kafka: &KafkaConfig, kind: &str) -> Result<String> {
    let topic = fresh_topic(kind);
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: PARTITIONS,
        configs: vec![],
    };
    create_topics(kafka, &[spec]).await?;
    Ok(topic)
}

/// Records per second of plain rdkafka: raw bytes out, raw bytes in; with `headers`,
/// each record also carries headers as large as the log layer's (the broker's cost of
/// storing headers is then the same on both sides).
pub async fn plain_run(
    kafka: &KafkaConfig,
    records: usize,
    size: usize,
    headers: bool,
) -> Result<f64> {
    let topic = create_bench_topic(kafka, "plain").await?;
    let consumer: StreamConsumer = kafka.consumer(&fresh_topic("group")).create()?;
    consumer.subscribe(&[&topic])?;
    let producer: FutureProducer = kafka.producer().create()?;
    let payload = vec![b'x'; size];
    let keys: Vec<String> = (0..records).map(|_| Uuid::new_v4().to_string()).collect();
    let sample_headers = Metadata::new(Uuid::new_v4(), Uuid::new_v4().to_string())
        .with_command(Uuid::new_v4())
        .to_headers("NoteCreated");

    let started = Instant::now();
    let produce = stream::iter(keys.iter())
        .map(|key| {
            let producer = &producer;
            let payload = &payload;
            let topic = &topic;
            let sample_headers = &sample_headers;
            async move {
                let mut record = FutureRecord::to(topic)
                    .key(key.as_bytes())
                    .payload(payload.as_slice());
                if headers {
                    record = record.headers(sample_headers.clone());
                }
                producer
                    .send(record, Timeout::Never)
                    .await
                    .map(drop)
                    .map_err(|(err, _)| err)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|()| async { Ok(()) });
    let consume = async {
        let mut seen = 0;
        while seen < records {
            consumer.recv().await?;
            seen += 1;
        }
        Ok::<_, rdkafka::error::KafkaError>(())
    };
    // A failed send or read ends the run with its error instead of hanging on the other.
    tokio::try_join!(produce, consume)?;
    Ok(records as f64 / started.elapsed().as_secs_f64())
}

#[derive(Debug)]
struct Counter {
    seen: Arc<AtomicUsize>,
    target: usize,
    done: CancellationToken,
}

impl Handler<NotesEvent> for Counter {
    async fn handle(&mut self, _incoming: &Incoming<NotesEvent>) -> Result<(), HandlerError> {
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 >= self.target {
            self.done.cancel();
        }
        Ok(())
    }
}

/// Records per second through the log layer: [`Publisher::publish`] (Avro via the
/// registry, headers) out, [`ConsumerLoop`] (decode, handle, store offset) in.
pub async fn log_run(
    kafka: &KafkaConfig,
    codec: Arc<AvroCodec>,
    records: usize,
    size: usize,
) -> Result<f64> {
    let topic = create_bench_topic(kafka, "log").await?;
    let publisher = Publisher::new(kafka, codec)?;
    // Warm the schema cache so registration is not timed.
    let sample = |i: usize| {
        NotesEvent::NoteCreated(NoteCreated {
            note_id: Uuid::new_v4(),
            owner: "bench".into(),
            version: 1,
            title: format!("note {i}"),
            body: "x".repeat(size.saturating_sub(60)),
            occurred_at: 0,
        })
    };
    publisher.codec().encode(&topic, &sample(0)).await?;
    let done = CancellationToken::new();
    let counter = Counter {
        seen: Arc::new(AtomicUsize::new(0)),
        target: records,
        done: done.clone(),
    };
    let consumer = ConsumerLoop::new(
        kafka.clone(),
        fresh_topic("group"),
        &[topic.as_str()],
        publisher.clone(),
    );
    let consuming = tokio::spawn(consumer.run::<NotesEvent, _>(counter, done.clone()));
    let messages: Vec<NotesEvent> = (0..records).map(sample).collect();

    let started = Instant::now();
    stream::iter(messages.iter())
        .map(|message| {
            let publisher = &publisher;
            let topic = &topic;
            async move {
                publisher
                    .publish(topic, message, &Metadata::new(Uuid::new_v4(), "bench"))
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
        .inspect_err(|_| done.cancel())?;
    done.cancelled().await;
    let elapsed = started.elapsed();
    consuming
        .await
        .map_err(|err| crate::Error::Handler(format!("bench consumer task: {err}")))??;
    Ok(records as f64 / elapsed.as_secs_f64())
}

/// Alternates the two sides `runs` times, prints every run and the best of each and
/// their ratio, and returns `(plain, log)` best records/s.
pub async fn run_log_bench(
    kafka: &KafkaConfig,
    registry_url: &str,
    records: usize,
    size: usize,
    runs: usize,
) -> Result<(f64, f64)> {
    let codec = Arc::new(AvroCodec::new(registry_url));
    println!("notesaga bench log: {records} records of ~{size} bytes, {PARTITIONS} partitions, {runs} runs per side, broker {}", kafka.bootstrap_servers);
    let (mut best_plain, mut best_headers, mut best_log) = (0f64, 0f64, 0f64);
    for run in 1..=runs.max(1) {
        // Alternate the order so a broker that slows as its log grows favours no side.
        let (plain, with_headers, log) = if run % 2 == 1 {
            let plain = plain_run(kafka, records, size, false).await?;
            let with_headers = plain_run(kafka, records, size, true).await?;
            let log = log_run(kafka, codec.clone(), records, size).await?;
            (plain, with_headers, log)
        } else {
            let log = log_run(kafka, codec.clone(), records, size).await?;
            let with_headers = plain_run(kafka, records, size, true).await?;
            let plain = plain_run(kafka, records, size, false).await?;
            (plain, with_headers, log)
        };
        println!("run {run}: plain rdkafka {plain:>8.0} records/s   plain + same headers {with_headers:>8.0} records/s   notesaga log {log:>8.0} records/s");
        best_plain = best_plain.max(plain);
        best_headers = best_headers.max(with_headers);
        best_log = best_log.max(log);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "best: plain rdkafka {best_plain:.0} records/s, plain + same headers {best_headers:.0} records/s, notesaga log {best_log:.0} records/s; log/plain {:.1}%, log/plain-with-headers {:.1}%",
        100.0 * best_log / best_plain,
        100.0 * best_log / best_headers
    );
    let latency = latency_run(kafka, LATENCY_SAMPLES, size).await?;
    println!(
        "produce→receive of one record at a time on an otherwise idle topic ({LATENCY_SAMPLES} records of {size} bytes with the contract's headers; producer linger.ms=0 acks=all idempotent, consumer fetch.wait.max.ms=500 fetch.min.bytes=1): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latency.p50_ms, latency.p99_ms, latency.max_ms
    );
    Ok((best_plain, best_log))
}

/// Records sent one at a time by [`latency_run`].
pub const LATENCY_SAMPLES: usize = 500;

/// Produce→receive latency figures in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Sends `samples` records one at a time to a fresh one-partition topic and times each
/// from just before the send until a consumer (already waiting in a fetch, with a long
/// `fetch.wait.max.ms`) receives it: the wake-up path of the broker, not its timer.
pub async fn latency_run(kafka: &KafkaConfig, samples: usize, size: usize) -> Result<Latency> {
    use rdkafka::{Offset, TopicPartitionList};
    let topic = fresh_topic("latency");
    create_topics(
        kafka,
        &[TopicSpec {
            name: topic.clone(),
            partitions: 1,
            configs: vec![],
        }],
    )
    .await?;
    let mut config = kafka.consumer(&fresh_topic("group"));
    config.set("fetch.wait.max.ms", "500");
    let consumer: StreamConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut producer_config = kafka.producer();
    producer_config.set("linger.ms", "0");
    let producer: FutureProducer = producer_config.create()?;
    let payload = vec![b'x'; size];
    let headers = Metadata::new(Uuid::new_v4(), Uuid::new_v4().to_string())
        .with_command(Uuid::new_v4())
        .to_headers("NoteCreated");
    // One untimed record: connections up, the consumer's fetch position known.
    let warm = |key: String| {
        let producer = &producer;
        let topic = &topic;
        let payload = &payload;
        let headers = headers.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(topic)
                        .key(key.as_bytes())
                        .payload(payload.as_slice())
                        .headers(headers),
                    Timeout::Never,
                )
                .await
                .map(drop)
                .map_err(|(err, _)| err)
        }
    };
    warm(Uuid::new_v4().to_string()).await?;
    consumer.recv().await?;
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        // Let the consumer settle into its next (waiting) fetch.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let started = Instant::now();
        let (sent, received) = tokio::join!(warm(Uuid::new_v4().to_string()), consumer.recv());
        sent?;
        received?;
        took.push(started.elapsed());
    }
    took.sort();
    let at = |p: f64| {
        let rank = ((p / 100.0) * took.len() as f64).ceil() as usize;
        took[rank.clamp(1, took.len()) - 1].as_secs_f64() * 1000.0
    };
    Ok(Latency {
        p50_ms: at(50.0),
        p99_ms: at(99.0),
        max_ms: took.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}

/// Reads every partition of `topic` (`partitions` of them) from offset 0 to its high
/// watermark as raw bytes with a plain rdkafka consumer; returns how many records and
/// records/s. The yardstick of state rebuilds, which read the same records and decode
/// them.
pub async fn plain_read_rate(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> Result<(usize, f64)> {
    use rdkafka::{Offset, TopicPartitionList};
    let mut config = kafka.client();
    config
        .set("group.id", fresh_topic("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let mut expected = 0;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let (low, high) = crate::reader::watermarks(&config, topic, partition).await?;
        expected += usize::try_from(high - low).unwrap_or(0);
        assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
    }
    let consumer: StreamConsumer = config.create()?;
    let started = Instant::now();
    consumer.assign(&assignment)?;
    let mut seen = 0;
    while seen < expected {
        consumer.recv().await?;
        seen += 1;
    }
    Ok((seen, seen as f64 / started.elapsed().as_secs_f64()))
}
