//! The pure half of `notesaga check`: from what the log and the stores hold to the
//! violations of the publication invariants. No I/O, so every rule is a table test.
//!
//! The invariants (see "The flow" in ARCHITECTURE.md):
//! - (a) a live note with a published version P has the embedding and the audio of P;
//! - (b) no embedding or audio exists for a (note, version) that is neither the published
//!   version of a live note nor held by a saga that is still at work (in flight) or parked
//!   for an operator (`compensation_failed`);
//! - (c) every saga is finished (completed, compensated, superseded), in flight or parked,
//!   and one still at work on a deleted note is its cleanup, a compensation, or a publish
//!   saga past its pivot (which nothing cancels; it only retires what it replaced).

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fmt,
};

use notesaga_events::{ids, notes::NotesEvent, saga::SagaEvent, Message as _};
use notesaga_sagas::note_pipeline::{apply, Kind, NotePipeline, Status, ALL_STATUSES};
use uuid::Uuid;

/// One note as `notes.events` tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoteFacts {
    /// Versions created (`NoteCreated`, `NoteEdited`).
    pub(crate) versions: BTreeSet<i64>,
    /// The highest version any of its events names.
    pub(crate) latest_version: i64,
    /// Whether `NoteDeleted` was seen.
    pub(crate) deleted: bool,
    /// The highest version of its `NotePublished` events.
    pub(crate) published_version: Option<i64>,
}

/// Folds `notes.events` (event id and event, in log order per partition) into facts per
/// note. A second record with an id already read is dropped: the first in log order wins,
/// as everywhere else. Returns the facts and how many duplicates were dropped.
pub(crate) fn fold_notes<'a>(
    events: impl IntoIterator<Item = (Uuid, &'a NotesEvent)>,
) -> (BTreeMap<Uuid, NoteFacts>, usize) {
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut notes: BTreeMap<Uuid, NoteFacts> = BTreeMap::new();
    for (event_id, event) in events {
        if !seen.insert(event_id) {
            duplicates += 1;
            continue;
        }
        let note = notes.entry(event.note_id()).or_default();
        let version = event.version();
        note.latest_version = note.latest_version.max(version);
        match event {
            NotesEvent::NoteCreated(_) | NotesEvent::NoteEdited(_) => {
                note.versions.insert(version);
            }
            NotesEvent::NotePublished(_) => {
                note.published_version = note.published_version.max(Some(version));
            }
            NotesEvent::NoteDeleted(_) => note.deleted = true,
            NotesEvent::NotePublicationFailed(_) => {}
        }
    }
    (notes, duplicates)
}

/// The sagas as `saga.note-pipeline` tells them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SagaFacts {
    /// Every saga, folded with the saga's own `apply`.
    pub(crate) sagas: BTreeMap<Uuid, NotePipeline>,
    /// Saga ids with events but no `SagaStarted` before them, and their note.
    pub(crate) orphans: BTreeMap<Uuid, Uuid>,
    /// Records dropped as duplicates of an id already read.
    pub(crate) duplicates: usize,
}

/// Folds `saga.note-pipeline` (event id and event, in log order per partition) per saga
/// id, dropping duplicate event ids (first in log order wins), as the orchestrator's
/// rebuild does.
pub(crate) fn fold_sagas<'a>(events: impl IntoIterator<Item = (Uuid, &'a SagaEvent)>) -> SagaFacts {
    let mut seen = HashSet::new();
    let mut facts = SagaFacts::default();
    for (event_id, event) in events {
        if !seen.insert(event_id) {
            facts.duplicates += 1;
            continue;
        }
        let saga_id = event.saga_id();
        match apply(facts.sagas.remove(&saga_id), event) {
            Some(saga) => {
                facts.sagas.insert(saga_id, saga);
            }
            None => {
                facts.orphans.insert(saga_id, event.note_id());
            }
        }
    }
    facts
}

/// Everything the check looks at, read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Per note, from `notes.events`.
    pub(crate) notes: BTreeMap<Uuid, NoteFacts>,
    /// From `saga.note-pipeline`.
    pub(crate) sagas: SagaFacts,
    /// (note, version) with a row in the embedding store.
    pub(crate) embeddings: BTreeSet<(Uuid, i64)>,
    /// (note, version) with a WAV file in the audio store.
    pub(crate) audio: BTreeSet<(Uuid, i64)>,
}

/// Something the orchestrator has not acted on yet: a version without its saga, or a
/// deletion without its cleanup saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unstarted {
    Version(Uuid, i64),
    Deletion(Uuid, i64),
}

