//! The records of the `_schemas` topic, in Confluent Schema Registry's own format so that
//! analysts' tools (and a Confluent registry pointed at the same topic) recognise them.
//!
//! Keys are JSON objects whose bytes must be identical for the same logical key, or
//! compaction would keep stale values: they are serialised from structs, whose field
//! order is fixed, in the order Confluent writes them.

use serde::{Deserialize, Serialize};

use crate::compat::CompatibilityLevel;

/// The schema type Confluent assumes when a record or request names none.
pub(crate) const AVRO: &str = "AVRO";

/// One decoded record of the topic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// A version of a subject was registered or (soft-)deleted.
    Schema(SchemaValue),
    /// A version was permanently deleted (the key's tombstone).
    SchemaTombstone { subject: String, version: u32 },
    /// A compatibility level was set; `subject: None` is the global one.
    Config {
        subject: Option<String>,
        level: CompatibilityLevel,
    },
    /// A compatibility level was removed (the key's tombstone).
    ConfigTombstone { subject: Option<String> },
    /// A record that changes nothing: Confluent's `NOOP` marker, which this registry also
    /// appends to learn where the topic ends, or a key type it does not act on (`MODE`,
    /// `DELETE_SUBJECT`, ...).
    Noop,
}

/// The value of a `SCHEMA` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SchemaValue {
    pub(crate) subject: String,
    pub(crate) version: u32,
    pub(crate) id: u32,
    pub(crate) schema: String,
    #[serde(default)]
    pub(crate) deleted: bool,
    /// Absent for Avro, as Confluent writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema_type: Option<String>,
    /// Kept opaque: this registry does not resolve references, but a topic written by
    /// Confluent may hold them and they are part of what makes two registrations equal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) references: Vec<serde_json::Value>,
}

impl SchemaValue {
    pub(crate) fn schema_type(&self) -> &str {
        self.schema_type.as_deref().unwrap_or(AVRO)
    }
}

#[derive(Serialize)]
struct SchemaKeyOut<'a> {
    keytype: &'static str,
    subject: &'a str,
    version: u32,
    magic: u8,
}

#[derive(Serialize)]
struct ConfigKeyOut<'a> {
    keytype: &'static str,
    subject: Option<&'a str>,
    magic: u8,
}

#[derive(Serialize)]
struct ConfigValueOut {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: &'static str,
}

#[derive(Deserialize)]
struct KeyIn {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Deserialize)]
struct ConfigValueIn {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

/// A record that is not in the expected format; the caller logs and skips it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The record has no key.
    #[error("record has no key")]
    MissingKey,
    /// Key or value is not the JSON expected for its key type.
    #[error("malformed {part}: {source}")]
    Json {
        part: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A `SCHEMA` key without a subject or version.
    #[error("SCHEMA key without subject or version")]
    IncompleteKey,
    /// A `SCHEMA` value whose subject or version differs from its key's.
    #[error(
        "SCHEMA value for {value_subject}/{value_version} under key {key_subject}/{key_version}"
    )]
    KeyMismatch {
        key_subject: String,
        key_version: u32,
        value_subject: String,
        value_version: u32,
    },
    /// A `CONFIG` value naming a level Confluent does not define.
    #[error("unknown compatibility level {0:?}")]
    UnknownLevel(String),
}

/// Decodes one record of the topic; a `None` value is a tombstone.
pub(crate) fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Record, DecodeError> {
    let key = key.ok_or(DecodeError::MissingKey)?;
    let key: KeyIn = serde_json::from_slice(key).map_err(|source| DecodeError::Json {
        part: "key",
        source,
    })?;
    match key.keytype.as_str() {
        "SCHEMA" => {
            let (Some(subject), Some(version)) = (key.subject, key.version) else {
                return Err(DecodeError::IncompleteKey);
            };
            let Some(value) = value else {
                return Ok(Record::SchemaTombstone { subject, version });
            };
            let value: SchemaValue =
                serde_json::from_slice(value).map_err(|source| DecodeError::Json {
                    part: "SCHEMA value",
                    source,
                })?;
            if value.subject != subject || value.version != version {
                return Err(DecodeError::KeyMismatch {
                    key_subject: subject,
                    key_version: version,
                    value_subject: value.subject,
                    value_version: value.version,
                });
            }
            Ok(Record::Schema(value))
        }
        "CONFIG" => {
            let Some(value) = value else {
                return Ok(Record::ConfigTombstone {
                    subject: key.subject,
                });
            };
            let value: ConfigValueIn =
                serde_json::from_slice(value).map_err(|source| DecodeError::Json {
                    part: "CONFIG value",
                    source,
                })?;
            let level = value
                .compatibility_level
                .parse()
                .map_err(|_| DecodeError::UnknownLevel(value.compatibility_level))?;
            Ok(Record::Config {
                subject: key.subject,
                level,
            })
        }
        _ => Ok(Record::Noop),
    }
}

