//! Projections against the real broker and real databases (SQLite and PostgreSQL):
//!
//! - a projector SIGKILLed in the middle of a batch (held inside its transaction by the
//!   `projection.batch.pause` fault point) and restarted ends with exactly the rows a
//!   fresh rebuild from offset 0 produces;
//! - a rebuild while commands keep coming: every read during it answers as usual (no
//!   5xx), and the swapped-in projection, once the load settled, equals a fresh rebuild;
//! - `notesaga replay` against a running single node exits 0 once the swap is done.
//!
//! "Equal to a fresh rebuild" is checked by snapshotting every derived table and the
//! projection's offsets, rebuilding (a job the projector runs from offset 0 into a shadow
//! copy, then swaps in), and snapshotting again: the two must match row for row.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};
use futures::future::try_join_all;
use notesaga_events::{
    notes::{CreateNote, NotesCommand},
    topics,
};
use notesaga_log::{AvroCodec, KafkaConfig, Metadata, Publisher};
use notesaga_projections::{shadow::tables, JobState, ReadStore};
use notesaga_testkit::{
    admin_http, queries, run_captured, ChildProcess, Cluster, PostgresDatabase, SingleNode,
};
use sqlx::{Column as _, Row as _};
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(120);

/// Every row of the projection's derived tables and of its offsets, as text, in key
/// order: what two projections must agree on.
async fn snapshot(store: &ReadStore) -> Result<Vec<(String, Vec<Vec<String>>)>> {
    let mut snapshot = Vec::new();
    let mut queries: Vec<(String, String)> = tables("notes")
        .iter()
        .map(|table| {
            (
                (*table).to_owned(),
                format!("SELECT * FROM {table} ORDER BY 1, 2"),
            )
        })
        .collect();
    queries.push((
        "projection_offsets".into(),
        "SELECT topic, partition_id, next_offset FROM projection_offsets \
         WHERE projection = 'notes' ORDER BY 1, 2"
            .into(),
    ));
    for (table, sql) in queries {
        let rows = sqlx::query(&sql).fetch_all(store.pool()).await?;
        let rows = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        let name = row.columns()[i].name().to_owned();
                        let value = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                            format!("{v:?}")
                        } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                            format!("{v:?}")
                        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                            format!("{v:?}")
                        } else {
                            "<undecodable>".to_owned()
                        };
                        format!("{name}={value}")
                    })
                    .collect()
            })
            .collect();
        snapshot.push((table, rows));
    }
    Ok(snapshot)
}

fn rows(snapshot: &[(String, Vec<Vec<String>>)], table: &str) -> usize {
    snapshot
        .iter()
        .find(|(name, _)| name == table)
        .map_or(0, |(_, rows)| rows.len())
}

/// Queues a rebuild straight in the jobs table (as the API does) and waits until the
/// projector has swapped it in.
async fn rebuild(store: &ReadStore) -> Result<()> {
    let job = store.queue_replay("notes").await?;
    wait_job(store, job.job_id).await
}

