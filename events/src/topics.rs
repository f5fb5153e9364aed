//! Topic names and the settings notesaga creates them with.

/// Commands to the notes aggregate.
pub const NOTES_COMMANDS: &str = "notes.commands";
/// Events of the notes aggregate (source of truth, kept forever).
pub const NOTES_EVENTS: &str = "notes.events";
/// Outcomes (applied / rejected) of every notes command, for command status.
pub const NOTES_OUTCOMES: &str = "notes.outcomes";
/// Commands to the embedding processor.
pub const EMBEDDING_COMMANDS: &str = "embedding.commands";
/// Replies of the embedding processor.
pub const EMBEDDING_EVENTS: &str = "embedding.events";
/// Commands to the narration processor.
pub const NARRATION_COMMANDS: &str = "narration.commands";
/// Replies of the narration processor.
pub const NARRATION_EVENTS: &str = "narration.events";
/// The note-pipeline saga's own event log.
pub const SAGA_NOTE_PIPELINE: &str = "saga.note-pipeline";
/// Where the schema registry keeps its schemas (compacted, one partition).
pub const SCHEMAS: &str = "_schemas";

/// Default partition count of every flow topic: the most instances of a role that get
/// work in a cluster.
pub const DEFAULT_PARTITIONS: i32 = 6;

/// Default partition count of every flow topic on the single node (`notesaga dev`). Its
/// roles run one instance each, so partitions buy it no parallelism, and every
/// partition costs it: a burst of records spread over six partitions goes out as six
/// record batches (six appends in the broker, six batches in each fetch answer, each
/// requested partition listed in every fetch), where one partition carries one batch.
/// On two cores, one partition did about 20 % more sagas per second for 18 % less CPU
/// per saga than six (docs/benchmarks.md).
pub const SINGLE_NODE_PARTITIONS: i32 = 1;

/// Every topic the note flow uses; all have the same partition count so that one note's
/// records sit in the same partition number everywhere.
pub const FLOW_TOPICS: [&str; 8] = [
    NOTES_COMMANDS,
    NOTES_EVENTS,
    NOTES_OUTCOMES,
    EMBEDDING_COMMANDS,
    EMBEDDING_EVENTS,
    NARRATION_COMMANDS,
    NARRATION_EVENTS,
    SAGA_NOTE_PIPELINE,
];

/// Whether a topic is a source of truth whose records are kept forever
/// (`retention.ms=-1`): events, outcomes and the saga log.
pub fn keeps_forever(topic: &str) -> bool {
    topic.ends_with(".events") || topic.ends_with(".outcomes") || topic.starts_with("saga.")
}

/// Consumer group of a role: `notesaga.<role>`.
pub fn group(role: &str) -> String {
    format!("notesaga.{role}")
}

/// The dead-letter topic of a consumer group: `<group>.dlq`.
pub fn dlq_topic(group: &str) -> String {
    format!("{group}.dlq")
}

/// The redrive topic of a consumer group: `<group>.redrive`. `notesaga dlq redrive` appends
/// the dead letters an operator sends back there, and only that group reads it: a record
/// of an event topic (a source of truth, read by several groups and by analysts) is never
/// appended to its topic again, and no other group sees a record meant for one.
pub fn redrive_topic(group: &str) -> String {
    format!("{group}.redrive")
}

/// Whether `topic` is a group's redrive topic.
pub fn is_redrive_topic(topic: &str) -> bool {
    topic.ends_with(".redrive")
}

/// The audit log of `notesaga dlq redrive` and `discard` (one JSON entry per operator
/// action, keyed by group, kept forever). An operator tool's own topic, like `_schemas`,
/// not part of the Avro contract.
pub const DLQ_AUDIT: &str = "notesaga.dlq-audit";

/// The consumer groups notesaga runs, and so the DLQ topics it creates.
pub const GROUPS: [&str; 5] = [
    "notesaga.notes",
    "notesaga.embedding",
    "notesaga.narration",
    "notesaga.orchestrator",
    "notesaga.projector.notes",
];

/// The groups that read their redrive topic: those on the log crate's consumer loop. The
/// projector is not one: it dead-letters only records it cannot decode (a record it can
/// decode but not store stops it and is retried, never skipped), and a projection is
/// mended by a rebuild (`notesaga replay`), not by sending one record back.
pub const REDRIVE_GROUPS: [&str; 4] = [
    "notesaga.notes",
    "notesaga.embedding",
    "notesaga.narration",
    "notesaga.orchestrator",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_of_truth_are_kept_forever() {
        let kept: Vec<_> = FLOW_TOPICS
            .into_iter()
            .filter(|t| keeps_forever(t))
            .collect();
        assert_eq!(
            kept,
            [
                NOTES_EVENTS,
                NOTES_OUTCOMES,
                EMBEDDING_EVENTS,
                NARRATION_EVENTS,
                SAGA_NOTE_PIPELINE
            ]
        );
        assert!(!keeps_forever(&dlq_topic("notesaga.notes")));
    }

    #[test]
    fn dlq_is_named_after_the_group() {
        assert_eq!(dlq_topic(&group("notes")), "notesaga.notes.dlq");
        assert_eq!(redrive_topic(&group("notes")), "notesaga.notes.redrive");
        assert!(is_redrive_topic(&redrive_topic("notesaga.embedding")));
        assert!(!keeps_forever(&redrive_topic("notesaga.notes")));
        assert!(FLOW_TOPICS.iter().all(|t| !is_redrive_topic(t)));
    }
}
