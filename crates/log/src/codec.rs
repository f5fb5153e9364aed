//! Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro
//! payload), encoded and decoded with `schema_registry_converter` against the registry.
//! Subjects follow TopicRecordNameStrategy: `<topic>-<full record name>`.

use apache_avro::types::Value;
use notesaga_events::Message;
use schema_registry_converter::{
    async_impl::{
        avro::{AvroDecoder, AvroEncoder},
        schema_registry::SrSettings,
    },
    schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema},
};

use crate::{Error, Result};

/// A type the consumer loop can decode records into: one topic's [`Message`] enum, or a
/// role's own enum over the several topics it consumes.
pub trait Inbound: Sized + Send + 'static {
    /// Reads the decoded record, whose schema has `full_name`, that arrived on `topic`.
    fn decode(topic: &str, full_name: &str, value: &Value) -> notesaga_events::Result<Self>;
}

impl<M: Message> Inbound for M {
    fn decode(_topic: &str, full_name: &str, value: &Value) -> notesaga_events::Result<Self> {
        M::from_avro(full_name, value)
    }
}

/// Encoder and decoder sharing one registry; both cache schemas and ids.
#[derive(Debug)]
pub struct AvroCodec {
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    registry_url: String,
}

fn strategy<M: Message>(topic: &str, message: &M) -> SubjectNameStrategy {
    SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.to_owned(),
        SuppliedSchema::new(
            Some(message.full_name()),
            SchemaType::Avro,
            message.schema().to_owned(),
        ),
    )
}

impl AvroCodec {
    /// A codec for the registry at `registry_url` (`http://HOST:PORT`). Credentials in
    /// the URL (`http://USER:PASSWORD@HOST:PORT`, percent-encoded, as
    /// [`registry_url_with_user_info`] writes them) are sent as HTTP basic authentication,
    /// as Confluent's clients send `basic.auth.user.info`, to any compatible registry.
    pub fn new(registry_url: &str) -> Self {
        let (url, user_info) = split_user_info(registry_url.trim_end_matches('/'));
        let settings = || {
            let mut builder = SrSettings::new_builder(url.clone());
            if let Some((user, password)) = &user_info {
                builder.set_basic_authorization(user, Some(password));
            }
            // Only a malformed URL fails here, and a URL is not checked anywhere else
            // before the first request; that request reports it.
            builder
                .build()
                .unwrap_or_else(|_| SrSettings::new(url.clone()))
        };
        Self {
            encoder: AvroEncoder::new(settings()),
            decoder: AvroDecoder::new(settings()),
            registry_url: url.clone(),
        }
    }

    /// The registry's base URL (`http://HOST:PORT`, no trailing slash, no credentials),
    /// for probes and logs.
    pub fn registry_url(&self) -> &str {
        &self.registry_url
    }

    /// Encodes `message` for `topic`, registering its schema on first use.
    pub async fn encode<M: Message>(&self, topic: &str, message: &M) -> Result<Vec<u8>> {
        self.encoder
            .encode_struct(message, &strategy(topic, message))
            .await
            .map_err(|err| Error::Encode {
                topic: topic.to_owned(),
                full_name: message.full_name(),
                reason: err.to_string(),
            })
    }

    /// Decodes a payload read from `topic` into `M`. The error says which of the wire
    /// format's layers was wrong, for the dead-letter record.
    pub async fn decode<M: Inbound>(
        &self,
        topic: &str,
        payload: Option<&[u8]>,
    ) -> std::result::Result<M, String> {
        let bytes = payload.ok_or("record has no value")?;
        match bytes.first() {
            Some(0) if bytes.len() >= 5 => {}
            Some(0) => return Err(format!("value of {} bytes is too short", bytes.len())),
            Some(magic) => return Err(format!("bad magic byte {magic}, expected 0")),
            None => return Err("value is empty".to_owned()),
        }
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(|err| format!("cannot decode Avro: {err}"))?;
        let name = decoded
            .name
            .ok_or("writer schema is not a named record")?
            .fullname(None);
        M::decode(topic, &name, &decoded.value).map_err(|err| err.to_string())
    }

    /// Decodes any record of the contract (or any Avro record the registry knows) into
    /// JSON, for operator tools that print records rather than handle them
    /// (`notesaga tail --decode`, `notesaga note history`, `notesaga dlq show`).
    pub async fn decode_json(
        &self,
        payload: Option<&[u8]>,
    ) -> std::result::Result<DecodedJson, String> {
        let bytes = payload.ok_or("record has no value")?;
        let schema_id = schema_id(bytes).ok_or_else(|| match bytes.first() {
            Some(0) | None => format!("value of {} bytes is too short", bytes.len()),
            Some(magic) => format!("bad magic byte {magic}, expected 0"),
        })?;
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(|err| format!("cannot decode Avro: {err}"))?;
        let record = decoded.name.map(|name| name.fullname(None));
        let value = serde_json::Value::try_from(decoded.value)
            .map_err(|err| format!("cannot render Avro as JSON: {err}"))?;
        Ok(DecodedJson {
            schema_id,
            record,
            value,
        })
    }

