//! The note-pipeline saga's own events (`saga.note-pipeline`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{message, record};

/// A saga began for one note version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaStarted {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub text: String,
    pub kind: String,
    pub retire_version: Option<i64>,
    pub occurred_at: i64,
}

/// The saga sent a step's command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRequested {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub step: String,
    pub attempt: i32,
    #[serde(with = "crate::uuid_string")]
    pub command_id: Uuid,
    pub deadline_at: i64,
    pub occurred_at: i64,
}

/// A step's reply said it succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSucceeded {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub step: String,
    pub attempt: i32,
    pub occurred_at: i64,
}

/// A step's reply said it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFailed {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub step: String,
    pub attempt: i32,
    pub retryable: bool,
    pub reason: String,
    pub occurred_at: i64,
}

/// Every step succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaCompleted {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub occurred_at: i64,
}

/// A failed step gets another attempt (new command id) after a backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRetried {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub step: String,
    pub attempt: i32,
    pub retry_at: i64,
    pub reason: String,
    pub occurred_at: i64,
}

/// No reply came in time: the same command (same id) is sent again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadlinePassed {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub step: String,
    pub attempt: i32,
    #[serde(with = "crate::uuid_string")]
    pub command_id: Uuid,
    pub resend: i32,
    pub deadline_at: i64,
    pub occurred_at: i64,
}

/// The saga sent a compensation (undoing a completed step, last first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensationRequested {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub step: String,
    pub attempt: i32,
    #[serde(with = "crate::uuid_string")]
    pub command_id: Uuid,
    pub deadline_at: i64,
    pub cause: String,
    pub superseded_by: Option<i64>,
    pub reason: String,
    pub occurred_at: i64,
}

/// A compensation's reply said it succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCompensated {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub step: String,
    pub attempt: i32,
    pub occurred_at: i64,
}

/// Every completed step was undone after a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaCompensated {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub reason: String,
    pub occurred_at: i64,
}

/// A compensation, retirement or cleanup ran out of attempts: parked for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaCompensationFailed {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub step: String,
    pub reason: String,
    pub occurred_at: i64,
}

/// A newer version or the note's deletion cancelled the saga (its steps undone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaSuperseded {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub by_version: Option<i64>,
    pub reason: String,
    pub occurred_at: i64,
}

/// No progress for the configured time (once per stall).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaStuck {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub status: String,
    pub idle_ms: i64,
    pub occurred_at: i64,
}

/// An operator asked a parked saga to try again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaRetryRequested {
    #[serde(with = "crate::uuid_string")]
    pub saga_id: Uuid,
    #[serde(with = "crate::uuid_string")]
    pub note_id: Uuid,
    pub version: i64,
    pub requested_by: String,
    pub occurred_at: i64,
}

record!(SagaStarted, "notesaga.saga", "saga");
record!(StepRequested, "notesaga.saga", "saga");
record!(StepSucceeded, "notesaga.saga", "saga");
record!(StepFailed, "notesaga.saga", "saga");
record!(SagaCompleted, "notesaga.saga", "saga");
record!(StepRetried, "notesaga.saga", "saga");
record!(DeadlinePassed, "notesaga.saga", "saga");
record!(CompensationRequested, "notesaga.saga", "saga");
record!(StepCompensated, "notesaga.saga", "saga");
record!(SagaCompensated, "notesaga.saga", "saga");
record!(SagaCompensationFailed, "notesaga.saga", "saga");
record!(SagaSuperseded, "notesaga.saga", "saga");
record!(SagaStuck, "notesaga.saga", "saga");
record!(SagaRetryRequested, "notesaga.saga", "saga");

message!(
    /// What may appear on `saga.note-pipeline`.
    SagaEvent {
        SagaStarted,
        StepRequested,
        StepSucceeded,
        StepFailed,
        SagaCompleted,
        StepRetried,
        DeadlinePassed,
        CompensationRequested,
        StepCompensated,
        SagaCompensated,
        SagaCompensationFailed,
        SagaSuperseded,
        SagaStuck,
        SagaRetryRequested,
    }
);

impl SagaEvent {
    /// The saga the event belongs to.
    pub fn saga_id(&self) -> Uuid {
        match self {
            Self::SagaStarted(e) => e.saga_id,
            Self::StepRequested(e) => e.saga_id,
            Self::StepSucceeded(e) => e.saga_id,
            Self::StepFailed(e) => e.saga_id,
            Self::SagaCompleted(e) => e.saga_id,
            Self::StepRetried(e) => e.saga_id,
            Self::DeadlinePassed(e) => e.saga_id,
            Self::CompensationRequested(e) => e.saga_id,
            Self::StepCompensated(e) => e.saga_id,
            Self::SagaCompensated(e) => e.saga_id,
            Self::SagaCompensationFailed(e) => e.saga_id,
            Self::SagaSuperseded(e) => e.saga_id,
            Self::SagaStuck(e) => e.saga_id,
            Self::SagaRetryRequested(e) => e.saga_id,
        }
    }

    /// When it happened (ms since the epoch).
    pub fn occurred_at(&self) -> i64 {
        match self {
            Self::SagaStarted(e) => e.occurred_at,
            Self::StepRequested(e) => e.occurred_at,
            Self::StepSucceeded(e) => e.occurred_at,
            Self::StepFailed(e) => e.occurred_at,
            Self::SagaCompleted(e) => e.occurred_at,
            Self::StepRetried(e) => e.occurred_at,
            Self::DeadlinePassed(e) => e.occurred_at,
            Self::CompensationRequested(e) => e.occurred_at,
            Self::StepCompensated(e) => e.occurred_at,
            Self::SagaCompensated(e) => e.occurred_at,
            Self::SagaCompensationFailed(e) => e.occurred_at,
            Self::SagaSuperseded(e) => e.occurred_at,
            Self::SagaStuck(e) => e.occurred_at,
            Self::SagaRetryRequested(e) => e.occurred_at,
        }
    }
}
