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
    /// A codec for the registry at `registry_url` (`http://HOST:PORT`).
    pub fn new(registry_url: &str) -> Self {
        let url = registry_url.trim_end_matches('/').to_owned();
        Self {
            encoder: AvroEncoder::new(SrSettings::new(url.clone())),
            decoder: AvroDecoder::new(SrSettings::new(url.clone())),
            registry_url: url,
        }
    }

    /// The registry's base URL (`http://HOST:PORT`, no trailing slash), for probes.
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
