//! Fetch and Produce as Kafka serves them: a produce wakes every waiting fetch, and a
//! fetch with nothing to return waits for that wake-up (or `max_wait`), not a timer.
//!
//! WHY our own routes: tansu 0.6's Fetch (`tansu-storage` `service/fetch.rs`) sleeps
//! after every poll whatever it found, so each hop of a saga paid `fetch.wait.max.ms`;
//! and its Produce stores one partition after another, so a request for six partitions
//! paid six log writes in a row. These routes work over any `Storage` (the native engine
//! and tansu's SQLite alike): produce runs a request's partitions concurrently (the
//! native log commits them in one fsync), then signals each topic it appended to; fetch
//! reads what is there and, short of `min_bytes`, sleeps on the signals of its topics
//! until `max_wait` — Kafka's purgatory without per-partition bookkeeping: a waiting
//! fetch re-checks its own partitions when its topics grow (an in-memory index lookup).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::{join_all, select_all};
use rama::{
    layer::{MapErrLayer, MapStateLayer},
    Context, Layer as _, Service,
};
use tansu_sans_io::{
    fetch_request::FetchTopic,
    fetch_response::{FetchableTopicResponse, PartitionData},
    produce_request::{PartitionProduceData, TopicProduceData},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    record::deflated::Frame,
    ApiKey as _, ErrorCode, FetchRequest, FetchResponse, IsolationLevel, ProduceRequest,
    ProduceResponse,
};
use tansu_service::{FrameRequestLayer, FrameRouteBuilder};
use tansu_storage::{Error, Result, Storage, TopicId, Topition};
use tokio::{sync::watch, time::Instant};
use tracing::{debug, warn};

use crate::metrics;

/// What the broker's error type is: the route table's.
type RouteError = tansu_broker::Error;

/// Per topic, the record bytes appended to it so far (wrapping), bumped after every
/// successful append; fetches wait on the topics they read, so an append wakes only the
/// fetches that can use it, and a fetch that asked for more than `min_bytes` reads the
/// log again only once its topics have grown enough to give it that many.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogSignal(Arc<Mutex<HashMap<String, watch::Sender<u64>>>>);

impl LogSignal {
    fn sender(&self, topic: &str) -> watch::Sender<u64> {
        let mut topics = self.0.lock().expect("not poisoned");
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    fn appended(&self, topic: &str, bytes: u64) {
        // At least 1, so an append of empty batches still wakes its readers.
        self.sender(topic)
            .send_modify(|n| *n = n.wrapping_add(bytes.max(1)));
    }

    fn subscribe(&self, topics: impl Iterator<Item = String>) -> Vec<watch::Receiver<u64>> {
        topics
            .map(|topic| self.sender(&topic).subscribe())
            .collect()
    }
}

/// A topic as a fetch request names it: by name (before v13) or by id (v13 on).
type TopicRef = (Option<String>, Option<[u8; 16]>);
/// A topic's name and id.
type TopicNameId = (String, Option<[u8; 16]>);

/// Topic name and id of a fetched topic, as the request names it (v13+ by id only).
/// Resolved once and kept: every fetch asks, and a name's id changes only when the topic
/// is deleted and created again (a request then names the new id, a miss).
#[derive(Clone, Debug, Default)]
struct TopicNames(Arc<Mutex<HashMap<TopicRef, TopicNameId>>>);

/// Kafka's cap on a fetch response when the request sets none (v0–v2).
const DEFAULT_MAX_BYTES: u32 = 50 * 1024 * 1024;

/// Adds our Fetch to the route table.
pub(crate) fn fetch_route<S: Storage>(
    builder: FrameRouteBuilder<(), RouteError>,
    storage: S,
    signal: LogSignal,
) -> std::result::Result<FrameRouteBuilder<(), RouteError>, RouteError> {
    builder
        .with_route(
            FetchRequest::KEY,
            (
                MapErrLayer::new(RouteError::from),
                MapStateLayer::new(|_| storage),
                FrameRequestLayer::<FetchRequest>::new(),
            )
                .into_layer(WakingFetch {
                    signal,
                    names: TopicNames::default(),
                })
                .boxed(),
        )
        .map_err(Into::into)
}

/// Adds our Produce to the route table.
pub(crate) fn produce_route<S: Storage>(
    builder: FrameRouteBuilder<(), RouteError>,
    storage: S,
    signal: LogSignal,
) -> std::result::Result<FrameRouteBuilder<(), RouteError>, RouteError> {
    builder
        .with_route(
            ProduceRequest::KEY,
            (
                MapErrLayer::new(RouteError::from),
                MapStateLayer::new(|_| storage),
                FrameRequestLayer::<ProduceRequest>::new(),
            )
                .into_layer(SignallingProduce { signal })
                .boxed(),
        )
        .map_err(Into::into)
}

#[derive(Clone, Debug)]
struct WakingFetch {
    signal: LogSignal,
    names: TopicNames,
}

/// A topic of the request with its name resolved (v13+ name topics by id only).
struct Wanted<'a> {
    request: &'a FetchTopic,
    name: Option<String>,
    topic_id: Option<[u8; 16]>,
}