impl Snapshot {
    fn unstarted(&self) -> Vec<Unstarted> {
        let known = |saga_id: Uuid| {
            self.sagas.sagas.contains_key(&saga_id) || self.sagas.orphans.contains_key(&saga_id)
        };
        let mut unstarted = Vec::new();
        for (&note_id, note) in &self.notes {
            for &version in &note.versions {
                if !known(ids::saga_id(note_id, version)) {
                    unstarted.push(Unstarted::Version(note_id, version));
                }
            }
            if note.deleted && !known(ids::cleanup_saga_id(note_id)) {
                unstarted.push(Unstarted::Deletion(note_id, note.latest_version));
            }
        }
        unstarted
    }

    /// How many sagas are still at work plus how many note events no saga has taken up
    /// yet: what the grace window waits to drop to zero.
    pub(crate) fn unsettled(&self) -> usize {
        let active = self
            .sagas
            .sagas
            .values()
            .filter(|saga| saga.status.is_active())
            .count();
        active + self.unstarted().len()
    }
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub(crate) struct Violation {
    /// The note.
    pub(crate) note_id: Uuid,
    /// The version, when the violation is about one.
    pub(crate) version: Option<i64>,
    /// What is wrong.
    pub(crate) message: String,
}

/// Something allowed that an operator should know about (work in flight, a parked saga).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub(crate) struct Finding {
    /// The note.
    pub(crate) note_id: Uuid,
    /// The version.
    pub(crate) version: i64,
    /// What it is.
    pub(crate) message: String,
}

/// What `notesaga check` prints.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct Report {
    /// Notes the log knows.
    pub(crate) notes: usize,
    /// Live notes with a published version.
    pub(crate) published: usize,
    /// Deleted notes.
    pub(crate) deleted: usize,
    /// Sagas per state, in the order of [`ALL_STATUSES`].
    pub(crate) sagas_by_state: Vec<(&'static str, usize)>,
    /// Rows in the embedding store.
    pub(crate) embeddings: usize,
    /// WAV files in the audio store.
    pub(crate) audio: usize,
    /// Work still in flight when the check ran (allowed).
    pub(crate) in_flight: Vec<Finding>,
    /// Parked sagas and the artifacts they keep (allowed, for an operator).
    pub(crate) parked: Vec<Finding>,
    /// Broken invariants.
    pub(crate) violations: Vec<Violation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Artifact {
    Embedding,
    Audio,
}

impl Artifact {
    fn name(self) -> &'static str {
        match self {
            Self::Embedding => "embedding",
            Self::Audio => "audio",
        }
    }
}

/// Which versions of a note a holder accounts for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Versions {
    Only(BTreeSet<i64>),
    All,
}

impl Versions {
    fn contains(&self, version: i64) -> bool {
        match self {
            Self::Only(versions) => versions.contains(&version),
            Self::All => true,
        }
    }
}

/// Something that may legitimately keep artifacts of a note alive for now.
#[derive(Debug, Clone)]
struct Holder {
    note_id: Uuid,
    version: i64,
    versions: Versions,
    parked: bool,
    what: String,
    held: Vec<(Artifact, i64)>,
}

fn step_at(saga: &NotePipeline) -> String {
    saga.pending
        .as_ref()
        .map(|p| format!(" at {}#{}", p.step.name(), p.attempt))
        .unwrap_or_default()
}

fn describe(saga: &NotePipeline) -> String {
    let mut what = format!(
        "{} saga {} {}{}",
        saga.kind.as_str(),
        saga.saga_id,
        saga.status.as_str(),
        step_at(saga)
    );
    if saga.stuck {
        what.push_str(" (stuck)");
    }
    if let Some(failure) = &saga.failure {
        what.push_str(&format!(" after: {failure}"));
    }
    what
}

/// The versions a saga in `status` holds artifacts of: its own and the one it retires;
/// every version for a cleanup.
fn held_versions(saga: &NotePipeline) -> Versions {
    match saga.kind {
        Kind::Cleanup => Versions::All,
        Kind::Publish => {
            let mut versions = BTreeSet::from([saga.version]);
            // A saga parked while retiring keeps the retired version's artifacts; one at
            // work may not have retired them yet.
            if saga.status.is_active() || saga.published() {
                versions.extend(saga.retire_version);
            }
            Versions::Only(versions)
        }
    }
}

