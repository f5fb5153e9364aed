//! Rebuild while serving: a projection built afresh from offset 0 into a shadow copy
//! ([`crate::shadow`]) beside the live tables, inside the running projector, while the
//! API keeps answering from the live tables; then swapped in atomically.
//!
//! 1. Read every partition of the projection's topics from its first record, outside
//!    any consumer group, and apply the records to the shadow with the live runner's own
//!    transaction ([`crate::runner::transact`]): the same folds, the same offsets table.
//! 2. Once the shadow is within a batch of the high watermarks, ask the live runner to
//!    pause between batches; take the high watermarks again and read up to them, so the
//!    shadow is at or past everything the live runner applied.
//! 3. Swap in one transaction (the live rows and offset rows become the shadow's), then
//!    let the live runner resume from the swapped-in offsets.
//!
//! Progress goes to the job's row every half second.

use std::{collections::HashMap, sync::Arc, time::Duration};

use notesaga_log::{AvroCodec, FlowEvent, KafkaConfig};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _, StreamConsumer},
    message::Message as _,
    ClientConfig, Offset, TopicPartitionList,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::{
    jobs::{JobState, Progress},
    runner::{transact, PauseRequest, Record},
    shadow::Shadow,
    Error, ReadStore, Result,
};

/// Records between the rebuild and the high watermarks in the last progress report.
pub const REBUILD_LAG: &str = "notesaga_projection_rebuild_lag";
/// Records per second the rebuild reads.
pub const REBUILD_RATE: &str = "notesaga_projection_rebuild_events_per_second";

/// How often progress is written (and the high watermarks taken again).
const REPORT_EVERY: Duration = Duration::from_millis(500);
/// How long the broker may take to answer a metadata or watermark request.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// `(topic, partition)`.
type Partition = (String, i32);

/// Where the rebuild is in each partition, against the log's watermarks. Pure
/// bookkeeping, so the figures a job shows are table-tested.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Positions {
    /// First offset of each partition when the rebuild started.
    low: HashMap<Partition, i64>,
    /// Its high watermark when last measured.
    high: HashMap<Partition, i64>,
    /// Next offset the rebuild reads (absent: `low`).
    next: HashMap<Partition, i64>,
}

impl Positions {
    pub(crate) fn new(marks: &HashMap<Partition, (i64, i64)>) -> Self {
        Self {
            low: marks
                .iter()
                .map(|(p, (low, _))| (p.clone(), *low))
                .collect(),
            high: marks
                .iter()
                .map(|(p, (_, high))| (p.clone(), *high))
                .collect(),
            next: HashMap::new(),
        }
    }

    /// New high watermarks (the low ones are kept: they are where the rebuild began).
    pub(crate) fn remeasure(&mut self, marks: &HashMap<Partition, (i64, i64)>) {
        for (partition, (low, high)) in marks {
            self.low.entry(partition.clone()).or_insert(*low);
            self.high.insert(partition.clone(), *high);
        }
    }

    /// The rebuild read the record at `offset`.
    pub(crate) fn read(&mut self, partition: &Partition, offset: i64) {
        let next = self.next.entry(partition.clone()).or_insert(0);
        *next = (*next).max(offset + 1);
    }

    fn next_of(&self, partition: &Partition) -> i64 {
        self.next
            .get(partition)
            .copied()
            .unwrap_or_else(|| self.low.get(partition).copied().unwrap_or(0))
    }

    /// Records read since the start.
    pub(crate) fn applied(&self) -> i64 {
        self.low
            .iter()
            .map(|(partition, low)| (self.next_of(partition) - low).max(0))
            .sum()
    }

    /// Records in the log from the rebuild's start points to the high watermarks.
    pub(crate) fn total(&self) -> i64 {
        self.high
            .iter()
            .map(|(partition, high)| (high - self.low.get(partition).copied().unwrap_or(0)).max(0))
            .sum()
    }

    /// Records still to read up to the high watermarks.
    pub(crate) fn lag(&self) -> i64 {
        self.high
            .iter()
            .map(|(partition, high)| (high - self.next_of(partition)).max(0))
            .sum()
    }
}

