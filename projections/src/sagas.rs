//! The saga timeline projection: folds `saga.note-pipeline` into `sagas` (one row per
//! saga, its state) and `saga_timeline` (every event, in log order).
//!
//! The state comes from the same rule the orchestrator folds with
//! ([`status_after`]), so what operators see is what the orchestrator decides on.

use chrono::{TimeZone as _, Utc};
use notesaga_events::{saga::SagaEvent, Message as _};
use notesaga_sagas::note_pipeline::{status_after, Step};
use sqlx::{Any, Transaction};
use uuid::Uuid;

use crate::Result;

/// What one saga event adds to the timeline and changes in the saga's row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    /// The step it is about.
    pub step: Option<String>,
    /// The attempt it is about.
    pub attempt: Option<i64>,
    /// The error it reports.
    pub error: Option<String>,
    /// Anything else an operator needs to read it.
    pub detail: Option<String>,
    /// The saga's state after it, when it changes.
    pub state: Option<&'static str>,
    /// The stuck flag after it (`None`: unchanged).
    pub stuck: Option<bool>,
    /// Why the saga failed, when this says.
    pub failure_reason: Option<String>,
}

fn rfc3339(millis: i64) -> String {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or_else(Utc::now)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Reads one saga event for the timeline.
pub fn entry(event: &SagaEvent) -> Entry {
    let at = |step: &str, attempt: i32| Entry {
        step: Some(step.to_owned()),
        attempt: Some(i64::from(attempt)),
        ..Entry::default()
    };
    let mut entry = match event {
        SagaEvent::SagaStarted(e) => Entry {
            detail: Some(match e.retire_version {
                Some(retired) => format!("{} saga; will retire version {retired}", e.kind),
                None => format!("{} saga", e.kind),
            }),
            ..Entry::default()
        },
        SagaEvent::StepRequested(e) => Entry {
            detail: Some(format!("reply due by {}", rfc3339(e.deadline_at))),
            ..at(&e.step, e.attempt)
        },
        SagaEvent::StepSucceeded(e) => at(&e.step, e.attempt),
        SagaEvent::StepFailed(e) => {
            let forward = Step::from_name(&e.step).is_some_and(|s| !s.must_finish());
            Entry {
                error: Some(e.reason.clone()),
                detail: Some(
                    if e.retryable {
                        "retryable"
                    } else {
                        "not retryable"
                    }
                    .into(),
                ),
                failure_reason: forward.then(|| format!("{} failed: {}", e.step, e.reason)),
                ..at(&e.step, e.attempt)
            }
        }
        SagaEvent::StepRetried(e) => Entry {
            detail: Some(format!("next attempt at {}", rfc3339(e.retry_at))),
            error: Some(e.reason.clone()),
            ..at(&e.step, e.attempt)
        },
        SagaEvent::DeadlinePassed(e) => Entry {
            detail: Some(format!(
                "re-sent the same command (re-send {}); reply due by {}",
                e.resend,
                rfc3339(e.deadline_at)
            )),
            ..at(&e.step, e.attempt)
        },
        SagaEvent::CompensationRequested(e) => Entry {
            detail: Some(format!("{}: {}", e.cause, e.reason)),
            ..at(&e.step, e.attempt)
        },
        SagaEvent::StepCompensated(e) => at(&e.step, e.attempt),
        SagaEvent::SagaCompleted(_) => Entry::default(),
        SagaEvent::SagaCompensated(e) => Entry {
            detail: Some(e.reason.clone()),
            ..Entry::default()
        },
        SagaEvent::SagaCompensationFailed(e) => Entry {
            step: Some(e.step.clone()),
            error: Some(e.reason.clone()),
            detail: Some("parked until an operator retries it".into()),
            ..Entry::default()
        },
        SagaEvent::SagaSuperseded(e) => Entry {
            detail: Some(e.reason.clone()),
            ..Entry::default()
        },
        SagaEvent::SagaStuck(e) => Entry {
            detail: Some(format!(
                "no progress for {} ms while {}",
                e.idle_ms, e.status
            )),
            ..Entry::default()
        },
        SagaEvent::SagaRetryRequested(e) => Entry {
            detail: Some(format!("operator retry requested by {}", e.requested_by)),
            ..Entry::default()
        },
    };
    entry.state = status_after(event).map(|s| s.as_str());
    entry.stuck = match event {
        SagaEvent::SagaStuck(_) => Some(true),
        SagaEvent::SagaRetryRequested(_) => None,
        _ => Some(false),
    };
    entry
}

/// Applies one saga event (id `event_id`, at `offset` of its partition).
pub async fn apply(
    tx: &mut Transaction<'static, Any>,
    event: &SagaEvent,
    event_id: Uuid,
    offset: i64,
) -> Result<()> {
    let saga_id = event.saga_id().to_string();
    let at = rfc3339(event.occurred_at());
    let entry = entry(event);
    // A second record with the same id (a re-run or a zombie's copy): first one wins.
    let inserted = sqlx::query(
        "INSERT INTO saga_timeline (event_id, saga_id, log_offset, event_type, step, attempt, error, detail, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id.to_string())
    .bind(&saga_id)
    .bind(offset)
    .bind(event.event_type())
    .bind(entry.step.clone())
    .bind(entry.attempt)
    .bind(entry.error.clone())
    .bind(entry.detail.clone())
    .bind(&at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(());
    }
    if let SagaEvent::SagaStarted(e) = event {
        sqlx::query(
            "INSERT INTO sagas (saga_id, note_id, version, kind, state, stuck, started_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'running', 0, $5, $6) ON CONFLICT (saga_id) DO NOTHING",
        )
        .bind(&saga_id)
        .bind(e.note_id.to_string())
        .bind(e.version)
        .bind(&e.kind)
        .bind(&at)
        .bind(&at)
        .execute(&mut **tx)
        .await?;
        return Ok(());
    }
    sqlx::query(
        "UPDATE sagas SET state = COALESCE($1, state), \
         stuck = COALESCE($2, stuck), step = COALESCE($3, step), \
         attempt = COALESCE($4, attempt), failure_reason = COALESCE($5, failure_reason), \
         updated_at = $6 WHERE saga_id = $7",
    )
    .bind(entry.state)
    .bind(entry.stuck.map(i64::from))
    .bind(entry.step)
    .bind(entry.attempt)
    .bind(entry.failure_reason)
    .bind(&at)
    .bind(&saga_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use notesaga_events::saga::{SagaStuck, StepFailed};

    use super::*;

    #[test]
    fn entries_carry_state_stuck_and_failure() {
        let saga_id = Uuid::from_u128(1);
        let note_id = Uuid::from_u128(2);
        let failed = |step: &str| {
            entry(&SagaEvent::StepFailed(StepFailed {
                saga_id,
                note_id,
                version: 1,
                step: step.into(),
                attempt: 2,
                retryable: false,
                reason: "boom".into(),
                occurred_at: 0,
            }))
        };
        let narration = failed("narration");
        assert_eq!(
            narration.failure_reason.as_deref(),
            Some("narration failed: boom")
        );
        assert_eq!(narration.error.as_deref(), Some("boom"));
        assert_eq!(narration.attempt, Some(2));
        assert_eq!(narration.state, None);
        assert_eq!(narration.stuck, Some(false));
        // A failing compensation is not why the version failed.
        assert_eq!(failed("delete_embedding").failure_reason, None);
        let stuck = entry(&SagaEvent::SagaStuck(SagaStuck {
            saga_id,
            note_id,
            version: 1,
            status: "running".into(),
            idle_ms: 5,
            occurred_at: 0,
        }));
        assert_eq!(stuck.stuck, Some(true));
        assert_eq!(stuck.state, None);
    }
}
