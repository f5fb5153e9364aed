//! `notesaga-chaos`: the chaos harness (issue 14).
//!
//! Starts the broker, the registry and every role as its own process (two instances of
//! each processor), runs a seeded load of several users creating, editing and deleting
//! notes (some with `Idempotency-Key`s and retries), while a seeded fault schedule kills,
//! pauses and restarts roles and the broker and makes the embedding and narration
//! providers fail, slow down or hang. Then it heals everything, lets the system settle,
//! and checks the history the clients recorded against the raw log and the stores
//! ([`verdict`]). It prints a table and exits 1 on any anomaly (2 if it could not run).
//!
//! A standalone test tool rather than a `notesaga` subcommand: it drives the workspace's
//! binaries from the outside, as separate processes it kills, through the test fixtures
//! (`notesaga-testkit`) and the `fault-injection` build, none of which belongs in the
//! product binary. `make chaos` runs it; a short run is a test of this crate.
//!
//! - [`rng`]: the seeded generator; [`schedule`]: the fault schedule (pure);
//! - [`load`]: the clients and the history they record;
//! - [`observe`]: the facts from the log and the stores; [`verdict`]: the checker (pure);
//! - [`run`]: one run, start to findings; [`report`]: the table.

mod load;
mod observe;
mod report;
mod rng;
mod run;
mod schedule;
mod verdict;

use std::{process::ExitCode, time::Duration};

use clap::Parser;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "notesaga-chaos",
    about = "Seeded faults against every notesaga role; checks the clients' history against the log"
)]
struct Args {
    /// The seed of the load and the fault schedule (default: drawn from the clock).
    #[arg(long, env = "CHAOS_SEED")]
    seed: Option<u64>,
    /// How long the load and the faults run: `90s`, `30m`, `1h` or seconds.
    #[arg(long, env = "CHAOS_DURATION", default_value = "30m", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent users (one client each).
    #[arg(long, env = "CHAOS_USERS", default_value_t = 4)]
    users: usize,
    /// Anomaly kinds written up as known limits in docs/reliability.md: reported in the
    /// table, but they do not fail the run (comma-separated, e.g. `broker-unusable`).
    #[arg(long, env = "CHAOS_ALLOW", value_delimiter = ',')]
    allow: Vec<String>,
    /// The fault kinds to draw (comma-separated; default all): kill, pause, restart,
    /// broker-kill, broker-pause, broker-restart, provider-fail, provider-slow,
    /// provider-hang.
    #[arg(long, env = "CHAOS_FAULTS", value_delimiter = ',', value_parser = parse_kind)]
    faults: Vec<schedule::FaultKind>,
    /// How long the system may take to settle afterwards.
    #[arg(long, env = "CHAOS_SETTLE", default_value = "4m", value_parser = parse_duration)]
    settle: Duration,
}

fn parse_kind(text: &str) -> Result<schedule::FaultKind, String> {
    schedule::FaultKind::parse(text).ok_or_else(|| format!("unknown fault kind {text:?}"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (e.g. 90s, 30m, 1h)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("unknown unit in {text:?}: use s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let plan = run::Plan {
        seed,
        duration: args.duration,
        users: args.users.max(1),
        settle: args.settle,
        faults: if args.faults.is_empty() {
            schedule::FaultKind::ALL.to_vec()
        } else {
            args.faults.clone()
        },
    };
    match run::run(plan).await {
        Ok(findings) => {
            print!("{}", report::table(&findings, &args.allow));
            let failing = findings
                .anomalies
                .iter()
                .filter(|a| !args.allow.iter().any(|k| k == a.kind))
                .count();
            if failing == 0 && findings.undecodable == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("notesaga-chaos: the run failed (seed {seed}): {err:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        for (text, secs) in [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600)] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
