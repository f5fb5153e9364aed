//! What the registry leaves on the broker: a one-partition compacted topic holding
//! Confluent's record format, readable by any Kafka tool.

use std::time::Duration;

use anyhow::{bail, Result};
use notesaga_registry::Registry;
use notesaga_testkit::random_name;
use rdkafka::{
    admin::{AdminClient, AdminOptions, ResourceSpecifier},
    client::DefaultClientContext,
    consumer::{Consumer as _, StreamConsumer},
    ClientConfig, Message as _, Offset, TopicPartitionList,
};
use serde_json::{json, Value};

use crate::support::{broker, config, record, Api};

/// Every (key, value) on the topic, as JSON (`Value::Null` for a tombstone).
async fn read_topic(bootstrap: &str, topic: &str, at_least: usize) -> Result<Vec<(Value, Value)>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", random_name("reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    while records.len() < at_least {
        let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await??;
        let key = serde_json::from_slice(message.key().unwrap_or_default())?;
        let value = match message.payload() {
            Some(payload) => serde_json::from_slice(payload)?,
            None => Value::Null,
        };
        records.push((key, value));
    }
    Ok(records)
}

#[tokio::test]
async fn the_topic_holds_confluent_records() -> Result<()> {
    let broker = broker().await?;
    let topic = random_name("schemas");
    let api = Api::new(Registry::open(config(&broker, &topic)).await?);
    let schema = record("Fmt", r#"[{"name":"a","type":"string"}]"#);
    let id = api.register("fmt-value", &schema).await?;
    api.put("/config", json!({"compatibility": "FULL_TRANSITIVE"}))
        .await?;
    api.put("/config/fmt-value", json!({"compatibility": "NONE"}))
        .await?;
    api.delete("/subjects/fmt-value/versions/1").await?;

    // One NOOP marker from opening, then one before each write, as Confluent's registry
    // writes them to find the end of the topic.
    let records = read_topic(broker.addr(), &topic, 9).await?;
    let noop = (json!({"keytype": "NOOP", "magic": 0}), Value::Null);
    let schema_key = json!({"keytype": "SCHEMA", "subject": "fmt-value", "version": 1, "magic": 1});
    let writes = [
        (
            schema_key.clone(),
            json!({"subject": "fmt-value", "version": 1, "id": id, "schema": schema, "deleted": false}),
        ),
        (
            json!({"keytype": "CONFIG", "subject": null, "magic": 0}),
            json!({"compatibilityLevel": "FULL_TRANSITIVE"}),
        ),
        (
            json!({"keytype": "CONFIG", "subject": "fmt-value", "magic": 0}),
            json!({"compatibilityLevel": "NONE"}),
        ),
        (
            schema_key,
            json!({"subject": "fmt-value", "version": 1, "id": id, "schema": schema, "deleted": true}),
        ),
    ];
    let mut expected = vec![noop.clone()];
    for write in writes {
        expected.push(noop.clone());
        expected.push(write);
    }
    assert_eq!(records, expected);

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(5))?;
    let partitions: Vec<usize> = metadata
        .topics()
        .iter()
        .map(|topic| topic.partitions().len())
        .collect();
    assert_eq!(partitions, vec![1]);
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
        .await?;
    let Some(Ok(resource)) = configs.first() else {
        bail!("describing {topic}: {configs:?}");
    };
    let policy = resource
        .get("cleanup.policy")
        .and_then(|entry| entry.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));
    Ok(())
}
