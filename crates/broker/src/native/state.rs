//! The native engine's state in memory: topics, partitions with the index of their
//! batches, committed offsets and producer sequences. Pure: no I/O, no async. The engine
//! rebuilds it at start-up by replaying the write-ahead log through [`State::apply`], and
//! changes it live through the same functions, so replay and live agree by construction.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tansu_sans_io::{create_topics_request::CreatableTopic, ErrorCode};
use uuid::Uuid;

use super::entry::Meta;

/// How many recent batches per producer and partition are remembered to answer a
/// retried batch with its first offset (Kafka keeps five, as many as a producer may
/// have in flight).
const RECENT_BATCHES: usize = 5;

/// Where one stored batch is and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchLoc {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    /// Segment file and byte position of the batch bytes in it.
    pub(crate) segment: u32,
    pub(crate) pos: u64,
    pub(crate) len: u32,
}

/// The header fields of a batch that the state needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) last_offset_delta: i32,
    pub(crate) max_timestamp: i64,
    /// -1 for a producer that is not idempotent.
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
}

/// A producer's recent batches on one partition.
#[derive(Clone, Debug, Default)]
struct ProducerSeq {
    epoch: i16,
    /// (first sequence, last sequence, base offset, last offset), oldest first.
    recent: VecDeque<(i32, i32, i64, i64)>,
}

/// What the sequence check says of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sequenced {
    /// New: store it.
    Accept,
    /// Stored already (a retry): answer with where it went, store nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Partition {
    pub(crate) log_start: i64,
    /// The offset the next batch gets (assigned, maybe not durable yet).
    pub(crate) next_offset: i64,
    /// Everything below is durable and may be read.
    pub(crate) high_watermark: i64,
    pub(crate) batches: Vec<BatchLoc>,
    producers: HashMap<i64, ProducerSeq>,
}

impl Partition {
    /// The idempotent producer's check (Kafka's rules): same epoch, the next sequence
    /// or one of the recent batches again; a newer epoch starts again at 0.
    pub(crate) fn check_sequence(&self, header: &BatchHeader) -> Result<Sequenced, ErrorCode> {
        if header.producer_id < 0 {
            return Ok(Sequenced::Accept);
        }
        let Some(seq) = self.producers.get(&header.producer_id) else {
            // Unknown here: a producer's first batch on this partition.
            return Ok(Sequenced::Accept);
        };
        let last_seq = header.base_sequence.wrapping_add(header.last_offset_delta);
        if header.producer_epoch < seq.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if header.producer_epoch > seq.epoch {
            return if header.base_sequence == 0 {
                Ok(Sequenced::Accept)
            } else {
                Err(ErrorCode::OutOfOrderSequenceNumber)
            };
        }
        if let Some(&(_, _, base_offset, last_offset)) = seq
            .recent
            .iter()
            .find(|(first, last, _, _)| *first == header.base_sequence && *last == last_seq)
        {
            return Ok(Sequenced::Duplicate {
                base_offset,
                last_offset,
            });
        }
        match seq.recent.back() {
            Some(&(_, last, _, _)) if last.wrapping_add(1) == header.base_sequence => {
                Ok(Sequenced::Accept)
            }
            None => Ok(Sequenced::Accept),
            Some(_) => Err(ErrorCode::OutOfOrderSequenceNumber),
        }
    }

    /// Records an accepted batch at `loc` (offsets assigned, not yet durable).
    pub(crate) fn append(&mut self, header: &BatchHeader, loc: BatchLoc) {
        self.next_offset = loc.last_offset + 1;
        if header.producer_id >= 0 {
            let seq = self.producers.entry(header.producer_id).or_default();
            if header.producer_epoch != seq.epoch {
                seq.epoch = header.producer_epoch;
                seq.recent.clear();
            }
            seq.recent.push_back((
                header.base_sequence,
                header.base_sequence.wrapping_add(header.last_offset_delta),
                loc.base_offset,
                loc.last_offset,
            ));
            if seq.recent.len() > RECENT_BATCHES {
                seq.recent.pop_front();
            }
        }
        self.batches.push(loc);
    }

