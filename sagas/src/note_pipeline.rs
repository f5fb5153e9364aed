//! The note-pipeline saga: publishes one note version, or (kind `cleanup`) removes every
//! artifact of a deleted note.
//!
//! Everything that defines the saga is declared once here: the plan of forward steps
//! ([`plan`]), each step's command ([`step_command`]), compensation
//! ([`Step::compensation`]), retry budget and deadline ([`Policy`]). [`react`] decides
//! what an input means; [`apply`] folds the saga's own events into its state, so a
//! rebuild is a fold of `saga.note-pipeline`. Both are pure: the clock comes in as `now`.
//!
//! Rules (see "The flow" in ARCHITECTURE.md):
//! - A reply counts only if it answers the command the saga is waiting for (same
//!   command id); late, duplicate and out-of-order replies change nothing.
//! - A passed deadline re-sends the same command (same id), up to `max_resends` times;
//!   then the attempt counts as a retryable failure. A retryable failure starts a new
//!   attempt (new command id) after an exponential backoff, up to the step's budget.
//! - A forward step that fails for good makes the saga compensate the steps it did (and
//!   the one in flight, whose late effect a delete also removes), last first, then mark
//!   the version failed. `Publish` is the pivot: once a version is published nothing
//!   cancels its saga, which goes on to retire the previously published version.
//! - Compensations, retirements and cleanups must finish: they are retried whatever the
//!   failure, and past their budget the saga parks in `compensation_failed` until an
//!   operator retries it.

use notesaga_events::{
    embedding::{DeleteEmbedding, GenerateEmbedding},
    ids,
    narration::{DeleteNarration, NarrateNote},
    notes::{MarkNoteVersionFailed, PublishNoteVersion},
    saga::{
        CompensationRequested, DeadlinePassed, SagaCompensated, SagaCompensationFailed,
        SagaCompleted, SagaEvent, SagaStarted, SagaStuck, SagaSuperseded, StepCompensated,
        StepFailed, StepRequested, StepRetried, StepSucceeded,
    },
};
use uuid::Uuid;

/// What a saga instance is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Publish one note version (embedding → narration → publish → retire the old one).
    Publish,
    /// Remove every artifact of a deleted note.
    Cleanup,
}

impl Kind {
    /// The name written in `SagaStarted.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Cleanup => "cleanup",
        }
    }

    /// The kind named `name` (an unknown name is read as `publish`, the schema default).
    pub fn from_name(name: &str) -> Self {
        if name == "cleanup" {
            Self::Cleanup
        } else {
            Self::Publish
        }
    }
}

/// One step of a saga: forward steps and the compensations that undo them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `GenerateEmbedding(v)` → `EmbeddingGenerated`.
    Embedding,
    /// `NarrateNote(v)` → `NarrationCompleted`.
    Narration,
    /// `PublishNoteVersion(v)` → `NotePublished`. The pivot.
    Publish,
    /// `DeleteEmbedding(previously published version)`, after publishing.
    RetireEmbedding,
    /// `DeleteNarration(previously published version)`, after publishing.
    RetireNarration,
    /// Compensation of `Embedding`: `DeleteEmbedding(v)`.
    DeleteEmbedding,
    /// Compensation of `Narration`: `DeleteNarration(v)`.
    DeleteNarration,
    /// Cleanup after a deletion: `DeleteEmbedding(every version)`.
    CleanupEmbeddings,
    /// Cleanup after a deletion: `DeleteNarration(every version)`.
    CleanupNarrations,
}

/// Every step, for name lookups.
pub const ALL_STEPS: [Step; 9] = [
    Step::Embedding,
    Step::Narration,
    Step::Publish,
    Step::RetireEmbedding,
    Step::RetireNarration,
    Step::DeleteEmbedding,
    Step::DeleteNarration,
    Step::CleanupEmbeddings,
    Step::CleanupNarrations,
];

