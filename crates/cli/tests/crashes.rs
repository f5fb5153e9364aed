//! Processors under crashes and rebalances, against the real broker: a notes processor
//! SIGKILLed mid-stream and restarted, and two instances sharing the partitions, one
//! taking them all over when the other leaves or is killed mid-stream. Every command ends with exactly one distinct outcome, and every note
//! with exactly one `NoteCreated` (one event id), whatever was redelivered.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Result;
use futures::future::try_join_all;
use notesaga_events::{
    notes::{CreateNote, NotesCommand},
    topics,
};
use notesaga_log::{AvroCodec, KafkaConfig, Metadata, Publisher};
use notesaga_testkit::{read_topic, wait_for_records, Cluster, RawRecord};
use uuid::Uuid;

const COMMANDS: usize = 60;

async fn send_creates(cluster: &Cluster, count: usize) -> Result<Vec<(Uuid, Uuid)>> {
    let publisher = Publisher::new(
        &KafkaConfig::new(cluster.kafka_addr()),
        Arc::new(AvroCodec::new(&cluster.registry_url)),
    )?;
    let ids: Vec<(Uuid, Uuid)> = (0..count)
        .map(|_| (Uuid::new_v4(), Uuid::new_v4()))
        .collect();
    try_join_all(ids.iter().map(|(note_id, command_id)| {
        let publisher = publisher.clone();
        async move {
            let command = NotesCommand::CreateNote(CreateNote {
                note_id: *note_id,
                owner: "local".into(),
                title: "Crash".into(),
                body: "Survives a crash.".into(),
            });
            let metadata = Metadata::new(*command_id, "crash-test").with_command(*command_id);
            publisher
                .publish(topics::NOTES_COMMANDS, &command, &metadata)
                .await
        }
    }))
    .await?;
    Ok(ids)
}

/// Waits until the notes processor has answered at least one command.
async fn first_outcome(cluster: &Cluster) -> Result<()> {
    wait_for_records(
        cluster.kafka_addr(),
        topics::NOTES_OUTCOMES,
        Duration::from_secs(60),
        |r| !r.is_empty(),
    )
    .await?;
    Ok(())
}

fn by_header<'a>(records: &'a [RawRecord], header: &str) -> BTreeMap<String, Vec<&'a RawRecord>> {
    let mut map: BTreeMap<String, Vec<&RawRecord>> = BTreeMap::new();
    for record in records {
        if let Some(value) = record.header(header) {
            map.entry(value.to_owned()).or_default().push(record);
        }
    }
    map
}

/// Every command has an outcome with one distinct id, every note one distinct
/// `NoteCreated`; nothing lost, nothing doubled under another id.
async fn check_exactly_once(cluster: &Cluster, ids: &[(Uuid, Uuid)]) -> Result<()> {
    let wanted: Vec<String> = ids.iter().map(|(_, c)| c.to_string()).collect();
    let outcomes = wait_for_records(
        cluster.kafka_addr(),
        topics::NOTES_OUTCOMES,
        Duration::from_secs(120),
        |records| {
            let seen = by_header(records, "command_id");
            wanted.iter().all(|c| seen.contains_key(c))
        },
    )
    .await?;
    let outcomes = by_header(&outcomes, "command_id");
    for command_id in &wanted {
        let mut distinct: Vec<_> = outcomes[command_id]
            .iter()
            .map(|r| r.header("event_id"))
            .collect();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            1,
            "command {command_id} has {} distinct outcomes",
            distinct.len()
        );
        assert_eq!(
            outcomes[command_id][0].header("event_type"),
            Some("CommandApplied")
        );
    }
    let events = read_topic(cluster.kafka_addr(), topics::NOTES_EVENTS)?;
    for (note_id, _) in ids {
        let key = note_id.to_string().into_bytes();
        let mut created: Vec<_> = events
            .iter()
            .filter(|r| {
                r.key.as_deref() == Some(key.as_slice())
                    && r.header("event_type") == Some("NoteCreated")
            })
            .map(|r| r.header("event_id"))
            .collect();
        assert!(!created.is_empty(), "NoteCreated of {note_id} lost");
        created.sort();
        created.dedup();
        assert_eq!(
            created.len(),
            1,
            "NoteCreated of {note_id} appears under {} ids",
            created.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notes_processor_killed_mid_stream_loses_nothing_and_doubles_nothing() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let ids = send_creates(&cluster, COMMANDS).await?;
    // Kill once some, not all, outcomes are out.
    first_outcome(&cluster).await?;
    cluster.kill_role("notes");
    let more = send_creates(&cluster, COMMANDS / 2).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.start_role("notes")?;
    check_exactly_once(&cluster, &[ids, more].concat()).await
}

/// Partitions the instance logging to `log` was last assigned, if any assignment yet.
/// (tansu 0.6 fails DescribeGroups, so the group is observed through the member's log.)
fn last_assignment(log: &std::path::Path) -> Result<Option<usize>> {
    let text = std::fs::read_to_string(log)?;
    Ok(text
        .lines()
        .filter_map(|line| line.split("partitions assigned partitions=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_partitions_and_one_takes_over_when_the_other_leaves() -> Result<()>
{
    let others: Vec<&str> = notesaga_testkit::ROLES
        .into_iter()
        .filter(|r| *r != "notes")
        .collect();
    let mut cluster = Cluster::start_roles(&[], &others).await?;
    let first = cluster.start_role_logged("notes", "notes-1")?;
    wait_for_assignment(&first, |n| n == 3).await?;
    let second = cluster.start_role_logged("notes", "notes-2")?;
    // Of 3 partitions, each member of the group gets 1 or 2: they share them.
    wait_for_assignment(&second, |n| n == 1 || n == 2).await?;
    wait_for_assignment(&first, |n| n == 1 || n == 2).await?;

    let ids = send_creates(&cluster, COMMANDS).await?;
    first_outcome(&cluster).await?;
    // The member leaves the way an operator scales down: SIGTERM, finish, commit, leave.
    cluster.stop_role("notes-2")?;
    let more = send_creates(&cluster, COMMANDS / 2).await?;
    wait_for_assignment(&first, |n| n == 3).await?;
    check_exactly_once(&cluster, &[ids, more].concat()).await
}

/// As Apache Kafka does, the broker expires a SIGKILLed dynamic member once its session
/// times out, and the survivor takes its partitions over from the committed offsets.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_partitions_and_one_takes_over_when_the_other_is_killed(
) -> Result<()> {
    let others: Vec<&str> = notesaga_testkit::ROLES
        .into_iter()
        .filter(|r| *r != "notes")
        .collect();
    let mut cluster = Cluster::start_roles(&[], &others).await?;
    let first = cluster.start_role_logged("notes", "notes-1")?;
    wait_for_assignment(&first, |n| n == 3).await?;
    let second = cluster.start_role_logged("notes", "notes-2")?;
    wait_for_assignment(&second, |n| n == 1 || n == 2).await?;
    wait_for_assignment(&first, |n| n == 1 || n == 2).await?;

    let ids = send_creates(&cluster, COMMANDS).await?;
    first_outcome(&cluster).await?;
    cluster.kill_role("notes-2");
    let more = send_creates(&cluster, COMMANDS / 2).await?;
    wait_for_assignment(&first, |n| n == 3).await?;
    check_exactly_once(&cluster, &[ids, more].concat()).await
}

async fn wait_for_assignment(log: &std::path::Path, ok: impl Fn(usize) -> bool) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let last = last_assignment(log)?;
        if last.is_some_and(&ok) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{} last assigned {last:?}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
