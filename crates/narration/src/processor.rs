//! Answers `narration.commands` (group `notesaga.narration`).
//!
//! `NarrateNote`: render the audio unless the (note, version) key already holds it, then
//! (re-)send the reply, then the loop commits. A redelivered command finds the audio in
//! place and renders nothing.
//!
//! `DeleteNarration`: remove one version's audio or every version's, then reply
//! `NarrationDeleted` with how many files went (0 when there was nothing left, so a
//! redelivery answers success too) or `NarrationDeletionFailed`, which the saga retries.
//!
//! [`Narrations`] is the work without the log, so it is tested without a broker.

use std::path::Path;

use notesaga_events::{
    narration::{
        DeleteNarration, NarrateNote, NarrationCommand, NarrationCompleted, NarrationDeleted,
        NarrationDeletionFailed, NarrationEvent, NarrationFailed,
    },
    now_millis,
    topics::NARRATION_EVENTS,
};
use notesaga_log::{
    answer_all, faults, provider::Failed, Answer, Handler, HandlerError, Incoming, Publisher,
};
use tracing::{info, warn};

use crate::{
    blob::{narration_key, narration_prefix, BlobStore, Blobs},
    narrator::Narrator,
    wav,
};

/// Reads a WAV file's header and size and returns `(duration_ms, size_bytes)`.
pub async fn wav_facts(path: &Path) -> Result<(i64, i64), String> {
    let (_, size, chunk) = wav::open(path).await?;
    let info = chunk.info;
    Ok((info.duration_ms() as i64, size as i64))
}

/// The narration domain's work: render into and delete from the audio store.
#[derive(Debug, Clone)]
pub struct Narrations {
    narrator: Narrator,
    blobs: Blobs,
}

impl Narrations {
    /// Renders with `narrator` into `blobs`.
    pub fn new(narrator: Narrator, blobs: impl Into<Blobs>) -> Self {
        Self {
            narrator,
            blobs: blobs.into(),
        }
    }

    /// The reply to `NarrateNote`. An error means the store could not even be looked
    /// at: the consumer loop retries the record.
    pub async fn narrate(&self, command: &NarrateNote) -> Result<NarrationEvent, HandlerError> {
        // Test builds only: plays a provider that hangs on every call, re-sends included.
        faults::pause("narration.render.pause").await;
        let key = narration_key(command.note_id, command.version);
        let existing = self
            .blobs
            .size(&key)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let facts = match existing {
            // Stored already (a redelivery): describe what is there. With S3 that is a
            // download; a redelivery is rare and a narration a few hundred KB.
            Some(_) => match self.blobs.local_file(&key).await {
                Ok(Some(file)) => wav_facts(file.path()).await.map_err(Failed::transient),
                Ok(None) => Err(Failed::transient(format!("{key} vanished while read"))),
                Err(e) => Err(Failed::transient(format!("cannot read stored audio: {e}"))),
            },
            None => self.render(&command.text, &key).await,
        };
        // The reply carries the time the audio was stored, not the time of this
        // delivery: a redelivered command repeats its reply byte for byte.
        let stored_at = match &facts {
            Ok(_) => self
                .blobs
                .stored_at(&key)
                .await
                .map_err(|e| HandlerError::Transient(e.to_string()))?,
            Err(_) => None,
        };
        Ok(match facts {
            Ok((duration_ms, size_bytes)) => {
                info!(note_id = %command.note_id, version = command.version, duration_ms, "narration stored");
                NarrationEvent::NarrationCompleted(NarrationCompleted {
                    note_id: command.note_id,
                    version: command.version,
                    audio_key: key,
                    content_type: "audio/wav".into(),
                    duration_ms,
                    size_bytes,
                    occurred_at: stored_at.unwrap_or_else(now_millis),
                })
            }
            Err(Failed { retryable, reason }) => {
                warn!(note_id = %command.note_id, version = command.version, retryable, %reason, "narration failed");
                NarrationEvent::NarrationFailed(NarrationFailed {
                    note_id: command.note_id,
                    version: command.version,
                    retryable,
                    reason,
                    occurred_at: now_millis(),
                })
            }
        })
    }

