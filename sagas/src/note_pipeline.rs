//! The note-pipeline saga.
//!
//! Steps, in order, are declared once in [`STEPS`]. `react` decides, `apply` folds the
//! saga's own events into its state; replies that do not match the step in flight (late,
//! duplicate, or about an attempt already answered) change nothing.

use notesaga_events::{
    embedding::GenerateEmbedding,
    ids,
    narration::NarrateNote,
    notes::{MarkNoteVersionFailed, PublishNoteVersion},
    saga::{SagaCompleted, SagaEvent, SagaStarted, StepFailed, StepRequested, StepSucceeded},
};
use uuid::Uuid;

/// One step of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `GenerateEmbedding` → `EmbeddingGenerated`.
    Embedding,
    /// `NarrateNote` → `NarrationCompleted`.
    Narration,
    /// `PublishNoteVersion` → `NotePublished`.
    Publish,
}

/// The steps in the order they run.
pub const STEPS: [Step; 3] = [Step::Embedding, Step::Narration, Step::Publish];

impl Step {
    /// The name written in saga events.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedding => "embedding",
            Self::Narration => "narration",
            Self::Publish => "publish",
        }
    }

    /// The step named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        STEPS.into_iter().find(|step| step.name() == name)
    }

    /// The step after this one.
    pub fn next(self) -> Option<Self> {
        let at = STEPS.iter().position(|s| *s == self)?;
        STEPS.get(at + 1).copied()
    }
}

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A step is in flight.
    Running,
    /// Every step succeeded.
    Completed,
    /// A step failed; the version is marked failed.
    Failed,
}

impl Status {
    /// The state name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// The state of one saga instance, folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct NotePipeline {
    /// Deterministic from (note, version).
    pub saga_id: Uuid,
    /// The note.
    pub note_id: Uuid,
    /// The version being published.
    pub version: i64,
    /// The text every step works on.
    pub text: String,
    /// Where it is.
    pub status: Status,
    /// The step in flight (or the last one).
    pub step: Step,
    /// Attempt of that step.
    pub attempt: i32,
    /// Command id of that attempt.
    pub command_id: Uuid,
    /// Why it failed.
    pub failure: Option<String>,
}

/// What the saga learns from the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A note version exists (`NoteCreated` / `NoteEdited`).
    VersionCreated {
        /// The note.
        note_id: Uuid,
        /// The version.
        version: i64,
        /// Title and body, as the steps need them.
        text: String,
    },
    /// A step's reply said it succeeded.
    Succeeded {
        /// The step.
        step: Step,
    },
    /// A step's reply said it failed.
    Failed {
        /// The step.
        step: Step,
        /// Whether another attempt might succeed.
        retryable: bool,
        /// Why.
        reason: String,
    },
}

/// A command the saga sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// To `embedding.commands`.
    GenerateEmbedding(GenerateEmbedding),
    /// To `narration.commands`.
    NarrateNote(NarrateNote),
    /// To `notes.commands`.
    PublishNoteVersion(PublishNoteVersion),
    /// To `notes.commands`.
    MarkNoteVersionFailed(MarkNoteVersionFailed),
}

/// What the orchestrator must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Append this event to `saga.note-pipeline` (and fold it into the state).
    Record(SagaEvent),
    /// Send this command with this id.
    Send {
        /// Deterministic from saga, step and attempt.
        command_id: Uuid,
        /// The command.
        command: Command,
    },
}

fn step_command(saga: &NotePipeline, step: Step) -> Command {
    let (note_id, version) = (saga.note_id, saga.version);
    match step {
        Step::Embedding => Command::GenerateEmbedding(GenerateEmbedding {
            note_id,
            version,
            text: saga.text.clone(),
        }),
        Step::Narration => Command::NarrateNote(NarrateNote {
            note_id,
            version,
            text: saga.text.clone(),
        }),
        Step::Publish => Command::PublishNoteVersion(PublishNoteVersion { note_id, version }),
    }
}

fn request(saga: &NotePipeline, step: Step, attempt: i32, now: i64) -> Vec<Action> {
    let command_id = ids::saga_command_id(saga.saga_id, step.name(), attempt);
    vec![
        Action::Record(SagaEvent::StepRequested(StepRequested {
            saga_id: saga.saga_id,
            note_id: saga.note_id,
            version: saga.version,
            step: step.name().into(),
            attempt,
            command_id,
            occurred_at: now,
        })),
        Action::Send {
            command_id,
            command: step_command(saga, step),
        },
    ]
}

/// The command a running saga is waiting on, to re-send after a restart (same id, so
/// the processor answers it once).
pub fn pending_command(saga: &NotePipeline) -> Option<Action> {
    (saga.status == Status::Running).then(|| Action::Send {
        command_id: saga.command_id,
        command: step_command(saga, saga.step),
    })
}