impl Step {
    /// The name written in saga events.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedding => "embedding",
            Self::Narration => "narration",
            Self::Publish => "publish",
            Self::RetireEmbedding => "retire_embedding",
            Self::RetireNarration => "retire_narration",
            Self::DeleteEmbedding => "delete_embedding",
            Self::DeleteNarration => "delete_narration",
            Self::CleanupEmbeddings => "cleanup_embeddings",
            Self::CleanupNarrations => "cleanup_narrations",
        }
    }

    /// The step named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_STEPS.into_iter().find(|step| step.name() == name)
    }

    /// The step that undoes this one, if it has an effect to undo before the pivot.
    pub fn compensation(self) -> Option<Self> {
        match self {
            Self::Embedding => Some(Self::DeleteEmbedding),
            Self::Narration => Some(Self::DeleteNarration),
            _ => None,
        }
    }

    /// Whether the step must eventually succeed: it is retried whatever the failure and
    /// parks the saga past its budget, instead of failing it.
    pub fn must_finish(self) -> bool {
        !matches!(self, Self::Embedding | Self::Narration | Self::Publish)
    }

    /// Whether the step undoes another one (it runs while the saga is compensating).
    pub fn is_compensation(self) -> bool {
        matches!(self, Self::DeleteEmbedding | Self::DeleteNarration)
    }
}

/// Retry budgets and deadlines, declared once (the orchestrator reads them from its
/// configuration; the defaults are the documented ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Reply deadline of `Embedding`, ms.
    pub embedding_deadline_ms: i64,
    /// Reply deadline of `Narration` for an empty text, ms…
    pub narration_deadline_ms: i64,
    /// …plus this much per started 1,000 bytes of text, ms (100 KB is over an hour of
    /// speech, so a fixed deadline would fail long notes or wait forever on short ones).
    pub narration_deadline_per_kb_ms: i64,
    /// Reply deadline of every other step (publish, deletes), ms.
    pub other_deadline_ms: i64,
    /// Re-sends of the same command after passed deadlines before the attempt counts
    /// as a (retryable) failure.
    pub max_resends: i32,
    /// Attempts of a forward step before the saga fails.
    pub max_attempts: i32,
    /// Attempts of a compensation, retirement or cleanup before the saga parks.
    pub max_compensation_attempts: i32,
    /// First backoff between attempts, ms; doubled for each further attempt…
    pub backoff_base_ms: i64,
    /// …up to this, ms.
    pub backoff_max_ms: i64,
    /// A running or compensating saga without progress for this long is stuck, ms.
    pub stuck_after_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            embedding_deadline_ms: 60_000,
            narration_deadline_ms: 60_000,
            narration_deadline_per_kb_ms: 10_000,
            other_deadline_ms: 30_000,
            max_resends: 2,
            max_attempts: 3,
            max_compensation_attempts: 8,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            stuck_after_ms: 30 * 60_000,
        }
    }
}

impl Policy {
    /// How long `step` may take to answer for a text of `text_len` bytes.
    pub fn deadline_ms(&self, step: Step, text_len: usize) -> i64 {
        match step {
            Step::Embedding => self.embedding_deadline_ms,
            Step::Narration => {
                let kilobytes = text_len.div_ceil(1000) as i64;
                self.narration_deadline_ms + kilobytes * self.narration_deadline_per_kb_ms
            }
            _ => self.other_deadline_ms,
        }
    }

    /// Attempts `step` gets before the saga fails (forward) or parks (must finish).
    pub fn budget(&self, step: Step) -> i32 {
        if step.must_finish() {
            self.max_compensation_attempts
        } else {
            self.max_attempts
        }
    }

    /// Backoff before attempt `attempt + 1`, ms.
    pub fn backoff_ms(&self, attempt: i32) -> i64 {
        let doublings = attempt.clamp(1, 31) - 1;
        self.backoff_base_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.backoff_max_ms)
    }
}

/// Where a saga is: the states operators see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A forward step is in flight (or waiting for its next attempt).
    Running,
    /// A compensation is in flight.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// A step failed and every compensation succeeded; the version is marked failed.
    Compensated,
    /// A compensation, retirement or cleanup ran out of attempts: parked.
    CompensationFailed,
    /// A newer version or the note's deletion cancelled it, and its steps are undone.
    Superseded,
}

/// Every status, for listings.
pub const ALL_STATUSES: [Status; 6] = [
    Status::Running,
    Status::Compensating,
    Status::Completed,
    Status::Compensated,
    Status::CompensationFailed,
    Status::Superseded,
];

