//! The native log against the real broker process and real clients: a waiting fetch
//! wakes on produce (and an idle one does not spin), a retried idempotent batch is
//! stored once, and every acknowledged record survives a SIGKILL of the broker, once.

use std::{
    collections::{BTreeMap, HashSet},
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use notesaga_testkit::{free_addr, BrokerProcess};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer as _, StreamConsumer},
    message::Message as _,
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
    ClientConfig, Offset, TopicPartitionList,
};
use tansu_sans_io::{
    produce_request::{PartitionProduceData, TopicProduceData},
    record::{deflated::Frame as Records, inflated, Record},
    ApiKey as _, Body, ErrorCode, Frame, Header, InitProducerIdRequest, InitProducerIdResponse,
    ProduceRequest, ProduceResponse,
};

fn client(addr: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("log_level", "3")
        .set("socket.nagle.disable", "true");
    config
}

async fn create_topic(addr: &str, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(addr).create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("create {topic}: {code}"))?;
    }
    Ok(())
}

/// Appends `payload` under key `k` and waits for the ack.
async fn append(producer: &FutureProducer, topic: &str, payload: &str) -> Result<()> {
    producer
        .send(
            FutureRecord::to(topic).key("k").payload(payload),
            Timeout::Never,
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

fn producer(addr: &str) -> Result<FutureProducer> {
    Ok(client(addr)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "60000")
        .create()?)
}

/// A consumer assigned to every partition of `topic` from the beginning.
fn reader(addr: &str, topic: &str, partitions: i32, wait_ms: u32) -> Result<StreamConsumer> {
    reader_asking(addr, topic, partitions, wait_ms, 1)
}

/// [`reader`] whose fetches ask for at least `min_bytes` (`fetch.min.bytes`).
fn reader_asking(
    addr: &str,
    topic: &str,
    partitions: i32,
    wait_ms: u32,
    min_bytes: u32,
) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = client(addr)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", wait_ms.to_string())
        .set("fetch.min.bytes", min_bytes.to_string())
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// `notesaga_broker_fetch_requests_total`, all outcomes, from the broker's /metrics.
fn fetch_requests(metrics_addr: &str) -> Result<u64> {
    let mut stream = TcpStream::connect(metrics_addr)?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: broker\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("notesaga_broker_fetch_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_fetch_wakes_on_produce_and_an_idle_one_does_not_spin() -> Result<()> {
    fetch_wakes_on("native").await
}

/// tansu's SQLite engine keeps a smoke test: the waking Fetch is the broker's, not the
/// engine's, so it wakes there too.
#[tokio::test(flavor = "multi_thread")]
async fn on_tansus_sqlite_engine_too_a_waiting_fetch_wakes_on_produce() -> Result<()> {
    fetch_wakes_on("sqlite").await
}

async fn fetch_wakes_on(engine: &str) -> Result<()> {
    let data = tempfile::tempdir()?;
    let metrics = free_addr();
    let broker = BrokerProcess::start_with(
        &data.path().join("broker"),
        &free_addr(),
        &["--metrics-addr", &metrics, "--storage", engine],
    )?;
    create_topic(broker.addr(), "wake", 1).await?;
    let consumer = reader(broker.addr(), "wake", 1, 5_000)?;

    // Idle: the consumer asks, the broker holds each fetch for its full wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = fetch_requests(&metrics)?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let idle = fetch_requests(&metrics)? - before;
    // About one per 5 s (librdkafka may split one wait around a metadata refresh); a
    // broker answering empty fetches at once would have served hundreds.
    assert!(
        (1..=6).contains(&idle),
        "{idle} fetches in 6 idle seconds at fetch.wait.max.ms=5000"
    );

    // Waiting: a record produced now arrives long before the 5 s wait is up.
    let producer = producer(broker.addr())?;
    let sent = Instant::now();
    append(&producer, "wake", "v").await?;
    let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await??;
    let took = sent.elapsed();
    assert_eq!(message.payload(), Some(&b"v"[..]));
    assert!(
        took < Duration::from_millis(2_500),
        "the record arrived after {took:?}: the fetch was not woken by the produce"
    );
    Ok(())
}

/// A fetch that asks for more bytes than one append brings (`fetch.min.bytes`, as the
/// projector's does) is not answered by that append, and is answered, long before its
/// wait is up, by the appends that bring what it asked for.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_asking_for_more_bytes_waits_for_them_not_for_each_append() -> Result<()> {
    let broker = BrokerProcess::start()?;
    create_topic(broker.addr(), "grow", 1).await?;
    let consumer = reader_asking(broker.addr(), "grow", 1, 10_000, 4_000)?;
    // Let its first fetch reach the broker and wait there.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let producer = producer(broker.addr())?;
    let small = "s".repeat(100);
    append(&producer, "grow", &small).await?;
    assert!(
        tokio::time::timeout(Duration::from_millis(1_500), consumer.recv())
            .await
            .is_err(),
        "an append of ~100 bytes answered a fetch that asked for 4000"
    );

    let big = "b".repeat(1_000);
    let sent = Instant::now();
    for _ in 0..8 {
        append(&producer, "grow", &big).await?;
    }
    let first = tokio::time::timeout(Duration::from_secs(15), consumer.recv()).await??;
    let took = sent.elapsed();
    assert_eq!(first.payload(), Some(small.as_bytes()));
    assert!(
        took < Duration::from_millis(4_000),
        "the records arrived {took:?} after 8 KB were appended: the fetch waited for its timeout"
    );
    Ok(())
}

/// One request over a fresh connection, its response decoded.
fn call(addr: &str, api_version: i16, body: Body, api_key: i16) -> Result<Body> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let header = Header::Request {
        api_key,
        api_version,
        correlation_id: 7,
        client_id: Some("notesaga-test".into()),
    };
    stream.write_all(&Frame::request(header, body)?)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut rest = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut rest)?;
    let mut whole = size.to_vec();
    whole.extend_from_slice(&rest);
    Ok(Frame::response_from_bytes(Bytes::from(whole), api_key, api_version)?.body)
}

