//! The reading half of `notesaga check`: the log (`saga.note-pipeline`, `notes.events`,
//! every partition from its first record), the embedding store and the audio store.
//!
//! This is the one place that reads another domain's store (see "Checking the
//! invariants" in docs/operations.md), and it only reads.

use std::{collections::BTreeSet, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{anyhow, bail, Context as _, Result};
use notesaga_embedding::EmbeddingStore;
use notesaga_events::{
    notes::NotesEvent,
    saga::SagaEvent,
    topics::{NOTES_EVENTS, SAGA_NOTE_PIPELINE},
};
use notesaga_log::{reader, AvroCodec, Inbound, Incoming, KafkaConfig};
use notesaga_narration::{blob::narration_prefix, Blobs};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::evaluate::{fold_notes, fold_sagas, Snapshot};

/// How long the broker and the registry get to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The topics the check reads, the order it reads them in: a saga's effects (its
/// events) before their causes (the note events), so a change between the two reads
/// shows up as work not yet taken up rather than as a finished saga with no cause.
const TOPICS: [&str; 2] = [SAGA_NOTE_PIPELINE, NOTES_EVENTS];

/// Where to read from.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// Kafka bootstrap servers.
    pub(crate) kafka_addr: String,
    /// Schema registry URL.
    pub(crate) registry_url: String,
    /// The embedding store's database URL.
    pub(crate) embedding_url: String,
    /// Root of the audio blob store, when it is the filesystem.
    pub(crate) audio_dir: PathBuf,
    /// The audio blob store (the filesystem under `audio_dir`, or S3).
    pub(crate) audio: Blobs,
}

/// The low and high watermark of every partition the check reads, in a fixed order:
/// equal before and after a read means nothing was appended meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watermarks(Vec<(&'static str, i32, i64, i64)>);

impl Watermarks {
    fn of(&self, topic: &str, partition: i32) -> Option<(i64, i64)> {
        self.0
            .iter()
            .find(|(t, p, _, _)| *t == topic && *p == partition)
            .map(|&(_, _, low, high)| (low, high))
    }
}

/// What a read found besides the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadStats {
    /// Records that could not be decoded (skipped by the reader, with a log line each).
    pub(crate) undecodable: u64,
    /// Records dropped as duplicates of an event id already read.
    pub(crate) duplicates: usize,
    /// Files in the audio store that are not `narrations/<note>/<version>.wav`.
    pub(crate) foreign_files: Vec<String>,
}

/// Open connections to everything the check reads.
#[derive(Debug)]
pub(crate) struct Sources {
    kafka: KafkaConfig,
    codec: Arc<AvroCodec>,
    partitions: Vec<(&'static str, i32)>,
    embeddings: EmbeddingStore,
    audio: Blobs,
}

impl Sources {
    /// Checks that the broker has the topics and the registry answers, and opens the
    /// embedding store. Fails with what to pass when something cannot be reached.
    pub(crate) async fn open(endpoints: &Endpoints) -> Result<Self> {
        let kafka = KafkaConfig::new(&endpoints.kafka_addr);
        let mut partitions = Vec::new();
        for topic in TOPICS {
            let count = partition_count(&kafka, topic).await.with_context(|| {
                format!(
                    "cannot read {topic} from the Kafka broker at {} (--kafka-addr / NOTESAGA_KAFKA_ADDR)",
                    endpoints.kafka_addr
                )
            })?;
            partitions.extend((0..count).map(|partition| (topic, partition)));
        }
        probe_registry(&endpoints.registry_url).await?;
        let embeddings = EmbeddingStore::connect(&endpoints.embedding_url)
            .await
            .context("cannot open the embedding store")?;
        Ok(Self {
            kafka,
            codec: Arc::new(AvroCodec::new(&endpoints.registry_url)),
            partitions,
            embeddings,
            audio: endpoints.audio.clone(),
        })
    }

    /// The watermarks of every partition read.
    pub(crate) async fn watermarks(&self) -> Result<Watermarks> {
        let mut config = self.kafka.client();
        config.set(
            "group.id",
            format!("notesaga.check.{}", Uuid::new_v4().simple()),
        );
        let mut tasks = JoinSet::new();
        for &(topic, partition) in &self.partitions {
            let config = config.clone();
            tasks.spawn(async move {
                let marks = reader::watermarks(&config, topic, partition).await;
                (topic, partition, marks)
            });
        }
        let mut marks = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (topic, partition, result) = joined?;
            let (low, high) = result
                .with_context(|| format!("cannot read the watermarks of {topic}/{partition}"))?;
            marks.push((topic, partition, low, high));
        }
        marks.sort();
        Ok(Watermarks(marks))
    }

    /// Reads everything once: the saga log, the note log, then the stores. `before` are
    /// the watermarks taken just before, to tell undecodable records from the others.
    pub(crate) async fn snapshot(&self, before: &Watermarks) -> Result<(Snapshot, ReadStats)> {
        let mut stats = ReadStats::default();
        let saga_events = self
            .read_topic::<SagaEvent>(SAGA_NOTE_PIPELINE, before, &mut stats)
            .await?;
        let note_events = self
            .read_topic::<NotesEvent>(NOTES_EVENTS, before, &mut stats)
            .await?;
        let sagas = fold_sagas(
            saga_events
                .iter()
                .map(|e| (e.metadata.event_id, &e.message)),
        );
        let (notes, note_duplicates) = fold_notes(
            note_events
                .iter()
                .map(|e| (e.metadata.event_id, &e.message)),
        );
        stats.duplicates = sagas.duplicates + note_duplicates;

        let embeddings = self
            .embeddings
            .versions()
            .await
            .context("cannot list the embedding store")?
            .into_iter()
            .collect();
        let mut audio = BTreeSet::new();
        let prefix = "narrations";
        let keys = self
            .audio
            .keys(prefix)
            .await
            .context("cannot list the audio store")?;
        for key in keys {
            match parse_narration_key(&key) {
                Some(entry) => {
                    audio.insert(entry);
                }
                None => stats.foreign_files.push(key),
            }
        }
        let snapshot = Snapshot {
            notes,
            sagas,
            embeddings,
            audio,
        };
        Ok((snapshot, stats))
    }

