//! Read-your-writes: waiting, bounded, for the read store to catch up.
//!
//! `Prefer: wait=N` (RFC 7240) on a command waits for its outcome
//! ([`outcome_reply`] maps it to a response); `?min_version=N` on a note waits for the
//! projection to reach version N. Both poll the read store (a primary-key read) with a
//! short, growing interval; the projector may run in another process, so there is no
//! in-process signal to wait on. Every wait is capped by [`crate::Limits::max_wait`].

use std::{future::Future, time::Duration};

use axum::http::{header, HeaderMap, StatusCode};
use notesaga_projections::{CommandState, CommandView};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::{commands::command_json, problem::Problem, reply::Reply};

/// First poll interval: most outcomes arrive within a few tens of milliseconds.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// Longest poll interval: the latency a waiter adds at most, and the store reads one
/// waiter costs at least (20 a second).
const LONGEST_POLL: Duration = Duration::from_millis(50);

/// The seconds of the `wait` preference of `headers`, if any (RFC 7240: every `Prefer`
/// header, preferences separated by commas, names case-insensitive, values optionally
/// quoted; a preference that does not parse is ignored, as the RFC asks).
pub(crate) fn prefer_wait(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| {
            // Parameters after `;` do not change what `wait` means.
            let preference = preference.split(';').next().unwrap_or_default();
            let (name, value) = preference.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })
}

/// The wait to honour: the preference capped at `max`.
pub(crate) fn capped(seconds: u64, max: Duration) -> Duration {
    Duration::from_secs(seconds).min(max)
}

/// `Preference-Applied: wait=N` for a wait of `wait` (whole seconds, rounded down).
pub(crate) fn preference_applied(wait: Duration) -> (String, String) {
    (
        "preference-applied".to_owned(),
        format!("wait={}", wait.as_secs()),
    )
}

/// Calls `probe` until it yields a value or `wait` has passed (then it is called one
/// last time, so a value that arrived during the last interval is not missed).
pub(crate) async fn poll<T, F, Fut>(wait: Duration, mut probe: F) -> Result<Option<T>, Problem>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Problem>>,
{
    let deadline = Instant::now() + wait;
    let mut interval = FIRST_POLL;
    loop {
        if let Some(value) = probe().await? {
            return Ok(Some(value));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(LONGEST_POLL);
    }
}

/// The problem of a rejected command, by the aggregate's rejection code
/// (`notesaga_notes::aggregate::RejectionCode`): the status a synchronous API would have
/// answered. The body names the command and carries the rejection as the status
/// document does.
pub(crate) fn rejection_problem(command: &CommandView, code: &str, message: &str) -> Problem {
    let (status, slug, title) = match code {
        "validation_failed" => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid note",
        ),
        // Unknown or another user's note: the same answer, as everywhere.
        "not_found" => (StatusCode::NOT_FOUND, "note-not-found", "Note not found"),
        "version_conflict" => (
            StatusCode::PRECONDITION_FAILED,
            "version-conflict",
            "Version conflict",
        ),
        "note_deleted" => (StatusCode::GONE, "note-deleted", "Note deleted"),
        // `already_exists`, `not_latest_version` and codes added later: the command
        // conflicts with the note's state.
        _ => (StatusCode::CONFLICT, "command-rejected", "Command rejected"),
    };
    Problem::new(status, slug, title)
        .detail(format!(
            "command {} was rejected: {message}",
            command.command_id
        ))
        .extension("command_id", json!(command.command_id))
        .extension("note_id", json!(command.note_id))
        .extension("rejection", json!({"code": code, "message": message}))
}

/// The response to a command whose outcome is known: 201 (a created note, `Location`
/// the note) or 200, the command status document as body and `ETag` the version it
/// produced; or the rejection's problem. `None` while it is pending.
pub(crate) fn outcome_reply(command: &CommandView, created: bool) -> Option<Reply> {
    match &command.state {
        CommandState::Pending => None,
        CommandState::Applied { version, .. } => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut reply = Reply::json(status, &command_json(command));
            if created {
                reply = reply.header(header::LOCATION, &note_url(command.note_id));
            }
            if let Some(version) = version {
                reply = reply.header(header::ETAG, &format!("\"{version}\""));
            }
            Some(reply)
        }
        CommandState::Rejected { code, message, .. } => {
            Some(Reply::problem(&rejection_problem(command, code, message)))
        }
    }
}

