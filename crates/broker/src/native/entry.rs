//! What one entry of the write-ahead log says, and its bytes.
//!
//! Every change of the native engine is one entry: a record batch appended to a
//! partition (stored as the producer sent it, in Kafka's record-batch wire format with
//! the offset we assigned, headers and compression untouched), or a change of metadata
//! (topics, configs, committed offsets, producer ids, log start). Replaying the entries
//! in order rebuilds the whole state, so there is one durable structure and one fsync.
//!
//! Framing on disk: `len: u32 BE | crc32(body): u32 BE | body`, where body is
//! `kind: u8 | payload`. A batch payload is binary (it is the hot path); the rare
//! metadata payloads are JSON, so they can grow fields without a format bump.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tansu_sans_io::create_topics_request::CreatableTopic;
use uuid::Uuid;

/// Bytes before the body: its length and its CRC-32.
pub(crate) const FRAME_HEADER: usize = 8;

/// Largest body a frame may declare; anything bigger is a torn or corrupt frame.
pub(crate) const MAX_BODY: usize = 256 * 1024 * 1024;

/// One change of the log's state.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Entry {
    /// A record batch appended to a partition at `base_offset`: `batch` holds the Kafka
    /// record batch (base offset included) exactly as a fetch serves it.
    Batch {
        topic: String,
        partition: i32,
        batch: Bytes,
    },
    /// Anything but a batch.
    Meta(Meta),
}

/// Metadata changes; JSON on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Meta {
    TopicCreated {
        id: Uuid,
        topic: CreatableTopic,
    },
    TopicDeleted {
        name: String,
    },
    /// The whole config set of a topic after an alteration.
    TopicConfigs {
        name: String,
        configs: Vec<(String, Option<String>)>,
    },
    OffsetCommitted {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
        metadata: Option<String>,
    },
    ProducerIdAllocated {
        id: i64,
    },
    LogStartMoved {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

const KIND_BATCH: u8 = 1;
const KIND_META: u8 = 2;

/// Why bytes are not an entry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The body ended before the fields it declares.
    #[error("entry truncated")]
    Truncated,
    /// The kind byte is not one this version writes.
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
    /// A name is not UTF-8.
    #[error("topic name is not UTF-8")]
    Utf8,
    /// A metadata entry is not the JSON this version writes.
    #[error("metadata entry: {0}")]
    Json(#[from] serde_json::Error),
}

impl Entry {
    /// The framed bytes of this entry, ready to append.
    pub(crate) fn frame(&self) -> Bytes {
        let mut body = BytesMut::new();
        match self {
            Entry::Batch {
                topic,
                partition,
                batch,
            } => {
                body.put_u8(KIND_BATCH);
                body.put_u16(u16::try_from(topic.len()).expect("topic names are short"));
                body.put_slice(topic.as_bytes());
                body.put_i32(*partition);
                body.put_slice(batch);
            }
            Entry::Meta(meta) => {
                body.put_u8(KIND_META);
                body.put_slice(&serde_json::to_vec(meta).expect("metadata serialises"));
            }
        }
        let mut framed = BytesMut::with_capacity(FRAME_HEADER + body.len());
        framed.put_u32(u32::try_from(body.len()).expect("entries are below 4 GiB"));
        framed.put_u32(crc32fast::hash(&body));
        framed.put_slice(&body);
        framed.freeze()
    }

    /// Where the batch bytes start inside a framed batch entry of this topic name: the
    /// index keeps that position, so a fetch reads the batch and nothing else.
    pub(crate) fn batch_offset_in_frame(topic: &str) -> usize {
        FRAME_HEADER + 1 + 2 + topic.len() + 4
    }

    /// Decodes a body whose CRC has been checked.
    pub(crate) fn decode(mut body: Bytes) -> Result<Self, DecodeError> {
        if body.is_empty() {
            return Err(DecodeError::Truncated);
        }
        match body.get_u8() {
            KIND_BATCH => {
                if body.remaining() < 2 {
                    return Err(DecodeError::Truncated);
                }
                let len = usize::from(body.get_u16());
                if body.remaining() < len + 4 {
                    return Err(DecodeError::Truncated);
                }
                let topic = String::from_utf8(body.split_to(len).to_vec())
                    .map_err(|_| DecodeError::Utf8)?;
                let partition = body.get_i32();
                Ok(Entry::Batch {
                    topic,
                    partition,
                    batch: body,
                })
            }
            KIND_META => Ok(Entry::Meta(serde_json::from_slice(&body)?)),
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

/// What the frame at the start of `bytes` is.
#[derive(Debug, PartialEq)]
pub(crate) enum Framed {
    /// A whole frame whose CRC matches: its body and its total length.
    Whole { body: Bytes, len: usize },
    /// The bytes end inside the frame (a write cut short by a crash).
    Torn,
    /// The length is impossible or the CRC does not match.
    Corrupt,
}

/// Reads the frame at the start of `bytes`.
pub(crate) fn read_frame(bytes: &Bytes) -> Framed {
    if bytes.len() < FRAME_HEADER {
        return Framed::Torn;
    }
    let mut header = &bytes[..FRAME_HEADER];
    let len = header.get_u32() as usize;
    let crc = header.get_u32();
    if len == 0 || len > MAX_BODY {
        return Framed::Corrupt;
    }
    if bytes.len() < FRAME_HEADER + len {
        return Framed::Torn;
    }
    let body = bytes.slice(FRAME_HEADER..FRAME_HEADER + len);
    if crc32fast::hash(&body) != crc {
        return Framed::Corrupt;
    }
    Framed::Whole {
        body,
        len: FRAME_HEADER + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_entry() -> Entry {
        Entry::Batch {
            topic: "notes.events".into(),
            partition: 3,
            batch: Bytes::from_static(b"\0\0\0\0\0\0\0\x07record batch bytes"),
        }
    }

    #[test]
    fn entries_round_trip_through_their_frames() {
        let meta = Entry::Meta(Meta::OffsetCommitted {
            group: "notesaga.notes".into(),
            topic: "notes.commands".into(),
            partition: 1,
            offset: 42,
            metadata: None,
        });
        for entry in [batch_entry(), meta] {
            let framed = entry.frame();
            let Framed::Whole { body, len } = read_frame(&framed) else {
                panic!("not whole");
            };
            assert_eq!(len, framed.len());
            assert_eq!(Entry::decode(body).unwrap(), entry);
        }
    }

    #[test]
    fn the_batch_position_in_a_frame_points_at_the_batch() {
        let framed = batch_entry().frame();
        let at = Entry::batch_offset_in_frame("notes.events");
        assert_eq!(&framed[at..], b"\0\0\0\0\0\0\0\x07record batch bytes");
    }

    #[test]
    fn a_cut_frame_is_torn_and_a_flipped_bit_is_corrupt() {
        let framed = batch_entry().frame();
        for cut in [0, 3, FRAME_HEADER, framed.len() - 1] {
            assert_eq!(
                read_frame(&framed.slice(..cut)),
                Framed::Torn,
                "cut at {cut}"
            );
        }
        let mut flipped = framed.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(read_frame(&Bytes::from(flipped)), Framed::Corrupt);
        assert_eq!(read_frame(&Bytes::from(vec![0u8; 16])), Framed::Corrupt);
    }
}
