//! Dead letters: a record that cannot be handled goes to `<group>.dlq` with its key, value
//! and headers untouched, plus `dlq.*` headers saying where it came from and why.

use notesaga_events::{headers as h, topics::dlq_topic};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, Message as _, OwnedHeaders};

use crate::{producer::Appended, retry::Attempt, Publisher, Result, RetryPolicy};

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
    publisher
        .send_raw(&dlq_topic(group), message.key(), message.payload(), headers)
        .await
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
