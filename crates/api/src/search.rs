//! `GET /v1/search?q=&mode=&limit=`: search over the published versions of the caller's
//! notes, by keyword, by meaning (semantic) or both fused (hybrid, the default); see
//! `notesaga_projections::search`. The query is embedded by the same provider (and so
//! the same model) the embedding processor uses; only vectors of that model are
//! compared. A keyword search embeds nothing.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use notesaga_projections::{Fusion, SearchMode, SearchQuery as Search};
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
    mode: Option<String>,
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

fn invalid_mode(name: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Invalid search",
    )
    .detail(format!(
        "mode {name:?} is not one of hybrid, semantic, keyword"
    ))
    .errors(vec![FieldProblem {
        field: "mode".into(),
        message: "must be one of hybrid, semantic, keyword".into(),
    }])
}

#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "search",
    summary = "Search the caller's published notes by keyword, by meaning, or both",
    description = "Only the published version of each note is searched, and deleted notes never. \
        `score` depends on `mode`: `semantic`, the cosine similarity of the query's and the note's \
        vectors (by the configured model); `keyword`, the full-text relevance (BM25 on SQLite, \
        `ts_rank_cd` on PostgreSQL) divided by the best match's, so 1 for the best; `hybrid`, \
        the weighted sum of the semantic score min-max normalised over the candidates and the \
        keyword score (relevance over the best match's) times the square of the share of the \
        query's content words the note holds, 0 to 1. \
        `matched_by` says which rankings found a note.",
    params(
        ("q" = String, Query, min_length = 1, max_length = 1000, description = "What to look for: 1 to 1000 characters, not blank"),
        ("mode" = inline(Option<crate::openapi::schemas::SearchModeName>), Query, description = "`hybrid` (default), `semantic` or `keyword`"),
        ("limit" = Option<i64>, Query, minimum = 1, description = "Results: 1 to the maximum (default 50); 10 if absent"),
    ),
    responses(
        (status = 200, description = "Best first", body = crate::openapi::schemas::SearchResults),
        (status = 400, description = "A bad `limit` or query string"),
        (status = 422, description = "`q` is missing, blank or too long, or `mode` is unknown"),
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
    let mode = match query.mode.as_deref() {
        None => SearchMode::default(),
        Some(name) => SearchMode::parse(name).ok_or_else(|| invalid_mode(name))?,
    };
    let max = state.config.limits.max_page_size;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_RESULTS.min(max), max)?;
    let vector =
        match mode {
            SearchMode::Keyword => None,
            SearchMode::Hybrid | SearchMode::Semantic => {
                Some(state.embedder.embed(text).await.map_err(|failed| {
                    Problem::unavailable("the embedding provider", &failed.reason)
                })?)
            }
        };
    let results = state
        .store
        .find(&Search {
            owner: &caller.owner,
            text,
            model: state.embedder.model(),
            vector: vector.as_deref(),
            mode,
            limit: limit as usize,
            fusion: Fusion::default(),
        })
        .await?;
    Ok(Json(json!({ "results": results })).into_response())
}
