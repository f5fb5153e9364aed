//! The AsyncAPI 3.0 document of the log, generated from this crate: every topic as a
//! channel (its key, each message with its Avro schema, the headers), the consumer
//! groups as `receive` operations, the DLQ and redrive topic of each group, and the
//! two JSON topics beside the contract (`_schemas`, `notesaga.dlq-audit`).
//!
//! Generated, never written by hand, so it cannot drift from the `.avsc` files and the
//! topic names; the API serves it at `/asyncapi.json`, and CI validates it with
//! `@asyncapi/parser` and compares it with what a live broker and registry hold.

use serde_json::{json, Map, Value};

use crate::{
    embedding::{EmbeddingCommand, EmbeddingEvent},
    headers as h,
    narration::{NarrationCommand, NarrationEvent},
    notes::{NotesCommand, NotesEvent, NotesOutcome},
    saga::SagaEvent,
    topics::{
        self, dlq_topic, keeps_forever, redrive_topic, DEFAULT_PARTITIONS, DLQ_AUDIT, GROUPS,
        REDRIVE_GROUPS, SCHEMAS,
    },
    Message,
};

/// The Avro schema format AsyncAPI names (the `.avsc` files are Avro 1.9-compatible).
pub const AVRO_SCHEMA_FORMAT: &str = "application/vnd.apache.avro;version=1.9.0";

/// Kafka bindings version used throughout.
const KAFKA_BINDING: &str = "0.5.0";

/// `(full record name, schema)` of every record that may appear on a flow topic.
pub fn topic_schemas(topic: &str) -> Vec<(String, &'static str)> {
    match topic {
        topics::NOTES_COMMANDS => NotesCommand::schemas(),
        topics::NOTES_EVENTS => NotesEvent::schemas(),
        topics::NOTES_OUTCOMES => NotesOutcome::schemas(),
        topics::EMBEDDING_COMMANDS => EmbeddingCommand::schemas(),
        topics::EMBEDDING_EVENTS => EmbeddingEvent::schemas(),
        topics::NARRATION_COMMANDS => NarrationCommand::schemas(),
        topics::NARRATION_EVENTS => NarrationEvent::schemas(),
        topics::SAGA_NOTE_PIPELINE => SagaEvent::schemas(),
        _ => Vec::new(),
    }
}

/// Which flow topics each consumer group reads (what the roles subscribe to).
pub const GROUP_READS: [(&str, &[&str]); 5] = [
    ("notesaga.notes", &[topics::NOTES_COMMANDS]),
    ("notesaga.embedding", &[topics::EMBEDDING_COMMANDS]),
    ("notesaga.narration", &[topics::NARRATION_COMMANDS]),
    (
        "notesaga.orchestrator",
        &[
            topics::NOTES_EVENTS,
            topics::EMBEDDING_EVENTS,
            topics::NARRATION_EVENTS,
            topics::SAGA_NOTE_PIPELINE,
        ],
    ),
    (
        "notesaga.projector.notes",
        &[
            topics::NOTES_EVENTS,
            topics::EMBEDDING_EVENTS,
            topics::NARRATION_EVENTS,
            topics::SAGA_NOTE_PIPELINE,
            topics::NOTES_OUTCOMES,
        ],
    ),
];

/// Which role appends to each flow topic.
const WRITERS: [(&str, &[&str]); 5] = [
    ("api", &[topics::NOTES_COMMANDS, topics::SAGA_NOTE_PIPELINE]),
    ("notes", &[topics::NOTES_EVENTS, topics::NOTES_OUTCOMES]),
    ("embedding", &[topics::EMBEDDING_EVENTS]),
    ("narration", &[topics::NARRATION_EVENTS]),
    (
        "orchestrator",
        &[
            topics::NOTES_COMMANDS,
            topics::EMBEDDING_COMMANDS,
            topics::NARRATION_COMMANDS,
            topics::SAGA_NOTE_PIPELINE,
        ],
    ),
];

