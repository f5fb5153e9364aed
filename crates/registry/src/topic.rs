//! The `_schemas` topic on the broker: creating it, appending records with an idempotent
//! producer, and following it into the shared state.

use std::{sync::Arc, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer as _, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    producer::{FutureProducer, FutureRecord, Producer as _},
    ClientConfig, Message as _, Offset, TopicPartitionList,
};
use tokio_util::sync::CancellationToken;

use crate::{
    error::{Error, Result},
    records::{self, Record},
    registry::Shared,
    RegistryConfig,
};

/// How long a broker round trip (topic creation, metadata, a produce) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Kafka { context, source }
}

/// Appends records to the topic.
pub(crate) struct TopicLog {
    topic: String,
    producer: FutureProducer,
}

impl std::fmt::Debug for TopicLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicLog")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl TopicLog {
    /// Creates the topic if it is missing, checks it has one partition, and returns the
    /// log plus a consumer assigned to the whole partition from its beginning.
    pub(crate) async fn connect(config: &RegistryConfig) -> Result<(Self, StreamConsumer)> {
        let topic = config.topic.as_str();
        create_topic(config).await?;
        let mut producer = config.client();
        producer
            // Retries must not duplicate or reorder records: the topic is the registry.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                REQUEST_TIMEOUT.as_millis().to_string(),
            )
            // Writes are rare and a client waits on each one; batching only adds latency.
            .set("linger.ms", "0");
        let producer: FutureProducer = with_options(producer, config)
            .create()
            .map_err(kafka("creating the schemas producer"))?;
        let log = Self {
            topic: topic.to_owned(),
            producer,
        };
        log.check_partitions().await?;

        let mut consumer = config.client();
        consumer
            // librdkafka wants a group even for a manual assignment; it is never joined or
            // committed to, since every instance reads the whole topic from the start.
            .set("group.id", "notesaga.registry")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Other instances' writes show up within this long.
            .set("fetch.wait.max.ms", "100");
        let consumer: StreamConsumer = with_options(consumer, config)
            .create()
            .map_err(kafka("creating the schemas reader"))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(kafka("assigning the schemas partition"))?;
        consumer
            .assign(&assignment)
            .map_err(kafka("assigning the schemas partition"))?;
        Ok((log, consumer))
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Appends a record once the broker has acknowledged it (acks=all) and returns its offset.
    pub(crate) async fn append(&self, record: &Record) -> Result<i64> {
        let (key, value) = records::encode(record);
        let mut message = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .key(&key)
            .partition(0);
        if let Some(value) = &value {
            message = message.payload(value);
        }
        let delivery =
            self.producer
                .send(message, REQUEST_TIMEOUT)
                .await
                .map_err(|(source, _)| Error::Kafka {
                    context: format!("appending to {}", self.topic),
                    source,
                })?;
        tracing::debug!(
            messaging.destination.name = %self.topic,
            messaging.kafka.offset = delivery.offset,
            "appended a schemas record"
        );
        Ok(delivery.offset)
    }

    /// Refuses a topic with several partitions: the registry needs one total order.
    async fn check_partitions(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let producer = self.producer.clone();
            let topic = self.topic.clone();
            let partitions = tokio::task::spawn_blocking(move || {
                let metadata = producer
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))?;
                Ok::<_, KafkaError>(
                    metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map(|t| t.partitions().len()),
                )
            })
            .await?
            .map_err(kafka(format!("reading the metadata of {}", self.topic)))?;
            match partitions {
                Some(1) => return Ok(()),
                Some(partitions) if partitions > 1 => {
                    return Err(Error::TopicPartitions {
                        topic: self.topic.clone(),
                        partitions,
                    })
                }
                // Just created: the metadata may lag behind.
                _ if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => {
                    return Err(Error::TopicMissing {
                        topic: self.topic.clone(),
                        waited: REQUEST_TIMEOUT,
                    })
                }
            }
        }
    }
}

/// Creates the topic (one partition, compacted) unless it exists; the broker does not
/// create topics on its own.
async fn create_topic(config: &RegistryConfig) -> Result<()> {
    let topic = config.topic.as_str();
    let admin: AdminClient<DefaultClientContext> = config
        .client()
        .create()
        .map_err(kafka("creating the admin client"))?;
    // On a cluster the schemas topic must survive losing a broker: operators set the
    // replication factor (and min.insync.replicas) as for every other topic.
    let min_insync = config.min_insync_replicas.to_string();
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(config.replication_factor))
        // Compaction keeps the latest record per key, which is all the registry needs, and
        // keeps the topic from growing with every re-registration.
        .set("cleanup.policy", "compact");
    let new_topic = if config.min_insync_replicas > 1 {
        new_topic.set("min.insync.replicas", &min_insync)
    } else {
        new_topic
    };
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(kafka(format!("creating topic {topic}")))?;
    for result in results {
        match result {
            Ok(_) => {
                tracing::info!(messaging.destination.name = %topic, "created the schemas topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Kafka {
                    context: format!("creating topic {name}"),
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

/// Reads the topic into `shared` until `stop` is cancelled, so this instance converges
/// with what other instances write.
pub(crate) async fn follow(
    consumer: StreamConsumer,
    topic: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                let offset = message.offset();
                let record =
                    records::decode(message.key(), message.payload()).unwrap_or_else(|err| {
                        // One bad record must not stop the registry: skip it, loudly.
                        tracing::warn!(
                            messaging.destination.name = %topic,
                            messaging.kafka.offset = offset,
                            error = %err,
                            "skipping a record that is not a schema registry record"
                        );
                        Record::Noop
                    });
                shared.apply(offset, &record);
            }
            Err(err) => {
                // librdkafka reconnects by itself; these are reports, not a dead consumer.
                tracing::warn!(messaging.destination.name = %topic, error = %err, "reading the schemas topic");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

/// `config` with the registry's extra librdkafka settings applied last, so they win.
fn with_options(mut client: ClientConfig, config: &RegistryConfig) -> ClientConfig {
    for (key, value) in &config.kafka_options {
        client.set(key, value);
    }
    client
}
