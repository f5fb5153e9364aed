//! The wire contract of notesaga: every command and event as a Rust type, the Avro
//! schema (`schemas/<domain>/<Type>.avsc`) each one is written with, the topic names,
//! the header names and the deterministic ids.
//!
//! Layout: [`topics`] and [`headers`] name what is on the log ([`asyncapi`] describes it
//! all as an AsyncAPI 3.0 document); [`ids`] derives event,
//! saga and command ids; [`record`] holds the [`Record`] and [`Message`] traits that tie
//! a type to its schema; [`notes`], [`embedding`], [`narration`] and [`saga`] hold the
//! record types and, per topic, the enum of what may appear on it. This crate does no
//! I/O: the log layer (`notesaga-log`) encodes these types in the Confluent wire format.

pub mod asyncapi;
pub mod embedding;
pub mod headers;
pub mod ids;
pub mod narration;
pub mod notes;
pub mod record;
pub mod saga;
pub mod topics;

pub use record::{Error, Message, Record, Result};

/// Milliseconds since the Unix epoch, the unit of every `occurred_at` field.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Serde adapter writing a [`uuid::Uuid`] as its canonical hyphenated string, which is
/// what the schemas declare, whatever the serializer's human-readable setting.
pub mod uuid_string {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    /// Writes the canonical string.
    pub fn serialize<S: Serializer>(id: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&id.hyphenated().to_string())
    }

    /// Reads and validates the canonical string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(deserializer)?;
        Uuid::parse_str(&text).map_err(|err| D::Error::custom(format!("bad UUID {text:?}: {err}")))
    }
}
