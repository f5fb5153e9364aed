//! The topic is the registry: a new instance, a restarted broker, or a second instance
//! all see the same subjects, versions, ids and levels.

use std::time::Duration;

use anyhow::Result;
use notesaga_registry::Registry;
use notesaga_testkit::{random_name, BrokerProcess};
use serde_json::{json, Value};

use crate::support::{broker, config, eventually, record, Api};

fn schema(fields: &str) -> String {
    record("Saga", fields)
}

/// What a registry answers about everything the scenario wrote.
async fn snapshot(api: &Api) -> Result<Vec<Value>> {
    let mut seen = Vec::new();
    for uri in [
        "/subjects",
        "/subjects?deleted=true",
        "/subjects/a/versions",
        "/subjects/a/versions?deleted=true",
        "/subjects/a/versions/1",
        "/subjects/a/versions/2?deleted=true",
        "/subjects/b/versions/latest",
        "/schemas/ids/1",
        "/schemas/ids/2",
        "/schemas/ids/3",
        "/config",
        "/config/a",
        "/config/b",
    ] {
        let reply = api.get(uri).await?;
        seen.push(json!({ "uri": uri, "status": reply.status, "body": reply.body }));
    }
    Ok(seen)
}

/// Registers, configures and soft-deletes a little of everything.
async fn write_scenario(api: &Api) -> Result<()> {
    let v1 = schema(r#"[{"name":"step","type":"string"}]"#);
    let v2 = schema(r#"[{"name":"step","type":"string"},{"name":"n","type":"int","default":0}]"#);
    let other = schema(r#"[{"name":"other","type":"long"}]"#);
    assert_eq!(api.register("a", &v1).await?, 1);
    assert_eq!(api.register("a", &v2).await?, 2);
    assert_eq!(api.register("b", &v1).await?, 1);
    assert_eq!(
        api.put("/config", json!({"compatibility": "FULL"}))
            .await?
            .status,
        200
    );
    assert_eq!(
        api.put("/config/b", json!({"compatibility": "NONE"}))
            .await?
            .status,
        200
    );
    assert_eq!(api.register("b", &other).await?, 3);
    assert_eq!(api.delete("/subjects/a/versions/2").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_new_instance_reads_everything_back() -> Result<()> {
    let broker = broker().await?;
    let config = config(&broker, &random_name("schemas"));

    let registry = Registry::open(config.clone()).await?;
    let api = Api::new(registry.clone());
    write_scenario(&api).await?;
    let before = snapshot(&api).await?;
    drop((api, registry));

    let reopened = Api::new(Registry::open(config).await?);
    assert_eq!(snapshot(&reopened).await?, before);
    // Ids continue after the largest one on the topic.
    let next = reopened
        .register("c", &schema(r#"[{"name":"fresh","type":"bytes"}]"#))
        .await?;
    assert_eq!(next, 4);
    Ok(())
}

#[tokio::test]
async fn schemas_survive_a_broker_restart() -> Result<()> {
    let mut broker = broker().await?;
    let topic = random_name("schemas");
    let config = config(&broker, &topic);

    // This instance lives through the broker's restart.
    let survivor = Api::new(Registry::open(config.clone()).await?);
    write_scenario(&survivor).await?;
    let before = snapshot(&survivor).await?;

    broker.kill();
    let (data_dir, addr) = (broker.data_dir().to_owned(), broker.addr().to_owned());
    let _restarted =
        tokio::task::spawn_blocking(move || BrokerProcess::start_in(&data_dir, &addr)).await??;

    let reopened = Api::new(Registry::open(config).await?);
    assert_eq!(snapshot(&reopened).await?, before);

    // Both instances keep working, and agree, once the broker is back.
    let id = survivor
        .register("after", &schema(r#"[{"name":"later","type":"float"}]"#))
        .await?;
    assert_eq!(id, 4);
    assert_eq!(
        reopened
            .register("after2", &schema(r#"[{"name":"later2","type":"float"}]"#))
            .await?,
        5
    );
    for api in [&survivor, &reopened] {
        eventually(Duration::from_secs(10), || async {
            Ok(api.get("/subjects").await?.body == json!(["a", "after", "after2", "b"]))
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn instances_on_one_topic_converge() -> Result<()> {
    let broker = broker().await?;
    let config = config(&broker, &random_name("schemas"));
    let first = Api::new(Registry::open(config.clone()).await?);
    let second = Api::new(Registry::open(config).await?);

    let id = first
        .register("shared", &schema(r#"[{"name":"x","type":"string"}]"#))
        .await?;
    // Without waiting for the second instance to follow: it reads up to the end of the
    // topic before assigning, so ids and versions do not clash.
    let next = second
        .register(
            "shared",
            &schema(r#"[{"name":"x","type":"string"},{"name":"y","type":"int","default":1}]"#),
        )
        .await?;
    assert_eq!(next, id + 1);
    let third = first
        .register("other", &schema(r#"[{"name":"z","type":"long"}]"#))
        .await?;
    assert_eq!(third, id + 2);

    for api in [&first, &second] {
        eventually(Duration::from_secs(10), || async {
            Ok(
                api.get("/subjects/shared/versions").await?.body == json!([1, 2])
                    && api.get("/subjects").await?.body == json!(["other", "shared"]),
            )
        })
        .await?;
    }
    Ok(())
}
