//! The group coordinator the broker runs: every group's state machine (`machine.rs`)
//! behind one mutex, the waits the protocol asks for, a reaper that expires members, and
//! committed offsets kept by the storage engine (so they survive restarts).
//!
//! Group membership itself lives in memory, as the broker is a single node: after a
//! broker restart members get `UNKNOWN_MEMBER_ID` on their next heartbeat and rejoin.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tansu_broker::{
    coordinator::group::{Coordinator, OffsetCommit},
    Result,
};
use tansu_sans_io::{
    join_group_request::JoinGroupRequestProtocol,
    join_group_response::JoinGroupResponseMember,
    leave_group_request::MemberIdentity,
    leave_group_response::MemberResponse,
    offset_commit_request::OffsetCommitRequestTopic,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic},
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    },
    sync_group_request::SyncGroupRequestAssignment,
    Body, ErrorCode, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse,
    OffsetCommitResponse, OffsetFetchResponse, SyncGroupResponse,
};
use tansu_storage::{OffsetCommitRequest, Storage, Topition};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use uuid::Uuid;

use super::machine::{
    Group, GroupView, JoinReply, JoinRequest, Joined, Millis, State, SyncReply, SyncRequest, Synced,
};

/// How often the reaper looks for expired members and timed-out rebalances.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// The longest a follower's SyncGroup waits for the leader's assignment; the leader's
/// session timeout normally ends the wait much earlier.
const SYNC_WAIT: Duration = Duration::from_secs(300);

/// A group and the signal its waiting requests wait on.
#[derive(Debug)]
struct Slot {
    group: Group,
    changed: watch::Sender<()>,
}

#[derive(Debug)]
struct Shared<S> {
    storage: S,
    groups: Mutex<BTreeMap<String, Slot>>,
    clock: Instant,
}

/// The broker's group coordinator (cheap to clone: clones share the groups).
#[derive(Clone, Debug)]
pub(crate) struct Groups<S> {
    shared: Arc<Shared<S>>,
}

