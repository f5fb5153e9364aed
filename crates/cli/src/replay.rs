//! `notesaga replay`: rebuilds projections while they serve, as a client of the admin
//! API (`POST /v1/admin/projections/{name}/replay`, then `GET /v1/admin/jobs/{id}` until
//! the job ends), drawing a progress bar (events/s, lag, ETA) on the terminal.
//!
//! The API is found like `notesaga saga` finds it: `--api`, else the `node.json` of
//! `--data-dir`, whose secret then also signs the admin token unless `--token` gives one.
//! Exit 0: every rebuild was swapped in; 1: the API refused or a job failed (its error is
//! printed); 2: the API cannot be found or reached.

use std::{process::ExitCode, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::{
    admin_client::{self, AdminClient, Failure},
    args::ReplayArgs,
};

/// How often a job's progress is read.
const POLL: Duration = Duration::from_millis(300);
/// A job still queued after this long gets a hint that no projector may be running.
const QUEUED_HINT_AFTER: Duration = Duration::from_secs(10);
/// Reads of a job that may fail in a row (the API restarting) before giving up.
const MAX_POLL_FAILURES: u32 = 20;

/// What a 401 or 403 answer adds: the admin endpoints want an admin token.
const TOKEN_HINT: &str = "pass an admin token with --token / NOTESAGA_TOKEN";

/// A job as `GET /v1/admin/jobs/{id}` shows it (the fields the command uses).
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Job {
    job_id: String,
    projection: String,
    state: String,
    events_applied: i64,
    events_total: i64,
    events_per_second: f64,
    lag: i64,
    error: Option<String>,
}

/// The projections to rebuild: `--projection NAME` (checked against the registry, so a
/// typo is a clear error before anything is sent) or `--all`.
fn chosen(args: &ReplayArgs) -> Result<Vec<String>, Failure> {
    let known = notesaga_projections::PROJECTIONS;
    match (&args.projection, args.all) {
        (_, true) => Ok(known.iter().map(|name| (*name).to_owned()).collect()),
        (Some(name), false) if notesaga_projections::is_projection(name) => Ok(vec![name.clone()]),
        (Some(name), false) => Err(Failure::Refused(format!(
            "unknown projection {name:?}; the projections are: {}",
            known.join(", ")
        ))),
        (None, false) => Err(Failure::Refused(
            "say which projection: --projection NAME or --all".into(),
        )),
    }
}

/// Runs `notesaga replay`; the exit code says how it went.
pub(crate) async fn run(args: ReplayArgs) -> ExitCode {
    match execute(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("notesaga replay: {failure}");
            failure.exit_code()
        }
    }
}

async fn execute(args: &ReplayArgs) -> Result<(), Failure> {
    let projections = chosen(args)?;
    let api = Api::new(args)?;
    // One after the other: each rebuild reads the whole log, and they share the machine.
    for projection in projections {
        let job = api.start(&projection).await?;
        let job = api.watch(job).await?;
        println!(
            "{}: rebuilt and swapped in ({} events, {:.0} events/s; job {})",
            job.projection, job.events_applied, job.events_per_second, job.job_id
        );
    }
    Ok(())
}

/// The bar's message: where the job is, its rate and lag.
fn progress_message(job: &Job) -> String {
    format!(
        "{} · {:.0} events/s · lag {}",
        job.state, job.events_per_second, job.lag
    )
}

/// The line a refused request prints.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    admin_client::refusal(status, body, TOKEN_HINT)
}

/// The replay commands' view of the admin client.
#[derive(Debug)]
struct Api(AdminClient);

impl Api {
    fn new(args: &ReplayArgs) -> Result<Self, Failure> {
        AdminClient::new(args.api.as_deref(), &args.data_dir, args.token.as_deref()).map(Self)
    }

    /// Sends one request; a 2xx answer's job, else the API's refusal.
    async fn job(&self, method: Method, url: Url) -> Result<Job, Failure> {
        let answer = self.0.send(method, url).await?;
        if !answer.status.is_success() {
            return Err(Failure::Refused(refusal(answer.status, &answer.body)));
        }
        serde_json::from_slice(&answer.body).map_err(|err| {
            Failure::Unreachable(format!(
                "the API at {} answered something that is not a job ({err}); is it notesaga's API?",
                self.0.base()
            ))
        })
    }

