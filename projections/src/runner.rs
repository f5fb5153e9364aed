//! The projection runner: one consumer group per projection, records applied in batches,
//! each batch in one SQL transaction together with the offsets it consumed.
//!
//! The offsets in `projection_offsets` are the truth. On every assignment the consumer
//! starts each partition at its stored offset (at the beginning where none is stored),
//! whatever the group's committed offsets say: the Kafka commit after each batch is only
//! a hint for tools. A record below the stored offset of its partition was applied
//! already and is skipped, so a redelivery changes nothing.
//!
//! Between batches the runner also lets a rebuild ([`crate::rebuild`]) of its projection
//! pause it, swap the rebuilt tables in, and resume it; it polls the `projection_jobs`
//! table for queued rebuilds itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use notesaga_log::{
    dlq::dead_letter_durably, telemetry::PROJECTION_APPLIED_TOTAL, AvroCodec, FlowEvent,
    KafkaConfig, Publisher, RetryPolicy,
};
use rdkafka::{
    consumer::{
        BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol, StreamConsumer,
    },
    message::{BorrowedMessage, Message as _},
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use sqlx::Row as _;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::{notes, rebuild::Rebuild, ReadStore, Result};

/// Where each partition of a projection continues: `(topic, partition)` → next offset.
pub(crate) type Offsets = HashMap<(String, i32), i64>;

/// The fault point inside a batch's transaction (rows written, offsets not yet): the
/// crash tests hold a projector there and SIGKILL it.
pub const BATCH_FAULT_POINT: &str = "projection.batch.pause";

/// The projector's fetches. It applies what it reads in batches that wait
/// [`Projector::batch_wait`] to fill anyway, so its fetch need not come back on every
/// append: a broker that wakes fetches (notesaga-broker, Kafka) would answer each of a
/// saga's dozen appends with a fetch of its own, each costing the broker, librdkafka and
/// the runtime a round of work. Held until 64 KiB are there or 20 ms passed, it comes
/// back about 50 times a second under load, for at most 20 ms more lag. Overridable
/// with `--kafka-option` like every client setting.
const FETCH_DEFAULTS: [(&str, &str); 2] =
    [("fetch.min.bytes", "65536"), ("fetch.wait.max.ms", "20")];

/// How often a projector looks for queued rebuild jobs.
const JOB_POLL: Duration = Duration::from_millis(500);
/// How long a batch waits before it tries again when SQLite's write lock was taken.
const LOCK_CONTENTION_PAUSE: Duration = Duration::from_millis(50);

/// One consumed record, decoded (`None`: undecodable, dead-lettered or skipped).
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) event: Option<(FlowEvent, Uuid)>,
}

impl Record {
    pub(crate) fn from_message(message: &BorrowedMessage<'_>, event: Option<FlowEvent>) -> Self {
        let (_, metadata) = notesaga_log::Metadata::from_message(message);
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            event: event.map(|event| (event, metadata.event_id)),
        }
    }
}

/// A rebuild's request to hold the live runner between batches: the runner answers on
/// `paused` and waits for `resume` (or for its sender to be dropped).
#[derive(Debug)]
pub(crate) struct PauseRequest {
    pub(crate) paused: oneshot::Sender<()>,
    pub(crate) resume: oneshot::Receiver<()>,
}

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

/// Starts every assigned partition at the offset the SQL store holds for it: the
/// assignment is rewritten before it is applied, so no record is fetched from the
/// group's committed offsets first.
/// It also reports the group's lag from librdkafka's statistics.
struct SeekToStored {
    offsets: Arc<Mutex<Offsets>>,
    group: String,
}

impl ClientContext for SeekToStored {
    fn stats(&self, statistics: rdkafka::Statistics) {
        notesaga_log::telemetry::record_lag(&self.group, &statistics);
    }
}

impl ConsumerContext for SeekToStored {
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            base_consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
                let assigned: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                for (topic, partition) in &assigned {
                    let start = offsets
                        .get(&(topic.clone(), *partition))
                        .map_or(Offset::Beginning, |next| Offset::Offset(*next));
                    if let Err(err) = tpl.set_partition_offset(topic, *partition, start) {
                        warn!(%err, topic, partition, "cannot set the stored offset");
                    }
                }
                info!(
                    partitions = assigned.len(),
                    "partitions assigned; starting at the stored offsets"
                );
                if cooperative {
                    base_consumer.incremental_assign(tpl)
                } else {
                    base_consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = tpl.count(), "partitions revoked");
                if cooperative {
                    base_consumer.incremental_unassign(tpl)
                } else {
                    base_consumer.unassign()
                }
            }
            other => {
                warn!(?other, "rebalance error");
                base_consumer.unassign()
            }
        };
        if let Err(err) = result {
            error!(%err, "cannot apply the assignment");
        }
    }
}