fn holders(snapshot: &Snapshot) -> Vec<Holder> {
    let mut holders = Vec::new();
    for saga in snapshot.sagas.sagas.values() {
        let parked = match saga.status {
            status if status.is_active() => false,
            Status::CompensationFailed => true,
            _ => continue,
        };
        holders.push(Holder {
            note_id: saga.note_id,
            version: saga.version,
            versions: held_versions(saga),
            parked,
            what: describe(saga),
            held: Vec::new(),
        });
    }
    for unstarted in snapshot.unstarted() {
        let (note_id, version, versions, what) = match unstarted {
            Unstarted::Version(note_id, version) => (
                note_id,
                version,
                Versions::Only(BTreeSet::from([version])),
                "version not yet taken up by the orchestrator (no saga)".to_owned(),
            ),
            Unstarted::Deletion(note_id, version) => (
                note_id,
                version,
                Versions::All,
                "deletion not yet taken up by the orchestrator (no cleanup saga)".to_owned(),
            ),
        };
        holders.push(Holder {
            note_id,
            version,
            versions,
            parked: false,
            what,
            held: Vec::new(),
        });
    }
    holders
}

/// Why an artifact of (note, version) is not allowed, for the violation line.
fn orphan_artifact(snapshot: &Snapshot, artifact: Artifact, note_id: Uuid, version: i64) -> String {
    let name = artifact.name();
    let Some(note) = snapshot.notes.get(&note_id) else {
        return format!("{name} of a note notes.events does not know");
    };
    if note.deleted {
        return format!("{name} left behind by a deleted note (no cleanup saga at work or parked)");
    }
    let published = note
        .published_version
        .map_or("none".to_owned(), |v| v.to_string());
    let saga = snapshot
        .sagas
        .sagas
        .get(&ids::saga_id(note_id, version))
        .map_or("no saga".to_owned(), |saga| {
            format!("its saga {} is {}", saga.saga_id, saga.status.as_str())
        });
    format!(
        "{name} of a version that is neither published (published: {published}) nor held by a saga at work or parked ({saga})"
    )
}

/// Checks the invariants on `snapshot`.
pub(crate) fn evaluate(snapshot: &Snapshot) -> Report {
    let mut report = Report {
        notes: snapshot.notes.len(),
        published: snapshot
            .notes
            .values()
            .filter(|n| !n.deleted && n.published_version.is_some())
            .count(),
        deleted: snapshot.notes.values().filter(|n| n.deleted).count(),
        sagas_by_state: ALL_STATUSES
            .iter()
            .map(|status| {
                let count = snapshot
                    .sagas
                    .sagas
                    .values()
                    .filter(|saga| saga.status == *status)
                    .count();
                (status.as_str(), count)
            })
            .collect(),
        embeddings: snapshot.embeddings.len(),
        audio: snapshot.audio.len(),
        ..Report::default()
    };
    let mut violation = |note_id: Uuid, version: Option<i64>, message: String| {
        report.violations.push(Violation {
            note_id,
            version,
            message,
        });
    };

    // (a) What readers are promised exists.
    for (&note_id, note) in &snapshot.notes {
        let Some(published) = note.published_version.filter(|_| !note.deleted) else {
            continue;
        };
        for (artifact, store) in [
            (Artifact::Embedding, &snapshot.embeddings),
            (Artifact::Audio, &snapshot.audio),
        ] {
            if !store.contains(&(note_id, published)) {
                violation(
                    note_id,
                    Some(published),
                    format!("the published version has no {}", artifact.name()),
                );
            }
        }
    }

    // (b) Nothing else exists unless a saga still at work or parked accounts for it.
    let mut holders = holders(snapshot);
    let artifacts = snapshot
        .embeddings
        .iter()
        .map(|&(n, v)| (Artifact::Embedding, n, v))
        .chain(snapshot.audio.iter().map(|&(n, v)| (Artifact::Audio, n, v)));
    for (artifact, note_id, version) in artifacts {
        let published = snapshot
            .notes
            .get(&note_id)
            .is_some_and(|n| !n.deleted && n.published_version == Some(version));
        if published {
            continue;
        }
        // Work in flight first: it is the likelier reason and clears by itself.
        let holder = holders
            .iter_mut()
            .filter(|h| h.note_id == note_id && h.versions.contains(version))
            .min_by_key(|h| h.parked);
        match holder {
            Some(holder) => holder.held.push((artifact, version)),
            None => violation(
                note_id,
                Some(version),
                orphan_artifact(snapshot, artifact, note_id, version),
            ),
        }
    }

    // (c) Every saga is finished, in flight or parked, and consistent with its note.
    for (&saga_id, &note_id) in &snapshot.sagas.orphans {
        violation(
            note_id,
            None,
            format!("saga {saga_id} has events but no SagaStarted"),
        );
    }
    for saga in snapshot.sagas.sagas.values() {
        let Some(note) = snapshot.notes.get(&saga.note_id) else {
            violation(
                saga.note_id,
                Some(saga.version),
                format!(
                    "{} belongs to a note notes.events does not know",
                    describe(saga)
                ),
            );
            continue;
        };
        let cleanup_started = snapshot
            .sagas
            .sagas
            .contains_key(&ids::cleanup_saga_id(saga.note_id));
        let allowed_on_deleted =
            saga.kind == Kind::Cleanup || saga.status == Status::Compensating || saga.published();
        // Until the orchestrator has seen the deletion (no cleanup saga yet) it cannot
        // have cancelled anything.
        if note.deleted && saga.status.is_active() && !allowed_on_deleted && cleanup_started {
            violation(
                saga.note_id,
                Some(saga.version),
                format!(
                    "{} although the note is deleted and its cleanup started (it should have been cancelled)",
                    describe(saga)
                ),
            );
        }
    }

    for holder in holders {
        let mut message = holder.what;
        if !holder.held.is_empty() {
            let held: Vec<String> = holder
                .held
                .iter()
                .map(|(artifact, version)| format!("{} v{version}", artifact.name()))
                .collect();
            message.push_str(&format!("; keeps {}", held.join(", ")));
        }
        let finding = Finding {
            note_id: holder.note_id,
            version: holder.version,
            message,
        };
        if holder.parked {
            report.parked.push(finding);
        } else {
            report.in_flight.push(finding);
        }
    }
    report.violations.sort();
    report.in_flight.sort();
    report.parked.sort();
    report
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self
            .version
            .map_or("-".to_owned(), |version| version.to_string());
        write!(
            f,
            "VIOLATION note={} version={version} : {}",
            self.note_id, self.message
        )
    }
}