    async fn start(&self, projection: &str) -> Result<Job, Failure> {
        let url = self
            .0
            .url(&["v1", "admin", "projections", projection, "replay"]);
        self.job(Method::POST, url).await
    }

    /// Follows `job` until it ends, drawing its progress; the finished job if it was
    /// swapped in, its error otherwise.
    async fn watch(&self, mut job: Job) -> Result<Job, Failure> {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {pos}/{len} events · {msg} · ETA {eta}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(job.projection.clone());
        let url = self.0.url(&["v1", "admin", "jobs", &job.job_id]);
        let started = tokio::time::Instant::now();
        let mut hinted = false;
        let mut failures = 0;
        loop {
            bar.set_length(job.events_total.max(0) as u64);
            bar.set_position(job.events_applied.max(0) as u64);
            bar.set_message(progress_message(&job));
            match job.state.as_str() {
                "done" => {
                    bar.finish_and_clear();
                    return Ok(job);
                }
                "failed" => {
                    bar.abandon();
                    return Err(Failure::Refused(format!(
                        "the rebuild of {} failed: {}",
                        job.projection,
                        job.error.as_deref().unwrap_or("no reason given")
                    )));
                }
                "queued" if !hinted && started.elapsed() > QUEUED_HINT_AFTER => {
                    hinted = true;
                    bar.println(format!(
                        "job {} is still queued: no projector has claimed it yet (is `notesaga projector` running against this database?)",
                        job.job_id
                    ));
                }
                _ => {}
            }
            tokio::time::sleep(POLL).await;
            match self.job(Method::GET, url.clone()).await {
                Ok(next) => {
                    failures = 0;
                    job = next;
                }
                Err(failure @ Failure::Refused(_)) => {
                    bar.abandon();
                    return Err(failure);
                }
                Err(failure) => {
                    failures += 1;
                    if failures >= MAX_POLL_FAILURES {
                        bar.abandon();
                        return Err(failure);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(projection: Option<&str>, all: bool) -> ReplayArgs {
        ReplayArgs {
            projection: projection.map(str::to_owned),
            all,
            api: Some("http://127.0.0.1:9".into()),
            data_dir: "./data".into(),
            token: None,
        }
    }

    #[test]
    fn replay_chooses_known_projections() {
        assert_eq!(
            chosen(&args(Some("notes"), false)),
            Ok(vec!["notes".into()])
        );
        assert_eq!(chosen(&args(None, true)), Ok(vec!["notes".into()]));
        let Err(Failure::Refused(message)) = chosen(&args(Some("nope"), false)) else {
            panic!("an unknown projection is refused");
        };
        assert!(
            message.contains("\"nope\"") && message.contains("notes"),
            "{message}"
        );
        assert!(chosen(&args(None, false)).is_err());
    }

    #[test]
    fn replay_refusal_lines() {
        for (status, body, line) in [
            (
                StatusCode::CONFLICT,
                r#"{"title":"Rebuild already running","detail":"a rebuild of notes is already queued or running"}"#,
                "409 Rebuild already running: a rebuild of notes is already queued or running",
            ),
            (StatusCode::NOT_FOUND, r#"{"title":"Projection not found"}"#, "404 Projection not found"),
            (StatusCode::BAD_GATEWAY, "upstream down", "502 Bad Gateway: upstream down"),
            (
                StatusCode::FORBIDDEN,
                r#"{"title":"Forbidden","detail":"the admin role is required"}"#,
                "403 Forbidden: the admin role is required (pass an admin token with --token / NOTESAGA_TOKEN)",
            ),
        ] {
            assert_eq!(refusal(status, body.as_bytes()), line);
        }
    }

    #[test]
    fn replay_progress_message() {
        let job = Job {
            job_id: "j".into(),
            projection: "notes".into(),
            state: "running".into(),
            events_applied: 10,
            events_total: 20,
            events_per_second: 1234.4,
            lag: 10,
            error: None,
        };
        assert_eq!(progress_message(&job), "running · 1234 events/s · lag 10");
    }
}
