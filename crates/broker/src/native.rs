//! The native storage engine: record batches stored as produced in one write-ahead log
//! (segment files, group commit, CRC-framed entries), indexed in memory, served to
//! fetches from the stored bytes. It implements tansu-storage's `Storage` trait, so
//! tansu's protocol handlers (metadata, list offsets, topic admin, …) run on it as on
//! tansu's own engines.
//!
//! Layout: [`entry`] (what the log holds, framing), [`wal`] (segments, the writer
//! thread, recovery), [`state`] (the pure in-memory state and the idempotent producer's
//! sequence rules), [`opaque`] (building tansu's types whose fields are private).
//!
//! What it does not do (said in docs/field-notes.md): Kafka transactions (refused with
//! an error code), SCRAM credentials, time- or size-based retention and compaction
//! (notesaga's topics keep records forever; a topic's `retention.ms` and
//! `cleanup.policy` are stored and reported but not applied: segments are never
//! deleted).

mod entry;
mod opaque;
mod state;
pub(crate) mod wal;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::Bytes;
use tansu_sans_io::{
    add_partitions_to_txn_response::{AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult},
    create_topics_request::CreatableTopic,
    delete_groups_response::DeletableGroupResult,
    delete_records_request::DeleteRecordsTopic,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    describe_cluster_response::DescribeClusterBroker,
    describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult},
    describe_topic_partitions_response::{
        DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
    },
    incremental_alter_configs_request::AlterConfigsResource,
    incremental_alter_configs_response::AlterConfigsResourceResponse,
    list_groups_response::ListedGroup,
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    record::{deflated, inflated},
    txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic},
    ConfigResource, ConfigSource, ConfigType, ErrorCode, IsolationLevel, ListOffset, OpType,
    ScramMechanism, NULL_TOPIC_ID,
};
use tansu_storage::{
    BrokerRegistrationRequest, Error, GroupDetail, ListOffsetResponse, MetadataResponse,
    NamedGroupDetail, OffsetCommitRequest, OffsetStage, ProducerIdResponse, Result,
    ScramCredential, Storage, TopicId, Topition, TxnAddPartitionsRequest, TxnAddPartitionsResponse,
    TxnOffsetCommitRequest, UpdateError, Version,
};
use tracing::{debug, info};
use url::Url;
use uuid::Uuid;

use self::{
    entry::{Entry, Meta},
    state::{BatchHeader, BatchLoc, Sequenced, State},
    wal::{Fsync, Wal},
};

/// Partitions of a topic created with `num_partitions = -1` (Kafka's `num.partitions`).
const DEFAULT_PARTITIONS: i32 = 1;

/// The engine; cheap to clone (every connection holds one).
#[derive(Clone, Debug)]
pub(crate) struct NativeStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cluster_id: String,
    node_id: i32,
    advertised_listener: Url,
    /// State and the log's write position change together, so offsets and positions
    /// are assigned in one order: the order of the writes.
    locked: Mutex<Locked>,
    wal: Wal,
    /// Group state for tansu's own coordinator when it runs on this engine (in memory:
    /// members rejoin after a restart anyway; committed offsets are in the log).
    groups: Mutex<BTreeMap<String, (GroupDetail, Uuid)>>,
}

