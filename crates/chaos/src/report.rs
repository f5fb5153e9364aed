//! The table a run prints: seed, duration, commands, faults by kind, anomalies by kind
//! with their notes.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::{
    load::{Attempt, OpKind, Outcome},
    run::Findings,
    schedule::FaultKind,
};

/// The report of a run, as text.
pub(crate) fn table(findings: &Findings, allowed: &[String]) -> String {
    let mut out = String::new();
    let plan = &findings.plan;
    let history = &findings.history;
    let count = |f: &dyn Fn(&crate::load::Op) -> bool| history.iter().filter(|op| f(op)).count();
    let _ = writeln!(out, "\nnotesaga-chaos report");
    let _ = writeln!(out, "  seed                {}", plan.seed);
    let _ = writeln!(
        out,
        "  duration            {} s of load, {} s in all, {} users",
        plan.duration.as_secs(),
        findings.elapsed.as_secs(),
        plan.users
    );
    let _ = writeln!(
        out,
        "  requests            {} (create {}, edit {}, delete {}; {} with a key, {} retried)",
        history.len(),
        count(&|op| op.kind == OpKind::Create),
        count(&|op| op.kind == OpKind::Edit),
        count(&|op| op.kind == OpKind::Delete),
        count(&|op| op.key.is_some()),
        count(&|op| op.attempts.len() > 1),
    );
    let _ = writeln!(
        out,
        "  commands            {} acknowledged, {} unknown (timed out or broken), {} refused",
        count(&|op| matches!(op.outcome, Outcome::Acked { .. })),
        count(&|op| op.outcome == Outcome::Unknown),
        count(&|op| matches!(op.outcome, Outcome::Refused(_))),
    );
    let _ = writeln!(
        out,
        "  attempts timed out  {}",
        history
            .iter()
            .flat_map(|op| &op.attempts)
            .filter(|a| **a == Attempt::TimedOut)
            .count()
    );
    let _ = writeln!(
        out,
        "  raw duplicates      commands {}, outcomes {}, events {} (read twice on the log; not effects)",
        findings.raw.commands, findings.raw.outcomes, findings.raw.events
    );
    let _ = writeln!(
        out,
        "  parked sagas        {} (compensation_failed, each with its reason)",
        findings.parked
    );
    let _ = writeln!(
        out,
        "  fault kinds drawn   {}",
        plan.faults
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "  faults");
    for kind in FaultKind::ALL {
        let _ = writeln!(
            out,
            "    {:<18}{}",
            kind.name(),
            findings.faults.get(&kind).copied().unwrap_or(0)
        );
    }
    let mut by_kind: BTreeMap<&str, Vec<&crate::verdict::Anomaly>> = BTreeMap::new();
    for anomaly in &findings.anomalies {
        by_kind.entry(anomaly.kind).or_default().push(anomaly);
    }
    if findings.undecodable > 0 {
        let _ = writeln!(out, "  undecodable records {}", findings.undecodable);
    }
    if by_kind.is_empty() {
        let _ = writeln!(out, "  anomalies           none");
    } else {
        let _ = writeln!(out, "  anomalies           {}", findings.anomalies.len());
        for (kind, anomalies) in by_kind {
            let mut notes: Vec<String> = anomalies
                .iter()
                .filter_map(|a| a.note.map(|n| n.to_string()))
                .collect();
            notes.dedup();
            let known = if allowed.iter().any(|k| k == kind) {
                " (a known limit, docs/reliability.md: allowed)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {kind:<26}{}{known} notes: {}",
                anomalies.len(),
                notes.join(" ")
            );
            for anomaly in anomalies.iter().take(5) {
                let _ = writeln!(out, "      {}", anomaly.detail);
            }
        }
    }
    out
}
