//! Where audio lives: the blob store of `notesaga-blob` (the filesystem under the data
//! directory, or an S3 bucket), and the narration's keys in it.

pub use notesaga_blob::{BlobStore, Blobs, FsBlobStore, LocalFile, S3BlobStore, S3Config};

/// The key of the narration of one note version.
pub fn narration_key(note_id: uuid::Uuid, version: i64) -> String {
    format!("{}/{version}.wav", narration_prefix(note_id))
}

/// The prefix of the keys of every narration of a note.
pub fn narration_prefix(note_id: uuid::Uuid) -> String {
    format!("narrations/{note_id}")
}