    /// Renders into a staging file and moves it under `key`; returns duration and size.
    async fn render(&self, text: &str, key: &str) -> Result<(i64, i64), Failed> {
        faults::check("narration.render").map_err(Failed::transient)?;
        let staging = self
            .blobs
            .staging_path(key)
            .map_err(|e| Failed::transient(format!("cannot stage audio: {e}")))?;
        let result = async {
            self.narrator.render(text, &staging).await?;
            // Read back from the file, not from what was written: the reply describes
            // what a listener will get.
            let facts = wav_facts(&staging)
                .await
                .map_err(|e| Failed::transient(format!("rendered audio is unreadable: {e}")))?;
            self.blobs
                .commit(&staging, key)
                .await
                .map_err(|e| Failed::transient(format!("cannot store audio: {e}")))?;
            Ok(facts)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&staging).await;
        }
        result
    }

    /// The reply to `DeleteNarration`: never an error, since a failed deletion is an
    /// answer the saga acts on (it tries again).
    pub async fn delete(&self, command: &DeleteNarration) -> NarrationEvent {
        let deleted = async {
            faults::check("narration.delete").map_err(std::io::Error::other)?;
            match command.version {
                Some(version) => self
                    .blobs
                    .delete(&narration_key(command.note_id, version))
                    .await
                    .map(u32::from),
                None => {
                    self.blobs
                        .delete_all(&narration_prefix(command.note_id))
                        .await
                }
            }
        }
        .await;
        match deleted {
            Ok(deleted) => {
                info!(note_id = %command.note_id, version = ?command.version, deleted, "narration deleted");
                NarrationEvent::NarrationDeleted(NarrationDeleted {
                    note_id: command.note_id,
                    version: command.version,
                    deleted: i32::try_from(deleted).unwrap_or(i32::MAX),
                    occurred_at: now_millis(),
                })
            }
            Err(err) => {
                warn!(note_id = %command.note_id, version = ?command.version, %err, "narration deletion failed");
                NarrationEvent::NarrationDeletionFailed(NarrationDeletionFailed {
                    note_id: command.note_id,
                    version: command.version,
                    reason: format!("cannot delete audio: {err}"),
                    occurred_at: now_millis(),
                })
            }
        }
    }
}

/// Most commands handled as one batch (their replies acknowledged together); the role's
/// consumer loop is built with it. A batch holds only records already fetched, and the
/// loop does not poll the group while it works, so a batch must end well within
/// `max.poll.interval.ms` (300 s) even when the speech engine is slow: eight renders at
/// the default budget (30 s each for a short note) take at most four minutes.
pub const BATCH: usize = 8;

/// The narration processor's handler.
#[derive(Debug)]
pub struct NarrationProcessor {
    narrations: Narrations,
    publisher: Publisher,
}

impl NarrationProcessor {
    /// A processor rendering with `narrator` into `blobs`, replying through `publisher`.
    pub fn new(narrator: Narrator, blobs: impl Into<Blobs>, publisher: Publisher) -> Self {
        Self {
            narrations: Narrations::new(narrator, blobs),
            publisher,
        }
    }
}

impl Answer<NarrationCommand> for NarrationProcessor {
    type Reply = NarrationEvent;
    const TOPIC: &'static str = NARRATION_EVENTS;
    /// A narration waits mostly on its audio file (written, fsynced, renamed): the notes
    /// of a batch overlap those waits. Rendering stays bounded by the narrator's own
    /// concurrency limit.
    const LANES: usize = BATCH;

    async fn answer(
        &self,
        incoming: &Incoming<NarrationCommand>,
    ) -> Result<NarrationEvent, HandlerError> {
        Ok(match &incoming.message {
            NarrationCommand::NarrateNote(command) => self.narrations.narrate(command).await?,
            NarrationCommand::DeleteNarration(command) => self.narrations.delete(command).await,
        })
    }

    fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}

impl Handler<NarrationCommand> for NarrationProcessor {
    async fn handle(&mut self, incoming: &Incoming<NarrationCommand>) -> Result<(), HandlerError> {
        answer_all(self, std::slice::from_ref(incoming)).await
    }