/// Encodes a record as (key, value) bytes; `None` value is a tombstone.
pub(crate) fn encode(record: &Record) -> (Vec<u8>, Option<Vec<u8>>) {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no
    // fallible `Serialize` impls.
    fn json(value: &impl Serialize) -> Vec<u8> {
        serde_json::to_vec(value).unwrap_or_else(|err| unreachable!("plain struct: {err}"))
    }
    let schema_key = |subject: &str, version: u32| {
        json(&SchemaKeyOut {
            keytype: "SCHEMA",
            subject,
            version,
            magic: 1,
        })
    };
    let config_key = |subject: Option<&str>| {
        json(&ConfigKeyOut {
            keytype: "CONFIG",
            subject,
            magic: 0,
        })
    };
    match record {
        Record::Schema(value) => (schema_key(&value.subject, value.version), Some(json(value))),
        Record::SchemaTombstone { subject, version } => (schema_key(subject, *version), None),
        Record::Config { subject, level } => (
            config_key(subject.as_deref()),
            Some(json(&ConfigValueOut {
                compatibility_level: level.as_str(),
            })),
        ),
        Record::ConfigTombstone { subject } => (config_key(subject.as_deref()), None),
        Record::Noop => (
            json(&serde_json::json!({"keytype": "NOOP", "magic": 0})),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).expect("utf-8")
    }

    fn schema_value(deleted: bool) -> SchemaValue {
        SchemaValue {
            subject: "notes.events-notesaga.notes.NoteCreated".into(),
            version: 2,
            id: 7,
            schema: r#"{"type":"string"}"#.into(),
            deleted,
            schema_type: None,
            references: Vec::new(),
        }
    }

    #[test]
    fn schema_record_has_confluent_bytes() {
        let (key, value) = encode(&Record::Schema(schema_value(false)));
        assert_eq!(
            text(&key),
            r#"{"keytype":"SCHEMA","subject":"notes.events-notesaga.notes.NoteCreated","version":2,"magic":1}"#
        );
        assert_eq!(
            text(&value.expect("value")),
            r#"{"subject":"notes.events-notesaga.notes.NoteCreated","version":2,"id":7,"schema":"{\"type\":\"string\"}","deleted":false}"#
        );
    }

    #[test]
    fn config_records_have_confluent_bytes() {
        let (key, value) = encode(&Record::Config {
            subject: None,
            level: CompatibilityLevel::Full,
        });
        assert_eq!(
            text(&key),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
        assert_eq!(
            text(&value.expect("value")),
            r#"{"compatibilityLevel":"FULL"}"#
        );
        let (key, value) = encode(&Record::ConfigTombstone {
            subject: Some("s".into()),
        });
        assert_eq!(
            text(&key),
            r#"{"keytype":"CONFIG","subject":"s","magic":0}"#
        );
        assert_eq!(value, None);
    }

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Schema(schema_value(false)),
            Record::Schema(schema_value(true)),
            Record::Schema(SchemaValue {
                schema_type: Some("PROTOBUF".into()),
                references: vec![serde_json::json!({"name": "a", "subject": "b", "version": 1})],
                ..schema_value(false)
            }),
            Record::SchemaTombstone {
                subject: "s".into(),
                version: 3,
            },
            Record::Config {
                subject: Some("s".into()),
                level: CompatibilityLevel::BackwardTransitive,
            },
            Record::Config {
                subject: None,
                level: CompatibilityLevel::None,
            },
            Record::ConfigTombstone { subject: None },
            Record::Noop,
        ];
        for record in records {
            let (key, value) = encode(&record);
            let decoded = decode(Some(&key), value.as_deref()).expect("decodes");
            assert_eq!(decoded, record);
        }
    }

    #[test]
    fn reads_what_confluent_writes() {
        // Field order and extra fields as Confluent 7.x writes them.
        let key = br#"{"subject":"s","version":1,"magic":1,"keytype":"SCHEMA"}"#;
        let value = br#"{"subject":"s","version":1,"id":3,"schemaType":"AVRO","schema":"\"string\"","deleted":false,"metadata":null,"ruleSet":null}"#;
        let Record::Schema(decoded) = decode(Some(key), Some(value)).expect("decodes") else {
            panic!("not a schema record");
        };
        assert_eq!((decoded.id, decoded.schema_type()), (3, AVRO));

        let noop = br#"{"keytype":"NOOP","magic":0}"#;
        assert_eq!(decode(Some(noop), None).expect("decodes"), Record::Noop);
        let mode = br#"{"keytype":"MODE","subject":null,"magic":0}"#;
        let value = br#"{"mode":"READWRITE"}"#;
        assert_eq!(
            decode(Some(mode), Some(value)).expect("decodes"),
            Record::Noop
        );
    }

    #[test]
    fn rejects_malformed_records() {
        assert!(matches!(decode(None, None), Err(DecodeError::MissingKey)));
        assert!(matches!(
            decode(Some(b"not json"), None),
            Err(DecodeError::Json { part: "key", .. })
        ));
        assert!(matches!(
            decode(Some(br#"{"keytype":"SCHEMA","magic":1}"#), None),
            Err(DecodeError::IncompleteKey)
        ));
        let key = br#"{"keytype":"SCHEMA","subject":"a","version":1,"magic":1}"#;
        let value = br#"{"subject":"b","version":1,"id":1,"schema":"\"int\""}"#;
        assert!(matches!(
            decode(Some(key), Some(value)),
            Err(DecodeError::KeyMismatch { .. })
        ));
        let key = br#"{"keytype":"CONFIG","subject":null,"magic":0}"#;
        assert!(matches!(
            decode(Some(key), Some(br#"{"compatibilityLevel":"SIDEWAYS"}"#)),
            Err(DecodeError::UnknownLevel(_))
        ));
    }
}
