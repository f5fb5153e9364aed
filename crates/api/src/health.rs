//! `GET /readyz`: whether this API process can do its work — the read store answers a
//! query, the broker answers a metadata request, the registry lists its subjects — each
//! within a short timeout, all three at once.

use std::time::Duration;

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Map, Value};

use crate::{problem::Problem, AppState};

/// One probe's verdict, logging the cause of a failure (the client sees only `failed`).
fn verdict<E: std::fmt::Display>(
    what: &str,
    result: Result<Result<(), E>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> &'static str {
    match result {
        Ok(Ok(())) => "ok",
        Ok(Err(err)) => {
            tracing::warn!(check = what, error = %err, "readiness check failed");
            "failed"
        }
        Err(_) => {
            tracing::warn!(check = what, ?timeout, "readiness check timed out");
            "failed"
        }
    }
}

async fn registry(state: &AppState) -> Result<(), String> {
    let url = format!("{}/subjects", state.publisher.codec().registry_url());
    let response = state
        .http
        .get(&url)
        .send()
        .await
        .map_err(|err| err.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("GET {url} answered {}", response.status()))
    }
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Whether this process can reach the read store, the broker and the registry",
    responses(
        (status = 200, description = "Ready", body = crate::openapi::schemas::Readiness),
        (status = 503, description = "Not ready: a problem whose `checks` member names each dependency's verdict"),
    ),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let timeout = state.config.readiness_timeout;
    let (database, broker, registry) = tokio::join!(
        tokio::time::timeout(timeout, state.store.ping()),
        // The metadata call gets the same bound; the outer one guards the blocking pool.
        tokio::time::timeout(timeout, state.publisher.check_broker(timeout)),
        tokio::time::timeout(timeout, registry(&state)),
    );
    let checks = [
        ("database", verdict("database", database, timeout)),
        ("broker", verdict("broker", broker, timeout)),
        ("registry", verdict("registry", registry, timeout)),
    ];
    let failing: Vec<&str> = checks
        .iter()
        .filter(|(_, v)| *v != "ok")
        .map(|(name, _)| *name)
        .collect();
    let checks: Map<String, Value> = checks
        .iter()
        .map(|(name, v)| ((*name).to_owned(), json!(v)))
        .collect();
    if failing.is_empty() {
        return Json(json!({"status": "ready", "checks": checks})).into_response();
    }
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready")
        .detail(format!("unreachable: {}", failing.join(", ")))
        .extension("checks", Value::Object(checks))
        .into_response()
}