impl Status {
    /// The state name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::CompensationFailed => "compensation_failed",
            Self::Superseded => "superseded",
        }
    }

    /// The status named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_STATUSES.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the saga still acts on its own (deadlines, retries, replies).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Compensating)
    }
}

/// The status a saga has after `event`, when the event alone decides it. The
/// projections use the same rule as [`apply`], so the timeline and the orchestrator agree.
pub fn status_after(event: &SagaEvent) -> Option<Status> {
    match event {
        SagaEvent::SagaStarted(_) | SagaEvent::StepRequested(_) => Some(Status::Running),
        SagaEvent::CompensationRequested(_) => Some(Status::Compensating),
        SagaEvent::SagaCompleted(_) => Some(Status::Completed),
        SagaEvent::SagaCompensated(_) => Some(Status::Compensated),
        SagaEvent::SagaCompensationFailed(_) => Some(Status::CompensationFailed),
        SagaEvent::SagaSuperseded(_) => Some(Status::Superseded),
        _ => None,
    }
}

/// Why a saga compensates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A forward step failed for good: end `compensated`, mark the version failed.
    Failure,
    /// A newer version (`Some`) or the note's deletion (`None`) cancelled the saga.
    Supersession(Option<i64>),
}

/// The command the saga waits on, or the attempt it will send after a backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The step.
    pub step: Step,
    /// Attempt number (1-based; operator retries continue the count).
    pub attempt: i32,
    /// The attempt's command id (nil while waiting for the backoff).
    pub command_id: Uuid,
    /// When the reply is due, ms.
    pub deadline_at: i64,
    /// How many times the command was re-sent after a passed deadline.
    pub resends: i32,
    /// Set while waiting out a backoff: when to send the attempt, ms.
    pub retry_at: Option<i64>,
    /// Set once the attempt failed (`retryable`, reason) until the saga decided what
    /// follows: a crash between the two leaves it for the next tick to decide.
    pub failed: Option<(bool, String)>,
}

/// The state of one saga instance, folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct NotePipeline {
    /// Deterministic from (note, version), or from the note for a cleanup.
    pub saga_id: Uuid,
    /// What the saga is for.
    pub kind: Kind,
    /// The note.
    pub note_id: Uuid,
    /// The version being published (for a cleanup, the latest version when deleted).
    pub version: i64,
    /// The text every step works on.
    pub text: String,
    /// The published version whose artifacts to delete once this one is published.
    pub retire_version: Option<i64>,
    /// Where it is.
    pub status: Status,
    /// Forward steps that succeeded, in order.
    pub done: Vec<Step>,
    /// What it waits on.
    pub pending: Option<Pending>,
    /// Why it compensates, once it does.
    pub cause: Option<Cause>,
    /// The compensations to run, in order (fixed when compensation starts).
    pub compensations: Vec<Step>,
    /// The compensations that succeeded.
    pub compensated: Vec<Step>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Attempt number from which the pending step's budget counts (an operator retry
    /// gives a parked step a fresh budget).
    pub budget_from: i32,
    /// Whether it was reported stuck and has not progressed since.
    pub stuck: bool,
    /// When it last progressed, ms.
    pub last_progress_at: i64,
    /// How many of its own events it has (the next event's position, for its id).
    pub seq: u32,
}

impl NotePipeline {
    /// Whether the saga has passed the pivot (its version is published).
    pub fn published(&self) -> bool {
        self.done.contains(&Step::Publish)
    }

    /// The command id the saga waits on, if a command is out.
    pub fn awaited_command(&self) -> Option<Uuid> {
        self.pending
            .as_ref()
            .filter(|p| p.retry_at.is_none() && p.failed.is_none())
            .map(|p| p.command_id)
    }
}

/// The forward steps of a saga, in order.
pub fn plan(kind: Kind, retire_version: Option<i64>) -> Vec<Step> {
    match kind {
        Kind::Publish => {
            let mut steps = vec![Step::Embedding, Step::Narration, Step::Publish];
            if retire_version.is_some() {
                steps.extend([Step::RetireEmbedding, Step::RetireNarration]);
            }
            steps
        }
        Kind::Cleanup => vec![Step::CleanupEmbeddings, Step::CleanupNarrations],
    }
}

