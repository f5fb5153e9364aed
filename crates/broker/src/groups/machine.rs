//! One consumer group under Kafka's classic group protocol, as a pure state machine.
//!
//! Every transition takes the current time in milliseconds (`now`, from any monotonic
//! clock the caller chooses) and returns what to answer; nothing here sleeps, spawns or
//! locks. The async coordinator (`groups.rs`) holds each group behind a mutex, parks the
//! requests the protocol makes wait (a JoinGroup until the rebalance completes, a follower's
//! SyncGroup until the leader has sent the assignment) and calls [`Group::tick`] to expire
//! members and end rebalances whose time is up.
//!
//! The states and the rules follow Apache Kafka's `GroupCoordinator` (the classic
//! protocol, KIP-345 static membership included):
//!
//! - `Empty` → `PreparingRebalance` on a join; `PreparingRebalance` → `CompletingRebalance`
//!   once every known member has rejoined (or the rebalance timeout passed: dynamic members
//!   that did not rejoin are dropped); the generation is bumped and a rejoined member is
//!   made leader and handed the member list; `CompletingRebalance` → `Stable` when the
//!   leader's SyncGroup brings the assignment; any join with new metadata, leave or expiry
//!   goes back to `PreparingRebalance`, and the last member gone leaves the group `Empty`.
//! - A member is expired when it has not been heard of for its session timeout, static
//!   members too. A static member (`group.instance.id`) rejoining under the same instance
//!   id takes over the old member's place with a new member id; in a `Stable` group with
//!   unchanged metadata it keeps its assignment and nobody rebalances.
//! - Requests carrying an old generation get `ILLEGAL_GENERATION`, an unknown member id
//!   `UNKNOWN_MEMBER_ID`, an instance id now held by another member id `FENCED_INSTANCE_ID`.

use std::collections::BTreeMap;

use bytes::Bytes;
use tansu_sans_io::ErrorCode;

/// Milliseconds on the caller's monotonic clock.
pub(crate) type Millis = u64;

/// Session timeouts a member may ask for. Kafka's floor is 6 s
/// (`group.min.session.timeout.ms`); ours is lower so tests can expire members quickly.
pub(crate) const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<i64> = 1_000..=1_800_000;

/// The state of a group, named as Kafka names them in DescribeGroups and ListGroups.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    /// The name clients see (DescribeGroups `GroupState`, ListGroups `GroupState`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Clone, Debug, Default)]
pub(crate) struct JoinRequest {
    /// Empty on a member's first join.
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i64,
    pub(crate) rebalance_timeout_ms: i64,
    pub(crate) protocol_type: String,
    /// (protocol name, metadata) in the member's order of preference.
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets `MEMBER_ID_REQUIRED` and its id, and
    /// becomes a member when it joins again with that id (so a client that retries a lost
    /// first join does not leave a ghost member behind).
    pub(crate) require_known_member_id: bool,
    /// The member id to give this member if it needs a new one (chosen by the caller).
    pub(crate) fresh_member_id: String,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct JoinReply {
    pub(crate) error: ErrorCode,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// The members and their metadata, for the leader only.
    pub(crate) members: Vec<JoinedMember>,
}

impl JoinReply {
    fn error(error: ErrorCode, member_id: &str) -> Self {
        Self {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct JoinedMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) metadata: Bytes,
}

/// What a JoinGroup gets now.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum Joined {
    /// Answer at once.
    Reply(JoinReply),
    /// The request waits for the rebalance; ask [`Group::join_outcome`] for this member.
    Wait { member_id: String },
}

/// A SyncGroup request, decoded.
#[derive(Clone, Debug, Default)]
pub(crate) struct SyncRequest {
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) instance_id: Option<String>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    /// The leader's assignment: (member id, assignment).
    pub(crate) assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct SyncReply {
    pub(crate) error: ErrorCode,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignment: Bytes,
}

/// What a SyncGroup gets now.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum Synced {
    Reply(SyncReply),
    /// A follower waits for the leader's assignment; ask [`Group::sync_outcome`].
    Wait,
}

/// A member, as DescribeGroups shows it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct MemberView {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    /// The member's metadata for the group's protocol.
    pub(crate) metadata: Bytes,
    pub(crate) assignment: Bytes,
}

/// A group, as DescribeGroups shows it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct GroupView {
    pub(crate) state: State,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberView>,
}