impl Finding {
    fn line(&self, label: &str) -> String {
        format!(
            "{label} note={} version={} : {}",
            self.note_id, self.version, self.message
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "notes        {} ({} published, {} deleted)",
            self.notes, self.published, self.deleted
        )?;
        let total: usize = self.sagas_by_state.iter().map(|(_, n)| n).sum();
        let states: Vec<String> = self
            .sagas_by_state
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        writeln!(f, "sagas        {total} ({})", states.join(", "))?;
        writeln!(f, "embeddings   {}", self.embeddings)?;
        writeln!(f, "audio files  {}", self.audio)?;
        for finding in &self.in_flight {
            writeln!(f, "{}", finding.line("IN FLIGHT"))?;
        }
        for finding in &self.parked {
            writeln!(f, "{}", finding.line("PARKED"))?;
        }
        for violation in &self.violations {
            writeln!(f, "{violation}")?;
        }
        match self.violations.len() {
            0 => writeln!(f, "ok: no violations"),
            1 => writeln!(f, "1 violation"),
            n => writeln!(f, "{n} violations"),
        }
    }
}

#[cfg(test)]
mod tests {
    use notesaga_events::{
        notes::{NoteCreated, NoteDeleted, NoteEdited, NotePublished},
        saga::{SagaCompleted, SagaStarted, StepSucceeded},
    };
    use notesaga_sagas::note_pipeline::{Pending, Step};

    use super::*;

    const A: Uuid = Uuid::from_u128(0xa);
    const B: Uuid = Uuid::from_u128(0xb);

    fn note(versions: &[i64], published: Option<i64>, deleted: bool) -> NoteFacts {
        NoteFacts {
            versions: versions.iter().copied().collect(),
            latest_version: versions.iter().copied().max().unwrap_or(0),
            deleted,
            published_version: published,
        }
    }

    /// A saga of `note` in `status`; a publish saga past its pivot when `published`.
    fn saga(note_id: Uuid, version: i64, kind: Kind, status: Status) -> NotePipeline {
        let saga_id = match kind {
            Kind::Publish => ids::saga_id(note_id, version),
            Kind::Cleanup => ids::cleanup_saga_id(note_id),
        };
        NotePipeline {
            saga_id,
            kind,
            note_id,
            version,
            text: String::new(),
            retire_version: None,
            status,
            done: Vec::new(),
            pending: None,
            cause: None,
            compensations: Vec::new(),
            compensated: Vec::new(),
            failure: None,
            budget_from: 1,
            stuck: false,
            last_progress_at: 0,
            seq: 1,
        }
    }