/// How a reply ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The step (or compensation) succeeded.
    Succeeded,
    /// It failed.
    Failed {
        /// Whether another attempt might succeed.
        retryable: bool,
        /// Why.
        reason: String,
    },
}

/// What the saga learns.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A note version exists (`NoteCreated` / `NoteEdited`): starts its publish saga.
    VersionCreated {
        /// The note.
        note_id: Uuid,
        /// The version.
        version: i64,
        /// Title and body, as the steps need them.
        text: String,
        /// The version published now, which this saga retires once it publishes.
        retire_version: Option<i64>,
    },
    /// The note was deleted (`NoteDeleted`): starts its cleanup saga.
    NoteDeleted {
        /// The note.
        note_id: Uuid,
        /// Its latest version.
        version: i64,
    },
    /// A processor answered the command `command_id`.
    Reply {
        /// The command answered (the reply's `command_id` header).
        command_id: Uuid,
        /// How it ended.
        reply: Reply,
    },
    /// A newer version (`Some`) or the note's deletion (`None`) cancels the saga.
    Cancel {
        /// The newer version.
        by_version: Option<i64>,
    },
    /// The clock moved: deadlines, backoffs and stalls are checked.
    Tick,
    /// An operator asked a parked saga to try again (`SagaRetryRequested`).
    OperatorRetry,
}

/// A command the saga sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// To `embedding.commands`.
    GenerateEmbedding(GenerateEmbedding),
    /// To `embedding.commands`.
    DeleteEmbedding(DeleteEmbedding),
    /// To `narration.commands`.
    NarrateNote(NarrateNote),
    /// To `narration.commands`.
    DeleteNarration(DeleteNarration),
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

/// The command of `step` for `saga`.
pub fn step_command(saga: &NotePipeline, step: Step) -> Command {
    let (note_id, version) = (saga.note_id, saga.version);
    match step {
        Step::Embedding => Command::GenerateEmbedding(GenerateEmbedding {
            note_id,
            version,
            text: saga.text.clone(),
            // The saga publishes with whatever model the embedding role is configured
            // for; naming one is what a re-embedding does.
            model: None,
        }),
        Step::Narration => Command::NarrateNote(NarrateNote {
            note_id,
            version,
            text: saga.text.clone(),
        }),
        Step::Publish => Command::PublishNoteVersion(PublishNoteVersion { note_id, version }),
        Step::RetireEmbedding => Command::DeleteEmbedding(DeleteEmbedding {
            note_id,
            version: saga.retire_version,
        }),
        Step::RetireNarration => Command::DeleteNarration(DeleteNarration {
            note_id,
            version: saga.retire_version,
        }),
        Step::DeleteEmbedding => Command::DeleteEmbedding(DeleteEmbedding {
            note_id,
            version: Some(version),
        }),
        Step::DeleteNarration => Command::DeleteNarration(DeleteNarration {
            note_id,
            version: Some(version),
        }),
        Step::CleanupEmbeddings => Command::DeleteEmbedding(DeleteEmbedding {
            note_id,
            version: None,
        }),
        Step::CleanupNarrations => Command::DeleteNarration(DeleteNarration {
            note_id,
            version: None,
        }),
    }
}

/// Builds the saga's events and commands; every event goes through [`apply`] at once,
/// so later decisions of the same reaction see it.
struct Reaction<'p> {
    saga: NotePipeline,
    policy: &'p Policy,
    now: i64,
    actions: Vec<Action>,
}

impl<'p> Reaction<'p> {
    fn new(saga: NotePipeline, policy: &'p Policy, now: i64) -> Self {
        Self {
            saga,
            policy,
            now,
            actions: Vec::new(),
        }
    }

    fn record(&mut self, event: SagaEvent) {
        self.saga = apply(Some(self.saga.clone()), &event).expect("a started saga stays");
        self.actions.push(Action::Record(event));
    }

    fn send(&mut self, command_id: Uuid, command: Command) {
        self.actions.push(Action::Send {
            command_id,
            command,
        });
    }

    fn ids(&self) -> (Uuid, Uuid, i64) {
        (self.saga.saga_id, self.saga.note_id, self.saga.version)
    }