impl<S: Storage> Service<S, FetchRequest> for WakingFetch {
    type Response = FetchResponse;
    type Error = Error;

    async fn serve(&self, ctx: Context<S>, req: FetchRequest) -> Result<FetchResponse> {
        let storage = ctx.state();
        let topics = req.topics.as_deref().unwrap_or_default();
        let isolation = req.isolation_level.map_or(
            Ok(IsolationLevel::ReadUncommitted),
            IsolationLevel::try_from,
        )?;
        let max_wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
        let min_bytes = u64::try_from(req.min_bytes).unwrap_or(0);
        let max_bytes = req
            .max_bytes
            .and_then(|b| u32::try_from(b).ok())
            .unwrap_or(DEFAULT_MAX_BYTES);

        let mut wanted = Vec::with_capacity(topics.len());
        for request in topics {
            let key = (request.topic.clone(), request.topic_id);
            let cached = self
                .names
                .0
                .lock()
                .expect("not poisoned")
                .get(&key)
                .cloned();
            let resolved = match cached {
                Some(found) => Some(found),
                None => {
                    let metadata = storage.metadata(Some(&[TopicId::from(request)])).await?;
                    let found = metadata
                        .topics()
                        .first()
                        .filter(|t| t.error_code == i16::from(ErrorCode::None))
                        .and_then(|t| Some((t.name.clone()?, t.topic_id)));
                    if let Some(found) = &found {
                        _ = self
                            .names
                            .0
                            .lock()
                            .expect("not poisoned")
                            .insert(key, found.clone());
                    }
                    found
                }
            };
            wanted.push(Wanted {
                request,
                topic_id: resolved
                    .as_ref()
                    .and_then(|(_, id)| *id)
                    .or(request.topic_id),
                name: resolved.map(|(name, _)| name),
            });
        }

        let deadline = Instant::now() + max_wait;
        let mut appended = self
            .signal
            .subscribe(wanted.iter().filter_map(|w| w.name.clone()));
        let mut waited = false;
        loop {
            // Mark the current generation seen before reading, so an append between
            // the read and the wait still wakes us.
            let seen: Vec<u64> = appended
                .iter_mut()
                .map(|topic| *topic.borrow_and_update())
                .collect();
            let (responses, bytes, errors) = read(storage, &wanted, isolation, max_bytes).await?;
            let enough = bytes >= min_bytes.max(1) || min_bytes == 0 || errors;
            if enough || Instant::now() >= deadline {
                metrics::fetch_answered(match (waited, bytes > 0) {
                    (false, _) => "immediate",
                    (true, true) => "wake",
                    (true, false) => "timeout",
                });
                return Ok(FetchResponse::default()
                    .throttle_time_ms(Some(0))
                    .error_code(Some(ErrorCode::None.into()))
                    .session_id(Some(0))
                    .node_endpoints(Some([].into()))
                    .responses(Some(responses)));
            }
            waited = true;
            wait_for_growth(
                &mut appended,
                &seen,
                min_bytes.saturating_sub(bytes),
                deadline,
            )
            .await;
        }
    }
}

