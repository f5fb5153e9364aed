//! Debian's kcat (librdkafka 2.0.2) against the real `notesaga-broker`, with its default
//! settings (ApiVersions requested): metadata, produce, and consume from the beginning
//! with keys and headers as JSON.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
    time::Duration,
};

use anyhow::{ensure, Context, Result};
use notesaga_testkit::{random_name, BrokerProcess};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use serde_json::Value;

/// Runs kcat with `args` (bounded by `timeout`), feeding it `stdin`.
fn kcat(broker: &str, args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = Command::new("timeout")
        .args(["60", "kcat", "-b", broker])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run kcat (apt-get install kcat)")?;
    child
        .stdin
        .take()
        .context("kcat stdin")?
        .write_all(stdin.as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "kcat {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

#[test]
fn kcat_lists_produces_and_consumes_with_keys_and_headers() -> Result<()> {
    let broker = BrokerProcess::start()?;
    let topic = random_name("kcat");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()?;
    for created in runtime.block_on(admin.create_topics(
        [&NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))? {
        created.map_err(|(topic, error)| anyhow::anyhow!("create {topic}: {error}"))?;
    }
    // A record from notesaga's own client (librdkafka 2.12), with headers.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()?;
    runtime
        .block_on(
            producer.send(
                FutureRecord::to(&topic)
                    .partition(1)
                    .key("note-1")
                    .payload("created")
                    .headers(
                        OwnedHeaders::new()
                            .insert(Header {
                                key: "event_type",
                                value: Some("NoteCreated"),
                            })
                            .insert(Header {
                                key: "trace",
                                value: Some("abc"),
                            }),
                    ),
                Duration::from_secs(30),
            ),
        )
        .map_err(|(error, _)| error)?;

    // Metadata.
    let listed = kcat(broker.addr(), &["-L", "-t", &topic], "")?;
    let listed = String::from_utf8(listed.stdout)?;
    ensure!(
        listed.contains(&format!("topic \"{topic}\" with 3 partitions")),
        "kcat -L: {listed}"
    );

    // Produce, keys and headers from kcat's own options.
    kcat(
        broker.addr(),
        &[
            "-P",
            "-t",
            &topic,
            "-p",
            "2",
            "-K",
            ":",
            "-H",
            "origin=kcat",
        ],
        "note-2:edited\n",
    )?;

    // Consume everything from the beginning as JSON.
    let consumed = kcat(
        broker.addr(),
        &["-C", "-J", "-t", &topic, "-o", "beginning", "-e"],
        "",
    )?;
    let records: Vec<Value> = String::from_utf8(consumed.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let find = |key: &str| {
        records
            .iter()
            .find(|r| r["key"] == key)
            .with_context(|| format!("no record with key {key} in {records:?}"))
    };
    let ours = find("note-1")?;
    ensure!(
        ours["payload"] == "created" && ours["partition"] == 1,
        "{ours}"
    );
    ensure!(
        ours["headers"] == serde_json::json!(["event_type", "NoteCreated", "trace", "abc"]),
        "headers of note-1: {ours}"
    );
    let theirs = find("note-2")?;
    ensure!(
        theirs["payload"] == "edited" && theirs["partition"] == 2,
        "{theirs}"
    );
    ensure!(
        theirs["headers"] == serde_json::json!(["origin", "kcat"]),
        "headers of note-2: {theirs}"
    );
    ensure!(records.len() == 2, "exactly the two records: {records:?}");
    Ok(())
}
