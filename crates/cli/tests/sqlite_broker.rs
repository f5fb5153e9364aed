//! tansu's SQLite storage engine stays selectable (`NOTESAGA_BROKER_STORAGE=sqlite`);
//! since the native engine became the default, this smoke test is what CI runs on it: a
//! single node on SQLite publishes a note and its edit, and refuses, naming the flag, to
//! start the native engine on that data directory.

use std::time::Duration;

use anyhow::{Context as _, Result};
use notesaga_testkit::{client, SingleNode};

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_on_tansus_sqlite_engine_publishes_notes() -> Result<()> {
    // The broker process `notesaga dev` starts inherits the variable. Each test runs in a
    // process of its own under nextest, so this touches no other test.
    std::env::set_var("NOTESAGA_BROKER_STORAGE", "sqlite");
    let data = tempfile::tempdir()?;
    let mut node = SingleNode::start(data.path()).await?;
    let base = node.http_url();
    let (status, created) = client::create(&base, "Tides", "The moon pulls the oceans.").await?;
    assert_eq!(status, 202, "{created}");
    let id = created["note_id"].as_str().context("note_id")?.to_owned();
    client::wait_published(&base, &id, 1, Duration::from_secs(120)).await?;
    let (status, edited) =
        client::edit(&base, &id, "Tides", "The moon and the sun pull the oceans.").await?;
    assert_eq!(status, 202, "{edited}");
    client::wait_published(&base, &id, 2, Duration::from_secs(120)).await?;
    assert!(
        data.path().join("broker").join("broker.db").exists(),
        "the log is tansu's SQLite database"
    );
    assert!(!data.path().join("broker").join("native").exists());
    node.stop()?;

    // The native engine will not serve an empty log beside this one.
    let output = std::process::Command::new(notesaga_testkit::bin("notesaga-broker")?)
        .arg("--data-dir")
        .arg(data.path().join("broker"))
        .args([
            "--kafka-addr",
            &notesaga_testkit::free_addr(),
            "--storage",
            "native",
        ])
        .env_remove("NOTESAGA_BROKER_STORAGE")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--storage sqlite"), "{stderr}");
    Ok(())
}
