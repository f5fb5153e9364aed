//! The command status projection: folds `notes.outcomes` into `command_outcomes`.
//!
//! The other half of a command's status, the `commands` row saying the API accepted it,
//! is written by the API itself ([`crate::ReadStore::record_accepted`]); see the
//! migration for why.

use notesaga_events::notes::NotesOutcome;
use sqlx::{Any, Transaction};

use crate::{notes::rfc3339, Result};

/// Applies one outcome. A command is answered once; a redelivered command gets the same
/// answer again, and a second copy changes nothing (first in log order wins).
pub async fn apply(tx: &mut Transaction<'static, Any>, outcome: &NotesOutcome) -> Result<()> {
    let (status, version, code, message, occurred_at) = match outcome {
        NotesOutcome::CommandApplied(o) => ("applied", o.version, None, None, o.occurred_at),
        NotesOutcome::CommandRejected(o) => (
            "rejected",
            None,
            Some(o.code.as_str()),
            Some(o.message.as_str()),
            o.occurred_at,
        ),
    };
    let (note_id, command_type) = match outcome {
        NotesOutcome::CommandApplied(o) => (o.note_id, &o.command_type),
        NotesOutcome::CommandRejected(o) => (o.note_id, &o.command_type),
    };
    sqlx::query(
        "INSERT INTO command_outcomes \
         (command_id, note_id, command_type, status, version, code, message, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (command_id) DO NOTHING",
    )
    .bind(outcome.command_id().to_string())
    .bind(note_id.to_string())
    .bind(command_type.as_str())
    .bind(status)
    .bind(version)
    .bind(code)
    .bind(message)
    .bind(rfc3339(occurred_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
