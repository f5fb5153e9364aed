//! `/v1/notes`: create, edit and delete (commands, each recorded for
//! `GET /v1/commands/{id}`), read one, list, and the published audio.
//!
//! A command may carry an `Idempotency-Key` ([`crate::idempotency`]) and may ask to wait
//! for its outcome (`Prefer: wait=N`, [`crate::wait`]); a read may wait for a version
//! (`?min_version=N`).

use axum::{
    extract::{FromRequest, Path, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use notesaga_events::{
    notes::{CreateNote, DeleteNote, EditNote, NotesCommand},
    topics::NOTES_COMMANDS,
    Message as _,
};
use notesaga_log::Metadata;
use notesaga_projections::{
    idempotency::Reservation, AcceptedCommand, NoteCursor, NoteListQuery, NoteView,
};
use notesaga_validation::check_note;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    auth::AuthConfig,
    caller::{AudioAccess, Caller},
    idempotency::{self, IdempotentRequest, IDEMPOTENT_REPLAYED},
    problem::{FieldProblem, Problem},
    reply::Reply,
    wait, AppState, REQUEST_ID,
};

/// Notes per page unless `limit` says otherwise (the largest is
/// [`crate::Limits::max_page_size`]).
pub(crate) const DEFAULT_PAGE_SIZE: i64 = 20;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/notes", post(create_note).get(list_notes))
        .route(
            "/v1/notes/{note_id}",
            get(get_note).put(edit_note).delete(delete_note),
        )
        .route("/v1/notes/{note_id}/audio", get(get_audio))
}

/// A JSON request body, read whole (within the body limit) and checked by hand so that
/// every failure gets the status and problem body the API promises.
#[derive(Debug)]
pub(crate) struct JsonBody(Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
            let content_type = content_type
                .to_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "Unsupported media type",
                )
                .detail(format!("send application/json, not {essence}")));
            }
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload-too-large",
                        "Payload too large",
                    )
                    .detail("the request body is larger than the server accepts")
                } else {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "unreadable-body",
                        "Unreadable body",
                    )
                    .detail(rejection.body_text())
                }
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|err| {
            Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
                .detail(format!("the body is not valid JSON: {err}"))
        })
    }
}

fn unprocessable(errors: Vec<FieldProblem>) -> Problem {
    let detail = errors
        .iter()
        .map(|e| format!("{} {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Invalid note",
    )
    .detail(detail)
    .errors(errors)
}

/// `title` and `body` out of a request body, with every problem named.
fn title_and_body(body: &Value) -> Result<(String, String), Problem> {
    let Some(object) = body.as_object() else {
        return Err(unprocessable(vec![FieldProblem {
            field: "$".into(),
            message: "the body must be a JSON object with title and body".into(),
        }]));
    };
    let mut errors = Vec::new();
    let mut text = |field: &str| match object.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => {
            errors.push(FieldProblem {
                field: field.into(),
                message: "is required".into(),
            });
            None
        }
        Some(_) => {
            errors.push(FieldProblem {
                field: field.into(),
                message: "must be a string".into(),
            });
            None
        }
    };
    let (title, note_body) = (text("title"), text("body"));
    if let (Some(title), Some(note_body)) = (&title, &note_body) {
        errors.extend(
            check_note(title, note_body)
                .into_iter()
                .map(|e| FieldProblem {
                    field: e.field.into(),
                    message: e.message,
                }),
        );
    }
    match (title, note_body) {
        (Some(title), Some(note_body)) if errors.is_empty() => Ok((title, note_body)),
        _ => Err(unprocessable(errors)),
    }
}

pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

pub(crate) fn parse_note_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| {
        Problem::new(StatusCode::NOT_FOUND, "note-not-found", "Note not found")
            .detail(format!("{raw:?} is not a note id"))
    })
}

/// Why a command was not answered.
#[derive(Debug)]
enum Failure {
    /// Before anything was sent (a check, or the store): the key may be used afresh.
    NotSent(Problem),
    /// Sending failed, but the command may be on the log: a retry must re-send it as it
    /// is.
    MaybeSent(Problem),
}