    /// Sends attempt `attempt` of `step`, forward or compensation.
    fn request(&mut self, step: Step, attempt: i32) {
        let (saga_id, note_id, version) = self.ids();
        let command_id = ids::saga_command_id(saga_id, step.name(), attempt);
        let deadline_at = self.now + self.policy.deadline_ms(step, self.saga.text.len());
        if step.is_compensation() {
            let (cause, superseded_by) = match &self.saga.cause {
                Some(Cause::Supersession(by)) => ("supersession", *by),
                _ => ("failure", None),
            };
            let reason = self.compensation_reason();
            self.record(SagaEvent::CompensationRequested(CompensationRequested {
                saga_id,
                note_id,
                version,
                step: step.name().into(),
                attempt,
                command_id,
                deadline_at,
                cause: cause.into(),
                superseded_by,
                reason,
                occurred_at: self.now,
            }));
        } else {
            self.record(SagaEvent::StepRequested(StepRequested {
                saga_id,
                note_id,
                version,
                step: step.name().into(),
                attempt,
                command_id,
                deadline_at,
                occurred_at: self.now,
            }));
        }
        let command = step_command(&self.saga, step);
        self.send(command_id, command);
    }

    fn compensation_reason(&self) -> String {
        match &self.saga.cause {
            Some(Cause::Supersession(Some(by))) => format!("superseded by version {by}"),
            Some(Cause::Supersession(None)) => "note deleted".into(),
            _ => self.saga.failure.clone().unwrap_or_default(),
        }
    }

    /// Runs the next forward step, or completes.
    fn advance(&mut self) {
        let steps = plan(self.saga.kind, self.saga.retire_version);
        match steps.get(self.saga.done.len()) {
            Some(next) => self.request(*next, 1),
            None => {
                let (saga_id, note_id, version) = self.ids();
                self.record(SagaEvent::SagaCompleted(SagaCompleted {
                    saga_id,
                    note_id,
                    version,
                    occurred_at: self.now,
                }));
            }
        }
    }

    /// Runs the next compensation, or ends the compensation.
    fn compensate_next(&mut self) {
        let next = self
            .saga
            .compensations
            .iter()
            .find(|step| !self.saga.compensated.contains(step))
            .copied();
        if let Some(step) = next {
            self.request(step, 1);
            return;
        }
        let (saga_id, note_id, version) = self.ids();
        match self.saga.cause.clone() {
            Some(Cause::Supersession(by_version)) => {
                let reason = self.compensation_reason();
                self.record(SagaEvent::SagaSuperseded(SagaSuperseded {
                    saga_id,
                    note_id,
                    version,
                    by_version,
                    reason,
                    occurred_at: self.now,
                }));
            }
            _ => {
                let reason = self.saga.failure.clone().unwrap_or_default();
                self.record(SagaEvent::SagaCompensated(SagaCompensated {
                    saga_id,
                    note_id,
                    version,
                    reason: reason.clone(),
                    occurred_at: self.now,
                }));
                self.send(
                    ids::saga_command_id(saga_id, "mark_failed", 1),
                    Command::MarkNoteVersionFailed(MarkNoteVersionFailed {
                        note_id,
                        version,
                        reason,
                    }),
                );
            }
        }
    }

    /// Starts compensating: the plan is fixed by `apply` from the steps done and the one
    /// in flight; an empty plan ends at once.
    fn start_compensation(&mut self, cause: Cause) {
        // The cause travels in the first CompensationRequested; set it for `request`.
        self.saga.cause = Some(cause);
        match compensation_plan(&self.saga).first() {
            Some(first) => self.request(*first, 1),
            None => self.compensate_next(),
        }
    }

    /// A step (forward or compensation) answered.
    fn succeeded(&mut self, pending: &Pending) {
        let (saga_id, note_id, version) = self.ids();
        if pending.step.is_compensation() {
            self.record(SagaEvent::StepCompensated(StepCompensated {
                saga_id,
                note_id,
                version,
                step: pending.step.name().into(),
                attempt: pending.attempt,
                occurred_at: self.now,
            }));
            self.compensate_next();
        } else {
            self.record(SagaEvent::StepSucceeded(StepSucceeded {
                saga_id,
                note_id,
                version,
                step: pending.step.name().into(),
                attempt: pending.attempt,
                occurred_at: self.now,
            }));
            self.advance();
        }
    }