#[derive(Debug)]
struct Locked {
    state: State,
    cursor: wal::Cursor,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn header_of(batch: &deflated::Batch) -> BatchHeader {
    BatchHeader {
        last_offset_delta: batch.last_offset_delta,
        max_timestamp: batch.max_timestamp,
        producer_id: batch.producer_id,
        producer_epoch: batch.producer_epoch,
        base_sequence: batch.base_sequence,
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Message("native engine lock poisoned".into())
}

impl NativeStorage {
    /// Opens the log in `dir` (replaying it) and serves from it.
    pub(crate) fn open(
        dir: &Path,
        fsync: Fsync,
        cluster_id: &str,
        node_id: i32,
        advertised_listener: Url,
    ) -> anyhow::Result<Self> {
        let mut state = State::default();
        let (wal, cursor) = Wal::open(dir, fsync, |segment, pos, entry| match entry {
            Entry::Meta(meta) => state.apply(&meta),
            Entry::Batch {
                topic,
                partition,
                batch,
            } => {
                let at = pos + Entry::batch_offset_in_frame(&topic) as u64;
                let len = batch.len() as u32;
                // A batch of a topic deleted later is skipped: the topic is gone.
                let Ok(decoded) = deflated::Batch::try_from(batch) else {
                    return;
                };
                if let Some(p) = state.partition_mut(&topic, partition) {
                    let loc = BatchLoc {
                        base_offset: decoded.base_offset,
                        last_offset: decoded.base_offset + i64::from(decoded.last_offset_delta),
                        max_timestamp: decoded.max_timestamp,
                        segment,
                        pos: at,
                        len,
                    };
                    p.append(&header_of(&decoded), loc);
                    p.durable_to(loc.last_offset + 1);
                }
            }
        })?;
        info!(
            dir = %wal.dir().display(),
            topics = state.topics.len(),
            ?fsync,
            "native storage open"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                cluster_id: cluster_id.to_owned(),
                node_id,
                advertised_listener,
                locked: Mutex::new(Locked { state, cursor }),
                wal,
                groups: Mutex::default(),
            }),
        })
    }

    /// Appends a metadata change and waits until it is durable.
    async fn commit_meta(&self, meta: Meta) -> Result<()> {
        let durable = {
            let mut locked = self.inner.locked.lock().map_err(poisoned)?;
            let bytes = Entry::Meta(meta.clone()).frame();
            let (segment, pos) = locked.cursor.reserve(bytes.len() as u64);
            locked.state.apply(&meta);
            self.inner.wal.submit(segment, pos, bytes)
        };
        durable
            .await
            .map_err(|_| Error::Message("the log writer stopped".into()))
    }

    fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T> {
        let locked = self.inner.locked.lock().map_err(poisoned)?;
        Ok(f(&locked.state))
    }

    fn topic_metadata(&self, state: &State, topic: &TopicId) -> MetadataResponseTopic {
        let found = match topic {
            TopicId::Name(name) => state.topics.get(name),
            TopicId::Id(id) => state.topic_by_id(id),
        };
        match found {
            Some(t) => MetadataResponseTopic::default()
                .error_code(ErrorCode::None.into())
                .name(Some(t.spec.name.clone()))
                .topic_id(Some(t.id.into_bytes()))
                .is_internal(Some(false))
                .partitions(Some(
                    (0..t.partitions.len() as i32)
                        .map(|index| {
                            MetadataResponsePartition::default()
                                .error_code(ErrorCode::None.into())
                                .partition_index(index)
                                .leader_id(self.inner.node_id)
                                .leader_epoch(Some(0))
                                .replica_nodes(Some(vec![self.inner.node_id]))
                                .isr_nodes(Some(vec![self.inner.node_id]))
                                .offline_replicas(Some([].into()))
                        })
                        .collect(),
                ))
                .topic_authorized_operations(Some(i32::MIN)),
            None => MetadataResponseTopic::default()
                .error_code(ErrorCode::UnknownTopicOrPartition.into())
                .name(match topic {
                    TopicId::Name(name) => Some(name.clone()),
                    TopicId::Id(_) => None,
                })
                .topic_id(Some(match topic {
                    TopicId::Name(_) => NULL_TOPIC_ID,
                    TopicId::Id(id) => id.into_bytes(),
                }))
                .is_internal(Some(false))
                .partitions(Some([].into()))
                .topic_authorized_operations(Some(i32::MIN)),
        }
    }

    /// The offset of the first record at or after `timestamp` (milliseconds).
    fn offset_for_time(&self, topition: &Topition, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let Some(loc) = self.with_state(|s| {
            s.partition(topition.topic(), topition.partition())
                .and_then(|p| p.first_at_or_after(timestamp))
        })?
        else {
            return Ok(None);
        };
        let bytes = self.inner.wal.read(loc.segment, loc.pos, loc.len)?;
        let batch = inflated::Batch::try_from(deflated::Batch::try_from(bytes)?)?;
        Ok(batch
            .records
            .iter()
            .find(|r| batch.base_timestamp + r.timestamp_delta >= timestamp)
            .map(|r| {
                (
                    loc.base_offset + i64::from(r.offset_delta),
                    batch.base_timestamp + r.timestamp_delta,
                )
            }))
    }
}