/// Runs a command request: with an `Idempotency-Key`, at most once per key (a retry
/// gets the first answer); otherwise checked (`existing`: the note it is about must be
/// the caller's and not deleted) and sent. `build` makes the command for a note id
/// (a new one for a create, the path's otherwise).
async fn execute(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    key: Option<IdempotentRequest>,
    existing: Option<Uuid>,
    build: impl FnOnce(Uuid) -> NotesCommand,
) -> Result<Response, Problem> {
    let fresh_command = Uuid::new_v4();
    let fresh_note = existing.unwrap_or_else(Uuid::new_v4);
    let Some(key) = key else {
        if let Some(note_id) = existing {
            commandable_note(state, note_id, caller).await?;
        }
        let command = build(fresh_note);
        return match dispatch(state, caller, headers, fresh_command, command, false).await {
            Ok(reply) => Ok(reply.into_response()),
            Err(Failure::NotSent(problem) | Failure::MaybeSent(problem)) => Err(problem),
        };
    };
    let reservation = idempotency::reserve(
        state,
        caller,
        &key,
        fresh_command,
        fresh_note,
        &state.idempotency_purged_at,
    )
    .await?;
    let (command_id, note_id, resumed) = match reservation {
        Reservation::Reserved {
            command_id,
            note_id,
            resumed,
        } => (command_id, note_id, resumed),
        Reservation::Completed(stored) => {
            let mut response = Reply::from_stored(stored).into_response();
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            return Ok(response);
        }
        Reservation::InFlight => return Err(idempotency::in_flight(&key.key)),
        Reservation::Mismatch => return Err(idempotency::mismatch(&key.key)),
    };
    // A resumed key's command may be on the log already (its first request crashed or
    // timed out after sending): it is re-sent unchecked, as it was, and the notes
    // processor, which answers a command id once, checks it.
    let checked = match existing {
        Some(existing) if !resumed => commandable_note(state, existing, caller).await,
        _ => Ok(()),
    };
    let outcome = match checked {
        Ok(()) => dispatch(state, caller, headers, command_id, build(note_id), resumed).await,
        Err(problem) => Err(Failure::NotSent(problem)),
    };
    let owner = caller.owner.as_str();
    match outcome {
        Ok(reply) => {
            let stored = state
                .store
                .complete_idempotency_key(owner, &key.key, command_id, &reply.stored())
                .await;
            if let Err(err) = stored {
                // The client has its answer. A retry finds the key in flight until the
                // bound, then resumes it: the same command, so the same outcome.
                tracing::warn!(%command_id, error = %err, "cannot store an idempotent response");
            }
            Ok(reply.into_response())
        }
        Err(Failure::NotSent(problem)) => {
            if let Err(err) = state
                .store
                .release_idempotency_key(owner, &key.key, command_id)
                .await
            {
                tracing::warn!(%command_id, error = %err, "cannot release an idempotency key");
            }
            Err(problem)
        }
        Err(Failure::MaybeSent(problem)) => {
            if let Err(err) = state
                .store
                .abandon_idempotency_key(owner, &key.key, command_id)
                .await
            {
                tracing::warn!(%command_id, error = %err, "cannot abandon an idempotency key");
            }
            Err(problem)
        }
    }
}