    /// An attempt failed (a failure reply, or deadlines passed too often).
    fn failed(&mut self, pending: &Pending, retryable: bool, reason: &str) {
        let (saga_id, note_id, version) = self.ids();
        self.record(SagaEvent::StepFailed(StepFailed {
            saga_id,
            note_id,
            version,
            step: pending.step.name().into(),
            attempt: pending.attempt,
            retryable,
            reason: reason.into(),
            occurred_at: self.now,
        }));
        self.after_failure(pending, retryable, reason);
    }

    /// What follows a recorded failure: another attempt, parking, or compensation.
    fn after_failure(&mut self, pending: &Pending, retryable: bool, reason: &str) {
        let (saga_id, note_id, version) = self.ids();
        let used = pending.attempt - self.saga.budget_from + 1;
        let retry =
            (retryable || pending.step.must_finish()) && used < self.policy.budget(pending.step);
        if retry {
            self.record(SagaEvent::StepRetried(StepRetried {
                saga_id,
                note_id,
                version,
                step: pending.step.name().into(),
                attempt: pending.attempt + 1,
                retry_at: self.now + self.policy.backoff_ms(pending.attempt),
                reason: reason.into(),
                occurred_at: self.now,
            }));
        } else if pending.step.must_finish() {
            self.record(SagaEvent::SagaCompensationFailed(SagaCompensationFailed {
                saga_id,
                note_id,
                version,
                step: pending.step.name().into(),
                reason: reason.into(),
                occurred_at: self.now,
            }));
        } else {
            self.start_compensation(Cause::Failure);
        }
    }
}

/// The compensations of a saga that stops now: the steps it did and the one in flight,
/// last first (a step in flight may still take effect; its delete is queued behind it).
pub fn compensation_plan(saga: &NotePipeline) -> Vec<Step> {
    let in_flight = saga
        .pending
        .as_ref()
        .map(|p| p.step)
        .filter(|step| !step.must_finish());
    saga.done
        .iter()
        .copied()
        .chain(in_flight)
        .rev()
        .filter_map(Step::compensation)
        .collect()
}

/// The version a new publish saga retires: the newest version a saga of the same note
/// published (its artifacts are the ones readers see).
pub fn published_version<'a>(sagas: impl IntoIterator<Item = &'a NotePipeline>) -> Option<i64> {
    sagas
        .into_iter()
        .filter(|s| s.kind == Kind::Publish && s.published())
        .map(|s| s.version)
        .max()
}