/// Decides what `input` means for the saga (`None` when it has not started), at `now`.
pub fn react(saga: Option<&NotePipeline>, input: &Input, now: i64) -> Vec<Action> {
    match (saga, input) {
        (
            None,
            Input::VersionCreated {
                note_id,
                version,
                text,
            },
        ) => {
            let saga_id = ids::saga_id(*note_id, *version);
            let started = SagaEvent::SagaStarted(SagaStarted {
                saga_id,
                note_id: *note_id,
                version: *version,
                text: text.clone(),
                occurred_at: now,
            });
            let saga = apply(None, &started).expect("SagaStarted starts a saga");
            let mut actions = vec![Action::Record(started)];
            actions.extend(request(&saga, STEPS[0], 1, now));
            actions
        }
        (Some(saga), Input::Succeeded { step })
            if saga.status == Status::Running && saga.step == *step =>
        {
            let mut actions = vec![Action::Record(SagaEvent::StepSucceeded(StepSucceeded {
                saga_id: saga.saga_id,
                note_id: saga.note_id,
                version: saga.version,
                step: step.name().into(),
                attempt: saga.attempt,
                occurred_at: now,
            }))];
            match step.next() {
                Some(next) => actions.extend(request(saga, next, 1, now)),
                None => actions.push(Action::Record(SagaEvent::SagaCompleted(SagaCompleted {
                    saga_id: saga.saga_id,
                    note_id: saga.note_id,
                    version: saga.version,
                    occurred_at: now,
                }))),
            }
            actions
        }
        (
            Some(saga),
            Input::Failed {
                step,
                retryable,
                reason,
            },
        ) if saga.status == Status::Running && saga.step == *step => {
            vec![
                Action::Record(SagaEvent::StepFailed(StepFailed {
                    saga_id: saga.saga_id,
                    note_id: saga.note_id,
                    version: saga.version,
                    step: step.name().into(),
                    attempt: saga.attempt,
                    retryable: *retryable,
                    reason: reason.clone(),
                    occurred_at: now,
                })),
                Action::Send {
                    command_id: ids::saga_command_id(saga.saga_id, "mark_failed", 1),
                    command: Command::MarkNoteVersionFailed(MarkNoteVersionFailed {
                        note_id: saga.note_id,
                        version: saga.version,
                        reason: format!("{} failed: {reason}", step.name()),
                    }),
                },
            ]
        }
        // Duplicates, late replies and replies for another step change nothing.
        _ => Vec::new(),
    }
}