/// Records the command as accepted, sends it, and answers 202 with its status URL, or,
/// asked to wait (`Prefer: wait=N`), its outcome if it comes in time.
async fn dispatch(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    command_id: Uuid,
    command: NotesCommand,
    resumed: bool,
) -> Result<Reply, Failure> {
    let note_id = command.note_id();
    let command_type = command.event_type();
    let created = matches!(command, NotesCommand::CreateNote(_));
    // A resumed command may have been recorded by its first request.
    let recorded = resumed
        && state
            .store
            .command(command_id)
            .await
            .map_err(|err| Failure::NotSent(err.into()))?
            .is_some();
    if !recorded {
        // Recorded before it is sent: once the client holds a 202, its command status
        // answers `pending` (or better), never 404.
        let accepted = AcceptedCommand {
            command_id,
            note_id,
            owner: caller.owner.clone(),
            command_type: command_type.to_owned(),
            accepted_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        state
            .store
            .record_accepted(&accepted)
            .await
            .map_err(|err| Failure::NotSent(err.into()))?;
    }
    let metadata = Metadata::new(command_id, request_id(headers)).with_command(command_id);
    if let Err(err) = state
        .publisher
        .publish(NOTES_COMMANDS, &command, &metadata)
        .await
    {
        // The client gets a 503 without the command id; a leftover row would only be
        // an unreachable `pending`, so forgetting it is best effort. A resumed command's
        // row stays: its first sending may have worked.
        if !resumed {
            if let Err(forget) = state.store.forget_accepted(command_id).await {
                tracing::warn!(%command_id, error = %forget, "cannot forget an unsent command");
            }
        }
        return Err(Failure::MaybeSent(Problem::unavailable("the log", &err)));
    }
    tracing::info!(%note_id, %command_id, command = command_type, "command accepted");
    let accepted = Reply::json(
        StatusCode::ACCEPTED,
        &json!({"note_id": note_id, "command_id": command_id}),
    )
    .header(header::LOCATION, &command_url(command_id));
    let Some(wait) = wait::prefer_wait(headers)
        .map(|seconds| wait::capped(seconds, state.config.limits.max_wait))
        .filter(|wait| !wait.is_zero())
    else {
        return Ok(accepted);
    };
    let outcome = wait::poll(wait, || async {
        Ok(state
            .store
            .command(command_id)
            .await?
            .and_then(|command| wait::outcome_reply(&command, created)))
    })
    .await;
    let reply = match outcome {
        Ok(Some(reply)) => reply,
        Ok(None) => accepted,
        Err(problem) => {
            // The command is sent; the store failing to tell its outcome is no reason to
            // hide that. The client polls the status URL instead.
            tracing::warn!(%command_id, status = problem.status, "cannot wait for an outcome");
            accepted
        }
    };
    let (name, value) = wait::preference_applied(wait);
    Ok(Reply {
        headers: [reply.headers, vec![(name, value)]].concat(),
        ..reply
    })
}

/// Where a command's status is.
fn command_url(command_id: Uuid) -> String {
    format!("/v1/commands/{command_id}")
}

/// The headers every command (`POST`, `PUT`, `DELETE` of notes) takes, for the OpenAPI
/// document only: the handlers read them from the [`HeaderMap`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // never built: its IntoParams impl is what the document reads
struct CommandHeaders {
    /// Makes the command safe to retry: the same key with the same request answers the first response again (with `Idempotent-Replayed: true`), with a different request 422, while the first is in flight 409. Scoped to the user, kept at least 24 hours; 1 to 255 visible ASCII characters
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
    /// `wait=N` (RFC 7240): wait up to N seconds (capped by the server) for the outcome: 201/200 when applied, the rejection's problem (404, 409, 410, 412, 422) when rejected, 202 if the wait runs out
    #[param(rename = "Prefer")]
    prefer: Option<String>,
}

/// `If-Match` of the commands on an existing note, for the OpenAPI document only (see
/// [`if_match`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // never built: its IntoParams impl is what the document reads
struct IfMatchHeader {
    /// `"N"`, the note's ETag: the command's expected version (a mismatch is the rejection `version_conflict`, 412 when waited for)
    #[param(rename = "If-Match")]
    if_match: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/notes",
    tag = "notes",
    summary = "Create a note (a command)",
    params(
        CommandHeaders,
    ),
    request_body(content = crate::openapi::schemas::NoteInput, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: sent to the notes processor, which decides later", body = crate::openapi::schemas::CommandAccepted,
            headers(("Location" = String, description = "The command's status URL, `/v1/commands/{command_id}`"), ("Preference-Applied" = String, description = "`wait=N` when the request waited"), ("Idempotent-Replayed" = String, description = "`true` on the stored answer to a retried Idempotency-Key"))),
        (status = 201, description = "Applied within the `Prefer: wait`: the command's status", body = crate::openapi::schemas::CommandStatus,
            headers(("Location" = String, description = "The note, `/v1/notes/{note_id}`"), ("ETag" = String, description = "`\"1\"`"), ("Preference-Applied" = String, description = "`wait=N` when the request waited"), ("Idempotent-Replayed" = String, description = "`true` on the stored answer to a retried Idempotency-Key"))),
        (status = 400, description = "A bad `If-Match` or `Idempotency-Key`, or malformed JSON"),
        (status = 404, description = "No such note, or another user's (also the rejection `not_found` when waited for)"),
        (status = 409, description = "The same `Idempotency-Key` is still being answered, or the command conflicts with the note (when waited for)"),
        (status = 410, description = "The note is deleted"),
        (status = 412, description = "Version conflict (`If-Match`), when waited for"),
        (status = 422, description = "A field is missing, empty or too long (`errors` names it), or the `Idempotency-Key` was used with a different request"),
        (status = 503, description = "The log or the read store is unavailable: nothing was sent, or the request timed out"),
    ),
)]
async fn create_note(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    let (title, note_body) = title_and_body(&body)?;
    let key = idempotency::idempotent_request(&headers, &Method::POST, "/v1/notes", Some(&body))?;
    let owner = caller.owner.clone();
    execute(&state, &caller, &headers, key, None, |note_id| {
        NotesCommand::CreateNote(CreateNote {
            note_id,
            owner,
            title,
            body: note_body,
        })
    })
    .await
}

