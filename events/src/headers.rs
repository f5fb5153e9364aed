//! Kafka header names (values are UTF-8 strings).

/// The record's short type name, e.g. `NoteCreated`.
pub const EVENT_TYPE: &str = "event_type";
/// The record's own id (UUID).
pub const EVENT_ID: &str = "event_id";
/// On commands, outcomes and the events a command caused: the command's id.
pub const COMMAND_ID: &str = "command_id";
/// Id shared by everything one client request caused.
pub const CORRELATION_ID: &str = "correlation_id";
/// Id of the record that caused this one.
pub const CAUSATION_ID: &str = "causation_id";
/// RFC 3339 UTC time of the record.
pub const OCCURRED_AT: &str = "occurred_at";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// On dead letters: why the record could not be handled.
pub const DLQ_ERROR: &str = "dlq.error";
/// On dead letters: the source topic.
pub const DLQ_TOPIC: &str = "dlq.topic";
/// On dead letters: the source partition.
pub const DLQ_PARTITION: &str = "dlq.partition";
/// On dead letters: the source offset.
pub const DLQ_OFFSET: &str = "dlq.offset";
/// On dead letters: the consumer group that gave up.
pub const DLQ_GROUP: &str = "dlq.group";
/// On redriven records: the topic the record was first read from (the `dlq.topic` of
/// its dead letter); the group decodes and handles it as a record of that topic.
pub const REDRIVE_TOPIC: &str = "redrive.topic";
/// On redriven records: its partition there.
pub const REDRIVE_PARTITION: &str = "redrive.partition";
/// On redriven records: its offset there.
pub const REDRIVE_OFFSET: &str = "redrive.offset";
/// On redriven records: the offset of the dead letter it was redriven from.
pub const REDRIVE_DLQ_OFFSET: &str = "redrive.dlq_offset";
/// On redriven records: the id of the audit entry of the redrive.
pub const REDRIVE_AUDIT_ID: &str = "redrive.audit_id";
