//! What the operator commands that read Kafka directly share (`tail`, `note history`,
//! `dlq`): where the broker and the registry are, reading partitions from a start up to
//! the high watermarks read at the start (or on and on with `follow`), and a record as
//! one JSON object, decoded through the registry.
//!
//! They read outside any consumer group (a fresh `group.id` that commits nothing), so
//! they never take partitions from the roles or move a group's offsets.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use notesaga_log::{AvroCodec, KafkaConfig};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _, StreamConsumer},
    message::{Headers as _, Message as _},
    Offset, TopicPartitionList,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dev::NodeFile;

/// How long the broker gets to answer a metadata or watermark request.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the log and the registry are: flags (or their variables) first, then the
/// running single node's `node.json`, then the single node's defaults — as for
/// `notesaga check`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LogArgs {
    /// Kafka bootstrap servers; default: node.json's `kafka_addr`, else 127.0.0.1:9092.
    #[arg(long, env = "NOTESAGA_KAFKA_ADDR", global = true)]
    pub(crate) kafka_addr: Option<String>,
    /// Schema registry, HOST:PORT or URL; default: node.json's `registry_addr`, else
    /// 127.0.0.1:8081.
    #[arg(
        long,
        alias = "registry-url",
        env = "NOTESAGA_REGISTRY_ADDR",
        global = true
    )]
    pub(crate) registry_addr: Option<String>,
    /// Data directory of a running `notesaga dev` (its node.json says where the broker
    /// and the registry are); used for what the flags do not give.
    #[arg(
        long,
        env = "NOTESAGA_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub(crate) data_dir: PathBuf,
}

/// An open connection to the log and the registry.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    pub(crate) kafka: KafkaConfig,
    pub(crate) kafka_addr: String,
    pub(crate) codec: Arc<AvroCodec>,
}

impl LogArgs {
    /// The broker and registry these arguments name.
    pub(crate) fn open(&self) -> Result<Log> {
        let node = NodeFile::read(&self.data_dir)?;
        let kafka_addr = self
            .kafka_addr
            .clone()
            .or_else(|| node.as_ref().map(|n| n.kafka_addr.clone()))
            .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
        let registry = self
            .registry_addr
            .clone()
            .or_else(|| node.as_ref().map(|n| n.registry_addr.clone()))
            .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
        let registry_url = if registry.contains("://") {
            registry
        } else {
            format!("http://{registry}")
        };
        Ok(Log {
            kafka: KafkaConfig::new(&kafka_addr),
            kafka_addr,
            codec: Arc::new(AvroCodec::new(&registry_url)),
        })
    }
}

/// Where reading starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The first record still kept.
    Beginning,
    /// One partition only, from this offset.
    Offset { partition: i32, offset: i64 },
    /// The first record at or after this time (milliseconds since the epoch).
    Time(i64),
}

/// Parses `--from-offset PARTITION:OFFSET`.
pub(crate) fn parse_partition_offset(raw: &str) -> Result<(i32, i64), String> {
    let (partition, offset) = raw
        .split_once(':')
        .ok_or_else(|| format!("{raw:?} is not PARTITION:OFFSET (e.g. 0:42)"))?;
    let partition = partition
        .trim()
        .parse::<i32>()
        .map_err(|err| format!("partition {partition:?}: {err}"))?;
    let offset = offset
        .trim()
        .parse::<i64>()
        .map_err(|err| format!("offset {offset:?}: {err}"))?;
    if partition < 0 || offset < 0 {
        return Err(format!("{raw:?}: partition and offset are never negative"));
    }
    Ok((partition, offset))
}

/// Parses a time: RFC 3339 (`2026-12-04T17:00:00Z`) or milliseconds since the epoch.
pub(crate) fn parse_time(raw: &str) -> Result<i64, String> {
    if let Ok(millis) = raw.trim().parse::<i64>() {
        return Ok(millis);
    }
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|at| at.timestamp_millis())
        .map_err(|err| {
            format!("{raw:?} is neither RFC 3339 nor milliseconds since the epoch: {err}")
        })
}

