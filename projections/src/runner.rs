//! The projection runner: one consumer group per projection, records applied in batches,
//! each batch in one SQL transaction together with the offsets it consumed.
//!
//! The offsets in `projection_offsets` are the truth: a record below the stored offset of
//! its partition was applied already and is skipped, so redelivery after a crash (the
//! Kafka commit follows the SQL commit) changes nothing.

use std::{collections::HashMap, sync::Arc, time::Duration};

use notesaga_log::{
    dlq::dead_letter_durably, telemetry::PROJECTION_APPLIED_TOTAL, AvroCodec, FlowEvent,
    KafkaConfig, Publisher, RetryPolicy,
};
use rdkafka::{
    consumer::{CommitMode, Consumer as _, StreamConsumer},
    message::{BorrowedMessage, Message as _},
};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{notes, ReadStore, Result};

/// Runs the notes projection.
#[derive(Debug)]
pub struct Projector {
    kafka: KafkaConfig,
    codec: Arc<AvroCodec>,
    publisher: Publisher,
    store: ReadStore,
    /// Most records in one transaction.
    pub batch_size: usize,
    /// How long to wait for a batch to fill once its first record arrived.
    pub batch_wait: Duration,
    retry: RetryPolicy,
}

impl Projector {
    /// A projector writing into `store`; `publisher` dead-letters undecodable records.
    pub fn new(kafka: KafkaConfig, publisher: Publisher, store: ReadStore) -> Self {
        Self {
            kafka,
            codec: publisher.codec().clone(),
            publisher,
            store,
            batch_size: 500,
            batch_wait: Duration::from_millis(20),
            retry: RetryPolicy::default(),
        }
    }

    /// The consumer group of the notes projection.
    pub fn group() -> String {
        format!("notesaga.projector.{}", notes::NAME)
    }

    /// Runs until `shutdown`; the batch in hand is finished and committed first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let group = Self::group();
        let mut config = self.kafka.consumer(&group);
        // Kafka offsets are only a hint here (the SQL ones decide): commit them after
        // each batch ourselves.
        config.set("enable.auto.commit", "false");
        let consumer: StreamConsumer = config.create()?;
        consumer.subscribe(&notes::TOPICS)?;
        info!(%group, "projecting");
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                message = consumer.recv() => message,
            };
            let mut batch = match first {
                Ok(message) => vec![message],
                Err(err) => {
                    warn!(%err, "consumer error");
                    continue;
                }
            };
            let deadline = tokio::time::Instant::now() + self.batch_wait;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(Ok(message)) => batch.push(message),
                    Ok(Err(err)) => warn!(%err, "consumer error"),
                    Err(_) => break,
                }
            }
            self.apply_batch(&group, &batch).await?;
            for message in &batch {
                if let Err(err) = consumer.store_offset_from_message(message) {
                    debug!(%err, "cannot store offset (partition revoked?)");
                }
            }
            if let Err(err) = consumer.commit_consumer_state(CommitMode::Async) {
                debug!(%err, "offset commit");
            }
        }
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
        consumer.unsubscribe();
        Ok(())
    }

    async fn apply_batch(&self, group: &str, batch: &[BorrowedMessage<'_>]) -> Result<()> {
        let mut decoded = Vec::with_capacity(batch.len());
        for message in batch {
            match self
                .codec
                .decode::<FlowEvent>(message.topic(), message.payload())
                .await
            {
                Ok(record) => decoded.push((message, Some(record))),
                Err(reason) => {
                    error!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %reason, "undecodable record: dead-lettering");
                    dead_letter_durably(&self.publisher, group, message, &reason, &self.retry)
                        .await?;
                    decoded.push((message, None));
                }
            }
        }
        let mut schedule = self.retry.schedule();
        loop {
            match self.transact(&decoded).await {
                Ok(applied) => {
                    metrics::counter!(PROJECTION_APPLIED_TOTAL, "projection" => notes::NAME)
                        .increment(applied);
                    return Ok(());
                }
                Err(err) => {
                    let Some(delay) = schedule.next_delay(None) else {
                        return Err(err);
                    };
                    warn!(%err, ?delay, "projection batch failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One transaction: the rows and the offsets they came from. Returns how many
    /// records were applied (the rest were below the stored offsets).
    async fn transact(&self, batch: &[(&BorrowedMessage<'_>, Option<FlowEvent>)]) -> Result<u64> {
        let mut tx = self.store.pool().begin().await?;
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        let mut applied = 0;
        for (message, record) in batch {
            let key = (message.topic().to_owned(), message.partition());
            if !next.contains_key(&key) {
                let stored = sqlx::query(
                    "SELECT next_offset FROM projection_offsets \
                     WHERE projection = $1 AND topic = $2 AND partition_id = $3",
                )
                .bind(notes::NAME)
                .bind(&key.0)
                .bind(i64::from(key.1))
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get::<i64, _>("next_offset"))
                .transpose()?
                .unwrap_or(0);
                next.insert(key.clone(), stored);
            }
            let next_offset = next.get_mut(&key).expect("inserted above");
            if message.offset() < *next_offset {
                continue;
            }
            if let Some(record) = record {
                let (_, metadata) = notesaga_log::Metadata::from_message(message);
                notes::apply(&mut tx, record, metadata.event_id, message.offset()).await?;
                applied += 1;
            }
            *next_offset = message.offset() + 1;
        }
        for ((topic, partition), next_offset) in &next {
            sqlx::query(
                "INSERT INTO projection_offsets (projection, topic, partition_id, next_offset) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (projection, topic, partition_id) \
                 DO UPDATE SET next_offset = excluded.next_offset",
            )
            .bind(notes::NAME)
            .bind(topic)
            .bind(i64::from(*partition))
            .bind(*next_offset)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}