#[utoipa::path(
    put,
    path = "/v1/notes/{note_id}",
    tag = "notes",
    summary = "Edit a note (a command)",
    params(
        ("note_id" = uuid::Uuid, Path, description = "The note"),
        IfMatchHeader,
        CommandHeaders,
    ),
    request_body(content = crate::openapi::schemas::NoteInput, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: sent to the notes processor, which decides later", body = crate::openapi::schemas::CommandAccepted,
            headers(("Location" = String, description = "The command's status URL, `/v1/commands/{command_id}`"), ("Preference-Applied" = String, description = "`wait=N` when the request waited"), ("Idempotent-Replayed" = String, description = "`true` on the stored answer to a retried Idempotency-Key"))),
        (status = 200, description = "Applied within the `Prefer: wait`: the command's status", body = crate::openapi::schemas::CommandStatus,
            headers(("ETag" = String, description = "`\"N\"`, the version the edit produced"), ("Preference-Applied" = String, description = "`wait=N` when the request waited"), ("Idempotent-Replayed" = String, description = "`true` on the stored answer to a retried Idempotency-Key"))),
        (status = 400, description = "A bad `If-Match` or `Idempotency-Key`, or malformed JSON"),
        (status = 404, description = "No such note, or another user's (also the rejection `not_found` when waited for)"),
        (status = 409, description = "The same `Idempotency-Key` is still being answered, or the command conflicts with the note (when waited for)"),
        (status = 410, description = "The note is deleted"),
        (status = 412, description = "Version conflict (`If-Match`), when waited for"),
        (status = 422, description = "A field is missing, empty or too long (`errors` names it), or the `Idempotency-Key` was used with a different request"),
        (status = 503, description = "The log or the read store is unavailable: nothing was sent, or the request timed out"),
    ),
)]
async fn edit_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(note_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    let note_id = parse_note_id(&note_id)?;
    let (title, note_body) = title_and_body(&body)?;
    let expected_version = if_match(&headers)?;
    let path = wait::note_url(note_id);
    let key = idempotency::idempotent_request(&headers, &Method::PUT, &path, Some(&body))?;
    // The command names the caller, not the note's owner: the aggregate checks too.
    let owner = caller.owner.clone();
    execute(&state, &caller, &headers, key, Some(note_id), |note_id| {
        NotesCommand::EditNote(EditNote {
            note_id,
            owner,
            title,
            body: note_body,
            expected_version,
        })
    })
    .await
}

