//! Creates the topics notesaga needs at start-up, idempotently; notesaga never relies on
//! broker auto-creation.

use std::time::Duration;

use notesaga_events::topics::{
    dlq_topic, keeps_forever, redrive_topic, DLQ_AUDIT, FLOW_TOPICS, GROUPS, REDRIVE_GROUPS,
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};
use tracing::info;

use crate::{Error, KafkaConfig, Result};

/// One topic to create.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Topic configuration entries.
    pub configs: Vec<(&'static str, &'static str)>,
}

/// The flow topics (all with `partitions`), one DLQ per consumer group, one redrive topic
/// per group that reads one, and the DLQ audit log.
///
/// Sources of truth get `retention.ms=-1` and no explicit `cleanup.policy`: tansu 0.6
/// deletes every record of a topic whose policy says `delete` when `retention.ms` is -1
/// (it compares the record's age with -1), and without a policy it deletes nothing.
pub fn flow_topic_specs(partitions: i32) -> Vec<TopicSpec> {
    let flow = FLOW_TOPICS.iter().map(|name| TopicSpec {
        name: (*name).to_owned(),
        partitions,
        configs: if keeps_forever(name) {
            vec![("retention.ms", "-1")]
        } else {
            vec![]
        },
    });
    let dlqs = GROUPS.iter().map(|group| TopicSpec {
        name: dlq_topic(group),
        partitions: 1,
        configs: vec![("retention.ms", "-1")],
    });
    // One partition each, like the DLQs: a redrive is small, and one partition keeps
    // the operator's order.
    let redrives = REDRIVE_GROUPS.iter().map(|group| TopicSpec {
        name: redrive_topic(group),
        partitions: 1,
        configs: vec![],
    });
    let audit = std::iter::once(TopicSpec {
        name: DLQ_AUDIT.to_owned(),
        partitions: 1,
        configs: vec![("retention.ms", "-1")],
    });
    flow.chain(dlqs).chain(redrives).chain(audit).collect()
}

/// The replication settings of `kafka` as topic configuration: `min.insync.replicas`
/// when it is above Kafka's default of 1.
pub fn replication_configs(min_insync_replicas: i32) -> Vec<(&'static str, String)> {
    if min_insync_replicas > 1 {
        vec![("min.insync.replicas", min_insync_replicas.to_string())]
    } else {
        Vec::new()
    }
}

/// Creates every topic in `specs` that does not exist yet, with `kafka`'s replication
/// factor and `min.insync.replicas`.
pub async fn create_topics(kafka: &KafkaConfig, specs: &[TopicSpec]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let replication = replication_configs(kafka.min_insync_replicas);
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            let topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(kafka.replication_factor),
            );
            let topic = spec
                .configs
                .iter()
                .fold(topic, |topic, (key, value)| topic.set(key, value));
            replication
                .iter()
                .fold(topic, |topic, (key, value)| topic.set(key, value))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(name) => info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::CreateTopic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Creates the flow and DLQ topics.
pub async fn ensure_topics(kafka: &KafkaConfig, partitions: i32) -> Result<()> {
    create_topics(kafka, &flow_topic_specs(partitions)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_of_truth_keep_records_forever_without_a_delete_policy() {
        let specs = flow_topic_specs(6);
        let events = specs.iter().find(|s| s.name == "notes.events").unwrap();
        assert_eq!(events.configs, vec![("retention.ms", "-1")]);
        assert_eq!(events.partitions, 6);
        let commands = specs.iter().find(|s| s.name == "notes.commands").unwrap();
        assert!(commands.configs.is_empty());
        assert!(specs.iter().any(|s| s.name == "notesaga.orchestrator.dlq"));
        assert!(specs.iter().any(|s| s.name == "notesaga.embedding.redrive"));
        assert!(!specs
            .iter()
            .any(|s| s.name == "notesaga.projector.notes.redrive"));
        assert!(specs.iter().any(|s| s.name == DLQ_AUDIT));
        assert!(specs
            .iter()
            .all(|s| !s.configs.contains(&("cleanup.policy", "delete"))));
    }

    #[test]
    fn min_insync_replicas_is_written_only_above_the_default() {
        assert!(replication_configs(1).is_empty());
        assert!(replication_configs(0).is_empty());
        assert_eq!(
            replication_configs(2),
            vec![("min.insync.replicas", "2".to_owned())]
        );
    }
}
