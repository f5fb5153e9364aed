//! Dead letters: a record that cannot be handled goes to `<group>.dlq` with its key, value
//! and headers untouched, plus `dlq.*` headers saying where it came from and why.

use notesaga_events::{headers as h, topics::dlq_topic};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};

use crate::{
    producer::Appended, retry::Attempt, telemetry::DEAD_LETTERS_TOTAL, Publisher, Result,
    RetryPolicy,
};

/// Appends `message` to the DLQ of `group` with `error`.
pub async fn dead_letter(
    publisher: &Publisher,
    group: &str,
    message: &BorrowedMessage<'_>,
    error: &str,
) -> Result<Appended> {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter() {
            headers = headers.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    for (key, value) in [
        (h::DLQ_ERROR, error),
        (h::DLQ_TOPIC, message.topic()),
        (h::DLQ_PARTITION, partition.as_str()),
        (h::DLQ_OFFSET, offset.as_str()),
        (h::DLQ_GROUP, group),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let appended = publisher
        .send_raw(&dlq_topic(group), message.key(), message.payload(), headers)
        .await?;
    let topic = crate::redrive::source_topic(message.topic(), message.headers());
    metrics::counter!(DEAD_LETTERS_TOTAL, "group" => group.to_owned(), "topic" => topic)
        .increment(1);
    Ok(appended)
}

/// Registers the dead-letter series of `group` at 0 (no `topic` label: the series of a
/// group with no dead letter yet), so `/metrics` names it before the first one.
pub fn register_metrics(group: &str) {
    metrics::counter!(DEAD_LETTERS_TOTAL, "group" => group.to_owned(), "topic" => "").increment(0);
}

/// [`dead_letter`] retried with `retry`. A record may only be moved past once it is
/// handled or dead-lettered, so a caller stops when even this fails.
pub async fn dead_letter_durably(
    publisher: &Publisher,
    group: &str,
    message: &BorrowedMessage<'_>,
    error: &str,
    retry: &RetryPolicy,
) -> Result<Appended> {
    retry
        .run(|_| async {
            dead_letter(publisher, group, message, error)
                .await
                .map_err(|error| Attempt::Transient { error, after: None })
        })
        .await
}
