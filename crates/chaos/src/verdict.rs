//! The checker: the clients' history against what the raw log and the stores hold.
//! Pure (no I/O), so each rule is a table test; [`crate::observe`] gathers the facts.
//!
//! The log is read raw, duplicates included: a record read twice (a producer retry, a
//! zombie writer) is counted as a raw duplicate, apart from the effects, and only a
//! second *different* effect is an anomaly.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use crate::load::{Op, OpKind, Outcome};

/// What a command on `notes.commands` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandKind {
    Create,
    Edit,
    Delete,
    /// The saga's own commands (publish, mark failed): not the clients'.
    Other,
}

/// A record of `notes.commands`.
#[derive(Debug, Clone)]
pub(crate) struct CommandRecord {
    pub(crate) command_id: Uuid,
    pub(crate) note_id: Uuid,
    pub(crate) kind: CommandKind,
    /// The title of a create or edit: the request's marker.
    pub(crate) title: Option<String>,
}

/// A record of `notes.outcomes`.
#[derive(Debug, Clone)]
pub(crate) struct OutcomeRecord {
    pub(crate) command_id: Uuid,
    pub(crate) applied: bool,
    pub(crate) version: Option<i64>,
    pub(crate) code: Option<String>,
}

/// A record of `notes.events`.
#[derive(Debug, Clone)]
pub(crate) struct EventRecord {
    pub(crate) event_id: Uuid,
    pub(crate) note_id: Uuid,
    pub(crate) version: i64,
    pub(crate) kind: String,
}

/// A note as its owner reads it at the end (`GET /v1/notes/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoteRead {
    pub(crate) status: u16,
    pub(crate) version: Option<i64>,
    pub(crate) title: Option<String>,
}

/// Everything the checker looks at besides the history.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    pub(crate) commands: Vec<CommandRecord>,
    pub(crate) outcomes: Vec<OutcomeRecord>,
    pub(crate) events: Vec<EventRecord>,
    pub(crate) notes: BTreeMap<Uuid, NoteRead>,
    /// Sagas neither finished nor parked: (saga, note, state).
    pub(crate) unfinished_sagas: Vec<(Uuid, Uuid, String)>,
    /// Sagas parked in `compensation_failed`: (saga, note, reason).
    pub(crate) parked_sagas: Vec<(Uuid, Uuid, Option<String>)>,
    /// `notesaga check`'s report when it was not clean.
    pub(crate) check: Option<String>,
    /// Rows of the read models that differ from a fresh rebuild.
    pub(crate) rebuild: Vec<String>,
}

/// One thing that should not have happened.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Anomaly {
    pub(crate) kind: &'static str,
    pub(crate) note: Option<Uuid>,
    pub(crate) detail: String,
}

/// Records read more than once (same id), counted apart from effects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RawDuplicates {
    pub(crate) commands: usize,
    pub(crate) outcomes: usize,
    pub(crate) events: usize,
}

/// The effect a command had: applied, the version, the rejection code.
type Effect = (bool, Option<i64>, Option<String>);

/// A client's request on a note that took effect: its place in the client's order, its
/// kind, its marker and its effect.
type Step = (u64, OpKind, String, Effect);

