//! Table tests of the group state machine: each scenario drives one group through the
//! requests a client sends and checks what Kafka's coordinator would answer.

use super::*;

const SESSION: i64 = 10_000;
const REBALANCE: i64 = 30_000;

fn request(member_id: &str, instance_id: Option<&str>, fresh: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: instance_id.map(str::to_owned),
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".to_owned(),
        protocols: vec![("range".to_owned(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
        fresh_member_id: fresh.to_owned(),
    }
}

/// A dynamic member's two-step first join (MEMBER_ID_REQUIRED, then join with the id).
fn join_dynamic(group: &mut Group, now: Millis, id: &str) -> Joined {
    let first = group.join(now, request("", None, id));
    assert_eq!(
        first,
        Joined::Reply(JoinReply::error(ErrorCode::MemberIdRequired, id)),
        "a new dynamic member first gets its id"
    );
    group.join(now, request(id, None, "unused"))
}

fn join_static(group: &mut Group, now: Millis, instance: &str, fresh: &str) -> Joined {
    group.join(now, request("", Some(instance), fresh))
}

fn rejoin(group: &mut Group, now: Millis, id: &str) -> Joined {
    group.join(now, request(id, None, "unused"))
}

fn reply(group: &mut Group, id: &str) -> JoinReply {
    group
        .join_outcome(id)
        .unwrap_or_else(|| panic!("{id} has no join answer yet"))
}

fn sync(
    group: &mut Group,
    now: Millis,
    id: &str,
    generation: i32,
    assign: &[(&str, &str)],
) -> Synced {
    group.sync(
        now,
        SyncRequest {
            member_id: id.to_owned(),
            generation,
            instance_id: None,
            protocol_type: Some("consumer".to_owned()),
            protocol_name: Some("range".to_owned()),
            assignments: assign
                .iter()
                .map(|(member, bytes)| ((*member).to_owned(), Bytes::from(bytes.to_string())))
                .collect(),
        },
    )
}

fn assignment(group: &Group, id: &str, generation: i32) -> Bytes {
    group
        .sync_outcome(id, generation)
        .map(|reply| {
            assert_eq!(reply.error, ErrorCode::None);
            reply.assignment
        })
        .unwrap_or_else(|| panic!("{id} has no assignment yet"))
}

/// Two dynamic members `a` (leader) and `b`, stable in generation 2 with assignments
/// "A" and "B", at time 0.
fn stable_pair() -> Group {
    let mut group = Group::new();
    assert_eq!(
        join_dynamic(&mut group, 0, "a"),
        Joined::Wait {
            member_id: "a".into()
        }
    );
    let first = reply(&mut group, "a");
    assert_eq!((first.generation, first.leader.as_str()), (1, "a"));
    assert!(matches!(
        sync(&mut group, 0, "a", 1, &[("a", "A")]),
        Synced::Reply(_)
    ));
    assert_eq!(group.state(), State::Stable);

    assert_eq!(
        join_dynamic(&mut group, 0, "b"),
        Joined::Wait {
            member_id: "b".into()
        }
    );
    assert_eq!(group.state(), State::PreparingRebalance);
    assert_eq!(
        group.heartbeat(0, "a", 1, None),
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(
        rejoin(&mut group, 0, "a"),
        Joined::Wait {
            member_id: "a".into()
        }
    );
    let (a, b) = (reply(&mut group, "a"), reply(&mut group, "b"));
    assert_eq!(
        (a.generation, a.leader.as_str(), a.members.len()),
        (2, "a", 2)
    );
    assert_eq!(
        (b.generation, b.leader.as_str(), b.members.len()),
        (2, "a", 0)
    );
    assert_eq!(sync(&mut group, 0, "b", 2, &[]), Synced::Wait);
    assert!(matches!(
        sync(&mut group, 0, "a", 2, &[("a", "A"), ("b", "B")]),
        Synced::Reply(SyncReply {
            error: ErrorCode::None,
            ..
        })
    ));
    assert_eq!(assignment(&group, "b", 2), Bytes::from_static(b"B"));
    assert_eq!(group.state(), State::Stable);
    group
}

#[test]
fn first_member_forms_the_group_and_leads() {
    let mut group = Group::new();
    assert_eq!(
        join_dynamic(&mut group, 0, "a"),
        Joined::Wait {
            member_id: "a".into()
        }
    );
    assert_eq!(group.state(), State::CompletingRebalance);
    let answer = reply(&mut group, "a");
    assert_eq!(answer.error, ErrorCode::None);
    assert_eq!(answer.leader, "a");
    assert_eq!(answer.protocol_name.as_deref(), Some("range"));
    assert_eq!(answer.members.len(), 1);
    assert!(
        matches!(sync(&mut group, 0, "a", 1, &[("a", "A")]), Synced::Reply(r) if r.assignment == "A")
    );
}

#[test]
fn rejoin_waits_until_every_member_has_rejoined() {
    let group = stable_pair();
    assert_eq!(group.view().members.len(), 2);
    assert_eq!(group.generation(), 2);
}

#[test]
fn a_member_that_stops_heartbeating_is_expired_and_the_survivor_takes_all() {
    let mut group = stable_pair();
    let session = millis(SESSION);
    // `a` heartbeats, `b` was killed.
    for now in (1_000..=session).step_by(1_000) {
        assert_eq!(group.heartbeat(now, "a", 2, None), ErrorCode::None);
        assert!(!group.tick(now));
    }
    assert!(group.tick(session + 1), "b's session timed out");
    assert_eq!(group.state(), State::PreparingRebalance);
    assert_eq!(
        group.heartbeat(session + 2, "a", 2, None),
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(
        rejoin(&mut group, session + 3, "a"),
        Joined::Wait {
            member_id: "a".into()
        }
    );
    let answer = reply(&mut group, "a");
    assert_eq!(
        (
            answer.generation,
            answer.leader.as_str(),
            answer.members.len()
        ),
        (3, "a", 1)
    );
    // b's stale requests are refused.
    assert_eq!(
        group.heartbeat(session + 4, "b", 2, None),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn a_dead_leader_is_replaced_by_a_member_that_rejoined() {
    let mut group = stable_pair();
    let session = millis(SESSION);
    assert_eq!(group.heartbeat(session, "b", 2, None), ErrorCode::None);
    assert!(group.tick(session + 1), "the leader a expired");
    assert_eq!(
        rejoin(&mut group, session + 2, "b"),
        Joined::Wait {
            member_id: "b".into()
        }
    );
    let answer = reply(&mut group, "b");
    assert_eq!(
        (
            answer.generation,
            answer.leader.as_str(),
            answer.members.len()
        ),
        (3, "b", 1)
    );
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped_when_the_rebalance_times_out() {
    let mut group = stable_pair();
    assert_eq!(
        join_dynamic(&mut group, 0, "c"),
        Joined::Wait {
            member_id: "c".into()
        }
    );
    assert_eq!(
        rejoin(&mut group, 0, "a"),
        Joined::Wait {
            member_id: "a".into()
        }
    );
    // b keeps heartbeating (as a client stuck in processing would) but never rejoins.
    for now in (5_000..millis(REBALANCE)).step_by(5_000) {
        assert_eq!(
            group.heartbeat(now, "b", 2, None),
            ErrorCode::RebalanceInProgress
        );
        assert!(!group.tick(now));
        assert_eq!(group.join_outcome("a"), None, "still waiting for b");
    }
    assert!(group.tick(millis(REBALANCE)));
    let answer = reply(&mut group, "a");
    assert_eq!((answer.generation, answer.members.len()), (3, 2));
    assert_eq!(reply(&mut group, "c").generation, 3);
    assert_eq!(
        group.heartbeat(millis(REBALANCE), "b", 3, None),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn a_third_member_gets_a_share() {
    let mut group = stable_pair();
    assert_eq!(
        join_dynamic(&mut group, 5, "c"),
        Joined::Wait {
            member_id: "c".into()
        }
    );
    for id in ["a", "b"] {
        assert_eq!(
            group.heartbeat(6, id, 2, None),
            ErrorCode::RebalanceInProgress
        );
        assert_eq!(
            rejoin(&mut group, 7, id),
            Joined::Wait {
                member_id: id.into()
            }
        );
    }
    let leader = reply(&mut group, "a");
    assert_eq!(leader.members.len(), 3);
    assert_eq!(reply(&mut group, "c").leader, "a");
    assert_eq!(sync(&mut group, 8, "c", 3, &[]), Synced::Wait);
    assert!(matches!(
        sync(&mut group, 8, "a", 3, &[("a", "A"), ("b", "B"), ("c", "C")]),
        Synced::Reply(_)
    ));
    assert_eq!(assignment(&group, "c", 3), Bytes::from_static(b"C"));
}

#[test]
fn errors_fence_stale_and_unknown_members() {
    struct Case {
        what: &'static str,
        member: &'static str,
        generation: i32,
        heartbeat: ErrorCode,
        commit: ErrorCode,
    }
    let cases = [
        Case {
            what: "current",
            member: "a",
            generation: 2,
            heartbeat: ErrorCode::None,
            commit: ErrorCode::None,
        },
        Case {
            what: "old generation",
            member: "a",
            generation: 1,
            heartbeat: ErrorCode::IllegalGeneration,
            commit: ErrorCode::IllegalGeneration,
        },
        Case {
            what: "future generation",
            member: "b",
            generation: 3,
            heartbeat: ErrorCode::IllegalGeneration,
            commit: ErrorCode::IllegalGeneration,
        },
        Case {
            what: "unknown member",
            member: "zz",
            generation: 2,
            heartbeat: ErrorCode::UnknownMemberId,
            commit: ErrorCode::UnknownMemberId,
        },
    ];
    for case in cases {
        let mut group = stable_pair();
        assert_eq!(
            group.heartbeat(1, case.member, case.generation, None),
            case.heartbeat,
            "heartbeat: {}",
            case.what
        );
        assert_eq!(
            group.commit_check(1, case.member, case.generation, None),
            case.commit,
            "commit: {}",
            case.what
        );
    }
}

#[test]
fn commits_by_state() {
    // Stable and PreparingRebalance accept the current generation's commits,
    // CompletingRebalance does not; outside group management only an empty group.
    let mut group = stable_pair();
    assert_eq!(
        group.commit_check(1, "", -1, None),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        join_dynamic(&mut group, 1, "c"),
        Joined::Wait {
            member_id: "c".into()
        }
    );
    assert_eq!(group.commit_check(1, "a", 2, None), ErrorCode::None);
    for id in ["a", "b"] {
        assert_eq!(
            rejoin(&mut group, 2, id),
            Joined::Wait {
                member_id: id.into()
            }
        );
    }
    assert_eq!(group.state(), State::CompletingRebalance);
    assert_eq!(
        group.commit_check(3, "a", 3, None),
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(
        group.commit_check(3, "a", 2, None),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(Group::new().commit_check(0, "", -1, None), ErrorCode::None);
}

#[test]
fn leaving_rebalances_and_the_last_leave_empties_the_group() {
    let mut group = stable_pair();
    assert_eq!(group.leave(1, "b", None), ErrorCode::None);
    assert_eq!(group.state(), State::PreparingRebalance);
    assert_eq!(group.leave(1, "b", None), ErrorCode::UnknownMemberId);
    assert_eq!(
        rejoin(&mut group, 2, "a"),
        Joined::Wait {
            member_id: "a".into()
        }
    );
    assert_eq!(reply(&mut group, "a").members.len(), 1);
    assert_eq!(group.leave(3, "a", None), ErrorCode::None);
    assert_eq!(group.state(), State::Empty);
    assert!(group.view().members.is_empty());
}

#[test]
fn a_leaving_member_no_longer_holds_up_a_rebalance() {
    let mut group = stable_pair();
    assert_eq!(
        join_dynamic(&mut group, 1, "c"),
        Joined::Wait {
            member_id: "c".into()
        }
    );
    assert_eq!(
        rejoin(&mut group, 1, "a"),
        Joined::Wait {
            member_id: "a".into()
        }
    );
    assert_eq!(group.join_outcome("a"), None);
    assert_eq!(group.leave(2, "b", None), ErrorCode::None);
    assert_eq!(reply(&mut group, "a").members.len(), 2);
}

/// Static members `s1` (leader, instance i1) and `s2` (instance i2), stable in generation 2.
fn stable_static_pair() -> Group {
    let mut group = Group::new();
    assert_eq!(
        join_static(&mut group, 0, "i1", "s1"),
        Joined::Wait {
            member_id: "s1".into()
        }
    );
    _ = reply(&mut group, "s1");
    assert!(matches!(
        sync(&mut group, 0, "s1", 1, &[("s1", "A")]),
        Synced::Reply(_)
    ));
    assert_eq!(
        join_static(&mut group, 0, "i2", "s2"),
        Joined::Wait {
            member_id: "s2".into()
        }
    );
    assert_eq!(
        rejoin(&mut group, 0, "s1"),
        Joined::Wait {
            member_id: "s1".into()
        }
    );
    _ = reply(&mut group, "s1");
    _ = reply(&mut group, "s2");
    assert!(matches!(
        sync(&mut group, 0, "s1", 2, &[("s1", "A"), ("s2", "B")]),
        Synced::Reply(_)
    ));
    group
}

#[test]
fn a_restarted_static_member_keeps_its_place_without_a_rebalance() {
    for (restarted, fresh, old_leader) in [("i2", "s2-new", "s1"), ("i1", "s1-new", "s1")] {
        let mut group = stable_static_pair();
        let answer = join_static(&mut group, 1, restarted, fresh);
        let Joined::Reply(answer) = answer else {
            panic!("{restarted}: waited for a rebalance")
        };
        assert_eq!(answer.error, ErrorCode::None);
        assert_eq!(answer.generation, 2, "{restarted}: same generation");
        assert_eq!(answer.member_id, fresh);
        // The old leader id, so the restarted member does not compute an assignment.
        assert_eq!(answer.leader, old_leader);
        assert!(answer.members.is_empty());
        assert_eq!(group.state(), State::Stable, "{restarted}: no rebalance");
        let expected = if restarted == "i1" { "A" } else { "B" };
        assert!(
            matches!(sync(&mut group, 2, fresh, 2, &[]), Synced::Reply(r) if r.assignment == expected)
        );
        // The old process, if it were still around, is fenced.
        let old = if restarted == "i1" { "s1" } else { "s2" };
        assert_eq!(
            group.heartbeat(2, old, 2, Some(restarted)),
            ErrorCode::FencedInstanceId
        );
        assert_eq!(
            group.heartbeat(2, fresh, 2, Some(restarted)),
            ErrorCode::None
        );
    }
}

#[test]
fn a_static_member_that_never_comes_back_is_expired() {
    let mut group = stable_static_pair();
    let session = millis(SESSION);
    assert_eq!(
        group.heartbeat(session, "s1", 2, Some("i1")),
        ErrorCode::None
    );
    assert!(group.tick(session + 1), "s2's session timed out");
    assert_eq!(group.state(), State::PreparingRebalance);
    assert_eq!(
        rejoin(&mut group, session + 2, "s1"),
        Joined::Wait {
            member_id: "s1".into()
        }
    );
    let answer = reply(&mut group, "s1");
    assert_eq!((answer.generation, answer.members.len()), (3, 1));
    // The instance id is free again: a later start of i2 joins as a new member.
    assert_eq!(
        join_static(&mut group, session + 3, "i2", "s2-late"),
        Joined::Wait {
            member_id: "s2-late".into()
        }
    );
}

#[test]
fn a_static_member_that_misses_a_rebalance_keeps_its_place_until_its_session_ends() {
    let mut group = stable_static_pair();
    assert_eq!(
        join_dynamic(&mut group, 1, "d"),
        Joined::Wait {
            member_id: "d".into()
        }
    );
    assert_eq!(
        rejoin(&mut group, 1, "s1"),
        Joined::Wait {
            member_id: "s1".into()
        }
    );
    // s2 is alive (heartbeats) but busy: it does not rejoin.
    for now in (5_000..millis(REBALANCE)).step_by(5_000) {
        assert_eq!(
            group.heartbeat(now, "s2", 2, Some("i2")),
            ErrorCode::RebalanceInProgress
        );
        assert!(!group.tick(now));
    }
    assert!(group.tick(millis(REBALANCE) + 1), "the rebalance timed out");
    let answer = reply(&mut group, "s1");
    assert_eq!(answer.members.len(), 3, "s2 is still assigned partitions");
}

#[test]
fn static_leave_by_instance_id() {
    let mut group = stable_static_pair();
    assert_eq!(
        group.leave(1, "s1", Some("i2")),
        ErrorCode::FencedInstanceId
    );
    assert_eq!(
        group.leave(1, "", Some("unknown")),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(group.leave(1, "", Some("i2")), ErrorCode::None);
    assert_eq!(group.state(), State::PreparingRebalance);
}

#[test]
fn joins_that_cannot_be_served() {
    let mut group = stable_pair();
    let mut short = request("", None, "x");
    short.session_timeout_ms = 10;
    let mut other_type = request("", None, "x");
    other_type.protocol_type = "connect".into();
    let mut other_protocol = request("", None, "x");
    other_protocol.protocols = vec![("sticky".into(), Bytes::new())];
    for (what, request, error) in [
        (
            "session timeout too short",
            short,
            ErrorCode::InvalidSessionTimeout,
        ),
        (
            "another protocol type",
            other_type,
            ErrorCode::InconsistentGroupProtocol,
        ),
        (
            "no common protocol",
            other_protocol,
            ErrorCode::InconsistentGroupProtocol,
        ),
        (
            "unknown member id",
            request("ghost", None, "x"),
            ErrorCode::UnknownMemberId,
        ),
    ] {
        let Joined::Reply(answer) = group.join(1, request) else {
            panic!("{what}: waited")
        };
        assert_eq!(answer.error, error, "{what}");
    }
    assert_eq!(group.state(), State::Stable);
}

#[test]
fn a_handed_out_member_id_that_never_comes_back_expires() {
    let mut group = stable_pair();
    let first = group.join(0, request("", None, "p"));
    assert!(matches!(first, Joined::Reply(r) if r.error == ErrorCode::MemberIdRequired));
    assert_eq!(
        group.state(),
        State::Stable,
        "no rebalance for an id handed out"
    );
    for now in [5_000, millis(SESSION)] {
        for id in ["a", "b"] {
            assert_eq!(group.heartbeat(now, id, 2, None), ErrorCode::None);
        }
    }
    assert!(group.tick(millis(SESSION) + 1));
    assert_eq!(
        group.join(millis(SESSION) + 2, request("p", None, "x")),
        Joined::Reply(JoinReply::error(ErrorCode::UnknownMemberId, "p"))
    );
}

#[test]
fn the_protocol_most_members_prefer_wins() {
    let mut group = Group::new();
    let with = |id: &str, protocols: &[&str]| {
        let mut request = request("", None, id);
        request.require_known_member_id = false;
        request.protocols = protocols
            .iter()
            .map(|p| ((*p).to_owned(), Bytes::from(p.to_string())))
            .collect();
        request
    };
    assert!(matches!(
        group.join(0, with("a", &["range", "roundrobin"])),
        Joined::Wait { .. }
    ));
    _ = reply(&mut group, "a");
    assert!(matches!(sync(&mut group, 0, "a", 1, &[]), Synced::Reply(_)));
    assert!(matches!(
        group.join(0, with("b", &["roundrobin", "range"])),
        Joined::Wait { .. }
    ));
    assert!(matches!(
        group.join(0, with("c", &["roundrobin"])),
        Joined::Wait { .. }
    ));
    let mut again = with("a", &["range", "roundrobin"]);
    again.member_id = "a".into();
    assert!(matches!(group.join(0, again), Joined::Wait { .. }));
    let answer = reply(&mut group, "a");
    assert_eq!(answer.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(
        answer
            .members
            .iter()
            .find(|m| m.member_id == "b")
            .map(|m| m.metadata.clone()),
        Some(Bytes::from_static(b"roundrobin"))
    );
}
