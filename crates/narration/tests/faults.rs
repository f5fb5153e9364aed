//! The fault points `narration.delete` and `narration.render` (built only with the
//! `fault-injection` feature: `cargo nextest run -p notesaga-narration --features
//! fault-injection`). Its own test binary, because a fault point reads a process-wide
//! environment variable.
#![cfg(feature = "fault-injection")]

use std::time::Duration;

use notesaga_events::narration::{DeleteNarration, NarrateNote, NarrationEvent};
use notesaga_narration::{
    blob::narration_key, BlobStore as _, Espeak, FsBlobStore, Narrations, Narrator, SpeechEngine,
};

#[tokio::test]
async fn injected_failures_become_failure_replies_until_the_fault_is_gone() {
    let faults = tempfile::tempdir().unwrap();
    std::env::set_var("NOTESAGA_FAULTS_DIR", faults.path());
    let audio = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::new(audio.path());
    let narrations = Narrations::new(
        Narrator::new(
            // Never started: the render fault comes first.
            SpeechEngine::Espeak(Espeak {
                binary: "no-such-espeak-binary".into(),
                ..Espeak::default()
            }),
            notesaga_log::RetryPolicy {
                initial_interval: Duration::from_millis(1),
                ..notesaga_log::RetryPolicy::default()
            },
            notesaga_narration::RenderBudget::default(),
            notesaga_log::breaker::BreakerConfig::default(),
            1,
        ),
        blobs.clone(),
    );
    let note = uuid::Uuid::from_u128(1);
    let key = narration_key(note, 1);
    let staging = blobs.staging_path(&key).unwrap();
    std::fs::write(&staging, b"RIFF").unwrap();
    blobs.commit(&staging, &key).await.unwrap();

    std::fs::write(faults.path().join("narration.render"), "always").unwrap();
    let reply = narrations
        .narrate(&NarrateNote {
            note_id: note,
            version: 2,
            text: "Cells.".into(),
        })
        .await
        .unwrap();
    let NarrationEvent::NarrationFailed(failed) = reply else {
        panic!("{reply:?}")
    };
    assert!(failed.retryable, "{failed:?}");
    assert!(failed.reason.contains("injected"), "{failed:?}");

    std::fs::write(faults.path().join("narration.delete"), "2").unwrap();
    let delete = DeleteNarration {
        note_id: note,
        version: None,
    };
    for _ in 0..2 {
        let reply = narrations.delete(&delete).await;
        let NarrationEvent::NarrationDeletionFailed(failed) = reply else {
            panic!("{reply:?}")
        };
        assert!(failed.reason.contains("injected"), "{failed:?}");
        assert_eq!(
            blobs.size(&key).await.unwrap(),
            Some(4),
            "nothing deleted yet"
        );
    }
    let reply = narrations.delete(&delete).await;
    let NarrationEvent::NarrationDeleted(deleted) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(deleted.deleted, 1);
    assert_eq!(blobs.size(&key).await.unwrap(), None);
}
