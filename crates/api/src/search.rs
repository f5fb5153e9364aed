//! `GET /v1/search?q=&limit=`: semantic search over the published versions of the
//! caller's notes. The query is embedded by the same provider (and so the same model)
//! the embedding processor uses; only vectors of that model are compared.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    caller::Caller,
    notes::parse_limit,
    problem::{FieldProblem, Problem},
    AppState,
};

/// Results unless `limit` says otherwise (the largest is
/// [`crate::Limits::max_page_size`]).
const DEFAULT_RESULTS: i64 = 10;
/// The longest query, in characters: a search, not a document.
const MAX_QUERY_CHARS: usize = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/search", get(search))
}

/// Query of `GET /v1/search`.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    q: Option<String>,
    limit: Option<String>,
}

fn invalid_q(message: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Invalid search",
    )
    .detail(format!("q {message}"))
    .errors(vec![FieldProblem {
        field: "q".into(),
        message: message.into(),
    }])
}

#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "search",
    summary = "Semantic search over the caller's published notes",
    params(
        ("q" = String, Query, min_length = 1, max_length = 1000, description = "What to look for: 1 to 1000 characters, not blank"),
        ("limit" = Option<i64>, Query, minimum = 1, description = "Results: 1 to the maximum (default 50); 10 if absent"),
    ),
    responses(
        (status = 200, description = "Best first", body = crate::openapi::schemas::SearchResults),
        (status = 400, description = "A bad `limit` or query string"),
        (status = 422, description = "`q` is missing, blank or too long"),
        (status = 503, description = "The embedding provider or the read store is unavailable, or the request timed out"),
    ),
)]
async fn search(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|err| {
        Problem::new(StatusCode::BAD_REQUEST, "bad-query", "Bad query").detail(err.body_text())
    })?;
    let text = query.q.as_deref().map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(invalid_q("is required and must not be blank"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(invalid_q(&format!(
            "must be at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let max = state.config.limits.max_page_size;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_RESULTS.min(max), max)?;
    let vector = state
        .embedder
        .embed(text)
        .await
        .map_err(|failed| Problem::unavailable("the embedding provider", &failed.reason))?;
    let results = state
        .store
        .search(
            &caller.owner,
            state.embedder.model(),
            &vector,
            limit as usize,
        )
        .await?;
    Ok(Json(json!({ "results": results })).into_response())
}