    fn completed(note_id: Uuid, version: i64) -> NotePipeline {
        let mut saga = saga(note_id, version, Kind::Publish, Status::Completed);
        saga.done = vec![Step::Embedding, Step::Narration, Step::Publish];
        saga
    }

    fn pending(mut saga: NotePipeline, step: Step, attempt: i32) -> NotePipeline {
        saga.pending = Some(Pending {
            step,
            attempt,
            command_id: Uuid::from_u128(99),
            deadline_at: 0,
            resends: 0,
            retry_at: None,
            failed: None,
        });
        saga
    }

    /// A snapshot with `notes`, `sagas` and artifacts given as (note, version) for both
    /// stores unless listed separately.
    fn snapshot(
        notes: Vec<(Uuid, NoteFacts)>,
        sagas: Vec<NotePipeline>,
        embeddings: &[(Uuid, i64)],
        audio: &[(Uuid, i64)],
    ) -> Snapshot {
        Snapshot {
            notes: notes.into_iter().collect(),
            sagas: SagaFacts {
                sagas: sagas.into_iter().map(|s| (s.saga_id, s)).collect(),
                ..SagaFacts::default()
            },
            embeddings: embeddings.iter().copied().collect(),
            audio: audio.iter().copied().collect(),
        }
    }

    fn messages(report: &Report) -> Vec<String> {
        report.violations.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn check_clean_published_note() {
        let mut v2 = completed(A, 2);
        v2.retire_version = Some(1);
        let s = snapshot(
            vec![(A, note(&[1, 2], Some(2), false))],
            vec![completed(A, 1), v2],
            &[(A, 2)],
            &[(A, 2)],
        );
        let report = evaluate(&s);
        assert_eq!(messages(&report), Vec::<String>::new());
        assert_eq!((report.notes, report.published, report.deleted), (1, 1, 0));
        assert!(report.in_flight.is_empty() && report.parked.is_empty());
        assert!(report.to_string().ends_with("ok: no violations\n"));
    }

    /// One row per case: the snapshot and the violation lines expected (substrings, in
    /// sorted order).
    #[test]
    fn check_invariant_table() {
        let superseded = saga(A, 1, Kind::Publish, Status::Superseded);
        let superseded_line = format!(
            "version=1 : embedding of a version that is neither published (published: 2) nor held by a saga at work or parked (its saga {} is superseded)",
            superseded.saga_id
        );
        let compensated = {
            let mut s = saga(A, 2, Kind::Publish, Status::Compensated);
            s.failure = Some("narration failed: boom".into());
            s
        };
        let cases: Vec<(&str, Snapshot, Vec<&str>)> = vec![
            (
                "(a) published version lacks audio",
                snapshot(
                    vec![(A, note(&[1], Some(1), false))],
                    vec![completed(A, 1)],
                    &[(A, 1)],
                    &[],
                ),
                vec!["version=1 : the published version has no audio"],
            ),
            (
                "(a) published version lacks both",
                snapshot(
                    vec![(A, note(&[1], Some(1), false))],
                    vec![completed(A, 1)],
                    &[],
                    &[],
                ),
                vec!["has no audio", "has no embedding"],
            ),
            (
                "(a) does not apply to a deleted note",
                snapshot(
                    vec![(A, note(&[1], Some(1), true))],
                    vec![
                        completed(A, 1),
                        saga(A, 1, Kind::Cleanup, Status::Completed),
                    ],
                    &[],
                    &[],
                ),
                vec![],
            ),
            (
                "(b) artifacts of a superseded version",
                snapshot(
                    vec![(A, note(&[1, 2], Some(2), false))],
                    vec![superseded, completed(A, 2)],
                    &[(A, 1), (A, 2)],
                    &[(A, 2)],
                ),
                vec![&superseded_line],
            ),
            (
                "(b) artifacts of a compensated version",
                snapshot(
                    vec![(A, note(&[1, 2], Some(1), false))],
                    vec![completed(A, 1), compensated],
                    &[(A, 1)],
                    &[(A, 1), (A, 2)],
                ),
                vec!["version=2 : audio of a version that is neither published (published: 1)"],
            ),
            (
                "(b) a deleted note's artifacts after its cleanup completed",
                snapshot(
                    vec![(A, note(&[1], Some(1), true))],
                    vec![
                        completed(A, 1),
                        saga(A, 1, Kind::Cleanup, Status::Completed),
                    ],
                    &[(A, 1)],
                    &[],
                ),
                vec!["embedding left behind by a deleted note"],
            ),
            (
                "(b) artifacts of an unknown note",
                snapshot(vec![], vec![], &[(B, 3)], &[]),
                vec!["version=3 : embedding of a note notes.events does not know"],
            ),
            (
                "(b) the retired version after the retirement finished",
                snapshot(
                    vec![(A, note(&[1, 2], Some(2), false))],
                    vec![completed(A, 1), {
                        let mut s = completed(A, 2);
                        s.retire_version = Some(1);
                        s
                    }],
                    &[(A, 1), (A, 2)],
                    &[(A, 2)],
                ),
                vec!["version=1 : embedding of a version"],
            ),
            (
                "(c) saga events without SagaStarted",
                {
                    let mut s = snapshot(vec![(A, note(&[1], None, false))], vec![], &[], &[]);
                    s.sagas.orphans.insert(ids::saga_id(A, 1), A);
                    s
                },
                vec!["version=- : saga"],
            ),
            (
                "(c) a saga of an unknown note",
                snapshot(vec![], vec![completed(B, 1)], &[], &[]),
                vec!["belongs to a note notes.events does not know"],
            ),
            (
                "(c) a publish saga still running before its pivot after the cleanup started",
                snapshot(
                    vec![(A, note(&[1], None, true))],
                    vec![
                        pending(
                            saga(A, 1, Kind::Publish, Status::Running),
                            Step::Narration,
                            1,
                        ),
                        saga(A, 1, Kind::Cleanup, Status::Completed),
                    ],
                    &[],
                    &[],
                ),
                vec!["running at narration#1 although the note is deleted and its cleanup started"],
            ),
        ];
        for (name, snapshot, expected) in cases {
            let report = evaluate(&snapshot);
            let got = messages(&report);
            assert_eq!(got.len(), expected.len(), "{name}: {got:#?}");
            for (line, want) in got.iter().zip(&expected) {
                assert!(line.starts_with("VIOLATION note="), "{name}: {line}");
                assert!(line.contains(want), "{name}: {line:?} lacks {want:?}");
            }
        }
    }

    /// Rows of what is allowed while work is in flight or parked: no violation, and the
    /// finding that explains it.
    #[test]
    fn check_allowed_table() {
        let running_v2 = {
            let mut s = pending(
                saga(A, 2, Kind::Publish, Status::Running),
                Step::Narration,
                1,
            );
            s.retire_version = Some(1);
            s.done = vec![Step::Embedding];
            s
        };
        let retiring = {
            let mut s = pending(
                saga(A, 2, Kind::Publish, Status::Running),
                Step::RetireNarration,
                1,
            );
            s.retire_version = Some(1);
            s.done = vec![Step::Embedding, Step::Narration, Step::Publish];
            s
        };
        let parked_compensation = {
            let mut s = pending(
                saga(A, 2, Kind::Publish, Status::CompensationFailed),
                Step::DeleteNarration,
                8,
            );
            s.failure = Some("publish failed: rejected".into());
            s
        };
        let parked_retirement = {
            let mut s = pending(
                saga(A, 2, Kind::Publish, Status::CompensationFailed),
                Step::RetireNarration,
                8,
            );
            s.retire_version = Some(1);
            s.done = vec![Step::Embedding, Step::Narration, Step::Publish];
            s
        };
        type Case<'a> = (&'a str, Snapshot, Vec<&'a str>, Vec<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (
                "a new version being processed keeps the published one and its own",
                snapshot(
                    vec![(A, note(&[1, 2], Some(1), false))],
                    vec![completed(A, 1), running_v2],
                    &[(A, 1), (A, 2)],
                    &[(A, 1)],
                ),
                vec!["version=2 : publish saga", "running at narration#1; keeps embedding v2"],
                vec![],
            ),
            (
                "a retirement in flight keeps the old version",
                snapshot(
                    vec![(A, note(&[1, 2], Some(2), false))],
                    vec![completed(A, 1), retiring],
                    &[(A, 1), (A, 2)],
                    &[(A, 1), (A, 2)],
                ),
                vec!["keeps embedding v1, audio v1"],
                vec![],
            ),
            (
                "a parked compensation keeps its version's artifacts, listed",
                snapshot(
                    vec![(A, note(&[1, 2], Some(1), false))],
                    vec![completed(A, 1), parked_compensation],
                    &[(A, 1)],
                    &[(A, 1), (A, 2)],
                ),
                vec![],
                vec![
                    "compensation_failed at delete_narration#8 after: publish failed: rejected; keeps audio v2",
                ],
            ),
            (
                "a parked retirement keeps the retired version",
                snapshot(
                    vec![(A, note(&[1, 2], Some(2), false))],
                    vec![completed(A, 1), parked_retirement],
                    &[(A, 2)],
                    &[(A, 1), (A, 2)],
                ),
                vec![],
                vec!["retire_narration#8; keeps audio v1"],
            ),
            (
                "a cleanup at work keeps every version",
                snapshot(
                    vec![(A, note(&[1, 2], Some(2), true))],
                    vec![
                        completed(A, 1),
                        completed(A, 2),
                        pending(
                            saga(A, 2, Kind::Cleanup, Status::Running),
                            Step::CleanupNarrations,
                            2,
                        ),
                    ],
                    &[],
                    &[(A, 1), (A, 2)],
                ),
                vec!["cleanup saga", "keeps audio v1, audio v2"],
                vec![],
            ),
            (
                "a parked cleanup keeps every version",
                snapshot(
                    vec![(A, note(&[1], Some(1), true))],
                    vec![
                        completed(A, 1),
                        saga(A, 1, Kind::Cleanup, Status::CompensationFailed),
                    ],
                    &[(A, 1)],
                    &[],
                ),
                vec![],
                vec!["cleanup saga", "keeps embedding v1"],
            ),
            (
                "a version the orchestrator has not taken up yet",
                snapshot(
                    vec![(A, note(&[1, 2], Some(1), false))],
                    vec![completed(A, 1)],
                    &[(A, 1)],
                    &[(A, 1)],
                ),
                vec!["version=2 : version not yet taken up by the orchestrator"],
                vec![],
            ),
            (
                "a deletion the orchestrator has not taken up yet",
                snapshot(
                    vec![(A, note(&[1], Some(1), true))],
                    vec![completed(A, 1)],
                    &[(A, 1)],
                    &[(A, 1)],
                ),
                vec!["deletion not yet taken up", "keeps embedding v1, audio v1"],
                vec![],
            ),
            (
                "on a deleted note: a compensation, and a publish saga past its pivot",
                snapshot(
                    vec![(A, note(&[1, 2, 3], Some(2), true))],
                    vec![
                        completed(A, 1),
                        {
                            let mut s = saga(A, 2, Kind::Publish, Status::Running);
                            s.done = vec![Step::Embedding, Step::Narration, Step::Publish];
                            s.retire_version = Some(1);
                            pending(s, Step::RetireEmbedding, 1)
                        },
                        pending(
                            saga(A, 3, Kind::Publish, Status::Compensating),
                            Step::DeleteEmbedding,
                            1,
                        ),
                        saga(A, 3, Kind::Cleanup, Status::Running),
                    ],
                    &[(A, 1), (A, 3)],
                    &[],
                ),
                vec!["compensating", "running at retire_embedding#1", "cleanup saga"],
                vec![],
            ),
            (
                "a publish saga on a deleted note before the orchestrator saw the deletion",
                snapshot(
                    vec![(A, note(&[1], None, true))],
                    vec![pending(
                        saga(A, 1, Kind::Publish, Status::Running),
                        Step::Embedding,
                        1,
                    )],
                    &[(A, 1)],
                    &[],
                ),
                vec!["deletion not yet taken up", "running at embedding#1"],
                vec![],
            ),
        ];
        for (name, snapshot, in_flight, parked) in cases {
            let report = evaluate(&snapshot);
            assert_eq!(messages(&report), Vec::<String>::new(), "{name}");
            let text = report.to_string();
            for want in in_flight {
                assert!(
                    report
                        .in_flight
                        .iter()
                        .any(|f| f.line("IN FLIGHT").contains(want)),
                    "{name}: no in-flight line has {want:?}:\n{text}"
                );
            }
            for want in parked {
                assert!(
                    report
                        .parked
                        .iter()
                        .any(|f| f.line("PARKED").contains(want)),
                    "{name}: no parked line has {want:?}:\n{text}"
                );
            }
        }
    }

    #[test]
    fn check_unsettled_counts_active_sagas_and_untaken_events() {
        let s = snapshot(
            vec![
                (A, note(&[1, 2], Some(1), false)),
                (B, note(&[1], None, true)),
            ],
            vec![
                completed(A, 1),
                saga(A, 2, Kind::Publish, Status::Compensating),
                saga(B, 1, Kind::Publish, Status::Superseded),
            ],
            &[],
            &[],
        );
        // The compensating saga and B's deletion, which has no cleanup saga yet.
        assert_eq!(s.unsettled(), 2);
        let settled = snapshot(
            vec![(A, note(&[1], Some(1), false))],
            vec![saga(A, 1, Kind::Publish, Status::CompensationFailed)],
            &[],
            &[],
        );
        assert_eq!(
            settled.unsettled(),
            0,
            "a parked saga does not keep the check waiting"
        );
    }

    #[test]
    fn check_fold_notes_first_event_id_wins() {
        let created = NotesEvent::NoteCreated(NoteCreated {
            note_id: A,
            owner: "o".into(),
            version: 1,
            title: "t".into(),
            body: "b".into(),
            occurred_at: 0,
        });
        let edited = |version| {
            NotesEvent::NoteEdited(NoteEdited {
                note_id: A,
                owner: "o".into(),
                version,
                title: "t".into(),
                body: "b".into(),
                occurred_at: 0,
            })
        };
        let published = |version| {
            NotesEvent::NotePublished(NotePublished {
                note_id: A,
                version,
                occurred_at: 0,
            })
        };
        let deleted = NotesEvent::NoteDeleted(NoteDeleted {
            note_id: B,
            owner: "o".into(),
            version: 4,
            occurred_at: 0,
        });
        let (e1, e2, e3, e4, e5) = (
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Uuid::from_u128(3),
            Uuid::from_u128(4),
            Uuid::from_u128(5),
        );
        let (v2, zombie, p1, p2) = (edited(2), edited(3), published(1), published(2));
        // A zombie wrote a different record under an id already used: the first in log
        // order wins, so its "version 3" never happened; a re-sent publish is dropped too.
        let events = [
            (e1, &created),
            (e2, &v2),
            (e2, &zombie),
            (e3, &p1),
            (e4, &p2),
            (e4, &p2),
            (e5, &deleted),
        ];
        let (notes, duplicates) = fold_notes(events);
        assert_eq!(duplicates, 2);
        assert_eq!(notes[&A], note(&[1, 2], Some(2), false));
        assert_eq!(
            notes[&B],
            NoteFacts {
                versions: BTreeSet::new(),
                latest_version: 4,
                deleted: true,
                published_version: None,
            }
        );
    }

    #[test]
    fn check_fold_sagas_dedupes_and_finds_orphans() {
        let saga_id = ids::saga_id(A, 1);
        let started = SagaEvent::SagaStarted(SagaStarted {
            saga_id,
            note_id: A,
            version: 1,
            text: "t".into(),
            kind: "publish".into(),
            retire_version: None,
            occurred_at: 0,
        });
        let succeeded = SagaEvent::StepSucceeded(StepSucceeded {
            saga_id,
            note_id: A,
            version: 1,
            step: "embedding".into(),
            attempt: 1,
            occurred_at: 1,
        });
        let orphan_id = ids::saga_id(B, 7);
        let orphan = SagaEvent::SagaCompleted(SagaCompleted {
            saga_id: orphan_id,
            note_id: B,
            version: 7,
            occurred_at: 2,
        });
        let (e1, e2, e3) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let facts = fold_sagas([
            (e1, &started),
            (e2, &succeeded),
            (e2, &succeeded),
            (e3, &orphan),
        ]);
        assert_eq!(facts.duplicates, 1);
        assert_eq!(
            facts.sagas[&saga_id].done,
            vec![Step::Embedding],
            "applied once"
        );
        assert_eq!(facts.sagas[&saga_id].status, Status::Running);
        assert_eq!(facts.orphans, BTreeMap::from([(orphan_id, B)]));
    }

    #[test]
    fn check_report_lines() {
        let s = snapshot(
            vec![(A, note(&[1], Some(1), false))],
            vec![completed(A, 1)],
            &[(A, 1)],
            &[],
        );
        let text = evaluate(&s).to_string();
        assert_eq!(
            text,
            format!(
                "notes        1 (1 published, 0 deleted)\n\
                 sagas        1 (running 0, compensating 0, completed 1, compensated 0, compensation_failed 0, superseded 0)\n\
                 embeddings   1\n\
                 audio files  0\n\
                 VIOLATION note={A} version=1 : the published version has no audio\n\
                 1 violation\n"
            )
        );
    }
}
