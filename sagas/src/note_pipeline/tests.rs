//! Table tests of the note-pipeline saga: every state against every input, and the
//! scenarios of "The flow" step by step.

use super::*;

const NOTE: Uuid = Uuid::from_u128(42);
const T0: i64 = 1_000_000;

fn policy() -> Policy {
    Policy {
        embedding_deadline_ms: 100,
        narration_deadline_ms: 100,
        narration_deadline_per_kb_ms: 10,
        other_deadline_ms: 100,
        max_resends: 2,
        max_attempts: 3,
        max_compensation_attempts: 3,
        backoff_base_ms: 10,
        backoff_max_ms: 40,
        stuck_after_ms: 10_000,
    }
}

/// A saga and every event it recorded, so rebuilds can be compared.
#[derive(Debug, Clone)]
struct Run {
    saga: Option<NotePipeline>,
    events: Vec<SagaEvent>,
    sent: Vec<(Uuid, Command)>,
}

impl Run {
    fn new() -> Self {
        Self {
            saga: None,
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn feed(&mut self, input: &Input, now: i64) -> Vec<Action> {
        let actions = react(self.saga.as_ref(), input, &policy(), now);
        for action in &actions {
            match action {
                Action::Record(event) => {
                    self.saga = apply(self.saga.take(), event);
                    self.events.push(event.clone());
                }
                Action::Send {
                    command_id,
                    command,
                } => self.sent.push((*command_id, command.clone())),
            }
        }
        actions
    }

    fn saga(&self) -> &NotePipeline {
        self.saga.as_ref().expect("started")
    }

    fn awaited(&self) -> Uuid {
        self.saga().awaited_command().expect("a command is out")
    }

    fn ok(&mut self, now: i64) -> Vec<Action> {
        let input = Input::Reply {
            command_id: self.awaited(),
            reply: Reply::Succeeded,
        };
        self.feed(&input, now)
    }

    fn fail(&mut self, retryable: bool, now: i64) -> Vec<Action> {
        let input = Input::Reply {
            command_id: self.awaited(),
            reply: Reply::Failed {
                retryable,
                reason: "boom".into(),
            },
        };
        self.feed(&input, now)
    }

    /// The state a fresh orchestrator rebuilds from the recorded events.
    fn rebuilt(&self) -> Option<NotePipeline> {
        self.events.iter().fold(None, apply)
    }
}

fn created(version: i64, retire: Option<i64>) -> Input {
    Input::VersionCreated {
        note_id: NOTE,
        version,
        text: "Title.\n\nBody".into(),
        retire_version: retire,
    }
}

fn describe(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|action| match action {
            Action::Record(event) => {
                let step = match event {
                    SagaEvent::StepRequested(e) => format!(" {}#{}", e.step, e.attempt),
                    SagaEvent::CompensationRequested(e) => format!(" {}#{}", e.step, e.attempt),
                    SagaEvent::StepRetried(e) => format!(" {}#{}", e.step, e.attempt),
                    SagaEvent::DeadlinePassed(e) => format!(" {}#{}", e.step, e.attempt),
                    SagaEvent::StepFailed(e) => format!(" {}#{}", e.step, e.attempt),
                    _ => String::new(),
                };
                format!("{}{step}", notesaga_events::Message::event_type(event))
            }
            Action::Send { command, .. } => match command {
                Command::GenerateEmbedding(_) => "send GenerateEmbedding".into(),
                Command::NarrateNote(_) => "send NarrateNote".into(),
                Command::PublishNoteVersion(_) => "send PublishNoteVersion".into(),
                Command::MarkNoteVersionFailed(_) => "send MarkNoteVersionFailed".into(),
                Command::DeleteEmbedding(c) => format!("send DeleteEmbedding({:?})", c.version),
                Command::DeleteNarration(c) => format!("send DeleteNarration({:?})", c.version),
            },
        })
        .collect()
}

/// A catalogue of saga states, each reached through the saga's own reactions.
fn states() -> Vec<(&'static str, Run)> {
    let mut out = Vec::new();
    let mut run = Run::new();
    run.feed(&created(2, Some(1)), T0);
    out.push(("embedding in flight", run.clone()));
    let mut backoff = run.clone();
    backoff.fail(true, T0);
    out.push(("embedding waiting to retry", backoff));
    let mut resent = run.clone();
    resent.feed(&Input::Tick, T0 + 150);
    out.push(("embedding re-sent after deadline", resent));
    run.ok(T0);
    out.push(("narration in flight", run.clone()));
    let mut compensating = run.clone();
    compensating.fail(false, T0);
    out.push(("compensating narration", compensating.clone()));
    let mut compensated = compensating.clone();
    compensated.ok(T0);
    compensated.ok(T0);
    out.push(("compensated", compensated));
    let mut parked = compensating.clone();
    for _ in 0..3 {
        parked.fail(false, T0);
        parked.feed(&Input::Tick, T0 + 1_000);
    }
    out.push(("compensation failed", parked));
    let mut superseded = run.clone();
    superseded.feed(
        &Input::Cancel {
            by_version: Some(3),
        },
        T0,
    );
    out.push(("superseding", superseded.clone()));
    superseded.ok(T0);
    superseded.ok(T0);
    out.push(("superseded", superseded));
    run.ok(T0);
    out.push(("publish in flight", run.clone()));
    run.ok(T0);
    out.push(("retiring", run.clone()));
    run.ok(T0);
    run.ok(T0);
    out.push(("completed", run));
    let mut cleanup = Run::new();
    cleanup.feed(
        &Input::NoteDeleted {
            note_id: NOTE,
            version: 2,
        },
        T0,
    );
    out.push(("cleanup in flight", cleanup));
    out
}

fn inputs(awaited: Option<Uuid>) -> Vec<(&'static str, Input)> {
    let reply = |reply: Reply| Input::Reply {
        command_id: awaited.unwrap_or_else(Uuid::new_v4),
        reply,
    };
    vec![
        ("version created", created(2, Some(1))),
        (
            "note deleted",
            Input::NoteDeleted {
                note_id: NOTE,
                version: 2,
            },
        ),
        ("awaited reply ok", reply(Reply::Succeeded)),
        (
            "awaited reply failed",
            reply(Reply::Failed {
                retryable: true,
                reason: "x".into(),
            }),
        ),
        (
            "foreign reply",
            Input::Reply {
                command_id: Uuid::new_v4(),
                reply: Reply::Succeeded,
            },
        ),
        (
            "cancel",
            Input::Cancel {
                by_version: Some(3),
            },
        ),
        ("tick", Input::Tick),
        ("operator retry", Input::OperatorRetry),
    ]
}

#[test]
fn every_state_against_every_input() {
    for (state_name, run) in states() {
        let saga = run.saga();
        assert_eq!(
            run.rebuilt().as_ref(),
            Some(saga),
            "{state_name}: rebuild differs"
        );
        for (input_name, input) in inputs(saga.awaited_command()) {
            let actions = react(Some(saga), &input, &policy(), T0 + 1_000_000);
            let what = format!("{state_name} × {input_name}: {:?}", describe(&actions));
            let terminal = matches!(
                saga.status,
                Status::Completed | Status::Compensated | Status::Superseded
            );
            if terminal {
                // Late replies, cancels, ticks and retries never touch a finished saga
                // (ticks are not fed to inactive sagas; if they were, nothing happens).
                assert!(actions.is_empty(), "{what}");
            }
            match input_name {
                // A saga starts once; repeats change nothing.
                "version created" | "note deleted" | "foreign reply" => {
                    assert!(actions.is_empty(), "{what}")
                }
                "operator retry" if saga.status != Status::CompensationFailed => {
                    assert!(actions.is_empty(), "{what}")
                }
                "cancel" if saga.published() || saga.kind == Kind::Cleanup => {
                    assert!(actions.is_empty(), "{what}")
                }
                _ => {}
            }
            // Whatever it decides folds into a valid state, identical to a rebuild.
            let mut after = run.clone();
            let _ = after.feed(&input, T0 + 1_000_000);
            assert_eq!(after.rebuilt(), after.saga, "{what}: rebuild differs");
        }
    }
}

#[test]
fn react_table() {
    let by_name: HashMap<_, _> = states().into_iter().collect();
    let at = |name: &str| by_name[name].clone();
    let cases: Vec<(&str, Run, Input, Vec<&str>)> = vec![
        (
            "start publish",
            Run::new(),
            created(2, Some(1)),
            vec![
                "SagaStarted",
                "StepRequested embedding#1",
                "send GenerateEmbedding",
            ],
        ),
        (
            "start cleanup",
            Run::new(),
            Input::NoteDeleted {
                note_id: NOTE,
                version: 2,
            },
            vec![
                "SagaStarted",
                "StepRequested cleanup_embeddings#1",
                "send DeleteEmbedding(None)",
            ],
        ),
        (
            "a reply before the saga exists",
            Run::new(),
            Input::Reply {
                command_id: Uuid::new_v4(),
                reply: Reply::Succeeded,
            },
            vec![],
        ),
        (
            "retryable failure",
            at("embedding in flight"),
            fail(true),
            vec!["StepFailed embedding#1", "StepRetried embedding#2"],
        ),
        (
            "non-retryable failure compensates what may have happened",
            at("narration in flight"),
            fail(false),
            vec![
                "StepFailed narration#1",
                "CompensationRequested delete_narration#1",
                "send DeleteNarration(Some(2))",
            ],
        ),
        (
            "backoff not over",
            at("embedding waiting to retry"),
            Input::Tick,
            vec![],
        ),
        (
            "cancel before the pivot compensates",
            at("narration in flight"),
            Input::Cancel {
                by_version: Some(3),
            },
            vec![
                "CompensationRequested delete_narration#1",
                "send DeleteNarration(Some(2))",
            ],
        ),
        (
            "cancel after the pivot is ignored",
            at("retiring"),
            Input::Cancel {
                by_version: Some(3),
            },
            vec![],
        ),
        (
            "operator retry of a parked compensation",
            at("compensation failed"),
            Input::OperatorRetry,
            vec![
                "CompensationRequested delete_narration#4",
                "send DeleteNarration(Some(2))",
            ],
        ),
    ];
    for (name, run, input, expected) in cases {
        let input = with_awaited(&run, input);
        let actions = react(run.saga.as_ref(), &input, &policy(), T0 + 1);
        assert_eq!(describe(&actions), expected, "{name}");
    }

    fn fail(retryable: bool) -> Input {
        // Placeholder replaced below: the awaited id is only known per state.
        Input::Reply {
            command_id: Uuid::nil(),
            reply: Reply::Failed {
                retryable,
                reason: if retryable { "retry" } else { "final" }.into(),
            },
        }
    }
}

use std::collections::HashMap;

/// `react_table` builds failure replies with a nil id; answer with the awaited one.
fn with_awaited(run: &Run, input: Input) -> Input {
    match input {
        Input::Reply { command_id, reply } if command_id.is_nil() => Input::Reply {
            command_id: run.awaited(),
            reply,
        },
        other => other,
    }
}

#[test]
fn happy_path_publishes_then_retires_the_previous_version() {
    let mut run = Run::new();
    let mut log = describe(&run.feed(&created(2, Some(1)), T0));
    for _ in 0..5 {
        log.extend(describe(&run.ok(T0)));
    }
    assert_eq!(
        log,
        vec![
            "SagaStarted",
            "StepRequested embedding#1",
            "send GenerateEmbedding",
            "StepSucceeded",
            "StepRequested narration#1",
            "send NarrateNote",
            "StepSucceeded",
            "StepRequested publish#1",
            "send PublishNoteVersion",
            "StepSucceeded",
            "StepRequested retire_embedding#1",
            "send DeleteEmbedding(Some(1))",
            "StepSucceeded",
            "StepRequested retire_narration#1",
            "send DeleteNarration(Some(1))",
            "StepSucceeded",
            "SagaCompleted",
        ]
    );
    assert_eq!(run.saga().status, Status::Completed);
    assert_eq!(run.rebuilt(), run.saga);
    // Without a published version there is nothing to retire.
    let mut first = Run::new();
    first.feed(&created(1, None), T0);
    for _ in 0..3 {
        first.ok(T0);
    }
    assert_eq!(first.saga().status, Status::Completed);
}

#[test]
fn narration_fails_for_good_compensates_in_reverse_and_marks_failed() {
    let mut run = Run::new();
    run.feed(&created(1, None), T0);
    run.ok(T0);
    let input = with_awaited(
        &run,
        Input::Reply {
            command_id: Uuid::nil(),
            reply: Reply::Failed {
                retryable: false,
                reason: "voice not found".into(),
            },
        },
    );
    run.feed(&input, T0);
    assert_eq!(run.saga().status, Status::Compensating);
    assert_eq!(
        run.saga().compensations,
        vec![Step::DeleteNarration, Step::DeleteEmbedding]
    );
    let second = describe(&run.ok(T0));
    assert_eq!(
        second,
        vec![
            "StepCompensated",
            "CompensationRequested delete_embedding#1",
            "send DeleteEmbedding(Some(1))"
        ]
    );
    let last = describe(&run.ok(T0));
    assert_eq!(
        last,
        vec![
            "StepCompensated",
            "SagaCompensated",
            "send MarkNoteVersionFailed"
        ]
    );
    assert_eq!(run.saga().status, Status::Compensated);
    let Some((_, Command::MarkNoteVersionFailed(mark))) = run.sent.last() else {
        panic!("last command is MarkNoteVersionFailed");
    };
    assert_eq!(mark.reason, "narration failed: voice not found");
    assert_eq!(run.rebuilt(), run.saga);
}

#[test]
fn a_hanging_step_is_resent_with_the_same_id_then_retried_then_compensated() {
    let mut run = Run::new();
    run.feed(&created(1, None), T0);
    let first_id = run.awaited();
    let mut now = T0;
    let mut ids = Vec::new();
    let mut log = Vec::new();
    while run.saga().status == Status::Running {
        now += 150;
        log.extend(describe(&run.feed(&Input::Tick, now)));
        if let Some(id) = run.saga().awaited_command() {
            ids.push(id);
        }
        assert!(now < T0 + 100_000, "the saga never gave up: {log:?}");
    }
    // Two re-sends of attempt 1 with the same id, then attempts 2 and 3 with new ids.
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("DeadlinePassed embedding#1"))
            .count(),
        2
    );
    assert!(log.contains(&"StepRequested embedding#2".to_owned()));
    assert!(log.contains(&"StepRequested embedding#3".to_owned()));
    assert!(!log.iter().any(|l| l.contains("embedding#4")));
    let resent: Vec<_> = run.sent.iter().filter(|(id, _)| *id == first_id).collect();
    assert_eq!(
        resent.len(),
        3,
        "sent once and re-sent twice with the same id"
    );
    assert_eq!(run.saga().status, Status::Compensating);
    assert_eq!(run.saga().compensations, vec![Step::DeleteEmbedding]);
    run.ok(now);
    assert_eq!(run.saga().status, Status::Compensated);
    assert_eq!(run.rebuilt(), run.saga);
}