/// Checks the history against the facts.
pub(crate) fn verdict(history: &[Op], facts: &Facts) -> (Vec<Anomaly>, RawDuplicates) {
    let mut anomalies = Vec::new();
    let mut raw = RawDuplicates::default();
    let mut flag = |kind, note, detail: String| {
        anomalies.push(Anomaly { kind, note, detail });
    };

    let mut commands: HashMap<Uuid, &CommandRecord> = HashMap::new();
    let mut by_marker: HashMap<&str, BTreeSet<Uuid>> = HashMap::new();
    let mut deletes: HashMap<Uuid, BTreeSet<Uuid>> = HashMap::new();
    for command in &facts.commands {
        if commands.insert(command.command_id, command).is_some() {
            raw.commands += 1;
            continue;
        }
        match command.kind {
            CommandKind::Create | CommandKind::Edit => {
                if let Some(title) = &command.title {
                    by_marker
                        .entry(title.as_str())
                        .or_default()
                        .insert(command.command_id);
                }
            }
            CommandKind::Delete => {
                deletes
                    .entry(command.note_id)
                    .or_default()
                    .insert(command.command_id);
            }
            CommandKind::Other => {}
        }
    }
    let mut effects: HashMap<Uuid, BTreeSet<Effect>> = HashMap::new();
    let mut seen_outcomes = HashSet::new();
    for outcome in &facts.outcomes {
        let effect = (outcome.applied, outcome.version, outcome.code.clone());
        if !seen_outcomes.insert((outcome.command_id, effect.clone())) {
            raw.outcomes += 1;
        }
        effects
            .entry(outcome.command_id)
            .or_default()
            .insert(effect);
    }
    let effect_of = |command_id: &Uuid| -> Option<Effect> {
        effects
            .get(command_id)
            .and_then(|set| set.iter().next().cloned())
    };

    // Each request: its command on the log, once, with one outcome.
    // (client, note) → [(seq, kind, marker, effect)] in the client's order.
    let mut lives: BTreeMap<(usize, Uuid), Vec<Step>> = BTreeMap::new();
    for op in history {
        let on_log: BTreeSet<Uuid> = match op.kind {
            OpKind::Create | OpKind::Edit => by_marker
                .get(op.marker.as_str())
                .cloned()
                .unwrap_or_default(),
            OpKind::Delete => BTreeSet::new(),
        };
        if on_log.len() > 1 {
            flag(
                "doubled-command",
                op.note,
                format!(
                    "{} produced {} commands: {on_log:?}",
                    op.marker,
                    on_log.len()
                ),
            );
        }
        let command = match &op.outcome {
            Outcome::Acked { command_id } => {
                if !commands.contains_key(command_id) {
                    flag(
                        "lost-command",
                        op.note,
                        format!(
                            "{} acknowledged {command_id}, not on notes.commands",
                            op.marker
                        ),
                    );
                }
                if !on_log.is_empty() && !on_log.contains(command_id) {
                    flag(
                        "acked-other-command",
                        op.note,
                        format!(
                            "{} acknowledged {command_id}, the log has {on_log:?}",
                            op.marker
                        ),
                    );
                }
                match effects.get(command_id).map(BTreeSet::len).unwrap_or(0) {
                    0 => flag(
                        "no-outcome",
                        op.note,
                        format!("{} ({command_id}) acknowledged, never decided", op.marker),
                    ),
                    1 => {}
                    n => flag(
                        "two-outcomes",
                        op.note,
                        format!(
                            "{} ({command_id}) has {n} different outcomes: {:?}",
                            op.marker, effects[command_id]
                        ),
                    ),
                }
                Some(*command_id)
            }
            Outcome::Refused(status) => {
                if !on_log.is_empty() {
                    flag(
                        "refused-but-sent",
                        op.note,
                        format!(
                            "{} answered {status}, yet {on_log:?} is on the log",
                            op.marker
                        ),
                    );
                }
                None
            }
            // At most once (checked above); the one on the log, if any, counts.
            Outcome::Unknown => match op.kind {
                OpKind::Delete => op
                    .note
                    .and_then(|note| deletes.get(&note))
                    .and_then(|ids| ids.iter().next().copied()),
                _ => on_log.iter().next().copied(),
            },
        };
        let note = op
            .note
            .or_else(|| command.and_then(|id| commands.get(&id)).map(|c| c.note_id));
        if let (Some(note), Some(command)) = (note, command) {
            if let Some(effect) = effect_of(&command) {
                lives.entry((op.client, note)).or_default().push((
                    op.seq,
                    op.kind,
                    op.marker.clone(),
                    effect,
                ));
            }
        }
    }
    let mut delete_requests: HashMap<Uuid, usize> = HashMap::new();
    for op in history.iter().filter(|op| op.kind == OpKind::Delete) {
        if let Some(note) = op.note {
            *delete_requests.entry(note).or_default() += 1;
        }
    }
    for (note, ids) in &deletes {
        let asked = delete_requests.get(note).copied().unwrap_or(0);
        if ids.len() > asked.max(1) {
            flag(
                "doubled-command",
                Some(*note),
                format!("{} deletes on the log for {asked} requests", ids.len()),
            );
        }
    }

    // Each note: applied in the client's order, and read back as the last one left it.
    for ((_, note), mut ops) in lives {
        ops.sort_by_key(|(seq, ..)| *seq);
        let applied: Vec<_> = ops
            .iter()
            .filter(|(.., (applied, _, _))| *applied)
            .collect();
        for pair in applied.windows(2) {
            let (a, b) = (pair[0].3 .1, pair[1].3 .1);
            if pair[1].1 != OpKind::Delete && a >= b {
                flag(
                    "out-of-order",
                    Some(note),
                    format!(
                        "{} got version {a:?}, the later {} {b:?}",
                        pair[0].2, pair[1].2
                    ),
                );
            }
        }
        let Some(last) = applied.last() else { continue };
        let read = facts.notes.get(&note);
        let expected = match last.1 {
            OpKind::Delete => NoteRead {
                status: 410,
                version: None,
                title: None,
            },
            _ => NoteRead {
                status: 200,
                version: last.3 .1,
                title: Some(last.2.clone()),
            },
        };
        let matches = match read {
            Some(read) if expected.status == 410 => read.status == 410,
            Some(read) => read == &expected,
            None => false,
        };
        if !matches {
            flag(
                "final-state",
                Some(note),
                format!("expected {expected:?} after {}, read {read:?}", last.2),
            );
        }
    }

    // The log itself: one event per (note, version, kind).
    let mut events: BTreeMap<(Uuid, i64, &str), BTreeSet<Uuid>> = BTreeMap::new();
    let mut seen_events = HashSet::new();
    for event in &facts.events {
        if !seen_events.insert(event.event_id) {
            raw.events += 1;
        }
        events
            .entry((event.note_id, event.version, event.kind.as_str()))
            .or_default()
            .insert(event.event_id);
    }
    for ((note, version, kind), ids) in events {
        if ids.len() > 1 {
            flag(
                "version-forked",
                Some(note),
                format!("{kind} of version {version} has {} event ids", ids.len()),
            );
        }
    }

    for (saga, note, state) in &facts.unfinished_sagas {
        flag(
            "saga-unfinished",
            Some(*note),
            format!("saga {saga} is {state}"),
        );
    }
    for (saga, note, reason) in &facts.parked_sagas {
        if reason.as_deref().is_none_or(str::is_empty) {
            flag(
                "saga-parked-without-reason",
                Some(*note),
                format!("saga {saga}"),
            );
        }
    }
    if let Some(report) = &facts.check {
        flag(
            "check",
            None,
            report.lines().take(20).collect::<Vec<_>>().join(" | "),
        );
    }
    for row in &facts.rebuild {
        flag("rebuild-differs", None, row.clone());
    }
    anomalies.sort();
    (anomalies, raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Attempt;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn op(seq: u64, kind: OpKind, note: u128, outcome: Outcome) -> Op {
        Op {
            client: 0,
            seq,
            kind,
            note: Some(id(note)),
            marker: format!("c0-{seq}"),
            key: None,
            attempts: vec![Attempt::Answered(202)],
            outcome,
        }
    }

    fn acked(command: u128) -> Outcome {
        Outcome::Acked {
            command_id: id(command),
        }
    }

    fn command(command: u128, note: u128, kind: CommandKind, title: Option<&str>) -> CommandRecord {
        CommandRecord {
            command_id: id(command),
            note_id: id(note),
            kind,
            title: title.map(str::to_owned),
        }
    }

    fn applied(command: u128, version: i64) -> OutcomeRecord {
        OutcomeRecord {
            command_id: id(command),
            applied: true,
            version: Some(version),
            code: None,
        }
    }

    fn read(version: i64, title: &str) -> NoteRead {
        NoteRead {
            status: 200,
            version: Some(version),
            title: Some(title.into()),
        }
    }

    /// A create (c0-1 → command 11) and an edit (c0-2 → 12) of note 1, applied as 1 and 2.
    fn clean() -> (Vec<Op>, Facts) {
        let history = vec![
            op(1, OpKind::Create, 1, acked(11)),
            op(2, OpKind::Edit, 1, acked(12)),
        ];
        let facts = Facts {
            commands: vec![
                command(11, 1, CommandKind::Create, Some("c0-1")),
                command(12, 1, CommandKind::Edit, Some("c0-2")),
            ],
            outcomes: vec![applied(11, 1), applied(12, 2)],
            notes: BTreeMap::from([(id(1), read(2, "c0-2"))]),
            ..Facts::default()
        };
        (history, facts)
    }

    fn kinds(history: &[Op], facts: &Facts) -> Vec<&'static str> {
        verdict(history, facts).0.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_clean_history_has_no_anomaly_and_raw_duplicates_are_only_counted() {
        let (history, mut facts) = clean();
        assert_eq!(kinds(&history, &facts), Vec::<&str>::new());
        facts.commands.push(facts.commands[0].clone());
        facts.outcomes.push(applied(12, 2));
        let (anomalies, raw) = verdict(&history, &facts);
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert_eq!(
            raw,
            RawDuplicates {
                commands: 1,
                outcomes: 1,
                events: 0
            }
        );
    }

    #[test]
    fn each_broken_promise_is_named() {
        type Spoil = fn(&mut Vec<Op>, &mut Facts);
        let cases: [(&str, Spoil); 9] = [
            ("lost-command", |_, f| {
                f.commands.remove(1);
            }),
            ("no-outcome", |_, f| drop(f.outcomes.remove(1))),
            ("two-outcomes", |_, f| {
                f.outcomes.push(OutcomeRecord {
                    command_id: id(12),
                    applied: false,
                    version: None,
                    code: Some("version_conflict".into()),
                })
            }),
            ("doubled-command", |_, f| {
                f.commands
                    .push(command(13, 1, CommandKind::Edit, Some("c0-2")))
            }),
            ("refused-but-sent", |h, _| {
                h[1].outcome = Outcome::Refused(404)
            }),
            ("final-state", |_, f| {
                f.notes.insert(id(1), read(1, "c0-1"));
            }),
            ("out-of-order", |_, f| {
                f.outcomes = vec![applied(11, 2), applied(12, 1)];
                f.notes.insert(id(1), read(1, "c0-2"));
            }),
            ("version-forked", |_, f| {
                for event in [5, 6] {
                    f.events.push(EventRecord {
                        event_id: id(event),
                        note_id: id(1),
                        version: 2,
                        kind: "NoteEdited".into(),
                    });
                }
            }),
            ("saga-unfinished", |_, f| {
                f.unfinished_sagas.push((id(9), id(1), "running".into()))
            }),
        ];
        for (kind, spoil) in cases {
            let (mut history, mut facts) = clean();
            spoil(&mut history, &mut facts);
            let found = kinds(&history, &facts);
            assert!(found.contains(&kind), "{kind}: {found:?}");
        }
    }

    #[test]
    fn a_timed_out_request_counts_once_if_it_took_effect() {
        let (mut history, mut facts) = clean();
        history[1].outcome = Outcome::Unknown;
        assert_eq!(kinds(&history, &facts), Vec::<&str>::new());
        // It did not take effect: the note stays at the create.
        facts.commands.remove(1);
        facts.outcomes.remove(1);
        facts.notes.insert(id(1), read(1, "c0-1"));
        assert_eq!(kinds(&history, &facts), Vec::<&str>::new());
    }

    #[test]
    fn a_deleted_note_reads_gone() {
        let (mut history, mut facts) = clean();
        history.push(op(3, OpKind::Delete, 1, acked(13)));
        facts
            .commands
            .push(command(13, 1, CommandKind::Delete, None));
        facts.outcomes.push(applied(13, 3));
        assert_eq!(kinds(&history, &facts), vec!["final-state"]);
        facts.notes.insert(
            id(1),
            NoteRead {
                status: 410,
                version: None,
                title: None,
            },
        );
        assert_eq!(kinds(&history, &facts), Vec::<&str>::new());
        facts
            .commands
            .push(command(14, 1, CommandKind::Delete, None));
        assert_eq!(kinds(&history, &facts), vec!["doubled-command"]);
    }
}