#[derive(Clone, Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// When the member was last heard of (join, sync, heartbeat, commit).
    last_seen: Millis,
    /// A JoinGroup of this member waits for the rebalance to complete.
    awaiting_join: bool,
    /// The answer to that JoinGroup, once the rebalance completed.
    join_reply: Option<JoinReply>,
}

impl Member {
    fn new(now: Millis, request: &JoinRequest) -> Self {
        Self {
            instance_id: request.instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols.clone(),
            assignment: Bytes::new(),
            last_seen: now,
            awaiting_join: false,
            join_reply: None,
        }
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn expired(&self, now: Millis) -> bool {
        !self.awaiting_join && now.saturating_sub(self.last_seen) > millis(self.session_timeout_ms)
    }
}

fn millis(ms: i64) -> Millis {
    Millis::try_from(ms).unwrap_or(0)
}

/// A member id handed out with `MEMBER_ID_REQUIRED`, not yet used to join.
#[derive(Clone, Copy, Debug)]
struct Pending {
    since: Millis,
    session_timeout_ms: i64,
}

/// One consumer group.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Static members: instance id → current member id.
    instances: BTreeMap<String, String>,
    pending: BTreeMap<String, Pending>,
    /// When a rebalance in `PreparingRebalance` stops waiting for members to rejoin.
    rebalance_deadline: Option<Millis>,
}

impl Default for Group {
    fn default() -> Self {
        Self::new()
    }
}