    /// Every record of every partition of `topic`, partition by partition, each in log
    /// order.
    async fn read_topic<M: Inbound + 'static>(
        &self,
        topic: &'static str,
        before: &Watermarks,
        stats: &mut ReadStats,
    ) -> Result<Vec<Incoming<M>>> {
        let mut tasks = JoinSet::new();
        for &(t, partition) in &self.partitions {
            if t != topic {
                continue;
            }
            let (kafka, codec) = (self.kafka.clone(), Arc::clone(&self.codec));
            tasks.spawn(async move {
                let records = reader::read_partition::<M>(&kafka, &codec, topic, partition).await;
                (partition, records)
            });
        }
        let mut partitions = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (partition, records) = joined?;
            let records = records.with_context(|| format!("cannot read {topic}/{partition}"))?;
            if let Some((low, high)) = before.of(topic, partition) {
                let read = records
                    .iter()
                    .filter(|r| (low..high).contains(&r.offset))
                    .count();
                stats.undecodable += u64::try_from(high - low)
                    .unwrap_or(0)
                    .saturating_sub(read as u64);
            }
            partitions.push((partition, records));
        }
        partitions.sort_by_key(|(partition, _)| *partition);
        Ok(partitions
            .into_iter()
            .flat_map(|(_, records)| records)
            .collect())
    }
}

/// (note, version) of a key `narrations/<note>/<version>.wav`.
fn parse_narration_key(key: &str) -> Option<(Uuid, i64)> {
    let rest = key.strip_prefix("narrations/")?;
    let (note, file) = rest.split_once('/')?;
    let version = file.strip_suffix(".wav")?.parse().ok()?;
    let note_id = Uuid::parse_str(note).ok()?;
    // Only the canonical spelling is a key the narration processor writes.
    (narration_prefix(note_id) == format!("narrations/{note}")).then_some((note_id, version))
}

/// How many partitions `topic` has; an error when the broker does not know it.
async fn partition_count(kafka: &KafkaConfig, topic: &'static str) -> Result<i32> {
    let config = kafka.client();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        // The error's own text already names its cause; anyhow would print it twice.
        let metadata = consumer
            .fetch_metadata(Some(topic), PROBE_TIMEOUT)
            .map_err(|err| anyhow!("{err}"))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| anyhow!("the broker did not describe {topic}"))?;
        if let Some(err) = found.error() {
            bail!("{topic}: {err:?} (is this notesaga's broker? `notesaga dev` creates the topics)");
        }
        match found.partitions().len() {
            0 => bail!("{topic} does not exist (is this notesaga's broker? `notesaga dev` creates the topics)"),
            n => Ok(i32::try_from(n)?),
        }
    })
    .await?
}

/// Fails unless the schema registry answers; without it no record can be decoded.
async fn probe_registry(url: &str) -> Result<()> {
    let subjects = format!("{}/subjects", url.trim_end_matches('/'));
    let url = &notesaga_log::redact_registry_url(url);
    let client = reqwest::Client::builder().timeout(PROBE_TIMEOUT).build()?;
    let response = client.get(&subjects).send().await.with_context(|| {
        format!(
            "cannot reach the schema registry at {url} (--registry-addr / NOTESAGA_REGISTRY_ADDR)"
        )
    })?;
    if !response.status().is_success() {
        bail!(
            "the schema registry at {url} answered {} to GET /subjects (--registry-addr / NOTESAGA_REGISTRY_ADDR)",
            response.status()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_narration_keys() {
        let note = Uuid::from_u128(7);
        assert_eq!(
            parse_narration_key(&format!("narrations/{note}/3.wav")),
            Some((note, 3))
        );
        for foreign in [
            format!("narrations/{note}/3.mp3"),
            format!("narrations/{note}/three.wav"),
            "narrations/not-a-uuid/1.wav".to_owned(),
            format!("narrations/{}/1.wav", note.simple()),
            format!("narrations/{note}/x/1.wav"),
            format!("other/{note}/1.wav"),
        ] {
            assert_eq!(parse_narration_key(&foreign), None, "{foreign}");
        }
    }

    #[tokio::test]
    async fn check_lists_audio_keys_without_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blobs::from(notesaga_narration::FsBlobStore::new(dir.path()));
        assert!(
            store.keys("narrations").await.unwrap().is_empty(),
            "no directory yet"
        );
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        for (note, version) in [(a, 1), (a, 2), (b, 1)] {
            let path = dir.path().join(format!("narrations/{note}/{version}.wav"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"RIFF").unwrap();
        }
        // A render in progress (or one a crash left behind) is not a blob.
        std::fs::write(
            dir.path()
                .join(format!("narrations/{a}/.3.wav.0123.partial")),
            b"half",
        )
        .unwrap();
        assert_eq!(
            store.keys("narrations").await.unwrap(),
            vec![
                format!("narrations/{a}/1.wav"),
                format!("narrations/{a}/2.wav"),
                format!("narrations/{b}/1.wav"),
            ]
        );
    }
}