/// Which operator command (not a role) appends to a flow topic, and what it sends.
const TOOL_WRITERS: [(&str, &str, &str); 1] = [(
    "reembed",
    topics::EMBEDDING_COMMANDS,
    "`notesaga reembed --model M` appends GenerateEmbedding commands of model M for every \
     published note without a vector of M, with a command_id no saga waits for and \
     correlation_id `reembed:<run id>`; the embedding role answers them on embedding.events",
)];

/// The Kafka subjects (TopicRecordNameStrategy) the document's Avro messages are
/// registered under: what a registry that served a flow run must hold.
pub fn subjects() -> Vec<String> {
    topics::FLOW_TOPICS
        .iter()
        .flat_map(|topic| {
            topic_schemas(topic)
                .into_iter()
                .map(move |(name, _)| format!("{topic}-{name}"))
        })
        .collect()
}

/// Every topic the document describes.
pub fn channel_topics() -> Vec<String> {
    topics::FLOW_TOPICS
        .iter()
        .map(|t| (*t).to_owned())
        .chain(GROUPS.iter().map(|g| dlq_topic(g)))
        .chain(REDRIVE_GROUPS.iter().map(|g| redrive_topic(g)))
        .chain([DLQ_AUDIT.to_owned(), SCHEMAS.to_owned()])
        .collect()
}

/// A header schema property: a string.
fn string_header(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// The headers every flow record carries.
fn flow_headers() -> Map<String, Value> {
    let mut p = Map::new();
    p.insert(
        h::EVENT_TYPE.into(),
        string_header("The record's short type name, e.g. NoteCreated."),
    );
    p.insert(
        h::EVENT_ID.into(),
        json!({"type": "string", "format": "uuid", "description": "The record's own id."}),
    );
    p.insert(h::COMMAND_ID.into(), json!({"type": "string", "format": "uuid", "description": "On commands, outcomes and the events a command caused: the command's id."}));
    p.insert(
        h::CORRELATION_ID.into(),
        string_header("Shared by everything one client request caused."),
    );
    p.insert(
        h::CAUSATION_ID.into(),
        string_header("Id of the record that caused this one."),
    );
    p.insert(h::OCCURRED_AT.into(), json!({"type": "string", "format": "date-time", "description": "RFC 3339 UTC time of the record."}));
    p.insert(h::TRACEPARENT.into(), string_header("W3C trace context."));
    p
}

fn headers_schema(extra: &[(&str, &str)], description: &str) -> Value {
    let mut properties = flow_headers();
    let mut required = vec![
        json!(h::EVENT_TYPE),
        json!(h::EVENT_ID),
        json!(h::CORRELATION_ID),
        json!(h::OCCURRED_AT),
    ];
    for (name, text) in extra {
        properties.insert((*name).to_owned(), string_header(text));
        required.push(json!(name));
    }
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
    })
}

/// The three header sets: a flow record, a dead letter, a redriven record.
fn header_schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert(
        "FlowHeaders".into(),
        headers_schema(&[], "Headers of every flow record (UTF-8 strings)."),
    );
    schemas.insert(
        "DeadLetterHeaders".into(),
        headers_schema(
            &[
                (h::DLQ_ERROR, "Why the record could not be handled."),
                (h::DLQ_TOPIC, "The topic it was read from."),
                (h::DLQ_PARTITION, "Its partition there."),
                (h::DLQ_OFFSET, "Its offset there."),
                (h::DLQ_GROUP, "The consumer group that gave up."),
            ],
            "A dead letter keeps the original key, value and headers and adds dlq.*.",
        ),
    );
    schemas.insert(
        "RedriveHeaders".into(),
        headers_schema(
            &[
                (h::REDRIVE_TOPIC, "The topic the record was first read from; the group handles it as a record of that topic."),
                (h::REDRIVE_PARTITION, "Its partition there."),
                (h::REDRIVE_OFFSET, "Its offset there."),
                (h::REDRIVE_DLQ_OFFSET, "The offset of the dead letter it was redriven from."),
                (h::REDRIVE_AUDIT_ID, "The audit entry (notesaga.dlq-audit) of the redrive."),
            ],
            "A redriven record: the dead letter's key, value and headers without dlq.*, plus redrive.*.",
        ),
    );
    schemas
}