/// Folds one of the saga's own events into its state.
pub fn apply(saga: Option<NotePipeline>, event: &SagaEvent) -> Option<NotePipeline> {
    match (saga, event) {
        (None, SagaEvent::SagaStarted(e)) => Some(NotePipeline {
            saga_id: e.saga_id,
            note_id: e.note_id,
            version: e.version,
            text: e.text.clone(),
            status: Status::Running,
            step: STEPS[0],
            attempt: 0,
            command_id: Uuid::nil(),
            failure: None,
        }),
        (Some(mut saga), SagaEvent::StepRequested(e)) => {
            if let Some(step) = Step::from_name(&e.step) {
                saga.step = step;
                saga.attempt = e.attempt;
                saga.command_id = e.command_id;
            }
            Some(saga)
        }
        (Some(mut saga), SagaEvent::StepFailed(e)) => {
            saga.status = Status::Failed;
            saga.failure = Some(format!("{} failed: {}", e.step, e.reason));
            Some(saga)
        }
        (Some(mut saga), SagaEvent::SagaCompleted(_)) => {
            saga.status = Status::Completed;
            Some(saga)
        }
        (saga, _) => saga,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: Uuid = Uuid::from_u128(42);

    fn kinds(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Record(e) => notesaga_events::Message::event_type(e).to_owned(),
                Action::Send { command, .. } => match command {
                    Command::GenerateEmbedding(_) => "send GenerateEmbedding",
                    Command::NarrateNote(_) => "send NarrateNote",
                    Command::PublishNoteVersion(_) => "send PublishNoteVersion",
                    Command::MarkNoteVersionFailed(_) => "send MarkNoteVersionFailed",
                }
                .to_owned(),
            })
            .collect()
    }

    fn run(saga: Option<NotePipeline>, actions: &[Action]) -> Option<NotePipeline> {
        actions.iter().fold(saga, |saga, action| match action {
            Action::Record(event) => apply(saga, event),
            Action::Send { .. } => saga,
        })
    }

    fn started() -> NotePipeline {
        let input = Input::VersionCreated {
            note_id: NOTE,
            version: 1,
            text: "t".into(),
        };
        run(None, &react(None, &input, 0)).unwrap()
    }

    fn at(step: Step) -> NotePipeline {
        let mut saga = started();
        for s in STEPS.iter().take_while(|s| **s != step) {
            saga = run(
                Some(saga.clone()),
                &react(Some(&saga), &Input::Succeeded { step: *s }, 0),
            )
            .unwrap();
        }
        saga
    }

    fn ok(step: Step) -> Input {
        Input::Succeeded { step }
    }

    fn failed(step: Step) -> Input {
        Input::Failed {
            step,
            retryable: false,
            reason: "boom".into(),
        }
    }

    #[test]
    fn react_table() {
        let created = Input::VersionCreated {
            note_id: NOTE,
            version: 1,
            text: "t".into(),
        };
        let completed = run(
            Some(at(Step::Publish)),
            &react(Some(&at(Step::Publish)), &ok(Step::Publish), 0),
        )
        .unwrap();
        let failed_saga = run(
            Some(started()),
            &react(Some(&started()), &failed(Step::Embedding), 0),
        )
        .unwrap();
        let cases: Vec<(&str, Option<NotePipeline>, Input, Vec<&str>)> = vec![
            (
                "start",
                None,
                created.clone(),
                vec!["SagaStarted", "StepRequested", "send GenerateEmbedding"],
            ),
            ("duplicate start", Some(started()), created, vec![]),
            ("reply before start", None, ok(Step::Embedding), vec![]),
            (
                "embedding ok",
                Some(at(Step::Embedding)),
                ok(Step::Embedding),
                vec!["StepSucceeded", "StepRequested", "send NarrateNote"],
            ),
            (
                "narration ok",
                Some(at(Step::Narration)),
                ok(Step::Narration),
                vec!["StepSucceeded", "StepRequested", "send PublishNoteVersion"],
            ),
            (
                "published",
                Some(at(Step::Publish)),
                ok(Step::Publish),
                vec!["StepSucceeded", "SagaCompleted"],
            ),
            (
                "duplicate embedding reply",
                Some(at(Step::Narration)),
                ok(Step::Embedding),
                vec![],
            ),
            (
                "out-of-order publish reply",
                Some(at(Step::Embedding)),
                ok(Step::Publish),
                vec![],
            ),
            (
                "late failure after success",
                Some(at(Step::Narration)),
                failed(Step::Embedding),
                vec![],
            ),
            (
                "embedding failed",
                Some(at(Step::Embedding)),
                failed(Step::Embedding),
                vec!["StepFailed", "send MarkNoteVersionFailed"],
            ),
            (
                "narration failed",
                Some(at(Step::Narration)),
                failed(Step::Narration),
                vec!["StepFailed", "send MarkNoteVersionFailed"],
            ),
            (
                "reply after completion",
                Some(completed.clone()),
                ok(Step::Publish),
                vec![],
            ),
            (
                "reply after failure",
                Some(failed_saga.clone()),
                ok(Step::Embedding),
                vec![],
            ),
            (
                "failure after failure",
                Some(failed_saga.clone()),
                failed(Step::Embedding),
                vec![],
            ),
        ];
        for (name, saga, input, expected) in cases {
            assert_eq!(kinds(&react(saga.as_ref(), &input, 0)), expected, "{name}");
        }
        assert_eq!(completed.status, Status::Completed);
        assert_eq!(failed_saga.status, Status::Failed);
        assert_eq!(
            failed_saga.failure.as_deref(),
            Some("embedding failed: boom")
        );
    }

    #[test]
    fn ids_are_deterministic() {
        let a = react(
            None,
            &Input::VersionCreated {
                note_id: NOTE,
                version: 3,
                text: "x".into(),
            },
            1,
        );
        let b = react(
            None,
            &Input::VersionCreated {
                note_id: NOTE,
                version: 3,
                text: "x".into(),
            },
            2,
        );
        let ids = |actions: &[Action]| {
            actions
                .iter()
                .filter_map(|a| match a {
                    Action::Send { command_id, .. } => Some(*command_id),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(started().saga_id, notesaga_events::ids::saga_id(NOTE, 1));
    }

    #[test]
    fn a_running_saga_resends_its_step_with_the_same_id() {
        let saga = at(Step::Narration);
        match pending_command(&saga) {
            Some(Action::Send {
                command_id,
                command: Command::NarrateNote(_),
            }) => assert_eq!(command_id, saga.command_id),
            other => panic!("unexpected {other:?}"),
        }
        let done = run(
            Some(at(Step::Publish)),
            &react(Some(&at(Step::Publish)), &ok(Step::Publish), 0),
        )
        .unwrap();
        assert_eq!(pending_command(&done), None);
    }
}
