//! Rebuild jobs: the `projection_jobs` table the API and the projector share.
//!
//! The API queues a job ([`ReadStore::queue_replay`]); a projector running that projection
//! claims it ([`ReadStore::claim_job`]), reports progress while it rebuilds
//! ([`ReadStore::job_progress`]) and finishes it ([`ReadStore::finish_job`]). The API and
//! the projector are separate processes in a cluster and share only the database, so the
//! job lives in it rather than in either process.

use chrono::{Duration as ChronoDuration, Utc};
use serde::Serialize;
use sqlx::Row as _;
use uuid::Uuid;

use crate::{ReadStore, Result};

/// What a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a projector to claim it.
    Queued,
    /// Building the shadow copy from offset 0.
    Running,
    /// The shadow caught up; the live projection is paused and being replaced.
    Swapping,
    /// The live projection is the rebuilt one.
    Done,
    /// Stopped; `error` says why. The live projection is unchanged.
    Failed,
}

impl JobState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Swapping => "swapping",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// The state named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Swapping,
            Self::Done,
            Self::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }

    /// Whether the job ended (`done` or `failed`).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// A rebuild job as `GET /v1/admin/jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// The job.
    pub job_id: Uuid,
    /// The projection it rebuilds.
    pub projection: String,
    /// Where it is.
    pub state: JobState,
    /// Records the rebuild has read (applied or skipped as duplicates).
    pub events_applied: i64,
    /// Records in the log when last measured (the sum of the high watermarks).
    pub events_total: i64,
    /// Records read per second since the rebuild started.
    pub events_per_second: f64,
    /// Records between the rebuild's position and the high watermarks.
    pub lag: i64,
    /// When it was queued (RFC 3339).
    pub created_at: String,
    /// When a projector claimed it.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Progress of a running job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Records read so far.
    pub applied: i64,
    /// Records in the log.
    pub total: i64,
    /// Read rate.
    pub per_second: f64,
    /// Records still to read.
    pub lag: i64,
}

/// Why a job could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A rebuild of this projection is queued or running.
    #[error("a rebuild of {0} is already queued or running")]
    AlreadyRunning(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// A job whose projector has not written for this long is taken for dead.
pub const HEARTBEAT_TIMEOUT: ChronoDuration = ChronoDuration::seconds(30);

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const JOB_COLUMNS: &str = "job_id, projection, state, events_applied, events_total, \
     events_per_second, lag, created_at, started_at, finished_at, error";

fn job(row: &sqlx::any::AnyRow) -> Result<Job> {
    let id: String = row.try_get("job_id")?;
    let state: String = row.try_get("state")?;
    let decode = |what: String| sqlx::Error::Decode(what.into());
    Ok(Job {
        job_id: Uuid::parse_str(&id).map_err(|err| decode(err.to_string()))?,
        projection: row.try_get("projection")?,
        state: JobState::from_name(&state).ok_or_else(|| decode(format!("job state {state}")))?,
        events_applied: row.try_get("events_applied")?,
        events_total: row.try_get("events_total")?,
        events_per_second: row.try_get("events_per_second")?,
        lag: row.try_get("lag")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
    })
}

impl ReadStore {
    /// Queues a rebuild of `projection` (the caller checked the name). Fails with
    /// [`QueueError::AlreadyRunning`] while another rebuild of it is unfinished.
    pub async fn queue_replay(&self, projection: &str) -> Result<Job, QueueError> {
        self.fail_abandoned_jobs().await?;
        let job_id = Uuid::new_v4();
        let inserted = sqlx::query(
            "INSERT INTO projection_jobs (job_id, projection, state, created_at) \
             VALUES ($1, $2, 'queued', $3)",
        )
        .bind(job_id.to_string())
        .bind(projection.to_owned())
        .bind(now())
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                return Err(QueueError::AlreadyRunning(projection.to_owned()))
            }
            Err(err) => return Err(crate::Error::from(err).into()),
        }
        Ok(self.job(job_id).await?.expect("the job was inserted above"))
    }

    /// One job.
    pub async fn job(&self, job_id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM projection_jobs WHERE job_id = $1"
        ))
        .bind(job_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(job).transpose()
    }

    /// Claims the oldest queued job of `projection`, if there is one: it becomes
    /// `running`. Two projectors racing for it: the conditional update lets one win.
    pub async fn claim_job(&self, projection: &str) -> Result<Option<Job>> {
        self.fail_abandoned_jobs().await?;
        let queued = sqlx::query(
            "SELECT job_id FROM projection_jobs WHERE projection = $1 AND state = 'queued' \
             ORDER BY created_at LIMIT 1",
        )
        .bind(projection.to_owned())
        .fetch_optional(self.pool())
        .await?;
        let Some(queued) = queued else {
            return Ok(None);
        };
        let job_id: String = queued.try_get("job_id")?;
        let at = now();
        let claimed = sqlx::query(
            "UPDATE projection_jobs SET state = 'running', started_at = $1, heartbeat_at = $2 \
             WHERE job_id = $3 AND state = 'queued'",
        )
        .bind(at.clone())
        .bind(at)
        .bind(job_id.clone())
        .execute(self.pool())
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        let job_id = Uuid::parse_str(&job_id).map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
        self.job(job_id).await
    }

    /// Records progress (and the heartbeat) of a running job, and its state.
    pub async fn job_progress(
        &self,
        job_id: Uuid,
        state: JobState,
        progress: Progress,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE projection_jobs SET state = $1, events_applied = $2, events_total = $3, \
             events_per_second = $4, lag = $5, heartbeat_at = $6 WHERE job_id = $7",
        )
        .bind(state.as_str())
        .bind(progress.applied)
        .bind(progress.total)
        .bind(progress.per_second)
        .bind(progress.lag)
        .bind(now())
        .bind(job_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a job: `done` without an error, else `failed` with it.
    pub async fn finish_job(&self, job_id: Uuid, error: Option<&str>) -> Result<()> {
        let state = if error.is_some() {
            JobState::Failed
        } else {
            JobState::Done
        };
        sqlx::query(
            "UPDATE projection_jobs SET state = $1, error = $2, finished_at = $3 \
             WHERE job_id = $4",
        )
        .bind(state.as_str())
        .bind(error.map(str::to_owned))
        .bind(now())
        .bind(job_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Fails the running jobs whose projector stopped writing (it crashed or was
    /// killed): otherwise they would block every later rebuild of their projection.
    async fn fail_abandoned_jobs(&self) -> Result<()> {
        let cutoff =
            (Utc::now() - HEARTBEAT_TIMEOUT).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        sqlx::query(
            "UPDATE projection_jobs SET state = 'failed', finished_at = $1, \
             error = 'the projector running the rebuild stopped' \
             WHERE state IN ('running', 'swapping') AND heartbeat_at < $2",
        )
        .bind(now())
        .bind(cutoff)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_finish() {
        for (state, finished) in [
            (JobState::Queued, false),
            (JobState::Running, false),
            (JobState::Swapping, false),
            (JobState::Done, true),
            (JobState::Failed, true),
        ] {
            assert_eq!(JobState::from_name(state.as_str()), Some(state));
            assert_eq!(state.is_finished(), finished);
        }
        assert_eq!(JobState::from_name("paused"), None);
    }
}
