//! The idempotent, `acks=all` producer every role writes through.

use std::{sync::Arc, time::Duration};

use notesaga_events::Message;
use rdkafka::{
    message::OwnedHeaders,
    producer::{FutureProducer, FutureRecord, Producer as _},
    util::Timeout,
};

use crate::{AvroCodec, Error, KafkaConfig, Metadata, Result};

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Writes records to the log; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    codec: Arc<AvroCodec>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A producer for the cluster in `kafka`, encoding with `codec`.
    pub fn new(kafka: &KafkaConfig, codec: Arc<AvroCodec>) -> Result<Self> {
        Ok(Self {
            producer: kafka.producer().create()?,
            codec,
        })
    }

    /// The codec records are encoded with.
    pub fn codec(&self) -> &Arc<AvroCodec> {
        &self.codec
    }

    /// Fetches the cluster's metadata through this producer's client within `timeout`:
    /// whether the brokers answer at all (the API's readiness probe). It reuses the
    /// producer's connections instead of opening a client per probe.
    pub async fn check_broker(&self, timeout: Duration) -> Result<()> {
        let producer = self.producer.clone();
        // librdkafka's metadata call blocks its thread.
        tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|_| ())
        })
        .await
        .map_err(|err| Error::Timeout(format!("broker metadata probe panicked: {err}")))?
        .map_err(Error::from)
    }

    /// Appends `message` to `topic`, keyed by its note id, and waits until the broker has
    /// acknowledged it (`acks=all`): only then is its outcome durable.
    pub async fn publish<M: Message>(
        &self,
        topic: &str,
        message: &M,
        metadata: &Metadata,
    ) -> Result<Appended> {
        self.enqueue(topic, message, metadata).await?.await
    }

    /// Appends bytes as they are (dead letters, benchmarks).
    pub async fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<Appended> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        // Queue-full waits instead of failing; `message.timeout.ms` bounds the delivery.
        match self.producer.send(record, Timeout::Never).await {
            Ok(delivery) => Ok(Appended {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((source, _)) => Err(Error::Delivery {
                topic: topic.to_owned(),
                source,
            }),
        }
    }

    /// Queues `message` for `topic` without waiting for the broker; the returned future
    /// resolves once it is acknowledged. A handler that appends many records queues them
    /// all and then awaits them together: one round trip instead of one per record.
    /// Records queued to the same partition keep their order (the producer is
    /// idempotent); across partitions there is no order, so a caller that needs one
    /// record durable before another awaits the first before queueing the second.
    pub async fn enqueue<M: Message>(
        &self,
        topic: &str,
        message: &M,
        metadata: &Metadata,
    ) -> Result<impl std::future::Future<Output = Result<Appended>> + Send + Sync + 'static> {
        use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
        let payload = self.codec.encode(topic, message).await?;
        let key = message.note_id().hyphenated().to_string();
        let headers = metadata.to_headers(message.event_type());
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .headers(headers)
            .key(key.as_bytes())
            .payload(payload.as_slice());
        let delivery = loop {
            match self.producer.send_result(record) {
                Ok(delivery) => break delivery,
                // The local queue is full: wait for deliveries to drain it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((source, _)) => {
                    return Err(Error::Delivery {
                        topic: topic.to_owned(),
                        source,
                    })
                }
            }
        };
        let topic = topic.to_owned();
        Ok(async move {
            match delivery.await {
                Ok(Ok(delivery)) => Ok(Appended {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Ok(Err((source, _))) => Err(Error::Delivery { topic, source }),
                Err(_) => Err(Error::Delivery {
                    topic,
                    source: KafkaError::Canceled,
                }),
            }
        })
    }
}
