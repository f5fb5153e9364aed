//! The note aggregate: pure, synchronous, side-effect free.
//!
//! `handle` decides (events or a rejection); `apply` folds an event into the state. The
//! fold is first-writer-wins per version: an event that does not follow the state (a
//! second `NoteEdited` for a version already taken, written by a zombie producer) is
//! ignored, and every reader of `notes.events` applies the same rule. A deletion is
//! terminal: the first `NoteDeleted` in log order deletes the note, whatever version it
//! names, and every later event of the note is ignored.

use notesaga_events::notes::{
    NoteCreated, NoteDeleted, NoteEdited, NotePublicationFailed, NotePublished, NotesCommand,
    NotesEvent,
};

use crate::validation::check_note;

/// What the processor knows about one note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// Who owns it; `None` while the note does not exist.
    pub owner: Option<String>,
    /// Latest version (0 while the note does not exist).
    pub version: i64,
    /// The version readers see, once one is published.
    pub published_version: Option<i64>,
    /// The latest version whose publication failed.
    pub failed_version: Option<i64>,
    /// The note was deleted: it takes no more commands.
    pub deleted: bool,
}

/// Machine-readable reason of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCode {
    /// A field breaks a rule.
    ValidationFailed,
    /// No such note (or not the sender's).
    NotFound,
    /// A note with this id exists already.
    AlreadyExists,
    /// `expected_version` is not the latest version.
    VersionConflict,
    /// Only the latest version may be published.
    NotLatestVersion,
    /// The note was deleted.
    NoteDeleted,
}

impl RejectionCode {
    /// The code as written on `notes.outcomes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation_failed",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::VersionConflict => "version_conflict",
            Self::NotLatestVersion => "not_latest_version",
            Self::NoteDeleted => "note_deleted",
        }
    }
}

/// The aggregate refused a command: a normal outcome, reported to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why, for machines.
    pub code: RejectionCode,
    /// Why, for people.
    pub message: String,
}