/// The component name of a message: `<topic>.<Type>` (`notes.events.NoteCreated`).
fn message_id(topic: &str, full_name: &str) -> String {
    let short = full_name.rsplit('.').next().unwrap_or(full_name);
    format!("{topic}.{short}")
}

fn avro_message(full_name: &str, schema: &str, headers: &str, summary: String) -> Value {
    let schema: Value = serde_json::from_str(schema).expect("every .avsc is JSON");
    let short = full_name.rsplit('.').next().unwrap_or(full_name);
    json!({
        "name": short,
        "title": full_name,
        "summary": summary,
        "contentType": "application/vnd.apache.avro",
        "headers": { "$ref": format!("#/components/schemas/{headers}") },
        "payload": { "schemaFormat": AVRO_SCHEMA_FORMAT, "schema": schema },
        "bindings": { "kafka": {
            "key": { "type": "string", "format": "uuid", "description": "The note id, UTF-8." },
            "schemaIdLocation": "payload",
            "schemaIdPayloadEncoding": "confluent",
            "schemaLookupStrategy": "TopicRecordNameStrategy",
            "bindingVersion": KAFKA_BINDING,
        }},
    })
}

fn channel(topic: &str, description: &str, messages: Map<String, Value>, partitions: i32) -> Value {
    let mut configuration = Map::new();
    if keeps_forever(topic) || topic.ends_with(".dlq") || topic == DLQ_AUDIT {
        configuration.insert("retention.ms".into(), json!(-1));
    }
    json!({
        "address": topic,
        "description": description,
        "messages": messages,
        "bindings": { "kafka": {
            "topic": topic,
            "partitions": partitions,
            "topicConfiguration": configuration,
            "bindingVersion": KAFKA_BINDING,
        }},
    })
}