/// `DELETE /v1/notes/{id}`: a `DeleteNote` command; the note answers 410 once the
/// projection has seen `NoteDeleted`, and a cleanup saga removes every artifact.
#[utoipa::path(
    delete,
    path = "/v1/notes/{note_id}",
    tag = "notes",
    summary = "Delete a note (a command)",
    params(
        ("note_id" = uuid::Uuid, Path, description = "The note"),
        IfMatchHeader,
        CommandHeaders,
    ),
    responses(
        (status = 202, description = "Accepted: sent to the notes processor, which decides later", body = crate::openapi::schemas::CommandAccepted,
            headers(("Location" = String, description = "The command's status URL, `/v1/commands/{command_id}`"), ("Preference-Applied" = String, description = "`wait=N` when the request waited"), ("Idempotent-Replayed" = String, description = "`true` on the stored answer to a retried Idempotency-Key"))),
        (status = 200, description = "Applied within the `Prefer: wait`: the command's status", body = crate::openapi::schemas::CommandStatus,
            headers(("Preference-Applied" = String, description = "`wait=N` when the request waited"), ("Idempotent-Replayed" = String, description = "`true` on the stored answer to a retried Idempotency-Key"))),
        (status = 400, description = "A bad `If-Match` or `Idempotency-Key`, or malformed JSON"),
        (status = 404, description = "No such note, or another user's (also the rejection `not_found` when waited for)"),
        (status = 409, description = "The same `Idempotency-Key` is still being answered, or the command conflicts with the note (when waited for)"),
        (status = 410, description = "The note is deleted"),
        (status = 412, description = "Version conflict (`If-Match`), when waited for"),
        (status = 422, description = "A field is missing, empty or too long (`errors` names it), or the `Idempotency-Key` was used with a different request"),
        (status = 503, description = "The log or the read store is unavailable: nothing was sent, or the request timed out"),
    ),
)]
async fn delete_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(note_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let note_id = parse_note_id(&note_id)?;
    let expected_version = if_match(&headers)?;
    let path = wait::note_url(note_id);
    let key = idempotency::idempotent_request(&headers, &Method::DELETE, &path, None)?;
    let owner = caller.owner.clone();
    execute(&state, &caller, &headers, key, Some(note_id), |note_id| {
        NotesCommand::DeleteNote(DeleteNote {
            note_id,
            owner,
            expected_version,
        })
    })
    .await
}

fn note_not_found(note_id: Uuid) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "note-not-found", "Note not found")
        .detail(format!("no note {note_id}"))
}

/// The note, deleted or not, if the caller may see it: another user's note is as
/// unknown as a missing one (404).
pub(crate) async fn owned_note(
    state: &AppState,
    note_id: Uuid,
    caller: &Caller,
) -> Result<NoteView, Problem> {
    match state.store.note(note_id).await? {
        Some(note) if note.owner == caller.owner => Ok(note),
        _ => Err(note_not_found(note_id)),
    }
}

/// The note, if the caller may see it (404 otherwise) and it is not deleted (410).
async fn live_note(state: &AppState, note_id: Uuid, caller: &Caller) -> Result<NoteView, Problem> {
    let note = owned_note(state, note_id, caller).await?;
    match note.deleted_at {
        Some(_) => Err(gone(note_id)),
        None => Ok(note),
    }
}