    /// Registers every schema that `M` may carry on `topic`, so the registry lists the
    /// whole contract before the first record is written.
    pub async fn register_all<M: Message>(&self, topic: &str) -> Result<()> {
        for (full_name, schema) in M::schemas() {
            let subject = format!("{topic}-{full_name}");
            let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
                topic.to_owned(),
                SuppliedSchema::new(Some(full_name.clone()), SchemaType::Avro, schema.to_owned()),
            );
            self.encoder
                .get_schema_and_id(&subject, strategy)
                .await
                .map_err(|err| Error::Encode {
                    topic: topic.to_owned(),
                    full_name,
                    reason: err.to_string(),
                })?;
        }
        Ok(())
    }
}

/// Characters left as they are in a URL's user-info part; the rest is percent-encoded.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if is_unreserved(byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with `user_info` (`USER:PASSWORD`, Confluent's `basic.auth.user.info`) as its
/// percent-encoded credentials: the form [`AvroCodec::new`] and `reqwest` read.
pub fn registry_url_with_user_info(url: &str, user_info: Option<&str>) -> String {
    // Without user info, credentials already in the URL are kept.
    let Some((user, password)) = user_info.and_then(|info| info.split_once(':')) else {
        return url.to_owned();
    };
    let (url, _) = split_user_info(url);
    let credentials = format!("{}:{}@", percent_encode(user), percent_encode(password));
    match url.find("://") {
        Some(at) => format!("{}{credentials}{}", &url[..at + 3], &url[at + 3..]),
        None => format!("{credentials}{url}"),
    }
}

/// `url` without credentials, for logs and messages.
pub fn redact_registry_url(url: &str) -> String {
    split_user_info(url).0
}

/// Splits `scheme://USER:PASSWORD@host…` into the URL without them and the decoded pair.
fn split_user_info(url: &str) -> (String, Option<(String, String)>) {
    let start = url.find("://").map_or(0, |at| at + 3);
    let authority_end = url[start..].find('/').map_or(url.len(), |at| start + at);
    let Some(at) = url[start..authority_end].rfind('@').map(|at| start + at) else {
        return (url.to_owned(), None);
    };
    let (user, password) = url[start..at]
        .split_once(':')
        .unwrap_or((&url[start..at], ""));
    let stripped = format!("{}{}", &url[..start], &url[at + 1..]);
    (
        stripped,
        Some((percent_decode(user), percent_decode(password))),
    )
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[test]
    fn credentials_round_trip_through_the_url() {
        let table = [
            (
                "http://r:8081",
                Some("notesaga:s3cret"),
                "http://notesaga:s3cret@r:8081",
            ),
            (
                "http://r:8081",
                Some("a@b:p:w/%"),
                "http://a%40b:p%3Aw%2F%25@r:8081",
            ),
            ("http://r:8081", None, "http://r:8081"),
            ("http://u:p@r:8081", None, "http://u:p@r:8081"),
            ("http://old:pw@r:8081", Some("u:p"), "http://u:p@r:8081"),
        ];
        for (url, info, expected) in table {
            let with = registry_url_with_user_info(url, info);
            assert_eq!(with, expected);
            assert_eq!(redact_registry_url(&with), "http://r:8081");
            let (_, pair) = split_user_info(&with);
            let expected_pair =
                info.or((url == "http://u:p@r:8081").then_some("u:p"))
                    .map(|info| {
                        let (u, p) = info.split_once(':').unwrap();
                        (u.to_owned(), p.to_owned())
                    });
            assert_eq!(pair, expected_pair, "{url} {info:?}");
        }
        // An @ in a path is not a credential.
        assert_eq!(split_user_info("http://r:1/a@b").1, None);
        assert_eq!(
            AvroCodec::new("http://u:p@r:1/").registry_url(),
            "http://r:1"
        );
    }
}

/// A record decoded for printing.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedJson {
    /// The registry's id of the writer schema.
    pub schema_id: u32,
    /// The writer schema's full name (`notesaga.notes.NoteCreated`).
    pub record: Option<String>,
    /// The value as JSON (unions as their branch's value).
    pub value: serde_json::Value,
}

/// The schema id of a value in the Confluent wire format (magic byte 0, 4-byte
/// big-endian id), or `None` when the value is not in that format.
pub fn schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_id_of_the_wire_format() {
        assert_eq!(super::schema_id(&[0, 0, 0, 1, 2, 9]), Some(258));
        assert_eq!(super::schema_id(&[0, 0, 0, 1]), None, "too short");
        assert_eq!(super::schema_id(&[1, 0, 0, 1, 2, 9]), None, "bad magic");
        assert_eq!(super::schema_id(&[]), None);
    }
}