/// Decides what `input` means for the saga (`None` when it has not started), at `now`.
pub fn react(saga: Option<&NotePipeline>, input: &Input, policy: &Policy, now: i64) -> Vec<Action> {
    match (saga, input) {
        (
            None,
            Input::VersionCreated {
                note_id,
                version,
                text,
                retire_version,
            },
        ) => start(
            ids::saga_id(*note_id, *version),
            Kind::Publish,
            *note_id,
            *version,
            text,
            retire_version.filter(|retired| retired < version),
            policy,
            now,
        ),
        (None, Input::NoteDeleted { note_id, version }) => start(
            ids::cleanup_saga_id(*note_id),
            Kind::Cleanup,
            *note_id,
            *version,
            "",
            None,
            policy,
            now,
        ),
        (Some(saga), Input::Reply { command_id, reply }) if saga.status.is_active() => {
            let Some(pending) = saga.pending.clone() else {
                return Vec::new();
            };
            if saga.awaited_command() != Some(*command_id) {
                return Vec::new();
            }
            let mut reaction = Reaction::new(saga.clone(), policy, now);
            match reply {
                Reply::Succeeded => reaction.succeeded(&pending),
                Reply::Failed { retryable, reason } => {
                    reaction.failed(&pending, *retryable, reason)
                }
            }
            reaction.actions
        }
        (Some(saga), Input::Cancel { by_version })
            if saga.status == Status::Running
                && saga.kind == Kind::Publish
                && !saga.published() =>
        {
            let mut reaction = Reaction::new(saga.clone(), policy, now);
            reaction.start_compensation(Cause::Supersession(*by_version));
            reaction.actions
        }
        (Some(saga), Input::Tick) if saga.status.is_active() => tick(saga, policy, now),
        (Some(saga), Input::OperatorRetry) if saga.status == Status::CompensationFailed => {
            let Some(pending) = saga.pending.clone() else {
                return Vec::new();
            };
            let mut reaction = Reaction::new(saga.clone(), policy, now);
            reaction.request(pending.step, pending.attempt + 1);
            reaction.actions
        }
        // Duplicates, late replies, replies to another attempt, cancels after the pivot:
        // nothing changes.
        _ => Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn start(
    saga_id: Uuid,
    kind: Kind,
    note_id: Uuid,
    version: i64,
    text: &str,
    retire_version: Option<i64>,
    policy: &Policy,
    now: i64,
) -> Vec<Action> {
    let started = SagaEvent::SagaStarted(SagaStarted {
        saga_id,
        note_id,
        version,
        text: text.into(),
        kind: kind.as_str().into(),
        retire_version,
        occurred_at: now,
    });
    let saga = apply(None, &started).expect("SagaStarted starts a saga");
    let mut reaction = Reaction::new(saga, policy, now);
    reaction.actions.push(Action::Record(started));
    reaction.advance();
    reaction.actions
}

fn tick(saga: &NotePipeline, policy: &Policy, now: i64) -> Vec<Action> {
    let mut reaction = Reaction::new(saga.clone(), policy, now);
    // A crash between two events of one reaction leaves an active saga with nothing
    // out (after SagaStarted or a success) or with a failure not yet acted on: finish
    // the reaction now.
    match (&saga.pending, saga.status) {
        (None, Status::Running) => reaction.advance(),
        (None, Status::Compensating) => reaction.compensate_next(),
        (Some(pending), _) if pending.failed.is_some() && pending.retry_at.is_none() => {
            let (retryable, reason) = pending.failed.clone().expect("checked");
            reaction.after_failure(pending, retryable, &reason);
        }
        _ => {}
    }
    if !reaction.actions.is_empty() {
        return reaction.actions;
    }
    if let Some(pending) = saga.pending.clone() {
        match pending.retry_at {
            Some(retry_at) if retry_at <= now => reaction.request(pending.step, pending.attempt),
            Some(_) => {}
            None if pending.deadline_at <= now => {
                if pending.resends < policy.max_resends {
                    let (saga_id, note_id, version) = reaction.ids();
                    reaction.record(SagaEvent::DeadlinePassed(DeadlinePassed {
                        saga_id,
                        note_id,
                        version,
                        step: pending.step.name().into(),
                        attempt: pending.attempt,
                        command_id: pending.command_id,
                        resend: pending.resends + 1,
                        deadline_at: now + policy.deadline_ms(pending.step, saga.text.len()),
                        occurred_at: now,
                    }));
                    // The same id: the first command may only be queued behind others.
                    let command = step_command(saga, pending.step);
                    reaction.send(pending.command_id, command);
                } else {
                    let reason = format!(
                        "no reply within the deadline after {} re-sends",
                        pending.resends
                    );
                    reaction.failed(&pending, true, &reason);
                }
            }
            None => {}
        }
    }
    if reaction.actions.is_empty()
        && !saga.stuck
        && now - saga.last_progress_at >= policy.stuck_after_ms
    {
        let (saga_id, note_id, version) = reaction.ids();
        reaction.record(SagaEvent::SagaStuck(SagaStuck {
            saga_id,
            note_id,
            version,
            status: saga.status.as_str().into(),
            idle_ms: now - saga.last_progress_at,
            occurred_at: now,
        }));
    }
    reaction.actions
}

/// The command a saga waits on, to send again after the orchestrator restarts (same
/// id, so a processor that already answered answers the same way).
pub fn pending_command(saga: &NotePipeline) -> Option<Action> {
    if !saga.status.is_active() {
        return None;
    }
    let command_id = saga.awaited_command()?;
    let pending = saga.pending.as_ref()?;
    Some(Action::Send {
        command_id,
        command: step_command(saga, pending.step),
    })
}

/// Folds one of the saga's own events into its state.
pub fn apply(saga: Option<NotePipeline>, event: &SagaEvent) -> Option<NotePipeline> {
    if let (None, SagaEvent::SagaStarted(e)) = (&saga, event) {
        return Some(NotePipeline {
            saga_id: e.saga_id,
            kind: Kind::from_name(&e.kind),
            note_id: e.note_id,
            version: e.version,
            text: e.text.clone(),
            retire_version: e.retire_version,
            status: Status::Running,
            done: Vec::new(),
            pending: None,
            cause: None,
            compensations: Vec::new(),
            compensated: Vec::new(),
            failure: None,
            budget_from: 1,
            stuck: false,
            last_progress_at: e.occurred_at,
            seq: 1,
        });
    }
    let mut saga = saga?;
    match event {
        SagaEvent::SagaStarted(_) => return Some(saga),
        // Written by the API, not by the saga: not part of its numbered history.
        SagaEvent::SagaRetryRequested(_) => {
            if let Some(pending) = &saga.pending {
                saga.budget_from = pending.attempt + 1;
            }
            return Some(saga);
        }
        _ => {}
    }
    saga.seq += 1;
    if let SagaEvent::SagaStuck(_) = event {
        saga.stuck = true;
        return Some(saga);
    }
    saga.stuck = false;
    saga.last_progress_at = event.occurred_at();
    if let Some(status) = status_after(event) {
        saga.status = status;
    }
    match event {
        SagaEvent::StepRequested(e) => {
            if let Some(step) = Step::from_name(&e.step) {
                set_pending(&mut saga, step, e.attempt, e.command_id, e.deadline_at);
            }
        }
        SagaEvent::CompensationRequested(e) => {
            if saga.cause.is_none() {
                saga.cause = Some(match e.cause.as_str() {
                    "supersession" => Cause::Supersession(e.superseded_by),
                    _ => Cause::Failure,
                });
                saga.compensations = compensation_plan(&saga);
            }
            if let Some(step) = Step::from_name(&e.step) {
                set_pending(&mut saga, step, e.attempt, e.command_id, e.deadline_at);
            }
        }
        SagaEvent::StepSucceeded(e) => {
            if let Some(step) = Step::from_name(&e.step) {
                saga.done.push(step);
            }
            saga.pending = None;
        }
        SagaEvent::StepCompensated(e) => {
            if let Some(step) = Step::from_name(&e.step) {
                saga.compensated.push(step);
            }
            saga.pending = None;
        }
        SagaEvent::StepFailed(e) => {
            if !Step::from_name(&e.step).is_some_and(Step::must_finish) {
                saga.failure = Some(format!("{} failed: {}", e.step, e.reason));
            }
            if let Some(pending) = saga.pending.as_mut() {
                pending.failed = Some((e.retryable, e.reason.clone()));
            }
        }
        SagaEvent::StepRetried(e) => {
            if let Some(pending) = saga.pending.as_mut() {
                pending.attempt = e.attempt;
                pending.command_id = Uuid::nil();
                pending.resends = 0;
                pending.retry_at = Some(e.retry_at);
                pending.failed = None;
            }
        }
        SagaEvent::DeadlinePassed(e) => {
            if let Some(pending) = saga.pending.as_mut() {
                pending.resends = e.resend;
                pending.deadline_at = e.deadline_at;
            }
        }
        SagaEvent::SagaSuperseded(e) => {
            saga.cause = Some(Cause::Supersession(e.by_version));
            saga.pending = None;
        }
        SagaEvent::SagaCompensated(_) | SagaEvent::SagaCompleted(_) => saga.pending = None,
        // The parked step stays pending: an operator retry resumes it.
        _ => {}
    }
    Some(saga)
}

fn set_pending(saga: &mut NotePipeline, step: Step, attempt: i32, command_id: Uuid, deadline: i64) {
    let same_step = saga.pending.as_ref().is_some_and(|p| p.step == step);
    if !same_step {
        saga.budget_from = attempt;
    }
    saga.pending = Some(Pending {
        step,
        attempt,
        command_id,
        deadline_at: deadline,
        resends: 0,
        retry_at: None,
        failed: None,
    });
}

#[cfg(test)]
mod tests;
