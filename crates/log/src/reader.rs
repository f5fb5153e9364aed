//! Reads one partition from its first record to its current end, outside any consumer
//! group: how a role rebuilds the state of the partitions it was just assigned.

use std::time::Duration;

use rdkafka::{
    consumer::{BaseConsumer, Consumer as _, StreamConsumer},
    message::Message as _,
    Offset, TopicPartitionList,
};
use tracing::warn;
use uuid::Uuid;

use crate::{AvroCodec, Error, Inbound, Incoming, KafkaConfig, Metadata, Result};

/// How long a rebuild may wait for the broker before giving up (it is then retried).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Every record of `topic`/`partition` up to the end as it is now, in log order.
/// Records that cannot be decoded are skipped with a warning (they were written by a
/// foreign producer; the processors' own DLQ handles commands, not their history).
pub async fn read_partition<M: Inbound>(
    kafka: &KafkaConfig,
    codec: &AvroCodec,
    topic: &str,
    partition: i32,
) -> Result<Vec<Incoming<M>>> {
    let mut config = kafka.client();
    config
        .set(
            "group.id",
            format!("notesaga.reader.{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let (low, high) = watermarks(&config, topic, partition).await?;
    if high <= low {
        return Ok(Vec::new());
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
    let consumer: StreamConsumer = config.create()?;
    consumer.assign(&assignment)?;

    let mut records = Vec::with_capacity(usize::try_from(high - low).unwrap_or(0));
    loop {
        let message = tokio::time::timeout(READ_TIMEOUT, consumer.recv())
            .await
            .map_err(|_| Error::Timeout(format!("reading {topic}/{partition} up to {high}")))??;
        let offset = message.offset();
        let (_, metadata) = Metadata::from_message(&message);
        match codec.decode::<M>(topic, message.payload()).await {
            Ok(decoded) => records.push(Incoming {
                message: decoded,
                metadata,
                topic: topic.to_owned(),
                partition,
                offset,
            }),
            Err(reason) => warn!(topic, partition, offset, %reason, "skipping undecodable record"),
        }
        if offset + 1 >= high {
            return Ok(records);
        }
    }
}

/// The low and high watermarks of a partition (a blocking call, so off the runtime).
pub async fn watermarks(
    config: &rdkafka::ClientConfig,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64)> {
    let config = config.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        consumer
            .fetch_watermarks(&topic, partition, READ_TIMEOUT)
            .map_err(Error::from)
    })
    .await
    .map_err(|err| Error::Timeout(format!("watermark lookup panicked: {err}")))?
}