impl<S: Storage> Groups<S> {
    /// A coordinator keeping committed offsets in `storage`, whose reaper runs until
    /// `stop` is cancelled.
    pub(crate) fn new(storage: S, stop: CancellationToken) -> Self {
        let groups = Self {
            shared: Arc::new(Shared {
                storage,
                groups: Mutex::new(BTreeMap::new()),
                clock: Instant::now(),
            }),
        };
        let reaper = groups.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REAP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = every.tick() => reaper.reap(),
                }
            }
        });
        groups
    }

    fn now(&self) -> Millis {
        Millis::try_from(self.shared.clock.elapsed().as_millis()).unwrap_or(Millis::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        // A panic in a transition leaves the map consistent (transitions do not unwind
        // half-way through a map update), so keep serving.
        self.shared
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Expires members and ends timed-out rebalances in every group.
    fn reap(&self) {
        let now = self.now();
        for (group_id, slot) in self.lock().iter_mut() {
            let before = (slot.group.state(), slot.group.generation());
            if slot.group.tick(now) {
                let after = (slot.group.state(), slot.group.generation());
                info!(
                    group_id,
                    ?before,
                    ?after,
                    "group changed on expiry or timeout"
                );
                slot.changed.send_replace(());
            }
        }
    }

    /// Runs `transition` on the group (created if `create` and missing), wakes the
    /// requests waiting on it, and returns a receiver for its next change.
    fn update<T>(
        &self,
        group_id: &str,
        create: bool,
        transition: impl FnOnce(&mut Group, Millis) -> T,
    ) -> Option<(T, watch::Receiver<()>)> {
        let now = self.now();
        let mut groups = self.lock();
        if create && !groups.contains_key(group_id) {
            _ = groups.insert(
                group_id.to_owned(),
                Slot {
                    group: Group::new(),
                    changed: watch::Sender::new(()),
                },
            );
        }
        let slot = groups.get_mut(group_id)?;
        let out = transition(&mut slot.group, now);
        slot.changed.send_replace(());
        Some((out, slot.changed.subscribe()))
    }

    /// Reads the group without waking anyone.
    fn read<T>(&self, group_id: &str, read: impl FnOnce(&mut Group) -> T) -> Option<T> {
        self.lock()
            .get_mut(group_id)
            .map(|slot| read(&mut slot.group))
    }

    /// A JoinGroup: answers at once or once the rebalance completed.
    pub(crate) async fn join_group(&self, group_id: &str, request: JoinRequest) -> JoinReply {
        let bound = Duration::from_millis(
            u64::try_from(request.rebalance_timeout_ms.max(request.session_timeout_ms))
                .unwrap_or(0),
        ) * 2
            + Duration::from_secs(5);
        let Some((joined, mut changed)) =
            self.update(group_id, true, |group, now| group.join(now, request))
        else {
            unreachable!("update creates the group");
        };
        let member_id = match joined {
            Joined::Reply(reply) => return reply,
            Joined::Wait { member_id } => member_id,
        };
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            match self.read(group_id, |group| group.join_outcome(&member_id)) {
                Some(Some(reply)) => return reply,
                Some(None) => {}
                None => return error_join(ErrorCode::UnknownMemberId, &member_id),
            }
            let woken = tokio::time::timeout_at(deadline, changed.changed()).await;
            if !matches!(woken, Ok(Ok(()))) {
                // Not expected (the reaper ends every rebalance in time); release the
                // member so its session can expire, and let the client rejoin.
                _ = self.read(group_id, |group| group.abandon_join(&member_id));
                return error_join(ErrorCode::RebalanceInProgress, &member_id);
            }
        }
    }

    /// A SyncGroup: the leader's answers at once, a follower's once the leader synced.
    async fn sync_group(&self, group_id: &str, request: SyncRequest) -> SyncReply {
        let (member_id, generation) = (request.member_id.clone(), request.generation);
        let Some((synced, mut changed)) =
            self.update(group_id, false, |group, now| group.sync(now, request))
        else {
            return error_sync(ErrorCode::UnknownMemberId);
        };
        if let Synced::Reply(reply) = synced {
            return reply;
        }
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        loop {
            match self.read(group_id, |group| group.sync_outcome(&member_id, generation)) {
                Some(Some(reply)) => return reply,
                Some(None) => {}
                None => return error_sync(ErrorCode::UnknownMemberId),
            }
            let woken = tokio::time::timeout_at(deadline, changed.changed()).await;
            if !matches!(woken, Ok(Ok(()))) {
                return error_sync(ErrorCode::RebalanceInProgress);
            }
        }
    }

    /// Every group, as ListGroups and DescribeGroups show it.
    pub(crate) fn views(&self) -> Vec<(String, GroupView)> {
        self.lock()
            .iter()
            .map(|(group_id, slot)| (group_id.clone(), slot.group.view()))
            .collect()
    }

    /// One group as DescribeGroups shows it, if the coordinator knows it.
    pub(crate) fn view(&self, group_id: &str) -> Option<GroupView> {
        self.read(group_id, |group| group.view())
    }

    /// A fresh member id, as Kafka makes them: the client's (or instance's) id and a UUID.
    pub(crate) fn member_id(prefix: &str) -> String {
        let prefix = if prefix.is_empty() { "member" } else { prefix };
        format!("{prefix}-{}", Uuid::new_v4())
    }

    async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<Topition>>,
        require_stable: Option<bool>,
    ) -> Result<BTreeMap<Topition, i64>> {
        let storage = &self.shared.storage;
        match partitions {
            Some(partitions) => storage
                .offset_fetch(Some(group_id), &partitions, require_stable)
                .await
                .map_err(Into::into),
            None => storage
                .committed_offset_topitions(group_id)
                .await
                .map_err(Into::into),
        }
    }
}

