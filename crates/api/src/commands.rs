//! `GET /v1/commands/{id}`: what became of a command the API accepted.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use notesaga_projections::{CommandState, CommandView};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{caller::Caller, problem::Problem, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/commands/{command_id}", get(get_command))
}

fn not_found(raw: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "command-not-found",
        "Command not found",
    )
    .detail(format!("no command {raw}"))
}

/// The status document: `pending` until the notes processor's outcome is projected,
/// then `applied` (with the version it produced) or `rejected` (with why).
pub(crate) fn command_json(command: &CommandView) -> Value {
    let (status, version, rejection, completed_at) = match &command.state {
        CommandState::Pending => ("pending", None, None, None),
        CommandState::Applied { version, at } => ("applied", *version, None, Some(at)),
        CommandState::Rejected { code, message, at } => (
            "rejected",
            None,
            Some(json!({"code": code, "message": message})),
            Some(at),
        ),
    };
    json!({
        "command_id": command.command_id,
        "note_id": command.note_id,
        "command_type": command.command_type,
        "status": status,
        "version": version,
        "rejection": rejection,
        "accepted_at": command.accepted_at,
        "completed_at": completed_at,
    })
}

#[utoipa::path(
    get,
    path = "/v1/commands/{command_id}",
    tag = "commands",
    summary = "What became of a command",
    params(("command_id" = uuid::Uuid, Path, description = "The command (from a 202's `Location`)")),
    responses(
        (status = 200, description = "`pending`, `applied` (with the version) or `rejected` (with why)", body = crate::openapi::schemas::CommandStatus),
        (status = 404, description = "No such command, or another user's"),
    ),
)]
async fn get_command(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    let command_id = Uuid::parse_str(&raw).map_err(|_| not_found(&raw))?;
    let command = state
        .store
        .command(command_id)
        .await?
        // Another user's command is as unknown as one never sent.
        .filter(|command| command.owner == caller.owner)
        .ok_or_else(|| not_found(&raw))?;
    Ok(Json(command_json(&command)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_documents() {
        let view = |state| CommandView {
            command_id: Uuid::from_u128(1),
            note_id: Uuid::from_u128(2),
            owner: "ann".into(),
            command_type: "EditNote".into(),
            accepted_at: "2026-01-01T00:00:00.000Z".into(),
            state,
        };
        let pending = command_json(&view(CommandState::Pending));
        assert_eq!(pending["status"], "pending");
        assert!(pending["version"].is_null() && pending["rejection"].is_null());
        let applied = command_json(&view(CommandState::Applied {
            version: Some(3),
            at: "2026-01-01T00:00:01.000Z".into(),
        }));
        assert_eq!(
            (applied["status"].as_str(), applied["version"].as_i64()),
            (Some("applied"), Some(3))
        );
        assert_eq!(applied["completed_at"], "2026-01-01T00:00:01.000Z");
        let rejected = command_json(&view(CommandState::Rejected {
            code: "version_conflict".into(),
            message: "expected 7".into(),
            at: "2026-01-01T00:00:02.000Z".into(),
        }));
        assert_eq!(rejected["status"], "rejected");
        assert_eq!(rejected["rejection"]["code"], "version_conflict");
        assert_eq!(rejected["rejection"]["message"], "expected 7");
        assert!(rejected["version"].is_null());
    }
}