/// The document, as JSON.
pub fn document(version: &str) -> Value {
    let mut channels = Map::new();
    let mut messages = Map::new();
    let mut operations = Map::new();

    for topic in topics::FLOW_TOPICS {
        let mut refs = Map::new();
        for (full_name, schema) in topic_schemas(topic) {
            let id = message_id(topic, &full_name);
            messages.insert(
                id.clone(),
                avro_message(
                    &full_name,
                    schema,
                    "FlowHeaders",
                    format!("{full_name} on {topic}"),
                ),
            );
            refs.insert(
                id.clone(),
                json!({ "$ref": format!("#/components/messages/{id}") }),
            );
        }
        let kind = if keeps_forever(topic) {
            "A source of truth: kept forever."
        } else {
            "Commands: kept for the broker's default retention."
        };
        channels.insert(
            topic.to_owned(),
            channel(topic, kind, refs, DEFAULT_PARTITIONS),
        );
    }

    // Dead letters and redrives: the records of the topics the group reads, with
    // their own headers.
    for (group, reads) in GROUP_READS {
        for (suffix, target, headers, description) in [
            ("dlq", dlq_topic(group), "DeadLetterHeaders", format!("Records {group} could not handle, key, value and headers untouched plus dlq.*. One partition.")),
            ("redrive", redrive_topic(group), "RedriveHeaders", format!("Dead letters an operator sent back to {group} (`notesaga dlq redrive`); only {group} reads it. One partition.")),
        ] {
            if suffix == "redrive" && !REDRIVE_GROUPS.contains(&group) {
                continue;
            }
            let mut refs = Map::new();
            for topic in reads.iter() {
                for (full_name, schema) in topic_schemas(topic) {
                    let id = message_id(&target, &full_name);
                    messages.insert(
                        id.clone(),
                        avro_message(&full_name, schema, headers, format!("{full_name} from {topic}")),
                    );
                    refs.insert(id.clone(), json!({ "$ref": format!("#/components/messages/{id}") }));
                }
            }
            channels.insert(target.clone(), channel(&target, &description, refs, 1));
            let action = if suffix == "dlq" { "send" } else { "receive" };
            operations.insert(
                format!("{group}.{suffix}.{action}"),
                json!({
                    "action": action,
                    "channel": { "$ref": format!("#/channels/{target}") },
                    "summary": if suffix == "dlq" { format!("{group} dead-letters what it cannot handle") } else { format!("{group} handles redriven records as records of their first topic") },
                    "bindings": { "kafka": { "groupId": { "type": "string", "enum": [group] }, "bindingVersion": KAFKA_BINDING } },
                }),
            );
        }
        for topic in reads.iter() {
            operations.insert(
                format!("{group}.receive.{topic}"),
                json!({
                    "action": "receive",
                    "channel": { "$ref": format!("#/channels/{topic}") },
                    "summary": format!("Consumer group {group} reads {topic}"),
                    "bindings": { "kafka": { "groupId": { "type": "string", "enum": [group] }, "bindingVersion": KAFKA_BINDING } },
                }),
            );
        }
    }
    for (role, writes) in WRITERS {
        for topic in writes.iter() {
            operations.insert(
                format!("{role}.send.{topic}"),
                json!({
                    "action": "send",
                    "channel": { "$ref": format!("#/channels/{topic}") },
                    "summary": format!("The {role} role appends to {topic}"),
                }),
            );
        }
    }
    for (tool, topic, summary) in TOOL_WRITERS {
        operations.insert(
            format!("{tool}.send.{topic}"),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{topic}") },
                "summary": summary,
            }),
        );
    }

    // The two JSON topics beside the Avro contract.
    messages.insert(
        "DlqAuditEntry".into(),
        json!({
            "name": "DlqAuditEntry",
            "title": "An operator's redrive or discard",
            "contentType": "application/json",
            "payload": {
                "type": "object",
                "required": ["audit_id", "action", "group", "operator", "at", "records"],
                "properties": {
                    "audit_id": { "type": "string", "format": "uuid" },
                    "action": { "type": "string", "enum": ["redrive", "discard"] },
                    "group": { "type": "string" },
                    "operator": { "type": "string" },
                    "at": { "type": "string", "format": "date-time" },
                    "reason": { "type": "string" },
                    "target": { "type": "string", "description": "Where a redrive sent the records." },
                    "records": { "type": "array", "items": {
                        "type": "object",
                        "required": ["dlq_offset"],
                        "properties": {
                            "dlq_offset": { "type": "integer" },
                            "note_id": { "type": ["string", "null"] },
                            "event_type": { "type": ["string", "null"] },
                            "topic": { "type": ["string", "null"] },
                            "partition": { "type": ["integer", "null"] },
                            "offset": { "type": ["integer", "null"] },
                            "redrive_offset": { "type": "integer" },
                        },
                    }},
                },
            },
            "bindings": { "kafka": { "key": { "type": "string", "description": "The consumer group." }, "bindingVersion": KAFKA_BINDING } },
        }),
    );
    messages.insert(
        "RegistrySchemaRecord".into(),
        json!({
            "name": "RegistrySchemaRecord",
            "title": "A schema registry entry",
            "contentType": "application/json",
            "payload": { "type": "object", "description": "The Confluent registry's own JSON records (subject, version, id, schema)." },
        }),
    );
    let single = |id: &str| {
        let mut m = Map::new();
        m.insert(
            id.to_owned(),
            json!({ "$ref": format!("#/components/messages/{id}") }),
        );
        m
    };
    channels.insert(
        DLQ_AUDIT.to_owned(),
        channel(
            DLQ_AUDIT,
            "The audit of `notesaga dlq redrive` and `discard`: one JSON entry per action, keyed by group, kept forever. An operator tool's topic, not part of the Avro contract.",
            single("DlqAuditEntry"),
            1,
        ),
    );
    channels.insert(
        SCHEMAS.to_owned(),
        channel(
            SCHEMAS,
            "Where the schema registry keeps its schemas (compacted, one partition); JSON, the registry's own.",
            single("RegistrySchemaRecord"),
            1,
        ),
    );
    operations.insert(
        "operator.send.notesaga.dlq-audit".into(),
        json!({
            "action": "send",
            "channel": { "$ref": format!("#/channels/{DLQ_AUDIT}") },
            "summary": "notesaga dlq redrive / discard record what they did",
        }),
    );

    let mut schemas = header_schemas();
    schemas.insert(
        "NoteKey".into(),
        json!({ "type": "string", "format": "uuid" }),
    );
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "notesaga log",
            "version": version,
            "description": "The topics of notesaga: every record Avro in the Confluent wire format (magic byte 0, 4-byte schema id, payload), subjects by TopicRecordNameStrategy (`<topic>-<record full name>`), keyed by the note id. Generated from the `events` crate.",
        },
        "defaultContentType": "application/vnd.apache.avro",
        "servers": {
            "single-node": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "`notesaga dev`'s broker; the schema registry is at http://127.0.0.1:8081.",
                "bindings": { "kafka": {
                    "schemaRegistryUrl": "http://127.0.0.1:8081",
                    "schemaRegistryVendor": "confluent",
                    "bindingVersion": KAFKA_BINDING,
                }},
            },
        },
        "channels": channels,
        "operations": operations,
        "components": { "messages": messages, "schemas": schemas },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_topic_is_a_channel_and_every_subject_a_message() {
        let doc = document("0.0.0");
        let channels: BTreeSet<String> = doc["channels"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["address"].as_str().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = channel_topics().into_iter().collect();
        assert_eq!(channels, expected);
        // Every Avro message of a flow topic is one subject.
        let mut from_doc = BTreeSet::new();
        for topic in topics::FLOW_TOPICS {
            for message in doc["channels"][topic]["messages"]
                .as_object()
                .unwrap()
                .values()
            {
                let id = message["$ref"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap();
                let title = doc["components"]["messages"][id]["title"].as_str().unwrap();
                from_doc.insert(format!("{topic}-{title}"));
            }
        }
        assert_eq!(from_doc, subjects().into_iter().collect());
        assert!(from_doc.contains("notes.events-notesaga.notes.NoteCreated"));
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document("0.0.0");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 100, "{}", refs.len());
        for reference in refs {
            let pointer = reference.trim_start_matches('#');
            assert!(
                doc.pointer(pointer).is_some(),
                "{reference} does not resolve"
            );
        }
    }

    #[test]
    fn every_writer_of_embedding_commands_is_named() {
        let doc = document("0.0.0");
        let senders: BTreeSet<String> = doc["operations"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, op)| {
                op["action"] == "send"
                    && op["channel"]["$ref"]
                        == format!("#/channels/{}", topics::EMBEDDING_COMMANDS).as_str()
            })
            .map(|(name, _)| name.split('.').next().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = ["orchestrator", "reembed"].map(String::from).into();
        assert_eq!(senders, expected);
    }

    #[test]
    fn groups_reading_a_redrive_topic_have_a_dlq() {
        for group in REDRIVE_GROUPS {
            assert!(GROUPS.contains(&group));
            assert!(GROUP_READS.iter().any(|(g, _)| *g == group));
        }
        assert_eq!(GROUP_READS.len(), GROUPS.len());
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if key == "$ref" {
                        out.push(value.as_str().unwrap().to_owned());
                    } else {
                        collect_refs(value, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
