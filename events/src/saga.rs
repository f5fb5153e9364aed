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

record!(SagaStarted, "notesaga.saga", "saga");
record!(StepRequested, "notesaga.saga", "saga");
record!(StepSucceeded, "notesaga.saga", "saga");
record!(StepFailed, "notesaga.saga", "saga");
record!(SagaCompleted, "notesaga.saga", "saga");

message!(
    /// What may appear on `saga.note-pipeline`.
    SagaEvent {
        SagaStarted,
        StepRequested,
        StepSucceeded,
        StepFailed,
        SagaCompleted,
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
        }
    }
}