#[test]
fn a_compensation_that_keeps_failing_parks_and_an_operator_retry_finishes_it() {
    let mut run = Run::new();
    run.feed(&created(1, None), T0);
    run.fail(false, T0);
    assert_eq!(run.saga().status, Status::Compensating);
    let mut now = T0;
    // Fails twice, then succeeds on the third attempt (budget 3): compensated.
    let mut fails_then_succeeds = run.clone();
    for _ in 0..2 {
        fails_then_succeeds.fail(true, now);
        now += 1_000;
        fails_then_succeeds.feed(&Input::Tick, now);
    }
    fails_then_succeeds.ok(now);
    assert_eq!(fails_then_succeeds.saga().status, Status::Compensated);
    // Fails for ever: parked after the budget.
    for _ in 0..3 {
        run.fail(false, now);
        now += 1_000;
        run.feed(&Input::Tick, now);
    }
    assert_eq!(run.saga().status, Status::CompensationFailed);
    assert!(react(run.saga.as_ref(), &Input::Tick, &policy(), now + 99_999).is_empty());
    // The operator's request (written by the API) gives a fresh budget.
    let request = SagaEvent::SagaRetryRequested(notesaga_events::saga::SagaRetryRequested {
        saga_id: run.saga().saga_id,
        note_id: NOTE,
        version: 1,
        requested_by: "ops".into(),
        occurred_at: now,
    });
    run.saga = apply(run.saga.take(), &request);
    run.events.push(request);
    run.feed(&Input::OperatorRetry, now);
    assert_eq!(run.saga().status, Status::Compensating);
    run.fail(true, now);
    now += 1_000;
    run.feed(&Input::Tick, now);
    assert_eq!(run.saga().status, Status::Compensating, "fresh budget");
    run.ok(now);
    assert_eq!(run.saga().status, Status::Compensated);
    assert_eq!(run.rebuilt(), run.saga);
}