#[async_trait]
impl Storage for NativeStorage {
    async fn register_broker(&self, _registration: BrokerRegistrationRequest) -> Result<()> {
        Ok(())
    }

    async fn create_topic(&self, topic: CreatableTopic, validate_only: bool) -> Result<Uuid> {
        if topic.name.is_empty() || topic.name.len() > 249 {
            return Err(Error::Api(ErrorCode::InvalidTopicException));
        }
        if self.with_state(|s| s.topics.contains_key(&topic.name))? {
            return Err(Error::Api(ErrorCode::TopicAlreadyExists));
        }
        if topic.num_partitions == 0 || topic.num_partitions < -1 {
            return Err(Error::Api(ErrorCode::InvalidPartitions));
        }
        let id = Uuid::new_v4();
        if validate_only {
            return Ok(id);
        }
        let mut topic = topic;
        if topic.num_partitions == -1 {
            topic.num_partitions = DEFAULT_PARTITIONS;
        }
        if topic.replication_factor < 1 {
            topic.replication_factor = 1;
        }
        self.commit_meta(Meta::TopicCreated { id, topic }).await?;
        Ok(id)
    }

    async fn incremental_alter_resource(
        &self,
        resource: AlterConfigsResource,
    ) -> Result<AlterConfigsResourceResponse> {
        let ok = |code: ErrorCode| {
            AlterConfigsResourceResponse::default()
                .error_code(code.into())
                .error_message(Some("".into()))
                .resource_type(resource.resource_type)
                .resource_name(resource.resource_name.clone())
        };
        if ConfigResource::from(resource.resource_type) != ConfigResource::Topic {
            return Ok(ok(ErrorCode::None));
        }
        let name = resource.resource_name.clone();
        let Some(mut configs) = self.with_state(|s| {
            s.topics.get(&name).map(|t| {
                t.spec
                    .configs
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| (c.name.clone(), c.value.clone()))
                    .collect::<BTreeMap<_, _>>()
            })
        })?
        else {
            return Ok(ok(ErrorCode::UnknownTopicOrPartition));
        };
        for change in resource.configs.as_deref().unwrap_or_default() {
            match OpType::try_from(change.config_operation)? {
                OpType::Set => _ = configs.insert(change.name.clone(), change.value.clone()),
                OpType::Delete => _ = configs.remove(&change.name),
                OpType::Append | OpType::Subtract => return Ok(ok(ErrorCode::InvalidRequest)),
            }
        }
        self.commit_meta(Meta::TopicConfigs {
            name,
            configs: configs.into_iter().collect(),
        })
        .await?;
        Ok(ok(ErrorCode::None))
    }

    async fn delete_records(
        &self,
        topics: &[DeleteRecordsTopic],
    ) -> Result<Vec<DeleteRecordsTopicResult>> {
        let mut results = Vec::new();
        for topic in topics {
            let mut partitions = Vec::new();
            for p in topic.partitions.as_deref().unwrap_or_default() {
                let hw = self.with_state(|s| {
                    s.partition(&topic.name, p.partition_index)
                        .map(|p| p.high_watermark)
                })?;
                let (code, low) = match hw {
                    None => (ErrorCode::UnknownTopicOrPartition, -1),
                    Some(hw) if p.offset > hw => (ErrorCode::OffsetOutOfRange, -1),
                    Some(hw) => {
                        let offset = if p.offset == -1 { hw } else { p.offset };
                        self.commit_meta(Meta::LogStartMoved {
                            topic: topic.name.clone(),
                            partition: p.partition_index,
                            offset,
                        })
                        .await?;
                        (ErrorCode::None, offset)
                    }
                };
                partitions.push(
                    DeleteRecordsPartitionResult::default()
                        .partition_index(p.partition_index)
                        .low_watermark(low)
                        .error_code(code.into()),
                );
            }
            results.push(
                DeleteRecordsTopicResult::default()
                    .name(topic.name.clone())
                    .partitions(Some(partitions)),
            );
        }
        Ok(results)
    }

    async fn delete_topic(&self, topic: &TopicId) -> Result<ErrorCode> {
        let name = self.with_state(|s| match topic {
            TopicId::Name(name) => s.topics.contains_key(name).then(|| name.clone()),
            TopicId::Id(id) => s.topic_by_id(id).map(|t| t.spec.name.clone()),
        })?;
        match name {
            Some(name) => {
                self.commit_meta(Meta::TopicDeleted { name }).await?;
                Ok(ErrorCode::None)
            }
            None => Ok(ErrorCode::UnknownTopicOrPartition),
        }
    }

    async fn brokers(&self) -> Result<Vec<DescribeClusterBroker>> {
        Ok(vec![DescribeClusterBroker::default()
            .broker_id(self.inner.node_id)
            .host(
                self.inner
                    .advertised_listener
                    .host_str()
                    .unwrap_or("127.0.0.1")
                    .into(),
            )
            .port(self.inner.advertised_listener.port().unwrap_or(9092).into())
            .rack(None)])
    }

    async fn produce(
        &self,
        transaction_id: Option<&str>,
        topition: &Topition,
        mut batch: deflated::Batch,
    ) -> Result<i64> {
        if transaction_id.is_some() || batch.is_transactional() {
            return Err(Error::Api(ErrorCode::TransactionalIdAuthorizationFailed));
        }
        let header = header_of(&batch);
        let (base_offset, last_offset, durable) = {
            let mut locked = self.inner.locked.lock().map_err(poisoned)?;
            let Locked { state, cursor } = &mut *locked;
            let partition = state
                .partition_mut(topition.topic(), topition.partition())
                .ok_or(Error::Api(ErrorCode::UnknownTopicOrPartition))?;
            match partition.check_sequence(&header).map_err(Error::Api)? {
                Sequenced::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    debug!(?topition, base_offset, "retried batch: stored once already");
                    (base_offset, last_offset, None)
                }
                Sequenced::Accept => {
                    let base_offset = partition.next_offset;
                    let last_offset = base_offset + i64::from(batch.last_offset_delta);
                    batch.base_offset = base_offset;
                    let entry = Entry::Batch {
                        topic: topition.topic().to_owned(),
                        partition: topition.partition(),
                        batch: Bytes::from(batch),
                    };
                    let bytes = entry.frame();
                    let (segment, pos) = cursor.reserve(bytes.len() as u64);
                    let at = pos + Entry::batch_offset_in_frame(topition.topic()) as u64;
                    let len = (bytes.len() - Entry::batch_offset_in_frame(topition.topic())) as u32;
                    partition.append(
                        &header,
                        BatchLoc {
                            base_offset,
                            last_offset,
                            max_timestamp: header.max_timestamp,
                            segment,
                            pos: at,
                            len,
                        },
                    );
                    (
                        base_offset,
                        last_offset,
                        Some(self.inner.wal.submit(segment, pos, bytes)),
                    )
                }
            }
        };
        match durable {
            Some(durable) => {
                durable
                    .await
                    .map_err(|_| Error::Message("the log writer stopped".into()))?;
                let mut locked = self.inner.locked.lock().map_err(poisoned)?;
                if let Some(p) = locked
                    .state
                    .partition_mut(topition.topic(), topition.partition())
                {
                    p.durable_to(last_offset + 1);
                }
            }
            // A retry answered while its first copy is still being written must not be
            // acknowledged before that copy is durable.
            None => loop {
                let hw = self.with_state(|s| {
                    s.partition(topition.topic(), topition.partition())
                        .map_or(i64::MAX, |p| p.high_watermark)
                })?;
                if hw > last_offset {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            },
        }
        Ok(base_offset)
    }

    async fn fetch(
        &self,
        topition: &Topition,
        offset: i64,
        _min_bytes: u32,
        max_bytes: u32,
        _isolation: IsolationLevel,
    ) -> Result<Vec<deflated::Batch>> {
        let locs = self.with_state(|s| {
            s.partition(topition.topic(), topition.partition())
                .map(|p| p.read_from(offset, max_bytes))
        })?;
        let Some(locs) = locs else {
            return Err(Error::Api(ErrorCode::UnknownTopicOrPartition));
        };
        let mut batches = Vec::with_capacity(locs.len());
        for loc in locs {
            let bytes = self.inner.wal.read(loc.segment, loc.pos, loc.len)?;
            batches.push(deflated::Batch::try_from(bytes)?);
        }
        Ok(batches)
    }

    async fn offset_stage(&self, topition: &Topition) -> Result<OffsetStage> {
        let p = self.with_state(|s| {
            s.partition(topition.topic(), topition.partition())
                .map(|p| (p.log_start, p.high_watermark))
        })?;
        let (log_start, high_watermark) =
            p.ok_or(Error::Api(ErrorCode::UnknownTopicOrPartition))?;
        // No transactions: everything durable is stable.
        opaque::offset_stage(high_watermark, high_watermark, log_start)
    }

    async fn list_offsets(
        &self,
        _isolation_level: IsolationLevel,
        offsets: &[(Topition, ListOffset)],
    ) -> Result<Vec<(Topition, ListOffsetResponse)>> {
        let mut out = Vec::with_capacity(offsets.len());
        for (topition, request) in offsets {
            let bounds = self.with_state(|s| {
                s.partition(topition.topic(), topition.partition())
                    .map(|p| (p.log_start, p.high_watermark))
            })?;
            let response = match (bounds, request) {
                (None, _) => ListOffsetResponse {
                    error_code: ErrorCode::UnknownTopicOrPartition,
                    ..ListOffsetResponse::default()
                },
                (Some((low, _)), ListOffset::Earliest) => ListOffsetResponse {
                    offset: Some(low),
                    timestamp: None,
                    ..ListOffsetResponse::default()
                },
                (Some((_, high)), ListOffset::Latest) => ListOffsetResponse {
                    offset: Some(high),
                    timestamp: None,
                    ..ListOffsetResponse::default()
                },
                (Some(_), ListOffset::Timestamp(at)) => {
                    let millis = at
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    match self.offset_for_time(topition, millis)? {
                        Some((offset, ts)) => ListOffsetResponse {
                            offset: Some(offset),
                            timestamp: Some(
                                UNIX_EPOCH + Duration::from_millis(u64::try_from(ts).unwrap_or(0)),
                            ),
                            ..ListOffsetResponse::default()
                        },
                        // Kafka: no record at or after the time → offset -1.
                        None => ListOffsetResponse {
                            offset: Some(-1),
                            timestamp: None,
                            ..ListOffsetResponse::default()
                        },
                    }
                }
            };
            out.push((topition.clone(), response));
        }
        Ok(out)
    }

    async fn offset_commit(
        &self,
        group_id: &str,
        _retention_time_ms: Option<Duration>,
        offsets: &[(Topition, OffsetCommitRequest)],
    ) -> Result<Vec<(Topition, ErrorCode)>> {
        let mut out = Vec::with_capacity(offsets.len());
        let mut waits = Vec::new();
        {
            let mut locked = self.inner.locked.lock().map_err(poisoned)?;
            for (topition, request) in offsets {
                if locked
                    .state
                    .partition(topition.topic(), topition.partition())
                    .is_none()
                {
                    out.push((topition.clone(), ErrorCode::UnknownTopicOrPartition));
                    continue;
                }
                let (offset, metadata) = opaque::commit_request(request)?;
                let meta = Meta::OffsetCommitted {
                    group: group_id.to_owned(),
                    topic: topition.topic().to_owned(),
                    partition: topition.partition(),
                    offset,
                    metadata,
                };
                let bytes = Entry::Meta(meta.clone()).frame();
                let (segment, pos) = locked.cursor.reserve(bytes.len() as u64);
                locked.state.apply(&meta);
                waits.push(self.inner.wal.submit(segment, pos, bytes));
                out.push((topition.clone(), ErrorCode::None));
            }
        }
        for durable in waits {
            durable
                .await
                .map_err(|_| Error::Message("the log writer stopped".into()))?;
        }
        Ok(out)
    }

    async fn offset_fetch(
        &self,
        group_id: Option<&str>,
        topics: &[Topition],
        _require_stable: Option<bool>,
    ) -> Result<BTreeMap<Topition, i64>> {
        self.with_state(|s| {
            let group = group_id.and_then(|g| s.offsets.get(g));
            topics
                .iter()
                .map(|t| {
                    let offset = group
                        .and_then(|g| g.get(&(t.topic().to_owned(), t.partition())))
                        .map_or(-1, |c| c.offset);
                    (t.clone(), offset)
                })
                .collect()
        })
    }

    async fn committed_offset_topitions(&self, group_id: &str) -> Result<BTreeMap<Topition, i64>> {
        self.with_state(|s| {
            s.offsets
                .get(group_id)
                .map(|g| {
                    g.iter()
                        .map(|((topic, partition), c)| {
                            (Topition::new(topic.clone(), *partition), c.offset)
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    async fn metadata(&self, topics: Option<&[TopicId]>) -> Result<MetadataResponse> {
        let broker = MetadataResponseBroker::default()
            .node_id(self.inner.node_id)
            .host(
                self.inner
                    .advertised_listener
                    .host_str()
                    .unwrap_or("127.0.0.1")
                    .into(),
            )
            .port(self.inner.advertised_listener.port().unwrap_or(9092).into())
            .rack(None);
        let topics = self.with_state(|s| match topics {
            Some(wanted) if !wanted.is_empty() => wanted
                .iter()
                .map(|t| self.topic_metadata(s, t))
                .collect::<Vec<_>>(),
            _ => s
                .topics
                .keys()
                .map(|name| self.topic_metadata(s, &TopicId::Name(name.clone())))
                .collect(),
        })?;
        opaque::metadata_response(&self.inner.cluster_id, self.inner.node_id, broker, topics)
    }

    async fn upsert_user_scram_credential(
        &self,
        _user: &str,
        _mechanism: ScramMechanism,
        _credential: ScramCredential,
    ) -> Result<()> {
        Err(Error::Api(ErrorCode::UnsupportedVersion))
    }

    async fn delete_user_scram_credential(
        &self,
        _user: &str,
        _mechanism: ScramMechanism,
    ) -> Result<()> {
        Err(Error::Api(ErrorCode::UnsupportedVersion))
    }

    async fn user_scram_credential(
        &self,
        _user: &str,
        _mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredential>> {
        Ok(None)
    }

    async fn describe_config(
        &self,
        name: &str,
        resource: ConfigResource,
        keys: Option<&[String]>,
    ) -> Result<DescribeConfigsResult> {
        let configs = if resource == ConfigResource::Topic {
            self.with_state(|s| {
                s.topics.get(name).map(|t| {
                    t.spec
                        .configs
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .filter(|c| keys.is_none_or(|keys| keys.contains(&c.name)))
                        .map(|c| {
                            DescribeConfigsResourceResult::default()
                                .name(c.name.clone())
                                .value(c.value.clone())
                                .read_only(false)
                                .is_default(None)
                                .config_source(Some(ConfigSource::DynamicTopicConfig.into()))
                                .is_sensitive(false)
                                .synonyms(Some([].into()))
                                .config_type(Some(ConfigType::String.into()))
                                .documentation(Some("".into()))
                        })
                        .collect::<Vec<_>>()
                })
            })?
        } else {
            Some(vec![])
        };
        let code = if configs.is_some() {
            ErrorCode::None
        } else {
            ErrorCode::UnknownTopicOrPartition
        };
        Ok(DescribeConfigsResult::default()
            .error_code(code.into())
            .error_message(Some(code.to_string()))
            .resource_type(i8::from(resource))
            .resource_name(name.into())
            .configs(Some(configs.unwrap_or_default())))
    }

    async fn list_groups(&self, _states_filter: Option<&[String]>) -> Result<Vec<ListedGroup>> {
        let groups = self.inner.groups.lock().map_err(poisoned)?;
        Ok(groups
            .keys()
            .map(|name| {
                ListedGroup::default()
                    .group_id(name.clone())
                    .protocol_type("consumer".into())
                    .group_state(Some("Stable".into()))
                    .group_type(None)
            })
            .collect())
    }

    async fn delete_groups(
        &self,
        group_ids: Option<&[String]>,
    ) -> Result<Vec<DeletableGroupResult>> {
        let mut groups = self.inner.groups.lock().map_err(poisoned)?;
        Ok(group_ids
            .unwrap_or_default()
            .iter()
            .map(|id| {
                let code = if groups.remove(id).is_some() {
                    ErrorCode::None
                } else {
                    ErrorCode::GroupIdNotFound
                };
                DeletableGroupResult::default()
                    .group_id(id.clone())
                    .error_code(code.into())
            })
            .collect())
    }

    async fn describe_groups(
        &self,
        group_ids: Option<&[String]>,
        _include_authorized_operations: bool,
    ) -> Result<Vec<NamedGroupDetail>> {
        let groups = self.inner.groups.lock().map_err(poisoned)?;
        Ok(group_ids
            .unwrap_or_default()
            .iter()
            .map(|id| match groups.get(id) {
                Some((detail, _)) => NamedGroupDetail::found(id.clone(), detail.clone()),
                None => NamedGroupDetail::error_code(id.clone(), ErrorCode::GroupIdNotFound),
            })
            .collect())
    }

    async fn describe_topic_partitions(
        &self,
        topics: Option<&[TopicId]>,
        partition_limit: i32,
        _cursor: Option<Topition>,
    ) -> Result<Vec<DescribeTopicPartitionsResponseTopic>> {
        let metadata = self.metadata(topics).await?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .error_code(t.error_code)
                    .name(t.name.clone())
                    .topic_id(t.topic_id.unwrap_or(NULL_TOPIC_ID))
                    .is_internal(false)
                    .partitions(Some(
                        t.partitions
                            .as_deref()
                            .unwrap_or_default()
                            .iter()
                            .take(usize::try_from(partition_limit).unwrap_or(usize::MAX))
                            .map(|p| {
                                DescribeTopicPartitionsResponsePartition::default()
                                    .error_code(p.error_code)
                                    .partition_index(p.partition_index)
                                    .leader_id(p.leader_id)
                                    .leader_epoch(p.leader_epoch.unwrap_or(0))
                                    .replica_nodes(p.replica_nodes.clone())
                                    .isr_nodes(p.isr_nodes.clone())
                                    .eligible_leader_replicas(Some([].into()))
                                    .last_known_elr(Some([].into()))
                                    .offline_replicas(p.offline_replicas.clone())
                            })
                            .collect(),
                    ))
                    .topic_authorized_operations(i32::MIN)
            })
            .collect())
    }

    async fn update_group(
        &self,
        group_id: &str,
        detail: GroupDetail,
        version: Option<Version>,
    ) -> Result<Version, UpdateError<GroupDetail>> {
        let mut groups = self
            .inner
            .groups
            .lock()
            .map_err(|_| UpdateError::Error(Error::Message("groups lock poisoned".into())))?;
        if let Some((current, tag)) = groups.get(group_id) {
            let current_version = Version::from(tag);
            if version.as_ref() != Some(&current_version) {
                return Err(UpdateError::Outdated {
                    current: Box::new(current.clone()),
                    version: current_version,
                });
            }
        }
        let tag = Uuid::new_v4();
        _ = groups.insert(group_id.to_owned(), (detail, tag));
        Ok(Version::from(&tag))
    }

    async fn init_producer(
        &self,
        transaction_id: Option<&str>,
        _transaction_timeout_ms: i32,
        producer_id: Option<i64>,
        producer_epoch: Option<i16>,
    ) -> Result<ProducerIdResponse> {
        if transaction_id.is_some() {
            // No transactions on the single node (documented): what Kafka answers when a
            // client may not use a transactional id.
            return Ok(ProducerIdResponse {
                error: ErrorCode::TransactionalIdAuthorizationFailed,
                id: -1,
                epoch: -1,
            });
        }
        if let (Some(id), Some(epoch)) = (producer_id, producer_epoch) {
            if id >= 0 && epoch >= 0 {
                // KIP-360: a producer bumping its epoch after an error keeps its id.
                return Ok(ProducerIdResponse {
                    error: ErrorCode::None,
                    id,
                    epoch: epoch.wrapping_add(1).max(0),
                });
            }
        }
        let id = self.with_state(|s| s.last_producer_id.max(now_millis()) + 1)?;
        self.commit_meta(Meta::ProducerIdAllocated { id }).await?;
        Ok(ProducerIdResponse {
            error: ErrorCode::None,
            id,
            epoch: 0,
        })
    }

    async fn txn_add_offsets(
        &self,
        _transaction_id: &str,
        _producer_id: i64,
        _producer_epoch: i16,
        _group_id: &str,
    ) -> Result<ErrorCode> {
        Ok(ErrorCode::TransactionalIdAuthorizationFailed)
    }

    async fn txn_add_partitions(
        &self,
        partitions: TxnAddPartitionsRequest,
    ) -> Result<TxnAddPartitionsResponse> {
        let refused = ErrorCode::TransactionalIdAuthorizationFailed;
        Ok(match partitions {
            TxnAddPartitionsRequest::VersionZeroToThree { topics, .. } => {
                TxnAddPartitionsResponse::VersionZeroToThree(
                    topics
                        .iter()
                        .map(|topic| {
                            AddPartitionsToTxnTopicResult::default()
                                .name(topic.name.clone())
                                .results_by_partition(Some(
                                    topic
                                        .partitions
                                        .as_deref()
                                        .unwrap_or_default()
                                        .iter()
                                        .map(|p| {
                                            tansu_sans_io::add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                                .partition_index(*p)
                                                .partition_error_code(refused.into())
                                        })
                                        .collect(),
                                ))
                        })
                        .collect(),
                )
            }
            TxnAddPartitionsRequest::VersionFourPlus { transactions } => {
                TxnAddPartitionsResponse::VersionFourPlus(
                    transactions
                        .iter()
                        .map(|t| {
                            AddPartitionsToTxnResult::default()
                                .transactional_id(t.transactional_id.clone())
                                .topic_results(Some([].into()))
                        })
                        .collect(),
                )
            }
        })
    }

    async fn txn_offset_commit(
        &self,
        offsets: TxnOffsetCommitRequest,
    ) -> Result<Vec<TxnOffsetCommitResponseTopic>> {
        Ok(offsets
            .topics
            .iter()
            .map(|topic| {
                TxnOffsetCommitResponseTopic::default()
                    .name(topic.name.clone())
                    .partitions(Some(
                        topic
                            .partitions
                            .as_deref()
                            .unwrap_or_default()
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .partition_index(p.partition_index)
                                    .error_code(
                                        ErrorCode::TransactionalIdAuthorizationFailed.into(),
                                    )
                            })
                            .collect(),
                    ))
            })
            .collect())
    }

    async fn txn_end(
        &self,
        _transaction_id: &str,
        _producer_id: i64,
        _producer_epoch: i16,
        _committed: bool,
    ) -> Result<ErrorCode> {
        Ok(ErrorCode::TransactionalIdAuthorizationFailed)
    }

    async fn cluster_id(&self) -> Result<String> {
        Ok(self.inner.cluster_id.clone())
    }

    async fn node(&self) -> Result<i32> {
        Ok(self.inner.node_id)
    }

    async fn advertised_listener(&self) -> Result<Url> {
        Ok(self.inner.advertised_listener.clone())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
