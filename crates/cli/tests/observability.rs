//! What operators watch, on a running single node (`notesaga dev`): `GET /metrics`
//! exposes the HTTP latency histogram labelled by route template and status, and the
//! consumer lag of the groups per topic and partition; `/openapi.json` is public.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use notesaga_testkit::{client, openapi, SingleNode};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn metrics_expose_http_latency_by_route_and_consumer_lag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = SingleNode::start(dir.path()).await?;
    let base = node.http_url();
    let (status, created) = client::create(&base, "Measured", "Latency and lag.").await?;
    assert_eq!(status, 202, "{created}");
    let note_id = created["note_id"].as_str().unwrap_or_default().to_owned();
    client::wait_published(&base, &note_id, 1, WAIT).await?;

    // The lag gauges follow librdkafka's statistics, a report every few seconds: poll
    // until both families are there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let response = reqwest::get(format!("{base}/metrics")).await?;
        let (status, _, body) = openapi::checked(&base, "GET", response).await?;
        assert_eq!(status, 200, "/metrics is public");
        let text = String::from_utf8(body)?;
        let lags = [
            r#"notesaga_consumer_lag{group="notesaga.notes",topic="notes.commands",partition=""#,
            r#"notesaga_consumer_lag{group="notesaga.projector.notes",topic=""#,
        ];
        if lags.iter().all(|lag| text.contains(lag)) {
            break text;
        }
        if Instant::now() > deadline {
            bail!("no consumer lag in /metrics:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The template, never the note's id.
    for expected in [
        r#"notesaga_http_request_duration_seconds_bucket{method="POST",route="/v1/notes",status="202""#,
        r#"notesaga_http_request_duration_seconds_bucket{method="GET",route="/v1/notes/{note_id}",status="200""#,
        "notesaga_projection_applied_total{",
        // The note's create went through a group commit of accepted commands.
        "notesaga_accepted_commands_total ",
        "notesaga_accepted_command_groups_total ",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(
        !text.contains(&note_id),
        "a note id became a label:\n{text}"
    );
    node.stop()
}