    /// Durable up to `end` (exclusive): readers may see it.
    pub(crate) fn durable_to(&mut self, end: i64) {
        self.high_watermark = self.high_watermark.max(end);
    }

    /// The durable batches from the one holding `offset`, at least one (as Kafka: a
    /// batch larger than `max_bytes` is still served whole), then while within
    /// `max_bytes`.
    pub(crate) fn read_from(&self, offset: i64, max_bytes: u32) -> Vec<BatchLoc> {
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for loc in &self.batches[start..] {
            if loc.last_offset >= self.high_watermark {
                break;
            }
            if loc.last_offset < self.log_start {
                continue;
            }
            if !out.is_empty() && bytes + u64::from(loc.len) > u64::from(max_bytes) {
                break;
            }
            bytes += u64::from(loc.len);
            out.push(*loc);
        }
        out
    }

    /// The first durable batch whose newest record is at or after `timestamp`.
    pub(crate) fn first_at_or_after(&self, timestamp: i64) -> Option<BatchLoc> {
        self.batches
            .iter()
            .take_while(|b| b.last_offset < self.high_watermark)
            .find(|b| b.last_offset >= self.log_start && b.max_timestamp >= timestamp)
            .copied()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Topic {
    pub(crate) id: Uuid,
    pub(crate) spec: CreatableTopic,
    pub(crate) partitions: Vec<Partition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) metadata: Option<String>,
}

/// Everything the log says.
#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    pub(crate) topics: BTreeMap<String, Topic>,
    /// group → (topic, partition) → committed offset
    pub(crate) offsets: BTreeMap<String, BTreeMap<(String, i32), Committed>>,
    pub(crate) last_producer_id: i64,
}

