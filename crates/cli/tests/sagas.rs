//! The note-pipeline saga end to end (issue 4): every role its own process on one real
//! broker, failures driven through the fault points the test build compiles in
//! (`notesaga_log::faults`, files under `NOTESAGA_FAULTS_DIR`), short saga deadlines
//! and backoffs through the orchestrator's `NOTESAGA_SAGA_*` settings, and
//! `notesaga check` after every scenario.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{ensure, Context as _, Result};
use notesaga_testkit::{client, read_topic, Cluster, ROLES};
use serde_json::Value;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(120);

/// Short deadlines and backoffs so failures play out in seconds.
const FAST_SAGAS: [(&str, &str); 8] = [
    ("NOTESAGA_SAGA_NARRATION_DEADLINE_MS", "1500"),
    ("NOTESAGA_SAGA_NARRATION_DEADLINE_PER_KB_MS", "0"),
    ("NOTESAGA_SAGA_OTHER_DEADLINE_MS", "3000"),
    ("NOTESAGA_SAGA_MAX_RESENDS", "1"),
    ("NOTESAGA_SAGA_MAX_ATTEMPTS", "2"),
    ("NOTESAGA_SAGA_MAX_COMPENSATION_ATTEMPTS", "5"),
    ("NOTESAGA_SAGA_BACKOFF_MS", "200"),
    ("NOTESAGA_SAGA_BACKOFF_MAX_MS", "500"),
];

/// A cluster whose roles read their fault points from `faults`.
async fn cluster(faults: &Path, extra: &[(&str, &str)]) -> Result<Cluster> {
    let dir = faults.to_str().context("utf-8 path")?;
    let mut env: Vec<(&str, &str)> = FAST_SAGAS.to_vec();
    env.push(("NOTESAGA_FAULTS_DIR", dir));
    env.extend_from_slice(extra);
    Cluster::start_configured(&[], &ROLES, &env).await
}

fn fault(faults: &Path, point: &str, value: &str) -> Result<()> {
    std::fs::write(faults.join(point), value).context("write fault file")
}

async fn create(cluster: &Cluster, title: &str) -> Result<String> {
    let (status, body) =
        client::create(&cluster.http_url, title, "A body worth narrating.").await?;
    ensure!(status == 202, "create: {status} {body}");
    Ok(body["note_id"].as_str().context("note_id")?.to_owned())
}