fn produce_once(
    addr: &str,
    producer_id: i64,
    epoch: i16,
    sequence: i32,
) -> Result<(ErrorCode, i64)> {
    let batch = inflated::Batch::builder()
        .producer_id(producer_id)
        .producer_epoch(epoch)
        .base_sequence(sequence)
        .record(
            Record::builder()
                .key(Bytes::from_static(b"k").into())
                .value(Bytes::from_static(b"once").into()),
        )
        .build()?;
    let request = ProduceRequest::default()
        .acks(-1)
        .timeout_ms(30_000)
        .topic_data(Some(vec![TopicProduceData::default()
            .name("retried".into())
            .partition_data(Some(vec![PartitionProduceData::default()
                .index(0)
                .records(Some(Records {
                    batches: vec![batch.try_into()?],
                }))]))]));
    let body = call(addr, 9, request.into(), ProduceRequest::KEY)?;
    let response = ProduceResponse::try_from(body)?;
    let partition = &response.responses.unwrap_or_default()[0]
        .partition_responses
        .clone()
        .unwrap_or_default()[0];
    Ok((
        ErrorCode::try_from(partition.error_code)?,
        partition.base_offset,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_idempotent_batch_is_stored_once() -> Result<()> {
    let broker = BrokerProcess::start()?;
    create_topic(broker.addr(), "retried", 1).await?;
    let body = call(
        broker.addr(),
        4,
        InitProducerIdRequest::default()
            .transactional_id(None)
            .transaction_timeout_ms(60_000)
            .producer_id(Some(-1))
            .producer_epoch(Some(-1))
            .into(),
        InitProducerIdRequest::KEY,
    )?;
    let init = InitProducerIdResponse::try_from(body)?;
    assert_eq!(ErrorCode::try_from(init.error_code)?, ErrorCode::None);

    let first = produce_once(broker.addr(), init.producer_id, init.producer_epoch, 0)?;
    // The same batch again, as a producer retries one whose answer it never saw.
    let retry = produce_once(broker.addr(), init.producer_id, init.producer_epoch, 0)?;
    let next = produce_once(broker.addr(), init.producer_id, init.producer_epoch, 1)?;
    assert_eq!(first, (ErrorCode::None, 0));
    assert_eq!(
        retry,
        (ErrorCode::None, 0),
        "a retry is answered with the first copy's offset"
    );
    assert_eq!(next, (ErrorCode::None, 1));
    // A gap in the sequence is refused.
    let gap = produce_once(broker.addr(), init.producer_id, init.producer_epoch, 5)?;
    assert_eq!(gap.0, ErrorCode::OutOfOrderSequenceNumber);

    let consumer: BaseConsumer = client(broker.addr()).set("group.id", "count").create()?;
    let (low, high) = consumer.fetch_watermarks("retried", 0, Duration::from_secs(10))?;
    assert_eq!((low, high), (0, 2), "two batches stored, the retry not");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_records_survive_a_broker_sigkill_once_each() -> Result<()> {
    const RECORDS: usize = 4_000;
    const PARTITIONS: i32 = 3;
    let data = tempfile::tempdir()?;
    let dir = data.path().join("broker");
    let addr = free_addr();
    let mut broker = BrokerProcess::start_in(&dir, &addr)?;
    create_topic(&addr, "survive", PARTITIONS).await?;

    let producer = producer(&addr)?;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let sending = {
        let (producer, acked) = (producer.clone(), acked.clone());
        tokio::spawn(async move {
            let mut failed = 0usize;
            // In waves, so the kill lands in the middle of the load.
            for wave in (0..RECORDS).collect::<Vec<_>>().chunks(200) {
                let sends = wave.iter().map(|i| {
                    let (producer, acked) = (producer.clone(), acked.clone());
                    async move {
                        let key = format!("key-{i}");
                        let result = producer
                            .send(
                                FutureRecord::to("survive").key(&key).payload("payload"),
                                Timeout::Never,
                            )
                            .await;
                        if result.is_ok() {
                            acked.lock().unwrap().insert(key);
                            true
                        } else {
                            false
                        }
                    }
                });
                for ok in futures::future::join_all(sends).await {
                    failed += usize::from(!ok);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failed
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < RECORDS / 4 {
        if Instant::now() > deadline {
            bail!("the load did not get going");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    broker.kill();
    let acked_at_kill = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _broker = BrokerProcess::start_in(&dir, &addr)?;
    let failed = tokio::time::timeout(Duration::from_secs(180), sending)
        .await
        .context("the producer did not finish after the restart")??;

    let acked = acked.lock().unwrap().clone();
    let consumer: BaseConsumer = client(&addr).set("group.id", "marks").create()?;
    let mut expected = 0;
    for partition in 0..PARTITIONS {
        expected += consumer
            .fetch_watermarks("survive", partition, Duration::from_secs(10))?
            .1;
    }
    let reader = reader(&addr, "survive", PARTITIONS, 100)?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..expected {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv()).await??;
        let key = String::from_utf8(message.key().unwrap_or_default().to_vec())?;
        *seen.entry(key).or_default() += 1;
    }
    let missing: Vec<_> = acked.iter().filter(|k| !seen.contains_key(*k)).collect();
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "{RECORDS} sent, {acked_at_kill} acknowledged before the kill, {} acknowledged in all, {failed} failed, {expected} in the log",
        acked.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    Ok(())
}
