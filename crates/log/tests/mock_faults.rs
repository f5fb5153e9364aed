//! Fault injection with librdkafka's in-process mock cluster (`rdkafka::mocking`): produce and fetch errors,
//! dropped connections and the broker going down while records flow through the log
//! layer (publisher → topic → consumer loop). Nothing is lost, and the idempotent
//! producer's retries leave no duplicate on the topic.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Result;
use notesaga_events::notes::{NotePublished, NotesEvent};
use notesaga_log::{
    AvroCodec, ConsumerLoop, Handler, HandlerError, Incoming, KafkaConfig, Metadata, Publisher,
};
use notesaga_registry::{Registry, RegistryConfig};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    message::{Headers as _, Message as _},
    mocking::MockCluster,
    types::{RDKafkaApiKey, RDKafkaRespErr},
    ClientConfig, Offset, TopicPartitionList,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TOPIC: &str = "faults";
const RECORDS: usize = 300;

#[derive(Debug)]
struct Collect {
    seen: Arc<Mutex<HashMap<Uuid, usize>>>,
    done: CancellationToken,
}

impl Handler<NotesEvent> for Collect {
    async fn handle(&mut self, incoming: &Incoming<NotesEvent>) -> Result<(), HandlerError> {
        let mut seen = self.seen.lock().unwrap();
        *seen.entry(incoming.metadata.event_id).or_default() += 1;
        if seen.len() == RECORDS {
            self.done.cancel();
        }
        Ok(())
    }
}

fn publish_all(publisher: &Publisher, ids: Vec<Uuid>) -> tokio::task::JoinHandle<Result<()>> {
    let publisher = publisher.clone();
    tokio::spawn(async move {
        let sends = ids.into_iter().map(|id| {
            let publisher = publisher.clone();
            async move {
                let event = NotesEvent::NotePublished(NotePublished {
                    note_id: Uuid::new_v4(),
                    version: 1,
                    occurred_at: 0,
                });
                publisher
                    .publish(TOPIC, &event, &Metadata::new(id, "faults"))
                    .await
            }
        });
        futures::future::try_join_all(sends).await?;
        Ok(())
    })
}

/// Event ids of every record on the topic, read back outside any group.
fn event_ids_on_topic(bootstrap: &str) -> Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "faults-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut ids = Vec::new();
    for partition in 0..3 {
        let (low, high) = consumer.fetch_watermarks(TOPIC, partition, Duration::from_secs(10))?;
        if high <= low {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(TOPIC, partition, Offset::Offset(low))?;
        consumer.assign(&assignment)?;
        loop {
            let Some(message) = consumer.poll(Duration::from_secs(5)) else {
                continue;
            };
            let message = message?;
            let id = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "event_id"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            ids.push(id);
            if message.offset() + 1 >= high {
                break;
            }
        }
    }
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_faults_lose_nothing_and_duplicate_nothing() -> Result<()> {
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic(TOPIC, 3, 1)?;
    // The schema registry keeps its `_schemas` topic on the real broker (the mock cluster
    // does not create topics through the admin API); the faults are in the flow's path.
    let broker = notesaga_testkit::BrokerProcess::start()?;
    let registry = Registry::open(RegistryConfig::new(broker.addr())).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // Behind basic auth: the codec's credentials (in the URL) must reach the registry.
    let registry_url = format!("http://flow:pw@{}", listener.local_addr()?);
    let stop_registry = CancellationToken::new();
    tokio::spawn(notesaga_registry::serve(
        listener,
        registry,
        notesaga_registry::Access::users([notesaga_registry::User::new(
            "flow",
            "pw",
            notesaga_registry::Role::Write,
        )]),
        stop_registry.clone(),
    ));

    let kafka = KafkaConfig::new(bootstrap.clone());
    let publisher = Publisher::new(&kafka, Arc::new(AvroCodec::new(&registry_url)))?;
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let done = CancellationToken::new();
    let consumer = ConsumerLoop::new(kafka.clone(), "faults-group", &[TOPIC], publisher.clone());
    let consuming = tokio::spawn(consumer.run::<NotesEvent, _>(
        Collect {
            seen: seen.clone(),
            done: done.clone(),
        },
        done.clone(),
    ));

    let ids: Vec<Uuid> = (0..RECORDS).map(|_| Uuid::new_v4()).collect();
    // Retriable produce errors and dropped connections on produce and fetch.
    use RDKafkaRespErr::*;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR__TRANSPORT,
        ],
    );
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR__TRANSPORT,
        ],
    );
    let first = publish_all(&publisher, ids[..RECORDS / 2].to_vec());
    first.await??;

    // The broker goes down while the second half is being sent, and comes back.
    mock.broker_down(1)?;
    let second = publish_all(&publisher, ids[RECORDS / 2..].to_vec());
    tokio::time::sleep(Duration::from_secs(2)).await;
    mock.broker_up(1)?;
    second.await??;

    tokio::time::timeout(Duration::from_secs(60), done.cancelled()).await?;
    consuming.await??;
    stop_registry.cancel();

    let seen = seen.lock().unwrap().clone();
    for id in &ids {
        assert!(seen.contains_key(id), "record {id} was lost");
    }
    let on_topic = event_ids_on_topic(&bootstrap)?;
    assert_eq!(
        on_topic.len(),
        RECORDS,
        "producer retries must not duplicate records"
    );
    Ok(())
}
