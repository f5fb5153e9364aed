//! The fault schedule drawn from the seed: what happens when, to whom, for how long.
//! Pure, so a seed's schedule is a table test; [`crate::run`] carries it out.
//!
//! Faults come one after another (each healed before the next starts), separated by a
//! drawn gap, so every fault's effect can be told apart in the history while the load
//! runs throughout.

use std::{fmt, time::Duration};

use crate::rng::Rng;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FaultKind {
    /// SIGKILL a role instance, restart it (same `--instance-id`) after the hold.
    Kill,
    /// SIGSTOP a role instance, SIGCONT it after the hold.
    Pause,
    /// SIGTERM a role instance and start it again at once.
    Restart,
    /// SIGKILL the broker, start it again (same log, same address) after the hold.
    BrokerKill,
    /// SIGSTOP the broker, SIGCONT it after the hold.
    BrokerPause,
    /// SIGTERM the broker and start it again at once.
    BrokerRestart,
    /// A provider's fault point fails every call during the hold.
    ProviderFail,
    /// Narration renders slowly (a few seconds per call) during the hold.
    ProviderSlow,
    /// Narration hangs past its saga deadline during the hold.
    ProviderHang,
}

impl FaultKind {
    pub(crate) const ALL: [Self; 9] = [
        Self::Kill,
        Self::Pause,
        Self::Restart,
        Self::BrokerKill,
        Self::BrokerPause,
        Self::BrokerRestart,
        Self::ProviderFail,
        Self::ProviderSlow,
        Self::ProviderHang,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Restart => "restart",
            Self::BrokerKill => "broker-kill",
            Self::BrokerPause => "broker-pause",
            Self::BrokerRestart => "broker-restart",
            Self::ProviderFail => "provider-fail",
            Self::ProviderSlow => "provider-slow",
            Self::ProviderHang => "provider-hang",
        }
    }

    /// Weight out of 100 and hold range in seconds.
    fn draw(self) -> (u64, (u64, u64)) {
        match self {
            Self::Kill => (24, (1, 6)),
            Self::Pause => (14, (1, 8)),
            Self::Restart => (14, (0, 1)),
            Self::BrokerKill => (8, (1, 4)),
            Self::BrokerPause => (7, (1, 5)),
            Self::BrokerRestart => (5, (0, 1)),
            Self::ProviderFail => (12, (5, 20)),
            Self::ProviderSlow => (8, (8, 20)),
            Self::ProviderHang => (8, (8, 20)),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// When it starts, from the start of the load.
    pub(crate) at: Duration,
    pub(crate) kind: FaultKind,
    /// The role instance, the fault point, or `broker`.
    pub(crate) target: String,
    /// How long it lasts before it is healed.
    pub(crate) hold: Duration,
}

/// The fault points that can fail (see docs/sagas.md, "Fault points").
pub(crate) const FAILING_POINTS: [&str; 2] = ["embedding.generate", "narration.render"];

/// The pause point of narration (milliseconds per call while its file is there).
pub(crate) const PAUSE_POINT: &str = "narration.render.pause";

impl FaultKind {
    /// The kind named `name` (as the table prints it).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == name.trim())
    }
}

/// The schedule for `seed` over `duration`, against the role `instances`, drawing only
/// the `enabled` kinds (their weights renormalised).
pub(crate) fn schedule(
    seed: u64,
    duration: Duration,
    instances: &[&str],
    enabled: &[FaultKind],
) -> Vec<Fault> {
    let mut rng = Rng::fork(seed, u64::MAX);
    let mut faults = Vec::new();
    let total: u64 = enabled.iter().map(|kind| kind.draw().0).sum();
    // The first seconds let the load start on a healthy system.
    let mut at = Duration::from_secs(rng.range(3, 8));
    while at < duration && !instances.is_empty() && total > 0 {
        let mut pick = rng.range(0, total);
        let kind = FaultKind::ALL
            .into_iter()
            .filter(|kind| enabled.contains(kind))
            .find(|kind| {
                let (weight, _) = kind.draw();
                if pick < weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .unwrap_or(enabled[0]);
        let (_, (low, high)) = kind.draw();
        let hold = Duration::from_millis(rng.range(low * 1000, high * 1000 + 1));
        let target = match kind {
            FaultKind::Kill | FaultKind::Pause | FaultKind::Restart => {
                instances[rng.range(0, instances.len() as u64) as usize].to_owned()
            }
            FaultKind::BrokerKill | FaultKind::BrokerPause | FaultKind::BrokerRestart => {
                "broker".to_owned()
            }
            FaultKind::ProviderFail => {
                FAILING_POINTS[rng.range(0, FAILING_POINTS.len() as u64) as usize].to_owned()
            }
            FaultKind::ProviderSlow | FaultKind::ProviderHang => PAUSE_POINT.to_owned(),
        };
        faults.push(Fault {
            at,
            kind,
            target,
            hold,
        });
        at += hold + Duration::from_millis(rng.range(2_000, 9_000));
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCES: [&str; 3] = ["notes", "notes-2", "api"];

    #[test]
    fn a_seed_reproduces_its_schedule_and_another_seed_does_not() {
        let minutes = Duration::from_secs(600);
        assert_eq!(
            schedule(42, minutes, &INSTANCES, &FaultKind::ALL),
            schedule(42, minutes, &INSTANCES, &FaultKind::ALL)
        );
        assert_ne!(
            schedule(42, minutes, &INSTANCES, &FaultKind::ALL),
            schedule(43, minutes, &INSTANCES, &FaultKind::ALL)
        );
    }

    #[test]
    fn faults_follow_each_other_within_the_run_and_name_real_targets() {
        let duration = Duration::from_secs(1800);
        let faults = schedule(7, duration, &INSTANCES, &FaultKind::ALL);
        assert!(faults.len() > 50, "{}", faults.len());
        for pair in faults.windows(2) {
            assert!(pair[0].at + pair[0].hold < pair[1].at, "{pair:?}");
        }
        for fault in &faults {
            assert!(fault.at < duration);
            let ok = match fault.kind {
                FaultKind::Kill | FaultKind::Pause | FaultKind::Restart => {
                    INSTANCES.contains(&fault.target.as_str())
                }
                FaultKind::BrokerKill | FaultKind::BrokerPause | FaultKind::BrokerRestart => {
                    fault.target == "broker"
                }
                FaultKind::ProviderFail => FAILING_POINTS.contains(&fault.target.as_str()),
                FaultKind::ProviderSlow | FaultKind::ProviderHang => fault.target == PAUSE_POINT,
            };
            assert!(ok, "{fault:?}");
        }
        // Over half an hour every kind comes up.
        for kind in FaultKind::ALL {
            assert!(faults.iter().any(|f| f.kind == kind), "{kind} never drawn");
        }
    }

    #[test]
    fn only_enabled_kinds_are_drawn() {
        let some = [FaultKind::Pause, FaultKind::ProviderHang];
        let faults = schedule(7, Duration::from_secs(900), &INSTANCES, &some);
        assert!(faults.len() > 20);
        assert!(faults.iter().all(|f| some.contains(&f.kind)), "{faults:?}");
        assert!(schedule(7, Duration::from_secs(900), &INSTANCES, &[]).is_empty());
        assert_eq!(FaultKind::parse("broker-kill"), Some(FaultKind::BrokerKill));
        assert_eq!(FaultKind::parse("nap"), None);
    }
}
