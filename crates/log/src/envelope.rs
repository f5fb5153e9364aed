//! The headers every record carries (names in `notesaga_events::headers`).

use chrono::{DateTime, SecondsFormat, Utc};
use notesaga_events::{headers as h, ids};
use rdkafka::message::{BorrowedMessage, Header, Message as _, OwnedHeaders};
use uuid::Uuid;

/// Who a record is and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// The record's own id.
    pub event_id: Uuid,
    /// The command that caused it (on commands, outcomes and the events a command caused).
    pub command_id: Option<Uuid>,
    /// Shared by everything one client request caused.
    pub correlation_id: String,
    /// The record that caused this one.
    pub causation_id: Option<String>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// W3C trace context.
    pub traceparent: Option<String>,
}

impl Metadata {
    /// Metadata of a record that starts a chain (e.g. a command from an API request).
    pub fn new(event_id: Uuid, correlation_id: impl Into<String>) -> Self {
        Self {
            event_id,
            command_id: None,
            correlation_id: correlation_id.into(),
            causation_id: None,
            occurred_at: Utc::now(),
            traceparent: Some(new_traceparent()),
        }
    }

    /// Metadata of a record with id `event_id` caused by the record this describes: same
    /// correlation and trace, causation pointing here.
    pub fn caused(&self, event_id: Uuid) -> Self {
        Self {
            event_id,
            command_id: None,
            correlation_id: self.correlation_id.clone(),
            causation_id: Some(self.event_id.to_string()),
            occurred_at: Utc::now(),
            traceparent: self.traceparent.clone(),
        }
    }

    /// The command this record is or belongs to: its `command_id` header, or, for a
    /// command from a producer that sets none, the record's own id.
    pub fn command(&self) -> Uuid {
        self.command_id.unwrap_or(self.event_id)
    }

    /// Metadata of the `index`-th event caused by the command `command_id` that this
    /// describes (ids derived from the command, so a re-run yields the same ids).
    pub fn command_event(&self, command_id: Uuid, index: usize) -> Self {
        self.caused(ids::event_id(command_id, index))
            .with_command(command_id)
    }

    /// The same metadata naming the command it belongs to.
    pub fn with_command(mut self, command_id: Uuid) -> Self {
        self.command_id = Some(command_id);
        self
    }

    /// Kafka headers for a record of type `event_type`.
    pub fn to_headers(&self, event_type: &str) -> OwnedHeaders {
        let event_id = self.event_id.to_string();
        let occurred_at = self
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let command_id = self.command_id.map(|id| id.to_string());
        let mut headers = OwnedHeaders::new()
            .insert(header(h::EVENT_TYPE, event_type))
            .insert(header(h::EVENT_ID, &event_id))
            .insert(header(h::CORRELATION_ID, &self.correlation_id))
            .insert(header(h::OCCURRED_AT, &occurred_at));
        if let Some(command_id) = &command_id {
            headers = headers.insert(header(h::COMMAND_ID, command_id));
        }
        if let Some(causation_id) = &self.causation_id {
            headers = headers.insert(header(h::CAUSATION_ID, causation_id));
        }
        if let Some(traceparent) = &self.traceparent {
            headers = headers.insert(header(h::TRACEPARENT, traceparent));
        }
        headers
    }

    /// Reads a consumed record's headers; a record without an `event_id` header gets an
    /// id derived from its coordinates, so every reading of it agrees.
    pub fn from_message(message: &BorrowedMessage<'_>) -> (Option<String>, Self) {
        let coordinates = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        let fallback_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, coordinates.as_bytes());
        Self::from_headers(message.headers(), fallback_id)
    }

    /// Reads the headers of a consumed record. Records from other producers may lack
    /// some: a missing event id becomes `fallback_id` (derive it from the record's
    /// coordinates so it is stable), a missing correlation id becomes the event id.
    pub fn from_headers<H: rdkafka::message::Headers>(
        headers: Option<&H>,
        fallback_id: Uuid,
    ) -> (Option<String>, Self) {
        let get = |name: &str| -> Option<String> {
            let headers = headers?;
            headers
                .iter()
                .find(|header| header.key == name)
                .and_then(|header| header.value)
                .and_then(|value| std::str::from_utf8(value).ok())
                .map(str::to_owned)
        };
        let event_id = get(h::EVENT_ID)
            .and_then(|id| Uuid::parse_str(&id).ok())
            .unwrap_or(fallback_id);
        let metadata = Self {
            event_id,
            command_id: get(h::COMMAND_ID).and_then(|id| Uuid::parse_str(&id).ok()),
            correlation_id: get(h::CORRELATION_ID).unwrap_or_else(|| event_id.to_string()),
            causation_id: get(h::CAUSATION_ID),
            occurred_at: get(h::OCCURRED_AT)
                .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                .map_or_else(Utc::now, |at| at.with_timezone(&Utc)),
            traceparent: get(h::TRACEPARENT),
        };
        (get(h::EVENT_TYPE), metadata)
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// A fresh W3C `traceparent` (version 00, sampled).
pub fn new_traceparent() -> String {
    let trace = Uuid::new_v4().simple().to_string();
    let span = &Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let meta = Metadata::new(Uuid::new_v4(), "req-1").with_command(Uuid::new_v4());
        let child = meta.caused(Uuid::new_v4());
        let headers = child.to_headers("NoteCreated");
        let (event_type, read) = Metadata::from_headers(Some(&headers), Uuid::nil());
        assert_eq!(event_type.as_deref(), Some("NoteCreated"));
        assert_eq!(read.event_id, child.event_id);
        assert_eq!(read.correlation_id, "req-1");
        assert_eq!(read.causation_id, Some(meta.event_id.to_string()));
        assert_eq!(read.traceparent, meta.traceparent);
        assert_eq!(
            read.occurred_at.timestamp_millis(),
            child.occurred_at.timestamp_millis()
        );
    }

    #[test]
    fn missing_headers_fall_back() {
        let fallback = Uuid::new_v4();
        let (event_type, read) = Metadata::from_headers::<OwnedHeaders>(None, fallback);
        assert_eq!(event_type, None);
        assert_eq!(read.event_id, fallback);
        assert_eq!(read.correlation_id, fallback.to_string());
    }
}