impl Group {
    /// A group nobody has joined yet.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            instances: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline: None,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn generation(&self) -> i32 {
        self.generation
    }

    /// A JoinGroup.
    pub(crate) fn join(&mut self, now: Millis, request: JoinRequest) -> Joined {
        let member_id = request.member_id.clone();
        if !SESSION_TIMEOUT_MS.contains(&request.session_timeout_ms) {
            return Joined::Reply(JoinReply::error(
                ErrorCode::InvalidSessionTimeout,
                &member_id,
            ));
        }
        if !self.accepts_protocols(&request) {
            return Joined::Reply(JoinReply::error(
                ErrorCode::InconsistentGroupProtocol,
                &member_id,
            ));
        }
        if member_id.is_empty() {
            self.join_new(now, request)
        } else {
            self.join_known(now, request)
        }
    }

    /// Whether the member's protocols fit the group: same protocol type, and at least one
    /// protocol every other member supports too.
    fn accepts_protocols(&self, request: &JoinRequest) -> bool {
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .iter()
            .filter(|(id, _)| **id != request.member_id)
            .map(|(_, member)| member)
            .collect();
        if others.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(request.protocol_type.as_str())
            && request
                .protocols
                .iter()
                .any(|(name, _)| others.iter().all(|member| member.supports(name)))
    }

    /// A first join (no member id yet).
    fn join_new(&mut self, now: Millis, request: JoinRequest) -> Joined {
        let member_id = request.fresh_member_id.clone();
        if let Some(instance_id) = request.instance_id.clone() {
            if let Some(old) = self.instances.get(&instance_id).cloned() {
                return self.rejoin_static(now, &old, request);
            }
        } else if request.require_known_member_id {
            _ = self.pending.insert(
                member_id.clone(),
                Pending {
                    since: now,
                    session_timeout_ms: request.session_timeout_ms,
                },
            );
            return Joined::Reply(JoinReply::error(ErrorCode::MemberIdRequired, &member_id));
        }
        self.add_member(now, &member_id, &request);
        self.wait_for_rebalance(now, member_id)
    }

    /// A static member rejoining with no member id: it takes over its old place.
    fn rejoin_static(&mut self, now: Millis, old: &str, request: JoinRequest) -> Joined {
        let new = request.fresh_member_id.clone();
        let old_leader = self.leader.clone().unwrap_or_default();
        let Some(mut member) = self.members.remove(old) else {
            // `instances` and `members` move together; heal and treat it as new.
            _ = self
                .instances
                .remove(request.instance_id.as_deref().unwrap_or_default());
            self.add_member(now, &new, &request);
            return self.wait_for_rebalance(now, new);
        };
        let same_protocols = member.protocols == request.protocols;
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.protocols = request.protocols.clone();
        member.last_seen = now;
        // A join of the old member id still waiting is answered as fenced.
        member.join_reply = None;
        _ = self.members.insert(new.clone(), member);
        if let Some(instance_id) = &request.instance_id {
            _ = self.instances.insert(instance_id.clone(), new.clone());
        }
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new.clone());
        }
        if self.state == State::Stable && same_protocols {
            // Kafka's answer: the current generation and the *old* leader id, so the
            // rejoining member does not take itself for the leader and recompute an
            // assignment a stable group would not hand out; it syncs and gets its own.
            return Joined::Reply(JoinReply {
                error: ErrorCode::None,
                generation: self.generation,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol.clone(),
                leader: old_leader,
                member_id: new,
                members: Vec::new(),
            });
        }
        self.wait_for_rebalance(now, new)
    }

    /// A join with a member id.
    fn join_known(&mut self, now: Millis, request: JoinRequest) -> Joined {
        let member_id = request.member_id.clone();
        if self.pending.remove(&member_id).is_some() && !self.members.contains_key(&member_id) {
            self.add_member(now, &member_id, &request);
            return self.wait_for_rebalance(now, member_id);
        }
        if let Some(error) = self.fenced(&member_id, request.instance_id.as_deref()) {
            return Joined::Reply(JoinReply::error(error, &member_id));
        }
        let Some(member) = self.members.get_mut(&member_id) else {
            return Joined::Reply(JoinReply::error(ErrorCode::UnknownMemberId, &member_id));
        };
        let same_protocols = member.protocols == request.protocols;
        member.last_seen = now;
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.protocols = request.protocols;
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            State::CompletingRebalance if same_protocols => {
                // A retried join: answer what the rebalance answered.
                Joined::Reply(self.join_reply_for(&member_id))
            }
            State::Stable if same_protocols && !is_leader => {
                Joined::Reply(self.join_reply_for(&member_id))
            }
            // New metadata, a leader's join (how a leader asks for a rebalance), or a
            // rebalance in progress: take part in it.
            _ => self.wait_for_rebalance(now, member_id),
        }
    }

    fn add_member(&mut self, now: Millis, member_id: &str, request: &JoinRequest) {
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        _ = self
            .members
            .insert(member_id.to_owned(), Member::new(now, request));
        if let Some(instance_id) = &request.instance_id {
            _ = self
                .instances
                .insert(instance_id.clone(), member_id.to_owned());
        }
    }

    /// Marks the member as waiting in the rebalance (starting one if needed).
    fn wait_for_rebalance(&mut self, now: Millis, member_id: String) -> Joined {
        if let Some(member) = self.members.get_mut(&member_id) {
            member.awaiting_join = true;
            member.join_reply = None;
        }
        self.prepare_rebalance(now);
        self.maybe_complete_join(now);
        Joined::Wait { member_id }
    }

    /// The answer to a waiting JoinGroup of `member_id`, once there is one.
    pub(crate) fn join_outcome(&mut self, member_id: &str) -> Option<JoinReply> {
        match self.members.get_mut(member_id) {
            // Left, expired, or replaced by a static member's new id.
            None => Some(JoinReply::error(ErrorCode::UnknownMemberId, member_id)),
            Some(member) => member.join_reply.take(),
        }
    }

    /// A waiting JoinGroup gave up (its wait was bounded): it no longer holds the
    /// member alive.
    pub(crate) fn abandon_join(&mut self, member_id: &str) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.awaiting_join = false;
        }
    }

    /// The JoinGroup answer of the current generation for `member_id`.
    fn join_reply_for(&self, member_id: &str) -> JoinReply {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|(id, member)| JoinedMember {
                    member_id: id.clone(),
                    instance_id: member.instance_id.clone(),
                    metadata: member.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinReply {
            error: ErrorCode::None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_owned(),
            members,
        }
    }

    fn prepare_rebalance(&mut self, now: Millis) {
        if self.state == State::PreparingRebalance {
            return;
        }
        let timeout = self
            .members
            .values()
            .map(|member| millis(member.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        self.state = State::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
    }

    /// Completes the join phase once every member has rejoined and no handed-out member
    /// id is still to come back.
    fn maybe_complete_join(&mut self, now: Millis) {
        if self.state == State::PreparingRebalance
            && self.pending.is_empty()
            && self.members.values().all(|member| member.awaiting_join)
        {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Millis) {
        // Dynamic members that did not rejoin are gone; static ones keep their place until
        // their session times out (KIP-345).
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| !member.awaiting_join && member.instance_id.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
        self.pending.clear();
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            return;
        }
        let leader_rejoined = self
            .leader
            .as_ref()
            .and_then(|leader| self.members.get(leader))
            .is_some_and(|member| member.awaiting_join);
        if !leader_rejoined {
            self.leader = self
                .members
                .iter()
                .find(|(_, member)| member.awaiting_join)
                .map(|(id, _)| id.clone());
        }
        if self.leader.is_none() {
            // Only static members that did not rejoin are left: nobody could receive the
            // answer. Wait for them to rejoin or to expire.
            let timeout = self
                .members
                .values()
                .map(|member| millis(member.rebalance_timeout_ms))
                .max()
                .unwrap_or(0);
            self.rebalance_deadline = Some(now + timeout);
            return;
        }
        self.generation += 1;
        self.protocol = self.select_protocol();
        self.state = State::CompletingRebalance;
        let waiting: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| member.awaiting_join)
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            let reply = self.join_reply_for(&id);
            if let Some(member) = self.members.get_mut(&id) {
                member.awaiting_join = false;
                member.join_reply = Some(reply);
                member.last_seen = now;
            }
        }
    }

    /// The protocol every member supports that most members prefer (each member votes
    /// for its most preferred candidate), ties to the leader's preference.
    fn select_protocol(&self) -> Option<String> {
        let leader = self.members.get(self.leader.as_deref()?)?;
        let candidates: Vec<&String> = leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        let votes = |candidate: &String| {
            self.members
                .values()
                .filter(|member| {
                    member
                        .protocols
                        .iter()
                        .map(|(name, _)| name)
                        .find(|name| candidates.contains(name))
                        == Some(candidate)
                })
                .count()
        };
        let mut best: Option<(&String, usize)> = None;
        for candidate in &candidates {
            let count = votes(candidate);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((candidate, count));
            }
        }
        best.map(|(name, _)| name.clone())
    }

    /// `FENCED_INSTANCE_ID` when `instance_id` now belongs to another member id.
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> Option<ErrorCode> {
        let instance_id = instance_id?;
        match self.instances.get(instance_id) {
            Some(current) if current != member_id => Some(ErrorCode::FencedInstanceId),
            Some(_) => None,
            None => Some(ErrorCode::UnknownMemberId),
        }
    }

    /// Checks a request of `member_id` in `generation`: the error to answer, if any.
    fn check_member(
        &self,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> Option<ErrorCode> {
        if let Some(error) = self.fenced(member_id, instance_id) {
            return Some(error);
        }
        if !self.members.contains_key(member_id) {
            return Some(ErrorCode::UnknownMemberId);
        }
        (generation != self.generation).then_some(ErrorCode::IllegalGeneration)
    }

    /// A SyncGroup.
    pub(crate) fn sync(&mut self, now: Millis, request: SyncRequest) -> Synced {
        let error = |error| {
            Synced::Reply(SyncReply {
                error,
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            })
        };
        if let Some(code) = self.check_member(
            &request.member_id,
            request.generation,
            request.instance_id.as_deref(),
        ) {
            return error(code);
        }
        let mismatch = |asked: &Option<String>, ours: &Option<String>| {
            asked.is_some() && ours.is_some() && asked != ours
        };
        if mismatch(&request.protocol_type, &self.protocol_type)
            || mismatch(&request.protocol_name, &self.protocol)
        {
            return error(ErrorCode::InconsistentGroupProtocol);
        }
        if let Some(member) = self.members.get_mut(&request.member_id) {
            member.last_seen = now;
        }
        match self.state {
            State::Empty => error(ErrorCode::UnknownMemberId),
            State::PreparingRebalance => error(ErrorCode::RebalanceInProgress),
            State::CompletingRebalance => {
                if self.leader.as_deref() == Some(request.member_id.as_str()) {
                    let mut assignments: BTreeMap<String, Bytes> =
                        request.assignments.into_iter().collect();
                    for (id, member) in &mut self.members {
                        member.assignment = assignments.remove(id).unwrap_or_default();
                    }
                    self.state = State::Stable;
                }
                match self.sync_outcome(&request.member_id, request.generation) {
                    Some(reply) => Synced::Reply(reply),
                    None => Synced::Wait,
                }
            }
            State::Stable => Synced::Reply(self.sync_reply(&request.member_id)),
        }
    }

    fn sync_reply(&self, member_id: &str) -> SyncReply {
        SyncReply {
            error: ErrorCode::None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|member| member.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// The answer to a waiting SyncGroup of `member_id` in `generation`, once there is one.
    pub(crate) fn sync_outcome(&self, member_id: &str, generation: i32) -> Option<SyncReply> {
        let error = |error| SyncReply {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        };
        if !self.members.contains_key(member_id) {
            return Some(error(ErrorCode::UnknownMemberId));
        }
        if generation != self.generation || self.state == State::PreparingRebalance {
            return Some(error(ErrorCode::RebalanceInProgress));
        }
        (self.state == State::Stable).then(|| self.sync_reply(member_id))
    }

    /// A Heartbeat.
    pub(crate) fn heartbeat(
        &mut self,
        now: Millis,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> ErrorCode {
        if let Some(error) = self.check_member(member_id, generation, instance_id) {
            return error;
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_seen = now;
        }
        match self.state {
            State::PreparingRebalance => ErrorCode::RebalanceInProgress,
            State::Empty => ErrorCode::UnknownMemberId,
            State::CompletingRebalance | State::Stable => ErrorCode::None,
        }
    }

    /// Whether an OffsetCommit of `member_id` in `generation` may be stored; the error to
    /// answer if not. Generation -1 with no member id is a commit from outside group
    /// management, allowed while nobody is in the group.
    pub(crate) fn commit_check(
        &mut self,
        now: Millis,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> ErrorCode {
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return if self.members.is_empty() {
                ErrorCode::None
            } else {
                ErrorCode::UnknownMemberId
            };
        }
        if let Some(error) = self.check_member(member_id, generation, instance_id) {
            return error;
        }
        match self.state {
            // Kafka accepts commits while preparing a rebalance: members learn of it from
            // their next heartbeat and commit what they consumed before rejoining.
            State::Stable | State::PreparingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.last_seen = now;
                }
                ErrorCode::None
            }
            State::CompletingRebalance => ErrorCode::RebalanceInProgress,
            State::Empty => ErrorCode::UnknownMemberId,
        }
    }

    /// A LeaveGroup of one member: by member id, or by instance id (the batch form an
    /// admin client uses to remove static members, with an empty member id).
    pub(crate) fn leave(
        &mut self,
        now: Millis,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> ErrorCode {
        let target = match instance_id {
            Some(instance_id) => match self.instances.get(instance_id) {
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return ErrorCode::FencedInstanceId;
                }
                Some(current) => current.clone(),
                None => return ErrorCode::UnknownMemberId,
            },
            None => member_id.to_owned(),
        };
        if self.pending.remove(&target).is_some() {
            self.maybe_complete_join(now);
            return ErrorCode::None;
        }
        if !self.members.contains_key(&target) {
            return ErrorCode::UnknownMemberId;
        }
        self.remove(&target);
        self.member_gone(now);
        ErrorCode::None
    }

    fn remove(&mut self, member_id: &str) {
        let instance_id = self
            .members
            .remove(member_id)
            .and_then(|member| member.instance_id);
        if let Some(instance_id) = instance_id {
            if self.instances.get(&instance_id).map(String::as_str) == Some(member_id) {
                _ = self.instances.remove(&instance_id);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// After a member left or expired: the others rebalance.
    fn member_gone(&mut self, now: Millis) {
        if matches!(self.state, State::Stable | State::CompletingRebalance) {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
    }

    /// Time passes: expires members and handed-out ids not heard of within their session
    /// timeout, and ends a rebalance whose timeout passed. Returns whether anything changed.
    pub(crate) fn tick(&mut self, now: Millis) -> bool {
        let before = (
            self.state,
            self.generation,
            self.members.len(),
            self.pending.len(),
        );
        self.pending.retain(|_, pending| {
            now.saturating_sub(pending.since) <= millis(pending.session_timeout_ms)
        });
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| member.expired(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        if !expired.is_empty() {
            self.member_gone(now);
        }
        if self.state == State::PreparingRebalance
            && self
                .rebalance_deadline
                .is_some_and(|deadline| now >= deadline)
        {
            self.complete_join(now);
        }
        self.maybe_complete_join(now);
        before
            != (
                self.state,
                self.generation,
                self.members.len(),
                self.pending.len(),
            )
    }

    /// The group as DescribeGroups shows it.
    pub(crate) fn view(&self) -> GroupView {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupView {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: self
                .members
                .iter()
                .map(|(id, member)| MemberView {
                    member_id: id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: member.metadata(&protocol),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
