//! `/v1/admin/projections/{name}/replay` and `/v1/admin/jobs/{id}`: projection rebuilds
//! as jobs.
//!
//! The API only queues a job (a row in `projection_jobs`) and reads it back: the rebuild
//! runs inside the projector process, which polls for queued jobs and writes progress
//! there, because in a cluster the two share nothing but the database. The admin role
//! is enforced for all of `/v1/admin/*` by the auth layer, not here.

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use notesaga_projections::{is_projection, Job, QueueError, PROJECTIONS};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{problem::Problem, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/projections/{name}/replay",
            post(replay_projection),
        )
        .route("/v1/admin/jobs/{job_id}", get(get_job))
}

/// The status URL of a job.
fn job_url(job_id: Uuid) -> String {
    format!("/v1/admin/jobs/{job_id}")
}

/// A projection rebuild job (`GET /v1/admin/jobs/{job_id}`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobBody {
    /// The job.
    pub(crate) job_id: Uuid,
    /// The projection it rebuilds.
    pub(crate) projection: String,
    /// `queued` (no projector claimed it yet), `running` (building the shadow copy),
    /// `swapping` (live projection paused, being replaced), `done` or `failed`.
    #[schema(pattern = "^(queued|running|swapping|done|failed)$")]
    pub(crate) state: String,
    /// Records the rebuild has read so far.
    pub(crate) events_applied: i64,
    /// Records in the log when last measured (sum of the high watermarks).
    pub(crate) events_total: i64,
    /// Records read per second since the rebuild started.
    pub(crate) events_per_second: f64,
    /// Records between the rebuild's position and the high watermarks.
    pub(crate) lag: i64,
    /// When the job was queued (RFC 3339).
    pub(crate) created_at: String,
    /// When a projector started it (RFC 3339).
    pub(crate) started_at: Option<String>,
    /// When it ended (RFC 3339).
    pub(crate) finished_at: Option<String>,
    /// Why it failed.
    pub(crate) error: Option<String>,
}

impl From<Job> for JobBody {
    fn from(job: Job) -> Self {
        Self {
            job_id: job.job_id,
            projection: job.projection,
            state: job.state.as_str().to_owned(),
            events_applied: job.events_applied,
            events_total: job.events_total,
            events_per_second: job.events_per_second,
            lag: job.lag,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            error: job.error,
        }
    }
}

fn unknown_projection(name: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "projection-not-found",
        "Projection not found",
    )
    .detail(format!(
        "no projection {name:?}; the projections are: {}",
        PROJECTIONS.join(", ")
    ))
}

fn job_not_found(raw: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "job-not-found", "Job not found")
        .detail(format!("no job {raw:?}"))
}

/// Rebuild a projection while it serves: queues a job that the projector runs.
#[utoipa::path(
    post,
    path = "/v1/admin/projections/{name}/replay",
    tag = "admin",
    params(("name" = String, Path, description = "The projection (`notes`)")),
    responses(
        (status = 202, description = "Queued; `Location` is the job's URL", body = JobBody,
            headers(("Location" = String, description = "`/v1/admin/jobs/{job_id}`"))),
        (status = 404, description = "No such projection"),
        (status = 409, description = "A rebuild of this projection is already queued or running"),
    ),
)]
pub(crate) async fn replay_projection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    if !is_projection(&name) {
        return Err(unknown_projection(&name));
    }
    let job = match state.store.queue_replay(&name).await {
        Ok(job) => job,
        Err(QueueError::AlreadyRunning(_)) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "rebuild-running",
                "Rebuild already running",
            )
            .detail(format!(
                "a rebuild of {name} is already queued or running; watch it or wait for it to end"
            )))
        }
        Err(QueueError::Store(err)) => return Err(err.into()),
    };
    tracing::info!(job_id = %job.job_id, projection = %name, "projection rebuild queued");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, job_url(job.job_id))],
        Json(JobBody::from(job)),
    )
        .into_response())
}

/// A rebuild job's progress.
#[utoipa::path(
    get,
    path = "/v1/admin/jobs/{job_id}",
    tag = "admin",
    params(("job_id" = String, Path, description = "The job")),
    responses(
        (status = 200, description = "The job", body = JobBody),
        (status = 404, description = "No such job"),
    ),
)]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    let job_id = Uuid::parse_str(&raw).map_err(|_| job_not_found(&raw))?;
    let job = state
        .store
        .job(job_id)
        .await?
        .ok_or_else(|| job_not_found(&raw))?;
    Ok(Json(JobBody::from(job)).into_response())
}