impl State {
    pub(crate) fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        self.topics
            .get_mut(topic)?
            .partitions
            .get_mut(usize::try_from(partition).ok()?)
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)
    }

    pub(crate) fn topic_by_id(&self, id: &Uuid) -> Option<&Topic> {
        self.topics.values().find(|t| t.id == *id)
    }

    /// Applies a metadata change (live, or replayed at start-up).
    pub(crate) fn apply(&mut self, meta: &Meta) {
        match meta {
            Meta::TopicCreated { id, topic } => {
                let count = usize::try_from(topic.num_partitions.max(1)).unwrap_or(1);
                _ = self.topics.insert(
                    topic.name.clone(),
                    Topic {
                        id: *id,
                        spec: topic.clone(),
                        partitions: vec![Partition::default(); count],
                    },
                );
            }
            Meta::TopicDeleted { name } => {
                _ = self.topics.remove(name);
                for group in self.offsets.values_mut() {
                    group.retain(|(topic, _), _| topic != name);
                }
            }
            Meta::TopicConfigs { name, configs } => {
                if let Some(topic) = self.topics.get_mut(name) {
                    topic.spec.configs = Some(
                        configs
                            .iter()
                            .map(|(name, value)| {
                                tansu_sans_io::create_topics_request::CreatableTopicConfig::default(
                                )
                                .name(name.clone())
                                .value(value.clone())
                            })
                            .collect(),
                    );
                }
            }
            Meta::OffsetCommitted {
                group,
                topic,
                partition,
                offset,
                metadata,
            } => {
                _ = self.offsets.entry(group.clone()).or_default().insert(
                    (topic.clone(), *partition),
                    Committed {
                        offset: *offset,
                        metadata: metadata.clone(),
                    },
                );
            }
            Meta::ProducerIdAllocated { id } => {
                self.last_producer_id = self.last_producer_id.max(*id);
            }
            Meta::LogStartMoved {
                topic,
                partition,
                offset,
            } => {
                if let Some(p) = self.partition_mut(topic, *partition) {
                    p.log_start = p.log_start.max(*offset);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            last_offset_delta: records - 1,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
        }
    }

    fn loc(base: i64, last: i64) -> BatchLoc {
        BatchLoc {
            base_offset: base,
            last_offset: last,
            max_timestamp: base * 10,
            segment: 0,
            pos: 0,
            len: 100,
        }
    }

    /// Appends a batch the way the engine does: check, then record at the next offset.
    fn produce(p: &mut Partition, h: BatchHeader) -> Result<Sequenced, ErrorCode> {
        let verdict = p.check_sequence(&h)?;
        if verdict == Sequenced::Accept {
            let base = p.next_offset;
            p.append(&h, loc(base, base + i64::from(h.last_offset_delta)));
        }
        Ok(verdict)
    }

    #[test]
    fn the_sequence_check_follows_kafkas_rules() {
        // (batch, expected verdict) in order on one partition.
        let mut p = Partition::default();
        let table: Vec<(BatchHeader, Result<Sequenced, ErrorCode>)> = vec![
            (header(-1, -1, -1, 3), Ok(Sequenced::Accept)), // not idempotent: offsets 0..=2
            (header(7, 0, 0, 2), Ok(Sequenced::Accept)),    // 3..=4
            (header(7, 0, 2, 1), Ok(Sequenced::Accept)),    // 5
            // A retry of the first batch: its offsets, nothing stored.
            (
                header(7, 0, 0, 2),
                Ok(Sequenced::Duplicate {
                    base_offset: 3,
                    last_offset: 4,
                }),
            ),
            (header(7, 0, 9, 1), Err(ErrorCode::OutOfOrderSequenceNumber)), // a gap
            (header(7, 1, 4, 1), Err(ErrorCode::OutOfOrderSequenceNumber)), // new epoch not at 0
            (header(7, 1, 0, 1), Ok(Sequenced::Accept)),                    // 6
            (header(7, 0, 3, 1), Err(ErrorCode::InvalidProducerEpoch)),     // fenced
            (header(8, 0, 0, 1), Ok(Sequenced::Accept)),                    // another producer: 7
        ];
        for (i, (h, expected)) in table.into_iter().enumerate() {
            assert_eq!(produce(&mut p, h), expected, "row {i}");
        }
        assert_eq!(p.next_offset, 8);
    }

    #[test]
    fn only_durable_batches_are_read_and_at_least_one_is() {
        let mut p = Partition::default();
        for (base, last) in [(0, 1), (2, 2), (3, 6)] {
            p.append(&header(-1, -1, -1, 1), loc(base, last));
        }
        assert!(p.read_from(0, 1 << 20).is_empty(), "nothing durable yet");
        p.durable_to(3);
        let offsets = |v: Vec<BatchLoc>| v.iter().map(|b| b.base_offset).collect::<Vec<_>>();
        assert_eq!(offsets(p.read_from(0, 1 << 20)), vec![0, 2]);
        assert_eq!(
            offsets(p.read_from(1, 1 << 20)),
            vec![0, 2],
            "the batch holding 1"
        );
        assert_eq!(
            offsets(p.read_from(0, 10)),
            vec![0],
            "one batch even over max_bytes"
        );
        assert!(p.read_from(3, 1 << 20).is_empty());
        p.durable_to(7);
        assert_eq!(offsets(p.read_from(3, 1 << 20)), vec![3]);
        assert_eq!(p.first_at_or_after(25).map(|b| b.base_offset), Some(3));
        assert_eq!(p.first_at_or_after(1000), None);
    }

    #[test]
    fn metadata_entries_rebuild_topics_and_offsets() {
        let mut state = State::default();
        let topic = CreatableTopic::default().name("t".into()).num_partitions(3);
        state.apply(&Meta::TopicCreated {
            id: Uuid::nil(),
            topic,
        });
        state.apply(&Meta::OffsetCommitted {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
            offset: 9,
            metadata: None,
        });
        state.apply(&Meta::ProducerIdAllocated { id: 12 });
        assert_eq!(state.topics["t"].partitions.len(), 3);
        assert_eq!(state.offsets["g"][&("t".to_owned(), 2)].offset, 9);
        assert_eq!(state.last_producer_id, 12);
        state.apply(&Meta::TopicDeleted { name: "t".into() });
        assert!(state.topics.is_empty());
        assert!(state.offsets["g"].is_empty());
    }
}