/// Waits until the topics of `appended` have grown by at least `wanted` bytes (at least
/// one append) since `seen`, or until `deadline`. Appends to partitions the fetch does not
/// read count too, so it may wake early and read in vain; never late.
async fn wait_for_growth(
    appended: &mut [watch::Receiver<u64>],
    seen: &[u64],
    wanted: u64,
    deadline: Instant,
) {
    if appended.is_empty() {
        tokio::time::sleep_until(deadline).await;
        return;
    }
    loop {
        let any_append = select_all(appended.iter_mut().map(|topic| Box::pin(topic.changed())));
        tokio::select! {
            (changed, _, _) = any_append => {
                if changed.is_err() {
                    // The broker is going away: answer with what there is.
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
            () = tokio::time::sleep_until(deadline) => return,
        }
        let grown: u64 = appended
            .iter_mut()
            .zip(seen)
            .map(|(topic, seen)| topic.borrow_and_update().wrapping_sub(*seen))
            .sum();
        if grown >= wanted.max(1) {
            return;
        }
    }
}

/// Reads every wanted partition once: the responses, the record bytes in them, and
/// whether any partition answered an error (an error is worth returning at once).
async fn read<S: Storage>(
    storage: &S,
    wanted: &[Wanted<'_>],
    isolation: IsolationLevel,
    max_bytes: u32,
) -> Result<(Vec<FetchableTopicResponse>, u64, bool)> {
    let mut budget = max_bytes;
    let mut total = 0u64;
    let mut errors = false;
    let mut responses = Vec::with_capacity(wanted.len());
    for topic in wanted {
        let mut partitions = Vec::new();
        for p in topic.request.partitions.as_deref().unwrap_or_default() {
            let Some(name) = topic.name.as_deref() else {
                errors = true;
                partitions.push(error_partition(
                    p.partition,
                    ErrorCode::UnknownTopicOrPartition,
                ));
                continue;
            };
            let tp = Topition::new(name, p.partition);
            let stage = match storage.offset_stage(&tp).await {
                Ok(stage) => stage,
                Err(Error::Api(code)) => {
                    errors = true;
                    partitions.push(error_partition(p.partition, code));
                    continue;
                }
                Err(other) => return Err(other),
            };
            let visible_end = if isolation == IsolationLevel::ReadCommitted {
                stage.last_stable()
            } else {
                stage.high_watermark()
            };
            if p.fetch_offset > stage.high_watermark() || p.fetch_offset < stage.log_start() {
                errors = true;
                partitions.push(
                    error_partition(p.partition, ErrorCode::OffsetOutOfRange)
                        .high_watermark(stage.high_watermark())
                        .log_start_offset(Some(stage.log_start())),
                );
                continue;
            }
            let mut batches = Vec::new();
            let mut offset = p.fetch_offset;
            let mut partition_budget = u32::try_from(p.partition_max_bytes)
                .unwrap_or(0)
                .min(budget);
            // The first batch of a response is served whole even beyond the budget
            // (Kafka's rule), so a large batch can never block a consumer.
            while offset < visible_end && (partition_budget > 0 || batches.is_empty() && total == 0)
            {
                let fetched = storage
                    .fetch(&tp, offset, 1, partition_budget.max(1), isolation)
                    .await?;
                let Some(last) = fetched.last() else { break };
                let next = last.base_offset + i64::from(last.last_offset_delta) + 1;
                for batch in fetched {
                    let size = u32::try_from(batch.record_data.len()).unwrap_or(u32::MAX);
                    partition_budget = partition_budget.saturating_sub(size);
                    budget = budget.saturating_sub(size);
                    total += u64::from(size);
                    batches.push(batch);
                }
                if next <= offset {
                    break;
                }
                offset = next;
            }
            partitions.push(
                PartitionData::default()
                    .partition_index(p.partition)
                    .error_code(ErrorCode::None.into())
                    .high_watermark(stage.high_watermark())
                    .last_stable_offset(Some(stage.last_stable()))
                    .log_start_offset(Some(stage.log_start()))
                    .diverging_epoch(None)
                    .current_leader(None)
                    .snapshot_id(None)
                    .aborted_transactions(Some([].into()))
                    .preferred_read_replica(Some(-1))
                    .records((!batches.is_empty()).then_some(Frame { batches })),
            );
        }
        responses.push(
            FetchableTopicResponse::default()
                .topic(topic.request.topic.clone().or_else(|| topic.name.clone()))
                .topic_id(topic.topic_id)
                .partitions(Some(partitions)),
        );
    }
    Ok((responses, total, errors))
}

fn error_partition(index: i32, code: ErrorCode) -> PartitionData {
    PartitionData::default()
        .partition_index(index)
        .error_code(code.into())
        .high_watermark(-1)
        .last_stable_offset(Some(-1))
        .log_start_offset(Some(-1))
        .diverging_epoch(None)
        .current_leader(None)
        .snapshot_id(None)
        .aborted_transactions(Some([].into()))
        .preferred_read_replica(Some(-1))
        .records(None)
}

#[derive(Clone, Debug)]
struct SignallingProduce {
    signal: LogSignal,
}

impl<S: Storage> Service<S, ProduceRequest> for SignallingProduce {
    type Response = ProduceResponse;
    type Error = Error;

    async fn serve(&self, ctx: Context<S>, req: ProduceRequest) -> Result<ProduceResponse> {
        let storage = ctx.state();
        let transaction_id = req.transactional_id.as_deref();
        let topics = req.topic_data.unwrap_or_default();
        let signal = &self.signal;
        let responses = join_all(topics.into_iter().map(|topic| async move {
            let TopicProduceData {
                name,
                partition_data,
                ..
            } = topic;
            let (partitions, bytes): (Vec<_>, Vec<u64>) = join_all(
                partition_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| produce_partition(storage, transaction_id, &name, p)),
            )
            .await
            .into_iter()
            .unzip();
            if partitions
                .iter()
                .any(|p| p.error_code == i16::from(ErrorCode::None))
            {
                signal.appended(&name, bytes.iter().sum());
            }
            TopicProduceResponse::default()
                .name(name)
                .partition_responses(Some(partitions))
        }))
        .await;
        Ok(ProduceResponse::default()
            .responses(Some(responses))
            .throttle_time_ms(Some(0))
            .node_endpoints(Some([].into())))
    }
}

/// Appends the partition's batches: the answer, and the record bytes appended.
async fn produce_partition<S: Storage>(
    storage: &S,
    transaction_id: Option<&str>,
    topic: &str,
    partition: PartitionProduceData,
) -> (PartitionProduceResponse, u64) {
    let tp = Topition::new(topic, partition.index);
    let mut base_offset = None;
    let mut code = ErrorCode::None;
    let mut appended = 0;
    for batch in partition.records.map(|r| r.batches).unwrap_or_default() {
        let records = u64::from(batch.record_count);
        let bytes = batch.record_data.len() as u64;
        match storage.produce(transaction_id, &tp, batch).await {
            Ok(offset) => {
                metrics::appended(topic, records, bytes);
                appended += bytes;
                _ = base_offset.get_or_insert(offset);
            }
            Err(Error::Api(error)) => {
                debug!(?tp, ?error, "produce refused");
                code = error;
                break;
            }
            Err(error) => {
                warn!(?tp, %error, "produce failed");
                code = ErrorCode::UnknownServerError;
                break;
            }
        }
    }
    let (code, base_offset) = match (code, base_offset) {
        (ErrorCode::None, Some(offset)) => (ErrorCode::None, offset),
        (ErrorCode::None, None) => (ErrorCode::CorruptMessage, -1),
        (code, _) => (code, -1),
    };
    let response = PartitionProduceResponse::default()
        .index(partition.index)
        .error_code(code.into())
        .base_offset(base_offset)
        .log_append_time_ms(Some(-1))
        .log_start_offset(Some(0))
        .record_errors(Some([].into()))
        .error_message(None)
        .current_leader(None);
    (response, appended)
}
