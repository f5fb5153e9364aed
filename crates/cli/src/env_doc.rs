//! `example.env` is the operator's reference for configuration (README.md promises it
//! explains every variable). These tests keep it honest in both directions: every
//! `NOTESAGA_*` variable a clap argument reads is in the file, and the file names no
//! variable that nothing reads (a renamed flag would otherwise leave a dead entry).

use std::collections::BTreeSet;

use clap::CommandFactory as _;

use crate::args::Cli;

/// The file under test, compiled in so the test needs no working directory.
const EXAMPLE_ENV: &str = include_str!("../../../example.env");

/// The Compose file: the `${NOTESAGA_…}` it interpolates are read (by Compose), and
/// must be documented like the CLI's.
const COMPOSE: &str = include_str!("../../../docker-compose.yml");

/// The `${NAME…}` interpolations of `text` whose name starts with `NOTESAGA_`.
fn interpolated_vars(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            Some(rest[..end].to_owned())
        })
        .filter(|name| name.starts_with("NOTESAGA_"))
        .collect()
}

/// Variables read outside the CLI's clap tree that `example.env` may document.
const READ_OUTSIDE_CLAP: &[&str] = &[
    // The log filter: `EnvFilter::try_from_env` in telemetry.rs, not a flag.
    "NOTESAGA_LOG",
    // The broker's log filter: read by the `notesaga-broker` binary, which the broker
    // process `notesaga dev` starts inherits from the environment.
    "NOTESAGA_BROKER_LOG",
    // The broker's storage engine, fsync policy and metrics address: flags of
    // `notesaga-broker` (crates/broker/src/main.rs), inherited the same way.
    "NOTESAGA_BROKER_STORAGE",
    "NOTESAGA_BROKER_FSYNC",
    "NOTESAGA_BROKER_METRICS_ADDR",
    // Test and benchmark machinery (std::env::var in log/faults.rs, testkit, scripts).
    // Not for operators, so example.env leaves them out, but naming them is no error.
    "NOTESAGA_FAULTS_DIR",
    "NOTESAGA_TEST_POSTGRES_URL",
    "NOTESAGA_TEST_LOG",
    "NOTESAGA_BIN_DIR",
    "NOTESAGA_BENCH_POSTGRES_URL",
];

/// Every `NOTESAGA_*` variable of every argument of `command` and its subcommands.
fn clap_env_vars(command: &clap::Command, found: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        if let Some(name) = arg.get_env().and_then(|name| name.to_str()) {
            if name.starts_with("NOTESAGA_") {
                found.insert(name.to_owned());
            }
        }
    }
    for sub in command.get_subcommands() {
        clap_env_vars(sub, found);
    }
}

/// Every `NOTESAGA_*` name `text` mentions, set or commented out, in prose or not.
fn named_vars(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("NOTESAGA_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // A bare prefix is a wildcard in prose (`every NOTESAGA_* variable`), not a name.
        if end > "NOTESAGA_".len() {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The names `example.env` documents: those on the left of a `NAME=` line, whether the
/// line is commented out (secrets, no default) or not.
fn documented_vars(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|line| line.trim_start_matches('#').trim())
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name.trim())
        .filter(|name| name.starts_with("NOTESAGA_"))
        .map(str::to_owned)
        .collect()
}

fn cli_vars() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    clap_env_vars(&Cli::command(), &mut found);
    found
}

#[test]
fn env_example_documents_every_variable_the_cli_reads() {
    let cli = cli_vars();
    // The walk must see the tree: a handful of names would mean it missed subcommands.
    assert!(cli.contains("NOTESAGA_KAFKA_ADDR"), "{cli:?}");
    assert!(cli.contains("NOTESAGA_CHECK_WAIT"), "{cli:?}");
    assert!(cli.contains("NOTESAGA_JWT_SECRET"), "{cli:?}");
    let documented = documented_vars(EXAMPLE_ENV);
    let missing: Vec<_> = cli.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "example.env has no `NAME=` line (add one, commented out if it has no default) for {missing:?}"
    );
}

#[test]
fn env_example_documents_every_variable_the_compose_file_uses() {
    let compose = interpolated_vars(COMPOSE);
    assert!(
        compose.contains("NOTESAGA_POSTGRES_PASSWORD"),
        "{compose:?}"
    );
    let documented = documented_vars(EXAMPLE_ENV);
    let missing: Vec<_> = compose.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "example.env has no `NAME=` line for the docker-compose.yml variables {missing:?}"
    );
}

#[test]
fn env_example_names_no_variable_nothing_reads() {
    let mut known = cli_vars();
    known.extend(interpolated_vars(COMPOSE));
    known.extend(READ_OUTSIDE_CLAP.iter().map(|name| (*name).to_owned()));
    let unknown: Vec<_> = named_vars(EXAMPLE_ENV)
        .into_iter()
        .filter(|name| !known.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "example.env names variables no flag reads (renamed? add them to READ_OUTSIDE_CLAP if read elsewhere): {unknown:?}"
    );
}

#[test]
fn env_names_are_found_in_prose_and_in_assignments() {
    let text = "# every NOTESAGA_* one, see NOTESAGA_A_1, (NOTESAGA_B)\n#NOTESAGA_C=x\nNOTESAGA_D=NOTESAGA_E\nOTHER=1\n";
    let all: Vec<_> = named_vars(text).into_iter().collect();
    assert_eq!(
        all,
        [
            "NOTESAGA_A_1",
            "NOTESAGA_B",
            "NOTESAGA_C",
            "NOTESAGA_D",
            "NOTESAGA_E"
        ]
    );
    let documented: Vec<_> = documented_vars(text).into_iter().collect();
    assert_eq!(documented, ["NOTESAGA_C", "NOTESAGA_D"]);
}
