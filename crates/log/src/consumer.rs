//! The consumer loop every processor, the orchestrator and the projectors run on.
//!
//! For each record: decode it (or dead-letter it), give it to the [`Handler`], and store
//! its offset only once the handler returns, i.e. once its outcome is durable. Offsets
//! are committed from the stored ones in the background and once more on shutdown, so a
//! crash anywhere re-delivers at most the records whose outcome was not yet durable —
//! handlers are idempotent for that reason.

use std::{
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::FutureExt as _;
use rdkafka::{
    consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer},
    message::{BorrowedMessage, Message as _},
    ClientContext,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument as _};

use crate::{
    dlq::dead_letter_durably, telemetry, Inbound, KafkaConfig, Metadata, Publisher, Result,
    RetryPolicy,
};

/// How long a consumer loop lets the record (or batch) in hand finish once shutdown is
/// asked; past it the loop stops without storing its offset (docs/operations.md).
pub const DRAIN_BOUND: Duration = Duration::from_secs(10);

/// How long the last offset commit and leaving the group may take at shutdown; past it
/// the consumer is left behind (its thread dies with the process) so a dead or frozen
/// broker cannot hold the process (docs/operations.md).
pub const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// Runs `work` to its end; once `shutdown` is cancelled it gets `bound` more, then it
/// is dropped (`None`).
pub async fn drain_within<T>(
    shutdown: &CancellationToken,
    bound: Duration,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return Some(done),
        () = shutdown.cancelled() => {}
    }
    tokio::time::timeout(bound, work).await.ok()
}

/// Commits the stored offsets, leaves the group and destroys `consumer`, giving up after
/// `bound`. librdkafka's synchronous commit and its close (which `Drop` runs, polling
/// until the group is left) wait for the group coordinator without a limit, so with
/// the broker gone they never return: they run on a thread of their own, which is left
/// behind when the bound passes and ends with the process. Returns whether the consumer
/// closed in time.
pub async fn close_within<C>(consumer: StreamConsumer<C>, group: &str, bound: Duration) -> bool
where
    C: ConsumerContext + 'static,
{
    let (done, closed) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("consumer-close".into())
        .spawn(move || {
            if let Err(err) = consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last commit is the usual reason.
                debug!(%err, "final commit");
            }
            consumer.unsubscribe();
            drop(consumer);
            let _ = done.send(());
        });
    if let Err(err) = spawned {
        warn!(%group, %err, "cannot start a thread to close the consumer: leaving it behind");
        return false;
    }
    match tokio::time::timeout(bound, closed).await {
        Ok(_) => true,
        Err(_) => {
            warn!(%group, ?bound, "could not commit and leave the group in time (is the broker down?): leaving the consumer behind; records not committed are handled again by the next owner");
            false
        }
    }
}

/// A decoded record and where it came from.
#[derive(Debug, Clone)]
pub struct Incoming<M> {
    /// The record.
    pub message: M,
    /// Its headers.
    pub metadata: Metadata,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// Why a handler could not finish a record.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Infrastructure failed (database, broker, provider): retrying may help.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The record itself cannot be handled: retrying cannot help, dead-letter it.
    #[error("cannot handle record: {0}")]
    Permanent(String),
}

impl From<crate::Error> for HandlerError {
    fn from(err: crate::Error) -> Self {
        Self::Transient(err.to_string())
    }
}

