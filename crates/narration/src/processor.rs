//! Answers `narration.commands` (group `notesaga.narration`): render the audio unless
//! the (note, version) key already holds it, then (re-)send the reply, then the loop
//! commits. A redelivered command finds the audio in place and renders nothing.

use std::path::Path;

use notesaga_events::{
    narration::{NarrationCommand, NarrationCompleted, NarrationEvent, NarrationFailed},
    now_millis,
    topics::NARRATION_EVENTS,
};
use notesaga_log::{Handler, HandlerError, Incoming, Publisher};
use tracing::{info, warn};

use crate::{
    blob::{narration_key, BlobStore, FsBlobStore},
    speech::Espeak,
    wav,
};

/// The narration processor's handler.
#[derive(Debug)]
pub struct NarrationProcessor {
    engine: Espeak,
    blobs: FsBlobStore,
    publisher: Publisher,
}

/// Reads a WAV file's header and size and returns `(duration_ms, size_bytes)`.
pub async fn wav_facts(path: &Path) -> Result<(i64, i64), String> {
    let (_, size, chunk) = wav::open(path).await?;
    let info = chunk.info;
    Ok((info.duration_ms() as i64, size as i64))
}

impl NarrationProcessor {
    /// A processor rendering with `engine` into `blobs`, replying through `publisher`.
    pub fn new(engine: Espeak, blobs: FsBlobStore, publisher: Publisher) -> Self {
        Self {
            engine,
            blobs,
            publisher,
        }
    }

    /// Renders into a staging file and moves it under `key`; returns duration and size.
    async fn render(&self, text: &str, key: &str) -> Result<(i64, i64), (bool, String)> {
        let staging = self
            .blobs
            .staging_path(key)
            .map_err(|e| (true, format!("cannot stage audio: {e}")))?;
        let result = async {
            self.engine
                .render(text, &staging)
                .await
                .map_err(|e| (e.retryable(), e.to_string()))?;
            let facts = wav_facts(&staging)
                .await
                .map_err(|e| (true, format!("engine wrote no valid WAV: {e}")))?;
            self.blobs
                .commit(&staging, key)
                .await
                .map_err(|e| (true, format!("cannot store audio: {e}")))?;
            Ok(facts)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&staging).await;
        }
        result
    }
}

impl Handler<NarrationCommand> for NarrationProcessor {
    async fn handle(&mut self, incoming: &Incoming<NarrationCommand>) -> Result<(), HandlerError> {
        let NarrationCommand::NarrateNote(command) = &incoming.message;
        let command_id = incoming.metadata.command();
        let reply_meta = incoming.metadata.command_event(command_id, 0);
        let key = narration_key(command.note_id, command.version);
        let existing = self
            .blobs
            .size(&key)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let facts = match existing {
            Some(_) => {
                let path = self
                    .blobs
                    .path(&key)
                    .map_err(|e| HandlerError::Permanent(e.to_string()))?;
                wav_facts(&path).await.map_err(|reason| (true, reason))
            }
            None => self.render(&command.text, &key).await,
        };
        let reply = match facts {
            Ok((duration_ms, size_bytes)) => {
                info!(note_id = %command.note_id, version = command.version, duration_ms, "narration stored");
                NarrationEvent::NarrationCompleted(NarrationCompleted {
                    note_id: command.note_id,
                    version: command.version,
                    audio_key: key,
                    content_type: "audio/wav".into(),
                    duration_ms,
                    size_bytes,
                    occurred_at: now_millis(),
                })
            }
            Err((retryable, reason)) => {
                warn!(note_id = %command.note_id, version = command.version, %reason, "narration failed");
                NarrationEvent::NarrationFailed(NarrationFailed {
                    note_id: command.note_id,
                    version: command.version,
                    retryable,
                    reason,
                    occurred_at: now_millis(),
                })
            }
        };
        self.publisher
            .publish(NARRATION_EVENTS, &reply, &reply_meta)
            .await?;
        Ok(())
    }
}
