//! `/v1/sagas`: the saga timeline read model, and the operator's retry of a parked saga.

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use notesaga_events::{
    now_millis,
    saga::{SagaEvent, SagaRetryRequested},
    topics::SAGA_NOTE_PIPELINE,
};
use notesaga_log::Metadata;
use notesaga_projections::{SagaFilter, SagaView};
use notesaga_sagas::note_pipeline::{Status, ALL_STATUSES};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::{
    caller::Caller,
    notes::{bad_query, owned_note, parse_limit, parse_note_id, request_id},
    problem::Problem,
    AppState,
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sagas", get(list_sagas))
        .route("/v1/sagas/{saga_id}", get(get_saga))
        .route("/v1/notes/{note_id}/sagas", get(note_sagas))
        .route("/v1/admin/sagas/{saga_id}/retry", post(retry_saga))
}

/// Query of `GET /v1/sagas`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
    stuck: Option<bool>,
    limit: Option<String>,
}

fn parse_saga_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| {
        Problem::new(StatusCode::NOT_FOUND, "saga-not-found", "Saga not found")
            .detail(format!("{raw:?} is not a saga id"))
    })
}

fn saga_not_found(saga_id: Uuid) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "saga-not-found", "Saga not found")
        .detail(format!("no saga {saga_id}"))
}

#[utoipa::path(
    get,
    path = "/v1/sagas",
    tag = "sagas",
    summary = "Sagas, most recently changed first",
    description = "The sagas of the caller's notes; with the `admin` role, every user's.",
    params(
        ("state" = Option<crate::openapi::schemas::SagaState>, Query, description = "Only sagas in this state"),
        ("stuck" = Option<bool>, Query, description = "Only sagas that made no progress for the configured time"),
        ("limit" = Option<i64>, Query, minimum = 1, description = "How many: 1 to the maximum; 100 if absent"),
    ),
    responses(
        (status = 200, description = "The sagas", body = crate::openapi::schemas::SagaList),
        (status = 400, description = "A bad `state`, `stuck` or `limit`"),
    ),
)]
async fn list_sagas(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|err| bad_query("bad-query", "Bad query", err.body_text()))?;
    if let Some(wanted) = &query.state {
        if Status::from_name(wanted).is_none() {
            let known: Vec<&str> = ALL_STATUSES.iter().map(|s| s.as_str()).collect();
            return Err(bad_query(
                "bad-state",
                "Unknown saga state",
                format!("state must be one of {}, not {wanted:?}", known.join(", ")),
            ));
        }
    }
    // As many as fit a page unless `limit` says otherwise.
    let max = state.config.limits.max_page_size;
    let limit = parse_limit(query.limit.as_deref(), max, max)?;
    let filter = SagaFilter {
        state: query.state,
        stuck: query.stuck.unwrap_or(false),
        note_id: None,
        // A user sees the sagas of their own notes; an operator sees everyone's.
        owner: (!caller.admin).then_some(caller.owner),
        limit,
    };
    let sagas = state.store.sagas(&filter).await?;
    Ok(Json(json!({ "sagas": sagas })).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/sagas/{saga_id}",
    tag = "sagas",
    summary = "A saga and its timeline",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga")),
    responses(
        (status = 200, description = "The saga and every transition, oldest first", body = crate::openapi::schemas::SagaDetail),
        (status = 404, description = "No such saga, or (without the `admin` role) another user's"),
    ),
)]
async fn get_saga(
    State(state): State<AppState>,
    caller: Caller,
    Path(saga_id): Path<String>,
) -> Result<Response, Problem> {
    let saga_id = parse_saga_id(&saga_id)?;
    let saga = state
        .store
        .saga(saga_id)
        .await?
        .ok_or_else(|| saga_not_found(saga_id))?;
    // Another user's saga is as unknown as a missing one, except to an operator.
    if !caller.admin {
        match state.store.note(saga.note_id).await? {
            Some(note) if note.owner == caller.owner => {}
            _ => return Err(saga_not_found(saga_id)),
        }
    }
    let timeline = state.store.timeline(saga_id).await?;
    let mut body = serde_json::to_value(&saga).map_err(|err| Problem::internal(&err))?;
    body["timeline"] = serde_json::to_value(timeline).map_err(|err| Problem::internal(&err))?;
    Ok(Json(body).into_response())
}

/// A deleted note's sagas stay visible (its cleanup saga among them).
#[utoipa::path(
    get,
    path = "/v1/notes/{note_id}/sagas",
    tag = "sagas",
    summary = "A note's sagas",
    params(("note_id" = uuid::Uuid, Path, description = "The note")),
    responses(
        (status = 200, description = "Its sagas, a deleted note's cleanup saga included", body = crate::openapi::schemas::NoteSagas),
        (status = 404, description = "No such note, or another user's"),
    ),
)]
async fn note_sagas(
    State(state): State<AppState>,
    caller: Caller,
    Path(note_id): Path<String>,
) -> Result<Response, Problem> {
    let note_id = parse_note_id(&note_id)?;
    owned_note(&state, note_id, &caller).await?;
    let filter = SagaFilter {
        note_id: Some(note_id),
        limit: 1000,
        ..SagaFilter::default()
    };
    let sagas: Vec<SagaView> = state.store.sagas(&filter).await?;
    Ok(Json(json!({ "note_id": note_id, "sagas": sagas })).into_response())
}

/// `POST /v1/admin/sagas/{id}/retry`: asks the orchestrator (through
/// `saga.note-pipeline`, which it reads) to try a parked saga's step again with a fresh
/// budget. Only a `compensation_failed` saga can be retried.
#[utoipa::path(
    post,
    path = "/v1/admin/sagas/{saga_id}/retry",
    tag = "admin",
    summary = "Retry a parked (`compensation_failed`) saga",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga")),
    responses(
        (status = 202, description = "Requested: the orchestrator retries the step with a fresh budget", body = crate::openapi::schemas::SagaRetry),
        (status = 404, description = "No such saga"),
        (status = 409, description = "The saga is not `compensation_failed`"),
        (status = 503, description = "The log or the read store is unavailable, or the request timed out"),
    ),
)]
async fn retry_saga(
    State(state): State<AppState>,
    caller: Caller,
    Path(saga_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let saga_id = parse_saga_id(&saga_id)?;
    let saga = state
        .store
        .saga(saga_id)
        .await?
        .ok_or_else(|| saga_not_found(saga_id))?;
    if saga.state != Status::CompensationFailed.as_str() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "saga-not-parked",
            "Saga is not parked",
        )
        .detail(format!(
            "only a compensation_failed saga can be retried; {saga_id} is {}",
            saga.state
        )));
    }
    let request = SagaEvent::SagaRetryRequested(SagaRetryRequested {
        saga_id,
        note_id: saga.note_id,
        version: saga.version,
        requested_by: caller.owner,
        occurred_at: now_millis(),
    });
    let metadata = Metadata::new(Uuid::new_v4(), request_id(&headers));
    state
        .publisher
        .publish(SAGA_NOTE_PIPELINE, &request, &metadata)
        .await
        .map_err(|err| Problem::unavailable("the log", &err))?;
    tracing::info!(%saga_id, note_id = %saga.note_id, "operator retry requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"saga_id": saga_id, "state": saga.state, "retry": "requested"})),
    )
        .into_response())
}
