//! The HTTP API (axum): commands in (`POST`/`PUT`/`DELETE` → `notes.commands`, answered
//! `202` with the command's status URL), queries out (from the read store the
//! projections keep), audio from the narration blob store, and
//! `application/problem+json` for every error.
//!
//! [`router`] builds the whole API from an [`AppState`] so tests drive it with
//! `tower::ServiceExt::oneshot`, without a socket; [`problem`] is the error type. One
//! module per resource: `notes` (commands, one note, lists, audio), `commands`
//! (command status), `search`, `sagas`; `health` is `/readyz`; `caller` is the one
//! place a handler learns whom it acts for; `auth` is the middleware in front of every
//! route that checks bearer tokens, the admin role and signed audio URLs.

mod admin;
mod asyncapi;
mod audio;
pub mod auth;
mod caller;
mod commands;
mod health;
mod idempotency;
mod limits;
mod metrics;
mod notes;
pub mod openapi;
pub mod problem;
mod reply;
mod sagas;
mod search;
mod wait;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::DefaultBodyLimit,
    http::{HeaderName, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use metrics_exporter_prometheus::PrometheusHandle;
use notesaga_blob::Blobs;
use notesaga_embedder::Resilient;
use notesaga_log::Publisher;
use notesaga_projections::ReadStore;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use auth::AuthConfig;
pub use limits::Limits;
pub use problem::Problem;

/// The header carrying the request id, which becomes the correlation id of the command.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Limits of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted (413 beyond it).
    pub body_limit: usize,
    /// How callers are authenticated (bearer tokens, signed audio URLs).
    pub auth: AuthConfig,
    /// How long each `/readyz` check may take before it counts as failed.
    pub readiness_timeout: Duration,
    /// Rate limit, request timeout, page size, waits, idempotency key retention.
    pub limits: Limits,
    /// Answer a note's audio with a redirect (307) to a presigned URL of the object
    /// store instead of streaming it through the API (S3 only; off by default).
    pub audio_redirect: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            // A 100,000-byte body fits even when every byte is JSON-escaped.
            body_limit: 1024 * 1024,
            // No key: every protected route answers 401 until one is configured.
            auth: AuthConfig::default(),
            // Well inside a typical probe period; a dependency slower than this is not
            // one to send traffic through.
            readiness_timeout: Duration::from_secs(2),
            limits: Limits::default(),
            audio_redirect: false,
        }
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Sends commands.
    pub publisher: Publisher,
    /// Reads projections.
    pub store: ReadStore,
    /// Where narrations are stored.
    pub audio: Blobs,
    /// Embeds search queries: the embedding role's provider and model.
    pub embedder: Resilient,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// Limits.
    pub config: Arc<ApiConfig>,
    /// Probes the registry for `/readyz`; one client, so probes reuse connections.
    http: reqwest::Client,
    /// The per-user rate limit's buckets.
    rate_limiter: Arc<limits::RateLimiter>,
    /// When this process last purged expired idempotency keys (Unix ms).
    idempotency_purged_at: Arc<std::sync::atomic::AtomicI64>,
}

impl AppState {
    /// The state of an API without metrics (set [`AppState::metrics`] to serve them).
    pub fn new(
        publisher: Publisher,
        store: ReadStore,
        audio: impl Into<Blobs>,
        embedder: Resilient,
        config: ApiConfig,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.readiness_timeout)
            .build()
            .expect("a plain HTTP client builds");
        let rate_limiter = Arc::new(limits::RateLimiter::new(&config.limits));
        Self {
            publisher,
            store,
            audio: audio.into(),
            embedder,
            metrics: None,
            config: Arc::new(config),
            http,
            rate_limiter,
            idempotency_purged_at: Arc::default(),
        }
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    let request_timeout = state.config.limits.request_timeout;
    Router::new()
        .merge(notes::routes())
        .merge(commands::routes())
        .merge(search::routes())
        .merge(sagas::routes())
        .merge(admin::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/asyncapi.json", get(asyncapi::asyncapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        // Inside the tracing and request-id layers, so a refusal is logged and carries
        // X-Request-Id; around every route and fallback, so no route is left open.
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        // Outside auth and handlers, so whatever is slow answers a problem in time.
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            limits::timeout,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), correlation_id = %request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost, so every answer is timed, refusals of the layers inside included.
        .layer(axum::middleware::from_fn(metrics::track))
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "The process is up",
    responses((status = 200, description = "Up", body = openapi::schemas::Health)),
)]
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (text exposition format)",
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain", body = String),
        (status = 404, description = "Metrics are not enabled in this process"),
    ),
)]
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail("metrics are not enabled in this process")
            .into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
        .detail(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .detail(format!("{method} is not allowed on {}", uri.path()))
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