#[test]
fn supersession_compensates_and_ends_superseded() {
    let mut run = Run::new();
    run.feed(&created(1, None), T0);
    run.ok(T0);
    let late = run.awaited();
    run.feed(
        &Input::Cancel {
            by_version: Some(2),
        },
        T0,
    );
    assert_eq!(run.saga().status, Status::Compensating);
    // The narration's reply arrives after the cancel: ignored.
    let ignored = react(
        run.saga.as_ref(),
        &Input::Reply {
            command_id: late,
            reply: Reply::Succeeded,
        },
        &policy(),
        T0,
    );
    assert!(ignored.is_empty());
    run.ok(T0);
    let end = describe(&run.ok(T0));
    assert_eq!(end, vec!["StepCompensated", "SagaSuperseded"]);
    assert_eq!(run.saga().status, Status::Superseded);
    assert!(!run
        .sent
        .iter()
        .any(|(_, c)| matches!(c, Command::MarkNoteVersionFailed(_))));
    assert_eq!(run.rebuilt(), run.saga);
}

#[test]
fn stuck_is_reported_once_per_stall() {
    let stalled = Policy {
        embedding_deadline_ms: 1_000_000,
        ..policy()
    };
    let mut run = Run::new();
    for action in react(None, &created(1, None), &stalled, T0) {
        if let Action::Record(event) = action {
            run.saga = apply(run.saga.take(), &event);
        }
    }
    let first = react(run.saga.as_ref(), &Input::Tick, &stalled, T0 + 20_000);
    assert_eq!(describe(&first), vec!["SagaStuck"]);
    for action in &first {
        if let Action::Record(event) = action {
            run.saga = apply(run.saga.take(), event);
        }
    }
    assert!(run.saga().stuck);
    assert!(react(run.saga.as_ref(), &Input::Tick, &stalled, T0 + 40_000).is_empty());
    run.ok(T0 + 41_000);
    assert!(!run.saga().stuck, "progress clears the flag");
}