/// What a role does with each record.
pub trait Handler<M>: Send {
    /// Handles one record; returns once its outcome is durable. The record is lent, not
    /// given: a transient failure hands the same record to the next attempt.
    fn handle(
        &mut self,
        incoming: &Incoming<M>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Handles records that arrived together, in order; returns once all their outcomes
    /// are durable. A handler that appends records overrides it to queue every append
    /// of the batch and await them together ([`crate::Publisher::enqueue`]); the default
    /// handles one record after another. Only used with [`ConsumerLoop::with_batch`]. On
    /// an error the loop hands the batch's records to [`Handler::handle`] one by one, so
    /// a poison record is found and dead-lettered alone: handlers are idempotent, so the
    /// records the batch already did are answered the same way again.
    fn handle_batch(
        &mut self,
        batch: &[Incoming<M>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send
    where
        M: Sync,
    {
        async move {
            for incoming in batch {
                self.handle(incoming).await?;
            }
            Ok(())
        }
    }

    /// The group took these `(topic, partition)`s away: drop any state kept for them.
    fn revoked(&mut self, _partitions: &[(String, i32)]) {}

    /// The group gave this member these `(topic, partition)`s: a handler whose state
    /// must be live before any record arrives (the orchestrator's deadlines) rebuilds it
    /// here.
    fn assigned(
        &mut self,
        _partitions: &[(String, i32)],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }

    /// Called every tick of [`ConsumerLoop::with_tick`], between records: time-driven
    /// work (deadlines, retries after a backoff, stall detection).
    fn tick(&mut self) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }
}

/// Records partitions revoked or assigned by a rebalance until the loop hands them to
/// the handler, and reports the group's lag from librdkafka's statistics.
#[derive(Debug)]
struct LoopContext {
    revoked: Mutex<Vec<(String, i32)>>,
    assigned: Mutex<Vec<(String, i32)>>,
    lag: telemetry::LagContext,
}

impl LoopContext {
    fn new(group: &str) -> Self {
        Self {
            revoked: Mutex::default(),
            assigned: Mutex::default(),
            lag: telemetry::LagContext::new(group),
        }
    }

    fn take(list: &Mutex<Vec<(String, i32)>>) -> Vec<(String, i32)> {
        std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for LoopContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.lag.stats(statistics);
    }
}

impl ConsumerContext for LoopContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
                for element in list.elements() {
                    revoked.push((element.topic().to_owned(), element.partition()));
                }
                info!(partitions = list.count(), "partitions revoked");
            }
            Rebalance::Assign(list) => {
                // The flow's partitions, and apart from them the group's redrive topic's
                // (which is no partition of the flow: see `redrive::flow_partitions`).
                let redrive = list
                    .elements()
                    .iter()
                    .filter(|e| notesaga_events::topics::is_redrive_topic(e.topic()))
                    .count();
                info!(
                    partitions = list.count() - redrive,
                    redrive, "partitions assigned"
                );
            }
            Rebalance::Error(err) => warn!(%err, "rebalance error"),
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Assign(list) = rebalance {
            let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
            for element in list.elements() {
                assigned.push((element.topic().to_owned(), element.partition()));
            }
        }
    }
}

/// A consumer group member reading `topics` and handing records to a [`Handler`].
#[derive(Debug)]
pub struct ConsumerLoop {
    kafka: KafkaConfig,
    group: String,
    topics: Vec<String>,
    publisher: Publisher,
    retry: RetryPolicy,
    tick: Option<std::time::Duration>,
    batch: usize,
}

impl ConsumerLoop {
    /// A member of `group` reading `topics`; `publisher` writes dead letters.
    pub fn new(
        kafka: KafkaConfig,
        group: impl Into<String>,
        topics: &[&str],
        publisher: Publisher,
    ) -> Self {
        Self {
            kafka,
            group: group.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            publisher,
            retry: RetryPolicy::default(),
            tick: None,
            batch: 1,
        }
    }

    /// Hands up to `max` records that are already waiting to [`Handler::handle_batch`]
    /// at once (never waiting for more to arrive).
    pub fn with_batch(mut self, max: usize) -> Self {
        self.batch = max.max(1);
        self
    }

    /// Calls [`Handler::tick`] every `every`, between records.
    pub fn with_tick(mut self, every: std::time::Duration) -> Self {
        self.tick = Some(every);
        self
    }