fn reject(code: RejectionCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

fn validate(title: &str, body: &str) -> Result<(), Rejection> {
    let errors = check_note(title, body);
    if errors.is_empty() {
        return Ok(());
    }
    let message = errors
        .iter()
        .map(|e| format!("{} {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    Err(reject(RejectionCode::ValidationFailed, message))
}

/// The checks every command on an existing note starts with. `owner` is the sender of a
/// user command; saga commands carry none. Another user's note answers `not_found`, even
/// when deleted, so a user learns nothing about notes that are not theirs.
fn existing(note: &Note, note_id: uuid::Uuid, owner: Option<&str>) -> Result<(), Rejection> {
    let theirs = owner.is_some_and(|owner| note.owner.as_deref() != Some(owner));
    if note.version == 0 || theirs {
        return Err(reject(
            RejectionCode::NotFound,
            format!("no note {note_id}"),
        ));
    }
    if note.deleted {
        return Err(reject(
            RejectionCode::NoteDeleted,
            format!("note {note_id} was deleted"),
        ));
    }
    Ok(())
}

fn expect_version(note: &Note, expected: Option<i64>) -> Result<(), Rejection> {
    match expected {
        Some(expected) if expected != note.version => Err(reject(
            RejectionCode::VersionConflict,
            format!("expected version {expected}, latest is {}", note.version),
        )),
        _ => Ok(()),
    }
}

/// Decides what `command` does to `note`, at time `now` (ms since the epoch).
pub fn handle(note: &Note, command: &NotesCommand, now: i64) -> Result<Vec<NotesEvent>, Rejection> {
    match command {
        NotesCommand::CreateNote(c) => {
            if note.version > 0 {
                // The id stays taken after a deletion. Only the owner learns that it was
                // deleted; to anyone else the id is merely taken, as for a live note.
                let code = if note.deleted && note.owner.as_deref() == Some(c.owner.as_str()) {
                    RejectionCode::NoteDeleted
                } else {
                    RejectionCode::AlreadyExists
                };
                return Err(reject(code, format!("note {} exists", c.note_id)));
            }
            validate(&c.title, &c.body)?;
            Ok(vec![NotesEvent::NoteCreated(NoteCreated {
                note_id: c.note_id,
                owner: c.owner.clone(),
                version: 1,
                title: c.title.clone(),
                body: c.body.clone(),
                occurred_at: now,
            })])
        }
        NotesCommand::EditNote(c) => {
            existing(note, c.note_id, Some(&c.owner))?;
            expect_version(note, c.expected_version)?;
            validate(&c.title, &c.body)?;
            Ok(vec![NotesEvent::NoteEdited(NoteEdited {
                note_id: c.note_id,
                owner: c.owner.clone(),
                version: note.version + 1,
                title: c.title.clone(),
                body: c.body.clone(),
                occurred_at: now,
            })])
        }
        NotesCommand::PublishNoteVersion(c) => {
            existing(note, c.note_id, None)?;
            if c.version != note.version {
                return Err(reject(
                    RejectionCode::NotLatestVersion,
                    format!("version {} is not the latest ({})", c.version, note.version),
                ));
            }
            if note.published_version == Some(c.version) {
                return Ok(Vec::new());
            }
            Ok(vec![NotesEvent::NotePublished(NotePublished {
                note_id: c.note_id,
                version: c.version,
                occurred_at: now,
            })])
        }
        NotesCommand::MarkNoteVersionFailed(c) => {
            existing(note, c.note_id, None)?;
            if c.version > note.version || c.version < 1 {
                return Err(reject(
                    RejectionCode::NotFound,
                    format!("no version {} of note {}", c.version, c.note_id),
                ));
            }
            if note.failed_version == Some(c.version) || note.published_version == Some(c.version) {
                return Ok(Vec::new());
            }
            Ok(vec![NotesEvent::NotePublicationFailed(
                NotePublicationFailed {
                    note_id: c.note_id,
                    version: c.version,
                    reason: c.reason.clone(),
                    occurred_at: now,
                },
            )])
        }
        NotesCommand::DeleteNote(c) => {
            existing(note, c.note_id, Some(&c.owner))?;
            expect_version(note, c.expected_version)?;
            Ok(vec![NotesEvent::NoteDeleted(NoteDeleted {
                note_id: c.note_id,
                owner: c.owner.clone(),
                version: note.version,
                occurred_at: now,
            })])
        }
    }
}

/// Folds `event` into `note`; events that do not follow the state are ignored.
pub fn apply(mut note: Note, event: &NotesEvent) -> Note {
    if note.deleted {
        // Nothing follows a deletion: whatever a zombie appended after it is ignored.
        return note;
    }
    match event {
        NotesEvent::NoteCreated(e) if note.version == 0 && e.version == 1 => {
            note.owner = Some(e.owner.clone());
            note.version = 1;
        }
        NotesEvent::NoteEdited(e) if note.version > 0 && e.version == note.version + 1 => {
            note.version = e.version;
        }
        NotesEvent::NotePublished(e)
            if e.version <= note.version && note.published_version < Some(e.version) =>
        {
            note.published_version = Some(e.version);
        }
        NotesEvent::NotePublicationFailed(e) if e.version <= note.version => {
            note.failed_version = Some(e.version);
        }
        // Not version-matched: the writer accepted the deletion and told its sender so;
        // a zombie's edit that won the race for the next version must not undo that.
        NotesEvent::NoteDeleted(_) if note.version > 0 => {
            note.deleted = true;
        }
        NotesEvent::NoteCreated(_)
        | NotesEvent::NoteEdited(_)
        | NotesEvent::NotePublished(_)
        | NotesEvent::NotePublicationFailed(_)
        | NotesEvent::NoteDeleted(_) => {}
    }
    note
}

#[cfg(test)]
mod tests {
    use notesaga_events::notes::{
        CreateNote, DeleteNote, EditNote, MarkNoteVersionFailed, PublishNoteVersion,
    };
    use uuid::Uuid;

    use super::*;
    use RejectionCode::{
        AlreadyExists, NotFound, NotLatestVersion, NoteDeleted as Deleted, ValidationFailed,
        VersionConflict,
    };

    const ID: Uuid = Uuid::from_u128(7);

    fn created(owner: &str) -> Note {
        Note {
            owner: Some(owner.into()),
            version: 1,
            ..Note::default()
        }
    }

    fn create(owner: &str, title: &str) -> NotesCommand {
        NotesCommand::CreateNote(CreateNote {
            note_id: ID,
            owner: owner.into(),
            title: title.into(),
            body: "b".into(),
        })
    }

    fn edit(owner: &str, expected: Option<i64>) -> NotesCommand {
        edit_titled(owner, expected, "t2")
    }

    fn edit_titled(owner: &str, expected: Option<i64>, title: &str) -> NotesCommand {
        NotesCommand::EditNote(EditNote {
            note_id: ID,
            owner: owner.into(),
            title: title.into(),
            body: "b2".into(),
            expected_version: expected,
        })
    }

    fn publish(version: i64) -> NotesCommand {
        NotesCommand::PublishNoteVersion(PublishNoteVersion {
            note_id: ID,
            version,
        })
    }

    fn fail(version: i64) -> NotesCommand {
        NotesCommand::MarkNoteVersionFailed(MarkNoteVersionFailed {
            note_id: ID,
            version,
            reason: "tts down".into(),
        })
    }

    fn delete(owner: &str, expected: Option<i64>) -> NotesCommand {
        NotesCommand::DeleteNote(DeleteNote {
            note_id: ID,
            owner: owner.into(),
            expected_version: expected,
        })
    }

    /// The event types a command yields, or its rejection code.
    type Expected = Result<Vec<&'static str>, RejectionCode>;

    fn ok(events: &[&'static str]) -> Expected {
        Ok(events.to_vec())
    }

    /// Every command in every state (no note, live at v1 and v2, published, failed,
    /// deleted), as the owner and as someone else, with a matching and a stale
    /// `expected_version`: the event types it yields, or the rejection code.
    #[test]
    fn handle_table() {
        let empty = Note::default();
        let v1 = created("ann");
        let v2 = Note {
            version: 2,
            published_version: Some(1),
            ..created("ann")
        };
        let published = Note {
            published_version: Some(1),
            ..created("ann")
        };
        let failed = Note {
            failed_version: Some(1),
            ..created("ann")
        };
        let deleted = Note {
            deleted: true,
            ..v2.clone()
        };
        let cases: Vec<(&str, &Note, NotesCommand, Expected)> = vec![
            // CreateNote
            (
                "create new",
                &empty,
                create("ann", "t"),
                ok(&["NoteCreated"]),
            ),
            (
                "create blank title",
                &empty,
                create("ann", " "),
                Err(ValidationFailed),
            ),
            (
                "create existing",
                &v1,
                create("ann", "t"),
                Err(AlreadyExists),
            ),
            (
                "create existing other owner",
                &v1,
                create("bob", "t"),
                Err(AlreadyExists),
            ),
            ("create deleted", &deleted, create("ann", "t"), Err(Deleted)),
            (
                "create deleted other owner",
                &deleted,
                create("bob", "t"),
                Err(AlreadyExists),
            ),
            // EditNote
            ("edit missing", &empty, edit("ann", None), Err(NotFound)),
            (
                "edit missing expected",
                &empty,
                edit("ann", Some(1)),
                Err(NotFound),
            ),
            ("edit other owner", &v1, edit("bob", None), Err(NotFound)),
            (
                "edit other owner expected ok",
                &v1,
                edit("bob", Some(1)),
                Err(NotFound),
            ),
            (
                "edit other owner stale",
                &v2,
                edit("bob", Some(1)),
                Err(NotFound),
            ),
            ("edit", &v1, edit("ann", None), ok(&["NoteEdited"])),
            (
                "edit expected ok",
                &v1,
                edit("ann", Some(1)),
                ok(&["NoteEdited"]),
            ),
            (
                "edit expected ok at v2",
                &v2,
                edit("ann", Some(2)),
                ok(&["NoteEdited"]),
            ),
            (
                "edit stale",
                &v2,
                edit("ann", Some(1)),
                Err(VersionConflict),
            ),
            (
                "edit future",
                &v1,
                edit("ann", Some(2)),
                Err(VersionConflict),
            ),
            (
                "edit blank title",
                &v1,
                edit_titled("ann", None, ""),
                Err(ValidationFailed),
            ),
            (
                "edit stale and blank title",
                &v2,
                edit_titled("ann", Some(1), ""),
                Err(VersionConflict),
            ),
            ("edit deleted", &deleted, edit("ann", None), Err(Deleted)),
            (
                "edit deleted expected ok",
                &deleted,
                edit("ann", Some(2)),
                Err(Deleted),
            ),
            (
                "edit deleted stale",
                &deleted,
                edit("ann", Some(1)),
                Err(Deleted),
            ),
            (
                "edit deleted other owner",
                &deleted,
                edit("bob", None),
                Err(NotFound),
            ),
            // PublishNoteVersion
            ("publish missing", &empty, publish(1), Err(NotFound)),
            ("publish latest", &v1, publish(1), ok(&["NotePublished"])),
            ("publish old", &v2, publish(1), Err(NotLatestVersion)),
            ("publish future", &v1, publish(2), Err(NotLatestVersion)),
            ("publish again", &published, publish(1), ok(&[])),
            (
                "publish failed",
                &failed,
                publish(1),
                ok(&["NotePublished"]),
            ),
            ("publish deleted", &deleted, publish(2), Err(Deleted)),
            ("publish deleted old", &deleted, publish(1), Err(Deleted)),
            // MarkNoteVersionFailed
            ("fail missing", &empty, fail(1), Err(NotFound)),
            ("fail future", &v1, fail(2), Err(NotFound)),
            ("fail zero", &v1, fail(0), Err(NotFound)),
            ("fail latest", &v1, fail(1), ok(&["NotePublicationFailed"])),
            ("fail older", &v2, fail(2), ok(&["NotePublicationFailed"])),
            ("fail again", &failed, fail(1), ok(&[])),
            ("fail published", &published, fail(1), ok(&[])),
            ("fail deleted", &deleted, fail(2), Err(Deleted)),
            ("fail deleted published", &deleted, fail(1), Err(Deleted)),
            // DeleteNote
            ("delete missing", &empty, delete("ann", None), Err(NotFound)),
            (
                "delete missing expected",
                &empty,
                delete("ann", Some(1)),
                Err(NotFound),
            ),
            ("delete", &v1, delete("ann", None), ok(&["NoteDeleted"])),
            (
                "delete expected ok",
                &v1,
                delete("ann", Some(1)),
                ok(&["NoteDeleted"]),
            ),
            (
                "delete expected ok at v2",
                &v2,
                delete("ann", Some(2)),
                ok(&["NoteDeleted"]),
            ),
            (
                "delete stale",
                &v2,
                delete("ann", Some(1)),
                Err(VersionConflict),
            ),
            (
                "delete future",
                &v1,
                delete("ann", Some(2)),
                Err(VersionConflict),
            ),
            (
                "delete other owner",
                &v1,
                delete("bob", None),
                Err(NotFound),
            ),
            (
                "delete other owner expected ok",
                &v1,
                delete("bob", Some(1)),
                Err(NotFound),
            ),
            (
                "delete other owner stale",
                &v2,
                delete("bob", Some(1)),
                Err(NotFound),
            ),
            (
                "delete published",
                &published,
                delete("ann", None),
                ok(&["NoteDeleted"]),
            ),
            (
                "delete failed",
                &failed,
                delete("ann", None),
                ok(&["NoteDeleted"]),
            ),
            ("delete again", &deleted, delete("ann", None), Err(Deleted)),
            (
                "delete again expected ok",
                &deleted,
                delete("ann", Some(2)),
                Err(Deleted),
            ),
            (
                "delete again stale",
                &deleted,
                delete("ann", Some(1)),
                Err(Deleted),
            ),
            (
                "delete deleted other owner",
                &deleted,
                delete("bob", None),
                Err(NotFound),
            ),
        ];
        for (name, state, command, expected) in cases {
            let got = handle(state, &command, 5)
                .map(|events| {
                    events
                        .iter()
                        .map(notesaga_events::Message::event_type)
                        .collect::<Vec<_>>()
                })
                .map_err(|rejection| rejection.code);
            assert_eq!(got, expected, "{name}");
            let got = handle(state, &command, 5);
            if let Err(rejection) = got {
                assert!(!rejection.message.is_empty(), "{name}");
            }
        }
    }

    #[test]
    fn rejection_codes_on_the_wire() {
        let codes = [
            (ValidationFailed, "validation_failed"),
            (NotFound, "not_found"),
            (AlreadyExists, "already_exists"),
            (VersionConflict, "version_conflict"),
            (NotLatestVersion, "not_latest_version"),
            (Deleted, "note_deleted"),
        ];
        for (code, wire) in codes {
            assert_eq!(code.as_str(), wire);
        }
    }

    #[test]
    fn deletion_names_the_latest_version_and_the_owner() {
        let v3 = Note {
            version: 3,
            published_version: Some(2),
            ..created("ann")
        };
        let events = handle(&v3, &delete("ann", None), 42).expect("accepted");
        assert_eq!(
            events,
            vec![NotesEvent::NoteDeleted(NoteDeleted {
                note_id: ID,
                owner: "ann".into(),
                version: 3,
                occurred_at: 42,
            })]
        );
    }

    #[test]
    fn handled_events_apply_to_the_next_state() {
        let mut note = Note::default();
        for command in [
            create("ann", "t"),
            edit("ann", Some(1)),
            publish(2),
            edit("ann", None),
            fail(3),
            delete("ann", Some(3)),
        ] {
            for event in handle(&note, &command, 1).expect("accepted") {
                note = apply(note, &event);
            }
        }
        assert_eq!(
            note,
            Note {
                owner: Some("ann".into()),
                version: 3,
                published_version: Some(2),
                failed_version: Some(3),
                deleted: true,
            }
        );
        for command in [edit("ann", None), publish(3), fail(3), delete("ann", None)] {
            let rejection = handle(&note, &command, 1).expect_err("note is deleted");
            assert_eq!(rejection.code, Deleted, "{command:?}");
        }
    }

    fn deleted_event(version: i64) -> NotesEvent {
        NotesEvent::NoteDeleted(NoteDeleted {
            note_id: ID,
            owner: "ann".into(),
            version,
            occurred_at: 1,
        })
    }

    fn edited(version: i64) -> NotesEvent {
        NotesEvent::NoteEdited(NoteEdited {
            note_id: ID,
            owner: "ann".into(),
            version,
            title: "a".into(),
            body: "a".into(),
            occurred_at: 1,
        })
    }

    #[test]
    fn deletion_is_terminal_in_the_fold() {
        let deleted = apply(created("ann"), &deleted_event(1));
        assert!(deleted.deleted);
        // What a zombie appended after the deletion changes nothing.
        for later in [
            edited(2),
            NotesEvent::NotePublished(NotePublished {
                note_id: ID,
                version: 1,
                occurred_at: 1,
            }),
            NotesEvent::NotePublicationFailed(NotePublicationFailed {
                note_id: ID,
                version: 1,
                reason: "r".into(),
                occurred_at: 1,
            }),
            deleted_event(1),
        ] {
            assert_eq!(apply(deleted.clone(), &later), deleted, "{later:?}");
        }
    }

    #[test]
    fn deletion_of_an_unknown_note_is_ignored() {
        assert_eq!(apply(Note::default(), &deleted_event(1)), Note::default());
    }

    #[test]
    fn deletion_that_lost_a_version_race_still_deletes() {
        // The deleter decided at v1; a zombie's v2 reached the log first.
        let note = apply(apply(created("ann"), &edited(2)), &deleted_event(1));
        assert_eq!(note.version, 2);
        assert!(note.deleted);
    }

    #[test]
    fn first_writer_wins_per_version() {
        let first = edited(2);
        let zombie = NotesEvent::NoteEdited(NoteEdited {
            title: "z".into(),
            ..match &first {
                NotesEvent::NoteEdited(e) => e.clone(),
                _ => unreachable!(),
            }
        });
        let note = apply(apply(created("ann"), &first), &zombie);
        assert_eq!(note.version, 2);
        assert_eq!(apply(created("ann"), &edited(5)).version, 1);
        let republished = NotesEvent::NotePublished(NotePublished {
            note_id: ID,
            version: 1,
            occurred_at: 1,
        });
        let later = Note {
            version: 2,
            published_version: Some(2),
            ..created("ann")
        };
        assert_eq!(apply(later.clone(), &republished), later);
    }
}
