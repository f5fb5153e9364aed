//! Redriven dead letters: what the consumer loop needs to read a group's redrive topic
//! (`<group>.redrive`) beside its own topics, and what `notesaga dlq redrive` writes there.
//!
//! A redriven record keeps the dead letter's key, value and headers, minus the `dlq.*`
//! headers, plus `redrive.*` headers naming the topic it was first read from. The loop
//! decodes and hands it to the handler as a record of that topic, so a handler cannot
//! tell a redriven record from the first delivery (handlers are idempotent anyway). A
//! redriven record that fails again is dead-lettered again, once, like any record: the
//! loop never redrives anything by itself, so there is no loop.

use notesaga_events::{
    headers as h,
    topics::{is_redrive_topic, redrive_topic, REDRIVE_GROUPS},
};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// The topics a member of `group` subscribes to: `topics`, and its redrive topic when the
/// group is one of notesaga's own that reads one (groups of benchmarks and tests are
/// not: their redrive topic does not exist).
pub fn subscription(group: &str, topics: &[String]) -> Vec<String> {
    let mut all = topics.to_vec();
    if REDRIVE_GROUPS.contains(&group) {
        all.push(redrive_topic(group));
    }
    all
}

/// The topic a record is handled as: for a record of a redrive topic, the topic named
/// by its `redrive.topic` header; otherwise the topic it was read from.
pub fn source_topic<H: Headers>(topic: &str, headers: Option<&H>) -> String {
    if !is_redrive_topic(topic) {
        return topic.to_owned();
    }
    header(headers, h::REDRIVE_TOPIC).unwrap_or_else(|| topic.to_owned())
}

/// The coordinates a record is handled under: for a redriven record, the topic,
/// partition and offset it was first read at (`redrive.*`), so a handler that keeps
/// state per partition (the orchestrator's sagas) finds the record's own partition;
/// otherwise where it was read.
pub fn source<H: Headers>(
    topic: &str,
    partition: i32,
    offset: i64,
    headers: Option<&H>,
) -> (String, i32, i64) {
    let source_topic = source_topic(topic, headers);
    if source_topic == topic {
        return (source_topic, partition, offset);
    }
    let number = |name| header(headers, name).and_then(|v| v.parse::<i64>().ok());
    (
        source_topic,
        number(h::REDRIVE_PARTITION)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(partition),
        number(h::REDRIVE_OFFSET).unwrap_or(offset),
    )
}

/// `(topic, partition)`s of a rebalance without the redrive topic's: what a handler
/// that keeps state per flow partition is told about.
pub fn flow_partitions(partitions: Vec<(String, i32)>) -> Vec<(String, i32)> {
    partitions
        .into_iter()
        .filter(|(topic, _)| !is_redrive_topic(topic))
        .collect()
}

/// The value of header `name` (the last one, when a record carries it more than once).
pub fn header<H: Headers>(headers: Option<&H>, name: &str) -> Option<String> {
    headers?
        .iter()
        .filter(|header| header.key == name)
        .filter_map(|header| header.value)
        .filter_map(|value| std::str::from_utf8(value).ok())
        .last()
        .map(str::to_owned)
}

/// Where a redriven record comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveOrigin {
    /// The topic the record was first read from.
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The offset of its dead letter in `<group>.dlq`.
    pub dlq_offset: i64,
    /// The audit entry of the redrive.
    pub audit_id: String,
}

/// The headers of a redriven record: the dead letter's, without the `dlq.*` and any
/// earlier `redrive.*` ones, plus `redrive.*` saying where it comes from.
pub fn redrive_headers<H: Headers>(
    dead_letter: Option<&H>,
    origin: &RedriveOrigin,
) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = dead_letter {
        for header in original.iter() {
            if header.key.starts_with("dlq.") || header.key.starts_with("redrive.") {
                continue;
            }
            headers = headers.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    let (partition, offset, dlq_offset) = (
        origin.partition.to_string(),
        origin.offset.to_string(),
        origin.dlq_offset.to_string(),
    );
    for (key, value) in [
        (h::REDRIVE_TOPIC, origin.topic.as_str()),
        (h::REDRIVE_PARTITION, partition.as_str()),
        (h::REDRIVE_OFFSET, offset.as_str()),
        (h::REDRIVE_DLQ_OFFSET, dlq_offset.as_str()),
        (h::REDRIVE_AUDIT_ID, origin.audit_id.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> RedriveOrigin {
        RedriveOrigin {
            topic: "embedding.commands".into(),
            partition: 3,
            offset: 17,
            dlq_offset: 2,
            audit_id: "a1".into(),
        }
    }

    #[test]
    fn only_notesaga_groups_read_their_redrive_topic() {
        let topics = vec!["embedding.commands".to_owned()];
        assert_eq!(
            subscription("notesaga.embedding", &topics),
            ["embedding.commands", "notesaga.embedding.redrive"]
        );
        assert_eq!(subscription("bench-group", &topics), ["embedding.commands"]);
        assert_eq!(
            subscription("notesaga.projector.notes", &topics),
            ["embedding.commands"]
        );
    }

    #[test]
    fn handlers_hear_only_of_flow_partitions() {
        let list = vec![
            ("narration.commands".to_owned(), 2),
            ("notesaga.narration.redrive".to_owned(), 0),
        ];
        assert_eq!(
            flow_partitions(list),
            [("narration.commands".to_owned(), 2)]
        );
    }

    #[test]
    fn a_redriven_record_is_handled_as_a_record_of_its_first_topic() {
        let dead_letter = OwnedHeaders::new()
            .insert(Header {
                key: "event_type",
                value: Some("GenerateEmbedding"),
            })
            .insert(Header {
                key: h::DLQ_TOPIC,
                value: Some("embedding.commands"),
            })
            .insert(Header {
                key: h::DLQ_ERROR,
                value: Some("gave up"),
            });
        let headers = redrive_headers(Some(&dead_letter), &origin());
        let keys: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert_eq!(
            keys,
            [
                "event_type",
                h::REDRIVE_TOPIC,
                h::REDRIVE_PARTITION,
                h::REDRIVE_OFFSET,
                h::REDRIVE_DLQ_OFFSET,
                h::REDRIVE_AUDIT_ID
            ]
        );
        assert_eq!(
            source_topic("notesaga.embedding.redrive", Some(&headers)),
            "embedding.commands"
        );
        // A record of an ordinary topic is what it says, whatever its headers.
        assert_eq!(source_topic("notes.events", Some(&headers)), "notes.events");
        assert_eq!(
            source("notesaga.embedding.redrive", 0, 5, Some(&headers)),
            ("embedding.commands".to_owned(), 3, 17)
        );
        assert_eq!(
            source("notes.events", 1, 5, Some(&headers)),
            ("notes.events".to_owned(), 1, 5)
        );
        assert_eq!(
            source_topic::<OwnedHeaders>("notesaga.embedding.redrive", None),
            "notesaga.embedding.redrive"
        );
        // Redriving a redriven record's dead letter again keeps one set of headers.
        let again = redrive_headers(Some(&headers), &origin());
        assert_eq!(again.count(), headers.count());
    }
}