    async fn handle_batch(
        &mut self,
        batch: &[Incoming<NarrationCommand>],
    ) -> Result<(), HandlerError> {
        answer_all(self, batch).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::{narrator::SpeechEngine, Espeak};

    fn narrations(root: &Path) -> Narrations {
        let narrator = Narrator::new(
            SpeechEngine::Espeak(Espeak::default()),
            notesaga_log::RetryPolicy {
                initial_interval: Duration::from_millis(1),
                max_attempts: 2,
                ..notesaga_log::RetryPolicy::default()
            },
            crate::narrator::RenderBudget::default(),
            notesaga_log::breaker::BreakerConfig::default(),
            1,
        );
        Narrations::new(narrator, crate::FsBlobStore::new(root))
    }

    fn delete(note_id: Uuid, version: Option<i64>) -> DeleteNarration {
        DeleteNarration { note_id, version }
    }

    fn deleted(reply: &NarrationEvent) -> i32 {
        match reply {
            NarrationEvent::NarrationDeleted(d) => d.deleted,
            other => panic!("expected NarrationDeleted, got {other:?}"),
        }
    }

    /// Every file under `root`.
    fn files(root: &Path) -> Vec<std::path::PathBuf> {
        notesaga_testkit::files_under(root)
    }

    /// Needs espeak-ng: narrating renders once; a redelivery finds the audio.
    #[tokio::test]
    async fn narrating_twice_renders_once_and_answers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let n = narrations(dir.path());
        let command = NarrateNote {
            note_id: Uuid::from_u128(1),
            version: 1,
            text: "Photosynthesis. Light becomes sugar.".into(),
        };
        let first = n.narrate(&command).await.unwrap();
        let NarrationEvent::NarrationCompleted(first) = first else {
            panic!("{first:?}")
        };
        let path = dir.path().join(&first.audio_key);
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        let NarrationEvent::NarrationCompleted(second) = n.narrate(&command).await.unwrap() else {
            panic!("the second answer differs")
        };
        assert_eq!(
            (second.duration_ms, second.size_bytes),
            (first.duration_ms, first.size_bytes)
        );
        assert!(first.duration_ms > 1_000, "{first:?}");
        assert_eq!(
            first.size_bytes as u64,
            std::fs::metadata(&path).unwrap().len()
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            written
        );
        assert_eq!(files(dir.path()), vec![path], "no staging file left");
    }

    #[tokio::test]
    async fn nothing_to_say_fails_for_good_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reply = narrations(dir.path())
            .narrate(&NarrateNote {
                note_id: Uuid::from_u128(1),
                version: 1,
                text: " \n ".into(),
            })
            .await
            .unwrap();
        let NarrationEvent::NarrationFailed(failed) = reply else {
            panic!("{reply:?}")
        };
        assert!(!failed.retryable);
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    }

    /// Puts a (fake) narration of `version` in place, as a render would.
    async fn stored(n: &Narrations, note: Uuid, version: i64) {
        let key = narration_key(note, version);
        let staging = n.blobs.staging_path(&key).unwrap();
        std::fs::write(&staging, b"RIFF").unwrap();
        n.blobs.commit(&staging, &key).await.unwrap();
    }

    #[tokio::test]
    async fn deleting_a_version_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let n = narrations(dir.path());
        let note = Uuid::from_u128(3);
        stored(&n, note, 1).await;
        stored(&n, note, 2).await;
        let reply = n.delete(&delete(note, Some(1))).await;
        assert_eq!(deleted(&reply), 1);
        let NarrationEvent::NarrationDeleted(reply) = reply else {
            unreachable!()
        };
        assert_eq!((reply.note_id, reply.version), (note, Some(1)));
        assert_eq!(deleted(&n.delete(&delete(note, Some(1))).await), 0);
        assert_eq!(
            files(dir.path()),
            vec![dir.path().join(narration_key(note, 2))],
            "the other version stays"
        );
    }

    #[tokio::test]
    async fn deleting_every_version_leaves_nothing_of_the_note() {
        let dir = tempfile::tempdir().unwrap();
        let n = narrations(dir.path());
        let (note, other) = (Uuid::from_u128(4), Uuid::from_u128(5));
        for version in 1..=3 {
            stored(&n, note, version).await;
        }
        stored(&n, other, 1).await;
        // A render that crashed half way left its staging file.
        std::fs::write(
            n.blobs.staging_path(&narration_key(note, 4)).unwrap(),
            b"RI",
        )
        .unwrap();
        assert_eq!(deleted(&n.delete(&delete(note, None)).await), 3);
        assert_eq!(
            files(dir.path()),
            vec![dir.path().join(narration_key(other, 1))]
        );
        assert_eq!(deleted(&n.delete(&delete(note, None)).await), 0);
        assert_eq!(deleted(&n.delete(&delete(note, Some(2))).await), 0);
    }

    #[tokio::test]
    async fn an_io_error_answers_deletion_failed() {
        let dir = tempfile::tempdir().unwrap();
        // The store's root is a file: nothing under it can be listed or removed.
        let root = dir.path().join("not-a-directory");
        std::fs::write(&root, b"").unwrap();
        let n = narrations(&root);
        let reply = n.delete(&delete(Uuid::from_u128(6), None)).await;
        let NarrationEvent::NarrationDeletionFailed(failed) = reply else {
            panic!("{reply:?}")
        };
        assert!(failed.reason.contains("cannot delete audio"), "{failed:?}");
        assert_eq!(failed.version, None);
    }
}