    /// Runs until `shutdown` is cancelled: finishes the record in hand, commits the
    /// stored offsets and leaves the group.
    pub async fn run<M, H>(self, mut handler: H, shutdown: CancellationToken) -> Result<()>
    where
        M: Inbound + Sync,
        H: Handler<M>,
    {
        let consumer: StreamConsumer<LoopContext> = self
            .kafka
            .consumer(&self.group)
            .set("statistics.interval.ms", telemetry::STATISTICS_INTERVAL_MS)
            .create_with_context(LoopContext::new(&self.group))?;
        // The group's own redrive topic too (`notesaga dlq redrive`).
        let subscription = crate::redrive::subscription(&self.group, &self.topics);
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        crate::dlq::register_metrics(&self.group);
        info!(group = %self.group, topics = ?subscription, "consuming");

        // Without a tick the timer never fires (a day is as good as never here).
        let mut ticks =
            tokio::time::interval(self.tick.unwrap_or(std::time::Duration::from_secs(86_400)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = ticks.tick(), if self.tick.is_some() => None,
                message = consumer.recv() => Some(message),
            };
            // The redrive topic's partition is no partition of the flow: handlers keep
            // state per flow partition, so they never hear of it.
            let revoked =
                crate::redrive::flow_partitions(LoopContext::take(&consumer.context().revoked));
            if !revoked.is_empty() {
                handler.revoked(&revoked);
            }
            let assigned =
                crate::redrive::flow_partitions(LoopContext::take(&consumer.context().assigned));
            if !assigned.is_empty() {
                let hook = self.hook("assigned", handler.assigned(&assigned));
                let Some(done) = drain_within(&shutdown, DRAIN_BOUND, hook).await else {
                    warn!(group = %self.group, bound = ?DRAIN_BOUND, "shutting down in the assigned hook, which did not finish in time");
                    break;
                };
                done?;
            }
            let Some(message) = message else {
                let hook = self.hook("tick", handler.tick());
                let Some(done) = drain_within(&shutdown, DRAIN_BOUND, hook).await else {
                    warn!(group = %self.group, bound = ?DRAIN_BOUND, "shutting down in the tick hook, which did not finish in time");
                    break;
                };
                done?;
                continue;
            };
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    warn!(group = %self.group, %err, "consumer error");
                    continue;
                }
            };
            let work = async {
                if self.batch == 1 {
                    return self.process(&consumer, &mut handler, &message).await;
                }
                let mut batch = vec![message];
                while batch.len() < self.batch {
                    // Only what is already fetched: a batch never waits for traffic. One
                    // poll of the queue, not a timer: a timer's millisecond (tokio's
                    // resolution, so 1–2 ms) was paid by every batch of every hop.
                    match consumer.recv().now_or_never() {
                        Some(Ok(message)) => batch.push(message),
                        Some(Err(err)) => warn!(group = %self.group, %err, "consumer error"),
                        None => break,
                    }
                }
                self.process_batch(&consumer, &mut handler, &batch).await
            };
            match drain_within(&shutdown, DRAIN_BOUND, work).await {
                Some(done) => done?,
                None => {
                    // Its offset is not stored: the partition's next owner handles the
                    // record again, which idempotent handlers make harmless.
                    warn!(group = %self.group, bound = ?DRAIN_BOUND, "shutting down with a record in hand that did not finish in time (is the broker down?): leaving it to the next owner");
                    break;
                }
            }
        }

        info!(group = %self.group, "shutting down: committing offsets and leaving the group");
        close_within(consumer, &self.group, CLOSE_BOUND).await;
        Ok(())
    }

    /// Runs a hook; a transient failure is logged and tried again at the next tick or
    /// record (the hooks are idempotent), a permanent one stops the loop.
    async fn hook(
        &self,
        name: &str,
        hook: impl Future<Output = Result<(), HandlerError>>,
    ) -> Result<()> {
        match hook.await {
            Ok(()) => Ok(()),
            Err(HandlerError::Transient(reason)) => {
                warn!(group = %self.group, hook = name, %reason, "hook failed; will retry");
                Ok(())
            }
            Err(HandlerError::Permanent(reason)) => Err(crate::Error::Handler(format!(
                "{name} hook of {} failed: {reason}",
                self.group
            ))),
        }
    }

    async fn process_batch<M, H>(
        &self,
        consumer: &StreamConsumer<LoopContext>,
        handler: &mut H,
        messages: &[BorrowedMessage<'_>],
    ) -> Result<()>
    where
        M: Inbound + Sync,
        H: Handler<M>,
    {
        let started = Instant::now();
        let mut batch = Vec::with_capacity(messages.len());
        for message in messages {
            let (_, metadata) = Metadata::from_message(message);
            let (topic, partition, offset) = crate::redrive::source(
                message.topic(),
                message.partition(),
                message.offset(),
                message.headers(),
            );
            match self
                .publisher
                .codec()
                .decode::<M>(&topic, message.payload())
                .await
            {
                Ok(decoded) => batch.push(Incoming {
                    message: decoded,
                    metadata,
                    topic,
                    partition,
                    offset,
                }),
                Err(_) => break,
            }
        }
        let span = tracing::info_span!(
            "batch",
            "messaging.consumer.group.name" = %self.group,
            "messaging.batch.message_count" = messages.len(),
        );
        let handled = if batch.len() == messages.len() {
            let mut schedule = self.retry.schedule();
            loop {
                match handler.handle_batch(&batch).instrument(span.clone()).await {
                    Ok(()) => break true,
                    Err(HandlerError::Permanent(reason)) => {
                        warn!(%reason, "batch failed; handling its records one by one");
                        break false;
                    }
                    Err(HandlerError::Transient(reason)) => match schedule.next_delay(None) {
                        Some(delay) => {
                            warn!(%reason, ?delay, "batch failed; retrying");
                            tokio::time::sleep(delay).await;
                        }
                        None => break false,
                    },
                }
            }
        } else {
            // An undecodable record: the one-by-one path dead-letters it in its place.
            false
        };
        if !handled {
            for message in messages {
                self.process(consumer, handler, message).await?;
            }
            return Ok(());
        }
        for incoming in &batch {
            forget_foreign(
                consumer,
                handler,
                &incoming.topic,
                incoming.partition,
                messages,
            );
        }
        let elapsed = started.elapsed().as_secs_f64();
        for message in messages {
            metrics::counter!(telemetry::RECORDS_TOTAL, "group" => self.group.clone(), "topic" => message.topic().to_owned(), "outcome" => "handled").increment(1);
            // Each record of the batch waited for the whole batch.
            metrics::histogram!(telemetry::HANDLE_SECONDS, "group" => self.group.clone())
                .record(elapsed);
            if let Err(err) = consumer.store_offset_from_message(message) {
                warn!(%err, topic = message.topic(), partition = message.partition(), offset = message.offset(), "cannot store offset");
            }
        }
        Ok(())
    }

    async fn process<M, H>(
        &self,
        consumer: &StreamConsumer<LoopContext>,
        handler: &mut H,
        message: &BorrowedMessage<'_>,
    ) -> Result<()>
    where
        M: Inbound,
        H: Handler<M>,
    {
        let started = Instant::now();
        // A redriven record is handled as the record it was where first read.
        let (topic, partition, offset) = crate::redrive::source(
            message.topic(),
            message.partition(),
            message.offset(),
            message.headers(),
        );
        let (event_type, metadata) = Metadata::from_message(message);
        let span = tracing::info_span!(
            "record",
            "messaging.destination.name" = %topic,
            "messaging.kafka.partition" = partition,
            "messaging.kafka.offset" = offset,
            "messaging.consumer.group.name" = %self.group,
            correlation_id = %metadata.correlation_id,
            causation_id = metadata.causation_id.as_deref().unwrap_or(""),
            event_type = event_type.as_deref().unwrap_or(""),
        );
        let outcome = async {
            let decoded = self
                .publisher
                .codec()
                .decode::<M>(&topic, message.payload())
                .await;
            let message_value = match decoded {
                Ok(value) => value,
                Err(reason) => {
                    warn!(%reason, "undecodable record: dead-lettering");
                    return Err(format!("undecodable: {reason}"));
                }
            };
            let incoming = Incoming {
                message: message_value,
                metadata,
                topic: topic.clone(),
                partition,
                offset,
            };
            let mut schedule = self.retry.schedule();
            let result = loop {
                match handler.handle(&incoming).await {
                    Ok(()) => break Ok(()),
                    Err(HandlerError::Permanent(reason)) => break Err(reason),
                    Err(HandlerError::Transient(reason)) => {
                        let attempt = schedule.attempt();
                        let Some(delay) = schedule.next_delay(None) else {
                            break Err(format!("gave up after {attempt} attempts: {reason}"));
                        };
                        warn!(attempt, %reason, ?delay, "handler failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            result.map_err(|reason| {
                error!(%reason, "record could not be handled: dead-lettering");
                reason
            })
        }
        .instrument(span)
        .await;

        forget_foreign(
            consumer,
            handler,
            &topic,
            partition,
            std::slice::from_ref(message),
        );
        let label = match &outcome {
            Ok(()) => "handled",
            Err(_) => "dead_lettered",
        };
        if let Err(reason) = outcome {
            dead_letter_durably(&self.publisher, &self.group, message, &reason, &self.retry)
                .await?;
        }
        metrics::counter!(telemetry::RECORDS_TOTAL, "group" => self.group.clone(), "topic" => topic.clone(), "outcome" => label).increment(1);
        metrics::histogram!(telemetry::HANDLE_SECONDS, "group" => self.group.clone())
            .record(started.elapsed().as_secs_f64());
        if let Err(err) = consumer.store_offset_from_message(message) {
            // The partition was revoked while the record was in hand; its new owner
            // will see it again, which idempotent handling makes harmless.
            warn!(%err, topic = %topic, partition, offset, "cannot store offset");
        }
        Ok(())
    }
}

/// After a redriven record of `(topic, partition)`: a handler that built state for that
/// partition to handle it (the notes aggregate, the orchestrator's sagas) drops it again
/// unless this member owns the partition, so two members never both drive one
/// partition's state. A no-op when none of `messages` came from a redrive topic.
fn forget_foreign<M, H: Handler<M>>(
    consumer: &StreamConsumer<LoopContext>,
    handler: &mut H,
    topic: &str,
    partition: i32,
    messages: &[BorrowedMessage<'_>],
) {
    if !messages
        .iter()
        .any(|m| notesaga_events::topics::is_redrive_topic(m.topic()))
        || notesaga_events::topics::is_redrive_topic(topic)
    {
        return;
    }
    let owned = consumer
        .assignment()
        .map(|list| list.find_partition(topic, partition).is_some())
        .unwrap_or(false);
    if !owned {
        handler.revoked(&[(topic.to_owned(), partition)]);
    }
}