fn error_join(error: ErrorCode, member_id: &str) -> JoinReply {
    JoinReply {
        error,
        generation: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_owned(),
        members: Vec::new(),
    }
}

fn error_sync(error: ErrorCode) -> SyncReply {
    SyncReply {
        error,
        protocol_type: None,
        protocol_name: None,
        assignment: Default::default(),
    }
}

/// The JoinGroup response body.
pub(crate) fn join_body(reply: JoinReply) -> Body {
    JoinGroupResponse::default()
        .throttle_time_ms(Some(0))
        .error_code(reply.error.into())
        .generation_id(reply.generation)
        .protocol_type(reply.protocol_type)
        // Non-nullable before v7: an error answer carries "".
        .protocol_name(Some(reply.protocol_name.unwrap_or_default()))
        .leader(reply.leader)
        .skip_assignment(Some(false))
        .member_id(reply.member_id)
        .members(Some(
            reply
                .members
                .into_iter()
                .map(|member| {
                    JoinGroupResponseMember::default()
                        .member_id(member.member_id)
                        .group_instance_id(member.instance_id)
                        .metadata(member.metadata)
                })
                .collect(),
        ))
        .into()
}

/// Groups partitions by topic, in topic order.
fn by_topic<T>(
    partitions: impl IntoIterator<Item = (Topition, T)>,
) -> BTreeMap<String, Vec<(i32, T)>> {
    let mut topics: BTreeMap<String, Vec<(i32, T)>> = BTreeMap::new();
    for (topition, value) in partitions {
        topics
            .entry(topition.topic().to_owned())
            .or_default()
            .push((topition.partition(), value));
    }
    topics
}

fn topitions<'a>(topics: impl IntoIterator<Item = (&'a str, Option<&'a [i32]>)>) -> Vec<Topition> {
    topics
        .into_iter()
        .flat_map(|(name, partitions)| {
            partitions
                .unwrap_or_default()
                .iter()
                .map(move |partition| Topition::new(name, *partition))
        })
        .collect()
}

#[async_trait]
impl<S: Storage> Coordinator for Groups<S> {
    /// JoinGroup through the trait (tansu's own route): version and client address are not
    /// known here, so a new dynamic member is admitted at once. The broker routes
    /// JoinGroup through `routes.rs` instead, which knows both.
    async fn join(
        &mut self,
        client_id: Option<&str>,
        group_id: &str,
        session_timeout_ms: i32,
        rebalance_timeout_ms: Option<i32>,
        member_id: &str,
        group_instance_id: Option<&str>,
        protocol_type: &str,
        protocols: Option<&[JoinGroupRequestProtocol]>,
        _reason: Option<&str>,
    ) -> Result<Body> {
        let client_id = client_id.unwrap_or_default();
        let request = JoinRequest {
            member_id: member_id.to_owned(),
            instance_id: group_instance_id.map(str::to_owned),
            client_id: client_id.to_owned(),
            client_host: String::new(),
            session_timeout_ms: session_timeout_ms.into(),
            rebalance_timeout_ms: rebalance_timeout_ms.unwrap_or(session_timeout_ms).into(),
            protocol_type: protocol_type.to_owned(),
            protocols: protocols
                .unwrap_or_default()
                .iter()
                .map(|protocol| (protocol.name.clone(), protocol.metadata.clone()))
                .collect(),
            require_known_member_id: false,
            fresh_member_id: Self::member_id(group_instance_id.unwrap_or(client_id)),
        };
        Ok(join_body(self.join_group(group_id, request).await))
    }