/// Every stored offset of `projection`.
pub(crate) async fn stored_offsets(store: &ReadStore, projection: &str) -> Result<Offsets> {
    offsets_of(store.pool(), projection).await
}

/// Every stored offset of `projection`, read through `executor` (the pool, or a
/// transaction's connection).
async fn offsets_of<'e, E>(executor: E, projection: &str) -> Result<Offsets>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT topic, partition_id, next_offset FROM projection_offsets WHERE projection = $1",
    )
    .bind(projection.to_owned())
    .fetch_all(executor)
    .await?;
    rows.iter().map(offset_row).collect()
}

/// One transaction on `store`: the rows `batch` produces and the offsets it came from.
/// Returns how many records were applied (the rest were below the stored offsets) and
/// the next offset of every partition the batch touched. The same for the live tables
/// and a rebuild's shadow copy.
pub(crate) async fn transact(
    store: &ReadStore,
    projection: &str,
    batch: &[Record],
) -> Result<(u64, Offsets)> {
    let mut tx = store.pool().begin().await?;
    // Every stored offset of the projection in one statement, read inside the batch's
    // transaction: a batch touches many partitions (30 when the topics have six), and
    // a statement per partition was a round trip to the database for each.
    let stored = offsets_of(&mut *tx, projection).await?;
    let mut next: Offsets = HashMap::new();
    let mut applied = 0;
    for record in batch {
        let key = (record.topic.clone(), record.partition);
        let next_offset = next
            .entry(key)
            .or_insert_with_key(|key| stored.get(key).copied().unwrap_or(0));
        if record.offset < *next_offset {
            continue;
        }
        if let Some((event, event_id)) = &record.event {
            notes::apply(&mut tx, event, *event_id, record.offset).await?;
            applied += 1;
        }
        *next_offset = record.offset + 1;
    }
    // Rows written, offsets not yet: where a crash test holds the projector to kill it.
    notesaga_log::faults::pause(BATCH_FAULT_POINT).await;
    store_offsets(&mut tx, projection, &next).await?;
    tx.commit().await?;
    Ok((applied, next))
}

/// Most partitions one upsert writes (4 bind parameters each, far below the limits of
/// SQLite and PostgreSQL).
const OFFSETS_PER_STATEMENT: usize = 256;