/// Whether the caller may send a command on the note: it is theirs and not deleted in
/// the read model, or the read model has not seen it yet but this API accepted the
/// caller's create of it. A client that edits or deletes right after creating must not
/// get 404 because the projection lags; the notes aggregate sees the create first (same
/// partition) and is the judge, its rejection shows in the command's status. Another
/// user's note stays 404: their create is not the caller's.
async fn commandable_note(state: &AppState, note_id: Uuid, caller: &Caller) -> Result<(), Problem> {
    match live_note(state, note_id, caller).await {
        Ok(_) => Ok(()),
        // Note ids are the API's own (v4, drawn per create), so a create accepted from
        // the caller makes the note the caller's.
        Err(problem) if problem.status == StatusCode::NOT_FOUND.as_u16() => {
            if state.store.accepted_create(note_id, &caller.owner).await? {
                Ok(())
            } else {
                Err(problem)
            }
        }
        Err(problem) => Err(problem),
    }
}

fn gone(note_id: Uuid) -> Problem {
    Problem::new(StatusCode::GONE, "note-deleted", "Note deleted")
        .detail(format!("note {note_id} was deleted"))
}

/// `If-Match: "N"` as the command's expected version.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let version = text.trim_start_matches("W/").trim_matches('"');
    version.parse::<i64>().map(Some).map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "bad-if-match", "Bad If-Match").detail(format!(
            "If-Match must be a note version ETag like \"3\", not {text:?}"
        ))
    })
}

/// A short-lived signed URL of the note's audio: a browser's `<audio>` element plays it
/// without an `Authorization` header.
fn audio_url(auth: &AuthConfig, note_id: Uuid) -> String {
    auth.signed_url(&format!("/v1/notes/{note_id}/audio"))
}

/// A note as `GET /v1/notes/{id}` shows it; lists show the same without `body`.
fn note_json(auth: &AuthConfig, note: &NoteView) -> Value {
    let published = note.published.as_ref();
    let mut view = json!({
        "note_id": note.note_id,
        "owner": note.owner,
        "title": note.title,
        "version": note.version,
        "status": note.status,
        "published_version": published.map(|p| p.version),
        "embedding": published.and_then(|p| Some(json!({
            "model": p.embedding_model.clone()?,
            "dimensions": p.embedding_dimensions?,
        }))),
        "narration": published.and_then(|p| {
            p.audio_key.as_ref()?;
            Some(json!({"audio_url": audio_url(auth, note.note_id), "duration_ms": p.audio_duration_ms?}))
        }),
        "created_at": note.created_at,
        "updated_at": note.updated_at,
    });
    if let Some(body) = &note.body {
        view["body"] = json!(body);
    }
    if let Some(reason) = &note.failure_reason {
        view["failure_reason"] = json!(reason);
    }
    view
}

/// Query of `GET /v1/notes/{id}`.
#[derive(Debug, Deserialize)]
pub(crate) struct NoteQuery {
    min_version: Option<String>,
}

/// `min_version`: a version is 1 or more.
fn parse_min_version(raw: Option<&str>) -> Result<Option<i64>, Problem> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.trim().parse::<i64>() {
        Ok(version) if version >= 1 => Ok(Some(version)),
        _ => Err(bad_query(
            "bad-min-version",
            "Bad min_version",
            format!("min_version must be a note version (a whole number from 1), not {raw:?}"),
        )),
    }
}

/// The note once the projection has applied version `min_version` (or deleted it),
/// waiting up to the configured maximum: 412 if it is still older then, 404 if the
/// caller still cannot see it (unknown and another user's notes look alike, even in how
/// long they take), 410 once deleted.
async fn note_at_least(
    state: &AppState,
    note_id: Uuid,
    caller: &Caller,
    min_version: i64,
) -> Result<NoteView, Problem> {
    let reached = wait::poll(state.config.limits.max_wait, || async {
        Ok(state
            .store
            .note(note_id)
            .await?
            .filter(|note| note.owner == caller.owner)
            .filter(|note| note.deleted_at.is_some() || note.version >= min_version))
    })
    .await?;
    let note = match reached {
        Some(note) => note,
        None => live_note(state, note_id, caller).await?,
    };
    if note.deleted_at.is_some() {
        return Err(gone(note_id));
    }
    if note.version < min_version {
        return Err(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "min-version-not-reached",
            "Version not reached yet",
        )
        .detail(format!(
            "note {note_id} is at version {} after waiting {} ms for version {min_version}; retry",
            note.version,
            state.config.limits.max_wait.as_millis()
        ))
        .extension("version", json!(note.version)));
    }
    Ok(note)
}