/// Where a note is.
pub(crate) fn note_url(note_id: Uuid) -> String {
    format!("/v1/notes/{note_id}")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn prefer(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).expect("valid"));
        }
        headers
    }

    #[test]
    fn wait_preferences() {
        let table: [(&[&str], Option<u64>); 9] = [
            (&[], None),
            (&["wait=5"], Some(5)),
            (&["WAIT = 7"], Some(7)),
            (&["respond-async, wait=3"], Some(3)),
            (&["return=minimal", "wait=\"2\""], Some(2)),
            (&["wait=4;foo=bar"], Some(4)),
            (&["wait=-1"], None),
            (&["wait=soon"], None),
            (&["waiting=3"], None),
        ];
        for (values, expected) in table {
            assert_eq!(prefer_wait(&prefer(values)), expected, "{values:?}");
        }
        assert_eq!(capped(60, Duration::from_secs(10)), Duration::from_secs(10));
        assert_eq!(capped(3, Duration::from_secs(10)), Duration::from_secs(3));
    }

    fn command(state: CommandState) -> CommandView {
        CommandView {
            command_id: Uuid::from_u128(1),
            note_id: Uuid::from_u128(2),
            owner: "ann".into(),
            command_type: "EditNote".into(),
            accepted_at: "2026-01-01T00:00:00.000Z".into(),
            state,
        }
    }

    #[test]
    fn outcomes_map_to_statuses() {
        let rejected = |code: &str| {
            command(CommandState::Rejected {
                code: code.into(),
                message: "m".into(),
                at: "2026-01-01T00:00:01.000Z".into(),
            })
        };
        let applied = command(CommandState::Applied {
            version: Some(4),
            at: "2026-01-01T00:00:01.000Z".into(),
        });
        // (command, a create?, status)
        let table = [
            (applied.clone(), true, 201),
            (applied, false, 200),
            (rejected("validation_failed"), false, 422),
            (rejected("not_found"), false, 404),
            (rejected("version_conflict"), false, 412),
            (rejected("note_deleted"), false, 410),
            (rejected("already_exists"), true, 409),
            (rejected("not_latest_version"), false, 409),
            (rejected("something_new"), false, 409),
        ];
        for (command, created, status) in table {
            let reply = outcome_reply(&command, created).expect("an outcome");
            assert_eq!(reply.status.as_u16(), status, "{:?}", command.state);
        }
        assert!(outcome_reply(&command(CommandState::Pending), true).is_none());
    }

    #[test]
    fn created_points_at_the_note_with_its_version() {
        let reply = outcome_reply(
            &command(CommandState::Applied {
                version: Some(1),
                at: "2026-01-01T00:00:01.000Z".into(),
            }),
            true,
        )
        .expect("applied");
        let header = |name: &str| {
            reply
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("location"), Some(note_url(Uuid::from_u128(2))));
        assert_eq!(header("etag").as_deref(), Some("\"1\""));
        let body: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
        assert_eq!(body["status"], "applied");
        assert_eq!(body["version"], 1);
    }

    #[tokio::test]
    async fn polls_until_a_value_or_the_wait_is_over() {
        let mut calls = 0;
        let found = poll(Duration::from_secs(10), || {
            calls += 1;
            let n = calls;
            async move { Ok(Some(n).filter(|n| *n == 3)) }
        })
        .await
        .expect("no error");
        assert_eq!(found, Some(3));
        let mut probes = 0;
        let never: Option<()> = poll(Duration::from_millis(100), || {
            probes += 1;
            async { Ok(None) }
        })
        .await
        .expect("no error");
        assert_eq!(never, None);
        // Probed more than once, and again at the end.
        assert!(probes >= 2, "{probes}");
    }
}