/// One record as read, before any decoding.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRecord {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Milliseconds since the epoch (the record's create or append time).
    pub(crate) timestamp: Option<i64>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    /// In the order the record carries them (a key may repeat).
    pub(crate) headers: Vec<(String, Option<String>)>,
}

impl RawRecord {
    fn from_message(message: &impl rdkafka::message::Message) -> Self {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The key as text (note ids are UTF-8 UUID strings).
    pub(crate) fn key_text(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The last value of header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The record as one JSON object: coordinates, timestamp, key, headers, the schema
    /// id and, with `decoded`, the record name and value (else the value in base64).
    pub(crate) fn to_json(
        &self,
        decoded: Option<Result<notesaga_log::codec::DecodedJson, String>>,
    ) -> Value {
        let mut headers = serde_json::Map::new();
        for (key, value) in &self.headers {
            headers.insert(
                key.clone(),
                value.clone().map_or(Value::Null, Value::String),
            );
        }
        let mut out = json!({
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "time": self.timestamp.and_then(DateTime::<Utc>::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            "key": self.key_text(),
            "headers": headers,
            "schema_id": self.value.as_deref().and_then(notesaga_log::codec::schema_id),
        });
        match decoded {
            Some(Ok(decoded)) => {
                out["record"] = json!(decoded.record);
                out["value"] = decoded.value;
            }
            Some(Err(reason)) => {
                out["decode_error"] = json!(reason);
                out["value_base64"] = json!(self.base64_value());
            }
            None => out["value_base64"] = json!(self.base64_value()),
        }
        out
    }

    fn base64_value(&self) -> Option<String> {
        self.value
            .as_deref()
            .map(|v| base64::engine::general_purpose::STANDARD.encode(v))
    }
}

impl Log {
    /// How many partitions `topic` has; an error naming the topic when it does not exist.
    pub(crate) async fn partitions(&self, topic: &str) -> Result<i32> {
        let config = self.kafka.client();
        let topic = topic.to_owned();
        let addr = self.kafka_addr.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create()?;
            let metadata = consumer
                .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
                .map_err(|err| anyhow!("cannot reach the Kafka broker at {addr} (--kafka-addr / NOTESAGA_KAFKA_ADDR): {err}"))?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    Ok(i32::try_from(t.partitions().len())?)
                }
                _ => bail!("the broker at {addr} has no topic {topic}"),
            }
        })
        .await?
    }

    /// Every topic the broker holds.
    pub(crate) async fn topics(&self) -> Result<Vec<String>> {
        let config = self.kafka.client();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create()?;
            let metadata = consumer.fetch_metadata(None, BROKER_TIMEOUT)?;
            Ok(metadata
                .topics()
                .iter()
                .map(|t| t.name().to_owned())
                .collect())
        })
        .await?
    }

    fn reader_config(&self) -> rdkafka::ClientConfig {
        let mut config = self.kafka.client();
        config
            .set(
                "group.id",
                format!("notesaga.reader.{}", Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        config
    }

    /// Reads `topics` from `start`; each record goes to `sink` in its partition's order
    /// (partitions interleave). Without `follow` it stops once every partition reached
    /// the high watermark it had when reading began; with it, at `shutdown`.
    pub(crate) async fn scan(
        &self,
        topics: &[String],
        start: Start,
        follow: bool,
        shutdown: &CancellationToken,
        mut sink: impl FnMut(RawRecord) -> Result<()>,
    ) -> Result<()> {
        let config = self.reader_config();
        let mut plan: Vec<(String, i32, i64, i64)> = Vec::new();
        for topic in topics {
            let count = self.partitions(topic).await?;
            for partition in 0..count {
                if let Start::Offset { partition: p, .. } = start {
                    if p != partition {
                        continue;
                    }
                }
                let (low, high) =
                    notesaga_log::reader::watermarks(&config, topic, partition).await?;
                plan.push((topic.clone(), partition, low, high));
            }
            if let Start::Offset { partition, .. } = start {
                if partition >= count {
                    bail!("{topic} has {count} partitions; there is no partition {partition}");
                }
            }
        }
        let starts = self.start_offsets(&config, &plan, start).await?;
        let mut assignment = TopicPartitionList::new();
        // (topic, partition) → the offset reading stops before.
        let mut pending: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for ((topic, partition, _, high), from) in plan.iter().zip(&starts) {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(*from))?;
            if *from < *high {
                pending.insert((topic.clone(), *partition), *high);
            }
        }
        if pending.is_empty() && !follow {
            return Ok(());
        }
        let consumer: StreamConsumer = config.create()?;
        consumer.assign(&assignment)?;
        loop {
            if pending.is_empty() && !follow {
                return Ok(());
            }
            let message = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = consumer.recv() => message?,
            };
            let key = (message.topic().to_owned(), message.partition());
            let offset = message.offset();
            if let Some(&high) = pending.get(&key) {
                if offset + 1 >= high {
                    pending.remove(&key);
                }
                if offset >= high && !follow {
                    continue;
                }
            } else if !follow {
                continue;
            }
            sink(RawRecord::from_message(&message))?;
        }
    }

    /// The offset each planned partition starts at.
    async fn start_offsets(
        &self,
        config: &rdkafka::ClientConfig,
        plan: &[(String, i32, i64, i64)],
        start: Start,
    ) -> Result<Vec<i64>> {
        match start {
            Start::Beginning => Ok(plan.iter().map(|&(_, _, low, _)| low).collect()),
            Start::Offset { offset, .. } => Ok(plan
                .iter()
                .map(|&(_, _, low, high)| offset.clamp(low, high))
                .collect()),
            Start::Time(millis) => {
                let mut query = TopicPartitionList::new();
                for (topic, partition, _, _) in plan {
                    query.add_partition_offset(topic, *partition, Offset::Offset(millis))?;
                }
                let config = config.clone();
                let found = tokio::task::spawn_blocking(move || {
                    let consumer: BaseConsumer = config.create()?;
                    consumer.offsets_for_times(query, BROKER_TIMEOUT)
                })
                .await?
                .context("cannot look up offsets by time")?;
                Ok(plan
                    .iter()
                    .map(|(topic, partition, _, high)| {
                        match found.find_partition(topic, *partition).map(|e| e.offset()) {
                            Some(Offset::Offset(o)) if o >= 0 => o,
                            // No record at or after that time: nothing to read there.
                            _ => *high,
                        }
                    })
                    .collect())
            }
        }
    }

    /// Decodes a record's value through the registry (`None` without a value).
    pub(crate) async fn decode(
        &self,
        record: &RawRecord,
    ) -> Option<Result<notesaga_log::codec::DecodedJson, String>> {
        record.value.as_ref()?;
        Some(self.codec.decode_json(record.value.as_deref()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_offsets_and_times_parse() {
        assert_eq!(parse_partition_offset("3:42"), Ok((3, 42)));
        assert!(parse_partition_offset("3").is_err());
        assert!(parse_partition_offset("-1:4").is_err());
        assert!(parse_partition_offset("a:4").is_err());
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn a_record_renders_as_json_with_its_coordinates() {
        let record = RawRecord {
            topic: "notes.events".into(),
            partition: 2,
            offset: 9,
            timestamp: Some(1_700_000_000_000),
            key: Some(b"k".to_vec()),
            value: Some(vec![0, 0, 0, 0, 7, 1]),
            headers: vec![
                ("event_type".into(), Some("NoteCreated".into())),
                ("dlq.error".into(), Some("first".into())),
                ("dlq.error".into(), Some("second".into())),
            ],
        };
        assert_eq!(record.header("dlq.error"), Some("second"));
        let raw = record.to_json(None);
        assert_eq!(raw["schema_id"], 7);
        assert_eq!(raw["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(raw["headers"]["event_type"], "NoteCreated");
        assert_eq!(raw["value_base64"], "AAAAAAcB");
        let decoded = record.to_json(Some(Ok(notesaga_log::codec::DecodedJson {
            schema_id: 7,
            record: Some("notesaga.notes.NoteCreated".into()),
            value: json!({"version": 1}),
        })));
        assert_eq!(decoded["record"], "notesaga.notes.NoteCreated");
        assert_eq!(decoded["value"]["version"], 1);
        assert!(decoded.get("value_base64").is_none());
    }
}