/// Upserts `next` as the stored offsets of `projection`, one multi-row statement per
/// [`OFFSETS_PER_STATEMENT`] partitions.
async fn store_offsets(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    projection: &str,
    next: &Offsets,
) -> Result<()> {
    let entries: Vec<_> = next.iter().collect();
    for chunk in entries.chunks(OFFSETS_PER_STATEMENT) {
        let values = notesaga_sql::row_placeholders(chunk.len(), 4);
        let sql = format!(
            "INSERT INTO projection_offsets (projection, topic, partition_id, next_offset) \
             VALUES {values} ON CONFLICT (projection, topic, partition_id) \
             DO UPDATE SET next_offset = excluded.next_offset"
        );
        let mut query = sqlx::query(&sql);
        for ((topic, partition), next_offset) in chunk {
            query = query
                .bind(projection.to_owned())
                .bind(topic.clone())
                .bind(i64::from(*partition))
                .bind(**next_offset);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// A `projection_offsets` row as `((topic, partition), next_offset)`.
fn offset_row(row: &sqlx::any::AnyRow) -> Result<((String, i32), i64)> {
    let partition: i64 = row.try_get("partition_id")?;
    Ok((
        (
            row.try_get::<String, _>("topic")?,
            i32::try_from(partition).unwrap_or(i32::MAX),
        ),
        row.try_get::<i64, _>("next_offset")?,
    ))
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

    /// Runs until `shutdown`; the batch in hand is finished and committed first. Rebuild
    /// jobs of the projection queued meanwhile are run beside it.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let (pause_tx, pause_rx) = mpsc::channel(1);
        let rebuild = Rebuild {
            kafka: self.kafka.clone(),
            codec: self.codec.clone(),
            live: self.store.clone(),
            projection: notes::NAME,
            topics: &notes::TOPICS,
            group: Self::group(),
            batch_size: self.batch_size,
            pause: pause_tx,
        };
        // The rebuild ends with the runner (it cannot swap without it), whether the
        // runner stops for `shutdown` or for an error.
        let jobs_stop = shutdown.child_token();
        let jobs = tokio::spawn(poll_jobs(rebuild, jobs_stop.clone()));
        let result = self.consume(pause_rx, &shutdown).await;
        jobs_stop.cancel();
        let _ = jobs.await;
        result
    }

    async fn consume(
        &self,
        mut pauses: mpsc::Receiver<PauseRequest>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let group = Self::group();
        let offsets = Arc::new(Mutex::new(stored_offsets(&self.store, notes::NAME).await?));
        let mut config = self.kafka.consumer_with(&group, &FETCH_DEFAULTS);
        // Kafka offsets are only a hint here (the SQL ones decide): commit them after
        // each batch ourselves.
        config.set("enable.auto.commit", "false").set(
            "statistics.interval.ms",
            notesaga_log::telemetry::STATISTICS_INTERVAL_MS,
        );
        let consumer: StreamConsumer<SeekToStored> = config.create_with_context(SeekToStored {
            offsets: offsets.clone(),
            group: group.clone(),
        })?;
        consumer.subscribe(&notes::TOPICS)?;
        info!(%group, "projecting");
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(request) = pauses.recv() => {
                    self.hold(request, &consumer, &offsets, shutdown).await?;
                    continue;
                }
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
            let next = self.apply_batch(&group, &batch).await?;
            offsets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(next);
            for message in &batch {
                if let Err(err) = consumer.store_offset_from_message(message) {
                    debug!(%err, "cannot store offset (partition revoked?)");
                }
            }
            if let Err(err) = consumer.commit_consumer_state(CommitMode::Async) {
                debug!(%err, "offset commit");
            }
        }
        // Bounded: a dead broker must not hold the projector (docs/operations.md).
        notesaga_log::consumer::close_within(consumer, &group, notesaga_log::consumer::CLOSE_BOUND)
            .await;
        Ok(())
    }

    /// Holds still between batches while a rebuild swaps its tables in, then continues
    /// from the swapped-in offsets (which are at or past the ones this runner had).
    async fn hold(
        &self,
        request: PauseRequest,
        consumer: &StreamConsumer<SeekToStored>,
        offsets: &Mutex<Offsets>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        info!(projection = notes::NAME, "paused for a rebuild's swap");
        let _ = request.paused.send(());
        tokio::select! {
            _ = request.resume => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let stored = stored_offsets(&self.store, notes::NAME).await?;
        // Skip what the rebuild already applied instead of reading it to skip it.
        if let Ok(assignment) = consumer.assignment() {
            for element in assignment.elements() {
                let key = (element.topic().to_owned(), element.partition());
                if let Some(next) = stored.get(&key) {
                    if let Err(err) =
                        consumer.seek(&key.0, key.1, Offset::Offset(*next), Duration::from_secs(5))
                    {
                        debug!(%err, topic = key.0, partition = key.1, "seek after the swap");
                    }
                }
            }
        }
        *offsets.lock().unwrap_or_else(|e| e.into_inner()) = stored;
        info!(projection = notes::NAME, "resumed after the swap");
        Ok(())
    }

    async fn apply_batch(&self, group: &str, batch: &[BorrowedMessage<'_>]) -> Result<Offsets> {
        let mut decoded = Vec::with_capacity(batch.len());
        for message in batch {
            match self
                .codec
                .decode::<FlowEvent>(message.topic(), message.payload())
                .await
            {
                Ok(record) => decoded.push(Record::from_message(message, Some(record))),
                Err(reason) => {
                    error!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %reason, "undecodable record: dead-lettering");
                    dead_letter_durably(&self.publisher, group, message, &reason, &self.retry)
                        .await?;
                    decoded.push(Record::from_message(message, None));
                }
            }
        }
        let mut schedule = self.retry.schedule();
        loop {
            match transact(&self.store, notes::NAME, &decoded).await {
                Ok((applied, next)) => {
                    metrics::counter!(PROJECTION_APPLIED_TOTAL, "projection" => notes::NAME)
                        .increment(applied);
                    return Ok(next);
                }
                Err(err) if err.is_lock_contention() => {
                    // The batch rolled back whole; wait for the other writer and apply it
                    // again, however long the contention lasts (a busy API must not stop
                    // the projector).
                    debug!(%err, "read store locked by another writer; retrying the batch");
                    tokio::time::sleep(LOCK_CONTENTION_PAUSE).await;
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
}

/// Claims the projection's queued rebuild jobs and runs them, one at a time, until
/// `shutdown`.
async fn poll_jobs(rebuild: Rebuild, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(JOB_POLL) => {}
        }
        let job = match rebuild.live.claim_job(rebuild.projection).await {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(err) => {
                warn!(%err, "cannot look for rebuild jobs");
                continue;
            }
        };
        info!(job_id = %job.job_id, projection = rebuild.projection, "rebuild started");
        let outcome = rebuild.run(job.job_id, &shutdown).await;
        let error = match &outcome {
            Ok(()) => None,
            Err(err) => {
                error!(%err, job_id = %job.job_id, "rebuild failed");
                Some(err.to_string())
            }
        };
        if let Err(err) = rebuild.live.finish_job(job.job_id, error.as_deref()).await {
            error!(%err, job_id = %job.job_id, "cannot record the end of the rebuild");
        }
    }
}