#[utoipa::path(
    get,
    path = "/v1/notes/{note_id}",
    tag = "notes",
    summary = "One note",
    params(
        ("note_id" = uuid::Uuid, Path, description = "The note"),
        ("min_version" = Option<i64>, Query, minimum = 1, description = "Read your writes: wait (bounded) until the projection has applied this version"),
    ),
    responses(
        (status = 200, description = "The note", body = crate::openapi::schemas::Note,
            headers(("ETag" = String, description = "`\"N\"`, the note's version; send it as `If-Match`"))),
        (status = 400, description = "`min_version` is not a version"),
        (status = 404, description = "No such note (or not projected yet), or another user's"),
        (status = 410, description = "The note is deleted"),
        (status = 412, description = "`min_version` was not reached within the wait"),
    ),
)]
async fn get_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(note_id): Path<String>,
    query: Result<Query<NoteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let note_id = parse_note_id(&note_id)?;
    let Query(query) = query.map_err(|err| bad_query("bad-query", "Bad query", err.body_text()))?;
    let note = match parse_min_version(query.min_version.as_deref())? {
        Some(min_version) => note_at_least(&state, note_id, &caller, min_version).await?,
        None => live_note(&state, note_id, &caller).await?,
    };
    let etag = HeaderValue::from_str(&format!("\"{}\"", note.version)).expect("digits are valid");
    Ok((
        [(header::ETAG, etag)],
        Json(note_json(&state.config.auth, &note)),
    )
        .into_response())
}

/// Query of `GET /v1/notes`; every value is checked by hand so each failure names the
/// parameter.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The statuses a note can have, as `?status=` takes them.
const STATUSES: [&str; 3] = ["processing", "published", "failed"];

pub(crate) fn bad_query(slug: &str, title: &str, detail: String) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, slug, title).detail(detail)
}

/// `limit` within `1..=max`, `default` when absent.
pub(crate) fn parse_limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, Problem> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<i64>() {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(bad_query(
            "bad-limit",
            "Bad limit",
            format!("limit must be a whole number from 1 to {max}, not {raw:?}"),
        )),
    }
}

/// The opaque cursor: the last note's sort key, base64url without padding.
fn encode_cursor(cursor: &NoteCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", cursor.updated_at, cursor.note_id))
}

fn decode_cursor(raw: &str) -> Result<NoteCursor, Problem> {
    let bad = || {
        bad_query(
            "bad-cursor",
            "Bad cursor",
            "cursor must be a next_cursor value of an earlier page of this list".into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (updated_at, note_id) = text.split_once('|').ok_or_else(bad)?;
    chrono::DateTime::parse_from_rfc3339(updated_at).map_err(|_| bad())?;
    Ok(NoteCursor {
        updated_at: updated_at.to_owned(),
        note_id: Uuid::parse_str(note_id).map_err(|_| bad())?,
    })
}

/// `GET /v1/notes`: the caller's notes, newest change first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/notes",
    tag = "notes",
    summary = "The caller's notes, a page at a time",
    params(
        ("status" = Option<crate::openapi::schemas::NoteStatus>, Query, description = "Only notes whose latest version has this status"),
        ("limit" = Option<i64>, Query, minimum = 1, description = "Notes per page: 1 to the server's maximum page size (default 100); 20 if absent"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page, unchanged"),
    ),
    responses(
        (status = 200, description = "Most recently changed first; items without `body`", body = crate::openapi::schemas::NotePage),
        (status = 400, description = "A bad `status`, `limit` or `cursor`"),
    ),
)]
async fn list_notes(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|err| bad_query("bad-query", "Bad query", err.body_text()))?;
    if let Some(status) = &query.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(bad_query(
                "bad-status",
                "Unknown note status",
                format!(
                    "status must be one of {}, not {status:?}",
                    STATUSES.join(", ")
                ),
            ));
        }
    }
    let max = state.config.limits.max_page_size;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_PAGE_SIZE.min(max), max)?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = state
        .store
        .notes_page(&NoteListQuery {
            owner: caller.owner,
            status: query.status,
            after,
            limit,
        })
        .await?;
    let items: Vec<Value> = page
        .notes
        .iter()
        .map(|note| note_json(&state.config.auth, note))
        .collect();
    Ok(Json(json!({
        "items": items,
        "next_cursor": page.next.as_ref().map(encode_cursor),
    }))
    .into_response())
}

