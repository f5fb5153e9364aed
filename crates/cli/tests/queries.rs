//! The query side end to end, every role a separate process against one broker: the
//! note list pages by cursor, a command's status goes from pending (the notes processor
//! is down) to applied, a stale `If-Match` ends rejected with its code, search finds the
//! right note first and forgets a deleted one, and `/readyz` sees every dependency.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use notesaga_testkit::{client, queries, Cluster};
use serde_json::Value;

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(90);
const OUTCOME_TIMEOUT: Duration = Duration::from_secs(60);

/// The note id and command id of a 202, checking that `Location` is the command's
/// status URL.
fn accepted(answer: &queries::Answer) -> Result<(String, String)> {
    ensure!(answer.status == 202, "expected 202: {answer:?}");
    let note_id = answer.body["note_id"].as_str().context("note_id")?;
    let command_id = answer.body["command_id"].as_str().context("command_id")?;
    ensure!(
        answer.location.as_deref() == Some(&format!("/v1/commands/{command_id}")),
        "Location of {answer:?}"
    );
    Ok((note_id.to_owned(), command_id.to_owned()))
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| item["note_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_command_status_search_and_readiness() -> Result<()> {
    let mut cluster = Cluster::start().await?;
    let base = cluster.http_url.clone();
    let base = base.as_str();

    let ready = queries::readyz(base).await?;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.body["status"], "ready");
    for check in ["database", "broker", "registry"] {
        assert_eq!(ready.body["checks"][check], "ok", "{check}: {ready:?}");
    }

    // With the notes processor down a command stays pending: the API recorded it, no
    // outcome exists yet, and the note itself is not projected.
    cluster.stop_role("notes")?;
    let (cells, create_cells) = accepted(
        &queries::create(
            base,
            "Cell biology",
            "The mitochondria is the powerhouse of the cell.",
        )
        .await?,
    )?;
    let pending = queries::command(base, &create_cells).await?;
    assert_eq!(pending.status, 200, "{pending:?}");
    assert_eq!(pending.body["status"], "pending");
    assert_eq!(pending.body["note_id"], cells.as_str());
    assert_eq!(pending.body["command_type"], "CreateNote");
    assert_eq!(client::get(base, &cells).await?.0, 404);
    cluster.start_role("notes")?;
    let applied = queries::wait_command(base, &create_cells, OUTCOME_TIMEOUT).await?;
    assert_eq!(applied["status"], "applied", "{applied}");
    assert_eq!(applied["version"], 1);
    assert!(applied["rejection"].is_null(), "{applied}");

    let (trains, _) = accepted(
        &queries::create(
            base,
            "Railways",
            "Steam trains crossed the country in the nineteenth century.",
        )
        .await?,
    )?;
    let (rome, _) = accepted(
        &queries::create(base, "Roman history", "Julius Caesar crossed the Rubicon.").await?,
    )?;
    for id in [&cells, &trains, &rome] {
        client::wait_published(base, id, 1, PUBLISH_TIMEOUT).await?;
    }

    // Two pages of two: every note exactly once, newest change first, no bodies.
    let first = queries::list(base, &[("limit", "2")]).await?;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(2));
    let cursor = first.body["next_cursor"]
        .as_str()
        .context("a second page")?;
    let second = queries::list(base, &[("limit", "2"), ("cursor", cursor)]).await?;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body["items"].as_array().map(Vec::len), Some(1));
    assert!(second.body["next_cursor"].is_null(), "{second:?}");
    let walked = [
        first.body["items"].as_array().cloned().unwrap_or_default(),
        second.body["items"].as_array().cloned().unwrap_or_default(),
    ]
    .concat();
    let mut listed = ids(&walked);
    let order: Vec<(String, String)> = walked
        .iter()
        .map(|n| {
            (
                n["updated_at"].as_str().unwrap_or_default().to_owned(),
                n["note_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] > w[1]),
        "newest first: {order:?}"
    );
    assert!(walked.iter().all(|n| n.get("body").is_none()), "{walked:?}");
    listed.sort();
    let mut expected = vec![cells.clone(), trains.clone(), rome.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let published = queries::list_all(base, 100, Some("published")).await?;
    assert_eq!(published.len(), 3);
    let failed = queries::list(base, &[("status", "failed")]).await?;
    assert_eq!(failed.body["items"], serde_json::json!([]));
    let bad = queries::list(base, &[("status", "archived")]).await?;
    assert_eq!(bad.status, 400, "{bad:?}");

    // A stale version: accepted (202), then rejected by the aggregate.
    let (_, stale) =
        accepted(&queries::edit_if_match(base, &cells, "Cell biology", "Ribosomes.", 7).await?)?;
    let rejected = queries::wait_command(base, &stale, OUTCOME_TIMEOUT).await?;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(rejected["command_type"], "EditNote");
    assert_eq!(
        rejected["rejection"]["code"], "version_conflict",
        "{rejected}"
    );
    assert!(rejected["version"].is_null(), "{rejected}");
    let unknown = queries::command(base, &uuid::Uuid::new_v4().to_string()).await?;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    let found = queries::search(base, "cell biology", None).await?;
    assert_eq!(found.status, 200, "{found:?}");
    let results = found.body["results"].as_array().context("results")?;
    assert_eq!(results[0]["note_id"], cells.as_str(), "{found:?}");
    assert_eq!(results[0]["title"], "Cell biology");
    assert_eq!(results[0]["version"], 1);
    let trains_found = queries::search(base, "steam trains", Some(1)).await?;
    assert_eq!(
        ids(trains_found.body["results"].as_array().context("results")?),
        vec![trains.clone()]
    );
    let blank = queries::search(base, "  ", None).await?;
    assert_eq!(blank.status, 422, "{blank:?}");

    // A deleted note leaves the list and the search results.
    let (_, delete) = accepted(&queries::delete(base, &trains).await?)?;
    assert_eq!(
        queries::wait_command(base, &delete, OUTCOME_TIMEOUT).await?["status"],
        "applied"
    );
    client::wait_note(base, &trains, OUTCOME_TIMEOUT, |status, _| status == 410).await?;
    assert!(!ids(&queries::list_all(base, 2, None).await?).contains(&trains));
    let gone = queries::search(base, "steam trains", None).await?;
    assert!(
        !ids(gone.body["results"].as_array().context("results")?).contains(&trains),
        "{gone:?}"
    );

    cluster.assert_consistent(Duration::from_secs(60))?;
    Ok(())
}

/// Issue 14, defect 1: a client that edits or deletes right after it created must not
/// get 404 because the read model lags. Here no projector runs until the end, so the
/// read model never knows the note while the commands arrive: the owner's edit and
/// delete are accepted and applied in order after the create, a stale `If-Match` is
/// accepted and the aggregate's rejection shows in its status, and another user's
/// command on the note stays 404.
#[tokio::test(flavor = "multi_thread")]
async fn commands_right_after_a_create_are_accepted_before_the_read_model_has_the_note(
) -> Result<()> {
    let mut cluster = Cluster::start_roles(&[], &["notes", "api"]).await?;
    let base = cluster.http_url.clone();
    let base = base.as_str();

    let (note, create) = accepted(&queries::create(base, "Mitosis", "Prophase first.").await?)?;
    let read = queries::get(base, &format!("/v1/notes/{note}"), &[]).await?;
    assert_eq!(
        read.status, 404,
        "the read model must not know it yet: {read:?}"
    );

    let (_, edit) = accepted(
        &queries::edit_if_match(base, &note, "Mitosis", "Prophase, then metaphase.", 1).await?,
    )?;
    let (_, stale) =
        accepted(&queries::edit_if_match(base, &note, "Mitosis", "A stale edit.", 1).await?)?;

    // Another user: the same note is as unknown as a missing one.
    let mallory = notesaga_testkit::http_as("mallory", false);
    let theirs = mallory
        .put(format!("{base}/v1/notes/{note}"))
        .json(&serde_json::json!({"title": "Mine", "body": "Now."}))
        .send()
        .await?;
    assert_eq!(theirs.status().as_u16(), 404);
    let theirs = mallory
        .delete(format!("{base}/v1/notes/{note}"))
        .send()
        .await?;
    assert_eq!(theirs.status().as_u16(), 404);

    let (_, delete) = accepted(&queries::delete(base, &note).await?)?;

    // The projector catches up: every command has its outcome, in the order sent.
    cluster.start_role("projector")?;
    let created = queries::wait_command(base, &create, OUTCOME_TIMEOUT).await?;
    assert_eq!(created["status"], "applied", "{created}");
    assert_eq!(created["version"], 1, "{created}");
    let edited = queries::wait_command(base, &edit, OUTCOME_TIMEOUT).await?;
    assert_eq!(edited["status"], "applied", "{edited}");
    assert_eq!(edited["version"], 2, "{edited}");
    let refused = queries::wait_command(base, &stale, OUTCOME_TIMEOUT).await?;
    assert_eq!(refused["status"], "rejected", "{refused}");
    assert_eq!(
        refused["rejection"]["code"], "version_conflict",
        "{refused}"
    );
    let deleted = queries::wait_command(base, &delete, OUTCOME_TIMEOUT).await?;
    assert_eq!(deleted["status"], "applied", "{deleted}");
    client::wait_note(base, &note, OUTCOME_TIMEOUT, |status, _| status == 410).await?;
    Ok(())
}