async fn wait_job(store: &ReadStore, job_id: Uuid) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let job = store.job(job_id).await?.context("the job exists")?;
        match job.state {
            JobState::Done => return Ok(()),
            JobState::Failed => bail!("rebuild failed: {:?}", job.error),
            _ if tokio::time::Instant::now() > deadline => bail!("rebuild did not end: {job:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits until the projection shows `notes` notes and as many command outcomes.
async fn wait_projected(store: &ReadStore, notes: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let count = |table: &'static str| async move {
            let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(store.pool())
                .await?;
            Ok::<_, anyhow::Error>(row.try_get::<i64, _>("n")? as usize)
        };
        let (projected, outcomes) = (count("notes").await?, count("command_outcomes").await?);
        if projected == notes && outcomes == notes {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("projected {projected} notes and {outcomes} outcomes, not {notes}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn send_creates(cluster: &Cluster, count: usize) -> Result<()> {
    let publisher = Publisher::new(
        &KafkaConfig::new(cluster.kafka_addr()),
        Arc::new(AvroCodec::new(&cluster.registry_url)),
    )?;
    try_join_all((0..count).map(|i| {
        let publisher = publisher.clone();
        async move {
            let command_id = Uuid::new_v4();
            let command = NotesCommand::CreateNote(CreateNote {
                note_id: Uuid::new_v4(),
                owner: "local".into(),
                title: format!("Note {i}"),
                body: "Projected exactly once.".into(),
            });
            let metadata = Metadata::new(command_id, "projection-test").with_command(command_id);
            publisher
                .publish(topics::NOTES_COMMANDS, &command, &metadata)
                .await
        }
    }))
    .await?;
    Ok(())
}

fn read_store_url(cluster: &Cluster, postgres: Option<&PostgresDatabase>) -> String {
    match postgres {
        Some(database) => database.url(),
        None => format!(
            "sqlite://{}?mode=rwc",
            cluster.data_dir().join("projections.db").display()
        ),
    }
}

/// A projector logging at `info` into `log`, with static group membership: its restart
/// takes the killed one's place at once (on the tansu broker a crashed group leader is
/// only replaced that way, see docs/field-notes.md).
fn spawn_projector(cluster: &Cluster, log: &std::path::Path) -> Result<ChildProcess> {
    let mut command = cluster.role_command("projector")?;
    command
        .args(["--instance-id", "projector"])
        .env("NOTESAGA_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(log)?);
    ChildProcess::spawn("projector", &mut command)
}

async fn killed_mid_batch(postgres: Option<PostgresDatabase>) -> Result<()> {
    let faults = tempfile::tempdir()?;
    let faults_dir = faults.path().to_str().context("utf-8 path")?.to_owned();
    let url_flag = postgres.as_ref().map(PostgresDatabase::url);
    let storage: Vec<&str> = match &url_flag {
        Some(url) => vec!["--database-url", url],
        None => vec![],
    };
    let cluster = Cluster::start_configured(
        &storage,
        &["notes"],
        &[("NOTESAGA_FAULTS_DIR", faults_dir.as_str())],
    )
    .await?;
    let log = cluster.data_dir().join("projector.log");
    let mut projector = spawn_projector(&cluster, &log)?;
    let store = ReadStore::connect(&read_store_url(&cluster, postgres.as_ref())).await?;

    send_creates(&cluster, 20).await?;
    wait_projected(&store, 20).await?;

    // The next batch stops inside its transaction: rows written, offsets not.
    std::fs::write(faults.path().join("projection.batch.pause"), "600000")?;
    send_creates(&cluster, 20).await?;
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !std::fs::read_to_string(&log)?.contains("fault point: pausing") {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the projector never reached the fault point"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    projector.kill();
    std::fs::remove_file(faults.path().join("projection.batch.pause"))?;
    let _restarted = spawn_projector(&cluster, &cluster.data_dir().join("restarted.log"))?;
    wait_projected(&store, 40).await?;

    let recovered = snapshot(&store).await?;
    rebuild(&store).await?;
    let fresh = snapshot(&store).await?;
    assert_eq!(rows(&fresh, "notes"), 40);
    assert_eq!(
        recovered, fresh,
        "the restarted projector's rows differ from a rebuild from offset 0"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn projector_killed_mid_batch_ends_as_a_fresh_rebuild_on_sqlite() -> Result<()> {
    killed_mid_batch(None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn projector_killed_mid_batch_ends_as_a_fresh_rebuild_on_postgres() -> Result<()> {
    killed_mid_batch(Some(PostgresDatabase::create().await?)).await
}

/// Reads the API the whole time; any answer but the expected ones is an error.
async fn read_continuously(base: String, stop: Arc<AtomicBool>) -> Result<usize> {
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        let list = queries::list(&base, &[("limit", "50")]).await?;
        ensure!(
            list.status == 200,
            "GET /v1/notes answered {}: {}",
            list.status,
            list.body
        );
        if let Some(first) = list.body["items"].get(0) {
            let id = first["note_id"].as_str().context("note_id")?;
            let note = queries::get(&base, &format!("/v1/notes/{id}"), &[]).await?;
            ensure!(
                note.status == 200,
                "GET /v1/notes/{id} answered {}: {}",
                note.status,
                note.body
            );
        }
        reads += 1;
    }
    Ok(reads)
}

async fn rebuild_under_load(postgres: Option<PostgresDatabase>) -> Result<()> {
    let url_flag = postgres.as_ref().map(PostgresDatabase::url);
    let storage: Vec<&str> = match &url_flag {
        Some(url) => vec!["--database-url", url],
        None => vec![],
    };
    let cluster = Cluster::start_roles(&storage, &["notes", "projector", "api"]).await?;
    let base = cluster.http_url.clone();
    let store = ReadStore::connect(&read_store_url(&cluster, postgres.as_ref())).await?;
    let admin = admin_http();

    // Unknown projections are a 404 problem.
    let unknown = admin
        .post(format!("{base}/v1/admin/projections/nope/replay"))
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);

    let mut created = 0;
    for i in 0..30 {
        let answer =
            queries::create(&base, &format!("Before {i}"), "Written before the rebuild.").await?;
        assert_eq!(answer.status, 202, "{}", answer.body);
        created += 1;
    }
    wait_projected(&store, created).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_continuously(base.clone(), stop.clone()));
    let writer = {
        let (base, stop) = (base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                let answer = queries::create(
                    &base,
                    &format!("During {written}"),
                    "Written while rebuilding.",
                )
                .await?;
                ensure!(
                    answer.status == 202,
                    "POST /v1/notes answered {}: {}",
                    answer.status,
                    answer.body
                );
                written += 1;
            }
            Ok::<_, anyhow::Error>(written)
        })
    };

    let started = admin
        .post(format!("{base}/v1/admin/projections/notes/replay"))
        .send()
        .await?;
    assert_eq!(started.status(), 202);
    let location = started
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("Location")?
        .to_owned();
    let job: serde_json::Value = started.json().await?;
    assert_eq!(
        location,
        format!(
            "/v1/admin/jobs/{}",
            job["job_id"].as_str().context("job_id")?
        )
    );
    // A second rebuild of the same projection while the first is unfinished: 409.
    let again = admin
        .post(format!("{base}/v1/admin/projections/notes/replay"))
        .send()
        .await?;
    assert_eq!(again.status(), 409);

    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let answer = admin.get(format!("{base}{location}")).send().await?;
        assert_eq!(answer.status(), 200);
        let job: serde_json::Value = answer.json().await?;
        match job["state"].as_str() {
            Some("done") => break,
            Some("failed") => bail!("the rebuild failed: {job}"),
            Some("queued" | "running" | "swapping") => {}
            other => bail!("unexpected job state {other:?}: {job}"),
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the rebuild did not end: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Keep the load on a little past the swap, then stop it.
    for i in 0..5 {
        let answer =
            queries::create(&base, &format!("After {i}"), "Written after the swap.").await?;
        assert_eq!(answer.status, 202, "{}", answer.body);
        created += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await??;
    let written = writer.await??;
    assert!(reads > 0, "the reader read nothing during the rebuild");
    created += written;

    wait_projected(&store, created).await?;
    let live = snapshot(&store).await?;
    rebuild(&store).await?;
    assert_eq!(
        live,
        snapshot(&store).await?,
        "the projection swapped in under load differs from a fresh rebuild"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_under_load_serves_and_equals_the_live_projection_on_sqlite() -> Result<()> {
    rebuild_under_load(None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_under_load_serves_and_equals_the_live_projection_on_postgres() -> Result<()> {
    rebuild_under_load(Some(PostgresDatabase::create().await?)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_cli_against_a_single_node_exits_after_the_swap() -> Result<()> {
    let data = tempfile::tempdir()?;
    let mut node = SingleNode::start(data.path()).await?;
    let base = node.http_url();
    let answer = queries::create(&base, "Replayed", "Rebuilt by notesaga replay.").await?;
    assert_eq!(answer.status, 202, "{}", answer.body);

    let (status, output) = run_captured(
        notesaga_testkit::notesaga()?
            .args(["replay", "--projection", "notes", "--data-dir"])
            .arg(data.path()),
    )?;
    assert!(status.success(), "notesaga replay failed: {output}");
    assert!(output.contains("rebuilt and swapped in"), "{output}");

    let (status, output) = run_captured(
        notesaga_testkit::notesaga()?
            .args(["replay", "--projection", "nope", "--data-dir"])
            .arg(data.path()),
    )?;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("unknown projection \"nope\""), "{output}");
    node.stop()?;
    Ok(())
}
