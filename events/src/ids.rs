//! Deterministic ids: re-running the same command or saga step yields the same ids, which
//! is what lets every reader drop duplicates without Kafka transactions.

use uuid::Uuid;

/// Namespace of every UUIDv5 notesaga derives (itself a v5 of the DNS name).
fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"notesaga.dev")
}

/// Id of the `index`-th event caused by `command_id`.
pub fn event_id(command_id: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(
        &namespace(),
        format!("event/{command_id}/{index}").as_bytes(),
    )
}

/// Id of the outcome record of `command_id`.
pub fn outcome_id(command_id: Uuid) -> Uuid {
    Uuid::new_v5(&namespace(), format!("outcome/{command_id}").as_bytes())
}

/// Id of the note-pipeline saga of one note version.
pub fn saga_id(note_id: Uuid, version: i64) -> Uuid {
    Uuid::new_v5(
        &namespace(),
        format!("saga/note-pipeline/{note_id}/{version}").as_bytes(),
    )
}

/// Id of the cleanup saga that removes every artifact of a deleted note (one per note).
pub fn cleanup_saga_id(note_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &namespace(),
        format!("saga/note-cleanup/{note_id}").as_bytes(),
    )
}

/// Id of the command a saga sends for `step` on its `attempt`.
pub fn saga_command_id(saga_id: Uuid, step: &str, attempt: i32) -> Uuid {
    Uuid::new_v5(
        &namespace(),
        format!("command/{saga_id}/{step}/{attempt}").as_bytes(),
    )
}

/// Id of the saga event at `position` in the saga's own history (0 = `SagaStarted`).
/// Whoever appends the n-th event of a saga gives it the same id, so a re-run after a
/// crash, or a zombie orchestrator, cannot add a second version of it: readers keep the
/// first in log order.
pub fn saga_event_id(saga_id: Uuid, position: u32) -> Uuid {
    Uuid::new_v5(
        &namespace(),
        format!("saga-event/{saga_id}/{position}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let command = Uuid::new_v4();
        assert_eq!(event_id(command, 0), event_id(command, 0));
        assert_ne!(event_id(command, 0), event_id(command, 1));
        assert_ne!(event_id(command, 0), outcome_id(command));
        let note = Uuid::new_v4();
        assert_eq!(saga_id(note, 2), saga_id(note, 2));
        assert_ne!(saga_id(note, 2), saga_id(note, 3));
        let saga = saga_id(note, 2);
        assert_ne!(
            saga_command_id(saga, "embedding", 1),
            saga_command_id(saga, "embedding", 2)
        );
    }
}