#[test]
fn deadlines_scale_with_the_text_and_backoff_doubles_up_to_its_cap() {
    let p = policy();
    assert_eq!(p.deadline_ms(Step::Narration, 0), 100);
    assert_eq!(p.deadline_ms(Step::Narration, 1), 110);
    assert_eq!(p.deadline_ms(Step::Narration, 100_000), 100 + 100 * 10);
    assert_eq!(p.deadline_ms(Step::Embedding, 100_000), 100);
    assert_eq!(
        (1..=4).map(|a| p.backoff_ms(a)).collect::<Vec<_>>(),
        vec![10, 20, 40, 40]
    );
}

#[test]
fn the_published_version_is_the_newest_saga_past_the_pivot() {
    let by_name: HashMap<_, _> = states().into_iter().collect();
    let completed = by_name["completed"].saga().clone();
    let retiring = by_name["retiring"].saga().clone();
    let in_flight = by_name["narration in flight"].saga().clone();
    assert_eq!(published_version([&in_flight]), None);
    assert_eq!(published_version([&in_flight, &retiring]), Some(2));
    let mut older = completed.clone();
    older.version = 1;
    assert_eq!(published_version([&older, &completed]), Some(2));
}

#[test]
fn a_crash_inside_a_reaction_is_finished_by_the_next_tick() {
    // Each prefix of a reaction's events is what a crash after that append leaves.
    let mut full = Run::new();
    full.feed(&created(1, None), T0);
    let cases: Vec<(&str, Vec<SagaEvent>, &str)> = vec![
        (
            "after SagaStarted",
            full.events[..1].to_vec(),
            "StepRequested embedding#1",
        ),
        {
            let mut run = full.clone();
            run.ok(T0);
            (
                "after StepSucceeded",
                run.events[..run.events.len() - 1].to_vec(),
                "StepRequested narration#1",
            )
        },
        {
            let mut run = full.clone();
            run.fail(true, T0);
            (
                "after StepFailed",
                run.events[..run.events.len() - 1].to_vec(),
                "StepRetried embedding#2",
            )
        },
        {
            let mut run = full.clone();
            run.fail(false, T0);
            run.ok(T0);
            (
                "after StepCompensated",
                run.events[..run.events.len() - 1].to_vec(),
                "SagaCompensated",
            )
        },
    ];
    for (name, events, next) in cases {
        let saga = events.iter().fold(None, apply);
        let actions = react(saga.as_ref(), &Input::Tick, &policy(), T0 + 1);
        assert_eq!(
            describe(&actions).first().map(String::as_str),
            Some(next),
            "{name}"
        );
        // A failed attempt is not awaited any more: its redelivered reply changes nothing.
        if name == "after StepFailed" {
            assert_eq!(saga.as_ref().and_then(NotePipeline::awaited_command), None);
        }
    }
}