/// `GET /v1/notes/{id}/audio`: for the owner's token or a signed URL (see
/// [`audio_url`]).
#[utoipa::path(
    get,
    path = "/v1/notes/{note_id}/audio",
    tag = "notes",
    summary = "The published narration (WAV)",
    description = "For the owner's bearer token, or without one through the signed `audio_url` of the note (`expires` and `sig`). `Range` is supported.",
    params(
        ("note_id" = uuid::Uuid, Path, description = "The note"),
        ("expires" = Option<i64>, Query, description = "Of a signed URL: when it expires (Unix seconds)"),
        ("sig" = Option<String>, Query, description = "Of a signed URL: its signature"),
        ("Range" = Option<String>, Header, description = "`bytes=START-END`: part of the audio (206)"),
    ),
    responses(
        (status = 200, description = "The audio", content_type = "audio/wav", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "audio/wav", body = Vec<u8>,
            headers(("Content-Range" = String, description = "`bytes START-END/LENGTH`"))),
        (status = 307, description = "With NOTESAGA_AUDIO_REDIRECT and an S3 audio store: the audio at a presigned URL of the store",
            headers(("Location" = String, description = "The presigned URL"))),
        (status = 403, description = "A signed URL that expired or does not verify"),
        (status = 404, description = "No published narration, no such note, or another user's"),
        (status = 416, description = "The range is not satisfiable (a problem, with `Content-Range: bytes */LENGTH`)",
            headers(("Content-Range" = String, description = "`bytes */LENGTH`"))),
    ),
)]
async fn get_audio(
    State(state): State<AppState>,
    access: AudioAccess,
    Path(note_id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let note_id = parse_note_id(&note_id)?;
    let no_audio = || {
        Problem::new(StatusCode::NOT_FOUND, "audio-not-found", "Audio not found")
            .detail(format!("note {note_id} has no published narration"))
    };
    let note = state.store.note(note_id).await?.ok_or_else(no_audio)?;
    // A signed URL was handed to the owner only; a token must be the owner's.
    let allowed = match &access {
        AudioAccess::SignedUrl => true,
        AudioAccess::Caller(caller) => note.owner == caller.owner,
    };
    if note.deleted_at.is_some() || !allowed {
        return Err(no_audio());
    }
    let key = note
        .published
        .and_then(|p| p.audio_key)
        .ok_or_else(no_audio)?;
    let (parts, _) = request.into_parts();
    crate::audio::serve(&state, &key, &parts.method, &parts.headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_problems_name_the_fields() {
        let fields = |v: Value| match title_and_body(&v) {
            Ok(_) => vec![],
            Err(p) => p.errors.into_iter().map(|e| e.field).collect::<Vec<_>>(),
        };
        assert_eq!(
            fields(json!({"title": "t", "body": "b"})),
            Vec::<String>::new()
        );
        assert_eq!(fields(json!({"body": "b"})), vec!["title"]);
        assert_eq!(fields(json!({"title": 3, "body": ""})), vec!["title"]);
        assert_eq!(fields(json!({"title": "t", "body": ""})), vec!["body"]);
        assert_eq!(
            fields(json!({"title": "x".repeat(201), "body": "b"})),
            vec!["title"]
        );
        assert_eq!(fields(json!([1, 2])), vec!["$"]);
    }
}