/// Everything a rebuild of one projection needs; the runner makes one and runs each job
/// it claims with it.
#[derive(Debug)]
pub(crate) struct Rebuild {
    pub(crate) kafka: KafkaConfig,
    pub(crate) codec: Arc<AvroCodec>,
    pub(crate) live: ReadStore,
    pub(crate) projection: &'static str,
    pub(crate) topics: &'static [&'static str],
    pub(crate) group: String,
    pub(crate) batch_size: usize,
    pub(crate) pause: mpsc::Sender<PauseRequest>,
}

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the log while the live runner runs.
    CatchingUp,
    /// The live runner is paused; reading up to the watermarks taken then.
    Draining,
}

impl Rebuild {
    /// Rebuilds the projection for job `job_id`, swaps it in and drops the shadow. On an
    /// error the live tables are as they were.
    pub(crate) async fn run(&self, job_id: Uuid, shutdown: &CancellationToken) -> Result<()> {
        let shadow = Shadow::beside(&self.live, self.projection)?;
        let store = match shadow.create().await {
            Ok(store) => store,
            Err(err) => {
                shadow.remove(None).await;
                return Err(err);
            }
        };
        let result = self.build(job_id, &shadow, &store, shutdown).await;
        shadow.remove(Some(store)).await;
        result
    }

    fn consumer_config(&self) -> ClientConfig {
        let mut config = self.kafka.client();
        config
            // Never joins the group (the partitions are assigned, not subscribed) and
            // never commits: the group only names the client in the broker's logs.
            .set("group.id", format!("{}.rebuild", self.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100");
        config
    }

    async fn build(
        &self,
        job_id: Uuid,
        shadow: &Shadow,
        store: &ReadStore,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let config = self.consumer_config();
        let meta: Arc<BaseConsumer> = Arc::new(config.create()?);
        let marks = watermarks(meta.clone(), self.topics).await?;
        let mut positions = Positions::new(&marks);
        let consumer: StreamConsumer = config.create()?;
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), (low, _)) in &marks {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(*low))?;
        }
        consumer.assign(&assignment)?;

        let started = Instant::now();
        let mut reported = Instant::now();
        let mut phase = Phase::CatchingUp;
        // Dropping it (on any return) lets the live runner go on.
        let mut resume: Option<oneshot::Sender<()>> = None;
        loop {
            if shutdown.is_cancelled() {
                return Err(Error::Rebuild("the projector shut down".into()));
            }
            let batch = self.next_batch(&consumer).await;
            if !batch.is_empty() {
                transact(store, self.projection, &batch).await?;
                for record in &batch {
                    positions.read(&(record.topic.clone(), record.partition), record.offset);
                }
            }
            if phase == Phase::Draining && positions.lag() == 0 {
                self.report(job_id, JobState::Swapping, &positions, started)
                    .await?;
                shadow.swap(&self.live, self.projection).await?;
                if let Some(resume) = resume.take() {
                    let _ = resume.send(());
                }
                info!(%job_id, projection = self.projection, events = positions.applied(), "rebuild done");
                return Ok(());
            }
            if reported.elapsed() < REPORT_EVERY && !batch.is_empty() {
                continue;
            }
            reported = Instant::now();
            if phase == Phase::CatchingUp {
                positions.remeasure(&watermarks(meta.clone(), self.topics).await?);
                let caught_up = positions.lag() <= self.batch_size as i64;
                if caught_up {
                    resume = Some(self.pause_live(shutdown).await?);
                    // The live runner applied nothing past these: read up to them.
                    positions.remeasure(&watermarks(meta.clone(), self.topics).await?);
                    phase = Phase::Draining;
                }
            }
            let state = match phase {
                Phase::CatchingUp => JobState::Running,
                Phase::Draining => JobState::Swapping,
            };
            self.report(job_id, state, &positions, started).await?;
        }
    }

    /// Up to a batch of records: waits a moment for the first, then a little for more.
    async fn next_batch(&self, consumer: &StreamConsumer) -> Vec<Record> {
        let mut batch = Vec::new();
        let mut deadline = Instant::now() + Duration::from_millis(200);
        while batch.len() < self.batch_size {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => {
                    let event = match self
                        .codec
                        .decode::<FlowEvent>(message.topic(), message.payload())
                        .await
                    {
                        Ok(event) => Some(event),
                        Err(reason) => {
                            // The live runner dead-lettered it already.
                            warn!(%reason, "rebuild: skipping an undecodable record");
                            None
                        }
                    };
                    batch.push(Record::from_message(&message, event));
                    if batch.len() == 1 {
                        deadline = Instant::now() + Duration::from_millis(20);
                    }
                }
                Ok(Err(err)) => warn!(%err, "rebuild: consumer error"),
                Err(_) => break,
            }
        }
        batch
    }

    /// Asks the live runner to stop between batches; returns once it has, with the
    /// sender that lets it go on.
    async fn pause_live(&self, shutdown: &CancellationToken) -> Result<oneshot::Sender<()>> {
        let (paused_tx, paused_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel();
        let not_running = || Error::Rebuild("the live projection runner is not running".into());
        self.pause
            .send(PauseRequest {
                paused: paused_tx,
                resume: resume_rx,
            })
            .await
            .map_err(|_| not_running())?;
        tokio::select! {
            paused = paused_rx => paused.map_err(|_| not_running())?,
            () = shutdown.cancelled() => return Err(Error::Rebuild("the projector shut down".into())),
        }
        info!(
            projection = self.projection,
            "live runner paused; finishing the rebuild"
        );
        Ok(resume_tx)
    }

    async fn report(
        &self,
        job_id: Uuid,
        state: JobState,
        positions: &Positions,
        started: Instant,
    ) -> Result<()> {
        let seconds = started.elapsed().as_secs_f64();
        let applied = positions.applied();
        let per_second = if seconds > 0.0 {
            applied as f64 / seconds
        } else {
            0.0
        };
        let progress = Progress {
            applied,
            total: positions.total(),
            per_second,
            lag: positions.lag(),
        };
        metrics::gauge!(REBUILD_LAG, "projection" => self.projection).set(progress.lag as f64);
        metrics::gauge!(REBUILD_RATE, "projection" => self.projection).set(per_second);
        self.live.job_progress(job_id, state, progress).await
    }
}