fn states(sagas: &[Value]) -> BTreeMap<i64, String> {
    sagas
        .iter()
        .filter(|s| s["kind"] == "publish")
        .map(|s| {
            (
                s["version"].as_i64().unwrap_or(-1),
                s["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn key_of(record: &notesaga_testkit::RawRecord) -> String {
    String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned()
}

fn audio_files(cluster: &Cluster, note_id: &str) -> usize {
    let dir = cluster
        .data_dir()
        .join("audio")
        .join("narrations")
        .join(note_id);
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn narration_failing_for_good_compensates_the_embedding_and_fails_the_version() -> Result<()>
{
    let faults = TempDir::new()?;
    fault(faults.path(), "narration.render", "always")?;
    let cluster = cluster(faults.path(), &[]).await?;
    let note_id = create(&cluster, "Doomed").await?;

    let (_, note) = client::wait_note(&cluster.http_url, &note_id, WAIT, |status, note| {
        status == 200 && note["status"] == "failed"
    })
    .await?;
    let reason = note["failure_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("narration"),
        "failure_reason names the step: {note}"
    );
    assert!(note["published_version"].is_null(), "{note}");

    let sagas = client::note_sagas(&cluster.http_url, &note_id).await?;
    assert_eq!(states(&sagas)[&1], "compensated", "{sagas:#?}");
    let saga_id = sagas[0]["saga_id"].as_str().context("saga id")?;
    let (status, saga) =
        client::get_json(&cluster.http_url, &format!("/v1/sagas/{saga_id}")).await?;
    assert_eq!(status, 200);
    let timeline: Vec<String> = saga["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap_or(""),
                e["step"].as_str().unwrap_or("")
            )
        })
        .collect();
    // Two narration attempts (the budget), then the compensations in reverse order.
    let position = |entry: &str| timeline.iter().position(|e| e == entry);
    assert!(
        timeline
            .iter()
            .filter(|e| *e == "StepRequested narration")
            .count()
            == 2,
        "{timeline:#?}"
    );
    let narration_undone =
        position("CompensationRequested delete_narration").context("delete narration")?;
    let embedding_undone =
        position("CompensationRequested delete_embedding").context("delete embedding")?;
    assert!(
        narration_undone < embedding_undone,
        "reverse order: {timeline:#?}"
    );
    assert_eq!(
        timeline.last().map(String::as_str),
        Some("SagaCompensated ")
    );

    let (status, _) =
        client::get_json(&cluster.http_url, &format!("/v1/notes/{note_id}/audio")).await?;
    assert_eq!(status, 404);
    assert_eq!(audio_files(&cluster, &note_id), 0);
    cluster.assert_consistent(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_narration_passes_its_deadline_is_retried_then_compensated() -> Result<()> {
    let faults = TempDir::new()?;
    // Every narration command hangs 5 s: past the 1.5 s deadline and its re-send.
    fault(faults.path(), "narration.render.pause", "5000")?;
    let cluster = cluster(faults.path(), &[]).await?;
    let note_id = create(&cluster, "Slow").await?;

    let sagas = client::wait_sagas(&cluster.http_url, &note_id, WAIT, |sagas| {
        states(sagas).get(&1).is_some_and(|s| s == "compensated")
    })
    .await?;
    let saga_id = sagas[0]["saga_id"].as_str().context("saga id")?;
    let (_, saga) = client::get_json(&cluster.http_url, &format!("/v1/sagas/{saga_id}")).await?;
    let events: Vec<&str> = saga["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(events.contains(&"DeadlinePassed"), "{events:?}");
    assert!(events.contains(&"StepRetried"), "{events:?}");
    assert!(events.contains(&"SagaCompensated"), "{events:?}");
    // MarkNoteVersionFailed follows SagaCompensated.
    client::wait_note(&cluster.http_url, &note_id, WAIT, |status, note| {
        status == 200 && note["status"] == "failed"
    })
    .await?;

    // The hung renders finish after the saga gave up; their audio must not survive:
    // the compensation is queued behind them on the same partition.
    std::fs::remove_file(faults.path().join("narration.render.pause"))?;
    cluster.assert_consistent(Duration::from_secs(60))?;
    assert_eq!(audio_files(&cluster, &note_id), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compensation_failing_three_times_then_succeeding_ends_compensated() -> Result<()> {
    let faults = TempDir::new()?;
    fault(faults.path(), "narration.render", "always")?;
    fault(faults.path(), "embedding.delete", "3")?;
    let cluster = cluster(faults.path(), &[]).await?;
    let note_id = create(&cluster, "Stubborn").await?;
    let sagas = client::wait_sagas(&cluster.http_url, &note_id, WAIT, |sagas| {
        states(sagas).get(&1).is_some_and(|s| s == "compensated")
    })
    .await?;
    let saga_id = sagas[0]["saga_id"].as_str().context("saga id")?;
    let (_, saga) = client::get_json(&cluster.http_url, &format!("/v1/sagas/{saga_id}")).await?;
    let failed_deletes = saga["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .filter(|e| e["event"] == "StepFailed" && e["step"] == "delete_embedding")
        .count();
    assert_eq!(failed_deletes, 3, "{saga:#}");
    cluster.assert_consistent(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compensation_failing_for_ever_parks_until_an_operator_retries_it() -> Result<()> {
    let faults = TempDir::new()?;
    fault(faults.path(), "narration.render", "always")?;
    fault(faults.path(), "embedding.delete", "always")?;
    let cluster = cluster(faults.path(), &[]).await?;
    let note_id = create(&cluster, "Parked").await?;
    let sagas = client::wait_sagas(&cluster.http_url, &note_id, WAIT, |sagas| {
        states(sagas)
            .get(&1)
            .is_some_and(|s| s == "compensation_failed")
    })
    .await?;
    let saga_id = sagas[0]["saga_id"].as_str().context("saga id")?.to_owned();

    // Visible to operators: the CLI lists it, and a retry before the fix parks it again.
    let (status, listing) = cluster.saga_cli(&["list", "--state", "compensation_failed"])?;
    assert!(status.success(), "{listing}");
    assert!(listing.contains(&saga_id), "{listing}");
    let (clean, report) = cluster.check(Duration::from_secs(0))?;
    assert!(clean, "a parked saga is visible, not a violation: {report}");

    // The operator fixes the cause and retries through the running system.
    std::fs::remove_file(faults.path().join("embedding.delete"))?;
    let (status, output) = cluster.saga_cli(&["retry", &saga_id])?;
    assert!(status.success(), "{output}");
    client::wait_sagas(&cluster.http_url, &note_id, WAIT, |sagas| {
        states(sagas).get(&1).is_some_and(|s| s == "compensated")
    })
    .await?;
    let (status, output) = cluster.saga_cli(&["retry", &saga_id])?;
    assert!(
        !status.success(),
        "only a parked saga can be retried: {output}"
    );
    cluster.assert_consistent(Duration::from_secs(30))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_edits_publish_only_the_last_version_and_leave_nothing_behind() -> Result<()> {
    let faults = TempDir::new()?;
    let cluster = cluster(faults.path(), &[]).await?;
    let note_id = create(&cluster, "Draft 1").await?;
    // Edits need the note to exist for the API (its read model); then a burst.
    client::wait_note(&cluster.http_url, &note_id, WAIT, |status, _| status == 200).await?;
    for n in 2..=10 {
        let (status, body) = client::edit(
            &cluster.http_url,
            &note_id,
            &format!("Draft {n}"),
            "Edited in a burst.",
        )
        .await?;
        ensure!(status == 202, "edit {n}: {status} {body}");
    }
    let note = client::wait_published(&cluster.http_url, &note_id, 10, WAIT).await?;
    assert_eq!(note["title"], "Draft 10");
    let sagas = client::wait_sagas(&cluster.http_url, &note_id, WAIT, |sagas| {
        let states = states(sagas);
        states.len() == 10
            && states
                .values()
                .all(|s| s == "completed" || s == "superseded")
    })
    .await?;
    let states = states(&sagas);
    assert_eq!(states[&10], "completed", "{states:?}");
    cluster.assert_consistent(Duration::from_secs(30))?;
    assert_eq!(
        audio_files(&cluster, &note_id),
        1,
        "only the published version's audio"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_note_mid_saga_removes_everything() -> Result<()> {
    let faults = TempDir::new()?;
    // Keep the saga in flight long enough to delete in the middle of it.
    fault(faults.path(), "narration.render.pause", "1000")?;
    let cluster = cluster(
        faults.path(),
        &[("NOTESAGA_SAGA_NARRATION_DEADLINE_MS", "20000")],
    )
    .await?;
    let published = create(&cluster, "Published then deleted").await?;
    let note_id = create(&cluster, "Deleted mid-flight").await?;
    client::wait_sagas(&cluster.http_url, &note_id, WAIT, |sagas| {
        sagas.iter().any(|s| s["step"] == "narration")
    })
    .await?;
    let (status, body) = client::delete(&cluster.http_url, &note_id).await?;
    assert_eq!(status, 202, "{body}");
    client::wait_published(&cluster.http_url, &published, 1, WAIT).await?;
    let (status, body) = client::delete(&cluster.http_url, &published).await?;
    assert_eq!(status, 202, "{body}");

    for id in [&note_id, &published] {
        let (status, _) =
            client::wait_note(&cluster.http_url, id, WAIT, |status, _| status == 410).await?;
        assert_eq!(status, 410);
        let sagas = client::wait_sagas(&cluster.http_url, id, WAIT, |sagas| {
            sagas
                .iter()
                .any(|s| s["kind"] == "cleanup" && s["state"] == "completed")
                && sagas
                    .iter()
                    .all(|s| s["state"] != "running" && s["state"] != "compensating")
        })
        .await?;
        assert!(!sagas.is_empty());
        let (status, _) =
            client::get_json(&cluster.http_url, &format!("/v1/notes/{id}/audio")).await?;
        assert_eq!(status, 404);
    }
    std::fs::remove_file(faults.path().join("narration.render.pause"))?;
    cluster.assert_consistent(Duration::from_secs(60))?;
    assert_eq!(audio_files(&cluster, &note_id), 0);
    assert_eq!(audio_files(&cluster, &published), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orchestrator_killed_mid_sagas_finishes_every_saga_exactly_once() -> Result<()> {
    let faults = TempDir::new()?;
    // Deadlines far beyond the crash: this test is about the orchestrator's restart, and
    // with the fast deadlines a loaded machine legitimately gives up on a slow attempt
    // and starts a second one (a second command id, so a second reply), which the
    // assertions below would take for a step that ran twice.
    let patient = [
        ("NOTESAGA_SAGA_NARRATION_DEADLINE_MS", "30000"),
        ("NOTESAGA_SAGA_OTHER_DEADLINE_MS", "30000"),
    ];
    let mut cluster = cluster(faults.path(), &patient).await?;
    let mut notes = Vec::new();
    for n in 0..12 {
        notes.push(create(&cluster, &format!("Crash {n}")).await?);
    }
    // Kill it once some sagas have started and before all have finished.
    client::wait_sagas(&cluster.http_url, &notes[0], WAIT, |sagas| {
        !sagas.is_empty()
    })
    .await?;
    cluster.kill_role("orchestrator");
    for n in 12..20 {
        notes.push(create(&cluster, &format!("Crash {n}")).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_role("orchestrator")?;
    for id in &notes {
        if let Err(err) = client::wait_published(&cluster.http_url, id, 1, WAIT).await {
            let sagas = client::note_sagas(&cluster.http_url, id).await?;
            let mut timelines = Vec::new();
            for saga in &sagas {
                let path = format!("/v1/sagas/{}", saga["saga_id"].as_str().unwrap_or(""));
                timelines.push(client::get_json(&cluster.http_url, &path).await?.1);
            }
            anyhow::bail!("{err:#}; sagas: {timelines:#?}");
        }
    }
    cluster.assert_consistent(Duration::from_secs(30))?;

    // Read the log itself: one SagaCompleted (one event id) per saga, one reply id per
    // step, whatever was re-sent after the restart.
    let saga_log = read_topic(cluster.kafka_addr(), "saga.note-pipeline")?;
    let mut completed: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for record in saga_log
        .iter()
        .filter(|r| r.header("event_type") == Some("SagaCompleted"))
    {
        completed
            .entry(key_of(record))
            .or_default()
            .insert(record.header("event_id").unwrap_or_default().to_owned());
    }
    assert_eq!(completed.len(), notes.len(), "every note's saga completed");
    assert!(
        completed.values().all(|ids| ids.len() == 1),
        "{completed:#?}"
    );
    for topic in ["embedding.events", "narration.events"] {
        let mut replies: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for record in read_topic(cluster.kafka_addr(), topic)? {
            replies
                .entry(key_of(&record))
                .or_default()
                .insert(record.header("event_id").unwrap_or_default().to_owned());
        }
        assert_eq!(replies.len(), notes.len(), "{topic}");
        assert!(
            replies.values().all(|ids| ids.len() == 1),
            "{topic}: a step ran twice with a visible effect: {replies:#?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_in_its_own_process_serves_its_metrics() -> Result<()> {
    let faults = TempDir::new()?;
    let roles: Vec<&str> = ROLES
        .iter()
        .copied()
        .filter(|r| *r != "orchestrator")
        .collect();
    let dir = faults.path().to_str().context("utf-8 path")?;
    let cluster = Cluster::start_configured(&[], &roles, &[("NOTESAGA_FAULTS_DIR", dir)]).await?;
    let metrics_addr = notesaga_testkit::free_addr();
    let mut command = cluster.role_command("orchestrator")?;
    command.args(["--metrics-addr", &metrics_addr]);
    let _orchestrator = notesaga_testkit::ChildProcess::spawn("orchestrator", &mut command)?;
    let note_id = create(&cluster, "Measured").await?;
    client::wait_published(&cluster.http_url, &note_id, 1, WAIT).await?;
    // The saga gauges are refreshed on the orchestrator's tick.
    let mut text = String::new();
    for _ in 0..50 {
        text = reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await?
            .text()
            .await?;
        if text.contains("notesaga_sagas{state=\"completed\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for expected in [
        "notesaga_records_total{group=\"notesaga.orchestrator\"",
        "notesaga_handle_seconds_bucket{group=\"notesaga.orchestrator\"",
        "notesaga_saga_events_total{type=\"SagaCompleted\"}",
        "notesaga_sagas{state=\"completed\"} 1",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saga_without_progress_is_reported_stuck_once_then_recovers() -> Result<()> {
    let faults = TempDir::new()?;
    // Narration takes 6 s, well within its 30 s deadline but past the 2 s stall limit.
    fault(faults.path(), "narration.render.pause", "6000")?;
    let cluster = cluster(
        faults.path(),
        &[
            ("NOTESAGA_SAGA_NARRATION_DEADLINE_MS", "30000"),
            ("NOTESAGA_SAGA_STUCK_AFTER_MS", "2000"),
        ],
    )
    .await?;
    let note_id = create(&cluster, "Pondering").await?;
    let sagas = client::wait_sagas(&cluster.http_url, &note_id, WAIT, |sagas| {
        sagas.iter().any(|s| s["stuck"] == true)
    })
    .await?;
    let saga_id = sagas[0]["saga_id"].as_str().context("saga id")?.to_owned();
    let (status, stuck) = client::get_json(&cluster.http_url, "/v1/sagas?stuck=true").await?;
    assert_eq!(status, 200);
    assert!(stuck["sagas"]
        .as_array()
        .context("sagas")?
        .iter()
        .any(|s| s["saga_id"] == saga_id.as_str()));

    client::wait_published(&cluster.http_url, &note_id, 1, WAIT).await?;
    let (_, saga) = client::get_json(&cluster.http_url, &format!("/v1/sagas/{saga_id}")).await?;
    assert_eq!(saga["stuck"], false, "progress clears the flag: {saga:#}");
    let reports = saga["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .filter(|e| e["event"] == "SagaStuck")
        .count();
    assert_eq!(reports, 1, "reported once per stall: {saga:#}");
    Ok(())
}