    async fn sync(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Option<&[SyncGroupRequestAssignment]>,
    ) -> Result<Body> {
        let request = SyncRequest {
            member_id: member_id.to_owned(),
            generation: generation_id,
            instance_id: group_instance_id.map(str::to_owned),
            protocol_type: protocol_type.map(str::to_owned),
            protocol_name: protocol_name.map(str::to_owned),
            assignments: assignments
                .unwrap_or_default()
                .iter()
                .map(|assignment| (assignment.member_id.clone(), assignment.assignment.clone()))
                .collect(),
        };
        let reply = self.sync_group(group_id, request).await;
        debug!(group_id, member_id, error = ?reply.error, "sync");
        Ok(SyncGroupResponse::default()
            .throttle_time_ms(Some(0))
            .error_code(reply.error.into())
            .protocol_type(reply.protocol_type)
            .protocol_name(reply.protocol_name)
            .assignment(reply.assignment)
            .into())
    }

    async fn heartbeat(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<Body> {
        let error = self
            .update(group_id, false, |group, now| {
                group.heartbeat(now, member_id, generation_id, group_instance_id)
            })
            .map_or(ErrorCode::UnknownMemberId, |(error, _)| error);
        Ok(HeartbeatResponse::default()
            .throttle_time_ms(Some(0))
            .error_code(error.into())
            .into())
    }

    async fn leave(
        &mut self,
        group_id: &str,
        member_id: Option<&str>,
        members: Option<&[MemberIdentity]>,
    ) -> Result<Body> {
        let leaving: Vec<(String, Option<String>)> = match (members, member_id) {
            (Some(members), _) => members
                .iter()
                .map(|member| (member.member_id.clone(), member.group_instance_id.clone()))
                .collect(),
            (None, Some(member_id)) => vec![(member_id.to_owned(), None)],
            (None, None) => Vec::new(),
        };
        let errors = self
            .update(group_id, false, |group, now| {
                leaving
                    .iter()
                    .map(|(member_id, instance_id)| {
                        group.leave(now, member_id, instance_id.as_deref())
                    })
                    .collect::<Vec<_>>()
            })
            .map_or_else(
                || vec![ErrorCode::UnknownMemberId; leaving.len()],
                |(errors, _)| errors,
            );
        info!(group_id, ?leaving, ?errors, "leave");
        let response = LeaveGroupResponse::default().throttle_time_ms(Some(0));
        Ok(match members {
            Some(_) => response.error_code(ErrorCode::None.into()).members(Some(
                leaving
                    .into_iter()
                    .zip(errors)
                    .map(|((member_id, instance_id), error)| {
                        MemberResponse::default()
                            .member_id(member_id)
                            .group_instance_id(instance_id)
                            .error_code(error.into())
                    })
                    .collect(),
            )),
            None => response
                .error_code(errors.first().copied().unwrap_or(ErrorCode::None).into())
                .members(None),
        }
        .into())
    }

    async fn offset_commit(&mut self, detail: OffsetCommit<'_>) -> Result<Body> {
        let member_id = detail.member_id.unwrap_or_default();
        let generation = detail.generation_id_or_member_epoch.unwrap_or(-1);
        let outside_management =
            generation < 0 && member_id.is_empty() && detail.group_instance_id.is_none();
        let check = self
            .update(detail.group_id, false, |group, now| {
                group.commit_check(now, member_id, generation, detail.group_instance_id)
            })
            .map(|(error, _)| error);
        let error = match check {
            Some(error) => error,
            None if outside_management => ErrorCode::None,
            None => ErrorCode::UnknownMemberId,
        };
        let topics: &[OffsetCommitRequestTopic] = detail.topics.unwrap_or_default();
        let results: Vec<(Topition, ErrorCode)> = if error == ErrorCode::None {
            let retention = detail
                .retention_time_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis);
            let mut offsets = Vec::new();
            for topic in topics {
                for partition in topic.partitions.as_deref().unwrap_or_default() {
                    offsets.push((
                        Topition::new(topic.name.as_str(), partition.partition_index),
                        OffsetCommitRequest::try_from(partition)?,
                    ));
                }
            }
            self.shared
                .storage
                .offset_commit(detail.group_id, retention, &offsets)
                .await?
        } else {
            debug!(
                group_id = detail.group_id,
                member_id,
                generation,
                ?error,
                "commit refused"
            );
            topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .map(|partition| {
                            (
                                Topition::new(topic.name.as_str(), partition.partition_index),
                                error,
                            )
                        })
                })
                .collect()
        };
        Ok(OffsetCommitResponse::default()
            .throttle_time_ms(Some(0))
            .topics(Some(
                by_topic(results)
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetCommitResponseTopic::default()
                            .name(name)
                            .partitions(Some(
                                partitions
                                    .into_iter()
                                    .map(|(index, error)| {
                                        OffsetCommitResponsePartition::default()
                                            .partition_index(index)
                                            .error_code(error.into())
                                    })
                                    .collect(),
                            ))
                    })
                    .collect(),
            ))
            .into())
    }

    async fn offset_fetch(
        &mut self,
        group_id: Option<&str>,
        topics: Option<&[OffsetFetchRequestTopic]>,
        groups: Option<&[OffsetFetchRequestGroup]>,
        require_stable: Option<bool>,
    ) -> Result<Body> {
        // v0-7: one group, its topics (none: every committed offset).
        let topics = match group_id {
            Some(group_id) => {
                let partitions = topics.map(|topics| {
                    topitions(
                        topics
                            .iter()
                            .map(|topic| (topic.name.as_str(), topic.partition_indexes.as_deref())),
                    )
                });
                let offsets = self
                    .fetch_offsets(group_id, partitions, require_stable)
                    .await?;
                Some(
                    by_topic(offsets)
                        .into_iter()
                        .map(|(name, partitions)| {
                            OffsetFetchResponseTopic::default()
                                .name(name)
                                .partitions(Some(
                                    partitions
                                        .into_iter()
                                        .map(|(index, offset)| {
                                            OffsetFetchResponsePartition::default()
                                                .partition_index(index)
                                                .committed_offset(offset)
                                                .committed_leader_epoch(Some(-1))
                                                .metadata(Some(String::new()))
                                                .error_code(ErrorCode::None.into())
                                        })
                                        .collect(),
                                ))
                        })
                        .collect(),
                )
            }
            None => None,
        };
        // v8+: several groups.
        let groups = match groups {
            Some(groups) => {
                let mut answers = Vec::with_capacity(groups.len());
                for group in groups {
                    let partitions =
                        group.topics.as_deref().map(|topics| {
                            topitions(topics.iter().map(|topic| {
                                (topic.name.as_str(), topic.partition_indexes.as_deref())
                            }))
                        });
                    let offsets = self
                        .fetch_offsets(&group.group_id, partitions, require_stable)
                        .await?;
                    answers.push(
                        OffsetFetchResponseGroup::default()
                            .group_id(group.group_id.clone())
                            .topics(Some(
                                by_topic(offsets)
                                    .into_iter()
                                    .map(|(name, partitions)| {
                                        OffsetFetchResponseTopics::default().name(name).partitions(
                                            Some(
                                                partitions
                                                    .into_iter()
                                                    .map(|(index, offset)| {
                                                        OffsetFetchResponsePartitions::default()
                                                            .partition_index(index)
                                                            .committed_offset(offset)
                                                            .committed_leader_epoch(-1)
                                                            .metadata(None)
                                                            .error_code(ErrorCode::None.into())
                                                    })
                                                    .collect(),
                                            ),
                                        )
                                    })
                                    .collect(),
                            ))
                            .error_code(ErrorCode::None.into()),
                    );
                }
                Some(answers)
            }
            None => None,
        };
        Ok(OffsetFetchResponse::default()
            .throttle_time_ms(Some(0))
            .topics(topics)
            .error_code(Some(ErrorCode::None.into()))
            .groups(groups)
            .into())
    }
}

/// The states a ListGroups `StatesFilter` may name, as Kafka spells them.
pub(crate) fn state_matches(state: State, filter: &[String]) -> bool {
    filter.is_empty()
        || filter
            .iter()
            .any(|name| name.eq_ignore_ascii_case(state.name()))
}