/// The low and high watermarks of every partition of `topics` (blocking calls, so off
/// the runtime).
async fn watermarks(
    consumer: Arc<BaseConsumer>,
    topics: &'static [&'static str],
) -> Result<HashMap<Partition, (i64, i64)>> {
    tokio::task::spawn_blocking(move || {
        let mut marks = HashMap::new();
        for topic in topics {
            let metadata = consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT)?;
            for found in metadata.topics() {
                for partition in found.partitions() {
                    let id = partition.id();
                    let (low, high) = consumer.fetch_watermarks(topic, id, BROKER_TIMEOUT)?;
                    marks.insert(((*topic).to_owned(), id), (low, high));
                }
            }
        }
        Ok(marks)
    })
    .await
    .map_err(|err| Error::Rebuild(format!("watermark lookup panicked: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, partition: i32) -> Partition {
        (topic.to_owned(), partition)
    }

    #[test]
    fn progress_against_the_watermarks() {
        let marks = HashMap::from([
            (p("a", 0), (0, 10)),
            (p("a", 1), (5, 5)),
            (p("b", 0), (2, 6)),
        ]);
        let mut positions = Positions::new(&marks);
        // (records read as (partition, offset), applied, total, lag)
        type Step = (Vec<(Partition, i64)>, i64, i64, i64);
        let steps: Vec<Step> = vec![
            (vec![], 0, 14, 14),
            (vec![(p("a", 0), 0), (p("a", 0), 1)], 2, 14, 12),
            (vec![(p("b", 0), 2), (p("b", 0), 5)], 6, 14, 8),
            // A redelivered record moves nothing back.
            (vec![(p("a", 0), 0)], 6, 14, 8),
            (vec![(p("a", 0), 9)], 14, 14, 0),
        ];
        for (read, applied, total, lag) in steps {
            for (partition, offset) in read {
                positions.read(&partition, offset);
            }
            assert_eq!(
                (positions.applied(), positions.total(), positions.lag()),
                (applied, total, lag)
            );
        }
        // The log grew: the total and the lag grow, the start points stay.
        positions.remeasure(&HashMap::from([(p("a", 0), (3, 12)), (p("a", 1), (5, 7))]));
        assert_eq!(
            (positions.applied(), positions.total(), positions.lag()),
            (14, 18, 4)
        );
    }
}
