//! The note aggregate: pure, synchronous, side-effect free.
//!
//! `handle` decides (events or a rejection); `apply` folds an event into the state. The
//! fold is first-writer-wins per version: an event that does not follow the state (a
//! second `NoteEdited` for a version already taken, written by a zombie producer) is
//! ignored, and every reader of `notes.events` applies the same rule.

use notesaga_events::notes::{
    NoteCreated, NoteEdited, NotePublicationFailed, NotePublished, NotesCommand, NotesEvent,
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

/// Decides what `command` does to `note`, at time `now` (ms since the epoch).
pub fn handle(note: &Note, command: &NotesCommand, now: i64) -> Result<Vec<NotesEvent>, Rejection> {
    match command {
        NotesCommand::CreateNote(c) => {
            if note.version > 0 {
                return Err(reject(
                    RejectionCode::AlreadyExists,
                    format!("note {} exists", c.note_id),
                ));
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
            if note.version == 0 || note.owner.as_deref() != Some(c.owner.as_str()) {
                return Err(reject(
                    RejectionCode::NotFound,
                    format!("no note {}", c.note_id),
                ));
            }
            if let Some(expected) = c.expected_version {
                if expected != note.version {
                    return Err(reject(
                        RejectionCode::VersionConflict,
                        format!("expected version {expected}, latest is {}", note.version),
                    ));
                }
            }
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
            if note.version == 0 {
                return Err(reject(
                    RejectionCode::NotFound,
                    format!("no note {}", c.note_id),
                ));
            }
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
            if note.version == 0 || c.version > note.version || c.version < 1 {
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
    }
}

/// Folds `event` into `note`; events that do not follow the state are ignored.
pub fn apply(mut note: Note, event: &NotesEvent) -> Note {
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
        _ => {}
    }
    note
}

#[cfg(test)]
mod tests {
    use notesaga_events::notes::{CreateNote, EditNote, MarkNoteVersionFailed, PublishNoteVersion};
    use uuid::Uuid;

    use super::*;

    const ID: Uuid = Uuid::from_u128(7);

    fn created(owner: &str) -> Note {
        Note {
            owner: Some(owner.into()),
            version: 1,
            ..Note::default()
        }
    }

    fn create(title: &str) -> NotesCommand {
        NotesCommand::CreateNote(CreateNote {
            note_id: ID,
            owner: "ann".into(),
            title: title.into(),
            body: "b".into(),
        })
    }

    fn edit(owner: &str, expected: Option<i64>) -> NotesCommand {
        NotesCommand::EditNote(EditNote {
            note_id: ID,
            owner: owner.into(),
            title: "t2".into(),
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

    /// The event types a command yields, or its rejection code.
    type Expected = Result<Vec<&'static str>, RejectionCode>;

    /// Every command in every state: the event types it yields, or the rejection code.
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
        let cases: Vec<(&str, &Note, NotesCommand, Expected)> = vec![
            ("create new", &empty, create("t"), Ok(vec!["NoteCreated"])),
            (
                "create blank title",
                &empty,
                create(" "),
                Err(RejectionCode::ValidationFailed),
            ),
            (
                "create existing",
                &v1,
                create("t"),
                Err(RejectionCode::AlreadyExists),
            ),
            (
                "edit missing",
                &empty,
                edit("ann", None),
                Err(RejectionCode::NotFound),
            ),
            (
                "edit other owner",
                &v1,
                edit("bob", None),
                Err(RejectionCode::NotFound),
            ),
            ("edit", &v1, edit("ann", None), Ok(vec!["NoteEdited"])),
            (
                "edit expected ok",
                &v1,
                edit("ann", Some(1)),
                Ok(vec!["NoteEdited"]),
            ),
            (
                "edit stale",
                &v2,
                edit("ann", Some(1)),
                Err(RejectionCode::VersionConflict),
            ),
            (
                "publish missing",
                &empty,
                publish(1),
                Err(RejectionCode::NotFound),
            ),
            ("publish latest", &v1, publish(1), Ok(vec!["NotePublished"])),
            (
                "publish old",
                &v2,
                publish(1),
                Err(RejectionCode::NotLatestVersion),
            ),
            (
                "publish future",
                &v1,
                publish(2),
                Err(RejectionCode::NotLatestVersion),
            ),
            ("publish again", &published, publish(1), Ok(vec![])),
            (
                "fail missing",
                &empty,
                fail(1),
                Err(RejectionCode::NotFound),
            ),
            ("fail future", &v1, fail(2), Err(RejectionCode::NotFound)),
            (
                "fail latest",
                &v1,
                fail(1),
                Ok(vec!["NotePublicationFailed"]),
            ),
            (
                "fail older",
                &v2,
                fail(2),
                Ok(vec!["NotePublicationFailed"]),
            ),
            ("fail again", &failed, fail(1), Ok(vec![])),
            ("fail published", &published, fail(1), Ok(vec![])),
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
    fn handled_events_apply_to_the_next_state() {
        let mut note = Note::default();
        for command in [
            create("t"),
            edit("ann", Some(1)),
            publish(2),
            edit("ann", None),
            fail(3),
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
                failed_version: Some(3)
            }
        );
    }

    #[test]
    fn first_writer_wins_per_version() {
        let first = NotesEvent::NoteEdited(NoteEdited {
            note_id: ID,
            owner: "ann".into(),
            version: 2,
            title: "a".into(),
            body: "a".into(),
            occurred_at: 1,
        });
        let zombie = NotesEvent::NoteEdited(NoteEdited {
            title: "z".into(),
            ..match &first {
                NotesEvent::NoteEdited(e) => e.clone(),
                _ => unreachable!(),
            }
        });
        let note = apply(apply(created("ann"), &first), &zombie);
        assert_eq!(note.version, 2);
        let skipped = NotesEvent::NoteEdited(NoteEdited {
            note_id: ID,
            owner: "ann".into(),
            version: 5,
            title: "a".into(),
            body: "a".into(),
            occurred_at: 1,
        });
        assert_eq!(apply(created("ann"), &skipped).version, 1);
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
